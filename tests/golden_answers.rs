//! Golden answers: the real binary's DNS responses, byte for byte, against the committed
//! `tests/golden/answers.txt`, so that a rewrite of the response path can prove it changed
//! nothing (routinator's `test/output/`). `MERIDIAN_REGENERATE_GOLDEN=1 cargo test --test
//! golden_answers` rewrites the file instead of comparing; review its diff like code.
//!
//! One server runs five phases, each sending its queries over UDP and then over one TCP
//! connection: (1) every region up; (2) eu-west drained; (3) also us-east's IPv4 and
//! ap-southeast's IPv6 endpoint forced down; (4) all undone; (5) after a reload that adds
//! `probed.test.`, whose probed regions check a loopback port that refuses connections: its
//! names over both transports, the shipped zone's core cases again over UDP.
//!
//! The rule a reader must know: every input of an answer is fixed. The queries come from
//! seeded generators; the client sends from 127.0.0.77 and fixed ports, because equal-weight
//! endpoints rotate by `query id ^ (source port << 16)`; the probed regions start down and
//! their probes always fail, so they never change state (no trouble TTL). The one thing that
//! varies is the server cookie (a timestamp and a hash under a secret made at start), zeroed
//! in the recorded response. Each query is followed by a sentinel query, so a query the
//! server leaves unanswered reads as `-` at once instead of after a timeout.

mod common;

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use ipnet::IpNet;
use serde_json::Value;
use socket2::{Domain, Protocol, Socket, Type};

use common::{RAW_DEADLINE, RawTcp, Server, XorShift, wire};

/// Set to `1` to rewrite the golden file from this run.
const REGENERATE: &str = "MERIDIAN_REGENERATE_GOLDEN";
const GOLDEN: &str = "tests/golden/answers.txt";

/// The client's address and ports: fixed, since the rotation seed holds the source port.
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 77);
const UDP_PORT: u16 = 45353;
/// Phase `n` (1-based) connects over TCP from `TCP_PORT_BASE + n`: a fresh 4-tuple per phase,
/// clear of the previous phase's TIME_WAIT.
const TCP_PORT_BASE: u16 = 45360;

/// The sentinel's ID; no case uses it.
const SENTINEL_ID: u16 = 0xffff;
/// Messages read at most while waiting for a sentinel's answer; more than one before it
/// fails the test.
const MAX_RESPONSES: usize = 3;

const TOKEN: &str = "golden-answers-token-0123456789";
/// How long the probed zone may take to show its regions probed and settled.
const SETTLE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(20);
/// Differing lines shown in full when the comparison fails.
const SHOWN: usize = 5;

// Record types and classes used below.
const A: u16 = 1;
const NS: u16 = 2;
const CNAME: u16 = 5;
const SOA: u16 = 6;
const MX: u16 = 15;
const TXT: u16 = 16;
const AAAA: u16 = 28;
const SRV: u16 = 33;
const OPT: u16 = 41;
const DS: u16 = 43;
const IXFR: u16 = 251;
const AXFR: u16 = 252;
const ANY: u16 = 255;
/// A type from the private-use range: nothing in any zone has it.
const UNKNOWN: u16 = 65280;
const IN: u16 = 1;
const CH: u16 = 3;

// Header flag bits (the second 16-bit word).
const QR: u16 = 0x8000;
const AA: u16 = 0x0400;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;
const Z: u16 = 0x0040;
const AD: u16 = 0x0020;
const CD: u16 = 0x0010;
const COOKIE: u16 = 10;

fn type_name(t: u16) -> String {
    let known = [
        (A, "A"),
        (NS, "NS"),
        (CNAME, "CNAME"),
        (SOA, "SOA"),
        (MX, "MX"),
        (TXT, "TXT"),
        (AAAA, "AAAA"),
        (SRV, "SRV"),
        (OPT, "OPT"),
        (DS, "DS"),
        (IXFR, "IXFR"),
        (AXFR, "AXFR"),
        (ANY, "ANY"),
    ];
    known
        .iter()
        .find(|(code, _)| *code == t)
        .map_or_else(|| format!("TYPE{t}"), |(_, name)| name.to_string())
}

fn flags_text(flags: u16) -> String {
    let mut parts: Vec<String> = Vec::new();
    let opcode = (flags >> 11) & 0xf;
    if opcode != 0 {
        parts.push(format!("opcode{opcode}"));
    }
    for (bit, name) in [
        (QR, "qr"),
        (AA, "aa"),
        (TC, "tc"),
        (RD, "rd"),
        (Z, "z"),
        (AD, "ad"),
        (CD, "cd"),
    ] {
        if flags & bit != 0 {
            parts.push(name.to_string());
        }
    }
    if flags & 0xf != 0 {
        parts.push(format!("rcode{}", flags & 0xf));
    }
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(",")
    }
}

// ---------------------------------------------------------------------------------------------
// Queries

/// One well-formed query, described in the golden file by what it asks.
#[derive(Clone)]
struct Ask {
    name: String,
    qtype: u16,
    class: u16,
    flags: u16,
    edns: Option<Opt>,
    note: String,
}

#[derive(Clone)]
struct Opt {
    payload: u16,
    version: u8,
    dnssec_ok: bool,
    options: Vec<(u16, Vec<u8>)>,
}

impl Ask {
    /// RD set and EDNS(0) with 1232 octets: what a resolver sends today.
    fn new(name: &str, qtype: u16) -> Ask {
        Ask {
            name: name.to_string(),
            qtype,
            class: IN,
            flags: RD,
            edns: Some(Opt {
                payload: 1232,
                version: 0,
                dnssec_ok: false,
                options: Vec::new(),
            }),
            note: String::new(),
        }
    }

    fn flags(mut self, flags: u16) -> Ask {
        self.flags = flags;
        self
    }

    fn class(mut self, class: u16) -> Ask {
        self.class = class;
        self
    }

    fn no_edns(mut self) -> Ask {
        self.edns = None;
        self
    }

    fn opt(mut self, change: impl FnOnce(&mut Opt)) -> Ask {
        change(self.edns.as_mut().expect("an EDNS query"));
        self
    }

    /// Adds an EDNS option, described by `note`.
    fn option(mut self, note: &str, option: (u16, Vec<u8>)) -> Ask {
        self = self.opt(|o| o.options.push(option));
        if !self.note.is_empty() {
            self.note.push(' ');
        }
        self.note.push_str(note);
        self
    }

    fn ecs(self, net: &str) -> Ask {
        self.option(&format!("ecs={net}"), ecs(net))
    }

