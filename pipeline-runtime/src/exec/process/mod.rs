//! What the local and remote executors share: a step runs as a worker process of the pipeline's
//! own binary, given a manifest; arguments and results travel as artifacts in the run's folder;
//! each attempt's output goes to a log file (and is echoed with a step prefix). Only how the
//! worker is started, watched and stopped differs: that is a [`Backend`].

pub(crate) mod local;
#[cfg(feature = "ray")]
pub(crate) mod ray;
#[cfg(feature = "ray")]
pub(crate) mod runner;

use super::{AttemptSpec, Cancel, Executor, Lease, Outcome, Work, WorkKind};
use crate::sync::lock;
use crate::transport::artifacts::ArgArtifacts;
use crate::transport::artifacts::ArtifactRef;
use crate::transport::object_storage;
use crate::worker::{Manifest, ManifestArtifact, ManifestInput, WorkerResult};
use pipeline_core::artifact::ArtifactHeader;
use pipeline_core::{ComponentDescriptor, ErrorKind, StepError};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// Lines of a failed worker's log quoted in its error.
const LOG_TAIL: usize = 20;

/// One attempt, ready to start: its manifest is written.
#[cfg_attr(not(feature = "ray"), allow(dead_code))] // a subprocess needs only the manifest's path
pub(crate) struct WorkerJob<'a> {
    pub(crate) step: &'a str,
    pub(crate) descriptor: &'static ComponentDescriptor,
    pub(crate) manifest_path: &'a std::path::Path,
    /// The manifest itself, for workers that do not share this filesystem.
    pub(crate) manifest_json: &'a str,
    /// A unique name for this attempt (run, step, attempt number).
    pub(crate) attempt_id: &'a str,
    /// An earlier controller of this run started it, and it is still live: wait for it.
    pub(crate) reattach: bool,
    /// The most bytes of output kept.
    pub(crate) log_cap: u64,
}

/// How an attempt's worker ended.
pub(crate) enum Ended {
    /// It ended by itself; `success` when it exited cleanly; `how` describes the exit;
    /// `signalled` when a signal ended it (it then had no chance to leave a result).
    Exited {
        success: bool,
        how: String,
        signalled: bool,
    },
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

    /// Whether the worker of attempt `attempt_id` is still running or has succeeded (see
    /// [`Executor::attachable`]).
    fn attachable(&self, _attempt_id: &str) -> impl std::future::Future<Output = bool> + Send + 'static {
        std::future::ready(false)
    }

    /// Said after "its result file cannot be read", when a worker of this backend may not see
    /// the controller's files.
    fn missing_result_hint(&self) -> &'static str {
        ""
    }
}

/// The parts of an executor that do not depend on the backend.
pub(crate) struct Context<B> {
    pub(crate) backend: B,
    echo: bool,
    /// The most bytes an attempt's log file keeps.
    log_cap: u64,
    permits: Arc<Semaphore>,
}

/// An executor of worker processes on a small tokio runtime of its own.
pub(crate) struct WorkerExecutor<B> {
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    ctx: Arc<Context<B>>,
}

