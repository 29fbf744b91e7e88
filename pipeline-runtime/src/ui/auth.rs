//! Who may read and who may act: the token (a cookie set by `/login`, or a bearer header), the
//! anti-forgery field of forms, same-origin checks, and loopback host names.

use super::{App, UiError};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use std::sync::Arc;

/// The cookie that carries the token in a browser.
pub(super) const COOKIE: &str = "pipeline_ui_token";

/// How a request is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    /// No token.
    Anonymous,
    /// The token, from the browser's cookie (its actions also need the anti-forgery field).
    Browser,
    /// The token, from an `Authorization: Bearer` header (a script: no ambient credential).
    Script,
}

impl Who {
    /// Whether the request holds the token.
    pub(crate) fn authed(self) -> bool {
        self != Who::Anonymous
    }
}

/// A new token: 128 random bits as hex (from the system's random source).
pub(super) fn new_token() -> String {
    crate::os::random_token()
}

/// The anti-forgery field of forms: derived from the token, so a page that has it proves the
/// reader had the token, and a cross-site page cannot know it.
pub(super) fn csrf_of(token: &str) -> String {
    let key = blake3::derive_key("pipeline ui forms v1", token.as_bytes());
    key[..16].iter().map(|b| format!("{b:02x}")).collect()
}

use crate::os::same_secret as same;

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The request's credential, checked: a wrong token is refused outright.
fn who(app: &App, headers: &HeaderMap) -> Result<Who, UiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let (token, who) = match (bearer, cookie(headers, COOKIE)) {
        (Some(t), _) => (t.trim().to_string(), Who::Script),
        (None, Some(t)) => (t, Who::Browser),
        (None, None) => return Ok(Who::Anonymous),
    };
    if same(&token, &app.token) {
        Ok(who)
    } else {
        Err(UiError::Forbidden("the token is wrong".into()))
    }
}

/// On loopback, requests must name a loopback host: a page elsewhere cannot reach this one
/// through a name that resolves to 127.0.0.1 (DNS rebinding).
fn host_ok(app: &App, headers: &HeaderMap) -> Result<(), UiError> {
    if !app.loopback {
        return Ok(());
    }
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    if matches!(name, "127.0.0.1" | "localhost" | "[::1]") {
        Ok(())
    } else {
        Err(UiError::Forbidden(format!(
            "this page answers to loopback names only, not `{host}`"
        )))
    }
}

/// Who may read: anyone on loopback, else only with the token.
pub(crate) fn read(app: &App, headers: &HeaderMap) -> Result<Who, UiError> {
    host_ok(app, headers)?;
    let who = who(app, headers)?;
    if who == Who::Anonymous && !app.loopback {
        return Err(UiError::Unauthorized);
    }
    Ok(who)
}

/// Who may act: the token; from a browser, also a same-origin request carrying the form's
/// anti-forgery field `csrf`.
pub(crate) fn act(app: &App, headers: &HeaderMap, csrf: Option<&str>) -> Result<(), UiError> {
    host_ok(app, headers)?;
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site");
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let foreign_origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|origin| {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            host.is_none_or(|h| h != origin_host)
        });
    if cross_site || foreign_origin {
        return Err(UiError::Forbidden("a request from another site cannot act here".into()));
    }
    match who(app, headers)? {
        Who::Anonymous => Err(UiError::Unauthorized),
        Who::Script => Ok(()),
        Who::Browser if csrf.is_some_and(|c| same(c, &app.csrf)) => Ok(()),
        Who::Browser => Err(UiError::Forbidden(
            "the form's anti-forgery field is missing or wrong: reload the page".into(),
        )),
    }
}

#[derive(serde::Deserialize)]
pub(super) struct Login {
    token: Option<String>,
}

/// `/login?token=...`: checks the token, keeps it in a cookie this site alone sends, and goes
/// to the runs.
pub(super) async fn login(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<Login>) -> Response {
    if let Err(e) = host_ok(&app, &headers) {
        return e.into_response();
    }
    match q.token {
        Some(t) if same(&t, &app.token) => (
            StatusCode::SEE_OTHER,
            [
                (
                    header::SET_COOKIE,
                    format!("{COOKIE}={t}; HttpOnly; SameSite=Strict; Path=/"),
                ),
                (header::LOCATION, "/".to_string()),
            ],
        )
            .into_response(),
        Some(_) => UiError::Forbidden("the token is wrong".into()).into_response(),
        None => Redirect::to("/").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_forms_fields_derived() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert_eq!(csrf_of(&a), csrf_of(&a));
        assert_ne!(csrf_of(&a), csrf_of(&b));
        assert!(!csrf_of(&a).contains(&a));
    }

    #[test]
    fn comparison_is_exact() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
