//! What the run store gives back, and the queries behind it.

use super::node_log::{self, Folded};
use super::time;
use pipeline_core::{DagNode, NodeStatus, RunStatus, StepError};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// One recorded run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    /// Unique id (pipeline name, start time, process, counter).
    pub id: String,
    /// `project`.
    pub project: String,
    /// `name`.
    pub name: String,
    /// The version, given or chosen.
    pub version: String,
    /// 1 for the first run of this project/name, then 2, 3...
    pub run_number: u32,
    /// How it stands or ended.
    pub status: RunStatus,
    /// `debug` or `local`.
    pub mode: String,
    /// The pipeline function's code hash.
    pub code_hash: String,
    /// Parameters as `(name, JSON value)`.
    pub parameters: Vec<(String, String)>,
    /// Tags.
    pub tags: Vec<String>,
    /// Named configuration values (`connect_configuration`).
    pub configuration: BTreeMap<String, serde_json::Value>,
    /// Start.
    pub started: SystemTime,
    /// End, once it ended.
    pub ended: Option<SystemTime>,
    /// Where its controller runs (or ran), for runs recorded with it.
    pub controller: Option<Controller>,
    /// The program that ran it (its controller's executable), for starting it again.
    pub executable: Option<PathBuf>,
    /// `module::path::function` of the pipeline.
    pub entry: Option<String>,
    /// The run this one was started again from (`pipeline rerun`).
    pub origin: Option<String>,
    /// The run whose body started this one, and its node there: `(run, node)` (a nested
    /// pipeline).
    pub parent: Option<(String, String)>,
}

/// Where a run's controller lives, and when it last showed it was alive.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Controller {
    /// The machine's host name.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// Its last heartbeat (written every [`HEARTBEAT`] while the run is live).
    pub heartbeat: SystemTime,
}

/// How often a live run's controller records that it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// How old the heartbeat of a controller on another machine may be before its run counts as
/// crashed. Generous: a busy store delays heartbeats by up to its busy timeout.
pub const STALE_HEARTBEAT: Duration = Duration::from_secs(30);

impl Controller {
    /// Whether the controller is gone: on this machine, its process is dead; elsewhere, its
    /// heartbeat is older than [`STALE_HEARTBEAT`].
    pub fn is_gone(&self) -> bool {
        if self.host == crate::os::hostname() {
            return !crate::os::process_alive(self.pid);
        }
        SystemTime::now()
            .duration_since(self.heartbeat)
            .is_ok_and(|age| age > STALE_HEARTBEAT)
    }
}

impl std::fmt::Display for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "process {} on {}", self.pid, self.host)
    }
}

impl RunRecord {
    /// `Err` saying so when this is not a run of pipeline `project`/`name` (taking a run up
    /// again by its id).
    pub(crate) fn check_pipeline(&self, project: &str, name: &str) -> Result<(), String> {
        if (self.project.as_str(), self.name.as_str()) == (project, name) {
            return Ok(());
        }
        Err(format!(
            "it is a run of pipeline {}/{}, not {project}/{name}",
            self.project, self.name
        ))
    }

    /// `name #N`, as ClearML shows runs with `add_run_number`.
    pub fn display_name(&self) -> String {
        format!("{} #{}", self.name, self.run_number)
    }

    /// Wall time, up to now while it runs.
    pub fn elapsed(&self) -> std::time::Duration {
        self.ended
            .unwrap_or_else(SystemTime::now)
            .duration_since(self.started)
            .unwrap_or_default()
    }
}

/// One recorded node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeRecord {
    /// Creation order within the run.
    pub seq: u32,
    /// State, timings, parents, error.
    #[serde(flatten)]
    pub node: DagNode,
    /// The component's code hash.
    pub code_hash: String,
    /// The cache key, for `cache = true` steps.
    pub cache_key: Option<String>,
    /// The key of what the step was given (code and inputs), in recorded local and remote
    /// runs: a resumed run reuses a finished step whose key is unchanged.
    pub resume_key: Option<String>,
    /// The last attempt's log file (local mode).
    pub log_path: Option<PathBuf>,
    /// The component's `task_type` (training, data_processing...), when it names one.
    pub task_type: Option<String>,
    /// The step's tags: its component's `tags`, and with the pipeline's `add_pipeline_tags`
    /// the run's tags and `pipeline:<run id>`.
    pub tags: Vec<String>,
}

