//! Headless Chromium driven over the WebDriver protocol by chromedriver (Debian packages
//! `chromium` and `chromium-driver`, which scripts/setup.sh installs), for the tests that
//! look at the dashboard. The browser runs in chromedriver's process group, killed and
//! waited for on drop: no test leaves a Chromium behind.

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// chromedriver on a free loopback port, leading a process group of its own that the browser
/// it starts joins; the whole group is killed on drop, so a test that fails or panics leaves
/// no browser behind (killing chromedriver alone orphans Chromium).
pub struct Driver {
    child: Child,
    base: String,
    pub http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = -i32::try_from(self.child.id()).expect("a pid fits i32");
        // SAFETY: kill(2) on a process group: the child's own, which cannot be reused while
        // the child is not yet reaped (the wait below).
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
        // The browsers of the group are reaped by init once orphaned: wait (a bounded
        // time) until none is left, so that the test ends with no process of its own.
        let deadline = Instant::now() + Duration::from_secs(5);
        // SAFETY: signal 0 only asks whether a process of the group still exists.
        while unsafe { libc::kill(group, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Driver {
    pub async fn start() -> Driver {
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

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
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

pub struct Session<'d> {
    driver: &'d Driver,
    id: String,
}

impl Session<'_> {
    pub async fn new<'d>(driver: &'d Driver, profile: &std::path::Path) -> Session<'d> {
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

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.driver
            .call(
                reqwest::Method::POST,
                &format!("/session/{}{path}", self.id),
                Some(body),
            )
            .await
    }

    pub async fn get(&self, path: &str) -> Value {
        self.driver
            .call(
                reqwest::Method::GET,
                &format!("/session/{}{path}", self.id),
                None,
            )
            .await
    }

    /// Runs `script` in the page and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    /// Polls `script` until it returns true, with a deadline.
    pub async fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.eval(script).await != json!(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn element(&self, css: &str) -> String {
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
pub fn base64_decode(s: &str) -> Vec<u8> {
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

impl Session<'_> {
    /// Saves a screenshot of the page as `name` under the target directory.
    pub async fn screenshot(&self, name: &str) {
        self.eval("window.scrollTo(0, 0); return true").await;
        let shot = self.get("/screenshot").await;
        let png = base64_decode(shot.as_str().expect("base64 PNG"));
        assert_eq!(&png[1..4], b"PNG");
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, &png).unwrap();
        eprintln!("screenshot: {}", path.display());
    }
}
