//! Runs as the user sees them, in the spirit of ClearML's `PipelineController` queries: the
//! record of a run just finished, or any run found in the run store by id, by
//! project/name/version/tags, and the operations on it (wait, stop, tags).

use crate::store::{ArtifactRecord, MetricRecord, RunFilter, RunRecord, RunStore, StoreError, version_key};
use pipeline_core::{FailCondition, NodeStatus, PipelineDag, RunStatus, StopMark};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The default store, opened read-only; `None` when no pipeline has run with this state folder.
fn reader() -> Result<Option<RunStore>, StoreError> {
    let path = crate::config::Config::current().state_dir.join("runs.db");
    if !path.exists() {
        return Ok(None);
    }
    RunStore::open_read_only(&path).map(Some)
}

/// A pipeline run: its record (identity, parameters, status, timings) and its DAG.
#[derive(Debug, Clone)]
pub struct PipelineRun {
    record: RunRecord,
    dag: LazyDag,
}

/// Builds the DAG of a run that just ended.
pub(crate) type DagSource = Arc<dyn Fn() -> PipelineDag + Send + Sync>;

/// The DAG, built when first asked for: most callers of a pipeline only want its value, and
/// for a run of 100k steps the snapshot costs more than the engine's work on them.
#[derive(Clone)]
struct LazyDag {
    built: OnceLock<PipelineDag>,
    source: Option<DagSource>,
}

impl LazyDag {
    fn get(&self) -> &PipelineDag {
        self.built
            .get_or_init(|| self.source.as_ref().map(|build| build()).unwrap_or_default())
    }
}

impl std::fmt::Debug for LazyDag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl PipelineRun {
    pub(crate) fn new(record: RunRecord, dag: DagSource) -> Self {
        Self {
            record,
            dag: LazyDag {
                built: OnceLock::new(),
                source: Some(dag),
            },
        }
    }

    /// Loads a run from a store.
    pub fn load(store: &RunStore, id: &str) -> Result<Option<Self>, StoreError> {
        let Some(record) = store.run(id)? else { return Ok(None) };
        let nodes = store.nodes(&record.id)?.into_iter().map(|n| n.node).collect();
        Ok(Some(Self {
            record,
            dag: LazyDag {
                built: OnceLock::from(PipelineDag::from_nodes(nodes)),
                source: None,
            },
        }))
    }

    /// The run with this id (or unambiguous id prefix) in the default store. The store is
    /// opened read-only (an archived state folder on read-only media can be read).
    pub fn get(id: &str) -> Result<Option<Self>, StoreError> {
        match reader()? {
            Some(store) => Self::load(&store, id),
            None => Ok(None),
        }
    }

    /// The run matching `filter` in the default store with the highest version (semantic
    /// order), the newest among equal versions.
    pub fn find(filter: &RunFilter) -> Result<Option<Self>, StoreError> {
        let Some(store) = reader()? else { return Ok(None) };
        let mut runs = store.runs(&RunFilter {
            limit: None,
            ..filter.clone()
        })?;
        // `runs` is newest first; a stable sort keeps that among equal versions.
        runs.sort_by_key(|r| std::cmp::Reverse(version_key(&r.version)));
        match runs.first() {
            Some(r) => Self::load(&store, &r.id),
            None => Ok(None),
        }
    }

    /// Reads the run again from the default store (its state, if it is still running elsewhere).
    pub fn refresh(&mut self) -> Result<(), StoreError> {
        if let Some(fresh) = Self::get(&self.record.id)? {
            *self = fresh;
        }
        Ok(())
    }

