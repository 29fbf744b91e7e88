use pipeline_runtime::prelude::*;

#[pipeline(name = "p", project = "examples", version = "1.x")]
fn p() -> u64 {
    1
}

fn main() {}
