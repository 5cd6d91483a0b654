//! The admin API against the real binary: drains move DNS answers at once and survive
//! restarts and kill -9, bad requests get precise 4xx errors, metrics move with real queries,
//! a reload that fails validation keeps serving.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use common::Server;

const TOKEN: &str = "admin-test-secret-0123456";

/// A server with a token file and its own state directory.
struct Admin {
    server: Server,
    http: reqwest::Client,
    base: String,
    dir: PathBuf,
}

impl Admin {
    fn start(dir: &Path, zones: Option<&Path>) -> Admin {
        Admin::start_with(dir, zones, &[])
    }

    /// Like [`Admin::start`], with `extra` flags.
    fn start_with(dir: &Path, zones: Option<&Path>, extra: &[&str]) -> Admin {
        meridian::health::probe::install_crypto_provider();
        let tokens = dir.join("tokens");
        std::fs::write(&tokens, format!("ops:{TOKEN}\n")).unwrap();
        let state = dir.join("state");
        let mut args = vec![
            "--admin-token-file",
            tokens.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let server = match zones {
            Some(z) => Server::start_with_zones(z, &args),
            None => Server::start(&args),
        };
        let base = format!("http://{}", server.admin_addr());
        Admin {
            server,
            http: reqwest::Client::new(),
            base,
            dir: dir.to_owned(),
        }
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("the admin API answers");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, v)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, None, None).await
    }

    async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, Some(TOKEN), Some(body))
            .await
    }

    async fn text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The A answer for a GB client (eu-west when all is well).
async fn gb_answer(server: &Server) -> Vec<String> {
    common::www_answer(server, "81.2.69.0/24").await
}

const EU_WEST: &str = "198.51.100.10";
const US_EAST: &str = "192.0.2.10";
const DRAIN: &str = "/api/v1/zones/example.com/regions/eu-west/drain";

#[tokio::test]
async fn drain_moves_answers_at_once_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let admin = Admin::start(dir.path(), None);
    assert_eq!(gb_answer(&admin.server).await, [EU_WEST]);

    let (status, entry) = admin.post(DRAIN, r#"{"reason": "kernel upgrade"}"#).await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["by"], "ops");
    assert_eq!(entry["action"], "drain");
    // The API answers once DNS follows: no waiting here.
    assert_eq!(gb_answer(&admin.server).await, [US_EAST]);

    let (_, regions) = admin.get("/api/v1/regions").await;
    let eu = regions
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "eu-west")
        .unwrap();
    assert_eq!(eu["state"], "drained");
    assert_eq!(eu["drained"]["reason"], "kernel upgrade");

    // Restart on the same state directory: the drain is still in force.
    let dir_path = admin.dir.clone();
    drop(admin);
    let admin = Admin::start(&dir_path, None);
    assert_eq!(gb_answer(&admin.server).await, [US_EAST]);
    let (status, _) = admin
        .post(
            "/api/v1/zones/example.com/regions/eu-west/undrain",
            r#"{"reason": "done"}"#,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(gb_answer(&admin.server).await, [EU_WEST]);

    let (_, audit) = admin.get("/api/v1/audit").await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["drain", "undrain"]);
    let log = std::fs::read_to_string(dir_path.join("state/audit.jsonl")).unwrap();
    assert!(
        !log.contains(TOKEN),
        "the audit log names tokens, never secrets"
    );
    assert!(!admin.server.log_text().contains(TOKEN), "nor do the logs");
}

