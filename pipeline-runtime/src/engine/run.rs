//! One run of a pipeline: DAG discovery from component calls, and the applier of the
//! scheduler's effects.
//!
//! Every rule lives in the pure [`Scheduler`]; this module feeds it events (a call, an attempt
//! that starts or ends, a callback's answer, a stop) and applies its effects. Effects are
//! applied by one thread at a time, in the order the scheduler produced them: whichever thread
//! finds effects waiting and nobody applying them applies them all (on an async runtime's
//! thread it hands that work to the runtime's blocking pool). So a node's callbacks never
//! reorder, and callbacks never run under the run's lock. The scheduler's records go to the
//! recorder in their order, each before the effects produced after it are applied.
//!
//! State lives per run, never globally, so runs may nest and run side by side in one process.

use super::chunked::Chunked;
use super::scheduler::{Effect, Grant, Record, Scheduler, StepRules};
use crate::error::HandleError;
use crate::exec::{Cancel, Executor, Lease, NodeKey};
use crate::store::Event;
use crate::store::recorder::Recorder;
use crate::transport::artifacts::{ArgArtifacts, ArtifactRef};
use crate::transport::object_storage;
use crate::value::handle::NodeRef;
use crate::value::slot::ErasedSlots;
use crate::value::{Invoke, Job};
use pipeline_core::names::slug;
use pipeline_core::{
    ComponentDescriptor, ErrorKind, NodeStatus, PipelineDag, PipelineDescriptor, RetryPolicy, RunStatus, StepError,
};
use smol_str::SmolStr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::SystemTime;

struct RunState {
    sched: Scheduler,
    /// Per node, by index: what the run holds of it besides its scheduling state.
    held: Chunked<Held>,
    /// A thread is applying effects.
    draining: bool,
    /// Effects applied so far (effects are applied in the order they were produced).
    applied: u64,
    /// Threads waiting for `applied` to reach a mark.
    watchers: usize,
    /// Retries waiting out their backoff (on `Run::timers`).
    delayed: usize,
    /// The drain's buffer, kept between drains.
    batch: Batch,
    /// The buffers of a drain's node records, kept between drains (as `batch`).
    records: Records,
    idle_wakers: Vec<Waker>,
    /// Threads blocked on `Run::idle`: with none, the run's becoming idle skips the wake-up
    /// (a system call even when nobody waits, and a debug run is idle after every value read).
    idle_sleepers: usize,
}

/// What a run holds of one node besides the scheduler's state: one record per node, so that
/// adding a node is one push.
struct Held {
    /// Its component.
    descriptor: &'static ComponentDescriptor,
    /// Its job, while it may still run (out while an attempt holds it).
    job: Option<Job>,
    /// Its output slots, until it is final (then readers may move values out).
    outputs: ErasedSlots,
    /// What only a step run by a worker process has; none until set (an in-process step
    /// never has it, and a run holds its nodes by the hundred thousand).
    worker: Option<Box<HeldWorker>>,
    /// Its attempt is run by the caller, not the executor (a nested pipeline).
    external: bool,
}

/// See [`Held::worker`].
#[derive(Default)]
struct HeldWorker {
    /// Its inputs written as artifacts, kept between attempts.
    exported: Option<Vec<ArgArtifacts>>,
    /// How to stop its running attempt.
    cancel: Option<Arc<Cancel>>,
}

impl Held {
    fn worker(&mut self) -> &mut HeldWorker {
        self.worker.get_or_insert_default()
    }

    fn cancel(&self) -> Option<Arc<Cancel>> {
        self.worker.as_ref().and_then(|w| w.cancel.clone())
    }
}

impl RunState {
    fn idle(&self) -> bool {
        self.sched.active() == 0 && !self.draining && !self.sched.has_waiting()
    }
}

/// How many records may wait for the next effects ([`Run::settle_lazily`]).
const LAZY_RECORDS: usize = 256;

/// How long the oldest record may wait for the next effects, as of the latest event; the
/// watchdog's poll bounds the wait when no event comes.
const LAZY_AGE: std::time::Duration = std::time::Duration::from_millis(50);

/// The node records of one batch, sent to the recorder together.
#[derive(Default)]
struct Records {
    /// As the scheduler made them.
    taken: Vec<Record>,
    /// The component of each node's first record, in order (taken under the lock).
    components: Vec<&'static ComponentDescriptor>,
}

/// What an effect needs of the run's state, taken with it under the lock.
enum Parts {
    None,
    /// A final node's output slots (to publish or fail) and its job, if still held (dropped
    /// outside the lock with the inputs it holds).
    Final {
        slots: ErasedSlots,
        job: Option<Job>,
        name: SmolStr,
    },
    /// The node an attempt starts on.
    Start(NodeKey),
}

/// Effects taken from the scheduler, with what each needs of the run's state.
type Batch = Vec<(Effect, Parts)>;

/// One attempt at running a node: its job and what the scheduler granted.
pub(crate) struct Attempt {
    pub(crate) job: Job,
    grant: Grant,
    /// How the engine stops it, for attempts that can be stopped (in a worker process).
    pub(crate) cancel: Option<Arc<Cancel>>,
}

impl Attempt {
    /// 1 for the first attempt, 2 for the first retry...
    pub(crate) fn number(&self) -> u32 {
        self.grant.number
    }

    /// No further attempt can follow: inputs may be moved into this one.
    pub(crate) fn last(&self) -> bool {
        self.grant.last
    }
}

/// A node of a run whose attempt runs outside its executor (a nested pipeline's run), held
/// by the code that runs it.
pub(crate) struct External {
    run: Arc<Run>,
    node: NodeKey,
    attempt: Option<Attempt>,
}

impl External {
    /// The run the node is in, and the node's name.
    pub(crate) fn place(&self) -> (String, String) {
        (self.run.key.to_string(), self.node.name.to_string())
    }

