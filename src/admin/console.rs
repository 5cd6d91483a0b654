//! The console's views beyond the read API's: how each steered name ranks its regions for a
//! few reference places, where clients went, the rate chart, and the live stream of every
//! view the dashboard draws.
//!
//! The rule: the reference rankings come from [`steer::decide`] under the serving health
//! view, the same call the DNS path and `/api/v1/route` make, so they are exact; the stream
//! sends a view only when its JSON differs from what this stream sent last.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use futures_util::stream::{self, Stream};
use serde::Serialize;

use super::Admin;
use super::error::ApiResult;
use super::read;
use crate::flows::{CELL_DEGREES, Flow, WINDOW_MINUTES};
use crate::metrics::{RATE_STEP, RateSeries};
use crate::steer::{self, Basis, Fallback, Family, GeoPoint, Policy, Verdict};

/// Places whose ranking the console shows: well-known cities on every inhabited continent.
const PLACES: [(&str, f64, f64); 9] = [
    ("New York", 40.71, -74.01),
    ("São Paulo", -23.55, -46.63),
    ("London", 51.51, -0.13),
    ("Frankfurt", 50.11, 8.68),
    ("Johannesburg", -26.20, 28.05),
    ("Mumbai", 19.08, 72.88),
    ("Singapore", 1.35, 103.82),
    ("Tokyo", 35.68, 139.69),
    ("Sydney", -33.87, 151.21),
];

#[derive(Serialize, PartialEq)]
pub(super) struct SteeringView {
    zone: String,
    name: String,
    policy: Policy,
    ttl: u32,
    trouble_ttl: u32,
    /// The TTL answers carry now: the trouble TTL while one of the name's regions is
    /// changing state.
    ttl_now: u32,
    in_trouble: bool,
    fallback: Fallback,
    /// Every region of the name is down (or drained): it answers its fallback.
    fallback_answering: bool,
    places: Vec<PlaceView>,
}

#[derive(Serialize, PartialEq)]
struct PlaceView {
    place: &'static str,
    location: GeoPoint,
    basis: Basis,
    chosen: Option<String>,
    /// Every region of the name, best first.
    ranking: Vec<Ranked>,
}

#[derive(Serialize, PartialEq)]
struct Ranked {
    region: String,
    estimated_rtt_ms: Option<f64>,
    verdict: Verdict,
}

/// Every steered name with its TTL, trouble and fallback state, and its ranking of regions
/// for clients at each reference place (IPv4 answers; IPv6 for a name without IPv4).
pub(super) fn steering_view(admin: &Admin) -> Vec<SteeringView> {
    let state = admin.state.load();
    let mut out = Vec::new();
    for z in state.zones.by_index() {
        let view = state.health(z);
        for s in &z.steered {
            let c = &s.config;
            let decide =
                |at: Option<GeoPoint>, family| steer::decide(at, c, &z.regions, view, family);
            // The family that has endpoints: IPv4 unless the name has none.
            let family = if decide(None, Family::V4).basis == Basis::NoEndpoints {
                Family::V6
            } else {
                Family::V4
            };
            let now = [decide(None, Family::V4), decide(None, Family::V6)];
            let ttl_now = now.iter().map(|d| d.ttl).min().unwrap_or(c.ttl);
            let name = |id: usize| z.regions[id].name.clone();
            out.push(SteeringView {
                zone: z.origin.to_string(),
                name: s.name.to_string(),
                policy: c.policy,
                ttl: c.ttl,
                trouble_ttl: c.trouble_ttl,
                ttl_now,
                in_trouble: ttl_now < c.ttl,
                fallback: c.fallback.clone(),
                fallback_answering: now.iter().any(|d| d.basis == Basis::AllDown),
                places: PLACES
                    .iter()
                    .map(|&(place, lat, lon)| {
                        let location = GeoPoint { lat, lon };
                        let d = decide(Some(location), family);
                        PlaceView {
                            place,
                            location,
                            basis: d.basis,
                            chosen: d.chosen.map(name),
                            ranking: d
                                .candidates
                                .iter()
                                .map(|c| Ranked {
                                    region: name(c.region),
                                    estimated_rtt_ms: c.estimated_rtt_ms,
                                    verdict: c.verdict,
                                })
                                .collect(),
                        }
                    })
                    .collect(),
            });
        }
    }
    out
}

pub(super) async fn steering(State(admin): State<Arc<Admin>>) -> ApiResult<Vec<SteeringView>> {
    Ok(axum::Json(steering_view(&admin)))
}

