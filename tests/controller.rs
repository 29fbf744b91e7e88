//! `PipelineController`: pipelines assembled at run time from registered components, in debug
//! and local mode, against the equivalent `#[pipeline]` function; spec files; and every kind
//! of mistake a spec can hold, reported before anything runs.

use pipeline_runtime::controller::spec::{PipelineSpec, SpecFormat};
use pipeline_runtime::prelude::*;
use pipeline_runtime::store::RunStore;
use pipeline_runtime::{
    CacheRefresh, Config, ContinueBehaviour, ControllerError, FailCondition, Mode, PipelineController, StopMark, step,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

#[component]
fn numbers(n: u32) -> Vec<u64> {
    (1..=u64::from(n)).collect()
}

#[component]
fn scale(values: Vec<u64>, factor: u64) -> Vec<u64> {
    values.into_iter().map(|v| v * factor).collect()
}

#[component]
fn total(values: Vec<u64>) -> u64 {
    values.iter().sum()
}

#[component]
fn sum_all(parts: Vec<u64>) -> u64 {
    parts.iter().sum()
}

#[component(return_values = ["low", "high"])]
fn split(values: Vec<u64>) -> (Vec<u64>, Vec<u64>) {
    let mid = values.len() / 2;
    (values[..mid].to_vec(), values[mid..].to_vec())
}

#[component]
fn label(name: String, count: u64) -> String {
    format!("{name}: {count}")
}

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);
static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn skip_it(node: &DagNode) -> bool {
    SEEN.lock().unwrap().push(format!("pre {}", node.name));
    node.name != "skipped"
}

fn after(node: &DagNode) {
    SEEN.lock().unwrap().push(format!("post {} {}", node.name, node.status));
}

fn changed(node: &DagNode, previous: NodeStatus) {
    SEEN.lock()
        .unwrap()
        .push(format!("status {} {previous}->{}", node.name, node.status));
}
static STAMPS: AtomicU32 = AtomicU32::new(0);

/// A new number at each execution: shows which run a cached value came from.
#[component(cache = true)]
fn stamp(x: u32) -> u32 {
    x * 100 + STAMPS.fetch_add(1, Ordering::SeqCst)
}

/// Fails its first call in this process (debug mode runs it in-process).
#[component]
fn flaky(x: u64) -> anyhow::Result<u64> {
    if FLAKY_CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
        anyhow::bail!("first call fails");
    }
    Ok(x)
}

#[component]
fn always_fails(x: u64) -> anyhow::Result<u64> {
    anyhow::bail!("no good: {x}")
}

static GATE: (std::sync::Mutex<bool>, std::sync::Condvar) = (std::sync::Mutex::new(false), std::sync::Condvar::new());

/// Waits until the test opens the gate (debug mode runs it in this process).
#[component]
fn gated(x: u64) -> u64 {
    let (open, opened) = &GATE;
    let _open = opened.wait_while(open.lock().unwrap(), |o| !*o).unwrap();
    x
}

/// Runs for a minute unless stopped (local mode: a worker process).
#[component]
fn sleeps(x: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_secs(60));
    x
}

/// The decorator form of the spec below.
#[pipeline(name = "controller_twin", project = "tests")]
fn twin(n: u32, factor: u64) -> String {
    let values = numbers(n);
    let (low, high) = split(&values);
    let a = scale(&low, factor);
    let b = scale(&high, factor);
    let ta = total(&a);
    let tb = total(&b);
    let sum = sum_all(vec![ta, tb]);
    label("sum", &sum).get().unwrap()
}

