#![warn(missing_docs)]
//! Pipelines of plain Rust functions: annotate functions with [`component`](macro@component) and [`pipeline`](macro@pipeline),
//! and the calls inside a pipeline become a DAG that runs in this process, as local
//! subprocesses, or as jobs on a Ray cluster, with every run recorded.
//!
//! # A first pipeline
//!
//! Inside a `#[pipeline]` function, calling a component returns a typed [`Handle`] at once;
//! passing a handle to another component is a DAG edge, and reading it (`.get()`, or `.await`
//! in async code) waits for the step.
//!
//! ```
//! use pipeline_runtime::prelude::*;
//!
//! #[component]
//! fn guide_load(rows: usize) -> Vec<f64> {
//!     (0..rows).map(|i| i as f64).collect()
//! }
//!
//! #[component]
//! fn guide_mean(values: Vec<f64>) -> f64 {
//!     values.iter().sum::<f64>() / values.len() as f64
//! }
//!
//! #[pipeline(name = "guide_first", project = "docs")]
//! fn first(rows: usize) -> f64 {
//!     let values = guide_load(rows); // a Handle<Vec<f64>>, returned at once
//!     guide_mean(&values).get().unwrap() // an edge, then a read that waits
//! }
//!
//! fn main() {
//!     # pipeline_runtime::set_state_dir(Some(std::env::temp_dir().join("pipeline-doc-first")));
//!     pipeline_runtime::debug_pipeline(); // steps as in-process calls
//!     assert_eq!(first(5), 2.0); // the plain call gives the value...
//!     let finished = first::run(5).unwrap(); // ...`run` the value and the run's record
//!     assert_eq!(finished.output, 2.0);
//!     assert_eq!(finished.run.dag().nodes().count(), 2);
//! }
//! ```
//!
//! A component is also a plain function outside any pipeline: `guide_mean(vec![1.0, 3.0])`
//! returns a handle whose value is ready, which makes unit tests of components ordinary tests.
//!
//! # Where steps run
//!
//! | mode | chosen with | steps run |
//! |---|---|---|
//! | debug | [`debug_pipeline`] | as in-process calls, one at a time, when something waits for them (a value read, the run's end), on the reading thread when it blocks (else on the run's step thread); values move without serialization |
//! | local | [`run_locally`] | as subprocesses of this same binary, in parallel up to `max_parallel` |
//! | remote | the default | as jobs on a Ray cluster ([`RayConfig`], `PIPELINE_RAY_ADDRESS`) |
//!
//! The mode, the state folder and the other settings form one [`Config`]: built from
//! defaults, `pipeline.toml` and the environment, set process-wide by the ClearML-style
//! functions, and overridable per thread or task with [`Config::scope`] or [`with_mode`].
//! Every mode shares one scheduler, so the same pipeline gives the same values and DAG.
//!
//! # Handles, fan-out and fan-in
//!
//! A parameter of type `T` accepts a `T`, a `Handle<T>` or a `&Handle<T>`; a `Vec<U>`
//! parameter also accepts a `Vec<Handle<U>>` (one edge per handle). Several outputs come from
//! `return_values`:
//!
//! ```
//! use pipeline_runtime::prelude::*;
//!
//! #[component(return_values = ["low", "high"])]
//! fn guide_split(values: Vec<u32>) -> (Vec<u32>, Vec<u32>) {
//!     values.into_iter().partition(|v| *v < 10)
//! }
//!
//! #[component]
//! fn guide_square(x: u32) -> u32 {
//!     x * x
//! }
//!
//! #[component]
//! fn guide_sum(values: Vec<u32>) -> u32 {
//!     values.iter().sum()
//! }
//!
//! #[pipeline(name = "guide_fan", project = "docs")]
//! fn fan(values: Vec<u32>) -> (u32, usize) {
//!     let (low, high) = guide_split(values);
//!     let squares: Vec<Handle<u32>> = (1..=3).map(guide_square).collect(); // fan-out
//!     let total = guide_sum(squares); // fan-in
//!     (total.get().unwrap(), high.get().unwrap().len() + low.get().unwrap().len())
//! }
//!
//! fn main() {
//!     # pipeline_runtime::set_state_dir(Some(std::env::temp_dir().join("pipeline-doc-fan")));
//!     pipeline_runtime::with_mode(pipeline_runtime::Mode::Debug, || {
//!         assert_eq!(fan(vec![1, 20, 3]), (14, 3));
//!     });
//! }
//! ```
//!
//! # Failures
//!
//! A component may return `Result<T, E>`; an `Err` or a panic fails its step (after
//! `retries`), and reading its handle gives a [`HandleError`] naming the step and the cause.
//! Steps that depend on a failed one are skipped, with the root cause in their error; others
//! go on unless the pipeline has `abort_on_failure`. [`PipelineError`] is for a run that
//! could not start at all (an unreachable cluster, an unusable run store).
//!
//! ```
//! use pipeline_runtime::prelude::*;
//!
//! #[component(retries = 1)]
//! fn guide_flaky(x: u32) -> anyhow::Result<u32> {
//!     anyhow::ensure!(x > 0, "x must be positive");
//!     Ok(x)
//! }
//!
//! #[component]
//! fn guide_double(x: u32) -> u32 {
//!     x * 2
//! }
//!
//! #[pipeline(name = "guide_failures", project = "docs")]
//! fn failing() -> Result<u32, HandleError> {
//!     guide_double(guide_flaky(0)).get()
//! }
//!
//! fn main() {
//!     # pipeline_runtime::set_state_dir(Some(std::env::temp_dir().join("pipeline-doc-fail")));
//!     pipeline_runtime::with_mode(pipeline_runtime::Mode::Debug, || {
//!         let finished = failing::run().unwrap();
//!         let err = finished.output.unwrap_err();
//!         assert!(matches!(err, HandleError::Skipped { .. }));
//!         assert!(err.to_string().contains("x must be positive"), "{err}");
//!         assert_eq!(finished.run.status(), RunStatus::Failed);
//!         let flaky = finished.run.dag().nodes().find(|n| n.name == "guide_flaky").cloned().unwrap();
//!         assert_eq!(flaky.attempts, 2); // the first try and one retry
//!     });
//! }
//! ```
//!
//! # The run store
//!
//! Unless recording is off, every run is recorded in an SQLite database in the state folder
//! (`.pipeline/runs.db` by default): its parameters, DAG, every state change, artifacts,
//! metrics and configuration. [`PipelineRun`] reads runs back; code inside a step reports
//! metrics and artifacts through [`step`] (`report_scalar`, `upload_artifact`...); a
//! `cache = true` component is served from an earlier run when its code and inputs match.
//!
//! ```
//! use pipeline_runtime::prelude::*;
//!
//! #[component(cache = true)]
//! fn guide_slow(x: u64) -> u64 {
//!     pipeline_runtime::step::report_scalar("progress", "x", 0, x as f64);
//!     x + 1
//! }
//!
//! #[pipeline(name = "guide_store", project = "docs")]
//! fn stored(x: u64) -> u64 {
//!     guide_slow(x).get().unwrap()
//! }
//!
//! fn main() {
//!     let state = std::env::temp_dir().join(format!("pipeline-doc-store-{}", std::process::id()));
//!     let config = pipeline_runtime::Config::current()
//!         .with_mode(pipeline_runtime::Mode::Debug)
//!         .with_state_dir(&state);
//!     config.scope(|| {
//!         let first = stored::run(41).unwrap();
//!         let again = stored::run(41).unwrap(); // served from the cache
//!         assert_eq!(again.output, 42);
//!         let node = again.run.dag().nodes().next().cloned().unwrap();
//!         assert_eq!(node.status, NodeStatus::Cached);
//!         let read_back = PipelineRun::get(first.run.id()).unwrap().unwrap();
//!         assert_eq!(read_back.metrics().unwrap().len(), 1);
//!     });
//!     # let _ = std::fs::remove_dir_all(state);
//! }
//! ```
//!
//! # The `pipeline` command
//!
//! The `pipeline` binary (feature `cli`) reads the same store: `pipeline runs`, `pipeline
//! show <run>`, `pipeline dag <run>`, `pipeline logs <run> <step>`, `pipeline compare`,
//! `pipeline stop <run>`, `pipeline artifacts <run>`, `pipeline get <run> <step>`, `pipeline
//! cache`, with `--json` for scripts.
//!
//! # Features
//!
//! `ray` (remote mode, [`RemoteRun`]), `object-store` (`output_uri = "s3://..."` and the like)
//! and `cli` are on by default; without them the crate is a debug/local-only library, and
//! what needs a left-out feature is a [`PipelineError::Disabled`] naming it.