    /// A stop of the node (its run stopped: a user stop, the time limit, `abort_on_failure`)
    /// stops `inner`, the nested run it stands for; `inner` then ends, and so does the node.
    pub(crate) fn stops(&self, inner: &Arc<Run>) {
        if let Some(cancel) = self.attempt.as_ref().and_then(|a| a.cancel.clone()) {
            let inner = Arc::downgrade(inner);
            cancel.on_request(move |reason| {
                if let Some(run) = inner.upgrade() {
                    run.abort_run(
                        format!("its parent run stopped it: {reason}"),
                        pipeline_core::StopMark::Aborted,
                    );
                }
            });
        }
    }

    /// Records `outputs` (the nested run's `return_value`) as the node's outputs, then ends its
    /// attempt with `outcome`: a reader that sees the node ended sees its outputs.
    pub(crate) fn end_with(self, outputs: Vec<crate::store::ArtifactRecord>, outcome: Result<(), StepError>) {
        if let Some(recorder) = &self.run.recorder {
            for record in outputs {
                recorder.send(Event::Artifact {
                    run: self.run.key.to_string(),
                    record: Box::new(crate::store::ArtifactRecord {
                        node: self.node.name.to_string(),
                        kind: crate::store::ArtifactKind::Output,
                        ..record
                    }),
                });
            }
        }
        self.end(outcome);
    }

    /// Ends the node's attempt with `outcome`.
    pub(crate) fn end(mut self, outcome: Result<(), StepError>) {
        if let Some(attempt) = self.attempt.take() {
            self.run.end_attempt(&self.node, attempt.job, outcome);
        }
    }
}

impl Drop for External {
    /// Not ended (the nested run panicked): the node ends as a crash, so its run does not wait
    /// for it forever.
    fn drop(&mut self) {
        if let Some(attempt) = self.attempt.take() {
            let error = StepError::new(ErrorKind::Crash, "the nested pipeline ended without a result");
            self.run.end_attempt(&self.node, attempt.job, Err(error));
        }
    }
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
    pub(crate) mode: crate::config::Mode,
    /// The configuration it started with (its body runs inside it).
    pub(crate) config: crate::config::Config,
    /// The version recorded (given, or chosen by the store).
    pub(crate) version: String,
    /// The run this one was started again from (`pipeline rerun`).
    pub(crate) origin: Option<String>,
    /// The run whose body started this one, and its node there (a nested pipeline).
    pub(crate) parent: Option<(String, String)>,
    /// For a resumed run: its nodes as they were.
    previous: Option<Previous>,
    /// 1 for the first run of this pipeline in the store.
    pub(crate) run_number: u32,
    state: Mutex<RunState>,
    idle: Condvar,
    /// Signalled as effects are applied, for threads waiting on a mark.
    progress: Condvar,
    /// Signalled as effects are applied, for retries waiting out their backoff (a stop ends
    /// their wait).
    timers: Condvar,
    executor: Box<dyn Executor>,
    pub(crate) recorder: Option<Recorder>,
    /// The run's folder in the state folder (artifacts, logs).
    pub(crate) run_dir: Arc<std::path::Path>,
    /// The parent of the run's step spans (`tracing`).
    pub(crate) span: tracing::Span,
    /// The run store, for cache look-ups (`None` when the run is not recorded).
    store_path: Option<Arc<std::path::Path>>,
    cache_store: Mutex<Option<crate::store::RunStore>>,
    /// The body's value as recorded (`return_value`): a nested run's node in its parent gets
    /// it as its output.
    returned: Mutex<Vec<crate::store::ArtifactRecord>>,
}

impl Drop for Run {
    /// A run dropped without its end (its start failed) leaves no route to its executor.
    fn drop(&mut self) {
        crate::value::demand::unregister(self.id);
    }
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
    /// The run this one was started again from.
    pub(crate) origin: Option<String>,
    /// The run whose body started this one, and its node there.
    pub(crate) parent: Option<(String, String)>,
    /// For a resumed run: its nodes as they were.
    pub(crate) previous: Option<Previous>,
}

/// A resumed run's nodes as they were, by name.
pub(crate) struct Previous {
    nodes: fnv::FnvHashMap<String, PreviousNode>,
}

/// One node of a resumed run as it was.
pub(crate) struct PreviousNode {
    status: NodeStatus,
    code_hash: String,
    resume_key: Option<String>,
    attempts: u32,
    outputs: Vec<crate::store::ArtifactRecord>,
}

impl Previous {
    pub(crate) fn new(nodes: Vec<crate::store::NodeRecord>, artifacts: Vec<crate::store::ArtifactRecord>) -> Self {
        let mut by_name: fnv::FnvHashMap<String, PreviousNode> = nodes
            .into_iter()
            .map(|n| {
                let node = PreviousNode {
                    status: n.node.status,
                    code_hash: n.code_hash,
                    resume_key: n.resume_key,
                    attempts: n.node.attempts,
                    outputs: Vec::new(),
                };
                (n.node.name, node)
            })
            .collect();
        for artifact in artifacts {
            if artifact.kind == crate::store::ArtifactKind::Output
                && let Some(node) = by_name.get_mut(&artifact.node)
            {
                node.outputs.push(artifact);
            }
        }
        Self { nodes: by_name }
    }
}

static NEXT_RUN_ID: AtomicU64 = AtomicU64::new(1);

