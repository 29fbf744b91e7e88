//! Executors run one attempt of a node: in this process ([`debug`]) or as a worker process of
//! the pipeline's own binary ([`process`]: a subprocess, or a job on a Ray cluster). They
//! differ only in where a step's code runs; every rule is the engine's.
//!
//! An executor never sees the run. It is handed a [`Lease`] on one node; when it has room for
//! the attempt it asks the lease to [`begin`](Lease::begin), gets an [`AttemptSpec`]
//! (component, node folder, time limit, cancel token) with its [`Work`] (the job itself, or
//! the inputs as artifacts), runs it and gives the lease back its [`Outcome`].

pub(crate) mod debug;
pub(crate) mod process;

use crate::step::StepContext;
use crate::sync::lock;
use crate::transport::artifacts::{ArgArtifacts, ArtifactRef};
use crate::value::Job;
use pipeline_core::{Codec, ComponentDescriptor, StepError};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// What an executor needs of an attempt's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkKind {
    /// The step's job itself, to call in this process.
    InProcess,
    /// The step's arguments written as artifacts, for a worker process.
    Artifacts,
}

/// An attempt's work, as [`WorkKind`] asked.
pub(crate) enum Work {
    /// The job: resolves the arguments, runs the component, stages the outputs in their slots.
    InProcess(Job),
    /// The arguments as artifacts, in order.
    Artifacts(Vec<ArgArtifacts>),
}

/// One attempt of one node, ready to run.
pub(crate) struct AttemptSpec {
    /// The node's name (`mean`, `mean_1`...).
    pub(crate) step: Arc<str>,
    pub(crate) descriptor: &'static ComponentDescriptor,
    /// The pipeline (a worker finds a custom codec by it).
    pub(crate) pipeline: &'static str,
    /// 1 for the first attempt, 2 for the first retry...
    pub(crate) number: u32,
    /// No further attempt can follow: arguments may be moved into this one.
    pub(crate) last: bool,
    /// Unique across runs: run, step, attempt number.
    pub(crate) attempt_id: String,
    /// The attempt was started by an earlier controller of this (resumed) run and is still
    /// live: wait for it, leaving its manifest and result alone.
    pub(crate) reattach: bool,
    /// The node's folder in the run's folder (manifests, results, outputs, logs).
    pub(crate) node_dir: PathBuf,
    /// The attempt's log file (already recorded, so `pipeline logs --follow` finds it).
    pub(crate) log_path: PathBuf,
    /// The codec of the run's artifacts.
    pub(crate) codec: Codec,
    /// Where the node's artifacts go in object storage, when they go there.
    pub(crate) remote_prefix: Option<String>,
    /// The run's state folder, absolute.
    pub(crate) state_dir: PathBuf,
    /// Where the step's reports go, when the run is recorded.
    pub(crate) context: Option<StepContext>,
    /// The component's time limit.
    pub(crate) limit: Option<Duration>,
    /// Set when the engine stops the attempt (a user stop, the pipeline's time limit); only
    /// an attempt in a worker process can be stopped, so only it has one.
    pub(crate) cancel: Option<Arc<Cancel>>,
    /// The attempt's `tracing` span (inside the run's), entered wherever its work runs.
    pub(crate) span: tracing::Span,
}

/// How an attempt ended.
pub(crate) struct Outcome {
    /// The spec's work, handed back (a retry runs the same job).
    pub(crate) work: Work,
    /// A worker's output artifacts, one per output (empty in process: the job staged them).
    pub(crate) result: Result<Vec<ArtifactRef>, StepError>,
}

/// An executor's hold on one node of a run.
pub(crate) trait Lease: Send + 'static {
    /// Starts the attempt; may block (the cache, the run's callbacks). `None` when there is
    /// nothing to run: the cache served the node, it was stopped, or its inputs could not be
    /// written (the lease has then ended the attempt itself).
    fn begin(&mut self, kind: WorkKind) -> Option<(AttemptSpec, Work)>;
    /// Reports how the attempt ended; may block.
    fn end(self: Box<Self>, outcome: Outcome);
}

