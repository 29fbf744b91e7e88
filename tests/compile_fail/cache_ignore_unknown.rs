use pipeline_runtime::prelude::*;

#[component(cache = true, cache_ignore = ["seed", "verbsoe"])]
fn sample(n: u64, seed: u64, verbose: bool) -> Vec<u64> {
    let _ = verbose;
    (0..n).map(|i| i ^ seed).collect()
}

fn main() {}
