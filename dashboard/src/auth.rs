//! `--http-token`: the API, the event stream and the metrics need the token as a bearer header
//! (API clients) or a session cookie, which `POST /api/login` sets after checking the token (an
//! `EventSource` cannot send headers). Sessions live on the server (see [`super::sessions`]):
//! the cookie holds a random id, never the token, and logout ends the session.

use super::body::Body;
use super::sessions::{LoginLimiter, Sessions, SESSION_MAX_AGE};
use super::{problem, problem_kind};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use subtle::ConstantTimeEq;

/// The cookie the login sets: a session id.
pub const COOKIE: &str = "idunno_session";

/// The token the API requires, if any, and the sessions of the page's logins.
#[derive(Clone, Default)]
pub struct Auth {
    /// The token's SHA-256: candidates are hashed and compared in constant time, so neither
    /// their length nor their first difference shows in the time taken.
    token: Option<[u8; 32]>,
    sessions: Arc<Mutex<Sessions>>,
    limiter: Arc<Mutex<LoginLimiter>>,
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl Auth {
    /// Requires `token`, or nothing when `None`.
    pub fn new(token: Option<&str>) -> Self {
        Self {
            token: token.map(digest),
            ..Default::default()
        }
    }

    /// Whether a token is required.
    pub fn required(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `candidate` is the token (constant time over the whole of both).
    fn matches(&self, candidate: &str) -> bool {
        self.token
            .is_some_and(|t| bool::from(t.ct_eq(&digest(candidate))))
    }

    /// Whether `headers` carry the token as a bearer header or a live session cookie, or
    /// none is required.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        if !self.required() {
            return true;
        }
        let bearer = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.strip_prefix("Bearer "))
            .any(|t| self.matches(t.trim()));
        bearer || session_ids(headers).any(|id| self.session(id))
    }

    fn session(&self, id: &str) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.check(id, Instant::now())
    }
}

/// The values of the session cookies of a request.
fn session_ids(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// Middleware: answers 401 unless the request carries the token or a session.
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

/// The client address the server recorded for `req` (unspecified when served otherwise,
/// e.g. in unit tests).
fn client(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// `POST /api/login`: starts a session and sets its cookie when the token is right; `429`
/// after too many failures (see [`super::sessions`]).
pub async fn login(State(auth): State<Auth>, req: Request) -> Response {
    let ip = client(&req);
    let secure =
        forwarded_https(req.headers()) || req.extensions().get::<super::OverTls>().is_some();
    let body = match Body::read(req).await {
        Ok(body) => body,
        Err(r) => return r,
    };
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
    let now = Instant::now();
    let mut limiter = auth.limiter.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(wait) = limiter.check(ip, now) {
        return too_many(wait.as_secs().max(1));
    }
    if !auth.matches(&login.token) {
        limiter.failed(ip, now);
        return unauthorized();
    }
    drop(limiter);
    let id = {
        let mut sessions = auth.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.create(now)
    };
    let secure = if secure { "; Secure" } else { "" };
    let max_age = SESSION_MAX_AGE.as_secs();
    set_cookie(&format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    ))
}

/// Whether a proxy in front says the page came over HTTPS (the cookie is then `Secure`).
fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn too_many(retry_after: u64) -> Response {
    let why = format!(
        "too many failed logins: at most {} per client and {} in all per {} s; try again in {retry_after} s",
        super::sessions::LOGIN_FAILURES_PER_CLIENT,
        super::sessions::LOGIN_FAILURES_GLOBAL,
        super::sessions::LOGIN_WINDOW.as_secs(),
    );
    let mut r = problem_kind(StatusCode::TOO_MANY_REQUESTS, "rate_limited", why);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    r
}

/// `POST /api/logout`: ends the request's session and clears the cookie.
pub async fn logout(State(auth): State<Auth>, headers: HeaderMap) -> Response {
    {
        let mut sessions = auth.sessions.lock().unwrap_or_else(|e| e.into_inner());
        for id in session_ids(&headers) {
            sessions.revoke(id);
        }
    }
    set_cookie(&format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
    ))
}

fn set_cookie(cookie: &str) -> Response {
    match HeaderValue::from_str(cookie) {
        Ok(v) => (StatusCode::NO_CONTENT, [(header::SET_COOKIE, v)]).into_response(),
        Err(_) => problem(StatusCode::INTERNAL_SERVER_ERROR, "bad cookie".into()),
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
    fn the_token_is_taken_from_a_bearer_header_only() {
        let auth = Auth::new(Some("s3cret-token"));
        assert!(!auth.allows(&headers(&[])));
        assert!(auth.allows(&headers(&[("authorization", "Bearer s3cret-token")])));
        assert!(!auth.allows(&headers(&[("authorization", "Bearer s3cret-tokeN")])));
        assert!(!auth.allows(&headers(&[(
            "authorization",
            "Bearer s3cret-token-and-more"
        )])));
        assert!(!auth.allows(&headers(&[("authorization", "Bearer ")])));
        assert!(!auth.allows(&headers(&[("authorization", "Basic s3cret-token")])));
        let raw = "a=b; idunno_session=s3cret-token";
        assert!(
            !auth.allows(&headers(&[("cookie", raw)])),
            "a cookie is no token"
        );
    }

    #[test]
    fn a_session_cookie_lets_in_until_it_is_revoked() {
        let auth = Auth::new(Some("s3cret-token"));
        let id = auth.sessions.lock().unwrap().create(Instant::now());
        let cookie = format!("a=b; {COOKIE}={id}");
        assert!(auth.allows(&headers(&[("cookie", &cookie)])));
        assert!(!auth.allows(&headers(&[("cookie", "idunno_session=0123")])));
        auth.sessions.lock().unwrap().revoke(&id);
        assert!(!auth.allows(&headers(&[("cookie", &cookie)])));
    }

    #[test]
    fn without_a_token_everything_is_allowed() {
        assert!(Auth::new(None).allows(&headers(&[])));
        assert!(!Auth::new(None).required());
    }
}
