//! FAST PATH: one DNS query in, one response out.
//!
//! [`handle`] is synchronous and takes the serving state by reference: no lock, no await, no
//! log line above debug. The socket loops in [`server`] call it for UDP and TCP alike.
//! Protocol rules it applies: RFC 1034/1035 (AA, referrals, NXDOMAIN), RFC 2308 (negative
//! answers), RFC 6891 (EDNS), RFC 7871 (ECS), RFC 8482 (ANY).

pub mod answer;
pub mod cookie;
pub mod ecs;
mod fast;
mod fastmap;
pub mod rrl;
pub mod server;

use std::net::SocketAddr;

use hickory_proto::op::{Edns, Message, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet as EcsOption, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, LowerName, RData, Record, RecordType};

use crate::serving::ServingState;
use crate::steer::Family;
use crate::zone::Resolved;
use answer::Client;

/// Our UDP payload size: the DNS Flag Day 2020 value, safe from IP fragmentation.
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// Without EDNS a UDP response is at most 512 octets (RFC 1035 §4.2.1).
const CLASSIC_UDP_PAYLOAD: usize = 512;
const HEADER_LEN: usize = 12;

/// The most response bytes `transport` allows for a query advertising `payload` (EDNS).
fn response_limit(transport: Transport, payload: Option<u16>) -> usize {
    match (transport, payload) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, None) => CLASSIC_UDP_PAYLOAD,
        // RFC 6891 §6.2.5: values below 512 are treated as 512.
        (Transport::Udp, Some(p)) => usize::from(p.clamp(512, MAX_UDP_PAYLOAD)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Answers one query packet from `src`: from the response cache when the query is ordinary
/// and answered before (the `fast` module), else by the general path below. `None` means send nothing:
/// the packet is too short to carry an ID, or it is itself a response (answering those
/// invites loops).
pub fn handle(
    state: &ServingState,
    packet: &[u8],
    src: SocketAddr,
    transport: Transport,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    fast::handle(state, packet, src, transport, &mut out).then_some(out)
}

pub use fast::{Caches as FastCaches, Parsed, handle_parsed, prefetch};

/// What the general path did with a query, so that the fast path can cache the answer.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Trace {
    /// The query reached a zone and got an ordinary answer.
    pub answered: Option<Answered>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Answered {
    pub zone: usize,
    pub rcode: ResponseCode,
    pub steered: Option<SteeredTrace>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct SteeredTrace {
    pub index: usize,
    pub family: Family,
    pub region: Option<usize>,
    pub order: crate::steer::Order,
    pub ttl: u32,
}

/// The general path: every rule, for every query. Fills `trace` when the answer is one the
/// fast path may cache.
pub(crate) fn general(
    state: &ServingState,
    packet: &[u8],
    src: SocketAddr,
    transport: Transport,
    trace: &mut Trace,
) -> Option<Vec<u8>> {
    if packet.len() < HEADER_LEN || packet[2] & 0x80 != 0 {
        return None;
    }
    let request = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) => {
            state
                .outside
                .plain(RecordType::Unknown(0), ResponseCode::FormErr);
            return Some(raw_formerr(packet));
        }
    };
    let mut meta = Metadata::response_from_request(&request.metadata);
    let mut response = Response::new(&request, transport);
    // Responses decided before a zone is found count as outside every zone.
    let asked = request
        .queries
        .first()
        .map_or(RecordType::Unknown(0), |q| q.query_type());
    let outside = |meta: Metadata, response: Response| {
        state.outside.plain(asked, meta.response_code);
        Some(response.encode(meta))
    };

    if request.metadata.op_code != OpCode::Query {
        meta.response_code = ResponseCode::NotImp;
        return outside(meta, response);
    }
    if let Some(edns) = &request.edns
        && edns.version() > 0
    {
        // RFC 6891 §6.1.3: a version we do not implement gets BADVERS, with our version (0).
        meta.response_code = ResponseCode::BADVERS;
        return outside(meta, response);
    }
    let options = match ecs::query_options(packet) {
        Ok(o) => o,
        Err(_) => {
            meta.response_code = ResponseCode::FormErr;
            return outside(meta, response);
        }
    };
    let subnet = options.subnet;
    response.ecs = subnet;
    let reply = options
        .cookie
        .map(|sent| state.cookies.reply(&sent, src.ip(), cookie::now()));
    response.cookie = reply.map(|r| r.option);
    if transport == Transport::Udp
        && let Some(limit) = state
            .cookies
            .limit(packet.len(), reply.is_some_and(|r| r.valid))
    {
        response.limit = response.limit.min(limit);
    }
    if request.queries.len() != 1 {
        // RFC 7873 §5.4: a query with a cookie and no question asks for a server cookie.
        if !(request.queries.is_empty() && reply.is_some()) {
            meta.response_code = ResponseCode::FormErr;
        }
        return outside(meta, response);
    }
    let query = &request.queries[0];
    let qtype = query.query_type();
    if qtype == RecordType::OPT {
        meta.response_code = ResponseCode::FormErr;
        return outside(meta, response);
    }
    if query.query_class() != DNSClass::IN || matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        // Other classes hold no data here; zone transfers are not offered.
        meta.response_code = ResponseCode::Refused;
        return outside(meta, response);
    }
    let qname = query.name();
    let Some(zone) = state.zones.find(&LowerName::new(qname)) else {
        meta.response_code = ResponseCode::Refused;
        return outside(meta, response);
    };

    let mut resolved = zone.resolve(qname, qtype);
    if let Some(hit) = resolved.steered.take() {
        let family = if qtype == RecordType::AAAA {
            Family::V6
        } else {
            Family::V4
        };
        let client = match subnet {
            Some(s) if s.source_prefix > 0 => Client::Subnet { network: s.net() },
            Some(_) => Client::Resolver {
                address: src.ip(),
                ecs_withheld: true,
            },
            None => Client::Resolver {
                address: src.ip(),
                ecs_withheld: false,
            },
        };
        let seed = u64::from(request.metadata.id) ^ (u64::from(src.port()) << 16);
        let steered = &zone.steered[hit.index];
        let answer = answer::steer(state, zone, steered, client, family, seed);
        state.counters[zone.index].steered(hit.index, qtype, answer.decision.chosen);
        trace.answered = Some(Answered {
            zone: zone.index,
            rcode: ResponseCode::NoError,
            steered: Some(SteeredTrace {
                index: hit.index,
                family,
                region: answer.decision.chosen,
                order: answer.order,
                ttl: answer.ttl,
            }),
        });
        response.scope = answer.scope;
        if answer.addresses.is_empty() {
            zone.add_negative_soa(&mut resolved);
        }
        resolved
            .answers
            .extend(answer.addresses.into_iter().map(|addr| {
                let rdata = match addr {
                    std::net::IpAddr::V4(a) => RData::A(A(a)),
                    std::net::IpAddr::V6(a) => RData::AAAA(AAAA(a)),
                };
                Record::from_rdata(hit.owner.clone(), answer.ttl, rdata)
            }));
    } else {
        state.counters[zone.index].plain(qtype, resolved.rcode);
        trace.answered = Some(Answered {
            zone: zone.index,
            rcode: resolved.rcode,
            steered: None,
        });
    }
    meta.authoritative = resolved.authoritative;
    meta.response_code = resolved.rcode;
    response.sections = resolved;
    Some(response.encode(meta))
}

