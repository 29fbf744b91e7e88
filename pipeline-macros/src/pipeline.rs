//! `#[pipeline(...)]`: the options model, its checks, and the generated code.

use crate::args::{self, Arg, Errors};
use crate::component::duration;
use crate::signature::{self, Param};
use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, LitStr};

const KNOWN: &[&str] = &[
    "name",
    "project",
    "version",
    "return_value",
    "default_queue",
    "abort_on_failure",
    "pipeline_execution_queue",
    "multi_instance_support",
    "add_run_number",
    "args_map",
    "start_controller_locally",
    "retry_on_failure",
    "retries",
    "output_uri",
    "tags",
    "add_pipeline_tags",
    "target_project",
    "time_limit",
    "max_parallel",
    "artifact_codec",
    "crate",
];

const NOT_APPLICABLE: &[(&str, &str)] = &[
    (
        "pool_frequency",
        "step states are pushed to the controller, not polled on a fixed period",
    ),
    (
        "skip_global_imports",
        "steps run the same binary as the pipeline, with everything it was built with",
    ),
    (
        "packages",
        "steps run the same binary as the pipeline, with everything it was built with",
    ),
    (
        "repo",
        "steps run the same binary as the pipeline, with everything it was built with",
    ),
    (
        "repo_branch",
        "steps run the same binary as the pipeline, with everything it was built with",
    ),
    (
        "repo_commit",
        "steps run the same binary as the pipeline, with everything it was built with",
    ),
    (
        "docker",
        "steps run the pipeline's own binary; choose the machine with `default_queue`",
    ),
    (
        "docker_args",
        "steps run the pipeline's own binary; choose the machine with `default_queue`",
    ),
    (
        "docker_bash_setup_script",
        "steps run the pipeline's own binary; choose the machine with `default_queue`",
    ),
    (
        "working_dir",
        "the pipeline runs in the working directory it is started from",
    ),
];

/// The options of `#[pipeline(...)]`, as given.
#[derive(Default)]
struct Options {
    name: Option<LitStr>,
    project: Option<LitStr>,
    version: Option<LitStr>,
    return_value: Option<LitStr>,
    default_queue: Option<LitStr>,
    abort_on_failure: Option<bool>,
    pipeline_execution_queue: Option<Option<LitStr>>,
    parallel_instances: bool,
    parallel_span: Option<Span>,
    add_run_number: Option<bool>,
    args_map: Vec<(LitStr, Vec<LitStr>)>,
    start_controller_locally: Option<bool>,
    retry: Option<TokenStream>,
    output_uri: Option<LitStr>,
    tags: Vec<LitStr>,
    add_pipeline_tags: Option<bool>,
    target_project: Option<LitStr>,
    time_limit: Option<std::time::Duration>,
    max_parallel: Option<usize>,
    codec: Option<TokenStream>,
    krate: Option<syn::Path>,
}

fn parse_options(attr: TokenStream, errors: &mut Errors) -> Options {
    let mut o = Options::default();
    // A missing option is reported at the options given, or at the attribute if there are none.
    let given = attr.clone();
    for arg in args::parse_args(attr, errors) {
        if let Err(e) = parse_option(&mut o, &arg) {
            errors.push(e);
        }
    }
    if o.name.is_none() {
        errors.push(syn::Error::new_spanned(&given, "a pipeline needs `name = \"...\"`"));
    }
    if o.project.is_none() {
        errors.push(syn::Error::new_spanned(&given, "a pipeline needs `project = \"...\"`"));
    }
    o
}

