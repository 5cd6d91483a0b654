//! CONTROL: several nameservers, one mind. With a `[cluster]` section, the nodes share
//! operator overrides and probe observations through etcd v3.
//!
//! The rule: etcd is authoritative for overrides in a cluster; each node's journal is its
//! durable copy of what it applied (and the store it starts from when etcd is away). A write
//! through any node's admin API is one etcd transaction (the override key and its audit
//! entry) and is acknowledged only once committed; every node, the writer included, applies
//! it from its watch, journals it, and then DNS follows. After a disconnect a node reads the
//! whole override set at one revision, journals the audit entries it missed (those with a
//! higher revision than the last it applied) and corrects whatever still differs, so nothing
//! is lost or applied twice. While etcd is away (unreachable, or without quorum) DNS keeps
//! answering from the last known state with local probes (fail-static), writes answer 503,
//! and `/readyz` stays 200.
//!
//! Each node publishes one record under a lease that dies with it: its zone serials and
//! content hashes, its probe observations, its part of each drain and the load reports made
//! to it (spillover), on change and every [`HEARTBEAT`]. Every node turns the other nodes'
//! fresh, non-suspect observations into votes that [`crate::health::view::vote`] (pure)
//! weighs with its own, and runs spillover on the newest load report made to any node.
//!
//! Keys, under the prefix: `overrides/drain/<zone>/<region>`,
//! `overrides/force/<zone>/<region>/<address>` (the entry that set it, JSON),
//! `audit/<unix ms>-<node>-<n>` (every change, JSON; the newest `audit-keep` are kept, every
//! node's journal keeps them all), `nodes/<node>` (the record, leased),
//! `latency/<node>/...` (the node's latency map in chunks, leased: [`latency`]). An override key
//! written or deleted by hand applies from the watch like one written through the API.
//! A value that does not parse is logged and ignored, never trusted.

pub mod config;
pub mod latency;
mod store;

pub use store::read_records;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};

use crate::health::monitor::MonitorHandle;
use crate::health::view::{PeerVantage, PeerViews, Votes};
use crate::metrics::Metrics;
use crate::serving::SharedSnapshot;
use crate::state::{Action, Entry, Journal};
use crate::steer::{GeoPoint, Latency};
use crate::zone::Quorum;
pub use config::ClusterConfig;

/// How often a node's record is written even when nothing changed: its "last seen".
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a write waits for etcd to commit it. A proposal that reached a leader killed
/// under it is never answered; an election takes about one election timeout, so a shorter
/// wait gives the operator a quicker 503 and a quicker successful retry.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a write waits for this node to apply what etcd committed before answering.
const APPLY_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "the cluster store (etcd) is unreachable or has no quorum ({0}): overrides cannot be shared, so nothing was changed; DNS keeps answering from the last known state"
    )]
    Away(String),
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error(
        "etcd did not answer within 1 s (an election, most likely): the change may or may not be applied; GET /api/v1/audit says, before you try again"
    )]
    Unanswered,
}

/// Whether the store can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreState {
    /// Not reached yet since start.
    Connecting,
    Up,
    /// Unreachable or without quorum: serving from the last known state.
    Away,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreStatus {
    pub state: StoreState,
    /// When it took this state, Unix ms.
    pub since_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The last etcd revision this node applied.
    pub revision: i64,
}

/// A zone as a node serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneStamp {
    pub serial: u32,
    /// Of the zone file's bytes, hex.
    pub hash: String,
}

/// One endpoint as one node's probes see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub region: String,
    pub address: IpAddr,
    pub up: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_min_ms: Option<f64>,
}

/// What a node publishes under `nodes/<node>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node: String,
    /// When written, Unix ms: the node's "last seen".
    pub at_ms: u64,
    pub zones: BTreeMap<String, ZoneStamp>,
    /// Zones whose isolation guard holds on that node: its observations of them are left out.
    #[serde(default)]
    pub suspect: BTreeSet<String>,
    /// By zone origin.
    #[serde(default)]
    pub observations: BTreeMap<String, Vec<Observation>>,
    /// Where the node is (`[cluster] location`): others take its latency for the clients
    /// nearest to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<GeoPoint>,
    /// The published degradation of each probed region, by zone origin then region: filtered
    /// by the node's hysteresis, so it changes as rarely as a steering decision would.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latency: BTreeMap<String, BTreeMap<String, Latency>>,
    /// The regions drained as this node sees it, by zone origin then region. Only drained
    /// regions: elsewhere the expiry moves with every second of traffic (a write each tick)
    /// and tells nobody anything.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub drains: BTreeMap<String, BTreeMap<String, NodeDrain>>,
    /// The fresh load reports made to the node (spillover), by zone origin then region.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub loads: crate::spill::SharedLoads,
}

