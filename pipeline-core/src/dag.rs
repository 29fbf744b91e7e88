//! A snapshot of a run's DAG: nodes with their states and timings, edges from parents, and
//! renderings as text, Graphviz DOT and Mermaid (SVG is in [`crate::layout`]).

use crate::error::StepError;
use crate::status::NodeStatus;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// One node of a run: one call of a component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DagNode {
    /// Unique within the run: the component's name, then `name_1`, `name_2`... for repeats.
    pub name: String,
    /// The component's registered name.
    pub component: String,
    /// Names of the nodes this one waited for (data edges and explicit `parents`).
    pub parents: Vec<String>,
    /// Current state.
    pub status: NodeStatus,
    /// Number of attempts started so far (1 + retries).
    pub attempts: u32,
    /// When the first attempt started.
    pub started: Option<SystemTime>,
    /// When the node reached a final state.
    pub ended: Option<SystemTime>,
    /// Why it failed, was aborted or skipped.
    pub error: Option<StepError>,
}

impl DagNode {
    /// How long the node ran, once it has started; up to `now` while it still runs.
    pub fn duration(&self) -> Option<Duration> {
        let start = self.started?;
        let end = self.ended.unwrap_or_else(SystemTime::now);
        Some(end.duration_since(start).unwrap_or_default())
    }
}

/// The DAG of a run. Edges point from a parent to the node that waited for it.
#[derive(Debug, Clone, Default)]
pub struct PipelineDag {
    graph: DiGraph<DagNode, ()>,
    by_name: HashMap<String, NodeIndex>,
}

impl PipelineDag {
    /// Builds the graph from nodes given in creation order (parents before children).
    /// A parent name that is not among the nodes is kept in `parents` but gets no edge.
    pub fn from_nodes(nodes: Vec<DagNode>) -> Self {
        let mut dag = Self::default();
        dag.graph.reserve_nodes(nodes.len());
        dag.by_name.reserve(nodes.len());
        let mut parents = Vec::new();
        for node in nodes {
            // Parents come before their children, so they are all in the map already.
            parents.clear();
            parents.extend(node.parents.iter().filter_map(|p| dag.by_name.get(p).copied()));
            let name = node.name.clone();
            let index = dag.graph.add_node(node);
            for &parent in &parents {
                dag.graph.add_edge(parent, index, ());
            }
            dag.by_name.insert(name, index);
        }
        dag
    }

    /// The underlying `petgraph` graph, for any graph algorithm.
    pub fn graph(&self) -> &DiGraph<DagNode, ()> {
        &self.graph
    }

    /// Nodes in creation order (a topological order).
    pub fn nodes(&self) -> impl Iterator<Item = &DagNode> {
        self.graph.node_weights()
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&DagNode> {
        self.by_name.get(name).map(|&i| &self.graph[i])
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// True when no step was called.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// Names of the nodes that waited for `name`.
    pub fn children(&self, name: &str) -> Vec<&str> {
        let Some(&i) = self.by_name.get(name) else {
            return Vec::new();
        };
        let mut out: Vec<&str> = self.graph.neighbors(i).map(|c| self.graph[c].name.as_str()).collect();
        out.reverse(); // petgraph lists the newest edge first
        out
    }

    /// One line per node: name, state, duration, attempts, parents, and error if any.
    pub fn to_text(&self) -> String {
        let width = self.nodes().map(|n| n.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for n in self.nodes() {
            let _ = write!(out, "{:<width$}  {:<9}", n.name, n.status.as_str());
            match n.duration() {
                Some(d) => {
                    let _ = write!(out, "  {:>10}", format_duration(d));
                }
                None => {
                    let _ = write!(out, "  {:>10}", "-");
                }
            }
            if n.attempts > 1 {
                let _ = write!(out, "  attempts={}", n.attempts);
            }
            if !n.parents.is_empty() {
                let _ = write!(out, "  <- {}", n.parents.join(", "));
            }
            if let Some(e) = &n.error {
                let _ = write!(out, "  error: {e}");
            }
            out.push('\n');
        }
        out
    }

    /// Graphviz DOT, nodes coloured by state.
    pub fn to_dot(&self) -> String {
        let mut out =
            String::from("digraph pipeline {\n  rankdir=TB;\n  node [shape=box, style=\"rounded,filled\"];\n");
        for n in self.nodes() {
            let mut label = format!("{}\\n{}", dot_escape(&n.name), n.status);
            if let Some(d) = n.duration() {
                let _ = write!(label, " {}", format_duration(d));
            }
            let _ = writeln!(
                out,
                "  \"{}\" [label=\"{}\", fillcolor=\"{}\"];",
                dot_escape(&n.name),
                label,
                status_colour(n.status)
            );
        }
        for e in self.graph.raw_edges() {
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\";",
                dot_escape(&self.graph[e.source()].name),
                dot_escape(&self.graph[e.target()].name)
            );
        }
        out.push_str("}\n");
        out
    }

    /// A Mermaid flowchart, nodes classed by state.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        for (i, n) in self.graph.node_indices().map(|i| (i.index(), &self.graph[i])) {
            let _ = writeln!(
                out,
                "  n{i}[\"{}<br/>{}\"]:::{}",
                mermaid_escape(&n.name),
                n.status,
                n.status
            );
        }
        for e in self.graph.raw_edges() {
            let _ = writeln!(out, "  n{} --> n{}", e.source().index(), e.target().index());
        }
        for status in NodeStatus::ALL {
            let _ = writeln!(out, "  classDef {status} fill:{}", status_colour(status));
        }
        out
    }
}

