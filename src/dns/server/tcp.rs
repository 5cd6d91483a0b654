//! DNS over TCP (RFC 7766): the connection table and the connection loop.
//!
//! The rule: a slot is for answers. A connection is idle from its last answer (or its
//! accept), and frames that draw none (a response, a runt) do not make it less idle; it is
//! closed after [`TCP_IDLE_TIMEOUT`] of that. Design of the table:
//! - why: TCP slots are few (a socket and a task each); a client that holds them without
//!   asking anything shuts the rest out. One network (a /24, an IPv6 /56: see
//!   [`super::super::client_network`]) holds at most [`MAX_TCP_PER_CLIENT`] of them;
//! - trip: when all [`MAX_TCP_CONNECTIONS`] are taken, a new connection takes the slot of the
//!   connection idle the longest, which is told to close (as NSD and Knot free their oldest
//!   idle connections), so a new client always gets in;
//! - recovery: none needed; the closed client reconnects. RFC 7766 §6.2.4: "DNS clients
//!   SHOULD retry unanswered queries if the connection closes before receiving all
//!   outstanding responses."
//!
//! Every close the server starts (idle, evicted, query bound, shutdown, a stalled client) is
//! graceful: stop reading, shut the write side after the last answer (FIN), then read and
//! discard what the client still sends, for at most [`TCP_CLOSE_DRAIN`], before closing. A
//! socket closed with unread input makes the kernel send a reset, and a reset throws away
//! the answers the client has not read yet. A connection refused at accept (its network has
//! its share) is closed at once: it has been sent nothing to lose.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::debug;

use super::super::{Services, Transport, client_network, cookie, handle};
use crate::serving::SharedSnapshot;

/// A TCP connection with no answer for this long is closed. RFC 7766 §6.2.3: "it is
/// RECOMMENDED that the default server application-level idle period be on the order of
/// seconds". Frames that draw no answer do not count as activity.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most TCP connections served at once; with every slot taken, a new connection closes the
/// one idle the longest.
pub const MAX_TCP_CONNECTIONS: usize = 1024;
/// Most TCP connections one client network (a /24, an IPv6 /56) may hold: one client cannot
/// take every slot, whatever number of addresses it has there.
pub const MAX_TCP_PER_CLIENT: usize = 16;
/// Queries answered on one TCP connection before it is closed (RFC 7766 §6.2.1 lets a
/// server close; the client reconnects), so that no client holds a slot forever.
pub const MAX_QUERIES_PER_CONNECTION: usize = 10_000;
/// How long a connection the server closes goes on reading, and discarding, after its last
/// answer and its FIN: time for the client to read them and close its side first.
pub const TCP_CLOSE_DRAIN: Duration = Duration::from_secs(1);
/// Octets discarded at most while draining one connection.
const DRAIN_OCTETS: usize = 64 * 1024;
/// Connections that may drain at once; more close without draining. An evicted connection
/// drains without a slot, so this bounds the sockets beyond [`MAX_TCP_CONNECTIONS`].
const MAX_DRAINING: usize = 128;

/// The TCP connection table, shared by every listener: who holds a slot, how many each
/// client network holds, and how long each connection has been idle.
pub(in crate::dns) struct Slots {
    max: usize,
    per_client: usize,
    /// The zero of [`Conn::active`] (tokio's clock, so tests can pause it).
    epoch: Instant,
    table: Mutex<Table>,
    /// Connections being served or closing, with a slot or evicted: what a shutdown waits
    /// for.
    live: AtomicUsize,
    all_closed: Notify,
    draining: AtomicUsize,
}

#[derive(Default)]
struct Table {
    open: HashMap<u64, Arc<Conn>>,
    per_network: HashMap<IpNet, usize>,
    next: u64,
}

/// What a connection shares with the table.
struct Conn {
    network: IpNet,
    /// When it last answered, or was accepted (microseconds after [`Slots::epoch`]).
    active: AtomicU64,
    /// Told to close: it has been idle the longest and a new client needs its slot.
    evict: Notify,
}

impl Table {
    /// Takes connection `id` out of the table, if it is still in it.
    fn remove(&mut self, id: u64) -> Option<Arc<Conn>> {
        let conn = self.open.remove(&id)?;
        if let Some(n) = self.per_network.get_mut(&conn.network) {
            *n -= 1;
            if *n == 0 {
                self.per_network.remove(&conn.network);
            }
        }
        Some(conn)
    }
}

