//! Capacity-aware spillover: a region whose load passes its capacity sheds a fraction of its
//! clients to their next-nearest regions with headroom. PURE, like the rest of `steer`: the
//! control loop (`crate::spill`) calls [`control`] once a period with the loads it holds and
//! publishes the result in the serving snapshot; a query calls [`apply`] on the decision it
//! ranked.
//!
//! Design. Trip: a new load report above capacity raises the region's shed fraction by
//! [`GAIN`] times the share of its load that must leave, at most `max_step` a period (a
//! report is acted on once, however many periods pass before the next). Recovery: below
//! `low_water` of capacity (or with no fresh load, as an operator expects of a feed that
//! stopped) the fraction decays by `decay_step` a period; between the two it holds, which
//! keeps the loop from flapping at the threshold.
//!
//! Where shed clients go: each region publishes an acceptance, the share of spilled networks
//! it takes: its room (`low_water` of capacity less its own load, the load it had when no
//! region shed) over the zone's demand (each shedding region's load before it shed times its
//! fraction). A shed network tries the regions its ranking puts after its own, nearest
//! first, and the first whose acceptance its hash (one per region) passes takes it; if none
//! does, it stays. So a dead region's load spreads over several neighbours in proportion to
//! their room instead of landing on the nearest one, and the receivers fill to `low_water`,
//! not past capacity.
//!
//! Which clients go: those that lose least. A network whose nearest alternative that takes
//! spill is `p` ms (estimated RTT) farther is shed when its sticky hash `u` (of its /24 or
//! /48, as a weighted split hashes) is below `shed^(1 + min(p, PENALTY_SCALE_MS) /
//! PENALTY_SCALE_MS)`: with the same `u`, a network with a nearly-as-close alternative is
//! shed at a lower fraction than one whose alternative is far (between `shed` and `shed²` of
//! the networks go). Why a power of the fraction rather than a global ranking by penalty: a
//! query sees one client, not the region's whole clientele, so it needs a rule that orders
//! clients without knowing the others; capping the exponent at 2 keeps a region whose every
//! alternative is far able to shed (at `shed = 1` everyone goes). The set only grows as the
//! fraction grows (and shrinks as it decays), so a network does not flap; the loop, closed on
//! measured load, corrects for the shed traffic being less than the fraction.

use ipnet::IpNet;
use serde::Serialize;

use super::rules::{SPLIT_PREFIX_V4, SPLIT_PREFIX_V6};
use super::{Basis, Decision, Region, RegionId, Verdict};

/// The raise of a shed fraction per unit of excess (the share of the load above capacity):
/// above one since shedding `f` moves at most `f` of the load, the cheapest clients first.
pub const GAIN: f64 = 2.0;

/// Estimated RTT penalty (ms) from which a network is shed at `shed²` instead of `shed`
/// (2,000 km of fibre).
pub const PENALTY_SCALE_MS: f64 = 20.0;

/// How the shed fractions move each period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Largest raise of a shed fraction in one period.
    pub max_step: f64,
    /// Fall of a shed fraction in one period once the load is low or unknown.
    pub decay_step: f64,
    /// Share of capacity below which a shed fraction decays, and to which receivers fill.
    pub low_water: f64,
}

/// What the control loop knows of one region in one period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// From the zone file; `None`: the region is not capacity-managed (never sheds, takes
    /// any spill).
    pub capacity: Option<f64>,
    /// The last report, if fresh.
    pub load: Option<f64>,
    /// The report arrived since the last period.
    pub new: bool,
    /// The shed fraction of the last period.
    pub shed: f64,
    /// The region's own load: its load while no region of the zone shed (the last
    /// period's [`Outcome::own`]).
    pub own: Option<f64>,
}

impl Reading {
    pub fn over(&self) -> bool {
        matches!((self.capacity, self.load), (Some(c), Some(l)) if l > c)
    }
}

/// What the serving state holds of one region.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RegionSpill {
    /// Share of the region's clients sent elsewhere, in [0, 1].
    pub shed: f64,
    /// Share of other regions' shed networks it takes, in [0, 1]; 0 while it sheds.
    pub accept: f64,
}

impl RegionSpill {
    /// Nothing shed, room for any spill.
    pub const IDLE: RegionSpill = RegionSpill {
        shed: 0.0,
        accept: 1.0,
    };
}

/// One region after a period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub spill: RegionSpill,
    /// What [`Reading::own`] is next period.
    pub own: Option<f64>,
}

