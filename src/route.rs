//! The explanation of a steered answer: what `meridian route` prints (and `--json` emits)
//! and `GET /api/v1/route` returns, with region names instead of indexes so that it reads on
//! its own.
//!
//! The rule: the command line and the API read the operator's question with
//! [`RouteQuery::parse`] and explain it with [`Route::explain`], which asks the DNS path's own
//! steering, so neither can accept other input or tell another story than the answers do.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use hickory_proto::ProtoError;
use hickory_proto::rr::{LowerName, Name};
use ipnet::IpNet;
use serde::Serialize;

use crate::geo::Location;
use crate::health::Outcome;
use crate::health::monitor::Seen;
use crate::serving::Snapshot;
use crate::serving::answer::{self, Client, SteeredAnswer};
use crate::steer::{Basis, Family, GeoPoint, Measured, RegionState, Verdict};
use crate::zone::{Steered, Zone, ZoneSet};

/// A route question as an operator types it (the API's `name` and `client` parameters, or
/// `meridian route --name --client`), found in one zone set.
#[derive(Debug, Clone, Copy)]
pub struct RouteQuery<'z> {
    pub zone: &'z Zone,
    pub steered: &'z Steered,
    /// The client as an ECS subnet, so that a network asks what its resolvers would be told.
    pub client: Client,
}

/// Why a route question cannot be answered. The messages leave out which parameter was
/// wrong: the API calls it `client`, the command line `--client`.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0:?}: expected an address or a network such as 81.2.69.0/24")]
    Client(String),
    #[error("{given:?}: {source}")]
    Name { given: String, source: ProtoError },
    #[error("{0} is in no loaded zone")]
    NoZone(String),
    #[error("{name} is not a steered name of zone {zone} (steered: {})", steered.join(", "))]
    NotSteered {
        name: String,
        zone: String,
        steered: Vec<String>,
    },
}

impl<'z> RouteQuery<'z> {
    /// The steered name `name` (fully qualified or not) in `zones`, asked for `client`: an
    /// address or a network, its host bits cleared.
    pub fn parse(zones: &'z ZoneSet, name: &str, client: &str) -> Result<Self, QueryError> {
        let network: IpNet = client
            .parse()
            .or_else(|_| client.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| QueryError::Client(client.to_string()))?;
        let mut name = Name::from_utf8(name).map_err(|source| QueryError::Name {
            given: name.to_string(),
            source,
        })?;
        name.set_fqdn(true);
        let lower = LowerName::new(&name);
        let zone = zones
            .find(&lower)
            .ok_or_else(|| QueryError::NoZone(name.to_string()))?;
        let steered = zone
            .steered_by_name(&lower)
            .ok_or_else(|| QueryError::NotSteered {
                name: name.to_string(),
                zone: zone.origin.to_string(),
                steered: zone.steered.iter().map(|s| s.name.to_string()).collect(),
            })?;
        Ok(RouteQuery {
            zone,
            steered,
            client: Client::Subnet {
                network: network.trunc(),
            },
        })
    }
}

#[derive(Debug, Serialize)]
pub struct Route {
    pub name: String,
    pub zone: String,
    pub geoip: String,
    pub client: Client,
    pub location: Location,
    pub a: FamilyRoute,
    pub aaaa: FamilyRoute,
    /// In a cluster: what each node sees of the zone's endpoints and what the rule makes of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quorum: Option<crate::cluster::QuorumExplained>,
    /// The zone's DNSSEC, when it is signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dnssec: Option<DnssecView>,
}

/// A signed zone's key and the window of the signatures made now.
#[derive(Debug, Serialize)]
pub struct DnssecView {
    pub algorithm: String,
    /// `None` when the key could not be read: `key_error` says why.
    pub key_tag: Option<u16>,
    pub ds: Option<String>,
    /// Unix seconds.
    pub inception: Option<u32>,
    pub expiration: Option<u32>,
    /// When signatures start carrying the next window (Unix seconds).
    pub next_window: Option<u32>,
    /// Every key and what it does.
    pub keys: Vec<crate::zone::dnssec::KeyView>,
    /// The rollover under way and its next step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollover: Option<RolloverView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_error: Option<String>,
}

/// A rollover under way, as `meridian dnssec status` shows it.
#[derive(Debug, Serialize)]
pub struct RolloverView {
    pub kind: crate::zone::rollover::Role,
    pub old: u16,
    pub new: u16,
    pub step: String,
    /// When the step was taken (Unix seconds).
    pub since: u64,
    /// The next step, or `done`.
    pub next_step: String,
    /// The earliest time it is safe (Unix seconds).
    pub next_at: u64,
}

