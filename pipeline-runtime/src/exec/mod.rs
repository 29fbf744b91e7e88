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
use smol_str::SmolStr;
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
    pub(crate) step: SmolStr,
    pub(crate) descriptor: &'static ComponentDescriptor,
    /// The pipeline (a worker finds a custom codec by it).
    pub(crate) pipeline: &'static str,
    /// 1 for the first attempt, 2 for the first retry...
    pub(crate) number: u32,
    /// No further attempt can follow: arguments may be moved into this one.
    pub(crate) last: bool,
    /// The codec of the run's artifacts.
    pub(crate) codec: Codec,
    /// Where the step's reports go, when the run is recorded. Boxed: the spec moves a few
    /// times on its way to the executor, and an unrecorded step has none to copy.
    pub(crate) context: Option<Box<StepContext>>,
    /// The component's time limit.
    pub(crate) limit: Option<Duration>,
    /// Set when the engine stops the attempt (a user stop, the pipeline's time limit); only
    /// an attempt in a worker process can be stopped, so only it has one.
    pub(crate) cancel: Option<Arc<Cancel>>,
    /// The attempt's `tracing` span (inside the run's), entered wherever its work runs.
    pub(crate) span: tracing::Span,
    /// What only a worker process needs; none for an attempt in this process. Boxed: the spec
    /// moves a few times on its way to the executor, and an in-process step should not pay
    /// for copying paths it never has.
    pub(crate) worker: Option<Box<WorkerSpec>>,
}

/// What an attempt in a worker process needs besides [`AttemptSpec`].
pub(crate) struct WorkerSpec {
    /// Unique across runs: run, step, attempt number.
    pub(crate) attempt_id: String,
    /// The attempt was started by an earlier controller of this (resumed) run and is still
    /// live: wait for it, leaving its manifest and result alone.
    pub(crate) reattach: bool,
    /// The node's folder in the run's folder (manifests, results, outputs, logs).
    pub(crate) node_dir: PathBuf,
    /// The attempt's log file (already recorded, so `pipeline logs --follow` finds it).
    pub(crate) log_path: PathBuf,
    /// Where the node's artifacts go in object storage, when they go there.
    pub(crate) remote_prefix: Option<String>,
    /// The run's state folder, absolute.
    pub(crate) state_dir: PathBuf,
}

impl AttemptSpec {
    /// The worker part of an attempt the lease began for a worker process
    /// ([`WorkKind::Artifacts`]), which always has one.
    pub(crate) fn worker(&self) -> &WorkerSpec {
        self.worker
            .as_deref()
            .expect("a lease begun for a worker process gives a worker spec")
    }
}

/// How an attempt ended.
pub(crate) struct Outcome {
    /// The spec's work, handed back (a retry runs the same job).
    pub(crate) work: Work,
    /// A worker's output artifacts, one per output (empty in process: the job staged them).
    pub(crate) result: Result<Vec<ArtifactRef>, StepError>,
}

/// A node as an attempt knows it: its place in its run, its name and its component.
#[derive(Clone)]
pub(crate) struct NodeKey {
    pub(crate) index: u32,
    pub(crate) name: SmolStr,
    pub(crate) descriptor: &'static ComponentDescriptor,
}

/// The engine's side of a [`Lease`]: the run the node is in. An executor reaches it only
/// through the lease.
pub(crate) trait LeaseHost: Send + Sync + 'static {
    /// Starts an attempt of `node`; may block (the cache, the run's callbacks). When the
    /// executor does not take the job (a worker process's attempt), it goes in `kept`, for the
    /// attempt's end. `None` when there is nothing to run: the cache served the node, it was
    /// stopped, or its inputs could not be written (the attempt is then already ended).
    // `kept` is an out-parameter so that the spec, a few hundred bytes, goes straight to the
    // executor: a tuple around it would be copied again on the way.
    fn begin(self: Arc<Self>, node: &NodeKey, kind: WorkKind, kept: &mut Option<Job>) -> Option<(AttemptSpec, Work)>;
    /// Ends the attempt of `node` begun with [`LeaseHost::begin`]: `job` back (a retry runs
    /// it), and how it went; may block.
    fn end(self: Arc<Self>, node: &NodeKey, job: Job, result: Result<Vec<ArtifactRef>, StepError>);
}

/// An executor's hold on one node of a run, for one attempt. A value, not a box: handing a
/// node to an executor costs no allocation.
pub(crate) struct Lease {
    host: Arc<dyn LeaseHost>,
    node: NodeKey,
    /// Between `begin` and `end`: the job, when the executor does not hold it.
    begun: Option<Option<Job>>,
}

impl Lease {
    /// A lease on `node` of the run `host`.
    pub(crate) fn new(host: Arc<dyn LeaseHost>, node: NodeKey) -> Self {
        Self {
            host,
            node,
            begun: None,
        }
    }

