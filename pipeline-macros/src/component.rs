//! `#[component(...)]`: the options model, its checks, and the generated code.

use crate::args::{self, Arg};
use crate::signature::{self, Param};
use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
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

#[derive(Default)]
struct Options {
    return_values: Option<Vec<LitStr>>,
    name: Option<LitStr>,
    cache: bool,
    version: Option<LitStr>,
    cache_ignore: Vec<LitStr>,
    parents: Vec<LitStr>,
    execution_queue: Option<LitStr>,
    continue_on_fail: Option<bool>,
    behaviour: Option<[bool; 4]>,
    retry: Option<TokenStream>,
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

fn parse_options(attr: TokenStream) -> syn::Result<Options> {
    let mut o = Options::default();
    for arg in args::parse_args(attr)? {
        match arg.name().as_str() {
            "return_values" => {
                let names = arg.str_list()?;
                if names.is_empty() {
                    return Err(syn::Error::new(
                        arg.meta.span(),
                        "`return_values` needs at least one name",
                    ));
                }
                for (i, n) in names.iter().enumerate() {
                    args::check_name(n, "return value")?;
                    if names[..i].iter().any(|m| m.value() == n.value()) {
                        return Err(syn::Error::new(n.span(), "this return value name is given twice"));
                    }
                }
                o.return_values = Some(names);
            }
            "name" => {
                let n = arg.str()?;
                args::check_name(&n, "component")?;
                o.name = Some(n);
            }
            "cache" => o.cache = arg.bool()?,
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
                    o.behaviour = Some(parse_behaviour(&arg)?);
                }
            }
            "retry_on_failure" | "retries" => {
                if o.retry.is_some() {
                    return Err(syn::Error::new(
                        arg.key.span(),
                        "give either `retries` or `retry_on_failure`",
                    ));
                }
                o.retry = Some(retry_tokens(&arg)?);
            }
            "time_limit" => o.time_limit = Some(arg.duration()?),
            "tags" => o.tags = arg.str_list()?,
            "monitor_metrics" => o.monitor_metrics = parse_metrics(&arg)?,
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
            "crate" => o.krate = Some(args::crate_path(&arg)?),
            _ => return Err(args::unknown(&arg, KNOWN, NOT_APPLICABLE)),
        }
    }
    Ok(o)
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
    for inner in arg.nested()? {
        match KEYS.iter().position(|k| *k == inner.name()) {
            Some(i) => values[i] = inner.bool()?,
            None => return Err(args::unknown(&inner, &KEYS, &[])),
        }
    }
    Ok(values)
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

