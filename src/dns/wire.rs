//! The one reader of DNS messages as they arrive: every hand-written walk of a message's
//! bytes (the fast path's parse of an ordinary query, the EDNS options of any query, where a
//! response's question ends and where its OPT record starts) goes through [`Reader`].
//!
//! The rule: nothing here allocates or trusts a length it has not checked. hickory-proto
//! decodes whole messages for the general path; it is not used here because its decoder
//! accepts ECS ADDRESS fields with too many octets or bits set beyond the source prefix and
//! drops unparseable options silently. RFC 7871 §6: "A server receiving an ECS option that
//! uses either too few or too many ADDRESS octets, or that has non-zero ADDRESS bits set
//! beyond SOURCE PREFIX-LENGTH, SHOULD return FORMERR to reject the packet".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::cookie;
use super::fastmap::hash_lower;

pub const HEADER_LEN: usize = 12;
/// The record type of EDNS's pseudo-record (RFC 6891 §6.1.1).
pub const OPT: u16 = 41;
/// The EDNS option code of ECS (RFC 7871 §6).
pub const ECS: u16 = 8;
/// RFC 1035 §2.3.4: a name is at most 255 octets on the wire.
pub const MAX_NAME: usize = 255;
/// The fewest octets a question takes: the root name, type and class.
const MIN_QUESTION: usize = 5;
/// The fewest octets a resource record takes: the root name, type, class, TTL and RDLENGTH.
const MIN_RECORD: usize = 11;

/// Why a message (or one of its options) cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the message ends early or has a bad label")]
    Malformed,
    #[error(transparent)]
    Ecs(#[from] EcsError),
    #[error("more than one ECS option")]
    DuplicateEcs,
    #[error(transparent)]
    Cookie(#[from] cookie::Malformed),
}

/// Why an ECS option body is malformed (RFC 7871 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EcsError {
    #[error("ECS option shorter than 4 octets")]
    Short,
    #[error("ECS family {0} is neither 1 (IPv4) nor 2 (IPv6)")]
    Family(u16),
    #[error("ECS source prefix /{prefix} is too long for the family (max /{max})")]
    PrefixTooLong { prefix: u8, max: u8 },
    #[error("ECS address has {got} octets; /{prefix} needs {want}")]
    AddressLength { got: u16, want: u8, prefix: u8 },
    #[error("ECS address has bits set beyond /{0}")]
    BitsBeyondPrefix(u8),
}

/// A part of the message being read, by offset and length.
pub type Span = (usize, usize);

/// A cursor over a message that checks every length before it reads. Its steps return
/// `None` when the message ends early or a label is bad: the fast path only needs to know
/// that, and small return values keep it fast. A copy reads on from where the original was.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// The fixed header (RFC 1035 §4.1.1).
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub questions: u16,
    pub answers: u16,
    pub authorities: u16,
    pub additionals: u16,
}

impl Header {
    /// Whether a message of `len` octets (header included) has room for every question and
    /// record this header counts, each as short as it can be. A decoder that sizes its
    /// sections from the counts must not see a header that fails this.
    pub fn counts_fit(&self, len: usize) -> bool {
        let records = usize::from(self.answers)
            + usize::from(self.authorities)
            + usize::from(self.additionals);
        HEADER_LEN + usize::from(self.questions) * MIN_QUESTION + records * MIN_RECORD <= len
    }
}

