//! Reading attribute arguments (`key = value`, `key(...)`, bare `key`) into typed values,
//! each mistake a `syn::Error` spanned at the offending tokens.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprArray, ExprLit, ExprTuple, Lit, LitStr, Meta, Token};

/// Every mistake found so far, reported together (as serde_derive does): checking goes on
/// after a mistake so that one build shows them all.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// The value of `result`, or `None` with its error kept.
    pub fn ok<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    pub fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// One `key ...` entry of an attribute.
pub struct Arg {
    pub key: syn::Ident,
    pub meta: Meta,
}

impl Arg {
    pub fn name(&self) -> String {
        self.key.to_string()
    }

    /// The expression after `=`; bare `key` and `key(...)` are errors.
    pub fn value(&self) -> syn::Result<&Expr> {
        match &self.meta {
            Meta::NameValue(nv) => Ok(&nv.value),
            _ => Err(syn::Error::new(
                self.meta.span(),
                format!("expected `{} = ...`", self.key),
            )),
        }
    }

    /// The entries of `key(a = ..., b = ...)`.
    pub fn nested(&self) -> syn::Result<Vec<Arg>> {
        match &self.meta {
            Meta::List(list) => {
                let mut errors = Errors::default();
                let args = parse_args(list.tokens.clone(), &mut errors);
                errors.finish().map(|()| args)
            }
            _ => Err(syn::Error::new(
                self.meta.span(),
                format!("expected `{}(...)`", self.key),
            )),
        }
    }

    pub fn bool(&self) -> syn::Result<bool> {
        if let Meta::Path(_) = self.meta {
            return Ok(true); // a bare flag: `cache`
        }
        match self.value()? {
            Expr::Lit(ExprLit { lit: Lit::Bool(b), .. }) => Ok(b.value),
            other => Err(syn::Error::new(
                other.span(),
                format!("`{}` takes `true` or `false`", self.key),
            )),
        }
    }

    pub fn str(&self) -> syn::Result<LitStr> {
        lit_str(self.value()?, &self.name())
    }

    /// `"a"` or `["a", "b"]`.
    pub fn str_list(&self) -> syn::Result<Vec<LitStr>> {
        match self.value()? {
            Expr::Array(ExprArray { elems, .. }) => elems.iter().map(|e| lit_str(e, &self.name())).collect(),
            Expr::Reference(r) => match &*r.expr {
                Expr::Array(ExprArray { elems, .. }) => elems.iter().map(|e| lit_str(e, &self.name())).collect(),
                other => Err(list_error(other, &self.name())),
            },
            e @ Expr::Lit(_) => Ok(vec![lit_str(e, &self.name())?]),
            other => Err(list_error(other, &self.name())),
        }
    }

    pub fn u32(&self) -> syn::Result<u32> {
        match self.value()? {
            Expr::Lit(ExprLit { lit: Lit::Int(i), .. }) => i.base10_parse::<u32>(),
            other => Err(syn::Error::new(
                other.span(),
                format!("`{}` takes a whole number", self.key),
            )),
        }
    }

    pub fn positive_f64(&self) -> syn::Result<f64> {
        let value = self.value()?;
        let n = match value {
            Expr::Lit(ExprLit { lit: Lit::Int(i), .. }) => i.base10_parse::<f64>()?,
            Expr::Lit(ExprLit { lit: Lit::Float(f), .. }) => f.base10_parse::<f64>()?,
            other => return Err(syn::Error::new(other.span(), format!("`{}` takes a number", self.key))),
        };
        if !(n.is_finite() && n >= 0.0) {
            return Err(syn::Error::new(
                value.span(),
                format!("`{}` must be zero or more", self.key),
            ));
        }
        Ok(n)
    }

    /// `"90s"`, `"5m"`, `"1h 30m"` (humantime), or a number of seconds.
    pub fn duration(&self) -> syn::Result<std::time::Duration> {
        let value = self.value()?;
        let d = match value {
            Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => humantime::parse_duration(&s.value()).map_err(|e| {
                syn::Error::new(
                    s.span(),
                    format!("`{}`: {e}; write it like \"90s\", \"5m\" or \"1h 30m\"", self.key),
                )
            })?,
            Expr::Lit(ExprLit {
                lit: Lit::Int(_) | Lit::Float(_),
                ..
            }) => std::time::Duration::from_secs_f64(self.positive_f64()?),
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    format!("`{}` takes a duration such as \"90s\" or a number of seconds", self.key),
                ));
            }
        };
        if d.is_zero() {
            return Err(syn::Error::new(
                value.span(),
                format!("`{}` must be longer than zero", self.key),
            ));
        }
        Ok(d)
    }

    /// A path to a function (`my_callback`, `crate::hooks::on_start`).
    pub fn path(&self) -> syn::Result<syn::Path> {
        match self.value()? {
            Expr::Path(p) if p.qself.is_none() => Ok(p.path.clone()),
            other => Err(syn::Error::new(
                other.span(),
                format!("`{}` takes the path of a function", self.key),
            )),
        }
    }

    /// `["name", ("name", "target")]`: pairs, a lone name standing for `(name, name)`.
    pub fn pairs(&self) -> syn::Result<Vec<(LitStr, LitStr)>> {
        let Expr::Array(ExprArray { elems, .. }) = self.value()? else {
            return Err(syn::Error::new(
                self.meta.span(),
                format!("`{}` takes a list", self.key),
            ));
        };
        elems
            .iter()
            .map(|e| match e {
                Expr::Tuple(ExprTuple { elems, .. }) if elems.len() == 2 => {
                    Ok((lit_str(&elems[0], &self.name())?, lit_str(&elems[1], &self.name())?))
                }
                other => {
                    let s = lit_str(other, &self.name())?;
                    Ok((s.clone(), s))
                }
            })
            .collect()
    }
}