fn status_colour(status: NodeStatus) -> &'static str {
    match status {
        NodeStatus::Pending | NodeStatus::Queued => "#eeeeee",
        NodeStatus::Running => "#9ecbff",
        NodeStatus::Completed => "#a6e3a1",
        NodeStatus::Cached => "#c6f0c2",
        NodeStatus::Failed => "#f38ba8",
        NodeStatus::Aborted => "#fab387",
        NodeStatus::Skipped => "#cccccc",
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;")
}

/// `1.234s`, `12.3ms`, `45µs`: short and readable.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 1.0 {
        format!("{secs:.3}s")
    } else if secs >= 1e-3 {
        format!("{:.1}ms", secs * 1e3)
    } else {
        format!("{}µs", d.as_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, parents: &[&str], status: NodeStatus) -> DagNode {
        DagNode {
            name: name.into(),
            component: name.trim_end_matches("_1").into(),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            status,
            attempts: 1,
            started: None,
            ended: None,
            error: None,
        }
    }

    fn diamond() -> PipelineDag {
        PipelineDag::from_nodes(vec![
            node("load", &[], NodeStatus::Completed),
            node("mean", &["load"], NodeStatus::Completed),
            node("mean_1", &["load"], NodeStatus::Failed),
            node("report", &["mean", "mean_1"], NodeStatus::Skipped),
        ])
    }

    #[test]
    fn edges_follow_parents() {
        let dag = diamond();
        assert_eq!(dag.len(), 4);
        assert_eq!(dag.children("load"), vec!["mean", "mean_1"]);
        assert_eq!(dag.graph().edge_count(), 4);
        assert!(petgraph::algo::toposort(dag.graph(), None).is_ok());
    }

    #[test]
    fn renders_text_dot_and_mermaid() {
        let dag = diamond();
        let text = dag.to_text();
        assert!(text.contains("report  skipped"), "{text}");
        assert!(text.contains("<- mean, mean_1"), "{text}");
        let dot = dag.to_dot();
        assert!(dot.starts_with("digraph pipeline {"));
        assert!(dot.contains("\"load\" -> \"mean_1\";"), "{dot}");
        let mermaid = dag.to_mermaid();
        assert!(mermaid.contains("n0 --> n2"), "{mermaid}");
        assert!(mermaid.contains("n2[\"mean_1<br/>failed\"]:::failed"), "{mermaid}");
    }

    #[test]
    fn escapes_quotes() {
        let dag = PipelineDag::from_nodes(vec![node("a\"b", &[], NodeStatus::Pending)]);
        assert!(dag.to_dot().contains("a\\\"b"));
        assert!(dag.to_mermaid().contains("a#quot;b"));
    }
}