/// The same DAG as `twin`, built at run time; node names as the decorator derives them.
fn twin_controller() -> PipelineController {
    let mut pipe = PipelineController::new("controller_twin_dyn", "tests");
    pipe.add_parameter("n", 10, "how many numbers")
        .add_parameter("factor", 3, "");
    pipe.add_function_step("numbers", numbers::descriptor(), json!({ "n": "${pipeline.n}" }));
    pipe.add_function_step("split", "split", json!({ "values": "${numbers.return_object}" }));
    pipe.add_function_step(
        "scale",
        "scale",
        json!({ "values": "${split.low}", "factor": "${pipeline.factor}" }),
    );
    pipe.add_function_step(
        "scale_1",
        "scale",
        json!({ "values": "${split.high}", "factor": "${pipeline.factor}" }),
    );
    pipe.add_function_step("total", "total", json!({ "values": "${scale.return_object}" }));
    pipe.add_function_step("total_1", "total", json!({ "values": "${scale_1.return_object}" }));
    pipe.add_function_step(
        "sum_all",
        "sum_all",
        json!({ "parts": ["${total.return_object}", "${total_1.return_object}"] }),
    );
    pipe.add_function_step(
        "label",
        "label",
        json!({ "name": "sum", "count": "${sum_all.return_object}" }),
    );
    pipe
}

fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("controller").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(mode: Mode, name: &str) -> Config {
    Config::current().with_mode(mode).with_state_dir(folder(name))
}

/// Node name -> (component, sorted parents, status).
fn shape(run: &PipelineRun) -> Vec<(String, String, Vec<String>, NodeStatus)> {
    // Sorted by name: names are unique.
    let mut nodes: Vec<_> = run
        .dag()
        .nodes()
        .map(|n| {
            let mut parents = n.parents.clone();
            parents.sort();
            (n.name.clone(), n.component.clone(), parents, n.status)
        })
        .collect();
    nodes.sort_by(|a, b| a.0.cmp(&b.0));
    nodes
}

fn same_as_decorator(mode: Mode, name: &str) {
    config(mode, name).scope(|| {
        let typed = twin::run(10, 3).unwrap();
        let dynamic = twin_controller().run().unwrap();
        assert!(typed.run.is_successful() && dynamic.run.is_successful());
        assert_eq!(typed.output, "sum: 165");
        assert_eq!(
            dynamic.output,
            [("label.return_object".to_string(), json!("sum: 165"))]
                .into_iter()
                .collect()
        );
        assert_eq!(shape(&typed.run), shape(&dynamic.run));
        assert_eq!(dynamic.run.dag().node("sum_all").unwrap().parents.len(), 2);
        // The spec is stored with the run, and the parameters as given.
        let stored = RunStore::open(&folder_of(name).join("runs.db")).unwrap();
        let record = stored.run(dynamic.run.id()).unwrap().unwrap();
        let spec: PipelineSpec = serde_json::from_value(record.configuration["pipeline_spec"].clone()).unwrap();
        assert_eq!(&spec, twin_controller().spec());
        assert_eq!(
            record.parameters,
            vec![
                ("n".to_string(), "10".to_string()),
                ("factor".to_string(), "3".to_string())
            ]
        );
    });
}

fn folder_of(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("controller").join(name)
}

#[test]
fn a_controller_runs_the_same_dag_as_its_decorator_twin_in_debug_mode() {
    same_as_decorator(Mode::Debug, "twin-debug");
}

#[test]
fn a_controller_runs_the_same_dag_as_its_decorator_twin_in_local_mode() {
    same_as_decorator(Mode::Local, "twin-local");
}

#[test]
fn start_locally_runs_steps_as_subprocesses_with_parameters_set() {
    config(Mode::Debug, "start-locally").scope(|| {
        let mut pipe = twin_controller();
        pipe.set_parameter("n", 4);
        let finished = pipe.start_locally(true).unwrap();
        assert_eq!(finished.output["label.return_object"], json!("sum: 30"));
        assert_eq!(finished.run.record().mode, "local");
    });
}

