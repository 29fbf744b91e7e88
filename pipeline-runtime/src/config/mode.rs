//! The choice of where steps run, made process-wide as ClearML's `PipelineDecorator` makes it
//! (each function here is a thin setter of the process's default [`Config`](super::Config)),
//! with a per-thread override for code that runs one pipeline in several modes.

use super::{Config, Layer, set_process};

/// Where the steps of the pipelines started after the choice run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// In-process calls, one at a time ([`debug_pipeline`]).
    Debug,
    /// Subprocesses of this executable, in parallel ([`run_locally`]).
    Local,
    /// Jobs on a cluster: the default when no other mode is chosen.
    Remote,
}

impl Mode {
    /// Lower-case name, as recorded.
    pub fn name(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Local => "local",
            Self::Remote => "remote",
        }
    }
}

fn set_mode(mode: Mode) {
    set_process(|l| l.mode = Some(mode));
}

/// Runs every step of the pipelines started from now on as an in-process function call,
/// serially, with values moved from step to step rather than serialized. Breakpoints, `dbg!`
/// and backtraces work as in plain Rust; a panicking step becomes a failed step. As in
/// ClearML's debug mode, a step runs when something waits for it: a read of one of the run's
/// values (`.get()`, `.await`, `is_ready()`) or the run's end. A blocking `.get()` (and the
/// run's end) runs the steps on the reading thread, so a breakpoint in a step shows the body's
/// call stack below it; `.await` and `is_ready()` leave them to the run's step thread.
pub fn debug_pipeline() {
    set_mode(Mode::Debug);
}

/// Runs every step of the pipelines started from now on as a subprocess of this same
/// executable, in parallel as far as the DAG and `max_parallel` (default: the number of cores)
/// allow. Arguments and results travel as artifacts under the state folder.
pub fn run_locally() {
    set_mode(Mode::Local);
}

/// ClearML's `start_locally`: the controller runs here (it always does), and the steps of the
/// pipelines started from now on run as subprocesses when `run_pipeline_steps_locally`, else
/// as jobs on the Ray cluster (remote mode, the default).
pub fn start_locally(run_pipeline_steps_locally: bool) {
    set_mode(if run_pipeline_steps_locally {
        Mode::Local
    } else {
        Mode::Remote
    });
}

/// The mode pipelines started now, on this thread, run in.
pub fn mode() -> Mode {
    Config::current().mode
}

/// Runs `f` with pipelines started on this thread in `mode`, whatever the process-wide choice.
pub fn with_mode<R>(mode: Mode, f: impl FnOnce() -> R) -> R {
    super::in_scope(
        Layer {
            mode: Some(mode),
            ..Layer::default()
        },
        f,
    )
}

/// The queue of remote steps that name none and whose pipeline has no `default_queue`
/// (ClearML's `set_default_execution_queue`); `default` when never set.
pub fn set_default_execution_queue(queue: &str) {
    let queue = queue.to_string();
    set_process(|l| l.default_queue = Some(queue));
}
