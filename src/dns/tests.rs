use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet as EcsOption, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use proptest::prelude::*;

use super::*;
use crate::geo::GeoDb;
use crate::steer::spill::RegionSpill;
use crate::steer::{HealthView, RegionHealth, RegionState};
use crate::zone::{self, ZoneSet};

fn geo() -> Arc<GeoDb> {
    static GEO: OnceLock<Arc<GeoDb>> = OnceLock::new();
    GEO.get_or_init(|| Arc::new(GeoDb::embedded().expect("embedded db")))
        .clone()
}

fn metrics() -> &'static Arc<Metrics> {
    static METRICS: OnceLock<Arc<Metrics>> = OnceLock::new();
    METRICS.get_or_init(Arc::default)
}

/// The shipped zones, compiled as a running server serves them.
fn shipped() -> Snapshot {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
    let zones = zone::load_dir(&dir).expect("shipped zones load");
    Snapshot::new(zones, geo(), metrics()).compiled()
}

fn state() -> &'static Snapshot {
    static STATE: OnceLock<Snapshot> = OnceLock::new();
    STATE.get_or_init(shipped)
}

/// Services with a cookie secret of their own and the default amplification limit.
fn services_with(amplification: u16) -> Services {
    Services::new(
        cookie::Cookies::new(*b"meridian-testing", amplification),
        None,
        metrics().clone(),
    )
}

/// Services with counters of their own (signatures included), for a test that counts.
fn services_apart() -> Services {
    Services::new(
        cookie::Cookies::new(*b"meridian-testing", cookie::DEFAULT_AMPLIFICATION),
        None,
        Arc::new(Metrics::default()),
    )
}

fn services() -> &'static Services {
    static SERVICES: OnceLock<Services> = OnceLock::new();
    SERVICES.get_or_init(|| services_with(cookie::DEFAULT_AMPLIFICATION))
}

/// [`handle`] with the test services, at the current second.
fn ask_raw(
    snapshot: &Snapshot,
    packet: &[u8],
    src: SocketAddr,
    transport: Transport,
) -> Option<Vec<u8>> {
    handle(snapshot, services(), packet, src, transport, cookie::now())
}

/// The general path's bytes alone, without the cache.
fn general_raw(
    snapshot: &Snapshot,
    packet: &[u8],
    src: SocketAddr,
    transport: Transport,
) -> Option<Vec<u8>> {
    let at = At {
        src,
        transport,
        now: cookie::now(),
    };
    general::answer(snapshot, services(), packet, at).map(|a| a.bytes)
}

const RESOLVER: &str = "127.0.0.1:5300";

thread_local! {
    /// Caches as a UDP loop owns them, apart from the thread's own that `handle` uses: one
    /// set per health state of [`oracle_states`], so that each stays warm with the answers
    /// to earlier cases, as a serving thread's caches are.
    static UDP_CACHES: std::cell::RefCell<Vec<FastCaches>> =
        std::cell::RefCell::new((0..ORACLE_STATES).map(|_| FastCaches::default()).collect());
}

fn ask(name: &str, rtype: RecordType, ecs: Option<(IpAddr, u8)>) -> Message {
    let mut q = Message::query();
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    if let Some((addr, prefix)) = ecs {
        edns.options_mut()
            .insert(EdnsOption::Subnet(EcsOption::new(addr, prefix, 0)));
    }
    q.set_edns(edns);
    let bytes = q.to_vec().unwrap();
    let src: SocketAddr = RESOLVER.parse().unwrap();
    let out = ask_raw(state(), &bytes, src, Transport::Udp).expect("an answer");
    Message::from_vec(&out).unwrap()
}

fn answer_and_scope(resp: &Message) -> (Vec<IpAddr>, u8) {
    let addrs = resp
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    let scope = match resp.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet)) {
        Some(EdnsOption::Subnet(s)) => s.scope_prefix(),
        _ => panic!("response without ECS"),
    };
    (addrs, scope)
}

#[test]
fn packets_without_a_header_or_with_qr_set_get_no_answer() {
    let src: SocketAddr = RESOLVER.parse().unwrap();
    assert_eq!(ask_raw(state(), &[0u8; 11], src, Transport::Udp), None);
    let mut response = Message::query();
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    let bytes = response.to_vec().unwrap();
    assert_eq!(ask_raw(state(), &bytes, src, Transport::Udp), None);
}

#[test]
fn rfc1035_undecodable_query_is_formerr_with_its_id() {
    let src: SocketAddr = RESOLVER.parse().unwrap();
    // Header claims one question; the question is cut short.
    let packet = [
        0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'w',
    ];
    let out = ask_raw(state(), &packet, src, Transport::Udp).unwrap();
    assert_eq!(&out[..2], &[0xAB, 0xCD]);
    assert_eq!(out[2] & 0x80, 0x80, "QR");
    assert_eq!(out[2] & 0x01, 0x01, "RD copied");
    assert_eq!(out[3] & 0x0F, 1, "FORMERR");
}

#[test]
fn rfc8906_unknown_opcode_gets_notimp_with_the_header_alone() {
    let src: SocketAddr = RESOLVER.parse().unwrap();
    // RFC 8906 §3.1.4: "while new opcodes will most probably use the current layout structure
    // for the rest of the message, there is no requirement that anything other than the DNS
    // header match." So a body that is no question, and flags whose meaning the opcode does
    // not define, are echoed by nothing but NOTIMP.
    let ordinary = packet(
        0x1234,
        "example.com.",
        RecordType::SOA,
        Some((true, None)),
        None,
    );
    let garbage = [&ordinary[..12], &[0xff, 0x01, 0x02][..]].concat();
    for opcode in [1u8, 2, 3, 4, 5, 6, 15] {
        for body in [&ordinary, &garbage] {
            let mut p = body.clone();
            // Opcode, AA, TC and RD; Z, AD and CD.
            p[2] = (opcode << 3) | 0x07;
            p[3] = 0x70;
            let out = ask_raw(state(), &p, src, Transport::Udp).expect("an answer");
            assert_eq!(
                out,
                [0x12, 0x34, 0x80 | (opcode << 3), 4, 0, 0, 0, 0, 0, 0, 0, 0],
                "opcode {opcode}: ID, QR, the opcode and NOTIMP; nothing else"
            );
            let tcp = ask_raw(state(), &p, src, Transport::Tcp).expect("an answer");
            assert_eq!(tcp, out);
        }
    }
}

