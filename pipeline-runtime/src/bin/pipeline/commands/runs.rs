//! `pipeline runs`: the recorded runs, newest first, with filters.

use crate::context::Ctx;
use crate::error::CliError;
use crate::format::{duration, timestamp};
use crate::json;
use crate::output::{print, print_json};
use crate::table::Table;
use clap::{Args, ValueEnum};
use pipeline_runtime::RunStatus;
use pipeline_runtime::store::{NodeRecord, RunFilter};
use std::collections::BTreeMap;

/// Options of `pipeline runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only runs of this project.
    #[arg(long, value_name = "PROJECT")]
    project: Option<String>,
    /// Only runs of this pipeline name.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Only runs carrying this tag (repeat for several: all must be present).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Only runs in this state.
    #[arg(long, value_enum)]
    status: Option<StatusArg>,
    /// At most this many runs (the newest).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Only runs started from this run's body (its nested pipelines).
    #[arg(long, value_name = "RUN")]
    parent: Option<String>,
}

/// A run state as typed on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusArg {
    /// Not ended yet.
    Running,
    /// Every step succeeded.
    Completed,
    /// A step or the body failed.
    Failed,
    /// Stopped.
    Aborted,
    /// Its controller died without recording an end.
    Crashed,
    /// Recorded, never started (`create_draft`).
    Draft,
}

impl From<StatusArg> for RunStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Running => RunStatus::Running,
            StatusArg::Completed => RunStatus::Completed,
            StatusArg::Failed => RunStatus::Failed,
            StatusArg::Aborted => RunStatus::Aborted,
            StatusArg::Crashed => RunStatus::Crashed,
            StatusArg::Draft => RunStatus::Draft,
        }
    }
}

/// Lists the runs.
pub fn runs(ctx: &Ctx, args: RunsArgs) -> Result<(), CliError> {
    let filtered = args.project.is_some()
        || args.name.is_some()
        || !args.tags.is_empty()
        || args.status.is_some()
        || args.parent.is_some();
    let filter = RunFilter {
        project: args.project,
        name: args.name,
        version: None,
        tags: args.tags,
        status: args.status.map(RunStatus::from),
        limit: args.limit,
        parent: args.parent,
    };
    let Some(store) = ctx.store()? else {
        return if ctx.json {
            print_json(&serde_json::json!([]))
        } else {
            print(&format!(
                "no runs: no pipeline has run with the state folder {}\n",
                ctx.state.display()
            ))
        };
    };
    let runs = store.runs(&filter)?;
    let mut listed = Vec::with_capacity(runs.len());
    for run in runs {
        let nodes = store.nodes(&run.id)?;
        listed.push((run, nodes));
    }
    if ctx.json {
        let values = listed
            .iter()
            .map(|(run, nodes)| {
                let mut value = json::run(run);
                value["steps"] = serde_json::json!(nodes.len());
                value["step_status"] = serde_json::json!(status_counts(nodes));
                value
            })
            .collect();
        return print_json(&serde_json::Value::Array(values));
    }
    if listed.is_empty() {
        let what = if filtered {
            "no runs match these filters"
        } else {
            "no runs recorded"
        };
        return print(&format!("{what} in {}\n", store.path().display()));
    }
    let mut table = Table::new(&[
        "ID",
        "PIPELINE",
        "VERSION",
        "STATUS",
        "STARTED (UTC)",
        "DURATION",
        "STEPS",
    ])
    .right(&[5, 6]);
    for (run, nodes) in &listed {
        table.row(vec![
            run.id.clone(),
            format!("{}/{}", run.project, run.display_name()),
            run.version.clone(),
            run.status.to_string(),
            timestamp(run.started),
            duration(Some(run.elapsed())),
            steps_cell(nodes),
        ]);
    }
    print(&table.render())
}

/// How many steps are in each state.
fn status_counts(nodes: &[NodeRecord]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for n in nodes {
        *counts.entry(n.node.status.as_str()).or_insert(0) += 1;
    }
    counts
}

/// `5`, or `5 (1 failed)` when some steps did not succeed.
fn steps_cell(nodes: &[NodeRecord]) -> String {
    let failed = nodes
        .iter()
        .filter(|n| n.node.status == pipeline_runtime::NodeStatus::Failed)
        .count();
    if failed > 0 {
        format!("{} ({failed} failed)", nodes.len())
    } else {
        nodes.len().to_string()
    }
}
