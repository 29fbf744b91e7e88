//! `PipelineController`: a pipeline assembled at run time from registered components (ClearML's
//! `PipelineController`), from code or from a spec file, and run by the same engine, executors,
//! store and cache as `#[pipeline]` functions.
//!
//! The controller's body is the plan of its spec: each step, in an order that respects its
//! edges, is one component call through the component's dynamic entry, the same call a
//! `#[pipeline]` body makes. So a controller and the equivalent function give the same nodes,
//! edges, values, cache keys and records.

mod base;
mod plan;
pub mod spec;

use self::plan::ArgPlan;
use self::spec::{ParameterSpec, PipelineSpec, SpecFormat, StepSpec};
use super::pipeline::Finished;
use crate::api::call_options::{intern, intern_list};
use crate::config::{CacheRefresh, Config, Mode};
use crate::engine::context::RunView;
use crate::error::PipelineError;
use crate::value::dynamic::{DynArg, DynCall, DynHandle};
use pipeline_core::StopMark;
use pipeline_core::{Codec, ParamDescriptor, PipelineDescriptor, PipelineOptions, RetryPolicy};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

/// Why a controller could not be built, checked or run.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The spec does not fit the components of this binary (every problem found).
    #[error("the pipeline spec has {} error{}:\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, list(.0))]
    Invalid(Vec<String>),
    /// A spec file could not be read or parsed.
    #[error("cannot read the pipeline spec {}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The spec cannot be written in that format.
    #[error("cannot write the pipeline spec: {0}")]
    Render(String),
    /// The run could not start or be recorded.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// A draft could not be recorded.
    #[error("cannot record the draft: {0}")]
    Draft(String),
}

fn list(errors: &[String]) -> String {
    errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n")
}

/// The pipeline function recorded for controller runs (`module::PipelineController`):
/// `pipeline rerun` and `resume` know such a run by it, and build it again from its spec.
pub(crate) const ENTRY: &str = concat!(module_path!(), "::PipelineController");

/// The configuration object each controller run records its spec under.
pub(crate) const SPEC_KEY: &str = "pipeline_spec";

/// Runs a recorded spec with `params` (by name) in the current configuration (a controller
/// request: `pipeline rerun`, `resume`, `start(queue)`); `Ok(true)` when the run succeeded.
pub(crate) fn run_spec(
    spec: serde_json::Value,
    params: serde_json::Map<String, serde_json::Value>,
) -> Result<bool, String> {
    let spec: PipelineSpec =
        serde_json::from_value(spec).map_err(|e| format!("the pipeline spec is not valid: {e}"))?;
    let mut controller = PipelineController::from_spec(spec);
    for (name, value) in params {
        controller.set_parameter(name, value);
    }
    controller
        .run()
        .map(|f| f.run.is_successful())
        .map_err(|e| e.to_string())
}

/// The values a controller run gives back: each output of each step no other step takes
/// (the DAG's leaves), as JSON, by `STEP.OUTPUT`. Outputs of steps that did not complete are
/// absent: the run's record says why.
pub type ControllerOutputs = BTreeMap<String, serde_json::Value>;

/// A pipeline assembled at run time: parameters, steps calling registered components, and
/// options, checked against this binary before anything runs.
///
/// ```
/// use pipeline_runtime::prelude::*;
/// use pipeline_runtime::PipelineController;
/// use serde_json::json;
///
/// #[component]
/// fn twice(x: u64) -> u64 {
///     x * 2
/// }
///
/// #[component]
/// fn plus(a: u64, b: u64) -> u64 {
///     a + b
/// }
///
/// pipeline_runtime::set_recording(false);
/// debug_pipeline();
/// let mut pipe = PipelineController::new("docs_controller", "docs");
/// pipe.add_parameter("x", 21, "what to double");
/// pipe.add_function_step("double", "twice", json!({ "x": "${pipeline.x}" }));
/// pipe.add_function_step("sum", plus::descriptor(), json!({ "a": "${double.return_object}", "b": 1 }));
/// let finished = pipe.start_locally(false).unwrap();
/// assert_eq!(finished.output["sum.return_object"], json!(43));
/// assert!(finished.run.is_successful());
/// ```
#[derive(Debug, Clone)]
pub struct PipelineController {
    spec: PipelineSpec,
    /// Parameter values for the next run, over the defaults.
    values: BTreeMap<String, serde_json::Value>,
    /// Mistakes made through the builder that the spec cannot hold, reported by the check.
    problems: Vec<String>,
    /// Steps that refresh their cache entry in the runs started from now on.
    refresh: Option<CacheRefresh>,
}

