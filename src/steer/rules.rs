//! The rules of a steered name that go beyond distance: network (CIDR) and ASN rules, geo
//! fences, weighted splits, and multivalue answers. [`apply`] wraps [`super::decide`]; the ranking by distance (and
//! its bias) stays there.
//!
//! The rule: a rule only reorders or narrows what `decide` ranked, in a fixed order (network
//! or ASN rule, else fence, then split), and says so in [`Decision::reasons`]; the answer for
//! a client depends on nothing but the client's facts, the zone and the health view.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use super::{
    Basis, ClientRtt, Decision, Family, GeoPoint, HealthView, Region, RegionId, SteeredName,
    Verdict,
};
use crate::geo::countries::Continent;

/// Rules of one steered name, as validated by the zone loader.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    /// Client networks sent to a region ahead of distance; no two overlapping networks map
    /// to different regions (the loader refuses them), so the most specific match decides.
    pub networks: Vec<(IpNet, RegionId)>,
    /// Autonomous systems sent to a region ahead of distance.
    pub asns: Vec<(u32, RegionId)>,
    pub fences: Vec<Fence>,
    pub splits: Vec<Split>,
}

impl Rules {
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
            && self.asns.is_empty()
            && self.fences.is_empty()
            && self.splits.is_empty()
    }
}

/// Which regions may serve the clients of some countries or continents (data residency).
#[derive(Debug, Clone, PartialEq)]
pub struct Fence {
    pub countries: Vec<&'static str>,
    pub continents: Vec<Continent>,
    /// The regions allowed to serve them (never empty).
    pub regions: Vec<RegionId>,
    pub when_all_down: WhenAllDown,
    /// What a closed fence answers: these addresses, or none (NODATA).
    pub closed_answer: Vec<super::Endpoint>,
}

impl Fence {
    fn holds(&self, facts: &ClientFacts) -> bool {
        facts.country.is_some_and(|c| self.countries.contains(&c))
            || facts
                .continent
                .is_some_and(|c| self.continents.contains(&c))
    }
}

/// What a fenced client gets when every allowed region is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenAllDown {
    /// The nearest region outside the fence answers.
    FailOpen,
    /// The fence's fixed answer, or no address (NODATA).
    FailClosed,
}

/// The clients that distance sends to `region`, split between regions by weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub region: RegionId,
    /// Regions and weights (percent, adding up to 100).
    pub weights: Vec<(RegionId, u32)>,
}

/// Prefix of the client networks that share a split's outcome: the split hashes the client's
/// /24 (IPv4) or /48 (IPv6), so an answer that a split made holds no wider than that.
pub const SPLIT_PREFIX_V4: u8 = 24;
pub const SPLIT_PREFIX_V6: u8 = 48;

/// What the rules may ask of a client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientFacts {
    pub network: IpNet,
    pub point: Option<GeoPoint>,
    pub country: Option<&'static str>,
    pub continent: Option<Continent>,
    pub asn: Option<u32>,
}

impl ClientFacts {
    /// The facts of a client of `network` that GeoIP located at `location`.
    pub fn located(network: IpNet, location: &crate::geo::Location) -> ClientFacts {
        ClientFacts {
            network,
            point: location.point,
            country: location.country,
            continent: location.continent,
            asn: location.asn.map(|a| a.number),
        }
    }
}

/// [`super::decide`] under the name's rules.
pub fn apply(
    facts: &ClientFacts,
    name: &SteeredName,
    regions: &[Region],
    view: &HealthView,
    family: Family,
) -> Decision {
    apply_measured(facts, None, name, regions, view, family)
}

/// [`apply`], ranking by the client network's measured RTTs where the latency map has them
/// ([`super::decide_measured`]); the rules then act on that ranking as on distance's.
pub fn apply_measured(
    facts: &ClientFacts,
    rtt: Option<&ClientRtt>,
    name: &SteeredName,
    regions: &[Region],
    view: &HealthView,
    family: Family,
) -> Decision {
    let staged = staged(
        facts,
        pin(&name.rules, facts),
        rtt,
        name,
        regions,
        view,
        family,
    );
    let lands = staged.lands(facts.network);
    staged.finish(lands, name, regions)
}

