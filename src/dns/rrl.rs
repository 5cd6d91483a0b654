//! Response rate limiting for UDP, as BIND, Knot and NSD do it: a token bucket per (client
//! network, response), so that spoofed queries cannot turn Meridian into an amplifier.
//!
//! The rule: a bucket is keyed by what the response says, read from its bytes after it is
//! made, and a fresh query name must not buy a fresh bucket:
//! - an answer by its question (name, type, class; case folded);
//! - NXDOMAIN by its zone, the owner of the SOA in authority, as BIND (the zone's origin) and
//!   Knot (the zone name) key it: every NXDOMAIN of a zone shares one bucket, whatever random
//!   name was asked;
//! - NODATA by its zone too. BIND keys it by name, but it knows when a wildcard answered;
//!   the bytes do not say so, and a wildcard (RFC 4592) gives NODATA for any name below it;
//! - a referral by its delegation, the owner of the NS records in authority, as BIND does;
//! - an answer a wildcard made (RFC 4592) by the wildcard, as BIND and NSD count every
//!   response from one wildcard in one bucket: the bytes cannot tell (the records take the
//!   name asked), so when some zone has a wildcard, the question's name is looked up in the
//!   zones the answer came from;
//! - anything else (REFUSED outside every zone, FORMERR, NOTIMP, BADVERS, SERVFAIL) by its
//!   response code alone, as BIND limits errors with no name and no type.
//!
//! The client network is its /24 or /56 ([`super::client_network`]). Over the rate,
//! responses are dropped, except every `slip`-th, which goes out truncated (TC=1, question
//! only): a real client retries over TCP, where no limit applies, while a spoofed victim gets
//! no more bytes than the query had. Reading a response takes no allocation, save the
//! question's name when a zone has a wildcard.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hickory_proto::rr::{LowerName, Name};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use ipnet::IpNet;

use super::client_network;
use super::fastmap::{FxHasher, hash_lower};
use super::response::truncated_to_question;
use super::wire::{HEADER_LEN, MAX_NAME, OPT, Reader};
use crate::metrics::RrlCounters;
use crate::zone::ZoneSet;

const SHARDS: usize = 32;
/// Buckets kept per shard; a full shard is emptied (clients then start with a full bucket).
const BUCKETS_PER_SHARD: usize = 4096;

/// What to do with a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Send this truncated copy instead.
    Slip(Vec<u8>),
    Drop,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    /// Responses refused since the bucket last had tokens, to pick the slips.
    refused: u64,
}

/// The configured limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Responses per second per (client network, response), with a burst of as many.
    pub rate: u32,
    /// 0 drops every response over the rate; N sends every N-th truncated.
    pub slip: u32,
}

pub struct Rrl {
    rate: f64,
    slip: u64,
    shards: Vec<Mutex<HashMap<(IpNet, u64), Bucket>>>,
    counters: Arc<RrlCounters>,
}

impl std::fmt::Debug for Rrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rrl")
            .field("rate", &self.rate)
            .field("slip", &self.slip)
            .finish()
    }
}

// Record types and response codes a response is read for.
const NS: u16 = 2;
const SOA: u16 = 6;
const NOERROR: u16 = 0;
const NXDOMAIN: u16 = 3;

