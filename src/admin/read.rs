//! The read views: zones, steered names, regions, probe events, the audit log, route
//! explanations, `/readyz` and `/metrics`.
//!
//! The rule: a view loads the serving state once and reads everything from that one
//! snapshot, so a reload or a health change in the middle of a request cannot mix two
//! states in one answer. Nothing here writes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::error::{ApiError, ApiResult};
use super::{Admin, bearer};
use crate::health::monitor::Event;
use crate::health::view::EndpointDetail;
use crate::route::{DnssecView, Route, RouteQuery};
use crate::state::{Entry, Override, now_ms};
use crate::steer::{Fallback, GeoPoint, Policy, RegionState};

pub(super) async fn readyz(State(admin): State<Arc<Admin>>) -> impl IntoResponse {
    if admin.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// The cluster as this node sees it: nodes, store, zone hashes, vantage matrix.
pub(super) async fn cluster(
    State(admin): State<Arc<Admin>>,
) -> ApiResult<crate::cluster::ClusterView> {
    match &admin.cluster {
        Some(c) => Ok(axum::Json(c.view())),
        None => Err(ApiError::not_found(
            "this node runs alone: its configuration has no [cluster] section",
        )),
    }
}

/// Prometheus text. Served outside `/api/v1`, so it checks the token itself.
pub(super) async fn metrics(
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
    let mut body = admin.metrics.render();
    let state = admin.state.load();
    let compiled: Vec<(String, bool, bool)> = state
        .zones
        .by_index()
        .into_iter()
        .map(|z| {
            let steering = state.steering(z);
            (
                z.origin.to_string(),
                steering.is_some(),
                steering.is_some_and(|s| s.measures(&state.latency)),
            )
        })
        .collect();
    crate::metrics::render_steering(&mut body, &compiled);
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
pub(super) struct ZoneView {
    zone: String,
    file: String,
    serial: Option<u32>,
    regions: Vec<String>,
    steered: Vec<String>,
    /// Signed zones: the key, the window of signatures made now and when the next begins.
    #[serde(skip_serializing_if = "Option::is_none")]
    dnssec: Option<DnssecView>,
}

pub(super) async fn zones(State(admin): State<Arc<Admin>>) -> ApiResult<Vec<ZoneView>> {
    Ok(axum::Json(zones_view(&admin)))
}

pub(super) fn zones_view(admin: &Admin) -> Vec<ZoneView> {
    let state = admin.state.load();
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
            // A signed zone serves only with its key loaded: no key error to tell.
            dnssec: DnssecView::of(z, crate::dns::cookie::now(), None),
        })
        .collect()
}

#[derive(Serialize)]
pub(super) struct NameView {
    zone: String,
    name: String,
    regions: Vec<String>,
    default_region: String,
    policy: Policy,
    ttl: u32,
    trouble_ttl: u32,
    answers: Option<usize>,
    fallback: Fallback,
}

