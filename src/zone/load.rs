//! Zone files -> [`Zone`]s, with every problem reported as `file:line: what is wrong`.
//!
//! A zone file is TOML: `zone` (the origin), `records` (RFC 1035 master-file text, best as a
//! `'''` literal string so that lines map one to one), `[regions.NAME]` and `[steered.NAME]`.
//! Everything is checked before anything is returned, so one run shows every mistake; what
//! loads but deserves a look (an answer too long for UDP) comes back as the zone's warnings.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use hickory_proto::rr::{DNSClass, LowerName, Name, RData, RecordType};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

use super::dnssec::{DEFAULT_VALIDITY_DAYS, Dnssec, KeyAlgorithm, Spec};
use super::health::{self, HealthToml};
use super::records::{self, LineRecord, MAX_TTL};
use super::{Node, Quorum, RRset, RegionCheck, Steered, Zone, ZoneSet};
use crate::geo::countries::Continent;
use crate::steer::rules::{Fence, Rules, Split, WhenAllDown};
use crate::steer::{Endpoint, Fallback, Family, GeoPoint, Policy, Region, SteeredName};
use crate::text::Escaped;

/// TTL of steered answers when the name does not set one: short, so failover is quick.
pub const DEFAULT_STEERED_TTL: u32 = 30;
/// TTL of steered answers while one of the name's regions is changing state.
pub const DEFAULT_TROUBLE_TTL: u32 = 5;
/// Most addresses one steered answer may carry.
pub const MAX_ANSWERS: i64 = 64;
/// Largest bias, in km: half the Earth's circumference, beyond which a bias only pins.
pub const MAX_BIAS_KM: f64 = 20_000.0;
/// Largest endpoint weight.
pub const MAX_WEIGHT: i64 = 65_535;
/// The largest DNS message: TCP frames it with a two-octet length (RFC 1035 §4.2.2). An
/// RRset whose smallest answer is longer can never be served.
pub const MAX_MESSAGE: usize = 65_535;
/// The UDP payload that needs no fragmentation anywhere, which Meridian answers within (RFC
/// 9715, DNS Flag Day 2020). A longer answer goes out truncated and is fetched over TCP.
pub const UDP_PAYLOAD: usize = 1232;
/// An OPT record without options (RFC 6891 §6.1.2): root owner, type, class, TTL, RDLENGTH.
const OPT_SIZE: usize = 11;

/// One problem in one file; `line` is 1-based, `None` for the file as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the file's name or a value quoted from it holds.
        let (file, message) = (Escaped(self.file.display()), Escaped(&self.message));
        match self.line {
            Some(line) => write!(f, "{file}:{line}: {message}"),
            None => write!(f, "{file}: {message}"),
        }
    }
}

