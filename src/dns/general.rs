//! The general path: every rule, for every query the fast path cannot answer from its cache.
//!
//! hickory-proto decodes the query and encodes the sections; [`super::wire`] reads the EDNS
//! options and [`super::response`] writes the header flags and the OPT record, as it does for
//! the fast path. The answer comes back with a [`Cacheable`] statement of what it varies on,
//! made only once the bytes are final.

use std::net::IpAddr;

use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, LowerName, RData, Record, RecordType};
use ipnet::IpNet;

use super::cache::{Cacheable, SteeredVariant, Variant, Varies, signed_on};
use super::response::{self, Opt, Outcome};
use super::wire::{self, HEADER_LEN};
use super::{At, Services, Transport, response_limit};
use crate::serving::Snapshot;
use crate::serving::answer::{self, Client, SteeredAnswer};
use crate::steer::{Family, Order};
use crate::zone::{Denial, DenialKind, Resolved, SteeredHit, Zone};

/// The general path's response, and what it varies on when the fast path may reuse it.
pub struct Answer {
    pub bytes: Vec<u8>,
    pub cacheable: Option<Cacheable>,
}

/// How a response is counted once its bytes are final.
enum Counted {
    /// Outside every zone.
    Outside,
    Plain {
        zone: usize,
    },
    Steered {
        zone: usize,
        name: usize,
        region: Option<usize>,
        /// When it was answered (Unix seconds) and with which TTL.
        now: u32,
        ttl: u32,
        /// The client the answer was steered for (where clients go).
        client: IpNet,
    },
}

