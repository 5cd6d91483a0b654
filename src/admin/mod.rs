//! CONTROL: the admin HTTP server: JSON API under `/api/v1`, `/metrics`, `/healthz`,
//! `/readyz` and the dashboard.
//!
//! The rule: every write needs a bearer token and is journaled (fsynced) before it takes
//! effect and before the answer; reads are open only on a loopback listener. Errors are JSON
//! with their real status: `{"error": "...", "status": 404}`.

pub mod auth;
pub mod tls;
mod web;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hickory_proto::rr::{LowerName, Name};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::dns::answer::Client;
use crate::health::monitor::MonitorHandle;
use crate::health::view::EndpointDetail;
use crate::route::Route;
use crate::serving::SharedState;
use crate::state::{Action, Entry, Journal, Override, now_ms};
use crate::steer::{GeoPoint, RegionState};
use crate::zone::{self, Diagnostic, Zone};
use auth::Tokens;

/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;
/// Longest reason accepted on a write.
pub const MAX_REASON: usize = 500;
/// Longest override accepted, in seconds (30 days).
pub const MAX_EXPIRES_IN: u64 = 30 * 24 * 3600;

/// What the admin handlers share.
pub struct Admin {
    pub state: SharedState,
    pub monitor: MonitorHandle,
    pub journal: Mutex<Journal>,
    pub tokens: Tokens,
    pub zones_dir: PathBuf,
    /// Zones loaded and DNS listeners bound.
    pub ready: Arc<AtomicBool>,
    /// Reads need a token too (the admin listener is not on loopback).
    pub reads_need_token: bool,
}

/// An API error: a status and a message, as JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    details: Option<serde_json::Value>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            details: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.message, "status": self.status.as_u16()});
        if let Some(d) = self.details {
            body["diagnostics"] = d;
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"meridian\""),
            );
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = match &r {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, r.body_text())
    }
}

/// A body over [`MAX_BODY`] (413), or one that could not be read.
impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        ApiError::new(r.status(), r.body_text())
    }
}

/// A path parameter that does not decode (not UTF-8, say).
impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

type ApiResult<T> = Result<axum::Json<T>, ApiError>;

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

async fn readyz(State(admin): State<Arc<Admin>>) -> impl IntoResponse {
    if admin.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if admin.reads_need_token
        && bearer(&headers)
            .and_then(|t| admin.tokens.check(t))
            .is_none()
    {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this call needs a bearer token: Authorization: Bearer <token>",
        ));
    }
    let body = admin.state.load().metrics.render();
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response())
}

#[derive(Serialize)]
struct ZoneView {
    zone: String,
    file: String,
    serial: Option<u32>,
    regions: Vec<String>,
    steered: Vec<String>,
}

async fn zones(State(admin): State<Arc<Admin>>) -> ApiResult<Vec<ZoneView>> {
    let state = admin.state.load();
    Ok(axum::Json(
        state
            .zones
            .by_index()
            .into_iter()
            .map(|z| ZoneView {
                zone: z.origin.to_string(),
                file: z.file.display().to_string(),
                serial: match &z.soa().data {
                    hickory_proto::rr::RData::SOA(s) => Some(s.serial),
                    _ => None,
                },
                regions: z.regions.iter().map(|r| r.name.clone()).collect(),
                steered: z.steered.iter().map(|s| s.name.to_string()).collect(),
            })
            .collect(),
    ))
}

#[derive(Serialize)]
struct NameView {
    zone: String,
    name: String,
    regions: Vec<String>,
    default_region: String,
    policy: crate::steer::Policy,
    ttl: u32,
    trouble_ttl: u32,
    answers: Option<usize>,
    fallback: crate::steer::Fallback,
}

