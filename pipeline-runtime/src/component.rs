//! The protocol `#[component]` generates code for: the [`Component`] trait and the two
//! functions the runtime calls through it, [`call`] and [`entry`].
//!
//! `#[component] fn mean(rows: Vec<f64>) -> f64` becomes a unit type `mean` implementing
//! [`Component`] (its parameters and outputs as tuples, its descriptor, and `RUN`, which calls
//! the body), and a function `mean(rows: impl IntoInput<Vec<f64>>) -> Handle<f64>` whose body
//! is one call of [`call`]. Everything else (adding the node, resolving, exporting and hashing
//! the arguments, decoding and encoding in a worker) is written once here, generic over the
//! parameter and output tuples, so components with the same types share one copy of it.
//!
//! Nothing here is specific to the macro: a hand-written `impl Component` works the same way.

use crate::engine::call::call_component;
use crate::value::Invoke;
use crate::value::dynamic::{self, DynArg, DynCall, DynParam};
use crate::value::handle::{ExportSink, Input, NodeRef};
use pipeline_core::descriptor::read_input;
use pipeline_core::{ComponentDescriptor, ComponentValue, ErrorKind, StepError, StepIo};

pub use crate::value::outputs::Outputs;
pub use pipeline_core::ParamDescriptor;

/// A pipeline component: a function whose calls inside a pipeline become steps.
///
/// `#[component]` implements it on the unit type named after the function.
pub trait Component: 'static {
    /// The parameters, as a tuple: `(A, B)` for `fn f(a: A, b: B)`, `()` for none.
    type Params: Params;
    /// The outputs, as a tuple: `(T,)` for a function returning `T` (or `Result<T, E>`),
    /// `(A, B)` for one returning `(A, B)` with `return_values = ["a", "b"]`.
    type Outputs: Outputs;
    /// What the framework knows about the component: name, options, entry point.
    const DESCRIPTOR: &'static ComponentDescriptor;
    /// Runs the body on its arguments; an `Err` fails the step. A fn pointer rather than a
    /// method, so that the runtime's code around it exists once per parameter and output types,
    /// not once per component.
    const RUN: Body<Self>;
}

/// The type of [`Component::RUN`].
pub type Body<C> = fn(<C as Component>::Params) -> Result<<C as Component>::Outputs, StepError>;

/// Calls component `C` on its arguments: inside a pipeline body, adds a node and returns
/// handles to its outputs at once; outside any pipeline, runs it now and returns ready
/// handles.
pub fn call<C: Component>(inputs: <C::Params as Params>::Inputs) -> <C::Outputs as Outputs>::Handles {
    call_with::<C::Params, C::Outputs>(C::DESCRIPTOR, C::RUN, inputs, None)
}

/// The type-erased entry point of component `C` (what [`ComponentDescriptor::entry`] holds):
/// decodes the arguments, runs the body and encodes the outputs.
pub fn entry<C: Component>(io: &mut dyn StepIo) -> Result<(), StepError> {
    entry_with::<C::Params, C::Outputs>(C::DESCRIPTOR, C::RUN, io)
}

/// Both entry points of component `C` (what [`ComponentDescriptor::entry`] holds).
pub const fn entries<C: Component>() -> pipeline_core::Entries {
    pipeline_core::Entries {
        io: entry::<C>,
        dynamic: dynamic::<C>,
    }
}

/// The dynamic entry of component `C` (the `dynamic` half of [`ComponentDescriptor::entry`]):
/// answers the runtime's `DynCall` frame (a step of a pipeline built at run time). A frame of
/// another type is left as it is.
pub fn dynamic<C: Component>(frame: &mut dyn std::any::Any) {
    dynamic_with::<C::Params, C::Outputs>(C::DESCRIPTOR, C::RUN, frame)
}

