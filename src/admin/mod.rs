//! CONTROL: the admin HTTP server: JSON API under `/api/v1`, `/metrics`, `/healthz`,
//! `/readyz` and the dashboard.
//!
//! Here: the router and the middleware every request passes (security headers, the bearer
//! token check). The read views are in `read`, the overrides in `write`, zone reloads in
//! `reload`, the JSON error in `error`; `web` serves the dashboard and the OpenAPI document,
//! `auth` holds the tokens, `listen` the connections (cap and timeouts) and `tls` the
//! certificate.
//!
//! The rule: every write needs a bearer token and is journaled (fsynced) before it takes
//! effect and before the answer; reads are open only on a loopback listener. A handler loads
//! the serving state once and answers from that one snapshot. Errors are JSON with their real
//! status: `{"error": "...", "status": 404}`.

pub mod auth;
mod error;
pub mod listen;
mod read;
mod reload;
pub mod tls;
mod web;
mod write;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::sync::Mutex;

use crate::health::monitor::MonitorHandle;
use crate::metrics::Metrics;
use crate::serving::SharedSnapshot;
use crate::state::Journal;
use auth::Tokens;
pub use error::ApiError;
use read::{audit, events, metrics, names, readyz, regions, route, zones};
use reload::reload;
pub use reload::{Reloaded, reload_zones};
pub use write::{MAX_EXPIRES_IN, MAX_REASON};
use write::{drain, force, undrain, unforce};

/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;

/// What the admin handlers share.
pub struct Admin {
    pub state: SharedSnapshot,
    pub metrics: Arc<Metrics>,
    pub monitor: MonitorHandle,
    pub journal: Mutex<Journal>,
    pub tokens: Tokens,
    pub zones_dir: PathBuf,
    /// Zones loaded and DNS listeners bound.
    pub ready: Arc<AtomicBool>,
    /// Reads need a token too (the admin listener is not on loopback).
    pub reads_need_token: bool,
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
        .route("/openapi.json", get(web::openapi))
        .route("/zones/{zone}/regions/{region}/drain", post(drain))
        .route("/zones/{zone}/regions/{region}/undrain", post(undrain))
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
    Router::new()
        .nest("/api/v1", api)
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(web::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(security_headers))
        .with_state(admin)
}

/// Headers that keep the dashboard out of frames, sniffing and other origins' scripts.
/// (Inline style attributes stay allowed: the dashboard sizes its traffic bars with them;
/// scripts come from this origin only.)
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        (
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The token's name, put in request extensions for the audit log.
#[derive(Clone)]
struct Caller(String);

/// Writes need a token; reads too when the listener is not on loopback.
async fn authorize(
    State(admin): State<Arc<Admin>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let write = request.method() != axum::http::Method::GET;
    if write || admin.reads_need_token {
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
