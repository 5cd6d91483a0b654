//! Runs every endpoint's probes and publishes what steering sees.
//!
//! Each probed endpoint has its own task, started at a random offset within its interval so
//! that probes do not fire together; a global semaphore bounds how many run at once, and a
//! slow target only delays itself. Results go to one control task that owns the state
//! machines, applies operator overrides on top, logs each state change once, and swaps a new
//! serving state in when a zone's view changes. A reload swaps zones and their health in one
//! step, carrying over the machines of regions whose checks did not change.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_proto::rr::Name;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::Outcome;
use super::machine::RegionMachine;
use super::probe::{Prober, human, install_crypto_provider};
use crate::serving::SharedState;
use crate::state::{Overrides, now_ms};
use crate::steer::{HealthView, RegionHealth, RegionState};
use crate::zone::{CheckKind, RegionCheck, Zone, ZoneSet};

/// Probes in flight at once, over all endpoints.
pub const MAX_CONCURRENT_PROBES: usize = 64;
/// State changes kept for the admin API.
const MAX_EVENTS: usize = 500;
/// Recent good probe states kept per zone for the isolation guard.
const GOOD_STATES: usize = 64;

/// What the control plane asks of the monitor.
pub enum Command {
    /// New zones: swap them in with their health, in one step. Answers when done.
    Reload(ZoneSet, oneshot::Sender<()>),
    /// The operator overrides changed. Answers once the new view serves.
    Overrides(Overrides, oneshot::Sender<()>),
}

/// A state change, as the admin API lists it.
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
    pub rtt_ms: Option<f64>,
    pub rtt_min_ms: Option<f64>,
    pub rtt_last_ms: Option<f64>,
    pub degradation_ms: f64,
}

/// Probe details of every zone, by origin, region by region in zone order (`None` when the
/// region is not probed), plus the recent state changes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Details {
    pub zones: BTreeMap<String, Vec<Option<Vec<EndpointDetail>>>>,
    pub events: VecDeque<Event>,
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

/// One probe result, addressed to its machine.
struct Report {
    generation: u64,
    zone: usize,
    region: usize,
    endpoint: usize,
    outcome: Outcome,
    at: Instant,
}

/// The machines of one zone.
struct ZoneHealth {
    origin: Name,
    label: String,
    region_names: Vec<String>,
    addresses: Vec<Vec<IpAddr>>,
    checks: Vec<RegionCheck>,
    machines: Vec<Option<RegionMachine>>,
    /// Recent probe states in which some probed region was up, newest last: while this
    /// nameserver looks cut off, the one from before the failures began is served.
    good: VecDeque<(Instant, Vec<RegionHealth>)>,
    isolated: bool,
    /// The zone asks for that guard (`isolation-guard = true`).
    guard: bool,
}

impl ZoneHealth {
    /// Machines for `zone`, reusing those of `old` whose region kept its check and endpoints.
    fn new(zone: &Zone, old: &[ZoneHealth]) -> ZoneHealth {
        let previous = old.iter().find(|z| z.origin == zone.origin);
        let machines = zone
            .regions
            .iter()
            .zip(&zone.checks)
            .map(|(r, c)| {
                if c.spec.kind == CheckKind::None {
                    return None;
                }
                let addrs: Vec<IpAddr> = r.endpoints.iter().map(|e| e.address).collect();
                let kept = previous.and_then(|p| {
                    let i = p.region_names.iter().position(|n| *n == r.name)?;
                    (p.checks[i] == *c && p.addresses[i] == addrs)
                        .then(|| p.machines[i].clone())
                        .flatten()
                });
                Some(kept.unwrap_or_else(|| RegionMachine::new(r.endpoints.len(), &c.spec)))
            })
            .collect();
        ZoneHealth {
            origin: zone.origin.clone(),
            label: zone.origin.to_string(),
            region_names: zone.regions.iter().map(|r| r.name.clone()).collect(),
            addresses: zone
                .regions
                .iter()
                .map(|r| r.endpoints.iter().map(|e| e.address).collect())
                .collect(),
            checks: zone.checks.clone(),
            machines,
            good: VecDeque::new(),
            isolated: false,
            guard: zone.isolation_guard,
        }
    }

