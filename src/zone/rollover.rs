//! A zone's key set and its rollover, persisted in `<state-dir>/dnssec/<zone>keys.json`.
//!
//! A zone starts with one combined signing key (CSK, the `<zone>key` file) and no key-set
//! file, or with a KSK and a ZSK (`keygen --split`), which writes one. A rollover writes it
//! too. The file says, for every key, whether it is in the DNSKEY RRset, what it signs and
//! whether its DS is offered to the parent (CDS, CDNSKEY: RFC 7344); the server reads it at
//! each load and reload, and reloads when it changes on disk. `meridian dnssec rollover`
//! writes it, and so does the server for the timed steps of a rollover started with
//! `--auto` ([`take_due_step`]): one at a time ([`lock`]), atomically (a new file renamed
//! over the old), and never over a file that cannot be read, so a damaged file is
//! reported, never replaced.
//!
//! Design of the rollover machine (pure: the time is an argument):
//! - **ZSK, pre-publish** (RFC 6781 §4.1.1.1): *published* (the new ZSK in the DNSKEY
//!   RRset, the old one signing) → after the DNSKEY TTL, every cached DNSKEY RRset holds the
//!   new key: *active* (the new key signs, the old one stays published) → after the largest
//!   TTL of the zone, no cached RRSIG is by the old key: it leaves the DNSKEY RRset, done.
//! - **KSK, double-DS** (RFC 6781 §4.1.2): *submitted* (the new DS offered in CDS next to
//!   the old one; the operator adds it at the parent) → the operator says the parent
//!   publishes it: *ds-published* → after the parent's DS TTL, every cached DS RRset holds
//!   both: *swapped* (the new KSK replaces the old one in the DNSKEY RRset and signs it)
//!   → after the DNSKEY TTL, no cached DNSKEY RRset holds the old key: CDS offers the new
//!   DS alone and the operator removes the old one, done.
//! - **CSK, double-DS**: a CSK signs the zone's data too, and a validator holding the old
//!   DNSKEY RRset could not check data signed by a key it has not seen, so the new CSK is
//!   published (and signs the DNSKEY RRset) while its DS is added at the parent
//!   (*published*) → after the DNSKEY TTL and once the operator says the parent publishes
//!   the DS: *active* (the new CSK signs the data) → after the larger of the zone's largest
//!   TTL and the parent's DS TTL: the old CSK leaves, CDS offers the new DS alone, done.
//!
//! Each wait adds a propagation delay (the time a change takes to reach every nameserver
//! of the zone). A step asked for before its time is refused with the time it becomes
//! safe, unless forced.

use std::fmt;
use std::path::{Path, PathBuf};

use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};

/// The DS TTL assumed for the parent when the operator gives none: a day, what most TLDs
/// publish (`com`, `net`, `org`).
pub const DEFAULT_DS_TTL: u32 = 86_400;
/// How long a change takes to reach every nameserver of the zone when the operator does
/// not say: Meridian signs online, so only the time for every node to read the same key
/// file (a cluster's shared state directory, a configuration push) counts.
pub const DEFAULT_PROPAGATION: u32 = 300;
const VERSION: u32 = 1;

/// What a key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Signs everything: the DNSKEY RRset and the zone's data.
    Csk,
    /// Key-signing key: the DNSKEY RRset (and CDS, CDNSKEY); its DS is at the parent.
    Ksk,
    /// Zone-signing key: everything but the DNSKEY RRset.
    Zsk,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "csk" => Some(Role::Csk),
            "ksk" => Some(Role::Ksk),
            "zsk" => Some(Role::Zsk),
            _ => None,
        }
    }

    /// DNSKEY flags: 257 (zone key and secure entry point) for a key whose DS is at the
    /// parent, 256 for a ZSK.
    pub fn flags(self) -> u16 {
        match self {
            Role::Zsk => 256,
            Role::Csk | Role::Ksk => 257,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Csk => "csk",
            Role::Ksk => "ksk",
            Role::Zsk => "zsk",
        })
    }
}

/// One key of the zone and what it does now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KeyEntry {
    /// The PKCS#8 file, in the key-set file's directory.
    pub file: String,
    pub role: Role,
    pub tag: u16,
    /// In the DNSKEY RRset.
    pub published: bool,
    /// Signs the DNSKEY, CDS and CDNSKEY RRsets.
    pub signs_keys: bool,
    /// Signs every other RRset.
    pub signs_zone: bool,
    /// Its DS is offered in CDS and CDNSKEY (it is, or should be, at the parent).
    pub at_parent: bool,
}

