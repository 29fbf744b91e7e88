//! A test fixture for progress displays: a pipeline whose first step fails at once and whose
//! two chained steps then take about 3 s, so plain progress shows a failure line, a summary
//! and an end line. Its stderr is what the test reads; its last stdout line is the run's id.
//!
//! Usage: `progress_probe <state folder> [short]` (debug mode; `short`: steps of 50 ms, a run
//! short enough to print nothing but failures).

use pipeline_runtime::prelude::*;

#[component]
fn nap(millis: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(millis));
    millis
}

#[component]
fn refuse(x: u64) -> anyhow::Result<u64> {
    anyhow::bail!("no {x}")
}

#[pipeline(name = "progress probe", project = "fixtures")]
fn probe(millis: u64, fail: bool) -> u64 {
    if fail {
        let _ = refuse(1);
    }
    let first = nap(millis);
    let second = nap(&first);
    second.get().unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let state = args.next().expect("usage: progress_probe <state folder> [short]");
    let short = args.next().as_deref() == Some("short");
    pipeline_runtime::set_state_dir(Some(state.into()));
    pipeline_runtime::debug_pipeline();
    let finished = if short {
        probe::run(50, false)
    } else {
        probe::run(1500, true)
    }
    .expect("the run starts");
    println!("{}", finished.run.id());
}
