//! The whole address space of each family as sorted ranges, each with an index into a list of
//! distinct places (point, country, continent): the database walked once, neighbouring
//! networks with the same place merged, special-purpose space unknown (as [`GeoDb::locate`]
//! places it). The same walk gives the embedded ASN database's ranges ([`AsnRanges`]), which
//! compiled network and ASN rules read.
//!
//! The rule: every address the table speaks for gets the place that `locate` gives it, so a
//! decision compiled from the table (geo-fences included) is the decision the direct path
//! makes. Where the table
//! cannot say (IPv4 data reached through an IPv6 alias, 6to4 or Teredo, which the walk skips),
//! the range is [`DIRECT`] and a query there takes the direct path. Steering compiles from
//! this table (`serving::compiled`) in a sequential scan, without touching the database again.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;

use ipnet::IpNet;

use maxminddb::{LookupResult, Reader};

use super::countries::{self, Continent};
use super::{GeoDb, Record, SPECIAL_BLOCKS};
use crate::steer::GeoPoint;

/// Index into [`LocationTable::places`].
pub type PointId = u32;
/// No location: gaps in the database, special-purpose space, records without a place.
pub const UNKNOWN: PointId = 0;
/// Space the table does not speak for: answered the direct way.
pub const DIRECT: PointId = PointId::MAX;
/// Ids from here on (but [`DIRECT`]) are IPv6 /64s that the database splits further: id
/// `SPLIT + k` holds the points of [`LocationTable::split`]`[k]`.
pub const SPLIT: PointId = 1 << 31;

/// Contiguous ranges covering a family's whole space: range `i` runs from `starts[i]` up to
/// the next start. `starts[0]` is 0. IPv4 starts are addresses; IPv6 starts count /64s
/// ([`V6_UNIT`]).
#[derive(Debug)]
pub struct Ranges<A> {
    pub starts: Vec<A>,
    pub ids: Vec<PointId>,
}

impl<A: Copy + Ord> Ranges<A> {
    /// The index of the range holding `addr`.
    pub fn find(&self, addr: A) -> usize {
        self.starts.partition_point(|&s| s <= addr) - 1
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }
}

/// IPv6 ranges start on /64 boundaries (an address shifted right by this): half the memory of
/// full addresses, for databases whose networks are /64 or shorter, as most of published
/// ones are. A /64 that a database splits further is a [`SPLIT`] range of its own, which the
/// compiler answers as one when every point in it leads to the same region.
pub const V6_UNIT: u32 = 64;

/// The points of split IPv6 /64s, by `id - SPLIT`.
pub type Split = Vec<Box<[PointId]>>;

/// What steering asks of a client's location: the point that ranks regions by distance, and
/// the country and continent that geo-fences hold. 24 octets, as a bare point was before
/// places held more: a city database interns over half a million of them. The country is an
/// index into [`countries::COUNTRIES`] rather than its code (16 octets inline); the
/// coordinates stay `f64`, as the database gives them, so that a compiled decision is the
/// direct path's to the last bit.
#[derive(Clone, Copy, PartialEq, Default)]
pub struct Place {
    /// The point's coordinates; both 0 where there is no point.
    lat: f64,
    lon: f64,
    /// One more than the country's index in [`countries::COUNTRIES`]; 0 where there is none.
    country: u16,
    continent: Option<Continent>,
    has_point: bool,
}

impl Place {
    /// What steering asks of `location`.
    pub fn of(location: &super::Location) -> Place {
        let country = location.country.map_or(0, |code| {
            1 + countries::index(code).expect("a location's country is one of COUNTRIES")
        });
        let point = location.point.unwrap_or(GeoPoint { lat: 0.0, lon: 0.0 });
        Place {
            lat: point.lat,
            lon: point.lon,
            country,
            continent: location.continent,
            has_point: location.point.is_some(),
        }
    }

    pub fn point(self) -> Option<GeoPoint> {
        self.has_point.then_some(GeoPoint {
            lat: self.lat,
            lon: self.lon,
        })
    }

