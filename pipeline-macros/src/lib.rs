//! The `#[component]` and `#[pipeline]` attribute macros of the pipeline framework.
//!
//! They parse the attribute and the function with `syn`, check them (every mistake is a
//! compile error spanned at the mistake), and generate the registration and the call wrappers
//! with `quote`. Use them through `pipeline-runtime`, which re-exports them.

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
    component::expand(attr.into(), item)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Makes a function a pipeline whose body calls components. See the `pipeline-runtime` docs.
#[proc_macro_attribute]
pub fn pipeline(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(item as ItemFn);
    pipeline::expand(attr.into(), item)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
