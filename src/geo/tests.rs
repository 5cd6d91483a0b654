//! Locating clients: both MMDB schemas from small fixtures written with mmdb-writer and
//! opened from files as in production, the embedded database, the cache and errors; files
//! that are not databases to serve (not regular, damaged trees, a world moved to one
//! country).

use std::collections::BTreeMap;
use std::io::Write as _;

use ipnet::IpNet;
use mmdb_writer::Writer;
use serde::Serialize;

use super::countries::Continent;
use super::*;

#[path = "../../tests/common/mmdb.rs"]
mod mmdb;
use mmdb::{one_record_tree, set_record, tree_layout};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// Writes `writer` to a temporary file and opens it as [`GeoDb::open`] does in production.
/// The file is returned too, for tests that open it again.
fn open(writer: &Writer) -> (GeoDb, tempfile::NamedTempFile) {
    let bytes = writer.to_bytes().expect("fixture serializes");
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&bytes).unwrap();
    file.flush().unwrap();
    let db = GeoDb::open(file.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(db.name(), file.path().display().to_string());
    (db, file)
}

#[track_caller]
fn assert_close(got: GeoPoint, lat: f64, lon: f64, tolerance: f64) {
    assert!(
        (got.lat - lat).abs() < tolerance && (got.lon - lon).abs() < tolerance,
        "got {got:?}, want {lat}, {lon}"
    );
}

// ---- ip-location-db flat schemas ----

#[derive(Serialize)]
struct FlatCity {
    country_code: &'static str,
    latitude: f32,
    longitude: f32,
}

#[derive(Serialize)]
struct FlatCountry {
    country_code: &'static str,
}

#[test]
fn flat_city_schema_gives_coordinates_and_the_database_network() {
    let mut w = Writer::new("ip-location-db-city");
    let london = FlatCity {
        country_code: "GB",
        latitude: 51.5072,
        longitude: -0.1276,
    };
    w.insert(net("5.9.10.0/24"), &london).unwrap();
    let sydney = FlatCity {
        country_code: "AU",
        latitude: -33.8688,
        longitude: 151.2093,
    };
    w.insert(net("2a02:d00:100::/40"), &sydney).unwrap();
    let (db, _file) = open(&w);

    let loc = db.locate(net("5.9.10.77/32"));
    assert_eq!(loc.precision, Precision::Coordinates);
    assert_eq!(loc.network, net("5.9.10.0/24"));
    assert_close(loc.point.unwrap(), 51.5072, -0.1276, 1e-4);
    assert_eq!(loc.country, Some("GB"));
    assert_eq!(
        loc.continent,
        Some(Continent::Europe),
        "continent from the country table"
    );

    let loc = db.locate(net("2a02:d00:1ff::/48"));
    assert_eq!(loc.precision, Precision::Coordinates);
    assert_eq!(loc.network, net("2a02:d00:100::/40"));
    assert_close(loc.point.unwrap(), -33.8688, 151.2093, 1e-4);
    assert_eq!(loc.country, Some("AU"));
    assert_eq!(loc.continent, Some(Continent::Oceania));
}

#[test]
fn flat_country_schema_falls_back_to_the_country_point() {
    let mut w = Writer::new("ip-location-db-country");
    w.insert(net("89.160.20.0/24"), &FlatCountry { country_code: "JP" })
        .unwrap();
    let (db, _file) = open(&w);

    let loc = db.locate(net("89.160.20.0/24"));
    assert_eq!(loc.precision, Precision::Country);
    assert_eq!(loc.network, net("89.160.20.0/24"));
    assert_eq!(loc.country, Some("JP"));
    assert_eq!(loc.continent, Some(Continent::Asia));
    let jp = countries::lookup("JP").unwrap();
    assert_eq!(
        loc.point,
        Some(GeoPoint {
            lat: jp.lat,
            lon: jp.lon
        })
    );
}