impl<B: Backend> WorkerExecutor<B> {
    /// Runs at most `max_parallel` attempts at once on `runtime`; their logs keep at most
    /// `log_cap` bytes each.
    pub(crate) fn start(runtime: tokio::runtime::Runtime, backend: B, max_parallel: usize, log_cap: u64) -> Self {
        let echo = std::env::var("PIPELINE_LOG_ECHO").map_or(true, |v| v != "0");
        Self {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            ctx: Arc::new(Context {
                backend,
                echo,
                log_cap,
                permits: Arc::new(Semaphore::new(max_parallel.max(1))),
            }),
        }
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
    fn submit(&self, lease: Lease) {
        let ctx = self.ctx.clone();
        // With a place free, the attempt begins at once where it may block: after the end
        // that made it ready, on that end's thread, which starts its worker too. Every thread
        // between a worker's end and the next one's start would add a wake-up to each step.
        if let Ok(place) = ctx.permits.clone().try_acquire_owned() {
            let handle = self.handle.clone();
            crate::sync::soon_blocking(&self.handle, move || {
                if let Some(started) = start(&ctx, lease) {
                    let _context = handle.enter();
                    crate::sync::spawn_polled(&handle, watch(ctx, started, place));
                }
            });
            return;
        }
        self.handle.spawn(async move {
            let place = ctx
                .permits
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let handle = tokio::runtime::Handle::current();
            let begun = crate::sync::blocking(&handle, {
                let ctx = ctx.clone();
                move || start(&ctx, lease)
            })
            .await;
            if let Ok(Some(started)) = begun {
                watch(ctx, started, place).await;
            }
        });
    }

    fn attachable(&self, attempt_id: &str) -> bool {
        crate::sync::wait_on(&self.handle, self.ctx.backend.attachable(attempt_id)).unwrap_or(false)
    }

    fn shutdown(&self) {
        if let Some(runtime) = lock(&self.runtime).take() {
            // Every node has ended when this is called; nothing is left to wait for.
            runtime.shutdown_background();
        }
    }
}

/// An attempt begun, its worker ready to start (or the error that kept it from being ready).
struct Started {
    lease: Lease,
    spec: AttemptSpec,
    inputs: Vec<ArgArtifacts>,
    prepared: Result<Prepared, StepError>,
}

/// Begins the lease's attempt (the cache, the run's callbacks) and writes its manifest: all
/// of it may block, so it runs where blocking is allowed. `None` when there is nothing to run.
fn start<B: Backend>(ctx: &Context<B>, mut lease: Lease) -> Option<Started> {
    let (spec, work) = lease.begin(WorkKind::Artifacts)?;
    let Work::Artifacts(inputs) = work else {
        unreachable!("the lease hands out the kind of work asked for")
    };
    let prepared = spec.span.in_scope(|| prepare(ctx, &spec, &inputs));
    Some(Started {
        lease,
        spec,
        inputs,
        prepared,
    })
}

/// Runs a started attempt's worker; then, where it may block, reads its result, ends the
/// lease and gives its place back (the engine starts a retry as a new lease).
async fn watch<B: Backend>(ctx: Arc<Context<B>>, started: Started, place: tokio::sync::OwnedSemaphorePermit) {
    let Started {
        lease,
        spec,
        inputs,
        prepared,
    } = started;
    let ran = match prepared {
        Ok(prepared) => {
            let ended = execute(&ctx, &spec, &prepared).instrument(spec.span.clone()).await;
            Ok((prepared, ended))
        }
        Err(e) => Err(e),
    };
    // Reading the result and ending the lease may block (the run's callbacks): this thread
    // hands its other tasks to another first, then goes on to begin what the end makes ready.
    crate::sync::block_here(move || {
        let result = spec
            .span
            .in_scope(|| ran.and_then(|(prepared, ended)| finish(&ctx, &spec, prepared, ended?)));
        lease.end(Outcome {
            work: Work::Artifacts(inputs),
            result,
        });
        // Given back once the node's end is stamped: no recorded start of another step falls
        // within it beyond the executor's limit.
        drop(place);
    });
}

/// A worker ready to start: its manifest written, its log open.
struct Prepared {
    manifest: Manifest,
    manifest_path: PathBuf,
    manifest_json: String,
    outputs: Vec<PathBuf>,
    output_uris: Vec<Option<String>>,
    log: LogSink,
}

/// Writes an attempt's manifest and opens its log.
fn prepare<B: Backend>(ctx: &Context<B>, spec: &AttemptSpec, inputs: &[ArgArtifacts]) -> Result<Prepared, StepError> {
    let setup = |what: &str, e: &dyn std::fmt::Display| StepError::new(ErrorKind::Setup, format!("{what}: {e}"));
    let (descriptor, node_dir, number, name) = (spec.descriptor, &spec.worker().node_dir, spec.number, &spec.step);
    let outputs: Vec<PathBuf> = descriptor
        .outputs
        .iter()
        .map(|o| crate::transport::artifacts::output_path(node_dir, o.name))
        .collect();
    // With an object-storage `output_uri`, outputs and the result go there too.
    let remote = spec.worker().remote_prefix.as_ref();
    let output_uris: Vec<Option<String>> = descriptor
        .outputs
        .iter()
        .map(|o| remote.map(|p| object_storage::join(p, &["outputs", &format!("{}.art", o.name)])))
        .collect();
    let manifest = Manifest {
        pipeline: spec.pipeline.to_string(),
        component: descriptor.name.to_string(),
        code_hash: descriptor.code_hash.to_string(),
        codec: spec.codec.name().to_string(),
        inputs: inputs.iter().map(manifest_input).collect(),
        outputs: outputs.clone(),
        result: node_dir.join(format!("result-{number}.json")),
        // A worker never opens the run store: its reports come back with its result.
        context: spec
            .context
            .clone()
            .map(|cx| crate::step::StepContext { store: None, ..*cx }),
        output_uris: output_uris.clone(),
        result_uri: remote.map(|p| object_storage::join(p, &[&format!("result-{number}.json")])),
        state_dir: Some(spec.worker().state_dir.clone()),
        spin: false,
        scratch: None,
    };
    let manifest_path = node_dir.join(format!("manifest-{number}.json"));
    // Encoded once: the file for a worker on this machine, the same text for one elsewhere.
    let manifest_json = serde_json::to_string(&manifest).map_err(|e| setup("cannot encode the manifest", &e))?;
    // A re-attached worker has its manifest, and may be writing its result right now.
    if !spec.worker().reattach {
        std::fs::create_dir_all(node_dir).map_err(|e| setup("cannot create the step folder", &e))?;
        let _ = std::fs::remove_file(&manifest.result);
        std::fs::write(&manifest_path, &manifest_json).map_err(|e| setup("cannot write the manifest", &e))?;
    }

    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&spec.worker().log_path)
        .map_err(|e| setup("cannot create the step log", &e))?;
    let log = LogSink {
        prefix: ctx.echo.then(|| format!("[{name}]")),
        inner: Mutex::new(Log {
            file,
            tail: VecDeque::new(),
            spilling: None,
            written: 0,
            // Room for the line that says what was dropped, and some output.
            cap: ctx.log_cap.max(MIN_LOG_CAP),
            dropped: 0,
            stopped: false,
        }),
    };
    Ok(Prepared {
        manifest,
        manifest_path,
        manifest_json,
        outputs,
        output_uris,
        log,
    })
}