// Generated code names this crate `::pipeline_runtime`, also in its own doctests and tests.
extern crate self as pipeline_runtime;

// The layers, from the bottom up: a module uses only those declared before it (see
// ARCHITECTURE.md; `tests/layers.rs` checks it). One comment per layer keeps rustfmt from
// sorting them.

// Warnings through `tracing`, or stderr without a subscriber.
mod diag;
// Process groups, parent death, whether a process is alive.
mod os;
// Poison-tolerant locks; waiting on a runtime from any thread.
mod sync;
// Mode, state folder, recording, Ray settings.
mod config;
// Artifact files and object storage.
mod transport;
// The SQLite run store and its writer thread.
pub mod store;
// Reports from step code.
pub mod step;
// Errors users see.
mod error;
// The Ray cluster's client.
#[cfg(feature = "ray")]
mod remote;
// Slots, handles, a call's outputs, the job protocol.
mod value;
// The worker hook, its manifest protocol, the controller entry.
mod worker;
// Executors: in-process, subprocess, Ray job.
mod exec;
// The scheduler, the run, component calls.
mod engine;
// The `Component` protocol generated code implements and calls.
pub mod component;
// Running pipelines, runs read back, enqueue.
mod api;
// The constructor that makes a process a worker or a controller before `main`.
mod boot;
#[cfg(feature = "ui")]
pub mod ui;
// Entry points for the fuzz targets under `fuzz/` (not a public API).
#[doc(hidden)]
pub mod fuzzing;

