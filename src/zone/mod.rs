//! Zones: ordinary records, regions and steered names, loaded from `zones/*.toml`.
//!
//! [`load_dir`] turns files into a [`ZoneSet`] and reports every problem as `file:line: what`.
//! Each region's health check ([`RegionCheck`]) is zone configuration and lives here too; the
//! health monitor reads it, and nothing here imports `health`.
//! [`Zone::resolve`] is the authoritative lookup of RFC 1034 §4.3.2 (referrals, CNAME chains,
//! wildcards, empty non-terminals); the client-dependent part of a steered name is left to the
//! caller, which alone knows the client.

mod check;
pub mod dnssec;
mod health;
mod load;
pub mod load_source;
mod records;
pub mod rollover;

pub use check::{CheckKind, CheckSpec, HttpCheck, Quorum, RegionCheck};
pub use load::{Diagnostic, LoadError, load_dir, load_file, load_keyed};
pub use records::MAX_TTL;

use std::collections::HashMap;
use std::path::PathBuf;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::steer::{Region, SteeredName};

/// Longest CNAME chain followed inside a zone before the answer stops (loop guard).
const MAX_CNAME_CHAIN: usize = 8;

/// Every loaded zone, found by the longest zone name that contains the query name.
#[derive(Debug, Default)]
pub struct ZoneSet {
    /// In origin order; a zone's position is its `index`.
    zones: Vec<Zone>,
    by_name: HashMap<LowerName, usize>,
    /// Whether any zone has a wildcard: when none has, no name needs looking up for one.
    wildcards: bool,
}

impl ZoneSet {
    /// The set of `zones`, each given its index in origin order.
    pub fn new(mut zones: Vec<Zone>) -> Self {
        zones.sort_by(|a, b| a.origin.cmp(&b.origin));
        for (index, z) in zones.iter_mut().enumerate() {
            z.index = index;
        }
        let by_name = zones
            .iter()
            .map(|z| (LowerName::new(&z.origin), z.index))
            .collect();
        let wildcards = zones
            .iter()
            .any(|z| z.nodes.keys().any(LowerName::is_wildcard));
        ZoneSet {
            zones,
            by_name,
            wildcards,
        }
    }

