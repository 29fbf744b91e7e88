//! `pipeline ui`: a web page over a state folder's run store. Runs newest first, a run's DAG
//! drawn on the server (SVG) with live states, a step's attempts, log, inputs and outputs,
//! metrics as plots, runs compared, and actions (stop, resume, re-run with edited parameters,
//! spin a step).
//!
//! One binary, nothing to install: pages are rendered on the server (`maud`), plots and the
//! DAG are SVG made here, and the one small script (refreshing live parts twice a second) and
//! the style sheet are embedded. Pages that change nothing may be read without the token on
//! loopback; every action needs it (a cookie set by `/login?token=...`, or `Authorization:
//! Bearer`), and a browser's action also needs the form's anti-forgery field and a same-origin
//! request.

mod actions;
mod auth;
mod pages;
mod plot;

use crate::store::RunStore;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The most bytes a request body may have: forms are small.
const BODY_LIMIT: usize = 64 * 1024;

/// What the page serves, and who may act on it.
pub struct UiOptions {
    /// The state folder whose run store is shown.
    pub state: PathBuf,
    /// Where to listen (`127.0.0.1:8080` by default in the CLI).
    pub bind: SocketAddr,
    /// The token actions need; one is generated when `None`.
    pub token: Option<String>,
}

/// The page's shared state.
pub(crate) struct App {
    state: PathBuf,
    token: String,
    /// The anti-forgery field of forms, derived from the token.
    csrf: String,
    /// Listening on loopback: pages that change nothing may be read without the token, and
    /// requests must name a loopback host (no DNS rebinding).
    loopback: bool,
    /// Runs started from the page, by id, until their controller has recorded them.
    launches: Mutex<HashMap<String, actions::Launch>>,
    /// Steps run again alone from the page, by id.
    spins: Mutex<HashMap<String, actions::SpinState>>,
}

impl App {
    fn store(&self) -> Result<RunStore, UiError> {
        let path = self.state.join("runs.db");
        if !path.exists() {
            return Err(UiError::NotFound(format!(
                "there is no run store in {} yet: run a pipeline first",
                self.state.display()
            )));
        }
        RunStore::open_read_only(&path).map_err(|e| UiError::Internal(e.to_string()))
    }
}

/// Why a request failed; each is a small page with its status.
#[derive(Debug)]
pub(crate) enum UiError {
    NotFound(String),
    BadRequest(String),
    Unauthorized,
    Forbidden(String),
    Internal(String),
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            UiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            UiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            UiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "this needs the token `pipeline ui` printed: open the link it gave, or send `Authorization: \
                 Bearer TOKEN`"
                    .to_string(),
            ),
            UiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            UiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
        };
        (status, pages::error_page(status, &message)).into_response()
    }
}

/// Runs blocking store and file work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, UiError> + Send + 'static) -> Result<T, UiError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(UiError::Internal(format!("the request's work failed: {e}"))))
}

/// The page's routes over the state folder `state`, with `token` for actions. `loopback`:
/// the page listens on loopback only (see the module).
pub fn router(state: PathBuf, token: String, loopback: bool) -> Router {
    let app = Arc::new(App {
        csrf: auth::csrf_of(&token),
        state,
        token,
        loopback,
        launches: Mutex::new(HashMap::new()),
        spins: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/", get(pages::runs))
        .route("/login", get(auth::login))
        .route("/assets/ui.css", get(|| asset("text/css", pages::CSS)))
        .route("/assets/ui.js", get(|| asset("text/javascript", pages::JS)))
        .route("/runs/{id}", get(pages::run))
        .route("/runs/{id}/live", get(pages::run_live))
        .route("/runs/{id}/steps/{step}", get(pages::step))
        .route("/runs/{id}/steps/{step}/live", get(pages::step_live))
        .route("/compare", get(pages::compare))
        .route("/runs/{id}/stop", post(actions::stop))
        .route("/runs/{id}/resume", post(actions::resume))
        .route("/runs/{id}/rerun", get(actions::rerun_form).post(actions::rerun))
        .route("/runs/{id}/steps/{step}/spin", post(actions::spin))
        .route("/spins/{id}", get(actions::spin_page))
        .route("/spins/{id}/live", get(actions::spin_live))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// A new token: 128 random bits as hex.
pub fn new_token() -> String {
    auth::new_token()
}

/// Serves the page until the process is interrupted; `ready` is told the address it listens
/// on and the token (to print them).
pub fn serve(options: UiOptions, ready: impl FnOnce(SocketAddr, &str)) -> std::io::Result<()> {
    let token = options.token.unwrap_or_else(new_token);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.bind).await?;
        let addr = listener.local_addr()?;
        let app = router(options.state, token.clone(), addr.ip().is_loopback());
        ready(addr, &token);
        axum::serve(listener, app).await
    })
}