    /// The country's ISO 3166-1 alpha-2 code.
    pub fn country(self) -> Option<&'static str> {
        let i = usize::from(self.country.checked_sub(1)?);
        Some(countries::COUNTRIES[i].code)
    }

    pub fn continent(self) -> Option<Continent> {
        self.continent
    }

    /// What tells places apart, to the bit: interning keeps every distinct point, even
    /// `0.0` and `-0.0`.
    fn key(self) -> (u64, u64, u16, Option<Continent>, bool) {
        (
            self.lat.to_bits(),
            self.lon.to_bits(),
            self.country,
            self.continent,
            self.has_point,
        )
    }
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Place")
            .field("point", &self.point())
            .field("country", &self.country())
            .field("continent", &self.continent)
            .finish()
    }
}

/// Where every address is, as far as steering cares: a place, or none.
#[derive(Debug)]
pub struct LocationTable {
    /// Distinct places; index [`UNKNOWN`] knows nothing.
    pub places: Vec<Place>,
    pub v4: Ranges<u32>,
    pub v6: Ranges<u64>,
    /// The points of each IPv6 /64 that the database splits ([`SPLIT`]).
    pub split: Split,
    /// Networks the walk visited, for the log line.
    pub networks: usize,
}

impl LocationTable {
    /// Walks `geo` whole. Fails only on a damaged database, which the tree check refuses
    /// before it serves.
    pub fn build(geo: &GeoDb) -> Result<LocationTable, String> {
        let mut places = Places::default();
        let mut networks = 0;
        let mut place = |item: &LookupResult<'_, super::Source>, network: IpNet| {
            // As `locate` does: a record that does not decode is unknown.
            let place = match item.decode::<Record<'_>>() {
                Ok(Some(r)) => Place::of(&r.into_location(network)),
                _ => Place::default(),
            };
            places.intern(place)
        };
        let db = |bits: u32| geo.db_for(any(bits)).map(|d| &d.reader);
        // Each walk streams into its family's final form: with a city database, a 128-bit
        // copy of the ranges would be the build's largest allocation.
        let v4 = walk(db(32), 32, &mut networks, Narrow::default(), &mut place)?
            .0
            .finish();
        let v6 = walk(db(128), 128, &mut networks, Units::default(), &mut place)?.finish()?;
        let mut places = places.list;
        places.shrink_to_fit();
        Ok(LocationTable {
            places,
            v4,
            v6: v6.0,
            split: v6.1,
            networks,
        })
    }

    /// The place of `addr`; `None` where the table leaves it to the database (a split /64,
    /// IPv6 space the walk skips).
    pub fn place(&self, addr: IpAddr) -> Option<Place> {
        let id = match addr {
            IpAddr::V4(a) => self.v4.ids[self.v4.find(u32::from(a))],
            IpAddr::V6(a) => self.v6.ids[self.v6.find((u128::from(a) >> V6_UNIT) as u64)],
        };
        (id < SPLIT).then(|| self.places[id as usize])
    }

    /// The table's size in memory, for the log line.
    pub fn bytes(&self) -> usize {
        self.places.len() * std::mem::size_of::<Place>()
            + self.v4.len() * (4 + 4)
            + self.v6.len() * (8 + 4)
            + self.split.iter().map(|s| 16 + s.len() * 4).sum::<usize>()
    }
}

/// Places interned by [`Place::key`]. The table holds ids only (4 octets each, the places
/// themselves being in `list`), so this scratch stays small beside the table it builds.
struct Places {
    list: Vec<Place>,
    ids: hashbrown::HashTable<PointId>,
    hasher: std::hash::RandomState,
}

impl Default for Places {
    fn default() -> Self {
        let mut places = Places {
            list: Vec::new(),
            ids: hashbrown::HashTable::new(),
            hasher: std::hash::RandomState::new(),
        };
        let unknown = places.intern(Place::default());
        debug_assert_eq!(unknown, UNKNOWN);
        places
    }
}

impl Places {
    fn intern(&mut self, place: Place) -> PointId {
        let (list, hasher) = (&mut self.list, &self.hasher);
        let key = place.key();
        let found = self
            .ids
            .find(hasher.hash_one(key), |&id| list[id as usize].key() == key);
        if let Some(&id) = found {
            return id;
        }
        let id = PointId::try_from(list.len()).expect("fewer than 2^32 places");
        list.push(place);
        self.ids.insert_unique(hasher.hash_one(key), id, |&id| {
            hasher.hash_one(list[id as usize].key())
        });
        id
    }
}

/// The unspecified address of a `bits`-wide family.
fn any(bits: u32) -> IpAddr {
    if bits == 32 {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    }
}

