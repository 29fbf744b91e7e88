//! Retries with a backoff: each wait is recorded (the node is `queued` while it waits), the
//! waits grow by the factor, and a stop during a wait aborts the step without another attempt.

use pipeline_runtime::prelude::*;
use pipeline_runtime::store::RunStore;
use pipeline_runtime::{Config, Mode};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Fails until a marker file has seen two failures (works across worker processes).
#[component(retries = 3, retry_delay = "300ms", retry_backoff = 2.0)]
fn third_time_lucky(dir: String) -> anyhow::Result<u32> {
    let marker = Path::new(&dir).join("failures");
    let failures = std::fs::read_to_string(&marker).map_or(0, |s| s.len());
    if failures < 2 {
        std::fs::write(&marker, "x".repeat(failures + 1))?;
        anyhow::bail!("failure {}", failures + 1);
    }
    Ok(3)
}

#[pipeline(name = "backoff", project = "tests")]
fn backoff(dir: String) -> u32 {
    third_time_lucky(dir).get().unwrap_or(0)
}

#[component(retries = 1, retry_delay = "60s")]
fn fails_once_slowly(x: u32) -> anyhow::Result<u32> {
    anyhow::bail!("no: {x}")
}

#[pipeline(name = "backoff_stopped", project = "tests", time_limit = "1s")]
fn backoff_stopped() -> bool {
    fails_once_slowly(1).get().is_ok()
}

fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("retry_backoff").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn waits_are_recorded(mode: Mode, name: &str) {
    let state = folder(name);
    let markers = folder(&format!("{name}-markers"));
    let finished = Config::current()
        .with_mode(mode)
        .with_state_dir(&state)
        .scope(|| backoff::run(markers.display().to_string()).unwrap());
    assert_eq!(finished.output, 3);
    let node = finished.run.dag().node("third_time_lucky").unwrap().clone();
    assert_eq!((node.status, node.attempts), (NodeStatus::Completed, 3));
    let store = RunStore::open(&state.join("runs.db")).unwrap();
    let history = store.node_events(finished.run.id(), "third_time_lucky").unwrap();
    let states: Vec<NodeStatus> = history.iter().map(|(s, _)| *s).collect();
    use NodeStatus::*;
    assert_eq!(
        states,
        [Pending, Queued, Running, Queued, Running, Queued, Running, Completed]
    );
    // Each wait is the time from `queued` to `running`: 300 ms, then twice that.
    let wait = |i: usize| history[i + 1].1.duration_since(history[i].1).unwrap();
    assert!(wait(3) >= Duration::from_millis(300), "{:?}", wait(3));
    assert!(wait(5) >= Duration::from_millis(600), "{:?}", wait(5));
}

#[test]
fn retry_waits_grow_and_are_recorded_in_debug_mode() {
    waits_are_recorded(Mode::Debug, "debug");
}

#[test]
fn retry_waits_grow_and_are_recorded_in_local_mode() {
    waits_are_recorded(Mode::Local, "local");
}

#[test]
fn a_stop_during_a_retry_wait_aborts_the_step_at_once() {
    let state = folder("stopped");
    let start = Instant::now();
    let finished = Config::current()
        .with_mode(Mode::Debug)
        .with_state_dir(&state)
        .scope(|| backoff_stopped::run().unwrap());
    // The pipeline's one-second limit ends the run long before the 60 s wait would.
    assert!(start.elapsed() < Duration::from_secs(30), "{:?}", start.elapsed());
    assert!(!finished.output);
    assert_eq!(finished.run.status(), RunStatus::Aborted);
    let node = finished.run.dag().node("fails_once_slowly").unwrap().clone();
    assert_eq!((node.status, node.attempts), (NodeStatus::Aborted, 1));
}
