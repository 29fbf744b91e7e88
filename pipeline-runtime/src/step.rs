//! What step code (and a pipeline body) can report about itself: scalars and text (ClearML's
//! `get_logger()`), artifacts and models (`upload_artifact`, `upload_model`) and configuration
//! (`connect_configuration`). Reports go to the run store under the current run and step, in
//! every mode, through one writer per run, the controller's: in its process (the body and
//! in-process steps) they join the run's other records; a worker keeps its reports and hands
//! them back with its result, and never opens the run store.
//!
//! Outside any run, or with recording off, reports are dropped and `false` is returned.

use crate::store::{ArtifactKind, ArtifactRecord, Event, MetricRecord, RunStore};
use crate::transport::artifacts::write_value;
use crate::transport::object_storage;
use pipeline_core::names::slug;
use pipeline_core::{ComponentValue, StepError};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::path::Path;
use std::time::SystemTime;

/// Where the reports of the code running on this thread go.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StepContext {
    /// The run's id.
    // Shared (`Arc`): a context is made for every step, and copies were a tenth of the cost
    // of a recorded in-process step.
    pub run: std::sync::Arc<str>,
    /// The node's name; empty for the pipeline body itself.
    pub node: smol_str::SmolStr,
    /// The step's `monitor_*` options (none for the body). They travel with the context, so a
    /// worker applies those of its call (a controller step's, `with_options`), not only its
    /// component's.
    #[serde(default, skip_serializing_if = "Monitoring::is_empty")]
    pub monitor: Monitoring,
    /// The run store, in the controller's process; `None` in a worker (its reports travel back
    /// with its result).
    #[serde(default)]
    pub store: Option<std::sync::Arc<Path>>,
    /// The run's folder, where uploaded values are written (in a worker without a shared
    /// folder: a scratch folder of its own).
    pub run_dir: std::sync::Arc<Path>,
    /// Where this step's uploads go in object storage (`<output_uri>/<run>[/<step>]`), when
    /// `output_uri` names an object store: uploaded values and model files are sent there and
    /// recorded by that URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// How long a connection to the run store waits for other writers.
    #[serde(default = "default_busy_timeout", with = "millis")]
    pub busy_timeout: std::time::Duration,
}

/// Reports of a step that are also reported on its run, under other names (`monitor_*`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Monitoring {
    /// (title, series) of the step's scalars, then the run's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<(String, String, String, String)>,
    /// The step's artifact names (a `*` at the end matches a prefix), then the run's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<(String, String)>,
    /// The step's model names, then the run's, as `artifacts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<(String, String)>,
}

impl Monitoring {
    /// The `monitor_*` options of a step.
    pub(crate) fn of(options: &pipeline_core::ComponentOptions) -> Self {
        // Made for every step: most have none of these options.
        if options.monitor_metrics.is_empty()
            && options.monitor_artifacts.is_empty()
            && options.monitor_models.is_empty()
        {
            return Self::default();
        }
        let pairs = |list: &[(&str, &str)]| list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        Self {
            metrics: options
                .monitor_metrics
                .iter()
                .map(|(t, s, rt, rs)| (t.to_string(), s.to_string(), rt.to_string(), rs.to_string()))
                .collect(),
            artifacts: pairs(options.monitor_artifacts),
            models: pairs(options.monitor_models),
        }
    }

    fn is_empty(&self) -> bool {
        self.metrics.is_empty() && self.artifacts.is_empty() && self.models.is_empty()
    }
}

fn default_busy_timeout() -> std::time::Duration {
    crate::config::Config::current().busy_timeout
}

/// A duration as whole milliseconds in the manifest.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

thread_local! {
    static CONTEXT: RefCell<Option<StepContext>> = const { RefCell::new(None) };
    static STORE: RefCell<Option<RunStore>> = const { RefCell::new(None) };
}

/// One report of step code, as a worker hands it back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Report {
    Metric(MetricRecord),
    Text { node: String, text: String },
    Artifact(ArtifactRecord),
    Configuration { name: String, value: serde_json::Value },
}

impl Report {
    fn into_event(self, run: String) -> Event {
        match self {
            Report::Metric(record) => Event::Metric { run, record },
            Report::Text { node, text } => Event::Text { run, node, text },
            Report::Artifact(record) => Event::Artifact {
                run,
                record: Box::new(record),
            },
            Report::Configuration { name, value } => Event::Configuration { run, name, value },
        }
    }
}

/// In a worker: the reports of its step, kept to go back with its result.
static KEPT: std::sync::Mutex<Option<Vec<Report>>> = std::sync::Mutex::new(None);

/// In a worker, before its step runs: reports are kept from now on (see [`take_reports`]).
pub(crate) fn keep_reports() {
    *crate::sync::lock(&KEPT) = Some(Vec::new());
}

