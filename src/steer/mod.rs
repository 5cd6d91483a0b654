//! The steering decision: which region answers a steered name for a client.
//!
//! Everything here is PURE: no I/O, no clock, no logging, no async. The DNS fast path,
//! `meridian route` and the admin API (both through `route::Route`) all call [`decide`] with
//! the same inputs and get the same [`Decision`], which carries the answer and every candidate
//! with its reason.

pub mod rules;
pub mod spill;

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

pub use rules::{ClientFacts, Rules};

/// Mean Earth radius in km (IUGG), for great-circle distances.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// A point on the globe in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
}

impl GeoPoint {
    /// Great-circle distance by the haversine formula, in km.
    pub fn distance_km(self, other: GeoPoint) -> f64 {
        let (la1, la2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = la2 - la1;
        let dlon = (other.lon - self.lon).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }
}

/// Address family of a query: A asks for IPv4 endpoints, AAAA for IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Endpoint {
    pub address: IpAddr,
    /// Relative share among the region's endpoints of the same family (>= 1).
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Region {
    pub name: String,
    pub location: GeoPoint,
    pub endpoints: Vec<Endpoint>,
}

impl Region {
    pub fn endpoints(&self, family: Family) -> impl Iterator<Item = &Endpoint> {
        self.endpoints
            .iter()
            .filter(move |e| Family::of(&e.address) == family)
    }
}

/// Index of a region in its zone's region list.
pub type RegionId = usize;

/// Great-circle km of fibre per millisecond of round-trip time: light in fibre covers about
/// 200 km/ms one way, so 100 km per ms of RTT. Distances become RTT estimates with it, so that
/// they add to measured degradation.
pub const KM_PER_RTT_MS: f64 = 100.0;

/// A measured RTT moves an answer away from the distance model's only when it gains more
/// than max([`SWITCH_MIN_MS`], [`SWITCH_FRACTION`] of the incumbent's RTT), so that noise in
/// the samples moves nothing.
pub const SWITCH_MIN_MS: f64 = 5.0;
pub const SWITCH_FRACTION: f64 = 0.10;

/// A client's RTT to a region as the latency map measures it for the client's network.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Measured {
    pub rtt_ms: f64,
    /// Effective (decayed) samples behind it.
    pub samples: f64,
}

/// What the latency map knows of a client's network: by [`RegionId`], the regions with
/// enough samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientRtt {
    /// The client network the samples are from.
    pub prefix: IpNet,
    pub regions: Vec<Option<Measured>>,
}

/// How a steered name orders its regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Lowest estimated client RTT: distance plus the region's degradation.
    Nearest,
    /// The configured order: the first healthy region answers (active/passive).
    Failover,
}

/// What a name answers when every region is down.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fallback {
    /// Fail open with every endpoint of every region (Route 53's behaviour), so that a probe
    /// outage never empties DNS.
    All,
    /// These addresses.
    Static(Vec<Endpoint>),
}

/// A name answered by steering, as configured in its zone.
#[derive(Debug, Clone, PartialEq)]
pub struct SteeredName {
    /// Candidate regions in configured order; ties go to the earlier one.
    pub regions: Vec<RegionId>,
    /// Region that answers first when the client's location is unknown.
    pub default_region: RegionId,
    pub ttl: u32,
    /// TTL while a region of the name is changing state, so resolvers move quickly.
    pub trouble_ttl: u32,
    /// How many addresses to return; `None` returns every up endpoint of the chosen region.
    pub answers: Option<usize>,
    pub policy: Policy,
    pub fallback: Fallback,
    /// Per region, km taken off its distance to every client (Route 53's geoproximity
    /// bias): positive grows its catchment, negative shrinks it.
    pub bias_km: Vec<(RegionId, f64)>,
    /// Network, ASN, fence and split rules, applied by [`rules::apply`].
    pub rules: Rules,
    /// Multivalue: the endpoints of this many nearest up regions answer together (Route 53's
    /// multivalue answers, for clients that choose for themselves); `None`: one region.
    pub multivalue: Option<usize>,
}

