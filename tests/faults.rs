//! Faults as users meet them: what a step starts ends with the step, and a controller killed
//! with `kill -9` takes its workers, and what they started, with it.
#![cfg(target_os = "linux")]

mod common;

use pipeline_runtime::prelude::*;
use pipeline_runtime::{Mode, RunStatus, with_mode};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

fn local() {
    static INIT: Once = Once::new();
    INIT.call_once(|| pipeline_runtime::set_state_dir(Some(scratch("state"))));
    run_locally();
}

/// A folder of this test binary's own under the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether `pid` is a live process (a zombie waiting to be reaped counts as ended).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// Waits up to `bound` for every process in `pids` to end; the ones still alive.
fn survivors(pids: &[u32], bound: Duration) -> Vec<u32> {
    let start = Instant::now();
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() || start.elapsed() > bound {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads `<worker pid> <child pid>` once the step has written it (start-up may be slow on a
/// loaded machine; the bound only keeps a broken test from hanging).
fn read_pids(file: &Path) -> Vec<u32> {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            return text.split_whitespace().map(|p| p.parse().unwrap()).collect();
        }
        assert!(start.elapsed() < Duration::from_secs(180), "the step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// Long enough for the worker to start its child and write the file on a loaded machine.
#[component(time_limit = "3s")]
fn starts_a_child_and_overruns(pid_file: String) -> u32 {
    let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    std::fs::write(&pid_file, format!("{} {}", std::process::id(), child.id())).unwrap();
    child.wait().map_or(1, |_| 0)
}

#[pipeline(name = "child_overruns", project = "tests")]
fn child_overruns(pid_file: String) -> Result<u32, HandleError> {
    starts_a_child_and_overruns(pid_file).get()
}

/// A step's time limit ends the programs it started too, and the run does not wait for them
/// (they hold the log pipes: before process groups, the run lasted the child's 60 s).
#[test]
fn a_time_limit_ends_the_steps_children_and_the_run_does_not_wait_for_them() {
    local();
    let pid_file = scratch("limit").join(format!("pids-{}", std::process::id()));
    let _ = std::fs::remove_file(&pid_file);
    let start = Instant::now();
    let f = child_overruns::run(pid_file.display().to_string()).unwrap();
    let took = start.elapsed();
    let error = f.output.unwrap_err();
    assert!(error.to_string().contains("time limit"), "{error}");
    let pids = read_pids(&pid_file);
    assert_eq!(
        survivors(&pids, Duration::from_secs(5)),
        Vec::<u32>::new(),
        "left running"
    );
    // Start-up and the limit take a few seconds on a loaded machine; the child would hold the
    // run for 60.
    assert!(
        took < Duration::from_secs(30),
        "the run waited for the step's child: {took:?}"
    );
}

/// Starts the `orphan_probe` controller on a fresh state folder; its pid file, then the pids
/// its step wrote (worker, child).
fn start_probe(name: &str) -> (std::process::Child, PathBuf, Vec<u32>) {
    let dir = scratch(name);
    let _ = std::fs::remove_dir_all(dir.join("state"));
    let pid_file = dir.join("pids");
    let _ = std::fs::remove_file(&pid_file);
    let controller = std::process::Command::new(env!("CARGO_BIN_EXE_orphan_probe"))
        .arg(dir.join("state"))
        .arg(&pid_file)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pids = read_pids(&pid_file);
    assert!(pids.iter().all(|&p| alive(p)));
    (controller, dir.join("state"), pids)
}

/// The probe's run, as a reader of its store sees it.
fn probe_run(state: &Path) -> PipelineRun {
    let store = pipeline_runtime::store::RunStore::open(&state.join("runs.db")).unwrap();
    let id = store.runs(&Default::default()).unwrap()[0].id.clone();
    PipelineRun::load(&store, &id).unwrap().unwrap()
}

/// `kill -9` of the controller: its worker and the program the step started end within
/// seconds (a parent-death signal, then the worker ends its process group), and readers see
/// the run as crashed at once (its controller's process is gone from this host).
#[test]
fn a_killed_controller_takes_its_workers_with_it_and_its_run_shows_crashed() {
    let (mut controller, state, pids) = start_probe("kill9");
    assert_eq!(probe_run(&state).status(), RunStatus::Running);
    controller.kill().unwrap(); // SIGKILL
    controller.wait().unwrap();
    assert_eq!(
        survivors(&pids, Duration::from_secs(10)),
        Vec::<u32>::new(),
        "outlived their controller"
    );
    let run = probe_run(&state);
    assert_eq!(run.status(), RunStatus::Crashed);
    let controller_info = run.record().controller.clone().unwrap();
    assert_eq!(controller_info.pid, controller.id());
    // Nothing left to stop: a stop request is refused rather than recorded for nobody.
    let store = pipeline_runtime::store::RunStore::open(&state.join("runs.db")).unwrap();
    assert!(!store.request_stop(&run.record().id, "test").unwrap());
}

/// SIGTERM and Ctrl-C: the controller stops its run (workers and their children end), records
/// it as aborted, and exits as the signal would have, within seconds.
#[test]
fn sigterm_and_ctrl_c_abort_the_run_and_end_its_workers() {
    use std::os::unix::process::ExitStatusExt;
    for (name, signal) in [("sigterm", "-TERM"), ("sigint", "-INT")] {
        let (mut controller, state, pids) = start_probe(name);
        let sent = Instant::now();
        let killed = std::process::Command::new("kill")
            .arg(signal)
            .arg(controller.id().to_string())
            .status()
            .unwrap();
        assert!(killed.success());
        let exit = controller.wait().unwrap();
        let took = sent.elapsed();
        let expected = if name == "sigterm" { 15 } else { 2 };
        assert_eq!(exit.signal(), Some(expected), "{name}: {exit:?}");
        assert_eq!(survivors(&pids, Duration::from_secs(5)), Vec::<u32>::new(), "{name}");
        let run = probe_run(&state);
        assert_eq!(run.status(), RunStatus::Aborted, "{name}");
        let node = run.dag().node("start_child_and_wait").unwrap().clone();
        assert_eq!(node.status, pipeline_runtime::NodeStatus::Aborted, "{name}");
        assert!(
            node.error
                .unwrap()
                .message
                .contains(if name == "sigterm" { "SIGTERM" } else { "SIGINT" }),
            "{name}"
        );
        // The goal is 2 s; a loaded machine gets some slack, a controller that ignored the
        // signal would not exit at all (its step waits for 120 s).
        assert!(took < Duration::from_secs(15), "{name}: took {took:?}");
    }
}

static SQUARES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[component(cache = true)]
fn cached_square(x: u64) -> Vec<u64> {
    SQUARES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    vec![x * x; 64]
}

#[pipeline(name = "corrupt_cache", project = "tests")]
fn corrupt_cache(x: u64) -> Result<Vec<u64>, HandleError> {
    cached_square(x).get()
}

/// A cached artifact with one flipped byte is not served: the hit is checked, the entry is
/// dropped, the step runs again, and its new result is what the cache serves next.
#[test]
fn a_corrupt_cached_artifact_is_dropped_and_the_step_runs_again() {
    local();
    let calls = || SQUARES.load(std::sync::atomic::Ordering::SeqCst);
    // The state folder outlives test runs, and so does its cache.
    let db = scratch("state").join("runs.db");
    pipeline_runtime::store::RunStore::open(&db)
        .unwrap()
        .clear_cache(Some("cached_square"))
        .unwrap();
    let (x, square) = (9, vec![81; 64]);
    with_mode(Mode::Debug, || {
        let first = corrupt_cache::run(x).unwrap();
        assert_eq!(first.output.unwrap(), square);
        assert_eq!(calls(), 1);
        let store = pipeline_runtime::store::RunStore::open(&db).unwrap();
        let artifact = store
            .artifacts(first.run.id())
            .unwrap()
            .into_iter()
            .find(|a| a.node == "cached_square")
            .expect("the cached output is recorded");
        let mut bytes = std::fs::read(&artifact.uri).unwrap();
        *bytes.last_mut().unwrap() ^= 0x40;
        std::fs::write(&artifact.uri, bytes).unwrap();

        let second = corrupt_cache::run(x).unwrap();
        assert_eq!(second.output.unwrap(), square);
        assert_eq!(calls(), 2, "the corrupt entry was not served");
        let node = second.run.dag().node("cached_square").unwrap().clone();
        assert_eq!(node.status, NodeStatus::Completed);

        let third = corrupt_cache::run(x).unwrap();
        assert_eq!(third.output.unwrap(), square);
        assert_eq!(calls(), 2, "the new result is cached");
        assert_eq!(
            third.run.dag().node("cached_square").unwrap().status,
            NodeStatus::Cached
        );
    });
}

/// Takes the run store's write lock from another connection and holds it for `hold_ms`,
/// returning once it is held.
#[component]
fn holds_the_store_lock(store: String, hold_ms: u64) -> u64 {
    let (held, taken) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&store).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        held.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(hold_ms));
        conn.execute_batch("COMMIT").unwrap();
    });
    taken.recv().unwrap();
    hold_ms
}

