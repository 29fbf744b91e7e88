//! End-to-end tests of `run_locally()`: every step is a subprocess of this test binary, whose
//! worker mode runs one component and exits before the test harness would start.

use pipeline_runtime::prelude::*;
use pipeline_runtime::{ArtifactCodec, ErrorKind, MANIFEST_ENV, Mode, RunStatus, with_mode};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant, SystemTime};

fn local() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        pipeline_runtime::set_state_dir(Some(scratch("state")));
    });
    run_locally();
}

/// A folder of this test binary's own under the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("local_pipeline").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn node(run: &PipelineRun, name: &str) -> DagNode {
    run.dag()
        .node(name)
        .unwrap_or_else(|| panic!("no node `{name}`:\n{}", run.dag().to_text()))
        .clone()
}

fn overlaps(a: &DagNode, b: &DagNode) -> bool {
    a.started.unwrap() < b.ended.unwrap() && b.started.unwrap() < a.ended.unwrap()
}

// ---------------------------------------------------------------- same results as debug

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stats {
    count: usize,
    mean: f64,
}

#[component(return_values = ["low", "high"])]
fn split_at_mean(values: Vec<f64>) -> (Vec<f64>, Vec<f64>) {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    values.into_iter().partition(|v| *v < mean)
}

#[component]
fn stats(values: Vec<f64>) -> Stats {
    Stats {
        count: values.len(),
        mean: values.iter().sum::<f64>() / values.len() as f64,
    }
}

#[component]
async fn describe(low: Stats, high: Stats, label: String) -> String {
    tokio::time::sleep(Duration::from_millis(1)).await;
    format!(
        "{label}: {} below {:.2}, {} above {:.2}",
        low.count, low.mean, high.count, high.mean
    )
}

#[component]
fn square(x: f64) -> f64 {
    x * x
}

#[pipeline(name = "same_results", project = "tests")]
fn same_results(n: u32) -> anyhow::Result<(String, Vec<f64>)> {
    let values: Vec<f64> = (1..=n).map(f64::from).collect();
    let (low, high) = split_at_mean(values.clone());
    let text = describe(stats(low), stats(high), "split");
    let squares: Vec<Handle<f64>> = values.into_iter().map(square).collect();
    let mut out = Vec::new();
    for h in squares {
        out.push(h.get()?);
    }
    Ok((text.get()?, out))
}

#[test]
fn results_are_identical_to_debug_mode() {
    local();
    let local_run = same_results::run(6).unwrap();
    let debug_run = with_mode(Mode::Debug, || same_results::run(6).unwrap());
    let local_out = local_run.output.unwrap();
    assert_eq!(local_out, debug_run.output.unwrap());
    assert_eq!(local_out.0, "split: 3 below 2.00, 3 above 5.00");
    let names = |r: &PipelineRun| {
        r.dag()
            .nodes()
            .map(|n| (n.name.clone(), n.parents.clone(), n.status))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&local_run.run), names(&debug_run.run));
    assert!(local_run.run.is_successful());
}

// ---------------------------------------------------------------- parallelism

#[component]
fn nap(millis: u64, id: u32) -> u32 {
    std::thread::sleep(Duration::from_millis(millis));
    id
}

#[pipeline(name = "parallel", project = "tests", max_parallel = 2)]
fn parallel() -> Vec<u32> {
    let naps: Vec<_> = (0..4).map(|i| nap(1000, i)).collect();
    naps.into_iter().map(|h| h.get().unwrap()).collect()
}

#[pipeline(name = "serial", project = "tests", max_parallel = 1)]
fn serial() -> Vec<u32> {
    let naps: Vec<_> = (0..3).map(|i| nap(200, i)).collect();
    naps.into_iter().map(|h| h.get().unwrap()).collect()
}