/// A rollover under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Rollover {
    pub kind: Role,
    pub old: u16,
    pub new: u16,
    pub step: Step,
    /// When the step was taken (Unix seconds).
    pub since: u64,
    pub timing: Timing,
    /// The running server takes the steps that wait only for time, at their safe time.
    #[serde(default)]
    pub auto: bool,
}

/// The steps of a rollover, in order per kind (see the module's design header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// ZSK, CSK: the new key is in the DNSKEY RRset, the old one signs.
    Published,
    /// KSK: the new DS is offered, not yet at the parent.
    Submitted,
    /// KSK: the parent publishes the new DS next to the old one.
    DsPublished,
    /// KSK: the new KSK replaced the old one in the DNSKEY RRset.
    Swapped,
    /// ZSK, CSK: the new key signs the data, the old one is still published.
    Active,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Published => "published",
            Step::Submitted => "submitted",
            Step::DsPublished => "ds-published",
            Step::Swapped => "swapped",
            Step::Active => "active",
        })
    }
}

impl Rollover {
    /// Whether the next step waits for the operator's word that the parent publishes the new
    /// DS, which no clock can tell.
    pub fn waits_for_parent(&self) -> bool {
        matches!(
            (self.kind, self.step),
            (Role::Ksk, Step::Submitted) | (Role::Csk, Step::Published)
        )
    }

    /// The next step: its name (`None`: the end), the earliest time it is safe, and why then.
    pub fn next(&self) -> (Option<Step>, u64, String) {
        let r = self;
        let t = &r.timing;
        let p = u64::from(t.propagation);
        let (next, wait, why) = match (r.kind, r.step) {
            (Role::Zsk, Step::Published) => (
                Some(Step::Active),
                u64::from(t.dnskey_ttl) + p,
                format!(
                    "DNSKEY TTL {} s + propagation {} s: caches hold the new key",
                    t.dnskey_ttl, t.propagation
                ),
            ),
            (Role::Zsk, _) => (
                None,
                u64::from(t.max_zone_ttl) + p,
                format!(
                    "largest zone TTL {} s + propagation {} s: no cached signature is by the old key",
                    t.max_zone_ttl, t.propagation
                ),
            ),
            (Role::Ksk, Step::Submitted) => (
                Some(Step::DsPublished),
                p,
                format!(
                    "propagation {} s; take it once the parent publishes the new DS",
                    t.propagation
                ),
            ),
            (Role::Ksk, Step::DsPublished) => (
                Some(Step::Swapped),
                u64::from(t.ds_ttl) + p,
                format!(
                    "parent DS TTL {} s + propagation {} s: cached DS RRsets hold the new DS",
                    t.ds_ttl, t.propagation
                ),
            ),
            (Role::Ksk, _) => (
                None,
                u64::from(t.dnskey_ttl) + p,
                format!(
                    "DNSKEY TTL {} s + propagation {} s: no cached DNSKEY RRset holds the old key",
                    t.dnskey_ttl, t.propagation
                ),
            ),
            (Role::Csk, Step::Published) => (
                Some(Step::Active),
                u64::from(t.dnskey_ttl) + p,
                format!(
                    "DNSKEY TTL {} s + propagation {} s: caches hold the new key; take it once the parent publishes the new DS",
                    t.dnskey_ttl, t.propagation
                ),
            ),
            (Role::Csk, _) => {
                let longest = t.max_zone_ttl.max(t.ds_ttl);
                (
                    None,
                    u64::from(longest) + p,
                    format!(
                        "the larger of the largest zone TTL {} s and the parent DS TTL {} s, + propagation {} s: no cached signature is by the old key, cached DS RRsets hold the new DS",
                        t.max_zone_ttl, t.ds_ttl, t.propagation
                    ),
                )
            }
        };
        (next, r.since + wait, why)
    }
}

/// The TTLs and delays a rollover's waits are made of, in seconds, as they were when it
/// started (a later change of the zone's TTLs does not shorten a wait under way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Timing {
    pub dnskey_ttl: u32,
    /// The largest TTL of any RRset the zone signs (steered names and negative answers
    /// included).
    pub max_zone_ttl: u32,
    pub ds_ttl: u32,
    pub propagation: u32,
}

