//! Routes: the API's paths and their handlers, from a parsed request to a
//! JSON answer or an error in the API's shape.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::guarded::read_body;
use super::Policy;
use crate::api::types::{ApiError, Endpoint};
use crate::api::{Backend, Refusal};
use crate::config::schema::valid_ifname;

/// One route of the API; see the module docs of [`crate::api`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// `GET /metrics`: Prometheus' conventional path, outside `/v1/`.
    Metrics,
    Status,
    Node,
    Endpoints,
    Endpoint {
        container_id: String,
        ifname: String,
    },
    Reconcile,
    Try,
    Confirm,
}

impl Route {
    fn parse(path: &str) -> Result<Route, Failure> {
        let not_found = || failure(StatusCode::NOT_FOUND, format!("no such path: {path}"));
        if path == "/metrics" {
            return Ok(Route::Metrics);
        }
        let rest = path.strip_prefix("/v1/").ok_or_else(not_found)?;
        let mut parts = rest.split('/');
        let route = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("status"), None, _, _) => Route::Status,
            (Some("node"), None, _, _) => Route::Node,
            (Some("endpoints"), None, _, _) => Route::Endpoints,
            (Some("reconcile"), None, _, _) => Route::Reconcile,
            (Some("try"), None, _, _) => Route::Try,
            (Some("confirm"), None, _, _) => Route::Confirm,
            (Some("endpoints"), Some(cid), Some(ifname), None) => {
                let container_id = percent_decode(cid)
                    .filter(|c| valid_container_id(c))
                    .ok_or_else(|| {
                        failure(
                            StatusCode::BAD_REQUEST,
                            format!(
                                "bad container id {cid:?}: 1 to 128 of A-Z a-z 0-9 _ . - (not . or ..)"
                            ),
                        )
                    })?;
                let ifname = percent_decode(ifname)
                    .filter(|i| valid_ifname(i))
                    .ok_or_else(|| {
                        failure(
                            StatusCode::BAD_REQUEST,
                            format!(
                                "bad interface name {ifname:?}: 1 to 15 bytes, no '/', ':' or whitespace, not . or .."
                            ),
                        )
                    })?;
                Route::Endpoint {
                    container_id,
                    ifname,
                }
            }
            _ => return Err(not_found()),
        };
        Ok(route)
    }

    /// The methods the route answers, as an `Allow` header says them.
    fn allow(&self) -> &'static str {
        match self {
            Route::Metrics | Route::Status | Route::Node | Route::Endpoints => "GET",
            Route::Endpoint { .. } => "GET, PUT, DELETE",
            Route::Reconcile | Route::Try | Route::Confirm => "POST",
        }
    }
}

/// A container id as runtimes make them (hex for containerd and CRI-O),
/// checked so it can never be a path component that escapes.
pub fn valid_container_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// What a path segment escapes: all but RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Decodes `%XX` escapes; `None` for a broken escape (a `%` not followed
/// by two hex digits) or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let well_formed = b
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == b'%')
        .all(|(i, _)| {
            b.get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        });
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Escapes a path segment so [`percent_decode`] gives it back.
pub(crate) fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// An error answer: status, message and whether the connection must close
/// (the request's body was not read to its end).
#[derive(Debug)]
pub(super) struct Failure {
    status: StatusCode,
    message: String,
    close: bool,
    allow: Option<&'static str>,
}

pub(super) fn failure(status: StatusCode, message: impl Into<String>) -> Failure {
    Failure {
        status,
        message: message.into(),
        close: false,
        allow: None,
    }
}

impl Failure {
    pub(super) fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    pub(super) fn into_response(self) -> Response<Full<Bytes>> {
        let mut r = json(
            self.status,
            &ApiError {
                error: self.message,
            },
        );
        if self.close {
            r.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(allow) = self.allow {
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        r
    }
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        let status = StatusCode::from_u16(r.status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        failure(status, r.message)
    }
}

/// `timeout=SECONDS` of `POST /v1/try`: 1 s to 1 h, 120 s when absent.
fn try_timeout(query: Option<&str>) -> Result<u64, Failure> {
    let bad = || {
        failure(
            StatusCode::BAD_REQUEST,
            "timeout must be a whole number of seconds from 1 to 3600".to_string(),
        )
    };
    let Some(query) = query else { return Ok(120) };
    let mut timeout = 120;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("timeout", v)) => timeout = v.parse().map_err(|_| bad())?,
            _ => return Err(bad()),
        }
    }
    if (1..=3600).contains(&timeout) {
        Ok(timeout)
    } else {
        Err(bad())
    }
}

fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let (status, body) = match serde_json::to_vec(value) {
        Ok(body) => (status, body),
        // Not expected for these types; still an answer in the API's shape.
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({ "error": format!("cannot encode the answer: {e}") })
                .to_string()
                .into_bytes(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub(super) async fn respond<B: Backend>(
    req: Request<Incoming>,
    backend: Arc<B>,
    policy: &Policy,
) -> Response<Full<Bytes>> {
    match handle(req, backend, policy).await {
        Ok(r) => r,
        Err(f) => f.into_response(),
    }
}

async fn handle<B: Backend>(
    req: Request<Incoming>,
    backend: Arc<B>,
    policy: &Policy,
) -> Result<Response<Full<Bytes>>, Failure> {
    let route = Route::parse(req.uri().path())?;
    let method = req.method().clone();
    let ok = StatusCode::OK;
    match (route, method) {
        (Route::Metrics, Method::GET) => {
            let mut r = Response::new(Full::new(Bytes::from(backend.metrics())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(crate::api::METRICS_CONTENT_TYPE),
            );
            Ok(r)
        }
        (Route::Status, Method::GET) => Ok(json(ok, &backend.status())),
        (Route::Node, Method::GET) => Ok(json(ok, &backend.node())),
        (Route::Endpoints, Method::GET) => Ok(json(ok, &backend.endpoints())),
        (Route::Reconcile, Method::POST) => {
            let options = crate::api::types::ReconcileOptions::parse(req.uri().query())
                .map_err(|e| failure(StatusCode::BAD_REQUEST, e))?;
            Ok(json(ok, &backend.reconcile(options).await?))
        }
        (Route::Try, Method::POST) => {
            let timeout = try_timeout(req.uri().query())?;
            Ok(json(ok, &backend.try_files(timeout).await?))
        }
        (Route::Confirm, Method::POST) => Ok(json(ok, &backend.confirm().await?)),
        (
            Route::Endpoint {
                container_id,
                ifname,
            },
            Method::GET,
        ) => match backend.endpoint(&container_id, &ifname).await {
            Some(record) => Ok(json(ok, &record)),
            None => Err(failure(
                StatusCode::NOT_FOUND,
                format!("no endpoint {container_id}/{ifname}"),
            )),
        },
        (
            Route::Endpoint {
                container_id,
                ifname,
            },
            Method::PUT,
        ) => {
            let endpoint = read_endpoint(req, policy).await?;
            // Registering persists to disk before it returns: keep that off
            // the runtime's thread, which serves every other client.
            let record =
                blocking(move || backend.put_endpoint(&container_id, &ifname, endpoint)).await?;
            Ok(json(ok, &record))
        }
        (
            Route::Endpoint {
                container_id,
                ifname,
            },
            Method::DELETE,
        ) => {
            blocking(move || backend.delete_endpoint(&container_id, &ifname)).await?;
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            Ok(r)
        }
        (route, m) => Err(Failure {
            allow: Some(route.allow()),
            ..failure(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{m} is not allowed here; use {}", route.allow()),
            )
        }),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Failure> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Failure::from),
        Err(e) => Err(failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the registry failed: {e}"),
        )),
    }
}

/// Reads and decodes a PUT body: JSON, within the size and time limits.
async fn read_endpoint(req: Request<Incoming>, policy: &Policy) -> Result<Endpoint, Failure> {
    if let Some(ct) = req.headers().get(CONTENT_TYPE) {
        let essence = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(failure(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "the body must be application/json, not {essence:?} (curl: use --json, not -d)"
                ),
            )
            .closing());
        }
    }
    let bytes = read_body(req, policy).await?;
    // Syntax first, then shape: a body that is not JSON at all is a 400,
    // JSON that is not an endpoint (serde would even take `[]`) a 422.
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        failure(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a valid endpoint: the body must be a JSON object",
        ));
    }
    Endpoint::deserialize(value).map_err(|e| {
        failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("not a valid endpoint: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_and_check_their_segments() {
        assert_eq!(Route::parse("/v1/status").unwrap(), Route::Status);
        assert_eq!(Route::parse("/v1/endpoints").unwrap(), Route::Endpoints);
        assert_eq!(
            Route::parse("/v1/endpoints/abc123/eth0").unwrap(),
            Route::Endpoint {
                container_id: "abc123".into(),
                ifname: "eth0".into()
            }
        );
        for (path, status) in [
            ("/v1/status/", 404),
            ("/v1/nope", 404),
            ("/v2/status", 404),
            ("/v1/endpoints/abc", 404),
            ("/v1/endpoints/a/b/c", 404),
            ("/v1/endpoints/../eth0", 400),
            ("/v1/endpoints/a%2Fb/eth0", 400),
            ("/v1/endpoints/abc/a:b", 400),
            ("/v1/endpoints/abc/x234567890123456", 400),
            ("/v1/endpoints/abc/%ff", 400),
            ("/v1/endpoints/abc/%4", 400),
            ("/v1/endpoints//eth0", 400),
        ] {
            let got = Route::parse(path)
                .map(|_| 200)
                .unwrap_or_else(|f| f.status.as_u16());
            assert_eq!(got, status, "{path}");
        }
        let long = "a".repeat(129);
        assert!(Route::parse(&format!("/v1/endpoints/{long}/eth0")).is_err());
    }

    #[test]
    fn percent_encoding_round_trips() {
        for s in ["eth0", "a b", "%", "ü", "net1.100", "x/y:z"] {
            assert_eq!(percent_decode(&percent_encode(s)).as_deref(), Some(s));
        }
    }
}
