//! Options for one call of a component (Prefect's `with_options`, Flyte's `with_overrides`):
//! that node runs with them, other calls of the component keep the attribute's.
//!
//! ```
//! use pipeline_runtime::prelude::*;
//! use pipeline_runtime::with_options;
//! use std::time::Duration;
//!
//! #[component]
//! fn fit(rows: Vec<f64>, rate: f64) -> f64 {
//!     rows.iter().sum::<f64>() * rate
//! }
//!
//! #[pipeline(name = "per_call_options", project = "docs")]
//! fn sweep() -> f64 {
//!     let rows = vec![1.0, 2.0];
//!     let plain = fit(rows.clone(), 0.1);
//!     let careful = with_options::<fit>()
//!         .name("fit_careful")
//!         .retry_on_failure(2)
//!         .time_limit(Duration::from_secs(600))
//!         .call((rows, 0.2));
//!     plain.get().unwrap() + careful.get().unwrap()
//! }
//!
//! pipeline_runtime::set_recording(false);
//! debug_pipeline();
//! let finished = sweep::run().unwrap();
//! assert!((finished.output - 0.9).abs() < 1e-9);
//! assert!(finished.run.dag().node("fit_careful").is_some());
//! ```

use crate::component::{Component, Params, call_with_descriptor};
use crate::value::handle::{Input, IntoInput};
use crate::value::outputs::Outputs;
use pipeline_core::{
    ComponentDescriptor, ComponentOptions, ComponentValue, ContinueBehaviour, RetryBackoff, RetryPolicy,
};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Options for one call of component `C`; see [`with_options`].
#[must_use = "nothing is called until `.call(...)`"]
pub struct WithOptions<C: Component> {
    options: ComponentOptions,
    name: Option<String>,
    component: PhantomData<fn() -> C>,
}

/// Starts options for one call of `C`, from the options of its attribute:
/// `with_options::<fit>().time_limit(d).call((rows, 0.1))`.
pub fn with_options<C: Component>() -> WithOptions<C> {
    WithOptions {
        options: C::DESCRIPTOR.options,
        name: None,
        component: PhantomData,
    }
}

impl<C: Component> WithOptions<C> {
    /// The node's name, instead of the component's (`fit`, `fit_1`...); a name taken in the
    /// run gets a suffix. Letters, digits, `_`, `-`, `.`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The step is stopped once an attempt ran this long.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.options.time_limit = Some(limit);
        self
    }

    /// The queue the step is sent to (remote mode).
    pub fn execution_queue(mut self, queue: &str) -> Self {
        self.options.execution_queue = Some(intern(queue));
        self
    }

    /// How many times a failure is retried.
    pub fn retry_on_failure(mut self, retries: u32) -> Self {
        self.options.retry = match retries {
            0 => RetryPolicy::Never,
            n => RetryPolicy::Count(n),
        };
        self
    }

    /// The waits before retries (see [`RetryBackoff`]).
    pub fn retry_backoff(mut self, backoff: RetryBackoff) -> Self {
        self.options.retry_backoff = backoff;
        self
    }

    /// Whether the step is served from the cache when it can be.
    pub fn cache(mut self, cache: bool) -> Self {
        self.options.cache = cache;
        self
    }

    /// What the step's failure means for the rest of the run.
    pub fn continue_behaviour(mut self, behaviour: ContinueBehaviour) -> Self {
        self.options.continue_behaviour = behaviour;
        self
    }

    /// The step's tags (in place of the attribute's).
    pub fn tags(mut self, tags: &[&str]) -> Self {
        let tags: Vec<&'static str> = tags.iter().map(|t| intern(t)).collect();
        self.options.tags = intern_list(tags);
        self
    }

    /// Calls the component with these options, on its arguments as a tuple (one element per
    /// parameter, each what the plain call takes: a value, a handle, a list of handles).
    pub fn call<I: IntoInputs<C::Params>>(self, args: I) -> <C::Outputs as Outputs>::Handles {
        let descriptor = descriptor_with(C::DESCRIPTOR, self.options);
        if let Some(name) = &self.name
            && let Some(problem) = pipeline_core::names::problem(name)
        {
            return C::Outputs::failed(
                crate::error::HandleError::Failed {
                    step: name.clone(),
                    error: pipeline_core::StepError::new(
                        pipeline_core::ErrorKind::Setup,
                        format!("`{name}` cannot name a step: {problem}"),
                    ),
                },
                crate::value::handle::NodeRef::NONE,
                &name.as_str().into(),
            );
        }
        call_with_descriptor::<C>(descriptor, args.into_inputs(), self.name.as_deref())
    }
}