/// One period of the controller: the new state of every region of a zone from its reading.
pub fn control(readings: &[Reading], params: &Params) -> Vec<Outcome> {
    let shed: Vec<f64> = readings
        .iter()
        .map(|r| {
            let Some(capacity) = r.capacity else {
                return 0.0;
            };
            match r.load {
                Some(load) if load > capacity && r.new => {
                    let excess = (load - capacity) / load;
                    (r.shed + (GAIN * excess).min(params.max_step)).min(1.0)
                }
                Some(load) if load >= params.low_water * capacity => r.shed,
                _ => (r.shed - params.decay_step).max(0.0),
            }
        })
        .collect();
    // While nothing was shed, every load is the region's own.
    let quiet = readings.iter().all(|r| r.shed == 0.0);
    let own: Vec<Option<f64>> = readings
        .iter()
        .map(|r| if quiet { r.load } else { r.own.or(r.load) })
        .collect();
    let demand: f64 = shed
        .iter()
        .zip(&own)
        .map(|(f, o)| f * o.unwrap_or(0.0))
        .sum();
    readings
        .iter()
        .zip(&shed)
        .zip(&own)
        .map(|((r, &shed), &own)| {
            let accept = match r.capacity {
                None => 1.0,
                Some(_) if shed > 0.0 => 0.0,
                Some(_) if demand <= 0.0 && r.over() => 0.0,
                Some(_) if demand <= 0.0 => 1.0,
                Some(c) => {
                    let room = params.low_water * c - own.unwrap_or(0.0);
                    (room / demand).clamp(0.0, 1.0)
                }
            };
            Outcome {
                spill: RegionSpill { shed, accept },
                own,
            }
        })
        .collect()
}

/// Prefix of the networks that share a spill's outcome, for a client of `network`'s family.
pub fn prefix(network: IpNet) -> u8 {
    match network {
        IpNet::V4(_) => SPLIT_PREFIX_V4,
        IpNet::V6(_) => SPLIT_PREFIX_V6,
    }
}

/// Spills the client of `network` from its chosen region if that region sheds it, as the
/// module header says. Returns whether the answer depends on the client's hash (its chosen
/// region sheds anything), so that the caller narrows the ECS scope to [`prefix`].
/// A multivalue answer and a rule's pin are left as they are.
pub fn apply(
    decision: &mut Decision,
    network: IpNet,
    spill: &[RegionSpill],
    regions: &[Region],
) -> bool {
    let Some(from) = decision.chosen else {
        return false;
    };
    let shed = spill.get(from).map_or(0.0, |s| s.shed);
    if shed <= 0.0 || !decision.also.is_empty() || decision.basis == Basis::Rule {
        return false;
    }
    decision.depends_on_client = true;
    let from_at = decision
        .candidates
        .iter()
        .position(|c| c.region == from)
        .expect("the chosen region is a candidate");
    let accept = |id: RegionId| spill.get(id).map_or(1.0, |s| s.accept);
    // The regions that may take spill: not degraded first, then the ranked order.
    let takers: Vec<usize> = [Verdict::Farther, Verdict::Degraded]
        .iter()
        .flat_map(|&v| {
            let candidates = &decision.candidates;
            (0..candidates.len())
                .filter(move |&i| candidates[i].verdict == v && accept(candidates[i].region) > 0.0)
        })
        .collect();
    let percent = shed * 100.0;
    let from_name = &regions[from].name;
    let Some(&nearest) = takers.first() else {
        decision.reasons.push(format!(
            "spill: {from_name} sheds {percent:.0}% of its clients, but no other region has \
             headroom: it answers"
        ));
        return true;
    };
    let rtt = |i: usize| decision.candidates[i].estimated_rtt_ms;
    let penalty = match (rtt(from_at), rtt(nearest)) {
        (Some(a), Some(b)) => (b - a).max(0.0),
        _ => 0.0,
    };
    let threshold = shed.powf(1.0 + penalty.min(PENALTY_SCALE_MS) / PENALTY_SCALE_MS);
    let key = super::rules::split_key(network);
    if hash_unit(key, SHED_SALT) >= threshold {
        decision.reasons.push(format!(
            "spill: {from_name} sheds {percent:.0}% of its clients; this network stays (its \
             nearest alternative with headroom, {}, is {penalty:.1} ms farther)",
            regions[decision.candidates[nearest].region].name
        ));
        return true;
    }
    let Some(to_at) = takers.iter().copied().find(|&i| {
        let region = decision.candidates[i].region;
        hash_unit(key, region as u128 + 1) < accept(region)
    }) else {
        decision.reasons.push(format!(
            "spill: {from_name} sheds {percent:.0}% of its clients; this network would go, but \
             no region with headroom takes it (they take only what fits): it stays"
        ));
        return true;
    };
    let to = decision.candidates[to_at].region;
    let extra = match (rtt(from_at), rtt(to_at)) {
        (Some(a), Some(b)) => (b - a).max(0.0),
        _ => 0.0,
    };
    decision.candidates[from_at].verdict = Verdict::Shed;
    let mut c = decision.candidates.remove(to_at);
    c.verdict = Verdict::Chosen;
    decision.candidates.insert(0, c);
    decision.chosen = Some(to);
    decision.basis = Basis::Spill;
    decision.reasons.push(format!(
        "spill: {from_name} is over capacity and sheds {percent:.0}% of its clients; this \
         network goes to {}, {extra:.1} ms farther, which takes {:.0}% of spilled networks",
        regions[to].name,
        accept(to) * 100.0
    ));
    true
}