/// What an artifact record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// A step's output.
    Output,
    /// Uploaded with `upload_artifact`.
    Artifact,
    /// Uploaded with `upload_model`.
    Model,
}

impl ArtifactKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Output => "output",
            Self::Artifact => "artifact",
            Self::Model => "model",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "model" => Self::Model,
            "artifact" => Self::Artifact,
            _ => Self::Output,
        }
    }
}

/// One recorded artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// The node that made it (empty for the run's own).
    pub node: String,
    /// Output name, or the uploaded name.
    pub name: String,
    /// Output, artifact or model.
    pub kind: ArtifactKind,
    /// Where it is (a path for the local store).
    pub uri: String,
    /// Codec of its payload, for encoded values.
    pub codec: Option<String>,
    /// Rust type of the value, for encoded values.
    pub type_name: Option<String>,
    /// Size in bytes.
    pub size: Option<u64>,
    /// Checksum (CRC-32 hex for encoded values, BLAKE3 hex for uploaded files).
    pub checksum: Option<String>,
    /// Free-form metadata.
    pub metadata: Option<serde_json::Value>,
}

/// One reported scalar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    /// The node that reported it (empty for the run's own).
    pub node: String,
    /// Plot title.
    pub title: String,
    /// Series within the plot.
    pub series: String,
    /// Iteration (x value).
    pub iteration: i64,
    /// The value.
    pub value: f64,
    /// When it was reported.
    pub at: SystemTime,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this project.
    pub project: Option<String>,
    /// Only this pipeline name.
    pub name: Option<String>,
    /// Only this version.
    pub version: Option<String>,
    /// Only runs carrying all of these tags.
    pub tags: Vec<String>,
    /// Only runs in this state.
    pub status: Option<RunStatus>,
    /// At most this many (newest first).
    pub limit: Option<usize>,
    /// Only runs started from this run's body (nested pipelines).
    pub parent: Option<String>,
}

fn run_status(s: &str) -> RunStatus {
    match s {
        "completed" => RunStatus::Completed,
        "failed" => RunStatus::Failed,
        "aborted" => RunStatus::Aborted,
        "draft" => RunStatus::Draft,
        _ => RunStatus::Running,
    }
}

