//! The client's autonomous system and its organisation, from the IP-to-ASN database compiled
//! into the binary (`geodata/asn.mmdb`, CC BY 4.0: RouteViews, the RIRs' statistics through
//! the NRO, DB-IP IP to ASN Lite; see geodata/ATTRIBUTION.md).
//!
//! The rule: the network the database returns is how far an ASN-dependent answer holds, so
//! a steered name with ASN rules bounds its ECS scope by it.

use std::net::IpAddr;

use ipnet::IpNet;
use maxminddb::Reader;
use serde::{Deserialize, Serialize};

static EMBEDDED: &[u8] = include_bytes!("../../geodata/asn.mmdb");

/// What the database says about a client's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Asn {
    pub number: u32,
    pub organisation: &'static str,
    /// The database network holding the client: every address in it is in this AS.
    pub network: IpNet,
}

/// MaxMind's ASN schema, which the embedded database uses.
#[derive(Deserialize)]
struct AsnRecord<'a> {
    autonomous_system_number: Option<u32>,
    #[serde(borrow)]
    autonomous_system_organization: Option<&'a str>,
}

/// The embedded IP-to-ASN database.
pub struct AsnDb {
    reader: Reader<&'static [u8]>,
    /// Walked once, by the steering compiler, when a name first has ASN rules.
    ranges: std::sync::OnceLock<Result<super::table::AsnRanges, String>>,
}

/// Opened and checked once per process: every lookup borrows from the compiled-in bytes, so
/// an organisation is a `&'static str` and a location stays `Copy`.
static OPENED: std::sync::OnceLock<Result<AsnDb, String>> = std::sync::OnceLock::new();

impl AsnDb {
    /// The compiled-in database, its tree walked whole before it first answers.
    pub fn embedded() -> Result<&'static AsnDb, super::GeoError> {
        const NAME: &str = "embedded asn";
        let opened = OPENED.get_or_init(|| {
            let reader = Reader::from_source(EMBEDDED).map_err(|e| e.to_string())?;
            super::verify::check_tree(&reader, EMBEDDED)?;
            Ok(AsnDb {
                reader,
                ranges: std::sync::OnceLock::new(),
            })
        });
        opened.as_ref().map_err(|reason| super::GeoError::Damaged {
            name: NAME.into(),
            reason: reason.clone(),
        })
    }

    /// The type and build time, as `meridian route` shows them.
    pub fn describe(&self) -> String {
        let m = self.reader.metadata();
        format!(
            "embedded asn ({}, build epoch {})",
            m.database_type, m.build_epoch
        )
    }

    /// Every address's AS, walked from the database on the first call (off the query path).
    pub fn ranges(&self) -> Result<&super::table::AsnRanges, &str> {
        self.ranges
            .get_or_init(|| super::table::AsnRanges::build(&self.reader))
            .as_ref()
            .map_err(String::as_str)
    }

    /// The AS announcing `addr`, if the database knows one.
    pub fn lookup(&'static self, addr: IpAddr) -> Option<Asn> {
        let result = self.reader.lookup(addr).ok()?;
        let network = result.network().ok()?;
        let network = IpNet::new(network.ip(), network.prefix()).ok()?.trunc();
        let record: AsnRecord<'static> = result.decode().ok()??;
        Some(Asn {
            number: record.autonomous_system_number?,
            organisation: record.autonomous_system_organization.unwrap_or(""),
            network,
        })
    }
}
