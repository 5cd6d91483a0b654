//! Samples as feeds post them: NDJSON, one sample a line, each line checked on its own, so
//! that a bad line costs only itself and says why ([`Rejected`]), and every drop is counted
//! by its [`Reason`].
//!
//! A line: `{"client": "198.51.100.0/24", "region": "eu-west", "rtt_ms": 23.5,
//! "kind": "tcp", "time": 1764540000, "source": "nginx-eu"}`. `client` is an address or a
//! network no wider than a client network (/24, /48); a browser beacon leaves it out and the
//! connection's address is taken. `time` is Unix seconds. `source`, when given, must be the
//! name of the token the batch came with: a feed speaks only for itself. An aggregate (the
//! geometric mean of a network's connections over a minute, say) adds `"count": n`, and
//! weighs as much as `n` samples (at most [`MAX_COUNT`]).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use super::Net;

/// Shortest RTT taken: 0.1 ms is a client in the same building as the region.
pub const MIN_RTT_MS: f64 = 0.1;
/// Longest RTT taken: beyond 30 s a TCP handshake has long been retried.
pub const MAX_RTT_MS: f64 = 30_000.0;
/// Default oldest sample taken, in seconds: two half-lives, after which a sample weighs a
/// quarter; an older one is a shipper replaying a backlog.
pub const DEFAULT_MAX_AGE_SECS: u64 = 7200;
/// Samples from up to this far in the future are taken (clock skew of a feed's host).
pub const MAX_FUTURE_SECS: f64 = 300.0;
/// Most connections one aggregate line may stand for: a line weighs as much as this many
/// samples at most, so one line of a feed cannot outweigh an hour of others.
pub const MAX_COUNT: u32 = 1000;
/// Default samples per second a source may post, on average.
pub const DEFAULT_RATE: f64 = 2000.0;
/// Default burst: a minute's aggregate of a busy frontend in one batch.
pub const DEFAULT_BURST: f64 = 20_000.0;

/// Why a line was dropped: the label of `meridian_rtt_samples_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    Malformed,
    BadClient,
    Unroutable,
    UnknownRegion,
    UnknownKind,
    AbsurdRtt,
    BadCount,
    Stale,
    Future,
    WrongSource,
    RateLimited,
}

impl Reason {
    pub const ALL: [Reason; 11] = [
        Reason::Malformed,
        Reason::BadClient,
        Reason::Unroutable,
        Reason::UnknownRegion,
        Reason::UnknownKind,
        Reason::AbsurdRtt,
        Reason::BadCount,
        Reason::Stale,
        Reason::Future,
        Reason::WrongSource,
        Reason::RateLimited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::BadClient => "bad-client",
            Reason::Unroutable => "unroutable",
            Reason::UnknownRegion => "unknown-region",
            Reason::UnknownKind => "unknown-kind",
            Reason::AbsurdRtt => "absurd-rtt",
            Reason::BadCount => "bad-count",
            Reason::Stale => "stale",
            Reason::Future => "future",
            Reason::WrongSource => "wrong-source",
            Reason::RateLimited => "rate-limited",
        }
    }

    pub fn index(self) -> usize {
        Reason::ALL
            .iter()
            .position(|&r| r == self)
            .expect("every reason is in ALL")
    }
}

/// A dropped line: its number (from 1), why, and a message naming the value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rejected {
    pub line: usize,
    pub reason: Reason,
    pub error: String,
}

/// What was measured, as the sender timed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The kernel's smoothed TCP RTT of a connection (nginx `$tcpinfo_rtt`).
    Tcp,
    /// Time to first byte of a tiny object (Resource Timing): RTT plus the server's time.
    Ttfb,
    /// ICMP or UDP echo.
    Ping,
}

/// A sample that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub client: IpAddr,
    pub net: Net,
    pub region: String,
    pub rtt_ms: f64,
    pub kind: Kind,
    /// Unix seconds.
    pub time: u64,
    /// Connections the line stands for (an aggregate's; 1 for a single sample).
    pub count: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    client: Option<String>,
    region: String,
    rtt_ms: f64,
    kind: String,
    time: f64,
    source: Option<String>,
    count: Option<u32>,
}

