//! A zone's DNSSEC keys and the signatures made with them.
//!
//! By default one combined signing key (CSK), as PKCS#8 in a file of mode 0600:
//! `<state-dir>/dnssec/<zone>key`, or a path in the zone file (relative to the zone file's
//! directory) so that several nameservers can share it. A KSK and a ZSK, or the keys of a
//! rollover, are listed with what each does in the zone's key-set file ([`super::rollover`]).
//! The rule a reader must know: a signature's validity window depends only on the time's
//! period of [`Spec::period_days`] days, never on the moment of signing (inception at the
//! period's start minus an hour, expiration [`Spec::validity_days`] later), so identical
//! RRsets signed in the same period give interchangeable, cacheable signatures, and a
//! signature served is `refresh_days` days (less the hour of slack) from expiring at least.
//! The signer keeps the signatures it made (by the exact data signed, key tag included),
//! shared by every thread and kept across snapshot swaps: an RRset is signed once a period,
//! however many serving threads, failovers or health changes ask for it again.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hickory_proto::dnssec::crypto::{EcdsaSigningKey, Ed25519SigningKey};
use hickory_proto::dnssec::rdata::{CDNSKEY, CDS, DNSKEY, DNSSECRData, DS, RRSIG, SigInput};
use hickory_proto::dnssec::{Algorithm, DigestType, PublicKey, PublicKeyBuf, SigningKey, TBS};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, SerialNumber};

use super::rollover::{KeyEntry, KeySet, Role, Rollover, Step};
use rustls::pki_types::PrivatePkcs8KeyDer;

/// Days a signature stays valid when the zone does not say.
pub const DEFAULT_VALIDITY_DAYS: u32 = 8;
/// Signatures kept per zone key, shared by every serving thread and snapshot: more than the
/// distinct RRsets a zone answers with on a day (regions x rotations x TTLs per steered name,
/// plus static RRsets), so that a failover, a reload of health or a thread's first answer
/// finds the RRset signed already. Random names of a flood come and go (moka admits by
/// frequency, TinyLFU), so they do not push the answers that matter out.
const SIGNATURE_CACHE: u64 = 100_000;
/// Seconds before the start of the day that a signature's inception is set: validators with
/// a clock a little behind accept it too.
const INCEPTION_SLACK: u32 = 3600;
const DAY: u32 = 86_400;

/// The signing algorithms offered: both are small and fast (RFC 8624 recommends both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    EcdsaP256Sha256,
    Ed25519,
}

impl KeyAlgorithm {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "ecdsap256sha256" => Some(KeyAlgorithm::EcdsaP256Sha256),
            "ed25519" => Some(KeyAlgorithm::Ed25519),
            _ => None,
        }
    }

    fn hickory(self) -> Algorithm {
        match self {
            KeyAlgorithm::EcdsaP256Sha256 => Algorithm::ECDSAP256SHA256,
            KeyAlgorithm::Ed25519 => Algorithm::ED25519,
        }
    }

    /// A new private key, as PKCS#8 DER.
    pub fn generate(self) -> Result<Vec<u8>, KeyError> {
        let der = match self {
            KeyAlgorithm::EcdsaP256Sha256 => EcdsaSigningKey::generate_pkcs8(self.hickory()),
            KeyAlgorithm::Ed25519 => Ed25519SigningKey::generate_pkcs8(),
        }
        .map_err(|e| KeyError::Crypto(e.to_string()))?;
        Ok(der.secret_pkcs8_der().to_vec())
    }

    fn signing_key(self, der: &[u8]) -> Result<Box<dyn SigningKey>, KeyError> {
        let der = PrivatePkcs8KeyDer::from(der);
        let key: Box<dyn SigningKey> = match self {
            KeyAlgorithm::EcdsaP256Sha256 => Box::new(
                EcdsaSigningKey::from_pkcs8(&der, self.hickory())
                    .map_err(|e| KeyError::Format(self, e.to_string()))?,
            ),
            KeyAlgorithm::Ed25519 => Box::new(
                Ed25519SigningKey::from_pkcs8(&der)
                    .map_err(|e| KeyError::Format(self, e.to_string()))?,
            ),
        };
        Ok(key)
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::EcdsaP256Sha256 => "ecdsap256sha256",
            KeyAlgorithm::Ed25519 => "ed25519",
        })
    }
}

