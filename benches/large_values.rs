//! Controller memory with large values in local mode: a value made by one step goes into a
//! `cache = true` step (twice: a miss, then a hit) and into a fan-in of two. The controller
//! should never hold such a value: it hands artifacts to workers by reference, streams them
//! into cache keys, and records sizes and checksums the workers report.
//!
//! Run: `cargo bench --bench large_values` (prints a Markdown table; `LARGE_VALUES_MB` sets the
//! size, 500 by default). Linux only: it reads the peak RSS (`VmHWM`) of `/proc/self/status`.

use pipeline_runtime::prelude::*;
use std::time::Instant;

#[component]
fn produce(megabytes: usize, seed: u8) -> Vec<u8> {
    (0..megabytes << 20)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[component(cache = true)]
fn digest(data: Vec<u8>) -> u64 {
    data.iter().map(|&b| u64::from(b)).sum()
}

#[component]
fn total(parts: Vec<Vec<u8>>) -> u64 {
    parts.iter().map(|p| p.len() as u64).sum()
}

#[pipeline(name = "bench_large_values", project = "bench")]
fn large(megabytes: usize) -> (u64, u64, u64) {
    let a = produce(megabytes, 1);
    let b = produce(megabytes, 2);
    let both = total(vec![a.clone(), b]);
    let first = digest(&a).get().expect("digest");
    // Started once the first has been cached: served from the cache.
    let again = digest(&a).get().expect("digest again");
    (first, again, both.get().expect("fan-in"))
}

/// The process's peak resident set, in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks
    }
    let megabytes: usize = std::env::var("LARGE_VALUES_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let state = std::env::temp_dir().join(format!("pipeline-bench-large-{}", std::process::id()));
    pipeline_runtime::set_state_dir(Some(state.clone()));
    run_locally();

    println!("| run | value size | controller peak RSS | wall time |");
    println!("|---|---:|---:|---:|");
    for (label, mb) in [("baseline: 1 MiB values", 1), ("large values", megabytes)] {
        let started = Instant::now();
        let finished = large::run(mb).expect("the run starts");
        let (first, again, both) = finished.output;
        assert_eq!(first, again, "the cache hit gives the same digest");
        assert_eq!(both, (2 * mb as u64) << 20);
        let rss = peak_rss_mib().map_or_else(|| "n/a".to_string(), |m| format!("{m:.0} MiB"));
        println!(
            "| {label} | {mb} MiB | {rss} | {:.1} s |",
            started.elapsed().as_secs_f64()
        );
        let hits = finished
            .run
            .dag()
            .nodes()
            .filter(|n| n.status == NodeStatus::Cached)
            .count();
        assert_eq!(hits, 1, "the second digest is served from the cache");
    }
    let _ = std::fs::remove_dir_all(state);
}
