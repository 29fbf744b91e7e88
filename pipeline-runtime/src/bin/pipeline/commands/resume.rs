//! `pipeline resume RUN`: takes a failed, aborted or crashed run up again under its id. Steps
//! that finished with the same code and inputs are reused (shown as cached); the others run.

use crate::context::{Ctx, find_run};
use crate::error::CliError;
use crate::output::{print, print_json};

/// Resumes the run and reports how it ended.
pub fn resume(ctx: &Ctx, id: &str) -> Result<(), CliError> {
    let store = ctx.require_store()?;
    let run = find_run(&store, id)?;
    drop(store);
    eprintln!("pipeline: resuming run {} ({})", run.id, run.display_name());
    let after = pipeline_runtime::resume_run(&ctx.state, &run.id).map_err(CliError::failure)?;
    let nodes = ctx.require_store()?.nodes(&after.id)?;
    let reused = nodes
        .iter()
        .filter(|n| n.node.status == pipeline_runtime::NodeStatus::Cached)
        .count();
    if ctx.json {
        print_json(&serde_json::json!({
            "run": after.id,
            "status": after.status.as_str(),
            "steps": nodes.len(),
            "reused_or_cached": reused,
        }))?;
    } else {
        print(&format!(
            "run {} ({}): {}; {reused} of {} steps reused or cached\n",
            after.id,
            after.display_name(),
            after.status,
            nodes.len()
        ))?;
    }
    if after.status == pipeline_runtime::RunStatus::Completed {
        Ok(())
    } else {
        Err(CliError::failure(String::new()))
    }
}
