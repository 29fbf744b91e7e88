//! Remote-mode figures on a Ray cluster, for both backends, each against a baseline taken in
//! the same run:
//! - the warm runner: a step in a chain against a bare Ray task that starts this binary (which
//!   exits at once), timed on the cluster by the runner's own script; a fan-out of 200 steps;
//!   the head's memory before, with the runner up and at the fan-out's peak; the time to notice
//!   a runner killed mid-step and to finish the step's retry;
//! - one job per step: a step in a chain against a bare Ray job of the same binary; a fan-out
//!   of 50 steps.
//!
//! Needs a cluster: `scripts/with-ray.sh cargo bench --bench remote_overhead`. Memory is this
//! machine's (`MemTotal - MemAvailable`): on the single-machine test cluster it is the head's.

mod common;

use common::median;
use pipeline_runtime::prelude::*;
use pipeline_runtime::{RayClient, RemoteBackend, ray_config, set_ray_backend};
use std::time::{Duration, Instant, SystemTime};

/// Set for the baseline jobs and tasks: the process exits as soon as `main` starts.
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

/// The first attempt notes that it started and waits to be killed with its runner.
#[component(retries = 1)]
fn survivor(marker: String) -> u32 {
    if !std::path::Path::new(&marker).exists() {
        std::fs::write(&marker, b"").expect("the marker is written");
        std::thread::sleep(Duration::from_secs(120));
    }
    1
}

#[pipeline(name = "bench_remote_runner_killed", project = "bench")]
fn runner_killed(marker: String) -> u32 {
    survivor(marker).get().expect("the retry completes")
}

/// Submits a job and waits for it, polling as the job-per-step executor does; its logs.
async fn job(client: &RayClient, body: serde_json::Value) -> (Duration, String) {
    let id = body["submission_id"].as_str().expect("an id").to_string();
    let start = Instant::now();
    client.submit(&body).await.expect("the job is submitted");
    loop {
        let info = client.status(&id).await.expect("the job has a state");
        if info.is_terminal() {
            let elapsed = start.elapsed();
            let logs = client.logs(&id).await.unwrap_or_default();
            assert_eq!(info.status, "SUCCEEDED", "{info:?}\n{logs}");
            return (elapsed, logs);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The number a line of `logs` has between `before` and `after`.
fn number_between(logs: &str, before: &str, after: &str) -> f64 {
    logs.lines()
        .find_map(|l| l.split_once(before)?.1.split_once(after)?.0.parse().ok())
        .unwrap_or_else(|| panic!("the baseline job printed no `{before}...{after}`:\n{logs}"))
}

/// This machine's memory in use, MiB.
fn memory_used() -> f64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (field("MemTotal:") - field("MemAvailable:")) / 1024.0
}

/// CPU time: this machine's busy time and this process's, in seconds (clock ticks of 10 ms).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let machine: f64 = stat
        .lines()
        .next()
        .map(|l| {
            // user nice system idle iowait irq softirq steal: all but idle and iowait.
            let v: Vec<f64> = l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            v.iter()
                .enumerate()
                .filter(|(i, _)| *i != 3 && *i != 4)
                .map(|(_, x)| x)
                .sum()
        })
        .unwrap_or(0.0);
    let own = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = own.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let own: f64 = fields
        .get(11..13)
        .map_or(0.0, |f| f.iter().filter_map(|x| x.parse::<f64>().ok()).sum());
    (machine / 100.0, own / 100.0)
}

/// Runs `f` while sampling memory every 20 ms; gives its value and the peak.
fn peak_memory<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = memory_used();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(memory_used());
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let value = f();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    (value, sampler.join().expect("the sampler ends"))
}