/// Starts the worker through the backend and waits for it to end.
async fn execute<B: Backend>(ctx: &Context<B>, spec: &AttemptSpec, prepared: &Prepared) -> Result<Ended, StepError> {
    let job = WorkerJob {
        step: &spec.step,
        descriptor: spec.descriptor,
        manifest_path: &prepared.manifest_path,
        manifest_json: &prepared.manifest_json,
        attempt_id: &spec.worker().attempt_id,
        reattach: spec.worker().reattach,
        log_cap: ctx.log_cap,
    };
    let never = Cancel::default();
    let cancel = spec.cancel.as_deref().unwrap_or(&never);
    ctx.backend.execute(&job, &prepared.log, cancel, spec.limit).await
}

/// Reads the result of a worker that ended: its output artifacts, or why it failed.
fn finish<B: Backend>(
    ctx: &Context<B>,
    spec: &AttemptSpec,
    prepared: Prepared,
    ended: Ended,
) -> Result<Vec<ArtifactRef>, StepError> {
    let Prepared {
        manifest,
        outputs,
        output_uris,
        log,
        ..
    } = prepared;
    let tail: Vec<String> = lock(&log.inner).tail.iter().cloned().collect();

    match ended {
        Ended::Stopped(reason) => Err(StepError::new(ErrorKind::Aborted, reason)),
        Ended::Exited {
            success,
            how,
            signalled,
        } => {
            // Why there is no result, when there is none: said in the error below.
            let mut missing = None;
            if let Some(uri) = &manifest.result_uri
                && let Err(e) = object_storage::download(uri, &manifest.result)
            {
                missing = Some(format!("its result could not be fetched: {e}"));
            }
            let result = std::fs::read(&manifest.result)
                .map_err(|e| {
                    let hint = ctx.backend.missing_result_hint();
                    // No file and nothing to add: the exit says it all ("without a result").
                    if e.kind() != std::io::ErrorKind::NotFound || !hint.is_empty() {
                        missing.get_or_insert_with(|| {
                            format!(
                                "its result file `{}` cannot be read ({e}){hint}",
                                manifest.result.display()
                            )
                        });
                    }
                })
                .ok()
                .and_then(|b| {
                    serde_json::from_slice::<WorkerResult>(&b)
                        .map_err(|e| missing = Some(format!("its result file is not valid: {e}")))
                        .ok()
                })
                .map(|mut result| {
                    if let Some(cx) = &spec.context {
                        crate::step::forward(&cx.run, std::mem::take(&mut result.reports));
                    }
                    result
                });
            match result {
                Some(WorkerResult { error: Some(error), .. }) => Err(error),
                Some(WorkerResult {
                    error: None,
                    outputs: written,
                    ..
                }) if success => Ok(outputs
                    .into_iter()
                    .zip(output_uris)
                    .enumerate()
                    .map(|(i, (path, uri))| ArtifactRef {
                        path,
                        codec: spec.codec,
                        uri,
                        // What the worker wrote: the controller need not reopen the file.
                        header: written.get(i).cloned().flatten().map(|m| ArtifactHeader {
                            codec: spec.codec.name().to_string(),
                            type_name: m.type_name,
                            length: m.length,
                            checksum: m.checksum,
                        }),
                    })
                    .collect()),
                _ => {
                    // A worker that exited by itself should have left a result: say what
                    // happened to it. One that a signal ended had no chance to.
                    let missing = missing.filter(|_| !signalled);
                    let missing = missing.map_or_else(String::new, |m| format!(", but {m}"));
                    Err(StepError {
                        kind: ErrorKind::Crash,
                        message: format!("the worker {how}{missing}; log: {}", spec.worker().log_path.display()),
                        causes: tail,
                    })
                }
            }
        }
    }
}

