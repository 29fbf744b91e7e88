use pipeline_runtime::prelude::*;

#[component(docker = "python:3.11")]
fn double(x: u64) -> u64 {
    x * 2
}

#[pipeline(name = "p", project = "examples", pool_frequency = 0.2)]
fn p() -> u64 {
    double(2).get().unwrap()
}

fn main() {}
