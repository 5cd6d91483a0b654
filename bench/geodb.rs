//! Writes the benchmark's GeoIP databases in the MaxMind GeoIP2 City schema
//! (`country.iso_code`, `continent.code`, `location.latitude/longitude`), the schema that
//! gdnsd's `auto_dc_coords`, PowerDNS's `pickclosest` and Meridian all read, so that every
//! server locates every client at the same coordinates:
//!
//! - `bench-geodb OUT.mmdb`: the embedded database (`geodata/city-coarse.mmdb`), each network
//!   at its point, or at the point of its country in Meridian's country table where it has
//!   only a country (`bench/.work/bench-city.mmdb`).
//! - `bench-geodb --city V4.mmdb V6.mmdb OUT.mmdb`: a city database in the flat ip-location-db
//!   schema (`country_code`, `latitude`, `longitude`; DB-IP City Lite ships one IPv4 and one
//!   IPv6 file), both families in one file (gdnsd reads one file per map, and refuses the
//!   flat files: their type is "city ipv4", not a GeoIP2 City type), coordinates unchanged.
//!
//! Both also place every endpoint of the benchmark zones at its region (for PowerDNS).
//!
//! - `bench-geodb --v6-networks OUT.txt`: the IPv6 networks of the embedded database that it
//!   places in a known country, one a line, less IPv4 aliases and special-purpose space: where
//!   bench.py draws the client /48s of its new48 mix (so that they are networks in use, not
//!   unallocated space that every database leaves unknown).
//!
//! Usage: cargo run --release --example bench-geodb -- [--city V4.mmdb V6.mmdb] OUT.mmdb
//!        cargo run --release --example bench-geodb -- --v6-networks OUT.txt

use std::collections::BTreeMap;
use std::time::Instant;

use maxminddb::{Reader, WithinOptions};
use meridian::geo::Float;
use serde::Serialize;

#[derive(Serialize)]
struct City {
    continent: BTreeMap<&'static str, &'static str>,
    country: BTreeMap<&'static str, String>,
    location: Location,
}

/// PowerDNS reads a location only with its accuracy radius (km).
#[derive(Serialize)]
struct Location {
    latitude: f64,
    longitude: f64,
    accuracy_radius: u16,
}

#[derive(serde::Deserialize)]
struct Flat<'a> {
    country_code: Option<&'a str>,
    latitude: Option<Float>,
    longitude: Option<Float>,
}

/// Counts of one source file: networks read, written, skipped (no usable location) and
/// aliased (IPv4 seen again through an IPv6 alias: `::ffff:0:0/96`, `2002::/16`, Teredo).
#[derive(Default)]
struct Counts {
    read: usize,
    written: usize,
    skipped: usize,
    aliased: usize,
}