    /// Starts the attempt; may block (the cache, the run's callbacks). `None` when there is
    /// nothing to run: the cache served the node, it was stopped, or its inputs could not be
    /// written (the lease has then ended the attempt itself).
    pub(crate) fn begin(&mut self, kind: WorkKind) -> Option<(AttemptSpec, Work)> {
        let mut kept = None;
        let begun = self.host.clone().begin(&self.node, kind, &mut kept);
        if begun.is_some() {
            self.begun = Some(kept);
        }
        begun
    }

    /// Reports how the attempt ended; may block.
    pub(crate) fn end(mut self, outcome: Outcome) {
        let Some(kept) = self.begun.take() else { return };
        let job = match outcome.work {
            Work::InProcess(job) => job,
            Work::Artifacts(_) => kept.unwrap_or_else(no_job),
        };
        self.host.clone().end(&self.node, job, outcome.result);
    }
}

/// What stands for a job an executor lost with its attempt (nothing to run again).
fn no_job() -> Job {
    Box::new(|_| Ok(()))
}

impl Drop for Lease {
    /// An attempt begun and never ended (its executor went away) still ends, so the run does
    /// not wait for it forever.
    fn drop(&mut self) {
        if let Some(kept) = self.begun.take() {
            let lost = StepError::new(pipeline_core::ErrorKind::Crash, "the executor lost the attempt");
            self.host
                .clone()
                .end(&self.node, kept.unwrap_or_else(no_job), Err(lost));
        }
    }
}

/// Where a run's nodes go.
pub(crate) trait Executor: Send + Sync {
    /// Runs the node of `lease` (now or later).
    fn submit(&self, lease: Lease);
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
    use super::{AttemptSpec, Cancel, Lease, LeaseHost, NodeKey, Outcome, Work, WorkKind};
    use crate::transport::artifacts::ArtifactRef;
    use crate::value::{Invoke, Job};
    use pipeline_core::StepError;
    use std::sync::{Arc, Mutex};

    /// A run as a lease sees it: hands out a job that counts its calls, records the ends.
    #[derive(Default)]
    struct Host {
        calls: Arc<Mutex<u32>>,
        ends: Mutex<Vec<Result<(), String>>>,
    }

    impl Host {
        fn job(&self) -> Job {
            let calls = self.calls.clone();
            Box::new(move |_| {
                *calls.lock().unwrap() += 1;
                Ok(())
            })
        }
    }

    impl LeaseHost for Host {
        fn begin(
            self: Arc<Self>,
            node: &NodeKey,
            kind: WorkKind,
            kept: &mut Option<Job>,
        ) -> Option<(AttemptSpec, Work)> {
            let spec = AttemptSpec {
                step: node.name.clone(),
                descriptor: node.descriptor,
                pipeline: "p",
                number: 1,
                last: true,
                codec: pipeline_core::Codec::Bincode,
                context: None,
                limit: None,
                cancel: None,
                span: tracing::Span::none(),
                worker: None,
            };
            let work = match kind {
                WorkKind::InProcess => Work::InProcess(self.job()),
                WorkKind::Artifacts => {
                    *kept = Some(self.job());
                    Work::Artifacts(Vec::new())
                }
            };
            Some((spec, work))
        }

        fn end(self: Arc<Self>, _node: &NodeKey, mut job: Job, result: Result<Vec<ArtifactRef>, StepError>) {
            // The job that comes back is the one handed out (a retry runs it).
            job(Invoke::Run { last: true }).unwrap();
            self.ends
                .lock()
                .unwrap()
                .push(result.map(|_| ()).map_err(|e| e.message));
        }
    }

    fn lease(host: &Arc<Host>) -> Lease {
        let node = NodeKey {
            index: 0,
            name: "step".into(),
            descriptor: &crate::store::TEST_COMPONENT,
        };
        Lease::new(host.clone(), node)
    }

    #[test]
    fn a_lease_ends_its_attempt_once_and_gives_the_job_back() {
        for kind in [WorkKind::InProcess, WorkKind::Artifacts] {
            let host = Arc::new(Host::default());
            let mut held = lease(&host);
            let (_, work) = held.begin(kind).expect("begun");
            held.end(Outcome {
                work,
                result: Ok(Vec::new()),
            });
            assert_eq!(*host.ends.lock().unwrap(), [Ok(())], "{kind:?}: one end");
            assert_eq!(*host.calls.lock().unwrap(), 1, "{kind:?}: the job came back");
        }
    }

    #[test]
    fn a_lease_dropped_after_its_begin_ends_the_attempt_as_lost() {
        let host = Arc::new(Host::default());
        drop(lease(&host));
        assert!(host.ends.lock().unwrap().is_empty(), "never begun: nothing to end");
        let mut held = lease(&host);
        let begun = held.begin(WorkKind::Artifacts);
        drop(held);
        assert_eq!(
            *host.ends.lock().unwrap(),
            [Err("the executor lost the attempt".to_string())]
        );
        assert_eq!(*host.calls.lock().unwrap(), 1, "the kept job came back");
        drop(begun);
    }

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