/// Steps of `run` per status, in the order of `NodeStatus`.
pub(crate) fn status_counts(
    conn: &Connection,
    version: usize,
    run: &str,
) -> rusqlite::Result<Vec<(NodeStatus, usize)>> {
    if version >= NODE_LOG {
        let mut stmt = conn.prepare_cached("SELECT name, status FROM nodes WHERE run_id = ?1 ORDER BY seq")?;
        let rows = stmt
            .query_map([run], |r| {
                Ok((r.get::<_, String>(0)?, node_status(&r.get::<_, String>(1)?)))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let blobs = node_log_blobs(conn, run)?;
        let (statuses, problems) = node_log::fold_statuses(&rows, blobs.iter().map(Vec::as_slice));
        damaged(run, &problems);
        let mut counts: Vec<(NodeStatus, usize)> = Vec::new();
        for status in statuses {
            match counts.iter_mut().find(|(s, _)| *s == status) {
                Some((_, n)) => *n += 1,
                None => counts.push((status, 1)),
            }
        }
        counts.sort_by_key(|(s, _)| *s as usize);
        return Ok(counts);
    }
    let mut stmt = conn.prepare_cached("SELECT status, count(*) FROM nodes WHERE run_id = ?1 GROUP BY status")?;
    let mut counts: Vec<(NodeStatus, usize)> = stmt
        .query_map(params![run], |r| {
            Ok((node_status(&r.get::<_, String>(0)?), r.get::<_, i64>(1)? as usize))
        })?
        .collect::<rusqlite::Result<_>>()?;
    counts.sort_by_key(|(s, _)| *s as usize);
    Ok(counts)
}

pub(crate) fn node_status(s: &str) -> NodeStatus {
    match s {
        "queued" => NodeStatus::Queued,
        "running" => NodeStatus::Running,
        "completed" => NodeStatus::Completed,
        "cached" => NodeStatus::Cached,
        "failed" => NodeStatus::Failed,
        "aborted" => NodeStatus::Aborted,
        "skipped" => NodeStatus::Skipped,
        _ => NodeStatus::Pending,
    }
}

/// The columns `run_row` reads, from a file of schema `version`: those a version does not
/// have yet read as NULL (controllers are recorded from version 3, executables from 4).
fn run_columns(version: usize) -> String {
    let since = |added: usize, column: &str| {
        if version >= added {
            column.to_string()
        } else {
            "NULL".into()
        }
    };
    format!(
        "id, project, name, version, run_number, status, mode, code_hash, parameters, tags, configuration, \
         started, ended, {}, pid, {}, {}, {}, {}, {}, {}",
        since(3, "host"),
        since(3, "heartbeat"),
        since(4, "executable"),
        since(4, "entry"),
        since(4, "origin"),
        since(7, "parent"),
        since(7, "parent_node"),
    )
}

fn run_row(r: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let json = |i: usize| -> rusqlite::Result<String> { r.get(i) };
    // Runs recorded before controllers were (no host, no heartbeat) stay as stored.
    let controller = match (
        r.get::<_, Option<String>>(13)?,
        r.get::<_, Option<u32>>(14)?,
        r.get::<_, Option<f64>>(15)?,
    ) {
        (Some(host), Some(pid), Some(heartbeat)) => Some(Controller {
            host,
            pid,
            heartbeat: time(heartbeat),
        }),
        _ => None,
    };
    let mut status = run_status(&r.get::<_, String>(5)?);
    if status == RunStatus::Running && controller.as_ref().is_some_and(Controller::is_gone) {
        status = RunStatus::Crashed;
    }
    Ok(RunRecord {
        id: r.get(0)?,
        project: r.get(1)?,
        name: r.get(2)?,
        version: r.get(3)?,
        run_number: r.get(4)?,
        status,
        mode: r.get(6)?,
        code_hash: r.get(7)?,
        parameters: serde_json::from_str(&json(8)?).unwrap_or_default(),
        tags: serde_json::from_str(&json(9)?).unwrap_or_default(),
        configuration: serde_json::from_str(&json(10)?).unwrap_or_default(),
        started: time(r.get(11)?),
        ended: r.get::<_, Option<f64>>(12)?.map(time),
        controller,
        executable: r.get::<_, Option<String>>(16)?.map(PathBuf::from),
        entry: r.get(17)?,
        origin: r.get(18)?,
        parent: match (r.get::<_, Option<String>>(19)?, r.get::<_, Option<String>>(20)?) {
            (Some(run), Some(node)) => Some((run, node)),
            _ => None,
        },
    })
}

pub(super) fn runs(conn: &Connection, version: usize, f: &RunFilter) -> rusqlite::Result<Vec<RunRecord>> {
    let mut sql = format!("SELECT {} FROM runs WHERE 1 = 1", run_columns(version));
    let mut args: Vec<String> = Vec::new();
    let parent = f.parent.as_ref().filter(|_| version >= 7);
    if f.parent.is_some() && parent.is_none() {
        return Ok(Vec::new()); // no run of an older store has a parent
    }
    for (column, value) in [
        ("project", &f.project),
        ("name", &f.name),
        ("version", &f.version),
        ("parent", &parent.cloned()),
    ] {
        if let Some(v) = value {
            args.push(v.clone());
            sql.push_str(&format!(" AND {column} = ?{}", args.len()));
        }
    }
    // A crashed run is stored as running: which of the two it is, is decided on reading.
    let live = matches!(f.status, Some(RunStatus::Running | RunStatus::Crashed));
    if let Some(s) = f.status {
        let stored = if live { RunStatus::Running } else { s };
        args.push(stored.as_str().to_string());
        sql.push_str(&format!(" AND status = ?{}", args.len()));
    }
    for tag in &f.tags {
        args.push(tag.clone());
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM json_each(runs.tags) WHERE value = ?{})",
            args.len()
        ));
    }
    sql.push_str(" ORDER BY started DESC, id DESC");
    if let Some(n) = f.limit.filter(|_| !live) {
        sql.push_str(&format!(" LIMIT {n}"));
    }
    let mut stmt = conn.prepare(&sql)?;
    let mut runs: Vec<RunRecord> = stmt
        .query_map(rusqlite::params_from_iter(args), run_row)?
        .collect::<rusqlite::Result<_>>()?;
    if live {
        runs.retain(|r| Some(r.status) == f.status);
        runs.truncate(f.limit.unwrap_or(usize::MAX));
    }
    Ok(runs)
}

