//! FAST PATH: one DNS query in, one response out.
//!
//! [`handle`] is synchronous and takes the snapshot by reference: no lock, no await, no log
//! line above debug. The socket loops in [`server`] call it for UDP and TCP alike. An ordinary
//! query answered before comes from the cache ([`fast`]); anything else takes the general path
//! ([`general`]), which states what its answer varies on ([`cache`]). Both read messages
//! through one reader ([`wire`]) and frame responses through one writer ([`response`]).
//! Protocol rules applied: RFC 1034/1035 (AA, referrals, NXDOMAIN), RFC 2308 (negative
//! answers), RFC 6891 (EDNS), RFC 7871 (ECS), RFC 7873 (cookies), RFC 8482 (ANY),
//! RFC 4033-4035 and RFC 9824 (DNSSEC, signed online: [`sign`]).

mod cache;
pub mod cookie;
mod fast;
mod fastmap;
mod general;
pub mod response;
pub mod rrl;
pub mod server;
mod sign;
pub mod wire;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::metrics::{Metrics, SigningCounters, ZoneCounters};
use crate::serving::Snapshot;

pub use fast::{At, Caches as FastCaches, handle_parsed, prefetch};
pub use response::MAX_UDP_PAYLOAD;
pub use sign::presign;
pub use wire::Parsed;

/// Without EDNS a UDP response is at most 512 octets (RFC 1035 §4.2.1).
const CLASSIC_UDP_PAYLOAD: usize = 512;

/// The most response bytes `transport` allows for a query advertising `payload` (EDNS).
fn response_limit(transport: Transport, payload: Option<u16>) -> usize {
    match (transport, payload) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, None) => CLASSIC_UDP_PAYLOAD,
        // RFC 6891 §6.2.5: values below 512 are treated as 512.
        (Transport::Udp, Some(p)) => usize::from(p.clamp(512, MAX_UDP_PAYLOAD)),
    }
}

/// The network a client address stands for wherever a limit counts clients (TCP slots, RRL):
/// its /24, or for IPv6 its /56, as BIND's rate limiting counts them by default (a site is
/// commonly given a /56 or a /48, and every address in it is the same client). An
/// IPv4-mapped IPv6 address counts as its IPv4 address.
pub fn client_network(ip: IpAddr) -> IpNet {
    match ip.to_canonical() {
        IpAddr::V4(a) => IpNet::V4(Ipv4Net::new(a, 24).expect("24 bits fit IPv4").trunc()),
        IpAddr::V6(a) => IpNet::V6(Ipv6Net::new(a, 56).expect("56 bits fit IPv6").trunc()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What the DNS server holds for as long as it runs, whatever snapshot is current: the
/// cookie secret, rate limiting and the metrics it counts into.
#[derive(Debug)]
pub struct Services {
    /// The DNS cookie secret and the response size limit for clients without a cookie.
    pub cookies: cookie::Cookies,
    /// Response rate limiting for UDP, when on.
    pub rrl: Option<rrl::Rrl>,
    pub metrics: Arc<Metrics>,
    /// Query counters for responses outside every zone.
    outside: Arc<ZoneCounters>,
    signing: Arc<SigningCounters>,
    /// Signed steered questions asked lately, signed again ahead of queries after a swap.
    hot: sign::Hot,
}

impl Services {
    pub fn new(cookies: cookie::Cookies, rrl: Option<rrl::Limits>, metrics: Arc<Metrics>) -> Self {
        Services {
            cookies,
            rrl: rrl.map(|limits| rrl::Rrl::new(limits, metrics.rrl_counters())),
            outside: metrics.outside_counters(),
            signing: metrics.signing(),
            hot: sign::Hot::default(),
            metrics,
        }
    }
}

/// Answers one query packet from `src` at `now` (Unix seconds, [`cookie::now`]): from the
/// response cache when the query is ordinary and answered before, else by the general path.
/// `None` means send nothing: the packet is too short to carry an ID, or it is itself a
/// response (answering those invites loops).
pub fn handle(
    snapshot: &Snapshot,
    services: &Services,
    packet: &[u8],
    src: SocketAddr,
    transport: Transport,
    now: u32,
) -> Option<Vec<u8>> {
    let at = At {
        src,
        transport,
        now,
    };
    let mut out = Vec::new();
    fast::handle(snapshot, services, packet, at, &mut out).then_some(out)
}

#[cfg(test)]
mod tests;