#[component]
fn after_the_lock(x: u64) -> u64 {
    x + 1
}

#[pipeline(name = "held_lock", project = "tests")]
fn held_lock(store: String, hold_ms: u64) -> Result<u64, HandleError> {
    let mut h = after_the_lock(holds_the_store_lock(store, hold_ms));
    for _ in 0..3 {
        h = after_the_lock(h);
    }
    h.get()
}

/// The store's write lock held past the busy timeout mid-run: writes are tried again within a
/// bound (here 6 x 100 ms, at least 2 s). Held for less, nothing is lost; held for longer, the
/// run fails with the store's error instead of succeeding with rows missing, and its end is
/// stored as failed once the lock is free.
#[test]
fn a_store_lock_held_mid_run_loses_nothing_or_fails_the_run() {
    local();
    let db = scratch("state").join("runs.db");
    let mut config = pipeline_runtime::Config::current();
    config.mode = Mode::Debug;
    config.busy_timeout = Duration::from_millis(100);
    config.scope(|| {
        let ok = held_lock::run(db.display().to_string(), 700).unwrap();
        assert_eq!(ok.output.unwrap(), 704);
        let store = pipeline_runtime::store::RunStore::open(&db).unwrap();
        let nodes = store.nodes(ok.run.id()).unwrap();
        assert_eq!(nodes.len(), 5);
        for node in &nodes {
            assert_eq!(node.node.status, NodeStatus::Completed, "{}", node.node.name);
            let changes: Vec<_> = store
                .node_events(ok.run.id(), &node.node.name)
                .unwrap()
                .into_iter()
                .map(|(s, _)| s)
                .collect();
            assert_eq!(changes.first(), Some(&NodeStatus::Pending));
            assert_eq!(changes.last(), Some(&NodeStatus::Completed));
        }
        assert_eq!(store.run(ok.run.id()).unwrap().unwrap().status, RunStatus::Completed);

        let Err(err) = held_lock::run(db.display().to_string(), 3500) else {
            panic!("the run succeeded although its record is incomplete");
        };
        let message = err.to_string();
        assert!(
            message.contains("could not be recorded") && message.contains("locked"),
            "{message}"
        );
        let runs = store.runs(&Default::default()).unwrap();
        let failed = runs.iter().find(|r| r.name == "held_lock").unwrap();
        assert_eq!(failed.status, RunStatus::Failed, "{failed:?}");
    });
}

