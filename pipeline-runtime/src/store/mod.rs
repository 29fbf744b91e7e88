//! The run store: an embedded SQLite database (WAL) in the state folder that records every
//! run, node, state change, artifact, metric and cache entry. Several processes and several
//! pipelines write to it at once; every connection waits up to a bound for a lock.

mod node_log;
pub(crate) mod recorder;
mod records;
mod schema;

pub use records::{
    ArtifactKind, ArtifactRecord, Controller, HEARTBEAT, MetricRecord, NodeRecord, RunFilter, RunRecord,
    STALE_HEARTBEAT,
};

use fnv::FnvHashMap;
use pipeline_core::{NodeStatus, RunStatus, StopMark};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use crate::config::set_busy_timeout;

/// Why the run store could not be used; the message is one line, meant for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("run store `{path}`: {message}")]
pub struct StoreError {
    /// The database file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// An open run store.
pub struct RunStore {
    conn: Connection,
    path: PathBuf,
    /// How long this connection waits for another writer before reporting the store locked.
    busy: Duration,
    /// The file's schema version: the latest, unless opened read-only (reads adapt to it).
    version: usize,
    /// What writing a batch of node records needs, kept for its room.
    scratch: Scratch,
    /// The tags every step written here has besides its component's (a run's recorder sets
    /// its pipeline's, with `add_pipeline_tags`).
    step_tags: Vec<String>,
    /// The files a connection opened for a run has open ([`RunStore::open_for_run`]): it may be
    /// kept for the next run while its path still names them ([`RunStore::keep_idle`]).
    files: Option<Files>,
}

/// A database file and its WAL as the file system numbers them (device and inode). A kept
/// connection holds both open, so their numbers cannot go to other files meanwhile: while its
/// path gives the same numbers, the path names the files the connection writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Files {
    db: (u64, u64),
    wal: (u64, u64),
}

impl Files {
    /// What `path` and its WAL are now; `None` if either is missing (or off Unix, where no
    /// connection is kept).
    fn at(path: &Path) -> Option<Self> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
            let mut wal = path.as_os_str().to_owned();
            wal.push("-wal");
            Some(Self {
                db: id(path)?,
                wal: id(Path::new(&wal))?,
            })
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            None
        }
    }
}

/// The page size of a store this build creates, in bytes.
const PAGE_SIZE: u32 = 16 * 1024;

/// Connections that runs' recorders finished with, for the process's next runs: opening one
/// and reading its schema was about a third of what a short recorded run cost.
static IDLE: std::sync::Mutex<Vec<RunStore>> = std::sync::Mutex::new(Vec::new());

/// Idle connections kept at most (the oldest is closed first).
const IDLE_KEPT: usize = 4;

/// What [`RunStore::apply`] builds for a batch, kept between batches so that a recorder's
/// every batch does not grow them again from nothing.
#[derive(Default)]
struct Scratch {
    /// Per node of the batch, by number (not by name: this runs for every record).
    latest: Latests,
    /// The batch's node log.
    log: node_log::LogBatch,
}

impl Scratch {
    /// How many nodes' room is kept after a batch (more is given back).
    const KEPT: usize = 4096;
}

/// The [`Latest`] of each node of a batch, by number: in a window from the batch's lowest
/// number when its numbers are close together, as they mostly are (a run numbers its nodes in
/// order and records them as they change), else in a map. Probing a map of a large batch (a
/// recorder that fell behind sends one) missed the cache at nearly every record: a quarter of
/// the recorder's time, which bounds a recorded run's pace.
#[derive(Default)]
struct Latests {
    /// The number of the window's first node.
    base: u32,
    window: Vec<Latest>,
    /// For a batch whose numbers are far apart (a window would be mostly empty).
    map: FnvHashMap<u32, Latest>,
    dense: bool,
}

impl Latests {
    /// Empties it for a batch of `count` records of nodes numbered from `lowest` to `highest`.
    fn reset(&mut self, count: usize, lowest: u32, highest: u32) {
        self.window.clear();
        self.map.clear();
        self.dense = count > 0 && (highest - lowest) as usize <= 2 * count + 64;
        if self.dense {
            self.base = lowest;
            self.window
                .resize_with((highest - lowest) as usize + 1, Latest::default);
        }
    }

    /// Node `index`'s entry, made if new; `index` is among the batch's.
    fn entry(&mut self, index: u32) -> &mut Latest {
        if self.dense {
            &mut self.window[(index - self.base) as usize]
        } else {
            self.map.entry(index).or_default()
        }
    }

    /// Node `index`'s entry, which [`Latests::entry`] made.
    fn get(&self, index: u32) -> Option<&Latest> {
        if self.dense {
            self.window.get(index.checked_sub(self.base)? as usize)
        } else {
            self.map.get(&index)
        }
    }

    /// Gives back the room of more than `nodes` nodes (after a huge batch).
    fn shrink(&mut self, nodes: usize) {
        if self.window.capacity() > nodes {
            self.window = Vec::new();
        }
        if self.map.capacity() > nodes {
            self.map = FnvHashMap::default();
        }
    }
}

/// A node of a batch: where its last record is (chunk and index), its changes up to it, and
/// where its first record is if the batch has it, with that record's place among the batch's
/// first records (its component's in [`Batch::components`]).
#[derive(Default)]
struct Latest {
    last: (usize, usize),
    history: node_log::History,
    origin: Option<((usize, usize), usize)>,
}

/// A component without parameters or outputs, for unit tests that need a descriptor (here,
/// in the lowest layer that needs one).
#[cfg(test)]
pub(crate) static TEST_COMPONENT: pipeline_core::ComponentDescriptor = pipeline_core::ComponentDescriptor {
    name: "step",
    function: "step",
    module_path: "tests",
    file: "",
    line: 0,
    code_hash: "0",
    is_async: false,
    params: &[],
    outputs: &[],
    options: pipeline_core::ComponentOptions::DEFAULT,
    entry: pipeline_core::Entries {
        io: |_| Ok(()),
        dynamic: |_| {},
    },
};

/// Where run `run`'s files (artifacts, logs, manifests) are in the state folder `state`.
pub fn run_folder(state: &Path, run: &str) -> PathBuf {
    state.join("runs").join(run)
}

/// Where step `step`'s files are in its run's folder: a folder named by the step name's slug.
pub fn step_folder(run_folder: &Path, step: &str) -> PathBuf {
    run_folder.join(&*pipeline_core::names::slug(step))
}

