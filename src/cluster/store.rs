//! The etcd side of [`Cluster`]: the connection, the warm start, the watch with its resync
//! after every disconnect, and this node's leased record.
//!
//! The rule: the sync task alone sets the store state. It is up only after a whole resync
//! (one revision: the overrides, the records, the audit entries missed) and while a
//! linearizable read succeeds every [`CHECK`], which needs an etcd quorum; any error sends
//! it back to resync, and DNS keeps the last known state meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, EventType, GetOptions, Identity, KeyValue, PutOptions,
    TlsOptions, WatchOptions,
};
use tokio::time::{Instant, timeout};
use tracing::{info, warn};

use super::latency::{self, Change, Inbox};
use super::{
    Cluster, ClusterConfig, ClusterError, HEARTBEAT, NodeDrain, NodeRecord, Observation,
    StoreState, StoreStatus, ZoneStamp,
};
use crate::health::monitor::MonitorHandle;
use crate::health::view::PeerViews;
use crate::state::{Action, Entry, Overrides, now_ms};

/// How often the sync task proves the store has quorum.
const CHECK: Duration = Duration::from_secs(1);
/// The longest a warm start waits for etcd before starting from the journal.
const WARM_START: Duration = Duration::from_secs(3);
/// Pause between attempts while etcd is away.
const RETRY: Duration = Duration::from_millis(500);
/// How often this node's record is compared with what it published.
const PUBLISH_TICK: Duration = Duration::from_millis(100);
/// Largest watch answer the client decodes (its default is 4 MiB). etcd fragments the
/// watch's answers at its `--max-request-bytes` (1.5 MiB by default); this leaves room for
/// a member configured up to 16 MiB.
pub(super) const WATCH_DECODE_LIMIT: usize = 16 << 20;
/// First pause after a failed write of the latency map, doubled up to [`SHARE_BACKOFF_MAX`].
const SHARE_BACKOFF: Duration = Duration::from_secs(1);
const SHARE_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Whether `e` failed before the request left: the balanced channel picked a member that
/// refuses connections (killed, restarting). Such a call is safe to repeat, and another
/// member may well answer it.
fn never_sent(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("connect error"))
}

/// `call`, made again (up to three times in all) while it fails before the request left.
pub(super) async fn sent<T, F, Fut>(mut call: F) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    for _ in 0..2 {
        match call().await {
            Err(e) if never_sent(&e) => tokio::time::sleep(Duration::from_millis(20)).await,
            r => return r,
        }
    }
    call().await
}

/// A client for `config`'s etcd: the endpoints, TLS and user it names.
async fn connect(config: &ClusterConfig) -> Result<Client, etcd_client::Error> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(2))
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1))
        // A member cut off from the others refuses instead of serving stale reads.
        .with_require_leader(true);
    if let Some((user, password)) = &config.user {
        options = options.with_user(user, &password.0);
    }
    let tls = &config.tls;
    if tls.ca.is_some() || tls.identity.is_some() {
        let mut t = TlsOptions::new();
        if let Some(ca) = &tls.ca {
            t = t.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &tls.identity {
            t = t.identity(Identity::from_pem(cert, key));
        }
        options = options.with_tls(t);
    }
    Client::connect(&config.endpoints, Some(options)).await
}

/// Every node's record under `config`'s prefix, read once (`meridian route --config`).
pub async fn read_records(
    config: &ClusterConfig,
) -> Result<BTreeMap<String, NodeRecord>, ClusterError> {
    let mut client = connect(config).await?;
    let prefix = format!("{}/nodes/", config.prefix);
    let found = client
        .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
        .await?;
    Ok(found
        .kvs()
        .iter()
        .filter_map(|kv| {
            let name = kv.key().strip_prefix(prefix.as_bytes())?;
            serde_json::from_slice::<NodeRecord>(kv.value())
                .ok()
                .filter(|r| r.node.as_bytes() == name)
        })
        .map(|r| (r.node.clone(), r))
        .collect())
}

impl Cluster {
    /// The client, connected once and reused: it reconnects to whichever member answers.
    async fn client(&self) -> Result<Client, ClusterError> {
        if let Some(c) = self.client.lock().expect("client lock").clone() {
            return Ok(c);
        }
        let c = connect(&self.config).await?;
        *self.client.lock().expect("client lock") = Some(c.clone());
        Ok(c)
    }

