//! A pipeline's entry points as ordinary functions. `#[pipeline]` generates calls to these
//! and nothing else of the runtime's (but its registration), so what a pipeline does is here
//! to read, and a pipeline can be written without the macro:
//!
//! ```
//! use pipeline_runtime::prelude::*;
//! use pipeline_runtime::{PipelineDescriptor, PipelineOptions, entry};
//!
//! #[component]
//! fn double(x: u64) -> u64 {
//!     x * 2
//! }
//!
//! /// What `#[pipeline(name = "by_hand", project = "docs")]` would describe.
//! static BY_HAND: PipelineDescriptor = PipelineDescriptor {
//!     name: "by_hand",
//!     project: "docs",
//!     version: None,
//!     function: "by_hand",
//!     module_path: module_path!(),
//!     code_hash: "0",
//!     is_async: false,
//!     params: &[pipeline_runtime::ParamDescriptor::new("x", "u64")],
//!     options: PipelineOptions::DEFAULT,
//!     // Runs it from JSON parameters, as a controller on a cluster would.
//!     controller: |json| {
//!         let mut params = entry::params_from_json(json)?;
//!         let x: u64 = entry::param_from_json(&mut params, "x")?;
//!         by_hand(x).map(|f| f.run.is_successful()).map_err(|e| e.to_string())
//!     },
//! };
//!
//! fn by_hand(x: u64) -> Result<pipeline_runtime::Finished<u64>, pipeline_runtime::PipelineError> {
//!     entry::run(&BY_HAND, vec![("x", entry::param_repr(&x))], move || {
//!         double(x).get().unwrap()
//!     })
//! }
//!
//! pipeline_runtime::set_recording(false);
//! debug_pipeline();
//! let finished = by_hand(21).unwrap();
//! assert_eq!(finished.output, 42);
//! assert!(finished.run.is_successful());
//! ```
//!
//! (`#[pipeline]` also registers the descriptor, so that `pipeline rerun`, `resume` and a
//! controller on a cluster find the pipeline in the binary by name.)

pub use super::again::{resume_config, resume_error, resume_params};
pub use super::enqueue::enqueue_pipeline as enqueue;
pub use super::multi::spawn_pipeline as spawn;
pub use super::pipeline::{expect_started, run_pipeline as run, run_pipeline_async as run_async};
pub use crate::engine::call::param_repr;

/// Records the body's value as the run's output named `name`, with the pipeline's codec
/// (`#[pipeline(return_value = "...")]`); called from the body. A value that cannot be
/// written is a warning: the run and its value go on.
pub fn record_return<T: serde::Serialize>(name: &str, value: &T) {
    let Some(run) = crate::engine::context::current() else {
        return;
    };
    match crate::step::record_return(name, value, run.descriptor.options.codec) {
        Ok(Some(record)) => run.note_returned(record),
        Ok(None) => {}
        Err(e) => crate::diag::warn(format_args!(
            "the pipeline's return value `{name}` was not recorded: {e}"
        )),
    }
}
pub use crate::worker::controller::{param_from_json, params_from_json};
