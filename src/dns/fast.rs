//! FAST PATH: an ordinary query answered from cached response bytes.
//!
//! A query that is one question of class IN with at most an OPT record (and a valid ECS
//! option) is read in place ([`Parsed::ordinary`]); its answer is looked up by (lower-case
//! name, type, DO) and, for a steered name, by the [`Variant`] its client's decision and the
//! query's rotation give: the key the general path's [`Cacheable`] states. A hit costs the
//! parse, two or three hash lookups and a copy, framed for the query by the one response
//! writer (ID, flags, the question's case, the OPT record with the ECS echo). Everything
//! else, and every first query, takes the general path, which fills the cache when its answer
//! says it may. Each serving thread keeps its own caches (a UDP loop owns one, other callers
//! use their thread's), so a hit takes no lock and no reference count; they belong to one
//! snapshot's generation, so a reload or a health change starts them afresh.

use std::cell::RefCell;
use std::net::SocketAddr;

use hickory_proto::rr::RecordType;

use super::cache::{Cacheable, SteeredVariant, Variant, Varies, signed_on};
use super::cookie::Reply;
use super::fastmap::{FastMap, FxHasher};
use super::general::{self, Answer};
use super::response::{self, Opt};
use super::wire::{HEADER_LEN, Parsed};
use super::{Services, Transport, response_limit};
use crate::metrics::QueryCounters;
use crate::serving::Snapshot;
use crate::serving::answer::{self, Client};
use crate::serving::compiled::{Also, Compiled, Steering};
use crate::steer::{Family, Order};

/// Cached responses per set of caches: every thread answers every name.
const ANSWER_CAPACITY: usize = 50_000;
/// Cached steering decisions (per client network), shared out between the UDP threads. Each
/// sees most client networks (resolvers spread their queries over source ports, and so over
/// the threads), so each keeps at least [`MIN_DECISIONS`]: a decision costs about 3 us to
/// make again, a slot 72 octets (at most half of them full).
const DECISION_CAPACITY: usize = 200_000;
const MIN_DECISIONS: usize = 50_000;

thread_local! {
    /// The caches of [`handle`]'s callers on this thread.
    static CACHES: RefCell<Caches> = RefCell::new(Caches::default());
}

/// One serving thread's fast-path caches, for the snapshot of `generation`.
pub struct Caches {
    generation: u64,
    answers: FastMap<AnswerKey, Entry>,
    decisions: FastMap<ClientKey, Compiled>,
    /// Ordinary queries answered from `answers`, and those the general path answered, since
    /// the last [`Caches::flush_counts`]: plain integers, so a hit touches no shared line.
    hits: u64,
    misses: u64,
}

/// The hash of (lower-case name, type, steered [`Variant`]): the key [`Cacheable`] states;
/// entries hold their name and type, which a hit checks.
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
            hits: 0,
            misses: 0,
        }
    }

    /// Adds the hits and misses counted since the last call to the shared counters: a UDP
    /// thread calls it once per batch.
    pub fn flush_counts(&mut self, counters: &QueryCounters) {
        counters.fast_path(self.hits, self.misses);
        self.hits = 0;
        self.misses = 0;
    }

    /// These caches for `snapshot`: emptied if they were filled from another one.
    fn renew(&mut self, snapshot: &Snapshot) -> &mut Self {
        if self.generation != snapshot.generation {
            self.answers.clear();
            self.decisions.clear();
            self.generation = snapshot.generation;
        }
        self
    }
}

/// What the cache holds for a (name, type) and, for steered names, a variant.
enum Entry {
    /// The whole response but its OPT record, for every query its key matches.
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
    /// What the general path said of these bytes.
    cacheable: Cacheable,
    bytes: Box<[u8]>,
}

/// An ordinary query: the packet and what the reader found in it.
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
    fn limit(&self, services: &Services, transport: Transport, cookie: Option<&Reply>) -> usize {
        let limit = response_limit(transport, self.edns.map(|e| e.payload));
        let valid = cookie.is_some_and(|c| c.valid);
        match services.cookies.limit(self.packet.len(), valid) {
            Some(l) if transport == Transport::Udp => limit.min(l),
            _ => limit,
        }
    }

    /// The server's answer to the query's cookie, if it sent one.
    fn cookie(&self, services: &Services, src: SocketAddr, now: u32) -> Option<Reply> {
        let sent = self.edns?.options.sent_cookie(self.packet)?;
        Some(services.cookies.reply(&sent, src.ip(), now))
    }

    fn client(&self, src: SocketAddr) -> Client {
        Client::of(self.edns.and_then(|e| e.options.subnet()), src.ip())
    }

    /// The response's OPT record, if the query had one.
    fn opt(&self, scope: u8, cookie: Option<Reply>) -> Option<Opt<'_>> {
        let e = self.edns?;
        Some(Opt {
            dnssec_ok: e.dnssec_ok,
            ecs: e
                .options
                .ecs
                .map(|(_, (at, len))| &self.packet[at..at + len]),
            scope,
            cookie: cookie.map(|c| c.option),
        })
    }
}

