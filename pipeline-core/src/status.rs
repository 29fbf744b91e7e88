//! States of a node (one step call) and of a pipeline run.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a node stands in its life: `Pending -> Queued -> Running -> (Completed | Cached |
/// Failed | Aborted)`, or `Skipped` when it never ran because of its parents or a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeStatus {
    /// Created; waits for its inputs.
    Pending,
    /// Inputs ready; waits for an executor slot.
    Queued,
    /// Executing (possibly a retry: see the node's attempt count).
    Running,
    /// Finished successfully.
    Completed,
    /// Reused an earlier result instead of running; a success.
    Cached,
    /// Finished with an error or a panic, after all retries.
    Failed,
    /// Stopped: by `abort_on_failure` after another step failed, by its own or the
    /// pipeline's time limit, or by a user stop.
    Aborted,
    /// Never ran: a parent failed or was skipped, or a callback said so.
    Skipped,
}

impl NodeStatus {
    /// Every status, in the order of the enum (`status as usize` indexes it).
    pub const ALL: [NodeStatus; 8] = [
        Self::Pending,
        Self::Queued,
        Self::Running,
        Self::Completed,
        Self::Cached,
        Self::Failed,
        Self::Aborted,
        Self::Skipped,
    ];

    /// True once the node will not change state any more.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::Queued | Self::Running)
    }

    /// True for the states whose outputs exist.
    pub fn is_success(self) -> bool {
        matches!(self, Self::Completed | Self::Cached)
    }

    /// Lower-case name, as shown in renderings and stored in the run store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Cached => "cached",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
            Self::Skipped => "skipped",
        }
    }
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a pipeline run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RunStatus {
    /// The pipeline body or some of its steps are still executing.
    Running,
    /// Every step succeeded (or failed with `continue_on_fail`).
    Completed,
    /// A step failed, or was aborted (its own `time_limit`), without `continue_on_fail` /
    /// `continue_on_abort`; or the body panicked. With `abort_on_failure` the other steps are
    /// stopped too, and the run is still `Failed`: its cause is a step.
    Failed,
    /// Stopped from outside the steps: the pipeline's `time_limit`, a user stop
    /// (`PipelineRun::stop`, `pipeline stop`), or SIGTERM / Ctrl-C to its controller.
    Aborted,
    /// Its controller ended without recording the run's end (killed with `kill -9`, crashed,
    /// or its machine was lost). Never stored: a reader of the store decides it for a run
    /// recorded as running whose controller is gone (its process is dead, on the same host;
    /// its heartbeat is stale, elsewhere).
    Crashed,
    /// Recorded with its spec and parameters but never started
    /// (`PipelineController::create_draft`); `pipeline rerun` runs it as a new run.
    Draft,
}

impl RunStatus {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
            Self::Crashed => "crashed",
            Self::Draft => "draft",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a stopped run is marked once its steps have ended (ClearML's `stop(mark_failed,
/// mark_aborted)`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopMark {
    /// `aborted` (the default here, and what a time limit or a signal gives).
    #[default]
    Aborted,
    /// `failed`.
    Failed,
    /// `completed`, unless a step failed (then `failed`): ClearML's default for `stop()`.
    Completed,
}

impl StopMark {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aborted => "aborted",
            Self::Failed => "failed",
            Self::Completed => "completed",
        }
    }

    /// The mark named `name` (as [`StopMark::as_str`] writes it).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Aborted, Self::Failed, Self::Completed]
            .into_iter()
            .find(|m| m.as_str() == name)
    }
}

/// Which endings count against success in `is_successful` (ClearML's `fail_condition`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailCondition {
    /// A failure and an abort both mean no success (the default).
    #[default]
    All,
    /// Only a failure does: an aborted run or step still counts as a success.
    Failed,
    /// Only an abort does: a failed run or step still counts as a success.
    Aborted,
}

impl FailCondition {
    /// Whether a run that stands at `status` counts as a success. A run still running does not;
    /// a crashed one counts as failed.
    pub fn run_succeeded(self, status: RunStatus) -> bool {
        match status {
            RunStatus::Running | RunStatus::Draft => false,
            RunStatus::Completed => true,
            RunStatus::Failed | RunStatus::Crashed => self == Self::Aborted,
            RunStatus::Aborted => self == Self::Failed,
        }
    }

    /// Whether a step that stands at `status` counts as a success: completed, served from the
    /// cache (a success, unlike ClearML #1501) or skipped on purpose count; one not final does
    /// not.
    pub fn node_succeeded(self, status: NodeStatus) -> bool {
        match status {
            NodeStatus::Pending | NodeStatus::Queued | NodeStatus::Running => false,
            NodeStatus::Completed | NodeStatus::Cached | NodeStatus::Skipped => true,
            NodeStatus::Failed => self == Self::Aborted,
            NodeStatus::Aborted => self == Self::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_fail_condition_forgives_only_the_other_ending() {
        use FailCondition::*;
        for c in [All, Failed, Aborted] {
            assert!(c.run_succeeded(RunStatus::Completed));
            assert!(!c.run_succeeded(RunStatus::Running));
            assert!(!c.run_succeeded(RunStatus::Draft));
            assert!(c.node_succeeded(NodeStatus::Cached));
            assert!(!c.node_succeeded(NodeStatus::Queued));
        }
        assert!(!All.run_succeeded(RunStatus::Failed) && !All.run_succeeded(RunStatus::Aborted));
        assert!(!Failed.run_succeeded(RunStatus::Failed) && Failed.run_succeeded(RunStatus::Aborted));
        assert!(Aborted.run_succeeded(RunStatus::Failed) && !Aborted.run_succeeded(RunStatus::Aborted));
        assert!(!Failed.run_succeeded(RunStatus::Crashed));
        assert!(!All.node_succeeded(NodeStatus::Failed) && Aborted.node_succeeded(NodeStatus::Failed));
        assert!(!Failed.node_succeeded(NodeStatus::Failed) && Failed.node_succeeded(NodeStatus::Aborted));
    }
}
