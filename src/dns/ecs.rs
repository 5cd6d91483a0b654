//! EDNS Client Subnet (RFC 7871), and the COOKIE option (RFC 7873), as they arrive on the wire.
//!
//! hickory-proto's decoder accepts ADDRESS fields with too many octets and bits set beyond
//! the source prefix, and drops unparseable options silently, so the option is read here from
//! the raw query. RFC 7871 §6: "A server receiving an ECS option that uses either too few or
//! too many ADDRESS octets, or that has non-zero ADDRESS bits set beyond SOURCE
//! PREFIX-LENGTH, SHOULD return FORMERR to reject the packet".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

const OPT: u16 = 41;
const ECS: u16 = 8;

/// The client subnet of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSubnet {
    pub addr: IpAddr,
    pub source_prefix: u8,
}

impl ClientSubnet {
    pub fn net(&self) -> IpNet {
        IpNet::new(self.addr, self.source_prefix).expect("source prefix checked against family")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcsError {
    #[error("message ends inside {0}")]
    Truncated(&'static str),
    #[error("bad label in a name")]
    BadLabel,
    #[error("ECS option shorter than 4 octets")]
    Short,
    #[error("ECS family {0} is neither 1 (IPv4) nor 2 (IPv6)")]
    Family(u16),
    #[error("ECS source prefix /{prefix} is too long for the family (max /{max})")]
    PrefixTooLong { prefix: u8, max: u8 },
    #[error("ECS address has {got} octets; /{prefix} needs {want}")]
    AddressLength { got: usize, want: usize, prefix: u8 },
    #[error("ECS address has bits set beyond /{0}")]
    BitsBeyondPrefix(u8),
    #[error("more than one ECS option")]
    Duplicate,
    #[error(transparent)]
    Cookie(#[from] super::cookie::Malformed),
}

/// The options of a query's OPT record that the answer depends on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueryOptions<'a> {
    pub subnet: Option<ClientSubnet>,
    pub cookie: Option<super::cookie::Sent<'a>>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], EcsError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(EcsError::Truncated(what))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, EcsError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Skips a domain name: labels up to the root, or up to a compression pointer.
    fn skip_name(&mut self) -> Result<(), EcsError> {
        loop {
            let len = self.take(1, "a name")?[0];
            match len & 0xC0 {
                0x00 if len == 0 => return Ok(()),
                0x00 => {
                    self.take(usize::from(len), "a label")?;
                }
                0xC0 => {
                    self.take(1, "a name pointer")?;
                    return Ok(());
                }
                _ => return Err(EcsError::BadLabel),
            }
        }
    }
}

/// The ECS option of a query, if it has one.
pub fn from_query(packet: &[u8]) -> Result<Option<ClientSubnet>, EcsError> {
    query_options(packet).map(|o| o.subnet)
}

/// The ECS and COOKIE options of a query. RFC 7873 §5.2: of several COOKIE options only the
/// first counts; a malformed one is an error (FORMERR).
pub fn query_options(packet: &[u8]) -> Result<QueryOptions<'_>, EcsError> {
    let mut r = Reader {
        buf: packet,
        pos: 0,
    };
    let header = r.take(12, "the header")?;
    let count = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    for _ in 0..qd {
        r.skip_name()?;
        r.take(4, "a question")?;
    }
    for _ in 0..u32::from(an) + u32::from(ns) {
        r.skip_name()?;
        r.take(8, "a record")?;
        let len = r.u16("a record")?;
        r.take(usize::from(len), "record data")?;
    }
    let mut found = QueryOptions::default();
    for _ in 0..ar {
        r.skip_name()?;
        let rtype = r.u16("a record")?;
        r.take(6, "a record")?;
        let len = r.u16("a record")?;
        let data = r.take(usize::from(len), "record data")?;
        if rtype != OPT {
            continue;
        }
        let mut o = Reader { buf: data, pos: 0 };
        while o.pos < data.len() {
            let code = o.u16("an EDNS option")?;
            let len = o.u16("an EDNS option")?;
            let body = o.take(usize::from(len), "an EDNS option")?;
            if code == ECS {
                if found.subnet.is_some() {
                    return Err(EcsError::Duplicate);
                }
                found.subnet = Some(parse_option(body)?);
            } else if code == super::cookie::CODE && found.cookie.is_none() {
                found.cookie = Some(super::cookie::parse(body)?);
            }
        }
    }
    Ok(found)
}

/// Where the question section of a message with exactly one question ends.
pub fn single_question_end(message: &[u8]) -> Option<usize> {
    let mut r = Reader {
        buf: message,
        pos: 0,
    };
    let header = r.take(12, "the header").ok()?;
    if u16::from_be_bytes([header[4], header[5]]) != 1 {
        return None;
    }
    r.skip_name().ok()?;
    r.take(4, "a question").ok()?;
    Some(r.pos)
}

/// Where the OPT record of a message starts, if it is the message's last record.
pub fn opt_record_start(message: &[u8]) -> Option<usize> {
    let mut r = Reader {
        buf: message,
        pos: 0,
    };
    let header = r.take(12, "the header").ok()?;
    let count = |i: usize| u32::from(u16::from_be_bytes([header[i], header[i + 1]]));
    for _ in 0..count(4) {
        r.skip_name().ok()?;
        r.take(4, "a question").ok()?;
    }
    let records = count(6) + count(8) + count(10);
    for i in 0..records {
        let start = r.pos;
        r.skip_name().ok()?;
        let rtype = r.u16("a record").ok()?;
        r.take(6, "a record").ok()?;
        let len = r.u16("a record").ok()?;
        r.take(usize::from(len), "record data").ok()?;
        if i + 1 == records {
            return (rtype == OPT && r.pos == message.len()).then_some(start);
        }
    }
    None
}

/// Validates one ECS option body (RFC 7871 §6).
pub fn parse_option(body: &[u8]) -> Result<ClientSubnet, EcsError> {
    if body.len() < 4 {
        return Err(EcsError::Short);
    }
    let family = u16::from_be_bytes([body[0], body[1]]);
    let prefix = body[2];
    let max = match family {
        1 => 32,
        2 => 128,
        f => return Err(EcsError::Family(f)),
    };
    if prefix > max {
        return Err(EcsError::PrefixTooLong { prefix, max });
    }
    let address = &body[4..];
    let want = usize::from(prefix).div_ceil(8);
    if address.len() != want {
        return Err(EcsError::AddressLength {
            got: address.len(),
            want,
            prefix,
        });
    }
    let mut octets = [0u8; 16];
    octets[..want].copy_from_slice(address);
    if !prefix.is_multiple_of(8) && octets[want - 1] & (0xFF >> (prefix % 8)) != 0 {
        return Err(EcsError::BitsBeyondPrefix(prefix));
    }
    let addr = if family == 1 {
        IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    Ok(ClientSubnet {
        addr,
        source_prefix: prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(family: u16, source: u8, addr: &[u8]) -> Vec<u8> {
        let mut v = family.to_be_bytes().to_vec();
        v.extend([source, 0]);
        v.extend(addr);
        v
    }

    #[test]
    fn rfc7871_valid_options() {
        let s = parse_option(&opt(1, 24, &[81, 2, 69])).unwrap();
        assert_eq!(s.net().to_string(), "81.2.69.0/24");
        let s = parse_option(&opt(2, 56, &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0x12])).unwrap();
        assert_eq!(s.net().to_string(), "2001:db8:0:1200::/56");
        let s = parse_option(&opt(1, 0, &[])).unwrap();
        assert_eq!(s.source_prefix, 0);
        let s = parse_option(&opt(1, 20, &[10, 1, 0xF0])).unwrap();
        assert_eq!(s.net().to_string(), "10.1.240.0/20");
    }

    #[test]
    fn rfc7871_malformed_options() {
        assert_eq!(
            parse_option(&opt(1, 33, &[1, 2, 3, 4, 5])),
            Err(EcsError::PrefixTooLong {
                prefix: 33,
                max: 32
            })
        );
        assert_eq!(
            parse_option(&opt(2, 129, &[0; 17])),
            Err(EcsError::PrefixTooLong {
                prefix: 129,
                max: 128
            })
        );
        assert_eq!(
            parse_option(&opt(1, 20, &[10, 1, 0xF8])),
            Err(EcsError::BitsBeyondPrefix(20))
        );
        assert!(matches!(
            parse_option(&opt(1, 24, &[81, 2, 69, 0])),
            Err(EcsError::AddressLength {
                got: 4,
                want: 3,
                ..
            })
        ));
        assert!(matches!(
            parse_option(&opt(1, 24, &[81, 2])),
            Err(EcsError::AddressLength {
                got: 2,
                want: 3,
                ..
            })
        ));
        assert_eq!(parse_option(&opt(3, 0, &[])), Err(EcsError::Family(3)));
        assert_eq!(parse_option(&[0, 1, 24]), Err(EcsError::Short));
    }
}
