//! A pipeline called from another pipeline's body is one node of the outer DAG (its state and
//! timing), and its run is linked to the outer run in the store and the `PipelineRun` API.

use pipeline_runtime::prelude::*;
use pipeline_runtime::store::{ArtifactKind, RunFilter, RunStore};
use pipeline_runtime::{Config, ErrorKind, Mode};
use std::path::{Path, PathBuf};

#[component]
fn double(x: u64) -> u64 {
    x * 2
}

#[component]
fn refuse(x: u64) -> anyhow::Result<u64> {
    anyhow::bail!("no {x}")
}

#[pipeline(name = "inner", project = "tests", return_value = "doubled", artifact_codec = "json")]
fn inner(x: u64) -> u64 {
    double(x).get().unwrap()
}

#[pipeline(name = "inner_failing", project = "tests")]
fn inner_failing(x: u64) -> Result<u64, HandleError> {
    refuse(x).get()
}

#[pipeline(name = "inner_panicking", project = "tests")]
fn inner_panicking() -> u64 {
    panic!("the inner body gives up")
}

#[pipeline(name = "outer", project = "tests")]
fn outer(x: u64) -> u64 {
    let inner = inner::run(x).unwrap();
    assert!(inner.run.is_successful());
    // The inner run's value feeds a step of the outer run.
    double(inner.output).get().unwrap()
}

/// Sleeps a minute, unless stopped (in local mode: a worker process, killed when stopped).
#[component]
fn slow(x: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_secs(60));
    x
}

#[pipeline(name = "inner_slow", project = "tests")]
fn inner_slow() -> Result<u64, HandleError> {
    slow(1).get()
}

#[pipeline(name = "outer_bounded", project = "tests", time_limit = "2s")]
fn outer_bounded() -> bool {
    inner_slow::run().unwrap().output.is_err()
}

#[pipeline(name = "outer_of_failures", project = "tests")]
fn outer_of_failures() -> (bool, bool) {
    let failed = inner_failing::run(1).unwrap().output.is_err();
    let panicked = std::panic::catch_unwind(inner_panicking::run).is_err();
    (failed, panicked)
}

fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nested").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn nested_run_is_a_node(mode: Mode, name: &str) {
    let state = folder(name);
    let config = Config::current().with_mode(mode).with_state_dir(&state);
    let finished = config.scope(|| outer::run(5).unwrap());
    assert_eq!(finished.output, 20);
    let dag = finished.run.dag();
    let node = dag.node("inner").unwrap_or_else(|| panic!("{}", dag.to_text()));
    assert_eq!((node.status, node.component.as_str()), (NodeStatus::Completed, "inner"));
    assert!(node.started.is_some() && node.ended >= node.started);
    // The outer step that used the inner value runs after it.
    assert_eq!(dag.node("double").unwrap().status, NodeStatus::Completed);

    let nested = config.scope(|| finished.run.nested_runs().unwrap());
    assert_eq!(nested.len(), 1);
    let inner = &nested[0];
    assert_eq!(inner.name(), "inner");
    assert_eq!(inner.parent(), Some((finished.run.id(), "inner")));
    assert_eq!(inner.dag().node("double").unwrap().status, NodeStatus::Completed);
    let store = RunStore::open(&state.join("runs.db")).unwrap();
    let children = store
        .runs(&RunFilter {
            parent: Some(finished.run.id().to_string()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].parent.as_ref().unwrap().1, "inner");
    // The node is recorded in the outer run like any step, with the inner run's return value
    // as its output.
    let nodes = store.nodes(finished.run.id()).unwrap();
    assert!(
        nodes
            .iter()
            .any(|n| n.node.name == "inner" && n.node.status == NodeStatus::Completed)
    );
    let outputs: Vec<_> = store
        .artifacts(finished.run.id())
        .unwrap()
        .into_iter()
        .filter(|a| a.node == "inner" && a.kind == ArtifactKind::Output)
        .collect();
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    assert_eq!(outputs[0].name, "doubled");
    let (_, payload) = pipeline_runtime::artifacts::read_payload_at(&outputs[0].uri).unwrap();
    assert_eq!(serde_json::from_slice::<u64>(&payload).unwrap(), 10);
}

#[test]
fn a_nested_pipeline_is_one_node_of_the_outer_run_in_debug_mode() {
    nested_run_is_a_node(Mode::Debug, "debug");
}

#[test]
fn a_nested_pipeline_is_one_node_of_the_outer_run_in_local_mode() {
    nested_run_is_a_node(Mode::Local, "local");
}

#[test]
fn a_failed_or_panicking_nested_run_fails_its_node() {
    let state = folder("failures");
    let finished = Config::current()
        .with_mode(Mode::Debug)
        .with_state_dir(&state)
        .scope(|| outer_of_failures::run().unwrap());
    assert_eq!(finished.output, (true, true));
    assert_eq!(finished.run.status(), RunStatus::Failed);
    let dag = finished.run.dag();
    let failed = dag.node("inner_failing").unwrap();
    assert_eq!(failed.status, NodeStatus::Failed);
    let error = failed.error.as_ref().unwrap();
    assert!(
        error.message.contains("pipeline `inner_failing` run") && error.message.contains("failed: refuse"),
        "{error:?}"
    );
    let panicked = dag.node("inner_panicking").unwrap();
    assert_eq!(panicked.status, NodeStatus::Failed);
    assert_eq!(panicked.error.as_ref().unwrap().kind, ErrorKind::Crash);
}

/// Stopping the outer run (here its time limit) stops the nested run it is in: its step is
/// killed, the nested run is aborted, and so is its node.
#[test]
fn stopping_the_outer_run_stops_the_nested_run() {
    let state = folder("stop");
    let started = std::time::Instant::now();
    let finished = Config::current()
        .with_mode(Mode::Local)
        .with_state_dir(&state)
        .scope(|| outer_bounded::run().unwrap());
    assert!(finished.output, "the nested step was stopped, not completed");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(50),
        "the nested step ran its whole minute"
    );
    assert_eq!(finished.run.status(), RunStatus::Aborted);
    let node = finished.run.dag().node("inner_slow").unwrap().clone();
    assert_eq!(node.status, NodeStatus::Aborted, "{node:?}");
    let store = RunStore::open(&state.join("runs.db")).unwrap();
    let inner = store
        .runs(&RunFilter {
            parent: Some(finished.run.id().to_string()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(inner.len(), 1);
    assert_eq!(inner[0].status, RunStatus::Aborted);
    let slow = store.nodes(&inner[0].id).unwrap();
    assert_eq!(slow[0].node.status, NodeStatus::Aborted, "{:?}", slow[0].node);
}
