//! The EDNS options a query's answer depends on, as read from the wire: Client Subnet
//! (RFC 7871) and COOKIE (RFC 7873).
//!
//! Input: tried both as an option body ([`ecs::parse_option`], [`cookie::parse`]) and as a
//! whole message ([`ecs::query_options`] and the message walkers the fast path uses). An
//! option is accepted exactly when its RFC allows it, checked against an independent reading.

use std::net::IpAddr;

use meridian::dns::cookie;
use meridian::dns::ecs::{self, ClientSubnet};

pub fn run(data: &[u8]) {
    let parsed = ecs::parse_option(data);
    let valid = valid(data);
    assert_eq!(
        parsed.is_ok(),
        valid,
        "parse_option({data:02x?}) = {parsed:?}, RFC 7871 says valid = {valid}"
    );
    if let Ok(subnet) = parsed {
        check_subnet(&subnet);
        assert_eq!(
            subnet.source_prefix, data[2],
            "the source prefix is the option's"
        );
        assert_eq!(
            octets(subnet.addr)[..data.len() - 4],
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
    if let Ok(Some(subnet)) = ecs::from_query(data) {
        check_subnet(&subnet);
    }
    if let Some(end) = ecs::single_question_end(data) {
        assert!((12 + 5..=data.len()).contains(&end), "question end {end}");
    }
    if let Some(start) = ecs::opt_record_start(data) {
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

/// A subnet the server acts on: its prefix fits its family and it is its own network.
fn check_subnet(subnet: &ClientSubnet) {
    let max = if subnet.addr.is_ipv4() { 32 } else { 128 };
    assert!(subnet.source_prefix <= max, "{subnet:?}: prefix too long");
    let net = subnet.net();
    assert_eq!(
        net.trunc(),
        net,
        "{subnet:?}: address bits beyond the prefix"
    );
}
