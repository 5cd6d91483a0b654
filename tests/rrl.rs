//! Response rate limiting against the real server, from many source addresses of one /24
//! (127.0.5.x, as a spoofed flood looks): full answers stay within the rate, the rest are
//! dropped or slipped truncated, so the bytes sent back stay below the bytes received.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{Server, wire};

#[test]
fn rrl_caps_answers_per_client_network_and_keeps_amplification_below_one() {
    let server = Server::start(&["--rrl-rate", "20", "--rrl-slip", "2"]);
    let addr: SocketAddr = server.addr();
    let query = wire::query(
        9,
        "www.example.com",
        wire::QTYPE_A,
        Some(wire::opt(1232, 0, false, &[])),
    );
    let sockets: Vec<UdpSocket> = (1..=20)
        .map(|i| {
            let s = UdpSocket::bind(format!("127.0.5.{i}:0")).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let mut sent_bytes = 0usize;
    for _ in 0..25 {
        for s in &sockets {
            s.send_to(&query, addr).unwrap();
            sent_bytes += query.len();
        }
    }
    let (mut full, mut truncated, mut received_bytes) = (0, 0, 0usize);
    let mut buf = [0u8; 4096];
    for s in &sockets {
        while let Ok((n, _)) = s.recv_from(&mut buf) {
            received_bytes += n;
            if buf[2] & 0x02 != 0 && u16::from_be_bytes([buf[6], buf[7]]) == 0 {
                truncated += 1;
            } else {
                full += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let queries = 25 * sockets.len();
    let amplification = received_bytes as f64 / sent_bytes as f64;
    eprintln!(
        "RRL: {queries} queries from one /24 in {elapsed:.2} s: {full} full answers, {truncated} \
         truncated, amplification {amplification:.2} ({received_bytes} B out / {sent_bytes} B in)"
    );
    assert!(
        (full as f64) <= 20.0 + 20.0 * elapsed + 1.0,
        "{full} full answers in {elapsed:.2} s at 20/s"
    );
    assert!(truncated > 0, "some responses slip");
    assert!(full + truncated < queries, "the rest are dropped");
    assert!(full > 0, "the rate lets some answers through");
    assert!(amplification < 1.0, "amplification {amplification:.2}");

    // Another network is not affected, nor is TCP from the limited one.
    let other = UdpSocket::bind("127.0.6.1:0").unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let q = wire::query(10, "static.example.com", wire::QTYPE_A, None);
    other.send_to(&q, addr).unwrap();
    let (n, _) = other.recv_from(&mut buf).expect("another /24 is answered");
    assert_eq!(u16::from_be_bytes([buf[6], buf[7]]), 1, "{:?}", &buf[..n]);
    let tcp = common::tcp_exchange(addr, &q, Duration::from_secs(2)).expect("TCP is not limited");
    assert_eq!(u16::from_be_bytes([tcp[6], tcp[7]]), 1);
}

/// Sends `count` queries for the names `pattern` gives (`*` replaced by a fresh label) from
/// `socket`; returns how many were answered at all.
fn answered_of(server: SocketAddr, socket: &UdpSocket, pattern: &str, count: u16) -> usize {
    for i in 0..count {
        let name = pattern.replace('*', &format!("r{i}x{}", u32::from(i) * 7919));
        let q = wire::query(
            i,
            &name,
            wire::QTYPE_A,
            Some(wire::opt(1232, 0, false, &[])),
        );
        socket.send_to(&q, server).unwrap();
    }
    let mut buf = [0u8; 4096];
    let mut answered = 0;
    while socket.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    answered
}

#[test]
fn a_random_name_per_query_does_not_get_past_the_limit() {
    // NXDOMAIN was keyed by the exact name, so a fresh name per query had a fresh bucket.
    // Keyed as BIND and Knot do: negative answers by zone, referrals by delegation, errors by
    // response code.
    let server = Server::start(&["--rrl-rate", "10", "--rrl-slip", "0"]);
    let addr = server.addr();
    let socket = UdpSocket::bind("127.0.7.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    for (what, pattern) in [
        ("NXDOMAIN", "*.example.com"),
        ("referral", "*.lab.example.com"),
        ("REFUSED", "*.example.net"),
    ] {
        let started = Instant::now();
        let answered = answered_of(addr, &socket, pattern, 100);
        let elapsed = started.elapsed().as_secs_f64();
        eprintln!("RRL: 100 {what} for random names: {answered} answered in {elapsed:.2} s");
        assert!(
            (answered as f64) <= 10.0 + 10.0 * elapsed + 1.0,
            "{what}: {answered} of 100 answered in {elapsed:.2} s at 10/s"
        );
    }
}
