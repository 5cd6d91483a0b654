//! The monitor on a paused clock: probes, machines and views all run on tokio's clock, so
//! virtual time moves every one of them. The probe target is a real loopback port with no
//! listener.

use std::path::Path;

use super::*;
use crate::geo::GeoDb;
use crate::serving::{SharedSnapshot, Snapshot};
use crate::steer::RegionHealth;
use crate::zone::load_file;

/// A loopback port that nothing listens on, held (bound, never listening) so that no other
/// socket takes it while the test runs.
fn closed_port() -> (socket2::Socket, u16) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("a TCP socket");
    let loopback: std::net::SocketAddr = "127.0.0.1:0".parse().expect("an address");
    socket.bind(&loopback.into()).expect("loopback binds");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("bound to an IP address")
        .port();
    (socket, port)
}

/// eu-west: one endpoint probed over TCP at `port` (interval 1 s, fall 2, rise 3, so it
/// settles 3 s after a change); us-east: not probed.
fn zones(port: u16) -> ZoneSet {
    let text = format!(
        r#"zone = "example.com."
records = '''
$TTL 300
@    IN SOA ns1 hostmaster 1 7200 3600 1209600 300
@    IN NS  ns1
ns1  IN A   192.0.2.53
'''

[regions.eu-west]
location = {{ lat = 53.35, lon = -6.26 }}
endpoints = [{{ address = "198.51.100.10", check-address = "127.0.0.1:{port}" }}]
health = {{ check = "tcp", port = 80, interval = 1, timeout = 0.5, rise = 3, fall = 2 }}

[regions.us-east]
location = {{ lat = 39.04, lon = -77.49 }}
endpoints = ["192.0.2.10"]
"#
    );
    let zone = load_file(Path::new("zones/example.com.toml"), &text)
        .unwrap_or_else(|d| panic!("{}", crate::zone::LoadError(d)));
    ZoneSet::new(vec![zone])
}

/// What steering sees of region `ri` of the one zone.
fn region(state: &SharedSnapshot, ri: usize) -> Option<RegionHealth> {
    let s = state.load();
    let zone = s.zones.get(0).expect("one zone");
    s.health(zone).region(ri).cloned()
}

/// Waits on the paused clock, which jumps to the next timer whenever the runtime idles.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 60 s of paused-clock time");
}

#[tokio::test(start_paused = true)]
async fn a_dead_target_takes_its_region_down_and_settles_on_the_paused_clock() {
    let geo = Arc::new(GeoDb::embedded().expect("embedded db"));
    let (_held, port) = closed_port();
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let state = Snapshot::new(zones(port), geo, &metrics).shared();
    let _monitor = spawn(state.clone(), metrics, &Overrides::default(), None);
    assert_eq!(
        region(&state, 0).map(|r| r.state),
        Some(RegionState::Up),
        "start state"
    );
    until("eu-west goes down", || {
        region(&state, 0).is_some_and(|r| r.state == RegionState::Down)
    })
    .await;
    assert!(
        region(&state, 0).is_some_and(|r| r.in_trouble),
        "in trouble right after the change"
    );
    // Settling needs the machines' time to move with the clock that runs the probes.
    until("eu-west settles", || {
        region(&state, 0).is_some_and(|r| r.state == RegionState::Down && !r.in_trouble)
    })
    .await;
    assert_eq!(
        region(&state, 1).map(|r| r.state),
        Some(RegionState::Up),
        "an unprobed region stays up"
    );
}

#[test]
fn region_state_labels_tell_planned_work_and_slowness_from_outages() {
    use crate::metrics::RegionStateLabel as L;
    let region = |state, over_limit| RegionHealth {
        state,
        over_limit,
        ..RegionHealth::up(2)
    };
    let cases = [
        (region(RegionState::Up, false), false, L::Up),
        (region(RegionState::Up, true), false, L::Degraded),
        (region(RegionState::Down, false), false, L::Down),
        (region(RegionState::Down, false), true, L::Forced),
        (region(RegionState::Up, false), true, L::Forced),
        (region(RegionState::Drained, false), true, L::Drained),
        (region(RegionState::Drained, true), false, L::Drained),
    ];
    for (h, forced, want) in cases {
        assert_eq!(state_label(&h, forced), want, "{h:?} forced {forced}");
    }
}