impl PipelineController {
    /// An empty pipeline called `name` in `project`.
    pub fn new(name: impl Into<String>, project: impl Into<String>) -> Self {
        Self::from_spec(PipelineSpec::new(name, project))
    }

    /// The pipeline `spec` describes (checked when it runs, or by [`check`](Self::check)).
    /// Steps with a `base` and no component are filled from their recorded step now, from the
    /// configured state folder's store.
    pub fn from_spec(spec: PipelineSpec) -> Self {
        let mut controller = Self {
            spec,
            values: BTreeMap::new(),
            problems: Vec::new(),
            refresh: None,
        };
        for i in 0..controller.spec.steps.len() {
            controller.fill_from_base(i);
        }
        controller
    }

    /// Fills step `index` from its base, if it has one and no component yet: the base's
    /// component, and its recorded arguments where `function_kwargs` gives none. What cannot
    /// be filled is a problem of the spec.
    fn fill_from_base(&mut self, index: usize) {
        let step = &mut self.spec.steps[index];
        let Some(base) = step.base.as_mut().filter(|_| step.component.is_empty()) else {
            return;
        };
        let at = format!(
            "step `{}`, based on step `{}` of run `{}`",
            step.name, base.step, base.run
        );
        match base::recorded_step(&Config::current().state_dir, &base.run, &base.step) {
            Ok(based) => {
                base.run = based.run;
                step.component = based.component;
                for (param, value) in based.arguments {
                    if step.function_kwargs.contains_key(&param) {
                        continue;
                    }
                    match value {
                        Ok(value) => {
                            step.function_kwargs.insert(param, value);
                        }
                        Err(e) => self.problems.push(format!("{at}, argument `{param}`: {e}")),
                    }
                }
            }
            Err(e) => self.problems.push(format!("{at}: {e}")),
        }
    }

    /// The pipeline described in a TOML or JSON file (by its extension), checked against the
    /// components of this binary.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ControllerError> {
        let path = path.as_ref();
        let file_error = |message: String| ControllerError::File {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let spec = PipelineSpec::parse(&text, SpecFormat::of_path(path)).map_err(file_error)?;
        let controller = Self::from_spec(spec);
        controller.check()?;
        Ok(controller)
    }

    /// The spec as it stands.
    pub fn spec(&self) -> &PipelineSpec {
        &self.spec
    }

    /// The spec in `format`.
    pub fn render(&self, format: SpecFormat) -> Result<String, ControllerError> {
        self.spec.render(format).map_err(ControllerError::Render)
    }