#[test]
fn rfc7871_source_prefix_zero_answers_by_resolver_with_scope_zero() {
    let resp = ask(
        "www.example.com.",
        RecordType::A,
        Some((IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
    );
    let (addrs, scope) = answer_and_scope(&resp);
    // 127.0.0.1 is unknown to GeoIP: the default (first) region, us-east.
    assert_eq!(addrs, vec![IpAddr::from([192, 0, 2, 10])]);
    assert_eq!(scope, 0);
}

fn v4_net() -> impl Strategy<Value = (Ipv4Addr, u8)> {
    (any::<u32>(), 16u8..=24).prop_map(|(bits, prefix)| {
        let net = ipnet::Ipv4Net::new(Ipv4Addr::from(bits), prefix)
            .unwrap()
            .trunc();
        (net.addr(), prefix)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// RFC 7871 §7.3.1: a resolver caches the answer for the whole scope, so every client
    /// inside the scope must get the same answer; and the scope never exceeds the source.
    #[test]
    fn rfc7871_every_client_inside_the_scope_gets_the_same_answer(
        (addr, prefix) in v4_net(),
        other in any::<u32>(),
        v6 in any::<bool>(),
    ) {
        let rtype = if v6 { RecordType::AAAA } else { RecordType::A };
        let resp = ask("www.example.com.", rtype, Some((IpAddr::V4(addr), prefix)));
        let (addrs, scope) = answer_and_scope(&resp);
        prop_assert!(scope <= prefix);
        prop_assert!(scope > 0, "location-dependent answers never get scope 0");
        // Another client network of the same length inside the scope.
        let scope_net = ipnet::Ipv4Net::new(addr, scope).unwrap().trunc();
        let host_bits = 32 - u32::from(scope);
        let offset = if host_bits == 0 { 0 } else { other & (u32::MAX >> (32 - host_bits)) };
        let inside = ipnet::Ipv4Net::new(Ipv4Addr::from(u32::from(scope_net.addr()) | offset), prefix)
            .unwrap()
            .trunc();
        let again = ask("www.example.com.", rtype, Some((IpAddr::V4(inside.addr()), prefix)));
        let (addrs2, _) = answer_and_scope(&again);
        prop_assert_eq!(addrs, addrs2, "{}/{} scope /{} vs {}", addr, prefix, scope, inside);
    }
}

/// A query packet: `name` (its case as given), `rtype`, optional EDNS (DO, ECS, COOKIE).
fn packet(
    id: u16,
    name: &str,
    rtype: RecordType,
    edns: Option<(bool, Option<(IpAddr, u8)>)>,
    cookie: Option<Vec<u8>>,
) -> Vec<u8> {
    let mut q = Message::query();
    q.metadata.id = id;
    q.metadata.recursion_desired = id.is_multiple_of(2);
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some((dnssec_ok, ecs)) = edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.set_dnssec_ok(dnssec_ok);
        if let Some((addr, prefix)) = ecs {
            e.options_mut()
                .insert(EdnsOption::Subnet(EcsOption::new(addr, prefix, 0)));
        }
        if let Some(c) = cookie {
            e.options_mut().insert(EdnsOption::Unknown(cookie::CODE, c));
        }
        q.set_edns(e);
    }
    q.to_vec().unwrap()
}

const CLIENT_COOKIE: [u8; 8] = [0x24, 0x64, 0xc4, 0xab, 0xcf, 0x10, 0xc9, 0x57];

/// The COOKIE option a query sends: none, a client cookie alone, one with the server cookie
/// the test services gave `src`, or one with a forged server cookie.
fn query_cookie(kind: u8, src: SocketAddr) -> Option<Vec<u8>> {
    cookie_for(services(), kind, src)
}

fn cookie_for(services: &Services, kind: u8, src: SocketAddr) -> Option<Vec<u8>> {
    let client = cookie::parse(&CLIENT_COOKIE).unwrap();
    match kind {
        1 => Some(CLIENT_COOKIE.to_vec()),
        2 => Some(
            services
                .cookies
                .reply(&client, src.ip(), cookie::now())
                .option
                .to_vec(),
        ),
        3 => Some([&CLIENT_COOKIE[..], &[1, 0, 0, 0], &[9; 12]].concat()),
        _ => None,
    }
}

/// The response's COOKIE option, which must echo the client cookie with a server cookie that
/// verifies for `src`; taken out of the message, since its timestamp may tick between answers.
fn take_cookie(m: &mut Message, src: SocketAddr) -> Option<Vec<u8>> {
    let edns = m.edns.as_mut()?;
    let Some(EdnsOption::Unknown(_, body)) = edns.option(EdnsCode::Cookie).cloned() else {
        return None;
    };
    edns.options_mut().remove(EdnsCode::Cookie);
    let sent = cookie::parse(&body).unwrap();
    assert_eq!(sent.client, CLIENT_COOKIE);
    assert!(services().cookies.verifies(&sent, src.ip(), cookie::now()));
    Some(body[..8].to_vec())
}

/// The shipped zones, the fuzz zones (unequal weights, several answers, failover, static
/// fallbacks, wildcards, CNAME chains) and the rules zone (network and AS rules, a fence, a
/// split, multivalue; plus a multivalue name a fence narrows to one region for some
/// clients), each under health states from all up to all down, and with spillover published.
fn oracle_states() -> &'static [Snapshot] {
    static STATES: OnceLock<Vec<Snapshot>> = OnceLock::new();
    STATES.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut zones = Vec::new();
        let dirs = [
            root.join("zones"),
            root.join("fuzz/zones"),
            root.join("bench/zones-rules"),
        ];
        for dir in dirs {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            paths.sort();
            for path in paths {
                let mut text = std::fs::read_to_string(&path).unwrap();
                if path.ends_with("fuzz.test.toml") {
                    // Signed (Ed25519: deterministic signatures), so that DO=1 answers of
                    // every kind are held to the general path too.
                    text = text.replacen(
                        "zone = \"fuzz.test.\"\n",
                        "zone = \"fuzz.test.\"\ndnssec = { algorithm = \"ed25519\" }\n",
                        1,
                    );
                }
                if path.ends_with("rules.test.toml") {
                    text += "[steered.resident]\nregions = [\"eu-west\", \"us-east\", \"ap-southeast\"]\nmultivalue = 2\n\n[[steered.resident.fence]]\ncontinents = [\"EU\"]\nregions = [\"eu-west\"]\n";
                }
                zones.push(zone::load_file(&path, &text).unwrap());
            }
        }
        let mut zones = ZoneSet::new(zones);
        attach_test_keys(&mut zones);
        let base = Snapshot::new(zones, geo(), metrics());
        let index = |origin: &str| {
            let name = hickory_proto::rr::LowerName::new(&Name::from_ascii(origin).unwrap());
            base.zones.find(&name).unwrap().index
        };
        let (example, fuzz, down, rules) = (
            index("example.com."),
            index("fuzz.test."),
            index("down.test."),
            index("rules.test."),
        );
        let region = |state, endpoints_up: Vec<bool>, degradation_ms, over_limit| RegionHealth {
            state,
            endpoints_up,
            degradation_ms,
            over_limit,
            in_trouble: state != RegionState::Up || over_limit,
        };
        let up = |n| RegionHealth::up(n);
        let view = |regions| HealthView {
            regions,
            ..Default::default()
        };
        use RegionState::{Down, Drained, Up};
        let drained = base
            .with_health(
                example,
                view(vec![up(2), region(Drained, vec![true; 2], 0.0, false)]),
            )
            .with_health(
                fuzz,
                view(vec![region(Up, vec![true, false, true], 0.0, false)]),
            )
            .with_health(
                rules,
                view(vec![up(2), up(2), region(Drained, vec![true; 2], 0.0, false)]),
            );
        let troubled = base
            .with_health(
                example,
                view(vec![region(Down, vec![false; 2], 0.0, false)]),
            )
            .with_health(
                fuzz,
                view(vec![up(3), region(Up, vec![true; 5], 900.0, true), up(1)]),
            )
            .with_health(
                rules,
                view(vec![
                    region(Down, vec![false; 2], 0.0, false),
                    up(2),
                    up(2),
                    region(Up, vec![true; 2], 900.0, true),
                ]),
            );
        let degraded = base
            .with_health(
                example,
                view(vec![up(2), up(2), region(Up, vec![true; 2], 120.0, false)]),
            )
            .with_health(
                down,
                view(vec![
                    region(Down, vec![false; 2], 0.0, false),
                    region(Drained, vec![true], 0.0, false),
                ]),
            )
            .with_health(
                rules,
                view(vec![
                    up(2),
                    up(2),
                    up(2),
                    region(Up, vec![true, false], 120.0, false),
                ]),
            );
        let all_down = base.with_all_health(Arc::new(
            base.zones
                .by_index()
                .into_iter()
                .map(|z| {
                    let regions = z
                        .regions
                        .iter()
                        .map(|r| region(Down, vec![false; r.endpoints.len()], 0.0, false));
                    view(regions.collect())
                })
                .collect(),
        ));
        // Spillover published: each zone's first region sheds 60 % of its clients (they take
        // the direct path), the others take half of what is shed.
        let spilled = base.with_spill(Arc::new(
            base.zones
                .by_index()
                .into_iter()
                .map(|z| {
                    (0..z.regions.len())
                        .map(|r| match r {
                            0 => RegionSpill {
                                shed: 0.6,
                                accept: 0.0,
                            },
                            _ => RegionSpill {
                                shed: 0.0,
                                accept: 0.5,
                            },
                        })
                        .collect()
                })
                .collect(),
        ));
        // The latency map measured the networks of the oracle's clients: as published, and
        // with a region drained since.
        let latency = Arc::new(oracle_latency(&base));
        let measured = base.with_latency(latency.clone());
        let measured_drained = drained.with_latency(latency);
        // Each state as served before the compiler has run (the direct path) and after.
        let states = [
            base,
            drained,
            troubled,
            degraded,
            all_down,
            spilled,
            measured,
            measured_drained,
        ]
            .into_iter()
            .flat_map(|s| {
                let compiled = s.with_all_health(s.health.clone()).compiled();
                [s, compiled]
            })
            .collect::<Vec<_>>();
        assert_eq!(states.len(), ORACLE_STATES, "every state has its caches");
        states
    })
}

