//! A GeoIP database replaced on disk (by rename, as updaters do, or rewritten in place) is
//! picked up without a restart; a corrupt replacement, one whose tree is damaged, one that
//! moves most probe addresses, or one that is not a regular file is refused with the reason,
//! and the running database keeps serving. At start the same files stop the server with
//! their path.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use common::Server;
use common::mmdb::{one_record_tree, tree_layout};

#[derive(Serialize)]
struct City {
    country_code: &'static str,
    latitude: f32,
    longitude: f32,
}

/// A database placing 81.2.69.0/24 at (lat, lon), written to `tmp` and renamed over `path`.
fn install(path: &Path, tmp: &Path, bytes: &[u8]) {
    std::fs::write(tmp, bytes).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

fn city_db(code: &'static str, lat: f32, lon: f32) -> Vec<u8> {
    let mut w = mmdb_writer::Writer::new("test-city");
    w.insert(
        "81.2.69.0/24".parse::<ipnet::IpNet>().unwrap(),
        &City {
            country_code: code,
            latitude: lat,
            longitude: lon,
        },
    )
    .unwrap();
    w.to_bytes().unwrap()
}

async fn answer(server: &Server) -> Vec<String> {
    common::www_answer(server, "81.2.69.0/24").await
}

#[tokio::test]
async fn a_replaced_database_is_picked_up_and_a_corrupt_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, tmp) = (
        dir.path().join("city.mmdb"),
        dir.path().join("city.mmdb.new"),
    );
    install(&path, &tmp, &city_db("GB", 51.5, -0.13));
    let server = Server::start(&["--geoip", path.to_str().unwrap()]);
    assert_eq!(answer(&server).await, ["198.51.100.10"], "London: eu-west");

    install(&path, &tmp, &city_db("JP", 35.68, 139.69));
    let deadline = Instant::now() + Duration::from_secs(15);
    while answer(&server).await != ["203.0.113.10"] {
        assert!(
            Instant::now() < deadline,
            "the new database was not picked up:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    install(&path, &tmp, b"not a maxmind database at all");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !server
        .log_text()
        .contains("is refused; the running one keeps serving")
    {
        assert!(
            Instant::now() < deadline,
            "the corrupt database was not refused:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        answer(&server).await,
        ["203.0.113.10"],
        "the running one serves"
    );
}

// ---------------------------------------------------------------------------------------------
// Files that are not what they seem: overwritten in place, not regular, or with a damaged tree.

/// The server's answer for 81.2.69.0/24 when the database does not know it: www's first
/// region.
const UNKNOWN_ANSWER: &str = "192.0.2.10";

/// Waits (bounded) until www's answer for 81.2.69.0/24 is `want`.
async fn wait_for_answer(server: &Server, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while answer(server).await != [want] {
        assert!(
            Instant::now() < deadline,
            "the answer did not become {want}:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `bytes` with a zeroed search tree: the metadata and data still valid, every node pointing
/// at the root, so that every lookup ends "not found".
fn zeroed_tree(mut bytes: Vec<u8>) -> Vec<u8> {
    let (tree_end, _, _) = tree_layout(&bytes);
    bytes[..tree_end].fill(0);
    bytes
}

fn country_db() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("geodata/geo-whois-asn-country.mmdb"))
        .unwrap()
}

#[tokio::test]
async fn a_database_overwritten_in_place_does_not_kill_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("city.mmdb");
    std::fs::write(&path, city_db("GB", 51.5, -0.13)).unwrap();
    let mut server = Server::start(&["--geoip", path.to_str().unwrap()]);
    assert_eq!(answer(&server).await, ["198.51.100.10"], "London: eu-west");

    // The same inode cut short, as `cp new.mmdb city.mmdb` does before it writes: a server
    // that maps the file reads past its end at the next lookup (SIGBUS).
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    for third in 0..=255u8 {
        let net = format!("81.2.{third}.0/24");
        common::www_answer(&server, &net).await;
    }
    server.assert_running();
    assert_eq!(answer(&server).await, ["198.51.100.10"], "still London");

    // The copy completes in place: the new content serves once it verifies.
    std::fs::write(&path, city_db("JP", 35.68, 139.69)).unwrap();
    wait_for_answer(&server, "203.0.113.10").await;
    server.assert_running();
}

#[test]
fn a_fifo_or_a_directory_given_as_geoip_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("city.mmdb");
    common::mkfifo(&fifo);
    let fifo = fifo.to_str().unwrap();
    common::assert_refused_at_start(&["--geoip", fifo], &[fifo, "not a regular file"]);
    let sub = dir.path().join("dir.mmdb");
    std::fs::create_dir(&sub).unwrap();
    let sub = sub.to_str().unwrap();
    common::assert_refused_at_start(&["--geoip", sub], &[sub, "not a regular file"]);
}

#[tokio::test]
async fn a_fifo_replacing_the_database_is_refused_and_the_watch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (path, tmp) = (
        dir.path().join("city.mmdb"),
        dir.path().join("city.mmdb.new"),
    );
    install(&path, &tmp, &city_db("GB", 51.5, -0.13));
    let server = Server::start(&["--geoip", path.to_str().unwrap()]);
    assert_eq!(answer(&server).await, ["198.51.100.10"]);

    common::mkfifo(&tmp);
    std::fs::rename(&tmp, &path).unwrap();
    common::wait_for_log(&server, &["is refused", "not a regular file"]).await;
    assert_eq!(
        answer(&server).await,
        ["198.51.100.10"],
        "the running one serves"
    );

    // The watcher was not left blocked on the FIFO: a real replacement is still picked up.
    install(&path, &tmp, &city_db("JP", 35.68, 139.69));
    wait_for_answer(&server, "203.0.113.10").await;
}

