//! Writes a run's events to the run store from a thread of its own, in batches, so that
//! scheduling never waits for the database; the run's end flushes with a bound.
//!
//! Events go through a buffer the writer swaps with its own empty one: sending is a push
//! under a lock held for that push, not a message of its own (an allocation per message, freed
//! on the other thread, contended glibc's arena lock). The buffer is two lists of chunks of
//! fixed capacity, one of events and one of node records (the scheduler's, as they are: the
//! writer makes the stored entries, off the run's threads), which the writer gives back once
//! written: a sender never copies what was sent before (a growing vector copied a run's records
//! all over, on the run's threads, each time it doubled).

use crate::store::{Batch, Event, Record, RunRecord, RunStore, StoreError};
use crate::sync::lock;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Events per chunk of the buffer: 512 events of 128 bytes, 64 KiB, below glibc's threshold
/// for a mapping of its own (a chunk freed and made again would be unmapped and faulted in
/// again).
const CHUNK: usize = 512;

/// Empty chunks kept for reuse, at most (the rest are freed).
const SPARE: usize = 16;

/// A batch of fewer items than this is small: the writer then lets the next one gather for up
/// to [`PACE`] (unless a flush or the run's end asks for it sooner). A writer that keeps up
/// with its run otherwise commits a few records at a time, and each commit rewrites whole
/// pages (the log's last page, its index's): with a step every few microseconds, most of the
/// writer's time. A record then reaches the store up to [`PACE`] later, well within the
/// watchdog's poll (250 ms), which bounds it anyway.
const SMALL: usize = 256;
const PACE: Duration = Duration::from_millis(2);

/// A batch that fails to be written is tried again for this many busy timeouts (each attempt
/// waits one for the lock), and at least [`RETRY_FLOOR`]; then the run fails.
const RETRY_TIMEOUTS: u32 = 6;
const RETRY_FLOOR: Duration = Duration::from_secs(2);

/// How long a failing write is tried again, for a store whose busy timeout is `busy`.
pub(crate) fn retry_bound(busy: Duration) -> Duration {
    (busy * RETRY_TIMEOUTS).max(RETRY_FLOOR)
}

/// What senders and the writer share.
#[derive(Default)]
struct Shared {
    state: Mutex<Pending>,
    /// Signalled when the writer has something to do.
    wake: Condvar,
}

/// Items in chunks of [`CHUNK`] capacity that never grow (none empty), and emptied chunks
/// given back for reuse.
struct Chunks<T> {
    full: Vec<Vec<T>>,
    spare: Vec<Vec<T>>,
}

impl<T> Default for Chunks<T> {
    fn default() -> Self {
        Self {
            full: Vec::new(),
            spare: Vec::new(),
        }
    }
}

impl<T> Chunks<T> {
    fn is_empty(&self) -> bool {
        self.full.is_empty()
    }

    /// Moves `items` to the end of the chunks, in order.
    fn add(&mut self, items: &mut Vec<T>) {
        self.extend(items.drain(..));
    }

    /// Writes `items` at the end of the chunks, in order: each once, into a chunk with room.
    fn extend(&mut self, mut items: impl ExactSizeIterator<Item = T>) {
        while items.len() > 0 {
            let last = self.last_chunk();
            let room = last.capacity() - last.len();
            last.extend(items.by_ref().take(room));
        }
    }

    fn add_one(&mut self, item: T) {
        self.last_chunk().push(item);
    }

    /// The last chunk, with room for one item at least.
    fn last_chunk(&mut self) -> &mut Vec<T> {
        if self.full.last().is_none_or(|last| last.len() == last.capacity()) {
            let chunk = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(CHUNK));
            self.full.push(chunk);
        }
        self.full.last_mut().expect("a chunk with room")
    }

    /// Keeps the emptied chunks of `written` for reuse, up to [`SPARE`], leaving it empty.
    fn give_back(&mut self, written: &mut Vec<Vec<T>>) {
        let room = SPARE.saturating_sub(self.spare.len());
        // The drain drops what is beyond the room.
        self.spare.extend(written.drain(..).take(room));
    }
}

/// How many items `chunks` hold.
fn items<T>(chunks: &[Vec<T>]) -> usize {
    chunks.iter().map(Vec::len).sum()
}