fn opt_str(s: &Option<LitStr>) -> TokenStream {
    match s {
        Some(s) => quote!(::core::option::Option::Some(#s)),
        None => quote!(::core::option::Option::None),
    }
}

fn opt_f64(v: Option<f64>) -> TokenStream {
    match v {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    }
}

fn opt_path(p: &Option<syn::Path>) -> TokenStream {
    match p {
        Some(p) => quote!(::core::option::Option::Some(#p)),
        None => quote!(::core::option::Option::None),
    }
}

pub fn opt_duration(d: Option<std::time::Duration>, krate: &TokenStream) -> TokenStream {
    match d {
        Some(d) => {
            let (s, n) = (d.as_secs(), d.subsec_nanos());
            quote!(::core::option::Option::Some(#krate::__private::Duration::new(#s, #n)))
        }
        None => quote!(::core::option::Option::None),
    }
}

/// The outputs of a call: their names and types, and whether the function returns `Result`.
struct Outputs {
    names: Vec<String>,
    types: Vec<Type>,
    fallible: bool,
    /// More than one output: the job's value is the returned tuple itself.
    split: bool,
    /// Where the value type is written, `T` of `Result<T, E>`.
    span: Span,
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
            span: value_ty.span(),
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
        span: value_ty.span(),
    })
}

pub fn expand(attr: TokenStream, item: ItemFn) -> syn::Result<TokenStream> {
    let o = parse_options(attr)?;
    let params = signature::params(&item, "component")?;
    let outs = outputs(&item, &o.return_values)?;
    for ignored in &o.cache_ignore {
        if !params.iter().any(|p| p.ident == ignored.value()) {
            return Err(syn::Error::new(
                ignored.span(),
                "`cache_ignore` names a parameter this component does not have",
            ));
        }
    }
    let krate = args::runtime_path(o.krate.clone());
    let p = quote!(#krate::__private);

    let ident = &item.sig.ident;
    let vis = &item.vis;
    let is_async = item.sig.asyncness.is_some();
    let name_lit = o
        .name
        .clone()
        .unwrap_or_else(|| LitStr::new(&ident.to_string(), ident.span()));
    let desc = format_ident!("__PIPELINE_COMPONENT_{}", ident);
    let entry = format_ident!("__pipeline_entry_{}", ident);
    // Clashes (a compile error) when two components of one module share a name.
    let name_guard = format_ident!(
        "__pipeline_component_name_{}",
        name_lit.value().replace(['-', '.'], "_"),
        span = name_lit.span()
    );
    let code_hash = args::code_hash(&item);
    let docs: Vec<_> = item.attrs.iter().filter(|a| a.path().is_ident("doc")).collect();
    let attrs = &item.attrs;

    let names: Vec<_> = params.iter().map(|p| &p.ident).collect();
    let types: Vec<_> = params.iter().map(|p| &p.ty).collect();
    let name_strs: Vec<_> = params.iter().map(|p| p.ident.to_string()).collect();
    let type_strs: Vec<_> = params.iter().map(|p| type_string(&p.ty)).collect();
    let out_types = &outs.types;
    let out_names = &outs.names;
    let out_type_strs: Vec<_> = out_types.iter().map(type_string).collect();
    let n_inputs = params.len();

    let value_checks = params.iter().map(|p| &p.ty).chain(out_types).map(|ty| {
        quote_spanned! {ty.span()=> __assert_value::<#ty>(); }
    });

    let handles_ty = if outs.split {
        quote!((#(#krate::Handle<#out_types>,)*))
    } else {
        let t = &out_types[0];
        quote!(#krate::Handle<#t>)
    };

    // The call of the user's function, as a `Result<(outputs...), StepError>`.
    let invoke = {
        let call = if is_async {
            quote!(#p::block_on(#ident::call(#(#names),*)))
        } else {
            quote!(#ident::call(#(#names),*))
        };
        let wrap = if outs.split {
            quote!(__value)
        } else {
            quote!((__value,))
        };
        if outs.fallible {
            quote! {
                match #call {
                    ::core::result::Result::Ok(__value) => ::core::result::Result::Ok(#wrap),
                    ::core::result::Result::Err(__error) => ::core::result::Result::Err(#p::step_error(__error)),
                }
            }
        } else {
            quote! {{ let __value = #call; ::core::result::Result::Ok::<_, #p::StepError>(#wrap) }}
        }
    };
    // The calls below need `ComponentValue` (or serde) of the user's types: they are located at
    // those types, so that a type missing the traits is reported there and not at the attribute.
    let write_outputs = out_types.iter().enumerate().map(|(i, ty)| {
        let index = syn::Index::from(i);
        let write = located_at(quote!(#p::write_output(__io, #i, &__outputs.#index)), ty.span());
        quote!(#write?;)
    });
    let read_inputs = params.iter().enumerate().map(|(i, Param { ident, ty, .. })| {
        let pname = ident.to_string();
        let read = located_at(quote!(#p::read_input::<#ty>(__io, #i, #pname)), ty.span());
        quote!(let #ident: #ty = #read?;)
    });

    let call_params = params.iter().map(|Param { ident, mutable, ty }| {
        let m = mutable.then(|| quote!(mut));
        quote!(#m #ident: #ty)
    });
    let ret = &item.sig.output;
    let block = &item.block;
    let asyncness = &item.sig.asyncness;
    let unsafety = &item.sig.unsafety;
    let constness = &item.sig.constness;
    let options = options_tokens(&o, &p, &krate);
    // Each argument as an `Input`, under a name of our own so that its uses can be located at
    // the parameter's type without touching the user's identifier.
    let inputs: Vec<_> = (0..params.len()).map(|i| format_ident!("__input_{}", i)).collect();
    let dependencies = inputs
        .iter()
        .zip(&types)
        .map(|(input, ty)| located_at(quote!(#p::Input::dependencies(&#input, &mut __deps)), ty.span()));
    let resolve = params.iter().zip(&inputs).map(|(Param { ident, ty, .. }, input)| {
        let resolve = located_at(quote!(#p::Input::resolve(&mut #input, __last)), ty.span());
        quote!(let #ident = #resolve?;)
    });
    let export = types
        .iter()
        .zip(&inputs)
        .map(|(ty, input)| located_at(quote!(#p::Input::export(&mut #input, __sink)), ty.span()));
    // The cache key covers every parameter but those in `cache_ignore`.
    let fingerprint = params
        .iter()
        .zip(&inputs)
        .filter(|(prm, _)| !o.cache_ignore.iter().any(|c| prm.ident == c.value()))
        .map(|(Param { ident, ty, .. }, input)| {
            let name = ident.to_string();
            located_at(quote!(#p::Input::fingerprint(&mut #input, #name, __key)), ty.span())
        });
    let call_component = call_at(
        quote!(#p::call_component),
        quote! {
            &#desc, &__deps, move |__how: #p::Invoke<'_>| match __how {
                #p::Invoke::Run { last: __last } => {
                    #(#resolve)*
                    (#invoke).map(::core::option::Option::Some)
                }
                #p::Invoke::Export(__sink) => {
                    #(#export?;)*
                    ::core::result::Result::Ok(::core::option::Option::None)
                }
                #p::Invoke::Fingerprint(__key) => {
                    #(#fingerprint?;)*
                    ::core::result::Result::Ok(::core::option::Option::None)
                }
            }
        },
        outs.span,
    );
    // Spanned at the name, so that two components of one module with the same name are
    // reported at the second name (and the first), not at the attributes.
    let name_guard = quote_spanned! {name_lit.span()=>
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        const #name_guard: () = ();
    };

    Ok(quote! {
        #(#docs)*
        ///
        /// This is the plain-Rust side of a pipeline component: [`Self::call`] runs the function
        /// body directly (for unit tests), [`Self::descriptor`] describes it.
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #ident {}

        #[allow(dead_code)]
        impl #ident {
            /// Runs the component's body as a plain function call, outside any pipeline.
            #(#attrs)*
            #vis #constness #asyncness #unsafety fn call(#(#call_params),*) #ret #block

            /// What the framework knows about this component.
            #vis fn descriptor() -> &'static #p::ComponentDescriptor {
                &#desc
            }
        }

        #name_guard

        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        static #desc: #p::ComponentDescriptor = #p::ComponentDescriptor {
            name: #name_lit,
            function: ::core::stringify!(#ident),
            module_path: ::core::module_path!(),
            file: ::core::file!(),
            line: ::core::line!(),
            code_hash: #code_hash,
            is_async: #is_async,
            params: &[#(#p::ParamDescriptor { name: #name_strs, type_name: #type_strs }),*],
            outputs: &[#(#p::ParamDescriptor { name: #out_names, type_name: #out_type_strs }),*],
            options: #options,
            entry: #entry,
        };

        #p::inventory::submit! { #p::ComponentRegistration(&#desc) }

        #[doc(hidden)]
        #[allow(non_snake_case, unused_mut)]
        fn #entry(__io: &mut dyn #p::StepIo) -> ::core::result::Result<(), #p::StepError> {
            let __count = #p::StepIo::input_count(__io);
            if __count != #n_inputs {
                return ::core::result::Result::Err(#p::StepError::new(
                    #p::ErrorKind::Codec,
                    ::std::format!("component `{}` takes {} inputs, got {}", #name_lit, #n_inputs, __count),
                ));
            }
            #(#read_inputs)*
            let __outputs = #invoke?;
            #(#write_outputs)*
            ::core::result::Result::Ok(())
        }

        #[allow(dead_code)]
        const _: () = {
            fn __assert_value<T: #p::ComponentValue>() {}
            fn __check() { #(#value_checks)* }
        };

        #(#docs)*
        #[allow(clippy::too_many_arguments, unused_mut)]
        #vis fn #ident(#(#names: impl #p::IntoInput<#types>),*) -> #handles_ty {
            #(let mut #inputs = #p::IntoInput::<#types>::into_input(#names);)*
            let mut __deps = ::std::vec::Vec::new();
            #(#dependencies;)*
            #call_component
        }
    })
}

/// `tokens` reported at `at` but resolved as call-site code: every token gets the call site's
/// name resolution with `at`'s location.
pub(crate) fn located_at(tokens: TokenStream, at: Span) -> TokenStream {
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

/// The call `path(args)` reported at `at`: the path and the parentheses are located there, the
/// arguments keep their own spans.
fn call_at(path: TokenStream, args: TokenStream, at: Span) -> TokenStream {
    let mut parens = Group::new(proc_macro2::Delimiter::Parenthesis, args);
    parens.set_span(Span::call_site().located_at(at));
    let path = located_at(path, at);
    quote!(#path #parens)
}

fn type_string(ty: &Type) -> String {
    quote!(#ty)
        .to_string()
        .replace(" < ", "<")
        .replace(" >", ">")
        .replace("< ", "<")
        .replace(" ,", ",")
}

fn options_tokens(o: &Options, p: &TokenStream, krate: &TokenStream) -> TokenStream {
    let return_values: Vec<String> = match &o.return_values {
        Some(v) => v.iter().map(LitStr::value).collect(),
        None => vec!["return_object".into()],
    };
    let cache = o.cache;
    let version = opt_str(&o.version);
    let cache_ignore = &o.cache_ignore;
    let parents = &o.parents;
    let queue = opt_str(&o.execution_queue);
    let retry = o.retry.clone().unwrap_or_else(|| quote!(Never));
    let [c_fail, c_abort, s_fail, s_abort] = match (o.behaviour, o.continue_on_fail) {
        (Some(b), _) => b,
        (None, Some(c)) => [c, false, true, true],
        (None, None) => [false, false, true, true],
    };
    let time_limit = opt_duration(o.time_limit, krate);
    let tags = &o.tags;
    let metrics = o.monitor_metrics.iter().map(|[a, b, c, d]| quote!((#a, #b, #c, #d)));
    let artifacts = o.monitor_artifacts.iter().map(|(a, b)| quote!((#a, #b)));
    let models = o.monitor_models.iter().map(|(a, b)| quote!((#a, #b)));
    let output_uri = opt_str(&o.output_uri);
    let task_type = opt_str(&o.task_type);
    let num_cpus = opt_f64(o.num_cpus);
    let num_gpus = opt_f64(o.num_gpus);
    let pre = opt_path(&o.pre_execute);
    let post = opt_path(&o.post_execute);
    let status = opt_path(&o.status_change);
    quote! {
        #p::ComponentOptions {
            return_values: &[#(#return_values),*],
            cache: #cache,
            version: #version,
            cache_ignore: &[#(#cache_ignore),*],
            parents: &[#(#parents),*],
            execution_queue: #queue,
            retry: #p::RetryPolicy::#retry,
            continue_behaviour: #p::ContinueBehaviour {
                continue_on_fail: #c_fail,
                continue_on_abort: #c_abort,
                skip_children_on_fail: #s_fail,
                skip_children_on_abort: #s_abort,
            },
            time_limit: #time_limit,
            tags: &[#(#tags),*],
            monitor_metrics: &[#(#metrics),*],
            monitor_artifacts: &[#(#artifacts),*],
            monitor_models: &[#(#models),*],
            output_uri: #output_uri,
            task_type: #task_type,
            num_cpus: #num_cpus,
            num_gpus: #num_gpus,
            callbacks: #p::Callbacks { pre_execute: #pre, post_execute: #post, status_change: #status },
        }
    }
}
