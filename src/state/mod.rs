//! Operator overrides and the audit log, durable across restarts, crashes and full disks.
//!
//! The one rule: `state/audit.jsonl` is a journal. Every write (drain, force, reload) is one
//! JSON line, appended and fsynced before the API answers, so an acknowledged write is on
//! disk; an append that fails (a full disk) is cut back off and changes nothing. On start the
//! overrides are rebuilt by replaying the journal once; from then on each append applies its
//! entry, so no read or write replays the journal, and no entry is kept in memory. A kill -9
//! in the middle of an append can leave a torn last line (no newline): that write was never
//! acknowledged, so the line is cut away, with a warning naming it. A complete line that
//! does not parse is not guessed at: the server refuses to start and names the line. The
//! journal is compacted as it grows ([`journal`]); the audit log is read a page at a time.

pub(crate) mod durable;
pub mod events;
pub mod journal;

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use durable::{create_new, replace};
pub use events::{EVENTS_FILE, EventLog};
pub use journal::{ARCHIVE_DIR, JOURNAL_FILE, Journal, Limits};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}:{line}: damaged journal entry: {message}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// The entry was not written; the journal is as it was.
    #[error("{path}: cannot append: {source}")]
    Append { path: PathBuf, source: io::Error },
    #[error("{path}: damaged audit entry: {message}")]
    Unreadable { path: PathBuf, message: String },
}

impl StateError {
    /// The file system is full (or the quota used up): room must be made.
    pub fn is_full(&self) -> bool {
        match self {
            StateError::Io { source, .. } | StateError::Append { source, .. } => {
                matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
            }
            _ => false,
        }
    }
}

/// What an operator did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Take a region out of service: its clients move to the next region.
    Drain,
    Undrain,
    /// Hold an endpoint down (or up) whatever its probes say.
    ForceDown,
    ForceUp,
    /// Lift a force: probes decide again.
    Unforce,
    /// Zones reloaded (no override; recorded for the audit trail).
    Reload,
}

/// One journal line: who did what to which target, when, why and until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The name of the token used: never the secret.
    pub by: String,
    pub action: Action,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub zone: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<IpAddr>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// In a cluster, the node whose admin API took the write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// An override in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Override {
    pub seq: u64,
    pub by: String,
    pub reason: String,
    pub at_ms: u64,
    pub expires_at_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Override {
    fn of(e: &Entry) -> Override {
        Override {
            seq: e.seq,
            by: e.by.clone(),
            reason: e.reason.clone(),
            at_ms: e.at_ms,
            expires_at_ms: e.expires_at_ms,
            node: e.node.clone(),
        }
    }

    pub fn active(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|t| now_ms < t)
    }

    /// The entry that set this override, as [`Override::of`] read it.
    pub fn entry(
        &self,
        action: Action,
        zone: &str,
        region: &str,
        endpoint: Option<IpAddr>,
    ) -> Entry {
        Entry {
            seq: self.seq,
            at_ms: self.at_ms,
            by: self.by.clone(),
            action,
            zone: zone.to_string(),
            region: region.to_string(),
            endpoint,
            reason: self.reason.clone(),
            expires_at_ms: self.expires_at_ms,
            node: self.node.clone(),
        }
    }

    /// The same operator action as `other`, whatever sequence number each journal gave it.
    pub fn same_action(&self, other: &Override) -> bool {
        (
            &self.by,
            &self.reason,
            self.at_ms,
            self.expires_at_ms,
            &self.node,
        ) == (
            &other.by,
            &other.reason,
            other.at_ms,
            other.expires_at_ms,
            &other.node,
        )
    }
}

/// Key of a region: (zone origin, region name).
pub type RegionKey = (String, String);

/// The overrides the journal adds up to. Expired ones stay here until replaced but are not
/// [`Override::active`]; callers ask with the current time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub drains: BTreeMap<RegionKey, Override>,
    /// Forced endpoint states: true = held up, false = held down.
    pub forced: BTreeMap<(String, String, IpAddr), (bool, Override)>,
}

impl Overrides {
    pub fn apply(&mut self, e: &Entry) {
        let region = (e.zone.clone(), e.region.clone());
        match (e.action, e.endpoint) {
            (Action::Drain, _) => {
                self.drains.insert(region, Override::of(e));
            }
            (Action::Undrain, _) => {
                self.drains.remove(&region);
            }
            (Action::ForceDown | Action::ForceUp, Some(addr)) => {
                let up = e.action == Action::ForceUp;
                self.forced
                    .insert((region.0, region.1, addr), (up, Override::of(e)));
            }
            (Action::Unforce, Some(addr)) => {
                self.forced.remove(&(region.0, region.1, addr));
            }
            _ => {}
        }
    }

    /// The entries that set these overrides, oldest first: replayed in order on an empty
    /// state they give these overrides back exactly (the journal's snapshot).
    pub fn entries(&self) -> Vec<Entry> {
        let drains = self
            .drains
            .iter()
            .map(|((zone, region), o)| o.entry(Action::Drain, zone, region, None));
        let forced = self.forced.iter().map(|((zone, region, addr), (up, o))| {
            let action = if *up {
                Action::ForceUp
            } else {
                Action::ForceDown
            };
            o.entry(action, zone, region, Some(*addr))
        });
        let mut out: Vec<Entry> = drains.chain(forced).collect();
        out.sort_by_key(|e| e.seq);
        out
    }

    /// Whether `e` would change what is in force at `now_ms`: undoing a drain or a force
    /// that is not in force (never set, undone, or expired) changes nothing.
    pub fn would_change(&self, e: &Entry, now_ms: u64) -> bool {
        match (e.action, e.endpoint) {
            (Action::Undrain, _) => self.drained(&e.zone, &e.region, now_ms).is_some(),
            (Action::Unforce, Some(addr)) => {
                self.forced(&e.zone, &e.region, addr, now_ms).is_some()
            }
            _ => true,
        }
    }

    pub fn drained(&self, zone: &str, region: &str, now_ms: u64) -> Option<&Override> {
        self.drains
            .get(&(zone.to_string(), region.to_string()))
            .filter(|o| o.active(now_ms))
    }

    pub fn forced(
        &self,
        zone: &str,
        region: &str,
        addr: IpAddr,
        now_ms: u64,
    ) -> Option<(bool, &Override)> {
        self.forced
            .get(&(zone.to_string(), region.to_string(), addr))
            .filter(|(_, o)| o.active(now_ms))
            .map(|(up, o)| (*up, o))
    }

    /// The earliest expiry still ahead of `now_ms`: when the view must be rebuilt.
    pub fn next_expiry(&self, now_ms: u64) -> Option<u64> {
        self.drains
            .values()
            .chain(self.forced.values().map(|(_, o)| o))
            .filter_map(|o| o.expires_at_ms)
            .filter(|&t| t > now_ms)
            .min()
    }

    /// Overrides in force at `now_ms`.
    pub fn active_count(&self, now_ms: u64) -> usize {
        self.drains.values().filter(|o| o.active(now_ms)).count()
            + self
                .forced
                .values()
                .filter(|(_, o)| o.active(now_ms))
                .count()
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
