//! CONTROL: the latency map: what clients measure to each region (TCP RTT from a region's
//! frontends, browser beacons), aggregated per client network and published as an immutable
//! [`LatencyTable`] that steering reads.
//!
//! The rule: the map is written by the control plane only (ingestion, under one lock) and
//! never read by a query; every few seconds it is published whole as a [`LatencyTable`] in
//! the serving snapshot, which queries read without a lock.
//!
//! Design. Per (client network, region) a decayed mean of log-RTT: the geometric mean, which
//! one slow sample cannot drag as it drags an arithmetic mean. Client networks are /24
//! (IPv4) and /48 (IPv6), the widths ECS resolvers send. Each sample weighs 1 when it is
//! taken and half as much every half-life after, so the estimate follows route changes and an
//! abandoned network ages out. A sample far from an established estimate is clamped to
//! [`Settings::outlier_factor`] times (or a fraction) of it before it counts. What a client
//! network measures is shrunk towards a prior while it has few samples: the prior is the first
//! level of a fallback chain that has enough samples itself: the client's ASN, then its
//! country, then the distance model (`steer::KM_PER_RTT_MS`). Steering uses a network's
//! estimates only where at least two regions have [`Settings::min_samples`] each, and then
//! switches only past a margin (`steer::decide_measured`).

pub mod config;
pub mod feed;
pub mod ingest;
pub mod store;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::HashTable;
use ipnet::IpNet;
use serde::Serialize;

use crate::steer::{self, GeoPoint, Measured};

/// Default half-life of a sample's weight, in seconds. An hour follows a route change within
/// an hour or two, while a network that sends a sample a minute keeps about 87 effective
/// samples (60 / ln 2).
pub const DEFAULT_HALF_LIFE_SECS: u64 = 3600;
/// Default effective samples a client network needs for a region before steering trusts it.
/// Client RTTs spread by about 0.5 in log (a factor of 1.6); the standard error of a mean of
/// 20 is 0.11, about the 10 % the switching margin asks for.
pub const DEFAULT_MIN_SAMPLES: f64 = 20.0;
/// Default weight of the prior, in samples: with 5 samples the prior still counts for half,
/// with the 20 of [`DEFAULT_MIN_SAMPLES`] for a fifth.
pub const DEFAULT_PRIOR_WEIGHT: f64 = 5.0;
/// Default clamp: a sample more than 3 times (or less than a third of) an established
/// estimate counts as 3 times (a third): a retransmission or a sleeping radio is not the path.
pub const DEFAULT_OUTLIER_FACTOR: f64 = 3.0;
/// Samples an estimate needs before outliers are clamped to it.
pub const OUTLIER_AFTER: f64 = 5.0;
/// Weight below which an estimate is forgotten when the map is published.
const FORGET_WEIGHT: f64 = 0.01;

/// How samples are aggregated: `[latency]` in meridian.toml.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub half_life_secs: f64,
    pub min_samples: f64,
    pub prior_weight: f64,
    pub outlier_factor: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            half_life_secs: DEFAULT_HALF_LIFE_SECS as f64,
            min_samples: DEFAULT_MIN_SAMPLES,
            prior_weight: DEFAULT_PRIOR_WEIGHT,
            outlier_factor: DEFAULT_OUTLIER_FACTOR,
        }
    }
}

/// A client network: an IPv4 /24 or an IPv6 /48, as one sortable number (IPv4 first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Net(u64);

const V6_FLAG: u64 = 1 << 63;
/// Prefix lengths of client networks.
pub const V4_PREFIX: u8 = 24;
pub const V6_PREFIX: u8 = 48;

impl Net {
    /// The network of an address.
    pub fn of(addr: IpAddr) -> Net {
        match addr {
            IpAddr::V4(a) => Net(u64::from(u32::from(a) >> 8)),
            IpAddr::V6(a) => Net(V6_FLAG | (u128::from(a) >> 80) as u64),
        }
    }

