//! Writes the benchmark's GeoIP database: the embedded country database in the MaxMind
//! GeoIP2 City schema (`country.iso_code`, `continent.code`, `location.latitude/longitude`,
//! the point from Meridian's country table), so that gdnsd's `auto_dc_coords`, PowerDNS's
//! `pickclosest` and Meridian all locate every client at the same coordinates.
//!
//! Usage: cargo run --release --example bench-geodb -- OUT.mmdb

use std::collections::BTreeMap;

use maxminddb::{Reader, WithinOptions};
use serde::Serialize;

#[derive(Serialize)]
struct City {
    continent: BTreeMap<&'static str, &'static str>,
    country: BTreeMap<&'static str, &'static str>,
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
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: bench-geodb OUT.mmdb")?;
    let source = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/geodata/geo-whois-asn-country.mmdb"
    ))?;
    let reader = Reader::from_source(source)?;
    let mut writer = mmdb_writer::Writer::new("GeoIP2-City");
    let mut count = 0usize;
    for item in reader.networks(WithinOptions::default())? {
        let item = item?;
        let Some(flat) = item.decode::<Flat<'_>>()? else {
            continue;
        };
        let Some(c) = flat.country_code.and_then(meridian::geo::countries::lookup) else {
            continue;
        };
        let net = item.network()?;
        let net: ipnet::IpNet = ipnet::IpNet::new(net.ip(), net.prefix())?;
        let record = City {
            continent: BTreeMap::from([("code", c.continent.code())]),
            country: BTreeMap::from([("iso_code", c.code)]),
            location: Location {
                latitude: c.lat,
                longitude: c.lon,
                accuracy_radius: 1000,
            },
        };
        match writer.insert(net, &record) {
            Ok(()) => count += 1,
            // IPv4 seen again through an IPv6 alias (::ffff:0:0/96, 2002::/16): the writer
            // makes the same aliases itself.
            Err(mmdb_writer::Error::AliasedNetwork(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
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
    std::fs::write(&out, writer.to_bytes()?)?;
    eprintln!("{out}: {count} networks");
    Ok(())
}
