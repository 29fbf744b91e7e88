//! End-to-end tests of `debug_pipeline()`: real pipelines, run in-process, checked through
//! their values and the recorded DAG.

use anyhow::Context as _;
use pipeline_runtime::prelude::*;
use pipeline_runtime::{Codec, ErrorKind, call_entry, registry};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

fn debug() {
    debug_pipeline();
}

fn status_of(run: &PipelineRun, node: &str) -> NodeStatus {
    run.dag()
        .node(node)
        .unwrap_or_else(|| panic!("no node `{node}` in\n{}", run.dag().to_text()))
        .status
}

fn parents_of(run: &PipelineRun, node: &str) -> Vec<String> {
    run.dag().node(node).unwrap().parents.clone()
}

// ---------------------------------------------------------------- components

#[component]
fn numbers(n: u32) -> Vec<f64> {
    (1..=n).map(f64::from).collect()
}

#[component]
fn scale(values: Vec<f64>, factor: f64) -> Vec<f64> {
    values.iter().map(|v| v * factor).collect()
}

#[component]
fn total(values: Vec<f64>) -> f64 {
    values.iter().sum()
}

#[component]
fn square(x: f64) -> f64 {
    x * x
}

#[component]
fn sum_all(parts: Vec<f64>) -> f64 {
    parts.iter().sum()
}

#[component(return_values = ["evens", "odds"])]
fn partition(values: Vec<f64>) -> (Vec<f64>, Vec<f64>) {
    values.into_iter().partition(|v| (*v as u64) % 2 == 0)
}

#[component]
async fn add_later(a: f64, b: f64) -> f64 {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    a + b
}

#[derive(Debug, thiserror::Error)]
#[error("file `{0}` is missing")]
struct Missing(String);

#[component]
fn read_config(path: String) -> anyhow::Result<u32> {
    Err(Missing(path)).context("could not read the configuration")
}

#[component]
fn explode(x: f64) -> f64 {
    if x > 0.0 {
        panic!("boom at {x}");
    }
    x
}

// ---------------------------------------------------------------- shapes

#[pipeline(name = "chain", project = "tests")]
fn chain(n: u32) -> anyhow::Result<f64> {
    let v = numbers(n);
    let v = scale(v, 2.0);
    let t = total(v);
    Ok(t.get()?)
}

#[test]
fn chain_runs_in_order_and_records_edges() {
    debug();
    let f = chain::run(4).unwrap();
    assert_eq!(f.output.unwrap(), 20.0);
    let run = f.run;
    assert!(run.is_successful(), "{}", run.dag().to_text());
    let names: Vec<_> = run.dag().nodes().map(|n| n.name.clone()).collect();
    assert_eq!(names, ["numbers", "scale", "total"]);
    assert_eq!(parents_of(&run, "scale"), ["numbers"]);
    assert_eq!(parents_of(&run, "total"), ["scale"]);
    for n in run.dag().nodes() {
        assert_eq!(n.status, NodeStatus::Completed);
        assert_eq!(n.attempts, 1);
        assert!(n.started.unwrap() <= n.ended.unwrap());
    }
    assert_eq!(run.parameters(), [("n".to_string(), "4".to_string())]);
    assert_eq!((run.name(), run.project()), ("chain", "tests"));
}

#[pipeline(name = "fan", project = "tests")]
fn fan(n: u32) -> anyhow::Result<f64> {
    let squares: Vec<Handle<f64>> = (1..=n).map(|i| square(f64::from(i))).collect();
    Ok(sum_all(squares).get()?)
}

#[test]
fn fan_out_and_fan_in_through_a_vec_of_handles() {
    debug();
    let f = fan::run(10).unwrap();
    assert_eq!(f.output.unwrap(), 385.0);
    let dag = f.run.dag();
    assert_eq!(dag.len(), 11);
    assert_eq!(dag.node("square_9").unwrap().status, NodeStatus::Completed);
    let fan_in = dag.node("sum_all").unwrap();
    assert_eq!(fan_in.parents.len(), 10);
    assert_eq!(fan_in.parents[0], "square");
    assert_eq!(fan_in.parents[9], "square_9");
}