    /// Writes the spec to `path`, as TOML or JSON by its extension.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ControllerError> {
        let path = path.as_ref();
        let text = self.render(SpecFormat::of_path(path))?;
        std::fs::write(path, text).map_err(|e| ControllerError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Checks the spec against the components of this binary: every problem at once.
    pub fn check(&self) -> Result<(), ControllerError> {
        self.plan().map(drop)
    }

    fn plan(&self) -> Result<plan::Plan, ControllerError> {
        match plan::plan(&self.spec, &self.values) {
            Ok(plan) if self.problems.is_empty() => Ok(plan),
            Ok(_) => Err(ControllerError::Invalid(self.problems.clone())),
            Err(errors) => Err(ControllerError::Invalid(
                self.problems.iter().cloned().chain(errors).collect(),
            )),
        }
    }

    /// Sets the version recorded with runs.
    pub fn set_version(&mut self, version: impl Into<String>) -> &mut Self {
        self.spec.version = Some(version.into());
        self
    }

    /// The queue of steps that name none (remote mode).
    pub fn set_default_execution_queue(&mut self, queue: impl Into<String>) -> &mut Self {
        self.spec.options.default_queue = Some(queue.into());
        self
    }

    /// Whether a failed step stops the run.
    pub fn set_abort_on_failure(&mut self, abort: bool) -> &mut Self {
        self.spec.options.abort_on_failure = abort;
        self
    }

    /// Retries of every step that says nothing itself.
    pub fn set_retry_on_failure(&mut self, retries: u32) -> &mut Self {
        self.spec.options.retry_on_failure = Some(retries);
        self
    }

    /// The run's time limit: steps still running then are stopped and the run is aborted.
    pub fn set_pipeline_execution_time_limit(&mut self, limit: Duration) -> &mut Self {
        self.spec.options.time_limit = Some(limit.as_secs_f64());
        self
    }

    /// At most this many steps at once.
    pub fn set_max_parallel(&mut self, steps: usize) -> &mut Self {
        self.spec.options.max_parallel = Some(steps);
        self
    }

    /// Where artifacts go: a folder, or an object-storage URI.
    pub fn set_output_uri(&mut self, uri: impl Into<String>) -> &mut Self {
        self.spec.options.output_uri = Some(uri.into());
        self
    }

    /// The codec of artifacts: `bincode` (the default) or `json`.
    pub fn set_codec(&mut self, codec: impl Into<String>) -> &mut Self {
        self.spec.options.codec = Some(codec.into());
        self
    }

    /// Adds tags to every run.
    pub fn add_tags<S: Into<String>>(&mut self, tags: impl IntoIterator<Item = S>) -> &mut Self {
        self.spec.options.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Records a configuration object with every run (shown by `pipeline show`).
    pub fn connect_configuration(&mut self, name: impl Into<String>, value: impl serde::Serialize) -> &mut Self {
        let value = serde_json::to_value(value).unwrap_or_else(|e| serde_json::Value::String(e.to_string()));
        self.spec.configuration.insert(name.into(), value);
        self
    }

    /// Adds a parameter with its default, referenced by steps as `${pipeline.NAME}`.
    pub fn add_parameter(
        &mut self,
        name: impl Into<String>,
        default: impl serde::Serialize,
        description: impl Into<String>,
    ) -> &mut Self {
        let description = description.into();
        self.spec.parameters.push(ParameterSpec {
            name: name.into(),
            default: serde_json::to_value(default).unwrap_or(serde_json::Value::Null),
            description: (!description.is_empty()).then_some(description),
            param_type: None,
        });
        self
    }

    /// Gives parameter `name` a value for the runs started from now on (checked when they start).
    pub fn set_parameter(&mut self, name: impl Into<String>, value: impl serde::Serialize) -> &mut Self {
        self.values.insert(
            name.into(),
            serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
        );
        self
    }

    /// Steps whose cache entries the runs started from now on refresh: they run instead of
    /// reading the cache, and overwrite the entry (all, or those of some components).
    /// `CacheRefresh::Off` leaves it to the configuration (`Config::with_cache_refresh`).
    pub fn set_cache_refresh(&mut self, refresh: CacheRefresh) -> &mut Self {
        self.refresh = (refresh != CacheRefresh::Off).then_some(refresh);
        self
    }

    /// Adds a step called `name` that runs `component` (its registered name, or its
    /// `descriptor()`) on `function_kwargs`: a JSON object with one entry per parameter, each a
    /// literal or a reference (`"${STEP.OUTPUT}"`, `"${pipeline.PARAM}"`, or a list of
    /// `"${STEP.OUTPUT}"` for a fan-in). Returns the step, to set its options.
    pub fn add_function_step(
        &mut self,
        name: impl Into<String>,
        component: impl ComponentName,
        function_kwargs: serde_json::Value,
    ) -> &mut StepSpec {
        let mut step = StepSpec::new(name, component.component_name());
        match function_kwargs {
            serde_json::Value::Object(map) => step.function_kwargs = map.into_iter().collect(),
            serde_json::Value::Null => {}
            other => self.problems.push(format!(
                "step `{}`: `function_kwargs` must be a JSON object of arguments by name, not `{other}`",
                step.name
            )),
        }
        self.spec.steps.push(step);
        self.spec.steps.last_mut().expect("just pushed")
    }

    /// ClearML's `add_step`, whose base is a registered component here: the step runs
    /// `base_component` with `parameter_override` as its arguments (keys may carry ClearML's
    /// `Args/` section prefix).
    pub fn add_step(
        &mut self,
        name: impl Into<String>,
        base_component: impl ComponentName,
        parameter_override: serde_json::Value,
    ) -> &mut StepSpec {
        let overrides = match parameter_override {
            serde_json::Value::Object(map) => serde_json::Value::Object(
                map.into_iter()
                    .map(|(k, v)| (k.strip_prefix("Args/").map(str::to_string).unwrap_or(k), v))
                    .collect(),
            ),
            other => other,
        };
        self.add_function_step(name, base_component, overrides)
    }

    /// ClearML's `add_step` with a base task: a step called `name` that runs the component of
    /// step `base_step` of the recorded run `base_run` (in the configured state folder; an
    /// unambiguous prefix of its id works), called as that step was, except for the arguments
    /// `parameter_override` gives (keys may carry `Args/`). The recorded arguments are copied
    /// into the spec now, so the spec stands alone. They come from the inputs the step's last
    /// attempt read (local and remote runs keep them), or else from a controller run's spec;
    /// an argument found in neither is an error unless overridden.
    pub fn add_step_from_run(
        &mut self,
        name: impl Into<String>,
        base_run: &str,
        base_step: &str,
        parameter_override: serde_json::Value,
    ) -> &mut StepSpec {
        let step = self.add_step(name, "", parameter_override);
        step.base = Some(spec::BaseStep {
            run: base_run.to_string(),
            step: base_step.to_string(),
        });
        let index = self.spec.steps.len() - 1;
        self.fill_from_base(index);
        &mut self.spec.steps[index]
    }

    /// Runs the pipeline here, steps as subprocesses of this executable when
    /// `run_pipeline_steps_locally`, else in the mode configured (`debug_pipeline()`,
    /// `run_locally()`, or the cluster). Blocks until the run ends.
    pub fn start_locally(
        &self,
        run_pipeline_steps_locally: bool,
    ) -> Result<Finished<ControllerOutputs>, ControllerError> {
        let config = Config::current();
        let config = if run_pipeline_steps_locally {
            config.with_mode(Mode::Local)
        } else {
            config
        };
        config.scope(|| self.run())
    }

    /// Runs the pipeline in the configured mode, as a `#[pipeline]` function would; blocks
    /// until the run ends.
    pub fn run(&self) -> Result<Finished<ControllerOutputs>, ControllerError> {
        self.in_refresh_scope(|| self.run_reporting(None))
    }

    /// Runs `f` with the controller's cache refresh, if it has one, over the configuration.
    fn in_refresh_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.refresh {
            Some(refresh) => Config::current().with_cache_refresh(refresh.clone()).scope(f),
            None => f(),
        }
    }

    /// Starts the run on a thread of its own (in the configured mode) and returns once it has
    /// started: the handle answers ClearML's controller methods while it runs (`wait`,
    /// `is_running`, `get_pipeline_dag`, `get_running_nodes`, `stop`...). A spec with mistakes,
    /// or a run that cannot start, is an error here.
    pub fn spawn(&self) -> Result<ControllerRun, ControllerError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let done: Arc<(Mutex<Ending>, Condvar)> = Arc::default();
        let controller = self.clone();
        let config = Config::current();
        let finished = done.clone();
        let thread = std::thread::Builder::new()
            .name(format!("pipeline-controller:{}", self.spec.name))
            .spawn(move || {
                // Marks the end as it drops, also when the run panics.
                let mut end = End(finished, None);
                end.1 = Some(config.scope(|| controller.in_refresh_scope(|| controller.run_reporting(Some(tx)))));
            })
            .map_err(|e| {
                ControllerError::Pipeline(PipelineError::from(crate::error::ExecutorError::thread(
                    "the controller",
                )(e)))
            })?;
        match rx.recv() {
            Ok(view) => Ok(ControllerRun {
                view,
                done,
                thread: Some(thread),
            }),
            // The body never started: the run's error is the answer.
            Err(_) => {
                if let Err(panic) = thread.join() {
                    std::panic::resume_unwind(panic);
                }
                let result = crate::sync::lock(&done.0).result.take();
                match result {
                    Some(Err(e)) => Err(e),
                    _ => unreachable!("a run that never started its body ends with an error"),
                }
            }
        }
    }