/// A batch as the writer takes it: events, node records and the components of the node
/// records that are first ones.
struct Taken {
    events: Vec<Vec<Event>>,
    records: Vec<Vec<Record>>,
    components: Vec<&'static pipeline_core::ComponentDescriptor>,
}

#[derive(Default)]
struct Pending {
    /// Events not yet taken by the writer, in order.
    events: Chunks<Event>,
    /// Node records not yet taken, in order: a drain's go in as they are, and the writer makes
    /// the stored entries (they are written before the batch's other events, whatever the
    /// order they came in).
    records: Chunks<Record>,
    /// The component of each first node record (one with parents) in `records`, in order.
    components: Vec<&'static pipeline_core::ComponentDescriptor>,
    /// Flushes asked for after those events: answered once they are written.
    flushes: Vec<SyncSender<()>>,
    /// No more events are taken: the writer writes what it has, then stops.
    stopped: bool,
    /// The writer waits on `Shared::wake` (only then does a push need a wake-up: a notify is
    /// a system call even when nobody waits, and a run pushes every few dozen steps).
    waiting: bool,
    /// The writer has stopped (or died): there is nothing left to flush.
    gone: bool,
}

impl Pending {
    /// Nothing to write.
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.records.is_empty()
    }

    /// Fewer than [`SMALL`] events and records to write.
    fn small(&self) -> bool {
        self.events.full.len() <= 1
            && self.records.full.len() <= 1
            && items(&self.events.full) + items(&self.records.full) < SMALL
    }
}

impl Shared {
    /// Adds events (with `add`); false once stopped.
    fn push(&self, add: impl FnOnce(&mut Pending)) -> bool {
        let mut pending = lock(&self.state);
        if pending.stopped {
            return false;
        }
        let idle = pending.is_empty() && pending.flushes.is_empty() && pending.waiting;
        add(&mut pending);
        drop(pending);
        if idle {
            self.wake.notify_one();
        }
        true
    }

    /// Waits (at most `bound`) until every event pushed so far is written; true when done or
    /// nothing is left to write. With `stop`, the writer stops after that.
    fn flush(&self, bound: Duration, stop: bool) -> bool {
        let (done_tx, done_rx) = sync_channel(1);
        {
            let mut pending = lock(&self.state);
            pending.stopped |= stop;
            if pending.gone {
                return true;
            }
            pending.flushes.push(done_tx);
        }
        self.wake.notify_one();
        done_rx.recv_timeout(bound).is_ok()
    }
}

/// The writer of one run's events.
pub(crate) struct Recorder {
    run: String,
    /// The store's file, for the error of a flush that did not end in time.
    path: std::path::PathBuf,
    /// How long one failing batch is tried again.
    retry: Duration,
    shared: Arc<Shared>,
    error: Arc<Mutex<Option<StoreError>>>,
    /// The run as stored, read by the writer after the run's last batch.
    stored: Arc<Mutex<Option<RunRecord>>>,
}

/// The writers of the runs live in this process, by run id: the reports of in-process steps
/// and of the pipeline body join their run's events, so each run has one writer.
static ROUTES: Mutex<Vec<(String, Arc<Shared>)>> = Mutex::new(Vec::new());

/// Sends `events` to the writer of run `run` if that run is live in this process; else gives
/// them back.
pub(crate) fn route(run: &str, mut events: Vec<Event>) -> Result<(), Vec<Event>> {
    let shared = {
        let routes = lock(&ROUTES);
        let Some((_, shared)) = routes.iter().find(|(id, _)| id == run) else {
            return Err(events);
        };
        shared.clone()
    };
    // A writer stops only after its run ended; reports after that are dropped on purpose.
    shared.push(|pending| pending.events.add(&mut events));
    Ok(())
}

impl Recorder {
    pub(crate) fn start(store: RunStore, run: &str) -> std::io::Result<Self> {
        wait_at_exit();
        let bound = retry_bound(store.busy_timeout());
        let path = store.path().to_path_buf();
        let shared = Arc::new(Shared::default());
        let error = Arc::new(Mutex::new(None));
        let stored = Arc::new(Mutex::new(None));
        let (writer, first_error, record) = (shared.clone(), error.clone(), stored.clone());
        std::thread::Builder::new().name("pipeline-recorder".into()).spawn({
            let run = run.to_string();
            move || write_loop(store, &run, &writer, first_error, &record, bound)
        })?;
        lock(&ROUTES).push((run.to_string(), shared.clone()));
        Ok(Self {
            run: run.to_string(),
            path,
            retry: bound,
            shared,
            error,
            stored,
        })
    }