    fn set_state(&self, state: StoreState, error: Option<String>, revision: i64) {
        let old = self.status.load();
        if old.state != state {
            match (&error, state) {
                (Some(e), _) => {
                    warn!(from = ?old.state, to = ?state, error = %e,
                        "cluster store state changed: serving the last known state; writes answer 503")
                }
                (None, _) => {
                    info!(from = ?old.state, to = ?state, revision, "cluster store state changed")
                }
            }
        }
        self.metrics.cluster_store(state == StoreState::Up);
        self.status.store(Arc::new(StoreStatus {
            state,
            since_ms: if old.state == state {
                old.since_ms
            } else {
                now_ms()
            },
            last_error: error.or_else(|| old.last_error.clone()),
            revision,
        }));
    }

    /// Loads overrides and peer records from etcd before this node answers, or, when etcd
    /// is away, the journal's. Returns the overrides to start with.
    pub async fn warm_start(&self) -> Overrides {
        let loaded = timeout(WARM_START, async {
            let client = self.client().await?;
            self.resync(&client).await
        })
        .await;
        match loaded {
            Ok(Ok((revision, overrides))) => {
                info!(
                    revision,
                    nodes = self.nodes.load().len(),
                    "cluster: overrides and peer observations loaded from etcd"
                );
                self.set_state(StoreState::Up, None, revision);
                overrides
            }
            Ok(Err(e)) => self.start_from_journal(e.to_string()).await,
            Err(_) => self.start_from_journal("no answer within 3 s".into()).await,
        }
    }

    async fn start_from_journal(&self, error: String) -> Overrides {
        warn!(error = %error, "cluster store unreachable at start: serving the overrides of the journal until it returns");
        self.set_state(StoreState::Away, Some(error), 0);
        self.journal.lock().await.overrides().clone()
    }

    /// Reads the overrides and node records at one revision, journals the audit entries
    /// this process missed since the last revision it applied and whatever still differs,
    /// and takes the records. Returns the revision and the overrides in force there.
    async fn resync(&self, client: &Client) -> Result<(i64, Overrides), ClusterError> {
        let get = |key: String, options: GetOptions| {
            let mut client = client.clone();
            async move { client.get(key, Some(options.with_prefix())).await }
        };
        let found = sent(|| get(self.key("overrides/"), GetOptions::new())).await?;
        let revision = found.header().map_or(0, |h| h.revision());
        let at = || GetOptions::new().with_revision(revision);
        let records = sent(|| get(self.key("nodes/"), at())).await?;
        let maps = self.read_latency(client, revision).await?;
        let last = *self.applied.borrow();
        let mut missed = if last > 0 {
            sent(|| get(self.key("audit/"), at().with_min_mod_revision(last + 1)))
                .await?
                .kvs()
                .to_vec()
        } else {
            Vec::new()
        };
        missed.sort_by_key(|kv| (kv.mod_revision(), kv.key().to_vec()));

        let mut cluster = Overrides::default();
        for kv in found.kvs() {
            match self.parse_override(kv) {
                Ok(e) => cluster.apply(&e),
                Err(m) => warn!(key = %String::from_utf8_lossy(kv.key()), error = %m,
                    "ignoring a value in the cluster store"),
            }
        }
        {
            let mut journal = self.journal.lock().await;
            let append = |journal: &mut crate::state::Journal, e: Entry| {
                if let Err(err) = journal.append(e) {
                    warn!(error = %err, "cannot journal an override applied from the cluster store; it applies all the same");
                }
            };
            for e in missed.iter().filter_map(|kv| self.parse_audit(kv)) {
                append(&mut journal, e);
            }
            for e in corrections(journal.overrides(), &cluster, &self.config.node) {
                append(&mut journal, e);
            }
        }
        let mut nodes = BTreeMap::new();
        for kv in records.kvs() {
            if let Some(r) = self.parse_record(kv) {
                nodes.insert(r.node.clone(), r);
            }
        }
        self.set_nodes(nodes);
        self.take_latency(&maps).await;
        self.applied.send_replace(revision);
        Ok((revision, cluster))
    }

