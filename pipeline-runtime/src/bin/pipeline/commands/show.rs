//! `pipeline show RUN [--task-type TYPE]`: a run's identity, parameters, timings and a table of
//! its steps (those of one task type).

use crate::context::{Ctx, find_run};
use crate::error::CliError;
use crate::format::{duration, number, one_line, or_dash, timestamp};
use crate::json;
use crate::metrics::{label, last_values};
use crate::output::{print, print_json};
use crate::table::Table;
use pipeline_runtime::NodeStatus;
use pipeline_runtime::store::{NodeRecord, RunRecord};

/// Shows one run.
pub fn show(ctx: &Ctx, id: &str, task_type: Option<&str>) -> Result<(), CliError> {
    let store = ctx.require_store()?;
    let run = find_run(&store, id)?;
    let mut nodes = store.nodes(&run.id)?;
    if let Some(wanted) = task_type {
        nodes.retain(|n| n.task_type.as_deref() == Some(wanted));
    }
    let metrics = last_values(&store.metrics(&run.id)?);
    let texts = store.texts(&run.id)?;
    let nested = store.runs(&pipeline_runtime::store::RunFilter {
        parent: Some(run.id.clone()),
        ..Default::default()
    })?;
    if ctx.json {
        let mut value = json::run(&run);
        value["steps"] = nodes.iter().map(json::step).collect();
        value["metrics"] = metrics
            .iter()
            .map(|((title, series), v)| serde_json::json!({"title": title, "series": series, "last": v}))
            .collect();
        value["texts"] = texts
            .iter()
            .map(|(node, text)| serde_json::json!({"node": node, "text": text}))
            .collect();
        value["nested"] = nested
            .iter()
            .map(|r| serde_json::json!({"run": r.id, "node": r.parent.as_ref().map(|p| &p.1), "status": r.status.as_str()}))
            .collect();
        return print_json(&value);
    }
    let mut out = header(&run);
    out.push('\n');
    if nodes.is_empty() && task_type.is_some() {
        out.push_str(&format!("no steps of task type `{}`\n", task_type.unwrap_or_default()));
    } else if nodes.is_empty() {
        out.push_str("no steps were called\n");
    } else {
        out.push_str(&steps(&nodes));
    }
    if !nested.is_empty() {
        out.push_str("\nnested runs:\n");
        // Oldest first, as the steps are listed.
        for r in nested.iter().rev() {
            let node = r.parent.as_ref().map_or("?", |p| p.1.as_str());
            out.push_str(&format!("  {node}: {} ({})\n", r.id, r.status));
        }
    }
    if !metrics.is_empty() {
        let mut table = Table::new(&["METRIC", "LAST"]).right(&[1]);
        for ((title, series), v) in &metrics {
            table.row(vec![label(title, series), number(*v)]);
        }
        out.push('\n');
        out.push_str(&table.render());
    }
    if !texts.is_empty() {
        out.push_str("\nreports:\n");
        for (node, text) in &texts {
            let from = if node.is_empty() { "run" } else { node };
            for line in text.lines() {
                out.push_str(&format!("  [{from}] {}\n", one_line(line)));
            }
        }
    }
    print(&out)
}

/// The key/value block at the top.
fn header(run: &RunRecord) -> String {
    let mut kv = Table::headless(2);
    let mut add = |key: &str, value: String| kv.row(vec![key.to_string(), value]);
    add("run", run.id.clone());
    add("project", run.project.clone());
    add("name", run.name.clone());
    add("run number", run.run_number.to_string());
    add("version", run.version.clone());
    add("status", run.status.to_string());
    add("mode", run.mode.clone());
    add("started", format!("{} UTC", timestamp(run.started)));
    add(
        "ended",
        run.ended
            .map_or_else(|| "- (still running)".to_string(), |t| format!("{} UTC", timestamp(t))),
    );
    add("duration", duration(Some(run.elapsed())));
    add("tags", or_dash(run.tags.join(", ")));
    add("code hash", run.code_hash.clone());
    if let Some(origin) = &run.origin {
        add("rerun of", origin.clone());
    }
    if let Some((parent, node)) = &run.parent {
        add("nested in", format!("{parent} (step {node})"));
    }
    if let Some(controller) = run
        .controller
        .as_ref()
        .filter(|_| run.status == pipeline_runtime::RunStatus::Crashed)
    {
        add("controller", format!("{controller} (gone)"));
    }
    let mut out = kv.render();
    out.push_str(&listing(
        "parameters",
        run.parameters.iter().map(|(k, v)| (k.clone(), v.clone())),
    ));
    out.push_str(&listing(
        "configuration",
        run.configuration.iter().map(|(k, v)| (k.clone(), v.to_string())),
    ));
    out
}

/// `title: -`, or the title then one indented, aligned `name = value` line per entry.
fn listing(title: &str, entries: impl Iterator<Item = (String, String)>) -> String {
    let entries: Vec<(String, String)> = entries.map(|(k, v)| (one_line(&k), one_line(&v))).collect();
    if entries.is_empty() {
        return format!("{title}: -\n");
    }
    let width = entries.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    let mut out = format!("{title}:\n");
    for (k, v) in entries {
        out.push_str(&format!("  {k:<width$} = {v}\n"));
    }
    out
}

/// The steps table.
fn steps(nodes: &[NodeRecord]) -> String {
    let mut table = Table::new(&[
        "STEP", "TYPE", "STATUS", "DURATION", "ATTEMPTS", "CACHED", "PARENTS", "ERROR",
    ])
    .right(&[3, 4]);
    for n in nodes {
        let d = &n.node;
        table.row(vec![
            d.name.clone(),
            n.task_type.clone().unwrap_or_else(|| "-".into()),
            d.status.to_string(),
            duration(d.duration()),
            d.attempts.to_string(),
            if d.status == NodeStatus::Cached { "yes" } else { "no" }.to_string(),
            or_dash(d.parents.join(", ")),
            d.error.as_ref().map_or_else(|| "-".to_string(), ToString::to_string),
        ]);
    }
    table.render()
}
