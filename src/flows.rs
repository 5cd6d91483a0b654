//! Where clients go: which client areas the steered answers of the last minutes sent to which
//! region, for the dashboard's map.
//!
//! The rule: the query path only writes the answer's client network and region into a ring
//! owned by its own thread ([`record`]: two relaxed stores and a release store, no lock, no
//! lookup, no shared cache line); once a second the control plane drains the rings
//! ([`Window::drain`]), places the networks and counts them per area, a cell of a fixed grid
//! over the map. Placing reads the steering compiler's location table, not the GeoIP cache:
//! a flood of new client networks neither fills that cache nor keeps the control plane busy
//! on the serving core. Memory is bounded by the grid and the configured regions, whatever
//! subnets clients (or attackers) send from. A thread that answers more steered queries in a
//! second than its ring holds has the entries read stand for all of them (scaled), and the
//! flows, rounded by largest remainder, add up to every answer.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, Weak};

use ipnet::IpNet;
use serde::Serialize;

use crate::geo::GeoDb;

/// Entries per thread's ring: a second of a busy thread's answers at most; more are sampled.
const RING: usize = 1024;
/// The grid's cell, in degrees: 36 by 72 cells cover the map.
pub const CELL_DEGREES: f64 = 5.0;
const ROWS: usize = 36;
const COLUMNS: usize = 72;
/// The area of clients the database cannot place.
const UNLOCATED: u16 = u16::MAX;
/// Minutes counted: "the last minutes" the map shows.
pub const WINDOW_MINUTES: u64 = 5;

/// One thread's recent answers: `slots[2 i]` the client network, `slots[2 i + 1]` what it was
/// answered ([`meta`]). Only the owning thread writes; the control plane reads.
struct Ring {
    slots: Box<[AtomicU64]>,
    written: AtomicU64,
    /// How far the control plane has read (only it touches this).
    read: AtomicU64,
}

/// Every live thread's ring: a thread registers on its first steered answer; a ring whose
/// thread ended is dropped at the next drain.
static RINGS: Mutex<Vec<Weak<Ring>>> = Mutex::new(Vec::new());

thread_local! {
    static OWN: Arc<Ring> = {
        let ring = Arc::new(Ring {
            slots: (0..2 * RING).map(|_| AtomicU64::new(0)).collect(),
            written: AtomicU64::new(0),
            read: AtomicU64::new(0),
        });
        RINGS.lock().expect("flow rings lock").push(Arc::downgrade(&ring));
        ring
    };
}

const V6: u64 = 1 << 31;

/// What an entry says of its answer: the zone's counters `id`, the family, the region.
fn meta(id: u32, v6: bool, region: usize) -> u64 {
    (u64::from(id) << 32) | if v6 { V6 } else { 0 } | (region as u64 & 0xffff)
}

/// The network word: an IPv4 /24 or an IPv6 /48, as the database places them.
fn network_word(client: IpNet) -> (u64, bool) {
    match client {
        IpNet::V4(n) => (u64::from(u32::from(n.addr()) & 0xffff_ff00), false),
        IpNet::V6(n) => ((u128::from(n.addr()) >> 64) as u64 & !0xffff, true),
    }
}

/// A steered answer for `client`, by region `region` of the zone whose counters are `id`.
/// The query path's whole cost here.
pub fn record(id: u32, region: usize, client: IpNet) {
    let (net, v6) = network_word(client);
    OWN.with(|ring| {
        let n = ring.written.load(Ordering::Relaxed);
        let i = (n as usize % RING) * 2;
        // A reader that sees these stores sees `written` at n at least, so it knows the
        // slot's older entry (n - RING) is being overwritten (a seqlock's writer fence).
        fence(Ordering::Release);
        ring.slots[i].store(net, Ordering::Relaxed);
        ring.slots[i + 1].store(meta(id, v6, region), Ordering::Relaxed);
        ring.written.store(n + 1, Ordering::Release);
    });
}

/// A flow's key: (area cell, zone counters id, region).
type Key = (u16, u32, u16);

/// The counts of the last [`WINDOW_MINUTES`] minutes, per minute.
#[derive(Debug, Default)]
pub struct Window {
    minutes: VecDeque<(u64, HashMap<Key, f64>)>,
    /// Per cell, the country its clients were last placed in.
    countries: HashMap<u16, &'static str>,
}