/// The ranges of one family (`bits` 32 or 128) of `db`, in 128-bit arithmetic, pushed into
/// `sink`; `id_of` gives a record's id, asked once per record (many networks share one).
fn walk<R: AsRef<[u8]>, S: Sink>(
    db: Option<&Reader<R>>,
    bits: u32,
    networks: &mut usize,
    sink: S,
    id_of: &mut impl FnMut(&LookupResult<'_, R>, IpNet) -> PointId,
) -> Result<S, String> {
    let mut out = Overlay::new(bits, sink);
    let Some(db) = db else {
        // No database for this family: every such client is unknown.
        out.push(0, UNKNOWN);
        return Ok(out.finish());
    };
    let all = ipnetwork::IpNetwork::new(any(bits), 0).map_err(|e| e.to_string())?;
    let options = maxminddb::WithinOptions::default().include_networks_without_data();
    // The first address not covered yet; None once the walk reached the end of the space.
    let mut next = Some(0u128);
    let mut prev: (Option<usize>, PointId) = (None, UNKNOWN);
    let mut by_offset: HashMap<usize, PointId> = HashMap::new();
    for item in db.within(all, options).map_err(|e| e.to_string())? {
        let item = item.map_err(|e| e.to_string())?;
        let net = item.network().map_err(|e| e.to_string())?;
        let (start, last) = span(net.ip(), net.prefix(), bits);
        match next {
            Some(n) if start >= n => {
                // Skipped by the walk: an alias of the IPv4 tree.
                if start > n {
                    out.push(n, DIRECT);
                }
            }
            _ => return Err(format!("networks out of order at {net}")),
        }
        let id = match item.offset() {
            None => UNKNOWN,
            // Neighbouring networks often share a record.
            Some(offset) if prev.0 == Some(offset) => prev.1,
            Some(offset) => match by_offset.get(&offset) {
                Some(&id) => id,
                None => {
                    let network = IpNet::new(net.ip(), net.prefix()).map_err(|e| e.to_string())?;
                    let id = id_of(&item, network);
                    by_offset.insert(offset, id);
                    id
                }
            },
        };
        prev = (item.offset(), id);
        out.push(start, id);
        *networks += 1;
        next = last
            .checked_add(1)
            .filter(|&n| n <= u128::MAX >> (128 - bits));
    }
    if let Some(n) = next {
        out.push(n, DIRECT);
    }
    Ok(out.finish())
}

/// The embedded ASN database's ranges for both families, by interned AS (an index into
/// [`AsnRanges::numbers`]; [`UNKNOWN`] where no AS is known, as in special-purpose space,
/// which `locate` gives no AS; [`DIRECT`] where the walk skips an alias of the IPv4 tree).
#[derive(Debug)]
pub struct AsnRanges {
    /// AS numbers by id; id [`UNKNOWN`] holds none (0, never read).
    pub numbers: Vec<u32>,
    pub v4: Ranges<u32>,
    /// Full addresses: an AS's network may be longer than a /64.
    pub v6: Ranges<u128>,
}

impl AsnRanges {
    /// Walks `db` whole; fails only on a damaged database.
    pub fn build<R: AsRef<[u8]>>(db: &Reader<R>) -> Result<AsnRanges, String> {
        #[derive(serde::Deserialize)]
        struct Number {
            autonomous_system_number: Option<u32>,
        }
        let mut numbers = vec![0];
        let mut ids: HashMap<u32, PointId> = HashMap::new();
        let mut networks = 0;
        // As `AsnDb::lookup` does: a record without a number, or that does not decode, is
        // no AS.
        let mut id_of = |item: &LookupResult<'_, R>, _: IpNet| match item.decode::<Number>() {
            Ok(Some(Number {
                autonomous_system_number: Some(n),
            })) => *ids.entry(n).or_insert_with(|| {
                numbers.push(n);
                PointId::try_from(numbers.len() - 1).expect("fewer than 2^32 ASes")
            }),
            _ => UNKNOWN,
        };
        let v4 = walk(Some(db), 32, &mut networks, Narrow::default(), &mut id_of)?
            .0
            .finish();
        let v6 = walk(Some(db), 128, &mut networks, Wide::default(), &mut id_of)?
            .0
            .finish();
        Ok(AsnRanges { numbers, v4, v6 })
    }

    /// The AS number of range id `id`, if any.
    pub fn number(&self, id: PointId) -> Option<u32> {
        (id != UNKNOWN && id != DIRECT).then(|| self.numbers[id as usize])
    }
}

