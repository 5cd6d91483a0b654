//! The latency map's endpoints: `POST /api/v1/rtt` takes samples from feeds (each with its
//! own token from `[latency] token-file`, never an admin token), `GET /api/v1/latency` shows
//! what the map holds, and `/beacon.js` is the browser beacon that posts what a page's
//! visitors measure.
//!
//! The rule: a batch is judged line by line. Good lines are taken even when others are bad;
//! every dropped line is named with its reason in the answer and counted in metrics.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::error::ApiResult;
use super::listen::Peer;
use super::{Admin, ApiError, bearer};
use crate::latency::feed::Report;
use crate::latency::ingest::Reason;
use crate::latency::{Group, Net};

/// The path feeds post to: outside the admin token check, with its own.
pub const RTT_PATH: &str = "/api/v1/rtt";
/// Largest batch accepted: about 10,000 lines.
pub const MAX_RTT_BODY: usize = 1 << 20;

const BEACON: &str = include_str!("beacon.js");

#[derive(Deserialize)]
pub(super) struct TokenParam {
    /// For browser beacons, which cannot set headers on `sendBeacon`.
    token: Option<String>,
}

/// `POST /api/v1/rtt`: NDJSON samples. 200 with the report when any line was taken (or the
/// batch was empty); 400 when every line was dropped, 429 when every line was over the
/// source's rate; the report's errors as `diagnostics`.
pub(super) async fn rtt(
    State(admin): State<Arc<Admin>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    query: Result<Query<TokenParam>, QueryRejection>,
    body: String,
) -> Result<axum::Json<Report>, ApiError> {
    let feed = &admin.latency;
    if !feed.has_tokens() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this server takes no RTT samples: give feed tokens in [latency] token-file",
        ));
    }
    let param = query.ok().and_then(|q| q.0.token);
    let presented = bearer(&headers).or(param.as_deref()).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "samples need a feed token: Authorization: Bearer <token>, or ?token= for beacons",
        )
    })?;
    let source = feed
        .source(presented)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "the feed token is not valid"))?
        .to_string();
    let peer: Option<IpAddr> = peer.map(|Extension(Peer(a))| a.ip());
    let state = admin.state.load_full();
    let now = crate::state::now_ms() as f64 / 1000.0;
    // Off the control plane's one worker thread: a batch of 10,000 lines takes milliseconds,
    // and the map's lock may be held by a publication of a large map.
    let feed = feed.clone();
    let report =
        tokio::task::spawn_blocking(move || feed.ingest(&state, &source, peer, &body, now))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the batch was not taken: {e}"),
                )
            })?;
    if report.accepted > 0 || report.dropped == 0 {
        return Ok(axum::Json(report));
    }
    let status = if report
        .errors
        .iter()
        .all(|e| e.reason == Reason::RateLimited)
    {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::BAD_REQUEST
    };
    let diagnostics = report
        .errors
        .iter()
        .map(|e| format!("line {}: {}: {}", e.line, e.reason.as_str(), e.error))
        .collect();
    Err(ApiError::new(
        status,
        format!("no sample taken: {} lines dropped", report.dropped),
    )
    .with_diagnostics(diagnostics))
}

#[derive(Deserialize)]
pub(super) struct LatencyParams {
    /// A client address or network: its network's estimates.
    client: Option<String>,
    /// Networks listed after this one (paging).
    after: Option<String>,
    limit: Option<usize>,
    /// `0`: leave the group estimates out (their count stays), for a view that shows only
    /// how many there are.
    groups: Option<u8>,
}

#[derive(Serialize)]
pub(super) struct LatencyView {
    half_life_secs: f64,
    min_samples: f64,
    prior_weight: f64,
    outlier_factor: f64,
    /// Client networks with enough samples (two regions or more) to steer by.
    networks: usize,
    /// The listed networks and their estimates (raw, before shrinkage towards the prior).
    listed: Vec<NetworkView>,
    /// Networks after the last listed one: pass the last as `after`.
    more: bool,
    /// How many (group, region) estimates the map holds: `groups`' length when listed.
    group_estimates: usize,
    groups: Vec<GroupView>,
    /// This node's probe RTTs last taken as samples of its `probe-networks` (kind `probe`).
    probes: Vec<crate::latency::feed::ProbeSample>,
}

