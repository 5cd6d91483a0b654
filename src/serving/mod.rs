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
pub mod compiled;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use answer::Client;
use compiled::{Also, Compiled, ZoneSteering};

use crate::geo::GeoDb;
use crate::latency::LatencyTable;
use crate::metrics::{Metrics, ZoneCounters};
use crate::steer::HealthView;
use crate::steer::spill::RegionSpill;
use crate::steer::{Family, RegionId};
use crate::zone::{Zone, ZoneSet};

#[derive(Debug)]
pub struct Snapshot {
    pub zones: Arc<ZoneSet>,
    pub geo: Arc<GeoDb>,
    /// Region health by zone index; a zone without an entry has every region up.
    pub health: Arc<Vec<HealthView>>,
    /// Compiled steering by zone index, `None` until the compiler has built it for this
    /// snapshot's zones, GeoIP and that zone's health ([`compiled`]); its measured networks'
    /// answers may be an earlier latency map's, which serving does not use.
    pub steering: Arc<Vec<Option<Arc<ZoneSteering>>>>,
    /// What clients measured, published by the control plane ([`crate::latency`]). Compiled
    /// steering answers the networks it speaks for once the compiler has decided them from
    /// this table ([`compiled::ZoneSteering::measures`]); until then they take the direct
    /// path ([`Snapshot::compiled_steer`]).
    pub latency: Arc<LatencyTable>,
    /// Spillover by zone index, then region: what the control loop (`crate::spill`)
    /// published; a zone without an entry sheds nothing. Compiled steering does not depend on
    /// it: a client whose compiled region sheds takes the direct path.
    pub spill: Arc<Vec<Vec<RegionSpill>>>,
    /// Unique to this snapshot: each serving thread's fast-path caches (encoded answers and
    /// steering decisions) belong to one generation and start afresh when it changes.
    pub(crate) generation: u64,
    /// Query counters by zone index. They are the metrics registry's, kept across reloads
    /// while a zone's names and regions stay; held here because a reload renumbers zones.
    pub counters: Arc<Vec<Arc<ZoneCounters>>>,
}

/// The last generation given to a snapshot; never reused, unlike a freed snapshot's address.
static GENERATION: AtomicU64 = AtomicU64::new(0);

fn next_generation() -> u64 {
    GENERATION.fetch_add(1, Ordering::Relaxed) + 1
}

/// The handle the fast path and the control plane share.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

