//! PURE: what steering sees of one zone. The probe states of its regions, the isolation guard
//! over them and the operator overrides on top merge into one [`HealthView`].
//!
//! The one rule: time is one argument, [`Now`], which the monitor reads once per event;
//! nothing here reads a clock, sleeps, logs or does I/O. What the monitor must log (a state
//! change, an isolation that starts or ends) comes back as a value.
//!
//! Precedence, strongest first: a drain (the region is out, whatever its endpoints say); a
//! forced endpoint (it takes the forced state, and its region's state is counted again from
//! its endpoints); the quorum of vantage points (in a cluster, [`vote`]: the observations
//! of the other nodes with this node's own); the isolation guard; the probes. Overrides arrive keyed by strings, as the
//! journal keeps them, and are resolved to region and endpoint indexes once per change of
//! overrides or zones ([`ZoneOverrides::resolve`]), so that a merge compares no strings.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::rr::Name;
use serde::Serialize;
use tokio::time::Instant;

use super::Outcome;
use super::machine::{RegionMachine, Transition};
use super::monitor::Seen;
use crate::state::{Override, Overrides};
use crate::steer::{GeoPoint, HealthView, Latency, Region, RegionHealth, RegionState, Vantage};
pub use crate::zone::Quorum;
use crate::zone::{CheckKind, RegionCheck, Zone};

/// Recent good probe states kept per zone for the isolation guard.
const GOOD_STATES: usize = 64;

/// One reading of both clocks, taken once per event and passed down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic, for probe history, settle times and the isolation guard: tokio's, so that a
    /// test on a paused clock moves it.
    pub instant: Instant,
    /// Milliseconds since the Unix epoch, for override expiries (journaled, so they must mean
    /// the same after a restart) and event stamps.
    pub unix_ms: u64,
}

/// How long an override holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// When it lifts itself, in Unix ms; `None`: when an operator lifts it.
    pub expires_at_ms: Option<u64>,
}

impl Hold {
    fn of(o: &Override) -> Hold {
        Hold {
            expires_at_ms: o.expires_at_ms,
        }
    }

    /// In force at `now`, by the rule of [`Override::active`].
    pub fn active(self, now: Now) -> bool {
        self.expires_at_ms.is_none_or(|t| now.unix_ms < t)
    }
}

/// An endpoint held up or down by an operator, whatever its probes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forced {
    pub up: bool,
    pub hold: Hold,
}

/// The overrides of one zone, by region and endpoint index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneOverrides {
    /// Per region: drained, and until when.
    pub drained: Vec<Option<Hold>>,
    /// Per region, per endpoint: held up or down.
    pub forced: Vec<Vec<Option<Forced>>>,
}

impl ZoneOverrides {
    /// The overrides naming zone `label` (its origin as the journal writes it), at the indexes
    /// of `regions`. One naming a region or endpoint the zone does not have is left out; the
    /// journal keeps it, and it applies again if a reload brings the name back.
    pub fn resolve(overrides: &Overrides, label: &str, regions: &[Region]) -> ZoneOverrides {
        let mut out = ZoneOverrides {
            drained: vec![None; regions.len()],
            forced: regions
                .iter()
                .map(|r| vec![None; r.endpoints.len()])
                .collect(),
        };
        let region = |name: &str| regions.iter().position(|r| r.name == name);
        // Overrides are operator actions, few against the endpoints: a scan is enough.
        for ((zone, name), o) in &overrides.drains {
            if zone == label
                && let Some(ri) = region(name)
            {
                out.drained[ri] = Some(Hold::of(o));
            }
        }
        for ((zone, name, address), (up, o)) in &overrides.forced {
            if zone == label
                && let Some(ri) = region(name)
                && let Some(ei) = regions[ri]
                    .endpoints
                    .iter()
                    .position(|e| e.address == *address)
            {
                out.forced[ri][ei] = Some(Forced {
                    up: *up,
                    hold: Hold::of(o),
                });
            }
        }
        out
    }
}

