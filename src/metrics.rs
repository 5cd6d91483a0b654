//! Every metric name and label set, and the Prometheus text rendering.
//!
//! The DNS fast path only bumps pre-created atomic counters (no lock, no map lookup by
//! string): each zone has a [`ZoneCounters`] laid out by index. Label values are bounded:
//! `name` is a configured steered name (or empty), never a raw query name. The control plane
//! (probes, reloads, overrides) records under plain mutexes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::zone::Zone;

/// Query types counted by name; the rest are `OTHER`.
const QTYPES: [RecordType; 12] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::ANY,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::NS,
    RecordType::SOA,
    RecordType::TXT,
    RecordType::SRV,
    RecordType::CAA,
    RecordType::PTR,
    RecordType::DS,
];
const QTYPE_SLOTS: usize = QTYPES.len() + 1;
/// Response codes counted by name; the rest are `OTHER`.
const RCODES: [(ResponseCode, &str); 7] = [
    (ResponseCode::NoError, "NOERROR"),
    (ResponseCode::FormErr, "FORMERR"),
    (ResponseCode::ServFail, "SERVFAIL"),
    (ResponseCode::NXDomain, "NXDOMAIN"),
    (ResponseCode::NotImp, "NOTIMP"),
    (ResponseCode::Refused, "REFUSED"),
    (ResponseCode::BADVERS, "BADVERS"),
];
const RCODE_SLOTS: usize = RCODES.len() + 1;
/// Steered answers are counted for these query types.
const STEERED_QTYPES: [RecordType; 3] = [RecordType::A, RecordType::AAAA, RecordType::ANY];
/// Probe duration histogram buckets, in seconds.
const PROBE_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Seconds of per-second samples kept for the "last minute" traffic share.
const TRAFFIC_WINDOW: usize = 60;

fn qtype_slot(t: RecordType) -> usize {
    QTYPES.iter().position(|&q| q == t).unwrap_or(QTYPES.len())
}

fn qtype_label(slot: usize) -> String {
    QTYPES
        .get(slot)
        .map_or_else(|| "OTHER".to_string(), |t| t.to_string())
}

fn rcode_slot(r: ResponseCode) -> usize {
    RCODES
        .iter()
        .position(|&(c, _)| c == r)
        .unwrap_or(RCODES.len())
}

fn rcode_label(slot: usize) -> &'static str {
    RCODES.get(slot).map_or("OTHER", |&(_, l)| l)
}

