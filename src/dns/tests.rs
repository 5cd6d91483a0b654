use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet as EcsOption, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData};
use proptest::prelude::*;

use super::*;
use crate::geo::GeoDb;
use crate::zone;

fn shipped() -> ServingState {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
    let zones = zone::load_dir(&dir).expect("shipped zones load");
    ServingState::new(zones, Arc::new(GeoDb::embedded().expect("embedded db")))
}

fn state() -> &'static ServingState {
    static STATE: OnceLock<ServingState> = OnceLock::new();
    STATE.get_or_init(shipped)
}

const RESOLVER: &str = "127.0.0.1:5300";

thread_local! {
    /// Caches as a UDP loop owns them, apart from the thread's own that `handle` uses.
    static UDP_CACHES: std::cell::RefCell<FastCaches> = Default::default();
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
    let out = handle(state(), &bytes, src, Transport::Udp).expect("an answer");
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
    assert_eq!(handle(state(), &[0u8; 11], src, Transport::Udp), None);
    let mut response = Message::query();
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    let bytes = response.to_vec().unwrap();
    assert_eq!(handle(state(), &bytes, src, Transport::Udp), None);
}

#[test]
fn rfc1035_undecodable_query_is_formerr_with_its_id() {
    let src: SocketAddr = RESOLVER.parse().unwrap();
    // Header claims one question; the question is cut short.
    let packet = [
        0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'w',
    ];
    let out = handle(state(), &packet, src, Transport::Udp).unwrap();
    assert_eq!(&out[..2], &[0xAB, 0xCD]);
    assert_eq!(out[2] & 0x80, 0x80, "QR");
    assert_eq!(out[2] & 0x01, 0x01, "RD copied");
    assert_eq!(out[3] & 0x0F, 1, "FORMERR");
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
/// `state()` gave `src`, or one with a forged server cookie.
fn query_cookie(kind: u8, src: SocketAddr) -> Option<Vec<u8>> {
    cookie_for(state(), kind, src)
}

fn cookie_for(state: &ServingState, kind: u8, src: SocketAddr) -> Option<Vec<u8>> {
    let client = cookie::parse(&CLIENT_COOKIE).unwrap();
    match kind {
        1 => Some(CLIENT_COOKIE.to_vec()),
        2 => Some(
            state
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
    assert!(state().cookies.verifies(&sent, src.ip(), cookie::now()));
    Some(body[..8].to_vec())
}

const NAMES: [&str; 10] = [
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
];
const TYPES: [RecordType; 6] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::TXT,
    RecordType::NS,
    RecordType::MX,
    RecordType::SOA,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// The fast path answers as the general path does, on its first (filling) and its later
    /// (cached) answers, over UDP and TCP: the same header, question (in the query's case),
    /// records and OPT. (Names that compress against the question may take its case in a
    /// cached answer; names compare without case, as DNS does.)
    #[test]
    fn fast_path_and_general_path_give_identical_answers(
        id in any::<u16>(),
        name in 0..NAMES.len(),
        rtype in 0..TYPES.len(),
        edns in 0..4u8,
        (addr, prefix) in v4_net(),
        port in 1024u16..,
        tcp in any::<bool>(),
        cookie in 0..4u8,
    ) {
        let ecs = match edns {
            2 => Some((IpAddr::V4(addr), prefix)),
            3 => Some((IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
            _ => None,
        };
        let e = (edns > 0).then_some((edns == 1, ecs));
        let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let sent = query_cookie(cookie, src).filter(|_| e.is_some());
        let bytes = packet(id, NAMES[name], TYPES[rtype], e, sent.clone());
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        let general = super::general(state(), &bytes, src, transport, &mut Trace::default());
        let first = handle(state(), &bytes, src, transport);
        let cached = handle(state(), &bytes, src, transport);
        // As a UDP loop answers, with caches of its own: parsed and prefetched first.
        let udp = UDP_CACHES.with_borrow_mut(|caches| {
            let parsed = prefetch(caches, state(), &bytes, src);
            let mut out = Vec::new();
            handle_parsed(caches, state(), &bytes, parsed, src, transport, &mut out).then_some(out)
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
        for answer in [decode(&first), decode(&cached), decode(&udp)] {
            prop_assert_eq!(&answer, &general);
            if let (Some(a), Some(g)) = (&answer, &general) {
                prop_assert!(a.queries[0].name().eq_case(g.queries[0].name()));
            }
        }
    }
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
        let out = decode(&handle(state(), &bytes, src, Transport::Udp).unwrap());
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
    let mut out = decode(&handle(state(), &bytes, src, Transport::Udp).unwrap());
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
    let mut out = decode(&handle(state(), &q.to_vec().unwrap(), src, Transport::Udp).unwrap());
    assert_eq!(out.metadata.response_code, ResponseCode::NoError);
    assert!(out.queries.is_empty());
    assert!(take_cookie(&mut out, src).is_some());
    // Without a cookie, a query without a question is still malformed.
    let mut q = Message::query();
    q.set_edns(Edns::new());
    let out = decode(&handle(state(), &q.to_vec().unwrap(), src, Transport::Udp).unwrap());
    assert_eq!(out.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn without_a_valid_cookie_a_udp_answer_larger_than_the_factor_allows_is_truncated() {
    let src: SocketAddr = RESOLVER.parse().unwrap();
    // The apex NS answer with glue is 2.8 times its query: over a factor of 2.
    let state = shipped().with_cookies(cookie::Cookies::new([5; 16], 2));
    for kind in 0..4u8 {
        let bytes = packet(
            9,
            "example.com.",
            RecordType::NS,
            Some((false, None)),
            cookie_for(&state, kind, src),
        );
        // Twice: the general path, then the fast path's cached answer.
        let udp = handle(&state, &bytes, src, Transport::Udp).unwrap();
        let again = handle(&state, &bytes, src, Transport::Udp).unwrap();
        assert_eq!(udp.len(), again.len(), "fast path as the general path");
        let tcp = handle(&state, &bytes, src, Transport::Tcp).unwrap();
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
        name in 0..NAMES.len(),
        rtype in 0..TYPES.len(),
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
        let bytes = packet(id, NAMES[name], TYPES[rtype], e, sent);
        for _ in 0..2 {
            let out = handle(state(), &bytes, src, Transport::Udp).unwrap();
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
        handle(&state, &plain, src, Transport::Udp).unwrap();
    }
    let ecs = Some((false, Some((src.ip(), 32))));
    let with_ecs = packet(1, "www.example.com.", RecordType::A, ecs, None);
    let general = super::general(
        &state,
        &with_ecs,
        src,
        Transport::Udp,
        &mut Trace::default(),
    );
    for _ in 0..2 {
        let fast = handle(&state, &with_ecs, src, Transport::Udp);
        assert_eq!(fast, general);
    }
}

#[test]
fn a_formerr_for_several_long_questions_still_fits_512_octets_over_udp() {
    // Found by fuzzing: the truncated FORMERR kept both questions, 500+ octets each.
    // Three questions of about 200 octets, none compressible against another.
    let mut q = Message::query();
    for c in ["a", "b", "c"] {
        let long = format!("{}.example.com.", vec![c.repeat(60); 3].join("."));
        q.add_query(Query::query(
            Name::from_ascii(&long).unwrap(),
            RecordType::A,
        ));
    }
    let bytes = q.to_vec().unwrap();
    assert!(bytes.len() > 512);
    let src: SocketAddr = RESOLVER.parse().unwrap();
    let out = handle(state(), &bytes, src, Transport::Udp).unwrap();
    assert!(out.len() <= 512, "{} octets", out.len());
    let m = decode(&out);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert!(m.metadata.truncation, "TC: the whole answer comes over TCP");
    let tcp = decode(&handle(state(), &bytes, src, Transport::Tcp).unwrap());
    assert_eq!(tcp.queries.len(), 3);
}
