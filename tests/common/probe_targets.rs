//! Loopback targets for health probes: a tiny HTTP/1.1 server and a TCP accept-and-close
//! server on `127.0.0.1:0`, built with small builders (`.status(503)`, `.delay(..)`) and
//! changed while running (linkerd `route_with_latency`, gdnsd `t/009monio/server.pl`).
//!
//! Each target runs on a thread of its own with its own Tokio runtime, so that a test that
//! blocks (or a test runtime that is busy) never delays a probe's answer. `stop()` (and drop)
//! closes the listener and every open connection before it returns, so that the next connect
//! is refused; `restart()` listens again on the same port.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// How long `restart()` keeps trying to bind a port another socket briefly holds.
const REBIND_DEADLINE: Duration = Duration::from_secs(3);
/// Largest request head read; anything longer is answered 431 and closed.
const MAX_HEAD: usize = 16 * 1024;
/// How long a connection may take to send its request head.
const HEAD_DEADLINE: Duration = Duration::from_secs(5);

/// What the HTTP target answers. Changed while running through [`HttpTarget`]'s setters.
#[derive(Debug, Clone)]
struct Behaviour {
    status: u16,
    body: String,
    delay: Duration,
    /// Odd-numbered requests (1st, 3rd, ...) get 503, even ones `status`.
    flapping: bool,
}

#[derive(Debug)]
struct HttpShared {
    behaviour: Mutex<Behaviour>,
    /// Request heads received.
    requests: AtomicU64,
    /// Responses with a 2xx/3xx status about to be written.
    successes: AtomicU64,
}

#[derive(Debug, Default)]
struct TcpShared {
    connections: AtomicU64,
}

#[derive(Debug, Clone)]
enum Kind {
    Http(Arc<HttpShared>),
    Tcp(Arc<TcpShared>),
}

/// A listener serving on its own thread.
struct Running {
    shutdown: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

/// The lifecycle shared by both targets.
struct Loopback {
    addr: SocketAddr,
    kind: Kind,
    running: Option<Running>,
}

impl Loopback {
    fn start(kind: Kind) -> Loopback {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback probe target");
        let addr = listener.local_addr().expect("local address");
        let mut target = Loopback {
            addr,
            kind,
            running: None,
        };
        target.serve(listener);
        target
    }

    fn serve(&mut self, listener: std::net::TcpListener) {
        listener.set_nonblocking(true).expect("non-blocking");
        let (tx, rx) = oneshot::channel();
        let kind = self.kind.clone();
        let thread = std::thread::Builder::new()
            .name(format!("probe-target-{}", self.addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("target runtime");
                runtime.block_on(accept_loop(listener, kind, rx));
                // Dropping the runtime drops every connection task and its socket.
            })
            .expect("spawn a probe target thread");
        self.running = Some(Running {
            shutdown: tx,
            thread,
        });
    }

    fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.shutdown.send(());
            running.thread.join().expect("probe target thread panicked");
        }
    }

    fn restart(&mut self) {
        assert!(self.running.is_none(), "restart() of a running target");
        let deadline = Instant::now() + REBIND_DEADLINE;
        let listener = loop {
            match std::net::TcpListener::bind(self.addr) {
                Ok(l) => break l,
                // A client socket (a probe's ephemeral port) can hold the port a moment.
                Err(e) if e.kind() == ErrorKind::AddrInUse && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("rebind probe target {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.shutdown.send(());
            // Never panic in drop (a test may already be unwinding).
            let _ = running.thread.join();
        }
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    kind: Kind,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = TcpListener::from_std(listener).expect("tokio listener");
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                match &kind {
                    Kind::Tcp(shared) => {
                        shared.connections.fetch_add(1, Ordering::SeqCst);
                        drop(stream);
                    }
                    Kind::Http(shared) => {
                        connections.spawn(http_connection(stream, shared.clone()));
                    }
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

async fn http_connection(mut stream: TcpStream, shared: Arc<HttpShared>) {
    let head = match tokio::time::timeout(HEAD_DEADLINE, read_head(&mut stream)).await {
        Ok(Some(head)) => head,
        Ok(None) => {
            let _ = stream
                .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                .await;
            return;
        }
        Err(_) => return,
    };
    if head.is_empty() {
        return; // closed before a full head
    }
    let n = shared.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let b = shared.behaviour.lock().unwrap().clone();
    let status = if b.flapping && n % 2 == 1 {
        503
    } else {
        b.status
    };
    if !b.delay.is_zero() {
        tokio::time::sleep(b.delay).await;
    }
    if (200..400).contains(&status) {
        shared.successes.fetch_add(1, Ordering::SeqCst);
    }
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reason(status),
        b.body.len(),
        b.body
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads up to the blank line ending the request head. `Some(empty)` if the peer closed
/// first, `None` if the head is too long.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return Some(Vec::new()),
            Ok(n) => n,
        };
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Some(head);
        }
        if head.len() > MAX_HEAD {
            return None;
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// Builds an [`HttpTarget`]: 200 with body `ok` and no delay unless told otherwise.
#[derive(Debug, Clone)]
pub struct HttpTargetBuilder {
    behaviour: Behaviour,
}

impl HttpTargetBuilder {
    pub fn status(mut self, status: u16) -> Self {
        self.behaviour.status = status;
        self
    }

    pub fn body(mut self, body: &str) -> Self {
        self.behaviour.body = body.to_string();
        self
    }

    /// Sleep this long after reading a request, before the response headers.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.behaviour.delay = delay;
        self
    }

    /// Odd-numbered requests get 503, even ones the configured status.
    pub fn flapping(mut self, flapping: bool) -> Self {
        self.behaviour.flapping = flapping;
        self
    }

    pub fn start(self) -> HttpTarget {
        let shared = Arc::new(HttpShared {
            behaviour: Mutex::new(self.behaviour),
            requests: AtomicU64::new(0),
            successes: AtomicU64::new(0),
        });
        HttpTarget {
            inner: Loopback::start(Kind::Http(shared.clone())),
            shared,
        }
    }
}

/// An HTTP/1.1 server on `127.0.0.1`, one request per connection.
pub struct HttpTarget {
    inner: Loopback,
    shared: Arc<HttpShared>,
}

impl HttpTarget {
    pub fn builder() -> HttpTargetBuilder {
        HttpTargetBuilder {
            behaviour: Behaviour {
                status: 200,
                body: "ok".into(),
                delay: Duration::ZERO,
                flapping: false,
            },
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    pub fn port(&self) -> u16 {
        self.inner.addr.port()
    }

    pub fn set_status(&self, status: u16) {
        self.shared.behaviour.lock().unwrap().status = status;
    }

    pub fn set_body(&self, body: &str) {
        self.shared.behaviour.lock().unwrap().body = body.to_string();
    }

    pub fn set_delay(&self, delay: Duration) {
        self.shared.behaviour.lock().unwrap().delay = delay;
    }

    pub fn set_flapping(&self, flapping: bool) {
        self.shared.behaviour.lock().unwrap().flapping = flapping;
    }

    /// Request heads received since the target was built (over restarts).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Responses with a 2xx/3xx status sent (counted just before the write).
    pub fn successes(&self) -> u64 {
        self.shared.successes.load(Ordering::SeqCst)
    }

    pub fn is_running(&self) -> bool {
        self.inner.running.is_some()
    }

    /// Closes the listener and every connection; connects are refused when this returns.
    pub fn stop(&mut self) {
        self.inner.stop();
    }

    /// Listens again on the same port.
    pub fn restart(&mut self) {
        self.inner.restart();
    }
}

// ---------------------------------------------------------------------------------------------
// TCP

/// A server on `127.0.0.1` that accepts connections and closes them at once.
pub struct TcpTarget {
    inner: Loopback,
    shared: Arc<TcpShared>,
}

impl TcpTarget {
    pub fn start() -> TcpTarget {
        let shared = Arc::new(TcpShared::default());
        TcpTarget {
            inner: Loopback::start(Kind::Tcp(shared.clone())),
            shared,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    pub fn port(&self) -> u16 {
        self.inner.addr.port()
    }

    /// Connections accepted since the target was built (over restarts).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    pub fn is_running(&self) -> bool {
        self.inner.running.is_some()
    }

    pub fn stop(&mut self) {
        self.inner.stop();
    }

    pub fn restart(&mut self) {
        self.inner.restart();
    }
}
