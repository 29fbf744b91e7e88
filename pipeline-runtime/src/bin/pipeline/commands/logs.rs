//! `pipeline logs RUN STEP [--follow]`: a local-mode step's log (its last attempt), and with
//! `--follow` the lines it writes until it reaches a final state.

use crate::context::{Ctx, find_run, find_step};
use crate::error::CliError;
use crate::output::print_bytes;
use pipeline_runtime::RunStatus;
use pipeline_runtime::store::{NodeRecord, RunRecord, RunStore};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often `--follow` looks for new lines and state changes.
const POLL: Duration = Duration::from_millis(200);

/// Prints a step's log.
pub fn logs(ctx: &Ctx, id: &str, step: &str, follow: bool) -> Result<(), CliError> {
    let store = ctx.require_store()?;
    let run = find_run(&store, id)?;
    let nodes = store.nodes(&run.id)?;
    let node = find_step(&nodes, &run, step)?;
    if follow {
        return follow_log(ctx, &store, run, node.clone());
    }
    let path = log_path(ctx, &run, node)?;
    let mut file = open(&path, step)?;
    copy_new(&mut file, &path)
}

/// The step's log file, or why it has none.
fn log_path(ctx: &Ctx, run: &RunRecord, node: &NodeRecord) -> Result<PathBuf, CliError> {
    let step = &node.node.name;
    // The store records an attempt's log with the state change that follows its start, so
    // the log of the attempt running now is found where the local executor puts it.
    let current = (run.mode == "local" && node.node.attempts > 0).then(|| {
        pipeline_runtime::store::step_folder(&pipeline_runtime::store::run_folder(&ctx.state, &run.id), step)
            .join(format!("attempt-{}.log", node.node.attempts))
    });
    if !node.node.status.is_terminal() {
        if let Some(path) = &current {
            return Ok(path.clone());
        }
    }
    match node.log_path.as_ref().or(current.as_ref()) {
        Some(path) => Ok(path.clone()),
        None if run.mode == "debug" => Err(CliError::not_found(format!(
            "step `{step}` ran in-process in debug mode and has no log file (only steps run by run_locally() write logs)"
        ))),
        None => Err(CliError::not_found(format!(
            "step `{step}` has no log file: it is {} and never started a worker",
            node.node.status
        ))),
    }
}

/// Opens a step's log file.
fn open(path: &Path, step: &str) -> Result<File, CliError> {
    File::open(path).map_err(|e| {
        CliError::failure(format!(
            "cannot open the log of step `{step}` ({}): {e}",
            path.display()
        ))
    })
}

/// Prints what was added to `file` since the last call.
fn copy_new(file: &mut File, path: &Path) -> Result<(), CliError> {
    use std::io::{Seek, SeekFrom};
    // A log past its cap is trimmed from the start: follow it from its new start.
    let (position, length) = (file.stream_position(), file.metadata().map(|m| m.len()));
    if let (Ok(position), Ok(length)) = (position, length)
        && length < position
    {
        eprintln!("pipeline: the log reached its cap and was trimmed; going on from its start");
        file.seek(SeekFrom::Start(0))
            .map_err(|e| CliError::failure(format!("cannot read the log {}: {e}", path.display())))?;
    }
    let mut buffer = [0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| CliError::failure(format!("cannot read the log {}: {e}", path.display())))?;
        if n == 0 {
            return Ok(());
        }
        print_bytes(&buffer[..n])?;
    }
}

/// Prints the log as it grows, switching to a retry's new log, until the step reaches a
/// final state or the run ends.
fn follow_log(ctx: &Ctx, store: &RunStore, mut run: RunRecord, mut node: NodeRecord) -> Result<(), CliError> {
    let step = node.node.name.clone();
    if run.mode == "debug" {
        log_path(ctx, &run, &node)?;
    }
    let mut current: Option<(PathBuf, File)> = None;
    loop {
        let done = node.node.status.is_terminal() || run.status != RunStatus::Running;
        if let Ok(path) = log_path(ctx, &run, &node) {
            if current.as_ref().is_none_or(|(p, _)| *p != path) {
                if let Some((old, mut file)) = current.take() {
                    copy_new(&mut file, &old)?;
                    eprintln!(
                        "pipeline: step `{step}` started another attempt; its log is {}",
                        path.display()
                    );
                }
                // The worker creates the file as it starts; wait for it while the step lives.
                match File::open(&path) {
                    Ok(file) => current = Some((path, file)),
                    Err(e) if done => {
                        return Err(CliError::failure(format!(
                            "cannot open the log of step `{step}` ({}): {e}",
                            path.display()
                        )));
                    }
                    Err(_) => {}
                }
            }
        }
        if let Some((path, file)) = current.as_mut() {
            copy_new(file, path)?;
        }
        if done {
            if current.is_none() {
                log_path(ctx, &run, &node)?;
            }
            if run.status == RunStatus::Crashed && !node.node.status.is_terminal() {
                let whose = run.controller.as_ref().map(|c| format!(" ({c})")).unwrap_or_default();
                eprintln!(
                    "pipeline: run {} crashed: its controller{whose} is gone; step `{step}` will write no more",
                    run.id
                );
            }
            return Ok(());
        }
        std::thread::sleep(POLL);
        run = store
            .run(&run.id)?
            .ok_or_else(|| CliError::not_found(format!("run {} disappeared from the store", run.id)))?;
        node = store
            .nodes(&run.id)?
            .into_iter()
            .find(|n| n.node.name == step)
            .ok_or_else(|| CliError::not_found(format!("step `{step}` disappeared from the store")))?;
    }
}
