//! The `[health]` table of a zone file (zone defaults) and of a region (overrides): parsed,
//! merged and checked into a [`CheckSpec`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::check::{CheckKind, CheckSpec, HttpCheck};

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_RISE: u32 = 2;
pub const DEFAULT_FALL: u32 = 3;
pub const DEFAULT_DEGRADATION_LIMIT_MS: f64 = 100.0;
pub const DEFAULT_HYSTERESIS_MS: f64 = 10.0;
/// Shortest probe interval accepted: faster probing loads the targets for little gain.
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// Every key is optional: a region's table overrides the zone's, which overrides defaults.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HealthToml {
    check: Option<String>,
    port: Option<i64>,
    path: Option<String>,
    method: Option<String>,
    host: Option<String>,
    expect: Option<Vec<StatusRange>>,
    body: Option<String>,
    tls_verify: Option<bool>,
    ca_file: Option<String>,
    interval: Option<Secs>,
    timeout: Option<Secs>,
    rise: Option<i64>,
    fall: Option<i64>,
    start: Option<String>,
    min_healthy: Option<i64>,
    degradation_limit: Option<f64>,
    hysteresis: Option<f64>,
}

/// A duration: a number of seconds (`5`, `0.5`) or a string with a unit (`"500ms"`, `"2s"`).
#[derive(Debug, Clone, Copy)]
struct Secs(Duration);

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Secs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"seconds (5, 0.5) or a duration string ("500ms", "2s", "1m")"#)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secs, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Secs, E> {
                Duration::try_from_secs_f64(v)
                    .map(Secs)
                    .map_err(|_| E::custom(format!("bad duration {v}: seconds must be >= 0")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secs, E> {
                let (num, scale) = if let Some(n) = v.strip_suffix("ms") {
                    (n, 0.001)
                } else if let Some(n) = v.strip_suffix('s') {
                    (n, 1.0)
                } else if let Some(n) = v.strip_suffix('m') {
                    (n, 60.0)
                } else {
                    return Err(E::custom(format!(
                        "bad duration {v:?}: use a unit: ms, s or m"
                    )));
                };
                let n: f64 = num
                    .trim()
                    .parse()
                    .map_err(|_| E::custom(format!("bad duration {v:?}")))?;
                self.visit_f64(n * scale)
            }
        }
        d.deserialize_any(V)
    }
}

/// `200` or `"200-299"`.
#[derive(Debug, Clone, Copy)]
struct StatusRange(u16, u16);

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StatusRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"an HTTP status (200) or a range ("200-299")"#)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusRange, E> {
                let code = status(v).ok_or_else(|| E::custom(format!("bad HTTP status {v}")))?;
                Ok(StatusRange(code, code))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusRange, E> {
                let bad =
                    || E::custom(format!("bad status range {v:?}: expected like \"200-299\""));
                let (lo, hi) = v.split_once('-').ok_or_else(bad)?;
                let lo = lo.trim().parse().ok().and_then(status).ok_or_else(bad)?;
                let hi = hi.trim().parse().ok().and_then(status).ok_or_else(bad)?;
                if lo > hi {
                    return Err(bad());
                }
                Ok(StatusRange(lo, hi))
            }
        }
        d.deserialize_any(V)
    }
}

fn status(v: i64) -> Option<u16> {
    (100..=599).contains(&v).then_some(v as u16)
}

impl HealthToml {
    /// `self` with every key `over` sets taken from `over`.
    pub fn overlay(&self, over: &HealthToml) -> HealthToml {
        macro_rules! pick {
            ($($f:ident),*) => { HealthToml { $($f: over.$f.clone().or_else(|| self.$f.clone()),)* } };
        }
        pick!(
            check,
            port,
            path,
            method,
            host,
            expect,
            body,
            tls_verify,
            ca_file,
            interval,
            timeout,
            rise,
            fall,
            start,
            min_healthy,
            degradation_limit,
            hysteresis
        )
    }

    /// The check this table describes; `base` is the zone file's directory (for `ca-file`),
    /// `endpoints` the region's endpoint count. Errors are messages for the table's line.
    pub fn resolve(&self, base: &Path, endpoints: usize) -> Result<CheckSpec, Vec<String>> {
        self.resolve_with(base, endpoints, true)
    }