/// The first and last address of a network, as a `bits`-wide family sees it: an IPv4
/// network in an IPv6 walk is the IPv4-compatible `::a.b.c.d`; an IPv6 network in an IPv4
/// walk (an IPv6 database without an IPv4 tree) holds the whole IPv4 space.
fn span(ip: IpAddr, prefix: u8, bits: u32) -> (u128, u128) {
    let (start, prefix) = match ip {
        IpAddr::V4(a) if bits == 128 => (u128::from(u32::from(a)), u32::from(prefix) + 96),
        IpAddr::V4(a) => (u128::from(u32::from(a)), u32::from(prefix)),
        IpAddr::V6(_) if bits == 32 => (0, 0),
        IpAddr::V6(a) => (u128::from(a), u32::from(prefix)),
    };
    let host_bits = bits - prefix.min(bits);
    let size_less_one = if host_bits == 0 {
        0
    } else {
        u128::MAX >> (128 - host_bits)
    };
    (start, start + size_less_one)
}

/// Where a walk's ranges go, in order of their starts.
trait Sink {
    fn push(&mut self, start: u128, id: PointId);
}

/// IPv6 ranges of full addresses.
#[derive(Default)]
struct Wide(Builder<u128>);

impl Sink for Wide {
    fn push(&mut self, start: u128, id: PointId) {
        self.0.push(start, id);
    }
}

/// IPv4 ranges, narrowed to 32 bits as they come.
#[derive(Default)]
struct Narrow(Builder<u32>);

impl Sink for Narrow {
    fn push(&mut self, start: u128, id: PointId) {
        let start = u32::try_from(start).expect("IPv4 starts fit in 32 bits");
        self.0.push(start, id);
    }
}

/// IPv6 ranges in [`V6_UNIT`]s: a unit in which more than one range starts becomes a
/// [`SPLIT`] range holding the ids of every range that meets it, and the next unit starts
/// with the range that covers its first address. The ranges of one unit are held until the
/// first range of a later unit arrives.
#[derive(Default)]
struct Units {
    out: Builder<u64>,
    split: Split,
    /// The ranges starting in the unit being read.
    unit: Vec<(u128, PointId)>,
    /// The id of the range before them, which covers the unit's first address unless one
    /// of them starts on it.
    before: PointId,
    too_many_splits: bool,
}

fn unit_of(a: u128) -> u64 {
    u64::try_from(a >> V6_UNIT).expect("units fit in 64 bits")
}

impl Units {
    /// Ends the unit being read, `next` being the start of the range after it.
    fn close(&mut self, next: Option<u128>) {
        let Some(&(first, _)) = self.unit.first() else {
            return;
        };
        let aligned = first & (u128::MAX >> V6_UNIT) == 0;
        let u = unit_of(first);
        let last = self.unit[self.unit.len() - 1].1;
        if self.unit.len() == 1 && aligned {
            self.out.replace(u, last);
        } else {
            match PointId::try_from(self.split.len())
                .ok()
                .filter(|&k| k < DIRECT - SPLIT)
            {
                Some(k) => {
                    let before = (!aligned).then_some(self.before);
                    let ids = before.into_iter().chain(self.unit.iter().map(|r| r.1));
                    self.split.push(ids.collect());
                    self.out.replace(u, SPLIT + k);
                }
                None => self.too_many_splits = true,
            }
        }
        // The next unit begins inside the last range of this one, unless a range starts on it
        // (a later `replace` supersedes this one when a range starts inside it).
        if u < u64::MAX && next.is_none_or(|n| n != u128::from(u + 1) << V6_UNIT) {
            self.out.replace(u + 1, last);
        }
        self.before = last;
        self.unit.clear();
    }

    fn finish(mut self) -> Result<(Ranges<u64>, Split), String> {
        self.close(None);
        if self.too_many_splits {
            return Err("too many split IPv6 /64s".into());
        }
        self.split.shrink_to_fit();
        Ok((self.out.finish(), self.split))
    }
}