#[test]
fn every_mistake_in_a_spec_is_reported_at_once_before_anything_runs() {
    let mut pipe = PipelineController::new("bad_spec", "tests");
    pipe.add_parameter("n", "ten", "");
    pipe.add_function_step("numbers", "numbers", json!({ "n": "${pipeline.n}" }));
    pipe.add_function_step("ghost", "no_such_component", json!({}));
    pipe.add_function_step(
        "a",
        "scale",
        json!({ "values": "${nowhere.return_object}", "factor": 2 }),
    );
    pipe.add_function_step("b", "scale", json!({ "values": "${numbers.nothing}", "factor": "x" }));
    pipe.add_function_step("c", "total", json!({ "values": "${label.return_object}", "extra": 1 }));
    pipe.add_function_step("label", "label", json!({ "name": "x" }));
    pipe.add_function_step("d", "sum_all", json!({ "parts": ["${numbers.return_object}"] }));
    pipe.add_function_step("e", "total", json!({ "values": "${pipeline.missing}" }))
        .parents(["nobody"]);
    pipe.add_function_step("f", "total", json!({ "values": "${f.return_object}" }));
    pipe.add_function_step("g", "total", json!([1, 2]));
    pipe.add_function_step("h", "total", json!({ "values": [] }))
        .retry_backoff(std::time::Duration::ZERO, 0.5, -1.0);
    let err = pipe.check().unwrap_err();
    let ControllerError::Invalid(errors) = &err else {
        panic!("{err}")
    };
    let expected = [
        "step `numbers`, argument `n`: the parameter `n`: `\"ten\"` is not a `u32`",
        "step `ghost`: no component `no_such_component` is registered in this binary",
        "step `a`, argument `values`: `${nowhere.return_object}` names no step",
        "step `b`, argument `values`: step `numbers` has no output `nothing` (its outputs: return_object)",
        "step `b`, argument `factor`: `\"x\"` is not a `u64`",
        "step `c`: component `total` has no parameter `extra` (its parameters: values)",
        "step `c`, argument `values`: `${label.return_object}` is a `String`, the parameter a `Vec<u64>`",
        "step `label`, argument `count`: missing (a `u64`)",
        "step `d`, argument `parts`: `${numbers.return_object}` is a `Vec<u64>` (gathered: a `Vec` of them), the parameter a `Vec<u64>`",
        "step `e`: its parent `nobody` is not a step",
        "step `e`, argument `values`: `${pipeline.missing}` names no parameter of the pipeline",
        "step `f`, argument `values`: `${f.return_object}` is the step's own output",
        "step `g`: `function_kwargs` must be a JSON object of arguments by name, not `[1,2]`",
        "step `h`: `retry_backoff` multiplies each wait: 1 or more, not 0.5",
        "step `h`: `retry_jitter` must be zero or more, not -1",
    ];
    for e in expected {
        assert!(errors.iter().any(|got| got.starts_with(e)), "missing `{e}` in:\n{err}");
    }
    // Nothing ran: the run is refused with the same errors.
    assert!(matches!(pipe.run(), Err(ControllerError::Invalid(again)) if &again == errors));
}

#[test]
fn a_cycle_and_duplicate_names_are_errors() {
    let mut pipe = PipelineController::new("cyclic", "tests");
    pipe.add_function_step("a", "total", json!({ "values": "${c.return_object}" }));
    pipe.add_function_step("b", "scale", json!({ "values": "${a.return_object}", "factor": 1 }));
    pipe.add_function_step("c", "scale", json!({ "values": "${b.return_object}", "factor": 1 }));
    pipe.add_function_step("c", "numbers", json!({ "n": 1 }));
    let err = pipe.check().unwrap_err().to_string();
    assert!(err.contains("two steps are called `c`"), "{err}");
    // `a` takes a `u64` from `c` whose first definition gives a `Vec<u64>`: also a type error;
    // the cycle is named whichever `c` it goes through.
    let mut pipe = PipelineController::new("cyclic", "tests");
    pipe.add_function_step("a", "scale", json!({ "values": "${c.return_object}", "factor": 1 }));
    pipe.add_function_step("b", "scale", json!({ "values": "${a.return_object}", "factor": 1 }));
    pipe.add_function_step("c", "scale", json!({ "values": "${b.return_object}", "factor": 1 }));
    let err = pipe.check().unwrap_err().to_string();
    assert!(err.contains("the steps form a cycle: "), "{err}");
    assert!(
        err.contains("a -> b -> c -> a") || err.contains("b -> c -> a -> b") || err.contains("c -> a -> b -> c"),
        "{err}"
    );
}

