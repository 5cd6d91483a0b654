//! The console's API on the whole binary: the steered names' rankings for reference places,
//! where clients go (counted per client area, bounded whatever the clients), the rate chart
//! (kept across reloads) and the live stream (a drain arrives at once).

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{RawUdp, Server, XorShift, wire};

const TOKEN: &str = "console-test-secret-0123";

struct Console {
    server: Server,
    http: reqwest::Client,
    base: String,
    _dir: tempfile::TempDir,
}

impl Console {
    fn start() -> Console {
        meridian::health::probe::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, format!("ops:{TOKEN}\n")).unwrap();
        let state = dir.path().join("state");
        let server = Server::start(&[
            "--admin-token-file",
            tokens.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ]);
        let base = format!("http://{}", server.admin_addr());
        Console {
            server,
            http: reqwest::Client::new(),
            base,
            _dir: dir,
        }
    }

    async fn get(&self, path: &str) -> Value {
        get_json(&self.http, &format!("{}{path}", self.base)).await
    }

    async fn post(&self, path: &str, body: &str) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("the admin API answers");
        assert_eq!(resp.status(), 200, "{path}");
        serde_json::from_slice(&resp.bytes().await.expect("a body")).expect("JSON")
    }

    /// Asks www.example.com A for each ECS /24 of `nets`, each answered.
    fn query_from(&self, nets: &[Ipv4Addr]) {
        let udp = RawUdp::connect(self.server.addr());
        for (i, net) in nets.iter().enumerate() {
            let ecs = wire::ecs(1, 24, 0, &net.octets()[..3]);
            let opt = wire::opt(1232, 0, false, &[ecs]);
            let q = wire::query(i as u16, "www.example.com.", wire::QTYPE_A, Some(opt));
            let answer = udp.exchange(&q, Duration::from_secs(2));
            assert!(answer.is_some(), "an answer for {net}/24");
        }
    }

    /// Polls `path` until `done` holds of it, with a deadline; returns the last value.
    async fn wait(&self, what: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.get(path).await;
            if done(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn flow_total(traffic: &Value) -> u64 {
    traffic["flows"]["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["queries"].as_u64().unwrap())
        .sum()
}

/// GET `url`: answered 200, with JSON.
async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let resp = http.get(url).send().await.expect("the admin API answers");
    assert_eq!(resp.status(), 200, "{url}");
    serde_json::from_slice(&resp.bytes().await.expect("a body")).expect("JSON")
}

fn rate_total(traffic: &Value) -> u64 {
    traffic["rates"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["counts"].as_array().unwrap())
        .map(|c| c.as_u64().unwrap())
        .sum()
}

/// The chosen region for clients at `place` in the steering view.
fn chosen_at(steering: &Value, place: &str) -> String {
    let name = &steering.as_array().unwrap()[0];
    let p = name["places"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["place"] == place)
        .unwrap_or_else(|| panic!("no place {place}"));
    p["chosen"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn steering_ranks_regions_for_reference_places_as_dns_does() {
    let c = Console::start();
    let s = c.get("/api/v1/steering").await;
    let name = &s[0];
    assert_eq!(name["name"], "www.example.com.");
    assert_eq!(name["ttl_now"], 30);
    assert_eq!(name["in_trouble"], false);
    assert_eq!(name["fallback_answering"], false);
    assert_eq!(chosen_at(&s, "New York"), "us-east");
    assert_eq!(chosen_at(&s, "London"), "eu-west");
    assert_eq!(chosen_at(&s, "Singapore"), "ap-southeast");
    let london = name["places"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["place"] == "London")
        .unwrap();
    let order: Vec<&str> = london["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["region"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["eu-west", "us-east", "ap-southeast"]);

    // A London client network answers what the London place says, drained or not.
    let route = c
        .get("/api/v1/route?name=www.example.com&client=81.2.69.0/24")
        .await;
    assert_eq!(route["a"]["chosen"], "eu-west");
    c.post(
        "/api/v1/zones/example.com./regions/eu-west/drain",
        r#"{"reason": "console test"}"#,
    )
    .await;
    let s = c.get("/api/v1/steering").await;
    assert_eq!(chosen_at(&s, "London"), "us-east");
    let route = c
        .get("/api/v1/route?name=www.example.com&client=81.2.69.0/24")
        .await;
    assert_eq!(route["a"]["chosen"], "us-east");
    // The drain puts the name in trouble: its TTL drops while clients move.
    assert_eq!(s[0]["in_trouble"], true, "{}", s[0]);
    assert_eq!(s[0]["ttl_now"], s[0]["trouble_ttl"]);
}

/// Queries from thousands of distinct client networks end up in a few areas: the counts stay
/// within the grid (one per cell and region at most), and every answer is counted.
#[tokio::test]
async fn where_clients_go_is_counted_per_area_within_a_fixed_bound() {
    let c = Console::start();
    let mut rng = XorShift::new(18);
    let nets: Vec<Ipv4Addr> = (0..3000)
        .map(|_| Ipv4Addr::from((rng.next_u64() as u32) & 0xffff_ff00))
        .collect();
    c.query_from(&nets);
    let t = c
        .wait("3000 answers counted", "/api/v1/traffic", |t| {
            flow_total(t) >= 3000
        })
        .await;
    // A thread answering more than its ring (1,024) between two drains has the entries read
    // stand for the rest: the total is right (rounded by largest remainder), each area's share
    // an estimate.
    let total = flow_total(&t);
    assert_eq!(total, 3000, "counted of 3000");
    let flows = t["flows"]["flows"].as_array().unwrap();
    // 36 x 72 cells of 5 degrees plus the unlocated, times three regions.
    assert!(flows.len() <= (36 * 72 + 1) * 3, "{} flows", flows.len());
    assert!(
        flows.len() > 30,
        "random addresses land all over: {}",
        flows.len()
    );
    for f in flows {
        if let Some(cell) = f["cell"].as_object() {
            let (lat, lon) = (cell["lat"].as_f64().unwrap(), cell["lon"].as_f64().unwrap());
            assert!(
                (-90.0..90.0).contains(&lat) && (-180.0..180.0).contains(&lon),
                "{f}"
            );
        }
    }
    // A London network is counted in the cell the database places it in, towards eu-west.
    let route = c
        .get("/api/v1/route?name=www.example.com&client=81.2.69.0/24")
        .await;
    let point = &route["location"]["point"];
    let cell = |x: &Value| (x.as_f64().unwrap() / 5.0).floor() * 5.0;
    let (lat, lon) = (cell(&point["lat"]), cell(&point["lon"]));
    c.query_from(&[Ipv4Addr::new(81, 2, 69, 0); 50]);
    let t = c
        .wait("the London answers", "/api/v1/traffic", |t| {
            flow_total(t) >= total + 50
        })
        .await;
    let london = t["flows"]["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["cell"]["lat"] == lat && f["cell"]["lon"] == lon && f["region"] == "eu-west")
        .cloned();
    let london = london.unwrap_or_else(|| panic!("a flow from the cell at {lat}, {lon}: {t}"));
    assert_eq!(london["cell"]["country"], "GB");
    assert_eq!(london["region"], "eu-west");
    assert!(london["queries"].as_u64().unwrap() >= 50, "{london}");
}

/// The rate chart lives in the process, not in the zones: a reload (API or SIGHUP) keeps it.
#[tokio::test]
async fn the_rate_chart_survives_a_reload() {
    let c = Console::start();
    c.query_from(&[Ipv4Addr::new(81, 2, 69, 0); 200]);
    let before = c
        .wait("200 answers in the chart", "/api/v1/traffic", |t| {
            rate_total(t) >= 200
        })
        .await;
    assert_eq!(rate_total(&before), 200);
    let eu = before["rates"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["region"] == "eu-west")
        .unwrap()
        .clone();
    assert_eq!(
        eu["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .sum::<u64>(),
        200
    );
    c.post("/api/v1/reload", r#"{"reason": "console test"}"#)
        .await;
    // SIGHUP too.
    // SAFETY: kill(2) on the child this test started and still holds.
    unsafe { libc::kill(c.server.pid() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.server.log_text().matches("zones reloaded").count() < 2 {
        assert!(Instant::now() < deadline, "two reloads");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two more seconds of samples after the reloads: nothing lost, nothing counted twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = c.get("/api/v1/traffic").await;
    assert_eq!(rate_total(&after), 200, "{}", after["rates"]);
    c.query_from(&[Ipv4Addr::new(81, 2, 69, 0); 10]);
    c.wait("the answers after the reload", "/api/v1/traffic", |t| {
        rate_total(t) == 210
    })
    .await;
}

/// Reads the stream until an event named `name` whose data satisfies `done`, with a deadline.
async fn next_event(
    resp: &mut reqwest::Response,
    buf: &mut String,
    name: &str,
    done: impl Fn(&Value) -> bool,
    deadline: Instant,
) -> Value {
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = "";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e;
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            if event == name {
                let v: Value = serde_json::from_str(&data).expect("event data is JSON");
                if done(&v) {
                    return v;
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {name} event in time"))
            .expect("the stream stays open")
            .expect("the stream does not end");
        buf.push_str(std::str::from_utf8(&chunk).expect("UTF-8 events"));
    }
}

fn region_state(regions: &Value, region: &str) -> String {
    regions
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == region)
        .map(|r| r["state"].as_str().unwrap().to_string())
        .unwrap()
}

#[tokio::test]
async fn the_stream_delivers_a_drain_at_once() {
    let c = Console::start();
    let mut resp = c
        .http
        .get(format!("{}/api/v1/stream", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut buf = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Every view comes whole when the stream opens.
    let first = next_event(&mut resp, &mut buf, "regions", |_| true, deadline).await;
    assert_eq!(region_state(&first, "eu-west"), "up");
    for view in ["zones", "steering", "events", "traffic", "audit"] {
        next_event(&mut resp, &mut buf, view, |_| true, deadline).await;
    }
    let asked = Instant::now();
    c.post(
        "/api/v1/zones/example.com./regions/eu-west/drain",
        r#"{"reason": "stream test"}"#,
    )
    .await;
    let drained = next_event(
        &mut resp,
        &mut buf,
        "regions",
        |r| region_state(r, "eu-west") == "drained",
        deadline,
    )
    .await;
    let took = asked.elapsed();
    eprintln!("the drain reached the stream {took:?} after it was asked for");
    assert!(drained.as_array().unwrap().len() == 3);
    let audit = next_event(&mut resp, &mut buf, "audit", |_| true, deadline).await;
    assert!(audit.to_string().contains("stream test"), "{audit}");
    // The write wakes the stream; at the latest the next tick (one second) would.
    assert!(took < Duration::from_secs(1), "{took:?}");
}

/// The state changes the dashboard lists (a health transition here) are still listed after
/// a restart, next to the drain the journal keeps.
#[tokio::test]
async fn state_changes_survive_a_restart() {
    use common::probe_targets::TcpTarget;
    meridian::health::probe::install_crypto_provider();
    let mut targets = [(); 3].map(|_| TcpTarget::start());
    let dir = tempfile::tempdir().unwrap();
    let zones = common::probed_zones(dir.path(), [0, 1, 2].map(|i| targets[i].port()));
    let state = dir.path().join("state");
    let args = ["--state-dir", state.to_str().unwrap()];
    let http = reqwest::Client::new();
    let events = |server: &Server| {
        let url = format!("http://{}/api/v1/events", server.admin_addr());
        let http = http.clone();
        async move {
            let body = http.get(url).send().await.unwrap().bytes().await.unwrap();
            serde_json::from_slice::<Value>(&body).unwrap()
        }
    };
    let went_down = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .any(|e| e["region"] == "us-east" && e["endpoint"].is_null() && e["to"] == "down")
    };
    let mut server = Server::start_with_zones(&zones, &args);
    targets[0].stop();
    let deadline = Instant::now() + Duration::from_secs(15);
    let before = loop {
        let v = events(&server).await;
        if went_down(&v) {
            break v;
        }
        assert!(Instant::now() < deadline, "us-east went down: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(server.terminate(Duration::from_secs(10)).is_some());
    drop(server);

    let server = Server::start_with_zones(&zones, &args);
    let after = events(&server).await;
    let kept: Vec<&Value> = after
        .as_array()
        .unwrap()
        .iter()
        .take(before.as_array().unwrap().len())
        .collect();
    let earlier: Vec<&Value> = before.as_array().unwrap().iter().collect();
    assert_eq!(
        kept, earlier,
        "the events of the first run, first, as they were"
    );
    assert!(went_down(&after));
}

/// The eu-west series of the rate chart in `traffic`.
fn eu_west_counts(traffic: &Value) -> Vec<u64> {
    traffic["rates"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["region"] == "eu-west")
        .map(|s| {
            s["counts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// The rate chart is saved in the state directory at shutdown and comes back after a
/// restart, the steps the server was down as zeros; a damaged file is reported by name and
/// the chart starts empty.
#[tokio::test]
async fn the_rate_chart_survives_a_restart_and_a_damaged_file_is_only_reported() {
    let mut c = Console::start();
    c.query_from(&[Ipv4Addr::new(81, 2, 69, 0); 50]);
    let before = c
        .wait("50 answers in the chart", "/api/v1/traffic", |t| {
            rate_total(t) == 50
        })
        .await;
    let (first_before, counts_before) = (
        before["rates"]["first_step_at_ms"].as_u64().unwrap(),
        eu_west_counts(&before),
    );
    assert!(c.server.terminate(Duration::from_secs(10)).is_some());
    let state = c._dir.path().join("state");
    let saved = std::fs::read_to_string(state.join("rates.json")).expect("saved at shutdown");
    let args = ["--state-dir", state.to_str().unwrap()];
    let server = Server::start(&args);
    assert!(
        server.log_text().contains("rate chart restored"),
        "{}",
        server.log_text()
    );
    let url = format!("http://{}/api/v1/traffic", server.admin_addr());
    let after = get_json(&c.http, &url).await;
    // The same steps at the same times: the first run's counts, then the steps since.
    assert_eq!(rate_total(&after), 50, "{}", after["rates"]);
    assert_eq!(after["rates"]["first_step_at_ms"], first_before);
    let counts_after = eu_west_counts(&after);
    assert_eq!(
        counts_after[..counts_before.len()],
        counts_before[..],
        "{saved}"
    );
    drop(server);

    std::fs::write(state.join("rates.json"), &saved[..saved.len() / 2]).unwrap();
    let server = Server::start(&args);
    let log = server.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("ignoring the saved rate chart"))
        .unwrap_or_else(|| panic!("the damaged file is reported:\n{log}"));
    assert!(
        line.contains(&state.join("rates.json").display().to_string()),
        "{line}"
    );
    println!("{line}");
    let url = format!("http://{}/api/v1/traffic", server.admin_addr());
    let after = get_json(&c.http, &url).await;
    assert_eq!(rate_total(&after), 0, "{}", after["rates"]);
}