/// What lines are checked against.
pub struct Checker<'a> {
    /// Region names of every zone.
    pub regions: &'a [String],
    /// The token's name: the source the batch speaks for.
    pub source: &'a str,
    /// The connection's address, the client of lines without one.
    pub peer: Option<IpAddr>,
    /// Unix seconds.
    pub now: f64,
    pub max_age_secs: f64,
    /// Whether an address is special-purpose space, where no client is.
    pub special: &'a dyn Fn(IpNet) -> bool,
}

impl Checker<'_> {
    /// The sample on line `number`, or why it is dropped.
    pub fn check(&self, number: usize, text: &str) -> Result<Sample, Rejected> {
        let reject = |reason: Reason, error: String| Rejected {
            line: number,
            reason,
            error,
        };
        let line: Line = serde_json::from_str(text)
            .map_err(|e| reject(Reason::Malformed, format!("not a sample: {e}")))?;
        if let Some(source) = &line.source
            && source != self.source
        {
            return Err(reject(
                Reason::WrongSource,
                format!("source {source:?} is not this token's ({:?})", self.source),
            ));
        }
        let client: IpNet = match (&line.client, self.peer) {
            (Some(c), _) => match c.parse::<IpNet>() {
                Ok(n) => n.trunc(),
                Err(_) => c.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
                    reject(
                        Reason::BadClient,
                        format!("client {c:?} is neither an address nor a network"),
                    )
                })?,
            },
            (None, Some(peer)) => IpNet::from(peer),
            (None, None) => {
                return Err(reject(Reason::BadClient, "no client given".into()));
            }
        };
        let Some(net) = Net::within(client) else {
            return Err(reject(
                Reason::BadClient,
                format!(
                    "client {client} is wider than a client network (/{} for IPv4, /{} for IPv6)",
                    super::V4_PREFIX,
                    super::V6_PREFIX
                ),
            ));
        };
        if (self.special)(client) {
            return Err(reject(
                Reason::Unroutable,
                format!("client {client} is special-purpose space, not a client network"),
            ));
        }
        if !self.regions.contains(&line.region) {
            return Err(reject(
                Reason::UnknownRegion,
                format!(
                    "unknown region {:?} (known: {})",
                    line.region,
                    self.regions.join(", ")
                ),
            ));
        }
        let kind = match line.kind.as_str() {
            "tcp" => Kind::Tcp,
            "ttfb" => Kind::Ttfb,
            "ping" => Kind::Ping,
            other => {
                return Err(reject(
                    Reason::UnknownKind,
                    format!("unknown kind {other:?} (tcp, ttfb or ping)"),
                ));
            }
        };
        if !(MIN_RTT_MS..=MAX_RTT_MS).contains(&line.rtt_ms) {
            return Err(reject(
                Reason::AbsurdRtt,
                format!(
                    "rtt_ms {} is outside {MIN_RTT_MS}..={MAX_RTT_MS}",
                    line.rtt_ms
                ),
            ));
        }
        let count = line.count.unwrap_or(1);
        if !(1..=MAX_COUNT).contains(&count) {
            return Err(reject(
                Reason::BadCount,
                format!("count {count} is outside 1..={MAX_COUNT}"),
            ));
        }
        let age = self.now - line.time;
        if age > self.max_age_secs {
            return Err(reject(
                Reason::Stale,
                format!(
                    "time {} is {:.0} s old (at most {:.0} s)",
                    line.time, age, self.max_age_secs
                ),
            ));
        }
        if -age > MAX_FUTURE_SECS {
            return Err(reject(
                Reason::Future,
                format!(
                    "time {} is {:.0} s ahead of this server's clock (at most {MAX_FUTURE_SECS:.0} s)",
                    line.time, -age
                ),
            ));
        }
        Ok(Sample {
            client: client.addr(),
            net,
            region: line.region,
            rtt_ms: line.rtt_ms,
            kind,
            time: line.time.max(0.0) as u64,
            count,
        })
    }
}

/// A token bucket: `rate` samples a second on average, `burst` at once.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    /// Unix seconds of the last refill.
    at: f64,
}

impl Bucket {
    pub fn full(burst: f64, now: f64) -> Bucket {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    /// Takes one sample's token, if there is one.
    pub fn take(&mut self, now: f64, rate: f64, burst: f64) -> bool {
        self.tokens = (self.tokens + (now - self.at).max(0.0) * rate).min(burst);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
