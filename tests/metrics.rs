//! `/metrics` of the real binary as an SRE reads it: planned work (a drain) told apart from an
//! outage, a name answering its fallback warned of once, the query path's latency, fast-path
//! hits, ECS scopes and TCP connections, the process's own metrics, text that `promtool check
//! metrics` accepts, and the shipped alert rules tested by `promtool test rules` on series
//! recorded from the server (promtool: Debian's `prometheus` package, scripts/setup.sh).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use common::Server;

const TOKEN: &str = "metrics-test-secret-0123456";

struct Admin {
    server: Server,
    http: reqwest::Client,
    base: String,
    _dir: tempfile::TempDir,
}

impl Admin {
    fn start() -> Admin {
        meridian::health::probe::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, format!("ops:{TOKEN}\n")).unwrap();
        let server = Server::start(&["--admin-token-file", tokens.to_str().unwrap()]);
        let base = format!("http://{}", server.admin_addr());
        Admin {
            server,
            http: reqwest::Client::new(),
            base,
            _dir: dir,
        }
    }

    async fn post(&self, path: &str) {
        self.post_body(path, r#"{"reason": "metrics test"}"#).await;
    }

    async fn post_body(&self, path: &str, body: &str) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("the admin API answers");
        assert_eq!(resp.status(), 200, "{path}: {}", resp.text().await.unwrap());
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The value of the series `series` (name and labels exactly as rendered).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn region_state(text: &str, region: &str, state: &str) -> Option<f64> {
    value(
        text,
        &format!(
            "meridian_region_state{{zone=\"example.com.\",region=\"{region}\",state=\"{state}\"}}"
        ),
    )
}

const FALLBACK: &str =
    "meridian_fallback_answering{zone=\"example.com.\",name=\"www.example.com.\"}";
const FALLBACK_WARNING: &str = "no region of the name can answer: answering its fallback";

fn drain(region: &str, verb: &str) -> String {
    format!("/api/v1/zones/example.com/regions/{region}/{verb}")
}

/// Runs `promtool check metrics` on `text`; panics with its findings when it objects.
fn promtool_check_metrics(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_drain_is_not_an_outage_and_every_region_drained_answers_the_fallback_once_warned() {
    let admin = Admin::start();
    assert_eq!(
        common::www_answer(&admin.server, "81.2.69.0/24").await,
        ["198.51.100.10"]
    );
    let text = admin.metrics().await;
    assert_eq!(region_state(&text, "eu-west", "up"), Some(1.0), "{text}");
    assert_eq!(region_state(&text, "eu-west", "drained"), Some(0.0));
    assert_eq!(value(&text, FALLBACK), Some(0.0), "{text}");

    admin.post(&drain("eu-west", "drain")).await;
    let text = admin.metrics().await;
    assert_eq!(
        region_state(&text, "eu-west", "drained"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(region_state(&text, "eu-west", "down"), Some(0.0));
    assert_eq!(region_state(&text, "eu-west", "up"), Some(0.0));
    // What meridian_region_up says of a drain, as documented: 0, like an outage.
    assert_eq!(
        value(
            &text,
            "meridian_region_up{zone=\"example.com.\",region=\"eu-west\"}"
        ),
        Some(0.0)
    );
    assert_eq!(value(&text, FALLBACK), Some(0.0));

    admin.post(&drain("us-east", "drain")).await;
    admin.post(&drain("ap-southeast", "drain")).await;
    let text = admin.metrics().await;
    assert_eq!(value(&text, FALLBACK), Some(1.0), "{text}");
    // The fallback ("all") answers every endpoint, queried or not, and the warning is in
    // the log once, not once per query.
    for _ in 0..3 {
        let answer = common::www_answer(&admin.server, "81.2.69.0/24").await;
        assert_eq!(answer.len(), 3, "{answer:?}");
    }
    let warned = || {
        admin
            .server
            .log_lines()
            .iter()
            .filter(|l| l.contains(FALLBACK_WARNING))
            .count()
    };
    assert_eq!(warned(), 1, "{}", admin.server.log_text());
    let line = admin
        .server
        .log_lines()
        .into_iter()
        .find(|l| l.contains(FALLBACK_WARNING))
        .unwrap();
    assert!(
        line.contains("\"WARN\"") && line.contains("www.example.com."),
        "{line}"
    );

    admin.post(&drain("us-east", "undrain")).await;
    let text = admin.metrics().await;
    assert_eq!(value(&text, FALLBACK), Some(0.0), "{text}");
    assert_eq!(region_state(&text, "us-east", "up"), Some(1.0));
    assert_eq!(warned(), 1);

    // An endpoint held down by an operator: the region's state is theirs, not an outage.
    admin
        .post_body(
            "/api/v1/zones/example.com/regions/us-east/endpoints/192.0.2.10/force",
            r#"{"state": "down", "reason": "bad disk"}"#,
        )
        .await;
    let text = admin.metrics().await;
    assert_eq!(
        region_state(&text, "us-east", "forced"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(region_state(&text, "us-east", "down"), Some(0.0));
    assert_eq!(region_state(&text, "us-east", "up"), Some(0.0));
    promtool_check_metrics(&text);
}

#[tokio::test]
async fn every_ipv4_endpoint_down_answers_a_with_the_fallback_and_aaaa_steered() {
    let admin = Admin::start();
    for ep in [
        "us-east/endpoints/192.0.2.10",
        "eu-west/endpoints/198.51.100.10",
        "ap-southeast/endpoints/203.0.113.10",
    ] {
        admin
            .post_body(
                &format!("/api/v1/zones/example.com/regions/{ep}/force"),
                r#"{"state": "down", "reason": "IPv4 outage drill"}"#,
            )
            .await;
    }
    let text = admin.metrics().await;
    assert_eq!(value(&text, FALLBACK), Some(1.0), "{text}");
    // A: no region has an IPv4 endpoint up, so the fallback ("all") answers, not NODATA.
    let mut a = common::www_answer(&admin.server, "81.2.69.0/24").await;
    a.sort();
    assert_eq!(a, ["192.0.2.10", "198.51.100.10", "203.0.113.10"]);
    // AAAA: still steered, to the nearest region for a British client.
    let client = common::udp_client(admin.server.addr()).await;
    let aaaa = common::query(
        &client,
        "www.example.com.",
        RecordType::AAAA,
        Some("81.2.69.0/24"),
        Some(1232),
    )
    .await;
    let aaaa: Vec<String> = aaaa.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(aaaa, ["2001:db8:2::10"]);
    let line = admin
        .server
        .log_lines()
        .into_iter()
        .find(|l| l.contains(FALLBACK_WARNING))
        .unwrap_or_else(|| panic!("no warning: {}", admin.server.log_text()));
    assert!(line.contains("\"qtypes\":\"A\""), "{line}");
}

#[tokio::test]
async fn the_query_path_and_the_process_are_measured() {
    let admin = Admin::start();
    const UDP_QUERIES: usize = 20;
    for _ in 0..UDP_QUERIES {
        common::www_answer(&admin.server, "81.2.69.0/24").await;
    }
    let tcp = common::tcp_client(admin.server.addr()).await;
    common::query(&tcp, "static.example.com.", RecordType::A, None, Some(1232)).await;
    drop(tcp);

    // The TCP connection's task ends shortly after the client closes it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = admin.metrics().await;
        if value(&text, "meridian_dns_tcp_connections") == Some(0.0) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        value(&text, "meridian_dns_tcp_connections"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "meridian_dns_tcp_connections_total"),
        Some(1.0)
    );
    let count = |transport: &str| {
        value(
            &text,
            &format!("meridian_dns_query_duration_seconds_count{{transport=\"{transport}\"}}"),
        )
        .unwrap()
    };
    assert_eq!(count("udp"), UDP_QUERIES as f64, "{text}");
    assert_eq!(count("tcp"), 1.0, "{text}");
    let sum = value(
        &text,
        "meridian_dns_query_duration_seconds_sum{transport=\"udp\"}",
    )
    .unwrap();
    assert!(sum > 0.0 && sum < 10.0, "{sum}");
    // The same question from the same network: the first is a miss, the rest hits.
    let hits = value(&text, "meridian_dns_fast_path_total{result=\"hit\"}").unwrap();
    let misses = value(&text, "meridian_dns_fast_path_total{result=\"miss\"}").unwrap();
    assert_eq!(hits + misses, UDP_QUERIES as f64 + 1.0, "{text}");
    assert!(
        hits >= UDP_QUERIES as f64 - 4.0,
        "hits {hits}, misses {misses}"
    );
    // Every UDP query carried ECS 81.2.69.0/24; the answer depends on the client.
    let scoped: f64 = text
        .lines()
        .filter(|l| l.starts_with("meridian_dns_ecs_answers_total{scope="))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(scoped, UDP_QUERIES as f64, "{text}");
    assert_eq!(
        value(&text, "meridian_dns_ecs_answers_total{scope=\"0\"}"),
        None,
        "{text}"
    );
    let rss = value(&text, "process_resident_memory_bytes").unwrap();
    assert!(rss > 1e6, "{rss}");
    assert!(value(&text, "process_open_fds").unwrap() >= 3.0);
    assert!(value(&text, "process_max_fds").unwrap() >= 3.0);
    assert!(value(&text, "process_cpu_seconds_total").unwrap() > 0.0);
    let started = value(&text, "process_start_time_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started <= now + 1.0 && started > now - 600.0,
        "{started} {now}"
    );
    promtool_check_metrics(&text);
}

/// The shipped alert rules against series recorded from this server, a scrape a minute:
/// three minutes all up, three with eu-west drained, three with every region drained. The
/// drain pages nobody; the name left without a region does.
#[tokio::test]
async fn alert_rules_fire_on_recorded_series_only_when_a_name_has_no_region() {
    let admin = Admin::start();
    let mut series: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let phases: [&[&str]; 3] = [&[], &["eu-west"], &["us-east", "ap-southeast"]];
    for drains in phases {
        for region in drains {
            admin.post(&drain(region, "drain")).await;
        }
        let text = admin.metrics().await;
        for line in text.lines().filter(|l| {
            l.starts_with("meridian_region_state{") || l.starts_with("meridian_fallback_answering{")
        }) {
            let (name, v) = line.rsplit_once(' ').unwrap();
            let name = name.replacen('{', "{instance=\"recorded\",", 1);
            series
                .entry(name)
                .or_default()
                .extend(std::iter::repeat_n(v.to_string(), 3));
        }
    }
    assert!(series.len() >= 16, "{series:?}");
    let mut input = String::new();
    for (name, values) in &series {
        assert_eq!(values.len(), 9, "{name} was not in every scrape");
        input.push_str(&format!(
            "      - series: '{name}'\n        values: '{}'\n",
            values.join(" ")
        ));
    }
    let rules =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/prometheus/alerts.yml");
    let none = |at: &str, alert: &str| {
        format!("      - eval_time: {at}\n        alertname: {alert}\n        exp_alerts: []\n")
    };
    let test = format!(
        r#"rule_files:
  - {}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
{input}    alert_rule_test:
{}{}{}{}      - eval_time: 8m
        alertname: MeridianFallbackAnswering
        exp_alerts:
          - exp_labels:
              severity: critical
              instance: recorded
              zone: example.com.
              name: www.example.com.
            exp_annotations:
              summary: "www.example.com. answers its fallback: no region of it can answer"
              description: "No region of www.example.com. (zone example.com.) can answer A or AAAA (each is down, drained, or has every endpoint of the family down), so clients get the name's fallback addresses (or every endpoint), whatever their location. See which regions and endpoints are down or drained: GET /api/v1/regions."
      - eval_time: 8m
        alertname: MeridianAllRegionsDown
        exp_alerts:
          - exp_labels:
              severity: critical
              instance: recorded
              zone: example.com.
            exp_annotations:
              summary: "No region of zone example.com. is up on recorded"
              description: "Every region of example.com. is down, drained or forced out: every steered name of the zone answers its fallback."
"#,
        rules.display(),
        none("5m", "MeridianRegionDown"),
        none("5m", "MeridianFallbackAnswering"),
        none("5m", "MeridianAllRegionsDown"),
        none("8m", "MeridianRegionDown"),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("recorded_test.yml");
    std::fs::write(&file, &test).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}\n{test}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
