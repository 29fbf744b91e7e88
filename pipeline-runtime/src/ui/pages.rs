//! The pages that change nothing: runs, a run, a step, runs compared. Each live part is its
//! own route, which the embedded script fetches again twice a second while the run runs.

use super::auth::{self, Who};
use super::plot::{Series, line_chart};
use super::{App, UiError, blocking};
use crate::store::{ArtifactKind, ArtifactRecord, MetricRecord, NodeRecord, RunFilter, RunRecord, RunStore};
use crate::worker::{Manifest, ManifestInput, WorkerResult};
use axum::extract::{Path as UrlPath, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use pipeline_core::format::{human_duration, short_type, size, timestamp};
use pipeline_core::{NodeStatus, PipelineDag, RunStatus, StepError};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

pub(super) const CSS: &str = include_str!("ui.css");
pub(super) const JS: &str = include_str!("ui.js");

/// Runs listed at most.
const RUNS_SHOWN: usize = 300;
/// Runs drawn as a DAG up to this many steps (a bigger SVG is too heavy for a browser).
const DAG_DRAWN: usize = 2_000;
/// Steps listed in a run's table at most.
const STEPS_SHOWN: usize = 1_000;
/// The end of a log shown, in bytes.
const LOG_TAIL: u64 = 64 * 1024;
/// The start of a JSON value shown, in bytes.
const PREVIEW: u64 = 4 * 1024;

/// `s` for a URL path segment: everything but unreserved characters percent-encoded.
pub(super) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn run_url(id: &str) -> String {
    format!("/runs/{}", enc(id))
}

pub(super) fn step_url(id: &str, step: &str) -> String {
    format!("/runs/{}/steps/{}", enc(id), enc(step))
}

/// A page around `body`.
pub(super) fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · pipeline" }
                link rel="stylesheet" href="/assets/ui.css";
                script src="/assets/ui.js" defer {}
            }
            body {
                nav { a.brand href="/" { "pipeline" } a href="/" { "Runs" } }
                main { (body) }
            }
        }
    }
}

pub(super) fn error_page(status: StatusCode, message: &str) -> Markup {
    layout(
        status.canonical_reason().unwrap_or("error"),
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.error { (message) }
            p { a href="/" { "Back to the runs" } }
        },
    )
}

pub(super) fn badge(status: &str) -> Markup {
    html! { span class={ "badge s-" (status) } { (status) } }
}

fn duration_of(started: SystemTime, ended: Option<SystemTime>) -> String {
    let end = ended.unwrap_or_else(SystemTime::now);
    end.duration_since(started).map(human_duration).unwrap_or_default()
}

/// `3 completed · 1 failed`.
fn counts_line(counts: &[(NodeStatus, usize)]) -> Markup {
    html! {
        @for (i, (status, n)) in counts.iter().enumerate() {
            @if i > 0 { " · " }
            span class={ "count s-" (status.as_str()) } { (n) " " (status.as_str()) }
        }
    }
}

// ------------------------------------------------------------------------------------ runs

