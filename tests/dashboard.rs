//! The dashboard in a real browser: headless Chromium driven over the WebDriver protocol by
//! chromedriver (Debian packages `chromium` and `chromium-driver`, which scripts/setup.sh
//! installs). Loads the page, sees the three example regions, drains one through the action
//! form (a reason typed, an expiry chosen), and sees its state and the audit log change.
//! Saves a screenshot.

mod common;

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::Server;

const TOKEN: &str = "dashboard-test-secret-0123";

/// chromedriver on a free loopback port, leading a process group of its own that the browser
/// it starts joins; the whole group is killed on drop, so a test that fails or panics leaves
/// no browser behind (killing chromedriver alone orphans Chromium).
struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = -i32::try_from(self.child.id()).expect("a pid fits i32");
        // SAFETY: kill(2) on a process group: the child's own, which cannot be reused while
        // the child is not yet reaped (the wait below).
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Driver {
        meridian::health::probe::install_crypto_provider();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is required (scripts/setup.sh installs chromium-driver)");
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
                .ok()
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("chromedriver answers");
        let status = resp.status();
        let bytes = resp.bytes().await.expect("a WebDriver body");
        let v: Value = serde_json::from_slice(&bytes).expect("WebDriver answers JSON");
        assert!(status.is_success(), "{path}: {status} {v}");
        v["value"].clone()
    }
}

struct Session<'d> {
    driver: &'d Driver,
    id: String,
}

impl Session<'_> {
    async fn new<'d>(driver: &'d Driver, profile: &std::path::Path) -> Session<'d> {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1400,1100",
                    format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let v = driver
            .call(reqwest::Method::POST, "/session", Some(caps))
            .await;
        Session {
            driver,
            id: v["sessionId"].as_str().expect("a session id").to_string(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.driver
            .call(
                reqwest::Method::POST,
                &format!("/session/{}{path}", self.id),
                Some(body),
            )
            .await
    }

    async fn get(&self, path: &str) -> Value {
        self.driver
            .call(
                reqwest::Method::GET,
                &format!("/session/{}{path}", self.id),
                None,
            )
            .await
    }

    /// Runs `script` in the page and returns its value.
    async fn eval(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    /// Polls `script` until it returns true, with a deadline.
    async fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.eval(script).await != json!(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("an element id")
            .to_string()
    }
}

/// Standard base64 (the screenshot), without padding checks.
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').map(value).collect();
    bytes
        .chunks(4)
        .flat_map(|c| {
            let n = c.iter().fold(0u32, |n, &v| (n << 6) | u32::from(v)) << (6 * (4 - c.len()));
            let out = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.into_iter().take(c.len() - 1)
        })
        .collect()
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("TWFu"), b"Man");
    assert_eq!(base64_decode("TWE="), b"Ma");
    assert_eq!(base64_decode("TQ=="), b"M");
}

#[tokio::test]
async fn dashboard_shows_regions_and_drains_one_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("browser:{TOKEN}\n")).unwrap();
    let server = Server::start(&[
        "--admin-token-file",
        tokens.to_str().unwrap(),
        "--state-dir",
        dir.path().join("state").to_str().unwrap(),
    ]);
    let admin = server.admin_addr();
    let driver = Driver::start().await;
    let session = Session::new(&driver, &dir.path().join("profile")).await;
    session
        .post("/url", json!({"url": format!("http://{admin}/")}))
        .await;

    session
        .wait_for(
            "three region cards",
            "return document.querySelectorAll('article.card').length === 3",
        )
        .await;
    let names = session
        .eval("return [...document.querySelectorAll('article.card')].map(c => c.dataset.region).sort()")
        .await;
    assert_eq!(names, json!(["ap-southeast", "eu-west", "us-east"]));
    let markers = session
        .eval("return document.querySelectorAll('#markers .marker.up').length")
        .await;
    assert_eq!(markers, json!(3), "three green markers on the map");

    let token = session.element("#token").await;
    session
        .post(&format!("/element/{token}/value"), json!({"text": TOKEN}))
        .await;
    let drain = session
        .element("article.card[data-region='eu-west'] button[data-act='drain']")
        .await;
    session
        .post(&format!("/element/{drain}/click"), json!({}))
        .await;
    // The action form: its title names the action, the reason is typed, an expiry chosen.
    session
        .wait_for(
            "the action form",
            "return document.querySelector('#act').open",
        )
        .await;
    let title = session
        .eval("return document.querySelector('#act-title').textContent")
        .await;
    assert_eq!(title, json!("drain eu-west"));
    let reason = session.element("#act-reason").await;
    session
        .post(
            &format!("/element/{reason}/value"),
            json!({"text": "browser test drain"}),
        )
        .await;
    session
        .eval("document.querySelector('#act-expiry').value = '3600'; return true")
        .await;
    let apply = session.element("#act-submit").await;
    session
        .post(&format!("/element/{apply}/click"), json!({}))
        .await;

    session
        .wait_for(
            "eu-west drained",
            "return document.querySelector(\"article.card[data-region='eu-west']\").classList.contains('drained')",
        )
        .await;
    session
        .wait_for(
            "the audit log entry",
            "return document.querySelector('#audit tbody').textContent.includes('browser test drain')",
        )
        .await;
    let who = session
        .eval("return document.querySelector('#audit tbody tr').textContent")
        .await;
    let row = who.as_str().unwrap();
    assert!(
        row.contains("browser") && row.contains("drain") && row.contains("eu-west"),
        "{row}"
    );
    let note = session
        .eval("return document.querySelector(\"article.card[data-region='eu-west'] .note\").textContent")
        .await;
    assert!(
        note.as_str().unwrap().contains("(until "),
        "the chosen expiry: {note}"
    );
    let zones = session
        .eval("return document.querySelector('#zones tbody').textContent")
        .await;
    let zones = zones.as_str().unwrap();
    assert!(
        zones.contains("example.com.") && zones.contains("unsigned"),
        "{zones}"
    );
    // No client was steered to eu-west before the drain: nothing of it sits in caches.
    session
        .wait_for(
            "the drain's progress",
            "return document.querySelector(\"article.card[data-region='eu-west'] .drain-progress\")?.textContent.includes('never answered by this node') ?? false",
        )
        .await;
    let progress = session
        .eval("return document.querySelector(\"article.card[data-region='eu-west'] .drain-progress\").textContent")
        .await;
    assert!(
        progress.as_str().unwrap().contains("safe to switch off"),
        "{progress}"
    );
    let marker = session
        .eval("return document.querySelectorAll('#markers .marker.drained').length")
        .await;
    assert_eq!(marker, json!(1));

    session.eval("window.scrollTo(0, 0); return true").await;
    let shot = session.get("/screenshot").await;
    let png = base64_decode(shot.as_str().expect("base64 PNG"));
    assert_eq!(&png[1..4], b"PNG");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {}", path.display());
}