impl Run {
    pub(crate) fn new(
        descriptor: &'static PipelineDescriptor,
        params: Vec<(String, String)>,
        executor: Box<dyn Executor>,
        identity: RunIdentity,
        config: crate::config::Config,
    ) -> Arc<Self> {
        let recording = identity.recorder.is_some();
        let seed = u64::from_le_bytes(
            blake3::hash(identity.key.as_bytes()).as_bytes()[..8]
                .try_into()
                .expect("8 bytes"),
        );
        let span = tracing::info_span!(target: "pipeline", "run", pipeline = descriptor.name, run = %identity.key);
        let id = NEXT_RUN_ID.fetch_add(1, Ordering::Relaxed);
        if let Some(demand) = executor.demand() {
            crate::value::demand::register(id, demand);
        }
        Arc::new(Self {
            id,
            descriptor,
            params,
            started: identity.started,
            version: identity.version,
            origin: identity.origin,
            parent: identity.parent,
            previous: identity.previous,
            mode: config.mode,
            config,
            run_number: identity.run_number,
            recorder: identity.recorder,
            run_dir: identity.run_dir.into(),
            store_path: identity.store_path.map(Into::into),
            cache_store: Mutex::new(None),
            returned: Mutex::new(Vec::new()),
            span,
            key: identity.key.into(),
            state: Mutex::new(RunState {
                sched: Scheduler::new(descriptor.options.abort_on_failure, recording).with_seed(seed),
                held: Chunked::new(),
                draining: false,
                applied: 0,
                watchers: 0,
                delayed: 0,
                batch: Vec::new(),
                records: Records::default(),
                idle_wakers: Vec::new(),
                idle_sleepers: 0,
            }),
            idle: Condvar::new(),
            progress: Condvar::new(),
            timers: Condvar::new(),
            executor,
        })
    }

    /// The tally of the run's nodes (a progress display's view): up to `running` running
    /// nodes, and the failures after the first `failed_since`.
    pub(crate) fn tally(&self, running: usize, failed_since: usize) -> super::scheduler::Tally {
        self.lock().sched.tally(running, failed_since)
    }

    /// Notes the body's value as recorded (`return_value`).
    pub(crate) fn note_returned(&self, record: crate::store::ArtifactRecord) {
        crate::sync::lock(&self.returned).push(record);
    }

    /// The body's values as recorded (`return_value`).
    pub(crate) fn returned(&self) -> Vec<crate::store::ArtifactRecord> {
        crate::sync::lock(&self.returned).clone()
    }

    /// Records a step output stored at `path` (size and checksum from its header).
    pub(crate) fn record_output(&self, node: &str, output: &pipeline_core::ParamDescriptor, artifact: &ArtifactRef) {
        if let Some(recorder) = &self.recorder {
            recorder.send(Event::Artifact {
                run: self.key.to_string(),
                record: Box::new(output_record(node, output, artifact)),
            });
        }
    }

    /// The run store's file, when the run is recorded.
    pub(crate) fn store_path(&self) -> Option<&std::path::Path> {
        self.store_path.as_deref()
    }

    /// Where a node's artifacts go in object storage: `<output_uri>/<run>/<step>`, with the
    /// component's `output_uri` before the pipeline's (the body's: `<output_uri>/<run>`);
    /// `None` for the state folder.
    pub(crate) fn remote_prefix(&self, component: Option<&ComponentDescriptor>, step: &str) -> Option<String> {
        let base = component
            .and_then(|c| c.options.output_uri)
            .or(self.descriptor.options.output_uri)?;
        let parts: &[&str] = if step.is_empty() {
            &[&self.key]
        } else {
            &[&self.key, &slug(step)]
        };
        object_storage::is_remote(base).then(|| object_storage::join(base, parts))
    }

    /// Where reports of node `index` (or of the body, for `None`) go; `None` when not recorded.
    pub(crate) fn step_context(&self, node: Option<&NodeKey>) -> Option<crate::step::StepContext> {
        let store = self.store_path.clone()?;
        let (node, component) = match node {
            Some(n) => (n.name.clone(), Some(n.descriptor)),
            None => (SmolStr::default(), None),
        };
        Some(crate::step::StepContext {
            run: self.key.clone(),
            remote: self.remote_prefix(component, &node),
            node,
            monitor: component.map_or_else(Default::default, |c| crate::step::Monitoring::of(&c.options)),
            store: Some(store),
            busy_timeout: self.config.busy_timeout,
            run_dir: self.run_dir.clone(),
        })
    }