/// What a response says, as its bucket is keyed: each kind apart, and within a kind a name
/// (wire form, possibly upper case) or a response code.
enum Says<'a> {
    Answer(&'a [u8]),
    Nxdomain(&'a [u8]),
    Nodata(&'a [u8]),
    Referral(&'a [u8]),
    /// The owner of the wildcard that made the answer.
    Wildcard(&'a LowerName),
    Other(u16),
}

impl Says<'_> {
    fn key(&self) -> u64 {
        let (kind, what) = match *self {
            Says::Answer(question) => (0u8, hash_lower(question)),
            Says::Nxdomain(zone) => (1, hash_lower(zone)),
            Says::Nodata(zone) => (2, hash_lower(zone)),
            Says::Referral(cut) => (3, hash_lower(cut)),
            Says::Wildcard(owner) => {
                let mut h = FxHasher::default();
                owner.hash(&mut h);
                (4, h.finish())
            }
            Says::Other(rcode) => (5, u64::from(rcode)),
        };
        let mut h = FxHasher::default();
        h.write_u8(kind);
        h.write_u64(what);
        h.finish()
    }
}

/// Reads what `response` says, with `name` to spell out a compressed owner in, and where
/// its question section ends (the truncated slip keeps it). `None` if it does not read: our
/// own responses always do.
fn read<'a>(response: &'a [u8], name: &'a mut [u8; MAX_NAME]) -> Option<(Says<'a>, usize)> {
    let mut r = Reader::new(response);
    let h = r.header()?;
    for _ in 0..h.questions {
        r.skip_question()?;
    }
    let question_end = r.pos();
    for _ in 0..h.answers {
        r.record()?;
    }
    // The first SOA or NS in authority, and its owner's length in `name`.
    let mut owner = None;
    for _ in 0..h.authorities {
        let mut at_owner = r;
        let rec = r.record()?;
        if owner.is_none() && matches!(rec.rtype, SOA | NS) {
            owner = Some((rec.rtype, at_owner.name(name)?));
        }
    }
    // RFC 6891 §6.1.3: the upper eight bits of the RCODE are in the OPT record's TTL.
    let mut rcode = h.flags & 0x000F;
    for _ in 0..h.additionals {
        let rec = r.record()?;
        if rec.rtype == OPT {
            rcode |= ((rec.ttl >> 24) as u16) << 4;
        }
    }
    let authoritative = h.flags & 0x0400 != 0;
    let name: &'a [u8; MAX_NAME] = name;
    let says = match (rcode, h.answers, owner) {
        (NXDOMAIN, _, Some((SOA, len))) => Says::Nxdomain(&name[..len]),
        (NOERROR, 0, Some((SOA, len))) => Says::Nodata(&name[..len]),
        (NOERROR, 0, Some((NS, len))) if !authoritative => Says::Referral(&name[..len]),
        // An answer, or a truncated one (TC, the question alone).
        (NOERROR, _, _) if h.questions > 0 => Says::Answer(&response[HEADER_LEN..question_end]),
        (rcode, _, _) => Says::Other(rcode),
    };
    Some((says, question_end))
}

impl Rrl {
    /// A limiter of `limits` that counts what it refuses in `counters`.
    pub fn new(limits: Limits, counters: Arc<RrlCounters>) -> Rrl {
        Rrl {
            rate: f64::from(limits.rate.max(1)),
            slip: u64::from(limits.slip),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            counters,
        }
    }

    /// The verdict for `response`, made from `zones`, to `client` at `now`.
    pub fn check(
        &self,
        client: SocketAddr,
        response: &[u8],
        zones: &ZoneSet,
        now: Instant,
    ) -> Verdict {
        let mut name = [0u8; MAX_NAME];
        let Some((mut says, question_end)) = read(response, &mut name) else {
            return Verdict::Send;
        };
        if let Says::Answer(question) = says
            && let Some(owner) = wildcard(zones, question)
        {
            says = Says::Wildcard(owner);
        }
        let what = says.key();
        let network = client_network(client.ip());
        let shard = &self.shards[(what as usize ^ network_hash(&network)) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= BUCKETS_PER_SHARD && !map.contains_key(&(network, what)) {
            map.clear();
        }
        let b = map.entry((network, what)).or_insert(Bucket {
            tokens: self.rate,
            last: now,
            refused: 0,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.rate);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            b.refused = 0;
            return Verdict::Send;
        }
        b.refused += 1;
        if self.slip > 0 && b.refused.is_multiple_of(self.slip) {
            self.counters.slipped.fetch_add(1, Relaxed);
            Verdict::Slip(truncated_to_question(response, question_end))
        } else {
            self.counters.dropped.fetch_add(1, Relaxed);
            Verdict::Drop
        }
    }
}

/// The owner of the wildcard that answers the name of `question` (its first octets, written
/// in full as a response's first name is), if one does.
fn wildcard<'z>(zones: &'z ZoneSet, question: &[u8]) -> Option<&'z LowerName> {
    if !zones.has_wildcards() {
        return None;
    }
    let name = Name::read(&mut BinDecoder::new(question)).ok()?;
    zones.wildcard_answering(&LowerName::new(&name))
}

fn network_hash(net: &IpNet) -> usize {
    match net.addr() {
        IpAddr::V4(a) => u32::from(a) as usize,
        IpAddr::V6(a) => (u128::from(a) >> 72) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::OnceLock;
    use std::time::Duration;

    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::{Name, RecordType};

    use crate::dns::cookie::Cookies;
    use crate::dns::{Services, Transport, handle};
    use crate::geo::GeoDb;
    use crate::serving::Snapshot;

    fn response(name: &[u8]) -> Vec<u8> {
        let mut r = vec![0xAB, 0xCD, 0x84, 0x00, 0, 1, 0, 1, 0, 0, 0, 0];
        r.extend_from_slice(name);
        r.extend_from_slice(&[0, 1, 0, 1]);
        r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 10]);
        r
    }

    #[test]
    fn over_the_rate_every_second_response_slips_truncated_and_the_rest_drop() {
        let rrl = Rrl::new(Limits { rate: 5, slip: 2 }, Arc::default());
        let t = Instant::now();
        let client: SocketAddr = "198.51.100.7:5300".parse().unwrap();
        let r = response(b"\x03www\x07example\x03com\x00");
        let verdicts: Vec<Verdict> = (0..9)
            .map(|_| rrl.check(client, &r, &no_zones(), t))
            .collect();
        assert!(
            verdicts[..5].iter().all(|v| *v == Verdict::Send),
            "a burst of the rate"
        );
        assert_eq!(verdicts[5], Verdict::Drop);
        let Verdict::Slip(tc) = &verdicts[6] else {
            panic!("{verdicts:?}")
        };
        assert_eq!(tc[2] & 0x02, 0x02, "TC set");
        assert_eq!(&tc[6..12], &[0; 6], "no records");
        assert!(tc.len() < r.len());
        // Tokens come back with time.
        assert_eq!(
            rrl.check(client, &r, &no_zones(), t + Duration::from_millis(400)),
            Verdict::Send
        );
        assert_eq!(rrl.counters.dropped.load(Relaxed), 2);
        assert_eq!(rrl.counters.slipped.load(Relaxed), 2);
    }

    #[test]
    fn buckets_are_per_client_network_and_per_response() {
        let rrl = Rrl::new(Limits { rate: 1, slip: 0 }, Arc::default());
        let t = Instant::now();
        let a: SocketAddr = "198.51.100.7:1".parse().unwrap();
        let same_net: SocketAddr = "198.51.100.200:2".parse().unwrap();
        let other_net: SocketAddr = "198.51.101.7:1".parse().unwrap();
        let www = response(b"\x03www\x07example\x03com\x00");
        let static_ = response(b"\x06static\x07example\x03com\x00");
        assert_eq!(rrl.check(a, &www, &no_zones(), t), Verdict::Send);
        assert_eq!(
            rrl.check(same_net, &www, &no_zones(), t),
            Verdict::Drop,
            "same /24"
        );
        assert_eq!(rrl.check(other_net, &www, &no_zones(), t), Verdict::Send);
        assert_eq!(
            rrl.check(a, &static_, &no_zones(), t),
            Verdict::Send,
            "another response"
        );
        let upper = response(b"\x03WWW\x07example\x03com\x00");
        assert_eq!(
            rrl.check(a, &upper, &no_zones(), t),
            Verdict::Drop,
            "case does not matter"
        );
    }

    fn no_zones() -> ZoneSet {
        ZoneSet::new(Vec::new())
    }

    /// A snapshot of `zones` and the services to answer from it.
    fn serving(zones: ZoneSet) -> (Snapshot, Services) {
        let geo = Arc::new(GeoDb::embedded().expect("embedded db"));
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let cookies = Cookies::random(crate::dns::cookie::DEFAULT_AMPLIFICATION);
        (
            Snapshot::new(zones, geo, &metrics),
            Services::new(cookies, None, metrics),
        )
    }

    fn shipped() -> &'static (Snapshot, Services) {
        static SHIPPED: OnceLock<(Snapshot, Services)> = OnceLock::new();
        SHIPPED.get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
            serving(crate::zone::load_dir(&dir).expect("shipped zones load"))
        })
    }

    /// The server's own response to `name`/`qtype` (EDNS version `version`), as the UDP loop
    /// hands it to RRL: names compressed as hickory writes them.
    fn served(name: &str, qtype: RecordType, version: u8) -> Vec<u8> {
        served_by(shipped(), name, qtype, version)
    }

    fn served_by(
        (snapshot, services): &(Snapshot, Services),
        name: &str,
        qtype: RecordType,
        version: u8,
    ) -> Vec<u8> {
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        let mut edns = Edns::new();
        edns.set_max_payload(1232).set_version(version);
        q.set_edns(edns);
        let query = q.to_vec().unwrap();
        let src: SocketAddr = "198.51.100.7:5300".parse().unwrap();
        handle(snapshot, services, &query, src, Transport::Udp, 0).expect("an answer")
    }

    /// How many of `responses` to one client at one instant go out, at a rate of 2.
    fn sent(responses: &[Vec<u8>]) -> usize {
        sent_from(&shipped().0.zones, responses)
    }

    /// [`sent`] for responses made from `zones`.
    fn sent_from(zones: &ZoneSet, responses: &[Vec<u8>]) -> usize {
        let rrl = Rrl::new(Limits { rate: 2, slip: 0 }, Arc::default());
        let t = Instant::now();
        let client: SocketAddr = "198.51.100.7:5300".parse().unwrap();
        responses
            .iter()
            .filter(|r| rrl.check(client, r, zones, t) == Verdict::Send)
            .count()
    }

    fn random_names(pattern: &str) -> Vec<String> {
        (0..10)
            .map(|i| pattern.replace('*', &format!("r{i}x{}", i * 7919)))
            .collect()
    }

    #[test]
    fn rfc2308_nxdomain_of_one_zone_shares_the_zone_bucket() {
        // A random name per query was a bucket per query: no limit at all.
        let mut responses: Vec<Vec<u8>> = random_names("*.example.com.")
            .iter()
            .map(|n| served(n, RecordType::A, 0))
            .collect();
        // The SOA owner written in full (a query in upper case) or as a pointer: one zone.
        responses.push(served("R1.EXAMPLE.COM.", RecordType::A, 0));
        assert!(responses.iter().all(|r| r[3] & 0x0F == 3), "NXDOMAIN");
        assert_eq!(sent(&responses), 2);
    }

    #[test]
    fn rfc2308_nodata_of_one_zone_shares_the_zone_bucket_whatever_the_type() {
        let mut responses: Vec<Vec<u8>> = (1000..1010)
            .map(|t| served("static.example.com.", RecordType::Unknown(t), 0))
            .collect();
        // An empty non-terminal: NODATA too (RFC 8020).
        responses.push(served("b.example.com.", RecordType::A, 0));
        assert!(
            responses
                .iter()
                .all(|r| r[3] & 0x0F == 0 && r[6..8] == [0, 0]),
            "NODATA"
        );
        assert_eq!(sent(&responses), 2);
    }

    #[test]
    fn rfc1034_referrals_share_the_bucket_of_their_delegation() {
        let responses: Vec<Vec<u8>> = random_names("*.lab.example.com.")
            .iter()
            .map(|n| served(n, RecordType::A, 0))
            .collect();
        assert!(
            responses.iter().all(|r| r[2] & 0x04 == 0),
            "referrals (AA clear)"
        );
        assert_eq!(sent(&responses), 2);
    }

    const WILD: &str = r#"zone = "wild.test."
