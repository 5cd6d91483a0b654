//! DNS conformance of the real `meridian serve` binary against the shipped example zone
//! (`zones/example.com.toml`), over UDP and TCP. Cases are named after the RFC they check.

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use ipnet::IpNet;

use common::wire;
use common::{
    DnsClient, RAW_DEADLINE, RawTcp, RawUdp, Server, XorShift, clients, query, query_message, send,
    tcp_exchange, udp_exchange,
};

/// How long to wait before concluding that the server sent nothing.
const SILENCE: Duration = Duration::from_millis(500);

const US_EAST: Region = Region {
    name: "us-east",
    v4: "192.0.2.10",
    v6: "2001:db8:1::10",
};
const EU_WEST: Region = Region {
    name: "eu-west",
    v4: "198.51.100.10",
    v6: "2001:db8:2::10",
};
const AP_SOUTHEAST: Region = Region {
    name: "ap-southeast",
    v4: "203.0.113.10",
    v6: "2001:db8:3::10",
};

#[derive(Debug, Clone, Copy)]
struct Region {
    name: &'static str,
    v4: &'static str,
    v6: &'static str,
}

/// Client networks whose country is unambiguous in the embedded whois database (checked with
/// `meridian route`), and the region nearest to that country.
const STEERING: &[(&str, &str, Region)] = &[
    ("8.8.8.0/24", "US", US_EAST),
    ("24.114.32.0/24", "CA", US_EAST),
    ("99.224.10.0/24", "CA", US_EAST),
    ("200.160.0.0/24", "BR", US_EAST),
    ("81.2.69.0/24", "GB", EU_WEST),
    ("193.99.144.0/24", "DE", EU_WEST),
    ("90.0.12.0/24", "FR", EU_WEST),
    ("105.112.0.0/24", "NG", EU_WEST),
    // Pretoria is 8,600 km from Singapore and 9,400 km from Dublin.
    ("196.25.1.0/24", "ZA", AP_SOUTHEAST),
    ("210.130.1.0/24", "JP", AP_SOUTHEAST),
    ("133.11.0.0/24", "JP", AP_SOUTHEAST),
    ("165.21.83.0/24", "SG", AP_SOUTHEAST),
    ("1.128.0.0/24", "AU", AP_SOUTHEAST),
    ("203.2.218.0/24", "AU", AP_SOUTHEAST),
    ("117.192.0.0/24", "IN", AP_SOUTHEAST),
    ("2001:4860:4860::/48", "US", US_EAST),
    ("2001:1280:1::/48", "BR", US_EAST),
    ("2a00:1450:4001::/48", "IE", EU_WEST),
    ("2a01:4f8:c0c::/48", "DE", EU_WEST),
    ("2a02:c7f:1234::/48", "GB", EU_WEST),
    ("2400:4050:1::/48", "JP", AP_SOUTHEAST),
    ("2404:e800:1::/48", "SG", AP_SOUTHEAST),
    ("2001:388:1::/48", "AU", AP_SOUTHEAST),
    ("2403:8600:1::/48", "IN", AP_SOUTHEAST),
];

// ---------------------------------------------------------------------------------------------
// Helpers

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("valid name")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid address")
}

/// The A and AAAA addresses of the answer section, in order.
fn answer_ips(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// The ECS option of a response, if any.
fn response_ecs(m: &Message) -> Option<ClientSubnet> {
    match m.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some(*s),
        _ => None,
    }
}

fn describe(m: &Message) -> String {
    format!("{m}")
}

/// RFC 2308 §3: one SOA of the zone in authority, TTL = min(SOA TTL 3600, MINIMUM 300).
fn assert_negative_soa(context: &str, m: &Message) {
    let soas: Vec<&Record> = m
        .authorities
        .iter()
        .filter(|r| r.record_type() == RecordType::SOA)
        .collect();
    assert_eq!(
        soas.len(),
        1,
        "{context}: one SOA in authority\n{}",
        describe(m)
    );
    let soa = soas[0];
    assert_eq!(soa.name, name("example.com."), "{context}: SOA owner");
    assert_eq!(soa.ttl, 300, "{context}: negative TTL min(3600, 300)");
    match &soa.data {
        RData::SOA(s) => {
            assert_eq!(s.minimum, 300, "{context}: SOA MINIMUM");
            assert_eq!(s.mname, name("ns1.example.com."), "{context}: SOA MNAME");
        }
        other => panic!("{context}: SOA record holds {other:?}"),
    }
    assert!(
        m.answers.is_empty(),
        "{context}: no answers\n{}",
        describe(m)
    );
}

fn additional_addrs(m: &Message) -> HashSet<(Name, IpAddr)> {
    m.additionals
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some((r.name.clone(), IpAddr::V4(a.0))),
            RData::AAAA(a) => Some((r.name.clone(), IpAddr::V6(a.0))),
            _ => None,
        })
        .collect()
}

/// Parses a raw response, panicking with its bytes if it does not decode.
fn parse(context: &str, bytes: &[u8]) -> Message {
    Message::from_vec(bytes)
        .unwrap_or_else(|e| panic!("{context}: response does not decode ({e}): {bytes:02x?}"))
}

/// Sends a raw packet over UDP and over TCP; returns both responses, labelled.
fn raw_both(server: SocketAddr, packet: &[u8]) -> Vec<(&'static str, Option<Vec<u8>>)> {
    vec![
        ("udp", udp_exchange(server, packet, RAW_DEADLINE)),
        ("tcp", tcp_exchange(server, packet, RAW_DEADLINE)),
    ]
}

/// A FORMERR response to `packet`: same ID, QR set, RCODE 1.
fn assert_formerr(context: &str, packet: &[u8], response: Option<Vec<u8>>) {
    let r = response.unwrap_or_else(|| panic!("{context}: no response, expected FORMERR"));
    assert!(r.len() >= 12, "{context}: response shorter than a header");
    assert_eq!(wire::id(&r), wire::id(packet), "{context}: response ID");
    assert!(wire::is_response(&r), "{context}: QR set");
    assert_eq!(
        wire::rcode_low(&r),
        1,
        "{context}: RCODE FORMERR, got {:02x?}",
        &r[..12]
    );
    assert_eq!(wire::opcode(&r), wire::opcode(packet), "{context}: opcode");
}

fn ecs_family(addr: IpAddr) -> u16 {
    if addr.is_ipv4() { 1 } else { 2 }
}

/// Asserts the ECS echo of RFC 7871 §7.2.1 and returns the scope.
fn assert_ecs_echo(context: &str, m: &Message, sent: IpNet) -> u8 {
    let ecs = response_ecs(m)
        .unwrap_or_else(|| panic!("{context}: no ECS option in the response\n{}", describe(m)));
    assert_eq!(
        ecs_family(ecs.addr()),
        ecs_family(sent.addr()),
        "{context}: ECS FAMILY echoed"
    );
    assert_eq!(
        ecs.source_prefix(),
        sent.prefix_len(),
        "{context}: ECS SOURCE PREFIX-LENGTH echoed"
    );
    assert_eq!(ecs.addr(), sent.addr(), "{context}: ECS ADDRESS echoed");
    ecs.scope_prefix()
}

async fn steered(
    client: &DnsClient,
    qname: &str,
    rtype: RecordType,
    ecs: &str,
) -> (Message, Vec<IpAddr>) {
    let r = query(client, qname, rtype, Some(ecs), Some(1232)).await;
    let m = r.into_message();
    let ips = answer_ips(&m);
    (m, ips)
}

// ---------------------------------------------------------------------------------------------
// RFC 1034 / 1035: authoritative answers, referrals, REFUSED