pub(crate) fn secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The time `secs` seconds after the epoch. Whatever the number (it may come from damaged
/// bytes): the epoch for one not positive or not a number, the end of year 9999 for one
/// larger (dates are shown in RFC 3339, which ends there).
pub(crate) fn time(secs: f64) -> SystemTime {
    let since = Duration::try_from_secs_f64(secs.max(0.0)).map_or(LATEST, |d| d.min(LATEST));
    SystemTime::UNIX_EPOCH + since
}

/// [`time`] for `micros` microseconds after the epoch (exact).
pub(crate) fn time_micros(micros: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(micros).min(LATEST)
}

/// For the `node_log` fuzz target: `bytes` as a run's node log (one blob, then split in two
/// at its middle), folded into records and into statuses, every time shown as a date.
pub(crate) fn fold_for_fuzzing(bytes: &[u8]) {
    let (head, tail) = bytes.split_at(bytes.len() / 2);
    for blobs in [vec![bytes], vec![head, tail]] {
        let mut nodes = Vec::new();
        let _ = node_log::fold(&mut nodes, blobs.iter().copied());
        let _ = node_log::fold_statuses(&[], blobs.iter().copied());
        for node in &nodes {
            let times = [node.record.node.started, node.record.node.ended];
            let changes = node.history.iter().map(|&(_, at)| Some(at));
            for at in times.into_iter().chain(changes).flatten() {
                let _ = humantime::format_rfc3339(at).to_string();
            }
        }
    }
}

/// The end of year 9999, after the epoch.
const LATEST: Duration = Duration::from_secs(253_402_300_799);

/// What a new run is, as the controller knows it at start.
pub(crate) struct NewRun<'a> {
    pub id: &'a str,
    pub project: &'a str,
    pub name: &'a str,
    /// `None`: the latest version, bumped when the code changed, else `1.0.0`.
    pub version: Option<&'a str>,
    pub mode: &'a str,
    pub code_hash: &'a str,
    pub parameters: &'a [(String, String)],
    pub tags: &'a [&'static str],
    pub started: SystemTime,
    /// `module::path::function` of the pipeline, for starting it again.
    pub entry: &'a str,
    /// The run this one was started again from (`pipeline rerun`).
    pub origin: Option<&'a str>,
    /// The run whose body started this one, and its node there (a nested pipeline).
    pub parent: Option<(&'a str, &'a str)>,
}

#[cfg(test)]
impl<'a> NewRun<'a> {
    /// A plain debug run of pipeline `p::n` with id `id`, for tests.
    pub(crate) fn plain(id: &'a str) -> Self {
        Self {
            id,
            project: "p",
            name: "n",
            version: None,
            mode: "debug",
            code_hash: "h",
            parameters: &[],
            tags: &[],
            started: SystemTime::now(),
            entry: "p::n",
            origin: None,
            parent: None,
        }
    }
}

/// A run taken up again, as it was.
pub(crate) struct Reopened {
    pub version: String,
    pub run_number: u32,
    pub nodes: Vec<NodeRecord>,
    pub artifacts: Vec<ArtifactRecord>,
}

/// One write, as the recorder batches them.
#[derive(Debug)]
pub(crate) enum Event {
    /// An artifact of a node or of the run (boxed: an event's size is its largest kind's).
    Artifact { run: String, record: Box<ArtifactRecord> },
    /// A scalar.
    Metric { run: String, record: MetricRecord },
    /// A text report.
    Text { run: String, node: String, text: String },
    /// The run's controller is alive at `at`.
    Heartbeat { run: String, at: SystemTime },
    /// A named configuration value of the run.
    Configuration {
        run: String,
        name: String,
        value: serde_json::Value,
    },
    /// Tags added to the run.
    Tags { run: String, tags: Vec<String> },
    /// The run ended.
    RunEnd {
        run: String,
        status: RunStatus,
        ended: SystemTime,
    },
    /// A finished step whose outputs may be reused.
    Cache {
        key: String,
        component: String,
        run: String,
        node: String,
        outputs: Vec<ArtifactRecord>,
    },
}

/// A node's state to write to the run store; `changed` when its status just changed (a state
/// change is written to its history then). The scheduler makes them; the run hands a drain's
/// records to its recorder as they are, and the recorder writes them ([`Batch::records`]). A
/// record names no run: a recorder writes one run's (a shared run id in every record cost two
/// atomic counts per record, on two threads).
///
/// Records are not effects: a run has four or more per node, and each effect is queued, taken
/// under the run's lock and applied one at a time. Records come out all at once, in a vector
/// the run swaps with its own, and go to the store together.
#[derive(Debug)]
pub(crate) struct Record {
    /// The node's index (its number in the run).
    pub(crate) index: u32,
    /// Its state now.
    pub(crate) node: Recorded,
    /// Whether the status changed.
    pub(crate) changed: bool,
    /// When: the time of the event that made it (a change's time in the node's history,
    /// however long the record waits to be sent).
    pub(crate) at: SystemTime,
    /// How many effects were produced before it: its place among them, as the scheduler's
    /// tests read records and effects (as one sequence).
    #[cfg(test)]
    pub(crate) after: u64,
}

/// A node's record: its state as the run store writes it, and its parents in its first record
/// only, since they do not change.
#[derive(Debug)]
pub(crate) struct Recorded {
    pub(crate) state: NodeState,
    /// Its parents' names, in its first record only.
    pub(crate) parents: Option<Vec<smol_str::SmolStr>>,
}

/// What [`RunStore::apply`] writes in one transaction: events, and node records with the
/// components of those that are first records (one with parents), in order. Given in chunks,
/// each list written as one sequence. It names no run: it is applied as run `run`'s.
#[derive(Clone, Copy, Default)]
pub(crate) struct Batch<'a> {
    pub(crate) events: &'a [&'a [Event]],
    pub(crate) records: &'a [&'a [Record]],
    pub(crate) components: &'a [&'static pipeline_core::ComponentDescriptor],
}

/// A node's state as each of its records carries it (the scheduler's, written as it is).
#[derive(Debug)]
pub(crate) struct NodeState {
    /// The node's name: inline when short (most are), else shared; never copied to the heap
    /// per record (a run records every node several times).
    pub(crate) name: smol_str::SmolStr,
    pub(crate) status: NodeStatus,
    /// Its attempts, those before a resume included.
    pub(crate) attempts: u32,
    /// When its first attempt started.
    pub(crate) started: Option<SystemTime>,
    /// When it became final.
    pub(crate) ended: Option<SystemTime>,
    /// What most records lack: none when it has no failure, keys or log. Boxed: these are
    /// most of a state's size, and a run's records are copied several times on their way.
    pub(crate) rare: Option<Box<RareState>>,
}

/// The parts of a node's state most records lack.
#[derive(Debug, Default)]
pub(crate) struct RareState {
    /// Why it did not succeed.
    pub(crate) error: Option<pipeline_core::StepError>,
    /// Its cache key, once known.
    pub(crate) cache_key: Option<String>,
    /// Its key of what it was given, once known.
    pub(crate) resume_key: Option<String>,
    /// Its current attempt's log, once known.
    pub(crate) log_path: Option<PathBuf>,
}

