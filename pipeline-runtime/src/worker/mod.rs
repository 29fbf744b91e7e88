//! Worker mode: a process started by the local (or remote) executor from the pipeline's own
//! binary runs exactly one component and exits, before the program's `main` would start.
//!
//! The controller writes a manifest (component, code hash, artifact paths) and starts the
//! binary with [`MANIFEST_ENV`] naming it. A constructor (in `boot`, the top layer) that runs
//! after every `inventory` registration sees the variable, runs the component through its
//! entry point here and exits, so none of the user's `main` runs, in a binary, an example or a
//! `cargo test` harness alike. The same hook starts a pipeline's controller ([`controller`]).

pub(crate) mod controller;
pub(crate) mod manifest;

pub use controller::CONTROLLER_ENV;
pub use manifest::{EXIT_SETUP, EXIT_STEP_FAILED, MANIFEST_ENV};
pub(crate) use manifest::{MANIFEST_JSON_ENV, Manifest, ManifestArtifact, ManifestInput, OutputMeta, WorkerResult};

use crate::transport::artifacts;
use pipeline_core::{Codec, ErrorKind, StepError, StepIo, registry};
use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// What the hook does for the manifest in `json` (from a Ray job) or the file `path` (from
/// the local executor or `pipeline spin`): runs the step and exits the process. Returns when
/// neither is given (not a worker).
pub(crate) fn serve_manifest(json: Option<std::ffi::OsString>, path: Option<std::ffi::OsString>) {
    // A worker given its manifest in the environment was started by a Ray job; one given a
    // file, by the local executor (or `pipeline spin`).
    let from_a_job = json.is_some();
    let manifest = match (json, path) {
        (Some(json), _) => serde_json::from_str(&json.to_string_lossy())
            .map_err(|e| format!("{MANIFEST_JSON_ENV} is not a valid manifest: {e}")),
        (None, Some(path)) => read_manifest(Path::new(&path)),
        (None, None) => return,
    };
    // A worker whose controller is gone has nobody to report to: it ends with what it started.
    crate::os::die_with_parent();
    // Nothing may unwind out of a constructor.
    let code = catch_unwind(|| run(manifest)).unwrap_or(EXIT_SETUP);
    // What the step started ends with it. The local executor ends the group itself after
    // every attempt, and the scan of /proc costs most of a millisecond: only a job does it.
    if from_a_job {
        crate::os::end_rest_of_group();
    }
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code);
}

fn setup_error(message: String) -> StepError {
    StepError::new(ErrorKind::Setup, message)
}

/// Runs the manifest's component; returns the process's exit code.
fn run(manifest: Result<Manifest, String>) -> i32 {
    let mut manifest = match manifest {
        Ok(m) => m,
        Err(e) => {
            eprintln!("pipeline worker: {e}");
            return EXIT_SETUP;
        }
    };
    if let Err(message) = reachable(&manifest) {
        eprintln!("pipeline worker: {message}");
        return EXIT_SETUP;
    }
    // On a node that does not share the controller's folders, the worker keeps its own.
    if let Some(dir) = manifest.state_dir.as_ref().filter(|d| d.is_dir()) {
        crate::config::set_state_dir(Some(dir.clone()));
    }
    let mut written = Vec::new();
    let localized = manifest.localize();
    // Whatever happens next, the staged files go with this process.
    let _scratch = Scratch(manifest.scratch.clone());
    let (error, code) = match localized.and_then(|()| prepare(&manifest)) {
        Err(e) => (Some(e), EXIT_SETUP),
        Ok((entry, codec)) => {
            let mut io = FileIo {
                codec,
                manifest: &manifest,
                written: Vec::new(),
                read_only: false,
            };
            let context = manifest.context.clone();
            // Reports go back with the result: a worker never opens the run store.
            crate::step::keep_reports();
            let outcome = crate::step::with_context(context, || {
                catch_unwind(AssertUnwindSafe(|| entry(&mut io)))
                    .unwrap_or_else(|payload| Err(StepError::from_panic(&*payload)))
            });
            written = io.written;
            match outcome {
                Ok(()) => (None, 0),
                Err(e) => (Some(e), EXIT_STEP_FAILED),
            }
        }
    };
    if let Some(e) = &error {
        eprintln!("pipeline worker: step `{}` failed: {e}", manifest.component);
    }
    let outputs = if error.is_none() { written } else { Vec::new() };
    let report = WorkerResult {
        error,
        outputs,
        reports: crate::step::take_reports(),
    };
    let written = serde_json::to_vec(&report)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            let tmp = manifest.result.with_extension("tmp");
            std::fs::write(&tmp, bytes)
                .and_then(|()| std::fs::rename(&tmp, &manifest.result))
                .map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        eprintln!(
            "pipeline worker: cannot write the result file `{}`: {e}",
            manifest.result.display()
        );
        return EXIT_SETUP;
    }
    if let Err(e) = manifest.publish(code == 0) {
        eprintln!("pipeline worker: {e}");
        return EXIT_SETUP;
    }
    code
}

