//! The contract between the general path and the fast path's cache: what an answer varies
//! on.
//!
//! The general path states it with the bytes it returns ([`Cacheable`]), and only for an
//! answer that encoded whole: a truncated answer or a SERVFAIL from a failed encode carries
//! none, so it can never be reused. The fast path keys its cache by (lower-case name, type,
//! [`Variant`]) and builds the lookup key from the query with the same types, so an input
//! that answers come to depend on (the DO bit, once answers carry signatures) is added here,
//! and the fast path cannot compile without supplying it. DO is one: a query with DO=1 gets
//! signatures whose validity window is set by the day ([`signed_on`]), so its answer is
//! reused only by DO=1 queries of the same day.

use std::hash::{Hash, Hasher};

use super::response::Outcome;
use crate::serving::compiled::Also;
use crate::steer::Family;

/// An answer the fast path may send again, with the query's ID, RD and CD bits, question
/// case and OPT record written afresh, to every query that agrees on its (name, type) and
/// on [`Cacheable::varies`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cacheable {
    /// The zone's index, for counting reuses.
    pub zone: usize,
    /// The header's AA and RCODE (never TC: a truncated answer is not cacheable).
    pub outcome: Outcome,
    pub varies: Varies,
    /// For a query with DO=1, the day its answer was made on (its signatures' window):
    /// [`signed_on`]; `None` for DO=0.
    pub dnssec: Option<u32>,
}

/// What a query's answer depends on through its DO bit at `now` (Unix seconds): nothing
/// without DO; with DO, the Unix day, which fixes the signatures' validity window.
pub fn signed_on(dnssec_ok: bool, now: u32) -> Option<u32> {
    dnssec_ok.then_some(now / 86_400)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Varies {
    /// On nothing else: every client gets these bytes (DO is in [`Cacheable::dnssec`]).
    Nothing,
    /// A steered name: on the client's decision.
    Steered(SteeredVariant),
}

/// What a steered answer depends on besides (name, type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SteeredVariant {
    /// The steered name's index in its zone.
    pub name: usize,
    pub family: Family,
    pub variant: Variant,
}

/// The part of a steered answer's key that the client's decision and the query's rotation
/// seed give. Only rotations are cacheable; a draw by weight differs for every query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// The answering region, if one region answers.
    pub region: Option<usize>,
    /// The regions answering beside it (multivalue), numbered by the zone's compiled
    /// steering: a multivalue answer is cached only while its zone is compiled.
    pub also: Also,
    /// How many places the endpoints are rotated.
    pub rotation: usize,
    /// The TTL, which a region in trouble shortens.
    pub ttl: u32,
}

impl Hash for Variant {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.region.hash(state);
        self.rotation.hash(state);
        // TTL and region list in one word: a one-region key hashes in as many rounds as it
        // did before multivalue answers were cached.
        state.write_u64(u64::from(self.ttl) << 32 | u64::from(self.also.id()));
    }
}