/// The operator overrides of one zone on top of the probe views of its regions, at `now`.
///
/// A forced endpoint takes its forced state, and its region is counted again: up while
/// `min-healthy` endpoints are. A drained region is [`RegionState::Drained`] whatever its
/// endpoints say. An override past its expiry is ignored.
pub fn merge(
    probes: Vec<RegionHealth>,
    checks: &[RegionCheck],
    overrides: &ZoneOverrides,
    now: Now,
) -> HealthView {
    let regions = probes
        .into_iter()
        .zip(checks)
        .enumerate()
        .map(|(ri, (mut h, check))| {
            let forced = overrides.forced.get(ri).map_or(&[][..], Vec::as_slice);
            let mut recount = false;
            for (ei, f) in forced.iter().enumerate() {
                if let Some(f) = f.filter(|f| f.hold.active(now)) {
                    h.endpoints_up[ei] = f.up;
                    recount = true;
                }
            }
            if recount {
                let up = h.endpoints_up.iter().filter(|u| **u).count();
                h.state = if up >= check.spec.min_healthy {
                    RegionState::Up
                } else {
                    RegionState::Down
                };
            }
            if overrides
                .drained
                .get(ri)
                .copied()
                .flatten()
                .is_some_and(|d| d.active(now))
            {
                h.state = RegionState::Drained;
            }
            h
        })
        .collect();
    HealthView {
        regions,
        ..Default::default()
    }
}

/// What other vantage points see of one endpoint: `up` of `total` see it up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Votes {
    pub up: usize,
    pub total: usize,
}

/// The fresh, non-suspect observations of the other nodes, by name as they publish them:
/// (zone origin, region name, endpoint address) -> votes, and the latency each located node
/// measures. Empty when this node is alone or cannot reach the store: it then follows its
/// own probes.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerViews {
    pub quorum: Quorum,
    pub votes: BTreeMap<(String, String, IpAddr), Votes>,
    /// Where this node is (`[cluster] location`).
    pub location: Option<GeoPoint>,
    /// The other located nodes, in name order.
    pub vantages: Vec<PeerVantage>,
}

impl Default for PeerViews {
    fn default() -> Self {
        PeerViews {
            quorum: Quorum::Majority,
            votes: BTreeMap::new(),
            location: None,
            vantages: Vec::new(),
        }
    }
}

/// Another located node's latency, by (zone origin, region name) as it publishes it; zones
/// for which it is suspect are left out.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerVantage {
    pub node: String,
    pub location: GeoPoint,
    pub latency: BTreeMap<(String, String), Latency>,
}

/// The peer votes of one zone, by region and endpoint index, and the vantage points that
/// observe it.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneVotes {
    pub quorum: Quorum,
    pub votes: Vec<Vec<Votes>>,
    pub location: Option<GeoPoint>,
    /// Only nodes with an observation of one of the zone's regions: a node that does not
    /// serve the zone is no vantage point for it.
    pub vantages: Vec<Vantage>,
}

impl ZoneVotes {
    /// The votes and latencies naming zone `label` at the indexes of `regions`, decided by
    /// `quorum` (the zone's own rule) or else the cluster's; unknown names are left out.
    pub fn resolve(
        peers: &PeerViews,
        label: &str,
        regions: &[Region],
        quorum: Option<Quorum>,
    ) -> ZoneVotes {
        let mut votes: Vec<Vec<Votes>> = regions
            .iter()
            .map(|r| vec![Votes::default(); r.endpoints.len()])
            .collect();
        for ((zone, name, address), v) in &peers.votes {
            if zone == label
                && let Some(ri) = regions.iter().position(|r| &r.name == name)
                && let Some(ei) = regions[ri]
                    .endpoints
                    .iter()
                    .position(|e| e.address == *address)
            {
                votes[ri][ei] = *v;
            }
        }
        let vantages = peers
            .vantages
            .iter()
            .filter_map(|p| {
                let latency: Vec<Option<Latency>> = regions
                    .iter()
                    .map(|r| p.latency.get(&(label.to_string(), r.name.clone())).copied())
                    .collect();
                latency.iter().any(Option::is_some).then(|| Vantage {
                    node: p.node.clone(),
                    location: p.location,
                    regions: latency,
                })
            })
            .collect();
        ZoneVotes {
            quorum: quorum.unwrap_or(peers.quorum),
            votes,
            location: peers.location,
            vantages,
        }
    }
}

