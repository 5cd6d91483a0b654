//! The journal against the real binary: a full disk refuses the write with 507 and leaves
//! the journal whole, a torn last line is dropped with a warning while a damaged complete
//! line stops the start, a long journal is compacted with its history still readable page
//! by page, and undoing what is not in force is not journaled.
//!
//! The full-disk test mounts a 64 KiB tmpfs (root, as here and in CI); where mounting is not
//! permitted it fails and says so rather than skip.

mod common;

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::Server;

const TOKEN: &str = "journal-test-secret-0123456";
const REGION: &str = "/api/v1/zones/example.com/regions";
/// The largest audit page the API gives.
const MAX_PAGE: u64 = 1000;

/// A server with a token and the state directory `state`.
struct Admin {
    server: Server,
    http: reqwest::Client,
    base: String,
}

impl Admin {
    fn start(dir: &Path, state: &Path) -> Admin {
        meridian::health::probe::install_crypto_provider();
        let tokens = dir.join("tokens");
        std::fs::write(&tokens, format!("ops:{TOKEN}\n")).expect("write the token file");
        let server = Server::start(&[
            "--admin-token-file",
            tokens.to_str().expect("a UTF-8 path"),
            "--state-dir",
            state.to_str().expect("a UTF-8 path"),
        ]);
        let base = format!("http://{}", server.admin_addr());
        Admin {
            server,
            http: reqwest::Client::new(),
            base,
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the admin API answers");
        answer(r).await
    }

    async fn post(&self, path: &str, reason: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "reason": reason }).to_string())
            .send()
            .await
            .expect("the admin API answers");
        answer(r).await
    }

    /// Every audit entry, walked back page by page with `before`, oldest first.
    async fn whole_audit(&self) -> Vec<Value> {
        let mut pages = Vec::new();
        let mut before: Option<u64> = None;
        // Each page holds at least one entry, so this ends; the bound only catches a loop.
        for _ in 0..10_000 {
            let query = before.map_or(String::new(), |b| format!("&before={b}"));
            let (s, page) = self
                .get(&format!("/api/v1/audit?limit={MAX_PAGE}{query}"))
                .await;
            assert_eq!(s, 200, "{page}");
            let page = page.as_array().expect("an array of entries").clone();
            let Some(first) = page.first() else {
                pages.reverse();
                return pages.concat();
            };
            before = Some(first["seq"].as_u64().expect("a seq"));
            pages.push(page);
        }
        panic!("the audit did not end within 10,000 pages");
    }

    /// The region's view in `GET /regions`.
    async fn region(&self, name: &str) -> Value {
        let (_, regions) = self.get("/api/v1/regions").await;
        regions
            .as_array()
            .expect("an array of regions")
            .iter()
            .find(|r| r["zone"] == "example.com." && r["region"] == name)
            .cloned()
            .expect("the region is listed")
    }
}

/// The status and JSON body of an admin API answer.
async fn answer(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let body = r.bytes().await.expect("the body reads");
    let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{status}: not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, json)
}

/// A tmpfs mounted on a directory, unmounted on drop (also when the test fails).
struct Tmpfs {
    target: CString,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let target = CString::new(dir.as_os_str().as_bytes()).expect("a path without NUL");
        let options = CString::new(format!("size={size}")).expect("options without NUL");
        // SAFETY: mount(2) with NUL-terminated strings that live until it returns.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "cannot mount a {size} tmpfs on {}: {}. This test fills a small file system to \
             show what a full disk does to the journal, and needs root (CAP_SYS_ADMIN) for \
             the mount; it runs as root in CI",
            dir.display(),
            std::io::Error::last_os_error()
        );
        Tmpfs { target }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a file still open cannot keep the mount behind.
        // SAFETY: umount2(2) with a NUL-terminated path that lives until it returns.
        unsafe { libc::umount2(self.target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Fills the file system of `dir` with `dir/filler` until it has no room left.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("create the filler");
    let block = [b'x'; 1024];
    // 64 KiB of file system: 64 blocks fill it; the bound only catches a file system that
    // never fills.
    for _ in 0..10_000 {
        if let Err(e) = f.write_all(&block).and_then(|()| f.sync_all()) {
            assert_eq!(
                e.raw_os_error(),
                Some(libc::ENOSPC),
                "filling {}: {e}",
                dir.display()
            );
            return path;
        }
    }
    panic!("{} never filled up", dir.display());
}

/// The journal's lines, each checked whole: ends with a newline, parses as JSON.
fn whole_lines(journal: &Path) -> Vec<Value> {
    let bytes = std::fs::read(journal).expect("the journal reads");
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "the journal ends in a partial line: {:?}",
        String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(120)..])
    );
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_slice(l).unwrap_or_else(|e| {
                panic!(
                    "journal line {} is damaged ({e}): {:?}",
                    i + 1,
                    String::from_utf8_lossy(l)
                )
            })
        })
        .collect()
}

