//! The steering decision: which region answers a steered name for a client.
//!
//! Everything here is PURE: no I/O, no clock, no logging, no async. The DNS fast path,
//! `meridian route` and (later) the admin API all call [`decide`] with the same inputs and
//! get the same [`Decision`], which carries the answer and every candidate with its reason.

use std::net::IpAddr;

use serde::Serialize;

/// Mean Earth radius in km (IUGG), for great-circle distances.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// A point on the globe in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
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

/// A name answered by steering, as configured in its zone.
#[derive(Debug, Clone, PartialEq)]
pub struct SteeredName {
    /// Candidate regions in configured order; ties in distance go to the earlier one.
    pub regions: Vec<RegionId>,
    /// Region that answers when the client's location is unknown.
    pub default_region: RegionId,
    pub ttl: u32,
    /// How many addresses to return; `None` returns every endpoint of the chosen region.
    pub answers: Option<usize>,
}

/// Health and operator state of a region, as the control plane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegionState {
    Up,
    Down,
}

/// The control plane's view of every region of a zone, indexed by [`RegionId`].
/// Regions it does not cover count as up, so a view built before probes run is all-up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthView {
    pub regions: Vec<RegionState>,
}

impl HealthView {
    pub fn all_up() -> Self {
        Self::default()
    }

    pub fn state(&self, region: RegionId) -> RegionState {
        self.regions.get(region).copied().unwrap_or(RegionState::Up)
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
    /// Down: skipped while any eligible region is up.
    Down,
    /// Has no endpoint of the queried family.
    NoEndpoints,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub region: RegionId,
    pub distance_km: Option<f64>,
    pub state: RegionState,
    pub verdict: Verdict,
}

/// How the answer was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// The nearest up region to the client's location.
    Nearest,
    /// The client's location is unknown: the name's default region (or the first up one).
    Default,
    /// Every eligible region is down: fail open with all of their endpoints, so that a
    /// probe outage never empties DNS (as Route 53 and gdnsd do).
    AllDown,
    /// No region has endpoints of the queried family: NODATA.
    NoEndpoints,
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
}

impl Decision {
    /// The endpoints that may be answered, before selection by [`select`].
    pub fn endpoints<'r>(
        &self,
        regions: &'r [Region],
        family: Family,
    ) -> impl Iterator<Item = &'r Endpoint> {
        let answering: Vec<RegionId> = match (self.basis, self.chosen) {
            (_, Some(region)) => vec![region],
            (Basis::AllDown, None) => self
                .candidates
                .iter()
                .filter(|c| c.verdict != Verdict::NoEndpoints)
                .map(|c| c.region)
                .collect(),
            _ => Vec::new(),
        };
        answering
            .into_iter()
            .flat_map(move |r| regions[r].endpoints(family))
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
    let mut candidates: Vec<Candidate> = name
        .regions
        .iter()
        .map(|&region| {
            let eligible = regions[region].endpoints(family).next().is_some();
            let state = view.state(region);
            Candidate {
                region,
                distance_km: client.map(|c| c.distance_km(regions[region].location)),
                state,
                verdict: match (eligible, state) {
                    (false, _) => Verdict::NoEndpoints,
                    (true, RegionState::Down) => Verdict::Down,
                    (true, RegionState::Up) => Verdict::Farther,
                },
            }
        })
        .collect();

    // Stable sort: equal distances keep the configured order. Without a location the
    // default region goes first and the rest keep their order.
    match client {
        Some(_) => candidates.sort_by(|a, b| {
            let (da, db) = (a.distance_km.unwrap_or(0.0), b.distance_km.unwrap_or(0.0));
            da.total_cmp(&db)
        }),
        None => candidates.sort_by_key(|c| c.region != name.default_region),
    }
    // Ineligible regions sink to the end; state does not change rank, only the verdict.
    candidates.sort_by_key(|c| c.verdict == Verdict::NoEndpoints);

    let eligible = candidates
        .iter()
        .filter(|c| c.verdict != Verdict::NoEndpoints)
        .count();
    let up = candidates
        .iter()
        .filter(|c| c.verdict == Verdict::Farther)
        .count();
    let chosen = candidates
        .iter_mut()
        .find(|c| c.verdict == Verdict::Farther);
    let (basis, chosen) = match chosen {
        Some(c) => {
            c.verdict = Verdict::Chosen;
            let basis = if client.is_some() {
                Basis::Nearest
            } else {
                Basis::Default
            };
            (basis, Some(c.region))
        }
        None if eligible > 0 => (Basis::AllDown, None),
        None => (Basis::NoEndpoints, None),
    };
    Decision {
        basis,
        chosen,
        candidates,
        depends_on_client: up >= 2,
    }
}

/// Picks up to `count` of `endpoints` (all when `None`), in an order drawn by weight from
/// `seed`: equal weights rotate, so successive queries spread over every endpoint.
pub fn select<'e>(
    endpoints: impl IntoIterator<Item = &'e Endpoint>,
    count: Option<usize>,
    seed: u64,
) -> Vec<IpAddr> {
    let mut pool: Vec<&Endpoint> = endpoints.into_iter().collect();
    let want = count.unwrap_or(pool.len()).min(pool.len());
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
