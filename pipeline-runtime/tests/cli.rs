//! End-to-end tests of the `pipeline` command line: real pipelines recorded in a state folder
//! of each test's own, then the built binary run over that folder with `--state`.

use pipeline_runtime::prelude::*;
use pipeline_runtime::store::RunStore;
use pipeline_runtime::{Mode, step, with_mode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- harness

/// The state folder and the mode are process-wide settings: pipelines of concurrent tests take
/// turns (the command-line runs, which name their folder, need not).
static TURN: Mutex<()> = Mutex::new(());

/// A fresh state folder for one test.
fn state(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `f` (which starts pipelines) with runs recorded in `state`, steps run in `mode`.
fn record<R>(state: &Path, mode: Mode, f: impl FnOnce() -> R) -> R {
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    pipeline_runtime::set_state_dir(Some(state.to_path_buf()));
    with_mode(mode, f)
}

/// What one command-line run gave.
#[derive(Debug)]
struct Cli {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Cli {
    /// Stdout of a run that succeeded.
    fn ok(self) -> String {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        self.stdout
    }

    /// The one-line error of a run that exited with `code`.
    fn fails(self, code: i32) -> String {
        assert_eq!(self.code, code, "expected exit {code}: {self:#?}");
        assert!(self.stdout.is_empty(), "{self:#?}");
        assert!(self.stderr.starts_with("pipeline: "), "{self:#?}");
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "one line expected: {self:#?}"
        );
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
        self.stderr
    }
}

/// The `pipeline` binary on `state`, with no inherited state folder or worker manifest.
fn pipeline_command(state: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pipeline"));
    command
        .arg("--state")
        .arg(state)
        .args(args)
        .env_remove(pipeline_runtime::STATE_DIR_ENV)
        .env_remove(pipeline_runtime::MANIFEST_ENV)
        .env("RUST_BACKTRACE", "1");
    command
}

/// Runs `pipeline --state <state> <args>`.
fn cli(state: &Path, args: &[&str]) -> Cli {
    let out = pipeline_command(state, args).output().unwrap();
    Cli {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `pipeline --json ...` and parses its output.
fn cli_json(state: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = cli(state, &all).ok();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

/// The byte offset where `header` starts in the first line of a table.
fn column(table: &str, header: &str) -> usize {
    table.lines().next().unwrap().find(header).unwrap()
}

/// The line of `text` that starts with `start`.
fn line_starting<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with `{start}` in\n{text}"))
}

// ---------------------------------------------------------------- components and pipelines

/// `1..=n` as floats.
#[component(task_type = "data_processing")]
fn numbers(n: u32) -> Vec<f64> {
    (1..=n).map(f64::from).collect()
}

/// Each value times `factor`.
#[component]
fn scale(values: Vec<f64>, factor: f64) -> Vec<f64> {
    values.iter().map(|v| v * factor).collect()
}

/// The sum.
#[component]
fn total(values: Vec<f64>) -> f64 {
    values.iter().sum()
}

/// `x`, or an error when it is above `limit`.
#[component]
fn at_most(x: f64, limit: f64) -> anyhow::Result<f64> {
    anyhow::ensure!(x <= limit, "{x} is above the limit {limit}");
    Ok(x)
}

/// Half of `x`.
#[component]
fn halve(x: f64) -> f64 {
    x / 2.0
}

/// Writes to stdout and stderr (its log, in local mode).
#[component]
fn chatty(n: u32) -> u32 {
    println!("chatty says hello {n}");
    eprintln!("chatty warns {n}");
    n * 2
}

/// Writes a line, sleeps, writes another.
#[component]
fn slow_chatty(millis: u64) -> u64 {
    println!("first line");
    std::thread::sleep(Duration::from_millis(millis));
    println!("second line");
    millis
}

/// A small value with a named type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Summary {
    count: usize,
    mean: f64,
    label: String,
}

/// Two outputs: a summary and a count.
#[component(return_values = ["summary", "count"])]
fn summarize(values: Vec<f64>, label: String) -> (Summary, usize) {
    let count = values.len();
    let mean = values.iter().sum::<f64>() / count as f64;
    (Summary { count, mean, label }, count)
}

/// numbers -> scale -> total, tagged.
#[pipeline(name = "chain", project = "cli-tests", tags = ["nightly"])]
fn chain(n: u32, factor: f64) -> anyhow::Result<f64> {
    let t = total(scale(numbers(n), factor));
    Ok(t.get()?)
}

/// Fails at `at_most` when `limit` is below 6; `halve` is then skipped.
#[pipeline(name = "fragile", project = "cli-other")]
fn fragile(limit: f64) -> anyhow::Result<f64> {
    let checked = at_most(total(numbers(3)), limit);
    Ok(halve(checked).get()?)
}

#[component(cache = true)]
fn cached_sum(values: Vec<f64>) -> f64 {
    values.iter().sum()
}

/// Two cached steps of two components.
#[pipeline(name = "cached_chain", project = "cli-tests")]
fn cached_chain(n: u32) -> anyhow::Result<f64> {
    Ok(cached_sum(scale_cached(numbers(n), 2.0)).get()?)
}

#[component(cache = true)]
fn scale_cached(values: Vec<f64>, factor: f64) -> Vec<f64> {
    values.iter().map(|v| v * factor).collect()
}

/// One chatty step.
#[pipeline(name = "talk", project = "cli-tests")]
fn talk(n: u32) -> anyhow::Result<u32> {
    Ok(chatty(n).get()?)
}

/// One slow chatty step.
#[pipeline(name = "slow_talk", project = "cli-tests")]
fn slow_talk(millis: u64) -> anyhow::Result<u64> {
    Ok(slow_chatty(millis).get()?)
}

/// Outputs written as JSON.
#[pipeline(name = "json_summary", project = "cli-tests", artifact_codec = "json")]
fn json_summary(n: u32) -> anyhow::Result<Summary> {
    let (summary, _count) = summarize(numbers(n), "json".to_string());
    Ok(summary.get()?)
}

/// The body's value recorded as the run's output (`return_value`), in JSON.
#[pipeline(
    name = "returns",
    project = "cli-tests",
    artifact_codec = "json",
    return_value = "report"
)]
fn returns(n: u32) -> Summary {
    let (summary, _count) = summarize(numbers(n), "returned".to_string());
    summary.get().unwrap()
}

/// Outputs written with bincode (the default).
#[pipeline(name = "bincode_summary", project = "cli-tests")]
fn bincode_summary(n: u32) -> anyhow::Result<Summary> {
    let (summary, _count) = summarize(numbers(n), "bincode".to_string());
    Ok(summary.get()?)
}

// ---------------------------------------------------------------- runs

#[test]
fn runs_lists_newest_first_and_filters() {
    let dir = state("runs");
    let (a, b, c) = record(&dir, Mode::Debug, || {
        let a = chain::run(3, 2.0).unwrap().run;
        let b = chain::run(4, 2.0).unwrap().run;
        let c = fragile::run(1.0).unwrap().run;
        (a, b, c)
    });
    assert_eq!(c.status(), RunStatus::Failed);

    let out = cli(&dir, &["runs"]).ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    for h in [
        "ID",
        "PIPELINE",
        "VERSION",
        "STATUS",
        "STARTED (UTC)",
        "DURATION",
        "STEPS",
    ] {
        assert!(lines[0].contains(h), "{out}");
    }
    assert!(
        lines[1].starts_with(c.id()) && lines[1].contains("cli-other/fragile #1"),
        "{out}"
    );
    assert!(
        lines[2].starts_with(b.id()) && lines[2].contains("cli-tests/chain #2"),
        "{out}"
    );
    assert!(
        lines[3].starts_with(a.id()) && lines[3].contains("cli-tests/chain #1"),
        "{out}"
    );
    assert!(lines[1].ends_with("4 (1 failed)"), "{out}");
    assert!(lines[2].ends_with(" 3"), "{out}");
    // Aligned: each value starts under its header.
    let status = column(&out, "STATUS");
    assert_eq!(&lines[1][status..status + 6], "failed", "{out}");
    assert_eq!(&lines[2][status..status + 9], "completed", "{out}");
    assert!(out.lines().all(|l| l == l.trim_end()), "trailing spaces:\n{out}");

    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["runs"];
        all.extend_from_slice(args);
        cli_json(&dir, &all)
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&[]), [c.id(), b.id(), a.id()]);
    assert_eq!(ids(&["--project", "cli-other"]), [c.id()]);
    assert_eq!(ids(&["--name", "chain"]), [b.id(), a.id()]);
    assert_eq!(ids(&["--tag", "nightly"]), [b.id(), a.id()]);
    assert_eq!(ids(&["--tag", "nightly", "--tag", "weekly"]), Vec::<String>::new());
    assert_eq!(ids(&["--status", "failed"]), [c.id()]);
    assert_eq!(ids(&["--status", "completed", "--limit", "1"]), [b.id()]);

    let listed = cli_json(&dir, &["runs", "--limit", "1"]);
    let run = &listed[0];
    assert_eq!(run["status"], "failed");
    assert_eq!(run["project"], "cli-other");
    assert_eq!(run["parameters"], json!({"limit": 1.0}));
    assert_eq!(run["steps"], 4);
    assert_eq!(run["step_status"]["failed"], 1);

    let none = cli(&dir, &["runs", "--project", "nobody"]).ok();
    assert!(none.starts_with("no runs match these filters"), "{none}");
    let err = cli(&dir, &["runs", "--status", "sleeping"]).fails(2);
    assert!(
        err.contains("possible values: running, completed, failed, aborted"),
        "{err}"
    );
}

