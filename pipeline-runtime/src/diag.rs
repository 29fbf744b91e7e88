//! Diagnostics: `tracing` events (target `pipeline`), which a program that installs a
//! subscriber receives with the run's and the step's spans. Without a subscriber, a warning is
//! printed to stderr as `pipeline: ...`, so a user who set nothing up still sees it.

use std::fmt::Arguments;

/// Something went wrong that does not stop the run (a record not written, a config ignored).
pub(crate) fn warn(message: Arguments<'_>) {
    tracing::warn!(target: "pipeline", "{message}");
    if !tracing::dispatcher::has_been_set() {
        eprintln!("pipeline: {message}");
    }
}

/// Something a user should know about how a run goes (which way remote steps reach the
/// cluster); printed like [`warn`] when no subscriber is set.
#[cfg(feature = "ray")]
pub(crate) fn note(message: Arguments<'_>) {
    tracing::info!(target: "pipeline", "{message}");
    if !tracing::dispatcher::has_been_set() {
        eprintln!("pipeline: {message}");
    }
}