    /// Every key of the nodes' latency maps at `revision`, a few chunks an answer: a whole
    /// map in one answer would pass the client's 4 MiB.
    async fn read_latency(
        &self,
        client: &Client,
        revision: i64,
    ) -> Result<Vec<KeyValue>, ClusterError> {
        let prefix = self.key("latency/");
        // The end of the prefix's range: '/' + 1.
        let end = self.key("latency0");
        let mut from = prefix.into_bytes();
        let mut out = Vec::new();
        // Bounded: each answer moves `from` past what it returned.
        loop {
            let found = sent(|| {
                let mut client = client.clone();
                let (from, end) = (from.clone(), end.clone());
                async move {
                    let options = GetOptions::new()
                        .with_range(end)
                        .with_revision(revision)
                        .with_limit(8);
                    client.get(from, Some(options)).await
                }
            })
            .await?;
            out.extend_from_slice(found.kvs());
            match found.kvs().last() {
                Some(last) if found.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(out),
            }
        }
    }

    /// Takes the other nodes' latency maps from every key of them: the newest whole
    /// generation of each node, decoded off the control plane's worker (up to 4 MiB each).
    async fn take_latency(&self, kvs: &[KeyValue]) {
        let prefix = self.key("latency/");
        let mut inbox = Inbox::default();
        let mut whole = BTreeMap::new();
        for kv in kvs {
            let Some((node, generation, i, n)) = kv
                .key()
                .strip_prefix(prefix.as_bytes())
                .and_then(latency::parse_key)
            else {
                warn!(key = %String::from_utf8_lossy(kv.key()), "ignoring an unknown key in the cluster prefix");
                continue;
            };
            if node == self.config.node {
                continue;
            }
            // Keys come in order: a later whole generation replaces an earlier one.
            match inbox.put(&node, generation, i, n, kv.value()) {
                Ok(Change::Whole(bytes)) => {
                    whole.insert(node, bytes);
                }
                Ok(_) => {}
                Err(len) => oversized(kv.key(), len),
            }
        }
        *self.inbox.lock().expect("inbox lock") = inbox;
        latency::take_all(self.latency.clone(), whole).await;
    }

    /// Applies one watched event of a node's latency map; a whole map is decoded and merged
    /// off the control plane's worker.
    async fn apply_latency(&self, event: &etcd_client::Event, rest: &[u8]) {
        let Some(kv) = event.kv() else { return };
        let Some((node, generation, i, n)) = latency::parse_key(rest) else {
            warn!(key = %String::from_utf8_lossy(kv.key()), "ignoring an unknown key in the cluster prefix");
            return;
        };
        if node == self.config.node {
            return;
        }
        let change = {
            let mut inbox = self.inbox.lock().expect("inbox lock");
            match event.event_type() {
                EventType::Put => inbox.put(&node, generation, i, n, kv.value()),
                EventType::Delete => Ok(inbox.delete(&node, generation, i)),
            }
        };
        let feed = self.latency.clone();
        match change {
            Ok(Change::Nothing) => {}
            Ok(Change::Whole(bytes)) => latency::take(feed, node, bytes).await,
            Ok(Change::Gone) => {
                info!(node, "latency map of a node gone (its lease expired)");
                let _ = tokio::task::spawn_blocking(move || feed.set_peer(&node, None)).await;
            }
            Err(len) => oversized(kv.key(), len),
        }
    }

    /// The override entry under an `overrides/` key, checked against its key.
    fn parse_override(&self, kv: &KeyValue) -> Result<Entry, String> {
        let e: Entry = serde_json::from_slice(kv.value()).map_err(|e| e.to_string())?;
        if !matches!(
            e.action,
            Action::Drain | Action::ForceUp | Action::ForceDown
        ) {
            return Err(format!("{:?} is no override in force", e.action));
        }
        if self.override_key(&e).as_deref().map(str::as_bytes) != Some(kv.key()) {
            return Err("the entry names another target than its key".into());
        }
        Ok(e)
    }

