//! UDP and TCP listeners feeding [`super::handle`].
//!
//! Each listen address gets one `SO_REUSEPORT` UDP socket per core, each served by its own OS
//! thread in a blocking loop of `recvmmsg`/`sendmmsg` batches (no task per query, no async
//! wake-ups, two system calls per batch, as gdnsd's I/O threads do), and one TCP listener on
//! the async runtime whose connections share one table of slots ([`tcp`]: per-network shares,
//! the longest idle closed to make room, graceful closes).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::fast::At;
use super::rrl::Verdict;
use super::{FastCaches, Parsed, Services, Transport, cookie, handle_parsed, prefetch};
use crate::serving::SharedSnapshot;

mod tcp;

pub use tcp::{
    MAX_QUERIES_PER_CONNECTION, MAX_TCP_CONNECTIONS, MAX_TCP_PER_CLIENT, TCP_CLOSE_DRAIN,
    TCP_IDLE_TIMEOUT, serve_connection,
};
use tcp::{Slots, Tcp};
/// Socket buffer size asked for UDP sockets.
const UDP_BUFFER: usize = 4 << 20;
/// Attempts at finding a port free for both UDP and TCP when asked for port 0.
const PORT_ATTEMPTS: usize = 16;

/// The sockets of one listen address, bound and ready to serve.
pub struct Listener {
    pub addr: SocketAddr,
    udp: Vec<std::net::UdpSocket>,
    tcp: TcpListener,
}

/// Binds UDP and TCP on `addr`, with `udp_sockets` reuse-port UDP sockets. Port 0 picks one
/// port that is free for both protocols.
pub fn bind(addr: SocketAddr, udp_sockets: usize) -> io::Result<Listener> {
    let mut last_err = None;
    for _ in 0..PORT_ATTEMPTS {
        let first = udp_socket(addr)?;
        let bound = first.local_addr()?;
        match tcp_listener(bound) {
            Ok(tcp) => {
                let mut udp = vec![first];
                for _ in 1..udp_sockets.max(1) {
                    udp.push(udp_socket(bound)?);
                }
                return Ok(Listener {
                    addr: bound,
                    udp,
                    tcp,
                });
            }
            Err(e) if addr.port() == 0 && e.kind() == io::ErrorKind::AddrInUse => {
                last_err = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no port free for UDP and TCP")))
}

fn udp_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    dont_fragment(&socket, addr)?;
    // Room for a burst while the thread is descheduled; the kernel caps it at rmem_max.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Answers leave with DF set and are never fragmented by this host (RFC 9715 §3.1: they fit
/// 1232 octets), and the path MTU is ignored (`PMTUDISC_PROBE`), so a forged ICMP "fragmentation
/// needed" cannot make the kernel fragment or refuse them. DF also spares the kernel the IP ID
/// hash each fragmentable datagram needs.
fn dont_fragment(socket: &Socket, addr: SocketAddr) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, name, value) = if addr.is_ipv6() {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        )
    };
    // SAFETY: a valid socket, and a c_int option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Serves `listeners` from the current `snapshot` with `services`: UDP on threads of their
/// own, TCP as tasks on the calling runtime.
pub fn spawn(
    listeners: Vec<Listener>,
    snapshot: SharedSnapshot,
    services: Arc<Services>,
) -> io::Result<Running> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // One table of slots for every listener: the limits are the server's.
    let tcp = Tcp {
        snapshot: snapshot.clone(),
        services: services.clone(),
        slots: Slots::new(MAX_TCP_CONNECTIONS, MAX_TCP_PER_CLIENT),
        stop: stop_rx,
    };
    let presigner = {
        let (snapshot, services, stop) = (snapshot.clone(), services.clone(), stop.clone());
        std::thread::Builder::new()
            .name("meridian-presign".into())
            .spawn(move || {
                crate::control::run_in_background();
                presign_on_swaps(&snapshot, &services, &stop)
            })?
    };
    let mut running = Running {
        presigner: Some(presigner),
        udp: Vec::new(),
        accept: JoinSet::new(),
        tcp_slots: tcp.slots.clone(),
        stop: stop.clone(),
        stop_tx,
    };
    for listener in listeners {
        let threads = listener.udp.len();
        for (i, socket) in listener.udp.into_iter().enumerate() {
            let (snapshot, services, stop) = (snapshot.clone(), services.clone(), stop.clone());
            // Wakes the thread now and then to notice a shutdown.
            socket.set_read_timeout(Some(STOP_CHECK))?;
            running.udp.push(
                std::thread::Builder::new()
                    .name(format!("meridian-udp-{i}"))
                    .spawn(move || serve_udp(socket, threads, snapshot, services, stop))?,
            );
        }
        running.accept.spawn(serve_tcp(listener.tcp, tcp.clone()));
    }
    Ok(running)
}

/// How often the pre-signer looks for a new snapshot (and for a shutdown).
const PRESIGN_POLL: Duration = Duration::from_millis(50);

