//! The controller of one run: DAG discovery from component calls, node states, and the
//! scheduling rules every executor shares (readiness, retries, skips, aborts, callbacks).
//!
//! State lives per run, never globally, so runs may nest and run side by side in one process.
//! Callbacks and slot wake-ups happen outside the run's lock (see [`Effects`]).

use crate::artifacts::ArtifactRef;
use crate::call::Invoke;
use crate::error::HandleError;
use crate::executor::Executor;
use crate::handle::NodeRef;
use crate::recorder::Recorder;
use crate::slot::ErasedSlot;
use crate::store::Event;
use pipeline_core::options::{PostExecuteCallback, PreExecuteCallback, StatusChangeCallback};
use pipeline_core::{
    ComponentDescriptor, DagNode, ErrorKind, NodeStatus, PipelineDag, PipelineDescriptor, RetryPolicy, RunStatus,
    StepError,
};
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::SystemTime;

/// A step's work, type-erased: either resolves its inputs, runs the component and fills its
/// output slots, or writes its inputs as artifacts for a worker process.
pub(crate) type Job = Box<dyn for<'a> FnMut(crate::call::Invoke<'a>) -> Result<(), StepError> + Send>;

struct NodeState {
    name: Arc<str>,
    descriptor: &'static ComponentDescriptor,
    /// Parents by index; `true` for a data edge (an input), `false` for `parents = [...]`.
    parents: Vec<(u32, bool)>,
    dependents: Vec<(u32, bool)>,
    waiting_on: usize,
    status: NodeStatus,
    attempts: u32,
    started: Option<SystemTime>,
    ended: Option<SystemTime>,
    error: Option<StepError>,
    job: Option<Job>,
    /// Dropped once the node is final, so that readers can move values out of the slots.
    outputs: Vec<Arc<dyn ErasedSlot>>,
    cache_key: Option<String>,
    log_path: Option<std::path::PathBuf>,
}

struct RunState {
    /// The run's key, for the events sent to the recorder.
    record: Arc<str>,
    /// Whether events are recorded at all.
    recording: bool,
    nodes: Vec<NodeState>,
    names: HashMap<Arc<str>, u32>,
    repeats: HashMap<&'static str, u32>,
    active: usize,
    /// The first step whose failure fails the run.
    fatal: Option<Arc<str>>,
    /// Why the run is being aborted; nodes that have not started yet are aborted with it.
    aborting: Option<String>,
    idle_wakers: Vec<Waker>,
}

/// One attempt at running a node, as handed to an executor.
pub(crate) struct Attempt {
    pub(crate) job: Job,
    /// No further attempt can follow: inputs may be moved into this one.
    pub(crate) last: bool,
    retries: u32,
    policy: RetryPolicy,
}

impl Attempt {
    /// 1 for the first attempt, 2 for the first retry...
    pub(crate) fn number(&self) -> u32 {
        self.retries + 1
    }
}

/// Work to do once the run's lock is released.
#[derive(Default)]
struct Effects {
    failed_slots: Vec<(Vec<Arc<dyn ErasedSlot>>, HandleError)>,
    status_events: Vec<(StatusChangeCallback, DagNode, NodeStatus)>,
    post_events: Vec<(PostExecuteCallback, DagNode)>,
    pre_checks: Vec<(u32, PreExecuteCallback, DagNode)>,
    submit: Vec<u32>,
    /// Running nodes to stop, with the reason.
    cancel: Vec<(u32, String)>,
    /// Events for the run store.
    records: Vec<Event>,
    idle: bool,
}

/// One run of a pipeline.
pub(crate) struct Run {
    /// Identity within this process (handles compare it).
    pub(crate) id: u64,
    /// Identity in the run store and the state folder.
    pub(crate) key: Arc<str>,
    pub(crate) descriptor: &'static PipelineDescriptor,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) started: SystemTime,
    /// Where its steps run.
    pub(crate) mode: crate::mode::Mode,
    /// The version recorded (given, or chosen by the store).
    pub(crate) version: String,
    /// 1 for the first run of this pipeline in the store.
    pub(crate) run_number: u32,
    state: Mutex<RunState>,
    idle: Condvar,
    executor: Box<dyn Executor>,
    pub(crate) recorder: Option<Recorder>,
    /// The run's folder in the state folder (artifacts, logs).
    pub(crate) run_dir: std::path::PathBuf,
    /// The run store, for cache look-ups (`None` when the run is not recorded).
    store_path: Option<std::path::PathBuf>,
    cache_store: Mutex<Option<crate::store::RunStore>>,
}

