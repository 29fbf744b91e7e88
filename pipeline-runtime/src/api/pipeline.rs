//! Running a pipeline body: set up a run, execute the body with the run as its context, wait
//! for every step, and hand back the value with the run's record.

use super::PipelineRun;
#[cfg(feature = "ray")]
use crate::config::RemoteBackend;
use crate::config::{Config, Mode};
use crate::engine::context::CURRENT;
use crate::engine::run::External;
use crate::engine::{Run, RunIdentity, run_key};
use crate::error::{ExecutorError, PipelineError};
use crate::exec::Executor;
use crate::exec::debug::DebugExecutor;
use crate::exec::process::local::LocalBackend;
#[cfg(feature = "ray")]
use crate::exec::process::ray::RayBackend;
#[cfg(feature = "ray")]
use crate::exec::process::runner::RunnerBackend;
use crate::exec::process::{WorkerExecutor, runtime};
use crate::store::RunRecord;
use crate::store::recorder::Recorder;
use crate::store::{Event, NewRun, RunStore};
use pipeline_core::{
    ComponentDescriptor, ComponentOptions, ErrorKind, PipelineDescriptor, RunStatus, StepError, registry,
};
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::time::SystemTime;

/// The value a pipeline returned, with the record of its run.
#[derive(Debug)]
pub struct Finished<R> {
    /// What the pipeline function returned.
    pub output: R,
    /// The run: status, parameters, DAG with states and timings.
    pub run: PipelineRun,
}

