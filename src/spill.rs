//! CONTROL: spillover's control loop. Load reports (`POST /api/v1/zones/{zone}/regions/
//! {region}/load`, or scraped from a region's `load-from` Prometheus endpoint at the start of
//! each period) land in [`Spill`]; once a period [`run`] feeds the fresh ones with each
//! region's capacity to the pure controller ([`crate::steer::spill::control`]) and swaps the
//! shed fractions into the serving snapshot, which the query path reads without a lock.
//!
//! The rule: a load report older than `stale-ms` counts as no report, so a region whose feed
//! stops is treated as not overloaded (its shed fraction decays), and that is logged once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::metrics::{Metrics, SpillGauges};
use crate::serving::{SharedSnapshot, Snapshot};
use crate::steer::spill::{self, Params, Reading, RegionSpill};

pub const DEFAULT_PERIOD_MS: u64 = 5_000;
pub const DEFAULT_STALE_MS: u64 = 30_000;
pub const DEFAULT_MAX_STEP: f64 = 0.5;
pub const DEFAULT_DECAY_STEP: f64 = 0.05;
pub const DEFAULT_LOW_WATER: f64 = 0.9;

/// `[spill]` of `meridian.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SpillConfig {
    /// Milliseconds between two runs of the controller.
    pub period_ms: u64,
    /// A load report older than this counts as none.
    pub stale_ms: u64,
    /// Largest raise of a region's shed fraction in one period.
    pub max_step: f64,
    /// Fall of a shed fraction in one period once the load is below `low-water`.
    pub decay_step: f64,
    /// Share of capacity below which a shed fraction decays.
    pub low_water: f64,
}

impl Default for SpillConfig {
    fn default() -> Self {
        SpillConfig {
            period_ms: DEFAULT_PERIOD_MS,
            stale_ms: DEFAULT_STALE_MS,
            max_step: DEFAULT_MAX_STEP,
            decay_step: DEFAULT_DECAY_STEP,
            low_water: DEFAULT_LOW_WATER,
        }
    }
}

impl SpillConfig {
    /// Every problem, as (key, message).
    pub fn check(&self) -> Result<(), Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        if !(100..=600_000).contains(&self.period_ms) {
            problems.push((
                "period-ms",
                format!(
                    "period-ms {} is not in 100..=600000 (milliseconds between controller runs)",
                    self.period_ms
                ),
            ));
        }
        if self.stale_ms < self.period_ms {
            problems.push((
                "stale-ms",
                format!(
                    "stale-ms {} is below period-ms {}: every report would expire before the \
                     controller sees it",
                    self.stale_ms, self.period_ms
                ),
            ));
        }
        let share = |key: &'static str, v: f64, problems: &mut Vec<_>| {
            if !(v > 0.0 && v <= 1.0) {
                problems.push((key, format!("{key} {v} is not in (0, 1]")));
            }
        };
        share("max-step", self.max_step, &mut problems);
        share("decay-step", self.decay_step, &mut problems);
        share("low-water", self.low_water, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn params(&self) -> Params {
        Params {
            max_step: self.max_step,
            decay_step: self.decay_step,
            low_water: self.low_water,
        }
    }
}

/// (zone origin with its trailing dot, region name).
type Key = (String, String);

#[derive(Debug, Clone)]
struct Report {
    load: f64,
    at: Instant,
    /// The same moment in Unix ms: what nodes compare.
    at_ms: u64,
    /// The node the report was made to, when another one.
    from: Option<String>,
}

/// A load report as a node's cluster record carries it: the report made to that node, so
/// that every node runs the controller on the same loads.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SharedLoad {
    pub load: f64,
    /// When it was made, Unix ms.
    pub at_ms: u64,
}

/// zone origin -> region -> report.
pub type SharedLoads = BTreeMap<String, BTreeMap<String, SharedLoad>>;

/// What the loop remembers of a region between periods.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    shed: f64,
    over: bool,
    own: Option<f64>,
    /// When the report last acted on arrived.
    seen: Option<Instant>,
}