/// Salt of the hash that decides whether a network is shed; a region's acceptance hash is
/// salted with its id + 1.
const SHED_SALT: u128 = 0x5350_494C_4C00_0000_0000_0000_0000_0000;

/// The client network's place in [0, 1) for `salt`: a hash of its /24 or /48 (`key`), the
/// same on every node and release, independent of the split's and of other salts'.
fn hash_unit(key: u128, salt: u128) -> f64 {
    let h = super::rules::mix(key ^ SHED_SALT ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: Params = Params {
        max_step: 0.25,
        decay_step: 0.05,
        low_water: 0.9,
    };

    fn reading(capacity: Option<f64>, load: Option<f64>, shed: f64) -> Reading {
        Reading {
            capacity,
            load,
            new: true,
            shed,
            own: None,
        }
    }

    fn spill(readings: &[Reading]) -> Vec<RegionSpill> {
        control(readings, &PARAMS).iter().map(|o| o.spill).collect()
    }

    #[test]
    fn under_capacity_sheds_nothing() {
        let out = spill(&[reading(Some(100.0), Some(99.0), 0.0)]);
        assert_eq!(out, vec![RegionSpill::IDLE]);
    }

    #[test]
    fn over_capacity_raises_by_the_excess_bounded_by_max_step() {
        // 10% over: excess 1/11 of the load, raised by twice that.
        let out = spill(&[reading(Some(100.0), Some(110.0), 0.0)]);
        assert!((out[0].shed - 2.0 / 11.0).abs() < 1e-9, "{out:?}");
        assert_eq!(out[0].accept, 0.0);
        // Twice the capacity: bounded by the step.
        let out = spill(&[reading(Some(100.0), Some(200.0), 0.5)]);
        assert_eq!(out[0].shed, 0.75);
        let out = spill(&[reading(Some(100.0), Some(1000.0), 0.9)]);
        assert_eq!(out[0].shed, 1.0);
    }

    #[test]
    fn a_report_is_acted_on_once() {
        let old = Reading {
            new: false,
            ..reading(Some(100.0), Some(200.0), 0.5)
        };
        assert_eq!(spill(&[old])[0].shed, 0.5);
    }

    #[test]
    fn holds_between_low_water_and_capacity_then_decays() {
        let hold = spill(&[reading(Some(100.0), Some(95.0), 0.4)]);
        assert_eq!(hold[0].shed, 0.4);
        assert_eq!(hold[0].accept, 0.0, "a shedding region takes no spill");
        let low = spill(&[reading(Some(100.0), Some(50.0), 0.4)]);
        assert!((low[0].shed - 0.35).abs() < 1e-9);
        let idle = spill(&[reading(Some(100.0), Some(50.0), 0.03)]);
        assert_eq!(idle[0], RegionSpill::IDLE);
    }

    #[test]
    fn stale_load_counts_as_not_overloaded() {
        let out = spill(&[reading(Some(100.0), None, 0.5)]);
        assert!((out[0].shed - 0.45).abs() < 1e-9);
    }

    #[test]
    fn no_capacity_never_sheds_and_takes_any_spill() {
        let out = spill(&[reading(None, Some(1e9), 0.0)]);
        assert_eq!(out, vec![RegionSpill::IDLE]);
    }

    #[test]
    fn a_dead_regions_load_is_shed_over_several_periods() {
        // Load moved onto a region at three times its capacity: the fraction climbs by the
        // step, not at once.
        let mut shed = 0.0;
        let mut steps = Vec::new();
        for _ in 0..3 {
            shed = spill(&[reading(Some(100.0), Some(300.0), shed)])[0].shed;
            steps.push(shed);
        }
        assert_eq!(steps, vec![0.25, 0.5, 0.75]);
    }

    #[test]
    fn receivers_take_spill_in_proportion_to_their_room() {
        // A sheds from 400 (capacity 200); B has room for 90 - 60 = 30, C for 90 - 0 = 90.
        let first = control(
            &[
                reading(Some(200.0), Some(400.0), 0.0),
                reading(Some(100.0), Some(60.0), 0.0),
                reading(Some(100.0), Some(0.0), 0.0),
            ],
            &PARAMS,
        );
        let a = first[0].spill;
        assert_eq!(
            a,
            RegionSpill {
                shed: 0.25,
                accept: 0.0
            }
        );
        // Demand: 400 x 0.25 = 100.
        assert!((first[1].spill.accept - 0.3).abs() < 1e-9, "{first:?}");
        assert!((first[2].spill.accept - 0.9).abs() < 1e-9, "{first:?}");
        // Next period B's load holds spill; its room is still counted from its own load.
        let next = control(
            &[
                Reading {
                    own: first[0].own,
                    ..reading(Some(200.0), Some(350.0), 0.25)
                },
                Reading {
                    own: first[1].own,
                    ..reading(Some(100.0), Some(90.0), 0.0)
                },
                Reading {
                    own: first[2].own,
                    ..reading(Some(100.0), Some(20.0), 0.0)
                },
            ],
            &PARAMS,
        );
        assert_eq!(next[1].own, Some(60.0));
        assert_eq!(next[0].spill.shed, 0.5);
        // Demand 400 x 0.5 = 200: B takes 30/200, C 90/200.
        assert!((next[1].spill.accept - 0.15).abs() < 1e-9, "{next:?}");
        assert!((next[2].spill.accept - 0.45).abs() < 1e-9, "{next:?}");
    }

    use crate::steer::{
        Endpoint, Fallback, GeoPoint, HealthView, Policy, Rules, SteeredName, decide,
    };

    /// A at (0, 0); B 5° east of it (556 km); C 60° east (6,672 km).
    fn regions() -> Vec<Region> {
        [
            ("a", 0.0, "192.0.2.1"),
            ("b", 5.0, "192.0.2.2"),
            ("c", 60.0, "192.0.2.3"),
        ]
        .iter()
        .map(|&(name, lon, addr)| Region {
            name: name.into(),
            location: GeoPoint { lat: 0.0, lon },
            endpoints: vec![Endpoint {
                address: addr.parse().unwrap(),
                weight: 1,
            }],
        })
        .collect()
    }

    fn name() -> SteeredName {
        SteeredName {
            regions: vec![0, 1, 2],
            default_region: 0,
            ttl: 30,
            trouble_ttl: 5,
            answers: None,
            policy: Policy::Nearest,
            fallback: Fallback::All,
            bias_km: Vec::new(),
            rules: Rules::default(),
            multivalue: None,
        }
    }

    /// The regions 1,000 client /24s at A's location are answered by under `spill`.
    /// The decision for a client at (0, 0) with every region up, before spill.
    fn decide_at_origin(regions: &[Region]) -> Decision {
        let point = Some(GeoPoint { lat: 0.0, lon: 0.0 });
        decide(
            point,
            &name(),
            regions,
            &HealthView::all_up(),
            super::super::Family::V4,
        )
    }

    fn answers(spill: &[RegionSpill]) -> Vec<(RegionId, bool)> {
        let regions = regions();
        (0..1000u32)
            .map(|i| {
                let net: IpNet = format!("{}/24", std::net::Ipv4Addr::from(0x0a00_0000 | i << 8))
                    .parse()
                    .unwrap();
                let mut d = decide_at_origin(&regions);
                let narrowed = apply(&mut d, net, spill, &regions);
                (d.chosen.unwrap(), narrowed)
            })
            .collect()
    }

    fn share(answers: &[(RegionId, bool)], region: RegionId) -> f64 {
        answers.iter().filter(|a| a.0 == region).count() as f64 / answers.len() as f64
    }

    fn sheds(f: f64) -> RegionSpill {
        RegionSpill {
            shed: f,
            accept: 0.0,
        }
    }

    #[test]
    fn a_region_that_sheds_nothing_changes_nothing() {
        let out = answers(&[RegionSpill::IDLE, RegionSpill::IDLE, RegionSpill::IDLE]);
        assert!(out.iter().all(|&(r, narrowed)| r == 0 && !narrowed));
        assert!(
            answers(&[])
                .iter()
                .all(|&(r, narrowed)| r == 0 && !narrowed)
        );
    }

    #[test]
    fn clients_with_a_near_alternative_are_shed_first() {
        // Alternative B, 5.6 ms farther: shed at 0.5^(1 + 5.6/20) = 0.41.
        let near = answers(&[sheds(0.5), RegionSpill::IDLE, RegionSpill::IDLE]);
        assert!((share(&near, 1) - 0.41).abs() < 0.05, "{}", share(&near, 1));
        assert!(near.iter().all(|&(_, narrowed)| narrowed));
        // B has no headroom: C, 66.7 ms farther, takes 0.5^2 = 0.25.
        let far = answers(&[sheds(0.5), sheds(0.1), RegionSpill::IDLE]);
        assert_eq!(share(&far, 1), 0.0);
        assert!((share(&far, 2) - 0.25).abs() < 0.04, "{}", share(&far, 2));
        // Every network that goes to C at 0.5 goes (to B) when B has room.
        for (n, f) in near.iter().zip(&far) {
            assert!(f.0 != 2 || n.0 == 1);
        }
    }

    #[test]
    fn shed_networks_spread_by_acceptance_and_stay_when_none_takes_them() {
        let half = RegionSpill {
            shed: 0.0,
            accept: 0.5,
        };
        let out = answers(&[sheds(1.0), half, half]);
        // Half go to B, half of the rest to C, the rest stay.
        assert!((share(&out, 1) - 0.5).abs() < 0.05, "{}", share(&out, 1));
        assert!((share(&out, 2) - 0.25).abs() < 0.05, "{}", share(&out, 2));
        assert!((share(&out, 0) - 0.25).abs() < 0.05, "{}", share(&out, 0));
    }

    #[test]
    fn no_headroom_anywhere_keeps_every_client() {
        let out = answers(&[sheds(1.0), sheds(0.2), sheds(0.2)]);
        assert!(out.iter().all(|&(r, narrowed)| r == 0 && narrowed));
    }

    #[test]
    fn a_shed_network_is_marked_and_explained() {
        let regions = regions();
        let net: IpNet = "10.9.9.0/24".parse().unwrap();
        let spill = [sheds(1.0), RegionSpill::IDLE, RegionSpill::IDLE];
        let mut d = decide_at_origin(&regions);
        assert!(apply(&mut d, net, &spill, &regions));
        assert_eq!((d.basis, d.chosen), (Basis::Spill, Some(1)));
        assert_eq!(d.candidates[0].verdict, Verdict::Chosen);
        let a = d.candidates.iter().find(|c| c.region == 0).unwrap();
        assert_eq!(a.verdict, Verdict::Shed);
        assert!(d.reasons[0].contains("goes to b"), "{:?}", d.reasons);
    }

    proptest::proptest! {
        #[test]
        fn fractions_stay_in_range_and_move_boundedly(
            cap in 1.0f64..1e6, load in proptest::option::of(0.0f64..2e6), shed in 0.0f64..=1.0,
        ) {
            let out = spill(&[reading(Some(cap), load, shed)])[0];
            proptest::prop_assert!((0.0..=1.0).contains(&out.shed));
            proptest::prop_assert!(out.shed - shed <= PARAMS.max_step + 1e-12);
            proptest::prop_assert!(shed - out.shed <= PARAMS.decay_step + 1e-12);
            if load.is_none_or(|l| l <= cap) {
                proptest::prop_assert!(out.shed <= shed);
            }
        }

        #[test]
        fn the_shed_set_only_grows_with_the_fraction(a in 0u32.., penalty in 0.0f64..200.0,
            lo in 0.0f64..=1.0, hi in 0.0f64..=1.0) {
            let (lo, hi) = (lo.min(hi), lo.max(hi));
            let net: IpNet = format!("{}/24", std::net::Ipv4Addr::from(a & !0xff)).parse().unwrap();
            let u = hash_unit(super::super::rules::split_key(net), SHED_SALT);
            let shed_at = |f: f64| u < f.powf(1.0 + penalty.min(PENALTY_SCALE_MS) / PENALTY_SCALE_MS);
            proptest::prop_assert!(!shed_at(lo) || shed_at(hi));
        }
    }
}
