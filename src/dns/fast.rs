//! FAST PATH: an ordinary query answered from cached response bytes.
//!
//! A query that is one question of class IN with at most an OPT record (and a valid ECS
//! option) is parsed in place; its answer is looked up by (lower-case name, type) and, for a
//! steered name, by the region its client's GeoIP network decides and the rotation of the
//! endpoints. A hit costs the parse, two or three hash lookups and a copy with the ID, the RD
//! and CD bits, the question's case and the OPT record (with the ECS echo) patched in.
//! Everything else, and every first query, takes the general path, which fills the cache.
//! Each serving thread keeps its own caches (a UDP loop owns one, other callers use their
//! thread's), so a hit takes no lock and no reference count; they belong to one
//! serving state's generation, so a reload or a health change starts them afresh.

use std::cell::RefCell;
use std::hash::Hasher;
use std::net::SocketAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::answer::{self, Client};
use super::cookie::{self, Reply};
use super::ecs::{self, ClientSubnet};
use super::fastmap::{FastMap, FxHasher};
use super::{HEADER_LEN, MAX_UDP_PAYLOAD, SteeredTrace, Trace, Transport, general, response_limit};
use crate::serving::ServingState;
use crate::steer::{Family, Order, order};

/// Cached responses per set of caches: every thread answers every name.
const ANSWER_CAPACITY: usize = 50_000;
/// Cached steering decisions (per client network), shared out between the UDP threads. Each
/// sees most client networks (resolvers spread their queries over source ports, and so over
/// the threads), so each keeps at least [`MIN_DECISIONS`]: a decision costs about 3 us to
/// make again, a slot 72 octets (at most half of them full).
const DECISION_CAPACITY: usize = 200_000;
const MIN_DECISIONS: usize = 50_000;
const MAX_NAME: usize = 255;
const OPT_TYPE: u16 = 41;
const ECS_CODE: u16 = 8;

thread_local! {
    /// The caches of [`handle`]'s callers on this thread.
    static CACHES: RefCell<Caches> = RefCell::new(Caches::default());
}

/// One serving thread's fast-path caches, for the serving state of `generation`.
pub struct Caches {
    generation: u64,
    answers: FastMap<AnswerKey, Entry>,
    decisions: FastMap<ClientKey, Decided>,
}

/// The hash of (lower-case name, type, steered variant: region, rotation, TTL); entries
/// hold their name and type, which a hit checks.
type AnswerKey = u64;
/// (zone index, steered name index, family, client). The whole client, not only its network:
/// 127.0.0.1/32 sent as ECS gets a scope, the resolver 127.0.0.1 itself does not.
type ClientKey = (usize, usize, Family, Client);

impl Default for Caches {
    fn default() -> Self {
        Caches::share_of(1)
    }
}

impl Caches {
    /// The caches of one of `threads` UDP threads.
    pub fn share_of(threads: usize) -> Self {
        Caches {
            generation: 0,
            answers: FastMap::new(ANSWER_CAPACITY),
            decisions: FastMap::new((DECISION_CAPACITY / threads.max(1)).max(MIN_DECISIONS)),
        }
    }

    /// These caches for `state`: emptied if they were filled from another one.
    fn renew(&mut self, state: &ServingState) -> &mut Self {
        if self.generation != state.generation {
            self.answers.clear();
            self.decisions.clear();
            self.generation = state.generation;
        }
        self
    }
}

/// What the cache holds for a (name, type) and, for steered names, a variant.
enum Entry {
    /// The whole response but its OPT record; the same for every client.
    Fixed(Body),
    /// A steered name: the client decides which [`Entry::Fixed`] variant answers.
    Steered {
        name: Box<[u8]>,
        qtype: u16,
        zone: usize,
        steered: usize,
        family: Family,
    },
}

struct Body {
    name: Box<[u8]>,
    qtype: u16,
    zone: usize,
    rcode: ResponseCode,
    /// For a steered answer: the steered name and the region that answered.
    steered: Option<(usize, Option<usize>)>,
    bytes: Box<[u8]>,
    /// ARCOUNT without the OPT record.
    additional: u16,
}

/// The steering decision for one client network, with the ECS scope to send it.
#[derive(Clone, Copy)]
struct Decided {
    region: Option<usize>,
    endpoints: usize,
    equal_weights: bool,
    ttl: u32,
    scope: u8,
}