    pub(crate) fn send(&self, event: Event) {
        // The writer only stops after `finish`; a send after that is dropped on purpose.
        self.shared.push(|pending| pending.events.add_one(event));
    }

    /// Hands a drain's node records over as they are (moved into the writer's chunks: the
    /// writer makes the stored entries on its thread), with the components of their first
    /// records, leaving both vectors empty with their room.
    pub(crate) fn send_nodes(
        &self,
        records: &mut Vec<Record>,
        components: &mut Vec<&'static pipeline_core::ComponentDescriptor>,
    ) {
        let sent = self.shared.push(|pending| {
            pending.records.add(records);
            pending.components.append(components);
        });
        // As in `send`: after the writer stopped, they are dropped.
        if !sent {
            records.clear();
            components.clear();
        }
    }

    /// The error that stopped the writer, once a batch could not be written within its bound
    /// (the run must then fail: its record is incomplete).
    pub(crate) fn failed(&self) -> Option<StoreError> {
        lock(&self.error).clone()
    }

    /// How long [`Recorder::finish`] may have to wait for a failing store: the batch being
    /// written and then the run's end are each tried again for the retry bound.
    pub(crate) fn flush_bound(&self) -> Duration {
        self.retry * 2 + Duration::from_secs(5)
    }

    /// Waits (at most `bound`) until every event sent so far is written (or failed: the run
    /// then fails at its end).
    pub(crate) fn sync(&self, bound: Duration) {
        self.shared.flush(bound, false);
    }

    /// Waits (at most `bound`) until every event sent so far is written, then stops the writer.
    /// Returns the run as stored then (what other processes wrote to it included), read by the
    /// writer's connection: the caller needs no connection of its own. Returns the first write
    /// error, if any; not done within `bound` is an error too (rows may be missing, so the run
    /// must not count as recorded).
    pub(crate) fn finish(&self, bound: Duration) -> Result<Option<RunRecord>, StoreError> {
        lock(&ROUTES).retain(|(id, _)| *id != self.run);
        if !self.shared.flush(bound, true) {
            return Err(lock(&self.error).clone().unwrap_or_else(|| StoreError {
                path: self.path.clone(),
                message: format!("writing the run's record did not finish within {bound:?}; it may be incomplete"),
            }));
        }
        match lock(&self.error).clone() {
            Some(e) => Err(e),
            None => Ok(lock(&self.stored).take()),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        lock(&ROUTES).retain(|(id, _)| *id != self.run);
        // The writer writes what it has, then stops.
        lock(&self.shared.state).stopped = true;
        self.shared.wake.notify_one();
    }
}

/// Marks the writer gone when its loop ends, however it ends (a panic included), so that no
/// flush waits for it.
struct Gone<'a>(&'a Shared);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        let mut pending = lock(&self.0.state);
        pending.gone = true;
        pending.stopped = true;
        // Nothing more will be written: a flush waiting now has its answer.
        pending.flushes.clear();
    }
}

