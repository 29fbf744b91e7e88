//! A layered (Sugiyama-style) layout of a [`PipelineDag`] and its rendering as a standalone SVG.
//!
//! Written here rather than taken from a graph-drawing crate: those route edges with searches
//! that blow up on DAGs with many converging paths, while each pass here is linear in the size
//! of the graph (plus one sort per layer), so runs with 100k steps still lay out quickly.

use crate::dag::{DagNode, PipelineDag};
use crate::format::human_duration;
use crate::status::NodeStatus;
use std::fmt::Write as _;

/// Height of every box.
const NODE_H: f64 = 46.0;
/// Bounds of a box's width, whatever its labels.
const MIN_W: f64 = 120.0;
const MAX_W: f64 = 320.0;
/// Approximate advance of one character of the labels, in pixels.
const CHAR_W: f64 = 7.5;
/// Horizontal room inside a box around its longest label.
const PAD_X: f64 = 24.0;
/// Space between boxes of a layer, between layers, and around the drawing.
const GAP_X: f64 = 24.0;
const GAP_Y: f64 = 56.0;
const MARGIN: f64 = 16.0;
/// Names longer than this many characters are cut and end with `…`.
const MAX_NAME: usize = 40;
/// Rounds of barycenter sweeps (one down, one up each): crossings rarely drop after a few.
const SWEEPS: usize = 4;

/// Where the boxes and edges of a DAG go. Coordinates are pixels, `y` grows downwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// One box per node, in DAG order (`nodes[i].index == i`).
    pub nodes: Vec<NodeBox>,
    /// One line per edge, in the order of the graph's edges.
    pub edges: Vec<EdgeLine>,
    /// Width of the whole drawing, margins included.
    pub width: f64,
    /// Height of the whole drawing, margins included.
    pub height: f64,
}

/// A node's box; `x`, `y` is its top-left corner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeBox {
    /// Index of the node in DAG order.
    pub index: usize,
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

/// An edge from the bottom middle of a parent's box to the top middle of its child's.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeLine {
    /// Index of the parent.
    pub from: usize,
    /// Index of the child.
    pub to: usize,
    /// A cubic Bézier curve: start, two control points, end.
    pub points: Vec<(f64, f64)>,
}

/// Lays `dag` out in layers from top to bottom: a node sits one layer below its deepest
/// parent, and each layer is ordered by barycenter sweeps to reduce crossings, then centred
/// under the widest one. Edges that span several layers are single curves (no dummy nodes),
/// so they may pass behind boxes of the layers between. Deterministic.
pub fn layout(dag: &PipelineDag) -> Layout {
    let graph = dag.graph();
    let n = graph.node_count();
    let edges: Vec<(usize, usize)> = graph
        .raw_edges()
        .iter()
        .map(|e| (e.source().index(), e.target().index()))
        .collect();
    let parents = Adjacency::new(n, edges.iter().map(|&(p, c)| (c, p)));
    let children = Adjacency::new(n, edges.iter().copied());

    // Nodes come in creation order, parents first, so one pass gives each node the longest
    // path from a source.
    let mut layer_of = vec![0usize; n];
    for v in 0..n {
        debug_assert!(parents.of(v).iter().all(|&p| p < v), "parents come before children");
        layer_of[v] = parents.of(v).iter().map(|&p| layer_of[p] + 1).max().unwrap_or(0);
    }
    let depth = layer_of.iter().max().map_or(0, |&d| d + 1);
    let mut layers = vec![Vec::new(); depth];
    for (v, &d) in layer_of.iter().enumerate() {
        layers[d].push(v);
    }
    order_layers(&mut layers, &parents, &children);

    let widths: Vec<f64> = dag.nodes().map(box_width).collect();
    let layer_widths: Vec<f64> = layers
        .iter()
        .map(|l| l.iter().map(|&v| widths[v]).sum::<f64>() + GAP_X * l.len().saturating_sub(1) as f64)
        .collect();
    let inner_width = layer_widths.iter().copied().fold(0.0, f64::max);
    let mut nodes = vec![
        NodeBox {
            index: 0,
            x: 0.0,
            y: 0.0,
            w: 0.0,
            h: NODE_H
        };
        n
    ];
    for (d, layer) in layers.iter().enumerate() {
        let mut x = MARGIN + (inner_width - layer_widths[d]) / 2.0;
        let y = MARGIN + d as f64 * (NODE_H + GAP_Y);
        for &v in layer {
            nodes[v] = NodeBox {
                index: v,
                x,
                y,
                w: widths[v],
                h: NODE_H,
            };
            x += widths[v] + GAP_X;
        }
    }

    let edges = edges
        .into_iter()
        .map(|(from, to)| {
            let (a, b) = (&nodes[from], &nodes[to]);
            let start = (a.x + a.w / 2.0, a.y + a.h);
            let end = (b.x + b.w / 2.0, b.y);
            // Vertical tangents at both ends, so the curve leaves and enters boxes straight.
            let bend = (end.1 - start.1) / 2.0;
            EdgeLine {
                from,
                to,
                points: vec![start, (start.0, start.1 + bend), (end.0, end.1 - bend), end],
            }
        })
        .collect();
    let rows = depth as f64;
    Layout {
        nodes,
        edges,
        width: inner_width + 2.0 * MARGIN,
        height: rows * NODE_H + (rows - 1.0).max(0.0) * GAP_Y + 2.0 * MARGIN,
    }
}