#[tokio::test]
async fn rfc1035_authoritative_answer_has_aa() {
    let server = Server::start(&[]);
    for (t, c) in clients(server.addr()).await {
        for (rtype, want) in [
            (RecordType::A, "192.0.2.80"),
            (RecordType::AAAA, "2001:db8::80"),
        ] {
            let r = query(&c, "static.example.com.", rtype, None, Some(1232)).await;
            let ctx = format!("{t} static.example.com {rtype}");
            assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{ctx}");
            assert!(r.metadata.authoritative, "{ctx}: AA\n{}", describe(&r));
            assert!(!r.metadata.truncation, "{ctx}: TC");
            assert_eq!(answer_ips(&r), [ip(want)], "{ctx}");
            assert_eq!(r.answers.len(), 1, "{ctx}: one record");
            assert_eq!(r.answers[0].name, name("static.example.com."), "{ctx}");
            assert_eq!(r.answers[0].ttl, 3600, "{ctx}: TTL from $TTL");
        }
        // A steered answer is authoritative too.
        let r = query(&c, "www.example.com.", RecordType::A, None, Some(1232)).await;
        assert!(r.metadata.authoritative, "{t} www: AA");
        assert_eq!(r.answers.len(), 1, "{t} www: one address");
        assert_eq!(r.answers[0].ttl, 30, "{t} www: steered TTL");
    }
}

#[tokio::test]
async fn rfc2308_nxdomain_has_soa_with_negative_ttl() {
    let server = Server::start(&[]);
    for (t, c) in clients(server.addr()).await {
        for (qname, rtype) in [
            ("nope.example.com.", RecordType::A),
            ("nope.example.com.", RecordType::AAAA),
            ("deep.below.nope.example.com.", RecordType::TXT),
            ("x.static.example.com.", RecordType::A),
        ] {
            for payload in [Some(1232), None] {
                let ctx = format!("{t} {qname} {rtype} payload {payload:?}");
                let r = query(&c, qname, rtype, None, payload).await;
                assert_eq!(
                    r.metadata.response_code,
                    ResponseCode::NXDomain,
                    "{ctx}\n{}",
                    describe(&r)
                );
                assert!(r.metadata.authoritative, "{ctx}: AA");
                assert_negative_soa(&ctx, &r);
            }
        }
    }
}

#[tokio::test]
async fn rfc2308_nodata_has_soa_with_negative_ttl() {
    let server = Server::start(&[]);
    for (t, c) in clients(server.addr()).await {
        for (qname, rtype) in [
            ("static.example.com.", RecordType::MX),
            ("static.example.com.", RecordType::TXT),
            ("mail.example.com.", RecordType::AAAA),
            // A steered name holds only addresses.
            ("www.example.com.", RecordType::TXT),
            ("www.example.com.", RecordType::MX),
        ] {
            let ctx = format!("{t} {qname} {rtype}");
            let r = query(&c, qname, rtype, None, Some(1232)).await;
            assert_eq!(
                r.metadata.response_code,
                ResponseCode::NoError,
                "{ctx}\n{}",
                describe(&r)
            );
            assert!(r.metadata.authoritative, "{ctx}: AA");
            assert_negative_soa(&ctx, &r);
        }
    }
}