static ALL_UP: HealthView = HealthView {
    regions: Vec::new(),
    location: None,
    vantages: Vec::new(),
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
            steering: Arc::new(vec![None; zones.len()]),
            latency: Arc::default(),
            spill: Arc::default(),
            zones,
            geo,
            health,
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
            health,
            steering: Arc::new(vec![None; self.zones.len()]),
            ..self.renewed()
        }
    }

    /// This snapshot with `view` as the health of the zone of index `zone`; the other zones
    /// keep their compiled steering.
    pub fn with_health(&self, zone: usize, view: HealthView) -> Snapshot {
        let mut health = self.health.as_ref().clone();
        if health.len() <= zone {
            health.resize_with(zone + 1, HealthView::default);
        }
        health[zone] = view;
        let mut steering = self.steering.as_ref().clone();
        if let Some(s) = steering.get_mut(zone) {
            *s = None;
        }
        Snapshot {
            health: Arc::new(health),
            steering: Arc::new(steering),
            ..self.renewed()
        }
    }

    /// This snapshot with `compiled` as the steering of the zone of index `zone`.
    pub fn with_steering(&self, zone: usize, compiled: Arc<ZoneSteering>) -> Snapshot {
        let mut steering = self.steering.as_ref().clone();
        steering[zone] = Some(compiled);
        Snapshot {
            steering: Arc::new(steering),
            ..self.renewed()
        }
    }

    /// The same snapshot under a new generation: every thread's fast-path caches start afresh
    /// for it.
    pub fn renewed(&self) -> Snapshot {
        Snapshot {
            zones: self.zones.clone(),
            geo: self.geo.clone(),
            health: self.health.clone(),
            steering: self.steering.clone(),
            latency: self.latency.clone(),
            spill: self.spill.clone(),
            generation: next_generation(),
            counters: self.counters.clone(),
        }
    }

    /// The compiled steering of `zone`, if the compiler has built it for this snapshot.
    pub fn steering(&self, zone: &Zone) -> Option<&ZoneSteering> {
        self.steering.get(zone.index)?.as_deref()
    }

    /// This snapshot with another published latency map. Compiled steering stays and keeps
    /// answering every other client; the networks the map speaks for take the direct path
    /// until the compiler has decided them from it ([`compiled::ZoneSteering::remeasured`]).
    pub fn with_latency(&self, latency: Arc<LatencyTable>) -> Snapshot {
        Snapshot {
            latency,
            ..self.renewed()
        }
    }

    /// This snapshot with other spill states (by zone index, then region). Compiled steering
    /// stays: it never answers a client of a region that sheds.
    pub fn with_spill(&self, spill: Arc<Vec<Vec<RegionSpill>>>) -> Snapshot {
        Snapshot {
            spill,
            ..self.renewed()
        }
    }

    /// The spill state of `zone`'s regions (empty: none sheds).
    pub fn spill(&self, zone: &Zone) -> &[RegionSpill] {
        self.spill.get(zone.index).map_or(&[], Vec::as_slice)
    }

    /// The number of multivalue list `regions` in `zone`'s cache keys
    /// ([`ZoneSteering::also`]): none but the empty list's until the zone is compiled.
    pub fn also(&self, zone: &Zone, regions: &[RegionId]) -> Option<Also> {
        match self.steering(zone) {
            Some(s) => s.also(regions),
            None => regions.is_empty().then_some(Also::NONE),
        }
    }

    /// The compiled answer of steered name `steered` of `zone` for `client`, or `None` where
    /// the direct path must answer: the zone is not compiled yet, the table leaves the
    /// address to it, the client's network is measured but not yet decided from this
    /// snapshot's latency map (or its addresses may be answered differently), or the
    /// answering region sheds clients (spillover decides per network). A scope whose block
    /// holds a measured network is narrowed to a client network.
    pub fn compiled_steer(
        &self,
        zone: &Zone,
        steered: usize,
        family: Family,
        client: Client,
    ) -> Option<Compiled> {
        let network = client.network();
        let steering = self.steering(zone)?;
        let c = match self.latency.index_of(network) {
            Some(index) => {
                steering.steer_measured(steered, family, client, &self.latency, index)?
            }
            None => {
                let mut c = steering.steer(steered, family, client)?;
                c.scope = self.latency.cap_scope(network, c.scope);
                c
            }
        };
        let spill = self.spill(zone);
        if c.steering
            .region
            .is_some_and(|r| spill.get(r).is_some_and(|s| s.shed > 0.0))
        {
            return None;
        }
        Some(c)
    }

    /// This snapshot with every zone compiled at once (and the measured networks of its
    /// latency map decided), for `meridian route` and tests, which have no compiler running
    /// beside them; a zone that cannot be compiled stays direct.
    pub fn compiled(self) -> Snapshot {
        let zones = self.zones.clone();
        let mut next = self;
        for zone in zones.by_index() {
            let view = next.health(zone);
            let table = || next.geo.table().map_err(str::to_owned);
            let compiled = match next.steering(zone) {
                Some(s) if s.measures(&next.latency) => continue,
                Some(s) => s.remeasured(zone, view, &next.latency, table),
                None => compiled::compile(zone, view, &next.latency, table),
            };
            if let Ok(c) = compiled {
                next = next.with_steering(zone.index, Arc::new(c));
            }
        }
        next
    }

    pub fn shared(self) -> SharedSnapshot {
        Arc::new(ArcSwap::from_pointee(self))
    }
}