/// One flow of the window: clients of an area answered by a region.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flow {
    /// The area's cell: its south-west corner, [`CELL_DEGREES`] wide and high; `None`: the
    /// database could not place the clients.
    pub cell: Option<Cell>,
    pub zone: String,
    pub region: String,
    pub queries: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cell {
    pub lat: f64,
    pub lon: f64,
    /// The country last placed there.
    pub country: Option<&'static str>,
}

fn cell_of(lat: f64, lon: f64) -> u16 {
    let row = (((lat + 90.0) / CELL_DEGREES).floor() as isize).clamp(0, ROWS as isize - 1);
    let column = (((lon + 180.0) / CELL_DEGREES).floor() as isize).clamp(0, COLUMNS as isize - 1);
    (row as usize * COLUMNS + column as usize) as u16
}

impl Window {
    /// Reads every ring's new entries, locates them in `geo` and counts them in the minute
    /// `now_s / 60`. Entries overwritten before they were read are stood for by the ones
    /// read.
    pub fn drain(&mut self, geo: &GeoDb, now_s: u64) {
        let rings: Vec<Arc<Ring>> = {
            let mut all = RINGS.lock().expect("flow rings lock");
            all.retain(|w| w.strong_count() > 0);
            all.iter().filter_map(Weak::upgrade).collect()
        };
        let minute = now_s / 60;
        if self.minutes.back().is_none_or(|m| m.0 != minute) {
            self.minutes.push_back((minute, HashMap::new()));
        }
        while self
            .minutes
            .front()
            .is_some_and(|m| m.0 + WINDOW_MINUTES <= minute)
        {
            self.minutes.pop_front();
        }
        let mut placed: HashMap<(u64, bool), u16> = HashMap::new();
        for ring in rings {
            let from = ring.read.load(Ordering::Relaxed);
            let to = ring.written.load(Ordering::Acquire);
            let start = from.max(to.saturating_sub(RING as u64));
            let mut entries = Vec::with_capacity((to - start) as usize);
            for n in start..to {
                let i = (n as usize % RING) * 2;
                let net = ring.slots[i].load(Ordering::Relaxed);
                let meta = ring.slots[i + 1].load(Ordering::Relaxed);
                entries.push((n, net, meta));
            }
            fence(Ordering::Acquire);
            let now_written = ring.written.load(Ordering::Relaxed);
            // Entries the writer may have overwritten while they were read are left out.
            entries.retain(|&(n, _, _)| n + RING as u64 > now_written);
            ring.read.store(to, Ordering::Relaxed);
            if entries.is_empty() {
                continue;
            }
            let weight = (to - from) as f64 / entries.len() as f64;
            for (_, net, meta) in entries {
                let v6 = meta & V6 != 0;
                let cell = *placed.entry((net, v6)).or_insert_with(|| {
                    let addr: IpAddr = if v6 {
                        Ipv6Addr::from(u128::from(net) << 64).into()
                    } else {
                        Ipv4Addr::from(net as u32).into()
                    };
                    let place = geo.place(addr);
                    let Some(p) = place.point() else {
                        return UNLOCATED;
                    };
                    let cell = cell_of(p.lat, p.lon);
                    if let Some(country) = place.country() {
                        self.countries.insert(cell, country);
                    }
                    cell
                });
                let key = (cell, (meta >> 32) as u32, (meta & 0xffff) as u16);
                let counts = &mut self.minutes.back_mut().expect("pushed above").1;
                *counts.entry(key).or_default() += weight;
            }
        }
    }