/// [`dynamic`] for a component's descriptor and body: written once per parameter and output
/// types, not once per component (a crate of many components compiles it once).
fn dynamic_with<P: Params, O: Outputs>(
    own: &'static ComponentDescriptor,
    run: fn(P) -> Result<O, StepError>,
    frame: &mut dyn std::any::Any,
) {
    let Some(frame) = frame.downcast_mut::<DynCall>() else {
        return;
    };
    match frame {
        DynCall::Describe(out) => *out = Some((P::describe(), O::describe())),
        DynCall::Call {
            descriptor,
            name,
            args,
            out,
        } => {
            let args = std::mem::take(args);
            let descriptor = match *descriptor {
                Some(d) if d.name == own.name && d.code_hash == own.code_hash => d,
                Some(d) => {
                    *out = Some(Err(format!(
                        "the options given are those of component `{}`, not `{}`",
                        d.name, own.name
                    )));
                    return;
                }
                None => own,
            };
            *out = Some(
                P::from_dyn(args, descriptor)
                    .map(|inputs| O::into_dyn(call_with::<P, O>(descriptor, run, inputs, name.as_deref()))),
            );
        }
    }
}

/// Calls component `C` with `descriptor` in place of its own (the same component with other
/// options: a per-call option), its node called `name` if given.
pub(crate) fn call_with_descriptor<C: Component>(
    descriptor: &'static ComponentDescriptor,
    inputs: <C::Params as Params>::Inputs,
    name: Option<&str>,
) -> <C::Outputs as Outputs>::Handles {
    call_with::<C::Params, C::Outputs>(descriptor, C::RUN, inputs, name)
}

fn call_with<P: Params, O: Outputs>(
    descriptor: &'static ComponentDescriptor,
    run: fn(P) -> Result<O, StepError>,
    mut inputs: P::Inputs,
    name: Option<&str>,
) -> O::Handles {
    // One buffer per thread, not a list per call (a nested call meanwhile makes its own).
    thread_local! {
        static DEPS: std::cell::Cell<Vec<NodeRef>> = const { std::cell::Cell::new(Vec::new()) };
    }
    let mut deps = DEPS.take();
    deps.clear();
    P::dependencies(&inputs, &mut deps);
    let handles = call_component::<O, _>(descriptor, &deps, name, move |how| match how {
        Invoke::Run { last } => run(P::resolve(&mut inputs, last)?).map(Some),
        Invoke::Export(sink) => P::export(&mut inputs, sink).map(|()| None),
        Invoke::Fingerprint(key) => {
            P::fingerprint(&mut inputs, descriptor, descriptor.options.cache_ignore, key).map(|()| None)
        }
        Invoke::Identify(key) => P::fingerprint(&mut inputs, descriptor, &[], key).map(|()| None),
    });
    // A large fan-in's list is not kept for the life of the thread.
    if deps.capacity() <= 1024 {
        DEPS.set(deps);
    }
    handles
}

fn entry_with<P: Params, O: Outputs>(
    descriptor: &'static ComponentDescriptor,
    run: fn(P) -> Result<O, StepError>,
    io: &mut dyn StepIo,
) -> Result<(), StepError> {
    let count = io.input_count();
    if count != P::COUNT {
        return Err(StepError::new(
            ErrorKind::Codec,
            format!("component `{}` takes {} inputs, got {count}", descriptor.name, P::COUNT),
        ));
    }
    run(P::read(io, descriptor)?)?.write(io)
}

/// The parameters of a component as a tuple of [`ComponentValue`]s. Implemented for tuples of
/// up to 12 elements; its methods are the runtime's.
pub trait Params: Sized + Send + 'static {
    /// The arguments of one call, each a value, a handle or a list of handles.
    type Inputs: Send + 'static;
    /// The number of parameters.
    const COUNT: usize;

    /// Adds the nodes the arguments come from.
    #[doc(hidden)]
    fn dependencies(inputs: &Self::Inputs, deps: &mut Vec<NodeRef>);
    /// The values, once they exist; `last` says no further attempt will need them.
    #[doc(hidden)]
    fn resolve(inputs: &mut Self::Inputs, last: bool) -> Result<Self, StepError>;
    /// Writes the arguments as artifacts for a worker, in order.
    #[doc(hidden)]
    fn export(inputs: &mut Self::Inputs, sink: &mut ExportSink) -> Result<(), StepError>;
    /// Feeds every argument whose name is not in `ignore` into a key.
    #[doc(hidden)]
    fn fingerprint(
        inputs: &mut Self::Inputs,
        descriptor: &ComponentDescriptor,
        ignore: &[&str],
        key: &mut blake3::Hasher,
    ) -> Result<(), StepError>;
    /// Decodes the arguments in a worker; errors name the parameter.
    #[doc(hidden)]
    fn read(io: &mut dyn StepIo, descriptor: &ComponentDescriptor) -> Result<Self, StepError>;
    /// The arguments of a dynamic call as typed inputs; errors name the parameter.
    #[doc(hidden)]
    fn from_dyn(args: Vec<DynArg>, descriptor: &ComponentDescriptor) -> Result<Self::Inputs, String>;
    /// The parameters' types, for checks before a dynamic call.
    #[doc(hidden)]
    fn describe() -> Vec<DynParam>;
}

