//! The networks the latency map measured, compiled: for each of them, every steered name and
//! family decided once as the direct path decides it (`steer::rules::apply_measured` with the
//! network's estimates, under the zone's health view and rules), and laid over the compiled
//! runs as one small answer number per network, found by the index the latency table's own
//! search gives (`LatencyTable::index_of`), which serving does for every query anyway.
//!
//! The rule: an overlay belongs to one published latency table (held, and compared by
//! pointer) besides the zone, GeoIP and health view of its [`ZoneSteering`]. A snapshot with
//! another table answers its measured networks the direct way until the compiler has laid
//! the overlay anew; the runs keep serving every other client meanwhile. A network whose
//! answer may differ between its addresses (the GeoIP or ASN database splits it, a network
//! rule lies inside it, or an AS rule's database network is narrower) is left to the direct
//! path, so an answer the overlay gives is the direct path's for every address of the
//! network, ECS scope included: the measured /24 or /48, widened only as the rules widen it.

use std::collections::HashMap;
use std::sync::Arc;

use ipnet::IpNet;

use super::{Compiled, DIRECT, Interned, Lazy, NameSteering, Steering, ZoneSteering, family_index};
use crate::geo::asn::AsnDb;
use crate::geo::table::{self, AsnRanges, LocationTable, PointId};
use crate::latency::{LatencyTable, Origin};
use crate::serving::answer::Client;
use crate::steer::{self, ClientFacts, Family, GeoPoint, HealthView, rules};
use crate::zone::Zone;

/// The measured networks' answers of a zone's names.
#[derive(Debug)]
pub(super) struct Overlay {
    /// The table the answers were decided from; `None` when every name answers all clients
    /// alike ([`NameSteering::Uniform`]), which no measurement changes.
    latency: Option<Arc<LatencyTable>>,
    /// By steered name, then family: `None` for a uniform name.
    names: Vec<[Option<Arc<Layer>>; 2]>,
    /// Networks left to the direct path for some name or family.
    direct: usize,
}

/// One name's answers for one family.
#[derive(Debug, PartialEq)]
struct Layer {
    /// By the table's network index: an index into `answers`, or [`DIRECT`].
    answer_of: Box<[u16]>,
    /// Each answer's steering, and the scope it holds for before the client's own prefix
    /// caps it (0: every client gets it).
    answers: Box<[(Steering, u8)]>,
}

impl Layer {
    fn bytes(&self) -> usize {
        self.answer_of.len() * 2 + self.answers.len() * std::mem::size_of::<(Steering, u8)>()
    }
}

/// What the overlay of a zone holds, for the compiler's log line.
#[derive(Debug, Clone, Copy)]
pub struct MeasuredStats {
    /// Networks of the table the overlay was decided from.
    pub networks: usize,
    /// Names whose answers depend on the client (the others need no overlay).
    pub names: usize,
    /// Networks left to the direct path for some name or family.
    pub direct: usize,
    pub bytes: usize,
}

impl MeasuredStats {
    /// Octets per measured network and name, both families.
    pub fn bytes_per_network_name(&self) -> f64 {
        self.bytes as f64 / (self.networks.max(1) * self.names.max(1)) as f64
    }
}

/// The answer a network gets, with what tells answers apart beyond their steering.
type Decided = (Steering, u8, Option<usize>);

/// A layer being built.
#[derive(Default)]
struct Builder {
    answer_of: Vec<u16>,
    answers: Vec<(Steering, u8)>,
    numbers: HashMap<(Steering, u8), u16>,
}

impl Builder {
    fn push(&mut self, decided: Option<Decided>) {
        let number = match decided {
            None => DIRECT,
            Some((steering, widest, _)) => match self.numbers.get(&(steering, widest)) {
                Some(&n) => n,
                // Past the numbers an answer can have, a network stays direct (and exact).
                None => match u16::try_from(self.answers.len())
                    .ok()
                    .filter(|&n| n < DIRECT)
                {
                    Some(n) => {
                        self.numbers.insert((steering, widest), n);
                        self.answers.push((steering, widest));
                        n
                    }
                    None => DIRECT,
                },
            },
        };
        self.answer_of.push(number);
    }

