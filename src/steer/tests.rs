use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

const US_EAST: GeoPoint = GeoPoint {
    lat: 39.04,
    lon: -77.49,
};
const EU_WEST: GeoPoint = GeoPoint {
    lat: 53.35,
    lon: -6.26,
};
const AP_SOUTHEAST: GeoPoint = GeoPoint {
    lat: 1.35,
    lon: 103.82,
};

fn ep(addr: &str, weight: u32) -> Endpoint {
    Endpoint {
        address: addr.parse().unwrap(),
        weight,
    }
}

/// The three regions of the shipped example zone.
fn regions() -> Vec<Region> {
    vec![
        Region {
            name: "us-east".into(),
            location: US_EAST,
            endpoints: vec![ep("192.0.2.10", 1), ep("2001:db8:1::10", 1)],
        },
        Region {
            name: "eu-west".into(),
            location: EU_WEST,
            endpoints: vec![ep("198.51.100.10", 1), ep("2001:db8:2::10", 1)],
        },
        Region {
            name: "ap-southeast".into(),
            location: AP_SOUTHEAST,
            endpoints: vec![ep("203.0.113.10", 1), ep("2001:db8:3::10", 1)],
        },
    ]
}

fn www() -> SteeredName {
    SteeredName {
        regions: vec![0, 1, 2],
        default_region: 0,
        ttl: 30,
        trouble_ttl: 5,
        answers: None,
        policy: Policy::Nearest,
        fallback: Fallback::All,
        bias_km: Vec::new(),
        rules: Rules::default(),
        multivalue: None,
    }
}

/// A view with these region states, every endpoint up.
fn states(states: &[RegionState]) -> HealthView {
    HealthView {
        regions: states
            .iter()
            .map(|&state| RegionHealth {
                state,
                ..RegionHealth::up(2)
            })
            .collect(),
        ..Default::default()
    }
}

fn at(lat: f64, lon: f64) -> Option<GeoPoint> {
    Some(GeoPoint { lat, lon })
}

fn chosen_name(d: &Decision) -> Option<&'static str> {
    d.chosen.map(|r| ["us-east", "eu-west", "ap-southeast"][r])
}

