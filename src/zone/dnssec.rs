//! A zone's DNSSEC key and the signatures made with it.
//!
//! One combined signing key (CSK) per zone, as PKCS#8 in a file of mode 0600: by default
//! `<state-dir>/dnssec/<zone>key`, or a path in the zone file (relative to the zone file's
//! directory) so that several nameservers can share it. The rule a reader must know: a
//! signature's validity window depends only on the day, never on the moment of signing
//! (inception at the start of the UTC day minus an hour, expiration [`Spec::validity_days`]
//! later), so identical RRsets signed on the same day give interchangeable, cacheable
//! signatures, and a signature is always at least `validity_days - 1` days from expiring.
//! Each key keeps the signatures it made (by the exact data signed), shared by every thread
//! and kept across snapshot swaps: an RRset is signed once a day, however many serving
//! threads, failovers or health changes ask for it again.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hickory_proto::dnssec::crypto::{EcdsaSigningKey, Ed25519SigningKey};
use hickory_proto::dnssec::rdata::{CDNSKEY, CDS, DNSKEY, DNSSECRData, DS, RRSIG, SigInput};
use hickory_proto::dnssec::{Algorithm, DigestType, PublicKey, SigningKey, TBS};
use hickory_proto::rr::{DNSClass, Name, RData, Record, SerialNumber};
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
}

/// A signature and the data it was made over.
struct Signed {
    data: Vec<u8>,
    sig: Vec<u8>,
}