fn parse_option(o: &mut Options, arg: &Arg) -> syn::Result<()> {
    match arg.name().as_str() {
        "name" => {
            let n = arg.str()?;
            args::check_name(&n, "pipeline")?;
            o.name = Some(n);
        }
        "project" => {
            let p = arg.str()?;
            o.project = Some(p.clone()); // given, even if wrong: not "missing" too
            if p.value().trim().is_empty() {
                return Err(syn::Error::new(p.span(), "`project` cannot be empty"));
            }
        }
        "version" => {
            let v = arg.str()?;
            let ok = !v.value().is_empty()
                && v.value()
                    .split('.')
                    .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()));
            if !ok {
                return Err(syn::Error::new(
                    v.span(),
                    "`version` is numbers separated by dots, like \"1.0.2\" or \"23\"",
                ));
            }
            o.version = Some(v);
        }
        "return_value" => o.return_value = Some(arg.str()?),
        "default_queue" => o.default_queue = Some(arg.str()?),
        "abort_on_failure" => o.abort_on_failure = Some(arg.bool()?),
        "pipeline_execution_queue" => {
            o.pipeline_execution_queue = Some(match arg.value()? {
                syn::Expr::Path(p) if p.path.is_ident("None") => None,
                _ => Some(arg.str()?),
            })
        }
        "multi_instance_support" => {
            o.parallel_span = Some(arg.key.span());
            o.parallel_instances = match arg.value() {
                Ok(syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s), ..
                })) if s.value() == "parallel" => true,
                Ok(syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s), ..
                })) => {
                    return Err(syn::Error::new(
                        s.span(),
                        "`multi_instance_support` takes `true`, `false` or \"parallel\"",
                    ));
                }
                _ => {
                    // Runs never share state, so sequential instances need nothing switched on.
                    arg.bool()?;
                    false
                }
            }
        }
        "add_run_number" => o.add_run_number = Some(arg.bool()?),
        "args_map" => o.args_map = parse_args_map(arg)?,
        "start_controller_locally" => o.start_controller_locally = Some(arg.bool()?),
        "retry_on_failure" | "retries" => {
            if o.retry.is_some() {
                return Err(syn::Error::new(
                    arg.key.span(),
                    "give either `retries` or `retry_on_failure`",
                ));
            }
            o.retry = Some(match arg.value()? {
                syn::Expr::Lit(_) => {
                    let n = arg.u32()?;
                    quote!(Count(#n))
                }
                _ => {
                    let path = arg.path()?;
                    quote!(Callback(#path))
                }
            });
        }
        "output_uri" => o.output_uri = Some(arg.str()?),
        "tags" => o.tags = arg.str_list()?,
        "add_pipeline_tags" => o.add_pipeline_tags = Some(arg.bool()?),
        "target_project" => o.target_project = Some(arg.str()?),
        "time_limit" => o.time_limit = Some(arg.duration()?),
        "max_parallel" => {
            let n = arg.u32()?;
            if n == 0 {
                return Err(syn::Error::new(
                    arg.value()?.span(),
                    "`max_parallel` must be at least 1",
                ));
            }
            o.max_parallel = Some(n as usize);
        }
        "artifact_codec" => {
            o.codec = Some(match arg.value()? {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s), ..
                }) => match s.value().as_str() {
                    "bincode" => quote!(Bincode),
                    "json" => quote!(Json),
                    _ => {
                        return Err(syn::Error::new(
                            s.span(),
                            "built-in codecs are \"bincode\" and \"json\"; for your own, name a `static` implementing `ArtifactCodec`",
                        ));
                    }
                },
                _ => {
                    let path = arg.path()?;
                    quote!(Custom(&#path))
                }
            })
        }
        "crate" => o.krate = Some(args::crate_path(arg)?),
        _ => return Err(args::unknown(arg, KNOWN, NOT_APPLICABLE)),
    }
    Ok(())
}

/// `args_map(section = ["param", ...], ...)`.
fn parse_args_map(arg: &Arg) -> syn::Result<Vec<(LitStr, Vec<LitStr>)>> {
    arg.nested()?
        .iter()
        .map(|section| Ok((LitStr::new(&section.name(), section.key.span()), section.str_list()?)))
        .collect()
}

/// A checked pipeline: everything the generated code is made from.
struct Model {
    options: Options,
    name: LitStr,
    project: LitStr,
    params: Vec<Param>,
    item: ItemFn,
    krate: TokenStream,
}

/// A pipeline with mistakes: the errors, and what is known of it.
type Failed = Box<(syn::Error, ItemFn, Vec<Param>, TokenStream)>;

fn check(attr: TokenStream, item: ItemFn) -> Result<Model, Failed> {
    let mut errors = Errors::default();
    let options = parse_options(attr, &mut errors);
    let params = signature::params(&item, "pipeline", &mut errors);
    for (_, names) in &options.args_map {
        for n in names {
            if !params.iter().any(|p| p.ident == n.value()) {
                errors.push(syn::Error::new(
                    n.span(),
                    "`args_map` names a parameter this pipeline does not have",
                ));
            }
        }
    }
    if let (true, Some(span), Some(_)) = (options.parallel_instances, options.parallel_span, item.sig.asyncness) {
        errors.push(syn::Error::new(
            span,
            "`multi_instance_support = \"parallel\"` is for sync pipelines; an async pipeline's runs \
             already run in parallel when their futures are spawned or joined",
        ));
    }
    let krate = args::runtime_path(options.krate.clone());
    match (errors.finish(), options.name.clone(), options.project.clone()) {
        (Ok(()), Some(name), Some(project)) => Ok(Model {
            options,
            name,
            project,
            params,
            item,
            krate,
        }),
        (result, _, _) => Err(Box::new((
            result.expect_err("name and project are missing only after an error"),
            item,
            params,
            krate,
        ))),
    }
}

pub fn expand(attr: TokenStream, item: ItemFn) -> TokenStream {
    match check(attr, item) {
        Ok(model) => generate(&model),
        Err(failed) => {
            let (error, item, params, krate) = *failed;
            let mut tokens = error.to_compile_error();
            tokens.extend(fallback(item, &params, &krate));
            tokens
        }
    }
}

/// What a pipeline with mistakes still defines, so that only the mistakes are reported: the
/// function itself (a plain call returns its value, as the real one does) and `run`, which is
/// never run (the build fails anyway).
fn fallback(item: ItemFn, params: &[Param], krate: &TokenStream) -> TokenStream {
    if signature::has_receiver(&item) {
        return item.into_token_stream();
    }
    let (vis, ident, asyncness) = (&item.vis, &item.sig.ident, &item.sig.asyncness);
    let ret = signature::return_type(&item);
    let names = params.iter().map(|p| &p.ident);
    let unused = names.clone();
    let types = params.iter().map(|p| &p.ty);
    quote! {
        #item

        #[allow(non_camel_case_types, dead_code)]
        #vis struct #ident {}

        #[allow(dead_code, clippy::too_many_arguments)]
        impl #ident {
            #vis #asyncness fn run(#(#names: #types),*) -> ::core::result::Result<#krate::Finished<#ret>, #krate::PipelineError> {
                let _ = (#(#unused,)*);
                ::core::unreachable!()
            }
        }
    }
}

