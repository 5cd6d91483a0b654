//! Admin API requests through the real router: JSON bodies to the write calls, query strings
//! to the read calls, and path parameters from the input.
//!
//! Input: one selector octet (bits 0-2: the call; bit 3: no token; bit 7: a wrong token;
//! bits 4-5: the content type; bit 6: the path parameters are the input's first line, split
//! on '/'), then the body or query string. Whatever comes in, the answer is never a 5xx, and
//! every 4xx is the JSON error the API documents: `{"error": ..., "status": ...}`.
//!
//! One fixture (journal, monitor, router) serves many inputs, so an accepted write can change
//! what a later input sees (a drained region); the checks hold in every state. It is rebuilt
//! when its journal reaches [`MAX_JOURNAL`] entries, which bounds the disk and memory a long
//! run uses (each write is one fsynced line, replayed in full on the next). The journal's
//! directory is removed as soon as the journal is open: it writes through its open file, and
//! a fuzzer that exits without dropping statics leaves nothing behind.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, Uri, header};
use meridian::admin::auth::Tokens;
use meridian::admin::{self, Admin};
use meridian::health::monitor;
use meridian::serving::Snapshot;
use meridian::state::Journal;
use meridian::zone;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token-0123456789";
/// Journal entries after which the fixture starts afresh.
const MAX_JOURNAL: u64 = 256;
/// The path parameters when the input gives none: a zone, region and endpoint that exist.
const DEFAULT_PARAMS: [&str; 3] = ["example.com", "us-east", "192.0.2.10"];

struct Fixture {
    /// Current-thread: the monitor's task runs while a request is being answered.
    runtime: tokio::runtime::Runtime,
    admin: Arc<Admin>,
    router: Router,
}

impl Fixture {
    fn new() -> Fixture {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds");
        let zones_dir = super::repo().join("zones");
        let zones = zone::load_dir(&zones_dir).expect("the shipped zones load");
        let metrics = Arc::new(meridian::metrics::Metrics::default());
        let state = Snapshot::new(zones, super::geo(), &metrics).shared();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let journal = Journal::open(dir.path()).expect("a new journal opens");
        let dir_path = dir.path().to_owned();
        dir.close().expect("the journal's directory is removed");
        let tokens = Tokens::load(None, Some(TOKEN.into())).expect("the token is long enough");
        // An empty latency map: its directory is gone, like the journal's.
        let latency = Arc::new(
            meridian::latency::feed::Feed::open(
                Default::default(),
                Tokens::load(None, Some(TOKEN.into())).expect("the token is long enough"),
                dir_path,
                metrics.clone(),
                false,
            )
            .expect("a missing latency map is an empty one"),
        );
        let admin = runtime.block_on(async {
            Arc::new(Admin {
                monitor: monitor::spawn(state.clone(), metrics.clone(), journal.overrides(), None),
                state,
                metrics,
                journal: Arc::new(tokio::sync::Mutex::new(journal)),
                cluster: None,
                tokens,
                zones_dir,
                state_dir: std::path::PathBuf::from("state"),
                ready: Arc::new(AtomicBool::new(true)),
                reads_need_token: false,
                hosts: Vec::new(),
                latency,
                spill: Arc::new(meridian::spill::Spill::new(Default::default())),
                reloads: tokio::sync::Mutex::new(()),
                changes: tokio::sync::watch::Sender::new(0),
            })
        });
        Fixture {
            runtime,
            router: admin::router(admin.clone()),
            admin,
        }
    }
}

static FIXTURE: Mutex<Option<Fixture>> = Mutex::new(None);

pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (params, rest) = if selector & 0x40 != 0 {
        let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
        let params: Vec<&[u8]> = line.split(|&b| b == b'/').collect();
        (params, rest.get(line.len() + 1..).unwrap_or_default())
    } else {
        (DEFAULT_PARAMS.iter().map(|p| p.as_bytes()).collect(), rest)
    };
    let param = |i: usize| {
        params
            .get(i)
            .map_or_else(|| DEFAULT_PARAMS[i].to_string(), |p| encode(p, b""))
    };
    let region = format!("/api/v1/zones/{}/regions/{}", param(0), param(1));
    let endpoint = format!("{region}/endpoints/{}", param(2));
    let query = || encode(rest, b"=&+:@/?,;");
    let (method, uri) = match selector & 7 {
        0 => (Method::POST, format!("{region}/drain")),
        1 => (Method::POST, format!("{region}/undrain")),
        2 => (Method::POST, format!("{endpoint}/force")),
        3 => (Method::POST, format!("{endpoint}/unforce")),
        4 => (Method::POST, "/api/v1/reload".to_string()),
        5 => (Method::GET, format!("/api/v1/route?{}", query())),
        6 => (Method::GET, format!("/api/v1/events?{}", query())),
        _ => (Method::GET, format!("/api/v1/audit?{}", query())),
    };
    // A target over the limit is refused (414) before anything else is looked at, the token
    // included.
    let too_long = uri.len() > admin::MAX_URI;
    let uri: Uri = uri
        .parse()
        .expect("every octet outside the URI grammar is encoded");
    let write = method == Method::POST;
    let mut request = Request::builder().method(method).uri(uri);
    if selector & 0x08 == 0 {
        let secret = if selector & 0x80 == 0 {
            TOKEN
        } else {
            "fuzz-wrong-0123456789"
        };
        request = request.header(header::AUTHORIZATION, format!("Bearer {secret}"));
    }
    match (selector >> 4) & 3 {
        0 => request = request.header(header::CONTENT_TYPE, "application/json"),
        1 => {}
        2 => request = request.header(header::CONTENT_TYPE, "application/json; charset=utf-8"),
        _ => request = request.header(header::CONTENT_TYPE, "text/plain"),
    }
    let body = if write {
        Body::from(rest.to_vec())
    } else {
        Body::empty()
    };
    let request = request.body(body).expect("the request is well formed");

    let mut fixture = FIXTURE.lock().unwrap_or_else(PoisonError::into_inner);
    let f = fixture.get_or_insert_with(Fixture::new);
    let (status, content_type, body, journaled) = f.runtime.block_on(async {
        let response = f
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("an in-memory body reads");
        let journaled = f.admin.journal.lock().await.last_seq();
        (status, content_type, body, journaled)
    });
    if journaled >= MAX_JOURNAL {
        *fixture = None;
    }
    drop(fixture);

    let text = String::from_utf8_lossy(&body);
    assert!(!status.is_server_error(), "{status}: {text}");
    // No token (bit 3) or a wrong one (bit 7).
    if write && selector & 0x88 != 0 {
        let refused = if too_long {
            StatusCode::URI_TOO_LONG
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(status, refused, "a write without a valid token: {text}");
    }
    assert!(
        content_type.starts_with("application/json"),
        "{status} with content type {content_type:?}: {text}"
    );
    let json: serde_json::Value = serde_json::from_slice(&body).expect("the body is JSON");
    if status.is_client_error() {
        assert!(
            json["error"].is_string(),
            "{status} without an error: {text}"
        );
        assert_eq!(json["status"], status.as_u16(), "{text}");
    }
}

/// `bytes` for a URI: unreserved characters and `keep` as they are, the rest percent-encoded.
fn encode(bytes: &[u8], keep: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