/// Neighbours of each node in one direction, packed in one array (compressed sparse rows).
struct Adjacency {
    start: Vec<usize>,
    items: Vec<usize>,
}

impl Adjacency {
    /// From `(node, neighbour)` pairs; each node's neighbours keep the pairs' order.
    fn new(n: usize, pairs: impl Iterator<Item = (usize, usize)> + Clone) -> Self {
        let mut start = vec![0usize; n + 1];
        for (v, _) in pairs.clone() {
            start[v + 1] += 1;
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut items = vec![0usize; start[n]];
        for (v, u) in pairs {
            items[fill[v]] = u;
            fill[v] += 1;
        }
        Self { start, items }
    }

    fn of(&self, v: usize) -> &[usize] {
        &self.items[self.start[v]..self.start[v + 1]]
    }
}

/// Reorders each layer by the mean position of its parents (downward sweeps) or children
/// (upward sweeps). A position is a node's rank in its layer minus the layer's middle: layers
/// are centred on one axis, so this compares nodes of different layers, which parents of
/// edges spanning several layers need.
fn order_layers(layers: &mut [Vec<usize>], parents: &Adjacency, children: &Adjacency) {
    let n = parents.start.len() - 1;
    let mut pos = vec![0.0f64; n];
    let mut key = vec![0.0f64; n];
    for layer in layers.iter() {
        set_positions(layer, &mut pos);
    }
    for _ in 0..SWEEPS {
        for layer in layers.iter_mut().skip(1) {
            sort_layer(layer, parents, &mut pos, &mut key);
        }
        let above_last = layers.len().saturating_sub(1);
        for layer in layers[..above_last].iter_mut().rev() {
            sort_layer(layer, children, &mut pos, &mut key);
        }
    }
}

fn sort_layer(layer: &mut [usize], neighbours: &Adjacency, pos: &mut [f64], key: &mut [f64]) {
    for &v in layer.iter() {
        let ns = neighbours.of(v);
        // A node with no neighbour on that side keeps its place.
        key[v] = if ns.is_empty() {
            pos[v]
        } else {
            ns.iter().map(|&u| pos[u]).sum::<f64>() / ns.len() as f64
        };
    }
    layer.sort_unstable_by(|&a, &b| key[a].total_cmp(&key[b]).then(a.cmp(&b)));
    set_positions(layer, pos);
}

fn set_positions(layer: &[usize], pos: &mut [f64]) {
    let middle = (layer.len() as f64 - 1.0) / 2.0;
    for (i, &v) in layer.iter().enumerate() {
        pos[v] = i as f64 - middle;
    }
}

fn box_width(node: &DagNode) -> f64 {
    let chars = shown_name(&node.name)
        .chars()
        .count()
        .max(meta_line(node).chars().count());
    (chars as f64 * CHAR_W + PAD_X).clamp(MIN_W, MAX_W)
}

/// The name as drawn: cut to [`MAX_NAME`] characters.
fn shown_name(name: &str) -> String {
    if name.chars().count() <= MAX_NAME {
        name.to_string()
    } else {
        let mut cut: String = name.chars().take(MAX_NAME - 1).collect();
        cut.push('…');
        cut
    }
}

/// The second line of a box: status, duration and attempts, e.g. `failed · 3.2s ×2`.
fn meta_line(node: &DagNode) -> String {
    let mut line = node.status.as_str().to_string();
    line.push_str(&meta_rest(node));
    line
}

/// What follows the status on the second line.
fn meta_rest(node: &DagNode) -> String {
    let mut rest = String::new();
    if let Some(d) = node.duration() {
        let _ = write!(rest, " · {}", human_duration(d));
    }
    if node.attempts > 1 {
        let _ = write!(rest, " ×{}", node.attempts);
    }
    rest
}

/// Text and attribute values for XML. Characters XML 1.0 cannot hold at all (most control
/// characters) become U+FFFD, so any step name gives a well-formed document.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A coordinate to one decimal, without a trailing `.0`.
fn num(x: f64) -> f64 {
    (x * 10.0).round() / 10.0 + 0.0 // `+ 0.0` turns -0 into 0
}

const STYLE: &str = "<style>\
.edge{fill:none;stroke:#8a8f98;stroke-width:1.5}\
#arrow path{fill:#8a8f98}\
.node rect{stroke:#5c6370;stroke-width:1}\
.node text{fill:#1f2328;text-anchor:middle;dominant-baseline:middle}\
.node .name{font-size:13px;font-weight:600}\
.node .meta{font-size:11px}\
.node .cached{font-weight:600;font-style:italic}\
a .node:hover rect{stroke-width:2.5}\
.s-pending rect{fill:#c9cdd3}\
.s-queued rect{fill:#cfe3ff}\
.s-running rect{fill:#6fa8f5}\
.s-completed rect{fill:#8fd694}\
.s-cached rect{fill:#6fcfc2}\
.s-failed rect{fill:#f28b8b}\
.s-aborted rect{fill:#f7b267}\
.s-skipped rect{fill:#ededed}\
</style>";

const DEFS: &str = "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0 0L10 5L0 10z\"/></marker></defs>";

impl PipelineDag {
    /// A standalone SVG of the DAG as [`layout`] places it: edges with arrowheads, then one
    /// box per node (`<g class="node s-<status>" id="node-<index>">` with `data-step` and
    /// `data-status`), filled by state, with a tooltip, the name, and a line of status,
    /// duration and attempts. When `link` gives a URL for a node, its box links there.
    /// Deterministic, except that a running node's duration grows with the clock.
    pub fn to_svg(&self, link: &dyn Fn(&DagNode) -> Option<String>) -> String {
        let layout = layout(self);
        let mut out = String::with_capacity(1024 + 400 * self.len());
        let (w, h) = (num(layout.width), num(layout.height));
        let _ = writeln!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" \
             font-family=\"system-ui, sans-serif\">{STYLE}{DEFS}"
        );
        for e in &layout.edges {
            let [(x0, y0), (x1, y1), (x2, y2), (x3, y3)] = [e.points[0], e.points[1], e.points[2], e.points[3]];
            let _ = writeln!(
                out,
                "<path class=\"edge\" d=\"M{} {} C{} {} {} {} {} {}\" data-from=\"{}\" data-to=\"{}\" \
                 marker-end=\"url(#arrow)\"/>",
                num(x0),
                num(y0),
                num(x1),
                num(y1),
                num(x2),
                num(y2),
                num(x3),
                num(y3),
                e.from,
                e.to
            );
        }
        for (b, node) in layout.nodes.iter().zip(self.nodes()) {
            write_node(&mut out, b, node, link(node).as_deref());
        }
        out.push_str("</svg>\n");
        out
    }
}