impl NodeState {
    /// Its rare parts, the empty ones when it has none.
    pub(crate) fn rare(&self) -> &RareState {
        static NONE: RareState = RareState {
            error: None,
            cache_key: None,
            resume_key: None,
            log_path: None,
        };
        self.rare.as_deref().unwrap_or(&NONE)
    }
}

impl RunStore {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date; the
    /// connection waits for other writers up to the current configuration's busy timeout.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, crate::config::Config::current().busy_timeout)
    }

    /// [`RunStore::open`] with a connection that waits up to `busy` for other writers.
    pub fn open_with(path: &Path, busy: Duration) -> Result<Self, StoreError> {
        let fail = |message: String| StoreError {
            path: path.to_path_buf(),
            message,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail(format!("cannot create its folder: {e}")))?;
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| fail(describe(&e, busy)))?;
        let mut store = Self {
            conn,
            path: path.to_path_buf(),
            busy,
            version: schema::MIGRATIONS.len(),
            scratch: Scratch::default(),
            step_tags: Vec::new(),
            files: None,
        };
        // Switching a new file to WAL, or recovering a WAL another process left, can answer
        // SQLITE_BUSY without waiting in the busy handler: retry such answers up to the same bound.
        let deadline = std::time::Instant::now() + busy;
        let version = loop {
            match store.configure().and_then(|()| store.schema_version()) {
                Ok(version) => break version,
                Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(fail(describe(&e, busy))),
            }
        };
        store.migrate(version)?;
        Ok(store)
    }

    /// [`RunStore::open_with`], reusing a connection to the same files that an earlier run of
    /// this process finished with ([`RunStore::keep_idle`]) if one is idle.
    pub(crate) fn open_for_run(path: &Path, busy: Duration) -> Result<Self, StoreError> {
        let kept = {
            let mut idle = crate::sync::lock(&IDLE);
            idle.iter().rposition(|s| s.path == path).map(|i| idle.remove(i))
        };
        // Only a store with files is kept.
        if let Some(mut store) = kept
            && store.files == Files::at(path)
            // A newer build may have migrated the file meanwhile: `open_with` then says so.
            && store.schema_version().ok() == Some(schema::MIGRATIONS.len())
            && store.conn.busy_timeout(busy).is_ok()
        {
            store.busy = busy;
            store.step_tags.clear();
            return Ok(store);
        }
        let mut store = Self::open_with(path, busy)?;
        store.files = Files::at(path);
        Ok(store)
    }

    /// Keeps this connection for a later run of the process, unless it is in a transaction or
    /// was not opened by [`RunStore::open_for_run`]. Kept connections whose path no longer
    /// names their files (the state folder was deleted or replaced) are closed.
    pub(crate) fn keep_idle(self) {
        if self.files.is_none() || !self.conn.is_autocommit() {
            return;
        }
        let closed: Vec<RunStore> = {
            let mut idle = crate::sync::lock(&IDLE);
            idle.push(self);
            let (mut kept, mut closed): (Vec<_>, Vec<_>) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|s| s.files == Files::at(&s.path));
            let over = kept.len().saturating_sub(IDLE_KEPT);
            closed.extend(kept.drain(..over));
            *idle = kept;
            closed
        };
        // Closed outside the lock.
        drop(closed);
    }

    /// Opens an existing store for reading only: nothing is created, migrated or written, so a
    /// store on read-only media (an archive) can be read, whatever schema version it has up to
    /// this build's. Where SQLite cannot create its shared-memory file beside the database,
    /// the file is read as immutable (changes not yet checkpointed from the WAL are not seen).
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let fail = |message: String| StoreError {
            path: path.to_path_buf(),
            message,
        };
        let busy = crate::config::Config::current().busy_timeout;
        if !path.try_exists().map_err(|e| fail(format!("cannot reach it: {e}")))? {
            return Err(fail("there is no run store here".into()));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let usable = |conn: Connection| -> rusqlite::Result<(Connection, usize)> {
            conn.busy_timeout(busy)?;
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
            let version = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
            Ok((conn, version))
        };
        // A writer creating the store, or recovering a WAL, can answer SQLITE_BUSY at once, and
        // a store just created has no schema yet: wait for either up to the busy timeout.
        let deadline = std::time::Instant::now() + busy;
        let (conn, version) = loop {
            let opened = match Connection::open_with_flags(path, flags).and_then(usable) {
                Err(e) if !is_busy(&e) => {
                    Connection::open_with_flags(immutable_uri(path), flags | OpenFlags::SQLITE_OPEN_URI)
                        .and_then(usable)
                }
                opened => opened,
            };
            let wait = match &opened {
                Ok((_, version)) => *version == 0,
                Err(e) => is_busy(e),
            };
            if wait && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            break opened.map_err(|e| fail(describe(&e, busy)))?;
        };
        if version > schema::MIGRATIONS.len() {
            return Err(fail(newer_schema(version)));
        }
        // A file nobody gave a schema (yet): read as a store without runs, an empty one in memory.
        let (conn, version) = if version == 0 {
            let empty = Connection::open_in_memory()
                .and_then(|c| c.execute_batch(&schema::MIGRATIONS.concat()).map(|()| c))
                .map_err(|e| fail(describe(&e, busy)))?;
            (empty, schema::MIGRATIONS.len())
        } else {
            (conn, version)
        };
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            busy,
            version,
            scratch: Scratch::default(),
            step_tags: Vec::new(),
            files: None,
        })
    }

    /// [`RunStore::open_read_only`] on the current configuration's state folder.
    pub fn open_default_read_only() -> Result<Self, StoreError> {
        Self::open_read_only(&crate::config::Config::current().state_dir.join("runs.db"))
    }

    /// Opens the store of the current configuration's state folder (`<state>/runs.db`).
    pub fn open_default() -> Result<Self, StoreError> {
        let config = crate::config::Config::current();
        Self::open_with(&config.state_dir.join("runs.db"), config.busy_timeout)
    }

    /// How long a write waits for another writer's lock.
    pub(crate) fn busy_timeout(&self) -> Duration {
        self.busy
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(self.busy)?;
        // Checks that the file is a database before anything is written to it.
        self.conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
        // Only a file not yet in WAL mode needs the (exclusive) switch.
        let mode: String = self.conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // A new file's pages (a file with content keeps its own). A recorder's batch is a
            // blob of many pages, each a frame of its own in the WAL (two system calls): with
            // 16 KiB pages instead of 4, a recorded run of 10,000 steps or more took about 0.3
            // us less a step, and a run of one step about 0.3 ms more (fuller pages per commit).
            self.conn.pragma_update(None, "page_size", PAGE_SIZE)?;
            self.conn.pragma_update(None, "journal_mode", "WAL")?;
        }
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.conn.pragma_update(None, "foreign_keys", "ON")?;
        // The last connection to close would checkpoint the whole WAL and delete it, holding
        // the file exclusively meanwhile: the next run's first write waited for that in SQLite's
        // busy handler (sleeps of 1, 2, 5, 10, 15 ms: 5-10 ms a recorded run). A run's recorder
        // checkpoints at its end instead (`checkpoint`), without holding others up.
        self.conn
            .set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        Ok(())
    }

    /// Copies what the WAL holds into the database file as far as readers allow, waiting for
    /// no one (a passive checkpoint): the file alone then has every run written so far, as a
    /// reader of an archive on read-only media sees it.
    pub(crate) fn checkpoint(&self) {
        // A checkpoint that cannot run now is done by a later one (or SQLite's automatic one).
        let _ = self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }

    /// The number of migrations applied to the file.
    fn schema_version(&self) -> rusqlite::Result<usize> {
        self.conn.pragma_query_value(None, "user_version", |r| r.get(0))
    }

    fn migrate(&mut self, version: usize) -> Result<(), StoreError> {
        if version > schema::MIGRATIONS.len() {
            return Err(StoreError {
                path: self.path.clone(),
                message: newer_schema(version),
            });
        }
        for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version) {
            let (path, busy) = (self.path.clone(), self.busy);
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| error_at(&path, busy, &e))?;
            // Another process may have migrated while this one waited for the lock.
            let now: usize = tx
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(|e| error_at(&path, busy, &e))?;
            if now > i {
                continue;
            }
            tx.execute_batch(sql).map_err(|e| error_at(&path, busy, &e))?;
            tx.pragma_update(None, "user_version", i + 1)
                .map_err(|e| error_at(&path, busy, &e))?;
            tx.commit().map_err(|e| error_at(&path, busy, &e))?;
        }
        Ok(())
    }

    fn error(&self, e: &rusqlite::Error) -> StoreError {
        error_at(&self.path, self.busy, e)
    }

    /// Inserts a run, running under this process, choosing its version and run number;
    /// returns them.
    pub(crate) fn begin_run(&mut self, run: &NewRun<'_>) -> Result<(String, u32), StoreError> {
        self.insert_run(run, RunStatus::Running, &serde_json::Map::new())
    }

    /// Inserts a draft: a run recorded with its `configuration` (a controller's spec) that no
    /// process runs; `pipeline rerun` starts it as a new run. Returns its version and number.
    pub(crate) fn record_draft(
        &mut self,
        run: &NewRun<'_>,
        configuration: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(String, u32), StoreError> {
        self.insert_run(run, RunStatus::Draft, configuration)
    }

    fn insert_run(
        &mut self,
        run: &NewRun<'_>,
        status: RunStatus,
        configuration: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(String, u32), StoreError> {
        let (path, busy) = (self.path.clone(), self.busy);
        let fail = |e: rusqlite::Error| error_at(&path, busy, &e);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(fail)?;
        let run_number: u32 = tx
            .prepare_cached("SELECT coalesce(max(run_number), 0) FROM runs WHERE project = ?1 AND name = ?2")
            .and_then(|mut s| s.query_row(params![run.project, run.name], |r| r.get(0)))
            .map_err(fail)?;
        let version = match run.version {
            Some(v) => v.to_string(),
            None => {
                let latest = highest_version(&tx, run.project, run.name).map_err(fail)?;
                match latest {
                    Some((v, hash)) if hash == run.code_hash => v,
                    Some((v, _)) => bump(&v),
                    None => "1.0.0".to_string(),
                }
            }
        };
        let parameters = serde_json::to_string(run.parameters).expect("strings serialize");
        let tags = serde_json::to_string(run.tags).expect("strings serialize");
        let configuration = serde_json::to_string(configuration).expect("JSON serializes");
        // Cached, as the queries above: a kept connection starts run after run.
        tx.prepare_cached(
            "INSERT INTO runs (id, project, name, version, run_number, status, mode, code_hash, parameters, tags, started, pid, host, heartbeat,
                               executable, entry, origin, parent, parent_node, configuration)
             VALUES (?1, ?2, ?3, ?4, ?5, ?18, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?10, ?13, ?14, ?15, ?16, ?17, ?19)",
        )
        .and_then(|mut insert| {
            insert.execute(params![
                run.id,
                run.project,
                run.name,
                version,
                run_number + 1,
                run.mode,
                run.code_hash,
                parameters,
                tags,
                secs(run.started),
                std::process::id(),
                crate::os::hostname(),
                std::env::current_exe().ok().map(|p| p.display().to_string()),
                run.entry,
                run.origin,
                run.parent.map(|(run, _)| run),
                run.parent.map(|(_, node)| node),
                status.as_str(),
                configuration,
            ])
        })
        .map_err(fail)?;
        tx.prepare_cached("INSERT OR IGNORE INTO versions (project, name, version, code_hash) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut add| add.execute(params![run.project, run.name, version, run.code_hash]))
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok((version, run_number + 1))
    }

    /// Takes up run `id` again (`resume`): it must be of pipeline `project`/`name` and not live
    /// or completed. Marks it running with this process as its controller; gives its version,
    /// run number, nodes and artifacts as they were.
    pub(crate) fn reopen_run(&mut self, id: &str, project: &str, name: &str) -> Result<Reopened, String> {
        let fail = |e: StoreError| e.to_string();
        let run = self
            .run(id)
            .map_err(fail)?
            .ok_or_else(|| "there is no such run in the store".to_string())?;
        if run.id != id {
            return Err(format!("give its whole id ({})", run.id));
        }
        run.check_pipeline(project, name)?;
        match run.status {
            RunStatus::Running => {
                let whose = run.controller.as_ref().map(|c| format!(" ({c})")).unwrap_or_default();
                return Err(format!("it is still running: its controller{whose} is alive"));
            }
            RunStatus::Completed => {
                return Err("it completed: there is nothing to resume (`pipeline rerun` starts it again)".into());
            }
            RunStatus::Draft => {
                return Err("it is a draft, never started: `pipeline rerun` runs it".into());
            }
            RunStatus::Failed | RunStatus::Aborted | RunStatus::Crashed => {}
        }
        let nodes = self.nodes(id).map_err(fail)?;
        let artifacts = self.artifacts(id).map_err(fail)?;
        let updated = self
            .conn
            .execute(
                "UPDATE runs SET status = 'running', ended = NULL, pid = ?2, host = ?3, heartbeat = ?4,
                   stop_requested = NULL, executable = ?5 WHERE id = ?1 AND status <> 'running' OR id = ?1 AND pid = ?6",
                params![
                    id,
                    std::process::id(),
                    crate::os::hostname(),
                    secs(SystemTime::now()),
                    std::env::current_exe().ok().map(|p| p.display().to_string()),
                    run.controller.as_ref().map_or(0, |c| c.pid),
                ],
            )
            .map_err(|e| self.error(&e).to_string())?;
        if updated != 1 {
            return Err("another process took it up at the same time".into());
        }
        Ok(Reopened {
            version: run.version,
            run_number: run.run_number,
            nodes,
            artifacts,
        })
    }

    /// Writes a batch of events of run `run` in one transaction. A node is written once per
    /// batch (to the run's node log), with its last state and every state change of the batch
    /// as its history.
    pub(crate) fn apply(&mut self, run: &str, events: &[Event]) -> Result<(), StoreError> {
        let batch = Batch {
            events: &[events],
            ..Batch::default()
        };
        self.try_apply(run, &batch).map_err(|e| self.error(&e))
    }

    /// [`RunStore::apply`], trying again while the failure may pass (the database locked past
    /// the busy timeout, the disk full, an I/O error) until `bound` has passed.
    pub(crate) fn apply_within(&mut self, run: &str, batch: &Batch<'_>, bound: Duration) -> Result<(), StoreError> {
        let start = std::time::Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            match self.try_apply(run, batch) {
                Ok(()) => return Ok(()),
                Err(e) if may_pass(&e) && start.elapsed() < bound => {
                    std::thread::sleep(pause.min(bound.saturating_sub(start.elapsed())));
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) => {
                    let mut error = self.error(&e);
                    if may_pass(&e) {
                        error.message = format!("{} (still failing after {bound:?})", error.message);
                    }
                    return Err(error);
                }
            }
        }
    }

    fn try_apply(&mut self, run: &str, batch: &Batch<'_>) -> rusqlite::Result<()> {
        let Self {
            conn,
            scratch,
            step_tags,
            ..
        } = self;
        let Scratch { latest, log } = scratch;
        log.clear();
        let records = || {
            batch
                .records
                .iter()
                .enumerate()
                .flat_map(|(c, chunk)| chunk.iter().enumerate().map(move |(i, r)| ((c, i), r)))
        };
        let (count, lowest, highest) = records().fold((0, u32::MAX, 0), |(n, low, high), (_, r)| {
            (n + 1, low.min(r.index), high.max(r.index))
        });
        latest.reset(count, lowest, highest);
        let mut first = 0;
        for (at, record) in records() {
            let entry = latest.entry(record.index);
            entry.last = at;
            if record.changed {
                entry.history.push((record.node.state.status, record.at));
            }
            if record.node.parents.is_some() {
                entry.origin = Some((at, first));
                first += 1;
            }
        }
        for (at, record) in records() {
            let Some(entry) = latest.get(record.index).filter(|e| e.last == at) else {
                continue;
            };
            let origin = entry.origin.and_then(|((c, i), j)| {
                Some(node_log::OriginRef {
                    component: batch.components.get(j)?,
                    parents: batch.records[c][i].node.parents.as_deref()?,
                    run_tags: step_tags,
                })
            });
            log.push(record.index, &record.node.state, &entry.history, origin);
        }
        // A huge batch's room is not kept for the store's life.
        latest.shrink(Scratch::KEPT);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        log.write(&tx, run)?;
        log.shrink(Scratch::KEPT * 64);
        for event in batch.events.iter().flat_map(|chunk| chunk.iter()) {
            apply_one(&tx, event)?;
        }
        tx.commit()
    }

    /// Sets the tags every step written through this store has besides its component's.
    pub(crate) fn set_step_tags(&mut self, tags: Vec<String>) {
        self.step_tags = tags;
    }

    /// Writes one event of run `run` now (used by worker processes and step code).
    pub(crate) fn apply_now(&mut self, run: &str, event: Event) -> Result<(), StoreError> {
        self.apply(run, std::slice::from_ref(&event))
    }

    /// Runs matching `filter`, newest first.
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        records::runs(&self.conn, self.version, filter).map_err(|e| self.error(&e))
    }

    /// The run with this id, or whose id starts with it (when that is unambiguous).
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        records::run(&self.conn, self.version, id).map_err(|e| self.error(&e))
    }

    /// The nodes of a run, in creation order.
    pub fn nodes(&self, run: &str) -> Result<Vec<NodeRecord>, StoreError> {
        records::nodes(&self.conn, self.version, run).map_err(|e| self.error(&e))
    }

    /// How many steps of run `run` stand at each status (for a run in the node log, a fold of
    /// it: about 0.1 s per 100,000 steps).
    pub fn status_counts(&self, run: &str) -> Result<Vec<(NodeStatus, usize)>, StoreError> {
        records::status_counts(&self.conn, self.version, run).map_err(|e| self.error(&e))
    }

    /// The state changes of a node, oldest first: `(status, when)`.
    pub fn node_events(&self, run: &str, node: &str) -> Result<Vec<(NodeStatus, SystemTime)>, StoreError> {
        records::node_events(&self.conn, self.version, run, node).map_err(|e| self.error(&e))
    }

    /// The artifacts of a run (step outputs, uploaded artifacts and models).
    pub fn artifacts(&self, run: &str) -> Result<Vec<ArtifactRecord>, StoreError> {
        records::artifacts(&self.conn, run).map_err(|e| self.error(&e))
    }

    /// The scalars reported in a run.
    pub fn metrics(&self, run: &str) -> Result<Vec<MetricRecord>, StoreError> {
        records::metrics(&self.conn, run).map_err(|e| self.error(&e))
    }

    /// The text reports of a run: `(node, text)`.
    pub fn texts(&self, run: &str) -> Result<Vec<(String, String)>, StoreError> {
        records::texts(&self.conn, run).map_err(|e| self.error(&e))
    }

    /// The outputs cached under `key`.
    pub fn cached(&self, key: &str) -> Result<Option<Vec<ArtifactRecord>>, StoreError> {
        let json: Option<String> = self
            .conn
            .query_row("SELECT outputs FROM cache WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.error(&e))?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// Forgets the results cached under `key` (they turned out to be unreadable).
    pub(crate) fn forget_cached(&self, key: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM cache WHERE key = ?1", [key])
            .map(drop)
            .map_err(|e| self.error(&e))
    }

    /// Forgets cached results (of one component, or all); returns how many.
    pub fn clear_cache(&self, component: Option<&str>) -> Result<usize, StoreError> {
        let n = match component {
            Some(c) => self.conn.execute("DELETE FROM cache WHERE component = ?1", [c]),
            None => self.conn.execute("DELETE FROM cache", []),
        };
        n.map_err(|e| self.error(&e))
    }

    /// Asks the controller of a running run to stop it; it is then marked aborted.
    pub fn request_stop(&self, run: &str, reason: &str) -> Result<bool, StoreError> {
        self.request_stop_marked(run, reason, StopMark::Aborted)
    }

    /// Asks the controller of a running run to stop it and mark it `mark` once its steps
    /// have ended.
    pub fn request_stop_marked(&self, run: &str, reason: &str, mark: StopMark) -> Result<bool, StoreError> {
        // A crashed run is still stored as running, but nobody is left to stop it.
        if self.run(run)?.is_none_or(|r| r.status != RunStatus::Running) {
            return Ok(false);
        }
        let n = self
            .conn
            .execute(
                "UPDATE runs SET stop_requested = ?2, stop_mark = ?3 WHERE id = ?1 AND status = 'running'",
                params![run, reason, mark.as_str()],
            )
            .map_err(|e| self.error(&e))?;
        Ok(n > 0)
    }

    /// The reason a stop was requested for this run, if one was, and how to mark the run.
    pub(crate) fn stop_requested(&self, run: &str) -> Result<Option<(String, StopMark)>, StoreError> {
        self.conn
            .query_row("SELECT stop_requested, stop_mark FROM runs WHERE id = ?1", [run], |r| {
                Ok(r.get::<_, Option<String>>(0)?.map(|reason| {
                    let mark = r.get::<_, Option<String>>(1).ok().flatten();
                    (reason, mark.as_deref().and_then(StopMark::parse).unwrap_or_default())
                }))
            })
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.error(&e))
    }
}

