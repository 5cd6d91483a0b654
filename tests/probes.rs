//! Health probes end to end (issue 3): real loopback HTTP and TCP targets as the endpoints of
//! three regions, the real `meridian serve` binary, and ECS queries over UDP. Targets are
//! stopped, slowed, broken and flapped, and the tests measure how long answers take to move.
//!
//! Every test writes its own zone `probe.test.` with the example zone's three locations:
//! us-east (39.04, -77.49), eu-west (53.35, -6.26), ap-southeast (1.35, 103.82). Their
//! endpoint addresses (127.0.1.1 / 127.0.2.1 / 127.0.3.1) are only DNS answers; probes go to
//! each endpoint's `check-address`, `127.0.0.1:<port of that region's target>`. No traffic
//! leaves loopback.
//!
//! Clients: 81.2.69.0/24 (GB) is nearest to eu-west (463 km), then us-east (5,917 km), then
//! ap-southeast; 8.8.8.0/24 (US) to us-east; 1.1.1.0/24 (AU) to ap-southeast.
//!
//! Timing bounds follow the issue: detection within `fall * interval + timeout + interval`,
//! recovery within `rise * interval + timeout`, plus [`ALLOWANCE`] for scheduling.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{RData, RecordType};
use tempfile::TempDir;

use common::probe_targets::{HttpTarget, TcpTarget};
use common::{RawUdp, Server, query_message};

/// Slack on top of every timing bound. The chain from a target's state to a changed answer
/// has several wake-ups (the probe timer on meridian's one probe worker, the report channel,
/// the publish, a DNS worker, this test's poll step of [`POLL`] and its query), on a 2-core CI
/// box that runs other tests (each with its own meridian) in parallel; 300 ms covers a few
/// tens of ms of delay at each of them.
const ALLOWANCE: Duration = Duration::from_millis(300);
/// Poll step of every wait.
const POLL: Duration = Duration::from_millis(10);
/// How long one UDP query waits for its response (loopback: normally well under 1 ms).
const QUERY_WAIT: Duration = Duration::from_secs(2);
/// Bound on waits that the issue does not time (settling, log lines arriving).
const SETTLE: Duration = Duration::from_secs(10);

const GB: &str = "81.2.69.0/24";
const US: &str = "8.8.8.0/24";
const AU: &str = "1.1.1.0/24";
const CLIENTS: [&str; 3] = [GB, US, AU];

const WWW: &str = "www.probe.test.";

#[derive(Debug, Clone, Copy)]
struct RegionDef {
    name: &'static str,
    lat: f64,
    lon: f64,
    address: &'static str,
}

/// The example zone's regions, in the order of `[steered.www] regions`. Index constants below.
const REGIONS: [RegionDef; 3] = [
    RegionDef {
        name: "us-east",
        lat: 39.04,
        lon: -77.49,
        address: "127.0.1.1",
    },
    RegionDef {
        name: "eu-west",
        lat: 53.35,
        lon: -6.26,
        address: "127.0.2.1",
    },
    RegionDef {
        name: "ap-southeast",
        lat: 1.35,
        lon: 103.82,
        address: "127.0.3.1",
    },
];
const US_EAST: usize = 0;
const EU_WEST: usize = 1;
const AP_SOUTHEAST: usize = 2;

// ---------------------------------------------------------------------------------------------
// Zone files

/// One test's zone: the `[health]` keys, the target port of each region, extra keys for each
/// region's `health` table, and extra keys for `[steered.www]` (plus more tables after it).
struct ZoneSpec<'a> {
    health: &'a str,
    ports: [u16; 3],
    region_health: [&'a str; 3],
    www: &'a str,
    extra: &'a str,
    /// Also set each region's `port` to its target's port. HTTP probes currently ignore the
    /// port of `check-address` (see `http_probe_connects_to_the_check_address_port`), so the
    /// other tests set both; with `false` only `check-address` names the port.
    port_key: bool,
}

impl Default for ZoneSpec<'_> {
    fn default() -> Self {
        ZoneSpec {
            health: "",
            ports: [0; 3],
            region_health: ["", "", ""],
            www: "",
            extra: "",
            port_key: true,
        }
    }
}

/// `[health]` keys shared by most tests: HTTP, 200 ms interval, 100 ms timeout, rise = fall = 2.
const HTTP_HEALTH: &str = r#"check = "http"
path = "/health"
interval = 0.2
timeout = 0.1
rise = 2
fall = 2"#;

fn zone_text(spec: &ZoneSpec<'_>) -> String {
    let mut s = String::from(
        r#"zone = "probe.test."
records = '''
$TTL 3600
@    IN SOA ns1.probe.test. hostmaster.probe.test. ( 1 7200 3600 1209600 300 )
@    IN NS  ns1
ns1  IN A   127.0.0.53
'''

[health]
"#,
    );
    s.push_str(spec.health);
    s.push('\n');
    for (i, r) in REGIONS.iter().enumerate() {
        let port = spec.ports[i];
        let mut keys: Vec<String> = Vec::new();
        if spec.port_key {
            keys.push(format!("port = {port}"));
        }
        if !spec.region_health[i].is_empty() {
            keys.push(spec.region_health[i].to_string());
        }
        s.push_str(&format!(
            "\n[regions.{}]\nlocation = {{ lat = {}, lon = {} }}\n\
             endpoints = [{{ address = \"{}\", check-address = \"127.0.0.1:{port}\" }}]\n",
            r.name, r.lat, r.lon, r.address
        ));
        if !keys.is_empty() {
            s.push_str(&format!("health = {{ {} }}\n", keys.join(", ")));
        }
    }
    s.push_str(&format!(
        "\n[steered.www]\nregions = [\"us-east\", \"eu-west\", \"ap-southeast\"]\nttl = 60\n{}\n",
        spec.www
    ));
    s.push_str(spec.extra);
    s.push('\n');
    s
}

/// A new directory holding the zone file `probe.test.toml`.
fn write_zone(spec: &ZoneSpec<'_>) -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("probe.test.toml"), zone_text(spec)).expect("write zone");
    dir
}

/// Starts meridian on `dir`, with probe results in the log (debug) for failure messages.
fn serve(dir: &Path) -> Server {
    Server::start_with_env(dir, &[], &[("RUST_LOG", "info,meridian::health=debug")])
}

// ---------------------------------------------------------------------------------------------
// Queries

#[derive(Debug, Clone, PartialEq)]
struct Answer {
    /// A addresses, sorted.
    ips: Vec<IpAddr>,
    /// Lowest TTL of the A records.
    ttl: Option<u32>,
    /// ECS scope prefix of the response.
    scope: Option<u8>,
}

