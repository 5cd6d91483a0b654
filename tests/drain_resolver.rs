//! A drain as a user sees it through a real resolver: unbound on loopback (ECS forwarded by
//! its `subnetcache` module) with a stub zone to `meridian serve`. The answer it cached
//! before the drain holds until the expiry Meridian reports, no longer; then it follows the
//! drain, with the trouble TTL. `scripts/setup.sh` installs unbound and dig; on a machine
//! without them the test says so and passes.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Server;
use common::daemon::Daemon;
use serde_json::Value;

const TOKEN: &str = "drain-resolver-secret-0123";
const EU_WEST: &str = "198.51.100.10";
const US_EAST: &str = "192.0.2.10";
const TTL: u64 = 6;
const TROUBLE_TTL: u64 = 2;

fn zone() -> String {
    format!(
        r#"zone = "drain.test."
records = '''
$TTL 3600
@    IN SOA ns1.drain.test. hostmaster.drain.test. ( 1 7200 3600 1209600 300 )
@    IN NS  ns1
ns1  IN A   127.0.0.1
'''

[regions.us-east]
location = {{ lat = 39.04, lon = -77.49 }}
endpoints = ["{US_EAST}"]

[regions.eu-west]
location = {{ lat = 53.35, lon = -6.26 }}
endpoints = ["{EU_WEST}"]

[steered.www]
regions = ["us-east", "eu-west"]
ttl = {TTL}
trouble-ttl = {TROUBLE_TTL}
"#
    )
}

/// Whether `command` runs with `version_flag` (which must only print a version: `unbound -v`
/// would start a daemon) and succeeds.
fn installed(command: &str, version_flag: &str) -> bool {
    let ok = Command::new(command)
        .arg(version_flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: {command} is not installed (scripts/setup.sh installs it)");
    }
    ok
}

/// unbound in the foreground on a free loopback port, drain.test stubbed to `server`;
/// killed on drop.
struct Unbound {
    daemon: Daemon,
}

impl Unbound {
    fn start(dir: &Path, server: SocketAddr) -> Unbound {
        let config = |port: u16| {
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
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    module-config: "subnetcache iterator"
    send-client-subnet: {ip}
    client-subnet-always-forward: yes
    max-client-subnet-ipv4: 24
    qname-minimisation: no
    target-fetch-policy: "0 0 0 0 0"
    prefetch: no
    # test. is one of unbound's default local zones (RFC 6761), answered NXDOMAIN locally.
    local-zone: "test." nodefault
remote-control:
    control-enable: no
stub-zone:
    name: "drain.test"
    stub-addr: {ip}@{sport}
"#,
                dir = dir.display(),
                ip = server.ip(),
                sport = server.port(),
            );
            std::fs::write(&conf, text).expect("unbound.conf");
            let mut unbound = Command::new("unbound");
            unbound.arg("-d").arg("-c").arg(&conf);
            unbound
        };
        let ready =
            |addr| dig(addr, &["drain.test", "NS", "+short"]).is_some_and(|o| !o.trim().is_empty());
        Unbound {
            daemon: Daemon::start(dir, "unbound", config, ready),
        }
    }

    /// www.drain.test A for a GB client (ECS 81.2.69.0/24): (address, TTL).
    fn www(&self) -> (String, u64) {
        let out = dig(
            self.daemon.addr,
            &[
                "www.drain.test",
                "A",
                "+subnet=81.2.69.0/24",
                "+noall",
                "+answer",
            ],
        )
        .expect("unbound answers");
        let fields: Vec<&str> = out.split_whitespace().collect();
        // www.drain.test. 6 IN A 198.51.100.10
        assert!(
            fields.len() == 5 && fields[3] == "A",
            "one A record expected: {out}"
        );
        (fields[4].to_string(), fields[1].parse().expect("a TTL"))
    }
}

