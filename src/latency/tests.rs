use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::ingest::{Bucket, Checker, Reason};
use super::*;

const T0: u64 = 1_764_540_000;
const PARIS: GeoPoint = GeoPoint {
    lat: 48.86,
    lon: 2.35,
};
const DUBLIN: GeoPoint = GeoPoint {
    lat: 53.35,
    lon: -6.26,
};
const VIRGINIA: GeoPoint = GeoPoint {
    lat: 39.04,
    lon: -77.49,
};

fn net(s: &str) -> Net {
    Net::within(s.parse().unwrap()).unwrap()
}

fn france() -> Origin {
    Origin {
        asn: None,
        country: Some(*b"FR"),
        point: Some(PARIS),
    }
}

fn regions() -> [(&'static str, GeoPoint); 2] {
    [("eu-west", DUBLIN), ("us-east", VIRGINIA)]
}

/// `n` samples of `rtt` ms from `client` to `region`, at `T0`.
fn feed(map: &mut LatencyMap, client: &str, origin: &Origin, region: &str, rtt: f64, n: u64) {
    for _ in 0..n {
        map.add(net(client), origin, region, rtt, T0);
    }
}

#[test]
fn the_estimate_is_the_geometric_mean() {
    let mut map = LatencyMap::new(Settings::default());
    for i in 0..40 {
        let rtt = if i % 2 == 0 { 10.0 } else { 40.0 };
        map.add(net("81.2.69.0/24"), &france(), "eu-west", rtt, T0);
        map.add(net("81.2.69.0/24"), &france(), "us-east", 90.0, T0);
    }
    let table = map.publish(T0);
    let row = table.network(net("81.2.69.7/32")).unwrap();
    let (region, rtt, samples) = row[0];
    assert_eq!(region, "eu-west");
    assert!((rtt - 20.0).abs() < 0.01, "{rtt}");
    assert!((samples - 40.0).abs() < 0.01, "{samples}");
}

#[test]
fn an_outlier_counts_at_the_clamp_once_the_estimate_is_established() {
    let mut map = LatencyMap::new(Settings::default());
    let o = france();
    for _ in 0..10 {
        assert!(
            !map.add(net("81.2.69.0/24"), &o, "eu-west", 20.0, T0)
                .clamped
        );
    }
    assert!(
        map.add(net("81.2.69.0/24"), &o, "eu-west", 20_000.0, T0)
            .clamped
    );
    feed(&mut map, "81.2.69.0/24", &o, "eu-west", 20.0, 10);
    feed(&mut map, "81.2.69.0/24", &o, "us-east", 90.0, 21);
    let table = map.publish(T0);
    let rtt = table.network(net("81.2.69.0/24")).unwrap()[0].1;
    // One sample at 3 x 20 among 21: the mean of logs moves by ln(3)/21, about 5 %.
    assert!(rtt < 21.2, "clamped: {rtt}");
}

#[test]
fn weights_halve_every_half_life_and_estimates_age_out_of_steering() {
    let mut map = LatencyMap::new(Settings::default());
    feed(&mut map, "81.2.69.0/24", &france(), "eu-west", 80.0, 42);
    feed(&mut map, "81.2.69.0/24", &france(), "us-east", 30.0, 42);
    let table = map.publish(T0 + DEFAULT_HALF_LIFE_SECS);
    let samples = table.network(net("81.2.69.0/24")).unwrap()[0].2;
    assert!((samples - 21.0).abs() < 0.01, "{samples}");
    assert!(table.speaks_for("81.2.69.0/24".parse().unwrap()));
    // A second half-life: 10 samples left, fewer than the 20 steering needs.
    let later = map.publish(T0 + 2 * DEFAULT_HALF_LIFE_SECS);
    assert!(later.is_empty());
    assert!(!later.speaks_for("81.2.69.0/24".parse().unwrap()));
    // Much later the estimates are forgotten, the country's too.
    map.publish(T0 + 40 + 20 * DEFAULT_HALF_LIFE_SECS);
    assert_eq!(map.networks(), 0);
    assert!(
        map.publish(T0 + 40 + 20 * DEFAULT_HALF_LIFE_SECS)
            .group_estimates()
            .is_empty()
    );
}

#[test]
fn too_few_samples_do_not_steer() {
    let mut map = LatencyMap::new(Settings::default());
    feed(&mut map, "81.2.69.0/24", &france(), "eu-west", 80.0, 19);
    feed(&mut map, "81.2.69.0/24", &france(), "us-east", 30.0, 40);
    let table = map.publish(T0 + 40);
    assert!(
        table.is_empty(),
        "one region with enough samples compares with nothing"
    );
    let origin = france();
    assert_eq!(
        table.client_rtt("81.2.69.0/24".parse().unwrap(), &origin, regions()),
        None
    );
}

#[test]
fn few_samples_shrink_towards_the_country_then_the_distance_model() {
    let s = Settings {
        min_samples: 4.0,
        ..Settings::default()
    };
    let mut map = LatencyMap::new(s);
    let o = france();
    // The network: 4 samples each. Its country: 40 more from another network.
    feed(&mut map, "81.2.69.0/24", &o, "eu-west", 100.0, 4);
    feed(&mut map, "81.2.69.0/24", &o, "us-east", 100.0, 4);
    feed(&mut map, "90.0.0.0/24", &o, "eu-west", 20.0, 40);
    let table = map.publish(T0);
    let rtt = table
        .client_rtt("81.2.69.0/24".parse().unwrap(), &o, regions())
        .unwrap();
    let eu = rtt.regions[0].unwrap();
    // The country's eu-west mean (about 100^(4/44) 20^(40/44)) with weight 5 against the
    // network's 100 with weight 4: well below 100.
    let country = (4.0 * 100f64.ln() + 40.0 * 20f64.ln()) / 44.0;
    let expect = ((4.0 * 100f64.ln() + 5.0 * country) / 9.0).exp();
    assert!(
        (eu.rtt_ms - expect).abs() < 0.5,
        "{} vs {expect}",
        eu.rtt_ms
    );
    // us-east: the country has only the network's own 4 samples... which are enough here
    // (min 4), so the prior is 100 and so is the estimate.
    let us = rtt.regions[1].unwrap();
    assert!((us.rtt_ms - 100.0).abs() < 0.5, "{}", us.rtt_ms);
    // Without a country, the distance model: Paris to Virginia, about 62 ms.
    let nowhere = Origin { country: None, ..o };
    let us = table
        .client_rtt("81.2.69.0/24".parse().unwrap(), &nowhere, regions())
        .unwrap()
        .regions[1]
        .unwrap();
    let prior = PARIS.distance_km(VIRGINIA) / steer::KM_PER_RTT_MS;
    let expect = ((4.0 * 100f64.ln() + 5.0 * prior.ln()) / 9.0).exp();
    assert!(
        (us.rtt_ms - expect).abs() < 0.5,
        "{} vs {expect}",
        us.rtt_ms
    );
}

#[test]
fn an_asn_prior_comes_before_the_country() {
    let s = Settings {
        min_samples: 4.0,
        prior_weight: 1000.0,
        ..Settings::default()
    };
    let mut map = LatencyMap::new(s);
    let with_asn = Origin {
        asn: Some(64500),
        ..france()
    };
    feed(&mut map, "81.2.69.0/24", &with_asn, "eu-west", 50.0, 4);
    feed(&mut map, "81.2.69.0/24", &with_asn, "us-east", 50.0, 4);
    feed(&mut map, "90.0.0.0/24", &france(), "eu-west", 10.0, 400);
    let table = map.publish(T0);
    let eu = |o: &Origin| {
        table
            .client_rtt("81.2.69.0/24".parse().unwrap(), o, regions())
            .unwrap()
            .regions[0]
            .unwrap()
            .rtt_ms
    };
    // The ASN's 50 ms outweighs the country's 10-ish ms when the ASN is known.
    assert!(eu(&with_asn) > 45.0, "{}", eu(&with_asn));
    assert!(eu(&france()) < 15.0, "{}", eu(&france()));
}

#[test]
fn a_scope_holding_a_measured_network_narrows_to_a_client_network() {
    let mut map = LatencyMap::new(Settings::default());
    feed(&mut map, "81.2.69.0/24", &france(), "eu-west", 80.0, 20);
    feed(&mut map, "81.2.69.0/24", &france(), "us-east", 30.0, 20);
    feed(&mut map, "2a01:cb00:1::/48", &france(), "eu-west", 80.0, 20);
    feed(&mut map, "2a01:cb00:1::/48", &france(), "us-east", 30.0, 20);
    let table = map.publish(T0);
    let n = |s: &str| s.parse::<IpNet>().unwrap();
    // A neighbour in the same /16: its /16 would cover the measured /24.
    assert_eq!(table.cap_scope(n("81.2.70.0/24"), 16), 24);
    assert_eq!(table.cap_scope(n("81.2.70.0/22"), 16), 22);
    assert_eq!(table.cap_scope(n("81.3.0.0/24"), 16), 16);
    assert_eq!(table.cap_scope(n("81.2.70.0/24"), 24), 24);
    assert_eq!(table.cap_scope(n("81.2.70.0/24"), 0), 0);
    assert_eq!(table.cap_scope(n("2a01:cb00:2::/56"), 32), 48);
    assert!(table.speaks_for(n("81.2.69.128/25")));
    assert!(
        !table.speaks_for(n("81.2.68.0/22")),
        "wider than a client network"
    );
    assert!(table.speaks_for(n("2a01:cb00:1:5::/64")));
}

#[test]
fn the_map_survives_a_save_and_a_damaged_file_is_refused() {
    let mut map = LatencyMap::new(Settings::default());
    feed(&mut map, "81.2.69.0/24", &france(), "eu-west", 80.0, 30);
    feed(&mut map, "2a01:cb00:1::/48", &france(), "us-east", 30.0, 30);
    feed(&mut map, "2a01:cb00:1::/48", &france(), "eu-west", 60.0, 30);
    let dir = tempfile::tempdir().unwrap();
    let bytes = store::encode(&map);
    store::write(dir.path(), &bytes).unwrap();
    let mut back = store::load(dir.path(), Settings::default()).unwrap();
    assert_eq!(store::encode(&back), bytes);
    let (a, b) = (map.publish(T0 + 60), back.publish(T0 + 60));
    assert_eq!(a.networks(), 1);
    assert_eq!(
        a.network(net("2a01:cb00:1::/48")),
        b.network(net("2a01:cb00:1::/48"))
    );
    assert_eq!(a.group_estimates(), b.group_estimates());

    let path = dir.path().join(store::FILE);
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let err = store::load(dir.path(), Settings::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("latency.bin: not a latency map: cut short"),
        "{err}"
    );
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        store::load(empty.path(), Settings::default())
            .unwrap()
            .networks(),
        0
    );
}

