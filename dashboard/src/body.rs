//! Request bodies: what media types each endpoint takes (415 otherwise) and how large a body
//! may be (413 otherwise), checked before the body is read into memory.

use super::problem_kind;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// Largest body of a JSON endpoint (`POST /api/jobs`, `/api/login`, …).
pub const MAX_JSON_BODY: usize = 64 << 10;
/// Largest body of `POST /api/infer` unless `--http-max-infer-body` says otherwise.
pub const DEFAULT_MAX_INFER_BODY: usize = 8 << 20;

/// The largest body the route it is layered on accepts (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A whole request body, read only up to the route's [`BodyLimit`] ([`MAX_JSON_BODY`] when
/// the route sets none).
pub struct Body(pub Bytes);

impl std::ops::Deref for Body {
    type Target = Bytes;
    fn deref(&self) -> &Bytes {
        &self.0
    }
}

impl Body {
    /// Reads `req`'s body, or answers 413 (over the limit) or 400 (not readable).
    pub async fn read(req: Request) -> Result<Self, Response> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(MAX_JSON_BODY, |l| l.0);
        let why = format!(
            "a request body to {} holds at most {limit} bytes",
            req.uri().path()
        );
        let too_large = move || problem_kind(StatusCode::PAYLOAD_TOO_LARGE, "too_large", why);
        if content_length(req.headers()).is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        match Limited::new(req.into_body(), limit).collect().await {
            Ok(collected) => Ok(Body(collected.to_bytes())),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
            Err(e) => Err(problem_kind(
                StatusCode::BAD_REQUEST,
                "bad_input",
                format!("the request body could not be read: {e}"),
            )),
        }
    }
}

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Response;

    async fn from_request(req: Request, _: &S) -> Result<Self, Response> {
        Body::read(req).await
    }
}

pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The media type of a request, lower case, without parameters (`charset=…`).
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = v.split(';').next().unwrap_or_default().trim();
    Some(essence.to_ascii_lowercase())
}

/// Whether a request to `path` with `media` (and a body or not) is one the API reads:
/// `application/json` everywhere, also an image or `application/octet-stream` for
/// `/api/infer`, `application/octet-stream` or none at all for the Open Inference Protocol's
/// `/v2/…`, and nothing at all for a request without a body; the uploads take only their own
/// (`application/octet-stream` for a model, `application/x-tar` for a dataset folder).
pub fn accepts(path: &str, media: Option<&str>, has_body: bool) -> bool {
    // The Open Inference Protocol's clients (Triton's among them) send no Content-Type.
    let v2 = path.starts_with("/v2/");
    match (upload(path), media) {
        (Some("model"), m) => return m == Some("application/octet-stream"),
        (Some(_), m) => return m == Some("application/x-tar"),
        (None, _) => {}
    }
    match media {
        Some("application/json") => true,
        Some(m) if path == "/api/infer" => {
            m.starts_with("image/") || m == "application/octet-stream"
        }
        Some("application/octet-stream") => v2,
        Some(_) => false,
        None => !has_body || v2,
    }
}

/// `model` or `dataset` for the upload endpoints (`/api/models/<name>/upload`, …).
fn upload(path: &str) -> Option<&'static str> {
    let rest = path.strip_suffix("/upload")?;
    let (kind, name) = rest.strip_prefix("/api/")?.split_once('/')?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    match kind {
        "models" => Some("model"),
        "datasets" => Some("dataset"),
        _ => None,
    }
}

/// Middleware: answers 415 to a request with a body the API does not read as declared (a
/// form, `text/plain`…), before its body is read.
pub async fn media_types(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let headers = req.headers();
    let has_body = content_length(headers).is_some_and(|n| n > 0)
        || headers.contains_key(header::TRANSFER_ENCODING);
    let media = media_type(headers);
    if accepts(req.uri().path(), media.as_deref(), has_body) {
        return next.run(req).await;
    }
    let path = req.uri().path();
    let what = media.map_or("a body without a Content-Type".to_string(), |m| {
        format!("'{m}'")
    });
    let allowed = if path == "/api/infer" {
        "application/json, image/* or application/octet-stream"
    } else if upload(path) == Some("model") {
        "application/octet-stream (the TorchScript file)"
    } else if upload(path) == Some("dataset") {
        "application/x-tar (the folder as a tar archive)"
    } else if path.starts_with("/v2/") {
        "application/json, application/octet-stream or a body without a Content-Type"
    } else {
        "application/json"
    };
    let why = format!("{path} reads {allowed}, not {what}");
    problem_kind(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        why,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_endpoints_take_json_only() {
        let json = Some("application/json");
        assert!(accepts("/api/jobs", json, true));
        assert!(accepts("/api/jobs/x/cancel", None, false));
        for other in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            assert!(!accepts("/api/jobs", Some(other), true), "{other}");
            assert!(!accepts("/api/login", Some(other), false), "{other}");
            assert!(!accepts("/api/infer", Some(other), true), "{other}");
        }
        assert!(!accepts("/api/jobs", None, true));
        assert!(!accepts("/api/jobs", Some("image/png"), true));
        assert!(accepts("/api/infer", Some("image/png"), true));
        assert!(accepts(
            "/api/infer",
            Some("application/octet-stream"),
            true
        ));
    }

    #[test]
    fn uploads_take_their_own_media_type_only() {
        let octets = Some("application/octet-stream");
        let tar = Some("application/x-tar");
        assert!(accepts("/api/models/cnn/upload", octets, true));
        assert!(!accepts("/api/models/cnn/upload", tar, true));
        assert!(!accepts(
            "/api/models/cnn/upload",
            Some("application/json"),
            true
        ));
        assert!(!accepts("/api/datasets/pics/upload", None, true));
        assert!(!accepts(
            "/api/models/cnn/upload",
            Some("multipart/form-data"),
            true
        ));
        assert!(accepts("/api/datasets/pics/upload", tar, true));
        assert!(!accepts("/api/datasets/pics/upload", octets, true));
        assert!(!accepts("/api/models/a/b/upload", octets, true));
        assert!(!accepts("/api/jobs/upload", octets, true));
        assert!(!accepts("/api/models//upload", octets, true));
    }

    #[test]
    fn the_media_type_ignores_parameters_and_case() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "Application/JSON; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(media_type(&h).as_deref(), Some("application/json"));
    }
}
