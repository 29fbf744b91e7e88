//! Writes a run's events to the run store from a thread of its own, in batches, so that
//! scheduling never waits for the database; the run's end flushes with a bound.

use crate::store::{Event, RunStore, StoreError};
use crate::sync::lock;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Events written in one transaction at most.
const BATCH: usize = 4096;

// Events move once through the channel; boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Event(Event),
    Flush(SyncSender<()>),
}

/// The writer of one run's events.
pub(crate) struct Recorder {
    tx: Mutex<Option<Sender<Msg>>>,
    error: Arc<Mutex<Option<StoreError>>>,
}

impl Recorder {
    pub(crate) fn start(store: RunStore) -> std::io::Result<Self> {
        let (tx, rx) = channel();
        let error = Arc::new(Mutex::new(None));
        let first_error = error.clone();
        std::thread::Builder::new()
            .name("pipeline-recorder".into())
            .spawn(move || write_loop(store, rx, first_error))?;
        Ok(Self {
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

    /// Waits (at most `bound`) until every event sent so far is written, then stops the writer.
    /// Returns the first write error, if any.
    pub(crate) fn finish(&self, bound: Duration) -> Result<(), StoreError> {
        let tx = lock(&self.tx).take();
        if let Some(tx) = tx {
            let (done_tx, done_rx) = sync_channel(1);
            if tx.send(Msg::Flush(done_tx)).is_ok() && done_rx.recv_timeout(bound).is_err() {
                crate::diag::warn(format_args!(
                    "the run store did not finish writing within {bound:?}; the record may be incomplete"
                ));
            }
        }
        match lock(&self.error).clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn write_loop(mut store: RunStore, rx: Receiver<Msg>, error: Arc<Mutex<Option<StoreError>>>) {
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
        if !events.is_empty() {
            if let Err(e) = store.apply(&events) {
                let mut slot = lock(&error);
                if slot.is_none() {
                    crate::diag::warn(format_args!("{e}"));
                    *slot = Some(e);
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}
