//! Client location from a MaxMind DB: where a client network is, and how wide that answer is.
//!
//! Reads both the MaxMind GeoIP2/GeoLite2 schema (`location`, `country.iso_code`,
//! `continent.code`) and the flat ip-location-db schema (`country_code`, `latitude`,
//! `longitude`); a country without coordinates falls back to [`countries`]. The network the
//! database returns is what makes the ECS scope honest: every address in it gets the same
//! location. Lookups are cached by client network with moka.
//!
//! The rule for files: a database is read whole into memory when it loads, and serves only
//! after [`verify`] has walked its tree and compared it with a database already trusted. No
//! file is mapped, so whatever happens to the file afterwards (rewritten in place, truncated)
//! cannot reach a lookup; the price is resident memory equal to the file's size.

pub mod asn;
pub mod countries;
pub mod table;
mod verify;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use maxminddb::Reader;
use serde::{Deserialize, Deserializer, Serialize};

use crate::steer::GeoPoint;
use countries::Continent;

/// The default database compiled into the binary: city-level, coarsened (CC BY 4.0, see
/// geodata/).
static EMBEDDED: &[u8] = include_bytes!("../../geodata/city-coarse.mmdb");

/// Distinct client networks whose location is kept in memory.
const CACHE_CAPACITY: u64 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("{path}: GeoIP database: {source}")]
    File {
        path: PathBuf,
        source: crate::files::FileError,
    },
    #[error("{first} and {second} are both IPv{version} databases: give one per address family")]
    TwoForOneFamily {
        first: String,
        second: String,
        version: u16,
    },
    #[error("{name}: not a MaxMind DB: {source}")]
    Invalid {
        name: String,
        source: maxminddb::MaxMindDbError,
    },
    #[error("{name}: damaged MaxMind DB: {reason}")]
    Damaged { name: String, reason: String },
    #[error(
        "{name}: moves {moved} of {compared} probe addresses out of the country {reference} \
         places them in (e.g. {example}): it would send most clients elsewhere"
    )]
    Moved {
        name: String,
        moved: usize,
        compared: usize,
        reference: &'static str,
        example: String,
    },
}

/// Where the bytes of the database live: compiled in, or read from a file when it loaded.
enum Source {
    Embedded(&'static [u8]),
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for Source {
    fn as_ref(&self) -> &[u8] {
        match self {
            Source::Embedded(b) => b,
            Source::Owned(b) => b,
        }
    }
}

impl Db {
    /// Reads the regular file at `path` whole and checks its tree. A private copy, not a map:
    /// a map of a file that is later cut short (an updater writing in place) raises SIGBUS at
    /// the next lookup that touches a page past the new end.
    fn open(path: &Path) -> Result<Db, GeoError> {
        let bytes =
            crate::files::read_regular(path, crate::files::GEOIP_FILE).map_err(|source| {
                GeoError::File {
                    path: path.to_owned(),
                    source,
                }
            })?;
        let name = path.display().to_string();
        {
            let reader = Reader::from_source(&bytes[..]).map_err(|source| GeoError::Invalid {
                name: name.clone(),
                source,
            })?;
            verify::check_tree(&reader, &bytes).map_err(|reason| GeoError::Damaged {
                name: name.clone(),
                reason,
            })?;
        }
        Db::new(Source::Owned(bytes), name)
    }

    fn new(source: Source, name: String) -> Result<Db, GeoError> {
        let reader = Reader::from_source(source).map_err(|source| GeoError::Invalid {
            name: name.clone(),
            source,
        })?;
        Ok(Db { name, reader })
    }
}

/// How precise a location is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// Coordinates from the database (city level or better).
    Coordinates,
    /// Only the country is known: its representative point from the built-in table.
    Country,
    /// The database does not know this network.
    Unknown,
}

impl Precision {
    pub fn describe(self) -> &'static str {
        match self {
            Precision::Coordinates => "coordinates from the database",
            Precision::Country => "country only: its point from the built-in table",
            Precision::Unknown => "not in the database",
        }
    }
}