/// What a run is called and numbered, and whether it is recorded.
pub(crate) struct RunIdentity {
    pub(crate) key: String,
    pub(crate) started: SystemTime,
    pub(crate) version: String,
    pub(crate) run_number: u32,
    pub(crate) recorder: Option<Recorder>,
    pub(crate) run_dir: std::path::PathBuf,
    pub(crate) store_path: Option<std::path::PathBuf>,
}

static NEXT_RUN_ID: AtomicU64 = AtomicU64::new(1);

impl Run {
    pub(crate) fn new(
        descriptor: &'static PipelineDescriptor,
        params: Vec<(String, String)>,
        executor: Box<dyn Executor>,
        identity: RunIdentity,
    ) -> Arc<Self> {
        let key: Arc<str> = identity.key.into();
        let identity_recording = identity.recorder.is_some();
        Arc::new(Self {
            id: NEXT_RUN_ID.fetch_add(1, Ordering::Relaxed),
            descriptor,
            params,
            started: identity.started,
            version: identity.version,
            mode: crate::mode::mode(),
            run_number: identity.run_number,
            recorder: identity.recorder,
            run_dir: identity.run_dir,
            store_path: identity.store_path,
            cache_store: Mutex::new(None),
            key: key.clone(),
            state: Mutex::new(RunState {
                record: key,
                recording: identity_recording,
                nodes: Vec::new(),
                names: HashMap::new(),
                repeats: HashMap::new(),
                active: 0,
                fatal: None,
                aborting: None,
                idle_wakers: Vec::new(),
            }),
            idle: Condvar::new(),
            executor,
        })
    }

    /// Records a step output stored at `path` (size and checksum from its header).
    pub(crate) fn record_output(&self, node: &str, output: &pipeline_core::ParamDescriptor, artifact: &ArtifactRef) {
        if let Some(recorder) = &self.recorder {
            recorder.send(Event::Artifact {
                run: self.key.to_string(),
                record: output_record(node, output, artifact),
            });
        }
    }

    /// The run store's file, when the run is recorded.
    pub(crate) fn store_path(&self) -> Option<&std::path::Path> {
        self.store_path.as_deref()
    }

    /// Where reports of node `index` (or of the body, for `None`) go; `None` when not recorded.
    pub(crate) fn step_context(&self, index: Option<u32>) -> Option<crate::step::StepContext> {
        let store = self.store_path.clone()?;
        let (node, component) = match index {
            Some(i) => {
                let (name, descriptor) = self.node_info(i);
                (name.to_string(), Some(descriptor))
            }
            None => (String::new(), None),
        };
        Some(crate::step::StepContext {
            run: self.key.to_string(),
            node,
            component,
            store,
            run_dir: self.run_dir.clone(),
        })
    }

    /// Serves a `cache = true` node from an earlier run's outputs when its key matches; true
    /// when it did (the node is then `Cached`). Otherwise the key is kept for [`Run::save_cache`].
    pub(crate) fn lookup_cache(self: &Arc<Self>, index: u32) -> bool {
        let Some(store_path) = &self.store_path else {
            return false;
        };
        let (descriptor, mut job) = {
            let mut st = self.lock();
            let node = &mut st.nodes[index as usize];
            if !node.descriptor.options.cache || node.status.is_terminal() {
                return false;
            }
            let Some(job) = node.job.take() else { return false };
            (node.descriptor, job)
        };
        let mut key = blake3::Hasher::new();
        for part in [
            descriptor.name,
            descriptor.code_hash,
            descriptor.options.version.unwrap_or(""),
        ] {
            key.update(&(part.len() as u64).to_le_bytes());
            key.update(part.as_bytes());
        }
        let fingerprint = catch_unwind(AssertUnwindSafe(|| job(Invoke::Fingerprint(&mut key))));
        self.lock().nodes[index as usize].job = Some(job);
        if !matches!(fingerprint, Ok(Ok(()))) {
            return false; // no key, no cache: the step runs and reports its own input errors
        }
        let key = key.finalize().to_hex().to_string();
        self.lock().nodes[index as usize].cache_key = Some(key.clone());

        let hit = {
            let mut store = crate::sync::lock(&self.cache_store);
            if store.is_none() {
                *store = crate::store::RunStore::open(store_path).ok();
            }
            store.as_ref().and_then(|s| s.cached(&key).ok().flatten())
        };
        let Some(records) = hit else { return false };
        let outputs: Option<Vec<ArtifactRef>> = records
            .iter()
            .map(|r| {
                let codec = crate::worker::codec_named(r.codec.as_deref()?, self.descriptor.name).ok()?;
                if crate::object_storage::is_remote(&r.uri) {
                    // Downloaded into this run's folder when first read.
                    let path = self
                        .run_dir
                        .join("cache")
                        .join(blake3::hash(r.uri.as_bytes()).to_hex().as_str());
                    return Some(ArtifactRef {
                        path,
                        codec,
                        uri: Some(r.uri.clone()),
                    });
                }
                let path = std::path::PathBuf::from(&r.uri);
                crate::artifacts::read_header(&path).ok()?;
                Some(ArtifactRef::local(path, codec))
            })
            .collect();
        let Some(outputs) = outputs.filter(|o| o.len() == descriptor.outputs.len()) else {
            return false;
        };
        let (name, slots) = self.output_slots(index);
        for ((slot, artifact), output) in slots.iter().zip(outputs).zip(descriptor.outputs) {
            self.record_output(&name, output, &artifact);
            slot.store(artifact, name.clone());
        }
        let mut fx = Effects::default();
        self.lock().finish(index, NodeStatus::Cached, None, &mut fx);
        self.apply(fx);
        true
    }