    /// Runs the pipeline; its live view goes to `started` as the body begins.
    fn run_reporting(&self, started: Option<Sender<RunView>>) -> Result<Finished<ControllerOutputs>, ControllerError> {
        let plan = self.plan()?;
        let values: BTreeMap<String, serde_json::Value> = self.parameter_values().collect();
        let descriptor = self.descriptor(None);
        let params: Vec<(&'static str, String)> = descriptor
            .params
            .iter()
            .map(|p| (p.name, values[p.name].to_string()))
            .collect();
        let spec_json = serde_json::to_value(&self.spec).expect("a spec is JSON");
        let configuration = self.spec.configuration.clone();
        let finished = super::pipeline::run_pipeline(descriptor, params, move || {
            if let (Some(tx), Some(view)) = (started, crate::engine::context::current_run()) {
                let _ = tx.send(view);
            }
            crate::step::connect_configuration(SPEC_KEY, spec_json);
            for (name, value) in configuration {
                crate::step::connect_configuration(&name, value);
            }
            body(plan, &values)
        })?;
        Ok(finished)
    }

    /// ClearML's `start(queue)`: enqueues the controller as a job on the cluster, on `queue`
    /// (`services` when `None`), and returns at once; the job builds the pipeline again from
    /// its spec (the binary must be the same). Mistakes in the spec are errors here.
    pub fn start(&self, queue: Option<&str>) -> Result<super::enqueue::RemoteRun, ControllerError> {
        self.check()?;
        let descriptor = self.descriptor(Some(queue.unwrap_or("services")));
        let params = self.parameter_values().collect();
        let spec = serde_json::to_value(&self.spec).expect("a spec is JSON");
        let refresh = self.refresh.clone();
        let enqueue = || super::enqueue::enqueue_with(descriptor, params, Some(spec));
        Ok(match refresh {
            Some(r) => Config::current().with_cache_refresh(r).scope(enqueue),
            None => enqueue(),
        }?)
    }

    /// ClearML's `create_draft()`: checks the spec and records it as a run in the `draft`
    /// state, with its parameters and spec, that nothing runs; returns its id. `pipeline rerun
    /// DRAFT [--set NAME=VALUE]...` runs it later as a new run (in the mode configured now,
    /// unless `--mode` says otherwise) from this binary, which must still be there; the draft
    /// stays, as a template. `pipeline runs --status draft` lists drafts.
    pub fn create_draft(&self) -> Result<String, ControllerError> {
        self.check()?;
        let config = Config::current();
        if !config.recording {
            return Err(ControllerError::Draft(
                "recording is off, and a draft is only a record".into(),
            ));
        }
        let descriptor = self.descriptor(None);
        let parameters: Vec<(String, String)> = self
            .parameter_values()
            .map(|(name, value)| (name, value.to_string()))
            .collect();
        let mut configuration: serde_json::Map<String, serde_json::Value> =
            self.spec.configuration.clone().into_iter().collect();
        configuration.insert(
            SPEC_KEY.to_string(),
            serde_json::to_value(&self.spec).expect("a spec is JSON"),
        );
        let key = crate::engine::run_key(descriptor.name);
        let path = config.state_dir.join("runs.db");
        let mut store = crate::store::RunStore::open_with(&path, config.busy_timeout)
            .map_err(|e| ControllerError::Draft(e.to_string()))?;
        store
            .record_draft(
                &crate::store::NewRun {
                    id: &key,
                    project: descriptor.project,
                    name: descriptor.name,
                    version: descriptor.version,
                    mode: config.mode.name(),
                    code_hash: descriptor.code_hash,
                    parameters: &parameters,
                    tags: descriptor.options.tags,
                    started: std::time::SystemTime::now(),
                    entry: &descriptor.qualified_function(),
                    origin: None,
                    parent: None,
                },
                &configuration,
            )
            .map_err(|e| ControllerError::Draft(e.to_string()))?;
        Ok(key)
    }

    /// Each parameter with the value the next run gets: the one set, else its default.
    fn parameter_values(&self) -> impl Iterator<Item = (String, serde_json::Value)> + '_ {
        self.spec
            .parameters
            .iter()
            .map(|p| (p.name.clone(), self.values.get(&p.name).unwrap_or(&p.default).clone()))
    }