    /// Reads the key of every zone with DNSSEC on (from `state_dir` unless its zone file names
    /// the file) and publishes it; a zone whose key is missing or unusable fails the load at
    /// its `dnssec` line.
    pub fn attach_keys(&mut self, state_dir: &std::path::Path) -> Result<(), LoadError> {
        let mut diagnostics = Vec::new();
        for zone in &mut self.zones {
            let Some(d) = &zone.dnssec else { continue };
            let spec = d.spec.clone();
            let path = spec.key_path(&zone.file, &zone.origin, state_dir);
            let at = |message: String| Diagnostic {
                file: zone.file.clone(),
                line: Some(spec.line),
                message,
            };
            match load_signer(&spec, &path, &zone.origin, state_dir) {
                Ok(signer) => zone.attach(std::sync::Arc::new(signer)),
                Err(dnssec::KeyError::Read(p, e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    diagnostics.push(at(format!(
                        "dnssec is on but the key file {} does not exist: make one with `meridian dnssec keygen --zone {}`",
                        p.display(),
                        zone.origin
                    )))
                }
                Err(e) => diagnostics.push(at(format!("dnssec: {e}"))),
            }
        }
        if diagnostics.is_empty() {
            Ok(())
        } else {
            Err(LoadError(diagnostics))
        }
    }

    /// The key-set files of the zones whose keys come from the state directory: a change
    /// to one is a rollover step, which a reload publishes.
    pub fn keyset_files(&self, state_dir: &std::path::Path) -> Vec<PathBuf> {
        self.zones
            .iter()
            .filter(|z| z.dnssec.as_ref().is_some_and(|d| d.spec.key.is_none()))
            .map(|z| rollover::keyset_path(&z.origin, state_dir))
            .collect()
    }

    /// Whether any zone has a wildcard.
    pub fn has_wildcards(&self) -> bool {
        self.wildcards
    }

    /// The owner of the wildcard whose records answer for `name` (RFC 4592), when no node of
    /// its zone owns `name` itself.
    pub fn wildcard_answering(&self, name: &LowerName) -> Option<&LowerName> {
        let zone = self.find(name)?;
        if zone.nodes.contains_key(name) {
            return None;
        }
        zone.wildcard_for(name).map(|(owner, _)| owner)
    }

    /// The zones in index order.
    pub fn by_index(&self) -> Vec<&Zone> {
        self.zones.iter().collect()
    }

    pub fn get(&self, index: usize) -> Option<&Zone> {
        self.zones.get(index)
    }

    /// The zone with the most labels that `qname` is at or below.
    pub fn find(&self, qname: &LowerName) -> Option<&Zone> {
        let mut name = qname.clone();
        loop {
            if let Some(&i) = self.by_name.get(&name) {
                return Some(&self.zones[i]);
            }
            if name.is_root() {
                return None;
            }
            name = name.base_name();
        }
    }

    pub fn zones(&self) -> impl Iterator<Item = &Zone> {
        self.zones.iter()
    }

    pub fn len(&self) -> usize {
        self.zones.len()
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }
}

/// The records of one owner name that share a type.
#[derive(Debug, Clone)]
pub struct RRset {
    pub rtype: RecordType,
    pub records: Vec<Record>,
}

/// A name answered by steering.
#[derive(Debug, Clone)]
pub struct Steered {
    pub name: Name,
    /// Position in [`Zone::steered`]: indexes per-name caches and counters.
    pub index: usize,
    pub config: SteeredName,
}

#[derive(Debug, Default, Clone)]
struct Node {
    rrsets: Vec<RRset>,
    /// Index into [`Zone::steered`].
    steered: Option<usize>,
}

impl Node {
    fn get(&self, rtype: RecordType) -> Option<&RRset> {
        self.rrsets.iter().find(|s| s.rtype == rtype)
    }

    /// A zone cut below the apex: the node owns NS records.
    fn is_cut(&self) -> bool {
        self.get(RecordType::NS).is_some()
    }