#[test]
fn a_database_with_a_damaged_tree_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("city.mmdb");
    std::fs::write(&path, zeroed_tree(city_db("GB", 51.5, -0.13))).unwrap();
    let p = path.to_str().unwrap();
    common::assert_refused_at_start(&["--geoip", p], &[p, "search tree"]);

    // Intact in shape, but every network in one country: the embedded database disagrees.
    std::fs::write(&path, one_record_tree(country_db(), "8.8.8.8")).unwrap();
    common::assert_refused_at_start(&["--geoip", p], &[p, "probe addresses"]);
}

#[tokio::test]
async fn a_replacement_with_a_damaged_tree_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (path, tmp) = (
        dir.path().join("city.mmdb"),
        dir.path().join("city.mmdb.new"),
    );
    install(&path, &tmp, &city_db("GB", 51.5, -0.13));
    let server = Server::start(&["--geoip", path.to_str().unwrap()]);
    assert_eq!(answer(&server).await, ["198.51.100.10"]);

    install(&path, &tmp, &zeroed_tree(city_db("JP", 35.68, 139.69)));
    common::wait_for_log(&server, &["is refused", "search tree"]).await;
    let now = answer(&server).await;
    assert_eq!(
        now,
        ["198.51.100.10"],
        "not {UNKNOWN_ANSWER}: the running one serves"
    );
}

#[tokio::test]
async fn a_replacement_that_moves_most_probe_addresses_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, tmp) = (
        dir.path().join("country.mmdb"),
        dir.path().join("country.mmdb.new"),
    );
    install(&path, &tmp, &country_db());
    let server = Server::start(&["--geoip", path.to_str().unwrap()]);
    assert_eq!(answer(&server).await, ["198.51.100.10"], "GB: eu-west");

    // Every network in the United States: a tree sound in shape, but not a geography.
    install(&path, &tmp, &one_record_tree(country_db(), "8.8.8.8"));
    common::wait_for_log(&server, &["is refused", "probe addresses"]).await;
    assert_eq!(
        answer(&server).await,
        ["198.51.100.10"],
        "the running one serves"
    );
}