async fn names(State(admin): State<Arc<Admin>>) -> ApiResult<Vec<NameView>> {
    let state = admin.state.load();
    let mut out = Vec::new();
    for z in state.zones.by_index() {
        for s in &z.steered {
            let c = &s.config;
            out.push(NameView {
                zone: z.origin.to_string(),
                name: s.name.to_string(),
                regions: c
                    .regions
                    .iter()
                    .map(|&r| z.regions[r].name.clone())
                    .collect(),
                default_region: z.regions[c.default_region].name.clone(),
                policy: c.policy,
                ttl: c.ttl,
                trouble_ttl: c.trouble_ttl,
                answers: c.answers,
                fallback: c.fallback.clone(),
            });
        }
    }
    Ok(axum::Json(out))
}

#[derive(Serialize)]
struct Traffic {
    answers_total: u64,
    answers_last_minute: u64,
    share_total: f64,
    share_last_minute: f64,
}

#[derive(Serialize)]
struct RegionView {
    zone: String,
    region: String,
    location: GeoPoint,
    state: RegionState,
    drained: Option<Override>,
    degradation_ms: f64,
    over_limit: bool,
    in_trouble: bool,
    check: &'static str,
    traffic: Traffic,
    endpoints: Vec<EndpointView>,
}

#[derive(Serialize)]
struct Forced {
    up: bool,
    #[serde(flatten)]
    by: Override,
}

#[derive(Serialize)]
struct EndpointView {
    address: IpAddr,
    weight: u32,
    /// In service: probes and overrides together.
    up: bool,
    forced: Option<Forced>,
    target: Option<SocketAddr>,
    probe: Option<EndpointDetail>,
}