    /// The entry that lifts the override of `key` (deleted by hand); `None` when the key
    /// names no override.
    fn lift_of_key(&self, key: &[u8]) -> Option<Entry> {
        let rest = std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&self.key("overrides/"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let (action, zone, region, endpoint) = match parts.as_slice() {
            ["drain", zone, region] => (Action::Undrain, *zone, *region, None),
            ["force", zone, region, address] => {
                (Action::Unforce, *zone, *region, Some(address.parse().ok()?))
            }
            _ => return None,
        };
        (!zone.is_empty() && !region.is_empty()).then(|| {
            lift(
                action,
                zone,
                region,
                endpoint,
                &self.config.node,
                "its key was deleted from the cluster store by hand",
            )
        })
    }

    /// The audit entry under an `audit/` key; `None` (logged) when it is not one.
    fn parse_audit(&self, kv: &KeyValue) -> Option<Entry> {
        let parsed = serde_json::from_slice::<Entry>(kv.value())
            .map_err(|e| e.to_string())
            .and_then(|e| match self.override_key(&e) {
                Some(_) if !e.zone.is_empty() && !e.region.is_empty() => Ok(e),
                _ => Err(format!("{:?} names no override", e.action)),
            });
        match parsed {
            Ok(e) => Some(e),
            Err(m) => {
                warn!(key = %String::from_utf8_lossy(kv.key()), error = %m,
                    "ignoring a value in the cluster store");
                None
            }
        }
    }

    fn parse_record(&self, kv: &KeyValue) -> Option<NodeRecord> {
        let name = kv.key().strip_prefix(self.key("nodes/").as_bytes())?;
        match serde_json::from_slice::<NodeRecord>(kv.value()) {
            Ok(r) if r.node.as_bytes() == name => Some(r),
            Ok(_) => {
                warn!(key = %String::from_utf8_lossy(kv.key()),
                    "ignoring a node record filed under another node's name");
                None
            }
            Err(e) => {
                warn!(key = %String::from_utf8_lossy(kv.key()), error = %e,
                    "ignoring a value in the cluster store");
                None
            }
        }
    }

    /// The votes of the other nodes, or none while the store is away: this node then
    /// follows its own probes.
    pub(super) fn peers(&self) -> PeerViews {
        if self.status.load().state != StoreState::Up {
            return PeerViews {
                quorum: self.config.quorum,
                location: self.config.location,
                ..PeerViews::default()
            };
        }
        super::peer_views(
            &self.nodes.load(),
            &self.config.node,
            self.config.quorum,
            self.config.location,
        )
    }

    /// Keeps the overrides and peers of this node in step with etcd, for ever.
    pub(super) async fn sync_forever(self: Arc<Cluster>, monitor: MonitorHandle) {
        loop {
            let error = match self.session(&monitor).await {
                Ok(()) => "the watch ended".to_string(),
                Err(e) => e.to_string(),
            };
            self.metrics.cluster_store_error();
            let revision = *self.applied.borrow();
            self.set_state(StoreState::Away, Some(error), revision);
            monitor.peers(self.peers()).await;
            tokio::time::sleep(RETRY).await;
        }
    }

    /// One connected stretch: resync, then apply the watch until an error.
    async fn session(&self, monitor: &MonitorHandle) -> Result<(), ClusterError> {
        let client = self.client().await?;
        let (revision, mut current) = self.resync(&client).await?;
        self.set_state(StoreState::Up, None, revision);
        monitor.overrides(current.clone()).await;
        monitor.peers(self.peers()).await;
        // Fragmented: an answer that catches up on many revisions (every latency chunk
        // rewritten meanwhile) comes in pieces of at most etcd's --max-request-bytes.
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1)
            .with_progress_notify()
            .with_fragment();
        let mut stream = sent(|| {
            let mut watch = client
                .watch_client()
                .max_decoding_message_size(WATCH_DECODE_LIMIT);
            let options = options.clone();
            let key = self.key("");
            async move { watch.watch(key, Some(options)).await }
        })
        .await?;
        let own = self.key(&format!("nodes/{}", self.config.node));
        let mut check = tokio::time::interval(CHECK);
        loop {
            tokio::select! {
                message = stream.message() => {
                    let Some(response) = message? else { return Ok(()) };
                    if response.canceled() {
                        return Err(ClusterError::Away(format!(
                            "the watch was cancelled: {}", response.cancel_reason()
                        )));
                    }
                    self.apply(response.events(), &mut current, monitor).await;
                    if let Some(h) = response.header() {
                        self.applied.send_if_modified(|r| {
                            let newer = h.revision() > *r;
                            *r = (*r).max(h.revision());
                            newer
                        });
                        self.set_state(StoreState::Up, None, *self.applied.borrow());
                    }
                }
                _ = check.tick() => {
                    // Linearizable: answered only by a member with a leader and a quorum.
                    let read = sent(|| {
                        let mut client = client.clone();
                        let own = own.clone();
                        async move { client.get(own, None).await }
                    });
                    timeout(CHECK * 2, read)
                        .await
                        .map_err(|_| ClusterError::Away("no answer within 2 s".into()))??;
                }
            }
        }
    }