    /// The window's flows, largest first, `names` giving a zone counters id's zone and
    /// region names (flows of counters no longer in use are left out).
    pub fn flows(&self, names: impl Fn(u32, u16) -> Option<(String, String)>) -> Vec<Flow> {
        let mut total: HashMap<Key, f64> = HashMap::new();
        for (_, counts) in &self.minutes {
            for (k, v) in counts {
                *total.entry(*k).or_default() += v;
            }
        }
        let named: Vec<(u16, String, String, f64)> = total
            .into_iter()
            .filter_map(|((cell, id, region), queries)| {
                let (zone, region) = names(id, region)?;
                Some((cell, zone, region, queries))
            })
            .collect();
        // Scaled counts are rounded by largest remainder: each down, then the units short of
        // the rounded total to the largest fractions, so that the flows add up to the answers.
        let mut counts: Vec<u64> = named.iter().map(|f| f.3.floor() as u64).collect();
        let whole = named.iter().map(|f| f.3).sum::<f64>().round() as u64;
        let short = whole.saturating_sub(counts.iter().sum()) as usize;
        let mut by_fraction: Vec<usize> = (0..named.len()).collect();
        by_fraction.sort_by(|&a, &b| named[b].3.fract().total_cmp(&named[a].3.fract()));
        for &i in by_fraction.iter().take(short) {
            counts[i] += 1;
        }
        let mut out: Vec<Flow> = named
            .into_iter()
            .zip(counts)
            .filter(|(_, queries)| *queries > 0)
            .map(|((cell, zone, region, _), queries)| Flow {
                cell: (cell != UNLOCATED).then(|| Cell {
                    lat: (cell as usize / COLUMNS) as f64 * CELL_DEGREES - 90.0,
                    lon: (cell as usize % COLUMNS) as f64 * CELL_DEGREES - 180.0,
                    country: self.countries.get(&cell).copied(),
                }),
                zone,
                region,
                queries,
            })
            .collect();
        out.sort_by(|a, b| b.queries.cmp(&a.queries).then(a.region.cmp(&b.region)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_cover_the_map_and_clamp_its_edges() {
        assert_eq!(cell_of(-90.0, -180.0), 0);
        assert_eq!(cell_of(90.0, 180.0) as usize, ROWS * COLUMNS - 1);
        assert_eq!(cell_of(51.5, -0.1), cell_of(52.0, -4.9));
        assert_ne!(cell_of(51.5, -0.1), cell_of(51.5, 0.1));
    }

    #[test]
    fn network_words_are_the_blocks_the_database_places() {
        let v4: IpNet = "81.2.69.7/32".parse().unwrap();
        assert_eq!(network_word(v4), (0x5102_4500, false));
        let v6: IpNet = "2001:db8:1:2:3::/80".parse().unwrap();
        assert_eq!(network_word(v6), (0x2001_0db8_0001_0000, true));
    }

    /// More answers between two drains than a ring holds: the entries read stand for all of
    /// them, and the rounded flows still add up to every answer.
    #[test]
    fn an_overflowing_ring_is_scaled_and_its_flows_add_up() {
        let geo = GeoDb::embedded().expect("the embedded database loads");
        geo.table().expect("the table builds");
        let mut window = Window::default();
        let id = u32::MAX - 9;
        let mut x: u32 = 0x0bad_cafe;
        for sent in [3000u64, 1500, 2047] {
            for _ in 0..sent {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                record(
                    id,
                    (x % 3) as usize,
                    IpNet::from(IpAddr::from(x.to_be_bytes())),
                );
            }
            window.drain(&geo, 600);
            let flows = window.flows(|i, r| (i == id).then(|| ("z.".into(), r.to_string())));
            let counted: u64 = flows.iter().map(|f| f.queries).sum();
            assert_eq!(counted, sent, "{} flows", flows.len());
            window = Window::default();
        }
    }

    /// A flood from ever new subnets grows no counter past the grid: the counts of one
    /// region stay within one per cell, and every answer is counted.
    #[test]
    fn a_flood_of_distinct_subnets_stays_within_the_grid() {
        let geo = GeoDb::embedded().expect("the embedded database loads");
        let mut window = Window::default();
        let mut x: u32 = 0x1234_5678;
        let mut sent = 0u64;
        // Several drains, each of less than a ring, from this test's thread only.
        for round in 0..20 {
            for _ in 0..1000 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                record(
                    u32::MAX - 7,
                    0,
                    IpNet::from(std::net::IpAddr::from(x.to_be_bytes())),
                );
                sent += 1;
            }
            window.drain(&geo, 600 + round);
        }
        let flows =
            window.flows(|id, r| (id == u32::MAX - 7).then(|| ("z.".into(), r.to_string())));
        // Other tests' threads may record too: only this test's counters are looked at.
        // At most one flow per cell (and the unlocated) for the one region.
        assert!(flows.len() <= ROWS * COLUMNS + 1, "{} flows", flows.len());
        let counted: u64 = flows.iter().map(|f| f.queries).sum();
        assert_eq!(counted, sent);
        assert!(
            flows.len() > 20,
            "addresses all over the world fall in many cells"
        );
    }
}
