//! The protocol between an executor and a worker process: the manifest that says what to run
//! and where its artifacts are, the result file that says how it ended, the exit codes.

use pipeline_core::{ErrorKind, StepError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The environment variable that turns a process into a worker.
pub const MANIFEST_ENV: &str = "PIPELINE_WORKER_MANIFEST";
/// The environment variable that turns a process into a worker, with the manifest itself as
/// its value (for workers that do not share the controller's filesystem).
pub const MANIFEST_JSON_ENV: &str = "PIPELINE_WORKER_MANIFEST_JSON";

/// Exit code of a worker whose step returned `Err` or panicked (the result file says why).
pub const EXIT_STEP_FAILED: i32 = 1;
/// Exit code of a worker that could not run the step at all (bad manifest, unknown component...).
pub const EXIT_SETUP: i32 = 2;

/// What a worker is to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// The pipeline (for its codec).
    pub pipeline: String,
    /// The component's registered name.
    pub component: String,
    /// The code hash the controller's binary has for it.
    pub code_hash: String,
    /// The codec's name.
    pub codec: String,
    /// Per parameter: its artifact, or a fan-in's element artifacts.
    pub inputs: Vec<ManifestInput>,
    /// One artifact per output, to be written.
    pub outputs: Vec<PathBuf>,
    /// Where the outcome goes.
    pub result: PathBuf,
    /// Where the step's reports go (metrics, uploads), when the run is recorded.
    #[serde(default)]
    pub context: Option<crate::step::StepContext>,
    /// Object-storage URIs the outputs are uploaded to.
    #[serde(default)]
    pub output_uris: Vec<Option<String>>,
    /// Object-storage URI the result is uploaded to.
    #[serde(default)]
    pub result_uri: Option<String>,
    /// The controller's state folder (absolute): the worker's own when it exists there, so that
    /// step code reading the run store (`PipelineRun::get`) reads the controller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// Run again alone (`pipeline spin`): the component's code may have changed since.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub spin: bool,
    /// The worker's own folder for staged artifacts, once [`Manifest::localize`] made one; the
    /// worker removes it when it ends.
    #[serde(skip)]
    pub scratch: Option<PathBuf>,
}

/// An artifact a worker reads: its file, and its object-storage URI when it lives there (the
/// worker then downloads it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ManifestArtifact {
    pub path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// One parameter's artifacts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ManifestInput {
    /// The value in one artifact.
    Artifact(ManifestArtifact),
    /// A fan-in: one artifact per element, read as one sequence.
    Elements(Vec<ManifestArtifact>),
}

impl ManifestInput {
    /// Its artifacts, in order.
    pub(crate) fn artifacts_mut(&mut self) -> &mut [ManifestArtifact] {
        match self {
            Self::Artifact(a) => std::slice::from_mut(a),
            Self::Elements(e) => e,
        }
    }
}

/// What the worker wrote of one output (the controller records it without reopening the file).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OutputMeta {
    pub type_name: String,
    pub length: u64,
    pub checksum: u32,
}

impl Manifest {
    /// With artifacts in object storage, the worker's own files go to a folder of its own:
    /// the controller's paths may not exist where the worker runs.
    pub(crate) fn localize(&mut self) -> Result<(), StepError> {
        let remote = self.result_uri.is_some()
            || self.output_uris.iter().any(Option::is_some)
            || self.context.as_ref().is_some_and(|cx| cx.remote.is_some())
            || self
                .inputs
                .iter_mut()
                .any(|input| input.artifacts_mut().iter().any(|a| a.uri.is_some()));
        if !remote {
            return Ok(());
        }
        let dir = std::env::temp_dir().join(format!("pipeline-worker-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| setup_error(format!("cannot create `{}`: {e}", dir.display())))?;
        self.scratch = Some(dir.clone());
        if let Some(cx) = self.context.as_mut().filter(|cx| cx.remote.is_some()) {
            // Uploads are staged here and sent to object storage: the run's folder may not exist
            // on this node.
            cx.run_dir = dir.join("run").into();
        }
        for (i, input) in self.inputs.iter_mut().enumerate() {
            for (j, artifact) in input.artifacts_mut().iter_mut().enumerate() {
                if let Some(uri) = &artifact.uri {
                    artifact.path = dir.join(format!("input-{i}-{j}.art"));
                    crate::transport::object_storage::download(uri, &artifact.path)?;
                }
            }
        }
        for (i, output) in self.outputs.iter_mut().enumerate() {
            if let Some(Some(_)) = self.output_uris.get(i) {
                *output = dir.join(format!("output-{i}.art"));
            }
        }
        if self.result_uri.is_some() {
            self.result = dir.join("result.json");
        }
        Ok(())
    }

    /// Uploads the outputs (after a successful step) and the result file.
    pub(crate) fn publish(&self, outputs: bool) -> Result<(), StepError> {
        if outputs {
            for (path, uri) in self.outputs.iter().zip(&self.output_uris) {
                if let Some(uri) = uri {
                    crate::transport::object_storage::upload(path, uri)?;
                }
            }
        }
        if let Some(uri) = &self.result_uri {
            crate::transport::object_storage::upload(&self.result, uri)?;
        }
        Ok(())
    }
}

/// What a worker reports back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WorkerResult {
    /// `None` on success.
    pub error: Option<StepError>,
    /// On success, what was written of each output (by output index).
    #[serde(default)]
    pub outputs: Vec<Option<OutputMeta>>,
    /// What the step reported (metrics, texts, uploads), for the controller to record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<crate::step::Report>,
}

fn setup_error(message: String) -> StepError {
    StepError::new(ErrorKind::Setup, message)
}
