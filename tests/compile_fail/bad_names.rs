use pipeline_runtime::prelude::*;

#[component(name = " load data")]
fn load(n: u64) -> u64 {
    n
}

#[component(task_type = "train")]
fn train(n: u64) -> u64 {
    n
}

#[pipeline(name = "p", project = "  ")]
fn p() -> u64 {
    1
}

fn main() {}
