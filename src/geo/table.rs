//! The whole address space of each family as sorted ranges, each with an index into a list of
//! distinct points: the database walked once, neighbouring networks with the same point
//! merged, special-purpose space unknown (as [`GeoDb::locate`] places it).
//!
//! The rule: every address the table speaks for gets the point that `locate` gives it, so a
//! decision compiled from the table is the decision the direct path makes. Where the table
//! cannot say (IPv4 data reached through an IPv6 alias, 6to4 or Teredo, which the walk skips),
//! the range is [`DIRECT`] and a query there takes the direct path. Steering compiles from
//! this table (`serving::compiled`) in a sequential scan, without touching the database again.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::{GeoDb, Record, SPECIAL_BLOCKS};
use crate::steer::GeoPoint;

/// Index into [`LocationTable::points`].
pub type PointId = u32;
/// No location: gaps in the database, special-purpose space, records without a point.
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

/// Where every address is, as far as steering cares: a point or none.
#[derive(Debug)]
pub struct LocationTable {
    /// Distinct points; index [`UNKNOWN`] holds `None`.
    pub points: Vec<Option<GeoPoint>>,
    pub v4: Ranges<u32>,
    pub v6: Ranges<u64>,
    /// The points of each IPv6 /64 that the database splits ([`SPLIT`]).
    pub split: Vec<Box<[PointId]>>,
    /// Networks the walk visited, for the log line.
    pub networks: usize,
}

impl LocationTable {
    /// Walks `geo` whole. Fails only on a damaged database, which the tree check refuses
    /// before it serves.
    pub fn build(geo: &GeoDb) -> Result<LocationTable, String> {
        let mut points = Points::default();
        let mut networks = 0;
        let v4 = walk(geo, 32, &mut points, &mut networks)?;
        let v6 = walk(geo, 128, &mut points, &mut networks)?;
        let narrow = |r: Ranges<u128>| Ranges {
            starts: r
                .starts
                .iter()
                .map(|&s| u32::try_from(s).expect("IPv4 starts fit in 32 bits"))
                .collect(),
            ids: r.ids,
        };
        let mut split = Vec::new();
        let v6 = in_units(v6, &mut split)?;
        Ok(LocationTable {
            points: points.list,
            v4: narrow(v4),
            v6,
            split,
            networks,
        })
    }

    /// The table's size in memory, for the log line.
    pub fn bytes(&self) -> usize {
        self.points.len() * std::mem::size_of::<Option<GeoPoint>>()
            + self.v4.len() * (4 + 4)
            + self.v6.len() * (8 + 4)
            + self.split.iter().map(|s| 16 + s.len() * 4).sum::<usize>()
    }
}

/// Points interned by their bits, and database records by offset (many networks share one).
struct Points {
    list: Vec<Option<GeoPoint>>,
    by_bits: HashMap<(u64, u64), PointId>,
    by_offset: HashMap<usize, PointId>,
}

impl Default for Points {
    fn default() -> Self {
        Points {
            list: vec![None],
            by_bits: HashMap::new(),
            by_offset: HashMap::new(),
        }
    }
}

impl Points {
    fn intern(&mut self, point: Option<GeoPoint>) -> PointId {
        let Some(p) = point else {
            return UNKNOWN;
        };
        let next = PointId::try_from(self.list.len()).expect("fewer than 2^32 points");
        let id = *self
            .by_bits
            .entry((p.lat.to_bits(), p.lon.to_bits()))
            .or_insert(next);
        if id == next {
            self.list.push(Some(p));
        }
        id
    }
}

