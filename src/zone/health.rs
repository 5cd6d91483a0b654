//! The `[health]` table of a zone file (zone defaults) and of a region (overrides): parsed,
//! merged and checked into a [`CheckSpec`].
//!
//! The one rule: every value keeps its span ([`Spanned`]) through the merge, so a mistake is
//! reported on the line of the key it is about, in whichever table (the zone's or the
//! region's) wrote it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;

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
    check: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    path: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    expect: Option<Spanned<Vec<StatusRange>>>,
    body: Option<Spanned<String>>,
    tls_verify: Option<Spanned<bool>>,
    ca_file: Option<Spanned<String>>,
    interval: Option<Spanned<Secs>>,
    timeout: Option<Spanned<Secs>>,
    rise: Option<Spanned<i64>>,
    fall: Option<Spanned<i64>>,
    start: Option<Spanned<String>>,
    min_healthy: Option<Spanned<i64>>,
    degradation_limit: Option<Spanned<f64>>,
    hysteresis: Option<Spanned<f64>>,
}

/// A mistake in a health table, or in an endpoint's `check-address`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HealthError {
    #[error("{key} {value} is not in {min}..={max}")]
    OutOfRange {
        key: &'static str,
        value: i64,
        min: i64,
        max: i64,
    },
    #[error("interval {0:?} is below the minimum {MIN_INTERVAL:?}")]
    IntervalTooShort(Duration),
    #[error("timeout {timeout:?} must be above 0 and at most the interval {interval:?}")]
    Timeout {
        timeout: Duration,
        interval: Duration,
    },
    #[error("start {0:?} must be \"up\" or \"down\"")]
    Start(String),
    #[error("degradation-limit {0} must be above 0 (ms)")]
    DegradationLimit(f64),
    #[error("hysteresis {hysteresis} must be at least 0 and below degradation-limit {limit} (ms)")]
    Hysteresis { hysteresis: f64, limit: f64 },
    #[error("check \"tcp\" needs a port")]
    TcpNeedsPort,
    #[error("check {0:?} must be one of \"http\", \"https\", \"tcp\", \"none\"")]
    Check(String),
    #[error("method {0:?} is not an HTTP method")]
    Method(String),
    #[error("path {0:?} must start with '/' and hold no spaces")]
    Path(String),
    #[error("host {0:?} is not a host name (a port goes in `port`)")]
    Host(String),
    #[error("ca-file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error("ca-file and tls-verify apply to check \"https\" only")]
    HttpsOnly,
    #[error("expect is empty: list statuses such as [200] or [\"200-299\"]")]
    EmptyExpect,
    #[error("body is empty: give the text the response must contain")]
    EmptyBody,
    #[error("bad check-address {0:?}: expected an address or address:port")]
    CheckAddress(String),
}

/// A mistake and where the key it is about is written: `None` when no table writes it (its
/// default does not fit the keys that are written).
#[derive(Debug, Clone, PartialEq)]
pub struct Mistake {
    pub error: HealthError,
    pub span: Option<Range<usize>>,
}

/// Where `value` is written, if it is.
fn at<T>(value: &Option<Spanned<T>>) -> Option<Range<usize>> {
    value.as_ref().map(Spanned::span)
}

/// `key`'s value when written and in `min..=max`; a written value outside is a mistake.
fn in_range(
    key: &'static str,
    value: &Option<Spanned<i64>>,
    min: i64,
    max: i64,
    mistakes: &mut Vec<Mistake>,
) -> Option<i64> {
    let value = value.as_ref()?;
    let n = *value.get_ref();
    if (min..=max).contains(&n) {
        return Some(n);
    }
    mistakes.push(Mistake {
        error: HealthError::OutOfRange {
            key,
            value: n,
            min,
            max,
        },
        span: Some(value.span()),
    });
    None
}

