//! Builds the embedded default GeoIP database: DB-IP City Lite's points coarsened to a grid
//! (region choice needs no street precision, and neighbouring networks whose coarse points
//! agree merge into one), over the country database for the networks the city data does not
//! locate. Both inputs are CC BY 4.0 (see ATTRIBUTION.md); so is the result.
//!
//! Usage: cargo run --release --example geodata-city -- [--grid DEGREES] [--near-km KM] [--check N]
//!            COUNTRY.mmdb CITY-V4.mmdb CITY-V6.mmdb OUT.mmdb
//!
//! With `SOURCE_DATE_EPOCH` set, the same inputs give the same bytes.
//!
//! `--check N` then compares the result with the full city data on N addresses drawn at
//! random from the IPv4 space the city data locates (so weighted by addresses): how often the
//! nearest of a six-region set (two US, two European regions) is the same, and the same for
//! the country database alone, the previous default.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use maxminddb::{Reader, WithinOptions};
use meridian::geo::Float;
use meridian::steer::GeoPoint;
use mmdb_writer::{Value, Writer};

/// The flat ip-location-db schema, which both inputs use and Meridian reads.
#[derive(serde::Deserialize)]
struct Flat<'a> {
    country_code: Option<&'a str>,
    latitude: Option<Float>,
    longitude: Option<Float>,
}

type Error = Box<dyn std::error::Error>;

/// The centre of the grid cell of side `grid` degrees that holds `v`.
fn coarse(v: f64, grid: f64) -> f32 {
    (((v / grid).floor() + 0.5) * grid) as f32
}

/// How the city points are coarsened.
#[derive(Clone, Copy)]
struct Coarsen {
    /// Side of a grid cell, in degrees.
    grid: f64,
    /// A point within this distance of its country's centre is written as the country alone,
    /// which Meridian places at that centre: neighbours in one country then merge.
    near_km: f64,
}

/// Inserts every located network of `path`: with `coarsen`, its point coarsened; without, its
/// country alone (Meridian places a country at its centre).
fn insert_all(writer: &mut Writer, path: &str, coarsen: Option<Coarsen>) -> Result<(), Error> {
    let started = Instant::now();
    let reader = Reader::from_source(std::fs::read(path)?)?;
    let (mut read, mut written, mut aliased, mut near) = (0usize, 0usize, 0usize, 0usize);
    let mut unallocated = 0usize;
    for item in reader.networks(WithinOptions::default())? {
        let item = item?;
        read += 1;
        let Some(f) = item.decode::<Flat<'_>>()? else {
            continue;
        };
        let mut record = BTreeMap::new();
        if let Some(c) = f.country_code {
            record.insert("country_code", Value::from(c));
        }
        if let Some(c) = coarsen {
            let (Some(Float(lat)), Some(Float(lon))) = (f.latitude, f.longitude) else {
                continue;
            };
            let (lat, lon) = (coarse(lat, c.grid), coarse(lon, c.grid));
            let centre = f.country_code.and_then(meridian::geo::countries::lookup);
            if centre.is_some_and(|k| km((lat.into(), lon.into()), (k.lat, k.lon)) < c.near_km) {
                near += 1;
            } else {
                record.insert("latitude", Value::from(lat));
                record.insert("longitude", Value::from(lon));
            }
        } else if record.is_empty() {
            continue;
        }
        let net = item.network()?;
        let net = ipnet::IpNet::new(net.ip(), net.prefix())?;
        // DB-IP fills unallocated IPv6 space with huge networks in one city (2200::/7 and
        // 2807::/16 in Switzerland): the largest allocations registries make to one holder
        // are /19 (2003::/19), so a shorter network is left to the country data (which
        // leaves unallocated space unknown).
        if coarsen.is_some() && net.addr().is_ipv6() && net.prefix_len() < 19 {
            unallocated += 1;
            continue;
        }
        match writer.insert_value(net, Value::map(record)) {
            Ok(()) => written += 1,
            Err(mmdb_writer::Error::AliasedNetwork(_)) => aliased += 1,
            Err(e) => return Err(e.into()),
        }
    }
    eprintln!(
        "{path}: {read} networks, {written} written ({near} as their country, being near its \
         centre), {unallocated} IPv6 networks shorter than /19 left out, {aliased} IPv4 \
         aliases left to the IPv4 tree ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The six regions of the agreement check: two in the US, two in Europe.
const REGIONS: [(&str, f64, f64); 6] = [
    ("us-east", 39.04, -77.49),
    ("us-west", 45.84, -119.70),
    ("eu-west", 53.35, -6.26),
    ("eu-central", 50.11, 8.68),
    ("ap-southeast", 1.35, 103.82),
    ("sa-east", -23.55, -46.63),
];

/// Great-circle distance in km, as Meridian measures it.
fn km((lat, lon): (f64, f64), (to_lat, to_lon): (f64, f64)) -> f64 {
    GeoPoint { lat, lon }.distance_km(GeoPoint {
        lat: to_lat,
        lon: to_lon,
    })
}

fn nearest(lat: f64, lon: f64) -> usize {
    let d = |&(_, rlat, rlon): &(&str, f64, f64)| km((lat, lon), (rlat, rlon));
    (0..REGIONS.len())
        .min_by(|&a, &b| d(&REGIONS[a]).total_cmp(&d(&REGIONS[b])))
        .expect("regions")
}

/// Where Meridian would place `addr` in `db`, as its own locate does.
fn point(db: &meridian::geo::GeoDb, addr: IpAddr) -> Option<(f64, f64)> {
    let p = db.locate(ipnet::IpNet::from(addr)).point?;
    Some((p.lat, p.lon))
}

/// xorshift64*: a reproducible sample without another dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn check(built: &str, country: &str, city_v4: &str, samples: usize) -> Result<(), Error> {
    let open = |p: &str| meridian::geo::GeoDb::open(std::path::Path::new(p));
    let (built, country, city) = (open(built)?, open(country)?, open(city_v4)?);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut located, mut same_built, mut same_country, mut drawn) = (0, 0, 0, 0);
    while located < samples && drawn < samples * 100 {
        drawn += 1;
        let addr = IpAddr::V4(Ipv4Addr::from(rng.next() as u32));
        let Some((lat, lon)) = point(&city, addr) else {
            continue;
        };
        located += 1;
        let want = nearest(lat, lon);
        if point(&built, addr).is_some_and(|(a, b)| nearest(a, b) == want) {
            same_built += 1;
        }
        if point(&country, addr).is_some_and(|(a, b)| nearest(a, b) == want) {
            same_country += 1;
        }
    }
    let pct = |n: usize| 100.0 * n as f64 / located.max(1) as f64;
    println!(
        "agreement with the full city data, {located} addresses the city data locates \
         (address-weighted), nearest of {}: built {:.2} %, country database {:.2} %",
        REGIONS.map(|r| r.0).join(", "),
        pct(same_built),
        pct(same_country)
    );
    Ok(())
}