#[tokio::test]
async fn rfc8020_empty_non_terminal_is_nodata_not_nxdomain() {
    let server = Server::start(&[]);
    for (t, c) in clients(server.addr()).await {
        for rtype in [RecordType::A, RecordType::TXT, RecordType::AAAA] {
            let ctx = format!("{t} b.example.com {rtype}");
            let r = query(&c, "b.example.com.", rtype, None, Some(1232)).await;
            assert_eq!(
                r.metadata.response_code,
                ResponseCode::NoError,
                "{ctx}: an empty non-terminal exists\n{}",
                describe(&r)
            );
            assert!(r.metadata.authoritative, "{ctx}: AA");
            assert_negative_soa(&ctx, &r);
        }
        // The name below it exists.
        let r = query(&c, "a.b.example.com.", RecordType::TXT, None, Some(1232)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{t}");
        assert_eq!(r.answers.len(), 1, "{t} a.b.example.com TXT");
        assert_eq!(r.answers[0].record_type(), RecordType::TXT, "{t}");
    }
}

#[tokio::test]
async fn rfc1034_referral_for_delegated_child() {
    let server = Server::start(&[]);
    let glue = (name("ns1.lab.example.com."), ip("192.0.2.99"));
    for (t, c) in clients(server.addr()).await {
        for (qname, rtype) in [
            ("lab.example.com.", RecordType::A),
            ("lab.example.com.", RecordType::NS),
            ("x.lab.example.com.", RecordType::A),
            ("deep.x.lab.example.com.", RecordType::AAAA),
            ("ns1.lab.example.com.", RecordType::A),
        ] {
            let ctx = format!("{t} {qname} {rtype}");
            let r = query(&c, qname, rtype, None, Some(1232)).await;
            assert_eq!(
                r.metadata.response_code,
                ResponseCode::NoError,
                "{ctx}\n{}",
                describe(&r)
            );
            assert!(
                !r.metadata.authoritative,
                "{ctx}: AA clear on a referral\n{}",
                describe(&r)
            );
            assert!(r.answers.is_empty(), "{ctx}: no answers\n{}", describe(&r));
            let ns: Vec<(&Name, &RData)> =
                r.authorities.iter().map(|r| (&r.name, &r.data)).collect();
            assert_eq!(ns.len(), 1, "{ctx}: one NS in authority\n{}", describe(&r));
            assert_eq!(*ns[0].0, name("lab.example.com."), "{ctx}: NS owner");
            match ns[0].1 {
                RData::NS(target) => {
                    assert_eq!(target.0, name("ns1.lab.example.com."), "{ctx}: NS target")
                }
                other => panic!("{ctx}: authority holds {other:?}, expected NS"),
            }
            assert!(
                additional_addrs(&r).contains(&glue),
                "{ctx}: glue A 192.0.2.99 in additional\n{}",
                describe(&r)
            );
        }
    }
}

#[tokio::test]
async fn rfc4035_ds_at_delegation_is_answered_by_parent() {
    let server = Server::start(&[]);
    for (t, c) in clients(server.addr()).await {
        let r = query(&c, "lab.example.com.", RecordType::DS, None, Some(1232)).await;
        let ctx = format!("{t} lab.example.com DS");
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{ctx}");
        assert!(
            r.metadata.authoritative,
            "{ctx}: the parent is authoritative for DS\n{}",
            describe(&r)
        );
        assert_negative_soa(&ctx, &r);
    }
}

#[tokio::test]
async fn rfc1035_refused_outside_every_zone() {
    let server = Server::start(&[]);
    for (t, c) in clients(server.addr()).await {
        for qname in [
            "example.org.",
            "www.example.org.",
            "com.",
            ".",
            "notexample.com.",
            "example.com.evil.net.",
            "xn--example-com.test.",
        ] {
            let ctx = format!("{t} {qname}");
            let r = query(&c, qname, RecordType::A, None, Some(1232)).await;
            assert_eq!(
                r.metadata.response_code,
                ResponseCode::Refused,
                "{ctx}\n{}",
                describe(&r)
            );
            assert!(!r.metadata.authoritative, "{ctx}: AA clear");
            assert!(r.answers.is_empty(), "{ctx}: no answers");
            assert!(r.authorities.is_empty(), "{ctx}: no authority");
        }
    }
    // Class CH holds no data here.
    let mut packet = wire::header(0x5151, 0, 1, 0, 0, 0);
    packet.extend(wire::question("example.com", 6, 3));
    for (t, r) in raw_both(server.addr(), &packet) {
        let r = r.unwrap_or_else(|| panic!("{t}: no response to a CH query"));
        assert_eq!(wire::id(&r), 0x5151, "{t}");
        assert_eq!(wire::rcode_low(&r), 5, "{t}: CH query REFUSED");
    }
}

#[tokio::test]
async fn rfc1034_apex_ns_has_glue_in_additional() {
    let server = Server::start(&[]);
    let want_ns: HashSet<Name> = [name("ns1.example.com."), name("ns2.example.com.")].into();
    let want_glue: HashSet<(Name, IpAddr)> = [
        (name("ns1.example.com."), ip("192.0.2.53")),
        (name("ns1.example.com."), ip("2001:db8::53")),
        (name("ns2.example.com."), ip("198.51.100.53")),
        (name("ns2.example.com."), ip("2001:db8:2::53")),
    ]
    .into();
    for (t, c) in clients(server.addr()).await {
        let r = query(&c, "example.com.", RecordType::NS, None, Some(1232)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{t}");
        assert!(r.metadata.authoritative, "{t}: AA at the apex");
        let ns: HashSet<Name> = r
            .answers
            .iter()
            .map(|rec| match &rec.data {
                RData::NS(ns) => {
                    assert_eq!(rec.name, name("example.com."), "{t}: NS owner");
                    ns.0.clone()
                }
                other => panic!("{t}: answer holds {other:?}"),
            })
            .collect();
        assert_eq!(ns, want_ns, "{t}: apex NS");
        assert_eq!(r.answers.len(), 2, "{t}: two NS records");
        assert_eq!(
            additional_addrs(&r),
            want_glue,
            "{t}: A and AAAA of both name servers\n{}",
            describe(&r)
        );
    }
}

#[tokio::test]
async fn rfc1034_apex_mx_has_exchange_address_in_additional() {
    let server = Server::start(&[]);
    for (t, c) in clients(server.addr()).await {
        let r = query(&c, "example.com.", RecordType::MX, None, Some(1232)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{t}");
        assert!(r.metadata.authoritative, "{t}: AA");
        assert_eq!(r.answers.len(), 1, "{t}: one MX\n{}", describe(&r));
        match &r.answers[0].data {
            RData::MX(mx) => {
                assert_eq!(mx.preference, 10, "{t}: MX preference");
                assert_eq!(mx.exchange, name("mail.example.com."), "{t}: MX exchange");
            }
            other => panic!("{t}: answer holds {other:?}"),
        }
        assert!(
            additional_addrs(&r).contains(&(name("mail.example.com."), ip("192.0.2.25"))),
            "{t}: mail.example.com A in additional\n{}",
            describe(&r)
        );
    }
}

#[tokio::test]
async fn rfc1034_cname_chain_is_followed_to_the_steered_name() {
    let server = Server::start(&[]);
    for (t, c) in clients(server.addr()).await {
        for (ecs, rtype, want) in [
            // No ECS: the resolver 127.0.0.1 has no location, so the default region answers.
            (None, RecordType::A, US_EAST.v4),
            (Some("210.130.1.0/24"), RecordType::A, AP_SOUTHEAST.v4),
            (Some("81.2.69.0/24"), RecordType::AAAA, EU_WEST.v6),
        ] {
            let ctx = format!("{t} alias.example.com {rtype} ECS {ecs:?}");
            let r = query(&c, "alias.example.com.", rtype, ecs, Some(1232)).await;
            assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{ctx}");
            assert!(r.metadata.authoritative, "{ctx}: AA");
            assert_eq!(
                r.answers.len(),
                2,
                "{ctx}: CNAME + address\n{}",
                describe(&r)
            );
            assert_eq!(r.answers[0].name, name("alias.example.com."), "{ctx}");
            match &r.answers[0].data {
                RData::CNAME(target) => {
                    assert_eq!(target.0, name("www.example.com."), "{ctx}: CNAME target")
                }
                other => panic!("{ctx}: first answer holds {other:?}, expected CNAME"),
            }
            assert_eq!(r.answers[1].name, name("www.example.com."), "{ctx}: owner");
            assert_eq!(r.answers[1].record_type(), rtype, "{ctx}");
            assert_eq!(answer_ips(&r), [ip(want)], "{ctx}");
            if let Some(net) = ecs {
                let scope = assert_ecs_echo(&ctx, &r, net.parse().unwrap());
                assert!(scope > 0, "{ctx}: a steered answer has a non-zero scope");
            }
        }
    }
}

#[tokio::test]
async fn rfc4343_qname_case_is_preserved() {
    let server = Server::start(&[]);
    for (t, c) in clients(server.addr()).await {
        for (qname, rcode) in [
            ("WwW.ExAmPlE.cOm.", ResponseCode::NoError),
            ("StAtIc.ExAmPlE.CoM.", ResponseCode::NoError),
            ("AlIaS.eXaMpLe.CoM.", ResponseCode::NoError),
            ("NoPe.ExAmPlE.CoM.", ResponseCode::NXDomain),
        ] {
            let ctx = format!("{t} {qname}");
            let r = query(&c, qname, RecordType::A, None, Some(1232)).await;
            assert_eq!(r.metadata.response_code, rcode, "{ctx}");
            let want = name(qname);
            assert_eq!(r.queries.len(), 1, "{ctx}: one question");
            assert!(
                r.queries[0].name().eq_case(&want),
                "{ctx}: question echoed as {}",
                r.queries[0].name()
            );
            if rcode == ResponseCode::NoError {
                assert!(
                    r.answers[0].name.eq_case(&want),
                    "{ctx}: answer owner is {}",
                    r.answers[0].name
                );
            }
        }
    }
}

#[tokio::test]
async fn rfc8482_any_is_answered_with_one_rrset() {
    let server = Server::start(&[]);
    for (t, c) in clients(server.addr()).await {
        for qname in ["example.com.", "static.example.com.", "www.example.com."] {
            let ctx = format!("{t} {qname} ANY");
            let r = query(&c, qname, RecordType::ANY, None, Some(1232)).await;
            assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{ctx}");
            assert!(r.metadata.authoritative, "{ctx}: AA");
            assert!(!r.answers.is_empty(), "{ctx}: some answer");
            let sets: HashSet<(Name, RecordType)> = r
                .answers
                .iter()
                .map(|rec| (rec.name.clone(), rec.record_type()))
                .collect();
            assert_eq!(sets.len(), 1, "{ctx}: exactly one RRset\n{}", describe(&r));
            assert!(
                sets.iter().all(|(n, _)| *n == name(qname)),
                "{ctx}: RRset of the name"
            );
        }
    }
}

#[tokio::test]
async fn rfc5936_zone_transfer_is_refused() {
    let server = Server::start(&[]);
    let c = common::tcp_client(server.addr()).await;
    for rtype in [RecordType::AXFR, RecordType::IXFR] {
        let r = query(&c, "example.com.", rtype, None, Some(1232)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{rtype}");
        assert!(r.answers.is_empty(), "{rtype}: no records");
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 6891: EDNS

#[tokio::test]
async fn rfc6891_opt_in_response_iff_in_query() {
    let server = Server::start(&[]);
    for (t, c) in clients(server.addr()).await {
        for (qname, rtype) in [
            ("static.example.com.", RecordType::A),
            ("www.example.com.", RecordType::AAAA),
            ("nope.example.com.", RecordType::A),
            ("lab.example.com.", RecordType::A),
            ("example.org.", RecordType::A),
        ] {
            let ctx = format!("{t} {qname} {rtype}");
            let r = query(&c, qname, rtype, None, Some(4096)).await;
            let edns = r
                .edns
                .as_ref()
                .unwrap_or_else(|| panic!("{ctx}: OPT missing\n{}", describe(&r)));
            assert_eq!(edns.max_payload(), 1232, "{ctx}: advertised payload");
            assert_eq!(edns.version(), 0, "{ctx}: EDNS version");
            assert!(
                response_ecs(&r).is_none(),
                "{ctx}: no ECS option unless asked (RFC 7871 §7.2.1)"
            );

            let r = query(&c, qname, rtype, None, None).await;
            assert!(
                r.edns.is_none(),
                "{ctx}: OPT in a response to a query without it\n{}",
                describe(&r)
            );
        }
    }
}

#[tokio::test]
async fn rfc3225_do_bit_is_copied() {
    let server = Server::start(&[]);
    for (t, c) in clients(server.addr()).await {
        for dnssec_ok in [true, false] {
            let mut msg = query_message("static.example.com.", RecordType::A, None, Some(1232));
            msg.edns.as_mut().unwrap().set_dnssec_ok(dnssec_ok);
            let r = send(&c, msg).await;
            let edns = r.edns.as_ref().expect("OPT in response");
            assert_eq!(edns.flags().dnssec_ok, dnssec_ok, "{t}: DO copied");
        }
    }
}

#[test]
fn rfc6891_unknown_edns_version_gets_badvers() {
    let server = Server::start(&[]);
    for version in [1u8, 2, 255] {
        let packet = wire::query(
            0x6891,
            "static.example.com",
            wire::QTYPE_A,
            Some(wire::opt(1232, version, false, &[])),
        );
        for (t, r) in raw_both(server.addr(), &packet) {
            let ctx = format!("{t} EDNS version {version}");
            let r = r.unwrap_or_else(|| panic!("{ctx}: no response"));
            assert_eq!(wire::id(&r), 0x6891, "{ctx}: ID");
            assert!(wire::is_response(&r), "{ctx}: QR");
            assert_eq!(wire::rcode_low(&r), 0, "{ctx}: header RCODE bits of 16");
            let m = parse(&ctx, &r);
            // 16 is both BADVERS and BADSIG; hickory decodes it as the latter.
            assert_eq!(
                u16::from(m.metadata.response_code),
                16,
                "{ctx}: extended RCODE 16 (BADVERS)\n{}",
                describe(&m)
            );
            let edns = m.edns.as_ref().expect("OPT carries the extended RCODE");
            assert_eq!(edns.rcode_high(), 1, "{ctx}: OPT extended RCODE");
            assert_eq!(edns.version(), 0, "{ctx}: our version");
            assert!(m.answers.is_empty(), "{ctx}: no answers");
        }
    }
}

#[tokio::test]
async fn rfc6891_udp_answer_over_1232_is_truncated() {
    let server = Server::start(&[]);
    let c = common::udp_client(server.addr()).await;
    let r = query(&c, "big.example.com.", RecordType::TXT, None, Some(4096)).await;
    assert!(r.metadata.truncation, "TC=1\n{}", describe(&r));
    assert!(r.answers.is_empty(), "no partial RRset");
    assert!(
        r.as_buffer().len() <= 1232,
        "UDP response of {} octets exceeds our 1232",
        r.as_buffer().len()
    );
    assert_eq!(r.queries.len(), 1, "question kept");
    assert!(r.edns.is_some(), "OPT kept in the truncated response");

    // Same with a hand-built query, measuring the datagram itself.
    let packet = wire::query(
        0x0bbb,
        "big.example.com",
        wire::QTYPE_TXT,
        Some(wire::opt(4096, 0, false, &[])),
    );
    let raw = udp_exchange(server.addr(), &packet, RAW_DEADLINE).expect("UDP response");
    assert!(raw.len() <= 1232, "datagram of {} octets", raw.len());
    assert!(wire::tc(&raw), "TC=1");
    assert_eq!(wire::count(&raw, 1), 0, "ANCOUNT 0");
    assert_eq!(wire::rcode_low(&raw), 0, "NOERROR");
}

#[tokio::test]
async fn rfc7766_tcp_carries_the_full_answer() {
    let server = Server::start(&[]);
    let c = common::tcp_client(server.addr()).await;
    for payload in [Some(4096), None] {
        let r = query(&c, "big.example.com.", RecordType::TXT, None, payload).await;
        let ctx = format!("TCP payload {payload:?}");
        assert!(!r.metadata.truncation, "{ctx}: TC clear");
        assert_eq!(r.answers.len(), 8, "{ctx}: all 8 TXT records");
        assert!(
            r.as_buffer().len() > 1500,
            "{ctx}: response of {} octets",
            r.as_buffer().len()
        );
        let mut parts: Vec<u32> = r
            .answers
            .iter()
            .map(|rec| match &rec.data {
                RData::TXT(txt) => {
                    let text = String::from_utf8_lossy(&txt.txt_data[0]).to_string();
                    text.strip_prefix("part ")
                        .and_then(|s| s.split(':').next())
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| panic!("{ctx}: unexpected TXT {text:?}"))
                }
                other => panic!("{ctx}: answer holds {other:?}"),
            })
            .collect();
        parts.sort();
        assert_eq!(parts, (1..=8).collect::<Vec<_>>(), "{ctx}: parts 1-8");
    }
}

#[test]
fn rfc1035_udp_without_edns_is_limited_to_512() {
    let server = Server::start(&[]);
    // Too big for 512: the question alone, TC=1, and no OPT since the query had none.
    let packet = wire::query(0x0512, "big.example.com", wire::QTYPE_TXT, None);
    let r = udp_exchange(server.addr(), &packet, RAW_DEADLINE).expect("UDP response");
    assert!(r.len() <= 512, "datagram of {} octets", r.len());
    assert!(wire::tc(&r), "TC=1");
    assert_eq!(wire::count(&r, 1), 0, "ANCOUNT 0");
    assert_eq!(wire::count(&r, 3), 0, "ARCOUNT 0: no OPT");

    // An advertised payload below 512 counts as 512 (RFC 6891 §6.2.5).
    let packet = wire::query(
        0x0513,
        "big.example.com",
        wire::QTYPE_TXT,
        Some(wire::opt(100, 0, false, &[])),
    );
    let r = udp_exchange(server.addr(), &packet, RAW_DEADLINE).expect("UDP response");
    assert!(r.len() <= 512, "datagram of {} octets", r.len());
    assert!(wire::tc(&r), "TC=1");

    // Answers that fit are not truncated.
    for opt in [None, Some(wire::opt(100, 0, false, &[]))] {
        let packet = wire::query(0x0514, "example.com", wire::QTYPE_NS, opt.clone());
        let r = udp_exchange(server.addr(), &packet, RAW_DEADLINE).expect("UDP response");
        let m = parse("apex NS", &r);
        assert!(
            !m.metadata.truncation,
            "apex NS fits 512 (OPT {})",
            opt.is_some()
        );
        assert_eq!(m.answers.len(), 2, "apex NS answered");
        assert!(r.len() <= 512, "{} octets", r.len());
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 1035 §4.1.1: NOTIMP and FORMERR

#[test]
fn rfc1035_notimp_for_opcodes_other_than_query() {
    let server = Server::start(&[]);
    // IQUERY (obsolete, RFC 3425), STATUS, unassigned, NOTIFY, UPDATE, DSO, unassigned.
    for opcode in [1u16, 2, 3, 4, 5, 6, 15] {
        let id = 0x7000 + opcode;
        let mut packet = wire::header(id, opcode << 11, 1, 0, 0, 0);
        packet.extend(wire::question("example.com", 6, wire::CLASS_IN));
        for (t, r) in raw_both(server.addr(), &packet) {
            let ctx = format!("{t} opcode {opcode}");
            let r = r.unwrap_or_else(|| panic!("{ctx}: no response, expected NOTIMP"));
            assert_eq!(wire::id(&r), id, "{ctx}: ID");
            assert!(wire::is_response(&r), "{ctx}: QR");
            assert_eq!(wire::opcode(&r), opcode as u8, "{ctx}: opcode echoed");
            assert_eq!(
                wire::rcode_low(&r),
                4,
                "{ctx}: NOTIMP, got header {:02x?}",
                &r[..12.min(r.len())]
            );
        }
    }
    // The same through hickory's message type.
    let mut msg = query_message("example.com.", RecordType::SOA, None, None);
    msg.metadata.op_code = OpCode::Status;
    let bytes = msg.to_vec().unwrap();
    for (t, r) in raw_both(server.addr(), &bytes) {
        let m = parse(t, &r.unwrap_or_else(|| panic!("{t}: no response")));
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp, "{t}");
        assert_eq!(m.metadata.op_code, OpCode::Status, "{t}");
    }
}

/// RFC 8906 §3.1.4: "NOTIMP is the expected rcode to an unknown or unimplemented opcode",
/// and "there is no requirement that anything other than the DNS header match": the reply is
/// the header alone, with the ID and opcode (RFC 1035 §4.1.1: "copied into the response")
/// and none of the query's flags, whose meaning an opcode we do not implement may redefine
/// (RFC 2136 §2.2 makes them Z in UPDATE: "Should be zero (0) in all requests and responses").
#[test]
fn rfc8906_unknown_opcodes_get_a_bare_notimp_header() {
    let server = Server::start(&[]);
    // AA, TC, RD; Z, AD, CD: every flag a query can carry.
    const FLAGS: u16 = 0x0770;
    for opcode in [1u16, 2, 3, 4, 5, 6, 15] {
        let id = 0x7100 + opcode;
        let mut edns = wire::header(id, (opcode << 11) | FLAGS, 1, 0, 0, 1);
        edns.extend(wire::question("example.com", 6, wire::CLASS_IN));
        edns.extend(wire::opt(1232, 0, true, &[]));
        // A body that is no question at all: the header is all an unknown opcode promises.
        let mut garbage = wire::header(id, (opcode << 11) | FLAGS, 3, 0, 0, 0);
        garbage.extend([0xff, 0xfe, 0x01]);
        for (what, packet) in [("with EDNS", &edns), ("garbage body", &garbage)] {
            for (t, r) in raw_both(server.addr(), packet) {
                let ctx = format!("{t} opcode {opcode} {what}");
                let r = r.unwrap_or_else(|| panic!("{ctx}: no response, expected NOTIMP"));
                let [hi, lo] = id.to_be_bytes();
                let flags = 0x80 | (opcode as u8) << 3;
                assert_eq!(
                    r,
                    [hi, lo, flags, 4, 0, 0, 0, 0, 0, 0, 0, 0],
                    "{ctx}: ID, QR, opcode, NOTIMP and nothing else"
                );
            }
        }
    }
}

#[test]
fn rfc1035_formerr_for_undecodable_packet_keeps_id() {
    let server = Server::start(&[]);
    let mut rng = XorShift::new(0x1035);
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let hdr = |qd, an, ns, ar| wire::header(0x4d2e, 0x0100, qd, an, ns, ar);
    cases.push(("header claims a question it lacks", hdr(1, 0, 0, 0)));
    let mut p = hdr(1, 0, 0, 0);
    p.extend_from_slice(&[7, b'e', b'x', b'a']);
    cases.push(("name cut inside a label", p));
    let mut p = hdr(1, 0, 0, 0);
    p.extend(wire::name("example.com"));
    cases.push(("question without type and class", p));
    let mut p = hdr(1, 0, 0, 0);
    p.extend(wire::name("example.com"));
    p.extend_from_slice(&[0, 1]);
    cases.push(("question cut inside the class", p));
    let mut p = hdr(1, 0, 0, 0);
    p.extend_from_slice(&[0x41, b'a', 0, 0, 1, 0, 1]);
    cases.push(("reserved label type 0x40", p));
    let mut p = hdr(1, 0, 0, 0);
    p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    cases.push(("compression pointer to itself", p));
    let mut p = hdr(1, 0, 0, 0);
    p.extend_from_slice(&[0xc0, 200, 0, 1, 0, 1]);
    cases.push(("compression pointer past the end", p));
    let mut p = hdr(1, 1, 0, 0);
    p.extend(wire::question("example.com", 1, 1));
    cases.push(("answer count without an answer", p));
    let mut p = hdr(1, 0, 0, 1);
    p.extend(wire::question("example.com", 1, 1));
    p.extend_from_slice(&[0, 0, 41, 4, 0]);
    cases.push(("OPT cut short", p));
    let mut p = hdr(1, 0, 0, 2);
    p.extend(wire::question("example.com", 1, 1));
    p.extend(wire::opt(1232, 0, false, &[]));
    p.extend(wire::opt(1232, 0, false, &[]));
    cases.push(("two OPT records (RFC 6891 §6.1.1)", p));
    let mut p = hdr(0xffff, 0xffff, 0xffff, 0xffff);
    p.extend(rng.bytes(40));
    cases.push(("all counts 65535 and garbage", p));
    cases.push(("QDCOUNT 65535 in a bare header", hdr(0xffff, 0, 0, 0)));
    for i in 0..8 {
        let mut p = wire::header(0x4d30 + i, 0, 1, 0, 0, 0);
        let len = 1 + rng.below(60);
        p.extend(rng.bytes(len).iter().map(|b| b | 0x40));
        cases.push(("header then random label bytes", p));
    }

    for (what, packet) in &cases {
        for (t, r) in raw_both(server.addr(), packet) {
            let ctx = format!("{t} {what}");
            assert_formerr(&ctx, packet, r.clone());
            if packet[2] & 0x01 != 0 {
                assert!(r.unwrap()[2] & 0x01 != 0, "{ctx}: RD copied");
            }
        }
    }
}

#[test]
fn rfc1035_formerr_for_question_count_other_than_one() {
    let server = Server::start(&[]);
    let mut two = wire::header(0x0002, 0, 2, 0, 0, 0);
    two.extend(wire::question("static.example.com", wire::QTYPE_A, 1));
    two.extend(wire::question("static.example.com", wire::QTYPE_AAAA, 1));
    let zero = wire::header(0x0000, 0, 0, 0, 0, 0);
    let mut zero_with_opt = wire::header(0x0001, 0, 0, 0, 0, 1);
    zero_with_opt.extend(wire::opt(1232, 0, false, &[]));
    for (what, packet) in [
        ("two questions", two),
        ("zero questions", zero),
        ("zero questions with OPT", zero_with_opt),
    ] {
        for (t, r) in raw_both(server.addr(), &packet) {
            let ctx = format!("{t} {what}");
            assert_formerr(&ctx, &packet, r.clone());
            let r = r.unwrap();
            // RFC 9619 §4: no message with opcode QUERY, responses included, holds more than
            // one question.
            assert!(r[4..6] <= [0, 1][..], "{ctx}: QDCOUNT {:02x?}", &r[4..6]);
            let m = parse(&ctx, &r);
            assert!(m.answers.is_empty(), "{ctx}: no answers");
        }
    }
}

/// A query for www.example.com A carrying one ECS option built from the given fields.
fn ecs_query(id: u16, family: u16, source: u8, address: &[u8]) -> Vec<u8> {
    let opt = wire::opt(1232, 0, false, &[wire::ecs(family, source, 0, address)]);
    wire::query(id, "www.example.com", wire::QTYPE_A, Some(opt))
}

#[test]
fn rfc7871_formerr_for_source_prefix_too_long() {
    let server = Server::start(&[]);
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "IPv4 /33, 5 octets",
            ecs_query(0x7871, 1, 33, &[10, 0, 0, 0, 0]),
        ),
        (
            "IPv4 /33, 4 octets",
            ecs_query(0x7872, 1, 33, &[10, 0, 0, 0]),
        ),
        (
            "IPv6 /129, 17 octets",
            ecs_query(0x7873, 2, 129, &[0x20; 17]),
        ),
        ("unknown family 3", ecs_query(0x7874, 3, 8, &[10])),
    ];
    for (what, packet) in &cases {
        for (t, r) in raw_both(server.addr(), packet) {
            assert_formerr(&format!("{t} {what}"), packet, r);
        }
    }
}

#[test]
fn rfc7871_formerr_for_address_bits_beyond_source_prefix() {
    let server = Server::start(&[]);
    // 10.1.255.0/20 as 10,1,255: the low four bits of 255 lie beyond /20.
    let bad: [(&str, Vec<u8>); 3] = [
        ("10.1.255.0/20", ecs_query(0x7880, 1, 20, &[10, 1, 255])),
        (
            "10.1.2.1/24 sent as /23",
            ecs_query(0x7881, 1, 23, &[10, 1, 3]),
        ),
        (
            "2001:db8:ff00::/33",
            ecs_query(0x7882, 2, 33, &[0x20, 0x01, 0x0d, 0xb8, 0xff]),
        ),
    ];
    for (what, packet) in &bad {
        for (t, r) in raw_both(server.addr(), packet) {
            assert_formerr(&format!("{t} {what}"), packet, r);
        }
    }
    // The same prefixes with clean addresses are answered.
    let good: [(&str, Vec<u8>); 3] = [
        ("10.1.240.0/20", ecs_query(0x7883, 1, 20, &[10, 1, 240])),
        ("10.1.2.0/23", ecs_query(0x7884, 1, 23, &[10, 1, 2])),
        (
            "2001:db8:8000::/33",
            ecs_query(0x7885, 2, 33, &[0x20, 0x01, 0x0d, 0xb8, 0x80]),
        ),
    ];
    for (what, packet) in &good {
        for (t, r) in raw_both(server.addr(), packet) {
            let ctx = format!("{t} {what}");
            let r = r.unwrap_or_else(|| panic!("{ctx}: no response"));
            assert_eq!(wire::rcode_low(&r), 0, "{ctx}: NOERROR");
            assert_eq!(wire::count(&r, 1), 1, "{ctx}: answered");
        }
    }
}

#[test]
fn rfc7871_formerr_for_wrong_address_length() {
    let server = Server::start(&[]);
    let bad: [(&str, Vec<u8>); 5] = [
        (
            "IPv4 /24 with 4 octets",
            ecs_query(0x7890, 1, 24, &[10, 1, 2, 0]),
        ),
        ("IPv4 /0 with 1 octet", ecs_query(0x7891, 1, 0, &[0])),
        ("IPv4 /24 with 2 octets", ecs_query(0x7892, 1, 24, &[10, 1])),
        (
            "IPv6 /48 with 16 octets",
            ecs_query(0x7893, 2, 48, &[0; 16]),
        ),
        ("ECS option of 3 octets", {
            let opt = wire::opt(1232, 0, false, &[(wire::ECS, vec![0, 1, 24])]);
            wire::query(0x7894, "www.example.com", wire::QTYPE_A, Some(opt))
        }),
    ];
    for (what, packet) in &bad {
        for (t, r) in raw_both(server.addr(), packet) {
            assert_formerr(&format!("{t} {what}"), packet, r);
        }
    }
    let good = ecs_query(0x7895, 1, 0, &[]);
    for (t, r) in raw_both(server.addr(), &good) {
        let r = r.unwrap_or_else(|| panic!("{t}: no response to /0"));
        assert_eq!(
            wire::rcode_low(&r),
            0,
            "{t}: /0 with no address octets is fine"
        );
    }
}

#[test]
fn rfc1035_no_response_to_short_packets_or_to_responses() {
    let server = Server::start(&[]);
    let mut ignored: Vec<Vec<u8>> = (0..12).map(|n| vec![0x01; n]).collect();
    let mut response = wire::query(0x0bad, "static.example.com", wire::QTYPE_A, None);
    response[2] |= 0x80; // QR: a response
    ignored.push(response);
    let mut aa_response = wire::query(0x0bae, "static.example.com", wire::QTYPE_A, None);
    aa_response[2] |= 0x84;
    ignored.push(aa_response);
    let good = wire::query(0x600d, "static.example.com", wire::QTYPE_A, None);

    // UDP: nothing comes back for the ignored packets; the next query is answered.
    let udp = RawUdp::connect(server.addr());
    for p in &ignored {
        udp.send(p);
    }
    udp.send(&good);
    let r = udp
        .recv(RAW_DEADLINE)
        .expect("the normal query is answered");
    assert_eq!(
        wire::id(&r),
        0x600d,
        "the first UDP response answers the normal query"
    );
    assert_eq!(wire::rcode_low(&r), 0);
    assert_eq!(wire::count(&r, 1), 1);
    assert!(udp.recv(SILENCE).is_none(), "no further UDP response");

    // TCP: the same frames on one connection; it stays usable.
    let mut tcp = RawTcp::connect(server.addr());
    for p in &ignored {
        tcp.send(p);
    }
    let r = tcp
        .exchange(&good, RAW_DEADLINE)
        .expect("TCP answers after them");
    assert_eq!(
        wire::id(&r),
        0x600d,
        "the first TCP response answers the normal query"
    );
    assert_eq!(wire::count(&r, 1), 1);
    let again = wire::query(0x600e, "static.example.com", wire::QTYPE_AAAA, None);
    let r = tcp
        .exchange(&again, RAW_DEADLINE)
        .expect("TCP connection still open");
    assert_eq!(wire::id(&r), 0x600e);
    assert!(tcp.recv(SILENCE).is_none(), "no further TCP message");
}

// ---------------------------------------------------------------------------------------------
// RFC 7871: EDNS Client Subnet

#[tokio::test]
async fn rfc7871_ecs_steers_to_nearest_region() {
    let server = Server::start(&[]);
    for (t, c) in clients(server.addr()).await {
        for &(net, country, region) in STEERING {
            let sent: IpNet = net.parse().unwrap();
            for (rtype, want) in [(RecordType::A, region.v4), (RecordType::AAAA, region.v6)] {
                let ctx = format!("{t} ECS {net} ({country}) {rtype}");
                let (m, ips) = steered(&c, "www.example.com.", rtype, net).await;
                assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{ctx}");
                assert_eq!(
                    ips,
                    [ip(want)],
                    "{ctx}: expected {} ({want})\n{}",
                    region.name,
                    describe(&m)
                );
                let scope = assert_ecs_echo(&ctx, &m, sent);
                assert!(
                    scope > 0 && scope <= sent.prefix_len(),
                    "{ctx}: scope /{scope} not in 1..=/{}",
                    sent.prefix_len()
                );
            }
        }
    }
}

#[tokio::test]
async fn rfc7871_scope_zero_for_answers_that_do_not_depend_on_the_client() {
    let server = Server::start(&[]);
    for (t, c) in clients(server.addr()).await {
        for ecs in ["81.2.69.0/24", "2400:4050:1::/48"] {
            for (qname, rtype) in [
                ("static.example.com.", RecordType::A),
                ("static.example.com.", RecordType::AAAA),
                ("example.com.", RecordType::MX),
                ("nope.example.com.", RecordType::A),
            ] {
                let ctx = format!("{t} {qname} {rtype} ECS {ecs}");
                let r = query(&c, qname, rtype, Some(ecs), Some(1232)).await;
                let scope = assert_ecs_echo(&ctx, &r, ecs.parse().unwrap());
                assert_eq!(scope, 0, "{ctx}: scope 0 for an answer valid for everyone");
            }
        }
        let r = query(
            &c,
            "static.example.com.",
            RecordType::A,
            Some("8.8.8.0/24"),
            Some(1232),
        )
        .await;
        assert_eq!(
            answer_ips(&r),
            [ip("192.0.2.80")],
            "{t}: static ignores ECS"
        );
    }
}

#[tokio::test]
async fn rfc7871_source_prefix_zero_answers_by_resolver_with_scope_zero() {
    let server = Server::start(&[]);
    for (t, c) in clients(server.addr()).await {
        for (ecs, rtype, want) in [
            ("0.0.0.0/0", RecordType::A, US_EAST.v4),
            ("0.0.0.0/0", RecordType::AAAA, US_EAST.v6),
            ("::/0", RecordType::A, US_EAST.v4),
            ("::/0", RecordType::AAAA, US_EAST.v6),
        ] {
            // The resolver is 127.0.0.1: no location, so the default region answers.
            let ctx = format!("{t} ECS {ecs} {rtype}");
            let (m, ips) = steered(&c, "www.example.com.", rtype, ecs).await;
            assert_eq!(ips, [ip(want)], "{ctx}\n{}", describe(&m));
            let scope = assert_ecs_echo(&ctx, &m, ecs.parse().unwrap());
            assert_eq!(
                scope, 0,
                "{ctx}: scope 0 when the client withholds its subnet"
            );
        }
    }
}

#[tokio::test]
async fn rfc7871_unknown_network_gets_default_region_with_nonzero_scope() {
    let server = Server::start(&[]);
    for (t, c) in clients(server.addr()).await {
        for ecs in ["10.0.0.0/8", "10.1.2.0/24", "100.64.7.0/24"] {
            for (rtype, want) in [(RecordType::A, US_EAST.v4), (RecordType::AAAA, US_EAST.v6)] {
                let ctx = format!("{t} ECS {ecs} {rtype}");
                let sent: IpNet = ecs.parse().unwrap();
                let (m, ips) = steered(&c, "www.example.com.", rtype, ecs).await;
                assert_eq!(ips, [ip(want)], "{ctx}: default region\n{}", describe(&m));
                let scope = assert_ecs_echo(&ctx, &m, sent);
                assert!(
                    scope > 0 && scope <= sent.prefix_len(),
                    "{ctx}: scope /{scope}: the answer depends on the subnet, so not 0"
                );
            }
        }
    }
}

/// `count` networks of prefix `len` inside `base`/`scope`: the start of the other half, the
/// last one, and random ones.
fn probes_inside(base: IpNet, scope: u8, len: u8, rng: &mut XorShift, count: usize) -> Vec<IpNet> {
    let bits: u8 = if base.addr().is_ipv4() { 32 } else { 128 };
    let to_int = |a: IpAddr| match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    };
    let from_int = |n: u128| -> IpAddr {
        if bits == 32 {
            IpAddr::V4((n as u32).into())
        } else {
            IpAddr::V6(n.into())
        }
    };
    let host_mask = |prefix: u8| -> u128 {
        if prefix >= bits {
            0
        } else {
            (u128::MAX >> (128 - u32::from(bits))) >> prefix
        }
    };
    let start = to_int(base.addr()) & !host_mask(scope);
    let mut out = Vec::new();
    let mut add = |n: u128| {
        let net = IpNet::new(from_int(n), len).unwrap().trunc();
        if !out.contains(&net) && net != base.trunc() {
            out.push(net);
        }
    };
    if scope < len {
        add(start | (1u128 << (bits - scope - 1)));
        add(start | host_mask(scope));
    }
    for _ in 0..count {
        let r = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
        add(start | (r & host_mask(scope)));
    }
    out
}

#[tokio::test]
async fn rfc7871_answer_is_the_same_throughout_the_returned_scope() {
    let server = Server::start(&[]);
    // The compiled scopes: the widest claims the server makes.
    common::wait_compiled(&server);
    let mut rng = XorShift::new(7871);
    // Each answer is cached by resolvers for every client inside the returned scope
    // (RFC 7871 §7.3.1), so every network inside it must get the same answer.
    let networks = [
        "8.8.8.0/24",
        "99.224.10.0/24",
        "81.2.69.0/24",
        "90.0.12.0/24",
        "133.11.0.0/24",
        "196.25.1.0/24",
        "10.1.2.0/24",
        "2a00:1450:4001::/48",
        "2400:4050:1::/48",
        // A /32 spans networks that go to different regions: its scope is capped at the
        // source (see the next test), so it has no place here.
        "2001:470:1::/48",
    ];
    let mut failures = Vec::new();
    for (t, c) in clients(server.addr()).await {
        for net in networks {
            let sent: IpNet = net.parse().unwrap();
            let probe_len = if sent.addr().is_ipv4() { 24 } else { 48 };
            for rtype in [RecordType::A, RecordType::AAAA] {
                let ctx = format!("{t} ECS {net} {rtype}");
                let (m, ips) = steered(&c, "www.example.com.", rtype, net).await;
                let scope = assert_ecs_echo(&ctx, &m, sent);
                assert!(scope > 0, "{ctx}: steered answer with scope 0");
                for probe in
                    probes_inside(sent, scope, probe_len.max(sent.prefix_len()), &mut rng, 6)
                {
                    let (pm, pips) =
                        steered(&c, "www.example.com.", rtype, &probe.to_string()).await;
                    if pips != ips {
                        failures.push(format!(
                            "{ctx}: answered {ips:?} with scope /{scope}, but {probe} inside \
                             that scope is answered {pips:?} (scope /{})",
                            response_ecs(&pm).map_or(0, |e| e.scope_prefix())
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// When the resolver sends a source prefix shorter than the GeoIP network that decides, the
/// answer cannot be uniform over the source and the scope may not exceed it (the rule this
/// project follows; RFC 7871 §7.2.1 would allow longer): the scope is the source prefix.
#[tokio::test]
async fn rfc7871_scope_is_capped_at_a_source_prefix_that_spans_networks() {
    let server = Server::start(&[]);
    for (t, c) in clients(server.addr()).await {
        // 177.0.0.0/18 is Brazil; 177.0.128.0/24, in the same /16, is Hong Kong.
        let net = "177.0.0.0/16";
        let (m, ips) = steered(&c, "www.example.com.", RecordType::A, net).await;
        let scope = assert_ecs_echo(&format!("{t} {net}"), &m, net.parse().unwrap());
        assert_eq!(scope, 16, "{t}");
        assert_eq!(
            ips,
            vec!["192.0.2.10".parse::<std::net::IpAddr>().unwrap()],
            "{t}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Robustness

#[tokio::test]
async fn rfc1035_survives_a_burst_of_malformed_udp_packets() {
    let mut server = Server::start(&[]);
    let addr = server.addr();
    let templates: Vec<Vec<u8>> = vec![
        wire::query(1, "static.example.com", wire::QTYPE_A, None),
        wire::query(
            2,
            "www.example.com",
            wire::QTYPE_A,
            Some(wire::opt(
                1232,
                0,
                false,
                &[wire::ecs(1, 24, 0, &[81, 2, 69])],
            )),
        ),
        wire::query(
            3,
            "www.example.com",
            wire::QTYPE_AAAA,
            Some(wire::opt(
                4096,
                0,
                true,
                &[wire::ecs(2, 48, 0, &[0x2a, 0x00, 0x14, 0x50, 0x40, 0x01])],
            )),
        ),
        wire::query(
            4,
            "big.example.com",
            wire::QTYPE_TXT,
            Some(wire::opt(4096, 0, false, &[])),
        ),
        wire::query(5, "example.com", 255, None),
        wire::query(6, "x.lab.example.com", wire::QTYPE_A, None),
        wire::query(7, "alias.example.com", wire::QTYPE_A, None),
    ];

    let burst = tokio::task::spawn_blocking(move || {
        let mut rng = XorShift::new(0x5eed_f022);
        let udp = RawUdp::connect(addr);
        let mut sent_ids = HashSet::new();
        let mut responses = Vec::new();
        for i in 0..2000usize {
            let mut p = match rng.below(4) {
                0 => {
                    let len = rng.below(600);
                    rng.bytes(len)
                }
                1 => {
                    let mut p = templates[rng.below(templates.len())].clone();
                    for _ in 0..1 + rng.below(8) {
                        let at = rng.below(p.len());
                        p[at] ^= 1 << rng.below(8);
                    }
                    p
                }
                2 => {
                    let p = &templates[rng.below(templates.len())];
                    p[..rng.below(p.len() + 1)].to_vec()
                }
                _ => {
                    let mut p = templates[rng.below(templates.len())].clone();
                    let field = 4 + 2 * rng.below(4);
                    p[field] = rng.byte() % 4;
                    p[field + 1] = rng.byte();
                    let extra = rng.below(64);
                    p.extend(rng.bytes(extra));
                    if rng.below(2) == 0 {
                        let at = 12 + rng.below(p.len() - 12);
                        p[at] = rng.byte();
                    }
                    p
                }
            };
            if p.len() >= 3 && rng.below(4) != 0 {
                p[2] &= 0x7f; // mostly queries, so the parser runs
            }
            if p.len() >= 2 {
                p[0] = (i >> 8) as u8;
                p[1] = i as u8;
                sent_ids.insert(i as u16);
            }
            udp.send(&p);
            if i % 50 == 49 {
                while let Some(r) = udp.recv(Duration::from_millis(5)) {
                    responses.push(r);
                }
            }
        }
        while let Some(r) = udp.recv(SILENCE) {
            responses.push(r);
        }
        (sent_ids, responses)
    });
    let (sent_ids, responses) = tokio::time::timeout(Duration::from_secs(120), burst)
        .await
        .expect("burst finished in time")
        .expect("burst thread");

    server.assert_running();
    assert!(!responses.is_empty(), "some fuzzed queries were answered");
    for r in &responses {
        assert!(r.len() >= 12, "response shorter than a header: {r:02x?}");
        assert!(wire::is_response(r), "QR set in every response");
        assert!(r.len() <= 1232, "UDP response of {} octets", r.len());
        assert!(
            sent_ids.contains(&wire::id(r)),
            "response ID {} was never sent",
            wire::id(r)
        );
    }

    // Still answering, correctly, on both transports.
    let check = wire::query(0xc0de, "static.example.com", wire::QTYPE_A, None);
    let r = udp_exchange(addr, &check, RAW_DEADLINE).expect("UDP answer after the burst");
    let m = parse("after burst", &r);
    assert_eq!(m.metadata.id, 0xc0de);
    assert_eq!(answer_ips(&m), [ip("192.0.2.80")]);
    for (t, c) in clients(addr).await {
        let (m, ips) = steered(&c, "www.example.com.", RecordType::A, "81.2.69.0/24").await;
        assert_eq!(
            ips,
            [ip(EU_WEST.v4)],
            "{t} after the burst\n{}",
            describe(&m)
        );
    }
    server.assert_running();
}

#[test]
fn rfc7766_tcp_survives_garbage_after_a_length_prefix() {
    let mut server = Server::start(&[]);
    let addr = server.addr();
    let mut rng = XorShift::new(7766);
    let good = wire::query(0x0777, "static.example.com", wire::QTYPE_A, None);

    // A frame of garbage behind a decodable-looking header: FORMERR, and the connection lives.
    let mut tcp = RawTcp::connect(addr);
    let mut garbage = wire::header(0xbeef, 0x0100, 0xffff, 0xffff, 0, 0);
    garbage.extend(rng.bytes(288));
    let r = tcp.exchange(&garbage, RAW_DEADLINE);
    assert_formerr("TCP garbage frame", &garbage, r);
    let r = tcp
        .exchange(&good, RAW_DEADLINE)
        .expect("answered after garbage");
    assert_eq!(wire::id(&r), 0x0777);
    assert_eq!(wire::count(&r, 1), 1);

    // An empty frame is skipped.
    tcp.send(&[]);
    let r = tcp
        .exchange(&good, RAW_DEADLINE)
        .expect("answered after an empty frame");
    assert_eq!(wire::id(&r), 0x0777);

    // A length prefix promising more than arrives, then end of stream: the server closes.
    let mut tcp = RawTcp::connect(addr);
    tcp.send_raw(&4096u16.to_be_bytes());
    tcp.send_raw(&rng.bytes(100));
    tcp.stream
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    assert!(
        tcp.closed_within(RAW_DEADLINE),
        "server closes a connection that ends inside a frame"
    );

    // A raw stream of random bytes (random lengths, random contents), then close.
    for _ in 0..8 {
        let mut tcp = RawTcp::connect(addr);
        tcp.send_raw(&rng.bytes(2048));
        drop(tcp);
    }

    server.assert_running();
    let r = tcp_exchange(addr, &good, RAW_DEADLINE).expect("new TCP connection answered");
    assert_eq!(wire::id(&r), 0x0777);
    assert_eq!(wire::count(&r, 1), 1);
    let r = udp_exchange(addr, &good, RAW_DEADLINE).expect("UDP answered");
    assert_eq!(wire::id(&r), 0x0777);
}

// ---------------------------------------------------------------------------------------------
// IPv6 listener

#[tokio::test]
async fn rfc3596_served_over_an_ipv6_listener() {
    let server = Server::start(&["--dns-listen", "[::1]:0"]);
    assert_eq!(server.addrs().len(), 2, "two listeners");
    let v6 = server.addrs()[1];
    assert_eq!(v6.ip(), ip("::1"), "second listener on ::1");
    assert_ne!(v6.port(), 0, "a real port");
    assert!(server.addrs()[0].is_ipv4(), "first listener on 127.0.0.1");

    for (t, c) in clients(v6).await {
        let r = query(
            &c,
            "static.example.com.",
            RecordType::AAAA,
            None,
            Some(1232),
        )
        .await;
        assert_eq!(answer_ips(&r), [ip("2001:db8::80")], "{t} over ::1");
        assert!(r.metadata.authoritative, "{t}: AA");
        let (m, ips) = steered(&c, "www.example.com.", RecordType::A, "81.2.69.0/24").await;
        assert_eq!(ips, [ip(EU_WEST.v4)], "{t} ECS over ::1\n{}", describe(&m));
        // No ECS: the resolver ::1 has no location, so the default region answers.
        let r = query(&c, "www.example.com.", RecordType::AAAA, None, Some(1232)).await;
        assert_eq!(answer_ips(&r), [ip(US_EAST.v6)], "{t} by resolver ::1");
        let r = query(&c, "nope.example.com.", RecordType::A, None, Some(1232)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{t}");
    }
    // The IPv4 listener still serves.
    let c = common::udp_client(server.addr()).await;
    let r = query(&c, "static.example.com.", RecordType::A, None, Some(1232)).await;
    assert_eq!(answer_ips(&r), [ip("192.0.2.80")]);
}