#[test]
fn a_spec_round_trips_through_toml_and_json_files() {
    let dir = folder("files");
    let mut pipe = twin_controller();
    pipe.set_version("1.2")
        .set_retry_on_failure(1)
        .add_tags(["nightly"])
        .connect_configuration("model", json!({ "depth": 3 }));
    pipe.add_function_step("extra", "total", json!({ "values": [1, 2, 3] }))
        .cache_executed_step(true)
        .time_limit(std::time::Duration::from_secs(90))
        .parents(["label"]);
    for file in ["pipe.toml", "pipe.json"] {
        let path = dir.join(file);
        pipe.save(&path).unwrap();
        let loaded = PipelineController::from_file(&path).unwrap();
        assert_eq!(loaded.spec(), pipe.spec(), "{file}");
    }
    let toml = pipe.render(SpecFormat::Toml).unwrap();
    assert!(toml.contains("[[steps]]"), "{toml}");
    // A file with a mistake is refused with where it is.
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\nproject = \"y\"\n[[steps]]\nname = \"a\"\ncomponent = \"total\"\nfunction_kwarg = {}\n",
    )
    .unwrap();
    let err = PipelineController::from_file(&bad).unwrap_err().to_string();
    assert!(err.contains("bad.toml") && err.contains("function_kwarg"), "{err}");
}

#[test]
fn per_step_options_apply_to_that_step_only() {
    config(Mode::Debug, "options").scope(|| {
        let mut pipe = PipelineController::new("controller_options", "tests");
        pipe.add_function_step("first", "flaky", json!({ "x": 5 }))
            .retry_on_failure(1)
            .retry_backoff(std::time::Duration::from_millis(50), 2.0, 0.0);
        pipe.add_function_step("cached", "total", json!({ "values": [4, 5] }))
            .cache_executed_step(true);
        let finished = pipe.run().unwrap();
        assert!(finished.run.is_successful(), "{}", finished.run.dag().to_text());
        let dag = finished.run.dag();
        assert_eq!(dag.node("first").unwrap().attempts, 2);
        // The wait before the retry is in the node's history: queued again, then running.
        let store = RunStore::open(&folder_of("options").join("runs.db")).unwrap();
        let history = store.node_events(finished.run.id(), "first").unwrap();
        let states: Vec<NodeStatus> = history.iter().map(|(s, _)| *s).collect();
        use NodeStatus::*;
        assert_eq!(states, [Pending, Queued, Running, Queued, Running, Completed]);
        let waited = history[4].1.duration_since(history[3].1).unwrap();
        assert!(waited >= std::time::Duration::from_millis(50), "{waited:?}");
        assert_eq!(finished.output["first.return_object"], json!(5));
        // Served from the cache the second time.
        let again = pipe.run().unwrap();
        assert_eq!(again.run.dag().node("cached").unwrap().status, NodeStatus::Cached);
        assert_eq!(again.output["cached.return_object"], json!(9));
    });
}

#[test]
fn is_successful_judges_steps_by_the_fail_condition_and_a_cached_step_succeeds() {
    config(Mode::Debug, "is-successful").scope(|| {
        let mut pipe = PipelineController::new("controller_success", "tests");
        pipe.add_function_step("bad", "always_fails", json!({ "x": 1 }))
            .continue_behaviour(ContinueBehaviour {
                continue_on_fail: true,
                ..ContinueBehaviour::DEFAULT
            });
        pipe.add_function_step("good", "total", json!({ "values": [1, 2] }))
            .cache_executed_step(true);
        let first = pipe.run().unwrap().run;
        // The run completed (the failure was forgiven), but a step failed.
        assert!(first.is_successful());
        assert!(first.is_successful_with(false, FailCondition::All));
        assert!(!first.is_successful_with(true, FailCondition::All));
        assert!(!first.is_successful_with(true, FailCondition::Failed));
        assert!(first.is_successful_with(true, FailCondition::Aborted));
        // Served from the cache: still a success.
        let mut only_good = PipelineController::new("controller_success", "tests");
        only_good
            .add_function_step("good", "total", json!({ "values": [1, 2] }))
            .cache_executed_step(true);
        let second = only_good.run().unwrap().run;
        assert_eq!(second.dag().node("good").unwrap().status, NodeStatus::Cached);
        assert!(second.is_successful_with(true, FailCondition::All));
    });
}

