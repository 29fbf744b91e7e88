#![warn(missing_docs)]
//! The `#[component]` and `#[pipeline]` attribute macros of the pipeline framework.
//!
//! Each runs in three phases, as serde_derive does: parse the attribute and the function into
//! a model, check it (every mistake a compile error spanned at the mistake, all of them
//! reported at once), and generate thin code over the runtime's public protocol
//! (`pipeline_runtime::Component`). With mistakes, they emit the errors together with the
//! user's function and the items its uses expect (as tokio-macros does), so that uses of a
//! component or pipeline with a mistake report nothing more. Use them through
//! `pipeline-runtime`, which re-exports them.

mod args;
mod component;
mod pipeline;
mod signature;

use proc_macro::TokenStream;
use syn::ItemFn;

/// Makes a function a pipeline component (a step). See the `pipeline-runtime` docs.
#[proc_macro_attribute]
pub fn component(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(item as ItemFn);
    component::expand(attr.into(), item).into()
}

/// Makes a function a pipeline whose body calls components. See the `pipeline-runtime` docs.
#[proc_macro_attribute]
pub fn pipeline(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(item as ItemFn);
    pipeline::expand(attr.into(), item).into()
}