// ---------------------------------------------------------------- show, dag

#[test]
fn show_gives_the_header_and_a_table_of_steps() {
    let dir = state("show");
    let run = record(&dir, Mode::Debug, || fragile::run(1.0).unwrap().run);
    // An unambiguous prefix is enough.
    let out = cli(&dir, &["show", "fragi"]).ok();
    for (key, value) in [
        ("run", run.id()),
        ("project", "cli-other"),
        ("name", "fragile"),
        ("run number", "1"),
        ("version", "1.0.0"),
        ("status", "failed"),
        ("mode", "debug"),
    ] {
        let line = line_starting(&out, &format!("{key} "));
        assert_eq!(line[key.len()..].trim(), value, "{out}");
    }
    assert!(line_starting(&out, "started ").ends_with(" UTC"), "{out}");
    assert!(line_starting(&out, "parameters:").ends_with(':'), "{out}");
    assert_eq!(
        line_starting(&out, "  limit").split_whitespace().collect::<Vec<_>>(),
        ["limit", "=", "1.0"]
    );

    let header = line_starting(&out, "STEP ");
    for h in ["STATUS", "DURATION", "ATTEMPTS", "CACHED", "PARENTS", "ERROR"] {
        assert!(header.contains(h), "{out}");
    }
    let failed = line_starting(&out, "at_most ");
    assert!(failed.contains(" failed "), "{out}");
    assert!(failed.ends_with("6 is above the limit 1"), "{out}");
    assert!(failed.contains(" total "), "parents: {out}");
    let skipped = line_starting(&out, "halve ");
    assert!(
        skipped.contains(" skipped ") && skipped.contains("parent step `at_most` failed"),
        "{out}"
    );
    let done = line_starting(&out, "numbers ");
    assert!(done.contains(" completed ") && done.contains(" no "), "{out}");
    // The ERROR column starts at the same place on every step line.
    let chars_before = |line: &str, text: &str| line[..line.find(text).unwrap()].chars().count();
    assert_eq!(
        chars_before(failed, "6 is above"),
        chars_before(header, "ERROR"),
        "{out}"
    );

    let value = cli_json(&dir, &["show", run.id()]);
    assert_eq!(value["id"], run.id());
    assert_eq!(value["status"], "failed");
    assert_eq!(value["parameters"]["limit"], 1.0);
    let steps = value["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["numbers", "total", "at_most", "halve"]);
    assert_eq!(steps[2]["error"]["message"], "6 is above the limit 1");
    assert_eq!(steps[2]["error"]["kind"], "error");
    assert_eq!(steps[3]["status"], "skipped");
    assert_eq!(steps[3]["parents"], json!(["at_most"]));
    assert_eq!(steps[0]["cache_hit"], false);
}

#[test]
fn dag_renders_text_dot_and_mermaid() {
    let dir = state("dag");
    let run = record(&dir, Mode::Debug, || chain::run(3, 2.0).unwrap().run);
    let text = cli(&dir, &["dag", run.id()]).ok();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().take(2).collect()).collect();
    assert_eq!(
        rows,
        [["numbers", "completed"], ["scale", "completed"], ["total", "completed"]],
        "{text}"
    );
    assert!(line_starting(&text, "scale ").contains("<- numbers"), "{text}");
    assert_eq!(cli(&dir, &["dag", run.id(), "--format", "text"]).ok(), text);

    let dot = cli(&dir, &["dag", run.id(), "--format", "dot"]).ok();
    assert!(dot.starts_with("digraph pipeline {"), "{dot}");
    assert!(
        dot.contains("\"numbers\" -> \"scale\";") && dot.contains("\"scale\" -> \"total\";"),
        "{dot}"
    );
    assert!(dot.trim_end().ends_with('}'), "{dot}");

    let mermaid = cli(&dir, &["dag", run.id(), "--format", "mermaid"]).ok();
    assert!(mermaid.starts_with("flowchart TD\n"), "{mermaid}");
    assert!(
        mermaid.contains("n0[\"numbers<br/>completed\"]:::completed"),
        "{mermaid}"
    );
    assert!(
        mermaid.contains("n0 --> n1") && mermaid.contains("n1 --> n2"),
        "{mermaid}"
    );

    let value = cli_json(&dir, &["dag", run.id(), "--format", "dot"]);
    assert_eq!(
        value["edges"],
        json!([{"from": "numbers", "to": "scale"}, {"from": "scale", "to": "total"}])
    );
    assert_eq!(value["rendering"], dot);
    assert_eq!(value["nodes"].as_array().unwrap().len(), 3);

    let err = cli(&dir, &["dag", run.id(), "--format", "png"]).fails(2);
    assert!(err.contains("possible values: text, dot, mermaid"), "{err}");
}

