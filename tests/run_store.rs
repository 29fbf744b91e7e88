//! The run store end to end: what a run records, the step cache, the run API, step reports,
//! concurrent writers and stop requests. One state folder for this test binary; each test
//! uses pipelines of its own names.

use pipeline_runtime::prelude::*;
use pipeline_runtime::store::{ArtifactKind, RunFilter, RunStore};
use pipeline_runtime::{Mode, RunStatus, step, with_mode};
use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn state() -> PathBuf {
    static INIT: Once = Once::new();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("run_store-{}", std::process::id()));
    INIT.call_once(|| {
        let _ = std::fs::remove_dir_all(&dir);
        pipeline_runtime::set_state_dir(Some(dir.clone()));
        debug_pipeline();
    });
    dir
}

fn store() -> RunStore {
    RunStore::open(&state().join("runs.db")).unwrap()
}

// ---------------------------------------------------------------- what a run records

#[component]
fn add(a: u32, b: u32) -> u32 {
    a + b
}

#[component(retries = 1)]
fn flaky_once(x: u32) -> anyhow::Result<u32> {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    anyhow::ensure!(CALLS.fetch_add(1, Ordering::SeqCst) > 0, "first attempt fails");
    Ok(x)
}

#[pipeline(name = "recorded", project = "store-tests", tags = ["nightly"])]
fn recorded(a: u32, label: String) -> u32 {
    let _ = label;
    let s = add(a, 1);
    flaky_once(s).get().unwrap()
}

#[test]
fn a_run_is_recorded_with_its_nodes_states_and_parameters() {
    state();
    let first = recorded::run(1, "x".into()).unwrap().run;
    let second = recorded::run(2, "y".into()).unwrap().run;
    assert_eq!((first.run_number(), second.run_number()), (1, 2));
    assert_eq!(
        second.version(),
        "1.0.0",
        "no version given and the code did not change"
    );

    let loaded = PipelineRun::get(first.id()).unwrap().expect("recorded");
    assert_eq!(loaded.status(), RunStatus::Completed);
    assert_eq!(
        loaded.parameters(),
        [("a".to_string(), "1".to_string()), ("label".into(), "\"x\"".into())]
    );
    assert_eq!(loaded.tags(), ["nightly"]);
    let node = loaded.dag().node("flaky_once").unwrap();
    assert_eq!((node.attempts, node.status), (2, NodeStatus::Completed));
    assert_eq!(node.parents, ["add"]);
    assert!(node.started.is_some() && node.ended.is_some());
    let changes = store().node_events(first.id(), "flaky_once").unwrap();
    let (events, times): (Vec<NodeStatus>, Vec<_>) = changes.into_iter().unzip();
    // A retry keeps the node running: no second `running` event.
    assert_eq!(
        events,
        [
            NodeStatus::Pending,
            NodeStatus::Queued,
            NodeStatus::Running,
            NodeStatus::Completed
        ]
    );

    // Each change carries the time it happened, in order, within the node's life.
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // (Times are kept to the microsecond, a node's start and end as seconds: 1 ms of slack.)
    let ms = Duration::from_millis(1);
    let (started, ended) = (node.started.unwrap(), node.ended.unwrap());
    assert!(
        started <= times[2] + ms && times[3] <= ended + ms,
        "{started:?} {ended:?} {times:?}"
    );

    // Found by project/name/tags; the prefix of an id works too.
    let filter = RunFilter {
        project: Some("store-tests".into()),
        name: Some("recorded".into()),
        tags: vec!["nightly".into()],
        ..Default::default()
    };
    assert_eq!(store().runs(&filter).unwrap().len(), 2);
    // Ids are matched with their case.
    assert!(PipelineRun::get(&first.id().to_uppercase()).unwrap().is_none());
}

#[pipeline(name = "sections", project = "store-tests", args_map(data = ["rows", "seed"]))]
fn sections(rows: u32, seed: u64, label: String) -> u32 {
    let _ = (seed, label);
    add(rows, 0).get().unwrap()
}

#[test]
fn args_map_files_parameters_under_sections() {
    state();
    let run = sections::run(5, 7, "x".into()).unwrap().run;
    let names: Vec<&str> = run.parameters().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["data/rows", "data/seed", "label"]);
    assert_eq!(
        PipelineRun::get(run.id()).unwrap().unwrap().parameters(),
        run.parameters()
    );
}