/// Load reports and the controller's memory.
#[derive(Debug)]
pub struct Spill {
    pub config: SpillConfig,
    loads: Mutex<HashMap<Key, Report>>,
    memory: Mutex<HashMap<Key, Memory>>,
    /// Zones where some region sheds and no region has headroom, warned about once.
    stuck: Mutex<HashSet<String>>,
    periods: AtomicU64,
}

/// A region's spillover as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SpillView {
    pub capacity: Option<f64>,
    /// The last fresh report.
    pub load: Option<f64>,
    pub load_age_ms: Option<u64>,
    /// In a cluster, the node the last report was made to, when another one: every node
    /// runs the controller on the latest report made to any of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_reported_to: Option<String>,
    /// Share of the region's clients spilled elsewhere, as the serving state holds it.
    pub shed: f64,
    /// Share of other regions' shed networks it takes.
    pub accept: f64,
    /// Controller runs so far: a client can wait for the next one.
    pub periods: u64,
}

impl Spill {
    pub fn new(config: SpillConfig) -> Spill {
        Spill {
            config,
            loads: Mutex::default(),
            memory: Mutex::default(),
            stuck: Mutex::default(),
            periods: AtomicU64::new(0),
        }
    }

    /// Records `load` for `region` of `zone` (names as the serving zones spell them), made
    /// to this node at `now`.
    pub fn report(&self, zone: &str, region: &str, load: f64, now: Instant) {
        let ago = Instant::now().saturating_duration_since(now).as_millis() as u64;
        let report = Report {
            load,
            at: now,
            at_ms: crate::state::now_ms().saturating_sub(ago),
            from: None,
        };
        self.loads
            .lock()
            .expect("loads lock")
            .insert((zone.into(), region.into()), report);
    }

    /// The fresh reports made to this node, for its cluster record.
    pub fn own_reports(&self, now: Instant) -> SharedLoads {
        let stale = Duration::from_millis(self.config.stale_ms);
        let mut out = SharedLoads::new();
        for ((zone, region), r) in self.loads.lock().expect("loads lock").iter() {
            if r.from.is_none() && now.saturating_duration_since(r.at) <= stale {
                out.entry(zone.clone()).or_default().insert(
                    region.clone(),
                    SharedLoad {
                        load: r.load,
                        at_ms: r.at_ms,
                    },
                );
            }
        }
        out
    }

    /// Takes the reports made to `node` (another node of the cluster), as its record
    /// carries them: each one newer than what this node holds for the region replaces it.
    /// Ages come from the Unix times, so nodes need clocks in step (NTP) to agree on when a
    /// report goes stale.
    pub fn peer_reports(&self, node: &str, loads: &SharedLoads, now: Instant, now_ms: u64) {
        let stale = self.config.stale_ms;
        let mut held = self.loads.lock().expect("loads lock");
        for (zone, regions) in loads {
            for (region, shared) in regions {
                let age = now_ms.saturating_sub(shared.at_ms);
                let key = (zone.clone(), region.clone());
                if age > stale || held.get(&key).is_some_and(|r| r.at_ms >= shared.at_ms) {
                    continue;
                }
                let at = now.checked_sub(Duration::from_millis(age)).unwrap_or(now);
                held.insert(
                    key,
                    Report {
                        load: shared.load,
                        at,
                        at_ms: shared.at_ms,
                        from: Some(node.to_string()),
                    },
                );
            }
        }
    }

    /// The admin view of region `ri` of `zone` in `snap`.
    pub fn view(
        &self,
        snap: &Snapshot,
        zone: &crate::zone::Zone,
        ri: usize,
        now: Instant,
    ) -> SpillView {
        let key = (zone.origin.to_string(), zone.regions[ri].name.clone());
        let report = self.fresh(&key, now);
        let published = snap
            .spill(zone)
            .get(ri)
            .copied()
            .unwrap_or(RegionSpill::IDLE);
        SpillView {
            capacity: zone.capacity.get(ri).copied().flatten(),
            load: report.as_ref().map(|r| r.load),
            load_age_ms: report
                .as_ref()
                .map(|r| now.saturating_duration_since(r.at).as_millis() as u64),
            load_reported_to: report.and_then(|r| r.from),
            shed: published.shed,
            accept: published.accept,
            periods: self.periods.load(Ordering::Relaxed),
        }
    }