/// A zone's `dnssec` setting, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub algorithm: KeyAlgorithm,
    /// The key file as the zone file gives it (relative to the zone file's directory), or
    /// `None` for the default in the state directory.
    pub key: Option<PathBuf>,
    pub validity_days: u32,
    /// Days a signature has left, at least, when the next window starts: windows begin
    /// every `validity_days - refresh_days` days.
    pub refresh_days: u32,
    /// The zone file line of the setting, for diagnostics about the key.
    pub line: usize,
}

impl Spec {
    /// Where the key is: the zone file's path if it names one, else the state directory's.
    pub fn key_path(&self, zone_file: &Path, origin: &Name, state_dir: &Path) -> PathBuf {
        match &self.key {
            Some(p) => zone_file.parent().unwrap_or(Path::new(".")).join(p),
            None => default_key_path(origin, state_dir),
        }
    }
}

impl Spec {
    /// Days between the starts of two signature windows.
    pub fn period_days(&self) -> u32 {
        self.validity_days - self.refresh_days
    }
}

/// `<state-dir>/dnssec/<zone>key`, e.g. `state/dnssec/example.com.key`.
pub fn default_key_path(origin: &Name, state_dir: &Path) -> PathBuf {
    state_dir
        .join("dnssec")
        .join(format!("{}key", origin.to_lowercase().to_ascii()))
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error(
        "key file {0} is open to other users (mode {1:04o}): a private key must be mode 0600 (chmod 600)"
    )]
    Mode(PathBuf, u32),
    #[error("key file is not a PKCS#8 {0} private key: {1}")]
    Format(KeyAlgorithm, String),
    #[error("key: {0}")]
    Crypto(String),
    #[error("key file {0} holds the key with tag {1}, but the key set lists it as {2}")]
    Tag(PathBuf, u16, u16),
    #[error("{0}")]
    State(#[from] super::rollover::StateError),
}

/// A signature and the data it was made over.
struct Signed {
    data: Vec<u8>,
    sig: Vec<u8>,
}

/// One key of the zone, with what it does.
struct ZoneKey {
    key: Box<dyn SigningKey>,
    entry: KeyEntry,
    dnskey: DNSKEY,
    /// For a KSK or CSK: the DS of its DNSKEY.
    ds: Option<DS>,
}

/// A zone's signing keys and the records that publish them.
pub struct Signer {
    keys: Vec<ZoneKey>,
    algorithm: KeyAlgorithm,
    zone: Name,
    validity_days: u32,
    period_days: u32,
    rollover: Option<Rollover>,
    /// Signatures by hash of the signed data (key tag included), which the entry keeps to
    /// compare: the same RRset in the same window signs once per key, whoever asks for it.
    signatures: moka::sync::Cache<u64, Arc<Signed>>,
    hasher: std::hash::RandomState,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("zone", &self.zone)
            .field("algorithm", &self.algorithm)
            .field("keys", &self.describe())
            .finish_non_exhaustive()
    }
}

/// A key of the signer, as the route and the API show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyView {
    pub tag: u16,
    pub role: Role,
    pub published: bool,
    pub signs_keys: bool,
    pub signs_zone: bool,
    pub at_parent: bool,
}

/// Reads a private key file that only its owner may read.
fn read_private(path: &Path) -> Result<Vec<u8>, KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| KeyError::Read(path.to_owned(), e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Mode(path.to_owned(), mode));
    }
    crate::files::read_regular(path, crate::files::SMALL_FILE)
        .map_err(|e| KeyError::Read(path.to_owned(), std::io::Error::other(e.to_string())))
}

impl Signer {
    /// Reads the one CSK of `zone` from `path`.
    pub fn load(
        path: &Path,
        algorithm: KeyAlgorithm,
        zone: &Name,
        spec: &Spec,
    ) -> Result<Self, KeyError> {
        let der = read_private(path)?;
        Self::from_pkcs8(&der, algorithm, zone, spec)
    }

