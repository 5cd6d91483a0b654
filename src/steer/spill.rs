//! Capacity-aware spillover: a region whose load passes its capacity sheds a fraction of its
//! clients to their next-nearest region with headroom. PURE, like the rest of `steer`: the
//! control loop (`crate::spill`) calls [`control`] once a period with the loads it holds and
//! publishes the result in the serving snapshot; a query calls [`apply`] on the decision it
//! ranked.
//!
//! Design. Trip: a fresh load above capacity raises the region's shed fraction by
//! [`GAIN`] times the share of its load that must leave, at most `max_step` a period, so a
//! failed neighbour's load spreads over several periods and several regions instead of
//! landing on one at once. Recovery: below `low_water` of capacity (or with no fresh load, as
//! an operator expects of a feed that stopped) the fraction decays by `decay_step` a period;
//! between the two it holds, which keeps the loop from flapping at the threshold.
//!
//! Which clients go: those that lose least. A network whose best alternative with headroom
//! is `p` ms (estimated RTT) farther is shed when its sticky hash `u` (of its /24 or /48, as
//! a weighted split hashes) is below `shed^(1 + p / PENALTY_SCALE_MS)`: with the same `u`, a
//! network with a nearly-as-close alternative is shed at a lower fraction than one whose
//! alternative is far. The set only grows as the fraction grows (and shrinks as it decays),
//! so a network does not flap; the loop, closed on measured load, corrects for the shed
//! traffic being less than the fraction.

use ipnet::IpNet;
use serde::Serialize;

use super::rules::{SPLIT_PREFIX_V4, SPLIT_PREFIX_V6};
use super::{Basis, Decision, Region, RegionId, Verdict};

/// The raise of a shed fraction per unit of excess (the share of the load above capacity):
/// above one since shedding `f` moves at most `f` of the load, the cheapest clients first.
pub const GAIN: f64 = 2.0;

/// Estimated RTT penalty (ms) at which a network is shed at `shed²` instead of `shed`.
pub const PENALTY_SCALE_MS: f64 = 20.0;

/// How the shed fractions move each period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Largest raise of a shed fraction in one period.
    pub max_step: f64,
    /// Fall of a shed fraction in one period once the load is low or unknown.
    pub decay_step: f64,
    /// Share of capacity below which a shed fraction decays.
    pub low_water: f64,
}

/// What the control loop knows of one region in one period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// From the zone file; `None`: the region is not capacity-managed (never sheds, always
    /// takes spill).
    pub capacity: Option<f64>,
    /// The last report, if fresh.
    pub load: Option<f64>,
    /// The shed fraction of the last period.
    pub shed: f64,
}

/// What the serving state holds of one region.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RegionSpill {
    /// Share of the region's clients sent elsewhere, in [0, 1].
    pub shed: f64,
    /// The region may take other regions' clients: not over capacity and shedding nothing.
    pub headroom: bool,
}

impl RegionSpill {
    /// Nothing shed, room for more.
    pub const IDLE: RegionSpill = RegionSpill {
        shed: 0.0,
        headroom: true,
    };
}

impl Reading {
    pub fn over(&self) -> bool {
        matches!((self.capacity, self.load), (Some(c), Some(l)) if l > c)
    }
}