    /// Stores a finished `cache = true` node's outputs as artifacts (if they are not already)
    /// and records them under its cache key.
    fn save_cache(&self, index: u32) {
        let (Some(recorder), Some(key)) = (&self.recorder, self.lock().nodes[index as usize].cache_key.clone()) else {
            return;
        };
        let (name, descriptor) = self.node_info(index);
        let (_, slots) = self.output_slots(index);
        let codec = self.descriptor.options.codec;
        let mut records = Vec::new();
        for (slot, output) in slots.iter().zip(descriptor.outputs) {
            let path = crate::artifacts::output_path(&self.run_dir.join(&*name), output.name);
            match slot.persist(&path, codec) {
                Ok(artifact) => {
                    let record = output_record(&name, output, &artifact);
                    recorder.send(Event::Artifact {
                        run: self.key.to_string(),
                        record: record.clone(),
                    });
                    records.push(record);
                }
                Err(e) => {
                    eprintln!("pipeline: step `{name}` is not cached: {e}");
                    return;
                }
            }
        }
        recorder.send(Event::Cache {
            key,
            component: descriptor.name.to_string(),
            run: self.key.to_string(),
            node: name.to_string(),
            outputs: records,
        });
    }

    /// The log file of the node's current attempt.
    pub(crate) fn set_log_path(self: &Arc<Self>, index: u32, path: std::path::PathBuf) {
        let mut fx = Effects::default();
        {
            let mut st = self.lock();
            st.nodes[index as usize].log_path = Some(path);
            // Recorded now, so that `pipeline logs --follow` finds a running attempt's log.
            st.record_node(index, false, &mut fx);
        }
        self.apply(fx);
    }

