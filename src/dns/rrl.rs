//! Response rate limiting for UDP, as BIND, Knot and NSD do it: a token bucket per (client
//! network, response), so that spoofed queries cannot turn Meridian into an amplifier.
//!
//! A response is keyed by the client's /24 (IPv4) or /56 (IPv6) and by what it says (name,
//! type, response code). Over the rate, responses are dropped, except every `slip`-th, which
//! goes out truncated (TC=1, question only): a real client retries over TCP, where no limit
//! applies, while a spoofed victim gets no more bytes than the query had.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ipnet::IpNet;

use super::response::truncated_to_question;
use super::wire::{HEADER_LEN, single_question_end};
use crate::metrics::RrlCounters;

const SHARDS: usize = 32;
/// Buckets kept per shard; a full shard is emptied (clients then start with a full bucket).
const BUCKETS_PER_SHARD: usize = 4096;

/// What to do with a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Send this truncated copy instead.
    Slip(Vec<u8>),
    Drop,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    /// Responses refused since the bucket last had tokens, to pick the slips.
    refused: u64,
}

/// The configured limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Responses per second per (client network, response), with a burst of as many.
    pub rate: u32,
    /// 0 drops every response over the rate; N sends every N-th truncated.
    pub slip: u32,
}

pub struct Rrl {
    rate: f64,
    slip: u64,
    shards: Vec<Mutex<HashMap<(IpNet, u64), Bucket>>>,
    counters: Arc<RrlCounters>,
}

impl std::fmt::Debug for Rrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rrl")
            .field("rate", &self.rate)
            .field("slip", &self.slip)
            .finish()
    }
}

impl Rrl {
    /// A limiter of `limits` that counts what it refuses in `counters`.
    pub fn new(limits: Limits, counters: Arc<RrlCounters>) -> Rrl {
        Rrl {
            rate: f64::from(limits.rate.max(1)),
            slip: u64::from(limits.slip),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            counters,
        }
    }

    /// The verdict for `response` to `client` at `now`.
    pub fn check(&self, client: SocketAddr, response: &[u8], now: Instant) -> Verdict {
        let Some(question_end) = single_question_end(response) else {
            return Verdict::Send;
        };
        let network = match client.ip() {
            IpAddr::V4(a) => IpNet::new(IpAddr::V4(a), 24),
            IpAddr::V6(a) => IpNet::new(IpAddr::V6(a), 56),
        }
        .expect("valid prefix")
        .trunc();
        // What the response says: its question (case folded) and its response code.
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(
            &response[HEADER_LEN..question_end].to_ascii_lowercase(),
            &mut h,
        );
        std::hash::Hash::hash(&(response[3] & 0x0F), &mut h);
        let what = std::hash::Hasher::finish(&h);
        let shard = &self.shards[(what as usize ^ network_hash(&network)) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= BUCKETS_PER_SHARD && !map.contains_key(&(network, what)) {
            map.clear();
        }
        let b = map.entry((network, what)).or_insert(Bucket {
            tokens: self.rate,
            last: now,
            refused: 0,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.rate);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            b.refused = 0;
            return Verdict::Send;
        }
        b.refused += 1;
        if self.slip > 0 && b.refused.is_multiple_of(self.slip) {
            self.counters.slipped.fetch_add(1, Relaxed);
            Verdict::Slip(truncated_to_question(response, question_end))
        } else {
            self.counters.dropped.fetch_add(1, Relaxed);
            Verdict::Drop
        }
    }
}

fn network_hash(net: &IpNet) -> usize {
    match net.addr() {
        IpAddr::V4(a) => u32::from(a) as usize,
        IpAddr::V6(a) => (u128::from(a) >> 72) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn response(name: &[u8]) -> Vec<u8> {
        let mut r = vec![0xAB, 0xCD, 0x84, 0x00, 0, 1, 0, 1, 0, 0, 0, 0];
        r.extend_from_slice(name);
        r.extend_from_slice(&[0, 1, 0, 1]);
        r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 10]);
        r
    }

    #[test]
    fn over_the_rate_every_second_response_slips_truncated_and_the_rest_drop() {
        let rrl = Rrl::new(Limits { rate: 5, slip: 2 }, Arc::default());
        let t = Instant::now();
        let client: SocketAddr = "198.51.100.7:5300".parse().unwrap();
        let r = response(b"\x03www\x07example\x03com\x00");
        let verdicts: Vec<Verdict> = (0..9).map(|_| rrl.check(client, &r, t)).collect();
        assert!(
            verdicts[..5].iter().all(|v| *v == Verdict::Send),
            "a burst of the rate"
        );
        assert_eq!(verdicts[5], Verdict::Drop);
        let Verdict::Slip(tc) = &verdicts[6] else {
            panic!("{verdicts:?}")
        };
        assert_eq!(tc[2] & 0x02, 0x02, "TC set");
        assert_eq!(&tc[6..12], &[0; 6], "no records");
        assert!(tc.len() < r.len());
        // Tokens come back with time.
        assert_eq!(
            rrl.check(client, &r, t + Duration::from_millis(400)),
            Verdict::Send
        );
        assert_eq!(rrl.counters.dropped.load(Relaxed), 2);
        assert_eq!(rrl.counters.slipped.load(Relaxed), 2);
    }

    #[test]
    fn buckets_are_per_client_network_and_per_response() {
        let rrl = Rrl::new(Limits { rate: 1, slip: 0 }, Arc::default());
        let t = Instant::now();
        let a: SocketAddr = "198.51.100.7:1".parse().unwrap();
        let same_net: SocketAddr = "198.51.100.200:2".parse().unwrap();
        let other_net: SocketAddr = "198.51.101.7:1".parse().unwrap();
        let www = response(b"\x03www\x07example\x03com\x00");
        let static_ = response(b"\x06static\x07example\x03com\x00");
        assert_eq!(rrl.check(a, &www, t), Verdict::Send);
        assert_eq!(rrl.check(same_net, &www, t), Verdict::Drop, "same /24");
        assert_eq!(rrl.check(other_net, &www, t), Verdict::Send);
        assert_eq!(rrl.check(a, &static_, t), Verdict::Send, "another response");
        let upper = response(b"\x03WWW\x07example\x03com\x00");
        assert_eq!(
            rrl.check(a, &upper, t),
            Verdict::Drop,
            "case does not matter"
        );
    }
}
