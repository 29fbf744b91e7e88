//! A pipeline assembled at run time, as data: parameters, steps, their arguments (literals or
//! `${...}` references) and options. Serializable (TOML, JSON), so a pipeline can live in a
//! file, be stored with its runs, edited and run again without code.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// A whole pipeline as data: what [`PipelineController`](super::PipelineController) builds
/// and runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// The pipeline's name (runs are recorded under it).
    pub name: String,
    /// Its project.
    pub project: String,
    /// Its version; the store picks one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Pipeline-wide options.
    #[serde(default, skip_serializing_if = "PipelineSpecOptions::is_default")]
    pub options: PipelineSpecOptions,
    /// Configuration objects recorded with every run (`connect_configuration`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configuration: BTreeMap<String, serde_json::Value>,
    /// The pipeline's parameters, referenced by steps as `${pipeline.NAME}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<ParameterSpec>,
    /// The steps, in any order (edges decide the order they run in).
    #[serde(default)]
    pub steps: Vec<StepSpec>,
}

/// Pipeline-wide options (those of `#[pipeline(...)]` that a spec can set).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpecOptions {
    /// The queue of steps that name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_queue: Option<String>,
    /// A failed step stops the run (steps not started are aborted).
    #[serde(default, skip_serializing_if = "is_false")]
    pub abort_on_failure: bool,
    /// Retries of every step that says nothing itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on_failure: Option<u32>,
    /// The run's time limit in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<f64>,
    /// Tags of every run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Where artifacts go (a folder, or an object-storage URI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_uri: Option<String>,
    /// At most this many steps at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<usize>,
    /// The codec of artifacts: `bincode` (the default) or `json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
}

impl PipelineSpecOptions {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A pipeline parameter (`add_parameter`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterSpec {
    /// Its name, referenced as `${pipeline.NAME}`.
    pub name: String,
    /// Its value unless the run is given another.
    pub default: serde_json::Value,
    /// What it means, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its type, for people (`param_type`); the steps it feeds check the value.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub param_type: Option<String>,
}

/// One step: a registered component, its arguments and its options (`add_function_step`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// The step's name (its node's name in the run).
    pub name: String,
    /// The registered name of its component (with a `base`, filled from it when empty).
    #[serde(default)]
    pub component: String,
    /// The step of a recorded run this one is based on (ClearML's base task). When the
    /// controller is built, an empty `component` becomes the base's, and each argument
    /// `function_kwargs` does not give becomes the one the base was called with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseStep>,
    /// One entry per parameter of the component: a literal (decoded as the parameter's type)
    /// or a reference, `"${STEP.OUTPUT}"` (an edge), `"${pipeline.PARAM}"`, or a list of
    /// `"${STEP.OUTPUT}"` for a `Vec` parameter (a fan-in).
    #[serde(default, alias = "kwargs", skip_serializing_if = "BTreeMap::is_empty")]
    pub function_kwargs: BTreeMap<String, serde_json::Value>,
    /// Steps that must end before this one starts, beyond those it takes outputs of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
    /// The queue it runs on (remote mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_queue: Option<String>,
    /// Its time limit in seconds, per attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<f64>,
    /// How many times a failure is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on_failure: Option<u32>,
    /// Seconds to wait before the first retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay: Option<f64>,
    /// Each later wait is this many times the one before (1 or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_backoff: Option<f64>,
    /// Up to this share of a wait is added to it at random.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_jitter: Option<f64>,
    /// Reuse the outputs of an earlier run with the same component and inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_executed_step: Option<bool>,
    /// What its failure means for the rest of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_behaviour: Option<ContinueSpec>,
    /// Tags of the step's record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Scalars the step reports that are also reported on the run: `["title", "series"]`, or
    /// `["title", "series", "run title", "run series"]` under another name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub monitor_metrics: Vec<MonitoredMetric>,
    /// Artifacts the step uploads that are also the run's: `"name"` or `["name", "run name"]`
    /// (a `*` at the end of a name matches a prefix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub monitor_artifacts: Vec<Monitored>,
    /// Models the step uploads that are also the run's, as `monitor_artifacts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub monitor_models: Vec<Monitored>,
    /// Where the step's artifacts go (an object store URI), instead of the pipeline's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_uri: Option<String>,
    /// The step's callbacks: code, not data, so they are not written with the spec (a spec
    /// read from a file has none).
    #[serde(skip)]
    pub callbacks: StepCallbacks,
}

/// A monitored artifact or model: under its own name, or renamed on the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Monitored {
    /// The same name on the run.
    Same(String),
    /// The step's name, and the run's.
    Renamed(String, String),
}