    /// Applies watched events: audit entries change the overrides (and are journaled),
    /// records change the peers. An override key changes in the transaction of its audit
    /// entry, which applied it already; one written or deleted by hand (no audit entry) is
    /// applied from its own event, after the audit entries of the same response, when it
    /// changes what is in force.
    async fn apply(
        &self,
        events: &[etcd_client::Event],
        current: &mut Overrides,
        monitor: &MonitorHandle,
    ) {
        let audit = self.key("audit/");
        let records = self.key("nodes/");
        let overrides = self.key("overrides/");
        let maps = self.key("latency/");
        let mut overrides_changed = false;
        let mut peers_changed = false;
        let mut journaled = Vec::new();
        let mut by_hand = Vec::new();
        for event in events {
            let Some(kv) = event.kv() else { continue };
            let key = kv.key();
            if key.starts_with(audit.as_bytes()) {
                if event.event_type() == EventType::Put
                    && let Some(e) = self.parse_audit(kv)
                {
                    self.metrics
                        .cluster_lag(now_ms().saturating_sub(e.at_ms) as f64 / 1000.0);
                    current.apply(&e);
                    journaled.push(e);
                    overrides_changed = true;
                }
            } else if let Some(name) = key.strip_prefix(records.as_bytes()) {
                let mut nodes = BTreeMap::clone(&self.nodes.load());
                match event.event_type() {
                    EventType::Put => {
                        if let Some(r) = self.parse_record(kv) {
                            nodes.insert(r.node.clone(), r);
                        }
                    }
                    EventType::Delete => {
                        nodes.remove(String::from_utf8_lossy(name).as_ref());
                    }
                }
                self.set_nodes(nodes);
                peers_changed = true;
            } else if key.starts_with(overrides.as_bytes()) {
                by_hand.push(event);
            } else if let Some(rest) = key.strip_prefix(maps.as_bytes()) {
                self.apply_latency(event, rest).await;
            } else {
                warn!(key = %String::from_utf8_lossy(key), "ignoring an unknown key in the cluster prefix");
            }
        }
        for event in by_hand {
            let Some(kv) = event.kv() else { continue };
            let entry = match event.event_type() {
                EventType::Put => match self.parse_override(kv) {
                    Ok(e) => e,
                    Err(m) => {
                        warn!(key = %String::from_utf8_lossy(kv.key()), error = %m,
                            "ignoring a value in the cluster store");
                        continue;
                    }
                },
                EventType::Delete => match self.lift_of_key(kv.key()) {
                    Some(e) => e,
                    None => {
                        warn!(key = %String::from_utf8_lossy(kv.key()),
                            "ignoring the deletion of a key that names no override");
                        continue;
                    }
                },
            };
            let mut next = current.clone();
            next.apply(&entry);
            if next != *current {
                *current = next;
                journaled.push(entry);
                overrides_changed = true;
            }
        }
        if !journaled.is_empty() {
            let mut journal = self.journal.lock().await;
            for e in journaled {
                info!(by = %e.by, node = ?e.node, action = ?e.action, zone = %e.zone,
                    region = %e.region, endpoint = ?e.endpoint, reason = %e.reason,
                    "operator override from the cluster");
                if let Err(err) = journal.append(e) {
                    warn!(error = %err, "cannot journal an override applied from the cluster store; it applies all the same");
                }
            }
        }
        if overrides_changed {
            monitor.overrides(current.clone()).await;
        }
        if peers_changed {
            monitor.peers(self.peers()).await;
        }
    }

