//! The latency map's intake, alone: one sample into the map (decay, mean, groups), and one
//! NDJSON line through the whole intake (parse, check, locate, rate limit, add) as
//! `POST /api/v1/rtt` runs it, less HTTP. Prints the memory of one million client networks
//! by six regions. Run: cargo bench --bench latency

use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use meridian::latency::{LatencyMap, Net, Origin, Settings};

#[path = "../bench/feed_rig.rs"]
mod feed_rig;
use feed_rig::FeedRig;

const REGIONS: [&str; 6] = ["r0", "r1", "r2", "r3", "r4", "r5"];
const T0: u64 = 1_764_540_000;

/// A spread of public /24s: the `i`-th of a scramble of 1.0.0.0 - 223.255.255.0.
fn net(i: u32) -> Net {
    let a = (i.wrapping_mul(2_654_435_761) % (222 << 16)) + (1 << 16);
    Net::of(IpAddr::V4(Ipv4Addr::from(a << 8)))
}

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn million_by_six() {
    let before = resident_bytes();
    let mut map = LatencyMap::new(Settings::default());
    let origin = Origin {
        country: Some(*b"FR"),
        ..Origin::default()
    };
    let started = std::time::Instant::now();
    for i in 0..1_000_000u32 {
        for (r, region) in REGIONS.iter().enumerate() {
            // As an aggregate of 25: every network steers, so the publication holds them all.
            map.add_weighted(net(i), &origin, region, 20.0 + r as f64, T0, 25.0);
        }
    }
    let took = started.elapsed();
    println!(
        "1M networks x 6 regions: {} networks, {:.1} MiB of estimates, {:.1} MiB resident growth; \
         6M samples added in {:.2} s ({:.0} samples/s)",
        map.networks(),
        map.bytes() as f64 / (1 << 20) as f64,
        resident_bytes().saturating_sub(before) as f64 / (1 << 20) as f64,
        took.as_secs_f64(),
        6e6 / took.as_secs_f64()
    );
    let started = std::time::Instant::now();
    let table = map.publish(T0 + 60);
    println!(
        "published {} networks in {:.0} ms; {:.1} MiB resident growth with the published table",
        table.networks(),
        started.elapsed().as_secs_f64() * 1000.0,
        resident_bytes().saturating_sub(before) as f64 / (1 << 20) as f64,
    );
}

fn bench(c: &mut Criterion) {
    million_by_six();

    // One sample into a map of 100,000 networks.
    let mut map = LatencyMap::new(Settings::default());
    let origin = Origin {
        country: Some(*b"FR"),
        ..Origin::default()
    };
    for i in 0..100_000u32 {
        map.add(net(i), &origin, REGIONS[(i % 6) as usize], 30.0, T0);
    }
    let mut g = c.benchmark_group("latency");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u32;
    g.bench_function("add", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            map.add(
                net(i % 100_000),
                &origin,
                REGIONS[(i % 6) as usize],
                31.0,
                T0 + u64::from(i >> 10),
            )
        })
    });

    // A batch of 1,000 NDJSON lines through the intake, as the API runs it.
    let FeedRig { feed, state, .. } = &FeedRig::open();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let regions = ["us-east", "eu-west", "ap-southeast"];
    let batch: String = (0..)
        .map(|k: u32| (k, net(k * 7919).prefix()))
        .filter(|(_, n)| !meridian::geo::is_special(*n))
        .take(1000)
        .map(|(k, n)| {
            format!(
                "{{\"client\":\"{n}\",\"region\":\"{}\",\"rtt_ms\":{},\"kind\":\"tcp\",\"time\":{now}}}\n",
                regions[(k % 3) as usize],
                20 + k % 50
            )
        })
        .collect();
    g.throughput(Throughput::Elements(1000));
    g.bench_function("ingest-1000-lines", |b| {
        b.iter(|| {
            let report = feed.ingest(state, "bench", None, &batch, now);
            assert_eq!(report.accepted, 1000);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