// ---------------------------------------------------------------- logs

#[test]
fn logs_print_a_local_step_and_explain_debug_steps() {
    let dir = state("logs");
    let local = record(&dir, Mode::Local, || talk::run(21).unwrap().run);
    assert!(local.is_successful(), "{}", local.dag().to_text());
    let out = cli(&dir, &["logs", local.id(), "chatty"]).ok();
    assert!(out.contains("chatty says hello 21\n"), "{out}");
    assert!(out.contains("chatty warns 21\n"), "{out}");
    // A step that has ended: --follow prints the same and returns.
    let started = Instant::now();
    assert_eq!(cli(&dir, &["logs", local.id(), "chatty", "--follow"]).ok(), out);
    assert!(started.elapsed() < Duration::from_secs(10));

    let debug = record(&dir, Mode::Debug, || talk::run(1).unwrap().run);
    let err = cli(&dir, &["logs", debug.id(), "chatty"]).fails(2);
    assert!(
        err.contains("ran in-process in debug mode and has no log file"),
        "{err}"
    );
    let err = cli(&dir, &["logs", debug.id(), "chatty", "--follow"]).fails(2);
    assert!(err.contains("debug mode"), "{err}");
    let err = cli(&dir, &["logs", local.id(), "nope"]).fails(2);
    assert!(err.contains("has no step `nope` (steps: chatty)"), "{err}");
}