impl DnssecView {
    /// The view of `zone`'s DNSSEC at `now` (Unix seconds); `key_error` when its key did not
    /// load.
    pub fn of(zone: &crate::zone::Zone, now: u32, key_error: Option<String>) -> Option<Self> {
        let d = zone.dnssec.as_ref()?;
        let signer = d.signer.as_deref();
        let window = signer.map(|s| s.window(now));
        Some(DnssecView {
            algorithm: d.spec.algorithm.to_string(),
            key_tag: signer.map(|s| s.tag()),
            ds: signer.map(|s| s.ds_line(zone.soa().ttl)),
            inception: window.map(|w| w.0),
            expiration: window.map(|w| w.1),
            next_window: signer.map(|s| s.next_window_at(now)),
            keys: signer.map(|s| s.keys()).unwrap_or_default(),
            rollover: signer.and_then(|s| {
                let r = s.rollover()?;
                let (next, at) = s.next_step()?;
                Some(RolloverView {
                    kind: r.kind,
                    old: r.old,
                    new: r.new,
                    step: r.step.to_string(),
                    since: r.since,
                    next_step: next.map_or_else(|| "done".into(), |n| n.to_string()),
                    next_at: at,
                })
            }),
            key_error,
        })
    }
}

/// Unix seconds as `2026-11-29 23:00 UTC`.
fn utc(t: u32) -> String {
    match time::OffsetDateTime::from_unix_timestamp(i64::from(t)) {
        Ok(d) => format!("{} {:02}:{:02} UTC", d.date(), d.hour(), d.minute()),
        Err(_) => t.to_string(),
    }
}

/// The decision for one address family (A or AAAA).
#[derive(Debug, Serialize)]
pub struct FamilyRoute {
    pub basis: Basis,
    pub chosen: Option<String>,
    /// The node whose measured latency ranks the regions for this client: the located node
    /// nearest to it; `None`: this node's own.
    pub vantage: Option<String>,
    /// The client network whose measured RTTs decided (basis `measured`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<IpNet>,
    /// Every region of the name, best first.
    pub candidates: Vec<CandidateView>,
    /// What the name's rules (network, ASN, fence, split) and bias did.
    pub reasons: Vec<String>,
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
    /// The node that measured `degradation_ms`; `None`: this node.
    pub degradation_from: Option<String>,
    /// The client network's measured RTT to the region and the samples behind it, where it
    /// has enough ([`crate::latency`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<Measured>,
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
    /// The probe result shown, if a probe ran and reached the target.
    pub probe: Option<Outcome>,
    /// Why this host could not make the probe (out of descriptors, no route...): a fault of
    /// this node, not of the endpoint, which is then taken as up, as if not probed.
    pub local_error: Option<String>,
}

impl Route {
    /// The decision the DNS path makes for `query`, for both families, from `state`'s
    /// health; `query` must come from `state`'s zones. `probes` (per region, per endpoint) are
    /// shown beside the endpoints. The endpoint order is that of seed 0; queries rotate it.
    pub fn explain(
        state: &Snapshot,
        query: RouteQuery<'_>,
        probes: Option<&[Vec<Option<Seen>>]>,
    ) -> Route {
        let RouteQuery {
            zone,
            steered,
            client,
        } = query;
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
            quorum: None,
            dnssec: None,
        }
    }
}

struct Context<'a> {
    zone: &'a Zone,
    state: &'a Snapshot,
    probes: Option<&'a [Vec<Option<Seen>>]>,
}

impl Context<'_> {
    fn endpoints(&self, id: usize) -> Vec<EndpointView> {
        let region = &self.zone.regions[id];
        let check = &self.zone.checks[id];
        let health = self.state.health(self.zone);
        region
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let seen = self
                    .probes
                    .and_then(|p| p.get(id))
                    .and_then(|r| r.get(i).cloned().flatten());
                let (probe, local_error) = match seen {
                    Some(Ok(outcome)) => (Some(outcome), None),
                    Some(Err(why)) => (None, Some(why)),
                    None => (None, None),
                };
                EndpointView {
                    address: e.address,
                    weight: e.weight,
                    up: health.endpoint_up(id, i),
                    check: check.spec.kind.name(),
                    target: check.targets[i],
                    probe,
                    local_error,
                }
            })
            .collect()
    }
}

impl FamilyRoute {
    fn new(ctx: &Context<'_>, answer: SteeredAnswer) -> FamilyRoute {
        let zone = ctx.zone;
        let name = |id: usize| zone.regions[id].name.clone();
        let vantages = &ctx.state.health(zone).vantages;
        let node = |i: usize| vantages[i].node.clone();
        FamilyRoute {
            basis: answer.decision.basis,
            chosen: answer.decision.chosen.map(name),
            vantage: answer.decision.vantage.map(node),
            measured: answer.decision.measured,
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
                    degradation_from: c.vantage.map(node),
                    measured: c.measured,
                    state: c.state,
                    verdict: c.verdict,
                    endpoints: ctx.endpoints(c.region),
                })
                .collect(),
            reasons: answer.decision.reasons.clone(),
            addresses: answer.addresses,
            ttl: answer.ttl,
            scope: answer.scope,
        }
    }
}

