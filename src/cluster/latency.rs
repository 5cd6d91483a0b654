//! The latency map across the cluster: each node shares the map of the samples it took, and
//! merges the others' into what it publishes, so every node steers by every node's samples.
//!
//! The rule: a node writes only its own keys (single writer), under the lease of its node
//! record, so a dead node's map expires with it; a reader takes a node's map only once a
//! whole generation of it is there, and keeps the last whole one until the node's keys are
//! all gone, so a node that cannot reach etcd keeps steering by what it last knew.
//!
//! Why aggregates and not forwarded samples: a node's map is bounded
//! ([`crate::latency::feed::SHARE_MAX_BYTES`]) whatever its feeds post, a node that joins
//! or comes back reads the whole picture at once instead of replaying a stream, and merging
//! decayed means of disjoint samples adds them up (weights add, means weigh by weight);
//! only the outlier clamp differs, each node clamping against its own estimate.
//!
//! Keys: `latency/<node>/<generation, 16 hex digits>/<chunk>-<chunks>` (4 digits each), each
//! value at most [`CHUNK`] bytes of [`crate::latency::store::encode`], at most
//! [`MAX_CHUNKS`] of them: etcd takes requests of 1.5 MiB by default, so one chunk is a
//! request well within it. A watch answer is another matter: after a reconnect it carries
//! every revision missed, any number of chunks, so the watch asks etcd to fragment its
//! answers (each at most etcd's `--max-request-bytes`) and its client decodes answers of up
//! to `store::WATCH_DECODE_LIMIT`; a range read takes a few chunks an answer.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::warn;

use crate::latency::feed::Feed;

/// Largest value a node writes under one key.
pub const CHUNK: usize = 256 << 10;
/// Most chunks of one generation: what [`crate::latency::feed::SHARE_MAX_BYTES`] needs.
/// A key naming more, or a value over [`CHUNK`], is no map a node shares.
pub const MAX_CHUNKS: usize = crate::latency::feed::SHARE_MAX_BYTES / CHUNK + 1;

/// The key of chunk `i` of `n` of `node`'s map of `generation`, below the prefix's
/// `latency/`.
pub fn key(node: &str, generation: u64, i: usize, n: usize) -> String {
    format!("{node}/{generation:016x}/{i:04}-{n:04}")
}

/// The key below the prefix's `latency/` that every key of `node`'s generations older than
/// `generation` sorts before.
pub fn generation_start(node: &str, generation: u64) -> String {
    format!("{node}/{generation:016x}/")
}

/// (node, generation, chunk, chunks) of a key below the prefix's `latency/`; `None` for a
/// key no node writes (a chunk count over [`MAX_CHUNKS`] included).
pub fn parse_key(rest: &[u8]) -> Option<(String, u64, usize, usize)> {
    let rest = std::str::from_utf8(rest).ok()?;
    let mut parts = rest.split('/');
    let (node, generation, chunk) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || super::config::check_node(node).is_err() {
        return None;
    }
    let generation = u64::from_str_radix(generation, 16).ok()?;
    let (i, n) = chunk.split_once('-')?;
    let (i, n): (usize, usize) = (i.parse().ok()?, n.parse().ok()?);
    (i < n && n <= MAX_CHUNKS).then(|| (node.to_string(), generation, i, n))
}

/// `bytes` cut into chunks of at most [`CHUNK`] bytes (one, empty, for no bytes).
pub fn chunks(bytes: &[u8]) -> Vec<&[u8]> {
    if bytes.is_empty() {
        return vec![bytes];
    }
    bytes.chunks(CHUNK).collect()
}

/// Decodes the nodes' whole maps (node -> bytes, as the store holds them) and makes them the
/// feed's peers, all of them, on a blocking thread: decoding and merging maps of up to
/// [`crate::latency::feed::SHARE_MAX_BYTES`] each would hold the control plane's worker
/// (the watch, the record's lease keep-alive) for as long.
pub async fn take_all(feed: Arc<Feed>, whole: BTreeMap<String, Vec<u8>>) {
    let taken = tokio::task::spawn_blocking(move || {
        let mut maps = BTreeMap::new();
        for (node, bytes) in whole {
            match feed.decode_peer(&bytes) {
                Ok(m) => {
                    maps.insert(node, m);
                }
                Err(e) => undecoded(&node, &e),
            }
        }
        feed.set_peers(maps);
    })
    .await;
    if let Err(e) = taken {
        warn!(error = %e, "the nodes' latency maps were not taken");
    }
}

