//! Which run a component call belongs to: the run whose body is executing on this task or
//! thread. A task-local (not a global) so that nested and parallel runs never mix.

use super::Run;
use pipeline_core::{PipelineDag, RunStatus};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

tokio::task_local! {
    /// `None` inside a step that the body's thread runs (see [`apart`]).
    pub(crate) static CURRENT: Option<Arc<Run>>;
}

pub(crate) fn current() -> Option<Arc<Run>> {
    CURRENT.try_with(Option::clone).ok().flatten()
}

/// Runs `f` outside any run's body. In debug mode the body's thread runs steps while it waits
/// for one: there, as on the step thread, a component call runs as a plain function and a
/// pipeline starts a run of its own.
pub(crate) fn apart(f: &mut dyn FnMut()) {
    CURRENT.sync_scope(None, f)
}

/// The run whose body is executing here, if any: call it from inside a `#[pipeline]` function.
pub fn current_run() -> Option<RunView> {
    current().map(|run| RunView { run })
}

/// A live view of a running pipeline (the analogue of ClearML's controller methods).
pub struct RunView {
    run: Arc<Run>,
}

impl RunView {
    /// The run's id in the run store and the state folder.
    pub fn id(&self) -> &str {
        &self.run.key
    }

    /// The DAG so far, with each node's current state.
    pub fn dag(&self) -> PipelineDag {
        self.run.dag()
    }

    /// Names of the nodes that have finished (in any final state).
    pub fn processed_nodes(&self) -> Vec<String> {
        self.run.node_names(|s| s.is_terminal())
    }

    /// Names of the nodes executing now.
    pub fn running_nodes(&self) -> Vec<String> {
        self.run.node_names(|s| s == pipeline_core::NodeStatus::Running)
    }

    /// `Running` while any node is active, else what the run would end as.
    pub fn status(&self) -> RunStatus {
        self.run.status(false)
    }

    /// Runs `f` with the run's own report context (not a step's): what `pipeline_runtime::step`
    /// reports there goes to the run, as from its body (ClearML's controller `get_logger`,
    /// `upload_artifact`, `upload_model`).
    pub fn reporting<R>(&self, f: impl FnOnce() -> R) -> R {
        crate::step::with_context(self.run.step_context(None), f)
    }

    /// Stops the run from this process (no run store needed): steps not started are aborted,
    /// running ones stopped, and the run is marked `mark` once they have ended.
    pub fn stop(&self, reason: &str, mark: pipeline_core::StopMark) {
        self.run.abort_run(format!("stopped: {reason}"), mark);
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        SystemTime::now().duration_since(self.run.started).unwrap_or_default()
    }

    /// The pipeline's parameters as `(name, JSON value)`.
    pub fn parameters(&self) -> Vec<(String, String)> {
        self.run
            .params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }
}
