use pipeline_runtime::prelude::*;

#[component(cahce = true)]
fn double(x: u64) -> u64 {
    x * 2
}

fn main() {}
