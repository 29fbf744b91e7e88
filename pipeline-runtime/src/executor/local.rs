//! `run_locally()`: every step runs as a subprocess of this same executable, as many at once
//! as the DAG and the concurrency limit allow. Arguments and results travel as artifacts in
//! the run's folder; each attempt's output is logged to a file and echoed with a step prefix.

use super::Executor;
use crate::artifacts::ArtifactRef;
use crate::call::Invoke;
use crate::controller::{Attempt, Run};
use crate::handle::ExportSink;
use crate::worker::{MANIFEST_ENV, Manifest, WorkerResult};
use pipeline_core::{Codec, ComponentDescriptor, ErrorKind, StepError};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{Notify, Semaphore};

/// Lines of a failed worker's log quoted in its error.
const LOG_TAIL: usize = 20;

struct Context {
    exe: PathBuf,
    run_dir: PathBuf,
    codec: Codec,
    pipeline: &'static str,
    echo: bool,
    permits: Semaphore,
    running: Mutex<HashMap<u32, Arc<Cancel>>>,
}

#[derive(Default)]
struct Cancel {
    notify: Notify,
    reason: Mutex<Option<String>>,
}

/// Runs steps as worker processes on a small tokio runtime of its own.
pub(crate) struct LocalExecutor {
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    ctx: Arc<Context>,
}

impl LocalExecutor {
    pub(crate) fn start(
        pipeline: &'static str,
        run_dir: PathBuf,
        codec: Codec,
        max_parallel: usize,
    ) -> std::io::Result<Self> {
        let exe = std::env::current_exe()?;
        std::fs::create_dir_all(&run_dir)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pipeline-local")
            .enable_all()
            .build()?;
        let echo = std::env::var("PIPELINE_LOG_ECHO").map_or(true, |v| v != "0");
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            ctx: Arc::new(Context {
                exe,
                run_dir,
                codec,
                pipeline,
                echo,
                permits: Semaphore::new(max_parallel.max(1)),
                running: Mutex::new(HashMap::new()),
            }),
        })
    }
}

impl Executor for LocalExecutor {
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn run_node(ctx: Arc<Context>, run: Arc<Run>, index: u32) {
    let cancel = Arc::new(Cancel::default());
    lock(&ctx.running).insert(index, cancel.clone());
    let _permit = ctx.permits.acquire().await.expect("the semaphore is never closed");
    if run.lookup_cache(index) {
        lock(&ctx.running).remove(&index);
        return;
    }
    let (name, descriptor) = run.node_info(index);
    let node_dir = ctx.run_dir.join(&*name);
    let mut inputs = None;
    while let Some(mut attempt) = run.begin_attempt(index) {
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
        if !run.end_attempt(index, attempt, outcome) {
            break;
        }
    }
    lock(&ctx.running).remove(&index);
}

#[allow(clippy::too_many_arguments)]
async fn attempt_in_worker(
    ctx: &Context,
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
        *inputs = Some(export_inputs(ctx, node_dir, attempt).await?);
    }
    let inputs = inputs.as_ref().expect("exported above");
    let number = attempt.number();
    let outputs: Vec<PathBuf> = descriptor
        .outputs
        .iter()
        .map(|o| node_dir.join("outputs").join(format!("{}.art", o.name)))
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
    };
    let manifest_path = node_dir.join(format!("manifest-{number}.json"));
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| setup("cannot encode the manifest", &e))?;
    std::fs::create_dir_all(node_dir).map_err(|e| setup("cannot create the step folder", &e))?;
    let _ = std::fs::remove_file(&manifest.result);
    std::fs::write(&manifest_path, bytes).map_err(|e| setup("cannot write the manifest", &e))?;

    let log_path = node_dir.join(format!("attempt-{number}.log"));
    run.set_log_path(index, log_path.clone());
    let log = std::fs::File::create(&log_path).map_err(|e| setup("cannot create the step log", &e))?;
    let mut child = tokio::process::Command::new(&ctx.exe)
        .env(MANIFEST_ENV, &manifest_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| setup(&format!("cannot start a worker from `{}`", ctx.exe.display()), &e))?;
    let log = Arc::new(Mutex::new(Log {
        file: log,
        tail: VecDeque::new(),
    }));
    let prefix = ctx.echo.then(|| format!("[{name}]"));
    let out = tokio::spawn(pump(child.stdout.take().expect("piped"), log.clone(), prefix.clone()));
    let err = tokio::spawn(pump(child.stderr.take().expect("piped"), log.clone(), prefix));

    let limit = descriptor.options.time_limit;
    let ended = tokio::select! {
        status = child.wait() => Ended::Exited(status),
        () = cancel.notify.notified() => Ended::Stopped(lock(&cancel.reason).clone().unwrap_or_else(|| "stopped".into())),
        () = sleep_or_never(limit) => Ended::Stopped(format!(
            "time limit of {} exceeded; the worker was killed",
            pipeline_core::dag::format_duration(limit.unwrap_or_default())
        )),
    };
    if let Ended::Stopped(_) = ended {
        let _ = child.kill().await;
    }
    let _ = out.await;
    let _ = err.await;
    let tail: Vec<String> = lock(&log).tail.iter().cloned().collect();

    match ended {
        Ended::Stopped(reason) => Err(StepError::new(ErrorKind::Aborted, reason)),
        Ended::Exited(status) => {
            let status = status.map_err(|e| setup("cannot wait for the worker", &e))?;
            match std::fs::read(&manifest.result)
                .ok()
                .and_then(|b| serde_json::from_slice::<WorkerResult>(&b).ok())
            {
                Some(WorkerResult { error: Some(error) }) => Err(error),
                Some(WorkerResult { error: None }) if status.success() => {
                    let (_, slots) = run.output_slots(index);
                    for ((slot, path), output) in slots.iter().zip(outputs).zip(descriptor.outputs) {
                        run.record_output(name, output, &path, ctx.codec);
                        slot.store(ArtifactRef { path, codec: ctx.codec }, name.clone());
                    }
                    Ok(())
                }
                _ => Err(StepError {
                    kind: ErrorKind::Crash,
                    message: format!("the worker {}; log: {}", describe_exit(&status), log_path.display()),
                    causes: tail,
                }),
            }
        }
    }
}

enum Ended {
    Exited(std::io::Result<std::process::ExitStatus>),
    Stopped(String),
}

async fn sleep_or_never(limit: Option<Duration>) {
    match limit {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Writes the step's arguments as artifacts (once per node, whatever the retries).
async fn export_inputs(ctx: &Context, node_dir: &Path, attempt: &mut Attempt) -> Result<Vec<ArtifactRef>, StepError> {
    let mut job = std::mem::replace(&mut attempt.job, Box::new(|_| Ok(())));
    let mut sink = ExportSink {
        dir: node_dir.join("inputs"),
        codec: ctx.codec,
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

async fn pump(stream: impl AsyncRead + Unpin, log: Arc<Mutex<Log>>, prefix: Option<String>) {
    use std::io::Write;
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(prefix) = &prefix {
            eprintln!("{prefix} {line}");
        }
        let mut log = lock(&log);
        let _ = writeln!(log.file, "{line}");
        if log.tail.len() == LOG_TAIL {
            log.tail.pop_front();
        }
        log.tail.push_back(line);
    }
}

fn describe_exit(status: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                15 => " (SIGTERM)",
                _ => "",
            };
            return format!("was killed by signal {signal}{name}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with code {code} without reporting a result"),
        None => "ended without an exit code".to_string(),
    }
}