    /// Waits until the run has ended, reading the store every 100 ms, for at most `timeout`;
    /// returns whether it ended.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.refresh()?;
            if !self.is_running() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(100).min(deadline - Instant::now()));
        }
    }

    /// Asks the run's controller (in whatever process) to stop it; false if it had ended.
    pub fn stop(&self, reason: &str) -> Result<bool, StoreError> {
        RunStore::open_default()?.request_stop(&self.record.id, reason)
    }

    /// ClearML's `stop(timeout, mark_failed, mark_aborted)`: asks the run's controller to stop
    /// it and mark it `mark` once its steps have ended (`StopMark::Completed` is ClearML's
    /// default: completed unless a step failed), then waits up to `timeout` for that, if
    /// given. Returns whether the run was running when asked.
    pub fn stop_marked(&mut self, reason: &str, mark: StopMark, timeout: Option<Duration>) -> Result<bool, StoreError> {
        let requested = RunStore::open_default()?.request_stop_marked(&self.record.id, reason, mark)?;
        if let Some(timeout) = timeout {
            self.wait(timeout)?;
        }
        Ok(requested)
    }

    /// Adds tags to the run (old tags stay).
    pub fn add_tags(&mut self, tags: &[&str]) -> Result<(), StoreError> {
        let mut store = RunStore::open_default()?;
        store.apply_now(
            &self.record.id,
            crate::store::Event::Tags {
                run: self.record.id.clone(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
            },
        )?;
        for t in tags {
            if !self.record.tags.iter().any(|x| x == t) {
                self.record.tags.push(t.to_string());
            }
        }
        Ok(())
    }

    /// The artifacts recorded for this run (step outputs, uploads, models).
    pub fn artifacts(&self) -> Result<Vec<ArtifactRecord>, StoreError> {
        RunStore::open_default_read_only()?.artifacts(&self.record.id)
    }

    /// The scalars reported in this run.
    pub fn metrics(&self) -> Result<Vec<MetricRecord>, StoreError> {
        RunStore::open_default_read_only()?.metrics(&self.record.id)
    }

    /// The whole record.
    pub fn record(&self) -> &RunRecord {
        &self.record
    }

    /// The run's id in the run store and the state folder.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// The pipeline's `name`.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The pipeline's `project`.
    pub fn project(&self) -> &str {
        &self.record.project
    }

    /// The version recorded: the one given, or the latest bumped when the code changed.
    pub fn version(&self) -> &str {
        &self.record.version
    }

    /// 1 for the first run of this pipeline, then 2, 3...
    pub fn run_number(&self) -> u32 {
        self.record.run_number
    }

    /// The parameters the pipeline was called with, as `(name, JSON value)`.
    pub fn parameters(&self) -> &[(String, String)] {
        &self.record.parameters
    }

    /// The run's tags.
    pub fn tags(&self) -> &[String] {
        &self.record.tags
    }

    /// The configuration connected during the run.
    pub fn configuration(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.record.configuration
    }

    /// The run whose body started this one, and this run's node there: `(run, node)`.
    pub fn parent(&self) -> Option<(&str, &str)> {
        self.record
            .parent
            .as_ref()
            .map(|(run, node)| (run.as_str(), node.as_str()))
    }

    /// The runs this run's body started (nested pipelines), oldest first.
    pub fn nested_runs(&self) -> Result<Vec<PipelineRun>, StoreError> {
        let store = RunStore::open_default()?;
        let mut runs = Vec::new();
        for record in store.runs(&crate::store::RunFilter {
            parent: Some(self.record.id.clone()),
            ..Default::default()
        })? {
            if let Some(run) = Self::load(&store, &record.id)? {
                runs.push(run);
            }
        }
        runs.reverse();
        Ok(runs)
    }

    /// How the run stands or ended.
    pub fn status(&self) -> RunStatus {
        self.record.status
    }

    /// True while the run has not ended.
    pub fn is_running(&self) -> bool {
        self.record.status == RunStatus::Running
    }

    /// True when the run completed: no step failed except those with `continue_on_fail`.
    pub fn is_successful(&self) -> bool {
        self.record.status == RunStatus::Completed
    }

    /// ClearML's `is_successful(fail_on_step_fail, fail_condition)`: whether the run ended
    /// well, forgiving aborts (`FailCondition::Failed`) or failures (`FailCondition::Aborted`)
    /// or neither (`All`); with `fail_on_step_fail`, each step is judged too, so a step that
    /// failed with `continue_on_fail` counts against the run. A cached or skipped step counts as
    /// a success; a run still running does not.
    pub fn is_successful_with(&self, fail_on_step_fail: bool, fail_condition: FailCondition) -> bool {
        fail_condition.run_succeeded(self.record.status)
            && (!fail_on_step_fail || self.dag().nodes().all(|n| fail_condition.node_succeeded(n.status)))
    }

    /// Wall time from start to end (to now while running).
    pub fn elapsed(&self) -> Duration {
        self.record.elapsed()
    }

    /// The DAG, with each node's state, timings, attempts and error.
    pub fn dag(&self) -> &PipelineDag {
        self.dag.get()
    }

    /// Names of the nodes that failed.
    pub fn failed_nodes(&self) -> Vec<&str> {
        self.nodes_in(|s| s == NodeStatus::Failed)
    }

    /// Names of the nodes in a final state.
    pub fn processed_nodes(&self) -> Vec<&str> {
        self.nodes_in(NodeStatus::is_terminal)
    }

    /// Names of the nodes running (as last recorded).
    pub fn running_nodes(&self) -> Vec<&str> {
        self.nodes_in(|s| s == NodeStatus::Running)
    }

    fn nodes_in(&self, keep: impl Fn(NodeStatus) -> bool) -> Vec<&str> {
        self.dag()
            .nodes()
            .filter(|n| keep(n.status))
            .map(|n| n.name.as_str())
            .collect()
    }
}
