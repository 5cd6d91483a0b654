//! The health check of each region, as its zone file sets it: zone defaults merged with the
//! region's own `[health]` table, and where each endpoint's probes connect.
//!
//! The one rule: these are zone configuration, so they live with the zone model; `health`
//! imports them from here (downward), and nothing in `zone` imports `health`.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

/// How the observations of several vantage points (the nodes of a cluster) decide whether
/// an endpoint is up.
///
/// Why majority by default: with one vantage point black-holed (its uplink down, a filter
/// dropping its probes), `all` fails the endpoint over on that one blind word, which is what
/// a cluster is there to prevent; `any` survives it too but keeps a dead endpoint up as long
/// as one vantage point is fooled (a captive proxy, a stale route), and a fraction below one
/// half behaves like `any` for three nodes. A strict majority seeing it down is the smallest
/// rule that ignores one wrong vantage point out of three either way. A tie (two nodes, one
/// each way) stays up, as Route 53 leans: failing over on half the evidence moves traffic
/// for a fault that may be the observer's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quorum {
    /// Up while any vantage point sees it up.
    Any,
    /// Down only when a strict majority sees it down.
    Majority,
    /// Up only while every vantage point sees it up.
    All,
    /// Up when more than this share of the vantage points see it up (Route 53: 0.18).
    Fraction(f64),
}

impl Quorum {
    /// The rule named `name`: `"majority"`, `"any"` or `"all"`.
    pub fn named(name: &str) -> Option<Quorum> {
        match name {
            "majority" => Some(Quorum::Majority),
            "any" => Some(Quorum::Any),
            "all" => Some(Quorum::All),
            _ => None,
        }
    }

    /// "Up when more than `f` of the vantage points see it up", for `f` strictly between 0
    /// and 1.
    pub fn fraction(f: f64) -> Option<Quorum> {
        (f > 0.0 && f < 1.0).then_some(Quorum::Fraction(f))
    }

    /// Whether an endpoint is up when `up` of `total` vantage points (at least one) see it up.
    pub fn up(self, up: usize, total: usize) -> bool {
        match self {
            Quorum::Any => up > 0,
            Quorum::Majority => 2 * (total - up) <= total,
            Quorum::All => up == total,
            Quorum::Fraction(f) => up as f64 > f * total as f64,
        }
    }
}

/// How one region's endpoints are checked, after zone defaults and region overrides merge.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that bring a down endpoint up.
    pub rise: u32,
    /// Consecutive failures that take an up endpoint down.
    pub fall: u32,
    /// State before the first results arrive.
    pub start_up: bool,
    /// Up endpoints needed for the region to be up.
    pub min_healthy: usize,
    /// Degradation past which the region is skipped while a better one is up, in ms.
    pub degradation_limit_ms: f64,
    /// Change in degradation that steering notices, in ms: smaller moves are noise.
    pub hysteresis_ms: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// Not probed: always up.
    None,
    /// A TCP connect to this port.
    Tcp {
        port: u16,
    },
    Http(HttpCheck),
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    pub https: bool,
    pub port: u16,
    pub method: String,
    pub path: String,
    /// Host header and TLS server name; the connection still goes to the endpoint.
    pub host: Option<String>,
    pub expect: Vec<RangeInclusive<u16>>,
    pub body: Option<String>,
    pub tls_verify: bool,
    /// PEM file of the CA (or CAs) that alone is trusted for this check.
    pub ca_file: Option<PathBuf>,
}

impl CheckKind {
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::None => "none",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Http(h) if h.https => "https",
            CheckKind::Http(_) => "http",
        }
    }

    /// The port probes connect to, if any.
    pub fn port(&self) -> Option<u16> {
        match self {
            CheckKind::None => None,
            CheckKind::Tcp { port } => Some(*port),
            CheckKind::Http(h) => Some(h.port),
        }
    }
}

/// The checks of one region: its spec and, per endpoint, where probes connect.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionCheck {
    pub spec: CheckSpec,
    /// One per endpoint of the region, in endpoint order; `None` when not probed.
    pub targets: Vec<Option<SocketAddr>>,
}
