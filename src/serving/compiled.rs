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
//! Names with rules compile too ([`Ruled`]): geo-fences act per place (the location table
//! interns country and continent with the point), bias ranks at compile time, network and
//! ASN rules become a small per-name range table consulted beside the runs, a weighted split
//! is hashed after the lookup among the regions its class names, and multivalue answers are
//! classes like any other. No per-client-network state but for the networks the latency map
//! measured, each decided once per name and family and laid over the runs ([`measured`]).
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
use crate::geo::table::{self, AsnRanges, LocationTable, PointId, Ranges};
use crate::latency::LatencyTable;
use crate::steer::rules::{self, ClientFacts, SPLIT_PREFIX_V4, SPLIT_PREFIX_V6};
use crate::steer::{self, Decision, Family, HealthView, RegionId};
use crate::zone::Zone;

/// What steering comes to for a client, but the scope: what the fast path keys its cached
/// answers by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Steering {
    pub region: Option<RegionId>,
    /// The regions answering beside `region` (multivalue).
    pub also: Also,
    pub spread: Spread,
    pub ttl: u32,
}

impl Steering {
    /// The steering of `decision`, for `family`; `also` is its [`Decision::also`] interned.
    pub fn of(
        decision: &Decision,
        zone: &Zone,
        config: &steer::SteeredName,
        view: &HealthView,
        family: Family,
        also: Also,
    ) -> Steering {
        Steering {
            region: decision.chosen,
            also,
            spread: Spread::of(&decision.endpoints(config, &zone.regions, view, family)),
            ttl: decision.ttl,
        }
    }
}

/// The regions a multivalue answer holds beside the chosen one, best first, as the number a
/// zone's compiled steering gives that list ([`ZoneSteering::also`]): a cached answer's key
/// names its region set in four octets, which fit the padding of [`Steering`] and of the
/// fast path's variant, so a one-region answer's key is no bigger. The lists are those the
/// compiled classes and the measured networks' answers hold ([`measured`]), fixed when they
/// compile: memory does not grow with clients, and an answer whose list neither holds is
/// not cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Also(u32);

impl Also {
    /// No region beside the chosen one, in every zone, compiled or not.
    pub const NONE: Also = Also(0);
    /// A list the compiled steering does not know: no cached answer has it.
    pub const UNKNOWN: Also = Also(u32::MAX);

    pub fn id(self) -> u32 {
        self.0
    }
}

/// A zone's steered names, compiled: by steered name index, then IPv4 and IPv6 endpoints;
/// with the answers of the networks the latency map measured laid over them ([`measured`]).
#[derive(Debug)]
pub struct ZoneSteering {
    /// Shared with the steering that a new latency map's overlay replaces.
    names: Arc<[[NameSteering; 2]]>,
    /// Every multivalue list of `names`' classes, by its number.
    classes_also: Arc<Interned>,
    /// `classes_also` and the lists of `measured`'s answers.
    also: Interned,
    measured: measured::Overlay,
}

/// Multivalue region lists, numbered from 1 in the order they were first met.
#[derive(Debug, Default, Clone)]
struct Interned(HashMap<Box<[RegionId]>, Also>);

impl Interned {
    fn intern(&mut self, regions: &[RegionId]) -> Also {
        if regions.is_empty() {
            return Also::NONE;
        }
        let next = u32::try_from(self.0.len() + 1)
            .ok()
            .filter(|&n| n < Also::UNKNOWN.0)
            .expect("fewer than 2^32 - 1 multivalue lists per zone");
        *self.0.entry(regions.into()).or_insert(Also(next))
    }
}

#[derive(Debug)]
enum NameSteering {
    /// Every client gets the same answer (one region up, failover order, every region down):
    /// scope 0.
    Uniform(Steering),
    /// The client's location decides: its run's class is an index into `classes`.
    ByClient {
        runs: Arc<SetRuns>,
        classes: Box<[Steering]>,
    },
    /// The name has rules or multivalue answers.
    Ruled(Box<Ruled>),
}

