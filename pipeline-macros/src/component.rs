//! `#[component(...)]`: the options model, its checks, and the generated code.

use crate::args::{self, Arg, Errors};
use crate::signature::{self, Param};
use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, LitStr, Type};

const KNOWN: &[&str] = &[
    "return_values",
    "name",
    "cache",
    "version",
    "cache_ignore",
    "parents",
    "execution_queue",
    "continue_on_fail",
    "continue_behaviour",
    "retry_on_failure",
    "retries",
    "retry_delay",
    "retry_backoff",
    "retry_jitter",
    "time_limit",
    "tags",
    "monitor_metrics",
    "monitor_artifacts",
    "monitor_models",
    "output_uri",
    "task_type",
    "num_cpus",
    "num_gpus",
    "pre_execute_callback",
    "post_execute_callback",
    "status_change_callback",
    "crate",
];

const SAME_BINARY: &str = "steps run the same binary as the pipeline, with everything it was built with";

pub const NOT_APPLICABLE: &[(&str, &str)] = &[
    ("packages", SAME_BINARY),
    ("helper_functions", SAME_BINARY),
    ("repo", SAME_BINARY),
    ("repo_branch", SAME_BINARY),
    ("repo_commit", SAME_BINARY),
    (
        "docker",
        "steps run the pipeline's own binary; choose the machine with `execution_queue`",
    ),
    (
        "docker_args",
        "steps run the pipeline's own binary; choose the machine with `execution_queue`",
    ),
    (
        "docker_bash_setup_script",
        "steps run the pipeline's own binary; choose the machine with `execution_queue`",
    ),
    (
        "auto_connect_frameworks",
        "there is no framework auto-logging to configure",
    ),
    (
        "auto_connect_arg_parser",
        "there is no argument-parser auto-logging to configure",
    ),
    ("draft", "steps are created when they are called"),
    ("working_dir", "a step runs in the pipeline's working directory"),
];

const TASK_TYPES: &[&str] = &[
    "training",
    "testing",
    "inference",
    "data_processing",
    "application",
    "monitor",
    "controller",
    "optimizer",
    "service",
    "qc",
    "custom",
];

/// The options of `#[component(...)]`, as given.
#[derive(Default)]
struct Options {
    return_values: Option<Vec<LitStr>>,
    name: Option<LitStr>,
    cache: Option<bool>,
    version: Option<LitStr>,
    cache_ignore: Vec<LitStr>,
    parents: Vec<LitStr>,
    execution_queue: Option<LitStr>,
    continue_on_fail: Option<bool>,
    behaviour: Option<[bool; 4]>,
    retry: Option<TokenStream>,
    retry_delay: Option<std::time::Duration>,
    retry_backoff: Option<f64>,
    retry_jitter: Option<f64>,
    time_limit: Option<std::time::Duration>,
    tags: Vec<LitStr>,
    monitor_metrics: Vec<[LitStr; 4]>,
    monitor_artifacts: Vec<(LitStr, LitStr)>,
    monitor_models: Vec<(LitStr, LitStr)>,
    output_uri: Option<LitStr>,
    task_type: Option<LitStr>,
    num_cpus: Option<f64>,
    num_gpus: Option<f64>,
    pre_execute: Option<syn::Path>,
    post_execute: Option<syn::Path>,
    status_change: Option<syn::Path>,
    krate: Option<syn::Path>,
}

fn parse_options(attr: TokenStream, errors: &mut Errors) -> Options {
    let mut o = Options::default();
    for arg in args::parse_args(attr, errors) {
        if let Err(e) = parse_option(&mut o, &arg) {
            errors.push(e);
        }
    }
    o
}

