#![warn(missing_docs)]
//! The model of the pipeline framework: what a component and a pipeline are, their options,
//! the states of nodes and runs, DAG snapshots and their renderings, and the artifact codec.
//!
//! This crate does no I/O and spawns nothing; the runtime (`pipeline-runtime`) executes what
//! is described here, and the macros (`pipeline-macros`) generate the descriptors.

pub mod artifact;
pub mod codec;
pub mod dag;
pub mod descriptor;
pub mod error;
pub mod format;
pub mod layout;
pub mod names;
pub mod options;
pub mod registry;
pub mod status;

pub use codec::{ArtifactCodec, Codec, ComponentValue};
pub use dag::{DagNode, PipelineDag};
pub use descriptor::{
    ComponentDescriptor, DynamicEntry, Entries, EntryPoint, ParamDescriptor, PipelineDescriptor, StepIo, call_entry,
};
pub use error::{ErrorKind, StepError};
pub use options::{
    Callbacks, ComponentOptions, ContinueBehaviour, MultiInstance, PipelineOptions, RetryBackoff, RetryPolicy,
};
pub use status::{FailCondition, NodeStatus, RunStatus, StopMark};
