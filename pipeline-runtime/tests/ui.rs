//! The web page's routes, without a socket: real runs recorded in a state folder of each
//! test's own, then requests through the router. Status codes, content, and every way a
//! request may be refused (a bad id, a path in a parameter, a huge or malformed body, an action
//! without the token, with a wrong one, or from another site), each changing nothing.
#![cfg(feature = "ui")]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use pipeline_runtime::prelude::*;
use pipeline_runtime::store::RunStore;
use pipeline_runtime::{Config, Mode, step};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tower::ServiceExt;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

#[component]
fn numbers(n: u32) -> Vec<f64> {
    (1..=n).map(f64::from).collect()
}

/// Reports a loss curve, prints a line, and sums.
#[component]
fn total(values: Vec<f64>) -> f64 {
    for (i, v) in values.iter().enumerate() {
        step::report_scalar("loss", "train", i as i64, 1.0 / v);
    }
    println!("summing {} values", values.len());
    values.iter().sum()
}

/// Fails while the marker file `marker` does not exist, creating it: the first attempt of the
/// first run fails, its retry succeeds (in any mode).
#[component(retry_on_failure = 1)]
fn flaky(x: f64, marker: String) -> anyhow::Result<f64> {
    if std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&marker)
        .is_ok()
    {
        anyhow::bail!("first attempt fails");
    }
    Ok(x)
}

#[component]
fn refuse(x: f64) -> anyhow::Result<f64> {
    anyhow::bail!("refused {x}")
}

#[pipeline(name = "ui chain", project = "ui-tests", artifact_codec = "json")]
fn chain(n: u32, label: String) -> f64 {
    let values = numbers(n);
    let sum = total(&values);
    // One marker per label and state folder: each test's first run retries once.
    let marker = pipeline_runtime::Config::current()
        .state_dir
        .join(format!("flaky-{label}"));
    flaky(&sum, marker.display().to_string()).get().unwrap_or(0.0)
}

#[pipeline(name = "ui failing", project = "ui-tests")]
fn failing() -> Result<f64, HandleError> {
    refuse(1.0).get()
}

/// Runs for a minute unless stopped (local mode: a worker process, killed when stopped).
#[component]
fn slow(x: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(60));
    x
}

#[pipeline(name = "ui live", project = "ui-tests")]
fn live() -> Result<u64, HandleError> {
    slow(1).get()
}

fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(state: &Path, mode: Mode) -> Config {
    Config::current().with_mode(mode).with_state_dir(state)
}

/// Status, headers and body of one request.
struct Answer {
    status: StatusCode,
    location: Option<String>,
    cookie: Option<String>,
    body: String,
}

fn request(method: &str, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "127.0.0.1:8080")
}

fn call(router: &Router, request: Request<Body>) -> Answer {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let text = |name| {
            response
                .headers()
                .get(name)
                .map(|v: &header::HeaderValue| v.to_str().unwrap().to_string())
        };
        let (location, cookie) = (text(header::LOCATION), text(header::SET_COOKIE));
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            location,
            cookie,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    })
}

fn get(router: &Router, uri: &str) -> Answer {
    call(router, request("GET", uri).body(Body::empty()).unwrap())
}