fn reasons(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn a_full_disk_refuses_the_write_with_507_and_keeps_the_journal_whole() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("create the state directory");
    let _tmpfs = Tmpfs::mount(&state, "64k");
    let journal = state.join("audit.jsonl");
    let admin = Admin::start(dir.path(), &state);
    let mut acked = Vec::new();
    // Some room used in the journal's last page, then none anywhere else: a line that does
    // not fit in that page is cut part-way by ENOSPC.
    for i in 0..3 {
        let reason = format!("before the disk filled {i}");
        let (s, v) = admin
            .post(&format!("{REGION}/us-east/drain"), &reason)
            .await;
        assert_eq!(s, 200, "{v}");
        acked.push(reason);
    }
    let filler = fill(&state);

    let long = "x".repeat(470);
    let mut refused = None;
    for i in 0..40 {
        let reason = format!("while full {i} {long}");
        let verb = if i % 2 == 0 { "drain" } else { "undrain" };
        let (s, v) = admin
            .post(&format!("{REGION}/eu-west/{verb}"), &reason)
            .await;
        if s == 200 {
            acked.push(reason);
        } else {
            refused = Some((i, s, v));
            break;
        }
    }
    let (i, status, body) = refused.expect("a write was refused within 40 on a full disk");
    assert!((500..600).contains(&status), "{status}: {body}");
    assert_eq!(
        reasons(&whole_lines(&journal)),
        acked,
        "the refused write left nothing"
    );
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["status"], 507, "{body}");
    let message = body["error"].as_str().expect("an error message");
    assert!(message.contains("no space left"), "{message}");
    assert!(message.contains("nothing was changed"), "{message}");
    // The refused write did not take effect: eu-west is drained only if the last accepted
    // write was a drain.
    let drained_before = i % 2 == 1;
    assert_eq!(
        admin.region("eu-west").await["state"] == "drained",
        drained_before,
        "the refused write changed the overrides"
    );
    // Longer than the refused line, so it cannot fit where that one did not.
    let longer = format!("still full {}", "x".repeat(489));
    let (s, v) = admin
        .post(&format!("{REGION}/ap-southeast/drain"), &longer)
        .await;
    assert_eq!(s, 507, "still full: {v}");
    assert_eq!(reasons(&whole_lines(&journal)), acked);
    assert_ne!(admin.region("ap-southeast").await["state"], "drained");

    std::fs::remove_file(&filler).expect("remove the filler");
    for i in 0..2 {
        let reason = format!("after room was made {i}");
        let (s, v) = admin
            .post(&format!("{REGION}/ap-southeast/drain"), &reason)
            .await;
        assert_eq!(s, 200, "{v}");
        acked.push(reason);
    }
    assert_eq!(reasons(&whole_lines(&journal)), acked);
    drop(admin);

    let admin = Admin::start(dir.path(), &state);
    assert_eq!(reasons(&admin.whole_audit().await), acked);
    assert_eq!(admin.region("ap-southeast").await["state"], "drained");
    assert_eq!(
        admin.region("eu-west").await["state"] == "drained",
        drained_before
    );
}