    fn finish(self) -> Layer {
        Layer {
            answer_of: self.answer_of.into(),
            answers: self.answers.into(),
        }
    }
}

/// Where one part of a measured network is: its place and AS, and the RTTs its origin's
/// priors give.
struct Part {
    facts: ClientFacts,
    rtt: steer::ClientRtt,
}

impl Overlay {
    /// No answers yet: where some name depends on the client, the overlay of a table no
    /// snapshot serves (so [`ZoneSteering::measures`] is false while the map has networks,
    /// and the compiler lays it).
    pub(super) fn pending(names: &[[NameSteering; 2]]) -> Overlay {
        let layered = names
            .iter()
            .flatten()
            .any(|n| !matches!(n, NameSteering::Uniform(_)));
        Overlay {
            latency: layered.then(Arc::default),
            names: vec![[None, None]; names.len()],
            direct: 0,
        }
    }

    /// Decides every network of `latency` for every name of `zone` (compiled as `names`)
    /// under `view`; multivalue lists are numbered in `also`.
    pub(super) fn compile<'t, F>(
        zone: &Zone,
        view: &HealthView,
        latency: &Arc<LatencyTable>,
        names: &[[NameSteering; 2]],
        also: &mut Interned,
        table: &mut Lazy<'t, F>,
    ) -> Result<Overlay, String>
    where
        F: FnOnce() -> Result<&'t LocationTable, String>,
    {
        let layered: Vec<[bool; 2]> = names
            .iter()
            .map(|n| n.each_ref().map(|f| !matches!(f, NameSteering::Uniform(_))))
            .collect();
        if !layered.iter().flatten().any(|&l| l) {
            return Ok(Overlay {
                latency: None,
                names: vec![[None, None]; names.len()],
                direct: 0,
            });
        }
        let mut builders: Vec<[Option<Builder>; 2]> = layered
            .iter()
            .map(|l| l.map(|on| on.then(Builder::default)))
            .collect();
        let networks = latency.networks();
        let mut direct = 0;
        if networks > 0 {
            let t = table.get()?;
            // A client's AS is its first prior where the map has estimates by AS, and what
            // AS rules act on.
            let asn_rules = zone.steered.iter().any(|s| !s.config.rules.asns.is_empty());
            let asns = if latency.has_asn_groups() || asn_rules {
                let db = AsnDb::embedded().map_err(|e| e.to_string())?;
                Some((db, db.ranges().map_err(|e| format!("embedded asn: {e}"))?))
            } else {
                None
            };
            let regions: Vec<(&str, GeoPoint)> = zone
                .regions
                .iter()
                .map(|r| (r.name.as_str(), r.location))
                .collect();
            let mut places: Vec<PointId> = Vec::new();
            let mut parts: Vec<Part> = Vec::new();
            for index in 0..networks {
                let net = latency.net(index).prefix();
                let host = IpNet::from(net.network());
                parts.clear();
                let asn = match asns {
                    Some((_, ranges)) => asn_of(ranges, net),
                    None => Some(None),
                };
                if let Some(asn) = asn
                    && places_of(t, net, &mut places)
                {
                    for &id in &places {
                        let place = t.places[id as usize];
                        let origin = Origin {
                            asn,
                            country: place.country().and_then(|c| c.as_bytes().try_into().ok()),
                            point: place.point(),
                        };
                        parts.push(Part {
                            facts: ClientFacts {
                                network: host,
                                point: place.point(),
                                country: place.country(),
                                continent: place.continent(),
                                asn,
                            },
                            rtt: latency.client_rtt_at(index, &origin, regions.iter().copied()),
                        });
                    }
                }
                let mut left = false;
                for (steered, built) in zone.steered.iter().zip(&mut builders) {
                    let config = &steered.config;
                    // How far the network's AS holds, for AS rules' scope; `None` when the
                    // database splits the network.
                    let asn_network = match (asns, parts.first()) {
                        (Some((db, _)), Some(p)) if !config.rules.asns.is_empty() => {
                            match p.facts.asn {
                                None => Some(None),
                                Some(_) => db
                                    .lookup(net.network())
                                    .map(|a| a.network)
                                    .filter(|n| n.prefix_len() <= net.prefix_len())
                                    .map(Some),
                            }
                        }
                        _ => Some(None),
                    };
                    let uniform = asn_network.is_some() && !rule_inside(&config.rules, net);
                    for (family, builder) in [Family::V4, Family::V6].into_iter().zip(built) {
                        let Some(builder) = builder else { continue };
                        let decided = if uniform {
                            one_answer(&parts, |facts, rtt| {
                                decide(
                                    (facts, rtt),
                                    asn_network.flatten(),
                                    net.prefix_len(),
                                    zone,
                                    config,
                                    view,
                                    family,
                                    also,
                                )
                            })
                        } else {
                            None
                        };
                        left |= decided.is_none();
                        builder.push(decided);
                    }
                }
                direct += usize::from(left);
            }
        }
        let names = builders
            .into_iter()
            .map(|[a, b]| {
                let a = a.map(|b| Arc::new(b.finish()));
                let b = b.map(|b| Arc::new(b.finish()));
                // A and AAAA share one layer where they answer alike.
                match (a, b) {
                    (Some(a), Some(b)) if a == b => [Some(a.clone()), Some(a)],
                    pair => pair.into(),
                }
            })
            .collect();
        Ok(Overlay {
            latency: Some(latency.clone()),
            names,
            direct,
        })
    }
}

