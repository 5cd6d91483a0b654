//! Zone files that are not regular files, through the running server: a reload that meets
//! one is refused with its path, and the zone it held keeps serving.

mod common;

use std::path::Path;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use common::Server;

const ORG_ZONE: &str = r#"zone = "example.org."
records = '''
$TTL 300
@     IN SOA ns1 hostmaster 1 7200 3600 1209600 300
@     IN NS  ns1
ns1   IN A   192.0.2.53
'''
"#;

async fn org_soa(server: &Server) -> ResponseCode {
    let client = common::udp_client(server.addr()).await;
    let r = common::query(&client, "example.org.", RecordType::SOA, None, Some(1232)).await;
    r.response_code
}

/// A server on the shipped zone and example.org., whose file is returned, both answering.
async fn serving_two_zones() -> (tempfile::TempDir, std::path::PathBuf, Server) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(
        repo.join("zones/example.com.toml"),
        dir.path().join("example.com.toml"),
    )
    .unwrap();
    let org = dir.path().join("example.org.toml");
    std::fs::write(&org, ORG_ZONE).unwrap();
    let server = Server::start_with_zones(dir.path(), &[]);
    assert_eq!(org_soa(&server).await, ResponseCode::NoError);
    (dir, org, server)
}

#[tokio::test]
async fn a_reload_meeting_a_zone_entry_that_is_not_a_file_is_refused_and_the_zone_serves() {
    let (_dir, org, server) = serving_two_zones().await;

    // The file becomes a FIFO (a botched deploy): the reload must not drop the zone quietly.
    std::fs::remove_file(&org).unwrap();
    common::mkfifo(&org);
    // SAFETY: kill(2) with the child's pid and a valid signal number.
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
    let org_path = org.display().to_string();
    common::wait_for_log(&server, &["reload refused", &org_path, "FIFO"]).await;
    assert_eq!(
        org_soa(&server).await,
        ResponseCode::NoError,
        "example.org. still serves"
    );
}

#[tokio::test]
async fn a_reload_after_a_zone_file_is_removed_drops_the_zone_and_says_so() {
    let (_dir, org, server) = serving_two_zones().await;

    std::fs::remove_file(&org).unwrap();
    // SAFETY: kill(2) with the child's pid and a valid signal number.
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
    common::wait_for_log(&server, &["zones dropped", "example.org."]).await;
    assert_eq!(org_soa(&server).await, ResponseCode::Refused);
}