    /// The view steering sees: probe states with the overrides on top.
    /// What the probes say of each region. With the zone's isolation guard on, when every
    /// probed region (two or more) fails at once, the likelier story is that this nameserver
    /// lost its own connectivity, not that every region died: the last good probe states are
    /// kept (and said so in the log) rather than failing everything over.
    fn probe_views(&mut self, now: Instant) -> Vec<RegionHealth> {
        let fresh: Vec<RegionHealth> = self
            .checks
            .iter()
            .zip(&self.machines)
            .map(|(check, m)| match m {
                Some(m) => m.view(now, &check.spec),
                None => RegionHealth::up(check.targets.len()),
            })
            .collect();
        let probed: Vec<&RegionHealth> = self
            .machines
            .iter()
            .zip(&fresh)
            .filter(|(m, _)| m.is_some())
            .map(|(_, h)| h)
            .collect();
        let all_down =
            self.guard && probed.len() >= 2 && probed.iter().all(|h| h.state != RegionState::Up);
        // Failures of one cut-off moment are detected over up to this long.
        let window = self
            .checks
            .iter()
            .map(|c| c.spec.interval * (c.spec.fall + 1) + c.spec.timeout)
            .max()
            .unwrap_or_default();
        if !all_down {
            if self.isolated {
                info!(zone = %self.label, "probe targets reachable again: following the probes");
                self.isolated = false;
            }
            let up = probed.iter().any(|h| h.state == RegionState::Up);
            if up && self.good.back().is_none_or(|(_, v)| *v != fresh) {
                self.good.push_back((now, fresh.clone()));
                while self.good.len() > GOOD_STATES
                    || self
                        .good
                        .front()
                        .is_some_and(|(t, _)| now.saturating_duration_since(*t) > window * 10)
                        && self.good.len() > 1
                {
                    self.good.pop_front();
                }
            }
            return fresh;
        }
        // The newest state from before the failures began: older than the detection window.
        let before = self
            .good
            .iter()
            .rev()
            .find(|(t, _)| now.saturating_duration_since(*t) >= window)
            .or(self.good.front())
            .map(|(_, v)| v.clone());
        match before {
            Some(good) => {
                if !self.isolated {
                    warn!(zone = %self.label, regions = probed.len(),
                        "every probed region failed at once: this nameserver looks cut off; keeping the last known good state");
                    self.isolated = true;
                }
                good
            }
            None => fresh,
        }
    }

    fn view(&mut self, now: Instant, overrides: &Overrides, now_ms: u64) -> HealthView {
        let probes = self.probe_views(now);
        let regions = self
            .checks
            .iter()
            .enumerate()
            .zip(probes)
            .map(|((ri, check), mut h)| {
                let name = &self.region_names[ri];
                let mut forced = false;
                for (ei, addr) in self.addresses[ri].iter().enumerate() {
                    if let Some((up, _)) = overrides.forced(&self.label, name, *addr, now_ms) {
                        h.endpoints_up[ei] = up;
                        forced = true;
                    }
                }
                if forced {
                    let up = h.endpoints_up.iter().filter(|u| **u).count();
                    h.state = if up >= check.spec.min_healthy {
                        RegionState::Up
                    } else {
                        RegionState::Down
                    };
                }
                if overrides.drained(&self.label, name, now_ms).is_some() {
                    h.state = RegionState::Drained;
                }
                h
            })
            .collect();
        HealthView { regions }
    }