fn param_name(descriptor: &ComponentDescriptor, index: usize) -> &'static str {
    descriptor.params.get(index).map_or("?", |p| p.name)
}

macro_rules! tuple_params {
    ($count:literal $(, $t:ident $i:tt)*) => {
        #[allow(unused_variables, unused_mut)]
        impl<$($t: ComponentValue),*> Params for ($($t,)*) {
            type Inputs = ($(Input<$t>,)*);
            const COUNT: usize = $count;

            fn dependencies(inputs: &Self::Inputs, deps: &mut Vec<NodeRef>) {
                $(inputs.$i.dependencies(deps);)*
            }

            fn resolve(inputs: &mut Self::Inputs, last: bool) -> Result<Self, StepError> {
                Ok(($(inputs.$i.resolve(last)?,)*))
            }

            fn export(inputs: &mut Self::Inputs, sink: &mut ExportSink) -> Result<(), StepError> {
                $(inputs.$i.export(sink)?;)*
                Ok(())
            }

            fn fingerprint(
                inputs: &mut Self::Inputs,
                descriptor: &ComponentDescriptor,
                ignore: &[&str],
                key: &mut blake3::Hasher,
            ) -> Result<(), StepError> {
                $(
                    let name = param_name(descriptor, $i);
                    if !ignore.contains(&name) {
                        inputs.$i.fingerprint(name, key)?;
                    }
                )*
                Ok(())
            }

            fn read(io: &mut dyn StepIo, descriptor: &ComponentDescriptor) -> Result<Self, StepError> {
                Ok(($(read_input::<$t>(io, $i, param_name(descriptor, $i))?,)*))
            }

            fn from_dyn(args: Vec<DynArg>, descriptor: &ComponentDescriptor) -> Result<Self::Inputs, String> {
                if args.len() != $count {
                    return Err(format!("{} arguments given, {} expected", args.len(), $count));
                }
                let mut args = args.into_iter();
                Ok(($(
                    dynamic::input::<$t>(args.next().expect("counted above"))
                        .map_err(|e| format!("argument `{}`: {e}", param_name(descriptor, $i)))?,
                )*))
            }

            fn describe() -> Vec<DynParam> {
                vec![$(DynParam {
                    type_name: std::any::type_name::<$t>(),
                    check_json: dynamic::check_json::<$t>,
                    read_json: dynamic::read_json::<$t>,
                }),*]
            }
        }
    };
}

tuple_params!(0);
tuple_params!(1, A 0);
tuple_params!(2, A 0, B 1);
tuple_params!(3, A 0, B 1, C 2);
tuple_params!(4, A 0, B 1, C 2, D 3);
tuple_params!(5, A 0, B 1, C 2, D 3, E 4);
tuple_params!(6, A 0, B 1, C 2, D 3, E 4, F 5);
tuple_params!(7, A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_params!(8, A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
tuple_params!(9, A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
tuple_params!(10, A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
tuple_params!(11, A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
tuple_params!(12, A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);

/// The outputs of a body returning one value `T`.
pub fn output<T>(value: T) -> Result<(T,), StepError> {
    Ok((value,))
}

/// The outputs of a body returning a tuple split by `return_values`.
pub fn outputs<T>(values: T) -> Result<T, StepError> {
    Ok(values)
}

/// The outputs of a body returning `Result<T, E>`: an `Err` (with its chain of causes) fails
/// the step.
pub fn output_or_error<T, E: Into<anyhow::Error>>(result: Result<T, E>) -> Result<(T,), StepError> {
    result.map(|value| (value,)).map_err(crate::engine::call::step_error)
}

/// The outputs of a body returning `Result<(A, B, ...), E>` split by `return_values`.
pub fn outputs_or_error<T, E: Into<anyhow::Error>>(result: Result<T, E>) -> Result<T, StepError> {
    result.map_err(crate::engine::call::step_error)
}

/// Runs an `async` component's future to completion on this thread (its `run` is sync).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    crate::engine::call::block_on(future)
}