/// What the database says about one client network.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Location {
    /// The database network containing the client: every address in it has this location.
    pub network: IpNet,
    pub point: Option<GeoPoint>,
    pub country: Option<&'static str>,
    pub continent: Option<Continent>,
    pub precision: Precision,
    /// The client's autonomous system, from the embedded ASN database.
    pub asn: Option<asn::Asn>,
}

impl Location {
    fn unknown(network: IpNet) -> Location {
        Location {
            network,
            point: None,
            country: None,
            continent: None,
            precision: Precision::Unknown,
            asn: None,
        }
    }
}

/// One database file (or the embedded one).
struct Db {
    name: String,
    reader: Reader<Source>,
}

/// The databases that locate clients: at most one per address family. An IPv6 database
/// (`ip_version` 6) also answers for IPv4 unless an IPv4-only database is given, as
/// ip-location-db ships city data in separate IPv4 and IPv6 files.
pub struct GeoDb {
    dbs: Vec<Db>,
    v4: Option<usize>,
    v6: Option<usize>,
    asn: &'static asn::AsnDb,
    cache: moka::sync::Cache<IpNet, Location>,
    /// Built once, by the steering compiler, on first use: never on a query's path.
    table: std::sync::OnceLock<Result<table::LocationTable, String>>,
}

impl fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoDb").field("name", &self.name()).finish()
    }
}

impl GeoDb {
    /// The database compiled into the binary.
    pub fn embedded() -> Result<GeoDb, GeoError> {
        let db = Db::new(Source::Embedded(EMBEDDED), "embedded city-coarse".into())?;
        Self::new(vec![db])
    }

    /// A database file, read into memory and its tree checked; compared with nothing.
    pub fn open(path: &Path) -> Result<GeoDb, GeoError> {
        Self::new(vec![Db::open(path)?])
    }

    /// The given files (one per address family), or the embedded database when none. Files
    /// are checked, then compared with the embedded database: one that places most probe
    /// addresses both know in another country is refused.
    pub fn open_or_embedded(paths: &[PathBuf]) -> Result<GeoDb, GeoError> {
        let embedded = Self::embedded()?;
        if paths.is_empty() {
            return Ok(embedded);
        }
        let geo = Self::open_all(paths)?;
        geo.compare(&embedded, "the embedded database", false)?;
        Ok(geo)
    }

    /// A replacement for `running` from the given files: checked, then compared with the
    /// running database, which it may not move most probe addresses away from (to another
    /// country or to nowhere).
    pub fn open_replacement(paths: &[PathBuf], running: &GeoDb) -> Result<GeoDb, GeoError> {
        let geo = Self::open_all(paths)?;
        geo.compare(running, "the running database", true)?;
        Ok(geo)
    }

    fn open_all(paths: &[PathBuf]) -> Result<GeoDb, GeoError> {
        let dbs = paths
            .iter()
            .map(|p| Db::open(p))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(dbs)
    }

    /// Refuses `self` when it moves most of the probe addresses `reference` knows; see
    /// [`verify::drift`] for `lost_is_moved`. Too few probes in common judge nothing.
    fn compare(
        &self,
        reference: &GeoDb,
        reference_name: &'static str,
        lost_is_moved: bool,
    ) -> Result<(), GeoError> {
        let drift = verify::drift(reference, self, lost_is_moved);
        if drift.compared >= verify::MIN_COMPARED && drift.moved * 2 > drift.compared {
            return Err(GeoError::Moved {
                name: self.name(),
                moved: drift.moved,
                compared: drift.compared,
                reference: reference_name,
                example: drift.example.unwrap_or_default(),
            });
        }
        Ok(())
    }