/// The value, if written.
fn val<T: Clone>(value: &Option<Spanned<T>>) -> Option<T> {
    value.as_ref().map(|v| v.get_ref().clone())
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
    /// `self` with every key `over` sets taken from `over`, span and all: a mistake then
    /// points at the table that wrote the key.
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
    /// `endpoints` the region's endpoint count.
    pub fn resolve(&self, base: &Path, endpoints: usize) -> Result<CheckSpec, Vec<Mistake>> {
        self.resolve_with(base, endpoints, true)
    }

    /// The mistakes of a zone's defaults table on its own: a key that every region may set
    /// (a tcp check's port) is not required there.
    pub fn defaults_mistakes(&self, base: &Path) -> Vec<Mistake> {
        self.resolve_with(base, usize::MAX, false)
            .err()
            .unwrap_or_default()
    }

    fn resolve_with(
        &self,
        base: &Path,
        endpoints: usize,
        complete: bool,
    ) -> Result<CheckSpec, Vec<Mistake>> {
        let mut mistakes = Vec::new();
        let rise =
            in_range("rise", &self.rise, 1, 1000, &mut mistakes).map_or(DEFAULT_RISE, |n| n as u32);
        let fall =
            in_range("fall", &self.fall, 1, 1000, &mut mistakes).map_or(DEFAULT_FALL, |n| n as u32);
        let most = endpoints.clamp(1, 100_000) as i64;
        let min_healthy = in_range("min-healthy", &self.min_healthy, 1, most, &mut mistakes)
            .map_or(1, |n| n as usize);
        let mut wrong = |error, span| mistakes.push(Mistake { error, span });
        let interval = val(&self.interval).map_or(DEFAULT_INTERVAL, |s| s.0);
        let timeout = val(&self.timeout).map_or(DEFAULT_TIMEOUT.min(interval), |s| s.0);
        if interval < MIN_INTERVAL {
            wrong(HealthError::IntervalTooShort(interval), at(&self.interval));
        }
        if timeout.is_zero() || timeout > interval {
            // An unwritten timeout is the interval's doing: its default follows the interval.
            wrong(
                HealthError::Timeout { timeout, interval },
                at(&self.timeout).or(at(&self.interval)),
            );
        }
        let start_up = match val(&self.start).as_deref() {
            None | Some("up") => true,
            Some("down") => false,
            Some(other) => {
                wrong(HealthError::Start(other.into()), at(&self.start));
                true
            }
        };
        let degradation_limit_ms =
            val(&self.degradation_limit).unwrap_or(DEFAULT_DEGRADATION_LIMIT_MS);
        // The default margin shrinks with a small limit, so that any positive limit is valid.
        let hysteresis_ms =
            val(&self.hysteresis).unwrap_or(DEFAULT_HYSTERESIS_MS.min(degradation_limit_ms / 2.0));
        if degradation_limit_ms.is_nan() || degradation_limit_ms <= 0.0 {
            wrong(
                HealthError::DegradationLimit(degradation_limit_ms),
                at(&self.degradation_limit),
            );
        } else if !(0.0..degradation_limit_ms).contains(&hysteresis_ms) {
            wrong(
                HealthError::Hysteresis {
                    hysteresis: hysteresis_ms,
                    limit: degradation_limit_ms,
                },
                at(&self.hysteresis).or(at(&self.degradation_limit)),
            );
        }
        let port = |default: u16, mistakes: &mut Vec<Mistake>| match &self.port {
            None => Some(default),
            Some(_) => in_range("port", &self.port, 1, 65535, mistakes).map(|p| p as u16),
        };
        let kind = match val(&self.check).as_deref() {
            None | Some("none") => CheckKind::None,
            Some("tcp") => match self.port {
                None => {
                    if complete {
                        mistakes.push(Mistake {
                            error: HealthError::TcpNeedsPort,
                            span: at(&self.check),
                        });
                    }
                    CheckKind::None
                }
                Some(_) => {
                    port(0, &mut mistakes).map_or(CheckKind::None, |port| CheckKind::Tcp { port })
                }
            },
            Some(scheme @ ("http" | "https")) => {
                let https = scheme == "https";
                let port = port(if https { 443 } else { 80 }, &mut mistakes).unwrap_or(0);
                self.http(https, port, base, &mut mistakes)
            }
            Some(other) => {
                mistakes.push(Mistake {
                    error: HealthError::Check(other.into()),
                    span: at(&self.check),
                });
                CheckKind::None
            }
        };
        if mistakes.is_empty() {
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
            Err(mistakes)
        }
    }

    fn http(&self, https: bool, port: u16, base: &Path, mistakes: &mut Vec<Mistake>) -> CheckKind {
        let mut wrong = |error, span| mistakes.push(Mistake { error, span });
        let method = val(&self.method).unwrap_or_else(|| "GET".into());
        if reqwest::Method::from_bytes(method.as_bytes()).is_err() {
            wrong(HealthError::Method(method.clone()), at(&self.method));
        }
        let path = val(&self.path).unwrap_or_else(|| "/".into());
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace()) {
            wrong(HealthError::Path(path.clone()), at(&self.path));
        }
        let host = val(&self.host);
        if let Some(host) = &host
            && reqwest::Url::parse(&format!("http://{host}/")).map_or(true, |u| {
                u.host_str() != Some(host.to_ascii_lowercase().as_str())
            })
        {
            wrong(HealthError::Host(host.clone()), at(&self.host));
        }
        let ca_file = val(&self.ca_file).map(|f| base.join(f));
        // Opened (non-blocking) and judged now, so that a FIFO or a directory is a mistake at
        // its line instead of a probe that waits or fails later.
        if let Some(f) = &ca_file
            && let Err(e) = crate::files::open_regular(f)
        {
            wrong(
                HealthError::CaFile {
                    path: f.clone(),
                    reason: e.to_string(),
                },
                at(&self.ca_file),
            );
        }
        if !https && (self.ca_file.is_some() || self.tls_verify.is_some()) {
            wrong(
                HealthError::HttpsOnly,
                at(&self.ca_file).or(at(&self.tls_verify)),
            );
        }
        let expect = match &self.expect {
            Some(list) if list.get_ref().is_empty() => {
                wrong(HealthError::EmptyExpect, Some(list.span()));
                vec![200..=399]
            }
            Some(list) => list.get_ref().iter().map(|r| r.0..=r.1).collect(),
            None => vec![200..=399],
        };
        let body = val(&self.body);
        if body.as_deref() == Some("") {
            wrong(HealthError::EmptyBody, at(&self.body));
        }
        CheckKind::Http(HttpCheck {
            https,
            port,
            method,
            path,
            host,
            expect,
            body,
            tls_verify: val(&self.tls_verify).unwrap_or(true),
            ca_file,
        })
    }
}

/// Where an endpoint's probes connect: its `check-address` (an address, or address:port), or
/// its own address; the port comes from the check unless given.
pub fn target(
    spec: &CheckSpec,
    address: IpAddr,
    check_address: Option<&str>,
) -> Result<Option<SocketAddr>, HealthError> {
    // Checked even when nothing is probed, so that turning probes on cannot reveal it later.
    let given = match check_address {
        None => None,
        Some(s) => Some(
            s.parse::<SocketAddr>()
                .map(|a| (a.ip(), Some(a.port())))
                .or_else(|_| s.parse::<IpAddr>().map(|ip| (ip, None)))
                .map_err(|_| HealthError::CheckAddress(s.into()))?,
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