/// One node's part of a drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDrain {
    /// Until when an answer of this node naming the region may sit in a resolver's cache
    /// (Unix s; 0 when it never named it).
    pub cached_until_s: u64,
    /// Answers naming the region since this node saw the drain begin.
    pub answers_since_drain: u64,
}

/// A drained region over every node: the region is safe to switch off once no node answered
/// with it since the drain, every live node's last answer expired, and every node that went
/// away may no longer have an answer in a cache.
#[derive(Debug, Serialize)]
pub struct ClusterDrain {
    /// The latest expiry over the live nodes (Unix ms); `None` when no node ever named it.
    pub cached_answers_expire_at_ms: Option<u64>,
    /// The node whose answers expire last.
    pub latest_node: Option<String>,
    /// Summed over the live nodes.
    pub answers_since_drain: u64,
    pub nodes: BTreeMap<String, NodeDrain>,
    /// Live nodes that do not report the drain yet (it has not reached them, or they run
    /// another zone version): until they do, the drain is not complete.
    pub not_reporting: Vec<String>,
    /// Nodes whose record left (their lease expired) so recently that an answer they gave,
    /// before the drain or after it if it never reached them, may still be cached: until
    /// they are all past, the drain is not complete.
    pub departed: Vec<Departed>,
    pub complete: bool,
}

/// A node gone while its answers may still sit in resolvers' caches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Departed {
    pub node: String,
    /// Its last record's time (Unix ms, its clock).
    pub last_seen_ms: u64,
    /// When this node saw its record go (Unix ms): a dead node's lease expired before, so
    /// it answered nothing after.
    pub gone_ms: u64,
    /// Its last reported part of the drain, when it reported one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<NodeDrain>,
    /// Until when an answer it gave may sit in a cache (Unix ms): `gone_ms` plus the zone's
    /// longest steered TTL and a second, or its last reported expiry if later.
    pub until_ms: u64,
}

/// The last record of a node whose record left, and when this node saw it go.
#[derive(Debug, Clone)]
pub struct Gone {
    pub record: NodeRecord,
    pub gone_ms: u64,
}

/// The drain of `region` of `zone` over `nodes` (live records) and `gone` (nodes whose record
/// left), with this node's own part `own` taken live rather than from its last published
/// record. `hold` is how long an answer of the zone may stay cached ([`Zone::cache_hold`]).
///
/// [`Zone::cache_hold`]: crate::zone::Zone::cache_hold
pub fn cluster_drain(
    nodes: &BTreeMap<String, NodeRecord>,
    gone: &BTreeMap<String, Gone>,
    (own_node, own): (&str, NodeDrain),
    (zone, region): (&str, &str),
    hold: Duration,
    now_ms: u64,
) -> ClusterDrain {
    let mut parts = BTreeMap::from([(own_node.to_string(), own)]);
    let mut not_reporting = Vec::new();
    for (name, r) in nodes.iter().filter(|(n, _)| n.as_str() != own_node) {
        match r.drains.get(zone).and_then(|d| d.get(region)) {
            Some(d) => {
                parts.insert(name.clone(), *d);
            }
            None => not_reporting.push(name.clone()),
        }
    }
    // A node that came back is listed as well: the new process does not know the answers
    // the old one gave.
    let departed: Vec<Departed> = gone
        .iter()
        .filter(|(n, _)| n.as_str() != own_node)
        .map(|(name, g)| {
            let part = g
                .record
                .drains
                .get(zone)
                .and_then(|d| d.get(region))
                .copied();
            let reported = part.map_or(0, |p| p.cached_until_s * 1000);
            Departed {
                node: name.clone(),
                last_seen_ms: g.record.at_ms,
                gone_ms: g.gone_ms,
                part,
                until_ms: (g.gone_ms + hold.as_millis() as u64).max(reported),
            }
        })
        .filter(|d| d.until_ms > now_ms)
        .collect();
    let latest = parts
        .iter()
        .filter(|(_, d)| d.cached_until_s > 0)
        .max_by_key(|(_, d)| d.cached_until_s);
    let expire_ms = latest.map(|(_, d)| d.cached_until_s * 1000);
    let answers: u64 = parts.values().map(|d| d.answers_since_drain).sum();
    ClusterDrain {
        cached_answers_expire_at_ms: expire_ms,
        latest_node: latest.map(|(n, _)| n.clone()),
        answers_since_drain: answers,
        complete: not_reporting.is_empty()
            && departed.is_empty()
            && answers == 0
            && expire_ms.is_none_or(|t| t <= now_ms),
        nodes: parts,
        not_reporting,
        departed,
    }
}

