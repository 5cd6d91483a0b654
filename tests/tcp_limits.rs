//! TCP slots: one client address cannot hold more than its share; another still gets in.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{Server, wire};

/// A connection from `local` (an address of 127.0.0.0/8) to `server`.
fn connect_from(local: &str, server: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&format!("{local}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.connect(&server.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    stream
}

/// Sends a query and returns whether an answer came back.
fn answered(stream: &mut TcpStream) -> bool {
    let q = wire::query(7, "static.example.com", wire::QTYPE_A, None);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    if stream.write_all(&framed).is_err() {
        return false;
    }
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).is_ok()
}

#[test]
fn one_client_cannot_take_every_tcp_slot() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let mut held: Vec<TcpStream> = (0..meridian::dns::server::MAX_TCP_PER_CLIENT)
        .map(|_| connect_from("127.0.0.1", addr))
        .collect();
    for s in &mut held {
        assert!(answered(s), "a connection within the limit is served");
    }
    let mut extra = connect_from("127.0.0.1", addr);
    assert!(
        !answered(&mut extra),
        "the client's next connection is closed"
    );
    let mut other = connect_from("127.0.0.2", addr);
    assert!(answered(&mut other), "another client is still served");
    drop(held.pop());
    // The freed slot is the client's again (the server notices the close promptly).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect_from("127.0.0.1", addr);
        if answered(&mut again) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was not freed"
        );
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
fn the_server_holds_at_most_its_global_tcp_connections() {
    raise_fd_limit();
    let server = Server::start(&[]);
    let addr = server.addr();
    let per = meridian::dns::server::MAX_TCP_PER_CLIENT;
    let max = meridian::dns::server::MAX_TCP_CONNECTIONS;
    // Many clients, each within its own share, until every slot is taken.
    let mut held = Vec::with_capacity(max);
    for i in 0..max {
        let local = format!("127.0.{}.{}", 10 + i / per / 200, 1 + (i / per) % 200);
        let mut s = connect_from(&local, addr);
        assert!(answered(&mut s), "connection {i} of {max} is served");
        held.push(s);
    }
    let mut extra = connect_from("127.0.200.1", addr);
    assert!(!answered(&mut extra), "connection {} is closed", max + 1);
    drop(held.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !answered(&mut connect_from("127.0.200.1", addr)) {
        assert!(
            std::time::Instant::now() < deadline,
            "a freed slot is taken again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("TCP: {max} connections held and served, the next one closed, a freed slot reused");
}