/// An ordinary query as parsed, without the packet (see [`prefetch`]).
#[derive(Clone, Copy)]
pub struct Parsed {
    id: u16,
    /// The wire-format name as asked is `packet[HEADER_LEN..][..name_len]`.
    name_len: usize,
    /// The hash of its lower-case form.
    name_hash: u64,
    qtype: u16,
    edns: Option<Edns>,
}

#[derive(Clone, Copy)]
struct Edns {
    payload: u16,
    dnssec_ok: bool,
    ecs: Option<ClientSubnet>,
    /// The ECS option as sent (family, source, scope, address), to echo.
    ecs_at: Option<(usize, usize)>,
    /// The first COOKIE option's body (RFC 7873 §5.2), checked well-formed.
    cookie_at: Option<(usize, usize)>,
}

/// An ordinary query: the packet and what parsing it found.
struct Query<'p> {
    packet: &'p [u8],
    parsed: Parsed,
}

impl std::ops::Deref for Query<'_> {
    type Target = Parsed;

    fn deref(&self) -> &Parsed {
        &self.parsed
    }
}

impl Parsed {
    /// The query if it is ordinary: QUERY opcode, one IN question, no answer or authority
    /// records, at most one additional record which is an EDNS(0) OPT with at most one valid
    /// ECS option and well-formed cookies, and nothing after it. `None` sends it down the
    /// general path.
    fn parse(packet: &[u8]) -> Option<Parsed> {
        if packet.len() < HEADER_LEN + 5 {
            return None;
        }
        let flags = u16::from_be_bytes([packet[2], packet[3]]);
        // QR clear, opcode QUERY; no TC, no Z or AD games, RCODE zero.
        if flags & 0xFA4F != 0 {
            return None;
        }
        let count = |i: usize| u16::from_be_bytes([packet[i], packet[i + 1]]);
        if count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
            return None;
        }
        let mut pos = HEADER_LEN;
        loop {
            let len = usize::from(*packet.get(pos)?);
            if len & 0xC0 != 0 || pos - HEADER_LEN + len + 1 > MAX_NAME {
                return None;
            }
            pos += len + 1;
            if len == 0 {
                break;
            }
        }
        let name_len = pos - HEADER_LEN;
        let tail = packet.get(pos..pos + 4)?;
        let name_hash = hash_lower(&packet[HEADER_LEN..pos]);
        let qtype = u16::from_be_bytes([tail[0], tail[1]]);
        let qclass = u16::from_be_bytes([tail[2], tail[3]]);
        // Meta types (OPT, AXFR, ANY, ...) and other classes take the general path.
        if qclass != 1 || qtype == 0 || (128..=255).contains(&qtype) || qtype == OPT_TYPE {
            return None;
        }
        pos += 4;
        let edns = if count(10) == 1 {
            let opt = packet.get(pos..pos + 11)?;
            let (rtype, payload) = (
                u16::from_be_bytes([opt[1], opt[2]]),
                u16::from_be_bytes([opt[3], opt[4]]),
            );
            // Root owner, OPT, extended RCODE 0 and version 0 (else BADVERS, generally).
            if opt[0] != 0 || rtype != OPT_TYPE || opt[5] != 0 || opt[6] != 0 {
                return None;
            }
            let dnssec_ok = opt[7] & 0x80 != 0;
            let rdlen = usize::from(u16::from_be_bytes([opt[9], opt[10]]));
            let start = pos + 11;
            let rdata = packet.get(start..start + rdlen)?;
            pos = start + rdlen;
            let (mut ecs, mut ecs_at, mut cookie_at) = (None, None, None);
            let mut o = 0;
            while o < rdata.len() {
                let head = rdata.get(o..o + 4)?;
                let code = u16::from_be_bytes([head[0], head[1]]);
                let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
                let body = rdata.get(o + 4..o + 4 + len)?;
                if code == ECS_CODE {
                    if ecs.is_some() {
                        return None;
                    }
                    ecs = Some(ecs::parse_option(body).ok()?);
                    ecs_at = Some((start + o + 4, len));
                } else if code == cookie::CODE && cookie_at.is_none() {
                    cookie::parse(body).ok()?;
                    cookie_at = Some((start + o + 4, len));
                }
                o += 4 + len;
            }
            Some(Edns {
                payload,
                dnssec_ok,
                ecs,
                ecs_at,
                cookie_at,
            })
        } else {
            None
        };
        if pos != packet.len() {
            return None;
        }
        Some(Parsed {
            id: u16::from_be_bytes([packet[0], packet[1]]),
            name_len,
            name_hash,
            qtype,
            edns,
        })
    }
}