fn lit_str(e: &Expr, key: &str) -> syn::Result<LitStr> {
    match e {
        Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => Ok(s.clone()),
        other => Err(syn::Error::new(other.span(), format!("`{key}` takes a string literal"))),
    }
}

fn list_error(e: &Expr, key: &str) -> syn::Error {
    syn::Error::new(
        e.span(),
        format!("`{key}` takes a string or a list of strings: [\"a\", \"b\"]"),
    )
}

/// Parses `key = value, key(...), key`; a repeated key is an error (and its repeat ignored).
pub fn parse_args(tokens: TokenStream, errors: &mut Errors) -> Vec<Arg> {
    let Some(metas) = errors.ok(Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens)) else {
        return Vec::new();
    };
    let mut args: Vec<Arg> = Vec::new();
    for meta in metas {
        let key = match meta.path().get_ident() {
            Some(ident) => ident.clone(),
            None if meta.path().is_ident("crate") => syn::Ident::new("crate", meta.path().span()),
            None => {
                errors.push(syn::Error::new(meta.path().span(), "expected an option name"));
                continue;
            }
        };
        if args.iter().any(|a| a.key == key) {
            errors.push(syn::Error::new(key.span(), format!("`{key}` is given twice")));
            continue;
        }
        args.push(Arg { key, meta });
    }
    args
}

/// An error for an option this framework does not have, with the nearest known name.
pub fn unknown(arg: &Arg, known: &[&str], not_applicable: &[(&str, &str)]) -> syn::Error {
    let name = arg.name();
    if let Some((_, why)) = not_applicable.iter().find(|(k, _)| *k == name) {
        return syn::Error::new(arg.key.span(), format!("`{name}` does not apply here: {why}"));
    }
    let nearest = known
        .iter()
        .min_by_key(|k| edit_distance(k, &name))
        .filter(|k| edit_distance(k, &name) <= 3);
    let hint = match nearest {
        Some(k) => format!("; did you mean `{k}`?"),
        None => format!("; known options: {}", known.join(", ")),
    };
    syn::Error::new(arg.key.span(), format!("unknown option `{name}`{hint}"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Where the runtime crate is, for fully qualified paths in generated code: `crate = ...`
/// when given, else found in the user's `Cargo.toml` (so a renamed dependency works).
pub fn runtime_path(explicit: Option<syn::Path>) -> TokenStream {
    if let Some(path) = explicit {
        return path.into_token_stream();
    }
    use proc_macro_crate::{FoundCrate, crate_name};
    match crate_name("pipeline-runtime") {
        // Inside the runtime's own package (its doctests, tests and examples are compiled as
        // that package too), `::pipeline_runtime` resolves through `extern crate self`.
        Ok(FoundCrate::Itself) => quote::quote!(::pipeline_runtime),
        Ok(FoundCrate::Name(name)) => {
            let ident = syn::Ident::new(&name, Span::call_site());
            quote::quote!(::#ident)
        }
        Err(_) => quote::quote!(::pipeline_runtime),
    }
}

/// `crate = "path"` or `crate = path`.
pub fn crate_path(arg: &Arg) -> syn::Result<syn::Path> {
    match arg.value()? {
        Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => s.parse(),
        Expr::Path(p) => Ok(p.path.clone()),
        other => Err(syn::Error::new(
            other.span(),
            "`crate` takes a path, like `crate = my_alias`",
        )),
    }
}

/// A stable hash of an item's tokens, as 16 hex digits.
pub fn code_hash(item: &impl ToTokens) -> String {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(item.to_token_stream().to_string().as_bytes());
    format!("{:016x}", h.finish())
}

/// Names of steps and pipelines: the rule of `pipeline_core::names::problem` (repeated here so
/// that the macros do not build the model crate): non-empty, at most 200 characters, printable,
/// no surrounding whitespace. Spaces and any other printable character are fine.
pub fn check_name(name: &LitStr, what: &str) -> syn::Result<()> {
    let v = name.value();
    let problem = if v.is_empty() {
        Some("cannot be empty")
    } else if v.chars().count() > 200 {
        Some("has at most 200 characters")
    } else if v.chars().any(char::is_control) {
        Some("cannot hold control characters (newlines, tabs)")
    } else if v.trim() != v {
        Some("cannot start or end with whitespace")
    } else {
        None
    };
    match problem {
        Some(p) => Err(syn::Error::new(name.span(), format!("a {what} name {p}"))),
        None => Ok(()),
    }
}

/// Names of outputs: letters, digits, `_`, `-`, `.`; they name files and are written in
/// references (`${step.output}`).
pub fn check_output_name(name: &LitStr) -> syn::Result<()> {
    let v = name.value();
    if v.is_empty()
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(syn::Error::new(
            name.span(),
            "a return value name must be non-empty and use only letters, digits, `_`, `-` and `.`",
        ));
    }
    Ok(())
}