    /// The mistakes of a zone's defaults table on its own: a key that every region may set
    /// (a tcp check's port) is not required there.
    pub fn defaults_errors(&self, base: &Path) -> Vec<String> {
        self.resolve_with(base, usize::MAX, false)
            .err()
            .unwrap_or_default()
    }

    fn resolve_with(
        &self,
        base: &Path,
        endpoints: usize,
        complete: bool,
    ) -> Result<CheckSpec, Vec<String>> {
        let mut errors = Vec::new();
        let mut count = |key: &str, v: Option<i64>, default: u32, min: i64, max: i64| match v {
            None => default,
            Some(n) if (min..=max).contains(&n) => n as u32,
            Some(n) => {
                errors.push(format!("{key} {n} is not in {min}..={max}"));
                default
            }
        };
        let rise = count("rise", self.rise, DEFAULT_RISE, 1, 1000);
        let fall = count("fall", self.fall, DEFAULT_FALL, 1, 1000);
        let min_healthy = count(
            "min-healthy",
            self.min_healthy,
            1,
            1,
            endpoints.clamp(1, 100_000) as i64,
        ) as usize;
        let interval = self.interval.map_or(DEFAULT_INTERVAL, |s| s.0);
        let timeout = self.timeout.map_or(DEFAULT_TIMEOUT.min(interval), |s| s.0);
        if interval < MIN_INTERVAL {
            errors.push(format!(
                "interval {interval:?} is below the minimum {MIN_INTERVAL:?}"
            ));
        }
        if timeout.is_zero() || timeout > interval {
            errors.push(format!(
                "timeout {timeout:?} must be above 0 and at most the interval {interval:?}"
            ));
        }
        let start_up = match self.start.as_deref() {
            None | Some("up") => true,
            Some("down") => false,
            Some(other) => {
                errors.push(format!("start {other:?} must be \"up\" or \"down\""));
                true
            }
        };
        let degradation_limit_ms = self
            .degradation_limit
            .unwrap_or(DEFAULT_DEGRADATION_LIMIT_MS);
        // The default margin shrinks with a small limit, so that any positive limit is valid.
        let hysteresis_ms = self
            .hysteresis
            .unwrap_or(DEFAULT_HYSTERESIS_MS.min(degradation_limit_ms / 2.0));
        if degradation_limit_ms.is_nan() || degradation_limit_ms <= 0.0 {
            errors.push(format!(
                "degradation-limit {degradation_limit_ms} must be above 0 (ms)"
            ));
        } else if !(0.0..degradation_limit_ms).contains(&hysteresis_ms) {
            errors.push(format!(
                "hysteresis {hysteresis_ms} must be at least 0 and below degradation-limit {degradation_limit_ms} (ms)"
            ));
        }
        let port = |default: u16, errors: &mut Vec<String>| match self.port {
            None => Some(default),
            Some(p) if (1..=65535).contains(&p) => Some(p as u16),
            Some(p) => {
                errors.push(format!("port {p} is not in 1..=65535"));
                None
            }
        };
        let kind = match self.check.as_deref() {
            None | Some("none") => CheckKind::None,
            Some("tcp") => match self.port {
                None => {
                    if complete {
                        errors.push("check \"tcp\" needs a port".into());
                    }
                    CheckKind::None
                }
                Some(_) => {
                    port(0, &mut errors).map_or(CheckKind::None, |port| CheckKind::Tcp { port })
                }
            },
            Some(scheme @ ("http" | "https")) => {
                let https = scheme == "https";
                let port = port(if https { 443 } else { 80 }, &mut errors).unwrap_or(0);
                self.http(https, port, base, &mut errors)
            }
            Some(other) => {
                errors.push(format!(
                    "check {other:?} must be one of \"http\", \"https\", \"tcp\", \"none\""
                ));
                CheckKind::None
            }
        };
        if errors.is_empty() {
            Ok(CheckSpec {
                kind,
                interval,
                timeout,
                rise,
                fall,
                start_up,
                min_healthy,
                degradation_limit_ms,
                hysteresis_ms,
            })
        } else {
            Err(errors)
        }
    }

