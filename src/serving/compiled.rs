//! Steering compiled ahead of queries, as gdnsd compiles its maps: for every steered name and
//! family, the client's address gives the answering region and the ECS scope in one binary
//! search, whatever the number of regions and however many client networks there are.
//!
//! The rule: a compiled zone belongs to one set of zones, one GeoIP database and one health
//! view of that zone; a change to any of them leaves the zone uncompiled in the next snapshot
//! (see [`super::Snapshot`]), and until the control plane's compiler has built it again,
//! queries take the direct path (locate, then `steer::decide`), which answers the same region
//! with the database network as scope. So every answer is exact at every moment; only the
//! width of the scope waits for the compiler.
//!
//! Why compile per health view rather than per distance ranking (gdnsd's way): the ranking
//! adds each region's measured degradation to the distance, so two clients with the same
//! order of distances can still be answered by different regions; a table of decisions made
//! under the current view is exact, and recompiling is a sequential scan of the location
//! table ([`crate::geo::table`]), which was walked from the database once.

use std::collections::HashMap;
use std::sync::Arc;

use ipnet::IpNet;

use super::answer::{Client, Spread};
use crate::geo::table::{self, LocationTable, PointId, Ranges};
use crate::steer::{self, Decision, Family, HealthView, RegionId};
use crate::zone::Zone;

/// What steering comes to for a client, but the scope: what the fast path keys its cached
/// answers by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steering {
    pub region: Option<RegionId>,
    pub spread: Spread,
    pub ttl: u32,
}

impl Steering {
    /// The steering of `decision`, for `family`.
    pub fn of(
        decision: &Decision,
        zone: &Zone,
        config: &steer::SteeredName,
        view: &HealthView,
        family: Family,
    ) -> Steering {
        Steering {
            region: decision.chosen,
            spread: Spread::of(&decision.endpoints(config, &zone.regions, view, family)),
            ttl: decision.ttl,
        }
    }
}

/// A zone's steered names, compiled: by steered name index, then IPv4 and IPv6 endpoints.
#[derive(Debug)]
pub struct ZoneSteering {
    names: Vec<[NameSteering; 2]>,
}

#[derive(Debug)]
enum NameSteering {
    /// The name has network, ASN, fence or split rules, which ask more of a client than the
    /// location table holds, or answers with several regions, which one class cannot name:
    /// every query takes the direct path.
    Direct,
    /// Every client gets the same answer (one region up, failover order, every region down):
    /// scope 0.
    Uniform(Steering),
    /// The client's location decides: its run's class is an index into `classes`.
    ByClient {
        runs: Arc<SetRuns>,
        classes: Box<[Steering]>,
    },
}

/// Runs of addresses answered by the same region of one region set, for both address
/// families of clients.
#[derive(Debug)]
struct SetRuns {
    v4: Runs<u32>,
    /// In /64s, as the location table counts IPv6.
    v6: Runs<u64>,
}

/// A class for addresses the location table does not speak for: the direct path answers.
const DIRECT: u16 = u16::MAX;

#[derive(Debug)]
struct Runs<A> {
    /// By start. A run's class sits beside its start, so the lookup that found the start
    /// finds the class in the same cache line.
    runs: Vec<Run<A>>,
    /// `index[t]`: how many runs start before the block whose top 16 bits are `t`. A lookup
    /// searches only the runs of its own block (a few, in one or two cache lines) instead of
    /// the whole table, whose upper levels miss the cache once the table is large.
    index: Box<[u32]>,
}

#[derive(Debug, Clone, Copy)]
struct Run<A> {
    start: A,
    /// Position of the answering region in the set's region list, or [`DIRECT`].
    class: u16,
}

/// Blocks of [`Runs::index`]: the top 16 bits of a start.
const INDEX_BITS: u32 = 16;

impl<A: Copy + Ord + Into<u128> + TryFrom<u128>> Runs<A> {
    /// The class of `addr` (a `bits`-wide address; starts count units of `2^shift`
    /// addresses) and the shortest prefix (at least 1) around it whose every address is in
    /// the same run: every client there gets the same answer.
    fn find(&self, addr: u128, shift: u32, bits: u8) -> (u16, u8) {
        let key = Self::key(addr, shift, bits);
        let block = Self::block(key);
        let (lo, hi) = (self.index[block] as usize, self.index[block + 1] as usize);
        // The run holding `key` is the last one starting at or before it: among the block's
        // own runs, or the one before them (the first run starts at 0, so it exists).
        let i = lo + self.runs[lo..hi].partition_point(|r| r.start <= key) - 1;
        let first = self.runs[i].start.into() << shift;
        let last = self
            .runs
            .get(i + 1)
            .map_or(u128::MAX >> (128 - u32::from(bits)), |n| {
                (n.start.into() << shift) - 1
            });
        (self.runs[i].class, widest(addr, first, last, bits))
    }