    fn fresh(&self, key: &Key, now: Instant) -> Option<Report> {
        let stale = Duration::from_millis(self.config.stale_ms);
        let loads = self.loads.lock().expect("loads lock");
        loads
            .get(key)
            .filter(|r| now.saturating_duration_since(r.at) <= stale)
            .cloned()
    }

    /// One controller run over `snap`'s zones: the new spill state by zone index, and the
    /// gauges. Logs reports that expired, regions that went over or back under capacity, and
    /// zones where spill finds no headroom.
    pub fn period(
        &self,
        snap: &Snapshot,
        now: Instant,
    ) -> (Vec<Vec<RegionSpill>>, BTreeMap<Key, SpillGauges>) {
        let stale = Duration::from_millis(self.config.stale_ms);
        self.loads
            .lock()
            .expect("loads lock")
            .retain(|(zone, region), r| {
                let keep = now.saturating_duration_since(r.at) <= stale;
                if !keep {
                    warn!(%zone, %region, load = r.load, stale_ms = self.config.stale_ms,
                    "region load report expired: the region counts as not overloaded");
                }
                keep
            });
        let params = self.config.params();
        let mut memory = self.memory.lock().expect("memory lock");
        let mut stuck = self.stuck.lock().expect("stuck lock");
        let mut gauges = BTreeMap::new();
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for zone in snap.zones.by_index() {
            let label = zone.origin.to_string();
            let keys: Vec<Key> = zone
                .regions
                .iter()
                .map(|r| (label.clone(), r.name.clone()))
                .collect();
            let reports: Vec<Option<Report>> = keys.iter().map(|k| self.fresh(k, now)).collect();
            let readings: Vec<Reading> = keys
                .iter()
                .zip(&reports)
                .enumerate()
                .map(|(ri, (key, report))| {
                    let m = memory.get(key).copied().unwrap_or_default();
                    Reading {
                        capacity: zone.capacity.get(ri).copied().flatten(),
                        load: report.as_ref().map(|r| r.load),
                        new: report.as_ref().is_some_and(|r| m.seen != Some(r.at)),
                        shed: m.shed,
                        own: m.own,
                    }
                })
                .collect();
            let outcomes = spill::control(&readings, &params);
            let next: Vec<RegionSpill> = outcomes.iter().map(|o| o.spill).collect();
            for (((key, reading), outcome), report) in
                keys.iter().zip(&readings).zip(&outcomes).zip(&reports)
            {
                let state = &outcome.spill;
                seen.insert(key.clone());
                let m = memory.entry(key.clone()).or_default();
                let over = reading.over();
                if over && !m.over {
                    warn!(zone = %key.0, region = %key.1, load = reading.load,
                        capacity = reading.capacity, shed = state.shed,
                        "region over capacity: shedding clients to regions with headroom");
                } else if !over && m.over {
                    info!(zone = %key.0, region = %key.1, load = reading.load,
                        capacity = reading.capacity, shed = state.shed,
                        "region back under capacity");
                }
                *m = Memory {
                    shed: state.shed,
                    over,
                    own: outcome.own,
                    seen: report.as_ref().map(|r| r.at),
                };
                if let Some(capacity) = reading.capacity {
                    gauges.insert(
                        key.clone(),
                        SpillGauges {
                            capacity,
                            load: reading.load,
                            shed: state.shed,
                        },
                    );
                }
            }
            let shedding = next.iter().any(|s| s.shed > 0.0);
            let room = next.iter().any(|s| s.accept > 0.0);
            if shedding && !room {
                if stuck.insert(label.clone()) {
                    warn!(zone = %label,
                        "spill finds no region with headroom: every region is over capacity or \
                         shedding, so shed clients stay where they are");
                }
            } else if stuck.remove(&label) {
                info!(zone = %label, "spill finds headroom again");
            }
            out.push(if shedding { next } else { Vec::new() });
        }
        // Regions gone with a reload are forgotten.
        memory.retain(|k, _| seen.contains(k));
        // Nothing shed anywhere is the empty state a new snapshot starts with: no swap for it.
        if out.iter().all(Vec::is_empty) {
            out.clear();
        }
        self.periods.fetch_add(1, Ordering::Relaxed);
        (out, gauges)
    }
}