/// The cookie secret is created in the state directory on the first start: on a full disk
/// that start fails, and leaves no half-written secret behind to stop the next one.
#[test]
fn a_cookie_secret_that_cannot_be_written_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("create the state directory");
    let _tmpfs = Tmpfs::mount(&state, "64k");
    let filler = fill(&state);
    let out = serve_once(&state);
    assert!(!out.status.success(), "started on a full disk");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cookie-secret"), "{err}");
    assert!(
        !state.join("cookie-secret").exists(),
        "a partial secret was left"
    );
    std::fs::remove_file(&filler).expect("remove the filler");
    let admin = Admin::start(dir.path(), &state);
    drop(admin);
    let secret = std::fs::read_to_string(state.join("cookie-secret")).expect("the secret");
    assert_eq!(secret.trim().len(), 32, "{secret:?}");
}

/// Runs `meridian serve` on `state` expecting it to stop at start-up (bounded: it is killed
/// after 30 s).
fn serve_once(state: &Path) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("serve")
        .arg("--zones")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("zones"))
        .args([
            "--dns-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .arg("--state-dir")
        .arg(state)
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn meridian serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "meridian did not stop within 30 s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// One journal line as the server writes it.
fn line(seq: u64, action: &str, region: &str) -> String {
    format!(
        "{{\"seq\":{seq},\"at_ms\":{},\"by\":\"ops\",\"action\":\"{action}\",\
         \"zone\":\"example.com.\",\"region\":\"{region}\",\"reason\":\"write {seq}\"}}\n",
        1_700_000_000_000 + seq
    )
}

/// `n` entries: drains and undrains of us-east in turn (ending drained when `n` is odd),
/// with eu-west drained at entry 1 and never undrained.
fn journal_text(n: u64) -> String {
    (1..=n)
        .map(|seq| match seq {
            1 => line(1, "drain", "eu-west"),
            _ if seq % 2 == 1 => line(seq, "drain", "us-east"),
            _ => line(seq, "undrain", "us-east"),
        })
        .collect()
}

#[tokio::test]
async fn a_torn_last_line_is_dropped_with_a_warning_that_names_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("create the state directory");
    let journal = state.join("audit.jsonl");
    let good = journal_text(2);
    std::fs::write(&journal, format!("{good}{{\"seq\":3,\"at_ms\":17")).expect("write");
    let admin = Admin::start(dir.path(), &state);
    let warning = admin
        .server
        .log_lines()
        .into_iter()
        .find(|l| l.contains("\"WARN\"") && l.contains("audit.jsonl:3"))
        .unwrap_or_else(|| {
            panic!(
                "no warning names audit.jsonl:3; log:\n{}",
                admin.server.log_text()
            )
        });
    assert!(warning.contains("torn"), "{warning}");
    assert_eq!(std::fs::read_to_string(&journal).expect("read"), good);
    assert_eq!(admin.whole_audit().await.len(), 2);
    assert_eq!(admin.region("eu-west").await["state"], "drained");
}

#[test]
fn a_complete_last_line_that_does_not_parse_stops_the_start() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("create the state directory");
    let journal = state.join("audit.jsonl");
    let text = format!("{}{{\"seq\":3,\"garbled\n", journal_text(2));
    std::fs::write(&journal, &text).expect("write");
    let out = serve_once(&state);
    assert!(!out.status.success(), "started with a damaged journal");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("audit.jsonl:3: damaged journal entry"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&journal).expect("read"),
        text,
        "a refused journal is left as it was, for the operator"
    );
}

#[tokio::test]
async fn audit_pages_are_bounded_and_walk_back_with_before() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("create the state directory");
    std::fs::write(state.join("audit.jsonl"), journal_text(2_500)).expect("write");
    let admin = Admin::start(dir.path(), &state);
    let seqs = |page: &Value| -> Vec<u64> {
        page.as_array()
            .expect("an array")
            .iter()
            .map(|e| e["seq"].as_u64().expect("a seq"))
            .collect()
    };
    let (s, page) = admin.get("/api/v1/audit").await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(
        seqs(&page),
        (2_401..=2_500).collect::<Vec<_>>(),
        "default 100"
    );
    let (s, page) = admin.get("/api/v1/audit?limit=3&before=2000").await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(seqs(&page), [1_997, 1_998, 1_999]);
    let (s, page) = admin.get("/api/v1/audit?limit=10&before=4").await;
    assert_eq!(seqs(&page), [1, 2, 3], "{s}");
    let (_, page) = admin.get("/api/v1/audit?before=1").await;
    assert_eq!(page, serde_json::json!([]));
    let (s, v) = admin.get("/api/v1/audit?limit=1001").await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"].as_str().expect("a message").contains("1000"),
        "{v}"
    );
    let all = admin.whole_audit().await;
    assert_eq!(
        all.iter()
            .map(|e| e["seq"].as_u64().expect("a seq"))
            .collect::<Vec<_>>(),
        (1..=2_500).collect::<Vec<_>>()
    );
}