#[component]
fn talks_a_lot(lines: u32) -> u32 {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for i in 0..lines {
        writeln!(out, "line {i:07}").unwrap();
    }
    lines
}

#[pipeline(name = "talkative", project = "tests")]
fn talkative(lines: u32) -> Result<u32, HandleError> {
    talks_a_lot(lines).get()
}

/// A step's log keeps at most `log_cap` bytes: the newest output, after a line saying how
/// much was dropped. The step itself is not disturbed.
#[test]
fn a_step_log_keeps_its_newest_output_within_the_cap() {
    local();
    let cap = 256 << 10;
    let config = pipeline_runtime::Config::current().with_log_cap(cap);
    let lines = 300_000; // 13 bytes each: about 3.9 MB
    let f = config.scope(|| talkative::run(lines).unwrap());
    assert_eq!(f.output.unwrap(), lines);
    let store = pipeline_runtime::store::RunStore::open(&scratch("state").join("runs.db")).unwrap();
    let node = store.nodes(f.run.id()).unwrap().into_iter().next().unwrap();
    let log = std::fs::read_to_string(node.log_path.unwrap()).unwrap();
    assert!(log.len() as u64 <= cap, "{} bytes", log.len());
    let first = log.lines().next().unwrap();
    assert!(
        first.starts_with("pipeline: ") && first.contains("earlier bytes of this log were dropped"),
        "{first}"
    );
    let dropped: u64 = first.split_whitespace().nth(1).unwrap().parse().unwrap();
    let kept = log.len() as u64 - first.len() as u64 - 1;
    assert_eq!(
        dropped + kept,
        u64::from(lines) * 13,
        "every byte is kept or counted as dropped"
    );
    assert!(log.ends_with(&format!("line {:07}\n", lines - 1)));
    // What is kept starts at a line and runs in order to the end.
    let numbers: Vec<u32> = log.lines().skip(1).map(|l| l[5..].parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1));
}

