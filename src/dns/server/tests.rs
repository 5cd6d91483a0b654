//! The TCP connection loop over an in-memory stream with tokio's paused clock (timeouts are
//! shown in virtual time, so a 10 s idle limit costs the test nothing), and the UDP socket options.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

use super::*;
use crate::geo::GeoDb;
use crate::serving::Snapshot;

fn shared() -> SharedSnapshot {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
    let zones = crate::zone::load_dir(&dir).expect("shipped zones load");
    let geo = Arc::new(GeoDb::embedded().expect("embedded db"));
    Snapshot::new(zones, geo, &crate::metrics::Metrics::default()).shared()
}

fn services() -> Arc<Services> {
    let cookies = super::cookie::Cookies::random(super::cookie::DEFAULT_AMPLIFICATION);
    Arc::new(Services::new(cookies, None, Arc::default()))
}

fn framed(id: u16, name: &str) -> Vec<u8> {
    let mut q = Message::query();
    q.metadata.id = id;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let bytes = q.to_vec().unwrap();
    [&(bytes.len() as u16).to_be_bytes()[..], &bytes].concat()
}

/// Starts the connection loop on one end of a pipe; returns the client end and the task.
fn connect() -> (DuplexStream, tokio::task::JoinHandle<io::Result<()>>) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let peer: SocketAddr = "127.0.0.1:5300".parse().unwrap();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        // Never stopping: the loop ends by itself or by the client.
        let _stop_tx = stop_tx;
        serve_connection(server, peer, shared(), services(), stop).await
    });
    (client, task)
}

async fn read_response(client: &mut DuplexStream) -> Option<Message> {
    let len = client.read_u16().await.ok()?;
    let mut buf = vec![0; usize::from(len)];
    client.read_exact(&mut buf).await.ok()?;
    Some(Message::from_vec(&buf).unwrap())
}

#[tokio::test(start_paused = true)]
async fn pipelined_queries_are_answered_in_order() {
    let (mut client, _task) = connect();
    let names = [
        "www.example.com.",
        "static.example.com.",
        "nope.example.com.",
    ];
    let mut burst = Vec::new();
    for (i, name) in names.iter().cycle().take(30).enumerate() {
        burst.extend(framed(i as u16, name));
    }
    // All thirty in one write, as a pipelining client sends them (RFC 7766 §6.2.1.1).
    client.write_all(&burst).await.unwrap();
    for (i, name) in names.iter().cycle().take(30).enumerate() {
        let m = read_response(&mut client).await.expect("an answer");
        assert_eq!(m.metadata.id, i as u16, "in order");
        assert_eq!(m.queries[0].name().to_ascii(), *name);
    }
}

#[tokio::test(start_paused = true)]
async fn a_slowloris_client_is_cut_off_after_the_idle_timeout() {
    // Half a length prefix, then nothing.
    let (mut client, task) = connect();
    let started = Instant::now();
    client.write_all(&[0]).await.unwrap();
    let result = task.await.unwrap();
    let held = started.elapsed();
    assert!(
        held >= TCP_IDLE_TIMEOUT && held < TCP_IDLE_TIMEOUT * 2,
        "{held:?}"
    );
    assert!(result.is_ok(), "{result:?}");
    // A length, then a query that never completes: cut off the same way.
    let (mut client, task) = connect();
    let started = Instant::now();
    client
        .write_all(&framed(1, "www.example.com.")[..10])
        .await
        .unwrap();
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(started.elapsed() < TCP_IDLE_TIMEOUT * 2);
    // The server's end is gone: the client reads end of stream.
    assert!(read_response(&mut client).await.is_none());
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_and_a_busy_one_after_its_query_bound() {
    let (mut client, task) = connect();
    client
        .write_all(&framed(1, "www.example.com."))
        .await
        .unwrap();
    assert!(read_response(&mut client).await.is_some());
    let started = Instant::now();
    task.await.unwrap().unwrap();
    assert!(
        started.elapsed() >= TCP_IDLE_TIMEOUT,
        "idle for the whole timeout first"
    );

    let (client, task) = connect();
    let query = framed(7, "static.example.com.");
    let writer = tokio::spawn(async move {
        let mut client = client;
        let mut answered = 0;
        for _ in 0..MAX_QUERIES_PER_CONNECTION + 5 {
            if client.write_all(&query).await.is_err() {
                break;
            }
            if read_response(&mut client).await.is_none() {
                break;
            }
            answered += 1;
        }
        answered
    });
    task.await.unwrap().unwrap();
    assert_eq!(writer.await.unwrap(), MAX_QUERIES_PER_CONNECTION);
}

/// The IP_MTU_DISCOVER (or IPV6_MTU_DISCOVER) value of a UDP socket.
fn mtu_discover(socket: &std::net::UdpSocket, v6: bool) -> libc::c_int {
    use std::os::fd::AsRawFd;
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER)
    } else {
        (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER)
    };
    let mut value: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid socket and a c_int-sized output buffer.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "{}", io::Error::last_os_error());
    value
}

#[tokio::test]
async fn udp_answers_leave_with_df_and_ignore_the_path_mtu() {
    let v4 = bind("127.0.0.1:0".parse().unwrap(), 2).unwrap();
    assert_eq!(v4.udp.len(), 2);
    for s in &v4.udp {
        assert_eq!(mtu_discover(s, false), libc::IP_PMTUDISC_PROBE);
    }
    // Loopback IPv6 may be missing in a container; IPv4 is then the whole check.
    if let Ok(v6) = bind("[::1]:0".parse().unwrap(), 1) {
        assert_eq!(mtu_discover(&v6.udp[0], true), libc::IPV6_PMTUDISC_PROBE);
    }
}
