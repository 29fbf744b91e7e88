//! Checking a [`PipelineSpec`] against the components of this binary, before anything runs:
//! every mistake found (unknown step, component, argument or output; a missing argument; a
//! type that does not fit; a literal that does not decode; a cycle) is reported at once, each
//! naming its step and argument. What passes becomes a [`Plan`]: steps in an order that
//! respects every edge, each argument resolved to a literal, a parameter or outputs.

use super::spec::{Monitored, MonitoredMetric, ParameterSpec, PipelineSpec, StepSpec};
use crate::api::call_options::{descriptor_with, intern, intern_list};
use crate::value::dynamic::{DynCall, DynOutput, DynParam};
use pipeline_core::format::short_type;
use pipeline_core::{ComponentDescriptor, ComponentOptions, RetryBackoff, RetryPolicy, names, registry};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Where an argument's value comes from.
#[derive(Debug, Clone)]
pub(crate) enum ArgPlan {
    /// A literal, as written.
    Json(serde_json::Value),
    /// Pipeline parameter `.0`.
    Param(String),
    /// Output `.1` of planned step `.0`.
    Output(usize, usize),
    /// Outputs gathered into a `Vec` (a fan-in).
    Gather(Vec<(usize, usize)>),
    /// `${STEP.id}`: the id of planned step `.0` (`RUN/STEP`), a `String`; the step is a
    /// parent.
    StepId(usize),
}

/// A checked step.
pub(crate) struct PlannedStep {
    pub(crate) name: String,
    /// Its component, with the step's options in place of the component's own.
    pub(crate) descriptor: &'static ComponentDescriptor,
    /// One per parameter, in order.
    pub(crate) args: Vec<ArgPlan>,
}

/// A checked spec: its steps in an order where every step comes after those it depends on.
pub(crate) struct Plan {
    pub(crate) steps: Vec<PlannedStep>,
}

