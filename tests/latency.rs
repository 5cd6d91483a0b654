//! The latency map against the real binary: samples posted to `/api/v1/rtt` that contradict
//! geography move the DNS answer (over UDP, with ECS) once there are enough of them, and not
//! before; noisy samples move nothing; the map survives a restart; bad lines get their own
//! errors while the good lines of the same batch are kept; a flood from one source is cut at
//! its rate.

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{RData, RecordType};
use ipnet::IpNet;
use serde_json::Value;

use common::Server;

const FEED: &str = "feed-secret-0123456789";
const FLOOD: &str = "flood-secret-0123456789";
const EU_WEST: &str = "198.51.100.10";
const US_EAST: &str = "192.0.2.10";
/// A GB network (81.2.64.0/19 in the embedded database): eu-west by distance.
const GB: &str = "81.2.69.0/24";

fn start(dir: &Path) -> Server {
    start_with(dir, "")
}

/// [`start`], with more `[latency]` keys.
fn start_with(dir: &Path, latency: &str) -> Server {
    start_args(dir, latency, &[])
}

/// [`start_with`], with more arguments.
fn start_args(dir: &Path, latency: &str, args: &[&str]) -> Server {
    meridian::health::probe::install_crypto_provider();
    std::fs::write(
        dir.join("feeds"),
        format!("nginx-eu:{FEED}\nflood:{FLOOD}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("meridian.toml"),
        format!("[latency]\ntoken-file = \"feeds\"\npublish-secs = 1\nsave-secs = 1\nrate = 1\nburst = 300\n{latency}"),
    )
    .unwrap();
    let config = dir.join("meridian.toml");
    let state = dir.join("state");
    let mut all = vec![
        "--config",
        config.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    Server::start(&all)
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `n` lines of `rtt` ms from `client` to `region`, taken now.
fn lines(client: &str, region: &str, rtts: &[f64], n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"client\":\"{client}\",\"region\":\"{region}\",\"rtt_ms\":{},\"kind\":\"tcp\",\"time\":{}}}\n",
                rtts[i % rtts.len()],
                now()
            )
        })
        .collect()
}

async fn post(server: &Server, token: Option<&str>, body: String) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/api/v1/rtt", server.admin_addr()))
        .body(body);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap(),
    )
}

