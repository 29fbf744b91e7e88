//! Configuration is a value: two pipelines run at once on two threads, each with its own state
//! folder (and so its own run store), without touching the process's defaults.

use pipeline_runtime::prelude::*;
use pipeline_runtime::store::{RunFilter, RunStore};
use pipeline_runtime::{Config, Mode};
use std::path::PathBuf;
use std::sync::Barrier;

/// Both runs reach their step before either leaves it: they are active at the same time.
static BOTH: Barrier = Barrier::new(2);

#[component]
fn meet(x: u32) -> u32 {
    BOTH.wait();
    x + 1
}

#[pipeline(name = "scoped", project = "tests")]
fn scoped(x: u32) -> u32 {
    // A pipeline started from the body inherits the run's configuration.
    let inner = nested::run(x).unwrap();
    assert_eq!(inner.run.status(), RunStatus::Completed);
    meet(x).get().unwrap()
}

#[component]
fn echo(x: u32) -> u32 {
    x
}

#[pipeline(name = "nested", project = "tests")]
fn nested(x: u32) -> u32 {
    echo(x).get().unwrap()
}

fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pipeline-scopes-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn two_pipelines_with_two_state_folders_on_two_threads_at_once() {
    let folders = [folder("a"), folder("b")];
    let runs: Vec<_> = folders
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let config = Config::current().with_mode(Mode::Debug).with_state_dir(dir.clone());
            std::thread::spawn(move || config.scope(|| scoped::run(i as u32 * 10)).unwrap())
        })
        .collect();
    let finished: Vec<_> = runs.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(finished.iter().map(|f| f.output).collect::<Vec<_>>(), [1, 11]);
    for (dir, run) in folders.iter().zip(&finished) {
        let store = RunStore::open(&dir.join("runs.db")).unwrap();
        let mut names: Vec<String> = store
            .runs(&RunFilter::default())
            .unwrap()
            .into_iter()
            .map(|r| format!("{}:{}", r.name, r.mode))
            .collect();
        names.sort();
        // Its own run and the one its body started; not the other thread's.
        assert_eq!(names, ["nested:debug", "scoped:debug"], "{}", dir.display());
        assert!(store.run(run.run.id()).unwrap().is_some());
    }
    // The process default was never moved.
    assert!(!folders.contains(&Config::current().state_dir));
    for dir in folders {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[component]
fn state_folder_seen(x: u32) -> String {
    format!("{x} {}", pipeline_runtime::state_dir().display())
}

#[pipeline(name = "scope_in_body", project = "tests")]
fn scope_in_body(other: String) -> (String, String) {
    let before = state_folder_seen(1).get().unwrap();
    // A scope the body enters is the body's, not its steps': a step run by this thread while
    // it reads a value still sees the run's configuration, as on the run's step thread.
    let inside = Config::current()
        .with_state_dir(other)
        .scope(|| state_folder_seen(2).get().unwrap());
    (before, inside)
}

#[test]
fn a_step_sees_its_runs_configuration_whichever_thread_runs_it() {
    let (run_dir, other) = (folder("run"), folder("other"));
    let config = Config::current().with_mode(Mode::Debug).with_state_dir(run_dir.clone());
    let finished = config
        .scope(|| scope_in_body::run(other.display().to_string()))
        .unwrap();
    let (before, inside) = finished.output;
    assert_eq!(before, format!("1 {}", run_dir.display()));
    assert_eq!(inside, format!("2 {}", run_dir.display()));
}
