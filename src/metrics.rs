//! Every metric name and label set, and the Prometheus text rendering.
//!
//! The DNS fast path only bumps pre-created atomic counters (no lock, no map lookup by
//! string): each zone has a [`ZoneCounters`] laid out by index. Label values are bounded:
//! `name` is a configured steered name (or empty), never a raw query name. The control plane
//! (probes, reloads, overrides) records under plain mutexes. The query path's other counts
//! ([`QueryCounters`]: latency, fast-path hits, ECS scopes, TCP connections) are atomics
//! too, bumped once per batch where a batch exists; process metrics are read from /proc at
//! scrape time.

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
/// Query latency buckets, in seconds: a cache hit takes microseconds, a general-path answer
/// tens of them; the top buckets catch a stalled thread.
const LATENCY_BUCKETS: [f64; 12] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.1,
];
/// ECS SCOPE PREFIX-LENGTH values: 0..=128 (IPv6).
const SCOPES: usize = 129;
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
    /// Unique in the process: names these counters in [`crate::flows`]' entries.
    id: u32,
    zone: String,
    names: Vec<String>,
    regions: Vec<String>,
    /// `[name][steered qtype][region + 1]`; slot 0 of the region is "no region" (NODATA or
    /// a fallback answer).
    steered: Box<[AtomicU64]>,
    /// `[qtype][rcode]` for every other response.
    plain: Box<[AtomicU64]>,
    /// Per region: Unix seconds of the latest answer naming it.
    last_answer: Box<[AtomicU64]>,
    /// Per region: Unix seconds until which an answer naming it may sit in a resolver's
    /// cache (the latest answer's second, plus one, plus TTL): when a drained region is safe
    /// to switch off.
    cached_until: Box<[AtomicU64]>,
}

impl ZoneCounters {
    fn new(zone: String, names: Vec<String>, regions: Vec<String>) -> Self {
        let n = regions.len();
        let steered = counters(names.len() * STEERED_QTYPES.len() * (n + 1));
        static NEXT_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        ZoneCounters {
            id: NEXT_ID.fetch_add(1, Relaxed),
            zone,
            names,
            regions,
            steered,
            plain: counters(QTYPE_SLOTS * RCODE_SLOTS),
            last_answer: counters(n),
            cached_until: counters(n),
        }
    }

    fn same_shape(&self, names: &[String], regions: &[String]) -> bool {
        self.names == names && self.regions == regions
    }

    /// A steered answer (always NOERROR) for `name`, answered by `region` at `now` (Unix
    /// seconds) with `ttl`, to `client` (its ECS subnet, else its resolver).
    pub fn steered(
        &self,
        name: usize,
        qtype: RecordType,
        region: Option<usize>,
        now: u32,
        ttl: u32,
        client: ipnet::IpNet,
    ) {
        let q = STEERED_QTYPES.iter().position(|&t| t == qtype).unwrap_or(0);
        let r = region.map_or(0, |r| r + 1);
        let i = (name * STEERED_QTYPES.len() + q) * (self.regions.len() + 1) + r;
        self.steered[i].fetch_add(1, Relaxed);
        if let Some(r) = region {
            crate::flows::record(self.id, r, client);
            // A store only when the second or the expiry moves on: the cache line stays
            // shared between threads the rest of the time.
            let later = |a: &AtomicU64, v: u64| {
                if a.load(Relaxed) < v {
                    a.fetch_max(v, Relaxed);
                }
            };
            later(&self.last_answer[r], u64::from(now));
            // `now` is whole seconds, truncated: the answer left before `now + 1`, so its
            // copies expire before `now + 1 + ttl`, an upper bound as "safe to switch off"
            // needs.
            later(&self.cached_until[r], u64::from(now) + 1 + u64::from(ttl));
        }
    }