/// Seconds before a UTC day's end that the hot answers are signed for the window that may
/// start then: ten minutes (what [`super::sign`] keeps hot), and a last pass a minute before
/// for the questions that became hot since.
const PRESIGN_AHEAD: [u32; 2] = [600, 60];

/// Signs the hot signed answers again whenever the snapshot is swapped (a reload, an
/// override, a health change), so that a failover's new answers are signed before clients
/// ask; and before each UTC day's end, for the signature window that starts then (windows
/// start on day boundaries), so that the day's first queries find their signatures made;
/// until `stop`.
fn presign_on_swaps(
    snapshot: &SharedSnapshot,
    services: &Services,
    stop: &std::sync::atomic::AtomicBool,
) {
    let mut seen = snapshot.load().generation;
    // The boundary and how many of its passes were made.
    let mut ahead = (0u32, 0usize);
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        std::thread::sleep(PRESIGN_POLL);
        let current = snapshot.load_full();
        let now = super::cookie::now();
        let boundary = now - now % 86_400 + 86_400;
        let passes = PRESIGN_AHEAD
            .iter()
            .filter(|&&a| boundary - now <= a)
            .count();
        if passes > 0 && ahead != (boundary, passes) {
            ahead = (boundary, passes);
            let made = super::presign(&current, &services.hot, now, boundary, &services.signing);
            tracing::debug!(signatures = made, "signed hot answers for the next window");
        }
        if current.generation == seen {
            continue;
        }
        seen = current.generation;
        let made = super::presign(&current, &services.hot, now, now, &services.signing);
        if made > 0 {
            tracing::debug!(signatures = made, "signed hot answers for the new state");
        }
    }
}

/// How often an idle UDP thread looks for a shutdown.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// How long a shutdown waits for open TCP connections to finish their query.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The serving threads and tasks, to stop gracefully.
pub struct Running {
    presigner: Option<std::thread::JoinHandle<()>>,
    udp: Vec<std::thread::JoinHandle<()>>,
    accept: JoinSet<()>,
    tcp_slots: Arc<Slots>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    stop_tx: tokio::sync::watch::Sender<bool>,
}