    fn is_empty(&self) -> bool {
        self.rrsets.is_empty() && self.steered.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct Zone {
    pub origin: Name,
    /// Position in its [`ZoneSet`], in origin order: indexes per-zone tables such as metrics.
    pub index: usize,
    pub file: PathBuf,
    /// A hash of the file's bytes, the same on every node: what a cluster compares.
    pub content_hash: u64,
    /// The SOA as it goes into negative answers: TTL = min(SOA TTL, SOA MINIMUM) (RFC 2308 §3).
    negative_soa: Record,
    soa: Record,
    /// Every owner name, plus every empty non-terminal between an owner and the apex.
    nodes: HashMap<LowerName, Node>,
    pub regions: Vec<Region>,
    /// Health checks of each region, in region order.
    pub checks: Vec<RegionCheck>,
    /// Each region's capacity for spillover ([`crate::steer::spill`]), in region order;
    /// `None`: the region never sheds.
    pub capacity: Vec<Option<f64>>,
    /// Where each region's load is scraped from, in region order; `None`: reports only.
    pub load_from: Vec<Option<load_source::LoadSource>>,
    /// Keep the last good probe states when every probed region fails at once.
    pub isolation_guard: bool,
    /// In a cluster, how the nodes' observations decide this zone's endpoints; `None`: the
    /// cluster's rule.
    pub quorum: Option<Quorum>,
    /// DNSSEC, when the zone file turns it on.
    pub dnssec: Option<dnssec::Dnssec>,
    pub steered: Vec<Steered>,
    /// What loads but deserves a look (answers too long for UDP), as `file:line: message`.
    pub warnings: Vec<Diagnostic>,
}

/// A steered name reached by a query: the caller adds the client's addresses to the answer.
#[derive(Debug, Clone)]
pub struct SteeredHit {
    pub index: usize,
    /// Owner of the answer records, in the case the query used.
    pub owner: Name,
}

/// The authoritative answer for one question, before the client-dependent part.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    /// Set when the chain ends at a steered name; the answer is then incomplete.
    pub steered: Option<SteeredHit>,
    /// What a signed answer must prove absent, when something is.
    pub denial: Option<Denial>,
    /// Answer owners synthesized from a wildcard (RFC 4592), which sign as the wildcard.
    pub expanded: Vec<Expansion>,
}

/// A name the answer says something does not exist at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub name: Name,
    pub kind: DenialKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialKind {
    /// The name does not exist (NXDOMAIN).
    NoName,
    /// The name exists without this type (NODATA), an empty non-terminal included.
    NoData(RecordType),
    /// A referral: the cut's NS is not authoritative here, and its DS is proven or absent.
    Cut,
}

/// An answer owner synthesized from a wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    pub owner: Name,
    /// The wildcard's label count without its `*`: the RRSIG Labels field.
    pub labels: u8,
    /// The closest encloser's child on the way to `owner` (RFC 5155 §1.3 "next closer"),
    /// which a signed answer proves absent.
    pub next_closer: Name,
}

/// The signer of a zone with DNSSEC on: the keys its key-set file lists, when the zone's
/// keys are the state directory's and it has one, else the one CSK at `path`.
pub fn load_signer(
    spec: &dnssec::Spec,
    path: &std::path::Path,
    origin: &Name,
    state_dir: &std::path::Path,
) -> Result<dnssec::Signer, dnssec::KeyError> {
    if spec.key.is_none() {
        let set_path = rollover::keyset_path(origin, state_dir);
        if let Some(set) = rollover::KeySet::read(&set_path)? {
            let dir = set_path.parent().expect("a key-set path has a directory");
            return dnssec::Signer::load_set(dir, &set, spec.algorithm, origin, spec);
        }
    }
    dnssec::Signer::load(path, spec.algorithm, origin, spec)
}

impl Zone {
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// How long an answer of this zone given now may sit in a resolver's cache, at most: its
    /// longest steered TTL and a second (answers are stamped in whole seconds, so a cache may
    /// hold one up to a second past its TTL). Zero without steered names.
    pub fn cache_hold(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.steered
                .iter()
                .map(|s| u64::from(s.config.ttl) + 1)
                .max()
                .unwrap_or(0),
        )
    }

    pub fn steered_by_name(&self, name: &LowerName) -> Option<&Steered> {
        self.nodes
            .get(name)
            .and_then(|n| n.steered)
            .map(|i| &self.steered[i])
    }

    /// The SOA record of negative answers, whose TTL NSEC records of denial take too (RFC
    /// 9077: the lesser of the SOA's TTL and MINIMUM).
    pub fn negative_soa(&self) -> &Record {
        &self.negative_soa
    }

    /// The zone's signer, when DNSSEC is on and the key is loaded.
    pub fn signer(&self) -> Option<&dnssec::Signer> {
        self.dnssec.as_ref()?.signer.as_deref()
    }

    /// The types `name` owns, as an NSEC bitmap states them: its RRsets, A and AAAA for a
    /// steered name; a wildcard's types for a name it answers.
    pub fn types_at(&self, name: &LowerName) -> Vec<RecordType> {
        let node = match self.nodes.get(name) {
            Some(n) => n,
            None => match self.wildcard_for(name) {
                Some((_, n)) => n,
                None => return Vec::new(),
            },
        };
        let mut types: Vec<RecordType> = node.rrsets.iter().map(|s| s.rtype).collect();
        if node.steered.is_some() {
            types.extend([RecordType::A, RecordType::AAAA]);
        }
        types
    }

    /// The RRset of `rtype` at `name`, if the zone has it.
    pub fn rrset(&self, name: &LowerName, rtype: RecordType) -> Option<&RRset> {
        self.nodes.get(name)?.get(rtype)
    }