#[pipeline(name = "diamond", project = "tests")]
fn diamond() -> anyhow::Result<f64> {
    let base = numbers(3);
    let left = scale(&base, 10.0);
    let right = scale(&base, 100.0);
    let both = add_later(total(left), total(right));
    Ok(both.get()?)
}

#[test]
fn diamond_shares_one_output_between_two_branches() {
    debug();
    let f = diamond::run().unwrap();
    assert_eq!(f.output.unwrap(), 660.0);
    let run = f.run;
    assert_eq!(run.dag().children("numbers"), ["scale", "scale_1"]);
    assert_eq!(parents_of(&run, "add_later"), ["total", "total_1"]);
    assert_eq!(run.dag().graph().edge_count(), 6);
}

#[pipeline(name = "outputs", project = "tests")]
fn outputs(n: u32) -> anyhow::Result<(f64, f64)> {
    let (evens, odds) = partition(numbers(n));
    Ok((total(evens).get()?, total(odds).get()?))
}

#[test]
fn a_tuple_return_splits_into_named_outputs() {
    debug();
    let f = outputs::run(5).unwrap();
    assert_eq!(f.output.unwrap(), (6.0, 9.0));
    let d = partition::descriptor();
    assert_eq!(d.outputs.iter().map(|o| o.name).collect::<Vec<_>>(), ["evens", "odds"]);
    assert_eq!(d.outputs[0].type_name, "Vec<f64>");
    assert_eq!(parents_of(&f.run, "total_1"), ["partition"]);
}