    /// The network holding all of `net`, if `net` is no wider than one client network.
    pub fn within(net: IpNet) -> Option<Net> {
        let narrow_enough = match net {
            IpNet::V4(n) => n.prefix_len() >= V4_PREFIX,
            IpNet::V6(n) => n.prefix_len() >= V6_PREFIX,
        };
        narrow_enough.then(|| Net::of(net.addr()))
    }

    pub fn prefix(self) -> IpNet {
        if self.0 & V6_FLAG == 0 {
            let a = Ipv4Addr::from((self.0 as u32) << 8);
            IpNet::new(a.into(), V4_PREFIX).expect("24 is a valid IPv4 prefix")
        } else {
            let a = Ipv6Addr::from(u128::from(self.0 & !V6_FLAG) << 80);
            IpNet::new(a.into(), V6_PREFIX).expect("48 is a valid IPv6 prefix")
        }
    }

    pub fn bits(self) -> u64 {
        self.0
    }

    pub fn from_bits(bits: u64) -> Net {
        Net(bits)
    }
}

/// A wider group of clients whose samples are the prior of its networks, most specific
/// first in [`Origin::groups`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    Asn(u32),
    /// ISO 3166 alpha-2 code.
    Country([u8; 2]),
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Group::Asn(n) => write!(f, "AS{n}"),
            Group::Country(c) => write!(f, "{}", String::from_utf8_lossy(c)),
        }
    }
}

/// Where a client is, as far as the fallback chain cares: its ASN and its country. Built by
/// [`Origin::of`] from the GeoIP location; the ASN is `None` until an ASN database is given
/// (the one place it plugs in).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Origin {
    pub asn: Option<u32>,
    pub country: Option<[u8; 2]>,
    pub point: Option<GeoPoint>,
}

impl Origin {
    /// The origin of a client from its location, which carries its AS (from the embedded
    /// ASN database) where that knows it.
    pub fn of(location: &crate::geo::Location) -> Origin {
        Origin {
            asn: location.asn.map(|a| a.number),
            country: location
                .country
                .and_then(|c| <[u8; 2]>::try_from(c.as_bytes()).ok()),
            point: location.point,
        }
    }

    /// The groups of the fallback chain, most specific first.
    pub fn groups(&self) -> impl Iterator<Item = Group> {
        self.asn
            .map(Group::Asn)
            .into_iter()
            .chain(self.country.map(Group::Country))
    }
}

/// A decayed mean of log-RTT: `weight` effective samples (at the row's time) of mean `mean`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cell {
    pub weight: f32,
    pub mean: f32,
}

impl Cell {
    /// Adds a sample of log-RTT `x` of weight `w`, clamped by `factor` once established.
    fn add(&mut self, x: f64, w: f64, factor: f64) -> bool {
        let (weight, mean) = (f64::from(self.weight), f64::from(self.mean));
        let limit = factor.ln();
        let clamped = weight >= OUTLIER_AFTER && (x - mean).abs() > limit;
        let x = if clamped {
            mean + limit.copysign(x - mean)
        } else {
            x
        };
        let total = weight + w;
        self.mean = ((weight * mean + w * x) / total) as f32;
        self.weight = total as f32;
        clamped
    }

    fn decay(&mut self, factor: f64) {
        self.weight = (f64::from(self.weight) * factor) as f32;
    }

    pub fn rtt_ms(&self) -> f64 {
        f64::from(self.mean).exp()
    }
}

/// Rows of cells, one cell per region: a stride of `regions` cells per row, so a million
/// networks cost one index entry and one run of cells each.
#[derive(Debug, Clone)]
struct Rows<K> {
    /// Row numbers, hashed by their row's key: the key is not held twice, so a bucket is 5
    /// bytes where a map of key to row takes 17 for a [`Net`] (its 8 and the row's 4, padded).
    index: HashTable<u32>,
    hasher: RandomState,
    keys: Vec<K>,
    /// When each row's weights were last decayed, Unix seconds.
    times: Vec<u32>,
    cells: Vec<Cell>,
}

impl<K> Default for Rows<K> {
    fn default() -> Self {
        Rows {
            index: HashTable::new(),
            hasher: RandomState::new(),
            keys: Vec::new(),
            times: Vec::new(),
            cells: Vec::new(),
        }
    }
}