    fn describe(&self) -> String {
        let mut s = format!("{} {}", self.name, type_name(self.qtype));
        if self.class != IN {
            write!(s, " class{}", self.class).unwrap();
        }
        write!(s, " flags={}", flags_text(self.flags)).unwrap();
        match &self.edns {
            None => s.push_str(" noedns"),
            Some(e) => {
                write!(s, " edns={}", e.payload).unwrap();
                if e.dnssec_ok {
                    s.push_str(",do");
                }
                if e.version != 0 {
                    write!(s, ",v{}", e.version).unwrap();
                }
            }
        }
        if !self.note.is_empty() {
            write!(s, " {}", self.note).unwrap();
        }
        s
    }

    fn packet(&self, id: u16) -> Vec<u8> {
        let mut p = wire::header(id, self.flags, 1, 0, 0, u16::from(self.edns.is_some()));
        p.extend(wire::question(&self.name, self.qtype, self.class));
        if let Some(e) = &self.edns {
            p.extend(wire::opt(e.payload, e.version, e.dnssec_ok, &e.options));
        }
        p
    }
}

/// An ECS option (RFC 7871 §6) for `net`, which must be written truncated.
fn ecs(net: &str) -> (u16, Vec<u8>) {
    let parsed: IpNet = net.parse().expect("an ECS network");
    assert_eq!(parsed, parsed.trunc(), "{net} has bits beyond its prefix");
    let prefix = parsed.prefix_len();
    let (family, octets) = match parsed.addr() {
        std::net::IpAddr::V4(a) => (1, a.octets().to_vec()),
        std::net::IpAddr::V6(a) => (2, a.octets().to_vec()),
    };
    wire::ecs(
        family,
        prefix,
        0,
        &octets[..usize::from(prefix).div_ceil(8)],
    )
}

fn cookie(body: Vec<u8>) -> (u16, Vec<u8>) {
    (COOKIE, body)
}

/// `name` with a seeded mix of upper and lower case (0x20).
fn mixed_case(name: &str, rng: &mut XorShift) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphabetic() && rng.next_u64() & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// A query as sent, with the text the golden file shows for it.
struct Case {
    what: String,
    packet: Vec<u8>,
}

/// Builds cases, each with its own query ID from a seeded sequence.
struct Cases {
    ids: XorShift,
    list: Vec<Case>,
}

impl Cases {
    fn new(seed: u64) -> Cases {
        Cases {
            ids: XorShift::new(seed),
            list: Vec::new(),
        }
    }

    fn id(&mut self) -> u16 {
        // Bounded: a 64-bit xorshift never repeats one 16-bit value many times in a row.
        for _ in 0..16 {
            let id = self.ids.next_u64() as u16;
            if id != SENTINEL_ID {
                return id;
            }
        }
        panic!("the ID sequence is stuck on the sentinel's ID");
    }

    fn ask(&mut self, ask: Ask) {
        let id = self.id();
        self.list.push(Case {
            what: format!("id={id:04x} {}", ask.describe()),
            packet: ask.packet(id),
        });
    }

    /// A hand-built packet; `build` gets the ID (its first two octets, where it has them).
    fn raw(&mut self, what: &str, build: impl FnOnce(u16) -> Vec<u8>) {
        let id = self.id();
        let packet = build(id);
        assert!(
            packet.len() < 2 || wire::id(&packet) != SENTINEL_ID,
            "{what}: the sentinel's ID"
        );
        self.list.push(Case {
            what: format!("id={id:04x} raw: {what}"),
            packet,
        });
    }
}

const WWW: &str = "www.example.com.";
const STATIC: &str = "static.example.com.";
const APEX: &str = "example.com.";
const BIG: &str = "big.example.com.";
const NOPE: &str = "nope.example.com.";

/// Names of the shipped zone, and one outside every zone, asked with every type below.
const MATRIX_NAMES: [&str; 14] = [
    APEX,
    WWW,
    STATIC,
    "alias.example.com.",
    "mail.example.com.",
    "_dns._udp.example.com.",
    BIG,
    "lab.example.com.",
    "host.lab.example.com.",
    "b.example.com.",
    "a.b.example.com.",
    NOPE,
    "sub.www.example.com.",
    "example.org.",
];
const MATRIX_TYPES: [u16; 11] = [A, AAAA, TXT, MX, NS, SOA, SRV, CNAME, ANY, DS, UNKNOWN];

/// The queries every phase sends over both transports: names and types of the shipped zone,
/// EDNS, flags, 0x20, opcodes, classes, malformed packets, ECS and cookies.
fn core_cases() -> Vec<Case> {
    let mut c = Cases::new(0x601d_0001);
    let mut rng = XorShift::new(0x601d_0002);

    for name in MATRIX_NAMES {
        for qtype in MATRIX_TYPES {
            c.ask(Ask::new(name, qtype));
        }
    }
    for (name, qtype) in [
        ("ns1.lab.example.com.", A),
        ("*.example.com.", A),
        ("deep.nope.example.com.", A),
        ("ns1.example.com.", AAAA),
        ("com.", SOA),
        (".", NS),
        (APEX, AXFR),
        (APEX, IXFR),
    ] {
        c.ask(Ask::new(name, qtype));
    }

    // EDNS: none, payloads around the limits, DO, an unknown version (BADVERS).
    for (name, qtype) in [
        (WWW, A),
        (STATIC, A),
        (BIG, TXT),
        (APEX, NS),
        (NOPE, A),
        (APEX, ANY),
    ] {
        let ask = Ask::new(name, qtype);
        c.ask(ask.clone().no_edns());
        for payload in [512, 4096, 100] {
            c.ask(ask.clone().opt(|o| o.payload = payload));
        }
        c.ask(ask.clone().opt(|o| o.dnssec_ok = true));
        c.ask(ask.clone().opt(|o| {
            o.payload = 4096;
            o.dnssec_ok = true;
        }));
        c.ask(ask.clone().opt(|o| o.version = 1));
    }

    // Header flags: RD, CD and AD are the query's; AA, TC and Z in a query mean nothing.
    for (name, qtype) in [(WWW, A), (STATIC, AAAA), (NOPE, A)] {
        for flags in [0, RD, CD, AD, AA, TC, Z, RD | AD | CD] {
            c.ask(Ask::new(name, qtype).flags(flags));
        }
    }
    c.ask(Ask::new(WWW, A).flags(RD | CD).no_edns());
    // A query with a non-zero RCODE.
    c.ask(Ask::new(WWW, A).flags(RD | 5));

    // 0x20: the question's case is the client's, in the question and the answer.
    for (name, qtype) in [
        (WWW, A),
        (WWW, AAAA),
        (STATIC, A),
        ("alias.example.com.", A),
        (NOPE, A),
        (BIG, TXT),
        ("lab.example.com.", NS),
        ("host.lab.example.com.", A),
        ("example.org.", A),
        (APEX, SOA),
        (APEX, MX),
        ("_dns._udp.example.com.", SRV),
        ("b.example.com.", TXT),
    ] {
        c.ask(Ask::new(&mixed_case(name, &mut rng), qtype));
    }
    c.ask(Ask::new(&mixed_case(WWW, &mut rng), A).no_edns());

    // Opcodes other than QUERY: NOTIFY (4), STATUS (2), IQUERY (1), UPDATE (5), 15.
    for opcode in [4u16, 2, 1, 5, 15] {
        c.ask(Ask::new(APEX, SOA).flags((opcode << 11) | RD));
    }
    c.ask(Ask::new(APEX, SOA).flags((4 << 11) | AA).no_edns());

    // Classes other than IN.
    c.ask(Ask::new("version.bind.", TXT).class(CH));
    c.ask(Ask::new(WWW, A).class(CH));
    c.ask(Ask::new(WWW, A).class(255));
    c.ask(Ask::new(STATIC, A).class(254));

    // Responses are never answered (loops).
    c.ask(Ask::new(WWW, A).flags(QR | AA));
    c.ask(Ask::new(WWW, A).flags(QR).no_edns());
    c.ask(Ask::new(APEX, SOA).flags(QR | (4 << 11) | AA).no_edns());

    malformed_cases(&mut c);
    ecs_cases(&mut c);
    cookie_cases(&mut c, &mut rng);
    c.list
}

