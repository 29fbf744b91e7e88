//! Worker mode: a process started by the local (or remote) executor from the pipeline's own
//! binary runs exactly one component and exits, before the program's `main` would start.
//!
//! The controller writes a manifest (component, code hash, artifact paths) and starts the
//! binary with [`MANIFEST_ENV`] naming it. A constructor that runs after every `inventory`
//! registration sees the variable, runs the component through its entry point and exits, so
//! none of the user's `main` runs, in a binary, an example or a `cargo test` harness alike.

use crate::artifacts;
use pipeline_core::{Codec, ErrorKind, StepError, StepIo, registry};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

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
    /// One artifact per parameter.
    pub inputs: Vec<PathBuf>,
    /// One artifact per output, to be written.
    pub outputs: Vec<PathBuf>,
    /// Where the outcome goes.
    pub result: PathBuf,
    /// Where the step's reports go (metrics, uploads), when the run is recorded.
    #[serde(default)]
    pub context: Option<crate::step::StepContext>,
    /// Object-storage URIs of the inputs, when they live there (then the worker downloads them).
    #[serde(default)]
    pub input_uris: Vec<Option<String>>,
    /// Object-storage URIs the outputs are uploaded to.
    #[serde(default)]
    pub output_uris: Vec<Option<String>>,
    /// Object-storage URI the result is uploaded to.
    #[serde(default)]
    pub result_uri: Option<String>,
}

impl Manifest {
    /// With artifacts in object storage, the worker's own files go to a folder of its own:
    /// the controller's paths may not exist where the worker runs.
    fn localize(&mut self) -> Result<(), StepError> {
        let remote = self.result_uri.is_some() || self.input_uris.iter().chain(&self.output_uris).any(Option::is_some);
        if !remote {
            return Ok(());
        }
        let dir = std::env::temp_dir().join(format!("pipeline-worker-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| setup_error(format!("cannot create `{}`: {e}", dir.display())))?;
        for (i, input) in self.inputs.iter_mut().enumerate() {
            if let Some(Some(uri)) = self.input_uris.get(i) {
                *input = dir.join(format!("input-{i}.art"));
                crate::object_storage::download(uri, input)?;
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
    fn publish(&self, outputs: bool) -> Result<(), StepError> {
        if outputs {
            for (path, uri) in self.outputs.iter().zip(&self.output_uris) {
                if let Some(uri) = uri {
                    crate::object_storage::upload(path, uri)?;
                }
            }
        }
        if let Some(uri) = &self.result_uri {
            crate::object_storage::upload(&self.result, uri)?;
        }
        Ok(())
    }
}

/// What a worker reports back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WorkerResult {
    /// `None` on success.
    pub error: Option<StepError>,
}

// Without a constructor section, a worker process would run the user's `main` instead of one
// step: refuse to build rather than misbehave at run time.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly",
    target_os = "illumos",
    target_os = "macos",
    target_os = "ios"
)))]
compile_error!(
    "pipeline-runtime supports ELF (Linux, BSDs, illumos) and Mach-O (macOS, iOS) targets only: \
     its worker processes start through a constructor section, which this target lacks"
);

/// Runs before `main` as an ELF/Mach-O constructor, like `inventory`'s registrations. It must
/// run after them: constructors without a priority run in link order, and rustc links a crate
/// before its dependencies, so every crate that defines components (and so depends on this
/// one) registers them before this hook runs.
#[used]
#[cfg_attr(
    any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly",
        target_os = "illumos"
    ),
    unsafe(link_section = ".init_array")
)]
#[cfg_attr(
    any(target_os = "macos", target_os = "ios"),
    unsafe(link_section = "__DATA,__mod_init_func,mod_init_funcs")
)]
static WORKER_HOOK: extern "C" fn() = worker_hook;

extern "C" fn worker_hook() {
    if let Ok(request) = std::env::var(crate::remote_controller::CONTROLLER_ENV) {
        let code = catch_unwind(|| crate::remote_controller::run_controller(&request)).unwrap_or(EXIT_SETUP);
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        std::process::exit(code);
    }
    let manifest = match (std::env::var(MANIFEST_JSON_ENV), std::env::var_os(MANIFEST_ENV)) {
        (Ok(json), _) => {
            serde_json::from_str(&json).map_err(|e| format!("{MANIFEST_JSON_ENV} is not a valid manifest: {e}"))
        }
        (Err(_), Some(path)) => read_manifest(Path::new(&path)),
        (Err(_), None) => return,
    };
    // Nothing may unwind out of a constructor.
    let code = catch_unwind(|| run(manifest)).unwrap_or(EXIT_SETUP);
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
    let (error, code) = match manifest.localize().and_then(|()| prepare(&manifest)) {
        Err(e) => (Some(e), EXIT_SETUP),
        Ok((entry, codec)) => {
            let mut io = FileIo {
                codec,
                manifest: &manifest,
            };
            let mut context = manifest.context.clone();
            if let Some(cx) = &mut context {
                cx.component = registry::find_component(&manifest.component).ok().flatten();
            }
            let outcome = crate::step::with_context(context, || {
                catch_unwind(AssertUnwindSafe(|| entry(&mut io)))
                    .unwrap_or_else(|payload| Err(StepError::from_panic(&*payload)))
            });
            match outcome {
                Ok(()) => (None, 0),
                Err(e) => (Some(e), EXIT_STEP_FAILED),
            }
        }
    };
    if let Some(e) = &error {
        eprintln!("pipeline worker: step `{}` failed: {e}", manifest.component);
    }
    let report = WorkerResult { error };
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
    if component.code_hash != m.code_hash {
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
    let codec = codec_named(&m.codec, &m.pipeline)?;
    Ok((component.entry, codec))
}

/// The codec called `name`: a built-in one, or the custom codec of pipeline `pipeline`.
pub(crate) fn codec_named(name: &str, pipeline: &str) -> Result<Codec, StepError> {
    match name {
        "bincode" => return Ok(Codec::Bincode),
        "json" => return Ok(Codec::Json),
        _ => {}
    }
    registry::pipelines()
        .filter(|p| p.name == pipeline)
        .map(|p| p.options.codec)
        .find(|c| c.name() == name)
        .ok_or_else(|| {
            setup_error(format!(
                "no codec named `{name}` in pipeline `{pipeline}` of this binary"
            ))
        })
}

struct FileIo<'a> {
    codec: Codec,
    manifest: &'a Manifest,
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
        decode: &mut dyn FnMut(&mut dyn Read) -> Result<(), StepError>,
    ) -> Result<(), StepError> {
        let path = self
            .manifest
            .inputs
            .get(index)
            .ok_or_else(|| setup_error(format!("no input {index}")))?;
        artifacts::read_with(path, self.codec, type_name, decode)
    }

    fn write_output(
        &mut self,
        index: usize,
        type_name: &'static str,
        encode: &mut dyn FnMut(&mut dyn Write) -> Result<(), StepError>,
    ) -> Result<(), StepError> {
        let path = self
            .manifest
            .outputs
            .get(index)
            .ok_or_else(|| setup_error(format!("no output {index}")))?;
        artifacts::write_with(path, self.codec, type_name, encode).map(drop)
    }
}
