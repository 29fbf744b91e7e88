//! A test fixture for output and disk faults, run by `tests/faults.rs`.
//!
//! - `fill_probe <state> line <MiB>`: a local step prints one line of that many MiB (written a
//!   MiB at a time, so the worker stays small); prints the outcome and this controller's peak
//!   memory (`peak_kib=`, from /proc/self/status).
//! - `fill_probe <state> fill`: a local step fills the state folder's disk (a file `ballast`
//!   beside the store, unless `ballast.done` exists) and returns a value; prints the outcome.
//! - `fill_probe <state> resume`: resumes the newest run in the store; prints the outcome.
//! - `fill_probe <state> status`: prints `status=<run status>` of the newest run in the store.

use pipeline_runtime::prelude::*;
use std::io::Write;
use std::path::Path;

#[component]
fn long_line(mebibytes: usize) -> u32 {
    let mut out = std::io::stdout().lock();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..mebibytes {
        out.write_all(&chunk).unwrap();
    }
    out.write_all(b"\nend\n").unwrap();
    out.flush().unwrap();
    7
}

#[pipeline(name = "long_line_probe", project = "tests")]
fn line_probe(mebibytes: usize) -> Result<u32, HandleError> {
    long_line(mebibytes).get()
}

#[component]
fn fill_the_disk(state: String) -> anyhow::Result<Vec<u64>> {
    let dir = Path::new(&state);
    if !dir.join("ballast.done").exists() {
        let mut ballast = std::fs::File::create(dir.join("ballast"))?;
        let chunk = vec![0u8; 64 << 10];
        // Until the disk is full; the file stays, as another program's would.
        while ballast.write_all(&chunk).is_ok() {}
        let _ = ballast.sync_all();
    }
    Ok((0..4096).collect())
}

#[pipeline(name = "fill_probe", project = "tests")]
fn fill_probe(state: String) -> Result<usize, HandleError> {
    fill_the_disk(state).get().map(|v| v.len())
}

fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn newest_run() -> PipelineRun {
    PipelineRun::find(&pipeline_runtime::store::RunFilter::default())
        .expect("the store reads")
        .expect("a run in the store")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (state, what) = (args.next().expect("state folder"), args.next().expect("what to do"));
    pipeline_runtime::set_state_dir(Some(state.clone().into()));
    // A failing store is given up on after 2 s (the floor) rather than a minute.
    pipeline_runtime::set_busy_timeout(std::time::Duration::from_millis(200));
    run_locally();
    match what.as_str() {
        "line" => {
            let mebibytes = args.next().and_then(|n| n.parse().ok()).expect("MiB");
            match line_probe::run(mebibytes) {
                Ok(f) => println!("outcome={:?}", f.output),
                Err(e) => println!("error={e}"),
            }
            println!("peak_kib={}", peak_kib());
        }
        "fill" => match fill_probe::run(state) {
            Ok(f) => println!("outcome={:?}", f.output),
            Err(e) => println!("error={e}"),
        },
        "resume" => match fill_probe::resume(newest_run().id()) {
            Ok(f) => println!("outcome={:?}", f.output),
            Err(e) => println!("error={e}"),
        },
        "status" => println!("status={}", newest_run().status().as_str()),
        other => panic!("unknown `{other}`"),
    }
}
