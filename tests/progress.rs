//! Progress in the terminal: with stderr not a terminal (as here), plain lines: a failed step
//! when it fails, a summary once the run has lasted 2 s, and an end line; nothing for a short
//! run that went well; nothing with `PIPELINE_PROGRESS=off`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("progress").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs the probe; gives its stderr lines that are progress lines.
fn probe(name: &str, args: &[&str], progress: Option<&str>) -> Vec<String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_progress_probe"));
    command.arg(folder(name)).args(args).env_remove("PIPELINE_PROGRESS");
    if let Some(p) = progress {
        command.env("PIPELINE_PROGRESS", p);
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stderr)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("progress probe: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn plain_lines_show_failures_a_summary_and_the_end() {
    let lines = probe("plain", &[], None);
    assert_eq!(
        lines.first().map(String::as_str),
        Some("progress probe: step `refuse` failed: no 1"),
        "{lines:#?}"
    );
    let summary = lines
        .iter()
        .find(|l| l.contains(" steps done"))
        .unwrap_or_else(|| panic!("no summary line: {lines:#?}"));
    assert!(summary.contains("/3 steps done, 1 running: nap"), "{summary}");
    assert!(summary.ends_with("(1 failed)"), "{summary}");
    let end = lines.last().unwrap();
    assert!(
        end.starts_with("progress probe: failed in ") && end.ends_with(": 3 steps (2 completed, 1 failed)"),
        "{end}"
    );
}

#[test]
fn a_short_run_that_went_well_prints_nothing() {
    assert_eq!(probe("short", &["short"], None), Vec::<String>::new());
}

#[test]
fn progress_can_be_turned_off() {
    assert_eq!(probe("off", &[], Some("off")), Vec::<String>::new());
}