impl NodeRecord {
    /// The same content, whatever the time of writing.
    fn same_content(&self, other: &NodeRecord) -> bool {
        self.zones == other.zones
            && self.suspect == other.suspect
            && self.location == other.location
            && self.latency == other.latency
            && self.drains == other.drains
            && same_loads(&self.loads, &other.loads)
            && self.observations.len() == other.observations.len()
            && self
                .observations
                .iter()
                .zip(&other.observations)
                .all(|((za, a), (zb, b))| {
                    za == zb
                        && a.len() == b.len()
                        && a.iter().zip(b).all(|(x, y)| {
                            (&x.region, x.address, x.up, &x.error)
                                == (&y.region, y.address, y.up, &y.error)
                        })
                })
    }
}

/// The same regions with the same loads, reported within a second of each other: a feed
/// that renews a load many times a second rewrites the record once a second, not on each
/// report, and a new load goes out at once.
fn same_loads(a: &crate::spill::SharedLoads, b: &crate::spill::SharedLoads) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((za, ra), (zb, rb))| {
            za == zb
                && ra.len() == rb.len()
                && ra.iter().zip(rb).all(|((na, la), (nb, lb))| {
                    na == nb && la.load == lb.load && la.at_ms.abs_diff(lb.at_ms) < 1_000
                })
        })
}

/// The zones whose content hash is not the same on every node that serves them.
pub fn zones_differ(nodes: &BTreeMap<String, NodeRecord>) -> Vec<String> {
    let mut hashes: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in nodes.values() {
        for (zone, stamp) in &r.zones {
            hashes.entry(zone).or_default().insert(&stamp.hash);
        }
    }
    hashes
        .into_iter()
        .filter(|(_, h)| h.len() > 1)
        .map(|(z, _)| z.to_string())
        .collect()
}

/// How the nodes' published observations decide one zone's endpoints: what `meridian route`
/// and the API's route explanation show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuorumExplained {
    pub rule: Quorum,
    pub endpoints: Vec<EndpointVotes>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointVotes {
    pub region: String,
    pub address: IpAddr,
    /// node -> sees it up.
    pub seen: BTreeMap<String, bool>,
    /// Nodes whose isolation guard holds for the zone: their word is not counted.
    pub suspect: Vec<String>,
    /// What the rule makes of the counted observations; `None`: no node observed it (each
    /// node then follows its own probes).
    pub up: Option<bool>,
}

/// The endpoints of `zone` as the nodes' records (`nodes`) see them, decided by the zone's
/// rule or else `cluster_rule`. Every node counts, as each node counts itself and the others.
pub fn explain(
    nodes: &BTreeMap<String, NodeRecord>,
    zone: &crate::zone::Zone,
    cluster_rule: Quorum,
) -> QuorumExplained {
    let label = zone.origin.to_string();
    let rule = zone.quorum.unwrap_or(cluster_rule);
    let mut endpoints = Vec::new();
    for region in &zone.regions {
        for endpoint in &region.endpoints {
            let mut seen = BTreeMap::new();
            let mut suspect = Vec::new();
            for r in nodes.values() {
                let Some(o) = r.observations.get(&label).and_then(|os| {
                    os.iter()
                        .find(|o| o.region == region.name && o.address == endpoint.address)
                }) else {
                    continue;
                };
                seen.insert(r.node.clone(), o.up);
                if r.suspect.contains(&label) {
                    suspect.push(r.node.clone());
                }
            }
            let counted: Vec<bool> = seen
                .iter()
                .filter(|(n, _)| !suspect.contains(n))
                .map(|(_, up)| *up)
                .collect();
            let up = (!counted.is_empty())
                .then(|| rule.up(counted.iter().filter(|u| **u).count(), counted.len()));
            endpoints.push(EndpointVotes {
                region: region.name.clone(),
                address: endpoint.address,
                seen,
                suspect,
                up,
            });
        }
    }
    QuorumExplained { rule, endpoints }
}