pub(super) async fn runs(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Markup, UiError> {
    let who = auth::read(&app, &headers)?;
    let q = pairs(query.as_deref());
    let get = |k: &str| {
        q.iter()
            .find(|(key, v)| key == k && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let status = match get("status") {
        Some(s) => Some(parse_status(&s).ok_or_else(|| UiError::BadRequest(format!("unknown status `{s}`")))?),
        None => None,
    };
    let filter = RunFilter {
        project: get("project"),
        name: get("name"),
        tags: get("tag").into_iter().collect(),
        status,
        limit: Some(RUNS_SHOWN),
        ..RunFilter::default()
    };
    let shown = filter.clone();
    let app2 = app.clone();
    let rows = blocking(move || {
        let store = match app2.store() {
            Ok(s) => s,
            Err(UiError::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let runs = store.runs(&filter).map_err(|e| UiError::Internal(e.to_string()))?;
        runs.into_iter()
            .map(|r| {
                let counts = store
                    .status_counts(&r.id)
                    .map_err(|e| UiError::Internal(e.to_string()))?;
                Ok((r, counts))
            })
            .collect::<Result<Vec<_>, UiError>>()
    })
    .await?;
    Ok(layout("Runs", runs_body(&rows, &shown, who, &app.state)))
}

fn parse_status(s: &str) -> Option<RunStatus> {
    [
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Aborted,
        RunStatus::Crashed,
        RunStatus::Draft,
    ]
    .into_iter()
    .find(|r| r.as_str() == s)
}

/// A query string's pairs, decoded.
pub(super) fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn runs_body(rows: &[(RunRecord, Vec<(NodeStatus, usize)>)], f: &RunFilter, who: Who, state: &Path) -> Markup {
    let statuses = ["running", "completed", "failed", "aborted", "crashed", "draft"];
    html! {
        h1 { "Runs" }
        form.filters method="get" action="/" {
            input name="project" placeholder="project" value=[f.project.as_deref()];
            input name="name" placeholder="pipeline" value=[f.name.as_deref()];
            input name="tag" placeholder="tag" value=[f.tags.first().map(String::as_str)];
            select name="status" {
                option value="" { "any status" }
                @for s in statuses {
                    option value=(s) selected[f.status.is_some_and(|x| x.as_str() == s)] { (s) }
                }
            }
            button type="submit" { "Filter" }
        }
        @if !who.authed() {
            p.hint { "Reading only. To stop, resume or re-run, open the link `pipeline ui` printed (it carries the token)." }
        }
        @if rows.is_empty() {
            p.empty { "No runs in " code { (state.display()) } " match." }
        } @else {
            form method="get" action="/compare" {
                table.runs {
                    thead { tr { th {} th { "status" } th { "pipeline" } th { "version" } th { "run" } th { "started" } th { "duration" } th { "steps" } th { "tags" } } }
                    tbody {
                        @for (r, counts) in rows {
                            tr.run data-run=(r.id) {
                                td { input type="checkbox" name="runs" value=(r.id) aria-label="compare"; }
                                td { (badge(r.status.as_str())) }
                                td { a href=(run_url(&r.id)) { span.project { (r.project) " / " } (r.name) } }
                                td { (r.version) }
                                td { "#" (r.run_number) }
                                td { (timestamp(r.started)) }
                                td { @if r.status != RunStatus::Draft { (duration_of(r.started, r.ended)) } }
                                td { (counts_line(counts)) }
                                td { @for t in &r.tags { span.tag { (t) } " " } }
                            }
                        }
                    }
                }
                button type="submit" { "Compare selected" }
            }
        }
    }
}

// ------------------------------------------------------------------------------------ a run

/// What a run's page shows.
struct RunData {
    record: RunRecord,
    nodes: Vec<NodeRecord>,
    artifacts: Vec<ArtifactRecord>,
    metrics: Vec<MetricRecord>,
    texts: Vec<(String, String)>,
    nested: Vec<RunRecord>,
}

fn internal(e: impl std::fmt::Display) -> UiError {
    UiError::Internal(e.to_string())
}

/// Run `id` (or an unambiguous prefix of one).
pub(super) fn find_run(store: &RunStore, id: &str) -> Result<RunRecord, UiError> {
    store
        .run(id)
        .map_err(|e| {
            // An ambiguous prefix is the caller's mistake, not the server's.
            if e.message.contains("ambiguous") || e.message.contains("several") {
                UiError::NotFound(e.message)
            } else {
                internal(e)
            }
        })?
        .ok_or_else(|| UiError::NotFound(format!("there is no run `{id}`")))
}

fn load_run(app: &App, id: &str) -> Result<RunData, UiError> {
    let store = app.store()?;
    let record = find_run(&store, id)?;
    let id = record.id.clone();
    Ok(RunData {
        nodes: store.nodes(&id).map_err(internal)?,
        artifacts: store.artifacts(&id).map_err(internal)?,
        metrics: store.metrics(&id).map_err(internal)?,
        texts: store.texts(&id).map_err(internal)?,
        nested: store
            .runs(&RunFilter {
                parent: Some(id.clone()),
                ..RunFilter::default()
            })
            .map_err(internal)?,
        record,
    })
}

pub(super) async fn run(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    let who = auth::read(&app, &headers)?;
    match run_or_launch(&app, &id).await? {
        Loaded::Run(data) if data.record.id != id => Ok(Redirect::to(&run_url(&data.record.id)).into_response()),
        Loaded::Run(data) => {
            let note = super::actions::launch_failure(&app, &data.record.id);
            Ok(layout(&data.record.name, run_fragment(&data, who, &app.csrf, note.as_deref())).into_response())
        }
        Loaded::Launch(markup) => Ok(layout(&id, markup).into_response()),
    }
}

pub(super) async fn run_live(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Markup, UiError> {
    let who = auth::read(&app, &headers)?;
    Ok(match run_or_launch(&app, &id).await? {
        Loaded::Run(data) => {
            let note = super::actions::launch_failure(&app, &data.record.id);
            run_fragment(&data, who, &app.csrf, note.as_deref())
        }
        Loaded::Launch(markup) => markup,
    })
}

enum Loaded {
    Run(Box<RunData>),
    /// A run started from this page whose controller has not recorded it yet.
    Launch(Markup),
}

async fn run_or_launch(app: &Arc<App>, id: &str) -> Result<Loaded, UiError> {
    let (app2, id2) = (app.clone(), id.to_string());
    match blocking(move || load_run(&app2, &id2)).await {
        Ok(data) => Ok(Loaded::Run(Box::new(data))),
        Err(UiError::NotFound(message)) => match super::actions::launch_view(app, id) {
            Some(markup) => Ok(Loaded::Launch(markup)),
            None => Err(UiError::NotFound(message)),
        },
        Err(e) => Err(e),
    }
}

fn live_url(data: &RunData) -> Option<String> {
    (data.record.status == RunStatus::Running).then(|| format!("{}/live", run_url(&data.record.id)))
}

/// `note`: why the last start of this run from the page failed, if it did.
fn run_fragment(data: &RunData, who: Who, csrf: &str, note: Option<&str>) -> Markup {
    let r = &data.record;
    let dag = PipelineDag::from_nodes(data.nodes.iter().map(|n| n.node.clone()).collect());
    let mut counts: BTreeMap<usize, (NodeStatus, usize)> = BTreeMap::new();
    for n in &data.nodes {
        counts.entry(n.node.status as usize).or_insert((n.node.status, 0)).1 += 1;
    }
    let counts: Vec<(NodeStatus, usize)> = counts.into_values().collect();
    html! {
        section #run data-poll=[live_url(data)] data-status=(r.status.as_str()) {
            header.head {
                h1 { span.project { (r.project) " / " } (r.name) " " (badge(r.status.as_str())) }
                p.meta {
                    "run " code { (r.id) } " · #" (r.run_number) " · version " (r.version) " · " (r.mode) " mode · started "
                    (timestamp(r.started)) " UTC"
                    @if r.status != RunStatus::Draft { " · " (duration_of(r.started, r.ended)) }
                }
                p.meta { (counts_line(&counts)) }
                @if let Some((parent, node)) = &r.parent {
                    p.meta { "nested in " a href=(run_url(parent)) { code { (parent) } } " as step " a href=(step_url(parent, node)) { (node) } }
                }
                @if let Some(origin) = &r.origin {
                    p.meta { "started again from " a href=(run_url(origin)) { code { (origin) } } }
                }
                @if !r.tags.is_empty() { p.meta { @for t in &r.tags { span.tag { (t) } " " } } }
                (run_actions(r, who, csrf))
                @if let Some(note) = note { div.error { pre { (note) } } }
            }
            div.columns {
                section {
                    h2 { "Parameters" }
                    @if r.parameters.is_empty() { p.empty { "none" } } @else {
                        table.kv { @for (k, v) in &r.parameters { tr { th { (k) } td { code { (v) } } } } }
                    }
                }
                section {
                    h2 { "Configuration" }
                    @if r.configuration.is_empty() { p.empty { "none" } } @else {
                        @for (k, v) in &r.configuration {
                            details { summary { (k) } pre { (serde_json::to_string_pretty(v).unwrap_or_default()) } }
                        }
                    }
                }
            }
            @if !data.nested.is_empty() {
                section { h2 { "Nested runs" } ul { @for n in &data.nested { li { a href=(run_url(&n.id)) { (n.name) } " " (badge(n.status.as_str())) } } } }
            }
            section.dag {
                h2 { "DAG" }
                @if dag.len() > DAG_DRAWN {
                    p.hint { "This run has " (dag.len()) " steps; the DAG is drawn for runs of up to " (DAG_DRAWN) "." }
                } @else if dag.is_empty() {
                    p.empty { "no steps yet" }
                } @else {
                    div.svg { (PreEscaped(dag.to_svg(&|n| Some(step_url(&r.id, &n.name))))) }
                }
            }
            section {
                h2 { "Steps" }
                (steps_table(r, &data.nodes))
            }
            (metrics_section("Metrics", &data.metrics, |m| if m.node.is_empty() { m.series.clone() } else { format!("{}: {}", m.node, m.series) }))
            @if !data.texts.is_empty() {
                section { h2 { "Texts" } @for (node, text) in &data.texts { pre.text { @if !node.is_empty() { b { (node) ": " } } (text) } } }
            }
            (artifacts_table(r, &data.artifacts.iter().filter(|a| a.kind != ArtifactKind::Output || a.node.is_empty()).collect::<Vec<_>>()))
        }
    }
}

fn run_actions(r: &RunRecord, who: Who, csrf: &str) -> Markup {
    let id = &r.id;
    if !who.authed() {
        return html! { p.hint { "Reading only: actions need the token `pipeline ui` printed." } };
    }
    html! {
        div.actions {
            @if r.status == RunStatus::Running {
                form method="post" action={ (run_url(id)) "/stop" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button.danger type="submit" { "Stop" }
                }
            }
            @if matches!(r.status, RunStatus::Failed | RunStatus::Aborted | RunStatus::Crashed) {
                form method="post" action={ (run_url(id)) "/resume" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Resume" }
                }
            }
            @if r.status != RunStatus::Running {
                a.button href={ (run_url(id)) "/rerun" } { "Re-run with other parameters" }
            }
        }
    }
}

fn steps_table(r: &RunRecord, nodes: &[NodeRecord]) -> Markup {
    html! {
        table.steps {
            thead { tr { th { "step" } th { "status" } th { "component" } th { "duration" } th { "attempts" } th { "error" } } }
            tbody {
                @for n in nodes.iter().take(STEPS_SHOWN) {
                    tr data-step=(n.node.name) data-status=(n.node.status.as_str()) {
                        td { a href=(step_url(&r.id, &n.node.name)) { (n.node.name) } }
                        td { (badge(n.node.status.as_str())) }
                        td { (n.node.component) }
                        td { (n.node.duration().map(human_duration).unwrap_or_default()) }
                        td { (n.node.attempts) }
                        td.error { (n.node.error.as_ref().map(|e| one_line(&e.message, 160)).unwrap_or_default()) }
                    }
                }
            }
        }
        @if nodes.len() > STEPS_SHOWN { p.hint { (nodes.len() - STEPS_SHOWN) " more steps not listed." } }
    }
}

/// `text` on one line, cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let flat = pipeline_core::format::one_line(text);
    if flat.chars().count() > max {
        let mut cut: String = flat.chars().take(max - 1).collect();
        cut.push('…');
        cut
    } else {
        flat
    }
}

/// Per title, per series, its (iteration, value) points.
type Plots<'a> = BTreeMap<&'a str, BTreeMap<String, Vec<(f64, f64)>>>;

/// One plot per title, its series named by `label`.
fn metrics_section(heading: &str, metrics: &[MetricRecord], label: impl Fn(&MetricRecord) -> String) -> Markup {
    let mut by_title: Plots<'_> = BTreeMap::new();
    for m in metrics {
        by_title
            .entry(m.title.as_str())
            .or_default()
            .entry(label(m))
            .or_default()
            .push((m.iteration as f64, m.value));
    }
    plots(heading, by_title)
}

fn plots(heading: &str, by_title: Plots<'_>) -> Markup {
    if by_title.is_empty() {
        return html! {};
    }
    html! {
        section.metrics {
            h2 { (heading) }
            div.plots {
                @for (title, series) in by_title {
                    @let series: Vec<Series> = series.into_iter().map(|(label, points)| Series { label, points }).collect();
                    @if let Some(svg) = line_chart(title, &series) {
                        figure.plot data-title=(title) { (PreEscaped(svg)) }
                    }
                }
            }
        }
    }
}

fn artifacts_table(r: &RunRecord, artifacts: &[&ArtifactRecord]) -> Markup {
    if artifacts.is_empty() {
        return html! {};
    }
    html! {
        section {
            h2 { "Artifacts and models" }
            table.artifacts {
                thead { tr { th { "step" } th { "name" } th { "kind" } th { "type" } th { "size" } th { "checksum" } th { "where" } } }
                tbody {
                    @for a in artifacts {
                        tr {
                            td { @if a.node.is_empty() { "(the run)" } @else { a href=(step_url(&r.id, &a.node)) { (a.node) } } }
                            td { (a.name) }
                            td { (format!("{:?}", a.kind).to_lowercase()) }
                            td { (a.type_name.as_deref().map(short_type).unwrap_or_default()) }
                            td { (a.size.map(size).unwrap_or_default()) }
                            td { code { (a.checksum.as_deref().unwrap_or("")) } }
                            td.uri { code { (a.uri) } }
                        }
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------ a step

/// What a step's page shows.
struct StepData {
    run: RunRecord,
    node: NodeRecord,
    events: Vec<(NodeStatus, SystemTime)>,
    artifacts: Vec<ArtifactRecord>,
    metrics: Vec<MetricRecord>,
    /// Per attempt: its number and error, when its result was kept.
    attempts: Vec<(u32, Option<StepError>)>,
    /// The attempt whose log is shown, and its end (`None`: no log was kept).
    log: (u32, Option<String>),
    inputs: Vec<Value>,
    /// The outputs' previews, by artifact name.
    previews: BTreeMap<String, String>,
}

/// A value a step read or wrote, as its artifact says.
struct Value {
    label: String,
    type_name: String,
    size: u64,
    checksum: String,
    preview: Option<String>,
}

#[derive(serde::Deserialize)]
pub(super) struct StepQuery {
    attempt: Option<u32>,
}

fn load_step(app: &App, id: &str, step: &str, attempt: Option<u32>) -> Result<StepData, UiError> {
    let store = app.store()?;
    let run = find_run(&store, id)?;
    let node = store
        .nodes(&run.id)
        .map_err(internal)?
        .into_iter()
        .find(|n| n.node.name == step)
        .ok_or_else(|| UiError::NotFound(format!("run {} has no step `{step}`", run.id)))?;
    let folder = node
        .log_path
        .as_ref()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| crate::store::step_folder(&crate::store::run_folder(&app.state, &run.id), step));
    let attempts: Vec<(u32, Option<StepError>)> = (1..=node.node.attempts)
        .map(|n| {
            let result = std::fs::read(folder.join(format!("result-{n}.json")))
                .ok()
                .and_then(|b| serde_json::from_slice::<WorkerResult>(&b).ok());
            (n, result.and_then(|r| r.error))
        })
        .collect();
    let shown = attempt.unwrap_or(node.node.attempts.max(1));
    if shown == 0 || shown > node.node.attempts.max(1) {
        return Err(UiError::NotFound(format!("step `{step}` has no attempt {shown}")));
    }
    let log = tail(&folder.join(format!("attempt-{shown}.log")));
    let inputs = std::fs::read(folder.join(format!("manifest-{}.json", node.node.attempts.max(1))))
        .ok()
        .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
        .map(|m| inputs_of(&m))
        .unwrap_or_default();
    let artifacts: Vec<ArtifactRecord> = store
        .artifacts(&run.id)
        .map_err(internal)?
        .into_iter()
        .filter(|a| a.node == step)
        .collect();
    let previews = artifacts
        .iter()
        .filter(|a| a.codec.as_deref() == Some("json"))
        .filter_map(|a| Some((a.name.clone(), read_value(Path::new(&a.uri))?.preview?)))
        .collect();
    Ok(StepData {
        events: store.node_events(&run.id, step).map_err(internal)?,
        metrics: store
            .metrics(&run.id)
            .map_err(internal)?
            .into_iter()
            .filter(|m| m.node == step)
            .collect(),
        attempts,
        log: (shown, log),
        inputs,
        previews,
        artifacts,
        node,
        run,
    })
}

/// The last [`LOG_TAIL`] bytes of a log, if there is one.
fn tail(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let start = len.saturating_sub(LOG_TAIL);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Some(if start > 0 {
        format!("[… the first {} of the log are not shown]\n{text}", size(start))
    } else {
        text
    })
}

fn inputs_of(m: &Manifest) -> Vec<Value> {
    m.inputs
        .iter()
        .enumerate()
        .flat_map(|(i, input)| match input {
            ManifestInput::Artifact(a) => vec![(format!("input {}", i + 1), a.path.clone())],
            ManifestInput::Elements(list) => list
                .iter()
                .enumerate()
                .map(|(j, a)| (format!("input {}[{j}]", i + 1), a.path.clone()))
                .collect(),
        })
        .filter_map(|(label, path)| {
            Some(Value {
                label,
                ..read_value(&path)?
            })
        })
        .collect()
}

/// An artifact file's header, and the start of its value when its codec is JSON.
fn read_value(path: &Path) -> Option<Value> {
    let mut file = std::io::BufReader::new(std::fs::File::open(path).ok()?);
    let header = pipeline_core::artifact::ArtifactHeader::read_from(&mut file).ok()?;
    let preview = (header.codec == "json").then(|| {
        let mut bytes = Vec::new();
        let _ = (&mut file).take(PREVIEW).read_to_end(&mut bytes);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if header.length > PREVIEW {
            format!("{text} …")
        } else {
            serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(text)
        }
    });
    Some(Value {
        label: String::new(),
        type_name: short_type(&header.type_name),
        size: header.length,
        checksum: format!("{:08x}", header.checksum),
        preview,
    })
}

pub(super) async fn step(
    State(app): State<Arc<App>>,
    UrlPath((id, step)): UrlPath<(String, String)>,
    Query(q): Query<StepQuery>,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    let who = auth::read(&app, &headers)?;
    let (app2, id2, step2) = (app.clone(), id.clone(), step.clone());
    let data = blocking(move || load_step(&app2, &id2, &step2, q.attempt)).await?;
    if data.run.id != id {
        return Ok(Redirect::to(&step_url(&data.run.id, &step)).into_response());
    }
    Ok(layout(&step, step_fragment(&data, who, &app.csrf)).into_response())
}

pub(super) async fn step_live(
    State(app): State<Arc<App>>,
    UrlPath((id, step)): UrlPath<(String, String)>,
    Query(q): Query<StepQuery>,
    headers: HeaderMap,
) -> Result<Markup, UiError> {
    let who = auth::read(&app, &headers)?;
    let app2 = app.clone();
    let data = blocking(move || load_step(&app2, &id, &step, q.attempt)).await?;
    Ok(step_fragment(&data, who, &app.csrf))
}

fn step_fragment(d: &StepData, who: Who, csrf: &str) -> Markup {
    let (r, n) = (&d.run, &d.node.node);
    let live = r.status == RunStatus::Running && !n.status.is_terminal();
    let poll = live.then(|| format!("{}/live?attempt={}", step_url(&r.id, &n.name), d.log.0));
    html! {
        section #step data-poll=[poll] data-status=(n.status.as_str()) {
            p.crumbs { a href=(run_url(&r.id)) { (r.name) " " code { (r.id) } } " / step" }
            h1 { (n.name) " " (badge(n.status.as_str())) }
            p.meta {
                "component " code { (n.component) }
                @if let Some(t) = &d.node.task_type { " · " (t) }
                " · " (n.attempts) " attempt" @if n.attempts != 1 { "s" }
                @if let Some(started) = n.started { " · started " (timestamp(started)) " UTC" }
                @if let Some(d) = n.duration() { " · " (human_duration(d)) }
            }
            @if !n.parents.is_empty() {
                p.meta { "after " @for (i, p) in n.parents.iter().enumerate() { @if i > 0 { ", " } a href=(step_url(&r.id, p)) { (p) } } }
            }
            @if !d.node.tags.is_empty() { p.meta { @for t in &d.node.tags { span.tag { (t) } " " } } }
            @if let Some(e) = &n.error {
                div.error { b { (format!("{:?}", e.kind).to_lowercase()) ": " } pre { (e.message) } }
            }
            @if who.authed() && r.mode != "debug" && n.status.is_terminal() && d.node.node.attempts > 0 {
                form.actions method="post" action={ (step_url(&r.id, &n.name)) "/spin" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" title="run this step again alone, on the inputs its last attempt had" { "Spin (run again alone)" }
                }
            }
            div.columns {
                section {
                    h2 { "Attempts" }
                    table.attempts {
                        thead { tr { th { "#" } th { "outcome" } th { "log" } } }
                        tbody {
                            @for (number, error) in &d.attempts {
                                tr {
                                    td { (number) }
                                    td { @match error { Some(e) => { span.error { (one_line(&e.message, 200)) } }, None => { "-" } } }
                                    td { a href={ (step_url(&r.id, &n.name)) "?attempt=" (number) } { "log" } }
                                }
                            }
                        }
                    }
                }
                section {
                    h2 { "States" }
                    table.kv { @for (status, at) in &d.events { tr { th { (badge(status.as_str())) } td { (timestamp(*at)) " UTC" } } } }
                }
            }
            section.log {
                h2 { "Log of attempt " (d.log.0) }
                @match &d.log.1 {
                    Some(text) => { pre.log data-follow[live] { (text) } },
                    None => { p.empty { @if r.mode == "debug" { "Steps of debug runs run in the controller's process: their output is there." } @else { "No log was kept." } } },
                }
            }
            @if !d.inputs.is_empty() {
                section { h2 { "Inputs" } (values_table(&d.inputs)) }
            }
            @let outputs: Vec<Value> = d.artifacts.iter().map(|a| Value {
                label: format!("{} ({})", a.name, format!("{:?}", a.kind).to_lowercase()),
                type_name: a.type_name.as_deref().map(short_type).unwrap_or_default(),
                size: a.size.unwrap_or(0),
                checksum: a.checksum.clone().unwrap_or_default(),
                preview: d.previews.get(&a.name).cloned(),
            }).collect();
            @if !outputs.is_empty() {
                section { h2 { "Outputs, artifacts and models" } (values_table(&outputs)) }
            }
            (metrics_section("Metrics", &d.metrics, |m| m.series.clone()))
        }
    }
}

fn values_table(values: &[Value]) -> Markup {
    html! {
        table.values {
            thead { tr { th { "value" } th { "type" } th { "size" } th { "checksum" } th { "preview" } } }
            tbody {
                @for v in values {
                    tr {
                        td { (v.label) }
                        td { code { (v.type_name) } }
                        td { (size(v.size)) }
                        td { code { (v.checksum) } }
                        td { @if let Some(p) = &v.preview { pre.preview { (p) } } @else { span.hint { "not JSON" } } }
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------ compare

pub(super) async fn compare(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Markup, UiError> {
    let who = auth::read(&app, &headers)?;
    let q = pairs(query.as_deref());
    let ids: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "runs")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect();
    let all = q.iter().any(|(k, v)| k == "all" && v == "1");
    if ids.len() < 2 {
        return Err(UiError::BadRequest(
            "choose two or more runs to compare (tick them in the list)".into(),
        ));
    }
    if ids.len() > 8 {
        return Err(UiError::BadRequest("compare at most 8 runs at once".into()));
    }
    let app2 = app.clone();
    let runs = blocking(move || ids.iter().map(|id| load_run(&app2, id)).collect::<Result<Vec<_>, _>>()).await?;
    let _ = who;
    Ok(layout(
        "Compare",
        compare_body(&runs, all, query.as_deref().unwrap_or("")),
    ))
}

fn compare_body(runs: &[RunData], all: bool, query: &str) -> Markup {
    let mut names: Vec<&str> = Vec::new();
    for r in runs {
        for (k, _) in &r.record.parameters {
            if !names.contains(&k.as_str()) {
                names.push(k);
            }
        }
    }
    let value = |r: &RunData, k: &str| r.record.parameters.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let differs = |k: &str| {
        let first = value(&runs[0], k);
        runs.iter().any(|r| value(r, k) != first)
    };
    let shown: Vec<&str> = names.iter().copied().filter(|k| all || differs(k)).collect();
    let mut steps: Vec<&str> = Vec::new();
    for r in runs {
        for n in &r.nodes {
            if !steps.contains(&n.node.name.as_str()) {
                steps.push(&n.node.name);
            }
        }
    }
    let node = |r: &RunData, s: &str| r.nodes.iter().find(|n| n.node.name == s).map(|n| n.node.clone());
    let mut by_title: Plots<'_> = BTreeMap::new();
    for r in runs {
        for m in &r.metrics {
            let step = if m.node.is_empty() {
                String::new()
            } else {
                format!("{}: ", m.node)
            };
            by_title
                .entry(m.title.as_str())
                .or_default()
                .entry(format!("#{} {step}{}", r.record.run_number, m.series))
                .or_default()
                .push((m.iteration as f64, m.value));
        }
    }
    let toggle = if all {
        query.replace("&all=1", "").replace("all=1&", "")
    } else {
        format!("{query}&all=1")
    };
    html! {
        h1 { "Compare " (runs.len()) " runs" }
        table.compare {
            thead {
                tr { th {} @for r in runs { th { a href=(run_url(&r.record.id)) { (r.record.name) " #" (r.record.run_number) } br; (badge(r.record.status.as_str())) } } }
            }
            tbody {
                tr.section { th colspan=(runs.len() + 1) {
                    "Parameters " @if all { "(all) " a href={ "/compare?" (toggle) } { "only those that differ" } } @else { "(those that differ) " a href={ "/compare?" (toggle) } { "show all" } }
                } }
                @if shown.is_empty() { tr { td colspan=(runs.len() + 1) { span.empty { "no parameter differs" } } } }
                @for k in &shown {
                    tr class=[differs(k).then_some("diff")] data-param=(k) {
                        th { (k) }
                        @for r in runs { td { code { (value(r, k).unwrap_or_else(|| "-".into())) } } }
                    }
                }
                tr.section { th colspan=(runs.len() + 1) { "Step durations" } }
                @for s in &steps {
                    tr data-step=(s) {
                        th { (s) }
                        @for r in runs {
                            td { @match node(r, s) {
                                Some(n) => { (n.duration().map(human_duration).unwrap_or_default()) " " (badge(n.status.as_str())) },
                                None => { "-" },
                            } }
                        }
                    }
                }
            }
        }
        (plots("Metrics, overlaid", by_title))
    }
}