fn parse_option(o: &mut Options, arg: &Arg) -> syn::Result<()> {
    match arg.name().as_str() {
        "return_values" => {
            let names = arg.str_list()?;
            if names.is_empty() {
                return Err(syn::Error::new(
                    arg.meta.span(),
                    "`return_values` needs at least one name",
                ));
            }
            let mut errors = Errors::default();
            for (i, n) in names.iter().enumerate() {
                errors.ok(args::check_output_name(n));
                if names[..i].iter().any(|m| m.value() == n.value()) {
                    errors.push(syn::Error::new(n.span(), "this return value name is given twice"));
                }
            }
            errors.finish()?;
            o.return_values = Some(names);
        }
        "name" => {
            let n = arg.str()?;
            args::check_name(&n, "component")?;
            o.name = Some(n);
        }
        "cache" => o.cache = Some(arg.bool()?),
        "version" => o.version = Some(arg.str()?),
        "cache_ignore" => o.cache_ignore = arg.str_list()?,
        "parents" => o.parents = arg.str_list()?,
        "execution_queue" => o.execution_queue = Some(arg.str()?),
        "continue_on_fail" | "continue_behaviour" => {
            if o.continue_on_fail.is_some() || o.behaviour.is_some() {
                return Err(syn::Error::new(
                    arg.key.span(),
                    "give either `continue_behaviour(...)` or the deprecated `continue_on_fail`, not both",
                ));
            }
            if arg.name() == "continue_on_fail" {
                o.continue_on_fail = Some(arg.bool()?);
            } else {
                o.behaviour = Some(parse_behaviour(arg)?);
            }
        }
        "retry_on_failure" | "retries" => {
            if o.retry.is_some() {
                return Err(syn::Error::new(
                    arg.key.span(),
                    "give either `retries` or `retry_on_failure`",
                ));
            }
            o.retry = Some(retry_tokens(arg)?);
        }
        "retry_delay" => o.retry_delay = Some(arg.duration()?),
        "retry_backoff" => {
            let factor = arg.positive_f64()?;
            if factor < 1.0 {
                return Err(syn::Error::new(
                    arg.key.span(),
                    "`retry_backoff` multiplies each wait by this factor: 1 or more",
                ));
            }
            o.retry_backoff = Some(factor);
        }
        "retry_jitter" => o.retry_jitter = Some(arg.positive_f64()?),
        "time_limit" => o.time_limit = Some(arg.duration()?),
        "tags" => o.tags = arg.str_list()?,
        "monitor_metrics" => o.monitor_metrics = parse_metrics(arg)?,
        "monitor_artifacts" => o.monitor_artifacts = arg.pairs()?,
        "monitor_models" => o.monitor_models = arg.pairs()?,
        "output_uri" => o.output_uri = Some(arg.str()?),
        "task_type" => {
            let t = arg.str()?;
            if !TASK_TYPES.contains(&t.value().as_str()) {
                return Err(syn::Error::new(
                    t.span(),
                    format!("unknown task type; one of: {}", TASK_TYPES.join(", ")),
                ));
            }
            o.task_type = Some(t);
        }
        "num_cpus" => o.num_cpus = Some(arg.positive_f64()?),
        "num_gpus" => o.num_gpus = Some(arg.positive_f64()?),
        "pre_execute_callback" => o.pre_execute = Some(arg.path()?),
        "post_execute_callback" => o.post_execute = Some(arg.path()?),
        "status_change_callback" => o.status_change = Some(arg.path()?),
        "crate" => o.krate = Some(args::crate_path(arg)?),
        _ => return Err(args::unknown(arg, KNOWN, NOT_APPLICABLE)),
    }
    Ok(())
}

/// `continue_behaviour(continue_on_fail = true, ...)`; as in ClearML, a key left out is `true`.
fn parse_behaviour(arg: &Arg) -> syn::Result<[bool; 4]> {
    const KEYS: [&str; 4] = [
        "continue_on_fail",
        "continue_on_abort",
        "skip_children_on_fail",
        "skip_children_on_abort",
    ];
    let mut values = [true; 4];
    let mut errors = Errors::default();
    for inner in arg.nested()? {
        match KEYS.iter().position(|k| *k == inner.name()) {
            Some(i) => values[i] = errors.ok(inner.bool()).unwrap_or(true),
            None => errors.push(args::unknown(&inner, &KEYS, &[])),
        }
    }
    errors.finish().map(|()| values)
}

