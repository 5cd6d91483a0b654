//! One probe of one endpoint: a TCP connect, or an HTTP(S) request sent to the endpoint's
//! address with the configured Host and TLS server name, as load balancers check backends.
//!
//! The rule: a probe that fails for a reason of this host (out of descriptors, buffers or
//! memory; no local address or route) is a [`LocalFault`], not an [`Outcome`]: it says
//! nothing about the target, so it must never count against it.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Outcome;
use crate::zone::{CheckKind, HttpCheck};

/// Most body bytes read while looking for the expected substring.
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot read CA file {path}: {source}")]
    CaFile {
        path: String,
        source: crate::files::FileError,
    },
    #[error("bad CA file {path}: {source}")]
    CaPem {
        path: String,
        source: reqwest::Error,
    },
    #[error("cannot build HTTP client: {0}")]
    Client(reqwest::Error),
}

/// A probe this host could not make: the cause is here, not at the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFault {
    /// The error's name: `EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`, `EADDRNOTAVAIL` or
    /// `ENETUNREACH`.
    pub errno: &'static str,
    /// The system's words for it.
    pub message: String,
}

impl std::fmt::Display for LocalFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "this node cannot probe: {} ({})",
            self.errno, self.message
        )
    }
}

impl LocalFault {
    /// The fault `e` is, if it is one of this host: descriptors (EMFILE, ENFILE), buffers
    /// (ENOBUFS) or memory (ENOMEM) ran out, or the host has no address to send from
    /// (EADDRNOTAVAIL) or no route (ENETUNREACH: the kernel's own table; a remote router's
    /// "unreachable" only shows as a timeout).
    fn of(e: &io::Error) -> Option<LocalFault> {
        let errno = match e.raw_os_error()? {
            libc::EMFILE => "EMFILE",
            libc::ENFILE => "ENFILE",
            libc::ENOBUFS => "ENOBUFS",
            libc::ENOMEM => "ENOMEM",
            libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
            libc::ENETUNREACH => "ENETUNREACH",
            _ => return None,
        };
        Some(LocalFault {
            errno,
            message: e.to_string(),
        })
    }
}

/// Why a probe failed: at the target (the reason), or here.
enum Failure {
    Target(String),
    Local(LocalFault),
}

/// Makes rustls use ring; reqwest is built without a default crypto provider.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Everything needed to probe one endpoint repeatedly.
#[derive(Debug, Clone)]
pub struct Prober {
    kind: CheckKind,
    target: SocketAddr,
    timeout: Duration,
    /// For HTTP(S): a client pinned to `target`, without connection reuse, so every probe
    /// measures a fresh connect and notices a listener that went away.
    http: Option<(reqwest::Client, reqwest::Url, reqwest::Method)>,
}

