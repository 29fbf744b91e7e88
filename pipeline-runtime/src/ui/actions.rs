//! What the page may change: stop a live run, resume one, re-run one with edited parameters,
//! run one step again alone (spin). Each needs the token (see `auth`); each answers with a
//! redirect to the page that shows what it started.

use super::auth::{self, Who};
use super::pages::{badge, enc, find_run, layout, run_url, step_url};
use super::{App, UiError, blocking};
use crate::api::again::{Again, apply_edits, new_run_id, recorded_parameters, spawn_again};
use crate::api::spin::spin_step;
use crate::config::CacheRefresh;
use crate::store::RunStore;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use pipeline_core::RunStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A run started from the page, until its controller records it.
pub(crate) enum Launch {
    Starting,
    /// Its controller ended without recording it: what it said.
    Failed(String),
}

/// A step run again alone from the page.
pub(crate) enum SpinState {
    Running {
        run: String,
        step: String,
    },
    Done {
        run: String,
        step: String,
        error: Option<String>,
        outputs: Vec<(String, std::path::PathBuf)>,
        log: Option<String>,
    },
    Failed {
        run: String,
        step: String,
        error: String,
    },
}

/// The fields of a form body (`application/x-www-form-urlencoded`); none for an empty body.
fn fields(headers: &HeaderMap, body: &Bytes) -> Result<Vec<(String, String)>, UiError> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Err(UiError::BadRequest(
            "send the fields as a form (application/x-www-form-urlencoded)".into(),
        ));
    }
    Ok(form_urlencoded::parse(body).into_owned().collect())
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The fields after checking that the request may act.
fn authorize(app: &App, headers: &HeaderMap, body: &Bytes) -> Result<Vec<(String, String)>, UiError> {
    let fields = fields(headers, body)?;
    auth::act(app, headers, field(&fields, "csrf"))?;
    Ok(fields)
}

