//! `#[pipeline(...)]`: the options model, its checks, and the generated code.

use crate::args::{self, Arg};
use crate::component::opt_duration;
use crate::signature;
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
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

struct Options {
    name: LitStr,
    project: LitStr,
    version: Option<LitStr>,
    return_value: Option<LitStr>,
    default_queue: Option<LitStr>,
    abort_on_failure: bool,
    pipeline_execution_queue: Option<Option<LitStr>>,
    parallel_instances: bool,
    parallel_span: Span,
    add_run_number: bool,
    args_map: Vec<(LitStr, Vec<LitStr>)>,
    start_controller_locally: bool,
    retry: Option<TokenStream>,
    output_uri: Option<LitStr>,
    tags: Vec<LitStr>,
    add_pipeline_tags: bool,
    target_project: Option<LitStr>,
    time_limit: Option<std::time::Duration>,
    max_parallel: Option<usize>,
    codec: Option<TokenStream>,
    krate: Option<syn::Path>,
}

fn parse_options(attr: TokenStream) -> syn::Result<Options> {
    let (mut name, mut project) = (None, None);
    let mut o = Options {
        name: LitStr::new("", Span::call_site()),
        project: LitStr::new("", Span::call_site()),
        version: None,
        return_value: None,
        default_queue: None,
        abort_on_failure: false,
        pipeline_execution_queue: None,
        parallel_instances: false,
        parallel_span: Span::call_site(),
        add_run_number: true,
        args_map: Vec::new(),
        start_controller_locally: false,
        retry: None,
        output_uri: None,
        tags: Vec::new(),
        add_pipeline_tags: false,
        target_project: None,
        time_limit: None,
        max_parallel: None,
        codec: None,
        krate: None,
    };
    // A missing option is reported at the options given, or at the attribute if there are none.
    let given = attr.clone();
    for arg in args::parse_args(attr)? {
        match arg.name().as_str() {
            "name" => {
                let n = arg.str()?;
                args::check_name(&n, "pipeline")?;
                name = Some(n);
            }
            "project" => {
                let p = arg.str()?;
                if p.value().trim().is_empty() {
                    return Err(syn::Error::new(p.span(), "`project` cannot be empty"));
                }
                project = Some(p);
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
            "abort_on_failure" => o.abort_on_failure = arg.bool()?,
            "pipeline_execution_queue" => {
                o.pipeline_execution_queue = Some(match arg.value()? {
                    syn::Expr::Path(p) if p.path.is_ident("None") => None,
                    _ => Some(arg.str()?),
                })
            }
            "multi_instance_support" => {
                o.parallel_span = arg.key.span();
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
            "add_run_number" => o.add_run_number = arg.bool()?,
            "args_map" => o.args_map = parse_args_map(&arg)?,
            "start_controller_locally" => o.start_controller_locally = arg.bool()?,
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
            "add_pipeline_tags" => o.add_pipeline_tags = arg.bool()?,
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
            "crate" => o.krate = Some(args::crate_path(&arg)?),
            _ => return Err(args::unknown(&arg, KNOWN, NOT_APPLICABLE)),
        }
    }
    o.name = name.ok_or_else(|| syn::Error::new_spanned(&given, "a pipeline needs `name = \"...\"`"))?;
    o.project = project.ok_or_else(|| syn::Error::new_spanned(&given, "a pipeline needs `project = \"...\"`"))?;
    Ok(o)
}

/// `args_map(section = ["param", ...], ...)`.
fn parse_args_map(arg: &Arg) -> syn::Result<Vec<(LitStr, Vec<LitStr>)>> {
    arg.nested()?
        .iter()
        .map(|section| Ok((LitStr::new(&section.name(), section.key.span()), section.str_list()?)))
        .collect()
}

pub fn expand(attr: TokenStream, item: ItemFn) -> syn::Result<TokenStream> {
    let o = parse_options(attr)?;
    let params = signature::params(&item, "pipeline")?;
    for (_, names) in &o.args_map {
        for n in names {
            if !params.iter().any(|p| p.ident == n.value()) {
                return Err(syn::Error::new(
                    n.span(),
                    "`args_map` names a parameter this pipeline does not have",
                ));
            }
        }
    }
    let krate = args::runtime_path(o.krate.clone());
    let p = quote!(#krate::__private);

    let ident = &item.sig.ident;
    let vis = &item.vis;
    let is_async = item.sig.asyncness.is_some();
    let desc = quote::format_ident!("__PIPELINE_{}", ident);
    let code_hash = args::code_hash(&item);
    let attrs = &item.attrs;
    let ret = signature::return_type(&item);
    let block = &item.block;

    let names: Vec<_> = params.iter().map(|p| &p.ident).collect();
    let types: Vec<_> = params.iter().map(|p| &p.ty).collect();
    let name_strs: Vec<_> = names.iter().map(|n| n.to_string()).collect();
    let type_strs: Vec<_> = types.iter().map(|t| quote!(#t).to_string()).collect();
    let decl = params.iter().map(|prm| {
        let (id, ty) = (&prm.ident, &prm.ty);
        let m = prm.mutable.then(|| quote!(mut));
        quote!(#m #id: #ty)
    });
    let decl2 = decl.clone();
    // Spanned at each type, so that a parameter that is not `Serialize` is reported there.
    let records = params.iter().zip(&name_strs).map(|(prm, n)| {
        let (id, ty) = (&prm.ident, &prm.ty);
        quote_spanned! {ty.span()=> (#n, #p::param_repr::<#ty>(&#id)) }
    });

    if o.parallel_instances && is_async {
        return Err(syn::Error::new(
            o.parallel_span,
            "`multi_instance_support = \"parallel\"` is for sync pipelines; an async pipeline's runs \
             already run in parallel when their futures are spawned or joined",
        ));
    }
    // The controller entry: the pipeline run from parameters given as JSON, as a remote
    // controller process does. Each parameter is read back at its type's location.
    let controller = quote::format_ident!("__pipeline_controller_{}", ident);
    let from_json = params.iter().zip(&name_strs).map(|(prm, n)| {
        let (id, ty) = (&prm.ident, &prm.ty);
        let read = crate::component::located_at(quote!(#p::param_from_json::<#ty>(&mut __params, #n)), ty.span());
        quote!(let #id: #ty = #read?;)
    });
    let names_for_controller = params.iter().map(|prm| &prm.ident);
    let run_controller = if is_async {
        quote!(#p::block_on(#ident::run(#(#names_for_controller),*)))
    } else {
        quote!(#ident::run(#(#names_for_controller),*))
    };
    let enqueue_records = params.iter().zip(&name_strs).map(|(prm, n)| {
        let (id, ty) = (&prm.ident, &prm.ty);
        quote_spanned! {ty.span()=> (#n, #p::param_repr::<#ty>(&#id)) }
    });
    let enqueue_decl = params.iter().map(|prm| {
        let (id, ty) = (&prm.ident, &prm.ty);
        quote!(#id: #ty)
    });
    let spawn = o.parallel_instances.then(|| {
        let names = params.iter().map(|prm| &prm.ident);
        let decl = params.iter().map(|prm| {
            let (id, ty) = (&prm.ident, &prm.ty);
            quote!(#id: #ty)
        });
        quote! {
            /// Starts a run on a thread of its own (`multi_instance_support = "parallel"`); join
            /// it, or wait for every such run with `wait_for_multi_pipelines`.
            #vis fn spawn(#(#decl),*) -> #krate::Spawned<#ret> {
                #p::spawn_pipeline(move || #ident::run(#(#names),*))
            }
        }
    });
    let (run_body, asyncness, dot_await) = if is_async {
        (
            quote!(#p::run_pipeline_async::<#ret>(&#desc, __params, async move #block).await),
            quote!(async),
            quote!(.await),
        )
    } else {
        (
            quote!(#p::run_pipeline::<#ret>(&#desc, __params, move || -> #ret #block)),
            quote!(),
            quote!(),
        )
    };

    let name = &o.name;
    let project = &o.project;
    let version = opt(&o.version);
    let return_value = opt(&o.return_value);
    let default_queue = opt(&o.default_queue);
    let abort = o.abort_on_failure;
    let exec_queue = match &o.pipeline_execution_queue {
        None => quote!(::core::option::Option::Some("services")),
        Some(q) => opt(q),
    };
    let multi = if o.parallel_instances {
        quote!(Parallel)
    } else {
        quote!(Sequential)
    };
    let add_run_number = o.add_run_number;
    let args_map = o.args_map.iter().map(|(s, ps)| quote!((#s, &[#(#ps),*])));
    let locally = o.start_controller_locally;
    let retry = o.retry.clone().unwrap_or_else(|| quote!(Never));
    let output_uri = opt(&o.output_uri);
    let tags = &o.tags;
    let add_tags = o.add_pipeline_tags;
    let target_project = opt(&o.target_project);
    let time_limit = opt_duration(o.time_limit, &krate);
    let codec = o.codec.clone().unwrap_or_else(|| quote!(Bincode));
    let max_parallel = match o.max_parallel {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };

    Ok(quote! {
        #[doc = ::core::concat!("The pipeline `", #name, "`: [`Self::run`] runs it and returns the run's record too.")]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #ident {}

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

            /// Runs the pipeline's controller itself as a job on the Ray cluster, on the queue
            /// `pipeline_execution_queue` names (`services` by default); its steps run remotely
            /// too. Returns at once with a handle to wait for the run.
            #vis fn enqueue(#(#enqueue_decl),*) -> ::core::result::Result<#krate::RemoteRun, #krate::PipelineError> {
                #p::enqueue_pipeline(&#desc, ::std::vec![#(#enqueue_records),*])
            }

            /// What the framework knows about this pipeline.
            #vis fn descriptor() -> &'static #p::PipelineDescriptor {
                &#desc
            }
        }

        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        static #desc: #p::PipelineDescriptor = #p::PipelineDescriptor {
            name: #name,
            project: #project,
            version: #version,
            function: ::core::stringify!(#ident),
            module_path: ::core::module_path!(),
            code_hash: #code_hash,
            is_async: #is_async,
            params: &[#(#p::ParamDescriptor { name: #name_strs, type_name: #type_strs }),*],
            options: #p::PipelineOptions {
                return_value: #return_value,
                default_queue: #default_queue,
                abort_on_failure: #abort,
                pipeline_execution_queue: #exec_queue,
                multi_instance: #p::MultiInstance::#multi,
                add_run_number: #add_run_number,
                args_map: &[#(#args_map),*],
                start_controller_locally: #locally,
                retry: #p::RetryPolicy::#retry,
                output_uri: #output_uri,
                tags: &[#(#tags),*],
                add_pipeline_tags: #add_tags,
                target_project: #target_project,
                time_limit: #time_limit,
                max_parallel: #max_parallel,
                codec: #p::Codec::#codec,
            },
            controller: #controller,
        };

        #p::inventory::submit! { #p::PipelineRegistration(&#desc) }

        #[doc(hidden)]
        #[allow(non_snake_case, unused_mut)]
        fn #controller(__json: &str) -> ::core::result::Result<bool, ::std::string::String> {
            let mut __params = #p::params_from_json(__json)?;
            #(#from_json)*
            match #run_controller {
                ::core::result::Result::Ok(__finished) => ::core::result::Result::Ok(__finished.run.is_successful()),
                ::core::result::Result::Err(__error) => ::core::result::Result::Err(::std::string::ToString::to_string(&__error)),
            }
        }

        #(#attrs)*
        #vis #asyncness fn #ident(#(#decl2),*) -> #ret {
            #p::expect_started(#ident::run(#(#names),*)#dot_await)
        }
    })
}

fn opt(s: &Option<LitStr>) -> TokenStream {
    match s {
        Some(s) => quote!(::core::option::Option::Some(#s)),
        None => quote!(::core::option::Option::None),
    }
}
