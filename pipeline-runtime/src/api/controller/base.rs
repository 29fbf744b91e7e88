//! A step based on a step of a recorded run (ClearML's `add_step` with a base task): its
//! component, with the arguments it was called with as defaults.
//!
//! The arguments come from what the run kept: the inputs its last attempt read (every step of
//! a local or remote run that executed), or, for a `PipelineController` run, its recorded spec
//! (literals and pipeline parameters; an output of another step is a value only the inputs
//! kept). An argument that cannot be found is an error only if no override gives it.

use super::plan::describe;
use super::spec::PipelineSpec;
use crate::store::{RunRecord, RunStore};
use crate::worker::Manifest;
use pipeline_core::registry;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Step `step` of run `run` (recorded in the state folder `state`; an unambiguous prefix of
/// its id works): its run's whole id, its component and, per parameter, its recorded argument
/// or why there is none.
pub(super) fn recorded_step(state: &Path, run: &str, step: &str) -> Result<Based, String> {
    let store = RunStore::open_read_only(&state.join("runs.db")).map_err(|e| e.to_string())?;
    let record = store
        .run(run)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("there is no run `{run}` in the store"))?;
    let nodes = store.nodes(&record.id).map_err(|e| e.to_string())?;
    let Some(node) = nodes.iter().find(|n| n.node.name == step) else {
        let known: Vec<&str> = nodes.iter().map(|n| n.node.name.as_str()).collect();
        return Err(format!(
            "run {} has no step `{step}` (its steps: {})",
            record.id,
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        ));
    };
    let component = &node.node.component;
    let descriptor = registry::find_component(component)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("its component `{component}` is not registered in this binary"))?;
    let (params, _) = describe(descriptor);
    let manifest = crate::store::step_folder(&crate::store::run_folder(state, &record.id), step)
        .join(format!("manifest-{}.json", node.node.attempts.max(1)));
    let from = format!("step `{step}` of run {}", record.id);
    let arguments = match std::fs::read(&manifest) {
        Ok(bytes) => {
            let m: Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{from}: its manifest `{}` is unreadable: {e}", manifest.display()))?;
            if m.inputs.len() != params.len() {
                return Err(format!(
                    "{from} had {} inputs; `{component}` takes {} now",
                    m.inputs.len(),
                    params.len()
                ));
            }
            let mut io = crate::worker::manifest_inputs(&m).map_err(|e| format!("{from}: {}", e.message))?;
            descriptor
                .params
                .iter()
                .zip(&params)
                .enumerate()
                .map(|(i, (p, dyn_param))| {
                    let value = (dyn_param.read_json)(&mut io, i)
                        .map_err(|e| format!("its argument `{}` as recorded: {e}", p.name));
                    (p.name.to_string(), value)
                })
                .collect()
        }
        Err(_) => from_spec(&record, step, descriptor.params.iter().map(|p| p.name), &from),
    };
    Ok(Based {
        run: record.id,
        component: component.clone(),
        arguments,
    })
}

/// A recorded step, as a base.
pub(super) struct Based {
    /// Its run's whole id.
    pub run: String,
    /// Its component's registered name.
    pub component: String,
    /// Per parameter: its recorded value, or why there is none.
    pub arguments: BTreeMap<String, Result<Value, String>>,
}

/// The arguments a controller run's spec gave its step `step`, for a step whose inputs were not
/// kept (debug mode, or served from the cache).
fn from_spec<'a>(
    record: &RunRecord,
    step: &str,
    params: impl Iterator<Item = &'a str>,
    from: &str,
) -> BTreeMap<String, Result<Value, String>> {
    let not_kept = || {
        format!(
            "{from} kept no inputs (its run was in debug mode, or it was served from the cache): give it in \
             `parameter_override`"
        )
    };
    let spec: Option<PipelineSpec> = record
        .configuration
        .get(super::SPEC_KEY)
        .and_then(|s| serde_json::from_value(s.clone()).ok());
    let recorded = spec.and_then(|s| s.steps.into_iter().find(|s| s.name == step));
    let parameters: BTreeMap<&str, &str> = record
        .parameters
        .iter()
        .map(|(n, v)| (n.rsplit('/').next().unwrap_or(n), v.as_str()))
        .collect();
    params
        .map(|param| {
            let value = match recorded.as_ref().and_then(|s| s.function_kwargs.get(param)) {
                None => Err(not_kept()),
                Some(Value::String(text)) if text.trim().starts_with("${pipeline.") => {
                    let name = text.trim().trim_start_matches("${pipeline.").trim_end_matches('}');
                    parameters
                        .get(name)
                        .and_then(|v| serde_json::from_str(v).ok())
                        .ok_or_else(not_kept)
                }
                Some(v) if references_a_step(v) => Err(format!("{} (it came from another step's output)", not_kept())),
                Some(v) => Ok(v.clone()),
            };
            (param.to_string(), value)
        })
        .collect()
}

/// Whether a spec argument is an output reference or a list of them.
fn references_a_step(value: &Value) -> bool {
    let is_ref = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.trim().starts_with("${") && s.trim().ends_with('}'))
    };
    match value {
        Value::Array(items) => !items.is_empty() && items.iter().all(is_ref),
        v => is_ref(v),
    }
}