    fn http(&self, https: bool, port: u16, base: &Path, errors: &mut Vec<String>) -> CheckKind {
        let method = self.method.clone().unwrap_or_else(|| "GET".into());
        if reqwest::Method::from_bytes(method.as_bytes()).is_err() {
            errors.push(format!("method {method:?} is not an HTTP method"));
        }
        let path = self.path.clone().unwrap_or_else(|| "/".into());
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace()) {
            errors.push(format!(
                "path {path:?} must start with '/' and hold no spaces"
            ));
        }
        if let Some(host) = &self.host
            && reqwest::Url::parse(&format!("http://{host}/")).map_or(true, |u| {
                u.host_str() != Some(host.to_ascii_lowercase().as_str())
            })
        {
            errors.push(format!(
                "host {host:?} is not a host name (a port goes in `port`)"
            ));
        }
        let ca_file = self.ca_file.as_ref().map(|f| base.join(f));
        if let Some(f) = &ca_file
            && let Err(e) = std::fs::metadata(f)
        {
            errors.push(format!("ca-file {}: {e}", f.display()));
        }
        if !https && (self.ca_file.is_some() || self.tls_verify.is_some()) {
            errors.push("ca-file and tls-verify apply to check \"https\" only".into());
        }
        let expect = match &self.expect {
            Some(list) if list.is_empty() => {
                errors.push("expect is empty: list statuses such as [200] or [\"200-299\"]".into());
                vec![200..=399]
            }
            Some(list) => list.iter().map(|r| r.0..=r.1).collect(),
            None => vec![200..=399],
        };
        if self.body.as_deref() == Some("") {
            errors.push("body is empty: give the text the response must contain".into());
        }
        CheckKind::Http(HttpCheck {
            https,
            port,
            method,
            path,
            host: self.host.clone(),
            expect,
            body: self.body.clone(),
            tls_verify: self.tls_verify.unwrap_or(true),
            ca_file,
        })
    }
}

/// The key an error message is about: messages start with it.
pub fn error_key(message: &str) -> &str {
    message.split_whitespace().next().unwrap_or("")
}

impl HealthToml {
    /// Whether this table sets `key` (as written in the file).
    pub fn sets(&self, key: &str) -> bool {
        match key {
            "check" => self.check.is_some(),
            "port" => self.port.is_some(),
            "path" => self.path.is_some(),
            "method" => self.method.is_some(),
            "host" => self.host.is_some(),
            "expect" => self.expect.is_some(),
            "body" => self.body.is_some(),
            "tls-verify" => self.tls_verify.is_some(),
            "ca-file" => self.ca_file.is_some(),
            "interval" => self.interval.is_some(),
            "timeout" => self.timeout.is_some(),
            "rise" => self.rise.is_some(),
            "fall" => self.fall.is_some(),
            "start" => self.start.is_some(),
            "min-healthy" => self.min_healthy.is_some(),
            "degradation-limit" => self.degradation_limit.is_some(),
            "hysteresis" => self.hysteresis.is_some(),
            _ => false,
        }
    }
}

/// Where an endpoint's probes connect: its `check-address` (an address, or address:port), or
/// its own address; the port comes from the check unless given.
pub fn target(
    spec: &CheckSpec,
    address: IpAddr,
    check_address: Option<&str>,
) -> Result<Option<SocketAddr>, String> {
    // Checked even when nothing is probed, so that turning probes on cannot reveal it later.
    let given = match check_address {
        None => None,
        Some(s) => Some(
            s.parse::<SocketAddr>()
                .map(|a| (a.ip(), Some(a.port())))
                .or_else(|_| s.parse::<IpAddr>().map(|ip| (ip, None)))
                .map_err(|_| {
                    format!("bad check-address {s:?}: expected an address or address:port")
                })?,
        ),
    };
    let Some(port) = spec.kind.port() else {
        return Ok(None);
    };
    Ok(Some(match given {
        None => SocketAddr::new(address, port),
        Some((ip, p)) => SocketAddr::new(ip, p.unwrap_or(port)),
    }))
}
