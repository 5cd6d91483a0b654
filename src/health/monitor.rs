//! Runs every endpoint's probes and publishes what steering sees.
//!
//! Each probed endpoint has its own task, started at a random offset within its interval so
//! that probes do not fire together; a global semaphore bounds how many run at once, and a
//! slow target only delays itself. Results go to one control task, the only writer of health:
//! it owns each zone's [`ZoneHealth`] (state machines, isolation guard and resolved overrides,
//! merged purely in [`super::view`]), reads the clocks once per event and passes them down,
//! logs each state change once, and swaps a new serving state in when a zone's view changes.
//! A reload swaps zones and their health in one step, carrying over the machines of regions
//! whose checks did not change. A probe this node could not make ([`LocalFault`]: out of
//! descriptors, say) never reaches a machine: the endpoint keeps its state, and the node says
//! what is wrong (a warning when the first such fault begins, a metric, the endpoint's
//! detail) until a probe is made again.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::Outcome;
use super::probe::{LocalFault, Prober, failure_kind, human, install_crypto_provider};
use super::view::{EndpointDetail, Isolation, Now, PeerViews, ZoneHealth};
use crate::metrics::{Metrics, RegionStateLabel};
use crate::serving::SharedSnapshot;
use crate::state::{EventLog, Overrides, now_ms};
use crate::steer::{self, Basis, Family, HealthView, RegionHealth, RegionState};
use crate::zone::{Zone, ZoneSet};

/// Probes in flight at once, over all endpoints.
pub const MAX_CONCURRENT_PROBES: usize = 64;
/// What the control plane asks of the monitor.
pub enum Command {
    /// New zones: swap them in with their health, in one step. Answers when done.
    Reload(ZoneSet, oneshot::Sender<()>),
    /// The operator overrides changed. Answers once the new view serves.
    Overrides(Overrides, oneshot::Sender<()>),
    /// What the other nodes of a cluster observe changed. Answers once the new view serves.
    Peers(PeerViews, oneshot::Sender<()>),
}

/// A state change, as the admin API lists it (and `events.jsonl` keeps it).
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at_ms: u64,
    pub zone: String,
    pub region: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<IpAddr>,
    pub from: &'static str,
    pub to: &'static str,
    pub reason: String,
}

