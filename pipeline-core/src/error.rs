//! Why a step did not produce its outputs, in a form that crosses process boundaries.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kind of a step failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The component returned `Err`.
    Error,
    /// The component panicked.
    Panic,
    /// An input or output could not be encoded or decoded.
    Codec,
    /// The framework could not run the step (unknown parent, bad registration...).
    Setup,
    /// The step was stopped from outside.
    Aborted,
    /// The step never ran (a parent failed or was skipped, or a callback said so).
    Skipped,
    /// The worker process died without reporting: a signal, a crash, an exit without a result.
    Crash,
}

/// A step's failure: its message and the chain of causes, outermost first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct StepError {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// The outermost message.
    pub message: String,
    /// The causes below `message`, outermost first (empty when there are none).
    pub causes: Vec<String>,
}

impl StepError {
    /// A failure with a message and no causes.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            causes: Vec::new(),
        }
    }

    /// A failure from a `std` error, keeping its `source()` chain.
    pub fn from_std(kind: ErrorKind, error: &(dyn std::error::Error + 'static)) -> Self {
        let mut causes = Vec::new();
        let mut source = error.source();
        while let Some(cause) = source {
            causes.push(cause.to_string());
            source = cause.source();
        }
        Self {
            kind,
            message: error.to_string(),
            causes,
        }
    }

    /// The failure of a panic, from the payload `catch_unwind` returned.
    pub fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "panic with a non-string payload".to_string()
        };
        Self::new(ErrorKind::Panic, message)
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == ErrorKind::Panic {
            f.write_str("panicked: ")?;
        }
        f.write_str(&self.message)?;
        for cause in &self.causes {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}