/// A name with rules, compiled. A client's address gives two things: a pin option from
/// `pins` (0: no network or ASN rule that can answer; `k`: the `k`th region such rules send
/// clients to), and a place class from `runs` (a class is a row of `outcomes`, one per
/// option). The outcome is the answer, or a split's regions, which the client network's hash
/// chooses from.
#[derive(Debug)]
struct Ruled {
    /// Shared by A and AAAA where their places split alike.
    runs: Arc<SetRuns>,
    pins: Pins,
    /// By class, then option.
    outcomes: Box<[Outcome]>,
    options: usize,
    /// By option: whether every class has the same outcome (a pinned region, answering
    /// alone), so that the place does not narrow the scope.
    uniform: Box<[bool]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Outcome {
    One(Answer),
    /// A split: its regions and weights, and the answer of a client landing on each.
    Split {
        weights: Box<[(RegionId, u32)]>,
        answers: Box<[Answer]>,
    },
}

/// What tells answers apart beyond their steering, which does not name the fence that failed
/// closed: places merge into one run only where they agree on it too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Answer {
    steering: Steering,
    closed_fence: Option<usize>,
}

/// The pin option of every client address, both families.
#[derive(Debug)]
struct Pins {
    v4: PinRanges<u32>,
    v6: PinRanges<u128>,
}

/// Sorted ranges covering a family's space (the first starts at 0), each with a pin option or
/// [`DIRECT`] (IPv6 space where the ASN database's walk skipped an alias).
#[derive(Debug)]
struct PinRanges<A> {
    starts: Vec<A>,
    options: Vec<u16>,
}

impl<A: Copy + Ord + Into<u128>> PinRanges<A> {
    /// The option of `addr` (a `bits`-wide address) and the shortest prefix around it inside
    /// its range.
    fn find(&self, addr: A, bits: u8) -> (u16, u8) {
        let i = self.starts.partition_point(|&s| s <= addr) - 1;
        let first = self.starts[i].into();
        let last = self
            .starts
            .get(i + 1)
            .map_or(u128::MAX >> (128 - u32::from(bits)), |&n| n.into() - 1);
        (self.options[i], widest(addr.into(), first, last, bits))
    }

    fn bytes(&self) -> usize {
        self.starts.len() * (std::mem::size_of::<A>() + 2)
    }
}

/// Runs of addresses answered by the same region of one region set, for both address
/// families of clients.
#[derive(Debug, PartialEq)]
struct SetRuns {
    v4: Runs<u32>,
    /// In /64s, as the location table counts IPv6.
    v6: Runs<u64>,
}

/// A class for addresses the location table does not speak for: the direct path answers.
const DIRECT: u16 = u16::MAX;