/// Packets a parser must survive: short, cut, doubled, with garbage.
fn malformed_cases(c: &mut Cases) {
    let www = || wire::question(WWW, A, IN);
    let edns = || wire::opt(1232, 0, false, &[]);
    c.raw("empty", |_| Vec::new());
    c.raw("one octet", |id| vec![(id >> 8) as u8]);
    c.raw("eleven octets", |id| {
        wire::header(id, RD, 1, 0, 0, 0)[..11].to_vec()
    });
    c.raw("header, no question", |id| wire::header(id, RD, 0, 0, 0, 0));
    c.raw("header claims a question, none follows", |id| {
        wire::header(id, RD, 1, 0, 0, 0)
    });
    c.raw("question cut inside a label", |id| {
        let mut p = wire::header(id, RD, 1, 0, 0, 0);
        p.extend_from_slice(b"\x03ww");
        p
    });
    c.raw("question without type and class", |id| {
        let mut p = wire::header(id, RD, 1, 0, 0, 0);
        p.extend(wire::name(WWW));
        p
    });
    c.raw("question without class", |id| {
        let mut p = wire::header(id, RD, 1, 0, 0, 0);
        p.extend(wire::name(WWW));
        p.extend_from_slice(&A.to_be_bytes());
        p
    });
    c.raw("two questions", |id| {
        let mut p = wire::header(id, RD, 2, 0, 0, 1);
        p.extend(www());
        p.extend(wire::question(STATIC, A, IN));
        p.extend(edns());
        p
    });
    c.raw("second question cut", |id| {
        let mut p = wire::header(id, RD, 2, 0, 0, 0);
        p.extend(www());
        p.extend_from_slice(b"\x06static");
        p
    });
    c.raw("no question, EDNS only", |id| {
        let mut p = wire::header(id, RD, 0, 0, 0, 1);
        p.extend(edns());
        p
    });
    c.raw("no question, a client cookie (RFC 7873 5.4)", |id| {
        let mut p = wire::header(id, RD, 0, 0, 0, 1);
        p.extend(wire::opt(1232, 0, false, &[cookie(vec![7; 8])]));
        p
    });
    c.raw("no question, ECS only", |id| {
        let mut p = wire::header(id, RD, 0, 0, 0, 1);
        p.extend(wire::opt(1232, 0, false, &[ecs("81.2.69.0/24")]));
        p
    });
    c.raw("garbage after the question", |id| {
        let mut p = wire::header(id, RD, 1, 0, 0, 0);
        p.extend(www());
        p.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        p
    });
    c.raw("garbage after the OPT record", |id| {
        let mut p = wire::header(id, RD, 1, 0, 0, 1);
        p.extend(www());
        p.extend(edns());
        p.extend_from_slice(&[0xde, 0xad]);
        p
    });
    c.raw("additional count 1, no record", |id| {
        let mut p = wire::header(id, RD, 1, 0, 0, 1);
        p.extend(www());
        p
    });
    c.raw("an answer record in the query", |id| {
        let mut p = wire::header(id, RD, 1, 1, 0, 0);
        p.extend(www());
        p.extend_from_slice(&[0xc0, 0x0c]);
        p.extend_from_slice(&A.to_be_bytes());
        p.extend_from_slice(&IN.to_be_bytes());
        p.extend_from_slice(&300u32.to_be_bytes());
        p.extend_from_slice(&[0, 4, 192, 0, 2, 1]);
        p
    });
    c.raw("an authority record in the query", |id| {
        let mut p = wire::header(id, RD, 1, 0, 1, 0);
        p.extend(www());
        p.extend_from_slice(&[0xc0, 0x0c]);
        p.extend_from_slice(&A.to_be_bytes());
        p.extend_from_slice(&IN.to_be_bytes());
        p.extend_from_slice(&300u32.to_be_bytes());
        p.extend_from_slice(&[0, 4, 192, 0, 2, 1]);
        p
    });
    c.raw("question name is a pointer to itself", |id| {
        let mut p = wire::header(id, RD, 1, 0, 0, 0);
        p.extend_from_slice(&[0xc0, 0x0c]);
        p.extend_from_slice(&A.to_be_bytes());
        p.extend_from_slice(&IN.to_be_bytes());
        p
    });
    c.raw("label with the reserved 0x40 bits", |id| {
        let mut p = wire::header(id, RD, 1, 0, 0, 0);
        p.extend_from_slice(b"\x43www\x00");
        p.extend_from_slice(&A.to_be_bytes());
        p.extend_from_slice(&IN.to_be_bytes());
        p
    });
    c.raw("name of 320 octets", |id| {
        let mut p = wire::header(id, RD, 1, 0, 0, 0);
        for _ in 0..5 {
            p.push(63);
            p.extend_from_slice(&[b'x'; 63]);
        }
        p.push(0);
        p.extend_from_slice(&A.to_be_bytes());
        p.extend_from_slice(&IN.to_be_bytes());
        p
    });
    c.raw("two OPT records", |id| {
        let mut p = wire::header(id, RD, 1, 0, 0, 2);
        p.extend(www());
        p.extend(edns());
        p.extend(edns());
        p
    });
    c.raw("OPT record with a non-root owner", |id| {
        let mut p = wire::header(id, RD, 1, 0, 0, 1);
        p.extend(www());
        let mut opt = edns();
        opt.splice(0..1, wire::name("example.com."));
        p.extend(opt);
        p
    });
    c.raw("question of type OPT", |id| {
        let mut p = wire::header(id, RD, 1, 0, 0, 1);
        p.extend(wire::question(WWW, OPT, IN));
        p.extend(edns());
        p
    });
    c.raw("OPT RDLENGTH past the end", |id| {
        let mut p = wire::header(id, RD, 1, 0, 0, 1);
        p.extend(www());
        let mut opt = edns();
        let n = opt.len();
        opt[n - 2..].copy_from_slice(&40u16.to_be_bytes());
        p.extend(opt);
        p
    });
    c.raw("EDNS option longer than the OPT RDATA", |id| {
        let mut p = wire::header(id, RD, 1, 0, 0, 1);
        p.extend(www());
        let mut opt = wire::opt(1232, 0, false, &[ecs("81.2.69.0/24")]);
        let n = opt.len();
        // The ECS option's length field: 7 octets of body claimed as 20.
        opt[n - 9..n - 7].copy_from_slice(&20u16.to_be_bytes());
        p.extend(opt);
        p
    });
}