async fn regions(State(admin): State<Arc<Admin>>) -> ApiResult<Vec<RegionView>> {
    let state = admin.state.load();
    let details = admin.monitor.details.load();
    let overrides = admin.journal.lock().await.overrides().clone();
    let now = now_ms();
    let mut out = Vec::new();
    for z in state.zones.by_index() {
        let label = z.origin.to_string();
        let traffic = state.metrics.traffic(&label);
        let total: u64 = traffic.iter().map(|t| t.1).sum();
        let minute: u64 = traffic.iter().map(|t| t.2).sum();
        let view = state.health(z);
        let probes = details.zones.get(&label);
        for (ri, region) in z.regions.iter().enumerate() {
            let h = view.region(ri);
            let (answers_total, answers_last_minute) =
                traffic.get(ri).map_or((0, 0), |t| (t.1, t.2));
            let share = |n: u64, of: u64| if of == 0 { 0.0 } else { n as f64 / of as f64 };
            let region_probes = probes.and_then(|p| p.get(ri)).and_then(Option::as_ref);
            out.push(RegionView {
                zone: label.clone(),
                region: region.name.clone(),
                location: region.location,
                state: view.state(ri),
                drained: overrides.drained(&label, &region.name, now).cloned(),
                degradation_ms: h.map_or(0.0, |h| h.degradation_ms),
                over_limit: h.is_some_and(|h| h.over_limit),
                in_trouble: h.is_some_and(|h| h.in_trouble),
                check: z.checks[ri].spec.kind.name(),
                traffic: Traffic {
                    answers_total,
                    answers_last_minute,
                    share_total: share(answers_total, total),
                    share_last_minute: share(answers_last_minute, minute),
                },
                endpoints: region
                    .endpoints
                    .iter()
                    .enumerate()
                    .map(|(ei, e)| EndpointView {
                        address: e.address,
                        weight: e.weight,
                        up: h.is_none_or(|h| h.endpoints_up.get(ei).copied().unwrap_or(true)),
                        forced: overrides
                            .forced(&label, &region.name, e.address, now)
                            .map(|(up, o)| Forced { up, by: o.clone() }),
                        target: z.checks[ri].targets[ei],
                        probe: region_probes.and_then(|p| p.get(ei)).cloned(),
                    })
                    .collect(),
            });
        }
    }
    Ok(axum::Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Limit {
    limit: Option<usize>,
}

async fn events(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<Limit>, QueryRejection>,
) -> ApiResult<Vec<crate::health::monitor::Event>> {
    let limit = query?.0.limit.unwrap_or(100);
    let details = admin.monitor.details.load();
    let skip = details.events.len().saturating_sub(limit);
    Ok(axum::Json(
        details.events.iter().skip(skip).cloned().collect(),
    ))
}

async fn audit(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<Limit>, QueryRejection>,
) -> ApiResult<Vec<Entry>> {
    let limit = query?.0.limit.unwrap_or(100);
    let journal = admin.journal.lock().await;
    let entries = journal.entries();
    let skip = entries.len().saturating_sub(limit);
    Ok(axum::Json(entries[skip..].to_vec()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteQuery {
    name: String,
    client: String,
}

async fn route(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<RouteQuery>, QueryRejection>,
) -> ApiResult<Route> {
    let q = query?.0;
    let network: IpNet = q
        .client
        .parse()
        .or_else(|_| q.client.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "client {:?}: expected an address or a network such as 81.2.69.0/24",
                q.client
            ))
        })?;
    let mut name = Name::from_utf8(&q.name)
        .map_err(|e| ApiError::bad_request(format!("name {:?}: {e}", q.name)))?;
    name.set_fqdn(true);
    let lower = LowerName::new(&name);
    let state = admin.state.load();
    let zone = state
        .zones
        .find(&lower)
        .ok_or_else(|| ApiError::not_found(format!("{name} is in no loaded zone")))?;
    let steered = zone
        .steered_by_name(&lower)
        .ok_or_else(|| ApiError::not_found(format!("{name} is not a steered name")))?;
    let client = Client::Subnet {
        network: network.trunc(),
    };
    Ok(axum::Json(Route::explain(
        &state, zone, steered, client, None,
    )))
}

/// Body of drain and force calls.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteBody {
    reason: String,
    /// Seconds until the override lifts itself; none: until undone.
    expires_in: Option<u64>,
    /// For force: "up" or "down".
    state: Option<String>,
}

impl WriteBody {
    fn check(&self, expiring: bool) -> Result<Option<u64>, ApiError> {
        let reason = self.reason.trim();
        if reason.is_empty() {
            return Err(ApiError::bad_request("reason is empty: say why"));
        }
        if reason.chars().count() > MAX_REASON {
            return Err(ApiError::bad_request(format!(
                "reason is longer than {MAX_REASON} characters"
            )));
        }
        match self.expires_in {
            Some(_) if !expiring => Err(ApiError::bad_request(
                "expires_in applies to drain and force only",
            )),
            Some(0) => Err(ApiError::bad_request(
                "expires_in must be at least 1 second",
            )),
            Some(s) if s > MAX_EXPIRES_IN => Err(ApiError::bad_request(format!(
                "expires_in must be at most {MAX_EXPIRES_IN} seconds (30 days)"
            ))),
            Some(s) => Ok(Some(now_ms() + s * 1000)),
            None => Ok(None),
        }
    }
}

/// The zone and region named in a path, or a 404 that says what exists.
fn find_region(admin: &Admin, zone: &str, region: &str) -> Result<(String, String), ApiError> {
    locate_region(admin, zone, region).map(|(_, origin, region)| (origin, region))
}

/// The zone (index and origin) and region named in a path.
fn locate_region(
    admin: &Admin,
    zone: &str,
    region: &str,
) -> Result<(usize, String, String), ApiError> {
    let mut name =
        Name::from_utf8(zone).map_err(|e| ApiError::bad_request(format!("zone {zone:?}: {e}")))?;
    name.set_fqdn(true);
    let state = admin.state.load();
    let z: &Zone = state
        .zones
        .zones()
        .find(|z| z.origin == name.to_lowercase())
        .ok_or_else(|| ApiError::not_found(format!("unknown zone {name}")))?;
    if !z.regions.iter().any(|r| r.name == region) {
        let known: Vec<&str> = z.regions.iter().map(|r| r.name.as_str()).collect();
        return Err(ApiError::not_found(format!(
            "unknown region {region:?} in zone {} (known: {})",
            z.origin,
            known.join(", ")
        )));
    }
    Ok((z.index, z.origin.to_string(), region.to_string()))
}

/// Journals `entry` and applies the new overrides; answers once DNS follows them.
async fn write(admin: &Admin, entry: Entry) -> ApiResult<Entry> {
    let (entry, overrides) = {
        let mut journal = admin.journal.lock().await;
        let entry = journal.append(entry).map_err(|e| {
            warn!(error = %e, "cannot write the journal");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot record the change: {e}"),
            )
        })?;
        (entry, journal.overrides().clone())
    };
    info!(by = %entry.by, action = ?entry.action, zone = %entry.zone, region = %entry.region,
        endpoint = ?entry.endpoint, reason = %entry.reason, expires_at_ms = ?entry.expires_at_ms,
        "operator override");
    admin.monitor.overrides(overrides).await;
    Ok(axum::Json(entry))
}