/// A zone's signing key and the records that publish it.
pub struct Signer {
    key: Box<dyn SigningKey>,
    algorithm: KeyAlgorithm,
    zone: Name,
    tag: u16,
    validity_days: u32,
    pub dnskey: DNSKEY,
    pub ds: DS,
    /// Signatures by hash of the signed data, which the entry keeps to compare: the same
    /// RRset in the same window signs once, whoever asks for it.
    signatures: moka::sync::Cache<u64, Arc<Signed>>,
    hasher: std::hash::RandomState,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("zone", &self.zone)
            .field("algorithm", &self.algorithm)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads the key of `zone` from `path`, which only its owner may read.
    pub fn load(
        path: &Path,
        algorithm: KeyAlgorithm,
        zone: &Name,
        validity_days: u32,
    ) -> Result<Self, KeyError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| KeyError::Read(path.to_owned(), e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Mode(path.to_owned(), mode));
        }
        let der = crate::files::read_regular(path, crate::files::SMALL_FILE)
            .map_err(|e| KeyError::Read(path.to_owned(), std::io::Error::other(e.to_string())))?;
        Self::from_pkcs8(&der, algorithm, zone, validity_days)
    }

    pub fn from_pkcs8(
        der: &[u8],
        algorithm: KeyAlgorithm,
        zone: &Name,
        validity_days: u32,
    ) -> Result<Self, KeyError> {
        let key = algorithm.signing_key(der)?;
        let public = key
            .to_public_key()
            .map_err(|e| KeyError::Crypto(e.to_string()))?;
        // Flags 257: a zone key and a secure entry point, the one key of the zone (a CSK).
        let dnskey = DNSKEY::from_key(&public);
        let tag = dnskey
            .calculate_key_tag()
            .map_err(|e| KeyError::Crypto(e.to_string()))?;
        let ds = DS::from_key(&public, zone, DigestType::SHA256)
            .map_err(|e| KeyError::Crypto(e.to_string()))?;
        Ok(Signer {
            key,
            algorithm,
            zone: zone.to_lowercase(),
            tag,
            validity_days,
            dnskey,
            ds,
            signatures: moka::sync::Cache::new(SIGNATURE_CACHE),
            hasher: std::hash::RandomState::new(),
        })
    }

    pub fn tag(&self) -> u16 {
        self.tag
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The DS record for the parent zone (SHA-256), in master-file form.
    pub fn ds_line(&self, ttl: u32) -> String {
        Record::from_rdata(
            self.zone.clone(),
            ttl,
            RData::DNSSEC(DNSSECRData::DS(self.ds.clone())),
        )
        .to_string()
    }

    /// The apex records that publish the key: DNSKEY, and CDS and CDNSKEY (RFC 7344) so the
    /// parent can take the DS from the zone itself.
    pub fn apex_records(&self, ttl: u32) -> Vec<Record> {
        let rdata = [
            DNSSECRData::DNSKEY(self.dnskey.clone()),
            DNSSECRData::CDS(CDS::new(
                self.ds.key_tag(),
                Some(self.ds.algorithm()),
                self.ds.digest_type(),
                self.ds.digest().to_vec(),
            )),
            DNSSECRData::CDNSKEY(CDNSKEY::new(
                self.dnskey.zone_key(),
                self.dnskey.secure_entry_point(),
                false,
                Some(self.dnskey.public_key().algorithm()),
                self.dnskey.public_key().public_bytes().to_vec(),
            )),
        ];
        rdata
            .into_iter()
            .map(|r| Record::from_rdata(self.zone.clone(), ttl, RData::DNSSEC(r)))
            .collect()
    }

    /// When signatures made after `now` start carrying the next window (Unix seconds): the
    /// next UTC day, when every RRset is signed again as it is first asked for.
    pub fn next_window_at(&self, now: u32) -> u32 {
        now - now % DAY + DAY
    }

    /// The validity window of signatures made at `now` (Unix seconds): (inception,
    /// expiration).
    pub fn window(&self, now: u32) -> (u32, u32) {
        let inception = (now - now % DAY).saturating_sub(INCEPTION_SLACK);
        (inception, inception + self.validity_days * DAY)
    }

    /// The RRSIG over `records` (one RRset: same owner, type and class), owned by their
    /// owner. `labels` is the RRSIG Labels field: the owner's label count, or for an answer
    /// expanded from a wildcard, the wildcard's without its `*` (RFC 4035 §5.3.4), which makes
    /// the signature cover the wildcard's owner. The flag says whether a signature was made
    /// (`false`: it came from the signature cache).
    pub fn sign(
        &self,
        records: &[Record],
        labels: u8,
        now: u32,
    ) -> Result<(Record, bool), KeyError> {
        let first = records.first().expect("an RRset has a record");
        let (inception, expiration) = self.window(now);
        let input = SigInput {
            type_covered: first.record_type(),
            algorithm: self.algorithm.hickory(),
            num_labels: labels,
            original_ttl: first.ttl,
            sig_expiration: SerialNumber::new(expiration),
            sig_inception: SerialNumber::new(inception),
            key_tag: self.tag,
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
                let sig = self.key.sign(&tbs).map_err(|e| crypto(&e))?;
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

    fn signer(validity_days: u32) -> Signer {
        let der = KeyAlgorithm::Ed25519.generate().unwrap();
        let zone = Name::from_ascii("example.com.").unwrap();
        Signer::from_pkcs8(&der, KeyAlgorithm::Ed25519, &zone, validity_days).unwrap()
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
    fn rfc4034_the_ds_and_cds_digest_the_dnskey_and_name_the_key_tag() {
        let s = signer(DEFAULT_VALIDITY_DAYS);
        let zone = Name::from_ascii("example.com.").unwrap();
        assert!(s.ds.covers(&zone, &s.dnskey).unwrap());
        assert_eq!(s.ds.key_tag(), s.tag());
        let line = s.ds_line(3600);
        assert!(
            line.starts_with(&format!("example.com. 3600 IN DS {} 15 2 ", s.tag())),
            "{line}"
        );
        let apex = s.apex_records(3600);
        let types: Vec<String> = apex.iter().map(|r| r.record_type().to_string()).collect();
        assert_eq!(types, ["DNSKEY", "CDS", "CDNSKEY"]);
    }
}