    /// Asks the CPU to fetch the index entry that [`Runs::find`] will read for `addr`, so
    /// that a batch of queries waits for its cache misses together rather than one by one.
    fn prefetch(&self, addr: u128, shift: u32, bits: u8) {
        let block = Self::block(Self::key(addr, shift, bits));
        crate::prefetch::read(&self.index[block]);
    }

    fn key(addr: u128, shift: u32, bits: u8) -> A {
        let Ok(key) = A::try_from(addr >> shift) else {
            unreachable!("a {bits}-bit address in units of 2^{shift} fits its starts")
        };
        key
    }

    /// The top [`INDEX_BITS`] of a start or key.
    fn block(key: A) -> usize {
        let bits = 8 * std::mem::size_of::<A>() as u32;
        (key.into() >> (bits - INDEX_BITS)) as usize
    }

    /// `runs` (by start, the first at 0), indexed.
    fn new(runs: Vec<Run<A>>) -> Self {
        let mut index = Vec::with_capacity((1 << INDEX_BITS) + 1);
        let mut before = 0;
        for block in 0..=(1usize << INDEX_BITS) {
            before += runs[before..]
                .iter()
                .take_while(|r| Self::block(r.start) < block)
                .count();
            index.push(u32::try_from(before).expect("fewer than 2^32 runs"));
        }
        Runs {
            runs,
            index: index.into(),
        }
    }

    fn bytes(&self) -> usize {
        self.runs.len() * std::mem::size_of::<Run<A>>() + self.index.len() * 4
    }
}

