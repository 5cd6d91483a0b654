//! The real binary's `check` and `route` commands: exit codes, `file:line: message` on stderr,
//! and the `route` text and JSON an operator reads.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

fn shipped_zones() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("zones")
}

fn run(args: &[&str]) -> Output {
    // A neutral working directory: no `zones/` or `meridian.toml` to fall back on.
    let cwd = tempfile::tempdir().unwrap();
    Command::new(BIN)
        .args(args)
        .current_dir(cwd.path())
        .env_remove("RUST_LOG")
        .output()
        .expect("the meridian binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("output is UTF-8")
}

#[track_caller]
fn assert_fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got {:?}\nstdout:\n{}",
        out.status,
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    assert!(!stderr.trim().is_empty(), "failure without a message");
    stderr
}

#[track_caller]
fn assert_succeeds(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr:\n{}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Splits a `<path>:<line>: <message>` line into its parts.
fn diagnostic(line: &str) -> Option<(String, usize, String)> {
    // Paths hold no ": " here, so the first ": " after a `:digits` ends the position.
    let (position, message) = line.split_once(": ")?;
    let (path, number) = position.rsplit_once(':')?;
    Some((path.to_string(), number.parse().ok()?, message.to_string()))
}

/// 1-based line of the only line of `text` containing `needle`.
#[track_caller]
fn line_of(text: &str, needle: &str) -> usize {
    let hits: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(hits.len(), 1, "{needle:?} must occur once in:\n{text}");
    hits[0]
}

#[test]
fn check_accepts_the_shipped_zones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        shipped_zones().join("example.com.toml"),
        dir.path().join("example.com.toml"),
    )
    .unwrap();
    let out = run(&["check", "--zones", dir.path().to_str().unwrap()]);
    let stdout = assert_succeeds(&out);
    let path = dir.path().join("example.com.toml");
    assert_eq!(
        stdout,
        format!(
            "{}: zone example.com. ok: 3 regions, 1 steered names\n{}:31: warning: big.example.com. TXT: its longest answer is 1,812 octets, over the 1232 of UDP: resolvers get it truncated and must ask again over TCP\n",
            path.display(),
            path.display()
        )
    );
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
}

#[test]
fn check_accepts_the_shipped_zone_directory_in_place() {
    let out = run(&["check", "--zones", shipped_zones().to_str().unwrap()]);
    let stdout = assert_succeeds(&out);
    assert!(stdout.contains("zone example.com. ok"), "{stdout}");
}

const BROKEN_A: &str = r#"zone = "example.com."
records = '''
$TTL 300
@     IN SOA ns1 hostmaster 1 7200 3600 1209600 300
@     IN NS  ns1
ns1   IN A   192.0.2.53
bad   IN A   999.1.1.1
t  60 IN TXT "a"
t 120 IN TXT "b"
'''

[regions.eu-west]
location = { lat = 53.35, lon = -6.26 }
endpoints = ["198.51.100.10"]

[steered.www]
regions = ["eu-west", "eu-wset"]
"#;

const BROKEN_B: &str = r#"zone = "example.org."
records = '''
$TTL 300
@     IN NS  ns1
ns1   IN A   192.0.2.53
'''

[regions.us-east]
location = { lat = 139.04, lon = -77.49 }
endpoints = ["192.0.2.10"]
"#;

