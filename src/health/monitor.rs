//! Runs every endpoint's probes on a runtime of its own and publishes what steering sees.
//!
//! Each probed endpoint has its own task, started at a random offset within its interval so
//! that probes do not fire together; a global semaphore bounds how many run at once, and a
//! slow target only delays itself. Results go to one control task that owns the state
//! machines, logs each state change once, and swaps a new serving state in when a region's
//! view changes.

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::Name;
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info, warn};

use super::machine::RegionMachine;
use super::probe::{Prober, human, install_crypto_provider};
use super::{CheckKind, Outcome, RegionCheck};
use crate::serving::SharedState;
use crate::steer::{HealthView, RegionHealth};
use crate::zone::Zone;

/// Probes in flight at once, over all endpoints.
pub const MAX_CONCURRENT_PROBES: usize = 64;

/// One probe result, addressed to its machine.
struct Report {
    zone: usize,
    region: usize,
    endpoint: usize,
    outcome: Outcome,
    at: Instant,
}

/// The machines of one zone, with what is needed to name things in logs.
struct ZoneHealth {
    origin: Name,
    regions: Vec<(String, Option<RegionMachine>)>,
    checks: Vec<RegionCheck>,
    addresses: Vec<Vec<SocketAddr>>,
    /// The view last swapped in: a new one is published only when it differs, and time
    /// alone can change it (trouble ends a settle time after a change).
    published: HealthView,
}

/// Starts probing every zone of the current state on a new thread. The thread runs until the
/// process ends. Returns once the first view (start states) is published.
pub fn start(state: SharedState) -> std::io::Result<()> {
    install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("meridian-probes")
        .enable_all()
        .build()?;
    let zones: Vec<Zone> = state.load().zones.zones().cloned().collect();
    let mut health: Vec<ZoneHealth> = zones.iter().map(zone_health).collect();
    publish_all(&state, &mut health, Instant::now());
    std::thread::Builder::new()
        .name("meridian-probes".into())
        .spawn(move || runtime.block_on(run(state, zones, health)))?;
    Ok(())
}

fn zone_health(zone: &Zone) -> ZoneHealth {
    ZoneHealth {
        origin: zone.origin.clone(),
        regions: zone
            .regions
            .iter()
            .zip(&zone.checks)
            .map(|(r, c)| {
                let machine = (c.spec.kind != CheckKind::None)
                    .then(|| RegionMachine::new(r.endpoints.len(), &c.spec));
                (r.name.clone(), machine)
            })
            .collect(),
        checks: zone.checks.clone(),
        addresses: zone
            .regions
            .iter()
            .map(|r| {
                r.endpoints
                    .iter()
                    .map(|e| SocketAddr::new(e.address, 0))
                    .collect()
            })
            .collect(),
        published: HealthView::default(),
    }
}

async fn run(state: SharedState, zones: Vec<Zone>, mut health: Vec<ZoneHealth>) {
    let (tx, mut rx) = mpsc::channel::<Report>(1024);
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_PROBES));
    let seeds = RandomState::new();
    for (zi, zone) in zones.iter().enumerate() {
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
                let offset =
                    seeds.hash_one((zi, ri, ei)) % check.spec.interval.as_nanos().max(1) as u64;
                let task = ProbeTask {
                    zone: zi,
                    region: ri,
                    endpoint: ei,
                    prober,
                    interval: check.spec.interval,
                    first: Duration::from_nanos(offset),
                };
                tokio::spawn(task.run(tx.clone(), slots.clone()));
            }
        }
    }
    drop(tx);
    while let Some(report) = rx.recv().await {
        let zone = &mut health[report.zone];
        let spec = &zone.checks[report.region].spec;
        let (region_name, machine) = &mut zone.regions[report.region];
        let Some(machine) = machine.as_mut() else {
            continue;
        };
        let (transition, region_flipped) =
            machine.record(report.endpoint, &report.outcome, report.at, spec);
        let endpoint = zone.addresses[report.region][report.endpoint].ip();
        match &report.outcome {
            Outcome::Up { rtt } => debug!(zone = %zone.origin, region = %region_name,
                endpoint = %endpoint, rtt = %human(*rtt), "probe ok"),
            Outcome::Down { reason } => debug!(zone = %zone.origin, region = %region_name,
                endpoint = %endpoint, reason = %reason, "probe failed"),
        }
        if let Some(t) = transition {
            let (from, to) = if t.up { ("down", "up") } else { ("up", "down") };
            info!(zone = %zone.origin, region = %region_name, endpoint = %endpoint,
                from, to, reason = %t.reason, "endpoint state changed");
        }
        if region_flipped {
            let (from, to) = if machine.up {
                ("down", "up")
            } else {
                ("up", "down")
            };
            let up = machine.endpoints.iter().filter(|e| e.up).count();
            info!(zone = %zone.origin, region = %region_name, from, to,
                endpoints_up = up, min_healthy = spec.min_healthy, "region state changed");
        }
        publish(&state, zone, report.at);
    }
}

/// Publishes every zone's view.
fn publish_all(state: &SharedState, health: &mut [ZoneHealth], now: Instant) {
    for zone in health {
        publish(state, zone, now);
    }
}

/// Swaps in a serving state whose view of `zone` is the machines' current one, if that
/// differs from the view last published.
fn publish(state: &SharedState, zone: &mut ZoneHealth, now: Instant) {
    let view = HealthView {
        regions: zone
            .regions
            .iter()
            .zip(&zone.checks)
            .map(|((_, machine), check)| match machine {
                Some(m) => m.view(now, &check.spec),
                None => RegionHealth::up(check.targets.len()),
            })
            .collect(),
    };
    if view != zone.published {
        state.rcu(|current| current.with_health(&zone.origin, view.clone()));
        zone.published = view;
    }
}

struct ProbeTask {
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
    let mut tasks = tokio::task::JoinSet::new();
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
            health.state = crate::steer::RegionState::Down;
        }
        regions.push(health);
    }
    HealthView { regions }
}
