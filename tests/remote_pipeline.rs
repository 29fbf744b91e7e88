//! Remote mode end to end on a real Ray cluster on loopback (`scripts/with-ray.sh` starts one
//! and sets `PIPELINE_RAY_ADDRESS`; the default address is used otherwise). The head serves the
//! queues `default` (100 slots) and `gpu` (1 slot); a second node, the only one serving
//! `isolated`, sees none of this machine's files where the state folder is
//! (`PIPELINE_TEST_HIDDEN`), as a worker machine without a shared folder.
//!
//! This file is two test targets: `remote_pipeline` runs every test through the warm runner,
//! `remote_jobs` through one Ray job per step (the crate's name tells them apart). A few tests
//! are about one backend only; they say so and return at once on the other.

mod common;

use pipeline_runtime::prelude::*;
use pipeline_runtime::store::RunFilter;
use pipeline_runtime::{Mode, PipelineRun, RemoteBackend, RunStatus, step, with_mode};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, Instant, SystemTime};

/// The backend this target tests: the runner explicitly (not `auto`, which would hide a runner
/// that cannot serve behind its fallback).
fn backend() -> RemoteBackend {
    if env!("CARGO_CRATE_NAME") == "remote_jobs" {
        RemoteBackend::Jobs
    } else {
        RemoteBackend::Runner
    }
}

fn setup() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        pipeline_runtime::set_ray_backend(backend());
        // Under the folder the isolated node cannot see, when there is one.
        let base = std::env::var_os("PIPELINE_TEST_HIDDEN")
            .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
        let dir = base.join(format!("remote-{}", std::process::id()));
        pipeline_runtime::set_state_dir(Some(dir));
    });
}

#[component]
fn square(x: u64) -> u64 {
    x * x
}

#[component(return_values = ["evens", "odds"])]
fn split(values: Vec<u64>) -> (Vec<u64>, Vec<u64>) {
    values.into_iter().partition(|v| v % 2 == 0)
}

#[component]
fn total(values: Vec<u64>) -> u64 {
    values.iter().sum()
}

#[pipeline(name = "remote_fan_out", project = "remote-tests")]
fn fan_out(n: u64) -> anyhow::Result<(u64, u64)> {
    let squares: Vec<Handle<u64>> = (1..=n).map(square).collect();
    let all = total(squares);
    let (evens, odds) = split((1..=n).collect::<Vec<_>>());
    Ok((all.get()?, total(evens).get()? * 1000 + total(odds).get()?))
}

#[test]
fn a_fan_out_on_ray_gives_the_same_results_as_the_other_modes() {
    setup();
    let remote = fan_out::run(6).unwrap();
    let local = with_mode(Mode::Local, || fan_out::run(6).unwrap());
    let debug = with_mode(Mode::Debug, || fan_out::run(6).unwrap());
    let remote_value = remote.output.unwrap();
    assert_eq!(remote_value, (91, 12 * 1000 + 9));
    assert_eq!(remote_value, local.output.unwrap());
    assert_eq!(remote_value, debug.output.unwrap());
    assert!(remote.run.is_successful());
    assert_eq!(remote.run.record().mode, "remote");
    let shape = |r: &PipelineRun| {
        r.dag()
            .nodes()
            .map(|n| (n.name.clone(), n.parents.clone(), n.status))
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(&remote.run), shape(&debug.run));
}

/// When it ran, as seen from inside the job.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[component(execution_queue = "gpu")]
fn on_gpu_queue(id: u32) -> (u32, f64, f64) {
    let start = now();
    std::thread::sleep(Duration::from_millis(1500));
    (id, start, now())
}

#[component(execution_queue = "nobody-serves-this", time_limit = "4s")]
fn unserved() -> u32 {
    1
}

/// Each gpu step's id, start and end; the unserved step's outcome.
type QueueOutcome = (Vec<(u32, f64, f64)>, Result<u32, HandleError>);

#[pipeline(name = "remote_queues", project = "remote-tests")]
fn queues() -> QueueOutcome {
    let gpu: Vec<_> = (0..2).map(on_gpu_queue).collect();
    let stuck = unserved();
    (gpu.into_iter().map(|h| h.get().unwrap()).collect(), stuck.get())
}