fn write_loop(
    mut store: RunStore,
    run: &str,
    shared: &Shared,
    error: Arc<Mutex<Option<StoreError>>>,
    stored: &Mutex<Option<RunRecord>>,
    bound: Duration,
) {
    let _gone = Gone(shared);
    // Swapped with the senders' chunks; the chunks go back emptied.
    let mut taken = Taken {
        events: Vec::new(),
        records: Vec::new(),
        components: Vec::new(),
    };
    // The run's last checkpoint, counted until the connection is kept.
    let mut ended = None;
    // The last batch was small: let the next one gather (see [`SMALL`]).
    let mut paced = false;
    loop {
        let (flushes, last) = {
            let mut pending = lock(&shared.state);
            // The chunks of the batch written last (emptied), for senders to fill again.
            pending.events.give_back(&mut taken.events);
            pending.records.give_back(&mut taken.records);
            while pending.is_empty() && pending.flushes.is_empty() && !pending.stopped {
                pending.waiting = true;
                pending = shared
                    .wake
                    .wait(pending)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                pending.waiting = false;
            }
            if paced {
                let deadline = Instant::now() + PACE;
                while pending.small() && pending.flushes.is_empty() && !pending.stopped {
                    let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
                        break;
                    };
                    pending.waiting = true;
                    pending = shared
                        .wake
                        .wait_timeout(pending, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                    pending.waiting = false;
                }
            }
            std::mem::swap(&mut taken.events, &mut pending.events.full);
            std::mem::swap(&mut taken.records, &mut pending.records.full);
            taken.components.clear();
            std::mem::swap(&mut taken.components, &mut pending.components);
            if taken.events.is_empty() && taken.records.is_empty() && pending.flushes.is_empty() {
                break; // stopped, and everything written
            }
            // Once stopped, nothing more comes: this is the run's last batch.
            (std::mem::take(&mut pending.flushes), pending.stopped)
        };
        // After a failure the record has a gap, and the run fails because of it: of what
        // follows (and of the batch that failed), only the run's end is written, as failed.
        let mut failed = lock(&error).is_some();
        let events: Vec<&[Event]> = taken.events.iter().map(Vec::as_slice).collect();
        let records: Vec<&[Record]> = taken.records.iter().map(Vec::as_slice).collect();
        let batch = Batch {
            events: &events,
            records: &records,
            components: &taken.components,
        };
        let nothing = events.is_empty() && records.is_empty();
        paced = items(&taken.events) + items(&taken.records) < SMALL;
        if !failed
            && !nothing
            && let Err(e) = store.apply_within(run, &batch, bound)
        {
            crate::diag::warn(format_args!("{e}"));
            *lock(&error) = Some(e);
            failed = true;
        }
        if failed {
            end_as_failed(&mut store, run, events.iter().flat_map(|chunk| chunk.iter()), bound);
        }
        drop(events);
        drop(records);
        // Emptied here, not under the lock; kept for reuse up to the spare count.
        taken.events.truncate(SPARE);
        taken.events.iter_mut().for_each(Vec::clear);
        taken.records.truncate(SPARE);
        taken.records.iter_mut().for_each(Vec::clear);
        if last && !failed {
            // Read before the end is answered, for `finish` to return.
            *lock(stored) = store.run(run).ok().flatten();
        }
        // Counted before the end is answered: a process that exits right after its run
        // returns still waits for this checkpoint.
        let checkpoint = last.then(Checkpoint::begin);
        for done in flushes {
            let _ = done.send(());
        }
        if checkpoint.is_some() {
            // After the run's end is answered (the run is in the WAL by then, where every
            // reader that can open the WAL finds it): copies it into the database file for a
            // reader that cannot (read-only media). Before the answer, its fsyncs were most
            // of a short recorded run's time (about 1.5 ms of 2.5).
            store.checkpoint();
            ended = checkpoint;
        }
    }
    // Kept before the checkpoint counts as done: a process waiting for its checkpoints then
    // finds the connection idle. A store that failed may be what failed: the next run opens
    // its own.
    if lock(&error).is_none() {
        store.keep_idle();
    }
    drop(ended);
}

/// Checkpoints begun after their run's end was answered and not yet done; the process's exit
/// waits for them (see [`wait_for_checkpoints`]).
static CHECKPOINTS: Mutex<usize> = Mutex::new(0);
static CHECKPOINT_DONE: Condvar = Condvar::new();

/// How long the process's exit waits for checkpoints at most: a store locked by another
/// process must not hold the exit up (its WAL keeps the runs, as after a crash).
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// One checkpoint in progress, counted until dropped (its thread may also panic or end).
struct Checkpoint;

impl Checkpoint {
    fn begin() -> Self {
        *lock(&CHECKPOINTS) += 1;
        Self
    }
}

impl Drop for Checkpoint {
    fn drop(&mut self) {
        *lock(&CHECKPOINTS) -= 1;
        CHECKPOINT_DONE.notify_all();
    }
}

/// Run at the process's normal exit (`atexit`, registered by the first recorder), and before
/// it ends as a signal would have: waits (at most [`EXIT_WAIT`]) for the checkpoints of runs
/// that already returned, so that the database file alone has every run that ended once the
/// process is gone, as the README says.
pub(crate) extern "C" fn wait_for_checkpoints() {
    let deadline = std::time::Instant::now() + EXIT_WAIT;
    let mut running = lock(&CHECKPOINTS);
    while *running > 0 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        running = CHECKPOINT_DONE
            .wait_timeout(running, left)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
}

