//! A pipeline's controller run as a job on the Ray cluster (ClearML's `enqueue` onto
//! `pipeline_execution_queue`): the worker hook sees [`CONTROLLER_ENV`], runs the pipeline from
//! its JSON parameters under the run id the caller chose, and exits.

use pipeline_core::registry;
use serde::{Deserialize, Serialize};

/// The environment variable that turns a process into a pipeline controller.
pub const CONTROLLER_ENV: &str = "PIPELINE_CONTROLLER_JSON";

#[derive(Serialize, Deserialize)]
pub(crate) struct Request {
    /// `module::path::function` of the pipeline.
    pub(crate) pipeline: String,
    /// Parameters as a JSON object.
    pub(crate) params: serde_json::Value,
    /// The run's id, when the caller chose it (to find the run).
    #[serde(default)]
    pub(crate) run: Option<String>,
    /// Where its steps run (`debug`, `local`, `remote`), when not the configured mode.
    #[serde(default)]
    pub(crate) mode: Option<String>,
    /// The run it is started again from (`pipeline rerun`).
    #[serde(default)]
    pub(crate) origin: Option<String>,
    /// The run it takes up again (`resume`).
    #[serde(default)]
    pub(crate) resume: Option<String>,
    /// For a pipeline assembled at run time (`PipelineController`): its spec.
    #[serde(default)]
    pub(crate) spec: Option<serde_json::Value>,
    /// Steps that refresh their cache entry (`rerun --refresh`).
    #[serde(default)]
    pub(crate) refresh: crate::config::CacheRefresh,
}

/// Runs a pipeline assembled at run time from its spec and parameters (by name); `Ok(true)`
/// when the run was successful. Given by the layer that can (`PipelineController`'s).
pub(crate) type SpecRunner = fn(serde_json::Value, serde_json::Map<String, serde_json::Value>) -> Result<bool, String>;

/// Runs the controller request in `json`, a spec'd one through `run_spec`; gives the process's
/// exit code.
pub(crate) fn run_controller(json: &str, run_spec: SpecRunner) -> i32 {
    let request: Request = match serde_json::from_str(json) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pipeline controller: {CONTROLLER_ENV} is not a valid request: {e}");
            return super::manifest::EXIT_SETUP;
        }
    };
    let pipeline = registry::pipelines().find(|p| p.qualified_function() == request.pipeline);
    if pipeline.is_none() && request.spec.is_none() {
        eprintln!("pipeline controller: no pipeline `{}` in this binary", request.pipeline);
        return super::manifest::EXIT_SETUP;
    }
    let mut config = crate::config::Config::current();
    if let Some(run) = request.run {
        config = config.with_run_id(run);
    }
    if let Some(mode) = request.mode {
        match serde_json::from_value::<crate::config::Mode>(serde_json::Value::String(mode)) {
            Ok(mode) => config = config.with_mode(mode),
            Err(e) => {
                eprintln!("pipeline controller: {e}");
                return super::manifest::EXIT_SETUP;
            }
        }
    }
    if let Some(origin) = request.origin {
        config = config.with_origin(origin);
    }
    if let Some(run) = request.resume {
        config = config.with_resume(run);
    }
    if request.refresh != crate::config::CacheRefresh::Off {
        config = config.with_cache_refresh(request.refresh);
    }
    let outcome = config.scope(|| match (pipeline, request.spec) {
        (Some(pipeline), _) => (pipeline.controller)(&request.params.to_string()),
        (None, Some(spec)) => match request.params {
            serde_json::Value::Object(params) => run_spec(spec, params),
            other => Err(format!("the parameters are not a JSON object: {other}")),
        },
        (None, None) => unreachable!("checked above"),
    });
    match outcome {
        Ok(true) => 0,
        Ok(false) => super::manifest::EXIT_STEP_FAILED,
        Err(e) => {
            eprintln!("pipeline controller: {e}");
            super::manifest::EXIT_SETUP
        }
    }
}

/// Parses a controller's parameters: a JSON object, by name.
pub fn params_from_json(json: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    serde_json::from_str(json).map_err(|e| format!("the parameters are not a JSON object: {e}"))
}

/// Takes parameter `name` out of the controller's parameters, as a `T`.
pub fn param_from_json<T: serde::de::DeserializeOwned>(
    params: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<T, String> {
    let value = params
        .remove(name)
        .ok_or_else(|| format!("parameter `{name}` is missing"))?;
    serde_json::from_value(value).map_err(|e| format!("parameter `{name}`: {e}"))
}