    /// The largest TTL of any RRset the zone answers with: records, steered names (their
    /// trouble TTL included) and negative answers. A rollover waits this long for the
    /// signatures of a retiring key to leave every cache.
    pub fn max_ttl(&self) -> u32 {
        let records = self
            .nodes
            .values()
            .flat_map(|n| n.rrsets.iter())
            .flat_map(|s| s.records.iter().map(|r| r.ttl));
        let steered = self
            .steered
            .iter()
            .flat_map(|s| [s.config.ttl, s.config.trouble_ttl]);
        records
            .chain(steered)
            .chain([self.soa.ttl, self.negative_soa.ttl])
            .max()
            .unwrap_or(0)
    }

    /// The zone's static records signed with `signer` at `now`, as master-file text: every
    /// RRset with its RRSIGs (a cut's NS and the glue below it unsigned: RFC 4035 §2.2) and
    /// an NSEC chain over the names that own records, in canonical order (RFC 4034 §6.1),
    /// as an offline signer makes it, so that `dnssec-verify` can check the whole zone.
    /// Online answers deny with compact denial instead (RFC 9824), which proves names one
    /// at a time and has no chain to check. Steered names are left out: their answer depends
    /// on the client (the validators of `tests/dnssec.rs` check those), and the chain
    /// here, which skips them, is for checking this text only.
    pub fn signed_text(
        &self,
        signer: &dnssec::Signer,
        now: u32,
    ) -> Result<String, dnssec::KeyError> {
        use std::fmt::Write as _;
        let below_cut = |n: &LowerName| self.cut_above(n, RecordType::DS).is_some();
        let mut names: Vec<(Name, &Node)> = self
            .nodes
            .iter()
            .filter(|(n, node)| !node.rrsets.is_empty() && !below_cut(n))
            .map(|(n, node)| (Name::from(n), node))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let glue: Vec<&Record> = self
            .nodes
            .iter()
            .filter(|(n, _)| below_cut(n))
            .flat_map(|(_, node)| node.rrsets.iter().flat_map(|s| s.records.iter()))
            .collect();
        let mut out = String::new();
        let mut line =
            |r: &Record| writeln!(out, "{}", master_line(r)).expect("writing to a String");
        let nsec_ttl = self.negative_soa.ttl;
        for (i, (name, node)) in names.iter().enumerate() {
            let cut = node.is_cut() && name != &self.origin;
            let mut sets: Vec<&RRset> = node.rrsets.iter().collect();
            // The SOA first, as a zone file begins.
            sets.sort_by_key(|s| (s.rtype != RecordType::SOA, u16::from(s.rtype)));
            for set in sets {
                let records: Vec<Record> =
                    set.records.iter().map(|r| with_owner(r, name)).collect();
                records.iter().for_each(&mut line);
                if !(cut && set.rtype == RecordType::NS) {
                    let (rrsigs, _) = signer.sign(&records, name.num_labels(), now)?;
                    rrsigs.iter().for_each(&mut line);
                }
            }
            let next = names[(i + 1) % names.len()].0.clone();
            let types = node
                .rrsets
                .iter()
                .map(|s| s.rtype)
                .chain([RecordType::RRSIG, RecordType::NSEC]);
            let nsec = Record::from_rdata(
                name.clone(),
                nsec_ttl,
                RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::NSEC(
                    hickory_proto::dnssec::rdata::NSEC::new(next, types),
                )),
            );
            let (rrsigs, _) = signer.sign(std::slice::from_ref(&nsec), name.num_labels(), now)?;
            line(&nsec);
            rrsigs.iter().for_each(&mut line);
        }
        glue.into_iter().for_each(line);
        Ok(out)
    }

    /// Publishes `signer`'s keys at the apex (DNSKEY, CDS, CDNSKEY, with the SOA's TTL) and
    /// signs with them from now on.
    fn attach(&mut self, signer: std::sync::Arc<dnssec::Signer>) {
        let apex = self
            .nodes
            .get_mut(&LowerName::new(&self.origin))
            .expect("the apex owns the SOA");
        let records = signer.apex_records(self.soa.ttl);
        for set in records.chunk_by(|a, b| a.record_type() == b.record_type()) {
            let rtype = set[0].record_type();
            apex.rrsets.retain(|s| s.rtype != rtype);
            apex.rrsets.push(RRset {
                rtype,
                records: set.to_vec(),
            });
        }
        if let Some(d) = &mut self.dnssec {
            d.signer = Some(signer);
        }
    }

    /// Adds the zone's SOA to the authority section: the proof of a negative answer.
    pub fn add_negative_soa(&self, resolved: &mut Resolved) {
        resolved.authorities.push(self.negative_soa.clone());
    }

    /// Answers `qname`/`qtype` from this zone (RFC 1034 §4.3.2, steps 3a-3c).
    pub fn resolve(&self, qname: &Name, qtype: RecordType) -> Resolved {
        let mut out = Resolved {
            authoritative: true,
            ..Resolved::default()
        };
        let mut owner = qname.clone();
        let mut visited = vec![LowerName::new(qname)];
        for _ in 0..=MAX_CNAME_CHAIN {
            match self.step(&owner, qtype, &mut out) {
                Some(next) => {
                    let lower = LowerName::new(&next);
                    if visited.contains(&lower) {
                        // A loop: each CNAME once, and the resolver sees the cycle.
                        break;
                    }
                    visited.push(lower);
                    owner = next;
                }
                None => return out,
            }
        }
        // Chain too long or looping: answer with what was followed, as BIND does.
        out
    }

    /// One step of the lookup; returns the CNAME target to continue with, if any.
    fn step(&self, owner: &Name, qtype: RecordType, out: &mut Resolved) -> Option<Name> {
        let lower = LowerName::new(owner);
        if !self.contains(&lower) {
            // A CNAME led out of the zone: the resolver follows it.
            return None;
        }
        // Step 3b: a zone cut above or at the name sends a referral. DS lives on the parent
        // side of a cut (RFC 4035 §3.1.4.1), so a DS query at the cut is answered here.
        if let Some(cut) = self.cut_above(&lower, qtype) {
            if out.answers.is_empty() {
                self.referral(cut, out);
            }
            return None;
        }
        let node = match self.nodes.get(&lower) {
            Some(n) => n,
            None => match self.wildcard_for(&lower) {
                Some((_, n)) => n,
                None => {
                    // RFC 6604 §3: the rcode describes the last name in the chain.
                    out.rcode = ResponseCode::NXDomain;
                    self.add_negative_soa(out);
                    out.denial = Some(Denial {
                        name: owner.clone(),
                        kind: DenialKind::NoName,
                    });
                    return None;
                }
            },
        };
        let expansion = (!self.nodes.contains_key(&lower)).then(|| {
            let encloser_labels = node_labels_of_wildcard(self, &lower);
            Expansion {
                owner: owner.clone(),
                labels: encloser_labels,
                next_closer: owner.trim_to(usize::from(encloser_labels) + 1),
            }
        });
        if let Some(cname) = node.get(RecordType::CNAME)
            && qtype != RecordType::CNAME
        {
            let record = with_owner(&cname.records[0], owner);
            let target = match &record.data {
                RData::CNAME(c) => c.0.clone(),
                _ => unreachable!("CNAME rrset holds CNAME data"),
            };
            out.answers.push(record);
            out.expanded.extend(expansion);
            return Some(target);
        }
        if let Some(index) = node.steered
            && matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::ANY)
        {
            out.steered = Some(SteeredHit {
                index,
                owner: owner.clone(),
            });
            out.expanded.extend(expansion);
            return None;
        }
        let rrset = if qtype == RecordType::ANY {
            // RFC 8482 §4.2: answer ANY with one RRset of the name, not all of them.
            node.rrsets.first()
        } else {
            node.get(qtype)
        };
        match rrset {
            Some(set) => {
                out.answers
                    .extend(set.records.iter().map(|r| with_owner(r, owner)));
                out.expanded.extend(expansion);
                self.add_glue(set, out);
            }
            None => {
                self.add_negative_soa(out);
                out.denial = Some(Denial {
                    name: owner.clone(),
                    kind: DenialKind::NoData(qtype),
                });
            }
        }
        None
    }

    fn contains(&self, name: &LowerName) -> bool {
        LowerName::new(&self.origin).zone_of(name)
    }

    /// The highest zone cut strictly below the apex that is at or above `name`.
    fn cut_above(&self, name: &LowerName, qtype: RecordType) -> Option<&Node> {
        let apex = self.origin.num_labels();
        let labels = name.num_labels();
        let full: Name = name.into();
        for depth in apex + 1..=labels {
            let ancestor = LowerName::new(&full.trim_to(depth as usize));
            match self.nodes.get(&ancestor) {
                Some(node) if node.is_cut() => {
                    if depth == labels && qtype == RecordType::DS {
                        return None;
                    }
                    return Some(node);
                }
                Some(_) => {}
                None => return None,
            }
        }
        None
    }

    /// `*.<closest encloser>` and its node, if the zone has it (RFC 4592 §3.3.1).
    fn wildcard_for(&self, name: &LowerName) -> Option<(&LowerName, &Node)> {
        let mut encloser = name.base_name();
        while !self.nodes.contains_key(&encloser) {
            if !self.contains(&encloser) {
                return None;
            }
            encloser = encloser.base_name();
        }
        let wildcard = LowerName::new(&Name::from(&encloser).prepend_label("*").ok()?);
        self.nodes
            .get_key_value(&wildcard)
            .filter(|(_, n)| !n.is_empty())
    }

    /// A referral: NS of the cut in authority, their in-zone addresses as glue, AA clear.
    fn referral(&self, cut: &Node, out: &mut Resolved) {
        let ns = cut.get(RecordType::NS).expect("a cut owns NS records");
        out.authoritative = false;
        out.authorities.extend(ns.records.iter().cloned());
        out.denial = Some(Denial {
            name: ns.records[0].name.clone(),
            kind: DenialKind::Cut,
        });
        self.add_glue(ns, out);
    }

    /// Addresses of in-zone targets of NS, MX and SRV records (RFC 1034 §3.6.2 additional
    /// section processing). Needed for NS (glue); helpful for the others.
    fn add_glue(&self, set: &RRset, out: &mut Resolved) {
        for record in &set.records {
            let target = match &record.data {
                RData::NS(ns) => &ns.0,
                RData::MX(mx) => &mx.exchange,
                RData::SRV(srv) => &srv.target,
                _ => continue,
            };
            if let Some(node) = self.nodes.get(&LowerName::new(target)) {
                for rtype in [RecordType::A, RecordType::AAAA] {
                    if let Some(addrs) = node.get(rtype) {
                        out.additionals.extend(addrs.records.iter().cloned());
                    }
                }
            }
        }
    }
}