/// Scrapes every region with a `load-from` of `snap`'s zones, each within `timeout`, and
/// records what it reads as a report. A source that fails is logged when it starts and stops
/// failing (`failing` holds those that fail); its last report then expires as a posted one.
async fn scrape(
    spill: &Spill,
    snap: &Snapshot,
    http: &reqwest::Client,
    timeout: Duration,
    failing: &mut HashSet<Key>,
) {
    for zone in snap.zones.by_index() {
        for (ri, source) in zone.load_from.iter().enumerate() {
            let Some(source) = source else { continue };
            let key = (zone.origin.to_string(), zone.regions[ri].name.clone());
            let page = async {
                let resp = http.get(&source.url).send().await?.error_for_status()?;
                resp.text().await
            };
            let read = match tokio::time::timeout(timeout, page).await {
                Ok(Ok(page)) => crate::zone::load_source::gauge(&page, &source.metric)
                    .filter(|v| *v >= 0.0)
                    .ok_or_else(|| format!("no sample of {} at least 0", source.metric)),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
            };
            match read {
                Ok(load) => {
                    spill.report(&key.0, &key.1, load, Instant::now());
                    if failing.remove(&key) {
                        info!(zone = %key.0, region = %key.1, url = %source.url, load,
                            "region load scraped again");
                    }
                }
                Err(e) => {
                    if failing.insert(key.clone()) {
                        warn!(zone = %key.0, region = %key.1, url = %source.url, error = %e,
                            "region load cannot be scraped");
                    }
                }
            }
        }
    }
}

