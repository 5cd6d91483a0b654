//! SIGTERM: the server stops accepting, answers what is in flight, closes idle TCP
//! connections, and exits 0 promptly.

mod common;

use std::io::Read;
use std::net::{TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Server, wire};

#[test]
fn sigterm_answers_in_flight_queries_and_exits_zero() {
    let mut server = Server::start(&[]);
    let addr = server.addr();
    // An idle TCP connection: it must be closed, not waited on for its idle timeout.
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(8))).unwrap();

    // A client querying over UDP as fast as answers come back, until the server goes.
    let (sent, answered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let running = Arc::new(AtomicBool::new(true));
    let client = {
        let (sent, answered, running) = (sent.clone(), answered.clone(), running.clone());
        std::thread::spawn(move || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let q = wire::query(1, "static.example.com", wire::QTYPE_A, None);
            let mut buf = [0u8; 512];
            let deadline = Instant::now() + Duration::from_secs(10);
            while running.load(Ordering::Relaxed) && Instant::now() < deadline {
                s.send_to(&q, addr).unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
                if s.recv_from(&mut buf).is_ok() {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let warm = Instant::now() + Duration::from_secs(5);
    while answered.load(Ordering::Relaxed) < 100 {
        assert!(
            Instant::now() < warm,
            "the server did not answer before the test"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    let status = server
        .terminate(Duration::from_secs(7))
        .expect("the server exits after SIGTERM");
    let took = started.elapsed();
    running.store(false, Ordering::Relaxed);
    client.join().unwrap();
    assert!(
        status.success(),
        "exit status {status}: {}",
        server.log_text()
    );
    assert!(took < Duration::from_secs(3), "stopping took {took:?}");
    let mut byte = [0u8; 1];
    assert_eq!(
        idle.read(&mut byte).unwrap_or(0),
        0,
        "the idle connection was closed"
    );
    let log = server.log_text();
    assert!(
        log.contains("answering those in flight") && log.contains("\"stopped\""),
        "{log}"
    );
    // Every query but the one in flight at the signal got its answer.
    let (s, a) = (
        sent.load(Ordering::Relaxed),
        answered.load(Ordering::Relaxed),
    );
    assert!(a + 1 >= s, "{a} answered of {s} sent");
    eprintln!("SIGTERM: exit 0 in {took:?}; {a} of {s} queries answered");
}

/// The threads beside the query path run nicer than the serving threads, so that their
/// bursts wait for queries on a shared core rather than the other way round.
#[test]
fn control_threads_run_nicer_than_the_serving_threads() {
    let server = Server::start(&[]);
    // Answered: every serving thread has started.
    let q = wire::query(1, "static.example.com", wire::QTYPE_A, None);
    assert!(common::udp_exchange(server.addr(), &q, Duration::from_secs(5)).is_some());
    // A reload reads the zones on a thread of the control plane's blocking pool, which a
    // niced worker starts.
    let reload = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(reload.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log_text().contains("zones reloaded") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        server.log_text().contains("zones reloaded"),
        "no reload logged"
    );
    let tasks = format!("/proc/{}/task", server.pid());
    let mut nice: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for task in std::fs::read_dir(&tasks).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap();
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
        // Fields after the parenthesised name: state is field 3, nice field 19.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let value: i64 = fields[19 - 3].parse().unwrap();
        nice.entry(comm.trim().to_string()).or_default().push(value);
    }
    let of = |prefix: &str| -> Vec<i64> {
        nice.iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .flat_map(|(_, v)| v.clone())
            .collect()
    };
    let serving = of("meridian-udp");
    assert!(!serving.is_empty(), "no serving thread among {nice:?}");
    // Threads the control plane's own threads start (its blocking pool) are no nicer.
    let nicer = (serving[0] + 5).min(19);
    for background in ["meridian-contro", "meridian-compil", "meridian-presig"] {
        let values = of(background);
        assert!(!values.is_empty(), "no {background} thread among {nice:?}");
        for v in values {
            assert_eq!(v, nicer, "{background}, serving at {serving:?}: {nice:?}");
        }
    }
    assert!(serving.iter().all(|&v| v == serving[0]), "{nice:?}");
}
