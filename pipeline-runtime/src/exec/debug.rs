//! `debug_pipeline()`: every step is an in-process call, one at a time, in the order the
//! steps became ready. Values move between steps without being serialized.

use super::{Executor, Lease, Outcome, Work, WorkKind};
use crate::config::Config;
use crate::sync::lock;
use crate::value::Invoke;
use crate::value::demand::Demand;
use pipeline_core::StepError;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;

/// Steps run on demand (ClearML's debug mode runs a step when its result is first used), one
/// at a time, in the order they became ready; otherwise ready steps wait in the queue. A
/// blocking reader (`.get()`, the run's end) runs them on its own thread until its value is
/// there; while other readers wait (`.await`, a reader inside an async runtime, or one that
/// found a step running), the run's step thread runs them, started the first time it is
/// needed (most runs never need it). So the body adds nodes without handing each one over,
/// and steps go from one to the next without a wake-up.
pub(crate) struct DebugExecutor {
    shared: Arc<Shared>,
}

struct Shared {
    /// This value, for the step thread to hold.
    me: Weak<Shared>,
    /// The pipeline's name, which names the step thread.
    pipeline: &'static str,
    /// The step thread, once started.
    thread: Mutex<Option<JoinHandle<()>>>,
    queue: Mutex<Queue>,
    /// Signalled when the step thread sleeps and may now have work.
    work: Condvar,
    /// The run's configuration, which steps see wherever they run.
    config: Config,
    /// Runs its argument outside the run's body: a step run by the body's thread must not
    /// add its component calls to the run, nor make a pipeline it starts a node of it.
    apart: Apart,
}

/// See [`Shared::apart`].
pub(crate) type Apart = fn(&mut dyn FnMut());

#[derive(Default)]
struct Queue {
    ready: Ready<Lease>,
    /// Readers waiting for a value of the run.
    wanted: usize,
    /// Run everything as soon as it is ready (a reader polls, or the executor is stopping).
    eager: bool,
    /// No more work comes: the thread ends once the queue is empty.
    closed: bool,
    /// The step thread waits on `work` (only then does a change need a wake-up).
    sleeping: bool,
    /// A thread runs a step: steps run one at a time.
    busy: bool,
    /// The step thread was started (or is being started).
    spawned: bool,
}

/// How many leases a block of [`Ready`] holds.
const BLOCK: usize = 256;

/// The ready leases, first in first out, in blocks of [`BLOCK`]: a fan-out of a hundred
/// thousand steps queues them all before the first runs, and one growing `VecDeque` was
/// copied as it grew (and faulted in twice the memory for it).
struct Ready<T> {
    blocks: VecDeque<VecDeque<T>>,
    /// An emptied block, kept for the next one needed (a queue that fills and drains one
    /// lease at a time allocates nothing).
    spare: Option<VecDeque<T>>,
}

impl<T> Default for Ready<T> {
    fn default() -> Self {
        Self {
            blocks: VecDeque::new(),
            spare: None,
        }
    }
}

impl<T> Ready<T> {
    fn push_back(&mut self, lease: T) {
        match self.blocks.back_mut() {
            Some(last) if last.len() < BLOCK => last.push_back(lease),
            _ => {
                let mut block = self.spare.take().unwrap_or_else(|| VecDeque::with_capacity(BLOCK));
                block.push_back(lease);
                self.blocks.push_back(block);
            }
        }
    }

    fn pop_front(&mut self) -> Option<T> {
        let first = self.blocks.front_mut()?;
        let lease = first.pop_front();
        if first.is_empty() {
            self.spare = self.blocks.pop_front();
        }
        lease
    }

    fn is_empty(&self) -> bool {
        // A block is dropped from `blocks` as soon as it is empty.
        self.blocks.is_empty()
    }
}

impl Queue {
    fn runs(&self) -> bool {
        self.wanted > 0 || self.eager || self.closed
    }
}

impl Shared {
    /// Wakes the step thread if it sleeps and now has something to run. True when it is
    /// needed and was never started: the caller then starts it ([`Shared::spawn`]) once it
    /// has unlocked the queue.
    #[must_use]
    fn wake(&self, queue: &mut Queue) -> bool {
        if !queue.runs() || queue.busy || queue.ready.is_empty() {
            return false;
        }
        if queue.sleeping {
            self.work.notify_one();
        }
        !std::mem::replace(&mut queue.spawned, true)
    }

    /// Wakes the step thread, or starts it (see [`Shared::wake`]).
    fn wake_unlocking(&self, mut queue: MutexGuard<'_, Queue>) {
        if self.wake(&mut queue) {
            drop(queue);
            self.spawn();
        }
    }