/// The probe views of one zone decided by the quorum of vantage points: each probed endpoint
/// that other nodes observe takes the state `quorum` gives to their votes plus this node's
/// own. This node's vote is left out when `local_suspect` (its isolation guard holds) and for
/// an endpoint it has not probed yet (`probed`, per region, per endpoint): a start state is
/// no observation, so a restarted node cannot outvote a peer with it. An endpoint no other
/// node observes keeps this node's state. A region with an endpoint changed is counted
/// again: up while `min-healthy` endpoints are.
///
/// A tie of two (one up, one down) resolves by the rule: `majority` and `any` up (down only
/// when a strict majority sees it down), `all` down, a fraction `f` up when `f` < 0.5.
pub fn vote(
    mut probes: Vec<RegionHealth>,
    checks: &[RegionCheck],
    votes: &ZoneVotes,
    local_suspect: bool,
    probed: &[Vec<bool>],
) -> Vec<RegionHealth> {
    for (((h, check), region_votes), probed) in
        probes.iter_mut().zip(checks).zip(&votes.votes).zip(probed)
    {
        if check.spec.kind == CheckKind::None {
            continue;
        }
        let mut changed = false;
        for ((up, v), &probed) in h.endpoints_up.iter_mut().zip(region_votes).zip(probed) {
            if v.total == 0 {
                continue;
            }
            let counted = probed && !local_suspect;
            let decided = votes.quorum.up(
                v.up + usize::from(*up && counted),
                v.total + usize::from(counted),
            );
            changed |= decided != *up;
            *up = decided;
        }
        if changed {
            let up = h.endpoints_up.iter().filter(|u| **u).count();
            h.state = if up >= check.spec.min_healthy {
                RegionState::Up
            } else {
                RegionState::Down
            };
        }
    }
    probes
}

/// What the monitor logs when the isolation guard takes over or lets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Every probed region (this many) failed at once: the last good state serves.
    Started { regions: usize },
    /// A probe target answers again: the probes are followed.
    Ended,
}

/// The isolation guard of one zone (`isolation-guard = true`).
///
/// Why: when every probed region fails at once, the likelier story is that this nameserver
/// lost its own connectivity, not that every region died; failing everything over on the
/// word of a blind observer would move all traffic for nothing.
/// Trip: two or more regions are probed and none of them is up. The guard then serves the
/// newest good state from before the failures began: one older than the detection window
/// (the time one cut-off moment takes to show in every region), else the oldest kept. With
/// no good state kept, the probes are followed.
/// Recovery: as soon as one probed region is up again, the probes are followed.
/// Memory: a good state (some probed region up) is kept when it differs from the last one
/// kept; at most `GOOD_STATES` (64), and those older than ten windows are forgotten (the newest
/// always stays).
#[derive(Debug, Clone)]
pub struct IsolationGuard {
    on: bool,
    /// Per region: probed (not `check = "none"`).
    probed: Vec<bool>,
    /// How long the failures of one cut-off moment take to show in every region.
    window: Duration,
    /// Good probe states with their times, newest last.
    good: VecDeque<(Instant, Vec<RegionHealth>)>,
    isolated: bool,
}

impl IsolationGuard {
    /// The guard over regions checked by `checks`; `on` as the zone asks.
    pub fn new(on: bool, checks: &[RegionCheck]) -> IsolationGuard {
        IsolationGuard {
            on,
            probed: checks
                .iter()
                .map(|c| c.spec.kind != CheckKind::None)
                .collect(),
            window: checks
                .iter()
                .map(|c| c.spec.interval * (c.spec.fall + 1) + c.spec.timeout)
                .max()
                .unwrap_or_default(),
            good: VecDeque::new(),
            isolated: false,
        }
    }