/// `monitor_metrics = [("title", "series"), (("title", "series"), ("target title", "target series"))]`.
fn parse_metrics(arg: &Arg) -> syn::Result<Vec<[LitStr; 4]>> {
    let shape = "`monitor_metrics` takes pairs (\"title\", \"series\") or ((\"title\", \"series\"), (\"target title\", \"target series\"))";
    let syn::Expr::Array(list) = arg.value()? else {
        return Err(syn::Error::new(arg.meta.span(), shape));
    };
    let pair = |e: &syn::Expr| -> syn::Result<Option<(LitStr, LitStr)>> {
        match e {
            syn::Expr::Tuple(t) if t.elems.len() == 2 => match (&t.elems[0], &t.elems[1]) {
                (syn::Expr::Lit(a), syn::Expr::Lit(b)) => match (&a.lit, &b.lit) {
                    (syn::Lit::Str(a), syn::Lit::Str(b)) => Ok(Some((a.clone(), b.clone()))),
                    _ => Err(syn::Error::new(e.span(), shape)),
                },
                _ => Ok(None),
            },
            _ => Err(syn::Error::new(e.span(), shape)),
        }
    };
    let mut out = Vec::new();
    for e in &list.elems {
        if let Some((t, s)) = pair(e)? {
            out.push([t.clone(), s.clone(), t, s]);
            continue;
        }
        let syn::Expr::Tuple(t) = e else {
            unreachable!("pair() accepts only tuples")
        };
        match (pair(&t.elems[0])?, pair(&t.elems[1])?) {
            (Some((a, b)), Some((c, d))) => out.push([a, b, c, d]),
            _ => return Err(syn::Error::new(e.span(), shape)),
        }
    }
    Ok(out)
}