/// Client subnets (RFC 7871) on www and other names: prefixes, families, scope 0, and the
/// malformed options that must get FORMERR.
fn ecs_cases(c: &mut Cases) {
    for net in [
        "81.2.69.0/24",
        "81.2.0.0/16",
        "81.2.64.0/20",
        "81.2.69.142/32",
        "81.2.69.128/25",
        "81.0.0.0/8",
        "0.0.0.0/0",
        "::/0",
        "1.1.1.0/24",
        "10.1.2.0/24",
        "127.0.0.0/24",
        "2001:4860:4860::/48",
        "2a00:1450:4001:800::/56",
        "2001:4860:4860::8888/128",
        "2001:4860::/32",
        "fe80::/64",
        "::ffff:81.2.69.0/120",
    ] {
        c.ask(Ask::new(WWW, A).ecs(net));
    }
    c.ask(Ask::new(WWW, AAAA).ecs("8.8.8.0/24"));
    c.ask(Ask::new(WWW, AAAA).ecs("2a00:1450:4001::/48"));
    c.ask(
        Ask::new(WWW, A)
            .ecs("81.2.69.0/24")
            .opt(|o| o.dnssec_ok = true),
    );
    c.ask(
        Ask::new(WWW, A)
            .ecs("81.2.69.0/24")
            .opt(|o| o.payload = 512),
    );
    for (name, qtype) in [
        (STATIC, A),
        (NOPE, A),
        (BIG, TXT),
        (APEX, SOA),
        ("alias.example.com.", A),
        ("lab.example.com.", NS),
        ("example.org.", A),
        (WWW, TXT),
    ] {
        c.ask(Ask::new(name, qtype).ecs("81.2.69.0/24"));
    }
    // RFC 7871 §6: SCOPE PREFIX-LENGTH must be 0 in queries.
    c.ask(Ask::new(WWW, A).option(
        "ecs=81.2.69.0/24,scope=24",
        wire::ecs(1, 24, 24, &[81, 2, 69]),
    ));
    // Malformed: FORMERR.
    for (note, option) in [
        ("ecs-bits-beyond-/20", wire::ecs(1, 20, 0, &[81, 2, 69])),
        ("ecs-bits-beyond-/23", wire::ecs(1, 23, 0, &[81, 2, 69])),
        (
            "ecs-/24-with-4-octets",
            wire::ecs(1, 24, 0, &[81, 2, 69, 0]),
        ),
        ("ecs-/24-with-2-octets", wire::ecs(1, 24, 0, &[81, 2])),
        ("ecs-/0-with-1-octet", wire::ecs(1, 0, 0, &[0])),
        (
            "ecs-v6-/48-with-16-octets",
            wire::ecs(
                2,
                48,
                0,
                &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
        ),
        ("ecs-family-3", wire::ecs(3, 24, 0, &[81, 2, 69])),
        ("ecs-family-0", wire::ecs(0, 0, 0, &[])),
        ("ecs-v4-/33", wire::ecs(1, 33, 0, &[81, 2, 69, 1, 0])),
        ("ecs-v6-/129", wire::ecs(2, 129, 0, &[0; 17])),
        ("ecs-3-octets", (wire::ECS, vec![0, 1, 24])),
    ] {
        c.ask(Ask::new(WWW, A).option(note, option));
    }
    c.ask(Ask::new(WWW, A).ecs("81.2.69.0/24").ecs("8.8.8.0/24"));
    c.ask(Ask::new(STATIC, A).ecs("81.2.69.0/24").ecs("81.2.69.0/24"));
}

/// DNS cookies (RFC 7873): the client cookie alone, with server cookies not ours (16 and 32
/// octets), malformed lengths (FORMERR), and two COOKIE options (the first counts).
fn cookie_cases(c: &mut Cases, rng: &mut XorShift) {
    for (name, qtype) in [
        (WWW, A),
        (STATIC, A),
        (NOPE, A),
        (BIG, TXT),
        (APEX, NS),
        (APEX, ANY),
        ("example.org.", A),
    ] {
        c.ask(Ask::new(name, qtype).option("cookie=client", cookie(rng.bytes(8))));
    }
    c.ask(
        Ask::new(WWW, A)
            .ecs("81.2.69.0/24")
            .option("cookie=client", cookie(rng.bytes(8))),
    );
    c.ask(
        Ask::new(WWW, AAAA)
            .opt(|o| o.dnssec_ok = true)
            .option("cookie=client", cookie(rng.bytes(8))),
    );
    c.ask(
        Ask::new(WWW, A)
            .opt(|o| o.version = 1)
            .option("cookie=client", cookie(rng.bytes(8))),
    );
    c.ask(
        Ask::new(STATIC, A)
            .opt(|o| o.payload = 512)
            .option("cookie=client", cookie(rng.bytes(8))),
    );
    // A foreign server cookie (version 1, any hash): not ours, so a new one comes back.
    let mut foreign = rng.bytes(24);
    foreign[8] = 1;
    c.ask(Ask::new(WWW, A).option("cookie=client+foreign-server-16", cookie(foreign)));
    c.ask(Ask::new(WWW, A).option("cookie=client+server-32", cookie(rng.bytes(40))));
    for len in [0, 7, 9, 15, 41] {
        c.ask(Ask::new(WWW, A).option(&format!("cookie-of-{len}-octets"), cookie(rng.bytes(len))));
    }
    c.ask(
        Ask::new(WWW, A)
            .option("cookie=client", cookie(rng.bytes(8)))
            .option("cookie-of-7-octets", cookie(rng.bytes(7))),
    );
    c.ask(
        Ask::new(WWW, A)
            .option("cookie-of-7-octets", cookie(rng.bytes(7)))
            .option("cookie=client", cookie(rng.bytes(8))),
    );
}

/// IPv4 client networks by continent, and special-purpose ones (unknown whatever the
/// database says).
const CLIENTS_V4: [&str; 56] = [
    // Europe
    "81.2.69.0/24",
    "212.58.244.0/24",
    "193.0.6.0/24",
    "145.97.39.0/24",
    "85.214.0.0/24",
    "195.154.0.0/24",
    "77.88.8.0/24",
    "91.198.174.0/24",
    "213.180.204.0/24",
    "80.80.80.0/24",
    "62.210.0.0/24",
    "89.0.0.0/24",
    "185.199.108.0/24",
    // North America
    "8.8.8.0/24",
    "4.2.2.0/24",
    "208.67.222.0/24",
    "24.0.0.0/24",
    "142.250.0.0/24",
    "99.224.0.0/24",
    "70.24.0.0/24",
    "187.141.0.0/24",
    // South America
    "200.160.2.0/24",
    "201.17.0.0/24",
    "181.30.0.0/24",
    "190.216.0.0/24",
    "200.1.122.0/24",
    // Africa
    "196.216.2.0/24",
    "41.190.0.0/24",
    "105.0.0.0/24",
    "197.210.0.0/24",
    "41.63.0.0/24",
    "102.132.0.0/24",
    // Asia
    "114.114.114.0/24",
    "180.76.76.0/24",
    "202.12.27.0/24",
    "210.130.1.0/24",
    "164.124.101.0/24",
    "203.178.136.0/24",
    "117.0.0.0/24",
    "49.44.0.0/24",
    "103.21.244.0/24",
    "175.45.176.0/24",
    // Oceania
    "1.1.1.0/24",
    "139.130.4.0/24",
    "203.2.218.0/24",
    "202.27.184.0/24",
    // Special-purpose
    "10.1.2.0/24",
    "192.168.1.0/24",
    "100.64.0.0/24",
    "127.0.0.0/24",
    "169.254.1.0/24",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "172.16.5.0/24",
    "224.0.0.0/24",
    "0.0.0.0/24",
];

/// IPv6 client networks by continent (/48 and /56), and special-purpose ones.
const CLIENTS_V6: [&str; 31] = [
    "2001:4860:4860::/48",
    "2607:f8b0:4004::/48",
    "2600:1f18::/48",
    "2a00:1450:4001::/48",
    "2a02:6b8::/48",
    "2a01:4f8:c0c::/48",
    "2400:cb00:2048::/48",
    "2001:200:dff::/48",
    "2406:da18::/48",
    "2001:da8::/48",
    "240e::/48",
    "2001:44b8::/48",
    "2403:5800::/48",
    "2800:3f0:4001::/48",
    "2001:12ff::/48",
    "2804:14c::/48",
    "2c0f:fb50:4003::/48",
    "2c0f:f8f0::/48",
    "2001:43f8:110::/48",
    "2001:4860:4860:100::/56",
    "2a00:1450:4001:800::/56",
    "2400:cb00:2048:100::/56",
    "2001:200:dff:f00::/56",
    "2800:3f0:4001:800::/56",
    "2c0f:fb50:4003:100::/56",
    "2001:44b8:4000::/56",
    "fe80::/64",
    "fc00::/48",
    "2001:db8::/48",
    "::1/128",
    "::ffff:81.2.69.0/120",
];

/// Seeded /24s from 1.0.0.0 to 223.255.255.255 and /48s from 2000::/3, for the ECS sweep.
const GENERATED_V4: usize = 200;
const GENERATED_V6: usize = 24;

/// The steered names asked from client networks all over the world (UDP only: the core
/// cases carry ECS over TCP).
fn ecs_sweep() -> Vec<Case> {
    let mut c = Cases::new(0x601d_0003);
    let mut rng = XorShift::new(0x601d_0004);
    let mut v4: Vec<String> = CLIENTS_V4.iter().map(|s| s.to_string()).collect();
    v4.extend((0..GENERATED_V4).map(|_| {
        let first = 1 + rng.below(223);
        format!("{first}.{}.{}.0/24", rng.byte(), rng.byte())
    }));
    for (i, net) in v4.iter().enumerate() {
        let (name, qtype) = match i % 4 {
            0 | 1 => (WWW, A),
            2 => (WWW, AAAA),
            _ => ("alias.example.com.", A),
        };
        c.ask(Ask::new(name, qtype).ecs(net));
    }
    let mut v6: Vec<String> = CLIENTS_V6.iter().map(|s| s.to_string()).collect();
    v6.extend((0..GENERATED_V6).map(|_| {
        let head = 0x2000 + rng.below(0x2000);
        format!(
            "{head:x}:{:x}:{:x}::/48",
            rng.next_u64() as u16,
            rng.next_u64() as u16
        )
    }));
    for (i, net) in v6.iter().enumerate() {
        let qtype = if i % 2 == 0 { AAAA } else { A };
        c.ask(Ask::new(WWW, qtype).ecs(net));
    }
    c.list
}

// ---------------------------------------------------------------------------------------------
// The probed zone (phase 5)

/// `probed.test.`: two regions probed over TCP at `port`, where nothing accepts, and starting
/// down, so they stay down from the first query on and never waver; two unprobed regions,
/// always up. Names cover the fail-open fallback, a static fallback, nearest among a mix,
/// rotation of equal weights, a draw by weight, and failover.
fn probed_zone(port: u16) -> String {
    let probed =
        |addr: &str| format!("{{ address = \"{addr}\", check-address = \"127.0.0.1:{port}\" }}");
    format!(
        r#"# Written by tests/golden_answers.rs.
zone = "probed.test."
records = '''
$TTL 3600
@    IN SOA ns1.probed.test. hostmaster.probed.test. ( 7 7200 3600 1209600 300 )
@    IN NS  ns1
ns1  IN A   192.0.2.53
'''

[health]
check = "tcp"
port = {port}
interval = 0.2
timeout = 0.1
rise = 2
fall = 2
start = "down"

[regions.dead-east]
location = {{ lat = 39.04, lon = -77.49 }}
endpoints = [{}, {}, {}]

[regions.dead-west]
location = {{ lat = 53.35, lon = -6.26 }}
endpoints = [{}, {}, {}]

[regions.live-asia]
location = {{ lat = 1.35, lon = 103.82 }}
endpoints = [
  "203.0.113.10", "203.0.113.11", "203.0.113.12",
  "2001:db8:3::10", "2001:db8:3::11", "2001:db8:3::12",
]
health = {{ check = "none" }}

[regions.live-south]
location = {{ lat = -23.55, lon = -46.63 }}
endpoints = [
  {{ address = "192.0.2.20", weight = 1 }},
  {{ address = "192.0.2.21", weight = 3 }},
  {{ address = "192.0.2.22", weight = 5 }},
  {{ address = "2001:db8:4::20", weight = 2 }},
  {{ address = "2001:db8:4::21", weight = 2 }},
]
health = {{ check = "none" }}

[steered.open]
regions = ["dead-east", "dead-west"]
ttl = 20

[steered.listed]
regions = ["dead-east", "dead-west"]
fallback = ["192.0.2.200", "2001:db8::200"]

[steered.mixed]
regions = ["dead-east", "live-asia", "dead-west", "live-south"]
default-region = "dead-east"

[steered.rotate]
regions = ["live-asia"]
answers = 2

[steered.weighted]
regions = ["live-south", "live-asia"]
answers = 2

[steered.failover]
policy = "failover"
regions = ["dead-west", "live-south", "live-asia"]
trouble-ttl = 2
"#,
        probed("192.0.2.10"),
        probed("192.0.2.11"),
        probed("2001:db8:1::10"),
        probed("198.51.100.10"),
        probed("2001:db8:2::10"),
        probed("2001:db8:2::11"),
    )
}

/// The steered names of `probed.test.` from a few clients, several IDs each (the rotation).
fn probed_cases() -> Vec<Case> {
    let mut c = Cases::new(0x601d_0005);
    let mut rng = XorShift::new(0x601d_0006);
    for name in ["open", "listed", "mixed", "rotate", "weighted", "failover"] {
        let name = format!("{name}.probed.test.");
        for qtype in [A, AAAA] {
            for _ in 0..4 {
                c.ask(Ask::new(&name, qtype));
            }
            for net in [
                "81.2.69.0/24",
                "8.8.8.0/24",
                "1.1.1.0/24",
                "200.160.2.0/24",
                "2001:4860:4860::/48",
            ] {
                c.ask(Ask::new(&name, qtype).ecs(net));
            }
        }
    }
    for (name, qtype) in [
        ("probed.test.", SOA),
        ("probed.test.", NS),
        ("nope.probed.test.", A),
        ("open.probed.test.", TXT),
        ("open.probed.test.", ANY),
        ("rotate.probed.test.", ANY),
    ] {
        c.ask(Ask::new(name, qtype));
    }
    c.ask(Ask::new(&mixed_case("open.probed.test.", &mut rng), A));
    c.ask(Ask::new("weighted.probed.test.", A).no_edns());
    c.list
}

// ---------------------------------------------------------------------------------------------
// Exchanges

/// Sent after every query: its answer (REFUSED, ID [`SENTINEL_ID`]) marks the end of the
/// query's responses.
fn sentinel() -> Vec<u8> {
    let mut p = wire::header(SENTINEL_ID, 0, 1, 0, 0, 0);
    p.extend(wire::question("sentinel.invalid.", A, IN));
    p
}

fn is_sentinel(response: &[u8]) -> bool {
    response.len() >= 12 && wire::id(response) == SENTINEL_ID && wire::is_response(response)
}

/// A UDP socket on the fixed client address and port, connected to `server`.
fn udp_socket(server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind((CLIENT_IP, UDP_PORT)).unwrap_or_else(|e| {
        panic!(
            "cannot bind the UDP client to {CLIENT_IP}:{UDP_PORT}: {e}. The golden answers need \
             this fixed source port (the rotation seed holds it): is another run of this test \
             using it?"
        )
    });
    socket.connect(server).expect("connect the UDP client");
    socket
}

/// `packet` over UDP, then the sentinel; the response to `packet`, or `None`.
fn udp_exchange(socket: &UdpSocket, packet: &[u8], what: &str) -> Option<Vec<u8>> {
    socket.send(packet).expect("send a query");
    socket.send(&sentinel()).expect("send the sentinel");
    let deadline = Instant::now() + RAW_DEADLINE;
    let mut buf = vec![0u8; 65535];
    let mut got = Vec::new();
    for _ in 0..MAX_RESPONSES {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{what}: no answer to the sentinel within {RAW_DEADLINE:?}"
        );
        socket.set_read_timeout(Some(left)).expect("read timeout");
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{what}: no answer to the sentinel: {e}"));
        if is_sentinel(&buf[..n]) {
            assert!(got.len() <= 1, "{what}: {} responses over UDP", got.len());
            return got.pop();
        }
        got.push(buf[..n].to_vec());
    }
    panic!("{what}: no sentinel answer among {MAX_RESPONSES} datagrams");
}