mod version_one {
    use super::*;
    #[pipeline(name = "versioned", project = "store-tests")]
    pub fn versioned() -> u32 {
        add(1, 1).get().unwrap()
    }
}

mod version_two {
    use super::*;
    #[pipeline(name = "versioned", project = "store-tests")]
    pub fn versioned() -> u32 {
        add(2, 2).get().unwrap() // other code under the same name
    }
}

#[test]
fn the_version_is_bumped_when_the_code_changes() {
    state();
    let a = version_one::versioned::run().unwrap().run;
    let b = version_one::versioned::run().unwrap().run;
    let c = version_two::versioned::run().unwrap().run;
    assert_eq!((a.version(), b.version(), c.version()), ("1.0.0", "1.0.0", "1.0.1"));
    let latest = PipelineRun::find(&RunFilter {
        project: Some("store-tests".into()),
        name: Some("versioned".into()),
        ..Default::default()
    })
    .unwrap()
    .unwrap();
    assert_eq!(latest.id(), c.id(), "find returns the highest version");
}

// ---------------------------------------------------------------- cache

static EXPENSIVE_CALLS: AtomicU32 = AtomicU32::new(0);

#[component(cache = true)]
fn expensive(x: u32, note: String) -> Vec<u32> {
    let _ = note;
    EXPENSIVE_CALLS.fetch_add(1, Ordering::SeqCst);
    vec![x; 3]
}

#[component(cache = true, cache_ignore = ["note"])]
fn expensive_ignoring(x: u32, note: String) -> u32 {
    let _ = note;
    EXPENSIVE_CALLS.fetch_add(1, Ordering::SeqCst);
    x * 10
}

#[pipeline(name = "cached", project = "store-tests")]
fn cached(x: u32, note: String) -> (Vec<u32>, u32) {
    let v = expensive(x, note.clone());
    let w = expensive_ignoring(x, note);
    (v.get().unwrap(), w.get().unwrap())
}

#[test]
fn the_cache_reuses_results_until_an_input_changes() {
    state();
    let calls = || EXPENSIVE_CALLS.load(Ordering::SeqCst);
    let before = calls();
    let first = cached::run(7, "a".into()).unwrap();
    assert_eq!(first.output, (vec![7, 7, 7], 70));
    assert_eq!(calls(), before + 2);

    let again = cached::run(7, "a".into()).unwrap();
    assert_eq!(again.output, (vec![7, 7, 7], 70));
    assert_eq!(calls(), before + 2, "both steps came from the cache");
    assert_eq!(again.run.dag().node("expensive").unwrap().status, NodeStatus::Cached);
    assert!(again.run.is_successful(), "a cache hit is a success");

    // `note` is ignored by one step only.
    let other_note = cached::run(7, "b".into()).unwrap();
    assert_eq!(calls(), before + 3);
    assert_eq!(
        other_note.run.dag().node("expensive").unwrap().status,
        NodeStatus::Completed
    );
    assert_eq!(
        other_note.run.dag().node("expensive_ignoring").unwrap().status,
        NodeStatus::Cached
    );

    let other_input = cached::run(8, "a".into()).unwrap();
    assert_eq!(other_input.output, (vec![8, 8, 8], 80));
    assert_eq!(calls(), before + 5);

    // The local mode reads the same cache entries.
    let local = with_mode(Mode::Local, || cached::run(7, "a".into()).unwrap());
    assert_eq!(local.output, (vec![7, 7, 7], 70));
    assert_eq!(local.run.dag().node("expensive").unwrap().status, NodeStatus::Cached);
    let nodes = store().nodes(local.run.id()).unwrap();
    assert!(
        nodes
            .iter()
            .all(|n| n.cache_key.as_deref().is_some_and(|k| k.len() == 64))
    );
}

static STAGE_CALLS: AtomicU32 = AtomicU32::new(0);
static FAIL_FINAL: AtomicU32 = AtomicU32::new(1);

#[component(cache = true)]
fn stage_one(x: u32) -> u32 {
    STAGE_CALLS.fetch_add(1, Ordering::SeqCst);
    x + 1
}

#[component(cache = true)]
fn stage_two(x: u32) -> anyhow::Result<u32> {
    anyhow::ensure!(FAIL_FINAL.load(Ordering::SeqCst) == 0, "stage two is broken");
    Ok(x * 2)
}