#[pipeline(name = "async", project = "tests")]
async fn async_pipeline(a: f64) -> anyhow::Result<f64> {
    let doubled = scale(vec![a], 2.0);
    let first = total(doubled).await?;
    let sum = add_later(first, 1.0);
    Ok(sum.await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_pipeline_awaits_sync_and_async_components() {
    debug();
    let f = async_pipeline::run(20.0).await.unwrap();
    assert_eq!(f.output.unwrap(), 41.0);
    assert!(f.run.is_successful());
    assert_eq!(async_pipeline(1.0).await.unwrap(), 3.0);
}

#[tokio::test(flavor = "current_thread")]
async fn async_pipeline_runs_on_a_current_thread_runtime() {
    debug();
    assert_eq!(async_pipeline(2.0).await.unwrap(), 5.0);
}

// ---------------------------------------------------------------- dynamic control flow

#[pipeline(name = "dynamic", project = "tests")]
fn dynamic(threshold: f64) -> anyhow::Result<Vec<String>> {
    let mut value = total(numbers(4)); // 10
    let mut rounds = 0;
    // The loop's length depends on values read during the run.
    while value.clone().get()? < threshold {
        value = square(value);
        rounds += 1;
    }
    let steps = current_run().unwrap().dag().nodes().map(|n| n.name.clone()).collect();
    assert!(rounds <= 3);
    Ok(steps)
}

#[test]
fn control_flow_may_depend_on_values_already_read() {
    debug();
    assert_eq!(dynamic(5.0).unwrap(), ["numbers", "total"]);
    assert_eq!(dynamic(1000.0).unwrap(), ["numbers", "total", "square", "square_1"]);
}

// ---------------------------------------------------------------- failures

type ErrOutcome = (
    Result<u32, HandleError>,
    Result<Vec<f64>, HandleError>,
    Result<f64, HandleError>,
);

#[pipeline(name = "err", project = "tests")]
fn err_pipeline() -> ErrOutcome {
    let config = read_config("settings.toml".to_string());
    let scaled = scale(numbers(&config), 2.0); // `numbers` waits for the failed step
    let independent = total(numbers(3));
    (config.get(), scaled.get(), independent.get())
}

#[test]
fn an_err_fails_the_step_with_its_chain_and_skips_its_children() {
    debug();
    let f = err_pipeline::run().unwrap();
    let (config, scaled, independent) = f.output;
    let err = config.unwrap_err();
    let HandleError::Failed { step, error } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(step, "read_config");
    assert_eq!(error.kind, ErrorKind::Error);
    assert_eq!(error.message, "could not read the configuration");
    assert_eq!(error.causes, ["file `settings.toml` is missing"]);
    assert_eq!(
        err.to_string(),
        "step `read_config` failed: could not read the configuration: file `settings.toml` is missing"
    );
    let skipped = scaled.unwrap_err();
    assert!(
        matches!(&skipped, HandleError::Skipped { step, .. } if step == "scale"),
        "{skipped}"
    );
    // The independent branch still ran: abort_on_failure is off.
    assert_eq!(independent.unwrap(), 6.0);

    let run = f.run;
    assert_eq!(run.status(), RunStatus::Failed);
    assert_eq!(run.failed_nodes(), ["read_config"]);
    assert_eq!(status_of(&run, "numbers"), NodeStatus::Skipped);
    assert_eq!(status_of(&run, "scale"), NodeStatus::Skipped);
    let why = run.dag().node("numbers").unwrap().error.clone().unwrap();
    assert_eq!(
        why.message,
        "parent step `read_config` failed: could not read the configuration"
    );
    // A grandchild names the failure its chain goes back to.
    let root = run.dag().node("scale").unwrap().error.clone().unwrap();
    assert_eq!(
        root.message,
        "parent step `numbers` was skipped; the cause: step `read_config` failed: could not read the configuration"
    );
    assert_eq!(status_of(&run, "total"), NodeStatus::Completed);
}

#[pipeline(name = "panic", project = "tests")]
fn panic_pipeline() -> Result<f64, HandleError> {
    let a = explode(1.0);
    let b = explode(-1.0);
    let _ = a.get();
    b.get()
}

#[test]
fn a_panicking_step_fails_without_crashing_the_controller() {
    debug();
    let f = panic_pipeline::run().unwrap();
    assert_eq!(f.output.unwrap(), -1.0);
    let run = f.run;
    assert_eq!(run.status(), RunStatus::Failed);
    let node = run.dag().node("explode").unwrap();
    assert_eq!(node.status, NodeStatus::Failed);
    let error = node.error.clone().unwrap();
    assert_eq!(error.kind, ErrorKind::Panic);
    assert_eq!(error.message, "boom at 1");
    assert_eq!(status_of(&run, "explode_1"), NodeStatus::Completed);
    assert!(
        run.dag().to_text().contains("error: panicked: boom at 1"),
        "{}",
        run.dag().to_text()
    );
}

#[pipeline(name = "abort", project = "tests", abort_on_failure = true)]
fn abort_pipeline() -> Vec<Result<f64, HandleError>> {
    let failing = explode(2.0);
    let _ = failing.clone().get(); // wait, so that the abort has happened before the next call
    let later = square(3.0);
    vec![failing.get(), later.get()]
}

#[test]
fn abort_on_failure_aborts_the_steps_that_had_not_started() {
    debug();
    let f = abort_pipeline::run().unwrap();
    let later = f.output[1].clone().unwrap_err();
    assert!(
        matches!(&later, HandleError::Aborted { step, reason } if step == "square" && reason.contains("`explode` failed")),
        "{later}"
    );
    assert_eq!(f.run.status(), RunStatus::Failed);
    assert_eq!(status_of(&f.run, "square"), NodeStatus::Aborted);
}

#[component(continue_on_fail = true)]
fn flaky_optional(x: f64) -> anyhow::Result<f64> {
    anyhow::ensure!(x < 0.0, "optional step failed on {x}");
    Ok(x)
}

#[component(parents = ["flaky_optional"])]
fn after_optional(x: f64) -> f64 {
    x
}

#[component(continue_behaviour(continue_on_fail = true, skip_children_on_fail = false))]
fn flaky_keep_children(x: f64) -> anyhow::Result<f64> {
    anyhow::ensure!(x < 0.0, "failed on {x}");
    Ok(x)
}

#[component(parents = ["flaky_keep_children"])]
fn after_keep(x: f64) -> f64 {
    x + 1.0
}

#[pipeline(name = "continue", project = "tests")]
fn continue_pipeline() -> (Result<f64, HandleError>, Result<f64, HandleError>) {
    let _ = flaky_optional(1.0);
    let skipped = after_optional(1.0);
    let _ = flaky_keep_children(1.0);
    let runs = after_keep(1.0);
    (skipped.get(), runs.get())
}

#[test]
fn continue_behaviour_keeps_the_run_successful_and_chooses_what_children_do() {
    debug();
    let f = continue_pipeline::run().unwrap();
    let (skipped, runs) = f.output;
    assert!(matches!(skipped, Err(HandleError::Skipped { .. })));
    assert_eq!(runs.unwrap(), 2.0);
    assert_eq!(f.run.status(), RunStatus::Completed, "{}", f.run.dag().to_text());
    assert_eq!(f.run.failed_nodes(), ["flaky_optional", "flaky_keep_children"]);
}

// ---------------------------------------------------------------- parents, repeats, retries

static SETUP_DONE: AtomicU32 = AtomicU32::new(0);

#[component]
fn setup() -> u32 {
    SETUP_DONE.fetch_add(1, Ordering::SeqCst);
    1
}

#[component(parents = ["setup"])]
fn uses_setup(x: u32) -> u32 {
    assert!(SETUP_DONE.load(Ordering::SeqCst) > 0, "ran before its parent");
    x
}

#[pipeline(name = "parents", project = "tests")]
fn parents_pipeline() -> Result<u32, HandleError> {
    let _ = setup();
    uses_setup(7).get()
}

#[pipeline(name = "orphan", project = "tests")]
fn orphan_pipeline() -> Result<u32, HandleError> {
    uses_setup(7).get()
}

#[test]
fn explicit_parents_add_edges_and_unknown_ones_fail_clearly() {
    debug();
    let f = parents_pipeline::run().unwrap();
    assert_eq!(f.output.unwrap(), 7);
    assert_eq!(parents_of(&f.run, "uses_setup"), ["setup"]);

    let f = orphan_pipeline::run().unwrap();
    let err = f.output.unwrap_err().to_string();
    assert!(err.contains("unknown parent step `setup`"), "{err}");
    assert_eq!(f.run.status(), RunStatus::Failed);
}

#[pipeline(name = "repeats", project = "tests")]
fn repeats() -> anyhow::Result<Vec<f64>> {
    let a = square(2.0);
    let b = square(3.0);
    let c = square(&a);
    Ok(vec![a.get()?, b.get()?, c.get()?])
}

#[test]
fn repeated_calls_are_distinct_nodes() {
    debug();
    let f = repeats::run().unwrap();
    assert_eq!(f.output.unwrap(), [4.0, 9.0, 16.0]);
    let names: Vec<_> = f.run.dag().nodes().map(|n| n.name.clone()).collect();
    assert_eq!(names, ["square", "square_1", "square_2"]);
    assert_eq!(parents_of(&f.run, "square_2"), ["square"]);
}

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);

#[component(retries = 2)]
fn flaky() -> anyhow::Result<u32> {
    let n = FLAKY_CALLS.fetch_add(1, Ordering::SeqCst);
    anyhow::ensure!(n >= 2, "attempt {n} failed");
    Ok(n)
}

fn retry_until_three(_node: &DagNode, retries: u32) -> bool {
    retries < 3
}

static ALWAYS_CALLS: AtomicU32 = AtomicU32::new(0);

#[component(retry_on_failure = retry_until_three)]
fn always_fails(x: Vec<f64>) -> anyhow::Result<f64> {
    ALWAYS_CALLS.fetch_add(1, Ordering::SeqCst);
    anyhow::bail!("never works with {} values", x.len())
}

#[pipeline(name = "retries", project = "tests")]
fn retries() -> (Result<u32, HandleError>, Result<f64, HandleError>) {
    (flaky().get(), always_fails(vec![1.0]).get())
}

#[test]
fn retries_by_count_and_by_callback() {
    debug();
    let f = retries::run().unwrap();
    assert_eq!(f.output.0.unwrap(), 2);
    assert_eq!(f.run.dag().node("flaky").unwrap().attempts, 3);
    assert!(f.output.1.is_err());
    assert_eq!(ALWAYS_CALLS.load(Ordering::SeqCst), 4);
    let node = f.run.dag().node("always_fails").unwrap();
    assert_eq!((node.attempts, node.status), (4, NodeStatus::Failed));
}

// ---------------------------------------------------------------- callbacks

static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn on_status(node: &DagNode, previous: NodeStatus) {
    EVENTS
        .lock()
        .unwrap()
        .push(format!("{}:{}->{}", node.name, previous, node.status));
}

fn only_positive(node: &DagNode) -> bool {
    EVENTS.lock().unwrap().push(format!("pre:{}", node.name));
    node.name != "watched_1"
}

fn after(node: &DagNode) {
    EVENTS
        .lock()
        .unwrap()
        .push(format!("post:{}:{}", node.name, node.status));
}

#[component(
    status_change_callback = on_status,
    pre_execute_callback = only_positive,
    post_execute_callback = after
)]
fn watched(x: f64) -> f64 {
    x
}