    fn new(dbs: Vec<Db>) -> Result<GeoDb, GeoError> {
        let of_version = |v: u16| -> Result<Option<usize>, GeoError> {
            let found: Vec<usize> = (0..dbs.len())
                .filter(|&i| dbs[i].reader.metadata().ip_version == v)
                .collect();
            match found[..] {
                [] => Ok(None),
                [one] => Ok(Some(one)),
                [a, b, ..] => Err(GeoError::TwoForOneFamily {
                    first: dbs[a].name.clone(),
                    second: dbs[b].name.clone(),
                    version: v,
                }),
            }
        };
        let v6 = of_version(6)?;
        let v4 = of_version(4)?.or(v6);
        Ok(GeoDb {
            dbs,
            v4,
            v6,
            asn: asn::AsnDb::embedded()?,
            cache: moka::sync::Cache::new(CACHE_CAPACITY),
            table: std::sync::OnceLock::new(),
        })
    }

    /// Whether [`GeoDb::table`] has been walked already (or failed).
    pub fn has_table(&self) -> bool {
        self.table.get().is_some()
    }

    /// Every address's point, walked from the databases on the first call (seconds for a
    /// city database: call it off the query path); the error names what stopped the walk.
    pub fn table(&self) -> Result<&table::LocationTable, &str> {
        self.table
            .get_or_init(|| table::LocationTable::build(self))
            .as_ref()
            .map_err(String::as_str)
    }

    /// The databases' names: paths, or "embedded ...".
    pub fn name(&self) -> String {
        let names: Vec<&str> = self.dbs.iter().map(|d| d.name.as_str()).collect();
        names.join(", ")
    }

    /// Each database's own description: type and build time; the ASN database last.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .dbs
            .iter()
            .map(|d| {
                let m = d.reader.metadata();
                format!(
                    "{} ({}, build epoch {})",
                    d.name, m.database_type, m.build_epoch
                )
            })
            .chain([self.asn.describe()])
            .collect();
        parts.join("; ")
    }

    /// The database that answers for `addr`'s family.
    fn db_for(&self, addr: IpAddr) -> Option<&Db> {
        let index = if addr.is_ipv4() { self.v4 } else { self.v6 };
        index.map(|i| &self.dbs[i])
    }

    /// Locates a client network (an ECS subnet, or a resolver address as a host route).
    /// Host bits beyond the prefix are ignored.
    pub fn locate(&self, client: IpNet) -> Location {
        let client = client.trunc();
        if let Some(hit) = self.cache.get(&client) {
            return hit;
        }
        let location = self.locate_uncached(client);
        self.cache.insert(client, location);
        location
    }

    /// [`GeoDb::locate`] without the cache, for the control plane's bulk questions that need
    /// the AS too (a latency feed's samples): a feed posting a million networks would crowd
    /// the networks queries come from out of the cache.
    pub fn locate_uncached(&self, client: IpNet) -> Location {
        let client = client.trunc();
        match special_block(client) {
            Some(block) => Location::unknown(block),
            None => self.lookup(client.addr()),
        }
    }

    /// Entries in the query path's location cache, once its pending writes are applied.
    #[cfg(test)]
    pub(crate) fn cached(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Where `addr` is, for counting and drawing clients rather than steering them: from the
    /// location table once the compiler has walked it (no database read, no cache entry, no
    /// AS lookup), else from the database without the cache, so that the control plane's
    /// questions do not crowd out the query path's.
    pub fn place(&self, addr: IpAddr) -> table::Place {
        if let Some(Ok(t)) = self.table.get()
            && let Some(place) = t.place(addr)
        {
            return place;
        }
        table::Place::of(&match special_block(IpNet::from(addr)) {
            Some(block) => Location::unknown(block),
            None => self.lookup_place(addr),
        })
    }

    fn lookup(&self, addr: IpAddr) -> Location {
        Location {
            asn: self.asn.lookup(addr),
            ..self.lookup_place(addr)
        }
    }

    /// The location but the AS.
    fn lookup_place(&self, addr: IpAddr) -> Location {
        let unknown = Location::unknown;
        let host = IpNet::from(addr);
        let Some(db) = self.db_for(addr) else {
            // No database for this family: every such client is alike unknown; /1 keeps the
            // scope of a location-dependent answer above 0.
            return unknown(IpNet::new(addr, 1).expect("/1 is valid").trunc());
        };
        let Ok(result) = db.reader.lookup(addr) else {
            return unknown(host);
        };
        let network = result
            .network()
            .ok()
            .and_then(|n| IpNet::new(n.ip(), n.prefix()).ok())
            .map(|n| n.trunc())
            .unwrap_or(host);
        // A record that fails to decode is treated as unknown: the answer stays correct for
        // that network (default region), and the database's other records still serve.
        let Ok(Some(record)) = result.decode::<Record<'_>>() else {
            return unknown(network);
        };
        record.into_location(network)
    }
}

