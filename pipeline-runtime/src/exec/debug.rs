//! `debug_pipeline()`: every step is an in-process call, one at a time, in the order the
//! steps became ready. Values move between steps without being serialized.

use super::{Executor, Lease, Outcome, Work, WorkKind};
use crate::sync::lock;
use crate::value::Invoke;
use pipeline_core::StepError;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;

/// One worker thread per run, so the pipeline body goes on (and reads values) while steps run.
pub(crate) struct DebugExecutor {
    queue: Mutex<Option<Sender<Box<dyn Lease>>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl DebugExecutor {
    /// Its thread runs steps under the run's `config`, as a worker process would: step code
    /// that reads the configuration (`PipelineRun::get`, a nested pipeline) sees the run's.
    pub(crate) fn start(pipeline: &str, config: crate::config::Config) -> std::io::Result<Self> {
        let (tx, rx) = channel::<Box<dyn Lease>>();
        let worker = std::thread::Builder::new()
            .name(format!("pipeline-debug:{pipeline}"))
            .spawn(move || {
                config.scope(|| {
                    for lease in rx {
                        run_in_process(lease);
                    }
                })
            })?;
        Ok(Self {
            queue: Mutex::new(Some(tx)),
            worker: Mutex::new(Some(worker)),
        })
    }
}

/// Runs one attempt on this thread. A cancel cannot interrupt an in-process call safely: the
/// step ends when it returns.
fn run_in_process(mut lease: Box<dyn Lease>) {
    let Some((spec, work)) = lease.begin(WorkKind::InProcess) else {
        return;
    };
    let Work::InProcess(mut job) = work else {
        unreachable!("the lease hands out the kind of work asked for")
    };
    let last = spec.last;
    let result = spec.span.in_scope(|| {
        crate::step::with_context(spec.context, || {
            catch_unwind(AssertUnwindSafe(|| job(Invoke::Run { last })))
                .unwrap_or_else(|payload| Err(StepError::from_panic(&*payload)))
        })
    });
    lease.end(Outcome {
        work: Work::InProcess(job),
        result: result.map(|()| Vec::new()),
    });
}

impl Executor for DebugExecutor {
    fn submit(&self, lease: Box<dyn Lease>) {
        let queue = lock(&self.queue);
        if let Some(tx) = queue.as_ref() {
            // The worker outlives every submit: it stops only after `shutdown` drops the sender.
            let _ = tx.send(lease);
        }
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
