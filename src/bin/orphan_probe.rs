//! A test fixture: a controller that runs one local step which starts a child program and
//! then waits for it. The step writes `<worker pid> <child pid>` to the file it is given, so that the
//! test can kill this controller and check that neither process outlives it.
//!
//! Usage: `orphan_probe <state folder> <pid file>`.

use pipeline_runtime::prelude::*;

#[component]
fn start_child_and_wait(pid_file: String) -> u32 {
    let mut child = std::process::Command::new("sleep")
        .arg("120")
        .spawn()
        .expect("`sleep` starts");
    let pids = format!("{} {}", std::process::id(), child.id());
    let tmp = format!("{pid_file}.tmp");
    std::fs::write(&tmp, pids).expect("pid file written");
    std::fs::rename(&tmp, &pid_file).expect("pid file in place");
    // Waits for the child: the step outlasts any test.
    child.wait().map_or(1, |_| 0)
}

#[pipeline(name = "orphan_probe", project = "tests")]
fn probe(pid_file: String) -> u32 {
    start_child_and_wait(pid_file).get().unwrap_or(1)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (state, pid_file) = (args.next().expect("state folder"), args.next().expect("pid file"));
    pipeline_runtime::set_state_dir(Some(state.into()));
    run_locally();
    println!("{}", probe(pid_file));
}