impl Slots {
    pub(in crate::dns) fn new(max: usize, per_client: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max: max.max(1),
            per_client,
            epoch: Instant::now(),
            table: Mutex::default(),
            live: AtomicUsize::new(0),
            all_closed: Notify::new(),
            draining: AtomicUsize::new(0),
        })
    }

    fn micros(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// A slot for a connection from `ip`, or `None` when its network holds its share. With
    /// every slot taken, the connection idle the longest gives up its own.
    pub(in crate::dns) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let network = client_network(ip);
        let now = self.micros();
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.per_network.get(&network).copied().unwrap_or(0) >= self.per_client {
            return None;
        }
        if table.open.len() >= self.max {
            // Of two idle since the same instant, the one accepted first.
            let longest_idle = table
                .open
                .iter()
                .min_by_key(|&(&id, c)| (c.active.load(Relaxed), id))
                .map(|(&id, _)| id)
                .expect("a full table has connections");
            if let Some(evicted) = table.remove(longest_idle) {
                debug!(client = %evicted.network, "tcp slots all taken; closing the longest idle connection");
                evicted.evict.notify_one();
            }
        }
        table.next += 1;
        let id = table.next;
        let conn = Arc::new(Conn {
            network,
            active: AtomicU64::new(now),
            evict: Notify::new(),
        });
        table.open.insert(id, conn.clone());
        *table.per_network.entry(network).or_insert(0) += 1;
        self.live.fetch_add(1, AcqRel);
        Some(Slot {
            slots: self.clone(),
            id,
            conn,
        })
    }

    /// Returns once every connection has ended.
    pub(in crate::dns) async fn all_closed(&self) {
        loop {
            let closed = self.all_closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.live.load(Acquire) == 0 {
                return;
            }
            closed.await;
        }
    }

    /// Leave to drain one more connection, while fewer than [`MAX_DRAINING`] do.
    fn drain_permit(&self) -> Option<Draining<'_>> {
        if self.draining.fetch_add(1, AcqRel) < MAX_DRAINING {
            Some(Draining(self))
        } else {
            self.draining.fetch_sub(1, AcqRel);
            None
        }
    }
}

struct Draining<'a>(&'a Slots);

impl Drop for Draining<'_> {
    fn drop(&mut self) {
        self.0.draining.fetch_sub(1, AcqRel);
    }
}

/// A connection's hold on its slot, given back (unless taken away before) on drop.
pub(in crate::dns) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    conn: Arc<Conn>,
}

impl Slot {
    /// The connection answered: it is not idle now.
    fn touch(&self) {
        self.conn.active.store(self.slots.micros(), Relaxed);
    }

    /// Completes when the table has taken the slot away for a new client.
    async fn evicted(&self) {
        self.conn.evict.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.slots.table.lock().unwrap_or_else(|e| e.into_inner());
        table.remove(self.id);
        drop(table);
        if self.slots.live.fetch_sub(1, AcqRel) == 1 {
            self.slots.all_closed.notify_waiters();
        }
    }
}

/// What every TCP connection is served with.
#[derive(Clone)]
pub(in crate::dns) struct Tcp {
    pub snapshot: SharedSnapshot,
    pub services: Arc<Services>,
    pub slots: Arc<Slots>,
    pub stop: watch::Receiver<bool>,
}

impl Tcp {
    /// Serves `stream` from `peer` on a task of its own, if its network has a slot left;
    /// `None`, and the stream closed, if not.
    pub(in crate::dns) fn open<S>(&self, stream: S, peer: SocketAddr) -> Option<JoinHandle<()>>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Some(slot) = self.slots.admit(peer.ip()) else {
            debug!(client = %peer, "tcp connections per client network limit reached; closing");
            return None;
        };
        let tcp = self.clone();
        let counted = tcp.services.metrics.queries().tcp_connection();
        Some(tokio::spawn(async move {
            let _counted = counted;
            if let Err(e) = serve(stream, peer, &tcp.snapshot, &tcp.services, tcp.stop, &slot).await
            {
                debug!(error = %e, client = %peer, "tcp connection ended");
            }
        }))
    }
}

