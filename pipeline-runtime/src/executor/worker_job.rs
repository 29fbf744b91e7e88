//! What the local and remote executors share: a step runs as a worker process of the pipeline's
//! own binary, given a manifest; arguments and results travel as artifacts in the run's folder;
//! each attempt's output goes to a log file (and is echoed with a step prefix). Only how the
//! worker is started, watched and stopped differs: that is a [`Backend`].

use super::Executor;
use crate::artifacts::ArtifactRef;
use crate::call::Invoke;
use crate::engine::{Attempt, Run};
use crate::handle::ExportSink;
use crate::sync::lock;
use crate::worker::{Manifest, WorkerResult};
use pipeline_core::{Codec, ComponentDescriptor, ErrorKind, StepError};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// Lines of a failed worker's log quoted in its error.
const LOG_TAIL: usize = 20;

/// One attempt, ready to start: its manifest is written.
pub(crate) struct WorkerJob<'a> {
    pub(crate) step: &'a str,
    pub(crate) descriptor: &'static ComponentDescriptor,
    pub(crate) manifest_path: PathBuf,
    /// The manifest itself, for workers that do not share this filesystem.
    pub(crate) manifest_json: String,
    /// A unique name for this attempt (run, step, attempt number).
    pub(crate) attempt_id: String,
}

/// How an attempt's worker ended.
pub(crate) enum Ended {
    /// It ended by itself; `success` when it exited cleanly; `how` describes the exit.
    Exited { success: bool, how: String },
    /// It was stopped: a cancel, a time limit.
    Stopped(String),
}

/// Where workers run.
pub(crate) trait Backend: Send + Sync + 'static {
    /// Starts the worker for `job`, forwards its output to `log`, and waits for it to end, for
    /// `cancel` or for `limit`, stopping it in the last two cases.
    fn execute(
        &self,
        job: &WorkerJob<'_>,
        log: &LogSink,
        cancel: &Cancel,
        limit: Option<Duration>,
    ) -> impl std::future::Future<Output = Result<Ended, StepError>> + Send;
}

/// A request to stop a running node.
#[derive(Default)]
pub(crate) struct Cancel {
    notify: Notify,
    reason: Mutex<Option<String>>,
}

impl Cancel {
    /// Resolves once a stop is requested; gives the reason.
    pub(crate) async fn requested(&self) -> String {
        self.notify.notified().await;
        lock(&self.reason).clone().unwrap_or_else(|| "stopped".into())
    }
}

/// The parts of an executor that do not depend on the backend.
pub(crate) struct Context<B> {
    pub(crate) backend: B,
    pub(crate) run_dir: PathBuf,
    pub(crate) codec: Codec,
    pub(crate) pipeline: &'static str,
    /// The pipeline's `output_uri`.
    pub(crate) output_uri: Option<&'static str>,
    echo: bool,
    permits: Semaphore,
    running: Mutex<HashMap<u32, Arc<Cancel>>>,
    /// A node's exported inputs, kept between its attempts.
    exported: Mutex<HashMap<u32, Vec<ArtifactRef>>>,
}

/// An executor of worker processes on a small tokio runtime of its own.
pub(crate) struct WorkerExecutor<B> {
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    ctx: Arc<Context<B>>,
}

impl<B: Backend> WorkerExecutor<B> {
    pub(crate) fn start(
        runtime: tokio::runtime::Runtime,
        backend: B,
        pipeline: &'static pipeline_core::PipelineDescriptor,
        run_dir: PathBuf,
        max_parallel: usize,
    ) -> std::io::Result<Self> {
        let codec = pipeline.options.codec;
        let output_uri = pipeline.options.output_uri;
        let pipeline = pipeline.name;
        std::fs::create_dir_all(&run_dir).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot create the run folder `{}`: {e}", run_dir.display()),
            )
        })?;
        let echo = std::env::var("PIPELINE_LOG_ECHO").map_or(true, |v| v != "0");
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            ctx: Arc::new(Context {
                backend,
                run_dir,
                codec,
                pipeline,
                output_uri,
                echo,
                permits: Semaphore::new(max_parallel.max(1)),
                running: Mutex::new(HashMap::new()),
                exported: Mutex::new(HashMap::new()),
            }),
        })
    }
}

/// A multi-thread runtime of two workers for an executor.
pub(crate) fn runtime(name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
}

impl<B: Backend> Executor for WorkerExecutor<B> {
    fn submit(&self, run: Arc<Run>, index: u32) {
        self.handle.spawn(run_node(self.ctx.clone(), run, index));
    }

    fn cancel(&self, index: u32, reason: &str) {
        let cancel = lock(&self.ctx.running).get(&index).cloned();
        if let Some(cancel) = cancel {
            *lock(&cancel.reason) = Some(reason.to_string());
            cancel.notify.notify_one();
        }
    }

