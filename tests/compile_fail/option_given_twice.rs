use pipeline_runtime::prelude::*;

#[component(cache = true, retries = 2, cache = false)]
fn double(x: u64) -> u64 {
    x * 2
}

#[component(retries = 2, retry_on_failure = 3)]
fn triple(x: u64) -> u64 {
    x * 3
}

fn main() {}