/// Decodes one node's newest whole map and makes it that node's in the feed, on a blocking
/// thread, as [`take_all`] does.
pub async fn take(feed: Arc<Feed>, node: String, bytes: Vec<u8>) {
    let taken = tokio::task::spawn_blocking(move || match feed.decode_peer(&bytes) {
        Ok(map) => {
            tracing::debug!(
                node,
                networks = map.networks(),
                "latency map of a node taken"
            );
            feed.set_peer(&node, Some(map));
        }
        Err(e) => undecoded(&node, &e),
    })
    .await;
    if let Err(e) = taken {
        warn!(error = %e, "a node's latency map was not taken");
    }
}

/// Logs a node's latency map that does not decode: it is left out.
fn undecoded(node: &str, error: &str) {
    warn!(
        node,
        error, "ignoring a node's latency map in the cluster store"
    );
}

/// One generation of a node's map as read so far.
#[derive(Debug, Default)]
struct Parts {
    of: usize,
    /// Chunk -> its bytes; emptied once the generation was whole and taken (the keys are
    /// still counted, so that their deletion is told apart from the node's end).
    chunks: BTreeMap<usize, Vec<u8>>,
    taken: bool,
}

/// What changed for a node's map after an event.
#[derive(Debug, PartialEq)]
pub enum Change {
    Nothing,
    /// A newer generation is whole: its bytes.
    Whole(Vec<u8>),
    /// The node has no key left: its map is gone.
    Gone,
}

/// The nodes' map chunks as read from etcd.
#[derive(Debug, Default)]
pub struct Inbox {
    nodes: BTreeMap<String, BTreeMap<u64, Parts>>,
}

impl Inbox {
    /// Takes chunk `i` of `n` of `node`'s `generation`. A value over [`CHUNK`] is refused
    /// (`Err`): no node writes one.
    pub fn put(
        &mut self,
        node: &str,
        generation: u64,
        i: usize,
        n: usize,
        value: &[u8],
    ) -> Result<Change, usize> {
        if value.len() > CHUNK {
            return Err(value.len());
        }
        let gens = self.nodes.entry(node.to_string()).or_default();
        // A generation older than a whole one taken is of no use, nor the bytes of one
        // taken already: the key is counted, its value dropped.
        if gens
            .iter()
            .any(|(g, p)| p.taken && (*g > generation || (*g == generation && p.of == n)))
        {
            gens.entry(generation)
                .or_default()
                .chunks
                .insert(i, Vec::new());
            return Ok(Change::Nothing);
        }
        let parts = gens.entry(generation).or_default();
        if parts.of != n {
            // A chunk count that differs from the others' starts the generation afresh.
            parts.of = n;
            parts.chunks.retain(|&c, _| c < n);
            parts.taken = false;
        }
        parts.chunks.insert(i, value.to_vec());
        if parts.chunks.len() < parts.of {
            return Ok(Change::Nothing);
        }
        let bytes: Vec<u8> = parts.chunks.values_mut().flat_map(std::mem::take).collect();
        parts.taken = true;
        Ok(Change::Whole(bytes))
    }

