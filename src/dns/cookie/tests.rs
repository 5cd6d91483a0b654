use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn rfc9018() -> Cookies {
    Cookies::new(
        parse_hex("e5e973e5a6b2a43f48e7dc849e37bfcf").unwrap(),
        DEFAULT_AMPLIFICATION,
    )
}

const CLIENT: &str = "2464c4abcf10c957";
const A1_SERVER: &str = "010000005cf79f111f8130c3eee29480";
const A1_AT: u32 = 1_559_731_985;
const A2_AT: u32 = 1_559_734_385;

fn ip() -> IpAddr {
    "198.51.100.100".parse().unwrap()
}

#[test]
fn rfc9018_a1_a_new_server_cookie() {
    let body = hex(CLIENT);
    let reply = rfc9018().reply(&parse(&body).unwrap(), ip(), A1_AT);
    assert_eq!(reply.option.to_vec(), hex(&format!("{CLIENT}{A1_SERVER}")));
    assert!(!reply.valid, "a client cookie alone proves nothing");
}

#[test]
fn rfc9018_a2_renewed_after_forty_minutes() {
    let body = hex(&format!("{CLIENT}{A1_SERVER}"));
    let reply = rfc9018().reply(&parse(&body).unwrap(), ip(), A2_AT);
    assert!(reply.valid);
    assert_eq!(
        reply.option.to_vec(),
        hex(&format!("{CLIENT}010000005cf7a871d4a564a1442aca77"))
    );
}

#[test]
fn a_fresh_valid_cookie_comes_back_unchanged() {
    let body = hex(&format!("{CLIENT}{A1_SERVER}"));
    let reply = rfc9018().reply(&parse(&body).unwrap(), ip(), A1_AT + 60);
    assert!(reply.valid);
    assert_eq!(reply.option.to_vec(), body);
}

#[test]
fn cookies_fail_from_another_address_too_old_too_far_ahead_or_altered() {
    let cookies = rfc9018();
    let body = hex(&format!("{CLIENT}{A1_SERVER}"));
    let sent = parse(&body).unwrap();
    assert!(cookies.verifies(&sent, ip(), A1_AT + MAX_AGE));
    assert!(!cookies.verifies(&sent, ip(), A1_AT + MAX_AGE + 1));
    assert!(cookies.verifies(&sent, ip(), A1_AT - MAX_AHEAD));
    assert!(!cookies.verifies(&sent, ip(), A1_AT - MAX_AHEAD - 1));
    assert!(!cookies.verifies(&sent, "198.51.100.101".parse().unwrap(), A1_AT));
    for i in CLIENT_LEN..body.len() {
        let mut altered = body.clone();
        altered[i] ^= 1;
        assert!(
            !cookies.verifies(&parse(&altered).unwrap(), ip(), A1_AT),
            "octet {i} altered"
        );
    }
    let other = Cookies::new([7; 16], DEFAULT_AMPLIFICATION);
    assert!(!other.verifies(&sent, ip(), A1_AT), "another secret");
    // An invalid server cookie still gets a fresh, valid one (RFC 7873 §5.2.3).
    let reply = other.reply(&sent, ip(), A1_AT);
    assert!(!reply.valid);
    assert!(other.verifies(&parse(&reply.option).unwrap(), ip(), A1_AT + 1));
}

#[test]
fn ipv6_clients_get_cookies_bound_to_their_address() {
    let cookies = rfc9018();
    let a: IpAddr = "2001:db8:220:1:59de:d0f4:8769:82b8".parse().unwrap();
    let b: IpAddr = "2001:db8:220:1:59de:d0f4:8769:82b9".parse().unwrap();
    let body = hex("2464c4abcf10c957");
    let reply = cookies.reply(&parse(&body).unwrap(), a, A1_AT);
    let back = parse(&reply.option).unwrap();
    assert!(cookies.verifies(&back, a, A1_AT));
    assert!(!cookies.verifies(&back, b, A1_AT));
}

#[test]
fn malformed_lengths_are_refused() {
    for n in [0, 1, 7, 9, 15, 41, 100] {
        assert_eq!(parse(&vec![0; n]), Err(Malformed(n)), "{n} octets");
    }
    for n in [8, 16, 24, 40] {
        assert!(parse(&vec![0; n]).is_ok(), "{n} octets");
    }
}

#[test]
fn the_limit_applies_only_without_a_valid_cookie_and_can_be_off() {
    let c = Cookies::new([0; 16], 4);
    assert_eq!(c.limit(40, false), Some(160));
    assert_eq!(c.limit(40, true), None);
    assert_eq!(Cookies::new([0; 16], 0).limit(40, false), None);
}

#[test]
fn the_secret_file_is_created_once_then_reused_and_bad_ones_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cookie-secret");
    let first = Cookies::load_or_create(&path, 4).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = Cookies::load_or_create(&path, 4).unwrap();
    assert_eq!(first.secret, again.secret);
    std::fs::write(&path, "not hex\n").unwrap();
    let err = Cookies::load_or_create(&path, 4).unwrap_err().to_string();
    assert!(
        err.contains("cookie-secret") && err.contains("32 hexadecimal"),
        "{err}"
    );
    assert_eq!(format!("{first:?}"), "Cookies { amplification: 4 }");
}

#[test]
fn a_fifo_in_place_of_the_secret_is_refused_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cookie-secret");
    crate::files::mkfifo(&path);
    let at = path.clone();
    let loaded = crate::files::within(std::time::Duration::from_secs(5), move || {
        Cookies::load_or_create(&at, 4).map(|_| ())
    });
    let err = loaded.expect_err("a FIFO holds no secret").to_string();
    assert_eq!(
        err,
        format!("{}: not a regular file but a FIFO", path.display())
    );
}