#[tokio::test]
async fn forced_endpoint_and_expiring_drain_lift_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let admin = Admin::start(dir.path(), None);
    let (status, _) = admin
        .post(
            "/api/v1/zones/example.com/regions/eu-west/endpoints/198.51.100.10/force",
            r#"{"state": "down", "reason": "bad disk", "expires_in": 2}"#,
        )
        .await;
    assert_eq!(status, 200);
    // eu-west's only IPv4 endpoint is held down: IPv4 answers move, the region stays up.
    assert_eq!(gb_answer(&admin.server).await, [US_EAST]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while gb_answer(&admin.server).await != [EU_WEST] {
        assert!(
            Instant::now() < deadline,
            "the force did not lift at its expiry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn bad_requests_get_precise_errors() {
    let dir = tempfile::tempdir().unwrap();
    let admin = Admin::start(dir.path(), None);
    let post = |path: &'static str, token: Option<&'static str>, body: &'static str| {
        admin.request(reqwest::Method::POST, path, token, Some(body))
    };

    let (s, v) = post(DRAIN, None, r#"{"reason": "x"}"#).await;
    assert_eq!((s, v["status"].as_u64()), (401, Some(401)), "{v}");
    assert!(v["error"].as_str().unwrap().contains("bearer token"), "{v}");
    let (s, v) = post(DRAIN, Some("wrong-token-wrong-token"), r#"{"reason": "x"}"#).await;
    assert_eq!(s, 401, "{v}");
    let (s, v) = post(DRAIN, Some(TOKEN), r#"{"reason": "x","#).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = post(DRAIN, Some(TOKEN), r#"{"reason": "x", "color": "red"}"#).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `color`"),
        "{v}"
    );
    let (s, v) = post(DRAIN, Some(TOKEN), r#"{"reason": "  "}"#).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = post(DRAIN, Some(TOKEN), r#"{"reason": "x", "expires_in": 0}"#).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = post(
        "/api/v1/zones/example.com/regions/eu-wset/drain",
        Some(TOKEN),
        r#"{"reason": "x"}"#,
    )
    .await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(
        v["error"],
        "unknown region \"eu-wset\" in zone example.com. (known: ap-southeast, eu-west, us-east)"
    );
    let (s, v) = post(
        "/api/v1/zones/example.org/regions/eu-west/drain",
        Some(TOKEN),
        r#"{"reason": "x"}"#,
    )
    .await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = post(
        "/api/v1/zones/example.com/regions/eu-west/endpoints/192.0.2.10/force",
        Some(TOKEN),
        r#"{"reason": "x", "state": "down"}"#,
    )
    .await;
    assert_eq!(s, 404, "an endpoint of another region: {v}");
    let (s, v) = post(
        "/api/v1/zones/example.com/regions/eu-west/endpoints/not-an-ip/force",
        Some(TOKEN),
        r#"{"reason": "x", "state": "down"}"#,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = post(
        "/api/v1/zones/example.com/regions/eu-west/endpoints/198.51.100.10/force",
        Some(TOKEN),
        r#"{"reason": "x", "state": "sideways"}"#,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    // A body that is not JSON at all, and one over the size limit.
    let (s, _) = admin
        .request(reqwest::Method::POST, DRAIN, Some(TOKEN), None)
        .await;
    assert_eq!(s, 415);
    let huge = format!(r#"{{"reason": "{}"}}"#, "x".repeat(40_000));
    let (s, v) = admin
        .request(reqwest::Method::POST, DRAIN, Some(TOKEN), Some(&huge))
        .await;
    assert_eq!(s, 413, "{v}");
    let (s, v) = admin.get("/api/v1/route?name=www.example.com").await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = admin
        .get("/api/v1/route?name=static.example.com&client=81.2.69.0/24")
        .await;
    assert_eq!(s, 404, "{v}");
    let (s, _) = admin.get("/api/v1/nothing").await;
    assert_eq!(s, 404);
    // None of that left an override behind.
    let (_, audit) = admin.get("/api/v1/audit").await;
    assert_eq!(audit, json!([]));
}

#[tokio::test]
async fn metrics_count_real_queries_by_zone_name_qtype_rcode_and_region() {
    let dir = tempfile::tempdir().unwrap();
    let admin = Admin::start(dir.path(), None);
    for _ in 0..3 {
        assert_eq!(gb_answer(&admin.server).await, [EU_WEST]);
    }
    let client = common::udp_client(admin.server.addr()).await;
    common::query(
        &client,
        "nope.example.com.",
        RecordType::A,
        None,
        Some(1232),
    )
    .await;
    common::query(&client, "example.org.", RecordType::A, None, Some(1232)).await;
    let text = admin.text("/metrics").await;
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(
        has(
            "meridian_dns_queries_total{zone=\"example.com.\",name=\"www.example.com.\",qtype=\"A\",rcode=\"NOERROR\",region=\"eu-west\"} 3"
        ),
        "{text}"
    );
    assert!(
        has(
            "meridian_dns_queries_total{zone=\"example.com.\",name=\"\",qtype=\"A\",rcode=\"NXDOMAIN\",region=\"\"} 1"
        ),
        "{text}"
    );
    assert!(
        has(
            "meridian_dns_queries_total{zone=\"\",name=\"\",qtype=\"A\",rcode=\"REFUSED\",region=\"\"} 1"
        ),
        "{text}"
    );
    assert!(
        has("meridian_region_up{zone=\"example.com.\",region=\"eu-west\"} 1"),
        "{text}"
    );
    let (_, regions) = admin.get("/api/v1/regions").await;
    let eu = regions
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "eu-west")
        .unwrap();
    assert_eq!(eu["traffic"]["answers_total"], 3);
    assert_eq!(eu["traffic"]["share_total"], 1.0);
}

#[tokio::test]
async fn a_reload_that_fails_validation_keeps_serving_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/example.com.toml");
    let good = std::fs::read_to_string(&shipped).unwrap();
    std::fs::write(zones.join("example.com.toml"), &good).unwrap();
    let admin = Admin::start(dir.path(), Some(&zones));
    assert_eq!(gb_answer(&admin.server).await, [EU_WEST]);

    let broken = good.replace(
        r#"regions = ["us-east", "eu-west", "ap-southeast"]"#,
        r#"regions = ["us-east", "eu-wset", "ap-southeast"]"#,
    );
    std::fs::write(zones.join("example.com.toml"), &broken).unwrap();
    let (s, v) = admin.post("/api/v1/reload", "").await;
    assert_eq!(s, 422, "{v}");
    let line = broken.lines().position(|l| l.contains("eu-wset")).unwrap() + 1;
    let diag = v["diagnostics"][0].as_str().unwrap();
    assert!(
        diag.ends_with(&format!(
            "example.com.toml:{line}: unknown region \"eu-wset\" (known: ap-southeast, eu-west, us-east)"
        )),
        "{v}"
    );
    assert_eq!(gb_answer(&admin.server).await, [EU_WEST], "old zones serve");

    // A good reload takes effect: move eu-west's address.
    std::fs::write(
        zones.join("example.com.toml"),
        good.replace("198.51.100.10", "198.51.100.77"),
    )
    .unwrap();
    let (s, v) = admin
        .post("/api/v1/reload", r#"{"reason": "new address"}"#)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(gb_answer(&admin.server).await, ["198.51.100.77"]);
    let text = admin.text("/metrics").await;
    assert!(
        text.contains("meridian_reloads_total{result=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("meridian_reloads_total{result=\"failed\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn reads_are_open_on_loopback_and_the_openapi_document_lists_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let admin = Admin::start(dir.path(), None);
    for path in [
        "/api/v1/zones",
        "/api/v1/names",
        "/api/v1/regions",
        "/api/v1/events",
    ] {
        let (s, v) = admin.get(path).await;
        assert_eq!(s, 200, "{path}: {v}");
    }
    assert_eq!(admin.text("/healthz").await, "ok\n");
    assert_eq!(admin.text("/readyz").await, "ready\n");
    let (s, route) = admin
        .get("/api/v1/route?name=www.example.com&client=81.2.69.0/24")
        .await;
    assert_eq!(s, 200);
    assert_eq!(route["a"]["chosen"], "eu-west");
    let (_, doc) = admin.get("/api/v1/openapi.json").await;
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/zones",
        "/api/v1/names",
        "/api/v1/regions",
        "/api/v1/events",
        "/api/v1/audit",
        "/api/v1/route",
        "/api/v1/cluster",
        "/api/v1/latency",
        "/api/v1/rtt",
        "/api/v1/zones/{zone}/regions/{region}/drain",
        "/api/v1/zones/{zone}/regions/{region}/undrain",
        "/api/v1/zones/{zone}/regions/{region}/load",
        "/api/v1/zones/{zone}/regions/{region}/endpoints/{address}/force",
        "/api/v1/zones/{zone}/regions/{region}/endpoints/{address}/unforce",
        "/api/v1/reload",
        "/metrics",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(p), "OpenAPI lacks {p}");
    }
}

#[test]
fn a_non_loopback_admin_listener_without_a_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args([
            "serve",
            "--zones",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("zones")
                .to_str()
                .unwrap(),
            "--dns-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "0.0.0.0:0",
            "--state-dir",
            dir.path().to_str().unwrap(),
        ])
        .env_remove("MERIDIAN_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not on loopback and no token is configured"),
        "{err}"
    );
}

/// kill -9 in the middle of a burst of writes: every write the API acknowledged is in the
/// journal after a restart, and the overrides in force are exactly the journal's replay.
#[tokio::test]
async fn kill_9_during_writes_loses_no_acknowledged_override() {
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..3u64 {
        let admin = Admin::start(dir.path(), None);
        let (base, http) = (admin.base.clone(), admin.http.clone());
        let writer = tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..500u32 {
                let region = ["us-east", "eu-west", "ap-southeast"][(i % 3) as usize];
                let verb = if (i / 3) % 2 == 0 { "drain" } else { "undrain" };
                let reason = format!("round {round} write {i}");
                let r = http
                    .post(format!(
                        "{base}/api/v1/zones/example.com/regions/{region}/{verb}"
                    ))
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .header("content-type", "application/json")
                    .body(format!(r#"{{"reason": "{reason}"}}"#))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => acks.push(reason),
                    _ => break,
                }
            }
            acks
        });
        // Let writes run, then kill without warning (the harness kills with SIGKILL).
        tokio::time::sleep(Duration::from_millis(200 + 150 * round)).await;
        drop(admin);
        let acks = writer.await.unwrap();
        assert!(
            !acks.is_empty(),
            "round {round}: some writes were acknowledged"
        );
        acknowledged.extend(acks);
    }
    let admin = Admin::start(dir.path(), None);
    // The whole audit, a page (at most 1,000 entries) at a time, walking back with `before`.
    let mut audit: Vec<Value> = Vec::new();
    for _ in 0..100 {
        let before = audit
            .first()
            .map_or(String::new(), |e| format!("&before={}", e["seq"]));
        let (_, page) = admin
            .get(&format!("/api/v1/audit?limit=1000{before}"))
            .await;
        let page = page.as_array().unwrap();
        if page.is_empty() {
            break;
        }
        audit.splice(0..0, page.iter().cloned());
    }
    let reasons: std::collections::HashSet<&str> = audit
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    for r in &acknowledged {
        assert!(reasons.contains(r.as_str()), "acknowledged write lost: {r}");
    }
    // At most the one write in flight at each kill landed without an answer.
    assert!(
        audit.len() <= acknowledged.len() + 3,
        "{} vs {}",
        audit.len(),
        acknowledged.len()
    );
    let seqs: Vec<u64> = audit.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "journal in order, no gaps"
    );
    let (_, regions) = admin.get("/api/v1/regions").await;
    for r in regions.as_array().unwrap() {
        let last = audit.iter().rev().find(|e| e["region"] == r["region"]);
        let drained = last.is_some_and(|e| e["action"] == "drain");
        assert_eq!(r["state"] == "drained", drained, "{}", r["region"]);
    }
    eprintln!(
        "kill -9 x3: {} writes acknowledged, {} in the journal",
        acknowledged.len(),
        audit.len()
    );
}

#[tokio::test]
async fn reads_need_the_token_when_the_admin_listener_is_not_loopback() {
    meridian::health::probe::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("ops:{TOKEN}\n")).unwrap();
    // Listening on every address; the test still connects over loopback only.
    let server = Server::start(&[
        "--admin-listen",
        "0.0.0.0:0",
        "--admin-token-file",
        tokens.to_str().unwrap(),
    ]);
    let port = server.admin_addr().port();
    let http = reqwest::Client::new();
    for path in ["/api/v1/regions", "/api/v1/audit", "/metrics"] {
        let url = format!("http://127.0.0.1:{port}{path}");
        let anonymous = http.get(&url).send().await.unwrap();
        assert_eq!(anonymous.status().as_u16(), 401, "{path}");
        let authorized = http
            .get(&url)
            .header("authorization", format!("Bearer {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(authorized.status().as_u16(), 200, "{path}");
        // A HEAD is a read like its GET: the same token, no more.
        let anonymous = http.head(&url).send().await.unwrap();
        assert_eq!(anonymous.status().as_u16(), 401, "HEAD {path}");
        let authorized = http
            .head(&url)
            .header("authorization", format!("Bearer {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(authorized.status().as_u16(), 200, "HEAD {path}");
    }
    // The process itself answers whoever asks whether it lives.
    let health = http
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test]
async fn admin_responses_carry_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let admin = Admin::start(dir.path(), None);
    for path in ["/", "/api/v1/regions", "/api/v1/nothing"] {
        let r = admin
            .http
            .get(format!("{}{path}", admin.base))
            .send()
            .await
            .unwrap();
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'self'"),
            "{path}"
        );
    }
}

/// `v` is the API's JSON error with `status`.
fn assert_json_error(status: u16, v: &Value, want: u16, what: &str) {
    assert_eq!(status, want, "{what}: {v}");
    assert_eq!(v["status"], want, "{what}: not the JSON error: {v}");
    assert!(v["error"].is_string(), "{what}: not the JSON error: {v}");
}

#[tokio::test]
async fn head_is_a_read_and_every_error_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let admin = Admin::start(dir.path(), None);
    // A HEAD is the GET of the same resource: open on loopback, no token asked.
    for path in ["/api/v1/regions", "/api/v1/audit", "/metrics", "/"] {
        let r = admin
            .http
            .head(format!("{}{path}", admin.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "HEAD {path}");
    }
    // A method the path does not take: 405 as JSON, with the methods it does take.
    for (method, path, allowed) in [
        (reqwest::Method::POST, "/api/v1/regions", "GET"),
        (reqwest::Method::GET, "/api/v1/reload", "POST"),
        (reqwest::Method::DELETE, DRAIN, "POST"),
        (reqwest::Method::POST, "/metrics", "GET"),
    ] {
        let r = admin
            .http
            .request(method.clone(), format!("{}{path}", admin.base))
            .header("authorization", format!("Bearer {TOKEN}"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let allow = r
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_string());
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null);
        assert_json_error(status, &v, 405, &format!("{method} {path}"));
        assert!(
            allow.as_deref().is_some_and(|a| a.contains(allowed)),
            "{method} {path}: Allow {allow:?}"
        );
    }
    // A request line longer than the API takes: 414 as JSON.
    let long = format!(
        "/api/v1/route?name={}.example.com&client=81.2.69.0/24",
        "a".repeat(20_000)
    );
    let (s, v) = admin.get(&long).await;
    assert_json_error(s, &v, 414, "a 20 kB URI");
    // Outside the API too.
    let (s, v) = admin.get("/nothing").await;
    assert_json_error(s, &v, 404, "GET /nothing");
}

#[tokio::test]
async fn the_host_must_name_this_server_and_writes_must_come_from_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    let admin = Admin::start(dir.path(), None);
    let port = admin.server.admin_addr().port();
    let read_as = |host: String| {
        let request = admin
            .http
            .get(format!("{}/api/v1/regions", admin.base))
            .header("host", host);
        async move {
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null);
            (status, v)
        }
    };
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".into(),
        format!("LocalHost.:{port}"),
    ] {
        let (s, v) = read_as(host.clone()).await;
        assert_eq!(s, 200, "Host {host}: {v}");
    }
    // A name rebound to this address by someone else's DNS: a page of theirs must not read.
    for host in [
        format!("rebound.attacker.example:{port}"),
        "rebound.attacker.example".into(),
        format!("127.0.0.1.nip.io:{port}"),
    ] {
        let (s, v) = read_as(host.clone()).await;
        assert_json_error(s, &v, 421, &format!("Host {host}"));
    }
    // Liveness tells nothing: it answers whatever the name.
    let r = admin
        .http
        .get(format!("{}/healthz", admin.base))
        .header("host", "rebound.attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Writes: no Origin (not a browser) or this server's own origin.
    let write_from = |origin: Option<String>, verb: &'static str| {
        let mut request = admin
            .http
            .post(format!(
                "{}/api/v1/zones/example.com/regions/eu-west/{verb}",
                admin.base
            ))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(r#"{"reason": "origin test"}"#);
        if let Some(o) = origin {
            request = request.header("origin", o);
        }
        async move {
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null);
            (status, v)
        }
    };
    for origin in [
        "http://attacker.example".to_string(),
        "null".into(),
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{}", port.wrapping_add(1)),
    ] {
        let (s, v) = write_from(Some(origin.clone()), "drain").await;
        assert_json_error(s, &v, 403, &format!("Origin {origin}"));
    }
    let (s, v) = write_from(Some(format!("http://127.0.0.1:{port}")), "drain").await;
    assert_eq!(s, 200, "same origin: {v}");
    let (s, v) = write_from(None, "undrain").await;
    assert_eq!(s, 200, "no Origin: {v}");
    let (_, audit) = admin.get("/api/v1/audit").await;
    assert_eq!(
        audit.as_array().unwrap().len(),
        2,
        "only the two allowed writes: {audit}"
    );
}

