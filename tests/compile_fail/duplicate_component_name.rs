use pipeline_runtime::prelude::*;

#[component(name = "same")]
fn first(x: u64) -> u64 {
    x
}

#[component(name = "same")]
fn second(x: u64) -> u64 {
    x
}

fn main() {}