/// A TCP connection from the fixed client address and `port`.
fn tcp_connect(server: SocketAddr, port: u16) -> RawTcp {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    // The port may still be in TIME_WAIT from an earlier run (to another server port).
    socket.set_reuse_address(true).expect("SO_REUSEADDR");
    let local = SocketAddr::from((CLIENT_IP, port));
    socket.bind(&local.into()).unwrap_or_else(|e| {
        panic!(
            "cannot bind the TCP client to {local}: {e}. The golden answers need this fixed \
             source port (the rotation seed holds it): is another run of this test using it?"
        )
    });
    socket
        .connect_timeout(&server.into(), RAW_DEADLINE)
        .unwrap_or_else(|e| panic!("TCP connect from {local} to {server}: {e}"));
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true).expect("nodelay");
    stream
        .set_write_timeout(Some(RAW_DEADLINE))
        .expect("write timeout");
    RawTcp { stream }
}

/// Every case over one TCP connection, each framed and followed by the sentinel; the
/// responses, in order. A thread writes them all while this one reads: one exchange at a time
/// took 40 ms a query, the server's Nagle holding the sentinel's answer back until this side's
/// delayed ACK of the first.
fn tcp_exchanges(mut conn: RawTcp, cases: &[&Case], label: &str) -> Vec<Option<Vec<u8>>> {
    let mut frames = Vec::new();
    for case in cases {
        for packet in [&case.packet[..], &sentinel()] {
            let len = u16::try_from(packet.len()).expect("a query fits a TCP frame");
            frames.extend_from_slice(&len.to_be_bytes());
            frames.extend_from_slice(packet);
        }
    }
    let mut writer = conn.stream.try_clone().expect("clone the TCP stream");
    std::thread::scope(|s| {
        s.spawn(move || writer.write_all(&frames).expect("write the TCP queries"));
        cases
            .iter()
            .enumerate()
            .map(|(i, case)| {
                let what = format!("{label} tcp {i} {}", case.what);
                let mut got = Vec::new();
                for _ in 0..MAX_RESPONSES {
                    let response = conn.recv(RAW_DEADLINE).unwrap_or_else(|| {
                        panic!(
                            "{what}: the connection closed or fell silent before the \
                             sentinel's answer"
                        )
                    });
                    if is_sentinel(&response) {
                        assert!(got.len() <= 1, "{what}: {} responses over TCP", got.len());
                        return got.pop();
                    }
                    got.push(response);
                }
                panic!("{what}: no sentinel answer among {MAX_RESPONSES} messages");
            })
            .collect()
    })
}

