//! Demand for values: in debug mode a run's steps run when something waits for them (a
//! handle read, the run's end), as ClearML's debug mode evaluates a step when its result is
//! first used. The executor of such a run registers here under the run's id; a reader that
//! is about to wait says so through [`want`], which wakes that executor.
//!
//! Running on demand keeps the body's thread and the step thread from handing every step to
//! each other: while the body adds nodes, the step thread sleeps; once the body waits, it runs
//! what is ready itself ([`Demand::drive`]), each step's end readying the next, and only then
//! waits. The step thread serves readers that cannot run steps: an `.await`, a thread inside
//! an async runtime, or a reader that finds a step already running.

use crate::sync::lock;
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// What runs a run's steps on demand (the debug executor).
pub(crate) trait Demand: Send + Sync {
    /// Runs ready steps of run `run` (its id) on the calling thread, one at a time, until
    /// `done` or until none is ready or another thread runs one.
    fn drive(&self, run: u64, done: &dyn Fn() -> bool);
    /// A reader starts waiting: run what is ready until [`Demand::unwant`].
    fn want(&self);
    /// That reader stopped waiting.
    fn unwant(&self);
    /// From now on run everything as soon as it is ready (a reader polls without waiting,
    /// so no wait would ever come to start the steps).
    fn eager(&self);
}

/// The runs whose steps run on demand, by run id.
static ROUTES: Mutex<Vec<(u64, Weak<dyn Demand>)>> = Mutex::new(Vec::new());

/// How many runs are in [`ROUTES`]: a reader of a run of another mode never takes the lock.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Registers the on-demand executor of run `run`.
pub(crate) fn register(run: u64, demand: Weak<dyn Demand>) {
    let mut routes = lock(&ROUTES);
    routes.retain(|(_, d)| d.strong_count() > 0);
    routes.push((run, demand));
    LIVE.store(routes.len(), Ordering::Release);
}

/// Forgets run `run` (its executor has stopped).
pub(crate) fn unregister(run: u64) {
    let mut routes = lock(&ROUTES);
    routes.retain(|(id, d)| *id != run && d.strong_count() > 0);
    LIVE.store(routes.len(), Ordering::Release);
}

thread_local! {
    /// The run this thread found last, and its executor: a body reads many values of its run,
    /// and this spares each read the process-wide lock. Run ids are never reused.
    static LAST: RefCell<Option<(u64, Weak<dyn Demand>)>> = const { RefCell::new(None) };
}

fn find(run: u64) -> Option<Arc<dyn Demand>> {
    if LIVE.load(Ordering::Acquire) == 0 {
        return None;
    }
    let last = LAST.with_borrow(|last| match last {
        Some((id, demand)) if *id == run => demand.upgrade(),
        _ => None,
    });
    if last.is_some() {
        return last;
    }
    let found = lock(&ROUTES)
        .iter()
        .find(|(id, _)| *id == run)
        .and_then(|(_, d)| d.upgrade());
    if let Some(demand) = &found {
        LAST.set(Some((run, Arc::downgrade(demand))));
    }
    found
}

/// A reader's demand on run `run`, held while it waits.
pub(crate) struct Wanted(Option<Arc<dyn Demand>>);

impl Drop for Wanted {
    fn drop(&mut self) {
        if let Some(demand) = self.0.take() {
            demand.unwant();
        }
    }
}

/// Says that the caller is about to wait for a step of run `run`; the demand lasts until the
/// returned guard is dropped.
pub(crate) fn want(run: u64) -> Wanted {
    let demand = find(run);
    if let Some(d) = &demand {
        d.want();
    }
    Wanted(demand)
}

/// A blocking reader of run `run` about to wait until `done`: runs the run's ready steps on
/// this thread first (not inside an async runtime, whose threads must not run step code),
/// then, if `done` is still false, says it waits, as [`want`] does.
pub(crate) fn wait_for(run: u64, done: &dyn Fn() -> bool) -> Wanted {
    let Some(demand) = find(run) else {
        return Wanted(None);
    };
    if tokio::runtime::Handle::try_current().is_err() {
        demand.drive(run, done);
    }
    if done() {
        return Wanted(None);
    }
    demand.want();
    Wanted(Some(demand))
}

/// Says that the caller watches run `run` without waiting: its steps run as they are ready
/// from now on.
pub(crate) fn eager(run: u64) {
    if let Some(d) = find(run) {
        d.eager();
    }
}