impl<K: Copy + Eq + std::hash::Hash> Rows<K> {
    /// The row of `key`, if it has one.
    fn find(&self, key: K) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        let i = self.index.find(hash, |&i| self.keys[i as usize] == key)?;
        Some(*i as usize)
    }

    fn row(&mut self, key: K, stride: usize, at: u32) -> usize {
        if let Some(i) = self.find(key) {
            return i;
        }
        let hash = self.hasher.hash_one(key);
        let i = self.keys.len();
        let (keys, hasher) = (&self.keys, &self.hasher);
        self.index.insert_unique(
            hash,
            u32::try_from(i).expect("fewer than 2^32 rows"),
            |&j| hasher.hash_one(keys[j as usize]),
        );
        // Grown by an eighth, not doubled: a million rows leave at most 12 % of the arrays
        // unused instead of up to half. Growing that way copies about 8 times the final
        // size in all (glibc remaps a block past its mmap threshold instead).
        let more = (i / 8).max(1024);
        if self.keys.len() == self.keys.capacity() {
            self.keys.reserve_exact(more);
        }
        if self.times.len() == self.times.capacity() {
            self.times.reserve_exact(more);
        }
        if self.cells.capacity() - self.cells.len() < stride {
            self.cells.reserve_exact(more * stride);
        }
        self.keys.push(key);
        self.times.push(at);
        self.cells
            .extend(std::iter::repeat_n(Cell::default(), stride));
        i
    }

    /// Adds a sample of weight `weight` to `key`'s cell of `region` at time `at`.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        key: K,
        region: usize,
        stride: usize,
        x: f64,
        at: u32,
        weight: f64,
        s: &Settings,
    ) -> bool {
        let (cells, w) = self.at(key, stride, at, s);
        cells[region].add(x, w * weight, s.outlier_factor)
    }

    /// `key`'s row (added if new) brought to time `at`: a later `at` decays the row to it,
    /// an earlier one enters with its age. Returns the row's cells and what a weight of
    /// time `at` is worth in the row.
    fn at(&mut self, key: K, stride: usize, at: u32, s: &Settings) -> (&mut [Cell], f64) {
        let i = self.row(key, stride, at);
        let t = &mut self.times[i];
        let cells = &mut self.cells[i * stride..(i + 1) * stride];
        let w = if at > *t {
            let f = half(f64::from(at - *t), s.half_life_secs);
            cells.iter_mut().for_each(|c| c.decay(f));
            *t = at;
            1.0
        } else {
            half(f64::from(*t - at), s.half_life_secs)
        };
        (cells, w)
    }

    /// The cells of every row decayed to `now`, forgotten rows removed.
    fn decayed(&mut self, stride: usize, now: u32, s: &Settings) {
        let mut keep = 0;
        for i in 0..self.keys.len() {
            let f = half(
                f64::from(now.saturating_sub(self.times[i])),
                s.half_life_secs,
            );
            let mut alive = false;
            for c in &mut self.cells[i * stride..(i + 1) * stride] {
                c.decay(f);
                if f64::from(c.weight) < FORGET_WEIGHT {
                    *c = Cell::default();
                } else {
                    alive = true;
                }
            }
            self.times[i] = self.times[i].max(now);
            if alive {
                self.keys[keep] = self.keys[i];
                self.times[keep] = self.times[i];
                self.cells
                    .copy_within(i * stride..(i + 1) * stride, keep * stride);
                keep += 1;
            }
        }
        if keep == self.keys.len() {
            // Nothing forgotten: every row kept its number, and the index holds.
            return;
        }
        self.keys.truncate(keep);
        self.times.truncate(keep);
        self.cells.truncate(keep * stride);
        let (keys, hasher) = (&self.keys, &self.hasher);
        let mut index = HashTable::with_capacity(keep);
        for (i, &k) in keys.iter().enumerate() {
            index.insert_unique(hasher.hash_one(k), i as u32, |&j| {
                hasher.hash_one(keys[j as usize])
            });
        }
        self.index = index;
    }

    /// Adds `cell`, another map's estimate for `key` and `region` as of `at`, to this one:
    /// both decayed to the later time, their weights add and their means weigh by weight.
    /// No clamp: the other map's samples were clamped where they were taken.
    fn merge(&mut self, key: K, region: usize, stride: usize, at: u32, cell: Cell, s: &Settings) {
        let (cells, w) = self.at(key, stride, at, s);
        let c = &mut cells[region];
        let (wa, ma) = (f64::from(c.weight), f64::from(c.mean));
        let wb = f64::from(cell.weight) * w;
        let total = wa + wb;
        if total > 0.0 {
            c.mean = ((wa * ma + wb * f64::from(cell.mean)) / total) as f32;
            c.weight = total as f32;
        }
    }

    /// The same rows with `to` cells each instead of `from` (regions appended at the end).
    fn widened(&mut self, from: usize, to: usize) {
        let rows = self.keys.len();
        let mut cells = Vec::with_capacity(rows * to);
        for i in 0..rows {
            cells.extend_from_slice(&self.cells[i * from..(i + 1) * from]);
            cells.extend(std::iter::repeat_n(Cell::default(), to - from));
        }
        self.cells = cells;
    }
}