/// Where a run's nodes go.
pub(crate) trait Executor: Send + Sync {
    /// Runs the node of `lease` (now or later).
    fn submit(&self, lease: Box<dyn Lease>);
    /// Whether the attempt `attempt_id` of an earlier controller of this run is still running
    /// (or has succeeded) where this executor runs workers, so that a resumed run can wait for
    /// it instead of starting it again. Local workers die with their controller: never.
    fn attachable(&self, _attempt_id: &str) -> bool {
        false
    }
    /// Stops taking work and waits for the executor's own threads; called when the run is idle.
    fn shutdown(&self);
    /// For an executor that runs steps only while something waits for them (debug mode):
    /// how readers of the run's values say that they wait.
    fn demand(&self) -> Option<std::sync::Weak<dyn crate::value::demand::Demand>> {
        None
    }
}

/// A request to stop a running attempt.
#[derive(Default)]
pub(crate) struct Cancel {
    notify: Notify,
    reason: Mutex<Option<String>>,
    /// Called once with the reason, for attempts that are not awaited (a nested run).
    hook: Mutex<Option<StopHook>>,
}

/// What a stop request calls, with its reason.
type StopHook = Box<dyn FnOnce(&str) + Send>;

impl Cancel {
    /// Asks the attempt to stop, for `reason`; an attempt not yet waiting sees it when it does.
    pub(crate) fn request(&self, reason: &str) {
        *lock(&self.reason) = Some(reason.to_string());
        self.notify.notify_one();
        // The reason is set first: `on_request` either stored its hook before (taken here) or
        // sees the reason and calls it itself; so the hook runs once.
        if let Some(hook) = lock(&self.hook).take() {
            hook(reason);
        }
    }

    /// Calls `hook` with the reason when a stop is requested (now, if one was already).
    pub(crate) fn on_request(&self, hook: impl FnOnce(&str) + Send + 'static) {
        let mut slot = lock(&self.hook);
        let requested = lock(&self.reason).clone();
        match requested {
            Some(reason) => {
                drop(slot);
                hook(&reason);
            }
            None => *slot = Some(Box::new(hook)),
        }
    }

    /// Resolves once a stop is requested; gives the reason.
    pub(crate) async fn requested(&self) -> String {
        self.notify.notified().await;
        lock(&self.reason).clone().unwrap_or_else(|| "stopped".into())
    }
}

#[cfg(test)]
mod tests {
    use super::Cancel;
    use std::sync::{Arc, Mutex};

    fn recorder() -> (Arc<Mutex<Vec<String>>>, impl FnOnce(&str) + Send + 'static) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        (seen, move |reason: &str| sink.lock().unwrap().push(reason.to_string()))
    }

    #[test]
    fn a_stop_hook_runs_once_whichever_comes_first() {
        let (seen, hook) = recorder();
        let cancel = Cancel::default();
        cancel.on_request(hook);
        assert!(seen.lock().unwrap().is_empty());
        cancel.request("first");
        cancel.request("second");
        assert_eq!(*seen.lock().unwrap(), ["first"]);

        let (seen, hook) = recorder();
        let cancel = Cancel::default();
        cancel.request("early");
        cancel.on_request(hook);
        assert_eq!(*seen.lock().unwrap(), ["early"]);
    }

    #[test]
    fn a_stop_racing_its_hook_calls_it_once() {
        for _ in 0..200 {
            let (seen, hook) = recorder();
            let cancel = Arc::new(Cancel::default());
            let stopper = {
                let cancel = cancel.clone();
                std::thread::spawn(move || cancel.request("race"))
            };
            cancel.on_request(hook);
            stopper.join().unwrap();
            assert_eq!(*seen.lock().unwrap(), ["race"]);
        }
    }
}
