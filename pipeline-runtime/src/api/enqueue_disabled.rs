//! `enqueue` in a build without the `ray` feature: the same items, and enqueueing is a clear
//! error that names the feature (a [`RemoteRun`] cannot exist).

use super::PipelineRun;
use crate::error::PipelineError;
use pipeline_core::PipelineDescriptor;
use std::convert::Infallible;
use std::time::Duration;

/// A run whose controller was enqueued on the cluster. This build has no `ray` feature, so
/// there is never one.
pub struct RemoteRun {
    never: Infallible,
}

impl RemoteRun {
    /// The run's id in the run store.
    pub fn id(&self) -> &str {
        match self.never {}
    }

    /// The controller's Ray job (submission id).
    pub fn job(&self) -> &str {
        match self.never {}
    }

    /// Waits (at most `timeout`) for the controller to end, then loads the run.
    pub fn wait(&self, _timeout: Duration) -> Result<Option<PipelineRun>, PipelineError> {
        match self.never {}
    }

    /// The controller job's output so far.
    pub fn logs(&self) -> Result<String, PipelineError> {
        match self.never {}
    }

    /// Stops the controller job.
    pub fn stop(&self) -> Result<(), PipelineError> {
        match self.never {}
    }
}

/// Called by `my_pipeline::enqueue(...)`: always an error in this build (without the `ray`
/// feature).
pub fn enqueue_pipeline(
    _descriptor: &'static PipelineDescriptor,
    _params: Vec<(&'static str, String)>,
) -> Result<RemoteRun, PipelineError> {
    Err(PipelineError::Disabled {
        what: "enqueueing a pipeline on the cluster",
        feature: "ray",
    })
}

/// `enqueue` of a spec'd pipeline: an error in this build too.
pub(crate) fn enqueue_with(
    _descriptor: &'static PipelineDescriptor,
    _params: serde_json::Map<String, serde_json::Value>,
    _spec: Option<serde_json::Value>,
) -> Result<RemoteRun, PipelineError> {
    Err(PipelineError::Disabled {
        what: "enqueueing a pipeline on the cluster",
        feature: "ray",
    })
}
