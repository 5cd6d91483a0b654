//! The admin listener: connections up to a cap, each served HTTP/1.1 (over TLS when a
//! certificate is given) under deadlines, so that idle or half-sent requests cannot pile up.
//!
//! The rule: a connection holds one of the slots from before its `accept` until it closes,
//! TLS handshake included, and one client network (a /24, an IPv6 /56) holds at most a
//! quarter of them ([`per_client_cap`]); past that its connections get a JSON 503 and are
//! closed, so another client always finds a slot. While every slot is taken, new
//! connections wait in the kernel's listen queue, which costs this process no descriptor.
//! The cap ([`connection_cap`]) stays far below the open-file limit, so DNS and the health
//! probes keep descriptors to work with, whatever reaches the admin port. A request head must
//! arrive within [`HEADER_TIMEOUT`] (on an idle keep-alive connection too), a TLS handshake
//! within [`HANDSHAKE_TIMEOUT`], a body within [`super::BODY_TIMEOUT`] (the router reads it).
//! Heads pass [`HeadGate`] before hyper reads them.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::head::{HeadGate, Refusal};
use crate::dns::client_network;

/// Most admin connections open at once: a few operators, a dashboard or two and a metrics
/// scraper need far fewer.
pub const MAX_CONNECTIONS: usize = 64;
/// The admin side takes at most this fraction (1/8) of the open-file limit.
const OPEN_FILES_SHARE: u64 = 8;
/// A request head must arrive whole within this time, counted from the end of the previous
/// response on a kept-alive connection; else the connection is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How much later than the gate hyper's own header clock runs out.
const HEADER_BACKSTOP: Duration = Duration::from_secs(2);
/// A TLS handshake must finish within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head read. Larger than [`super::MAX_URI`] by far and below hyper's own URI
/// limit (64 KiB), so that a long request target reaches the router and its JSON 414; a head
/// over this is refused by [`HeadGate`] with a JSON 431 (414 when the request line alone is
/// that long), and the connection closed.
pub const MAX_HEAD: usize = 64 * 1024;
/// One client network (a /24, an IPv6 /56) holds at most this fraction (1/4) of the slots.
const PER_CLIENT_SHARE: usize = 4;
/// Connections over their network's share being answered 503 at once, and the time each may
/// take (the answer and a short drain).
const MAX_REFUSING: usize = 16;
const REFUSAL_TIME: Duration = Duration::from_secs(2);
/// Pause after a failed `accept`: on EMFILE the listener stays readable, and retrying at once
/// would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The admin connections allowed under an open-file limit of `open_files`:
/// [`MAX_CONNECTIONS`], or an eighth of the limit when that is less (at least one).
pub fn connection_cap(open_files: u64) -> usize {
    usize::try_from(open_files / OPEN_FILES_SHARE)
        .unwrap_or(usize::MAX)
        .clamp(1, MAX_CONNECTIONS)
}

/// The connections one client network may hold under a cap of `cap`: a quarter of it (at
/// least one), so that with one network at its share, others still find slots.
pub fn per_client_cap(cap: usize) -> usize {
    (cap / PER_CLIENT_SHARE).max(1)
}

/// The address of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// How many admin connections each client network holds ([`client_network`]: its /24, an
/// IPv6 /56, as the DNS TCP table counts them).
struct PerClient {
    max: usize,
    held: Mutex<HashMap<IpNet, usize>>,
}

/// One connection counted against its client network, until dropped.
struct ClientSlot {
    clients: Arc<PerClient>,
    network: IpNet,
}

impl PerClient {
    /// A slot for a connection from `ip`, or `None` when its network holds its share.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let network = client_network(ip);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(network).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            clients: self.clone(),
            network,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut held = self.clients.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.network) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.network);
            }
        }
    }
}

