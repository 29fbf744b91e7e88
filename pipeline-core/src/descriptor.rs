//! What the macros generate for each component and pipeline: a `static` descriptor.

use crate::error::StepError;
use crate::options::{ComponentOptions, PipelineOptions};

/// A parameter or an output: its name and its Rust type as written in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamDescriptor {
    /// The parameter's name, or the output's name from `return_values`.
    pub name: &'static str,
    /// The type as written (`Vec<f64>`).
    pub type_name: &'static str,
}

/// The type-erased entry point of a component: one encoded value per parameter in, one
/// encoded value per output out (default codec). Any process built from the same binary can
/// run a component by name through it.
pub type EntryPoint = fn(&[&[u8]]) -> Result<Vec<Vec<u8>>, StepError>;

/// Everything known about a component at compile time.
#[derive(Debug, Clone, Copy)]
pub struct ComponentDescriptor {
    /// The stable name steps of this component are called by (the function's name unless
    /// `name = "..."` says otherwise).
    pub name: &'static str,
    /// The function's identifier.
    pub function: &'static str,
    /// `module_path!()` where the function is defined.
    pub module_path: &'static str,
    /// `file!()` and `line!()` of the definition.
    pub file: &'static str,
    /// See `file`.
    pub line: u32,
    /// A hash of the function's tokens (hex): changes whenever its code does.
    pub code_hash: &'static str,
    /// Whether the function is an `async fn`.
    pub is_async: bool,
    /// The parameters, in order.
    pub params: &'static [ParamDescriptor],
    /// The outputs, in order (one for a plain return type).
    pub outputs: &'static [ParamDescriptor],
    /// The options from the attribute.
    pub options: ComponentOptions,
    /// The type-erased entry point.
    pub entry: EntryPoint,
}

impl ComponentDescriptor {
    /// `module::path::function`, for messages that must tell two components apart.
    pub fn qualified_function(&self) -> String {
        format!("{}::{}", self.module_path, self.function)
    }
}

/// Everything known about a pipeline function at compile time.
#[derive(Debug, Clone, Copy)]
pub struct PipelineDescriptor {
    /// `name = "..."`.
    pub name: &'static str,
    /// `project = "..."`.
    pub project: &'static str,
    /// `version = "..."`, when given.
    pub version: Option<&'static str>,
    /// The function's identifier.
    pub function: &'static str,
    /// `module_path!()` where the function is defined.
    pub module_path: &'static str,
    /// A hash of the function's tokens (hex).
    pub code_hash: &'static str,
    /// Whether the function is an `async fn`.
    pub is_async: bool,
    /// The pipeline's parameters, in order.
    pub params: &'static [ParamDescriptor],
    /// The options from the attribute.
    pub options: PipelineOptions,
}

/// The item `inventory` collects for each component.
pub struct ComponentRegistration(pub &'static ComponentDescriptor);
/// The item `inventory` collects for each pipeline.
pub struct PipelineRegistration(pub &'static PipelineDescriptor);

inventory::collect!(ComponentRegistration);
inventory::collect!(PipelineRegistration);
