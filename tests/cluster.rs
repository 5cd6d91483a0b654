//! Several nameservers, one mind: three Meridian nodes sharing overrides and probe
//! observations through a real three-member etcd cluster on loopback (Debian's
//! `etcd-server`, installed by `scripts/setup.sh`), each member on ephemeral ports with
//! short heartbeat and election times and its data in a temporary directory. Every process
//! is killed on drop (also when a test panics); every wait has a deadline.

mod common;

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::browser::{Driver, Session, base64_decode};
use common::probe_targets::HttpTarget;
use common::{RawUdp, Server, wire};
use hickory_proto::op::Message;
use hickory_proto::rr::RData;
use serde_json::Value;
use tempfile::TempDir;

const TOKEN: &str = "cluster-test-secret-0123456";
/// Where a GB client goes while eu-west is up, and where it goes when eu-west is out.
const EU_WEST: Ipv4Addr = Ipv4Addr::new(127, 0, 2, 1);
const US_EAST: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 1);
const DRAIN: &str = "/api/v1/zones/probe.test/regions/eu-west/drain";
const UNDRAIN: &str = "/api/v1/zones/probe.test/regions/eu-west/undrain";

// ---------------------------------------------------------------------------------------------
// etcd

/// A free loopback port (bound, then released for etcd to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

struct Member {
    client_url: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn start(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the etcd log file");
        let child = Command::new("etcd")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log handle"))
            .stderr(log)
            .spawn()
            .expect("etcd runs (scripts/setup.sh installs etcd-server)");
        self.child = Some(child);
    }

    /// SIGKILL, and reaped.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A three-member etcd cluster on loopback.
struct Etcd {
    members: Vec<Member>,
    _dir: TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        Etcd::start_also_on(None)
    }

    /// Three members listening for clients on 127.0.0.1 and, when given, on `also` (another
    /// loopback address, which a firewall rule can cut off for the nodes that use it).
    fn start_also_on(also: Option<&str>) -> Etcd {
        let dir = tempfile::tempdir().expect("a temp dir");
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let token = format!("meridian-test-{}", ports[0].0);
        let mut members: Vec<Member> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let client_url = format!("http://127.0.0.1:{client}");
                let listen = match also {
                    Some(ip) => format!("{client_url},http://{ip}:{client}"),
                    None => client_url.clone(),
                };
                let peer_url = format!("http://127.0.0.1:{peer}");
                let data = dir.path().join(format!("m{i}"));
                let args = [
                    "--name",
                    &format!("m{i}"),
                    "--data-dir",
                    data.to_str().expect("a UTF-8 path"),
                    "--listen-client-urls",
                    &listen,
                    "--advertise-client-urls",
                    &client_url,
                    "--listen-peer-urls",
                    &peer_url,
                    "--initial-advertise-peer-urls",
                    &peer_url,
                    "--initial-cluster",
                    &initial.join(","),
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    &token,
                    "--heartbeat-interval",
                    "50",
                    "--election-timeout",
                    "500",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                Member {
                    client_url,
                    args,
                    log: dir.path().join(format!("m{i}.log")),
                    child: None,
                }
            })
            .collect();
        for m in &mut members {
            m.start();
        }
        Etcd { members, _dir: dir }
    }

    fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Waits (at most 20 s) until a linearizable read succeeds: a leader and a quorum.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = async {
                let mut c = etcd_client::Client::connect(self.endpoints(), None)
                    .await
                    .ok()?;
                tokio::time::timeout(Duration::from_secs(1), c.get("/ready", None))
                    .await
                    .ok()?
                    .ok()
            }
            .await;
            if ok.is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not get a leader in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The index of the member that leads.
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for (i, m) in self.members.iter().enumerate() {
                if m.child.is_none() {
                    continue;
                }
                let Ok(mut c) = etcd_client::Client::connect([&m.client_url], None).await else {
                    continue;
                };
                if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(1), c.status()).await
                    && s.header().is_some_and(|h| h.member_id() == s.leader())
                {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no etcd leader found in 10 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether etcd holds a drain of eu-west.
    async fn drained(&self) -> bool {
        !self
            .client()
            .await
            .get("/meridian/overrides/drain/probe.test./eu-west", None)
            .await
            .expect("a read")
            .kvs()
            .is_empty()
    }

    /// A client on every member, for writing by hand.
    async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect(self.endpoints(), None)
            .await
            .expect("an etcd client")
    }
}

/// What most tests start with: two healthy probe targets (us-east's and eu-west's) and a
/// three-member etcd cluster with a leader.
struct Lab {
    /// Serving until the test ends.
    _targets: [HttpTarget; 2],
    ports: [u16; 2],
    etcd: Etcd,
}