    /// Per region, in region order: (Unix seconds of the latest answer naming it, until when
    /// such an answer may be cached); 0 when it never answered.
    pub fn region_answer_times(&self) -> Vec<(u64, u64)> {
        self.last_answer
            .iter()
            .zip(&self.cached_until)
            .map(|(l, c)| (l.load(Relaxed), c.load(Relaxed)))
            .collect()
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

/// One series per region that has answered: `pick` of its (last answer, cached until).
fn render_answer_times(
    out: &mut String,
    zones: &[Arc<ZoneCounters>],
    metric: &str,
    pick: fn((u64, u64)) -> u64,
) {
    for z in zones {
        for (region, times) in z.regions.iter().zip(z.region_answer_times()) {
            if times.0 > 0 {
                let _ = writeln!(
                    out,
                    "{metric}{{zone=\"{}\",region=\"{}\"}} {}",
                    esc(&z.zone),
                    esc(region),
                    pick(times)
                );
            }
        }
    }
}

/// Whether each zone's steering is compiled for the serving state, and whether it answers
/// the serving latency map's measured networks, as (zone, compiled, measured).
pub fn render_steering(out: &mut String, zones: &[(String, bool, bool)]) {
    out.push_str("# HELP meridian_steering_compiled 1 when a zone's steering is compiled for the serving zones, GeoIP and health; 0 while the compiler catches up (answers stay exact; ECS scopes are the GeoIP networks).\n# TYPE meridian_steering_compiled gauge\n");
    for (zone, compiled, _) in zones {
        let _ = writeln!(
            out,
            "meridian_steering_compiled{{zone=\"{}\"}} {}",
            esc(zone),
            u8::from(*compiled)
        );
    }
    out.push_str("# HELP meridian_steering_measured_compiled 1 when a zone's compiled steering answers the networks of the serving latency map (decided from it); 0 while they take the direct path (answers stay exact).\n# TYPE meridian_steering_measured_compiled gauge\n");
    for (zone, _, measured) in zones {
        let _ = writeln!(
            out,
            "meridian_steering_measured_compiled{{zone=\"{}\"}} {}",
            esc(zone),
            u8::from(*measured)
        );
    }
}

/// Escapes a Prometheus label value.
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
    /// Failures by [`crate::health::probe::failure_kind`].
    failures: BTreeMap<&'static str, u64>,
    buckets: [u64; PROBE_BUCKETS.len()],
    sum_seconds: f64,
}

/// Region key for control-plane metrics: (zone, region).
pub type RegionLabel = (String, String);

/// A capacity-managed region's spillover, as the control loop last saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpillGauges {
    pub capacity: f64,
    /// `None`: no fresh report (not exported).
    pub load: Option<f64>,
    pub shed: f64,
}

#[derive(Debug, Default)]
struct Control {
    probes: BTreeMap<(String, String, String), ProbeStats>,
    region_up: BTreeMap<RegionLabel, bool>,
    /// Regions with a capacity: their spillover state, replaced whole each control period.
    spill: BTreeMap<RegionLabel, SpillGauges>,
    region_state: BTreeMap<RegionLabel, RegionStateLabel>,
    /// (zone, steered name) -> whether every region of the name is down and its fallback
    /// answers.
    fallback: BTreeMap<RegionLabel, bool>,
    overrides: usize,
    reloads_ok: u64,
    reloads_failed: u64,
    /// Probes this node could not make, by the error's name.
    probes_local: BTreeMap<&'static str, u64>,
    /// Per-second samples of every zone's region totals, newest last.
    traffic: VecDeque<HashMap<String, Vec<u64>>>,
    /// Set once this node is in a cluster.
    cluster: Option<ClusterMetrics>,
    /// Per drained region: its answer total when this node saw the drain begin.
    drained_at_total: BTreeMap<RegionLabel, u64>,
    rates: Rates,
}

/// Steered answers per region in steps of [`RATE_STEP`] seconds over the last hour: the
/// dashboard's rate chart. Kept here, in the registry that outlives reloads, by region name.
#[derive(Debug, Default)]
struct Rates {
    /// The step the newest counts belong to (Unix seconds / step).
    step: u64,
    /// The region totals at the last sample, with the id of the counters they were read
    /// from.
    start: HashMap<RegionLabel, (u32, u64)>,
    /// Per region: answers per step, oldest first, at most [`RATE_STEPS`].
    series: BTreeMap<RegionLabel, VecDeque<u64>>,
}

/// The rate chart's step and length: an hour in steps of 10 s.
pub const RATE_STEP: u64 = 10;
pub const RATE_STEPS: usize = 360;

/// The rate chart of one region.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RateSeries {
    pub zone: String,
    pub region: String,
    /// Answers per step, oldest first; the last is the step in progress.
    pub counts: Vec<u64>,
}

/// The rate chart as kept in the state directory across restarts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SavedRates {
    /// Must be [`RATE_STEP`]: counts of another step length mean nothing here.
    pub step_seconds: u64,
    /// The step the newest counts belong to (Unix seconds / step).
    pub step: u64,
    pub series: Vec<SavedSeries>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedSeries {
    pub zone: String,
    pub region: String,
    /// Oldest first, at most [`RATE_STEPS`].
    pub counts: Vec<u64>,
}

/// Why a saved rate chart is not taken.
#[derive(Debug, thiserror::Error)]
pub enum SavedRatesError {
    #[error("its step is {0} s, this version's {RATE_STEP} s")]
    Step(u64),
    #[error("its newest step is in the future (step {saved}, now {now}): the clock went back")]
    Future { saved: u64, now: u64 },
    #[error("{zone} {region} has {len} steps, more than {RATE_STEPS}")]
    TooLong {
        zone: String,
        region: String,
        len: usize,
    },
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
    /// Per drained region: the latest "cached until" (Unix s) over the live nodes' records.
    drains: BTreeMap<RegionLabel, u64>,
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
    queries: Arc<QueryCounters>,
    signing: Arc<SigningCounters>,
    /// Where clients went over the last minutes.
    flows: Mutex<crate::flows::Window>,
    rtt: Arc<RttCounters>,
}