#[test]
fn a_cache_refresh_runs_the_step_and_overwrites_its_entry() {
    config(Mode::Debug, "refresh").scope(|| {
        let mut pipe = PipelineController::new("controller_refresh", "tests");
        pipe.add_function_step("stamp", "stamp", json!({ "x": 1 }));
        pipe.add_function_step("total", "total", json!({ "values": [1, 2] }))
            .cache_executed_step(true);
        let value = |pipe: &PipelineController| {
            let finished = pipe.run().unwrap();
            let dag = finished.run.dag();
            (
                finished.output["stamp.return_object"].as_u64().unwrap(),
                dag.node("stamp").unwrap().status,
                dag.node("total").unwrap().status,
            )
        };
        let (first, ..) = value(&pipe);
        assert_eq!(value(&pipe), (first, NodeStatus::Cached, NodeStatus::Cached));
        // Only `stamp` is refreshed; its new value replaces the cached one.
        pipe.set_cache_refresh(CacheRefresh::Components(vec!["stamp".into()]));
        let (second, stamp, total) = value(&pipe);
        assert_ne!(second, first);
        assert_eq!((stamp, total), (NodeStatus::Completed, NodeStatus::Cached));
        pipe.set_cache_refresh(CacheRefresh::Off);
        assert_eq!(value(&pipe), (second, NodeStatus::Cached, NodeStatus::Cached));
        // The same through the configuration, for every step.
        let all = Config::current().with_cache_refresh(CacheRefresh::All);
        let (third, stamp, total) = all.scope(|| value(&pipe));
        assert_ne!(third, second);
        assert_eq!((stamp, total), (NodeStatus::Completed, NodeStatus::Completed));
    });
}

#[test]
fn a_spawned_controller_answers_while_it_runs_and_can_be_stopped() {
    config(Mode::Debug, "spawned").scope(|| {
        let mut pipe = PipelineController::new("controller_spawned", "tests");
        pipe.add_function_step("wait", "gated", json!({ "x": 7 }));
        pipe.add_function_step("after", "total", json!({ "values": ["${wait.return_object}"] }));
        let run = pipe.spawn().unwrap();
        // The step holds until the gate opens: the run is live.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while run.get_running_nodes() != ["wait"] {
            assert!(std::time::Instant::now() < deadline, "the step never ran");
            std::thread::yield_now();
        }
        assert!(run.is_running());
        assert!(!run.wait(Some(std::time::Duration::from_millis(10))));
        assert_eq!(
            run.get_pipeline_dag().node("after").unwrap().status,
            NodeStatus::Pending
        );
        assert!(run.get_processed_nodes().is_empty());
        // Reports of the run itself, as ClearML's controller makes them.
        assert!(run.upload_artifact("notes", &vec![1u8, 2], None).unwrap());
        assert!(run.report_scalar("progress", "steps", 0, 0.5));
        assert!(run.report_text("halfway"));
        *GATE.0.lock().unwrap() = true;
        GATE.1.notify_all();
        assert!(run.wait(None));
        assert!(!run.is_running());
        let id = run.id().to_string();
        let finished = run.join().unwrap();
        assert_eq!(finished.run.id(), id);
        assert_eq!(finished.output["after.return_object"], json!(7));
        let artifacts = finished.run.artifacts().unwrap();
        assert!(
            artifacts.iter().any(|a| a.name == "notes" && a.node.is_empty()),
            "{artifacts:?}"
        );
        let metrics = finished.run.metrics().unwrap();
        assert!(
            metrics.iter().any(|m| m.title == "progress" && m.value == 0.5),
            "{metrics:?}"
        );
    });
    // A stop while a worker runs: the run ends at once, marked as asked.
    config(Mode::Local, "spawned-stop").scope(|| {
        let mut pipe = PipelineController::new("controller_stopped", "tests");
        pipe.add_function_step("slow", "sleeps", json!({ "x": 1 }));
        let run = pipe.spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while run.get_running_nodes().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the step never ran");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let started = std::time::Instant::now();
        run.stop("enough", StopMark::Completed);
        let finished = run.join().unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        assert_eq!(finished.run.status(), RunStatus::Completed);
        assert_eq!(finished.run.dag().node("slow").unwrap().status, NodeStatus::Aborted);
    });
    // A spec with mistakes does not start.
    let mut bad = PipelineController::new("controller_bad", "tests");
    bad.add_function_step("x", "nothing_here", json!({}));
    assert!(matches!(bad.spawn(), Err(ControllerError::Invalid(_))));
}