/// What the rules decide for a client before its network's split hash: everything but which
/// side of a split it lands on, and the multivalue regions that follow from that.
#[derive(Debug, Clone)]
pub struct Staged {
    decision: Decision,
    split: Option<SplitStep>,
    located: bool,
}

/// A split that the client's network decides.
#[derive(Debug, Clone)]
struct SplitStep {
    from: RegionId,
    /// The split's regions that can answer, with their weights.
    usable: Vec<(RegionId, u32)>,
    shares: String,
}

impl Staged {
    /// The regions a split may send this client to, with their weights (by
    /// [`rendezvous`]); empty when no split applies.
    pub fn split_weights(&self) -> &[(RegionId, u32)] {
        self.split.as_ref().map_or(&[], |s| &s.usable)
    }

    /// Where the split sends a client in `network`, if a split applies.
    pub fn lands(&self, network: IpNet) -> Option<RegionId> {
        split_lands(self.split_weights(), network)
    }

    /// The decision for a client that a split sends to `lands` (one of
    /// [`Staged::split_weights`], or `None` when no split applies).
    pub fn finish(
        self,
        lands: Option<RegionId>,
        name: &SteeredName,
        regions: &[Region],
    ) -> Decision {
        let Staged {
            mut decision,
            split,
            located,
        } = self;
        if let (Some(split), Some(to)) = (split, lands) {
            decision.reasons.push(format!(
                "split of {}'s clients ({}): this client network lands on {}",
                regions[split.from].name, split.shares, regions[to].name
            ));
            if to != split.from {
                promote(&mut decision, to);
                decision.basis = Basis::Split;
            }
        }
        if located && name.policy == super::Policy::Nearest {
            let bias = name.bias_km.iter().map(|&(r, km)| {
                let (way, by) = if km >= 0.0 {
                    ("nearer", km)
                } else {
                    ("farther", -km)
                };
                format!("bias: {} ranked as if {by:.0} km {way}", regions[r].name)
            });
            decision.reasons.splice(0..0, bias);
        }
        if let (Some(n), Some(_)) = (name.multivalue, decision.chosen) {
            multivalue(&mut decision, n, regions);
        }
        decision
    }
}

/// The network or ASN rule that sends a client to a region, and why: the most specific
/// network rule holding its address, else its AS's rule. A network rule hides the AS's even
/// when its region cannot answer.
pub fn pin(rules: &Rules, facts: &ClientFacts) -> Option<(String, RegionId)> {
    match network_rule(rules, facts.network.addr()) {
        Some((net, id)) => Some((format!("network {net}"), id)),
        None => {
            let asn = facts.asn?;
            let &(_, id) = rules.asns.iter().find(|(a, _)| *a == asn)?;
            Some((format!("AS{asn}"), id))
        }
    }
}

/// The `n - 1` best regions that can answer beside the chosen one answer too (degraded ones
/// only after every other).
fn multivalue(decision: &mut Decision, n: usize, regions: &[Region]) {
    let mut order: Vec<usize> = (0..decision.candidates.len())
        .filter(|&i| {
            matches!(
                decision.candidates[i].verdict,
                Verdict::Farther | Verdict::Degraded
            )
        })
        .collect();
    order.sort_by_key(|&i| decision.candidates[i].verdict == Verdict::Degraded);
    for &i in order.iter().take(n.saturating_sub(1)) {
        decision.candidates[i].verdict = Verdict::Chosen;
        decision.also.push(decision.candidates[i].region);
    }
    if !decision.also.is_empty() {
        let names: Vec<&str> = decision
            .also
            .iter()
            .map(|&r| regions[r].name.as_str())
            .collect();
        decision
            .reasons
            .push(format!("multivalue {n}: {} answer too", names.join(", ")));
    }
}