impl Answer {
    /// The region whose single endpoint is the whole answer, if so.
    fn region(&self) -> Option<&'static str> {
        match self.ips.as_slice() {
            [one] => REGIONS
                .iter()
                .find(|r| r.address.parse::<IpAddr>().ok() == Some(*one))
                .map(|r| r.name),
            _ => None,
        }
    }

    /// The answering region's name, or the addresses.
    fn describe(&self) -> String {
        match self.region() {
            Some(r) => format!("{r} (ttl {:?}, scope {:?})", self.ttl, self.scope),
            None => format!(
                "{:?} (ttl {:?}, scope {:?})",
                self.ips, self.ttl, self.scope
            ),
        }
    }
}

static NEXT_ID: AtomicU16 = AtomicU16::new(1);

/// Queries `name` A over UDP with ECS `client`. Retries twice if a datagram goes missing.
fn ask(server: SocketAddr, name: &str, client: &str) -> Answer {
    let mut msg = query_message(name, RecordType::A, Some(client), Some(1232));
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    msg.metadata.id = id;
    let packet = msg.to_vec().expect("query encodes");
    let udp = RawUdp::connect(server);
    for _ in 0..3 {
        let Some(bytes) = udp.exchange(&packet, QUERY_WAIT) else {
            continue;
        };
        let m = Message::from_vec(&bytes)
            .unwrap_or_else(|e| panic!("response does not decode ({e}): {bytes:02x?}"));
        assert_eq!(m.metadata.id, id, "response ID");
        let mut ips: Vec<IpAddr> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect();
        ips.sort();
        let ttl = m.answers.iter().map(|r| r.ttl).min();
        let scope = match m.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet)) {
            Some(EdnsOption::Subnet(s)) => Some(s.scope_prefix()),
            _ => None,
        };
        return Answer { ips, ttl, scope };
    }
    panic!("no response to {name} A (ECS {client}) from {server} in 3 tries");
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

// ---------------------------------------------------------------------------------------------
// Waits