#[test]
fn step_callbacks_run_for_their_step_and_are_not_saved_with_the_spec() {
    config(Mode::Debug, "callbacks").scope(|| {
        let mut pipe = PipelineController::new("controller_hooks", "tests");
        pipe.add_function_step("watched", "total", json!({ "values": [1] }))
            .pre_execute_callback(skip_it)
            .post_execute_callback(after)
            .status_change_callback(changed);
        pipe.add_function_step("skipped", "total", json!({ "values": [2] }))
            .pre_execute_callback(skip_it);
        pipe.add_function_step("plain", "total", json!({ "values": [3] }));
        let finished = pipe.run().unwrap();
        assert_eq!(finished.run.dag().node("skipped").unwrap().status, NodeStatus::Skipped);
        // In order per node (nodes interleave).
        let seen = SEEN.lock().unwrap().clone();
        let of = |node: &str| -> Vec<&String> { seen.iter().filter(|s| s.split(' ').nth(1) == Some(node)).collect() };
        assert_eq!(
            of("watched"),
            [
                "pre watched",
                "status watched pending->queued",
                "status watched queued->running",
                "status watched running->completed",
                "post watched completed",
            ],
            "{seen:?}"
        );
        assert_eq!(of("skipped"), ["pre skipped"], "{seen:?}");
        assert!(of("plain").is_empty(), "{seen:?}");
        // A spec written out has no callbacks; read back, it equals the one in memory.
        let text = pipe.render(SpecFormat::Json).unwrap();
        assert!(!text.contains("_callback") && !text.contains("\"callbacks\""), "{text}");
        let back = PipelineSpec::parse(&text, SpecFormat::Json).unwrap();
        assert_eq!(&back, pipe.spec());
    });
}

// ---------------------------------------------------------------- steps based on recorded steps

/// A step based on a step of a recorded local run: that step's component, called with the
/// inputs it read then, except for the overridden ones; the spec holds the values, so it
/// stands alone.
#[test]
fn a_step_based_on_a_recorded_step_takes_its_arguments_as_defaults() {
    config(Mode::Local, "based-local").scope(|| {
        let recorded = twin::run(4, 3).unwrap();
        assert_eq!(recorded.output, "sum: 30");
        let id = recorded.run.id().to_string();
        let mut pipe = PipelineController::new("rescale", "tests");
        // By a prefix of the run's id, with ClearML's `Args/` prefix on the override.
        pipe.add_step_from_run("rescaled", &id[..id.len() - 2], "scale", json!({ "Args/factor": 10 }));
        pipe.add_function_step("sum", "total", json!({ "values": "${rescaled.return_object}" }));
        let step = &pipe.spec().steps[0];
        assert_eq!(step.component, "scale");
        assert_eq!(
            step.function_kwargs["values"],
            json!([1, 2]),
            "the recorded `low` half of 1..=4"
        );
        assert_eq!(step.base.as_ref().unwrap().run, id, "the whole id is kept");
        let finished = pipe.run().unwrap();
        assert_eq!(finished.output["sum.return_object"], json!(30));
        // A fan-in's recorded elements read back as one list.
        let mut pipe = PipelineController::new("regather", "tests");
        pipe.add_step_from_run("again", &id, "sum_all", json!({}));
        assert_eq!(pipe.spec().steps[0].function_kwargs["parts"], json!([9, 21]));
        assert_eq!(pipe.run().unwrap().output["again.return_object"], json!(30));
    });
}

