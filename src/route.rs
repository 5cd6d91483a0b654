//! The explanation of a steered answer: what `meridian route` prints (and `--json` emits),
//! with region names instead of indexes so that it reads on its own.

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::geo::Location;
use crate::health::Outcome;
use crate::serving::Snapshot;
use crate::serving::answer::{self, Client, SteeredAnswer};
use crate::steer::{Basis, Family, GeoPoint, RegionState, Verdict};
use crate::zone::{Steered, Zone};

#[derive(Debug, Serialize)]
pub struct Route {
    pub name: String,
    pub zone: String,
    pub geoip: String,
    pub client: Client,
    pub location: Location,
    pub a: FamilyRoute,
    pub aaaa: FamilyRoute,
}

/// The decision for one address family (A or AAAA).
#[derive(Debug, Serialize)]
pub struct FamilyRoute {
    pub basis: Basis,
    pub chosen: Option<String>,
    /// Every region of the name, best first.
    pub candidates: Vec<CandidateView>,
    pub addresses: Vec<IpAddr>,
    pub ttl: u32,
    pub scope: u8,
}

#[derive(Debug, Serialize)]
pub struct CandidateView {
    pub region: String,
    pub location: GeoPoint,
    pub distance_km: Option<f64>,
    pub estimated_rtt_ms: Option<f64>,
    pub degradation_ms: f64,
    pub state: RegionState,
    pub verdict: Verdict,
    pub endpoints: Vec<EndpointView>,
}

/// One endpoint of a candidate region: how it is checked and what the last probe said.
#[derive(Debug, Serialize)]
pub struct EndpointView {
    pub address: IpAddr,
    pub weight: u32,
    pub up: bool,
    /// `none`, `tcp`, `http` or `https`.
    pub check: &'static str,
    /// Where probes connect, when probed.
    pub target: Option<SocketAddr>,
    /// The probe result shown, if a probe ran.
    pub probe: Option<Outcome>,
}

impl Route {
    /// The decision the DNS path makes for `client`, for both families, from `state`'s
    /// health; `probes` (per region, per endpoint) are shown beside the endpoints. The
    /// endpoint order is that of seed 0; queries rotate it.
    pub fn explain(
        state: &Snapshot,
        zone: &Zone,
        steered: &Steered,
        client: Client,
        probes: Option<&[Vec<Option<Outcome>>]>,
    ) -> Route {
        let a = answer::steer(state, zone, steered, client, Family::V4, 0);
        let aaaa = answer::steer(state, zone, steered, client, Family::V6, 0);
        let ctx = Context {
            zone,
            state,
            probes,
        };
        Route {
            name: steered.name.to_string(),
            zone: zone.origin.to_string(),
            geoip: state.geo.describe(),
            client,
            location: a.location,
            a: FamilyRoute::new(&ctx, a),
            aaaa: FamilyRoute::new(&ctx, aaaa),
        }
    }
}

struct Context<'a> {
    zone: &'a Zone,
    state: &'a Snapshot,
    probes: Option<&'a [Vec<Option<Outcome>>]>,
}

impl Context<'_> {
    fn endpoints(&self, id: usize) -> Vec<EndpointView> {
        let region = &self.zone.regions[id];
        let check = &self.zone.checks[id];
        let health = self.state.health(self.zone).region(id);
        region
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| EndpointView {
                address: e.address,
                weight: e.weight,
                up: health.is_none_or(|h| h.endpoints_up.get(i).copied().unwrap_or(true)),
                check: check.spec.kind.name(),
                target: check.targets[i],
                probe: self
                    .probes
                    .and_then(|p| p.get(id))
                    .and_then(|r| r.get(i).cloned().flatten()),
            })
            .collect()
    }
}

impl FamilyRoute {
    fn new(ctx: &Context<'_>, answer: SteeredAnswer) -> FamilyRoute {
        let zone = ctx.zone;
        let name = |id: usize| zone.regions[id].name.clone();
        FamilyRoute {
            basis: answer.decision.basis,
            chosen: answer.decision.chosen.map(name),
            candidates: answer
                .decision
                .candidates
                .iter()
                .map(|c| CandidateView {
                    region: name(c.region),
                    location: zone.regions[c.region].location,
                    distance_km: c.distance_km,
                    estimated_rtt_ms: c.estimated_rtt_ms,
                    degradation_ms: c.degradation_ms,
                    state: c.state,
                    verdict: c.verdict,
                    endpoints: ctx.endpoints(c.region),
                })
                .collect(),
            addresses: answer.addresses,
            ttl: answer.ttl,
            scope: answer.scope,
        }
    }
}
