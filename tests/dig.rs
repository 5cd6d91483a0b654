//! The checks an operator runs by hand, scripted: `dig` and `kdig` against the real binary,
//! over UDP and TCP. `scripts/setup.sh` installs both; a missing tool fails the test.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::Server;

/// Runs a DNS tool against `server` and returns its standard output.
fn run(tool: &str, server: SocketAddr, args: &[&str]) -> String {
    let at = format!("@{}", server.ip());
    let port = server.port().to_string();
    // One try with a 3 s timeout: the two tools spell it differently.
    let limits: &[&str] = if tool == "kdig" {
        &["+retry=0", "+timeout=3"]
    } else {
        &["+tries=1", "+time=3"]
    };
    let out = Command::new(tool)
        .args([at.as_str(), "-p", port.as_str()])
        .args(limits)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} is required (scripts/setup.sh installs it): {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{tool} {args:?} failed:\n{text}");
    text
}

fn dig(server: SocketAddr, args: &[&str]) -> String {
    run("dig", server, args)
}

fn kdig(server: SocketAddr, args: &[&str]) -> String {
    run("kdig", server, args)
}

#[test]
fn dig_sees_steered_answers_with_ecs_from_three_continents() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let cases = [
        ("81.2.69.0/24", "198.51.100.10", "2001:db8:2::10"),
        ("8.8.8.0/24", "192.0.2.10", "2001:db8:1::10"),
        ("1.1.1.0/24", "203.0.113.10", "2001:db8:3::10"),
    ];
    for transport in ["+notcp", "+tcp"] {
        for (subnet, v4, v6) in cases {
            let ecs = format!("+subnet={subnet}");
            let a = dig(addr, &["www.example.com", "A", &ecs, transport]);
            assert!(a.contains("status: NOERROR"), "{a}");
            assert!(a.contains("flags: qr aa"), "{a}");
            assert!(a.contains(&format!("IN\tA\t{v4}")), "{subnet}: {a}");
            assert!(a.contains(&format!("CLIENT-SUBNET: {subnet}/")), "{a}");
            let aaaa = dig(
                addr,
                &["www.example.com", "AAAA", &ecs, transport, "+short"],
            );
            assert_eq!(aaaa.trim(), v6, "{subnet} AAAA");
        }
    }
}

#[test]
fn dig_sees_rfc_behaviour_of_the_example_zone() {
    let server = Server::start(&[]);
    let addr = server.addr();

    let nx = dig(addr, &["nope.example.com", "A"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    assert!(
        nx.contains("example.com.\t\t300\tIN\tSOA\tns1.example.com."),
        "{nx}"
    );

    let ent = dig(addr, &["b.example.com", "A"]);
    assert!(ent.contains("status: NOERROR"), "{ent}");
    assert!(ent.contains("ANSWER: 0, AUTHORITY: 1"), "{ent}");

    let referral = dig(addr, &["www.lab.example.com", "A", "+norec"]);
    assert!(
        referral.contains("flags: qr;"),
        "no AA on a referral: {referral}"
    );
    assert!(
        referral.contains("IN\tNS\tns1.lab.example.com."),
        "{referral}"
    );
    assert!(referral.contains("IN\tA\t192.0.2.99"), "{referral}");

    let refused = dig(addr, &["example.org", "A"]);
    assert!(refused.contains("status: REFUSED"), "{refused}");

    let big = dig(
        addr,
        &["big.example.com", "TXT", "+ignore", "+bufsize=4096"],
    );
    assert!(big.contains("flags: qr aa tc"), "{big}");
    let big_tcp = dig(addr, &["big.example.com", "TXT", "+tcp"]);
    assert!(big_tcp.contains("ANSWER: 8,"), "{big_tcp}");

    let badvers = dig(addr, &["www.example.com", "+edns=1", "+noednsnegotiation"]);
    assert!(badvers.contains("status: BADVERS"), "{badvers}");

    let upper = dig(addr, &["STATIC.Example.COM", "A", "+noall", "+answer"]);
    assert!(upper.starts_with("STATIC.Example.COM."), "{upper}");
}

#[test]
fn kdig_over_udp_and_tcp_agrees() {
    let server = Server::start(&[]);
    let addr = server.addr();
    for transport in ["+notcp", "+tcp"] {
        let out = kdig(
            addr,
            &["www.example.com", "A", "+subnet=81.2.69.0/24", transport],
        );
        assert!(out.contains("status: NOERROR"), "{out}");
        assert!(out.contains("Flags: qr aa"), "{out}");
        assert!(out.contains("IN\tA\t198.51.100.10"), "{out}");
        assert!(out.contains("CLIENT-SUBNET: 81.2.69.0/24/"), "{out}");
        let ns = kdig(addr, &["example.com", "NS", transport]);
        // kdig sends no OPT unless asked, so none comes back (RFC 6891 §7).
        assert!(ns.contains("ADDITIONAL: 4"), "4 glue addresses: {ns}");
        assert!(!ns.contains("EDNS PSEUDOSECTION"), "{ns}");
    }
}