pub use api::PipelineRun;
pub use api::again::{Again, apply_edits, new_run_id, recorded_parameters, resume_run, spawn_again, start_again};
pub use api::call_options::{IntoInputs, WithOptions, with_options};
pub use api::controller::{self, ControllerError, ControllerOutputs, PipelineController};
pub use api::enqueue::RemoteRun;
pub use api::entry;
pub use api::multi::{Spawned, wait_for_multi_pipelines};
pub use api::pipeline::Finished;
pub use api::spin::{SpinError, Spun, spin_step};
pub use component::Component;
pub use config::{
    CONFIG_FILE, CacheRefresh, Config, DEFAULT_LOG_CAP, LOG_CAP_ENV, Mode, PROGRESS_ENV, Progress, RAY_ADDRESS_ENV,
    RAY_BACKEND_ENV, RAY_TOKEN_ENV, RECORD_ENV, RUNNER_LISTEN_ENV, RUNNER_URL_ENV, RayConfig, RemoteBackend,
    STATE_DIR_ENV, debug_pipeline, mode, ray_config, recording, run_locally, set_busy_timeout,
    set_default_execution_queue, set_ray_backend, set_recording, set_state_dir, start_locally, state_dir, with_mode,
};
pub use engine::context::{RunView, current_run};
pub use error::{ExecutorError, HandleError, PipelineError};
pub use pipeline_core::{
    ArtifactCodec, Callbacks, Codec, ComponentDescriptor, ComponentOptions, ContinueBehaviour, DagNode, ErrorKind,
    FailCondition, MultiInstance, NodeStatus, ParamDescriptor, PipelineDag, PipelineDescriptor, PipelineOptions,
    RetryBackoff, RetryPolicy, RunStatus, StepError, StepIo, StopMark, call_entry, registry,
};
pub use pipeline_macros::{component, pipeline};
#[cfg(feature = "ray")]
pub use remote::ray::{JobInfo, RayClient, RayError};
pub use transport::artifacts;
pub use value::handle::{Handle, HandleFuture, IntoInput};
pub use worker::{CONTROLLER_ENV, EXIT_SETUP, EXIT_STEP_FAILED, MANIFEST_ENV};

/// Everything a pipeline file needs: `use pipeline_runtime::prelude::*;`.
pub mod prelude {
    pub use crate::{
        DagNode, Handle, HandleError, NodeStatus, PipelineRun, RunStatus, component, current_run, debug_pipeline,
        pipeline, run_locally,
    };
}

/// Items the macros' generated code refers to. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::engine::call::{call_component, step_error};
    pub use crate::value::Invoke;
    pub use crate::value::handle::{ExportSink, Input, IntoInput, NodeRef};
    pub use crate::value::outputs::Outputs;
    pub use inventory;
    pub use pipeline_core::Codec;
    pub use pipeline_core::codec::{decode, encode};
    pub use pipeline_core::descriptor::{ComponentRegistration, PipelineRegistration};
    pub use pipeline_core::descriptor::{StepIo, read_input, write_output};
    pub use pipeline_core::options::{Callbacks, MultiInstance};
    pub use pipeline_core::{
        ComponentDescriptor, ComponentOptions, ComponentValue, ContinueBehaviour, ErrorKind, ParamDescriptor,
        PipelineDescriptor, PipelineOptions, RetryBackoff, RetryPolicy, StepError,
    };
    pub use serde::Serialize;
    pub use std::time::Duration;
}
