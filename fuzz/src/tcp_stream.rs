//! A client's byte stream through the TCP connection handler (RFC 1035 §4.2.2, RFC 7766).
//!
//! Input: one selector octet (as [`super::packet`]'s, less the transport bit), then the bytes
//! the client sends before closing its side. The handler runs on a current-thread runtime
//! whose clock is paused, so a wait on the idle timeout passes at once and is caught: after
//! the client's EOF the handler must answer what it read and stop, never wait.

use std::net::SocketAddr;
use std::time::Duration;

use meridian::dns::server::{MAX_QUERIES_PER_CONNECTION, TCP_IDLE_TIMEOUT, serve_connection};
use meridian::dns::{self, Transport, cookie};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Room in each direction of the in-memory connection: less than the largest response, so
/// that back-pressure is exercised too.
const PIPE: usize = 16 * 1024;

pub fn run(data: &[u8]) {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let peer = super::client(selector);
    // Server cookies carry the time in seconds: when it turns, the two sides may differ.
    let (expected, (result, received, waited)) = loop {
        let second = cookie::now();
        let both = (expected(stream, peer), converse(stream, peer));
        if cookie::now() == second {
            break both;
        }
    };
    assert!(
        waited < TCP_IDLE_TIMEOUT,
        "the handler waited {waited:?} after the client's EOF"
    );
    if let Err(e) = result {
        // A query cut short by the EOF is the one error a well-behaved end gives.
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    }
    let mut answers = Vec::new();
    let mut rest = &received[..];
    while !rest.is_empty() {
        let [hi, lo, tail @ ..] = rest else {
            panic!("a response frame cut inside its length");
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        assert!(tail.len() >= len, "a response frame cut short");
        let (answer, after) = tail.split_at(len);
        answers.push(answer);
        rest = after;
    }
    assert_eq!(
        answers, expected,
        "the connection answers each query in order"
    );
}

/// What the handler must send: the answer to every complete query, in order, as the request
/// handler gives it on a state that answered the same queries before.
fn expected(stream: &[u8], peer: SocketAddr) -> Vec<Vec<u8>> {
    let state = super::cold();
    let mut answers = Vec::new();
    let mut rest = stream;
    for _ in 0..MAX_QUERIES_PER_CONNECTION {
        let [hi, lo, tail @ ..] = rest else { break };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        if tail.len() < len {
            break;
        }
        let (query, after) = tail.split_at(len);
        rest = after;
        let now = cookie::now();
        if let Some(answer) =
            dns::handle(&state, super::services(), query, peer, Transport::Tcp, now)
        {
            super::check_response(query, &answer, Transport::Tcp);
            answers.push(answer);
        }
    }
    answers
}

/// Sends `stream` to the handler and closes; returns how the handler ended, everything it
/// sent, and how long (on the paused clock) it all took.
fn converse(stream: &[u8], peer: SocketAddr) -> (std::io::Result<()>, Vec<u8>, Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds");
    runtime.block_on(async {
        let (client, server) = tokio::io::duplex(PIPE);
        let (mut from_server, mut to_server) = tokio::io::split(client);
        // The sender stays alive: a dropped one reads as a shutdown.
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let started = tokio::time::Instant::now();
        let (result, (), received) = tokio::join!(
            serve_connection(
                server,
                peer,
                super::cold().shared(),
                super::services().clone(),
                stop_rx
            ),
            async {
                // The handler may close first (query limit); what it did not read is moot.
                let _ = to_server.write_all(stream).await;
                let _ = to_server.shutdown().await;
            },
            async {
                let mut out = Vec::new();
                from_server
                    .read_to_end(&mut out)
                    .await
                    .expect("an in-memory read does not fail");
                out
            },
        );
        (result, received, started.elapsed())
    })
}