#[pipeline(name = "callbacks", project = "tests")]
fn callbacks() -> (
    Result<f64, HandleError>,
    Result<f64, HandleError>,
    Result<f64, HandleError>,
) {
    let a = watched(1.0);
    let b = watched(2.0);
    let c = square(&b); // a descendant of a skipped node
    (a.get(), b.get(), c.get())
}

#[test]
fn callbacks_fire_in_order_and_pre_execute_can_skip() {
    debug();
    let f = callbacks::run().unwrap();
    assert_eq!(f.output.0.unwrap(), 1.0);
    assert!(matches!(f.output.1, Err(HandleError::Skipped { .. })));
    assert!(matches!(f.output.2, Err(HandleError::Skipped { .. })));
    let events = EVENTS.lock().unwrap().clone();
    let of = |name: &str| -> Vec<&str> {
        let (pre, own, post) = (format!("pre:{name}"), format!("{name}:"), format!("post:{name}:"));
        events
            .iter()
            .map(String::as_str)
            .filter(|e| *e == pre || e.starts_with(&own) || e.starts_with(&post))
            .collect()
    };
    assert_eq!(
        of("watched"),
        [
            "pre:watched",
            "watched:pending->queued",
            "watched:queued->running",
            "watched:running->completed",
            "post:watched:completed"
        ]
    );
    assert_eq!(
        of("watched_1"),
        ["pre:watched_1", "watched_1:pending->skipped"],
        "a node the pre callback skipped did not run: no post callback"
    );
    let reason = f.run.dag().node("watched_1").unwrap().error.clone().unwrap();
    assert_eq!(reason.message, "pre_execute_callback returned false");
}