/// The votes and latencies of every node but `me` (located at `location`), from their
/// records: what is published is fresh (records live under a lease), and zones a node is
/// suspect for are left out.
pub fn peer_views(
    nodes: &BTreeMap<String, NodeRecord>,
    me: &str,
    quorum: Quorum,
    location: Option<GeoPoint>,
) -> PeerViews {
    let mut votes: BTreeMap<(String, String, IpAddr), Votes> = BTreeMap::new();
    let mut vantages = Vec::new();
    for record in nodes.values().filter(|r| r.node != me) {
        if let Some(at) = record.location {
            let latency: BTreeMap<(String, String), Latency> = record
                .latency
                .iter()
                .filter(|(zone, _)| !record.suspect.contains(*zone))
                .flat_map(|(zone, regions)| {
                    regions
                        .iter()
                        .map(|(region, l)| ((zone.clone(), region.clone()), *l))
                })
                .collect();
            if !latency.is_empty() {
                vantages.push(PeerVantage {
                    node: record.node.clone(),
                    location: at,
                    latency,
                });
            }
        }
        for (zone, observations) in &record.observations {
            if record.suspect.contains(zone) {
                continue;
            }
            for o in observations {
                let v = votes
                    .entry((zone.clone(), o.region.clone(), o.address))
                    .or_default();
                v.total += 1;
                v.up += usize::from(o.up);
            }
        }
    }
    PeerViews {
        quorum,
        votes,
        location,
        vantages,
    }
}

/// The cluster membership of this node, shared by the admin API and the store tasks.
pub struct Cluster {
    pub config: ClusterConfig,
    state: SharedSnapshot,
    metrics: Arc<Metrics>,
    journal: Arc<Mutex<Journal>>,
    client: std::sync::Mutex<Option<etcd_client::Client>>,
    status: ArcSwap<StoreStatus>,
    /// The last revision applied: writes wait on it.
    applied: watch::Sender<i64>,
    /// Every node's record as last read, this node's own included.
    nodes: ArcSwap<BTreeMap<String, NodeRecord>>,
    /// The nodes whose record left since start, by name, with their last record: drains wait
    /// for their answers to leave caches.
    gone: std::sync::Mutex<BTreeMap<String, Gone>>,
    /// Orders this node's writes.
    pub writes: Mutex<()>,
    /// Numbers this node's audit keys within one millisecond.
    audit_seq: AtomicU64,
    /// The latency map: this node's shared, the others' merged into what it publishes.
    latency: Arc<crate::latency::feed::Feed>,
    /// The other nodes' latency map chunks as read.
    inbox: std::sync::Mutex<latency::Inbox>,
    /// Load reports: this node's go into its record, the others' come from theirs.
    spill: Arc<crate::spill::Spill>,
}

/// What `GET /api/v1/cluster` shows.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub node: String,
    pub prefix: String,
    pub endpoints: Vec<String>,
    pub quorum: Quorum,
    pub store: StoreStatus,
    pub nodes: Vec<NodeView>,
    /// Zones whose content hash is not the same on every node that serves them.
    pub zones_differ: Vec<String>,
    pub vantage: Vantage,
}

#[derive(Debug, Serialize)]
pub struct NodeView {
    pub node: String,
    pub last_seen_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<GeoPoint>,
    /// zone -> region -> the node's published latency.
    pub latency: BTreeMap<String, BTreeMap<String, Latency>>,
    pub zones: BTreeMap<String, ZoneStamp>,
    pub suspect: BTreeSet<String>,
}

impl Cluster {
    pub fn new(
        config: ClusterConfig,
        state: SharedSnapshot,
        metrics: Arc<Metrics>,
        journal: Arc<Mutex<Journal>>,
        latency: Arc<crate::latency::feed::Feed>,
        spill: Arc<crate::spill::Spill>,
    ) -> Arc<Cluster> {
        metrics.cluster_store(false);
        latency.share();
        Arc::new(Cluster {
            config,
            state,
            metrics,
            journal,
            client: std::sync::Mutex::new(None),
            status: ArcSwap::from_pointee(StoreStatus {
                state: StoreState::Connecting,
                since_ms: crate::state::now_ms(),
                last_error: None,
                revision: 0,
            }),
            applied: watch::channel(0).0,
            nodes: ArcSwap::default(),
            gone: std::sync::Mutex::default(),
            writes: Mutex::new(()),
            audit_seq: AtomicU64::new(0),
            latency,
            inbox: std::sync::Mutex::default(),
            spill,
        })
    }

    pub fn status(&self) -> Arc<StoreStatus> {
        self.status.load_full()
    }

    fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.config.prefix)
    }

    /// The key of the override `e` sets or lifts; `None` for an entry that is no override.
    fn override_key(&self, e: &Entry) -> Option<String> {
        match (e.action, e.endpoint) {
            (Action::Drain | Action::Undrain, _) => {
                Some(self.key(&format!("overrides/drain/{}/{}", e.zone, e.region)))
            }
            (Action::ForceUp | Action::ForceDown | Action::Unforce, Some(a)) => {
                Some(self.key(&format!("overrides/force/{}/{}/{a}", e.zone, e.region)))
            }
            _ => None,
        }
    }

    /// Commits `entry` (stamped with this node's name) to etcd: the override key and the
    /// audit entry in one transaction. An undrain or unforce of what is not set changes
    /// nothing (`Ok(None)`). Returns the revision and the entry, its `seq` that revision.
    pub async fn commit(&self, mut entry: Entry) -> Result<Option<(i64, Entry)>, ClusterError> {
        self.usable()?;
        let Some(client) = self.client.lock().expect("client lock").clone() else {
            return Err(ClusterError::Away("not connected".into()));
        };
        entry.node = Some(self.config.node.clone());
        let key = self.override_key(&entry).expect("writes are overrides");
        let n = self.audit_seq.fetch_add(1, Ordering::Relaxed);
        let audit = self.key(&format!(
            "audit/{:013}-{}-{n}",
            entry.at_ms, self.config.node
        ));
        let json = serde_json::to_string(&entry).expect("entries serialize");
        use etcd_client::{Compare, CompareOp, Txn, TxnOp};
        let txn = match entry.action {
            Action::Undrain | Action::Unforce => Txn::new()
                .when([Compare::version(key.clone(), CompareOp::Greater, 0)])
                .and_then([TxnOp::delete(key, None), TxnOp::put(audit, json, None)]),
            _ => Txn::new().and_then([
                TxnOp::put(key, json.clone(), None),
                TxnOp::put(audit, json, None),
            ]),
        };
        let call = store::sent(|| {
            let mut client = client.clone();
            let txn = txn.clone();
            async move { client.txn(txn).await }
        });
        let response = match tokio::time::timeout(WRITE_TIMEOUT, call).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.metrics.cluster_store_error();
                return Err(match e {
                    etcd_client::Error::GRpcStatus(s) => {
                        ClusterError::Away(s.message().to_string())
                    }
                    e => ClusterError::Etcd(e),
                });
            }
            Err(_) => {
                self.metrics.cluster_store_error();
                return Err(ClusterError::Unanswered);
            }
        };
        if !response.succeeded() {
            return Ok(None);
        }
        let revision = response.header().map_or(0, |h| h.revision());
        entry.seq = revision as u64;
        // Bounded in etcd; off the write's path, and a trim that fails waits for the next
        // write (deleting the same keys twice is harmless).
        let (prefix, keep, metrics) = (
            self.key("audit/"),
            self.config.audit_keep,
            self.metrics.clone(),
        );
        tokio::spawn(async move {
            match store::trim_audit(client, prefix, keep).await {
                Ok(n) if n > 0 => {
                    tracing::debug!(deleted = n, keep, "old audit entries trimmed from etcd")
                }
                Ok(_) => {}
                Err(e) => {
                    metrics.cluster_store_error();
                    tracing::debug!(error = %e, "cannot trim old audit entries from etcd; the next write tries again");
                }
            }
        });
        Ok(Some((revision, entry)))
    }

    /// `Ok` while the store is up; what is wrong otherwise. While it is away this node does
    /// not know the cluster's overrides, so it cannot even say that a write changes nothing.
    pub fn usable(&self) -> Result<(), ClusterError> {
        let status = self.status();
        if status.state == StoreState::Up {
            return Ok(());
        }
        Err(ClusterError::Away(
            status
                .last_error
                .clone()
                .unwrap_or_else(|| "not reached since start".into()),
        ))
    }

    /// Waits (at most [`APPLY_WAIT`]) until this node applied `revision`: DNS follows it.
    pub async fn wait_applied(&self, revision: i64) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(APPLY_WAIT, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Takes the records as now read, and says in the metrics how many nodes there are and
    /// which zones they serve differently.
    fn set_nodes(&self, nodes: BTreeMap<String, NodeRecord>) {
        let now = crate::state::now_ms();
        {
            let mut gone = self.gone.lock().expect("gone lock");
            for (name, r) in self.nodes.load().iter() {
                if !nodes.contains_key(name) && *name != self.config.node {
                    tracing::info!(node = %name, last_seen_ms = r.at_ms, "node record gone (its lease expired)");
                    gone.insert(
                        name.clone(),
                        Gone {
                            record: r.clone(),
                            gone_ms: now,
                        },
                    );
                }
            }
        }
        self.metrics
            .cluster_nodes(nodes.len(), zones_differ(&nodes));
        let mut latest: BTreeMap<(String, String), u64> = BTreeMap::new();
        for r in nodes.values() {
            for (zone, regions) in &r.drains {
                for (region, d) in regions {
                    let t = latest.entry((zone.clone(), region.clone())).or_default();
                    *t = (*t).max(d.cached_until_s);
                }
            }
        }
        self.metrics.cluster_drains(latest);
        // Load reports made to other nodes: every node runs spillover on the newest.
        let instant = std::time::Instant::now();
        for r in nodes.values().filter(|r| r.node != self.config.node) {
            self.spill.peer_reports(&r.node, &r.loads, instant, now);
        }
        self.nodes.store(Arc::new(nodes));
    }

    /// The drain of `region` of `zone` over the live nodes and those gone, this one's part
    /// `own` (live).
    pub fn drain(
        &self,
        zone: &crate::zone::Zone,
        region: &str,
        own: NodeDrain,
        now_ms: u64,
    ) -> ClusterDrain {
        cluster_drain(
            &self.nodes.load(),
            &self.gone.lock().expect("gone lock"),
            (&self.config.node, own),
            (&zone.origin.to_string(), region),
            zone.cache_hold(),
            now_ms,
        )
    }

    /// How the nodes' records, as last read, decide `zone`'s endpoints.
    pub fn explain(&self, zone: &crate::zone::Zone) -> QuorumExplained {
        explain(&self.nodes.load(), zone, self.config.quorum)
    }

    /// What `GET /api/v1/cluster` shows.
    pub fn view(&self) -> ClusterView {
        let nodes = self.nodes.load();
        let mut vantage: Vantage = BTreeMap::new();
        for r in nodes.values() {
            for (zone, observations) in &r.observations {
                for o in observations {
                    vantage
                        .entry(zone.clone())
                        .or_default()
                        .entry(o.region.clone())
                        .or_default()
                        .entry(o.address)
                        .or_default()
                        .insert(r.node.clone(), o.up);
                }
            }
        }
        ClusterView {
            node: self.config.node.clone(),
            prefix: self.config.prefix.clone(),
            endpoints: self.config.endpoints.clone(),
            quorum: self.config.quorum,
            store: StoreStatus::clone(&self.status()),
            nodes: nodes
                .values()
                .map(|r| NodeView {
                    node: r.node.clone(),
                    last_seen_ms: r.at_ms,
                    location: r.location,
                    latency: r.latency.clone(),
                    zones: r.zones.clone(),
                    suspect: r.suspect.clone(),
                })
                .collect(),
            zones_differ: zones_differ(&nodes),
            vantage,
        }
    }

    /// Hands the monitor the peers of the warm start (before this node answers), then starts
    /// the store tasks on the current runtime: the watch that applies overrides and peers,
    /// and the publisher of this node's record.
    pub async fn spawn(self: &Arc<Cluster>, monitor: MonitorHandle) {
        monitor.peers(self.peers()).await;
        tokio::spawn(self.clone().sync_forever(monitor.clone()));
        tokio::spawn(self.clone().publish_forever(monitor));
    }
}

