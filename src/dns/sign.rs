//! Online DNSSEC signing of one answer, for a query with DO=1 to a zone with a key.
//!
//! Every RRset the zone is authoritative for gets its RRSIG: answers (static, steered, CNAME
//! links, wildcard expansions signed as their wildcard, RFC 4035 §5.3.4), the SOA of negative
//! answers and the DS of a secure delegation. A referral's NS and glue stay unsigned (RFC 4035
//! §2.2: they belong to the child).
//!
//! Denial of existence is RFC 9824 compact denial: one NSEC owned by the name itself, with
//! next name `\000.<name>`, so it covers nothing but the name and is one signature however
//! the zone looks. Its bitmap lists the name's types (NODATA, empty non-terminals, wildcard
//! no-data: the name is treated as existing), or only RRSIG NSEC NXNAME for a name that does
//! not exist, which goes out as NOERROR (RFC 9824 §3). Chosen over RFC 4470 minimally
//! covering NSEC because it needs no predecessor arithmetic and no second NSEC for the
//! wildcard, and costs one signature per negative answer; validators that predate it accept
//! it as plain NSEC (unbound 1.17, Knot Resolver 5.6 and BIND 9.18's delv, checked by
//! `tests/dnssec.rs` for unbound). An insecure delegation gets an NSEC at the cut with
//! bitmap NS RRSIG NSEC: no DS. The one place a covering NSEC is needed is a positive
//! wildcard answer, whose signature says the query name does not exist: an NSEC from just
//! before the next closer name to just after it and its descendants proves it.

use std::time::Instant;

use hickory_proto::dnssec::rdata::{DNSSECRData, NSEC};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::metrics::SigningCounters;
use crate::serving::Snapshot;
use crate::serving::answer::{self, Client};
use crate::steer::Family;
use crate::zone::dnssec::{KeyError, Signer};
use crate::zone::{DenialKind, Resolved, Zone};

/// Most hot questions kept: more distinct (name, type, client network) than a failover
/// should re-sign at once.
const HOT_CAPACITY: usize = 10_000;
/// How long a question stays hot after it was last answered by the general path, in seconds.
const HOT_FOR: u32 = 600;

/// A hot question: the name, the type, and for a steered name the client it was steered for.
type Question = (Name, RecordType, Option<Client>);

/// Questions with DO=1 that the general path answered lately (the fast path then answers
/// them from its cache, until a swap empties it or the signature window moves): steered
/// ones with their client, and static ones. After a swap, [`presign`] answers them again
/// off the query path, so their new RRsets are signed before clients ask; before a window
/// boundary, it signs them for the next window.
#[derive(Debug, Default)]
pub struct Hot {
    seen: std::sync::Mutex<std::collections::HashMap<Question, u32>>,
}

impl Hot {
    /// Notes a question at `now` (Unix seconds); `client` for a steered name. Never waits:
    /// when another thread holds the table, or it is full of other questions, this one is
    /// not noted.
    pub fn note(&self, name: &Name, qtype: RecordType, client: Option<Client>, now: u32) {
        let Ok(mut seen) = self.seen.try_lock() else {
            return;
        };
        let key = (name.to_lowercase(), qtype, client);
        if seen.len() < HOT_CAPACITY || seen.contains_key(&key) {
            seen.insert(key, now);
        }
    }

    /// The questions noted within [`HOT_FOR`] of `now`; older ones are forgotten.
    fn recent(&self, now: u32) -> Vec<Question> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, at| now.saturating_sub(*at) <= HOT_FOR);
        seen.keys().cloned().collect()
    }
}

/// Signs, for `snapshot`, the answers to the questions `hot` held at `now`, as the general
/// path would answer them, with the signature window of `sign_at`, and returns how many
/// signatures that made: the RRsets go into their zone's signature cache, where the queries
/// that follow find them. Called off the query path when a reload, override or health
/// change swaps the snapshot (`sign_at` = `now`), and ahead of a window boundary
/// (`sign_at` = the boundary).
pub fn presign(
    snapshot: &Snapshot,
    hot: &Hot,
    now: u32,
    sign_at: u32,
    counters: &SigningCounters,
) -> u64 {
    let before = counters.signatures();
    let started = Instant::now();
    let hot = hot.recent(now);
    let answers = hot.len() as u64;
    for (name, qtype, client) in hot {
        let Some(zone) = snapshot.zones.find(&LowerName::new(&name)) else {
            continue;
        };
        let Some(signer) = zone.signer() else {
            continue;
        };
        let mut resolved = zone.resolve(&name, qtype);
        if let Some(hit) = resolved.steered.take() {
            // Static when noted, steered since a reload: its next query notes its client.
            let Some(client) = client else { continue };
            let family = if qtype == RecordType::AAAA {
                Family::V6
            } else {
                Family::V4
            };
            let steered = &zone.steered[hit.index];
            let a = answer::steer(snapshot, zone, steered, client, family, 0);
            super::general::add_steered(zone, &hit, qtype, a, &mut resolved);
        }
        // A key that cannot sign fails the query that asks too, which says so.
        let _ = sign(zone, signer, &mut resolved, sign_at, counters);
    }
    counters.presigned(answers, started.elapsed());
    counters.signatures() - before
}