// ---------------------------------------------------------------- values move

static CLONES: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Counted(Vec<u8>);

impl Clone for Counted {
    fn clone(&self) -> Self {
        CLONES.fetch_add(1, Ordering::SeqCst);
        Counted(self.0.clone())
    }
}

#[component]
fn make_counted(n: u8) -> Counted {
    Counted(vec![n; 4])
}

#[component]
fn size(c: Counted) -> usize {
    c.0.len()
}

#[pipeline(name = "moves", project = "tests")]
fn moves() -> anyhow::Result<(usize, usize)> {
    let single = make_counted(1);
    let one = size(single).get()?; // one consumer: moved
    let shared = make_counted(2);
    let a = size(&shared);
    let b = size(shared); // two consumers: one copy, the last one moves
    Ok((one, a.get()? + b.get()?))
}

#[test]
fn values_move_between_steps_and_are_cloned_only_when_shared() {
    debug();
    CLONES.store(0, Ordering::SeqCst);
    assert_eq!(moves().unwrap(), (4, 8));
    assert_eq!(CLONES.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------- plain Rust, registry, renderings

#[test]
fn a_component_is_plain_rust_outside_any_pipeline() {
    assert_eq!(square::call(3.0), 9.0);
    assert_eq!(total::call(vec![1.0, 2.0]), 3.0);
    assert!(read_config::call("x".into()).is_err());
    // The pipeline-style call works outside a pipeline too, at once.
    let h = scale(vec![1.0, 2.0], 3.0);
    assert!(h.is_ready());
    assert_eq!(h.get().unwrap(), [3.0, 6.0]);
    let failed = explode(5.0).get().unwrap_err();
    assert!(failed.to_string().contains("panicked: boom at 5"), "{failed}");
}

#[test]
fn every_component_is_registered_with_a_callable_entry_point() {
    registry::validate().unwrap();
    let c = registry::find_component("scale").unwrap().expect("scale is registered");
    assert_eq!(c.function, "scale");
    assert!(c.module_path.ends_with("debug_pipeline"), "{}", c.module_path);
    assert_eq!(c.code_hash.len(), 16);
    assert_ne!(
        c.code_hash,
        registry::find_component("total").unwrap().unwrap().code_hash
    );
    assert_eq!(
        c.params.iter().map(|p| (p.name, p.type_name)).collect::<Vec<_>>(),
        [("values", "Vec<f64>"), ("factor", "f64")]
    );

    let values = pipeline_core_codec::encode(&vec![1.0f64, 2.0]);
    let factor = pipeline_core_codec::encode(&10.0f64);
    let out = call_entry(c.entry.io, Codec::Bincode, &[&values, &factor]).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(pipeline_core_codec::decode::<Vec<f64>>(&out[0]), vec![10.0, 20.0]);

    let err = call_entry(c.entry.io, Codec::Bincode, &[&values]).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Codec);
    assert!(err.message.contains("takes 2 inputs, got 1"), "{err}");
    let err = call_entry(c.entry.io, Codec::Bincode, &[&values, &[0xff, 0xff]]).unwrap_err();
    assert!(err.message.starts_with("input `factor`"), "{err}");

    let failing = registry::find_component("read_config").unwrap().unwrap();
    let err = call_entry(
        failing.entry.io,
        Codec::Bincode,
        &[&pipeline_core_codec::encode(&"a".to_string())],
    )
    .unwrap_err();
    assert_eq!(err.causes, ["file `a` is missing"]);
    assert!(registry::find_component("no_such_component").unwrap().is_none());
    assert!(registry::pipelines().any(|p| p.name == "diamond" && p.project == "tests"));
}

mod pipeline_core_codec {
    pub fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap()
    }
    pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> T {
        bincode::serde::decode_from_slice(b, bincode::config::standard())
            .unwrap()
            .0
    }
}