/// Every diagnostic of a failed load, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError(pub Vec<Diagnostic>);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ZoneToml {
    zone: Option<Spanned<String>>,
    records: Spanned<String>,
    #[serde(default)]
    regions: BTreeMap<Spanned<String>, Spanned<RegionToml>>,
    #[serde(default)]
    steered: BTreeMap<Spanned<String>, Spanned<SteeredToml>>,
    /// Health-check defaults for every region of the zone.
    health: Option<Spanned<HealthToml>>,
    /// Every probed region failing at once means this nameserver is cut off: keep the last
    /// good states instead of failing everything over.
    #[serde(default)]
    isolation_guard: bool,
    /// In a cluster: `"majority"`, `"any"`, `"all"` or a fraction; the cluster's otherwise.
    quorum: Option<Spanned<QuorumToml>>,
    /// Sign every answer (DNSSEC): `dnssec = {}` for the defaults.
    dnssec: Option<Spanned<DnssecToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct DnssecToml {
    /// "ecdsap256sha256" (the default) or "ed25519".
    algorithm: Option<Spanned<String>>,
    /// The PKCS#8 key file, relative to the zone file; the state directory's by default.
    key: Option<PathBuf>,
    /// Days each signature is valid for, from its inception.
    validity_days: Option<Spanned<i64>>,
    /// Days a signature has left, at least, when the next window's replace it.
    refresh_days: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum QuorumToml {
    Name(String),
    Fraction(f64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RegionToml {
    location: Spanned<LocationToml>,
    endpoints: Vec<Spanned<EndpointToml>>,
    /// Overrides of the zone's health-check keys for this region.
    health: Option<Spanned<HealthToml>>,
    /// Load the region takes before it sheds clients (spillover), in the unit its load
    /// reports use: queries per second by default.
    capacity: Option<Spanned<NumberToml>>,
    /// A Prometheus endpoint and gauge to scrape the region's load from.
    load_from: Option<Spanned<LoadFromToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadFromToml {
    url: String,
    metric: String,
}

/// A TOML integer or float.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberToml {
    Int(i64),
    Float(f64),
}

impl NumberToml {
    fn value(&self) -> f64 {
        match *self {
            NumberToml::Int(i) => i as f64,
            NumberToml::Float(f) => f,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LocationToml {
    lat: f64,
    lon: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SteeredToml {
    regions: Vec<Spanned<String>>,
    ttl: Option<Spanned<i64>>,
    answers: Option<Spanned<i64>>,
    /// Answer with the endpoints of this many nearest up regions.
    multivalue: Option<Spanned<i64>>,
    default_region: Option<Spanned<String>>,
    policy: Option<Spanned<String>>,
    fallback: Option<Spanned<FallbackToml>>,
    trouble_ttl: Option<Spanned<i64>>,
    /// Region -> km taken off its distance to every client (negative: added).
    #[serde(default)]
    bias_km: BTreeMap<Spanned<String>, Spanned<f64>>,
    /// Client network (CIDR) -> region, ahead of distance.
    #[serde(default)]
    networks: BTreeMap<Spanned<String>, Spanned<String>>,
    /// AS number ("13335" or "AS13335") -> region, ahead of distance.
    #[serde(default)]
    asns: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    fence: Vec<Spanned<FenceToml>>,
    #[serde(default)]
    split: Vec<Spanned<SplitToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FenceToml {
    #[serde(default)]
    countries: Vec<Spanned<String>>,
    #[serde(default)]
    continents: Vec<Spanned<String>>,
    regions: Vec<Spanned<String>>,
    /// "fail-open" (the default) or "fail-closed".
    when_all_down: Option<Spanned<String>>,
    /// What a closed fence answers; NODATA without it.
    closed_answer: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SplitToml {
    /// The region whose clients are split.
    region: Spanned<String>,
    /// Region -> percent, adding up to 100.
    weights: BTreeMap<Spanned<String>, Spanned<i64>>,
}

/// `"all"` or a list of addresses. A bad address is kept as its message, reported with the
/// file's other mistakes instead of ending the parse (as an address that is not one would).
enum FallbackToml {
    All,
    Static(Vec<Result<IpAddr, String>>),
}

impl<'de> Deserialize<'de> for FallbackToml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FallbackToml;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#""all" or a list of addresses"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FallbackToml, E> {
                match v {
                    "all" => Ok(FallbackToml::All),
                    _ => Err(E::custom(format!(
                        r#"fallback {v:?}: expected "all" or a list of addresses"#
                    ))),
                }
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<FallbackToml, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(parse_addr(&s));
                }
                Ok(FallbackToml::Static(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `"192.0.2.10"` or `{ address = "192.0.2.10", weight = 3, check-address = "..." }`. A bad
/// address is kept as its message, so that `meridian check` reports every one of them.
struct EndpointToml {
    address: Result<IpAddr, String>,
    weight: i64,
    check_address: Option<String>,
}

impl<'de> Deserialize<'de> for EndpointToml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EndpointToml;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"an address or { address = "...", weight = N }"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EndpointToml, E> {
                Ok(EndpointToml {
                    address: parse_addr(v),
                    weight: 1,
                    check_address: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EndpointToml, A::Error> {
                let (mut address, mut weight, mut check_address) = (None, None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "address" => address = Some(parse_addr(&map.next_value::<String>()?)),
                        "weight" => weight = Some(map.next_value::<i64>()?),
                        "check-address" => check_address = Some(map.next_value::<String>()?),
                        other => {
                            return Err(de::Error::unknown_field(
                                other,
                                &["address", "weight", "check-address"],
                            ));
                        }
                    }
                }
                Ok(EndpointToml {
                    address: address.ok_or_else(|| de::Error::missing_field("address"))?,
                    weight: weight.unwrap_or(1),
                    check_address,
                })
            }
        }
        d.deserialize_any(V)
    }
}

fn parse_addr(v: &str) -> Result<IpAddr, String> {
    v.parse()
        .map_err(|_| format!("bad address {v:?}: not an IPv4 or IPv6 address"))
}

/// Byte offsets -> 1-based line numbers.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        Lines(text.match_indices('\n').map(|(i, _)| i).collect())
    }

    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&nl| nl < offset) + 1
    }
}

/// Collects diagnostics for one file: errors in `out`, and warnings, which do not stop the
/// zone from loading.
struct Report<'a> {
    file: &'a Path,
    lines: Lines,
    out: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Report<'_> {
    fn at(&mut self, line: usize, message: impl Into<String>) {
        self.out.push(Diagnostic {
            file: self.file.to_owned(),
            line: Some(line),
            message: message.into(),
        });
    }

    fn warn(&mut self, line: usize, message: impl Into<String>) {
        self.warnings.push(Diagnostic {
            file: self.file.to_owned(),
            line: Some(line),
            message: message.into(),
        });
    }

    fn span(&mut self, span: Range<usize>, message: impl Into<String>) {
        let line = self.lines.line(span.start);
        self.at(line, message);
    }
}

/// Loads every `*.toml` file of `dir`, or reports every problem in all of them. Every
/// `*.toml` entry must be a readable regular file (or a symbolic link to one): anything else
/// (a dangling link, a FIFO, a directory, a device) is an error with its path, never a zone
/// that quietly disappears.
pub fn load_dir(dir: &Path) -> Result<ZoneSet, LoadError> {
    let whole = |message: String| Diagnostic {
        file: dir.to_owned(),
        line: None,
        message,
    };
    let listing = std::fs::read_dir(dir)
        .map_err(|e| LoadError(vec![whole(format!("cannot read zone directory: {e}"))]))?;
    let mut paths = Vec::new();
    let mut diagnostics = Vec::new();
    for entry in listing {
        match entry {
            Ok(e) => paths.push(e.path()),
            Err(e) => diagnostics.push(whole(format!("cannot list zone directory: {e}"))),
        }
    }
    paths.retain(|p| p.extension().is_some_and(|x| x == "toml"));
    paths.sort();
    if paths.is_empty() && diagnostics.is_empty() {
        return Err(LoadError(vec![whole(
            "no zone files (*.toml) found".into(),
        )]));
    }
    let mut zones: Vec<Zone> = Vec::new();
    for path in paths {
        let text = match read_zone_file(&path) {
            Ok(text) => text,
            Err(d) => {
                diagnostics.push(d);
                continue;
            }
        };
        match load_file(&path, &text) {
            Ok(zone) => {
                if let Some(other) = zones.iter().find(|z| z.origin == zone.origin) {
                    diagnostics.push(Diagnostic {
                        file: path.clone(),
                        line: None,
                        message: format!(
                            "zone {} is already defined in {}",
                            zone.origin,
                            other.file.display()
                        ),
                    });
                } else {
                    zones.push(zone);
                }
            }
            Err(mut d) => diagnostics.append(&mut d),
        }
    }
    if diagnostics.is_empty() {
        Ok(ZoneSet::new(zones))
    } else {
        Err(LoadError(diagnostics))
    }
}

/// [`load_dir`], then the key of every zone with DNSSEC on ([`ZoneSet::attach_keys`]): what
/// serving, reloading and `meridian check` load.
pub fn load_keyed(dir: &Path, state_dir: &Path) -> Result<ZoneSet, LoadError> {
    let mut zones = load_dir(dir)?;
    zones.attach_keys(state_dir)?;
    Ok(zones)
}

/// The text of one zone file: a regular file, in UTF-8. Bytes that are not UTF-8 are
/// reported at their line and column, as every other problem is.
fn read_zone_file(path: &Path) -> Result<String, Diagnostic> {
    let at = |line: Option<usize>, message: String| Diagnostic {
        file: path.to_owned(),
        line,
        message,
    };
    let bytes = crate::files::read_regular(path, crate::files::ZONE_FILE)
        .map_err(|e| at(None, e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let bad = e.utf8_error().valid_up_to();
        let line_start = bytes[..bad]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line = 1 + bytes[..line_start].iter().filter(|&&b| b == b'\n').count();
        let before = std::str::from_utf8(&bytes[line_start..bad])
            .expect("bytes before valid_up_to are valid UTF-8");
        let column = 1 + before.chars().count();
        at(
            Some(line),
            format!(
                "invalid UTF-8 (byte 0x{:02X}) at column {column}: zone files are UTF-8 text",
                bytes[bad]
            ),
        )
    })
}

/// Parses and checks one zone file; `path` names it in diagnostics and sets the default origin.
/// A hash of a zone file's bytes, the same on every node and build (SipHash-1-3 with fixed
/// zero keys): nodes of a cluster that serve different zone content show different hashes.
pub fn content_hash(text: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = siphasher::sip::SipHasher13::new();
    h.write(text.as_bytes());
    h.finish()
}

pub fn load_file(path: &Path, text: &str) -> Result<Zone, Vec<Diagnostic>> {
    let mut report = Report {
        file: path,
        lines: Lines::new(text),
        out: Vec::new(),
        warnings: Vec::new(),
    };
    let parsed: ZoneToml = match toml::from_str(text) {
        Ok(z) => z,
        Err(e) => {
            let message = e.message().trim_end().to_string();
            match e.span() {
                Some(span) => report.span(span, message),
                None => report.out.push(Diagnostic {
                    file: path.to_owned(),
                    line: None,
                    message,
                }),
            }
            return Err(report.out);
        }
    };

    let origin_text = match &parsed.zone {
        Some(z) => z.get_ref().clone(),
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let origin_line = parsed
        .zone
        .as_ref()
        .map(|z| report.lines.line(z.span().start))
        .unwrap_or(1);
    let origin = match Name::from_ascii(&origin_text) {
        Ok(mut n) => {
            n.set_fqdn(true);
            n.to_lowercase()
        }
        Err(e) => {
            report.at(origin_line, format!("bad zone name {origin_text:?}: {e}"));
            return Err(report.out);
        }
    };

    let records_line = report.lines.line(parsed.records.span().start);
    let file_lines = records_lines(text, parsed.records.span(), &report.lines);
    // Line `n` of the records text (1-based) is on this line of the file.
    let file_line = |n: usize| file_lines[(n - 1).min(file_lines.len() - 1)];
    let (mut records, errors) = records::parse(parsed.records.get_ref(), &origin, 1);
    for r in &mut records {
        r.line = file_line(r.line);
    }
    for e in errors {
        report.at(file_line(e.line), e.message);
    }

    let base = path.parent().unwrap_or(Path::new("."));
    let (regions, checks, region_ids) = regions(&parsed, base, &mut report);
    let capacity = capacities(&parsed, &mut report);
    let load_from = load_sources(&parsed, &mut report);
    let quorum = parsed.quorum.as_ref().and_then(|q| {
        let rule = match q.get_ref() {
            QuorumToml::Name(n) => Quorum::named(n),
            QuorumToml::Fraction(f) => Quorum::fraction(*f),
        };
        if rule.is_none() {
            report.span(
                q.span(),
                "quorum: give \"majority\", \"any\", \"all\" or a fraction above 0 and below 1 (up when more than that share of the nodes see it up)",
            );
        }
        rule
    });
    let dnssec = parsed.dnssec.as_ref().map(|d| dnssec_spec(d, &mut report));
    let builder = ZoneBuilder::new(&origin, &mut report, records_line);
    let (nodes, soa) = builder.build(records);
    let mut nodes = nodes;
    let steered = steered(
        &parsed,
        &origin,
        &regions,
        &region_ids,
        &mut nodes,
        &mut report,
    );

    if !report.out.is_empty() {
        report.out.sort_by_key(|d| d.line);
        return Err(report.out);
    }
    let soa = soa.expect("a zone without SOA was reported");
    let mut negative_soa = soa.clone();
    if let RData::SOA(s) = &soa.data {
        negative_soa.ttl = soa.ttl.min(s.minimum);
    }
    report.warnings.sort_by_key(|d| d.line);
    Ok(Zone {
        content_hash: content_hash(text),
        warnings: report.warnings,
        isolation_guard: parsed.isolation_guard,
        quorum,
        dnssec: dnssec.map(|spec| Dnssec { spec, signer: None }),
        origin,
        index: 0,
        file: path.to_owned(),
        negative_soa,
        soa,
        nodes,
        regions,
        checks,
        capacity,
        load_from,
        steered,
    })
}

/// Each region's load source, in region order; a URL that is not `http(s)://host...` or a
/// metric that is not a selector is reported at its line.
fn load_sources(
    parsed: &ZoneToml,
    report: &mut Report<'_>,
) -> Vec<Option<super::load_source::LoadSource>> {
    parsed
        .regions
        .iter()
        .map(|(name, region)| {
            let l = region.get_ref().load_from.as_ref()?;
            let t = l.get_ref();
            let url_ok = reqwest::Url::parse(&t.url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !url_ok {
                report.span(
                    l.span(),
                    format!(
                        "region {}: load-from url {:?} is not http://host[:port]/path or https://",
                        name.get_ref(),
                        t.url
                    ),
                );
            }
            match super::load_source::parse_selector(&t.metric) {
                Ok(metric) if url_ok => Some(super::load_source::LoadSource {
                    url: t.url.clone(),
                    metric,
                }),
                Ok(_) => None,
                Err(e) => {
                    report.span(
                        l.span(),
                        format!("region {}: load-from {e}", name.get_ref()),
                    );
                    None
                }
            }
        })
        .collect()
}

/// Each region's capacity, in region order (as [`regions`] numbers them); a capacity that is
/// not a positive finite number is reported at its line.
fn capacities(parsed: &ZoneToml, report: &mut Report<'_>) -> Vec<Option<f64>> {
    parsed
        .regions
        .iter()
        .map(|(name, region)| {
            let c = region.get_ref().capacity.as_ref()?;
            let value = c.get_ref().value();
            if value.is_finite() && value > 0.0 {
                Some(value)
            } else {
                report.span(
                    c.span(),
                    format!(
                        "region {}: capacity {value} is not a positive number (load units a \
                         second, as its load reports count them)",
                        name.get_ref()
                    ),
                );
                None
            }
        })
        .collect()
}

/// The file line of each line of the records text. A literal string (`'''`) maps one to one;
/// a basic string (`"""`) may add lines with escapes (`\n`, `\u000A`) and join lines with a
/// line-ending backslash, so its escapes are followed. TOML drops a newline that directly
/// follows an opening `'''` or `"""`.
/// The `dnssec` setting, checked; mistakes go to `report`.
fn dnssec_spec(d: &Spanned<DnssecToml>, report: &mut Report<'_>) -> Spec {
    let line = report.lines.line(d.span().start);
    let t = d.get_ref();
    let algorithm = match &t.algorithm {
        None => KeyAlgorithm::EcdsaP256Sha256,
        Some(a) => KeyAlgorithm::parse(a.get_ref()).unwrap_or_else(|| {
            report.span(
                a.span(),
                format!(
                    "dnssec: algorithm {:?} must be \"ecdsap256sha256\" or \"ed25519\"",
                    a.get_ref()
                ),
            );
            KeyAlgorithm::EcdsaP256Sha256
        }),
    };
    let validity_days = match &t.validity_days {
        None => DEFAULT_VALIDITY_DAYS,
        Some(v) if (2..=MAX_VALIDITY_DAYS).contains(v.get_ref()) => *v.get_ref() as u32,
        Some(v) => {
            report.span(
                v.span(),
                format!(
                    "dnssec: validity-days {} is not in 2..={MAX_VALIDITY_DAYS} (a signature must outlive the day it is made on)",
                    v.get_ref()
                ),
            );
            DEFAULT_VALIDITY_DAYS
        }
    };
    // A new window every day unless the zone says: the least a signature has left is then
    // `validity-days - 1` days.
    let refresh_days = match &t.refresh_days {
        None => validity_days - 1,
        Some(r) if (1..i64::from(validity_days)).contains(r.get_ref()) => *r.get_ref() as u32,
        Some(r) => {
            report.span(
                r.span(),
                format!(
                    "dnssec: refresh-days {} is not in 1..={} (below validity-days {validity_days}: a new window starts every validity-days - refresh-days days)",
                    r.get_ref(),
                    validity_days - 1
                ),
            );
            validity_days - 1
        }
    };
    Spec {
        algorithm,
        key: t.key.clone(),
        validity_days,
        refresh_days,
        line,
    }
}

/// The longest signature validity offered: long validity leaves a stolen or withdrawn
/// signature replayable longer (RFC 6781).
const MAX_VALIDITY_DAYS: i64 = 90;

fn records_lines(text: &str, span: Range<usize>, lines: &Lines) -> Vec<usize> {
    let raw = &text[span.start..span.end];
    let quote = ["'''", "\"\"\"", "'", "\""]
        .into_iter()
        .find(|q| raw.starts_with(q))
        .unwrap_or("");
    let mut body = &raw[quote.len()..];
    if quote.len() == 3 {
        body = body
            .strip_prefix("\r\n")
            .or_else(|| body.strip_prefix('\n'))
            .unwrap_or(body);
    }
    let mut line = lines.line(span.end - body.len());
    let mut out = vec![line];
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                line += 1;
                out.push(line);
            }
            '\\' if quote.starts_with('"') => match chars.next() {
                Some('n') => out.push(line),
                Some(x @ ('x' | 'u' | 'U')) => {
                    let digits = match x {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex: String = chars.by_ref().take(digits).collect();
                    if u32::from_str_radix(&hex, 16) == Ok(0x0A) {
                        out.push(line);
                    }
                }
                // A line-ending backslash: the newline and the whitespace around it vanish.
                Some(w) if w.is_whitespace() => {
                    line += usize::from(w == '\n');
                    while let Some(w) = chars.next_if(|w| w.is_whitespace()) {
                        line += usize::from(w == '\n');
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
    out
}

fn regions(
    parsed: &ZoneToml,
    base: &Path,
    report: &mut Report<'_>,
) -> (Vec<Region>, Vec<RegionCheck>, HashMap<String, usize>) {
    let mut regions = Vec::new();
    let mut checks = Vec::new();
    let mut ids = HashMap::new();
    let zone_health = parsed.health.as_ref();
    // Mistakes of the zone's own table are reported once, at their keys.
    let zone_mistakes = zone_health
        .map(|z| z.get_ref().defaults_mistakes(base))
        .unwrap_or_default();
    if let Some(z) = zone_health {
        for m in &zone_mistakes {
            let at = m.span.clone().unwrap_or_else(|| z.span());
            report.span(at, format!("health: {}", m.error));
        }
    }
    for (name, region) in &parsed.regions {
        let span = name.span();
        let name = name.get_ref();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            report.span(
                span.clone(),
                format!("bad region name {name:?}: use letters, digits, '-', '_' and '.'"),
            );
        }
        let region = region.get_ref();
        let loc = region.location.get_ref();
        if !(-90.0..=90.0).contains(&loc.lat) || !(-180.0..=180.0).contains(&loc.lon) {
            report.span(
                region.location.span(),
                format!(
                    "region {name}: location lat {} lon {} is off the globe (lat -90..90, lon -180..180)",
                    loc.lat, loc.lon
                ),
            );
        }
        if region.endpoints.is_empty() {
            report.span(span.clone(), format!("region {name} has no endpoints"));
        }
        let mut endpoints: Vec<Endpoint> = Vec::new();
        for ep in &region.endpoints {
            let e = ep.get_ref();
            let address = match &e.address {
                Ok(a) => *a,
                Err(msg) => {
                    report.span(ep.span(), msg.clone());
                    continue;
                }
            };
            if !(1..=MAX_WEIGHT).contains(&e.weight) {
                report.span(
                    ep.span(),
                    format!(
                        "endpoint {address}: weight {} is not in 1..={MAX_WEIGHT}",
                        e.weight
                    ),
                );
            }
            if endpoints.iter().any(|x| x.address == address) {
                report.span(
                    ep.span(),
                    format!("region {name}: endpoint {address} is listed twice"),
                );
            }
            endpoints.push(Endpoint {
                address,
                weight: e.weight.clamp(1, MAX_WEIGHT) as u32,
            });
        }
        let merged = match &region.health {
            Some(h) => zone_health
                .map_or_else(|| h.get_ref().clone(), |z| z.get_ref().overlay(h.get_ref())),
            None => zone_health.map(|z| z.get_ref().clone()).unwrap_or_default(),
        };
        let spec = match merged.resolve(base, region.endpoints.len()) {
            Ok(spec) => spec,
            Err(mistakes) => {
                for m in mistakes {
                    // The same mistake at the same key: the zone's table, reported above.
                    if zone_mistakes.contains(&m) {
                        continue;
                    }
                    // A key that no table writes is the region's to set.
                    let at = m
                        .span
                        .or_else(|| region.health.as_ref().map(Spanned::span))
                        .unwrap_or_else(|| span.clone());
                    report.span(at, format!("region {name}: health: {}", m.error));
                }
                health::HealthToml::default()
                    .resolve(base, 1)
                    .expect("defaults are valid")
            }
        };
        let mut targets = Vec::new();
        // Endpoints with a bad address were reported above and left out.
        for ep in &region.endpoints {
            let e = ep.get_ref();
            let Ok(address) = e.address else { continue };
            match health::target(&spec, address, e.check_address.as_deref()) {
                Ok(t) => targets.push(t),
                Err(msg) => {
                    report.span(ep.span(), format!("region {name}: {msg}"));
                    targets.push(None);
                }
            }
        }
        checks.push(RegionCheck { spec, targets });
        ids.insert(name.clone(), regions.len());
        regions.push(Region {
            name: name.clone(),
            location: GeoPoint {
                lat: loc.lat,
                lon: loc.lon,
            },
            endpoints,
        });
    }
    (regions, checks, ids)
}

fn steered(
    parsed: &ZoneToml,
    origin: &Name,
    regions: &[Region],
    region_ids: &HashMap<String, usize>,
    nodes: &mut HashMap<LowerName, Node>,
    report: &mut Report<'_>,
) -> Vec<Steered> {
    let mut known: Vec<&str> = region_ids.keys().map(String::as_str).collect();
    known.sort_unstable();
    let known = known.join(", ");
    let mut out = Vec::new();
    for (key, spec) in &parsed.steered {
        let key_span = key.span();
        let name = match Name::parse(key.get_ref(), Some(origin)) {
            Ok(n) => n,
            Err(e) => {
                report.span(
                    key_span,
                    format!("bad steered name {:?}: {e}", key.get_ref()),
                );
                continue;
            }
        };
        let display = name.to_ascii();
        if !origin.zone_of(&name) {
            report.span(
                key_span,
                format!("steered name {display} is outside the zone {origin}"),
            );
            continue;
        }
        let spec = spec.get_ref();
        let mut ids = Vec::new();
        for r in &spec.regions {
            match region_ids.get(r.get_ref()) {
                Some(&id) if ids.contains(&id) => report.span(
                    r.span(),
                    format!("{display}: region {:?} is listed twice", r.get_ref()),
                ),
                Some(&id) => ids.push(id),
                None => report.span(
                    r.span(),
                    format!("unknown region {:?} (known: {known})", r.get_ref()),
                ),
            }
        }
        if spec.regions.is_empty() {
            report.span(key_span.clone(), format!("{display}: `regions` is empty"));
        }
        let ttl = match &spec.ttl {
            Some(t) if !(0..=i64::from(MAX_TTL)).contains(t.get_ref()) => {
                report.span(
                    t.span(),
                    format!(
                        "{display}: bad TTL {}: must be 0..={MAX_TTL} (RFC 2181 §8)",
                        t.get_ref()
                    ),
                );
                0
            }
            Some(t) => *t.get_ref() as u32,
            None => DEFAULT_STEERED_TTL,
        };
        let answers = match &spec.answers {
            Some(a) if !(1..=MAX_ANSWERS).contains(a.get_ref()) => {
                report.span(
                    a.span(),
                    format!(
                        "{display}: answers {} is not in 1..={MAX_ANSWERS}",
                        a.get_ref()
                    ),
                );
                None
            }
            Some(a) => Some(*a.get_ref() as usize),
            None => None,
        };
        let default_region = match &spec.default_region {
            Some(d) => match region_ids.get(d.get_ref()) {
                Some(id) if ids.contains(id) => *id,
                Some(_) => {
                    report.span(
                        d.span(),
                        format!(
                            "{display}: default-region {:?} is not one of its regions",
                            d.get_ref()
                        ),
                    );
                    0
                }
                None => {
                    report.span(
                        d.span(),
                        format!("unknown region {:?} (known: {known})", d.get_ref()),
                    );
                    0
                }
            },
            None => ids.first().copied().unwrap_or(0),
        };

        let policy = match spec
            .policy
            .as_ref()
            .map(|p| (p.get_ref().as_str(), p.span()))
        {
            None | Some(("nearest", _)) => Policy::Nearest,
            Some(("failover", _)) => Policy::Failover,
            Some((other, span)) => {
                report.span(
                    span,
                    format!("{display}: policy {other:?} must be \"nearest\" or \"failover\""),
                );
                Policy::Nearest
            }
        };
        let fallback = match spec.fallback.as_ref().map(|f| (f.get_ref(), f.span())) {
            None | Some((FallbackToml::All, _)) => Fallback::All,
            Some((FallbackToml::Static(addrs), span)) => {
                if addrs.is_empty() {
                    report.span(
                        span.clone(),
                        format!("{display}: fallback is empty: give addresses, or \"all\""),
                    );
                }
                let mut endpoints = Vec::new();
                for a in addrs {
                    match a {
                        Ok(address) => endpoints.push(Endpoint {
                            address: *address,
                            weight: 1,
                        }),
                        Err(msg) => report.span(span.clone(), format!("{display}: {msg}")),
                    }
                }
                Fallback::Static(endpoints)
            }
        };
        let trouble_ttl = match &spec.trouble_ttl {
            Some(t) if !(0..=i64::from(MAX_TTL)).contains(t.get_ref()) => {
                report.span(
                    t.span(),
                    format!(
                        "{display}: bad trouble-ttl {}: must be 0..={MAX_TTL}",
                        t.get_ref()
                    ),
                );
                DEFAULT_TROUBLE_TTL
            }
            Some(t) => *t.get_ref() as u32,
            None => DEFAULT_TROUBLE_TTL,
        };

        let lower = LowerName::new(&name);
        let apex = origin.num_labels();
        let full = name.to_lowercase();
        let cut = (apex + 1..=full.num_labels()).find_map(|depth| {
            let ancestor = LowerName::new(&full.trim_to(depth as usize));
            nodes
                .get(&ancestor)
                .filter(|n| n.is_cut())
                .map(|_| ancestor)
        });
        if let Some(cut) = cut {
            report.span(
                key_span,
                format!("steered name {display} is at or below the delegation {cut}"),
            );
            continue;
        }
        let node = nodes.entry(lower).or_default();
        if let Some(clash) = node.rrsets.iter().find(|s| {
            matches!(
                s.rtype,
                RecordType::A | RecordType::AAAA | RecordType::CNAME
            )
        }) {
            report.span(
                key_span,
                format!(
                    "duplicate name: {display} is steered and also has {} records",
                    clash.rtype
                ),
            );
            continue;
        }
        let (bias_km, rules) = name_rules(spec, &display, &ids, region_ids, &known, report);
        let multivalue = match &spec.multivalue {
            Some(m) if !(2..=spec.regions.len().max(2) as i64).contains(m.get_ref()) => {
                report.span(
                    m.span(),
                    format!(
                        "{display}: multivalue {} is not in 2..={} (its regions)",
                        m.get_ref(),
                        spec.regions.len()
                    ),
                );
                None
            }
            Some(m) => Some(*m.get_ref() as usize),
            None => None,
        };
        node.steered = Some(out.len());
        add_ancestors(nodes, &name, origin);
        let config = SteeredName {
            regions: ids,
            default_region,
            ttl,
            trouble_ttl,
            answers,
            policy,
            fallback,
            bias_km,
            rules,
            multivalue,
        };
        for family in [Family::V4, Family::V6] {
            let size = steered_answer_size(&name, &config, regions, family);
            if size > UDP_PAYLOAD {
                let rtype = match family {
                    Family::V4 => RecordType::A,
                    Family::V6 => RecordType::AAAA,
                };
                report.warn(
                    report.lines.line(key_span.start),
                    does_not_fit_udp(&display, rtype, size),
                );
            }
        }
        out.push(Steered {
            name,
            index: out.len(),
            config,
        });
    }
    out
}

/// The bias and rules of a steered name; `ids` are its regions. Every mistake is reported at
/// its line: an unknown or foreign region, a bad network or AS, overlapping networks sent to
/// different regions, an unknown country or continent code, a fence with no region, split
/// weights that do not add up to 100.
fn name_rules(
    spec: &SteeredToml,
    display: &str,
    ids: &[usize],
    region_ids: &HashMap<String, usize>,
    known: &str,
    report: &mut Report<'_>,
) -> (Vec<(usize, f64)>, Rules) {
    // A region of this name, or reported.
    let region = |r: &Spanned<String>, report: &mut Report<'_>| -> Option<usize> {
        match region_ids.get(r.get_ref()) {
            Some(id) if ids.contains(id) => Some(*id),
            Some(_) => {
                report.span(
                    r.span(),
                    format!(
                        "{display}: region {:?} is not one of its regions",
                        r.get_ref()
                    ),
                );
                None
            }
            None => {
                report.span(
                    r.span(),
                    format!("unknown region {:?} (known: {known})", r.get_ref()),
                );
                None
            }
        }
    };
    let mut bias_km = Vec::new();
    for (r, km) in &spec.bias_km {
        let value = *km.get_ref();
        if !value.is_finite() || value.abs() > MAX_BIAS_KM {
            report.span(
                km.span(),
                format!(
                    "{display}: bias-km {value} for {:?} is not within ±{MAX_BIAS_KM}",
                    r.get_ref()
                ),
            );
        } else if let Some(id) = region(r, report) {
            bias_km.push((id, value));
        }
    }
    let mut rules = Rules::default();
    let mut network_lines = Vec::new();
    for (net, r) in &spec.networks {
        let parsed = match net.get_ref().parse::<ipnet::IpNet>() {
            Ok(n) if n.trunc() == n => n,
            Ok(n) => {
                report.span(
                    net.span(),
                    format!(
                        "{display}: network {n} has host bits set (did you mean {}?)",
                        n.trunc()
                    ),
                );
                continue;
            }
            Err(_) => {
                report.span(
                    net.span(),
                    format!(
                        "{display}: {:?} is not a network such as 203.0.113.0/24",
                        net.get_ref()
                    ),
                );
                continue;
            }
        };
        let Some(id) = region(r, report) else {
            continue;
        };
        if let Some((other, other_id, line)) = rules
            .networks
            .iter()
            .zip(&network_lines)
            .map(|(&(n, id), &line)| (n, id, line))
            .find(|&(n, other_id, _)| {
                other_id != id && (n.contains(&parsed) || parsed.contains(&n))
            })
        {
            report.span(
                net.span(),
                format!(
                    "{display}: network {parsed} -> {:?} overlaps {other} -> {:?} (line {line}): \
                     overlapping networks must go to the same region",
                    r.get_ref(),
                    other_region(region_ids, other_id)
                ),
            );
            continue;
        }
        network_lines.push(report.lines.line(net.span().start));
        rules.networks.push((parsed, id));
    }
    for (asn, r) in &spec.asns {
        let text = asn.get_ref();
        let digits = text
            .strip_prefix("AS")
            .or_else(|| text.strip_prefix("as"))
            .unwrap_or(text);
        let Ok(number) = digits.parse::<u32>() else {
            report.span(
                asn.span(),
                format!("{display}: {text:?} is not an AS number such as \"AS13335\" or \"13335\""),
            );
            continue;
        };
        if rules.asns.iter().any(|(a, _)| *a == number) {
            report.span(asn.span(), format!("{display}: AS{number} is listed twice"));
            continue;
        }
        if let Some(id) = region(r, report) {
            rules.asns.push((number, id));
        }
    }
    for fence in &spec.fence {
        let f = fence.get_ref();
        let mut countries = Vec::new();
        for c in &f.countries {
            match crate::geo::countries::lookup(c.get_ref()) {
                Some(country) => countries.push(country.code),
                None => report.span(
                    c.span(),
                    format!(
                        "{display}: fence: unknown country code {:?} (ISO 3166-1 alpha-2, such as \"DE\")",
                        c.get_ref()
                    ),
                ),
            }
        }
        let mut continents = Vec::new();
        for c in &f.continents {
            match Continent::from_code(c.get_ref()) {
                Some(k) => continents.push(k),
                None => report.span(
                    c.span(),
                    format!(
                        "{display}: fence: unknown continent code {:?} (AF, AN, AS, EU, NA, OC, SA)",
                        c.get_ref()
                    ),
                ),
            }
        }
        if f.countries.is_empty() && f.continents.is_empty() {
            report.span(
                fence.span(),
                format!("{display}: fence holds no client: give countries or continents"),
            );
        }
        let regions: Vec<usize> = f.regions.iter().filter_map(|r| region(r, report)).collect();
        if f.regions.is_empty() {
            report.span(
                fence.span(),
                format!("{display}: fence allows no region: name at least one in `regions`"),
            );
        }
        let when_all_down = match f
            .when_all_down
            .as_ref()
            .map(|w| (w.get_ref().as_str(), w.span()))
        {
            None | Some(("fail-open", _)) => WhenAllDown::FailOpen,
            Some(("fail-closed", _)) => WhenAllDown::FailClosed,
            Some((other, span)) => {
                report.span(
                    span,
                    format!(
                        "{display}: fence: when-all-down {other:?} must be \"fail-open\" or \"fail-closed\""
                    ),
                );
                WhenAllDown::FailOpen
            }
        };
        let mut closed_answer = Vec::new();
        if let Some(answer) = &f.closed_answer {
            if when_all_down != WhenAllDown::FailClosed {
                report.span(
                    answer.span(),
                    format!(
                        "{display}: fence: closed-answer needs when-all-down = \"fail-closed\""
                    ),
                );
            }
            for a in answer.get_ref() {
                match parse_addr(a) {
                    Ok(address) => closed_answer.push(Endpoint { address, weight: 1 }),
                    Err(msg) => report.span(answer.span(), format!("{display}: fence: {msg}")),
                }
            }
        }
        if !regions.is_empty() {
            rules.fences.push(Fence {
                countries,
                continents,
                regions,
                when_all_down,
                closed_answer,
            });
        }
    }
    for split in &spec.split {
        let s = split.get_ref();
        let from = region(&s.region, report);
        if let Some(from) = from
            && rules.splits.iter().any(|x| x.region == from)
        {
            report.span(
                s.region.span(),
                format!("{display}: region {:?} is split twice", s.region.get_ref()),
            );
        }
        let mut weights = Vec::new();
        let mut total = 0;
        for (r, w) in &s.weights {
            let weight = *w.get_ref();
            if !(0..=100).contains(&weight) {
                report.span(
                    w.span(),
                    format!("{display}: split weight {weight} is not a percentage (0..=100)"),
                );
                continue;
            }
            total += weight;
            if let Some(id) = region(r, report) {
                weights.push((id, weight as u32));
            }
        }
        if total != 100 {
            report.span(
                split.span(),
                format!("{display}: split weights add up to {total}, not 100"),
            );
        }
        if let Some(from) = from {
            rules.splits.push(Split {
                region: from,
                weights,
            });
        }
    }
    (bias_km, rules)
}

/// The name of region `id`, for a message.
fn other_region(region_ids: &HashMap<String, usize>, id: usize) -> String {
    region_ids
        .iter()
        .find(|(_, i)| **i == id)
        .map_or_else(String::new, |(n, _)| n.clone())
}

/// Octets of a name in a message, uncompressed.
fn wire_len(name: &Name) -> usize {
    name.iter().map(|label| 1 + label.len()).sum::<usize>() + 1
}

/// Octets of the smallest response answering a question for `owner` with `records`: the
/// header, the question, and each record with its owner compressed to a two-octet pointer
/// (RFC 1035 §4.1.4); names inside RDATA are counted uncompressed. An error when a record
/// cannot be encoded at all (a TXT string over 255 octets, RDATA over 65,535).
fn answer_size(
    owner: &Name,
    records: &[hickory_proto::rr::Record],
) -> Result<usize, hickory_proto::ProtoError> {
    use hickory_proto::serialize::binary::BinEncodable;
    let mut size = 12 + wire_len(owner) + 4;
    for r in records {
        // Owner pointer, then type, class, TTL and RDLENGTH.
        size += 2 + 10 + r.data.to_bytes()?.len();
    }
    Ok(size)
}

/// Octets of the longest answer a steered name can give for `family` over EDNS: as many
/// addresses as its largest region has, or as its fallback when every region is down, up to
/// its `answers` cap.
fn steered_answer_size(
    name: &Name,
    config: &SteeredName,
    regions: &[Region],
    family: Family,
) -> usize {
    let in_family = |&id: &usize| regions[id].endpoints(family).count();
    // The largest regions, as many as answer together.
    let mut sizes: Vec<usize> = config.regions.iter().map(in_family).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let largest = sizes
        .iter()
        .take(config.multivalue.unwrap_or(1))
        .sum::<usize>();
    let fallback = match &config.fallback {
        Fallback::All => config.regions.iter().map(in_family).sum(),
        Fallback::Static(addrs) => addrs
            .iter()
            .filter(|e| Family::of(&e.address) == family)
            .count(),
    };
    let addresses = largest
        .max(fallback)
        .min(config.answers.unwrap_or(usize::MAX));
    let rdata = match family {
        Family::V4 => 4,
        Family::V6 => 16,
    };
    12 + wire_len(name) + 4 + addresses * (2 + 10 + rdata) + OPT_SIZE
}

/// `n` with a comma between thousands, as the messages quote sizes.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn does_not_fit_udp(owner: &dyn fmt::Display, rtype: RecordType, size: usize) -> String {
    format!(
        "{owner} {rtype}: its longest answer is {} octets, over the {UDP_PAYLOAD} of UDP: \
         resolvers get it truncated and must ask again over TCP",
        thousands(size)
    )
}

/// Creates the empty non-terminals between `name` and the apex, so that they answer NODATA.
fn add_ancestors(nodes: &mut HashMap<LowerName, Node>, name: &Name, origin: &Name) {
    let mut n = name.to_lowercase();
    while n.num_labels() > origin.num_labels() {
        n = n.base_name();
        nodes.entry(LowerName::new(&n)).or_default();
    }
}

/// Turns checked records into nodes and RRsets.
struct ZoneBuilder<'r, 'a> {
    origin: &'r Name,
    report: &'r mut Report<'a>,
    records_line: usize,
}

impl<'r, 'a> ZoneBuilder<'r, 'a> {
    fn new(origin: &'r Name, report: &'r mut Report<'a>, records_line: usize) -> Self {
        ZoneBuilder {
            origin,
            report,
            records_line,
        }
    }

    fn build(
        self,
        records: Vec<LineRecord>,
    ) -> (HashMap<LowerName, Node>, Option<hickory_proto::rr::Record>) {
        let origin = self.origin;
        let mut nodes: HashMap<LowerName, Node> = HashMap::new();
        // First line of each RRset, to point at both halves of a conflict.
        let mut first_line: HashMap<(LowerName, RecordType), usize> = HashMap::new();
        let mut soa: Option<(usize, hickory_proto::rr::Record)> = None;

        for LineRecord { line, record } in records {
            let rtype = record.record_type();
            let name = record.name.clone();
            if record.dns_class != DNSClass::IN {
                self.report.at(
                    line,
                    format!("class {} is not served: only IN", record.dns_class),
                );
                continue;
            }
            if !origin.zone_of(&name) {
                self.report
                    .at(line, format!("{name} is outside the zone {origin}"));
                continue;
            }
            if rtype == RecordType::SOA {
                if name.to_lowercase() != *origin {
                    self.report.at(
                        line,
                        format!("SOA must be at the apex {origin}, not at {name}"),
                    );
                    continue;
                }
                if let Some((first, _)) = &soa {
                    self.report.at(
                        line,
                        format!("second SOA record (the first is at line {first})"),
                    );
                    continue;
                }
                soa = Some((line, record.clone()));
            }
            let lower = LowerName::new(&name);
            let node = nodes.entry(lower.clone()).or_default();
            match node.rrsets.iter_mut().find(|s| s.rtype == rtype) {
                Some(set) => {
                    let first = first_line[&(lower.clone(), rtype)];
                    if set.records.iter().any(|r| r.data == record.data) {
                        self.report.at(
                            line,
                            format!("duplicate record: {name} {rtype} is already at line {first}"),
                        );
                    } else if rtype == RecordType::CNAME {
                        self.report.at(
                            line,
                            format!("{name} has a second CNAME (line {first}); RFC 1034 §3.6.2 allows one"),
                        );
                    } else if set.records[0].ttl != record.ttl {
                        self.report.at(
                            line,
                            format!(
                                "TTL {} differs from TTL {} of the {name} {rtype} RRset at line {first} (RFC 2181 §5.2)",
                                record.ttl, set.records[0].ttl
                            ),
                        );
                    } else {
                        set.records.push(record);
                    }
                }
                None => {
                    first_line.insert((lower, rtype), line);
                    node.rrsets.push(RRset {
                        rtype,
                        records: vec![record],
                    });
                }
            }
        }

        for (name, node) in &nodes {
            for set in &node.rrsets {
                let line = first_line[&(name.clone(), set.rtype)];
                let owner = Name::from(name);
                match answer_size(&owner, &set.records) {
                    Ok(size) if size <= MAX_MESSAGE => {
                        if size + OPT_SIZE > UDP_PAYLOAD {
                            self.report
                                .warn(line, does_not_fit_udp(&owner, set.rtype, size + OPT_SIZE));
                        }
                    }
                    Ok(size) => self.report.at(
                        line,
                        format!(
                            "{owner} {}: the RRset ({} records) needs {} octets in its \
                             smallest answer, over the {} of a DNS message (RFC 1035 §4.2.2): \
                             it could never be served",
                            set.rtype,
                            set.records.len(),
                            thousands(size),
                            thousands(MAX_MESSAGE)
                        ),
                    ),
                    Err(e) => self.report.at(
                        line,
                        format!(
                            "{owner} {}: a record cannot be encoded ({e}): it could never be \
                             served",
                            set.rtype
                        ),
                    ),
                }
            }
        }

        let apex = LowerName::new(origin);
        if soa.is_none() {
            self.report.at(
                self.records_line,
                format!("missing SOA record at the apex {origin}"),
            );
        }
        if nodes
            .get(&apex)
            .is_none_or(|n| n.get(RecordType::NS).is_none())
        {
            self.report.at(
                self.records_line,
                format!("missing NS records at the apex {origin}"),
            );
        }

        for (name, node) in &nodes {
            if node.get(RecordType::CNAME).is_some() && node.rrsets.len() > 1 {
                let others: Vec<String> = node
                    .rrsets
                    .iter()
                    .filter(|s| s.rtype != RecordType::CNAME)
                    .map(|s| s.rtype.to_string())
                    .collect();
                self.report.at(
                    first_line[&(name.clone(), RecordType::CNAME)],
                    format!(
                        "{name} has a CNAME and other data ({}); RFC 1034 §3.6.2 forbids it",
                        others.join(", ")
                    ),
                );
            }
            // At a cut only NS and the child's DS (RFC 4035 §3.1.4.1: the parent's side),
            // below it only address glue may live (RFC 1034 §4.2.1).
            let full: Name = name.into();
            for depth in origin.num_labels() + 1..=full.num_labels() {
                let ancestor = LowerName::new(&full.trim_to(depth as usize));
                let Some(cut) = nodes.get(&ancestor) else {
                    continue;
                };
                if !cut.is_cut() {
                    continue;
                }
                let at_cut = depth == full.num_labels();
                for set in &node.rrsets {
                    let allowed = if at_cut {
                        matches!(set.rtype, RecordType::NS | RecordType::DS)
                    } else {
                        matches!(set.rtype, RecordType::A | RecordType::AAAA)
                    };
                    if !allowed {
                        self.report.at(
                            first_line[&(name.clone(), set.rtype)],
                            format!(
                                "{name} {} is occluded by the delegation at {ancestor}: only {} may be there",
                                set.rtype,
                                if at_cut { "NS and DS" } else { "glue A/AAAA" }
                            ),
                        );
                    }
                }
                break;
            }
        }

        let owners: Vec<Name> = nodes.keys().map(Name::from).collect();
        for owner in owners {
            add_ancestors(&mut nodes, &owner, origin);
        }
        (nodes, soa.map(|(_, r)| r))
    }
}

#[cfg(test)]
mod tests;