fn start(
    descriptor: &'static PipelineDescriptor,
    params: Vec<(&'static str, String)>,
    parent: Option<(String, String)>,
) -> Result<Arc<Run>, PipelineError> {
    registry::validate()?;
    // `args_map` files parameters under sections: `section/name`.
    let params: Vec<(String, String)> = params
        .into_iter()
        .map(|(name, value)| {
            let section = descriptor
                .options
                .args_map
                .iter()
                .find(|(_, names)| names.contains(&name));
            (
                section.map_or_else(|| name.to_string(), |(s, _)| format!("{s}/{name}")),
                value,
            )
        })
        .collect();
    let mut config = Config::current();
    let mode = config.mode;
    // A controller started on the cluster for a given run takes that run's id; runs its body
    // starts do not.
    let resume = config.resume.take();
    let key = match &resume {
        Some(run) => run.clone(),
        None => config.run_id.take().unwrap_or_else(|| run_key(descriptor.name)),
    };
    let origin = config.origin.take();
    let started = SystemTime::now();
    let state = config.state_dir.clone();
    let run_dir = crate::store::run_folder(&state, &key);
    // The executor first: an unreachable cluster is an error before anything is recorded.
    let executor = executor(&config, descriptor, &run_dir)?;
    let mut identity = RunIdentity {
        key: key.clone(),
        started,
        version: descriptor.version.unwrap_or("1.0.0").to_string(),
        run_number: 1,
        recorder: None,
        run_dir: run_dir.clone(),
        store_path: None,
        origin,
        previous: None,
        parent,
    };
    if let (Some(run), false) = (&resume, config.recording) {
        return Err(PipelineError::Resume {
            run: run.clone(),
            reason: "recording is off, and a run is resumed from its record".into(),
        });
    }
    if config.recording {
        let store_path = state.join("runs.db");
        let mut store = RunStore::open_for_run(&store_path, config.busy_timeout)?;
        identity.store_path = Some(store_path);
        let (version, run_number) = if let Some(run) = &resume {
            let before = store
                .reopen_run(run, descriptor.project, descriptor.name)
                .map_err(|reason| PipelineError::Resume {
                    run: run.clone(),
                    reason,
                })?;
            identity.previous = Some(crate::engine::run::Previous::new(before.nodes, before.artifacts));
            (before.version, before.run_number)
        } else {
            store.begin_run(&NewRun {
                id: &key,
                project: descriptor.project,
                name: descriptor.name,
                version: descriptor.version,
                mode: mode.name(),
                code_hash: descriptor.code_hash,
                parameters: &params,
                tags: descriptor.options.tags,
                started,
                entry: &descriptor.qualified_function(),
                origin: identity.origin.as_deref(),
                parent: identity
                    .parent
                    .as_ref()
                    .map(|(run, node)| (run.as_str(), node.as_str())),
            })?
        };
        identity.version = version;
        identity.run_number = run_number;
        // Every step's tags end with these (ClearML tags each step's task with its pipeline).
        if descriptor.options.add_pipeline_tags {
            let mut tags: Vec<String> = descriptor.options.tags.iter().map(|t| t.to_string()).collect();
            tags.push(format!("pipeline:{key}"));
            store.set_step_tags(tags);
        }
        identity.recorder =
            Some(Recorder::start(store, &key).map_err(ExecutorError::thread("the run store's writer"))?);
    }
    let run = Run::new(descriptor, params, executor, identity, config);
    tracing::info!(target: "pipeline", parent: &run.span, mode = mode.name(), "run started");
    Ok(run)
}

/// What starts an executor's async runtime.
const RUNTIME: &str = "the executor's async runtime";

/// Steps running at once on a cluster when `max_parallel` says nothing.
#[cfg(feature = "ray")]
const REMOTE_PARALLEL: usize = 64;

fn executor(
    config: &Config,
    descriptor: &'static PipelineDescriptor,
    run_dir: &Path,
) -> Result<Box<dyn Executor>, PipelineError> {
    let options = &descriptor.options;
    let mode = config.mode;
    if mode != Mode::Debug {
        // Workers write their artifacts and logs there: an unusable state folder is named now.
        std::fs::create_dir_all(run_dir).map_err(|e| ExecutorError::RunFolder {
            path: run_dir.to_path_buf(),
            source: Arc::new(e),
        })?;
    }
    Ok(match mode {
        Mode::Debug => Box::new(DebugExecutor::start(
            descriptor.name,
            config.clone(),
            crate::engine::context::apart,
        )),
        Mode::Local => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            Box::new(WorkerExecutor::start(
                runtime("pipeline-local").map_err(ExecutorError::thread(RUNTIME))?,
                LocalBackend::new().map_err(|e| ExecutorError::CurrentExe { source: Arc::new(e) })?,
                options.max_parallel.unwrap_or(cores),
                config.log_cap,
            ))
        }
        #[cfg(not(feature = "ray"))]
        Mode::Remote => {
            return Err(PipelineError::Disabled {
                what: "remote mode (the default when no mode is chosen)",
                feature: "ray",
            });
        }
        #[cfg(feature = "ray")]
        Mode::Remote => {
            let runtime = runtime("pipeline-remote").map_err(ExecutorError::thread(RUNTIME))?;
            let cluster = connect_ray(&runtime, &config.ray)?;
            let queue = options
                .default_queue
                .map_or_else(|| config.default_queue.clone(), str::to_string);
            let parallel = options.max_parallel.unwrap_or(REMOTE_PARALLEL);
            let jobs = RayBackend::new(cluster.clone(), queue);
            match config.ray.backend {
                RemoteBackend::Jobs => Box::new(WorkerExecutor::start(runtime, jobs, parallel, config.log_cap)),
                backend @ (RemoteBackend::Auto | RemoteBackend::Runner) => {
                    match crate::remote::runner::service(&cluster, &config.ray) {
                        Ok(service) => Box::new(WorkerExecutor::start(
                            runtime,
                            RunnerBackend::new(service, jobs),
                            parallel,
                            config.log_cap,
                        )),
                        Err(reason) if backend == RemoteBackend::Auto => {
                            crate::diag::warn(format_args!(
                                "{reason}; remote steps go as one Ray job each{}",
                                crate::remote::runner::FALLBACK_HINT
                            ));
                            Box::new(WorkerExecutor::start(runtime, jobs, parallel, config.log_cap))
                        }
                        Err(reason) => {
                            return Err(PipelineError::Cluster {
                                address: cluster.client.address().to_string(),
                                reason,
                            });
                        }
                    }
                }
            }
        }
    })
}

/// Checks the cluster and makes sure it has this binary.
#[cfg(feature = "ray")]
pub(crate) fn connect_ray(
    runtime: &tokio::runtime::Runtime,
    ray: &crate::config::RayConfig,
) -> Result<crate::remote::Cluster, PipelineError> {
    crate::remote::connect(runtime, ray).map_err(|e| PipelineError::Cluster {
        address: e.address,
        reason: e.reason,
    })
}