/// The key set of a zone, as the file holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KeySet {
    pub version: u32,
    pub keys: Vec<KeyEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollover: Option<Rollover>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, String),
    #[error(
        "{0}: line {1}, column {2}: {3} (the file is kept as it is: fix it, or restore it from a backup)"
    )]
    Parse(PathBuf, usize, usize, String),
    #[error("{0}: {1}")]
    Invalid(PathBuf, String),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// Why a rollover step was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("a {0} rollover is under way (step {1}): finish it first")]
    Busy(Role, Step),
    #[error("no rollover is under way: start one with --kind")]
    Idle,
    #[error("the zone has no {0} to roll (its keys: {1})")]
    NoKey(Role, String),
    #[error(
        "too early: step {step} was taken at {since}; the next is safe from {safe} ({why}); give --force to take it anyway"
    )]
    TooEarly {
        step: Step,
        since: String,
        safe: String,
        why: String,
    },
}

/// `<state-dir>/dnssec/<zone>keys.json`.
pub fn keyset_path(origin: &Name, state_dir: &Path) -> PathBuf {
    state_dir
        .join("dnssec")
        .join(format!("{}keys.json", origin.to_lowercase().to_ascii()))
}

impl KeySet {
    /// The set of one CSK, all it does: what a zone without a key-set file has.
    pub fn single(file: String, tag: u16) -> KeySet {
        KeySet {
            version: VERSION,
            keys: vec![KeyEntry {
                file,
                role: Role::Csk,
                tag,
                published: true,
                signs_keys: true,
                signs_zone: true,
                at_parent: true,
            }],
            rollover: None,
        }
    }

    /// A KSK and a ZSK, each doing its part.
    pub fn split(ksk: (String, u16), zsk: (String, u16)) -> KeySet {
        let key = |(file, tag): (String, u16), role| KeyEntry {
            file,
            role,
            tag,
            published: true,
            signs_keys: role == Role::Ksk,
            signs_zone: role == Role::Zsk,
            at_parent: role == Role::Ksk,
        };
        KeySet {
            version: VERSION,
            keys: vec![key(ksk, Role::Ksk), key(zsk, Role::Zsk)],
            rollover: None,
        }
    }

