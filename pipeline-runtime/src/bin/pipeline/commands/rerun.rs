//! `pipeline rerun RUN [--set NAME=VALUE]... [--mode MODE] [--refresh [COMPONENT]...]`: starts a new run of a recorded
//! run's pipeline with its recorded parameters, some edited (ClearML's "clone and enqueue").
//! The recorded executable is started as the pipeline's controller; the new run records the
//! one it came from.

use crate::context::{Ctx, find_run};
use crate::error::CliError;
use crate::output::print;
use pipeline_runtime::Again;
use pipeline_runtime::store::{RunFilter, RunRecord};

/// Parses and applies `--set` edits to the run's recorded parameters, then runs the
/// pipeline again and reports the new run.
pub fn rerun(
    ctx: &Ctx,
    id: &str,
    sets: &[String],
    mode: Option<&str>,
    refresh: &pipeline_runtime::CacheRefresh,
) -> Result<(), CliError> {
    let store = ctx.require_store()?;
    let run = find_run(&store, id)?;
    let params = edited_parameters(&run, sets)?;
    drop(store);
    let spawned = std::time::SystemTime::now();
    eprintln!(
        "pipeline: running {} again ({} mode), from run {}",
        run.display_name(),
        mode.unwrap_or(&run.mode),
        run.id
    );
    let status = pipeline_runtime::start_again(&ctx.state, &run, params, Again::Rerun { mode, refresh })
        .map_err(CliError::failure)?;
    // The new run, if one started: the newest whose origin is this run.
    let newest = ctx
        .require_store()?
        .runs(&RunFilter {
            project: Some(run.project.clone()),
            name: Some(run.name.clone()),
            ..RunFilter::default()
        })?
        .into_iter()
        .find(|r| r.origin.as_deref() == Some(run.id.as_str()) && r.started >= spawned);
    match newest {
        Some(new) if status.code() != Some(pipeline_runtime::EXIT_SETUP) => {
            if ctx.json {
                return crate::output::print_json(&serde_json::json!({
                    "run": new.id,
                    "origin": run.id,
                    "status": new.status.as_str(),
                }));
            }
            print(&format!("run {} ({}): {}\n", new.id, new.display_name(), new.status))?;
            if status.success() {
                Ok(())
            } else {
                Err(CliError::failure(String::new()))
            }
        }
        _ => Err(CliError::failure(format!(
            "the pipeline did not start ({}); see the lines above",
            describe(status)
        ))),
    }
}

/// The run's parameters as the controller takes them (a JSON object by function parameter
/// name), with `--set NAME=VALUE` edits: VALUE is JSON if it parses as JSON, else a string.
fn edited_parameters(run: &RunRecord, sets: &[String]) -> Result<serde_json::Map<String, serde_json::Value>, CliError> {
    let mut params = pipeline_runtime::recorded_parameters(run)
        .map_err(|e| CliError::failure(format!("run {}: {e}: it cannot be started again", run.id)))?;
    for set in sets {
        let Some((name, value)) = set.split_once('=') else {
            return Err(CliError::usage(format!("--set takes NAME=VALUE, not `{set}`")));
        };
        let key = name.rsplit('/').next().unwrap_or(name);
        let Some(old) = params.get(key) else {
            let known: Vec<&str> = run.parameters.iter().map(|(name, _)| name.as_str()).collect();
            return Err(CliError::usage(format!(
                "run {} has no parameter `{name}`; its parameters: {}",
                run.id,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        let new = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        if !same_kind(old, &new) {
            return Err(CliError::usage(format!(
                "parameter `{name}` was {} ({old}); `{value}` is {}",
                kind(old),
                kind(&new)
            )));
        }
        params.insert(key.to_string(), new);
    }
    Ok(params)
}

/// Whether `new` can take `old`'s place: the same JSON kind (the program checks the type).
fn same_kind(old: &serde_json::Value, new: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    matches!(
        (old, new),
        (Null, _)
            | (_, Null)
            | (Bool(_), Bool(_))
            | (Number(_), Number(_))
            | (String(_), String(_))
            | (Array(_), Array(_))
            | (Object(_), Object(_))
    )
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".into(),
    }
}