/// The decision under the name's rules, one region chosen, but for the split's hash: the
/// client's place (point, country, continent) and `pinned` ([`pin`]) decide, never its network
/// or AS otherwise, so compiled steering stages a decision once per place and pin.
pub fn staged(
    facts: &ClientFacts,
    pinned: Option<(String, RegionId)>,
    rtt: Option<&ClientRtt>,
    name: &SteeredName,
    regions: &[Region],
    view: &HealthView,
    family: Family,
) -> Staged {
    let rules = &name.rules;
    let mut decision = super::decide_measured(facts.point, rtt, name, regions, view, family);
    let staged = |decision, split| Staged {
        decision,
        split,
        located: facts.point.is_some(),
    };
    if rules.is_empty() {
        return staged(decision, None);
    }
    decision.depends_on_client = true;
    let region_name = |id: RegionId| regions[id].name.as_str();
    if let Some((why, id)) = pinned {
        if promote(&mut decision, id) {
            decision.basis = Basis::Rule;
            decision
                .reasons
                .push(format!("{why} is sent to {}", region_name(id)));
            return staged(decision, None);
        }
        decision.reasons.push(format!(
            "{why} is sent to {}, which cannot answer: distance decides",
            region_name(id)
        ));
    }
    if let Some((index, fence)) = rules
        .fences
        .iter()
        .enumerate()
        .find(|(_, f)| f.holds(facts))
    {
        let allowed: Vec<&str> = fence.regions.iter().map(|&r| region_name(r)).collect();
        let place = facts
            .country
            .or(facts.continent.map(Continent::code))
            .unwrap_or("an unknown place");
        let inside = SteeredName {
            regions: name
                .regions
                .iter()
                .copied()
                .filter(|r| fence.regions.contains(r))
                .collect(),
            default_region: if fence.regions.contains(&name.default_region) {
                name.default_region
            } else {
                fence.regions[0]
            },
            ..name.clone()
        };
        let mut fenced = super::decide_measured(facts.point, rtt, &inside, regions, view, family);
        if fenced.chosen.is_some() {
            fenced.basis = Basis::Fenced;
            fenced.depends_on_client = true;
            fenced.reasons = std::mem::take(&mut decision.reasons);
            fenced.reasons.push(format!(
                "fence: clients in {place} are served only by {}",
                allowed.join(", ")
            ));
            // The regions outside the fence are shown, never chosen.
            for c in decision.candidates {
                if !fence.regions.contains(&c.region) {
                    fenced.candidates.push(super::Candidate {
                        verdict: Verdict::Fenced,
                        ..c
                    });
                }
            }
            decision = fenced;
        } else {
            match fence.when_all_down {
                WhenAllDown::FailOpen => decision.reasons.push(format!(
                    "fence: every region allowed for {place} ({}) is down: fails open",
                    allowed.join(", ")
                )),
                WhenAllDown::FailClosed => {
                    decision.reasons.push(format!(
                        "fence: every region allowed for {place} ({}) is down: fails \
                         closed ({})",
                        allowed.join(", "),
                        if fence.closed_answer.is_empty() {
                            "NODATA"
                        } else {
                            "its fixed answer"
                        }
                    ));
                    decision.basis = Basis::FencedClosed;
                    decision.closed_fence = Some(index);
                    if let Some(c) = decision
                        .candidates
                        .iter_mut()
                        .find(|c| c.verdict == Verdict::Chosen)
                    {
                        c.verdict = Verdict::Fenced;
                    }
                    decision.chosen = None;
                    return staged(decision, None);
                }
            }
        }
    }
    let split = decision.chosen.and_then(|from| {
        let split = rules.splits.iter().find(|s| s.region == from)?;
        let usable: Vec<(RegionId, u32)> = split
            .weights
            .iter()
            .copied()
            .filter(|&(r, w)| w > 0 && answers(&decision, r))
            .collect();
        if usable.is_empty() {
            return None;
        }
        let shares: Vec<String> = split
            .weights
            .iter()
            .map(|&(r, w)| format!("{} {w}%", region_name(r)))
            .collect();
        Some(SplitStep {
            from,
            usable,
            shares: shares.join(", "),
        })
    });
    staged(decision, split)
}

/// The most specific network rule holding `addr`.
pub fn network_rule(rules: &Rules, addr: IpAddr) -> Option<(IpNet, RegionId)> {
    rules
        .networks
        .iter()
        .filter(|(n, _)| n.contains(&addr))
        .max_by_key(|(n, _)| n.prefix_len())
        .copied()
}

/// Where a split among `weights` ([`Staged::split_weights`]) sends a client in `network`.
pub fn split_lands(weights: &[(RegionId, u32)], network: IpNet) -> Option<RegionId> {
    rendezvous(weights, split_key(network))
}