/// The latency map's intake: samples taken, clamped, dropped by reason.
#[derive(Debug, Default)]
pub struct RttCounters {
    pub accepted: AtomicU64,
    /// Accepted, but clamped as outliers before they counted.
    pub clamped: AtomicU64,
    /// By [`crate::latency::ingest::Reason::index`].
    pub dropped: [AtomicU64; crate::latency::ingest::Reason::ALL.len()],
    /// Client networks steering can use, at the last publication.
    pub networks: AtomicU64,
}

/// A region's state as an operator tells them apart, for `meridian_region_state`: planned
/// work (drained, forced) is not an outage, and a slow region is not a down one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionStateLabel {
    Up,
    /// Up, but slower than its own normal past the configured limit.
    Degraded,
    Down,
    /// Taken out of service by an operator.
    Drained,
    /// An operator forces one of its endpoints up or down: its state is theirs.
    Forced,
}

impl RegionStateLabel {
    const ALL: [RegionStateLabel; 5] = [
        RegionStateLabel::Up,
        RegionStateLabel::Degraded,
        RegionStateLabel::Down,
        RegionStateLabel::Drained,
        RegionStateLabel::Forced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RegionStateLabel::Up => "up",
            RegionStateLabel::Degraded => "degraded",
            RegionStateLabel::Down => "down",
            RegionStateLabel::Drained => "drained",
            RegionStateLabel::Forced => "forced",
        }
    }
}