impl SteeredName {
    /// The bias of `region`, 0 when none is configured.
    pub fn bias_km(&self, region: RegionId) -> f64 {
        self.bias_km
            .iter()
            .find(|(r, _)| *r == region)
            .map_or(0.0, |(_, b)| *b)
    }
}

/// Health and operator state of a region, as the control plane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegionState {
    Up,
    Down,
    /// Taken out of service by an operator: treated as down.
    Drained,
}

/// What steering needs to know of one region's health.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionHealth {
    pub state: RegionState,
    /// Up flag of each endpoint, in the region's endpoint order.
    pub endpoints_up: Vec<bool>,
    /// Measured slowness beyond the region's own normal, in ms of RTT; already filtered for
    /// noise by the control plane, so steering may use it as is.
    pub degradation_ms: f64,
    /// Degradation is past the configured limit: skipped while a better region is up.
    pub over_limit: bool,
    /// A probe result points to a coming state change, or one just happened.
    pub in_trouble: bool,
}

impl RegionHealth {
    pub fn up(endpoints: usize) -> Self {
        RegionHealth {
            state: RegionState::Up,
            endpoints_up: vec![true; endpoints],
            degradation_ms: 0.0,
            over_limit: false,
            in_trouble: false,
        }
    }
}

/// How slow one vantage point finds a region: its published degradation, already filtered
/// by that node's hysteresis, so it moves as rarely as this node's own.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Latency {
    pub degradation_ms: f64,
    pub over_limit: bool,
}

/// Another node of a cluster as a vantage point: where it is and how slow it finds each
/// region (by [`RegionId`]; `None` where it has no fresh observation).
#[derive(Debug, Clone, PartialEq)]
pub struct Vantage {
    pub node: String,
    pub location: GeoPoint,
    pub regions: Vec<Option<Latency>>,
}

/// The control plane's view of every region of a zone, indexed by [`RegionId`].
/// Regions it does not cover count as up, so a view built before probes run is all-up.
///
/// Latency has a vantage point: a client's estimated RTT uses the degradation measured by
/// the located node nearest to the client ([`HealthView::vantage_for`]), this node's own
/// where that node has none for a region. Being part of the view, the vantages are part of
/// its equality, so compiled steering is rebuilt when one of them moves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthView {
    pub regions: Vec<RegionHealth>,
    /// Where this node is (`[cluster] location`); `None`: it is no vantage point of its own.
    pub location: Option<GeoPoint>,
    /// The other located nodes whose observations are fresh and not suspect, in name order.
    pub vantages: Vec<Vantage>,
}

impl HealthView {
    pub fn all_up() -> Self {
        Self::default()
    }

    /// This view with this node's location and the other vantage points.
    pub fn with_vantages(self, location: Option<GeoPoint>, vantages: Vec<Vantage>) -> Self {
        HealthView {
            location,
            vantages,
            ..self
        }
    }

    /// The vantage whose latency applies to a client at `client`: an index into
    /// [`HealthView::vantages`], or `None` for this node's own. The nearest located node by
    /// great-circle distance wins, this node first on a tie (then name order); an unknown
    /// client, or no other vantage, takes this node's own. A node without a location is no
    /// candidate, which keeps every located node choosing alike.
    pub fn vantage_for(&self, client: Option<GeoPoint>) -> Option<usize> {
        let client = client?;
        let mut best: Option<(f64, Option<usize>)> =
            self.location.map(|l| (client.distance_km(l), None));
        for (i, v) in self.vantages.iter().enumerate() {
            let d = client.distance_km(v.location);
            if best.is_none_or(|(b, _)| d < b) {
                best = Some((d, Some(i)));
            }
        }
        best.and_then(|(_, i)| i)
    }

    /// Whether vantage points disagree on `region` being past its degradation limit: then
    /// even an order that ignores distance depends on where the client is.
    pub fn over_limit_varies(&self, region: RegionId) -> bool {
        let (own, _) = self.latency(region, None);
        self.vantages.iter().any(|v| {
            v.regions
                .get(region)
                .copied()
                .flatten()
                .is_some_and(|l| l.over_limit != own.over_limit)
        })
    }