/// A monitored scalar: under its own title and series, or renamed on the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MonitoredMetric {
    /// The same title and series on the run.
    Same(String, String),
    /// The step's title and series, then the run's.
    Renamed(String, String, String, String),
}

/// A step of a recorded run, as the base of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseStep {
    /// The run's id (an unambiguous prefix, before the controller is built).
    pub run: String,
    /// The step's name in that run.
    pub step: String,
}

/// A step's callbacks (see [`StepSpec::callbacks`]). Equal whatever they hold: they are not
/// part of what a spec says.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepCallbacks(pub pipeline_core::Callbacks);

impl PartialEq for StepCallbacks {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// `continue_behaviour` as data; a field not given keeps ClearML's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContinueSpec {
    /// The run is not failed because of this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_on_fail: Option<bool>,
    /// The run is not aborted because of this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_on_abort: Option<bool>,
    /// Children of a failed step are skipped (data children always are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_children_on_fail: Option<bool>,
    /// Children of an aborted step are skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_children_on_abort: Option<bool>,
}

impl ContinueSpec {
    /// The behaviour this describes.
    pub fn behaviour(&self) -> pipeline_core::ContinueBehaviour {
        let d = pipeline_core::ContinueBehaviour::DEFAULT;
        pipeline_core::ContinueBehaviour {
            continue_on_fail: self.continue_on_fail.unwrap_or(d.continue_on_fail),
            continue_on_abort: self.continue_on_abort.unwrap_or(d.continue_on_abort),
            skip_children_on_fail: self.skip_children_on_fail.unwrap_or(d.skip_children_on_fail),
            skip_children_on_abort: self.skip_children_on_abort.unwrap_or(d.skip_children_on_abort),
        }
    }
}