/// Where clients went and how many answers each region gave over the last hour.
#[derive(Serialize, PartialEq)]
pub(super) struct TrafficView {
    flows: FlowsView,
    rates: RatesView,
}

#[derive(Serialize, PartialEq)]
struct FlowsView {
    window_minutes: u64,
    cell_degrees: f64,
    /// Largest first.
    flows: Vec<Flow>,
}

#[derive(Serialize, PartialEq)]
struct RatesView {
    step_seconds: u64,
    /// The start of the first step (Unix ms).
    first_step_at_ms: u64,
    series: Vec<RateSeries>,
}

impl PartialEq for RateSeries {
    fn eq(&self, other: &Self) -> bool {
        (&self.zone, &self.region, &self.counts) == (&other.zone, &other.region, &other.counts)
    }
}

pub(super) fn traffic_view(admin: &Admin) -> TrafficView {
    let (first_step_at_ms, series) = admin.metrics.rates();
    TrafficView {
        flows: FlowsView {
            window_minutes: WINDOW_MINUTES,
            cell_degrees: CELL_DEGREES,
            flows: admin.metrics.flows(),
        },
        rates: RatesView {
            step_seconds: RATE_STEP,
            first_step_at_ms,
            series,
        },
    }
}

pub(super) async fn traffic(State(admin): State<Arc<Admin>>) -> ApiResult<TrafficView> {
    Ok(axum::Json(traffic_view(&admin)))
}

/// How often the stream looks for changes, and sends a comment to keep proxies from
/// closing a quiet stream.
const STREAM_TICK: Duration = Duration::from_secs(1);
const STREAM_KEEPALIVE: u32 = 15;

/// What the stream sent last, view by view.
#[derive(Default)]
struct Sent {
    views: Vec<(&'static str, String)>,
    audit_seq: Option<u64>,
    quiet: u32,
}

impl Sent {
    /// The events for the views that changed since the last call.
    async fn changes(&mut self, admin: &Admin) -> Vec<SseEvent> {
        let mut now: Vec<(&'static str, String)> = vec![
            ("regions", json(&read::regions_view(admin).await)),
            ("zones", json(&read::zones_view(admin))),
            ("steering", json(&steering_view(admin))),
            ("events", json(&read::events_view(admin, 25))),
            ("traffic", json(&traffic_view(admin))),
        ];
        // The audit log is read from disk: only when the journal has a new entry.
        let seq = admin.journal.lock().await.last_seq();
        if self.audit_seq != Some(seq) {
            // An unreadable log was logged by the read; the next tick tries again.
            if let Ok(page) = read::audit_view(admin, None, 25).await {
                self.audit_seq = Some(seq);
                now.push(("audit", json(&page)));
            }
        }
        let mut out = Vec::new();
        for (name, data) in now {
            match self.views.iter_mut().find(|v| v.0 == name) {
                Some(v) if v.1 == data => continue,
                Some(v) => v.1.clone_from(&data),
                None => self.views.push((name, data.clone())),
            }
            out.push(SseEvent::default().event(name).data(data));
        }
        if out.is_empty() {
            self.quiet += 1;
            if self.quiet >= STREAM_KEEPALIVE {
                self.quiet = 0;
                out.push(SseEvent::default().comment("still here"));
            }
        } else {
            self.quiet = 0;
        }
        out
    }
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("views serialize")
}

/// Server-sent events: each view the dashboard draws (`regions`, `zones`, `steering`,
/// `events`, `audit`, `traffic`) whole when the stream opens, then again whenever it
/// changes: at once after an operator's write, else within a second.
pub(super) async fn stream(
    State(admin): State<Arc<Admin>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let changes = admin.changes.subscribe();
    let start = (admin, changes, Sent::default(), true);
    let events = stream::unfold(start, |(admin, mut changes, mut sent, first)| async move {
        let mut wait = !first;
        loop {
            if wait {
                // A write wakes the stream at once; anything else is seen at the next tick.
                let _ = tokio::time::timeout(STREAM_TICK, changes.changed()).await;
            }
            wait = true;
            let out = sent.changes(&admin).await;
            if !out.is_empty() {
                let batch = stream::iter(out.into_iter().map(Ok));
                return Some((batch, (admin, changes, sent, false)));
            }
        }
    });
    Sse::new(futures_util::StreamExt::flatten(events))
}