    /// The latency of `region` seen from `vantage` (as [`HealthView::vantage_for`] gives
    /// it), and the vantage it came from: this node's own (`None`) where that vantage has no
    /// observation of the region.
    pub fn latency(&self, region: RegionId, vantage: Option<usize>) -> (Latency, Option<usize>) {
        if let Some(i) = vantage
            && let Some(l) = self.vantages[i].regions.get(region).copied().flatten()
        {
            return (l, Some(i));
        }
        let own = self.region(region).map_or(
            Latency {
                degradation_ms: 0.0,
                over_limit: false,
            },
            |h| Latency {
                degradation_ms: h.degradation_ms,
                over_limit: h.over_limit,
            },
        );
        (own, None)
    }

    pub fn region(&self, region: RegionId) -> Option<&RegionHealth> {
        self.regions.get(region)
    }

    pub fn state(&self, region: RegionId) -> RegionState {
        self.region(region).map_or(RegionState::Up, |h| h.state)
    }

    /// Whether endpoint `index` of `region` is in service: what steering answers with, and
    /// what `meridian route` and the admin API show. Endpoints the view does not cover count
    /// as up, as regions do.
    pub fn endpoint_up(&self, region: RegionId, index: usize) -> bool {
        self.region(region)
            .and_then(|h| h.endpoints_up.get(index).copied())
            .unwrap_or(true)
    }
}

impl Region {
    /// The endpoints of `family` that are up in `view`.
    pub fn up_endpoints<'r>(
        &'r self,
        id: RegionId,
        view: &'r HealthView,
        family: Family,
    ) -> impl Iterator<Item = &'r Endpoint> {
        self.endpoints
            .iter()
            .enumerate()
            .filter(move |(i, e)| Family::of(&e.address) == family && view.endpoint_up(id, *i))
            .map(|(_, e)| e)
    }
}

/// Why a candidate did or did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// It answers.
    Chosen,
    /// Up and eligible, but another region ranks first.
    Farther,
    /// Up, but its degradation is past the limit and a better region is up.
    Degraded,
    /// Down: skipped while any eligible region is up.
    Down,
    /// Drained by an operator: skipped like a down region.
    Drained,
    /// Up, but every endpoint of the queried family is down: skipped like a down region, so
    /// that a family whose endpoints are all down gets the fallback, not NODATA.
    EndpointsDown,
    /// Has no endpoint of the queried family.
    NoEndpoints,
    /// Outside the geo-fence that holds the client.
    Fenced,
    /// Would answer, but is over capacity and sheds this client ([`spill`]).
    Shed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub region: RegionId,
    pub distance_km: Option<f64>,
    /// Estimated client RTT: distance at [`KM_PER_RTT_MS`] plus degradation.
    pub estimated_rtt_ms: Option<f64>,
    pub degradation_ms: f64,
    /// The client network's measured RTT, where it has enough samples; with the
    /// degradation added it ranks the measured regions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<Measured>,
    /// Whose measurement `degradation_ms` is: an index into the view's vantages, `None` for
    /// this node's own.
    pub vantage: Option<usize>,
    pub state: RegionState,
    pub verdict: Verdict,
}