/// How the manifest names one argument's artifacts.
fn manifest_input(input: &ArgArtifacts) -> ManifestInput {
    let artifact = |a: &ArtifactRef| ManifestArtifact {
        path: a.path.clone(),
        uri: a.uri.clone(),
    };
    match input {
        ArgArtifacts::One(a) => ManifestInput::Artifact(artifact(a)),
        ArgArtifacts::Elements(elements) => ManifestInput::Elements(elements.iter().map(artifact).collect()),
    }
}

/// Runs `work` until it ends, or until the attempt is cancelled or reaches its time limit;
/// `Err` says why it was stopped (the caller then stops the worker).
pub(crate) async fn unless_stopped<T>(
    work: impl std::future::Future<Output = T>,
    cancel: &Cancel,
    limit: Option<Duration>,
) -> Result<T, String> {
    tokio::select! {
        value = work => Ok(value),
        reason = cancel.requested() => Err(reason),
        () = sleep_or_never(limit) => Err(time_limit_message(limit)),
    }
}

/// The message for an attempt stopped at its time limit.
fn time_limit_message(limit: Option<Duration>) -> String {
    format!(
        "time limit of {} exceeded; the worker was killed",
        pipeline_core::dag::format_duration(limit.unwrap_or_default())
    )
}

/// How much longer than its time limit a step may take to start on a cluster. Ray starts a
/// process for a job (its supervisor) or for a task (a worker) and sets up its environment
/// first: seconds on a busy machine, which are not the step's time.
#[cfg(feature = "ray")]
const START_ALLOWANCE: Duration = Duration::from_secs(20);

/// Sleeps until a step that has not started on the cluster is given up: its limit and
/// [`START_ALLOWANCE`] after it was handed to the cluster; never without a limit. Returns why.
#[cfg(feature = "ray")]
async fn not_started_in_time(limit: Option<Duration>) -> String {
    sleep_or_never(limit.map(|l| l + START_ALLOWANCE)).await;
    format!(
        "time limit of {} exceeded before the step started: Ray had not started it {} s after \
         the limit (is a node of its queue free?)",
        pipeline_core::dag::format_duration(limit.unwrap_or_default()),
        START_ALLOWANCE.as_secs()
    )
}