#[tokio::test]
async fn configured_admin_host_names_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let admin = Admin::start_with(
        dir.path(),
        None,
        &[
            "--admin-host",
            "admin.example.net",
            "--admin-host",
            "meridian-1.internal",
        ],
    );
    let port = admin.server.admin_addr().port();
    for (host, want) in [
        (format!("admin.example.net:{port}"), 200),
        ("Admin.Example.NET.".to_string(), 200),
        ("meridian-1.internal".to_string(), 200),
        (format!("other.example.net:{port}"), 421),
    ] {
        let r = admin
            .http
            .get(format!("{}/api/v1/zones", admin.base))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "Host {host}");
    }
}

/// A request whose body stops coming: answered 408 (as JSON) once the body timeout passes,
/// and the connection closed, instead of holding a connection for good.
#[test]
fn a_body_not_sent_in_time_gets_408() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let admin = Admin::start(dir.path(), None);
    let addr = admin.server.admin_addr();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {DRAIN} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"reason\": "
    )
    .unwrap();
    // The body timeout is 10 s; the read waits a little longer.
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {:?}: {answer:?}",
        start.elapsed()
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    assert_eq!(v["status"], 408, "{answer}");
}

/// Sends `request` on a new admin connection (the write may be cut short by the server's
/// answer and close); returns the whole answer, read until the server closes (at most 20 s).
fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server answers once it has seen too much, and may close before all of it is sent.
    let _ = s.write_all(request);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Heads hyper would refuse by itself with an empty 431, 414 or 400 (too large, too many
/// header fields, a request line over the limit, a line that does not parse) get the API's
/// JSON error with that status and `Connection: close`; a request before one on the same
/// connection is answered first (before: hyper's empty answers).
#[test]
fn oversized_and_malformed_request_heads_get_json_errors_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let admin = Admin::start(dir.path(), None);
    let addr = admin.server.admin_addr();
    let mut big_head = format!("GET /api/v1/regions HTTP/1.1\r\nHost: {addr}\r\n");
    while big_head.len() < 70_000 {
        big_head.push_str("X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    big_head.push_str("\r\n");
    let mut many = format!("GET /api/v1/regions HTTP/1.1\r\nHost: {addr}\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let long_line = format!(
        "GET /api/v1/route?name={} HTTP/1.1\r\nHost: {addr}\r\n\r\n",
        "a".repeat(70_000)
    );
    let one_good = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    for (what, request, want) in [
        ("a 70 kB head", big_head.clone(), 431),
        ("150 header fields", many, 431),
        ("a 70 kB request line", long_line, 414),
        (
            "a bad version",
            format!("GET / HTTP/7.0\r\nHost: {addr}\r\n\r\n"),
            400,
        ),
        (
            "a bad header name",
            format!("GET / HTTP/1.1\r\nHost {addr}\r\n\r\n"),
            400,
        ),
        (
            "a good request, then a 70 kB head",
            format!("{one_good}{big_head}"),
            431,
        ),
    ] {
        let answer = raw_exchange(addr, request.as_bytes());
        // The good request before it, if any, is answered first.
        let answer = match answer.strip_prefix("HTTP/1.1 200 OK") {
            Some(rest) => {
                let at = rest
                    .find("HTTP/1.1 ")
                    .unwrap_or_else(|| panic!("{what}: {answer}"));
                rest[at..].to_string()
            }
            None => answer,
        };
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{what}: no answer: {answer:?}"));
        assert!(
            head.starts_with(&format!("HTTP/1.1 {want} ")),
            "{what}: {head}"
        );
        let head = head.to_ascii_lowercase();
        assert!(head.contains("\r\nconnection: close"), "{what}: {head}");
        assert!(
            head.contains("\r\ncontent-type: application/json"),
            "{what}: {head}"
        );
        assert!(
            head.contains("\r\nx-content-type-options: nosniff"),
            "{what}: {head}"
        );
        let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        assert_json_error(want, &v, want, what);
    }
    // The listener still serves.
    let answer = raw_exchange(
        addr,
        format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// One client network (a /24 here) holds at most a quarter of the admin connections: past
/// that its connections get a JSON 503 and are closed, while another network is still served
/// (before: one address could take every slot, and everyone else waited).
#[test]
fn one_client_network_cannot_take_every_admin_connection() {
    use meridian::admin::listen::{MAX_CONNECTIONS, per_client_cap};
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let admin = Admin::start(dir.path(), None);
    let addr = admin.server.admin_addr();
    let share = per_client_cap(MAX_CONNECTIONS);
    assert!(share < MAX_CONNECTIONS, "another network has room");
    // Half-sent requests from two addresses of 127.0.0.0/24 take the network's share.
    let mut held = Vec::new();
    for i in 0..share {
        let mut s = common::connect_from(&format!("127.0.0.{}", 1 + i % 2), addr);
        s.write_all(b"GET /api/v1/regions HTTP/1.1\r\n").unwrap();
        held.push(s);
    }
    let healthz = |from: &str| {
        use std::io::Read;
        let mut s = common::connect_from(from, addr);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = write!(
            s,
            "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        );
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    // The server counts a connection once it accepts it; until then a newcomer may still get in.
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let answer = healthz("127.0.0.3");
        if answer.starts_with("HTTP/1.1 503") || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (head, body) = refused.split_once("\r\n\r\n").unwrap_or_default();
    assert!(
        head.starts_with("HTTP/1.1 503"),
        "the network's next connection: {refused:?}"
    );
    assert!(
        head.to_ascii_lowercase().contains("\r\nconnection: close"),
        "{head}"
    );
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    assert_json_error(503, &v, 503, "a connection over the network's share");
    // Another network is served meanwhile.
    let other = healthz("127.0.1.1");
    assert!(
        other.starts_with("HTTP/1.1 200"),
        "from 127.0.1.1: {other:?}"
    );
    // Once the network's connections close, it is served again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = healthz("127.0.0.3");
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "not served again: {answer:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A request head begun and not finished: answered 408 as JSON once the header timeout
/// passes, and the connection closed (before: closed without a word).
#[test]
fn a_head_not_sent_in_time_gets_408() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let admin = Admin::start(dir.path(), None);
    let addr = admin.server.admin_addr();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /api/v1/regions HTTP/1.1\r\nHost: {addr}\r\n").unwrap();
    // The header timeout is 10 s; the read waits a little longer.
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let took = start.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {took:?}: {answer:?}"
    );
    assert!(took >= Duration::from_secs(9), "answered after {took:?}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    assert_json_error(408, &v, 408, "a half-sent head");
}

/// A write lease (fcntl F_SETLEASE) on a file: another process's `open` of it waits until
/// the lease is let go (up to /proc/sys/fs/lease-break-time, 45 s by default).
struct Lease(std::fs::File);

impl Lease {
    fn take(path: &Path) -> Lease {
        use std::os::fd::AsRawFd;
        // SAFETY: ignoring SIGIO, which the kernel sends the lease holder when another process
        // opens the file; its default action would end this test process.
        unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
        let file = std::fs::File::open(path).unwrap();
        // SAFETY: fcntl on an fd this File owns.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) };
        assert_eq!(r, 0, "F_SETLEASE: {}", std::io::Error::last_os_error());
        Lease(file)
    }

    /// Another process is waiting in `open`.
    fn contended(&self) -> bool {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on an fd this File owns.
        let r = unsafe { libc::fcntl(self.0.as_raw_fd(), libc::F_GETLEASE) };
        r != libc::F_WRLCK
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on an fd this File owns.
        unsafe { libc::fcntl(self.0.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
    }
}

/// Two reloads at once (SIGHUP and the API share one reload function): one that read older
/// files and is slow cannot install them over a newer reload that has already answered. The
/// SIGHUP reload is held in its `open` of the zone file by a lease this test takes, while
/// the file is replaced and the API reload runs.
#[tokio::test]
async fn a_slow_reload_of_older_files_cannot_undo_a_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/example.com.toml");
    let good = std::fs::read_to_string(&shipped).unwrap();
    let file = zones.join("example.com.toml");
    std::fs::write(&file, &good).unwrap();
    let admin = Admin::start(dir.path(), Some(&zones));
    assert_eq!(gb_answer(&admin.server).await, [EU_WEST]);
    // Written whole and renamed into place, as an editor or a deploy does.
    let replace = |address: &str| {
        let tmp = zones.join("next.tmp");
        std::fs::write(&tmp, good.replace(EU_WEST, address)).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };

    replace("198.51.100.55");
    let lease = Lease::take(&file);
    // SAFETY: kill(2) with the server's pid and a valid signal number.
    unsafe { libc::kill(admin.server.pid() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lease.contended() {
        assert!(
            Instant::now() < deadline,
            "the SIGHUP reload never opened the zone file"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The SIGHUP reload waits in open() of the older file; the newer one takes its place.
    replace("198.51.100.77");
    let (base, http) = (admin.base.clone(), admin.http.clone());
    let mut api = tokio::spawn(async move {
        let r = http
            .post(format!("{base}/api/v1/reload"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(r#"{"reason": "newer files"}"#)
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    });
    // Unserialised, the API reload answers at once; serialised, it waits for the SIGHUP one.
    let early = tokio::time::timeout(Duration::from_secs(2), &mut api)
        .await
        .ok();
    drop(lease);
    let status = match early {
        Some(done) => done.unwrap(),
        None => api.await.unwrap(),
    };
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, audit) = admin.get("/api/v1/audit").await;
        let reloads = audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "reload")
            .count();
        if reloads == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "both reloads journaled: {audit}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        gb_answer(&admin.server).await,
        ["198.51.100.77"],
        "the newest files serve"
    );
}

/// `meridian serve` with the human log format on a pipe (as a service manager runs it),
/// every byte of its stderr kept.
struct HumanLogs {
    child: std::process::Child,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    admin: std::net::SocketAddr,
}

impl HumanLogs {
    fn start(zones: &Path, state: &Path, tokens: &Path) -> HumanLogs {
        use std::io::Read;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
            .arg("serve")
            .arg("--zones")
            .arg(zones)
            .arg("--state-dir")
            .arg(state)
            .arg("--admin-token-file")
            .arg(tokens)
            .args([
                "--dns-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--log-format",
                "human",
            ])
            .env_remove("NO_COLOR")
            .env_remove("RUST_LOG")
            .current_dir(env!("CARGO_TARGET_TMPDIR"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stderr.take().unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    stderr.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let admin = loop {
            let text = strip_ansi(&String::from_utf8_lossy(&stderr.lock().unwrap()));
            let found = text
                .lines()
                .filter(|l| l.contains("listening"))
                .find_map(|l| l.split_once("admin=").map(|(_, rest)| rest.to_string()));
            if let Some(rest) = found {
                let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
                break addr;
            }
            assert!(Instant::now() < deadline, "no listening line: {text}");
            std::thread::sleep(Duration::from_millis(20));
        };
        HumanLogs {
            child,
            stderr,
            admin,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for HumanLogs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `s` without ANSI CSI sequences (ESC [ ... final letter).
fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// An operator's reason and a zone file's name are strings from outside: in the human log
/// format their newlines and terminal escapes are written escaped, so they can neither forge
/// a log line nor drive the terminal; and a log that goes to a pipe gets no colour codes.
#[tokio::test]
async fn outside_strings_cannot_forge_human_log_lines_and_a_pipe_gets_no_colour() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/example.com.toml");
    std::fs::copy(&shipped, zones.join("example.com.toml")).unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("ops:{TOKEN}\n")).unwrap();
    let server = HumanLogs::start(&zones, &dir.path().join("state"), &tokens);
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.admin);

    let forged = "2026-01-01T00:00:00.000000Z ERROR meridian: forged";
    let reason = format!("kernel upgrade\n{forged}\r\u{1b}[2J\u{1b}[31mred\u{7}");
    let r = http
        .post(format!("{base}{DRAIN}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(json!({ "reason": reason }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // A zone file whose name carries a line of its own, refused at the reload.
    std::fs::write(zones.join(format!("bad\n{forged}.toml")), "zone = 1\n").unwrap();
    let r = http
        .post(format!("{base}/api/v1/reload"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);

    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = String::from_utf8_lossy(&server.bytes()).into_owned();
        if text.contains("operator override") && text.contains("reload refused") {
            break text;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        !server.bytes().contains(&0x1b),
        "an escape character reached a log that is not a terminal:\n{text}"
    );
    for line in text.lines() {
        assert!(
            !line.starts_with("2026-01-01"),
            "a forged line: {line:?}\n{text}"
        );
        assert!(!line.contains('\r'), "a carriage return: {line:?}");
    }
    assert!(
        text.contains(r"kernel upgrade\n2026-01-01"),
        "the reason is logged, escaped:\n{text}"
    );
}

/// The TTL and A records of www.example.com for a GB client.
async fn gb_ttl_and_answer(server: &Server) -> (u32, Vec<String>) {
    let client = common::udp_client(server.addr()).await;
    let r = common::query(
        &client,
        "www.example.com.",
        RecordType::A,
        Some("81.2.69.0/24"),
        Some(1232),
    )
    .await;
    let ttl = r.answers.first().map_or(0, |a| a.ttl);
    (ttl, r.answers.iter().map(|a| a.data.to_string()).collect())
}

fn region<'v>(regions: &'v Value, name: &str) -> &'v Value {
    regions
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == name)
        .unwrap()
}

#[tokio::test]
async fn a_drain_answers_with_the_trouble_ttl_while_it_settles_and_says_when_caches_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    let text = std::fs::read_to_string("zones/example.com.toml").unwrap();
    let text = text.replace(
        "[steered.www]\nregions = [\"us-east\", \"eu-west\", \"ap-southeast\"]\nttl = 30",
        "[steered.www]\nregions = [\"us-east\", \"eu-west\", \"ap-southeast\"]\nttl = 3\ntrouble-ttl = 1",
    );
    assert!(
        text.contains("trouble-ttl = 1"),
        "the example zone changed shape"
    );
    std::fs::write(zones.join("example.com.toml"), text).unwrap();
    let admin = Admin::start(dir.path(), Some(&zones));

    assert_eq!(
        gb_ttl_and_answer(&admin.server).await,
        (3, vec![EU_WEST.to_string()])
    );
    let (_, regions) = admin.get("/api/v1/regions").await;
    let eu = region(&regions, "eu-west");
    let last = eu["last_answer_at_ms"]
        .as_u64()
        .expect("eu-west has answered");
    // The answer's second, plus one (the second is truncated), plus its TTL.
    assert_eq!(eu["answers_cached_until_ms"].as_u64(), Some(last + 4_000));
    assert!(eu["drain_progress"].is_null(), "{eu}");

    let (status, entry) = admin.post(DRAIN, r#"{"reason": "kernel upgrade"}"#).await;
    assert_eq!(status, 200, "{entry}");
    // New answers leave eu-west at once, and with the trouble TTL while the drain settles:
    // a resolver that caches one follows an undrain soon.
    assert_eq!(
        gb_ttl_and_answer(&admin.server).await,
        (1, vec![US_EAST.to_string()])
    );
    let (_, regions) = admin.get("/api/v1/regions").await;
    let eu = region(&regions, "eu-west");
    assert_eq!(eu["drain_progress"]["answers_since_drain"], 0, "{eu}");
    let expires = eu["drain_progress"]["cached_answers_expire_at_ms"]
        .as_u64()
        .unwrap();
    assert_eq!(expires, last + 4_000, "{eu}");
    let metrics = admin.text("/metrics").await;
    assert!(
        metrics.contains(&format!(
            "meridian_region_answers_cached_until_timestamp_seconds{{zone=\"example.com.\",region=\"eu-west\"}} {}",
            expires / 1000
        )),
        "{metrics}"
    );

    // Once the answers given before the drain have expired, the drain is complete; once it
    // has settled (the name's TTL and a second after the drain), answers carry the full TTL again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let complete = loop {
        let (_, regions) = admin.get("/api/v1/regions").await;
        let eu = region(&regions, "eu-west").clone();
        if eu["drain_progress"]["complete"] == true || Instant::now() > deadline {
            break eu;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(complete["drain_progress"]["complete"], true, "{complete}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while gb_ttl_and_answer(&admin.server).await.0 != 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        gb_ttl_and_answer(&admin.server).await,
        (3, vec![US_EAST.to_string()])
    );
    let (_, regions) = admin.get("/api/v1/regions").await;
    assert_eq!(
        region(&regions, "eu-west")["drain_progress"]["answers_since_drain"],
        0
    );
}

/// `meridian route` with `args`; (success, stdout, stderr).
fn route_cli(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("route")
        .args(["--name", "www.example.com", "--client", "81.2.69.0/24"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn route_asks_the_running_server_and_says_when_it_reads_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let admin = Admin::start(dir.path(), None);
    let (status, entry) = admin.post(DRAIN, r#"{"reason": "kernel upgrade"}"#).await;
    assert_eq!(status, 200, "{entry}");
    let server = admin.server.admin_addr().to_string();

    // Asked, the server answers as DNS does: eu-west is drained, us-east answers.
    let (ok, out, err) = route_cli(&["--server", &server]);
    assert!(ok, "{err}");
    assert!(!out.contains("offline"), "{out}");
    assert!(out.contains("IN A 192.0.2.10"), "{out}");
    assert!(out.contains("drained"), "{out}");
    let (ok, out, err) = route_cli(&["--server", &format!("http://{server}/"), "--json"]);
    assert!(ok, "{err}");
    let json: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(json["a"]["chosen"], "us-east", "{json}");

    // From the files, the drain is not seen, and the output says so first.
    let (ok, out, _) = route_cli(&["--server", &server, "--offline"]);
    assert!(ok);
    assert!(
        out.starts_with("offline (--offline): decided from the zone files; drains"),
        "{out}"
    );
    assert!(out.contains("IN A 198.51.100.10"), "{out}");
    let (ok, out, err) = route_cli(&["--zones", "zones", "--json"]);
    assert!(ok, "{err}");
    assert!(
        err.starts_with("offline (files given with --zones"),
        "{err}"
    );
    let json: Value = serde_json::from_str(&out).expect("JSON alone on stdout");
    assert_eq!(json["a"]["chosen"], "eu-west", "{json}");

    // No server there: the files, saying why.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = closed.local_addr().unwrap().to_string();
    drop(closed);
    let (ok, out, _) = route_cli(&["--server", &nowhere]);
    assert!(ok);
    assert!(
        out.starts_with(&format!(
            "offline (no Meridian answered at http://{nowhere}: cannot connect)"
        )),
        "{out}"
    );

    // The server's refusal stands: no fallback to the files.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args([
            "route",
            "--name",
            "nothere.example.com",
            "--client",
            "81.2.69.0/24",
        ])
        .args(["--server", &server])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("the server at http://{server} answered 4")),
        "{err}"
    );
}
