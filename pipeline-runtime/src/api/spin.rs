//! Running one step of a recorded run again, alone (Metaflow's `spin`): the step's last
//! attempt's manifest names its inputs in the run's folder; the recorded executable runs it as
//! a worker with its outputs, result and log in a folder of the caller's, and no run store.
//! The recorded run is not touched. The component's code may have changed since: the point is
//! to try a fix on the inputs that failed.

use crate::store::{NodeRecord, RunRecord};
use crate::transport::artifacts::{self, ArtifactRef};
use crate::worker::{MANIFEST_ENV, Manifest, WorkerResult};
use pipeline_core::StepError;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// What running a step again gave.
#[derive(Debug)]
pub struct Spun {
    /// The step's error, when it failed.
    pub error: Option<StepError>,
    /// Its outputs, by name, as artifacts in the output folder (when it succeeded).
    pub outputs: Vec<(String, ArtifactRef)>,
    /// Everything the step printed (stdout and stderr).
    pub log: PathBuf,
}

/// Why a step could not be run again.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SpinError(String);

/// Runs step `step` of `run` (recorded in the state folder `state`) again on the inputs its
/// last attempt had, writing its outputs, result and log into `out` (created if needed).
pub fn spin_step(state: &Path, run: &RunRecord, step: &NodeRecord, out: &Path) -> Result<Spun, SpinError> {
    let fail = |message: String| SpinError(message);
    let name = &step.node.name;
    if run.mode == "debug" {
        return Err(fail(format!(
            "run {} ran in debug mode, where steps' inputs stay in memory: only steps of local or remote runs \
             (which store them) can be run again alone",
            run.id
        )));
    }
    let Some(executable) = run.executable.as_ref().filter(|e| e.exists()) else {
        return Err(fail(format!(
            "run {}'s executable {} is not there any more: build it again",
            run.id,
            run.executable
                .as_ref()
                .map_or_else(|| "was not recorded".to_string(), |e| format!("`{}`", e.display()))
        )));
    };
    let attempt = step.node.attempts.max(1);
    let node_dir = crate::store::step_folder(&crate::store::run_folder(state, &run.id), name);
    let manifest_path = node_dir.join(format!("manifest-{attempt}.json"));
    let bytes = std::fs::read(&manifest_path).map_err(|e| {
        fail(format!(
            "step `{name}` of run {} has no stored inputs (`{}`: {e}); a step that never started, or that ran on a \
             cluster without a shared folder, cannot be run again alone",
            run.id,
            manifest_path.display()
        ))
    })?;
    let mut manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        fail(format!(
            "the manifest `{}` is not readable: {e}",
            manifest_path.display()
        ))
    })?;
    std::fs::create_dir_all(out.join("outputs"))
        .map_err(|e| fail(format!("cannot create `{}`: {e}", out.display())))?;
    let out = out
        .canonicalize()
        .map_err(|e| fail(format!("cannot reach `{}`: {e}", out.display())))?;
    // Inputs stay where the run keeps them (read only); everything written goes to `out`.
    let descriptor_outputs: Vec<String> = manifest
        .outputs
        .iter()
        .map(|p| {
            p.file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
        })
        .collect();
    manifest.outputs = descriptor_outputs
        .iter()
        .map(|o| artifacts::output_path(&out, o))
        .collect();
    manifest.result = out.join("result.json");
    manifest.output_uris = Vec::new();
    manifest.result_uri = None;
    manifest.context = None; // nothing reaches the run store
    manifest.spin = true;
    let _ = std::fs::remove_file(&manifest.result);
    let spin_manifest = out.join("manifest.json");
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| fail(format!("cannot encode the manifest: {e}")))?;
    std::fs::write(&spin_manifest, json).map_err(|e| fail(format!("cannot write the manifest: {e}")))?;
    let log = out.join("step.log");
    let log_file = std::fs::File::create(&log).map_err(|e| fail(format!("cannot create the log: {e}")))?;
    let err_file = log_file
        .try_clone()
        .map_err(|e| fail(format!("cannot create the log: {e}")))?;
    let mut worker = std::process::Command::new(executable)
        .env(MANIFEST_ENV, &spin_manifest)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .spawn()
        .map_err(|e| fail(format!("cannot start `{}`: {e}", executable.display())))?;
    let status = worker
        .wait()
        .map_err(|e| fail(format!("cannot wait for `{}`: {e}", executable.display())))?;
    // The worker led a process group of its own: what the step started ends with it.
    crate::os::kill_group(worker.id());
    let result: Option<WorkerResult> = std::fs::read(&manifest.result)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let Some(result) = result else {
        return Err(fail(format!(
            "the step ended ({status}) without a result; its log: {}",
            log.display()
        )));
    };
    let codec = artifacts::codec_named(&manifest.codec, &manifest.pipeline).map_err(|e| fail(e.message))?;
    let outputs = if result.error.is_none() {
        descriptor_outputs
            .into_iter()
            .zip(&manifest.outputs)
            .map(|(name, path)| (name, ArtifactRef::local(path.clone(), codec)))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Spun {
        error: result.error,
        outputs,
        log,
    })
}