/// Sleeps for `limit`, or forever without one.
async fn sleep_or_never(limit: Option<Duration>) {
    match limit {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

struct Log {
    file: std::fs::File,
    tail: VecDeque<String>,
    /// How a line being written in pieces starts, for display.
    spilling: Option<String>,
    /// The file's length.
    written: u64,
    /// The most the file keeps.
    cap: u64,
    /// Bytes of output dropped from the file's start so far.
    dropped: u64,
    /// The file could not be trimmed: nothing more is written to it.
    stopped: bool,
}

impl Log {
    /// Appends to the file; past the cap, keeps only its newest part.
    fn write(&mut self, bytes: &[u8]) {
        use std::io::Write;
        if self.stopped {
            return;
        }
        if self.file.write_all(bytes).is_ok() {
            self.written += bytes.len() as u64;
        }
        if self.written > self.cap && self.trim().is_err() {
            // The step goes on; its log stops here rather than grow without bound.
            let _ = self
                .file
                .write_all(b"\npipeline: this log could not be trimmed to its cap; the rest is not kept\n");
            self.stopped = true;
        }
    }

    /// Keeps the newest half of the cap, from a line start, after one line saying how much
    /// was dropped. Copies within the file, a buffer at a time.
    fn trim(&mut self) -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut from = self.written - self.cap / 2;
        // Start at a line: the first newline within the next 64 KiB, if there is one.
        let mut buffer = vec![0u8; 1 << 20];
        self.file.seek(SeekFrom::Start(from))?;
        let n = self.file.read(&mut buffer[..64 << 10])?;
        if let Some(at) = buffer[..n].iter().position(|&b| b == b'\n') {
            from += at as u64 + 1;
        }
        let old_marker = if self.dropped == 0 {
            0
        } else {
            dropped_line(self.dropped, self.cap).len() as u64
        };
        self.dropped += from - old_marker;
        let marker = dropped_line(self.dropped, self.cap);
        let (mut at, mut to) = (from, marker.len() as u64);
        while at < self.written {
            self.file.seek(SeekFrom::Start(at))?;
            let n = self.file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            self.file.seek(SeekFrom::Start(to))?;
            self.file.write_all(&buffer[..n])?;
            at += n as u64;
            to += n as u64;
        }
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(marker.as_bytes())?;
        self.file.set_len(to)?;
        self.file.seek(SeekFrom::Start(to))?;
        self.written = to;
        Ok(())
    }
}

/// The smallest cap a log gets, whatever is configured.
const MIN_LOG_CAP: u64 = 64 << 10;

/// The line a trimmed log starts with.
fn dropped_line(dropped: u64, cap: u64) -> String {
    format!(
        "pipeline: {dropped} earlier bytes of this log were dropped (a step log keeps at most {cap} bytes: log_cap)\n"
    )
}

/// The most of one line shown (on stderr, in an error's log tail); the file has it whole.
const SHOWN: usize = 4096;

/// `bytes` for display: lossy UTF-8, cut to [`SHOWN`] bytes.
fn shown(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(SHOWN)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if cut.len() < bytes.len() {
        text.push_str(&format!(" ... ({} bytes; whole in the log file)", bytes.len()));
    }
    text
}

/// Where a worker's output lines go: the attempt's log file, the tail kept for errors, and
/// (unless `PIPELINE_LOG_ECHO=0`) stderr with the step's name in front.
pub(crate) struct LogSink {
    prefix: Option<String>,
    inner: Mutex<Log>,
}

impl LogSink {
    /// One whole line (the Ray job's logs come as text).
    #[cfg(feature = "ray")]
    pub(crate) fn line(&self, line: &str) {
        self.end_line(line.as_bytes(), 0);
    }

    /// Writes a piece of a long line to the file; `first` when it is the line's start.
    pub(crate) fn spill(&self, piece: &[u8], first: bool) {
        let mut log = lock(&self.inner);
        log.write(piece);
        if first {
            log.spilling = Some(String::from_utf8_lossy(&piece[..piece.len().min(SHOWN)]).into_owned());
        }
    }

    /// Ends a line with its last bytes (after `spilled` bytes written by [`LogSink::spill`]):
    /// the file gets it whole, stderr and the tail a shortened, lossy form.
    pub(crate) fn end_line(&self, rest: &[u8], spilled: u64) {
        let mut log = lock(&self.inner);
        log.write(rest);
        log.write(b"\n");
        let display = match log.spilling.take() {
            Some(start) if spilled > 0 => format!(
                "{start} ... ({} bytes; whole in the log file)",
                spilled + rest.len() as u64
            ),
            _ => shown(rest),
        };
        if log.tail.len() == LOG_TAIL {
            log.tail.pop_front();
        }
        log.tail.push_back(display.clone());
        drop(log);
        if let Some(prefix) = &self.prefix {
            eprintln!("{prefix} {display}");
        }
    }
}
