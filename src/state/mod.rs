//! Operator overrides and the audit log, durable across restarts and crashes.
//!
//! The one rule: `state/audit.jsonl` is a journal. Every write (drain, force, reload) is one
//! JSON line, appended and fsynced before the API answers, so an acknowledged write is on
//! disk. On start the overrides are rebuilt by replaying the journal once; from then on each
//! append applies its entry, so no read or write replays the journal. A kill -9 in the middle
//! of an append can leave a torn last line; that write was never acknowledged, so the line is
//! cut away and the rest replays exactly as acknowledged. A damaged line anywhere else is not
//! guessed at: the server refuses to start and names the line.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const JOURNAL_FILE: &str = "audit.jsonl";

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
}

/// An override in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Override {
    pub seq: u64,
    pub by: String,
    pub reason: String,
    pub at_ms: u64,
    pub expires_at_ms: Option<u64>,
}

impl Override {
    fn of(e: &Entry) -> Override {
        Override {
            seq: e.seq,
            by: e.by.clone(),
            reason: e.reason.clone(),
            at_ms: e.at_ms,
            expires_at_ms: e.expires_at_ms,
        }
    }

    pub fn active(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|t| now_ms < t)
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

/// The journal file, open for appending.
pub struct Journal {
    path: PathBuf,
    file: File,
    next_seq: u64,
    entries: Vec<Entry>,
    /// What `entries` add up to, kept current by [`Journal::append`].
    overrides: Overrides,
}

impl Journal {
    /// Opens (or creates) `dir/audit.jsonl`, cutting a torn last line away.
    pub fn open(dir: &Path) -> Result<Journal, StateError> {
        let path = dir.join(JOURNAL_FILE);
        let io_err = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err)?;
        // The new file's name must survive a crash too.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| StateError::Io {
                path: dir.to_owned(),
                source,
            })?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(io_err)?;
        let (entries, good_len) = parse(&path, &text)?;
        if good_len < text.len() {
            file.set_len(good_len as u64).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io_err)?;
        let next_seq = entries.last().map_or(1, |e| e.seq + 1);
        let mut overrides = Overrides::default();
        for e in &entries {
            overrides.apply(e);
        }
        Ok(Journal {
            path,
            file,
            next_seq,
            entries,
            overrides,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The overrides every entry so far adds up to.
    pub fn overrides(&self) -> &Overrides {
        &self.overrides
    }

    /// Appends `entry` (its `seq` is assigned here) and returns once it is on disk.
    pub fn append(&mut self, mut entry: Entry) -> Result<Entry, StateError> {
        entry.seq = self.next_seq;
        let mut line = serde_json::to_vec(&entry).expect("entries serialize");
        line.push(b'\n');
        let io_err = |source| StateError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&line).map_err(io_err)?;
        self.file.sync_data().map_err(io_err)?;
        self.next_seq += 1;
        self.overrides.apply(&entry);
        self.entries.push(entry.clone());
        Ok(entry)
    }
}

/// Parses the journal; returns the entries and the length of the good prefix. Only the last
/// line may be torn (no newline, or not JSON): that is where an append was cut.
fn parse(path: &Path, text: &[u8]) -> Result<(Vec<Entry>, usize), StateError> {
    let mut entries = Vec::new();
    let mut offset = 0;
    let mut line_no = 0;
    while offset < text.len() {
        line_no += 1;
        let rest = &text[offset..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            // No newline: an append that never finished.
            break;
        };
        let line = &rest[..nl];
        match serde_json::from_slice::<Entry>(line) {
            Ok(e) => entries.push(e),
            // A bad final line with a newline is still a torn write (the newline may have
            // landed before the bytes before it did); anything earlier is damage.
            Err(_) if offset + nl + 1 == text.len() => break,
            Err(e) => {
                return Err(StateError::Corrupt {
                    path: path.to_owned(),
                    line: line_no,
                    message: e.to_string(),
                });
            }
        }
        offset += nl + 1;
    }
    Ok((entries, offset))
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