/// How the answer was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// The up region with the lowest estimated RTT to the client.
    Nearest,
    /// The client network's measured RTTs: a region beat the nearest one by more than the
    /// switching margin.
    Measured,
    /// The client's location is unknown: the name's default region, then configured order.
    Default,
    /// The first up region in the configured order (policy failover).
    Failover,
    /// Every eligible region is down: the name's fallback answers.
    AllDown,
    /// No region has endpoints of the queried family: NODATA.
    NoEndpoints,
    /// A network or ASN rule sends the client to this region.
    Rule,
    /// The nearest up region among those a geo-fence allows for the client.
    Fenced,
    /// Every region the client's fence allows is down and the fence fails closed: its fixed
    /// answer, or NODATA.
    FencedClosed,
    /// A weighted split moved the client from its nearest region.
    Split,
    /// The client's region is over capacity and shed it to its next-nearest region with
    /// headroom ([`spill`]).
    Spill,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub basis: Basis,
    /// The answering region, if one region answers.
    pub chosen: Option<RegionId>,
    /// Every configured region of the name, best first.
    pub candidates: Vec<Candidate>,
    /// True when another client could get a different answer from the same state; the
    /// ECS scope is then the client's GeoIP network, else 0.
    pub depends_on_client: bool,
    /// The name's TTL, or its trouble TTL while one of its regions is changing state.
    pub ttl: u32,
    /// The vantage point nearest to the client, whose latency ranks the regions: an index
    /// into the view's vantages, `None` for this node's own.
    pub vantage: Option<usize>,
    /// What the name's rules did, in the order they applied.
    pub reasons: Vec<String>,
    /// Multivalue: the regions that answer beside `chosen`, best first.
    pub also: Vec<RegionId>,
    /// The fence (an index into the name's fences) that failed closed: its fixed answer, if
    /// any, answers.
    pub closed_fence: Option<usize>,
    /// The client network whose measured RTTs decided (basis `measured`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<IpNet>,
}