/// RFC 9824 §3: the NXNAME pseudo-type in the bitmap says the name does not exist.
pub const NXNAME: RecordType = RecordType::Unknown(128);

/// Signs `resolved` in place for `zone` with `signer` at `now` (Unix seconds).
pub fn sign(
    zone: &Zone,
    signer: &Signer,
    resolved: &mut Resolved,
    now: u32,
    counters: &SigningCounters,
) -> Result<(), KeyError> {
    let started = Instant::now();
    let made = std::cell::Cell::new(0u64);
    let sign_set = |records: &[Record], labels: u8| {
        let (rrsigs, fresh) = signer.sign(records, labels, now)?;
        made.set(made.get() + fresh);
        Ok::<_, KeyError>(rrsigs)
    };

    let answers = std::mem::take(&mut resolved.answers);
    for set in rrsets(&answers) {
        let owner = &set[0].name;
        let labels = resolved
            .expanded
            .iter()
            .find(|e| &e.owner == owner)
            .map_or_else(|| owner.num_labels(), |e| e.labels);
        let rrsigs = sign_set(set, labels)?;
        resolved.answers.extend_from_slice(set);
        resolved.answers.extend(rrsigs);
    }

    let authorities = std::mem::take(&mut resolved.authorities);
    let negative_ttl = zone.negative_soa().ttl;
    let nsec = |owner: Name, next: Name, types: Vec<RecordType>, out: &mut Vec<Record>| {
        let types = types
            .into_iter()
            .chain([RecordType::RRSIG, RecordType::NSEC]);
        let record = Record::from_rdata(
            owner,
            negative_ttl,
            RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(next, types))),
        );
        let labels = record.name.num_labels();
        let rrsigs = sign_set(std::slice::from_ref(&record), labels)?;
        out.push(record);
        out.extend(rrsigs);
        Ok::<_, KeyError>(())
    };
    match &resolved.denial {
        Some(d) if d.kind == DenialKind::Cut => {
            // NS and glue unsigned; the cut's DS signed, or its absence proven.
            resolved.authorities = authorities;
            let name = d.name.to_lowercase();
            match zone.rrset(&LowerName::new(&name), RecordType::DS) {
                Some(ds) => {
                    let rrsigs = sign_set(&ds.records, name.num_labels())?;
                    resolved.authorities.extend_from_slice(&ds.records);
                    resolved.authorities.extend(rrsigs);
                }
                None => nsec(
                    name.clone(),
                    zero_child(&name),
                    vec![RecordType::NS],
                    &mut resolved.authorities,
                )?,
            }
        }
        Some(d) if d.kind == DenialKind::NoData(RecordType::NSEC) => {
            // A name's own NSEC answers a query for its NSEC (its bitmap names NSEC, so a
            // NODATA proof would contradict itself); no SOA then.
            let name = d.name.to_lowercase();
            let types = zone.types_at(&LowerName::new(&name));
            nsec(
                name.clone(),
                zero_child(&name),
                types,
                &mut resolved.answers,
            )?;
        }
        denial => {
            for set in rrsets(&authorities) {
                let rrsigs = sign_set(set, set[0].name.num_labels())?;
                resolved.authorities.extend_from_slice(set);
                resolved.authorities.extend(rrsigs);
            }
            if let Some(d) = denial {
                let name = d.name.to_lowercase();
                let types = match d.kind {
                    DenialKind::NoName => vec![NXNAME],
                    DenialKind::NoData(qtype) => {
                        let mut t = zone.types_at(&LowerName::new(&name));
                        t.retain(|&t| t != qtype);
                        t
                    }
                    DenialKind::Cut => unreachable!("matched above"),
                };
                nsec(
                    name.clone(),
                    zero_child(&name),
                    types,
                    &mut resolved.authorities,
                )?;
                if d.kind == DenialKind::NoName {
                    // RFC 9824 §3: the name's absence is in the NSEC, the RCODE is NOERROR.
                    resolved.rcode = ResponseCode::NoError;
                }
            }
        }
    }
    let mut covered: Vec<&Name> = Vec::new();
    for e in &resolved.expanded {
        if covered.contains(&&e.next_closer) {
            continue;
        }
        covered.push(&e.next_closer);
        let name = e.next_closer.to_lowercase();
        nsec(
            predecessor(&name),
            successor(&name),
            Vec::new(),
            &mut resolved.authorities,
        )?;
    }
    counters.add(made.get(), started.elapsed());
    Ok(())
}