    fn lock(&self) -> MutexGuard<'_, RunState> {
        // Callbacks and steps never run under this lock, so it is never poisoned by them.
        crate::sync::lock(&self.state)
    }

    /// Adds a node for a call of `descriptor` whose arguments come from `deps`; `build` makes
    /// its job and output slots once the node's name is known.
    pub(crate) fn add_node<H>(
        self: &Arc<Self>,
        descriptor: &'static ComponentDescriptor,
        deps: &[NodeRef],
        build: impl FnOnce(NodeRef, &Arc<str>) -> (H, Job, Vec<Arc<dyn ErasedSlot>>),
    ) -> H {
        let mut fx = Effects::default();
        let handles = {
            let mut st = self.lock();
            let index = st.nodes.len() as u32;
            let name = st.unique_name(descriptor.name);
            let (handles, job, outputs) = build(NodeRef { run: self.id, index }, &name);

            let mut parents: Vec<(u32, bool)> = deps
                .iter()
                .filter(|d| d.run == self.id)
                .map(|d| (d.index, true))
                .collect();
            let mut unknown = Vec::new();
            for &parent in descriptor.options.parents {
                match st.names.get(parent) {
                    Some(&i) => parents.push((i, false)),
                    None => unknown.push(parent),
                }
            }
            let parents = dedup_parents(parents);
            st.nodes.push(NodeState {
                name: name.clone(),
                descriptor,
                parents,
                dependents: Vec::new(),
                waiting_on: 0,
                status: NodeStatus::Pending,
                attempts: 0,
                started: None,
                ended: None,
                error: None,
                job: Some(job),
                outputs,
                cache_key: None,
                log_path: None,
            });
            st.record_node(index, true, &mut fx);
            st.names.insert(name, index);
            st.active += 1;

            if !unknown.is_empty() {
                let error = StepError::new(
                    ErrorKind::Setup,
                    format!(
                        "unknown parent step{} {}: `parents` names steps called earlier in this run",
                        if unknown.len() > 1 { "s" } else { "" },
                        unknown.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
                    ),
                );
                st.fail(self, index, error, &mut fx);
            } else if let Some(reason) = st.aborting.clone() {
                st.finish(
                    index,
                    NodeStatus::Aborted,
                    Some(StepError::new(ErrorKind::Aborted, reason)),
                    &mut fx,
                );
            } else {
                st.wire(index, &mut fx);
            }
            handles
        };
        self.apply(fx);
        handles
    }

    /// Runs the node's job in this thread, with retries, and records the outcome.
    pub(crate) fn execute_in_process(self: &Arc<Self>, index: u32) {
        if self.lookup_cache(index) {
            return;
        }
        let context = self.step_context(Some(index));
        while let Some(mut attempt) = self.begin_attempt(index) {
            let last = attempt.last;
            let outcome = crate::step::with_context(context.clone(), || {
                catch_unwind(AssertUnwindSafe(|| (attempt.job)(Invoke::Run { last })))
                    .unwrap_or_else(|payload| Err(StepError::from_panic(&*payload)))
            });
            if !self.end_attempt(index, attempt, outcome) {
                return;
            }
        }
    }

    /// Starts an attempt: the node becomes `Running` and its job is handed out. `None` when the
    /// node is already final (aborted while queued).
    pub(crate) fn begin_attempt(self: &Arc<Self>, index: u32) -> Option<Attempt> {
        let mut fx = Effects::default();
        let attempt = {
            let mut st = self.lock();
            let node = &mut st.nodes[index as usize];
            if node.status.is_terminal() {
                return None;
            }
            let job = node.job.take()?;
            node.attempts += 1;
            node.started.get_or_insert_with(SystemTime::now);
            let retries = node.attempts - 1;
            let policy = self.retry_policy(node.descriptor);
            let attempt = Attempt {
                job,
                last: policy.is_last_attempt(retries),
                retries,
                policy,
            };
            st.set_status(index, NodeStatus::Running, &mut fx);
            attempt
        };
        self.apply(fx);
        Some(attempt)
    }

    /// Records how an attempt ended; true when the node is to be tried again (its job is
    /// back in place and [`Run::begin_attempt`] starts the next attempt).
    pub(crate) fn end_attempt(self: &Arc<Self>, index: u32, attempt: Attempt, outcome: Result<(), StepError>) -> bool {
        let mut fx = Effects::default();
        match outcome {
            Ok(()) => {
                self.save_cache(index);
                self.lock().finish(index, NodeStatus::Completed, None, &mut fx)
            }
            Err(error) if error.kind == ErrorKind::Aborted => {
                let mut st = self.lock();
                st.finish(index, NodeStatus::Aborted, Some(error), &mut fx);
                st.note_abort(self, index, &mut fx);
            }
            Err(error) => {
                let retry = !attempt.last && {
                    let snapshot = self.lock().dag_node(index);
                    attempt.policy.allows(&snapshot, attempt.retries)
                };
                let mut st = self.lock();
                if retry && st.aborting.is_none() && !st.nodes[index as usize].status.is_terminal() {
                    st.nodes[index as usize].job = Some(attempt.job);
                    return true;
                }
                st.fail(self, index, error, &mut fx);
            }
        }
        self.apply(fx);
        false
    }

    /// The node's output slots, to resolve from another process's artifacts.
    pub(crate) fn output_slots(&self, index: u32) -> (Arc<str>, Vec<Arc<dyn ErasedSlot>>) {
        let st = self.lock();
        let node = &st.nodes[index as usize];
        (node.name.clone(), node.outputs.clone())
    }

    /// The node's name and component.
    pub(crate) fn node_info(&self, index: u32) -> (Arc<str>, &'static ComponentDescriptor) {
        let st = self.lock();
        let node = &st.nodes[index as usize];
        (node.name.clone(), node.descriptor)
    }

    /// Stops the run: nodes not started are aborted, running ones are stopped by their
    /// executor. Used for time limits and user stops.
    pub(crate) fn abort_run(self: &Arc<Self>, reason: String) {
        let mut fx = Effects::default();
        {
            let mut st = self.lock();
            if st.aborting.is_some() || st.active == 0 {
                return;
            }
            st.abort(reason, &mut fx);
        }
        self.apply(fx);
    }

    fn retry_policy(&self, component: &ComponentDescriptor) -> RetryPolicy {
        match component.options.retry {
            RetryPolicy::Never => self.descriptor.options.retry,
            policy => policy,
        }
    }

    /// Blocks until no node is pending, queued or running.
    pub(crate) fn wait_idle(&self) {
        let mut st = self.lock();
        while st.active > 0 {
            st = self.idle.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The `async` form of [`Run::wait_idle`].
    pub(crate) fn poll_idle(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.lock();
        if st.active == 0 {
            return Poll::Ready(());
        }
        st.idle_wakers.push(cx.waker().clone());
        Poll::Pending
    }

    /// Stops the executor; called once no node is active.
    pub(crate) fn shutdown(&self) {
        self.executor.shutdown();
    }

    /// The run's state as the body left it; `body_panicked` fails it.
    pub(crate) fn status(&self, body_panicked: bool) -> RunStatus {
        let st = self.lock();
        if st.active > 0 {
            RunStatus::Running
        } else if body_panicked || st.fatal.is_some() {
            RunStatus::Failed
        } else if st.aborting.is_some() {
            RunStatus::Aborted
        } else {
            RunStatus::Completed
        }
    }

    /// A snapshot of the DAG as it stands.
    pub(crate) fn dag(&self) -> PipelineDag {
        let st = self.lock();
        PipelineDag::from_nodes((0..st.nodes.len() as u32).map(|i| st.dag_node(i)).collect())
    }

    /// Names of the nodes in `status`-matching states, in creation order.
    pub(crate) fn node_names(&self, keep: impl Fn(NodeStatus) -> bool) -> Vec<String> {
        let st = self.lock();
        st.nodes
            .iter()
            .filter(|n| keep(n.status))
            .map(|n| n.name.to_string())
            .collect()
    }

    fn apply(self: &Arc<Self>, mut fx: Effects) {
        loop {
            if let Some(recorder) = &self.recorder {
                fx.records.drain(..).for_each(|e| recorder.send(e));
            }
            for (slots, error) in fx.failed_slots.drain(..) {
                for slot in slots {
                    slot.fail(error.clone());
                }
            }
            for (callback, node, previous) in fx.status_events.drain(..) {
                callback(&node, previous);
            }
            for (callback, node) in fx.post_events.drain(..) {
                callback(&node);
            }
            let checks = std::mem::take(&mut fx.pre_checks);
            for (index, callback, node) in checks {
                let go = callback(&node);
                let mut st = self.lock();
                if st.nodes[index as usize].status.is_terminal() {
                    continue;
                }
                if go {
                    st.queue(index, &mut fx);
                } else {
                    let error = StepError::new(ErrorKind::Skipped, "pre_execute_callback returned false");
                    st.finish(index, NodeStatus::Skipped, Some(error), &mut fx);
                }
            }
            for index in fx.submit.drain(..) {
                self.executor.submit(self.clone(), index);
            }
            for (index, reason) in fx.cancel.drain(..) {
                self.executor.cancel(index, &reason);
            }
            if std::mem::take(&mut fx.idle) {
                let wakers = std::mem::take(&mut self.lock().idle_wakers);
                self.idle.notify_all();
                wakers.into_iter().for_each(Waker::wake);
            }
            if fx.failed_slots.is_empty()
                && fx.status_events.is_empty()
                && fx.post_events.is_empty()
                && fx.pre_checks.is_empty()
                && fx.submit.is_empty()
                && fx.cancel.is_empty()
                && fx.records.is_empty()
            {
                return;
            }
        }
    }
}

/// The run-store record of a step output, with size and checksum from its header when the
/// artifact is at hand (one in object storage is not downloaded just to record it).
fn output_record(
    node: &str,
    output: &pipeline_core::ParamDescriptor,
    artifact: &ArtifactRef,
) -> crate::store::ArtifactRecord {
    let header = crate::artifacts::read_header(&artifact.path).ok();
    crate::store::ArtifactRecord {
        node: node.to_string(),
        name: output.name.to_string(),
        kind: crate::store::ArtifactKind::Output,
        uri: artifact.location(),
        codec: Some(artifact.codec.name().to_string()),
        type_name: header.as_ref().map(|h| h.type_name.clone()),
        size: header.as_ref().map(|h| h.length),
        checksum: header.as_ref().map(|h| format!("{:08x}", h.checksum)),
        metadata: None,
    }
}

/// Parents in creation order, each once; an edge is a data edge if any argument came from it.
/// Sorting keeps a fan-in of n handles O(n log n).
fn dedup_parents(mut parents: Vec<(u32, bool)>) -> Vec<(u32, bool)> {
    parents.sort_unstable_by_key(|&(index, _)| index);
    parents.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 |= later.1;
        }
        same
    });
    parents
}

