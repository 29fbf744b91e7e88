//! What users call: running a pipeline body ([`pipeline`]: `Finished`, the run's record),
//! runs read back from the store ([`PipelineRun`]), several pipelines at once ([`multi`]) and
//! a controller enqueued on the cluster ([`enqueue`]). The top layer.

pub(crate) mod again;
pub(crate) mod call_options;
pub mod controller;
#[cfg(feature = "ray")]
pub(crate) mod enqueue;
#[cfg(not(feature = "ray"))]
#[path = "enqueue_disabled.rs"]
pub(crate) mod enqueue;
pub mod entry;
mod interrupt;
pub(crate) mod multi;
pub(crate) mod pipeline;
mod pipeline_run;
pub(crate) mod progress;
pub(crate) mod spin;

pub use pipeline_run::PipelineRun;