/// A latency histogram of atomics; buckets are stored apart and summed when rendered.
#[derive(Debug)]
struct Histogram {
    /// Per bucket, the last one past every bound (+Inf).
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    fn observe(&self, d: Duration, n: u64) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS.partition_point(|&b| b < s);
        self.buckets[i].fetch_add(n, Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos.saturating_mul(n), Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.buckets[LATENCY_BUCKETS.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// What the query path counts besides responses. Every field is an atomic: UDP threads add
/// once per batch (latency, fast-path hits and misses), the rest once per event that is
/// itself rarer than a query (an ECS answer, a TCP connection).
#[derive(Debug)]
pub struct QueryCounters {
    udp_latency: Histogram,
    tcp_latency: Histogram,
    fast_hits: AtomicU64,
    fast_misses: AtomicU64,
    /// Answers carrying an ECS option, by SCOPE PREFIX-LENGTH.
    ecs_scope: [AtomicU64; SCOPES],
    tcp_open: AtomicU64,
    tcp_accepted: AtomicU64,
}

impl Default for QueryCounters {
    fn default() -> Self {
        QueryCounters {
            udp_latency: Histogram::default(),
            tcp_latency: Histogram::default(),
            fast_hits: AtomicU64::new(0),
            fast_misses: AtomicU64::new(0),
            ecs_scope: std::array::from_fn(|_| AtomicU64::new(0)),
            tcp_open: AtomicU64::new(0),
            tcp_accepted: AtomicU64::new(0),
        }
    }
}

impl QueryCounters {
    /// `n` UDP responses of one batch, `d` after the batch was received.
    pub fn udp_batch(&self, d: Duration, n: u64) {
        self.udp_latency.observe(d, n);
    }

    /// One TCP query answered in `d`.
    pub fn tcp_query(&self, d: Duration) {
        self.tcp_latency.observe(d, 1);
    }

    /// Fast-path cache hits and misses a thread gathered.
    pub fn fast_path(&self, hits: u64, misses: u64) {
        if hits > 0 {
            self.fast_hits.fetch_add(hits, Relaxed);
        }
        if misses > 0 {
            self.fast_misses.fetch_add(misses, Relaxed);
        }
    }

    /// An answer that carried an ECS option with this SCOPE PREFIX-LENGTH.
    pub fn ecs_answer(&self, scope: u8) {
        self.ecs_scope[usize::from(scope).min(SCOPES - 1)].fetch_add(1, Relaxed);
    }

    /// A TCP connection is served until the guard drops.
    pub fn tcp_connection(self: &Arc<Self>) -> TcpConnection {
        self.tcp_accepted.fetch_add(1, Relaxed);
        self.tcp_open.fetch_add(1, Relaxed);
        TcpConnection(self.clone())
    }

    fn render(&self, out: &mut String) {
        out.push_str("# HELP meridian_dns_query_duration_seconds Time a query spends in the server: over UDP from the receipt of its batch to the batch's responses sent (an upper bound for each query of the batch), over TCP the time to answer it.\n# TYPE meridian_dns_query_duration_seconds histogram\n");
        let name = "meridian_dns_query_duration_seconds";
        self.udp_latency.render(out, name, "transport=\"udp\"");
        self.tcp_latency.render(out, name, "transport=\"tcp\"");
        out.push_str("# HELP meridian_dns_fast_path_total Queries the fast path looked up, by whether a cached response answered them (hit) or the general path did (miss).\n# TYPE meridian_dns_fast_path_total counter\n");
        let _ = writeln!(
            out,
            "meridian_dns_fast_path_total{{result=\"hit\"}} {}",
            self.fast_hits.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "meridian_dns_fast_path_total{{result=\"miss\"}} {}",
            self.fast_misses.load(Relaxed)
        );
        out.push_str("# HELP meridian_dns_ecs_answers_total Answers to queries with an EDNS Client Subnet option, by the SCOPE PREFIX-LENGTH sent (0: valid for every client).\n# TYPE meridian_dns_ecs_answers_total counter\n");
        for (scope, c) in self.ecs_scope.iter().enumerate() {
            let v = c.load(Relaxed);
            if v > 0 {
                let _ = writeln!(
                    out,
                    "meridian_dns_ecs_answers_total{{scope=\"{scope}\"}} {v}"
                );
            }
        }
        out.push_str("# HELP meridian_dns_tcp_connections Open DNS TCP connections.\n# TYPE meridian_dns_tcp_connections gauge\n");
        let _ = writeln!(
            out,
            "meridian_dns_tcp_connections {}",
            self.tcp_open.load(Relaxed)
        );
        out.push_str("# HELP meridian_dns_tcp_connections_total DNS TCP connections accepted.\n# TYPE meridian_dns_tcp_connections_total counter\n");
        let _ = writeln!(
            out,
            "meridian_dns_tcp_connections_total {}",
            self.tcp_accepted.load(Relaxed)
        );
    }
}

/// An open TCP connection, counted until dropped.
#[derive(Debug)]
pub struct TcpConnection(Arc<QueryCounters>);

impl Drop for TcpConnection {
    fn drop(&mut self) {
        self.0.tcp_open.fetch_sub(1, Relaxed);
    }
}

/// The process's own metrics, with the names every Prometheus client library uses, read
/// from /proc at scrape time. A file that cannot be read leaves its metrics out.
fn render_process(out: &mut String) {
    // /proc/self/stat: the fields after the command's closing parenthesis; utime and stime
    // are fields 14 and 15, starttime 22, vsize 23, rss 24 (proc(5)).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or_else(Vec::new, |(_, rest)| rest.split_whitespace().collect());
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    // SAFETY: sysconf only reads a configuration value.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if ticks > 0
        && let (Some(utime), Some(stime)) = (field(14), field(15))
    {
        out.push_str("# HELP process_cpu_seconds_total User and system CPU time spent, in seconds.\n# TYPE process_cpu_seconds_total counter\n");
        let _ = writeln!(
            out,
            "process_cpu_seconds_total {}",
            (utime + stime) as f64 / ticks as f64
        );
        if let Some(start) =
            field(22).and_then(|s| boot_time().map(|b| b + s as f64 / ticks as f64))
        {
            out.push_str("# HELP process_start_time_seconds Start time of the process since the Unix epoch, in seconds.\n# TYPE process_start_time_seconds gauge\n");
            let _ = writeln!(out, "process_start_time_seconds {start}");
        }
    }
    if let Some(vsize) = field(23) {
        out.push_str("# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n# TYPE process_virtual_memory_bytes gauge\n");
        let _ = writeln!(out, "process_virtual_memory_bytes {vsize}");
    }
    if page > 0
        && let Some(rss) = field(24)
    {
        out.push_str("# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\n");
        let _ = writeln!(out, "process_resident_memory_bytes {}", rss * page as u64);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.push_str("# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\n");
        let _ = writeln!(out, "process_open_fds {}", fds.count());
    }
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    if let Some(max) = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok())
    {
        out.push_str("# HELP process_max_fds Maximum number of open file descriptors.\n# TYPE process_max_fds gauge\n");
        let _ = writeln!(out, "process_max_fds {max}");
    }
}

/// The system's boot time, Unix seconds (`btime` of /proc/stat).
fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// DNSSEC signatures made on the query path (a cached signed answer makes none).
#[derive(Debug, Default)]
pub struct SigningCounters {
    signatures: AtomicU64,
    nanos: AtomicU64,
    /// Pre-signing passes (after a swap, before a window), and the last one's answers and
    /// time: how long a failover leaves hot answers to be signed on the query path.
    presign_passes: AtomicU64,
    presign_answers: AtomicU64,
    presign_nanos: AtomicU64,
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

    /// Counts a pre-signing pass over `answers` hot answers that took `took`.
    pub fn presigned(&self, answers: u64, took: Duration) {
        self.presign_answers.store(answers, Relaxed);
        self.presign_nanos
            .store(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        self.presign_passes.fetch_add(1, Relaxed);
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

    /// The latency map's intake counters.
    pub fn rtt(&self) -> &Arc<RttCounters> {
        &self.rtt
    }

    /// The query path's counters.
    pub fn queries(&self) -> &Arc<QueryCounters> {
        &self.queries
    }

    /// A probe result: its round-trip time, or the kind of its failure
    /// ([`crate::health::probe::failure_kind`]).
    pub fn probe(
        &self,
        zone: &str,
        region: &str,
        endpoint: &str,
        result: Result<Duration, &'static str>,
    ) {
        let mut c = self.control.lock().expect("metrics lock");
        let p = c
            .probes
            .entry((zone.into(), region.into(), endpoint.into()))
            .or_default();
        match result {
            Ok(_) => p.ok += 1,
            Err(kind) => {
                p.failed += 1;
                *p.failures.entry(kind).or_default() += 1;
            }
        }
        if let Ok(d) = result {
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

    /// The spillover state of every capacity-managed region, by (zone, region).
    pub fn set_spill(&self, spill: BTreeMap<(String, String), SpillGauges>) {
        self.control.lock().expect("metrics lock").spill = spill;
    }

    /// Marks the moment this node sees `region` of `zone` drained (`true`) or back in service.
    pub fn region_drained(&self, zone: &str, region: &str, drained: bool) {
        let key = (zone.to_string(), region.to_string());
        let total = self.region_total(zone, region);
        let mut c = self.control.lock().expect("metrics lock");
        if drained {
            c.drained_at_total.insert(key, total);
        } else {
            c.drained_at_total.remove(&key);
        }
    }

    /// How many answers named `region` of `zone` since this node saw the drain begin, while
    /// the region is drained.
    pub fn answers_since_drain(&self, zone: &str, region: &str) -> Option<u64> {
        let key = (zone.to_string(), region.to_string());
        let before = *self
            .control
            .lock()
            .expect("metrics lock")
            .drained_at_total
            .get(&key)?;
        Some(self.region_total(zone, region).saturating_sub(before))
    }

    /// Unix seconds of the latest answer naming `region` of `zone`, and until when it may be
    /// cached; 0 when it never answered.
    pub fn answer_times(&self, zone: &str, region: &str) -> (u64, u64) {
        self.with_region(zone, region, |c, ri| c.region_answer_times()[ri])
            .unwrap_or((0, 0))
    }

    fn region_total(&self, zone: &str, region: &str) -> u64 {
        self.with_region(zone, region, |c, ri| c.region_totals()[ri])
            .unwrap_or(0)
    }

    fn with_region<T>(
        &self,
        zone: &str,
        region: &str,
        f: impl FnOnce(&ZoneCounters, usize) -> T,
    ) -> Option<T> {
        let counters = self
            .zones
            .lock()
            .expect("metrics lock")
            .get(zone)
            .cloned()?;
        let ri = counters.regions.iter().position(|r| r == region)?;
        Some(f(&counters, ri))
    }

    /// The region's state, told apart for alerts (planned work is not an outage).
    pub fn region_state(&self, zone: &str, region: &str, state: RegionStateLabel) {
        self.control
            .lock()
            .expect("metrics lock")
            .region_state
            .insert((zone.into(), region.into()), state);
    }

    /// Whether steered `name` of `zone` answers its fallback (every region of it down).
    pub fn fallback_answering(&self, zone: &str, name: &str, answering: bool) {
        self.control
            .lock()
            .expect("metrics lock")
            .fallback
            .insert((zone.into(), name.into()), answering);
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

    /// Per drained region, the latest expiry of an answer over the live nodes (Unix s).
    pub fn cluster_drains(&self, latest: BTreeMap<RegionLabel, u64>) {
        self.control
            .lock()
            .expect("metrics lock")
            .cluster
            .get_or_insert_default()
            .drains = latest;
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

    /// Moves the rate chart on to `now_s` (Unix seconds): the steps since the last call get
    /// their answers, a step passed in silence 0. Called once a second with the traffic.
    pub fn sample_rates(&self, now_s: u64) {
        let totals: Vec<(RegionLabel, u32, u64)> = self
            .zones
            .lock()
            .expect("metrics lock")
            .values()
            .flat_map(|c| {
                let (zone, id) = (c.zone.clone(), c.id);
                c.regions
                    .iter()
                    .cloned()
                    .zip(c.region_totals())
                    .map(move |(r, t)| ((zone.clone(), r), id, t))
            })
            .collect();
        let step = now_s / RATE_STEP;
        let mut c = self.control.lock().expect("metrics lock");
        let rates = &mut c.rates;
        // The first call starts the chart: no steps before this process ran.
        let new_steps = if rates.step == 0 {
            0
        } else {
            step.saturating_sub(rates.step).min(RATE_STEPS as u64) as usize
        };
        rates.step = step;
        for (label, id, total) in &totals {
            // Counters made anew (a reload that changed the zone's names or regions, a new
            // zone) start at 0: all they hold is new.
            let start = match rates.start.get(label) {
                Some(&(was, start)) if was == *id => start,
                _ => 0,
            };
            let series = rates.series.entry(label.clone()).or_default();
            if series.is_empty() {
                series.push_back(0);
            }
            for _ in 0..new_steps {
                series.push_back(0);
            }
            while series.len() > RATE_STEPS {
                series.pop_front();
            }
            *series.back_mut().expect("pushed above") += total.saturating_sub(start);
            rates.start.insert(label.clone(), (*id, *total));
        }
        // A region no longer served keeps its history until it has scrolled out.
        let served: std::collections::HashSet<&RegionLabel> = totals.iter().map(|t| &t.0).collect();
        rates.series.retain(|label, series| {
            if served.contains(label) {
                return true;
            }
            for _ in 0..new_steps {
                series.push_back(0);
            }
            while series.len() > RATE_STEPS {
                series.pop_front();
            }
            series.iter().any(|&n| n > 0)
        });
        rates.start.retain(|label, _| served.contains(label));
    }

    /// The rate chart, to be saved.
    pub fn saved_rates(&self) -> SavedRates {
        let c = self.control.lock().expect("metrics lock");
        SavedRates {
            step_seconds: RATE_STEP,
            step: c.rates.step,
            series: c
                .rates
                .series
                .iter()
                .map(|((zone, region), counts)| SavedSeries {
                    zone: zone.clone(),
                    region: region.clone(),
                    counts: counts.iter().copied().collect(),
                })
                .collect(),
        }
    }

    /// Starts the rate chart from `saved` (before the first [`Metrics::sample_rates`], which
    /// then fills the steps the process was down with zeros), checked against `now_s`.
    pub fn restore_rates(&self, saved: SavedRates, now_s: u64) -> Result<(), SavedRatesError> {
        if saved.step_seconds != RATE_STEP {
            return Err(SavedRatesError::Step(saved.step_seconds));
        }
        let now = now_s / RATE_STEP;
        if saved.step > now {
            return Err(SavedRatesError::Future {
                saved: saved.step,
                now,
            });
        }
        let mut series = BTreeMap::new();
        for s in saved.series {
            if s.counts.len() > RATE_STEPS {
                return Err(SavedRatesError::TooLong {
                    zone: s.zone,
                    region: s.region,
                    len: s.counts.len(),
                });
            }
            series.insert((s.zone, s.region), s.counts.into());
        }
        let mut c = self.control.lock().expect("metrics lock");
        c.rates.step = saved.step;
        c.rates.series = series;
        Ok(())
    }

    /// Every region's rate chart, with the start of its first step (Unix ms).
    pub fn rates(&self) -> (u64, Vec<RateSeries>) {
        let c = self.control.lock().expect("metrics lock");
        let series: Vec<RateSeries> = c
            .rates
            .series
            .iter()
            .map(|((zone, region), counts)| RateSeries {
                zone: zone.clone(),
                region: region.clone(),
                counts: counts.iter().copied().collect(),
            })
            .collect();
        let steps = series.iter().map(|s| s.counts.len()).max().unwrap_or(0) as u64;
        let first = (c.rates.step + 1).saturating_sub(steps) * RATE_STEP * 1000;
        (first, series)
    }

    /// Counts the answers recorded since the last call by the client area they went to,
    /// located in `geo`, at `now_s` (Unix seconds).
    pub fn sample_flows(&self, geo: &crate::geo::GeoDb, now_s: u64) {
        self.flows.lock().expect("flows lock").drain(geo, now_s);
    }

    /// Where clients went over the last minutes: flows from client areas to regions.
    pub fn flows(&self) -> Vec<crate::flows::Flow> {
        let names: HashMap<u32, Arc<ZoneCounters>> = self
            .zones
            .lock()
            .expect("metrics lock")
            .values()
            .map(|c| (c.id, c.clone()))
            .collect();
        self.flows.lock().expect("flows lock").flows(|id, region| {
            let c = names.get(&id)?;
            Some((c.zone.clone(), c.regions.get(usize::from(region))?.clone()))
        })
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
        for z in &zones {
            z.render(&mut out);
        }
        if let Some(o) = self.outside.lock().expect("metrics lock").clone() {
            o.render(&mut out);
        }
        out.push_str("# HELP meridian_region_last_answer_timestamp_seconds When this node last answered a client with the region (Unix time).\n# TYPE meridian_region_last_answer_timestamp_seconds gauge\n");
        render_answer_times(
            &mut out,
            &zones,
            "meridian_region_last_answer_timestamp_seconds",
            |t| t.0,
        );
        out.push_str("# HELP meridian_region_answers_cached_until_timestamp_seconds Until when an answer naming the region may sit in a resolver's cache: its latest answer plus TTL, rounded up to the second (Unix time). A drained region is safe to switch off once this has passed.\n# TYPE meridian_region_answers_cached_until_timestamp_seconds gauge\n");
        render_answer_times(
            &mut out,
            &zones,
            "meridian_region_answers_cached_until_timestamp_seconds",
            |t| t.1,
        );
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
        self.queries.render(&mut out);
        render_process(&mut out);
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
        out.push_str("# HELP meridian_dnssec_presign_passes_total Passes that signed the hot answers off the query path (after a state swap, before a new signature window).\n# TYPE meridian_dnssec_presign_passes_total counter\n");
        let _ = writeln!(
            out,
            "meridian_dnssec_presign_passes_total {}",
            self.signing.presign_passes.load(Relaxed)
        );
        out.push_str("# HELP meridian_dnssec_presign_last_answers Hot answers the last pre-signing pass answered again.\n# TYPE meridian_dnssec_presign_last_answers gauge\n");
        let _ = writeln!(
            out,
            "meridian_dnssec_presign_last_answers {}",
            self.signing.presign_answers.load(Relaxed)
        );
        out.push_str("# HELP meridian_dnssec_presign_last_seconds How long the last pre-signing pass took.\n# TYPE meridian_dnssec_presign_last_seconds gauge\n");
        let _ = writeln!(
            out,
            "meridian_dnssec_presign_last_seconds {}",
            self.signing.presign_nanos.load(Relaxed) as f64 / 1e9
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
        out.push_str("# HELP meridian_probe_failures_total Failed health probes by the kind of failure: timeout, refused, reset, connect, tls, status, body, other.\n# TYPE meridian_probe_failures_total counter\n");
        for ((z, r, e), p) in &c.probes {
            for (kind, v) in &p.failures {
                let _ = writeln!(
                    out,
                    "meridian_probe_failures_total{{zone=\"{}\",region=\"{}\",endpoint=\"{}\",reason=\"{kind}\"}} {v}",
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
        out.push_str("# HELP meridian_region_up 1 when the region answers (probes and overrides); 0 when down and when drained alike: alert on meridian_region_state instead.\n# TYPE meridian_region_up gauge\n");
        for ((z, r), up) in &c.region_up {
            let _ = writeln!(
                out,
                "meridian_region_up{{zone=\"{}\",region=\"{}\"}} {}",
                esc(z),
                esc(r),
                u8::from(*up)
            );
        }
        out.push_str("# HELP meridian_region_capacity Load the region takes before it sheds clients (zone file), in its load reports' unit.\n# TYPE meridian_region_capacity gauge\n");
        for ((z, r), g) in &c.spill {
            let _ = writeln!(
                out,
                "meridian_region_capacity{{zone=\"{}\",region=\"{}\"}} {}",
                esc(z),
                esc(r),
                g.capacity
            );
        }
        out.push_str("# HELP meridian_region_load The region's last fresh load report; absent when none is fresh.\n# TYPE meridian_region_load gauge\n");
        for ((z, r), g) in &c.spill {
            if let Some(load) = g.load {
                let _ = writeln!(
                    out,
                    "meridian_region_load{{zone=\"{}\",region=\"{}\"}} {load}",
                    esc(z),
                    esc(r),
                );
            }
        }
        out.push_str("# HELP meridian_region_shed_ratio Share of the region's clients spilled to other regions (0 to 1).\n# TYPE meridian_region_shed_ratio gauge\n");
        for ((z, r), g) in &c.spill {
            let _ = writeln!(
                out,
                "meridian_region_shed_ratio{{zone=\"{}\",region=\"{}\"}} {}",
                esc(z),
                esc(r),
                g.shed
            );
        }
        out.push_str("# HELP meridian_region_state 1 for the region's current state (up, degraded, down, drained, forced), 0 for the others.\n# TYPE meridian_region_state gauge\n");
        for ((z, r), state) in &c.region_state {
            for s in RegionStateLabel::ALL {
                let _ = writeln!(
                    out,
                    "meridian_region_state{{zone=\"{}\",region=\"{}\",state=\"{}\"}} {}",
                    esc(z),
                    esc(r),
                    s.as_str(),
                    u8::from(s == *state)
                );
            }
        }
        out.push_str("# HELP meridian_fallback_answering 1 while every region of a steered name is down and the name answers its fallback.\n# TYPE meridian_fallback_answering gauge\n");
        for ((z, n), answering) in &c.fallback {
            let _ = writeln!(
                out,
                "meridian_fallback_answering{{zone=\"{}\",name=\"{}\"}} {}",
                esc(z),
                esc(n),
                u8::from(*answering)
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
            out.push_str("# HELP meridian_cluster_region_answers_cached_until_timestamp_seconds For a drained region, the latest moment an answer of any live node naming it may sit in a resolver's cache (Unix time; 0 when none named it). The region is safe to switch off once this has passed and no node that left is still listed under drain_progress.cluster.departed.\n# TYPE meridian_cluster_region_answers_cached_until_timestamp_seconds gauge\n");
            for ((zone, region), t) in &k.drains {
                let _ = writeln!(
                    out,
                    "meridian_cluster_region_answers_cached_until_timestamp_seconds{{zone=\"{}\",region=\"{}\"}} {t}",
                    esc(zone),
                    esc(region)
                );
            }
            out.push_str("# HELP meridian_cluster_zone_content_differs Zones that some nodes serve with different content (their zone file hashes differ).\n# TYPE meridian_cluster_zone_content_differs gauge\n");
            for zone in &k.zones_differ {
                let _ = writeln!(
                    out,
                    "meridian_cluster_zone_content_differs{{zone=\"{}\"}} 1",
                    esc(zone)
                );
            }
        }
        let rtt = &self.rtt;
        out.push_str("# HELP meridian_rtt_samples_total Client RTT samples taken into the latency map (clamped: outliers counted at the clamp).\n# TYPE meridian_rtt_samples_total counter\n");
        let _ = writeln!(
            out,
            "meridian_rtt_samples_total{{result=\"accepted\"}} {}",
            rtt.accepted.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "meridian_rtt_samples_total{{result=\"clamped\"}} {}",
            rtt.clamped.load(Relaxed)
        );
        out.push_str("# HELP meridian_rtt_samples_dropped_total Client RTT sample lines dropped, by reason.\n# TYPE meridian_rtt_samples_dropped_total counter\n");
        for r in crate::latency::ingest::Reason::ALL {
            let _ = writeln!(
                out,
                "meridian_rtt_samples_dropped_total{{reason=\"{}\"}} {}",
                r.as_str(),
                rtt.dropped[r.index()].load(Relaxed)
            );
        }
        out.push_str("# HELP meridian_latency_networks Client networks with enough measured RTTs to steer by, at the last publication.\n# TYPE meridian_latency_networks gauge\n");
        let _ = writeln!(
            out,
            "meridian_latency_networks {}",
            rtt.networks.load(Relaxed)
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(m: &Metrics) -> Arc<ZoneCounters> {
        let c = Arc::new(ZoneCounters::new(
            "z.".into(),
            vec!["www.z.".into()],
            vec!["a".into(), "b".into()],
        ));
        m.zones.lock().unwrap().insert("z.".into(), c.clone());
        c
    }

    fn series(m: &Metrics, region: &str) -> Vec<u64> {
        let (_, all) = m.rates();
        all.into_iter()
            .find(|s| s.region == region)
            .map(|s| s.counts)
            .unwrap_or_default()
    }

    #[test]
    fn the_rate_chart_counts_per_step_fills_silence_with_zeros_and_keeps_an_hour() {
        let m = Metrics::default();
        let c = counters(&m);
        let client: ipnet::IpNet = "192.0.2.0/24".parse().unwrap();
        let t0 = 1_000_000 * RATE_STEP;
        m.sample_rates(t0);
        for _ in 0..3 {
            c.steered(0, RecordType::A, Some(1), 0, 30, client);
        }
        m.sample_rates(t0 + 1);
        assert_eq!(series(&m, "b"), [3]);
        // Two steps later: the silent step in between is a 0.
        c.steered(0, RecordType::A, Some(1), 0, 30, client);
        m.sample_rates(t0 + 2 * RATE_STEP);
        assert_eq!(series(&m, "b"), [3, 0, 1]);
        assert_eq!(series(&m, "a"), [0, 0, 0]);
        // Two hours later: one hour of steps, the newest last.
        m.sample_rates(t0 + 2 * RATE_STEP + 7200);
        let b = series(&m, "b");
        assert_eq!(b.len(), RATE_STEPS);
        assert!(b.iter().all(|&n| n == 0), "{b:?}");
    }

    #[test]
    fn the_rate_chart_outlives_counters_made_anew() {
        let m = Metrics::default();
        let c = counters(&m);
        let client: ipnet::IpNet = "192.0.2.0/24".parse().unwrap();
        let t0 = 1_000_000 * RATE_STEP;
        m.sample_rates(t0);
        for _ in 0..5 {
            c.steered(0, RecordType::A, Some(0), 0, 30, client);
        }
        m.sample_rates(t0 + 1);
        // A reload that changed the zone's shape: new counters, starting at 0.
        let c = counters(&m);
        c.steered(0, RecordType::A, Some(0), 0, 30, client);
        m.sample_rates(t0 + 2);
        m.sample_rates(t0 + RATE_STEP);
        c.steered(0, RecordType::A, Some(0), 0, 30, client);
        m.sample_rates(t0 + RATE_STEP + 1);
        // The answers before and after the new counters: none lost, none twice.
        let a = series(&m, "a");
        assert_eq!(a, [6, 1]);
    }

    #[test]
    fn a_restored_rate_chart_goes_on_after_the_silence_of_the_restart() {
        let client: ipnet::IpNet = "192.0.2.0/24".parse().unwrap();
        let t0 = 1_000_000 * RATE_STEP;
        let before = Metrics::default();
        let c = counters(&before);
        before.sample_rates(t0);
        for _ in 0..4 {
            c.steered(0, RecordType::A, Some(1), 0, 30, client);
        }
        before.sample_rates(t0 + 1);
        let saved = before.saved_rates();

        // The next process starts three steps later, its counters at 0.
        let after = Metrics::default();
        let c = counters(&after);
        after
            .restore_rates(saved.clone(), t0 + 3 * RATE_STEP)
            .unwrap();
        c.steered(0, RecordType::A, Some(1), 0, 30, client);
        after.sample_rates(t0 + 3 * RATE_STEP);
        assert_eq!(series(&after, "b"), [4, 0, 0, 1]);

        let refused = |s: SavedRates| {
            Metrics::default()
                .restore_rates(s, t0)
                .unwrap_err()
                .to_string()
        };
        let other_step = SavedRates {
            step_seconds: 60,
            ..saved.clone()
        };
        assert_eq!(refused(other_step), "its step is 60 s, this version's 10 s");
        let future = SavedRates {
            step: saved.step + 1,
            ..saved.clone()
        };
        assert!(refused(future).contains("the clock went back"));
        let mut long = saved;
        long.series[0].counts = vec![0; RATE_STEPS + 1];
        assert_eq!(refused(long), "z. a has 361 steps, more than 360");
    }
}