fn entry(by: &str, action: Action, zone: String, region: String, reason: &str) -> Entry {
    Entry {
        seq: 0,
        at_ms: now_ms(),
        by: by.to_string(),
        action,
        zone,
        region,
        endpoint: None,
        reason: reason.trim().to_string(),
        expires_at_ms: None,
    }
}

async fn drain(
    State(admin): State<Arc<Admin>>,
    axum::Extension(caller): axum::Extension<Caller>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<axum::Json<WriteBody>, JsonRejection>,
) -> ApiResult<Entry> {
    let Path((zone, region)) = path?;
    region_write(&admin, &caller, &zone, &region, body, Action::Drain).await
}

async fn undrain(
    State(admin): State<Arc<Admin>>,
    axum::Extension(caller): axum::Extension<Caller>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<axum::Json<WriteBody>, JsonRejection>,
) -> ApiResult<Entry> {
    let Path((zone, region)) = path?;
    region_write(&admin, &caller, &zone, &region, body, Action::Undrain).await
}

/// A drain (which may expire) or an undrain of one region.
async fn region_write(
    admin: &Admin,
    caller: &Caller,
    zone: &str,
    region: &str,
    body: Result<axum::Json<WriteBody>, JsonRejection>,
    action: Action,
) -> ApiResult<Entry> {
    let body = body?.0;
    if body.state.is_some() {
        return Err(ApiError::bad_request("state applies to force only"));
    }
    let expires = body.check(action == Action::Drain)?;
    let (zone, region) = find_region(admin, zone, region)?;
    let mut e = entry(&caller.0, action, zone, region, &body.reason);
    e.expires_at_ms = expires;
    write(admin, e).await
}

fn find_endpoint(
    admin: &Admin,
    zone: &str,
    region: &str,
    address: &str,
) -> Result<(String, String, IpAddr), ApiError> {
    let (index, zone, region) = locate_region(admin, zone, region)?;
    let addr: IpAddr = address
        .parse()
        .map_err(|_| ApiError::bad_request(format!("endpoint {address:?} is not an IP address")))?;
    let state = admin.state.load();
    let z = state.zones.get(index).ok_or_else(|| {
        // Only a reload between the two loads can get here.
        ApiError::not_found(format!("zone {zone} was reloaded away"))
    })?;
    let r = z
        .regions
        .iter()
        .find(|r| r.name == region)
        .expect("region found above");
    if !r.endpoints.iter().any(|e| e.address == addr) {
        let known: Vec<String> = r.endpoints.iter().map(|e| e.address.to_string()).collect();
        return Err(ApiError::not_found(format!(
            "region {region} has no endpoint {addr} (endpoints: {})",
            known.join(", ")
        )));
    }
    Ok((zone, region, addr))
}