    /// Reads the file at `path`; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> Result<Option<KeySet>, StateError> {
        if let Err(e) = std::fs::symlink_metadata(path)
            && e.kind() == std::io::ErrorKind::NotFound
        {
            return Ok(None);
        }
        let bytes = crate::files::read_regular(path, crate::files::SMALL_FILE)
            .map_err(|e| StateError::Read(path.to_owned(), e.to_string()))?;
        let set: KeySet = serde_json::from_slice(&bytes).map_err(|e| {
            // serde_json ends its message with the position, which the error gives first.
            let message = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let message = message
                .strip_suffix(&suffix)
                .unwrap_or(&message)
                .to_string();
            StateError::Parse(path.to_owned(), e.line(), e.column(), message)
        })?;
        set.validate()
            .map_err(|m| StateError::Invalid(path.to_owned(), m))?;
        Ok(Some(set))
    }

    /// What a file could say that no rollover leads to: refused at load, so a hand edit
    /// cannot leave the zone without a signer.
    fn validate(&self) -> Result<(), String> {
        if self.version != VERSION {
            return Err(format!(
                "version {} is not {VERSION}, the one this Meridian reads",
                self.version
            ));
        }
        for k in &self.keys {
            if k.file.contains('/') || k.file.starts_with('.') || k.file.is_empty() {
                return Err(format!(
                    "key {}: file {:?} must be a plain file name in this directory",
                    k.tag, k.file
                ));
            }
            if (k.signs_keys || k.signs_zone) && !k.published {
                return Err(format!(
                    "key {} signs but is not published: validators could not check it",
                    k.tag
                ));
            }
        }
        if !self.keys.iter().any(|k| k.signs_keys) {
            return Err("no key signs the DNSKEY RRset".into());
        }
        if !self.keys.iter().any(|k| k.signs_zone) {
            return Err("no key signs the zone's data".into());
        }
        if !self.keys.iter().any(|k| k.at_parent) {
            return Err("no key is offered to the parent (at-parent)".into());
        }
        if let Some(r) = &self.rollover {
            for tag in [r.old, r.new] {
                if !self.keys.iter().any(|k| k.tag == tag) {
                    return Err(format!("the rollover names key {tag}, which is not listed"));
                }
            }
        }
        Ok(())
    }

    /// Writes the set to `path` atomically: a new file, synced, renamed over the old.
    pub fn write(&self, path: &Path) -> Result<(), StateError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let fail = |e| StateError::Write(path.to_owned(), e);
        let tmp = path.with_extension("json.new");
        let mut text = serde_json::to_vec_pretty(self).expect("a key set serializes");
        text.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(fail)?;
        file.write_all(&text).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(fail)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(fail)?;
        }
        Ok(())
    }

    fn key_mut(&mut self, tag: u16) -> &mut KeyEntry {
        self.keys
            .iter_mut()
            .find(|k| k.tag == tag)
            .expect("a rollover's keys are listed (validated)")
    }

    /// Starts a rollover of the key of `kind`, to the new key (`file`, `tag`) already
    /// written, at `now`.
    pub fn start(
        &mut self,
        kind: Role,
        file: String,
        tag: u16,
        timing: Timing,
        now: u64,
        auto: bool,
    ) -> Result<(), StepError> {
        if let Some(r) = &self.rollover {
            return Err(StepError::Busy(r.kind, r.step));
        }
        let old = self
            .keys
            .iter()
            .find(|k| k.role == kind && (k.signs_zone || k.signs_keys))
            .ok_or_else(|| StepError::NoKey(kind, self.describe()))?
            .tag;
        let step = match kind {
            Role::Zsk | Role::Csk => Step::Published,
            Role::Ksk => Step::Submitted,
        };
        self.keys.push(KeyEntry {
            file,
            role: kind,
            tag,
            // The new KSK waits for its DS at the parent; a new ZSK or CSK is seen first.
            published: kind != Role::Ksk,
            signs_keys: kind == Role::Csk,
            signs_zone: false,
            at_parent: kind != Role::Zsk,
        });
        self.rollover = Some(Rollover {
            kind,
            old,
            new: tag,
            step,
            since: now,
            timing,
            auto,
        });
        Ok(())
    }

    /// Whether the rollover's next step waits for the operator's word that the parent
    /// publishes the new DS, which no clock can tell.
    pub fn waits_for_parent(&self) -> bool {
        self.rollover
            .as_ref()
            .is_some_and(Rollover::waits_for_parent)
    }

    /// The next step of the rollover under way: its name (`None`: the end), the earliest
    /// time it is safe, and why then.
    pub fn next(&self) -> Option<(Option<Step>, u64, String)> {
        self.rollover.as_ref().map(Rollover::next)
    }

    /// Takes the next step at `now`, refused before its time unless `force`. Returns the
    /// step taken (`None`: the rollover ended).
    pub fn advance(&mut self, now: u64, force: bool) -> Result<Option<Step>, StepError> {
        let (next, safe, why) = self.next().ok_or(StepError::Idle)?;
        let r = self.rollover.clone().expect("next() saw a rollover");
        if now < safe && !force {
            return Err(StepError::TooEarly {
                step: r.step,
                since: utc(r.since),
                safe: utc(safe),
                why,
            });
        }
        match (r.kind, next) {
            (Role::Zsk | Role::Csk, Some(Step::Active)) => {
                self.key_mut(r.old).signs_zone = false;
                self.key_mut(r.new).signs_zone = true;
            }
            (Role::Ksk, Some(Step::DsPublished)) => {}
            (Role::Ksk, Some(Step::Swapped)) => {
                let old = self.key_mut(r.old);
                old.published = false;
                old.signs_keys = false;
                let new = self.key_mut(r.new);
                new.published = true;
                new.signs_keys = true;
            }
            (_, None) => {
                self.keys.retain(|k| k.tag != r.old);
            }
            (kind, Some(step)) => unreachable!("no {step} step in a {kind} rollover"),
        }
        match next {
            Some(step) => {
                let rollover = self.rollover.as_mut().expect("under way");
                rollover.step = step;
                rollover.since = now;
            }
            None => self.rollover = None,
        }
        Ok(next)
    }

    /// `12345 ksk, 23456 zsk`.
    pub fn describe(&self) -> String {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("{} {}", k.tag, k.role))
            .collect();
        keys.join(", ")
    }
}

/// Holds the key-set file at `path` for one writer at a time (`meridian dnssec rollover`
/// and the servers that take timed steps), through an exclusive lock on `<path>.lock`,
/// released when the returned file is dropped.
pub fn lock(path: &Path) -> Result<std::fs::File, StateError> {
    use std::os::unix::fs::OpenOptionsExt;
    let lock_path = path.with_extension("json.lock");
    let fail = |e| StateError::Write(lock_path.clone(), e);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(fail)?;
    file.lock().map_err(fail)?;
    Ok(file)
}