/// A form POST with the browser's cookie.
fn post_form(router: &Router, uri: &str, form: &str) -> Answer {
    call(
        router,
        request("POST", uri)
            .header(header::COOKIE, format!("pipeline_ui_token={TOKEN}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_string()))
            .unwrap(),
    )
}

fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("the page has a form") + "name=\"csrf\" value=\"".len();
    page[at..at + 32].to_string()
}

/// The page as a browser with the token sees it.
fn get_authed(router: &Router, uri: &str) -> Answer {
    call(
        router,
        request("GET", uri)
            .header(header::COOKIE, format!("pipeline_ui_token={TOKEN}"))
            .body(Body::empty())
            .unwrap(),
    )
}

#[test]
fn the_runs_list_shows_runs_with_their_step_counts_and_filters() {
    let state = folder("list");
    let ok = config(&state, Mode::Debug).scope(|| chain::run(3, "a".into()).unwrap());
    let bad = config(&state, Mode::Debug).scope(|| failing::run().unwrap());
    let ui = pipeline_runtime::ui::router(state.clone(), TOKEN.into(), true);
    let page = get(&ui, "/");
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(ok.run.id()) && page.body.contains(bad.run.id()),
        "{}",
        page.body
    );
    assert!(page.body.contains("3 completed"), "step counts by state: {}", page.body);
    assert!(page.body.contains("Reading only"), "no token: reading only");
    let failed = get(&ui, "/?status=failed");
    assert!(failed.body.contains(bad.run.id()) && !failed.body.contains(ok.run.id()));
    let by_name = get(&ui, "/?name=ui+chain&project=ui-tests");
    assert!(by_name.body.contains(ok.run.id()) && !by_name.body.contains(bad.run.id()));
    assert_eq!(get(&ui, "/?status=sideways").status, StatusCode::BAD_REQUEST);
    // Assets are embedded.
    assert!(get(&ui, "/assets/ui.js").body.contains("data-poll"));
    assert!(get(&ui, "/assets/ui.css").body.contains(".badge"));
}

#[test]
fn a_run_page_draws_its_dag_and_a_step_page_its_attempts_log_and_values() {
    let state = folder("run");
    let finished = config(&state, Mode::Local).scope(|| chain::run(4, "a".into()).unwrap());
    assert_eq!(finished.output, 10.0);
    let id = finished.run.id().to_string();
    let ui = pipeline_runtime::ui::router(state.clone(), TOKEN.into(), true);
    let page = get(&ui, &format!("/runs/{id}"));
    assert_eq!(page.status, StatusCode::OK);
    for step in ["numbers", "total", "flaky"] {
        assert!(
            page.body.contains(&format!("data-step=\"{step}\"")),
            "{step}: {}",
            page.body
        );
    }
    assert!(page.body.contains("<svg") && page.body.contains("class=\"node s-completed\""));
    assert!(page.body.contains("data-title=\"loss\""), "a plot of the loss");
    assert!(!page.body.contains("data-poll"), "an ended run is not polled");
    // A prefix of the id leads to the run.
    let prefix = get(&ui, &format!("/runs/{}", &id[..id.len() - 3]));
    assert_eq!(prefix.status, StatusCode::SEE_OTHER);
    assert_eq!(
        prefix.location.as_deref(),
        Some(format!("/runs/{}", id.replace(' ', "%20")).as_str())
    );

    // Local mode kept each attempt's result and log, and the values as JSON.
    let step = get(&ui, &format!("/runs/{id}/steps/total"));
    assert_eq!(step.status, StatusCode::OK);
    assert!(step.body.contains("summing 4 values"), "the log: {}", step.body);
    assert!(step.body.contains("10.0"), "the output's preview");
    assert!(
        step.body.contains("input 1") && step.body.contains("Vec&lt;f64&gt;"),
        "the input and its type"
    );
    let retried = get(&ui, &format!("/runs/{id}/steps/flaky"));
    assert!(
        retried.body.contains("first attempt fails"),
        "the failed attempt's error: {}",
        retried.body
    );
    assert!(retried.body.contains("?attempt=2"), "a log per attempt");
    let first = get(&ui, &format!("/runs/{id}/steps/flaky?attempt=1"));
    assert!(first.body.contains("Log of attempt 1"));
    assert_eq!(
        get(&ui, &format!("/runs/{id}/steps/flaky?attempt=9")).status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&ui, &format!("/runs/{id}/steps/flaky?attempt=..%2F..")).status,
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn bad_ids_and_paths_are_not_found_and_read_nothing() {
    let state = folder("paths");
    let finished = config(&state, Mode::Local).scope(|| chain::run(2, "a".into()).unwrap());
    let id = finished.run.id().to_string();
    std::fs::write(state.join("secret.txt"), "do not show").unwrap();
    let ui = pipeline_runtime::ui::router(state.clone(), TOKEN.into(), true);
    for uri in [
        "/runs/nope".to_string(),
        "/runs/..%2F..%2Fsecret.txt".to_string(),
        format!("/runs/{id}/steps/..%2F..%2F..%2Fsecret.txt"),
        format!("/runs/{id}/steps/%2Fetc%2Fpasswd"),
        format!("/runs/{id}/steps/nope/live"),
        "/spins/..%2Fsecret.txt".to_string(),
    ] {
        let answer = get(&ui, &uri);
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(!answer.body.contains("do not show"), "{uri}");
    }
    assert_eq!(get(&ui, "/no/such/page").status, StatusCode::NOT_FOUND);
    assert_eq!(get(&ui, "/compare?runs=nope&runs=nada").status, StatusCode::NOT_FOUND);
}

#[test]
fn runs_are_compared_parameters_durations_and_metrics() {
    let state = folder("compare");
    let a = config(&state, Mode::Debug).scope(|| chain::run(3, "same".into()).unwrap());
    let b = config(&state, Mode::Debug).scope(|| chain::run(5, "same".into()).unwrap());
    let ui = pipeline_runtime::ui::router(state.clone(), TOKEN.into(), true);
    let uri = format!("/compare?runs={}&runs={}", a.run.id(), b.run.id());
    let page = get(&ui, &uri);
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("class=\"diff\" data-param=\"n\""),
        "n differs: {}",
        page.body
    );
    assert!(
        !page.body.contains("data-param=\"label\""),
        "only what differs, by default"
    );
    assert!(get(&ui, &format!("{uri}&all=1")).body.contains("data-param=\"label\""));
    assert!(page.body.contains("data-step=\"total\""), "step durations side by side");
    assert!(
        page.body.contains("#1 total: train") && page.body.contains("#2 total: train"),
        "metrics overlaid"
    );
    let one = get(&ui, &format!("/compare?runs={}", a.run.id()));
    assert_eq!(one.status, StatusCode::BAD_REQUEST);
}