impl Decision {
    /// The endpoints that may be answered, before selection by [`select`].
    pub fn endpoints<'r>(
        &self,
        name: &'r SteeredName,
        regions: &'r [Region],
        view: &'r HealthView,
        family: Family,
    ) -> Vec<&'r Endpoint> {
        match (self.basis, self.chosen) {
            (_, Some(id)) => std::iter::once(id)
                .chain(self.also.iter().copied())
                .flat_map(|r| regions[r].up_endpoints(r, view, family))
                .collect(),
            (Basis::AllDown, None) => match &name.fallback {
                Fallback::All => name
                    .regions
                    .iter()
                    .flat_map(|&id| regions[id].endpoints(family))
                    .collect(),
                Fallback::Static(addrs) => addrs
                    .iter()
                    .filter(|e| Family::of(&e.address) == family)
                    .collect(),
            },
            (Basis::FencedClosed, None) => self
                .closed_fence
                .map(|i| &name.rules.fences[i].closed_answer[..])
                .unwrap_or_default()
                .iter()
                .filter(|e| Family::of(&e.address) == family)
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Ranks the name's regions for a client at `client` (None: location unknown) and picks the
/// answering region for `family`.
pub fn decide(
    client: Option<GeoPoint>,
    name: &SteeredName,
    regions: &[Region],
    view: &HealthView,
    family: Family,
) -> Decision {
    decide_measured(client, None, name, regions, view, family)
}

/// [`decide`], with what the latency map measured for the client's network: where two
/// eligible regions have measured RTTs, the best of them replaces the distance model's
/// choice if it gains more than the switching margin ([`SWITCH_MIN_MS`]).
pub fn decide_measured(
    client: Option<GeoPoint>,
    rtt: Option<&ClientRtt>,
    name: &SteeredName,
    regions: &[Region],
    view: &HealthView,
    family: Family,
) -> Decision {
    let vantage = view.vantage_for(client);
    let mut candidates: Vec<Candidate> = name
        .regions
        .iter()
        .map(|&id| {
            let region = &regions[id];
            let state = view.state(id);
            let (latency, from) = view.latency(id, vantage);
            let degradation_ms = latency.degradation_ms;
            let distance_km = client.map(|c| c.distance_km(region.location));
            let bias_km = name.bias_km(id);
            // A down region keeps its configured endpoints eligible, so that the fallback
            // (and `route`) can still name it; only up endpoints answer for an up region.
            let configured = region.endpoints(family).next().is_some();
            let verdict = match state {
                _ if !configured => Verdict::NoEndpoints,
                RegionState::Down => Verdict::Down,
                RegionState::Drained => Verdict::Drained,
                RegionState::Up if region.up_endpoints(id, view, family).next().is_none() => {
                    Verdict::EndpointsDown
                }
                RegionState::Up if latency.over_limit => Verdict::Degraded,
                RegionState::Up => Verdict::Farther,
            };
            Candidate {
                region: id,
                distance_km,
                estimated_rtt_ms: distance_km
                    .map(|d| (d - bias_km) / KM_PER_RTT_MS + degradation_ms),
                degradation_ms,
                measured: rtt.and_then(|r| r.regions.get(id).copied().flatten()),
                vantage: from,
                state,
                verdict,
            }
        })
        .collect();

    // Stable sorts: ties keep the configured order.
    let by_rtt = name.policy == Policy::Nearest && client.is_some();
    if by_rtt {
        candidates.sort_by(|a, b| {
            let (x, y) = (
                a.estimated_rtt_ms.unwrap_or(0.0),
                b.estimated_rtt_ms.unwrap_or(0.0),
            );
            x.total_cmp(&y)
        });
    } else if name.policy == Policy::Nearest {
        candidates.sort_by_key(|c| c.region != name.default_region);
    }
    candidates.sort_by_key(|c| c.verdict == Verdict::NoEndpoints);

    let usable = |v: Verdict| matches!(v, Verdict::Farther | Verdict::Degraded);
    let up = candidates.iter().filter(|c| usable(c.verdict)).count();
    let eligible = candidates
        .iter()
        .filter(|c| c.verdict != Verdict::NoEndpoints)
        .count();
    // The best region that is not degraded; if all up regions are degraded, the best of them.
    let pick = candidates
        .iter()
        .position(|c| c.verdict == Verdict::Farther)
        .or_else(|| {
            candidates
                .iter()
                .position(|c| c.verdict == Verdict::Degraded)
        });
    // Measured RTTs may move the answer; the one they choose ranks first.
    let switched = pick
        .filter(|_| name.policy == Policy::Nearest)
        .and_then(|i| {
            let j = measured_switch(&candidates, i)?;
            let c = candidates.remove(j);
            candidates.insert(0, c);
            Some(0)
        });
    let pick = switched.or(pick);
    let (basis, chosen) = match pick {
        Some(i) => {
            candidates[i].verdict = Verdict::Chosen;
            let basis = match (name.policy, client) {
                _ if switched.is_some() => Basis::Measured,
                (Policy::Failover, _) => Basis::Failover,
                (Policy::Nearest, Some(_)) => Basis::Nearest,
                (Policy::Nearest, None) => Basis::Default,
            };
            (basis, Some(candidates[i].region))
        }
        None if eligible > 0 => (Basis::AllDown, None),
        None => (Basis::NoEndpoints, None),
    };
    // A location-driven order makes the answer differ between clients; so does a region
    // that some vantage point finds past the limit and another not, whatever the policy.
    let depends_on_client = up >= 2
        && (name.policy == Policy::Nearest
            || name.regions.iter().any(|&id| view.over_limit_varies(id)));
    let trouble = name
        .regions
        .iter()
        .any(|&id| view.region(id).is_some_and(|h| h.in_trouble));
    Decision {
        basis,
        chosen,
        candidates,
        depends_on_client,
        ttl: if trouble {
            name.ttl.min(name.trouble_ttl)
        } else {
            name.ttl
        },
        vantage,
        reasons: Vec::new(),
        also: Vec::new(),
        closed_fence: None,
        measured: switched.and(rtt).map(|r| r.prefix),
    }
}

/// The candidate that measured RTTs choose instead of `candidates[incumbent]`: one of the
/// same verdict (not degraded, or every one degraded) whose measured RTT plus degradation
/// beats the incumbent's by more than the switching margin. Both must be measured: a
/// measured region is never compared with a distance estimate, which lacks the last mile.
fn measured_switch(candidates: &[Candidate], incumbent: usize) -> Option<usize> {
    let rtt = |c: &Candidate| c.measured.map(|m| m.rtt_ms + c.degradation_ms);
    let own = rtt(&candidates[incumbent])?;
    let class = candidates[incumbent].verdict;
    let (best, gain) = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.verdict == class)
        .filter_map(|(j, c)| rtt(c).map(|r| (j, own - r)))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))?;
    (gain > SWITCH_MIN_MS.max(SWITCH_FRACTION * own)).then_some(best)
}

