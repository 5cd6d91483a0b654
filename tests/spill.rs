//! Capacity-aware spillover against the real binary, over UDP and TCP with ECS client
//! networks from the whole IPv4 space: a closed-loop simulation where each region's load is
//! the number of client networks the server answers with it times a per-network rate, posted
//! to the admin API each control period. After the largest region fails, no surviving
//! region stays over capacity for more than two control periods; a region under capacity
//! sheds nothing; a load feed that stops expires; bad capacities and load bodies get
//! precise errors.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use serde_json::Value;

use common::{DnsClient, Server};

const TOKEN: &str = "spill-test-secret-0123456";
const ZONE: &str = "spill.test.";
/// Queries a second that one client network sends, in the simulation.
const RATE: f64 = 10.0;

const REGIONS: [(&str, f64, f64, &str); 5] = [
    ("us-east", 39.04, -77.49, "192.0.2.10"),
    ("us-west", 45.60, -121.18, "192.0.2.20"),
    ("eu-west", 53.35, -6.26, "198.51.100.10"),
    ("eu-central", 50.11, 8.68, "198.51.100.20"),
    ("ap-southeast", 1.35, 103.82, "203.0.113.10"),
];

/// The zone, with a capacity for the regions given one.
fn zone_text(capacity: &BTreeMap<String, f64>) -> String {
    let mut out = format!(
        "zone = \"{ZONE}\"\nrecords = '''\n$TTL 3600\n@ IN SOA ns1 hostmaster 1 7200 3600 \
         1209600 300\n@ IN NS ns1\nns1 IN A 192.0.2.53\n'''\n"
    );
    for (name, lat, lon, addr) in REGIONS {
        out += &format!(
            "\n[regions.{name}]\nlocation = {{ lat = {lat}, lon = {lon} }}\nendpoints = [\"{addr}\"]\n"
        );
        if let Some(c) = capacity.get(name) {
            out += &format!("capacity = {c}\n");
        }
    }
    let names: Vec<String> = REGIONS.iter().map(|r| format!("\"{}\"", r.0)).collect();
    out += &format!("\n[steered.www]\nregions = [{}]\n", names.join(", "));
    out
}

fn region_of(addr: &str) -> &'static str {
    REGIONS
        .iter()
        .find(|r| r.3 == addr)
        .unwrap_or_else(|| panic!("{addr} is no region's"))
        .0
}

struct Rig {
    server: Server,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

fn start(capacity: &BTreeMap<String, f64>, spill: &str) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    std::fs::write(zones.join("spill.test.toml"), zone_text(capacity)).unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("ops:{TOKEN}\n")).unwrap();
    let config = dir.path().join("meridian.toml");
    std::fs::write(&config, format!("[spill]\n{spill}")).unwrap();
    let server = Server::start_with_zones(
        &zones,
        &[
            "--admin-token-file",
            tokens.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    meridian::health::probe::install_crypto_provider();
    Rig {
        server,
        dir,
        http: reqwest::Client::new(),
    }
}

impl Rig {
    async fn request(&self, path: &str, body: Option<&str>, token: bool) -> (u16, Value) {
        let url = format!("http://{}{path}", self.server.admin_addr());
        let mut req = match body {
            Some(b) => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(b.to_string()),
            None => self.http.get(url),
        };
        if token {
            req = req.header("authorization", format!("Bearer {TOKEN}"));
        }
        let resp = req.send().await.expect("the admin API answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.request(path, Some(body), true).await
    }

    async fn post_ok(&self, path: &str, body: &str) {
        let (status, v) = self.post(path, body).await;
        assert_eq!(status, 200, "{path}: {v}");
    }

    async fn report(&self, region: &str, load: f64) {
        self.post_ok(
            &format!("/api/v1/zones/{ZONE}/regions/{region}/load"),
            &format!("{{\"load\": {load}}}"),
        )
        .await;
    }

    /// Each region's `spill` object from `GET /api/v1/regions`.
    async fn spill(&self) -> BTreeMap<String, Value> {
        let (status, v) = self.request("/api/v1/regions", None, false).await;
        assert_eq!(status, 200, "{v}");
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["region"].as_str().unwrap().to_string(),
                    r["spill"].clone(),
                )
            })
            .collect()
    }

    async fn periods(&self) -> u64 {
        self.spill().await["us-east"]["periods"].as_u64().unwrap()
    }

    /// Waits (bounded) for the next controller run to publish, and returns its number. A run
    /// takes microseconds, so the one that ends after this call began after it.
    async fn next_period(&self) -> u64 {
        let from = self.periods().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.periods().await;
            if now > from {
                return now;
            }
            assert!(Instant::now() < deadline, "no controller run within 20 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_has(&self, words: &[&str]) -> bool {
        self.server
            .log_lines()
            .iter()
            .any(|l| words.iter().all(|w| l.contains(w)))
    }
}

