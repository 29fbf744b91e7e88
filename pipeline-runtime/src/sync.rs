//! Small synchronisation helpers shared by the runtime's modules.

use std::future::Future;
use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning: no lock here is held across user code, so a poisoned lock
/// only means another thread panicked elsewhere, and its data is still consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `future` on the runtime of `handle` and waits for it on this thread, whether or not
/// this thread is inside a runtime itself (where `block_on` would panic). `Err` when the
/// future panicked.
#[cfg_attr(not(any(feature = "ray", feature = "object-store")), allow(dead_code))]
pub(crate) fn wait_on<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    future: impl Future<Output = T> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv().map_err(|_| "the task panicked".to_string())
}

thread_local! {
    /// Set while this thread runs work that may block ([`blocking`], [`block_here`]).
    static MAY_BLOCK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Work [`soon_blocking`] left for this thread, once its blocking work is done.
    static NEXT: std::cell::Cell<Option<Box<dyn FnOnce() + Send>>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` marked as work that may block, then the work it left for this thread.
fn marked<R>(f: impl FnOnce() -> R) -> R {
    /// Puts the mark back as it was; the outermost also drops work left behind by a panic
    /// (a lease dropped ends its attempt as lost, so nothing waits for it).
    struct Reset {
        outer: bool,
    }
    impl Drop for Reset {
        fn drop(&mut self) {
            if self.outer {
                MAY_BLOCK.set(false);
                drop(NEXT.take());
            }
        }
    }
    let outer = !MAY_BLOCK.replace(true);
    let _reset = Reset { outer };
    let value = f();
    if outer {
        while let Some(next) = NEXT.take() {
            next();
        }
    }
    value
}

/// Runs `f` on the blocking pool of `handle`'s runtime, on a thread that [`in_blocking`] then
/// recognises: work it starts there (applying a run's effects) is done in place instead of
/// being handed to yet another thread.
pub(crate) fn blocking<R: Send + 'static>(
    handle: &tokio::runtime::Handle,
    f: impl FnOnce() -> R + Send + 'static,
) -> tokio::task::JoinHandle<R> {
    handle.spawn_blocking(move || marked(f))
}

/// Runs `f` on this thread, which may then block: an async runtime's worker hands its other
/// tasks to another thread first (`block_in_place`; the runtime must be multi-threaded).
pub(crate) fn block_here<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(|| marked(f))
}

/// Runs `f` where it may block: on this thread once its blocking work is done, when this is
/// such a thread and nothing else waits for it there (the work that follows an end goes on
/// without waking another thread); else on the blocking pool of `handle`'s runtime.
pub(crate) fn soon_blocking(handle: &tokio::runtime::Handle, f: impl FnOnce() + Send + 'static) {
    if MAY_BLOCK.get() {
        match NEXT.take() {
            None => return NEXT.set(Some(Box::new(f))),
            taken => NEXT.set(taken),
        }
    }
    blocking(handle, f);
}

/// Whether this thread runs work that may block ([`blocking`], [`block_here`]): an async
/// runtime's worker thread must not.
pub(crate) fn in_blocking() -> bool {
    MAY_BLOCK.get()
}

/// Spawns `task` on `handle`'s runtime after polling it once on this thread, so that what it
/// does before its first wait (starting a worker) does not wait for a runtime thread to wake.
/// The runtime's first poll of it registers every wake-up again (tokio's resources keep
/// their readiness), so nothing the poll here waited for is missed. Needs `handle`'s context
/// on this thread (a thread of its runtime).
pub(crate) fn spawn_polled(handle: &tokio::runtime::Handle, task: impl Future<Output = ()> + Send + 'static) {
    let mut task = Box::pin(task);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if task.as_mut().poll(&mut cx).is_pending() {
        handle.spawn(task);
    }
}