#[test]
fn queues_route_steps_to_the_nodes_that_serve_them() {
    setup();
    let f = queues::run().unwrap();
    let (gpu, stuck) = f.output;
    // One `queue_gpu` slot: the two steps ran one after the other.
    let (a, b) = (gpu[0], gpu[1]);
    assert!(
        a.2 <= b.1 || b.2 <= a.1,
        "the gpu queue ran two steps at once: {a:?} {b:?}"
    );
    // No node serves the queue: the step waits, and its time limit stops the job.
    let stuck = stuck.unwrap_err();
    assert!(
        matches!(&stuck, HandleError::Aborted { reason, .. } if reason.contains("time limit of 4.000s")),
        "{stuck}"
    );
    assert_eq!(f.run.dag().node("unserved").unwrap().status, NodeStatus::Aborted);
}

#[component]
fn long_nap() -> u32 {
    std::thread::sleep(Duration::from_secs(120));
    1
}

#[pipeline(name = "remote_stopped", project = "remote-tests")]
fn stopped() -> Result<u32, HandleError> {
    long_nap().get()
}

fn ray_address() -> String {
    std::env::var(pipeline_runtime::RAY_ADDRESS_ENV).unwrap_or_else(|_| "http://127.0.0.1:8265".into())
}

/// `METHOD path` to the Ray dashboard with a bare HTTP/1.1 request; the whole answer.
fn request(method: &str, path: &str) -> String {
    http(&ray_address(), method, path)
}

