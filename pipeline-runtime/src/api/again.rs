//! Starting a recorded run's pipeline again: as a new run (`pipeline rerun`) or as the same
//! run taken up where it stopped (`resume`). The recorded executable is started as the
//! pipeline's controller (the worker hook's controller mode) with the recorded parameters.

use crate::store::{RunRecord, RunStore};
use crate::worker::CONTROLLER_ENV;
use serde_json::{Map, Value};
use std::path::Path;
use std::process::{Command, ExitStatus};

/// How the pipeline starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Again<'a> {
    /// A new run, which records the one it came from; steps run in `mode` (`debug`, `local`,
    /// `remote`), or as before.
    Rerun {
        /// The new run's id (see [`new_run_id`]); the controller makes one when `None`.
        id: Option<&'a str>,
        /// Where its steps run, when not as before.
        mode: Option<&'a str>,
        /// Steps that run and overwrite their cache entry instead of reading it.
        refresh: &'a crate::config::CacheRefresh,
    },
    /// The same run, under its id: steps that finished with the same code and inputs are
    /// reused, the others run.
    Resume,
}

/// The run's parameters as its pipeline's controller takes them: a JSON object by function
/// parameter name (`args_map` sections dropped).
pub fn recorded_parameters(run: &RunRecord) -> Result<Map<String, Value>, String> {
    run.parameters
        .iter()
        .map(|(name, json)| {
            let key = name.rsplit('/').next().unwrap_or(name);
            serde_json::from_str(json)
                .map(|value| (key.to_string(), value))
                .map_err(|e| format!("its parameter `{name}` was not recorded as JSON ({e})"))
        })
        .collect()
}