#[test]
fn independent_steps_overlap_up_to_the_concurrency_limit() {
    local();
    let f = parallel::run().unwrap();
    assert_eq!(f.output, [0, 1, 2, 3]);
    let nodes: Vec<DagNode> = f.run.dag().nodes().cloned().collect();
    let overlapping = |i: usize| {
        (0..nodes.len())
            .filter(|&j| j != i && overlaps(&nodes[i], &nodes[j]))
            .count()
    };
    // Every step ran beside another, never more than two at once. Steps of a second each leave
    // room for slow spawns on a loaded machine.
    for i in 0..nodes.len() {
        let at_start = nodes
            .iter()
            .filter(|n| n.started.unwrap() <= nodes[i].started.unwrap() && n.ended.unwrap() > nodes[i].started.unwrap())
            .count();
        assert!(at_start <= 2, "{}", f.run.dag().to_text());
        assert!(overlapping(i) >= 1, "{}", f.run.dag().to_text());
    }

    let f = serial::run().unwrap();
    let nodes: Vec<DagNode> = f.run.dag().nodes().cloned().collect();
    for (i, a) in nodes.iter().enumerate() {
        for b in &nodes[i + 1..] {
            assert!(
                !overlaps(a, b),
                "max_parallel = 1 ran steps at once:\n{}",
                f.run.dag().to_text()
            );
        }
    }
}

// ---------------------------------------------------------------- failures

/// Kills its own process with SIGKILL the first time (when `marker` does not exist yet).
#[component(retries = 1)]
fn killed_once(marker: String) -> u32 {
    if !Path::new(&marker).exists() {
        std::fs::write(&marker, b"attempt 1").unwrap();
        println!("about to be killed");
        let _ = std::process::Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
        std::thread::sleep(Duration::from_secs(10));
    }
    7
}

#[component]
fn always_killed() -> u32 {
    println!("last words");
    let _ = std::process::Command::new("kill")
        .args(["-9", &std::process::id().to_string()])
        .status();
    std::thread::sleep(Duration::from_secs(10));
    0
}

#[pipeline(name = "killed", project = "tests")]
fn killed(marker: String) -> (Result<u32, HandleError>, Result<u32, HandleError>) {
    (killed_once(marker).get(), always_killed().get())
}