/// Zeroes the server cookie (the octets after the 8-octet client cookie) of every COOKIE
/// option in `response`'s OPT record: it holds the time and a hash under the server's secret.
fn mask_server_cookie(response: &mut [u8]) {
    let Some(spans) = cookie_spans(response) else {
        return;
    };
    for (start, end) in spans {
        response[start..end].fill(0);
    }
}

/// Where the server cookies of a message lie; `None` if it does not parse that far.
fn cookie_spans(m: &[u8]) -> Option<Vec<(usize, usize)>> {
    let count = |i: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes([
            *m.get(i)?,
            *m.get(i + 1)?,
        ])))
    };
    let skip_name = |mut pos: usize| -> Option<usize> {
        // A name has at most 128 labels.
        for _ in 0..128 {
            let len = *m.get(pos)?;
            match len & 0xc0 {
                0 if len == 0 => return Some(pos + 1),
                0 => pos += 1 + usize::from(len),
                0xc0 => return Some(pos + 2),
                _ => return None,
            }
        }
        None
    };
    let mut pos = 12;
    for _ in 0..count(4)? {
        pos = skip_name(pos)? + 4;
    }
    let records = count(6)? + count(8)? + count(10)?;
    let mut spans = Vec::new();
    for _ in 0..records {
        pos = skip_name(pos)?;
        let rtype = count(pos)?;
        let rdlen = count(pos + 8)?;
        let rdata = pos + 10;
        let end = rdata + rdlen;
        if end > m.len() {
            return None;
        }
        if rtype == usize::from(OPT) {
            let mut o = rdata;
            while o + 4 <= end {
                let (code, len) = (count(o)?, count(o + 2)?);
                let body = o + 4;
                if code == usize::from(COOKIE) && len > 8 && body + len <= end {
                    spans.push((body + 8, body + len));
                }
                o = body + len;
            }
        }
        pos = end;
    }
    Some(spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
            write!(s, "{b:02x}").unwrap();
            s
        })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Phases