#[test]
fn check_reports_every_error_of_every_file_as_path_line_message() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    std::fs::write(&a, BROKEN_A).unwrap();
    std::fs::write(&b, BROKEN_B).unwrap();

    let out = run(&["check", "--zones", dir.path().to_str().unwrap()]);
    let stderr = assert_fails(&out);
    assert!(
        text(&out.stdout).is_empty(),
        "nothing is ok: {}",
        text(&out.stdout)
    );

    let diags: Vec<(String, usize, String)> = stderr
        .lines()
        .map(|l| diagnostic(l).unwrap_or_else(|| panic!("not <path>:<line>: <message>: {l:?}")))
        .collect();
    let (a, b) = (a.display().to_string(), b.display().to_string());
    let expected: [(&str, usize, &str); 5] = [
        (&a, line_of(BROKEN_A, "999.1.1.1"), "IPv4"),
        (&a, line_of(BROKEN_A, "t 120"), "TTL 120"),
        (
            &a,
            line_of(BROKEN_A, "eu-wset"),
            "unknown region \"eu-wset\"",
        ),
        (&b, line_of(BROKEN_B, "records = '''"), "missing SOA"),
        (&b, line_of(BROKEN_B, "lat = 139.04"), "off the globe"),
    ];
    for (path, line, words) in expected {
        assert!(
            diags
                .iter()
                .any(|(p, l, m)| p == path && *l == line && m.contains(words)),
            "no {path}:{line}: ...{words}... in:\n{stderr}"
        );
    }
    assert_eq!(diags.len(), expected.len(), "{stderr}");
}

#[test]
fn check_of_an_empty_directory_says_there_are_no_zone_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README.txt"), "not a zone").unwrap();
    let out = run(&["check", "--zones", dir.path().to_str().unwrap()]);
    let stderr = assert_fails(&out);
    assert!(
        stderr.contains(&dir.path().display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("no zone files"), "{stderr}");
}

#[test]
fn check_of_a_missing_directory_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let out = run(&["check", "--zones", missing.to_str().unwrap()]);
    let stderr = assert_fails(&out);
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    assert!(stderr.contains("cannot read zone directory"), "{stderr}");
}

fn route(extra: &[&str]) -> Output {
    let zones = shipped_zones();
    let mut args = vec!["route", "--zones", zones.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn route_explains_the_answer_in_text() {
    let out = route(&["--name", "www.example.com", "--client", "81.2.69.0/24"]);
    let stdout = assert_succeeds(&out);
    assert!(stdout.contains("eu-west"), "{stdout}");
    assert!(stdout.contains("198.51.100.10"), "{stdout}");
    assert!(stdout.contains("2001:db8:2::10"), "{stdout}");
    assert!(stdout.contains("GB"), "{stdout}");
    let answers = stdout.lines().find(|l| l.contains("<-")).unwrap_or("");
    assert!(
        answers.contains("eu-west"),
        "the marked region answers: {stdout}"
    );
}

#[test]
fn route_json_carries_the_decision() {
    let out = route(&[
        "--name",
        "www.example.com",
        "--client",
        "81.2.69.0/24",
        "--json",
    ]);
    let stdout = assert_succeeds(&out);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("route --json is JSON");
    assert_eq!(v["name"], "www.example.com.");
    assert_eq!(v["zone"], "example.com.");

    let a = &v["a"];
    assert_eq!(a["addresses"], serde_json::json!(["198.51.100.10"]));
    assert_eq!(
        v["aaaa"]["addresses"],
        serde_json::json!(["2001:db8:2::10"])
    );
    assert_eq!(v["location"]["country"], "GB");
    assert_eq!(v["location"]["precision"], "country");
    assert_eq!(v["client"]["source"], "subnet");
    assert_eq!(a["chosen"], "eu-west", "{a}");
    assert_eq!(a["basis"], "nearest");
    let regions: Vec<&str> = a["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["region"].as_str().unwrap())
        .collect();
    assert_eq!(
        regions,
        ["eu-west", "us-east", "ap-southeast"],
        "nearest first"
    );
    assert_eq!(a["candidates"][0]["verdict"], "chosen");
    let scope = a["scope"].as_u64().expect("scope is a number");
    assert!(
        (1..=24).contains(&scope),
        "a location-dependent answer has a scope in 1..=source prefix: {scope}"
    );
    assert_eq!(a["ttl"], 30);
}

#[test]
fn route_for_a_name_that_is_not_steered_says_which_are() {
    let out = route(&["--name", "static.example.com", "--client", "81.2.69.0/24"]);
    let stderr = assert_fails(&out);
    assert!(stderr.contains("static.example.com."), "{stderr}");
    assert!(stderr.contains("not a steered name"), "{stderr}");
    assert!(
        stderr.contains("www.example.com."),
        "lists the steered names: {stderr}"
    );
}

#[test]
fn route_for_a_name_in_no_zone_says_so() {
    let out = route(&["--name", "www.example.org", "--client", "81.2.69.0/24"]);
    let stderr = assert_fails(&out);
    assert!(stderr.contains("www.example.org."), "{stderr}");
    assert!(stderr.contains("no loaded zone"), "{stderr}");
}

#[test]
fn route_with_a_bad_client_says_what_is_expected() {
    for bad in ["not-an-address", "81.2.69.0/33", "81.2.69"] {
        let out = route(&["--name", "www.example.com", "--client", bad]);
        let stderr = assert_fails(&out);
        assert!(stderr.contains("--client"), "{bad}: {stderr}");
        assert!(stderr.contains(bad), "{bad}: {stderr}");
    }
}

#[test]
fn route_accepts_a_bare_address() {
    let out = route(&[
        "--name",
        "www.example.com",
        "--client",
        "81.2.69.160",
        "--json",
    ]);
    let stdout = assert_succeeds(&out);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["client"]["network"], "81.2.69.160/32");
    assert_eq!(v["a"]["addresses"], serde_json::json!(["198.51.100.10"]));
}

#[test]
fn route_with_broken_zones_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), BROKEN_A).unwrap();
    let out = run(&[
        "route",
        "--zones",
        dir.path().to_str().unwrap(),
        "--name",
        "www.example.com",
        "--client",
        "81.2.69.0/24",
    ]);
    let stderr = assert_fails(&out);
    assert!(stderr.contains("unknown region \"eu-wset\""), "{stderr}");
}