impl StepSpec {
    /// A step called `name` running `component`, with no arguments yet.
    pub fn new(name: impl Into<String>, component: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            component: component.into(),
            base: None,
            function_kwargs: BTreeMap::new(),
            parents: Vec::new(),
            execution_queue: None,
            time_limit: None,
            retry_on_failure: None,
            retry_delay: None,
            retry_backoff: None,
            retry_jitter: None,
            cache_executed_step: None,
            continue_behaviour: None,
            tags: Vec::new(),
            monitor_metrics: Vec::new(),
            monitor_artifacts: Vec::new(),
            monitor_models: Vec::new(),
            output_uri: None,
            callbacks: StepCallbacks::default(),
        }
    }

    /// Sets argument `name` to a literal or a `${...}` reference.
    pub fn arg(&mut self, name: impl Into<String>, value: impl Into<serde_json::Value>) -> &mut Self {
        self.function_kwargs.insert(name.into(), value.into());
        self
    }

    /// Adds steps that must end first.
    pub fn parents<S: Into<String>>(&mut self, parents: impl IntoIterator<Item = S>) -> &mut Self {
        self.parents.extend(parents.into_iter().map(Into::into));
        self
    }

    /// The queue it runs on (remote mode).
    pub fn execution_queue(&mut self, queue: impl Into<String>) -> &mut Self {
        self.execution_queue = Some(queue.into());
        self
    }

    /// Its time limit, per attempt.
    pub fn time_limit(&mut self, limit: std::time::Duration) -> &mut Self {
        self.time_limit = Some(limit.as_secs_f64());
        self
    }

    /// How many times a failure is retried.
    pub fn retry_on_failure(&mut self, retries: u32) -> &mut Self {
        self.retry_on_failure = Some(retries);
        self
    }

    /// Waits before retries: `delay` before the first, multiplied by `factor` before each later
    /// one, each lengthened at random by up to `jitter` of itself.
    pub fn retry_backoff(&mut self, delay: std::time::Duration, factor: f64, jitter: f64) -> &mut Self {
        self.retry_delay = Some(delay.as_secs_f64());
        self.retry_backoff = Some(factor);
        self.retry_jitter = Some(jitter);
        self
    }

    /// Whether the step is served from the cache when it can be.
    pub fn cache_executed_step(&mut self, cache: bool) -> &mut Self {
        self.cache_executed_step = Some(cache);
        self
    }

    /// What its failure means for the rest of the run.
    pub fn continue_behaviour(&mut self, behaviour: pipeline_core::ContinueBehaviour) -> &mut Self {
        self.continue_behaviour = Some(ContinueSpec {
            continue_on_fail: Some(behaviour.continue_on_fail),
            continue_on_abort: Some(behaviour.continue_on_abort),
            skip_children_on_fail: Some(behaviour.skip_children_on_fail),
            skip_children_on_abort: Some(behaviour.skip_children_on_abort),
        });
        self
    }

    /// ClearML's `pre_execute_callback`: called before the step starts; `false` skips it (and
    /// the steps that depend on it).
    pub fn pre_execute_callback(&mut self, callback: pipeline_core::options::PreExecuteCallback) -> &mut Self {
        self.callbacks.0.pre_execute = Some(callback);
        self
    }

    /// ClearML's `post_execute_callback`: called once the step has ended, if it ran.
    pub fn post_execute_callback(&mut self, callback: pipeline_core::options::PostExecuteCallback) -> &mut Self {
        self.callbacks.0.post_execute = Some(callback);
        self
    }

    /// ClearML's `status_change_callback`: called at each change of the step's status, with
    /// the previous one.
    pub fn status_change_callback(&mut self, callback: pipeline_core::options::StatusChangeCallback) -> &mut Self {
        self.callbacks.0.status_change = Some(callback);
        self
    }

    /// ClearML's `monitor_metrics`: the step's scalar `title`/`series` is also reported on
    /// the run, as `run_title`/`run_series`.
    pub fn monitor_metric(
        &mut self,
        (title, series): (&str, &str),
        (run_title, run_series): (&str, &str),
    ) -> &mut Self {
        self.monitor_metrics.push(MonitoredMetric::Renamed(
            title.into(),
            series.into(),
            run_title.into(),
            run_series.into(),
        ));
        self
    }

    /// ClearML's `monitor_artifacts`: the step's artifact `name` is also the run's `run_name`
    /// (a `*` at the end of `name` matches a prefix).
    pub fn monitor_artifact(&mut self, name: &str, run_name: &str) -> &mut Self {
        self.monitor_artifacts
            .push(Monitored::Renamed(name.into(), run_name.into()));
        self
    }

    /// ClearML's `monitor_models`, as [`monitor_artifact`](Self::monitor_artifact).
    pub fn monitor_model(&mut self, name: &str, run_name: &str) -> &mut Self {
        self.monitor_models
            .push(Monitored::Renamed(name.into(), run_name.into()));
        self
    }

    /// Where the step's artifacts go (an object store URI), instead of the pipeline's.
    pub fn output_uri(&mut self, uri: impl Into<String>) -> &mut Self {
        self.output_uri = Some(uri.into());
        self
    }

    /// Tags of the step's record.
    pub fn tags<S: Into<String>>(&mut self, tags: impl IntoIterator<Item = S>) -> &mut Self {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }
}

/// The formats a spec is read from and written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecFormat {
    /// TOML, as in `pipeline.toml`-style files.
    Toml,
    /// JSON.
    Json,
}

impl SpecFormat {
    /// The format a file's extension names: `.json` is JSON, anything else TOML.
    pub fn of_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Toml,
        }
    }
}

impl PipelineSpec {
    /// An empty pipeline called `name` in `project`.
    pub fn new(name: impl Into<String>, project: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            project: project.into(),
            version: None,
            options: PipelineSpecOptions::default(),
            configuration: BTreeMap::new(),
            parameters: Vec::new(),
            steps: Vec::new(),
        }
    }

    /// Reads a spec written in `format`.
    pub fn parse(text: &str, format: SpecFormat) -> Result<Self, String> {
        match format {
            SpecFormat::Toml => toml::from_str(text).map_err(|e| e.to_string()),
            SpecFormat::Json => serde_json::from_str(text).map_err(|e| e.to_string()),
        }
    }

    /// Writes the spec in `format`.
    pub fn render(&self, format: SpecFormat) -> Result<String, String> {
        match format {
            SpecFormat::Toml => toml::to_string_pretty(self).map_err(|e| e.to_string()),
            SpecFormat::Json => serde_json::to_string_pretty(self).map_err(|e| e.to_string()),
        }
    }
}
