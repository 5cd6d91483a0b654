//! DNSSEC checked by real validators: unbound (with `subnetcache validator iterator`, so
//! each ECS variant is validated on its own) and Knot Resolver, each with the zone's DS as
//! its trust anchor and stub zones (forwards, for kresd) to `meridian serve` on loopback; and
//! BIND's `delv`. A validator anchored on another key is the negative control: it must
//! answer SERVFAIL, so the check can fail. `scripts/setup.sh` installs all three; on a
//! machine without one, its tests say so and pass.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use common::daemon::Daemon;

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

/// The server's /metrics text.
fn metrics(server: &Server) -> String {
    get(server, "/metrics")
}

/// The response to a GET of `path` from the server's admin API, headers included.
fn get(server: &Server, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.admin_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A running validating resolver (unbound or kresd), killed on drop.
struct Resolver {
    daemon: Daemon,
}

/// The validators these tests run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Validator {
    Unbound,
    /// Knot Resolver 5.6: forwards to the servers and validates; it sends no ECS upstream.
    Kresd,
}

impl Validator {
    fn command(self) -> &'static str {
        match self {
            Validator::Unbound => "unbound",
            Validator::Kresd => "kresd",
        }
    }

    /// Whether it is installed; says so when not.
    fn installed(self) -> bool {
        let ok = Command::new(self.command())
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "skipped {}: not installed (scripts/setup.sh installs it)",
                self.command()
            );
        }
        ok
    }

    fn start(self, dir: &Path, anchor: &str, parent: SocketAddr, child: SocketAddr) -> Resolver {
        match self {
            Validator::Unbound => Resolver::start_unbound(dir, anchor, parent, child),
            Validator::Kresd => Resolver::start_kresd(dir, anchor, parent, child),
        }
    }
}

impl Resolver {
    /// Starts unbound validating with `anchor` (a DS line), example.com stubbed to `parent`
    /// and lab.example.com to `child`; waits until it answers.
    fn start_unbound(dir: &Path, anchor: &str, parent: SocketAddr, child: SocketAddr) -> Resolver {
        Resolver::start_unbound_stubs(
            dir,
            anchor,
            &[("example.com", parent), ("lab.example.com", child)],
            "lab.example.com",
        )
    }

    /// Starts unbound validating with `anchor`, each zone of `stubs` stubbed to its server;
    /// waits until it answers for `probe` (NS).
    fn start_unbound_stubs(
        dir: &Path,
        anchor: &str,
        stubs: &[(&str, SocketAddr)],
        probe: &str,
    ) -> Resolver {
        let config = |port: u16| {
            let conf = dir.join(format!("unbound-{port}.conf"));
            let mut text = format!(
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
"#,
                dir = dir.display(),
            );
            for (zone, addr) in stubs {
                text.push_str(&format!(
                    "stub-zone:\n    name: \"{zone}\"\n    stub-addr: {}@{}\n",
                    addr.ip(),
                    addr.port()
                ));
            }
            std::fs::write(&conf, text).unwrap();
            let mut unbound = Command::new("unbound");
            unbound.arg("-d").arg("-c").arg(&conf);
            unbound
        };
        Resolver::start_ready(dir, "unbound", config, probe)
    }

    /// Starts Knot Resolver validating with `anchor`, forwarding example.com to `parent` and
    /// lab.example.com to `child`, and refusing everything else; nothing leaves loopback.
    fn start_kresd(dir: &Path, anchor: &str, parent: SocketAddr, child: SocketAddr) -> Resolver {
        let config = |port: u16| {
            let conf = dir.join(format!("kresd-{port}.conf"));
            let text = format!(
                r#"net.listen('127.0.0.1', {port}, {{ kind = 'dns' }})
-- Loopback only: no root anchor to refresh, no priming, no clock check against the root.
trust_anchors.remove('.')
modules.unload('detect_time_skew')
modules.unload('priming')
modules.unload('ta_signal_query')
trust_anchors.add('{anchor}')
-- A forwarder asks the child for everything below the cut, DS included: DS lives at the
-- parent (RFC 4035 §3.1.4.1), so that one goes there.
local parent = policy.FORWARD({{'{p}@{pp}'}})
local cut = todname('lab.example.com.')
policy.add(function(_, query)
    if query.stype == kres.type.DS and kres.dname2str(query.sname) == 'lab.example.com.' then return parent end
end)
policy.add(policy.suffix(policy.FORWARD({{'{c}@{cp}'}}), {{cut}}))
policy.add(policy.suffix(parent, {{todname('example.com.')}}))
policy.add(policy.all(policy.REFUSE))
"#,
                p = parent.ip(),
                pp = parent.port(),
                c = child.ip(),
                cp = child.port(),
            );
            std::fs::write(&conf, text).unwrap();
            let work = dir.join(format!("kresd-{port}"));
            std::fs::create_dir_all(&work).unwrap();
            let mut kresd = Command::new("kresd");
            kresd.arg("-n").arg("-c").arg(&conf).arg(&work);
            kresd
        };
        Resolver::start_ready(dir, "kresd", config, "lab.example.com")
    }

