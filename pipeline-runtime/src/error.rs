//! Errors users see: reading a step's output, and starting a pipeline.

use pipeline_core::StepError;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Why reading a step's output (`Handle::get`, `.await`) gave no value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HandleError {
    /// The step ran and failed (after its retries).
    #[error("step `{step}` failed: {error}")]
    Failed {
        /// The node's name.
        step: String,
        /// Its error, with the chain of causes.
        error: StepError,
    },
    /// The step never ran.
    #[error("step `{step}` was skipped: {reason}")]
    Skipped {
        /// The node's name.
        step: String,
        /// Why: which parent failed, or which callback said so.
        reason: String,
    },
    /// The step succeeded but its stored output could not be read back.
    #[error("the output of step `{step}` could not be read: {error}")]
    Unreadable {
        /// The node's name.
        step: String,
        /// What went wrong (missing, corrupt or mismatched artifact).
        error: StepError,
    },
    /// The step was stopped, or never started because the run was stopped.
    #[error("step `{step}` was aborted: {reason}")]
    Aborted {
        /// The node's name.
        step: String,
        /// Why the run or the step was stopped.
        reason: String,
    },
}

impl HandleError {
    /// The name of the node this error is about.
    pub fn step(&self) -> &str {
        match self {
            Self::Failed { step, .. }
            | Self::Skipped { step, .. }
            | Self::Unreadable { step, .. }
            | Self::Aborted { step, .. } => step,
        }
    }
}

/// Why a pipeline could not be run at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// Two components share a name in this binary.
    #[error(transparent)]
    DuplicateComponent(#[from] pipeline_core::registry::DuplicateComponent),
    /// Remote mode (the default when no mode is chosen) could not use the Ray cluster.
    #[error(
        "cannot use the Ray cluster at {address}: {reason}; start one (`ray start --head`), point \
         PIPELINE_RAY_ADDRESS at yours, or run in-process with `pipeline_runtime::debug_pipeline()` \
         or as local subprocesses with `pipeline_runtime::run_locally()`"
    )]
    Cluster {
        /// The dashboard address tried.
        address: String,
        /// What went wrong.
        reason: String,
    },
    /// The run store could not be opened or written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// This build leaves out the Cargo feature that `what` needs.
    #[error(
        "{what} needs pipeline-runtime's `{feature}` feature, which this build leaves out; enable it, or run \
         in-process with `pipeline_runtime::debug_pipeline()` or as local subprocesses with \
         `pipeline_runtime::run_locally()`"
    )]
    Disabled {
        /// What was asked for.
        what: &'static str,
        /// The feature it needs.
        feature: &'static str,
    },
    /// The run's record could not be written (the store stayed locked, the disk filled up):
    /// the run failed, whatever its steps did, rather than succeed with rows missing.
    #[error("the run failed because it could not be recorded: {0}")]
    Unrecorded(crate::store::StoreError),
    /// A run could not be resumed (see the reason), and nothing was started.
    #[error("cannot resume run {run}: {reason}")]
    Resume {
        /// The run asked for.
        run: String,
        /// Why not.
        reason: String,
    },
    /// The executor could not start (for example, no thread could be spawned).
    #[error("the executor could not start: {0}")]
    Executor(#[from] ExecutorError),
}

/// Why a run's executor could not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecutorError {
    /// The run's folder (artifacts, logs) could not be created in the state folder.
    #[error("cannot create the run folder `{}`: {source}", path.display())]
    RunFolder {
        /// The folder.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: Arc<io::Error>,
    },
    /// A thread (or a runtime's threads) could not be started.
    #[error("cannot start {what}: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// What the system said.
        #[source]
        source: Arc<io::Error>,
    },
    /// The path of this executable, which workers run, is unknown.
    #[error("cannot find this executable, which workers run: {source}")]
    CurrentExe {
        /// What the system said.
        #[source]
        source: Arc<io::Error>,
    },
}

impl ExecutorError {
    /// A thread named by `what` could not start.
    pub(crate) fn thread(what: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |e| Self::Thread {
            what,
            source: Arc::new(e),
        }
    }
}

/// Errors are equal when they say the same thing (I/O errors cannot be compared otherwise).
impl PartialEq for ExecutorError {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other) && self.to_string() == other.to_string()
    }
}

impl Eq for ExecutorError {}
