//! Pipelines of plain Rust functions.
//!
//! Annotate functions with [`component`] and [`pipeline`]; inside a pipeline, each component
//! call returns a typed [`Handle`] at once and passing a handle to another component is a DAG
//! edge. Choose where steps run with [`debug_pipeline`] (in-process, serially). See the
//! repository's README for a walk-through.

mod api;
pub mod artifacts;
mod call;
pub mod component;
mod context;
mod engine;
mod error;
pub(crate) mod executor;
mod handle;
mod mode;
mod multi;
mod object_storage;
mod outputs;
mod pipeline;
mod recorder;
mod remote_controller;
mod slot;
mod state;
pub mod step;
pub mod store;
mod sync;
mod worker;

pub use api::PipelineRun;
pub use component::Component;
pub use context::{RunView, current_run};
pub use error::{HandleError, PipelineError};
pub use executor::ray::{JobInfo, RayClient, RayConfig};
pub use handle::{Handle, HandleFuture, IntoInput};
pub use mode::{Mode, debug_pipeline, mode, run_locally, set_default_execution_queue, start_locally, with_mode};
pub use multi::{Spawned, wait_for_multi_pipelines};
pub use pipeline::Finished;
pub use pipeline_core::{
    ArtifactCodec, Callbacks, Codec, ComponentDescriptor, ComponentOptions, ContinueBehaviour, DagNode, ErrorKind,
    MultiInstance, NodeStatus, ParamDescriptor, PipelineDag, PipelineDescriptor, PipelineOptions, RetryPolicy,
    RunStatus, StepError, StepIo, call_entry, registry,
};
pub use pipeline_macros::{component, pipeline};
pub use remote_controller::{CONTROLLER_ENV, RemoteRun};
pub use state::{
    RAY_ADDRESS_ENV, RAY_TOKEN_ENV, STATE_DIR_ENV, ray_config, recording, set_recording, set_state_dir, state_dir,
};
pub use worker::{EXIT_SETUP, EXIT_STEP_FAILED, MANIFEST_ENV};

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
    pub use crate::call::{Invoke, block_on, call_component, param_repr, step_error};
    pub use crate::handle::{ExportSink, Input, IntoInput, NodeRef};
    pub use crate::multi::spawn_pipeline;
    pub use crate::outputs::Outputs;
    pub use crate::pipeline::{expect_started, run_pipeline, run_pipeline_async};
    pub use crate::remote_controller::{enqueue_pipeline, param_from_json, params_from_json};
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
