//! Measures the steering compiler on a GeoIP database: the location table's build time and
//! size, then for region sets of 3 and of 12 regions (and one of 1,000) the compile time, the
//! runs' size, the process's resident memory, and lookups per second against the direct path
//! (GeoIP lookup, then `steer::decide`) for clients from distinct random /24s and /48s.
//! Then the same for `bench/zones-rules` (every rule: network and ASN rules, a fence, a
//! split, bias, multivalue) against the direct path under rules (GeoIP and ASN lookups, then
//! `steer::rules::apply`), the ASN database's walk included in the first compile. Last, a
//! latency map of one million measured /24s by 3 regions compiled over one name: the time
//! to compile the zone with it and to decide a new map over the same runs, the overlay's
//! size per network and name, and lookups of measured clients, compiled against direct.
//!
//! Usage: cargo run --release --example bench-compile -- [GEOIP.mmdb ...]
//! (no file: the embedded database; give DB-IP's IPv4 and IPv6 files together).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Instant;

use ipnet::IpNet;
use meridian::geo::GeoDb;
use meridian::serving::answer::Client;
use meridian::serving::compiled::compile;
use meridian::steer::{ClientFacts, Family, HealthView, decide, rules};

/// Cities where clouds have regions: the first 3, the first 12.
const SITES: [(&str, f64, f64); 12] = [
    ("us-east", 39.04, -77.49),
    ("eu-west", 53.35, -6.26),
    ("ap-southeast", 1.35, 103.82),
    ("us-west", 45.6, -121.18),
    ("eu-central", 50.11, 8.68),
    ("ap-northeast", 35.68, 139.69),
    ("sa-east", -23.55, -46.63),
    ("ap-south", 19.08, 72.88),
    ("af-south", -33.92, 18.42),
    ("me-central", 25.2, 55.27),
    ("ca-central", 45.5, -73.57),
    ("ap-southeast-2", -33.87, 151.21),
];

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn zone(sites: &[(String, f64, f64)]) -> meridian::zone::Zone {
    let mut text = String::from(
        "zone = \"bench.test.\"\nrecords = '''\n$TTL 300\n@ IN SOA ns hm 1 7200 3600 1209600 300\n@ IN NS ns\nns IN A 192.0.2.1\n'''\n",
    );
    for (i, (name, lat, lon)) in sites.iter().enumerate() {
        text += &format!(
            "[regions.{name}]\nlocation = {{ lat = {lat}, lon = {lon} }}\nendpoints = [\"198.18.{}.{}\", \"2001:db8::{:x}\"]\n",
            i / 250,
            i % 250 + 1,
            i + 1
        );
    }
    let names: Vec<String> = sites.iter().map(|s| format!("\"{}\"", s.0)).collect();
    text += &format!("[steered.www]\nregions = [{}]\n", names.join(", "));
    meridian::zone::load_file(std::path::Path::new("bench.test.toml"), &text)
        .expect("the bench zone loads")
}

/// Distinct client networks: /24s striding over IPv4, /48s over 2000::/4.
fn clients(n: u32) -> Vec<IpNet> {
    (0..n)
        .flat_map(|i| {
            let v4 = Ipv4Addr::from(i.wrapping_mul(0x9E37_79B9) & 0xffff_ff00);
            let x = u128::from(i.wrapping_mul(0x85EB_CA6B));
            let v6 = Ipv6Addr::from((0x2000u128 << 112) | (x << 80));
            [
                IpNet::new(IpAddr::V4(v4), 24).expect("/24"),
                IpNet::new(IpAddr::V6(v6), 48).expect("/48"),
            ]
        })
        .collect()
}