    /// Reads the keys `set` lists from `dir` (its file's directory).
    pub fn load_set(
        dir: &Path,
        set: &KeySet,
        algorithm: KeyAlgorithm,
        zone: &Name,
        spec: &Spec,
    ) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for entry in &set.keys {
            let path = dir.join(&entry.file);
            let der = read_private(&path)?;
            let key = zone_key(&der, algorithm, zone, entry.clone())?;
            let tag = key.tag();
            if tag != entry.tag {
                return Err(KeyError::Tag(path, tag, entry.tag));
            }
            keys.push(key);
        }
        Ok(Self::with_keys(
            keys,
            algorithm,
            zone,
            spec,
            set.rollover.clone(),
        ))
    }

    /// The signer of one CSK given as PKCS#8.
    pub fn from_pkcs8(
        der: &[u8],
        algorithm: KeyAlgorithm,
        zone: &Name,
        spec: &Spec,
    ) -> Result<Self, KeyError> {
        let entry = KeyEntry {
            file: String::new(),
            role: Role::Csk,
            tag: 0,
            published: true,
            signs_keys: true,
            signs_zone: true,
            at_parent: true,
        };
        let mut key = zone_key(der, algorithm, zone, entry)?;
        key.entry.tag = key.tag();
        Ok(Self::with_keys(vec![key], algorithm, zone, spec, None))
    }

    fn with_keys(
        keys: Vec<ZoneKey>,
        algorithm: KeyAlgorithm,
        zone: &Name,
        spec: &Spec,
        rollover: Option<Rollover>,
    ) -> Self {
        Signer {
            keys,
            algorithm,
            zone: zone.to_lowercase(),
            validity_days: spec.validity_days,
            period_days: spec.period_days(),
            rollover,
            signatures: moka::sync::Cache::new(SIGNATURE_CACHE),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// The tag of the key that signs the zone's data now (the first, during a rollover).
    pub fn tag(&self) -> u16 {
        self.keys
            .iter()
            .find(|k| k.entry.signs_zone)
            .expect("a key set has a zone-signing key (validated)")
            .tag()
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// Every key and what it does.
    pub fn keys(&self) -> Vec<KeyView> {
        self.keys
            .iter()
            .map(|k| KeyView {
                tag: k.tag(),
                role: k.entry.role,
                published: k.entry.published,
                signs_keys: k.entry.signs_keys,
                signs_zone: k.entry.signs_zone,
                at_parent: k.entry.at_parent,
            })
            .collect()
    }

    /// `12345 ksk, 23456 zsk`.
    pub fn describe(&self) -> String {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("{} {}", k.tag(), k.entry.role))
            .collect();
        keys.join(", ")
    }

    /// The rollover under way, as the key set said when it was read.
    pub fn rollover(&self) -> Option<&Rollover> {
        self.rollover.as_ref()
    }

    /// The rollover's next step: its name (`None`: the end) and the earliest time it is safe
    /// (Unix seconds).
    pub fn next_step(&self) -> Option<(Option<Step>, u64)> {
        let (step, at, _) = self.rollover.as_ref()?.next();
        Some((step, at))
    }

    /// The DS records for the parent zone (SHA-256), in master-file form, one per key that
    /// is or should be there.
    pub fn ds_lines(&self, ttl: u32) -> Vec<String> {
        self.keys
            .iter()
            .filter(|k| k.entry.at_parent)
            .filter_map(|k| k.ds.clone())
            .map(|ds| {
                Record::from_rdata(self.zone.clone(), ttl, RData::DNSSEC(DNSSECRData::DS(ds)))
                    .to_string()
            })
            .collect()
    }

    /// The first of [`Self::ds_lines`].
    pub fn ds_line(&self, ttl: u32) -> String {
        self.ds_lines(ttl).into_iter().next().unwrap_or_default()
    }

    /// The apex records that publish the keys: DNSKEY for each key published, and CDS and
    /// CDNSKEY (RFC 7344) for each key whose DS the parent should have, so that it can take
    /// the DS RRset from the zone itself.
    pub fn apex_records(&self, ttl: u32) -> Vec<Record> {
        let mut rdata = Vec::new();
        for k in self.keys.iter().filter(|k| k.entry.published) {
            rdata.push(DNSSECRData::DNSKEY(k.dnskey.clone()));
        }
        for k in self.keys.iter().filter(|k| k.entry.at_parent) {
            let Some(ds) = &k.ds else { continue };
            rdata.push(DNSSECRData::CDS(CDS::new(
                ds.key_tag(),
                Some(ds.algorithm()),
                ds.digest_type(),
                ds.digest().to_vec(),
            )));
        }
        for k in self.keys.iter().filter(|k| k.entry.at_parent) {
            rdata.push(DNSSECRData::CDNSKEY(CDNSKEY::new(
                k.dnskey.zone_key(),
                k.dnskey.secure_entry_point(),
                false,
                Some(k.dnskey.public_key().algorithm()),
                k.dnskey.public_key().public_bytes().to_vec(),
            )));
        }
        rdata
            .into_iter()
            .map(|r| Record::from_rdata(self.zone.clone(), ttl, RData::DNSSEC(r)))
            .collect()
    }

    /// When signatures made after `now` start carrying the next window (Unix seconds).
    pub fn next_window_at(&self, now: u32) -> u32 {
        let period = self.period_days * DAY;
        now - now % period + period
    }

    /// The validity window of signatures made at `now` (Unix seconds): (inception,
    /// expiration).
    pub fn window(&self, now: u32) -> (u32, u32) {
        let period = self.period_days * DAY;
        let inception = (now - now % period).saturating_sub(INCEPTION_SLACK);
        (inception, inception + self.validity_days * DAY)
    }

    /// The RRSIGs over `records` (one RRset: same owner, type and class), owned by their
    /// owner: one per key that signs that type (the DNSKEY, CDS and CDNSKEY RRsets by the
    /// keys that sign keys, the rest by those that sign the zone). `labels` is the RRSIG
    /// Labels field: the owner's label count, or for an answer expanded from a wildcard, the
    /// wildcard's without its `*` (RFC 4035 §5.3.4), which makes the signature cover the
    /// wildcard's owner. The count says how many signatures were made (the others came from
    /// the signature cache).
    pub fn sign(
        &self,
        records: &[Record],
        labels: u8,
        now: u32,
    ) -> Result<(Vec<Record>, u64), KeyError> {
        let first = records.first().expect("an RRset has a record");
        let keys_rrset = matches!(
            first.record_type(),
            RecordType::DNSKEY | RecordType::CDS | RecordType::CDNSKEY
        );
        let mut out = Vec::with_capacity(1);
        let mut made = 0;
        for k in &self.keys {
            let signs = if keys_rrset {
                k.entry.signs_keys
            } else {
                k.entry.signs_zone
            };
            if signs {
                let (rrsig, fresh) = self.sign_with(k, records, labels, now)?;
                out.push(rrsig);
                made += u64::from(fresh);
            }
        }
        Ok((out, made))
    }

    fn sign_with(
        &self,
        k: &ZoneKey,
        records: &[Record],
        labels: u8,
        now: u32,
    ) -> Result<(Record, bool), KeyError> {
        let first = &records[0];
        let (inception, expiration) = self.window(now);
        let input = SigInput {
            type_covered: first.record_type(),
            algorithm: self.algorithm.hickory(),
            num_labels: labels,
            original_ttl: first.ttl,
            sig_expiration: SerialNumber::new(expiration),
            sig_inception: SerialNumber::new(inception),
            key_tag: k.tag(),
            signer_name: self.zone.clone(),
        };
        let crypto = |e: &dyn fmt::Display| KeyError::Crypto(e.to_string());
        let tbs = TBS::from_input(&first.name, DNSClass::IN, &input, records.iter())
            .map_err(|e| crypto(&e))?;
        let data = tbs.as_ref();
        let hash = std::hash::BuildHasher::hash_one(&self.hasher, data);
        let (sig, made) = match self.signatures.get(&hash).filter(|e| e.data == data) {
            Some(e) => (e.sig.clone(), false),
            None => {
                let sig = k.key.sign(&tbs).map_err(|e| crypto(&e))?;
                let entry = Signed {
                    data: data.to_vec(),
                    sig: sig.clone(),
                };
                self.signatures.insert(hash, Arc::new(entry));
                (sig, true)
            }
        };
        let rrsig = Record::from_rdata(
            first.name.clone(),
            first.ttl,
            RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, sig))),
        );
        Ok((rrsig, made))
    }

    /// The DNSKEY of the key with `tag`, to check its signatures.
    pub fn dnskey(&self, tag: u16) -> Option<&DNSKEY> {
        self.keys.iter().find(|k| k.tag() == tag).map(|k| &k.dnskey)
    }
}