#[test]
fn unknown_country_code_without_coordinates_is_unknown() {
    let mut w = Writer::new("ip-location-db-country");
    w.insert(net("89.160.20.0/24"), &FlatCountry { country_code: "ZZ" })
        .unwrap();
    let (db, _file) = open(&w);
    let loc = db.locate(net("89.160.20.1/32"));
    assert_eq!(loc.precision, Precision::Unknown);
    assert_eq!(loc.point, None);
    assert_eq!(loc.network, net("89.160.20.0/24"));
}

// ---- MaxMind GeoIP2 schemas ----

#[derive(Serialize)]
struct IsoCode {
    iso_code: &'static str,
    names: BTreeMap<&'static str, &'static str>,
}

#[derive(Serialize)]
struct ContinentCode {
    code: &'static str,
}

#[derive(Serialize)]
struct GeoLocation {
    latitude: f64,
    longitude: f64,
    accuracy_radius: u16,
}

#[derive(Serialize)]
struct GeoIp2 {
    continent: ContinentCode,
    country: IsoCode,
    registered_country: IsoCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<GeoLocation>,
}

fn iso(code: &'static str) -> IsoCode {
    IsoCode {
        iso_code: code,
        names: BTreeMap::from([("en", "somewhere")]),
    }
}

#[test]
fn geoip2_city_schema_gives_coordinates_and_its_own_continent() {
    let mut w = Writer::new("GeoIP2-City");
    // Russia is Europe in the table; the record's continent wins where it says otherwise.
    let novosibirsk = GeoIp2 {
        continent: ContinentCode { code: "AS" },
        country: iso("RU"),
        registered_country: iso("RU"),
        location: Some(GeoLocation {
            latitude: 55.0415,
            longitude: 82.9346,
            accuracy_radius: 50,
        }),
    };
    w.insert(net("175.16.199.0/25"), &novosibirsk).unwrap();
    let (db, _file) = open(&w);

    let loc = db.locate(net("175.16.199.0/24"));
    assert_eq!(loc.precision, Precision::Coordinates);
    assert_eq!(loc.network, net("175.16.199.0/25"));
    assert_close(loc.point.unwrap(), 55.0415, 82.9346, 1e-9);
    assert_eq!(loc.country, Some("RU"));
    assert_eq!(loc.continent, Some(Continent::Asia));
}

#[test]
fn geoip2_country_schema_falls_back_to_the_country_point() {
    let mut w = Writer::new("GeoIP2-Country");
    let us = GeoIp2 {
        continent: ContinentCode { code: "NA" },
        country: iso("US"),
        registered_country: iso("US"),
        location: None,
    };
    w.insert(net("2a02:d00:4000::/34"), &us).unwrap();
    let (db, _file) = open(&w);

    let loc = db.locate(net("2a02:d00:4000::1/128"));
    assert_eq!(loc.precision, Precision::Country);
    assert_eq!(loc.network, net("2a02:d00:4000::/34"));
    assert_eq!(loc.country, Some("US"));
    assert_eq!(loc.continent, Some(Continent::NorthAmerica));
    let us = countries::lookup("US").unwrap();
    assert_eq!(
        loc.point,
        Some(GeoPoint {
            lat: us.lat,
            lon: us.lon
        })
    );
}

#[test]
fn geoip2_registered_country_is_used_when_country_is_absent() {
    #[derive(Serialize)]
    struct Registered {
        registered_country: IsoCode,
    }
    let mut w = Writer::new("GeoIP2-Country");
    w.insert(
        net("5.9.10.0/24"),
        &Registered {
            registered_country: iso("DE"),
        },
    )
    .unwrap();
    let (db, _file) = open(&w);
    let loc = db.locate(net("5.9.10.1/32"));
    assert_eq!(loc.precision, Precision::Country);
    assert_eq!(loc.country, Some("DE"));
    assert_eq!(loc.continent, Some(Continent::Europe));
}

// ---- misses ----