/// One period of the controller: the new state of every region from its reading.
pub fn control(readings: &[Reading], params: &Params) -> Vec<RegionSpill> {
    readings
        .iter()
        .map(|r| {
            let Some(capacity) = r.capacity else {
                return RegionSpill::IDLE;
            };
            let shed = match r.load {
                Some(load) if load > capacity => {
                    let excess = (load - capacity) / load;
                    (r.shed + (GAIN * excess).min(params.max_step)).min(1.0)
                }
                Some(load) if load >= params.low_water * capacity => r.shed,
                _ => (r.shed - params.decay_step).max(0.0),
            };
            RegionSpill {
                shed,
                headroom: shed == 0.0 && !r.over(),
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
/// A multivalue answer, a rule's pin and a closed fence are left as they are.
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
    let room = |id: RegionId| spill.get(id).is_none_or(|s| s.headroom);
    // Not degraded first, then the ranked order.
    let to_at = [Verdict::Farther, Verdict::Degraded].iter().find_map(|&v| {
        decision
            .candidates
            .iter()
            .position(|c| c.verdict == v && room(c.region))
    });
    let percent = shed * 100.0;
    let from_name = &regions[from].name;
    let Some(to_at) = to_at else {
        decision.reasons.push(format!(
            "spill: {from_name} sheds {percent:.0}% of its clients, but no other region has \
             headroom: it answers"
        ));
        return true;
    };
    let rtt = |i: usize| decision.candidates[i].estimated_rtt_ms;
    let penalty = match (rtt(from_at), rtt(to_at)) {
        (Some(a), Some(b)) => (b - a).max(0.0),
        _ => 0.0,
    };
    let threshold = shed.powf(1.0 + penalty / PENALTY_SCALE_MS);
    let to = decision.candidates[to_at].region;
    let to_name = &regions[to].name;
    if hash_unit(network) >= threshold {
        decision.reasons.push(format!(
            "spill: {from_name} sheds {percent:.0}% of its clients; this network stays \
             ({to_name}, its next-nearest with headroom, is {penalty:.1} ms farther)"
        ));
        return true;
    }
    decision.candidates[from_at].verdict = Verdict::Shed;
    let mut c = decision.candidates.remove(to_at);
    c.verdict = Verdict::Chosen;
    decision.candidates.insert(0, c);
    decision.chosen = Some(to);
    decision.basis = Basis::Spill;
    decision.reasons.push(format!(
        "spill: {from_name} is over capacity and sheds {percent:.0}% of its clients; this \
         network goes to {to_name}, its next-nearest region with headroom, {penalty:.1} ms \
         farther"
    ));
    true
}

/// The client network's place in [0, 1): a hash of its /24 or /48, the same on every node
/// and release, independent of the split's (another salt).
fn hash_unit(network: IpNet) -> f64 {
    const SALT: u128 = 0x5350_494C_4C00_0000_0000_0000_0000_0001;
    let h = super::rules::mix(super::rules::split_key(network) ^ SALT);
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
            shed,
        }
    }

    #[test]
    fn under_capacity_sheds_nothing() {
        let out = control(&[reading(Some(100.0), Some(99.0), 0.0)], &PARAMS);
        assert_eq!(out, vec![RegionSpill::IDLE]);
    }

    #[test]
    fn over_capacity_raises_by_the_excess_bounded_by_max_step() {
        // 10% over: excess 1/11 of the load, raised by twice that.
        let out = control(&[reading(Some(100.0), Some(110.0), 0.0)], &PARAMS);
        assert!((out[0].shed - 2.0 / 11.0).abs() < 1e-9, "{out:?}");
        assert!(!out[0].headroom);
        // Twice the capacity: bounded by the step.
        let out = control(&[reading(Some(100.0), Some(200.0), 0.5)], &PARAMS);
        assert_eq!(out[0].shed, 0.75);
        let out = control(&[reading(Some(100.0), Some(1000.0), 0.9)], &PARAMS);
        assert_eq!(out[0].shed, 1.0);
    }

    #[test]
    fn holds_between_low_water_and_capacity_then_decays() {
        let hold = control(&[reading(Some(100.0), Some(95.0), 0.4)], &PARAMS);
        assert_eq!(hold[0].shed, 0.4);
        assert!(!hold[0].headroom, "a shedding region takes no spill");
        let low = control(&[reading(Some(100.0), Some(50.0), 0.4)], &PARAMS);
        assert!((low[0].shed - 0.35).abs() < 1e-9);
        let idle = control(&[reading(Some(100.0), Some(50.0), 0.03)], &PARAMS);
        assert_eq!(idle[0], RegionSpill::IDLE);
    }

    #[test]
    fn stale_load_counts_as_not_overloaded() {
        let out = control(&[reading(Some(100.0), None, 0.5)], &PARAMS);
        assert!((out[0].shed - 0.45).abs() < 1e-9);
    }

    #[test]
    fn no_capacity_never_sheds_and_takes_spill() {
        let out = control(&[reading(None, Some(1e9), 0.0)], &PARAMS);
        assert_eq!(out, vec![RegionSpill::IDLE]);
    }

    #[test]
    fn a_dead_regions_load_is_shed_over_several_periods() {
        // Load moved onto a region at three times its capacity: the fraction climbs by the
        // step, not at once.
        let mut shed = 0.0;
        let mut steps = Vec::new();
        for _ in 0..3 {
            shed = control(&[reading(Some(100.0), Some(300.0), shed)], &PARAMS)[0].shed;
            steps.push(shed);
        }
        assert_eq!(steps, vec![0.25, 0.5, 0.75]);
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
    fn answers(spill: &[RegionSpill]) -> Vec<(RegionId, bool)> {
        let regions = regions();
        (0..1000u32)
            .map(|i| {
                let net: IpNet = format!("{}/24", std::net::Ipv4Addr::from(0x0a00_0000 | i << 8))
                    .parse()
                    .unwrap();
                let point = Some(GeoPoint { lat: 0.0, lon: 0.0 });
                let mut d = decide(
                    point,
                    &name(),
                    &regions,
                    &HealthView::all_up(),
                    super::super::Family::V4,
                );
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
            headroom: false,
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
        // B has no headroom: C, 66.7 ms farther, takes 0.5^4.3 = 0.05.
        let far = answers(&[sheds(0.5), sheds(0.1), RegionSpill::IDLE]);
        assert_eq!(share(&far, 1), 0.0);
        assert!((share(&far, 2) - 0.05).abs() < 0.03, "{}", share(&far, 2));
        // Every network that goes to C at 0.5 goes (to B) when B has room.
        for (n, f) in near.iter().zip(&far) {
            assert!(f.0 != 2 || n.0 == 1);
        }
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
        let point = Some(GeoPoint { lat: 0.0, lon: 0.0 });
        let mut d = decide(
            point,
            &name(),
            &regions,
            &HealthView::all_up(),
            super::super::Family::V4,
        );
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
            let out = control(&[reading(Some(cap), load, shed)], &PARAMS)[0];
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
            let u = hash_unit(net);
            let shed_at = |f: f64| u < f.powf(1.0 + penalty / PENALTY_SCALE_MS);
            proptest::prop_assert!(!shed_at(lo) || shed_at(hi));
        }
    }
}