#[derive(Debug, PartialEq)]
struct Runs<A> {
    /// By start. A run's class sits beside its start, so the lookup that found the start
    /// finds the class in the same cache line.
    runs: Vec<Run<A>>,
    /// `index[t]`: how many runs start before the block whose top 16 bits are `t`. A lookup
    /// searches only the runs of its own block (a few, in one or two cache lines) instead of
    /// the whole table, whose upper levels miss the cache once the table is large.
    index: Box<[u32]>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
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
    fn new(mut runs: Vec<Run<A>>) -> Self {
        // Kept while the zone is served: no spare capacity.
        runs.shrink_to_fit();
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
    /// The number of multivalue list `regions` (best first) in this zone's keys, if a
    /// compiled class holds it.
    pub fn also(&self, regions: &[RegionId]) -> Option<Also> {
        if regions.is_empty() {
            return Some(Also::NONE);
        }
        self.also.0.get(regions).copied()
    }

    /// The compiled answer of steered name `steered` for `client`, or `None` where the table
    /// does not speak for the client's address (the direct path answers). For a client whose
    /// network the latency map measured, [`ZoneSteering::steer_measured`] answers instead.
    pub fn steer(&self, steered: usize, family: Family, client: Client) -> Option<Compiled> {
        let name = &self.names.get(steered)?[family_index(family)];
        let (runs, classes) = match name {
            NameSteering::Ruled(ruled) => return ruled.steer(client),
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
        let runs = match self.names.get(steered).map(|n| &n[family_index(family)]) {
            Some(NameSteering::ByClient { runs, .. }) => &**runs,
            Some(NameSteering::Ruled(ruled)) => &*ruled.runs,
            _ => return,
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
            match name {
                NameSteering::ByClient { runs, .. } if !seen.contains(&Arc::as_ptr(runs)) => {
                    seen.push(Arc::as_ptr(runs));
                    total += runs.v4.bytes() + runs.v6.bytes();
                }
                NameSteering::Ruled(r) => {
                    if !seen.contains(&Arc::as_ptr(&r.runs)) {
                        seen.push(Arc::as_ptr(&r.runs));
                        total += r.runs.v4.bytes() + r.runs.v6.bytes();
                    }
                    total += r.pins.v4.bytes() + r.pins.v6.bytes();
                    total += r.outcomes.len() * std::mem::size_of::<Outcome>();
                }
                _ => {}
            }
        }
        total
    }
}

impl Ruled {
    fn steer(&self, client: Client) -> Option<Compiled> {
        let network = client.network().trunc();
        let ((option, pinned), (class, placed), split_prefix) = match network {
            IpNet::V4(n) => {
                let a = u32::from(n.addr());
                let pin = self.pins.v4.find(a, 32);
                (
                    pin,
                    self.runs.v4.find(u128::from(a), 0, 32),
                    SPLIT_PREFIX_V4,
                )
            }
            IpNet::V6(n) => {
                let a = u128::from(n.addr());
                let pin = self.pins.v6.find(a, 128);
                (
                    pin,
                    self.runs.v6.find(a, table::V6_UNIT, 128),
                    SPLIT_PREFIX_V6,
                )
            }
        };
        if option == DIRECT || class == DIRECT {
            return None;
        }
        let option = usize::from(option);
        let outcome = &self.outcomes[usize::from(class) * self.options + option];
        // The answer holds where the pin option holds, and where the place class does unless
        // every class answers alike; a split's hash block narrows it further.
        let mut widest = if self.uniform[option] {
            pinned
        } else {
            pinned.max(placed)
        };
        let steering = match outcome {
            Outcome::One(a) => a.steering,
            Outcome::Split { weights, answers } => {
                widest = widest.max(split_prefix);
                let to = rules::split_lands(weights, network)
                    .expect("a staged split has a region that can answer");
                let i = weights
                    .iter()
                    .position(|&(r, _)| r == to)
                    .expect("a split lands on one of its regions");
                answers[i].steering
            }
        };
        let scope = match client {
            Client::Subnet { network } => widest.min(network.prefix_len()),
            Client::Resolver { .. } => 0,
        };
        Some(Compiled { steering, scope })
    }
}

fn family_index(family: Family) -> usize {
    match family {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

/// The location table, built when first asked for.
struct Lazy<'t, F> {
    build: Option<F>,
    table: Option<&'t LocationTable>,
}

impl<'t, F: FnOnce() -> Result<&'t LocationTable, String>> Lazy<'t, F> {
    fn new(build: F) -> Self {
        Lazy {
            build: Some(build),
            table: None,
        }
    }

    fn get(&mut self) -> Result<&'t LocationTable, String> {
        match self.table {
            Some(t) => Ok(t),
            None => {
                let build = self.build.take().expect("the table is asked for once");
                Ok(*self.table.insert(build()?))
            }
        }
    }
}

/// Compiles every steered name of `zone` under `view`, and the answers of the networks
/// `latency` measured ([`measured`]). `table` is asked for only when a name's answer depends
/// on the client; names without rules with the same regions, default region and usable
/// endpoints of the queried family share one set of runs ([`SetKey`]). The ASN database is
/// walked (once per process) when a name first has ASN rules, or the map has estimates by AS.
pub fn compile<'t>(
    zone: &Zone,
    view: &HealthView,
    latency: &Arc<LatencyTable>,
    table: impl FnOnce() -> Result<&'t LocationTable, String>,
) -> Result<ZoneSteering, String> {
    let mut table = Lazy::new(table);
    let (names, mut also) = compile_names(zone, view, &mut table)?;
    let classes_also = Arc::new(also.clone());
    let measured = measured::Overlay::compile(zone, view, latency, &names, &mut also, &mut table)?;
    Ok(ZoneSteering {
        names,
        classes_also,
        also,
        measured,
    })
}