/// The answer every part of a network gets, if they all get the same one (and there is a
/// part: the location table speaks for the network).
fn one_answer(
    parts: &[Part],
    mut decide: impl FnMut(&ClientFacts, &steer::ClientRtt) -> Decided,
) -> Option<Decided> {
    let (first, rest) = parts.split_first()?;
    let answer = decide(&first.facts, &first.rtt);
    rest.iter()
        .all(|p| decide(&p.facts, &p.rtt) == answer)
        .then_some(answer)
}

/// The direct path's answer for a client of a measured network of prefix `floor` at `facts`
/// (its network: the measured network's first address) with `rtt`, and the scope it holds
/// for before the client's prefix caps it: as `answer::steer` scopes it, the measured
/// network, or what the rules depend on if wider (`asn_network`: the AS's database network).
#[allow(clippy::too_many_arguments)]
fn decide(
    (facts, rtt): (&ClientFacts, &steer::ClientRtt),
    asn_network: Option<IpNet>,
    floor: u8,
    zone: &Zone,
    config: &steer::SteeredName,
    view: &HealthView,
    family: Family,
    also: &mut Interned,
) -> Decided {
    let d = rules::apply_measured(facts, Some(rtt), config, &zone.regions, view, family);
    // The client's prefix (at least `floor`, or the table would not speak for it) caps the
    // rules' scope, which the host route `facts.network` leaves uncapped: min(max(r, floor),
    // prefix) is answer::steer's max(min(r, prefix), min(floor, prefix)).
    let widest = if d.depends_on_client {
        rules::scope(config, &d, facts, floor, asn_network).map_or(floor, |r| r.max(floor))
    } else {
        0
    };
    let number = also.intern(&d.also);
    let steering = Steering::of(&d, zone, config, view, family, number);
    (steering, widest, d.closed_fence)
}

/// Whether a network rule narrower than `net` lies inside it: its addresses may then be
/// answered differently.
fn rule_inside(rules: &rules::Rules, net: IpNet) -> bool {
    rules
        .networks
        .iter()
        .any(|(n, _)| n.prefix_len() > net.prefix_len() && net.contains(&n.network()))
}

/// The distinct places of `net`'s addresses, into `out`; `false` where the table leaves some
/// of them to the direct path.
fn places_of(t: &LocationTable, net: IpNet, out: &mut Vec<PointId>) -> bool {
    out.clear();
    let mut add = |id: PointId| {
        if !out.contains(&id) {
            out.push(id);
        }
    };
    match net {
        IpNet::V4(n) => {
            let ids = span(&t.v4, u32::from(n.network()), u32::from(n.broadcast()));
            for &id in ids {
                if id == table::DIRECT {
                    return false;
                }
                add(id);
            }
        }
        IpNet::V6(n) => {
            let unit = |a: std::net::Ipv6Addr| (u128::from(a) >> table::V6_UNIT) as u64;
            for &id in span(&t.v6, unit(n.network()), unit(n.broadcast())) {
                if id == table::DIRECT {
                    return false;
                }
                if id >= table::SPLIT {
                    for &p in &t.split[(id - table::SPLIT) as usize] {
                        if p == table::DIRECT {
                            return false;
                        }
                        add(p);
                    }
                } else {
                    add(id);
                }
            }
        }
    }
    true
}