#[test]
fn login_keeps_the_token_in_a_strict_cookie() {
    let ui = pipeline_runtime::ui::router(folder("login"), TOKEN.into(), true);
    let ok = get(&ui, &format!("/login?token={TOKEN}"));
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let cookie = ok.cookie.unwrap();
    assert!(cookie.contains(TOKEN) && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let wrong = get(&ui, "/login?token=guess");
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(wrong.cookie.is_none());
}

/// Reading away from loopback needs the token; on loopback, a request must name a loopback
/// host (another site's name resolving to 127.0.0.1 is refused).
#[test]
fn reading_needs_the_token_off_loopback_and_a_loopback_host_on_it() {
    let state = folder("hosts");
    let open = pipeline_runtime::ui::router(state.clone(), TOKEN.into(), true);
    let rebound = call(
        &open,
        Request::get("/")
            .header(header::HOST, "evil.example:8080")
            .body(Body::empty())
            .unwrap(),
    );
    assert_eq!(rebound.status, StatusCode::FORBIDDEN);
    let shared = pipeline_runtime::ui::router(state, TOKEN.into(), false);
    assert_eq!(get(&shared, "/").status, StatusCode::UNAUTHORIZED);
    let bearer = call(
        &shared,
        request("GET", "/")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap(),
    );
    assert_eq!(bearer.status, StatusCode::OK);
    let wrong = call(
        &shared,
        request("GET", "/")
            .header(header::AUTHORIZATION, "Bearer nope")
            .body(Body::empty())
            .unwrap(),
    );
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
}

/// Every refused way to stop a live run leaves it running; the right one stops it.
#[test]
fn stopping_a_run_needs_the_token_and_a_same_site_form() {
    let state = folder("stop");
    let live = {
        let state = state.clone();
        std::thread::spawn(move || config(&state, Mode::Local).scope(|| live::run().unwrap()))
    };
    let store = || RunStore::open_read_only(&state.join("runs.db")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        assert!(Instant::now() < deadline, "the run never started");
        if let Some(run) = state
            .join("runs.db")
            .exists()
            .then(|| store().runs(&Default::default()).unwrap())
            .and_then(|r| r.into_iter().next())
        {
            break run.id;
        }
        std::thread::yield_now();
    };
    let ui = pipeline_runtime::ui::router(state.clone(), TOKEN.into(), true);
    let page = get_authed(&ui, &format!("/runs/{id}"));
    assert!(page.body.contains("data-poll"), "a live run is polled");
    let field = csrf(&page.body);
    let uri = format!("/runs/{id}/stop");
    let form = format!("csrf={field}");
    let refused = [
        (
            "no token",
            request("POST", &uri)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form.clone())),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a wrong token",
            request("POST", &uri)
                .header(header::AUTHORIZATION, "Bearer nope")
                .body(Body::empty()),
            StatusCode::FORBIDDEN,
        ),
        (
            "no anti-forgery field",
            request("POST", &uri)
                .header(header::COOKIE, format!("pipeline_ui_token={TOKEN}"))
                .body(Body::empty()),
            StatusCode::FORBIDDEN,
        ),
        (
            "another site's form",
            request("POST", &uri)
                .header(header::COOKIE, format!("pipeline_ui_token={TOKEN}"))
                .header(header::ORIGIN, "http://evil.example")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form.clone())),
            StatusCode::FORBIDDEN,
        ),
        (
            "a cross-site fetch",
            request("POST", &uri)
                .header(header::COOKIE, format!("pipeline_ui_token={TOKEN}"))
                .header("sec-fetch-site", "cross-site")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form.clone())),
            StatusCode::FORBIDDEN,
        ),
        (
            "a huge body",
            request("POST", &uri)
                .header(header::COOKIE, format!("pipeline_ui_token={TOKEN}"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("csrf={field}&x={}", "a".repeat(1 << 20)))),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "a body that is not a form",
            request("POST", &uri)
                .header(header::COOKIE, format!("pipeline_ui_token={TOKEN}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{\"csrf\": 1}")),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, request, status) in refused {
        assert_eq!(call(&ui, request.unwrap()).status, status, "{what}");
        let run = store().run(&id).unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Running, "{what} changed nothing");
    }
    assert_eq!(
        get(&ui, &format!("/runs/{id}/rerun")).status,
        StatusCode::OK,
        "the form may be read"
    );
    let stopped = post_form(&ui, &uri, &form);
    assert_eq!(stopped.status, StatusCode::SEE_OTHER);
    assert_eq!(stopped.location.as_deref(), Some(format!("/runs/{id}").as_str()));
    let started = Instant::now();
    let finished = live.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "the step was stopped, not waited for"
    );
    assert_eq!(finished.run.status(), RunStatus::Aborted);
    let again = post_form(&ui, &uri, &form);
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "an ended run cannot be stopped");
}

