//! The hot functions, alone: the steering decision, a GeoIP lookup (cache misses), a compiled
//! steering lookup, and a whole query through `dns::handle` (parse, cache hit, patch) for a
//! static, a steered and a multivalue name with ECS, the steered one also with every query from a new /24
//! (compiled, and on the direct path before the compiler has run), and the counting of a
//! steered answer. Run: cargo bench --bench hot

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use ipnet::IpNet;
use meridian::dns::{Services, Transport, cookie, handle};
use meridian::geo::GeoDb;
use meridian::serving::Snapshot;
use meridian::serving::answer::Client;
use meridian::steer::{Family, HealthView, decide};

fn state() -> Snapshot {
    let zones = meridian::zone::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("zones"))
        .expect("shipped zones");
    let geo = Arc::new(GeoDb::embedded().expect("embedded database"));
    Snapshot::new(zones, geo, &meridian::metrics::Metrics::default())
}

fn query(name: &str, ecs: Option<&str>) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 4242;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    if let Some(net) = ecs {
        e.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::from(
                net.parse::<IpNet>().unwrap(),
            )));
    }
    m.set_edns(e);
    m.to_vec().unwrap()
}

fn hot(c: &mut Criterion) {
    let state = state();
    let zone = state.zones.zones().next().expect("a zone");
    let steered = &zone.steered[0];
    let view = HealthView::all_up();
    let london = Some(meridian::steer::GeoPoint {
        lat: 51.5,
        lon: -0.13,
    });
    c.bench_function("decide: 3 regions", |b| {
        b.iter(|| decide(london, &steered.config, &zone.regions, &view, Family::V4))
    });

    let geo = GeoDb::embedded().unwrap();
    let mut n: u32 = 0x0100_0000;
    c.bench_function("geoip: locate a new /24 (cache miss)", |b| {
        b.iter(|| {
            // A different /24 each time, striding across the whole space.
            n = n.wrapping_add(0x0001_0f00);
            geo.locate(IpNet::new(IpAddr::V4(Ipv4Addr::from(n & 0xffff_ff00)), 24).unwrap())
        })
    });

    let src = SocketAddr::from(([127, 0, 0, 1], 5300));
    let stat = query("static.example.com.", None);
    let www = query("www.example.com.", Some("81.2.69.0/24"));
    let services = Services::new(
        cookie::Cookies::random(cookie::DEFAULT_AMPLIFICATION),
        None,
        Arc::default(),
    );
    let now = cookie::now();
    handle(&state, &services, &stat, src, Transport::Udp, now);
    handle(&state, &services, &www, src, Transport::Udp, now);
    c.bench_function("handle: static name, cached", |b| {
        b.iter(|| handle(&state, &services, &stat, src, Transport::Udp, now))
    });
    c.bench_function("handle: steered name with ECS, cached", |b| {
        b.iter(|| handle(&state, &services, &www, src, Transport::Udp, now))
    });

    // A multivalue name (three regions' endpoints), compiled: its answer is cached per list
    // of regions.
    let rules =
        meridian::zone::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/zones-rules"))
            .expect("the rules zone");
    let rules = Snapshot::new(
        rules,
        state.geo.clone(),
        &meridian::metrics::Metrics::default(),
    )
    .compiled();
    let multi = query("multi.rules.test.", Some("5.9.0.0/24"));
    handle(&rules, &services, &multi, src, Transport::Udp, now);
    c.bench_function("handle: multivalue name with ECS, cached (compiled)", |b| {
        b.iter(|| handle(&rules, &services, &multi, src, Transport::Udp, now))
    });

    // Every query from another /24, striding over the whole space: more distinct networks
    // than any per-client cache holds.
    let new_networks: Vec<Vec<u8>> = (0..262_144u32)
        .map(|i| {
            let a = Ipv4Addr::from(i.wrapping_mul(0x9E37_79B9) & 0xffff_ff00);
            query("www.example.com.", Some(&format!("{a}/24")))
        })
        .collect();
    let compiled = state.with_all_health(state.health.clone()).compiled();
    let mut i = 0;
    c.bench_function(
        "handle: steered name, a new /24 each query (compiled)",
        |b| {
            b.iter(|| {
                i = (i + 1) % new_networks.len();
                handle(
                    &compiled,
                    &services,
                    &new_networks[i],
                    src,
                    Transport::Udp,
                    now,
                )
            })
        },
    );
    let mut i = 0;
    c.bench_function(
        "handle: steered name, a new /24 each query (direct path)",
        |b| {
            b.iter(|| {
                i = (i + 1) % new_networks.len();
                handle(
                    &state,
                    &services,
                    &new_networks[i],
                    src,
                    Transport::Udp,
                    now,
                )
            })
        },
    );
    let zone = compiled.zones.zones().next().expect("a zone");
    let steering = compiled.steering(zone).expect("compiled");
    let mut n: u32 = 0x0100_0000;
    c.bench_function("compiled steering: a new /24", |b| {
        b.iter(|| {
            n = n.wrapping_add(0x0001_0f00);
            let network = IpNet::new(IpAddr::V4(Ipv4Addr::from(n & 0xffff_ff00)), 24).unwrap();
            steering.steer(0, Family::V4, Client::Subnet { network })
        })
    });

    // What counting a steered answer costs the query path: the counters and answer times,
    // and the entry in this thread's ring of where clients go, alone.
    let counters = &state.counters[zone.index];
    let client: IpNet = "81.2.69.0/24".parse().unwrap();
    c.bench_function(
        "count: a steered answer (counters, times, where it went)",
        |b| b.iter(|| counters.steered(0, RecordType::A, Some(1), now, 30, client)),
    );
    c.bench_function("where clients go: record one answer", |b| {
        b.iter(|| meridian::flows::record(7, 1, client))
    });
}

criterion_group!(benches, hot);
criterion_main!(benches);