    /// Takes the deletion of chunk `i` of `node`'s `generation`.
    pub fn delete(&mut self, node: &str, generation: u64, i: usize) -> Change {
        let Some(gens) = self.nodes.get_mut(node) else {
            return Change::Nothing;
        };
        if let Some(parts) = gens.get_mut(&generation) {
            parts.chunks.remove(&i);
            if parts.chunks.is_empty() {
                gens.remove(&generation);
            }
        }
        if gens.is_empty() {
            self.nodes.remove(node);
            return Change::Gone;
        }
        Change::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::feed::SHARE_MAX_BYTES;
    use crate::latency::{LatencyMap, Net, Origin, Settings, store};

    #[test]
    fn keys_round_trip_and_strangers_are_refused() {
        let k = key("ns-1", 0x18f, 2, 3);
        assert_eq!(k, "ns-1/000000000000018f/0002-0003");
        assert_eq!(parse_key(k.as_bytes()), Some(("ns-1".into(), 0x18f, 2, 3)));
        assert!(k.as_str() >= generation_start("ns-1", 0x18f).as_str());
        assert!(key("ns-1", 0x18e, 9, 10).as_str() < generation_start("ns-1", 0x18f).as_str());
        for bad in [
            "ns1/zz/0000-0001",
            "ns1/01/0001-0001",
            "ns1/01/0000",
            "ns 1/01/0000-0001",
            "ns1/01/0000-0001/x",
        ] {
            assert_eq!(parse_key(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn chunk_counts_past_the_share_limit_are_refused() {
        assert_eq!(MAX_CHUNKS, 17);
        let last = key("ns1", 1, MAX_CHUNKS - 1, MAX_CHUNKS);
        assert!(parse_key(last.as_bytes()).is_some());
        assert_eq!(parse_key(b"ns1/01/0000-0018"), None);
        assert_eq!(parse_key(b"ns1/01/0000-9999"), None);
    }

    #[test]
    fn a_generation_is_taken_whole_and_the_node_ends_with_its_last_key() {
        let bytes: Vec<u8> = (0..(CHUNK * 2 + 10)).map(|i| i as u8).collect();
        let parts = chunks(&bytes);
        assert_eq!(parts.len(), 3);
        let mut inbox = Inbox::default();
        let mut put = |g, i, n, v: &[u8]| inbox.put("ns2", g, i, n, v).expect("a chunk fits");
        assert_eq!(put(1, 2, 3, parts[2]), Change::Nothing);
        assert_eq!(put(1, 0, 3, parts[0]), Change::Nothing);
        assert_eq!(put(1, 1, 3, parts[1]), Change::Whole(bytes.clone()));
        // The same generation written again (a new lease): taken already, its bytes dropped.
        assert_eq!(put(1, 0, 3, parts[0]), Change::Nothing);
        // The next generation, then the old one deleted: the node is still there.
        assert_eq!(put(2, 0, 1, b"new"), Change::Whole(b"new".to_vec()));
        // A late chunk of an older generation changes nothing.
        assert_eq!(put(1, 1, 3, parts[1]), Change::Nothing);
        let held: usize = inbox.nodes["ns2"]
            .values()
            .flat_map(|p| p.chunks.values())
            .map(Vec::len)
            .sum();
        assert_eq!(held, 0, "no bytes kept of generations taken");
        for i in 0..3 {
            assert_eq!(inbox.delete("ns2", 1, i), Change::Nothing);
        }
        // Its lease expired: the last key goes, and the node with it.
        assert_eq!(inbox.delete("ns2", 2, 0), Change::Gone);
        assert_eq!(inbox.delete("ns2", 2, 0), Change::Nothing);
    }

    #[test]
    fn a_value_over_a_chunk_is_refused() {
        let mut inbox = Inbox::default();
        let big = vec![0u8; CHUNK + 1];
        assert_eq!(inbox.put("ns2", 1, 0, 1, &big), Err(CHUNK + 1));
        assert!(inbox.nodes.get("ns2").is_none_or(|g| g.is_empty()));
    }

    /// CPU time this thread has used.
    fn thread_cpu() -> std::time::Duration {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a timespec the call may write; the clock is one Linux has.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        assert_eq!(rc, 0, "the thread's CPU clock reads");
        std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }

    /// A peer's map as large as a node shares is decoded and merged on another thread than
    /// the control plane's worker: on a current-thread runtime (this thread its only worker),
    /// `take` and `take_all` cost this thread a small part of what decoding and merging the
    /// same map here costs. CPU time, not wall time, so a busy machine changes nothing.
    #[test]
    fn peer_maps_are_decoded_and_merged_off_the_control_worker() {
        const T0: u64 = 1_764_540_000;
        let mut map = LatencyMap::new(Settings::default());
        for i in 0..130_000u32 {
            let net = Net::of(std::net::Ipv4Addr::from((i + (20 << 16)) << 8).into());
            for (r, region) in ["us-east", "eu-west", "ap-southeast"].iter().enumerate() {
                map.add_weighted(net, &Origin::default(), region, 20.0 + r as f64, T0, 25.0);
            }
        }
        let bytes = store::encode(&map.shared(SHARE_MAX_BYTES));
        assert!(bytes.len() > SHARE_MAX_BYTES - 64, "{} bytes", bytes.len());
        let shared = map.shared(SHARE_MAX_BYTES).networks();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let feed = || {
            Arc::new(
                Feed::open(
                    Default::default(),
                    crate::admin::auth::Tokens::load(None, None).expect("no tokens"),
                    dir.path().to_owned(),
                    Arc::new(crate::metrics::Metrics::default()),
                    true,
                )
                .expect("an empty state directory"),
            )
        };

        let here = feed();
        let started = thread_cpu();
        here.set_peer(
            "ns2",
            Some(here.decode_peer(&bytes).expect("the map decodes")),
        );
        let inline = thread_cpu() - started;
        assert_eq!(
            here.publish(T0, true).expect("published").networks(),
            shared
        );

        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
        let one = feed();
        let started = thread_cpu();
        runtime.block_on(take(one.clone(), "ns2".into(), bytes.clone()));
        let worker_one = thread_cpu() - started;
        let all = feed();
        let started = thread_cpu();
        runtime.block_on(take_all(
            all.clone(),
            BTreeMap::from([("ns2".to_string(), bytes.clone())]),
        ));
        let worker_all = thread_cpu() - started;
        for (feed, worker) in [(one, worker_one), (all, worker_all)] {
            assert_eq!(
                feed.publish(T0, true).expect("published").networks(),
                shared
            );
            assert!(
                worker < inline / 10,
                "the worker spent {worker:?} of the {inline:?} decoding and merging take"
            );
        }
    }
}
