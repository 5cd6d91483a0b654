//! The compiled tables against the direct computation (GeoIP lookup, then `steer::decide`):
//! the same region for every address, and a scope inside which every address is answered
//! alike.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use proptest::prelude::*;

use super::*;
use crate::geo::GeoDb;
use crate::steer::spill::RegionSpill;
use crate::steer::{GeoPoint, Latency, RegionHealth, RegionState, Vantage};

/// The embedded database, its location table built once for every case.
static GEO: LazyLock<GeoDb> = LazyLock::new(|| {
    let geo = GeoDb::embedded().unwrap();
    geo.table().unwrap();
    geo
});

/// A zone with `points.len()` regions at those points, each with an IPv4 and an IPv6
/// endpoint, and one steered name over all of them with `default` as default region, the
/// biases of `bias` (by region index) and the rules of `rules` (zone-file lines).
fn zone(points: &[(f64, f64)], default: usize, failover: bool) -> Zone {
    zone_with(points, default, failover, &[], "")
}

fn zone_with(
    points: &[(f64, f64)],
    default: usize,
    failover: bool,
    bias: &[(usize, f64)],
    rules: &str,
) -> Zone {
    let mut text = String::from(
        "zone = \"t.test.\"\nrecords = '''\n$TTL 300\n@ IN SOA ns hm 1 7200 3600 1209600 300\n@ IN NS ns\nns IN A 192.0.2.1\n'''\n",
    );
    let names: Vec<String> = (0..points.len()).map(|i| format!("r{i}")).collect();
    for (i, (lat, lon)) in points.iter().enumerate() {
        text += &format!(
            "[regions.r{i}]\nlocation = {{ lat = {lat}, lon = {lon} }}\nendpoints = [\"192.0.2.{}\", \"2001:db8::{:x}\"]\n",
            i + 10,
            i + 10
        );
    }
    text += &format!(
        "[steered.www]\nregions = [{}]\ndefault-region = \"r{default}\"\npolicy = \"{}\"\n",
        names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", "),
        if failover { "failover" } else { "nearest" }
    );
    let bias: Vec<String> = bias
        .iter()
        .map(|(r, km)| format!("r{r} = {km:.1}"))
        .collect();
    text += &format!("bias-km = {{ {} }}\n{rules}", bias.join(", "));
    crate::zone::load_file(std::path::Path::new("t.test.toml"), &text)
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"))
}

/// The region the direct path answers `network` with.
fn direct(zone: &Zone, view: &HealthView, family: Family, network: IpNet) -> Option<RegionId> {
    let point = GEO.locate(network).point;
    steer::decide(point, &zone.steered[0].config, &zone.regions, view, family).chosen
}

fn region_health() -> impl Strategy<Value = RegionHealth> {
    (0..10u8, 0.0..80.0f64, any::<bool>(), any::<bool>()).prop_map(
        |(state, degradation_ms, over_limit, endpoint_up)| RegionHealth {
            state: match state {
                0 => RegionState::Down,
                1 => RegionState::Drained,
                _ => RegionState::Up,
            },
            endpoints_up: vec![endpoint_up || state % 2 == 0, true],
            degradation_ms,
            over_limit: over_limit && state % 3 == 0,
            in_trouble: false,
        },
    )
}

/// Another node as a vantage point: somewhere, with its own latency for some of 12 regions.
fn vantage() -> impl Strategy<Value = Vantage> {
    (
        (-60.0..70.0f64, -180.0..180.0f64),
        prop::collection::vec(prop::option::of((0.0..150.0f64, any::<bool>())), 12),
    )
        .prop_map(|((lat, lon), regions)| Vantage {
            node: "peer".into(),
            location: GeoPoint { lat, lon },
            regions: regions
                .into_iter()
                .map(|r| {
                    r.map(|(degradation_ms, over_limit)| Latency {
                        degradation_ms,
                        over_limit,
                    })
                })
                .collect(),
        })
}