#[pipeline(name = "resume", project = "store-tests")]
fn resume(x: u32) -> Result<u32, HandleError> {
    stage_two(stage_one(x)).get()
}

#[test]
fn rerunning_a_failed_pipeline_reuses_the_steps_that_finished() {
    state();
    let failed = resume::run(41).unwrap();
    assert!(failed.output.is_err());
    assert_eq!(failed.run.status(), RunStatus::Failed);
    assert_eq!(STAGE_CALLS.load(Ordering::SeqCst), 1);

    FAIL_FINAL.store(0, Ordering::SeqCst);
    let resumed = resume::run(41).unwrap();
    assert_eq!(resumed.output.unwrap(), 84);
    assert_eq!(STAGE_CALLS.load(Ordering::SeqCst), 1, "stage one came from the cache");
    assert_eq!(resumed.run.dag().node("stage_one").unwrap().status, NodeStatus::Cached);
    assert_eq!(
        resumed.run.dag().node("stage_two").unwrap().status,
        NodeStatus::Completed
    );
}

// ---------------------------------------------------------------- step reports

#[component(monitor_metrics = [("loss", "train")], monitor_artifacts = ["summary"], monitor_models = [("weights", "final_weights")])]
fn train(epochs: u32, dir: String) -> anyhow::Result<f64> {
    let mut loss = 1.0;
    for epoch in 0..epochs {
        loss /= 2.0;
        step::report_scalar("loss", "train", i64::from(epoch), loss);
        step::report_scalar("loss", "other", i64::from(epoch), loss);
    }
    step::report_text("training done");
    step::upload_artifact("summary", &vec![loss], Some(serde_json::json!({"epochs": epochs})))?;
    let weights = PathBuf::from(dir).join("weights.bin");
    std::fs::write(&weights, b"0123")?;
    step::upload_model("weights", &weights)?;
    Ok(loss)
}

#[pipeline(name = "reports", project = "store-tests")]
fn reports(epochs: u32, dir: String) -> f64 {
    let config = step::connect_configuration("optimizer", serde_json::json!({"lr": 0.1}));
    assert_eq!(config["lr"], 0.1);
    train(epochs, dir).get().unwrap()
}

#[test]
fn steps_report_metrics_artifacts_models_and_configuration_in_every_mode() {
    let dir = state().join("models");
    std::fs::create_dir_all(&dir).unwrap();
    for mode in [Mode::Debug, Mode::Local] {
        let run = with_mode(mode, || reports::run(3, dir.display().to_string()).unwrap()).run;
        let run = PipelineRun::get(run.id()).unwrap().unwrap();
        assert_eq!(
            run.configuration()["optimizer"],
            serde_json::json!({"lr": 0.1}),
            "{mode:?}"
        );
        let metrics = run.metrics().unwrap();
        let step_loss: Vec<f64> = metrics
            .iter()
            .filter(|m| m.node == "train" && m.series == "train")
            .map(|m| m.value)
            .collect();
        assert_eq!(step_loss, [0.5, 0.25, 0.125], "{mode:?}");
        let monitored: Vec<_> = metrics.iter().filter(|m| m.node.is_empty()).collect();
        assert_eq!(
            monitored.len(),
            3,
            "only the monitored series is copied to the run: {mode:?}"
        );
        let artifacts = run.artifacts().unwrap();
        let named = |node: &str, name: &str| artifacts.iter().find(|a| a.node == node && a.name == name).cloned();
        let summary = named("train", "summary").expect("uploaded artifact");
        assert_eq!(summary.kind, ArtifactKind::Artifact);
        assert_eq!(summary.metadata, Some(serde_json::json!({"epochs": 3})));
        assert!(
            named("", "summary").is_some(),
            "monitor_artifacts copies it onto the run"
        );
        let model = named("", "final_weights").expect("monitor_models copies the model under its new name");
        assert_eq!((model.kind, model.size), (ArtifactKind::Model, Some(4)));
        assert_eq!(
            store().texts(run.id()).unwrap(),
            [("train".to_string(), "training done".to_string())]
        );
    }
}

// ---------------------------------------------------------------- writers at once, stop, wait

