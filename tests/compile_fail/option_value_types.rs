use pipeline_runtime::prelude::*;

#[component(cache = "yes")]
fn a(x: u64) -> u64 {
    x
}

#[component(retries = "3")]
fn b(x: u64) -> u64 {
    x
}

#[component(time_limit = "soon")]
fn c(x: u64) -> u64 {
    x
}

#[component(return_values = "rows", num_cpus = -1)]
fn d(x: u64) -> u64 {
    x
}

#[component(name = 7)]
fn e(x: u64) -> u64 {
    x
}

#[component(retries = 2, retry_backoff = 0.5, retry_jitter = "lots")]
fn f(x: u64) -> u64 {
    x
}

fn main() {}
