//! The choice of where steps run, made process-wide as ClearML's `PipelineDecorator` makes it,
//! with a per-thread override for code that runs one pipeline in several modes.

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};

/// Where the steps of the pipelines started after the choice run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

static MODE: AtomicU8 = AtomicU8::new(0);

thread_local! {
    static OVERRIDE: Cell<Option<Mode>> = const { Cell::new(None) };
}

fn code(mode: Mode) -> u8 {
    match mode {
        Mode::Remote => 0,
        Mode::Debug => 1,
        Mode::Local => 2,
    }
}

/// Runs every step of the pipelines started from now on as an in-process function call,
/// serially, with values moved from step to step rather than serialized. Breakpoints, `dbg!`
/// and backtraces work as in plain Rust; a panicking step becomes a failed step.
pub fn debug_pipeline() {
    MODE.store(code(Mode::Debug), Ordering::Relaxed);
}

/// Runs every step of the pipelines started from now on as a subprocess of this same
/// executable, in parallel as far as the DAG and `max_parallel` (default: the number of cores)
/// allow. Arguments and results travel as artifacts under the state folder.
pub fn run_locally() {
    MODE.store(code(Mode::Local), Ordering::Relaxed);
}

/// ClearML's `start_locally`: the controller runs here (it always does), and the steps of the
/// pipelines started from now on run as subprocesses when `run_pipeline_steps_locally`, else
/// as jobs on the Ray cluster (remote mode, the default).
pub fn start_locally(run_pipeline_steps_locally: bool) {
    let mode = if run_pipeline_steps_locally {
        Mode::Local
    } else {
        Mode::Remote
    };
    MODE.store(code(mode), Ordering::Relaxed);
}

/// The mode pipelines started now, on this thread, run in.
pub fn mode() -> Mode {
    if let Some(mode) = OVERRIDE.with(Cell::get) {
        return mode;
    }
    match MODE.load(Ordering::Relaxed) {
        1 => Mode::Debug,
        2 => Mode::Local,
        _ => Mode::Remote,
    }
}

/// Runs `f` with pipelines started on this thread in `mode`, whatever the process-wide choice.
pub fn with_mode<R>(mode: Mode, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Mode>);
    impl Drop for Restore {
        fn drop(&mut self) {
            OVERRIDE.with(|o| o.set(self.0));
        }
    }
    let _restore = Restore(OVERRIDE.with(|o| o.replace(Some(mode))));
    f()
}

static DEFAULT_QUEUE: std::sync::RwLock<Option<&'static str>> = std::sync::RwLock::new(None);

/// The queue of remote steps that name none and whose pipeline has no `default_queue`
/// (ClearML's `set_default_execution_queue`); `default` when never set.
pub fn set_default_execution_queue(queue: &str) {
    // Queue names are few and live as long as the process: leaking one is the simple way to
    // keep the `&'static str` the options use.
    let queue: &'static str = Box::leak(queue.to_string().into_boxed_str());
    *DEFAULT_QUEUE.write().unwrap_or_else(|p| p.into_inner()) = Some(queue);
}

/// The queue set by [`set_default_execution_queue`], else `default`.
#[cfg_attr(not(feature = "ray"), allow(dead_code))] // only remote steps have queues
pub(crate) fn default_execution_queue() -> &'static str {
    DEFAULT_QUEUE
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .unwrap_or("default")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_locally_chooses_between_local_and_remote_steps() {
        start_locally(true);
        assert_eq!(mode(), Mode::Local);
        start_locally(false);
        assert_eq!(mode(), Mode::Remote);
        with_mode(Mode::Debug, || assert_eq!(mode(), Mode::Debug));
        assert_eq!(mode(), Mode::Remote);
    }

    #[test]
    fn the_default_execution_queue_can_be_set() {
        assert_eq!(default_execution_queue(), "default");
        set_default_execution_queue("gpu");
        assert_eq!(default_execution_queue(), "gpu");
    }
}