#[component]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[pipeline(name = "parallel_writers", project = "store-tests")]
fn parallel_writers(n: u64) -> u64 {
    (0..n)
        .map(|i| nap(i % 3))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.get().unwrap())
        .sum()
}

#[test]
fn concurrent_pipelines_and_processes_write_one_store() {
    state();
    let threads: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| parallel_writers::run(20).unwrap().run))
        .collect();
    let runs: Vec<PipelineRun> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut numbers: Vec<u32> = runs.iter().map(PipelineRun::run_number).collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2, 3, 4]);
    for run in &runs {
        assert_eq!(store().nodes(run.id()).unwrap().len(), 20);
    }

    // Two processes of another program, at once, on the same store.
    let probe = |marker: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_side_effect_probe"))
            .arg(state().join(marker))
            .arg(state())
            .env("PIPELINE_LOG_ECHO", "0")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (probe("a"), probe("b"));
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    let probes = store()
        .runs(&RunFilter {
            name: Some("side_effect_probe".into()),
            ..Default::default()
        })
        .unwrap();
    let mut numbers: Vec<u32> = probes.iter().map(|r| r.run_number).collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2]);
    assert!(probes.iter().all(|r| r.status == RunStatus::Completed));
}

#[pipeline(name = "stoppable", project = "store-tests")]
fn stoppable() -> Result<u64, HandleError> {
    nap(60_000).get()
}

