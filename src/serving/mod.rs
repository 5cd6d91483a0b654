//! The snapshot every query reads: zones, GeoIP and health, swapped in whole; and the
//! steered answer computed from it ([`answer`]).
//!
//! A query loads the current [`Snapshot`] once (one atomic load, no lock, no await) and
//! answers from it; the control plane builds a new snapshot aside and stores it, so a reload
//! never makes a query wait or see half of a change. The rule: a snapshot holds only what a
//! reload or a health change replaces. What lives as long as the process (the cookie secret,
//! rate limiting, the metrics registry) is a service handed to the server at start
//! (`dns::Services`), never copied from snapshot to snapshot.

pub mod answer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::geo::GeoDb;
use crate::metrics::{Metrics, ZoneCounters};
use crate::steer::{Family, HealthView};
use crate::zone::{Zone, ZoneSet};

#[derive(Debug)]
pub struct Snapshot {
    pub zones: Arc<ZoneSet>,
    pub geo: Arc<GeoDb>,
    /// Region health by zone index; a zone without an entry has every region up.
    pub health: Arc<Vec<HealthView>>,
    /// Widened ECS scopes by (zone index, steered name index, family, GeoIP network). They
    /// depend on zones, GeoIP and health, so the cache lives and dies with this snapshot.
    pub(crate) scopes: moka::sync::Cache<ScopeKey, u8>,
    /// Unique to this snapshot: each serving thread's fast-path caches (encoded answers and
    /// steering decisions) belong to one generation and start afresh when it changes.
    pub(crate) generation: u64,
    /// Query counters by zone index. They are the metrics registry's, kept across reloads
    /// while a zone's names and regions stay; held here because a reload renumbers zones.
    pub counters: Arc<Vec<Arc<ZoneCounters>>>,
}

pub(crate) type ScopeKey = (usize, usize, Family, ipnet::IpNet);

/// Distinct (name, family, network) scopes kept per snapshot.
const SCOPE_CACHE_CAPACITY: u64 = 100_000;

/// The last generation given to a snapshot; never reused, unlike a freed snapshot's address.
static GENERATION: AtomicU64 = AtomicU64::new(0);

fn next_generation() -> u64 {
    GENERATION.fetch_add(1, Ordering::Relaxed) + 1
}

/// The handle the fast path and the control plane share.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

static ALL_UP: HealthView = HealthView {
    regions: Vec::new(),
};

impl Snapshot {
    /// `zones` with every region up, counted in `metrics`.
    pub fn new(zones: ZoneSet, geo: Arc<GeoDb>, metrics: &Metrics) -> Self {
        Self::with_parts(Arc::new(zones), geo, Arc::default(), metrics)
    }

    fn with_parts(
        zones: Arc<ZoneSet>,
        geo: Arc<GeoDb>,
        health: Arc<Vec<HealthView>>,
        metrics: &Metrics,
    ) -> Self {
        let counters = zones
            .by_index()
            .into_iter()
            .map(|z| metrics.zone_counters(z))
            .collect();
        Snapshot {
            zones,
            geo,
            health,
            scopes: moka::sync::Cache::new(SCOPE_CACHE_CAPACITY),
            generation: next_generation(),
            counters: Arc::new(counters),
        }
    }

    pub fn health(&self, zone: &Zone) -> &HealthView {
        self.health.get(zone.index).unwrap_or(&ALL_UP)
    }

    /// This snapshot with new zones and their health by zone index, swapped in together by
    /// a reload; GeoIP carries over.
    pub fn with_zones(
        &self,
        zones: Arc<ZoneSet>,
        health: Vec<HealthView>,
        metrics: &Metrics,
    ) -> Self {
        Self::with_parts(zones, self.geo.clone(), Arc::new(health), metrics)
    }

    /// This snapshot with another GeoIP database (replaced on disk); answers cached with the
    /// old one go with the old snapshot.
    pub fn with_geo(&self, geo: Arc<GeoDb>) -> Snapshot {
        let mut next = self.with_all_health(self.health.clone());
        next.geo = geo;
        next
    }

    /// This snapshot with `health` (by zone index) for every zone.
    pub fn with_all_health(&self, health: Arc<Vec<HealthView>>) -> Snapshot {
        Snapshot {
            zones: self.zones.clone(),
            geo: self.geo.clone(),
            health,
            scopes: moka::sync::Cache::new(SCOPE_CACHE_CAPACITY),
            generation: next_generation(),
            counters: self.counters.clone(),
        }
    }

    /// This snapshot with `view` as the health of the zone of index `zone`.
    pub fn with_health(&self, zone: usize, view: HealthView) -> Snapshot {
        let mut health = self.health.as_ref().clone();
        if health.len() <= zone {
            health.resize_with(zone + 1, HealthView::default);
        }
        health[zone] = view;
        self.with_all_health(Arc::new(health))
    }

    pub fn shared(self) -> SharedSnapshot {
        Arc::new(ArcSwap::from_pointee(self))
    }
}
