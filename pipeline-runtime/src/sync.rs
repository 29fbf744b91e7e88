//! Small synchronisation helpers shared by the runtime's modules.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning: no lock here is held across user code, so a poisoned lock
/// only means another thread panicked elsewhere, and its data is still consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