fn generate(m: &Model) -> TokenStream {
    let Model {
        options: o,
        name,
        project,
        params,
        item,
        krate,
    } = m;
    // Only the registration goes through the hidden module; the rest are public entry points.
    let p = quote!(#krate::__private);
    let e = quote!(#krate::entry);
    let ident = &item.sig.ident;
    let vis = &item.vis;
    let is_async = item.sig.asyncness.is_some();
    let code_hash = args::code_hash(item);
    let attrs = &item.attrs;
    let ret = signature::return_type(item);
    let block = &item.block;

    let names: Vec<_> = params.iter().map(|p| &p.ident).collect();
    let types: Vec<_> = params.iter().map(|p| &p.ty).collect();
    let name_strs: Vec<_> = names.iter().map(|n| n.to_string()).collect();
    let params_desc = params.iter().zip(&name_strs).map(|(prm, n)| {
        let ty = &prm.ty;
        let ty = quote!(#ty).to_string();
        quote!(#krate::ParamDescriptor::new(#n, #ty))
    });
    let decl: Vec<_> = params
        .iter()
        .map(|prm| {
            let (id, ty) = (&prm.ident, &prm.ty);
            let m = prm.mutable.then(|| quote!(mut));
            quote!(#m #id: #ty)
        })
        .collect();
    let plain_decl: Vec<_> = names.iter().zip(&types).map(|(id, ty)| quote!(#id: #ty)).collect();
    // Spanned at each type, so that a parameter that is not `Serialize` is reported there.
    let records: Vec<_> = params
        .iter()
        .zip(&name_strs)
        .map(|(prm, n)| {
            let (id, ty) = (&prm.ident, &prm.ty);
            quote_spanned! {ty.span()=> (#n, #e::param_repr::<#ty>(&#id)) }
        })
        .collect();
    // The controller entry: the pipeline run from parameters given as JSON, as a remote
    // controller process does. Each parameter is read back at its type's location.
    let from_json = params.iter().zip(&name_strs).map(|(prm, n)| {
        let (id, ty) = (&prm.ident, &prm.ty);
        let read = located_at(quote!(#e::param_from_json::<#ty>(&mut __params, #n)), ty.span());
        quote!(let #id: #ty = #read?;)
    });
    // `return_value = "name"`: the body's value is also recorded as the run's output (so the
    // return type must be `Serialize`, reported at it).
    let record_return = o.return_value.as_ref().map(|name| {
        let record = located_at(quote!(#e::record_return::<#ret>), ret.span());
        quote!(#record(#name, &__value);)
    });
    let (run_body, asyncness, dot_await) = match (is_async, record_return) {
        (true, None) => (
            quote!(#e::run_async::<#ret>(&__PIPELINE_DESCRIPTOR, __params, async move #block).await),
            quote!(async),
            quote!(.await),
        ),
        (true, Some(record)) => (
            quote!(#e::run_async::<#ret>(&__PIPELINE_DESCRIPTOR, __params, async move {
                let __value: #ret = async move #block.await;
                #record
                __value
            }).await),
            quote!(async),
            quote!(.await),
        ),
        (false, None) => (
            quote!(#e::run::<#ret>(&__PIPELINE_DESCRIPTOR, __params, move || -> #ret #block)),
            quote!(),
            quote!(),
        ),
        (false, Some(record)) => (
            quote!(#e::run::<#ret>(&__PIPELINE_DESCRIPTOR, __params, move || -> #ret {
                let __value: #ret = (move || -> #ret #block)();
                #record
                __value
            })),
            quote!(),
            quote!(),
        ),
    };
    // `resume`: the parameters the run was recorded with, read back the same way.
    let from_record = params.iter().zip(&name_strs).map(|(prm, n)| {
        let (id, ty) = (&prm.ident, &prm.ty);
        let read = located_at(quote!(#e::param_from_json::<#ty>(&mut __params, #n)), ty.span());
        quote!(let #id: #ty = #read.map_err(|__e| #e::resume_error(__run, __e))?;)
    });
    let resume_body = if is_async {
        quote!(#e::resume_config(__run).scope_async(#ident::run(#(#names),*)).await)
    } else {
        quote!(#e::resume_config(__run).scope(|| #ident::run(#(#names),*)))
    };
    let run_controller = if is_async {
        quote!(#krate::component::block_on(#ident::run(#(#names),*)))
    } else {
        quote!(#ident::run(#(#names),*))
    };
    let spawn = o.parallel_instances.then(|| {
        quote! {
            /// Starts a run on a thread of its own (`multi_instance_support = "parallel"`); join
            /// it, or wait for every such run with `wait_for_multi_pipelines`.
            #vis fn spawn(#(#plain_decl),*) -> #krate::Spawned<#ret> {
                #e::spawn(move || #ident::run(#(#names),*))
            }
        }
    });
    let options = options_tokens(o, krate);
    let version = match &o.version {
        Some(v) => some(v),
        None => quote!(::core::option::Option::None),
    };

    quote! {
        #[doc = ::core::concat!("The pipeline `", #name, "`: [`Self::run`] runs it and returns the run's record too.")]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #ident {}

        #(#attrs)*
        #vis #asyncness fn #ident(#(#decl),*) -> #ret {
            #e::expect_started(#ident::run(#(#names),*)#dot_await)
        }

        const _: () = {
            static __PIPELINE_DESCRIPTOR: #krate::PipelineDescriptor = #krate::PipelineDescriptor {
                name: #name,
                project: #project,
                version: #version,
                function: ::core::stringify!(#ident),
                module_path: ::core::module_path!(),
                code_hash: #code_hash,
                is_async: #is_async,
                params: &[#(#params_desc),*],
                options: #options,
                controller: __pipeline_controller,
            };

            #p::inventory::submit! { #p::PipelineRegistration(&__PIPELINE_DESCRIPTOR) }

            // `run` repeats the user's return type, where the user cannot put an `allow`.
            #[allow(dead_code, clippy::type_complexity)]
            impl #ident {
                /// Runs the pipeline; returns its value together with the record of the run, or why
                /// it could not start.
                #vis #asyncness fn run(#(#decl),*) -> ::core::result::Result<#krate::Finished<#ret>, #krate::PipelineError> {
                    let __params = ::std::vec![#(#records),*];
                    #run_body
                }

                #spawn

                /// Takes failed, aborted or crashed run `__run` of this pipeline up again, under
                /// its id and with the parameters it was recorded with: steps that finished with
                /// the same code and inputs are reused (shown as cached), the others run.
                #[allow(unused_mut)]
                #vis #asyncness fn resume(__run: &str) -> ::core::result::Result<#krate::Finished<#ret>, #krate::PipelineError> {
                    let mut __params = #e::resume_params(&__PIPELINE_DESCRIPTOR, __run)?;
                    #(#from_record)*
                    #resume_body
                }

                /// Runs the pipeline's controller itself as a job on the Ray cluster, on the queue
                /// `pipeline_execution_queue` names (`services` by default); its steps run remotely
                /// too. Returns at once with a handle to wait for the run.
                #vis fn enqueue(#(#plain_decl),*) -> ::core::result::Result<#krate::RemoteRun, #krate::PipelineError> {
                    #e::enqueue(&__PIPELINE_DESCRIPTOR, ::std::vec![#(#records),*])
                }

                /// What the framework knows about this pipeline.
                #vis fn descriptor() -> &'static #krate::PipelineDescriptor {
                    &__PIPELINE_DESCRIPTOR
                }
            }

            #[allow(unused_mut)]
            fn __pipeline_controller(__json: &str) -> ::core::result::Result<bool, ::std::string::String> {
                let mut __params = #e::params_from_json(__json)?;
                #(#from_json)*
                match #run_controller {
                    ::core::result::Result::Ok(__finished) => ::core::result::Result::Ok(__finished.run.is_successful()),
                    ::core::result::Result::Err(__error) => ::core::result::Result::Err(::std::string::ToString::to_string(&__error)),
                }
            }
        };
    }
}

/// `tokens` reported at `at` but resolved as call-site code: every token gets the call site's
/// name resolution with `at`'s location.
fn located_at(tokens: TokenStream, at: Span) -> TokenStream {
    let span = Span::call_site().located_at(at);
    tokens
        .into_iter()
        .map(|tt| match tt {
            proc_macro2::TokenTree::Group(g) => {
                let mut group = proc_macro2::Group::new(g.delimiter(), located_at(g.stream(), at));
                group.set_span(span);
                proc_macro2::TokenTree::Group(group)
            }
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}

fn some(value: impl ToTokens) -> TokenStream {
    quote!(::core::option::Option::Some(#value))
}

/// The options as a `PipelineOptions` literal naming only the options given.
fn options_tokens(o: &Options, krate: &TokenStream) -> TokenStream {
    let mut fields = Vec::new();
    for (field, value) in [
        ("return_value", &o.return_value),
        ("default_queue", &o.default_queue),
        ("output_uri", &o.output_uri),
        ("target_project", &o.target_project),
    ] {
        if let Some(value) = value {
            let (field, value) = (format_ident!("{}", field), some(value));
            fields.push(quote!(#field: #value));
        }
    }
    for (field, value) in [
        ("abort_on_failure", o.abort_on_failure),
        ("add_run_number", o.add_run_number),
        ("start_controller_locally", o.start_controller_locally),
        ("add_pipeline_tags", o.add_pipeline_tags),
    ] {
        if let Some(value) = value {
            let field = format_ident!("{}", field);
            fields.push(quote!(#field: #value));
        }
    }
    match &o.pipeline_execution_queue {
        Some(Some(queue)) => fields.push(quote!(pipeline_execution_queue: ::core::option::Option::Some(#queue))),
        Some(None) => fields.push(quote!(pipeline_execution_queue: ::core::option::Option::None)),
        None => {}
    }
    if o.parallel_instances {
        fields.push(quote!(multi_instance: #krate::MultiInstance::Parallel));
    }
    if !o.args_map.is_empty() {
        let sections = o.args_map.iter().map(|(s, ps)| quote!((#s, &[#(#ps),*])));
        fields.push(quote!(args_map: &[#(#sections),*]));
    }
    if let Some(retry) = &o.retry {
        fields.push(quote!(retry: #krate::RetryPolicy::#retry));
    }
    if !o.tags.is_empty() {
        let tags = &o.tags;
        fields.push(quote!(tags: &[#(#tags),*]));
    }
    if let Some(limit) = o.time_limit {
        let limit = duration(limit);
        fields.push(quote!(time_limit: #limit));
    }
    if let Some(n) = o.max_parallel {
        let n = some(n);
        fields.push(quote!(max_parallel: #n));
    }
    if let Some(codec) = &o.codec {
        fields.push(quote!(codec: #krate::Codec::#codec));
    }
    if fields.is_empty() {
        return quote!(#krate::PipelineOptions::DEFAULT);
    }
    // `..DEFAULT` only when some of the 16 fields are left out (clippy rejects a needless one).
    let rest = (fields.len() < 16).then(|| quote!(..#krate::PipelineOptions::DEFAULT));
    quote!(#krate::PipelineOptions { #(#fields,)* #rest })
}