impl Prober {
    pub fn new(
        kind: &CheckKind,
        target: SocketAddr,
        timeout: Duration,
    ) -> Result<Prober, ProbeError> {
        let http = match kind {
            CheckKind::Http(h) => Some(http_client(h, target)?),
            _ => None,
        };
        Ok(Prober {
            kind: kind.clone(),
            target,
            timeout,
            http,
        })
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Runs the check once; a result comes within the timeout. `Err` when this host could
    /// not make the probe.
    pub async fn probe(&self) -> Result<Outcome, LocalFault> {
        let start = Instant::now();
        let work = async {
            match (&self.kind, &self.http) {
                (CheckKind::None, _) => Ok(Duration::ZERO),
                (CheckKind::Tcp { .. }, _) => TcpStream::connect(self.target)
                    .await
                    .map(|_| start.elapsed())
                    .map_err(|e| match LocalFault::of(&e) {
                        Some(local) => Failure::Local(local),
                        None => Failure::Target(connect_reason(&e)),
                    }),
                (CheckKind::Http(check), Some((client, url, method))) => {
                    http_probe(check, client, url, method, start).await
                }
                (CheckKind::Http(_), None) => unreachable!("HTTP probers hold a client"),
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Err(_) => Ok(Outcome::Down {
                reason: format!("timeout after {}", human(self.timeout)),
            }),
            Ok(Err(Failure::Target(reason))) => Ok(Outcome::Down { reason }),
            Ok(Err(Failure::Local(local))) => Err(local),
            Ok(Ok(rtt)) => Ok(Outcome::Up { rtt }),
        }
    }
}

fn http_client(
    check: &HttpCheck,
    target: SocketAddr,
) -> Result<(reqwest::Client, reqwest::Url, reqwest::Method), ProbeError> {
    let scheme = if check.https { "https" } else { "http" };
    // The target's port: the check's, or the one its check-address gives.
    let authority = match &check.host {
        Some(host) => format!("{host}:{}", target.port()),
        None => target.to_string(),
    };
    let url = reqwest::Url::parse(&format!("{scheme}://{authority}{}", check.path))
        .expect("check host and path are validated when the zone loads");
    let method = reqwest::Method::from_bytes(check.method.as_bytes())
        .expect("check method is validated when the zone loads");
    // No reqwest timeout: the probe's own deadline covers connect, TLS and headers, and
    // reports "timeout after ..." alone.
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .no_proxy()
        .user_agent(concat!(
            "meridian/",
            env!("CARGO_PKG_VERSION"),
            " health-check"
        ));
    if let Some(host) = &check.host {
        // Connect to the endpoint whatever DNS says about the host name.
        builder = builder.resolve(host, target);
    }
    if !check.tls_verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    if let Some(path) = &check.ca_file {
        let display = path.display().to_string();
        // The zone load judged this file, but it may have been replaced since: a FIFO
        // read here would hold the probe thread for good.
        let pem = crate::files::read_regular(path, crate::files::SMALL_FILE).map_err(|source| {
            ProbeError::CaFile {
                path: display.clone(),
                source,
            }
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| ProbeError::CaPem {
                path: display,
                source,
            })?;
        builder = builder.tls_certs_only(certs);
    }
    let client = builder.build().map_err(ProbeError::Client)?;
    Ok((client, url, method))
}

async fn http_probe(
    check: &HttpCheck,
    client: &reqwest::Client,
    url: &reqwest::Url,
    method: &reqwest::Method,
    start: Instant,
) -> Result<Duration, Failure> {
    let mut response = client
        .request(method.clone(), url.clone())
        .send()
        .await
        .map_err(|e| http_failure(&e))?;
    // The RTT is the time to the response headers: what a client waits before data flows.
    let rtt = start.elapsed();
    let status = response.status().as_u16();
    if !check.expect.iter().any(|r| r.contains(&status)) {
        return Err(Failure::Target(format!("status {status}")));
    }
    let Some(want) = &check.body else {
        return Ok(rtt);
    };
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| http_failure(&e))? {
        body.extend_from_slice(&chunk);
        if body.windows(want.len()).any(|w| w == want.as_bytes()) {
            return Ok(rtt);
        }
        if body.len() >= MAX_BODY {
            break;
        }
    }
    Err(Failure::Target("body mismatch".into()))
}

/// A reqwest error as a [`Failure`]: a fault of this host anywhere in its chain (the
/// connector's socket call, say), else the target's, worded by [`http_reason`].
fn http_failure(e: &reqwest::Error) -> Failure {
    let local = std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |s| {
        s.source()
    })
    .filter_map(|s| s.downcast_ref::<io::Error>())
    .find_map(LocalFault::of);
    match local {
        Some(local) => Failure::Local(local),
        None => Failure::Target(http_reason(e)),
    }
}

/// The cause of a reqwest error, worded for operators: a TLS failure anywhere in the chain
/// wins, then the innermost I/O error.
fn http_reason(e: &reqwest::Error) -> String {
    let chain = || {
        std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |s| {
            s.source()
        })
    };
    for s in chain() {
        let tls = s
            .downcast_ref::<rustls::Error>()
            .or_else(|| s.downcast_ref::<io::Error>().and_then(tls_inside));
        if let Some(tls) = tls {
            return format!("tls: {tls}");
        }
    }
    if let Some(io) = chain().find_map(|s| s.downcast_ref::<io::Error>()) {
        return connect_reason(io);
    }
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        format!("connect failed: {e}")
    } else {
        e.to_string()
    }
}

/// A TLS error wrapped in I/O errors (tokio-rustls wraps it, hyper wraps that again).
fn tls_inside(e: &io::Error) -> Option<&rustls::Error> {
    let inner = e.get_ref()?;
    inner
        .downcast_ref::<rustls::Error>()
        .or_else(|| inner.downcast_ref::<io::Error>().and_then(tls_inside))
}