fn insert(
    writer: &mut mmdb_writer::Writer,
    net: ipnet::IpNet,
    record: &City,
    counts: &mut Counts,
) -> Result<(), Box<dyn std::error::Error>> {
    match writer.insert(net, record) {
        Ok(()) => counts.written += 1,
        Err(mmdb_writer::Error::AliasedNetwork(_)) => counts.aliased += 1,
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Every network of `path` (flat schema), with `locate` turning its record into a City.
fn convert(
    writer: &mut mmdb_writer::Writer,
    path: &str,
    locate: impl Fn(&Flat<'_>) -> Option<City>,
) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let reader = Reader::from_source(std::fs::read(path)?)?;
    let mut counts = Counts::default();
    for item in reader.networks(WithinOptions::default())? {
        let item = item?;
        counts.read += 1;
        let Some(record) = item.decode::<Flat<'_>>()?.as_ref().and_then(&locate) else {
            counts.skipped += 1;
            continue;
        };
        let net = item.network()?;
        let net = ipnet::IpNet::new(net.ip(), net.prefix())?;
        insert(writer, net, &record, &mut counts)?;
    }
    eprintln!(
        "{path}: {} networks ({:?}, type {:?}): {} written, {} without a location, {} IPv4 aliases ({:.1} s)",
        counts.read,
        reader.metadata().ip_version,
        reader.metadata().database_type,
        counts.written,
        counts.skipped,
        counts.aliased,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn country_record(f: &Flat<'_>) -> Option<City> {
    let c = f.country_code.and_then(meridian::geo::countries::lookup)?;
    Some(City {
        continent: BTreeMap::from([("code", c.continent.code())]),
        country: BTreeMap::from([("iso_code", c.code.to_string())]),
        location: Location {
            latitude: c.lat,
            longitude: c.lon,
            accuracy_radius: 1000,
        },
    })
}

fn city_record(f: &Flat<'_>) -> Option<City> {
    let (Float(latitude), Float(longitude)) = (f.latitude.as_ref()?, f.longitude.as_ref()?);
    let country = f.country_code.and_then(meridian::geo::countries::lookup);
    Some(City {
        continent: country
            .map(|c| BTreeMap::from([("code", c.continent.code())]))
            .unwrap_or_default(),
        country: f
            .country_code
            .map(|c| BTreeMap::from([("iso_code", c.to_string())]))
            .unwrap_or_default(),
        location: Location {
            latitude: *latitude,
            longitude: *longitude,
            accuracy_radius: 50,
        },
    })
}

const EMBEDDED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/geodata/city-coarse.mmdb");
/// The country database the embedded one is built over: where new48 draws its networks.
const COUNTRY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/geodata/geo-whois-asn-country.mmdb"
);

/// Writes the IPv6 networks of the country database with a known country, less IPv4
/// aliases and special-purpose blocks.
fn v6_networks(out: &str) -> Result<(), Box<dyn std::error::Error>> {
    let excluded: Vec<ipnet::IpNet> = [
        "::/8",
        "64:ff9b::/96",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "2002::/16",
        "3fff::/20",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    ]
    .iter()
    .map(|n| n.parse())
    .collect::<Result<_, _>>()?;
    let reader = Reader::from_source(std::fs::read(COUNTRY)?)?;
    let mut lines = String::new();
    let mut count = 0usize;
    for item in reader.networks(WithinOptions::default())? {
        let item = item?;
        let net = item.network()?;
        let net = ipnet::IpNet::new(net.ip(), net.prefix())?;
        if !matches!(net, ipnet::IpNet::V6(_)) || excluded.iter().any(|b| b.contains(&net)) {
            continue;
        }
        if item
            .decode::<Flat<'_>>()?
            .as_ref()
            .and_then(country_record)
            .is_none()
        {
            continue;
        }
        lines.push_str(&format!("{net}\n"));
        count += 1;
    }
    std::fs::write(out, lines)?;
    eprintln!("{out}: {count} IPv6 networks");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bench-geodb [--city V4.mmdb V6.mmdb] OUT.mmdb | --v6-networks OUT.txt";
    if let [flag, out] = args.as_slice()
        && flag == "--v6-networks"
    {
        return v6_networks(out);
    }
    let mut writer = mmdb_writer::Writer::new("GeoIP2-City");
    let out = match args.as_slice() {
        [out] => {
            // The embedded database has a point where its city data is far from the
            // country's centre, and the country alone elsewhere (placed at its centre).
            convert(&mut writer, EMBEDDED, |f| {
                city_record(f).or_else(|| country_record(f))
            })?;
            out
        }
        [flag, v4, v6, out] if flag == "--city" => {
            convert(&mut writer, v4, city_record)?;
            convert(&mut writer, v6, city_record)?;
            out
        }
        _ => return Err(usage.into()),
    };
    // PowerDNS's pickclosest locates each candidate address through GeoIP too: place every
    // endpoint of the benchmark zones at its region's coordinates.
    let zones = meridian::zone::load_dir(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/bench/zones"
    )))?;
    for zone in zones.zones() {
        for region in &zone.regions {
            for e in &region.endpoints {
                let record = City {
                    continent: BTreeMap::new(),
                    country: BTreeMap::new(),
                    location: Location {
                        latitude: region.location.lat,
                        longitude: region.location.lon,
                        accuracy_radius: 1,
                    },
                };
                writer.insert(ipnet::IpNet::from(e.address), &record)?;
            }
        }
    }
    let started = Instant::now();
    let bytes = writer.to_bytes()?;
    std::fs::write(out, &bytes)?;
    eprintln!(
        "{out}: {} bytes written ({:.1} s)",
        bytes.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
