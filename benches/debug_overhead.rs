//! Per-step overhead of `debug_pipeline()`: a chain and a fan-out of trivial steps at several
//! sizes, so that both the cost per step and how it scales show; with the run store off (the
//! framework alone) and on (every node and state change recorded in SQLite).
//!
//! Run: `cargo bench --bench debug_overhead` (prints a Markdown table). For profiling,
//! `DEBUG_OVERHEAD_STORE=off|on` keeps one run-store setting, `DEBUG_OVERHEAD_SIZES=10000`
//! chooses the sizes and `DEBUG_OVERHEAD_SHAPES=chain,fan-out,read,run` the shapes (`run`: what
//! a whole run of one step costs, many times over).

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

/// Each step's value read before the next call: the body waits for every step.
#[pipeline(name = "bench_chain_read", project = "bench")]
fn chain_read(n: u64) -> u64 {
    let mut v = 0;
    for _ in 0..n {
        v = inc(v).get().expect("the step completes");
    }
    v
}

#[pipeline(name = "bench_fan_out", project = "bench")]
fn fan_out(n: u64) -> u64 {
    let handles: Vec<_> = (0..n).map(inc).collect();
    // The fan-in adds one step: n + 1 in all.
    count(handles).get().expect("the fan-out completes")
}

/// The baseline: the same shapes as plain function calls, in the same benchmark run.
#[inline(never)]
fn plain_inc(x: u64) -> u64 {
    std::hint::black_box(x) + 1
}

fn plain_chain(n: u64) -> u64 {
    let mut h = plain_inc(0);
    for _ in 1..n {
        h = plain_inc(h);
    }
    h
}

fn plain_fan_out(n: u64) -> u64 {
    let values: Vec<u64> = (0..n).map(plain_inc).collect();
    std::hint::black_box(values).len() as u64
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
    let store_setting = std::env::var("DEBUG_OVERHEAD_STORE").unwrap_or_default();
    let sizes: Vec<u64> = std::env::var("DEBUG_OVERHEAD_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000]);
    let shapes: Vec<String> = std::env::var("DEBUG_OVERHEAD_SHAPES")
        .unwrap_or_else(|_| "chain,fan-out,read,run".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    println!("| run store | shape | steps | run (median of 7) | per step |");
    println!("|---|---|---:|---:|---:|");
    for &n in &sizes {
        let chain_time = measure(7, || plain_chain(n), n);
        let fan_time = measure(7, || plain_fan_out(n), n);
        for (shape, t) in [("chain", chain_time), ("fan-out", fan_time)] {
            println!(
                "| plain calls (baseline) | {shape} | {n} | {:.3} ms | {:.4} µs |",
                t.as_secs_f64() * 1e3,
                t.as_secs_f64() * 1e6 / n as f64
            );
        }
    }
    for recording in recordings(&store_setting) {
        pipeline_runtime::set_recording(recording);
        let store = if recording { "on" } else { "off" };
        for &n in &sizes {
            let runs: [(&str, &str, u64, &dyn Fn() -> u64); 3] = [
                ("chain", "chain", n, &|| chain(n)),
                ("fan-out", "fan-out + fan-in", n + 1, &|| fan_out(n)),
                ("read", "chain, each value read", n, &|| chain_read(n)),
            ];
            for (key, shape, steps, run) in runs {
                if !shapes.iter().any(|s| s == key) {
                    continue;
                }
                let t = measure(7, run, n);
                println!(
                    "| {store} | {shape} | {steps} | {:.2} ms | {:.2} µs |",
                    t.as_secs_f64() * 1e3,
                    t.as_secs_f64() * 1e6 / steps as f64
                );
            }
        }
    }
    if shapes.iter().any(|s| s == "run") {
        one_step_runs(&store_setting);
    }
    if store_setting != "off" && shapes.iter().any(|s| s == "fan-out") {
        // The fan-out of the last size has one step more: its fan-in.
        read_back(&state, sizes.last().expect("a size") + 1);
    }
    let _ = std::fs::remove_dir_all(state);
}

/// The run-store settings to measure: `DEBUG_OVERHEAD_STORE=off|on` keeps one.
fn recordings(store_setting: &str) -> impl Iterator<Item = bool> + '_ {
    [false, true]
        .into_iter()
        .filter(move |&recording| !matches!((store_setting, recording), ("off", true) | ("on", false)))
}

/// What a run costs besides its steps: a run of one step, start to end, as a program that
/// calls a pipeline in a loop (or a test suite of small pipelines) pays it.
fn one_step_runs(store_setting: &str) {
    const RUNS: u64 = 300;
    println!();
    for recording in recordings(store_setting) {
        pipeline_runtime::set_recording(recording);
        let t = measure(7, || (0..RUNS).map(|_| chain(1)).sum(), RUNS);
        println!(
            "A run of one step, store {} (median of 7 batches of {RUNS} runs): {:.1} µs per run.",
            if recording { "on" } else { "off" },
            t.as_secs_f64() * 1e6 / RUNS as f64
        );
    }
}

/// What reading the last recorded run back (of `steps` steps) costs: its nodes and its counts
/// per status (the run store folds its node log), as `pipeline show` and the web page read them.
fn read_back(state: &std::path::Path, steps: u64) {
    use pipeline_runtime::store::{RunFilter, RunStore};
    let store = RunStore::open(&state.join("runs.db")).expect("the bench's run store");
    // Newest first: the last fan-out run, of the last (largest) size.
    let filter = RunFilter {
        name: Some("bench_fan_out".into()),
        limit: Some(1),
        ..Default::default()
    };
    let largest = store.runs(&filter).expect("runs").pop().expect("a recorded run");
    let nodes = measure(5, || store.nodes(&largest.id).expect("nodes").len() as u64, steps);
    let counts = measure(
        5,
        || {
            let counts = store.status_counts(&largest.id).expect("counts");
            counts.iter().map(|(_, n)| *n as u64).sum()
        },
        steps,
    );
    println!();
    println!(
        "Reading a recorded run of {steps} steps back (median of 5): its nodes {:.1} ms, its counts per status {:.1} ms.",
        nodes.as_secs_f64() * 1e3,
        counts.as_secs_f64() * 1e3
    );
}