/// The admin API of the server, from a runtime of its own (the DNS side is blocking).
struct Admin {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
}

impl Admin {
    fn new(server: &Server) -> Admin {
        meridian::health::probe::install_crypto_provider();
        Admin {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            http: reqwest::Client::new(),
            base: format!("http://{}", server.admin_addr()),
        }
    }

    fn request(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        self.rt.block_on(async {
            let resp = tokio::time::timeout(RAW_DEADLINE, req.send())
                .await
                .expect("the admin API answers in time")
                .expect("the admin API answers");
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.expect("an admin response body");
            let v = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
            (status, v)
        })
    }

    /// A write; answers once DNS follows it.
    fn post(&self, path: &str, body: &str) {
        let req = self
            .http
            .post(format!("{}/api/v1{path}", self.base))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(body.to_string());
        let (status, v) = self.request(req);
        assert_eq!(status, 200, "POST {path}: {v}");
    }

    fn get(&self, path: &str) -> Value {
        let (status, v) = self.request(self.http.get(format!("{}/api/v1{path}", self.base)));
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }
}

/// Sends every case of `udp` over UDP and of `tcp` over one TCP connection, appending a line
/// per case to `out`.
fn run_phase(
    out: &mut String,
    (number, label): (u16, &str),
    server: SocketAddr,
    socket: &UdpSocket,
    udp: &[&[Case]],
    tcp: &[&[Case]],
) {
    let mut record = |transport: &str, index: usize, case: &Case, response: Option<Vec<u8>>| {
        let response = response.map_or_else(
            || "-".to_string(),
            |mut r| {
                mask_server_cookie(&mut r);
                hex(&r)
            },
        );
        writeln!(
            out,
            "{label} {transport} {index:04} {} | {} | {response}",
            case.what,
            hex(&case.packet)
        )
        .unwrap();
    };
    for (i, case) in udp.iter().flat_map(|s| s.iter()).enumerate() {
        let what = format!("{label} udp {i} {}", case.what);
        record("udp", i, case, udp_exchange(socket, &case.packet, &what));
    }
    let tcp: Vec<&Case> = tcp.iter().flat_map(|s| s.iter()).collect();
    let conn = tcp_connect(server, TCP_PORT_BASE + number);
    for (i, (case, response)) in tcp.iter().zip(tcp_exchanges(conn, &tcp, label)).enumerate() {
        record("tcp", i, case, response);
    }
}

/// Waits until `probed.test.` shows what phase 5 records: its probed regions down, probed at
/// least once, and not in trouble; its unprobed regions up.
fn wait_probed_settled(admin: &Admin) {
    let settled = |regions: &Value| {
        let probed: Vec<&Value> = regions
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["zone"] == "probed.test.")
            .collect();
        probed.len() == 4
            && probed.iter().all(|r| {
                let dead = r["region"].as_str().is_some_and(|n| n.starts_with("dead-"));
                let probes_ran = r["endpoints"].as_array().is_some_and(|es| {
                    es.iter()
                        .all(|e| e["probe"]["probes"].as_u64().is_some_and(|n| n >= 1))
                });
                r["state"] == if dead { "down" } else { "up" }
                    && r["in_trouble"] == false
                    && (!dead || probes_ran)
            })
    };
    let deadline = Instant::now() + SETTLE;
    let mut last = Value::Null;
    for _ in 0..SETTLE.as_millis() / POLL.as_millis() + 2 {
        last = admin.get("/regions");
        if settled(&last) {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(POLL);
    }
    panic!("probed.test. did not settle within {SETTLE:?}; regions: {last:#}");
}

