//! What a component call does: inside a pipeline body it adds a node and returns handles at
//! once; outside any pipeline it runs the component now, as a plain function would.

use super::context::current;
use crate::error::HandleError;
use crate::value::handle::NodeRef;
use crate::value::outputs::Outputs;
use crate::value::{Invoke, Job};
use pipeline_core::{ComponentDescriptor, StepError};
use smol_str::SmolStr;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Called by the code `#[component]` generates. `deps` lists the nodes the arguments come
/// from; `name` is the node's name if it should not be derived from the component's; `job` runs
/// the component (giving `Some(outputs)`) or exports its arguments (`None`).
#[doc(hidden)]
pub fn call_component<O, F>(
    descriptor: &'static ComponentDescriptor,
    deps: &[NodeRef],
    name: Option<&str>,
    mut job: F,
) -> O::Handles
where
    O: Outputs,
    F: for<'a> FnMut(Invoke<'a>) -> Result<Option<O>, StepError> + Send + 'static,
{
    if let Some(run) = current() {
        return run.add_node(descriptor, deps, name, move |node, name| {
            let (handles, slots, erased) = O::create(node, name);
            let job: Job = Box::new(move |how| {
                if let Some(outputs) = job(how)? {
                    outputs.fill(&slots);
                }
                Ok(())
            });
            (handles, job, erased)
        });
    }
    let node = NodeRef { run: 0, index: 0 };
    let name = SmolStr::new(name.unwrap_or(descriptor.name));
    let outcome = if descriptor.is_async && tokio::runtime::Handle::try_current().is_ok() {
        // Blocking on the component's future here would stall the caller's runtime.
        std::thread::scope(|s| s.spawn(|| run_caught(&mut job)).join())
            .unwrap_or_else(|payload| Err(StepError::from_panic(&*payload)))
    } else {
        run_caught(&mut job)
    };
    match outcome {
        Ok(values) => values.ready(node, &name),
        Err(error) => O::failed(
            HandleError::Failed {
                step: name.to_string(),
                error,
            },
            node,
            &name,
        ),
    }
}

fn run_caught<O>(job: &mut impl for<'a> FnMut(Invoke<'a>) -> Result<Option<O>, StepError>) -> Result<O, StepError> {
    catch_unwind(AssertUnwindSafe(|| job(Invoke::Run { last: true })))
        .unwrap_or_else(|payload| Err(StepError::from_panic(&*payload)))?
        .ok_or_else(|| StepError::new(pipeline_core::ErrorKind::Setup, "the component produced no outputs"))
}

/// Runs an async component's future to completion on this thread.
#[doc(hidden)]
pub fn block_on<F: Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread tokio runtime can always be built");
    }
    RUNTIME.with(|rt| rt.block_on(future))
}

/// Turns a component's `Err` into a step error, keeping the chain of causes.
#[doc(hidden)]
pub fn step_error<E: Into<anyhow::Error>>(error: E) -> StepError {
    let error: anyhow::Error = error.into();
    let mut chain = error.chain().map(ToString::to_string);
    let message = chain.next().unwrap_or_default();
    StepError {
        kind: pipeline_core::ErrorKind::Error,
        message,
        causes: chain.collect(),
    }
}

/// How a pipeline parameter is recorded: its JSON form.
pub fn param_repr<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("<not representable as JSON: {e}>"))
}