/// Registers [`wait_for_checkpoints`] once per process.
fn wait_at_exit() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: registers a plain function of ours; it only waits on a static condition
        // variable, which stays valid until the process ends.
        unsafe {
            libc::atexit(wait_for_checkpoints);
        }
    });
}

/// Writes the run's end among `events`, if there is one, as failed.
fn end_as_failed<'a>(store: &mut RunStore, run: &str, events: impl Iterator<Item = &'a Event>, bound: Duration) {
    for event in events {
        if let Event::RunEnd { ended, .. } = event {
            let end = Event::RunEnd {
                run: run.to_string(),
                status: pipeline_core::RunStatus::Failed,
                ended: *ended,
            };
            let batch = Batch {
                events: &[std::slice::from_ref(&end)],
                ..Batch::default()
            };
            let _ = store.apply_within(run, &batch, bound);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewRun;

    /// `finish` gives the run back as stored: what its own events wrote and what another
    /// connection (a worker process's `connect_configuration`) wrote to it.
    #[test]
    fn finish_returns_the_run_as_every_writer_stored_it() {
        let dir = std::env::temp_dir().join(format!("recorder-stored-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("runs.db");
        let mut store = RunStore::open_with(&path, Duration::from_secs(5)).unwrap();
        store.begin_run(&NewRun::plain("r1")).unwrap();
        let configuration = |name: &str, value: i64| Event::Configuration {
            run: "r1".into(),
            name: name.into(),
            value: value.into(),
        };
        let mut worker = RunStore::open_with(&path, Duration::from_secs(5)).unwrap();
        worker.apply("r1", &[configuration("from_worker", 1)]).unwrap();
        let recorder = Recorder::start(store, "r1").unwrap();
        recorder.send(configuration("from_body", 2));
        let stored = recorder.finish(Duration::from_secs(10)).unwrap().expect("the run");
        assert_eq!(stored.id, "r1");
        assert_eq!(
            stored.configuration.into_iter().collect::<Vec<_>>(),
            [
                ("from_body".to_string(), 2.into()),
                ("from_worker".to_string(), 1.into())
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A run's events keep their order across chunks, and a chunk never grows (nothing sent
    /// before is copied again).
    #[test]
    fn events_keep_their_order_across_chunks_that_never_grow() {
        let heartbeat = |i: usize| Event::Heartbeat {
            run: i.to_string(),
            at: std::time::SystemTime::UNIX_EPOCH,
        };
        let mut pending = Chunks::default();
        let mut first: Vec<Event> = (0..CHUNK + 100).map(heartbeat).collect();
        pending.add(&mut first);
        assert!(first.is_empty());
        pending.add_one(heartbeat(CHUNK + 100));
        let mut more: Vec<Event> = (CHUNK + 101..3 * CHUNK).map(heartbeat).collect();
        pending.add(&mut more);
        assert_eq!(pending.full.len(), 3);
        assert!(pending.full.iter().all(|c| c.capacity() == CHUNK && c.len() == CHUNK));
        let order: Vec<usize> = pending
            .full
            .iter()
            .flatten()
            .map(|e| match e {
                Event::Heartbeat { run, .. } => run.parse().unwrap(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(order, (0..3 * CHUNK).collect::<Vec<_>>());
        // A chunk given back is filled again before a new one is made.
        let spare = pending.full.pop().map(|mut c| {
            c.clear();
            c
        });
        pending.spare.extend(spare);
        pending.full.clear();
        pending.add_one(heartbeat(0));
        assert!(pending.spare.is_empty(), "the spare chunk was taken");
    }

    /// A flush that cannot end in time is an error, even while the writer is still trying:
    /// the run must not count as recorded.
    #[test]
    fn a_flush_not_done_in_time_is_an_error() {
        let dir = std::env::temp_dir().join(format!("recorder-flush-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("runs.db");
        let store = RunStore::open_with(&path, Duration::from_millis(500)).unwrap();
        let holder = rusqlite::Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let recorder = Recorder::start(store, "r1").unwrap();
        recorder.send(Event::Heartbeat {
            run: "r1".into(),
            at: std::time::SystemTime::now(),
        });
        // The writer retries for 3 s; the flush waits 0.2 s.
        let error = recorder.finish(Duration::from_millis(200)).unwrap_err();
        assert!(error.message.contains("did not finish within"), "{error}");
        holder.execute_batch("ROLLBACK").unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
