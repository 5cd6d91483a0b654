//! The explanation of a steered answer: what `meridian route` prints (and `--json` emits),
//! with region names instead of indexes so that it reads on its own.

use std::net::IpAddr;

use serde::Serialize;

use crate::dns::answer::{self, Client, SteeredAnswer};
use crate::geo::Location;
use crate::serving::ServingState;
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
    pub state: RegionState,
    pub verdict: Verdict,
}

impl Route {
    /// The decision the DNS path makes for `client`, for both families. The endpoint order
    /// is that of seed 0; queries rotate it.
    pub fn explain(state: &ServingState, zone: &Zone, steered: &Steered, client: Client) -> Route {
        let a = answer::steer(state, zone, steered, client, Family::V4, 0);
        let aaaa = answer::steer(state, zone, steered, client, Family::V6, 0);
        Route {
            name: steered.name.to_string(),
            zone: zone.origin.to_string(),
            geoip: state.geo.describe(),
            client,
            location: a.location,
            a: FamilyRoute::new(zone, a),
            aaaa: FamilyRoute::new(zone, aaaa),
        }
    }
}

impl FamilyRoute {
    fn new(zone: &Zone, answer: SteeredAnswer) -> FamilyRoute {
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
                    state: c.state,
                    verdict: c.verdict,
                })
                .collect(),
            addresses: answer.addresses,
            ttl: answer.ttl,
            scope: answer.scope,
        }
    }
}
