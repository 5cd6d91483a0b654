//! TCP slots: one client network cannot hold more than its share; when every slot is taken
//! the connection idle the longest makes room, so a new client always gets in; and a close
//! by the server never throws away answers already sent.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Server, connect_from, wire};
use meridian::dns::server::{MAX_QUERIES_PER_CONNECTION, MAX_TCP_CONNECTIONS, MAX_TCP_PER_CLIENT};

fn framed_query(id: u16) -> Vec<u8> {
    let q = wire::query(id, "static.example.com", wire::QTYPE_A, None);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    framed
}

/// Reads one framed message; `false` on EOF, reset or timeout.
fn read_frame(stream: &mut TcpStream) -> bool {
    let mut len = [0u8; 2];
    if stream.read_exact(&mut len).is_err() {
        return false;
    }
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut body).is_ok()
}

/// Sends a query and returns whether its whole answer came back.
fn answered(stream: &mut TcpStream) -> bool {
    stream.write_all(&framed_query(7)).is_ok() && read_frame(stream)
}

/// Whether the server closed `stream` (EOF or reset) within its read timeout.
fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("data on a connection that should be closed"),
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

#[test]
fn one_client_network_cannot_take_every_tcp_slot() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let mut held: Vec<TcpStream> = (0..MAX_TCP_PER_CLIENT)
        .map(|_| connect_from("127.0.0.1", addr))
        .collect();
    for s in &mut held {
        assert!(answered(s), "a connection within the limit is served");
    }
    // Another address of the same /24 is the same client: counting per address let 64
    // addresses (or one IPv6 /64) take every slot.
    let mut extra = connect_from("127.0.0.2", addr);
    assert!(
        !answered(&mut extra),
        "the network's next connection is closed"
    );
    let mut other = connect_from("127.0.1.1", addr);
    assert!(answered(&mut other), "another network is still served");
    drop(held.pop());
    // The freed slot is the network's again (the server notices the close promptly).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect_from("127.0.0.3", addr);
        if answered(&mut again) {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was not freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Raises this process's open-file limit to its hard limit: the test holds over a thousand
/// sockets (the server raises its own at start).
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid resource and a live struct.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

#[test]
fn when_every_slot_is_taken_the_longest_idle_connection_makes_room() {
    raise_fd_limit();
    let server = Server::start(&[]);
    let addr = server.addr();
    // 64 networks, each within its share, until every slot is taken; connection 0 was
    // answered first, so it has been idle the longest.
    let mut held = Vec::with_capacity(MAX_TCP_CONNECTIONS);
    for i in 0..MAX_TCP_CONNECTIONS {
        let local = format!("127.0.{}.1", 10 + i / MAX_TCP_PER_CLIENT);
        let mut s = connect_from(&local, addr);
        assert!(
            answered(&mut s),
            "connection {i} of {MAX_TCP_CONNECTIONS} is served"
        );
        held.push(s);
    }
    // Refreshed: no longer the longest idle.
    assert!(answered(&mut held[1]));
    for (n, newcomer) in ["127.0.200.1", "127.0.201.1"].iter().enumerate() {
        let mut s = connect_from(newcomer, addr);
        assert!(answered(&mut s), "new client {n} gets in");
        held.push(s);
    }
    assert!(
        closed(&mut held[0]),
        "the longest idle connection made room"
    );
    assert!(closed(&mut held[2]), "then the next longest idle");
    assert!(answered(&mut held[1]), "the refreshed connection stays");
    assert!(answered(&mut held[MAX_TCP_CONNECTIONS - 1]));
    eprintln!(
        "TCP: {MAX_TCP_CONNECTIONS} connections held and served; two newcomers served, the two \
         longest idle closed"
    );
}

#[test]
fn closing_at_the_query_bound_loses_no_answer() {
    let server = Server::start(&[]);
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Fifty queries past the bound, pipelined: still unread when the server closes.
    let extra = 50;
    let mut writer = stream.try_clone().unwrap();
    let pipelined: Vec<u8> = framed_query(9)
        .iter()
        .copied()
        .cycle()
        .take(framed_query(9).len() * (MAX_QUERIES_PER_CONNECTION + extra))
        .collect();
    let sender = std::thread::spawn(move || {
        // The server stops reading at its bound; what it did not take is moot.
        let _ = writer.write_all(&pipelined);
    });
    let mut answers = 0;
    let mut len = [0u8; 2];
    let ended = loop {
        if let Err(e) = stream.read_exact(&mut len) {
            break e;
        }
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if let Err(e) = stream.read_exact(&mut body) {
            break e;
        }
        answers += 1;
        assert!(
            answers <= MAX_QUERIES_PER_CONNECTION,
            "answered past the bound"
        );
    };
    sender.join().unwrap();
    // Closing a socket with unread input makes the kernel send a reset, which discards the
    // answers the client has not read yet.
    assert_eq!(
        (answers, ended.kind()),
        (MAX_QUERIES_PER_CONNECTION, ErrorKind::UnexpectedEof),
        "every answer, then EOF ({ended})"
    );
}
