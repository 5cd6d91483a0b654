//! The one writer of what a response takes from its query: the header's flags and the OPT
//! record (payload, DO, the ECS echo with its scope, the COOKIE reply). The general path
//! writes them after hickory-proto has encoded the sections; the fast path writes them over
//! a cached body; RRL's truncated slip rewrites the header here too. One writer, so the two
//! paths cannot drift apart in how they frame the same answer.

use hickory_proto::op::ResponseCode;

use super::cookie;
use super::wire::{ECS, HEADER_LEN, OPT};

/// Our UDP payload size: the DNS Flag Day 2020 value, safe from IP fragmentation.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

// The option codes and the OPT type fit one octet each, as `Opt::append` writes them.
const _: () = assert!(OPT < 256 && ECS < 256 && cookie::CODE < 256 && cookie::REPLY_LEN < 256);

/// What the answer itself decides in the header's flags (and the extended RCODE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub authoritative: bool,
    pub truncated: bool,
    pub rcode: ResponseCode,
    /// The RCODE's twelve bits, worked out once: the fast path writes them for every hit.
    code: u16,
    /// The query's flag bits the response copies, in the header's third and fourth octets:
    /// worked out once too, so the rule costs a hit nothing.
    echo: [u8; 2],
}

/// What a response to a QUERY copies: the opcode and RD (RFC 1035 §4.1.1: "copied into the
/// response") and CD (RFC 6895 §2; RFC 4035 §3.1.6).
const QUERY_ECHO: [u8; 2] = [0x79, 0x10];
/// What NOTIMP copies: the opcode alone. RFC 8906 §3.1.4: "NOTIMP is the expected rcode to an
/// unknown or unimplemented opcode", and "there is no requirement that anything other than
/// the DNS header match": what the other bits mean is the opcode's to define (RFC 2136 §2.2
/// makes them Z in UPDATE, "zero (0) in all requests and responses"), so none is echoed.
const NOTIMP_ECHO: [u8; 2] = [0x78, 0x00];

impl Outcome {
    pub fn new(authoritative: bool, truncated: bool, rcode: ResponseCode) -> Self {
        Outcome {
            authoritative,
            truncated,
            rcode,
            code: u16::from(rcode),
            echo: if rcode == ResponseCode::NotImp {
                NOTIMP_ECHO
            } else {
                QUERY_ECHO
            },
        }
    }

    /// This outcome with TC set.
    pub fn truncated(self) -> Self {
        Outcome {
            truncated: true,
            ..self
        }
    }
}

/// Writes the flags of a response to `query` (whose header is at least 4 octets) into
/// `out[2..4]`: QR, the opcode, AA and TC as the answer says, RD and CD copied (RFC 1035
/// §4.1.1; RFC 6895 §2) except in NOTIMP, which copies the opcode alone (RFC 8906 §3.1.4),
/// RA, Z and AD clear (no recursion; no DNSSEC data), the low four bits of the RCODE (the
/// rest go in OPT, RFC 6891 §6.1.3).
#[inline]
pub fn write_flags(out: &mut [u8], query: &[u8], o: Outcome) {
    out[2] = 0x80
        | (query[2] & o.echo[0])
        | if o.authoritative { 0x04 } else { 0 }
        | if o.truncated { 0x02 } else { 0 };
    out[3] = (query[3] & o.echo[1]) | (o.code & 0x0F) as u8;
}

/// NOTIMP for a message whose opcode is not QUERY: the header alone, with the ID and the
/// flags [`write_flags`] gives NOTIMP. RFC 8906 §3.1.4: "while new opcodes will most probably
/// use the current layout structure for the rest of the message, there is no requirement
/// that anything other than the DNS header match", so nothing past it is read or echoed.
pub fn notimp_header(packet: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    out[..2].copy_from_slice(&packet[..2]);
    write_flags(
        &mut out,
        packet,
        Outcome::new(false, false, ResponseCode::NotImp),
    );
    out
}