/// How many snapshots [`oracle_states`] gives.
const ORACLE_STATES: usize = 16;

/// Networks the oracle's latency map measured: the public sources' and some that
/// [`oracle_ecs`] sends.
const MEASURED: [&str; 8] = [
    "81.2.69.0/24",
    "2001:4860:4860::/48",
    "1.1.1.0/24",
    "8.8.8.0/24",
    "91.0.0.0/24",
    "23.32.5.0/24",
    "2a00:1450:4001::/48",
    "2003:e0::/48",
];

/// A published map of [`MEASURED`] by every region name of `state`'s zones, with RTTs that
/// contradict geography for some of them.
fn oracle_latency(state: &Snapshot) -> crate::latency::LatencyTable {
    use crate::latency::{LatencyMap, Net, Origin, Settings};
    const T0: u64 = 1_764_540_000;
    let mut regions: Vec<&str> = state
        .zones
        .zones()
        .flat_map(|z| z.regions.iter().map(|r| r.name.as_str()))
        .collect();
    regions.sort_unstable();
    regions.dedup();
    let mut map = LatencyMap::new(Settings::default());
    for (i, net) in MEASURED.iter().enumerate() {
        let net: ipnet::IpNet = net.parse().unwrap();
        for (r, region) in regions.iter().enumerate() {
            let rtt = 10.0 + ((i * 7 + r * 31) % 13) as f64 * 15.0;
            map.add_weighted(
                Net::of(net.addr()),
                &Origin::default(),
                region,
                rtt,
                T0,
                25.0,
            );
        }
    }
    map.publish(T0)
}

const ORACLE_NAMES: [&str; 23] = [
    "multi.rules.test.",
    "resident.rules.test.",
    "www.rules.test.",
    "www.example.com.",
    "WwW.ExAmPlE.CoM.",
    "static.example.com.",
    "alias.example.com.",
    "nope.example.com.",
    "b.example.com.",
    "lab.example.com.",
    "x.lab.example.com.",
    "example.com.",
    "big.example.com.",
    "weighted.fuzz.test.",
    "FailOver.fuzz.test.",
    "chain.fuzz.test.",
    "a.wild.fuzz.test.",
    "loop1.fuzz.test.",
    "outside.fuzz.test.",
    "x.sub.fuzz.test.",
    "all.down.test.",
    "fixed.down.test.",
    "elsewhere.test.",
];
const ORACLE_TYPES: [RecordType; 8] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::TXT,
    RecordType::NS,
    RecordType::MX,
    RecordType::SOA,
    RecordType::CNAME,
    RecordType::SRV,
];
/// UDP payload sizes a query may advertise: below the minimum, classic, ours, more.
const PAYLOADS: [u16; 5] = [100, 512, 1232, 1400, 4096];