impl ZoneKey {
    fn tag(&self) -> u16 {
        self.entry.tag
    }
}

/// The key in `der` with what `entry` says it does; its tag computed (not taken from
/// `entry`).
fn zone_key(
    der: &[u8],
    algorithm: KeyAlgorithm,
    zone: &Name,
    mut entry: KeyEntry,
) -> Result<ZoneKey, KeyError> {
    let key = algorithm.signing_key(der)?;
    let crypto = |e: &dyn fmt::Display| KeyError::Crypto(e.to_string());
    let public = key.to_public_key().map_err(|e| crypto(&e))?;
    // Flags 257 for a key whose DS is at the parent (a secure entry point), 256 for a ZSK.
    let dnskey = DNSKEY::with_flags(
        entry.role.flags(),
        PublicKeyBuf::new(public.public_bytes().to_owned(), public.algorithm()),
    );
    entry.tag = dnskey.calculate_key_tag().map_err(|e| crypto(&e))?;
    let ds = match entry.role {
        Role::Zsk => None,
        Role::Csk | Role::Ksk => {
            Some(DS::from_key(&public, zone, DigestType::SHA256).map_err(|e| crypto(&e))?)
        }
    };
    Ok(ZoneKey {
        key,
        entry,
        dnskey,
        ds,
    })
}

