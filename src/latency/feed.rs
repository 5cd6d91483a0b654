//! CONTROL: the latency map's owner on the control plane: takes batches of samples from the
//! admin API, publishes the map into the serving snapshot and saves it to the state
//! directory. One lock guards the map; a query never takes it.

use std::collections::HashMap;
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

pub struct Feed {
    pub config: LatencyConfig,
    tokens: Tokens,
    metrics: Arc<Metrics>,
    state_dir: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    map: LatencyMap,
    buckets: HashMap<String, Bucket>,
    /// Samples taken since the last publication, and since the last save.
    unpublished: bool,
    unsaved: bool,
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
    /// The feed, with the map saved in `state_dir` (an empty map when none was).
    pub fn open(
        config: LatencyConfig,
        tokens: Tokens,
        state_dir: PathBuf,
        metrics: Arc<Metrics>,
    ) -> Result<Feed, store::StoreError> {
        let map = store::load(&state_dir, config.settings)?;
        Ok(Feed {
            config,
            tokens,
            metrics,
            state_dir,
            inner: Mutex::new(Inner {
                map,
                buckets: HashMap::new(),
                unpublished: true,
                unsaved: false,
            }),
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
        // Checked and located before the lock: only the adds hold it.
        let checked: Vec<_> = body
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                checker.check(i + 1, l).map(|s| {
                    let network = IpNet::new(s.client, s.net.prefix().prefix_len())
                        .expect("a client network's prefix fits its family")
                        .trunc();
                    // The ASN level of the fallback chain plugs in here, as in
                    // `serving::answer::measured`.
                    let origin = Origin::of(&state.geo.locate(network));
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
        }
        counters.accepted.fetch_add(report.accepted as u64, Relaxed);
        counters.clamped.fetch_add(report.clamped as u64, Relaxed);
        report
    }

    /// The map as of `now` (Unix seconds), to swap into the serving snapshot; `force` even
    /// without new samples (estimates age all the same).
    pub fn publish(&self, now: u64, force: bool) -> Option<Arc<LatencyTable>> {
        let mut inner = self.inner.lock().expect("latency map lock");
        if !(inner.unpublished || force) {
            return None;
        }
        inner.unpublished = false;
        let table = inner.map.publish(now);
        self.metrics
            .rtt()
            .networks
            .store(table.networks() as u64, Relaxed);
        Some(Arc::new(table))
    }

    /// Saves the map if samples came since the last save: (networks, bytes in memory) when
    /// it did. The encoding is made under the lock, the write without it.
    pub fn save(&self) -> Result<Option<(usize, usize)>, store::StoreError> {
        let (bytes, size) = {
            let mut inner = self.inner.lock().expect("latency map lock");
            if !inner.unsaved {
                return Ok(None);
            }
            inner.unsaved = false;
            let size = (inner.map.networks(), inner.map.bytes());
            (store::encode(&inner.map), size)
        };
        store::write(&self.state_dir, &bytes).map(|()| Some(size))
    }
}
