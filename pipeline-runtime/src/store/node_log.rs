//! Nodes' records as a log: each batch the recorder writes adds one row per run to
//! `node_log`, a blob of that batch's node writes in order; readers fold a run's blobs (after
//! its `nodes` rows, which runs recorded before the log and older builds have) into one record
//! per node.
//!
//! Why: a row per node costs 3–5 µs of SQLite work (two B-trees, ~300 bytes each, the WAL), more
//! than the whole step it records in debug mode; one blob per batch costs a twentieth of that.
//! The fold applies exactly the rules the rows' upsert had: a node's first write inserts it
//! (or, in a resumed run, updates the node it had), later writes update its state, keep the
//! keys and log path already known when they carry none, and append to its history.

use super::{NodeRecord, NodeState, secs, time, time_micros};
use pipeline_core::{DagNode, NodeStatus, StepError};
use serde::Deserialize;
use std::borrow::Cow;
use std::path::PathBuf;
use std::time::SystemTime;

/// The first byte of every blob: the format of what follows.
const FORMAT: u8 = 1;

/// A node's state changes, in order.
pub(super) type History = smallvec::SmallVec<[(NodeStatus, SystemTime); 4]>;

/// A status as stored: numbers fixed here, whatever order `NodeStatus` has.
fn code(status: NodeStatus) -> u8 {
    match status {
        NodeStatus::Pending => 0,
        NodeStatus::Queued => 1,
        NodeStatus::Running => 2,
        NodeStatus::Completed => 3,
        NodeStatus::Cached => 4,
        NodeStatus::Failed => 5,
        NodeStatus::Aborted => 6,
        NodeStatus::Skipped => 7,
    }
}

fn status(code: u8) -> Result<NodeStatus, String> {
    Ok(match code {
        0 => NodeStatus::Pending,
        1 => NodeStatus::Queued,
        2 => NodeStatus::Running,
        3 => NodeStatus::Completed,
        4 => NodeStatus::Cached,
        5 => NodeStatus::Failed,
        6 => NodeStatus::Aborted,
        7 => NodeStatus::Skipped,
        _ => return Err(format!("a node log blob has an unknown status {code}")),
    })
}