/// A resource record's fixed fields, its start and its data.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub start: usize,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub data: &'a [u8],
    /// Where `data` starts in the message.
    pub data_at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    #[inline(always)]
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    #[inline(always)]
    pub fn header(&mut self) -> Option<Header> {
        let h = self.take(HEADER_LEN)?;
        let word = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        Some(Header {
            id: word(0),
            flags: word(2),
            questions: word(4),
            answers: word(6),
            authorities: word(8),
            additionals: word(10),
        })
    }

    /// Skips a domain name: labels up to the root, or up to a compression pointer.
    #[inline(always)]
    pub fn skip_name(&mut self) -> Option<()> {
        loop {
            let len = self.take(1)?[0];
            match len & 0xC0 {
                0x00 if len == 0 => return Some(()),
                0x00 => {
                    self.take(usize::from(len))?;
                }
                0xC0 => {
                    self.take(1)?;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A name that may be compressed (RFC 1035 §4.1.4), spelled out in wire form into `out`:
    /// its length there. The reader moves past the name as written. `None` for a bad label,
    /// a pointer that does not point back (RFC 1035: "a prior occurrence of the same name"),
    /// or more than 255 octets; so a loop of pointers ends.
    pub fn name(&mut self, out: &mut [u8; MAX_NAME]) -> Option<usize> {
        let mut at = self.pos;
        let mut after = None;
        let mut len = 0;
        loop {
            let label = usize::from(*self.buf.get(at)?);
            match label & 0xC0 {
                0x00 => {
                    let end = len + 1 + label;
                    if end > MAX_NAME {
                        return None;
                    }
                    out[len..end].copy_from_slice(self.buf.get(at..at + 1 + label)?);
                    len = end;
                    at += 1 + label;
                    if label == 0 {
                        break;
                    }
                }
                0xC0 => {
                    let low = usize::from(*self.buf.get(at + 1)?);
                    let target = ((label & 0x3F) << 8) | low;
                    if target >= at {
                        return None;
                    }
                    after.get_or_insert(at + 2);
                    at = target;
                }
                _ => return None,
            }
        }
        self.pos = after.unwrap_or(at);
        Some(len)
    }

    /// A name written out in full (no compression pointer), as a query's question is: its
    /// span. `None` for a pointer, a bad label or more than 255 octets.
    #[inline(always)]
    pub fn plain_name(&mut self) -> Option<Span> {
        let start = self.pos;
        loop {
            let len = usize::from(*self.buf.get(self.pos)?);
            if len & 0xC0 != 0 || self.pos - start + len + 1 > MAX_NAME {
                return None;
            }
            self.pos += len + 1;
            if len == 0 {
                return (self.pos <= self.buf.len()).then_some((start, self.pos - start));
            }
        }
    }

    /// Type and class of a question whose name was just read.
    #[inline(always)]
    pub fn question_tail(&mut self) -> Option<(u16, u16)> {
        let t = self.take(4)?;
        Some((
            u16::from_be_bytes([t[0], t[1]]),
            u16::from_be_bytes([t[2], t[3]]),
        ))
    }

    #[inline]
    pub fn skip_question(&mut self) -> Option<()> {
        self.skip_name()?;
        self.question_tail().map(|_| ())
    }

    /// The next resource record, if its owner is the root (as an OPT record's must be).
    #[inline(always)]
    pub fn root_record(&mut self) -> Option<Record<'a>> {
        if *self.buf.get(self.pos)? != 0 {
            return None;
        }
        self.record()
    }

    /// The next resource record.
    #[inline(always)]
    pub fn record(&mut self) -> Option<Record<'a>> {
        let start = self.pos;
        self.skip_name()?;
        let f = self.take(10)?;
        let len = usize::from(u16::from_be_bytes([f[8], f[9]]));
        let data_at = self.pos;
        let data = self.take(len)?;
        Some(Record {
            start,
            rtype: u16::from_be_bytes([f[0], f[1]]),
            class: u16::from_be_bytes([f[2], f[3]]),
            ttl: u32::from_be_bytes([f[4], f[5], f[6], f[7]]),
            data,
            data_at,
        })
    }
}

/// The EDNS options a response depends on, as found in a query's OPT record(s).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The client subnet, and the option body as sent (echoed with the scope filled in).
    pub ecs: Option<(IpNet, Span)>,
    /// The first COOKIE option's body, checked well-formed (RFC 7873 §5.2: of several only
    /// the first counts; a malformed one is FORMERR).
    pub cookie: Option<Span>,
}

impl Options {
    /// Adds the options of one OPT record's data, which starts at `at` in the message.
    #[inline(always)]
    pub fn read(&mut self, data: &[u8], at: usize) -> Result<(), WireError> {
        let mut r = Reader::new(data);
        while !r.at_end() {
            let (code, len) = r.u16().zip(r.u16()).ok_or(WireError::Malformed)?;
            let len = usize::from(len);
            let span = (at + r.pos(), len);
            let body = r.take(len).ok_or(WireError::Malformed)?;
            if code == ECS {
                if self.ecs.is_some() {
                    return Err(WireError::DuplicateEcs);
                }
                self.ecs = Some((parse_ecs(body)?, span));
            } else if code == cookie::CODE && self.cookie.is_none() {
                cookie::parse(body)?;
                self.cookie = Some(span);
            }
        }
        Ok(())
    }

    /// The client subnet the query disclosed, if it sent ECS.
    pub fn subnet(&self) -> Option<IpNet> {
        self.ecs.map(|(net, _)| net)
    }

    /// The COOKIE option that [`Options::read`] checked, in `message`.
    pub fn sent_cookie<'m>(&self, message: &'m [u8]) -> Option<cookie::Sent<'m>> {
        let (at, len) = self.cookie?;
        cookie::parse(&message[at..at + len]).ok()
    }
}

