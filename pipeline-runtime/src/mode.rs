//! The process-wide choice of where steps run, as ClearML's `PipelineDecorator` makes it.

use std::sync::atomic::{AtomicU8, Ordering};

/// Where the steps of the pipelines started after the choice run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In-process calls, one at a time ([`debug_pipeline`]).
    Debug,
    /// Jobs on a cluster: the default when no other mode is chosen.
    Remote,
}

static MODE: AtomicU8 = AtomicU8::new(0);

/// Runs every step of the pipelines started from now on as an in-process function call,
/// serially, with values moved from step to step rather than serialized. Breakpoints, `dbg!`
/// and backtraces work as in plain Rust; a panicking step becomes a failed step.
pub fn debug_pipeline() {
    MODE.store(1, Ordering::Relaxed);
}

/// The mode pipelines started now run in.
pub fn mode() -> Mode {
    match MODE.load(Ordering::Relaxed) {
        1 => Mode::Debug,
        _ => Mode::Remote,
    }
}