    /// Starts the resolver `command(port)` builds and waits until it answers for `probe`
    /// (NS) with any status: readiness, not validation, which the tests judge.
    fn start_ready(
        dir: &Path,
        name: &str,
        command: impl FnMut(u16) -> Command,
        probe: &str,
    ) -> Resolver {
        let ready = |addr| dig(addr, &[probe, "NS"]).is_some_and(|out| out.contains("status:"));
        Resolver {
            daemon: Daemon::start(dir, name, command, ready),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.daemon.addr
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

fn ask(resolver: &Resolver, args: &[&str]) -> String {
    dig(resolver.addr(), args).unwrap_or_else(|| panic!("no answer to {args:?}"))
}

/// Whether the header says AD (authenticated data).
fn validated(out: &str) -> bool {
    out.lines()
        .find(|l| l.starts_with(";; flags:"))
        .is_some_and(|l| l.split(';').nth(2).is_some_and(|f| f.contains(" ad")))
}

#[test]
fn unbound_validates_every_kind_of_answer() {
    validates_every_kind_of_answer(Validator::Unbound);
}

#[test]
fn kresd_validates_every_kind_of_answer() {
    validates_every_kind_of_answer(Validator::Kresd);
}

fn validates_every_kind_of_answer(validator: Validator) {
    if !validator.installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (zones, ds) = signed_zone(dir.path(), &state);
    let parent = Server::start_with_zones(&zones, &["--state-dir", state.to_str().unwrap()]);
    let child = Server::start_with_zones(&child_zone(dir.path()), &[]);
    let resolver = validator.start(dir.path(), &ds, parent.addr(), child.addr());

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
        let out = ask(&resolver, &[name, qtype, "+dnssec"]);
        assert!(
            out.contains("status: NOERROR"),
            "{validator:?} {name} {qtype}: {out}"
        );
        assert!(
            validated(&out),
            "{validator:?} {name} {qtype} not validated: {out}"
        );
        assert!(out.contains(expect), "{validator:?} {name} {qtype}: {out}");
    }

    // Each ECS variant is its own signed RRset, validated on its own (by unbound's
    // subnetcache: Knot Resolver 5.6 sends no ECS upstream).
    let continents = [
        ("81.2.69.0/24", "198.51.100.10"),
        ("8.8.8.0/24", "192.0.2.10"),
        ("1.1.1.0/24", "203.0.113.10"),
    ];
    let continents = if validator == Validator::Unbound {
        &continents[..]
    } else {
        &[]
    };
    for &(subnet, address) in continents {
        let ecs = format!("+subnet={subnet}");
        let out = ask(&resolver, &["www.example.com", "A", "+dnssec", &ecs]);
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
        let out = ask(&resolver, &[name, qtype, "+dnssec"]);
        assert!(
            out.contains("status: NOERROR") || out.contains("status: NXDOMAIN"),
            "{validator:?} {name} {qtype}: {out}"
        );
        assert!(
            out.contains("ANSWER: 0,"),
            "{validator:?} {name} {qtype}: {out}"
        );
        assert!(
            validated(&out),
            "{validator:?} {name} {qtype} not validated: {out}"
        );
    }

    // An insecure delegation: the NSEC at the cut proves no DS, so the child's unsigned
    // answer is accepted, and not marked authenticated.
    // The server counted the signatures it made.
    let metrics = metrics(&parent);
    let made: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("meridian_dnssec_signatures_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no signature counter in:\n{metrics}"));
    assert!(made >= 10, "{made} signatures");
    assert!(metrics.contains("meridian_dnssec_signing_seconds_total "));

    let out = ask(&resolver, &["host.lab.example.com", "A", "+dnssec"]);
    assert!(out.contains("status: NOERROR"), "{validator:?}: {out}");
    assert!(out.contains("IN\tA\t192.0.2.123"), "{out}");
    assert!(
        !validated(&out),
        "an insecure child is not authenticated: {out}"
    );
}

#[test]
fn unbound_anchored_on_another_key_answers_servfail() {
    anchored_on_another_key_answers_servfail(Validator::Unbound);
}

#[test]
fn kresd_anchored_on_another_key_answers_servfail() {
    anchored_on_another_key_answers_servfail(Validator::Kresd);
}

fn anchored_on_another_key_answers_servfail(validator: Validator) {
    if !validator.installed() {
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
    let resolver = validator.start(dir.path(), &wrong, parent.addr(), child.addr());
    for (name, qtype) in [("static.example.com", "A"), ("nope.example.com", "A")] {
        let out = ask(&resolver, &[name, qtype, "+dnssec"]);
        assert!(
            out.contains("status: SERVFAIL"),
            "{validator:?} {name} {qtype}: {out}"
        );
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

    // A validity shorter than the day a signature is made on.
    let short = text.replacen("dnssec = {}", "dnssec = { validity-days = 1 }", 1);
    std::fs::write(&file, &short).unwrap();
    let (ok, out) = check(&zones, &state);
    assert!(!ok);
    assert!(
        out.contains(":6: dnssec: validity-days 1 is not in 2..=90"),
        "{out}"
    );

    // A refresh margin as long as the validity: no window could start before it is due.
    let refresh = text.replacen("dnssec = {}", "dnssec = { refresh-days = 8 }", 1);
    std::fs::write(&file, &refresh).unwrap();
    let (ok, out) = check(&zones, &state);
    assert!(!ok);
    assert!(
        out.contains(":6: dnssec: refresh-days 8 is not in 1..=7"),
        "{out}"
    );
    let weekly = text.replacen(
        "dnssec = {}",
        "dnssec = { validity-days = 14, refresh-days = 7 }",
        1,
    );
    std::fs::write(&file, &weekly).unwrap();
    assert!(check(&zones, &state).0);

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

/// delv's verdict on `name`/`qtype` from `server` with the trust anchor in `anchors`.
fn delv(server: SocketAddr, anchors: &Path, name: &str, qtype: &str) -> String {
    let out = Command::new("delv")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "-a"])
        .arg(anchors)
        .args(["+root=example.com", name, qtype])
        .output()
        .expect("run delv");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A delv anchor file for a DS line (`example.com. 3600 IN DS tag alg type digest`).
fn delv_anchors(dir: &Path, ds: &str) -> PathBuf {
    let f: Vec<&str> = ds.split_whitespace().collect();
    let path = dir.join("delv-anchors.conf");
    std::fs::write(
        &path,
        format!(
            "trust-anchors {{ {} static-ds {} {} {} \"{}\"; }};\n",
            f[0], f[4], f[5], f[6], f[7]
        ),
    )
    .unwrap();
    path
}

#[test]
fn delv_fully_validates_answers_and_denials() {
    if !Command::new("delv")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipped delv: not installed (scripts/setup.sh installs bind9-dnsutils)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (zones, ds) = signed_zone(dir.path(), &state);
    let server = Server::start_with_zones(&zones, &["--state-dir", state.to_str().unwrap()]);
    let anchors = delv_anchors(dir.path(), &ds);
    let cases = [
        ("static.example.com", "A", "; fully validated"),
        ("www.example.com", "AAAA", "; fully validated"),
        ("alias.example.com", "A", "; fully validated"),
        ("x.y.wild.example.com", "A", "; fully validated"),
        ("example.com", "DNSKEY", "; fully validated"),
        ("static.example.com", "NSEC", "; fully validated"),
        (
            "static.example.com",
            "TXT",
            "; negative response, fully validated",
        ),
        (
            "b.example.com",
            "TXT",
            "; negative response, fully validated",
        ),
        (
            "x.wild.example.com",
            "MX",
            "; negative response, fully validated",
        ),
        (
            "lab.example.com",
            "DS",
            "; negative response, fully validated",
        ),
        (
            "nope.example.com",
            "A",
            "; negative response, fully validated",
        ),
    ];
    for (name, qtype, verdict) in cases {
        let out = delv(server.addr(), &anchors, name, qtype);
        assert!(out.contains(verdict), "{name} {qtype}: {out}");
    }
    // The negative control: another key's anchor validates nothing.
    let other = tempfile::tempdir().unwrap();
    let (_, wrong) = signed_zone(other.path(), &other.path().join("state"));
    let anchors = delv_anchors(other.path(), &wrong);
    let out = delv(server.addr(), &anchors, "static.example.com", "A");
    assert!(!out.contains("validated"), "{out}");
    assert!(out.contains("resolution failed"), "{out}");
}

#[test]
fn route_shows_the_zones_key_and_signature_window() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (zones, ds) = signed_zone(dir.path(), &state);
    let tag = ds.split_whitespace().nth(4).unwrap();
    let z = zones.to_str().unwrap();
    let route = |state: &str| {
        meridian(&[
            "route",
            "--name",
            "www.example.com",
            "--client",
            "81.2.69.0/24",
            "--zones",
            z,
            "--state-dir",
            state,
        ])
    };
    let out = route(state.to_str().unwrap());
    let line = out
        .lines()
        .find(|l| l.starts_with("dnssec "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains(&format!(
            "ecdsap256sha256 key tag {tag}; signatures made now: "
        )),
        "{line}"
    );
    assert!(line.ends_with(":00 UTC"), "{line}");
    assert!(line.contains("; next window from "), "{line}");
    // The running server tells the same, through `route` and the zones of its API.
    use std::io::{Read, Write};
    let server = Server::start_with_zones(&zones, &["--state-dir", state.to_str().unwrap()]);
    let admin = server.admin_addr().to_string();
    let out = meridian(&[
        "route",
        "--name",
        "www.example.com",
        "--client",
        "81.2.69.0/24",
        "--server",
        &admin,
    ]);
    assert!(!out.contains("offline"), "{out}");
    assert!(out.contains(line), "{out}");
    let mut s = std::net::TcpStream::connect(&admin).unwrap();
    write!(
        s,
        "GET /api/v1/zones HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or("");
    let zones: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {reply}"));
    let d = &zones[0]["dnssec"];
    assert_eq!(d["key_tag"].to_string(), tag, "{zones}");
    assert_eq!(d["algorithm"], "ecdsap256sha256", "{zones}");
    assert!(
        d["next_window"].as_u64() > d["inception"].as_u64(),
        "{zones}"
    );
    // Without its key the route is still explained, and says why the key is missing.
    let out = route(dir.path().join("elsewhere").to_str().unwrap());
    assert!(
        out.contains("dnssec    ecdsap256sha256; key not loaded: "),
        "{out}"
    );
    assert!(out.contains("198.51.100.10"), "{out}");
}

/// A key rollover watched by unbound: the parent `com.` (signed, its DS the trust anchor)
/// and the child `example.com.` on two servers, every TTL 2 s so that the rollover's waits
/// are seconds.
struct Rollover {
    dir: tempfile::TempDir,
    state: PathBuf,
    zones: PathBuf,
    parent_zones: PathBuf,
    parent: Server,
    child: Server,
    resolver: Resolver,
}

/// The child zone: every TTL 2 s.
const CHILD_ZONE: &str = "zone = \"example.com.\"\ndnssec = {}\nrecords = '''\n$TTL 2\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 2\n@ IN NS ns1\nns1 IN A 127.0.0.1\nstatic IN A 192.0.2.80\n'''\n";

impl Rollover {
    /// Starts the servers and unbound; `split` gives the child a KSK and a ZSK.
    fn start(split: bool) -> Option<Rollover> {
        if !Validator::Unbound.installed() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let zones = dir.path().join("zones");
        std::fs::create_dir_all(&zones).unwrap();
        std::fs::write(zones.join("example.com.toml"), CHILD_ZONE).unwrap();
        let mut keygen = vec!["keygen"];
        if split {
            keygen.push("--split");
        }
        let ds: Vec<String> = Self::cli(&zones, &state, "example.com", &keygen)
            .lines()
            .filter(|l| l.contains(" DS "))
            .map(str::to_string)
            .collect();
        assert_eq!(ds.len(), 1, "{ds:?}");

        let parent_zones = dir.path().join("parent");
        let parent_state = dir.path().join("parent-state");
        std::fs::create_dir_all(&parent_zones).unwrap();
        write_parent(&parent_zones, &ds);
        let anchor = Self::cli(&parent_zones, &parent_state, "com", &["keygen"])
            .lines()
            .find(|l| l.contains(" DS "))
            .unwrap()
            .to_string();
        let parent = Server::start_with_zones(
            &parent_zones,
            &["--state-dir", parent_state.to_str().unwrap()],
        );
        let child = Server::start_with_zones(&zones, &["--state-dir", state.to_str().unwrap()]);
        let resolver = Resolver::start_unbound_stubs(
            dir.path(),
            &anchor,
            &[("com", parent.addr()), ("example.com", child.addr())],
            "example.com",
        );
        Some(Rollover {
            dir,
            state,
            zones,
            parent_zones,
            parent,
            child,
            resolver,
        })
    }

    fn cli(zones: &Path, state: &Path, zone: &str, args: &[&str]) -> String {
        let mut all = vec!["dnssec", args[0], "--zone", zone];
        all.extend(["--zones", zones.to_str().unwrap()]);
        all.extend(["--state-dir", state.to_str().unwrap()]);
        all.extend(&args[1..]);
        meridian(&all)
    }

    /// `meridian dnssec ARGS` on the child: (success, output).
    fn try_cli(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(["dnssec", args[0], "--zone", "example.com", "--zones"])
            .arg(&self.zones)
            .arg("--state-dir")
            .arg(&self.state)
            .args(&args[1..])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Every answer validates now: a static name, the DNSKEY RRset, a name that does not
    /// exist; and the DS at the parent.
    fn assert_validates(&self, when: &str) {
        for (name, qtype) in [
            ("static.example.com", "A"),
            ("example.com", "DNSKEY"),
            ("nope.example.com", "A"),
            ("example.com", "DS"),
        ] {
            let out = ask(&self.resolver, &[name, qtype, "+dnssec"]);
            assert!(
                !out.contains("status: SERVFAIL") && validated(&out),
                "{when}: {name} {qtype} not validated: {out}"
            );
        }
    }

    /// Validates for `for_` (at least once).
    fn validate_for(&self, for_: Duration, when: &str) {
        let end = Instant::now() + for_;
        loop {
            self.assert_validates(when);
            if Instant::now() >= end {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// How many reloads the child has logged.
    fn reloads(&self) -> usize {
        self.child
            .log_lines()
            .iter()
            .filter(|l| l.contains("zones reloaded"))
            .count()
    }

    /// Waits until the child has logged a reload since it had logged `before`.
    fn wait_reload_after(&self, before: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.reloads() == before {
            assert!(
                Instant::now() < deadline,
                "the server did not pick up the key set after {what}: {}",
                self.child.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `rollover ARGS`, then waits until the child has reloaded the key set on its own.
    fn step(&self, args: &[&str]) -> String {
        let before = self.reloads();
        let mut all = vec!["rollover"];
        all.extend(args);
        let (ok, out) = self.try_cli(&all);
        assert!(ok, "rollover {args:?}: {out}");
        self.wait_reload_after(before, &out);
        out
    }

    /// Takes the next step once it is safe, validating all the while. A step that waits for
    /// TTLs (3 s here) is refused as too early right after the last one; the wait of
    /// propagation alone (1 s) may be over by then.
    fn next_when_safe(&self, when: &str) -> String {
        let before = self.reloads();
        let (ok, out) = self.try_cli(&["rollover", "--next"]);
        if !when.ends_with("submitted") {
            assert!(!ok, "{when}: taken too early: {out}");
            assert!(out.contains("too early: step "), "{out}");
            assert!(out.contains("is safe from "), "{out}");
        } else if ok {
            self.wait_reload_after(before, &out);
            return out;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.validate_for(Duration::from_millis(500), when);
            let status = self.try_cli(&["status"]).1;
            let next = status
                .lines()
                .find(|l| l.starts_with("next: "))
                .unwrap_or("");
            // The safe time is to the second; the status says it.
            let before = self.reloads();
            let (ok, out) = self.try_cli(&["rollover", "--next"]);
            if ok {
                self.wait_reload_after(before, &out);
                return out;
            }
            assert!(out.contains("too early"), "{when}: {out}");
            assert!(Instant::now() < deadline, "{when}: never safe: {next}");
        }
    }

    /// Puts the DS records the child offers now (`meridian dnssec ds`) at the parent, and
    /// waits until the parent serves them.
    fn parent_takes_the_ds(&self) {
        let ds: Vec<String> = self
            .try_cli(&["ds"])
            .1
            .lines()
            .filter(|l| l.contains(" DS "))
            .map(str::to_string)
            .collect();
        write_parent(&self.parent_zones, &ds);
        Command::new("kill")
            .args(["-HUP", &self.parent.pid().to_string()])
            .status()
            .unwrap();
        let tags: Vec<&str> = ds
            .iter()
            .map(|l| l.split_whitespace().nth(4).unwrap())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = dig(self.parent.addr(), &["example.com", "DS", "+short"]).unwrap_or_default();
            let served: Vec<&str> = out
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            if served.len() == tags.len() && tags.iter().all(|t| served.contains(t)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the parent serves {out}, not {tags:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The key tags of the RRSIGs the child puts on `name`/`qtype` now.
    fn signing_tags(&self, name: &str, qtype: &str) -> Vec<u16> {
        let out = dig(self.child.addr(), &[name, qtype, "+dnssec"]).unwrap();
        let mut tags: Vec<u16> = out
            .lines()
            .filter(|l| !l.starts_with(';'))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() > 10 && f[3] == "RRSIG" && f[4] == qtype)
            .map(|f| f[10].parse().unwrap())
            .collect();
        tags.sort_unstable();
        tags
    }

    /// The tags `status` lists for keys that `does` (`signs zone`, `published`, ...).
    fn keys_that(&self, does: &str) -> Vec<u16> {
        let mut tags: Vec<u16> = self
            .try_cli(&["status"])
            .1
            .lines()
            .filter(|l| l.starts_with("key ") && l.contains(does))
            .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
            .collect();
        tags.sort_unstable();
        tags
    }
}

/// The parent zone `com.`, delegating example.com with `ds`.
fn write_parent(zones: &Path, ds: &[String]) {
    let mut text = String::from(
        "zone = \"com.\"\ndnssec = {}\nrecords = '''\n$TTL 2\n@ IN SOA ns1.nic hostmaster.nic 1 7200 3600 1209600 2\n@ IN NS ns1.nic\nns1.nic IN A 127.0.0.1\nexample IN NS ns1.example.net.\n",
    );
    for line in ds {
        let f: Vec<&str> = line.split_whitespace().collect();
        text.push_str(&format!(
            "example 2 IN DS {} {} {} {}\n",
            f[4], f[5], f[6], f[7]
        ));
    }
    text.push_str("'''\n");
    std::fs::write(zones.join("com.toml"), text).unwrap();
}

#[test]
fn unbound_keeps_validating_through_a_zsk_and_a_ksk_rollover() {
    let Some(r) = Rollover::start(true) else {
        return;
    };
    r.validate_for(Duration::ZERO, "split keys");
    let (ksk, zsk) = (r.keys_that("signs keys"), r.keys_that("signs zone"));
    assert_eq!(r.signing_tags("static.example.com", "A"), zsk);
    assert_eq!(r.signing_tags("example.com", "DNSKEY"), ksk);
    let timing = ["--ds-ttl", "2", "--propagation", "1"];

    // ZSK pre-publish: the new key is published, then signs, then the old one leaves.
    let mut start = vec!["--kind", "zsk"];
    start.extend(timing);
    r.step(&start);
    let published = r.keys_that("published");
    assert_eq!(published.len(), 3, "{published:?}");
    assert_eq!(
        r.signing_tags("static.example.com", "A"),
        zsk,
        "the old ZSK still signs"
    );
    let out = r.next_when_safe("zsk published");
    assert!(out.contains("took step active"), "{out}");
    let new_zsk = r.keys_that("signs zone");
    assert_ne!(new_zsk, zsk);
    assert_eq!(r.signing_tags("static.example.com", "A"), new_zsk);
    let out = r.next_when_safe("zsk active");
    assert!(out.contains("rollover done"), "{out}");
    assert_eq!(r.keys_that("published").len(), 2);
    r.validate_for(Duration::from_secs(3), "zsk rolled");

    // KSK double-DS: the new DS goes to the parent first, then the keys swap, then the old
    // DS leaves the parent.
    let mut start = vec!["--kind", "ksk"];
    start.extend(timing);
    r.step(&start);
    assert_eq!(r.keys_that("DS at parent").len(), 2);
    r.parent_takes_the_ds();
    assert!(
        r.next_when_safe("ksk submitted")
            .contains("took step ds-published")
    );
    assert!(
        r.next_when_safe("ksk ds published")
            .contains("took step swapped")
    );
    let new_ksk = r.keys_that("signs keys");
    assert_ne!(new_ksk, ksk);
    assert_eq!(r.signing_tags("example.com", "DNSKEY"), new_ksk);
    assert!(r.next_when_safe("ksk swapped").contains("rollover done"));
    assert_eq!(r.keys_that("DS at parent"), new_ksk);
    r.parent_takes_the_ds();
    r.validate_for(Duration::from_secs(3), "ksk rolled, old DS gone");
    assert_eq!(r.signing_tags("static.example.com", "A"), new_zsk);
}

#[test]
fn unbound_keeps_validating_through_a_csk_rollover() {
    let Some(r) = Rollover::start(false) else {
        return;
    };
    let old = r.keys_that("signs zone");
    let (ok, out) = r.try_cli(&["rollover", "--next"]);
    assert!(!ok && out.contains("no rollover is under way"), "{out}");
    r.step(&["--kind", "csk", "--ds-ttl", "2", "--propagation", "1"]);
    let both = r.keys_that("signs keys");
    assert_eq!(both.len(), 2, "the new CSK signs the DNSKEY RRset at once");
    assert_eq!(r.signing_tags("example.com", "DNSKEY"), both);
    assert_eq!(r.signing_tags("static.example.com", "A"), old);
    // The server shows the rollover and its next step (the API, which the route and the
    // dashboard read), and counts its pre-signing passes.
    let reply = get(&r.child, "/api/v1/zones");
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or("");
    let zones: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {reply}"));
    let rollover = &zones[0]["dnssec"]["rollover"];
    assert_eq!(rollover["kind"], "csk", "{zones}");
    assert_eq!(rollover["step"], "published", "{zones}");
    assert_eq!(rollover["next_step"], "active", "{zones}");
    assert_eq!(
        rollover["next_at"].as_u64().unwrap(),
        rollover["since"].as_u64().unwrap() + 3,
        "DNSKEY TTL 2 s + propagation 1 s: {zones}"
    );
    assert_eq!(zones[0]["dnssec"]["keys"].as_array().unwrap().len(), 2);
    assert!(
        metrics(&r.child).contains("meridian_dnssec_presign_passes_total "),
        "the pre-signer counts its passes"
    );
    // A second rollover waits for this one.
    let (ok, out) = r.try_cli(&["rollover", "--kind", "zsk"]);
    assert!(!ok && out.contains("a csk rollover is under way"), "{out}");
    r.parent_takes_the_ds();
    assert!(
        r.next_when_safe("csk published")
            .contains("took step active")
    );
    let new = r.keys_that("signs zone");
    assert_ne!(new, old);
    assert_eq!(r.signing_tags("static.example.com", "A"), new);
    assert!(r.next_when_safe("csk active").contains("rollover done"));
    assert_eq!(r.signing_tags("example.com", "DNSKEY"), new);
    r.parent_takes_the_ds();
    r.validate_for(Duration::from_secs(3), "csk rolled");
    // The state survives a restart of the server: the new key signs.
    drop(r.child);
    let child = Server::start_with_zones(&r.zones, &["--state-dir", r.state.to_str().unwrap()]);
    let out = dig(child.addr(), &["static.example.com", "A", "+dnssec"]).unwrap();
    assert!(out.contains(&format!(" {} example.com.", new[0])), "{out}");
    let _ = r.dir;
}

#[test]
fn a_damaged_key_set_is_reported_with_its_position_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let zones = dir.path().join("zones");
    std::fs::create_dir_all(&zones).unwrap();
    std::fs::write(zones.join("example.com.toml"), CHILD_ZONE).unwrap();
    let (z, s) = (zones.to_str().unwrap(), state.to_str().unwrap());
    let base = ["--zone", "example.com", "--zones", z, "--state-dir", s];
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(args)
            .args(base)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = run(&["dnssec", "keygen", "--split"]);
    assert!(ok, "{out}");
    let (ok, out) = check(&zones, &state);
    assert!(ok, "{out}");
    assert!(out.contains(" ksk, "), "check names both keys: {out}");
    assert!(out.ends_with(" zsk\n"), "check names both keys: {out}");
    let set = state.join("dnssec/example.com.keys.json");
    let text = std::fs::read_to_string(&set).unwrap();
    let damaged = text.replacen("\"role\": \"ksk\"", "\"role\": \"kks\"", 1);
    assert_ne!(damaged, text);
    std::fs::write(&set, &damaged).unwrap();
    let (ok, out) = run(&["dnssec", "rollover", "--kind", "zsk"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "{}: line 6, column 19: unknown variant `kks`",
            set.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("expected one of `csk`, `ksk`, `zsk` (the file is kept"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&set).unwrap(), damaged, "kept");
    // The server refuses to load it, at the zone's dnssec line.
    let (ok, out) = check(&zones, &state);
    assert!(!ok);
    assert!(out.contains("example.com.toml:2: dnssec: "), "{out}");
    assert!(out.contains("line 6, column 19"), "{out}");
}

/// `dnssec-verify` on `text` (`-z` for a zone whose one key, a CSK, has the KSK flag):
/// (success, output).
fn dnssec_verify(dir: &Path, text: &str, csk: bool) -> (bool, String) {
    let file = dir.join("dump.zone");
    std::fs::write(&file, text).unwrap();
    let mut cmd = Command::new("dnssec-verify");
    if csk {
        cmd.arg("-z");
    }
    let out = cmd.args(["-o", "example.com"]).arg(&file).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn dnssec_verify_accepts_the_dump_with_a_csk_and_with_split_keys() {
    if !Command::new("dnssec-verify")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipped dnssec-verify: not installed (scripts/setup.sh installs bind9-utils)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (zones, _) = signed_zone(dir.path(), &state);
    let (z, s) = (zones.to_str().unwrap(), state.to_str().unwrap());
    let dump = |s: &str| {
        meridian(&[
            "dnssec",
            "dump",
            "--zone",
            "example.com",
            "--zones",
            z,
            "--state-dir",
            s,
        ])
    };
    let text = dump(s);
    // Static names, the wildcard, the apex keys and the delegation; no steered name.
    for want in [
        "static.example.com. 3600 IN A 192.0.2.80",
        "*.wild.example.com. ",
        "example.com. 3600 IN DNSKEY 257 3 13 ",
        "lab.example.com. 300 IN NSEC ",
        "a.b.example.com. 3600 IN TXT \"below an empty non-terminal\"",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    assert!(!text.contains("www.example.com. 300 IN A "), "{text}");
    let (ok, out) = dnssec_verify(dir.path(), &text, true);
    assert!(ok && out.contains("Zone fully signed"), "{out}");
    // The negative control: one address changed after signing.
    let forged = text.replacen(
        "static.example.com. 3600 IN A 192.0.2.80",
        "static.example.com. 3600 IN A 192.0.2.82",
        1,
    );
    let (ok, out) = dnssec_verify(dir.path(), &forged, true);
    assert!(!ok, "{out}");
    assert!(
        out.contains("No correct ECDSAP256SHA256 signature for static.example.com A"),
        "{out}"
    );

    // A KSK and a ZSK: the ZSK signs the data, dnssec-verify wants both.
    let split = dir.path().join("split");
    let sp = split.to_str().unwrap();
    meridian(&[
        "dnssec",
        "keygen",
        "--split",
        "--zone",
        "example.com",
        "--zones",
        z,
        "--state-dir",
        sp,
    ]);
    let (ok, out) = dnssec_verify(dir.path(), &dump(sp), false);
    assert!(ok && out.contains("ZSKs: 1 active"), "{out}");
}

#[test]
fn unbound_keeps_validating_while_the_server_takes_an_automatic_zsk_rollovers_steps() {
    let Some(r) = Rollover::start(true) else {
        return;
    };
    let old = r.keys_that("signs zone");
    r.step(&[
        "--kind",
        "zsk",
        "--auto",
        "--ds-ttl",
        "2",
        "--propagation",
        "1",
    ]);
    assert!(
        r.try_cli(&["status"])
            .1
            .contains("auto: the server takes this step at that time")
    );
    // Nobody runs --next: the server takes both steps at their safe times.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !r.try_cli(&["status"]).1.contains("rollover: none") {
        assert!(Instant::now() < deadline, "{}", r.child.log_text());
        r.validate_for(Duration::from_millis(300), "automatic zsk rollover");
    }
    let taken = r
        .child
        .log_lines()
        .iter()
        .filter(|l| l.contains("dnssec rollover step taken at its safe time"))
        .count();
    assert_eq!(taken, 2, "{}", r.child.log_text());
    let new = r.keys_that("signs zone");
    assert_ne!(new, old);
    assert_eq!(r.keys_that("published").len(), 2);
    // The last step's reload follows within a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.signing_tags("static.example.com", "A") != new {
        assert!(Instant::now() < deadline, "{}", r.child.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    r.validate_for(Duration::from_secs(2), "automatic zsk rollover done");
}