/// Runs every phase against a fresh server; returns the golden file's text.
fn record() -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).expect("zones dir");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(
        repo.join("zones/example.com.toml"),
        zones.join("example.com.toml"),
    )
    .expect("copy the shipped zone");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("golden:{TOKEN}\n")).expect("token file");
    let server = Server::start_with_zones(
        &zones,
        &["--admin-token-file", tokens.to_str().expect("UTF-8 path")],
    );
    let admin = Admin::new(&server);
    let socket = udp_socket(server.addr());

    let (core, sweep, probed) = (core_cases(), ecs_sweep(), probed_cases());
    let mut out = String::from(
        "# Golden DNS answers of `meridian serve`, recorded by tests/golden_answers.rs.\n\
         # One line per query: phase transport index id description | query hex | response hex\n\
         # (`-`: no response). Server cookies in responses are zeroed: they hold the time.\n\
         # Regenerate: MERIDIAN_REGENERATE_GOLDEN=1 cargo test --test golden_answers\n",
    );
    // Each phase starts once the serving state's steering is compiled, so its scopes are the
    // compiled ones whatever the compiler's speed.
    let phase = |out: &mut String, number: u16, label: &str, udp: &[&[Case]], tcp: &[&[Case]]| {
        common::wait_compiled(&server);
        run_phase(out, (number, label), server.addr(), &socket, udp, tcp);
    };

    phase(&mut out, 1, "p1-up", &[&core, &sweep], &[&core]);

    admin.post(
        "/zones/example.com/regions/eu-west/drain",
        r#"{"reason": "golden answers: phase 2"}"#,
    );
    phase(&mut out, 2, "p2-drained", &[&core, &sweep], &[&core]);

    for (region, address) in [
        ("us-east", "192.0.2.10"),
        ("ap-southeast", "2001:db8:3::10"),
    ] {
        admin.post(
            &format!("/zones/example.com/regions/{region}/endpoints/{address}/force"),
            r#"{"state": "down", "reason": "golden answers: phase 3"}"#,
        );
    }
    phase(&mut out, 3, "p3-forced", &[&core, &sweep], &[&core]);

    admin.post(
        "/zones/example.com/regions/eu-west/undrain",
        r#"{"reason": "golden answers: phase 4"}"#,
    );
    for (region, address) in [
        ("us-east", "192.0.2.10"),
        ("ap-southeast", "2001:db8:3::10"),
    ] {
        admin.post(
            &format!("/zones/example.com/regions/{region}/endpoints/{address}/unforce"),
            r#"{"reason": "golden answers: phase 4"}"#,
        );
    }
    phase(&mut out, 4, "p4-restored", &[&core, &sweep], &[&core]);

    // Bound and never listening: every connection is refused, and no one else can take the
    // port while the probes aim at it.
    let dead = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    dead.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .expect("bind a dead port");
    let dead_port = dead
        .local_addr()
        .expect("local address")
        .as_socket()
        .expect("an IP address")
        .port();
    std::fs::write(zones.join("probed.test.toml"), probed_zone(dead_port)).expect("write zone");
    admin.post("/reload", r#"{"reason": "golden answers: phase 5"}"#);
    wait_probed_settled(&admin);
    phase(&mut out, 5, "p5-probed", &[&probed, &core], &[&probed]);
    drop(dead);
    out
}

fn golden_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN)
}

// ---------------------------------------------------------------------------------------------
// Comparison

/// A response as hickory reads it, for a human; or why it does not read.
fn decoded(hex_text: &str) -> String {
    if hex_text == "-" {
        return "(no response)".to_string();
    }
    match unhex(hex_text).map(|b| Message::from_vec(&b)) {
        Some(Ok(m)) => {
            let mut s = m.to_string();
            if let Some(edns) = &m.edns {
                write!(s, "; edns options {:?}", edns.options()).unwrap();
            }
            s
        }
        Some(Err(e)) => format!("(does not decode: {e})"),
        None => "(not hex)".to_string(),
    }
}

/// The parts of a golden line: description, query hex, response hex.
fn parts(line: &str) -> (&str, &str, &str) {
    let mut it = line.splitn(3, " | ");
    (
        it.next().unwrap_or(""),
        it.next().unwrap_or(""),
        it.next().unwrap_or(""),
    )
}

fn explain(index: usize, want: Option<&str>, got: Option<&str>) -> String {
    let (wd, wq, wr) = parts(want.unwrap_or("(missing)"));
    let (gd, gq, gr) = parts(got.unwrap_or("(missing)"));
    let mut s = format!("--- line {}\n", index + 1);
    if wd == gd && wq == gq {
        writeln!(s, "query: {wd}\n       {wq}").unwrap();
    } else {
        writeln!(s, "expected query: {wd}\n                {wq}").unwrap();
        writeln!(s, "sent query:     {gd}\n                {gq}").unwrap();
    }
    if let Some(at) = wr.bytes().zip(gr.bytes()).position(|(a, b)| a != b) {
        writeln!(s, "responses first differ at octet {}", at / 2).unwrap();
    }
    writeln!(s, "expected response {wr}\n{}", decoded(wr)).unwrap();
    writeln!(s, "got response {gr}\n{}", decoded(gr)).unwrap();
    s
}

/// Panics with the number of differing lines and the first few, decoded.
fn compare(expected: &str, recorded: &str) {
    let want: Vec<&str> = expected.lines().collect();
    let got: Vec<&str> = recorded.lines().collect();
    let differing: Vec<usize> = (0..want.len().max(got.len()))
        .filter(|&i| want.get(i) != got.get(i))
        .collect();
    if differing.is_empty() {
        return;
    }
    let mut report = format!(
        "{} of {} lines differ from {GOLDEN} (it has {} lines, this run {})\n",
        differing.len(),
        want.len().max(got.len()),
        want.len(),
        got.len()
    );
    for &i in differing.iter().take(SHOWN) {
        report.push_str(&explain(i, want.get(i).copied(), got.get(i).copied()));
    }
    write!(
        report,
        "If the change is intended, rewrite the file with {REGENERATE}=1 cargo test --test \
         golden_answers and review its diff."
    )
    .unwrap();
    panic!("{report}");
}

#[test]
fn responses_match_the_golden_file_byte_for_byte() {
    let started = Instant::now();
    let recorded = record();
    let path = golden_path();
    let lines = recorded.lines().count();
    if std::env::var_os(REGENERATE).is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("golden dir");
        std::fs::write(&path, &recorded).expect("write the golden file");
        eprintln!(
            "golden answers: wrote {lines} lines to {} in {:.1?}",
            path.display(),
            started.elapsed()
        );
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; record it with {REGENERATE}=1 cargo test --test golden_answers",
            path.display()
        )
    });
    compare(&expected, &recorded);
    eprintln!(
        "golden answers: {lines} lines match in {:.1?}",
        started.elapsed()
    );
}