/// The smallest prefix length `p` in 1..=`bits` whose block around `x` lies within
/// [`first`, `last`] (which holds `x`); blocks shrink as `p` grows, so a binary search finds it.
fn widest(x: u128, first: u128, last: u128, bits: u8) -> u8 {
    let within = |p: u8| {
        let host = u32::from(bits - p);
        let mask = if host == 0 {
            0
        } else {
            u128::MAX >> (128 - host)
        };
        x & !mask >= first && x | mask <= last
    };
    let (mut lo, mut hi) = (1u8, bits);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if within(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// The compiled answer for a client: its steering and the ECS scope to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compiled {
    pub steering: Steering,
    pub scope: u8,
}

impl ZoneSteering {
    /// The compiled answer of steered name `steered` for `client`, or `None` where the table
    /// does not speak for the client's address (the direct path answers).
    pub fn steer(&self, steered: usize, family: Family, client: Client) -> Option<Compiled> {
        let name = &self.names.get(steered)?[family_index(family)];
        let (runs, classes) = match name {
            NameSteering::Direct => return None,
            NameSteering::Uniform(steering) => {
                return Some(Compiled {
                    steering: *steering,
                    scope: 0,
                });
            }
            NameSteering::ByClient { runs, classes } => (runs, classes),
        };
        let network = client.network().trunc();
        let (class, widest) = match network {
            IpNet::V4(n) => runs.v4.find(u128::from(u32::from(n.addr())), 0, 32),
            IpNet::V6(n) => runs.v6.find(u128::from(n.addr()), table::V6_UNIT, 128),
        };
        let steering = *classes.get(usize::from(class))?;
        let scope = match client {
            Client::Subnet { network } => widest.min(network.prefix_len()),
            Client::Resolver { .. } => 0,
        };
        Some(Compiled { steering, scope })
    }

    /// Fetches ahead what [`ZoneSteering::steer`] will read first for this query.
    pub fn prefetch(&self, steered: usize, family: Family, client: Client) {
        let Some(NameSteering::ByClient { runs, .. }) =
            self.names.get(steered).map(|n| &n[family_index(family)])
        else {
            return;
        };
        match client.network().trunc() {
            IpNet::V4(n) => runs.v4.prefetch(u128::from(u32::from(n.addr())), 0, 32),
            IpNet::V6(n) => runs.v6.prefetch(u128::from(n.addr()), table::V6_UNIT, 128),
        }
    }

    /// Memory held by this zone's tables, each shared set of runs counted once.
    pub fn bytes(&self) -> usize {
        let mut seen: Vec<*const SetRuns> = Vec::new();
        let mut total = 0;
        for name in self.names.iter().flatten() {
            if let NameSteering::ByClient { runs, .. } = name
                && !seen.contains(&Arc::as_ptr(runs))
            {
                seen.push(Arc::as_ptr(runs));
                total += runs.v4.bytes() + runs.v6.bytes();
            }
        }
        total
    }
}

fn family_index(family: Family) -> usize {
    match family {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

/// Compiles every steered name of `zone` under `view`. `table` is asked for only when a name's
/// answer depends on the client; names with the same regions, default region and usable
/// endpoints of the queried family share one set of runs ([`SetKey`]).
pub fn compile<'t>(
    zone: &Zone,
    view: &HealthView,
    table: impl FnOnce() -> Result<&'t LocationTable, String>,
) -> Result<ZoneSteering, String> {
    let mut table = Some(table);
    let mut loaded: Option<&LocationTable> = None;
    let mut sets: HashMap<SetKey<'_>, (Arc<SetRuns>, Vec<Option<PointId>>)> = HashMap::new();
    let mut names = Vec::with_capacity(zone.steered.len());
    for steered in &zone.steered {
        let config = &steered.config;
        let mut compile_family = |family: Family| -> Result<NameSteering, String> {
            if !config.rules.is_empty() || config.multivalue.is_some() {
                return Ok(NameSteering::Direct);
            }
            let any = steer::decide(None, config, &zone.regions, view, family);
            if !any.depends_on_client {
                return Ok(NameSteering::Uniform(Steering::of(
                    &any, zone, config, view, family,
                )));
            }
            let t = match loaded {
                Some(t) => t,
                None => {
                    let build = table.take().expect("the table is asked for once");
                    *loaded.insert(build()?)
                }
            };
            // The family matters only through which regions have endpoints of it up: with
            // both families up everywhere, A and AAAA share one set of runs.
            let usable = config
                .regions
                .iter()
                .map(|&id| {
                    zone.regions[id]
                        .up_endpoints(id, view, family)
                        .next()
                        .is_some()
                })
                .collect();
            let bias = config
                .bias_km
                .iter()
                .map(|&(r, km)| (r, km.to_bits()))
                .collect();
            let key = (
                config.regions.as_slice(),
                config.default_region,
                usable,
                bias,
            );
            let (runs, representatives) = sets
                .entry(key)
                .or_insert_with(|| compile_set(t, zone, config, view, family));
            let classes = representatives
                .iter()
                .map(|rep| {
                    // A region no location chooses gets no class in a run: any steering does.
                    let point = rep.and_then(|p| t.points[p as usize]);
                    let decision = steer::decide(point, config, &zone.regions, view, family);
                    Steering::of(&decision, zone, config, view, family)
                })
                .collect();
            Ok(NameSteering::ByClient {
                runs: runs.clone(),
                classes,
            })
        };
        names.push([compile_family(Family::V4)?, compile_family(Family::V6)?]);
    }
    Ok(ZoneSteering { names })
}

/// What a region set's runs depend on besides the zone and its health: the name's regions
/// (whose order breaks ties), its default region (for unknown locations), which of them
/// have endpoints of the queried family up, and their biases (as bits, to be hashed).
type SetKey<'z> = (&'z [RegionId], RegionId, Vec<bool>, Vec<(RegionId, u64)>);

/// The runs of one region set, and for each of its regions a point that it answers.
fn compile_set(
    table: &LocationTable,
    zone: &Zone,
    config: &steer::SteeredName,
    view: &HealthView,
    family: Family,
) -> (Arc<SetRuns>, Vec<Option<PointId>>) {
    const UNSET: u16 = u16::MAX - 1;
    let mut class_of = vec![UNSET; table.points.len()];
    let mut representatives = vec![None; config.regions.len()];
    let mut plain = |id: PointId| -> u16 {
        if id == table::DIRECT {
            return DIRECT;
        }
        let slot = &mut class_of[id as usize];
        if *slot == UNSET {
            let point = table.points[id as usize];
            let chosen = steer::chosen(point, config, &zone.regions, view, family)
                .expect("a name with two regions up always has an answer");
            let position = config
                .regions
                .iter()
                .position(|&r| r == chosen)
                .expect("the chosen region is one of the name's");
            representatives[position].get_or_insert(id);
            *slot = u16::try_from(position).expect("fewer than 65,534 regions per name");
        }
        *slot
    };
    // A /64 the database splits is answered as one where all its pieces agree.
    let mut class = |id: PointId| -> u16 {
        if id < table::SPLIT || id == table::DIRECT {
            return plain(id);
        }
        let pieces = &table.split[(id - table::SPLIT) as usize];
        let first = plain(pieces[0]);
        if pieces[1..].iter().all(|&p| plain(p) == first) {
            first
        } else {
            DIRECT
        }
    };
    let v4 = runs(&table.v4, &mut class);
    let v6 = runs(&table.v6, &mut class);
    (Arc::new(SetRuns { v4, v6 }), representatives)
}

/// `ranges` by class, neighbours of the same class merged.
fn runs<A: Copy + Ord + Into<u128> + TryFrom<u128>>(
    ranges: &Ranges<A>,
    class: &mut impl FnMut(PointId) -> u16,
) -> Runs<A> {
    let mut runs: Vec<Run<A>> = Vec::new();
    for (&start, &id) in ranges.starts.iter().zip(&ranges.ids) {
        let class = class(id);
        if runs.last().is_none_or(|r| r.class != class) {
            runs.push(Run { start, class });
        }
    }
    Runs::new(runs)
}

#[cfg(test)]
mod tests;