/// The text `meridian route` prints: the client's place, then per family every candidate with
/// its endpoints and verdict, and the answer.
impl fmt::Display for Route {
    fn fmt(&self, w: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loc = &self.location;
        writeln!(w, "name      {} (zone {})", self.name, self.zone)?;
        writeln!(w, "client    {} (as an ECS subnet)", self.client.network())?;
        let place = match (loc.country, loc.continent, loc.point) {
            (c, k, Some(p)) => format!(
                "{} {} at {:.2}, {:.2}",
                c.unwrap_or("??"),
                k.map(|k| k.code()).unwrap_or("??"),
                p.lat,
                p.lon
            ),
            _ => "unknown".into(),
        };
        writeln!(
            w,
            "location  {place} ({}), GeoIP network {}",
            loc.precision.describe(),
            loc.network
        )?;
        match loc.asn {
            Some(a) => writeln!(
                w,
                "asn       AS{} {} (network {})",
                a.number, a.organisation, a.network
            )?,
            None => writeln!(w, "asn       unknown")?,
        }
        writeln!(w, "geoip     {}", self.geoip)?;
        if let Some(d) = &self.dnssec {
            match (d.key_tag, d.inception, d.expiration, d.next_window) {
                (Some(tag), Some(from), Some(to), Some(next)) => writeln!(
                    w,
                    "dnssec    {} key tag {tag}; signatures made now: {} to {}; next window \
                     from {}",
                    d.algorithm,
                    utc(from),
                    utc(to),
                    utc(next)
                )?,
                _ => writeln!(
                    w,
                    "dnssec    {}; key not loaded: {}",
                    d.algorithm,
                    d.key_error.as_deref().unwrap_or("unknown")
                )?,
            }
            if let Some(r) = &d.rollover {
                writeln!(
                    w,
                    "rollover  {} {} -> {}: step {}; next {} from {}",
                    r.kind,
                    r.old,
                    r.new,
                    r.step,
                    r.next_step,
                    crate::zone::rollover::utc(r.next_at)
                )?;
            }
        }
        for (label, ans) in [("A", &self.a), ("AAAA", &self.aaaa)] {
            writeln!(w, "\n{label}: {}", basis_text(ans.basis))?;
            for reason in &ans.reasons {
                writeln!(w, "  rule: {reason}")?;
            }
            if let Some(v) = &ans.vantage {
                writeln!(
                    w,
                    "  latency as measured by {v}, the vantage point nearest to the client"
                )?;
            }
            if let Some(net) = &ans.measured {
                writeln!(
                    w,
                    "  measured RTTs of {net} decided: the gain passed max({} ms, {} %)",
                    crate::steer::SWITCH_MIN_MS,
                    crate::steer::SWITCH_FRACTION * 100.0
                )?;
            }
            for (i, c) in ans.candidates.iter().enumerate() {
                let dist = c
                    .distance_km
                    .map(|d| format!("{d:>8.0} km"))
                    .unwrap_or_else(|| "       ? km".into());
                let rtt = c
                    .estimated_rtt_ms
                    .map(|r| format!("~{r:.0} ms"))
                    .unwrap_or_default();
                let from = c
                    .degradation_from
                    .as_ref()
                    .map(|n| format!(" (from {n})"))
                    .unwrap_or_default();
                writeln!(
                    w,
                    "  {}. {:<16} ({:>7.2}, {:>7.2}) {dist} {rtt:>9}  degradation {:.0} ms{from}  {:<4}  {}",
                    i + 1,
                    c.region,
                    c.location.lat,
                    c.location.lon,
                    c.degradation_ms,
                    format!("{:?}", c.state).to_lowercase(),
                    verdict_text(c.verdict)
                )?;
                if let Some(m) = c.measured {
                    writeln!(
                        w,
                        "       measured {:.1} ms from {:.1} samples",
                        m.rtt_ms, m.samples
                    )?;
                }
                for e in &c.endpoints {
                    let target = e.target.map(|t| format!(" via {t}")).unwrap_or_default();
                    let probe = match (&e.probe, &e.local_error) {
                        (Some(Outcome::Up { rtt }), _) => {
                            format!(", probe ok in {:.1} ms", rtt.as_secs_f64() * 1000.0)
                        }
                        (Some(Outcome::Down { reason }), _) => format!(", probe failed: {reason}"),
                        (None, Some(fault)) => {
                            format!(", local fault: {fault}; not held against the endpoint")
                        }
                        (None, None) => String::new(),
                    };
                    writeln!(
                        w,
                        "       {:<24} weight {:<3} {} check {}{target}{probe}",
                        e.address,
                        e.weight,
                        if e.up { "up  " } else { "down" },
                        e.check
                    )?;
                }
            }
            if ans.addresses.is_empty() {
                writeln!(w, "  answer: NODATA")?;
            }
            for a in &ans.addresses {
                writeln!(w, "  answer: {} {} IN {label} {a}", self.name, ans.ttl)?;
            }
            writeln!(w, "  ecs scope: /{}", ans.scope)?;
        }
        if let Some(q) = &self.quorum {
            let rule = match q.rule {
                crate::zone::Quorum::Fraction(f) => format!("up when more than {f} see it up"),
                r => format!("{r:?}").to_lowercase(),
            };
            writeln!(
                w,
                "\nquorum ({rule}), from the nodes' published observations:"
            )?;
            for e in &q.endpoints {
                let seen: Vec<String> = e
                    .seen
                    .iter()
                    .map(|(node, up)| {
                        let state = if *up { "up" } else { "down" };
                        let note = if e.suspect.contains(node) {
                            " (suspect, not counted)"
                        } else {
                            ""
                        };
                        format!("{node} {state}{note}")
                    })
                    .collect();
                let decided = match e.up {
                    Some(true) => "up",
                    Some(false) => "down",
                    None => "no observation: each node follows its own probes",
                };
                let seen = if seen.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", seen.join(", "))
                };
                writeln!(w, "  {:<16} {:<24} {decided}{seen}", e.region, e.address)?;
            }
        }
        Ok(())
    }
}