#[test]
fn the_dag_renders_as_text_dot_and_mermaid() {
    debug();
    let run = diamond::run().unwrap().run;
    let dot = run.dag().to_dot();
    assert!(dot.contains("\"numbers\" -> \"scale_1\";"), "{dot}");
    let mermaid = run.dag().to_mermaid();
    assert!(mermaid.contains("n0 --> n1"), "{mermaid}");
    assert!(mermaid.contains(":::completed"), "{mermaid}");
    let text = run.dag().to_text();
    assert!(
        text.contains("add_later") && text.contains("<- total, total_1"),
        "{text}"
    );
}

// ---------------------------------------------------------------- runs are independent

#[pipeline(name = "outer", project = "tests")]
fn outer() -> anyhow::Result<f64> {
    let a = square(2.0);
    let inner = chain(3)?; // a nested run of its own
    let b = square(inner);
    Ok(a.get()? + b.get()?)
}

#[test]
fn nested_and_parallel_runs_keep_their_own_dags() {
    debug();
    let f = outer::run().unwrap();
    assert_eq!(f.output.unwrap(), 4.0 + 144.0);
    // The nested run is one node of the outer DAG; its own steps stay in its own run.
    let names: Vec<_> = f.run.dag().nodes().map(|n| n.name.clone()).collect();
    assert_eq!(names, ["square", "chain", "square_1"]);
    assert_eq!(f.run.dag().node("chain").unwrap().status, NodeStatus::Completed);

    let threads: Vec<_> = (1..=4u32)
        .map(|n| std::thread::spawn(move || fan::run(n * 10).unwrap()))
        .collect();
    for (n, t) in (1..=4u32).zip(threads) {
        let f = t.join().unwrap();
        assert_eq!(f.run.dag().len() as u32, n * 10 + 1);
        let expected: f64 = (1..=n * 10).map(|i| f64::from(i * i)).sum();
        assert_eq!(f.output.unwrap(), expected);
    }
}