    /// The probe views to serve at `now`, given what the probes say (`fresh`), and whether
    /// the guard took over or let go.
    pub fn apply(
        &mut self,
        fresh: Vec<RegionHealth>,
        now: Instant,
    ) -> (Vec<RegionHealth>, Option<Isolation>) {
        if !self.on {
            return (fresh, None);
        }
        let probed = || {
            fresh
                .iter()
                .zip(&self.probed)
                .filter_map(|(h, &p)| p.then_some(h))
        };
        let count = probed().count();
        if count < 2 || probed().any(|h| h.state == RegionState::Up) {
            let change = self.isolated.then_some(Isolation::Ended);
            self.isolated = false;
            let up = probed().any(|h| h.state == RegionState::Up);
            if up && self.good.back().is_none_or(|(_, v)| *v != fresh) {
                self.good.push_back((now, fresh.clone()));
                let window = self.window;
                let stale = |t: Instant| now.saturating_duration_since(t) > window * 10;
                while self.good.len() > GOOD_STATES
                    || self.good.len() > 1 && self.good.front().is_some_and(|(t, _)| stale(*t))
                {
                    self.good.pop_front();
                }
            }
            return (fresh, change);
        }
        let before = self
            .good
            .iter()
            .rev()
            .find(|(t, _)| now.saturating_duration_since(*t) >= self.window)
            .or(self.good.front());
        match before {
            Some((_, good)) => {
                let change = (!self.isolated).then_some(Isolation::Started { regions: count });
                self.isolated = true;
                (good.clone(), change)
            }
            None => (fresh, None),
        }
    }

    /// Whether the guard holds: this node's probes are suspect.
    pub fn isolated(&self) -> bool {
        self.isolated
    }
}

/// What one probe result changed, for the log and the event list.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The endpoint's state flipped.
    pub endpoint: Option<Transition>,
    /// The region's state flipped.
    pub region: Option<Transition>,
}

/// One endpoint as its probes see it.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointDetail {
    pub address: IpAddr,
    /// Up by its probes (before overrides).
    pub up: bool,
    pub probes: u64,
    pub consecutive_ok: u32,
    pub consecutive_fail: u32,
    pub last_error: Option<String>,
    /// Set while this node cannot make the endpoint's probe (a fault of its own, such as
    /// EMFILE); the state above is the last one measured. Filled in by the monitor.
    pub local_error: Option<String>,
    pub rtt_ms: Option<f64>,
    pub rtt_min_ms: Option<f64>,
    pub rtt_last_ms: Option<f64>,
    pub degradation_ms: f64,
}

/// The health of one zone: a state machine per probed region, the isolation guard, and the
/// operator overrides resolved to the zone's indexes.
#[derive(Debug)]
pub struct ZoneHealth {
    origin: Name,
    /// The origin as the journal, logs and metrics name it.
    label: String,
    regions: Vec<Region>,
    checks: Vec<RegionCheck>,
    /// Per region; `None` when not probed.
    machines: Vec<Option<RegionMachine>>,
    guard: IsolationGuard,
    overrides: ZoneOverrides,
    /// What the other nodes of a cluster see; none when alone.
    votes: ZoneVotes,
    /// The zone's own quorum rule, over the cluster's.
    quorum: Option<Quorum>,
    /// Per region: when this node last saw its overrides change (a drain, a force, or
    /// either lifted by hand).
    override_changed: Vec<Option<Instant>>,
    /// How long a region stays in trouble after its overrides change: the zone's longest
    /// steered TTL and a second, the time for answers given before the change to leave
    /// resolvers' caches (answers are stamped in whole seconds, so a cache may hold one up to a
    /// second past its TTL from the change, as drain completion counts it), so that resolvers
    /// coming back for them get the trouble TTL too.
    settle: Duration,
}

