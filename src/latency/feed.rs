//! CONTROL: the latency map's owner on the control plane: takes batches of samples from the
//! admin API, publishes the map into the serving snapshot and saves it to the state
//! directory. One lock guards the map; a query never takes it.
//!
//! In a cluster the map this node feeds holds only the samples it took (its own map, the
//! one it shares every `share-secs`: [`Feed::share_map`], [`Feed::outbox`]); the other
//! nodes' shared maps are kept beside it ([`Feed::set_peers`]), merged into one map each
//! time they change, and that one is merged into what is published and saved, so every
//! node steers by every node's samples and none is counted twice.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use serde::Serialize;

use super::config::LatencyConfig;
use super::ingest::{Bucket, Checker, Reason, Rejected};
use super::{LatencyMap, LatencyTable, Origin, store};
use crate::admin::auth::Tokens;
use crate::metrics::Metrics;
use crate::serving::Snapshot;

/// Most line errors a response lists; the counts cover every line.
pub const MAX_LISTED: usize = 100;

/// Most bytes of the map one node shares: about 70,000 rows (networks and groups) with 6
/// regions. etcd keeps every revision until compaction, so a node rewriting tens of MiB
/// each share would fill its 2 GiB quota within hours; the light rows left out steer
/// least.
pub const SHARE_MAX_BYTES: usize = 4 << 20;

/// This node's map as it shares it: [`super::store::encode`]d, newest generation wins.
#[derive(Debug, PartialEq)]
pub struct Shared {
    /// Unix ms when it was made: a later one replaces an earlier one.
    pub generation: u64,
    pub bytes: Vec<u8>,
}

pub struct Feed {
    pub config: LatencyConfig,
    tokens: Tokens,
    metrics: Arc<Metrics>,
    state_dir: PathBuf,
    inner: Mutex<Inner>,
    /// The other nodes' shared maps, by node name ([`PEERS_SAVED`]: as last saved). Apart
    /// from `inner`: merging them never holds up ingestion.
    peers: Mutex<BTreeMap<String, LatencyMap>>,
    /// The latest map to share, for the cluster's publisher (`None` until there is one).
    outbox: tokio::sync::watch::Sender<Option<Arc<Shared>>>,
    /// Whether a cluster takes the shared map: alone, a node makes none.
    sharing: std::sync::atomic::AtomicBool,
}

struct Inner {
    /// The samples this node took.
    map: LatencyMap,
    /// The other nodes' shared maps merged, rebuilt when one changes: what publications
    /// and saves merge with this node's map.
    peers: Arc<LatencyMap>,
    buckets: HashMap<String, Bucket>,
    /// The probe samples last added.
    probes: Vec<ProbeSample>,
    /// Samples taken (or peers changed) since the last publication, since the last save;
    /// client samples taken since the last share, probe samples since the last share, and
    /// the shares skipped since probe samples came.
    unpublished: bool,
    unsaved: bool,
    unshared: bool,
    probes_unshared: bool,
    probe_waits: u32,
}

/// A map changed only by this node's probes is shared every this many share intervals:
/// probes weigh a tenth of a client sample a minute, so a share interval of them moves an
/// estimate little, and every share rewrites the whole map in etcd.
pub const PROBE_SHARE_EVERY: u32 = 6;

/// The name of the peers' maps read back from the state directory, until the cluster store
/// gives this node the peers' own.
pub const PEERS_SAVED: &str = "";

/// One of this node's probe RTTs, taken as a sample of kind `probe` for one of its
/// `probe-networks`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeSample {
    pub network: IpNet,
    pub region: String,
    pub rtt_ms: f64,
    /// In samples.
    pub weight: f64,
    /// Unix seconds.
    pub time: u64,
}

/// What became of a batch.
#[derive(Debug, Serialize)]
pub struct Report {
    pub accepted: usize,
    /// Accepted, clamped as outliers.
    pub clamped: usize,
    pub dropped: usize,
    /// The first [`MAX_LISTED`] dropped lines, each with its reason.
    pub errors: Vec<Rejected>,
}

