//! Names as ClearML users write them: pipeline, project and step names with spaces and any
//! printable character, in debug and local mode and from a controller spec; files and folders
//! use a slug of the name, so no name reaches outside its run's folder.

use pipeline_runtime::prelude::*;
use pipeline_runtime::{Config, Mode, PipelineController, step, with_options};
use serde_json::json;
use std::path::{Path, PathBuf};

#[component(name = "load data")]
fn load(n: u64) -> Vec<u64> {
    (1..=n).collect()
}

/// Uploads an artifact whose name tries to climb out of the step's folder.
#[component(name = "train (fold 1) — ü")]
fn train(rows: Vec<u64>) -> u64 {
    step::upload_artifact("../../escaped", &rows, None).unwrap();
    rows.iter().sum()
}

#[pipeline(name = "custom pipeline logic", project = "team a/experiments")]
fn custom() -> (u64, u64, u64) {
    let rows = load(4);
    let plain = train(&rows);
    let dots = with_options::<train>().name("..").call((&rows,));
    let slash = with_options::<train>().name("a/b").call((&rows,));
    (plain.get().unwrap(), dots.get().unwrap(), slash.get().unwrap())
}

fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("names").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Every file under `dir`, relative to it.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn run_custom(mode: Mode, name: &str) {
    let state = folder(name);
    let finished = Config::current()
        .with_mode(mode)
        .with_state_dir(&state)
        .scope(|| custom::run().unwrap());
    assert_eq!(finished.output, (10, 10, 10));
    let run = &finished.run;
    assert!(run.is_successful(), "{}", run.dag().to_text());
    assert_eq!(run.name(), "custom pipeline logic");
    // Its id is made to be typed: no spaces.
    assert!(run.id().starts_with("custom_pipeline_logic-"), "{}", run.id());
    assert!(!run.id().contains(' '), "{}", run.id());
    assert_eq!(run.project(), "team a/experiments");
    let mut names: Vec<&str> = run.dag().nodes().map(|n| n.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["..", "a/b", "load data", "train (fold 1) — ü"]);
    // Found again by its name, as `pipeline runs --name` does.
    let filter = pipeline_runtime::store::RunFilter {
        name: Some("custom pipeline logic".into()),
        project: Some("team a/experiments".into()),
        ..Default::default()
    };
    let store = pipeline_runtime::store::RunStore::open_read_only(&state.join("runs.db")).unwrap();
    let found = store.runs(&filter).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, run.id());
    // Nothing was written beside the run's folder, and each step has a folder of its own.
    let runs = state.join("runs");
    let entries: Vec<_> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, [std::ffi::OsString::from(run.id())], "{:?}", files(&runs));
    let artifacts: Vec<String> = store
        .artifacts(run.id())
        .unwrap()
        .into_iter()
        .filter(|a| a.name == "../../escaped")
        .map(|a| a.uri)
        .collect();
    assert_eq!(artifacts.len(), 3);
    let run_dir = runs.join(run.id());
    for uri in &artifacts {
        let path = std::path::absolute(uri).unwrap();
        assert!(path.starts_with(std::path::absolute(&run_dir).unwrap()), "{uri}");
        assert!(!uri.contains(".."), "{uri}");
        assert!(path.exists(), "{uri}");
    }
    let distinct: std::collections::BTreeSet<_> = artifacts.iter().collect();
    assert_eq!(distinct.len(), 3, "each step keeps its own artifact: {artifacts:?}");
}

#[test]
fn names_with_spaces_and_symbols_run_in_debug_mode() {
    run_custom(Mode::Debug, "debug");
}

#[test]
fn names_with_spaces_and_symbols_run_in_local_mode() {
    run_custom(Mode::Local, "local");
}

#[test]
fn a_controller_step_may_hold_spaces_and_dots() {
    let mut pipe = PipelineController::new("custom controller logic", "team a");
    pipe.add_function_step("load data.v2", "load data", json!({ "n": 3 }));
    pipe.add_function_step(
        "train it",
        "train (fold 1) — ü",
        json!({ "rows": "${load data.v2.return_object}" }),
    );
    let finished = Config::current()
        .with_mode(Mode::Debug)
        .with_state_dir(folder("controller"))
        .scope(|| pipe.run())
        .unwrap();
    assert_eq!(finished.output["train it.return_object"], json!(6));
    assert_eq!(finished.run.name(), "custom controller logic");
}

#[test]
fn a_name_that_cannot_be_one_is_reported_with_the_rule() {
    let mut pipe = PipelineController::new(" padded", "");
    pipe.add_function_step("line\nbreak", "load data", json!({ "n": 3 }));
    let err = Config::current()
        .with_mode(Mode::Debug)
        .with_state_dir(folder("bad"))
        .scope(|| pipe.run())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the pipeline name ` padded`: a name cannot start or end with whitespace"),
        "{err}"
    );
    assert!(err.contains("the project name ``: a name cannot be empty"), "{err}");
    assert!(err.contains("a name cannot hold control characters"), "{err}");
}
