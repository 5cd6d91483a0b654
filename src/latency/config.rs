//! `[latency]` in meridian.toml: who may post samples, and how they are aggregated.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ingest::{DEFAULT_BURST, DEFAULT_MAX_AGE_SECS, DEFAULT_RATE};
use super::{DEFAULT_HALF_LIFE_SECS, Net, Settings};
use ipnet::IpNet;

/// Default seconds between publications of the map to steering: a new estimate steers within
/// half a minute, while publications (each sorts the networks and starts the DNS answer
/// caches afresh) stay rare.
pub const DEFAULT_PUBLISH_SECS: u64 = 30;
/// Default seconds between saves of the map to the state directory.
pub const DEFAULT_SAVE_SECS: u64 = 60;
/// Default seconds between shares of this node's map with the cluster (with `[cluster]`):
/// every share rewrites the whole map in etcd (up to 4 MiB), which keeps every revision
/// until it is compacted; five minutes is a fraction of the hour's half-life, and samples
/// posted to one node steer the others within it.
pub const DEFAULT_SHARE_SECS: u64 = 300;
/// Default weight of a minute of this node's probes as samples of its `probe-networks`: a
/// tenth of one client sample. With the default hour's half-life a minute's weight of 0.1
/// adds up to about 9 effective samples (0.1 x 60 / ln 2), under `min-samples`: probes alone
/// never make a network steer, they move the estimate of one that clients measure. One
/// nameserver's path to a region is one path; a network's clients take many.
pub const DEFAULT_PROBE_WEIGHT: f64 = 0.1;

#[derive(Debug, Clone, PartialEq)]
pub struct LatencyConfig {
    pub settings: Settings,
    /// `name:secret` lines: one token per feed; the name is the feed's source. None: the
    /// endpoint takes nothing.
    pub token_file: Option<PathBuf>,
    pub max_age_secs: u64,
    /// Samples per second per source, on average, and at once.
    pub rate: f64,
    pub burst: f64,
    pub publish_secs: u64,
    pub save_secs: u64,
    pub share_secs: u64,
    /// The client networks (/24, /48) this node's probes stand for: its own.
    pub probe_networks: Vec<Net>,
    /// What a minute of probing weighs, in samples.
    pub probe_weight: f64,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        LatencyConfig {
            settings: Settings::default(),
            token_file: None,
            max_age_secs: DEFAULT_MAX_AGE_SECS,
            rate: DEFAULT_RATE,
            burst: DEFAULT_BURST,
            publish_secs: DEFAULT_PUBLISH_SECS,
            save_secs: DEFAULT_SAVE_SECS,
            share_secs: DEFAULT_SHARE_SECS,
            probe_networks: Vec::new(),
            probe_weight: DEFAULT_PROBE_WEIGHT,
        }
    }
}

/// The keys of `[latency]`, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LatencyFile {
    token_file: Option<PathBuf>,
    half_life_secs: Option<u64>,
    min_samples: Option<f64>,
    prior_weight: Option<f64>,
    outlier_factor: Option<f64>,
    max_age_secs: Option<u64>,
    rate: Option<f64>,
    burst: Option<f64>,
    publish_secs: Option<u64>,
    save_secs: Option<u64>,
    share_secs: Option<u64>,
    probe_networks: Option<Vec<String>>,
    probe_weight: Option<f64>,
}

impl LatencyFile {
    /// The section checked, a relative token file taken from `base` (the file's directory);
    /// or every problem as (key, message).
    pub fn check(self, base: &Path) -> Result<LatencyConfig, Vec<(&'static str, String)>> {
        let d = LatencyConfig::default();
        let mut problems = Vec::new();
        let mut positive = |key: &'static str, v: Option<f64>, default: f64, min: f64| {
            let v = v.unwrap_or(default);
            if !(v.is_finite() && v >= min) {
                problems.push((key, format!("{key} must be at least {min}, not {v}")));
            }
            v
        };
        let half_life = positive(
            "half-life-secs",
            self.half_life_secs.map(|v| v as f64),
            DEFAULT_HALF_LIFE_SECS as f64,
            1.0,
        );
        let min_samples = positive("min-samples", self.min_samples, d.settings.min_samples, 1.0);
        let prior_weight = positive(
            "prior-weight",
            self.prior_weight,
            d.settings.prior_weight,
            0.0,
        );
        let outlier = positive(
            "outlier-factor",
            self.outlier_factor,
            d.settings.outlier_factor,
            1.01,
        );
        let max_age = positive(
            "max-age-secs",
            self.max_age_secs.map(|v| v as f64),
            d.max_age_secs as f64,
            1.0,
        );
        let rate = positive("rate", self.rate, d.rate, 0.001);
        let burst = positive("burst", self.burst, d.burst, 1.0);
        let publish = positive(
            "publish-secs",
            self.publish_secs.map(|v| v as f64),
            d.publish_secs as f64,
            1.0,
        );
        let save = positive(
            "save-secs",
            self.save_secs.map(|v| v as f64),
            d.save_secs as f64,
            1.0,
        );
        let share = positive(
            "share-secs",
            self.share_secs.map(|v| v as f64),
            d.share_secs as f64,
            1.0,
        );
        let probe_weight = positive("probe-weight", self.probe_weight, DEFAULT_PROBE_WEIGHT, 0.0);
        let mut probe_networks = Vec::new();
        for text in self.probe_networks.unwrap_or_default() {
            match text.parse::<IpNet>().map(|n| (n, Net::within(n.trunc()))) {
                Ok((n, Some(net))) if !crate::geo::is_special(n) => probe_networks.push(net),
                Ok((n, Some(_))) => problems.push((
                    "probe-networks",
                    format!("probe-networks: {n} is special-purpose space, not a client network"),
                )),
                Ok((n, None)) => problems.push((
                    "probe-networks",
                    format!(
                        "probe-networks: {n} is wider than a client network (/{} for IPv4, /{} for IPv6)",
                        super::V4_PREFIX,
                        super::V6_PREFIX
                    ),
                )),
                Err(_) => problems.push((
                    "probe-networks",
                    format!("probe-networks: {text:?} is not a network (198.51.100.0/24)"),
                )),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(LatencyConfig {
            settings: Settings {
                half_life_secs: half_life,
                min_samples,
                prior_weight,
                outlier_factor: outlier,
            },
            token_file: self.token_file.map(|p| base.join(p)),
            max_age_secs: max_age as u64,
            rate,
            burst,
            publish_secs: publish as u64,
            save_secs: save as u64,
            share_secs: share as u64,
            probe_networks,
            probe_weight,
        })
    }
}