/// The tag a new key in `der` gets in `role`.
pub fn key_tag(
    der: &[u8],
    algorithm: KeyAlgorithm,
    zone: &Name,
    role: Role,
) -> Result<u16, KeyError> {
    let entry = KeyEntry {
        file: String::new(),
        role,
        tag: 0,
        published: true,
        signs_keys: false,
        signs_zone: false,
        at_parent: false,
    };
    Ok(zone_key(der, algorithm, zone, entry)?.tag())
}

/// A zone's DNSSEC: its setting and, once the key is read, its signer.
#[derive(Debug, Clone)]
pub struct Dnssec {
    pub spec: Spec,
    pub signer: Option<Arc<Signer>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(validity_days: u32, refresh_days: u32) -> Spec {
        Spec {
            algorithm: KeyAlgorithm::Ed25519,
            key: None,
            validity_days,
            refresh_days,
            line: 1,
        }
    }

    fn signer(validity_days: u32) -> Signer {
        let der = KeyAlgorithm::Ed25519.generate().unwrap();
        let zone = Name::from_ascii("example.com.").unwrap();
        let spec = spec(validity_days, validity_days - 1);
        Signer::from_pkcs8(&der, KeyAlgorithm::Ed25519, &zone, &spec).unwrap()
    }

    #[test]
    fn the_window_depends_on_the_day_alone() {
        let s = signer(DEFAULT_VALIDITY_DAYS);
        // 2026-11-30 18:40:54 UTC and the day's first and last seconds.
        let day = 1_795_996_800;
        for now in [day, day + 67_254, day + DAY - 1] {
            assert_eq!(s.window(now), (day - 3600, day - 3600 + 8 * DAY), "{now}");
        }
        assert_eq!(
            s.window(day + DAY).0,
            day + DAY - 3600,
            "the next day moves it"
        );
        assert_eq!(signer(2).window(day).1, day - 3600 + 2 * DAY);
    }

    #[test]
    fn windows_start_every_validity_minus_refresh_days() {
        let der = KeyAlgorithm::Ed25519.generate().unwrap();
        let zone = Name::from_ascii("example.com.").unwrap();
        let s = Signer::from_pkcs8(&der, KeyAlgorithm::Ed25519, &zone, &spec(14, 7)).unwrap();
        // Periods of 7 days counted from the epoch: 1_795_996_800 is day 20787, and the
        // period holding it began on day 20783.
        let day = 1_795_996_800;
        let start = day - 4 * DAY;
        assert_eq!(s.window(day), (start - 3600, start - 3600 + 14 * DAY));
        assert_eq!(s.window(start + 7 * DAY - 1).0, start - 3600);
        assert_eq!(s.next_window_at(day), start + 7 * DAY);
        // The last signature of a window still has the refresh margin left.
        let (_, expiration) = s.window(start + 7 * DAY - 1);
        assert!(expiration - (start + 7 * DAY) >= 7 * DAY - 3600);
    }

