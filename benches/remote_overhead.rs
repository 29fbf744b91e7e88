//! Remote-mode figures on a Ray cluster: what a step costs on top of Ray's own job round trip
//! for the same entrypoint (this binary, exiting at once), and the throughput of a fan-out of
//! 50 steps. Needs a cluster: `scripts/with-ray.sh cargo bench --bench remote_overhead`.

mod common;

use common::median;
use pipeline_runtime::prelude::*;
use pipeline_runtime::{RayClient, ray_config};
use std::time::{Duration, Instant};

/// Set for the baseline jobs: the process exits as soon as `main` starts.
const BARE: &str = "REMOTE_OVERHEAD_BARE";

#[component]
fn inc(x: u64) -> u64 {
    x + 1
}

#[pipeline(name = "bench_remote_chain", project = "bench")]
fn chain(n: u64) -> u64 {
    let mut h = inc(0);
    for _ in 1..n {
        h = inc(h);
    }
    h.get().expect("the chain completes")
}

#[pipeline(name = "bench_remote_fan_out", project = "bench")]
fn fan_out(n: u64) -> u64 {
    let steps: Vec<_> = (0..n).map(inc).collect();
    steps.into_iter().map(|h| h.get().expect("a step completes")).sum()
}

/// Submits the bare entrypoint as a Ray job and waits for it, polling as the executor does.
async fn bare_job(client: &RayClient, package: &str, exe_name: &str, n: usize) -> Duration {
    let id = format!("bench-bare-{}-{n}", std::process::id());
    let body = serde_json::json!({
        "entrypoint": format!("./{exe_name}"),
        "submission_id": id,
        "runtime_env": { "working_dir": package, "env_vars": { BARE: "1" } },
        "entrypoint_resources": { "queue_default": 1 },
    });
    let start = Instant::now();
    client.submit(&body).await.expect("the baseline job is submitted");
    loop {
        let info = client.status(&id).await.expect("the baseline job has a state");
        if info.is_terminal() {
            assert_eq!(info.status, "SUCCEEDED", "{info:?}");
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn main() {
    if std::env::var_os(BARE).is_some() {
        return;
    }
    let state = std::env::temp_dir().join(format!("pipeline-bench-remote-{}", std::process::id()));
    pipeline_runtime::set_state_dir(Some(state.clone()));
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("PIPELINE_LOG_ECHO", "0") };

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let client = RayClient::new(&ray_config()).expect("a client");
    let exe = std::env::current_exe().expect("this binary");
    let exe_name = exe
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a file name")
        .to_string();
    let package = runtime
        .block_on(client.ensure_package(&exe))
        .expect("the package is uploaded");
    assert_eq!(chain(2), 2, "warm-up");

    let jobs = 8;
    let bare = median(
        (0..jobs)
            .map(|i| runtime.block_on(bare_job(&client, &package, &exe_name, i)))
            .collect(),
    );
    let runs: Vec<Duration> = (0..3)
        .map(|_| {
            let start = Instant::now();
            assert_eq!(chain(jobs as u64), jobs as u64);
            start.elapsed() / jobs as u32
        })
        .collect();
    let step = median(runs);
    println!("| what | per step |");
    println!("|---|---:|");
    println!(
        "| Ray job round trip, same binary exiting at once (median of {jobs}) | {:.0} ms |",
        bare.as_secs_f64() * 1e3
    );
    println!(
        "| remote step in a {jobs}-step chain (median of 3 runs) | {:.0} ms |",
        step.as_secs_f64() * 1e3
    );
    println!("| ratio | {:.2}x |", step.as_secs_f64() / bare.as_secs_f64());
    println!();

    let n = 50;
    let start = Instant::now();
    assert_eq!(fan_out(n), (1..=n).sum::<u64>());
    let wall = start.elapsed();
    println!("| fan-out | wall time | steps per second |");
    println!("|---|---:|---:|");
    println!(
        "| {n} independent steps | {:.1} s | {:.1} |",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(state);
}