fn key(q: &Query<'_>, variant: Option<Variant>) -> AnswerKey {
    use std::hash::BuildHasher;
    let dnssec_ok = q.edns.is_some_and(|e| e.dnssec_ok);
    std::hash::BuildHasherDefault::<FxHasher>::default().hash_one((
        q.name_hash,
        q.qtype,
        dnssec_ok,
        variant,
    ))
}

/// Parses a query and loads into the CPU cache what [`handle_parsed`] will read for it when
/// it is steered: its client's decision in `caches`, a likely miss among many client
/// networks. A serving loop calls it for a whole batch before answering any, so that the
/// batch's memory waits overlap, and hands the result to [`handle_parsed`] with the same
/// packet and caches.
pub fn prefetch(
    caches: &Caches,
    snapshot: &Snapshot,
    packet: &[u8],
    src: SocketAddr,
) -> Option<Parsed> {
    let parsed = Parsed::ordinary(packet)?;
    let q = &Query { packet, parsed };
    if caches.generation == snapshot.generation
        && let Some(&Entry::Steered {
            zone,
            steered,
            family,
            ..
        }) = cached(&caches.answers, q, None)
    {
        // Compiled, the answer starts from the table; until then, from the decision cache.
        match snapshot.steering.get(zone) {
            Some(Some(compiled)) => compiled.prefetch(steered, family, q.client(src)),
            Some(None) => caches
                .decisions
                .prefetch(&(zone, steered, family, q.client(src))),
            None => {}
        }
    }
    Some(parsed)
}

/// [`super::handle`] with this thread's caches, writing the response into `out`; `false`
/// means send nothing.
pub fn handle(
    snapshot: &Snapshot,
    services: &Services,
    packet: &[u8],
    at: At,
    out: &mut Vec<u8>,
) -> bool {
    let parsed = Parsed::ordinary(packet);
    CACHES.with_borrow_mut(|caches| {
        let sent = handle_parsed(caches, snapshot, services, packet, parsed, at, out);
        caches.flush_counts(services.metrics.queries());
        sent
    })
}

/// Where and when a query arrived.
#[derive(Debug, Clone, Copy)]
pub struct At {
    pub src: SocketAddr,
    pub transport: Transport,
    /// Unix seconds, for cookies.
    pub now: u32,
}

/// [`handle`] with `caches`, for a packet that [`prefetch`] parsed already: `parsed` is what
/// it returned.
pub fn handle_parsed(
    caches: &mut Caches,
    snapshot: &Snapshot,
    services: &Services,
    packet: &[u8],
    parsed: Option<Parsed>,
    at: At,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    let general = |out: &mut Vec<u8>| {
        general::answer(snapshot, services, packet, at).map(|Answer { bytes, cacheable }| {
            *out = bytes;
            cacheable
        })
    };
    let Some(parsed) = parsed else {
        return general(out).is_some();
    };
    let q = &Query { packet, parsed };
    let caches = caches.renew(snapshot);
    let body = match cached(&caches.answers, q, None) {
        Some(Entry::Fixed(b)) => Some((b, 0u8)),
        Some(&Entry::Steered {
            zone,
            steered,
            family,
            ..
        }) => {
            let decided = decide(caches, snapshot, q, at.src, zone, steered, family);
            decided.and_then(|d| steered_body(&caches.answers, q, at.src, steered, d))
        }
        None => None,
    };
    // A signed answer serves the day its signatures were made for; the next day signs anew.
    let dnssec = signed_on(q.edns.is_some_and(|e| e.dnssec_ok), at.now);
    if let Some((b, scope)) = body
        && b.cacheable.dnssec == dnssec
        && respond(services, b, q, scope, at, out)
    {
        count(snapshot, b, q, at);
        caches.hits += 1;
        return true;
    }
    // Miss: the general path answers and, when it says the answer may be reused, fills the
    // cache.
    caches.misses += 1;
    match general(out) {
        None => false,
        Some(cacheable) => {
            if let Some(c) = cacheable {
                fill(caches, q, out, c);
            }
            true
        }
    }
}

