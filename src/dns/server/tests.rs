//! The TCP connection loop over an in-memory stream with tokio's paused clock (timeouts are
//! shown in virtual time, so a 10 s idle limit costs the test nothing), and the UDP socket options.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

use super::tcp::{Slots, Tcp};
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

async fn read_response(client: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<Message> {
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

/// A frame that draws no answer: a response's header (QR=1) alone.
fn response_frame(id: u16) -> Vec<u8> {
    let mut m = [0u8; 12];
    m[..2].copy_from_slice(&id.to_be_bytes());
    m[2] = 0x80;
    [&12u16.to_be_bytes()[..], &m].concat()
}

#[tokio::test(start_paused = true)]
async fn frames_that_draw_no_answer_do_not_keep_a_connection_open() {
    // The attack: a 12-octet response every few seconds held a slot forever, for no answer.
    // With it, a frame too short for a header and an empty frame: nothing to answer either.
    let (client, task) = connect();
    let (mut from_server, mut to_server) = tokio::io::split(client);
    let started = Instant::now();
    let frames = [response_frame(1), vec![0, 4, 1, 2, 3, 4], vec![0, 0]];
    let sender = tokio::spawn(async move {
        // Ten frames, 3 s apart: 30 s of "activity" if each reset the idle timer.
        for frame in frames.iter().cycle().take(10) {
            if to_server.write_all(frame).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    });
    assert!(
        read_response(&mut from_server).await.is_none(),
        "no answer, then EOF"
    );
    let closed = started.elapsed();
    task.await.unwrap().unwrap();
    assert!(
        closed >= TCP_IDLE_TIMEOUT && closed < TCP_IDLE_TIMEOUT + Duration::from_secs(1),
        "closed after {closed:?}"
    );
    sender.abort();
}

#[tokio::test(start_paused = true)]
async fn at_its_query_bound_a_connection_half_closes_and_drains_what_was_pipelined() {
    let (client, task) = connect();
    let (mut from_server, mut to_server) = tokio::io::split(client);
    let query = framed(7, "static.example.com.");
    let pipelined: Vec<u8> = query
        .iter()
        .copied()
        .cycle()
        .take(query.len() * (MAX_QUERIES_PER_CONNECTION + 5))
        .collect();
    // Five queries past the bound, in the pipe before the server closes.
    to_server.write_all(&pipelined).await.unwrap();
    let mut answered = 0;
    while read_response(&mut from_server).await.is_some() {
        answered += 1;
        assert!(
            answered <= MAX_QUERIES_PER_CONNECTION,
            "answered past the bound"
        );
    }
    assert_eq!(answered, MAX_QUERIES_PER_CONNECTION);
    // The server's end sent EOF but still reads: a socket closed with unread input is reset
    // by the kernel, and a reset throws away answers the client has not read yet.
    to_server
        .write_all(&query)
        .await
        .expect("the server still reads after its half-close");
    let eof = Instant::now();
    // The client never closes: the drain is bounded.
    task.await.unwrap().unwrap();
    assert!(
        eof.elapsed() <= TCP_CLOSE_DRAIN,
        "drained {:?}",
        eof.elapsed()
    );
}

#[test]
fn a_client_network_is_its_slash_24_or_its_ipv6_slash_56() {
    let slots = Slots::new(100, 2);
    let admit = |ip: &str| slots.admit(ip.parse().unwrap());
    // Two /64s of one /56: one client, which has then taken its share.
    let first = admit("2001:db8:0:ab00::1").expect("a slot");
    let _second = admit("2001:db8:0:abff:ffff::2").expect("a slot");
    assert!(
        admit("2001:db8:0:ab12::3").is_none(),
        "a third from the /56"
    );
    assert!(admit("2001:db8:0:ac00::1").is_some(), "the next /56");
    let _v4 = [admit("192.0.2.1"), admit("192.0.2.254")];
    assert!(admit("192.0.2.77").is_none(), "a third from the /24");
    assert!(admit("::ffff:192.0.2.9").is_none(), "IPv4-mapped is IPv4");
    assert!(admit("192.0.3.1").is_some(), "the next /24");
    drop(first);
    assert!(admit("2001:db8:0:ab34::1").is_some(), "a slot given back");
}

/// A connection table of `max` slots and its server side, never stopping.
fn table(max: usize) -> (Tcp, tokio::sync::watch::Sender<bool>) {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let tcp = Tcp {
        snapshot: shared(),
        services: services(),
        slots: Slots::new(max, MAX_TCP_PER_CLIENT),
        stop,
    };
    (tcp, stop_tx)
}

/// Opens a connection from `peer` through the table; the client's end.
fn open(tcp: &Tcp, peer: &str) -> Option<DuplexStream> {
    let (client, server) = tokio::io::duplex(1 << 16);
    tcp.open(server, peer.parse().unwrap()).map(|_| client)
}

async fn answered(client: &mut DuplexStream) -> bool {
    client
        .write_all(&framed(1, "static.example.com."))
        .await
        .is_ok()
        && read_response(client).await.is_some()
}

#[tokio::test(start_paused = true)]
async fn with_every_slot_taken_the_connection_idle_the_longest_makes_room() {
    let (tcp, _stop) = table(3);
    // Three networks, each answered once, a second apart.
    let mut held = Vec::new();
    for peer in ["192.0.2.1:1", "198.51.100.1:1", "203.0.113.1:1"] {
        let mut client = open(&tcp, peer).expect("a free slot");
        assert!(answered(&mut client).await);
        held.push(client);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The first sends frames that draw no answer: it stays the longest idle. The second is
    // answered again: now the third has been idle longer.
    held[0].write_all(&response_frame(2)).await.unwrap();
    assert!(answered(&mut held[1]).await);
    for newcomer in ["100.64.0.1:1", "100.64.1.1:1"] {
        let mut client = open(&tcp, newcomer).expect("a newcomer always gets in");
        assert!(answered(&mut client).await);
        held.push(client);
    }
    assert!(
        read_response(&mut held[0]).await.is_none(),
        "the longest idle closed"
    );
    assert!(read_response(&mut held[2]).await.is_none(), "then the next");
    assert!(answered(&mut held[1]).await, "the one answered last stays");
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
