//! The engine's ordering promises, under real threads and processes: a node's callbacks fire in
//! order, its stored states never go backwards, a value read means its node is final, and
//! `run()` returns only after every callback has returned. Slow callbacks widen every window in
//! which a reordering could show.

use pipeline_runtime::prelude::*;
use pipeline_runtime::store::RunStore;
use pipeline_runtime::{Mode, RunStatus, step, with_mode};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, Once};
use std::time::Duration;

fn state() -> PathBuf {
    static INIT: Once = Once::new();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("ordering-{}", std::process::id()));
    INIT.call_once(|| {
        let _ = std::fs::remove_dir_all(&dir);
        pipeline_runtime::set_state_dir(Some(dir.clone()));
    });
    dir
}

/// Every callback of the fan-out's steps, per node, in the order they fired.
static EVENTS: Mutex<Option<HashMap<String, Vec<String>>>> = Mutex::new(None);

fn push(node: &str, event: String) {
    EVENTS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(node.to_string())
        .or_default()
        .push(event);
}

fn slow_status(node: &DagNode, previous: NodeStatus) {
    std::thread::sleep(Duration::from_micros(300));
    push(&node.name, format!("{previous}->{}", node.status));
}

fn pre(node: &DagNode) -> bool {
    push(&node.name, "pre".into());
    true
}

fn slow_post(node: &DagNode) {
    std::thread::sleep(Duration::from_micros(300));
    push(&node.name, format!("post:{}", node.status));
}

#[component(
    status_change_callback = slow_status,
    pre_execute_callback = pre,
    post_execute_callback = slow_post
)]
fn leaf(i: u64) -> u64 {
    i * 2
}

#[component]
fn total(values: Vec<u64>) -> u64 {
    values.iter().sum()
}

/// 200 independent steps and a fan-in; every value read is checked against the live DAG.
#[pipeline(name = "ordering_fan_out", project = "tests")]
fn fan_out(n: u64) -> anyhow::Result<(u64, usize)> {
    let leaves: Vec<Handle<u64>> = (0..n).map(leaf).collect();
    let mut not_final = 0;
    for handle in &leaves {
        handle.clone().get()?;
        let dag = current_run().unwrap().dag();
        if !dag.node(handle.step()).unwrap().status.is_terminal() {
            not_final += 1;
        }
    }
    Ok((total(leaves).get()?, not_final))
}

fn check_fan_out(mode: Mode) {
    const N: u64 = 200;
    state();
    *EVENTS.lock().unwrap() = None;
    let finished = with_mode(mode, || fan_out::run(N)).unwrap();
    let (sum, not_final) = finished.output.unwrap();
    assert_eq!(sum, (0..N).map(|i| i * 2).sum::<u64>());
    assert_eq!(not_final, 0, "{mode:?}: a value was read before its node was final");
    assert_eq!(finished.run.status(), RunStatus::Completed);

    // `run()` has returned: every callback of the run has returned too.
    let events = EVENTS.lock().unwrap().take().unwrap();
    assert_eq!(events.len(), N as usize);
    for (node, seen) in &events {
        assert_eq!(
            seen,
            &[
                "pre",
                "pending->queued",
                "queued->running",
                "running->completed",
                "post:completed"
            ],
            "{mode:?}: callbacks of `{node}`"
        );
    }

    let store = RunStore::open(&state().join("runs.db")).unwrap();
    let nodes = store.nodes(finished.run.id()).unwrap();
    assert_eq!(nodes.len(), N as usize + 1);
    for record in &nodes {
        assert_eq!(
            record.node.status,
            NodeStatus::Completed,
            "{mode:?}: stored `{}`",
            record.node.name
        );
        let states: Vec<NodeStatus> = store
            .node_events(finished.run.id(), &record.node.name)
            .unwrap()
            .into_iter()
            .map(|(status, _)| status)
            .collect();
        assert_eq!(
            states,
            [
                NodeStatus::Pending,
                NodeStatus::Queued,
                NodeStatus::Running,
                NodeStatus::Completed
            ],
            "{mode:?}: stored states of `{}`",
            record.node.name
        );
    }
}

#[test]
fn two_hundred_steps_keep_their_order_in_debug_and_local_mode() {
    // One test for both modes: the callbacks share one record of events.
    check_fan_out(Mode::Debug);
    check_fan_out(Mode::Local);
}

// ---------------------------------------------------------------- callbacks that panic

fn panics_when_running(node: &DagNode, _: NodeStatus) {
    if node.status == NodeStatus::Running {
        panic!("the callback broke");
    }
}

#[component(status_change_callback = panics_when_running)]
fn guarded(x: u32) -> u32 {
    x + 1
}

#[pipeline(name = "ordering_panicking_callback", project = "tests")]
fn panicking_callback() -> (Result<u32, HandleError>, Result<u32, HandleError>) {
    let a = guarded(1);
    let b = leaf_free(2);
    (a.get(), b.get())
}

#[component]
fn leaf_free(x: u32) -> u32 {
    x
}

#[test]
fn a_panicking_callback_fails_its_node_not_the_whole_controller() {
    state();
    let finished = with_mode(Mode::Debug, panicking_callback::run).unwrap();
    let (a, b) = finished.output;
    let error = a.unwrap_err().to_string();
    assert!(
        error.contains("status_change_callback panicked: the callback broke"),
        "{error}"
    );
    assert_eq!(b.unwrap(), 2, "other steps are not affected");
    let node = finished.run.dag().node("guarded").unwrap().clone();
    assert_eq!(node.status, NodeStatus::Failed);
    assert_eq!(finished.run.status(), RunStatus::Failed);
}

// ---------------------------------------------------------------- the returned record

#[pipeline(name = "ordering_configuration", project = "tests")]
fn with_configuration() -> u32 {
    let config = step::connect_configuration("training", serde_json::json!({"lr": 0.1, "epochs": 3}));
    config["epochs"].as_u64().unwrap() as u32
}

#[test]
fn the_returned_run_has_the_connected_configuration() {
    state();
    let finished = with_mode(Mode::Debug, with_configuration::run).unwrap();
    assert_eq!(finished.output, 3);
    assert_eq!(
        finished.run.configuration().get("training"),
        Some(&serde_json::json!({"lr": 0.1, "epochs": 3}))
    );
}