impl ZoneHealth {
    /// The health of `zone` with `overrides`. A region that kept its check and endpoints
    /// keeps its machine from `old`, the zones before a reload in origin order (as a
    /// [`crate::zone::ZoneSet`] orders them).
    pub fn new(zone: &Zone, old: &[ZoneHealth], overrides: &Overrides) -> ZoneHealth {
        let previous = old
            .binary_search_by(|z| z.origin.cmp(&zone.origin))
            .ok()
            .map(|i| &old[i]);
        let machines = zone
            .regions
            .iter()
            .zip(&zone.checks)
            .map(|(r, c)| {
                if c.spec.kind == CheckKind::None {
                    return None;
                }
                let kept = previous.and_then(|p| {
                    let i = p.regions.iter().position(|o| o.name == r.name)?;
                    let same_endpoints = p.regions[i]
                        .endpoints
                        .iter()
                        .map(|e| e.address)
                        .eq(r.endpoints.iter().map(|e| e.address));
                    (p.checks[i] == *c && same_endpoints)
                        .then(|| p.machines[i].clone())
                        .flatten()
                });
                Some(kept.unwrap_or_else(|| RegionMachine::new(r.endpoints.len(), &c.spec)))
            })
            .collect();
        let label = zone.origin.to_string();
        ZoneHealth {
            overrides: ZoneOverrides::resolve(overrides, &label, &zone.regions),
            votes: ZoneVotes::resolve(&PeerViews::default(), &label, &zone.regions, zone.quorum),
            quorum: zone.quorum,
            override_changed: vec![None; zone.regions.len()],
            settle: zone.cache_hold(),
            origin: zone.origin.clone(),
            label,
            regions: zone.regions.clone(),
            checks: zone.checks.clone(),
            machines,
            guard: IsolationGuard::new(zone.isolation_guard, &zone.checks),
        }
    }