    /// This node's record as it stands: zones served and probe observations.
    fn own_record(&self, monitor: &MonitorHandle) -> NodeRecord {
        let state = self.state.load();
        let details = monitor.details.load();
        let mut zones = BTreeMap::new();
        let mut observations = BTreeMap::new();
        let mut latency = BTreeMap::new();
        let mut drains = BTreeMap::new();
        for z in state.zones.zones() {
            let label = z.origin.to_string();
            let drained: BTreeMap<String, NodeDrain> = z
                .regions
                .iter()
                .filter_map(|r| {
                    let answers = self.metrics.answers_since_drain(&label, &r.name)?;
                    let (_, until) = self.metrics.answer_times(&label, &r.name);
                    Some((
                        r.name.clone(),
                        NodeDrain {
                            cached_until_s: until,
                            answers_since_drain: answers,
                        },
                    ))
                })
                .collect();
            if !drained.is_empty() {
                drains.insert(label.clone(), drained);
            }
            let serial = match &z.soa().data {
                hickory_proto::rr::RData::SOA(s) => s.serial,
                _ => 0,
            };
            zones.insert(
                label.clone(),
                ZoneStamp {
                    serial,
                    hash: format!("{:016x}", z.content_hash),
                },
            );
            let Some(per_region) = details.zones.get(&label) else {
                continue;
            };
            let mut seen = Vec::new();
            let view = state.health(z);
            let mut measured = BTreeMap::new();
            for (ri, (region, endpoints)) in z.regions.iter().zip(per_region.iter()).enumerate() {
                // A region's latency once one of its endpoints has an RTT: before, its
                // degradation is no measurement.
                if endpoints.iter().flatten().any(|d| d.rtt_ms.is_some()) {
                    let (l, _) = view.latency(ri, None);
                    measured.insert(region.name.clone(), l);
                }
                // Only endpoints probed at least once: a start state is no observation.
                for d in endpoints.iter().flatten().filter(|d| d.probes > 0) {
                    seen.push(Observation {
                        region: region.name.clone(),
                        address: d.address,
                        up: d.up,
                        error: if d.up { None } else { d.last_error.clone() },
                        rtt_ms: d.rtt_ms,
                        rtt_min_ms: d.rtt_min_ms,
                    });
                }
            }
            if !measured.is_empty() {
                latency.insert(label.clone(), measured);
            }
            if !seen.is_empty() {
                observations.insert(label, seen);
            }
        }
        NodeRecord {
            node: self.config.node.clone(),
            at_ms: now_ms(),
            zones,
            suspect: details.suspect.as_ref().clone(),
            observations,
            location: self.config.location,
            latency,
            drains,
            loads: self.spill.own_reports(std::time::Instant::now()),
        }
    }

    /// Publishes this node's record under a lease, for ever.
    pub(super) async fn publish_forever(self: Arc<Cluster>, monitor: MonitorHandle) {
        loop {
            if let Err(e) = self.publish_session(&monitor).await {
                tracing::debug!(error = %e, "cannot publish this node's record; trying again");
                self.metrics.cluster_store_error();
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// One lease: the record written on change and every [`HEARTBEAT`], the lease kept alive
    /// every third of its time to live, until an error.
    async fn publish_session(&self, monitor: &MonitorHandle) -> Result<(), ClusterError> {
        let mut client = self.client().await?;
        let ttl = self.config.lease_ttl;
        let lease = client.lease_grant(ttl.as_secs() as i64, None).await?.id();
        let (mut keeper, mut acks) = client.lease_keep_alive(lease).await?;
        let key = self.key(&format!("nodes/{}", self.config.node));
        let mut last: Option<NodeRecord> = None;
        let mut written = Instant::now();
        let mut tick = tokio::time::interval(PUBLISH_TICK);
        let mut keep = tokio::time::interval(ttl / 3);
        // The latency map is written under each new lease by a task of its own: its writes
        // (up to 17 chunks and a delete) never hold up the record or the lease, and its
        // failures never end this session. It ends with the session.
        let _sharing = AbortOnDrop(tokio::spawn(share_forever(
            client.clone(),
            lease,
            self.key("latency/"),
            self.config.node.clone(),
            self.latency.outbox(),
        )));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let record = self.own_record(monitor);
                    let changed = last.as_ref().is_none_or(|l| !l.same_content(&record));
                    if changed || written.elapsed() >= HEARTBEAT {
                        let json = serde_json::to_string(&record).expect("records serialize");
                        client
                            .put(key.as_str(), json, Some(PutOptions::new().with_lease(lease)))
                            .await?;
                        self.metrics.cluster_record_written();
                        last = Some(record);
                        written = Instant::now();
                    }
                }
                _ = keep.tick() => {
                    keeper.keep_alive().await?;
                    match timeout(Duration::from_secs(2), acks.message()).await {
                        Ok(Ok(Some(ack))) if ack.ttl() > 0 => {}
                        Ok(Ok(Some(_))) => return Err(ClusterError::Away("the lease expired".into())),
                        Ok(Ok(None)) => return Err(ClusterError::Away("the lease stream ended".into())),
                        Ok(Err(e)) => return Err(e.into()),
                        Err(_) => return Err(ClusterError::Away("no lease keep-alive answer within 2 s".into())),
                    }
                }
            }
        }
    }
}

