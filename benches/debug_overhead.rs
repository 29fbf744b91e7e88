//! Per-step overhead of `debug_pipeline()`: a chain and a fan-out of trivial steps at several
//! sizes, so that both the cost per step and how it scales show; with the run store off (the
//! framework alone) and on (every node and state change recorded in SQLite).
//!
//! Run: `cargo bench --bench debug_overhead` (prints a Markdown table).

mod common;

use common::median;
use pipeline_runtime::prelude::*;
use std::time::{Duration, Instant};

#[component]
fn inc(x: u64) -> u64 {
    x + 1
}

#[component]
fn count(values: Vec<u64>) -> u64 {
    values.len() as u64
}

#[pipeline(name = "bench_chain", project = "bench")]
fn chain(n: u64) -> u64 {
    let mut h = inc(0);
    for _ in 1..n {
        h = inc(h);
    }
    h.get().expect("the chain completes")
}

#[pipeline(name = "bench_fan_out", project = "bench")]
fn fan_out(n: u64) -> u64 {
    let handles: Vec<_> = (0..n).map(inc).collect();
    // The fan-in adds one step: n + 1 in all.
    count(handles).get().expect("the fan-out completes")
}

fn measure(runs: usize, f: impl Fn() -> u64, expected: u64) -> Duration {
    assert_eq!(f(), expected, "warm-up result");
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                let got = f();
                let elapsed = start.elapsed();
                assert_eq!(got, expected);
                elapsed
            })
            .collect(),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; a filter is not supported and ignored.
    let state = std::env::temp_dir().join(format!("pipeline-bench-debug-{}", std::process::id()));
    pipeline_runtime::set_state_dir(Some(state.clone()));
    debug_pipeline();
    println!("| run store | shape | steps | run (median of 7) | per step |");
    println!("|---|---|---:|---:|---:|");
    for recording in [false, true] {
        pipeline_runtime::set_recording(recording);
        let store = if recording { "on" } else { "off" };
        for n in [1_000u64, 10_000, 100_000] {
            let chain_time = measure(7, || chain(n), n);
            let fan_time = measure(7, || fan_out(n), n);
            for (shape, steps, t) in [("chain", n, chain_time), ("fan-out + fan-in", n + 1, fan_time)] {
                println!(
                    "| {store} | {shape} | {steps} | {:.2} ms | {:.2} µs |",
                    t.as_secs_f64() * 1e3,
                    t.as_secs_f64() * 1e6 / steps as f64
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(state);
}
