//! The rules of steered names against the real binary, over UDP and TCP with ECS client
//! networks from many countries and ASes: network and ASN rules win over distance, a fence
//! holds and fails closed, a weighted split keeps its ratio over 10,000 client networks and
//! each network's side across reloads, bias moves a catchment.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use futures_util::future::join_all;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};

use common::{DnsClient, Server};

const TOKEN: &str = "rules-test-secret-0123456";

/// The rules zone of bench/zones-rules, plus `canary` (every client to eu-west, split with
/// eu-central by `percent`) and `plain`/`biased` (biased: us-east 4,000 km nearer).
fn zone_text(percent: u32) -> String {
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/zones-rules/rules.test.toml"),
    )
    .unwrap();
    format!(
        r#"{base}
[steered.canary]
regions = ["eu-west", "eu-central"]
policy = "failover"

[[steered.canary.split]]
region = "eu-west"
weights = {{ eu-west = {}, eu-central = {percent} }}

[steered.sorry]
regions = ["us-east", "eu-west"]

[[steered.sorry.fence]]
continents = ["EU"]
regions = ["eu-west"]
when-all-down = "fail-closed"
closed-answer = ["192.0.2.99"]

[steered.resident]
regions = ["eu-west", "us-east"]
multivalue = 2

[[steered.resident.fence]]
continents = ["EU"]
regions = ["eu-west"]

[steered.plain]
regions = ["us-east", "us-west"]

[steered.biased]
regions = ["us-east", "us-west"]
bias-km = {{ us-east = 4000 }}
"#,
        100 - percent
    )
}

struct Rig {
    server: Server,
    zones: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(percent: u32) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    std::fs::write(zones.join("rules.test.toml"), zone_text(percent)).unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("ops:{TOKEN}\n")).unwrap();
    let server =
        Server::start_with_zones(&zones, &["--admin-token-file", tokens.to_str().unwrap()]);
    Rig {
        server,
        zones,
        _dir: dir,
    }
}

impl Rig {
    async fn post(&self, path: &str, body: &str) {
        meridian::health::probe::install_crypto_provider();
        let resp = reqwest::Client::new()
            .post(format!("http://{}{path}", self.server.admin_addr()))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("the admin API answers");
        let status = resp.status();
        assert!(
            status.is_success(),
            "{path}: {status}: {}",
            resp.text().await.unwrap()
        );
    }
}

/// Addresses and ECS scope of `name`/`rtype` for client network `ecs`.
async fn ask(
    client: &DnsClient,
    name: &str,
    rtype: RecordType,
    ecs: &str,
) -> (Vec<String>, u8, ResponseCode) {
    let r = common::query(client, name, rtype, Some(ecs), Some(1232)).await;
    let m: &Message = &r;
    let scope = match m.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet)) {
        Some(EdnsOption::Subnet(s)) => s.scope_prefix(),
        _ => panic!("{name} for {ecs}: no ECS option in the response"),
    };
    let addrs = m.answers.iter().map(|a| a.data.to_string()).collect();
    (addrs, scope, m.metadata.response_code)
}

#[tokio::test]
async fn network_and_asn_rules_win_over_distance_over_udp_and_tcp() {
    let rig = start(10);
    for (transport, client) in common::clients(rig.server.addr()).await {
        // Cloudflare's 1.1.1.0/24 is in Australia: distance says ap-southeast, the rule
        // says eu-central, for the whole /24 (the scope).
        let (a, scope, _) = ask(&client, "www.rules.test.", RecordType::A, "1.1.1.0/24").await;
        assert_eq!(
            (a, scope),
            (vec!["198.51.100.20".to_string()], 24),
            "{transport}"
        );
        let (a, _, _) = ask(
            &client,
            "www.rules.test.",
            RecordType::AAAA,
            "2606:4700:4700::/48",
        )
        .await;
        assert_eq!(a, ["2001:db8:2::20"], "{transport}");
        // AS15169 (Google) by its AS: us-west, wherever its networks are placed.
        for net in ["8.8.8.0/24", "2a00:1450:4001::/48"] {
            let rtype = if net.contains(':') {
                RecordType::AAAA
            } else {
                RecordType::A
            };
            let want = if net.contains(':') {
                "2001:db8:1::20"
            } else {
                "192.0.2.20"
            };
            let (a, _, _) = ask(&client, "www.rules.test.", rtype, net).await;
            assert_eq!(a, [want], "{transport} {net}");
        }
        // A client no rule names: the nearest region (Washington, D.C.: us-east).
        let (a, _, _) = ask(&client, "www.rules.test.", RecordType::A, "2.1.0.0/24").await;
        assert_eq!(a, ["192.0.2.10"], "{transport}");
    }
}