/// The heaviest rows of `rows` (total weight over their `stride` cells), at most `room` of
/// them; `room` is left with what they did not take.
fn heaviest<K: Copy + Eq + std::hash::Hash>(
    rows: &Rows<K>,
    stride: usize,
    room: &mut usize,
) -> Rows<K> {
    let weight = |i: usize| -> f64 {
        rows.cells[i * stride..(i + 1) * stride]
            .iter()
            .map(|c| f64::from(c.weight))
            .sum()
    };
    let mut order: Vec<usize> = (0..rows.keys.len()).collect();
    if order.len() > *room {
        order.sort_unstable_by(|&a, &b| weight(b).total_cmp(&weight(a)));
        order.truncate(*room);
    }
    *room -= order.len();
    let mut out = Rows::default();
    for i in order {
        let r = out.row(rows.keys[i], stride, rows.times[i]);
        out.cells[r * stride..(r + 1) * stride]
            .copy_from_slice(&rows.cells[i * stride..(i + 1) * stride]);
    }
    out
}

/// 2^(-age/half_life).
fn half(age: f64, half_life: f64) -> f64 {
    (-age / half_life * std::f64::consts::LN_2).exp()
}

/// The mutable map the control plane feeds: per client network and per group.
#[derive(Debug, Clone, Default)]
pub struct LatencyMap {
    pub settings: Settings,
    /// Region names, in the order cells are laid out; only ever appended to.
    regions: Vec<String>,
    nets: Rows<Net>,
    groups: Rows<Group>,
}

/// What one sample did to the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    /// The sample was an outlier, clamped before it counted.
    pub clamped: bool,
}

impl LatencyMap {
    pub fn new(settings: Settings) -> Self {
        LatencyMap {
            settings,
            ..Default::default()
        }
    }

    pub fn regions(&self) -> &[String] {
        &self.regions
    }

    /// Client networks with an estimate.
    pub fn networks(&self) -> usize {
        self.nets.keys.len()
    }

    /// No estimate at all: neither networks nor groups.
    pub fn is_empty(&self) -> bool {
        self.nets.keys.is_empty() && self.groups.keys.is_empty()
    }

    /// Memory held by the estimates, for the log line: the rows and their hash index.
    pub fn bytes(&self) -> usize {
        fn rows<K>(r: &Rows<K>) -> usize {
            let key = std::mem::size_of::<K>();
            // A table fills 7 of every 8 buckets at most; each is a row number and a control
            // byte.
            r.index.capacity() / 7 * 8 * (4 + 1)
                + r.keys.capacity() * key
                + r.times.capacity() * 4
                + r.cells.capacity() * std::mem::size_of::<Cell>()
        }
        rows(&self.nets) + rows(&self.groups)
    }