#[test]
fn haversine_matches_known_distances() {
    // London to Paris is about 344 km; New York to London about 5570 km.
    let london = GeoPoint {
        lat: 51.5074,
        lon: -0.1278,
    };
    let paris = GeoPoint {
        lat: 48.8566,
        lon: 2.3522,
    };
    let new_york = GeoPoint {
        lat: 40.7128,
        lon: -74.0060,
    };
    assert!((london.distance_km(paris) - 344.0).abs() < 3.0);
    assert!((new_york.distance_km(london) - 5570.0).abs() < 15.0);
    assert_eq!(london.distance_km(london), 0.0);
    // Antipodes: half the circumference, and no NaN from rounding.
    let d = GeoPoint { lat: 0.0, lon: 0.0 }.distance_km(GeoPoint {
        lat: 0.0,
        lon: 180.0,
    });
    assert!((d - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1e-6);
}

#[test]
fn clients_go_to_the_nearest_region_on_each_continent() {
    let cases = [
        ("Chicago", 41.88, -87.63, "us-east"),
        ("Sao Paulo", -23.55, -46.63, "us-east"),
        ("Berlin", 52.52, 13.40, "eu-west"),
        ("Lagos", 6.52, 3.38, "eu-west"),
        ("Tokyo", 35.68, 139.69, "ap-southeast"),
        ("Sydney", -33.87, 151.21, "ap-southeast"),
        ("Mumbai", 19.08, 72.88, "ap-southeast"),
    ];
    for (city, lat, lon, want) in cases {
        let d = decide(
            at(lat, lon),
            &www(),
            &regions(),
            &HealthView::all_up(),
            Family::V4,
        );
        assert_eq!(chosen_name(&d), Some(want), "{city}");
        assert_eq!(d.basis, Basis::Nearest);
        assert!(d.depends_on_client);
        // Candidates are sorted nearest first.
        let dist: Vec<f64> = d
            .candidates
            .iter()
            .map(|c| c.distance_km.unwrap())
            .collect();
        assert!(dist.windows(2).all(|w| w[0] <= w[1]), "{city}: {dist:?}");
    }
}

#[test]
fn unknown_location_uses_the_default_region() {
    let mut name = www();
    name.default_region = 1;
    let d = decide(None, &name, &regions(), &HealthView::all_up(), Family::V4);
    assert_eq!(chosen_name(&d), Some("eu-west"));
    assert_eq!(d.basis, Basis::Default);
    assert!(
        d.depends_on_client,
        "a located client could get another region"
    );
    assert!(d.candidates.iter().all(|c| c.distance_km.is_none()));
    // The rest keep their configured order.
    let order: Vec<RegionId> = d.candidates.iter().map(|c| c.region).collect();
    assert_eq!(order, vec![1, 0, 2]);
}

#[test]
fn down_region_is_skipped_for_the_next_nearest() {
    let view = states(&[RegionState::Up, RegionState::Down, RegionState::Up]);
    let d = decide(at(52.52, 13.40), &www(), &regions(), &view, Family::V4);
    assert_eq!(chosen_name(&d), Some("us-east"));
    assert_eq!(
        d.candidates[0].region, 1,
        "eu-west still ranks first by distance"
    );
    assert_eq!(d.candidates[0].verdict, Verdict::Down);
    assert_eq!(d.candidates[1].verdict, Verdict::Chosen);
    assert_eq!(d.candidates[2].verdict, Verdict::Farther);
}

#[test]
fn all_down_fails_open_with_every_endpoint() {
    let view = states(&[RegionState::Down; 3]);
    let regions = regions();
    let d = decide(at(52.52, 13.40), &www(), &regions, &view, Family::V6);
    assert_eq!(d.basis, Basis::AllDown);
    assert_eq!(d.chosen, None);
    let addrs: Vec<IpAddr> = d
        .endpoints(&www(), &regions, &view, Family::V6)
        .iter()
        .map(|e| e.address)
        .collect();
    assert_eq!(addrs.len(), 3);
    assert!(addrs.iter().all(IpAddr::is_ipv6));
    assert!(!d.depends_on_client);
}

#[test]
fn every_endpoint_of_a_family_down_gets_the_fallback_not_nodata() {
    let regions = regions();
    // Every region up, but each one's IPv4 endpoint (index 0) down.
    let view = HealthView {
        regions: (0..3)
            .map(|_| RegionHealth {
                endpoints_up: vec![false, true],
                ..RegionHealth::up(2)
            })
            .collect(),
        ..Default::default()
    };
    let d = decide(at(52.52, 13.40), &www(), &regions, &view, Family::V4);
    assert_eq!(d.basis, Basis::AllDown);
    assert!(
        d.candidates
            .iter()
            .all(|c| c.verdict == Verdict::EndpointsDown)
    );
    let addrs: Vec<IpAddr> = d
        .endpoints(&www(), &regions, &view, Family::V4)
        .iter()
        .map(|e| e.address)
        .collect();
    assert_eq!(addrs.len(), 3);
    assert!(addrs.iter().all(IpAddr::is_ipv4));
    // AAAA is unaffected: the nearest region answers with its IPv6 endpoint.
    let v6 = decide(at(52.52, 13.40), &www(), &regions, &view, Family::V6);
    assert_eq!(chosen_name(&v6), Some("eu-west"));
}

#[test]
fn one_up_region_does_not_depend_on_the_client() {
    let view = states(&[RegionState::Down, RegionState::Up, RegionState::Down]);
    let d = decide(at(35.68, 139.69), &www(), &regions(), &view, Family::V4);
    assert_eq!(chosen_name(&d), Some("eu-west"));
    assert!(!d.depends_on_client);
}

#[test]
fn regions_without_the_family_are_not_eligible() {
    let mut regions = regions();
    regions[2].endpoints.retain(|e| e.address.is_ipv4());
    let d = decide(
        at(35.68, 139.69),
        &www(),
        &regions,
        &HealthView::all_up(),
        Family::V6,
    );
    // Tokyo is nearest ap-southeast, which has no IPv6: the next nearest (Dublin, 9,600 km,
    // before Virginia at 10,900 km) answers AAAA.
    assert_eq!(chosen_name(&d), Some("eu-west"));
    let last = d.candidates.last().unwrap();
    assert_eq!((last.region, last.verdict), (2, Verdict::NoEndpoints));
    let v4 = decide(
        at(35.68, 139.69),
        &www(),
        &regions,
        &HealthView::all_up(),
        Family::V4,
    );
    assert_eq!(chosen_name(&v4), Some("ap-southeast"));
}

#[test]
fn no_endpoints_of_the_family_means_nodata() {
    let mut regions = regions();
    for r in &mut regions {
        r.endpoints.retain(|e| e.address.is_ipv4());
    }
    let d = decide(
        at(0.0, 0.0),
        &www(),
        &regions,
        &HealthView::all_up(),
        Family::V6,
    );
    assert_eq!(d.basis, Basis::NoEndpoints);
    let all_up = HealthView::all_up();
    assert!(
        d.endpoints(&www(), &regions, &all_up, Family::V6)
            .is_empty()
    );
    assert!(!d.depends_on_client);
}

#[test]
fn equal_distances_go_to_the_earlier_configured_region() {
    let mut regions = regions();
    regions[1].location = US_EAST;
    let mut name = www();
    name.regions = vec![1, 0, 2];
    let d = decide(
        Some(US_EAST),
        &name,
        &regions,
        &HealthView::all_up(),
        Family::V4,
    );
    assert_eq!(d.chosen, Some(1));
}

#[test]
fn single_region_name_does_not_depend_on_the_client() {
    let mut name = www();
    name.regions = vec![2];
    name.default_region = 2;
    let d = decide(
        at(52.0, 13.0),
        &name,
        &regions(),
        &HealthView::all_up(),
        Family::V4,
    );
    assert_eq!(chosen_name(&d), Some("ap-southeast"));
    assert!(!d.depends_on_client);
}

#[test]
fn select_returns_count_distinct_endpoints() {
    let eps = [ep("192.0.2.1", 1), ep("192.0.2.2", 1), ep("192.0.2.3", 1)];
    for seed in 0..100 {
        let got = select(&eps, Some(2), seed);
        assert_eq!(got.len(), 2);
        assert_ne!(got[0], got[1]);
        assert_eq!(select(&eps, None, seed).len(), 3);
        assert_eq!(select(&eps, Some(10), seed).len(), 3);
        assert_eq!(select(&eps, Some(2), seed), got, "deterministic per seed");
    }
}

#[test]
fn equal_weights_rotate_every_endpoint_to_the_front() {
    let eps = [ep("192.0.2.1", 1), ep("192.0.2.2", 1), ep("192.0.2.3", 1)];
    let mut first: HashMap<IpAddr, u32> = HashMap::new();
    for seed in 0..3000 {
        *first.entry(select(&eps, None, seed)[0]).or_default() += 1;
    }
    assert_eq!(first.len(), 3);
    for (addr, n) in first {
        assert!((800..1200).contains(&n), "{addr} first {n} times of 3000");
    }
}

#[test]
fn weights_set_the_share_of_answers() {
    let eps = [ep("192.0.2.1", 3), ep("192.0.2.2", 1)];
    let heavy: IpAddr = "192.0.2.1".parse().unwrap();
    let n = (0..4000u64)
        .filter(|&s| select(&eps, Some(1), s)[0] == heavy)
        .count();
    // Expect 3/4 of 4000 = 3000.
    assert!((2800..3200).contains(&n), "{n}");
}

fn arb_point() -> impl Strategy<Value = GeoPoint> {
    (-90.0f64..=90.0, -180.0f64..=180.0).prop_map(|(lat, lon)| GeoPoint { lat, lon })
}

fn arb_state() -> impl Strategy<Value = RegionState> {
    prop_oneof![Just(RegionState::Up), Just(RegionState::Down)]
}

proptest! {
    #[test]
    fn distance_is_symmetric_and_bounded(a in arb_point(), b in arb_point()) {
        let d = a.distance_km(b);
        prop_assert!((d - b.distance_km(a)).abs() < 1e-6);
        prop_assert!((0.0..=std::f64::consts::PI * EARTH_RADIUS_KM + 1e-6).contains(&d));
    }

    #[test]
    fn answers_hold_only_up_endpoints_unless_all_are_down(
        client in proptest::option::of(arb_point()),
        states in proptest::collection::vec(arb_state(), 3),
        v6 in any::<bool>(),
    ) {
        let regions = regions();
        let family = if v6 { Family::V6 } else { Family::V4 };
        let view = super::tests::states(&states);
        let d = decide(client, &www(), &regions, &view, family);
        let any_up = states.contains(&RegionState::Up);
        prop_assert_eq!(d.basis == Basis::AllDown, !any_up);
        prop_assert_eq!(d.candidates.len(), 3);
        for e in d.endpoints(&www(), &regions, &view, family) {
            prop_assert_eq!(Family::of(&e.address), family);
            let owner = regions.iter().position(|r| r.endpoints.contains(e)).unwrap();
            prop_assert!(!any_up || states[owner] == RegionState::Up);
        }
        if let (Some(chosen), Some(p)) = (d.chosen, client) {
            // Nothing up is nearer than the chosen region.
            let best = p.distance_km(regions[chosen].location);
            for (i, r) in regions.iter().enumerate() {
                if states[i] == RegionState::Up {
                    prop_assert!(best <= p.distance_km(r.location));
                }
            }
        }
    }
}

fn health(state: RegionState, degradation_ms: f64, over_limit: bool) -> RegionHealth {
    RegionHealth {
        state,
        degradation_ms,
        over_limit,
        ..RegionHealth::up(2)
    }
}

#[test]
fn degradation_adds_to_the_distance_estimate() {
    // Dublin is ~5 ms from London by distance; Virginia ~59 ms. A 60 ms degradation of
    // eu-west makes us-east the lower estimated RTT even below the limit.
    let view = HealthView {
        regions: vec![
            RegionHealth::up(2),
            health(RegionState::Up, 60.0, false),
            RegionHealth::up(2),
        ],
        ..Default::default()
    };
    let d = decide(at(51.5, -0.13), &www(), &regions(), &view, Family::V4);
    assert_eq!(chosen_name(&d), Some("us-east"));
    let eu = d.candidates.iter().find(|c| c.region == 1).unwrap();
    let est = eu.estimated_rtt_ms.unwrap();
    assert!((est - (eu.distance_km.unwrap() / KM_PER_RTT_MS + 60.0)).abs() < 1e-9);
}

#[test]
fn over_limit_region_is_skipped_while_a_better_one_is_up() {
    let view = HealthView {
        regions: vec![
            RegionHealth::up(2),
            health(RegionState::Up, 20.0, true),
            RegionHealth::up(2),
        ],
        ..Default::default()
    };
    let d = decide(at(53.0, -6.0), &www(), &regions(), &view, Family::V4);
    assert_eq!(chosen_name(&d), Some("us-east"));
    assert_eq!(d.candidates[0].verdict, Verdict::Degraded);
    // When every up region is over the limit, the best of them still answers.
    let all = HealthView {
        regions: vec![health(RegionState::Up, 20.0, true); 3],
        ..Default::default()
    };
    let d = decide(at(53.0, -6.0), &www(), &regions(), &all, Family::V4);
    assert_eq!(chosen_name(&d), Some("eu-west"));
}

#[test]
fn only_up_endpoints_are_answered() {
    let mut regions = regions();
    regions[1].endpoints.push(ep("198.51.100.11", 1));
    let view = HealthView {
        regions: vec![
            RegionHealth::up(2),
            RegionHealth {
                endpoints_up: vec![false, true, true],
                ..RegionHealth::up(3)
            },
            RegionHealth::up(2),
        ],
        ..Default::default()
    };
    let d = decide(at(53.0, -6.0), &www(), &regions, &view, Family::V4);
    let addrs: Vec<IpAddr> = d
        .endpoints(&www(), &regions, &view, Family::V4)
        .iter()
        .map(|e| e.address)
        .collect();
    assert_eq!(addrs, vec!["198.51.100.11".parse::<IpAddr>().unwrap()]);
    // A region whose only endpoint of a family is down is not eligible for that family.
    let view6 = HealthView {
        regions: vec![
            RegionHealth::up(2),
            RegionHealth {
                endpoints_up: vec![true, false, true],
                ..RegionHealth::up(3)
            },
            RegionHealth::up(2),
        ],
        ..Default::default()
    };
    let d = decide(at(53.0, -6.0), &www(), &regions, &view6, Family::V6);
    assert_eq!(chosen_name(&d), Some("us-east"));
}

#[test]
fn failover_policy_takes_the_first_up_region_in_order_for_everyone() {
    let mut name = www();
    name.policy = Policy::Failover;
    name.regions = vec![2, 1, 0];
    for client in [at(53.0, -6.0), at(39.0, -77.0), None] {
        let d = decide(client, &name, &regions(), &HealthView::all_up(), Family::V4);
        assert_eq!(chosen_name(&d), Some("ap-southeast"));
        assert_eq!(d.basis, Basis::Failover);
        assert!(
            !d.depends_on_client,
            "failover answers are the same for every client"
        );
    }
    let view = states(&[RegionState::Up, RegionState::Up, RegionState::Down]);
    let d = decide(at(39.0, -77.0), &name, &regions(), &view, Family::V4);
    assert_eq!(
        chosen_name(&d),
        Some("eu-west"),
        "next in the configured order"
    );
}

#[test]
fn static_fallback_answers_when_every_region_is_down() {
    let mut name = www();
    name.fallback = Fallback::Static(vec![ep("192.0.2.99", 1), ep("2001:db8::99", 1)]);
    let view = states(&[RegionState::Down; 3]);
    let regions = regions();
    let d = decide(at(53.0, -6.0), &name, &regions, &view, Family::V4);
    assert_eq!(d.basis, Basis::AllDown);
    let addrs: Vec<IpAddr> = d
        .endpoints(&name, &regions, &view, Family::V4)
        .iter()
        .map(|e| e.address)
        .collect();
    assert_eq!(addrs, vec!["192.0.2.99".parse::<IpAddr>().unwrap()]);
}

#[test]
fn trouble_shortens_the_ttl() {
    let mut view = HealthView {
        regions: vec![
            RegionHealth::up(2),
            RegionHealth::up(2),
            RegionHealth::up(2),
        ],
        ..Default::default()
    };
    let d = decide(at(53.0, -6.0), &www(), &regions(), &view, Family::V4);
    assert_eq!(d.ttl, 30);
    view.regions[2].in_trouble = true;
    let d = decide(at(53.0, -6.0), &www(), &regions(), &view, Family::V4);
    assert_eq!(d.ttl, 5, "any region of the name in trouble");
    let mut name = www();
    name.ttl = 3;
    let d = decide(at(53.0, -6.0), &name, &regions(), &view, Family::V4);
    assert_eq!(d.ttl, 3, "never longer than the normal TTL");
}

/// This node in Virginia; another in Frankfurt, which finds eu-west slow by `eu_ms` and has
/// no observation of ap-southeast.
fn two_vantages(eu_ms: f64) -> HealthView {
    HealthView {
        regions: vec![RegionHealth::up(2); 3],
        location: Some(US_EAST),
        vantages: vec![Vantage {
            node: "ns-fra".into(),
            location: GeoPoint {
                lat: 50.11,
                lon: 8.68,
            },
            regions: vec![
                Some(Latency {
                    degradation_ms: 0.0,
                    over_limit: false,
                }),
                Some(Latency {
                    degradation_ms: eu_ms,
                    over_limit: false,
                }),
                None,
            ],
        }],
    }
}

#[test]
fn a_client_near_another_vantage_point_is_ranked_by_its_latency() {
    let view = two_vantages(120.0);
    // Berlin is nearest to Frankfurt: its latency puts eu-west (~13 ms + 120) behind us-east.
    let berlin = decide(at(52.52, 13.40), &www(), &regions(), &view, Family::V4);
    assert_eq!(berlin.vantage, Some(0));
    assert_eq!(chosen_name(&berlin), Some("us-east"));
    let eu = berlin.candidates.iter().find(|c| c.region == 1).unwrap();
    assert_eq!((eu.degradation_ms, eu.vantage), (120.0, Some(0)));
    // Chicago is nearest to this node (Virginia): its own view, where eu-west is not slow.
    let chicago = decide(at(41.88, -87.63), &www(), &regions(), &view, Family::V4);
    assert_eq!(chicago.vantage, None);
    assert!(chicago.candidates.iter().all(|c| c.vantage.is_none()));
    // The fast twin agrees.
    for client in [at(52.52, 13.40), at(41.88, -87.63), None] {
        assert_eq!(
            chosen(client, &www(), &regions(), &view, Family::V4),
            decide(client, &www(), &regions(), &view, Family::V4).chosen
        );
    }
}

#[test]
fn without_an_observation_from_the_nearest_vantage_this_nodes_latency_counts() {
    let mut view = two_vantages(0.0);
    view.regions[2].degradation_ms = 40.0;
    // Frankfurt has no word on ap-southeast: this node's 40 ms is used for it.
    let d = decide(at(52.52, 13.40), &www(), &regions(), &view, Family::V4);
    let ap = d.candidates.iter().find(|c| c.region == 2).unwrap();
    assert_eq!((ap.degradation_ms, ap.vantage), (40.0, None));
    // An unknown client location: this node's own latency.
    let d = decide(None, &www(), &regions(), &view, Family::V4);
    assert_eq!(d.vantage, None);
}

#[test]
fn the_nearest_vantage_is_this_node_on_a_tie_and_needs_a_location() {
    let mut view = two_vantages(120.0);
    view.vantages[0].location = US_EAST;
    assert_eq!(view.vantage_for(at(41.88, -87.63)), None);
    // This node not located: the other node is the only vantage point with a place.
    view.location = None;
    assert_eq!(view.vantage_for(at(41.88, -87.63)), Some(0));
    // No other vantage: this node's own.
    view.vantages.clear();
    assert_eq!(view.vantage_for(at(41.88, -87.63)), None);
}

#[test]
fn a_vantage_over_the_limit_degrades_the_region_for_its_clients() {
    let mut view = two_vantages(5.0);
    view.vantages[0].regions[1] = Some(Latency {
        degradation_ms: 5.0,
        over_limit: true,
    });
    let berlin = decide(at(52.52, 13.40), &www(), &regions(), &view, Family::V4);
    assert_eq!(chosen_name(&berlin), Some("us-east"));
    assert_eq!(
        berlin
            .candidates
            .iter()
            .find(|c| c.region == 1)
            .unwrap()
            .verdict,
        Verdict::Degraded
    );
}

#[test]
fn failover_depends_on_the_client_when_vantages_disagree_on_the_limit() {
    let mut view = two_vantages(5.0);
    let name = SteeredName {
        policy: Policy::Failover,
        ..www()
    };
    assert!(!decide(None, &name, &regions(), &view, Family::V4).depends_on_client);
    // Frankfurt finds us-east, the first in order, past the limit: its clients fail over.
    view.vantages[0].regions[0] = Some(Latency {
        degradation_ms: 150.0,
        over_limit: true,
    });
    let berlin = decide(at(52.52, 13.40), &name, &regions(), &view, Family::V4);
    assert!(berlin.depends_on_client);
    assert_eq!(chosen_name(&berlin), Some("eu-west"));
    let chicago = decide(at(41.88, -87.63), &name, &regions(), &view, Family::V4);
    assert_eq!(chosen_name(&chicago), Some("us-east"));
}

// ---- rules ----

/// A client of network `net` at `point`, in `country` (continent Europe when it is DE or
/// GB), in `asn`.
fn facts(
    net: &str,
    point: Option<GeoPoint>,
    country: Option<&'static str>,
    asn: Option<u32>,
) -> ClientFacts {
    use crate::geo::countries::Continent;
    ClientFacts {
        network: net.parse().unwrap(),
        point,
        country,
        continent: country.map(|c| match c {
            "DE" | "GB" => Continent::Europe,
            _ => Continent::NorthAmerica,
        }),
        asn,
    }
}

const BERLIN: Option<GeoPoint> = Some(GeoPoint {
    lat: 52.52,
    lon: 13.40,
});

#[test]
fn a_network_rule_wins_over_distance_and_the_most_specific_one_decides() {
    let mut name = www();
    name.rules.networks = vec![
        ("81.2.0.0/16".parse().unwrap(), 2),
        ("81.2.69.0/24".parse().unwrap(), 2),
    ];
    let d = rules::apply(
        &facts("81.2.69.0/24", BERLIN, Some("DE"), None),
        &name,
        &regions(),
        &HealthView::all_up(),
        Family::V4,
    );
    assert_eq!(
        (d.basis, chosen_name(&d)),
        (Basis::Rule, Some("ap-southeast"))
    );
    assert_eq!(d.reasons, ["network 81.2.69.0/24 is sent to ap-southeast"]);
    assert_eq!(d.candidates[0].verdict, Verdict::Chosen);
    // Its region down: distance decides, and says why.
    let down = states(&[RegionState::Up, RegionState::Up, RegionState::Down]);
    let d = rules::apply(
        &facts("81.2.69.0/24", BERLIN, Some("DE"), None),
        &name,
        &regions(),
        &down,
        Family::V4,
    );
    assert_eq!(
        (d.basis, chosen_name(&d)),
        (Basis::Nearest, Some("eu-west"))
    );
    assert!(
        d.reasons[0].ends_with("cannot answer: distance decides"),
        "{d:?}"
    );
}

#[test]
fn an_asn_rule_wins_over_distance_but_not_over_a_network_rule() {
    let mut name = www();
    name.rules.asns = vec![(20712, 0)];
    let view = HealthView::all_up();
    let d = rules::apply(
        &facts("81.2.69.0/24", BERLIN, Some("DE"), Some(20712)),
        &name,
        &regions(),
        &view,
        Family::V4,
    );
    assert_eq!((d.basis, chosen_name(&d)), (Basis::Rule, Some("us-east")));
    name.rules.networks = vec![("81.2.69.0/24".parse().unwrap(), 2)];
    let d = rules::apply(
        &facts("81.2.69.0/24", BERLIN, Some("DE"), Some(20712)),
        &name,
        &regions(),
        &view,
        Family::V4,
    );
    assert_eq!(chosen_name(&d), Some("ap-southeast"));
}

#[test]
fn a_fence_keeps_its_clients_inside_and_fails_closed_or_open() {
    let mut name = www();
    name.rules.fences = vec![rules::Fence {
        countries: vec!["DE"],
        continents: Vec::new(),
        regions: vec![1],
        when_all_down: rules::WhenAllDown::FailClosed,
        closed_answer: Vec::new(),
    }];
    // A Berlin client that distance would send to us-east (biased far from eu-west).
    name.bias_km = vec![(0, 7000.0)];
    let up = HealthView::all_up();
    let berlin = facts("5.9.0.0/24", BERLIN, Some("DE"), None);
    assert_eq!(
        chosen_name(&decide(BERLIN, &name, &regions(), &up, Family::V4)),
        Some("us-east")
    );
    let d = rules::apply(&berlin, &name, &regions(), &up, Family::V4);
    assert_eq!((d.basis, chosen_name(&d)), (Basis::Fenced, Some("eu-west")));
    assert!(
        d.candidates
            .iter()
            .any(|c| c.region == 0 && c.verdict == Verdict::Fenced)
    );
    // eu-west down: closed, NODATA.
    let down = states(&[RegionState::Up, RegionState::Down, RegionState::Up]);
    let d = rules::apply(&berlin, &name, &regions(), &down, Family::V4);
    assert_eq!((d.basis, d.chosen), (Basis::FencedClosed, None));
    assert!(d.endpoints(&name, &regions(), &down, Family::V4).is_empty());
    // Closed with a fixed answer: that answer.
    name.rules.fences[0].closed_answer = vec![ep("192.0.2.99", 1), ep("2001:db8::99", 1)];
    let d = rules::apply(&berlin, &name, &regions(), &down, Family::V6);
    let fixed: Vec<String> = d
        .endpoints(&name, &regions(), &down, Family::V6)
        .iter()
        .map(|e| e.address.to_string())
        .collect();
    assert_eq!(
        (d.basis, fixed),
        (Basis::FencedClosed, vec!["2001:db8::99".to_string()])
    );
    // Open: the nearest region outside the fence.
    name.rules.fences[0].when_all_down = rules::WhenAllDown::FailOpen;
    let d = rules::apply(&berlin, &name, &regions(), &down, Family::V4);
    assert_eq!(chosen_name(&d), Some("us-east"));
    // A client outside the fence is not held by it.
    let gb = facts("81.2.69.0/24", BERLIN, Some("GB"), None);
    assert_eq!(
        chosen_name(&rules::apply(&gb, &name, &regions(), &up, Family::V4)),
        Some("us-east")
    );
}

#[test]
fn bias_moves_a_catchment() {
    // Dublin's eu-west is nearer to Berlin than us-east by about 6,000 km.
    let mut name = www();
    let up = HealthView::all_up();
    assert_eq!(
        chosen_name(&decide(BERLIN, &name, &regions(), &up, Family::V4)),
        Some("eu-west")
    );
    name.bias_km = vec![(0, 7000.0)];
    assert_eq!(
        chosen_name(&decide(BERLIN, &name, &regions(), &up, Family::V4)),
        Some("us-east")
    );
    name.bias_km = vec![(1, -7000.0)];
    assert_eq!(
        chosen_name(&decide(BERLIN, &name, &regions(), &up, Family::V4)),
        Some("us-east")
    );
    assert_eq!(chosen(BERLIN, &name, &regions(), &up, Family::V4), Some(0));
}

/// The share of 10,000 client /24s that a split of eu-west's clients sends to ap-southeast,
/// and which ones.
fn split_outcome(percent: u32) -> (f64, Vec<bool>) {
    let mut name = www();
    name.rules.splits = vec![rules::Split {
        region: 1,
        weights: vec![(1, 100 - percent), (2, percent)],
    }];
    let up = HealthView::all_up();
    let moved: Vec<bool> = (0..10_000u32)
        .map(|i| {
            let net = format!("{}.{}.{}.0/24", 10 + i / 65536, (i / 256) % 256, i % 256);
            let d = rules::apply(
                &facts(&net, BERLIN, Some("DE"), None),
                &name,
                &regions(),
                &up,
                Family::V4,
            );
            d.chosen == Some(2)
        })
        .collect();
    let share = moved.iter().filter(|m| **m).count() as f64 / moved.len() as f64;
    (share, moved)
}

#[test]
fn a_split_holds_its_ratio_and_moving_10_to_20_percent_moves_only_the_extra_10() {
    let (ten, at_ten) = split_outcome(10);
    let (twenty, at_twenty) = split_outcome(20);
    assert!((ten - 0.10).abs() < 0.01, "{ten}");
    assert!((twenty - 0.20).abs() < 0.01, "{twenty}");
    // Every network that moved at 10 % still moves at 20 %.
    assert!(at_ten.iter().zip(&at_twenty).all(|(a, b)| !a || *b));
}

#[test]
fn multivalue_answers_with_the_n_nearest_up_regions() {
    let mut name = www();
    name.multivalue = Some(2);
    let berlin = facts("5.9.0.0/24", BERLIN, Some("DE"), None);
    let up = HealthView::all_up();
    let d = rules::apply(&berlin, &name, &regions(), &up, Family::V4);
    assert_eq!((d.chosen, d.also.as_slice()), (Some(1), &[0][..]));
    let addrs: Vec<String> = d
        .endpoints(&name, &regions(), &up, Family::V4)
        .iter()
        .map(|e| e.address.to_string())
        .collect();
    assert_eq!(addrs, ["198.51.100.10", "192.0.2.10"]);
    // us-east down: the next nearest up region takes its place.
    let down = states(&[RegionState::Down, RegionState::Up, RegionState::Up]);
    let d = rules::apply(&berlin, &name, &regions(), &down, Family::V4);
    assert_eq!((d.chosen, d.also.as_slice()), (Some(1), &[2][..]));
}

#[test]
fn a_rule_answer_holds_for_its_network_unless_location_picks_other_answers() {
    let mut name = www();
    name.rules.networks = vec![("81.0.0.0/8".parse().unwrap(), 1)];
    let client = facts("81.2.69.0/24", BERLIN, Some("DE"), None);
    let up = HealthView::all_up();
    let d = rules::apply(&client, &name, &regions(), &up, Family::V4);
    assert_eq!(d.basis, Basis::Rule);
    // The rule's /8, whatever the GeoIP network (/19 here).
    assert_eq!(rules::scope(&name, &d, &client, 19, None), Some(8));
    // Multivalue: the region beside the rule's depends on the location, so the GeoIP
    // network bounds the scope.
    name.multivalue = Some(2);
    let d = rules::apply(&client, &name, &regions(), &up, Family::V4);
    assert_eq!(rules::scope(&name, &d, &client, 19, None), Some(19));
    // A split hashes /24s: no wider than that.
    name.multivalue = None;
    name.rules.networks.clear();
    name.rules.splits = vec![rules::Split {
        region: 1,
        weights: vec![(1, 50), (2, 50)],
    }];
    let wide = facts("81.2.0.0/16", BERLIN, Some("DE"), None);
    let d = rules::apply(&wide, &name, &regions(), &up, Family::V4);
    assert_eq!(rules::scope(&name, &d, &wide, 19, None), Some(24));
}

/// A client network's measured RTTs by region (us-east, eu-west, ap-southeast).
fn measured(rtts: [Option<f64>; 3]) -> ClientRtt {
    ClientRtt {
        prefix: "81.2.69.0/24".parse().unwrap(),
        regions: rtts
            .iter()
            .map(|r| {
                r.map(|rtt_ms| Measured {
                    rtt_ms,
                    samples: 40.0,
                })
            })
            .collect(),
    }
}

const DUBLIN_CLIENT: Option<GeoPoint> = Some(GeoPoint {
    lat: 53.0,
    lon: -6.0,
});

#[test]
fn measured_rtts_move_the_answer_past_the_margin() {
    let view = HealthView::all_up();
    let rtt = measured([Some(30.0), Some(80.0), None]);
    let d = decide_measured(
        DUBLIN_CLIENT,
        Some(&rtt),
        &www(),
        &regions(),
        &view,
        Family::V4,
    );
    assert_eq!(chosen_name(&d), Some("us-east"));
    assert_eq!(d.basis, Basis::Measured);
    assert_eq!(d.measured, Some("81.2.69.0/24".parse().unwrap()));
    assert_eq!(d.candidates[0].measured.map(|m| m.rtt_ms), Some(30.0));
    assert!(d.depends_on_client);
    // The distance model alone still says eu-west.
    let plain = decide(DUBLIN_CLIENT, &www(), &regions(), &view, Family::V4);
    assert_eq!(chosen_name(&plain), Some("eu-west"));
    assert_eq!(plain.measured, None);
}

#[test]
fn a_gain_inside_the_margin_moves_nothing() {
    let view = HealthView::all_up();
    // 10 % of 80 is 8 ms: 73 ms is 7 ms better, not enough; 71 is 9 ms better.
    let stay = measured([Some(73.0), Some(80.0), None]);
    let d = decide_measured(
        DUBLIN_CLIENT,
        Some(&stay),
        &www(),
        &regions(),
        &view,
        Family::V4,
    );
    assert_eq!(
        (chosen_name(&d), d.basis),
        (Some("eu-west"), Basis::Nearest)
    );
    let go = measured([Some(71.0), Some(80.0), None]);
    let d = decide_measured(
        DUBLIN_CLIENT,
        Some(&go),
        &www(),
        &regions(),
        &view,
        Family::V4,
    );
    assert_eq!(
        (chosen_name(&d), d.basis),
        (Some("us-east"), Basis::Measured)
    );
    // Below 50 ms the 5 ms floor rules: 4 ms better stays.
    let stay = measured([Some(16.0), Some(20.0), None]);
    let d = decide_measured(
        DUBLIN_CLIENT,
        Some(&stay),
        &www(),
        &regions(),
        &view,
        Family::V4,
    );
    assert_eq!(chosen_name(&d), Some("eu-west"));
}

#[test]
fn a_measured_region_is_never_compared_with_a_distance_estimate() {
    let view = HealthView::all_up();
    // The nearest region has no measurement: however fast another measures, nothing moves.
    let rtt = measured([Some(1.0), None, Some(2.0)]);
    let d = decide_measured(
        DUBLIN_CLIENT,
        Some(&rtt),
        &www(),
        &regions(),
        &view,
        Family::V4,
    );
    assert_eq!(
        (chosen_name(&d), d.basis),
        (Some("eu-west"), Basis::Nearest)
    );
}

#[test]
fn measured_rtts_skip_down_and_degraded_regions_and_add_degradation() {
    let rtt = measured([Some(30.0), Some(80.0), Some(40.0)]);
    // us-east down: ap-southeast's 40 ms beats eu-west's 80.
    let view = states(&[RegionState::Down, RegionState::Up, RegionState::Up]);
    let d = decide_measured(
        DUBLIN_CLIENT,
        Some(&rtt),
        &www(),
        &regions(),
        &view,
        Family::V4,
    );
    assert_eq!(chosen_name(&d), Some("ap-southeast"));
    // us-east past its degradation limit: skipped for the measured choice too.
    let mut view = HealthView {
        regions: vec![
            health(RegionState::Up, 60.0, true),
            health(RegionState::Up, 0.0, false),
            health(RegionState::Up, 45.0, false),
        ],
        ..Default::default()
    };
    let d = decide_measured(
        DUBLIN_CLIENT,
        Some(&rtt),
        &www(),
        &regions(),
        &view,
        Family::V4,
    );
    // ap-southeast: 40 + 45 = 85 ms, no better than eu-west's 80.
    assert_eq!(chosen_name(&d), Some("eu-west"));
    view.regions[2].degradation_ms = 0.0;
    let d = decide_measured(
        DUBLIN_CLIENT,
        Some(&rtt),
        &www(),
        &regions(),
        &view,
        Family::V4,
    );
    assert_eq!(chosen_name(&d), Some("ap-southeast"));
}

#[test]
fn failover_names_ignore_measured_rtts() {
    let name = SteeredName {
        policy: Policy::Failover,
        ..www()
    };
    let rtt = measured([Some(90.0), Some(10.0), None]);
    let view = HealthView::all_up();
    let d = decide_measured(
        DUBLIN_CLIENT,
        Some(&rtt),
        &name,
        &regions(),
        &view,
        Family::V4,
    );
    assert_eq!(
        (chosen_name(&d), d.basis),
        (Some("us-east"), Basis::Failover)
    );
}

fn arb_rtt() -> impl Strategy<Value = Option<f64>> {
    prop::option::of(1.0..400.0f64)
}

proptest! {
    /// The measured answer differs from the distance model's only past the margin, between
    /// two measured regions, and never picks a region the distance model could not answer.
    #[test]
    fn measured_rtts_switch_only_past_the_margin(
        client in arb_point(),
        s in prop::collection::vec(arb_state(), 3),
        rtts in prop::collection::vec(arb_rtt(), 3),
    ) {
        let view = states(&s);
        let rtt = measured([rtts[0], rtts[1], rtts[2]]);
        let plain = decide(Some(client), &www(), &regions(), &view, Family::V4);
        let d = decide_measured(Some(client), Some(&rtt), &www(), &regions(), &view, Family::V4);
        if d.chosen == plain.chosen {
            prop_assert_ne!(d.basis, Basis::Measured);
        } else {
            prop_assert_eq!(d.basis, Basis::Measured);
            let (old, new) = (plain.chosen.unwrap(), d.chosen.unwrap());
            let (o, n) = (rtts[old].unwrap(), rtts[new].unwrap());
            prop_assert!(o - n > SWITCH_MIN_MS.max(SWITCH_FRACTION * o));
            prop_assert_eq!(view.state(new), RegionState::Up);
        }
        prop_assert_eq!(d.depends_on_client, plain.depends_on_client);
        prop_assert_eq!(d.ttl, plain.ttl);
        let without = decide_measured(Some(client), None, &www(), &regions(), &view, Family::V4);
        prop_assert_eq!(without, plain);
    }
}
