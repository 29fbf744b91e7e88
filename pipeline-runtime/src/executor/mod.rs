//! Executors run the nodes the controller has queued. They share the controller's rules;
//! they differ only in where a step's code runs.

mod debug;
mod local;
pub mod ray;
mod remote;
mod worker_job;

pub(crate) use debug::DebugExecutor;
pub(crate) use local::LocalBackend;
pub(crate) use remote::RayBackend;
pub(crate) use worker_job::{WorkerExecutor, runtime};

use crate::engine::Run;
use std::sync::Arc;

/// Where queued nodes go.
pub(crate) trait Executor: Send + Sync {
    /// Runs node `index` of `run` (now or later), reporting back through the run.
    fn submit(&self, run: Arc<Run>, index: u32);
    /// Stops node `index` if it is running; it then ends as aborted with `reason`.
    fn cancel(&self, index: u32, reason: &str);
    /// Stops taking work and waits for the executor's own threads; called when the run is idle.
    fn shutdown(&self);
}