pub(super) async fn stop(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UiError> {
    authorize(&app, &headers, &body)?;
    let app2 = app.clone();
    let id = blocking(move || {
        let run = find_run(&app2.store()?, &id)?;
        let store = RunStore::open(&app2.state.join("runs.db")).map_err(|e| UiError::Internal(e.to_string()))?;
        let asked = store
            .request_stop(&run.id, "stopped from the web page")
            .map_err(|e| UiError::Internal(e.to_string()))?;
        if !asked {
            return Err(UiError::BadRequest(format!(
                "run {} is not running ({}): there is nothing to stop",
                run.id, run.status
            )));
        }
        Ok(run.id)
    })
    .await?;
    Ok(Redirect::to(&run_url(&id)).into_response())
}

pub(super) async fn resume(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UiError> {
    authorize(&app, &headers, &body)?;
    let app2 = app.clone();
    let id = blocking(move || {
        let run = find_run(&app2.store()?, &id)?;
        if !matches!(run.status, RunStatus::Failed | RunStatus::Aborted | RunStatus::Crashed) {
            return Err(UiError::BadRequest(format!(
                "run {} is {}: only a failed, aborted or crashed run can be resumed",
                run.id, run.status
            )));
        }
        let params = recorded_parameters(&run).map_err(UiError::BadRequest)?;
        let output = launch_log(&app2, &run.id);
        let child = spawn_again(&app2.state, &run, params, Again::Resume, &output).map_err(UiError::BadRequest)?;
        watch(&app2, &run.id, child, output);
        Ok(run.id)
    })
    .await?;
    Ok(Redirect::to(&run_url(&id)).into_response())
}

/// Where the controller of run `id`, started from the page, writes its output: a file, so that
/// it does not depend on the page's process (which may stop first).
fn launch_log(app: &App, id: &str) -> std::path::PathBuf {
    app.state
        .join("launches")
        .join(format!("{}.log", pipeline_core::names::slug(id)))
}

/// Waits for the controller `child` of run `id`, and notes its failure (the end of `output`)
/// if it ends without success.
fn watch(app: &Arc<App>, id: &str, mut child: std::process::Child, output: std::path::PathBuf) {
    crate::sync::lock(&app.launches).insert(id.to_string(), Launch::Starting);
    let (app, id) = (app.clone(), id.to_string());
    std::thread::spawn(move || {
        let Ok(status) = child.wait() else { return };
        let mut launches = crate::sync::lock(&app.launches);
        if status.success() {
            launches.remove(&id);
            return;
        }
        let said = std::fs::read(&output)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let tail: String = said
            .chars()
            .rev()
            .take(4000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        launches.insert(
            id,
            Launch::Failed(format!("the run's controller ended ({status}):\n{tail}")),
        );
    });
}

/// Why the last start of recorded run `id` from the page (a resume) failed, if it did.
pub(super) fn launch_failure(app: &App, id: &str) -> Option<String> {
    match crate::sync::lock(&app.launches).get(id)? {
        Launch::Failed(message) => Some(message.clone()),
        Launch::Starting => None,
    }
}

/// The page of a run started here that is not recorded yet, if it is one.
pub(super) fn launch_view(app: &App, id: &str) -> Option<Markup> {
    let launches = crate::sync::lock(&app.launches);
    Some(match launches.get(id)? {
        Launch::Starting => html! {
            section #run data-poll={ (run_url(id)) "/live" } {
                h1 { "Starting run " code { (id) } " " (badge("queued")) }
                p.meta { "Its controller is starting; this page follows it." }
            }
        },
        Launch::Failed(message) => html! {
            section #run {
                h1 { "Run " code { (id) } " did not start" }
                div.error { pre { (message) } }
            }
        },
    })
}

pub(super) async fn rerun_form(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Markup, UiError> {
    let who = auth::read(&app, &headers)?;
    let app2 = app.clone();
    let run = blocking(move || find_run(&app2.store()?, &id)).await?;
    Ok(layout(
        &format!("Re-run {}", run.name),
        form_body(&run, who, &app.csrf, None),
    ))
}

fn form_body(run: &crate::store::RunRecord, who: Who, csrf: &str, error: Option<&str>) -> Markup {
    html! {
        p.crumbs { a href=(run_url(&run.id)) { (run.name) " " code { (run.id) } } }
        h1 { "Re-run " (run.name) }
        p.meta { "A new run of the recorded program with these parameters (JSON, or plain text for a string)." }
        @if let Some(e) = error { div.error { pre { (e) } } }
        @if !who.authed() {
            p.hint { "Actions need the token `pipeline ui` printed: open the link it gave." }
        }
        form.rerun method="post" action={ (run_url(&run.id)) "/rerun" } {
            input type="hidden" name="csrf" value=(csrf);
            @for (name, value) in &run.parameters {
                label for={ "p-" (name) } { (name) }
                input type="text" id={ "p-" (name) } name={ "p:" (name) } value=(value);
            }
            @if run.parameters.is_empty() { p.empty { "This pipeline has no parameters." } }
            label for="mode" { "Steps run in" }
            select #mode name="mode" {
                @for m in ["debug", "local", "remote"] {
                    option value=(m) selected[m == run.mode] { (m) " mode" }
                }
            }
            label { input type="checkbox" name="refresh" value="all"; " refresh the cache (run every cached step again)" }
            p { button type="submit" disabled[!who.authed()] { "Start the run" } }
        }
    }
}

pub(super) async fn rerun(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UiError> {
    let fields = authorize(&app, &headers, &body)?;
    let app2 = app.clone();
    let outcome = blocking(move || {
        let run = find_run(&app2.store()?, &id)?;
        let mode = match field(&fields, "mode").filter(|m| !m.is_empty()) {
            Some(m) if ["debug", "local", "remote"].contains(&m) => Some(m.to_string()),
            Some(m) => {
                return Err(UiError::BadRequest(format!(
                    "`{m}` is not a mode: debug, local or remote"
                )));
            }
            None => None,
        };
        let edits: Vec<(&str, &str)> = fields
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("p:")?, v.as_str())))
            .collect();
        let mut params = recorded_parameters(&run).map_err(UiError::BadRequest)?;
        if let Err(e) = apply_edits(&run, &mut params, &edits) {
            return Ok(Err((run, e)));
        }
        let refresh = if field(&fields, "refresh").is_some() {
            CacheRefresh::All
        } else {
            CacheRefresh::Off
        };
        let new = new_run_id(&run);
        let how = Again::Rerun {
            id: Some(&new),
            mode: mode.as_deref(),
            refresh: &refresh,
        };
        let output = launch_log(&app2, &new);
        let child = spawn_again(&app2.state, &run, params, how, &output).map_err(UiError::BadRequest)?;
        watch(&app2, &new, child, output);
        Ok(Ok(new))
    })
    .await?;
    match outcome {
        Ok(new) => Ok(Redirect::to(&run_url(&new)).into_response()),
        Err((run, message)) => Ok((
            axum::http::StatusCode::BAD_REQUEST,
            layout(
                &format!("Re-run {}", run.name),
                form_body(&run, Who::Browser, &app.csrf, Some(&message)),
            ),
        )
            .into_response()),
    }
}