    /// The column of `region`, added if new.
    fn column(&mut self, region: &str) -> usize {
        if let Some(i) = self.regions.iter().position(|r| r == region) {
            return i;
        }
        let (from, to) = (self.regions.len(), self.regions.len() + 1);
        self.nets.widened(from, to);
        self.groups.widened(from, to);
        self.regions.push(region.to_string());
        from
    }

    /// Adds one sample: `rtt_ms` from `client`'s network (in `origin`'s groups) to
    /// `region`, taken at Unix second `at`. The sample must be valid ([`ingest`] checks).
    pub fn add(
        &mut self,
        client: Net,
        origin: &Origin,
        region: &str,
        rtt_ms: f64,
        at: u64,
    ) -> Added {
        self.add_weighted(client, origin, region, rtt_ms, at, 1.0)
    }

    /// [`LatencyMap::add`] for an aggregate that weighs as much as `weight` samples.
    pub fn add_weighted(
        &mut self,
        client: Net,
        origin: &Origin,
        region: &str,
        rtt_ms: f64,
        at: u64,
        weight: f64,
    ) -> Added {
        let column = self.column(region);
        let stride = self.regions.len();
        let at = u32::try_from(at).unwrap_or(u32::MAX);
        let x = rtt_ms.ln();
        let s = self.settings;
        let clamped = self.nets.add(client, column, stride, x, at, weight, &s);
        for g in origin.groups() {
            self.groups.add(g, column, stride, x, at, weight, &s);
        }
        Added { clamped }
    }

    /// Decays every estimate to `now` (Unix seconds) and forgets those that aged out.
    pub fn forget(&mut self, now: u64) {
        let now = u32::try_from(now).unwrap_or(u32::MAX);
        let stride = self.regions.len();
        let s = self.settings;
        self.nets.decayed(stride, now, &s);
        self.groups.decayed(stride, now, &s);
    }

    /// Adds every estimate of `other` (the samples another node took) to this map's.
    /// Merging maps of disjoint samples gives the map of all of them (a decayed mean's
    /// weight is a sum over samples and its mean a weighted mean), but for the outlier
    /// clamp: each map clamped its samples against its own estimate, not the merged one.
    pub fn merge(&mut self, other: &LatencyMap) {
        let columns: Vec<usize> = other.regions.iter().map(|r| self.column(r)).collect();
        let (stride, theirs) = (self.regions.len(), other.regions.len());
        let s = self.settings;
        for (i, &k) in other.nets.keys.iter().enumerate() {
            let cells = &other.nets.cells[i * theirs..(i + 1) * theirs];
            for (j, c) in cells.iter().enumerate().filter(|(_, c)| c.weight > 0.0) {
                let at = other.nets.times[i];
                self.nets.merge(k, columns[j], stride, at, *c, &s);
            }
        }
        for (i, &k) in other.groups.keys.iter().enumerate() {
            let cells = &other.groups.cells[i * theirs..(i + 1) * theirs];
            for (j, c) in cells.iter().enumerate().filter(|(_, c)| c.weight > 0.0) {
                let at = other.groups.times[i];
                self.groups.merge(k, columns[j], stride, at, *c, &s);
            }
        }
    }

    /// What this node shares with the others, as much as [`store::encode`] fits in
    /// `max_bytes`: its groups (AS and country estimates), then its networks, each heaviest
    /// first (total weight over regions). Groups come first, as every network of theirs
    /// leans on them; the light rows left out are those that steer least.
    pub fn shared(&self, max_bytes: usize) -> LatencyMap {
        let stride = self.regions.len();
        let row_bytes = 12 + 8 * stride;
        let fixed = store::encoded_header(&self.regions) + 16;
        let mut room = max_bytes.saturating_sub(fixed) / row_bytes;
        let groups = heaviest(&self.groups, stride, &mut room);
        let nets = heaviest(&self.nets, stride, &mut room);
        LatencyMap {
            settings: self.settings,
            regions: self.regions.clone(),
            nets,
            groups,
        }
    }