/// A journal far past the compaction threshold (as an older version left it): the server
/// compacts it at start into a snapshot and a short tail, moves the rest to archive
/// segments the audit still reads, and starts again from the compacted state.
#[tokio::test]
async fn a_long_journal_is_compacted_and_its_history_stays_readable() {
    const N: u64 = 25_001;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("create the state directory");
    let journal = state.join("audit.jsonl");
    let text = journal_text(N);
    std::fs::write(&journal, &text).expect("write");
    for round in 0..2 {
        let admin = Admin::start(dir.path(), &state);
        let size = std::fs::metadata(&journal).expect("the journal").len();
        assert!(
            size < text.len() as u64 / 10,
            "round {round}: the journal was not compacted ({size} bytes)"
        );
        assert_eq!(admin.region("eu-west").await["state"], "drained");
        assert_eq!(admin.region("us-east").await["state"], "drained");
        let all = admin.whole_audit().await;
        // Each round adds two writes.
        assert_eq!(all.len() as u64, N + 2 * round, "round {round}");
        assert!(
            all.iter()
                .enumerate()
                .all(|(i, e)| e["seq"].as_u64() == Some(i as u64 + 1)),
            "round {round}: every entry once, in order"
        );
        let (s, v) = admin
            .post(&format!("{REGION}/us-east/undrain"), "after compaction")
            .await;
        assert_eq!((s, v["changed"].as_bool()), (200, Some(true)), "{v}");
        assert_eq!(v["seq"].as_u64(), Some(N + 2 * round + 1), "{v}");
        let (s, v) = admin
            .post(&format!("{REGION}/us-east/drain"), "again")
            .await;
        assert_eq!(s, 200, "{v}");
    }
}

#[tokio::test]
async fn undoing_what_is_not_in_force_is_answered_but_not_journaled() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = dir.path().join("state");
    let admin = Admin::start(dir.path(), &state);
    let endpoint = format!("{REGION}/eu-west/endpoints/198.51.100.10");
    let (s, v) = admin
        .post(&format!("{REGION}/eu-west/undrain"), "not drained")
        .await;
    assert_eq!((s, v["changed"].as_bool()), (200, Some(false)), "{v}");
    let (s, v) = admin
        .post(&format!("{endpoint}/unforce"), "not forced")
        .await;
    assert_eq!((s, v["changed"].as_bool()), (200, Some(false)), "{v}");
    let (_, audit) = admin.get("/api/v1/audit").await;
    assert_eq!(audit, serde_json::json!([]), "nothing journaled");

    let (s, v) = admin
        .post(&format!("{REGION}/eu-west/drain"), "maintenance")
        .await;
    assert_eq!((s, v["changed"].as_bool()), (200, Some(true)), "{v}");
    assert_eq!(v["action"], "drain");
    let (s, v) = admin
        .post(&format!("{REGION}/eu-west/undrain"), "done")
        .await;
    assert_eq!((s, v["changed"].as_bool()), (200, Some(true)), "{v}");
    let (s, v) = admin
        .post(&format!("{REGION}/eu-west/undrain"), "done twice")
        .await;
    assert_eq!((s, v["changed"].as_bool()), (200, Some(false)), "{v}");
    let (_, audit) = admin.get("/api/v1/audit").await;
    assert_eq!(
        reasons(audit.as_array().expect("an array")),
        ["maintenance", "done"]
    );
}

/// A process's resident memory now and at its peak, in MB, from `/proc/<pid>/status`.
fn rss_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb = |key: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{key} in {status}"))
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

