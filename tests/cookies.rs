//! DNS cookies (RFC 7873, server cookies as RFC 9018) against the real server: a client
//! learns a server cookie, and with it is exempt from the response rate limit and from the
//! amplification limit; the secret survives a restart; spoofed-looking sources all over
//! 127/8 never get more than the limit times their query's bytes back over UDP.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use common::{Server, wire};

const COOKIE: u16 = 10;
const CLIENT: [u8; 8] = [0x24, 0x64, 0xc4, 0xab, 0xcf, 0x10, 0xc9, 0x57];

fn socket(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind(format!("{ip}:0")).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

fn query(id: u16, name: &str, qtype: u16, cookie: Option<&[u8]>) -> Vec<u8> {
    let options: Vec<(u16, Vec<u8>)> = cookie.map(|c| (COOKIE, c.to_vec())).into_iter().collect();
    wire::query(id, name, qtype, Some(wire::opt(1232, 0, false, &options)))
}

fn exchange(s: &UdpSocket, server: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    s.send_to(packet, server).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

/// The COOKIE option of a response (the last record is its OPT).
fn cookie_of(response: &[u8]) -> Option<Vec<u8>> {
    let m = hickory_proto::op::Message::from_vec(response).unwrap();
    let edns = m.edns?;
    match edns.option(hickory_proto::rr::rdata::opt::EdnsCode::Cookie)? {
        hickory_proto::rr::rdata::opt::EdnsOption::Unknown(_, body) => Some(body.clone()),
        _ => None,
    }
}

fn truncated(response: &[u8]) -> bool {
    response[2] & 0x02 != 0
}

fn answers(response: &[u8]) -> u16 {
    u16::from_be_bytes([response[6], response[7]])
}

/// Learns a server cookie for the socket's address.
fn learn(s: &UdpSocket, server: SocketAddr) -> Vec<u8> {
    let r = exchange(
        s,
        server,
        &query(1, "www.example.com", wire::QTYPE_A, Some(&CLIENT)),
    )
    .expect("an answer to a client cookie");
    let cookie = cookie_of(&r).expect("a server cookie back");
    assert_eq!(cookie.len(), 24, "client cookie + 16-octet server cookie");
    assert_eq!(&cookie[..8], &CLIENT, "the client cookie echoed");
    assert_eq!(cookie[8], 1, "RFC 9018 version 1");
    cookie
}

#[test]
fn a_valid_cookie_is_exempt_from_rrl_and_the_secret_survives_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();
    let mut server = Server::start(&[
        "--rrl-rate",
        "5",
        "--rrl-slip",
        "0",
        "--state-dir",
        state_dir,
    ]);
    let addr = server.addr();
    let with = socket("127.0.8.1");
    let cookie = learn(&with, addr);
    // The same /24, no cookie: held to 5 a second. With the cookie: every query answered.
    let without = socket("127.0.8.2");
    let (mut plain, mut proven) = (0, 0);
    for i in 0..40u16 {
        let q = query(100 + i, "www.example.com", wire::QTYPE_A, None);
        plain += usize::from(exchange(&without, addr, &q).is_some());
        let q = query(200 + i, "www.example.com", wire::QTYPE_A, Some(&cookie));
        let r = exchange(&with, addr, &q).expect("a client with a valid cookie is answered");
        assert_eq!(answers(&r), 1);
        // Fresh (under 30 minutes): the same cookie comes back.
        assert_eq!(cookie_of(&r).as_deref(), Some(&cookie[..]));
        proven += 1;
    }
    eprintln!(
        "RRL at 5/s: 40 cookie-less queries -> {plain} answers; 40 with a cookie -> {proven}"
    );
    assert!(
        plain < 40,
        "the cookie-less client is limited ({plain} of 40)"
    );

    // A restart keeps the secret (state dir): the cookie still verifies and comes back as is.
    let status = server.terminate(Duration::from_secs(5));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let secret = std::fs::read_to_string(Path::new(state_dir).join("cookie-secret")).unwrap();
    assert_eq!(secret.trim().len(), 32, "128-bit secret in hex");
    let server = Server::start(&["--state-dir", state_dir]);
    let q = query(7, "www.example.com", wire::QTYPE_A, Some(&cookie));
    let r = exchange(&with, server.addr(), &q).expect("answered after restart");
    assert_eq!(cookie_of(&r).as_deref(), Some(&cookie[..]));
    // From another address the same cookie is not valid: a new server cookie replaces it.
    let other = socket("127.0.8.3");
    let r = exchange(&other, server.addr(), &q).expect("answered");
    let replaced = cookie_of(&r).unwrap();
    assert_eq!(&replaced[..8], &CLIENT);
    assert_ne!(&replaced[8..], &cookie[8..]);
}

#[test]
fn spoofed_sources_get_at_most_the_limit_times_their_bytes_and_cookies_lift_it() {
    let server = Server::start(&["--amplification-limit", "2"]);
    let addr = server.addr();
    // The apex NS answer with glue is about 2.8 times its query.
    let (mut sent, mut received, mut worst, mut tc) = (0usize, 0usize, 0f64, 0);
    let names = [
        ("example.com", wire::QTYPE_NS),
        ("www.example.com", wire::QTYPE_A),
        ("www.example.com", wire::QTYPE_AAAA),
        ("big.example.com", wire::QTYPE_TXT),
        ("nope.example.com", wire::QTYPE_A),
    ];
    for (i, ip) in ["127.1.2.3", "127.9.8.7", "127.200.0.1", "127.33.44.55"]
        .iter()
        .enumerate()
    {
        let s = socket(ip);
        for (j, (name, qtype)) in names.iter().enumerate() {
            for cookie in [None, Some(&CLIENT[..])] {
                let q = query((i * 100 + j) as u16, name, *qtype, cookie);
                let r = exchange(&s, addr, &q).expect("answered");
                sent += q.len();
                received += r.len();
                worst = worst.max(r.len() as f64 / q.len() as f64);
                tc += usize::from(truncated(&r));
            }
        }
    }
    eprintln!(
        "amplification limit 2: {received} B out / {sent} B in ({:.2}), worst single {worst:.2}, {tc} truncated",
        received as f64 / sent as f64
    );
    assert!(worst <= 2.0, "worst response {worst:.2} x its query");
    assert!(
        tc >= 8,
        "the NS and big answers are truncated for every source ({tc})"
    );

    // With a valid cookie the NS answer comes whole; over TCP it always does.
    let s = socket("127.1.2.3");
    let cookie = learn(&s, addr);
    let q = query(9, "example.com", wire::QTYPE_NS, Some(&cookie));
    let r = exchange(&s, addr, &q).unwrap();
    assert!(!truncated(&r) && answers(&r) >= 2, "whole with a cookie");
    assert!(r.len() > 2 * q.len());
    let q = query(10, "example.com", wire::QTYPE_NS, None);
    let r = common::tcp_exchange(addr, &q, Duration::from_secs(2)).unwrap();
    assert!(!truncated(&r) && answers(&r) >= 2, "whole over TCP");
}

#[test]
fn dig_sees_a_good_server_cookie() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let out = std::process::Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &addr.port().to_string(),
            "+cookie",
            "+norec",
            "www.example.com",
            "A",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // dig checks the echoed client cookie; "(good)" means it matched and a server cookie came.
    let line = text
        .lines()
        .find(|l| l.contains("COOKIE:"))
        .unwrap_or_else(|| panic!("no COOKIE in dig output:\n{text}"));
    assert!(line.contains("(good)"), "{line}");
    let hex = line.split_whitespace().nth(2).unwrap();
    assert_eq!(hex.len(), 48, "8 + 16 octets: {line}");
    assert!(text.contains("status: NOERROR"), "{text}");
}