#[pipeline(name = "body_panics", project = "tests")]
fn body_panics() -> f64 {
    let _ = square(2.0);
    panic!("the body gave up");
}

#[test]
fn a_panicking_body_still_ends_its_steps_and_then_panics() {
    debug();
    let err = std::panic::catch_unwind(body_panics).unwrap_err();
    assert_eq!(err.downcast_ref::<&str>(), Some(&"the body gave up"));
}

// ---------------------------------------------------------------- steps run when wanted

static LAZY_RUNS: AtomicU32 = AtomicU32::new(0);

#[component]
fn lazy_step(x: u32) -> u32 {
    LAZY_RUNS.fetch_add(1, Ordering::SeqCst);
    x + 1
}

/// What the body saw: runs before reading, the value, runs after reading.
#[pipeline(name = "lazy_reads", project = "tests")]
fn lazy_reads() -> (u32, u32, u32) {
    let wanted = lazy_step(1);
    // Never read: it still runs, by the run's end.
    let _unread = lazy_step(10);
    let before = LAZY_RUNS.load(Ordering::SeqCst);
    let value = wanted.get().unwrap();
    (before, value, LAZY_RUNS.load(Ordering::SeqCst))
}

/// As in ClearML's debug mode, a step runs when something waits for its value (or for the
/// run's end), on the run's step thread, so adding steps never hands each one to that thread.
#[test]
fn a_debug_step_runs_when_something_waits_for_it() {
    debug();
    let finished = lazy_reads::run().unwrap();
    let (before, value, after) = finished.output;
    assert_eq!(before, 0, "no step ran before a value was wanted");
    assert_eq!(value, 2);
    assert!(after >= 1, "the wanted step ran");
    assert_eq!(
        LAZY_RUNS.load(Ordering::SeqCst),
        2,
        "the unread step ran by the run's end"
    );
    assert_eq!(status_of(&finished.run, "lazy_step_1"), NodeStatus::Completed);
}

#[component]
fn polled(x: u32) -> u32 {
    x * 3
}

#[pipeline(name = "polled_ready", project = "tests")]
fn polled_ready() -> u32 {
    let h = polled(2);
    // A body that polls instead of waiting: the steps must still run.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !h.is_ready() {
        assert!(std::time::Instant::now() < deadline, "the polled step never ran");
        std::thread::yield_now();
    }
    h.get().unwrap()
}

#[test]
fn a_body_polling_is_ready_sees_its_step_finish() {
    debug();
    assert_eq!(polled_ready::run().unwrap().output, 6);
}

// ------------------------------------------------- which thread runs a step

fn this_thread() -> String {
    format!("{:?}", std::thread::current().id())
}