/// Aborts the run when its time limit passes or when a stop is requested through the run
/// store (`PipelineRun::stop`, `pipeline stop`), unless it ends first (dropping the guard).
struct Watchdog {
    _stop: Option<std::sync::mpsc::Sender<()>>,
}

/// How often a recorded run looks for stop requests.
const STOP_POLL: std::time::Duration = std::time::Duration::from_millis(250);

impl Watchdog {
    fn start(run: &Arc<Run>) -> Self {
        let limit = run.descriptor.options.time_limit;
        let store_path = run.store_path().map(Path::to_path_buf);
        let busy = run.config.busy_timeout;
        if limit.is_none() && store_path.is_none() {
            return Self { _stop: None };
        }
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let run = run.clone();
        let spawned = std::thread::Builder::new()
            .name("pipeline-watchdog".into())
            .spawn(move || {
                let deadline = limit.map(|l| std::time::Instant::now() + l);
                // Opened at the first poll, not at the start: most debug runs end before it, and
                // an open (a connection, the schema read) was a tenth of a short run's time.
                let mut store: Option<RunStore> = None;
                let mut beat = std::time::Instant::now();
                loop {
                    let now = std::time::Instant::now();
                    // The record's sign of life: readers call a run whose heartbeat stopped crashed.
                    if let Some(recorder) = run.recorder.as_ref().filter(|_| now >= beat + crate::store::HEARTBEAT) {
                        recorder.send(Event::Heartbeat {
                            run: run.key.to_string(),
                            at: SystemTime::now(),
                        });
                        beat = now;
                    }
                    if let (Some(deadline), Some(limit)) = (deadline, limit) {
                        if now >= deadline {
                            run.abort_run(
                                format!(
                                    "the pipeline's time limit of {} was reached",
                                    pipeline_core::dag::format_duration(limit)
                                ),
                                pipeline_core::StopMark::Aborted,
                            );
                            return;
                        }
                    }
                    let wait = match (deadline, &store_path) {
                        (Some(d), Some(_)) => (d - now).min(STOP_POLL),
                        (Some(d), None) => d - now,
                        (None, _) => STOP_POLL,
                    };
                    match rx.recv_timeout(wait) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return, // the run ended
                    }
                    // Records that wait for effects (a node added, an in-process attempt
                    // started) reach the store within a poll, even if no effect comes.
                    if run.recorder.is_some() {
                        run.send_waiting();
                    }
                    // A record that cannot be written fails the run; steps still to come would
                    // run unrecorded.
                    if let Some(e) = run.recorder.as_ref().and_then(Recorder::failed) {
                        run.abort_run(
                            format!("the run cannot be recorded: {e}"),
                            pipeline_core::StopMark::Aborted,
                        );
                        return;
                    }
                    if store.is_none()
                        && let Some(path) = &store_path
                    {
                        store = RunStore::open_with(path, busy).ok();
                    }
                    if let Some((reason, mark)) = store.as_ref().and_then(|s| s.stop_requested(&run.key).ok().flatten())
                    {
                        run.abort_run(format!("stopped: {reason}"), mark);
                        return;
                    }
                }
            });
        Self {
            _stop: spawned.ok().map(|_| tx),
        }
    }
}