#[test]
fn merged_maps_of_disjoint_samples_are_the_map_of_all_of_them() {
    let s = Settings::default();
    let (mut all, mut a, mut b) = (LatencyMap::new(s), LatencyMap::new(s), LatencyMap::new(s));
    // Regions first seen in another order on each node, samples an hour apart.
    for (i, (region, rtt)) in [("us-east", 30.0), ("eu-west", 80.0), ("us-east", 45.0)]
        .into_iter()
        .enumerate()
    {
        let at = T0 + 1800 * i as u64;
        for _ in 0..40 {
            all.add(net("81.2.69.0/24"), &france(), region, rtt, at);
            a.add(net("81.2.69.0/24"), &france(), region, rtt, at);
        }
    }
    for (region, rtt) in [("eu-west", 60.0), ("us-east", 25.0)] {
        for _ in 0..40 {
            all.add(net("81.2.69.0/24"), &france(), region, rtt, T0 + 600);
            b.add(net("81.2.69.0/24"), &france(), region, rtt, T0 + 600);
        }
    }
    b.merge(&a);
    let (want, got) = (all.publish(T0 + 3600), b.publish(T0 + 3600));
    let (mut want, mut got) = (
        want.network(net("81.2.69.0/24")).unwrap(),
        got.network(net("81.2.69.0/24")).unwrap(),
    );
    want.sort_by(|x, y| x.0.cmp(y.0));
    got.sort_by(|x, y| x.0.cmp(y.0));
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w.0, g.0);
        assert!(
            (w.1 - g.1).abs() < 0.01 && (w.2 - g.2).abs() < 0.01,
            "{want:?} {got:?}"
        );
    }
    // Groups merge alike.
    let groups = |t: &LatencyTable| -> Vec<(String, f64)> {
        let mut g: Vec<_> = t
            .group_estimates()
            .into_iter()
            .map(|(_, r, rtt, _)| (r.to_string(), rtt))
            .collect();
        g.sort_by(|x, y| x.0.cmp(&y.0));
        g
    };
    let (w, g) = (
        groups(&all.publish(T0 + 3600)),
        groups(&b.publish(T0 + 3600)),
    );
    for (w, g) in w.iter().zip(&g) {
        assert!(w.0 == g.0 && (w.1 - g.1).abs() < 0.01, "{w:?} {g:?}");
    }
}