/// Accepts connections on `listener` until the process ends, at most `cap` at once and
/// [`per_client_cap`] from one client network, and serves `router` on each (after a TLS
/// handshake when `tls` is given). A connection over its network's share is answered 503 (in
/// plain HTTP; over TLS it is closed) without keeping a slot.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    cap: usize,
) {
    let slots = Arc::new(Semaphore::new(cap));
    let clients = Arc::new(PerClient {
        max: per_client_cap(cap),
        held: Mutex::default(),
    });
    let refusing = Arc::new(AtomicUsize::new(0));
    let tls = tls.map(TlsAcceptor::from);
    let mut failing = false;
    loop {
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the slots are never closed");
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // That one connection is gone already; the next may be fine.
            Err(e) if connection_error(&e) => continue,
            Err(e) => {
                if !failing {
                    warn!(error = %e, "cannot accept admin connections; retrying");
                    failing = true;
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if failing {
            info!("admin connections accepted again");
            failing = false;
        }
        let Some(client) = clients.admit(peer.ip()) else {
            drop(slot);
            refuse(tcp, tls.is_some(), &refusing, clients.max);
            continue;
        };
        // Handlers that need the client's address (the latency map's browser beacons) find
        // it as an extension.
        let (router, tls) = (
            router.clone().layer(axum::Extension(Peer(peer))),
            tls.clone(),
        );
        tokio::spawn(async move {
            let _slots = (slot, client);
            match tls {
                None => http(tcp, router).await,
                Some(tls) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                    Ok(Ok(stream)) => http(stream, router).await,
                    Ok(Err(e)) => debug!(client = %peer, error = %e, "admin TLS handshake failed"),
                    Err(_) => debug!(client = %peer, "admin TLS handshake timed out"),
                },
            }
        });
    }
}

/// Answers a connection over its network's share with a JSON 503 and closes it, without a
/// slot; at most [`MAX_REFUSING`] at once (more are closed at once), each for at most
/// [`REFUSAL_TIME`]. Over TLS it is closed at once: no handshake is spent on it.
fn refuse(tcp: TcpStream, tls: bool, refusing: &Arc<AtomicUsize>, share: usize) {
    if tls {
        return;
    }
    if refusing.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING {
        refusing.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let refusing = refusing.clone();
    tokio::spawn(async move {
        let mut tcp = tcp;
        let refusal = Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!(
                "too many admin connections from this client's network (at most {share}); \
                 close one and retry"
            ),
        };
        let _ = tokio::time::timeout(REFUSAL_TIME, refusal.write_to(&mut tcp)).await;
        refusing.fetch_sub(1, Ordering::AcqRel);
    });
}

/// An `accept` error about the one connection, not the listener.
fn connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves HTTP/1.1 on one connection until it closes. Heads pass [`HeadGate`] first; one it
/// refuses ends hyper's input, and once hyper has sent what it owes, the refusal is sent.
async fn http<I>(io: I, router: Router)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // The gate times heads out first, with a JSON 408; hyper's clock is the backstop.
        .header_read_timeout(HEADER_TIMEOUT + HEADER_BACKSTOP)
        // The gate ends the input at a refused head: the answers owed before it still go out.
        .half_close(true)
        // The gate hands over heads of MAX_HEAD at most; the room above is never used.
        .max_buf_size(2 * MAX_HEAD);
    let connection = builder
        .serve_connection(
            TokioIo::new(HeadGate::new(io)),
            TowerToHyperService::new(router),
        )
        .without_shutdown();
    let io = match connection.await {
        Ok(parts) => parts.io.into_inner(),
        Err(e) => {
            debug!(error = %e, "admin connection ended");
            return;
        }
    };
    let (mut io, refusal) = io.into_parts();
    let result = match refusal {
        Some(refusal) => {
            debug!(status = %refusal.status, reason = %refusal.message, "admin request head refused");
            refusal.write_to(&mut io).await
        }
        None => io.shutdown().await,
    };
    if let Err(e) = result {
        debug!(error = %e, "admin connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_an_eighth_of_the_open_file_limit_at_most() {
        assert_eq!(connection_cap(1_048_576), MAX_CONNECTIONS);
        assert_eq!(connection_cap(512), MAX_CONNECTIONS);
        assert_eq!(connection_cap(256), 32);
        assert_eq!(connection_cap(64), 8);
        assert_eq!(connection_cap(3), 1);
    }

    /// As the DNS TCP table counts clients: an IPv4 /24, an IPv6 /56 (two /64s of one /56
    /// are one client), an IPv4-mapped address as its IPv4 address.
    #[test]
    fn connections_are_counted_per_client_network() {
        let clients = Arc::new(PerClient {
            max: 2,
            held: Mutex::default(),
        });
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = clients.admit(ip("192.0.2.1")).expect("first of its /24");
        let _b = clients
            .admit(ip("::ffff:192.0.2.200"))
            .expect("second of its /24");
        assert!(
            clients.admit(ip("192.0.2.77")).is_none(),
            "third of the /24"
        );
        assert!(clients.admit(ip("192.0.3.1")).is_some(), "the next /24");
        let _c = clients
            .admit(ip("2001:db8:0:ab01::1"))
            .expect("first of its /56");
        let _d = clients
            .admit(ip("2001:db8:0:abff::1"))
            .expect("another /64, same /56");
        assert!(
            clients.admit(ip("2001:db8:0:ab42::9")).is_none(),
            "third of the /56"
        );
        assert!(
            clients.admit(ip("2001:db8:0:ac00::1")).is_some(),
            "the next /56"
        );
        drop(a);
        assert!(
            clients.admit(ip("192.0.2.77")).is_some(),
            "a slot of the /24 given back"
        );
    }

    #[test]
    fn one_network_takes_a_quarter_of_the_slots_and_leaves_room_for_another() {
        assert_eq!(per_client_cap(MAX_CONNECTIONS), 16);
        assert_eq!(per_client_cap(8), 2);
        assert_eq!(per_client_cap(1), 1);
        for cap in 2..=MAX_CONNECTIONS {
            assert!(per_client_cap(cap) < cap, "cap {cap}");
        }
    }
}
