//! What the macros generate for each component and pipeline: a `static` descriptor.

use crate::codec::Codec;
use crate::error::{ErrorKind, StepError};
use crate::options::{ComponentOptions, PipelineOptions};
use std::io::{Read, Write};

/// A parameter or an output: its name and its Rust type as written in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamDescriptor {
    /// The parameter's name, or the output's name from `return_values`.
    pub name: &'static str,
    /// The type as written (`Vec<f64>`).
    pub type_name: &'static str,
}

impl ParamDescriptor {
    /// A parameter or output called `name`, of the type written `type_name`.
    pub const fn new(name: &'static str, type_name: &'static str) -> Self {
        Self { name, type_name }
    }
}

/// Where a component's entry point reads its inputs and writes its outputs: artifact files in a
/// worker process, byte buffers in [`call_entry`].
pub trait StepIo {
    /// The codec values are encoded with.
    fn codec(&self) -> Codec;
    /// How many inputs there are.
    fn input_count(&self) -> usize;
    /// Hands a reader over input `index` (whose type is `type_name`) to `decode`, with the
    /// most bytes the reader can give (decoders bound their allocations by it).
    fn read_input(
        &mut self,
        index: usize,
        type_name: &'static str,
        decode: &mut dyn FnMut(&mut dyn Read, u64) -> Result<(), StepError>,
    ) -> Result<(), StepError>;
    /// Hands a writer for output `index` (of type `type_name`) to `encode`.
    fn write_output(
        &mut self,
        index: usize,
        type_name: &'static str,
        encode: &mut dyn FnMut(&mut dyn Write) -> Result<(), StepError>,
    ) -> Result<(), StepError>;
}

/// The type-erased entry point of a component: decodes its inputs from a [`StepIo`], runs the
/// function, encodes its outputs. Any process built from the same binary can run a component
/// by name through it.
pub type EntryPoint = fn(&mut dyn StepIo) -> Result<(), StepError>;

/// The component called with arguments known only at run time (a pipeline assembled from a
/// spec). The model does not know the runtime's handles: the argument is the runtime's call
/// frame, which the runtime's implementation downcasts.
pub type DynamicEntry = fn(&mut dyn std::any::Any);

/// How a component is called by name: on encoded values, and with run-time arguments.
#[derive(Debug, Clone, Copy)]
pub struct Entries {
    /// Bytes in, bytes out: what a worker process runs.
    pub io: EntryPoint,
    /// Run-time arguments in, handles out: what a pipeline assembled at run time calls.
    pub dynamic: DynamicEntry,
}

/// Runs a component's entry point on encoded values: one payload per parameter in, one
/// payload per output out (bytes in, bytes out).
pub fn call_entry(entry: EntryPoint, codec: Codec, inputs: &[&[u8]]) -> Result<Vec<Vec<u8>>, StepError> {
    struct Memory<'a> {
        codec: Codec,
        inputs: &'a [&'a [u8]],
        outputs: Vec<Vec<u8>>,
    }
    impl StepIo for Memory<'_> {
        fn codec(&self) -> Codec {
            self.codec
        }
        fn input_count(&self) -> usize {
            self.inputs.len()
        }
        fn read_input(
            &mut self,
            index: usize,
            _type_name: &'static str,
            decode: &mut dyn FnMut(&mut dyn Read, u64) -> Result<(), StepError>,
        ) -> Result<(), StepError> {
            let mut bytes = *self
                .inputs
                .get(index)
                .ok_or_else(|| StepError::new(ErrorKind::Codec, format!("input {index} is missing")))?;
            let length = bytes.len() as u64;
            decode(&mut bytes, length)?;
            if !bytes.is_empty() {
                return Err(StepError::new(
                    ErrorKind::Codec,
                    format!("{} trailing bytes in input {index}", bytes.len()),
                ));
            }
            Ok(())
        }
        fn write_output(
            &mut self,
            index: usize,
            _type_name: &'static str,
            encode: &mut dyn FnMut(&mut dyn Write) -> Result<(), StepError>,
        ) -> Result<(), StepError> {
            debug_assert_eq!(index, self.outputs.len(), "outputs are written in order");
            let mut out = Vec::new();
            encode(&mut out)?;
            self.outputs.push(out);
            Ok(())
        }
    }
    let mut io = Memory {
        codec,
        inputs,
        outputs: Vec::new(),
    };
    entry(&mut io)?;
    Ok(io.outputs)
}

/// Decodes input `index` as a `T`; errors name the parameter.
pub fn read_input<T: serde::de::DeserializeOwned>(
    io: &mut dyn StepIo,
    index: usize,
    param: &str,
) -> Result<T, StepError> {
    let codec = io.codec();
    let mut value = None;
    io.read_input(index, std::any::type_name::<T>(), &mut |r, length| {
        value = Some(crate::codec::decode_from::<T>(codec, r, length)?);
        Ok(())
    })
    .map_err(|mut e| {
        e.message = format!("input `{param}`: {}", e.message);
        e
    })?;
    value.ok_or_else(|| StepError::new(ErrorKind::Codec, format!("input `{param}` was not read")))
}

/// Encodes `value` as output `index`.
pub fn write_output<T: serde::Serialize>(io: &mut dyn StepIo, index: usize, value: &T) -> Result<(), StepError> {
    let codec = io.codec();
    io.write_output(index, std::any::type_name::<T>(), &mut |w| {
        crate::codec::encode_into(codec, value, w)
    })
}

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
    /// The type-erased entry points.
    pub entry: Entries,
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
    /// Runs the pipeline from its parameters as a JSON object (the controller of a run
    /// enqueued on a cluster); `Ok(true)` when the run was successful.
    pub controller: ControllerEntry,
}

/// See [`PipelineDescriptor::controller`].
pub type ControllerEntry = fn(&str) -> Result<bool, String>;

impl PipelineDescriptor {
    /// `module::path::function`, which tells pipelines of one name apart.
    pub fn qualified_function(&self) -> String {
        format!("{}::{}", self.module_path, self.function)
    }
}

/// The item `inventory` collects for each component.
pub struct ComponentRegistration(pub &'static ComponentDescriptor);
/// The item `inventory` collects for each pipeline.
pub struct PipelineRegistration(pub &'static PipelineDescriptor);

inventory::collect!(ComponentRegistration);
inventory::collect!(PipelineRegistration);
