//! Checks on the annotated function shared by both macros: a free, non-generic function whose
//! parameters are plain names with concrete, owned types.

use crate::args::Errors;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Pat, ReturnType, Type};

/// A parameter: its name (a made-up one when the pattern is not a plain name) and type.
pub struct Param {
    pub ident: Ident,
    pub mutable: bool,
    pub ty: Type,
    /// The type is owned and concrete (not a reference, not `impl Trait`).
    pub owned: bool,
}

/// The parameters, each mistake in the signature pushed to `errors`. A receiver (`self`) is
/// left out: such a function cannot be a component or a pipeline anyway.
pub fn params(item: &ItemFn, what: &str, errors: &mut Errors) -> Vec<Param> {
    let sig = &item.sig;
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            format!("a {what} cannot be generic: it is registered and run by name, so its types must be concrete"),
        ));
    }
    if let Some(wc) = &sig.generics.where_clause {
        errors.push(syn::Error::new_spanned(
            wc,
            format!("a {what} cannot have a `where` clause"),
        ));
    }
    if let Some(v) = &sig.variadic {
        errors.push(syn::Error::new(v.span(), format!("a {what} cannot be variadic")));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new(abi.span(), format!("a {what} must use the Rust ABI")));
    }
    let mut out = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        let typed = match input {
            FnArg::Receiver(r) => {
                errors.push(syn::Error::new_spanned(
                    r,
                    format!("a {what} cannot take `self`: it must be a free function, called by name"),
                ));
                continue;
            }
            FnArg::Typed(t) => t,
        };
        let (ident, mutable) = match &*typed.pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => (p.ident.clone(), p.mutability.is_some()),
            other => {
                errors.push(syn::Error::new_spanned(
                    other,
                    format!("a {what} parameter must be a plain name (`x: T`); destructure inside the body"),
                ));
                (quote::format_ident!("__arg{}", i), false)
            }
        };
        let owned = errors.ok(check_owned(&typed.ty, what)).is_some();
        out.push(Param {
            ident,
            mutable,
            ty: (*typed.ty).clone(),
            owned,
        });
    }
    out
}

/// Whether the function takes `self`: then it sits in an `impl` block, where only the
/// function itself may be emitted.
pub fn has_receiver(item: &ItemFn) -> bool {
    item.sig.receiver().is_some() || item.sig.variadic.is_some()
}

fn check_owned(ty: &Type, what: &str) -> syn::Result<()> {
    match ty {
        Type::Reference(r) => Err(syn::Error::new_spanned(
            r,
            format!(
                "a {what} parameter cannot be a reference: steps own their inputs (take the value, e.g. `String` for `&str`)"
            ),
        )),
        Type::ImplTrait(t) => Err(syn::Error::new_spanned(
            t,
            format!("a {what} parameter needs a concrete type, not `impl Trait`"),
        )),
        Type::Paren(p) => check_owned(&p.elem, what),
        _ => Ok(()),
    }
}

/// The written return type, `()` when there is none.
pub fn return_type(item: &ItemFn) -> Type {
    match &item.sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    }
}

/// `T` of a return type written `Result<T, E>` or `some::Result<T>`.
pub fn result_ok_type(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    }
}