#[derive(Serialize)]
struct NetworkView {
    network: IpNet,
    /// Where the serving GeoIP database puts the network.
    country: Option<&'static str>,
    /// The region with the lowest measured RTT.
    measured_best: Option<String>,
    /// Of the measured regions the zones place, the nearest to the network: what the
    /// distance model alone would choose. Differs from `measured_best` where measuring pays.
    nearest: Option<String>,
    regions: Vec<EstimateView>,
}

#[derive(Serialize)]
struct EstimateView {
    region: String,
    rtt_ms: f64,
    samples: f64,
}

#[derive(Serialize)]
struct GroupView {
    group: String,
    region: String,
    rtt_ms: f64,
    samples: f64,
}

/// Networks listed by default, and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// `GET /api/v1/latency`: the published map; `?client=` one network's estimates.
pub(super) async fn latency(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<LatencyParams>, QueryRejection>,
) -> ApiResult<LatencyView> {
    let params = query?.0;
    let list_groups = match params.groups {
        None | Some(1) => true,
        Some(0) => false,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "groups={n}: 0 leaves the group estimates out, 1 lists them"
            )));
        }
    };
    let parse = |s: &str| -> Result<Net, ApiError> {
        let net = s
            .parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| {
                ApiError::bad_request(format!("{s:?} is neither an address nor a network"))
            })?;
        Net::within(net.trunc()).ok_or_else(|| {
            ApiError::bad_request(format!("{s} is wider than a client network (/24, /48)"))
        })
    };
    let state = admin.state.load();
    let table = &state.latency;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let nets: Vec<Net> = match &params.client {
        Some(c) => vec![parse(c)?],
        None => {
            let after = params.after.as_deref().map(parse).transpose()?;
            table.nets_from(after, limit + 1).collect()
        }
    };
    let more = nets.len() > limit;
    // A region name's place, from the first zone that has it.
    let mut places: std::collections::HashMap<&str, crate::steer::GeoPoint> = Default::default();
    for z in state.zones.by_index() {
        for r in &z.regions {
            places.entry(r.name.as_str()).or_insert(r.location);
        }
    }
    let listed = nets
        .into_iter()
        .take(limit)
        .filter_map(|n| {
            let estimates = table.network(n)?;
            // From the location table, not the query path's cache: a page of 1000 networks
            // would fill the cache with networks no query asked about.
            let location = state.geo.place(n.prefix().addr());
            let measured_best = estimates
                .iter()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|e| e.0.to_string());
            let nearest = location.point().and_then(|at| {
                estimates
                    .iter()
                    .filter_map(|e| Some((e.0, places.get(e.0)?.distance_km(at))))
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(r, _)| r.to_string())
            });
            let regions = estimates
                .into_iter()
                .map(|(region, rtt_ms, samples)| EstimateView {
                    region: region.to_string(),
                    rtt_ms,
                    samples,
                })
                .collect();
            Some(NetworkView {
                network: n.prefix(),
                country: location.country(),
                measured_best,
                nearest,
                regions,
            })
        })
        .collect();
    let groups = if !list_groups {
        Vec::new()
    } else {
        table
            .group_estimates()
            .into_iter()
            .map(
                |(g, region, rtt_ms, samples): (Group, &str, f64, f64)| GroupView {
                    group: g.to_string(),
                    region: region.to_string(),
                    rtt_ms,
                    samples,
                },
            )
            .collect()
    };
    let s = admin.latency.config.settings;
    Ok(axum::Json(LatencyView {
        half_life_secs: s.half_life_secs,
        min_samples: s.min_samples,
        prior_weight: s.prior_weight,
        outlier_factor: s.outlier_factor,
        networks: table.networks(),
        listed,
        more,
        group_estimates: table.group_estimate_count(),
        groups,
        probes: admin.latency.probes(),
    }))
}

