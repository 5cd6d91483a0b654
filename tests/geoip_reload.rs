//! A GeoIP database replaced on disk (by rename, as updaters do) is picked up without a
//! restart; a corrupt replacement is refused and the running database keeps serving.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use common::Server;

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