/// Writes one event other than a node's.
fn apply_one(tx: &rusqlite::Transaction<'_>, event: &Event) -> rusqlite::Result<()> {
    match event {
        Event::Artifact { run, record } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO artifacts (run_id, node, kind, name, uri, codec, type_name, size, checksum, metadata, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                run,
                record.node,
                record.kind.as_str(),
                record.name,
                record.uri,
                record.codec,
                record.type_name,
                record.size,
                record.checksum,
                record.metadata.as_ref().map(|m| m.to_string()),
                secs(SystemTime::now()),
            ])?;
        }
        Event::Metric { run, record } => {
            tx.prepare_cached(
                "INSERT INTO metrics (run_id, node, title, series, iteration, value, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![run, record.node, record.title, record.series, record.iteration, record.value, secs(record.at)])?;
        }
        Event::Text { run, node, text } => {
            tx.prepare_cached("INSERT INTO texts (run_id, node, text, at) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![run, node, text, secs(SystemTime::now())])?;
        }
        Event::Heartbeat { run, at } => {
            tx.prepare_cached("UPDATE runs SET heartbeat = ?2 WHERE id = ?1 AND status = 'running'")?
                .execute(params![run, secs(*at)])?;
        }
        Event::Configuration { run, name, value } => {
            tx.prepare_cached("UPDATE runs SET configuration = json_set(configuration, '$.' || json_quote(?2), json(?3)) WHERE id = ?1")?
                .execute(params![run, name, value.to_string()])?;
        }
        Event::Tags { run, tags } => {
            let current: String = tx.query_row("SELECT tags FROM runs WHERE id = ?1", [run], |r| r.get(0))?;
            let mut all: Vec<String> = serde_json::from_str(&current).unwrap_or_default();
            for t in tags {
                if !all.contains(t) {
                    all.push(t.clone());
                }
            }
            tx.execute(
                "UPDATE runs SET tags = ?2 WHERE id = ?1",
                params![run, serde_json::to_string(&all).expect("strings serialize")],
            )?;
        }
        Event::RunEnd { run, status, ended } => {
            tx.prepare_cached("UPDATE runs SET status = ?2, ended = ?3 WHERE id = ?1")?
                .execute(params![run, status.as_str(), secs(*ended)])?;
        }
        Event::Cache {
            key,
            component,
            run,
            node,
            outputs,
        } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO cache (key, component, run_id, node, outputs, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![key, component, run, node, serde_json::to_string(outputs).expect("records serialize"), secs(SystemTime::now())])?;
        }
    }
    Ok(())
}

