//! The dashboard in a real browser: headless Chromium driven over the WebDriver protocol by
//! chromedriver (Debian packages `chromium` and `chromium-driver`, which scripts/setup.sh
//! installs). Loads the page, sees the three example regions, drains one through the action
//! form (a reason typed, an expiry chosen), and sees its state and the audit log change.
//! Saves a screenshot.

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::Server;
use common::browser::{Driver, Session, base64_decode};

const TOKEN: &str = "dashboard-test-secret-0123";

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

/// Asks www.console.test A for each ECS /24 of `nets`.
fn query_from(server: &Server, nets: &[std::net::Ipv4Addr]) {
    let udp = common::RawUdp::connect(server.addr());
    for (i, net) in nets.iter().enumerate() {
        let ecs = common::wire::ecs(1, 24, 0, &net.octets()[..3]);
        let opt = common::wire::opt(1232, 0, false, &[ecs]);
        let q = common::wire::query(
            i as u16,
            "www.console.test.",
            common::wire::QTYPE_A,
            Some(opt),
        );
        assert!(udp.exchange(&q, Duration::from_secs(2)).is_some(), "{net}");
    }
}

/// The console in each state, from the live stream: all up (flows on the map, the rate
/// chart, each name's ranking per city, a client routed), one region drained, one down
/// (its probe target really stopped), every region down (the fallback banner). A
/// screenshot of each.
#[tokio::test]
async fn console_shows_each_state_live() {
    use common::probe_targets::TcpTarget;
    let mut targets = [(); 3].map(|_| TcpTarget::start());
    let dir = tempfile::tempdir().unwrap();
    let zones = common::probed_zones(dir.path(), [0, 1, 2].map(|i| targets[i].port()));
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("browser:{TOKEN}\n")).unwrap();
    let server = Server::start_with_zones(
        &zones,
        &[
            "--admin-token-file",
            tokens.to_str().unwrap(),
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
        ],
    );
    let admin = server.admin_addr();
    // Clients all over the world, and many from one London network.
    let mut rng = common::XorShift::new(3);
    let mut nets: Vec<std::net::Ipv4Addr> = (0..400)
        .map(|_| std::net::Ipv4Addr::from((rng.next_u64() as u32) & 0xffff_ff00))
        .collect();
    nets.extend([std::net::Ipv4Addr::new(81, 2, 69, 0); 300]);
    query_from(&server, &nets);

    let driver = Driver::start().await;
    let session = Session::new(&driver, &dir.path().join("profile")).await;
    session
        .post("/window/rect", json!({"width": 1400, "height": 2050}))
        .await;
    session
        .post("/url", json!({"url": format!("http://{admin}/")}))
        .await;
    session
        .wait_for(
            "the live stream",
            "return document.querySelector('#status').textContent.startsWith('live')",
        )
        .await;
    session
        .wait_for(
            "three regions up",
            "return document.querySelectorAll('#markers .marker.up').length === 3",
        )
        .await;
    session
        .wait_for(
            "flows on the map",
            "return document.querySelectorAll('#flows .flow').length > 10",
        )
        .await;
    // Every region's label inside the map, ap-southeast's (Sydney, near the right edge)
    // drawn to the left of its dot.
    let outside = session
        .eval("const m = document.querySelector('#map').getBoundingClientRect(); \
               return [...document.querySelectorAll('#markers text')].filter(t => { \
                 const b = t.getBoundingClientRect(); \
                 return b.left < m.left || b.right > m.right || b.top < m.top || b.bottom > m.bottom; \
               }).map(t => t.textContent)")
        .await;
    assert_eq!(outside, json!([]), "labels cut at the map's edge");
    let to_eu = session
        .eval("return document.querySelectorAll(\"#flows .flow[data-region='eu-west']\").length")
        .await;
    assert!(to_eu.as_u64().unwrap() > 0, "flows to eu-west");
    session
        .wait_for(
            "a rate line per region",
            "return document.querySelectorAll('#rates polyline.rate').length === 3",
        )
        .await;
    let london = "[...document.querySelectorAll('#steering tr')].find(r => r.querySelector('th').textContent === 'London')";
    let chosen_in_london =
        format!("return {london}?.querySelector('td.rank.chosen')?.textContent ?? ''");
    let first = session.eval(&chosen_in_london).await;
    assert!(first.as_str().unwrap().contains("eu-west"), "{first}");
    // Route a client.
    let client = session.element("#route-client").await;
    session
        .post(
            &format!("/element/{client}/value"),
            json!({"text": "81.2.69.0/24"}),
        )
        .await;
    let go = session.element("#route button").await;
    session
        .post(&format!("/element/{go}/click"), json!({}))
        .await;
    session
        .wait_for(
            "the route's decision",
            "return document.querySelector('#route-out h4')?.textContent.includes('eu-west') ?? false",
        )
        .await;
    let out = session
        .eval("return document.querySelector('#route-out').textContent")
        .await;
    let out = out.as_str().unwrap();
    assert!(
        out.contains("answers") && out.contains("farther") && out.contains("198.51.100.10"),
        "{out}"
    );
    let banner = session
        .eval("return document.querySelector('#fallback-banner').hidden")
        .await;
    assert_eq!(banner, json!(true));
    session.screenshot("console-up.png").await;

    // The stream drops: the page polls, and goes live again once the browser reconnects.
    session
        .eval("stream.close(); stream.onerror(); return true")
        .await;
    session
        .wait_for(
            "polling while the stream is down",
            "return document.querySelector('#status').textContent.startsWith('polling')",
        )
        .await;
    session
        .wait_for(
            "live again",
            "return document.querySelector('#status').textContent.startsWith('live')",
        )
        .await;

    // Drained: through the API; the page hears it from the stream.
    let http = reqwest::Client::new();
    let drain = |what: &'static str| {
        http.post(format!(
            "http://{admin}/api/v1/zones/console.test./regions/eu-west/{what}"
        ))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(r#"{"reason": "console screenshot"}"#)
        .send()
    };
    assert!(drain("drain").await.unwrap().status().is_success());
    session
        .wait_for(
            "eu-west drained",
            "return document.querySelectorAll('#markers .marker.drained').length === 1",
        )
        .await;
    session
        .wait_for(
            "London moved to us-east",
            &format!("return {london}?.querySelector('td.rank.chosen')?.textContent.includes('us-east') ?? false"),
        )
        .await;
    // The routed client follows: the box asks again when steering changes.
    session
        .wait_for(
            "the routed client moved",
            "return document.querySelector('#route-out h4')?.textContent.includes('us-east') ?? false",
        )
        .await;
    // London's clients now go to us-east: a new flow from their cell.
    let before = session
        .eval("return document.querySelectorAll(\"#flows .flow[data-region='us-east']\").length")
        .await;
    query_from(&server, &[std::net::Ipv4Addr::new(81, 2, 69, 0); 300]);
    session
        .wait_for(
            "a flow from London to us-east",
            &format!("return document.querySelectorAll(\"#flows .flow[data-region='us-east']\").length > {before}"),
        )
        .await;
    session.screenshot("console-drained.png").await;
    assert!(drain("undrain").await.unwrap().status().is_success());

    // Down: us-east's probe target really stops.
    targets[0].stop();
    session
        .wait_for(
            "us-east down",
            "return document.querySelector(\"#markers .marker.down[data-region='us-east']\") !== null",
        )
        .await;
    session
        .wait_for(
            "eu-west up again",
            "return document.querySelectorAll('#markers .marker.up').length === 2",
        )
        .await;
    // The down endpoint keeps its dot, whatever the length of the error beside it.
    let dot = session
        .eval("const d = document.querySelector(\"article.card[data-region='us-east'] .endpoints li.down .dot\"); return d ? d.getBoundingClientRect().width : 0")
        .await;
    assert!(dot.as_f64().unwrap() >= 9.0, "dot width {dot}");
    session
        .wait_for(
            "the state change in the log",
            "return document.querySelector('#events tbody').textContent.includes('up → down')",
        )
        .await;
    session.screenshot("console-down.png").await;

    // Every region down: the fallback answers, and the banner says so.
    targets[1].stop();
    targets[2].stop();
    session
        .wait_for(
            "the fallback banner",
            "return !document.querySelector('#fallback-banner').hidden",
        )
        .await;
    let text = session
        .eval("return document.querySelector('#fallback-banner').textContent")
        .await;
    assert!(
        text.as_str().unwrap().contains("www.console.test."),
        "{text}"
    );
    session.screenshot("console-fallback.png").await;
}