impl Query<'_> {
    /// The name as asked, in its own case.
    fn name(&self) -> &[u8] {
        &self.packet[HEADER_LEN..HEADER_LEN + self.name_len]
    }

    /// Whether `name` (lower case, as cached) is this query's name, in any case.
    fn asks(&self, name: &[u8]) -> bool {
        name.eq_ignore_ascii_case(self.name())
    }

    /// The most response bytes the transport allows, and for UDP the cookie policy.
    fn limit(&self, state: &ServingState, transport: Transport, cookie: Option<&Reply>) -> usize {
        let limit = response_limit(transport, self.edns.map(|e| e.payload));
        let valid = cookie.is_some_and(|c| c.valid);
        match state.cookies.limit(self.packet.len(), valid) {
            Some(l) if transport == Transport::Udp => limit.min(l),
            _ => limit,
        }
    }

    /// The server's answer to the query's cookie, if it sent one.
    fn cookie(&self, state: &ServingState, src: SocketAddr) -> Option<Reply> {
        let (at, len) = self.edns?.cookie_at?;
        let sent = cookie::parse(&self.packet[at..at + len]).ok()?;
        Some(state.cookies.reply(&sent, src.ip(), cookie::now()))
    }

    fn client(&self, src: SocketAddr) -> Client {
        match self.edns.and_then(|e| e.ecs) {
            Some(s) if s.source_prefix > 0 => Client::Subnet { network: s.net() },
            Some(_) => Client::Resolver {
                address: src.ip(),
                ecs_withheld: true,
            },
            None => Client::Resolver {
                address: src.ip(),
                ecs_withheld: false,
            },
        }
    }
}

fn key(q: &Query<'_>, variant: Option<(Option<usize>, usize, u32)>) -> AnswerKey {
    use std::hash::BuildHasher;
    std::hash::BuildHasherDefault::<FxHasher>::default().hash_one((q.name_hash, q.qtype, variant))
}

/// The FxHash of `name.to_ascii_lowercase()`, eight octets at a time without copying it.
fn hash_lower(name: &[u8]) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // Sets 0x20 in every octet that is 'A'..='Z'; the 0x7f mask keeps the additions from
    // carrying into the next octet, and `!w` leaves octets with the high bit alone.
    let lower = |w: u64| {
        let low7 = w & (0x7f * ONES);
        let from_a = low7 + (0x80 - u64::from(b'A')) * ONES;
        let past_z = low7 + (0x80 - u64::from(b'Z') - 1) * ONES;
        w | ((from_a & !past_z & !w & (0x80 * ONES)) >> 2)
    };
    let mut h = FxHasher::default();
    h.write_usize(name.len());
    let mut chunks = name.chunks_exact(8);
    for c in &mut chunks {
        h.write_u64(lower(u64::from_le_bytes(c.try_into().expect("8 octets"))));
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h.write_u64(lower(u64::from_le_bytes(last)));
    h.finish()
}

/// Parses a query and loads into the CPU cache what [`handle_parsed`] will read for it when
/// it is steered: its client's decision in `caches`, a likely miss among many client
/// networks. A serving loop calls it for a whole batch before answering any, so that the
/// batch's memory waits overlap, and hands the result to [`handle_parsed`] with the same
/// packet and caches.
pub fn prefetch(
    caches: &Caches,
    state: &ServingState,
    packet: &[u8],
    src: SocketAddr,
) -> Option<Parsed> {
    let parsed = Parsed::parse(packet)?;
    let q = &Query { packet, parsed };
    if caches.generation == state.generation
        && let Some(&Entry::Steered {
            zone,
            steered,
            family,
            ..
        }) = cached(&caches.answers, q, None)
    {
        caches
            .decisions
            .prefetch(&(zone, steered, family, q.client(src)));
    }
    Some(parsed)
}

