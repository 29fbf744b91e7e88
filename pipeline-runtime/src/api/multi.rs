//! `multi_instance_support = "parallel"`: a pipeline started with `spawn` runs on a thread of
//! its own, and `wait_for_multi_pipelines` waits for every such run (ClearML's
//! `PipelineDecorator.wait_for_multi_pipelines`).

use super::PipelineRun;
use super::pipeline::Finished;
use crate::config::Config;
use crate::error::PipelineError;
use std::sync::{Condvar, Mutex};
use std::thread::JoinHandle;

struct Pending {
    running: usize,
    finished: Vec<PipelineRun>,
}

static PENDING: Mutex<Pending> = Mutex::new(Pending {
    running: 0,
    finished: Vec::new(),
});
static CHANGED: Condvar = Condvar::new();

fn lock() -> std::sync::MutexGuard<'static, Pending> {
    crate::sync::lock(&PENDING)
}

/// A pipeline run started with `spawn`; `join` gives its value and record.
pub struct Spawned<R> {
    handle: JoinHandle<Result<Finished<R>, PipelineError>>,
}

impl<R> Spawned<R> {
    /// Waits for the run. A panic in the pipeline body is re-raised here.
    pub fn join(self) -> Result<Finished<R>, PipelineError> {
        self.handle
            .join()
            .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
    }
}

/// Starts `run` on a new thread, with the caller's configuration (mode, state folder...); see
/// [`wait_for_multi_pipelines`](crate::wait_for_multi_pipelines).
pub fn spawn_pipeline<R: Send + 'static>(
    run: impl FnOnce() -> Result<Finished<R>, PipelineError> + Send + 'static,
) -> Spawned<R> {
    let config = Config::current();
    lock().running += 1;
    let handle = std::thread::spawn(move || {
        struct Done(Option<PipelineRun>);
        impl Drop for Done {
            fn drop(&mut self) {
                let mut pending = lock();
                pending.running -= 1;
                pending.finished.extend(self.0.take());
                CHANGED.notify_all();
            }
        }
        let mut done = Done(None);
        let outcome = config.scope(run);
        if let Ok(finished) = &outcome {
            done.0 = Some(finished.run.clone());
        }
        outcome
    });
    Spawned { handle }
}

/// Waits until every pipeline started with `spawn` has ended; returns the records of those
/// that ended since the last call (runs that could not start are not among them).
pub fn wait_for_multi_pipelines() -> Vec<PipelineRun> {
    let mut pending = lock();
    while pending.running > 0 {
        pending = CHANGED.wait(pending).unwrap_or_else(|p| p.into_inner());
    }
    std::mem::take(&mut pending.finished)
}
