//! Component calls whose arguments are known only at run time (a pipeline assembled from a
//! spec): handles with their type erased, arguments as JSON literals or erased handles, and
//! the call frame a component's [`DynamicEntry`](pipeline_core::DynamicEntry) answers.
//!
//! Types are still checked: an erased handle fits a parameter only if it erases a `Handle<T>`
//! of the parameter's very type (a downcast), and a literal only if it decodes as that type.

use super::handle::{Handle, Input, IntoInput};
use crate::error::HandleError;
use pipeline_core::ComponentValue;
use std::any::Any;

/// Makes `Input<Vec<T>>` (boxed) of erased `Handle<T>`s.
type Gather = fn(Vec<DynHandle>) -> Result<Box<dyn Any>, String>;

/// One output of a step, its type erased: a `Handle<T>` with `T`'s name.
pub struct DynHandle {
    handle: Box<dyn Any + Send + Sync>,
    type_name: &'static str,
    step: String,
    get_json: fn(Box<dyn Any + Send + Sync>) -> Result<serde_json::Value, HandleError>,
    gather: Gather,
    clone_handle: fn(&(dyn Any + Send + Sync)) -> Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for DynHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynHandle")
            .field("step", &self.step)
            .field("type", &self.type_name)
            .finish()
    }
}

impl DynHandle {
    /// Erases `handle`'s type.
    pub fn new<T: ComponentValue>(handle: Handle<T>) -> Self {
        Self {
            step: handle.step().to_string(),
            handle: Box::new(handle),
            type_name: std::any::type_name::<T>(),
            get_json: |h| {
                let handle = h.downcast::<Handle<T>>().expect("erased from a Handle<T>");
                let value = handle.get()?;
                serde_json::to_value(&value).map_err(|e| HandleError::Unreadable {
                    step: String::new(),
                    error: pipeline_core::StepError::new(
                        pipeline_core::ErrorKind::Codec,
                        format!("the value is not representable as JSON: {e}"),
                    ),
                })
            },
            gather: |handles| {
                let typed = handles
                    .into_iter()
                    .map(|h| h.downcast::<T>())
                    .collect::<Result<Vec<Handle<T>>, String>>()?;
                Ok(Box::new(IntoInput::<Vec<T>>::into_input(typed)))
            },
            clone_handle: |h| Box::new(h.downcast_ref::<Handle<T>>().expect("erased from a Handle<T>").clone()),
        }
    }

    /// The Rust type of the value (`std::any::type_name`).
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The name of the node that produces the value.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// The typed handle again, if it is a `Handle<T>`.
    pub fn downcast<T: ComponentValue>(self) -> Result<Handle<T>, String> {
        let found = self.type_name;
        self.handle
            .downcast::<Handle<T>>()
            .map(|h| *h)
            .map_err(|_| format!("a `{found}` cannot be passed as a `{}`", std::any::type_name::<T>()))
    }

    /// Waits for the step and gives its value as JSON.
    pub fn get_json(self) -> Result<serde_json::Value, HandleError> {
        let step = self.step;
        (self.get_json)(self.handle).map_err(|e| match e {
            HandleError::Unreadable { error, .. } => HandleError::Unreadable { step, error },
            other => other,
        })
    }
}

impl Clone for DynHandle {
    fn clone(&self) -> Self {
        Self {
            handle: (self.clone_handle)(&*self.handle),
            step: self.step.clone(),
            ..*self
        }
    }
}

/// One argument of a dynamic call.
pub enum DynArg {
    /// A plain value, decoded into the parameter's type.
    Json(serde_json::Value),
    /// An output of an earlier step (an edge).
    Handle(DynHandle),
    /// Outputs of earlier steps gathered into one `Vec` (a fan-in).
    Gather(Vec<DynHandle>),
}

/// What the runtime knows of a parameter's type without a value.
#[derive(Clone, Copy)]
pub struct DynParam {
    /// `std::any::type_name` of the parameter's type.
    pub type_name: &'static str,
    /// Whether a JSON literal decodes as the type (the error says why not).
    pub check_json: fn(&serde_json::Value) -> Result<(), String>,
    /// Reads input `index` of a [`StepIo`](pipeline_core::descriptor::StepIo) (a recorded
    /// step's inputs) as the type, and gives it as JSON.
    pub read_json: fn(&mut dyn pipeline_core::descriptor::StepIo, usize) -> Result<serde_json::Value, String>,
}

/// What the runtime knows of an output's type without a value.
#[derive(Clone, Copy)]
pub struct DynOutput {
    /// `std::any::type_name` of the output's type `T`.
    pub type_name: &'static str,
    /// `std::any::type_name` of `Vec<T>`, the parameter type a fan-in of it fits.
    pub list_type_name: &'static str,
}

/// The call frame a component's dynamic entry answers.
pub enum DynCall {
    /// Asks for the parameter and output types.
    Describe(Option<(Vec<DynParam>, Vec<DynOutput>)>),
    /// Calls the component (in a run: adds a node called `name`).
    Call {
        /// The component with the options of this call (the same component: its entry and
        /// code are `C`'s), or `None` for the component's own.
        descriptor: Option<&'static pipeline_core::ComponentDescriptor>,
        /// The node's name, if it should not be the component's.
        name: Option<String>,
        /// One argument per parameter, in order.
        args: Vec<DynArg>,
        /// The outputs, or why the arguments do not fit.
        out: Option<Result<Vec<DynHandle>, String>>,
    },
}

/// The parameter type of a literal check.
pub(crate) fn check_json<T: ComponentValue>(value: &serde_json::Value) -> Result<(), String> {
    T::deserialize(value)
        .map(drop)
        .map_err(|e| format!("`{value}` is not a `{}`: {e}", std::any::type_name::<T>()))
}

/// The parameter type of a [`DynParam::read_json`].
pub(crate) fn read_json<T: ComponentValue>(
    io: &mut dyn pipeline_core::descriptor::StepIo,
    index: usize,
) -> Result<serde_json::Value, String> {
    let value: T = pipeline_core::descriptor::read_input(io, index, "").map_err(|e| e.message)?;
    serde_json::to_value(&value)
        .map_err(|e| format!("a `{}` is not representable as JSON: {e}", std::any::type_name::<T>()))
}

/// One argument as the parameter's typed input.
pub(crate) fn input<T: ComponentValue>(arg: DynArg) -> Result<Input<T>, String> {
    match arg {
        DynArg::Json(value) => T::deserialize(&value)
            .map(IntoInput::into_input)
            .map_err(|e| format!("`{value}` is not a `{}`: {e}", std::any::type_name::<T>())),
        DynArg::Handle(handle) => handle.downcast::<T>().map(IntoInput::into_input),
        DynArg::Gather(handles) => {
            let Some(first) = handles.first() else {
                return Err("an empty list of outputs cannot be gathered".into());
            };
            let (gather, element) = (first.gather, first.type_name);
            gather(handles)?.downcast::<Input<T>>().map(|i| *i).map_err(|_| {
                format!(
                    "a list of `{element}` cannot be passed as a `{}`",
                    std::any::type_name::<T>()
                )
            })
        }
    }
}
