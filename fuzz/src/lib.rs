//! The fuzz targets' bodies: each module's `run` takes one input, drives the real code with
//! it and asserts what must hold for every input. `fuzz_targets/*.rs` hand libFuzzer's inputs
//! to them, and `tests/fuzz_regressions.rs` (which compiles this file as a module) replays the
//! kept corpus and every past crash through the same calls, so a regression is caught by
//! `cargo test` without libFuzzer.
//!
//! The one rule: a run depends on its input alone (fresh caches, a fresh connection), so a
//! crash reproduces from the file libFuzzer saves. The admin target is the exception it
//! documents.

pub mod admin_body;
pub mod ecs;
pub mod packet;
pub mod tcp_stream;
pub mod zone_file;

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use meridian::dns::cookie::{Cookies, DEFAULT_AMPLIFICATION};
use meridian::dns::{self, At, FastCaches, Services, Transport};
use meridian::geo::GeoDb;
use meridian::metrics::Metrics;
use meridian::serving::Snapshot;
use meridian::steer::{GeoPoint, HealthView, Latency, RegionHealth, RegionState, Vantage};
use meridian::zone::{self, ZoneSet};

/// The repository: this crate lives in its `fuzz/` directory, and the regression test that
/// compiles this file as a module lives at its root.
fn repo() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    if here.ends_with("fuzz") {
        here.parent().expect("fuzz/ has a parent").to_owned()
    } else {
        here.to_owned()
    }
}

fn geo() -> Arc<GeoDb> {
    static GEO: OnceLock<Arc<GeoDb>> = OnceLock::new();
    GEO.get_or_init(|| Arc::new(GeoDb::embedded().expect("the embedded GeoIP database opens")))
        .clone()
}

/// The time every fuzzed query is answered at (Unix seconds): server cookies depend on the
/// input alone.
const NOW: u32 = 1_790_000_000;

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

/// The services every target answers with: a fixed cookie secret, the default limit.
fn services() -> &'static Arc<Services> {
    static SERVICES: OnceLock<Arc<Services>> = OnceLock::new();
    SERVICES.get_or_init(|| {
        let cookies = Cookies::new(*b"meridian-fuzzing", DEFAULT_AMPLIFICATION);
        Arc::new(Services::new(cookies, None, Arc::new(Metrics::default())))
    })
}

/// The shipped zones and the fuzz zones (`fuzz/zones`), served with some health trouble so
/// that failover, trouble TTLs and fallbacks are reachable; fuzz.test is signed (Ed25519,
/// whose signatures are deterministic), so that DO=1 answers of every kind are compared too.
fn serving() -> &'static Snapshot {
    static STATE: OnceLock<Snapshot> = OnceLock::new();
    STATE.get_or_init(|| {
        let root = repo();
        let mut zones = Vec::new();
        for dir in [root.join("zones"), root.join("fuzz/zones")] {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
                .expect("zone directory lists")
                .map(|e| e.expect("directory entry").path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            paths.sort();
            for path in paths {
                let mut text = std::fs::read_to_string(&path).expect("zone file reads");
                if path.ends_with("fuzz.test.toml") {
                    text = text.replacen(
                        "zone = \"fuzz.test.\"\n",
                        "zone = \"fuzz.test.\"\ndnssec = { algorithm = \"ed25519\" }\n",
                        1,
                    );
                }
                zones.push(zone::load_file(&path, &text).expect("zone file loads"));
            }
        }
        let mut zones = ZoneSet::new(zones);
        sign_zones(&mut zones);
        let state = Snapshot::new(zones, geo(), metrics());
        let trouble = |state: RegionState, endpoints_up: Vec<bool>| RegionHealth {
            state,
            endpoints_up,
            degradation_ms: 0.0,
            over_limit: false,
            in_trouble: true,
        };
        let index = |s: &str| {
            let name = Name::from_ascii(s).expect("zone name");
            let zone = state.zones.find(&(&name).into()).expect("a fuzz zone");
            zone.index
        };
        let fuzz = HealthView {
            regions: vec![
                trouble(RegionState::Up, vec![true, false, true]),
                trouble(RegionState::Up, vec![true; 5]),
                RegionHealth::up(1),
            ],
            // Another node in Frankfurt ranks the clients nearest to it: the first region
            // past the limit, the third slow, no word on the second.
            location: Some(GeoPoint {
                lat: 40.71,
                lon: -74.01,
            }),
            vantages: vec![Vantage {
                node: "fra".into(),
                location: GeoPoint {
                    lat: 50.11,
                    lon: 8.68,
                },
                regions: vec![
                    Some(Latency {
                        degradation_ms: 150.0,
                        over_limit: true,
                    }),
                    None,
                    Some(Latency {
                        degradation_ms: 40.0,
                        over_limit: false,
                    }),
                ],
            }],
        };
        let down = HealthView {
            regions: vec![
                trouble(RegionState::Down, vec![false; 2]),
                trouble(RegionState::Drained, vec![true]),
            ],
            ..Default::default()
        };
        state
            .with_health(index("fuzz.test."), fuzz)
            .with_health(index("down.test."), down)
    })
}