/// Answers `packet`, which arrived `at`; `None` means send nothing: the packet is too short
/// to carry an ID, or it is itself a response (answering those invites loops).
pub fn answer(snapshot: &Snapshot, services: &Services, packet: &[u8], at: At) -> Option<Answer> {
    let At {
        src,
        transport,
        now,
    } = at;
    if packet.len() < HEADER_LEN || packet[2] & 0x80 != 0 {
        return None;
    }
    // Read from the header before anything is decoded: a message of another opcode need not
    // be laid out as a query (RFC 8906 §3.1.4), and FORMERR would misname it.
    if packet[2] & 0x78 != 0 {
        services
            .outside
            .plain(RecordType::Unknown(0), ResponseCode::NotImp);
        return Some(Answer {
            bytes: response::notimp_header(packet),
            cacheable: None,
        });
    }
    let formerr = || {
        services
            .outside
            .plain(RecordType::Unknown(0), ResponseCode::FormErr);
        Some(Answer {
            bytes: response::formerr_header(packet),
            cacheable: None,
        })
    };
    // Judged from the header before hickory decodes, which reserves room for every question
    // the header counts (88 octets each: 5.8 MB for 65,535 in a 12-octet packet). RFC 9619
    // §4: "A DNS message with OPCODE = 0 and QDCOUNT > 1 MUST be treated as an incorrectly
    // formatted message", so it gets the FORMERR of any message that does not decode.
    let header = wire::Reader::new(packet)
        .header()
        .expect("the length was checked above");
    if header.questions > 1 || !header.counts_fit(packet.len()) {
        return formerr();
    }
    let Ok(request) = Message::from_vec(packet) else {
        return formerr();
    };
    let limit = response_limit(transport, request.edns.as_ref().map(|e| e.max_payload()));
    let mut response = Response {
        packet,
        queries: &request.queries,
        has_opt: request.edns.is_some(),
        dnssec_ok: request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
        ecs: None,
        scope: 0,
        cookie: None,
        limit,
    };
    // Responses decided before a zone is found count as outside every zone.
    let asked = request
        .queries
        .first()
        .map_or(RecordType::Unknown(0), |q| q.query_type());
    let refuse = |response: Response<'_>, rcode: ResponseCode| {
        let outcome = Outcome::new(false, false, rcode);
        response.finish(
            snapshot,
            services,
            asked,
            Resolved::default(),
            outcome,
            Counted::Outside,
            None,
        )
    };

    if let Some(edns) = &request.edns
        && edns.version() > 0
    {
        // RFC 6891 §6.1.3: a version we do not implement gets BADVERS, with our version (0).
        return Some(refuse(response, ResponseCode::BADVERS));
    }
    let Ok(options) = wire::query_options(packet) else {
        return Some(refuse(response, ResponseCode::FormErr));
    };
    response.ecs = options.ecs.map(|(_, (at, len))| &packet[at..at + len]);
    let reply = options
        .sent_cookie(packet)
        .map(|sent| services.cookies.reply(&sent, src.ip(), now));
    response.cookie = reply.map(|r| r.option);
    if transport == Transport::Udp
        && let Some(limit) = services
            .cookies
            .limit(packet.len(), reply.is_some_and(|r| r.valid))
    {
        response.limit = response.limit.min(limit);
    }
    let Some(query) = request.queries.first() else {
        // RFC 7873 §5.4: a query with a cookie and no question asks for a server cookie.
        let rcode = if reply.is_some() {
            ResponseCode::NoError
        } else {
            ResponseCode::FormErr
        };
        return Some(refuse(response, rcode));
    };
    let qtype = query.query_type();
    if qtype == RecordType::OPT {
        return Some(refuse(response, ResponseCode::FormErr));
    }
    if query.query_class() != DNSClass::IN || matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        // Other classes hold no data here; zone transfers are not offered.
        return Some(refuse(response, ResponseCode::Refused));
    }
    let qname = query.name();
    let Some(zone) = snapshot.zones.find(&LowerName::new(qname)) else {
        return Some(refuse(response, ResponseCode::Refused));
    };
    if qtype == super::sign::NXNAME && zone.signer().is_some() {
        // RFC 9824 §3.5: "If an explicit query for the NXNAME RR type is received, the DNS
        // server MUST return a Format Error (response code FORMERR)."
        return Some(refuse(response, ResponseCode::FormErr));
    }

    let mut resolved = zone.resolve(qname, qtype);
    let mut counted = Counted::Plain { zone: zone.index };
    let mut varies = Some(Varies::Nothing);
    if let Some(hit) = resolved.steered.take() {
        let family = if qtype == RecordType::AAAA {
            Family::V6
        } else {
            Family::V4
        };
        let client = Client::of(options.subnet(), src.ip());
        let seed = answer::seed(request.metadata.id, src);
        let steered = &zone.steered[hit.index];
        let a = answer::steer(snapshot, zone, steered, client, family, seed);
        counted = Counted::Steered {
            zone: zone.index,
            name: hit.index,
            region: a.decision.chosen,
            now,
            ttl: a.decision.ttl,
            client: client.network(),
        };
        // A draw by weight differs for every query: nothing to reuse. Nor does a fence's
        // closed answer (its variant, without a region, would be the all-down fallback's),
        // or a multivalue answer whose list of regions the zone's compiled steering does not
        // number (not compiled yet, or a list no compiled class holds).
        let closed = a.decision.basis == crate::steer::Basis::FencedClosed;
        let also = snapshot.also(zone, &a.decision.also);
        varies = match (a.order, also) {
            (Order::Rotation(rotation), Some(also)) if !closed => {
                Some(Varies::Steered(SteeredVariant {
                    name: hit.index,
                    family,
                    variant: Variant {
                        region: a.decision.chosen,
                        also,
                        rotation,
                        ttl: a.ttl,
                    },
                }))
            }
            _ => None,
        };
        response.scope = a.scope;
        if response.dnssec_ok && zone.signer().is_some() {
            services.hot.note(&hit.owner, qtype, Some(client), now);
        }
        add_steered(zone, &hit, qtype, a, &mut resolved);
    }
    if response.dnssec_ok
        && let Some(signer) = zone.signer()
        && let Err(e) = super::sign::sign(zone, signer, &mut resolved, now, &services.signing)
    {
        // A key that cannot sign is a broken zone: SERVFAIL, as a validator would conclude.
        tracing::debug!(zone = %zone.origin, error = %e, "signing failed");
        let outcome = Outcome::new(false, false, ResponseCode::ServFail);
        return Some(response.finish(
            snapshot,
            services,
            qtype,
            Resolved::default(),
            outcome,
            counted,
            None,
        ));
    }
    if response.dnssec_ok
        && zone.signer().is_some()
        && !matches!(counted, Counted::Steered { .. })
        && resolved
            .denial
            .as_ref()
            .is_none_or(|d| d.kind != DenialKind::NoName)
    {
        // Static answers are signed ahead of the next window too; names that do not exist
        // are not noted, so that a flood of random names cannot crowd the table.
        services.hot.note(qname, qtype, None, now);
    }
    let outcome = Outcome::new(resolved.authoritative, false, resolved.rcode);
    let dnssec = signed_on(response.dnssec_ok, now);
    Some(response.finish(
        snapshot,
        services,
        qtype,
        resolved,
        outcome,
        counted,
        varies.map(|varies| Cacheable {
            zone: zone.index,
            outcome,
            varies,
            dnssec,
        }),
    ))
}

/// Completes `resolved` with the steered answer `a` for `hit`: its addresses, or NODATA when
/// it has none of the family asked for.
pub(super) fn add_steered(
    zone: &Zone,
    hit: &SteeredHit,
    qtype: RecordType,
    a: SteeredAnswer,
    resolved: &mut Resolved,
) {
    if a.addresses.is_empty() {
        zone.add_negative_soa(resolved);
        resolved.denial = Some(Denial {
            name: hit.owner.clone(),
            kind: DenialKind::NoData(qtype),
        });
    }
    resolved.answers.extend(a.addresses.into_iter().map(|addr| {
        let rdata = match addr {
            IpAddr::V4(a) => RData::A(A(a)),
            IpAddr::V6(a) => RData::AAAA(AAAA(a)),
        };
        Record::from_rdata(hit.owner.clone(), a.ttl, rdata)
    }));
}