fn retry_tokens(arg: &Arg) -> syn::Result<TokenStream> {
    match arg.value()? {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(_), ..
        }) => {
            let n = arg.u32()?;
            Ok(quote!(Count(#n)))
        }
        syn::Expr::Path(_) => {
            let path = arg.path()?;
            Ok(quote!(Callback(#path)))
        }
        other => Err(syn::Error::new(
            other.span(),
            format!(
                "`{}` takes a number of retries or the path of a `fn(&DagNode, u32) -> bool`",
                arg.key
            ),
        )),
    }
}

/// The outputs of a call: their names and types, and whether the function returns `Result`.
struct Outputs {
    names: Vec<String>,
    types: Vec<Type>,
    fallible: bool,
    /// More than one output: the body's value is the returned tuple itself.
    split: bool,
}

fn outputs(item: &ItemFn, return_values: &Option<Vec<LitStr>>) -> syn::Result<Outputs> {
    let written = signature::return_type(item);
    let (value_ty, fallible) = match signature::result_ok_type(&written) {
        Some(t) => (t.clone(), true),
        None => (written.clone(), false),
    };
    let names: Vec<String> = match return_values {
        Some(names) => names.iter().map(LitStr::value).collect(),
        None => vec!["return_object".to_string()],
    };
    if names.len() == 1 {
        return Ok(Outputs {
            names,
            types: vec![value_ty],
            fallible,
            split: false,
        });
    }
    let span = return_values
        .as_ref()
        .map(|v| v[0].span())
        .unwrap_or_else(Span::call_site);
    let Type::Tuple(tuple) = &value_ty else {
        return Err(syn::Error::new(
            value_ty.span(),
            format!(
                "{} `return_values` need a tuple return type with as many elements",
                names.len()
            ),
        ));
    };
    if tuple.elems.len() != names.len() {
        let mut e = syn::Error::new(
            value_ty.span(),
            format!(
                "the return type has {} elements but `return_values` names {}",
                tuple.elems.len(),
                names.len()
            ),
        );
        e.combine(syn::Error::new(span, "`return_values` given here"));
        return Err(e);
    }
    if names.len() > 12 {
        return Err(syn::Error::new(span, "a component has at most 12 outputs"));
    }
    Ok(Outputs {
        names,
        types: tuple.elems.iter().cloned().collect(),
        fallible,
        split: true,
    })
}

/// A checked component: everything the generated code is made from.
struct Model {
    options: Options,
    params: Vec<Param>,
    outputs: Outputs,
    item: ItemFn,
    krate: TokenStream,
}

/// What is known of a component with mistakes: enough to define it for its uses.
struct Failed {
    error: syn::Error,
    item: ItemFn,
    params: Vec<Param>,
    outputs: Option<Outputs>,
    krate: TokenStream,
}

/// Parses and checks the attribute and the function, collecting every mistake.
fn check(attr: TokenStream, item: ItemFn) -> Result<Model, Box<Failed>> {
    let mut errors = Errors::default();
    let options = parse_options(attr, &mut errors);
    let params = signature::params(&item, "component", &mut errors);
    let outputs = errors.ok(outputs(&item, &options.return_values));
    for ignored in &options.cache_ignore {
        if !params.iter().any(|p| p.ident == ignored.value()) {
            errors.push(syn::Error::new(
                ignored.span(),
                "`cache_ignore` names a parameter this component does not have",
            ));
        }
    }
    let krate = args::runtime_path(options.krate.clone());
    match (errors.finish(), outputs) {
        (Ok(()), Some(outputs)) => Ok(Model {
            krate,
            options,
            params,
            outputs,
            item,
        }),
        (result, outputs) => Err(Box::new(Failed {
            error: result.expect_err("outputs are missing only after an error"),
            item,
            params,
            outputs,
            krate,
        })),
    }
}

pub fn expand(attr: TokenStream, item: ItemFn) -> TokenStream {
    match check(attr, item) {
        Ok(model) => generate(&model),
        Err(failed) => {
            let mut tokens = failed.error.to_compile_error();
            tokens.extend(fallback(&failed));
            tokens
        }
    }
}

/// What a component with mistakes still defines, so that only the mistakes are reported and
/// not every use of it: the type with the user's function as `call`, and a function of the
/// same signature as the real one that is never run (the build fails anyway).
fn fallback(failed: &Failed) -> TokenStream {
    let Failed {
        item,
        params,
        outputs,
        krate,
        ..
    } = failed;
    if signature::has_receiver(item) {
        return item.into_token_stream(); // inside an `impl`: only the function itself fits
    }
    let ItemFn { attrs, vis, sig, block } = item;
    let ident = &sig.ident;
    let mut call_sig = sig.clone();
    call_sig.ident = format_ident!("call", span = ident.span());
    let (generics, where_clause) = (&sig.generics, &sig.generics.where_clause);
    let names = params.iter().map(|p| &p.ident);
    // A parameter whose type is wrong takes anything, so that its uses report nothing more.
    let types = params.iter().map(|p| match p.owned {
        true => {
            let ty = &p.ty;
            quote!(#krate::IntoInput<#ty>)
        }
        false => quote!(::core::marker::Sized),
    });
    let handles = match outputs {
        Some(outputs) => handles_type(outputs, krate),
        None => {
            let written = signature::return_type(item);
            let value = signature::result_ok_type(&written).unwrap_or(&written);
            quote!(#krate::Handle<#value>)
        }
    };
    let unused = params.iter().map(|p| &p.ident);
    quote! {
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #ident {}

        #[allow(dead_code)]
        impl #ident {
            #(#attrs)*
            #vis #call_sig #block
        }

        #[allow(dead_code, clippy::too_many_arguments)]
        #vis fn #ident #generics(#(#names: impl #types),*) -> #handles #where_clause {
            let _ = (#(#unused,)*);
            ::core::unreachable!()
        }
    }
}

fn handles_type(outputs: &Outputs, krate: &TokenStream) -> TokenStream {
    let types = &outputs.types;
    if outputs.split {
        quote!((#(#krate::Handle<#types>,)*))
    } else {
        quote!(#krate::Handle<#(#types)*>)
    }
}

/// `tokens` reported at `at` but resolved as call-site code: every token gets the call site's
/// name resolution with `at`'s location.
fn located_at(tokens: TokenStream, at: Span) -> TokenStream {
    let span = Span::call_site().located_at(at);
    tokens
        .into_iter()
        .map(|tt| match tt {
            TokenTree::Group(g) => {
                let mut group = Group::new(g.delimiter(), located_at(g.stream(), at));
                group.set_span(span);
                TokenTree::Group(group)
            }
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}

/// `tokens` as a parenthesized group reported at `span`.
fn parens_at(tokens: TokenStream, span: Span) -> TokenStream {
    let mut group = Group::new(proc_macro2::Delimiter::Parenthesis, tokens);
    group.set_span(span);
    TokenTree::Group(group).into()
}

fn generate(m: &Model) -> TokenStream {
    let Model {
        options: o,
        params,
        outputs: outs,
        item,
        krate,
    } = m;
    let ident = &item.sig.ident;
    let vis = &item.vis;
    let is_async = item.sig.asyncness.is_some();
    let name_lit = o
        .name
        .clone()
        .unwrap_or_else(|| LitStr::new(&ident.to_string(), ident.span()));
    // Clashes (a compile error) when two components of one module share a name; spanned at
    // the name, so that the clash is reported at both names, not at the attributes.
    // Any character an identifier cannot hold is written as its code point, so that two
    // different names never clash ("a b" and "a_b").
    let guard_name: String = name_lit
        .value()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_string()
            } else {
                format!("_{:x}_", u32::from(c))
            }
        })
        .collect();
    let name_guard = format_ident!("__pipeline_component_name_{guard_name}", span = name_lit.span());
    let name_guard = quote_spanned! {name_lit.span()=>
        #[allow(non_upper_case_globals)]
        const #name_guard: () = ();
    };
    let code_hash = args::code_hash(item);
    let function = ident.to_string();
    let docs: Vec<_> = item.attrs.iter().filter(|a| a.path().is_ident("doc")).collect();
    let attrs = &item.attrs;

    let names: Vec<_> = params.iter().map(|p| &p.ident).collect();
    let types: Vec<_> = params.iter().map(|p| &p.ty).collect();
    let params_desc = params.iter().map(|p| {
        let (name, ty) = (p.ident.to_string(), type_string(&p.ty));
        quote!(__rt::ParamDescriptor::new(#name, #ty))
    });
    let out_types = &outs.types;
    let outputs_desc = outs.names.iter().zip(out_types).map(|(name, ty)| {
        let ty = type_string(ty);
        quote!(__rt::ParamDescriptor::new(#name, #ty))
    });
    let handles_ty = handles_type(outs, krate);
    // Reported at the parameter list and the return type: a type that cannot flow between
    // steps is an error there, once, and nowhere else.
    let params_ty = parens_at(quote!(#(#types,)*), item.sig.paren_token.span.join());
    let outputs_ty = parens_at(quote!(#(#out_types,)*), out_types_span(item));

    let call = if is_async {
        quote!(__rt::component::block_on(#ident::call(#(#names),*)))
    } else {
        quote!(#ident::call(#(#names),*))
    };
    let run = match (outs.fallible, outs.split) {
        (false, false) => quote!(__rt::component::output(#call)),
        (false, true) => quote!(__rt::component::outputs(#call)),
        (true, false) => quote!(__rt::component::output_or_error(#call)),
        (true, true) => quote!(__rt::component::outputs_or_error(#call)),
    };

    let call_params = params.iter().map(|Param { ident, mutable, ty, .. }| {
        let m = mutable.then(|| quote!(mut));
        quote!(#m #ident: #ty)
    });
    let ret = &item.sig.output;
    let block = &item.block;
    let asyncness = &item.sig.asyncness;
    let unsafety = &item.sig.unsafety;
    let constness = &item.sig.constness;
    let options = options_tokens(o, &quote!(__rt));

    // A type that cannot flow between steps is reported at the impl below, at the parameters
    // or the return type; the same mistake seen again from this call is reported at the
    // function's name, not at the attribute.
    let call_path = located_at(quote!(#krate::component::call::<#ident>), ident.span());
    let call_args = parens_at(quote!((#(#names.into_input(),)*)), ident.span());
    let many_args = (params.len() > 7).then(|| quote!(#[allow(clippy::too_many_arguments)]));
    // Inside the block, the runtime's items are reached through a short alias.
    let rt = quote!(__rt);

    quote! {
        #(#docs)*
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #ident {}

        #name_guard

        #(#docs)*
        #many_args
        #vis fn #ident(#(#names: impl #krate::IntoInput<#types>),*) -> #handles_ty {
            #call_path #call_args
        }

        const _: () = {
            use #krate as #rt;

            impl __rt::Component for #ident {
                type Params = #params_ty;
                type Outputs = #outputs_ty;
                const DESCRIPTOR: &'static __rt::ComponentDescriptor = &__rt::ComponentDescriptor {
                    name: #name_lit,
                    function: #function,
                    module_path: ::core::module_path!(),
                    file: ::core::file!(),
                    line: ::core::line!(),
                    code_hash: #code_hash,
                    is_async: #is_async,
                    params: &[#(#params_desc),*],
                    outputs: &[#(#outputs_desc),*],
                    options: #options,
                    entry: __rt::component::entries::<#ident>(),
                };
                const RUN: __rt::component::Body<Self> = |(#(#names,)*)| #run;
            }

            __rt::__private::inventory::submit! { __rt::__private::ComponentRegistration(#ident::descriptor()) }

            impl #ident {
                #(#attrs)*
                #vis #constness #asyncness #unsafety fn call(#(#call_params),*) #ret #block

                #vis const fn descriptor() -> &'static __rt::ComponentDescriptor {
                    <#ident as __rt::Component>::DESCRIPTOR
                }
            }
        };
    }
}

/// Where the value type is written: `T` of `-> Result<T, E>` or of `-> T`, else the signature.
fn out_types_span(item: &ItemFn) -> Span {
    match &item.sig.output {
        syn::ReturnType::Type(_, ty) => signature::result_ok_type(ty).unwrap_or(ty).span(),
        syn::ReturnType::Default => item.sig.ident.span(),
    }
}

fn type_string(ty: &Type) -> String {
    quote!(#ty)
        .to_string()
        .replace(" < ", "<")
        .replace(" >", ">")
        .replace("< ", "<")
        .replace(" ,", ",")
}

fn some(value: impl ToTokens) -> TokenStream {
    quote!(::core::option::Option::Some(#value))
}

pub fn duration(d: std::time::Duration) -> TokenStream {
    let (s, n) = (d.as_secs(), d.subsec_nanos());
    some(quote!(::core::time::Duration::new(#s, #n)))
}

/// The options as a `ComponentOptions` literal naming only the options given.
fn options_tokens(o: &Options, krate: &TokenStream) -> TokenStream {
    let mut fields = Vec::new();
    let lists: [(&str, &Vec<LitStr>); 3] = [
        ("cache_ignore", &o.cache_ignore),
        ("parents", &o.parents),
        ("tags", &o.tags),
    ];
    if let Some(names) = &o.return_values {
        fields.push(quote!(return_values: &[#(#names),*]));
    }
    if let Some(cache) = o.cache {
        fields.push(quote!(cache: #cache));
    }
    for (field, value) in [
        ("version", &o.version),
        ("execution_queue", &o.execution_queue),
        ("output_uri", &o.output_uri),
        ("task_type", &o.task_type),
    ] {
        if let Some(value) = value {
            let (field, value) = (format_ident!("{}", field), some(value));
            fields.push(quote!(#field: #value));
        }
    }
    for (field, values) in lists {
        if !values.is_empty() {
            let field = format_ident!("{}", field);
            fields.push(quote!(#field: &[#(#values),*]));
        }
    }
    if let Some(retry) = &o.retry {
        fields.push(quote!(retry: #krate::RetryPolicy::#retry));
    }
    match (o.behaviour, o.continue_on_fail) {
        (Some([c_fail, c_abort, s_fail, s_abort]), _) => fields.push(quote! {
            continue_behaviour: #krate::ContinueBehaviour {
                continue_on_fail: #c_fail,
                continue_on_abort: #c_abort,
                skip_children_on_fail: #s_fail,
                skip_children_on_abort: #s_abort,
            }
        }),
        (None, Some(c)) => fields.push(quote! {
            continue_behaviour: #krate::ContinueBehaviour { continue_on_fail: #c, ..#krate::ContinueBehaviour::DEFAULT }
        }),
        (None, None) => {}
    }
    if let Some(limit) = o.time_limit {
        let limit = duration(limit);
        fields.push(quote!(time_limit: #limit));
    }
    if o.retry_delay.is_some() || o.retry_backoff.is_some() || o.retry_jitter.is_some() {
        let d = o.retry_delay.unwrap_or_default();
        let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
        let delay = quote!(::core::time::Duration::new(#secs, #nanos));
        let (factor, jitter) = (o.retry_backoff.unwrap_or(1.0), o.retry_jitter.unwrap_or(0.0));
        fields.push(quote! {
            retry_backoff: #krate::RetryBackoff { delay: #delay, factor: #factor, jitter: #jitter }
        });
    }
    if !o.monitor_metrics.is_empty() {
        let metrics = o.monitor_metrics.iter().map(|[a, b, c, d]| quote!((#a, #b, #c, #d)));
        fields.push(quote!(monitor_metrics: &[#(#metrics),*]));
    }
    for (field, pairs) in [
        ("monitor_artifacts", &o.monitor_artifacts),
        ("monitor_models", &o.monitor_models),
    ] {
        if !pairs.is_empty() {
            let field = format_ident!("{}", field);
            let pairs = pairs.iter().map(|(a, b)| quote!((#a, #b)));
            fields.push(quote!(#field: &[#(#pairs),*]));
        }
    }
    for (field, value) in [("num_cpus", o.num_cpus), ("num_gpus", o.num_gpus)] {
        if let Some(value) = value {
            let (field, value) = (format_ident!("{}", field), some(value));
            fields.push(quote!(#field: #value));
        }
    }
    let callbacks: Vec<_> = [
        ("pre_execute", &o.pre_execute),
        ("post_execute", &o.post_execute),
        ("status_change", &o.status_change),
    ]
    .into_iter()
    .filter_map(|(field, path)| {
        let (field, value) = (format_ident!("{}", field), some(path.as_ref()?));
        Some(quote!(#field: #value))
    })
    .collect();
    // `..DEFAULT` only when some fields are left out (clippy rejects a needless one).
    let rest = |given: usize, all: usize, default: TokenStream| (given < all).then(|| quote!(..#default));
    if !callbacks.is_empty() {
        let rest = rest(callbacks.len(), 3, quote!(#krate::Callbacks::NONE));
        fields.push(quote!(callbacks: #krate::Callbacks { #(#callbacks,)* #rest }));
    }
    if fields.is_empty() {
        return quote!(#krate::ComponentOptions::DEFAULT);
    }
    let rest = rest(fields.len(), 18, quote!(#krate::ComponentOptions::DEFAULT));
    quote!(#krate::ComponentOptions { #(#fields,)* #rest })
}