/// Gives every zone with DNSSEC on a fresh key of its algorithm.
fn sign_zones(zones: &mut ZoneSet) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let state = tempfile::tempdir().expect("a key directory");
    for z in zones.zones() {
        let Some(d) = &z.dnssec else { continue };
        let path = zone::dnssec::default_key_path(&z.origin, state.path());
        std::fs::create_dir_all(path.parent().expect("a key directory")).expect("mkdir");
        let key = d.spec.algorithm.generate().expect("a key");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(&key))
            .expect("the key is written");
    }
    zones.attach_keys(state.path()).expect("the keys load");
}

/// [`serving`] with its steering compiled, as a server serves once its compiler has run.
fn serving_compiled() -> &'static Snapshot {
    static STATE: OnceLock<Snapshot> = OnceLock::new();
    STATE.get_or_init(|| serving().renewed().compiled())
}

/// The serving state with empty caches: its first answer to a query comes from the general
/// path.
fn cold() -> Snapshot {
    serving().renewed()
}

/// A loopback client chosen by `selector`: IPv4 or IPv6, and a port (which, with the query
/// ID, seeds the rotation of equal-weight endpoints).
fn client(selector: u8) -> SocketAddr {
    let ip: IpAddr = if selector & 1 == 0 {
        Ipv4Addr::LOCALHOST.into()
    } else {
        Ipv6Addr::LOCALHOST.into()
    };
    SocketAddr::new(ip, 1024 + u16::from(selector >> 1))
}

/// A serving state with fast-path caches of its own, as a UDP loop serves the current state:
/// the cold states that [`exchange`] builds answer with the thread's caches instead, so they
/// leave these warm.
pub struct Warm<'s> {
    state: &'s Snapshot,
    caches: RefCell<FastCaches>,
}

impl<'s> Warm<'s> {
    fn new(state: &'s Snapshot) -> Self {
        Warm {
            state,
            caches: RefCell::default(),
        }
    }

    /// The answer as the UDP loop gives it: parsed and prefetched first, then answered.
    fn handle(&self, query: &[u8], src: SocketAddr, transport: Transport) -> Option<Vec<u8>> {
        let caches = &mut *self.caches.borrow_mut();
        let parsed = dns::prefetch(caches, self.state, query, src);
        let at = At {
            src,
            transport,
            now: NOW,
        };
        let mut out = Vec::new();
        dns::handle_parsed(caches, self.state, services(), query, parsed, at, &mut out)
            .then_some(out)
    }
}

/// Answers `query` on a cold copy of `state` twice, the second time from the fast path's
/// cache, and once on `warm`, whose caches hold the answers to the queries before it.
/// All three must [`agree`]: the only per-query variation is the rotation of equal-weight
/// endpoints (and the draw by weight), which depends on the ID and the client port alone,
/// both the same here, and the server cookie's timestamp, the same [`NOW`] for all three.
/// Returns the answer after checking it.
fn exchange(
    state: &Snapshot,
    warm: &Warm<'_>,
    query: &[u8],
    src: SocketAddr,
    transport: Transport,
) -> Option<Vec<u8>> {
    let cold = state.renewed();
    let general = dns::handle(&cold, services(), query, src, transport, NOW);
    let cached = dns::handle(&cold, services(), query, src, transport, NOW);
    let after = warm.handle(query, src, transport);
    assert!(
        agree(&general, &cached),
        "the cached answer differs from the general path's:\n{general:?}\n{cached:?}"
    );
    assert!(
        agree(&general, &after),
        "the answer depends on the queries answered before it:\n{general:?}\n{after:?}"
    );
    if let Some(response) = &general {
        check_response(query, response, transport);
    }
    general
}

/// Two answers to one query agree: the same octets, or the same message apart from name
/// compression and the case of names outside the question. The fast path reuses the octets
/// of an answer to the same name asked in another case: hickory compresses names only onto
/// the same case, and a pointer into the question takes the case of the query patched in.
fn agree(a: &Option<Vec<u8>>, b: &Option<Vec<u8>>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return a == b;
    };
    if a == b {
        return true;
    }
    let (Ok(a), Ok(b)) = (Message::from_vec(a), Message::from_vec(b)) else {
        return false;
    };
    // Message equality compares names without case; the question's case must be the same.
    a == b
        && a.queries
            .iter()
            .zip(&b.queries)
            .all(|(x, y)| x.name().eq_case(y.name()))
}