/// The region answering www for `ecs`, and the ECS scope.
async fn ask(client: &DnsClient, ecs: &str) -> (&'static str, u8) {
    let r = common::query(
        client,
        "www.spill.test.",
        RecordType::A,
        Some(ecs),
        Some(1232),
    )
    .await;
    let m: &Message = &r;
    let scope = match m.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet)) {
        Some(EdnsOption::Subnet(s)) => s.scope_prefix(),
        _ => panic!("{ecs}: no ECS option in the response"),
    };
    assert_eq!(m.answers.len(), 1, "{ecs}: {:?}", m.answers);
    (region_of(&m.answers[0].data.to_string()), scope)
}

/// Every network's answer, 250 at a time.
async fn answers(client: &DnsClient, nets: &[String]) -> Vec<(&'static str, u8)> {
    answers_by(client, nets, 250).await
}

/// Every network's answer, `at_once` at a time (a TCP connection takes a few at once).
async fn answers_by(
    client: &DnsClient,
    nets: &[String],
    at_once: usize,
) -> Vec<(&'static str, u8)> {
    let mut out = Vec::with_capacity(nets.len());
    for chunk in nets.chunks(at_once) {
        out.extend(join_all(chunk.iter().map(|n| ask(client, n))).await);
    }
    out
}

