//! CONTROL: the admin HTTP server: JSON API under `/api/v1`, `/metrics`, `/healthz`,
//! `/readyz` and the dashboard.
//!
//! Here: the router and the middleware every request passes (security headers, errors as
//! JSON, the URI and body limits, the Host and Origin check, the bearer token check). The
//! read views are in `read`, the overrides in `write`, load reports (spillover) in `load`,
//! zone reloads in `reload`, the JSON error in `error`; `web` serves the dashboard and the OpenAPI document, `auth` holds the
//! tokens, `listen` the connections (cap and timeouts), `head` judges request heads before
//! hyper reads them, and `tls` holds the certificate.
//!
//! The rule: every write needs a bearer token and is journaled (fsynced) before it takes
//! effect and before the answer; reads (GET and HEAD) are open only on a loopback listener. A
//! request must name this server in its Host (DNS rebinding) and a write must come from no
//! page or this server's own (Origin). A handler loads the serving state once and answers
//! from that one snapshot. Errors are JSON with their real status:
//! `{"error": "...", "status": 404}`.

pub mod auth;
mod console;
mod error;
mod head;
mod latency;
pub mod listen;
mod load;
mod read;
mod reload;
pub mod tls;
mod web;
mod write;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Mutex;

use crate::health::monitor::MonitorHandle;
use crate::metrics::Metrics;
use crate::serving::SharedSnapshot;
use crate::state::Journal;
use auth::Tokens;
pub use error::ApiError;
use read::{audit, cluster, events, metrics, names, readyz, regions, route, zones};
use reload::reload;
pub use reload::{Reloaded, reload_zones};
pub use write::{MAX_EXPIRES_IN, MAX_REASON};
use write::{drain, force, undrain, unforce};

/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;
/// Longest request target (path and query) accepted; longer ones get 414. The HTTP parser
/// never sees a head over [`listen::MAX_HEAD`] (`head` refuses it with JSON), so a long target
/// gets the router's 414.
pub const MAX_URI: usize = 8 * 1024;
/// A request body must arrive whole within this time, or the request gets 408.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the admin handlers share.
pub struct Admin {
    pub state: SharedSnapshot,
    pub metrics: Arc<Metrics>,
    pub monitor: MonitorHandle,
    /// Shared with the cluster's store task, which journals what it applies.
    pub journal: Arc<Mutex<Journal>>,
    /// `None`: this node runs alone.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    pub tokens: Tokens,
    pub zones_dir: PathBuf,
    /// Where zone keys are by default (DNSSEC).
    pub state_dir: PathBuf,
    /// Zones loaded and DNS listeners bound.
    pub ready: Arc<AtomicBool>,
    /// Reads need a token too (the admin listener is not on loopback).
    pub reads_need_token: bool,
    /// Names the Host header may give besides `localhost` and IP literals (`--admin-host`),
    /// lower case, without a trailing dot.
    pub hosts: Vec<String>,
    /// The latency map's intake ([`crate::latency::feed`]).
    pub latency: Arc<crate::latency::feed::Feed>,
    /// Load reports and the spillover controller ([`crate::spill`]).
    pub spill: Arc<crate::spill::Spill>,
    /// Held for a whole zone reload: reloads (API and SIGHUP) run one at a time, so one that
    /// read the files earlier cannot install them after one that read them later.
    pub reloads: Mutex<()>,
    /// Bumped after every change an operator makes (overrides, reloads): wakes the
    /// dashboard's streams at once.
    pub changes: tokio::sync::watch::Sender<u64>,
}

impl Admin {
    /// Tells the dashboard's streams that something changed.
    pub fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }
}