/// `GET /beacon.js`: the browser beacon (see docs/latency-map.md).
pub(super) async fn beacon() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=3600"),
            ),
            // Pages of any site include it.
            (
                header::HeaderName::from_static("cross-origin-resource-policy"),
                HeaderValue::from_static("cross-origin"),
            ),
        ],
        BEACON,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::admin::auth::Tokens;
    use crate::geo::GeoDb;
    use crate::latency::{LatencyMap, Origin, Settings};
    use crate::serving::Snapshot;

    /// `GET /api/v1/latency` places every network it lists (its country) without a query
    /// path's lookup: the GeoIP location cache, which holds the networks queries come from,
    /// gains no entry from a page of the map.
    #[test]
    fn the_latency_view_places_networks_and_leaves_the_location_cache_alone() {
        const T0: u64 = 1_764_540_000;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let zones = crate::zone::load_dir(&repo.join("zones")).expect("the shipped zones load");
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let geo = Arc::new(GeoDb::embedded().expect("the embedded database"));
        let networks = [
            "81.2.69.0/24",
            "8.8.8.0/24",
            "1.1.1.0/24",
            "2a02:2e0:3fe::/48",
        ];
        let mut map = LatencyMap::new(Settings::default());
        for n in networks {
            let net = Net::within(n.parse().expect("a network")).expect("a client network");
            for (region, rtt) in [("us-east", 80.0), ("eu-west", 20.0)] {
                map.add_weighted(net, &Origin::default(), region, rtt, T0, 25.0);
            }
        }
        let state = Snapshot::new(zones, geo.clone(), &metrics)
            .with_latency(Arc::new(map.publish(T0)))
            .shared();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let latency = crate::latency::feed::Feed::open(
            Default::default(),
            Tokens::default(),
            dir.path().to_owned(),
            metrics.clone(),
            false,
        )
        .expect("an empty state directory");
        let journal = crate::state::Journal::open(dir.path()).expect("a new journal");
        let body = runtime.block_on(async {
            let admin = Arc::new(Admin {
                monitor: crate::health::monitor::spawn(
                    state.clone(),
                    metrics.clone(),
                    journal.overrides(),
                    None,
                ),
                state,
                metrics,
                journal: Arc::new(tokio::sync::Mutex::new(journal)),
                cluster: None,
                tokens: Tokens::default(),
                zones_dir: repo.join("zones"),
                state_dir: dir.path().to_owned(),
                ready: Arc::new(AtomicBool::new(true)),
                reads_need_token: false,
                hosts: Vec::new(),
                latency: Arc::new(latency),
                spill: Arc::new(crate::spill::Spill::new(Default::default())),
                reloads: tokio::sync::Mutex::new(()),
                changes: tokio::sync::watch::Sender::new(0),
            });
            let request = Request::get("/api/v1/latency")
                .header(header::HOST, "localhost")
                .body(Body::empty())
                .expect("a request");
            let response = super::super::router(admin)
                .oneshot(request)
                .await
                .expect("the router answers");
            assert_eq!(response.status(), StatusCode::OK);
            axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .expect("the body")
        });
        let view: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        let listed = view["listed"].as_array().expect("listed networks");
        assert_eq!(listed.len(), networks.len(), "{view}");
        let placed = listed.iter().filter(|n| n["country"].is_string()).count();
        assert!(placed >= 3, "{placed} of the networks placed: {view}");
        assert_eq!(geo.cached(), 0, "the view filled the location cache");
        // The count sees what a query's lookup leaves.
        geo.locate(networks[0].parse().expect("a network"));
        assert_eq!(geo.cached(), 1);
    }
}