#[test]
fn address_not_in_the_database_is_unknown_with_the_empty_network() {
    let mut w = Writer::new("ip-location-db-city");
    let rec = FlatCity {
        country_code: "GB",
        latitude: 51.5,
        longitude: -0.12,
    };
    w.insert(net("5.9.10.0/24"), &rec).unwrap();
    w.insert(net("2a02:d00::/32"), &rec).unwrap();
    let (db, _file) = open(&w);

    for client in [
        "175.16.199.9/32",
        "8.8.8.0/24",
        "2a00:1450::/32",
        "2001:db9::1/128",
    ] {
        let client = net(client);
        let loc = db.locate(client);
        assert_eq!(loc.precision, Precision::Unknown, "{client}");
        assert_eq!((loc.point, loc.country, loc.continent), (None, None, None));
        assert!(
            loc.network.prefix_len() > 0,
            "{client}: the empty subtree has a prefix: {}",
            loc.network
        );
        assert!(
            loc.network.contains(&client.addr()),
            "{client} not in {}",
            loc.network
        );
        assert!(
            !loc.network.contains(&net("5.9.10.0/24").addr())
                && !loc.network.contains(&net("2a02:d00::/32").addr()),
            "{client}: {} must not cover known networks",
            loc.network
        );
    }
}

// ---- embedded database ----

#[test]
fn embedded_database_locates_well_known_networks() {
    let db = GeoDb::embedded().expect("the embedded database is valid");
    assert!(db.name().contains("embedded"));
    assert!(!db.describe().is_empty());
    // City points on a 2-degree grid where they lie far from their country's centre;
    // elsewhere the country alone, placed at its centre.
    for (client, country, point) in [
        ("81.2.69.0/24", "GB", None),
        // Google and Stanford in the Bay Area, the University of Washington in Seattle.
        ("8.8.8.0/24", "US", Some((37.0, -123.0))),
        ("171.64.0.0/16", "US", Some((37.0, -123.0))),
        ("128.95.0.0/16", "US", Some((47.0, -123.0))),
        // IPv6: Hetzner, IIJ, and AWS in Oregon.
        ("2a01:4f8::/32", "DE", None),
        ("2001:240::/32", "JP", None),
        ("2600:1f14::/48", "US", Some((45.0, -119.0))),
    ] {
        let client = net(client);
        let loc = db.locate(client);
        assert_eq!(loc.country, Some(country), "{client}: {loc:?}");
        let c = countries::lookup(country).unwrap();
        let (precision, (lat, lon)) = match point {
            Some(p) => (Precision::Coordinates, p),
            None => (Precision::Country, (c.lat, c.lon)),
        };
        assert_eq!(loc.precision, precision, "{client}");
        assert_eq!(loc.point, Some(GeoPoint { lat, lon }), "{client}");
        assert_eq!(loc.continent, Some(c.continent));
        assert!(
            loc.network.contains(&client.addr()) && loc.network.prefix_len() > 0,
            "{client}: {}",
            loc.network
        );
    }
}

#[test]
fn cache_returns_the_same_location_and_ignores_host_bits() {
    let db = GeoDb::embedded().unwrap();
    let first = db.locate(net("81.2.69.0/24"));
    assert!(db.cache.contains_key(&net("81.2.69.0/24")));
    let second = db.locate(net("81.2.69.0/24"));
    assert_eq!(first, second);
    let host_bits = db.locate(net("81.2.69.123/24"));
    assert_eq!(first, host_bits);
    assert!(
        !db.cache.contains_key(&net("81.2.69.123/24")),
        "keys are truncated"
    );
    // And the same answer as an uncached lookup.
    assert_eq!(first, db.lookup(net("81.2.69.0/24").addr()));
}

// ---- errors ----

#[test]
fn open_missing_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such.mmdb");
    let err = GeoDb::open(&path).unwrap_err();
    assert!(matches!(err, GeoError::File { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("cannot open"), "{msg}");
}

#[test]
fn open_garbage_file_names_the_path() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"this is not a MaxMind database\n").unwrap();
    file.flush().unwrap();
    let err = GeoDb::open(file.path()).unwrap_err();
    assert!(matches!(err, GeoError::Invalid { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&file.path().display().to_string()), "{msg}");
    assert!(msg.contains("not a MaxMind DB"), "{msg}");
}

