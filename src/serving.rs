//! The state every query reads: zones, GeoIP and health, swapped in whole.
//!
//! A query loads the current [`ServingState`] once (one atomic load, no lock, no await) and
//! answers from it; the control plane builds a new state aside and stores it, so a reload
//! never makes a query wait or see half of a change.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use hickory_proto::rr::Name;

use crate::dns::cookie::{Cookies, DEFAULT_AMPLIFICATION};
use crate::geo::GeoDb;
use crate::metrics::{Metrics, ZoneCounters};
use crate::steer::{Family, HealthView};
use crate::zone::{Zone, ZoneSet};

#[derive(Debug)]
pub struct ServingState {
    pub zones: Arc<ZoneSet>,
    pub geo: Arc<GeoDb>,
    /// Region health per zone origin; a zone that is not listed has every region up.
    pub health: HashMap<Name, HealthView>,
    /// Widened ECS scopes by (zone address, steered name index, family, GeoIP network). They
    /// depend on zones and health, so the cache lives and dies with this state.
    pub(crate) scopes: moka::sync::Cache<ScopeKey, u8>,
    /// Unique to this state: each serving thread's fast-path caches (encoded answers and
    /// steering decisions) belong to one generation and start afresh when it changes.
    pub(crate) generation: u64,
    pub metrics: Arc<Metrics>,
    /// Query counters per zone, by zone index.
    pub counters: Arc<Vec<Arc<ZoneCounters>>>,
    /// Query counters for responses outside every zone.
    pub outside: Arc<ZoneCounters>,
    /// The DNS cookie secret and the response size limit for clients without a cookie.
    pub cookies: Arc<Cookies>,
}

pub(crate) type ScopeKey = (usize, usize, Family, ipnet::IpNet);

/// Distinct (name, family, network) scopes kept per state.
const SCOPE_CACHE_CAPACITY: u64 = 100_000;

/// The last generation given to a state; never reused, unlike a freed state's address.
static GENERATION: AtomicU64 = AtomicU64::new(0);

fn next_generation() -> u64 {
    GENERATION.fetch_add(1, Ordering::Relaxed) + 1
}

/// The handle the fast path and the control plane share.
pub type SharedState = Arc<ArcSwap<ServingState>>;

static ALL_UP: HealthView = HealthView {
    regions: Vec::new(),
};

impl ServingState {
    /// A state with every region up and a cookie secret of its own (see [`Self::with_cookies`]).
    pub fn new(zones: ZoneSet, geo: Arc<GeoDb>) -> Self {
        Self::build(
            Arc::new(zones),
            geo,
            Arc::new(Metrics::default()),
            HashMap::new(),
            Arc::new(Cookies::random(DEFAULT_AMPLIFICATION)),
        )
    }

    /// This state with the configured cookie secret and limit.
    pub fn with_cookies(mut self, cookies: Cookies) -> Self {
        self.cookies = Arc::new(cookies);
        self
    }

    fn build(
        zones: Arc<ZoneSet>,
        geo: Arc<GeoDb>,
        metrics: Arc<Metrics>,
        health: HashMap<Name, HealthView>,
        cookies: Arc<Cookies>,
    ) -> Self {
        let counters = zones
            .by_index()
            .into_iter()
            .map(|z| metrics.zone_counters(z))
            .collect();
        ServingState {
            zones,
            geo,
            health,
            scopes: moka::sync::Cache::new(SCOPE_CACHE_CAPACITY),
            generation: next_generation(),
            outside: metrics.outside_counters(),
            counters: Arc::new(counters),
            metrics,
            cookies,
        }
    }

    pub fn health(&self, zone: &Zone) -> &HealthView {
        self.health.get(&zone.origin).unwrap_or(&ALL_UP)
    }

    /// This state with new zones and their health, swapped in together by a reload; GeoIP
    /// and metrics carry over.
    pub fn with_zones(&self, zones: Arc<ZoneSet>, health: HashMap<Name, HealthView>) -> Self {
        Self::build(
            zones,
            self.geo.clone(),
            self.metrics.clone(),
            health,
            self.cookies.clone(),
        )
    }

    /// This state with another GeoIP database (replaced on disk); answers cached with the
    /// old one go with the old state.
    pub fn with_geo(&self, geo: Arc<GeoDb>) -> ServingState {
        let mut next = self.with_all_health(self.health.clone());
        next.geo = geo;
        next
    }

    /// This state with `health` for every zone.
    pub fn with_all_health(&self, health: HashMap<Name, HealthView>) -> ServingState {
        ServingState {
            zones: self.zones.clone(),
            geo: self.geo.clone(),
            health,
            scopes: moka::sync::Cache::new(SCOPE_CACHE_CAPACITY),
            generation: next_generation(),
            metrics: self.metrics.clone(),
            counters: self.counters.clone(),
            outside: self.outside.clone(),
            cookies: self.cookies.clone(),
        }
    }

    /// This state with `view` as the health of zone `origin`; zones and GeoIP are shared.
    pub fn with_health(&self, origin: &Name, view: HealthView) -> ServingState {
        let mut health = self.health.clone();
        health.insert(origin.clone(), view);
        self.with_all_health(health)
    }

    pub fn shared(self) -> SharedState {
        Arc::new(ArcSwap::from_pointee(self))
    }
}