/// The admin router.
pub fn router(admin: Arc<Admin>) -> Router {
    let api = Router::new()
        .route("/zones", get(zones))
        .route("/names", get(names))
        .route("/regions", get(regions))
        .route("/events", get(events))
        .route("/audit", get(audit))
        .route("/route", get(route))
        .route("/cluster", get(cluster))
        .route("/steering", get(console::steering))
        .route("/traffic", get(console::traffic))
        .route("/stream", get(console::stream))
        .route("/latency", get(latency::latency))
        .route("/openapi.json", get(web::openapi))
        .route("/zones/{zone}/regions/{region}/drain", post(drain))
        .route("/zones/{zone}/regions/{region}/undrain", post(undrain))
        .route("/zones/{zone}/regions/{region}/load", post(load::load))
        .route(
            "/zones/{zone}/regions/{region}/endpoints/{address}/force",
            post(force),
        )
        .route(
            "/zones/{zone}/regions/{region}/endpoints/{address}/unforce",
            post(unforce),
        )
        .route("/reload", post(reload))
        .fallback(|| async { ApiError::not_found("no such API path") })
        .layer(middleware::from_fn_with_state(admin.clone(), authorize));
    // Layers run outside in: the last added sees the request first.
    Router::new()
        // Feeds carry their own tokens, checked by the handler, not the admin token check.
        .route(latency::RTT_PATH, post(latency::rtt))
        .route("/beacon.js", get(latency::beacon))
        .nest("/api/v1", api)
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(web::routes())
        .layer(middleware::from_fn(bounded))
        .layer(middleware::from_fn_with_state(admin.clone(), same_site))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(security_headers))
        .with_state(admin)
}

/// GET and HEAD: a HEAD is answered as the GET of the same resource, so it asks for what
/// the GET asks for and no more.
fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Every error leaves as the API's JSON error, with the headers it had (`Allow` on a 405).
/// Handlers answer errors as [`ApiError`] already; this catches what the router answers
/// itself (405 for a method a path does not take, 404 outside the API) and `/readyz`'s text.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // These bodies are the router's own short texts; a longer one is not read.
    let text = axum::body::to_bytes(body, 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let allow = parts
        .headers
        .get(header::ALLOW)
        .and_then(|a| a.to_str().ok());
    let message = match (status, allow) {
        _ if !text.is_empty() => text,
        (StatusCode::METHOD_NOT_ALLOWED, Some(allow)) => {
            format!("method not allowed here; this path takes {allow}")
        }
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut response = ApiError::new(status, message).into_response();
    response.headers_mut().extend(parts.headers);
    response
}

/// The limits on what a request may send: a request target of at most [`MAX_URI`] (414),
/// and a body of at most [`MAX_BODY`] (413; [`latency::MAX_RTT_BODY`] for sample batches) that arrives whole within [`BODY_TIMEOUT`] (408,
/// and the connection closes). The body is read here, before any handler, so that no handler
/// waits on a client that stopped sending, and every extractor sees a body within the limit.
async fn bounded(request: Request, next: Next) -> Result<Response, ApiError> {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    let limit = if request.uri().path() == latency::RTT_PATH {
        latency::MAX_RTT_BODY
    } else {
        MAX_BODY
    };
    if target > MAX_URI {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("the request target is longer than {MAX_URI} bytes"),
        ));
    }
    let (parts, body) = request.into_parts();
    let body = match tokio::time::timeout(BODY_TIMEOUT, read_body(body, limit)).await {
        Ok(Ok(body)) => body,
        // The rest of an oversize body is never read: the client must not send its next
        // request on this connection, whose close would cut it (a broken pipe).
        Ok(Err(e)) => return Ok(closing(e.into_response())),
        Err(_) => {
            let response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            )
            .into_response();
            // The rest of the body may still come: this connection is done.
            return Ok(closing(response));
        }
    };
    Ok(next.run(Request::from_parts(parts, body)).await)
}

/// `response`, telling the client that the server closes the connection after it.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The whole body, at most `limit` bytes.
async fn read_body(mut body: Body, limit: usize) -> Result<Body, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {limit} bytes"),
        )
    };
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(Body::from(bytes))
}