impl Sink for Units {
    fn push(&mut self, start: u128, id: PointId) {
        if self
            .unit
            .first()
            .is_some_and(|&(s, _)| unit_of(s) != unit_of(start))
        {
            self.close(Some(start));
        }
        self.unit.push((start, id));
    }
}

/// Ranges being built: consecutive equal ids merge.
struct Builder<A> {
    starts: Vec<A>,
    ids: Vec<PointId>,
}

impl<A> Default for Builder<A> {
    fn default() -> Self {
        Builder {
            starts: Vec::new(),
            ids: Vec::new(),
        }
    }
}

impl<A: PartialEq> Builder<A> {
    fn push(&mut self, start: A, id: PointId) {
        if self.ids.last() != Some(&id) {
            self.starts.push(start);
            self.ids.push(id);
        }
    }

    /// [`Builder::push`], but a range that starts where the last one does replaces it.
    fn replace(&mut self, start: A, id: PointId) {
        if self.starts.last() == Some(&start) {
            self.starts.pop();
            self.ids.pop();
        }
        self.push(start, id);
    }

    /// The ranges, holding no more memory than they fill: they are kept as long as the
    /// database.
    fn finish(mut self) -> Ranges<A> {
        self.starts.shrink_to_fit();
        self.ids.shrink_to_fit();
        Ranges {
            starts: self.starts,
            ids: self.ids,
        }
    }
}

/// Ranges being built with special-purpose space made unknown, as `locate` treats it
/// whatever the database says. Each range is cut by the blocks it meets once the next one
/// starts, so the walk's ranges are never held twice.
struct Overlay<S> {
    /// The family's blocks as sorted, merged [first, last] intervals.
    blocks: Vec<(u128, u128)>,
    /// The first block that may still meet a range.
    block: usize,
    /// The last range pushed, whose end is not known yet.
    pending: Option<(u128, PointId)>,
    /// The id of the last range passed on: equal neighbours merge before `out` sees them.
    emitted: Option<PointId>,
    max: u128,
    out: S,
}

impl<S: Sink> Overlay<S> {
    fn new(bits: u32, out: S) -> Overlay<S> {
        let mut blocks: Vec<(u128, u128)> = SPECIAL_BLOCKS
            .iter()
            .filter_map(|b| match (b, bits) {
                (IpNet::V4(n), 32) => Some((
                    u128::from(u32::from(n.network())),
                    u128::from(u32::from(n.broadcast())),
                )),
                (IpNet::V6(n), 128) => Some((u128::from(n.network()), u128::from(n.broadcast()))),
                _ => None,
            })
            .collect();
        blocks.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::new();
        for (first, last) in blocks {
            match merged.last_mut() {
                Some(m) if first <= m.1.saturating_add(1) => m.1 = m.1.max(last),
                _ => merged.push((first, last)),
            }
        }
        Overlay {
            blocks: merged,
            block: 0,
            pending: None,
            emitted: None,
            max: u128::MAX >> (128 - bits),
            out,
        }
    }

    /// A range from `start` (above every earlier start) to the next one pushed.
    fn push(&mut self, start: u128, id: PointId) {
        match self.pending {
            Some((_, pending)) if pending == id => {}
            Some((at, pending)) => {
                self.cut(at, start - 1, pending);
                self.pending = Some((start, id));
            }
            None => self.pending = Some((start, id)),
        }
    }

    /// Pushes [`at`, `last`] as `id`, but the parts of it inside a block as unknown.
    fn cut(&mut self, mut at: u128, last: u128, id: PointId) {
        while at <= last {
            while self.blocks.get(self.block).is_some_and(|b| b.1 < at) {
                self.block += 1;
            }
            match self.blocks.get(self.block) {
                Some(&(first, end)) if first <= last => {
                    if first > at {
                        self.emit(at, id);
                    }
                    self.emit(first.max(at), UNKNOWN);
                    if end >= last {
                        return;
                    }
                    at = end + 1;
                }
                _ => {
                    self.emit(at, id);
                    return;
                }
            }
        }
    }

    fn emit(&mut self, start: u128, id: PointId) {
        if self.emitted != Some(id) {
            self.emitted = Some(id);
            self.out.push(start, id);
        }
    }

    fn finish(mut self) -> S {
        if let Some((at, id)) = self.pending.take() {
            self.cut(at, self.max, id);
        }
        self.out
    }
}

#[cfg(test)]
mod tests;