fn counters(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

/// Query counters of one zone (or of queries outside every zone, with no names).
#[derive(Debug)]
pub struct ZoneCounters {
    zone: String,
    names: Vec<String>,
    regions: Vec<String>,
    /// `[name][steered qtype][region + 1]`; slot 0 of the region is "no region" (NODATA or
    /// a fallback answer).
    steered: Box<[AtomicU64]>,
    /// `[qtype][rcode]` for every other response.
    plain: Box<[AtomicU64]>,
}

impl ZoneCounters {
    fn new(zone: String, names: Vec<String>, regions: Vec<String>) -> Self {
        let steered = counters(names.len() * STEERED_QTYPES.len() * (regions.len() + 1));
        ZoneCounters {
            zone,
            names,
            regions,
            steered,
            plain: counters(QTYPE_SLOTS * RCODE_SLOTS),
        }
    }

    fn same_shape(&self, names: &[String], regions: &[String]) -> bool {
        self.names == names && self.regions == regions
    }

    /// A steered answer (always NOERROR) for `name`, answered by `region`.
    pub fn steered(&self, name: usize, qtype: RecordType, region: Option<usize>) {
        let q = STEERED_QTYPES.iter().position(|&t| t == qtype).unwrap_or(0);
        let r = region.map_or(0, |r| r + 1);
        let i = (name * STEERED_QTYPES.len() + q) * (self.regions.len() + 1) + r;
        self.steered[i].fetch_add(1, Relaxed);
    }

    pub fn plain(&self, qtype: RecordType, rcode: ResponseCode) {
        self.plain[qtype_slot(qtype) * RCODE_SLOTS + rcode_slot(rcode)].fetch_add(1, Relaxed);
    }

    /// Steered answers per region since start, in region order.
    pub fn region_totals(&self) -> Vec<u64> {
        let width = self.regions.len() + 1;
        let mut totals = vec![0; self.regions.len()];
        for (i, c) in self.steered.iter().enumerate() {
            let r = i % width;
            if r > 0 {
                totals[r - 1] += c.load(Relaxed);
            }
        }
        totals
    }

    pub fn regions(&self) -> &[String] {
        &self.regions
    }

    fn render(&self, out: &mut String) {
        let width = self.regions.len() + 1;
        for (i, c) in self.steered.iter().enumerate() {
            let v = c.load(Relaxed);
            if v == 0 {
                continue;
            }
            let name = &self.names[i / (width * STEERED_QTYPES.len())];
            let qtype = STEERED_QTYPES[(i / width) % STEERED_QTYPES.len()];
            let region = match i % width {
                0 => "",
                r => &self.regions[r - 1],
            };
            let _ = writeln!(
                out,
                "meridian_dns_queries_total{{zone=\"{}\",name=\"{}\",qtype=\"{qtype}\",rcode=\"NOERROR\",region=\"{}\"}} {v}",
                esc(&self.zone),
                esc(name),
                esc(region)
            );
        }
        for (i, c) in self.plain.iter().enumerate() {
            let v = c.load(Relaxed);
            if v == 0 {
                continue;
            }
            let _ = writeln!(
                out,
                "meridian_dns_queries_total{{zone=\"{}\",name=\"\",qtype=\"{}\",rcode=\"{}\",region=\"\"}} {v}",
                esc(&self.zone),
                qtype_label(i / RCODE_SLOTS),
                rcode_label(i % RCODE_SLOTS)
            );
        }
    }
}

/// Escapes a Prometheus label value.
/// Whether each zone's steering is compiled for the serving state, as (zone, compiled).
pub fn render_steering(out: &mut String, zones: &[(String, bool)]) {
    out.push_str("# HELP meridian_steering_compiled 1 when a zone's steering is compiled for the serving zones, GeoIP and health; 0 while the compiler catches up (answers stay exact; ECS scopes are the GeoIP networks).\n# TYPE meridian_steering_compiled gauge\n");
    for (zone, compiled) in zones {
        let _ = writeln!(
            out,
            "meridian_steering_compiled{{zone=\"{}\"}} {}",
            esc(zone),
            u8::from(*compiled)
        );
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Probe results and durations of one endpoint.
#[derive(Debug, Default, Clone)]
struct ProbeStats {
    ok: u64,
    failed: u64,
    buckets: [u64; PROBE_BUCKETS.len()],
    sum_seconds: f64,
}

/// Region key for control-plane metrics: (zone, region).
type RegionLabel = (String, String);

#[derive(Debug, Default)]
struct Control {
    probes: BTreeMap<(String, String, String), ProbeStats>,
    region_up: BTreeMap<RegionLabel, bool>,
    overrides: usize,
    reloads_ok: u64,
    reloads_failed: u64,
    /// Probes this node could not make, by the error's name.
    probes_local: BTreeMap<&'static str, u64>,
    /// Per-second samples of every zone's region totals, newest last.
    traffic: VecDeque<HashMap<String, Vec<u64>>>,
    /// Set once this node is in a cluster.
    cluster: Option<ClusterMetrics>,
}

/// What the cluster store does for this node.
#[derive(Debug, Default)]
struct ClusterMetrics {
    up: bool,
    errors: u64,
    /// From an operator's write (its stamp) to this node applying it, the last one.
    lag_seconds: f64,
    records_written: u64,
    /// Nodes with a live record, this one included.
    nodes: usize,
    /// Zones served with different content by some nodes.
    zones_differ: Vec<String>,
}

/// The process's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Counters by zone origin; kept across reloads while a zone's names and regions stay.
    zones: Mutex<BTreeMap<String, Arc<ZoneCounters>>>,
    outside: Mutex<Option<Arc<ZoneCounters>>>,
    control: Mutex<Control>,
    /// Response rate limiting's counters, once it is on.
    rrl: std::sync::OnceLock<Arc<RrlCounters>>,
    signing: Arc<SigningCounters>,
}

/// DNSSEC signatures made on the query path (a cached signed answer makes none).
#[derive(Debug, Default)]
pub struct SigningCounters {
    signatures: AtomicU64,
    nanos: AtomicU64,
}

impl SigningCounters {
    /// Counts `signatures` made in `took`.
    pub fn add(&self, signatures: u64, took: Duration) {
        self.signatures.fetch_add(signatures, Relaxed);
        self.nanos
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    pub fn signatures(&self) -> u64 {
        self.signatures.load(Relaxed)
    }
}

/// What response rate limiting refused.
#[derive(Debug, Default)]
pub struct RrlCounters {
    pub dropped: AtomicU64,
    pub slipped: AtomicU64,
}

impl Metrics {
    /// The counters for `zone`: the existing ones when its names and regions are unchanged.
    pub fn zone_counters(&self, zone: &Zone) -> Arc<ZoneCounters> {
        let origin = zone.origin.to_string();
        let names: Vec<String> = zone.steered.iter().map(|s| s.name.to_string()).collect();
        let regions: Vec<String> = zone.regions.iter().map(|r| r.name.clone()).collect();
        let mut zones = self.zones.lock().expect("metrics lock");
        match zones.get(&origin) {
            Some(c) if c.same_shape(&names, &regions) => c.clone(),
            _ => {
                let c = Arc::new(ZoneCounters::new(origin.clone(), names, regions));
                zones.insert(origin, c.clone());
                c
            }
        }
    }

    /// Counters for responses that belong to no zone (REFUSED, FORMERR, ...).
    pub fn outside_counters(&self) -> Arc<ZoneCounters> {
        self.outside
            .lock()
            .expect("metrics lock")
            .get_or_insert_with(|| Arc::new(ZoneCounters::new(String::new(), vec![], vec![])))
            .clone()
    }

    pub fn probe(
        &self,
        zone: &str,
        region: &str,
        endpoint: &str,
        ok: bool,
        duration: Option<Duration>,
    ) {
        let mut c = self.control.lock().expect("metrics lock");
        let p = c
            .probes
            .entry((zone.into(), region.into(), endpoint.into()))
            .or_default();
        if ok {
            p.ok += 1;
        } else {
            p.failed += 1;
        }
        if let Some(d) = duration {
            let s = d.as_secs_f64();
            p.sum_seconds += s;
            for (i, b) in PROBE_BUCKETS.iter().enumerate() {
                if s <= *b {
                    p.buckets[i] += 1;
                }
            }
        }
    }

    /// A probe this node could not make (`errno`: EMFILE, ENOBUFS, ...).
    pub fn probe_local_failure(&self, errno: &'static str) {
        *self
            .control
            .lock()
            .expect("metrics lock")
            .probes_local
            .entry(errno)
            .or_default() += 1;
    }

    /// The DNSSEC signing counters.
    pub fn signing(&self) -> Arc<SigningCounters> {
        self.signing.clone()
    }

    /// The counters of response rate limiting, which are exported from the first call on.
    pub fn rrl_counters(&self) -> Arc<RrlCounters> {
        self.rrl.get_or_init(Arc::default).clone()
    }

    pub fn region_up(&self, zone: &str, region: &str, up: bool) {
        self.control
            .lock()
            .expect("metrics lock")
            .region_up
            .insert((zone.into(), region.into()), up);
    }

    /// Whether the cluster store (etcd) can be used.
    pub fn cluster_store(&self, up: bool) {
        self.control
            .lock()
            .expect("metrics lock")
            .cluster
            .get_or_insert_default()
            .up = up;
    }

    /// A call to the cluster store failed.
    pub fn cluster_store_error(&self) {
        self.control
            .lock()
            .expect("metrics lock")
            .cluster
            .get_or_insert_default()
            .errors += 1;
    }

    /// An override from the cluster applied here, `seconds` after the operator wrote it.
    pub fn cluster_lag(&self, seconds: f64) {
        self.control
            .lock()
            .expect("metrics lock")
            .cluster
            .get_or_insert_default()
            .lag_seconds = seconds;
    }

    /// The nodes with a live record, and the zones they serve with different content.
    pub fn cluster_nodes(&self, nodes: usize, zones_differ: Vec<String>) {
        let mut c = self.control.lock().expect("metrics lock");
        let k = c.cluster.get_or_insert_default();
        k.nodes = nodes;
        k.zones_differ = zones_differ;
    }

    /// This node's record written to the cluster store.
    pub fn cluster_record_written(&self) {
        self.control
            .lock()
            .expect("metrics lock")
            .cluster
            .get_or_insert_default()
            .records_written += 1;
    }

    pub fn overrides(&self, active: usize) {
        self.control.lock().expect("metrics lock").overrides = active;
    }

    pub fn reload(&self, ok: bool) {
        let mut c = self.control.lock().expect("metrics lock");
        if ok {
            c.reloads_ok += 1;
        } else {
            c.reloads_failed += 1;
        }
    }

    /// Records this second's region totals; called once a second by the control plane.
    pub fn sample_traffic(&self) {
        let zones: HashMap<String, Vec<u64>> = self
            .zones
            .lock()
            .expect("metrics lock")
            .iter()
            .map(|(z, c)| (z.clone(), c.region_totals()))
            .collect();
        let mut c = self.control.lock().expect("metrics lock");
        c.traffic.push_back(zones);
        while c.traffic.len() > TRAFFIC_WINDOW + 1 {
            c.traffic.pop_front();
        }
    }

    /// Steered answers per region of `zone`: (since start, over the last minute).
    pub fn traffic(&self, zone: &str) -> Vec<(String, u64, u64)> {
        let Some(counters) = self.zones.lock().expect("metrics lock").get(zone).cloned() else {
            return Vec::new();
        };
        let now = counters.region_totals();
        let c = self.control.lock().expect("metrics lock");
        let then = c.traffic.front().and_then(|s| s.get(zone));
        counters
            .regions()
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let before = then.and_then(|t| t.get(i)).copied().unwrap_or(0);
                (name.clone(), now[i], now[i].saturating_sub(before))
            })
            .collect()
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP meridian_build_info Meridian version.\n# TYPE meridian_build_info gauge\n",
        );
        let _ = writeln!(
            out,
            "meridian_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out.push_str("# HELP meridian_dns_queries_total DNS responses by zone, steered name, query type, response code and answering region.\n# TYPE meridian_dns_queries_total counter\n");
        let zones: Vec<Arc<ZoneCounters>> = self
            .zones
            .lock()
            .expect("metrics lock")
            .values()
            .cloned()
            .collect();
        for z in zones {
            z.render(&mut out);
        }
        if let Some(o) = self.outside.lock().expect("metrics lock").clone() {
            o.render(&mut out);
        }
        if let Some(rrl) = self.rrl.get() {
            out.push_str("# HELP meridian_rrl_responses_total UDP responses over the rate limit.\n# TYPE meridian_rrl_responses_total counter\n");
            let _ = writeln!(
                out,
                "meridian_rrl_responses_total{{action=\"dropped\"}} {}",
                rrl.dropped.load(Relaxed)
            );
            let _ = writeln!(
                out,
                "meridian_rrl_responses_total{{action=\"slipped\"}} {}",
                rrl.slipped.load(Relaxed)
            );
        }
        let c = self.control.lock().expect("metrics lock");
        out.push_str("# HELP meridian_dnssec_signatures_total RRSIGs made, on the query path and ahead of it after a swap (answers from a cache make none).\n# TYPE meridian_dnssec_signatures_total counter\n");
        let _ = writeln!(
            out,
            "meridian_dnssec_signatures_total {}",
            self.signing.signatures.load(Relaxed)
        );
        out.push_str("# HELP meridian_dnssec_signing_seconds_total Time spent signing answers, NSEC records included.\n# TYPE meridian_dnssec_signing_seconds_total counter\n");
        let _ = writeln!(
            out,
            "meridian_dnssec_signing_seconds_total {}",
            self.signing.nanos.load(Relaxed) as f64 / 1e9
        );
        out.push_str("# HELP meridian_probes_total Health probes by result.\n# TYPE meridian_probes_total counter\n");
        for ((z, r, e), p) in &c.probes {
            for (result, v) in [("ok", p.ok), ("failed", p.failed)] {
                let _ = writeln!(
                    out,
                    "meridian_probes_total{{zone=\"{}\",region=\"{}\",endpoint=\"{}\",result=\"{result}\"}} {v}",
                    esc(z),
                    esc(r),
                    esc(e)
                );
            }
        }
        out.push_str("# HELP meridian_probe_local_failures_total Probes this node could not make, by the error of its own (EMFILE, ENOBUFS, ...); they count against no target.\n# TYPE meridian_probe_local_failures_total counter\n");
        for (errno, v) in &c.probes_local {
            let _ = writeln!(
                out,
                "meridian_probe_local_failures_total{{errno=\"{errno}\"}} {v}"
            );
        }
        out.push_str("# HELP meridian_probe_duration_seconds Round-trip time of successful probes.\n# TYPE meridian_probe_duration_seconds histogram\n");
        for ((z, r, e), p) in &c.probes {
            let labels = format!(
                "zone=\"{}\",region=\"{}\",endpoint=\"{}\"",
                esc(z),
                esc(r),
                esc(e)
            );
            for (i, b) in PROBE_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "meridian_probe_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                    p.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "meridian_probe_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                p.ok
            );
            let _ = writeln!(
                out,
                "meridian_probe_duration_seconds_sum{{{labels}}} {}",
                p.sum_seconds
            );
            let _ = writeln!(
                out,
                "meridian_probe_duration_seconds_count{{{labels}}} {}",
                p.ok
            );
        }
        out.push_str("# HELP meridian_region_up 1 when the region is up (probes and overrides).\n# TYPE meridian_region_up gauge\n");
        for ((z, r), up) in &c.region_up {
            let _ = writeln!(
                out,
                "meridian_region_up{{zone=\"{}\",region=\"{}\"}} {}",
                esc(z),
                esc(r),
                u8::from(*up)
            );
        }
        out.push_str("# HELP meridian_overrides Operator overrides in force.\n# TYPE meridian_overrides gauge\n");
        let _ = writeln!(out, "meridian_overrides {}", c.overrides);
        if let Some(k) = &c.cluster {
            out.push_str("# HELP meridian_cluster_store_up Whether the cluster store (etcd) can be used: 0 while DNS serves the last known state.\n# TYPE meridian_cluster_store_up gauge\n");
            let _ = writeln!(out, "meridian_cluster_store_up {}", u8::from(k.up));
            out.push_str("# HELP meridian_cluster_store_errors_total Calls to the cluster store that failed.\n# TYPE meridian_cluster_store_errors_total counter\n");
            let _ = writeln!(out, "meridian_cluster_store_errors_total {}", k.errors);
            out.push_str("# HELP meridian_cluster_propagation_seconds From an operator's write to this node applying it, the last one.\n# TYPE meridian_cluster_propagation_seconds gauge\n");
            let _ = writeln!(
                out,
                "meridian_cluster_propagation_seconds {}",
                k.lag_seconds
            );
            out.push_str("# HELP meridian_cluster_records_written_total Writes of this node's record (observations, zone hashes) to the cluster store.\n# TYPE meridian_cluster_records_written_total counter\n");
            let _ = writeln!(
                out,
                "meridian_cluster_records_written_total {}",
                k.records_written
            );
            out.push_str("# HELP meridian_cluster_nodes Nodes with a live record in the cluster store, this one included.\n# TYPE meridian_cluster_nodes gauge\n");
            let _ = writeln!(out, "meridian_cluster_nodes {}", k.nodes);
            out.push_str("# HELP meridian_cluster_zone_content_differs Zones that some nodes serve with different content (their zone file hashes differ).\n# TYPE meridian_cluster_zone_content_differs gauge\n");
            for zone in &k.zones_differ {
                let _ = writeln!(
                    out,
                    "meridian_cluster_zone_content_differs{{zone=\"{}\"}} 1",
                    esc(zone)
                );
            }
        }
        out.push_str("# HELP meridian_reloads_total Zone reloads by result.\n# TYPE meridian_reloads_total counter\n");
        let _ = writeln!(
            out,
            "meridian_reloads_total{{result=\"ok\"}} {}",
            c.reloads_ok
        );
        let _ = writeln!(
            out,
            "meridian_reloads_total{{result=\"failed\"}} {}",
            c.reloads_failed
        );
        out
    }
}
