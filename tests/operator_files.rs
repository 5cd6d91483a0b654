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
