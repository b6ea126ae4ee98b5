//! `--http-token`: the API, the event stream and the metrics need the token, as a bearer
//! header (API clients) or as the cookie the page's login sets (an `EventSource` cannot send
//! headers).

use super::problem;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

/// The cookie the login sets.
pub const COOKIE: &str = "idunno_token";

/// The token the API requires, if any.
#[derive(Clone, Default)]
pub struct Auth {
    token: Option<Arc<str>>,
}

impl Auth {
    /// Requires `token`, or nothing when `None`.
    pub fn new(token: Option<&str>) -> Self {
        Self {
            token: token.map(Arc::from),
        }
    }

    /// Whether a token is required.
    pub fn required(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `headers` carry the token (as a bearer header or the login cookie), or none
    /// is required.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let bearer = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.strip_prefix("Bearer "))
            .any(|t| same(t.trim(), token));
        bearer || cookies(headers).any(|(k, v)| k == COOKIE && same(v, token))
    }

    fn matches(&self, candidate: &str) -> bool {
        self.token.as_deref().is_some_and(|t| same(candidate, t))
    }
}

/// Compares without stopping at the first difference, so the time taken does not tell how
/// much of a guess was right.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Every `name=value` pair of the request's cookies.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
}

/// Middleware: answers 401 unless the request carries the token.
pub async fn require(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    if auth.allows(req.headers()) {
        next.run(req).await
    } else {
        unauthorized()
    }
}

fn unauthorized() -> Response {
    let why =
        "this API needs the token: send 'Authorization: Bearer <token>' or log in on the page";
    let mut r = problem(StatusCode::UNAUTHORIZED, why.into());
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"idunno\""),
    );
    r
}

/// `GET /api/auth`: whether a token is required and whether this request has it.
pub async fn status(State(auth): State<Auth>, headers: HeaderMap) -> Response {
    let body = serde_json::json!({
        "required": auth.required(),
        "authenticated": auth.required() && auth.allows(&headers),
    });
    Json(body).into_response()
}

/// `POST /api/login` body.
#[derive(serde::Deserialize)]
pub struct Login {
    token: String,
}

/// `POST /api/login`: sets the cookie when the token is right.
pub async fn login(State(auth): State<Auth>, body: axum::body::Bytes) -> Response {
    let login: Login = match serde_json::from_slice(&body) {
        Ok(login) => login,
        Err(e) => {
            let why = format!("send {{\"token\": \"…\"}} as JSON ({e})");
            return problem(StatusCode::BAD_REQUEST, why);
        }
    };
    if !auth.required() {
        return StatusCode::NO_CONTENT.into_response();
    }
    if !auth.matches(&login.token) {
        return unauthorized();
    }
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        login.token
    );
    set_cookie(&cookie)
}

/// `POST /api/logout`: clears the cookie.
pub async fn logout() -> Response {
    set_cookie(&format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
    ))
}

fn set_cookie(cookie: &str) -> Response {
    match HeaderValue::from_str(cookie) {
        Ok(v) => (StatusCode::NO_CONTENT, [(header::SET_COOKIE, v)]).into_response(),
        Err(_) => problem(
            StatusCode::BAD_REQUEST,
            "the token cannot be a cookie".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_token_is_taken_from_a_bearer_header_or_the_cookie() {
        let auth = Auth::new(Some("s3cret-token"));
        assert!(!auth.allows(&headers(&[])));
        assert!(auth.allows(&headers(&[("authorization", "Bearer s3cret-token")])));
        assert!(!auth.allows(&headers(&[("authorization", "Bearer s3cret-tokeN")])));
        assert!(!auth.allows(&headers(&[("authorization", "Basic s3cret-token")])));
        let cookie = "a=b; idunno_token=s3cret-token";
        assert!(auth.allows(&headers(&[("cookie", cookie)])));
        assert!(!auth.allows(&headers(&[("cookie", "idunno_token=s3cret")])));
        assert!(!auth.allows(&headers(&[("cookie", "other=s3cret-token")])));
    }

    #[test]
    fn without_a_token_everything_is_allowed() {
        assert!(Auth::new(None).allows(&headers(&[])));
        assert!(!Auth::new(None).required());
    }
}