/// Applies `edits` (`NAME`, `VALUE`) to `params`, a run's recorded parameters: `VALUE` is JSON
/// if it parses as JSON, else a string, and must be of the same JSON kind as the recorded
/// value (the program checks the type when it starts); `NAME` may carry an `args_map`
/// section (`section/name`). Errors name the parameter and what it takes.
pub fn apply_edits(run: &RunRecord, params: &mut Map<String, Value>, edits: &[(&str, &str)]) -> Result<(), String> {
    for &(name, value) in edits {
        let key = name.rsplit('/').next().unwrap_or(name);
        let Some(old) = params.get(key) else {
            let known: Vec<&str> = run.parameters.iter().map(|(name, _)| name.as_str()).collect();
            return Err(format!(
                "run {} has no parameter `{name}`; its parameters: {}",
                run.id,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        };
        let new = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
        if !same_kind(old, &new) {
            return Err(format!(
                "parameter `{name}` was {} ({old}); `{value}` is {}",
                kind(old),
                kind(&new)
            ));
        }
        params.insert(key.to_string(), new);
    }
    Ok(())
}

/// Whether `new` can take `old`'s place: the same JSON kind (the program checks the type).
fn same_kind(old: &Value, new: &Value) -> bool {
    use Value::*;
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

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Starts `run`'s recorded executable (recorded in the state folder `state`) as its pipeline's
/// controller with `params`, and waits for it; its output goes to this process's. The exit
/// status is the controller's: [`crate::EXIT_SETUP`] when the run could not start (a parameter
/// of the wrong type, a run that cannot be resumed), with the reason on stderr.
pub fn start_again(
    state: &Path,
    run: &RunRecord,
    params: Map<String, Value>,
    how: Again<'_>,
) -> Result<ExitStatus, String> {
    let mut executable = command(state, run, params, how)?;
    let program = executable.get_program().to_os_string();
    executable
        .status()
        .map_err(|e| format!("cannot start `{}`: {e}", Path::new(&program).display()))
}

/// [`start_again`] without waiting: the controller's process, its stdout and stderr appended
/// to the file `output` (created with its folder), its stdin closed. The controller does not
/// depend on the caller: it goes on if the caller dies.
pub fn spawn_again(
    state: &Path,
    run: &RunRecord,
    params: Map<String, Value>,
    how: Again<'_>,
    output: &Path,
) -> Result<std::process::Child, String> {
    let mut executable = command(state, run, params, how)?;
    let program = executable.get_program().to_os_string();
    let cannot = |e: std::io::Error| format!("cannot write the controller's output to `{}`: {e}", output.display());
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).map_err(cannot)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(output)
        .map_err(cannot)?;
    executable
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().map_err(cannot)?)
        .stderr(file)
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", Path::new(&program).display()))
}

/// An id for a new run of `run`'s pipeline (for [`Again::Rerun`]'s `id`): a caller that
/// chooses it knows where to find the run before it starts.
pub fn new_run_id(run: &RunRecord) -> String {
    crate::engine::run_key(&run.name)
}

/// The command that starts `run`'s executable as its pipeline's controller.
fn command(state: &Path, run: &RunRecord, params: Map<String, Value>, how: Again<'_>) -> Result<Command, String> {
    let (Some(executable), Some(entry)) = (&run.executable, &run.entry) else {
        return Err(format!(
            "run {} was recorded without its executable (by an older version): it cannot be started again",
            run.id
        ));
    };
    if !executable.exists() {
        return Err(format!(
            "run {}'s executable `{}` no longer exists (rebuilt elsewhere or removed); build it again there",
            run.id,
            executable.display()
        ));
    }
    let mut request = match how {
        Again::Rerun { id, mode, refresh } => serde_json::json!({
            "pipeline": entry,
            "params": params,
            "mode": mode.unwrap_or(&run.mode),
            "origin": run.id,
            "refresh": refresh,
            "run": id,
        }),
        Again::Resume => serde_json::json!({
            "pipeline": entry,
            "params": params,
            "mode": run.mode,
            "resume": run.id,
        }),
    };
    // A pipeline assembled at run time is built again from the spec its run recorded.
    if entry == super::controller::ENTRY {
        let spec = run
            .configuration
            .get(super::controller::SPEC_KEY)
            .ok_or_else(|| format!("run {} was recorded without its pipeline spec", run.id))?;
        request["spec"] = spec.clone();
    }
    let mut command = Command::new(executable);
    command
        .env(CONTROLLER_ENV, request.to_string())
        .env(crate::config::STATE_DIR_ENV, state)
        // Its remote steps reach the cluster the way the caller's would.
        .env(
            crate::config::RAY_BACKEND_ENV,
            crate::config::Config::current().ray.backend.as_str(),
        )
        .env_remove(crate::worker::MANIFEST_ENV);
    Ok(command)
}

/// The parameters run `run` of `descriptor`'s pipeline was recorded with, from the current
/// configuration's store (for the generated `resume`).
pub fn resume_params(
    descriptor: &pipeline_core::PipelineDescriptor,
    run: &str,
) -> Result<Map<String, Value>, crate::error::PipelineError> {
    let fail = |reason: String| crate::error::PipelineError::Resume {
        run: run.to_string(),
        reason,
    };
    let store = RunStore::open_default_read_only().map_err(|e| fail(e.to_string()))?;
    let record = store
        .run(run)
        .map_err(|e| fail(e.to_string()))?
        .filter(|r| r.id == run)
        .ok_or_else(|| fail("there is no such run in the store (give its whole id)".into()))?;
    record
        .check_pipeline(descriptor.project, descriptor.name)
        .map_err(fail)?;
    recorded_parameters(&record).map_err(fail)
}

/// The error of a recorded parameter that does not read back as its type.
pub fn resume_error(run: &str, reason: String) -> crate::error::PipelineError {
    crate::error::PipelineError::Resume {
        run: run.to_string(),
        reason,
    }
}

/// The configuration under which the generated `resume` runs its pipeline: the current one,
/// resuming run `run`.
pub fn resume_config(run: &str) -> crate::config::Config {
    crate::config::Config::current().with_resume(run.to_string())
}

/// Resumes run `id` (or an unambiguous prefix) of the state folder `state`: a failed, aborted
/// or crashed run goes on under the same id, reusing the steps that finished (same code, same
/// inputs) and running the rest. Gives the run as it ended. The controller's output goes to
/// this process's.
pub fn resume_run(state: &Path, id: &str) -> Result<RunRecord, String> {
    let path = state.join("runs.db");
    let store = RunStore::open_read_only(&path).map_err(|e| e.to_string())?;
    let run = store
        .run(id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no run `{id}` in {}", path.display()))?;
    drop(store);
    let params = recorded_parameters(&run).map_err(|e| format!("run {}: {e}", run.id))?;
    let status = start_again(state, &run, params, Again::Resume)?;
    let after = RunStore::open_read_only(&path)
        .and_then(|s| s.run(&run.id))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("run {} is gone from the store", run.id))?;
    if status.code() == Some(crate::worker::EXIT_SETUP) && after.status != crate::RunStatus::Running {
        return Err(format!("run {} could not be resumed; see the lines above", run.id));
    }
    Ok(after)
}