impl RunState {
    fn unique_name(&mut self, base: &'static str) -> Arc<str> {
        let count = self.repeats.entry(base).or_insert(0);
        loop {
            let name: Arc<str> = if *count == 0 {
                base.into()
            } else {
                format!("{base}_{count}").into()
            };
            *count += 1;
            if !self.names.contains_key(&name) {
                return name;
            }
        }
    }

    fn dag_node(&self, index: u32) -> DagNode {
        let n = &self.nodes[index as usize];
        DagNode {
            name: n.name.to_string(),
            component: n.descriptor.name.to_string(),
            parents: n
                .parents
                .iter()
                .map(|&(p, _)| self.nodes[p as usize].name.to_string())
                .collect(),
            status: n.status,
            attempts: n.attempts,
            started: n.started,
            ended: n.ended,
            error: n.error.clone(),
        }
    }

    fn set_status(&mut self, index: u32, status: NodeStatus, fx: &mut Effects) {
        let node = &mut self.nodes[index as usize];
        let previous = std::mem::replace(&mut node.status, status);
        if previous != status {
            if let Some(callback) = node.descriptor.options.callbacks.status_change {
                fx.status_events.push((callback, self.dag_node(index), previous));
            }
            self.record_node(index, true, fx);
        }
    }

    /// Sends the node's state to the recorder; `changed` when its status just changed (an event
    /// row is written then).
    fn record_node(&self, index: u32, changed: bool, fx: &mut Effects) {
        if self.recording {
            let n = &self.nodes[index as usize];
            fx.records.push(Event::Node {
                run: self.record.to_string(),
                seq: index,
                node: self.dag_node(index),
                code_hash: n.descriptor.code_hash,
                cache_key: n.cache_key.clone(),
                log_path: n.log_path.clone(),
                changed,
            });
        }
    }