#[component]
fn thread_of(x: u32) -> String {
    format!("{x} on {}", this_thread())
}

#[component]
fn calls_a_component(x: f64) -> f64 {
    // Inside a step a component call runs at once, as a plain function.
    square(x).get().unwrap()
}

#[pipeline(name = "started_in_a_step", project = "tests")]
fn started_in_a_step(x: f64) -> f64 {
    square(x).get().unwrap()
}

#[component]
fn starts_a_pipeline(x: f64) -> String {
    let finished = started_in_a_step::run(x).unwrap();
    format!("{} {}", finished.output, finished.run.parent().is_none())
}

#[pipeline(name = "who_runs", project = "tests")]
fn who_runs() -> (String, String, f64, String) {
    let read = thread_of(1).get().unwrap();
    let inner = calls_a_component(3.0).get().unwrap();
    let started = starts_a_pipeline(2.0).get().unwrap();
    (this_thread(), read, inner, started)
}

#[test]
fn a_blocking_read_runs_the_step_on_the_readers_thread_outside_the_run() {
    debug();
    let finished = who_runs::run().unwrap();
    let (body, read, inner, started) = finished.output;
    assert_eq!(read, format!("1 on {body}"), "the body's `.get()` ran the step");
    // Run by the body's thread, a step is still outside the run's body: its component call
    // and the pipeline it starts are not nodes of the run.
    assert_eq!(inner, 9.0);
    assert_eq!(started, "4 true");
    let mut names: Vec<_> = finished.run.dag().nodes().map(|n| n.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["calls_a_component", "starts_a_pipeline", "thread_of"]);
    assert!(finished.run.is_successful());
}

#[pipeline(name = "who_runs_awaited", project = "tests")]
async fn who_runs_awaited() -> (String, String) {
    (this_thread(), thread_of(2).await.unwrap())
}

#[tokio::test(flavor = "current_thread")]
async fn an_awaited_step_runs_on_the_step_thread() {
    debug();
    let (body, read) = who_runs_awaited::run().await.unwrap().output;
    assert!(read.starts_with("2 on "), "{read}");
    assert_ne!(
        read,
        format!("2 on {body}"),
        "an async reader's thread must not run step code"
    );
}

static AT_ONCE: AtomicU32 = AtomicU32::new(0);
static MOST_AT_ONCE: AtomicU32 = AtomicU32::new(0);

#[component]
fn one_at_a_time(x: u32) -> u32 {
    let now = AT_ONCE.fetch_add(1, Ordering::SeqCst) + 1;
    MOST_AT_ONCE.fetch_max(now, Ordering::SeqCst);
    std::thread::sleep(std::time::Duration::from_millis(2));
    AT_ONCE.fetch_sub(1, Ordering::SeqCst);
    x
}

#[pipeline(name = "many_readers", project = "tests")]
fn many_readers() -> u32 {
    let handles: Vec<_> = (0..40).map(one_at_a_time).collect();
    let (odd, even): (Vec<_>, Vec<_>) = handles.into_iter().enumerate().partition(|(i, _)| i % 2 == 1);
    let read = |half: Vec<(usize, Handle<u32>)>| half.into_iter().map(|(_, h)| h.get().unwrap()).sum::<u32>();
    let extra = one_at_a_time(100);
    // Three threads read at once: two may run steps, the third awaits (the step thread runs
    // its step).
    std::thread::scope(|s| {
        let other = s.spawn(|| read(odd));
        let awaited = s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(async { extra.await.unwrap() })
        });
        read(even) + other.join().unwrap() + awaited.join().unwrap()
    })
}

#[test]
fn steps_run_one_at_a_time_whoever_reads() {
    debug();
    let finished = many_readers::run().unwrap();
    assert_eq!(finished.output, (0..40).sum::<u32>() + 100);
    assert_eq!(MOST_AT_ONCE.load(Ordering::SeqCst), 1, "two steps ran at once");
}
