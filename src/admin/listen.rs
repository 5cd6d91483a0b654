//! The admin listener: connections up to a cap, each served HTTP/1.1 (over TLS when a
//! certificate is given) under deadlines, so that idle or half-sent requests cannot pile up.
//!
//! The rule: a connection holds one of the slots from before its `accept` until it closes,
//! TLS handshake included. While every slot is taken, new connections wait in the kernel's
//! listen queue, which costs this process no descriptor. The cap ([`connection_cap`]) stays
//! far below the open-file limit, so DNS and the health probes keep descriptors to work with,
//! whatever reaches the admin port. A request head must arrive within [`HEADER_TIMEOUT`] (on
//! an idle keep-alive connection too), a TLS handshake within [`HANDSHAKE_TIMEOUT`], a body
//! within [`super::BODY_TIMEOUT`] (the router reads it).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

/// Most admin connections open at once: a few operators, a dashboard or two and a metrics
/// scraper need far fewer.
pub const MAX_CONNECTIONS: usize = 64;
/// The admin side takes at most this fraction (1/8) of the open-file limit.
const OPEN_FILES_SHARE: u64 = 8;
/// A request head must arrive whole within this time, counted from the end of the previous
/// response on a kept-alive connection; else the connection is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS handshake must finish within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head read. Larger than [`super::MAX_URI`] by far and below hyper's own URI
/// limit (64 KiB), so that a long request target reaches the router and its JSON 414; a head
/// over this is refused by the parser itself, with an empty 431, and the connection closed.
pub const MAX_HEAD: usize = 64 * 1024;
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

/// Accepts connections on `listener` until the process ends, at most `cap` at once, and
/// serves `router` on each (after a TLS handshake when `tls` is given).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    cap: usize,
) {
    let slots = Arc::new(Semaphore::new(cap));
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
        let (router, tls) = (router.clone(), tls.clone());
        tokio::spawn(async move {
            let _slot = slot;
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

/// An `accept` error about the one connection, not the listener.
fn connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves HTTP/1.1 on one connection until it closes.
async fn http<I>(io: I, router: Router)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD);
    let connection = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(router));
    if let Err(e) = connection.await {
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
}
