//! The latency map's memory and intake rate at scale, as `bench.py --latency-map` feeds a
//! server but without HTTP or DNS: one million client /24s x 3 regions (the shipped zone's),
//! one aggregate line each (count 30, so every network steers), posted through
//! `Feed::ingest` in batches of 6,000 lines and published every 25 batches, as a server
//! publishing every second while a feed posts. Prints resident memory (VmRSS, RssAnon from
//! /proc/self/status) before and after, per network, and the lines per second on this one
//! thread. Run: nice cargo run --release --example latency-map [-- NETWORKS]

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use meridian::latency::Net;

mod feed_rig;
use feed_rig::FeedRig;

const REGIONS: [&str; 3] = ["us-east", "eu-west", "ap-southeast"];
const RTTS: [u32; 3] = [20, 60, 140];
const BATCH: usize = 6000;
const PUBLISH_EVERY: usize = 25;

/// (VmRSS, RssAnon, VmHWM) in bytes.
fn memory() -> (u64, u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("RssAnon:"), field("VmHWM:"))
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

fn main() {
    let networks: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("NETWORKS: a count"))
        .unwrap_or(1_000_000);
    let FeedRig { feed, state, .. } = &FeedRig::open();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();

    // Distinct public /24s: a scramble of 1.0.0.0 - 223.255.255.0 (a bijection on 222 << 16
    // values, as 2654435761 is odd and coprime to it), special-purpose space left out.
    let nets: Vec<Net> = (0u64..)
        .map(|i| ((i * 2_654_435_761) % (222 << 16)) as u32 + (1 << 16))
        .map(|a| Net::of(IpAddr::V4(Ipv4Addr::from(a << 8))))
        .filter(|n| !meridian::geo::is_special(n.prefix()))
        .take(networks)
        .collect();
    let (rss0, anon0, _) = memory();
    println!(
        "before the map: VmRSS {:.1} MB, RssAnon {:.1} MB",
        mb(rss0),
        mb(anon0)
    );
    let started = Instant::now();
    let mut table = None;
    let mut ingest = std::time::Duration::ZERO;
    let mut batch = String::with_capacity(BATCH * 160);
    for (b, chunk) in nets.chunks(BATCH / REGIONS.len()).enumerate() {
        batch.clear();
        for (k, n) in chunk.iter().enumerate() {
            for (i, region) in REGIONS.iter().enumerate() {
                writeln!(
                    batch,
                    "{{\"client\":\"{}\",\"region\":\"{region}\",\"rtt_ms\":{},\"kind\":\"tcp\",\
                     \"time\":{now},\"source\":\"bench\",\"count\":30}}",
                    n.prefix(),
                    RTTS[(i + k) % RTTS.len()]
                )
                .expect("a String takes any text");
            }
        }
        let t = Instant::now();
        let report = feed.ingest(state, "bench", None, &batch, now as f64);
        ingest += t.elapsed();
        assert_eq!(report.dropped, 0, "{:?}", report.errors.first());
        if (b + 1) % PUBLISH_EVERY == 0 {
            table = feed.publish(now, false).or(table);
        }
    }
    table = feed.publish(now, false).or(table);
    let took = started.elapsed();
    let table = table.expect("published");
    let samples = networks * REGIONS.len();
    let (rss1, anon1, hwm) = memory();
    println!(
        "{samples} lines ingested in {:.2} s ({:.0} lines/s on one thread, publications and \
         the lines' formatting left out; {:.2} s with them)",
        ingest.as_secs_f64(),
        samples as f64 / ingest.as_secs_f64(),
        took.as_secs_f64()
    );
    println!(
        "published {} networks; growth: VmRSS {:.1} MB, RssAnon {:.1} MB = {:.0} bytes per \
         network ({:.0} per (network, region)); peak VmHWM {:.1} MB",
        table.networks(),
        mb(rss1 - rss0),
        mb(anon1 - anon0),
        (anon1 - anon0) as f64 / networks as f64,
        (anon1 - anon0) as f64 / samples as f64,
        mb(hwm)
    );
}