#[test]
fn the_shared_map_keeps_the_heaviest_networks_within_its_bytes() {
    let mut map = LatencyMap::new(Settings::default());
    for i in 0..100u64 {
        let client = format!("81.2.{i}.0/24");
        feed(&mut map, &client, &france(), "eu-west", 20.0, i + 1);
        feed(&mut map, &client, &france(), "us-east", 90.0, 1);
    }
    let all = store::encode(&map.shared(usize::MAX));
    assert_eq!(store::decode(&all, map.settings).unwrap().networks(), 100);
    let budget = all.len() / 2;
    let shared = map.shared(budget);
    assert!(store::encode(&shared).len() <= budget);
    assert!(shared.networks() >= 45, "{}", shared.networks());
    // The lightest networks were left out.
    assert!(shared.nets.find(net("81.2.99.0/24")).is_some());
    assert!(shared.nets.find(net("81.2.20.0/24")).is_none());
}

#[test]
fn groups_count_against_the_shared_bytes_heaviest_first() {
    let mut map = LatencyMap::new(Settings::default());
    // 200 ASes, AS n with n samples, and one network: the groups alone pass the budget.
    for n in 1..=200u32 {
        let origin = Origin {
            asn: Some(n),
            country: None,
            point: None,
        };
        for _ in 0..n {
            map.add(net("81.2.69.0/24"), &origin, "eu-west", 20.0, T0);
        }
    }
    let all = store::encode(&map.shared(usize::MAX));
    let budget = all.len() / 2;
    let shared = map.shared(budget);
    assert!(
        store::encode(&shared).len() <= budget,
        "{} > {budget}",
        store::encode(&shared).len()
    );
    assert!(
        shared.groups.keys.len() >= 90,
        "{}",
        shared.groups.keys.len()
    );
    assert!(shared.groups.find(Group::Asn(200)).is_some());
    assert!(shared.groups.find(Group::Asn(1)).is_none());
}

