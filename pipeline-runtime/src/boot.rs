//! The constructor that turns a process of the pipeline's binary into a worker or a
//! controller before `main`: the top layer, because a controller request may name a pipeline
//! assembled at run time (`PipelineController`), which the `api` layer runs.

use crate::worker::{CONTROLLER_ENV, EXIT_SETUP, MANIFEST_ENV, MANIFEST_JSON_ENV};
use std::io::Write;
use std::panic::catch_unwind;

// Without a constructor section, a worker process would run the user's `main` instead of one
// step: refuse to build rather than misbehave at run time.
#[cfg(not(any(elf, mach_o)))]
compile_error!(
    "pipeline-runtime supports ELF (Linux, BSDs, illumos) and Mach-O (macOS, iOS) targets only: \
     its worker processes start through a constructor section, which this target lacks"
);

/// Runs before `main` as an ELF/Mach-O constructor, like `inventory`'s registrations. It must
/// run after them: constructors without a priority run in link order, and rustc links a crate
/// before its dependencies, so every crate that defines components (and so depends on this
/// one) registers them before this hook runs.
#[used]
#[cfg_attr(elf, unsafe(link_section = ".init_array"))]
#[cfg_attr(mach_o, unsafe(link_section = "__DATA,__mod_init_func,mod_init_funcs"))]
static WORKER_HOOK: extern "C" fn() = worker_hook;

// A worker reports with `eprintln!`, not `tracing`: its stderr is the attempt's log, which the
// executor keeps and quotes in errors, and no subscriber can exist before `main`.
extern "C" fn worker_hook() {
    // Only a non-empty value selects a mode. The variables are removed at once, so that a
    // program the step starts (the `pipeline` CLI, another pipeline) does not become a worker.
    let take = |name: &str| {
        let value = std::env::var_os(name).filter(|v| !v.is_empty());
        if value.is_some() {
            // SAFETY: constructors run before `main`, on the only thread there is yet.
            unsafe { std::env::remove_var(name) };
        }
        value
    };
    let (controller, json, path) = (take(CONTROLLER_ENV), take(MANIFEST_JSON_ENV), take(MANIFEST_ENV));
    if let Some(request) = controller {
        let request = request.to_string_lossy().into_owned();
        let run_spec = crate::api::controller::run_spec;
        let code = catch_unwind(|| crate::worker::controller::run_controller(&request, run_spec)).unwrap_or(EXIT_SETUP);
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        std::process::exit(code);
    }
    crate::worker::serve_manifest(json, path);
}
