//! Helpers shared by test binaries (each includes this with `mod common;`).

use std::path::Path;
use std::time::{Duration, Instant};

/// Starts the `resume_probe` controller (with `args` after its state and marker folders) with
/// its `hold` marker set, waits (at most `bound`, only so that a broken test cannot hang) until
/// its second step has started, then kills the controller with SIGKILL. The `hold` marker stays.
pub fn kill_resume_probe_in_second_step(state: &Path, markers: &Path, args: &[&str], bound: Duration) {
    std::fs::write(markers.join("hold"), b"").unwrap();
    let mut controller = std::process::Command::new(env!("CARGO_BIN_EXE_resume_probe"))
        .arg(state)
        .arg(markers)
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !markers.join("second-started").exists() {
        assert!(start.elapsed() < bound, "the second step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    controller.kill().unwrap();
    controller.wait().unwrap();
}
