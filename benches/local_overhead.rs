//! `run_locally()` figures: the cost of a subprocess step against a bare spawn of the same
//! binary, and how close a fan-out of sleeping steps comes to the ideal wall time.
//!
//! Run: `cargo bench --bench local_overhead` (prints Markdown tables).

mod common;

use common::median;
use pipeline_runtime::prelude::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the environment of the bare spawns: the process exits as soon as `main` starts.
const BARE: &str = "LOCAL_OVERHEAD_BARE_SPAWN";

#[component]
fn inc(x: u64) -> u64 {
    x + 1
}

#[component]
fn nap(millis: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(millis));
    millis
}

#[pipeline(name = "bench_local_chain", project = "bench")]
fn chain(n: u64) -> u64 {
    let mut h = inc(0);
    for _ in 1..n {
        h = inc(h);
    }
    h.get().expect("the chain completes")
}

#[pipeline(name = "bench_local_fan_out", project = "bench")]
fn fan_out(n: u64, millis: u64) -> u64 {
    let naps: Vec<_> = (0..n).map(|_| nap(millis)).collect();
    naps.into_iter().map(|h| h.get().expect("a nap completes")).sum()
}

fn bare_spawn() -> Duration {
    let exe = std::env::current_exe().expect("the bench binary");
    let start = Instant::now();
    let status = Command::new(exe)
        .env(BARE, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn");
    assert!(status.success());
    start.elapsed()
}

fn main() {
    if std::env::var_os(BARE).is_some() {
        return;
    }
    let state = std::env::temp_dir().join(format!("pipeline-bench-{}", std::process::id()));
    pipeline_runtime::set_state_dir(Some(state.clone()));
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("PIPELINE_LOG_ECHO", "0") };
    run_locally();

    // The VM's speed drifts by tens of percent within a minute: each round times bare spawns
    // and both chains back to back, and the ratio is taken within a round.
    let (steps, rounds) = (200u64, 7);
    let chain_per_step = |recording: bool| {
        pipeline_runtime::set_recording(recording);
        let start = Instant::now();
        assert_eq!(chain(steps), steps);
        start.elapsed() / steps as u32
    };
    let (mut spawns, mut recorded, mut unrecorded, mut ratios, mut store) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let mut bare: Vec<Duration> = (0..steps / 4).map(|_| bare_spawn()).collect();
        let with_store = chain_per_step(true);
        bare.extend((0..steps / 4).map(|_| bare_spawn()));
        let without = chain_per_step(false);
        let spawn = median(bare);
        spawns.push(spawn);
        recorded.push(with_store);
        unrecorded.push(without);
        ratios.push(with_store.as_secs_f64() / spawn.as_secs_f64());
        store.push(with_store.as_secs_f64() - without.as_secs_f64());
    }
    let middle = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("| what | per step |");
    println!("|---|---:|");
    println!(
        "| bare spawn of the same binary (median of {rounds} rounds of {}) | {:.2} ms |",
        steps / 2,
        median(spawns).as_secs_f64() * 1e3
    );
    println!(
        "| subprocess step in a {steps}-step chain (median of {rounds} runs) | {:.2} ms |",
        median(recorded).as_secs_f64() * 1e3
    );
    println!("| ratio (median of the rounds' ratios) | {:.2}x |", middle(ratios));
    println!(
        "| of which the run store (same chain unrecorded: {:.2} ms; median of the rounds' differences) | {:.3} ms |",
        median(unrecorded).as_secs_f64() * 1e3,
        middle(store) * 1e3
    );
    println!();

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    println!("| steps of 100 ms | cores | ideal ceil(N/C) x 100 ms | measured (median of 3) | over ideal |");
    println!("|---:|---:|---:|---:|---:|");
    for n in [cores, 4 * cores, 16 * cores] {
        let ideal = Duration::from_millis(n.div_ceil(cores) * 100);
        let measured = median(
            (0..3)
                .map(|_| {
                    let start = Instant::now();
                    assert_eq!(fan_out(n, 100), n * 100);
                    start.elapsed()
                })
                .collect(),
        );
        println!(
            "| {n} | {cores} | {:.0} ms | {:.0} ms | {:+.1}% |",
            ideal.as_secs_f64() * 1e3,
            measured.as_secs_f64() * 1e3,
            (measured.as_secs_f64() / ideal.as_secs_f64() - 1.0) * 100.0
        );
    }
    let _ = std::fs::remove_dir_all(state);
}