/// A response being built: the parts that come from the query, not from the zone data.
struct Response<'q> {
    packet: &'q [u8],
    queries: &'q [Query],
    /// Whether the query had EDNS: the response then carries OPT too (RFC 6891 §6.1.1).
    has_opt: bool,
    dnssec_ok: bool,
    /// The query's ECS option body, to echo.
    ecs: Option<&'q [u8]>,
    scope: u8,
    /// The COOKIE option to answer with (RFC 7873 §5.2).
    cookie: Option<[u8; super::cookie::REPLY_LEN]>,
    limit: usize,
}

/// How an encode ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoded {
    /// Every record, as decided.
    Whole,
    /// Too large for the transport: the question alone with TC=1.
    Truncated,
    /// The records could not be written: SERVFAIL.
    Failed,
}

impl Response<'_> {
    fn opt(&self) -> Option<Opt<'_>> {
        self.has_opt.then_some(Opt {
            dnssec_ok: self.dnssec_ok,
            ecs: self.ecs,
            scope: self.scope,
            cookie: self.cookie,
        })
    }

    /// Encodes the response, counts it as it went out, and hands back `cacheable` only when
    /// every record went out as decided.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        self,
        snapshot: &Snapshot,
        services: &Services,
        qtype: RecordType,
        sections: Resolved,
        outcome: Outcome,
        counted: Counted,
        cacheable: Option<Cacheable>,
    ) -> Answer {
        let (bytes, encoded) = self.encode(sections, outcome);
        if self.has_opt && self.ecs.is_some() {
            services.metrics.queries().ecs_answer(self.scope);
        }
        let counters = |zone: usize| &snapshot.counters[zone];
        match (encoded, counted) {
            (Encoded::Failed, Counted::Outside) => {
                services.outside.plain(qtype, ResponseCode::ServFail);
            }
            (Encoded::Failed, Counted::Plain { zone } | Counted::Steered { zone, .. }) => {
                counters(zone).plain(qtype, ResponseCode::ServFail);
            }
            (_, Counted::Outside) => services.outside.plain(qtype, outcome.rcode),
            (_, Counted::Plain { zone }) => counters(zone).plain(qtype, outcome.rcode),
            (
                _,
                Counted::Steered {
                    zone,
                    name,
                    region,
                    now,
                    ttl,
                    client,
                },
            ) => counters(zone).steered(name, qtype, region, now, ttl, client),
        }
        Answer {
            bytes,
            cacheable: cacheable.filter(|_| encoded == Encoded::Whole),
        }
    }

    /// Encodes the response; when it exceeds the transport's limit, sends the question alone
    /// with TC=1 so the client retries over TCP (RFC 2181 §9: no partial RRsets).
    fn encode(&self, sections: Resolved, outcome: Outcome) -> (Vec<u8>, Encoded) {
        let id = u16::from_be_bytes([self.packet[0], self.packet[1]]);
        // hickory writes the sections; the header's flags and the OPT record are ours.
        let mut msg = Message::response(id, OpCode::Query);
        msg.queries = self.queries.to_vec();
        msg.answers = sections.answers;
        msg.authorities = sections.authorities;
        msg.additionals = sections.additionals;
        let opt = self.opt();
        let opt_size = opt.map_or(0, |o| o.size());
        let frame = |mut bytes: Vec<u8>, outcome: Outcome| {
            response::write_flags(&mut bytes, self.packet, outcome);
            if let Some(o) = &opt {
                o.append(&mut bytes, &outcome);
            }
            bytes
        };
        let encoded = msg.to_vec();
        if let Ok(bytes) = &encoded
            && bytes.len() + opt_size <= self.limit
        {
            // hickory stops at 65,535 octets and says so with TC: such an answer is partial.
            let partial = bytes[2] & 0x02 != 0;
            let outcome = if partial {
                outcome.truncated()
            } else {
                outcome
            };
            let how = if partial {
                Encoded::Truncated
            } else {
                Encoded::Whole
            };
            return (frame(encoded.expect("checked above"), outcome), how);
        }
        // A failed encode (a name that cannot be written) must not leave the client without
        // an answer: SERVFAIL, with the question.
        let (fallback, how) = if encoded.is_err() {
            let servfail = Outcome::new(false, false, ResponseCode::ServFail);
            (servfail, Encoded::Failed)
        } else {
            (outcome.truncated(), Encoded::Truncated)
        };
        msg.answers.clear();
        msg.authorities.clear();
        msg.additionals.clear();
        // The one question (at most 259 octets) and the OPT record fit every limit: 512
        // octets at least, or twice the query that carried them.
        let bytes = match msg.to_vec() {
            Ok(bytes) => frame(bytes, fallback),
            Err(_) => response::servfail_header(id),
        };
        (bytes, how)
    }
}