fn micros(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// One node write, as stored and read back (borrowing the blob's strings); written field by
/// field by [`Writer`]. Serializable in tests, to check that both give the same bytes.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct Entry<'a> {
    seq: u32,
    name: &'a str,
    status: u8,
    attempts: u32,
    started: Option<f64>,
    ended: Option<f64>,
    /// The error's JSON, as the rows hold it.
    error: Option<&'a str>,
    cache_key: Option<&'a str>,
    resume_key: Option<&'a str>,
    log_path: Option<&'a str>,
    /// The state changes of the batch: status code, microseconds since the epoch.
    history: Vec<(u8, u64)>,
    /// What a node's first write carries.
    #[serde(borrow)]
    origin: Option<Origin<'a>>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct Origin<'a> {
    component: &'a str,
    code_hash: &'a str,
    #[serde(borrow)]
    parents: Vec<&'a str>,
    task_type: Option<&'a str>,
    #[serde(borrow)]
    tags: Vec<&'a str>,
}

/// Writes [`Entry`]'s fields into a blob as bincode's standard configuration does (integers
/// as varints, little-endian, an option's tag byte, a length before a string or a list), by
/// hand: the serde path took half of the recorder's time. A test checks the bytes against
/// bincode's encoding of an `Entry`, which is what readers decode.
struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn byte(&mut self, b: u8) {
        self.0.push(b);
    }

    /// bincode's varint: below 251 one byte, else a marker and the value in 2, 4 or 8 bytes.
    fn varint(&mut self, n: u64) {
        if n < 251 {
            self.0.push(n as u8);
        } else if n <= u64::from(u16::MAX) {
            self.0.push(251);
            self.0.extend_from_slice(&(n as u16).to_le_bytes());
        } else if n <= u64::from(u32::MAX) {
            self.0.push(252);
            self.0.extend_from_slice(&(n as u32).to_le_bytes());
        } else {
            self.0.push(253);
            self.0.extend_from_slice(&n.to_le_bytes());
        }
    }

    fn text(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn texts<T: AsRef<str>>(&mut self, list: &[T]) {
        self.varint(list.len() as u64);
        for t in list {
            self.text(t.as_ref());
        }
    }

    fn option<T>(&mut self, value: Option<T>, write: impl FnOnce(&mut Self, T)) {
        match value {
            None => self.byte(0),
            Some(v) => {
                self.byte(1);
                write(self, v);
            }
        }
    }

    fn seconds(&mut self, at: Option<SystemTime>) {
        self.option(at, |w, at| w.0.extend_from_slice(&secs(at).to_le_bytes()));
    }

    fn opt_text(&mut self, s: Option<&str>) {
        self.option(s, Self::text);
    }
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// What a node's first write adds: what does not change.
#[derive(Clone, Copy)]
pub(super) struct OriginRef<'a> {
    pub(super) component: &'a pipeline_core::ComponentDescriptor,
    /// Its parents' names.
    pub(super) parents: &'a [smol_str::SmolStr],
    /// The tags of every step of its run besides its component's.
    pub(super) run_tags: &'a [String],
}

/// The most one entry may take to decode: a damaged length must be an error, not an
/// allocation of whatever it says.
const ENTRY_LIMIT: usize = 64 << 20;

/// The node writes of one batch of one run: one blob.
#[derive(Default)]
pub(super) struct LogBatch {
    blob: Vec<u8>,
}

impl LogBatch {
    /// Adds a write of node number `seq`: its `state`, the batch's changes in `history`, and
    /// its `origin` when the batch has its first record.
    pub(super) fn push(&mut self, seq: u32, state: &NodeState, history: &History, origin: Option<OriginRef<'_>>) {
        let rare = state.rare();
        let error = rare
            .error
            .as_ref()
            .map(|e| serde_json::to_string(e).expect("errors serialize"));
        let log_path = rare.log_path.as_ref().map(|p| p.to_string_lossy());
        if self.blob.is_empty() {
            self.blob.push(FORMAT);
        }
        // `Entry`'s fields, in order.
        let mut w = Writer(&mut self.blob);
        w.varint(seq.into());
        w.text(&state.name);
        w.byte(code(state.status));
        w.varint(state.attempts.into());
        w.seconds(state.started);
        w.seconds(state.ended);
        w.opt_text(error.as_deref());
        w.opt_text(rare.cache_key.as_deref());
        w.opt_text(rare.resume_key.as_deref());
        w.opt_text(log_path.as_deref());
        w.varint(history.len() as u64);
        for &(status, at) in history {
            w.byte(code(status));
            w.varint(micros(at));
        }
        w.option(origin, |w, o| {
            let c = o.component;
            w.text(c.name);
            w.text(c.code_hash);
            w.texts(o.parents);
            w.opt_text(c.options.task_type);
            // The component's tags, then the run's.
            let tags = c.options.tags;
            w.varint((tags.len() + o.run_tags.len()) as u64);
            tags.iter().for_each(|t| w.text(t));
            o.run_tags.iter().for_each(|t| w.text(t));
        });
    }

    /// Empties the batch, keeping its room.
    pub(super) fn clear(&mut self) {
        self.blob.clear();
    }

    /// Gives back room beyond `bytes` (after a huge batch).
    pub(super) fn shrink(&mut self, bytes: usize) {
        if self.blob.capacity() > bytes {
            self.blob = Vec::new();
        }
    }

    /// Writes the batch's blob to the log of run `run`.
    pub(super) fn write(&self, tx: &rusqlite::Transaction<'_>, run: &str) -> rusqlite::Result<()> {
        if self.blob.is_empty() {
            return Ok(());
        }
        tx.prepare_cached("INSERT INTO node_log (run_id, data) VALUES (?1, ?2)")?
            .execute(rusqlite::params![run, &self.blob])?;
        Ok(())
    }
}

/// A node as folded: its record and its history.
pub(super) struct Folded {
    pub(super) record: NodeRecord,
    pub(super) history: Vec<(NodeStatus, SystemTime)>,
}

/// Calls `f` with each entry of `blobs`, in order, and whether an earlier blob was damaged. A
/// blob that cannot be read (damaged, or of an unknown format) is read up to the damage, the
/// rest of it skipped: what it says is given back, one line per blob, and the blobs after it
/// are read.
fn entries<'b>(
    blobs: impl IntoIterator<Item = &'b [u8]>,
    mut f: impl FnMut(Entry<'b>, bool) -> Result<(), String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (number, blob) in blobs.into_iter().enumerate() {
        let Some((&format, mut rest)) = blob.split_first() else {
            continue;
        };
        if format != FORMAT {
            problems.push(format!("batch {} has an unknown format ({format})", number + 1));
            continue;
        }
        while !rest.is_empty() {
            let read = bincode::serde::borrow_decode_from_slice(rest, config().with_limit::<ENTRY_LIMIT>())
                .map_err(|e| e.to_string())
                .and_then(|(entry, used): (Entry<'b>, usize)| f(entry, !problems.is_empty()).map(|()| used));
            match read {
                Ok(used) => rest = &rest[used..],
                Err(e) => {
                    problems.push(format!("batch {} is damaged ({e})", number + 1));
                    break;
                }
            }
        }
    }
    problems
}

/// Folds blobs (in the order they were written) into `nodes`, the run's rows before them.
/// Gives back what could not be read (see [`entries`]).
#[must_use]
pub(super) fn fold<'b>(nodes: &mut Vec<Folded>, blobs: impl IntoIterator<Item = &'b [u8]>) -> Vec<String> {
    let mut by_name: fnv::FnvHashMap<Cow<'b, str>, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (Cow::Owned(n.record.node.name.clone()), i))
        .collect();
    entries(blobs, |entry, after_damage| {
        apply(nodes, &mut by_name, entry, after_damage)
    })
}

/// Only each node's last status, by creation order: `(name, status)` of the run's rows, then
/// its blobs (what a count per status needs, without building records); with what could not
/// be read.
pub(super) fn fold_statuses<'b>(
    rows: &'b [(String, NodeStatus)],
    blobs: impl IntoIterator<Item = &'b [u8]>,
) -> (Vec<NodeStatus>, Vec<String>) {
    let mut statuses: Vec<NodeStatus> = rows.iter().map(|(_, s)| *s).collect();
    let mut by_name: fnv::FnvHashMap<&'b str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.as_str(), i))
        .collect();
    let problems = entries(blobs, |entry, after_damage| {
        let status = status(entry.status)?;
        match by_name.get(entry.name) {
            Some(&i) => statuses[i] = status,
            None if entry.origin.is_some() || after_damage => {
                by_name.insert(entry.name, statuses.len());
                statuses.push(status);
            }
            None => {} // as in `apply`
        }
        Ok(())
    });
    (statuses, problems)
}