/// zone -> region -> endpoint -> node -> up.
type Vantage = BTreeMap<String, BTreeMap<String, BTreeMap<IpAddr, BTreeMap<String, bool>>>>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A zone with one region of two endpoints.
    fn zone(quorum: &str) -> crate::zone::Zone {
        let text = format!(
            r#"zone = "example.com."
{quorum}
records = '''
$TTL 3600
@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300
@ IN NS  ns1
ns1 IN A 192.0.2.53
'''

[regions.eu-west]
location = {{ lat = 53.35, lon = -6.26 }}
endpoints = ["192.0.2.10", "192.0.2.11"]
"#
        );
        crate::zone::load_file(std::path::Path::new("zones/example.com.toml"), &text)
            .unwrap_or_else(|d| panic!("{}", crate::zone::LoadError(d)))
    }

    fn record(node: &str, up: [bool; 2], suspect: bool) -> NodeRecord {
        let observations = ["192.0.2.10", "192.0.2.11"]
            .iter()
            .zip(up)
            .map(|(a, up)| Observation {
                region: "eu-west".into(),
                address: a.parse().unwrap(),
                up,
                error: None,
                rtt_ms: None,
                rtt_min_ms: None,
            })
            .collect();
        NodeRecord {
            node: node.into(),
            at_ms: 1,
            zones: BTreeMap::new(),
            suspect: if suspect {
                BTreeSet::from(["example.com.".to_string()])
            } else {
                BTreeSet::new()
            },
            observations: BTreeMap::from([("example.com.".to_string(), observations)]),
            location: None,
            latency: BTreeMap::new(),
            drains: BTreeMap::new(),
            loads: BTreeMap::new(),
        }
    }

    fn drained(node: &str, cached_until_s: u64, answers_since_drain: u64) -> NodeRecord {
        NodeRecord {
            drains: BTreeMap::from([(
                "example.com.".to_string(),
                BTreeMap::from([(
                    "eu-west".to_string(),
                    NodeDrain {
                        cached_until_s,
                        answers_since_drain,
                    },
                )]),
            )]),
            ..record(node, [true, true], false)
        }
    }

    /// `cluster_drain` of eu-west of example.com. as ns1 sees it, answers held 61 s.
    fn drain_at(
        all: &BTreeMap<String, NodeRecord>,
        gone: &BTreeMap<String, Gone>,
        own: NodeDrain,
        now_ms: u64,
    ) -> ClusterDrain {
        let hold = Duration::from_secs(61);
        cluster_drain(
            all,
            gone,
            ("ns1", own),
            ("example.com.", "eu-west"),
            hold,
            now_ms,
        )
    }

    #[test]
    fn a_cluster_drain_takes_the_latest_expiry_and_every_nodes_answers() {
        let own = NodeDrain {
            cached_until_s: 100,
            answers_since_drain: 0,
        };
        let none = BTreeMap::new();
        // ns1's published record is stale: its live part counts instead.
        let all = nodes(vec![
            drained("ns1", 50, 7),
            drained("ns2", 130, 2),
            drained("ns3", 90, 0),
        ]);
        let d = drain_at(&all, &none, own, 120_000);
        assert_eq!(d.cached_answers_expire_at_ms, Some(130_000));
        assert_eq!(d.latest_node.as_deref(), Some("ns2"));
        assert_eq!(d.answers_since_drain, 2);
        assert!(!d.complete);
        let quiet = nodes(vec![drained("ns2", 130, 0), drained("ns3", 90, 0)]);
        let d = drain_at(&quiet, &none, own, 130_000);
        assert!(d.complete, "{d:?}");
        // A live node that does not report the drain yet holds completion back.
        let late = nodes(vec![
            drained("ns2", 130, 0),
            record("ns3", [true, true], false),
        ]);
        let d = drain_at(&late, &none, own, 200_000);
        assert_eq!(d.not_reporting, vec!["ns3".to_string()]);
        assert!(!d.complete);
    }

    #[test]
    fn a_node_gone_holds_a_drain_back_until_its_answers_may_have_left_every_cache() {
        let own = NodeDrain {
            cached_until_s: 100,
            answers_since_drain: 0,
        };
        let live = nodes(vec![drained("ns2", 90, 0)]);
        // ns3 reported its part and left at 110 s; ns4 never saw the drain and left at 150 s
        // (it may have answered eu-west until then).
        let gone = BTreeMap::from([
            (
                "ns3".to_string(),
                Gone {
                    record: NodeRecord {
                        at_ms: 104_000,
                        ..drained("ns3", 120, 0)
                    },
                    gone_ms: 110_000,
                },
            ),
            (
                "ns4".to_string(),
                Gone {
                    record: NodeRecord {
                        at_ms: 147_000,
                        ..record("ns4", [true, true], false)
                    },
                    gone_ms: 150_000,
                },
            ),
        ]);
        let d = drain_at(&live, &gone, own, 130_000);
        assert!(!d.complete, "{d:?}");
        assert_eq!(
            d.departed,
            vec![
                Departed {
                    node: "ns3".into(),
                    last_seen_ms: 104_000,
                    gone_ms: 110_000,
                    part: Some(NodeDrain {
                        cached_until_s: 120,
                        answers_since_drain: 0
                    }),
                    until_ms: 171_000,
                },
                Departed {
                    node: "ns4".into(),
                    last_seen_ms: 147_000,
                    gone_ms: 150_000,
                    part: None,
                    until_ms: 211_000,
                },
            ]
        );
        // The live nodes' view leaves them out.
        assert_eq!(d.cached_answers_expire_at_ms, Some(100_000));
        assert_eq!(d.nodes.len(), 2);
        let d = drain_at(&live, &gone, own, 171_000);
        assert_eq!(d.departed.len(), 1, "{d:?}");
        assert!(!d.complete);
        let d = drain_at(&live, &gone, own, 211_000);
        assert!(d.departed.is_empty() && d.complete, "{d:?}");
        // A later expiry it reported counts over the bound (clocks may differ).
        let skewed = BTreeMap::from([(
            "ns3".to_string(),
            Gone {
                record: drained("ns3", 300, 0),
                gone_ms: 110_000,
            },
        )]);
        let d = drain_at(&live, &skewed, own, 250_000);
        assert_eq!(d.departed[0].until_ms, 300_000);
        // Its own name is never departed from this node's view.
        let me = BTreeMap::from([(
            "ns1".to_string(),
            Gone {
                record: drained("ns1", 300, 0),
                gone_ms: 110_000,
            },
        )]);
        assert!(drain_at(&live, &me, own, 120_000).departed.is_empty());
    }

    fn nodes(records: Vec<NodeRecord>) -> BTreeMap<String, NodeRecord> {
        records.into_iter().map(|r| (r.node.clone(), r)).collect()
    }

    #[test]
    fn the_explanation_counts_every_node_but_the_suspect_ones() {
        let all = nodes(vec![
            record("ns1", [true, false], false),
            record("ns2", [true, false], false),
            record("ns3", [false, true], false),
        ]);
        let q = explain(&all, &zone(""), Quorum::Majority);
        assert_eq!(q.rule, Quorum::Majority);
        assert_eq!(q.endpoints[0].up, Some(true));
        assert_eq!(q.endpoints[1].up, Some(false));
        assert_eq!(q.endpoints[1].seen.len(), 3);
        // ns1 and ns2 suspect: only ns3 counts.
        let suspect = nodes(vec![
            record("ns1", [true, false], true),
            record("ns2", [true, false], true),
            record("ns3", [false, true], false),
        ]);
        let q = explain(&suspect, &zone(""), Quorum::Majority);
        assert_eq!(q.endpoints[0].up, Some(false));
        assert_eq!(q.endpoints[0].suspect, ["ns1", "ns2"]);
        // No observation at all: nothing decided.
        assert_eq!(
            explain(&BTreeMap::new(), &zone(""), Quorum::Majority).endpoints[0].up,
            None
        );
    }

    #[test]
    fn the_zone_rule_beats_the_cluster_rule_and_peers_exclude_this_node() {
        let all = nodes(vec![
            record("ns1", [true, true], false),
            record("ns2", [false, true], false),
        ]);
        let q = explain(&all, &zone("quorum = \"all\""), Quorum::Any);
        assert_eq!(q.rule, Quorum::All);
        assert_eq!(q.endpoints[0].up, Some(false));
        let peers = peer_views(&all, "ns1", Quorum::Any, None);
        let key = (
            "example.com.".to_string(),
            "eu-west".to_string(),
            "192.0.2.10".parse().unwrap(),
        );
        assert_eq!(peers.votes[&key], Votes { up: 0, total: 1 });
    }

    #[test]
    fn located_peers_that_are_not_suspect_become_vantage_points() {
        let slow = Latency {
            degradation_ms: 120.0,
            over_limit: true,
        };
        let located = |node: &str, suspect: bool, at: Option<GeoPoint>| NodeRecord {
            location: at,
            latency: BTreeMap::from([(
                "example.com.".to_string(),
                BTreeMap::from([("eu-west".to_string(), slow)]),
            )]),
            ..record(node, [true, true], suspect)
        };
        let fra = GeoPoint {
            lat: 50.11,
            lon: 8.68,
        };
        let all = nodes(vec![
            located("ns1", false, Some(fra)),
            located("ns2", false, Some(fra)),
            located("ns3", true, Some(fra)),
            located("ns4", false, None),
        ]);
        let here = Some(GeoPoint { lat: 0.0, lon: 0.0 });
        let peers = peer_views(&all, "ns1", Quorum::Majority, here);
        assert_eq!(peers.location, here);
        // ns1 is this node, ns3 suspect for the zone, ns4 not located: only ns2.
        let names: Vec<&str> = peers.vantages.iter().map(|v| v.node.as_str()).collect();
        assert_eq!(names, ["ns2"]);
        assert_eq!(
            peers.vantages[0].latency[&("example.com.".to_string(), "eu-west".to_string())],
            slow
        );
        // A record's latency is part of what it publishes on change.
        let mut moved = located("ns2", false, Some(fra));
        assert!(moved.same_content(&located("ns2", false, Some(fra))));
        moved.latency.clear();
        assert!(!moved.same_content(&located("ns2", false, Some(fra))));
    }
}