/// A step of a debug-mode controller run kept no inputs: its spec's literals and parameters
/// are the defaults; an argument that came from another step must be overridden.
#[test]
fn a_step_based_on_a_debug_controller_step_uses_its_spec() {
    config(Mode::Debug, "based-debug").scope(|| {
        let first = twin_controller().run().unwrap();
        let id = first.run.id().to_string();
        let mut pipe = PipelineController::new("relabel", "tests");
        pipe.add_step_from_run("relabel", &id, "label", json!({}));
        pipe.add_step_from_run("recount", &id, "numbers", json!({}));
        assert_eq!(
            pipe.spec().steps[1].function_kwargs["n"],
            json!(10),
            "`${{pipeline.n}}` as recorded"
        );
        let err = pipe.check().unwrap_err().to_string();
        assert!(
            err.contains("step `relabel`, based on step `label` of run")
                && err.contains("argument `count`")
                && err.contains("it came from another step's output"),
            "{err}"
        );
        assert!(!err.contains("argument `name`"), "a literal is recorded: {err}");
        assert!(!err.contains("no component"), "reported once: {err}");
        let mut pipe = PipelineController::new("relabel", "tests");
        pipe.add_step_from_run("relabel", &id, "label", json!({ "count": 7 }));
        assert_eq!(pipe.run().unwrap().output["relabel.return_object"], json!("sum: 7"));

        // A base that is not there: one clear error each, at once.
        let mut pipe = PipelineController::new("nothing", "tests");
        pipe.add_step_from_run("a", "no-such-run", "label", json!({}));
        pipe.add_step_from_run("b", &id, "no_such_step", json!({}));
        let err = pipe.check().unwrap_err().to_string();
        assert!(err.contains("the pipeline spec has 2 errors"), "{err}");
        assert!(err.contains("there is no run `no-such-run`"), "{err}");
        assert!(err.contains("has no step `no_such_step` (its steps: "), "{err}");
    });
}

/// A spec file may name a base instead of a component.
#[test]
fn a_spec_file_may_base_a_step_on_a_recorded_step() {
    let dir = folder_of("based-file");
    config(Mode::Debug, "based-file").scope(|| {
        let first = twin_controller().run().unwrap();
        let file = dir.join("pipeline.toml");
        std::fs::write(
            &file,
            format!(
                "name = \"from file\"\nproject = \"tests\"\n\n[[steps]]\nname = \"recount\"\nbase = {{ run = \"{}\", step = \"numbers\" }}\nfunction_kwargs = {{ n = 3 }}\n",
                first.run.id()
            ),
        )
        .unwrap();
        let pipe = PipelineController::from_file(&file).unwrap();
        assert_eq!(pipe.spec().steps[0].component, "numbers");
        assert_eq!(pipe.run().unwrap().output["recount.return_object"], json!([1, 2, 3]));
    });
}

// ---------------------------------------------------------------- monitored reports

/// Reports a scalar and uploads an artifact; monitors nothing itself.
#[component]
fn reporter(x: u64) -> anyhow::Result<u64> {
    step::report_scalar("loss", "train", 0, 0.5);
    step::report_scalar("loss", "other", 0, 0.7);
    step::upload_artifact("summary", &vec![x], None)?;
    step::upload_artifact("scratch", &x, None)?;
    Ok(x)
}