/// Forever, every period: the scrapes, one controller run, published when it changes what
/// queries see.
pub async fn run(spill: Arc<Spill>, state: SharedSnapshot, metrics: Arc<Metrics>) {
    let period = Duration::from_millis(spill.config.period_ms);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    crate::health::probe::install_crypto_provider();
    let http = reqwest::Client::new();
    let mut failing = HashSet::new();
    loop {
        tick.tick().await;
        let snap = state.load_full();
        scrape(&spill, &snap, &http, period / 2, &mut failing).await;
        let (next, gauges) = spill.period(&snap, Instant::now());
        metrics.set_spill(gauges);
        if *snap.spill != next {
            let next = Arc::new(next);
            // Published against the zones it was computed for: a reload in between keeps its
            // own (empty) state until the next period.
            state.rcu(|cur| {
                if Arc::ptr_eq(&cur.zones, &snap.zones) {
                    Arc::new(cur.with_spill(next.clone()))
                } else {
                    cur.clone()
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::geo::GeoDb;
    use crate::zone::{self, ZoneSet};

    fn snapshot() -> Snapshot {
        let text = "zone = \"s.test.\"\nrecords = '''\n$TTL 300\n@ IN SOA ns1 h 1 7200 3600 \
                    1209600 300\n@ IN NS ns1\nns1 IN A 192.0.2.53\n'''\n\
                    [regions.a]\nlocation = { lat = 0, lon = 0 }\nendpoints = [\"192.0.2.1\"]\n\
                    capacity = 100\n\
                    [regions.b]\nlocation = { lat = 0, lon = 5 }\nendpoints = [\"192.0.2.2\"]\n\
                    capacity = 1000\n\
                    [steered.www]\nregions = [\"a\", \"b\"]\n";
        let z = zone::load_file(Path::new("zones/s.test.toml"), text)
            .unwrap_or_else(|d| panic!("{}", zone::LoadError(d)));
        Snapshot::new(
            ZoneSet::new(vec![z]),
            Arc::new(GeoDb::embedded().expect("the embedded GeoIP table opens")),
            &Metrics::default(),
        )
    }

    fn spill(stale_ms: u64) -> Spill {
        Spill::new(SpillConfig {
            stale_ms,
            max_step: 0.25,
            ..SpillConfig::default()
        })
    }

    #[test]
    fn a_report_raises_the_shed_once_and_then_holds() {
        let (snap, s, t0) = (snapshot(), spill(60_000), Instant::now());
        s.report("s.test.", "a", 400.0, t0);
        let (first, gauges) = s.period(&snap, t0);
        assert_eq!(first[0][0].shed, 0.25);
        // Demand 400 x 0.25 = 100; b's room is 900.
        assert_eq!(first[0][1].accept, 1.0);
        let a = gauges[&("s.test.".to_string(), "a".to_string())];
        assert_eq!((a.capacity, a.load, a.shed), (100.0, Some(400.0), 0.25));
        // No new report: the next periods hold.
        let (second, _) = s.period(&snap, t0 + Duration::from_secs(5));
        assert_eq!(second[0][0].shed, 0.25);
        s.report("s.test.", "a", 300.0, t0 + Duration::from_secs(6));
        let (third, _) = s.period(&snap, t0 + Duration::from_secs(10));
        assert_eq!(third[0][0].shed, 0.5);
    }

    #[test]
    fn an_expired_report_counts_as_none_and_the_shed_decays() {
        let (snap, s, t0) = (snapshot(), spill(1_000), Instant::now());
        s.report("s.test.", "a", 400.0, t0);
        s.period(&snap, t0);
        let later = t0 + Duration::from_secs(2);
        let (next, gauges) = s.period(&snap, later);
        assert_eq!(next[0][0].shed, 0.2);
        assert_eq!(gauges[&("s.test.".to_string(), "a".to_string())].load, None);
        assert_eq!(s.view(&snap, snap.zones.by_index()[0], 0, later).load, None);
    }

    fn shared(load: f64, at_ms: u64) -> SharedLoads {
        SharedLoads::from([(
            "s.test.".to_string(),
            BTreeMap::from([("a".to_string(), SharedLoad { load, at_ms })]),
        )])
    }

    #[test]
    fn a_report_made_to_another_node_acts_once_and_the_newest_report_wins() {
        let (snap, s, t0) = (snapshot(), spill(10_000), Instant::now());
        let now_ms = crate::state::now_ms();
        s.peer_reports("ns2", &shared(400.0, now_ms - 1_000), t0, now_ms);
        let view = s.view(&snap, snap.zones.by_index()[0], 0, t0);
        assert_eq!(view.load, Some(400.0));
        assert_eq!(view.load_reported_to.as_deref(), Some("ns2"));
        assert_eq!(view.load_age_ms, Some(1_000));
        // A peer's report is not this node's to publish again.
        assert!(s.own_reports(t0).is_empty());
        let (first, _) = s.period(&snap, t0);
        assert_eq!(first[0][0].shed, 0.25);
        // The same record read again (every heartbeat) is no new report: the shed holds.
        s.peer_reports("ns2", &shared(400.0, now_ms - 1_000), t0, now_ms);
        let (second, _) = s.period(&snap, t0 + Duration::from_secs(1));
        assert_eq!(second[0][0].shed, 0.25);
        // An older report, from another node, changes nothing; a stale one neither.
        s.peer_reports("ns3", &shared(50.0, now_ms - 2_000), t0, now_ms);
        s.peer_reports("ns3", &shared(50.0, now_ms - 20_000), t0, now_ms);
        assert_eq!(
            s.view(&snap, snap.zones.by_index()[0], 0, t0).load,
            Some(400.0)
        );
        // A report made here later replaces it and is published; a newer peer's replaces that.
        s.report("s.test.", "a", 90.0, t0);
        let own = s.own_reports(t0);
        assert_eq!(own["s.test."]["a"].load, 90.0);
        let view = s.view(&snap, snap.zones.by_index()[0], 0, t0);
        assert_eq!((view.load, view.load_reported_to), (Some(90.0), None));
        s.peer_reports("ns3", &shared(120.0, now_ms + 500), t0, now_ms);
        assert_eq!(
            s.view(&snap, snap.zones.by_index()[0], 0, t0).load,
            Some(120.0)
        );
        assert!(s.own_reports(t0).is_empty());
    }

    #[test]
    fn nothing_shed_anywhere_publishes_the_empty_state() {
        let (snap, s, t0) = (snapshot(), spill(60_000), Instant::now());
        s.report("s.test.", "a", 50.0, t0);
        let (out, _) = s.period(&snap, t0);
        assert!(out.is_empty());
        assert_eq!(*snap.spill, out);
    }
}