/// A feed on an empty state directory of its own, alone or in a cluster.
fn open_feed(dir: &std::path::Path, clustered: bool) -> feed::Feed {
    let config = config::LatencyConfig {
        probe_networks: vec![net("81.2.69.0/24")],
        ..Default::default()
    };
    feed::Feed::open(
        config,
        crate::admin::auth::Tokens::default(),
        dir.to_path_buf(),
        Arc::new(crate::metrics::Metrics::default()),
        clustered,
    )
    .expect("the feed opens")
}

#[test]
fn probes_alone_share_the_map_only_every_few_share_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let f = open_feed(dir.path(), true);
    let outbox = f.outbox();
    // Alone, nothing is shared.
    assert!(!f.share_map(T0));
    f.share();
    // The map it started with is shared at the first interval.
    assert!(f.share_map(T0));
    let first = outbox.borrow().as_ref().unwrap().generation;
    // Probe samples every interval: shared once every PROBE_SHARE_EVERY intervals.
    let mut shared = 0;
    for i in 1..=(2 * feed::PROBE_SHARE_EVERY as u64) {
        f.add_probes(&[("eu-west".into(), 20.0)], T0 + i);
        shared += usize::from(f.share_map(T0 + i));
    }
    assert_eq!(shared, 2);
    assert!(outbox.borrow().as_ref().unwrap().generation > first);
}