pub(super) async fn spin(
    State(app): State<Arc<App>>,
    UrlPath((id, step)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UiError> {
    authorize(&app, &headers, &body)?;
    static SPINS: AtomicU64 = AtomicU64::new(0);
    let app2 = app.clone();
    let spin_id = blocking(move || {
        let store = app2.store()?;
        let run = find_run(&store, &id)?;
        let node = store
            .nodes(&run.id)
            .map_err(|e| UiError::Internal(e.to_string()))?
            .into_iter()
            .find(|n| n.node.name == step)
            .ok_or_else(|| UiError::NotFound(format!("run {} has no step `{step}`", run.id)))?;
        let spin_id = format!(
            "{}-{}-{}",
            pipeline_core::names::slug(&step),
            std::process::id(),
            SPINS.fetch_add(1, Ordering::Relaxed)
        );
        let out = app2.state.join("spins").join(&spin_id);
        crate::sync::lock(&app2.spins).insert(
            spin_id.clone(),
            SpinState::Running {
                run: run.id.clone(),
                step: step.clone(),
            },
        );
        let (app3, spin) = (app2.clone(), spin_id.clone());
        std::thread::spawn(move || {
            let state = match spin_step(&app3.state, &run, &node, &out) {
                Ok(spun) => SpinState::Done {
                    run: run.id,
                    step,
                    error: spun.error.map(|e| e.to_string()),
                    outputs: spun.outputs.into_iter().map(|(name, a)| (name, a.path)).collect(),
                    log: std::fs::read(&spun.log)
                        .ok()
                        .map(|b| String::from_utf8_lossy(&b).into_owned()),
                },
                Err(e) => SpinState::Failed {
                    run: run.id,
                    step,
                    error: e.to_string(),
                },
            };
            crate::sync::lock(&app3.spins).insert(spin, state);
        });
        Ok(spin_id)
    })
    .await?;
    Ok(Redirect::to(&format!("/spins/{}", enc(&spin_id))).into_response())
}

pub(super) async fn spin_page(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Markup, UiError> {
    auth::read(&app, &headers)?;
    Ok(layout("Spin", spin_fragment(&app, &id)?))
}

pub(super) async fn spin_live(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Markup, UiError> {
    auth::read(&app, &headers)?;
    spin_fragment(&app, &id)
}

fn spin_fragment(app: &App, id: &str) -> Result<Markup, UiError> {
    let spins = crate::sync::lock(&app.spins);
    let state = spins
        .get(id)
        .ok_or_else(|| UiError::NotFound(format!("there is no spin `{id}` (spins are kept while the page runs)")))?;
    let head = |run: &str, step: &str, status: &str| {
        html! {
            p.crumbs { a href=(step_url(run, step)) { "step " (step) " of " code { (run) } } }
            h1 { "Spin of " (step) " " (badge(status)) }
        }
    };
    Ok(match state {
        SpinState::Running { run, step } => html! {
            section #spin data-poll={ "/spins/" (enc(id)) "/live" } {
                (head(run, step, "running"))
                p.meta { "The step runs again alone on the inputs its last attempt had; the run is not touched." }
            }
        },
        SpinState::Failed { run, step, error } => html! {
            section #spin { (head(run, step, "failed")) div.error { pre { (error) } } }
        },
        SpinState::Done {
            run,
            step,
            error,
            outputs,
            log,
        } => html! {
            section #spin {
                (head(run, step, if error.is_some() { "failed" } else { "completed" }))
                @if let Some(e) = error { div.error { pre { (e) } } }
                @if !outputs.is_empty() {
                    h2 { "Outputs" }
                    ul { @for (name, path) in outputs { li { (name) ": " code { (path.display()) } } } }
                }
                h2 { "Log" }
                pre.log { (log.as_deref().unwrap_or("")) }
            }
        },
    })
}