/// Load by region: networks answered there times [`RATE`].
fn loads(answers: &[(&'static str, u8)]) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = REGIONS.iter().map(|r| (r.0.to_string(), 0.0)).collect();
    for (r, _) in answers {
        *out.get_mut(*r).unwrap() += RATE;
    }
    out
}

#[tokio::test]
async fn after_the_largest_region_fails_no_survivor_stays_over_capacity_for_two_periods() {
    let nets = common::unicast_24s(1_500, 23);
    // Where the networks go with every region up and no capacity.
    let rig = start(&BTreeMap::new(), "period-ms = 1500\n");
    let udp = common::udp_client(rig.server.addr()).await;
    // Scopes are compared too: measured once the compiled tables serve.
    common::wait_compiled(&rig.server);
    let baseline = answers(&udp, &nets).await;
    let base = loads(&baseline);
    let total: f64 = base.values().sum();
    let (largest, &largest_load) = base.iter().max_by(|a, b| a.1.total_cmp(b.1)).unwrap();
    let largest = largest.clone();
    // Capacities in proportion to each region's clients, with 25 % to spare overall once the
    // largest region is gone.
    let factor = 1.25 * total / (total - largest_load);
    let capacity: BTreeMap<String, f64> = base
        .iter()
        .map(|(r, l)| (r.clone(), (l * factor).max(RATE * 20.0).ceil()))
        .collect();
    eprintln!("baseline loads {base:?}; capacities {capacity:?}; {largest} fails");
    std::fs::write(
        rig.dir.path().join("zones/spill.test.toml"),
        zone_text(&capacity),
    )
    .unwrap();
    rig.post_ok("/api/v1/reload", r#"{"reason": "capacities"}"#)
        .await;

    // Under capacity: three periods of reports shed nothing and move no network.
    for _ in 0..3 {
        for (r, l) in &base {
            rig.report(r, *l).await;
        }
        rig.next_period().await;
    }
    for (r, s) in rig.spill().await {
        assert_eq!(s["shed"], 0.0, "{r}: {s}");
        assert_eq!(s["capacity"], capacity[&r], "{r}: {s}");
        assert_eq!(s["load"], base[&r], "{r}: {s}");
    }
    common::wait_compiled(&rig.server);
    assert_eq!(answers(&udp, &nets).await, baseline, "moved under capacity");

    // The largest region fails (drained: down to steering). From then on, each period: the
    // test measures what the server answers, reports the loads, and waits for the next run.
    rig.post_ok(
        &format!("/api/v1/zones/{ZONE}/regions/{largest}/drain"),
        r#"{"reason": "the largest region fails"}"#,
    )
    .await;
    let mut over_since: BTreeMap<String, u64> = BTreeMap::new();
    let mut longest: BTreeMap<String, u64> = BTreeMap::new();
    let mut period = rig.next_period().await;
    let mut last = Vec::new();
    let mut rounds = 0;
    while rounds < 10 {
        let now = answers(&udp, &nets).await;
        // A run published in the middle of the measurement: measure again after the next.
        if rig.periods().await != period {
            period = rig.next_period().await;
            continue;
        }
        rounds += 1;
        let l = loads(&now);
        let spill = rig.spill().await;
        let shed: BTreeMap<&String, f64> = spill
            .iter()
            .map(|(r, s)| (r, s["shed"].as_f64().unwrap()))
            .collect();
        eprintln!("period {period}: loads {l:?} shed {shed:?}");
        for (r, load) in &l {
            if *r == largest {
                assert_eq!(*load, 0.0, "the failed region answers");
                continue;
            }
            if *load > capacity[r] {
                let since = *over_since.entry(r.clone()).or_insert(period);
                let held = period - since + 1;
                let worst = longest.entry(r.clone()).or_default();
                *worst = (*worst).max(held);
            } else {
                over_since.remove(r);
            }
            rig.report(r, *load).await;
        }
        last = now;
        period = rig.next_period().await;
    }
    eprintln!("periods over capacity, longest run per region: {longest:?}");
    for (r, held) in &longest {
        assert!(*held <= 2, "{r} over capacity for {held} periods");
    }
    assert!(over_since.is_empty(), "still over capacity: {over_since:?}");
    // The failed region's networks went to more than one region.
    let receivers: HashSet<&str> = baseline
        .iter()
        .zip(&last)
        .filter(|(b, _)| b.0 == largest)
        .map(|(_, n)| n.0)
        .collect();
    let spilled: HashSet<&str> = baseline
        .iter()
        .zip(&last)
        .filter(|(b, n)| b.0 != largest && b.0 != n.0)
        .map(|(_, n)| n.0)
        .collect();
    eprintln!(
        "the failed region's networks went to {receivers:?}; spilled networks to {spilled:?}"
    );
    assert!(
        receivers.len() + spilled.len() >= 2,
        "{receivers:?} {spilled:?}"
    );
    // A network of a shedding region gets the scope of the /24 the hash decides on.
    let spill = rig.spill().await;
    let shedding: HashSet<&str> = spill
        .iter()
        .filter(|(_, s)| s["shed"].as_f64().unwrap() > 0.0)
        .map(|(r, _)| r.as_str())
        .collect();
    for ((b, n), net) in baseline.iter().zip(&last).zip(&nets) {
        if b.0 != largest && b.0 != n.0 {
            assert_eq!(n.1, 24, "{net} spilled from {} to {}", b.0, n.0);
        }
        if shedding.contains(b.0) && b.0 == n.0 {
            assert_eq!(n.1, 24, "{net} kept by shedding {}", b.0);
        }
    }
    // Over TCP, the same answers under the same published fractions.
    let tcp = common::tcp_client(rig.server.addr()).await;
    let mut compared = false;
    let fractions = |s: BTreeMap<String, Value>| -> Vec<(f64, f64)> {
        s.values()
            .map(|v| (v["shed"].as_f64().unwrap(), v["accept"].as_f64().unwrap()))
            .collect()
    };
    for _ in 0..5 {
        let before = fractions(rig.spill().await);
        let udp_now = answers(&udp, &nets[..300]).await;
        let tcp_now = answers_by(&tcp, &nets[..300], 8).await;
        if fractions(rig.spill().await) == before {
            assert_eq!(udp_now, tcp_now);
            compared = true;
            break;
        }
    }
    assert!(
        compared,
        "the fractions moved during every comparison of UDP and TCP"
    );
    assert!(rig.log_has(&["region over capacity", "WARN"]));
}

#[tokio::test]
async fn a_stale_feed_expires_and_the_shed_decays() {
    let capacity = BTreeMap::from([("eu-west".to_string(), 100.0)]);
    let rig = start(&capacity, "period-ms = 200\nstale-ms = 1500\n");
    // A client network that eu-west answers.
    let udp = common::udp_client(rig.server.addr()).await;
    let nets = common::unicast_24s(1_500, 23);
    let all = answers(&udp, &nets[..400]).await;
    let (dublin, _) = nets
        .iter()
        .zip(&all)
        .find(|(_, a)| a.0 == "eu-west")
        .expect("some network is answered by eu-west");
    rig.report("eu-west", 1000.0).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    // Shed grows by the step each period until every client goes.
    loop {
        rig.report("eu-west", 1000.0).await;
        let s = &rig.spill().await["eu-west"];
        if s["shed"] == 1.0 {
            assert_eq!(s["accept"], 0.0);
            assert_eq!(s["load"], 1000.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "eu-west never shed everything: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (region, scope) = ask(&udp, dublin).await;
    assert_ne!(region, "eu-west");
    assert_eq!(scope, 24);
    // The route API says why.
    let (status, text) = rig
        .request(
            &format!(
                "/api/v1/route?name=www.{ZONE}&client={}&format=text",
                dublin.replace('/', "%2F")
            ),
            None,
            false,
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let text = text.as_str().unwrap();
    assert!(
        text.contains("spill: eu-west is over capacity and sheds 100%"),
        "{text}"
    );
    assert!(text.contains("over capacity: sheds this network"), "{text}");
    let metrics = rig.request("/metrics", None, false).await.1;
    let metrics = metrics.as_str().unwrap();
    for line in [
        "meridian_region_capacity{zone=\"spill.test.\",region=\"eu-west\"} 100",
        "meridian_region_load{zone=\"spill.test.\",region=\"eu-west\"} 1000",
        "meridian_region_shed_ratio{zone=\"spill.test.\",region=\"eu-west\"} 1",
    ] {
        assert!(metrics.contains(line), "no {line} in /metrics");
    }
    // The feed stops: the report expires (logged), the region counts as not overloaded and
    // its shed fraction decays to 0.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = &rig.spill().await["eu-west"];
        if s["shed"] == 0.0 {
            assert_eq!(s["load"], Value::Null);
            assert_eq!(s["accept"], 1.0);
            break;
        }
        assert!(Instant::now() < deadline, "the shed never decayed: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rig.log_has(&["region load report expired", "eu-west"]));
    assert_eq!(ask(&udp, dublin).await.0, "eu-west");
}

#[tokio::test]
async fn bad_load_reports_get_precise_errors() {
    let rig = start(&BTreeMap::from([("us-east".to_string(), 50.0)]), "");
    let path = format!("/api/v1/zones/{ZONE}/regions/us-east/load");
    let cases: [(&str, u16, &str); 5] = [
        (
            r#"{"load": -1}"#,
            400,
            "load -1 is not a number of at least 0",
        ),
        (
            r#"{"load": "high"}"#,
            400,
            "invalid type: string \"high\", expected f64",
        ),
        (r#"{"load": 1, "unit": "qps"}"#, 400, "unknown field `unit`"),
        (r#"{}"#, 400, "missing field `load`"),
        (r#"{"load": 1e999}"#, 400, "out of range"),
    ];
    for (body, status, words) in cases {
        let (got, v) = rig.post(&path, body).await;
        assert_eq!(got, status, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(words), "{body}: {v}");
    }
    let (got, v) = rig
        .post(
            &format!("/api/v1/zones/{ZONE}/regions/mars/load"),
            r#"{"load": 1}"#,
        )
        .await;
    assert_eq!(got, 404, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("unknown region \"mars\""),
        "{v}"
    );
    let (got, v) = rig.request(&path, Some(r#"{"load": 1}"#), false).await;
    assert_eq!(got, 401, "{v}");
    let (got, v) = rig.post(&path, r#"{"load": 12.5}"#).await;
    assert_eq!(got, 200, "{v}");
    assert_eq!(v["capacity"], 50.0);
    assert_eq!(v["load"], 12.5);
}

#[test]
fn check_refuses_a_bad_capacity_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut capacity = BTreeMap::new();
    capacity.insert("us-west".to_string(), -5.0);
    capacity.insert("eu-west".to_string(), 0.0);
    let text = zone_text(&capacity);
    let file = dir.path().join("spill.test.toml");
    std::fs::write(&file, &text).unwrap();
    let line = |key: &str| {
        let region = text
            .lines()
            .position(|l| l == format!("[regions.{key}]"))
            .unwrap();
        region
            + 1
            + text
                .lines()
                .skip(region)
                .position(|l| l.starts_with("capacity"))
                .unwrap()
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["check", "--zones", dir.path().to_str().unwrap()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let f = Path::new(&file).display().to_string();
    for (region, value) in [("us-west", "-5"), ("eu-west", "0")] {
        let want = format!(
            "{f}:{}: region {region}: capacity {value} is not a positive number",
            line(region)
        );
        assert!(all.contains(&want), "no {want:?} in:\n{all}");
    }
}

#[test]
fn a_bad_spill_section_is_refused_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meridian.toml");
    std::fs::write(&config, "[spill]\nperiod-ms = 10\nmax-step = 1.5\n").unwrap();
    let (status, stderr) = common::serve_expecting_exit(&["--config", config.to_str().unwrap()]);
    assert!(status.is_some_and(|s| !s.success()), "{stderr}");
    let f = config.display().to_string();
    assert!(
        stderr.contains(&format!("{f}:2: period-ms 10 is not in 100..=600000")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{f}:3: max-step 1.5 is not in (0, 1]")),
        "{stderr}"
    );
}

/// The zone with a capacity of 100 and a `load-from` on eu-west.
fn scraped_zone(url: &str, metric: &str) -> String {
    zone_text(&BTreeMap::from([("eu-west".to_string(), 100.0)])).replace(
        "capacity = 100\n",
        &format!("capacity = 100\nload-from = {{ url = \"{url}\", metric = '{metric}' }}\n"),
    )
}

#[tokio::test]
async fn a_load_scraped_from_prometheus_sheds_and_a_dead_scrape_expires() {
    let mut target = common::probe_targets::HttpTarget::builder()
        .body("# TYPE frontend_qps gauge\nfrontend_qps{region=\"us-east\"} 5\nfrontend_qps{region=\"eu-west\",pod=\"a\"} 1000\n")
        .start();
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    let url = format!("http://{}/metrics", target.addr());
    std::fs::write(
        zones.join("spill.test.toml"),
        scraped_zone(&url, "frontend_qps{region=\"eu-west\"}"),
    )
    .unwrap();
    let config = dir.path().join("meridian.toml");
    std::fs::write(&config, "[spill]\nperiod-ms = 200\nstale-ms = 1500\n").unwrap();
    let server = Server::start_with_zones(&zones, &["--config", config.to_str().unwrap()]);
    meridian::health::probe::install_crypto_provider();
    let rig = Rig {
        server,
        dir,
        http: reqwest::Client::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = &rig.spill().await["eu-west"];
        if s["shed"] == 1.0 {
            assert_eq!(s["load"], 1000.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scraped load shed nothing: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    target.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = &rig.spill().await["eu-west"];
        if s["shed"] == 0.0 {
            assert_eq!(s["load"], Value::Null);
            break;
        }
        assert!(Instant::now() < deadline, "the shed never decayed: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rig.log_has(&["region load cannot be scraped", "eu-west", "WARN"]));
    assert!(rig.log_has(&["region load report expired", "eu-west"]));
}

#[test]
fn check_refuses_a_bad_load_source_at_its_line() {
    for (url, metric, words) in [
        (
            "ftp://127.0.0.1/metrics",
            "qps",
            "load-from url \"ftp://127.0.0.1/metrics\" is not http",
        ),
        (
            "http://127.0.0.1:9100/metrics",
            "qps{region=eu}",
            "load-from metric \"qps{region=eu}\": labels are",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let text = scraped_zone(url, metric);
        let file = dir.path().join("spill.test.toml");
        std::fs::write(&file, &text).unwrap();
        let line = 1 + text
            .lines()
            .position(|l| l.starts_with("load-from"))
            .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(["check", "--zones", dir.path().to_str().unwrap()])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let want = format!("{}:{line}: region eu-west: {words}", file.display());
        assert!(all.contains(&want), "no {want:?} in:\n{all}");
    }
}