/// What every response must be, whatever the query.
fn check_response(query: &[u8], response: &[u8], transport: Transport) {
    assert!(response.len() >= 12, "a response has a header");
    assert_eq!(response[..2], query[..2], "the response echoes the ID");
    assert!(response[2] & 0x80 != 0, "QR is set");
    // The opcode is copied from the query (RFC 1035 §4.1.1), and so is RD (RFC 6895 §2)
    // except in NOTIMP: an opcode we do not implement is answered with the header alone and
    // none of the query's flags (RFC 8906 §3.1.4).
    assert_eq!(response[2] & 0x78, query[2] & 0x78, "opcode echo");
    if response[3] & 0x0F == 4 {
        assert_eq!(
            response[2..],
            [0x80 | (query[2] & 0x78), 4, 0, 0, 0, 0, 0, 0, 0, 0],
            "NOTIMP: ID, QR and opcode alone"
        );
    } else {
        assert_eq!(response[2] & 0x01, query[2] & 0x01, "RD echo");
    }
    let request = Message::from_vec(query).ok();
    // RFC 1035 §4.2.1 and RFC 6891 §6.2.5 (payloads below 512 count as 512; ours caps at
    // 1232); over TCP the two-octet length prefix is the bound.
    let limit = match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => match request.as_ref().and_then(|m| m.edns.as_ref()) {
            Some(e) => usize::from(e.max_payload().clamp(512, dns::MAX_UDP_PAYLOAD)),
            None => 512,
        },
    };
    assert!(
        response.len() <= limit,
        "{} octets over a limit of {limit}",
        response.len()
    );
    // Without a server cookie (which might be valid) a UDP answer is at most
    // DEFAULT_AMPLIFICATION times its query; every serving state here has that limit.
    let options = dns::wire::query_options(query);
    let server_cookie = matches!(&options,
        Ok(o) if o.sent_cookie(query).is_some_and(|c| !c.server.is_empty()));
    if transport == Transport::Udp && !server_cookie {
        let most = query.len() * usize::from(DEFAULT_AMPLIFICATION);
        assert!(
            response.len() <= most,
            "{} octets answer {} without a server cookie",
            response.len(),
            query.len()
        );
    }
    let parsed = Message::from_vec(response).expect("a response decodes");
    if parsed.metadata.truncation {
        assert!(
            parsed.answers.is_empty() && parsed.authorities.is_empty(),
            "a truncated response carries the question alone"
        );
    }
    // A header alone answers a query that does not decode (FORMERR) or whose answer cannot
    // be encoded (SERVFAIL); a truncated answer drops the question when even that does not
    // fit. Any other response repeats the question, and has OPT when the query had it.
    let bare = response.len() == 12;
    if let Some(request) = &request {
        if parsed.queries.is_empty() {
            assert!(
                request.queries.is_empty() || bare || parsed.metadata.truncation,
                "the response drops the question"
            );
        } else {
            assert_eq!(
                parsed.queries, request.queries,
                "the response repeats the question"
            );
        }
        if !bare {
            assert_eq!(
                parsed.edns.is_some(),
                request.edns.is_some(),
                "OPT in the response exactly when the query had one (RFC 6891 §6.1.1)"
            );
        }
    }
    let asked = options.map(|o| o.subnet());
    let echoed = parsed
        .edns
        .as_ref()
        .and_then(|e| match e.option(EdnsCode::Subnet) {
            Some(EdnsOption::Subnet(s)) => Some(*s),
            _ => None,
        });
    if let Some(echo) = echoed {
        let Ok(Some(asked)) = asked else {
            panic!("ECS in a response to a query without a valid ECS option");
        };
        // RFC 7871 §7.2.1: FAMILY, SOURCE PREFIX-LENGTH and ADDRESS echo the query.
        assert_eq!(echo.addr(), asked.addr(), "ECS address echoes");
        assert_eq!(
            echo.source_prefix(),
            asked.prefix_len(),
            "ECS source echoes"
        );
        assert!(
            echo.scope_prefix() <= asked.prefix_len(),
            "ECS scope /{} beyond the source /{}",
            echo.scope_prefix(),
            asked.prefix_len()
        );
    } else if let Ok(Some(_)) = asked
        && request.as_ref().is_some_and(|r| r.edns.is_some())
        && matches!(
            parsed.metadata.response_code,
            ResponseCode::NoError | ResponseCode::NXDomain
        )
    {
        panic!("an answer to a query with ECS does not echo it (RFC 7871 §7.2.1)");
    }
}