/// The highest version pipeline `project::name` ran under, and its code then.
fn highest_version(
    tx: &rusqlite::Transaction<'_>,
    project: &str,
    name: &str,
) -> rusqlite::Result<Option<(String, String)>> {
    // In the order they first ran: of equal versions, the first seen wins, as before the table.
    let mut stmt =
        tx.prepare_cached("SELECT version, code_hash FROM versions WHERE project = ?1 AND name = ?2 ORDER BY rowid")?;
    let rows = stmt.query_map(params![project, name], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut best: Option<(String, String)> = None;
    for row in rows {
        let row = row?;
        if best.as_ref().is_none_or(|(v, _)| version_key(&row.0) > version_key(v)) {
            best = Some(row);
        }
    }
    Ok(best)
}

/// Orders versions numerically part by part: `1.10.0` > `1.9.3`.
pub(crate) fn version_key(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// `1.2.3` -> `1.2.4`.
fn bump(v: &str) -> String {
    let mut parts: Vec<u64> = version_key(v);
    if let Some(last) = parts.last_mut() {
        *last += 1;
    }
    parts.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

fn is_busy(e: &rusqlite::Error) -> bool {
    use rusqlite::ffi::ErrorCode;
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Why a file of schema `version` cannot be used by this build.
fn newer_schema(version: usize) -> String {
    format!(
        "schema version {version} is newer than this build understands ({}); upgrade the framework",
        schema::MIGRATIONS.len()
    )
}

/// An SQLite URI opening `path` as immutable (no locks, no shared memory).
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' => uri.push_str(&format!("%{:02X}", c as u32)),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// Whether a failed write may succeed when tried again: another writer's lock, or a full disk
/// or an I/O error that may pass.
fn may_pass(e: &rusqlite::Error) -> bool {
    use rusqlite::ffi::ErrorCode;
    is_busy(e)
        || matches!(
            e.sqlite_error_code(),
            Some(ErrorCode::DiskFull | ErrorCode::SystemIoFailure)
        )
}

fn error_at(path: &Path, busy: Duration, e: &rusqlite::Error) -> StoreError {
    StoreError {
        path: path.to_path_buf(),
        message: describe(e, busy),
    }
}

fn describe(e: &rusqlite::Error, busy: Duration) -> String {
    use rusqlite::ffi::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => "the file is not a run store (not an SQLite database, or corrupt)".into(),
        Some(ErrorCode::DatabaseCorrupt) => "the database is corrupt".into(),
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
            format!("the database is locked by another process (waited {busy:?}); try again when it is done")
        }
        Some(ErrorCode::DiskFull) => "the disk is full".into(),
        Some(ErrorCode::ReadOnly) | Some(ErrorCode::PermissionDenied) | Some(ErrorCode::CannotOpen) => {
            format!("cannot open or write the database: {e}")
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty folder of this process for test `name`.
    fn fresh_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A run's records move from the scheduler to the recorder's buffer to its batch, so
    /// their size is copied several times per record: rare parts stay boxed.
    #[test]
    fn an_event_is_a_few_words() {
        let sizes = (std::mem::size_of::<NodeState>(), std::mem::size_of::<Event>());
        assert!(sizes.0 <= 80 && sizes.1 <= 136, "state and event: {sizes:?} bytes");
    }

    #[test]
    fn versions_order_and_bump_numerically() {
        assert!(version_key("1.10.0") > version_key("1.9.3"));
        assert_eq!(bump("1.0.9"), "1.0.10");
        assert_eq!(bump("23"), "24");
    }

    /// A store written before histories moved into node rows keeps its state changes readable,
    /// and changes recorded after the upgrade go to the row.
    #[test]
    fn node_histories_survive_the_upgrade_from_event_rows() {
        let dir = fresh_dir("store-upgrade");
        let path = dir.join("runs.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute_batch(
                "INSERT INTO runs (id, project, name, version, run_number, status, mode, code_hash, parameters, tags, started, pid)
                   VALUES ('r1', 'p', 'n', '1.0.0', 1, 'completed', 'debug', 'h', '[]', '[]', 10.0, 1);
                 INSERT INTO nodes (run_id, seq, name, component, code_hash, parents, status, attempts)
                   VALUES ('r1', 0, 'a', 'a', 'h', '[]', 'completed', 1);
                 INSERT INTO node_events (run_id, node, status, at) VALUES ('r1', 'a', 'pending', 10.0),
                   ('r1', 'a', 'running', 11.0), ('r1', 'a', 'completed', 12.5);",
            )
            .unwrap();
        }
        // Read-only, the file stays at version 1 and is read as such.
        let archived = RunStore::open_read_only(&path).unwrap();
        let runs = archived.runs(&RunFilter::default()).unwrap();
        assert_eq!(
            (runs.len(), runs[0].status, runs[0].controller.clone()),
            (1, RunStatus::Completed, None)
        );
        assert_eq!(archived.node_events("r1", "a").unwrap().len(), 3);
        drop(archived);
        let version: usize = Connection::open(&path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, 1, "a read-only open migrates nothing");

        let mut store = RunStore::open_with(&path, Duration::from_secs(1)).unwrap();
        let old = store.node_events("r1", "a").unwrap();
        let statuses: Vec<_> = old.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            statuses,
            [NodeStatus::Pending, NodeStatus::Running, NodeStatus::Completed]
        );
        assert_eq!(old[2].1, time(12.5));

        static B: pipeline_core::ComponentDescriptor = pipeline_core::ComponentDescriptor {
            name: "b",
            code_hash: "h",
            ..TEST_COMPONENT
        };
        let record = |status, at: f64| Record {
            index: 1,
            node: Recorded {
                state: NodeState {
                    name: "b".into(),
                    status,
                    attempts: 0,
                    started: None,
                    ended: None,
                    rare: None,
                },
                // The first record inserts the row.
                parents: (status == NodeStatus::Pending).then(|| vec!["a".into()]),
            },
            changed: true,
            at: time(at),
            after: 0,
        };
        let apply = |store: &mut RunStore, records: &[Record]| {
            let components: Vec<_> = records
                .iter()
                .filter(|r| r.node.parents.is_some())
                .map(|_| &B)
                .collect();
            let batch = Batch {
                records: &[records],
                components: &components,
                ..Batch::default()
            };
            store.apply_within("r1", &batch, Duration::ZERO).unwrap();
        };
        // Two batches: the second appends to what the first wrote.
        apply(
            &mut store,
            &[record(NodeStatus::Pending, 20.0), record(NodeStatus::Queued, 20.25)],
        );
        apply(&mut store, &[record(NodeStatus::Running, 21.0)]);
        let new = store.node_events("r1", "b").unwrap();
        assert_eq!(
            new,
            [
                (NodeStatus::Pending, time(20.0)),
                (NodeStatus::Queued, time(20.25)),
                (NodeStatus::Running, time(21.0)),
            ]
        );
        // The row of the run recorded before and the log of the new writes read as one run.
        let nodes: Vec<_> = store
            .nodes("r1")
            .unwrap()
            .into_iter()
            .map(|n| (n.node.name, n.node.status, n.node.parents))
            .collect();
        assert_eq!(
            nodes,
            [
                ("a".to_string(), NodeStatus::Completed, vec![]),
                ("b".to_string(), NodeStatus::Running, vec!["a".to_string()])
            ]
        );
        assert_eq!(
            store.status_counts("r1").unwrap(),
            [(NodeStatus::Running, 1), (NodeStatus::Completed, 1)]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A store written before runs' versions had a table of their own: the upgrade fills it
    /// from the runs, so the next run's version follows the highest of before (numerically, of
    /// its own pipeline) and its number the runs before it; runs after the upgrade go on from
    /// there.
    #[test]
    fn versions_and_numbers_go_on_across_the_upgrade_that_indexed_them() {
        let dir = fresh_dir("store-versions");
        let path = dir.join("runs.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&schema::MIGRATIONS[..10].concat()).unwrap();
            conn.pragma_update(None, "user_version", 10).unwrap();
            let mut insert = conn
                .prepare(
                    "INSERT INTO runs (id, project, name, version, run_number, status, mode, code_hash, parameters, tags, started, pid)
                     VALUES (?1, 'p', ?2, ?3, ?4, 'completed', 'debug', ?5, '[]', '[]', ?4, 1)",
                )
                .unwrap();
            for (id, name, version, number, hash) in [
                ("a", "n", "1.9.0", 1, "h1"),
                ("b", "n", "1.10.0", 2, "h2"),
                ("c", "n", "1.2.0", 3, "h3"),
                ("d", "other", "7.0.0", 1, "h9"),
            ] {
                insert.execute(params![id, name, version, number, hash]).unwrap();
            }
        }
        let mut store = RunStore::open_with(&path, Duration::from_secs(10)).unwrap();
        let mut begin = |id: &str, hash: &str| {
            let run = NewRun {
                code_hash: hash,
                ..NewRun::plain(id)
            };
            store.begin_run(&run).unwrap()
        };
        // The highest version is 1.10.0 (not 1.9.0, nor the latest run's 1.2.0).
        assert_eq!(begin("e", "h2"), ("1.10.0".to_string(), 4));
        assert_eq!(begin("f", "h4"), ("1.10.1".to_string(), 5));
        assert_eq!(begin("g", "h4"), ("1.10.1".to_string(), 6));
        assert_eq!(begin("h", "h5"), ("1.10.2".to_string(), 7));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A store this build creates has its page size; one created before keeps its own.
    #[test]
    fn a_new_store_has_large_pages_and_an_old_one_keeps_its_own() {
        let dir = fresh_dir("store-pages");
        let page_size =
            |store: &RunStore| -> u32 { store.conn.pragma_query_value(None, "page_size", |r| r.get(0)).unwrap() };
        let new = RunStore::open_with(&dir.join("new.db"), Duration::from_secs(10)).unwrap();
        assert_eq!(page_size(&new), PAGE_SIZE);
        {
            let conn = Connection::open(dir.join("old.db")).unwrap();
            conn.pragma_update(None, "page_size", 4096).unwrap();
            conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let mut old = RunStore::open_with(&dir.join("old.db"), Duration::from_secs(10)).unwrap();
        assert_eq!(page_size(&old), 4096);
        old.begin_run(&NewRun::plain("r")).unwrap();
        assert_eq!(old.runs(&RunFilter::default()).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A connection a run finished with serves the process's next run while its path names
    /// the files it has open. A store deleted meanwhile, or replaced by another file (a
    /// restore from a backup), gets a connection of its own, and the next run is written there.
    #[test]
    fn a_kept_connection_serves_only_the_files_it_has_open() {
        let dir = fresh_dir("store-kept");
        let (state, aside) = (dir.join("state"), dir.join("aside"));
        let path = state.join("runs.db");
        let busy = Duration::from_secs(10);
        let runs = |path: &Path| -> Vec<String> {
            let mut ids: Vec<_> = RunStore::open_read_only(path)
                .unwrap()
                .runs(&RunFilter::default())
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect();
            ids.sort();
            ids
        };
        // A temporary table lives as long as its connection: it tells a kept one from a new one.
        let mark = |store: &RunStore| store.conn.execute_batch("CREATE TEMP TABLE kept (x)").unwrap();
        let marked = |store: &RunStore| store.conn.execute_batch("SELECT x FROM temp.kept").is_ok();
        let run = |id: &str| {
            let mut store = RunStore::open_for_run(&path, busy).unwrap();
            let kept = marked(&store);
            store.begin_run(&NewRun::plain(id)).unwrap();
            if !kept {
                mark(&store);
            }
            store.keep_idle();
            kept
        };

        assert!(!run("1"), "nothing kept yet");
        assert!(run("2"), "kept and used again");
        assert_eq!(runs(&path), ["1", "2"]);

        std::fs::remove_dir_all(&state).unwrap();
        assert!(!run("3"), "the store was deleted");
        assert_eq!(runs(&path), ["3"]);
        assert!(run("4"));

        std::fs::rename(&state, &aside).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        for file in ["runs.db", "runs.db-wal"] {
            std::fs::copy(aside.join(file), state.join(file)).unwrap();
        }
        assert!(!run("5"), "the store was replaced by a copy");
        assert_eq!(runs(&path), ["3", "4", "5"]);
        assert_eq!(runs(&aside.join("runs.db")), ["3", "4"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A batch reads back the same whether its nodes' numbers are close together (folded in
    /// a window) or far apart (in a map): each node's last state, its changes in order, and
    /// its first record's row.
    #[test]
    fn a_batch_folds_the_same_whether_its_nodes_are_close_or_far_apart() {
        use NodeStatus::{Completed, Pending, Running};
        let dir = fresh_dir("store-fold");
        let mut store = RunStore::open_with(&dir.join("runs.db"), Duration::from_secs(10)).unwrap();
        let record = |index: u32, name: &str, status, at: f64| Record {
            index,
            node: Recorded {
                state: NodeState {
                    name: name.into(),
                    status,
                    attempts: u32::from(status != Pending),
                    started: None,
                    ended: None,
                    rare: None,
                },
                parents: (status == Pending).then(Vec::new),
            },
            changed: true,
            at: time(at),
            after: 0,
        };
        let mut read = Vec::new();
        for (run, apart) in [("close", 1), ("far", 50_000)] {
            store.begin_run(&NewRun::plain(run)).unwrap();
            // Not from 0: a later batch's window starts at its lowest number.
            let (a, b, c) = (7, 7 + apart, 7 + 2 * apart);
            let records = [
                record(a, "a", Pending, 1.0),
                record(b, "b", Pending, 1.5),
                record(a, "a", Running, 2.0),
                record(c, "c", Pending, 2.5),
                record(b, "b", Running, 3.0),
                record(a, "a", Completed, 4.0),
            ];
            let components = vec![&TEST_COMPONENT; 3];
            let batch = Batch {
                records: &[&records[..3], &records[3..]],
                components: &components,
                ..Batch::default()
            };
            store.apply_within(run, &batch, Duration::ZERO).unwrap();
            let nodes: Vec<_> = store
                .nodes(run)
                .unwrap()
                .into_iter()
                .map(|n| (n.node.name, n.node.status, n.node.attempts))
                .collect();
            let changes: Vec<_> = ["a", "b", "c"].map(|n| store.node_events(run, n).unwrap()).into();
            read.push((nodes, changes));
        }
        assert_eq!(read[0], read[1], "close and far apart");
        let (nodes, changes) = &read[0];
        assert_eq!(
            nodes,
            &[
                ("a".to_string(), Completed, 1),
                ("b".to_string(), Running, 1),
                ("c".to_string(), Pending, 0)
            ]
        );
        assert_eq!(
            changes[0],
            [(Pending, time(1.0)), (Running, time(2.0)), (Completed, time(4.0))]
        );
        assert_eq!(changes[1], [(Pending, time(1.5)), (Running, time(3.0))]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod race {
    use super::*;

    /// The default busy timeout, named here: the process default may be changed meanwhile by
    /// a test of the ClearML-style setters running beside this one (CI saw 1.234 s, too short
    /// for eight connections on a loaded machine).
    const BUSY: Duration = Duration::from_secs(10);

    #[test]
    fn readers_open_while_writers_write() {
        let dir = std::env::temp_dir().join(format!("store-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("runs.db");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let path = path.clone();
                std::thread::spawn(move || -> Result<(), StoreError> {
                    let mut store = RunStore::open_with(&path, BUSY)?;
                    for i in 0..150 {
                        let id = format!("run-{w}-{i}");
                        store.begin_run(&NewRun::plain(&id))?;
                        store.apply(
                            &id,
                            &[Event::RunEnd {
                                run: id.clone(),
                                status: RunStatus::Completed,
                                ended: SystemTime::now(),
                            }],
                        )?;
                    }
                    Ok(())
                })
            })
            .collect();
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (path, stop) = (path.clone(), stop.clone());
                std::thread::spawn(move || -> Result<usize, StoreError> {
                    let mut n = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let store = RunStore::open_with(&path, BUSY)?;
                        n += store.runs(&RunFilter::default())?.len();
                    }
                    Ok(n)
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            r.join().unwrap().unwrap();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