    /// Serves a queued `cache = true` node from an earlier run's outputs when its key matches;
    /// true when it did (the node is then `Cached`). Otherwise the key is kept for
    /// [`Run::save_cache`].
    fn lookup_cache(self: &Arc<Self>, node: &NodeKey) -> bool {
        let (index, descriptor) = (node.index, node.descriptor);
        let Some(store_path) = self.store_path.as_ref().filter(|_| descriptor.options.cache) else {
            return false;
        };
        let parts = [
            descriptor.name,
            descriptor.code_hash,
            descriptor.options.version.unwrap_or(""),
        ];
        // No key, no cache: the step runs and reports its own input errors.
        let Some(key) = self.input_key(index, &parts, |key| Invoke::Fingerprint(key), |_| true) else {
            return false;
        };
        self.lock().sched.set_cache_key(index, key.clone());
        // A refresh runs the step; its success overwrites the entry under the same key.
        if self.config.cache_refresh.applies_to(descriptor.name) {
            return false;
        }

        let hit = {
            let mut store = crate::sync::lock(&self.cache_store);
            if store.is_none() {
                *store = crate::store::RunStore::open_with(store_path, self.config.busy_timeout).ok();
            }
            store.as_ref().and_then(|s| s.cached(&key).ok().flatten())
        };
        let Some(records) = hit else { return false };
        let mut outputs = Vec::with_capacity(records.len());
        for r in &records {
            let Some(codec) = r
                .codec
                .as_deref()
                .and_then(|c| crate::transport::artifacts::codec_named(c, self.descriptor.name).ok())
            else {
                return false;
            };
            let missing = |e: &StepError| {
                crate::diag::warn(format_args!(
                    "step `{}`: its cached output `{}` is unreadable ({}); it is dropped from the cache and the step runs",
                    node.name, r.name, e.message
                ));
                if let Some(Err(e)) = crate::sync::lock(&self.cache_store)
                    .as_ref()
                    .map(|s| s.forget_cached(&key))
                {
                    crate::diag::warn(format_args!("{e}"));
                }
            };
            if object_storage::is_remote(&r.uri) {
                // Downloaded into this run's folder when first read, and checked whole then;
                // here only that it is there and not shorter than its payload (an expired or
                // deleted object would otherwise fail every later consumer).
                match object_storage::size(&r.uri) {
                    Ok(size) if size >= r.size.unwrap_or(0) => {}
                    Ok(size) => {
                        missing(&StepError::new(
                            ErrorKind::Codec,
                            format!("`{}` has {size} bytes, fewer than its payload", r.uri),
                        ));
                        return false;
                    }
                    Err(e) => {
                        missing(&e);
                        return false;
                    }
                }
                let path = self
                    .run_dir
                    .join("cache")
                    .join(blake3::hash(r.uri.as_bytes()).to_hex().as_str());
                outputs.push(ArtifactRef {
                    uri: Some(r.uri.clone()),
                    ..ArtifactRef::local(path, codec)
                });
                continue;
            }
            // Checked whole (length, checksum) before it is served: a corrupt artifact would
            // otherwise fail every later consumer, run after run, until the cache is cleared.
            let path = std::path::PathBuf::from(&r.uri);
            match crate::transport::artifacts::verify(&path) {
                Ok(header) => outputs.push(ArtifactRef {
                    header: Some(header),
                    ..ArtifactRef::local(path, codec)
                }),
                Err(e) => {
                    missing(&e);
                    return false;
                }
            }
        }
        self.serve(node, outputs)
    }