    #[test]
    fn rfc4034_the_ds_and_cds_digest_the_dnskey_and_name_the_key_tag() {
        let s = signer(DEFAULT_VALIDITY_DAYS);
        let zone = Name::from_ascii("example.com.").unwrap();
        let dnskey = s.dnskey(s.tag()).unwrap();
        assert_eq!(dnskey.flags(), 257);
        let ds = &s.keys[0].ds.clone().unwrap();
        assert!(ds.covers(&zone, dnskey).unwrap());
        assert_eq!(ds.key_tag(), s.tag());
        let line = s.ds_line(3600);
        assert!(
            line.starts_with(&format!("example.com. 3600 IN DS {} 15 2 ", s.tag())),
            "{line}"
        );
        let apex = s.apex_records(3600);
        let types: Vec<String> = apex.iter().map(|r| r.record_type().to_string()).collect();
        assert_eq!(types, ["DNSKEY", "CDS", "CDNSKEY"]);
    }

    #[test]
    fn rfc6781_a_split_key_set_signs_keys_with_the_ksk_and_data_with_the_zsk() {
        use crate::zone::rollover::KeySet;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let zone = Name::from_ascii("example.com.").unwrap();
        let mut files = Vec::new();
        for (file, role) in [("k.key", Role::Ksk), ("z.key", Role::Zsk)] {
            let der = KeyAlgorithm::Ed25519.generate().unwrap();
            let path = dir.path().join(file);
            std::fs::write(&path, &der).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let tag = key_tag(&der, KeyAlgorithm::Ed25519, &zone, role).unwrap();
            files.push((file.to_string(), tag));
        }
        let (ksk, zsk) = (files[0].1, files[1].1);
        let set = KeySet::split(files[0].clone(), files[1].clone());
        let s =
            Signer::load_set(dir.path(), &set, KeyAlgorithm::Ed25519, &zone, &spec(8, 7)).unwrap();
        assert_eq!(s.dnskey(zsk).unwrap().flags(), 256);
        assert_eq!(s.dnskey(ksk).unwrap().flags(), 257);
        assert_eq!(s.tag(), zsk);
        assert_eq!(s.ds_lines(60).len(), 1, "the ZSK has no DS");
        let apex = s.apex_records(60);
        let dnskeys: Vec<Record> = apex
            .iter()
            .filter(|r| r.record_type() == RecordType::DNSKEY)
            .cloned()
            .collect();
        assert_eq!(dnskeys.len(), 2);
        let now = 1_796_000_000;
        let key_of = |sigs: &[Record]| -> Vec<u16> {
            sigs.iter()
                .map(|r| match &r.data {
                    RData::DNSSEC(DNSSECRData::RRSIG(sig)) => sig.input().key_tag,
                    _ => panic!("not an RRSIG"),
                })
                .collect()
        };
        let (sigs, made) = s.sign(&dnskeys, 2, now).unwrap();
        assert_eq!((key_of(&sigs), made), (vec![ksk], 1));
        let a = Record::from_rdata(
            Name::from_ascii("www.example.com.").unwrap(),
            60,
            RData::A("192.0.2.1".parse().unwrap()),
        );
        let (sigs, _) = s.sign(std::slice::from_ref(&a), 3, now).unwrap();
        assert_eq!(key_of(&sigs), vec![zsk]);
        let (_, again) = s.sign(std::slice::from_ref(&a), 3, now).unwrap();
        assert_eq!(again, 0, "the second time comes from the cache");

        // A key file that is not the key the set lists.
        let mut wrong = set.clone();
        wrong.keys[1].file = "k.key".into();
        let e = Signer::load_set(
            dir.path(),
            &wrong,
            KeyAlgorithm::Ed25519,
            &zone,
            &spec(8, 7),
        )
        .unwrap_err();
        assert!(e.to_string().contains(&format!("lists it as {zsk}")), "{e}");
    }
}