/// FORMERR for a packet that does not decode: the ID, opcode and RD from its header, and
/// nothing else (RFC 1035 §4.1.1: "unable to interpret the query").
pub fn formerr_header(packet: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    out[0] = packet[0];
    out[1] = packet[1];
    out[2] = 0x80 | (packet[2] & 0x79);
    out[3] = ResponseCode::FormErr.low();
    out
}

/// SERVFAIL with the ID alone: the last resort when nothing else can be encoded.
pub fn servfail_header(id: u16) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    out[..2].copy_from_slice(&id.to_be_bytes());
    out[2] = 0x80;
    out[3] = ResponseCode::ServFail.low();
    out
}

/// `response` cut to its header and question (which end at `question_end`), with TC set: a
/// client that retries over TCP gets the whole answer, and the reply is no larger than the
/// query.
pub fn truncated_to_question(response: &[u8], question_end: usize) -> Vec<u8> {
    let mut out = response[..question_end].to_vec();
    out[2] |= 0x02;
    out[6..12].fill(0);
    out
}

/// The OPT record of a response to a query that had one (RFC 6891 §6.1.1).
#[derive(Debug, Clone, Copy)]
pub struct Opt<'q> {
    /// RFC 3225 §3: "The DO bit of the query MUST be copied in the response."
    pub dnssec_ok: bool,
    /// The query's ECS option body as sent: RFC 7871 §7.2.1, "FAMILY, SOURCE PREFIX-LENGTH
    /// and ADDRESS ... MUST be the same as in the query" (checked by the reader, so echoing
    /// the bytes is exact).
    pub ecs: Option<&'q [u8]>,
    /// SCOPE PREFIX-LENGTH: how far the answer holds.
    pub scope: u8,
    /// The COOKIE option to answer with (RFC 7873 §5.2).
    pub cookie: Option<[u8; cookie::REPLY_LEN]>,
}

impl Opt<'_> {
    #[inline]
    fn options_len(&self) -> usize {
        self.ecs.map_or(0, |e| 4 + e.len()) + self.cookie.map_or(0, |_| 4 + cookie::REPLY_LEN)
    }

    /// The record's size on the wire.
    #[inline]
    pub fn size(&self) -> usize {
        11 + self.options_len()
    }

    /// Appends the record to `out`, a response whose last record it becomes, and counts it in
    /// ARCOUNT. The RCODE's upper bits go in the extended RCODE (RFC 6891 §6.1.3).
    #[inline]
    pub fn append(&self, out: &mut Vec<u8>, outcome: &Outcome) {
        let count = u16::from_be_bytes([out[10], out[11]]) + 1;
        out[10..12].copy_from_slice(&count.to_be_bytes());
        let [payload_hi, payload_lo] = MAX_UDP_PAYLOAD.to_be_bytes();
        let [len_hi, len_lo] = (self.options_len() as u16).to_be_bytes();
        let dnssec_ok = if self.dnssec_ok { 0x80 } else { 0 };
        // The root owner, OPT, our payload; extended RCODE, version 0, DO; the options' length.
        out.extend_from_slice(&[
            0,
            0,
            OPT as u8,
            payload_hi,
            payload_lo,
            (outcome.code >> 4) as u8,
            0,
            dnssec_ok,
            0,
            len_hi,
            len_lo,
        ]);
        if let Some(option) = self.ecs {
            let [hi, lo] = (option.len() as u16).to_be_bytes();
            let [family_hi, family_lo, source] = [option[0], option[1], option[2]];
            out.extend_from_slice(&[
                0, ECS as u8, hi, lo, family_hi, family_lo, source, self.scope,
            ]);
            out.extend_from_slice(&option[4..]);
        }
        if let Some(c) = self.cookie {
            out.extend_from_slice(&[0, cookie::CODE as u8, 0, cookie::REPLY_LEN as u8]);
            out.extend_from_slice(&c);
        }
    }
}
