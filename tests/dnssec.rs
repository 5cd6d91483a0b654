//! DNSSEC checked by a real validator: unbound (with `subnetcache validator iterator`, so
//! each ECS variant is validated on its own) with the zone's DS as its trust anchor and stub
//! zones to `meridian serve` on loopback. A second unbound anchored on another key is the
//! negative control: it must answer SERVFAIL, so the check can fail.
//! `scripts/setup.sh` installs unbound; on a machine without it the tests say so and pass.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;

/// How long unbound may take to start answering.
const UNBOUND_DEADLINE: Duration = Duration::from_secs(20);

fn meridian(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .output()
        .expect("run meridian");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "meridian {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The shipped example zone with DNSSEC on, a wildcard, and its key made by `keygen` in
/// `state`; returns the zone directory and the DS line `keygen` printed.
fn signed_zone(dir: &Path, state: &Path) -> (PathBuf, String) {
    let zones = dir.join("zones");
    std::fs::create_dir_all(&zones).unwrap();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read_to_string(repo.join("zones/example.com.toml")).unwrap();
    let text = shipped
        .replacen(
            "zone = \"example.com.\"\n",
            "zone = \"example.com.\"\ndnssec = {}\n",
            1,
        )
        .replacen(
            "a.b      IN TXT",
            "*.wild   IN A     192.0.2.77\na.b      IN TXT",
            1,
        );
    assert_ne!(text, shipped);
    std::fs::write(zones.join("example.com.toml"), text).unwrap();
    let z = zones.to_str().unwrap();
    let s = state.to_str().unwrap();
    let out = meridian(&[
        "dnssec",
        "keygen",
        "--zone",
        "example.com",
        "--zones",
        z,
        "--state-dir",
        s,
    ]);
    let ds = out
        .lines()
        .find(|l| l.contains(" DS "))
        .unwrap_or_else(|| panic!("no DS in {out}"))
        .to_string();
    (zones, ds)
}

/// The delegated child `lab.example.com`, unsigned, for its own server.
fn child_zone(dir: &Path) -> PathBuf {
    let zones = dir.join("child");
    std::fs::create_dir_all(&zones).unwrap();
    std::fs::write(
        zones.join("lab.example.com.toml"),
        "zone = \"lab.example.com.\"\nrecords = '''\n$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ IN NS ns1\nns1 IN A 192.0.2.99\nhost IN A 192.0.2.123\n'''\n",
    )
    .unwrap();
    zones
}

/// A UDP port free on loopback now (unbound binds it a moment later).
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running unbound, killed on drop.
struct Unbound {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Unbound {
    /// Starts unbound validating with `anchor` (a DS line), example.com stubbed to `parent`
    /// and lab.example.com to `child`; waits until it answers.
    fn start(dir: &Path, anchor: &str, parent: SocketAddr, child: SocketAddr) -> Unbound {
        let port = free_port();
        let conf = dir.join(format!("unbound-{port}.conf"));
        let text = format!(
            r#"server:
    interface: 127.0.0.1
    port: {port}
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    val-log-level: 2
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    module-config: "subnetcache validator iterator"
    send-client-subnet: 127.0.0.1
    client-subnet-always-forward: yes
    max-client-subnet-ipv4: 24
    trust-anchor: "{anchor}"
    qname-minimisation: no
    target-fetch-policy: "0 0 0 0 0"
remote-control:
    control-enable: no
stub-zone:
    name: "example.com"
    stub-addr: {p}@{pp}
stub-zone:
    name: "lab.example.com"
    stub-addr: {c}@{cp}
"#,
            dir = dir.display(),
            p = parent.ip(),
            pp = parent.port(),
            c = child.ip(),
            cp = child.port(),
        );
        std::fs::write(&conf, text).unwrap();
        let child = Command::new("unbound")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start unbound");
        let unbound = Unbound {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + UNBOUND_DEADLINE;
        loop {
            if let Some(out) = dig(unbound.addr, &["lab.example.com", "NS"])
                && out.contains("status:")
            {
                return unbound;
            }
            assert!(Instant::now() < deadline, "unbound did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// dig's output, or `None` when it got no answer.
fn dig(server: SocketAddr, args: &[&str]) -> Option<String> {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+tries=1", "+time=3"])
        .args(args)
        .output()
        .expect("dig is installed (scripts/setup.sh)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ask(unbound: &Unbound, args: &[&str]) -> String {
    dig(unbound.addr, args).unwrap_or_else(|| panic!("unbound gave no answer to {args:?}"))
}

/// Whether the header says AD (authenticated data).
fn validated(out: &str) -> bool {
    out.lines()
        .find(|l| l.starts_with(";; flags:"))
        .is_some_and(|l| l.split(';').nth(2).is_some_and(|f| f.contains(" ad")))
}

fn have_unbound() -> bool {
    let ok = Command::new("unbound")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: unbound is not installed (scripts/setup.sh installs it)");
    }
    ok
}

#[test]
fn unbound_validates_every_kind_of_answer() {
    if !have_unbound() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (zones, ds) = signed_zone(dir.path(), &state);
    let parent = Server::start_with_zones(&zones, &["--state-dir", state.to_str().unwrap()]);
    let child = Server::start_with_zones(&child_zone(dir.path()), &[]);
    let unbound = Unbound::start(dir.path(), &ds, parent.addr(), child.addr());

    let positive = [
        ("static.example.com", "A", "IN\tA\t192.0.2.80"),
        ("static.example.com", "AAAA", "IN\tAAAA\t2001:db8::80"),
        ("example.com", "DNSKEY", "IN\tDNSKEY\t257 3 13 "),
        ("example.com", "SOA", "IN\tSOA\tns1.example.com."),
        ("alias.example.com", "A", "IN\tCNAME\twww.example.com."),
        // RFC 4035 §5.3.4: signed as *.wild, with the next closer name proven absent.
        ("x.wild.example.com", "A", "IN\tA\t192.0.2.77"),
        ("x.y.wild.example.com", "A", "IN\tA\t192.0.2.77"),
    ];
    for (name, qtype, expect) in positive {
        let out = ask(&unbound, &[name, qtype, "+dnssec"]);
        assert!(out.contains("status: NOERROR"), "{name} {qtype}: {out}");
        assert!(validated(&out), "{name} {qtype} not validated: {out}");
        assert!(out.contains(expect), "{name} {qtype}: {out}");
    }

    // Each ECS variant is its own signed RRset, validated on its own.
    let continents = [
        ("81.2.69.0/24", "198.51.100.10"),
        ("8.8.8.0/24", "192.0.2.10"),
        ("1.1.1.0/24", "203.0.113.10"),
    ];
    for (subnet, address) in continents {
        let ecs = format!("+subnet={subnet}");
        let out = ask(&unbound, &["www.example.com", "A", "+dnssec", &ecs]);
        assert!(validated(&out), "{subnet}: {out}");
        assert!(
            out.contains(&format!("IN\tA\t{address}")),
            "{subnet}: {out}"
        );
    }

    // Compact denial (RFC 9824): NODATA, an empty non-terminal, wildcard no-data, a DS
    // absent at the cut, and a name that does not exist, all proven.
    let negative = [
        ("static.example.com", "TXT"),
        ("b.example.com", "TXT"),
        ("x.wild.example.com", "TXT"),
        ("lab.example.com", "DS"),
        ("nope.example.com", "A"),
    ];
    for (name, qtype) in negative {
        let out = ask(&unbound, &[name, qtype, "+dnssec"]);
        assert!(
            out.contains("status: NOERROR") || out.contains("status: NXDOMAIN"),
            "{name} {qtype}: {out}"
        );
        assert!(out.contains("ANSWER: 0,"), "{name} {qtype}: {out}");
        assert!(validated(&out), "{name} {qtype} not validated: {out}");
    }

    // An insecure delegation: the NSEC at the cut proves no DS, so the child's unsigned
    // answer is accepted, and not marked authenticated.
    let out = ask(&unbound, &["host.lab.example.com", "A", "+dnssec"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("IN\tA\t192.0.2.123"), "{out}");
    assert!(
        !validated(&out),
        "an insecure child is not authenticated: {out}"
    );
}

#[test]
fn unbound_anchored_on_another_key_answers_servfail() {
    if !have_unbound() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (zones, _) = signed_zone(dir.path(), &state);
    // The same zone with a key of its own: its DS is the wrong anchor for the served key.
    let other = tempfile::tempdir().unwrap();
    let (_, wrong) = signed_zone(other.path(), &other.path().join("state"));
    let parent = Server::start_with_zones(&zones, &["--state-dir", state.to_str().unwrap()]);
    let child = Server::start_with_zones(&child_zone(dir.path()), &[]);
    let unbound = Unbound::start(dir.path(), &wrong, parent.addr(), child.addr());
    for (name, qtype) in [("static.example.com", "A"), ("nope.example.com", "A")] {
        let out = ask(&unbound, &[name, qtype, "+dnssec"]);
        assert!(out.contains("status: SERVFAIL"), "{name} {qtype}: {out}");
    }
}

/// `meridian check` with `zones` and `state`: (success, stdout + stderr).
fn check(zones: &Path, state: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["check", "--zones"])
        .arg(zones)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_refuses_a_signed_zone_without_a_usable_key_at_its_dnssec_line() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (zones, ds) = signed_zone(dir.path(), &state);
    let file = zones.join("example.com.toml");
    let key = state.join("dnssec/example.com.key");
    let tag = ds.split_whitespace().nth(4).unwrap();

    let (ok, out) = check(&zones, &state);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("signed: ecdsap256sha256 key tag {tag}")),
        "{out}"
    );

    // The key open to others.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, out) = check(&zones, &state);
    assert!(!ok);
    assert!(
        out.contains(&format!("{}:6: dnssec: key file", file.display())),
        "{out}"
    );
    assert!(out.contains("mode 0644"), "{out}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A key of another algorithm than the zone file says.
    let text = std::fs::read_to_string(&file).unwrap();
    let ed = text.replacen("dnssec = {}", "dnssec = { algorithm = \"ed25519\" }", 1);
    std::fs::write(&file, &ed).unwrap();
    let (ok, out) = check(&zones, &state);
    assert!(!ok);
    assert!(out.contains("not a PKCS#8 ed25519 private key"), "{out}");

    // An unknown algorithm, at its line.
    let bad = text.replacen("dnssec = {}", "dnssec = { algorithm = \"rsasha1\" }", 1);
    std::fs::write(&file, &bad).unwrap();
    let (ok, out) = check(&zones, &state);
    assert!(!ok);
    assert!(out.contains(":6: dnssec: algorithm \"rsasha1\""), "{out}");

    // No key at all.
    std::fs::write(&file, &text).unwrap();
    std::fs::remove_file(&key).unwrap();
    let (ok, out) = check(&zones, &state);
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "{}:6: dnssec is on but the key file {} does not exist",
            file.display(),
            key.display()
        )),
        "{out}"
    );
    // keygen does not overwrite a key that is there.
    let z = zones.to_str().unwrap();
    let s = state.to_str().unwrap();
    meridian(&[
        "dnssec",
        "keygen",
        "--zone",
        "example.com",
        "--zones",
        z,
        "--state-dir",
        s,
    ]);
    let again = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args([
            "dnssec",
            "keygen",
            "--zone",
            "example.com",
            "--zones",
            z,
            "--state-dir",
            s,
        ])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
}