/// `decide(..).chosen` without the explanation: no allocation, no sort, one pass over the
/// name's regions. Compiling steering for every location of a database calls it once per
/// distinct point; the property tests hold it equal to [`decide`].
pub fn chosen(
    client: Option<GeoPoint>,
    name: &SteeredName,
    regions: &[Region],
    view: &HealthView,
    family: Family,
) -> Option<RegionId> {
    // (degraded, rank) of the best so far: `decide` picks the first region that is not
    // degraded in its order, else the first degraded one; its order is by estimated RTT, or
    // default region first when the location is unknown, or configured order (failover),
    // ties keeping the configured order.
    let vantage = view.vantage_for(client);
    let mut best: Option<(bool, f64, RegionId)> = None;
    for &id in &name.regions {
        let region = &regions[id];
        if view.state(id) != RegionState::Up
            || region.up_endpoints(id, view, family).next().is_none()
        {
            continue;
        }
        let (latency, _) = view.latency(id, vantage);
        let degraded = latency.over_limit;
        let rank = match (name.policy, client) {
            (Policy::Nearest, Some(c)) => {
                (c.distance_km(region.location) - name.bias_km(id)) / KM_PER_RTT_MS
                    + latency.degradation_ms
            }
            (Policy::Nearest, None) if id == name.default_region => 0.0,
            (Policy::Nearest, None) => 1.0,
            (Policy::Failover, _) => 0.0,
        };
        let better = match best {
            None => true,
            Some((d, r, _)) => (degraded, rank)
                .partial_cmp(&(d, r))
                .is_some_and(|o| o.is_lt()),
        };
        if better {
            best = Some((degraded, rank, id));
        }
    }
    best.map(|(_, _, id)| id)
}

/// How [`select`] orders a set of endpoints for a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Order {
    /// Equal weights: the list rotated by this many places.
    Rotation(usize),
    /// Unequal weights: drawn by weight, different for every seed.
    Weighted,
}

/// The order [`select`] uses for `n` endpoints of which `equal_weights` tells.
pub fn order(n: usize, equal_weights: bool, seed: u64) -> Order {
    if equal_weights {
        Order::Rotation(if n == 0 {
            0
        } else {
            (seed % n as u64) as usize
        })
    } else {
        Order::Weighted
    }
}

/// Picks up to `count` of `endpoints` (all when `None`). Equal weights rotate with `seed`, so
/// successive queries spread over every endpoint (and an answer depends only on the rotation,
/// which keeps it cacheable); unequal weights are drawn by weight from `seed`.
pub fn select<'e>(
    endpoints: impl IntoIterator<Item = &'e Endpoint>,
    count: Option<usize>,
    seed: u64,
) -> Vec<IpAddr> {
    let mut pool: Vec<&Endpoint> = endpoints.into_iter().collect();
    let want = count.unwrap_or(pool.len()).min(pool.len());
    let equal = pool.windows(2).all(|w| w[0].weight == w[1].weight);
    if let Order::Rotation(k) = order(pool.len(), equal, seed) {
        pool.rotate_left(k);
        return pool.iter().take(want).map(|e| e.address).collect();
    }
    let mut out = Vec::with_capacity(want);
    let mut rng = SplitMix64(seed);
    while out.len() < want {
        let total: u64 = pool.iter().map(|e| u64::from(e.weight.max(1))).sum();
        let mut point = rng.next() % total;
        let index = pool
            .iter()
            .position(|e| {
                let w = u64::from(e.weight.max(1));
                if point < w {
                    true
                } else {
                    point -= w;
                    false
                }
            })
            .expect("point is below the total weight");
        out.push(pool.remove(index).address);
    }
    out
}

/// A tiny deterministic generator: the same seed gives the same order, which keeps
/// `select` pure and testable.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests;