/// In a worker, after its step: the reports kept.
pub(crate) fn take_reports() -> Vec<Report> {
    crate::sync::lock(&KEPT).take().unwrap_or_default()
}

/// In the controller: records the reports a worker of run `run` handed back.
pub(crate) fn forward(run: &str, reports: Vec<Report>) {
    if !reports.is_empty() {
        let events = reports.into_iter().map(|r| r.into_event(run.to_string())).collect();
        if crate::store::recorder::route(run, events).is_err() {
            crate::diag::warn(format_args!(
                "run {run} is not recorded here: its step's reports are dropped"
            ));
        }
    }
}

/// Runs `f` with reports going to `context`.
pub(crate) fn with_context<R>(context: Option<StepContext>, f: impl FnOnce() -> R) -> R {
    // A step without a context on a thread without one (debug mode with the store off): no
    // context to move in and out.
    if context.is_none() && CONTEXT.with(|c| c.borrow().is_none()) {
        return f();
    }
    struct Restore(Option<StepContext>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CONTEXT.with(|c| *c.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(CONTEXT.with(|c| std::mem::replace(&mut *c.borrow_mut(), context)));
    f()
}

fn context() -> Option<StepContext> {
    CONTEXT.with(|c| c.borrow().clone())
}

/// Records reports: kept in a worker, else through the run's writer in this process; else
/// (a run recorded by another process that shares this store) written to the store.
fn write(context: &StepContext, reports: Vec<Report>) -> bool {
    if let Some(kept) = crate::sync::lock(&KEPT).as_mut() {
        kept.extend(reports);
        return true;
    }
    let events: Vec<Event> = reports
        .into_iter()
        .map(|r| r.into_event(context.run.to_string()))
        .collect();
    let Err(events) = crate::store::recorder::route(&context.run, events) else {
        return true;
    };
    let Some(store_path) = &context.store else { return false };
    STORE.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.as_ref().is_none_or(|s| s.path() != &**store_path) {
            *slot = RunStore::open_with(store_path, context.busy_timeout)
                .map_err(|e| crate::diag::warn(format_args!("{e}")))
                .ok();
        }
        let Some(store) = slot.as_mut() else { return false };
        match store.apply(&context.run, &events) {
            Ok(()) => true,
            Err(e) => {
                crate::diag::warn(format_args!("{e}"));
                false
            }
        }
    })
}

/// Reports a scalar: plot `title`, line `series`, point (`iteration`, `value`). With the
/// component's `monitor_metrics`, the point is copied onto the pipeline run too.
pub fn report_scalar(title: &str, series: &str, iteration: i64, value: f64) -> bool {
    let Some(cx) = context() else { return false };
    let record = |node: &str, title: &str, series: &str| {
        Report::Metric(MetricRecord {
            node: node.to_string(),
            title: title.to_string(),
            series: series.to_string(),
            iteration,
            value,
            at: SystemTime::now(),
        })
    };
    let mut events = vec![record(&cx.node, title, series)];
    for (t, s, target_title, target_series) in &cx.monitor.metrics {
        if t == title && s == series {
            events.push(record("", target_title, target_series));
        }
    }
    write(&cx, events)
}

/// Reports a line of text.
pub fn report_text(text: &str) -> bool {
    let Some(cx) = context() else { return false };
    let report = Report::Text {
        node: cx.node.to_string(),
        text: text.to_string(),
    };
    write(&cx, vec![report])
}

fn upload(cx: &StepContext, kind: ArtifactKind, name: &str, mut record: ArtifactRecord) -> bool {
    let monitored: &[(String, String)] = match kind {
        ArtifactKind::Artifact => &cx.monitor.artifacts,
        ArtifactKind::Model => &cx.monitor.models,
        _ => &[],
    };
    let mut reports = vec![Report::Artifact(record.clone())];
    for (source, target) in monitored {
        let matches = source == name || (source.ends_with('*') && name.starts_with(source.trim_end_matches('*')));
        if matches {
            record.node = String::new();
            record.name = target.trim_end_matches('*').to_string();
            if record.name.is_empty() {
                record.name = name.to_string();
            }
            reports.push(Report::Artifact(record.clone()));
        }
    }
    write(cx, reports)
}

/// Records `value` as the run's output named `name` (`#[pipeline(return_value = "...")]`),
/// with `codec`: an output artifact of the run itself, which `pipeline get RUN` shows. Gives
/// the record, if the run is recorded.
pub(crate) fn record_return<T: Serialize>(
    name: &str,
    value: &T,
    codec: pipeline_core::Codec,
) -> Result<Option<ArtifactRecord>, StepError> {
    let Some(cx) = context() else { return Ok(None) };
    let record = store_value(&cx, &cx.run_dir.join("output"), "output", name, value, codec)?;
    let record = ArtifactRecord {
        node: String::new(),
        kind: ArtifactKind::Output,
        ..record
    };
    Ok(write(&cx, vec![Report::Artifact(record.clone())]).then_some(record))
}