impl Lab {
    async fn start() -> Lab {
        meridian::health::probe::install_crypto_provider();
        let (us, eu) = (HttpTarget::builder().start(), HttpTarget::builder().start());
        let etcd = Etcd::start();
        etcd.wait_ready().await;
        Lab {
            ports: [us.port(), eu.port()],
            _targets: [us, eu],
            etcd,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Meridian nodes

/// The zone: us-east and eu-west probed over HTTP at `ports` (every 200 ms, fall 2), each
/// endpoint's check address on loopback.
fn zone_text(ports: [u16; 2]) -> String {
    format!(
        r#"zone = "probe.test."
records = '''
$TTL 3600
@    IN SOA ns1.probe.test. hostmaster.probe.test. ( 1 7200 3600 1209600 300 )
@    IN NS  ns1
ns1  IN A   127.0.0.53
'''

[health]
check = "http"
path = "/health"
interval = 0.2
timeout = 0.1
rise = 2
fall = 2

[regions.us-east]
location = {{ lat = 39.04, lon = -77.49 }}
endpoints = [{{ address = "127.0.1.1", check-address = "127.0.0.1:{0}" }}]
health = {{ port = {0} }}

[regions.eu-west]
location = {{ lat = 53.35, lon = -6.26 }}
endpoints = [{{ address = "127.0.2.1", check-address = "127.0.0.1:{1}" }}]
health = {{ port = {1} }}

[steered.www]
regions = ["us-east", "eu-west"]
ttl = 60
"#,
        ports[0], ports[1]
    )
}

/// One node's files: zones, config, token file, state directory.
struct NodeFiles {
    dir: TempDir,
}

impl NodeFiles {
    fn new(name: &str, endpoints: &[String], ports: [u16; 2], extra: &str) -> NodeFiles {
        let dir = tempfile::tempdir().expect("a temp dir");
        let zones = dir.path().join("zones");
        std::fs::create_dir(&zones).expect("zones dir");
        std::fs::write(zones.join("probe.test.toml"), zone_text(ports)).expect("zone file");
        std::fs::write(dir.path().join("tokens"), format!("ops:{TOKEN}\n")).expect("tokens");
        let quoted: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
        std::fs::write(
            dir.path().join("meridian.toml"),
            format!(
                "[cluster]\nnode = \"{name}\"\nendpoints = [{}]\nlease-ttl = 2\n{extra}",
                quoted.join(", ")
            ),
        )
        .expect("config");
        NodeFiles { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir
            .path()
            .join(name)
            .to_str()
            .expect("a UTF-8 path")
            .to_string()
    }

    fn start(&self) -> Node {
        self.start_with(&[])
    }

    /// [`NodeFiles::start`] with more flags.
    fn start_with(&self, more: &[&str]) -> Node {
        let (config, tokens, state) = (
            self.path("meridian.toml"),
            self.path("tokens"),
            self.path("state"),
        );
        let mut args = vec![
            "--config",
            &config,
            "--admin-token-file",
            &tokens,
            "--state-dir",
            &state,
        ];
        args.extend_from_slice(more);
        let server = Server::start_with_env(
            Path::new(&self.path("zones")),
            &args,
            &[("RUST_LOG", "info")],
        );
        let base = format!("http://{}", server.admin_addr());
        Node {
            udp: RawUdp::connect(server.addr()),
            server,
            http: reqwest::Client::new(),
            base,
        }
    }
}

struct Node {
    server: Server,
    udp: RawUdp,
    http: reqwest::Client,
    base: String,
}

/// The A answer of www.probe.test for a GB client (ECS 81.2.69.0/24), `None` when no
/// answer came within 1 s.
fn www(udp: &RawUdp) -> Option<Vec<Ipv4Addr>> {
    let opt = wire::opt(1232, 0, false, &[wire::ecs(1, 24, 0, &[81, 2, 69])]);
    let id = (Instant::now().elapsed().subsec_nanos() & 0xffff) as u16;
    let packet = wire::query(id, "www.probe.test.", wire::QTYPE_A, Some(opt));
    let reply = udp.exchange(&packet, Duration::from_secs(1))?;
    let m = Message::from_vec(&reply).ok()?;
    Some(
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect(),
    )
}

/// The A answer of www.probe.test for a client in the ECS /24 of `net`.
fn www_for(udp: &RawUdp, net: [u8; 3]) -> Option<Vec<Ipv4Addr>> {
    let opt = wire::opt(1232, 0, false, &[wire::ecs(1, 24, 0, &net)]);
    let id = (Instant::now().elapsed().subsec_nanos() & 0xffff) as u16;
    let packet = wire::query(id, "www.probe.test.", wire::QTYPE_A, Some(opt));
    let reply = udp.exchange(&packet, Duration::from_secs(1))?;
    let m = Message::from_vec(&reply).ok()?;
    Some(
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect(),
    )
}

impl Node {
    fn www(&self) -> Option<Vec<Ipv4Addr>> {
        www(&self.udp)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the admin API answers");
        let status = r.status().as_u16();
        let text = r.text().await.expect("a body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, reason: &str) -> (u16, Value) {
        self.post_json(path, serde_json::json!({ "reason": reason }))
            .await
    }

    /// A write, or `None` when the node did not answer (it is gone).
    async fn try_post(&self, path: &str, reason: &str) -> Option<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "reason": reason }).to_string())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        let text = r.text().await.ok()?;
        Some((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("the admin API answers");
        let status = r.status().as_u16();
        let text = r.text().await.expect("a body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Waits (at most `limit`) until the GB answer is `want`; how long it took.
    async fn wait_answer(&self, want: Ipv4Addr, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.www().as_deref() == Some(&[want][..]) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "node did not answer {want} within {limit:?} (answers {:?}); log:\n{}",
                self.www(),
                self.server.log_text()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Waits (at most 15 s) until `GET /api/v1/cluster` satisfies `ok`.
    async fn wait_cluster(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, v) = self.get("/api/v1/cluster").await;
            if status == 200 && ok(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "cluster view never showed {what}: {v}\nlog:\n{}",
                self.server.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Queries `udp` every 5 ms until told to stop; counts queries and the ones unanswered.
fn keep_querying(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        let udp = RawUdp::connect(addr);
        let (mut sent, mut lost) = (0, 0);
        // Bounded: the test stops it; the count bound only catches a test that forgot.
        while !stop.load(Ordering::Relaxed) && sent < 200_000 {
            sent += 1;
            if www(&udp).is_none_or(|a| a.is_empty()) {
                lost += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (sent, lost)
    })
}

// ---------------------------------------------------------------------------------------------
// Tests

/// A drain through node 1 changes the answers of nodes 2 and 3 (propagation measured over
/// 100 writes); writes racing through two nodes end the same on all three; the etcd leader killed with SIGKILL: DNS never stops and writes resume
/// (the gap measured); every etcd member killed: DNS unchanged, writes 503, `/readyz` 200,
/// the cluster view and a metric say the store is away, nothing acknowledged is lost; etcd
/// back: every node converges and writes work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_written_anywhere_apply_everywhere_and_survive_etcd_failures() {
    let mut lab = Lab::start().await;
    let (ports, etcd) = (lab.ports, &mut lab.etcd);
    let files: Vec<NodeFiles> = ["ns1", "ns2", "ns3"]
        .iter()
        .map(|n| NodeFiles::new(n, &etcd.endpoints(), ports, ""))
        .collect();
    let nodes: Vec<Node> = files.iter().map(NodeFiles::start).collect();
    for n in &nodes {
        n.wait_answer(EU_WEST, Duration::from_secs(10)).await;
    }
    let view = nodes[1]
        .wait_cluster("three nodes with observations", |v| {
            v["nodes"].as_array().is_some_and(|a| a.len() == 3)
                && v["vantage"]["probe.test."]["eu-west"]["127.0.2.1"]
                    .as_object()
                    .is_some_and(|o| o.len() == 3)
        })
        .await;
    assert_eq!(view["store"]["state"], "up", "{view}");
    assert_eq!(view["zones_differ"], serde_json::json!([]), "{view}");

    // Propagation: 100 writes through node 1, alternately drain and undrain.
    let mut lags = Vec::new();
    for i in 0..100 {
        let (path, want) = if i % 2 == 0 {
            (DRAIN, US_EAST)
        } else {
            (UNDRAIN, EU_WEST)
        };
        let (status, body) = nodes[0].post(path, &format!("propagation {i}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["changed"], true, "{body}");
        assert_eq!(body["node"], "ns1", "{body}");
        // Node 1 answered after applying it: its own DNS already follows.
        assert_eq!(nodes[0].www(), Some(vec![want]));
        let a = nodes[1].wait_answer(want, Duration::from_secs(5)).await;
        let b = nodes[2].wait_answer(want, Duration::from_secs(5)).await;
        lags.push(a.max(b));
    }
    lags.sort();
    println!(
        "drain propagation to the other two nodes over 100 writes: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&lags, 0.50),
        percentile(&lags, 0.99),
        lags[lags.len() - 1]
    );
    // The audit of node 3 holds the writes node 1 took, with who, why and where.
    let (_, audit) = nodes[2].get("/api/v1/audit?limit=5").await;
    let last = audit
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["reason"], "propagation 99", "{audit}");
    assert_eq!(last["node"], "ns1", "{audit}");

    // Writes racing through different nodes: the last one etcd commits wins, on every node.
    for round in 0..10 {
        let reason = format!("race {round}");
        let (a, b) = tokio::join!(
            nodes[0].post(DRAIN, &reason),
            nodes[1].post(UNDRAIN, &reason)
        );
        assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
        let want = if etcd.drained().await {
            US_EAST
        } else {
            EU_WEST
        };
        for n in &nodes {
            n.wait_answer(want, Duration::from_secs(5)).await;
        }
    }
    let (status, _) = nodes[2].post(UNDRAIN, "after the races").await;
    assert_eq!(status, 200);
    for n in &nodes {
        n.wait_answer(EU_WEST, Duration::from_secs(5)).await;
    }

    // Kill -9 the etcd leader while every node answers and writes keep coming.
    let stop = Arc::new(AtomicBool::new(false));
    let queriers: Vec<_> = nodes
        .iter()
        .map(|n| keep_querying(n.server.addr(), stop.clone()))
        .collect();
    let leader = etcd.leader().await;
    let killed = Instant::now();
    etcd.members[leader].kill();
    let mut tries = 0u32;
    let resumed = loop {
        // Drain and undrain alternately, so that every write changes something.
        let path = if tries.is_multiple_of(2) {
            DRAIN
        } else {
            UNDRAIN
        };
        tries += 1;
        let (status, body) = nodes[0].post(path, "leader kill").await;
        if status == 200 {
            break killed.elapsed();
        } else {
            assert_eq!(status, 503, "{body}");
        }
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "writes did not resume in 15 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("etcd leader SIGKILL: writes through node 1 answered again after {resumed:?}");
    stop.store(true, Ordering::Relaxed);
    for q in queriers {
        let (sent, lost) = q.join().expect("the querier");
        assert!(sent > 0);
        assert_eq!(
            lost, 0,
            "{lost} of {sent} queries unanswered during the leader kill"
        );
    }
    etcd.members[leader].start();
    etcd.wait_ready().await;
    for n in &nodes {
        n.wait_cluster("the store up", |v| v["store"]["state"] == "up")
            .await;
    }
    // Whatever the last write left, undrained everywhere.
    let (status, _) = nodes[0].post(UNDRAIN, "after the leader kill").await;
    assert_eq!(status, 200);
    for n in &nodes {
        n.wait_answer(EU_WEST, Duration::from_secs(5)).await;
    }

    // Drained, acknowledged; then every etcd member dies.
    let (status, body) = nodes[1].post(DRAIN, "before the outage").await;
    assert_eq!(status, 200, "{body}");
    for n in &nodes {
        n.wait_answer(US_EAST, Duration::from_secs(5)).await;
    }
    for m in &mut etcd.members {
        m.kill();
    }
    for n in &nodes {
        n.wait_cluster("the store away", |v| v["store"]["state"] == "away")
            .await;
        assert_eq!(
            n.www(),
            Some(vec![US_EAST]),
            "DNS keeps the last known state"
        );
        let (status, _) = n.get("/readyz").await;
        assert_eq!(status, 200);
        let (_, metrics) = n.get("/metrics").await;
        assert!(
            metrics
                .as_str()
                .is_some_and(|m| m.contains("meridian_cluster_store_up 0")),
            "{metrics}"
        );
    }
    let (status, body) = nodes[2].post(UNDRAIN, "during the outage").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("cluster store (etcd) is unreachable")),
        "{body}"
    );
    assert_eq!(
        nodes[2].www(),
        Some(vec![US_EAST]),
        "a refused write changes nothing"
    );

    // etcd returns: every node resynchronises; the acknowledged drain is still there.
    for m in &mut etcd.members {
        m.start();
    }
    etcd.wait_ready().await;
    for n in &nodes {
        n.wait_cluster("the store up again", |v| v["store"]["state"] == "up")
            .await;
        assert_eq!(
            n.www(),
            Some(vec![US_EAST]),
            "nothing acknowledged was lost"
        );
    }
    let (status, body) = nodes[2].post(UNDRAIN, "after the outage").await;
    assert_eq!(status, 200, "{body}");
    for n in &nodes {
        n.wait_answer(EU_WEST, Duration::from_secs(5)).await;
    }
}

/// One node whose probes cannot reach eu-west (its check address points at a closed port):
/// no node's answer changes, since two of three vantage points see eu-west up. eu-west
/// really stopped: every node moves within fall × interval + 1 s. The cluster view shows
/// who saw what, and that the blind node serves different zone content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_blind_vantage_point_changes_no_answer_and_a_real_outage_moves_all() {
    meridian::health::probe::install_crypto_provider();
    let us = HttpTarget::builder().start();
    let mut eu = HttpTarget::builder().start();
    let etcd = Etcd::start();
    etcd.wait_ready().await;
    let nowhere = free_port();
    let files = [
        NodeFiles::new("ns1", &etcd.endpoints(), [us.port(), eu.port()], ""),
        NodeFiles::new("ns2", &etcd.endpoints(), [us.port(), eu.port()], ""),
        NodeFiles::new("ns3", &etcd.endpoints(), [us.port(), nowhere], ""),
    ];
    let first: Vec<Node> = files[..2].iter().map(NodeFiles::start).collect();
    for n in &first {
        n.wait_answer(EU_WEST, Duration::from_secs(10)).await;
    }
    first[0]
        .wait_cluster("both observing eu-west", |v| {
            v["vantage"]["probe.test."]["eu-west"]["127.0.2.1"]
                .as_object()
                .is_some_and(|o| o.len() == 2)
        })
        .await;
    let blind = files[2].start();
    let nodes: Vec<&Node> = first.iter().chain([&blind]).collect();
    let view = first[0]
        .wait_cluster("ns3 seeing eu-west down", |v| {
            v["vantage"]["probe.test."]["eu-west"]["127.0.2.1"]["ns3"] == false
        })
        .await;
    assert_eq!(
        view["zones_differ"],
        serde_json::json!(["probe.test."]),
        "{view}"
    );
    let (_, metrics) = first[0].get("/metrics").await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains("meridian_cluster_zone_content_differs{zone=\"probe.test.\"} 1")
            && metrics.contains("meridian_cluster_nodes 3"),
        "{metrics}"
    );
    // The route explanation says who saw what, through the API and `meridian route`.
    let (status, route) = first[0]
        .get("/api/v1/route?name=www.probe.test&client=81.2.69.0/24")
        .await;
    assert_eq!(status, 200, "{route}");
    let eu_votes = route["quorum"]["endpoints"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["region"] == "eu-west"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(eu_votes["seen"]["ns3"], false, "{route}");
    assert_eq!(eu_votes["seen"]["ns1"], true, "{route}");
    assert_eq!(eu_votes["up"], true, "{route}");
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args([
            "route",
            "--name",
            "www.probe.test",
            "--client",
            "81.2.69.0/24",
            "--zones",
            &files[0].path("zones"),
            "--config",
            &files[0].path("meridian.toml"),
        ])
        .output()
        .expect("meridian route runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("quorum (majority)")
            && text
                .lines()
                .any(|l| l.contains("eu-west") && l.contains(" up (") && l.contains("ns3 down")),
        "{text}"
    );
    // Many probe rounds (200 ms each): every answer of every node stays eu-west.
    let watch_until = Instant::now() + Duration::from_secs(2);
    let mut answers = 0;
    while Instant::now() < watch_until {
        for n in &nodes {
            assert_eq!(
                n.www(),
                Some(vec![EU_WEST]),
                "log:\n{}",
                n.server.log_text()
            );
            answers += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answers > 30);

    // A fourth node that reaches no target at all, with the isolation guard on: the guard
    // trips, its observations are marked suspect and left out, and it answers as the others.
    let cut_off = NodeFiles::new("ns4", &etcd.endpoints(), [nowhere, nowhere], "");
    let zone = cut_off.path("zones/probe.test.toml");
    let text = std::fs::read_to_string(&zone).expect("the zone file");
    let text = text.replacen("records =", "isolation-guard = true\nrecords =", 1);
    std::fs::write(&zone, text).expect("the zone file");
    let cut_off = cut_off.start();
    first[0]
        .wait_cluster("ns4 suspect", |v| {
            v["nodes"].as_array().is_some_and(|nodes| {
                nodes.iter().any(|n| {
                    n["node"] == "ns4" && n["suspect"] == serde_json::json!(["probe.test."])
                })
            })
        })
        .await;
    common::wait_for_log(&cut_off.server, &["this nameserver looks cut off"]).await;
    let (_, route) = first[1]
        .get("/api/v1/route?name=www.probe.test&client=81.2.69.0/24")
        .await;
    let us_votes = route["quorum"]["endpoints"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["region"] == "us-east"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(us_votes["suspect"], serde_json::json!(["ns4"]), "{route}");
    assert_eq!(us_votes["up"], true, "{route}");
    for n in nodes.iter().copied().chain([&cut_off]) {
        assert_eq!(
            n.www(),
            Some(vec![EU_WEST]),
            "log:\n{}",
            n.server.log_text()
        );
    }
    drop(cut_off);

    // eu-west really stops: every node moves within fall (2) × interval (0.2 s) + 1 s.
    eu.stop();
    let stopped = Instant::now();
    let limit = Duration::from_millis(2 * 200 + 1000);
    let mut slowest = Duration::ZERO;
    for n in &nodes {
        n.wait_answer(US_EAST, limit * 2).await;
        slowest = slowest.max(stopped.elapsed());
    }
    println!("eu-west stopped: every node moved after at most {slowest:?} (limit {limit:?})");
    assert!(slowest <= limit, "{slowest:?}");
    eu.restart();
    for n in &nodes {
        n.wait_answer(EU_WEST, Duration::from_secs(5)).await;
    }
}

/// A TCP relay on loopback that holds every chunk a client sends for `delay` before passing
/// it on to `upstream`: a slow path to a probe target, since `tc netem` is not available.
/// Its threads stop on drop.
struct DelayRelay {
    port: u16,
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl DelayRelay {
    fn start(upstream: u16) -> DelayRelay {
        use std::io::{Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").expect("a relay port");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("an address").port();
        let delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (delay, halt) = (delay_ms.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                let Ok((mut client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let Ok(mut server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let tick = Some(Duration::from_millis(50));
                for s in [&client, &server] {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(tick);
                }
                let (mut client_back, mut server_in) = (
                    client.try_clone().expect("a clone"),
                    server.try_clone().expect("a clone"),
                );
                let (delay, halt_up, halt_down) = (delay.clone(), halt.clone(), halt.clone());
                // Client to target, each chunk held back.
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while !halt_up.load(Ordering::Relaxed) {
                        match client.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                std::thread::sleep(Duration::from_millis(
                                    delay.load(Ordering::Relaxed),
                                ));
                                if server.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                            Err(e)
                                if e.kind() == std::io::ErrorKind::WouldBlock
                                    || e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                    let _ = server.shutdown(std::net::Shutdown::Write);
                });
                // Target to client, as is.
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while !halt_down.load(Ordering::Relaxed) {
                        match server_in.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                if client_back.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                            Err(e)
                                if e.kind() == std::io::ErrorKind::WouldBlock
                                    || e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                    let _ = client_back.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        DelayRelay {
            port,
            delay_ms,
            stop,
        }
    }

    fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// GB (81.2.69.0/24, located in London) and DE (85.214.132.0/24, located in Berlin).
const GB: [u8; 3] = [81, 2, 69];
const DE: [u8; 3] = [85, 214, 132];

/// Two nodes at different places: ns1 in London reaches eu-west through a relay that turns
/// 150 ms slow (past the 100 ms degradation limit), ns2 in Frankfurt reaches it directly.
/// Each client is ranked by the latency of the node nearest to it, on every node alike: the
/// GB client by ns1's (eu-west degraded: us-east), the DE client by ns2's (eu-west). Both
/// the API's and `meridian route`'s explanations name the vantage point that decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_is_steered_by_the_latency_of_the_nearest_vantage_point() {
    meridian::health::probe::install_crypto_provider();
    let us = HttpTarget::builder().start();
    let eu = HttpTarget::builder().start();
    let relay = DelayRelay::start(eu.port());
    let etcd = Etcd::start();
    etcd.wait_ready().await;
    let files = [
        NodeFiles::new(
            "ns1",
            &etcd.endpoints(),
            [us.port(), relay.port],
            "location = { lat = 51.5, lon = -0.1 }\n",
        ),
        NodeFiles::new(
            "ns2",
            &etcd.endpoints(),
            [us.port(), eu.port()],
            "location = { lat = 50.11, lon = 8.68 }\n",
        ),
    ];
    // A probe through the slow relay (150 ms) must not time out, on a loaded machine too.
    for f in &files {
        let zone = f.path("zones/probe.test.toml");
        let text = std::fs::read_to_string(&zone).expect("the zone file");
        let text = text
            .replace("interval = 0.2", "interval = 0.5")
            .replace("timeout = 0.1", "timeout = 0.45");
        std::fs::write(&zone, text).expect("the zone file");
    }
    let nodes: Vec<Node> = files.iter().map(NodeFiles::start).collect();
    for n in &nodes {
        n.wait_answer(EU_WEST, Duration::from_secs(10)).await;
    }
    // The relay's path is fast long enough for ns1's rolling minimum, then turns slow.
    nodes[1]
        .wait_cluster("ns1 publishing eu-west's latency", |v| {
            v["nodes"].as_array().is_some_and(|nodes| {
                nodes.iter().any(|n| {
                    n["node"] == "ns1" && n["latency"]["probe.test."]["eu-west"].is_object()
                })
            })
        })
        .await;
    relay.set_delay(Duration::from_millis(150));
    let view = nodes[1]
        .wait_cluster("ns1 finding eu-west past its limit", |v| {
            v["nodes"].as_array().is_some_and(|nodes| {
                nodes.iter().any(|n| {
                    n["node"] == "ns1"
                        && n["latency"]["probe.test."]["eu-west"]["over_limit"] == true
                })
            })
        })
        .await;
    println!("ns1 sees eu-west slow: {}", view["nodes"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answers: Vec<_> = nodes
            .iter()
            .flat_map(|n| [www_for(&n.udp, GB), www_for(&n.udp, DE)])
            .collect();
        let want = [Some(vec![US_EAST]), Some(vec![EU_WEST])];
        if answers.chunks(2).all(|a| a == want) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "answers (GB, DE per node): {answers:?}; logs:\n{}\n{}",
            nodes[0].server.log_text(),
            nodes[1].server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And they stay so, probe round after probe round.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        for n in &nodes {
            assert_eq!(www_for(&n.udp, GB), Some(vec![US_EAST]));
            assert_eq!(www_for(&n.udp, DE), Some(vec![EU_WEST]));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What publishing latency costs etcd: record writes per second of both nodes while one
    // path is slow and noisy (the heartbeat alone is one write per 5 s per node).
    let written = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("meridian_cluster_records_written_total "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    let mut before = 0;
    for n in &nodes {
        before += written(n.get("/metrics").await.1.as_str().unwrap_or_default());
    }
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut after = 0;
    for n in &nodes {
        after += written(n.get("/metrics").await.1.as_str().unwrap_or_default());
    }
    println!(
        "record writes of 2 nodes with latency published: {:.2}/s ({before} then {after})",
        (after - before) as f64 / window.elapsed().as_secs_f64()
    );
    // The explanations name the vantage point: ns2 ranks the GB client by ns1's latency, ns1
    // the DE client by ns2's.
    let (status, route) = nodes[1]
        .get("/api/v1/route?name=www.probe.test&client=81.2.69.0/24")
        .await;
    assert_eq!(status, 200, "{route}");
    assert_eq!(route["a"]["vantage"], "ns1", "{route}");
    let (_, route) = nodes[0]
        .get("/api/v1/route?name=www.probe.test&client=85.214.132.0/24")
        .await;
    assert_eq!(route["a"]["vantage"], "ns2", "{route}");
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args([
            "route",
            "--name",
            "www.probe.test",
            "--client",
            "81.2.69.0/24",
            "--zones",
            &files[1].path("zones"),
            "--config",
            &files[1].path("meridian.toml"),
        ])
        .output()
        .expect("meridian route runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.contains("latency as measured by ns1, the vantage point nearest to the client")
            && text.lines().any(|l| l.contains("eu-west")
                && l.contains("(from ns1)")
                && l.contains("degraded")),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The relay fast again: the GB client returns to eu-west on both nodes.
    relay.set_delay(Duration::ZERO);
    for n in &nodes {
        let deadline = Instant::now() + Duration::from_secs(15);
        while www_for(&n.udp, GB) != Some(vec![EU_WEST]) {
            assert!(Instant::now() < deadline, "log:\n{}", n.server.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A node killed with SIGKILL in the middle of 200 writes through it (most likely with one
/// in flight): every acknowledged write is on the other node; restarted, its first answer is
/// its peer's. Garbage written
/// into the prefix by hand is ignored with a logged error; a node whose etcd endpoints are
/// unreachable starts from its journal, answers DNS and refuses writes with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_garbage_and_an_unreachable_store_are_survived() {
    let lab = Lab::start().await;
    let (ports, etcd) = (lab.ports, &lab.etcd);
    let files: Vec<NodeFiles> = ["ns1", "ns2"]
        .iter()
        .map(|n| NodeFiles::new(n, &etcd.endpoints(), ports, "audit-keep = 10\n"))
        .collect();
    let mut victim = Some(files[0].start());
    let peer = files[1].start();
    for n in [victim.as_ref().expect("started"), &peer] {
        n.wait_answer(EU_WEST, Duration::from_secs(10)).await;
    }

    // Writes through ns1, one after another, while the test kills ns1 with SIGKILL once 100
    // are answered: most likely with a write in flight, which may or may not commit.
    let victim = Arc::new(victim.take().expect("started"));
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = {
        let (victim, acknowledged) = (victim.clone(), acknowledged.clone());
        tokio::spawn(async move {
            for i in 0..200 {
                let path = if i % 2 == 0 { DRAIN } else { UNDRAIN };
                let reason = format!("write {i}");
                match victim.try_post(path, &reason).await {
                    Some((200, _)) => acknowledged.lock().expect("lock").push(reason),
                    Some((status, body)) => panic!("write {i}: {status} {body}"),
                    // The node is gone.
                    None => return,
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().expect("lock").len() < 100 {
        assert!(Instant::now() < deadline, "100 writes not answered in 30 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // SAFETY: kill(2) with our child's pid and a valid signal number.
    unsafe { libc::kill(victim.server.pid() as i32, libc::SIGKILL) };
    writer.await.expect("the writer");
    drop(Arc::try_unwrap(victim).ok().expect("the writer let go"));
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(
        acknowledged.len() >= 100 && acknowledged.len() < 200,
        "{}",
        acknowledged.len()
    );
    // Every acknowledged write is in the peer's audit, and the peer answers as etcd holds
    // the drain (the write in flight at the kill may have committed too).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, audit) = peer.get("/api/v1/audit?limit=1000").await;
        let reasons: Vec<String> = audit
            .as_array()
            .expect("an audit page")
            .iter()
            .filter_map(|e| e["reason"].as_str().map(str::to_string))
            .collect();
        let missing: Vec<&String> = acknowledged
            .iter()
            .filter(|r| !reasons.contains(r))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged but not on the peer: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let expected = if etcd.drained().await {
        US_EAST
    } else {
        EU_WEST
    };
    peer.wait_answer(expected, Duration::from_secs(5)).await;

    // Restarted on its own state directory: its first answer is its peer's.
    let restarted_at = Instant::now();
    let back = files[0].start();
    assert_eq!(
        back.www(),
        Some(vec![expected]),
        "never fail-open after a restart; log:\n{}",
        back.server.log_text()
    );
    println!(
        "ns1 restarted after SIGKILL: answering like its peer after {:?}",
        restarted_at.elapsed()
    );
    assert!(restarted_at.elapsed() < Duration::from_secs(5));

    // Garbage in the prefix, by hand: logged, ignored, nobody crashes, writes still work.
    let mut c = etcd.client().await;
    for (k, v) in [
        ("/meridian/overrides/drain/probe.test./us-east", "garbage"),
        ("/meridian/audit/0000000000000-evil-0", "{not json"),
        (
            "/meridian/audit/0000000000001-evil-0",
            "{\"seq\":0,\"at_ms\":1,\"by\":\"x\",\"action\":\"reload\",\"reason\":\"r\"}",
        ),
        ("/meridian/nodes/evil", "[]"),
        (
            "/meridian/nodes/ns9",
            "{\"node\":\"ns1\",\"at_ms\":1,\"zones\":{}}",
        ),
        ("/meridian/elsewhere", "x"),
    ] {
        c.put(k, v, None).await.expect("a put");
    }
    common::wait_for_log(&peer.server, &["ignoring", "cluster"]).await;
    let (status, body) = peer.post(UNDRAIN, "after the garbage").await;
    assert_eq!(status, 200, "{body}");
    for n in [&back, &peer] {
        n.wait_answer(EU_WEST, Duration::from_secs(5)).await;
    }
    // An override key written by hand applies from the watch on every node (no resync), as
    // does its deletion; one whose entry names another target than its key is ignored.
    let hand = |region: &str, reason: &str| {
        serde_json::json!({
            "seq": 0, "at_ms": 1, "by": "etcdctl", "action": "drain", "zone": "probe.test.",
            "region": region, "reason": reason,
        })
        .to_string()
    };
    c.put(
        "/meridian/overrides/drain/probe.test./us-east",
        hand("eu-west", "mislabelled"),
        None,
    )
    .await
    .expect("a put");
    c.put(
        "/meridian/overrides/drain/probe.test./eu-west",
        hand("eu-west", "by hand"),
        None,
    )
    .await
    .expect("a put");
    for n in [&back, &peer] {
        n.wait_answer(US_EAST, Duration::from_secs(5)).await;
    }
    common::wait_for_log(
        &peer.server,
        &["the entry names another target than its key"],
    )
    .await;
    c.delete("/meridian/overrides/drain/probe.test./eu-west", None)
        .await
        .expect("a delete");
    for n in [&back, &peer] {
        n.wait_answer(EU_WEST, Duration::from_secs(5)).await;
    }
    let (_, audit) = peer.get("/api/v1/audit?limit=5").await;
    assert!(
        audit.to_string().contains("by hand")
            && audit
                .to_string()
                .contains("deleted from the cluster store by hand"),
        "{audit}"
    );
    // An expiry is an absolute time: a drain for 1 s through one node lifts on both.
    let (status, body) = peer
        .post_json(
            DRAIN,
            serde_json::json!({"reason": "brief", "expires_in": 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for n in [&back, &peer] {
        n.wait_answer(US_EAST, Duration::from_secs(5)).await;
    }
    for n in [&back, &peer] {
        n.wait_answer(EU_WEST, Duration::from_secs(5)).await;
    }
    let mut back = back;
    back.server.assert_running();
    let mut peer = peer;
    peer.server.assert_running();
    // etcd keeps the newest 10 audit entries (audit-keep); the journals keep them all.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let count = c
            .get(
                "/meridian/audit/",
                Some(
                    etcd_client::GetOptions::new()
                        .with_prefix()
                        .with_count_only(),
                ),
            )
            .await
            .expect("a count")
            .count();
        if count == 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{count} audit entries in etcd, not 10"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, audit) = peer.get("/api/v1/audit?limit=1000").await;
    assert!(
        audit.as_array().expect("an audit page").len() > 100,
        "{audit}"
    );

    // Another prefix is another cluster: a drain under /meridian does not reach it. (Its
    // file names ns1; the flag names it.)
    let other = NodeFiles::new("ns1", &etcd.endpoints(), ports, "prefix = \"/other\"\n");
    let other = other.start_with(&["--cluster-node", "ns7"]);
    other.wait_answer(EU_WEST, Duration::from_secs(10)).await;
    let (status, body) = peer.post(DRAIN, "not for /other").await;
    assert_eq!(status, 200, "{body}");
    back.wait_answer(US_EAST, Duration::from_secs(5)).await;
    let view = other
        .wait_cluster("itself alone", |v| {
            v["prefix"] == "/other"
                && v["node"] == "ns7"
                && v["nodes"].as_array().is_some_and(|n| n.len() == 1)
        })
        .await;
    assert_eq!(view["store"]["state"], "up", "{view}");
    assert_eq!(other.www(), Some(vec![EU_WEST]));

    // A node whose etcd is unreachable: starts from its journal, answers, refuses writes.
    let lonely = NodeFiles::new(
        "ns3",
        &[format!("http://127.0.0.1:{}", free_port())],
        ports,
        "",
    );
    let alone = lonely.start();
    alone.wait_answer(EU_WEST, Duration::from_secs(10)).await;
    let (status, body) = alone.post(DRAIN, "no store").await;
    assert_eq!(status, 503, "{body}");
    let (_, view) = alone.get("/api/v1/cluster").await;
    assert_eq!(view["store"]["state"], "away", "{view}");
}

/// etcd over TLS with client certificates and password authentication: a node configured
/// with `ca`, `cert`, `key`, `user` and `password` reaches it and shares a drain; a node
/// without the password is refused by etcd and stays fail-static.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_etcd_over_tls_with_a_client_certificate_and_a_password() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    meridian::health::probe::install_crypto_provider();
    let dir = tempfile::tempdir().expect("a temp dir");
    let write = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).expect("a PEM file");
        path.to_str().expect("a UTF-8 path").to_string()
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().expect("a key");
    let ca = write(
        "ca.pem",
        ca_params.self_signed(&ca_key).expect("the CA").pem(),
    );
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>, file: &str| {
        let key = KeyPair::generate().expect("a key");
        let cert = CertificateParams::new(names)
            .expect("leaf params")
            .signed_by(&key, &issuer)
            .expect("a leaf");
        (
            write(&format!("{file}.pem"), cert.pem()),
            write(&format!("{file}-key.pem"), key.serialize_pem()),
        )
    };
    let (server_cert, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()], "server");
    let (client_cert, client_key) = leaf(vec!["meridian".into()], "client");

    let (client, peer) = (free_port(), free_port());
    let url = format!("https://127.0.0.1:{client}");
    let mut member = Member {
        client_url: url.clone(),
        args: [
            "--name",
            "m0",
            "--data-dir",
            &dir.path().join("data").to_string_lossy(),
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-cluster",
            &format!("m0=http://127.0.0.1:{peer}"),
            "--cert-file",
            &server_cert,
            "--key-file",
            &server_key,
            "--trusted-ca-file",
            &ca,
            "--client-cert-auth",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        log: dir.path().join("etcd.log"),
        child: None,
    };
    member.start();
    let etcdctl = |args: &[&str]| {
        let tls = [
            "--endpoints",
            &url,
            "--cacert",
            &ca,
            "--cert",
            &client_cert,
            "--key",
            &client_key,
        ];
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new("etcdctl")
                .args(tls)
                .args(["--command-timeout", "2s"])
                .args(args)
                .output()
                .expect("etcdctl runs (scripts/setup.sh installs etcd-client)");
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcdctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    etcdctl(&["user", "add", "root:secret-pass"]);
    etcdctl(&["user", "grant-role", "root", "root"]);
    etcdctl(&["auth", "enable"]);

    let us = HttpTarget::builder().start();
    let eu = HttpTarget::builder().start();
    let ports = [us.port(), eu.port()];
    let tls = format!("ca = \"{ca}\"\ncert = \"{client_cert}\"\nkey = \"{client_key}\"\n");
    let nodes: Vec<Node> = ["ns1", "ns2"]
        .iter()
        .map(|n| {
            NodeFiles::new(
                n,
                std::slice::from_ref(&url),
                ports,
                &format!("{tls}user = \"root\"\npassword = \"secret-pass\"\n"),
            )
            .start()
        })
        .collect();
    for n in &nodes {
        n.wait_cluster("the store up", |v| v["store"]["state"] == "up")
            .await;
    }
    let (status, body) = nodes[0].post(DRAIN, "over TLS").await;
    assert_eq!(status, 200, "{body}");
    nodes[1].wait_answer(US_EAST, Duration::from_secs(5)).await;

    // The right certificate but no password: etcd refuses it; the node serves alone.
    let refused = NodeFiles::new("ns3", std::slice::from_ref(&url), ports, &tls).start();
    let (status, body) = refused.post(UNDRAIN, "no password").await;
    assert_eq!(status, 503, "{body}");
    let (_, view) = refused.get("/api/v1/cluster").await;
    assert_ne!(view["store"]["state"], "up", "{view}");
}

/// An nftables table of this test process, deleted on drop (also when the test panics).
struct Firewall(String);

impl Firewall {
    /// Silently drops TCP to `ip` on `ports` (a connect times out, nothing is refused).
    fn drop_to(ip: &str, ports: &[u16]) -> Firewall {
        let table = format!("meridian_cluster_test_{}", std::process::id());
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let script = format!(
            "add table inet {table}\n\
             add chain inet {table} inp {{ type filter hook input priority 0; }}\n\
             add rule inet {table} inp ip daddr {ip} tcp dport {{ {} }} drop\n",
            ports.join(", ")
        );
        let fw = Firewall(table);
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft runs (scripts/setup.sh installs nftables)");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(script.as_bytes())
            .expect("the rules");
        assert!(
            child.wait().expect("nft").success(),
            "nft refused: {script}"
        );
        fw
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.0])
            .status();
    }
}

/// One node silently cut off from every etcd member (its packets to them dropped by
/// nftables, so connections time out instead of being refused): it notices, keeps answering
/// from its last known state and refuses writes, while the others carry on; the cut healed,
/// it converges to what they wrote meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_partitioned_from_etcd_stays_static_then_converges() {
    meridian::health::probe::install_crypto_provider();
    const CUT: &str = "127.0.0.9";
    let us = HttpTarget::builder().start();
    let eu = HttpTarget::builder().start();
    let ports = [us.port(), eu.port()];
    let etcd = Etcd::start_also_on(Some(CUT));
    etcd.wait_ready().await;
    let client_ports: Vec<u16> = etcd
        .endpoints()
        .iter()
        .map(|e| {
            e.rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("a port")
        })
        .collect();
    let cut_endpoints: Vec<String> = client_ports
        .iter()
        .map(|p| format!("http://{CUT}:{p}"))
        .collect();
    let files = [
        NodeFiles::new("ns1", &etcd.endpoints(), ports, ""),
        NodeFiles::new("ns2", &cut_endpoints, ports, ""),
    ];
    let nodes: Vec<Node> = files.iter().map(NodeFiles::start).collect();
    for n in &nodes {
        n.wait_cluster("the store up", |v| v["store"]["state"] == "up")
            .await;
        n.wait_answer(EU_WEST, Duration::from_secs(10)).await;
    }

    let firewall = Firewall::drop_to(CUT, &client_ports);
    let cut_at = Instant::now();
    nodes[1]
        .wait_cluster("the store away", |v| v["store"]["state"] == "away")
        .await;
    println!(
        "silent partition from etcd noticed after {:?}",
        cut_at.elapsed()
    );
    let (status, body) = nodes[1].post(DRAIN, "from the cut-off node").await;
    assert_eq!(status, 503, "{body}");
    let (status, body) = nodes[0].post(DRAIN, "while ns2 is cut off").await;
    assert_eq!(status, 200, "{body}");
    nodes[0].wait_answer(US_EAST, Duration::from_secs(5)).await;
    assert_eq!(
        nodes[1].www(),
        Some(vec![EU_WEST]),
        "the cut-off node keeps its last state"
    );

    drop(firewall);
    let healed = Instant::now();
    nodes[1].wait_answer(US_EAST, Duration::from_secs(15)).await;
    println!(
        "partition healed: the cut-off node converged after {:?}",
        healed.elapsed()
    );
    nodes[1]
        .wait_cluster("the store up", |v| v["store"]["state"] == "up")
        .await;
}

/// The files of nodes ns1 and ns2 with `extra` configuration, their zone `zone_text(ports)`
/// as `edit` changes it.
fn two_nodes(
    etcd: &Etcd,
    ports: [u16; 2],
    extra: &str,
    edit: impl Fn(String) -> String,
) -> Vec<NodeFiles> {
    ["ns1", "ns2"]
        .iter()
        .map(|n| {
            let files = NodeFiles::new(n, &etcd.endpoints(), ports, extra);
            std::fs::write(files.path("zones/probe.test.toml"), edit(zone_text(ports)))
                .expect("zone file");
            files
        })
        .collect()
}

/// eu-west of www as `GET /api/v1/regions` on `node` shows it.
async fn eu_west(node: &Node) -> Value {
    let (status, regions) = node.get("/api/v1/regions").await;
    assert_eq!(status, 200, "{regions}");
    regions
        .as_array()
        .and_then(|a| a.iter().find(|r| r["region"] == "eu-west"))
        .cloned()
        .unwrap_or_else(|| panic!("no eu-west in {regions}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_completes_only_when_the_last_answer_of_every_node_expires() {
    let lab = Lab::start().await;
    let (ports, etcd) = (lab.ports, &lab.etcd);
    // A TTL of 30 s: long enough for the checks while answers are cached (Chromium included),
    // short enough to wait out the bound of a node gone. Probes with time to spare on a loaded
    // machine: a probe timing out would take eu-west away from the node that must answer it.
    let files = two_nodes(etcd, ports, "", |z| {
        z.replace("ttl = 60", "ttl = 30")
            .replace("interval = 0.2", "interval = 0.5")
            .replace("timeout = 0.1", "timeout = 0.45")
    });
    let mut nodes: Vec<Node> = files.iter().map(NodeFiles::start).collect();
    let (a, b) = (&nodes[0], &nodes[1]);
    for n in [a, b] {
        n.wait_answer(EU_WEST, Duration::from_secs(10)).await;
    }
    a.wait_cluster("both nodes", |v| {
        v["nodes"].as_array().is_some_and(|n| n.len() == 2)
    })
    .await;
    let a_until = eu_west(a).await["answers_cached_until_ms"]
        .as_u64()
        .expect("node A answered with eu-west");
    // Only node B answers from here on, until its answers outlive node A's by a second
    // (the counters keep whole seconds).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(b.www(), Some(vec![EU_WEST]));
        let until = eu_west(b).await["answers_cached_until_ms"].as_u64();
        if until.is_some_and(|t| t > a_until) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node B's expiry never passed A's"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (status, body) = a.post(DRAIN, "cluster drain completion").await;
    assert_eq!(status, 200, "{body}");
    b.wait_answer(US_EAST, Duration::from_secs(5)).await;
    // B's expiry as it stands once the drain reached it: it answered eu-west until then.
    let b_until = eu_west(b).await["answers_cached_until_ms"]
        .as_u64()
        .expect("node B answered with eu-west");
    assert!(b_until > a_until);
    // B's answers after the drain name us-east: they add nothing to eu-west's traffic.
    for _ in 0..5 {
        assert_eq!(b.www(), Some(vec![US_EAST]));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let progress = loop {
        let p = eu_west(a).await["drain_progress"].clone();
        if p["cluster"]["nodes"]["ns2"]["cached_until_s"] == b_until / 1000 {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "node A never saw node B's part of the drain: {p}\nlog:\n{}",
            a.server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("node A's drain progress: {progress}");
    // Node A's own part is its own answers; the cluster's is node B's later one.
    assert_eq!(
        progress["cached_answers_expire_at_ms"], a_until,
        "{progress}"
    );
    let cluster = &progress["cluster"];
    assert_eq!(
        cluster["cached_answers_expire_at_ms"], b_until,
        "{progress}"
    );
    assert_eq!(cluster["latest_node"], "ns2", "{progress}");
    assert_eq!(cluster["nodes"]["ns1"]["cached_until_s"], a_until / 1000);
    assert_eq!(cluster["nodes"]["ns2"]["cached_until_s"], b_until / 1000);
    assert_eq!(cluster["answers_since_drain"], 0, "{progress}");
    assert_eq!(
        cluster["not_reporting"],
        serde_json::json!([]),
        "{progress}"
    );
    assert_eq!(cluster["complete"], false, "{progress}");
    let metrics = reqwest::get(format!("{}/metrics", a.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("a body");
    let line = format!(
        "meridian_cluster_region_answers_cached_until_timestamp_seconds{{zone=\"probe.test.\",region=\"eu-west\"}} {}",
        b_until / 1000
    );
    assert!(metrics.contains(&line), "no {line} in\n{metrics}");
    // And node A's dashboard, in headless Chromium.
    {
        let driver = Driver::start().await;
        let profile = tempfile::tempdir().expect("a temp dir");
        let session = Session::new(&driver, profile.path()).await;
        session
            .post("/url", serde_json::json!({"url": format!("{}/", a.base)}))
            .await;
        let line = "document.querySelector(\"article.card[data-region='eu-west'] .cluster-drain\")?.textContent ?? ''";
        session
            .wait_for(
                "the cluster's drain line",
                &format!("return ({line}).includes('(ns2)')"),
            )
            .await;
        let text = session.eval(&format!("return {line}")).await;
        println!("node A's dashboard: {text}");
        assert!(
            text.as_str()
                .is_some_and(|t| t.starts_with("cluster: still in caches")
                    && t.ends_with("answers since the drain: 0 over 2 nodes")),
            "{text}"
        );
        session
            .eval("document.querySelector(\"article.card[data-region='eu-west']\").scrollIntoView(); return true")
            .await;
        let shot = session.get("/screenshot").await;
        let png = base64_decode(shot.as_str().expect("base64 PNG"));
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster-drain.png");
        std::fs::write(&path, &png).expect("the screenshot");
        eprintln!("screenshot: {}", path.display());

        // Node B goes away: its record leaves with its lease (2 s). Its answers may still be
        // cached, so node A lists it as departed, and the drain is not complete, until the
        // moment it saw the record go plus the TTL and a second.
        nodes[1].server.terminate(Duration::from_secs(5));
        let a = &nodes[0];
        let deadline = Instant::now() + Duration::from_secs(10);
        let departed = loop {
            let p = eu_west(a).await["drain_progress"].clone();
            if p["cluster"]["nodes"]["ns2"].is_null() {
                let c = &p["cluster"];
                assert_eq!(c["latest_node"], "ns1", "{p}");
                assert_eq!(c["cached_answers_expire_at_ms"], a_until, "{p}");
                assert_eq!(c["complete"], false, "{p}");
                assert_eq!(c["departed"][0]["node"], "ns2", "{p}");
                assert_eq!(c["departed"][0]["part"]["cached_until_s"], b_until / 1000);
                break c["departed"][0].clone();
            }
            assert!(Instant::now() < deadline, "node B's part never left: {p}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        println!("node A after node B left: {departed}");
        let gone_ms = departed["gone_ms"].as_u64().expect("gone_ms");
        let until_ms = departed["until_ms"].as_u64().expect("until_ms");
        assert_eq!(until_ms, gone_ms + 31_000, "{departed}");
        assert!(until_ms > b_until, "{departed}");
        assert!(
            departed["last_seen_ms"].as_u64() < Some(gone_ms),
            "{departed}"
        );
        session
            .wait_for(
                "node B listed as gone on the dashboard",
                &format!(
                    "return ({line}).includes('gone, its answers may be cached: ns2 (last seen')"
                ),
            )
            .await;
        let text = session.eval(&format!("return {line}")).await;
        println!("node A's dashboard after node B left: {text}");
        assert!(
            text.as_str()
                .is_some_and(|t| t.starts_with("cluster: still in caches")),
            "{text}"
        );

        // Complete once the bound passed, never before.
        let deadline = Instant::now()
            + Duration::from_millis(until_ms.saturating_sub(now_ms()))
            + Duration::from_secs(5);
        loop {
            let p = eu_west(a).await["drain_progress"].clone();
            let after = now_ms();
            let c = &p["cluster"];
            if c["complete"] == true {
                assert!(after >= until_ms, "complete before {until_ms}: {p}");
                assert_eq!(c["departed"], serde_json::json!([]), "{p}");
                println!("complete {} ms after node B's bound", after - until_ms);
                break;
            }
            assert_eq!(c["departed"][0]["node"], "ns2", "{p}");
            assert!(Instant::now() < deadline, "never complete: {p}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The wall clock, Unix ms (the nodes' clock: same machine).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

// ---------------------------------------------------------------------------------------------
// The latency map across the cluster

const FEED: &str = "feed-secret-0123456789";

/// Nodes that take RTT samples (feed `nginx` with [`FEED`]) and publish and share their
/// map every second.
fn latency_files(name: &str, etcd: &Etcd, ports: [u16; 2]) -> NodeFiles {
    let files = NodeFiles::new(
        name,
        &etcd.endpoints(),
        ports,
        "\n[latency]\ntoken-file = \"feeds\"\npublish-secs = 1\nsave-secs = 1\nshare-secs = 1\n",
    );
    std::fs::write(files.path("feeds"), format!("nginx:{FEED}\n")).expect("feeds");
    files
}

/// `n` samples each from the GB network: us-east at 20 ms, eu-west at 80 ms (distance picks
/// eu-west), taken now.
fn gb_samples(n: usize) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let mut out = String::new();
    for _ in 0..n {
        for (region, rtt) in [("us-east", 20), ("eu-west", 80)] {
            out.push_str(&format!(
                "{{\"client\":\"81.2.69.0/24\",\"region\":\"{region}\",\"rtt_ms\":{rtt},\"kind\":\"tcp\",\"time\":{now}}}\n"
            ));
        }
    }
    out
}

/// Keeps asking for `duration` that the GB answer stays `want`.
async fn stays(node: &Node, want: Ipv4Addr, duration: Duration) {
    let end = Instant::now() + duration;
    while Instant::now() < end {
        assert_eq!(node.www().as_deref(), Some(&[want][..]), "the answer moved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_posted_to_one_node_steer_every_node_and_outlive_restarts_and_etcd() {
    let mut lab = Lab::start().await;
    let (ports, etcd) = (lab.ports, &mut lab.etcd);
    let a_files = latency_files("ns1", etcd, ports);
    let b_files = latency_files("ns2", etcd, ports);
    let a = a_files.start();
    let mut b = b_files.start();
    for n in [&a, &b] {
        n.wait_answer(EU_WEST, Duration::from_secs(10)).await;
    }

    // 30 samples per region, posted to ns1 only.
    let r = a
        .http
        .post(format!("{}/api/v1/rtt", a.base))
        .header("authorization", format!("Bearer {FEED}"))
        .body(gb_samples(30))
        .send()
        .await
        .expect("the admin API answers");
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    let took = b.wait_answer(US_EAST, Duration::from_secs(10)).await;
    eprintln!("ns2 follows samples posted to ns1 after {took:?}");
    a.wait_answer(US_EAST, Duration::from_secs(5)).await;
    // ns2's map shows ns1's samples for the network, counted once.
    let (_, view) = b.get("/api/v1/latency?client=81.2.69.0/24").await;
    let regions = view["listed"][0]["regions"]
        .as_array()
        .expect("the network");
    for r in regions {
        let samples = r["samples"].as_f64().expect("samples");
        assert!((29.0..=30.5).contains(&samples), "{view}");
    }
    // A network nobody measured keeps the distance model's answer on both.
    for n in [&a, &b] {
        assert_eq!(www_for(&n.udp, DE), Some(vec![EU_WEST]));
    }

    // ns2 restarted: it steers by ns1's samples again (from etcd) from its start.
    drop(b);
    b = b_files.start();
    b.wait_answer(US_EAST, Duration::from_secs(10)).await;

    // ns1 killed: its samples leave ns2's map with its lease (2 s); ns1 back, it shares them
    // again from its saved map.
    drop(a);
    let took = b.wait_answer(EU_WEST, Duration::from_secs(10)).await;
    eprintln!("ns1's samples left ns2's map {took:?} after ns1 was killed");
    let a = a_files.start();
    b.wait_answer(US_EAST, Duration::from_secs(10)).await;

    // etcd gone: both keep the last map; a node restarted meanwhile starts from its saved
    // copy of the peers' maps.
    for m in &mut etcd.members {
        m.kill();
    }
    stays(&b, US_EAST, Duration::from_secs(3)).await;
    stays(&a, US_EAST, Duration::from_secs(1)).await;
    drop(b);
    let b = b_files.start();
    b.wait_answer(US_EAST, Duration::from_secs(10)).await;
    stays(&b, US_EAST, Duration::from_secs(2)).await;
}

/// The store's failed calls this node counted (`meridian_cluster_store_errors_total`).
async fn store_errors(node: &Node) -> u64 {
    let (_, metrics) = node.get("/metrics").await;
    metrics
        .as_str()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("meridian_cluster_store_errors_total "))
        })
        .and_then(|v| v.trim().parse().ok())
        .expect("the store error counter")
}

/// A latency map etcd refuses (its one chunk is over `--max-request-bytes`) is warned about
/// and tried again, and never ends the node's record session: no store error is counted
/// while it keeps failing (each ended session counts one), and the store stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latency_map_etcd_refuses_never_ends_the_record_session() {
    meridian::health::probe::install_crypto_provider();
    let us = HttpTarget::builder().start();
    let eu = HttpTarget::builder().start();
    let ports = [us.port(), eu.port()];
    let mut etcd = Etcd::start();
    for m in &mut etcd.members {
        m.kill();
        m.args
            .extend(["--max-request-bytes".to_string(), "65536".to_string()]);
        m.start();
    }
    etcd.wait_ready().await;
    let files = latency_files("ns1", &etcd, ports);
    let a = files.start();
    a.wait_answer(EU_WEST, Duration::from_secs(10)).await;
    // 3000 networks, one sample each per region: a map of about 84 KB, over 64 KiB.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let mut body = String::new();
    for i in 0..3000u32 {
        for region in ["us-east", "eu-west"] {
            body.push_str(&format!(
                "{{\"client\":\"81.{}.{}.0/24\",\"region\":\"{region}\",\"rtt_ms\":30,\"kind\":\"tcp\",\"time\":{now}}}\n",
                2 + i / 256,
                i % 256
            ));
        }
    }
    let r = a
        .http
        .post(format!("{}/api/v1/rtt", a.base))
        .header("authorization", format!("Bearer {FEED}"))
        .body(body)
        .send()
        .await
        .expect("the admin API answers");
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a
        .server
        .log_text()
        .contains("cannot share this node's latency map")
    {
        assert!(Instant::now() < deadline, "{}", a.server.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = store_errors(&a).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(store_errors(&a).await, before, "{}", a.server.log_text());
    let (_, cluster) = a.get("/api/v1/cluster").await;
    assert_eq!(cluster["store"]["state"], "up", "{cluster}");
    eprintln!(
        "warned: {}",
        a.server
            .log_text()
            .lines()
            .find(|l| l.contains("cannot share"))
            .unwrap_or_default()
    );
}

/// A node whose watch falls far behind (stopped while 8 MiB of another node's latency map
/// generations are written) catches up on its watch: etcd fragments the answer that would
/// otherwise carry every missed revision, past the client's 4 MiB, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_far_behind_catches_up_in_fragments() {
    let lab = Lab::start().await;
    let (ports, etcd) = (lab.ports, &lab.etcd);
    let files = latency_files("ns1", etcd, ports);
    let a = files.start();
    a.wait_answer(EU_WEST, Duration::from_secs(10)).await;
    a.wait_cluster("the store up", |v| v["store"]["state"] == "up")
        .await;
    let before = store_errors(&a).await;
    let pid = a.server.pid() as i32;
    // SAFETY: kill(2) with a child's pid and a valid signal number.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let mut c = etcd.client().await;
    let value = vec![b'x'; 20 << 10];
    const GENERATIONS: u64 = 400;
    for g in 1..=GENERATIONS {
        c.put(
            format!("/meridian/latency/ns9/{g:016x}/0000-0001"),
            value.clone(),
            None,
        )
        .await
        .expect("a put");
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    // Each generation is whole when it comes (and not a map: logged, ignored).
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = || {
        a.server
            .log_text()
            .matches("ignoring a node's latency map in the cluster store")
            .count() as u64
    };
    while seen() < GENERATIONS {
        assert!(
            Instant::now() < deadline,
            "{} of {GENERATIONS} generations seen; store errors {} -> {}",
            seen(),
            before,
            store_errors(&a).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(store_errors(&a).await, before, "the watch was lost");
}

// ---------------------------------------------------------------------------------------------
// Spillover across the cluster

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_reported_to_one_node_sheds_on_every_node() {
    let lab = Lab::start().await;
    let (ports, etcd) = (lab.ports, &lab.etcd);
    let spill = "\n[spill]\nperiod-ms = 300\nstale-ms = 20000\n";
    let files = two_nodes(etcd, ports, spill, |z| {
        z.replace(
            "[regions.us-east]\n",
            "[regions.us-east]\ncapacity = 100000\n",
        )
        .replace("[regions.eu-west]\n", "[regions.eu-west]\ncapacity = 100\n")
    });
    let (a, b) = (files[0].start(), files[1].start());
    for n in [&a, &b] {
        n.wait_answer(EU_WEST, Duration::from_secs(10)).await;
    }
    // Ten times eu-west's capacity, reported to ns1 only, once per period: ns2 sheds all of
    // eu-west's clients to us-east as ns1 does.
    let load = "/api/v1/zones/probe.test/regions/eu-west/load";
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, v) = a.post_json(load, serde_json::json!({ "load": 1000 })).await;
        assert_eq!(status, 200, "{v}");
        if b.www().as_deref() == Some(&[US_EAST][..]) && a.www().as_deref() == Some(&[US_EAST][..])
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ns2 never shed eu-west's clients (its view: {}); log:\n{}",
            eu_west(&b).await["spill"],
            b.server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let seen = &eu_west(&b).await["spill"];
    assert_eq!(seen["load"], 1000.0, "{seen}");
    assert_eq!(seen["load_reported_to"], "ns1", "{seen}");
    assert!(seen["shed"].as_f64().is_some_and(|s| s > 0.0), "{seen}");
    // ns1 shows its own report, with no other node named.
    let own = &eu_west(&a).await["spill"];
    assert_eq!(own["load"], 1000.0, "{own}");
    assert!(own.get("load_reported_to").is_none(), "{own}");
    // A later report to ns2 is the newest: ns1 takes it, and with eu-west back under its
    // low water the shed decays on both.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, v) = b.post_json(load, serde_json::json!({ "load": 10 })).await;
        assert_eq!(status, 200, "{v}");
        let seen = eu_west(&a).await["spill"].clone();
        if seen["load"] == 10.0
            && seen["load_reported_to"] == "ns2"
            && a.www().as_deref() == Some(&[EU_WEST][..])
            && b.www().as_deref() == Some(&[EU_WEST][..])
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the shed never decayed on both nodes (ns1's view: {seen})"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