/// A tuple of arguments for the parameters `P` (a tuple of their types).
pub trait IntoInputs<P: Params> {
    /// The arguments as the inputs of one call.
    fn into_inputs(self) -> P::Inputs;
}

macro_rules! tuple_inputs {
    ($($t:ident $a:ident $i:tt),*) => {
        impl<$($t: ComponentValue, $a: IntoInput<$t>),*> IntoInputs<($($t,)*)> for ($($a,)*) {
            #[allow(clippy::unused_unit)]
            fn into_inputs(self) -> ($(Input<$t>,)*) {
                ($(self.$i.into_input(),)*)
            }
        }
    };
}

tuple_inputs!();
tuple_inputs!(A IA 0);
tuple_inputs!(A IA 0, B IB 1);
tuple_inputs!(A IA 0, B IB 1, C IC 2);
tuple_inputs!(A IA 0, B IB 1, C IC 2, D ID 3);
tuple_inputs!(A IA 0, B IB 1, C IC 2, D ID 3, E IE 4);
tuple_inputs!(A IA 0, B IB 1, C IC 2, D ID 3, E IE 4, F IF 5);
tuple_inputs!(A IA 0, B IB 1, C IC 2, D ID 3, E IE 4, F IF 5, G IG 6);
tuple_inputs!(A IA 0, B IB 1, C IC 2, D ID 3, E IE 4, F IF 5, G IG 6, H IH 7);
tuple_inputs!(A IA 0, B IB 1, C IC 2, D ID 3, E IE 4, F IF 5, G IG 6, H IH 7, I II 8);
tuple_inputs!(A IA 0, B IB 1, C IC 2, D ID 3, E IE 4, F IF 5, G IG 6, H IH 7, I II 8, J IJ 9);
tuple_inputs!(A IA 0, B IB 1, C IC 2, D ID 3, E IE 4, F IF 5, G IG 6, H IH 7, I II 8, J IJ 9, K IK 10);
tuple_inputs!(A IA 0, B IB 1, C IC 2, D ID 3, E IE 4, F IF 5, G IG 6, H IH 7, I II 8, J IJ 9, K IK 10, L IL 11);

/// `base` with `options`: one `'static` descriptor per distinct set, kept for the process (a
/// loop of calls with the same options shares one), so the engine and executors read a
/// node's options where they read any component's.
pub(crate) fn descriptor_with(
    base: &'static ComponentDescriptor,
    options: ComponentOptions,
) -> &'static ComponentDescriptor {
    // Every option a call or a controller step may set (callbacks by address).
    let key = format!(
        "{:p}|{:?}|{:?}|{:?}|{:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        base,
        options.time_limit,
        options.execution_queue,
        options.retry,
        options.retry_backoff,
        options.cache,
        options.continue_behaviour,
        options.tags,
        options.parents,
        options.callbacks,
        options.monitor_metrics,
        options.monitor_artifacts,
        options.monitor_models,
        options.output_uri,
    );
    static DESCRIPTORS: OnceLock<Mutex<HashMap<String, &'static ComponentDescriptor>>> = OnceLock::new();
    let mut known = crate::sync::lock(DESCRIPTORS.get_or_init(Default::default));
    known
        .entry(key)
        .or_insert_with(|| Box::leak(Box::new(ComponentDescriptor { options, ..*base })))
}