/// The cached entry for `q` (and a steered variant), if it is for the query's name and type:
/// keys are hashes, so a hit is checked.
fn cached<'c>(
    answers: &'c FastMap<AnswerKey, Entry>,
    q: &Query<'_>,
    variant: Option<Variant>,
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
    snapshot: &Snapshot,
    q: &Query<'_>,
    src: SocketAddr,
    zone_index: usize,
    steered_index: usize,
    family: Family,
) -> Option<Compiled> {
    let client = q.client(src);
    let zone = snapshot.zones.get(zone_index)?;
    if let Some(c) = snapshot.compiled_steer(zone, steered_index, family, client) {
        return Some(c);
    }
    // Not compiled yet (or an address the table leaves to the direct path, a measured
    // network not yet decided from the serving latency map, a client of a shedding region):
    // decisions are cached per client network meanwhile, in a table of fixed size.
    let ckey: ClientKey = (zone_index, steered_index, family, client);
    if let Some(&d) = caches.decisions.get(&ckey) {
        return Some(d);
    }
    let steered = zone.steered.get(steered_index)?;
    // Seed 0: the decision does not depend on it; only the rotation does.
    let a = answer::steer(snapshot, zone, steered, client, family, 0);
    let d = Compiled {
        steering: Steering {
            region: a.decision.chosen,
            also: snapshot
                .also(zone, &a.decision.also)
                .unwrap_or(Also::UNKNOWN),
            spread: a.spread,
            ttl: a.ttl,
        },
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
    decided: Compiled,
) -> Option<(&'c Body, u8)> {
    let steering = decided.steering;
    // An answer without a region may be a fence's closed answer, which the general path
    // never caches (its variant would be the all-down fallback's): answered there, as every
    // all-down answer is; so is a multivalue answer whose list has no number.
    steering.region?;
    if steering.also == Also::UNKNOWN {
        return None;
    }
    let Order::Rotation(rotation) = steering.spread.order(answer::seed(q.id, src)) else {
        return None;
    };
    let variant = Variant {
        region: steering.region,
        also: steering.also,
        rotation,
        ttl: steering.ttl,
    };
    match cached(answers, q, Some(variant))? {
        Entry::Fixed(b)
            if matches!(b.cacheable.varies,
                Varies::Steered(s) if s.name == steered_index && s.variant == variant) =>
        {
            Some((b, decided.scope))
        }
        _ => None,
    }
}

/// Stores the general path's answer, which `cacheable` says may be reused, for the queries
/// like `q` to come.
fn fill(caches: &mut Caches, q: &Query<'_>, response: &[u8], cacheable: Cacheable) {
    let Some(bytes) = strip_opt(response, q.edns.is_some()) else {
        return;
    };
    let body = Body {
        name: q.name().to_ascii_lowercase().into(),
        qtype: q.qtype,
        cacheable,
        bytes: bytes.into(),
    };
    match cacheable.varies {
        Varies::Nothing => {
            caches.answers.insert(key(q, None), Entry::Fixed(body));
        }
        Varies::Steered(SteeredVariant {
            name,
            family,
            variant,
        }) => {
            caches.answers.insert(
                key(q, None),
                Entry::Steered {
                    name: body.name.clone(),
                    qtype: q.qtype,
                    zone: cacheable.zone,
                    steered: name,
                    family,
                },
            );
            caches
                .answers
                .insert(key(q, Some(variant)), Entry::Fixed(body));
        }
    }
}

/// The response without its OPT record (the last record, as [`response::Opt`] writes it),
/// with ARCOUNT not counting it.
fn strip_opt(response: &[u8], had_opt: bool) -> Option<Vec<u8>> {
    if !had_opt {
        return Some(response.to_vec());
    }
    let start = super::wire::opt_record_start(response)?;
    let mut body = response[..start].to_vec();
    let arcount = u16::from_be_bytes([body[10], body[11]]).checked_sub(1)?;
    body[10..12].copy_from_slice(&arcount.to_be_bytes());
    Some(body)
}

/// Writes the cached body framed for `q` into `out` (empty); `false`, leaving it empty, when
/// it would not fit the transport.
fn respond(
    services: &Services,
    b: &Body,
    q: &Query<'_>,
    scope: u8,
    at: At,
    out: &mut Vec<u8>,
) -> bool {
    let cookie = q.cookie(services, at.src, at.now);
    let limit = q.limit(services, at.transport, cookie.as_ref());
    let opt = q.opt(scope, cookie);
    let size = b.bytes.len() + opt.map_or(0, |o| o.size());
    if size > limit {
        return false;
    }
    out.reserve(size);
    out.extend_from_slice(&b.bytes);
    out[0..2].copy_from_slice(&q.id.to_be_bytes());
    response::write_flags(out, q.packet, b.cacheable.outcome);
    // The question as asked: same length, its own case (0x20).
    out[HEADER_LEN..HEADER_LEN + q.name_len]
        .copy_from_slice(&q.packet[HEADER_LEN..HEADER_LEN + q.name_len]);
    if let Some(o) = opt {
        if o.ecs.is_some() {
            services.metrics.queries().ecs_answer(scope);
        }
        o.append(out, &b.cacheable.outcome);
    }
    true
}

fn count(snapshot: &Snapshot, b: &Body, q: &Query<'_>, at: At) {
    let c = b.cacheable;
    let counters = &snapshot.counters[c.zone];
    let qtype = RecordType::from(q.qtype);
    match c.varies {
        Varies::Steered(s) => counters.steered(
            s.name,
            qtype,
            s.variant.region,
            at.now,
            s.variant.ttl,
            q.client(at.src).network(),
        ),
        Varies::Nothing => counters.plain(qtype, c.outcome.rcode),
    }
}