/// A client address: loopback or public, IPv4 or IPv6.
fn oracle_source(kind: u8, port: u16) -> SocketAddr {
    let ip: IpAddr = match kind {
        0 => Ipv4Addr::LOCALHOST.into(),
        1 => Ipv4Addr::new(81, 2, 69, 1).into(),
        2 => Ipv6Addr::LOCALHOST.into(),
        _ => "2001:4860:4860::8888".parse::<Ipv6Addr>().unwrap().into(),
    };
    SocketAddr::new(ip, port)
}

/// An ECS subnet: none, IPv4, IPv6, or source prefix 0.
fn oracle_ecs() -> impl Strategy<Value = Option<(IpAddr, u8)>> {
    prop_oneof![
        Just(None),
        // Inside a measured network (or naming one whole).
        (
            prop::sample::select(MEASURED.to_vec()),
            any::<u128>(),
            0u8..=16
        )
            .prop_map(|(net, bits, longer)| {
                let net: ipnet::IpNet = net.parse().unwrap();
                let prefix = net.prefix_len() + longer;
                let addr = match net {
                    ipnet::IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(
                        u32::from(n.network()) | (bits as u32 & 0xff),
                    )),
                    ipnet::IpNet::V6(n) => IpAddr::V6(Ipv6Addr::from(
                        u128::from(n.network()) | (bits & (u128::MAX >> 48)),
                    )),
                };
                let prefix = prefix.min(net.max_prefix_len());
                Some((
                    ipnet::IpNet::new(addr, prefix).unwrap().trunc().addr(),
                    prefix,
                ))
            }),
        v4_net().prop_map(|(a, p)| Some((IpAddr::V4(a), p))),
        (any::<u128>(), 32u8..=64).prop_map(|(bits, prefix)| {
            let net = ipnet::Ipv6Net::new(Ipv6Addr::from(bits), prefix)
                .unwrap()
                .trunc();
            Some((IpAddr::V6(net.addr()), prefix))
        }),
        Just(Some((IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))),
    ]
}

/// Sets the query's header flags that a response may depend on or must ignore: AA, RD, RA,
/// Z, AD and CD, one bit of `flags` each.
fn set_flags(packet: &mut [u8], flags: u8) {
    let bit = |n: u8, value: u8| if flags & (1 << n) != 0 { value } else { 0 };
    packet[2] = (packet[2] & !0x05) | bit(0, 0x04) | bit(1, 0x01);
    packet[3] = (packet[3] & !0xF0) | bit(2, 0x80) | bit(3, 0x40) | bit(4, 0x20) | bit(5, 0x10);
}

/// One query of an oracle case, as the generator picks it.
#[derive(Debug, Clone)]
struct OracleQuery {
    id: u16,
    /// Which of the case's names, and a type: A or AAAA for the most part.
    name: usize,
    rtype: usize,
    /// With EDNS: DO, the payload's index in [`PAYLOADS`], and whether the case's ECS goes.
    edns: Option<(bool, usize, bool)>,
    flags: u8,
    port: u16,
    tcp: bool,
    cookie: u8,
}