/// `n` RTT sample lines (NDJSON) of `rtt_ms` from `client` to `region`, taken now.
fn rtt_lines(client: &str, region: &str, rtt_ms: f64, n: usize) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    (0..n)
        .map(|_| {
            format!("{{\"client\":\"{client}\",\"region\":\"{region}\",\"rtt_ms\":{rtt_ms},\"kind\":\"tcp\",\"time\":{now}}}\n")
        })
        .collect()
}

/// The latency view: a British network measured faster to us-east (against geography) is
/// listed under us-east as served best there and as a place where measuring beats
/// distance; a German one, fastest to eu-west as distance says, only as served best; the
/// sample volumes per region. A screenshot of the view.
#[tokio::test]
async fn the_latency_view_shows_where_measured_and_distance_choices_differ() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("feeds"), "nginx:feed-secret-0123456789\n").unwrap();
    std::fs::write(
        dir.path().join("meridian.toml"),
        "[latency]\ntoken-file = \"feeds\"\npublish-secs = 1\nburst = 1000\n",
    )
    .unwrap();
    let server = Server::start(&[
        "--config",
        dir.path().join("meridian.toml").to_str().unwrap(),
        "--state-dir",
        dir.path().join("state").to_str().unwrap(),
    ]);
    let admin = server.admin_addr();
    let driver = Driver::start().await;
    let (gb, de) = ("81.2.69.0/24", "85.214.132.0/24");
    let batch = rtt_lines(gb, "eu-west", 80.0, 40)
        + &rtt_lines(gb, "us-east", 25.0, 40)
        + &rtt_lines(de, "eu-west", 15.0, 30)
        + &rtt_lines(de, "us-east", 95.0, 30)
        + &rtt_lines(de, "ap-southeast", 260.0, 30);
    let resp = driver
        .http
        .post(format!("http://{admin}/api/v1/rtt"))
        .header("authorization", "Bearer feed-secret-0123456789")
        .body(batch)
        .send()
        .await
        .unwrap();
    let report: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(report["accepted"], 170, "{report}");

    // The API first: both networks with their measured and distance choices.
    let deadline = Instant::now() + Duration::from_secs(15);
    let map = loop {
        let body = driver
            .http
            .get(format!("http://{admin}/api/v1/latency"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        if v["listed"].as_array().is_some_and(|l| l.len() == 2) {
            break v;
        }
        assert!(Instant::now() < deadline, "the map never listed both: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let net = |prefix: &str| {
        map["listed"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["network"] == prefix)
            .cloned()
            .unwrap_or_else(|| panic!("{prefix} in {map}"))
    };
    let (g, d) = (net(gb), net(de));
    assert_eq!(
        (&g["country"], &g["measured_best"], &g["nearest"]),
        (&json!("GB"), &json!("us-east"), &json!("eu-west")),
        "{g}"
    );
    assert_eq!(
        (&d["country"], &d["measured_best"], &d["nearest"]),
        (&json!("DE"), &json!("eu-west"), &json!("eu-west")),
        "{d}"
    );

    let session = Session::new(&driver, &dir.path().join("profile")).await;
    session
        .post("/url", json!({"url": format!("http://{admin}/")}))
        .await;
    session
        .wait_for(
            "the latency rows",
            "return document.querySelectorAll('#latency tbody tr[data-region]').length === 3",
        )
        .await;
    let cell = |region: &str, column: usize| {
        format!(
            "return document.querySelector(\"#latency tr[data-region='{region}']\").children[{column}].textContent.replace(/\\s+/g, ' ').trim()"
        )
    };
    let us_best = session.eval(&cell("us-east", 1)).await;
    let us_differ = session.eval(&cell("us-east", 2)).await;
    let eu_best = session.eval(&cell("eu-west", 1)).await;
    let eu_differ = session.eval(&cell("eu-west", 2)).await;
    let samples = session.eval(&cell("ap-southeast", 3)).await;
    println!(
        "us-east: {us_best} | {us_differ}\neu-west: {eu_best} | {eu_differ}\nap-southeast samples: {samples}"
    );
    assert_eq!(us_best, json!("GB ×1"));
    assert_eq!(
        us_differ,
        json!("81.2.69.0/24 GB: 25 ms here, 80 ms at eu-west (nearest)")
    );
    assert_eq!(eu_best, json!("DE ×1"));
    assert_eq!(eu_differ, json!("none"));
    assert!(
        samples.as_str().unwrap().ends_with("30 over 1 network"),
        "{samples}"
    );
    let note = session
        .eval("return document.querySelector('#latency-note').textContent")
        .await;
    assert!(
        note.as_str().unwrap().starts_with("2 client networks"),
        "{note}"
    );
    // The count of group estimates, from the API's count (the view asks for no list).
    let estimates = map["groups"].as_array().unwrap().len();
    assert!(estimates > 0, "{map}");
    assert!(
        note.as_str()
            .unwrap()
            .ends_with(&format!(", {estimates} ASN and country estimates")),
        "{note}"
    );

    session
        .eval("document.querySelector('#latency-view').scrollIntoView(); return true")
        .await;
    let shot = session.get("/screenshot").await;
    let png = base64_decode(shot.as_str().expect("base64 PNG"));
    assert_eq!(&png[1..4], b"PNG");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-latency.png");
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {}", path.display());
}