    fn shutdown(&self) {
        if let Some(runtime) = lock(&self.runtime).take() {
            // Every node has ended when this is called; nothing is left to wait for.
            runtime.shutdown_background();
        }
    }
}

/// Runs one attempt of node `index` (the scheduler starts a retry as a new attempt). Everything
/// that may block (the cache, the run's reports) goes to the blocking pool.
async fn run_node<B: Backend>(ctx: Arc<Context<B>>, run: Arc<Run>, index: u32) {
    let cancel = Arc::new(Cancel::default());
    lock(&ctx.running).insert(index, cancel.clone());
    let _permit = ctx.permits.acquire().await.expect("the semaphore is never closed");
    let starting = run.clone();
    let prepared = tokio::task::spawn_blocking(move || starting.begin_attempt(index)).await;
    if let Ok(Some(mut attempt)) = prepared {
        let (name, descriptor) = run.node_info(index);
        let node_dir = ctx.run_dir.join(&*name);
        // Inputs are written once per node, whatever the retries.
        let mut inputs = lock(&ctx.exported).remove(&index);
        let outcome = attempt_in_worker(
            &ctx,
            &run,
            index,
            &name,
            descriptor,
            &node_dir,
            &mut attempt,
            &mut inputs,
            &cancel,
        )
        .await;
        if let Some(inputs) = inputs {
            // Put back before the scheduler can start a retry.
            lock(&ctx.exported).insert(index, inputs);
        }
        let ending = run.clone();
        let finished = tokio::task::spawn_blocking(move || ending.end_attempt(index, attempt, outcome))
            .await
            .unwrap_or(true);
        if finished {
            lock(&ctx.exported).remove(&index);
        }
    }
    let mut running = lock(&ctx.running);
    // A retry's task may already have put its own cancel there.
    if running.get(&index).is_some_and(|c| Arc::ptr_eq(c, &cancel)) {
        running.remove(&index);
    }
}

#[allow(clippy::too_many_arguments)]
async fn attempt_in_worker<B: Backend>(
    ctx: &Context<B>,
    run: &Arc<Run>,
    index: u32,
    name: &Arc<str>,
    descriptor: &'static ComponentDescriptor,
    node_dir: &Path,
    attempt: &mut Attempt,
    inputs: &mut Option<Vec<ArtifactRef>>,
    cancel: &Cancel,
) -> Result<(), StepError> {
    let setup = |what: &str, e: &dyn std::fmt::Display| StepError::new(ErrorKind::Setup, format!("{what}: {e}"));
    if inputs.is_none() {
        let remote = remote_prefix(ctx, run, descriptor, name).map(|p| crate::object_storage::join(&p, &["inputs"]));
        *inputs = Some(export_inputs(ctx.codec, node_dir, remote, attempt).await?);
    }
    let inputs = inputs.as_ref().expect("exported above");
    let number = attempt.number();
    let outputs: Vec<PathBuf> = descriptor
        .outputs
        .iter()
        .map(|o| crate::artifacts::output_path(node_dir, o.name))
        .collect();
    // With an object-storage `output_uri`, outputs and the result go there too.
    let remote = remote_prefix(ctx, run, descriptor, name);
    let output_uris: Vec<Option<String>> = descriptor
        .outputs
        .iter()
        .map(|o| {
            remote
                .as_ref()
                .map(|p| crate::object_storage::join(p, &["outputs", &format!("{}.art", o.name)]))
        })
        .collect();
    let manifest = Manifest {
        pipeline: ctx.pipeline.to_string(),
        component: descriptor.name.to_string(),
        code_hash: descriptor.code_hash.to_string(),
        codec: ctx.codec.name().to_string(),
        inputs: inputs.iter().map(|a| a.path.clone()).collect(),
        outputs: outputs.clone(),
        result: node_dir.join(format!("result-{number}.json")),
        context: run.step_context(Some(index)),
        input_uris: inputs.iter().map(|a| a.uri.clone()).collect(),
        output_uris: output_uris.clone(),
        result_uri: remote
            .as_ref()
            .map(|p| crate::object_storage::join(p, &[&format!("result-{number}.json")])),
    };
    let manifest_path = node_dir.join(format!("manifest-{number}.json"));
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| setup("cannot encode the manifest", &e))?;
    std::fs::create_dir_all(node_dir).map_err(|e| setup("cannot create the step folder", &e))?;
    let _ = std::fs::remove_file(&manifest.result);
    std::fs::write(&manifest_path, bytes).map_err(|e| setup("cannot write the manifest", &e))?;

    let log_path = node_dir.join(format!("attempt-{number}.log"));
    run.set_log_path(index, log_path.clone());
    let file = std::fs::File::create(&log_path).map_err(|e| setup("cannot create the step log", &e))?;
    let log = LogSink {
        prefix: ctx.echo.then(|| format!("[{name}]")),
        inner: Mutex::new(Log {
            file,
            tail: VecDeque::new(),
        }),
    };
    let job = WorkerJob {
        step: name,
        descriptor,
        manifest_path,
        manifest_json: serde_json::to_string(&manifest).map_err(|e| setup("cannot encode the manifest", &e))?,
        attempt_id: format!("{}-{name}-{number}", run.key),
    };
    let ended = ctx
        .backend
        .execute(&job, &log, cancel, descriptor.options.time_limit)
        .await?;
    let tail: Vec<String> = lock(&log.inner).tail.iter().cloned().collect();

    match ended {
        Ended::Stopped(reason) => Err(StepError::new(ErrorKind::Aborted, reason)),
        Ended::Exited { success, how } => {
            if let Some(uri) = &manifest.result_uri {
                // A missing result is reported below as a crash, with the log's tail.
                let _ = crate::object_storage::download(uri, &manifest.result);
            }
            match std::fs::read(&manifest.result)
                .ok()
                .and_then(|b| serde_json::from_slice::<WorkerResult>(&b).ok())
            {
                Some(WorkerResult { error: Some(error) }) => Err(error),
                Some(WorkerResult { error: None }) if success => {
                    let (_, slots) = run.output_slots(index);
                    for (((slot, path), uri), output) in
                        slots.iter().zip(outputs).zip(output_uris).zip(descriptor.outputs)
                    {
                        let artifact = ArtifactRef {
                            path,
                            codec: ctx.codec,
                            uri,
                        };
                        run.record_output(name, output, &artifact);
                        slot.store(artifact, name.clone());
                    }
                    Ok(())
                }
                _ => Err(StepError {
                    kind: ErrorKind::Crash,
                    message: format!("the worker {how}; log: {}", log_path.display()),
                    causes: tail,
                }),
            }
        }
    }
}