const OTHER_ZONE: &str = r#"zone = "example.org."
records = '''
$TTL 300
@     IN SOA ns1 hostmaster 1 7200 3600 1209600 300
@     IN NS  ns1
ns1   IN A   192.0.2.53
'''
"#;

#[test]
fn check_refuses_every_zone_entry_that_is_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::copy(
        shipped_zones().join("example.com.toml"),
        dir.path().join("example.com.toml"),
    )
    .unwrap();
    // A symbolic link to a regular file is an ordinary zone file.
    let target = elsewhere.path().join("org.toml");
    std::fs::write(&target, OTHER_ZONE).unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("example.org.toml")).unwrap();
    assert_succeeds(&run(&["check", "--zones", dir.path().to_str().unwrap()]));

    let bad = [
        ("gone.toml", "does not exist"),
        ("pipe.toml", "FIFO"),
        ("dir.toml", "directory"),
        ("null.toml", "character device"),
    ];
    std::os::unix::fs::symlink(elsewhere.path().join("nowhere"), dir.path().join(bad[0].0))
        .unwrap();
    common::mkfifo(&dir.path().join(bad[1].0));
    std::fs::create_dir(dir.path().join(bad[2].0)).unwrap();
    std::os::unix::fs::symlink("/dev/null", dir.path().join(bad[3].0)).unwrap();

    let out = run(&["check", "--zones", dir.path().to_str().unwrap()]);
    let stderr = assert_fails(&out);
    for (name, words) in bad {
        let path = dir.path().join(name).display().to_string();
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("{path}: ")) && l.contains(words)),
            "no `{path}: ...{words}...` in:\n{stderr}"
        );
    }
    assert_eq!(stderr.lines().count(), bad.len(), "{stderr}");
}