pub(super) fn run(conn: &Connection, version: usize, id: &str) -> rusqlite::Result<Option<RunRecord>> {
    let columns = run_columns(version);
    let exact = conn
        .query_row(&format!("SELECT {columns} FROM runs WHERE id = ?1"), [id], run_row)
        .optional()?;
    if exact.is_some() {
        return Ok(exact);
    }
    // A case-sensitive prefix (`LIKE` would ignore case).
    let mut stmt = conn.prepare(&format!(
        "SELECT {columns} FROM runs WHERE substr(id, 1, length(?1)) = ?1 LIMIT 2"
    ))?;
    let found: Vec<RunRecord> = stmt.query_map([id], run_row)?.collect::<rusqlite::Result<_>>()?;
    Ok(if found.len() == 1 {
        found.into_iter().next()
    } else {
        None
    })
}

/// The schema version from which nodes are written to the node log.
const NODE_LOG: usize = 10;

pub(super) fn nodes(conn: &Connection, version: usize, run: &str) -> rusqlite::Result<Vec<NodeRecord>> {
    Ok(folded(conn, version, run)?.into_iter().map(|n| n.record).collect())
}

/// Run `run`'s nodes: its rows (runs recorded before the node log), then its node log folded
/// over them; by creation order.
fn folded(conn: &Connection, version: usize, run: &str) -> rusqlite::Result<Vec<Folded>> {
    // Resume keys are recorded from schema version 5.
    let resume_key = if version >= 5 { "resume_key" } else { "NULL" };
    // Task types from schema version 8.
    let task_type = if version >= 8 { "task_type" } else { "NULL" };
    let tags = if version >= 9 { "tags" } else { "NULL" };
    // Histories live in node rows from schema version 2.
    let history = if version >= 2 { "history" } else { "''" };
    let mut stmt = conn.prepare(&format!(
        "SELECT seq, name, component, code_hash, parents, status, attempts, started, ended, error, cache_key, log_path,
                {resume_key}, {task_type}, {tags}, {history}
         FROM nodes WHERE run_id = ?1 ORDER BY seq"
    ))?;
    let mut nodes = stmt
        .query_map([run], |r| {
            let record = NodeRecord {
                seq: r.get(0)?,
                node: DagNode {
                    name: r.get(1)?,
                    component: r.get(2)?,
                    parents: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
                    status: node_status(&r.get::<_, String>(5)?),
                    attempts: r.get(6)?,
                    started: r.get::<_, Option<f64>>(7)?.map(time),
                    ended: r.get::<_, Option<f64>>(8)?.map(time),
                    error: r
                        .get::<_, Option<String>>(9)?
                        .and_then(|e| serde_json::from_str::<StepError>(&e).ok()),
                },
                code_hash: r.get(3)?,
                cache_key: r.get(10)?,
                log_path: r.get::<_, Option<String>>(11)?.map(PathBuf::from),
                resume_key: r.get(12)?,
                task_type: r.get(13)?,
                tags: r
                    .get::<_, Option<String>>(14)?
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default(),
            };
            Ok(Folded {
                record,
                history: parse_history(&r.get::<_, String>(15)?),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if version >= NODE_LOG {
        let blobs = node_log_blobs(conn, run)?;
        damaged(run, &node_log::fold(&mut nodes, blobs.iter().map(Vec::as_slice)));
        // A resumed run's new nodes come after those it had; numbers may repeat across runs.
        nodes.sort_by_key(|n| n.record.seq);
    }
    Ok(nodes)
}

/// Run `run`'s node log, in the order it was written.
fn node_log_blobs(conn: &Connection, run: &str) -> rusqlite::Result<Vec<Vec<u8>>> {
    let mut stmt = conn.prepare_cached("SELECT data FROM node_log WHERE run_id = ?1 ORDER BY rowid")?;
    stmt.query_map([run], |r| r.get::<_, Vec<u8>>(0))?.collect()
}

/// Says what of run `run`'s node log could not be read: its nodes are shown as far as the
/// rest says (a damaged record must not hide every other run, nor the rest of this one).
fn damaged(run: &str, problems: &[String]) {
    for problem in problems {
        crate::diag::warn(format_args!(
            "run {run}: its node log's {problem}; its steps are shown as the rest of the log has them"
        ));
    }
}

/// A row's history: `status@seconds;` each change.
fn parse_history(history: &str) -> Vec<(NodeStatus, SystemTime)> {
    history
        .split(';')
        .filter_map(|change| {
            let (status, at) = change.split_once('@')?;
            Some((node_status(status), time(at.parse().ok()?)))
        })
        .collect()
}

pub(super) fn node_events(
    conn: &Connection,
    version: usize,
    run: &str,
    node: &str,
) -> rusqlite::Result<Vec<(NodeStatus, SystemTime)>> {
    let history = folded(conn, version, run)?
        .into_iter()
        .find(|n| n.record.node.name == node)
        .map(|n| n.history);
    if let Some(history) = history.filter(|h| !h.is_empty()) {
        return Ok(history);
    }
    // Runs recorded before histories were kept in the node's row.
    let mut stmt = conn.prepare("SELECT status, at FROM node_events WHERE run_id = ?1 AND node = ?2 ORDER BY rowid")?;
    stmt.query_map(params![run, node], |r| {
        Ok((node_status(&r.get::<_, String>(0)?), time(r.get(1)?)))
    })?
    .collect()
}

pub(super) fn artifacts(conn: &Connection, run: &str) -> rusqlite::Result<Vec<ArtifactRecord>> {
    let mut stmt = conn.prepare(
        "SELECT node, name, kind, uri, codec, type_name, size, checksum, metadata FROM artifacts WHERE run_id = ?1
         ORDER BY created, node, name",
    )?;
    stmt.query_map([run], |r| {
        Ok(ArtifactRecord {
            node: r.get(0)?,
            name: r.get(1)?,
            kind: ArtifactKind::parse(&r.get::<_, String>(2)?),
            uri: r.get(3)?,
            codec: r.get(4)?,
            type_name: r.get(5)?,
            size: r.get(6)?,
            checksum: r.get(7)?,
            metadata: r
                .get::<_, Option<String>>(8)?
                .and_then(|m| serde_json::from_str(&m).ok()),
        })
    })?
    .collect()
}

pub(super) fn metrics(conn: &Connection, run: &str) -> rusqlite::Result<Vec<MetricRecord>> {
    let mut stmt = conn.prepare(
        "SELECT node, title, series, iteration, value, at FROM metrics WHERE run_id = ?1 ORDER BY title, series, iteration, rowid",
    )?;
    stmt.query_map([run], |r| {
        Ok(MetricRecord {
            node: r.get(0)?,
            title: r.get(1)?,
            series: r.get(2)?,
            iteration: r.get(3)?,
            value: r.get(4)?,
            at: time(r.get(5)?),
        })
    })?
    .collect()
}

pub(super) fn texts(conn: &Connection, run: &str) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare("SELECT node, text FROM texts WHERE run_id = ?1 ORDER BY rowid")?;
    stmt.query_map([run], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
}
