//! Writes a run's events to the run store from a thread of its own, in batches, so that
//! scheduling never waits for the database; the run's end flushes with a bound.

use crate::store::{Event, RunStore, StoreError};
use crate::sync::lock;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Events written in one transaction at most.
const BATCH: usize = 4096;

/// A batch that fails to be written is tried again for this many busy timeouts (each attempt
/// waits one for the lock), and at least [`RETRY_FLOOR`]; then the run fails.
const RETRY_TIMEOUTS: u32 = 6;
const RETRY_FLOOR: Duration = Duration::from_secs(2);

/// How long a failing write is tried again, for a store whose busy timeout is `busy`.
pub(crate) fn retry_bound(busy: Duration) -> Duration {
    (busy * RETRY_TIMEOUTS).max(RETRY_FLOOR)
}

// Events move once through the channel; boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Event(Event),
    Flush(SyncSender<()>),
}

/// The writer of one run's events.
pub(crate) struct Recorder {
    run: String,
    /// The store's file, for the error of a flush that did not end in time.
    path: std::path::PathBuf,
    /// How long one failing batch is tried again.
    retry: Duration,
    tx: Mutex<Option<Sender<Msg>>>,
    error: Arc<Mutex<Option<StoreError>>>,
}

/// The writers of the runs live in this process, by run id: the reports of in-process steps
/// and of the pipeline body join their run's events, so each run has one writer.
static ROUTES: Mutex<Vec<(String, Sender<Msg>)>> = Mutex::new(Vec::new());

/// Sends `events` to the writer of run `run` if that run is live in this process; else gives
/// them back.
pub(crate) fn route(run: &str, events: Vec<Event>) -> Result<(), Vec<Event>> {
    let routes = lock(&ROUTES);
    let Some((_, tx)) = routes.iter().find(|(id, _)| id == run) else {
        return Err(events);
    };
    for event in events {
        // A writer stops only after its run ended; reports after that are dropped on purpose.
        let _ = tx.send(Msg::Event(event));
    }
    Ok(())
}

impl Recorder {
    pub(crate) fn start(store: RunStore, run: &str) -> std::io::Result<Self> {
        let bound = retry_bound(store.busy_timeout());
        let path = store.path().to_path_buf();
        let (tx, rx) = channel();
        let error = Arc::new(Mutex::new(None));
        let first_error = error.clone();
        std::thread::Builder::new()
            .name("pipeline-recorder".into())
            .spawn(move || write_loop(store, rx, first_error, bound))?;
        lock(&ROUTES).push((run.to_string(), tx.clone()));
        Ok(Self {
            run: run.to_string(),
            path,
            retry: bound,
            tx: Mutex::new(Some(tx)),
            error,
        })
    }

    pub(crate) fn send(&self, event: Event) {
        if let Some(tx) = lock(&self.tx).as_ref() {
            // The writer only stops after `finish`; a send after that is dropped on purpose.
            let _ = tx.send(Msg::Event(event));
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
        let tx = lock(&self.tx).clone();
        if let Some(tx) = tx {
            flushed(&tx, bound);
        }
    }

    /// Waits (at most `bound`) until every event sent so far is written, then stops the writer.
    /// Returns the first write error, if any; not done within `bound` is an error too (rows
    /// may be missing, so the run must not count as recorded).
    pub(crate) fn finish(&self, bound: Duration) -> Result<(), StoreError> {
        lock(&ROUTES).retain(|(id, _)| *id != self.run);
        let tx = lock(&self.tx).take();
        if let Some(tx) = tx
            && !flushed(&tx, bound)
        {
            return Err(lock(&self.error).clone().unwrap_or_else(|| StoreError {
                path: self.path.clone(),
                message: format!("writing the run's record did not finish within {bound:?}; it may be incomplete"),
            }));
        }
        match lock(&self.error).clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Asks the writer behind `tx` to flush and waits for it at most `bound`: false when it did
/// not answer in time (a writer that has stopped has nothing left to flush: true).
fn flushed(tx: &Sender<Msg>, bound: Duration) -> bool {
    let (done_tx, done_rx) = sync_channel(1);
    tx.send(Msg::Flush(done_tx)).is_err() || done_rx.recv_timeout(bound).is_ok()
}

impl Drop for Recorder {
    fn drop(&mut self) {
        lock(&ROUTES).retain(|(id, _)| *id != self.run);
    }
}

fn write_loop(mut store: RunStore, rx: Receiver<Msg>, error: Arc<Mutex<Option<StoreError>>>, bound: Duration) {
    // Kept between batches: events are large, and growing the vector again would copy them.
    let mut events = Vec::new();
    while let Ok(first) = rx.recv() {
        events.clear();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event(e) => events.push(e),
                Msg::Flush(done) => flushes.push(done),
            }
            if events.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        // After a failure the record has a gap, and the run fails because of it: of what
        // follows (and of the batch that failed), only the run's end is written, as failed.
        let mut failed = lock(&error).is_some();
        if !failed
            && !events.is_empty()
            && let Err(e) = store.apply_within(&events, bound)
        {
            crate::diag::warn(format_args!("{e}"));
            *lock(&error) = Some(e);
            failed = true;
        }
        if failed {
            end_as_failed(&mut store, &events, bound);
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Writes the run's end among `events`, if there is one, as failed.
fn end_as_failed(store: &mut RunStore, events: &[Event], bound: Duration) {
    for event in events {
        if let Event::RunEnd { run, ended, .. } = event {
            let end = Event::RunEnd {
                run: run.clone(),
                status: pipeline_core::RunStatus::Failed,
                ended: *ended,
            };
            let _ = store.apply_within(std::slice::from_ref(&end), bound);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