/// The server's `/metrics` page.
async fn metrics(server: &Server) -> String {
    reqwest::get(format!("http://{}/metrics", server.admin_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn get(server: &Server, path: &str) -> Value {
    let resp = reqwest::get(format!("http://{}{path}", server.admin_addr()))
        .await
        .unwrap();
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}

/// The steered name of the example zone.
const WWW: &str = "www.example.com.";

/// The A addresses of `name` for ECS `net`, and the ECS scope, over UDP.
async fn answer(server: &Server, name: &str, net: &str) -> (Vec<String>, u8) {
    let client = common::udp_client(server.addr()).await;
    let r = common::query(&client, name, RecordType::A, Some(net), Some(1232)).await;
    let addrs = r
        .answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    let scope = match r.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet)) {
        Some(EdnsOption::Subnet(s)) => s.scope_prefix(),
        _ => panic!("no ECS option in the response for {net}"),
    };
    (addrs, scope)
}

/// Polls `check` every 100 ms until it holds, for at most `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the published map holds estimates of `net` (any number of samples).
async fn published(server: &Server, group: &str, region: &str, samples: f64) -> bool {
    let v = get(server, "/api/v1/latency").await;
    v["groups"].as_array().unwrap().iter().any(|g| {
        g["group"] == group && g["region"] == region && g["samples"].as_f64().unwrap() >= samples
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_that_contradict_geography_move_the_answer_once_there_are_enough() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    assert_eq!(answer(&server, WWW, GB).await.0, [EU_WEST]);

    // GB measures us-east faster than eu-west (a transatlantic peering, say): 10 samples
    // each are fewer than the 20 steering needs.
    let batch = lines(GB, "eu-west", &[80.0], 10) + &lines(GB, "us-east", &[30.0], 10);
    let (status, report) = post(&server, Some(FEED), batch).await;
    assert_eq!(
        (status, report["accepted"].as_u64()),
        (200, Some(20)),
        "{report}"
    );
    eventually(Duration::from_secs(10), "GB's samples published", || {
        published(&server, "GB", "us-east", 9.9)
    })
    .await;
    assert_eq!(
        answer(&server, WWW, GB).await.0,
        [EU_WEST],
        "too few samples"
    );

    // Noisy samples whose geometric means are equal (60 ms) move nothing either.
    let noisy = "81.2.71.0/24";
    let batch =
        lines(noisy, "eu-west", &[45.0, 80.0], 40) + &lines(noisy, "us-east", &[30.0, 120.0], 40);
    assert_eq!(post(&server, Some(FEED), batch).await.0, 200);

    // 15 more each: 25 samples, and us-east's 30 ms beats eu-west's 80 past the margin.
    let batch = lines(GB, "eu-west", &[80.0], 15) + &lines(GB, "us-east", &[30.0], 15);
    assert_eq!(post(&server, Some(FEED), batch).await.0, 200);
    eventually(
        Duration::from_secs(10),
        "GB answered by us-east",
        || async { answer(&server, WWW, GB).await.0 == [US_EAST] },
    )
    .await;
    assert_eq!(
        answer(&server, WWW, GB).await.1,
        24,
        "the scope is the measured /24"
    );
    let (addrs, scope) = answer(&server, WWW, noisy).await;
    assert_eq!(
        (addrs, scope),
        (vec![EU_WEST.to_string()], 24),
        "noise moves nothing"
    );
    // A neighbour without samples keeps eu-west, under a scope that leaves GB's /24 out.
    let (addrs, scope) = answer(&server, WWW, "81.2.70.0/24").await;
    assert_eq!(addrs, [EU_WEST]);
    let block = IpNet::new("81.2.70.0".parse::<IpAddr>().unwrap(), scope)
        .unwrap()
        .trunc();
    assert!(
        !block.contains(&"81.2.69.1".parse::<IpAddr>().unwrap()),
        "scope /{scope}"
    );

    // The route API says which estimate decided and from how many samples.
    let route = get(
        &server,
        &format!("/api/v1/route?name=www.example.com&client={GB}"),
    )
    .await;
    assert_eq!(route["a"]["basis"], "measured", "{route}");
    assert_eq!(route["a"]["measured"], GB);
    let first = &route["a"]["candidates"][0];
    assert_eq!(first["region"], "us-east");
    let samples = first["measured"]["samples"].as_f64().unwrap();
    assert!((24.9..=25.0).contains(&samples), "{samples}");
    let rtt = first["measured"]["rtt_ms"].as_f64().unwrap();
    // 25 samples of 30 ms, shrunk a little towards GB's estimate, which the noisy GB
    // network's samples raised.
    assert!(rtt > 30.5 && rtt < 40.0, "{rtt}");
    let noisy_route = get(
        &server,
        &format!("/api/v1/route?name=www.example.com&client={noisy}"),
    )
    .await;
    assert_eq!(noisy_route["a"]["basis"], "nearest", "{noisy_route}");

    // The group estimates, listed or only counted.
    let listed = get(&server, "/api/v1/latency").await;
    let counted = get(&server, "/api/v1/latency?groups=0").await;
    let n = listed["groups"].as_array().unwrap().len();
    assert!(n > 0, "{listed}");
    assert_eq!(listed["group_estimates"], n);
    assert_eq!(counted["group_estimates"], n);
    assert_eq!(counted["groups"], serde_json::json!([]));
    assert_eq!(counted["networks"], listed["networks"]);
    let bad = reqwest::get(format!(
        "http://{}/api/v1/latency?groups=2",
        server.admin_addr()
    ))
    .await
    .unwrap();
    assert_eq!(bad.status().as_u16(), 400);

    // The map survives a restart: saved within a second, served from the first query on.
    let state = dir.path().join("state");
    eventually(Duration::from_secs(10), "the map saved", || {
        let state = state.clone();
        async move {
            meridian::latency::store::load(&state, Default::default())
                .is_ok_and(|mut m| m.publish(now() as u64).networks() == 2)
        }
    })
    .await;
    drop(server);
    let server = start(dir.path());
    assert_eq!(
        answer(&server, WWW, GB).await,
        (vec![US_EAST.to_string()], 24)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_get_their_own_errors_and_the_good_lines_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let t = now();
    let line = |client: &str, region: &str, rtt: &str, time: f64| {
        format!(
            "{{\"client\":\"{client}\",\"region\":\"{region}\",\"rtt_ms\":{rtt},\"kind\":\"tcp\",\"time\":{time}}}"
        )
    };
    let batch = [
        line(GB, "eu-west", "20", t),
        "{\"client\": \"81.2.69.0/24\",".to_string(),
        line(GB, "eu-wset", "20", t),
        line(GB, "eu-west", "-3", t),
        line("10.1.2.0/24", "eu-west", "20", t),
        line(GB, "eu-west", "20", t - 86_400.0),
        String::new(),
        line(GB, "us-east", "70", t),
    ]
    .join("\n");
    let (status, report) = post(&server, Some(FEED), batch).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 2);
    assert_eq!(report["dropped"], 5);
    let errors: Vec<(u64, &str)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        errors,
        [
            (2, "malformed"),
            (3, "unknown-region"),
            (4, "absurd-rtt"),
            (5, "unroutable"),
            (6, "stale")
        ]
    );
    let message = report["errors"][1]["error"].as_str().unwrap();
    assert_eq!(
        message,
        "unknown region \"eu-wset\" (known: ap-southeast, eu-west, us-east)"
    );

    // A batch with nothing good: 400, each line named.
    let (status, err) = post(&server, Some(FEED), line(GB, "mars", "20", t)).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"], "no sample taken: 1 lines dropped");
    assert!(
        err["diagnostics"][0]
            .as_str()
            .unwrap()
            .starts_with("line 1: unknown-region: unknown region \"mars\""),
        "{err}"
    );
    // No token, or not a feed's: 401.
    assert_eq!(
        post(&server, None, line(GB, "eu-west", "20", t)).await.0,
        401
    );
    assert_eq!(
        post(&server, Some("not-a-feed-token-at-all"), String::new())
            .await
            .0,
        401
    );
    // A beacon leaves the client out: the connection's address (loopback here) is taken.
    let beacon = format!("{{\"region\":\"eu-west\",\"rtt_ms\":20,\"kind\":\"ttfb\",\"time\":{t}}}");
    let (status, err) = post(&server, Some(FEED), beacon).await;
    assert_eq!(status, 400);
    assert!(
        err["diagnostics"][0]
            .as_str()
            .unwrap()
            .contains("client 127.0.0.1/32 is special-purpose space"),
        "{err}"
    );

    // A flood from one source: the burst (300) is taken, the rest dropped, and the next
    // batch gets 429; another source is not held back.
    let (status, report) = post(&server, Some(FLOOD), lines(GB, "eu-west", &[25.0], 400)).await;
    assert_eq!(status, 200);
    assert_eq!(
        (report["accepted"].as_u64(), report["dropped"].as_u64()),
        (Some(300), Some(100))
    );
    assert_eq!(report["errors"][0]["line"], 301);
    assert_eq!(report["errors"][0]["reason"], "rate-limited");
    assert_eq!(
        post(&server, Some(FLOOD), lines(GB, "eu-west", &[25.0], 5))
            .await
            .0,
        429
    );
    assert_eq!(
        post(&server, Some(FEED), lines(GB, "eu-west", &[25.0], 5))
            .await
            .0,
        200
    );

    let metrics = metrics(&server).await;
    for want in [
        "meridian_rtt_samples_total{result=\"accepted\"} 307",
        "meridian_rtt_samples_dropped_total{reason=\"malformed\"} 1",
        "meridian_rtt_samples_dropped_total{reason=\"unknown-region\"} 2",
        "meridian_rtt_samples_dropped_total{reason=\"absurd-rtt\"} 1",
        "meridian_rtt_samples_dropped_total{reason=\"unroutable\"} 2",
        "meridian_rtt_samples_dropped_total{reason=\"stale\"} 1",
        "meridian_rtt_samples_dropped_total{reason=\"rate-limited\"} 105",
    ] {
        assert!(metrics.contains(want), "{want} missing:\n{metrics}");
    }

    let js = reqwest::get(format!("http://{}/beacon.js", server.admin_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(js.contains("navigator.sendBeacon"), "{js}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_falls_back_to_distance_when_samples_age_out() {
    let dir = tempfile::tempdir().unwrap();
    // A half-life of 5 s: 200 samples stay above the 20 that steer for about 17 s.
    let server = start_with(dir.path(), "half-life-secs = 5\n");
    let t = now();
    // Aggregates: 8 lines of 25 connections each per region.
    let aggregate = |region: &str, rtt: f64| -> String {
        (0..8)
            .map(|_| {
                format!(
                    "{{\"client\":\"{GB}\",\"region\":\"{region}\",\"rtt_ms\":{rtt},\"kind\":\"tcp\",\"time\":{t},\"count\":25}}\n"
                )
            })
            .collect()
    };
    let (status, report) = post(
        &server,
        Some(FEED),
        aggregate("eu-west", 80.0) + &aggregate("us-east", 30.0),
    )
    .await;
    assert_eq!(
        (status, report["accepted"].as_u64()),
        (200, Some(16)),
        "{report}"
    );
    eventually(
        Duration::from_secs(10),
        "GB answered by us-east",
        || async { answer(&server, WWW, GB).await == (vec![US_EAST.to_string()], 24) },
    )
    .await;
    // No more samples: the estimates decay below 20 samples, the map is published aged (every
    // tenth of the half-life without samples: every interval here), and the distance model
    // answers again.
    eventually(Duration::from_secs(45), "GB back to eu-west", || async {
        answer(&server, WWW, GB).await.0 == [EU_WEST]
    })
    .await;
    let aged = now() - t;
    assert!(
        aged > 15.0,
        "fell back after {aged:.1} s, before the samples aged out"
    );
    let route = get(
        &server,
        &format!("/api/v1/route?name=www.example.com&client={GB}"),
    )
    .await;
    assert_eq!(route["a"]["basis"], "nearest", "{route}");
    assert!(
        route["a"]["candidates"][0].get("measured").is_none(),
        "{route}"
    );
}

/// `probe.test.`: www steered between us-east (192.0.2.10) and eu-west (198.51.100.10),
/// each probed over HTTP at a loopback port.
fn probed_zone(ports: [u16; 2]) -> String {
    format!(
        r#"zone = "probe.test."
records = '''
$TTL 3600
@    IN SOA ns1.probe.test. hostmaster.probe.test. ( 1 7200 3600 1209600 300 )
@    IN NS  ns1
ns1  IN A   192.0.2.53
'''

[health]
check = "http"
path = "/health"
interval = 0.3
timeout = 0.25
rise = 1
fall = 2

[regions.us-east]
location = {{ lat = 39.04, lon = -77.49 }}
endpoints = [{{ address = "{US_EAST}", check-address = "127.0.0.1:{0}" }}]
health = {{ port = {0} }}

[regions.eu-west]
location = {{ lat = 53.35, lon = -6.26 }}
endpoints = [{{ address = "{EU_WEST}", check-address = "127.0.0.1:{1}" }}]
health = {{ port = {1} }}

[steered.www]
regions = ["us-east", "eu-west"]
ttl = 30
"#,
        ports[0], ports[1]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_probe_rtts_are_samples_of_its_own_network() {
    use common::probe_targets::HttpTarget;
    meridian::health::probe::install_crypto_provider();
    // From this node, us-east answers in about 5 ms and eu-west in 60: the reverse of what
    // distance says for the GB network the node stands for.
    let us = HttpTarget::builder()
        .delay(Duration::from_millis(5))
        .start();
    let eu = HttpTarget::builder()
        .delay(Duration::from_millis(60))
        .start();
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    std::fs::write(
        zones.join("probe.test.toml"),
        probed_zone([us.port(), eu.port()]),
    )
    .unwrap();
    // A minute of probing weighs 600 samples (10 a publication): enough to steer in seconds.
    std::fs::write(
        dir.path().join("meridian.toml"),
        format!("[latency]\npublish-secs = 1\nprobe-networks = [\"{GB}\"]\nprobe-weight = 600\n"),
    )
    .unwrap();
    let config = dir.path().join("meridian.toml");
    let server = Server::start_with_zones(&zones, &["--config", config.to_str().unwrap()]);

    eventually(Duration::from_secs(15), "probe samples listed", || async {
        let v = get(&server, "/api/v1/latency").await;
        let probes = v["probes"].as_array().unwrap();
        let rtt = |region: &str| {
            probes
                .iter()
                .find(|p| p["region"] == region && p["network"] == GB)
                .and_then(|p| p["rtt_ms"].as_f64())
        };
        matches!((rtt("us-east"), rtt("eu-west")), (Some(us), Some(eu)) if us < 40.0 && eu >= 60.0)
    })
    .await;
    eventually(
        Duration::from_secs(15),
        "the GB network steered by the probes",
        || async {
            answer(&server, "www.probe.test.", GB).await == (vec![US_EAST.to_string()], 24)
        },
    )
    .await;
    let v = get(&server, &format!("/api/v1/latency?client={GB}")).await;
    eprintln!("{v}");
    let regions = v["listed"][0]["regions"].as_array().unwrap();
    let estimate = |region: &str| {
        regions
            .iter()
            .find(|r| r["region"] == region)
            .and_then(|r| r["rtt_ms"].as_f64())
            .unwrap()
    };
    assert!(
        estimate("us-east") < 40.0 && estimate("eu-west") >= 60.0,
        "{v}"
    );
    // Its neighbour, which the node's probes do not stand for, keeps the distance answer.
    let (addrs, _) = answer(&server, "www.probe.test.", "81.2.70.0/24").await;
    assert_eq!(addrs, [EU_WEST]);
}

/// How many log lines say that the compiler decided the one measured network, leaving it to
/// the direct path for no name (so the compiled path, not the direct one, answers it).
fn decided(server: &Server) -> usize {
    server
        .log_lines()
        .iter()
        .filter(|l| {
            l.contains("\"measured networks compiled\"")
                && l.contains("\"networks\":1,")
                && l.contains("\"left_direct\":0,")
        })
        .count()
}

/// Whether every zone's compiled steering answers the serving map's networks
/// (`meridian_steering_measured_compiled` 1).
async fn measured_compiled(server: &Server) -> bool {
    let body = metrics(server).await;
    let gauges: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("meridian_steering_measured_compiled{"))
        .collect();
    !gauges.is_empty() && gauges.iter().all(|l| l.ends_with(" 1"))
}

/// Waits until GB is answered by `want` with its /24 as scope while the compiled steering
/// answers the serving map's networks.
async fn compiled_answer(server: &Server, want: &str, what: &str) {
    eventually(Duration::from_secs(30), what, || async {
        measured_compiled(server).await
            && answer(server, WWW, GB).await == (vec![want.to_string()], 24)
            && measured_compiled(server).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measured_networks_are_compiled_again_when_the_map_or_the_health_changes() {
    const ADMIN: &str = "admin-secret-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("admin-tokens");
    std::fs::write(&tokens, format!("ops:{ADMIN}\n")).unwrap();
    let server = start_args(
        dir.path(),
        "",
        &["--admin-token-file", tokens.to_str().unwrap()],
    );
    assert_eq!(answer(&server, WWW, GB).await.0, [EU_WEST]);
    let force = |address: &'static str, state: Option<&'static str>| {
        let verb = if state.is_some() { "force" } else { "unforce" };
        let url = format!(
            "http://{}/api/v1/zones/example.com/regions/us-east/endpoints/{address}/{verb}",
            server.admin_addr()
        );
        let body = match state {
            Some(s) => serde_json::json!({ "reason": "test", "state": s }),
            None => serde_json::json!({ "reason": "test" }),
        };
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
        }
    };

    // GB measures us-east faster: the published map moves it, and the compiler decides it.
    let batch = lines(GB, "eu-west", &[80.0], 25) + &lines(GB, "us-east", &[30.0], 25);
    assert_eq!(post(&server, Some(FEED), batch).await.0, 200);
    compiled_answer(&server, US_EAST, "GB compiled to us-east").await;
    assert!(decided(&server) > 0, "{}", server.log_text());

    // us-east goes down: the zone compiles anew, GB with it.
    let before = decided(&server);
    for address in [US_EAST, "2001:db8:1::10"] {
        force(address, Some("down")).await;
    }
    compiled_answer(&server, EU_WEST, "GB compiled to eu-west, us-east down").await;
    assert!(decided(&server) > before, "{}", server.log_text());
    for address in [US_EAST, "2001:db8:1::10"] {
        force(address, None).await;
    }
    compiled_answer(&server, US_EAST, "GB compiled to us-east again, us-east up").await;

    // New samples move it back: eu-west now as fast (clamped to a third of 80 ms) and
    // us-east slower (clamped to 3 times 30 ms).
    let before = decided(&server);
    let batch = lines(GB, "eu-west", &[20.0], 100) + &lines(GB, "us-east", &[200.0], 100);
    assert_eq!(post(&server, Some(FEED), batch).await.0, 200);
    compiled_answer(&server, EU_WEST, "GB compiled back to eu-west").await;
    assert!(decided(&server) > before, "{}", server.log_text());
}