/// `METHOD path` to `http://host:port` with a bare HTTP/1.1 request; the whole answer.
fn http(address: &str, method: &str, path: &str) -> String {
    let host = address.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn a_job_stopped_on_the_cluster_is_an_aborted_step() {
    if backend() != RemoteBackend::Jobs {
        return; // job-per-step only: a runner's step is not a job of its own
    }
    setup();
    let started = Instant::now();
    let worker = std::thread::spawn(|| stopped::run().unwrap());
    let filter = RunFilter {
        name: Some("remote_stopped".into()),
        status: Some(RunStatus::Running),
        ..Default::default()
    };
    let run = loop {
        if let Some(run) = PipelineRun::find(&filter).unwrap() {
            if run.running_nodes() == ["long_nap"] {
                break run;
            }
        }
        // A bound for a wedged cluster only: under load, Ray takes long to start a job.
        assert!(started.elapsed() < Duration::from_secs(180), "the step never started");
        std::thread::sleep(Duration::from_millis(100));
    };
    // The submission id is derived from the run, the step and the attempt.
    let job = format!("/api/jobs/{}-long_nap-1", run.id());
    while !request("GET", &job).contains("\"RUNNING\"") {
        assert!(started.elapsed() < Duration::from_secs(180), "the job never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    let stopping = Instant::now();
    let answer = request("POST", &format!("{job}/stop"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let finished = worker.join().unwrap();
    let err = finished.output.unwrap_err();
    assert!(
        matches!(&err, HandleError::Aborted { reason, .. } if reason.contains("was stopped on the cluster")),
        "{err}"
    );
    // The stop, not the whole test, is what must be quick.
    assert!(stopping.elapsed() < Duration::from_secs(30), "{:?}", stopping.elapsed());
}

#[pipeline(
    name = "remote_s3",
    project = "remote-tests",
    output_uri = "s3://pipeline-tests/artifacts"
)]
fn through_s3(n: u64) -> (Handle<u64>, u64) {
    let squares: Vec<Handle<u64>> = (1..=n).map(square).collect();
    let sum = total(squares);
    let (evens, _) = split((1..=n).collect::<Vec<_>>());
    let even_sum = total(evens); // reads `split`'s output straight from the bucket
    (sum, even_sum.get().unwrap())
}

/// The bucket's listing under `prefix`, from the endpoint `scripts/with-ray.sh` exports.
fn s3_listing(prefix: &str) -> String {
    let endpoint = std::env::var("AWS_ENDPOINT").expect("AWS_ENDPOINT: run under scripts/with-ray.sh");
    http(
        &endpoint,
        "GET",
        &format!("/pipeline-tests?list-type=2&prefix={prefix}"),
    )
}

#[test]
fn artifacts_travel_through_s3_when_output_uri_names_a_bucket() {
    setup();
    let f = through_s3::run(4).unwrap();
    let (sum, even_sum) = f.output;
    assert_eq!(even_sum, 6);
    // The output stayed in the bucket until read here.
    let local = sum.artifact().unwrap();
    assert!(
        !local.exists(),
        "the worker wrote to object storage, not to the state folder"
    );
    assert_eq!(sum.get().unwrap(), 30);
    assert!(local.exists(), "read through a download");

    let listing = s3_listing(&format!("artifacts/{}/", f.run.id()));
    for key in ["square_3/outputs/return_object.art", "total/result-1.json"] {
        assert!(
            listing.contains(&format!("artifacts/{}/{key}", f.run.id())),
            "{key} missing from {listing}"
        );
    }
    // The fan-in read the squares' own artifacts from the bucket: none was written again.
    assert!(
        !listing.contains(&format!("artifacts/{}/total/inputs/", f.run.id())),
        "{listing}"
    );
    let recorded = f.run.artifacts().unwrap();
    let output = recorded
        .iter()
        .find(|a| a.node == "total" && a.name == "return_object")
        .unwrap();
    assert_eq!(
        output.uri,
        format!(
            "s3://pipeline-tests/artifacts/{}/total/outputs/return_object.art",
            f.run.id()
        )
    );
    // Recorded with its type, size and checksum (the worker reported them), and readable where
    // it is, as `pipeline get` and `artifacts` read it.
    assert_eq!(output.type_name.as_deref(), Some("u64"), "{output:?}");
    let (header, payload) = pipeline_runtime::artifacts::read_payload_at(&output.uri).unwrap();
    assert_eq!(Some(header.length), output.size);
    assert_eq!(Some(format!("{:08x}", header.checksum)), output.checksum);
    assert_eq!(
        bincode::serde::decode_from_slice::<u64, _>(&payload, bincode::config::standard())
            .unwrap()
            .0,
        30
    );
    let missing = pipeline_runtime::artifacts::read_payload_at("s3://pipeline-tests/artifacts/no-such/object.art");
    assert!(
        missing
            .unwrap_err()
            .message
            .contains("s3://pipeline-tests/artifacts/no-such/object.art")
    );
}

#[component(time_limit = "3s")]
fn on_the_default_queue() -> u32 {
    1
}

#[pipeline(
    name = "remote_default_queue",
    project = "remote-tests",
    default_queue = "nobody-serves-this"
)]
fn default_queue() -> Result<u32, HandleError> {
    on_the_default_queue().get()
}

#[test]
fn a_pipelines_default_queue_routes_steps_that_name_none() {
    setup();
    // No node serves the pipeline's default queue: the step waits until its time limit.
    let err = default_queue::run().unwrap().output.unwrap_err();
    assert!(
        matches!(&err, HandleError::Aborted { reason, .. } if reason.contains("time limit of 3.000s")),
        "{err}"
    );
}

#[pipeline(
    name = "remote_controller",
    project = "remote-tests",
    pipeline_execution_queue = "default"
)]
fn controlled(n: u64, label: String) -> u64 {
    let _ = label;
    let squares: Vec<Handle<u64>> = (1..=n).map(square).collect();
    total(squares).get().unwrap()
}

#[test]
fn the_controller_itself_can_run_on_the_cluster() {
    setup();
    let remote = controlled::enqueue(3, "from the cluster".into()).unwrap();
    assert!(remote.job().starts_with("controller-remote_controller-"));
    let run = remote
        .wait(Duration::from_secs(180))
        .unwrap()
        .expect("the controller ended");
    assert_eq!(run.id(), remote.id());
    assert!(
        run.is_successful(),
        "{}\n{}",
        run.dag().to_text(),
        remote.logs().unwrap_or_default()
    );
    assert_eq!(run.record().mode, "remote");
    assert_eq!(
        run.parameters(),
        [
            ("n".to_string(), "3".to_string()),
            ("label".to_string(), "\"from the cluster\"".to_string())
        ]
    );
    let names: Vec<_> = run.dag().nodes().map(|n| (n.name.clone(), n.status)).collect();
    assert_eq!(names.len(), 4);
    assert!(names.iter().all(|(_, s)| *s == NodeStatus::Completed), "{names:?}");
}