fn write_node(out: &mut String, b: &NodeBox, node: &DagNode, href: Option<&str>) {
    let status = node.status.as_str();
    if let Some(href) = href {
        let _ = write!(out, "<a href=\"{}\">", xml_escape(href));
    }
    let name = xml_escape(&node.name);
    let _ = write!(
        out,
        "<g class=\"node s-{status}\" id=\"node-{}\" data-step=\"{name}\" data-status=\"{status}\">",
        b.index
    );
    let rest = meta_rest(node);
    let mut title = format!("{name}\n{status}{}", xml_escape(&rest));
    if let Some(e) = &node.error {
        title.push('\n');
        title.push_str(&xml_escape(&e.to_string()));
    }
    let cx = num(b.x + b.w / 2.0);
    // Cached is also a success, so besides its fill the word stands out for readers who
    // cannot tell teal from green.
    let status_text = if node.status == NodeStatus::Cached {
        "<tspan class=\"cached\">cached</tspan>"
    } else {
        status
    };
    let _ = write!(
        out,
        "<title>{title}</title><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"6\"/>\
         <text class=\"name\" x=\"{cx}\" y=\"{}\">{}</text>\
         <text class=\"meta\" x=\"{cx}\" y=\"{}\">{status_text}{}</text></g>",
        num(b.x),
        num(b.y),
        num(b.w),
        num(b.h),
        num(b.y + 17.0),
        xml_escape(&shown_name(&node.name)),
        num(b.y + 34.0),
        xml_escape(&rest)
    );
    if href.is_some() {
        out.push_str("</a>");
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, StepError};
    use std::time::{Duration, SystemTime};

    fn node(name: &str, parents: &[&str], status: NodeStatus) -> DagNode {
        DagNode {
            name: name.into(),
            component: name.into(),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            status,
            attempts: 1,
            started: None,
            ended: None,
            error: None,
        }
    }

    fn dag(spec: &[(&str, &[&str])]) -> PipelineDag {
        PipelineDag::from_nodes(spec.iter().map(|(n, p)| node(n, p, NodeStatus::Completed)).collect())
    }

    fn diamond() -> PipelineDag {
        dag(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])])
    }

    /// Layers by distinct `y`, top to bottom.
    fn layer_count(l: &Layout) -> usize {
        let mut ys: Vec<f64> = l.nodes.iter().map(|b| b.y).collect();
        ys.sort_by(f64::total_cmp);
        ys.dedup();
        ys.len()
    }

    fn check_sane(dag: &PipelineDag, l: &Layout) {
        assert_eq!(l.nodes.len(), dag.len());
        assert_eq!(l.edges.len(), dag.graph().edge_count());
        for (i, b) in l.nodes.iter().enumerate() {
            assert_eq!(b.index, i);
            assert!(
                b.x >= 0.0 && b.y >= 0.0 && b.x + b.w <= l.width && b.y + b.h <= l.height,
                "{b:?}"
            );
            assert!((MIN_W..=MAX_W).contains(&b.w));
        }
        for e in &l.edges {
            let (a, b) = (&l.nodes[e.from], &l.nodes[e.to]);
            assert!(b.y >= a.y + a.h, "edge {} -> {} does not go down", e.from, e.to);
            assert_eq!(e.points.len(), 4);
            assert_eq!(e.points[0], (a.x + a.w / 2.0, a.y + a.h));
            assert_eq!(e.points[3], (b.x + b.w / 2.0, b.y));
        }
        // No overlap: sorted by row then left edge, each box ends before the next one of its
        // row starts, and rows do not overlap vertically.
        let mut boxes = l.nodes.clone();
        boxes.sort_by(|a, b| a.y.total_cmp(&b.y).then(a.x.total_cmp(&b.x)));
        for pair in boxes.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if a.y == b.y {
                assert!(a.x + a.w <= b.x, "{a:?} overlaps {b:?}");
            } else {
                assert!(a.y + a.h <= b.y, "{a:?} overlaps {b:?}");
            }
        }
    }

    /// Tags are balanced and nothing but tags opens with `<`.
    fn assert_well_formed(svg: &str) {
        let mut stack = Vec::new();
        let mut rest = svg;
        while let Some(i) = rest.find('<') {
            let end = rest[i..].find('>').expect("unclosed tag") + i;
            let tag = &rest[i + 1..end];
            assert!(!tag.contains('<'), "raw < in {tag}");
            let name = tag.trim_start_matches('/').split([' ', '/']).next().unwrap();
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric()), "bad tag {tag}");
            if let Some(closing) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(closing), "mismatched </{closing}>");
            } else if !tag.ends_with('/') {
                stack.push(name);
            }
            rest = &rest[end + 1..];
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 "));
    }

    #[test]
    fn layers_follow_edges_and_boxes_do_not_overlap() {
        let dags = [
            diamond(),
            dag(&[
                ("a", &[]),
                ("b", &[]),
                ("c", &["a", "b"]),
                ("d", &["a"]),
                ("e", &["c", "d", "b"]),
                ("f", &["a", "e"]),
                ("lone", &[]),
            ]),
        ];
        for d in &dags {
            check_sane(d, &layout(d));
        }
    }

    #[test]
    fn layers_are_longest_paths() {
        let l = layout(&diamond());
        assert_eq!(layer_count(&l), 3);
        assert_eq!(l.nodes[1].y, l.nodes[2].y);

        let mut spec: Vec<(String, Vec<String>)> = vec![("src".into(), vec![])];
        for i in 0..5 {
            spec.push((format!("mid{i}"), vec!["src".into()]));
        }
        spec.push(("sink".into(), (0..5).map(|i| format!("mid{i}")).collect()));
        let fan = PipelineDag::from_nodes(
            spec.iter()
                .map(|(n, p)| {
                    node(
                        n,
                        &p.iter().map(String::as_str).collect::<Vec<_>>(),
                        NodeStatus::Pending,
                    )
                })
                .collect(),
        );
        let l = layout(&fan);
        check_sane(&fan, &l);
        assert_eq!(layer_count(&l), 3);
        assert!(l.nodes[1..6].iter().all(|b| b.y == l.nodes[1].y));

        // A shortcut edge does not pull its child up: `c` sits under `b`.
        let l = layout(&dag(&[("a", &[]), ("b", &["a"]), ("c", &["a", "b"])]));
        assert_eq!(layer_count(&l), 3);
        assert!(l.nodes[2].y > l.nodes[1].y);
    }

    #[test]
    fn barycenters_put_children_under_their_parents() {
        // Grandchildren are created interleaved; the sweeps group them under their parents.
        let d = dag(&[
            ("r", &[]),
            ("a", &["r"]),
            ("b", &["r"]),
            ("b1", &["b"]),
            ("a1", &["a"]),
            ("b2", &["b"]),
            ("a2", &["a"]),
        ]);
        let l = layout(&d);
        check_sane(&d, &l);
        let centre = |name: &str| {
            let i = d.nodes().position(|n| n.name == name).unwrap();
            l.nodes[i].x + l.nodes[i].w / 2.0
        };
        for (parent, kids) in [("a", ["a1", "a2"]), ("b", ["b1", "b2"])] {
            let other = if parent == "a" { "b" } else { "a" };
            for kid in kids {
                assert!((centre(kid) - centre(parent)).abs() < (centre(kid) - centre(other)).abs());
            }
        }
        assert!(centre("a1") < centre("a2") && centre("a2") < centre("b1") && centre("b1") < centre("b2"));

        // Two chains created crosswise end up straight.
        let d = dag(&[("p", &[]), ("q", &[]), ("q1", &["q"]), ("p1", &["p"])]);
        let l = layout(&d);
        assert_eq!(l.nodes[0].x, l.nodes[3].x);
        assert_eq!(l.nodes[1].x, l.nodes[2].x);
    }

    #[test]
    fn twenty_thousand_nodes_lay_out() {
        // A fan of 10k under one root, joined by a sink that starts a 10k chain.
        const FAN: usize = 10_000;
        let mut nodes = vec![node("root", &[], NodeStatus::Completed)];
        let names: Vec<String> = (0..FAN).map(|i| format!("fan_{i}")).collect();
        for name in &names {
            nodes.push(node(name, &["root"], NodeStatus::Completed));
        }
        let mut sink = node("chain_0", &[], NodeStatus::Running);
        sink.parents = names.clone();
        nodes.push(sink);
        for i in 1..FAN - 1 {
            nodes.push(node(
                &format!("chain_{i}"),
                &[&format!("chain_{}", i - 1)],
                NodeStatus::Pending,
            ));
        }
        let d = PipelineDag::from_nodes(nodes);
        assert_eq!(d.len(), 2 * FAN);
        let l = layout(&d);
        check_sane(&d, &l);
        assert_eq!(layer_count(&l), FAN + 1); // root, fan, then the chain from the sink
        assert!(l.width.is_finite() && l.height.is_finite());
    }

    #[test]
    fn svg_escapes_hostile_names() {
        let hostile = "<script>alert(\"x\")</script> & 'q'";
        let mut n = node(hostile, &[], NodeStatus::Failed);
        n.error = Some(StepError::new(ErrorKind::Error, "bad <input> & \"worse\""));
        let d = PipelineDag::from_nodes(vec![n, node("ok\u{1}é", &[hostile], NodeStatus::Completed)]);
        let svg = d.to_svg(&|_| None);
        assert_well_formed(&svg);
        assert!(!svg.contains(hostile));
        assert!(!svg.contains("<script") && !svg.contains("<input"));
        let escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;";
        assert!(svg.contains(&format!("data-step=\"{escaped}\"")), "{svg}");
        assert!(svg.contains("bad &lt;input&gt; &amp; &quot;worse&quot;"), "{svg}");
        assert!(svg.contains("data-step=\"ok\u{fffd}é\""), "{svg}");
    }

    #[test]
    fn svg_has_each_node_once_with_its_status() {
        let statuses = NodeStatus::ALL;
        let d = PipelineDag::from_nodes(
            statuses
                .iter()
                .enumerate()
                .map(|(i, &s)| node(&format!("n{i}"), if i == 0 { &[] } else { &["n0"] }, s))
                .collect(),
        );
        let svg = d.to_svg(&|_| None);
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<g class=\"node ").count(), statuses.len());
        assert_eq!(svg.matches("<path class=\"edge\" d=\"M").count(), statuses.len() - 1);
        assert!(svg.contains("data-from=\"0\" data-to=\"7\" marker-end=\"url(#arrow)\""));
        assert!(!svg.contains("<a "));
        for (i, s) in statuses.iter().enumerate() {
            let s = s.as_str();
            assert_eq!(svg.matches(&format!("id=\"node-{i}\"")).count(), 1);
            let g = format!("<g class=\"node s-{s}\" id=\"node-{i}\" data-step=\"n{i}\" data-status=\"{s}\">");
            assert!(svg.contains(&g), "{g}");
            assert!(svg.contains(&format!(".s-{s} rect{{fill:#")));
        }
        assert!(svg.contains("<tspan class=\"cached\">cached</tspan>"));
    }

    #[test]
    fn svg_second_line_and_truncation() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let long = "x".repeat(60);
        let mut a = node(&long, &[], NodeStatus::Failed);
        a.started = Some(t0);
        a.ended = Some(t0 + Duration::from_millis(3_240));
        a.attempts = 3;
        let mut b = node("b", &[], NodeStatus::Completed);
        b.started = Some(t0);
        b.ended = Some(t0 + Duration::from_secs(125));
        let svg = PipelineDag::from_nodes(vec![a, b]).to_svg(&|_| None);
        assert!(svg.contains(&format!(">{}…</text>", "x".repeat(39))), "{svg}");
        assert!(
            svg.contains(&format!("<title>{long}\nfailed · 3.2s ×3</title>")),
            "{svg}"
        );
        assert!(svg.contains(">failed · 3.2s ×3</text>"), "{svg}");
        assert!(svg.contains(">completed · 2m05s</text>"), "{svg}");

        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(Duration::from_millis(59_960)), "1m00s");
        assert_eq!(human_duration(Duration::from_secs(3_600 + 7 * 60)), "1h07m");
        assert_eq!(box_width(&node("s", &[], NodeStatus::Pending)), MIN_W);
    }

    #[test]
    fn svg_links_are_escaped() {
        let svg = diamond().to_svg(&|n| (n.name != "d").then(|| format!("/runs/1?step={}&x=\"'", n.name)));
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<a href=").count(), 3);
        assert!(
            svg.contains("<a href=\"/runs/1?step=a&amp;x=&quot;&#39;\"><g class=\"node s-completed\" id=\"node-0\"")
        );
        assert!(svg.contains("</g></a>"));
        assert!(svg.contains("\n<g class=\"node s-completed\" id=\"node-3\""));
    }

    #[test]
    fn empty_dag_gives_a_small_svg() {
        let svg = PipelineDag::default().to_svg(&|_| None);
        assert_well_formed(&svg);
        assert!(
            svg.contains("viewBox=\"0 0 32 32\" width=\"32\" height=\"32\""),
            "{svg}"
        );
        assert!(!svg.contains("<g "));
        let l = layout(&PipelineDag::default());
        assert!(l.nodes.is_empty() && l.edges.is_empty());
    }

    #[test]
    fn output_is_deterministic() {
        let d = dag(&[("a", &[]), ("b", &[]), ("c", &["b"]), ("d", &["a"]), ("e", &["c", "d"])]);
        assert_eq!(layout(&d), layout(&d));
        assert_eq!(d.to_svg(&|_| None), d.to_svg(&|_| None));
    }
}