/// Address space that is not on the public internet (IANA special-purpose registries). Some
/// databases place these (192.168.0.0/16 in Australia, say); a client there is unknown.
static SPECIAL_BLOCKS: std::sync::LazyLock<Vec<IpNet>> = std::sync::LazyLock::new(|| {
    [
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/3",
        "::/8",
        "64:ff9b::/96",
        "100::/64",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    ]
    .iter()
    .map(|b| b.parse().expect("special blocks are valid networks"))
    .collect()
});

/// Whether `net`'s first address is special-purpose space, where no client is.
pub fn is_special(net: IpNet) -> bool {
    special_block(net).is_some()
}

/// The special-purpose block holding `net`'s first address, if any.
fn special_block(net: IpNet) -> Option<IpNet> {
    // By the network's first address, as the location table places it: a client network
    // wider than the block (192.168.0.0/13) is the block's, whatever data a database has
    // there (the country database places 192.168.0.0/16 in Australia).
    SPECIAL_BLOCKS
        .iter()
        .copied()
        .find(|b| b.contains(&net.network()))
}

/// The fields of both schemas that steering needs; everything else is skipped.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country_code: Option<&'a str>,
    latitude: Option<Float>,
    longitude: Option<Float>,
    #[serde(borrow)]
    country: Option<Country<'a>>,
    #[serde(borrow)]
    registered_country: Option<Country<'a>>,
    location: Option<Coordinates>,
    #[serde(borrow)]
    continent: Option<ContinentRecord<'a>>,
}

#[derive(Deserialize)]
struct Country<'a> {
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct ContinentRecord<'a> {
    code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Coordinates {
    latitude: Option<Float>,
    longitude: Option<Float>,
}

/// A coordinate stored as MMDB float (ip-location-db) or double (MaxMind), widened to f64;
/// also read by the tools that convert databases (`bench/geodb.rs`, `geodata/build-city.rs`).
pub struct Float(pub f64);

impl<'de> Deserialize<'de> for Float {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Float;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f32<E>(self, v: f32) -> Result<Float, E> {
                Ok(Float(f64::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Float, E> {
                Ok(Float(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Float, E> {
                Ok(Float(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Float, E> {
                Ok(Float(v as f64))
            }
        }
        d.deserialize_any(V)
    }
}

impl Record<'_> {
    fn into_location(self, network: IpNet) -> Location {
        let code = self
            .country_code
            .or(self.country.and_then(|c| c.iso_code))
            .or(self.registered_country.and_then(|c| c.iso_code));
        let country = code.and_then(countries::lookup);
        let (lat, lon) = match self.location {
            Some(l) => (l.latitude, l.longitude),
            None => (self.latitude, self.longitude),
        };
        let coordinates = match (lat, lon) {
            (Some(Float(lat)), Some(Float(lon)))
                if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) =>
            {
                Some(GeoPoint { lat, lon })
            }
            _ => None,
        };
        let continent = self
            .continent
            .and_then(|c| c.code)
            .and_then(Continent::from_code)
            .or(country.map(|c| c.continent));
        let (point, precision) = match (coordinates, country) {
            (Some(p), _) => (Some(p), Precision::Coordinates),
            (None, Some(c)) => (
                Some(GeoPoint {
                    lat: c.lat,
                    lon: c.lon,
                }),
                Precision::Country,
            ),
            (None, None) => (None, Precision::Unknown),
        };
        Location {
            network,
            point,
            country: country.map(|c| c.code),
            continent,
            precision,
            asn: None,
        }
    }
}

#[cfg(test)]
mod tests;