fn main() {
    let paths: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    // The allocator as `meridian serve` sets it up, so that the RSS read here is the server's.
    meridian::cli::fix_mmap_threshold();
    let before = rss_mib();
    let geo = if paths.is_empty() {
        GeoDb::embedded()
    } else {
        GeoDb::open_or_embedded(&paths)
    }
    .expect("GeoIP database");
    let loaded = rss_mib();
    println!("database: {}", geo.describe());
    println!("RSS: {before:.0} MiB at start, {loaded:.0} MiB with the database read");
    let started = Instant::now();
    let table = geo.table().expect("the database walks");
    println!(
        "location table: {:.2} s, {} networks -> {} IPv4 + {} IPv6 ranges, {} places, {:.1} MiB; RSS {:.0} MiB",
        started.elapsed().as_secs_f64(),
        table.networks,
        table.v4.len(),
        table.v6.len(),
        table.places.len(),
        table.bytes() as f64 / 1048576.0,
        rss_mib()
    );
    let probes = clients(500_000);
    let mut sets: Vec<Vec<(String, f64, f64)>> = [3, 12]
        .iter()
        .map(|&n| {
            SITES[..n]
                .iter()
                .map(|&(s, a, o)| (s.to_owned(), a, o))
                .collect()
        })
        .collect();
    // 1,000 regions on a grid over the inhabited latitudes.
    sets.push(
        (0..1000)
            .map(|i| {
                let (lat, lon) = (
                    -50.0 + f64::from(i / 40) * 4.5,
                    -180.0 + f64::from(i % 40) * 9.0,
                );
                (format!("r{i}"), lat, lon)
            })
            .collect(),
    );
    let view = HealthView::all_up();
    for sites in &sets {
        let zone = zone(sites);
        let rss = rss_mib();
        let started = Instant::now();
        let compiled = compile(&zone, &view, &Default::default(), || Ok(table)).expect("compiles");
        let took = started.elapsed();
        println!(
            "{} regions: compiled in {:.3} s, runs {:.2} MiB, RSS {:.0} -> {:.0} MiB",
            sites.len(),
            took.as_secs_f64(),
            compiled.bytes() as f64 / 1048576.0,
            rss,
            rss_mib()
        );
        let config = &zone.steered[0].config;
        let started = Instant::now();
        let mut agree = 0usize;
        let mut regions = 0usize;
        for &network in &probes {
            let family = if network.addr().is_ipv4() {
                Family::V4
            } else {
                Family::V6
            };
            if let Some(c) = compiled.steer(0, family, Client::Subnet { network }) {
                regions += c.steering.region.unwrap_or(0);
                agree += usize::from(c.scope > 0);
            }
        }
        let fast = probes.len() as f64 / started.elapsed().as_secs_f64();
        let direct_n = probes.len().min(100_000);
        let started = Instant::now();
        for &network in &probes[..direct_n] {
            let family = if network.addr().is_ipv4() {
                Family::V4
            } else {
                Family::V6
            };
            let point = geo.locate(network).point;
            regions += decide(point, config, &zone.regions, &view, family)
                .chosen
                .unwrap_or(0);
        }
        let direct = direct_n as f64 / started.elapsed().as_secs_f64();
        println!(
            "  lookups: compiled {:.2} M/s, direct (locate + decide) {:.3} M/s over {} distinct networks ({agree} scoped, checksum {regions})",
            fast / 1e6,
            direct / 1e6,
            probes.len()
        );
    }
    rules_zone(&geo, table, &probes);
    measured_map(&geo, table);
}

/// A spread of public /24s: the `i`-th of a scramble of 1.0.0.0 - 223.255.255.0, as
/// `benches/latency.rs` spreads them.
fn measured_net(i: u32) -> meridian::latency::Net {
    let a = (i.wrapping_mul(2_654_435_761) % (222 << 16)) + (1 << 16);
    meridian::latency::Net::of(IpAddr::V4(Ipv4Addr::from(a << 8)))
}