async fn force(
    State(admin): State<Arc<Admin>>,
    axum::Extension(caller): axum::Extension<Caller>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    body: Result<axum::Json<WriteBody>, JsonRejection>,
) -> ApiResult<Entry> {
    let Path((zone, region, address)) = path?;
    let body = body?.0;
    let action = match body.state.as_deref() {
        Some("up") => Action::ForceUp,
        Some("down") => Action::ForceDown,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state {other:?} must be \"up\" or \"down\""
            )));
        }
        None => {
            return Err(ApiError::bad_request(
                "state is missing: \"up\" or \"down\"",
            ));
        }
    };
    let expires = body.check(true)?;
    let (zone, region, addr) = find_endpoint(&admin, &zone, &region, &address)?;
    let mut e = entry(&caller.0, action, zone, region, &body.reason);
    e.endpoint = Some(addr);
    e.expires_at_ms = expires;
    write(&admin, e).await
}

async fn unforce(
    State(admin): State<Arc<Admin>>,
    axum::Extension(caller): axum::Extension<Caller>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    body: Result<axum::Json<WriteBody>, JsonRejection>,
) -> ApiResult<Entry> {
    let Path((zone, region, address)) = path?;
    let body = body?.0;
    if body.state.is_some() {
        return Err(ApiError::bad_request("state applies to force only"));
    }
    body.check(false)?;
    let (zone, region, addr) = find_endpoint(&admin, &zone, &region, &address)?;
    let mut e = entry(&caller.0, Action::Unforce, zone, region, &body.reason);
    e.endpoint = Some(addr);
    write(&admin, e).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadBody {
    reason: Option<String>,
}

#[derive(Serialize)]
pub struct Reloaded {
    pub zones: usize,
    pub entry: Entry,
}

async fn reload(
    State(admin): State<Arc<Admin>>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Reloaded> {
    let body = body?;
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        "reload requested".to_string()
    } else {
        let b: ReloadBody = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))?;
        b.reason.unwrap_or_else(|| "reload requested".into())
    };
    reload_zones(&admin, &caller.0, &reason)
        .await
        .map(axum::Json)
}

/// Loads the zone directory again; a load that fails validation keeps the running zones and
/// returns every diagnostic. Shared by the API and SIGHUP.
pub async fn reload_zones(admin: &Admin, by: &str, reason: &str) -> Result<Reloaded, ApiError> {
    let dir = admin.zones_dir.clone();
    let loaded = tokio::task::spawn_blocking(move || zone::load_dir(&dir))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let metrics = admin.state.load().metrics.clone();
    match loaded {
        Ok(zones) => {
            let count = zones.len();
            admin.monitor.reload(zones).await;
            metrics.reload(true);
            let e = entry(by, Action::Reload, String::new(), String::new(), reason);
            let entry = admin.journal.lock().await.append(e).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reloaded, but cannot record it: {e}"),
                )
            })?;
            info!(zones = count, by, "zones reloaded");
            Ok(Reloaded {
                zones: count,
                entry,
            })
        }
        Err(e) => {
            metrics.reload(false);
            warn!(by, diagnostics = %e, "reload refused; the running zones keep serving");
            let list: Vec<String> = e.0.iter().map(Diagnostic::to_string).collect();
            Err(ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: format!(
                    "the zones do not validate ({} problems); the running zones keep serving",
                    e.0.len()
                ),
                details: Some(json!(list)),
            })
        }
    }
}

/// Serves the admin API on `listener` until the process ends, over HTTPS when a certificate
/// is given.
pub async fn serve(
    listener: tokio::net::TcpListener,
    admin: Arc<Admin>,
    cert: Option<Arc<tls::AdminCert>>,
) -> std::io::Result<()> {
    match cert {
        Some(cert) => {
            let tls = tls::TlsListener::new(listener, cert.server_config())?;
            axum::serve(tls, router(admin)).await
        }
        None => axum::serve(listener, router(admin)).await,
    }
}
