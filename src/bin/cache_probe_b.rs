//! A test fixture: version "b" of a cached component. `cache_probe_a` and `cache_probe_b`
//! define the component under the same name with different code, so a test can show that
//! changing a component's code invalidates its cached results.
//!
//! Usage: `cache_probe_b <state folder> <x>`; prints the step's status and value.

use pipeline_runtime::prelude::*;

#[component(cache = true)]
fn cached_work(x: u64) -> u64 {
    x + x // the same result, other code
}

#[pipeline(name = "cache_probe", project = "tests")]
fn probe(x: u64) -> u64 {
    cached_work(x).get().expect("the step runs")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let state = args.next().expect("state folder");
    let x: u64 = args.next().expect("x").parse().expect("a number");
    pipeline_runtime::set_state_dir(Some(state.into()));
    debug_pipeline();
    let finished = probe::run(x).expect("the pipeline starts");
    let status = finished.run.dag().node("cached_work").expect("the step ran").status;
    println!("{status} {}", finished.output);
}