#[test]
fn logs_follow_prints_new_lines_until_the_step_ends() {
    let dir = state("follow");
    let pipeline = {
        let dir = dir.clone();
        std::thread::spawn(move || record(&dir, Mode::Local, || slow_talk::run(2000).unwrap().run))
    };
    // Wait until the step runs and has its log.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (run_id, log) = loop {
        assert!(Instant::now() < deadline, "the step never started");
        std::thread::sleep(Duration::from_millis(50));
        if !dir.join("runs.db").exists() {
            continue;
        }
        let store = RunStore::open(&dir.join("runs.db")).unwrap();
        let Some(run) = store.runs(&Default::default()).unwrap().into_iter().next() else {
            continue;
        };
        let nodes = store.nodes(&run.id).unwrap();
        if nodes.iter().any(|n| n.node.status == NodeStatus::Running) {
            let log = dir.join("runs").join(&run.id).join("slow_chatty").join("attempt-1.log");
            break (run.id, log);
        }
    };
    let mut child = pipeline_command(&dir, &["logs", &run_id, "slow_chatty", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`logs --follow` did not stop after the step ended");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let run = pipeline.join().unwrap();
    assert!(run.is_successful(), "{}", run.dag().to_text());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The second line was written after the command started: it was followed.
    assert!(
        stdout.contains("first line\n") && stdout.contains("second line\n"),
        "{stdout}"
    );
    assert_eq!(stdout, std::fs::read_to_string(log).unwrap());
}

// ---------------------------------------------------------------- artifacts, get

#[test]
fn artifacts_and_get_read_checked_outputs() {
    let dir = state("artifacts");
    let (json_run, bincode_run) = record(&dir, Mode::Local, || {
        (json_summary::run(4).unwrap().run, bincode_summary::run(2).unwrap().run)
    });

    let out = cli(&dir, &["artifacts", json_run.id()]).ok();
    let header = out.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["NODE", "NAME", "KIND", "TYPE", "CODEC", "SIZE", "CHECKSUM", "URI"]
    );
    let numbers_row = line_starting(&out, "numbers ");
    assert!(
        numbers_row.contains(" return_object ") && numbers_row.contains(" Vec<f64> "),
        "{out}"
    );
    assert!(
        numbers_row.contains(" output ") && numbers_row.contains(" json "),
        "{out}"
    );
    let summary_row = line_starting(&out, "summarize  summary ");
    assert!(summary_row.contains(" Summary "), "{out}");
    assert!(line_starting(&out, "summarize  count ").contains(" usize "), "{out}");
    let uri = column(&out, "URI");
    assert!(out.lines().skip(1).all(|l| Path::new(&l[uri..]).is_file()), "{out}");

    let listed = cli_json(&dir, &["artifacts", json_run.id()]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let summary = listed.iter().find(|a| a["name"] == "summary").unwrap();
    assert_eq!(summary["codec"], "json");
    assert_eq!(summary["kind"], "output");
    assert_eq!(summary["checksum"].as_str().unwrap().len(), 8);
    assert!(summary["type"].as_str().unwrap().ends_with("::Summary"));

    // JSON payloads print as JSON.
    let value: Value = serde_json::from_str(&cli(&dir, &["get", json_run.id(), "summarize", "summary"]).ok()).unwrap();
    assert_eq!(value, json!({"count": 4, "mean": 2.5, "label": "json"}));
    let value: Value = serde_json::from_str(&cli(&dir, &["get", json_run.id(), "numbers"]).ok()).unwrap();
    assert_eq!(value, json!([1.0, 2.0, 3.0, 4.0]));
    let wrapped = cli_json(&dir, &["get", json_run.id(), "summarize", "count"]);
    assert_eq!(wrapped["value"], 4);
    assert_eq!(wrapped["codec"], "json");
    assert_eq!(wrapped["type"], "usize");

    let err = cli(&dir, &["get", json_run.id(), "summarize"]).fails(2);
    assert!(
        err.contains("several outputs (summary, count)") || err.contains("several outputs (count, summary)"),
        "{err}"
    );
    let err = cli(&dir, &["get", json_run.id(), "summarize", "nope"]).fails(2);
    assert!(err.contains("has no output `nope`"), "{err}");
    let err = cli(&dir, &["get", json_run.id(), "nope", "x"]).fails(2);
    assert!(err.contains("has no step `nope`"), "{err}");

    // Bincode is not self-describing: a clear error with what is known of the artifact.
    let err = cli(&dir, &["get", bincode_run.id(), "summarize", "summary"]).fails(1);
    assert!(err.contains("`bincode`, which is not self-describing"), "{err}");
    assert!(err.contains("::Summary"), "{err}");
    assert!(
        err.contains(" B)") && err.contains(&format!("runs/{}", bincode_run.id())),
        "{err}"
    );

    // A damaged artifact is refused, never shown.
    let path = PathBuf::from(summary["uri"].as_str().unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = cli(&dir, &["get", json_run.id(), "summarize", "summary"]).fails(1);
    assert!(err.contains("checksum"), "{err}");

    let debug = record(&dir, Mode::Debug, || chain::run(2, 1.0).unwrap().run);
    let none = cli(&dir, &["artifacts", debug.id()]).ok();
    assert!(
        none.contains("has no artifacts") && none.contains("debug mode"),
        "{none}"
    );
    let err = cli(&dir, &["get", debug.id(), "total"]).fails(2);
    assert!(err.contains("debug mode"), "{err}");
}

// ---------------------------------------------------------------- compare

/// Reports a loss per epoch, and an accuracy for small rates.
#[component]
fn fit(epochs: u32, rate: f64) -> f64 {
    let mut loss = 1.0;
    for epoch in 0..epochs {
        loss *= 1.0 - rate;
        step::report_scalar("loss", "train", i64::from(epoch), loss);
    }
    if rate < 0.5 {
        step::report_scalar("accuracy", "val", 0, 0.75);
    }
    loss
}

/// One `fit` step.
#[pipeline(name = "trainer", project = "cli-tests")]
fn trainer(epochs: u32, rate: f64) -> anyhow::Result<f64> {
    Ok(fit(epochs, rate).get()?)
}

#[test]
fn compare_puts_parameters_steps_and_metrics_side_by_side() {
    let dir = state("compare");
    let (a, b) = record(&dir, Mode::Debug, || {
        (trainer::run(2, 0.25).unwrap().run, trainer::run(2, 0.5).unwrap().run)
    });

    let out = cli(&dir, &["compare", a.id(), b.id()]).ok();
    let words = |start: &str| line_starting(&out, start).split_whitespace().collect::<Vec<_>>();
    assert_eq!(words("  run "), ["run", a.id(), b.id()]);
    assert_eq!(
        words("  pipeline "),
        ["pipeline", "cli-tests/trainer", "#1", "cli-tests/trainer", "#2"]
    );
    assert_eq!(words("  epochs "), ["epochs", "2", "2"]);
    assert_eq!(words("* rate "), ["*", "rate", "0.25", "0.5"]);
    let fit_row = words("  fit ");
    assert_eq!(fit_row.len(), 4, "step, duration, duration, change: {out}");
    assert!(fit_row[3].ends_with('%'), "{out}");
    // The last value of each series: 0.75^2 and 0.5^2.
    assert_eq!(words("* loss/train "), ["*", "loss/train", "0.5625", "0.25"]);
    assert_eq!(words("* accuracy/val "), ["*", "accuracy/val", "0.75", "-"]);
    assert!(out.contains("* marks values that differ"), "{out}");
    assert!(out.lines().all(|l| l == l.trim_end()), "trailing spaces:\n{out}");

    let value = cli_json(&dir, &["compare", a.id(), b.id()]);
    assert_eq!(value["a"]["id"], a.id());
    assert_eq!(value["b"]["parameters"]["rate"], 0.5);
    let parameters = value["parameters"].as_array().unwrap();
    assert_eq!(
        parameters[0],
        json!({"name": "epochs", "a": 2, "b": 2, "differs": false})
    );
    assert_eq!(
        parameters[1],
        json!({"name": "rate", "a": 0.25, "b": 0.5, "differs": true})
    );
    let steps = value["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0]["a"]["status"], "completed");
    assert_eq!(steps[0]["differs"], false);
    assert!(steps[0]["b"]["duration_s"].as_f64().is_some());
    let loss = value["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["title"] == "loss")
        .unwrap();
    assert_eq!(
        loss,
        &json!({"title": "loss", "series": "train", "a": 0.5625, "b": 0.25, "differs": true})
    );

    // `show` lists the last values too.
    let shown = cli(&dir, &["show", a.id()]).ok();
    assert_eq!(
        line_starting(&shown, "loss/train ")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["loss/train", "0.5625"]
    );

    let err = cli(&dir, &["compare", a.id(), "nope"]).fails(2);
    assert!(err.contains("no run `nope`"), "{err}");
}

// ---------------------------------------------------------------- cache, stop

/// A cached step.
#[component(cache = true)]
fn costly(x: u32) -> u32 {
    x * 10
}

/// Another cached step.
#[component(cache = true)]
fn pricey(x: u32) -> u32 {
    x + 1
}

/// Two cached steps in a chain.
#[pipeline(name = "cached", project = "cli-tests")]
fn cached(x: u32) -> anyhow::Result<u32> {
    Ok(pricey(costly(x)).get()?)
}

#[test]
fn cache_hits_show_and_cache_clear_removes_entries() {
    let dir = state("cache");
    // Nothing recorded yet: nothing to clear, and no store is created to say so.
    assert_eq!(cli(&dir, &["cache", "clear"]).ok(), "removed 0 cache entries\n");
    assert!(!dir.join("runs.db").exists());

    let (first, second) = record(&dir, Mode::Debug, || {
        (cached::run(4).unwrap().run, cached::run(4).unwrap().run)
    });
    assert_eq!(first.dag().node("costly").unwrap().status, NodeStatus::Completed);
    let shown = cli(&dir, &["show", second.id()]).ok();
    for step in ["costly ", "pricey "] {
        let row = line_starting(&shown, step);
        assert!(row.contains(" cached ") && row.contains(" yes "), "{shown}");
    }
    let steps = cli_json(&dir, &["show", second.id()])["steps"].clone();
    assert_eq!(steps[0]["cache_hit"], true);
    assert_eq!(steps[0]["status"], "cached");

    assert_eq!(
        cli(&dir, &["cache", "clear", "--component", "costly"]).ok(),
        "removed 1 cache entry of component `costly`\n"
    );
    let third = record(&dir, Mode::Debug, || cached::run(4).unwrap().run);
    assert_eq!(third.dag().node("costly").unwrap().status, NodeStatus::Completed);
    assert_eq!(third.dag().node("pricey").unwrap().status, NodeStatus::Cached);
    assert_eq!(
        cli_json(&dir, &["cache", "clear"]),
        json!({"removed": 2, "component": null})
    );
    assert_eq!(cli(&dir, &["cache", "clear"]).ok(), "removed 0 cache entries\n");
}

/// One long step, to be stopped.
#[pipeline(name = "sleepy", project = "cli-tests")]
fn sleepy(millis: u64) -> anyhow::Result<u64> {
    Ok(slow_chatty(millis).get()?)
}

/// Starts `sleepy` (a minute-long local step) on a thread, recorded in `dir`; returns the
/// thread and the run's id once the store lists it as running.
fn start_sleepy(dir: &Path) -> (std::thread::JoinHandle<pipeline_runtime::PipelineRun>, String) {
    let pipeline = {
        let dir = dir.to_path_buf();
        std::thread::spawn(move || record(&dir, Mode::Local, || sleepy::run(60_000).unwrap().run))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(50));
        let listed = cli_json(dir, &["runs", "--status", "running"]);
        if let Some(run) = listed.as_array().and_then(|a| a.first()) {
            return (pipeline, run["id"].as_str().unwrap().to_string());
        }
    }
}

#[test]
fn stop_asks_a_running_run_to_stop() {
    let dir = state("stop");
    let (pipeline, running) = start_sleepy(&dir);
    let out = cli(&dir, &["stop", "sleepy", "--reason", "enough"]).ok();
    assert_eq!(out, format!("stop requested for run {running} (enough)\n"));
    let stopped = pipeline.join().unwrap();
    assert_eq!(stopped.id(), running);
    assert_eq!(stopped.status(), RunStatus::Aborted, "{}", stopped.dag().to_text());

    let out = cli(&dir, &["stop", &running]).ok();
    assert_eq!(
        out,
        format!("run {running} has already ended (aborted); nothing to stop\n")
    );
    let value = cli_json(&dir, &["stop", &running]);
    assert_eq!(value["requested"], false);
    assert_eq!(value["status"], "aborted");
    let shown = cli(&dir, &["show", &running]).ok();
    assert!(line_starting(&shown, "slow_chatty ").contains(" aborted "), "{shown}");
}

/// `pipeline rerun` of a `PipelineController` run: the recorded executable builds the pipeline
/// again from the spec the run recorded, with the parameters edited.
#[test]
fn rerun_builds_a_controller_run_again_from_its_recorded_spec() {
    let dir = state("rerun-controller");
    let mut pipe = pipeline_runtime::PipelineController::new("dynamic_chain", "cli-tests");
    pipe.add_parameter("n", 3, "how many numbers").set_codec("json");
    pipe.add_function_step("numbers", "numbers", json!({ "n": "${pipeline.n}" }));
    pipe.add_function_step(
        "doubled",
        "scale",
        json!({ "values": "${numbers.return_object}", "factor": 2.0 }),
    );
    pipe.add_function_step("sum", "total", json!({ "values": "${doubled.return_object}" }));
    let first = record(&dir, Mode::Debug, || pipe.run().unwrap());
    assert_eq!(first.output["sum.return_object"], json!(12.0));
    let id = first.run.id().to_string();

    let out = cli(&dir, &["rerun", &id, "--set", "n=4", "--mode", "local"]).ok();
    let new_id = out.split_whitespace().nth(1).unwrap().to_string();
    assert!(out.contains("completed"), "{out}");
    let store = RunStore::open(&dir.join("runs.db")).unwrap();
    let new = store.run(&new_id).unwrap().unwrap();
    assert_eq!(new.origin.as_deref(), Some(id.as_str()));
    assert_eq!(new.parameters, [("n".to_string(), "4".to_string())]);
    assert_eq!(
        new.configuration["pipeline_spec"],
        store.run(&id).unwrap().unwrap().configuration["pipeline_spec"]
    );
    let mut nodes: Vec<String> = store.nodes(&new_id).unwrap().into_iter().map(|n| n.node.name).collect();
    nodes.sort();
    assert_eq!(nodes, ["doubled", "numbers", "sum"]);
    // Local mode kept the outputs (JSON, the spec's codec): 2 * (1 + 2 + 3 + 4).
    let value: Value = serde_json::from_str(&cli(&dir, &["get", &new_id, "sum"]).ok()).unwrap();
    assert_eq!(value, json!(20.0));
}

/// `create_draft()`: the spec is checked and recorded as a run that nothing runs; `pipeline runs
/// --status draft` lists it, `resume` refuses it, and `pipeline rerun` runs it as a new run,
/// leaving the draft as it was.
#[test]
fn a_draft_is_recorded_and_run_later_by_rerun() {
    let dir = state("draft");
    let mut pipe = pipeline_runtime::PipelineController::new("drafted chain", "cli-tests");
    pipe.add_parameter("n", 3, "how many numbers").set_codec("json");
    pipe.add_function_step("numbers", "numbers", json!({ "n": "${pipeline.n}" }));
    pipe.add_function_step("sum", "total", json!({ "values": "${numbers.return_object}" }));
    pipe.set_parameter("n", 5);
    // The draft keeps the mode configured when it was made.
    let id = record(&dir, Mode::Local, || pipe.create_draft().unwrap());
    let store = RunStore::open(&dir.join("runs.db")).unwrap();
    let draft = store.run(&id).unwrap().unwrap();
    assert_eq!(draft.status, RunStatus::Draft);
    assert_eq!(draft.name, "drafted chain");
    assert_eq!(draft.parameters, [("n".to_string(), "5".to_string())]);
    assert!(
        draft.configuration.contains_key("pipeline_spec"),
        "{:?}",
        draft.configuration
    );
    assert!(draft.ended.is_none());
    assert!(store.nodes(&id).unwrap().is_empty());
    // Nothing ran, and nothing reads it as a crashed run.
    let listed = cli(&dir, &["runs", "--status", "draft"]).ok();
    assert!(listed.contains(&id) && listed.contains("draft"), "{listed}");
    assert!(!cli(&dir, &["runs", "--status", "crashed"]).ok().contains(&id));
    let refused = cli(&dir, &["resume", &id]);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("it is a draft"), "{refused:?}");

    let out = cli(&dir, &["rerun", &id, "--set", "n=4"]).ok();
    assert!(out.contains("completed"), "{out}");
    let new_id = out.split_whitespace().nth(1).unwrap().to_string();
    let new = store.run(&new_id).unwrap().unwrap();
    assert_eq!(new.origin.as_deref(), Some(id.as_str()));
    assert_eq!(new.mode, "local");
    let value: Value = serde_json::from_str(&cli(&dir, &["get", &new_id, "sum"]).ok()).unwrap();
    assert_eq!(value, json!(10.0));
    assert_eq!(store.run(&id).unwrap().unwrap().status, RunStatus::Draft);

    // A spec with a mistake is not recorded.
    let mut bad = pipeline_runtime::PipelineController::new("drafted chain", "cli-tests");
    bad.add_function_step("sum", "total", json!({ "values": "${nowhere.return_object}" }));
    let err = record(&dir, Mode::Debug, || bad.create_draft())
        .unwrap_err()
        .to_string();
    assert!(err.contains("names no step"), "{err}");
    let drafts = store
        .runs(&pipeline_runtime::store::RunFilter {
            status: Some(RunStatus::Draft),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(drafts.len(), 1);
}

/// Runs `chain` from its body: a nested pipeline.
#[pipeline(name = "holder", project = "cli-tests")]
fn holder(n: u32) -> anyhow::Result<f64> {
    chain::run(n, 1.0)?.output
}

/// `pipeline show` links a nested run and the run whose body started it, both ways, and
/// `pipeline runs --parent RUN` lists the nested runs.
#[test]
fn show_links_nested_runs_both_ways() {
    let dir = state("nested");
    let outer = record(&dir, Mode::Debug, || holder::run(2).unwrap());
    assert_eq!(outer.output.unwrap(), 3.0);
    let id = outer.run.id().to_string();
    let listed = cli_json(&dir, &["runs", "--parent", &id]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let inner = listed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(listed[0]["parent"], json!({"run": id, "node": "chain"}));
    let shown = cli(&dir, &["show", &id]).ok();
    assert!(
        shown.contains(&format!("nested runs:\n  chain: {inner} (completed)")),
        "{shown}"
    );
    let shown = cli(&dir, &["show", &inner]).ok();
    assert!(
        line_starting(&shown, "nested in").contains(&format!("{id} (step chain)")),
        "{shown}"
    );
}

/// `pipeline get RUN`: the run's `return_value`, recorded in every mode.
#[test]
fn get_without_a_step_shows_the_runs_return_value() {
    let dir = state("return-value");
    let (debug, plain) = record(&dir, Mode::Debug, || {
        (returns::run(2).unwrap().run, talk::run(1).unwrap().run)
    });
    let value: Value = serde_json::from_str(&cli(&dir, &["get", debug.id()]).ok()).unwrap();
    assert_eq!(value, json!({"count": 2, "mean": 1.5, "label": "returned"}));
    let wrapped = cli_json(&dir, &["get", debug.id()]);
    assert_eq!(wrapped["output"], "report");
    assert_eq!(wrapped["step"], Value::Null);
    let err = cli(&dir, &["get", plain.id()]).fails(2);
    assert!(err.contains("recorded no return value"), "{err}");
}

#[component(tags = ["heavy"])]
fn weighed(x: f64) -> f64 {
    x
}

/// Each step tagged with the run (`add_pipeline_tags`).
#[pipeline(name = "tagged", project = "cli-tests", tags = ["nightly"], add_pipeline_tags = true)]
fn tagged(x: f64) -> anyhow::Result<f64> {
    Ok(weighed(halve(x)).get()?)
}

/// Step tags: the component's, and with `add_pipeline_tags` the run's and `pipeline:<id>`.
#[test]
fn steps_carry_their_tags_and_the_runs_with_add_pipeline_tags() {
    let dir = state("step-tags");
    let (tagged, plain) = record(&dir, Mode::Debug, || {
        (tagged::run(4.0).unwrap().run, chain::run(1, 1.0).unwrap().run)
    });
    let shown = cli_json(&dir, &["show", tagged.id()]);
    let tags = |name: &str, shown: &Value| {
        shown["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["tags"]
            .clone()
    };
    let own = format!("pipeline:{}", tagged.id());
    assert_eq!(tags("weighed", &shown), json!(["heavy", "nightly", own]));
    assert_eq!(tags("halve", &shown), json!(["nightly", own]));
    let shown = cli_json(&dir, &["show", plain.id()]);
    assert_eq!(tags("total", &shown), json!([]));
}

/// A step's `task_type` is recorded, shown and filterable.
#[test]
fn show_filters_steps_by_task_type() {
    let dir = state("task-type");
    let run = record(&dir, Mode::Debug, || chain::run(2, 1.0).unwrap().run);
    let shown = cli(&dir, &["show", run.id(), "--task-type", "data_processing"]).ok();
    assert!(
        line_starting(&shown, "numbers ").contains(" data_processing "),
        "{shown}"
    );
    assert!(!shown.contains("\ntotal "), "{shown}");
    let none = cli(&dir, &["show", run.id(), "--task-type", "training"]).ok();
    assert!(none.contains("no steps of task type `training`"), "{none}");
    let all = cli_json(&dir, &["show", run.id()]);
    let types: Vec<&Value> = all["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["task_type"])
        .collect();
    assert_eq!(types, [&json!("data_processing"), &Value::Null, &Value::Null]);
}

/// `pipeline stop RUN --mark MARK` and `PipelineRun::stop_marked`: the run ends marked as
/// asked (ClearML's `stop(mark_failed, mark_aborted)`; `completed` is its default).
#[test]
fn a_stop_marks_the_run_as_asked() {
    let dir = state("stop-marked");
    let stop_when_running = |stop: &dyn Fn(&str)| {
        let (pipeline, running) = start_sleepy(&dir);
        stop(&running);
        let stopped = pipeline.join().unwrap();
        assert_eq!(stopped.id(), running);
        let node = stopped.dag().node("slow_chatty").unwrap().status;
        assert_eq!(node, NodeStatus::Aborted);
        stopped.status()
    };
    let by_cli = stop_when_running(&|id| {
        let out = cli(&dir, &["stop", id, "--mark", "completed"]).ok();
        assert!(out.starts_with("stop requested"), "{out}");
    });
    assert_eq!(by_cli, RunStatus::Completed);
    let by_api = stop_when_running(&|id| {
        pipeline_runtime::Config::current().with_state_dir(&dir).scope(|| {
            let mut run = pipeline_runtime::PipelineRun::get(id).unwrap().unwrap();
            let asked = run
                .stop_marked(
                    "enough",
                    pipeline_runtime::StopMark::Failed,
                    Some(Duration::from_secs(60)),
                )
                .unwrap();
            assert!(asked);
            // It waited for the end.
            assert_eq!(run.status(), RunStatus::Failed);
        });
    });
    assert_eq!(by_api, RunStatus::Failed);
    let bad = cli(&dir, &["stop", "x", "--mark", "finished"]).fails(2);
    assert!(bad.contains("finished"), "{bad}");
}

// ---------------------------------------------------------------- errors

#[test]
fn missing_unknown_and_ambiguous_runs_are_one_line_errors() {
    let dir = state("errors");
    // No store yet: an empty listing for `runs`, an error for what needs a run.
    let out = cli(&dir, &["runs"]).ok();
    assert!(out.starts_with("no runs: no pipeline has run"), "{out}");
    assert_eq!(cli_json(&dir, &["runs"]), json!([]));
    let err = cli(&dir, &["show", "anything"]).fails(2);
    assert!(
        err.contains(&format!("no run store at {}", dir.join("runs.db").display())),
        "{err}"
    );
    assert!(err.contains("no pipeline has run with this state folder"), "{err}");
    assert!(!dir.join("runs.db").exists(), "reading must not create a store");

    record(&dir, Mode::Debug, || {
        chain::run(1, 1.0).unwrap();
        chain::run(2, 1.0).unwrap();
    });
    let err = cli(&dir, &["show", "no-such-run"]).fails(2);
    assert!(err.contains("no run `no-such-run`"), "{err}");
    let err = cli(&dir, &["dag", "chain"]).fails(2);
    assert!(err.contains("ambiguous: it matches 2 runs"), "{err}");
    for args in [
        &["logs", "x"][..],
        &["frobnicate"],
        &[],
        &["cache"],
        &["runs", "--limit", "many"],
    ] {
        cli(&dir, args).fails(2);
    }
    assert!(cli(&dir, &["--help"]).ok().contains("Usage: pipeline"));
}

#[test]
fn a_corrupt_store_is_a_one_line_error() {
    let dir = state("corrupt");
    std::fs::write(
        dir.join("runs.db"),
        b"this is not a database, just some text long enough to look like a header",
    )
    .unwrap();
    for args in [&["runs"][..], &["show", "x"], &["cache", "clear"], &["--json", "runs"]] {
        let err = cli(&dir, args).fails(1);
        assert!(err.contains("not a run store"), "{err}");
        assert!(err.contains(&dir.join("runs.db").display().to_string()), "{err}");
    }
}

// ---------------------------------------------------------------- read-only stores

/// An archived state folder on read-only media: the reading commands work (nothing is created,
/// migrated or written), and a command that must write says why it cannot. The folder is
/// mounted read-only in a mount namespace of the command's own (`unshare`), so the test needs
/// no privileges beyond user namespaces.
#[cfg(target_os = "linux")]
#[test]
fn a_read_only_state_folder_can_be_inspected() {
    let dir = state("read-only");
    let run = record(&dir, Mode::Local, || chain::run(2, 1.5).unwrap().run);
    let id = run.id().to_string();
    let on_read_only = |args: &str| -> Cli {
        let script = format!(
            "mount --bind \"$0\" \"$0\" && mount -o remount,bind,ro \"$0\" && exec \"$1\" --state \"$0\" {args}"
        );
        let out = Command::new("unshare")
            .args(["--mount", "--map-root-user", "sh", "-c", &script])
            .arg(&dir)
            .arg(env!("CARGO_BIN_EXE_pipeline"))
            .env_remove(pipeline_runtime::STATE_DIR_ENV)
            .output()
            .expect("`unshare` (util-linux) is installed");
        Cli {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    // The mount itself works here: writing through it fails.
    let probe = Command::new("unshare")
        .args(["--mount", "--map-root-user", "sh", "-c"])
        .arg("mount --bind \"$0\" \"$0\" && mount -o remount,bind,ro \"$0\" && ! touch \"$0/probe\"")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(probe.success(), "a read-only bind mount could not be made");

    let runs = on_read_only("runs").ok();
    assert!(runs.contains(&id), "{runs}");
    let show = on_read_only(&format!("show {id}")).ok();
    assert!(show.contains("completed"), "{show}");
    let dag = on_read_only(&format!("dag {id}")).ok();
    assert!(dag.contains("scale"), "{dag}");
    let artifacts = on_read_only(&format!("artifacts {id}")).ok();
    assert!(artifacts.contains("total"), "{artifacts}");
    // Nothing to stop in an ended run: said without writing.
    let stop = on_read_only(&format!("stop {id}")).ok();
    assert!(stop.contains("nothing to stop"), "{stop}");
    // A command that must write says why it cannot.
    let clear = on_read_only("cache clear");
    assert_ne!(clear.code, 0, "{clear:#?}");
    assert!(clear.stderr.contains("runs.db"), "{clear:#?}");
    assert!(!clear.stderr.contains("panicked"), "{clear:#?}");
}

// ---------------------------------------------------------------- rerun

/// `pipeline rerun RUN --set NAME=VALUE`: the recorded executable runs the pipeline again
/// with the recorded parameters, edited; the new run links to the old one. Mistakes are one
/// clear line before anything starts.
#[test]
fn rerun_starts_the_pipeline_again_with_edited_parameters() {
    let dir = state("rerun");
    let first = record(&dir, Mode::Local, || chain::run(3, 1.5).unwrap());
    assert_eq!(first.output.unwrap(), 9.0);
    let id = first.run.id().to_string();

    let out = cli(&dir, &["rerun", &id, "--set", "factor=2", "--mode", "debug"]).ok();
    let new_id = out.split_whitespace().nth(1).unwrap().to_string();
    assert!(out.contains("completed"), "{out}");
    let store = RunStore::open(&dir.join("runs.db")).unwrap();
    let new = store.run(&new_id).unwrap().unwrap();
    assert_eq!(new.origin.as_deref(), Some(id.as_str()));
    assert_eq!(new.mode, "debug");
    assert_eq!(
        new.parameters,
        [
            ("n".to_string(), "3".to_string()),
            ("factor".to_string(), "2.0".to_string())
        ]
    );
    let steps = store.nodes(&new_id).unwrap();
    assert!(
        steps.iter().all(|s| s.node.status == NodeStatus::Completed),
        "{steps:?}"
    );
    let show = cli(&dir, &["show", &new_id]).ok();
    assert!(line_starting(&show, "rerun of").contains(&id), "{show}");

    // Mistakes, each before anything starts.
    let runs_before = store.runs(&Default::default()).unwrap().len();
    let unknown = cli(&dir, &["rerun", &id, "--set", "fator=2"]).fails(2);
    assert!(
        unknown.contains("no parameter `fator`") && unknown.contains("n, factor"),
        "{unknown}"
    );
    let kind = cli(&dir, &["rerun", &id, "--set", "n=three"]).fails(2);
    assert!(
        kind.contains("`n` was a number") && kind.contains("is a string"),
        "{kind}"
    );
    let form = cli(&dir, &["rerun", &id, "--set", "n"]).fails(2);
    assert!(form.contains("NAME=VALUE"), "{form}");
    // The program itself checks the type: n is a u32.
    let negative = cli(&dir, &["rerun", &id, "--set", "n=-1"]);
    assert_eq!(negative.code, 1, "{negative:#?}");
    assert!(negative.stderr.contains("parameter `n`"), "{negative:#?}");
    assert!(negative.stderr.contains("did not start"), "{negative:#?}");
    assert_eq!(
        store.runs(&Default::default()).unwrap().len(),
        runs_before,
        "nothing was recorded"
    );
}

/// `pipeline rerun RUN --refresh [COMPONENT]...`: cached steps run again and overwrite their
/// entries, all of them or those of the components named.
#[test]
fn rerun_with_refresh_runs_cached_steps_again() {
    let dir = state("rerun-refresh");
    let first = record(&dir, Mode::Debug, || cached_chain::run(3).unwrap());
    assert_eq!(first.output.unwrap(), 12.0);
    let id = first.run.id().to_string();
    let store = RunStore::open(&dir.join("runs.db")).unwrap();
    let statuses = |args: &[&str]| {
        let out = cli(&dir, &[&["rerun", &id, "--mode", "debug"], args].concat()).ok();
        let new_id = out.split_whitespace().nth(1).unwrap().to_string();
        let nodes = store.nodes(&new_id).unwrap();
        let status = |name: &str| nodes.iter().find(|n| n.node.name == name).unwrap().node.status;
        (status("scale_cached"), status("cached_sum"))
    };
    use NodeStatus::{Cached, Completed};
    assert_eq!(statuses(&[]), (Cached, Cached));
    assert_eq!(statuses(&["--refresh"]), (Completed, Completed));
    assert_eq!(statuses(&["--refresh", "cached_sum"]), (Cached, Completed));
    assert_eq!(statuses(&["--refresh", "elsewhere"]), (Cached, Cached));
}

// ---------------------------------------------------------------- spin

/// `pipeline spin RUN STEP`: one step of a recorded run again, alone, on its recorded inputs:
/// its log and outputs are printed, and the recorded run is left as it was.
#[test]
fn spin_runs_one_step_again_on_its_recorded_inputs() {
    let dir = state("spin");
    let (json_run, failed, debug) = record(&dir, Mode::Local, || {
        let json_run = json_summary::run(4).unwrap().run;
        let failed = fragile::run(1.0).unwrap().run;
        let debug = with_mode(Mode::Debug, || talk::run(1).unwrap().run);
        (json_run, failed, debug)
    });
    let store = RunStore::open(&dir.join("runs.db")).unwrap();
    let before = (
        store.runs(&Default::default()).unwrap(),
        store.nodes(failed.id()).unwrap(),
    );

    // A JSON-codec step: its outputs are shown as values.
    let out = cli(&dir, &["spin", json_run.id(), "summarize"]).ok();
    assert!(out.contains("\"mean\": 2.5"), "{out}");
    assert!(out.contains("summary = {") && out.contains("count = 4"), "{out}");
    let value = cli_json(&dir, &["spin", json_run.id(), "numbers"]);
    assert_eq!(value["outputs"][0]["value"], json!([1.0, 2.0, 3.0, 4.0]));
    // The step's code changed since the run (its recorded code hash differs): the new code
    // runs, and the log says so.
    let manifest = dir
        .join("runs")
        .join(json_run.id())
        .join("numbers")
        .join("manifest-1.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let hash = serde_json::from_str::<Value>(&text).unwrap()["code_hash"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(&manifest, text.replace(&hash, "0000000000000000")).unwrap();
    let changed = cli_json(&dir, &["spin", json_run.id(), "numbers"]);
    assert_eq!(changed["outputs"][0]["value"], json!([1.0, 2.0, 3.0, 4.0]));
    assert!(
        changed["log"].as_str().unwrap().contains("changed since the run"),
        "{changed}"
    );

    // The failed step fails again, with its error; --out keeps what it wrote.
    let kept = dir.join("spun");
    let again = cli(&dir, &["spin", failed.id(), "at_most", "--out", kept.to_str().unwrap()]);
    assert_eq!(again.code, 1, "{again:#?}");
    assert!(again.stderr.contains("failed again"), "{again:#?}");
    assert!(kept.join("step.log").exists() && kept.join("result.json").exists());

    // A debug run keeps no inputs.
    let none = cli(&dir, &["spin", debug.id(), "chatty"]).fails(1);
    assert!(none.contains("debug mode"), "{none}");

    // Nothing of the recorded runs changed.
    let after = (
        store.runs(&Default::default()).unwrap(),
        store.nodes(failed.id()).unwrap(),
    );
    assert_eq!(before.0.len(), after.0.len());
    assert_eq!(before.1, after.1);
}