#[test]
fn a_node_alone_ignores_the_peers_it_saved_in_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let mut peers = LatencyMap::new(Settings::default());
    feed(&mut peers, "81.2.69.0/24", &france(), "eu-west", 20.0, 30);
    feed(&mut peers, "81.2.69.0/24", &france(), "us-east", 90.0, 30);
    store::write_file(&dir.path().join(store::PEERS_FILE), &store::encode(&peers)).unwrap();
    let alone = open_feed(dir.path(), false).publish(T0, true).unwrap();
    assert_eq!(alone.networks(), 0);
    let clustered = open_feed(dir.path(), true).publish(T0, true).unwrap();
    assert_eq!(clustered.networks(), 1);
}

#[test]
fn peers_merge_once_into_what_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let f = open_feed(dir.path(), true);
    let half = |rtt| {
        let mut m = LatencyMap::new(Settings::default());
        feed(&mut m, "81.2.69.0/24", &france(), "eu-west", rtt, 15);
        feed(&mut m, "81.2.69.0/24", &france(), "us-east", 90.0, 15);
        m
    };
    f.set_peers(BTreeMap::from([("ns2".to_string(), half(20.0))]));
    // One peer: 15 samples a region, not enough to steer.
    assert_eq!(f.publish(T0, true).unwrap().networks(), 0);
    f.set_peer("ns3", Some(half(20.0)));
    let table = f.publish(T0, true).unwrap();
    let row = table.network(net("81.2.69.0/24")).expect("two peers steer");
    assert!(row.iter().all(|r| (r.2 - 30.0).abs() < 0.01), "{row:?}");
    // A peer gone leaves the merged map.
    f.set_peer("ns3", None);
    assert_eq!(f.publish(T0, true).unwrap().networks(), 0);
}

fn checker<'a>(regions: &'a [String], special: &'a dyn Fn(IpNet) -> bool) -> Checker<'a> {
    Checker {
        regions,
        source: "nginx-eu",
        peer: Some("81.2.69.1".parse().unwrap()),
        now: T0 as f64,
        max_age_secs: 7200.0,
        special,
    }
}

