//! What every command starts from: the state folder, the output style, and the lookups of a
//! store, a run and a step with the errors a person can act on.

use crate::error::CliError;
use pipeline_runtime::store::{NodeRecord, RunFilter, RunRecord, RunStore};
use std::path::PathBuf;

/// The global options, resolved.
pub struct Ctx {
    /// The state folder (`--state`, else `$PIPELINE_STATE_DIR`, else `./.pipeline`).
    pub state: PathBuf,
    /// `--json`: machine output.
    pub json: bool,
}

impl Ctx {
    /// The run store's file in the state folder.
    pub fn store_path(&self) -> PathBuf {
        self.state.join("runs.db")
    }

    /// The run store opened read-only (an archive on read-only media can be read), or `None`
    /// when no pipeline has run with this state folder (nothing is created then).
    pub fn store(&self) -> Result<Option<RunStore>, CliError> {
        self.open(RunStore::open_read_only)
    }

    /// The run store opened for writing (`stop`, `cache clear`), or `None` as for [`Ctx::store`].
    pub fn writable_store(&self) -> Result<Option<RunStore>, CliError> {
        self.open(RunStore::open)
    }

    fn open(
        &self,
        open: fn(&std::path::Path) -> Result<RunStore, pipeline_runtime::store::StoreError>,
    ) -> Result<Option<RunStore>, CliError> {
        let path = self.store_path();
        match path.try_exists() {
            Ok(false) => Ok(None),
            Ok(true) => Ok(Some(open(&path)?)),
            Err(e) => Err(CliError::failure(format!(
                "cannot reach the run store {}: {e}",
                path.display()
            ))),
        }
    }

    /// The run store, which must exist, read-only.
    pub fn require_store(&self) -> Result<RunStore, CliError> {
        self.store()?.ok_or_else(|| self.no_store())
    }

    /// The run store, which must exist, for writing.
    pub fn require_writable_store(&self) -> Result<RunStore, CliError> {
        self.writable_store()?.ok_or_else(|| self.no_store())
    }

    fn no_store(&self) -> CliError {
        CliError::not_found(format!(
            "no run store at {}: no pipeline has run with this state folder (choose another with --state DIR)",
            self.store_path().display()
        ))
    }
}

/// The run whose id is `id` or starts with it.
pub fn find_run(store: &RunStore, id: &str) -> Result<RunRecord, CliError> {
    if id.is_empty() {
        return Err(CliError::usage("a run id cannot be empty"));
    }
    if let Some(run) = store.run(id)? {
        return Ok(run);
    }
    // `run` answers `None` both for no match and for several: tell them apart for the user.
    let matching: Vec<String> = store
        .runs(&RunFilter::default())?
        .into_iter()
        .map(|r| r.id)
        .filter(|r| r.starts_with(id))
        .collect();
    if matching.len() > 1 {
        let shown: Vec<&str> = matching.iter().take(3).map(String::as_str).collect();
        let more = if matching.len() > 3 { ", ..." } else { "" };
        return Err(CliError::not_found(format!(
            "run id prefix `{id}` is ambiguous: it matches {} runs ({}{more}); give more of the id",
            matching.len(),
            shown.join(", ")
        )));
    }
    Err(CliError::not_found(format!(
        "no run `{id}` in {}; `pipeline runs` lists the runs",
        store.path().display()
    )))
}

/// The node called `step` among a run's nodes.
pub fn find_step<'a>(nodes: &'a [NodeRecord], run: &RunRecord, step: &str) -> Result<&'a NodeRecord, CliError> {
    nodes
        .iter()
        .find(|n| n.node.name == step)
        .ok_or_else(|| CliError::not_found(format!("run {} has no step `{step}` ({})", run.id, step_list(nodes))))
}

/// `steps: a, b, c` (the first ten), or `it has no steps`.
pub fn step_list(nodes: &[NodeRecord]) -> String {
    if nodes.is_empty() {
        return "it has no steps".to_string();
    }
    let names: Vec<&str> = nodes.iter().take(10).map(|n| n.node.name.as_str()).collect();
    let more = if nodes.len() > 10 { ", ..." } else { "" };
    format!("steps: {}{more}", names.join(", "))
}