/// One `'static` copy of each string given, for options that hold `&'static str`.
pub(crate) fn intern(s: &str) -> &'static str {
    static STRINGS: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let mut known = crate::sync::lock(STRINGS.get_or_init(Default::default));
    if let Some(s) = known.get(s) {
        return s;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    known.insert(s.to_string(), leaked);
    leaked
}

/// One `'static` copy of each list of interned strings.
pub(crate) fn intern_list(list: Vec<&'static str>) -> &'static [&'static str] {
    static LISTS: OnceLock<Mutex<HashMap<Vec<&'static str>, &'static [&'static str]>>> = OnceLock::new();
    let mut known = crate::sync::lock(LISTS.get_or_init(Default::default));
    known
        .entry(list.clone())
        .or_insert_with(|| Box::leak(list.into_boxed_slice()))
}

/// A pair of interned strings (a monitored name and its name on the run).
type Pair = (&'static str, &'static str);
/// Four interned strings (a monitored scalar's title and series, and theirs on the run).
type Quad = (&'static str, &'static str, &'static str, &'static str);

/// One `'static` copy of each list of interned pairs.
pub(crate) fn intern_pairs(list: Vec<Pair>) -> &'static [Pair] {
    static LISTS: OnceLock<Mutex<HashMap<Vec<Pair>, &'static [Pair]>>> = OnceLock::new();
    let mut known = crate::sync::lock(LISTS.get_or_init(Default::default));
    known
        .entry(list.clone())
        .or_insert_with(|| Box::leak(list.into_boxed_slice()))
}

/// One `'static` copy of each list of interned quadruples.
pub(crate) fn intern_quads(list: Vec<Quad>) -> &'static [Quad] {
    static LISTS: OnceLock<Mutex<HashMap<Vec<Quad>, &'static [Quad]>>> = OnceLock::new();
    let mut known = crate::sync::lock(LISTS.get_or_init(Default::default));
    known
        .entry(list.clone())
        .or_insert_with(|| Box::leak(list.into_boxed_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_options_share_one_descriptor() {
        let base = &crate::store::TEST_COMPONENT;
        let with = |secs| ComponentOptions {
            time_limit: Some(Duration::from_secs(secs)),
            execution_queue: Some(intern("gpu")),
            ..ComponentOptions::DEFAULT
        };
        let a = descriptor_with(base, with(5));
        let b = descriptor_with(base, with(5));
        let c = descriptor_with(base, with(6));
        assert!(std::ptr::eq(a, b));
        assert!(!std::ptr::eq(a, c));
        assert_eq!(c.options.time_limit, Some(Duration::from_secs(6)));
        assert_eq!((c.name, c.code_hash), ("step", "0"));
        assert!(std::ptr::eq(intern("gpu"), intern("gpu")));
        // Every option a step may set tells descriptors apart.
        let monitored = descriptor_with(
            base,
            ComponentOptions {
                monitor_artifacts: intern_pairs(vec![("model", "best")]),
                ..with(5)
            },
        );
        let elsewhere = descriptor_with(
            base,
            ComponentOptions {
                output_uri: Some(intern("s3://bucket/x")),
                ..with(5)
            },
        );
        let metrics = descriptor_with(
            base,
            ComponentOptions {
                monitor_metrics: intern_quads(vec![("loss", "train", "loss", "train")]),
                ..with(5)
            },
        );
        for (i, x) in [a, monitored, elsewhere, metrics].iter().enumerate() {
            for y in [a, monitored, elsewhere, metrics].iter().skip(i + 1) {
                assert!(!std::ptr::eq(*x, *y));
            }
        }
        assert_eq!(monitored.options.monitor_artifacts, &[("model", "best")]);
    }
}