    /// The descriptor runs are recorded under (`execution_queue`: the queue its controller is
    /// enqueued on). A run's descriptor is `'static`: one per spec and queue is kept for the
    /// process, so running a spec again adds none.
    fn descriptor(&self, execution_queue: Option<&str>) -> &'static PipelineDescriptor {
        static KNOWN: OnceLock<Mutex<HashMap<String, &'static PipelineDescriptor>>> = OnceLock::new();
        let spec = serde_json::to_string(&self.spec).expect("a spec is JSON");
        let key = format!("{execution_queue:?}|{spec}");
        let mut known = crate::sync::lock(KNOWN.get_or_init(Default::default));
        if let Some(descriptor) = known.get(&key) {
            return descriptor;
        }
        let o = &self.spec.options;
        let params: Vec<ParamDescriptor> = self
            .spec
            .parameters
            .iter()
            .map(|p| ParamDescriptor::new(intern(&p.name), intern(p.param_type.as_deref().unwrap_or("json"))))
            .collect();
        let hash = blake3::hash(spec.as_bytes());
        let options = PipelineOptions {
            default_queue: o.default_queue.as_deref().map(intern),
            abort_on_failure: o.abort_on_failure,
            retry: o.retry_on_failure.map_or(RetryPolicy::Never, |n| match n {
                0 => RetryPolicy::Never,
                n => RetryPolicy::Count(n),
            }),
            output_uri: o.output_uri.as_deref().map(intern),
            tags: intern_list(o.tags.iter().map(|t| intern(t)).collect()),
            pipeline_execution_queue: execution_queue.map(intern),
            time_limit: o.time_limit.map(Duration::from_secs_f64),
            max_parallel: o.max_parallel,
            codec: match o.codec.as_deref() {
                Some("json") => Codec::Json,
                _ => Codec::Bincode,
            },
            ..PipelineOptions::DEFAULT
        };
        let descriptor: &'static PipelineDescriptor = Box::leak(Box::new(PipelineDescriptor {
            name: intern(&self.spec.name),
            project: intern(&self.spec.project),
            version: self.spec.version.as_deref().map(intern),
            function: "PipelineController",
            module_path: module_path!(),
            code_hash: intern(&hash.to_hex()[..16]),
            is_async: false,
            params: Box::leak(params.into_boxed_slice()),
            options,
            controller: |_| Err("a PipelineController run cannot be enqueued on a cluster yet".to_string()),
        }));
        known.insert(key, descriptor);
        descriptor
    }
}