/// `PipelineController::start(queue)`: the controller job builds the pipeline again from its
/// spec, on the cluster, with the parameters given.
#[test]
fn a_controller_built_at_run_time_can_run_on_the_cluster() {
    setup();
    let mut pipe = pipeline_runtime::PipelineController::new("remote_dynamic", "remote-tests");
    pipe.add_parameter("x", 2, "");
    pipe.add_function_step("a", "square", serde_json::json!({ "x": "${pipeline.x}" }));
    pipe.add_function_step("b", "square", serde_json::json!({ "x": 3 }));
    pipe.add_function_step(
        "sum",
        "total",
        serde_json::json!({ "values": ["${a.return_object}", "${b.return_object}"] }),
    );
    pipe.set_parameter("x", 4);
    let remote = pipe.start(Some("default")).unwrap();
    let run = remote
        .wait(Duration::from_secs(180))
        .unwrap()
        .expect("the controller ended");
    assert!(
        run.is_successful(),
        "{}\n{}",
        run.dag().to_text(),
        remote.logs().unwrap_or_default()
    );
    assert_eq!(run.record().mode, "remote");
    assert_eq!(run.parameters(), [("x".to_string(), "4".to_string())]);
    let mut names: Vec<_> = run.dag().nodes().map(|n| n.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["a", "b", "sum"]);
    // The value: 16 + 9, read back from the sum's stored output.
    let sum = run.artifacts().unwrap().into_iter().find(|a| a.node == "sum").unwrap();
    let (_, payload) = pipeline_runtime::artifacts::read_payload_at(&sum.uri).unwrap();
    let (value, _): (u64, usize) = bincode::serde::decode_from_slice(&payload, bincode::config::standard()).unwrap();
    assert_eq!(value, 25);
}

// ------------------------------------------------------- a worker node without a shared folder

/// What the isolated node's environment says, for the test to check.
#[component(
    execution_queue = "isolated",
    monitor_metrics = [("loss", "train")],
    monitor_artifacts = ["summary"],
    monitor_models = [("weights", "final_weights")]
)]
fn train_apart(epochs: u32, state: String) -> anyhow::Result<(f64, bool)> {
    let mut loss = 1.0;
    for epoch in 0..epochs {
        loss /= 2.0;
        step::report_scalar("loss", "train", i64::from(epoch), loss);
    }
    step::report_text("trained where the state folder is not");
    step::upload_artifact("summary", &vec![loss], Some(serde_json::json!({"epochs": epochs})))?;
    let weights = std::env::temp_dir().join(format!("weights-{}.bin", std::process::id()));
    std::fs::write(&weights, b"0123456789")?;
    step::upload_model("weights", &weights)?;
    std::fs::remove_file(&weights)?;
    Ok((loss, std::path::Path::new(&state).exists()))
}

#[pipeline(
    name = "remote_isolated",
    project = "remote-tests",
    output_uri = "s3://pipeline-tests/isolated",
    artifact_codec = "json"
)]
fn isolated(epochs: u32, state: String) -> anyhow::Result<(f64, bool)> {
    let (loss, saw_state) = train_apart(epochs, state).get()?;
    // Read by a step on the head, through the bucket.
    let doubled = square(u64::from(epochs)).get()?;
    assert_eq!(doubled, u64::from(epochs * epochs));
    Ok((loss, saw_state))
}