fn main() -> Result<(), Error> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut coarsen = Coarsen {
        grid: 2.0,
        near_km: 0.0,
    };
    let mut samples = 0;
    while args.first().is_some_and(|a| a.starts_with("--")) {
        let flag = args.remove(0);
        let value = args.first().ok_or(format!("{flag} needs a value"))?.clone();
        args.remove(0);
        match flag.as_str() {
            "--grid" => coarsen.grid = value.parse()?,
            "--near-km" => coarsen.near_km = value.parse()?,
            "--check" => samples = value.parse()?,
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    let [country, v4, v6, out] = args.as_slice() else {
        return Err(
            "usage: geodata-city [--grid DEGREES] [--near-km KM] [--check N] COUNTRY.mmdb \
                    CITY-V4.mmdb CITY-V6.mmdb OUT.mmdb"
                .into(),
        );
    };
    let description = format!(
        "DB-IP City Lite points on a {} degree grid (the country alone within {} km of its \
         centre) over the geo-whois-asn-country database; CC BY 4.0",
        coarsen.grid, coarsen.near_km
    );
    // SOURCE_DATE_EPOCH (the data's date, set by refresh.sh) makes the output reproducible.
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.parse()?),
        Err(_) => std::time::SystemTime::now(),
    };
    let mut writer = Writer::builder("Meridian-City-Coarse")
        .description(&[("en", description.as_str())])
        .build_epoch(epoch)
        .build();
    insert_all(&mut writer, country, None)?;
    insert_all(&mut writer, v4, Some(coarsen))?;
    insert_all(&mut writer, v6, Some(coarsen))?;
    let started = Instant::now();
    let bytes = writer.to_bytes()?;
    std::fs::write(out, &bytes)?;
    eprintln!(
        "{out}: {} bytes ({:.1} s)",
        bytes.len(),
        started.elapsed().as_secs_f64()
    );
    if samples > 0 {
        check(out, country, v4, samples)?;
    }
    Ok(())
}