#[tokio::test]
async fn a_fence_holds_and_fails_closed_when_its_regions_are_down() {
    let rig = start(10);
    const EUROPE: [&str; 2] = ["198.51.100.10", "198.51.100.20"];
    let fenced = [("DE", "5.9.0.0/24"), ("FR", "90.84.0.0/24")];
    for (transport, client) in common::clients(rig.server.addr()).await {
        for (country, net) in fenced {
            let (a, _, _) = ask(&client, "www.rules.test.", RecordType::A, net).await;
            assert!(
                a.len() == 1 && EUROPE.contains(&a[0].as_str()),
                "{transport} {country}: {a:?}"
            );
        }
    }
    for region in ["eu-west", "eu-central"] {
        rig.post(
            &format!("/api/v1/zones/rules.test/regions/{region}/drain"),
            r#"{"reason": "fence test"}"#,
        )
        .await;
    }
    for (transport, client) in common::clients(rig.server.addr()).await {
        for (country, net) in fenced {
            let (a, _, rcode) = ask(&client, "www.rules.test.", RecordType::A, net).await;
            assert_eq!(
                (rcode, a.len()),
                (ResponseCode::NoError, 0),
                "{transport} {country}: NODATA"
            );
        }
        // A British client is outside the fence: the nearest up region outside Europe.
        let (a, _, _) = ask(&client, "www.rules.test.", RecordType::A, "81.2.69.0/24").await;
        assert_eq!(a, ["192.0.2.10"], "{transport} GB");
        // A fence closed with a fixed answer gives it, to every European client; the
        // Americas still get us-east.
        for net in ["5.9.0.0/24", "90.84.0.0/24", "81.2.69.0/24"] {
            let (a, _, _) = ask(&client, "sorry.rules.test.", RecordType::A, net).await;
            assert_eq!(a, ["192.0.2.99"], "{transport} {net}");
        }
        let (a, _, _) = ask(&client, "sorry.rules.test.", RecordType::A, "2.1.0.0/24").await;
        assert_eq!(a, ["192.0.2.10"], "{transport} US");
    }
}

#[tokio::test]
async fn bias_moves_a_catchment() {
    let rig = start(10);
    // Seattle (the University of Washington's AS73), about 200 km from us-west and 3,700 km
    // from us-east: us-west unbiased, us-east with us-east 4,000 km nearer.
    for (transport, client) in common::clients(rig.server.addr()).await {
        let (a, _, _) = ask(&client, "plain.rules.test.", RecordType::A, "128.95.0.0/16").await;
        assert_eq!(a, ["192.0.2.20"], "{transport}");
        let (a, _, _) = ask(
            &client,
            "biased.rules.test.",
            RecordType::A,
            "128.95.0.0/16",
        )
        .await;
        assert_eq!(a, ["192.0.2.10"], "{transport}");
    }
}

/// Which of `nets` the canary split sends to eu-central, asked over UDP, 200 at a time; every
/// answer's scope is the /24 that the split hashes.
async fn canaries(server: &Server, nets: &[String]) -> Vec<bool> {
    let client = common::udp_client(server.addr()).await;
    let mut out = Vec::with_capacity(nets.len());
    for chunk in nets.chunks(200) {
        let answers = join_all(
            chunk
                .iter()
                .map(|n| ask(&client, "canary.rules.test.", RecordType::A, n)),
        )
        .await;
        for ((a, scope, _), net) in answers.into_iter().zip(chunk) {
            assert_eq!(scope, 24, "{net}");
            assert_eq!(a.len(), 1, "{net}: {a:?}");
            out.push(a[0] == "198.51.100.20");
        }
    }
    out
}

fn share(moved: &[bool]) -> f64 {
    moved.iter().filter(|m| **m).count() as f64 / moved.len() as f64
}

