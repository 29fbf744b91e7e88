//! Running a pipeline body: set up a run, execute the body with the run as its context, wait
//! for every step, and hand back the value with the run's record.

use crate::context::CURRENT;
use crate::controller::Run;
use crate::error::PipelineError;
use crate::executor::{DebugExecutor, Executor, LocalExecutor};
use crate::mode::{Mode, mode};
use crate::state::state_dir;
use pipeline_core::{NodeStatus, PipelineDag, PipelineDescriptor, RunStatus, registry};
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The value a pipeline returned, with the record of its run.
#[derive(Debug)]
pub struct Finished<R> {
    /// What the pipeline function returned.
    pub output: R,
    /// The run: status, parameters, DAG with states and timings.
    pub run: PipelineRun,
}

/// The record of a finished run.
#[derive(Debug, Clone)]
pub struct PipelineRun {
    id: u64,
    name: &'static str,
    project: &'static str,
    version: Option<&'static str>,
    parameters: Vec<(String, String)>,
    status: RunStatus,
    started: SystemTime,
    ended: SystemTime,
    dag: PipelineDag,
}

impl PipelineRun {
    /// The run's id, unique within this process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The pipeline's `name`.
    pub fn name(&self) -> &str {
        self.name
    }

    /// The pipeline's `project`.
    pub fn project(&self) -> &str {
        self.project
    }

    /// The pipeline's `version`, when it gave one.
    pub fn version(&self) -> Option<&str> {
        self.version
    }

    /// The parameters the pipeline was called with, as `(name, JSON value)`.
    pub fn parameters(&self) -> &[(String, String)] {
        &self.parameters
    }

    /// How the run ended.
    pub fn status(&self) -> RunStatus {
        self.status
    }

    /// True when the run completed: no step failed except those with `continue_on_fail`.
    pub fn is_successful(&self) -> bool {
        self.status == RunStatus::Completed
    }

    /// Wall time from start to end.
    pub fn elapsed(&self) -> Duration {
        self.ended.duration_since(self.started).unwrap_or_default()
    }

    /// The DAG, with each node's final state, timings, attempts and error.
    pub fn dag(&self) -> &PipelineDag {
        &self.dag
    }

    /// Names of the nodes that failed.
    pub fn failed_nodes(&self) -> Vec<&str> {
        self.dag
            .nodes()
            .filter(|n| n.status == NodeStatus::Failed)
            .map(|n| n.name.as_str())
            .collect()
    }
}

fn start(
    descriptor: &'static PipelineDescriptor,
    params: Vec<(&'static str, String)>,
) -> Result<Arc<Run>, PipelineError> {
    registry::validate()?;
    let executor_error = |e: std::io::Error| PipelineError::Executor(e.to_string());
    let executor: Box<dyn Executor> = match mode() {
        Mode::Debug => Box::new(DebugExecutor::start(descriptor.name).map_err(executor_error)?),
        Mode::Local => {
            let options = &descriptor.options;
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let run_dir = state_dir().join("runs").join(run_key(descriptor.name));
            Box::new(
                LocalExecutor::start(
                    descriptor.name,
                    run_dir,
                    options.codec,
                    options.max_parallel.unwrap_or(cores),
                )
                .map_err(executor_error)?,
            )
        }
        Mode::Remote => return Err(PipelineError::RemoteUnavailable(descriptor.name.to_string())),
    };
    Ok(Run::new(descriptor, params, executor))
}

/// A folder name unique across processes: pipeline, time, process, counter.
fn run_key(pipeline: &str) -> String {
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

/// Aborts the run when its time limit passes, unless it ends first (dropping the guard).
struct Watchdog {
    _stop: Option<std::sync::mpsc::Sender<()>>,
}

impl Watchdog {
    fn start(run: &Arc<Run>) -> Self {
        let Some(limit) = run.descriptor.options.time_limit else {
            return Self { _stop: None };
        };
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let run = run.clone();
        let spawned = std::thread::Builder::new()
            .name("pipeline-watchdog".into())
            .spawn(move || {
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                    run.abort_run(format!(
                        "the pipeline's time limit of {} was reached",
                        pipeline_core::dag::format_duration(limit)
                    ));
                }
            });
        Self {
            _stop: spawned.ok().map(|_| tx),
        }
    }
}

fn record(run: &Run, body_panicked: bool) -> PipelineRun {
    run.shutdown();
    let d = run.descriptor;
    PipelineRun {
        id: run.id,
        name: d.name,
        project: d.project,
        version: d.version,
        parameters: run.params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        status: run.status(body_panicked),
        started: run.started,
        ended: SystemTime::now(),
        dag: run.dag(),
    }
}

/// Runs a sync pipeline body. A panic in the body is re-raised after every step has ended.
#[doc(hidden)]
pub fn run_pipeline<R>(
    descriptor: &'static PipelineDescriptor,
    params: Vec<(&'static str, String)>,
    body: impl FnOnce() -> R,
) -> Result<Finished<R>, PipelineError> {
    let run = start(descriptor, params)?;
    let watchdog = Watchdog::start(&run);
    let outcome = catch_unwind(AssertUnwindSafe(|| CURRENT.sync_scope(run.clone(), body)));
    run.wait_idle();
    drop(watchdog);
    let record = record(&run, outcome.is_err());
    match outcome {
        Ok(output) => Ok(Finished { output, run: record }),
        Err(payload) => resume_unwind(payload),
    }
}

/// Runs an async pipeline body. A panic in the body is re-raised after every step has ended.
#[doc(hidden)]
pub async fn run_pipeline_async<R>(
    descriptor: &'static PipelineDescriptor,
    params: Vec<(&'static str, String)>,
    body: impl Future<Output = R>,
) -> Result<Finished<R>, PipelineError> {
    let run = start(descriptor, params)?;
    let watchdog = Watchdog::start(&run);
    let mut body = pin!(CURRENT.scope(run.clone(), body));
    let outcome = poll_fn(|cx| match catch_unwind(AssertUnwindSafe(|| body.as_mut().poll(cx))) {
        Ok(poll) => poll.map(Ok),
        Err(payload) => std::task::Poll::Ready(Err(payload)),
    })
    .await;
    poll_fn(|cx| run.poll_idle(cx)).await;
    drop(watchdog);
    let record = record(&run, outcome.is_err());
    match outcome {
        Ok(output) => Ok(Finished { output, run: record }),
        Err(payload) => resume_unwind(payload),
    }
}

/// What the plain pipeline function does with a run that could not start: there is no error
/// channel in the user's return type, so it panics with the reason.
#[doc(hidden)]
#[track_caller]
pub fn expect_started<R>(finished: Result<Finished<R>, PipelineError>) -> R {
    match finished {
        Ok(f) => f.output,
        Err(e) => panic!("{e}"),
    }
}