/// Re-run with an edited parameter: the form is filled with the run's parameters; a value of
/// another kind is refused with the form again; a good one starts a new run at once, whose page
/// the answer leads to.
#[test]
fn a_run_is_rerun_with_an_edited_parameter() {
    let state = folder("rerun");
    let first = config(&state, Mode::Local).scope(|| chain::run(3, "a".into()).unwrap());
    let id = first.run.id().to_string();
    let ui = pipeline_runtime::ui::router(state.clone(), TOKEN.into(), true);
    let form_page = get_authed(&ui, &format!("/runs/{id}/rerun"));
    assert!(
        form_page.body.contains("name=\"p:n\" value=\"3\""),
        "{}",
        form_page.body
    );
    let field = csrf(&form_page.body);
    let uri = format!("/runs/{id}/rerun");
    let wrong = post_form(&ui, &uri, &format!("csrf={field}&p%3An=three&p%3Alabel=b&mode=local"));
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.body.contains("parameter `n` was a number"), "{}", wrong.body);
    assert_eq!(
        RunStore::open_read_only(&state.join("runs.db"))
            .unwrap()
            .runs(&Default::default())
            .unwrap()
            .len(),
        1
    );
    let started = post_form(&ui, &uri, &format!("csrf={field}&p%3An=5&p%3Alabel=b&mode=local"));
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let new = started.location.unwrap().trim_start_matches("/runs/").to_string();
    assert_ne!(new, id);
    // Its page exists at once, and follows the run until it ends.
    let deadline = Instant::now() + Duration::from_secs(120);
    let record = loop {
        assert!(Instant::now() < deadline, "the new run never ended");
        let page = get(&ui, &format!("/runs/{new}/live"));
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(!page.body.contains("did not start"), "{}", page.body);
        let run = RunStore::open_read_only(&state.join("runs.db"))
            .unwrap()
            .run(&new)
            .unwrap();
        if let Some(run) = run.filter(|r| r.status != RunStatus::Running) {
            break run;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(record.status, RunStatus::Completed);
    assert_eq!(record.origin.as_deref(), Some(id.as_str()));
    assert!(
        record.parameters.contains(&("n".to_string(), "5".to_string())),
        "{:?}",
        record.parameters
    );
    assert!(record.parameters.contains(&("label".to_string(), "\"b\"".to_string())));
}

/// A step of a local run is run again alone from its page.
#[test]
fn a_step_is_spun_from_its_page() {
    let state = folder("spin");
    let first = config(&state, Mode::Local).scope(|| chain::run(3, "a".into()).unwrap());
    let id = first.run.id().to_string();
    let ui = pipeline_runtime::ui::router(state.clone(), TOKEN.into(), true);
    let page = get_authed(&ui, &format!("/runs/{id}/steps/total"));
    assert!(page.body.contains("/spin\""), "a spin button: {}", page.body);
    let spun = post_form(
        &ui,
        &format!("/runs/{id}/steps/total/spin"),
        &format!("csrf={}", csrf(&page.body)),
    );
    assert_eq!(spun.status, StatusCode::SEE_OTHER, "{}", spun.body);
    let at = spun.location.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        assert!(Instant::now() < deadline, "the spin never ended");
        let page = get(&ui, &format!("{at}/live"));
        assert_eq!(page.status, StatusCode::OK);
        if !page.body.contains("data-poll") {
            break page.body;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        done.contains("s-completed") && done.contains("summing 3 values"),
        "{done}"
    );
}

/// Fails while the file `marker` is missing.
#[component]
fn needs(marker: String) -> anyhow::Result<u64> {
    anyhow::ensure!(std::path::Path::new(&marker).exists(), "`{marker}` is missing");
    Ok(1)
}

#[pipeline(name = "ui resumable", project = "ui-tests")]
fn resumable(marker: String) -> Result<u64, HandleError> {
    let first = numbers(2);
    let _ = first;
    needs(marker).get()
}

/// A failed run is resumed from its page: the step that finished is reused, the failed one
/// runs again and the run completes under the same id.
#[test]
fn a_failed_run_is_resumed_from_its_page() {
    let state = folder("resume");
    let marker = state.join("ready");
    let failed = config(&state, Mode::Local).scope(|| resumable::run(marker.display().to_string()).unwrap());
    assert_eq!(failed.run.status(), RunStatus::Failed);
    let id = failed.run.id().to_string();
    let ui = pipeline_runtime::ui::router(state.clone(), TOKEN.into(), true);
    let page = get_authed(&ui, &format!("/runs/{id}"));
    assert!(page.body.contains("/resume\""), "a resume button: {}", page.body);
    std::fs::write(&marker, b"").unwrap();
    let resumed = post_form(
        &ui,
        &format!("/runs/{id}/resume"),
        &format!("csrf={}", csrf(&page.body)),
    );
    assert_eq!(resumed.status, StatusCode::SEE_OTHER, "{}", resumed.body);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "the run was never resumed");
        let run = RunStore::open_read_only(&state.join("runs.db"))
            .unwrap()
            .run(&id)
            .unwrap()
            .unwrap();
        if run.status == RunStatus::Completed {
            break;
        }
        let page = get(&ui, &format!("/runs/{id}"));
        assert!(!page.body.contains("controller ended"), "{}", page.body);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Resuming again is refused: it completed.
    let again = post_form(
        &ui,
        &format!("/runs/{id}/resume"),
        &format!("csrf={}", csrf(&page.body)),
    );
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
}