/// Median and worst of `n` timed GETs of `path`, in milliseconds.
async fn latency_ms(admin: &Admin, path: &str, n: usize) -> (f64, f64) {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let (s, v) = admin.get(path).await;
        assert_eq!(s, 200, "{path}: {v}");
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    (times[n / 2], times[n - 1])
}

/// Bytes in the files of `dir` and of its subdirectories one level down.
fn du(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("list")
        .flatten()
        .map(|e| {
            let m = e.metadata().expect("metadata");
            if m.is_dir() { du(&e.path()) } else { m.len() }
        })
        .sum()
}

/// What the journal costs after half a million writes through the API: memory, read
/// latency, disk, restart. A measurement, run by hand (release build; the state directory
/// on a tmpfs, so fsync costs nothing and the figures are the server's own):
/// `cargo test --release --test journal -- --ignored --nocapture half_a_million_writes`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement of several minutes, run by hand"]
async fn half_a_million_writes() {
    const WRITES: u64 = 500_000;
    const CLIENTS: u64 = 8;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("create the state directory");
    let _tmpfs = Tmpfs::mount(&state, "2g");
    let admin = Admin::start(dir.path(), &state);
    let (rss, _) = rss_mb(admin.server.pid());
    println!("started: RSS {rss:.1} MB");

    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, base) = (admin.http.clone(), admin.base.clone());
        tasks.push(tokio::spawn(async move {
            for i in (c..WRITES).step_by(CLIENTS as usize) {
                // Every write changes something, so every one is journaled.
                let (path, body) = if i % 2 == 0 {
                    let region = ["us-east", "eu-west", "ap-southeast"][(i / 2 % 3) as usize];
                    (
                        format!("{REGION}/{region}/drain"),
                        serde_json::json!({"reason": format!("bench {i}")}),
                    )
                } else {
                    let state = if i / 2 % 2 == 0 { "down" } else { "up" };
                    (
                        format!("{REGION}/us-east/endpoints/192.0.2.10/force"),
                        serde_json::json!({"reason": format!("bench {i}"), "state": state}),
                    )
                };
                let r = http
                    .post(format!("{base}{path}"))
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .expect("the admin API answers");
                assert_eq!(r.status().as_u16(), 200, "write {i}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("a writer");
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "{WRITES} writes in {took:.1} s ({:.0}/s)",
        WRITES as f64 / took
    );
    report(&admin, &state, "after the writes").await;
    drop(admin);

    let start = Instant::now();
    let admin = Admin::start(dir.path(), &state);
    println!(
        "restart to listening: {:.0} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    report(&admin, &state, "after a restart").await;
    let all = admin.whole_audit().await;
    assert_eq!(all.len() as u64, WRITES, "every write is in the audit");
}

async fn report(admin: &Admin, state: &Path, when: &str) {
    let (rss, peak) = rss_mb(admin.server.pid());
    let regions = latency_ms(admin, "/api/v1/regions", 200).await;
    let audit = latency_ms(admin, "/api/v1/audit", 200).await;
    let full = latency_ms(admin, "/api/v1/audit?limit=1000", 50).await;
    let deep = latency_ms(admin, "/api/v1/audit?limit=1000&before=250000", 50).await;
    let oldest = latency_ms(admin, "/api/v1/audit?limit=100&before=101", 50).await;
    let journal = std::fs::metadata(state.join("audit.jsonl"))
        .expect("journal")
        .len();
    println!(
        "{when}: RSS {rss:.1} MB (peak {peak:.1}); GET /regions {:.2} ms median, {:.2} worst; \
         GET /audit {:.2}/{:.2}; limit=1000 {:.2}/{:.2}; before=250000 limit=1000 {:.2}/{:.2}; \
         before=101 {:.2}/{:.2}; journal {:.2} MB, state directory {:.1} MB",
        regions.0,
        regions.1,
        audit.0,
        audit.1,
        full.0,
        full.1,
        deep.0,
        deep.1,
        oldest.0,
        oldest.1,
        journal as f64 / 1e6,
        du(state) as f64 / 1e6,
    );
}