fn oracle_query() -> impl Strategy<Value = OracleQuery> {
    (
        any::<u16>(),
        0..3usize,
        prop_oneof![4 => 0..2usize, 1 => 0..ORACLE_TYPES.len()],
        prop::option::of((any::<bool>(), 0..PAYLOADS.len(), any::<bool>())),
        0u8..64,
        // Few ports, so that rotations repeat.
        1024u16..1028,
        any::<bool>(),
        0..4u8,
    )
        .prop_map(
            |(id, name, rtype, edns, flags, port, tcp, cookie)| OracleQuery {
                id,
                name,
                rtype,
                edns,
                flags,
                port,
                tcp,
                cookie,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The fast path answers as the general path does, on its first (filling) and its later
    /// (cached) answers, and with caches warm from the queries before (one client, as a
    /// resolver asks), over UDP and TCP, under every health state, with and without a latency
    /// map that measured the clients' networks, for IPv4 and IPv6 clients and ECS subnets, every query flag and payload size: the same header, question (in the
    /// query's case), records and OPT. (Names that compress against the question may take its
    /// case in a cached answer; names compare without case, as DNS does.)
    #[test]
    fn fast_path_and_general_path_give_identical_answers(
        health in 0..ORACLE_STATES,
        source in 0u8..4,
        ecs in oracle_ecs(),
        names in [0..ORACLE_NAMES.len(), 0..ORACLE_NAMES.len(), 0..ORACLE_NAMES.len()],
        queries in prop::collection::vec(oracle_query(), 1..10),
    ) {
        oracle_case(health, source, ecs, names, &queries)?;
    }

    /// The same, for the names with multivalue answers (several regions' endpoints, or one
    /// region's where a fence allows one) over random ECS clients, IPv4 and IPv6: a cached
    /// multivalue answer serves exactly the clients whose answer has the same regions.
    #[test]
    fn multivalue_answers_are_identical_on_the_fast_and_general_paths(
        health in 0..ORACLE_STATES,
        source in 0u8..4,
        ecs in oracle_ecs(),
        names in [0..2usize, 0..2usize, 0..2usize],
        queries in prop::collection::vec(oracle_query(), 1..10),
    ) {
        oracle_case(health, source, ecs, names, &queries)?;
    }
}

/// One oracle case: `queries` (of `names`, indices into [`ORACLE_NAMES`]) from one client
/// under health state `health`, each answered by the general path and by the fast path
/// (filling, cached, and with a UDP loop's warm caches).
fn oracle_case(
    health: usize,
    source: u8,
    ecs: Option<(IpAddr, u8)>,
    names: [usize; 3],
    queries: &[OracleQuery],
) -> Result<(), TestCaseError> {
    let snapshot = &oracle_states()[health];
    // Twice over: the second round finds decisions and answers the first one cached.
    for query in queries.iter().chain(queries) {
        let src = oracle_source(source, query.port);
        let sent = query_cookie(query.cookie, src).filter(|_| query.edns.is_some());
        let mut q = Message::query();
        q.metadata.id = query.id;
        q.add_query(Query::query(
            Name::from_ascii(ORACLE_NAMES[names[query.name]]).unwrap(),
            ORACLE_TYPES[query.rtype],
        ));
        if let Some((dnssec_ok, payload, with_ecs)) = query.edns {
            let mut e = Edns::new();
            e.set_max_payload(PAYLOADS[payload]);
            e.set_dnssec_ok(dnssec_ok);
            if let Some((addr, prefix)) = ecs.filter(|_| with_ecs) {
                e.options_mut()
                    .insert(EdnsOption::Subnet(EcsOption::new(addr, prefix, 0)));
            }
            if let Some(c) = sent.clone() {
                e.options_mut().insert(EdnsOption::Unknown(cookie::CODE, c));
            }
            q.set_edns(e);
        }
        let mut bytes = q.to_vec().unwrap();
        set_flags(&mut bytes, query.flags);
        let transport = if query.tcp {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let general = general_raw(snapshot, &bytes, src, transport);
        let first = ask_raw(snapshot, &bytes, src, transport);
        let cached = ask_raw(snapshot, &bytes, src, transport);
        // As a UDP loop answers, with warm caches of its own: parsed and prefetched first.
        let warm = UDP_CACHES.with_borrow_mut(|caches| {
            let caches = &mut caches[health];
            let parsed = prefetch(caches, snapshot, &bytes, src);
            let at = At {
                src,
                transport,
                now: cookie::now(),
            };
            let mut out = Vec::new();
            handle_parsed(caches, snapshot, services(), &bytes, parsed, at, &mut out).then_some(out)
        });
        let decode = |b: &Option<Vec<u8>>| {
            b.as_ref().map(|b| {
                let mut m = Message::from_vec(b).unwrap();
                let echoed = take_cookie(&mut m, src);
                assert_eq!(echoed.is_some(), sent.is_some(), "a cookie for a cookie");
                m
            })
        };
        let general = decode(&general);
        for answer in [decode(&first), decode(&cached), decode(&warm)] {
            prop_assert_eq!(&answer, &general, "{:?}", query);
            if let (Some(a), Some(g)) = (&answer, &general) {
                prop_assert!(a.queries[0].name().eq_case(g.queries[0].name()));
            }
        }
    }
    Ok(())
}

fn decode(out: &[u8]) -> Message {
    Message::from_vec(out).unwrap()
}

#[test]
fn rfc7873_a_malformed_cookie_is_formerr_and_a_well_formed_one_is_answered_in_kind() {
    let src: SocketAddr = RESOLVER.parse().unwrap();
    for len in [1, 7, 12, 41] {
        let bytes = packet(
            7,
            "www.example.com.",
            RecordType::A,
            Some((false, None)),
            Some(vec![3; len]),
        );
        let out = decode(&ask_raw(state(), &bytes, src, Transport::Udp).unwrap());
        assert_eq!(
            out.metadata.response_code,
            ResponseCode::FormErr,
            "{len} octets"
        );
    }
    let bytes = packet(
        7,
        "www.example.com.",
        RecordType::A,
        Some((false, None)),
        query_cookie(1, src),
    );
    let mut out = decode(&ask_raw(state(), &bytes, src, Transport::Udp).unwrap());
    assert_eq!(out.metadata.response_code, ResponseCode::NoError);
    assert_eq!(take_cookie(&mut out, src), Some(CLIENT_COOKIE.to_vec()));
}

#[test]
fn rfc7873_a_query_with_a_cookie_and_no_question_gets_a_server_cookie() {
    let src: SocketAddr = RESOLVER.parse().unwrap();
    let mut q = Message::query();
    let mut e = Edns::new();
    e.options_mut()
        .insert(EdnsOption::Unknown(cookie::CODE, CLIENT_COOKIE.to_vec()));
    q.set_edns(e);
    let mut out = decode(&ask_raw(state(), &q.to_vec().unwrap(), src, Transport::Udp).unwrap());
    assert_eq!(out.metadata.response_code, ResponseCode::NoError);
    assert!(out.queries.is_empty());
    assert!(take_cookie(&mut out, src).is_some());
    // Without a cookie, a query without a question is still malformed.
    let mut q = Message::query();
    q.set_edns(Edns::new());
    let out = decode(&ask_raw(state(), &q.to_vec().unwrap(), src, Transport::Udp).unwrap());
    assert_eq!(out.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn without_a_valid_cookie_a_udp_answer_larger_than_the_factor_allows_is_truncated() {
    let src: SocketAddr = RESOLVER.parse().unwrap();
    // The apex NS answer with glue is 2.8 times its query: over a factor of 2.
    let state = shipped();
    let services = services_with(2);
    let ask = |bytes: &[u8], transport| {
        handle(&state, &services, bytes, src, transport, cookie::now()).unwrap()
    };
    for kind in 0..4u8 {
        let bytes = packet(
            9,
            "example.com.",
            RecordType::NS,
            Some((false, None)),
            cookie_for(&services, kind, src),
        );
        // Twice: the general path, then the fast path's cached answer.
        let udp = ask(&bytes, Transport::Udp);
        let again = ask(&bytes, Transport::Udp);
        assert_eq!(udp.len(), again.len(), "fast path as the general path");
        let tcp = ask(&bytes, Transport::Tcp);
        let (u, t) = (decode(&udp), decode(&tcp));
        assert!(
            !t.metadata.truncation && t.answers.len() > 1,
            "TCP is never limited"
        );
        if kind == 2 {
            assert!(!u.metadata.truncation, "a valid cookie proves the source");
            assert_eq!(u.answers, t.answers);
        } else {
            assert!(u.metadata.truncation, "cookie kind {kind}");
            assert!(u.answers.is_empty());
            assert!(
                udp.len() <= 2 * bytes.len(),
                "{} > 2 x {}",
                udp.len(),
                bytes.len()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// No UDP response to a query without a valid cookie is larger than the default limit
    /// (8) times the query, whatever is asked: a spoofed query is amplified no more.
    #[test]
    fn cookieless_udp_responses_amplify_at_most_the_default_limit(
        id in any::<u16>(),
        name in 0..ORACLE_NAMES.len(),
        rtype in 0..ORACLE_TYPES.len(),
        edns in 0..3u8,
        cookie in 0..4u8,
        (addr, prefix) in v4_net(),
    ) {
        let src: SocketAddr = RESOLVER.parse().unwrap();
        let e = match edns {
            0 => None,
            1 => Some((false, None)),
            _ => Some((true, Some((IpAddr::V4(addr), prefix)))),
        };
        let sent = query_cookie(cookie, src).filter(|_| e.is_some() && cookie != 2);
        let bytes = packet(id, ORACLE_NAMES[name], ORACLE_TYPES[rtype], e, sent);
        for _ in 0..2 {
            let out = ask_raw(state(), &bytes, src, Transport::Udp).unwrap();
            let limit = usize::from(cookie::DEFAULT_AMPLIFICATION) * bytes.len();
            prop_assert!(out.len() <= limit, "{} > 8 x {}", out.len(), bytes.len());
        }
    }
}

#[test]
fn a_resolver_decision_is_not_reused_for_the_same_address_sent_as_ecs() {
    // Found by fuzzing: the fast path keyed decisions by network only, so ECS 127.0.0.1/32
    // after a plain query from 127.0.0.1 got the resolver's scope. Here with a resolver
    // address GeoIP knows (GB), whose own decision carries no scope.
    let state = shipped();
    let src: SocketAddr = "81.2.69.1:5300".parse().unwrap();
    let plain = packet(
        1,
        "www.example.com.",
        RecordType::A,
        Some((false, None)),
        None,
    );
    // The first fills the answer cache, the second the decision for this client.
    for _ in 0..2 {
        ask_raw(&state, &plain, src, Transport::Udp).unwrap();
    }
    let ecs = Some((false, Some((src.ip(), 32))));
    let with_ecs = packet(1, "www.example.com.", RecordType::A, ecs, None);
    let general = general_raw(&state, &with_ecs, src, Transport::Udp);
    for _ in 0..2 {
        let fast = ask_raw(&state, &with_ecs, src, Transport::Udp);
        assert_eq!(fast, general);
    }
}

#[test]
fn rfc9619_several_questions_get_formerr_with_the_header_alone() {
    // RFC 9619 §4: "A DNS message with OPCODE = 0 and QDCOUNT > 1 MUST be treated as an
    // incorrectly formatted message", so the FORMERR echoes none of them; three questions of
    // about 200 octets once made a response too large for UDP.
    let mut q = Message::query();
    for c in ["a", "b", "c"] {
        let long = format!("{}.example.com.", vec![c.repeat(60); 3].join("."));
        q.add_query(Query::query(
            Name::from_ascii(&long).unwrap(),
            RecordType::A,
        ));
    }
    q.metadata.id = 0x3a3b;
    let three = q.to_vec().unwrap();
    // A bare header that claims 65,535 questions: hickory's decoder would reserve 5.8 MB.
    let mut claimed = vec![0u8; 12];
    claimed[..6].copy_from_slice(&[0x3a, 0x3b, 0x01, 0x00, 0xff, 0xff]);
    let src: SocketAddr = RESOLVER.parse().unwrap();
    for packet in [&three, &claimed] {
        for transport in [Transport::Udp, Transport::Tcp] {
            let out = ask_raw(state(), packet, src, transport).unwrap();
            assert_eq!(out, response::formerr_header(packet), "{transport:?}");
            assert_eq!(decode(&out).metadata.response_code, ResponseCode::FormErr);
        }
    }
}

/// Gives every zone of `zones` with DNSSEC on a fresh key of its algorithm.
fn attach_test_keys(zones: &mut ZoneSet) {
    use std::os::unix::fs::OpenOptionsExt;
    let state = tempfile::tempdir().unwrap();
    for z in zones.zones() {
        let Some(d) = &z.dnssec else { continue };
        let key = zone::dnssec::default_key_path(&z.origin, state.path());
        std::fs::create_dir_all(key.parent().unwrap()).unwrap();
        let der = d.spec.algorithm.generate().unwrap();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)
            .unwrap();
        std::io::Write::write_all(&mut f, &der).unwrap();
    }
    zones.attach_keys(state.path()).expect("the keys load");
}

/// The shipped zone with DNSSEC on, a wildcard, and a fresh key, shared by the tests that
/// only read answers.
fn signed() -> &'static Snapshot {
    static SIGNED: OnceLock<Snapshot> = OnceLock::new();
    SIGNED.get_or_init(signed_apart)
}

/// [`signed`], with a key of its own: a test that compares signed bytes needs a signature
/// cache no other test writes into (ECDSA signatures of one RRset differ).
fn signed_apart() -> Snapshot {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
    let text = std::fs::read_to_string(dir.join("example.com.toml"))
        .unwrap()
        .replacen(
            "zone = \"example.com.\"\n",
            "zone = \"example.com.\"\ndnssec = {}\n",
            1,
        )
        .replacen(
            "a.b      IN TXT",
            "*.wild   IN A 192.0.2.77\na.b      IN TXT",
            1,
        );
    let path = dir.join("example.com.toml");
    let zone = zone::load_file(&path, &text).expect("the signed zone loads");
    let mut zones = ZoneSet::new(vec![zone]);
    attach_test_keys(&mut zones);
    Snapshot::new(zones, geo(), metrics()).compiled()
}

/// Every RRSIG of `records` verified against the zone's DNSKEY over the RRset it covers;
/// returns how many there were.
fn verify_all(snapshot: &Snapshot, records: &[hickory_proto::rr::Record]) -> usize {
    use hickory_proto::dnssec::Verifier;
    use hickory_proto::dnssec::rdata::DNSSECRData;
    let zone = snapshot.zones.get(0).unwrap();
    let signer = zone.signer().expect("the zone is signed");
    let mut n = 0;
    for r in records {
        let RData::DNSSEC(DNSSECRData::RRSIG(sig)) = &r.data else {
            continue;
        };
        let covered: Vec<_> = records
            .iter()
            .filter(|c| c.name == r.name && c.record_type() == sig.input().type_covered)
            .cloned()
            .collect();
        assert!(!covered.is_empty(), "RRSIG without its RRset: {r}");
        signer
            .dnskey(sig.input().key_tag)
            .expect("signed by a key of the zone")
            .verify_rrsig(
                &r.name,
                hickory_proto::rr::DNSClass::IN,
                sig,
                covered.iter(),
            )
            .unwrap_or_else(|e| panic!("{r}: {e}"));
        n += 1;
    }
    n
}

#[test]
fn rfc4035_every_rrset_of_a_do_answer_is_signed_and_verifies() {
    let snapshot = signed();
    let src: SocketAddr = RESOLVER.parse().unwrap();
    let ecs = Some((IpAddr::V4(Ipv4Addr::new(81, 2, 69, 0)), 24));
    // (name, type, ECS, RRSIGs expected in answer + authority)
    let cases = [
        ("static.example.com.", RecordType::A, None, 1),
        ("www.example.com.", RecordType::A, ecs, 1),
        ("alias.example.com.", RecordType::A, ecs, 2),
        ("example.com.", RecordType::DNSKEY, None, 1),
        ("example.com.", RecordType::CDS, None, 1),
        // The wildcard answer and the NSEC proving the next closer name absent.
        ("x.wild.example.com.", RecordType::A, None, 2),
        // SOA and NSEC of compact denial.
        ("nope.example.com.", RecordType::A, None, 2),
        ("b.example.com.", RecordType::TXT, None, 2),
        // A name's NSEC, asked for: the answer, alone.
        ("static.example.com.", RecordType::NSEC, None, 1),
        // A referral: NS unsigned, the NSEC at the cut signed.
        ("www.lab.example.com.", RecordType::A, None, 1),
    ];
    for (i, (name, rtype, ecs, sigs)) in cases.into_iter().enumerate() {
        let q = packet(i as u16, name, rtype, Some((true, ecs)), None);
        let out = ask_raw(snapshot, &q, src, Transport::Tcp).expect("an answer");
        let m = Message::from_vec(&out).unwrap();
        let mut records = m.answers.clone();
        records.extend(m.authorities.iter().cloned());
        assert_eq!(verify_all(snapshot, &records), sigs, "{name} {rtype}: {m}");
        // RFC 9824 §3: a name that does not exist is NOERROR with NXNAME in the bitmap.
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
    }
}

#[test]
fn do0_answers_of_a_signed_zone_carry_no_dnssec_records() {
    let src: SocketAddr = RESOLVER.parse().unwrap();
    for (name, rtype, rcode) in [
        ("static.example.com.", RecordType::A, ResponseCode::NoError),
        ("nope.example.com.", RecordType::A, ResponseCode::NXDomain),
        ("www.lab.example.com.", RecordType::A, ResponseCode::NoError),
    ] {
        let q = packet(7, name, rtype, Some((false, None)), None);
        let signed = ask_raw(signed(), &q, src, Transport::Udp).unwrap();
        let plain = ask_raw(state(), &q, src, Transport::Udp).unwrap();
        assert_eq!(signed, plain, "{name}: DO=0 is the unsigned zone's answer");
        let m = Message::from_vec(&signed).unwrap();
        assert_eq!(m.metadata.response_code, rcode);
    }
}

#[test]
fn a_signed_answer_is_cached_with_its_signatures_per_decision_and_do_bit() {
    let snapshot = &signed_apart();
    let src: SocketAddr = RESOLVER.parse().unwrap();
    // Services of its own, so that no other test's signatures are counted.
    let own = services_apart();
    let ask = |q: &[u8]| handle(snapshot, &own, q, src, Transport::Udp, cookie::now()).unwrap();
    let general = |q: &[u8]| {
        let at = At {
            src,
            transport: Transport::Udp,
            now: cookie::now(),
        };
        general::answer(snapshot, &own, q, at).unwrap().bytes
    };
    for (subnet, name) in [
        ("81.2.69.0", "www.example.com."),
        ("8.8.8.0", "www.example.com."),
        ("0.0.0.0", "static.example.com."),
    ] {
        let ecs = Some((subnet.parse().unwrap(), 24));
        let q = packet(2, name, RecordType::A, Some((true, ecs)), None);
        let first = ask(&q);
        let made = own.signing.signatures();
        let again = ask(&q);
        assert_eq!(
            own.signing.signatures(),
            made,
            "{subnet}: a cache hit signs nothing"
        );
        let general = general(&q);
        assert_eq!(
            own.signing.signatures(),
            made,
            "{subnet}: the general path finds the RRset signed in the key's cache"
        );
        assert_eq!(
            first, again,
            "{subnet}: the cached bytes are the signed answer"
        );
        // ECDSA signatures are randomized (RFC 6605), so equal bytes mean one signature.
        assert_eq!(again, general, "{subnet}: fast path = general path");
        let m = Message::from_vec(&again).unwrap();
        assert_eq!(verify_all(snapshot, &m.answers), 1, "{subnet}: {m}");
        // The DO=0 answer to the same question is cached apart, without signatures.
        let q0 = packet(2, name, RecordType::A, Some((false, ecs)), None);
        let plain = Message::from_vec(&ask(&q0)).unwrap();
        assert_eq!(verify_all(snapshot, &plain.answers), 0, "{subnet}");
    } // A health change swaps the snapshot and empties the fast path's caches; the answers
    // come back without a signature made on the query path.
    let swapped = snapshot.with_all_health(snapshot.health.clone());
    let made = own.signing.signatures();
    for subnet in ["81.2.69.0", "8.8.8.0"] {
        let ecs = Some((subnet.parse().unwrap(), 24));
        let q = packet(
            2,
            "www.example.com.",
            RecordType::A,
            Some((true, ecs)),
            None,
        );
        let out = handle(&swapped, &own, &q, src, Transport::Udp, cookie::now()).unwrap();
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(verify_all(&swapped, &m.answers), 1, "{subnet}: {m}");
    }
    assert_eq!(own.signing.signatures(), made, "no signing after the swap");
}

#[test]
fn rfc9824_an_explicit_nxname_query_to_a_signed_zone_is_formerr() {
    let src: SocketAddr = RESOLVER.parse().unwrap();
    let q = packet(
        9,
        "static.example.com.",
        sign::NXNAME,
        Some((true, None)),
        None,
    );
    let m = decode(&ask_raw(signed(), &q, src, Transport::Udp).unwrap());
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // An unsigned zone knows no NXNAME: an unknown type, NODATA.
    let m = decode(&ask_raw(state(), &q, src, Transport::Udp).unwrap());
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
}

#[test]
fn after_a_failover_swap_the_hot_answers_are_signed_before_clients_ask() {
    let snapshot = &signed_apart();
    let src: SocketAddr = RESOLVER.parse().unwrap();
    let own = services_apart();
    let ecs = Some((IpAddr::V4(Ipv4Addr::new(81, 2, 69, 0)), 24));
    let q = packet(
        3,
        "www.example.com.",
        RecordType::A,
        Some((true, ecs)),
        None,
    );
    let addresses = |out: &[u8]| answer_and_scope(&decode(out)).0;
    let before = handle(snapshot, &own, &q, src, Transport::Udp, cookie::now()).unwrap();
    assert_eq!(addresses(&before), vec![IpAddr::from([198, 51, 100, 10])]);

    // eu-west goes down: its clients move, with the trouble TTL, an RRset never signed.
    let zone = snapshot.zones.get(0).unwrap();
    let regions = zone
        .regions
        .iter()
        .map(|r| {
            if r.name == "eu-west" {
                RegionHealth {
                    state: RegionState::Down,
                    endpoints_up: vec![false; r.endpoints.len()],
                    degradation_ms: 0.0,
                    over_limit: false,
                    in_trouble: true,
                }
            } else {
                RegionHealth::up(r.endpoints.len())
            }
        })
        .collect();
    let swapped = snapshot.with_health(
        0,
        HealthView {
            regions,
            ..Default::default()
        },
    );
    let now = cookie::now();
    let made = presign(&swapped, &own.hot, now, now, &own.signing);
    assert!(made >= 1, "the new RRset was signed ahead");

    let signed_so_far = own.signing.signatures();
    let after = handle(&swapped, &own, &q, src, Transport::Udp, cookie::now()).unwrap();
    assert_ne!(
        addresses(&after),
        addresses(&before),
        "the client failed over"
    );
    assert_eq!(verify_all(&swapped, &decode(&after).answers), 1);
    assert_eq!(
        own.signing.signatures(),
        signed_so_far,
        "the failover put no signing on the query path"
    );
}

#[test]
fn the_first_queries_of_a_new_window_find_their_signatures_made_ahead() {
    use hickory_proto::dnssec::rdata::DNSSECRData;
    let snapshot = &signed_apart();
    let src: SocketAddr = RESOLVER.parse().unwrap();
    let own = services_apart();
    let ecs = Some((IpAddr::V4(Ipv4Addr::new(81, 2, 69, 0)), 24));
    let steered = packet(
        4,
        "www.example.com.",
        RecordType::A,
        Some((true, ecs)),
        None,
    );
    let fixed = packet(
        5,
        "static.example.com.",
        RecordType::A,
        Some((true, None)),
        None,
    );
    let other = packet(
        6,
        "static.example.com.",
        RecordType::AAAA,
        Some((true, None)),
        None,
    );
    // Five minutes before a UTC midnight, then a second after it.
    let midnight = cookie::now() - cookie::now() % 86_400 + 86_400;
    let (before, after) = (midnight - 300, midnight + 1);
    for q in [&steered, &fixed] {
        handle(snapshot, &own, q, src, Transport::Udp, before).unwrap();
    }
    let made = presign(snapshot, &own.hot, before, midnight, &own.signing);
    assert!(
        made >= 2,
        "{made}: the steered and the static RRset, for the new window"
    );

    let signed_so_far = own.signing.signatures();
    for q in [&steered, &fixed] {
        let out = decode(&handle(snapshot, &own, q, src, Transport::Udp, after).unwrap());
        assert_eq!(verify_all(snapshot, &out.answers), 1);
        let inception = out
            .answers
            .iter()
            .find_map(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::RRSIG(sig)) => Some(sig.input().sig_inception.get()),
                _ => None,
            })
            .unwrap();
        assert_eq!(inception, midnight - 3600, "the new window's signature");
    }
    assert_eq!(
        own.signing.signatures(),
        signed_so_far,
        "the new window put no signing on the query path"
    );
    // A question that was not hot is signed when asked: the control.
    handle(snapshot, &own, &other, src, Transport::Udp, after).unwrap();
    assert!(own.signing.signatures() > signed_so_far);
}

#[test]
fn a_multivalue_region_list_fits_the_padding_of_the_keys_it_joins() {
    // 32 and 48 octets before the list joined them: a one-region answer's key and a cached
    // decision are no bigger.
    assert_eq!(std::mem::size_of::<cache::Variant>(), 32);
    assert_eq!(
        std::mem::size_of::<crate::serving::compiled::Compiled>(),
        48
    );
}

/// The fast path's response-cache hits counted in `services`' metrics.
fn fast_hits(services: &Services) -> u64 {
    services
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("meridian_dns_fast_path_total{result=\"hit\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A measured network's multivalue answer comes from the compiled tables, its region list
/// numbered as the compiled classes' are, so the response cache serves it from the second
/// query on (a list without a number would send every such query to the general path).
#[test]
fn a_measured_networks_multivalue_answer_is_compiled_and_then_cached() {
    use crate::serving::answer::{self, Client};
    use crate::steer::Family;
    let compiled = &oracle_states()[13];
    assert!(compiled.latency.networks() > 0 && compiled.steering.iter().all(Option::is_some));
    let origin = hickory_proto::rr::LowerName::new(&Name::from_ascii("rules.test.").unwrap());
    let zone = compiled.zones.find(&origin).unwrap();
    let (index, steered) = zone
        .steered
        .iter()
        .enumerate()
        .find(|(_, s)| s.name.to_string() == "multi.rules.test.")
        .unwrap();
    for net in ["81.2.69.0/24", "2003:e0::/48"] {
        let network: ipnet::IpNet = net.parse().unwrap();
        let client = Client::Subnet { network };
        assert!(compiled.latency.speaks_for(network), "{net}");
        let c = compiled
            .compiled_steer(zone, index, Family::V4, client)
            .unwrap_or_else(|| panic!("{net} is compiled"));
        let direct = answer::steer(compiled, zone, steered, client, Family::V4, 0);
        assert_eq!(direct.decision.also.len(), 2, "{net}: multivalue 3");
        assert_eq!(
            (
                c.steering.region,
                compiled.also(zone, &direct.decision.also)
            ),
            (direct.decision.chosen, Some(c.steering.also)),
            "{net}"
        );
        assert_eq!(c.scope, direct.scope, "{net}");
        let own = services_apart();
        let src: SocketAddr = RESOLVER.parse().unwrap();
        let q = packet(
            7,
            "multi.rules.test.",
            RecordType::A,
            Some((false, Some((network.addr(), network.prefix_len())))),
            None,
        );
        let first = handle(compiled, &own, &q, src, Transport::Udp, cookie::now()).unwrap();
        let second = handle(compiled, &own, &q, src, Transport::Udp, cookie::now()).unwrap();
        assert_eq!(decode(&first), decode(&second));
        assert_eq!(
            fast_hits(&own),
            1,
            "{net}: the second answer is a cache hit"
        );
    }
}