#[test]
fn open_or_embedded_picks_the_file_when_given() {
    let mut w = Writer::new("ip-location-db-country");
    w.insert(net("89.160.20.0/24"), &FlatCountry { country_code: "FR" })
        .unwrap();
    let (_db, file) = open(&w);
    let db = GeoDb::open_or_embedded(&[file.path().to_owned()]).unwrap();
    assert_eq!(db.locate(net("89.160.20.0/24")).country, Some("FR"));
    let db = GeoDb::open_or_embedded(&[]).unwrap();
    assert!(db.name().contains("embedded"));
}

#[test]
fn special_purpose_space_is_unknown_whatever_the_database_says() {
    // The embedded database places 192.168.0.0/16 in Australia; a private client is unknown,
    // for the whole block, so its answer and scope are the default region's.
    let db = GeoDb::embedded().unwrap();
    for (client, block) in [
        ("192.168.1.0/24", "192.168.0.0/16"),
        ("172.20.0.0/16", "172.16.0.0/12"),
        ("10.1.2.3/32", "10.0.0.0/8"),
        ("fd12:3456::/48", "fc00::/7"),
        ("2001:db8:1::/48", "2001:db8::/32"),
        // Wider than its block, a client network whose first address is private is the
        // block's too, as the table places that address (proptest regression).
        ("192.168.0.0/13", "192.168.0.0/16"),
    ] {
        let loc = db.locate(net(client));
        assert_eq!(loc.precision, Precision::Unknown, "{client}");
        assert_eq!(loc.network, net(block), "{client}");
    }
    // The location table agrees: the whole of 192.168.0.0/16 is one unknown range.
    let t = db.table().unwrap();
    let private = |a: &str| {
        t.v4.ids[t
            .v4
            .find(u32::from(a.parse::<std::net::Ipv4Addr>().unwrap()))]
    };
    assert_eq!(private("192.168.0.0"), table::UNKNOWN);
    assert_eq!(private("192.168.255.255"), table::UNKNOWN);
    assert_eq!(
        t.v4.find(u32::from(std::net::Ipv4Addr::new(192, 168, 0, 0))),
        t.v4.find(u32::from(std::net::Ipv4Addr::new(192, 168, 255, 255)))
    );
}

fn write_file(writer: &Writer) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&writer.to_bytes().unwrap()).unwrap();
    file.flush().unwrap();
    file
}

#[test]
fn separate_ipv4_and_ipv6_files_each_answer_their_family() {
    // As ip-location-db ships DB-IP city: an IPv4-only file and an IPv6 file.
    let mut v4 = Writer::builder("city ipv4")
        .ip_version(mmdb_writer::IpVersion::V4)
        .build();
    let tokyo = FlatCity {
        country_code: "JP",
        latitude: 35.68,
        longitude: 139.69,
    };
    v4.insert(net("1.0.16.0/20"), &tokyo).unwrap();
    let mut v6 = Writer::new("city ipv6");
    let paris = FlatCity {
        country_code: "FR",
        latitude: 48.86,
        longitude: 2.35,
    };
    v6.insert(net("2a01:e00::/26"), &paris).unwrap();
    let (f4, f6) = (write_file(&v4), write_file(&v6));
    // Either order: each family goes to its own file.
    for paths in [
        [f4.path().to_owned(), f6.path().to_owned()],
        [f6.path().to_owned(), f4.path().to_owned()],
    ] {
        let db = GeoDb::open_or_embedded(&paths).unwrap();
        assert_eq!(db.locate(net("1.0.16.0/24")).country, Some("JP"));
        assert_eq!(db.locate(net("2a01:e00::/48")).country, Some("FR"));
    }
    // An IPv4-only database alone leaves IPv6 clients unknown, with a non-zero network.
    let db = GeoDb::open_or_embedded(&[f4.path().to_owned()]).unwrap();
    let loc = db.locate(net("2a01:e00::/48"));
    assert_eq!(loc.precision, Precision::Unknown);
    assert_eq!(loc.network.prefix_len(), 1);
}

