//! `pipeline artifacts RUN`: the artifacts a run recorded (step outputs, uploads, models).

use crate::context::{Ctx, find_run};
use crate::error::CliError;
use crate::format::{or_dash, short_type, size};
use crate::json;
use crate::output::{print, print_json};
use crate::table::Table;

/// Lists a run's artifacts.
pub fn artifacts(ctx: &Ctx, id: &str) -> Result<(), CliError> {
    let store = ctx.require_store()?;
    let run = find_run(&store, id)?;
    let artifacts = store.artifacts(&run.id)?;
    if ctx.json {
        return print_json(&artifacts.iter().map(json::artifact).collect());
    }
    if artifacts.is_empty() {
        let why = if run.mode == "debug" {
            " (it ran in debug mode, where values stay in memory; run_locally() writes step outputs as artifacts)"
        } else {
            ""
        };
        return print(&format!("run {} has no artifacts{why}\n", run.id));
    }
    let mut table = Table::new(&["NODE", "NAME", "KIND", "TYPE", "CODEC", "SIZE", "CHECKSUM", "URI"]).right(&[5]);
    for a in &artifacts {
        table.row(vec![
            if a.node.is_empty() {
                "(run)".to_string()
            } else {
                a.node.clone()
            },
            a.name.clone(),
            a.kind.as_str().to_string(),
            a.type_name.as_deref().map_or_else(|| "-".to_string(), short_type),
            a.codec.clone().unwrap_or_else(|| "-".to_string()),
            a.size.map_or_else(|| "-".to_string(), size),
            or_dash(a.checksum.clone().unwrap_or_default()),
            a.uri.clone(),
        ]);
    }
    print(&table.render())
}
