//! Files an operator names besides zones and GeoIP (the config file, the admin token file, the
//! admin TLS certificate and key, the cookie secret in the state directory): anything that is not a regular file is refused at start with
//! its path and what it is, never waited on (a FIFO's open blocks until a writer comes).

mod common;

#[test]
fn a_fifo_or_a_directory_given_as_config_tokens_or_certificate_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    common::mkfifo(&fifo);
    let fifo = fifo.to_str().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let sub = sub.to_str().unwrap();
    for path in [fifo, sub] {
        common::assert_refused_at_start(&["--config", path], &[path, "not a regular file"]);
        common::assert_refused_at_start(
            &["--admin-token-file", path],
            &[path, "not a regular file"],
        );
        common::assert_refused_at_start(
            &["--admin-tls-cert", path, "--admin-tls-key", path],
            &[path, "not a regular file"],
        );
    }
}

#[test]
fn a_fifo_in_place_of_the_cookie_secret_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cookie-secret");
    common::mkfifo(&secret);
    common::assert_refused_at_start(
        &["--state-dir", dir.path().to_str().unwrap()],
        &[secret.to_str().unwrap(), "not a regular file but a FIFO"],
    );
}

/// A sparse file of a terabyte given as the config, the token file or a TLS file (or as a
/// zone file) is refused at once with its size, before a byte is read (before: no bound; the
/// whole file was read into memory).
#[test]
fn a_file_far_larger_than_its_kind_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.toml");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let path = huge.to_str().unwrap();
    let words = [path, "1099511627776 octets, over the"];
    common::assert_refused_at_start(&["--config", path], &words);
    common::assert_refused_at_start(&["--admin-token-file", path], &words);
    common::assert_refused_at_start(&["--admin-tls-cert", path, "--admin-tls-key", path], &words);
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    std::fs::File::create(zones.join("big.toml"))
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["check", "--zones"])
        .arg(&zones)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("big.toml: 1099511627776 octets, over the"),
        "{stderr}"
    );
}