    /// Connects a new node to its unfinished parents, or decides its fate now.
    fn wire(&mut self, index: u32, fx: &mut Effects) {
        let parents = self.nodes[index as usize].parents.clone();
        let mut waiting = 0;
        for (parent, data) in parents {
            let p = &self.nodes[parent as usize];
            if !p.status.is_terminal() {
                waiting += 1;
                self.nodes[parent as usize].dependents.push((index, data));
            } else if let Some(reason) = blocks_child(p, data) {
                self.finish(
                    index,
                    NodeStatus::Skipped,
                    Some(StepError::new(ErrorKind::Skipped, reason)),
                    fx,
                );
                return;
            }
        }
        self.nodes[index as usize].waiting_on = waiting;
        if waiting == 0 {
            self.ready(index, fx);
        }
    }

    fn ready(&mut self, index: u32, fx: &mut Effects) {
        match self.nodes[index as usize].descriptor.options.callbacks.pre_execute {
            Some(callback) => fx.pre_checks.push((index, callback, self.dag_node(index))),
            None => self.queue(index, fx),
        }
    }

    fn queue(&mut self, index: u32, fx: &mut Effects) {
        self.set_status(index, NodeStatus::Queued, fx);
        fx.submit.push(index);
    }

    fn fail(&mut self, run: &Run, index: u32, error: StepError, fx: &mut Effects) {
        let behaviour = self.nodes[index as usize].descriptor.options.continue_behaviour;
        self.finish(index, NodeStatus::Failed, Some(error), fx);
        if !behaviour.continue_on_fail {
            let name = self.nodes[index as usize].name.clone();
            if run.descriptor.options.abort_on_failure && self.aborting.is_none() {
                self.abort(format!("the pipeline stopped because step `{name}` failed"), fx);
            }
            self.fatal.get_or_insert(name);
        }
    }