impl Feed {
    /// The feed, with the map saved in `state_dir` (an empty map when none was), and in a
    /// cluster (`clustered`) the peers' maps as last saved. A node alone has no peers: a
    /// peers file left from when it was in a cluster is ignored (and said so).
    pub fn open(
        config: LatencyConfig,
        tokens: Tokens,
        state_dir: PathBuf,
        metrics: Arc<Metrics>,
        clustered: bool,
    ) -> Result<Feed, store::StoreError> {
        let map = store::load(&state_dir, config.settings)?;
        let peers_file = state_dir.join(store::PEERS_FILE);
        let saved = if clustered {
            store::load_file(&peers_file, config.settings)?
        } else {
            if peers_file.exists() {
                tracing::info!(file = %peers_file.display(),
                    "the other nodes' latency maps saved in a cluster are ignored: no [cluster]");
            }
            None
        };
        let merged = saved
            .clone()
            .unwrap_or_else(|| LatencyMap::new(config.settings));
        let peers = saved
            .map(|m| BTreeMap::from([(PEERS_SAVED.to_string(), m)]))
            .unwrap_or_default();
        Ok(Feed {
            config,
            tokens,
            metrics,
            state_dir,
            inner: Mutex::new(Inner {
                map,
                peers: Arc::new(merged),
                buckets: HashMap::new(),
                probes: Vec::new(),
                unpublished: true,
                unsaved: false,
                unshared: true,
                probes_unshared: false,
                probe_waits: 0,
            }),
            peers: Mutex::new(peers),
            outbox: tokio::sync::watch::Sender::new(None),
            sharing: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The source a feed token speaks for.
    pub fn source(&self, token: &str) -> Option<&str> {
        self.tokens.check(token)
    }

    /// The feed tokens, by name only.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    pub fn has_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Takes the NDJSON `body` from `source` (`peer`: the connection's address), checking
    /// each line against the regions of `state`'s zones; `now` in Unix seconds.
    pub fn ingest(
        &self,
        state: &Snapshot,
        source: &str,
        peer: Option<IpAddr>,
        body: &str,
        now: f64,
    ) -> Report {
        let mut regions: Vec<String> = state
            .zones
            .by_index()
            .iter()
            .flat_map(|z| z.regions.iter().map(|r| r.name.clone()))
            .collect();
        regions.sort();
        regions.dedup();
        let special = |n: IpNet| crate::geo::is_special(n);
        let checker = Checker {
            regions: &regions,
            source,
            peer,
            now,
            max_age_secs: self.config.max_age_secs as f64,
            special: &special,
        };
        // Checked and located before the lock: only the adds hold it. Located past the query
        // path's cache, which a feed's networks would crowd; a feed's lines for one network
        // (one per region) come together, so the last network's origin is kept.
        let mut last: Option<(IpNet, Origin)> = None;
        let checked: Vec<_> = body
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                checker.check(i + 1, l).map(|s| {
                    let network = IpNet::new(s.client, s.net.prefix().prefix_len())
                        .expect("a client network's prefix fits its family")
                        .trunc();
                    let origin = match last {
                        Some((n, origin)) if n == network => origin,
                        _ => Origin::of(&state.geo.locate_uncached(network)),
                    };
                    last = Some((network, origin));
                    (s, origin)
                })
            })
            .collect();
        let mut report = Report {
            accepted: 0,
            clamped: 0,
            dropped: 0,
            errors: Vec::new(),
        };
        let counters = self.metrics.rtt();
        let (rate, burst) = (self.config.rate, self.config.burst);
        let mut inner = self.inner.lock().expect("latency map lock");
        let inner = &mut *inner;
        let bucket = inner
            .buckets
            .entry(source.to_string())
            .or_insert_with(|| Bucket::full(burst, now));
        for (i, line) in checked.into_iter().enumerate() {
            // Every line spends a token, a bad one too: a flood is a flood.
            let line = if bucket.take(now, rate, burst) {
                line
            } else {
                let number = match &line {
                    Err(r) => r.line,
                    Ok(_) => i + 1,
                };
                Err(Rejected {
                    line: number,
                    reason: Reason::RateLimited,
                    error: format!(
                        "source {source:?} is over its rate ({rate} samples/s, bursts of {burst})"
                    ),
                })
            };
            match line {
                Ok((s, origin)) => {
                    let added = inner.map.add_weighted(
                        s.net,
                        &origin,
                        &s.region,
                        s.rtt_ms,
                        s.time,
                        f64::from(s.count),
                    );
                    report.accepted += 1;
                    report.clamped += usize::from(added.clamped);
                }
                Err(r) => {
                    counters.dropped[r.reason.index()].fetch_add(1, Relaxed);
                    report.dropped += 1;
                    if report.errors.len() < MAX_LISTED {
                        report.errors.push(r);
                    }
                }
            }
        }
        if report.accepted > 0 {
            inner.unpublished = true;
            inner.unsaved = true;
            inner.unshared = true;
        }
        counters.accepted.fetch_add(report.accepted as u64, Relaxed);
        counters.clamped.fetch_add(report.clamped as u64, Relaxed);
        report
    }

    /// The map as of `now` (Unix seconds), to swap into the serving snapshot: this node's
    /// samples and its peers'; `force` even without new samples (estimates age all the
    /// same). With peers, this node's map is copied under the lock and merged without it.
    pub fn publish(&self, now: u64, force: bool) -> Option<Arc<LatencyTable>> {
        let mut inner = self.inner.lock().expect("latency map lock");
        if !(inner.unpublished || force) {
            return None;
        }
        inner.unpublished = false;
        let table = if inner.peers.is_empty() {
            inner.map.publish(now)
        } else {
            // Aged-out rows go first: they would be copied for nothing, and kept.
            inner.map.forget(now);
            let (mut all, peers) = (inner.map.clone(), inner.peers.clone());
            drop(inner);
            all.merge(&peers);
            all.publish(now)
        };
        self.metrics
            .rtt()
            .networks
            .store(table.networks() as u64, Relaxed);
        Some(Arc::new(table))
    }

    /// Adds this node's probe RTTs (region, ms: the fastest endpoint of each region) as
    /// samples for each of its `probe-networks`, weighing a publish interval's share of
    /// `probe-weight`. They feed the networks only, not their AS's or country's priors: a
    /// data centre's path says little about the eyeball networks of its country.
    pub fn add_probes(&self, rtts: &[(String, f64)], now: u64) {
        let c = &self.config;
        if c.probe_networks.is_empty() || rtts.is_empty() {
            return;
        }
        let weight = c.probe_weight * c.publish_secs as f64 / 60.0;
        let mut inner = self.inner.lock().expect("latency map lock");
        let mut probes = Vec::with_capacity(c.probe_networks.len() * rtts.len());
        for &net in &c.probe_networks {
            for (region, rtt) in rtts {
                let rtt = rtt.clamp(super::ingest::MIN_RTT_MS, super::ingest::MAX_RTT_MS);
                if weight > 0.0 {
                    inner
                        .map
                        .add_weighted(net, &Origin::default(), region, rtt, now, weight);
                }
                probes.push(ProbeSample {
                    network: net.prefix(),
                    region: region.clone(),
                    rtt_ms: rtt,
                    weight,
                    time: now,
                });
            }
        }
        inner.probes = probes;
        inner.unpublished = true;
        inner.unsaved = true;
        inner.probes_unshared = true;
    }

    /// The probe samples last added.
    pub fn probes(&self) -> Vec<ProbeSample> {
        self.inner.lock().expect("latency map lock").probes.clone()
    }

    /// From now on, [`Feed::share_map`] puts the map in the outbox: a cluster takes it.
    pub fn share(&self) {
        self.sharing.store(true, Relaxed);
    }

    /// Puts this node's map as of `now` in the [`Feed::outbox`] when it is shared (in a
    /// cluster) and changed since it last was: by client samples, or by probe samples
    /// [`PROBE_SHARE_EVERY`] calls after they came. Called every `share-secs`. Returns
    /// whether it did.
    pub fn share_map(&self, now: u64) -> bool {
        if !self.sharing.load(Relaxed) {
            return false;
        }
        let map = {
            let mut inner = self.inner.lock().expect("latency map lock");
            let probes_due = inner.probes_unshared && inner.probe_waits + 1 >= PROBE_SHARE_EVERY;
            if !(inner.unshared || probes_due) {
                inner.probe_waits += u32::from(inner.probes_unshared);
                return false;
            }
            inner.unshared = false;
            inner.probes_unshared = false;
            inner.probe_waits = 0;
            inner.map.forget(now);
            inner.map.shared(SHARE_MAX_BYTES)
        };
        let bytes = store::encode(&map);
        // Later than the last even when the clock stepped back: readers keep the newest.
        let last = self.outbox.borrow().as_ref().map_or(0, |s| s.generation);
        let generation = crate::state::now_ms().max(last + 1);
        self.outbox
            .send_replace(Some(Arc::new(Shared { generation, bytes })));
        true
    }

    /// The latest map this node shares, for the cluster's publisher to watch.
    pub fn outbox(&self) -> tokio::sync::watch::Receiver<Option<Arc<Shared>>> {
        self.outbox.subscribe()
    }

    /// Takes the other nodes' shared maps, all of them (the cluster store's whole set): a
    /// node missing from `peers` is gone (its lease expired).
    pub fn set_peers(&self, peers: BTreeMap<String, LatencyMap>) {
        let mut held = self.peers.lock().expect("peers lock");
        *held = peers;
        self.merged(&held);
    }

    /// Takes one node's newest shared map, or forgets the node (`None`).
    pub fn set_peer(&self, node: &str, map: Option<LatencyMap>) {
        let mut held = self.peers.lock().expect("peers lock");
        held.remove(PEERS_SAVED);
        match map {
            Some(m) => held.insert(node.to_string(), m),
            None => held.remove(node),
        };
        self.merged(&held);
    }

    /// Merges `peers` into the one map publications and saves use (without the map's
    /// lock: ingestion goes on meanwhile).
    fn merged(&self, peers: &BTreeMap<String, LatencyMap>) {
        let mut merged = LatencyMap::new(self.config.settings);
        for p in peers.values() {
            merged.merge(p);
        }
        let mut inner = self.inner.lock().expect("latency map lock");
        inner.peers = Arc::new(merged);
        inner.unpublished = true;
        inner.unsaved = true;
    }

    /// Decodes a peer's shared map with this node's settings.
    pub fn decode_peer(&self, bytes: &[u8]) -> Result<LatencyMap, String> {
        store::decode(bytes, self.config.settings)
    }

    /// Saves the map (and the peers' maps, merged, for a start while the cluster store is
    /// away) if samples came since the last save: (networks, bytes in memory) when it did.
    /// This node's map is encoded under the lock; the peers', and the writes, without it.
    pub fn save(&self) -> Result<Option<(usize, usize)>, store::StoreError> {
        let (bytes, peers, size) = {
            let mut inner = self.inner.lock().expect("latency map lock");
            if !inner.unsaved {
                return Ok(None);
            }
            inner.unsaved = false;
            let size = (inner.map.networks(), inner.map.bytes());
            // Alone, a node has no peers to keep.
            let peers = self.sharing.load(Relaxed).then(|| inner.peers.clone());
            (store::encode(&inner.map), peers, size)
        };
        store::write(&self.state_dir, &bytes)?;
        if let Some(peers) = peers {
            store::write_file(
                &self.state_dir.join(store::PEERS_FILE),
                &store::encode(&peers),
            )?;
        }
        Ok(Some(size))
    }
}