#[test]
fn a_running_pipeline_can_be_found_stopped_and_waited_for() {
    state();
    let started = Instant::now();
    let worker = std::thread::spawn(|| with_mode(Mode::Local, || stoppable::run().unwrap()));
    let filter = RunFilter {
        name: Some("stoppable".into()),
        status: Some(RunStatus::Running),
        ..Default::default()
    };
    let mut run = loop {
        if let Some(run) = PipelineRun::find(&filter).unwrap() {
            break run;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the run never showed up");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(run.is_running());
    assert!(!run.wait(Duration::from_millis(200)).unwrap(), "still running");
    run.add_tags(&["stopped-by-test"]).unwrap();
    assert!(run.stop("enough").unwrap());
    assert!(run.wait(Duration::from_secs(20)).unwrap());
    assert_eq!(run.status(), RunStatus::Aborted);
    assert!(run.tags().contains(&"stopped-by-test".to_string()));
    let finished = worker.join().unwrap();
    assert!(
        matches!(finished.output, Err(HandleError::Aborted { ref reason, .. }) if reason.contains("stopped: enough"))
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

// ---------------------------------------------------------------- parallel instances

#[pipeline(name = "instances", project = "store-tests", multi_instance_support = "parallel")]
fn instances(x: u64) -> u64 {
    nap(200).get().unwrap() + x
}

#[test]
fn parallel_instances_run_at_once_and_can_all_be_awaited() {
    state();
    let runs: Vec<_> = (0..3).map(instances::spawn).collect();
    let records = pipeline_runtime::wait_for_multi_pipelines();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(PipelineRun::is_successful));
    let finished: Vec<_> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    assert_eq!(finished.iter().map(|f| f.output).collect::<Vec<_>>(), [200, 201, 202]);
    // Every run started before any other ended: they ran at once.
    let record = |f: &pipeline_runtime::Finished<u64>| f.run.record().clone();
    let latest_start = finished.iter().map(|f| record(f).started).max().unwrap();
    let earliest_end = finished.iter().map(|f| record(f).ended.unwrap()).min().unwrap();
    assert!(latest_start < earliest_end);
}

#[test]
fn changing_a_components_code_invalidates_its_cache() {
    let dir = state().join("code-change");
    let probe = |exe: &str, x: u64| {
        let out = std::process::Command::new(exe)
            .arg(&dir)
            .arg(x.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (a, b) = (env!("CARGO_BIN_EXE_cache_probe_a"), env!("CARGO_BIN_EXE_cache_probe_b"));
    assert_eq!(probe(a, 5), "completed 10");
    assert_eq!(probe(a, 5), "cached 10");
    assert_eq!(
        probe(b, 5),
        "completed 10",
        "other code under the same name must not reuse the result"
    );
    assert_eq!(probe(b, 5), "cached 10");
    assert_eq!(probe(a, 5), "cached 10");
    assert_eq!(probe(a, 6), "completed 12");
}

// ---------------------------------------------------------------- the database file alone

/// A process that exits as soon as its run returns leaves the run in the database file itself:
/// its recorder copies the WAL in after the run's end is answered, and the process's exit waits
/// for that. A reader that cannot read the WAL (read-only media, opened as immutable) finds it.
#[test]
fn the_database_file_alone_has_the_run_once_its_process_exited() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("file-alone-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_side_effect_probe"))
        .arg(dir.join("marker"))
        .arg(dir.join("state"))
        .env("PIPELINE_LOG_ECHO", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let uri = format!("file:{}?immutable=1", dir.join("state").join("runs.db").display());
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    let file = rusqlite::Connection::open_with_flags(uri, flags).unwrap();
    let status: String = file
        .query_row("SELECT status FROM runs WHERE name = 'side_effect_probe'", [], |r| {
            r.get(0)
        })
        .expect("the run is in the database file");
    assert_eq!(status, "completed");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- live records

/// Waits (at most 10 s) until the store shows node `name` of run `run` at `status`.
fn shown(run: &str, name: &str, status: NodeStatus) -> bool {
    let store = store();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let nodes = store.nodes(run).unwrap();
        if nodes.iter().any(|n| n.node.name == name && n.node.status == status) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[component]
fn unread(x: u32) -> u32 {
    x + 1
}

/// Steps the body has not read yet (in debug mode, not run yet) are in the store while the
/// body goes on: their records do not wait for effects that may not come for a long time (the
/// second step waits for the first, so adding it has no effect).
#[pipeline(name = "live_pending", project = "store-tests")]
fn live_pending(x: u32) -> (bool, u32) {
    let handle = unread(unread(x));
    let run = current_run().unwrap().id().to_string();
    let seen = shown(&run, "unread_1", NodeStatus::Pending);
    (seen, handle.get().unwrap())
}

#[test]
fn a_step_added_shows_in_the_store_while_the_body_goes_on() {
    state();
    let out = live_pending::run(1).unwrap().output;
    assert_eq!(out, (true, 3), "the pending step never showed in the store");
}

static SEEN_RUNNING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Runs until its run's store shows it running (at most 10 s).
#[component]
fn until_seen(x: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !SEEN_RUNNING.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    x
}

#[pipeline(name = "live_running", project = "store-tests")]
fn live_running(x: u32) -> (bool, u32) {
    let handle = until_seen(x);
    let run = current_run().unwrap().id().to_string();
    let watcher = std::thread::spawn(move || {
        let seen = shown(&run, "until_seen", NodeStatus::Running);
        SEEN_RUNNING.store(seen, Ordering::SeqCst);
        seen
    });
    // In debug mode the step runs now, while this waits for it.
    let value = handle.get().unwrap();
    (watcher.join().unwrap(), value)
}

#[test]
fn a_running_in_process_step_shows_running_in_the_store() {
    state();
    let finished = live_running::run(5).unwrap();
    assert_eq!(
        finished.output,
        (true, 5),
        "the running step never showed running in the store"
    );
    // Its start, sent later, still has the time it happened.
    let node = finished.run.dag().node("until_seen").unwrap();
    let changes = store().node_events(finished.run.id(), "until_seen").unwrap();
    let running = changes.iter().find(|(s, _)| *s == NodeStatus::Running).unwrap().1;
    let started = node.started.unwrap();
    let off = running.duration_since(started).unwrap_or_else(|e| e.duration());
    assert!(
        off < Duration::from_millis(1),
        "started {started:?}, recorded running at {running:?}"
    );
}

// ---------------------------------------------------------------- step tags

#[component(tags = ["gpu"])]
fn tagged(x: u32) -> u32 {
    x
}

#[pipeline(name = "step_tags", project = "store-tests", tags = ["weekly"], add_pipeline_tags = true)]
fn step_tags(x: u32) -> u32 {
    tagged(x).get().unwrap()
}

#[test]
fn a_step_is_stored_with_its_components_tags_and_with_add_pipeline_tags_its_runs() {
    state();
    let run = step_tags::run(1).unwrap().run;
    let nodes = store().nodes(run.id()).unwrap();
    let pipeline_tag = format!("pipeline:{}", run.id());
    assert_eq!(nodes[0].tags, ["gpu", "weekly", pipeline_tag.as_str()]);
}