/// ClearML's per-step `monitor_*`: a controller step copies the named reports onto the run,
/// under the names given, from code and from a spec file.
#[test]
fn a_controller_step_monitors_metrics_and_artifacts() {
    let state = folder("monitor");
    for from_file in [false, true] {
        let mut pipe = PipelineController::new("monitored", "tests");
        pipe.add_function_step("report", "reporter", json!({ "x": 3 }))
            .monitor_metric(("loss", "train"), ("report loss", "train"))
            .monitor_artifact("summary", "best summary");
        let pipe = if from_file {
            let file = state.join("monitored.toml");
            pipe.save(&file).unwrap();
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(text.contains("monitor_artifacts"), "{text}");
            PipelineController::from_file(&file).unwrap()
        } else {
            pipe
        };
        let finished = Config::current()
            .with_mode(Mode::Local)
            .with_state_dir(&state)
            .scope(|| pipe.run())
            .unwrap();
        let store = RunStore::open(&state.join("runs.db")).unwrap();
        let id = finished.run.id();
        let on_run: Vec<(String, String)> = store
            .metrics(id)
            .unwrap()
            .into_iter()
            .filter(|m| m.node.is_empty())
            .map(|m| (m.title, m.series))
            .collect();
        assert_eq!(on_run, [("report loss".to_string(), "train".to_string())]);
        let artifacts: Vec<String> = store
            .artifacts(id)
            .unwrap()
            .into_iter()
            .filter(|a| a.node.is_empty())
            .map(|a| a.name)
            .collect();
        assert_eq!(artifacts, ["best summary"], "from file: {from_file}");
    }
}

// ---------------------------------------------------------------- step ids

/// Finds the step a `${STEP.id}` names, and reads its recorded output.
#[component]
fn read_step(id: String) -> anyhow::Result<u64> {
    let (run, step) = id
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("`{id}` is not RUN/STEP"))?;
    let run = PipelineRun::get(run)?.ok_or_else(|| anyhow::anyhow!("no run {run}"))?;
    let node = run
        .dag()
        .node(step)
        .ok_or_else(|| anyhow::anyhow!("no step {step}"))?
        .clone();
    anyhow::ensure!(node.status == NodeStatus::Completed, "{step} is {}", node.status);
    Ok(u64::from(node.attempts))
}

/// ClearML's `${STEP.id}`: a step's id as a `String` argument; the step becomes a parent, so it
/// has ended when the taker runs.
#[test]
fn a_step_takes_another_steps_id() {
    for mode in [Mode::Debug, Mode::Local] {
        a_step_takes_another_steps_id_in(mode);
    }
}

fn a_step_takes_another_steps_id_in(mode: Mode) {
    config(mode, &format!("step-id-{mode:?}")).scope(|| {
        let mut pipe = PipelineController::new("ids", "tests");
        // Declared first: the id's step is still run before it.
        pipe.add_function_step("reader", "read_step", json!({ "id": "${source.id}" }));
        pipe.add_function_step("source", "numbers", json!({ "n": 2 }));
        let finished = pipe.run().unwrap();
        assert!(
            finished.run.is_successful(),
            "{mode:?}: {}",
            finished.run.dag().to_text()
        );
        assert_eq!(finished.output["reader.return_object"], json!(1));
        assert_eq!(
            finished.run.dag().node("reader").unwrap().parents,
            ["source"],
            "the id's step is a parent"
        );
        // Not a String parameter: a clear error.
        let mut pipe = PipelineController::new("ids", "tests");
        pipe.add_function_step("source", "numbers", json!({ "n": 2 }));
        pipe.add_function_step("sum", "total", json!({ "values": "${source.id}" }));
        let err = pipe.check().unwrap_err().to_string();
        assert!(
            err.contains("`${source.id}` is a step's id (a `String`), the parameter a `Vec<u64>`"),
            "{err}"
        );
    });
}
