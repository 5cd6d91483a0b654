//! The EDNS options a query's answer depends on, as read from the wire: Client Subnet
//! (RFC 7871) and COOKIE (RFC 7873).
//!
//! Input: tried both as an option body ([`wire::parse_ecs`], [`cookie::parse`]) and as a
//! whole message ([`wire::query_options`], the fast path's [`wire::Parsed::ordinary`] and
//! the other walks of the one wire reader). An option is accepted exactly when its RFC allows
//! it, checked against an independent reading.

use std::net::IpAddr;

use ipnet::IpNet;
use meridian::dns::{cookie, wire};

pub fn run(data: &[u8]) {
    let parsed = wire::parse_ecs(data);
    let valid = valid(data);
    assert_eq!(
        parsed.is_ok(),
        valid,
        "parse_ecs({data:02x?}) = {parsed:?}, RFC 7871 says valid = {valid}"
    );
    if let Ok(subnet) = parsed {
        check_subnet(&subnet);
        assert_eq!(
            subnet.prefix_len(),
            data[2],
            "the source prefix is the option's"
        );
        assert_eq!(
            octets(subnet.addr())[..data.len() - 4],
            data[4..],
            "the address is the option's"
        );
    }
    // RFC 7873 §4: a client cookie of 8 octets, alone or with a server cookie of 8 to 32.
    assert_eq!(
        cookie::parse(data).is_ok(),
        data.len() == 8 || (16..=40).contains(&data.len()),
        "cookie of {} octets",
        data.len()
    );
    if let Ok(options) = wire::query_options(data) {
        if let Some(subnet) = options.subnet() {
            check_subnet(&subnet);
        }
        if let Some((at, len)) = options.cookie {
            assert!(
                options.sent_cookie(data).is_some(),
                "a checked cookie reads"
            );
            assert!(at + len <= data.len(), "the cookie lies inside the message");
        }
    }
    if let Some(parsed) = wire::Parsed::ordinary(data) {
        // An ordinary query has exactly the options the general reading finds.
        let options = wire::query_options(data).expect("an ordinary query reads");
        assert_eq!(parsed.edns.map(|e| e.options).unwrap_or_default(), options);
    }
    if let Some(end) = wire::single_question_end(data) {
        assert!((12 + 5..=data.len()).contains(&end), "question end {end}");
    }
    if let Some(start) = wire::opt_record_start(data) {
        // An OPT record is at least a one-octet name and ten octets of fixed fields.
        assert!((12..=data.len() - 11).contains(&start), "OPT start {start}");
    }
}

/// RFC 7871 §6: FAMILY 1 or 2, SOURCE PREFIX-LENGTH within the family, exactly as many
/// ADDRESS octets as the prefix needs, no ADDRESS bit set beyond the prefix.
fn valid(option: &[u8]) -> bool {
    let [f1, f2, source, _scope, address @ ..] = option else {
        return false;
    };
    let bits = match u16::from_be_bytes([*f1, *f2]) {
        1 => 32,
        2 => 128,
        _ => return false,
    };
    let source = usize::from(*source);
    source <= bits
        && address.len() == source.div_ceil(8)
        && address.iter().enumerate().all(|(i, &octet)| {
            let kept = source.saturating_sub(8 * i).min(8);
            u16::from(octet) & (0xFF >> kept) == 0
        })
}

fn octets(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A subnet the server acts on: it is its own network.
fn check_subnet(subnet: &IpNet) {
    assert_eq!(
        subnet.trunc(),
        *subnet,
        "{subnet:?}: address bits beyond the prefix"
    );
}