fn dig(server: SocketAddr, args: &[&str]) -> Option<String> {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+tries=1", "+time=2"])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

async fn region(http: &reqwest::Client, base: &str, name: &str) -> Value {
    let text = http
        .get(format!("{base}/api/v1/regions"))
        .send()
        .await
        .expect("the admin API answers")
        .text()
        .await
        .expect("a body");
    let regions: Value = serde_json::from_str(&text).expect("JSON");
    regions
        .as_array()
        .and_then(|a| a.iter().find(|r| r["region"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {regions}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_follows_a_drain_when_the_reported_expiry_has_passed() {
    if !installed("unbound", "-V") || !installed("dig", "-v") {
        return;
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).expect("zones dir");
    std::fs::write(zones.join("drain.test.toml"), zone()).expect("zone file");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("ops:{TOKEN}\n")).expect("tokens");
    let server = Server::start_with_zones(
        &zones,
        &["--admin-token-file", tokens.to_str().expect("UTF-8")],
    );
    let base = format!("http://{}", server.admin_addr());
    meridian::health::probe::install_crypto_provider();
    let http = reqwest::Client::new();
    let unbound = Unbound::start(dir.path(), server.addr());
    // Another resolver, which asks only after the drain. (One resolver will not do: the
    // answer after the drain has ECS scope /0, which unbound then serves to every subnet.)
    let other = Unbound::start(dir.path(), server.addr());

    // Before the drain: the resolver fetches and caches eu-west with the full TTL.
    let (answer, ttl) = unbound.www();
    assert_eq!(answer, EU_WEST);
    assert!(ttl > TROUBLE_TTL && ttl <= TTL, "TTL {ttl}");
    let eu = region(&http, &base, "eu-west").await;
    assert_eq!(eu["traffic"]["answers_total"], 1, "{eu}");

    let r = http
        .post(format!(
            "{base}/api/v1/zones/drain.test/regions/eu-west/drain"
        ))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(r#"{"reason": "through a resolver"}"#)
        .send()
        .await
        .expect("the drain is answered");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let eu = region(&http, &base, "eu-west").await;
    let progress = &eu["drain_progress"];
    let expires = progress["cached_answers_expire_at_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no expiry in {eu}"));
    assert_eq!(progress["complete"], false, "{eu}");
    assert_eq!(progress["answers_since_drain"], 0, "{eu}");
    println!(
        "drained at {}; last cached answer expires {expires} ({} ms from now)",
        now_ms(),
        expires.saturating_sub(now_ms())
    );

    // A resolver that had no answer cached sends the same client to us-east at once, with
    // the trouble TTL while the drain settles.
    let (answer, ttl) = other.www();
    assert_eq!((answer.as_str(), ttl), (US_EAST, TROUBLE_TTL));

    // The resolver answers eu-west from its cache until the reported moment, never after;
    // then asks again and gets us-east.
    let deadline = Instant::now() + Duration::from_secs(TTL + 5);
    let (mut cached, mut last_cached_ms) = (0, 0);
    let (after_ms, after_ttl) = loop {
        let asked = now_ms();
        let (answer, ttl) = unbound.www();
        if answer == EU_WEST {
            assert!(
                asked < expires,
                "the resolver still answered eu-west at {asked}, after the reported expiry {expires}"
            );
            cached += 1;
            last_cached_ms = asked;
        } else {
            assert_eq!(answer, US_EAST);
            break (asked, ttl);
        }
        assert!(Instant::now() < deadline, "the resolver never left eu-west");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "the resolver answered eu-west {cached} times from its cache, the last {} ms before the \
         reported expiry; us-east from {} ms after it, TTL {after_ttl}",
        expires - last_cached_ms,
        after_ms as i64 - expires as i64
    );
    assert!(cached > 0, "the resolver kept the answer it had cached");
    // The bound is tight: Meridian's second (truncated, so one more), unbound's own whole
    // seconds, and the polling interval.
    assert!(
        expires - last_cached_ms <= 3_000,
        "the cache held eu-west until {last_cached_ms}, far before the reported {expires}"
    );
    assert!(after_ttl <= TTL, "TTL {after_ttl}");

    // What the resolver served from its cache never reached Meridian: one question for
    // eu-west before the drain, two for us-east after it (the other resolver's, and the first
    // one's once its answer expired), nothing for eu-west since.
    let eu = region(&http, &base, "eu-west").await;
    assert_eq!(eu["traffic"]["answers_total"], 1, "{eu}");
    assert_eq!(eu["drain_progress"]["answers_since_drain"], 0, "{eu}");
    assert_eq!(eu["drain_progress"]["complete"], true, "{eu}");
    let us = region(&http, &base, "us-east").await;
    assert_eq!(us["traffic"]["answers_total"], 2, "{us}");
}