#[test]
fn check_reports_invalid_utf8_at_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.com.toml");
    let mut bytes = std::fs::read(shipped_zones().join("example.com.toml")).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let line = line_of(&text, "static   IN A     ");
    // "static" -> "st\xFFtic": the byte at column 3 of that line.
    let at = text.find("static   IN A     ").unwrap() + 2;
    bytes[at] = 0xff;
    std::fs::write(&path, bytes).unwrap();

    let stderr = assert_fails(&run(&["check", "--zones", dir.path().to_str().unwrap()]));
    let (p, l, message) = diagnostic(stderr.trim_end())
        .unwrap_or_else(|| panic!("not <path>:<line>: <message>: {stderr:?}"));
    assert_eq!((p.as_str(), l), (path.to_str().unwrap(), line), "{stderr}");
    assert!(message.contains("UTF-8"), "{message}");
    assert!(message.contains("column 3"), "{message}");
}

/// A zone whose `big` TXT RRset holds `count` strings of 250 octets, at the line returned.
fn zone_with_txt(count: usize) -> (String, usize) {
    let mut text = String::from(OTHER_ZONE.trim_end().trim_end_matches("'''"));
    let line = text.lines().count() + 1;
    let chunk = "x".repeat(250);
    for _ in 0..count {
        // Each record differs, or it would be a duplicate.
        text.push_str(&format!("big 300 IN TXT \"{chunk}\" \"{}\"\n", text.len()));
    }
    text.push_str("'''\n");
    (text, line)
}

#[test]
fn check_refuses_an_rrset_too_large_for_any_dns_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.org.toml");
    // 300 records of about 265 octets each: some 80,000 octets, over the 65,535 of a message.
    let (text, line) = zone_with_txt(300);
    std::fs::write(&path, text).unwrap();
    let stderr = assert_fails(&run(&["check", "--zones", dir.path().to_str().unwrap()]));
    let (p, l, message) = diagnostic(stderr.trim_end())
        .unwrap_or_else(|| panic!("not <path>:<line>: <message>: {stderr:?}"));
    assert_eq!((p.as_str(), l), (path.to_str().unwrap(), line), "{stderr}");
    assert!(message.contains("big.example.org. TXT"), "{message}");
    assert!(message.contains("65,535"), "{message}");
}

/// `meridian check --config` checks the `[cluster]` section and names every problem with its
/// line; a good section is summarised.
#[test]
fn check_config_reports_every_cluster_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meridian.toml");
    std::fs::write(
        &config,
        "log-format = \"json\"\n\n[cluster]\nnode = \"ns/1\"\nendpoints = [\"127.0.0.1:2379\"]\nprefix = \"meridian\"\nquorum = \"most\"\n",
    )
    .unwrap();
    let zones = shipped_zones();
    let args = [
        "check",
        "--config",
        config.to_str().unwrap(),
        "--zones",
        zones.to_str().unwrap(),
    ];
    let err = assert_fails(&run(&args));
    for want in [
        "meridian.toml:4: node \"ns/1\"",
        "meridian.toml:5: endpoint \"127.0.0.1:2379\"",
        "meridian.toml:6: prefix \"meridian\"",
        "meridian.toml:7: quorum \"most\"",
    ] {
        assert!(err.contains(want), "no {want:?} in:\n{err}");
    }
    std::fs::write(
        &config,
        "[cluster]\nnode = \"ns1\"\nendpoints = [\"http://127.0.0.1:2379\", \"http://127.0.0.2:2379\"]\n",
    )
    .unwrap();
    let out = assert_succeeds(&run(&args));
    assert!(
        out.contains("ok: cluster node ns1 of 2 etcd endpoints, prefix /meridian"),
        "{out}"
    );
}