/// The ranges of one family (`bits` 32 or 128), in 128-bit arithmetic.
fn walk(
    geo: &GeoDb,
    bits: u32,
    points: &mut Points,
    networks: &mut usize,
) -> Result<Ranges<u128>, String> {
    let mut out = Builder::default();
    let any: IpAddr = if bits == 32 {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    let Some(db) = geo.db_for(any) else {
        // No database for this family: every such client is unknown.
        out.push(0, UNKNOWN);
        return Ok(overlay_special(out.finish(), bits));
    };
    let all = ipnetwork::IpNetwork::new(any, 0).map_err(|e| e.to_string())?;
    let options = maxminddb::WithinOptions::default().include_networks_without_data();
    // The first address not covered yet; None once the walk reached the end of the space.
    let mut next = Some(0u128);
    let mut prev: (Option<usize>, PointId) = (None, UNKNOWN);
    for item in db.reader.within(all, options).map_err(|e| e.to_string())? {
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
            Some(offset) => match points.by_offset.get(&offset) {
                Some(&id) => id,
                None => {
                    let network = IpNet::new(net.ip(), net.prefix()).map_err(|e| e.to_string())?;
                    // As `locate` does: a record that does not decode is unknown.
                    let point = match item.decode::<Record<'_>>() {
                        Ok(Some(r)) => r.into_location(network).point,
                        _ => None,
                    };
                    let id = points.intern(point);
                    points.by_offset.insert(offset, id);
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
    Ok(overlay_special(out.finish(), bits))
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

/// IPv6 `ranges` in [`V6_UNIT`]s: a unit in which more than one range starts becomes a
/// [`SPLIT`] range holding the ids of every range that meets it (appended to `split`), and
/// the next unit starts with the range that covers its first address.
fn in_units(ranges: Ranges<u128>, split: &mut Vec<Box<[PointId]>>) -> Result<Ranges<u64>, String> {
    let unit = |a: u128| a >> V6_UNIT;
    let aligned = |a: u128| a & (u128::MAX >> V6_UNIT) == 0;
    let (starts, ids) = (&ranges.starts, &ranges.ids);
    let mut out = Builder::default();
    let mut i = 0;
    while i < starts.len() {
        let u = unit(starts[i]);
        let j = i + starts[i..].iter().take_while(|&&s| unit(s) == u).count();
        if j - i == 1 && aligned(starts[i]) {
            out.replace(u, ids[i]);
        } else {
            // The range that covers the unit's first address began before it, unless the
            // first range of the unit starts on it (`starts[0]` is 0, so `i` > 0 otherwise).
            let first = if aligned(starts[i]) { i } else { i - 1 };
            let k = PointId::try_from(split.len())
                .ok()
                .filter(|&k| k < DIRECT - SPLIT)
                .ok_or("too many split IPv6 /64s")?;
            split.push(ids[first..j].into());
            out.replace(u, SPLIT + k);
        }
        // The next unit begins inside the last range of this one, unless a range starts on it
        // (a later `replace` supersedes this one when a range starts inside it).
        if u < unit(u128::MAX) && starts.get(j).is_none_or(|&n| n != (u + 1) << V6_UNIT) {
            out.replace(u + 1, ids[j - 1]);
        }
        i = j;
    }
    let finished = out.finish();
    Ok(Ranges {
        starts: finished
            .starts
            .into_iter()
            .map(|s| u64::try_from(s).expect("units fit in 64 bits"))
            .collect(),
        ids: finished.ids,
    })
}

/// Ranges being built: consecutive equal ids merge.
#[derive(Default)]
struct Builder {
    starts: Vec<u128>,
    ids: Vec<PointId>,
}

impl Builder {
    fn push(&mut self, start: u128, id: PointId) {
        if self.ids.last() != Some(&id) {
            self.starts.push(start);
            self.ids.push(id);
        }
    }

    /// [`Builder::push`], but a range that starts where the last one does replaces it.
    fn replace(&mut self, start: u128, id: PointId) {
        if self.starts.last() == Some(&start) {
            self.starts.pop();
            self.ids.pop();
        }
        self.push(start, id);
    }

    fn finish(self) -> Ranges<u128> {
        Ranges {
            starts: self.starts,
            ids: self.ids,
        }
    }
}

/// `ranges` with special-purpose space made unknown, as `locate` treats it whatever the
/// database says.
fn overlay_special(ranges: Ranges<u128>, bits: u32) -> Ranges<u128> {
    let max = u128::MAX >> (128 - bits);
    // The blocks of this family as sorted, merged [first, last] intervals.
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
    let mut out = Builder::default();
    let mut block = merged.iter().peekable();
    for i in 0..ranges.starts.len() {
        let (mut at, id) = (ranges.starts[i], ranges.ids[i]);
        let last = ranges.starts.get(i + 1).map_or(max, |&n| n - 1);
        // Cut [at, last] by every block that meets it.
        while at <= last {
            while block.peek().is_some_and(|b| b.1 < at) {
                block.next();
            }
            match block.peek() {
                Some(&&(first, end)) if first <= last => {
                    if first > at {
                        out.push(at, id);
                    }
                    out.push(first.max(at), UNKNOWN);
                    if end >= last {
                        break;
                    }
                    at = end + 1;
                }
                _ => {
                    out.push(at, id);
                    break;
                }
            }
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests;