/// The run's record as it ended, and the error that left the stored record incomplete.
fn record(run: &Run, body_panicked: bool) -> (PipelineRun, Option<crate::store::StoreError>) {
    run.shutdown();
    let d = run.descriptor;
    let mut status = run.status(body_panicked);
    let ended = SystemTime::now();
    let mut configuration = Default::default();
    let mut unrecorded = None;
    if let Some(recorder) = &run.recorder {
        recorder.send(Event::RunEnd {
            run: run.key.to_string(),
            status,
            ended,
        });
        match recorder.finish(recorder.flush_bound()) {
            // `connect_configuration` writes to the store from the body and the steps, in any
            // process: the stored run has all of it.
            Ok(stored) => configuration = stored.map(|s| s.configuration).unwrap_or_default(),
            Err(e) => {
                // Rows are missing: the run fails (the recorder stores that much if it can).
                status = pipeline_core::RunStatus::Failed;
                unrecorded = Some(e);
                // What was stored of the configuration, if the store can be read at all.
                configuration = run
                    .store_path()
                    .and_then(|path| RunStore::open_with(path, run.config.busy_timeout).ok())
                    .and_then(|store| store.run(&run.key).ok().flatten())
                    .map(|stored| stored.configuration)
                    .unwrap_or_default();
            }
        }
    }
    let record = RunRecord {
        id: run.key.to_string(),
        project: d.project.to_string(),
        name: d.name.to_string(),
        version: run.version.clone(),
        run_number: run.run_number,
        status,
        mode: run.mode.name().into(),
        code_hash: d.code_hash.to_string(),
        parameters: run.params.clone(),
        tags: d.options.tags.iter().map(|t| t.to_string()).collect(),
        configuration,
        started: run.started,
        ended: Some(ended),
        controller: Some(crate::store::Controller {
            host: crate::os::hostname().to_string(),
            pid: std::process::id(),
            heartbeat: ended,
        }),
        executable: std::env::current_exe().ok(),
        entry: Some(d.qualified_function()),
        origin: run.origin.clone(),
        parent: run.parent.clone(),
    };
    (PipelineRun::new(record, run.final_dag()), unrecorded)
}

/// Starts a run here; started from another run's body, it is also one node of that run
/// (linked to this one), which ends with an error if this run cannot start.
fn start_here(
    descriptor: &'static PipelineDescriptor,
    params: Vec<(&'static str, String)>,
) -> Result<(Arc<Run>, Option<External>), PipelineError> {
    let nested = crate::engine::context::current()
        .and_then(|outer| outer.add_external(nested_node(descriptor), descriptor.name));
    match start(descriptor, params, nested.as_ref().map(External::place)) {
        Ok(run) => {
            if let Some(node) = &nested {
                node.stops(&run);
            }
            Ok((run, nested))
        }
        Err(e) => {
            if let Some(node) = nested {
                node.end(Err(StepError::new(ErrorKind::Setup, e.to_string())));
            }
            Err(e)
        }
    }
}

/// Runs a sync pipeline body as a run of `descriptor`'s pipeline, its parameters recorded as
/// `params` (name, JSON form): the mode, state folder and the rest come from the current
/// [`Config`](crate::Config). Gives the body's value with the run's record, or why the run
/// could not start or be recorded. A panic in the body is re-raised after every step has ended.
pub fn run_pipeline<R>(
    descriptor: &'static PipelineDescriptor,
    params: Vec<(&'static str, String)>,
    body: impl FnOnce() -> R,
) -> Result<Finished<R>, PipelineError> {
    let (run, nested) = start_here(descriptor, params)?;
    super::interrupt::started(&run);
    let watchdog = Watchdog::start(&run);
    let progress = super::progress::show(&run);
    let context = run.step_context(None);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let _span = run.span.enter();
        run.config.scope_of_run(run.id, || {
            crate::step::with_context(context, || CURRENT.sync_scope(Some(run.clone()), body))
        })
    }));
    run.wait_idle();
    conclude(&run, watchdog, progress, outcome, nested)
}

