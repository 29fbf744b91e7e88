//! `pipeline dag RUN`: a run's DAG as text, Graphviz DOT or Mermaid.

use crate::context::{Ctx, find_run};
use crate::error::CliError;
use crate::json;
use crate::output::{print, print_json};
use clap::ValueEnum;
use pipeline_runtime::PipelineRun;

/// How to render the DAG.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum DagFormat {
    /// One line per step: state, duration, attempts, parents, error.
    #[default]
    Text,
    /// Graphviz DOT (`| dot -Tsvg > dag.svg`).
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

impl DagFormat {
    /// The name as typed on the command line.
    fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Dot => "dot",
            Self::Mermaid => "mermaid",
        }
    }
}

/// Prints a run's DAG.
pub fn dag(ctx: &Ctx, id: &str, format: DagFormat) -> Result<(), CliError> {
    let store = ctx.require_store()?;
    let record = find_run(&store, id)?;
    let run = PipelineRun::load(&store, &record.id)?
        .ok_or_else(|| CliError::not_found(format!("run {} disappeared from the store", record.id)))?;
    let dag = run.dag();
    let rendering = match format {
        DagFormat::Text => dag.to_text(),
        DagFormat::Dot => dag.to_dot(),
        DagFormat::Mermaid => dag.to_mermaid(),
    };
    if ctx.json {
        let nodes = store.nodes(&record.id)?;
        let edges: Vec<serde_json::Value> = dag
            .graph()
            .raw_edges()
            .iter()
            .map(|e| serde_json::json!({"from": dag.graph()[e.source()].name, "to": dag.graph()[e.target()].name}))
            .collect();
        return print_json(&serde_json::json!({
            "run": record.id,
            "nodes": nodes.iter().map(json::step).collect::<Vec<_>>(),
            "edges": edges,
            "format": format.name(),
            "rendering": rendering,
        }));
    }
    if dag.is_empty() && matches!(format, DagFormat::Text) {
        return print(&format!("run {} called no steps\n", record.id));
    }
    print(&rendering)
}