/// [`super::handle`] with this thread's caches, writing the response into `out`; `false`
/// means send nothing.
pub fn handle(
    state: &ServingState,
    packet: &[u8],
    src: SocketAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> bool {
    let parsed = Parsed::parse(packet);
    CACHES
        .with_borrow_mut(|caches| handle_parsed(caches, state, packet, parsed, src, transport, out))
}

/// [`handle`] with `caches`, for a packet that [`prefetch`] parsed already: `parsed` is what
/// it returned.
pub fn handle_parsed(
    caches: &mut Caches,
    state: &ServingState,
    packet: &[u8],
    parsed: Option<Parsed>,
    src: SocketAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    let Some(parsed) = parsed else {
        return general_into(state, packet, src, transport, &mut Trace::default(), out);
    };
    let q = &Query { packet, parsed };
    let caches = caches.renew(state);
    let body = match cached(&caches.answers, q, None) {
        Some(Entry::Fixed(b)) => Some((b, 0u8)),
        Some(&Entry::Steered {
            zone,
            steered,
            family,
            ..
        }) => {
            let decided = decide(caches, state, q, src, zone, steered, family);
            decided.and_then(|d| steered_body(&caches.answers, q, src, steered, d))
        }
        None => None,
    };
    if let Some((b, scope)) = body
        && respond(state, b, q, scope, transport, src, out)
    {
        count(state, b, q.qtype);
        return true;
    }
    // Miss: the general path answers and, for an ordinary answer, fills the cache.
    let mut trace = Trace::default();
    if !general_into(state, packet, src, transport, &mut trace, out) {
        return false;
    }
    if let Some(answered) = trace.answered {
        fill(caches, q, out, answered);
    }
    true
}

/// The general path's response, into `out`.
fn general_into(
    state: &ServingState,
    packet: &[u8],
    src: SocketAddr,
    transport: Transport,
    trace: &mut Trace,
    out: &mut Vec<u8>,
) -> bool {
    match general(state, packet, src, transport, trace) {
        Some(response) => {
            *out = response;
            true
        }
        None => false,
    }
}

/// The cached entry for `q` (and a steered variant), if it is for the query's name and type:
/// keys are hashes, so a hit is checked.
fn cached<'c>(
    answers: &'c FastMap<AnswerKey, Entry>,
    q: &Query<'_>,
    variant: Option<(Option<usize>, usize, u32)>,
) -> Option<&'c Entry> {
    let entry = answers.get(&key(q, variant))?;
    let (name, qtype) = match entry {
        Entry::Fixed(b) => (&b.name, b.qtype),
        Entry::Steered { name, qtype, .. } => (name, *qtype),
    };
    (q.asks(name) && qtype == q.qtype).then_some(entry)
}

/// The steering decision for this client of a steered name, cached.
fn decide(
    caches: &mut Caches,
    state: &ServingState,
    q: &Query<'_>,
    src: SocketAddr,
    zone_index: usize,
    steered_index: usize,
    family: Family,
) -> Option<Decided> {
    let client = q.client(src);
    let ckey: ClientKey = (zone_index, steered_index, family, client);
    if let Some(&d) = caches.decisions.get(&ckey) {
        return Some(d);
    }
    let zone = state.zones.get(zone_index)?;
    let steered = zone.steered.get(steered_index)?;
    // Seed 0: the decision does not depend on it; only the rotation does.
    let a = answer::steer(state, zone, steered, client, family, 0);
    let endpoints =
        a.decision
            .endpoints(&steered.config, &zone.regions, state.health(zone), family);
    let d = Decided {
        region: a.decision.chosen,
        endpoints: endpoints.len(),
        equal_weights: endpoints.windows(2).all(|w| w[0].weight == w[1].weight),
        ttl: a.ttl,
        scope: a.scope,
    };
    caches.decisions.insert(ckey, d);
    Some(d)
}

/// The cached body of a steered name for a decision, with the ECS scope to send.
fn steered_body<'c>(
    answers: &'c FastMap<AnswerKey, Entry>,
    q: &Query<'_>,
    src: SocketAddr,
    steered_index: usize,
    decided: Decided,
) -> Option<(&'c Body, u8)> {
    let Order::Rotation(k) = order(decided.endpoints, decided.equal_weights, seed(q.id, src))
    else {
        return None;
    };
    match cached(answers, q, Some((decided.region, k, decided.ttl)))? {
        Entry::Fixed(b) if b.steered == Some((steered_index, decided.region)) => {
            Some((b, decided.scope))
        }
        _ => None,
    }
}

/// The seed of the general path: the same rotation for the same query.
pub(crate) fn seed(id: u16, src: SocketAddr) -> u64 {
    u64::from(id) ^ (u64::from(src.port()) << 16)
}

