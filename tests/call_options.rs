//! Options for one call of a component: that node runs with them, other calls of the same
//! component keep the attribute's.

use pipeline_runtime::prelude::*;
use pipeline_runtime::{Config, Mode, RetryBackoff, with_options};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Sleeps `millis`, then gives it back.
#[component]
fn nap(millis: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(millis));
    millis
}

static CALLS: AtomicU32 = AtomicU32::new(0);

/// Fails every call whose number (in this process) is odd: the first, the third...
#[component]
fn every_other(x: u32) -> anyhow::Result<u32> {
    let n = CALLS.fetch_add(1, Ordering::SeqCst);
    anyhow::ensure!(n % 2 == 1, "call {n} fails");
    Ok(x)
}

#[pipeline(name = "per_call_limits", project = "tests")]
fn limits() -> (Result<u64, HandleError>, Result<u64, HandleError>) {
    let bounded = with_options::<nap>()
        .time_limit(Duration::from_secs(1))
        .name("bounded")
        .call((30_000,));
    let free = nap(10);
    (bounded.get(), free.get())
}

#[pipeline(name = "per_call_retries", project = "tests")]
fn retries() -> (Result<u32, HandleError>, Result<u32, HandleError>) {
    let retried = with_options::<every_other>()
        .retry_on_failure(1)
        .retry_backoff(RetryBackoff {
            delay: Duration::from_millis(10),
            ..RetryBackoff::NONE
        })
        .call((1,));
    let first = retried.get();
    // The plain call is the third: it fails, and has no retry of its own.
    (first, every_other(2).get())
}

#[pipeline(name = "per_call_bad_name", project = "tests")]
fn bad_name() -> Result<u64, HandleError> {
    with_options::<nap>().name("a tab\there").call((1,)).get()
}

fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("call_options").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_time_limit_given_for_one_call_stops_that_node_only() {
    let finished = Config::current()
        .with_mode(Mode::Local)
        .with_state_dir(folder("limits"))
        .scope(|| limits::run().unwrap());
    let (bounded, free) = finished.output;
    assert!(matches!(bounded, Err(HandleError::Aborted { .. })), "{bounded:?}");
    assert_eq!(free.unwrap(), 10);
    let dag = finished.run.dag();
    assert_eq!(dag.node("bounded").unwrap().status, NodeStatus::Aborted);
    assert_eq!(dag.node("nap").unwrap().status, NodeStatus::Completed);
}

#[test]
fn retries_given_for_one_call_apply_to_that_node_only() {
    let finished = Config::current()
        .with_mode(Mode::Debug)
        .with_state_dir(folder("retries"))
        .scope(|| retries::run().unwrap());
    let (retried, plain) = finished.output;
    assert_eq!(retried.unwrap(), 1);
    assert!(matches!(plain, Err(HandleError::Failed { .. })), "{plain:?}");
    let dag = finished.run.dag();
    assert_eq!(dag.node("every_other").unwrap().attempts, 2);
    assert_eq!(dag.node("every_other_1").unwrap().attempts, 1);
}

#[test]
fn a_name_that_cannot_name_a_step_is_a_clear_error() {
    let finished = Config::current()
        .with_mode(Mode::Debug)
        .with_state_dir(folder("bad-name"))
        .scope(|| bad_name::run().unwrap());
    let err = finished.output.unwrap_err().to_string();
    assert!(
        err.contains("`a tab\there` cannot name a step: a name cannot hold control characters"),
        "{err}"
    );
}
