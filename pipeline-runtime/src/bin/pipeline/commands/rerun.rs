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
    let status = pipeline_runtime::start_again(
        &ctx.state,
        &run,
        params,
        Again::Rerun {
            id: None,
            mode,
            refresh,
        },
    )
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
    let mut edits = Vec::with_capacity(sets.len());
    for set in sets {
        let Some(edit) = set.split_once('=') else {
            return Err(CliError::usage(format!("--set takes NAME=VALUE, not `{set}`")));
        };
        edits.push(edit);
    }
    pipeline_runtime::apply_edits(run, &mut params, &edits).map_err(CliError::usage)?;
    Ok(params)
}

fn describe(status: std::process::ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".into(),
    }
}
