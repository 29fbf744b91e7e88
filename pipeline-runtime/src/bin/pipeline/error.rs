//! The one error type of the command line: a one-line message and the exit code it ends with.

use pipeline_runtime::store::StoreError;

/// Exit code of a usage mistake or of something asked for that does not exist.
pub const EXIT_USAGE: i32 = 2;
/// Exit code of a failure to read the run store or an artifact.
pub const EXIT_FAILURE: i32 = 1;

/// Why a command stopped: printed as `pipeline: <message>` on one line of stderr.
#[derive(Debug)]
pub struct CliError {
    /// The process's exit code.
    pub code: i32,
    /// What went wrong; empty when nothing is to be printed (standard output was closed).
    pub message: String,
}

impl CliError {
    /// A usage mistake (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// A run, step, output or store that does not exist (exit 2).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::usage(message)
    }

    /// A failure reading the store, a log or an artifact (exit 1).
    pub fn failure(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_FAILURE,
            message: message.into(),
        }
    }

    /// The reader of standard output went away (`pipeline runs | head`): stop quietly.
    pub fn closed() -> Self {
        Self {
            code: 0,
            message: String::new(),
        }
    }

    /// An error writing standard output.
    pub fn stdout(e: &std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Self::closed()
        } else {
            Self::failure(format!("cannot write to standard output: {e}"))
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        Self::failure(e.to_string())
    }
}