fn connect_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connect refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::TimedOut => "connect timed out".into(),
        _ => match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => format!("tls: {tls}"),
            None => format!("connect failed: {e}"),
        },
    }
}

/// The kind of a failure reason this module words, a bounded metric label: the reason itself
/// carries addresses and error text.
pub fn failure_kind(reason: &str) -> &'static str {
    const KINDS: [(&str, &str); 8] = [
        ("timeout", "timeout"),
        ("connect timed out", "timeout"),
        ("connect refused", "refused"),
        ("connection reset", "reset"),
        ("connect failed", "connect"),
        ("tls: ", "tls"),
        ("status ", "status"),
        ("body mismatch", "body"),
    ];
    KINDS
        .iter()
        .find(|(prefix, _)| reason.starts_with(prefix))
        .map_or("other", |&(_, kind)| kind)
}

/// `2s`, `1.5s` or `250ms`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_of_this_host_are_local_faults_and_the_rest_are_the_targets() {
        for (errno, name) in [
            (libc::EMFILE, "EMFILE"),
            (libc::ENFILE, "ENFILE"),
            (libc::ENOBUFS, "ENOBUFS"),
            (libc::ENOMEM, "ENOMEM"),
            (libc::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
            (libc::ENETUNREACH, "ENETUNREACH"),
        ] {
            let fault = LocalFault::of(&io::Error::from_raw_os_error(errno));
            assert_eq!(fault.map(|f| f.errno), Some(name));
        }
        for errno in [
            libc::ECONNREFUSED,
            libc::ECONNRESET,
            libc::EHOSTUNREACH,
            libc::ETIMEDOUT,
        ] {
            assert_eq!(LocalFault::of(&io::Error::from_raw_os_error(errno)), None);
        }
        assert_eq!(LocalFault::of(&io::Error::other("no errno")), None);
    }

    #[test]
    fn a_ca_file_replaced_by_a_fifo_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("ca.pem");
        crate::files::mkfifo(&fifo);
        let check = CheckKind::Http(HttpCheck {
            https: true,
            port: 443,
            method: "GET".into(),
            path: "/".into(),
            host: None,
            expect: vec![200..=399],
            body: None,
            tls_verify: true,
            ca_file: Some(fifo.clone()),
        });
        let target = "127.0.0.1:443".parse().unwrap();
        let made = crate::files::within(Duration::from_secs(5), move || {
            Prober::new(&check, target, Duration::from_secs(1)).map(|_| ())
        });
        let err = made.expect_err("a FIFO is no CA file").to_string();
        assert_eq!(
            err,
            format!(
                "cannot read CA file {}: not a regular file but a FIFO",
                fifo.display()
            )
        );
    }

    /// Real probes' reasons fall in their kinds: a refused TCP connect, an HTTP status
    /// outside the expected range, a timeout.
    #[tokio::test]
    async fn failure_kinds_of_real_probes() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let tcp = CheckKind::Tcp {
            port: closed.port(),
        };
        let reason = |o: Outcome| match o {
            Outcome::Down { reason } => reason,
            Outcome::Up { .. } => panic!("probe passed"),
        };
        let p = Prober::new(&tcp, closed, Duration::from_secs(2)).unwrap();
        let r = reason(p.probe().await.unwrap());
        assert_eq!(failure_kind(&r), "refused", "{r}");

        // A server that answers 503 to everything, then one that never answers.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                .await;
            let (_held, _) = l.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        let http = CheckKind::Http(HttpCheck {
            https: false,
            port: addr.port(),
            method: "GET".into(),
            path: "/".into(),
            host: None,
            expect: vec![200..=399],
            body: None,
            tls_verify: true,
            ca_file: None,
        });
        let p = Prober::new(&http, addr, Duration::from_millis(500)).unwrap();
        let r = reason(p.probe().await.unwrap());
        assert_eq!(failure_kind(&r), "status", "{r}");
        let r = reason(p.probe().await.unwrap());
        assert_eq!(failure_kind(&r), "timeout", "{r}");
        server.abort();
        assert_eq!(failure_kind("something new"), "other");
    }
}