    /// Decays every estimate to `now` (Unix seconds), forgets those that aged out, and
    /// returns the immutable table steering reads: the networks that at least two regions
    /// have enough samples for, and every group.
    pub fn publish(&mut self, now: u64) -> LatencyTable {
        self.forget(now);
        let stride = self.regions.len();
        let s = self.settings;
        let enough = |cells: &[Cell]| {
            cells
                .iter()
                .filter(|c| f64::from(c.weight) >= s.min_samples)
                .count()
                >= 2
        };
        let mut order: Vec<usize> = (0..self.nets.keys.len())
            .filter(|&i| enough(&self.nets.cells[i * stride..(i + 1) * stride]))
            .collect();
        order.sort_unstable_by_key(|&i| self.nets.keys[i]);
        let mut cells = Vec::with_capacity(order.len() * stride);
        for &i in &order {
            cells.extend_from_slice(&self.nets.cells[i * stride..(i + 1) * stride]);
        }
        let groups = (0..self.groups.keys.len())
            .map(|i| {
                (
                    self.groups.keys[i],
                    self.groups.cells[i * stride..(i + 1) * stride].into(),
                )
            })
            .collect();
        LatencyTable {
            settings: s,
            regions: self.regions.clone(),
            nets: order.iter().map(|&i| self.nets.keys[i]).collect(),
            cells,
            groups,
        }
    }
}

/// The published map: immutable, in the serving snapshot.
#[derive(Debug, Default)]
pub struct LatencyTable {
    settings: Settings,
    regions: Vec<String>,
    /// Sorted networks with enough samples to steer by.
    nets: Vec<Net>,
    /// `regions.len()` cells per network, in `nets` order.
    cells: Vec<Cell>,
    groups: HashMap<Group, Box<[Cell]>>,
}

impl LatencyTable {
    /// No network to steer by (groups may hold estimates).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Nothing at all: neither networks nor groups.
    pub fn is_blank(&self) -> bool {
        self.nets.is_empty() && self.groups.is_empty()
    }

    /// Networks steering can use.
    pub fn networks(&self) -> usize {
        self.nets.len()
    }

    fn row(&self, net: Net) -> Option<&[Cell]> {
        let i = self.nets.binary_search(&net).ok()?;
        Some(self.cells_of(i))
    }

    fn cells_of(&self, index: usize) -> &[Cell] {
        let stride = self.regions.len();
        &self.cells[index * stride..(index + 1) * stride]
    }

    /// The index of `client`'s network among those steering can use (an ECS network or an
    /// address no wider than a client network), which compiled steering keys its measured
    /// answers by.
    pub fn index_of(&self, client: IpNet) -> Option<usize> {
        if self.nets.is_empty() {
            return None;
        }
        self.nets.binary_search(&Net::within(client)?).ok()
    }

    /// Whether steering may answer `client` (an ECS network or an address) from measured
    /// RTTs: its network is no wider than a client network, and that one has data.
    pub fn speaks_for(&self, client: IpNet) -> bool {
        self.index_of(client).is_some()
    }

    /// The network of index `index` ([`LatencyTable::index_of`]).
    pub fn net(&self, index: usize) -> Net {
        self.nets[index]
    }

    /// Whether some AS has estimates: a client's AS may then be its prior.
    pub fn has_asn_groups(&self) -> bool {
        self.groups.keys().any(|g| matches!(g, Group::Asn(_)))
    }

    /// A compiled scope for `client`, made no wider than a client network where the block it
    /// names holds a network with measured data (that one may be answered otherwise). Capped
    /// by the client's own prefix, as every scope is.
    pub fn cap_scope(&self, client: IpNet, scope: u8) -> u8 {
        if self.nets.is_empty() || scope == 0 {
            return scope;
        }
        let (floor, bits) = match client {
            IpNet::V4(_) => (V4_PREFIX, 32),
            IpNet::V6(_) => (V6_PREFIX, 128),
        };
        if scope >= floor {
            return scope;
        }
        let block = IpNet::new(client.addr(), scope)
            .expect("a scope is a valid prefix")
            .trunc();
        let first = Net::of(block.network());
        let last = Net::of(block.broadcast());
        let lo = self.nets.partition_point(|n| *n < first);
        if self.nets.get(lo).is_some_and(|n| *n <= last) {
            floor.min(client.prefix_len()).min(bits)
        } else {
            scope
        }
    }