/// The ECS and COOKIE options of a query, from every OPT record it has.
pub fn query_options(message: &[u8]) -> Result<Options, WireError> {
    let mut r = Reader::new(message);
    let h = r.header().ok_or(WireError::Malformed)?;
    for _ in 0..h.questions {
        r.skip_question().ok_or(WireError::Malformed)?;
    }
    for _ in 0..u32::from(h.answers) + u32::from(h.authorities) {
        r.record().ok_or(WireError::Malformed)?;
    }
    let mut found = Options::default();
    for _ in 0..h.additionals {
        let rec = r.record().ok_or(WireError::Malformed)?;
        if rec.rtype == OPT {
            found.read(rec.data, rec.data_at)?;
        }
    }
    Ok(found)
}

/// Where the question section of a message with exactly one question ends.
pub fn single_question_end(message: &[u8]) -> Option<usize> {
    let mut r = Reader::new(message);
    if r.header()?.questions != 1 {
        return None;
    }
    r.skip_question()?;
    Some(r.pos())
}

/// Where the OPT record of a message starts, if it is the message's last record.
pub fn opt_record_start(message: &[u8]) -> Option<usize> {
    let mut r = Reader::new(message);
    let h = r.header()?;
    for _ in 0..h.questions {
        r.skip_question()?;
    }
    let records = u32::from(h.answers) + u32::from(h.authorities) + u32::from(h.additionals);
    for i in 0..records {
        let rec = r.record()?;
        if i + 1 == records {
            return (rec.rtype == OPT && r.at_end()).then_some(rec.start);
        }
    }
    None
}

/// Validates one ECS option body (RFC 7871 §6): the client subnet it discloses. Source
/// prefix 0 is a resolver withholding its client (RFC 7871 §7.1.2).
#[inline(always)]
pub fn parse_ecs(body: &[u8]) -> Result<IpNet, EcsError> {
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
            got: u16::try_from(address.len()).unwrap_or(u16::MAX),
            want: want as u8,
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
    Ok(IpNet::new(addr, prefix).expect("prefix checked against the family"))
}

/// An ordinary query as the fast path reads it, without the packet: offsets into it.
#[derive(Debug, Clone, Copy)]
pub struct Parsed {
    pub id: u16,
    /// The wire-format name as asked is `packet[HEADER_LEN..][..name_len]`.
    pub name_len: usize,
    /// The hash of its lower-case form.
    pub name_hash: u64,
    pub qtype: u16,
    pub edns: Option<QueryOpt>,
}

/// What an ordinary query's OPT record says.
#[derive(Debug, Clone, Copy)]
pub struct QueryOpt {
    pub payload: u16,
    pub dnssec_ok: bool,
    pub options: Options,
}

impl Parsed {
    /// The query if it is ordinary: QUERY opcode, one IN question written out in full, no
    /// answer or authority records, at most one additional record which is an EDNS(0) OPT
    /// with at most one valid ECS option and well-formed cookies, and nothing after it.
    /// `None` sends it down the general path.
    #[inline(always)]
    pub fn ordinary(packet: &[u8]) -> Option<Parsed> {
        let mut r = Reader::new(packet);
        let h = r.header()?;
        // QR clear, opcode QUERY, no TC, Z or RCODE. AA, RA and AD mean nothing in a query
        // to this server (it never sets AD), RD and CD are copied: any of them may be set.
        if h.flags & 0xFA4F != 0
            || h.questions != 1
            || h.answers != 0
            || h.authorities != 0
            || h.additionals > 1
        {
            return None;
        }
        let (_, name_len) = r.plain_name()?;
        let (qtype, qclass) = r.question_tail()?;
        // Meta types (OPT, AXFR, ANY, ...) and other classes take the general path.
        if qclass != 1 || qtype == 0 || (128..=255).contains(&qtype) || qtype == OPT {
            return None;
        }
        let name_hash = hash_lower(&packet[HEADER_LEN..HEADER_LEN + name_len]);
        let edns = if h.additionals == 1 {
            let opt = r.root_record()?;
            // OPT, extended RCODE 0 and version 0 (else BADVERS, generally).
            if opt.rtype != OPT || opt.ttl >> 16 != 0 {
                return None;
            }
            let mut options = Options::default();
            options.read(opt.data, opt.data_at).ok()?;
            Some(QueryOpt {
                payload: opt.class,
                dnssec_ok: opt.ttl & 0x8000 != 0,
                options,
            })
        } else {
            None
        };
        if !r.at_end() {
            return None;
        }
        Some(Parsed {
            id: h.id,
            name_len,
            name_hash,
            qtype,
            edns,
        })
    }
}

#[cfg(test)]
mod tests;