/// Calls `check` every [`POLL`] until it returns `Some`, and returns that with the instant it
/// came; `None` after `limit`. Bounded in count as well as time.
fn poll_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<(T, Instant)> {
    let deadline = Instant::now() + limit;
    let max = limit.as_millis() / POLL.as_millis() + 2;
    for _ in 0..max {
        if let Some(v) = check() {
            return Some((v, Instant::now()));
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(POLL);
    }
    None
}

/// [`poll_for`], panicking with `what()` after `limit`.
fn poll_until<T>(
    limit: Duration,
    what: impl Fn() -> String,
    check: impl FnMut() -> Option<T>,
) -> (T, Instant) {
    poll_for(limit, check).unwrap_or_else(|| panic!("not within {limit:?}: {}", what()))
}

/// Waits until `client`'s answer for `name` is `region`; returns the instant it first was.
fn wait_region(
    server: &Server,
    name: &str,
    client: &str,
    region: usize,
    limit: Duration,
) -> Instant {
    let want = REGIONS[region].name;
    let mut last = None;
    let found = poll_for(limit, || {
        let a = ask(server.addr(), name, client);
        let ok = a.region() == Some(want);
        last = Some(a.describe());
        ok.then_some(())
    });
    match found {
        Some((_, at)) => at,
        None => panic!(
            "{client}'s answer for {name} did not become {want} within {limit:?}; last \
             {last:?}\nlog:\n{}",
            server.log_text()
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Logs

/// The `fields` of every JSON log line whose message is `message`.
fn events(server: &Server, message: &str) -> Vec<serde_json::Value> {
    server
        .log_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("fields").cloned())
        .filter(|f| f.get("message").and_then(|m| m.as_str()) == Some(message))
        .collect()
}

fn field<'v>(f: &'v serde_json::Value, key: &str) -> &'v str {
    f.get(key).and_then(|v| v.as_str()).unwrap_or("")
}

/// State changes of `message` ("endpoint state changed" or "region state changed") for
/// `region`, as (to, reason) pairs in log order.
fn changes(server: &Server, message: &str, region: &str) -> Vec<(String, String)> {
    events(server, message)
        .iter()
        .filter(|f| field(f, "region") == region)
        .map(|f| (field(f, "to").to_string(), field(f, "reason").to_string()))
        .collect()
}

/// Waits until `region` has `count` changes of `message`; returns them.
fn wait_changes(
    server: &Server,
    message: &str,
    region: &str,
    count: usize,
) -> Vec<(String, String)> {
    poll_until(
        SETTLE,
        || {
            format!(
                "{count} `{message}` lines for {region}\nlog:\n{}",
                server.log_text()
            )
        },
        || {
            let c = changes(server, message, region);
            (c.len() >= count).then_some(c)
        },
    )
    .0
}

/// The RTTs of `region`'s successful probes, in log order (from the debug `probe ok` lines).
fn probe_rtts(server: &Server, region: &str) -> Vec<String> {
    events(server, "probe ok")
        .iter()
        .filter(|f| field(f, "region") == region)
        .map(|f| field(f, "rtt").to_string())
        .collect()
}

/// Milliseconds of a logged RTT (`250ms`, `1.5s`, `2s`).
fn rtt_ms(s: &str) -> Option<f64> {
    if let Some(ms) = s.strip_suffix("ms") {
        ms.parse().ok()
    } else {
        s.strip_suffix('s')?.parse::<f64>().ok().map(|v| v * 1000.0)
    }
}

/// The last three baseline RTTs are within 3 ms of the lowest one seen.
fn quiet_baseline(rtts: &[String]) -> bool {
    let ms: Vec<f64> = rtts.iter().filter_map(|r| rtt_ms(r)).collect();
    let Some(min) = ms.iter().copied().reduce(f64::min) else {
        return false;
    };
    ms.len() >= 3 && ms[ms.len() - 3..].iter().all(|v| *v <= min + 3.0)
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------------------------
// Failover and recovery, HTTP and TCP

/// A target the failover test can stop and restart, counting what reaches it.
trait Target {
    fn port(&self) -> u16;
    fn stop(&mut self);
    fn restart(&mut self);
    /// Probes received (HTTP requests or TCP connections).
    fn hits(&self) -> u64;
}

impl Target for HttpTarget {
    fn port(&self) -> u16 {
        HttpTarget::port(self)
    }
    fn stop(&mut self) {
        HttpTarget::stop(self)
    }
    fn restart(&mut self) {
        HttpTarget::restart(self)
    }
    fn hits(&self) -> u64 {
        self.requests()
    }
}

impl Target for TcpTarget {
    fn port(&self) -> u16 {
        TcpTarget::port(self)
    }
    fn stop(&mut self) {
        TcpTarget::stop(self)
    }
    fn restart(&mut self) {
        TcpTarget::restart(self)
    }
    fn hits(&self) -> u64 {
        self.connections()
    }
}

/// Timings of the failover test.
const INTERVAL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_millis(100);
const RISE: u32 = 2;
const FALL: u32 = 2;

/// Stops eu-west's target, measures how long until the GB client moves to us-east, restarts
/// it and measures how long until the client comes back. `health` holds the `[health]` keys
/// (with [`INTERVAL`], [`TIMEOUT`], [`RISE`], [`FALL`]), `region_health` keys set in every
/// region's table.
fn failover_and_recovery<T: Target>(
    label: &str,
    health: &str,
    region_health: &str,
    mut targets: [T; 3],
) {
    let ports = [targets[0].port(), targets[1].port(), targets[2].port()];
    let dir = write_zone(&ZoneSpec {
        health,
        ports,
        region_health: [region_health; 3],
        ..ZoneSpec::default()
    });
    let server = serve(dir.path());

    // Baseline: every client at its nearest region, with probes flowing.
    for (client, region) in [(GB, EU_WEST), (US, US_EAST), (AU, AP_SOUTHEAST)] {
        wait_region(&server, WWW, client, region, SETTLE);
    }
    poll_until(
        SETTLE,
        || "eu-west's target to see 3 probes".into(),
        || (targets[EU_WEST].hits() >= 3).then_some(()),
    );
    assert!(
        changes(&server, "endpoint state changed", "eu-west").is_empty(),
        "{label}: no state change while healthy\nlog:\n{}",
        server.log_text()
    );

    // Detection.
    targets[EU_WEST].stop();
    let stopped = Instant::now();
    let bound = INTERVAL * FALL + TIMEOUT + INTERVAL;
    let moved = wait_region(&server, WWW, GB, US_EAST, bound + ALLOWANCE + SETTLE);
    let detection = moved - stopped;
    eprintln!(
        "{label}: detection {} (bound fall*interval + timeout + interval = {} + allowance {})",
        secs(detection),
        secs(bound),
        secs(ALLOWANCE)
    );
    assert!(
        detection <= bound + ALLOWANCE,
        "{label}: answers moved after {}, above {} + {}\nlog:\n{}",
        secs(detection),
        secs(bound),
        secs(ALLOWANCE),
        server.log_text()
    );
    // The other clients did not move.
    assert_eq!(ask(server.addr(), WWW, US).region(), Some("us-east"));
    assert_eq!(ask(server.addr(), WWW, AU).region(), Some("ap-southeast"));

    let endpoint = wait_changes(&server, "endpoint state changed", "eu-west", 1);
    let region = wait_changes(&server, "region state changed", "eu-west", 1);
    assert_eq!(
        endpoint.len(),
        1,
        "{label}: one endpoint line: {endpoint:?}"
    );
    assert_eq!(region.len(), 1, "{label}: one region line: {region:?}");
    assert_eq!(endpoint[0].0, "down", "{label}: endpoint went down");
    assert!(
        endpoint[0].1.contains("connect refused"),
        "{label}: reason {:?} names `connect refused`",
        endpoint[0].1
    );
    assert_eq!(region[0].0, "down", "{label}: region went down");

    // Recovery.
    let hits_before = targets[EU_WEST].hits();
    targets[EU_WEST].restart();
    let restarted = Instant::now();
    let bound = INTERVAL * RISE + TIMEOUT;
    let back = wait_region(&server, WWW, GB, EU_WEST, bound + ALLOWANCE + SETTLE);
    let recovery = back - restarted;
    let probes = targets[EU_WEST].hits() - hits_before;
    eprintln!(
        "{label}: recovery {} after {probes} probes (bound rise*interval + timeout = {} + \
         allowance {})",
        secs(recovery),
        secs(bound),
        secs(ALLOWANCE)
    );
    assert!(
        probes >= u64::from(RISE),
        "{label}: came back after {probes} probes, before rise = {RISE}"
    );
    assert!(
        recovery <= bound + ALLOWANCE,
        "{label}: answers came back after {}, above {} + {}\nlog:\n{}",
        secs(recovery),
        secs(bound),
        secs(ALLOWANCE),
        server.log_text()
    );
    let endpoint = wait_changes(&server, "endpoint state changed", "eu-west", 2);
    let region = wait_changes(&server, "region state changed", "eu-west", 2);
    assert_eq!(endpoint.len(), 2, "{label}: {endpoint:?}");
    assert_eq!(region.len(), 2, "{label}: {region:?}");
    assert_eq!(endpoint[1].0, "up", "{label}: endpoint came up");
    assert_eq!(
        endpoint[1].1,
        format!("{RISE} consecutive successful probes"),
        "{label}: up reason"
    );
    assert_eq!(region[1].0, "up", "{label}: region came up");
}

#[test]
fn failover_moves_answers_within_fall_times_interval() {
    let targets = [(); 3].map(|_| HttpTarget::builder().start());
    failover_and_recovery("http", HTTP_HEALTH, "", targets);
}

#[test]
fn tcp_failover_moves_answers_within_fall_times_interval() {
    let targets = [(); 3].map(|_| TcpTarget::start());
    // `check` and `port` per region: a zone-wide tcp check must name one port for all.
    let health = r#"interval = 0.2
timeout = 0.1
rise = 2
fall = 2"#;
    failover_and_recovery("tcp", health, r#"check = "tcp""#, targets);
}

// ---------------------------------------------------------------------------------------------
// Failure reasons

#[test]
fn http_failures_are_logged_with_their_reason() {
    let targets = [(); 3].map(|_| HttpTarget::builder().body("all ok").start());
    let health = format!("{HTTP_HEALTH}\nbody = \"ok\"");
    let dir = write_zone(&ZoneSpec {
        health: &health,
        ports: targets.each_ref().map(|t| t.port()),
        ..ZoneSpec::default()
    });
    let server = serve(dir.path());
    for (client, region) in [(GB, EU_WEST), (US, US_EAST), (AU, AP_SOUTHEAST)] {
        wait_region(&server, WWW, client, region, SETTLE);
    }
    poll_until(
        SETTLE,
        || "every target to see 2 probes".into(),
        || targets.iter().all(|t| t.requests() >= 2).then_some(()),
    );

    targets[EU_WEST].set_status(503);
    targets[US_EAST].set_body("nope");
    // Beyond the 100 ms timeout.
    targets[AP_SOUTHEAST].set_delay(Duration::from_millis(300));

    // Every region's first change, checked together so that one report shows all three.
    let mut got = Vec::new();
    let mut want = Vec::new();
    for (region, reason) in [
        ("eu-west", "status 503"),
        ("us-east", "body mismatch"),
        ("ap-southeast", "timeout after 100ms"),
    ] {
        let c = wait_changes(&server, "endpoint state changed", region, 1);
        got.push((region, c[0].0.clone(), c[0].1.clone()));
        want.push((region, "down".to_string(), reason.to_string()));
    }
    let failed: Vec<String> = events(&server, "probe failed")
        .iter()
        .map(|f| format!("{} {}", field(f, "region"), field(f, "reason")))
        .collect();
    assert_eq!(
        got, want,
        "(region, to, reason) of each endpoint's state change; every failed probe: {failed:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Degradation

#[test]
fn degraded_region_loses_its_clients() {
    let targets = [(); 3].map(|_| HttpTarget::builder().start());
    // EWMA weight 0.3: with a baseline near 1 ms and 80 ms of delay, the degradation after n
    // slow probes is about 80 * (1 - 0.7^n): 24 ms after one (below the 30 ms limit: one
    // slow probe must not move traffic), 41 ms after two. Back to fast, it decays by 0.7 per
    // probe and the limit clears below 30 - 5 = 25 ms.
    let health = r#"check = "http"
path = "/health"
interval = 0.2
timeout = 0.15
rise = 2
fall = 2
degradation-limit = 30
hysteresis = 5"#;
    let dir = write_zone(&ZoneSpec {
        health,
        ports: targets.each_ref().map(|t| t.port()),
        ..ZoneSpec::default()
    });
    let server = serve(dir.path());
    wait_region(&server, WWW, GB, EU_WEST, SETTLE);
    // Baselines: a rolling minimum and a settled average.
    poll_until(
        SETTLE,
        || "eu-west's target to see 6 probes".into(),
        || (targets[EU_WEST].requests() >= 6).then_some(()),
    );
    assert_eq!(ask(server.addr(), WWW, GB).region(), Some("eu-west"));

    let baseline = probe_rtts(&server, "eu-west");
    let before = targets[EU_WEST].requests();
    targets[EU_WEST].set_delay(Duration::from_millis(80));
    let slowed = Instant::now();
    let moved = wait_region(&server, WWW, GB, US_EAST, SETTLE);
    let slow_probes = targets[EU_WEST].requests() - before;
    eprintln!(
        "degradation: GB moved to us-east {} after eu-west slowed by 80 ms ({slow_probes} \
         slow probes received; baseline RTTs {baseline:?})",
        secs(moved - slowed)
    );
    let bound = INTERVAL * 3 + Duration::from_millis(80);
    assert!(
        moved - slowed <= bound + ALLOWANCE,
        "two slow probes put degradation past the limit: expected within 3 intervals + the \
         delay = {} + {}, took {}\nlog:\n{}",
        secs(bound),
        secs(ALLOWANCE),
        secs(moved - slowed),
        server.log_text()
    );
    // One slow probe moves the average by 0.3 * 80 = 24 ms, 6 ms short of the limit: that
    // holds only if the average sat near its minimum before. On a box so loaded that the
    // last baseline probes were already slow, say so instead of asserting it.
    let quiet = quiet_baseline(&baseline);
    if quiet {
        assert!(
            slow_probes >= 2,
            "one slow probe (degradation ~24 ms, limit 30 ms) must not move traffic; moved \
             after {slow_probes}; eu-west's probe RTTs: {:?}",
            probe_rtts(&server, "eu-west")
        );
    } else {
        eprintln!(
            "degradation: baseline RTTs {baseline:?} are noisy; not checking that one slow \
             probe keeps traffic (moved after {slow_probes})"
        );
    }
    // A slow region is still up: no state change.
    assert!(
        changes(&server, "endpoint state changed", "eu-west").is_empty(),
        "slow is not down\nlog:\n{}",
        server.log_text()
    );

    let before = targets[EU_WEST].requests();
    targets[EU_WEST].set_delay(Duration::ZERO);
    let fast = Instant::now();
    let back = wait_region(&server, WWW, GB, EU_WEST, SETTLE);
    eprintln!(
        "degradation: GB back to eu-west {} after the delay ended ({} fast probes received)",
        secs(back - fast),
        targets[EU_WEST].requests() - before
    );
    // At most ~53 ms of degradation (3 slow probes) falls below 30 - 5 ms in 3 fast probes.
    let bound = INTERVAL * 4;
    assert!(
        back - fast <= bound + ALLOWANCE,
        "expected back within 4 intervals = {} + {}, took {}",
        secs(bound),
        secs(ALLOWANCE),
        secs(back - fast)
    );
}

// ---------------------------------------------------------------------------------------------
// Every region down

#[test]
fn all_regions_down_uses_fallback() {
    let mut targets = [(); 3].map(|_| HttpTarget::builder().start());
    let dir = write_zone(&ZoneSpec {
        health: HTTP_HEALTH,
        ports: targets.each_ref().map(|t| t.port()),
        extra: r#"[steered.fixed]
regions = ["us-east", "eu-west", "ap-southeast"]
ttl = 60
fallback = ["127.9.9.9"]"#,
        ..ZoneSpec::default()
    });
    let server = serve(dir.path());
    let fixed = "fixed.probe.test.";
    wait_region(&server, WWW, GB, EU_WEST, SETTLE);
    wait_region(&server, fixed, GB, EU_WEST, SETTLE);

    for t in &mut targets {
        t.stop();
    }
    let all: Vec<IpAddr> = REGIONS.iter().map(|r| ip(r.address)).collect();
    for client in CLIENTS {
        let (a, _) = poll_until(
            SETTLE,
            || format!("{client}: fallback \"all\"\nlog:\n{}", server.log_text()),
            || {
                let a = ask(server.addr(), WWW, client);
                (a.ips == all).then_some(a)
            },
        );
        assert_eq!(a.ips, all, "{client}: every endpoint of every region");
        poll_until(
            SETTLE,
            || {
                format!(
                    "{client}: fallback [127.9.9.9]\nlog:\n{}",
                    server.log_text()
                )
            },
            || (ask(server.addr(), fixed, client).ips == [ip("127.9.9.9")]).then_some(()),
        );
    }
    for r in REGIONS {
        let c = changes(&server, "region state changed", r.name);
        assert_eq!(
            c.first().map(|c| c.0.as_str()),
            Some("down"),
            "{}: {c:?}",
            r.name
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Policy failover

#[test]
fn failover_policy() {
    let mut targets = [(); 3].map(|_| HttpTarget::builder().start());
    let dir = write_zone(&ZoneSpec {
        health: HTTP_HEALTH,
        ports: targets.each_ref().map(|t| t.port()),
        extra: r#"[steered.ha]
regions = ["ap-southeast", "eu-west", "us-east"]
policy = "failover"
ttl = 60"#,
        ..ZoneSpec::default()
    });
    let server = serve(dir.path());
    let ha = "ha.probe.test.";
    poll_until(
        SETTLE,
        || "every target to see 2 probes".into(),
        || targets.iter().all(|t| t.requests() >= 2).then_some(()),
    );
    for client in CLIENTS {
        let a = ask(server.addr(), ha, client);
        assert_eq!(
            a.region(),
            Some("ap-southeast"),
            "{client}: {}",
            a.describe()
        );
        assert_eq!(a.scope, Some(0), "{client}: the same for every client");
    }

    targets[AP_SOUTHEAST].stop();
    let stopped = Instant::now();
    let moved = wait_region(&server, ha, AU, EU_WEST, SETTLE);
    eprintln!(
        "failover policy: ap-southeast -> eu-west in {}",
        secs(moved - stopped)
    );
    for client in CLIENTS {
        let a = ask(server.addr(), ha, client);
        assert_eq!(a.region(), Some("eu-west"), "{client}: {}", a.describe());
        assert_eq!(a.scope, Some(0), "{client}: the same for every client");
    }
}

// ---------------------------------------------------------------------------------------------
// Flapping

#[test]
fn flapping_endpoint_does_not_move_answers_on_every_probe() {
    // Odd-numbered requests get 503: up, down, up, down... never `fall` = 2 failures in a row.
    let targets = [
        HttpTarget::builder().start(),
        HttpTarget::builder().flapping(true).start(),
        HttpTarget::builder().start(),
    ];
    let health = r#"check = "http"
path = "/health"
interval = 0.1
timeout = 0.05
rise = 2
fall = 2"#;
    let dir = write_zone(&ZoneSpec {
        health,
        ports: targets.each_ref().map(|t| t.port()),
        ..ZoneSpec::default()
    });
    let server = serve(dir.path());
    let first = ask(server.addr(), WWW, GB);
    assert_eq!(first.region(), Some("eu-west"), "{}", first.describe());

    // 30 probe intervals, counted at the target.
    let start = targets[EU_WEST].requests();
    let mut answers = 0;
    let mut ttls = std::collections::BTreeSet::new();
    poll_until(
        SETTLE,
        || "30 probes of the flapping target".into(),
        || {
            let a = ask(server.addr(), WWW, GB);
            answers += 1;
            assert_eq!(
                a.ips,
                first.ips,
                "query {answers}: the answer moved\nlog:\n{}",
                server.log_text()
            );
            ttls.extend(a.ttl);
            (targets[EU_WEST].requests() - start >= 30).then_some(())
        },
    );
    eprintln!(
        "flapping: {answers} answers over {} probes, all eu-west; TTLs seen {ttls:?}",
        targets[EU_WEST].requests() - start
    );
    assert!(
        changes(&server, "endpoint state changed", "eu-west").is_empty(),
        "no state change\nlog:\n{}",
        server.log_text()
    );
}

// ---------------------------------------------------------------------------------------------
// Trouble TTL

#[test]
fn trouble_ttl() {
    let mut targets = [(); 3].map(|_| HttpTarget::builder().start());
    let dir = write_zone(&ZoneSpec {
        health: HTTP_HEALTH,
        ports: targets.each_ref().map(|t| t.port()),
        www: "trouble-ttl = 3",
        ..ZoneSpec::default()
    });
    let server = serve(dir.path());
    poll_until(
        SETTLE,
        || {
            format!(
                "a settled eu-west answer with TTL 60\nlog:\n{}",
                server.log_text()
            )
        },
        || {
            let a = ask(server.addr(), WWW, GB);
            (a.region() == Some("eu-west") && a.ttl == Some(60)).then_some(())
        },
    );

    targets[EU_WEST].stop();
    let stopped = Instant::now();
    let seen = answers_until(&server, (Some("us-east"), Some(60)));
    eprintln!(
        "trouble ttl: answers while failing over {seen:?}, settled after {}",
        secs(stopped.elapsed())
    );
    assert_short_while_in_trouble(&seen);
    assert!(
        seen.contains(&(Some("eu-west"), Some(3))),
        "after the first failed probe, before the transition, the TTL is already short: \
         {seen:?}"
    );
    assert!(
        seen.contains(&(Some("us-east"), Some(3))),
        "the new answer first carries the trouble TTL: {seen:?}"
    );

    // And back.
    targets[EU_WEST].restart();
    let restarted = Instant::now();
    let seen = answers_until(&server, (Some("eu-west"), Some(60)));
    eprintln!(
        "trouble ttl: answers while recovering {seen:?}, settled after {}",
        secs(restarted.elapsed())
    );
    assert_short_while_in_trouble(&seen);
    assert!(
        seen.contains(&(Some("eu-west"), Some(3))),
        "the recovered answer first carries the trouble TTL: {seen:?}"
    );
}

/// (answering region, TTL) of a GB answer.
type Seen = (Option<&'static str>, Option<u32>);

/// The GB client's answers, deduplicated in order, until `want`.
fn answers_until(server: &Server, want: Seen) -> Vec<Seen> {
    let mut seen: Vec<Seen> = Vec::new();
    let done = poll_for(SETTLE, || {
        let a = ask(server.addr(), WWW, GB);
        let key = (a.region(), a.ttl);
        if seen.last() != Some(&key) {
            seen.push(key);
        }
        (key == want).then_some(())
    });
    assert!(
        done.is_some(),
        "no {want:?} within {SETTLE:?}; seen {seen:?}\nlog:\n{}",
        server.log_text()
    );
    seen
}

/// Once the TTL is short, it stays short until the final, settled answer.
fn assert_short_while_in_trouble(seen: &[Seen]) {
    let first_short = seen
        .iter()
        .position(|s| s.1 == Some(3))
        .unwrap_or_else(|| panic!("no answer carried the trouble TTL 3: {seen:?}"));
    let settled = seen.len() - 1;
    assert!(
        seen[first_short..settled].iter().all(|s| s.1 == Some(3)),
        "the TTL went back to 60 before the name settled: {seen:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Start state

#[test]
fn start_down_region_is_not_answered_before_rise_probes() {
    // A healthy target from the start: only the start state keeps eu-west out.
    let targets = [(); 3].map(|_| HttpTarget::builder().start());
    let health = r#"check = "http"
path = "/health"
interval = 0.3
timeout = 0.1
rise = 2
fall = 2"#;
    let dir = write_zone(&ZoneSpec {
        health,
        ports: targets.each_ref().map(|t| t.port()),
        region_health: ["", r#"start = "down""#, ""],
        ..ZoneSpec::default()
    });
    let server = serve(dir.path());

    // Until eu-west's target has answered `rise` probes successfully, it cannot be up: a
    // success counted after this read cannot have been recorded before the query.
    let mut early = 0;
    poll_until(
        SETTLE,
        || format!("eu-west to come up\nlog:\n{}", server.log_text()),
        || {
            let ok = targets[EU_WEST].successes();
            let a = ask(server.addr(), WWW, GB);
            if ok < 2 {
                early += 1;
                assert_eq!(
                    a.region(),
                    Some("us-east"),
                    "after {ok} successful probes eu-west (start = \"down\", rise = 2) \
                     answered\nlog:\n{}",
                    server.log_text()
                );
            }
            (a.region() == Some("eu-west")).then_some(())
        },
    );
    assert!(
        early > 0,
        "no query landed before eu-west's second probe: the test proved nothing"
    );
    eprintln!(
        "start down: {early} answers before rise probes all us-east; eu-west answered after \
         {} successful probes",
        targets[EU_WEST].successes()
    );
    let c = wait_changes(&server, "endpoint state changed", "eu-west", 1);
    assert_eq!(
        c,
        [(
            "up".to_string(),
            "2 consecutive successful probes".to_string()
        )],
        "eu-west's endpoint: one change, down to up"
    );
    let c = wait_changes(&server, "region state changed", "eu-west", 1);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].0, "up", "eu-west's region came up");
}

// ---------------------------------------------------------------------------------------------
// meridian route --probe

/// Runs `meridian route --probe` for the GB client; returns stdout. Killed after 20 s.
fn route_probe(dir: &Path) -> String {
    let (status, stdout, stderr) = route_probe_within(dir, None);
    assert!(
        status.success(),
        "meridian route failed ({status}):\n{stdout}\n{stderr}"
    );
    stdout
}

/// Runs `meridian route --probe` for the GB client, with the soft open-file limit `nofile`
/// if given; returns how it exited, stdout and stderr. Killed after 20 s.
fn route_probe_within(
    dir: &Path,
    nofile: Option<u64>,
) -> (std::process::ExitStatus, String, String) {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(env!("CARGO_BIN_EXE_meridian"));
    command
        .args([
            "route",
            "--name",
            "www.probe.test",
            "--client",
            GB,
            "--zones",
        ])
        .arg(dir)
        .arg("--probe")
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(soft) = nofile {
        // SAFETY: the closure runs in the child between fork and exec and calls only
        // getrlimit(2) and setrlimit(2), which are async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                let mut limit = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0
                    || libc::setrlimit(
                        libc::RLIMIT_NOFILE,
                        &libc::rlimit {
                            rlim_cur: soft,
                            rlim_max: limit.rlim_max,
                        },
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command.spawn().expect("spawn meridian route");
    let (status, _) = poll_until(
        Duration::from_secs(20),
        || "meridian route --probe to finish".into(),
        || child.try_wait().expect("try_wait"),
    );
    let out = child.wait_with_output().expect("route output");
    (
        status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The first line about `address` (the A section comes first).
fn endpoint_line<'o>(out: &'o str, address: &str) -> &'o str {
    out.lines()
        .find(|l| l.trim_start().starts_with(address))
        .unwrap_or_else(|| panic!("no line for {address}:\n{out}"))
}

#[test]
fn route_probe_shows_probe_results() {
    let mut targets = [(); 3].map(|_| HttpTarget::builder().start());
    let dir = write_zone(&ZoneSpec {
        health: HTTP_HEALTH,
        ports: targets.each_ref().map(|t| t.port()),
        ..ZoneSpec::default()
    });

    let out = route_probe(dir.path());
    let eu = endpoint_line(&out, "127.0.2.1");
    assert!(eu.contains("probe ok"), "eu-west probed ok: {eu}\n{out}");
    assert!(
        eu.contains(&format!("via 127.0.0.1:{}", targets[EU_WEST].port())),
        "{eu}"
    );
    assert!(
        out.contains("answer: www.probe.test. 60 IN A 127.0.2.1"),
        "eu-west answers:\n{out}"
    );
    assert!(
        targets[EU_WEST].requests() >= 1,
        "the probe reached eu-west's target"
    );

    targets[EU_WEST].stop();
    let out = route_probe(dir.path());
    let eu = endpoint_line(&out, "127.0.2.1");
    assert!(
        eu.contains("probe failed: connect refused"),
        "eu-west probe failed: {eu}\n{out}"
    );
    assert!(
        out.contains("answer: www.probe.test. 60 IN A 127.0.1.1"),
        "the next region, us-east, answers:\n{out}"
    );
    let us_line = out
        .lines()
        .find(|l| l.contains("us-east"))
        .expect("us-east candidate");
    assert!(us_line.contains("<- answers"), "{us_line}\n{out}");
}

/// `meridian route --probe` on a host out of descriptors: a probe it cannot make (EMFILE) is
/// shown as a local fault, and the endpoint and its region are not failed for it (before: the
/// line said "probe failed: this node cannot probe: EMFILE", the region went down and the
/// answer moved). The open-file limit is raised one at a time from where the command cannot
/// even read its zone to where every probe has its socket; in between, some probes find no
/// descriptor.
#[test]
fn route_probe_shows_a_probe_this_host_cannot_make_as_a_local_fault() {
    let targets = [(); 3].map(|_| TcpTarget::start());
    let dir = write_zone(&ZoneSpec {
        health: "interval = 1\ntimeout = 0.5\nrise = 2\nfall = 2",
        ports: targets.each_ref().map(|t| t.port()),
        region_health: [r#"check = "tcp""#; 3],
        ..ZoneSpec::default()
    });
    let mut seen = Vec::new();
    for nofile in 4..=64u64 {
        let (status, out, err) = route_probe_within(dir.path(), Some(nofile));
        if !status.success() {
            // Too few descriptors to read the zone or start the runtime: a clean error.
            assert!(
                status.code() == Some(1) && err.contains("Too many open files"),
                "limit {nofile}: {status}\n{out}\n{err}"
            );
            continue;
        }
        let eu = endpoint_line(&out, "127.0.2.1");
        if eu.contains("probe ok") {
            break;
        }
        assert!(
            eu.contains("local fault: this node cannot probe: EMFILE"),
            "limit {nofile}: eu-west's probe had no descriptor: {eu}\n{out}"
        );
        assert!(!eu.contains("probe failed"), "limit {nofile}: {eu}\n{out}");
        assert!(
            eu.contains(" up   check tcp"),
            "limit {nofile}: a local fault does not take the endpoint down: {eu}\n{out}"
        );
        assert!(
            out.contains("answer: www.probe.test. 60 IN A 127.0.2.1"),
            "limit {nofile}: GB is still answered by eu-west:\n{out}"
        );
        seen.push(nofile);
    }
    assert!(
        !seen.is_empty(),
        "no open-file limit left the route command running with eu-west's probe short of a \
         descriptor"
    );
}

// ---------------------------------------------------------------------------------------------
// check-address

/// The README: probes connect to `check-address` ("10.0.0.5:8080") when the health check
/// lives elsewhere. Here only `check-address` names the target's port (no `port` key).
#[test]
fn http_probe_connects_to_the_check_address_port() {
    let targets = [(); 3].map(|_| HttpTarget::builder().start());
    let dir = write_zone(&ZoneSpec {
        health: HTTP_HEALTH,
        ports: targets.each_ref().map(|t| t.port()),
        port_key: false,
        ..ZoneSpec::default()
    });
    let server = serve(dir.path());
    let limit = INTERVAL * 10;
    let reached = poll_for(limit, || (targets[EU_WEST].requests() >= 2).then_some(()));
    if reached.is_none() {
        let probes: Vec<String> = events(&server, "probe failed")
            .iter()
            .filter(|f| field(f, "region") == "eu-west")
            .take(3)
            .map(|f| field(f, "reason").to_string())
            .collect();
        let out = route_probe(dir.path());
        panic!(
            "no probe reached eu-west's target 127.0.0.1:{} (its check-address) in {limit:?}; \
             probes failed with {probes:?}; GB is answered {}; `meridian route --probe` says:\n{}",
            targets[EU_WEST].port(),
            ask(server.addr(), WWW, GB).describe(),
            endpoint_line(&out, "127.0.2.1"),
        );
    }
    assert_eq!(ask(server.addr(), WWW, GB).region(), Some("eu-west"));
}

/// With `isolation-guard = true`, every probed region failing at once reads as this
/// nameserver being cut off: the last good state keeps serving (clients stay on their nearest
/// region, no fallback) and the log says so; when a target answers again, probes rule again.
#[test]
fn isolation_guard_keeps_the_last_good_state_when_every_region_fails_at_once() {
    let mut targets = [(); 3].map(|_| HttpTarget::builder().start());
    let dir = tempfile::tempdir().expect("temp dir");
    let text = zone_text(&ZoneSpec {
        health: HTTP_HEALTH,
        ports: targets.each_ref().map(|t| t.port()),
        ..ZoneSpec::default()
    })
    .replacen(
        "zone = \"probe.test.\"\n",
        "zone = \"probe.test.\"\nisolation-guard = true\n",
        1,
    );
    std::fs::write(dir.path().join("probe.test.toml"), text).expect("write zone");
    let server = serve(dir.path());
    wait_region(&server, WWW, GB, EU_WEST, SETTLE);

    for t in &mut targets {
        t.stop();
    }
    poll_until(
        SETTLE,
        || format!("isolation not detected\nlog:\n{}", server.log_text()),
        || server.log_text().contains("looks cut off").then_some(()),
    );
    for client in CLIENTS {
        let a = ask(server.addr(), WWW, client);
        assert_eq!(
            a.ips.len(),
            1,
            "{client}: still one region, not the fallback: {a:?}"
        );
    }
    assert_eq!(
        ask(server.addr(), WWW, GB).region(),
        Some(REGIONS[EU_WEST].name)
    );

    targets[1].restart();
    poll_until(
        SETTLE,
        || format!("recovery not logged\nlog:\n{}", server.log_text()),
        || server.log_text().contains("reachable again").then_some(()),
    );
}

// ---------------------------------------------------------------------------------------------
// File descriptors: the admin side cannot starve the probes, and a probe this node cannot
// make is not held against its target.

/// The admin listener's connection cap and header timeout (`meridian::admin`).
const ADMIN_CONNECTIONS: usize = 64;
const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long detection takes (`fall × interval + timeout + interval`) plus [`ALLOWANCE`]: had
/// the probes been failing, answers would have moved by then.
fn detection() -> Duration {
    INTERVAL * (FALL + 1) + TIMEOUT + ALLOWANCE
}

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Sets the soft open-file limit of process `pid` (a process of this user: no privilege
/// needed), keeping its hard limit; returns the soft limit it had.
fn set_open_file_limit(pid: u32, soft: u64) -> u64 {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit(2) with a live child's pid, no new limit and a valid out pointer.
    let r = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut old,
        )
    };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: as above, with a valid new limit and no out pointer.
    let r = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &new,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
    old.rlim_cur
}

/// Under an open-file limit too low to start, `meridian serve` says so and exits 1, at every
/// limit: tokio panicked (exit 101) when its signal driver found no descriptor (before: at a
/// limit of 8). The limit is raised one at a time until the server runs.
#[test]
fn too_few_descriptors_to_start_is_an_error_not_a_panic() {
    use std::os::unix::process::CommandExt;
    let dir = write_zone(&ZoneSpec::default());
    let state = tempfile::tempdir().expect("temp dir");
    let mut refused = Vec::new();
    for limit in 4..=64u64 {
        let mut command = Command::new(env!("CARGO_BIN_EXE_meridian"));
        command
            .args([
                "serve",
                "--dns-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--zones")
            .arg(dir.path())
            .arg("--state-dir")
            .arg(state.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the child between fork and exec and calls only
        // setrlimit(2), which is async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                let both = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &both) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().expect("spawn meridian serve");
        let status = poll_for(Duration::from_secs(3), || {
            child.try_wait().expect("try_wait")
        });
        let Some((status, _)) = status else {
            // It runs: every lower limit was refused cleanly.
            let _ = child.kill();
            let _ = child.wait();
            break;
        };
        let out = child.wait_with_output().expect("stderr");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            status.code() == Some(1) && stderr.contains("Too many open files"),
            "limit {limit}: {status}\n{stderr}"
        );
        refused.push(limit);
    }
    assert!(
        refused.len() > 1 && refused.len() < 61,
        "refused at {refused:?}: the limits tried do not span the start"
    );
}

/// Polls every client's answer for `watch`: each must stay at its nearest region.
fn answers_stay(server: &Server, watch: Duration, what: &str) {
    let until = Instant::now() + watch;
    while Instant::now() < until {
        for (client, region) in [(GB, EU_WEST), (US, US_EAST), (AU, AP_SOUTHEAST)] {
            let a = ask(server.addr(), WWW, client);
            assert_eq!(
                a.region(),
                Some(REGIONS[region].name),
                "{client} moved to {} {what}\nlog:\n{}",
                a.describe(),
                server.log_text()
            );
        }
        std::thread::sleep(POLL);
    }
}

/// One admin connection kept open (HTTP/1.1 keep-alive), so that the API can be read while
/// the server can open no new descriptor.
struct KeepAlive {
    stream: std::net::TcpStream,
    host: SocketAddr,
}

impl KeepAlive {
    fn connect(addr: SocketAddr) -> KeepAlive {
        let stream = std::net::TcpStream::connect(addr).expect("connect to the admin API");
        stream.set_read_timeout(Some(SETTLE)).expect("read timeout");
        KeepAlive { stream, host: addr }
    }

    /// GET `path`: the status and the body.
    fn get(&mut self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        write!(
            self.stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n",
            self.host
        )
        .expect("write the request");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = self.stream.read(&mut byte).expect("read the response head");
            assert_eq!(
                n,
                1,
                "the connection closed: {}",
                String::from_utf8_lossy(&head)
            );
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_lowercase();
        let status = head[9..12].parse().expect("a status code");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .expect("a content length")
            .trim()
            .parse()
            .expect("a number");
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).expect("read the body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// Half-sent requests to the admin API once took a descriptor each, until the probes failed
/// with EMFILE, every region went down and every client got the fallback. The admin listener
/// now holds at most its cap of connections, far below the open-file limit, and cuts off a
/// request head not sent within the header timeout.
#[test]
fn half_sent_admin_requests_cannot_starve_the_probes() {
    use std::io::{ErrorKind, Read, Write};
    let targets = [(); 3].map(|_| TcpTarget::start());
    let health = "interval = 0.2\ntimeout = 0.1\nrise = 2\nfall = 2";
    let dir = write_zone(&ZoneSpec {
        health,
        ports: targets.each_ref().map(|t| t.port()),
        region_health: [r#"check = "tcp""#; 3],
        ..ZoneSpec::default()
    });
    let server = serve(dir.path());
    for (client, region) in [(GB, EU_WEST), (US, US_EAST), (AU, AP_SOUTHEAST)] {
        wait_region(&server, WWW, client, region, SETTLE);
    }
    let pid = server.pid();
    let baseline = open_fds(pid);
    // Room for the admin cap and the probes, not for a descriptor per attacking connection.
    let limit = baseline + ADMIN_CONNECTIONS + 40;
    set_open_file_limit(pid, limit as u64);

    let admin = server.admin_addr();
    let mut held = Vec::new();
    for i in 0..limit + 50 {
        // From eight /24s of 127/8, so that the connection cap is met before any network's
        // share of it (`one_client_network_cannot_take_every_admin_connection`).
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let from: SocketAddr = format!("127.0.{}.1:0", i % 8 + 1).parse().unwrap();
        socket.bind(&from.into()).expect("bind a client address");
        if socket
            .connect_timeout(&admin.into(), Duration::from_millis(500))
            .is_err()
        {
            continue;
        }
        let mut s: std::net::TcpStream = socket.into();
        let _ = s.write_all(b"GET /api/v1/regions HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        held.push(s);
    }
    let mut peak = 0;
    let until = Instant::now() + detection() * 3;
    while Instant::now() < until {
        answers_stay(&server, POLL, "while the admin port was flooded");
        peak = peak.max(open_fds(pid));
    }
    assert!(
        peak <= baseline + ADMIN_CONNECTIONS + 16,
        "{} connections held {peak} descriptors (baseline {baseline})",
        held.len()
    );

    // The header timeout frees the slots: connections that never finish their head are cut.
    for s in &held {
        s.set_nonblocking(true).expect("nonblocking");
    }
    // Closed (EOF or reset) or answered, not still waiting.
    let cut = |s: &mut std::net::TcpStream| {
        let mut buf = [0u8; 64];
        !matches!(s.read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock)
    };
    poll_until(
        ADMIN_HEADER_TIMEOUT + SETTLE,
        || "no half-sent request was cut off".into(),
        || held.iter_mut().any(cut).then_some(()),
    );
    drop(held);
    answers_stay(&server, POLL, "after the flood");
}

/// A probe that fails for a reason of this node (here EMFILE: the server's open-file limit
/// is lowered under its open descriptors) says nothing about its target: the targets keep
/// their state, the node says what is wrong (a warning, a metric, the endpoint's detail in
/// the API), and the probes resume when descriptors are back.
#[test]
fn a_probe_this_node_cannot_make_does_not_take_its_target_down() {
    let targets = [(); 3].map(|_| HttpTarget::builder().start());
    let dir = write_zone(&ZoneSpec {
        health: HTTP_HEALTH,
        ports: targets.each_ref().map(|t| t.port()),
        ..ZoneSpec::default()
    });
    let server = serve(dir.path());
    for (client, region) in [(GB, EU_WEST), (US, US_EAST), (AU, AP_SOUTHEAST)] {
        wait_region(&server, WWW, client, region, SETTLE);
    }
    let mut api = KeepAlive::connect(server.admin_addr());
    assert_eq!(api.get("/healthz").0, 200);

    let pid = server.pid();
    // Descriptor 0 is open, so no descriptor is free: every socket() fails with EMFILE.
    let soft = set_open_file_limit(pid, 1);
    answers_stay(&server, detection() * 3, "while this node could not probe");

    let (status, body) = api.get("/api/v1/regions");
    assert_eq!(status, 200, "{body}");
    let regions: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    for r in regions.as_array().expect("a list") {
        for e in r["endpoints"].as_array().expect("endpoints") {
            let local = e["probe"]["local_error"].as_str().unwrap_or_default();
            assert!(local.contains("EMFILE"), "{}: {e}", r["region"]);
            assert_eq!(e["probe"]["up"], true, "{}: {e}", r["region"]);
        }
    }
    let (_, metrics) = api.get("/metrics");
    let failures = metrics
        .lines()
        .find_map(|l| l.strip_prefix("meridian_probe_local_failures_total{errno=\"EMFILE\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(failures > 0, "{metrics}");
    let warned = server.log_lines().iter().any(|l| {
        l.contains("\"level\":\"WARN\"") && l.contains("EMFILE") && l.contains("this node")
    });
    assert!(warned, "no warning\nlog:\n{}", server.log_text());

    set_open_file_limit(pid, soft);
    poll_until(
        SETTLE,
        || format!("the probes did not resume\nlog:\n{}", server.log_text()),
        || {
            let (_, body) = api.get("/api/v1/regions");
            (!body.contains("EMFILE")).then_some(())
        },
    );
    answers_stay(&server, POLL, "once the probes resumed");
}