/// A controller run started by [`PipelineController::spawn`], live.
pub struct ControllerRun {
    view: RunView,
    done: Arc<(Mutex<Ending>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type ControllerResult = Result<Finished<ControllerOutputs>, ControllerError>;

/// How a spawned run ended: set once by its thread.
#[derive(Default)]
struct Ending {
    ended: bool,
    /// `None` after a panic (the thread's join gives it), or once taken.
    result: Option<ControllerResult>,
}

/// Held by a spawned run's thread: records the end when dropped, whether the run returned or
/// panicked, and wakes the waiters.
struct End(Arc<(Mutex<Ending>, Condvar)>, Option<ControllerResult>);

impl Drop for End {
    fn drop(&mut self) {
        let (slot, ended) = &*self.0;
        let mut ending = crate::sync::lock(slot);
        ending.ended = true;
        ending.result = self.1.take();
        drop(ending);
        ended.notify_all();
    }
}

impl ControllerRun {
    /// The run's id in the run store.
    pub fn id(&self) -> &str {
        self.view.id()
    }

    /// The DAG as it stands, with each node's state.
    pub fn get_pipeline_dag(&self) -> pipeline_core::PipelineDag {
        self.view.dag()
    }

    /// Names of the nodes that have finished (in any final state).
    pub fn get_processed_nodes(&self) -> Vec<String> {
        self.view.processed_nodes()
    }

    /// Names of the nodes executing now.
    pub fn get_running_nodes(&self) -> Vec<String> {
        self.view.running_nodes()
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.view.elapsed()
    }

    /// ClearML's controller `upload_artifact`: stores `value` as an artifact of the run itself
    /// (not of a step); false when the run is not recorded.
    pub fn upload_artifact<T: pipeline_core::ComponentValue>(
        &self,
        name: &str,
        value: &T,
        metadata: Option<serde_json::Value>,
    ) -> Result<bool, pipeline_core::StepError> {
        self.view
            .reporting(|| crate::step::upload_artifact(name, value, metadata))
    }

    /// ClearML's controller `upload_model`: records a model file of the run.
    pub fn upload_model(&self, name: &str, path: &Path) -> Result<bool, pipeline_core::StepError> {
        self.view.reporting(|| crate::step::upload_model(name, path))
    }

    /// ClearML's controller `get_logger().report_scalar`: a scalar of the run.
    pub fn report_scalar(&self, title: &str, series: &str, iteration: i64, value: f64) -> bool {
        self.view
            .reporting(|| crate::step::report_scalar(title, series, iteration, value))
    }

    /// ClearML's controller `get_logger().report_text`: a text of the run.
    pub fn report_text(&self, text: &str) -> bool {
        self.view.reporting(|| crate::step::report_text(text))
    }

    /// True until the run has ended and been recorded.
    pub fn is_running(&self) -> bool {
        !crate::sync::lock(&self.done.0).ended
    }

    /// ClearML's `stop(mark_failed, mark_aborted)`: steps not started are aborted, running
    /// ones stopped; once they have ended the run is marked `mark` (see [`StopMark`]).
    pub fn stop(&self, reason: &str, mark: StopMark) {
        self.view.stop(reason, mark);
    }

    /// Waits until the run has ended, at most `timeout` (forever for `None`); returns whether
    /// it has.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let (slot, ended) = &*self.done;
        let guard = crate::sync::lock(slot);
        let running = |e: &mut Ending| !e.ended;
        match timeout {
            Some(t) => {
                ended
                    .wait_timeout_while(guard, t, running)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
                    .ended
            }
            None => {
                ended
                    .wait_while(guard, running)
                    .unwrap_or_else(|p| p.into_inner())
                    .ended
            }
        }
    }

    /// Waits for the end and gives what [`PipelineController::run`] would have.
    pub fn join(mut self) -> Result<Finished<ControllerOutputs>, ControllerError> {
        if let Some(thread) = self.thread.take()
            && let Err(panic) = thread.join()
        {
            std::panic::resume_unwind(panic);
        }
        crate::sync::lock(&self.done.0)
            .result
            .take()
            .expect("a thread that did not panic leaves its result")
    }
}

/// The body of a controller run: each planned step is one component call, in plan order.
fn body(plan: plan::Plan, values: &BTreeMap<String, serde_json::Value>) -> ControllerOutputs {
    let count = plan.steps.len();
    // `${STEP.id}` is `RUN/STEP`: a run id is a slug, so the first `/` splits it.
    let run = crate::engine::context::current().map_or_else(String::new, |r| r.key.to_string());
    // Per step, per output: the handle, and how many later arguments still take it (the last
    // takes it without a clone, so values move between steps as in a `#[pipeline]` body).
    let mut outputs: Vec<Vec<Option<DynHandle>>> = Vec::with_capacity(count);
    let mut uses: Vec<Vec<usize>> = plan.steps.iter().map(|s| vec![0; s.descriptor.outputs.len()]).collect();
    for step in &plan.steps {
        for arg in &step.args {
            match arg {
                ArgPlan::Output(s, o) => uses[*s][*o] += 1,
                ArgPlan::Gather(list) => list.iter().for_each(|(s, o)| uses[*s][*o] += 1),
                _ => {}
            }
        }
    }
    let leaves: Vec<Vec<bool>> = uses.iter().map(|u| u.iter().map(|&n| n == 0).collect()).collect();
    let mut take = |outputs: &mut Vec<Vec<Option<DynHandle>>>, (s, o): (usize, usize)| -> DynHandle {
        uses[s][o] -= 1;
        let slot = &mut outputs[s][o];
        if uses[s][o] == 0 {
            slot.take().expect("taken only by its last use")
        } else {
            slot.clone().expect("kept until its last use")
        }
    };
    for step in &plan.steps {
        let args = step
            .args
            .iter()
            .map(|arg| match arg {
                ArgPlan::Json(v) => DynArg::Json(v.clone()),
                ArgPlan::Param(name) => DynArg::Json(values[name].clone()),
                ArgPlan::Output(s, o) => DynArg::Handle(take(&mut outputs, (*s, *o))),
                ArgPlan::Gather(list) => DynArg::Gather(list.iter().map(|&so| take(&mut outputs, so)).collect()),
                ArgPlan::StepId(s) => DynArg::Json(serde_json::Value::String(format!("{run}/{}", plan.steps[*s].name))),
            })
            .collect();
        let mut frame = DynCall::Call {
            descriptor: Some(step.descriptor),
            name: Some(step.name.clone()),
            args,
            out: None,
        };
        (step.descriptor.entry.dynamic)(&mut frame);
        let DynCall::Call { out: Some(out), .. } = frame else {
            panic!("component `{}` did not answer its dynamic call", step.descriptor.name);
        };
        // The plan checked every argument: a mismatch here is a bug, and fails the run.
        let handles = out.unwrap_or_else(|e| panic!("step `{}`: {e}", step.name));
        outputs.push(handles.into_iter().map(Some).collect());
    }
    let mut values = ControllerOutputs::new();
    for ((step, outs), leaves) in plan.steps.iter().zip(outputs).zip(leaves) {
        for ((handle, leaf), output) in outs.into_iter().zip(leaves).zip(step.descriptor.outputs) {
            if let (Some(handle), true) = (handle, leaf)
                && let Ok(value) = handle.get_json()
            {
                values.insert(format!("{}.{}", step.name, output.name), value);
            }
        }
    }
    values
}

/// What names a component in [`PipelineController::add_function_step`]: its registered name,
/// or its descriptor (`my_component::descriptor()`).
pub trait ComponentName {
    /// The registered name.
    fn component_name(self) -> String;
}

impl ComponentName for &str {
    fn component_name(self) -> String {
        self.to_string()
    }
}

impl ComponentName for String {
    fn component_name(self) -> String {
        self
    }
}

impl ComponentName for &'static pipeline_core::ComponentDescriptor {
    fn component_name(self) -> String {
        self.name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_one_spec_share_one_descriptor_per_queue() {
        let mut pipe = PipelineController::new("shared_descriptor", "tests");
        pipe.add_parameter("x", 1, "").add_tags(["a"]);
        let first = pipe.descriptor(None);
        assert!(std::ptr::eq(first, pipe.descriptor(None)));
        let queued = pipe.descriptor(Some("services"));
        assert!(!std::ptr::eq(first, queued));
        assert_eq!(queued.options.pipeline_execution_queue, Some("services"));
        assert_eq!(
            (first.name, first.params[0].name, first.options.tags),
            ("shared_descriptor", "x", &["a"][..])
        );
        // Another spec is another descriptor.
        pipe.set_version("2");
        assert!(!std::ptr::eq(first, pipe.descriptor(None)));
    }
}
