//! Pipelines of plain Rust functions.
//!
//! Annotate functions with [`component`] and [`pipeline`]; inside a pipeline, each component
//! call returns a typed [`Handle`] at once and passing a handle to another component is a DAG
//! edge. Choose where steps run with [`debug_pipeline`] (in-process, serially). See the
//! repository's README for a walk-through.

// The layers, from the bottom up: a module uses only those declared before it (see
// ARCHITECTURE.md; `tests/layers.rs` checks it). One comment per layer keeps rustfmt from
// sorting them.

// Warnings through `tracing`, or stderr without a subscriber.
mod diag;
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

pub use api::PipelineRun;
pub use api::enqueue::RemoteRun;
pub use api::multi::{Spawned, wait_for_multi_pipelines};
pub use api::pipeline::Finished;
pub use component::Component;
pub use config::{
    CONFIG_FILE, Config, Mode, RAY_ADDRESS_ENV, RAY_TOKEN_ENV, RECORD_ENV, RayConfig, STATE_DIR_ENV, debug_pipeline,
    mode, ray_config, recording, run_locally, set_busy_timeout, set_default_execution_queue, set_recording,
    set_state_dir, start_locally, state_dir, with_mode,
};
pub use engine::context::{RunView, current_run};
pub use error::{ExecutorError, HandleError, PipelineError};
pub use pipeline_core::{
    ArtifactCodec, Callbacks, Codec, ComponentDescriptor, ComponentOptions, ContinueBehaviour, DagNode, ErrorKind,
    MultiInstance, NodeStatus, ParamDescriptor, PipelineDag, PipelineDescriptor, PipelineOptions, RetryPolicy,
    RunStatus, StepError, StepIo, call_entry, registry,
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
    pub use crate::api::enqueue::enqueue_pipeline;
    pub use crate::api::multi::spawn_pipeline;
    pub use crate::api::pipeline::{expect_started, run_pipeline, run_pipeline_async};
    pub use crate::engine::call::{block_on, call_component, param_repr, step_error};
    pub use crate::value::Invoke;
    pub use crate::value::handle::{ExportSink, Input, IntoInput, NodeRef};
    pub use crate::value::outputs::Outputs;
    pub use crate::worker::controller::{param_from_json, params_from_json};
    pub use inventory;
    pub use pipeline_core::Codec;
    pub use pipeline_core::codec::{decode, encode};
    pub use pipeline_core::descriptor::{ComponentRegistration, PipelineRegistration};
    pub use pipeline_core::descriptor::{StepIo, read_input, write_output};
    pub use pipeline_core::options::{Callbacks, MultiInstance};
    pub use pipeline_core::{
        ComponentDescriptor, ComponentOptions, ComponentValue, ContinueBehaviour, ErrorKind, ParamDescriptor,
        PipelineDescriptor, PipelineOptions, RetryPolicy, StepError,
    };
    pub use serde::Serialize;
    pub use std::time::Duration;
}