/// Answers length-prefixed queries (RFC 1035 §4.2.2) in order until the client closes or
/// idles, as one connection alone in its table. Generic over the stream so the fuzz target can
/// feed it bytes without a socket.
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    snapshot: SharedSnapshot,
    services: Arc<Services>,
    stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let slots = Slots::new(1, 1);
    let slot = slots.admit(peer.ip()).expect("an empty table has a slot");
    serve(stream, peer, &snapshot, &services, stop, &slot).await
}

/// Who ended a connection that ended without an error.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Closed {
    ByClient,
    ByServer,
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    snapshot: &SharedSnapshot,
    services: &Services,
    stop: watch::Receiver<bool>,
    slot: &Slot,
) -> io::Result<()> {
    let ended = answer_queries(&mut stream, peer, snapshot, services, stop, slot).await;
    // A timeout is the server giving up on the client: a close of its own too.
    let by_server = match &ended {
        Ok(closed) => *closed == Closed::ByServer,
        Err(e) => e.kind() == io::ErrorKind::TimedOut,
    };
    if by_server {
        close_gracefully(&mut stream, &slot.slots).await;
    }
    ended.map(drop)
}

async fn answer_queries<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    snapshot: &SharedSnapshot,
    services: &Services,
    mut stop: watch::Receiver<bool>,
    slot: &Slot,
) -> io::Result<Closed> {
    let mut buf = Vec::new();
    let mut idle_until = Instant::now() + TCP_IDLE_TIMEOUT;
    for _ in 0..MAX_QUERIES_PER_CONNECTION {
        // Between queries a shutdown or an eviction closes the connection; a query being
        // read is answered, unless the slot is taken away meanwhile.
        let len = tokio::select! {
            r = tokio::time::timeout_at(idle_until, stream.read_u16()) => match r {
                Ok(Ok(len)) => usize::from(len),
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Ok(Closed::ByClient);
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(Closed::ByServer),
            },
            _ = stop.wait_for(|s| *s) => return Ok(Closed::ByServer),
            () = slot.evicted() => return Ok(Closed::ByServer),
        };
        buf.resize(len, 0);
        tokio::select! {
            r = tokio::time::timeout_at(idle_until, stream.read_exact(&mut buf)) => {
                r.map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "query not completed in time")
                })??;
            }
            () = slot.evicted() => return Ok(Closed::ByServer),
        }
        let (current, now) = (snapshot.load(), cookie::now());
        let started = std::time::Instant::now();
        let answered = handle(&current, services, &buf, peer, Transport::Tcp, now);
        services.metrics.queries().tcp_query(started.elapsed());
        let Some(response) = answered else {
            // Nothing to answer (a response, a runt): no activity, the idle time runs on.
            continue;
        };
        slot.touch();
        idle_until = Instant::now() + TCP_IDLE_TIMEOUT;
        let mut framed = Vec::with_capacity(response.len() + 2);
        framed.extend_from_slice(&(response.len() as u16).to_be_bytes());
        framed.extend_from_slice(&response);
        tokio::select! {
            r = tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.write_all(&framed)) => {
                r.map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "response not taken in time")
                })??;
            }
            // A client that stops reading ages while its answer waits: it can be the one
            // idle the longest.
            () = slot.evicted() => return Ok(Closed::ByServer),
        }
    }
    // Enough from this client on one connection: closing lets others have the slot.
    Ok(Closed::ByServer)
}

/// Ends a connection the server closes without a reset: no more reading of queries, a FIN
/// after the answers already written, then what the client still sends read and discarded
/// until it closes its side, for at most [`TCP_CLOSE_DRAIN`] and [`DRAIN_OCTETS`].
async fn close_gracefully<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, slots: &Slots) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let Some(_draining) = slots.drain_permit() else {
        return;
    };
    let deadline = Instant::now() + TCP_CLOSE_DRAIN;
    let mut scratch = vec![0u8; 4096];
    let mut left = DRAIN_OCTETS;
    while left > 0 {
        match tokio::time::timeout_at(deadline, stream.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            // EOF (the client closed first, as it should), an error, or time is up.
            _ => return,
        }
    }
}