#[tokio::test]
async fn a_split_keeps_its_ratio_over_10000_networks_and_each_side_across_reloads() {
    let rig = start(10);
    let nets = common::unicast_24s(10_000, 17);
    let at_ten = canaries(&rig.server, &nets).await;
    let ten = share(&at_ten);
    eprintln!(
        "canary split at 10 %: {:.2} % of 10,000 client /24s",
        ten * 100.0
    );
    assert!((ten - 0.10).abs() < 0.015, "{ten}");
    // Over TCP, the same sides.
    let tcp = common::tcp_client(rig.server.addr()).await;
    for (net, moved) in nets.iter().zip(&at_ten).take(300) {
        let (a, _, _) = ask(&tcp, "canary.rules.test.", RecordType::A, net).await;
        assert_eq!(a[0] == "198.51.100.20", *moved, "tcp {net}");
    }

    // A reload of the same zone: every network keeps its side.
    rig.post("/api/v1/reload", r#"{"reason": "same zone"}"#)
        .await;
    assert_eq!(
        canaries(&rig.server, &nets).await,
        at_ten,
        "sides moved on reload"
    );

    // 10 % -> 20 %: about 10 % more move, and no network moves back.
    std::fs::write(rig.zones.join("rules.test.toml"), zone_text(20)).unwrap();
    rig.post("/api/v1/reload", r#"{"reason": "canary to 20 %"}"#)
        .await;
    let at_twenty = canaries(&rig.server, &nets).await;
    let twenty = share(&at_twenty);
    eprintln!(
        "canary split at 20 %: {:.2} % of 10,000 client /24s",
        twenty * 100.0
    );
    assert!((twenty - 0.20).abs() < 0.015, "{twenty}");
    let back = at_ten
        .iter()
        .zip(&at_twenty)
        .filter(|(a, b)| **a && !**b)
        .count();
    assert_eq!(back, 0, "networks left eu-central when its share grew");
}

#[tokio::test]
async fn multivalue_answers_with_the_three_nearest_up_regions() {
    let rig = start(10);
    // Berlin's three nearest: eu-central, eu-west, then us-east.
    let want: HashSet<&str> = ["198.51.100.20", "198.51.100.10", "192.0.2.10"].into();
    for (transport, client) in common::clients(rig.server.addr()).await {
        for _ in 0..3 {
            let (a, _, _) = ask(&client, "multi.rules.test.", RecordType::A, "5.9.0.0/24").await;
            let got: HashSet<&str> = a.iter().map(String::as_str).collect();
            assert_eq!(got, want, "{transport}");
        }
    }
    rig.post(
        "/api/v1/zones/rules.test/regions/eu-west/drain",
        r#"{"reason": "multivalue test"}"#,
    )
    .await;
    let want: HashSet<&str> = ["198.51.100.20", "192.0.2.10", "192.0.2.20"].into();
    for (transport, client) in common::clients(rig.server.addr()).await {
        let (a, _, _) = ask(&client, "multi.rules.test.", RecordType::A, "5.9.0.0/24").await;
        let got: HashSet<&str> = a.iter().map(String::as_str).collect();
        assert_eq!(got, want, "{transport}: eu-west drained");
    }
}

#[tokio::test]
async fn the_route_api_shows_the_as_and_each_rule_that_applied() {
    let rig = start(10);
    meridian::health::probe::install_crypto_provider();
    let get = |client: &'static str| {
        let url = format!(
            "http://{}/api/v1/route?name=www.rules.test&client={client}",
            rig.server.admin_addr()
        );
        async move {
            let resp = reqwest::get(url).await.expect("the admin API answers");
            assert!(resp.status().is_success(), "{}", resp.status());
            serde_json::from_slice::<serde_json::Value>(&resp.bytes().await.unwrap()).unwrap()
        }
    };
    let cloudflare = get("1.1.1.0/24").await;
    assert_eq!(
        cloudflare["location"]["asn"]["number"], 13335,
        "{cloudflare}"
    );
    assert_eq!(cloudflare["a"]["basis"], "rule", "{cloudflare}");
    assert_eq!(cloudflare["a"]["chosen"], "eu-central", "{cloudflare}");
    assert_eq!(
        cloudflare["a"]["reasons"][1], "network 1.1.1.0/24 is sent to eu-central",
        "{cloudflare}"
    );
    let german = get("5.9.0.0/24").await;
    assert_eq!(german["a"]["basis"], "fenced", "{german}");
    let outside: Vec<&str> = german["a"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == "fenced")
        .map(|c| c["region"].as_str().unwrap())
        .collect();
    assert_eq!(outside.len(), 3, "us-east, us-west, ap-southeast: {german}");
}

#[tokio::test]
async fn a_fenced_one_region_answer_never_stands_for_another_client_s_multivalue_answer() {
    let rig = start(10);
    for (transport, client) in common::clients(rig.server.addr()).await {
        for _ in 0..3 {
            // A German client: the fence allows eu-west alone.
            let (a, _, _) = ask(&client, "resident.rules.test.", RecordType::A, "5.9.0.0/24").await;
            assert_eq!(a, ["198.51.100.10"], "{transport} DE");
            // A Moroccan client, also nearest to eu-west, gets both regions.
            let (a, _, _) = ask(
                &client,
                "resident.rules.test.",
                RecordType::A,
                "105.128.0.0/24",
            )
            .await;
            let got: HashSet<&str> = a.iter().map(String::as_str).collect();
            assert_eq!(
                got,
                ["198.51.100.10", "192.0.2.10"].into(),
                "{transport} MA"
            );
        }
    }
}

/// The fast path's hits so far (`meridian_dns_fast_path_total{result="hit"}`).
async fn fast_path_hits(server: &common::Server) -> f64 {
    meridian::health::probe::install_crypto_provider();
    let text = reqwest::get(format!("http://{}/metrics", server.admin_addr()))
        .await
        .expect("the admin API answers")
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("meridian_dns_fast_path_total{result=\"hit\"} ")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no fast path hits in\n{text}"))
}

#[tokio::test]
async fn multivalue_answers_are_served_from_the_fast_path_over_udp_and_tcp() {
    let rig = start(10);
    common::wait_compiled(&rig.server);
    let set = |addrs: &[&str]| -> HashSet<String> { addrs.iter().map(|a| a.to_string()).collect() };
    // Berlin's three nearest (eu-central, eu-west, us-east) for both families; for the fenced
    // multivalue name, a German client gets eu-west alone and a Moroccan one eu-west and
    // us-east: each client's regions, whichever answer the cache already holds.
    let cases = [
        (
            "multi.rules.test.",
            RecordType::A,
            "5.9.0.0/24",
            set(&["198.51.100.20", "198.51.100.10", "192.0.2.10"]),
        ),
        (
            "multi.rules.test.",
            RecordType::AAAA,
            "5.9.0.0/24",
            set(&["2001:db8:2::20", "2001:db8:2::10", "2001:db8:1::10"]),
        ),
        (
            "resident.rules.test.",
            RecordType::A,
            "5.9.0.0/24",
            set(&["198.51.100.10"]),
        ),
        (
            "resident.rules.test.",
            RecordType::A,
            "105.128.0.0/24",
            set(&["198.51.100.10", "192.0.2.10"]),
        ),
    ];
    const ROUNDS: usize = 12;
    for (transport, client) in common::clients(rig.server.addr()).await {
        let before = fast_path_hits(&rig.server).await;
        for _ in 0..ROUNDS {
            for (name, rtype, ecs, want) in &cases {
                let (a, scope, _) = ask(&client, name, *rtype, ecs).await;
                let got: HashSet<String> = a.into_iter().collect();
                assert_eq!(&got, want, "{transport}: {name} {rtype} for {ecs}");
                assert!(
                    (1..=24).contains(&scope),
                    "{transport}: {name} {rtype} for {ecs}: /{scope}"
                );
            }
        }
        // Each (name, type, regions) is encoded once per rotation of its endpoints and per
        // serving thread; every other query is a hit.
        let hits = fast_path_hits(&rig.server).await - before;
        let queries = (ROUNDS * cases.len()) as f64;
        eprintln!("{transport}: {hits} of {queries} multivalue queries answered by the fast path");
        assert!(
            hits >= queries / 2.0,
            "{transport}: {hits} hits of {queries}"
        );
    }
}
