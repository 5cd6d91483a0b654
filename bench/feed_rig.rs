//! The latency map's intake as `POST /api/v1/rtt` runs it, less HTTP, for the benchmarks:
//! a feed with one source (`bench`) and no rate limit, over a temporary state directory, and
//! a serving snapshot of the shipped zones with the embedded GeoIP database.

use std::sync::Arc;

use meridian::geo::GeoDb;
use meridian::latency::config::LatencyConfig;
use meridian::latency::feed::Feed;
use meridian::serving::Snapshot;

pub struct FeedRig {
    pub feed: Feed,
    pub state: Snapshot,
    /// The feed's state directory, removed on drop.
    _dir: tempfile::TempDir,
}

impl FeedRig {
    pub fn open() -> FeedRig {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("feeds"), "bench:bench-secret-0123456789\n")
            .expect("token file written");
        let tokens = meridian::admin::auth::Tokens::load(Some(&dir.path().join("feeds")), None)
            .expect("token file read");
        let config = LatencyConfig {
            rate: 1e12,
            burst: 1e12,
            ..LatencyConfig::default()
        };
        let metrics = Arc::new(meridian::metrics::Metrics::default());
        let feed = Feed::open(
            config,
            tokens,
            dir.path().to_owned(),
            metrics.clone(),
            false,
        )
        .expect("an empty state directory");
        let zones = meridian::zone::load_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("zones"),
        )
        .expect("shipped zones");
        let geo = Arc::new(GeoDb::embedded().expect("embedded database"));
        FeedRig {
            feed,
            state: Snapshot::new(zones, geo, &metrics),
            _dir: dir,
        }
    }
}