/// An address and a source prefix: IPv4 /8../32 or IPv6 /16../128, mostly in allocated space.
fn client() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 8u8..=32)
            .prop_map(|(a, p)| IpNet::new(Ipv4Addr::from(a).into(), p).unwrap().trunc()),
        (0x2000u16..0x2c00, any::<u64>(), any::<u64>(), 16u8..=128).prop_map(|(top, hi, lo, p)| {
            let a = (u128::from(top) << 112) | (u128::from(hi >> 16) << 64) | u128::from(lo);
            IpNet::new(Ipv6Addr::from(a).into(), p).unwrap().trunc()
        }),
    ]
}

/// An address inside `block`, from `seed`.
fn inside(block: IpNet, seed: u128) -> IpAddr {
    match block {
        IpNet::V4(n) => {
            let host = 32 - u32::from(n.prefix_len());
            let mask = if host == 0 {
                0
            } else {
                u32::MAX >> (32 - host)
            };
            Ipv4Addr::from(u32::from(n.network()) | (seed as u32 & mask)).into()
        }
        IpNet::V6(n) => {
            let host = 128 - u32::from(n.prefix_len());
            let mask = if host == 0 {
                0
            } else {
                u128::MAX >> (128 - host)
            };
            Ipv6Addr::from(u128::from(n.network()) | (seed & mask)).into()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn compiled_tables_answer_as_the_direct_path_and_scopes_hold(
        points in prop::collection::vec((-60.0..70.0f64, -180.0..180.0f64), 2..12),
        health in prop::collection::vec(region_health(), 12),
        default in 0usize..12,
        failover in prop::bool::weighted(0.1),
        clients in prop::collection::vec((client(), any::<u128>(), any::<bool>()), 64),
        location in prop::option::of((-60.0..70.0f64, -180.0..180.0f64)),
        vantages in prop::collection::vec(vantage(), 0..3),
        bias in prop::collection::vec((0usize..12, -3000.0..3000.0f64), 0..4),
    ) {
        // Bias compiles: the tables rank by biased distance as `decide` does.
        let mut bias: Vec<(usize, f64)> =
            bias.into_iter().map(|(r, km)| (r % points.len(), km)).collect();
        bias.sort_by_key(|b| b.0);
        bias.dedup_by_key(|b| b.0);
        let zone = zone_with(&points, default % points.len(), failover, &bias, "");
        let view = HealthView {
            regions: health[..points.len()].to_vec(),
            location: location.map(|(lat, lon)| GeoPoint { lat, lon }),
            vantages: vantages
                .into_iter()
                .map(|mut v| {
                    v.regions.truncate(points.len());
                    v
                })
                .collect(),
        };
        let compiled = compile(&zone, &view, &Arc::default(), || GEO.table().map_err(str::to_owned)).unwrap();
        for (network, seed, v6) in clients {
            let family = if v6 { Family::V6 } else { Family::V4 };
            let Some(c) = compiled.steer(0, family, Client::Subnet { network }) else {
                // Only IPv6 alias space (6to4, Teredo) is left to the direct path.
                prop_assert!(network.addr().is_ipv6(), "{network}");
                continue;
            };
            let decision = steer::decide(
                GEO.locate(network).point, &zone.steered[0].config, &zone.regions, &view, family,
            );
            let also = compiled.also(&decision.also).unwrap();
            prop_assert_eq!(c.steering, Steering::of(&decision, &zone, &zone.steered[0].config, &view, family, also), "{}", network);
            prop_assert!(c.scope <= network.prefix_len());
            prop_assert_eq!(c.scope == 0, !decision.depends_on_client);
            // Every address of a widened scope is answered by the same region. (A scope equal
            // to the source prefix claims the answer of the prefix's first address, as the
            // direct path does: scope stays within what the resolver disclosed.)
            if c.scope > 0 && c.scope < network.prefix_len() {
                let block = IpNet::new(network.addr(), c.scope).unwrap().trunc();
                for k in 0..8u128 {
                    let addr = inside(block, seed.rotate_left(k as u32 * 16) ^ k);
                    prop_assert_eq!(
                        direct(&zone, &view, family, IpNet::from(addr)),
                        decision.chosen,
                        "{} in scope {} of {}", addr, block, network
                    );
                }
            }
        }
    }
}

#[test]
fn steering_chosen_is_decide_chosen_for_every_point_of_the_database() {
    let points = [(39.0, -77.5), (53.3, -6.3), (1.35, 103.8), (37.4, -122.1)];
    let zone = zone(&points, 1, false);
    let mut view = HealthView::all_up();
    view.regions = vec![RegionHealth::up(2); 4];
    view.regions[0].degradation_ms = 35.0;
    view.regions[2].over_limit = true;
    // A vantage point in Frankfurt that finds eu-west slow and has no word on ap-southeast.
    view.location = Some(GeoPoint {
        lat: 39.0,
        lon: -77.5,
    });
    view.vantages = vec![Vantage {
        node: "ns2".into(),
        location: GeoPoint {
            lat: 50.1,
            lon: 8.7,
        },
        regions: vec![
            Some(Latency {
                degradation_ms: 0.0,
                over_limit: false,
            }),
            Some(Latency {
                degradation_ms: 90.0,
                over_limit: false,
            }),
            None,
        ],
    }];
    for family in [Family::V4, Family::V6] {
        for p in GEO.table().unwrap().places.iter().map(|p| p.point()) {
            let config = &zone.steered[0].config;
            assert_eq!(
                steer::chosen(p, config, &zone.regions, &view, family),
                steer::decide(p, config, &zone.regions, &view, family).chosen,
                "{p:?}"
            );
        }
    }
}

#[test]
fn widest_is_the_shortest_prefix_inside_the_run() {
    // 10.0.0.0 - 10.255.255.255 is exactly a /8.
    let (first, last) = (0x0a00_0000u128, 0x0aff_ffffu128);
    assert_eq!(widest(0x0a01_0203, first, last, 32), 8);
    // A run from 10.0.0.0 to 10.0.0.127 holds the /25 of 10.0.0.5.
    assert_eq!(widest(0x0a00_0005, first, 0x0a00_007f, 32), 25);
    // A run of one address: a host route.
    assert_eq!(widest(7, 7, 7, 32), 32);
    // The whole space: /1, never 0.
    assert_eq!(widest(5, 0, u128::from(u32::MAX), 32), 1);
    assert_eq!(widest(5, 0, u128::MAX, 128), 1);
}

/// Rules a zone-file line can give the steered name of [`zone_with`] over `n` regions:
/// network rules (IPv4 and IPv6), an ASN rule, a fence by continent or country, a split,
/// multivalue.
fn rules(n: usize) -> impl Strategy<Value = String> {
    let region = move || (0..n).prop_map(|r| format!("r{r}"));
    let network = prop_oneof![
        (any::<u32>(), 2u8..=24)
            .prop_map(|(a, p)| IpNet::new(Ipv4Addr::from(a).into(), p).unwrap().trunc()),
        (0x2000u16..0x2c00, any::<u64>(), 12u8..=48).prop_map(|(top, hi, p)| {
            let a = (u128::from(top) << 112) | (u128::from(hi >> 16) << 64);
            IpNet::new(Ipv6Addr::from(a).into(), p).unwrap().trunc()
        }),
    ];
    let place = prop::sample::select(vec![
        "continents = [\"EU\"]",
        "continents = [\"NA\"]",
        "continents = [\"AS\"]",
        "countries = [\"DE\", \"FR\"]",
        "countries = [\"US\"]",
        "countries = [\"JP\", \"BR\"]",
    ]);
    (
        prop::collection::vec((network, region()), 0..4),
        prop::option::of((prop::sample::select(vec![13335u32, 15169, 3320, 7922, 20940]), region())),
        prop::option::of((place, region(), any::<bool>())),
        prop::option::of((region(), region(), 0u32..=100)),
        any::<bool>(),
    )
        .prop_map(|(nets, asn, fence, split, multivalue)| {
            let mut text = String::new();
            if multivalue {
                text += "multivalue = 2\n";
            }
            text += "[steered.www.networks]\n";
            let mut taken: Vec<IpNet> = Vec::new();
            for (net, r) in nets {
                // Overlapping networks to different regions are refused by the loader.
                if taken.iter().all(|t| !t.contains(&net) && !net.contains(t)) {
                    taken.push(net);
                    text += &format!("\"{net}\" = \"{r}\"\n");
                }
            }
            if let Some((asn, r)) = asn {
                text += &format!("[steered.www.asns]\nAS{asn} = \"{r}\"\n");
            }
            if let Some((place, r, closed)) = fence {
                let when = if closed { "fail-closed" } else { "fail-open" };
                text += &format!(
                    "[[steered.www.fence]]\n{place}\nregions = [\"{r}\"]\nwhen-all-down = \"{when}\"\n"
                );
            }
            if let Some((from, to, w)) = split
                && from != to
            {
                text += &format!(
                    "[[steered.www.split]]\nregion = \"{from}\"\nweights = {{ {from} = {}, {to} = {w} }}\n",
                    100 - w
                );
            }
            text
        })
}

/// The direct answer under a name's rules (the GeoIP and ASN lookups, then the rules): its
/// steering, and its regions (multivalue: several), the fence that failed closed and whether
/// another client could be answered otherwise.
type Regions = (Option<RegionId>, Vec<RegionId>, Option<usize>, bool);

fn ruled(
    compiled: &ZoneSteering,
    zone: &Zone,
    view: &HealthView,
    family: Family,
    network: IpNet,
) -> (Steering, Regions) {
    let location = GEO.locate(network);
    let facts = steer::ClientFacts::located(network, &location);
    let config = &zone.steered[0].config;
    let decision = steer::rules::apply(&facts, config, &zone.regions, view, family);
    // A list no compiled class holds has no number: the comparison with the table fails.
    let also = compiled.also(&decision.also).unwrap_or(Also::UNKNOWN);
    let steering = Steering::of(&decision, zone, config, view, family, also);
    let regions = (
        decision.chosen,
        decision.also,
        decision.closed_fence,
        decision.depends_on_client,
    );
    (steering, regions)
}

/// Client networks where the rules' ASes are (Cloudflare, Google, Deutsche Telekom, Comcast,
/// Akamai), or anywhere.
fn rule_client() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        3 => client(),
        1 => (
            prop::sample::select(vec![
                "1.1.1.0/24", "104.16.0.0/13", "8.8.8.0/24", "142.250.0.0/15", "91.0.0.0/10",
                "73.0.0.0/8", "23.32.0.0/11", "2a00:1450::/32", "2003::/19", "2601::/20",
            ]),
            any::<u128>(),
            0u8..=16,
        )
            .prop_map(|(block, seed, longer)| {
                let block: IpNet = block.parse().unwrap();
                let p = (block.prefix_len() + longer).min(block.max_prefix_len());
                IpNet::new(inside(block, seed), p).unwrap().trunc()
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// A name with rules (network and ASN rules, fences, splits, multivalue) is answered from
    /// its compiled table as the direct path answers it (GeoIP and ASN lookups, then the
    /// rules), for every address but IPv6 alias space; every address inside the compiled
    /// scope gets the same direct answer.
    #[test]
    fn names_with_rules_compile_to_the_direct_answers_and_their_scopes_hold(
        (points, rules) in prop::collection::vec((-60.0..70.0f64, -180.0..180.0f64), 2..6)
            .prop_flat_map(|p| { let n = p.len(); (Just(p), rules(n)) }),
        health in prop::collection::vec(region_health(), 6),
        bias in prop::collection::vec((0usize..6, -3000.0..3000.0f64), 0..3),
        clients in prop::collection::vec((rule_client(), any::<u128>(), any::<bool>()), 48),
    ) {
        let mut bias: Vec<(usize, f64)> =
            bias.into_iter().map(|(r, km)| (r % points.len(), km)).collect();
        bias.sort_by_key(|b| b.0);
        bias.dedup_by_key(|b| b.0);
        let zone = zone_with(&points, 0, false, &bias, &rules);
        let view = HealthView {
            regions: health[..points.len()].to_vec(),
            ..HealthView::all_up()
        };
        let compiled = compile(&zone, &view, &Arc::default(), || GEO.table().map_err(str::to_owned)).unwrap();
        for (network, seed, v6) in clients {
            let family = if v6 { Family::V6 } else { Family::V4 };
            let Some(c) = compiled.steer(0, family, Client::Subnet { network }) else {
                // Only IPv6 alias space (6to4, Teredo) is left to the direct path.
                prop_assert!(network.addr().is_ipv6(), "{network}");
                continue;
            };
            let (steering, chosen) = ruled(&compiled, &zone, &view, family, network);
            prop_assert_eq!(c.steering, steering, "{} under\n{}", network, rules);
            prop_assert!(c.scope <= network.prefix_len());
            // As `answer::steer` scopes it: 0 for an answer every client gets.
            prop_assert_eq!(c.scope == 0, !chosen.3, "{} under\n{}", network, rules);
            if c.scope > 0 && c.scope < network.prefix_len() {
                let block = IpNet::new(network.addr(), c.scope).unwrap().trunc();
                for k in 0..8u128 {
                    let addr = inside(block, seed.rotate_left(k as u32 * 16) ^ k);
                    let host = IpNet::new(addr, network.prefix_len()).unwrap().trunc();
                    prop_assert_eq!(
                        &ruled(&compiled, &zone, &view, family, host).1,
                        &chosen,
                        "{} in scope {} of {} under\n{}", host, block, network, rules
                    );
                }
            }
        }
    }
}

#[test]
fn a_network_rule_over_an_as_rule_paints_the_pin_ranges() {
    let max = u128::from(u32::MAX);
    let mut ranges = vec![(0, 0), (100, 1), (200, 0)];
    // A rule inside the AS's range, and one across its end.
    paint(&mut ranges, 120, 129, 2, max);
    assert_eq!(ranges, [(0, 0), (100, 1), (120, 2), (130, 1), (200, 0)]);
    paint(&mut ranges, 150, 255, 0, max);
    assert_eq!(
        ranges,
        [(0, 0), (100, 1), (120, 2), (130, 1), (150, 0), (256, 0)]
    );
    // The whole space.
    paint(&mut ranges, 0, max, 3, max);
    assert_eq!(ranges, [(0, 3)]);
}

/// The embedded database shared by snapshots, its table built once.
static SHARED_GEO: LazyLock<Arc<GeoDb>> = LazyLock::new(|| {
    let geo = GeoDb::embedded().unwrap();
    geo.table().unwrap();
    Arc::new(geo)
});

/// Whether the addresses of measured network `net` may be answered differently under
/// `rules`, so that compiled steering leaves it to the direct path: the location table or the
/// ASN ranges split it (or the table leaves some of it to the direct path), a network rule
/// lies inside it, or an AS rule's database network is narrower.
fn splits(net: IpNet, rules: &steer::rules::Rules) -> bool {
    let t = GEO.table().unwrap();
    let asns = crate::geo::asn::AsnDb::embedded()
        .unwrap()
        .ranges()
        .unwrap();
    let (first, last) = (u128::from_ip(net.network()), u128::from_ip(net.broadcast()));
    let ids: Vec<PointId> = match net {
        IpNet::V4(_) => {
            let (a, b) = (t.v4.find(first as u32), t.v4.find(last as u32));
            t.v4.ids[a..=b].to_vec()
        }
        IpNet::V6(_) => {
            let (a, b) = (
                t.v6.find((first >> 64) as u64),
                t.v6.find((last >> 64) as u64),
            );
            t.v6.ids[a..=b].to_vec()
        }
    };
    let as_ids: Vec<PointId> = match net {
        IpNet::V4(_) => {
            let (a, b) = (asns.v4.find(first as u32), asns.v4.find(last as u32));
            asns.v4.ids[a..=b].to_vec()
        }
        IpNet::V6(_) => asns.v6.ids[asns.v6.find(first)..=asns.v6.find(last)].to_vec(),
    };
    ids.iter().any(|&id| id >= table::SPLIT)
        || ids
            .iter()
            .any(|&id| t.places[id as usize] != t.places[ids[0] as usize])
        || as_ids
            .iter()
            .any(|&id| id != as_ids[0] || id == table::DIRECT)
        || rules
            .networks
            .iter()
            .any(|(n, _)| n.prefix_len() > net.prefix_len() && net.contains(&n.network()))
        || (!rules.asns.is_empty()
            && crate::geo::asn::AsnDb::embedded()
                .unwrap()
                .lookup(net.network())
                .is_some_and(|a| a.network.prefix_len() > net.prefix_len()))
}

trait FromIp {
    fn from_ip(a: IpAddr) -> u128;
}

impl FromIp for u128 {
    fn from_ip(a: IpAddr) -> u128 {
        match a {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// With a latency map, under random health (regions down, drained, degraded) and rules:
    /// the snapshot's compiled answers, measured networks' included, are the direct path's
    /// (locate, the map's estimates, the rules), scopes and multivalue lists included; a
    /// measured network is left to the direct path only where its addresses may be answered
    /// differently; every address inside a scope, measured or not, is answered alike.
    #[test]
    fn compiled_answers_with_a_latency_map_are_the_direct_answers_and_scopes_hold(
        (points, rules) in prop::collection::vec((-60.0..70.0f64, -180.0..180.0f64), 2..6)
            .prop_flat_map(|p| { let n = p.len(); (Just(p), rules(n)) }),
        with_rules in any::<bool>(),
        health in prop::collection::vec(region_health(), 6),
        clients in prop::collection::vec((rule_client(), any::<u128>(), any::<bool>(), any::<bool>()), 32),
        rtts in prop::collection::vec(prop::collection::vec(1.0..300.0f64, 6), 32),
    ) {
        use crate::latency::{LatencyMap, Net, Origin, Settings};
        let zone = zone_with(&points, 0, false, &[], if with_rules { &rules } else { "" });
        let mut map = LatencyMap::new(Settings::default());
        // Measured networks where clients are: some the clients' own, some their neighbours.
        for ((network, seed, _, _), rtt) in clients.iter().zip(&rtts) {
            let at = match seed % 3 {
                0 => network.addr(),
                1 => {
                    let near = network.prefix_len().min(if network.addr().is_ipv4() { 20 } else { 44 });
                    inside(IpNet::new(network.addr(), near).unwrap().trunc(), *seed)
                }
                _ => continue,
            };
            for (r, region) in zone.regions.iter().enumerate() {
                for _ in 0..25 {
                    map.add(Net::of(at), &Origin::default(), &region.name, rtt[r], 1_764_540_000);
                }
            }
        }
        let metrics = crate::metrics::Metrics::default();
        let snap = crate::serving::Snapshot::new(
            crate::zone::ZoneSet::new(vec![zone]),
            SHARED_GEO.clone(),
            &metrics,
        )
        .with_health(0, HealthView { regions: health[..points.len()].to_vec(), ..HealthView::all_up() })
        .with_latency(Arc::new(map.publish(1_764_540_000)))
        .compiled();
        let zone = snap.zones.get(0).unwrap();
        let steered = &zone.steered[0];
        let mut measured_compiled = 0;
        for (network, seed, v6, resolver) in clients {
            let family = if v6 { Family::V6 } else { Family::V4 };
            let client = if resolver {
                Client::Resolver { address: network.addr(), ecs_withheld: false }
            } else {
                Client::Subnet { network }
            };
            let direct = crate::serving::answer::steer(&snap, zone, steered, client, family, 0);
            prop_assert!(direct.scope <= network.prefix_len());
            let measured = snap.latency.speaks_for(client.network());
            if let Some(c) = snap.compiled_steer(zone, 0, family, client) {
                let also = snap.also(zone, &direct.decision.also);
                prop_assert_eq!(Some(c.steering.also), also, "{:?} under\n{}", client, rules);
                prop_assert_eq!(
                    c.steering,
                    Steering::of(&direct.decision, zone, &steered.config, snap.health(zone), family, c.steering.also),
                    "{:?} under\n{}", client, rules
                );
                prop_assert_eq!(c.scope, direct.scope, "{:?} under\n{}", client, rules);
                measured_compiled += usize::from(measured);
            } else if measured {
                let net = Net::within(client.network()).unwrap().prefix();
                prop_assert!(splits(net, &steered.config.rules), "{:?} under\n{}", client, rules);
            } else {
                // Only IPv6 alias space (6to4, Teredo) is left to the direct path.
                prop_assert!(network.addr().is_ipv6(), "{}", network);
            }
            if direct.scope > 0 && direct.scope < network.prefix_len() {
                let block = IpNet::new(network.addr(), direct.scope).unwrap().trunc();
                for k in 0..8u128 {
                    let addr = inside(block, seed.rotate_left(k as u32 * 16) ^ k);
                    let host = IpNet::new(addr, network.prefix_len()).unwrap().trunc();
                    let there = crate::serving::answer::steer(&snap, zone, steered, Client::Subnet { network: host }, family, 0);
                    prop_assert_eq!(
                        (there.decision.chosen, &there.decision.also),
                        (direct.decision.chosen, &direct.decision.also),
                        "{} in scope {} of {}", host, block, network
                    );
                }
            }
        }
        // Some measured clients every case: the table answers them.
        prop_assert!(measured_compiled > 0 || with_rules, "no measured network compiled");
    }
}

#[test]
fn the_rules_zone_compiles_with_scopes_its_rules_justify() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/zones-rules/rules.test.toml");
    let zone = crate::zone::load_file(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
    let view = HealthView::all_up();
    let compiled = compile(&zone, &view, &Arc::default(), || {
        GEO.table().map_err(str::to_owned)
    })
    .unwrap();
    let region = |name: &str| zone.regions.iter().position(|r| r.name == name);
    let www = zone
        .steered
        .iter()
        .position(|s| s.name.to_string().starts_with("www."))
        .unwrap();
    let steer = |net: &str| {
        let network: IpNet = net.parse().unwrap();
        let family = Family::of(&network.addr());
        let c = compiled
            .steer(www, family, Client::Subnet { network })
            .unwrap();
        (c.steering.region, c.scope)
    };
    // A network rule holds for its whole network, whatever the places inside it.
    assert_eq!(steer("1.1.1.0/24"), (region("eu-central"), 24));
    assert_eq!(steer("1.1.1.77/32"), (region("eu-central"), 24));
    // An AS rule holds for the ASN database's range.
    let (google, scope) = steer("8.8.8.8/32");
    assert_eq!(google, region("us-west"));
    assert!((8..=24).contains(&scope), "{scope}");
    // A split's outcome is claimed for no more than the /24 it hashes.
    for net in ["81.2.69.0/28", "81.2.69.160/32", "2a01:4b00:1234::/64"] {
        let (r, scope) = steer(net);
        let floor = if net.contains(':') { 48 } else { 24 };
        assert!(scope >= floor, "{net}: /{scope}");
        assert!(
            r == region("eu-west") || r == region("eu-central"),
            "{net}: {r:?}"
        );
    }
    // A resolver's own address discloses no subnet: scope 0.
    let resolver = Client::Resolver {
        address: "8.8.8.8".parse().unwrap(),
        ecs_withheld: false,
    };
    assert_eq!(compiled.steer(www, Family::V4, resolver).unwrap().scope, 0);
    // No memory per client: the tables only, A's runs serving AAAA (all up, both families).
    eprintln!("{} bytes", compiled.bytes());
    assert!(compiled.bytes() < 32 << 20, "{} bytes", compiled.bytes());
}

/// A published spill state of one region: shedding a share (and then taking none), or taking
/// a share of others' shed networks.
fn region_spill() -> impl Strategy<Value = RegionSpill> {
    (prop::bool::weighted(0.4), 0.0..=1.0f64, 0.0..=1.0f64).prop_map(|(sheds, shed, accept)| {
        if sheds {
            RegionSpill { shed, accept: 0.0 }
        } else {
            RegionSpill { shed: 0.0, accept }
        }
    })
}

/// What a client's answer is, as DNS gives it: the regions answering (best first) and the TTL.
fn spilled_answer(
    a: &crate::serving::answer::SteeredAnswer,
) -> (Option<RegionId>, &[RegionId], u32) {
    (a.decision.chosen, &a.decision.also, a.ttl)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Under random published spill states (shares shed, shares accepted), with or without
    /// rules (multivalue among them): whichever path answers a client of a compiled snapshot
    /// (the tables, or the direct path for a shedding region's clients), the answer is the
    /// uncompiled snapshot's (locate, rules, spill), the compiled answer's steering and scope
    /// are the ones `answer::steer` sends, and every client network inside the scope gets the
    /// same answer.
    #[test]
    fn spill_states_leave_compiled_and_direct_answers_equal_and_scopes_hold(
        (points, rules) in prop::collection::vec((-60.0..70.0f64, -180.0..180.0f64), 2..6)
            .prop_flat_map(|p| { let n = p.len(); (Just(p), rules(n)) }),
        with_rules in any::<bool>(),
        health in prop::collection::vec(region_health(), 6),
        spill in prop::collection::vec(region_spill(), 6),
        clients in prop::collection::vec((rule_client(), any::<u128>(), any::<bool>()), 32),
    ) {
        let zone = zone_with(&points, 0, false, &[], if with_rules { &rules } else { "" });
        let health = health[..points.len()].to_vec();
        let spill = Arc::new(vec![spill[..points.len()].to_vec()]);
        let metrics = crate::metrics::Metrics::default();
        let direct = crate::serving::Snapshot::new(
            crate::zone::ZoneSet::new(vec![zone]),
            SHARED_GEO.clone(),
            &metrics,
        )
        .with_health(0, HealthView { regions: health, ..HealthView::all_up() })
        .with_spill(spill);
        let compiled = direct.renewed().compiled();
        prop_assert!(compiled.steering(direct.zones.get(0).unwrap()).is_some());
        let zone = compiled.zones.get(0).unwrap();
        let steered = &zone.steered[0];
        let steer = |snap, network| {
            let client = Client::Subnet { network };
            move |family| crate::serving::answer::steer(snap, zone, steered, client, family, 0)
        };
        for (network, seed, v6) in clients {
            let family = if v6 { Family::V6 } else { Family::V4 };
            let answered = steer(&compiled, network)(family);
            let reference = steer(&direct, network)(family);
            prop_assert_eq!(spilled_answer(&answered), spilled_answer(&reference), "{} under\n{}", network, rules);
            prop_assert!(answered.scope <= network.prefix_len());
            if let Some(c) = compiled.compiled_steer(zone, 0, family, Client::Subnet { network }) {
                let also = compiled.also(zone, &answered.decision.also);
                prop_assert_eq!(c.steering.region, answered.decision.chosen, "{}", network);
                prop_assert_eq!(Some(c.steering.also), also, "{}", network);
                prop_assert_eq!(c.steering.ttl, answered.ttl, "{}", network);
                prop_assert_eq!(c.scope, answered.scope, "{}", network);
            }
            if answered.scope > 0 && answered.scope < network.prefix_len() {
                let block = IpNet::new(network.addr(), answered.scope).unwrap().trunc();
                for k in 0..8u128 {
                    let addr = inside(block, seed.rotate_left(k as u32 * 16) ^ k);
                    let host = IpNet::new(addr, network.prefix_len()).unwrap().trunc();
                    for snap in [&direct, &compiled] {
                        let there = steer(snap, host)(family);
                        prop_assert_eq!(
                            spilled_answer(&there), spilled_answer(&answered),
                            "{} in scope {} of {} under\n{}", host, block, network, rules
                        );
                    }
                }
            }
        }
    }
}