#[test]
fn each_bad_line_gets_its_reason_and_a_message_naming_the_value() {
    let regions = vec!["eu-west".to_string(), "us-east".to_string()];
    let special = |n: IpNet| crate::geo::is_special(n);
    let c = checker(&regions, &special);
    let line = |client: &str, region: &str, rtt: &str, kind: &str, time: u64| {
        format!(
            r#"{{"client":{client},"region":"{region}","rtt_ms":{rtt},"kind":"{kind}","time":{time}}}"#
        )
    };
    let cases = [
        ("{not json", Reason::Malformed, "not a sample"),
        (
            &line(r#""81.2.69.0/24""#, "eu-wset", "20", "tcp", T0),
            Reason::UnknownRegion,
            r#"unknown region "eu-wset" (known: eu-west, us-east)"#,
        ),
        (
            &line(r#""81.2.0.0/16""#, "eu-west", "20", "tcp", T0),
            Reason::BadClient,
            "client 81.2.0.0/16 is wider than a client network",
        ),
        (
            &line(r#""nowhere""#, "eu-west", "20", "tcp", T0),
            Reason::BadClient,
            r#"client "nowhere" is neither"#,
        ),
        (
            &line(r#""10.1.2.3""#, "eu-west", "20", "tcp", T0),
            Reason::Unroutable,
            "client 10.1.2.3/32 is special-purpose space",
        ),
        (
            &line(r#""81.2.69.0/24""#, "eu-west", "0", "tcp", T0),
            Reason::AbsurdRtt,
            "rtt_ms 0 is outside 0.1..=30000",
        ),
        (
            &line(r#""81.2.69.0/24""#, "eu-west", "1e9", "tcp", T0),
            Reason::AbsurdRtt,
            "rtt_ms 1000000000 is outside",
        ),
        (
            &line(r#""81.2.69.0/24""#, "eu-west", "20", "icmp", T0),
            Reason::UnknownKind,
            r#"unknown kind "icmp""#,
        ),
        (
            &line(r#""81.2.69.0/24""#, "eu-west", "20", "tcp", T0 - 8000),
            Reason::Stale,
            "is 8000 s old (at most 7200 s)",
        ),
        (
            &line(r#""81.2.69.0/24""#, "eu-west", "20", "tcp", T0 + 3600),
            Reason::Future,
            "is 3600 s ahead",
        ),
        (
            r#"{"client":"81.2.69.0/24","region":"eu-west","rtt_ms":20,"kind":"tcp","time":1764540000,"count":0}"#,
            Reason::BadCount,
            "count 0 is outside 1..=1000",
        ),
        (
            r#"{"region":"eu-west","rtt_ms":20,"kind":"tcp","time":1764540000,"source":"beacon"}"#,
            Reason::WrongSource,
            r#"source "beacon" is not this token's ("nginx-eu")"#,
        ),
    ];
    for (i, (text, reason, message)) in cases.iter().enumerate() {
        let r = c.check(i + 1, text).unwrap_err();
        assert_eq!((r.line, r.reason), (i + 1, *reason), "{text}: {}", r.error);
        assert!(r.error.contains(message), "{text}: {}", r.error);
    }
    // The connection's address stands in for a missing client.
    let s = c
        .check(
            1,
            r#"{"region":"eu-west","rtt_ms":20.5,"kind":"ttfb","time":1764540000,"source":"nginx-eu"}"#,
        )
        .unwrap();
    assert_eq!(s.client, "81.2.69.1".parse::<IpAddr>().unwrap());
    assert_eq!(s.net, net("81.2.69.0/24"));
    assert_eq!((s.rtt_ms, s.time, s.count), (20.5, T0, 1));
}

#[test]
fn an_aggregate_weighs_as_much_as_its_count() {
    let mut map = LatencyMap::new(Settings::default());
    map.add_weighted(net("81.2.69.0/24"), &france(), "eu-west", 80.0, T0, 25.0);
    map.add_weighted(net("81.2.69.0/24"), &france(), "us-east", 30.0, T0, 25.0);
    let table = map.publish(T0);
    assert!(
        table.speaks_for("81.2.69.0/24".parse().unwrap()),
        "one line of 25 is enough"
    );
    let row = table.network(net("81.2.69.0/24")).unwrap();
    assert_eq!(row.iter().map(|r| r.2).collect::<Vec<_>>(), [25.0, 25.0]);
    assert!((row[0].1 - 80.0).abs() < 0.01 && (row[1].1 - 30.0).abs() < 0.01);
}

#[test]
fn a_bucket_takes_a_burst_then_the_rate() {
    let mut b = Bucket::full(10.0, 0.0);
    assert_eq!((0..20).filter(|_| b.take(0.0, 2.0, 10.0)).count(), 10);
    assert!(!b.take(0.2, 2.0, 10.0));
    assert_eq!((0..20).filter(|_| b.take(2.0, 2.0, 10.0)).count(), 4);
    // Idle time refills up to the burst, no further.
    assert_eq!((0..50).filter(|_| b.take(100.0, 2.0, 10.0)).count(), 10);
}

proptest::proptest! {
    /// Any line is a sample or a dropped line with its number: never a panic.
    #[test]
    fn any_line_is_checked_without_panic(text in ".{0,200}", number in 1usize..10_000) {
        let regions = vec!["eu-west".to_string()];
        let special = |n: IpNet| crate::geo::is_special(n);
        if let Err(r) = checker(&regions, &special).check(number, &text) {
            proptest::prop_assert_eq!(r.line, number);
            proptest::prop_assert!(!r.error.is_empty());
        }
    }

    /// Lines shaped like samples, with arbitrary values.
    #[test]
    fn any_sample_values_are_checked_without_panic(
        client in "[0-9a-f:./]{0,40}",
        rtt in proptest::num::f64::ANY,
        time in proptest::num::f64::ANY,
        count in proptest::num::i64::ANY,
    ) {
        let regions = vec!["eu-west".to_string()];
        let special = |n: IpNet| crate::geo::is_special(n);
        let line = serde_json::json!({
            "client": client, "region": "eu-west", "rtt_ms": rtt, "kind": "tcp",
            "time": time, "count": count,
        })
        .to_string();
        match checker(&regions, &special).check(1, &line) {
            Ok(s) => {
                proptest::prop_assert!((ingest::MIN_RTT_MS..=ingest::MAX_RTT_MS).contains(&s.rtt_ms));
                proptest::prop_assert!((1..=ingest::MAX_COUNT).contains(&s.count));
            }
            Err(r) => proptest::prop_assert!(!r.error.is_empty()),
        }
    }
}

#[test]
fn a_clients_origin_carries_its_as_from_the_embedded_database() {
    let geo = crate::geo::GeoDb::embedded().unwrap();
    let location = geo.locate("81.2.69.0/24".parse().unwrap());
    let origin = Origin::of(&location);
    assert_eq!(origin.asn, Some(20712));
    assert_eq!(origin.country, Some(*b"GB"));
}

/// A feed's samples feed their network's AS and country, located past the query path's
/// location cache: a feed posting a million networks would crowd out the networks queries
/// come from.
#[test]
fn ingested_samples_are_located_past_the_query_paths_cache() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let feed = open_feed(dir.path(), false);
    let zones =
        crate::zone::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("zones"))
            .expect("the shipped zones load");
    let geo = Arc::new(crate::geo::GeoDb::embedded().expect("the embedded database"));
    let state =
        crate::serving::Snapshot::new(zones, geo.clone(), &crate::metrics::Metrics::default());
    let body: String = [("us-east", 80), ("eu-west", 20)]
        .iter()
        .map(|(region, rtt)| {
            format!(
                "{{\"client\":\"81.2.69.0/24\",\"region\":\"{region}\",\"rtt_ms\":{rtt},\
                 \"kind\":\"tcp\",\"time\":{T0},\"count\":25}}\n"
            )
        })
        .collect();
    let report = feed.ingest(&state, "feed", None, &body, T0 as f64);
    assert_eq!(
        (report.accepted, report.dropped),
        (2, 0),
        "{:?}",
        report.errors
    );
    let table = feed.publish(T0, true).expect("published");
    let groups: Vec<Group> = table.group_estimates().iter().map(|e| e.0).collect();
    assert!(groups.contains(&Group::Asn(20712)), "{groups:?}");
    assert!(groups.contains(&Group::Country(*b"GB")), "{groups:?}");
    assert_eq!(geo.cached(), 0, "ingestion filled the location cache");
}

#[test]
fn probe_networks_are_client_networks_outside_special_space() {
    let check = |text: &str| {
        toml::from_str::<config::LatencyFile>(text)
            .unwrap()
            .check(std::path::Path::new("/etc/meridian"))
    };
    let c = check("probe-networks = [\"81.2.69.0/24\", \"2a01:cb00:1::/48\"]\n").unwrap();
    assert_eq!(
        c.probe_networks,
        [net("81.2.69.0/24"), net("2a01:cb00:1::/48")]
    );
    assert_eq!(c.probe_weight, config::DEFAULT_PROBE_WEIGHT);
    let problems = check(
        "probe-networks = [\"81.2.0.0/16\", \"10.1.2.0/24\", \"nowhere\"]\nprobe-weight = -1\n",
    )
    .unwrap_err();
    let messages: Vec<&str> = problems.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(
        messages,
        [
            "probe-weight must be at least 0, not -1",
            "probe-networks: 81.2.0.0/16 is wider than a client network (/24 for IPv4, /48 for IPv6)",
            "probe-networks: 10.1.2.0/24 is special-purpose space, not a client network",
            "probe-networks: \"nowhere\" is not a network (198.51.100.0/24)",
        ]
    );
}