/// The `pipeline` CLI built beside this test (`cargo test --workspace` builds it).
fn pipeline_cli(args: &[&str]) -> String {
    let exe = std::env::current_exe().unwrap();
    let cli = exe.parent().unwrap().parent().unwrap().join("pipeline");
    assert!(
        cli.exists(),
        "`{}` is missing: build the CLI first (cargo build -p pipeline-runtime)",
        cli.display()
    );
    let state = pipeline_runtime::Config::current().state_dir;
    let out = std::process::Command::new(&cli)
        .arg("--state")
        .arg(&state)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pipeline {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The isolated node's temporary folder, as `scripts/with-ray.sh` exports it.
fn node_tmp() -> PathBuf {
    PathBuf::from(
        std::env::var_os("PIPELINE_TEST_NODE_TMP")
            .expect("PIPELINE_TEST_NODE_TMP: run under scripts/with-ray.sh, which starts the isolated node"),
    )
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_node_without_the_state_folder_reports_everything_through_object_storage() {
    setup();
    let tmp = node_tmp();
    let state = pipeline_runtime::Config::current().state_dir;
    let f = isolated::run(3, state.display().to_string()).unwrap();
    let (loss, saw_state) = f.output.unwrap();
    assert_eq!(loss, 0.125);
    assert!(!saw_state, "the isolated node must not see the state folder");
    let id = f.run.id().to_string();

    // Every kind of report reached the controller's store.
    let run = PipelineRun::get(&id).unwrap().unwrap();
    let metrics = run.metrics().unwrap();
    let losses: Vec<f64> = metrics
        .iter()
        .filter(|m| m.node == "train_apart")
        .map(|m| m.value)
        .collect();
    assert_eq!(losses, [0.5, 0.25, 0.125]);
    assert_eq!(
        metrics.iter().filter(|m| m.node.is_empty()).count(),
        3,
        "monitor_metrics copies"
    );
    let store = pipeline_runtime::store::RunStore::open_read_only(&state.join("runs.db")).unwrap();
    assert_eq!(
        store.texts(&id).unwrap(),
        [(
            "train_apart".to_string(),
            "trained where the state folder is not".to_string()
        )]
    );
    let artifacts = run.artifacts().unwrap();
    let named = |node: &str, name: &str| {
        artifacts
            .iter()
            .find(|a| a.node == node && a.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {node}/{name} in {artifacts:#?}"))
    };
    let prefix = format!("s3://pipeline-tests/isolated/{id}/train_apart");
    let summary = named("train_apart", "summary");
    assert_eq!(summary.uri, format!("{prefix}/artifacts/summary.art"));
    assert_eq!(summary.metadata, Some(serde_json::json!({"epochs": 3})));
    let (header, payload) = pipeline_runtime::artifacts::read_payload_at(&summary.uri).unwrap();
    assert_eq!(Some(header.length), summary.size);
    assert_eq!(
        bincode::serde::decode_from_slice::<Vec<f64>, _>(&payload, bincode::config::standard())
            .unwrap()
            .0,
        [0.125]
    );
    assert_eq!(named("", "summary").uri, summary.uri, "monitor_artifacts copy");
    let model = named("train_apart", "weights");
    assert!(
        model.uri.starts_with(&format!("{prefix}/models/weights/weights-")),
        "{model:?}"
    );
    assert_eq!(model.size, Some(10));
    assert_eq!(named("", "final_weights").uri, model.uri, "monitor_models copy");
    let listing = s3_listing(&format!("isolated/{id}/train_apart/models/"));
    assert!(
        listing.contains("weights-"),
        "the model file itself was sent: {listing}"
    );

    // The CLI reads the outputs where they are.
    let table = pipeline_cli(&["artifacts", &id]);
    let line = table
        .lines()
        .find(|l| l.starts_with("train_apart") && l.contains("return_object"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains(&format!("{prefix}/outputs/return_object.art")), "{line}");
    assert!(!line.contains(" - "), "type, size and checksum are known: {line}");
    let value = pipeline_cli(&["--json", "get", &id, "train_apart"]);
    assert!(value.contains("0.125"), "{value}");

    // Nothing of the step was left on the node.
    let left: Vec<String> = leftovers(&tmp)
        .into_iter()
        .filter(|n| n.starts_with("pipeline-worker-") || n.starts_with("weights-"))
        .collect();
    assert!(left.is_empty(), "left in the node's temporary folder: {left:?}");
}

#[component(execution_queue = "isolated")]
fn unreturnable() -> u32 {
    7
}

#[pipeline(name = "remote_unshared", project = "remote-tests")]
fn unshared() -> Result<u32, HandleError> {
    unreturnable().get()
}

#[test]
fn a_node_without_the_state_folder_and_no_output_uri_says_why_its_step_fails() {
    setup();
    let err = unshared::run().unwrap().output.unwrap_err();
    let HandleError::Failed { error, .. } = &err else {
        panic!("{err}")
    };
    let all = format!("{error:?}");
    assert!(all.contains("does not share the controller's state folder"), "{all}");
    assert!(all.contains("output_uri"), "{all}");
    assert!(
        all.contains("a Ray node that does not mount this state folder"),
        "{all}"
    );
}

// ------------------------------------------------------- resuming a run whose jobs live on

/// The history of node `node` of run `run`: its states, oldest first.
fn history(state: &std::path::Path, run: &str, node: &str) -> Vec<NodeStatus> {
    let store = pipeline_runtime::store::RunStore::open_read_only(&state.join("runs.db")).unwrap();
    store
        .node_events(run, node)
        .unwrap()
        .into_iter()
        .map(|(status, _)| status)
        .collect()
}

/// `kill -9` of a remote controller. Job per step: it leaves its step's Ray job running, and
/// the resumed run waits for that job instead of running the step again. Warm runner: the
/// runner sees its controller gone and cancels the step's task, so the resumed run runs the
/// step again, once. Counted by the step's executions.
#[test]
fn a_resumed_run_waits_for_the_job_its_killed_controller_left_running() {
    pipeline_runtime::set_ray_backend(backend());
    let base = std::env::var_os("PIPELINE_TEST_HIDDEN")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from)
        .join(format!("reattach-{}", std::process::id()));
    let (state, markers) = (base.join("state"), base.join("markers"));
    std::fs::create_dir_all(&markers).unwrap();
    common::kill_resume_probe_in_second_step(
        &state,
        &markers,
        &["remote", backend().as_str()],
        Duration::from_secs(240),
    );
    let store = pipeline_runtime::store::RunStore::open_read_only(&state.join("runs.db")).unwrap();
    let crashed = store.runs(&RunFilter::default()).unwrap().remove(0);
    assert_eq!(crashed.status, RunStatus::Crashed);
    let running_before = history(&state, &crashed.id, "second")
        .iter()
        .filter(|s| **s == NodeStatus::Running)
        .count();

    let (state_for_resume, id) = (state.clone(), crashed.id.clone());
    let resuming = std::thread::spawn(move || pipeline_runtime::resume_run(&state_for_resume, &id));
    // Once the resumed controller has the step running again, the job may end.
    let start = Instant::now();
    while history(&state, &crashed.id, "second")
        .iter()
        .filter(|s| **s == NodeStatus::Running)
        .count()
        == running_before
    {
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "the resume never reached the step"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_file(markers.join("hold")).unwrap();
    let resumed = resuming.join().unwrap().unwrap();
    assert_eq!(resumed.status, RunStatus::Completed);
    let executions = std::fs::read_to_string(markers.join("executions")).unwrap();
    let expected: &[&str] = match backend() {
        RemoteBackend::Jobs => &["first", "second", "third"],
        _ => &["first", "second", "second", "third"],
    };
    assert_eq!(
        executions.lines().collect::<Vec<_>>(),
        expected,
        "job per step: the step's job was waited for, not run again; runner: run again once"
    );
}

// ------------------------------------------------------- a runner that cannot serve

#[pipeline(name = "remote_unreachable", project = "remote-tests")]
fn unreachable(x: u64) -> Result<u64, HandleError> {
    square(x).get()
}

/// Runs `unreachable` with the runner told to reach this controller where nothing listens, as
/// a cluster behind a firewall would fail to.
fn with_an_unreachable_controller(backend: RemoteBackend) -> pipeline_runtime::Finished<Result<u64, HandleError>> {
    setup();
    let config = pipeline_runtime::Config::current();
    let ray = pipeline_runtime::RayConfig {
        backend,
        // Port 9 (discard): nothing listens on loopback.
        runner_url: Some("http://127.0.0.1:9".into()),
        ..config.ray.clone()
    };
    config.with_ray(ray).scope(|| unreachable::run(7).unwrap())
}

/// `auto`: the runner cannot reach the controller, so the step goes as a Ray job of its own.
#[test]
fn auto_falls_back_to_a_job_per_step_when_the_runner_cannot_reach_the_controller() {
    if backend() != RemoteBackend::Runner {
        return; // about the runner
    }
    let finished = with_an_unreachable_controller(RemoteBackend::Auto);
    assert_eq!(finished.output, Ok(49));
    // The step's attempt ran as the job named after it.
    let job = format!("/api/jobs/{}-square-1", finished.run.id());
    let answer = request("GET", &job);
    assert!(answer.contains("\"SUCCEEDED\""), "{answer}");
}

/// `runner`: no fallback; the step fails with why the runner could not serve.
#[test]
fn runner_says_why_it_cannot_serve_when_the_controller_is_unreachable() {
    if backend() != RemoteBackend::Runner {
        return; // about the runner
    }
    let finished = with_an_unreachable_controller(RemoteBackend::Runner);
    let err = finished.output.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("could not serve") && text.contains("cannot reach the controller at http://127.0.0.1:9"),
        "{text}"
    );
}

// ------------------------------------------------------- a runner that dies

/// The first attempt writes its pid and waits to be killed with its runner; the retry returns.
#[component(retries = 1)]
fn outlives_its_runner(pid_file: String) -> u32 {
    if !std::path::Path::new(&pid_file).exists() {
        std::fs::write(&pid_file, std::process::id().to_string()).expect("pid file written");
        std::thread::sleep(Duration::from_secs(120));
        return 1;
    }
    2
}

#[pipeline(name = "remote_runner_killed", project = "remote-tests")]
fn runner_killed(pid_file: String) -> Result<u32, HandleError> {
    outlives_its_runner(pid_file).get()
}

/// The driver process of the running warm runner told to reach its controller at `url`, from
/// the Jobs API's list.
fn runner_driver(url: &str) -> Option<u32> {
    let answer = request("GET", "/api/jobs/");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let jobs: Vec<serde_json::Value> = serde_json::from_str(body).ok()?;
    jobs.iter()
        .filter(|j| j["status"] == "RUNNING")
        .filter(|j| j["runtime_env"]["env_vars"]["PIPELINE_RUNNER_URL"] == url)
        .find_map(|j| j["driver_info"]["pid"].as_str()?.parse().ok())
}

/// `kill -9` of the runner's driver mid-step: the controller sees its job fail, the attempt
/// it held ends as lost (with the worker it started), and the retry runs on a new runner.
#[test]
fn a_killed_runner_is_detected_and_its_step_retried() {
    if backend() != RemoteBackend::Runner {
        return; // the warm runner only
    }
    setup();
    let pid_file = pipeline_runtime::Config::current()
        .state_dir
        .join(format!("runner-killed-{}.pid", std::process::id()));
    let file = pid_file.display().to_string();
    // A runner of its own (the other tests' steps go through this process's shared one): a
    // listening address of its own, on a port known to find it by.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = pipeline_runtime::Config::current();
    let ray = pipeline_runtime::RayConfig {
        runner_listen: Some(format!("127.0.0.1:{port}")),
        ..config.ray.clone()
    };
    let config = config.with_ray(ray);
    let running = std::thread::spawn(move || config.scope(|| runner_killed::run(file).unwrap()));
    let start = Instant::now();
    while !pid_file.exists() {
        assert!(start.elapsed() < Duration::from_secs(180), "the step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let driver = runner_driver(&format!("http://127.0.0.1:{port}")).expect("the test's runner is running");
    let worker: u32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &driver.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let finished = running.join().unwrap();
    assert_eq!(finished.output, Ok(2));
    assert_eq!(finished.run.dag().node("outlives_its_runner").unwrap().attempts, 2);
    // The lost attempt's worker died with its task.
    wait_gone(
        worker,
        Duration::from_secs(30),
        "the lost attempt's worker outlived its runner",
    );
}

// ------------------------------------------------------- what a remote step starts

/// Waits until process `pid` is gone (or a zombie), failing with `what` past `bound`.
fn wait_gone(pid: u32, bound: Duration, what: &str) {
    let start = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
    {
        assert!(start.elapsed() < bound, "{what} ({pid})");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// The child is left running on purpose: the worker must end it.
#[allow(clippy::zombie_processes)]
#[component]
fn leaves_a_child(pid_file: String) -> u32 {
    let child = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .expect("`sleep` starts");
    std::fs::write(&pid_file, child.id().to_string()).expect("pid file written");
    // Returns at once: the child would outlive the step's Ray job.
    1
}

#[pipeline(name = "remote_child", project = "remote-tests")]
fn with_a_child(pid_file: String) -> Result<u32, HandleError> {
    leaves_a_child(pid_file).get()
}

#[test]
fn a_program_a_remote_step_started_ends_with_the_step() {
    setup();
    let pid_file = pipeline_runtime::Config::current()
        .state_dir
        .join(format!("child-{}.pid", std::process::id()));
    assert_eq!(with_a_child::run(pid_file.display().to_string()).unwrap().output, Ok(1));
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    // The worker ends its group as it exits; the bound only keeps a broken test from hanging.
    wait_gone(pid, Duration::from_secs(10), "the step's child outlived its job");
}

/// Kills its own worker with SIGKILL the first time (when `marker` does not exist yet).
#[component(retries = 1)]
fn killed_once_remotely(marker: String) -> u32 {
    if !std::path::Path::new(&marker).exists() {
        std::fs::write(&marker, b"attempt 1").expect("marker written");
        let _ = std::process::Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
        std::thread::sleep(Duration::from_secs(10));
    }
    7
}

#[pipeline(name = "remote_killed_worker", project = "remote-tests")]
fn killed_worker(marker: String) -> Result<u32, HandleError> {
    killed_once_remotely(marker).get()
}

/// A worker killed by a signal on the cluster fails its attempt as a crash, and the retry runs.
#[test]
fn a_remote_worker_killed_by_a_signal_is_retried() {
    setup();
    let marker = pipeline_runtime::Config::current()
        .state_dir
        .join(format!("killed-worker-{}", std::process::id()));
    let finished = killed_worker::run(marker.display().to_string()).unwrap();
    assert_eq!(finished.output, Ok(7));
    assert_eq!(finished.run.dag().node("killed_once_remotely").unwrap().attempts, 2);
}

/// Starts a program, notes its pid, and outlasts its time limit.
// The child is left running on purpose: the time limit must end it.
#[allow(clippy::zombie_processes)]
#[component(time_limit = "3s")]
fn overstays(pid_file: String) -> u32 {
    let child = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .expect("`sleep` starts");
    std::fs::write(&pid_file, child.id().to_string()).expect("pid file written");
    std::thread::sleep(Duration::from_secs(120));
    1
}

#[pipeline(name = "remote_overstays", project = "remote-tests")]
fn overstaying(pid_file: String) -> Result<u32, HandleError> {
    overstays(pid_file).get()
}

/// A running step's time limit stops it on the cluster, with what it started, at once: the
/// job is stopped, or the runner's task is cancelled and kills the worker's group.
#[test]
fn a_time_limit_ends_a_running_remote_step_and_its_children() {
    setup();
    let pid_file = pipeline_runtime::Config::current()
        .state_dir
        .join(format!("overstays-{}.pid", std::process::id()));
    let finished = overstaying::run(pid_file.display().to_string()).unwrap();
    let err = finished.output.unwrap_err();
    assert!(
        matches!(&err, HandleError::Aborted { reason, .. }
            if reason.contains("time limit of 3.000s") && !reason.contains("before the step started")),
        "{err}"
    );
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    wait_gone(pid, Duration::from_secs(20), "the step's child outlived its time limit");
}

// ------------------------------------------------------- the cache in object storage

#[component(cache = true)]
fn cached_in_s3(x: u64) -> Vec<u64> {
    vec![x; 3]
}

#[pipeline(
    name = "remote_s3_cache",
    project = "remote-tests",
    output_uri = "s3://pipeline-tests/cache"
)]
fn s3_cache(x: u64) -> Result<u64, HandleError> {
    Ok(cached_in_s3(x).get()?.iter().sum())
}

/// A cached output deleted from the bucket (a lifecycle rule, a clean-up) is not served: the
/// entry is dropped and the step runs again.
#[test]
fn a_cached_output_gone_from_the_bucket_is_dropped_and_the_step_runs() {
    setup();
    // A value of this process only, so that no earlier run's cache entry is found.
    let x = u64::from(std::process::id());
    let status =
        |f: &pipeline_runtime::Finished<Result<u64, HandleError>>| f.run.dag().node("cached_in_s3").unwrap().status;
    let first = s3_cache::run(x).unwrap();
    assert_eq!(
        (first.output.clone(), status(&first)),
        (Ok(3 * x), NodeStatus::Completed)
    );
    let hit = s3_cache::run(x).unwrap();
    assert_eq!((hit.output.clone(), status(&hit)), (Ok(3 * x), NodeStatus::Cached));

    let uri = first
        .run
        .artifacts()
        .unwrap()
        .into_iter()
        .find(|a| a.node == "cached_in_s3" && a.name == "return_object")
        .unwrap()
        .uri;
    let key = uri.trim_start_matches("s3://pipeline-tests/");
    let endpoint = std::env::var("AWS_ENDPOINT").expect("AWS_ENDPOINT: run under scripts/with-ray.sh");
    let answer = http(&endpoint, "DELETE", &format!("/pipeline-tests/{key}"));
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");

    let again = s3_cache::run(x).unwrap();
    assert_eq!(
        (again.output.clone(), status(&again)),
        (Ok(3 * x), NodeStatus::Completed),
        "the step ran again"
    );
}