    /// Aborts every node that has not started, and asks the executor to stop running ones.
    fn abort(&mut self, reason: String, fx: &mut Effects) {
        self.aborting = Some(reason.clone());
        for index in 0..self.nodes.len() as u32 {
            match self.nodes[index as usize].status {
                NodeStatus::Pending | NodeStatus::Queued => {
                    let error = StepError::new(ErrorKind::Aborted, reason.clone());
                    self.finish(index, NodeStatus::Aborted, Some(error), fx);
                }
                NodeStatus::Running => fx.cancel.push((index, reason.clone())),
                _ => {}
            }
        }
    }

    /// An aborted step without `continue_on_abort` fails the run, and with
    /// `abort_on_failure` stops the rest. Steps aborted by the run's own abort change nothing.
    fn note_abort(&mut self, run: &Run, index: u32, fx: &mut Effects) {
        let behaviour = self.nodes[index as usize].descriptor.options.continue_behaviour;
        if behaviour.continue_on_abort || self.aborting.is_some() {
            return;
        }
        let name = self.nodes[index as usize].name.clone();
        if run.descriptor.options.abort_on_failure {
            self.abort(format!("the pipeline stopped because step `{name}` was aborted"), fx);
        }
        self.fatal.get_or_insert(name);
    }

    /// Puts a node in a final state and carries the consequences to its descendants.
    fn finish(&mut self, index: u32, status: NodeStatus, error: Option<StepError>, fx: &mut Effects) {
        let mut work = vec![(index, status, error)];
        while let Some((index, status, error)) = work.pop() {
            if self.nodes[index as usize].status.is_terminal() {
                continue;
            }
            let node = &mut self.nodes[index as usize];
            node.ended = Some(SystemTime::now());
            node.error = error;
            node.job = None;
            // After `ended` and `error`, so that callbacks and the record see them.
            self.set_status(index, status, fx);
            self.active -= 1;
            let node = &mut self.nodes[index as usize];
            let outputs = std::mem::take(&mut node.outputs);
            let dependents = std::mem::take(&mut node.dependents);
            if !status.is_success() {
                let step = node.name.to_string();
                let reason = node.error.as_ref().map(|e| e.message.clone()).unwrap_or_default();
                let handle_error = match status {
                    NodeStatus::Failed => HandleError::Failed {
                        step,
                        error: node
                            .error
                            .clone()
                            .unwrap_or_else(|| StepError::new(ErrorKind::Error, "failed")),
                    },
                    NodeStatus::Skipped => HandleError::Skipped { step, reason },
                    _ => HandleError::Aborted { step, reason },
                };
                fx.failed_slots.push((outputs, handle_error));
            }
            if let Some(callback) = node.descriptor.options.callbacks.post_execute {
                fx.post_events.push((callback, self.dag_node(index)));
            }
            for (child, data) in dependents {
                if self.nodes[child as usize].status.is_terminal() {
                    continue;
                }
                if let Some(reason) = blocks_child(&self.nodes[index as usize], data) {
                    work.push((
                        child,
                        NodeStatus::Skipped,
                        Some(StepError::new(ErrorKind::Skipped, reason)),
                    ));
                } else {
                    let c = &mut self.nodes[child as usize];
                    c.waiting_on -= 1;
                    if c.waiting_on == 0 {
                        self.ready(child, fx);
                    }
                }
            }
        }
        if self.active == 0 {
            fx.idle = true;
        }
    }
}

/// Why a final parent keeps its child from running, if it does.
fn blocks_child(parent: &NodeState, data: bool) -> Option<String> {
    let behaviour = parent.descriptor.options.continue_behaviour;
    let (verb, skips) = match parent.status {
        NodeStatus::Completed | NodeStatus::Cached => return None,
        NodeStatus::Failed => ("failed", behaviour.skip_children_on_fail),
        NodeStatus::Aborted => ("was aborted", behaviour.skip_children_on_abort),
        NodeStatus::Skipped => ("was skipped", true),
        NodeStatus::Pending | NodeStatus::Queued | NodeStatus::Running => return None,
    };
    // A data child has no value to run with, whatever the behaviour says.
    (data || skips).then(|| format!("parent step `{}` {verb}", parent.name))
}