records = '''
$TTL 3600
@      IN SOA ns hostmaster 1 7200 3600 1209600 300
@      IN NS  ns
ns     IN A   192.0.2.53
*.w    IN A   192.0.2.77
*.w    IN TXT "wild"
host.w IN A   192.0.2.78
*.v    IN A   192.0.2.79
'''
"#;

    #[test]
    fn rfc4592_answers_from_one_wildcard_share_the_wildcard_bucket() {
        // An answer takes the name asked, so a random name below a wildcard was a fresh
        // bucket per query.
        let zone = crate::zone::load_file(Path::new("wild.test.toml"), WILD).expect("it loads");
        let wild = serving(ZoneSet::new(vec![zone]));
        let zones = &wild.0.zones;
        let mut responses: Vec<Vec<u8>> = random_names("*.w.wild.test.")
            .iter()
            .map(|n| served_by(&wild, n, RecordType::A, 0))
            .collect();
        // Two labels below it, another case, another type: the same wildcard.
        responses.push(served_by(&wild, "a.B.W.wild.test.", RecordType::A, 0));
        responses.push(served_by(&wild, "r1.w.wild.test.", RecordType::TXT, 0));
        assert!(
            responses
                .iter()
                .all(|r| r[3] & 0x0F == 0 && r[6..8] == [0, 1]),
            "answers"
        );
        assert_eq!(sent_from(zones, &responses), 2);
        // A name of its own beside the wildcard, and another wildcard: buckets of their own.
        let own = [
            served_by(&wild, "host.w.wild.test.", RecordType::A, 0),
            served_by(&wild, "x.v.wild.test.", RecordType::A, 0),
            served_by(&wild, "y.w.wild.test.", RecordType::A, 0),
        ];
        let rrl = Rrl::new(Limits { rate: 1, slip: 0 }, Arc::default());
        let t = Instant::now();
        let client: SocketAddr = "198.51.100.7:5300".parse().unwrap();
        for r in &own {
            assert_eq!(rrl.check(client, r, zones, t), Verdict::Send, "{r:02x?}");
        }
    }

    #[test]
    fn refusals_and_other_errors_share_one_bucket_per_client_network() {
        // Names outside every zone (REFUSED), and an EDNS version we do not speak for random
        // names (BADVERS: its upper RCODE bits are in the OPT record, the header says 0).
        let mut responses: Vec<Vec<u8>> = random_names("*.example.net.")
            .iter()
            .map(|n| served(n, RecordType::A, 0))
            .collect();
        assert!(responses.iter().all(|r| r[3] & 0x0F == 5), "REFUSED");
        assert_eq!(sent(&responses), 2);
        responses = random_names("*.example.com.")
            .iter()
            .map(|n| served(n, RecordType::A, 1))
            .collect();
        assert_eq!(sent(&responses), 2);
    }

    #[test]
    fn each_answer_and_each_kind_of_negative_answer_keeps_its_own_bucket() {
        let responses = [
            served("www.example.com.", RecordType::A, 0),
            served("static.example.com.", RecordType::A, 0),
            served("static.example.com.", RecordType::AAAA, 0),
            served("nope.example.com.", RecordType::A, 0),
            served("static.example.com.", RecordType::TXT, 0),
            served("x.lab.example.com.", RecordType::A, 0),
            served("x.example.net.", RecordType::A, 0),
        ];
        let rrl = Rrl::new(Limits { rate: 1, slip: 0 }, Arc::default());
        let t = Instant::now();
        let client: SocketAddr = "198.51.100.7:5300".parse().unwrap();
        for r in &responses {
            assert_eq!(
                rrl.check(client, r, &shipped().0.zones, t),
                Verdict::Send,
                "{r:02x?}"
            );
        }
    }
}