/// FORMERR for a packet that does not decode: the ID, opcode and RD from its header, and
/// nothing else (RFC 1035 §4.1.1: "unable to interpret the query").
fn raw_formerr(packet: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    out[0] = packet[0];
    out[1] = packet[1];
    out[2] = 0x80 | (packet[2] & 0x79); // QR, opcode, RD
    out[3] = ResponseCode::FormErr.low();
    out
}

/// A response being built: the parts that depend on the query, not on the zone data.
struct Response {
    queries: Vec<Query>,
    /// The query's EDNS, if it had any: the response then carries OPT too (RFC 6891 §6.1.1).
    request_edns: Option<Edns>,
    ecs: Option<ecs::ClientSubnet>,
    scope: u8,
    /// The COOKIE option to answer with (RFC 7873 §5.2).
    cookie: Option<[u8; cookie::REPLY_LEN]>,
    sections: Resolved,
    limit: usize,
}

impl Response {
    fn new(request: &Message, transport: Transport) -> Self {
        let limit = response_limit(transport, request.edns.as_ref().map(Edns::max_payload));
        Response {
            queries: request.queries.clone(),
            request_edns: request.edns.clone(),
            ecs: None,
            scope: 0,
            cookie: None,
            sections: Resolved::default(),
            limit,
        }
    }

    fn edns(&self) -> Option<Edns> {
        let req = self.request_edns.as_ref()?;
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        edns.set_version(0);
        // RFC 3225 §3: "The DO bit of the query MUST be copied in the response."
        edns.set_dnssec_ok(req.flags().dnssec_ok);
        if let Some(s) = self.ecs {
            // RFC 7871 §7.2.1: FAMILY, SOURCE PREFIX-LENGTH and ADDRESS echo the query.
            edns.options_mut().insert(EdnsOption::Subnet(EcsOption::new(
                s.addr,
                s.source_prefix,
                self.scope,
            )));
        }
        if let Some(c) = self.cookie {
            edns.options_mut()
                .insert(EdnsOption::Unknown(cookie::CODE, c.to_vec()));
        }
        Some(edns)
    }

    /// Encodes the response; when it exceeds the transport's limit, sends the question alone
    /// with TC=1 so the client retries over TCP (RFC 2181 §9: no partial RRsets).
    fn encode(self, meta: Metadata) -> Vec<u8> {
        let mut msg = Message::response(meta.id, meta.op_code);
        msg.metadata = meta;
        msg.queries = self.queries.clone();
        if let Some(edns) = self.edns() {
            msg.set_edns(edns);
        }
        let Resolved {
            answers,
            authorities,
            additionals,
            ..
        } = self.sections;
        msg.answers = answers;
        msg.authorities = authorities;
        msg.additionals = additionals;
        match msg.to_vec() {
            Ok(bytes) if bytes.len() <= self.limit => bytes,
            // A failed encode (a name that cannot be written) must not leave the client
            // without an answer: SERVFAIL, with the question.
            result => {
                if result.is_err() {
                    msg.metadata.response_code = ResponseCode::ServFail;
                    msg.metadata.authoritative = false;
                } else {
                    msg.metadata.truncation = true;
                }
                msg.answers.clear();
                msg.authorities.clear();
                msg.additionals.clear();
                match msg.to_vec() {
                    Ok(bytes) if bytes.len() <= self.limit => bytes,
                    // Even the question does not fit (several long ones, say, in a query that
                    // is answered FORMERR): the header alone, never more than the limit.
                    Ok(_) => {
                        msg.queries.clear();
                        msg.to_vec().unwrap_or_else(|_| raw_servfail(meta.id))
                    }
                    Err(_) => raw_servfail(meta.id),
                }
            }
        }
    }
}

fn raw_servfail(id: u16) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    out[..2].copy_from_slice(&id.to_be_bytes());
    out[2] = 0x80;
    out[3] = ResponseCode::ServFail.low();
    out
}

#[cfg(test)]
mod tests;
