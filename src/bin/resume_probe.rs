//! A test fixture: a controller of three local steps in a chain, each noting its execution in a
//! file, for the fault tests of `resume`. `second` waits while a `hold` file exists (so the
//! test can kill the controller mid-run); `third` fails while a `fail` file exists.
//!
//! Usage: `resume_probe <state folder> <marker folder> [remote [auto|runner|jobs]]` (local mode
//! unless `remote`: the steps then run on the cluster `PIPELINE_RAY_ADDRESS` names, through
//! the backend named).

use pipeline_runtime::prelude::*;
use std::path::Path;

fn note(dir: &str, step: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(Path::new(dir).join("executions"))
        .expect("the executions file opens");
    writeln!(file, "{step}").expect("the executions file is written");
}

#[component]
fn first(dir: String) -> u64 {
    note(&dir, "first");
    1
}

#[component]
fn second(x: u64, dir: String) -> u64 {
    note(&dir, "second");
    let hold = Path::new(&dir).join("hold");
    if hold.exists() {
        std::fs::write(Path::new(&dir).join("second-started"), b"").expect("the marker is written");
        let start = std::time::Instant::now();
        while hold.exists() && start.elapsed() < std::time::Duration::from_secs(120) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    x + 1
}

#[component]
fn third(x: u64, dir: String) -> anyhow::Result<u64> {
    note(&dir, "third");
    anyhow::ensure!(!Path::new(&dir).join("fail").exists(), "told to fail");
    Ok(x + 1)
}

#[pipeline(name = "resume_probe", project = "tests")]
fn probe(dir: String) -> Result<u64, HandleError> {
    let a = first(dir.clone());
    let b = second(a, dir.clone());
    third(b, dir).get()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (state, dir) = (args.next().expect("state folder"), args.next().expect("marker folder"));
    pipeline_runtime::set_state_dir(Some(state.into()));
    if args.next().as_deref() != Some("remote") {
        run_locally();
    }
    if let Some(backend) = args.next() {
        pipeline_runtime::set_ray_backend(backend.parse().expect("a backend: auto, runner or jobs"));
    }
    match probe(dir) {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