    /// A key of a queued node: `parts`, then its inputs as its job feeds them through `how`
    /// (hex BLAKE3). `None` when the node is not queued, `wanted` says no, another attempt holds
    /// its job, or an input cannot be read. The job is out of the run's lock while it hashes.
    fn input_key(
        &self,
        index: u32,
        parts: &[&str],
        how: for<'a> fn(&'a mut blake3::Hasher) -> Invoke<'a>,
        wanted: impl FnOnce(&Scheduler) -> bool,
    ) -> Option<String> {
        let mut job = {
            let mut st = self.lock();
            if st.sched.status(index) != NodeStatus::Queued || !wanted(&st.sched) {
                return None;
            }
            st.held[index as usize].job.take()?
        };
        let mut key = blake3::Hasher::new();
        for part in parts {
            key.update(&(part.len() as u64).to_le_bytes());
            key.update(part.as_bytes());
        }
        let fed = catch_unwind(AssertUnwindSafe(|| job(how(&mut key))));
        self.lock().held[index as usize].job = Some(job);
        matches!(fed, Ok(Ok(()))).then(|| key.finalize().to_hex().to_string())
    }

    /// Ends a queued node with outputs it did not compute (a cache hit, a step reused by a
    /// resumed run): `Cached`. False when they do not match its outputs.
    fn serve(self: &Arc<Self>, node: &NodeKey, outputs: Vec<ArtifactRef>) -> bool {
        if outputs.len() != node.descriptor.outputs.len() {
            return false;
        }
        let slots = self.output_slots(node.index);
        for ((slot, artifact), output) in slots.iter().zip(outputs).zip(node.descriptor.outputs) {
            self.record_output(&node.name, output, &artifact);
            slot.store(artifact, node.name.clone());
        }
        self.event(|sched, now| sched.cached(node.index, now));
        true
    }

    /// In a recorded local or remote run, records the key of what a queued node is given (its
    /// component's code and every input) once; in a resumed run, serves the node from what it
    /// wrote before when it finished then with the same key. True when it was served.
    fn identify(self: &Arc<Self>, node: &NodeKey) -> bool {
        if self.recorder.is_none() || self.mode == crate::config::Mode::Debug {
            return false; // debug mode keeps no outputs to reuse
        }
        let (index, descriptor) = (node.index, node.descriptor);
        let parts = [descriptor.name, descriptor.code_hash];
        // Once per node; without a key the step runs and reports its own input errors.
        let once = |sched: &Scheduler| sched.resume_key(index).is_none();
        let Some(key) = self.input_key(index, &parts, |key| Invoke::Identify(key), once) else {
            return false;
        };
        self.event(|sched, _| sched.set_resume_key(index, key.clone()));
        let Some(before) = self.same_before(node, &key) else {
            return false;
        };
        match self.outputs_before(node, before) {
            Some(outputs) => {
                tracing::info!(target: "pipeline", parent: &self.span, step = %node.name, "reused from before the resume");
                self.serve(node, outputs)
            }
            None => false,
        }
    }

    /// What a node of the resumed run wrote before, checked: the outputs recorded when it
    /// finished, or those its worker reported in a result file the dead controller never
    /// recorded. `None` when there is nothing whole to reuse.
    fn outputs_before(&self, node: &NodeKey, before: &PreviousNode) -> Option<Vec<ArtifactRef>> {
        let node_dir = crate::store::step_folder(&self.run_dir, &node.name);
        let from_file = |path: std::path::PathBuf| -> Option<ArtifactRef> {
            let header = crate::transport::artifacts::verify(&path).ok()?;
            let codec = crate::transport::artifacts::codec_named(&header.codec, self.descriptor.name).ok()?;
            Some(ArtifactRef {
                header: Some(header),
                ..ArtifactRef::local(path, codec)
            })
        };
        if matches!(before.status, NodeStatus::Completed | NodeStatus::Cached) {
            return node
                .descriptor
                .outputs
                .iter()
                .map(|output| {
                    let record = before.outputs.iter().find(|a| a.name == output.name)?;
                    if object_storage::is_remote(&record.uri) {
                        let codec =
                            crate::transport::artifacts::codec_named(record.codec.as_deref()?, self.descriptor.name)
                                .ok()?;
                        let path = node_dir.join("outputs").join(format!("{}.art", output.name));
                        return Some(ArtifactRef {
                            uri: Some(record.uri.clone()),
                            ..ArtifactRef::local(path, codec)
                        });
                    }
                    from_file(std::path::PathBuf::from(&record.uri))
                })
                .collect();
        }
        // Not recorded as finished: its worker may still have succeeded before the controller died.
        let result = std::fs::read(node_dir.join(format!("result-{}.json", before.attempts))).ok()?;
        let result: crate::worker::WorkerResult = serde_json::from_slice(&result).ok()?;
        if result.error.is_some() {
            return None;
        }
        node.descriptor
            .outputs
            .iter()
            .map(|output| from_file(crate::transport::artifacts::output_path(&node_dir, output.name)))
            .collect()
    }

    /// Whether the node was running, with the same code and inputs, when the controller this
    /// run resumes from died: its last attempt may still be live.
    pub(crate) fn was_running(&self, node: &NodeKey) -> bool {
        let Some(key) = self.lock().sched.resume_key(node.index).map(str::to_string) else {
            return false;
        };
        self.same_before(node, &key)
            .is_some_and(|before| before.status == NodeStatus::Running && before.attempts > 0)
    }

    /// The node as it was before the resume, if it had the same component code and resume key
    /// (the same inputs) then.
    fn same_before(&self, node: &NodeKey, key: &str) -> Option<&PreviousNode> {
        let before = self.previous.as_ref()?.nodes.get(&*node.name)?;
        (before.resume_key.as_deref() == Some(key) && before.code_hash == node.descriptor.code_hash).then_some(before)
    }

    /// See [`Executor::attachable`].
    pub(crate) fn attachable(&self, attempt_id: &str) -> bool {
        self.executor.attachable(attempt_id)
    }

    /// Attempts node `name` made before the run was resumed (its files are numbered after them).
    pub(crate) fn attempts_before(&self, name: &str) -> u32 {
        self.previous
            .as_ref()
            .and_then(|p| p.nodes.get(name))
            .map_or(0, |n| n.attempts)
    }

    /// Stores a finished `cache = true` node's outputs as artifacts (if they are not already)
    /// and records them under its cache key.
    fn save_cache(&self, node: &NodeKey) {
        let Some(recorder) = self.recorder.as_ref().filter(|_| node.descriptor.options.cache) else {
            return;
        };
        let Some(key) = self.lock().sched.cache_key(node.index).map(str::to_string) else {
            return;
        };
        let (name, descriptor) = (&node.name, node.descriptor);
        let slots = self.output_slots(node.index);
        let codec = self.descriptor.options.codec;
        let mut records = Vec::new();
        for (slot, output) in slots.iter().zip(descriptor.outputs) {
            let path =
                crate::transport::artifacts::output_path(&crate::store::step_folder(&self.run_dir, name), output.name);
            match slot.persist(&path, codec) {
                Ok(artifact) => {
                    let record = output_record(name, output, &artifact);
                    recorder.send(Event::Artifact {
                        run: self.key.to_string(),
                        record: Box::new(record.clone()),
                    });
                    records.push(record);
                }
                Err(e) => {
                    crate::diag::warn(format_args!("step `{name}` is not cached: {e}"));
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

    /// The log file of the node's current attempt (recorded at once, so that `pipeline logs
    /// --follow` finds a running attempt's log).
    pub(crate) fn set_log_path(self: &Arc<Self>, index: u32, path: std::path::PathBuf) {
        self.event(|sched, _| sched.set_log_path(index, path));
    }

    fn lock(&self) -> MutexGuard<'_, RunState> {
        // Callbacks and steps never run under this lock, so it is never poisoned by them.
        crate::sync::lock(&self.state)
    }

    /// Feeds one event to the scheduler, then applies the effects it produced.
    fn event<R>(self: &Arc<Self>, event: impl FnOnce(&mut Scheduler, SystemTime) -> R) -> R {
        let mut st = self.lock();
        let result = event(&mut st.sched, SystemTime::now());
        self.settle(st);
        result
    }

    fn rules(&self, descriptor: &'static ComponentDescriptor) -> StepRules {
        let options = &descriptor.options;
        StepRules {
            component: descriptor.name,
            parents: options.parents,
            retry: match options.retry {
                RetryPolicy::Never => self.descriptor.options.retry,
                policy => policy,
            },
            backoff: options.retry_backoff,
            continue_behaviour: options.continue_behaviour,
            callbacks: options.callbacks,
        }
    }

    /// Adds a node for a call of `descriptor` whose arguments come from `deps`; `build` makes
    /// its job and output slots once the node's name is known.
    pub(crate) fn add_node<H>(
        self: &Arc<Self>,
        descriptor: &'static ComponentDescriptor,
        deps: &[NodeRef],
        name: Option<&str>,
        build: impl FnOnce(NodeRef, &SmolStr) -> (H, Job, ErasedSlots),
    ) -> H {
        self.add_node_run_by(descriptor, deps, name, false, build)
    }

    /// [`Run::add_node`]; with `external`, the caller runs its attempt ([`External`]) and the
    /// executor never sees it.
    fn add_node_run_by<H>(
        self: &Arc<Self>,
        descriptor: &'static ComponentDescriptor,
        deps: &[NodeRef],
        name: Option<&str>,
        external: bool,
        build: impl FnOnce(NodeRef, &SmolStr) -> (H, Job, ErasedSlots),
    ) -> H {
        let rules = self.rules(descriptor);
        let mut st = self.lock();
        let index = st.sched.len() as u32;
        let name = st.sched.next_name(name.unwrap_or(descriptor.name));
        let (handles, job, outputs) = build(NodeRef { run: self.id, index }, &name.text);
        st.held.push(Held {
            descriptor,
            job: Some(job),
            outputs,
            worker: None,
            external,
        });
        let inputs: smallvec::SmallVec<[u32; 4]> = deps.iter().filter(|d| d.run == self.id).map(|d| d.index).collect();
        let before = self.attempts_before(&name.text);
        st.sched.add_node_read(name, rules, &inputs, before, SystemTime::now);
        self.settle_lazily(st);
        handles
    }

    /// Starts an attempt: a queued `cache = true` node is served from the cache if it can be;
    /// else the node becomes `Running` and its job is handed out, once the effects of that
    /// (the `queued -> running` callback among them) have been applied, so a step never runs
    /// before its callbacks have seen it start. `None` when the cache served it, when the node
    /// is already final (aborted while queued), or when another attempt holds the job.
    pub(crate) fn begin_attempt(self: &Arc<Self>, node: &NodeKey, cancellable: bool) -> Option<Attempt> {
        if self.identify(node) || self.lookup_cache(node) {
            return None;
        }
        let index = node.index;
        let mut st = self.lock();
        st.held[index as usize].job.as_ref()?;
        let grant = st.sched.attempt_started(index, SystemTime::now())?;
        let job = st.held[index as usize].job.take().expect("checked above");
        // Registered with the start, so a stop that comes after it finds the attempt.
        let cancel = cancellable.then(|| Arc::new(Cancel::default()));
        if cancel.is_some() {
            st.held[index as usize].worker().cancel = cancel.clone();
        }
        let attempt = Attempt { job, grant, cancel };
        // Only a status callback must see the start before the step runs; records need not.
        // Nothing else ends a running node before its attempt ends.
        if node.descriptor.options.callbacks.status_change.is_none() {
            // An in-process attempt's start may wait to be recorded (with its end, mostly):
            // nothing reads it from the store meanwhile but a live view, which the watchdog
            // serves. A worker's start is recorded at once: a resumed run reattaches to the
            // attempt its dead controller recorded as running.
            if cancellable {
                self.settle(st);
            } else {
                self.settle_lazily(st);
            }
            return Some(attempt);
        }
        // Not `applied + waiting`: a draining thread may hold taken effects not applied yet.
        let mark = st.sched.produced();
        self.settle(st);
        self.wait_applied(mark);
        let failed_meanwhile = self.lock().sched.status(index).is_terminal();
        if failed_meanwhile {
            // A callback panicked (or a stop came) before the step could start.
            self.end_attempt(
                node,
                attempt.job,
                Err(StepError::new(ErrorKind::Aborted, "the step did not start")),
            );
            return None;
        }
        Some(attempt)
    }

    /// Adds a node whose one attempt the caller runs here and now (a pipeline started from this
    /// run's body): it is queued and started at once, and ends with [`External::end`] (or as a
    /// crash when dropped). `None` when the run is stopping and the node was aborted at once.
    pub(crate) fn add_external(
        self: &Arc<Self>,
        descriptor: &'static ComponentDescriptor,
        name: &str,
    ) -> Option<External> {
        let key = self.add_node_run_by(descriptor, &[], Some(name), true, |node, name| {
            // Nothing to run, export or hash: the caller does the work, and a node without a
            // key is never served from the cache or reused on resume.
            let job: Job = Box::new(|how| match how {
                Invoke::Run { .. } => Ok(()),
                _ => Err(StepError::new(
                    ErrorKind::Setup,
                    "a nested pipeline has no inputs to write",
                )),
            });
            ((node.index, name.clone()), job, ErasedSlots::new())
        });
        let node = NodeKey {
            index: key.0,
            name: key.1,
            descriptor,
        };
        // Cancellable: a stop of this run reaches the nested run (`External::stops`).
        let attempt = self.begin_attempt(&node, true)?;
        Some(External {
            run: self.clone(),
            node,
            attempt: Some(attempt),
        })
    }

    /// Waits until `mark` effects have been applied.
    fn wait_applied(&self, mark: u64) {
        let mut st = self.lock();
        if st.applied >= mark {
            return;
        }
        st.watchers += 1;
        while st.applied < mark {
            st = self.progress.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.watchers -= 1;
    }

    /// Reports how an attempt ended. A success is cached first (when `cache = true`); the
    /// scheduler then decides: final, or another attempt (an [`Effect::Start`] again).
    /// Returns true when the node is final.
    pub(crate) fn end_attempt(self: &Arc<Self>, node: &NodeKey, job: Job, outcome: Result<(), StepError>) -> bool {
        let index = node.index;
        if outcome.is_ok() {
            self.save_cache(node);
        }
        let mut st = self.lock();
        st.sched.attempt_ended(index, outcome, SystemTime::now());
        let finished = st.sched.status(index).is_terminal();
        let held = &mut st.held[index as usize];
        if let Some(worker) = &mut held.worker {
            worker.cancel = None;
        }
        let spent = if finished {
            held.worker = None;
            Some(job)
        } else {
            st.held[index as usize].job = Some(job);
            None
        };
        self.settle(st);
        // A final node's job (and the inputs it holds) is dropped outside the lock.
        drop(spent);
        finished
    }

    /// The node's inputs as artifacts, if an earlier attempt wrote them.
    pub(crate) fn exported(&self, index: u32) -> Option<Vec<ArgArtifacts>> {
        self.lock().held[index as usize]
            .worker
            .as_ref()
            .and_then(|w| w.exported.clone())
    }

    /// Keeps the node's inputs as artifacts for its retries (dropped once it is final).
    pub(crate) fn keep_exported(&self, index: u32, inputs: Vec<ArgArtifacts>) {
        self.lock().held[index as usize].worker().exported = Some(inputs);
    }

    /// The node's output slots, to resolve from another process's artifacts.
    pub(crate) fn output_slots(&self, index: u32) -> ErasedSlots {
        self.lock().held[index as usize].outputs.clone()
    }

    /// Stops the run: nodes not started are aborted, running ones are stopped by their
    /// executor. Used for the pipeline's time limit and user stops.
    pub(crate) fn abort_run(self: &Arc<Self>, reason: String, mark: pipeline_core::StopMark) {
        self.event(|sched, now| sched.stop(reason, mark, now));
    }

    /// Blocks until no node is pending, queued or running and every effect (callbacks
    /// included) has been applied.
    pub(crate) fn wait_idle(self: &Arc<Self>) {
        // In debug mode the steps run while someone waits for them: this thread runs them.
        let _wanted = crate::value::demand::wait_for(self.id, &|| self.lock().idle());
        // Records that waited (none, mostly: a node's last ones come with its effects).
        self.send_waiting();
        let mut st = self.lock();
        st.idle_sleepers += 1;
        while !st.idle() {
            st = self.idle.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.idle_sleepers -= 1;
    }

    /// The `async` form of [`Run::wait_idle`].
    pub(crate) fn poll_idle(self: &Arc<Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.send_waiting();
        let mut st = self.lock();
        if st.idle() {
            return Poll::Ready(());
        }
        st.idle_wakers.push(cx.waker().clone());
        Poll::Pending
    }

    /// Stops the executor; called once the run is idle.
    pub(crate) fn shutdown(&self) {
        crate::value::demand::unregister(self.id);
        self.executor.shutdown();
    }

    /// The run's state as the body left it; `body_panicked` fails it.
    pub(crate) fn status(&self, body_panicked: bool) -> RunStatus {
        self.lock().sched.run_status(body_panicked)
    }

    /// A snapshot of the DAG as it stands.
    pub(crate) fn dag(&self) -> PipelineDag {
        self.lock().sched.dag()
    }

    /// The DAG of an ended run, built when first asked for: the run gives up its scheduler.
    pub(crate) fn final_dag(&self) -> Arc<dyn Fn() -> PipelineDag + Send + Sync> {
        let mut st = self.lock();
        let sched = std::mem::replace(&mut st.sched, Scheduler::new(false, false));
        Arc::new(move || sched.dag())
    }

    /// Names of the nodes in `status`-matching states, in creation order.
    pub(crate) fn node_names(&self, keep: impl Fn(NodeStatus) -> bool) -> Vec<String> {
        self.lock().sched.names_where(keep)
    }

    /// [`Run::settle`], except that records alone wait for the next effects (they go to the
    /// recorder with those) up to [`LAZY_RECORDS`] of them or [`LAZY_AGE`] for the oldest, as of
    /// the latest event; and the watchdog of a recorded run sends those still waiting at each
    /// poll ([`Run::send_waiting`]). For the paths every step takes (a node added, an
    /// in-process attempt started): most of their records go with the next effects anyway,
    /// and a drain of its own for each cost a tenth of a recorded step.
    fn settle_lazily<'a>(self: &'a Arc<Self>, st: MutexGuard<'a, RunState>) {
        let (records, waited) = st.sched.records_waiting();
        if st.sched.has_effects() || records >= LAZY_RECORDS || waited >= LAZY_AGE {
            self.settle(st);
        }
    }

    /// Sends the records waiting (and applies effects, if some came meanwhile), unless a
    /// drain is under way (it takes them). Called by the watchdog of a recorded run at each
    /// poll, and at the run's end.
    pub(crate) fn send_waiting(self: &Arc<Self>) {
        let st = self.lock();
        self.settle(st);
    }

    /// Applies the waiting effects, unless another thread already does (it will apply these
    /// too). Takes the caller's guard, so that an event and its effects need one lock.
    fn settle<'a>(self: &'a Arc<Self>, mut st: MutexGuard<'a, RunState>) {
        if st.draining || !st.sched.has_waiting() {
            return;
        }
        st.draining = true;
        // Effects run user callbacks and may block: never on an async runtime's worker thread.
        // A blocking-pool thread of ours applies them in place: handing them to another would
        // cost a wake-up per step.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !crate::sync::in_blocking() => {
                drop(st);
                let run = self.clone();
                crate::sync::blocking(&runtime, move || {
                    let st = run.lock();
                    run.drain(st)
                });
            }
            _ => self.drain(st),
        }
    }

    /// Applies effects in batches until none is left, by the thread that set `draining`.
    fn drain<'a>(self: &'a Arc<Self>, mut st: MutexGuard<'a, RunState>) {
        let mut batch = std::mem::take(&mut st.batch);
        // Only a recorded run has records: an unrecorded one does not touch their buffers.
        let mut records = self.recorder.is_some().then(|| std::mem::take(&mut st.records));
        loop {
            if let Some(records) = &mut records {
                st.sched.take_records(&mut records.taken);
                // A first record names its component: looked up now, under the lock.
                for record in &records.taken {
                    if record.node.parents.is_some() {
                        records.components.push(st.held[record.index as usize].descriptor);
                    }
                }
            }
            while let Some(effect) = st.sched.pop_effect() {
                // What an effect needs of the run's state is taken under the lock; the effect
                // itself is applied without it.
                let parts = match &effect {
                    Effect::Publish { index } | Effect::FailOutputs { index, .. } => Parts::Final {
                        slots: std::mem::take(&mut st.held[*index as usize].outputs),
                        job: st.held[*index as usize].job.take(),
                        name: st.sched.name(*index).clone(),
                    },
                    Effect::Start { index, .. } if st.held[*index as usize].external => Parts::None,
                    Effect::Start { index, .. } => Parts::Start(NodeKey {
                        index: *index,
                        name: st.sched.name(*index).clone(),
                        descriptor: st.held[*index as usize].descriptor,
                    }),
                    _ => Parts::None,
                };
                batch.push((effect, parts));
            }
            if batch.is_empty() && records.as_ref().is_none_or(|r| r.taken.is_empty()) {
                break;
            }
            drop(st);
            // The records first, at once (one push, one wake-up): each goes to the recorder
            // before the effects produced after it are applied (a step that waits for its
            // `parents`' records in the store starts with an effect that follows them). They
            // go as they are: the recorder makes the stored entries on its own thread.
            if let (Some(recorder), Some(records)) = (&self.recorder, records.as_mut())
                && !records.taken.is_empty()
            {
                recorder.send_nodes(&mut records.taken, &mut records.components);
            }
            let applied = batch.len() as u64;
            for (effect, parts) in batch.drain(..) {
                self.apply(effect, parts);
            }
            st = self.lock();
            st.applied += applied;
            if st.watchers > 0 {
                self.progress.notify_all();
            }
            if st.delayed > 0 {
                self.timers.notify_all();
            }
        }
        st.batch = batch;
        if let Some(records) = records {
            st.records = records;
        }
        st.draining = false;
        if st.idle() {
            let wakers = std::mem::take(&mut st.idle_wakers);
            // Counted under the lock: a thread that comes to wait after this sees the run idle.
            let sleepers = st.idle_sleepers > 0;
            drop(st);
            if sleepers {
                self.idle.notify_all();
            }
            wakers.into_iter().for_each(Waker::wake);
        }
    }

    fn apply(self: &Arc<Self>, effect: Effect, parts: Parts) {
        match effect {
            Effect::StatusChanged {
                index,
                callback,
                node,
                previous,
            } => {
                self.guarded(index, "status_change_callback", || callback(&node, previous));
            }
            Effect::PreExecute { index, callback, node } => {
                if let Some(go) = self.guarded(index, "pre_execute_callback", || callback(&node)) {
                    self.lock().sched.pre_checked(index, go, SystemTime::now());
                }
            }
            Effect::PostExecute { index, callback, node } => {
                self.guarded(index, "post_execute_callback", || callback(&node));
            }
            Effect::AskRetry {
                index,
                callback,
                node,
                retries,
            } => {
                if let Some(retry) = self.guarded(index, "retry_on_failure callback", || callback(&node, retries)) {
                    self.lock().sched.retry_decided(index, retry, SystemTime::now());
                }
            }
            Effect::Start { delay, .. } => {
                // A node whose caller runs it (a nested pipeline) is not the executor's.
                let Parts::Start(node) = parts else { return };
                if delay.is_zero() {
                    self.executor.submit(Lease::new(self.clone(), node));
                } else {
                    self.start_later(node, delay);
                }
            }
            Effect::Cancel { index, reason } => {
                let cancel = self.lock().held[index as usize].cancel();
                if let Some(cancel) = cancel {
                    cancel.request(&reason);
                }
            }
            Effect::Publish { .. } => {
                let Parts::Final { slots, job, name } = parts else {
                    unreachable!("taken for this effect")
                };
                drop(job);
                for slot in slots {
                    if !slot.publish() {
                        slot.fail(HandleError::Failed {
                            step: name.to_string(),
                            error: StepError::new(ErrorKind::Setup, "the step completed without this output"),
                        });
                    }
                }
            }
            Effect::FailOutputs { error, .. } => {
                let Parts::Final { slots, job, .. } = parts else {
                    unreachable!("taken for this effect")
                };
                drop(job);
                for slot in slots {
                    slot.fail((*error).clone());
                }
            }
        }
    }

    /// Hands the node's next attempt to the executor once `delay` has passed, from a thread of
    /// its own; a node that became final meanwhile (a stop aborts a waiting retry) is dropped.
    fn start_later(self: &Arc<Self>, node: NodeKey, delay: std::time::Duration) {
        let run = self.clone();
        let now = node.clone();
        let wait = move || {
            let deadline = std::time::Instant::now() + delay;
            let mut st = run.lock();
            st.delayed += 1;
            let due = loop {
                if st.sched.status(node.index).is_terminal() {
                    break false;
                }
                let now = std::time::Instant::now();
                if now >= deadline {
                    break true;
                }
                st = run
                    .timers
                    .wait_timeout(st, deadline - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            };
            st.delayed -= 1;
            drop(st);
            if due {
                run.executor.submit(Lease::new(run.clone(), node));
            }
        };
        // No thread for the wait: the retry starts now rather than never.
        if let Err(e) = std::thread::Builder::new().name("pipeline-retry".into()).spawn(wait) {
            crate::diag::warn(format_args!("a retry starts without its backoff: {e}"));
            self.executor.submit(Lease::new(self.clone(), now));
        }
    }

    /// Calls a user callback of node `index`; a panic fails the node (if it is not final yet)
    /// instead of unwinding through the run, and gives `None`.
    fn guarded<R>(&self, index: u32, which: &str, callback: impl FnOnce() -> R) -> Option<R> {
        match catch_unwind(AssertUnwindSafe(callback)) {
            Ok(value) => Some(value),
            Err(payload) => {
                let message = StepError::from_panic(&*payload).message;
                let late = self
                    .lock()
                    .sched
                    .callback_panicked(index, which, &message, SystemTime::now());
                if let Some(late) = late {
                    crate::diag::warn(format_args!("{late}"));
                }
                None
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
    let header = (artifact.header.clone()).or_else(|| crate::transport::artifacts::read_header(&artifact.path).ok());
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
