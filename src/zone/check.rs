//! The health check of each region, as its zone file sets it: zone defaults merged with the
//! region's own `[health]` table, and where each endpoint's probes connect.
//!
//! The one rule: these are zone configuration, so they live with the zone model; `health`
//! imports them from here (downward), and nothing in `zone` imports `health`.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

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