#[test]
fn two_databases_for_one_family_are_refused() {
    let v4 = Writer::builder("a")
        .ip_version(mmdb_writer::IpVersion::V4)
        .build();
    let (a, b) = (write_file(&v4), write_file(&v4));
    let err = GeoDb::open_or_embedded(&[a.path().to_owned(), b.path().to_owned()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("both IPv4 databases"), "{err}");
}

// ---- files that are not databases to serve ----

#[test]
fn a_fifo_a_directory_or_a_device_is_refused_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("city.mmdb");
    crate::files::mkfifo(&fifo);
    for (path, kind) in [
        (fifo.as_path(), "a FIFO"),
        (dir.path(), "a directory"),
        (std::path::Path::new("/dev/null"), "a character device"),
    ] {
        let err = GeoDb::open(path).unwrap_err();
        assert!(matches!(err, GeoError::File { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("not a regular file but {kind}")),
            "{msg}"
        );
    }
}

#[test]
fn the_database_is_a_private_copy_that_a_rewrite_in_place_cannot_reach() {
    let mut w = Writer::new("ip-location-db-country");
    w.insert(net("89.160.20.0/24"), &FlatCountry { country_code: "SE" })
        .unwrap();
    let file = write_file(&w);
    let db = GeoDb::open(file.path()).unwrap();
    // Cut short and rewritten in place (same inode): a mapped file would raise SIGBUS here.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(file.path())
        .unwrap();
    f.set_len(0).unwrap();
    std::fs::write(file.path(), b"half a database").unwrap();
    assert_eq!(db.locate(net("89.160.20.0/24")).country, Some("SE"));
}

/// The bytes of the embedded database, to damage.
fn embedded_bytes() -> Vec<u8> {
    EMBEDDED.to_vec()
}

fn write_bytes(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    file.flush().unwrap();
    file
}

#[track_caller]
fn assert_damaged(bytes: &[u8], words: &str) {
    let file = write_bytes(bytes);
    let err = GeoDb::open(file.path()).unwrap_err();
    assert!(matches!(err, GeoError::Damaged { .. }), "{err:?}");
    assert!(err.to_string().contains(words), "{err}");
}

#[test]
fn the_embedded_database_and_the_fixtures_pass_the_tree_check() {
    let file = write_bytes(EMBEDDED);
    GeoDb::open(file.path()).unwrap_or_else(|e| panic!("{e}"));
    let mut w = Writer::new("ip-location-db-city");
    w.insert(net("5.9.10.0/24"), &FlatCountry { country_code: "GB" })
        .unwrap();
    open(&w);
}

#[test]
fn a_zeroed_tree_under_valid_metadata_is_refused() {
    let mut bytes = embedded_bytes();
    let (tree, nodes, _) = tree_layout(&bytes);
    bytes[..tree].fill(0);
    assert_damaged(&bytes, &format!("reaches only 1 of its {nodes} nodes"));
}

#[test]
fn a_tree_pointing_past_its_data_is_refused() {
    let mut bytes = embedded_bytes();
    let (tree, nodes, bits) = tree_layout(&bytes);
    // The largest record there is, past the data section (and the metadata after it).
    let past = (1 << bits) - 1;
    assert!(past > nodes + bytes.len() - tree);
    set_record(&mut bytes, 0, 1, bits, past);
    assert_damaged(&bytes, "points outside the data section");
}

#[test]
fn a_tree_with_the_wrong_record_size_is_refused() {
    // The tree is read with the wrong node size: the separator lands in the middle of it.
    let mut bytes = embedded_bytes();
    let (tree, _, _) = tree_layout(&bytes);
    bytes[tree..tree + 16].fill(0xff);
    assert_damaged(&bytes, "no 16 zero octets after the search tree");
}

#[test]
fn the_embedded_database_knows_enough_probe_addresses_to_judge() {
    let embedded = GeoDb::embedded().unwrap();
    let drift = verify::drift(&embedded, &embedded, true);
    assert!(drift.compared >= 200, "{drift:?}");
    assert_eq!(drift.moved, 0);
}

#[test]
fn a_database_placing_every_network_in_one_country_is_refused_at_start() {
    let file = write_bytes(&one_record_tree(embedded_bytes(), "8.8.8.8"));
    // Sound in shape: the tree check alone accepts it.
    GeoDb::open(file.path()).unwrap();
    let err = GeoDb::open_or_embedded(&[file.path().to_owned()]).unwrap_err();
    let GeoError::Moved {
        moved, compared, ..
    } = err
    else {
        panic!("{err:?}");
    };
    assert!(moved * 2 > compared && compared >= 200, "{err}");
    assert!(err.to_string().contains("-> US"), "{err}");
}

#[test]
fn a_small_database_is_not_judged_at_start_but_may_not_replace_a_large_one() {
    let mut w = Writer::new("ip-location-db-country");
    w.insert(net("89.160.20.0/24"), &FlatCountry { country_code: "SE" })
        .unwrap();
    let small = write_file(&w);
    // It knows no probe address: nothing to compare with the embedded database.
    GeoDb::open_or_embedded(&[small.path().to_owned()]).unwrap();
    // Replacing a database that knows them, it would make them all unknown.
    let running = GeoDb::embedded().unwrap();
    let err = GeoDb::open_replacement(&[small.path().to_owned()], &running).unwrap_err();
    assert!(matches!(err, GeoError::Moved { .. }), "{err:?}");
    assert!(err.to_string().contains("-> unknown"), "{err}");
    assert!(
        err.to_string().contains("the running database places"),
        "{err}"
    );
    // A replacement that agrees with it is taken.
    let same = write_bytes(EMBEDDED);
    GeoDb::open_replacement(&[same.path().to_owned()], &running).unwrap();
}

#[test]
fn the_embedded_asn_database_names_a_client_s_as_and_its_network() {
    let geo = GeoDb::embedded().expect("embedded databases load");
    let cloudflare = geo.locate("1.1.1.0/24".parse().expect("a network"));
    let asn = cloudflare.asn.expect("1.1.1.0/24 is announced");
    assert_eq!(asn.number, 13335);
    assert!(asn.organisation.starts_with("Cloudflare"), "{asn:?}");
    assert!(
        asn.network
            .contains(&"1.1.1.1".parse::<std::net::IpAddr>().expect("an address"))
    );
    let google = geo.locate("2a00:1450:4001::/48".parse().expect("a network"));
    assert_eq!(google.asn.map(|a| a.number), Some(15169));
    // Special-purpose space has no AS, whatever a database holds there.
    assert_eq!(
        geo.locate("10.1.0.0/16".parse().expect("a network")).asn,
        None
    );
}

/// The control plane's [`GeoDb::place`] places an address where `locate` does, from the
/// database before the table is walked and from the table after, and fills no cache entry.
#[test]
fn place_is_where_locate_places_an_address_and_fills_no_cache() {
    let db = GeoDb::embedded().unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let addrs: Vec<IpAddr> = (0..4000)
        .map(|i| {
            let r = next();
            if i % 2 == 0 {
                IpAddr::from((r as u32).to_be_bytes())
            } else {
                // In 2a00::/8, which RIPE has largely handed out.
                IpAddr::from((u128::from(r >> 8 | 0x2a << 56) << 64).to_be_bytes())
            }
        })
        .collect();
    let before: Vec<_> = addrs.iter().map(|&a| db.place(a)).collect();
    db.cache.run_pending_tasks();
    assert_eq!(db.cache.entry_count(), 0, "point reads past the cache");
    db.table().unwrap();
    let located = |v6: bool| {
        let family = addrs.iter().filter(|a| a.is_ipv6() == v6);
        family.filter(|a| db.place(**a).point().is_some()).count()
    };
    assert!(
        located(false) > 1000,
        "{} of 2000 IPv4 placed",
        located(false)
    );
    assert!(located(true) > 100, "{} of 2000 IPv6 placed", located(true));
    for (a, b) in addrs.iter().zip(&before) {
        let truth = table::Place::of(&db.locate(IpNet::from(*a)));
        assert_eq!(*b, truth, "{a} before the table");
        assert_eq!(db.place(*a), truth, "{a} from the table");
    }
}
