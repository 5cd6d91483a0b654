//! HTTPS health checks against a real TLS server on loopback, with a CA made for the test:
//! verification is on by default, a `ca-file` is trusted alone, `tls-verify = false` turns it
//! off, and the Host/SNI comes from `host` while the connection goes to the check address.
//! Checked through `meridian route --probe`, which runs the same probes as the server.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: &str = "www.probe.test";

/// A CA (PEM) and a TLS server for `HOST` signed by it, answering 200 "ok".
async fn tls_server() -> (String, SocketAddr) {
    let (ca, leaf, leaf_key) = common::test_ca::leaf_for(HOST);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (ca, addr)
}

/// `meridian route --probe` for a zone whose eu-west endpoint is checked over HTTPS with
/// `health` (inline TOML keys); returns stdout.
fn route_probe(dir: &Path, target: SocketAddr, health: &str) -> String {
    let zones = dir.join("zones");
    std::fs::create_dir_all(&zones).unwrap();
    std::fs::write(
        zones.join("probe.test.toml"),
        format!(
            r#"zone = "probe.test."
records = '''
$TTL 300
@ IN SOA ns1 hostmaster 1 7200 3600 1209600 60
@ IN NS ns1
ns1 IN A 127.0.0.53
'''

[regions.eu-west]
location = {{ lat = 53.35, lon = -6.26 }}
endpoints = [{{ address = "127.0.1.1", check-address = "{target}" }}]
health = {{ check = "https", path = "/health", timeout = 2, interval = 3, {health} }}

[regions.us-east]
location = {{ lat = 39.04, lon = -77.49 }}
endpoints = ["127.0.2.1"]

[steered.www]
regions = ["us-east", "eu-west"]
"#
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args([
            "route",
            "--name",
            "www.probe.test",
            "--client",
            "81.2.69.0/24",
            "--probe",
        ])
        .arg("--zones")
        .arg(&zones)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn https_checks_verify_against_the_given_ca_and_send_the_host_as_sni() {
    let (ca, target) = tls_server().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("zones")).unwrap();
    std::fs::write(dir.path().join("zones/ca.pem"), &ca).unwrap();
    let dirp = dir.path().to_owned();

    // Trusted CA, right host: the probe passes and eu-west answers the GB client.
    let out = tokio::task::spawn_blocking({
        let d = dirp.clone();
        move || {
            route_probe(
                &d,
                target,
                &format!("host = \"{HOST}\", ca-file = \"ca.pem\""),
            )
        }
    })
    .await
    .unwrap();
    assert!(out.contains("probe ok"), "{out}");
    assert!(
        out.contains("answer: www.probe.test. 30 IN A 127.0.1.1"),
        "{out}"
    );

    // Verification on by default: the system roots do not know the test CA.
    let out = tokio::task::spawn_blocking({
        let d = dirp.clone();
        move || route_probe(&d, target, &format!("host = \"{HOST}\""))
    })
    .await
    .unwrap();
    assert!(out.contains("probe failed: tls:"), "{out}");
    assert!(
        out.contains("answer: www.probe.test. 30 IN A 127.0.2.1"),
        "{out}"
    );

    // Trusted CA, but a name the certificate is not for: refused.
    let out = tokio::task::spawn_blocking({
        let d = dirp.clone();
        move || {
            route_probe(
                &d,
                target,
                "host = \"other.probe.test\", ca-file = \"ca.pem\"",
            )
        }
    })
    .await
    .unwrap();
    assert!(out.contains("probe failed: tls:"), "{out}");

    // Verification turned off for this check: passes without the CA.
    let out = tokio::task::spawn_blocking({
        let d = dirp.clone();
        move || {
            route_probe(
                &d,
                target,
                &format!("host = \"{HOST}\", tls-verify = false"),
            )
        }
    })
    .await
    .unwrap();
    assert!(out.contains("probe ok"), "{out}");
}

/// A CA file that is no PEM (replaced after the zone was written, say) is this node's fault,
/// not the target's: `route --probe` says so and keeps the endpoint and its region up (before:
/// "probe failed: bad CA file", the region down and the answer moved to us-east).
#[tokio::test]
async fn a_ca_file_this_node_cannot_use_is_shown_as_a_local_fault() {
    let (_, target) = tls_server().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("zones")).unwrap();
    std::fs::write(
        dir.path().join("zones/ca.pem"),
        "-----BEGIN CERTIFICATE-----\n!!! not base64 !!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let d = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        route_probe(
            &d,
            target,
            &format!("host = \"{HOST}\", ca-file = \"ca.pem\""),
        )
    })
    .await
    .unwrap();
    let eu = out
        .lines()
        .find(|l| l.trim_start().starts_with("127.0.1.1"))
        .unwrap_or_else(|| panic!("no line for eu-west's endpoint:\n{out}"));
    assert!(
        eu.contains("local fault: this node cannot probe: bad CA file"),
        "{eu}\n{out}"
    );
    assert!(eu.contains(" up   check https"), "{eu}\n{out}");
    assert!(
        out.contains("answer: www.probe.test. 30 IN A 127.0.1.1"),
        "{out}"
    );
}
