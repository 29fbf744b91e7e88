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