/// The ids of the ranges holding some address of [`first`, `last`].
fn span<A: Copy + Ord>(ranges: &table::Ranges<A>, first: A, last: A) -> &[PointId] {
    let from = ranges.find(first);
    let to = ranges.starts.partition_point(|&s| s <= last);
    &ranges.ids[from..to]
}

/// The AS of every address of `net` (`Some(None)`: none), or `None` when they differ or the
/// walk skipped some of them.
fn asn_of(ranges: &AsnRanges, net: IpNet) -> Option<Option<u32>> {
    let ids = match net {
        IpNet::V4(n) => span(&ranges.v4, u32::from(n.network()), u32::from(n.broadcast())),
        IpNet::V6(n) => span(
            &ranges.v6,
            u128::from(n.network()),
            u128::from(n.broadcast()),
        ),
    };
    let first = *ids.first()?;
    (first != table::DIRECT && ids.iter().all(|&id| id == first)).then(|| ranges.number(first))
}

impl ZoneSteering {
    /// The compiled answer of steered name `steered` for `client`, whose network is the one
    /// of index `index` in `latency` (the serving table): `None` where the overlay was
    /// decided from another table, or leaves the network to the direct path.
    pub fn steer_measured(
        &self,
        steered: usize,
        family: Family,
        client: Client,
        latency: &Arc<LatencyTable>,
        index: usize,
    ) -> Option<Compiled> {
        let f = family_index(family);
        if let NameSteering::Uniform(steering) = self.names.get(steered)?[f] {
            return Some(Compiled { steering, scope: 0 });
        }
        let own = self.measured.latency.as_ref()?;
        if !Arc::ptr_eq(own, latency) {
            return None;
        }
        let layer = self.measured.names.get(steered)?[f].as_deref()?;
        let number = *layer.answer_of.get(index)?;
        if number == DIRECT {
            return None;
        }
        let (steering, widest) = layer.answers[usize::from(number)];
        let scope = match client {
            Client::Subnet { network } => widest.min(network.prefix_len()),
            Client::Resolver { .. } => 0,
        };
        Some(Compiled { steering, scope })
    }

    /// Whether the measured networks' answers are those of `latency`: decided from it, or
    /// needing none (no name depends on the client, or neither table has networks).
    pub fn measures(&self, latency: &Arc<LatencyTable>) -> bool {
        self.measured
            .latency
            .as_ref()
            .is_none_or(|own| Arc::ptr_eq(own, latency) || (own.is_empty() && latency.is_empty()))
    }

    /// This steering with the answers of `latency`'s networks decided anew (the runs stay).
    pub fn remeasured<'t>(
        &self,
        zone: &Zone,
        view: &HealthView,
        latency: &Arc<LatencyTable>,
        table: impl FnOnce() -> Result<&'t LocationTable, String>,
    ) -> Result<ZoneSteering, String> {
        let mut also = (*self.classes_also).clone();
        let measured = Overlay::compile(
            zone,
            view,
            latency,
            &self.names,
            &mut also,
            &mut Lazy::new(table),
        )?;
        Ok(ZoneSteering {
            names: self.names.clone(),
            classes_also: self.classes_also.clone(),
            also,
            measured,
        })
    }

    /// What the measured networks' answers hold.
    pub fn measured_stats(&self) -> MeasuredStats {
        let o = &self.measured;
        let mut seen: Vec<*const Layer> = Vec::new();
        let mut bytes = 0;
        for layer in o.names.iter().flatten().flatten() {
            if !seen.contains(&Arc::as_ptr(layer)) {
                seen.push(Arc::as_ptr(layer));
                bytes += layer.bytes();
            }
        }
        MeasuredStats {
            networks: o.latency.as_ref().map_or(0, |l| l.networks()),
            names: o
                .names
                .iter()
                .filter(|n| n.iter().any(Option::is_some))
                .count(),
            direct: o.direct,
            bytes,
        }
    }
}