/// Where a step's artifacts go in object storage: `<output_uri>/<run>/<step>`, with the
/// component's `output_uri` before the pipeline's; `None` for the state folder.
fn remote_prefix<B>(ctx: &Context<B>, run: &Run, descriptor: &ComponentDescriptor, step: &str) -> Option<String> {
    let base = descriptor.options.output_uri.or(ctx.output_uri)?;
    crate::object_storage::is_remote(base).then(|| crate::object_storage::join(base, &[&run.key, step]))
}

/// The message for an attempt stopped at its time limit.
pub(crate) fn time_limit_message(limit: Option<Duration>) -> String {
    format!(
        "time limit of {} exceeded; the worker was killed",
        pipeline_core::dag::format_duration(limit.unwrap_or_default())
    )
}

/// Sleeps for `limit`, or forever without one.
pub(crate) async fn sleep_or_never(limit: Option<Duration>) {
    match limit {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Writes the step's arguments as artifacts (once per node, whatever the retries).
async fn export_inputs(
    codec: Codec,
    node_dir: &Path,
    remote: Option<String>,
    attempt: &mut Attempt,
) -> Result<Vec<ArtifactRef>, StepError> {
    let mut job = std::mem::replace(&mut attempt.job, Box::new(|_| Ok(())));
    let mut sink = ExportSink {
        dir: node_dir.join("inputs"),
        codec,
        remote,
        inputs: Vec::new(),
    };
    // Encoding may be large and reading a parent's value may block: keep it off the runtime.
    let (job, sink, outcome) = tokio::task::spawn_blocking(move || {
        let outcome = job(Invoke::Export(&mut sink));
        (job, sink, outcome)
    })
    .await
    .map_err(|e| StepError::new(ErrorKind::Setup, format!("writing the inputs panicked: {e}")))?;
    attempt.job = job;
    outcome.map(|()| sink.inputs)
}

struct Log {
    file: std::fs::File,
    tail: VecDeque<String>,
}

/// Where a worker's output lines go: the attempt's log file, the tail kept for errors, and
/// (unless `PIPELINE_LOG_ECHO=0`) stderr with the step's name in front.
pub(crate) struct LogSink {
    prefix: Option<String>,
    inner: Mutex<Log>,
}

impl LogSink {
    pub(crate) fn line(&self, line: &str) {
        use std::io::Write;
        if let Some(prefix) = &self.prefix {
            eprintln!("{prefix} {line}");
        }
        let mut log = lock(&self.inner);
        let _ = writeln!(log.file, "{line}");
        if log.tail.len() == LOG_TAIL {
            log.tail.pop_front();
        }
        log.tail.push_back(line.to_string());
    }
}
