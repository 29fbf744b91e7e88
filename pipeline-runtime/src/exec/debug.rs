//! `debug_pipeline()`: every step is an in-process call, one at a time, in the order the
//! steps became ready. Values move between steps without being serialized.

use super::{Executor, Lease, Outcome, Work, WorkKind};
use crate::sync::lock;
use crate::value::Invoke;
use crate::value::demand::Demand;
use pipeline_core::StepError;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// One step thread per run. Steps run on demand (ClearML's debug mode runs a step when its
/// result is first used): while a reader waits for a value of the run (`.get()`, `.await`,
/// the run's end), the thread runs every step that is ready, in the order they became ready;
/// otherwise ready steps wait in the queue. So the body adds nodes without handing each one
/// to the step thread, and the step thread goes from one step to the next without waking.
pub(crate) struct DebugExecutor {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when the step thread sleeps and may now have work.
    work: Condvar,
}

#[derive(Default)]
struct Queue {
    ready: VecDeque<Lease>,
    /// Readers waiting for a value of the run.
    wanted: usize,
    /// Run everything as soon as it is ready (a reader polls, or the executor is stopping).
    eager: bool,
    /// No more work comes: the thread ends once the queue is empty.
    closed: bool,
    /// The step thread waits on `work` (only then does a change need a wake-up).
    sleeping: bool,
}

impl Queue {
    fn runs(&self) -> bool {
        self.wanted > 0 || self.eager || self.closed
    }
}

impl Shared {
    /// Wakes the step thread if it sleeps and now has something to run.
    fn wake(&self, queue: &Queue) {
        if queue.sleeping && queue.runs() && !queue.ready.is_empty() {
            self.work.notify_one();
        }
    }

    fn worker(&self) {
        let mut queue = lock(&self.queue);
        loop {
            if queue.runs()
                && let Some(lease) = queue.ready.pop_front()
            {
                drop(queue);
                run_in_process(lease);
                queue = lock(&self.queue);
                continue;
            }
            if queue.closed {
                return;
            }
            queue.sleeping = true;
            queue = self.work.wait(queue).unwrap_or_else(|p| p.into_inner());
            queue.sleeping = false;
        }
    }
}

impl Demand for Shared {
    fn want(&self) {
        let mut queue = lock(&self.queue);
        queue.wanted += 1;
        self.wake(&queue);
    }

    fn unwant(&self) {
        lock(&self.queue).wanted -= 1;
    }

    fn eager(&self) {
        let mut queue = lock(&self.queue);
        queue.eager = true;
        self.wake(&queue);
    }
}

impl DebugExecutor {
    /// Its thread runs steps under the run's `config`, as a worker process would: step code
    /// that reads the configuration (`PipelineRun::get`, a nested pipeline) sees the run's.
    pub(crate) fn start(pipeline: &str, config: crate::config::Config) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
        });
        let on_thread = shared.clone();
        let worker = std::thread::Builder::new()
            .name(format!("pipeline-debug:{pipeline}"))
            .spawn(move || config.scope(|| on_thread.worker()))?;
        Ok(Self {
            shared,
            worker: Mutex::new(Some(worker)),
        })
    }
}

/// Runs one attempt on this thread. A cancel cannot interrupt an in-process call safely: the
/// step ends when it returns.
fn run_in_process(mut lease: Lease) {
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
    fn submit(&self, lease: Lease) {
        let mut queue = lock(&self.shared.queue);
        // The thread outlives every submit: it stops only after `shutdown`, once the run is
        // idle; a lease submitted after that is dropped, which ends its attempt as lost.
        if !queue.closed {
            queue.ready.push_back(lease);
            self.shared.wake(&queue);
        }
    }

    fn demand(&self) -> Option<std::sync::Weak<dyn Demand>> {
        let shared: Arc<dyn Demand> = self.shared.clone();
        Some(Arc::downgrade(&shared))
    }

    fn shutdown(&self) {
        {
            let mut queue = lock(&self.shared.queue);
            queue.closed = true;
            if queue.sleeping {
                self.shared.work.notify_one();
            }
        }
        let worker = lock(&self.worker).take();
        if let Some(worker) = worker {
            // Steps are caught with `catch_unwind`, so the worker itself never panics.
            let _ = worker.join();
        }
    }
}