/// Stores `value` as an artifact named `name` of the current step (or run), with the artifact
/// header: in the run's folder, or with an object-storage `output_uri`, there (written to a
/// local file first, then sent). `metadata` is kept with the record.
pub fn upload_artifact<T: ComponentValue>(
    name: &str,
    value: &T,
    metadata: Option<serde_json::Value>,
) -> Result<bool, StepError> {
    let Some(cx) = context() else { return Ok(false) };
    let dir = if cx.node.is_empty() {
        cx.run_dir.join("artifacts")
    } else {
        crate::store::step_folder(&cx.run_dir, &cx.node).join("artifacts")
    };
    let record = store_value(&cx, &dir, "artifacts", name, value, pipeline_core::Codec::Bincode)?;
    Ok(upload(
        &cx,
        ArtifactKind::Artifact,
        name,
        ArtifactRecord { metadata, ..record },
    ))
}

/// Writes `value` as `<dir>/<name>.art` with `codec`, or with an object-storage `output_uri`
/// sends it to `<prefix>/<kind_dir>/<name>.art`; gives its record (an artifact of the
/// context's node, without metadata).
fn store_value<T: Serialize>(
    cx: &StepContext,
    dir: &Path,
    kind_dir: &str,
    name: &str,
    value: &T,
    codec: pipeline_core::Codec,
) -> Result<ArtifactRecord, StepError> {
    let file = format!("{}.art", slug(name));
    let artifact = write_value(&dir.join(&file), codec, value)?;
    let header = crate::transport::artifacts::read_header(&artifact.path)?;
    let uri = match &cx.remote {
        Some(prefix) => {
            let uri = object_storage::join(prefix, &[kind_dir, &file]);
            object_storage::upload(&artifact.path, &uri)?;
            // The record names the object: a local copy would only be a stale duplicate.
            let _ = std::fs::remove_file(&artifact.path);
            uri
        }
        None => artifact.path.display().to_string(),
    };
    Ok(ArtifactRecord {
        node: cx.node.to_string(),
        name: name.to_string(),
        kind: ArtifactKind::Artifact,
        uri,
        codec: Some(codec.name().to_string()),
        type_name: Some(header.type_name),
        size: Some(header.length),
        checksum: Some(format!("{:08x}", header.checksum)),
        metadata: None,
    })
}

/// Records a model file (weights, an exported graph...) named `name`: its location, size and
/// BLAKE3 checksum. The file stays where it is; with an object-storage `output_uri` a copy is
/// sent to `<output_uri>/<run>/<step>/models/<name>/<file name>` and recorded by that URI.
pub fn upload_model(name: &str, path: &Path) -> Result<bool, StepError> {
    let Some(cx) = context() else { return Ok(false) };
    let io = |e: std::io::Error| {
        StepError::new(
            pipeline_core::ErrorKind::Setup,
            format!("model `{}`: {e}", path.display()),
        )
    };
    let mut hasher = blake3::Hasher::new();
    let mut file = std::fs::File::open(path).map_err(io)?;
    let size = std::io::copy(&mut file, &mut hasher).map_err(io)?;
    let path = std::fs::canonicalize(path).map_err(io)?;
    let uri = match &cx.remote {
        Some(prefix) => {
            let file_name = path.file_name().map_or_else(|| name.into(), |n| n.to_string_lossy());
            let uri = object_storage::join(prefix, &["models", &slug(name), &file_name]);
            object_storage::upload(&path, &uri)?;
            uri
        }
        None => path.display().to_string(),
    };
    let record = ArtifactRecord {
        node: cx.node.to_string(),
        name: name.to_string(),
        kind: ArtifactKind::Model,
        uri,
        codec: None,
        type_name: None,
        size: Some(size),
        checksum: Some(hasher.finalize().to_hex().to_string()),
        metadata: None,
    };
    Ok(upload(&cx, ArtifactKind::Model, name, record))
}

/// Records `value` as the run's configuration `name` and gives it back, as ClearML's
/// `connect_configuration` does with a dictionary.
pub fn connect_configuration<T: Serialize>(name: &str, value: T) -> T {
    if let Some(cx) = context() {
        match serde_json::to_value(&value) {
            Ok(json) => {
                write(
                    &cx,
                    vec![Report::Configuration {
                        name: name.to_string(),
                        value: json,
                    }],
                );
            }
            Err(e) => crate::diag::warn(format_args!("configuration `{name}` is not representable as JSON: {e}")),
        }
    }
    value
}