    fn details(&self) -> Vec<Option<Vec<EndpointDetail>>> {
        self.machines
            .iter()
            .enumerate()
            .map(|(ri, m)| {
                m.as_ref().map(|m| {
                    m.endpoints
                        .iter()
                        .zip(&self.addresses[ri])
                        .map(|(e, &address)| EndpointDetail {
                            address,
                            up: e.up,
                            probes: e.probes,
                            consecutive_ok: e.consecutive_ok,
                            consecutive_fail: e.consecutive_fail,
                            last_error: e.last_error.clone(),
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

struct Monitor {
    state: SharedState,
    zones: Vec<ZoneHealth>,
    overrides: Overrides,
    generation: u64,
    tasks: JoinSet<()>,
    reports: mpsc::Sender<Report>,
    slots: Arc<Semaphore>,
    seeds: RandomState,
    published: HashMap<Name, HealthView>,
    details: Arc<ArcSwap<Details>>,
    events: VecDeque<Event>,
}

/// Starts the monitor on the current runtime for the zones of `state`. The start states
/// (with `overrides`) are published before this returns.
pub fn spawn(state: SharedState, overrides: &Overrides) -> MonitorHandle {
    install_crypto_provider();
    let (reports_tx, reports_rx) = mpsc::channel(1024);
    let (commands_tx, commands_rx) = mpsc::channel(16);
    let details = Arc::new(ArcSwap::from_pointee(Details::default()));
    let zones: Vec<ZoneHealth> = state
        .load()
        .zones
        .by_index()
        .into_iter()
        .map(|z| ZoneHealth::new(z, &[]))
        .collect();
    let mut monitor = Monitor {
        state,
        zones,
        overrides: overrides.clone(),
        generation: 0,
        tasks: JoinSet::new(),
        reports: reports_tx,
        slots: Arc::new(Semaphore::new(MAX_CONCURRENT_PROBES)),
        seeds: RandomState::new(),
        published: HashMap::new(),
        details: details.clone(),
        events: VecDeque::new(),
    };
    monitor.publish(Instant::now(), None);
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
            let now = now_ms();
            let expiry = self
                .overrides
                .next_expiry(now)
                .map(|t| Duration::from_millis(t - now));
            tokio::select! {
                Some(report) = reports.recv() => {
                    if report.generation == self.generation {
                        self.record(report);
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Reload(zones, done)) => {
                        self.reload(zones);
                        let _ = done.send(());
                    }
                    Some(Command::Overrides(o, done)) => {
                        self.overrides = o;
                        self.publish(Instant::now(), None);
                        let _ = done.send(());
                    }
                    None => return,
                },
                _ = tokio::time::sleep(expiry.unwrap_or(Duration::from_secs(3600))), if expiry.is_some() => {
                    info!("an operator override expired and lifted itself");
                    self.publish(Instant::now(), None);
                }
            }
        }
    }

    fn record(&mut self, report: Report) {
        let zone = &mut self.zones[report.zone];
        let spec = &zone.checks[report.region].spec;
        let region_name = &zone.region_names[report.region];
        let Some(machine) = zone.machines[report.region].as_mut() else {
            return;
        };
        let (transition, region_flipped) =
            machine.record(report.endpoint, &report.outcome, report.at, spec);
        let endpoint = zone.addresses[report.region][report.endpoint];
        let metrics = self.state.load().metrics.clone();
        match &report.outcome {
            Outcome::Up { rtt } => {
                metrics.probe(
                    &zone.label,
                    region_name,
                    &endpoint.to_string(),
                    true,
                    Some(*rtt),
                );
                debug!(zone = %zone.label, region = %region_name, endpoint = %endpoint,
                    rtt = %human(*rtt), "probe ok");
            }
            Outcome::Down { reason } => {
                metrics.probe(&zone.label, region_name, &endpoint.to_string(), false, None);
                debug!(zone = %zone.label, region = %region_name, endpoint = %endpoint,
                    reason = %reason, "probe failed");
            }
        }
        let mut events = Vec::new();
        if let Some(t) = transition {
            let (from, to) = if t.up { ("down", "up") } else { ("up", "down") };
            info!(zone = %zone.label, region = %region_name, endpoint = %endpoint,
                from, to, reason = %t.reason, "endpoint state changed");
            events.push(Event {
                at_ms: now_ms(),
                zone: zone.label.clone(),
                region: region_name.clone(),
                endpoint: Some(endpoint),
                from,
                to,
                reason: t.reason,
            });
        }
        if region_flipped {
            let (from, to) = if machine.up {
                ("down", "up")
            } else {
                ("up", "down")
            };
            let up = machine.endpoints.iter().filter(|e| e.up).count();
            let reason = format!(
                "{up} of {} endpoints up, {} needed",
                machine.endpoints.len(),
                spec.min_healthy
            );
            info!(zone = %zone.label, region = %region_name, from, to, reason = %reason,
                "region state changed");
            events.push(Event {
                at_ms: now_ms(),
                zone: zone.label.clone(),
                region: region_name.clone(),
                endpoint: None,
                from,
                to,
                reason,
            });
        }
        for e in events {
            if self.events.len() == MAX_EVENTS {
                self.events.pop_front();
            }
            self.events.push_back(e);
        }
        self.publish(report.at, None);
    }

    /// Publishes every zone whose view changed (or, with `zones`, new zones with all views).
    fn publish(&mut self, now: Instant, zones: Option<ZoneSet>) {
        let now_ms = now_ms();
        let overrides = &self.overrides;
        let views: Vec<(Name, HealthView)> = self
            .zones
            .iter_mut()
            .map(|z| (z.origin.clone(), z.view(now, overrides, now_ms)))
            .collect();
        let changed = zones.is_some()
            || views
                .iter()
                .any(|(origin, v)| self.published.get(origin) != Some(v));
        let metrics = self.state.load().metrics.clone();
        if changed {
            let health: HashMap<Name, HealthView> = views.into_iter().collect();
            match zones {
                Some(zones) => {
                    let zones = Arc::new(zones);
                    self.state
                        .rcu(|cur| cur.with_zones(zones.clone(), health.clone()));
                }
                None => {
                    self.state.rcu(|cur| cur.with_all_health(health.clone()));
                }
            }
            for z in &self.zones {
                for (ri, h) in health[&z.origin].regions.iter().enumerate() {
                    metrics.region_up(&z.label, &z.region_names[ri], h.state == RegionState::Up);
                }
            }
            self.published = health;
        }
        metrics.overrides(self.overrides.active_count(now_ms));
        self.details.store(Arc::new(Details {
            zones: self
                .zones
                .iter()
                .map(|z| (z.label.clone(), z.details()))
                .collect(),
            events: self.events.clone(),
        }));
    }

    fn reload(&mut self, zones: ZoneSet) {
        let fresh: Vec<ZoneHealth> = zones
            .by_index()
            .into_iter()
            .map(|z| ZoneHealth::new(z, &self.zones))
            .collect();
        self.zones = fresh;
        self.tasks.abort_all();
        self.tasks = JoinSet::new();
        self.generation += 1;
        self.published.clear();
        self.publish(Instant::now(), Some(zones));
        self.spawn_probes();
    }

    fn spawn_probes(&mut self) {
        let zones: Vec<Zone> = self
            .state
            .load()
            .zones
            .by_index()
            .into_iter()
            .cloned()
            .collect();
        for zone in &zones {
            for (ri, check) in zone.checks.iter().enumerate() {
                for (ei, target) in check.targets.iter().enumerate() {
                    let Some(target) = *target else { continue };
                    let prober = match Prober::new(&check.spec.kind, target, check.spec.timeout) {
                        Ok(p) => p,
                        Err(e) => {
                            warn!(zone = %zone.origin, region = %zone.regions[ri].name, error = %e,
                                "cannot probe endpoint; it stays in its start state");
                            continue;
                        }
                    };
                    let interval = check.spec.interval;
                    let offset = self.seeds.hash_one((self.generation, zone.index, ri, ei))
                        % (interval.as_nanos().max(1) as u64);
                    let task = ProbeTask {
                        generation: self.generation,
                        zone: zone.index,
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
        let mut next = tokio::time::Instant::now() + self.first;
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
            let now = tokio::time::Instant::now();
            if next < now {
                next = now;
            }
        }
    }
}

/// One probe of every probed endpoint of `zone`, at once: what `meridian route --probe` shows.
/// Returns per region, per endpoint, the outcome (`None` when not probed).
pub async fn probe_once(zone: &Zone) -> Vec<Vec<Option<Outcome>>> {
    install_crypto_provider();
    let mut tasks = JoinSet::new();
    for (ri, check) in zone.checks.iter().enumerate() {
        for (ei, target) in check.targets.iter().enumerate() {
            let Some(target) = *target else { continue };
            match Prober::new(&check.spec.kind, target, check.spec.timeout) {
                Ok(prober) => {
                    tasks.spawn(async move { (ri, ei, prober.probe().await) });
                }
                Err(e) => {
                    let reason = e.to_string();
                    tasks.spawn(async move { (ri, ei, Outcome::Down { reason }) });
                }
            }
        }
    }
    let mut out: Vec<Vec<Option<Outcome>>> = zone
        .regions
        .iter()
        .map(|r| vec![None; r.endpoints.len()])
        .collect();
    while let Some(Ok((ri, ei, outcome))) = tasks.join_next().await {
        out[ri][ei] = Some(outcome);
    }
    out
}

/// The view of one round of probes: an endpoint is up if its probe passed.
pub fn view_of_round(zone: &Zone, round: &[Vec<Option<Outcome>>]) -> HealthView {
    let mut regions = Vec::new();
    for (check, outcomes) in zone.checks.iter().zip(round) {
        let mut health = RegionHealth::up(outcomes.len());
        for (i, o) in outcomes.iter().enumerate() {
            health.endpoints_up[i] = !matches!(o, Some(Outcome::Down { .. }));
        }
        let up = health.endpoints_up.iter().filter(|u| **u).count();
        if check.spec.kind != CheckKind::None && up < check.spec.min_healthy {
            health.state = RegionState::Down;
        }
        regions.push(health);
    }
    HealthView { regions }
}
