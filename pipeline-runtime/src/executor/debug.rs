//! `debug_pipeline()`: every step is an in-process call, one at a time, in the order the
//! steps became ready. Values move between steps without being serialized.

use super::Executor;
use crate::engine::Run;
use crate::sync::lock;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A node of a run, as queued for the worker.
type Work = (Arc<Run>, u32);

/// One worker thread per run, so the pipeline body goes on (and reads values) while steps run.
pub(crate) struct DebugExecutor {
    queue: Mutex<Option<Sender<Work>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl DebugExecutor {
    pub(crate) fn start(pipeline: &str) -> std::io::Result<Self> {
        let (tx, rx) = channel::<Work>();
        let worker = std::thread::Builder::new()
            .name(format!("pipeline-debug:{pipeline}"))
            .spawn(move || {
                for (run, index) in rx {
                    run.execute_in_process(index);
                }
            })?;
        Ok(Self {
            queue: Mutex::new(Some(tx)),
            worker: Mutex::new(Some(worker)),
        })
    }
}

impl Executor for DebugExecutor {
    fn submit(&self, run: Arc<Run>, index: u32) {
        let queue = lock(&self.queue);
        if let Some(tx) = queue.as_ref() {
            // The worker outlives every submit: it stops only after `shutdown` drops the sender.
            let _ = tx.send((run, index));
        }
    }

    fn cancel(&self, _index: u32, _reason: &str) {
        // An in-process call cannot be interrupted safely; the step ends when it returns.
    }

    fn shutdown(&self) {
        drop(lock(&self.queue).take());
        let worker = lock(&self.worker).take();
        if let Some(worker) = worker {
            // Steps are caught with `catch_unwind`, so the worker itself never panics.
            let _ = worker.join();
        }
    }
}
