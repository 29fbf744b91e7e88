//! The engine of a run: the pure [`scheduler`] that holds every rule, and the [`run`] that
//! feeds it events and applies its effects in order (callbacks, records, executors, slots).

pub(crate) mod run;
pub(crate) mod scheduler;

pub(crate) use run::{Attempt, Job, Run, RunIdentity};
