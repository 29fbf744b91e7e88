// Every mistake of a component is reported in one build, not one per build.
use pipeline_runtime::prelude::*;

#[component(cahce = true, retries = "3", cache_ignore = ["sed"])]
fn sample(text: &str, (lo, hi): (u64, u64), seed: u64) -> u64 {
    text.len() as u64 + lo + hi + seed
}

fn main() {}
