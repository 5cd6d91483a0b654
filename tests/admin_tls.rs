//! The admin listener over HTTPS (rustls) with a certificate file: the API and dashboard
//! answer over TLS only, a renewed certificate is taken on SIGHUP without a restart, a
//! broken one is refused while the old one keeps serving, and bad files stop the start
//! with their path.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;

/// A CA (PEM) and a leaf for 127.0.0.1 signed by it, written to `cert.pem` and `key.pem`.
fn issue(dir: &Path) -> String {
    let (ca, leaf, leaf_key) = common::test_ca::leaf_for("127.0.0.1");
    // Written whole then renamed, as a certificate manager does.
    for (name, pem) in [
        ("cert.pem", leaf.pem()),
        ("key.pem", leaf_key.serialize_pem()),
    ] {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
    ca
}

fn client(ca: &str) -> reqwest::Client {
    meridian::health::probe::install_crypto_provider();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn healthz(client: &reqwest::Client, url: &str) -> Result<u16, String> {
    client
        .get(format!("{url}/healthz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

fn hup(server: &Server) {
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn the_admin_api_speaks_https_and_takes_a_renewed_certificate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let first_ca = issue(dir.path());
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let server = Server::start(&[
        "--admin-tls-cert",
        cert.to_str().unwrap(),
        "--admin-tls-key",
        key.to_str().unwrap(),
    ]);
    let addr = server.admin_addr();
    let url = format!("https://{addr}");
    let first = client(&first_ca);
    assert_eq!(healthz(&first, &url).await, Ok(200));
    let r = first
        .get(format!("{url}/api/v1/regions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let page = first.get(format!("{url}/")).send().await.unwrap();
    assert!(
        page.text().await.unwrap().contains("<html"),
        "dashboard over HTTPS"
    );

    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    assert!(
        plain
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .is_err()
    );

    // A renewed certificate (another CA) is served after SIGHUP; the old CA no longer works.
    let second_ca = issue(dir.path());
    hup(&server);
    let second = client(&second_ca);
    let deadline = Instant::now() + Duration::from_secs(10);
    while healthz(&client(&second_ca), &url).await != Ok(200) {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healthz(&client(&first_ca), &url).await.is_err());

    // A broken certificate file is refused on SIGHUP and the one in use stays.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    hup(&server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server
        .log_text()
        .contains("admin TLS certificate not reloaded")
    {
        assert!(Instant::now() < deadline, "{}", server.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(healthz(&second, &url).await, Ok(200));
}

#[test]
fn bad_certificate_files_stop_the_start_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    issue(dir.path());
    let cert = dir.path().join("cert.pem");
    let missing = dir.path().join("missing-key.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello\n").unwrap();
    let cases = [
        (
            vec!["--admin-tls-cert", cert.to_str().unwrap()],
            "needs both".to_string(),
        ),
        (
            vec![
                "--admin-tls-cert",
                cert.to_str().unwrap(),
                "--admin-tls-key",
                missing.to_str().unwrap(),
            ],
            format!("{}: cannot open: No such file", missing.display()),
        ),
        (
            vec![
                "--admin-tls-cert",
                garbage.to_str().unwrap(),
                "--admin-tls-key",
                cert.to_str().unwrap(),
            ],
            format!("{}: no certificate", garbage.display()),
        ),
    ];
    let state = tempfile::tempdir().unwrap();
    for (args, expected) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args([
                "serve",
                "--dns-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--state-dir")
            .arg(state.path())
            .arg("--zones")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("zones"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must not start");
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
    }
}

/// The admin listener's connection cap (`meridian::admin`).
const ADMIN_CONNECTIONS: usize = 64;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Connections that never start their TLS handshake count against the admin cap like any
/// other: they cannot take more descriptors than it, however many there are.
#[tokio::test]
async fn stalled_handshakes_hold_no_more_than_the_admin_cap() {
    let dir = tempfile::tempdir().unwrap();
    let ca = issue(dir.path());
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let server = Server::start(&[
        "--admin-tls-cert",
        cert.to_str().unwrap(),
        "--admin-tls-key",
        key.to_str().unwrap(),
    ]);
    let addr = server.admin_addr();
    let url = format!("https://{addr}");
    assert_eq!(healthz(&client(&ca), &url).await, Ok(200));
    let baseline = open_fds(server.pid());
    let mut held = Vec::new();
    for _ in 0..3 * ADMIN_CONNECTIONS {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            held.push(s);
        }
    }
    let mut peak = 0;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        peak = peak.max(open_fds(server.pid()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        peak <= baseline + ADMIN_CONNECTIONS + 8,
        "{} stalled connections held {peak} descriptors (baseline {baseline})",
        held.len()
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    while healthz(&client(&ca), &url).await != Ok(200) {
        assert!(
            Instant::now() < deadline,
            "the API answers once they are gone"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