/// DNS rebinding and cross-site writes. A page on another site whose name its owner points
/// at this address would have the browser send that name as Host: so Host must name this
/// server (`localhost`, an IP literal, which no one can rebind, or a name given with
/// `--admin-host`); 421 otherwise. A write must come from no page (no Origin: curl, scripts)
/// or from a page of this server (Origin's host and port are the Host); 403 otherwise.
/// `/healthz` and `/readyz` say nothing and stay open to any name, for orchestrators' probes.
async fn same_site(
    State(admin): State<Arc<Admin>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if matches!(request.uri().path(), "/healthz" | "/readyz") {
        return Ok(next.run(request).await);
    }
    let host = request.headers().get(header::HOST);
    // An absolute-form target (`GET http://name/ HTTP/1.1`) names the host instead.
    let named = request
        .uri()
        .authority()
        .map(|a| a.as_str().as_bytes())
        .into_iter()
        .chain(host.map(HeaderValue::as_bytes));
    for authority in named {
        if !admin.serves(authority) {
            return Err(ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this server does not answer to the name {:?}: use its address, localhost, or a name given with --admin-host",
                    String::from_utf8_lossy(authority)
                ),
            ));
        }
    }
    // Browser beacons post samples from the pages of any site; a feed token, not the origin,
    // says who may.
    if !is_read(request.method())
        && request.uri().path() != latency::RTT_PATH
        && let Some(origin) = request.headers().get(header::ORIGIN)
        && !same_origin(origin.as_bytes(), host.map(HeaderValue::as_bytes))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "writes are not taken from pages of another origin ({:?})",
                String::from_utf8_lossy(origin.as_bytes())
            ),
        ));
    }
    Ok(next.run(request).await)
}

impl Admin {
    /// Whether `authority` (`host[:port]`, as in a Host header) names this server.
    fn serves(&self, authority: &[u8]) -> bool {
        let Ok(authority) = std::str::from_utf8(authority) else {
            return false;
        };
        let host = match authority.strip_prefix('[') {
            // [IPv6]:port
            Some(rest) => match rest.split_once(']') {
                Some((ip, _)) => return ip.parse::<std::net::Ipv6Addr>().is_ok(),
                None => return false,
            },
            None => match authority.rsplit_once(':') {
                Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
                _ => authority,
            },
        };
        if host.parse::<IpAddr>().is_ok() {
            return true;
        }
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        host == "localhost" || self.hosts.contains(&host)
    }
}

/// Whether `origin` (`scheme://host[:port]`) is the origin of a page served under `host`.
fn same_origin(origin: &[u8], host: Option<&[u8]>) -> bool {
    let authority = origin
        .strip_prefix(b"http://")
        .or_else(|| origin.strip_prefix(b"https://"));
    match (authority, host) {
        (Some(a), Some(h)) => a.eq_ignore_ascii_case(h),
        _ => false,
    }
}

/// Headers that keep the dashboard out of frames, sniffing and other origins' scripts.
/// (Inline style attributes stay allowed: the dashboard sizes its traffic bars with them;
/// scripts come from this origin only.)
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The headers every admin response carries, the ones written outside the router too.
const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    (
        "content-security-policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
];

/// The token's name, put in request extensions for the audit log.
#[derive(Clone)]
struct Caller(String);

/// Writes need a token; reads too when the listener is not on loopback.
async fn authorize(
    State(admin): State<Arc<Admin>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !is_read(request.method()) || admin.reads_need_token {
        let presented = bearer(request.headers()).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this call needs a bearer token: Authorization: Bearer <token>",
            )
        })?;
        let name = admin
            .tokens
            .check(presented)
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "the token is not valid"))?;
        request.extensions_mut().insert(Caller(name.to_string()));
    }
    Ok(next.run(request).await)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Serves the admin API on `listener` until the process ends, over HTTPS when a certificate
/// is given, holding at most `connections` connections at once.
pub async fn serve(
    listener: tokio::net::TcpListener,
    admin: Arc<Admin>,
    cert: Option<Arc<tls::AdminCert>>,
    connections: usize,
) {
    let tls = cert.map(|c| c.server_config());
    listen::serve(listener, router(admin), tls, connections).await
}