/// Aborts its task when dropped: the sharing task ends with its record session.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes each map the outbox holds under `lease` (the latest, the one there first included:
/// a new lease writes it again), retrying a failed write with backoff until it succeeds or a
/// newer map comes. `prefix` is the cluster prefix's `latency/`.
async fn share_forever(
    mut client: Client,
    lease: i64,
    prefix: String,
    node: String,
    mut outbox: tokio::sync::watch::Receiver<Option<Arc<crate::latency::feed::Shared>>>,
) {
    outbox.mark_changed();
    let mut failing: Option<String> = None;
    while outbox.changed().await.is_ok() {
        let Some(shared) = outbox.borrow_and_update().clone() else {
            continue;
        };
        let mut pause = SHARE_BACKOFF;
        loop {
            match share(&mut client, lease, &prefix, &node, &shared).await {
                Ok(()) => {
                    if failing.take().is_some() {
                        info!(bytes = shared.bytes.len(), "latency map shared again");
                    }
                    break;
                }
                Err(e) => {
                    let error = e.to_string();
                    if failing.as_ref() != Some(&error) {
                        warn!(error = %error, bytes = shared.bytes.len(), retry_in = ?pause,
                            "cannot share this node's latency map: the other nodes keep the last one they read");
                    }
                    failing = Some(error);
                }
            }
            // A newer map ends the wait: it is the one to write.
            if timeout(pause, outbox.changed()).await.is_ok() {
                outbox.mark_changed();
                break;
            }
            pause = (pause * 2).min(SHARE_BACKOFF_MAX);
        }
    }
}

/// Writes `shared` under `lease` in chunks, then deletes the node's older generations: a
/// reader keeps the older one until the new one is whole.
async fn share(
    client: &mut Client,
    lease: i64,
    prefix: &str,
    node: &str,
    shared: &crate::latency::feed::Shared,
) -> Result<(), etcd_client::Error> {
    let parts = latency::chunks(&shared.bytes);
    let n = parts.len();
    for (i, part) in parts.into_iter().enumerate() {
        let key = format!("{prefix}{}", latency::key(node, shared.generation, i, n));
        client
            .put(key, part, Some(PutOptions::new().with_lease(lease)))
            .await?;
    }
    let start = format!("{prefix}{node}/");
    let end = format!(
        "{prefix}{}",
        latency::generation_start(node, shared.generation)
    );
    client
        .delete(
            start,
            Some(etcd_client::DeleteOptions::new().with_range(end)),
        )
        .await?;
    tracing::debug!(bytes = shared.bytes.len(), chunks = n, "latency map shared");
    Ok(())
}

/// Logs a latency map chunk over [`latency::CHUNK`]: no node writes one.
fn oversized(key: &[u8], len: usize) {
    warn!(key = %String::from_utf8_lossy(key), bytes = len, most = latency::CHUNK,
        "ignoring a latency map chunk larger than any node writes");
}

/// The entry by which this node (`node`) lifts an override the cluster store no longer
/// holds, for `reason`.
fn lift(
    action: Action,
    zone: &str,
    region: &str,
    endpoint: Option<std::net::IpAddr>,
    node: &str,
    reason: &str,
) -> Entry {
    Entry {
        seq: 0,
        at_ms: now_ms(),
        by: "cluster".into(),
        action,
        zone: zone.to_string(),
        region: region.to_string(),
        endpoint,
        reason: reason.into(),
        expires_at_ms: None,
        node: Some(node.to_string()),
    }
}