/// [`compile`] without the measured networks' answers: they take the direct path until
/// [`ZoneSteering::remeasured`] lays them, so that every other client is compiled as soon as
/// the runs are, however long deciding the measured networks takes.
pub fn compile_runs<'t>(
    zone: &Zone,
    view: &HealthView,
    table: impl FnOnce() -> Result<&'t LocationTable, String>,
) -> Result<ZoneSteering, String> {
    let (names, also) = compile_names(zone, view, &mut Lazy::new(table))?;
    Ok(ZoneSteering {
        measured: measured::Overlay::pending(&names),
        classes_also: Arc::new(also.clone()),
        names,
        also,
    })
}

/// By steered name, A then AAAA.
type Names = Arc<[[NameSteering; 2]]>;

/// Every steered name of `zone` compiled, with the multivalue lists of their classes.
fn compile_names<'t, F>(
    zone: &Zone,
    view: &HealthView,
    table: &mut Lazy<'t, F>,
) -> Result<(Names, Interned), String>
where
    F: FnOnce() -> Result<&'t LocationTable, String>,
{
    let mut sets: HashMap<SetKey<'_>, (Arc<SetRuns>, Vec<Option<PointId>>)> = HashMap::new();
    let mut names = Vec::with_capacity(zone.steered.len());
    let mut also = Interned::default();
    for steered in &zone.steered {
        let config = &steered.config;
        let mut compile_family = |family: Family| -> Result<NameSteering, String> {
            let ruled = !config.rules.is_empty() || config.multivalue.is_some();
            let any = steer::decide(None, config, &zone.regions, view, family);
            // Rules make every answer depend on the client; multivalue alone does where
            // distance does.
            if !any.depends_on_client && config.rules.is_empty() {
                let unknown = facts(table::Place::default());
                let d = rules::staged(&unknown, None, None, config, &zone.regions, view, family)
                    .finish(None, config, &zone.regions);
                let also = also.intern(&d.also);
                return Ok(NameSteering::Uniform(Steering::of(
                    &d, zone, config, view, family, also,
                )));
            }
            let t = table.get()?;
            if ruled {
                let asns = if config.rules.asns.is_empty() {
                    None
                } else {
                    let db = crate::geo::asn::AsnDb::embedded().map_err(|e| e.to_string())?;
                    Some(db.ranges().map_err(|e| format!("embedded asn: {e}"))?)
                };
                return Ok(NameSteering::Ruled(Box::new(compile_ruled(
                    (t, asns),
                    zone,
                    config,
                    view,
                    family,
                    &any,
                    &mut also,
                )?)));
            }
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
                    let point = rep.and_then(|p| t.places[p as usize].point());
                    let decision = steer::decide(point, config, &zone.regions, view, family);
                    let also = also.intern(&decision.also);
                    Steering::of(&decision, zone, config, view, family, also)
                })
                .collect();
            Ok(NameSteering::ByClient {
                runs: runs.clone(),
                classes,
            })
        };
        let mut both = [compile_family(Family::V4)?, compile_family(Family::V6)?];
        // A name with rules has runs of its own; A's serve AAAA too where they are the same.
        if let [NameSteering::Ruled(a), NameSteering::Ruled(b)] = &mut both
            && a.runs == b.runs
        {
            b.runs = a.runs.clone();
        }
        names.push(both);
    }
    Ok((names.into(), also))
}

/// What a region set's runs depend on besides the zone and its health: the name's regions
/// (whose order breaks ties), its default region (for unknown locations), which of them
/// have endpoints of the queried family up, and their biases (as bits, to be hashed).
type SetKey<'z> = (&'z [RegionId], RegionId, Vec<bool>, Vec<(RegionId, u64)>);