    /// The measured RTT of `client` to each of `regions` (names, in a zone's region order):
    /// `None` for a region without enough samples, and `None` overall when the client's
    /// network has no data. Each estimate is shrunk towards its prior (the first group of
    /// `origin` with enough samples for that region, else the distance model).
    pub fn client_rtt<'r>(
        &self,
        client: IpNet,
        origin: &Origin,
        regions: impl IntoIterator<Item = (&'r str, GeoPoint)>,
    ) -> Option<steer::ClientRtt> {
        let index = self.index_of(client)?;
        Some(self.client_rtt_at(index, origin, regions))
    }

    /// [`LatencyTable::client_rtt`] of the network of index `index`.
    pub fn client_rtt_at<'r>(
        &self,
        index: usize,
        origin: &Origin,
        regions: impl IntoIterator<Item = (&'r str, GeoPoint)>,
    ) -> steer::ClientRtt {
        let row = self.cells_of(index);
        let s = &self.settings;
        let estimates = regions
            .into_iter()
            .map(|(name, location)| {
                let col = self.regions.iter().position(|r| r == name)?;
                let own = row[col];
                if f64::from(own.weight) < s.min_samples {
                    return None;
                }
                let prior = self.prior(origin, col, location);
                let w = f64::from(own.weight);
                let mean = match prior {
                    Some(p) => {
                        (w * f64::from(own.mean) + s.prior_weight * p) / (w + s.prior_weight)
                    }
                    None => f64::from(own.mean),
                };
                Some(Measured {
                    rtt_ms: mean.exp(),
                    samples: w,
                })
            })
            .collect();
        steer::ClientRtt {
            prefix: self.nets[index].prefix(),
            regions: estimates,
        }
    }

    /// The prior log-RTT to region column `col` for a client of `origin`: the first group
    /// with enough samples, else the distance model; `None` when neither is known.
    fn prior(&self, origin: &Origin, col: usize, region: GeoPoint) -> Option<f64> {
        for g in origin.groups() {
            if let Some(c) = self.groups.get(&g).map(|cells| cells[col])
                && f64::from(c.weight) >= self.settings.min_samples
            {
                return Some(f64::from(c.mean));
            }
        }
        // The distance model's RTT, at least a millisecond: a log of zero is no prior.
        origin
            .point
            .map(|p| (p.distance_km(region) / steer::KM_PER_RTT_MS).max(1.0).ln())
    }

    /// Every group's estimates, for the API: (group, region, rtt_ms, samples).
    pub fn group_estimates(&self) -> Vec<(Group, &str, f64, f64)> {
        let mut out: Vec<_> = self
            .groups
            .iter()
            .flat_map(|(g, cells)| {
                cells
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.weight > 0.0)
                    .map(|(i, c)| {
                        (
                            *g,
                            self.regions[i].as_str(),
                            c.rtt_ms(),
                            f64::from(c.weight),
                        )
                    })
            })
            .collect();
        out.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        out
    }

    /// How many (group, region) estimates [`LatencyTable::group_estimates`] lists.
    pub fn group_estimate_count(&self) -> usize {
        self.groups
            .values()
            .map(|cells| cells.iter().filter(|c| c.weight > 0.0).count())
            .sum()
    }

    /// The raw estimates of one network, for the API: (region, rtt_ms, samples).
    pub fn network(&self, net: Net) -> Option<Vec<(&str, f64, f64)>> {
        let row = self.row(net)?;
        Some(
            row.iter()
                .enumerate()
                .filter(|(_, c)| c.weight > 0.0)
                .map(|(i, c)| (self.regions[i].as_str(), c.rtt_ms(), f64::from(c.weight)))
                .collect(),
        )
    }

    /// The first `limit` networks steering can use, from `after` on.
    pub fn nets_from(&self, after: Option<Net>, limit: usize) -> impl Iterator<Item = Net> + '_ {
        let start = after.map_or(0, |a| self.nets.partition_point(|n| *n <= a));
        self.nets[start..].iter().copied().take(limit)
    }
}

#[cfg(test)]
mod tests;