/// A worker's scratch folder, removed when it ends.
struct Scratch(Option<std::path::PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Checks that the result can reach the controller: through object storage, or through the
/// step's folder, which the controller made before starting the worker. Missing here, it
/// is on a filesystem this machine does not mount, and the step's work would be lost.
fn reachable(m: &Manifest) -> Result<(), String> {
    if m.result_uri.is_some() {
        return Ok(());
    }
    let Some(folder) = m.result.parent().filter(|f| !f.as_os_str().is_empty()) else {
        return Ok(());
    };
    if folder.is_dir() {
        return Ok(());
    }
    Err(format!(
        "the step folder `{}` does not exist on this machine ({}): this worker does not share the \
         controller's state folder, so its result could not reach the controller. Set `output_uri` to an \
         object store (s3://, gs://, az://) on the pipeline or the component, or put the state folder on a \
         filesystem every node mounts",
        folder.display(),
        crate::os::hostname()
    ))
}

fn read_manifest(path: &Path) -> Result<Manifest, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the manifest `{}`: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("the manifest `{}` is not valid: {e}", path.display()))
}

fn prepare(m: &Manifest) -> Result<(pipeline_core::EntryPoint, Codec), StepError> {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "this binary".into());
    let component = registry::find_component(&m.component)
        .map_err(|e| setup_error(e.to_string()))?
        .ok_or_else(|| {
            setup_error(format!(
                "component `{}` is not registered in the worker binary `{exe}`; the controller's binary has it \
                 (code hash {}): run workers from the same build",
                m.component, m.code_hash
            ))
        })?;
    if component.code_hash != m.code_hash && m.spin {
        eprintln!(
            "pipeline worker: component `{}` changed since the run (code hash {} then, {} now): running the new code",
            m.component, m.code_hash, component.code_hash
        );
    } else if component.code_hash != m.code_hash {
        return Err(setup_error(format!(
            "component `{}` has code hash {} in the worker binary `{exe}` but {} in the controller's: \
             run workers from the same build",
            m.component, component.code_hash, m.code_hash
        )));
    }
    if m.inputs.len() != component.params.len() || m.outputs.len() != component.outputs.len() {
        return Err(setup_error(format!(
            "component `{}` takes {} inputs and gives {} outputs, the manifest lists {} and {}",
            m.component,
            component.params.len(),
            component.outputs.len(),
            m.inputs.len(),
            m.outputs.len()
        )));
    }
    let codec = artifacts::codec_named(&m.codec, &m.pipeline)?;
    Ok((component.entry.io, codec))
}

/// The inputs a manifest names, readable as a component's entry reads them (outputs cannot be
/// written through it): what a step of a recorded run was called with.
pub(crate) fn manifest_inputs(m: &Manifest) -> Result<impl StepIo + '_, StepError> {
    Ok(FileIo {
        codec: artifacts::codec_named(&m.codec, &m.pipeline)?,
        manifest: m,
        written: Vec::new(),
        read_only: true,
    })
}

struct FileIo<'a> {
    /// Made by [`manifest_inputs`]: writes are refused.
    read_only: bool,
    codec: Codec,
    manifest: &'a Manifest,
    /// Per output index, what was written.
    written: Vec<Option<OutputMeta>>,
}

impl StepIo for FileIo<'_> {
    fn codec(&self) -> Codec {
        self.codec
    }

    fn input_count(&self) -> usize {
        self.manifest.inputs.len()
    }

    fn read_input(
        &mut self,
        index: usize,
        type_name: &'static str,
        decode: &mut dyn FnMut(&mut dyn Read, u64) -> Result<(), StepError>,
    ) -> Result<(), StepError> {
        match self.manifest.inputs.get(index) {
            Some(ManifestInput::Artifact(a)) => artifacts::read_with(&a.path, self.codec, type_name, decode),
            Some(ManifestInput::Elements(elements)) => {
                let paths: Vec<_> = elements.iter().map(|a| a.path.clone()).collect();
                artifacts::read_elements(&paths, self.codec, type_name, decode)
            }
            None => Err(setup_error(format!("no input {index}"))),
        }
    }

    fn write_output(
        &mut self,
        index: usize,
        type_name: &'static str,
        encode: &mut dyn FnMut(&mut dyn Write) -> Result<(), StepError>,
    ) -> Result<(), StepError> {
        if self.read_only {
            return Err(setup_error("a recorded step's inputs are read, not written".into()));
        }
        let path = self
            .manifest
            .outputs
            .get(index)
            .ok_or_else(|| setup_error(format!("no output {index}")))?;
        let header = artifacts::write_with(path, self.codec, type_name, encode)?;
        if self.written.len() <= index {
            self.written.resize(index + 1, None);
        }
        self.written[index] = Some(OutputMeta {
            type_name: header.type_name,
            length: header.length,
            checksum: header.checksum,
        });
        Ok(())
    }
}