/// One write, with the rules of the rows' insert (first write) and update (later ones).
fn apply<'b>(
    nodes: &mut Vec<Folded>,
    by_name: &mut fnv::FnvHashMap<Cow<'b, str>, usize>,
    entry: Entry<'b>,
    after_damage: bool,
) -> Result<(), String> {
    let status = status(entry.status)?;
    let mut changes = Vec::with_capacity(entry.history.len());
    for (code, at) in entry.history {
        changes.push((self::status(code)?, time_micros(at)));
    }
    let error = entry.error.and_then(|e| serde_json::from_str::<StepError>(e).ok());
    let index = match (by_name.get(entry.name), entry.origin) {
        (Some(&i), origin) => {
            // The update's rules; a first write of a node the run had (a resumed run) also
            // replaces what its component says of it.
            if let Some(origin) = origin {
                let record = &mut nodes[i].record;
                record.code_hash = origin.code_hash.to_string();
                record.task_type = origin.task_type.map(str::to_string);
                record.tags = origin.tags.into_iter().map(str::to_string).collect();
            }
            i
        }
        // A node's first write; or, once a blob was damaged, a write of a node whose first one
        // may have been in it: shown with what is known (no component, no parents).
        (None, origin) if origin.is_some() || after_damage => {
            let origin = origin.unwrap_or(Origin {
                component: "",
                code_hash: "",
                parents: Vec::new(),
                task_type: None,
                tags: Vec::new(),
            });
            nodes.push(Folded {
                record: NodeRecord {
                    seq: entry.seq,
                    node: DagNode {
                        name: entry.name.to_string(),
                        component: origin.component.to_string(),
                        parents: origin.parents.into_iter().map(str::to_string).collect(),
                        status: NodeStatus::Pending,
                        attempts: 0,
                        started: None,
                        ended: None,
                        error: None,
                    },
                    code_hash: origin.code_hash.to_string(),
                    cache_key: None,
                    resume_key: None,
                    log_path: None,
                    task_type: origin.task_type.map(str::to_string),
                    tags: origin.tags.into_iter().map(str::to_string).collect(),
                },
                history: Vec::new(),
            });
            by_name.insert(Cow::Borrowed(entry.name), nodes.len() - 1);
            nodes.len() - 1
        }
        // An update of a node never inserted: as the row's update, nothing.
        (None, _) => return Ok(()),
    };
    let Folded { record, history } = &mut nodes[index];
    record.node.status = status;
    record.node.attempts = entry.attempts;
    record.node.started = entry.started.map(time);
    record.node.ended = entry.ended.map(time);
    record.node.error = error;
    if let Some(key) = entry.cache_key {
        record.cache_key = Some(key.to_string());
    }
    if let Some(key) = entry.resume_key {
        record.resume_key = Some(key.to_string());
    }
    if let Some(path) = entry.log_path {
        record.log_path = Some(PathBuf::from(path));
    }
    history.extend(changes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NodeState;
    use std::time::Duration;

    /// A node write as the tests make it: its number and state.
    struct Write {
        seq: u32,
        state: NodeState,
    }

    fn event(seq: u32, name: &str, status: NodeStatus) -> Write {
        Write {
            seq,
            state: NodeState {
                name: name.into(),
                status,
                attempts: 1,
                started: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(10)),
                ended: None,
                rare: None,
            },
        }
    }

    /// A first write's origin as the tests make it: a component of their own, the node's
    /// parents and its run's tags.
    #[derive(Clone)]
    struct TestOrigin {
        component: pipeline_core::ComponentDescriptor,
        parents: Vec<smol_str::SmolStr>,
        run_tags: Vec<String>,
    }

    impl TestOrigin {
        fn as_ref(&self) -> OriginRef<'_> {
            OriginRef {
                component: &self.component,
                parents: &self.parents,
                run_tags: &self.run_tags,
            }
        }
    }

    fn origin(parents: &[&str]) -> TestOrigin {
        TestOrigin {
            component: pipeline_core::ComponentDescriptor {
                name: "inc",
                code_hash: "h1",
                options: pipeline_core::ComponentOptions {
                    task_type: Some("training"),
                    tags: &["t"],
                    ..pipeline_core::ComponentOptions::DEFAULT
                },
                ..crate::store::TEST_COMPONENT
            },
            parents: parents.iter().map(smol_str::SmolStr::new).collect(),
            run_tags: Vec::new(),
        }
    }

    impl LogBatch {
        fn put(&mut self, e: &Write, history: &History, origin: Option<&TestOrigin>) {
            self.push(e.seq, &e.state, history, origin.map(TestOrigin::as_ref));
        }
    }

    /// Changes at whole seconds.
    fn changes(list: &[(NodeStatus, u64)]) -> History {
        list.iter()
            .map(|&(s, at)| (s, SystemTime::UNIX_EPOCH + Duration::from_secs(at)))
            .collect()
    }

    /// Adds node `name`'s first write (its origin, no changes) to `batch`.
    fn first(batch: &mut LogBatch, seq: u32, name: &str) {
        let origin = origin(&[]);
        batch.put(&event(seq, name, NodeStatus::Running), &History::new(), Some(&origin));
    }

    fn blob(batch: &LogBatch) -> Vec<u8> {
        batch.blob.clone()
    }

    /// The `Entry` readers decode for a write of `e` with `history` and `origin`.
    fn entry_of<'a>(
        e: &'a Write,
        history: &History,
        origin: Option<&'a TestOrigin>,
        error: Option<&'a str>,
    ) -> Entry<'a> {
        let rare = e.state.rare();
        Entry {
            seq: e.seq,
            name: &e.state.name,
            status: code(e.state.status),
            attempts: e.state.attempts,
            started: e.state.started.map(secs),
            ended: e.state.ended.map(secs),
            error,
            cache_key: rare.cache_key.as_deref(),
            resume_key: rare.resume_key.as_deref(),
            log_path: rare.log_path.as_ref().map(|p| p.to_str().unwrap()),
            history: history.iter().map(|&(s, at)| (code(s), micros(at))).collect(),
            origin: origin.map(|o| Origin {
                component: o.component.name,
                code_hash: o.component.code_hash,
                parents: o.parents.iter().map(|p| p.as_str()).collect(),
                task_type: o.component.options.task_type,
                tags: (o.component.options.tags.iter().copied())
                    .chain(o.run_tags.iter().map(String::as_str))
                    .collect(),
            }),
        }
    }

    #[test]
    fn a_write_has_the_bytes_of_the_entry_older_builds_wrote_and_readers_decode() {
        // Every kind of field, and numbers at each of bincode's varint widths.
        let mut failed = event(7, "train_12", NodeStatus::Failed);
        failed.state.ended = Some(SystemTime::UNIX_EPOCH + Duration::from_millis(20_500));
        let rare = failed.state.rare.get_or_insert_with(Default::default);
        rare.error = Some(StepError::new(pipeline_core::ErrorKind::Error, "boom"));
        rare.cache_key = Some("ck".into());
        rare.log_path = Some("/logs/a.log".into());
        let mut big = event(70_000, &"ñ".repeat(200), NodeStatus::Running);
        big.state.attempts = 300;
        big.state.started = Some(SystemTime::now());
        big.state.rare.get_or_insert_with(Default::default).resume_key = Some("r".repeat(70_000));
        let edge = event(251, "", NodeStatus::Skipped);
        let plain = event(250, "a", NodeStatus::Pending);
        let histories = [
            History::new(),
            changes(&[(NodeStatus::Running, 1), (NodeStatus::Failed, 2)]),
            [
                (NodeStatus::Queued, SystemTime::now()),
                (NodeStatus::Cached, SystemTime::UNIX_EPOCH),
            ]
            .into_iter()
            .collect(),
        ];
        let mut wide = origin(&["prepare", "split_3"]);
        wide.parents = (0..300).map(|i| smol_str::format_smolstr!("p_{i}")).collect();
        wide.component.options.task_type = None;
        wide.component.options.tags = &[];
        let mut tagged = origin(&["prepare"]);
        tagged.run_tags = vec!["nightly".into(), "pipeline:r1".into()];
        let origins = [None, Some(origin(&["prepare", "split_3"])), Some(wide), Some(tagged)];
        for e in [&failed, &big, &edge, &plain] {
            let error = e.state.rare().error.as_ref().map(|e| serde_json::to_string(e).unwrap());
            for history in &histories {
                for origin in &origins {
                    let mut batch = LogBatch::default();
                    batch.put(e, history, origin.as_ref());
                    let entry = entry_of(e, history, origin.as_ref(), error.as_deref());
                    let mut expected = vec![FORMAT];
                    bincode::serde::encode_into_std_write(&entry, &mut expected, config()).unwrap();
                    assert!(blob(&batch) == expected, "node {} differs", e.seq);
                }
            }
        }
    }

    #[test]
    fn a_first_write_inserts_and_later_ones_update_keeping_known_keys() {
        let mut first = LogBatch::default();
        let mut e = event(0, "a", NodeStatus::Running);
        let rare = e.state.rare.get_or_insert_with(Default::default);
        rare.cache_key = Some("ck".into());
        rare.log_path = Some("/logs/a.log".into());
        first.put(&e, &changes(&[(NodeStatus::Running, 1)]), Some(&origin(&["p"])));
        // A write for a node never inserted changes nothing, as the row's update did.
        first.put(&event(5, "ghost", NodeStatus::Completed), &History::new(), None);
        let mut second = LogBatch::default();
        let mut e = event(0, "a", NodeStatus::Failed);
        e.state.attempts = 2;
        let rare = e.state.rare.get_or_insert_with(Default::default);
        rare.error = Some(StepError::new(pipeline_core::ErrorKind::Error, "boom"));
        rare.resume_key = Some("rk".into());
        second.put(&e, &changes(&[(NodeStatus::Failed, 2)]), None);

        let mut nodes = Vec::new();
        let (first, second) = (blob(&first), blob(&second));
        assert!(fold(&mut nodes, [&first[..], &second[..]]).is_empty());
        assert_eq!(nodes.len(), 1);
        let Folded { record, history } = &nodes[0];
        assert_eq!(record.node.name, "a");
        assert_eq!(record.node.component, "inc");
        assert_eq!(record.node.parents, vec!["p".to_string()]);
        assert_eq!(record.node.status, NodeStatus::Failed);
        assert_eq!(record.node.attempts, 2);
        assert_eq!(record.node.error.as_ref().map(|e| e.message.as_str()), Some("boom"));
        assert_eq!(record.cache_key.as_deref(), Some("ck"), "kept: the update carried none");
        assert_eq!(record.resume_key.as_deref(), Some("rk"));
        assert_eq!(record.log_path, Some(PathBuf::from("/logs/a.log")));
        assert_eq!(
            (record.task_type.as_deref(), record.tags.clone()),
            (Some("training"), vec!["t".to_string()])
        );
        assert_eq!(
            history[..],
            changes(&[(NodeStatus::Running, 1), (NodeStatus::Failed, 2)])[..]
        );
    }

    #[test]
    fn a_resumed_run_updates_the_nodes_it_had_and_appends_their_history() {
        let mut nodes = Vec::new();
        let mut before = LogBatch::default();
        before.put(
            &event(3, "a", NodeStatus::Failed),
            &changes(&[(NodeStatus::Failed, 1)]),
            Some(&origin(&[])),
        );
        let mut again = LogBatch::default();
        let mut o = origin(&["not kept"]);
        o.component.code_hash = "h2";
        again.put(
            &event(9, "a", NodeStatus::Completed),
            &changes(&[(NodeStatus::Completed, 2)]),
            Some(&o),
        );
        let (before, again) = (blob(&before), blob(&again));
        assert!(fold(&mut nodes, [&before[..], &again[..]]).is_empty());
        assert_eq!(nodes.len(), 1);
        let record = &nodes[0].record;
        // As the rows' upsert: the number and parents stay, the code hash is the new one.
        assert_eq!((record.seq, record.node.parents.len()), (3, 0));
        assert_eq!(record.code_hash, "h2");
        assert_eq!(record.node.status, NodeStatus::Completed);
        assert_eq!(
            nodes[0].history[..],
            changes(&[(NodeStatus::Failed, 1), (NodeStatus::Completed, 2)])[..]
        );
    }

    #[test]
    fn the_status_fold_agrees_with_the_record_fold() {
        let mut batch = LogBatch::default();
        batch.put(
            &event(1, "b", NodeStatus::Running),
            &History::new(),
            Some(&origin(&["a"])),
        );
        batch.put(&event(0, "a", NodeStatus::Completed), &History::new(), None);
        batch.put(&event(9, "ghost", NodeStatus::Failed), &History::new(), None);
        batch.put(&event(1, "b", NodeStatus::Skipped), &History::new(), None);
        let blob = blob(&batch);
        // Node `a` is a row of the run before its log.
        let rows = vec![("a".to_string(), NodeStatus::Failed)];
        let (statuses, problems) = fold_statuses(&rows, [&blob[..]]);
        assert!(problems.is_empty());
        assert_eq!(statuses, [NodeStatus::Completed, NodeStatus::Skipped]);
        let mut nodes = vec![Folded {
            record: NodeRecord {
                seq: 0,
                node: DagNode {
                    name: "a".into(),
                    component: "inc".into(),
                    parents: Vec::new(),
                    status: NodeStatus::Failed,
                    attempts: 1,
                    started: None,
                    ended: None,
                    error: None,
                },
                code_hash: "h0".into(),
                cache_key: None,
                resume_key: None,
                log_path: None,
                task_type: None,
                tags: Vec::new(),
            },
            history: Vec::new(),
        }];
        assert!(fold(&mut nodes, [&blob[..]]).is_empty());
        let folded: Vec<_> = nodes.iter().map(|n| n.record.node.status).collect();
        assert_eq!(folded, statuses);
    }

    /// A damaged blob is read up to the damage and said so; the blobs after it still count.
    #[test]
    fn damaged_or_unknown_blobs_are_reported_and_the_rest_is_read() {
        let mut batch = LogBatch::default();
        first(&mut batch, 0, "a");
        first(&mut batch, 1, "b");
        let good = blob(&batch);
        let mut later = LogBatch::default();
        later.put(&event(1, "b", NodeStatus::Completed), &History::new(), None);
        let later = blob(&later);
        let names = |nodes: &[Folded]| -> Vec<(String, NodeStatus)> {
            nodes
                .iter()
                .map(|n| (n.record.node.name.clone(), n.record.node.status))
                .collect()
        };

        // Cut inside its second entry: the first is read, the later blob too.
        let cut = &good[..good.len() - 3];
        let mut nodes = Vec::new();
        let problems = fold(&mut nodes, [cut, &later[..]]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("batch 1 is damaged"), "{problems:?}");
        // `b`'s first write was in the damage: its later write shows it, without a component.
        assert_eq!(
            names(&nodes),
            [
                ("a".to_string(), NodeStatus::Running),
                ("b".to_string(), NodeStatus::Completed)
            ]
        );
        assert_eq!(nodes[1].record.node.component, "");

        // A length of 2^62 for the name (varint: 0xFD, then eight bytes) after the number: an
        // error, not an allocation of what it says.
        let mut huge = vec![FORMAT, 0, 0xFD];
        huge.extend_from_slice(&(1u64 << 62).to_le_bytes());
        huge.extend_from_slice(b"abc");
        let mut nodes = Vec::new();
        let problems = fold(&mut nodes, [&huge[..], &good[..], &later[..]]);
        assert!(
            problems.len() == 1 && problems[0].contains("batch 1 is damaged"),
            "{problems:?}"
        );
        assert_eq!(
            names(&nodes),
            [
                ("a".to_string(), NodeStatus::Running),
                ("b".to_string(), NodeStatus::Completed)
            ]
        );

        let mut newer = good.clone();
        newer[0] = 2;
        let (statuses, problems) = fold_statuses(&[], [&newer[..], &later[..]]);
        assert!(problems[0].contains("unknown format (2)"), "{problems:?}");
        assert_eq!(statuses, [NodeStatus::Completed], "as the record fold has it");
        // Without damage, an update of a node never inserted counts nothing (as a row's update).
        let (statuses, problems) = fold_statuses(&[], [&later[..]]);
        assert!(problems.is_empty() && statuses.is_empty(), "{statuses:?}");
    }

    /// Times from damaged bytes (infinite, too large, negative, not a number) read as some
    /// time, never a panic.
    #[test]
    fn any_time_in_a_blob_reads_without_a_panic() {
        for secs in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e300, -5.0, f64::MAX] {
            let mut batch = LogBatch::default();
            let mut e = event(0, "a", NodeStatus::Running);
            e.state.started = None;
            batch.put(&e, &History::new(), Some(&origin(&[])));
            let mut data = blob(&batch);
            // `started` follows the number, name, status and attempts: patch it to `Some(secs)`.
            let at = 1 + 1 + 1 + 1 + 1 + 1;
            assert_eq!(data[at], 0, "started was None");
            data[at] = 1;
            data.splice(at + 1..at + 1, secs.to_le_bytes());
            let mut nodes = Vec::new();
            assert!(fold(&mut nodes, [&data[..]]).is_empty(), "{secs}");
            assert!(nodes[0].record.node.started.is_some(), "{secs}");
        }
        // A change at the largest number of microseconds there is: shown, at the end of 9999.
        let mut batch = LogBatch::default();
        let mut history = History::new();
        history.push((NodeStatus::Running, SystemTime::UNIX_EPOCH));
        batch.put(&event(0, "a", NodeStatus::Running), &history, Some(&origin(&[])));
        let data = blob(&batch);
        // The change's time is the blob's first varint 0 (the epoch), after its status code 2:
        // replace it with u64::MAX (0xFD, then eight bytes).
        let at = data.windows(2).rposition(|w| w == [2, 0]).expect("the change") + 1;
        let mut data = data.clone();
        data.splice(at..at + 1, [0xFD].into_iter().chain(u64::MAX.to_le_bytes()));
        let mut nodes = Vec::new();
        assert!(fold(&mut nodes, [&data[..]]).is_empty());
        let (_, when) = nodes[0].history[0];
        assert_eq!(when, time(f64::MAX));
    }
}
