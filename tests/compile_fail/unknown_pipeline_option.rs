use pipeline_runtime::prelude::*;

#[pipeline(name = "p", project = "examples", max_paralel = 4)]
fn p() -> u64 {
    1
}

fn main() {}