pub(super) async fn names(State(admin): State<Arc<Admin>>) -> ApiResult<Vec<NameView>> {
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
pub(super) struct RegionView {
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
    /// When this node last named the region in an answer, and until when that answer may sit
    /// in a resolver's cache (Unix ms); `None` before its first answer.
    last_answer_at_ms: Option<u64>,
    answers_cached_until_ms: Option<u64>,
    /// While drained: how far the drain has got.
    drain_progress: Option<DrainProgress>,
    endpoints: Vec<EndpointView>,
    /// Capacity, load and shed fraction (spillover).
    spill: crate::spill::SpillView,
}

/// A drain as this node sees it through: new answers leave the region at once; answers it
/// gave before stay in resolvers' caches until their TTL runs out.
#[derive(Serialize)]
struct DrainProgress {
    /// Answers naming the region since this node saw the drain begin (0 unless every other
    /// region of a name is down and it answers its fallback).
    answers_since_drain: u64,
    /// The moment the last answer naming the region leaves every cache, at the latest (Unix
    /// ms); `None` when this node never named it.
    cached_answers_expire_at_ms: Option<u64>,
    /// Nothing this node answered can still send a client there: no answers since the drain,
    /// and every earlier one expired.
    complete: bool,
    /// In a cluster: the same over every live node, and every node gone so recently that
    /// its answers may still be cached.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<crate::cluster::ClusterDrain>,
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

/// Every region of every zone with its health, overrides, probes and traffic: what the
/// dashboard polls.
pub(super) async fn regions(State(admin): State<Arc<Admin>>) -> ApiResult<Vec<RegionView>> {
    Ok(axum::Json(regions_view(&admin).await))
}

pub(super) async fn regions_view(admin: &Admin) -> Vec<RegionView> {
    let state = admin.state.load();
    let details = admin.monitor.details.load();
    let overrides = admin.journal.lock().await.overrides().clone();
    let now = now_ms();
    let instant = std::time::Instant::now();
    let mut out = Vec::new();
    for z in state.zones.by_index() {
        let label = z.origin.to_string();
        let traffic = admin.metrics.traffic(&label);
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
            let (last_answer, cached_until) = admin.metrics.answer_times(&label, &region.name);
            let ms = |s: u64| (s > 0).then_some(s * 1000);
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
                last_answer_at_ms: ms(last_answer),
                answers_cached_until_ms: ms(cached_until),
                drain_progress: admin.metrics.answers_since_drain(&label, &region.name).map(
                    |answers_since_drain| DrainProgress {
                        answers_since_drain,
                        cached_answers_expire_at_ms: ms(cached_until),
                        complete: answers_since_drain == 0 && cached_until * 1000 <= now,
                        cluster: admin.cluster.as_ref().map(|c| {
                            let own = crate::cluster::NodeDrain {
                                cached_until_s: cached_until,
                                answers_since_drain,
                            };
                            c.drain(z, &region.name, own, now)
                        }),
                    },
                ),
                endpoints: region
                    .endpoints
                    .iter()
                    .enumerate()
                    .map(|(ei, e)| EndpointView {
                        address: e.address,
                        weight: e.weight,
                        up: view.endpoint_up(ri, ei),
                        forced: overrides
                            .forced(&label, &region.name, e.address, now)
                            .map(|(up, o)| Forced { up, by: o.clone() }),
                        target: z.checks[ri].targets[ei],
                        probe: region_probes.and_then(|p| p.get(ei)).cloned(),
                    })
                    .collect(),
                spill: admin.spill.view(&state, z, ri, instant),
            });
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Limit {
    limit: Option<usize>,
}

/// The last `limit` probe events (100 by default), oldest first.
pub(super) async fn events(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<Limit>, QueryRejection>,
) -> ApiResult<Vec<Event>> {
    let limit = query?.0.limit.unwrap_or(100);
    Ok(axum::Json(events_view(&admin, limit)))
}

pub(super) fn events_view(admin: &Admin, limit: usize) -> Vec<Event> {
    let details = admin.monitor.details.load();
    let skip = details.events.len().saturating_sub(limit);
    details.events.iter().skip(skip).cloned().collect()
}

/// The audit page given when no `limit` is asked for.
const AUDIT_PAGE: usize = 100;
/// The largest audit page: a read never holds the whole history.
const MAX_AUDIT_PAGE: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    limit: Option<usize>,
    /// Only entries older than this sequence number: the `seq` of the first entry of the
    /// page before, to walk back through the history.
    before: Option<u64>,
}

/// One page of the audit log: the newest `limit` entries (100 by default, at most 1,000)
/// older than `before` (if given), oldest first. Archived entries are read like the rest.
pub(super) async fn audit(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Vec<Entry>> {
    let q = query?.0;
    let limit = q.limit.unwrap_or(AUDIT_PAGE);
    if limit > MAX_AUDIT_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit must be at most {MAX_AUDIT_PAGE}: walk back with before=<seq of the first entry>"
        )));
    }
    Ok(axum::Json(audit_view(&admin, q.before, limit).await?))
}

/// The newest `limit` audit entries older than `before`, oldest first.
pub(super) async fn audit_view(
    admin: &Admin,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<Entry>, ApiError> {
    admin
        .journal
        .lock()
        .await
        .audit_page(before, limit)
        .map_err(|e| {
            warn!(error = %e, "cannot read the audit log");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the audit log: {e}"),
            )
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteParams {
    name: String,
    client: String,
    /// `json` (the default) or `text`, as `meridian route` prints it.
    format: Option<String>,
}

/// What `meridian route --json` prints (or, with `format=text`, what it prints without),
/// from the running state: drains, forces and health included.
pub(super) async fn route(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<RouteParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = query?.0;
    let text = match params.format.as_deref() {
        None | Some("json") => false,
        Some("text") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown format {other:?}: json or text"
            )));
        }
    };
    let state = admin.state.load();
    let query = RouteQuery::parse(&state.zones, &params.name, &params.client)?;
    let quorum = admin.cluster.as_ref().map(|c| c.explain(query.zone));
    let dnssec = DnssecView::of(query.zone, crate::dns::cookie::now(), None);
    let mut route = Route::explain(&state, query, None);
    route.quorum = quorum;
    route.dnssec = dnssec;
    Ok(if text {
        (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            route.to_string(),
        )
            .into_response()
    } else {
        axum::Json(route).into_response()
    })
}