/// [`run`](crate::entry::run) for an async body.
pub async fn run_pipeline_async<R>(
    descriptor: &'static PipelineDescriptor,
    params: Vec<(&'static str, String)>,
    body: impl Future<Output = R>,
) -> Result<Finished<R>, PipelineError> {
    let (run, nested) = start_here(descriptor, params)?;
    super::interrupt::started(&run);
    let watchdog = Watchdog::start(&run);
    let progress = super::progress::show(&run);
    let mut body = pin!(CURRENT.scope(Some(run.clone()), body));
    let context = run.step_context(None);
    // The body may move between threads at each await: its report context goes with each poll.
    let outcome = poll_fn(|cx| {
        match catch_unwind(AssertUnwindSafe(|| {
            let _span = run.span.enter();
            run.config.scope_of_run(run.id, || {
                crate::step::with_context(context.clone(), || body.as_mut().poll(cx))
            })
        })) {
            Ok(poll) => poll.map(Ok),
            Err(payload) => std::task::Poll::Ready(Err(payload)),
        }
    })
    .await;
    {
        // The run's end waits for its steps: in debug mode they run while it waits.
        let _wanted = crate::value::demand::want(run.id);
        poll_fn(|cx| run.poll_idle(cx)).await;
    }
    conclude(&run, watchdog, progress, outcome, nested)
}

/// Ends an idle run: stops its watchdog, records it, and hands back the body's value or
/// re-raises its panic.
fn conclude<R>(
    run: &Run,
    watchdog: Watchdog,
    progress: Option<super::progress::Display>,
    outcome: std::thread::Result<R>,
    nested: Option<External>,
) -> Result<Finished<R>, PipelineError> {
    drop(watchdog);
    // Taken while the run's nodes are still there (recording it takes them).
    let tally = progress.as_ref().map(|_| run.tally(0, 0));
    let (record, unrecorded) = record(run, outcome.is_err());
    if let (Some(progress), Some(tally)) = (progress, tally) {
        progress.finish(record.status(), tally);
    }
    // The node this run is in its parent ends as the run did (a panic drops it: a crash).
    if let Some(node) = nested
        && outcome.is_ok()
    {
        node.end_with(run.returned(), nested_outcome(&record, unrecorded.as_ref()));
    }
    super::interrupt::ended(run);
    tracing::info!(target: "pipeline", parent: &run.span, status = %record.status(), "run ended");
    match (outcome, unrecorded) {
        (Err(payload), _) => resume_unwind(payload),
        (Ok(_), Some(e)) => Err(PipelineError::Unrecorded(e)),
        (Ok(output), None) => Ok(Finished { output, run: record }),
    }
}

/// The component a nested run of `pipeline` is a node of, in its parent's DAG: the pipeline's
/// name, code hash and parameters; one per pipeline, kept for the process.
fn nested_node(pipeline: &'static PipelineDescriptor) -> &'static ComponentDescriptor {
    static NODES: std::sync::OnceLock<std::sync::Mutex<HashMap<usize, &'static ComponentDescriptor>>> =
        std::sync::OnceLock::new();
    let mut known = crate::sync::lock(NODES.get_or_init(Default::default));
    known.entry(pipeline as *const _ as usize).or_insert_with(|| {
        Box::leak(Box::new(ComponentDescriptor {
            name: pipeline.name,
            function: pipeline.function,
            module_path: pipeline.module_path,
            file: "",
            line: 0,
            code_hash: pipeline.code_hash,
            is_async: pipeline.is_async,
            params: pipeline.params,
            outputs: &[],
            options: ComponentOptions {
                task_type: Some("pipeline"),
                ..ComponentOptions::DEFAULT
            },
            entry: pipeline_core::Entries {
                io: |_| {
                    Err(StepError::new(
                        ErrorKind::Setup,
                        "a nested pipeline runs in its parent's controller, not in a worker",
                    ))
                },
                dynamic: |_| {},
            },
        }))
    })
}

/// How a nested run's node ends: completed with its run, else an error naming the run.
fn nested_outcome(run: &PipelineRun, unrecorded: Option<&crate::store::StoreError>) -> Result<(), StepError> {
    if let Some(e) = unrecorded {
        return Err(StepError::new(
            ErrorKind::Setup,
            format!("run {} could not be recorded: {e}", run.id()),
        ));
    }
    let failed = || {
        let nodes = run.failed_nodes().join(", ");
        let which = if nodes.is_empty() {
            String::new()
        } else {
            format!(" (failed: {nodes})")
        };
        format!("pipeline `{}` run {} {}{which}", run.name(), run.id(), run.status())
    };
    match run.status() {
        RunStatus::Completed => Ok(()),
        RunStatus::Aborted => Err(StepError::new(ErrorKind::Aborted, failed())),
        _ => Err(StepError::new(ErrorKind::Error, failed())),
    }
}

/// What the plain pipeline function does with a run that could not start (or could not be
/// recorded): there is no error channel in the user's return type, so it panics with the reason.
#[track_caller]
pub fn expect_started<R>(finished: Result<Finished<R>, PipelineError>) -> R {
    match finished {
        Ok(f) => f.output,
        Err(e) => panic!("{e}"),
    }
}