fn basis_text(b: Basis) -> &'static str {
    match b {
        Basis::Nearest => "nearest up region",
        Basis::Measured => "measured client RTTs: a region beat the nearest past the margin",
        Basis::Default => "client location unknown: default region",
        Basis::Failover => "first up region in configured order (policy failover)",
        Basis::AllDown => "every region down: the name's fallback answers",
        Basis::NoEndpoints => "no region has addresses of this family",
        Basis::Rule => "a network or ASN rule of the name",
        Basis::Fenced => "nearest up region the client's geo-fence allows",
        Basis::FencedClosed => {
            "every region the client's geo-fence allows is down: fails closed (NODATA)"
        }
        Basis::Split => "a weighted split moved the client from its nearest region",
        Basis::Spill => "spillover: the nearest region is over capacity and shed this network",
    }
}

fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::Chosen => "<- answers",
        Verdict::Farther => "farther",
        Verdict::Degraded => "degraded past the limit, skipped",
        Verdict::Down => "down, skipped",
        Verdict::Drained => "drained by an operator, skipped",
        Verdict::EndpointsDown => "every endpoint of this family down, skipped",
        Verdict::NoEndpoints => "no endpoints of this family",
        Verdict::Fenced => "outside the client's geo-fence",
        Verdict::Shed => "over capacity: sheds this network",
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::zone;

    fn shipped() -> ZoneSet {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
        zone::load_dir(&dir).expect("shipped zones load")
    }

    fn parse(zones: &ZoneSet, name: &str, client: &str) -> Result<IpNet, String> {
        RouteQuery::parse(zones, name, client)
            .map(|q| q.client.network())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_client_is_an_address_or_a_network_with_its_host_bits_cleared() {
        let zones = shipped();
        let ok = |client: &str, want: &str| {
            assert_eq!(
                parse(&zones, "www.example.com", client),
                Ok(want.parse().expect("a network")),
                "{client}"
            );
        };
        ok("81.2.69.7", "81.2.69.7/32");
        ok("81.2.69.7/24", "81.2.69.0/24");
        ok("2001:db8::1", "2001:db8::1/128");
        ok("2001:db8::1/48", "2001:db8::/48");
    }

    #[test]
    fn a_question_that_cannot_be_answered_says_why_client_first() {
        let zones = shipped();
        for (name, client, want) in [
            (
                "a..b",
                "81.2.69.0/33",
                "\"81.2.69.0/33\": expected an address or a network such as 81.2.69.0/24",
            ),
            ("a..b", "81.2.69.7", "\"a..b\": Malformed label: "),
            (
                "www.example.org",
                "81.2.69.7",
                "www.example.org. is in no loaded zone",
            ),
            (
                "STATIC.example.com.",
                "81.2.69.7",
                // Read as IDNA, which lowers the case.
                "static.example.com. is not a steered name of zone example.com. \
                 (steered: www.example.com.)",
            ),
        ] {
            assert_eq!(parse(&zones, name, client), Err(want.to_string()), "{name}");
        }
    }
}