/// A file name or a value quoted from a file reaches the operator's terminal: its control
/// characters are written escaped, so it can neither drive the terminal nor pass for a
/// diagnostic line of its own (before: `check` printed the file name's ESC and newline raw).
#[test]
fn file_names_with_control_characters_cannot_drive_the_terminal_or_forge_lines() {
    let dir = tempfile::tempdir().unwrap();
    let name = "a\u{1b}[2J\nfake.toml:1: forged.toml";
    std::fs::write(dir.path().join(name), "zone = \"x.test.\"\nbogus = 1\n").unwrap();
    let out = run(&["check", "--zones", dir.path().to_str().unwrap()]);
    let stderr = assert_fails(&out);
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one diagnostic, one line: {stderr:?}");
    assert!(
        lines[0].contains("a\\u{1b}[2J\\nfake.toml:1: forged.toml:2: unknown field"),
        "{stderr:?}"
    );
}

#[test]
fn check_refuses_bad_rules_each_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let zone = r#"zone = "example.com."
records = '''
$TTL 3600
@   IN SOA ns1.example.com. hostmaster.example.com. 1 7200 3600 1209600 300
@   IN NS  ns1
ns1 IN A   192.0.2.53
'''

[regions.us-east]
location = { lat = 39.04, lon = -77.49 }
endpoints = ["192.0.2.10"]

[regions.eu-west]
location = { lat = 53.35, lon = -6.26 }
endpoints = ["198.51.100.10"]

[steered.www]
regions = ["us-east", "eu-west"]

[steered.www.networks]
"81.2.0.0/16" = "eu-west"
"81.2.69.0/24" = "us-east"
"10.0.0.1/8" = "eu-west"

[steered.www.asns]
AS64496x = "eu-west"

[[steered.www.fence]]
countries = ["DE", "XX"]
regions = []

[[steered.www.split]]
region = "eu-west"
weights = { eu-west = 80, us-east = 10 }
"#;
    let path = dir.path().join("example.com.toml");
    std::fs::write(&path, zone).unwrap();
    let stderr = assert_fails(&run(&["check", "--zones", dir.path().to_str().unwrap()]));
    let found: Vec<(usize, String)> = stderr
        .lines()
        .filter_map(diagnostic)
        .map(|(_, line, message)| (line, message))
        .collect();
    let expect = [
        ("\"81.2.69.0/24\"", "overlaps 81.2.0.0/16 -> \"eu-west\""),
        ("\"10.0.0.1/8\"", "has host bits set"),
        ("AS64496x", "is not an AS number"),
        ("\"XX\"", "unknown country code \"XX\""),
        ("[[steered.www.fence]]", "fence allows no region"),
        (
            "[[steered.www.split]]",
            "split weights add up to 90, not 100",
        ),
    ];
    for (needle, words) in expect {
        let line = line_of(zone, needle);
        assert!(
            found.iter().any(|(l, m)| *l == line && m.contains(words)),
            "no diagnostic at line {line} with {words:?}:\n{stderr}"
        );
    }
}

#[test]
fn check_accepts_the_rules_zone_and_route_explains_each_rule() {
    let zones = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/zones-rules");
    let zones = zones.to_str().unwrap();
    assert_succeeds(&run(&["check", "--zones", zones]));
    let explain = |client: &str| {
        assert_succeeds(&run(&[
            "route",
            "--zones",
            zones,
            "--name",
            "www.rules.test",
            "--client",
            client,
        ]))
    };
    // Cloudflare's 1.1.1.0/24 (in Australia) by a network rule; Google's 8.8.8.0/24 by AS.
    let cloudflare = explain("1.1.1.0/24");
    assert!(cloudflare.contains("asn       AS13335"), "{cloudflare}");
    assert!(
        cloudflare.contains("rule: network 1.1.1.0/24 is sent to eu-central"),
        "{cloudflare}"
    );
    let google = explain("8.8.8.0/24");
    assert!(
        google.contains("rule: AS15169 is sent to us-west"),
        "{google}"
    );
    // A German client: fenced to the European regions.
    let german = explain("5.9.0.0/24");
    assert!(
        german.contains("fence: clients in DE are served only by"),
        "{german}"
    );
}
