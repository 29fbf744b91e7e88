//! The engine of a run: the pure [`scheduler`] that holds every rule, the [`run`] that feeds
//! it events and applies its effects in order (callbacks, records, executors, slots), the
//! [`lease`] through which executors run attempts, and what a component call does ([`call`])
//! in the run of its context ([`context`]).

pub(crate) mod call;
pub(crate) mod chunked;
pub(crate) mod context;
pub(crate) mod lease;
pub(crate) mod run;
pub(crate) mod scheduler;

pub(crate) use run::{Run, RunIdentity};

use std::time::SystemTime;

/// A run id unique across processes: the pipeline's name as a slug (an id names a folder and is
/// typed in commands), time, process, counter.
pub(crate) fn run_key(pipeline: &str) -> String {
    let pipeline = pipeline_core::names::slug(pipeline);
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{pipeline}-{}{:03}-{}-{n}",
        now.as_secs(),
        now.subsec_millis(),
        std::process::id()
    )
}