/// A step's component with its parameters' and outputs' types.
type Signature = (&'static ComponentDescriptor, Vec<DynParam>, Vec<DynOutput>);

/// A reference in an argument: `${pipeline.NAME}` or `${STEP.OUTPUT}`. A step's name may hold
/// dots, so an output reference is kept whole (`STEP.OUTPUT`) and split where a step is named.
enum Reference<'a> {
    Param(&'a str),
    Output(&'a str),
}

/// `STEP.OUTPUT` split as (step, output) at the dot whose left side is the longest step name
/// `is_step` knows; at the first dot if none is.
fn split_output(inner: &str, is_step: impl Fn(&str) -> bool) -> (&str, &str) {
    let dots = inner.match_indices('.').map(|(i, _)| i);
    let at = dots
        .clone()
        .rev()
        .find(|&i| is_step(&inner[..i]))
        .or_else(|| dots.clone().next());
    let at = at.expect("an output reference holds a dot");
    (&inner[..at], &inner[at + 1..])
}

/// The reference a string is, if it is one; `Err` for one that is malformed.
fn reference(text: &str) -> Option<Result<Reference<'_>, String>> {
    let inner = text.trim().strip_prefix("${")?.strip_suffix('}')?;
    Some(match inner.split_once('.') {
        Some(("pipeline", name)) if !name.is_empty() => Ok(Reference::Param(name)),
        Some((step, output)) if !step.is_empty() && !output.is_empty() => Ok(Reference::Output(inner)),
        _ => Err(format!(
            "`{text}` is not a reference: write `${{STEP.OUTPUT}}` or `${{pipeline.PARAMETER}}`"
        )),
    })
}

pub(super) fn describe(descriptor: &ComponentDescriptor) -> (Vec<DynParam>, Vec<DynOutput>) {
    let mut frame = DynCall::Describe(None);
    (descriptor.entry.dynamic)(&mut frame);
    match frame {
        DynCall::Describe(Some(d)) => d,
        _ => (Vec::new(), Vec::new()),
    }
}

/// Checks `spec` with `values` as its parameters' values; every problem found, or the plan.
pub(crate) fn plan(spec: &PipelineSpec, values: &BTreeMap<String, serde_json::Value>) -> Result<Plan, Vec<String>> {
    let mut errors = Vec::new();
    if let Some(problem) = names::problem(&spec.name) {
        errors.push(format!("the pipeline name `{}`: {problem}", spec.name));
    }
    if let Some(problem) = names::problem(&spec.project) {
        errors.push(format!("the project name `{}`: {problem}", spec.project));
    }
    if spec.steps.is_empty() {
        errors.push("the pipeline has no steps".to_string());
    }
    if let Some(codec) = &spec.options.codec
        && !["bincode", "json"].contains(&codec.as_str())
    {
        errors.push(format!("the codec `{codec}` is not one of `bincode`, `json`"));
    }
    check_seconds(&mut errors, "the pipeline's `time_limit`", spec.options.time_limit);
    let mut params: HashMap<&str, &ParameterSpec> = HashMap::new();
    for p in &spec.parameters {
        if params.insert(p.name.as_str(), p).is_some() {
            errors.push(format!("the parameter `{}` is defined twice", p.name));
        }
    }
    for name in values.keys() {
        if !params.contains_key(name.as_str()) {
            errors.push(format!(
                "a value is given for `{name}`, which is not a parameter of the pipeline"
            ));
        }
    }
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, step) in spec.steps.iter().enumerate() {
        if let Some(problem) = names::problem(&step.name) {
            errors.push(format!("step `{}`: {problem}", step.name));
        } else if step.name == "pipeline" {
            errors.push("a step cannot be called `pipeline`: `${pipeline.NAME}` names parameters".to_string());
        }
        if index.insert(step.name.as_str(), i).is_some() {
            errors.push(format!("two steps are called `{}`", step.name));
        }
    }
    // Per step: its component, and its parameters' and outputs' types.
    let components: Vec<Option<Signature>> = spec
        .steps
        .iter()
        .map(|step| match registry::find_component(&step.component) {
            Ok(Some(d)) => {
                let (params, outputs) = describe(d);
                Some((d, params, outputs))
            }
            // Its base could not be read: that was reported when the controller was built.
            Ok(None) if step.component.is_empty() && step.base.is_some() => None,
            Ok(None) => {
                errors.push(format!(
                    "step `{}`: no component `{}` is registered in this binary",
                    step.name, step.component
                ));
                None
            }
            Err(e) => {
                let e = e.to_string();
                if !errors.contains(&e) {
                    errors.push(e);
                }
                None
            }
        })
        .collect();
    let value_of = |name: &str| values.get(name).or_else(|| params.get(name).map(|p| &p.default));

    let mut args_of: Vec<Vec<ArgPlan>> = Vec::with_capacity(spec.steps.len());
    // Per step: the steps it waits for.
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); spec.steps.len()];
    // Per step: the steps whose id it takes (`${STEP.id}`), which become its parents.
    let mut id_parents: Vec<Vec<String>> = vec![Vec::new(); spec.steps.len()];
    for (i, step) in spec.steps.iter().enumerate() {
        for parent in &step.parents {
            match index.get(parent.as_str()) {
                Some(&p) if p == i => errors.push(format!("step `{}` names itself as a parent", step.name)),
                Some(&p) => edges[i].push(p),
                None => errors.push(format!("step `{}`: its parent `{parent}` is not a step", step.name)),
            }
        }
        check_seconds(
            &mut errors,
            &format!("step `{}`: `time_limit`", step.name),
            step.time_limit,
        );
        let at = |what: &str| format!("step `{}`: `{what}`", step.name);
        if let Some(d) = step.retry_delay
            && !(d.is_finite() && d >= 0.0)
        {
            errors.push(format!("{} must be zero or more seconds, not {d}", at("retry_delay")));
        }
        if let Some(f) = step.retry_backoff
            && !(f.is_finite() && f >= 1.0)
        {
            errors.push(format!(
                "{} multiplies each wait: 1 or more, not {f}",
                at("retry_backoff")
            ));
        }
        if let Some(j) = step.retry_jitter
            && !(j.is_finite() && j >= 0.0)
        {
            errors.push(format!("{} must be zero or more, not {j}", at("retry_jitter")));
        }
        let Some((descriptor, param_types, _)) = &components[i] else {
            args_of.push(Vec::new());
            continue;
        };
        for name in step.function_kwargs.keys() {
            if !descriptor.params.iter().any(|p| p.name == name) {
                let known: Vec<&str> = descriptor.params.iter().map(|p| p.name).collect();
                errors.push(format!(
                    "step `{}`: component `{}` has no parameter `{name}` (its parameters: {})",
                    step.name,
                    descriptor.name,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            }
        }
        let mut args = Vec::with_capacity(descriptor.params.len());
        for (param, ty) in descriptor.params.iter().zip(param_types) {
            let at = || format!("step `{}`, argument `{}`", step.name, param.name);
            let Some(value) = step.function_kwargs.get(param.name) else {
                errors.push(format!("{}: missing (a `{}`)", at(), short_type(ty.type_name)));
                args.push(ArgPlan::Json(serde_json::Value::Null));
                continue;
            };
            let output = |reference: &str, list: bool| -> Result<(usize, usize), String> {
                let Some(Ok(Reference::Output(inner))) = self::reference(reference) else {
                    unreachable!("called on output references only")
                };
                let (name, output) = split_output(inner, |s| index.contains_key(s));
                let Some(&s) = index.get(name) else {
                    return Err(format!("{}: `{reference}` names no step", at()));
                };
                if s == i {
                    return Err(format!("{}: `{reference}` is the step's own output", at()));
                }
                // An unknown component is reported once, at its own step.
                let Some((source, _, outputs)) = components[s].as_ref() else {
                    return Ok((s, usize::MAX));
                };
                let Some(o) = source.outputs.iter().position(|p| p.name == output) else {
                    let known: Vec<&str> = source.outputs.iter().map(|p| p.name).collect();
                    return Err(format!(
                        "{}: step `{name}` has no output `{output}` (its outputs: {})",
                        at(),
                        known.join(", ")
                    ));
                };
                let found = if list {
                    outputs[o].list_type_name
                } else {
                    outputs[o].type_name
                };
                if found != ty.type_name {
                    return Err(format!(
                        "{}: `{reference}` is a `{}`{}, the parameter a `{}`",
                        at(),
                        short_type(outputs[o].type_name),
                        if list { " (gathered: a `Vec` of them)" } else { "" },
                        short_type(ty.type_name)
                    ));
                }
                Ok((s, o))
            };
            // `${STEP.id}` of another step that has no output called `id`.
            let step_id = |inner: &str| -> Option<usize> {
                let (name, output) = split_output(inner, |s| index.contains_key(s));
                let &s = index.get(name)?;
                let has_output = components[s]
                    .as_ref()
                    .is_some_and(|(source, _, _)| source.outputs.iter().any(|p| p.name == "id"));
                (output == "id" && s != i && !has_output).then_some(s)
            };
            let is_output_ref = |v: &serde_json::Value| {
                v.as_str()
                    .and_then(reference)
                    .is_some_and(|r| matches!(r, Ok(Reference::Output(..))))
            };
            let arg: Result<ArgPlan, Vec<String>> = match value {
                serde_json::Value::String(text) => match reference(text) {
                    Some(Err(e)) => Err(vec![format!("{}: {e}", at())]),
                    Some(Ok(Reference::Param(name))) => match value_of(name) {
                        Some(v) => (ty.check_json)(v)
                            .map(|()| ArgPlan::Param(name.to_string()))
                            .map_err(|e| vec![format!("{}: the parameter `{name}`: {e}", at())]),
                        None => Err(vec![format!("{}: `{text}` names no parameter of the pipeline", at())]),
                    },
                    Some(Ok(Reference::Output(inner))) => match step_id(inner) {
                        Some(s) => (ty.check_json)(&serde_json::json!("run/step"))
                            .map(|()| ArgPlan::StepId(s))
                            .map_err(|_| {
                                vec![format!(
                                    "{}: `{text}` is a step's id (a `String`), the parameter a `{}`",
                                    at(),
                                    short_type(ty.type_name)
                                )]
                            }),
                        None => output(text, false)
                            .map(|(s, o)| ArgPlan::Output(s, o))
                            .map_err(|e| vec![e]),
                    },
                    None => literal(&at(), ty, value),
                },
                serde_json::Value::Array(items) if !items.is_empty() && items.iter().all(is_output_ref) => {
                    let (found, wrong): (Vec<_>, Vec<_>) = items
                        .iter()
                        .map(|item| output(item.as_str().expect("checked above"), true))
                        .partition(Result::is_ok);
                    if wrong.is_empty() {
                        Ok(ArgPlan::Gather(found.into_iter().map(Result::unwrap).collect()))
                    } else {
                        Err(wrong.into_iter().map(Result::unwrap_err).collect())
                    }
                }
                serde_json::Value::Array(items) if items.iter().any(is_output_ref) => Err(vec![format!(
                    "{}: a list mixes references and literals; a fan-in lists only `${{STEP.OUTPUT}}` references",
                    at()
                )]),
                _ => literal(&at(), ty, value),
            };
            let arg = match arg {
                Ok(arg) => {
                    match &arg {
                        ArgPlan::Output(s, _) => edges[i].push(*s),
                        ArgPlan::Gather(list) => edges[i].extend(list.iter().map(|(s, _)| *s)),
                        ArgPlan::StepId(s) => {
                            edges[i].push(*s);
                            id_parents[i].push(spec.steps[*s].name.clone());
                        }
                        _ => {}
                    }
                    Some(arg)
                }
                Err(e) => {
                    errors.extend(e);
                    None
                }
            };
            args.push(arg.unwrap_or(ArgPlan::Json(serde_json::Value::Null)));
        }
        args_of.push(args);
    }
    let order = match topological(&spec.steps, &edges) {
        Ok(order) => order,
        Err(cycle) => {
            errors.push(format!("the steps form a cycle: {}", cycle.join(" -> ")));
            Vec::new()
        }
    };
    // A step whose base could not be read has no component and no error here: the controller
    // reported it when it was built.
    if !errors.is_empty() || components.iter().any(Option::is_none) {
        return Err(errors);
    }
    let descriptors: Vec<&'static ComponentDescriptor> = spec
        .steps
        .iter()
        .zip(&components)
        .zip(&id_parents)
        .map(|((step, c), ids)| with_step_options(c.as_ref().expect("no errors").0, step, ids, spec))
        .collect();
    let mut position = vec![0; spec.steps.len()];
    for (at, &i) in order.iter().enumerate() {
        position[i] = at;
    }
    let renumber = |(s, o): (usize, usize)| (position[s], o);
    let mut args_of: Vec<Option<Vec<ArgPlan>>> = args_of.into_iter().map(Some).collect();
    let steps = order
        .iter()
        .map(|&i| PlannedStep {
            name: spec.steps[i].name.clone(),
            descriptor: descriptors[i],
            args: args_of[i]
                .take()
                .expect("each step once")
                .into_iter()
                .map(|a| match a {
                    ArgPlan::Output(s, o) => {
                        let (s, o) = renumber((s, o));
                        ArgPlan::Output(s, o)
                    }
                    ArgPlan::Gather(list) => ArgPlan::Gather(list.into_iter().map(renumber).collect()),
                    ArgPlan::StepId(s) => ArgPlan::StepId(position[s]),
                    other => other,
                })
                .collect(),
        })
        .collect();
    Ok(Plan { steps })
}

fn check_seconds(errors: &mut Vec<String>, what: &str, seconds: Option<f64>) {
    if let Some(s) = seconds
        && !(s.is_finite() && s > 0.0)
    {
        errors.push(format!("{what} must be a positive number of seconds, not {s}"));
    }
}

fn literal(at: &str, ty: &DynParam, value: &serde_json::Value) -> Result<ArgPlan, Vec<String>> {
    (ty.check_json)(value)
        .map(|()| ArgPlan::Json(value.clone()))
        .map_err(|e| vec![format!("{at}: {e}")])
}

/// The steps in an order where each comes after those it waits for, else a cycle's names.
/// Among steps that are ready together, the spec's order is kept.
fn topological(steps: &[StepSpec], edges: &[Vec<usize>]) -> Result<Vec<usize>, Vec<String>> {
    let n = steps.len();
    let mut waiting: Vec<usize> = edges.iter().map(|e| e.len()).collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, parents) in edges.iter().enumerate() {
        for &p in parents {
            children[p].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &c in &children[i] {
            waiting[c] -= 1;
            if waiting[c] == 0 {
                ready.insert(c);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk back from a step left waiting until a step repeats: that is a cycle.
    let mut seen = vec![usize::MAX; n];
    let mut path = Vec::new();
    let mut at = (0..n).find(|&i| waiting[i] > 0).expect("some step is left");
    while seen[at] == usize::MAX {
        seen[at] = path.len();
        path.push(at);
        at = *edges[at]
            .iter()
            .find(|&&p| waiting[p] > 0)
            .expect("a waiting step waits for one");
    }
    let mut cycle: Vec<String> = path[seen[at]..].iter().rev().map(|&i| steps[i].name.clone()).collect();
    cycle.push(cycle[0].clone());
    Err(cycle)
}

/// The component of `step` with the step's options in place of its own: the interned
/// descriptor per-call options use, so planning the same spec again (each run does) adds none.
fn with_step_options(
    base: &'static ComponentDescriptor,
    step: &StepSpec,
    id_parents: &[String],
    spec: &PipelineSpec,
) -> &'static ComponentDescriptor {
    let strings = |v: &[String]| intern_list(v.iter().map(|s| intern(s)).collect());
    let o = &base.options;
    let options = ComponentOptions {
        parents: if step.parents.is_empty() && id_parents.is_empty() {
            o.parents
        } else {
            let mut parents = step.parents.clone();
            parents.extend(id_parents.iter().filter(|p| !step.parents.contains(p)).cloned());
            strings(&parents)
        },
        execution_queue: step
            .execution_queue
            .as_deref()
            .or(spec.options.default_queue.as_deref())
            .map(intern)
            .or(o.execution_queue),
        time_limit: step.time_limit.map(Duration::from_secs_f64).or(o.time_limit),
        retry: match step.retry_on_failure {
            Some(0) => RetryPolicy::Never,
            Some(n) => RetryPolicy::Count(n),
            None => o.retry,
        },
        retry_backoff: RetryBackoff {
            delay: step.retry_delay.map_or(o.retry_backoff.delay, Duration::from_secs_f64),
            factor: step.retry_backoff.unwrap_or(o.retry_backoff.factor),
            jitter: step.retry_jitter.unwrap_or(o.retry_backoff.jitter),
        },
        cache: step.cache_executed_step.unwrap_or(o.cache),
        continue_behaviour: step.continue_behaviour.map_or(o.continue_behaviour, |c| c.behaviour()),
        tags: if step.tags.is_empty() {
            o.tags
        } else {
            strings(&step.tags)
        },
        monitor_metrics: if step.monitor_metrics.is_empty() {
            o.monitor_metrics
        } else {
            let metrics: Vec<_> = step
                .monitor_metrics
                .iter()
                .map(|m| match m {
                    MonitoredMetric::Same(t, s) => (intern(t), intern(s), intern(t), intern(s)),
                    MonitoredMetric::Renamed(t, s, rt, rs) => (intern(t), intern(s), intern(rt), intern(rs)),
                })
                .collect();
            crate::api::call_options::intern_quads(metrics)
        },
        monitor_artifacts: monitored(&step.monitor_artifacts, o.monitor_artifacts),
        monitor_models: monitored(&step.monitor_models, o.monitor_models),
        output_uri: step.output_uri.as_deref().map(intern).or(o.output_uri),
        callbacks: pipeline_core::Callbacks {
            pre_execute: step.callbacks.0.pre_execute.or(o.callbacks.pre_execute),
            post_execute: step.callbacks.0.post_execute.or(o.callbacks.post_execute),
            status_change: step.callbacks.0.status_change.or(o.callbacks.status_change),
        },
        ..*o
    };
    descriptor_with(base, options)
}

/// A step's monitored names as a component option; `base`'s when it gives none.
fn monitored(
    given: &[Monitored],
    base: &'static [(&'static str, &'static str)],
) -> &'static [(&'static str, &'static str)] {
    if given.is_empty() {
        return base;
    }
    let pairs: Vec<_> = given
        .iter()
        .map(|m| match m {
            Monitored::Same(n) => (intern(n), intern(n)),
            Monitored::Renamed(n, r) => (intern(n), intern(r)),
        })
        .collect();
    crate::api::call_options::intern_pairs(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_recognised_only_whole() {
        assert!(matches!(reference("${pipeline.x}"), Some(Ok(Reference::Param("x")))));
        assert!(matches!(reference("${a.b}"), Some(Ok(Reference::Output("a.b")))));
        assert!(matches!(reference("${a}"), Some(Err(_))));
        assert!(reference("a ${a.b}").is_none());
        assert!(reference("plain").is_none());
    }

    #[test]
    fn an_output_reference_splits_where_a_step_is_named() {
        let steps = ["prep", "prep.v2", "load data"];
        let known = |s: &str| steps.contains(&s);
        assert_eq!(split_output("prep.rows", known), ("prep", "rows"));
        assert_eq!(split_output("prep.v2.rows", known), ("prep.v2", "rows"));
        assert_eq!(split_output("load data.rows", known), ("load data", "rows"));
        assert_eq!(split_output("nothing.here.x", known), ("nothing", "here.x"));
    }

    #[test]
    fn a_cycle_is_named_in_order() {
        let steps: Vec<StepSpec> = ["a", "b", "c"].iter().map(|n| StepSpec::new(*n, "x")).collect();
        // a waits for c, b for a, c for b.
        let err = topological(&steps, &[vec![2], vec![0], vec![1]]).unwrap_err();
        assert_eq!(err.len(), 4);
        assert_eq!(err.first(), err.last());
        let ok = topological(&steps, &[vec![], vec![2], vec![]]).unwrap();
        assert_eq!(ok, vec![0, 2, 1]);
    }
}