/// Takes the next step of the rollover in the key-set file at `path` when the rollover is
/// automatic, the step waits only for time, and its time has come at `now`: the step taken
/// (`Some(None)`: the rollover ended), or `None` when there was nothing to take.
pub fn take_due_step(path: &Path, now: u64) -> Result<Option<Option<Step>>, StateError> {
    if !path.exists() {
        // One CSK and no rollover ever: no lock file either.
        return Ok(None);
    }
    let _held = lock(path)?;
    let Some(mut set) = KeySet::read(path)? else {
        return Ok(None);
    };
    let due = set.rollover.as_ref().is_some_and(|r| r.auto)
        && !set.waits_for_parent()
        && set.next().is_some_and(|(_, at, _)| at <= now);
    if !due {
        return Ok(None);
    }
    let step = set.advance(now, false).expect("due: the step is safe");
    set.write(path)?;
    Ok(Some(step))
}

/// Unix seconds as `2026-11-29 23:00:05 UTC`.
pub fn utc(t: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(t as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_796_000_000;
    const TIMING: Timing = Timing {
        dnskey_ttl: 3600,
        max_zone_ttl: 86_400,
        ds_ttl: 7200,
        propagation: 300,
    };

    fn split() -> KeySet {
        KeySet::split(("k.key".into(), 1), ("z.key".into(), 2))
    }

    fn signing(set: &KeySet) -> (Vec<u16>, Vec<u16>, Vec<u16>, Vec<u16>) {
        let tags = |f: fn(&KeyEntry) -> bool| {
            set.keys
                .iter()
                .filter(|k| f(k))
                .map(|k| k.tag)
                .collect::<Vec<_>>()
        };
        (
            tags(|k| k.published),
            tags(|k| k.signs_keys),
            tags(|k| k.signs_zone),
            tags(|k| k.at_parent),
        )
    }

    #[test]
    fn rfc6781_zsk_pre_publish_waits_the_dnskey_ttl_then_the_largest_zone_ttl() {
        let mut set = split();
        set.start(Role::Zsk, "z2.key".into(), 3, TIMING, T0, false)
            .unwrap();
        assert_eq!(signing(&set), (vec![1, 2, 3], vec![1], vec![2], vec![1]));
        let (next, safe, _) = set.next().unwrap();
        assert_eq!((next, safe), (Some(Step::Active), T0 + 3600 + 300));
        let early = set.advance(safe - 1, false).unwrap_err();
        assert!(
            early
                .to_string()
                .contains(&format!("safe from {}", utc(safe))),
            "{early}"
        );
        assert_eq!(set.advance(safe, false), Ok(Some(Step::Active)));
        assert_eq!(signing(&set), (vec![1, 2, 3], vec![1], vec![3], vec![1]));
        let (next, done_at, _) = set.next().unwrap();
        assert_eq!((next, done_at), (None, safe + 86_400 + 300));
        assert!(set.advance(done_at - 1, false).is_err());
        assert_eq!(set.advance(done_at, false), Ok(None));
        assert_eq!(signing(&set), (vec![1, 3], vec![1], vec![3], vec![1]));
        assert_eq!(set.advance(done_at, false), Err(StepError::Idle));
    }

    #[test]
    fn rfc6781_ksk_double_ds_swaps_after_the_ds_ttl_and_drops_the_old_ds_after_the_dnskey_ttl() {
        let mut set = split();
        set.start(Role::Ksk, "k2.key".into(), 4, TIMING, T0, false)
            .unwrap();
        // The new DS is offered before the key is published.
        assert_eq!(signing(&set), (vec![1, 2], vec![1], vec![2], vec![1, 4]));
        assert_eq!(set.advance(T0 + 300, false), Ok(Some(Step::DsPublished)));
        let (_, safe, why) = set.next().unwrap();
        assert_eq!(safe, T0 + 300 + 7200 + 300, "{why}");
        assert!(set.advance(safe - 1, false).is_err());
        assert_eq!(set.advance(safe, false), Ok(Some(Step::Swapped)));
        assert_eq!(signing(&set), (vec![2, 4], vec![4], vec![2], vec![1, 4]));
        let (_, done_at, _) = set.next().unwrap();
        assert_eq!(done_at, safe + 3600 + 300);
        assert_eq!(set.advance(done_at, false), Ok(None));
        assert_eq!(signing(&set), (vec![2, 4], vec![4], vec![2], vec![4]));
    }

    #[test]
    fn csk_rollover_publishes_first_and_waits_for_the_longer_of_zone_and_ds_ttl() {
        let mut set = KeySet::single("example.com.key".into(), 7);
        set.start(Role::Csk, "c.key".into(), 8, TIMING, T0, false)
            .unwrap();
        assert_eq!(signing(&set), (vec![7, 8], vec![7, 8], vec![7], vec![7, 8]));
        let at = T0 + 3600 + 300;
        assert_eq!(set.advance(at, false), Ok(Some(Step::Active)));
        assert_eq!(signing(&set), (vec![7, 8], vec![7, 8], vec![8], vec![7, 8]));
        let (_, done_at, _) = set.next().unwrap();
        assert_eq!(done_at, at + 86_400 + 300, "zone TTL is the larger");
        let short = Timing {
            max_zone_ttl: 60,
            ..TIMING
        };
        set.rollover.as_mut().unwrap().timing = short;
        assert_eq!(
            set.next().unwrap().1,
            at + 7200 + 300,
            "DS TTL is the larger"
        );
        assert_eq!(set.advance(at + 7500, false), Ok(None));
        assert_eq!(signing(&set), (vec![8], vec![8], vec![8], vec![8]));
    }

    #[test]
    fn a_forced_step_is_taken_early_and_one_rollover_at_a_time() {
        let mut set = split();
        set.start(Role::Zsk, "z2.key".into(), 3, TIMING, T0, false)
            .unwrap();
        assert_eq!(
            set.start(Role::Ksk, "k2.key".into(), 4, TIMING, T0, false),
            Err(StepError::Busy(Role::Zsk, Step::Published))
        );
        assert_eq!(set.advance(T0, true), Ok(Some(Step::Active)));
        let mut csk = KeySet::single("c.key".into(), 7);
        assert!(matches!(
            csk.start(Role::Zsk, "z.key".into(), 9, TIMING, T0, false),
            Err(StepError::NoKey(Role::Zsk, _))
        ));
    }

    #[test]
    fn the_server_takes_only_due_timed_steps_of_an_automatic_rollover() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("example.com.keys.json");
        let mut set = KeySet::single("c.key".into(), 7);
        set.start(Role::Csk, "n.key".into(), 8, TIMING, T0, true)
            .unwrap();
        set.write(&path).unwrap();
        // The CSK's first step waits for the parent: never taken by the clock.
        assert_eq!(take_due_step(&path, T0 + 86_400 * 30).unwrap(), None);
        let mut set = KeySet::read(&path).unwrap().unwrap();
        set.advance(T0 + 3900, false).unwrap();
        set.write(&path).unwrap();
        let (_, at, _) = set.next().unwrap();
        assert_eq!(take_due_step(&path, at - 1).unwrap(), None, "not yet");
        assert_eq!(take_due_step(&path, at).unwrap(), Some(None), "done");
        assert_eq!(KeySet::read(&path).unwrap().unwrap().rollover, None);
        // A rollover not started with --auto waits for --next.
        let mut manual = split();
        manual
            .start(Role::Zsk, "z2.key".into(), 3, TIMING, T0, false)
            .unwrap();
        manual.write(&path).unwrap();
        assert_eq!(take_due_step(&path, T0 + 86_400 * 30).unwrap(), None);
    }

    #[test]
    fn the_state_survives_a_write_and_a_damaged_file_is_reported_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("example.com.keys.json");
        assert!(KeySet::read(&path).unwrap().is_none());
        let mut set = split();
        set.start(Role::Zsk, "z2.key".into(), 3, TIMING, T0, false)
            .unwrap();
        set.write(&path).unwrap();
        assert_eq!(KeySet::read(&path).unwrap(), Some(set.clone()));

        let text = std::fs::read_to_string(&path).unwrap();
        let damaged = text.replacen("\"published\": true", "\"published\": tru", 1);
        std::fs::write(&path, &damaged).unwrap();
        let e = KeySet::read(&path).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: line ", path.display())), "{e}");
        assert!(e.contains("column"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), damaged, "kept");

        // Sound JSON that no rollover leads to.
        let mut lost = set.clone();
        lost.keys.iter_mut().for_each(|k| k.signs_zone = false);
        lost.write(&path).unwrap();
        let e = KeySet::read(&path).unwrap_err().to_string();
        assert!(e.ends_with("no key signs the zone's data"), "{e}");
        let truncated = &text[..text.len() / 2];
        std::fs::write(&path, truncated).unwrap();
        assert!(matches!(
            KeySet::read(&path),
            Err(StateError::Parse(_, _, _, _))
        ));
    }
}
