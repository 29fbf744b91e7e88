//! `pipeline stop RUN [--reason TEXT] [--mark aborted|failed|completed]`: asks a running run's
//! controller to stop it, and how to mark it.

use crate::context::{Ctx, find_run};
use crate::error::CliError;
use crate::output::{print, print_json};

/// Records a stop request for a running run.
pub fn stop(ctx: &Ctx, id: &str, reason: &str, mark: pipeline_runtime::StopMark) -> Result<(), CliError> {
    // Read first: only a live run needs the store written (an ended one, even on read-only
    // media, is answered without).
    let store = ctx.require_store()?;
    let run = find_run(&store, id)?;
    let store = if run.status == pipeline_core::RunStatus::Running {
        ctx.require_writable_store()?
    } else {
        store
    };
    let requested =
        run.status == pipeline_core::RunStatus::Running && store.request_stop_marked(&run.id, reason, mark)?;
    if ctx.json {
        return print_json(&serde_json::json!({
            "run": run.id,
            "requested": requested,
            "status": run.status.as_str(),
            "reason": reason,
        }));
    }
    if run.status == pipeline_core::RunStatus::Crashed {
        let whose = run.controller.as_ref().map(|c| format!(" ({c})")).unwrap_or_default();
        return print(&format!(
            "run {} crashed: its controller{whose} is gone, so nothing is running to stop\n",
            run.id
        ));
    }
    if requested {
        print(&format!("stop requested for run {} ({reason})\n", run.id))
    } else {
        // It ended between the lookup and the request, or long before: nothing to stop.
        let status = store.run(&run.id)?.map_or(run.status, |r| r.status);
        print(&format!(
            "run {} has already ended ({status}); nothing to stop\n",
            run.id
        ))
    }
}