/// Stores the general path's answer for the queries like `q` to come.
fn fill(caches: &mut Caches, q: &Query<'_>, response: &[u8], answered: super::Answered) {
    // A truncated or failed response is never cached; nor one that is not ours to reuse.
    if response.len() < HEADER_LEN || response[2] & 0x02 != 0 {
        return;
    }
    let Some((bytes, additional)) = strip_opt(response, q.edns.is_some()) else {
        return;
    };
    let body = |steered| Body {
        name: q.name().to_ascii_lowercase().into(),
        qtype: q.qtype,
        zone: answered.zone,
        rcode: answered.rcode,
        steered,
        bytes: bytes.clone().into(),
        additional,
    };
    match answered.steered {
        None => {
            caches
                .answers
                .insert(key(q, None), Entry::Fixed(body(None)));
        }
        Some(SteeredTrace {
            index,
            family,
            region,
            order: Order::Rotation(k),
            ttl,
        }) => {
            caches.answers.insert(
                key(q, None),
                Entry::Steered {
                    name: q.name().to_ascii_lowercase().into(),
                    qtype: q.qtype,
                    zone: answered.zone,
                    steered: index,
                    family,
                },
            );
            caches.answers.insert(
                key(q, Some((region, k, ttl))),
                Entry::Fixed(body(Some((index, region)))),
            );
        }
        // Drawn by weight: a new draw every query, nothing to reuse.
        Some(_) => {}
    }
}

/// The response without its OPT record (the last record, as the general path writes it),
/// and the additional count without it.
fn strip_opt(response: &[u8], had_opt: bool) -> Option<(Vec<u8>, u16)> {
    let arcount = u16::from_be_bytes([response[10], response[11]]);
    if !had_opt {
        return Some((response.to_vec(), arcount));
    }
    let start = ecs::opt_record_start(response)?;
    Some((response[..start].to_vec(), arcount.checked_sub(1)?))
}

/// Writes the cached body patched for `q` into `out` (empty); `false`, leaving it empty, when
/// it would not fit the transport.
fn respond(
    state: &ServingState,
    b: &Body,
    q: &Query<'_>,
    scope: u8,
    transport: Transport,
    src: SocketAddr,
    out: &mut Vec<u8>,
) -> bool {
    let cookie = q.cookie(state, src);
    let ecs_len = q.edns.and_then(|e| e.ecs_at).map_or(0, |(_, len)| 4 + len);
    let options_len = ecs_len + cookie.map_or(0, |_| 4 + cookie::REPLY_LEN);
    let opt_len = if q.edns.is_some() {
        11 + options_len
    } else {
        0
    };
    if b.bytes.len() + opt_len > q.limit(state, transport, cookie.as_ref()) {
        return false;
    }
    out.reserve(b.bytes.len() + opt_len);
    out.extend_from_slice(&b.bytes);
    out[0..2].copy_from_slice(&q.id.to_be_bytes());
    // RD and CD are copied from the query (RFC 6895 §2); the rest is the cached answer's.
    out[2] = (out[2] & !0x01) | (q.packet[2] & 0x01);
    out[3] = (out[3] & !0x10) | (q.packet[3] & 0x10);
    // The question as asked: same length, its own case (0x20).
    out[HEADER_LEN..HEADER_LEN + q.name_len]
        .copy_from_slice(&q.packet[HEADER_LEN..HEADER_LEN + q.name_len]);
    let additional = b.additional + u16::from(q.edns.is_some());
    out[10..12].copy_from_slice(&additional.to_be_bytes());
    if let Some(e) = q.edns {
        out.push(0);
        out.extend_from_slice(&OPT_TYPE.to_be_bytes());
        out.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
        // Extended RCODE 0, version 0, DO copied (RFC 3225 §3).
        out.extend_from_slice(&[0, 0, if e.dnssec_ok { 0x80 } else { 0 }, 0]);
        out.extend_from_slice(&(options_len as u16).to_be_bytes());
        if let Some((at, len)) = e.ecs_at {
            out.extend_from_slice(&ECS_CODE.to_be_bytes());
            out.extend_from_slice(&(len as u16).to_be_bytes());
            let option = &q.packet[at..at + len];
            out.extend_from_slice(&option[..3]);
            out.push(scope);
            out.extend_from_slice(&option[4..]);
        }
        if let Some(c) = cookie {
            out.extend_from_slice(&cookie::CODE.to_be_bytes());
            out.extend_from_slice(&(cookie::REPLY_LEN as u16).to_be_bytes());
            out.extend_from_slice(&c.option);
        }
    }
    true
}

fn count(state: &ServingState, b: &Body, qtype: u16) {
    let counters = &state.counters[b.zone];
    let qtype = RecordType::from(qtype);
    match b.steered {
        Some((name, region)) => counters.steered(name, qtype, region),
        None => counters.plain(qtype, b.rcode),
    }
}

#[cfg(test)]
mod tests;