/// The runs of one region set, and for each of its regions a place id that it answers.
fn compile_set(
    table: &LocationTable,
    zone: &Zone,
    config: &steer::SteeredName,
    view: &HealthView,
    family: Family,
) -> (Arc<SetRuns>, Vec<Option<PointId>>) {
    let mut representatives = vec![None; config.regions.len()];
    let runs = set_runs(table, |id| {
        let point = table.places[id as usize].point();
        let chosen = steer::chosen(point, config, &zone.regions, view, family)
            .expect("a name with two regions up always has an answer");
        let position = config
            .regions
            .iter()
            .position(|&r| r == chosen)
            .expect("the chosen region is one of the name's");
        representatives[position].get_or_insert(id);
        u16::try_from(position).expect("fewer than 65,534 regions per name")
    });
    (Arc::new(runs), representatives)
}

/// The runs of the location table by the class `place_class` gives each place id (asked
/// once per place); space the table leaves to the direct path is [`DIRECT`].
fn set_runs(table: &LocationTable, place_class: impl FnMut(PointId) -> u16) -> SetRuns {
    const UNSET: u16 = u16::MAX - 1;
    let mut class_of = vec![UNSET; table.places.len()];
    let mut place_class = place_class;
    let mut plain = |id: PointId| -> u16 {
        if id == table::DIRECT {
            return DIRECT;
        }
        let slot = &mut class_of[id as usize];
        if *slot == UNSET {
            *slot = place_class(id);
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
    SetRuns { v4, v6 }
}

/// Compiles a name with rules or multivalue answers for `family`; `base` is its decision for
/// an unknown client, whose verdicts say which regions can answer (they do not depend on
/// where the client is). `maps` are the location table and the ASN ranges (if the rules name
/// ASes); multivalue lists are numbered in `also`.
fn compile_ruled(
    (table, asns): (&LocationTable, Option<&AsnRanges>),
    zone: &Zone,
    config: &steer::SteeredName,
    view: &HealthView,
    family: Family,
    base: &Decision,
    also: &mut Interned,
) -> Result<Ruled, String> {
    let rules = &config.rules;
    // Option 0: no rule that can answer; then each region rules send clients to that can.
    let mut pinned: Vec<RegionId> = Vec::new();
    let targets = rules.networks.iter().map(|n| n.1);
    for r in targets.chain(rules.asns.iter().map(|a| a.1)) {
        if rules::answers(base, r) && !pinned.contains(&r) {
            pinned.push(r);
        }
    }
    let option_of = |r: RegionId| -> u16 {
        pinned.iter().position(|&p| p == r).map_or(0, |i| {
            u16::try_from(i + 1).expect("fewer than 65,534 pinned regions")
        })
    };
    let options = pinned.len() + 1;
    let pins = Pins {
        v4: pin_ranges(asns.map(|a| &a.v4), asns, rules, 32, &option_of),
        v6: pin_ranges(asns.map(|a| &a.v6), asns, rules, 128, &option_of),
    };
    let mut rows: HashMap<Vec<Outcome>, u16> = HashMap::new();
    let mut outcomes: Vec<Outcome> = Vec::new();
    let runs = set_runs(table, |id| {
        let facts = facts(table.places[id as usize]);
        let row: Vec<Outcome> = std::iter::once(None)
            .chain(pinned.iter().map(|&r| Some((String::new(), r))))
            .map(|pin| {
                let staged = rules::staged(&facts, pin, None, config, &zone.regions, view, family);
                let mut of = |d: Decision| Answer {
                    steering: Steering::of(&d, zone, config, view, family, also.intern(&d.also)),
                    closed_fence: d.closed_fence,
                };
                let weights: Box<[(RegionId, u32)]> = staged.split_weights().into();
                if weights.is_empty() {
                    Outcome::One(of(staged.finish(None, config, &zone.regions)))
                } else {
                    let answers = weights
                        .iter()
                        .map(|&(r, _)| of(staged.clone().finish(Some(r), config, &zone.regions)))
                        .collect();
                    Outcome::Split { weights, answers }
                }
            })
            .collect();
        let next = u16::try_from(rows.len()).ok().filter(|&c| c < DIRECT - 1);
        match rows.get(&row) {
            Some(&class) => class,
            None => {
                let class = next.expect("fewer than 65,534 place classes per name");
                outcomes.extend(row.iter().cloned());
                rows.insert(row, class);
                class
            }
        }
    });
    let classes = outcomes.len() / options;
    let uniform = (0..options)
        .map(|o| (1..classes).all(|c| outcomes[c * options + o] == outcomes[o]))
        .collect();
    Ok(Ruled {
        runs: Arc::new(runs),
        pins,
        outcomes: outcomes.into(),
        options,
        uniform,
    })
}

/// What the rules may ask of a client at `place`: its network and AS reach them only through
/// the pin option ([`rules::staged`]).
fn facts(place: table::Place) -> ClientFacts {
    ClientFacts {
        network: IpNet::V4(ipnet::Ipv4Net::default()),
        point: place.point(),
        country: place.country(),
        continent: place.continent(),
        asn: None,
    }
}

/// The pin options of a `bits`-wide family: the ASN database's ranges (`by_asn`) by the AS
/// rule of their AS, then each network rule over them, wider ones first (the most specific
/// rule decides, and hides the AS's even when its own region cannot answer).
fn pin_ranges<A: Copy + Ord + Into<u128> + TryFrom<u128>>(
    by_asn: Option<&Ranges<A>>,
    asns: Option<&AsnRanges>,
    rules: &rules::Rules,
    bits: u8,
    option_of: &impl Fn(RegionId) -> u16,
) -> PinRanges<A> {
    let mut ranges: Vec<(u128, u16)> = match (by_asn, asns) {
        (Some(by_asn), Some(asns)) => by_asn
            .starts
            .iter()
            .zip(&by_asn.ids)
            .map(|(&start, &id)| {
                let option = if id == table::DIRECT {
                    DIRECT
                } else {
                    asns.number(id)
                        .and_then(|n| rules.asns.iter().find(|(a, _)| *a == n))
                        .map_or(0, |&(_, r)| option_of(r))
                };
                (start.into(), option)
            })
            .collect(),
        _ => vec![(0, 0)],
    };
    let mut networks: Vec<&(IpNet, RegionId)> = rules
        .networks
        .iter()
        .filter(|(n, _)| n.max_prefix_len() == bits)
        .collect();
    networks.sort_by_key(|(n, _)| n.prefix_len());
    let max = u128::MAX >> (128 - u32::from(bits));
    for &(net, r) in networks {
        let (first, last) = match net {
            IpNet::V4(n) => (
                u128::from(u32::from(n.network())),
                u128::from(u32::from(n.broadcast())),
            ),
            IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
        };
        paint(&mut ranges, first, last, option_of(r), max);
    }
    let mut out = PinRanges {
        starts: Vec::new(),
        options: Vec::new(),
    };
    for (start, option) in ranges {
        if out.options.last() != Some(&option) {
            let Ok(start) = A::try_from(start) else {
                unreachable!("a {bits}-bit start fits its family")
            };
            out.starts.push(start);
            out.options.push(option);
        }
    }
    out
}

/// Sets [`first`, `last`] of `ranges` (sorted starts, the first at 0, covering 0..=`max`) to
/// `option`.
fn paint(ranges: &mut Vec<(u128, u16)>, first: u128, last: u128, option: u16, max: u128) {
    let at = |x: u128, ranges: &[(u128, u16)]| ranges[ranges.partition_point(|r| r.0 <= x) - 1].1;
    let after = (last < max).then(|| (last + 1, at(last + 1, ranges)));
    ranges.retain(|r| r.0 < first || after.is_some_and(|a| r.0 > a.0));
    let i = ranges.partition_point(|r| r.0 < first);
    ranges.splice(i..i, std::iter::once((first, option)).chain(after));
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

mod measured;
#[cfg(test)]
mod tests;