/// Whether `region` is a candidate of `decision` that could answer (up, with endpoints).
pub fn answers(decision: &Decision, region: RegionId) -> bool {
    decision.candidates.iter().any(|c| {
        c.region == region
            && matches!(
                c.verdict,
                Verdict::Chosen | Verdict::Farther | Verdict::Degraded
            )
    })
}

/// Makes `region` the answer of `decision` if it can answer; the region it displaces becomes
/// a farther one. Returns whether it did.
fn promote(decision: &mut Decision, region: RegionId) -> bool {
    if !answers(decision, region) {
        return false;
    }
    for c in &mut decision.candidates {
        if c.verdict == Verdict::Chosen {
            c.verdict = Verdict::Farther;
        }
    }
    let i = decision
        .candidates
        .iter()
        .position(|c| c.region == region)
        .expect("an answering region is a candidate");
    let mut c = decision.candidates.remove(i);
    c.verdict = Verdict::Chosen;
    decision.candidates.insert(0, c);
    decision.chosen = Some(region);
    true
}

/// The split's hash input: the client's /24 or /48, so every client network inside one gets
/// the same side.
pub(super) fn split_key(network: IpNet) -> u128 {
    match network {
        IpNet::V4(n) => u128::from(u32::from(n.addr()) >> (32 - SPLIT_PREFIX_V4)),
        IpNet::V6(n) => u128::from(n.addr()) >> (128 - SPLIT_PREFIX_V6) | 1 << 127,
    }
}

/// Weighted rendezvous hashing: each region scores `weight / -ln(hash(key, region))` and the
/// highest wins. A change of one region's weight moves only clients to or from that region
/// (raising a share from 10 % to 20 % moves just the extra 10 %), and a region that leaves
/// gives its clients to the others in proportion.
fn rendezvous(weights: &[(RegionId, u32)], key: u128) -> Option<RegionId> {
    weights
        .iter()
        .map(|&(region, weight)| {
            let h = mix(key ^ (region as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            // Uniform in (0, 1): the top 53 bits, never 0.
            let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            (region, f64::from(weight) / -u.ln())
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(r, _)| r)
}

/// SplitMix64's finaliser over both halves of `x`: fixed, so a split is stable across
/// restarts and releases.
pub(super) fn mix(x: u128) -> u64 {
    let mut z = (x as u64) ^ ((x >> 64) as u64).rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The ECS scope that keeps an answer under `name`'s rules honest: the longest prefix among
/// what the answer depends on. `located` is the GeoIP network (or the compiled run) that a
/// distance answer holds for, `asn_network` the ASN database's network of the client.
/// Returns `None` when the name has no rules (the caller's scope stands).
pub fn scope(
    name: &SteeredName,
    decision: &Decision,
    facts: &ClientFacts,
    located: u8,
    asn_network: Option<IpNet>,
) -> Option<u8> {
    let rules = &name.rules;
    if rules.is_empty() {
        return None;
    }
    let client = facts.network;
    let bits = client.max_prefix_len();
    let mut scope = match network_rule(rules, client.addr()) {
        // Every address of the rule's network gets its region (overlaps with another region
        // are refused), unless a split or a down region makes distance decide.
        Some((net, _)) if decision.basis == Basis::Rule => net.prefix_len(),
        _ => {
            // A distance answer holds for the located block, but no wider than a block that
            // holds no network rule narrower than itself (one wider holds it whole).
            let mut p = located;
            while p < bits
                && rules.networks.iter().any(|(n, _)| {
                    let block = IpNet::new(client.addr(), p).expect("p within bits").trunc();
                    n.prefix_len() > p && block.contains(&n.network())
                })
            {
                p += 1;
            }
            p
        }
    };
    if !rules.asns.is_empty() {
        scope = scope.max(asn_network.map_or(client.prefix_len(), |n| n.prefix_len()));
    }
    // The regions answering beside a rule's depend on where the client is.
    if name.multivalue.is_some() {
        scope = scope.max(located);
    }
    if !rules.splits.is_empty() {
        scope = scope.max(match client {
            IpNet::V4(_) => SPLIT_PREFIX_V4,
            IpNet::V6(_) => SPLIT_PREFIX_V6,
        });
    }
    Some(scope)
}