/// Deletes the oldest audit entries under `prefix` (`<prefix>/audit/`) beyond the newest
/// `keep`: the keys start with the entry's time in zero-padded Unix ms, so key order is time
/// order. Every node keeps the whole history in its own journal. Returns how many went.
pub(super) async fn trim_audit(
    mut client: Client,
    prefix: String,
    keep: usize,
) -> Result<i64, etcd_client::Error> {
    let count = client
        .get(
            prefix.as_str(),
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await?
        .count() as usize;
    if count <= keep {
        return Ok(0);
    }
    let excess = count - keep;
    let oldest = client
        .get(
            prefix.as_str(),
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_keys_only()
                    .with_limit(excess as i64 + 1),
            ),
        )
        .await?;
    let Some(first_kept) = oldest.kvs().get(excess) else {
        return Ok(0);
    };
    let deleted = client
        .delete(
            prefix.as_str(),
            Some(etcd_client::DeleteOptions::new().with_range(first_kept.key())),
        )
        .await?
        .deleted();
    Ok(deleted)
}

/// The entries that turn `local` into `cluster`: each override the cluster holds that this
/// node does not (or holds differently), and a lift for each this node holds alone.
fn corrections(local: &Overrides, cluster: &Overrides, node: &str) -> Vec<Entry> {
    let lift = |action, zone: &str, region: &str, endpoint| {
        lift(
            action,
            zone,
            region,
            endpoint,
            node,
            "not in the cluster store: lifted while this node was away from it",
        )
    };
    let mut out = Vec::new();
    for ((zone, region), o) in &cluster.drains {
        if local
            .drains
            .get(&(zone.clone(), region.clone()))
            .is_none_or(|l| !l.same_action(o))
        {
            out.push(o.entry(Action::Drain, zone, region, None));
        }
    }
    for (zone, region) in local.drains.keys() {
        if !cluster.drains.contains_key(&(zone.clone(), region.clone())) {
            out.push(lift(Action::Undrain, zone, region, None));
        }
    }
    for ((zone, region, addr), (up, o)) in &cluster.forced {
        let k = (zone.clone(), region.clone(), *addr);
        if local
            .forced
            .get(&k)
            .is_none_or(|(lu, l)| lu != up || !l.same_action(o))
        {
            let action = if *up {
                Action::ForceUp
            } else {
                Action::ForceDown
            };
            out.push(o.entry(action, zone, region, Some(*addr)));
        }
    }
    for (zone, region, addr) in local.forced.keys() {
        if !cluster
            .forced
            .contains_key(&(zone.clone(), region.clone(), *addr))
        {
            out.push(lift(Action::Unforce, zone, region, Some(*addr)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: Action, region: &str, by: &str) -> Entry {
        Entry {
            seq: 0,
            at_ms: 1,
            by: by.into(),
            action,
            zone: "example.com.".into(),
            region: region.into(),
            endpoint: None,
            reason: "r".into(),
            expires_at_ms: None,
            node: Some("ns1".into()),
        }
    }

    #[test]
    fn corrections_turn_the_local_overrides_into_the_clusters() {
        let mut local = Overrides::default();
        local.apply(&entry(Action::Drain, "eu", "ops"));
        local.apply(&entry(Action::Drain, "us", "ops"));
        let mut cluster = Overrides::default();
        cluster.apply(&entry(Action::Drain, "us", "ops"));
        cluster.apply(&entry(Action::Drain, "ap", "oncall"));
        let fixes = corrections(&local, &cluster, "ns2");
        assert_eq!(fixes.len(), 2, "{fixes:?}");
        let mut fixed = local.clone();
        for e in &fixes {
            fixed.apply(e);
        }
        assert_eq!(fixed.drains.len(), 2);
        for (k, o) in &cluster.drains {
            assert!(fixed.drains[k].same_action(o), "{k:?}");
        }
        // Applied again: nothing left to correct (nothing applied twice).
        assert!(corrections(&fixed, &cluster, "ns2").is_empty());
    }
}