impl Running {
    /// Stops accepting, lets every query already read be answered, and returns when the
    /// TCP connections have closed (or [`DRAIN_TIMEOUT`] passed) and then the UDP threads
    /// ended. TCP goes first: its connections close gracefully, which can take
    /// [`TCP_CLOSE_DRAIN`], and UDP answers meanwhile instead of leaving queries unread.
    pub async fn shutdown(mut self) {
        let _ = self.stop_tx.send(true);
        self.accept.abort_all();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.tcp_slots.all_closed())
            .await
            .is_err()
        {
            warn!("TCP connections still open after the drain timeout; closing them");
        }
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let udp = std::mem::take(&mut self.udp);
        let presigner = self.presigner.take();
        let _ = tokio::task::spawn_blocking(move || {
            for t in udp.into_iter().chain(presigner) {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Datagrams taken from (and answers given to) the kernel per system call.
const BATCH: usize = 32;
/// Largest query read; a larger datagram is cut short (MSG_TRUNC) and dropped.
const MAX_QUERY: usize = 4096;

/// Receives up to [`BATCH`] queries with one `recvmmsg` (waiting for the first only), answers
/// them, and sends the answers with one `sendmmsg`: two system calls per batch instead of two
/// per query, as gdnsd does. `threads` UDP threads serve the listener, this one among them.
fn serve_udp(
    socket: std::net::UdpSocket,
    threads: usize,
    snapshot: SharedSnapshot,
    services: Arc<Services>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let mut bufs = vec![[0u8; MAX_QUERY]; BATCH];
    // SAFETY: all-zero bytes are a valid sockaddr_storage (plain data).
    let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
    // One answer buffer per slot, reused batch after batch: no allocation per query.
    let mut answers: Vec<Vec<u8>> = (0..BATCH)
        .map(|_| Vec::with_capacity(usize::from(super::MAX_UDP_PAYLOAD)))
        .collect();
    let mut ready: Vec<usize> = Vec::with_capacity(BATCH);
    // This thread's fast-path caches, and for each query of the batch that is whole, its
    // source and what `prefetch` parsed of it.
    let mut caches = FastCaches::share_of(threads);
    let mut batch: Vec<Option<(SocketAddr, Option<Parsed>)>> = vec![None; BATCH];
    let mut iovecs: Vec<libc::iovec> = Vec::with_capacity(BATCH);
    let mut headers: Vec<libc::mmsghdr> = Vec::with_capacity(BATCH);
    let mut sending = Sending::default();
    loop {
        // Once stopping, what the kernel still holds is read without waiting and answered;
        // then the thread ends.
        let stopping = stop.load(std::sync::atomic::Ordering::Acquire);
        iovecs.clear();
        iovecs.extend(bufs.iter_mut().map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: MAX_QUERY,
        }));
        headers.clear();
        headers.extend(iovecs.iter_mut().zip(addrs.iter_mut()).map(|(iov, addr)| {
            // SAFETY: all-zero bytes are a valid mmsghdr; the pointers set below outlive
            // the call.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        }));
        // SAFETY: `headers` holds BATCH valid mmsghdr whose buffers and addresses live in
        // `bufs`, `iovecs` and `addrs`, untouched until the call returns.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                BATCH as u32,
                if stopping {
                    libc::MSG_DONTWAIT
                } else {
                    libc::MSG_WAITFORONE
                },
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if stopping && e.kind() == io::ErrorKind::WouldBlock {
                return;
            }
            if !matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                debug!(error = %e, "udp receive failed");
            }
            continue;
        }
        let current = snapshot.load();
        // The clocks, once per batch: monotonic for RRL, Unix seconds for cookies.
        let now = std::time::Instant::now();
        let unix_now = cookie::now();
        // The whole batch is parsed, and its cache lines requested, before any is answered.
        for (i, h) in headers.iter().take(n as usize).enumerate() {
            let len = (h.msg_len as usize).min(MAX_QUERY);
            batch[i] = socket_addr(&addrs[i])
                .filter(|_| h.msg_hdr.msg_flags & libc::MSG_TRUNC == 0)
                .map(|src| (src, prefetch(&caches, &current, &bufs[i][..len], src)));
        }
        ready.clear();
        for (i, h) in headers.iter().take(n as usize).enumerate() {
            let Some((src, parsed)) = batch[i] else {
                continue;
            };
            let query = &bufs[i][..(h.msg_len as usize).min(MAX_QUERY)];
            let answer = &mut answers[i];
            let at = At {
                src,
                transport: Transport::Udp,
                now: unix_now,
            };
            if !handle_parsed(&mut caches, &current, &services, query, parsed, at, answer) {
                continue;
            }
            match services
                .rrl
                .as_ref()
                .map(|r| r.check(src, answer, &current.zones, now))
            {
                None | Some(Verdict::Send) => ready.push(i),
                // A valid server cookie proves the source is not spoofed: nothing to limit.
                Some(_) if proven(&services, query, src, unix_now) => ready.push(i),
                Some(Verdict::Slip(truncated)) => {
                    *answer = truncated;
                    ready.push(i);
                }
                Some(Verdict::Drop) => {}
            }
        }
        sending.send_all(fd, &mut answers, &ready, &mut addrs, &headers);
        let queries = services.metrics.queries();
        if !ready.is_empty() {
            queries.udp_batch(now.elapsed(), ready.len() as u64);
        }
        caches.flush_counts(queries);
    }
}

/// Whether the query carries a server cookie that verifies for its source (RFC 7873).
fn proven(services: &Services, query: &[u8], src: SocketAddr, now: u32) -> bool {
    super::wire::query_options(query)
        .ok()
        .and_then(|o| o.sent_cookie(query))
        .is_some_and(|c| services.cookies.verifies(&c, src.ip(), now))
}

/// The `sendmmsg` vectors, kept from batch to batch.
#[derive(Default)]
struct Sending {
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl Sending {
    /// Sends the answers in the `ready` slots, each to the address its query came from, with as
    /// few `sendmmsg` as it takes.
    fn send_all(
        &mut self,
        fd: i32,
        answers: &mut [Vec<u8>],
        ready: &[usize],
        addrs: &mut [libc::sockaddr_storage],
        received: &[libc::mmsghdr],
    ) {
        self.iovecs.clear();
        self.iovecs.extend(ready.iter().map(|&i| libc::iovec {
            iov_base: answers[i].as_mut_ptr().cast(),
            iov_len: answers[i].len(),
        }));
        self.headers.clear();
        self.headers
            .extend(self.iovecs.iter_mut().zip(ready).map(|(iov, &i)| {
                // SAFETY: as in serve_udp; the address is the one the query arrived from.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = received[i].msg_hdr.msg_namelen;
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            }));
        let headers = &mut self.headers;
        let mut sent = 0;
        while sent < headers.len() {
            // SAFETY: the headers point into `answers` and `addrs`, alive for the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    headers[sent..].as_mut_ptr(),
                    (headers.len() - sent) as u32,
                    0,
                )
            };
            if n <= 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // One answer the kernel refuses (an unreachable address, say) must not stop
                // the rest: skip it.
                debug!(error = %e, "udp send failed");
                sent += 1;
            } else {
                sent += n as usize;
            }
        }
    }
}

/// The socket address a datagram came from.
fn socket_addr(addr: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::from((
                std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                std::net::Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Accepts connections on `listener` and serves each on a task of its own, while its client
/// network has a slot left.
async fn serve_tcp(listener: TcpListener, tcp: Tcp) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tcp.open(stream, peer);
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