    pub fn origin(&self) -> &Name {
        &self.origin
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    pub fn checks(&self) -> &[RegionCheck] {
        &self.checks
    }

    /// Whether an operator forces an endpoint of region `region` up or down at `now`.
    pub fn forced(&self, region: usize, now: Now) -> bool {
        self.overrides
            .forced
            .get(region)
            .is_some_and(|f| f.iter().flatten().any(|f| f.hold.active(now)))
    }

    /// Takes `overrides` in place of the ones in force, at `now`.
    pub fn set_overrides(&mut self, overrides: &Overrides, now: Instant) {
        let new = ZoneOverrides::resolve(overrides, &self.label, &self.regions);
        for (ri, changed) in self.override_changed.iter_mut().enumerate() {
            if new.drained[ri] != self.overrides.drained[ri]
                || new.forced[ri] != self.overrides.forced[ri]
            {
                *changed = Some(now);
            }
        }
        self.overrides = new;
    }

    /// When the next settle under way ends, so that the monitor publishes the view then
    /// (a zone without probes has nothing else that would wake it).
    pub fn settled_at(&self, now: Now) -> Option<Instant> {
        let by_hand = self
            .override_changed
            .iter()
            .flatten()
            .map(|&t| t + self.settle);
        let holds = self.overrides.drained.iter().flatten().chain(
            self.overrides
                .forced
                .iter()
                .flatten()
                .flatten()
                .map(|f| &f.hold),
        );
        let by_expiry = holds.filter_map(|h| {
            let end_ms = h.expires_at_ms? + self.settle.as_millis() as u64;
            (end_ms > now.unix_ms)
                .then(|| now.instant + Duration::from_millis(end_ms - now.unix_ms))
        });
        by_hand.chain(by_expiry).filter(|&t| t > now.instant).min()
    }

    /// Whether region `ri`'s overrides changed (by hand or by expiring) less than the
    /// settle time ago: its names then answer with their trouble TTL, so that a resolver
    /// which caches an answer given in the change follows the next one soon, as it does
    /// around a probe flip.
    fn settling(&self, ri: usize, now: Now) -> bool {
        let recent_ms =
            |t: u64| now.unix_ms >= t && now.unix_ms - t < self.settle.as_millis() as u64;
        let expired_recently = |h: &Hold| h.expires_at_ms.is_some_and(recent_ms);
        self.override_changed[ri]
            .is_some_and(|t| now.instant.saturating_duration_since(t) < self.settle)
            || self.overrides.drained[ri]
                .as_ref()
                .is_some_and(expired_recently)
            || self.overrides.forced[ri]
                .iter()
                .flatten()
                .any(|f| expired_recently(&f.hold))
    }

    /// Takes the observations of the other nodes in place of the ones held.
    pub fn set_peers(&mut self, peers: &PeerViews) {
        self.votes = ZoneVotes::resolve(peers, &self.label, &self.regions, self.quorum);
    }

    /// Whether the isolation guard holds: this node's own probes are suspect.
    pub fn isolated(&self) -> bool {
        self.guard.isolated()
    }

    /// Records a probe of endpoint `endpoint` of region `region`, finished at `at`. `None`
    /// when the region is not probed.
    pub fn record(
        &mut self,
        region: usize,
        endpoint: usize,
        outcome: &Outcome,
        at: Instant,
    ) -> Option<Recorded> {
        let spec = &self.checks[region].spec;
        let machine = self.machines[region].as_mut()?;
        let (endpoint, flipped) = machine.record(endpoint, outcome, at, spec);
        let region = flipped.then(|| {
            let up = machine.endpoints.iter().filter(|e| e.up).count();
            Transition {
                up: machine.up,
                reason: format!(
                    "{up} of {} endpoints up, {} needed",
                    machine.endpoints.len(),
                    spec.min_healthy
                ),
            }
        });
        Some(Recorded { endpoint, region })
    }

    /// The view steering sees at `now`, and whether the isolation guard took over or let go.
    pub fn view(&mut self, now: Now) -> (HealthView, Option<Isolation>) {
        let fresh = self
            .checks
            .iter()
            .zip(&self.machines)
            .map(|(check, m)| match m {
                Some(m) => m.view(now.instant, &check.spec),
                None => RegionHealth::up(check.targets.len()),
            })
            .collect();
        let (probes, isolation) = self.guard.apply(fresh, now.instant);
        let probed: Vec<Vec<bool>> = self
            .machines
            .iter()
            .map(|m| {
                m.as_ref().map_or_else(Vec::new, |m| {
                    m.endpoints.iter().map(|e| e.probes > 0).collect()
                })
            })
            .collect();
        let probes = vote(
            probes,
            &self.checks,
            &self.votes,
            self.guard.isolated(),
            &probed,
        );
        let mut view = merge(probes, &self.checks, &self.overrides, now)
            .with_vantages(self.votes.location, self.votes.vantages.clone());
        for (ri, h) in view.regions.iter_mut().enumerate() {
            h.in_trouble |= self.settling(ri, now);
        }
        (view, isolation)
    }

    /// Per region, the endpoints as their probes see them (`None` when not probed).
    pub fn details(&self) -> Vec<Option<Vec<EndpointDetail>>> {
        self.machines
            .iter()
            .zip(&self.regions)
            .map(|(m, region)| {
                m.as_ref().map(|m| {
                    m.endpoints
                        .iter()
                        .zip(&region.endpoints)
                        .map(|(e, endpoint)| EndpointDetail {
                            address: endpoint.address,
                            up: e.up,
                            probes: e.probes,
                            consecutive_ok: e.consecutive_ok,
                            consecutive_fail: e.consecutive_fail,
                            last_error: e.last_error.clone(),
                            local_error: None,
                            rtt_ms: e.rtt.ewma_ms(),
                            rtt_min_ms: e.rtt.min_ms(),
                            rtt_last_ms: e.rtt.last_ms(),
                            degradation_ms: e.rtt.degradation_ms(),
                        })
                        .collect()
                })
            })
            .collect()
    }
}

/// The view of one round of probes (`meridian route --probe`): an endpoint is up unless its
/// probe failed at the target (a probe this host could not make counts as no probe), and a
/// probed region is up while `min-healthy` of its endpoints are.
pub fn view_of_round(zone: &Zone, round: &[Vec<Option<Seen>>]) -> HealthView {
    let mut regions = Vec::new();
    for (check, outcomes) in zone.checks.iter().zip(round) {
        let mut health = RegionHealth::up(outcomes.len());
        for (i, o) in outcomes.iter().enumerate() {
            health.endpoints_up[i] = !matches!(o, Some(Ok(Outcome::Down { .. })));
        }
        let up = health.endpoints_up.iter().filter(|u| **u).count();
        if check.spec.kind != CheckKind::None && up < check.spec.min_healthy {
            health.state = RegionState::Down;
        }
        regions.push(health);
    }
    HealthView {
        regions,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