/// One million measured /24s by 3 regions (each network's origin located, so the map has
/// estimates by AS and country as ingestion gives it) over one name of 3 regions.
fn measured_map(geo: &GeoDb, table: &meridian::geo::table::LocationTable) {
    use meridian::latency::{LatencyMap, Origin, Settings};
    use std::sync::Arc;
    const T0: u64 = 1_764_540_000;
    let sites: Vec<(String, f64, f64)> = SITES[..3]
        .iter()
        .map(|&(s, a, o)| (s.to_owned(), a, o))
        .collect();
    let zone = zone(&sites);
    let started = Instant::now();
    let mut map = LatencyMap::new(Settings::default());
    for i in 0..1_000_000u32 {
        let net = measured_net(i);
        let origin = Origin::of(&geo.locate(net.prefix()));
        for (r, (name, _, _)) in sites.iter().enumerate() {
            // Aggregates of 25 samples: every network steers. RTTs spread so that measurement
            // moves some networks from their nearest region.
            let rtt = 20.0 + f64::from((i.wrapping_mul(7) + r as u32 * 37) % 120);
            map.add_weighted(net, &origin, name, rtt, T0, 25.0);
        }
    }
    let latency = Arc::new(map.publish(T0 + 60));
    println!(
        "latency map: {} measured networks x {} regions, built and published in {:.1} s",
        latency.networks(),
        sites.len(),
        started.elapsed().as_secs_f64()
    );
    let view = HealthView::all_up();
    let rss = rss_mib();
    let started = Instant::now();
    let compiled = compile(&zone, &view, &latency, || Ok(table)).expect("compiles");
    let full = started.elapsed();
    let m = compiled.measured_stats();
    println!(
        "1 name, 3 regions, {} measured networks: compiled with them in {:.2} s; overlay {:.2} MiB ({:.1} octets per network and name, both families), {} left to the direct path; RSS {:.0} -> {:.0} MiB",
        m.networks,
        full.as_secs_f64(),
        m.bytes as f64 / 1048576.0,
        m.bytes_per_network_name(),
        m.direct,
        rss,
        rss_mib()
    );
    let again = Arc::new(map.publish(T0 + 120));
    let started = Instant::now();
    let remeasured = compiled
        .remeasured(&zone, &view, &again, || Ok(table))
        .expect("compiles");
    println!(
        "  a new map decided over the same runs in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    drop(compiled);
    let probes: Vec<Client> = (0..500_000u32)
        .map(|i| Client::Subnet {
            network: measured_net(i * 2).prefix(),
        })
        .collect();
    let started = Instant::now();
    let mut checksum = 0usize;
    let mut answered = 0usize;
    for &client in &probes {
        let network = client.network();
        if let Some(index) = again.index_of(network)
            && let Some(c) = remeasured.steer_measured(0, Family::V4, client, &again, index)
        {
            answered += 1;
            checksum += c.steering.region.unwrap_or(0) + usize::from(c.scope);
        }
    }
    let fast = probes.len() as f64 / started.elapsed().as_secs_f64();
    let config = &zone.steered[0].config;
    let direct_n = 100_000;
    let started = Instant::now();
    for client in &probes[..direct_n] {
        let network = client.network();
        let location = geo.locate(network);
        let origin = Origin::of(&location);
        let regions = zone.regions.iter().map(|r| (r.name.as_str(), r.location));
        let rtt = again.client_rtt(network, &origin, regions);
        let facts = ClientFacts::located(network, &location);
        let d = rules::apply_measured(
            &facts,
            rtt.as_ref(),
            config,
            &zone.regions,
            &view,
            Family::V4,
        );
        checksum += d.chosen.unwrap_or(0);
    }
    let direct = direct_n as f64 / started.elapsed().as_secs_f64();
    println!(
        "  measured clients: compiled {:.2} M/s (index search included; {answered} of {} answered), direct (locate + estimates + decide) {:.3} M/s (checksum {checksum})",
        fast / 1e6,
        probes.len(),
        direct / 1e6
    );
}

/// Compiles `bench/zones-rules` and looks up its two names for `probes`.
fn rules_zone(geo: &GeoDb, table: &meridian::geo::table::LocationTable, probes: &[IpNet]) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/zones-rules/rules.test.toml");
    let text = std::fs::read_to_string(&path).expect("bench/zones-rules is readable");
    let zone = meridian::zone::load_file(&path, &text).expect("the rules zone loads");
    let view = HealthView::all_up();
    let rss = rss_mib();
    let started = Instant::now();
    let compiled = compile(&zone, &view, &Default::default(), || Ok(table)).expect("compiles");
    println!(
        "bench/zones-rules ({} names): compiled in {:.3} s (the ASN walk included), tables {:.2} MiB, RSS {:.0} -> {:.0} MiB",
        zone.steered.len(),
        started.elapsed().as_secs_f64(),
        compiled.bytes() as f64 / 1048576.0,
        rss,
        rss_mib()
    );
    let started = Instant::now();
    let again = compile(&zone, &view, &Default::default(), || Ok(table)).expect("compiles");
    println!(
        "  recompiled (a health change) in {:.3} s",
        started.elapsed().as_secs_f64()
    );
    drop(again);
    for (index, steered) in zone.steered.iter().enumerate() {
        let family = |n: &IpNet| {
            if n.addr().is_ipv4() {
                Family::V4
            } else {
                Family::V6
            }
        };
        let started = Instant::now();
        let mut checksum = 0usize;
        for network in probes {
            if let Some(c) =
                compiled.steer(index, family(network), Client::Subnet { network: *network })
            {
                checksum += c.steering.region.unwrap_or(0) + usize::from(c.scope);
            }
        }
        let fast = probes.len() as f64 / started.elapsed().as_secs_f64();
        let direct_n = probes.len().min(100_000);
        let started = Instant::now();
        for network in &probes[..direct_n] {
            let location = geo.locate(*network);
            let facts = ClientFacts::located(*network, &location);
            let d = rules::apply(
                &facts,
                &steered.config,
                &zone.regions,
                &view,
                family(network),
            );
            checksum += d.chosen.unwrap_or(0);
        }
        let direct = direct_n as f64 / started.elapsed().as_secs_f64();
        println!(
            "  {}: compiled {:.2} M/s, direct (locate + rules) {:.3} M/s over {} distinct networks (checksum {checksum})",
            steered.name,
            fast / 1e6,
            direct / 1e6,
            probes.len()
        );
    }
}