#[test]
fn a_worker_killed_by_a_signal_fails_its_attempt_and_is_retried() {
    local();
    let marker = scratch("killed").join(format!("marker-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let f = killed::run(marker.display().to_string()).unwrap();
    assert_eq!(f.output.0.clone().unwrap(), 7);
    assert_eq!(node(&f.run, "killed_once").attempts, 2);

    let err = f.output.1.clone().unwrap_err();
    let HandleError::Failed { error, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(error.kind, ErrorKind::Crash);
    assert!(error.message.contains("killed by signal 9 (SIGKILL)"), "{error}");
    assert!(
        error.causes.iter().any(|l| l == "last words"),
        "the log tail is kept: {error:?}"
    );
    assert_eq!(f.run.status(), RunStatus::Failed);
}

#[component(time_limit = "1s")]
fn sleeps_too_long() -> u32 {
    std::thread::sleep(Duration::from_secs(60));
    1
}

#[component]
fn panics_in_worker(x: u32) -> u32 {
    assert!(x > 100, "x was only {x}");
    x
}

#[component]
fn fine(x: u32) -> u32 {
    x + 1
}

#[pipeline(name = "limits", project = "tests")]
fn limits() -> (
    Result<u32, HandleError>,
    Result<u32, HandleError>,
    Result<u32, HandleError>,
) {
    (sleeps_too_long().get(), panics_in_worker(3).get(), fine(1).get())
}

#[test]
fn time_limits_kill_panics_are_captured_and_other_branches_go_on() {
    local();
    let start = Instant::now();
    let f = limits::run().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "the time limit did not stop the step"
    );
    let (slow, panicked, fine) = f.output;
    let slow = slow.unwrap_err();
    assert!(
        matches!(&slow, HandleError::Aborted { reason, .. } if reason.contains("time limit of 1.000s exceeded")),
        "{slow}"
    );
    assert_eq!(node(&f.run, "sleeps_too_long").status, NodeStatus::Aborted);
    let d = node(&f.run, "sleeps_too_long").duration().unwrap();
    assert!(d >= Duration::from_secs(1) && d < Duration::from_secs(20), "{d:?}");

    let HandleError::Failed { error, .. } = panicked.unwrap_err() else {
        panic!()
    };
    assert_eq!(error.kind, ErrorKind::Panic);
    assert_eq!(error.message, "x was only 3");
    assert_eq!(fine.unwrap(), 2);
    assert_eq!(f.run.status(), RunStatus::Failed);
}

#[component]
fn fails_fast() -> anyhow::Result<u32> {
    std::thread::sleep(Duration::from_millis(300));
    anyhow::bail!("fails fast")
}

#[pipeline(name = "abort_siblings", project = "tests", abort_on_failure = true)]
fn abort_siblings() -> (
    Result<u32, HandleError>,
    Result<u32, HandleError>,
    Result<u32, HandleError>,
) {
    let long = nap(60_000, 1);
    let failing = fails_fast();
    let after = fine(&failing);
    (long.get(), failing.get(), after.get())
}

#[test]
fn abort_on_failure_kills_running_siblings() {
    local();
    let start = Instant::now();
    let f = abort_siblings::run().unwrap();
    assert!(start.elapsed() < Duration::from_secs(30), "the sibling was not killed");
    let long = f.output.0.unwrap_err();
    assert!(
        matches!(&long, HandleError::Aborted { reason, .. } if reason.contains("`fails_fast` failed")),
        "{long}"
    );
    assert_eq!(node(&f.run, "nap").status, NodeStatus::Aborted);
    assert_eq!(node(&f.run, "fails_fast").status, NodeStatus::Failed);
    assert_eq!(node(&f.run, "fine").status, NodeStatus::Skipped);
    assert_eq!(f.run.status(), RunStatus::Failed);
}

#[pipeline(name = "pipeline_time_limit", project = "tests", time_limit = "1s")]
fn pipeline_time_limit() -> Result<u32, HandleError> {
    let first = nap(60_000, 1);
    let _later = fine(&first);
    first.get()
}

#[test]
fn the_pipeline_time_limit_aborts_the_run() {
    local();
    let start = Instant::now();
    let f = pipeline_time_limit::run().unwrap();
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(
        matches!(f.output, Err(HandleError::Aborted { ref reason, .. }) if reason.contains("time limit of 1.000s was reached"))
    );
    assert_eq!(f.run.status(), RunStatus::Aborted);
    assert_eq!(node(&f.run, "fine").status, NodeStatus::Aborted);
}

// ---------------------------------------------------------------- callbacks

static EVENTS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn record(node: &DagNode, previous: NodeStatus) {
    EVENTS
        .lock()
        .unwrap()
        .push(format!("{}:{previous}->{}", node.name, node.status));
}

#[component(retries = 1, status_change_callback = record)]
fn watched_fail() -> anyhow::Result<u32> {
    anyhow::bail!("no")
}

#[pipeline(name = "callbacks_local", project = "tests")]
fn callbacks_local() -> Result<u32, HandleError> {
    watched_fail().get()
}

#[test]
fn callbacks_fire_in_the_controller_in_order() {
    local();
    assert!(callbacks_local().is_err());
    let events = EVENTS.lock().unwrap().clone();
    assert_eq!(
        events,
        [
            "watched_fail:pending->queued",
            "watched_fail:queued->running",
            "watched_fail:running->failed"
        ]
    );
}

// ---------------------------------------------------------------- artifacts

#[component]
fn big(megabytes: usize) -> Vec<u8> {
    (0..megabytes << 20).map(|i| (i % 251) as u8).collect()
}

#[component]
fn checksum(data: Vec<u8>) -> u64 {
    data.iter().map(|&b| u64::from(b)).sum()
}

#[pipeline(name = "artifacts", project = "tests")]
fn artifacts(megabytes: usize) -> (Handle<Vec<u8>>, u64) {
    let data = big(megabytes);
    let sum = checksum(&data).get().unwrap();
    (data, sum)
}

#[test]
fn large_values_travel_as_checked_artifacts_and_corruption_is_detected() {
    local();
    let f = artifacts::run(32).unwrap();
    let (data, sum) = f.output;
    let expected: u64 = (0..32usize << 20).map(|i| (i % 251) as u64).sum();
    assert_eq!(sum, expected);
    let path = data.artifact().expect("the value lives in an artifact");
    assert!(std::fs::metadata(&path).unwrap().len() > 32 << 20);
    assert_eq!(data.clone().get().unwrap().len(), 32 << 20);

    // Flip one byte in the payload: reading must fail, never give a wrong value.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = data.get().unwrap_err();
    assert!(matches!(&err, HandleError::Unreadable { .. }), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[component]
fn total(parts: Vec<Vec<u8>>) -> u64 {
    parts.iter().flatten().map(|&b| u64::from(b)).sum()
}

#[pipeline(name = "fan_in_artifacts", project = "tests")]
fn fan_in_artifacts() -> (Vec<Handle<Vec<u8>>>, Handle<u64>) {
    let parts = vec![big(1), big(2)];
    let sum = total(parts.clone());
    (parts, sum)
}

#[test]
fn a_fan_in_reaches_its_worker_as_its_parents_artifacts() {
    local();
    let finished = fan_in_artifacts::run().unwrap();
    let (parts, sum) = finished.output;
    let expected: u64 = [1usize, 2]
        .iter()
        .map(|mb| (0..mb << 20).map(|i| (i % 251) as u64).sum::<u64>())
        .sum();
    assert_eq!(sum.get().unwrap(), expected);
    // The worker read the parents' own artifacts: nothing was decoded and written again.
    let run_dir = pipeline_runtime::state_dir().join("runs").join(finished.run.id());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("total").join("manifest-1.json")).unwrap()).unwrap();
    let elements: Vec<String> = manifest["inputs"][0]["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    let parents: Vec<String> = parts
        .iter()
        .map(|h| h.artifact().unwrap().display().to_string())
        .collect();
    assert_eq!(elements, parents);
    assert!(!run_dir.join("total").join("inputs").exists());
}

struct Pretty;

impl ArtifactCodec for Pretty {
    fn name(&self) -> &'static str {
        "pretty-json"
    }
    fn encode(&self, value: &dyn erased_serde::Serialize, out: &mut dyn std::io::Write) -> Result<(), String> {
        let mut ser = serde_json::Serializer::pretty(out);
        value
            .erased_serialize(&mut <dyn erased_serde::Serializer>::erase(&mut ser))
            .map_err(|e| e.to_string())
    }
    fn decode(
        &self,
        input: &mut dyn std::io::Read,
        visit: &mut dyn FnMut(&mut dyn erased_serde::Deserializer) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut de = serde_json::Deserializer::from_reader(input);
        visit(&mut <dyn erased_serde::Deserializer>::erase(&mut de))
    }
}

static PRETTY: Pretty = Pretty;

#[pipeline(name = "custom_codec", project = "tests", artifact_codec = PRETTY)]
fn custom_codec() -> (Handle<Stats>, Stats) {
    let s = stats(vec![1.0, 2.0, 3.0]);
    let copy = stats(vec![2.0]).get().unwrap();
    (s, copy)
}

#[pipeline(name = "json_codec", project = "tests", artifact_codec = "json")]
fn json_codec() -> Handle<Stats> {
    stats(vec![4.0])
}

#[test]
fn json_and_user_codecs_write_readable_artifacts() {
    local();
    let (handle, copy) = custom_codec::run().unwrap().output;
    assert_eq!(copy, Stats { count: 1, mean: 2.0 });
    let text = String::from_utf8_lossy(&std::fs::read(handle.artifact().unwrap()).unwrap()).to_string();
    assert!(
        text.contains("pretty-json") && text.contains("\n  \"count\": 3"),
        "{text}"
    );
    assert_eq!(handle.get().unwrap(), Stats { count: 3, mean: 2.0 });

    let handle = json_codec::run().unwrap().output;
    let text = String::from_utf8_lossy(&std::fs::read(handle.artifact().unwrap()).unwrap()).to_string();
    assert!(text.ends_with("{\"count\":1,\"mean\":4.0}"), "{text}");
}

// ---------------------------------------------------------------- the process boundary

fn worker(manifest: &str) -> std::process::Output {
    std::process::Command::new(std::env::current_exe().unwrap())
        .env(MANIFEST_ENV, manifest)
        .output()
        .unwrap()
}

fn write_manifest(name: &str, body: serde_json::Value) -> String {
    let path = scratch("manifests").join(name);
    std::fs::write(&path, body.to_string()).unwrap();
    path.display().to_string()
}

#[test]
fn bad_input_at_the_process_boundary_is_a_clear_error() {
    let dir = scratch("boundary");
    let out = worker("/no/such/manifest.json");
    assert_eq!(out.status.code(), Some(pipeline_runtime::EXIT_SETUP));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read the manifest"),
        "{out:?}"
    );

    let garbage = write_manifest("garbage.json", serde_json::json!({"component": 3}));
    let out = worker(&garbage);
    assert_eq!(out.status.code(), Some(pipeline_runtime::EXIT_SETUP));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not valid"), "{out:?}");

    let manifest = |component: &str, hash: &str, input: &Path| {
        serde_json::json!({
            "pipeline": "same_results", "component": component, "code_hash": hash, "codec": "bincode",
            "inputs": [{"artifact": {"path": input}}], "outputs": [dir.join("out.art")],
            "result": dir.join(format!("{component}.json")),
        })
    };
    let square_hash = pipeline_runtime::registry::find_component("square")
        .unwrap()
        .unwrap()
        .code_hash;

    let out = worker(&write_manifest(
        "unknown.json",
        manifest("no_such_step", "0", &dir.join("x")),
    ));
    assert_eq!(out.status.code(), Some(pipeline_runtime::EXIT_SETUP));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("component `no_such_step` is not registered"),
        "{out:?}"
    );

    let out = worker(&write_manifest(
        "hash.json",
        manifest("square", "0123456789abcdef", &dir.join("x")),
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(pipeline_runtime::EXIT_SETUP));
    assert!(
        stderr.contains(&format!("code hash {square_hash} in the worker binary"))
            && stderr.contains("0123456789abcdef"),
        "{stderr}"
    );

    let out = worker(&write_manifest(
        "missing.json",
        manifest("square", square_hash, &dir.join("missing.art")),
    ));
    assert_eq!(out.status.code(), Some(pipeline_runtime::EXIT_STEP_FAILED));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("input `x`: cannot open artifact"),
        "{out:?}"
    );

    let corrupt = dir.join("corrupt.art");
    std::fs::write(&corrupt, b"PLART\x01garbage").unwrap();
    let out = worker(&write_manifest(
        "corrupt.json",
        manifest("square", square_hash, &corrupt),
    ));
    assert_eq!(out.status.code(), Some(pipeline_runtime::EXIT_STEP_FAILED));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("input `x`: artifact"),
        "{out:?}"
    );
}

