use pipeline_runtime::prelude::*;

#[pipeline(project = "examples")]
fn no_name() -> u64 {
    1
}

#[pipeline(name = "no-project")]
fn no_project() -> u64 {
    1
}

fn main() {}