    /// Starts the step thread. If it cannot start, the steps waiting for it end as lost
    /// attempts (their readers get an error instead of waiting forever), and the next step
    /// that needs it tries again.
    fn spawn(&self) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name(format!("pipeline-debug:{}", self.pipeline))
            .spawn(move || me.config.scope(|| me.worker()));
        match spawned {
            Ok(thread) => *lock(&self.thread) = Some(thread),
            Err(e) => {
                crate::diag::warn(format_args!(
                    "pipeline `{}`: the debug step thread could not start ({e}); the steps waiting for it are lost",
                    self.pipeline
                ));
                let lost = {
                    let mut queue = lock(&self.queue);
                    queue.spawned = false;
                    std::mem::take(&mut queue.ready)
                };
                // Dropped unlocked: a lost attempt's end may submit a retry.
                drop(lost);
            }
        }
    }

    fn worker(&self) {
        let mut queue = lock(&self.queue);
        loop {
            if queue.runs()
                && !queue.busy
                && let Some(lease) = queue.ready.pop_front()
            {
                queue.busy = true;
                drop(queue);
                run_in_process(lease);
                queue = lock(&self.queue);
                queue.busy = false;
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
    fn drive(&self, run: u64, done: &dyn Fn() -> bool) {
        // `done` may take other locks (a slot's, the run's): never under the queue's.
        if done() {
            return;
        }
        let first = {
            let mut queue = lock(&self.queue);
            if queue.busy {
                return;
            }
            let Some(lease) = queue.ready.pop_front() else {
                return;
            };
            queue.busy = true;
            lease
        };
        let mut lease = Some(first);
        // A panic here (none is expected: steps and callbacks are caught) must not leave the
        // queue busy, or no thread would run a step again.
        let _unbusy = Unbusy(self);
        self.config.scope_of_run(run, || {
            (self.apart)(&mut || {
                while let Some(now) = lease.take() {
                    run_in_process(now);
                    let finished = done();
                    let mut queue = lock(&self.queue);
                    queue.busy = false;
                    if !finished && let Some(next) = queue.ready.pop_front() {
                        queue.busy = true;
                        lease = Some(next);
                    } else {
                        // Readers that could not drive may wait for what is left.
                        self.wake_unlocking(queue);
                    }
                }
            })
        });
    }

    fn want(&self) {
        let mut queue = lock(&self.queue);
        queue.wanted += 1;
        self.wake_unlocking(queue);
    }

    fn unwant(&self) {
        lock(&self.queue).wanted -= 1;
    }

    fn eager(&self) {
        let mut queue = lock(&self.queue);
        queue.eager = true;
        self.wake_unlocking(queue);
    }
}

/// Frees the queue of a driving thread that unwinds.
struct Unbusy<'a>(&'a Shared);

impl Drop for Unbusy<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queue = lock(&self.0.queue);
            queue.busy = false;
            self.0.wake_unlocking(queue);
        }
    }
}

impl DebugExecutor {
    /// Steps run under the run's `config` wherever they run, as in a worker process: step
    /// code that reads the configuration (`PipelineRun::get`, a nested pipeline) sees the
    /// run's. `apart` runs a step outside the run's body when the body's thread runs it.
    pub(crate) fn start(pipeline: &'static str, config: Config, apart: Apart) -> Self {
        let shared = Arc::new_cyclic(|me| Shared {
            me: me.clone(),
            pipeline,
            thread: Mutex::new(None),
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            config,
            apart,
        });
        Self { shared }
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
        crate::step::with_context(spec.context.map(|cx| *cx), || {
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
        // Only `shutdown` closes the queue, once the run is idle; a lease submitted after that
        // is dropped (after the lock), which ends its attempt as lost.
        if queue.closed {
            drop(queue);
            drop(lease);
            return;
        }
        queue.ready.push_back(lease);
        self.shared.wake_unlocking(queue);
    }

    fn demand(&self) -> Option<std::sync::Weak<dyn Demand>> {
        let shared: Arc<dyn Demand> = self.shared.clone();
        Some(Arc::downgrade(&shared))
    }

    fn shutdown(&self) {
        {
            let mut queue = lock(&self.shared.queue);
            queue.closed = true;
            // A sleeping thread wakes to end (it never sleeps once the queue is closed).
            if queue.sleeping {
                self.shared.work.notify_one();
            }
            // Anything still queued runs before the thread ends (none, normally: the run is
            // idle by now).
            self.shared.wake_unlocking(queue);
        }
        let worker = lock(&self.shared.thread).take();
        if let Some(worker) = worker {
            // Steps are caught with `catch_unwind`, so the worker itself never panics.
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BLOCK, Ready};

    #[test]
    fn the_ready_queue_is_first_in_first_out_across_its_blocks() {
        let mut ready = Ready::default();
        let (mut pushed, mut popped) = (0u32, 0u32);
        // Fill several blocks, drain part of them, fill again: the order never changes.
        for (push, pop) in [(3 * BLOCK + 7, BLOCK + 3), (BLOCK, 2 * BLOCK), (5, BLOCK + 9)] {
            for _ in 0..push {
                ready.push_back(pushed);
                pushed += 1;
            }
            for _ in 0..pop {
                assert_eq!(ready.pop_front(), Some(popped));
                popped += 1;
            }
        }
        assert_eq!(popped, pushed, "everything pushed came out");
        assert!(ready.is_empty() && ready.pop_front().is_none());
        // An emptied block is kept for reuse, not a new one allocated.
        assert!(ready.spare.as_ref().is_some_and(|b| b.capacity() >= BLOCK));
    }
}