/// The median per-step time of `runs` chains of `n` steps.
fn chain_step(n: u64, runs: usize) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                assert_eq!(chain(n), n);
                start.elapsed() / n as u32
            })
            .collect(),
    )
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The driver pid of this process's running warm runner, from the Jobs API's list (a bare
/// HTTP/1.1 request).
fn runner_driver(client: &RayClient) -> Option<u32> {
    use std::io::{Read, Write};
    let host = client.address().trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    write!(
        stream,
        "GET /api/jobs/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let jobs: Vec<serde_json::Value> = serde_json::from_str(answer.split_once("\r\n\r\n")?.1).ok()?;
    let mine = format!(":{}", std::process::id());
    jobs.iter()
        .filter(|j| j["status"] == "RUNNING")
        .filter(|j| j["metadata"]["controller"].as_str().is_some_and(|c| c.ends_with(&mine)))
        .find_map(|j| j["driver_info"]["pid"].as_str()?.parse().ok())
}

fn main() {
    if std::env::var_os(BARE).is_some() {
        return;
    }
    let state = std::env::temp_dir().join(format!("pipeline-bench-remote-{}", std::process::id()));
    pipeline_runtime::set_state_dir(Some(state.clone()));
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("PIPELINE_LOG_ECHO", "0") };
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("PIPELINE_PROGRESS", "off") };

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
    let pid = std::process::id();

    // ---- the warm runner
    let before = memory_used();
    set_ray_backend(RemoteBackend::Runner);
    assert_eq!(chain(2), 2, "warm-up");
    let with_runner = memory_used();
    let tasks = 20;
    let (_, logs) = runtime.block_on(job(
        &client,
        serde_json::json!({
            "entrypoint": "python3 pipeline_runner.py",
            "submission_id": format!("bench-bare-tasks-{pid}"),
            "runtime_env": { "working_dir": package, "env_vars": {
                "PIPELINE_RUNNER_EXE": exe_name,
                "PIPELINE_RUNNER_BENCH": tasks.to_string(),
                "PIPELINE_RUNNER_BENCH_FAN": "200",
            } },
        }),
    ));
    let bare_task = Duration::from_secs_f64(number_between(&logs, "bare task round trip: median ", " ms") / 1e3);
    let bare_fan = Duration::from_secs_f64(number_between(&logs, "bare task fan-out: 200 in ", " s"));
    let n = 20;
    let runner_step = chain_step(n, 3);
    let fan = 200;
    let start = Instant::now();
    let cpu_before = cpu_seconds();
    let (sum, peak) = peak_memory(|| fan_out(fan));
    let runner_wall = start.elapsed();
    let cpu_after = cpu_seconds();
    assert_eq!(sum, (1..=fan).sum::<u64>());

    // A runner killed mid-step.
    let marker = state.join("survivor.marker");
    let killing = std::thread::spawn({
        let marker = marker.display().to_string();
        move || runner_killed(marker)
    });
    while !marker.exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let driver = runner_driver(&client).expect("this process has a running runner");
    let killed_at = SystemTime::now();
    let killed = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &driver.to_string()])
            .status()
            .expect("kill runs")
            .success()
    );
    assert_eq!(killing.join().expect("the pipeline ends"), 1);
    let recovered = killed.elapsed();
    let store = pipeline_runtime::store::RunStore::open_read_only(&state.join("runs.db")).expect("the store");
    let run = store
        .runs(&pipeline_runtime::store::RunFilter {
            name: Some("bench_remote_runner_killed".into()),
            ..Default::default()
        })
        .expect("the runs")
        .remove(0);
    // The retry's manifest is written as it starts, right after the lost attempt ends.
    let manifest =
        pipeline_runtime::store::step_folder(&pipeline_runtime::store::run_folder(&state, &run.id), "survivor")
            .join("manifest-2.json");
    let detected = std::fs::metadata(&manifest)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|at| at.duration_since(killed_at).ok())
        .expect("the retry's manifest, written after the kill");

    if std::env::var_os("REMOTE_OVERHEAD_RUNNER_ONLY").is_some() {
        println!(
            "runner: {} per step in a chain (bare task {}), fan-out {:.0} steps/s (bare tasks {:.0}/s), lost after {}",
            ms(runner_step),
            ms(bare_task),
            fan as f64 / runner_wall.as_secs_f64(),
            200.0 / bare_fan.as_secs_f64(),
            ms(detected)
        );
        println!(
            "CPU per step in the runner's fan-out: {:.1} ms in all, {:.1} ms in the controller",
            (cpu_after.0 - cpu_before.0) * 1e3 / fan as f64,
            (cpu_after.1 - cpu_before.1) * 1e3 / fan as f64
        );
        return;
    }
    // ---- one job per step
    set_ray_backend(RemoteBackend::Jobs);
    assert_eq!(chain(2), 2, "warm-up");
    let jobs = 8;
    let bare_job = median(
        (0..jobs)
            .map(|i| {
                runtime
                    .block_on(job(
                        &client,
                        serde_json::json!({
                            "entrypoint": format!("./{exe_name}"),
                            "submission_id": format!("bench-bare-{pid}-{i}"),
                            "runtime_env": { "working_dir": package, "env_vars": { BARE: "1" } },
                            "entrypoint_resources": { "queue_default": 1 },
                        }),
                    ))
                    .0
            })
            .collect(),
    );
    let job_step = chain_step(jobs as u64, 3);
    let job_fan = 50;
    let start = Instant::now();
    let (sum, job_peak) = peak_memory(|| fan_out(job_fan));
    let job_wall = start.elapsed();
    assert_eq!(sum, (1..=job_fan).sum::<u64>());

    println!("| backend | what | per step | baseline | ratio |");
    println!("|---|---|---:|---:|---:|");
    println!(
        "| warm runner | step in a {n}-step chain (median of 3 runs) | {} | bare Ray task starting the binary (median of {tasks}): {} | {:.2}x |",
        ms(runner_step),
        ms(bare_task),
        runner_step.as_secs_f64() / bare_task.as_secs_f64()
    );
    println!(
        "| one job per step | step in a {jobs}-step chain (median of 3 runs) | {} | bare Ray job of the binary (median of {jobs}): {} | {:.2}x |",
        ms(job_step),
        ms(bare_job),
        job_step.as_secs_f64() / bare_job.as_secs_f64()
    );
    println!();
    println!("| backend | fan-out | wall time | steps per second | memory in use: before, runner up, peak |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| warm runner | {fan} steps | {:.2} s | {:.0} | {before:.0} MiB, {with_runner:.0} MiB, {peak:.0} MiB |",
        runner_wall.as_secs_f64(),
        fan as f64 / runner_wall.as_secs_f64()
    );
    println!(
        "| bare Ray tasks starting the binary, from one driver | 200 tasks | {:.2} s | {:.0} | |",
        bare_fan.as_secs_f64(),
        200.0 / bare_fan.as_secs_f64()
    );
    let now = memory_used();
    println!(
        "| one job per step | {job_fan} steps | {:.1} s | {:.1} | {now:.0} MiB after, {job_peak:.0} MiB peak |",
        job_wall.as_secs_f64(),
        job_fan as f64 / job_wall.as_secs_f64()
    );
    println!();
    println!(
        "CPU per step in the runner's fan-out: {:.1} ms in all (the machine's busy time), {:.1} ms of it in the controller",
        (cpu_after.0 - cpu_before.0) * 1e3 / fan as f64,
        (cpu_after.1 - cpu_before.1) * 1e3 / fan as f64
    );
    println!(
        "runner killed mid-step (kill -9 of its driver): the step's attempt ended as lost {} after the kill; \
         the retry, on a new runner, finished {} after it",
        ms(detected),
        ms(recovered)
    );
    let _ = std::fs::remove_dir_all(state);
}