/// The RRsets of a section, in order: runs of records with the same owner and type.
fn rrsets(records: &[Record]) -> impl Iterator<Item = &[Record]> {
    records.chunk_by(|a, b| a.record_type() == b.record_type() && a.name == b.name)
}

/// `\000.<name>`: the first name after `name` and all of `name` alone in canonical order
/// (RFC 4034 §6.1), the next name of a compact-denial NSEC (RFC 9824 §3).
fn zero_child(name: &Name) -> Name {
    Name::from_labels([&[0u8][..]])
        .expect("one octet is a label")
        .append_name(name)
        .unwrap_or_else(|_| name.clone())
}

/// A name just after `name` and all names below it, with no name of the zone between: its
/// first label with a zero octet added, as RFC 4471 derives a successor. A next name below
/// `name` would say `name` is an empty non-terminal, which validators take as existence (RFC
/// 4035 §5.4), so the wildcard's cover cannot use [`zero_child`].
fn successor(name: &Name) -> Name {
    let mut labels: Vec<Vec<u8>> = name.iter().map(<[u8]>::to_vec).collect();
    let Some(first) = labels.first_mut() else {
        return name.clone();
    };
    if first.len() < 63 {
        first.push(0);
    } else if let Some(i) = first.iter().rposition(|&b| b < 0xFF) {
        // A full label: raise its last octet that can be, and drop what follows it.
        first[i] += 1;
        if first[i].is_ascii_uppercase() {
            first[i] = b'Z' + 1;
        }
        first.truncate(i + 1);
    }
    Name::from_labels(labels).unwrap_or_else(|_| zero_child(name))
}

/// A name just before `name` (lower case) in canonical order, with no name of the zone
/// between them: the last octet of its first label is lowered by one and the label filled up
/// with 0xFF octets (as far as the 255-octet limit lets), as RFC 4471 derives a
/// predecessor. An upper-case letter sorts as its lower case, so one is stepped over.
fn predecessor(name: &Name) -> Name {
    let mut labels: Vec<Vec<u8>> = name.iter().map(<[u8]>::to_vec).collect();
    let Some(first) = labels.first_mut() else {
        return name.clone();
    };
    match first.last_mut() {
        Some(b) if *b > 0 => {
            *b -= 1;
            if b.is_ascii_uppercase() {
                *b = b'A' - 1;
            }
        }
        _ => {
            first.pop();
        }
    }
    if first.is_empty() {
        // `\000.parent`: the parent itself precedes it.
        return name.base_name();
    }
    let wire: usize = labels.iter().map(|l| l.len() + 1).sum::<usize>() + 1;
    let room = 255usize.saturating_sub(wire);
    let first = &mut labels[0];
    let pad = (63 - first.len()).min(room);
    first.extend(std::iter::repeat_n(0xFF, pad));
    Name::from_labels(labels).unwrap_or_else(|_| name.base_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name from its dotted labels, any octet allowed (`[` included).
    fn n(s: &str) -> Name {
        Name::from_labels(s.trim_end_matches('.').split('.').map(str::as_bytes)).unwrap()
    }

    #[test]
    fn rfc4034_canonical_order_puts_the_cover_around_the_name_alone() {
        for name in ["nope.example.com.", "a.example.com.", "x[.example.com."] {
            let name = n(name);
            let (before, after) = (predecessor(&name), successor(&name));
            assert!(!name.zone_of(&after), "{after} is not below {name}");
            assert!(before < name, "{before} < {name}");
            assert!(name < after, "{name} < {after}");
            // Neighbours that may exist stay outside the cover (names below `name` may not:
            // the cover is only made for a name that does not exist).
            for other in [
                "a.example.com.",
                "nopd.example.com.",
                "nopez.example.com.",
                "nope-a.example.com.",
            ] {
                let other = n(other);
                if other != name {
                    assert!(
                        !(before < other && other < after),
                        "{other} inside ({before}, {after})"
                    );
                }
            }
        }
    }
}