/// An [`Event`] as read back from `events.jsonl`.
#[derive(Deserialize)]
struct KeptEvent {
    at_ms: u64,
    zone: String,
    region: String,
    #[serde(default)]
    endpoint: Option<IpAddr>,
    from: String,
    to: String,
    reason: String,
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Event, D::Error> {
        Event::try_from(KeptEvent::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<KeptEvent> for Event {
    type Error = String;

    fn try_from(e: KeptEvent) -> Result<Event, String> {
        let side = |s: &str| match s {
            "up" => Ok("up"),
            "down" => Ok("down"),
            other => Err(format!("unknown state {other:?} (up or down)")),
        };
        Ok(Event {
            from: side(&e.from)?,
            to: side(&e.to)?,
            at_ms: e.at_ms,
            zone: e.zone,
            region: e.region,
            endpoint: e.endpoint,
            reason: e.reason,
        })
    }
}

/// Most state changes kept, in memory and in `events.jsonl`.
pub const MAX_EVENTS: usize = 500;

/// Probe details of every zone, by origin, region by region in zone order (`None` when the
/// region is not probed), plus the recent state changes. Shared in parts, so that a probe
/// report renders only its own zone again.
#[derive(Debug, Clone, Default)]
pub struct Details {
    pub zones: BTreeMap<String, Arc<Vec<Option<Vec<EndpointDetail>>>>>,
    /// Oldest first, at most `MAX_EVENTS` (500).
    pub events: Arc<VecDeque<Event>>,
    /// Zones (by origin) whose isolation guard holds: this node's probes of them are suspect.
    pub suspect: Arc<BTreeSet<String>>,
}

/// The monitor as the rest of the control plane holds it.
#[derive(Clone)]
pub struct MonitorHandle {
    commands: mpsc::Sender<Command>,
    pub details: Arc<ArcSwap<Details>>,
}

impl MonitorHandle {
    /// Swaps in `zones` with their health; returns when the new state serves.
    pub async fn reload(&self, zones: ZoneSet) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Reload(zones, tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Takes what the other nodes observe; returns when DNS answers follow it.
    pub async fn peers(&self, peers: PeerViews) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Peers(peers, tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Applies `overrides`; returns when DNS answers follow them.
    pub async fn overrides(&self, overrides: Overrides) {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Overrides(overrides, tx))
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}

/// The state an operator tells apart (`meridian_region_state`): a drain, then an endpoint
/// forced by an operator, name planned work whatever the probes say; a region up but past
/// its degradation limit is degraded.
fn state_label(h: &RegionHealth, forced: bool) -> RegionStateLabel {
    match h.state {
        RegionState::Drained => RegionStateLabel::Drained,
        _ if forced => RegionStateLabel::Forced,
        RegionState::Down => RegionStateLabel::Down,
        RegionState::Up if h.over_limit => RegionStateLabel::Degraded,
        RegionState::Up => RegionStateLabel::Up,
    }
}

/// One probe result, addressed to its machine.
struct Report {
    generation: u64,
    zone: usize,
    region: usize,
    endpoint: usize,
    outcome: Result<Outcome, LocalFault>,
    /// When the probe finished.
    at: Instant,
}

/// Both clocks, read once per event the monitor handles.
fn read_clocks() -> Now {
    Now {
        instant: Instant::now(),
        unix_ms: now_ms(),
    }
}

struct Monitor {
    /// Where state changes are kept across restarts; `None` when it could not be opened.
    event_log: Option<EventLog>,
    state: SharedSnapshot,
    metrics: Arc<Metrics>,
    /// By zone index: the zones of the serving state, in their order.
    zones: Vec<ZoneHealth>,
    /// As the journal keeps them, by name: each zone holds them resolved to its indexes, and
    /// a reload resolves them again for the new zones.
    overrides: Overrides,
    /// What the other nodes of a cluster observe; empty when alone.
    peers: PeerViews,
    generation: u64,
    tasks: JoinSet<()>,
    reports: mpsc::Sender<Report>,
    slots: Arc<Semaphore>,
    seeds: RandomState,
    /// The views serving, by zone index; empty until the first publish after a reload.
    published: Vec<HealthView>,
    /// (zone, steered name) answering their fallback, as last told.
    falling_back: BTreeSet<(String, String)>,
    details: Arc<ArcSwap<Details>>,
    /// Endpoints whose last probe this node could not make, by (zone, region, endpoint)
    /// index of the current generation.
    local: HashMap<(usize, usize, usize), LocalFault>,
}

/// Starts the monitor on the current runtime for the zones of `state`. The start states
/// (with `overrides`) are published before this returns.
pub fn spawn(
    state: SharedSnapshot,
    metrics: Arc<Metrics>,
    overrides: &Overrides,
    kept: Option<(EventLog, Vec<Event>)>,
) -> MonitorHandle {
    install_crypto_provider();
    let (reports_tx, reports_rx) = mpsc::channel(1024);
    let (commands_tx, commands_rx) = mpsc::channel(16);
    let (event_log, earlier) = match kept {
        Some((log, earlier)) => (Some(log), earlier),
        None => (None, Vec::new()),
    };
    let details = Arc::new(ArcSwap::from_pointee(Details {
        events: Arc::new(earlier.into()),
        ..Details::default()
    }));
    let zones: Vec<ZoneHealth> = state
        .load()
        .zones
        .zones()
        .map(|z| ZoneHealth::new(z, &[], overrides))
        .collect();
    let mut monitor = Monitor {
        state,
        metrics,
        zones,
        overrides: overrides.clone(),
        peers: PeerViews::default(),
        generation: 0,
        tasks: JoinSet::new(),
        reports: reports_tx,
        slots: Arc::new(Semaphore::new(MAX_CONCURRENT_PROBES)),
        seeds: RandomState::new(),
        published: Vec::new(),
        falling_back: BTreeSet::new(),
        details: details.clone(),
        local: HashMap::new(),
        event_log,
    };
    monitor.publish(read_clocks(), None);
    monitor.render_details();
    monitor.spawn_probes();
    tokio::spawn(monitor.run(reports_rx, commands_rx));
    MonitorHandle {
        commands: commands_tx,
        details,
    }
}

impl Monitor {
    async fn run(
        mut self,
        mut reports: mpsc::Receiver<Report>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        loop {
            // Expiries are wall-clock times (journaled); one reading of both clocks puts the
            // next one on the monotonic clock the timer runs on.
            let now = read_clocks();
            let expiry = self
                .overrides
                .next_expiry(now.unix_ms)
                .map(|t| now.instant + Duration::from_millis(t - now.unix_ms));
            // A region whose overrides changed answers with its trouble TTL until it settles.
            let settled = self.zones.iter().filter_map(|z| z.settled_at(now)).min();
            tokio::select! {
                Some(report) = reports.recv() => {
                    if report.generation == self.generation {
                        self.record(report, read_clocks());
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Reload(zones, done)) => {
                        self.reload(zones, read_clocks());
                        let _ = done.send(());
                    }
                    Some(Command::Overrides(overrides, done)) => {
                        let now = read_clocks().instant;
                        for z in &mut self.zones {
                            z.set_overrides(&overrides, now);
                        }
                        self.overrides = overrides;
                        self.publish(read_clocks(), None);
                        let _ = done.send(());
                    }
                    Some(Command::Peers(peers, done)) => {
                        for z in &mut self.zones {
                            z.set_peers(&peers);
                        }
                        self.peers = peers;
                        self.publish(read_clocks(), None);
                        let _ = done.send(());
                    }
                    None => return,
                },
                _ = tokio::time::sleep_until(expiry.unwrap_or(now.instant)), if expiry.is_some() => {
                    info!("an operator override expired and lifted itself");
                    self.publish(read_clocks(), None);
                }
                _ = tokio::time::sleep_until(settled.unwrap_or(now.instant)), if settled.is_some() => {
                    self.publish(read_clocks(), None);
                }
            }
        }
    }

    fn record(&mut self, report: Report, now: Now) {
        let key = (report.zone, report.region, report.endpoint);
        let outcome = match report.outcome {
            Ok(outcome) => outcome,
            Err(fault) => return self.record_local(key, fault),
        };
        if self.local.remove(&key).is_some() && self.local.is_empty() {
            info!("probes are made again on this node: following them");
        }
        let zone = &mut self.zones[report.zone];
        let Some(recorded) = zone.record(report.region, report.endpoint, &outcome, report.at)
        else {
            return;
        };
        let label = zone.label();
        let region_name = &zone.regions()[report.region].name;
        let endpoint = zone.regions()[report.region].endpoints[report.endpoint].address;
        let metrics = self.metrics.clone();
        match &outcome {
            Outcome::Up { rtt } => {
                metrics.probe(label, region_name, &endpoint.to_string(), Ok(*rtt));
                debug!(zone = %label, region = %region_name, endpoint = %endpoint,
                    rtt = %human(*rtt), "probe ok");
            }
            Outcome::Down { reason } => {
                metrics.probe(
                    label,
                    region_name,
                    &endpoint.to_string(),
                    Err(failure_kind(reason)),
                );
                debug!(zone = %label, region = %region_name, endpoint = %endpoint,
                    reason = %reason, "probe failed");
            }
        }
        let mut events = Vec::new();
        if let Some(t) = recorded.endpoint {
            let (from, to) = if t.up { ("down", "up") } else { ("up", "down") };
            info!(zone = %label, region = %region_name, endpoint = %endpoint,
                from, to, reason = %t.reason, "endpoint state changed");
            events.push(Event {
                at_ms: now.unix_ms,
                zone: label.to_string(),
                region: region_name.clone(),
                endpoint: Some(endpoint),
                from,
                to,
                reason: t.reason,
            });
        }
        if let Some(t) = recorded.region {
            let (from, to) = if t.up { ("down", "up") } else { ("up", "down") };
            info!(zone = %label, region = %region_name, from, to, reason = %t.reason,
                "region state changed");
            events.push(Event {
                at_ms: now.unix_ms,
                zone: label.to_string(),
                region: region_name.clone(),
                endpoint: None,
                from,
                to,
                reason: t.reason,
            });
        }
        let mut details = Details::clone(&self.details.load());
        details.zones.insert(
            label.to_string(),
            details_of(zone, report.zone, &self.local),
        );
        if !events.is_empty() {
            let log = Arc::make_mut(&mut details.events);
            for e in &events {
                if log.len() == MAX_EVENTS {
                    log.pop_front();
                }
                log.push_back(e.clone());
            }
            if let Some(file) = &mut self.event_log
                && let Err(e) = file.append(&events, log.make_contiguous())
            {
                warn!(error = %e, "state change not kept for the next start");
            }
        }
        self.details.store(Arc::new(details));
        self.publish(now, None);
    }

    /// A probe this node could not make: the endpoint's machine is left alone; the fault is
    /// counted, shown in the endpoint's detail, and logged when it is the first one.
    fn record_local(&mut self, key: (usize, usize, usize), fault: LocalFault) {
        let (zi, ri, ei) = key;
        let zone = &self.zones[zi];
        let region = &zone.regions()[ri];
        let endpoint = region.endpoints[ei].address;
        self.metrics.probe_local_failure(fault.errno);
        debug!(zone = %zone.label(), region = %region.name, endpoint = %endpoint,
            reason = %fault, "probe not made");
        if self.local.is_empty() {
            warn!(zone = %zone.label(), region = %region.name, endpoint = %endpoint,
                errno = fault.errno, error = %fault.message,
                "probes are failing on this node, not at their targets: every target keeps its last state until probes can be made again");
        }
        if self.local.get(&key) == Some(&fault) {
            return;
        }
        self.local.insert(key, fault);
        let zone = &self.zones[zi];
        let mut details = Details::clone(&self.details.load());
        details
            .zones
            .insert(zone.label().to_string(), details_of(zone, zi, &self.local));
        self.details.store(Arc::new(details));
    }

    /// Publishes the views of every zone when one changed; with `zones`, swaps those zones in
    /// with their views, changed or not.
    fn publish(&mut self, now: Now, zones: Option<Arc<ZoneSet>>) {
        let views: Vec<HealthView> = self
            .zones
            .iter_mut()
            .map(|z| {
                let (view, isolation) = z.view(now);
                match isolation {
                    Some(Isolation::Started { regions }) => warn!(zone = %z.label(), regions,
                        "every probed region failed at once: this nameserver looks cut off; keeping the last known good state"),
                    Some(Isolation::Ended) => info!(zone = %z.label(),
                        "probe targets reachable again: following the probes"),
                    None => {}
                }
                view
            })
            .collect();
        let suspect: BTreeSet<String> = self
            .zones
            .iter()
            .filter(|z| z.isolated())
            .map(|z| z.label().to_string())
            .collect();
        if *self.details.load().suspect != suspect {
            let mut details = Details::clone(&self.details.load());
            details.suspect = Arc::new(suspect);
            self.details.store(Arc::new(details));
        }
        let metrics = self.metrics.clone();
        if zones.is_some() || views != self.published {
            for (zi, (z, view)) in self.zones.iter().zip(&views).enumerate() {
                for (ri, h) in view.regions.iter().enumerate() {
                    let label = state_label(h, z.forced(ri, now));
                    metrics.region_state(z.label(), &z.regions()[ri].name, label);
                    let was = self.published.get(zi).and_then(|p| p.region(ri));
                    let up = h.state == RegionState::Up;
                    if was.map(|p| p.state == RegionState::Up) != Some(up) {
                        metrics.region_up(z.label(), &z.regions()[ri].name, up);
                    }
                    let drained = h.state == RegionState::Drained;
                    if was.is_some_and(|p| p.state == RegionState::Drained) != drained {
                        metrics.region_drained(z.label(), &z.regions()[ri].name, drained);
                    }
                }
            }
            let health = &views;
            match zones {
                Some(zones) => {
                    self.state
                        .rcu(|cur| cur.with_zones(zones.clone(), health.clone(), &metrics));
                }
                None => {
                    let shared = Arc::new(health.clone());
                    self.state.rcu(|cur| cur.with_all_health(shared.clone()));
                }
            }
            self.fallbacks(&views);
            self.published = views;
        }
        metrics.overrides(self.overrides.active_count(now.unix_ms));
    }

    /// Tells, once per change, which steered names answer their fallback: for A or AAAA no
    /// region can answer (each is down, drained, or has every endpoint of that family
    /// down), so clients get the fallback addresses (or every endpoint): an outage of the
    /// name whatever its regions say alone.
    fn fallbacks(&mut self, views: &[HealthView]) {
        let zones = self.state.load().zones.clone();
        let mut now_falling = BTreeMap::new();
        for ((z, view), zone) in self.zones.iter().zip(views).zip(zones.zones()) {
            for s in &zone.steered {
                let falling: Vec<&str> = [(Family::V4, "A"), (Family::V6, "AAAA")]
                    .into_iter()
                    .filter(|&(family, _)| {
                        let any = steer::decide(None, &s.config, &zone.regions, view, family);
                        any.basis == Basis::AllDown
                    })
                    .map(|(_, qtype)| qtype)
                    .collect();
                let key = (z.label().to_string(), s.name.to_string());
                self.metrics
                    .fallback_answering(&key.0, &key.1, !falling.is_empty());
                if !falling.is_empty() {
                    now_falling.insert(key, falling.join(" and "));
                }
            }
        }
        for ((zone, name), qtypes) in &now_falling {
            if !self.falling_back.contains(&(zone.clone(), name.clone())) {
                warn!(zone = %zone, name = %name, qtypes = %qtypes,
                    "no region of the name can answer: answering its fallback");
            }
        }
        for (zone, name) in &self.falling_back {
            if !now_falling.contains_key(&(zone.clone(), name.clone())) {
                info!(zone = %zone, name = %name,
                    "a region of the name answers again: steering, no longer answering its fallback");
            }
        }
        let now_falling = now_falling.into_keys().collect();
        self.falling_back = now_falling;
    }

    /// The probe details of every zone, rendered afresh; the events carry over.
    fn render_details(&self) {
        let events = self.details.load().events.clone();
        let suspect = self.details.load().suspect.clone();
        self.details.store(Arc::new(Details {
            suspect,
            zones: self
                .zones
                .iter()
                .enumerate()
                .map(|(zi, z)| (z.label().to_string(), details_of(z, zi, &self.local)))
                .collect(),
            events,
        }));
    }

    /// Swaps in `zones`: each region that kept its check and endpoints keeps its machine, and
    /// the probes start again for the new generation.
    fn reload(&mut self, zones: ZoneSet, now: Now) {
        let fresh: Vec<ZoneHealth> = zones
            .zones()
            .map(|z| {
                let mut health = ZoneHealth::new(z, &self.zones, &self.overrides);
                health.set_peers(&self.peers);
                health
            })
            .collect();
        self.zones = fresh;
        self.tasks.abort_all();
        self.tasks = JoinSet::new();
        self.generation += 1;
        // Indexes of the old zones; the new probes will tell again.
        self.local.clear();
        self.published.clear();
        self.publish(now, Some(Arc::new(zones)));
        self.render_details();
        self.spawn_probes();
    }

    /// A probe task for every probed endpoint of the monitor's zones.
    fn spawn_probes(&mut self) {
        for (zi, zone) in self.zones.iter().enumerate() {
            for (ri, check) in zone.checks().iter().enumerate() {
                for (ei, target) in check.targets.iter().enumerate() {
                    let Some(target) = *target else { continue };
                    let prober = match Prober::new(&check.spec.kind, target, check.spec.timeout) {
                        Ok(p) => p,
                        Err(e) => {
                            warn!(zone = %zone.origin(), region = %zone.regions()[ri].name, error = %e,
                                "cannot probe endpoint; it stays in its start state");
                            continue;
                        }
                    };
                    let interval = check.spec.interval;
                    let offset = self.seeds.hash_one((self.generation, zi, ri, ei))
                        % (interval.as_nanos().max(1) as u64);
                    let task = ProbeTask {
                        generation: self.generation,
                        zone: zi,
                        region: ri,
                        endpoint: ei,
                        prober,
                        interval,
                        first: Duration::from_nanos(offset),
                    };
                    self.tasks
                        .spawn(task.run(self.reports.clone(), self.slots.clone()));
                }
            }
        }
    }
}

/// The probe details of zone `zone` (index `zi`), with the faults of this node in `local`.
fn details_of(
    zone: &ZoneHealth,
    zi: usize,
    local: &HashMap<(usize, usize, usize), LocalFault>,
) -> Arc<Vec<Option<Vec<EndpointDetail>>>> {
    let mut details = zone.details();
    for (&(z, ri, ei), fault) in local {
        if z != zi {
            continue;
        }
        if let Some(e) = details
            .get_mut(ri)
            .and_then(Option::as_mut)
            .and_then(|r| r.get_mut(ei))
        {
            e.local_error = Some(format!("{fault}; the endpoint keeps its last state"));
        }
    }
    Arc::new(details)
}

struct ProbeTask {
    generation: u64,
    zone: usize,
    region: usize,
    endpoint: usize,
    prober: Prober,
    interval: Duration,
    first: Duration,
}

impl ProbeTask {
    async fn run(self, tx: mpsc::Sender<Report>, slots: Arc<Semaphore>) {
        let mut next = Instant::now() + self.first;
        loop {
            tokio::time::sleep_until(next).await;
            next += self.interval;
            let outcome = {
                let _permit = slots
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                self.prober.probe().await
            };
            let report = Report {
                generation: self.generation,
                zone: self.zone,
                region: self.region,
                endpoint: self.endpoint,
                outcome,
                at: Instant::now(),
            };
            if tx.send(report).await.is_err() {
                return;
            }
            // A probe that overran its interval starts the next one at once, not a burst.
            let now = Instant::now();
            if next < now {
                next = now;
            }
        }
    }
}

/// One round of `meridian route --probe`: per region, per endpoint, what the probe saw
/// (`None` when not probed): the target's [`Outcome`], or why this node could not probe it
/// (a [`LocalFault`], or a prober it cannot build: its CA file went bad since the load).
pub type Round = Vec<Vec<Option<Seen>>>;

/// What one probe of a round saw: the target's outcome, or why this node could not probe.
pub type Seen = Result<Outcome, String>;

/// One probe of every probed endpoint of `zone`, at once: what `meridian route --probe` shows.
/// One look from one host right now, which no state machine keeps. A probe this node could
/// not make says nothing of the target and is not held against it, as on the serving path
/// (where such an endpoint keeps its state).
pub async fn probe_once(zone: &Zone) -> Round {
    install_crypto_provider();
    let mut tasks = JoinSet::new();
    for (ri, check) in zone.checks.iter().enumerate() {
        for (ei, target) in check.targets.iter().enumerate() {
            let Some(target) = *target else { continue };
            match Prober::new(&check.spec.kind, target, check.spec.timeout) {
                Ok(prober) => {
                    tasks.spawn(async move {
                        let seen = prober.probe().await.map_err(|fault| fault.to_string());
                        (ri, ei, seen)
                    });
                }
                Err(e) => {
                    let why = format!("this node cannot probe: {e}");
                    tasks.spawn(async move { (ri, ei, Err(why)) });
                }
            }
        }
    }
    let mut out: Round = zone
        .regions
        .iter()
        .map(|r| vec![None; r.endpoints.len()])
        .collect();
    while let Some(Ok((ri, ei, outcome))) = tasks.join_next().await {
        out[ri][ei] = Some(outcome);
    }
    out
}

#[cfg(test)]
mod tests;