/// The label count of the closest encloser of `name`, whose wildcard answers it.
fn node_labels_of_wildcard(zone: &Zone, name: &LowerName) -> u8 {
    let (wildcard, _) = zone
        .wildcard_for(name)
        .expect("called for a name a wildcard answers");
    wildcard.num_labels()
}

/// The record with `owner` as its name: answers echo the case of the question (0x20).
/// `record` as a master-file line (RFC 1035 §5.1). hickory's text form prints a TXT's
/// strings bare, which a zone parser splits at spaces: they are quoted here, `"` and `\`
/// escaped and octets outside printable ASCII as `\DDD`.
fn master_line(record: &Record) -> String {
    let RData::TXT(txt) = &record.data else {
        return record.to_string();
    };
    let mut strings = Vec::new();
    for s in txt.txt_data.iter() {
        let mut q = String::from("\"");
        for &b in s.iter() {
            match b {
                b'"' | b'\\' => {
                    q.push('\\');
                    q.push(char::from(b));
                }
                0x20..=0x7E => q.push(char::from(b)),
                _ => q.push_str(&format!("\\{b:03}")),
            }
        }
        q.push('"');
        strings.push(q);
    }
    format!(
        "{} {} {} TXT {}",
        record.name,
        record.ttl,
        record.dns_class,
        strings.join(" ")
    )
}

fn with_owner(record: &Record, owner: &Name) -> Record {
    let mut r = record.clone();
    r.name = owner.clone();
    r
}

#[cfg(test)]
mod tests;
