//! The client-dependent part of an answer: who the client is, locate it, decide, pick the
//! addresses, and say how far the answer holds (the ECS scope). DNS, `meridian route` and
//! the admin API all answer through [`steer`], so they cannot disagree.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::Serialize;

use super::Snapshot;
use crate::geo::Location;
use crate::latency;
use crate::steer::{self, Decision, Family};
use crate::zone::{Steered, Zone};

/// Who an answer is for, and how we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum Client {
    /// The query carried an ECS option with a non-zero source prefix.
    Subnet { network: IpNet },
    /// No ECS, or ECS with source prefix 0 (the resolver withholds the client): the
    /// resolver's own address decides.
    Resolver { address: IpAddr, ecs_withheld: bool },
}

impl Client {
    /// The client of a query from `resolver` that disclosed `ecs` (RFC 7871 §7.1.2: a source
    /// prefix of 0 withholds the client, and the resolver's address decides).
    pub fn of(ecs: Option<IpNet>, resolver: IpAddr) -> Client {
        match ecs {
            Some(network) if network.prefix_len() > 0 => Client::Subnet { network },
            withheld => Client::Resolver {
                address: resolver,
                ecs_withheld: withheld.is_some(),
            },
        }
    }

    pub fn network(&self) -> IpNet {
        match *self {
            Client::Subnet { network } => network,
            Client::Resolver { address, .. } => IpNet::from(address),
        }
    }
}

/// The seed of a query's rotation: the same query (ID and source port) gets the same order.
pub fn seed(id: u16, src: SocketAddr) -> u64 {
    u64::from(id) ^ (u64::from(src.port()) << 16)
}

/// What the order of a decision's endpoints depends on besides the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Spread {
    /// How many endpoints may answer.
    pub endpoints: usize,
    /// Whether their weights are all equal (a rotation), or not (a draw by weight).
    pub equal_weights: bool,
}

impl Spread {
    /// The spread of the endpoints a decision may answer with.
    pub fn of(endpoints: &[&steer::Endpoint]) -> Spread {
        Spread {
            endpoints: endpoints.len(),
            equal_weights: endpoints.windows(2).all(|w| w[0].weight == w[1].weight),
        }
    }

    pub fn order(self, seed: u64) -> steer::Order {
        steer::order(self.endpoints, self.equal_weights, seed)
    }
}

/// What the latency map measured for `client`'s network, by the zone's regions; the ASN of
/// the fallback chain plugs into [`latency::Origin::of`] here.
fn measured(
    state: &Snapshot,
    zone: &Zone,
    client: Client,
    location: &Location,
) -> Option<steer::ClientRtt> {
    if state.latency.is_empty() {
        return None;
    }
    let origin = latency::Origin::of(location);
    let regions = zone.regions.iter().map(|r| (r.name.as_str(), r.location));
    state.latency.client_rtt(client.network(), &origin, regions)
}

/// A steered answer and everything that led to it.
#[derive(Debug, Clone, Serialize)]
pub struct SteeredAnswer {
    pub client: Client,
    pub location: Location,
    pub decision: Decision,
    pub addresses: Vec<IpAddr>,
    /// The endpoints the addresses were drawn from, for another seed's order.
    #[serde(skip)]
    pub spread: Spread,
    /// How the addresses were ordered: a rotation, or a draw by weight.
    #[serde(skip)]
    pub order: steer::Order,
    pub ttl: u32,
    /// ECS scope prefix for the response (RFC 7871 §7.2.1).
    pub scope: u8,
}

/// Answers `steered` for `client`. `seed` varies the order of equal-weight endpoints.
pub fn steer(
    state: &Snapshot,
    zone: &Zone,
    steered: &Steered,
    client: Client,
    family: Family,
    seed: u64,
) -> SteeredAnswer {
    let location = state.geo.locate(client.network());
    let view = state.health(zone);
    let facts = steer::ClientFacts::located(client.network().trunc(), &location);
    let config = &steered.config;
    let rtt = measured(state, zone, client, &location);
    let mut decision =
        steer::rules::apply_measured(&facts, rtt.as_ref(), config, &zone.regions, view, family);
    let spilled = steer::spill::apply(
        &mut decision,
        facts.network,
        state.spill(zone),
        &zone.regions,
    );
    let endpoints = decision.endpoints(config, &zone.regions, view, family);
    let spread = Spread::of(&endpoints);
    let order = spread.order(seed);
    let addresses = steer::select(endpoints, config.answers, seed);
    // Every client in the compiled run around the client's address gets this region: that
    // block is an honest scope, as gdnsd merges networks with identical answers; for a name
    // with rules, the compiled scope is already within what its rules depend on (their
    // networks, the AS's range, a split's hash block). Until the compiler has run, the GeoIP
    // network that decided is, narrowed by the rules. A client network with measured RTTs
    // may be answered unlike its neighbours, so its own prefix is the scope. Each is capped by
    // what the resolver disclosed; an answer no other client could see differently holds for
    // everyone: scope 0.
    let compiled = match rtt {
        Some(_) => None,
        None => state.compiled_steer(zone, steered.index, family, client),
    };
    let scope = match client {
        Client::Subnet { network } if decision.depends_on_client => match compiled {
            Some(c) => c.scope,
            None => {
                let disclosed = network.prefix_len();
                let located = match &rtt {
                    Some(r) => r.prefix.prefix_len().min(disclosed),
                    None => {
                        let geo = location.network.prefix_len().min(disclosed);
                        state.latency.cap_scope(network, geo)
                    }
                };
                let ruled = steer::rules::scope(
                    config,
                    &decision,
                    &facts,
                    located,
                    location.asn.map(|a| a.network),
                );
                // The rules' scope is capped by what the resolver disclosed, but never wider
                // than the latency map's cap on `located`.
                let scope = ruled.map_or(located, |r| r.min(disclosed).max(located));
                // A shedding region's clients (never compiled) are shed by the hash of their
                // /24 or /48.
                if spilled {
                    scope.max(steer::spill::prefix(network).min(disclosed))
                } else {
                    scope
                }
            }
        },
        _ => 0,
    };
    SteeredAnswer {
        client,
        location,
        ttl: decision.ttl,
        decision,
        addresses,
        spread,
        order,
        scope,
    }
}