#[test]
fn workers_never_run_the_programs_main() {
    let dir = scratch("side_effect");
    let marker = dir.join(format!(
        "marker-{}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_side_effect_probe"))
        .arg(&marker)
        .arg(dir.join("state"))
        .env("PIPELINE_LOG_ECHO", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "30");
    let lines = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(lines.lines().count(), 1, "main ran more than once:\n{lines}");
    assert!(
        lines.contains(&format!("process {}", out.status.code().map_or(0, |_| 0))) || lines.starts_with("main ran")
    );
}

#[component]
fn worker_env() -> (bool, bool) {
    let own = std::env::var_os(MANIFEST_ENV).is_none();
    let child = std::process::Command::new("sh")
        .args(["-c", "test -z \"${PIPELINE_WORKER_MANIFEST+set}\""])
        .status()
        .is_ok_and(|s| s.success());
    (own, child)
}

#[pipeline(name = "worker_env", project = "tests")]
fn worker_env_pipeline() -> (bool, bool) {
    worker_env().get().unwrap()
}

#[test]
fn the_variable_that_makes_a_worker_is_gone_before_the_step_runs() {
    local();
    // Neither the step nor a program it starts sees it: a program built with the runtime (the
    // `pipeline` CLI) would otherwise turn into a worker too.
    assert_eq!(worker_env_pipeline::run().unwrap().output, (true, true));
    // An empty value does not make a worker: the test harness runs as itself.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--list", "--format", "terse"])
        .env(MANIFEST_ENV, "")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("the_variable_that_makes_a_worker_is_gone"),
        "{out:?}"
    );
}

#[component]
fn noisy(megabytes: usize) -> u32 {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(b"before \xff\xfe not UTF-8\n").unwrap();
    // One line of several MiB without a newline until its end.
    out.write_all(&vec![b'x'; megabytes << 20]).unwrap();
    out.write_all(b"\nafter\n").unwrap();
    out.flush().unwrap();
    7
}

#[pipeline(name = "noisy_output", project = "tests")]
fn noisy_output() -> u32 {
    noisy(8).get().unwrap()
}

#[test]
fn any_output_reaches_the_log_whole_and_never_stops_the_step() {
    local();
    let finished = noisy_output::run().unwrap();
    assert_eq!(finished.output, 7);
    let log = pipeline_runtime::state_dir()
        .join("runs")
        .join(finished.run.id())
        .join("noisy")
        .join("attempt-1.log");
    let bytes = std::fs::read(&log).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let raw: &[u8] = b"before \xff\xfe not UTF-8\n";
    assert!(
        bytes.windows(raw.len()).any(|w| w == raw),
        "the bytes are kept as they are"
    );
    assert!(
        text.contains(&format!("\n{}\nafter\n", "x".repeat(8 << 20))),
        "the long line is whole"
    );
}