/// The `resume_probe` controller's folders: state, and markers (with `executions`).
fn resume_dirs(name: &str) -> (PathBuf, PathBuf) {
    let dir = scratch(name);
    let _ = std::fs::remove_dir_all(&dir);
    let (state, markers) = (dir.join("state"), dir.join("markers"));
    std::fs::create_dir_all(&markers).unwrap();
    (state, markers)
}

fn executions(markers: &Path) -> Vec<String> {
    std::fs::read_to_string(markers.join("executions"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn only_run(state: &Path) -> pipeline_runtime::store::RunRecord {
    let store = pipeline_runtime::store::RunStore::open(&state.join("runs.db")).unwrap();
    let runs = store.runs(&Default::default()).unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.into_iter().next().unwrap()
}

fn statuses(state: &Path, run: &str) -> Vec<(String, NodeStatus)> {
    let store = pipeline_runtime::store::RunStore::open(&state.join("runs.db")).unwrap();
    store
        .nodes(run)
        .unwrap()
        .into_iter()
        .map(|n| (n.node.name, n.node.status))
        .collect()
}

/// `kill -9` of the controller mid-run, then resume: the run goes on under its id, the step
/// that had finished is not run again (counted by its executions), the killed one and the rest
/// run, and the killed step's earlier attempt keeps its log.
#[test]
fn a_run_killed_mid_way_resumes_without_redoing_finished_steps() {
    let (state, markers) = resume_dirs("resume-kill");
    common::kill_resume_probe_in_second_step(&state, &markers, &[], Duration::from_secs(180));
    let crashed = only_run(&state);
    assert_eq!(crashed.status, RunStatus::Crashed);
    std::fs::remove_file(markers.join("hold")).unwrap();

    let resumed = pipeline_runtime::resume_run(&state, &crashed.id).unwrap();
    assert_eq!(resumed.id, crashed.id);
    assert_eq!(resumed.status, RunStatus::Completed);
    assert_eq!(executions(&markers), ["first", "second", "second", "third"]);
    assert_eq!(
        statuses(&state, &resumed.id),
        [
            ("first".to_string(), NodeStatus::Cached),
            ("second".to_string(), NodeStatus::Completed),
            ("third".to_string(), NodeStatus::Completed)
        ]
    );
    let second = state.join("runs").join(&resumed.id).join("second");
    assert!(second.join("attempt-1.log").exists() && second.join("attempt-2.log").exists());
    assert_eq!(only_run(&state).id, resumed.id, "still one run");
}

/// A failed run resumed once its cause is fixed: the steps that completed are reused, only the
/// failed one runs again. A completed run cannot be resumed, and says so.
#[test]
fn a_failed_run_resumes_from_its_failed_step() {
    let (state, markers) = resume_dirs("resume-failed");
    std::fs::write(markers.join("fail"), b"").unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_resume_probe"))
        .arg(&state)
        .arg(&markers)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
    let failed = only_run(&state);
    assert_eq!(failed.status, RunStatus::Failed);
    std::fs::remove_file(markers.join("fail")).unwrap();

    let resumed = pipeline_runtime::resume_run(&state, &failed.id).unwrap();
    assert_eq!(
        (resumed.id.as_str(), resumed.status),
        (failed.id.as_str(), RunStatus::Completed)
    );
    assert_eq!(executions(&markers), ["first", "second", "third", "third"]);
    assert_eq!(
        statuses(&state, &resumed.id),
        [
            ("first".to_string(), NodeStatus::Cached),
            ("second".to_string(), NodeStatus::Cached),
            ("third".to_string(), NodeStatus::Completed)
        ]
    );
    // Attempts count across the resume: `third` failed once, then succeeded.
    let store = pipeline_runtime::store::RunStore::open(&state.join("runs.db")).unwrap();
    let attempts: Vec<u32> = store
        .nodes(&resumed.id)
        .unwrap()
        .iter()
        .map(|n| n.node.attempts)
        .collect();
    assert_eq!(attempts, [1, 1, 2]);
    let again = pipeline_runtime::resume_run(&state, &failed.id).unwrap_err();
    assert!(again.contains("could not be resumed"), "{again}");
}

fn note(dir: &str, step: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(Path::new(dir).join("executions"))
        .unwrap();
    writeln!(file, "{step}").unwrap();
}

#[component]
fn prepare(dir: String) -> Vec<u64> {
    note(&dir, "prepare");
    vec![1, 2, 3]
}

#[component]
fn finish(values: Vec<u64>, dir: String) -> anyhow::Result<u64> {
    note(&dir, "finish");
    anyhow::ensure!(!Path::new(&dir).join("fail").exists(), "told to fail");
    Ok(values.iter().sum())
}

#[pipeline(name = "resumable", project = "tests")]
fn resumable(dir: String) -> Result<u64, HandleError> {
    finish(prepare(dir.clone()), dir).get()
}

/// `my_pipeline::resume(run)` in the program itself: the recorded parameters are read back,
/// the finished step is reused, the failed one runs, and the value is returned.
#[test]
fn the_generated_resume_continues_a_failed_run_in_process() {
    local();
    let markers = scratch("resume-api");
    let _ = std::fs::remove_file(markers.join("executions"));
    std::fs::write(markers.join("fail"), b"").unwrap();
    let dir = markers.display().to_string();
    let failed = resumable::run(dir.clone()).unwrap();
    assert!(failed.output.is_err());
    std::fs::remove_file(markers.join("fail")).unwrap();

    let resumed = resumable::resume(failed.run.id()).unwrap();
    assert_eq!(resumed.output.unwrap(), 6);
    assert_eq!(resumed.run.id(), failed.run.id());
    assert_eq!(resumed.run.status(), RunStatus::Completed);
    assert_eq!(resumed.run.dag().node("prepare").unwrap().status, NodeStatus::Cached);
    assert_eq!(executions(&markers), ["prepare", "finish", "finish"]);

    let err = resumable::resume("no-such-run").err().unwrap().to_string();
    assert!(err.contains("cannot resume run no-such-run"), "{err}");
    let err = resumable::resume(failed.run.id()).err().unwrap().to_string();
    assert!(err.contains("it completed"), "{err}");
}

#[component]
fn reports_a_metric(x: u64) -> u64 {
    pipeline_runtime::step::report_scalar("progress", "x", 0, x as f64);
    x
}

#[pipeline(name = "single_writer", project = "tests")]
fn single_writer(x: u64) -> Result<u64, HandleError> {
    reports_a_metric(x).get()
}

/// A worker never opens the run store (the controller is its only writer): its manifest does
/// not name the store, and what it reports arrives with its result.
#[test]
fn workers_hand_their_reports_back_instead_of_writing_the_store() {
    local();
    let f = single_writer::run(5).unwrap();
    assert_eq!(f.output.unwrap(), 5);
    let manifest = scratch("state")
        .join("runs")
        .join(f.run.id())
        .join("reports_a_metric")
        .join("manifest-1.json");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    assert_eq!(manifest["context"]["run"], f.run.id());
    assert!(manifest["context"]["store"].is_null(), "{manifest}");
    let store = pipeline_runtime::store::RunStore::open(&scratch("state").join("runs.db")).unwrap();
    let metrics = store.metrics(f.run.id()).unwrap();
    assert_eq!(metrics.len(), 1, "{metrics:?}");
    assert_eq!((metrics[0].node.as_str(), metrics[0].value), ("reports_a_metric", 5.0));
}

// ---------------------------------------------------------------- huge lines, a full disk

/// Runs `fill_probe` with `args` (through `prefix`, a command it runs under, if any); its stdout.
fn fill_probe(prefix: &[&str], args: &[&str]) -> String {
    let probe = env!("CARGO_BIN_EXE_fill_probe");
    let mut command = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = std::process::Command::new(first);
            c.args(rest).arg(probe);
            c
        }
        None => std::process::Command::new(probe),
    };
    let out = command.args(args).env("PIPELINE_LOG_ECHO", "0").output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success() && !stderr.contains("panicked"),
        "fill_probe {args:?}: {:?}\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

#[test]
fn a_100_mib_line_reaches_the_log_whole_without_being_held_in_memory() {
    let state = scratch("long-line");
    let _ = std::fs::remove_dir_all(state.join("runs"));
    let out = fill_probe(&[], &[state.to_str().unwrap(), "line", "100"]);
    assert!(out.contains("outcome=Ok(7)"), "{out}");
    let peak: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("peak_kib="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    // The controller pumps the line through in pieces: its peak stays far below the line.
    assert!(peak < 64 << 10, "the controller peaked at {peak} KiB");
    let log = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("long_line")
        .join("attempt-1.log");
    let length = std::fs::metadata(&log).unwrap().len();
    assert_eq!(
        length,
        (100 << 20) + "\nend\n".len() as u64,
        "the line is whole in the file"
    );
    let _ = std::fs::remove_dir_all(state.join("runs"));
}

#[test]
fn a_full_disk_fails_the_run_with_its_cause_and_resume_finishes_it() {
    let state = scratch("full-disk");
    // A 4 MiB disk of the probe's own, in a mount namespace (through a user namespace when
    // not root); every step below runs in it, in one shell.
    let script = r#"set -e
probe=$1 state=$2
mount -t tmpfs -o size=4m tmpfs "$state"
"$probe" "$state" fill
"$probe" "$state" status
rm "$state/ballast"
touch "$state/ballast.done"
"$probe" "$state" resume
"$probe" "$state" status"#;
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    let mut prefix = vec!["unshare"];
    if !root {
        prefix.extend(["--user", "--map-root-user"]);
    }
    prefix.extend(["--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"]);
    let out = fill_probe(&prefix, &[state.to_str().unwrap()]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    // Nothing counts as done: the run fails with the store's error, which names the cause.
    assert!(
        lines[0].starts_with("error=the run failed because it could not be recorded")
            && lines[0].contains("the disk is full"),
        "{out}"
    );
    // Its end could not be written either; its controller is gone: crashed, not running.
    assert_eq!(lines[1], "status=crashed", "{out}");
    assert_eq!(lines[2], "outcome=Ok(4096)", "resumed once there is room: {out}");
    assert_eq!(lines[3], "status=completed", "{out}");
}
