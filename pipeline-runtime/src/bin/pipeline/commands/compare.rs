//! `pipeline compare RUN RUN`: two runs side by side: identity, parameters, step durations and
//! the last value of each metric, with differences marked `*`.

use crate::context::{Ctx, find_run};
use crate::error::CliError;
use crate::format::{duration, number, parameter_value};
use crate::json;
use crate::metrics::{label, last_values};
use crate::output::{print, print_json};
use crate::table::Table;
use pipeline_runtime::NodeStatus;
use pipeline_runtime::store::{NodeRecord, RunRecord, RunStore};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The marker of a row whose values differ.
const DIFFERS: &str = "*";

/// One run and what is compared of it.
struct Side {
    /// The run's record.
    run: RunRecord,
    /// Its steps.
    nodes: Vec<NodeRecord>,
    /// The last value of each metric.
    metrics: BTreeMap<(String, String), f64>,
}

impl Side {
    /// Reads the run `id` (or prefix) and what is compared of it.
    fn load(store: &RunStore, id: &str) -> Result<Self, CliError> {
        let run = find_run(store, id)?;
        let nodes = store.nodes(&run.id)?;
        let metrics = last_values(&store.metrics(&run.id)?);
        Ok(Self { run, nodes, metrics })
    }

    /// The recorded JSON text of parameter `name`.
    fn parameter(&self, name: &str) -> Option<&str> {
        self.run
            .parameters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The step called `name`.
    fn step(&self, name: &str) -> Option<&NodeRecord> {
        self.nodes.iter().find(|n| n.node.name == name)
    }
}

/// Compares two runs.
pub fn compare(ctx: &Ctx, first: &str, second: &str) -> Result<(), CliError> {
    let store = ctx.require_store()?;
    let a = Side::load(&store, first)?;
    let b = Side::load(&store, second)?;
    let parameters = union(
        a.run.parameters.iter().map(|(k, _)| k.clone()),
        b.run.parameters.iter().map(|(k, _)| k.clone()),
    );
    let steps = union(
        a.nodes.iter().map(|n| n.node.name.clone()),
        b.nodes.iter().map(|n| n.node.name.clone()),
    );
    let metrics = union(a.metrics.keys().cloned(), b.metrics.keys().cloned());
    if ctx.json {
        return print_json(&json!({
            "a": json::run(&a.run),
            "b": json::run(&b.run),
            "parameters": parameters.iter().map(|p| {
                let (x, y) = (a.parameter(p), b.parameter(p));
                json!({"name": p, "a": x.map(parameter_value), "b": y.map(parameter_value), "differs": x != y})
            }).collect::<Vec<_>>(),
            "steps": steps.iter().map(|s| {
                let (x, y) = (a.step(s), b.step(s));
                json!({"name": s, "a": x.map(step_json), "b": y.map(step_json), "differs": step_differs(x, y)})
            }).collect::<Vec<_>>(),
            "metrics": metrics.iter().map(|key| {
                let (x, y) = (a.metrics.get(key), b.metrics.get(key));
                json!({"title": key.0, "series": key.1, "a": x, "b": y, "differs": x != y})
            }).collect::<Vec<_>>(),
        }));
    }
    let mut out = identity(&a.run, &b.run);
    let mut table = Table::new(&["  PARAMETER", "A", "B"]);
    for p in &parameters {
        let (x, y) = (a.parameter(p), b.parameter(p));
        table.row(vec![
            marked(x != y, p),
            x.unwrap_or("-").to_string(),
            y.unwrap_or("-").to_string(),
        ]);
    }
    out.push('\n');
    out.push_str(&if table.is_empty() {
        "no parameters\n".to_string()
    } else {
        table.render()
    });
    let mut table = Table::new(&["  STEP", "A", "B", "CHANGE"]).right(&[1, 2, 3]);
    for s in &steps {
        let (x, y) = (a.step(s), b.step(s));
        table.row(vec![
            marked(step_differs(x, y), s),
            step_cell(x),
            step_cell(y),
            change(x, y),
        ]);
    }
    out.push('\n');
    out.push_str(&if table.is_empty() {
        "no steps\n".to_string()
    } else {
        table.render()
    });
    let mut table = Table::new(&["  METRIC (LAST)", "A", "B"]).right(&[1, 2]);
    for key in &metrics {
        let (x, y) = (a.metrics.get(key), b.metrics.get(key));
        table.row(vec![
            marked(x != y, &label(&key.0, &key.1)),
            x.map_or_else(|| "-".to_string(), |v| number(*v)),
            y.map_or_else(|| "-".to_string(), |v| number(*v)),
        ]);
    }
    out.push('\n');
    out.push_str(&if table.is_empty() {
        "no metrics\n".to_string()
    } else {
        table.render()
    });
    out.push_str(&format!("\n{DIFFERS} marks values that differ\n"));
    print(&out)
}

/// The runs' identities side by side.
fn identity(a: &RunRecord, b: &RunRecord) -> String {
    let mut table = Table::new(&["", "A", "B"]);
    let rows: [(&str, String, String); 6] = [
        ("run", a.id.clone(), b.id.clone()),
        (
            "pipeline",
            format!("{}/{}", a.project, a.display_name()),
            format!("{}/{}", b.project, b.display_name()),
        ),
        ("version", a.version.clone(), b.version.clone()),
        ("mode", a.mode.clone(), b.mode.clone()),
        ("status", a.status.to_string(), b.status.to_string()),
        ("duration", duration(Some(a.elapsed())), duration(Some(b.elapsed()))),
    ];
    for (key, x, y) in rows {
        // Ids, numbers and durations always differ; only mark what says something.
        let differs = matches!(key, "version" | "mode" | "status") && x != y
            || key == "pipeline" && (&a.project, &a.name) != (&b.project, &b.name);
        table.row(vec![marked(differs, key), x, y]);
    }
    table.render()
}

/// Names from both sides, in the first side's order, then the second's new ones.
fn union<T: Ord + Clone>(a: impl Iterator<Item = T>, b: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = std::collections::BTreeSet::new();
    a.chain(b).filter(|x| seen.insert(x.clone())).collect()
}

/// `* name` when the values differ, `  name` when not.
fn marked(differs: bool, name: &str) -> String {
    format!("{} {name}", if differs { DIFFERS } else { " " })
}

/// A step differs when one run lacks it or their final states differ.
fn step_differs(x: Option<&NodeRecord>, y: Option<&NodeRecord>) -> bool {
    match (x, y) {
        (Some(x), Some(y)) => x.node.status != y.node.status,
        _ => true,
    }
}

/// `12.3ms`, `4.0ms (failed)`, `(skipped)`, or `-` when the run has no such step.
fn step_cell(n: Option<&NodeRecord>) -> String {
    let Some(n) = n else { return "-".to_string() };
    let d = &n.node;
    match (d.duration(), d.status) {
        (Some(t), NodeStatus::Completed) => duration(Some(t)),
        (Some(t), status) => format!("{} ({status})", duration(Some(t))),
        (None, status) => format!("({status})"),
    }
}

/// B's duration against A's: `+12%`, `-3%`.
fn change(x: Option<&NodeRecord>, y: Option<&NodeRecord>) -> String {
    let (Some(x), Some(y)) = (x.and_then(|n| n.node.duration()), y.and_then(|n| n.node.duration())) else {
        return String::new();
    };
    let (x, y) = (x.as_secs_f64(), y.as_secs_f64());
    if x <= 0.0 {
        return String::new();
    }
    format!("{:+.0}%", (y - x) / x * 100.0)
}

/// A step's state and duration, for `--json`.
fn step_json(n: &NodeRecord) -> Value {
    json!({
        "status": n.node.status.as_str(),
        "duration_s": n.node.duration().map(|d| d.as_secs_f64()),
    })
}
