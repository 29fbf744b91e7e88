//! Where a step's values live and how code holds them: the slot one output lives in (staged,
//! then published), typed handles, the outputs of a call, and the job protocol a step's
//! arguments answer (run here, export as artifacts, fingerprint). Below the executors and the
//! engine; depends on `transport` and `error`.

pub(crate) mod demand;
pub(crate) mod dynamic;
pub(crate) mod handle;
pub(crate) mod outputs;
pub(crate) mod slot;

use handle::ExportSink;
use pipeline_core::StepError;

/// What the engine or an executor asks of a step's job.
#[doc(hidden)]
pub enum Invoke<'a> {
    /// Resolve the arguments and run the component here; `last` says no further attempt will
    /// follow, so arguments may be moved rather than cloned.
    Run {
        /// See above.
        last: bool,
    },
    /// Write the arguments as artifacts, for a worker process.
    Export(&'a mut ExportSink),
    /// Feed the arguments (but those in `cache_ignore`) into a cache key.
    Fingerprint(&'a mut blake3::Hasher),
    /// Feed every argument into a key of what the step is given (a resumed run reuses a step
    /// whose key did not change).
    Identify(&'a mut blake3::Hasher),
}

/// A step's work, type-erased: either resolves its inputs, runs the component and stages its
/// outputs, or writes its inputs as artifacts for a worker process.
pub(crate) type Job = Box<dyn for<'a> FnMut(Invoke<'a>) -> Result<(), StepError> + Send>;
