//! DNS Cookies (RFC 7873) with interoperable server cookies (RFC 9018).
//!
//! A client that sends a client cookie gets a server cookie back: version 1, a timestamp and
//! SipHash-2-4 over (client cookie, version, timestamp, client address) with the server
//! secret. A query carrying a server cookie that verifies proves its source address, so its
//! UDP response may be larger than the query ([`Cookies::limit`]) and it is exempt from RRL;
//! anything else is held to `amplification` times the query's size.

use std::hash::Hasher;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use siphasher::sip::SipHasher24;

/// The EDNS option code of COOKIE.
pub const CODE: u16 = 10;
const CLIENT_LEN: usize = 8;
/// A server cookie we make: version, reserved, timestamp, hash.
const SERVER_LEN: usize = 16;
/// Client and server cookie, as we answer them.
pub const REPLY_LEN: usize = CLIENT_LEN + SERVER_LEN;
const VERSION: u8 = 1;
/// RFC 9018 §4.3: valid for an hour, up to 5 minutes ahead; renewed after half an hour.
const MAX_AGE: u32 = 3600;
const MAX_AHEAD: u32 = 300;
const RENEW_AFTER: u32 = 1800;
/// UDP response bytes per query byte for a client without a valid server cookie.
pub const DEFAULT_AMPLIFICATION: u16 = 8;
/// The smallest factor that always lets a truncated reply (the question and OPT, with the
/// 16 octets of server cookie added) through.
pub const MIN_AMPLIFICATION: u16 = 2;

/// The server secret and what a valid cookie earns.
#[derive(Clone)]
pub struct Cookies {
    secret: [u8; 16],
    /// 0: no limit on cookie-less UDP responses.
    amplification: u16,
}

impl std::fmt::Debug for Cookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Cookies")
            .field("amplification", &self.amplification)
            .finish()
    }
}

/// The COOKIE option of a query: the client cookie and the server cookie it sent back, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent<'a> {
    pub client: [u8; CLIENT_LEN],
    pub server: &'a [u8],
}

/// RFC 7873 §5.2.2: a COOKIE option of any other length is malformed (FORMERR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("COOKIE option of {0} octets: a client cookie is 8, with a server cookie 16 to 40")]
pub struct Malformed(pub usize);

/// Reads a COOKIE option body.
pub fn parse(body: &[u8]) -> Result<Sent<'_>, Malformed> {
    match body.len() {
        CLIENT_LEN | 16..=40 => Ok(Sent {
            client: body[..CLIENT_LEN].try_into().expect("length checked"),
            server: &body[CLIENT_LEN..],
        }),
        n => Err(Malformed(n)),
    }
}

/// What the server makes of a query's cookie: the option to answer with and whether the
/// query proved its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub option: [u8; REPLY_LEN],
    pub valid: bool,
}

impl Cookies {
    pub fn new(secret: [u8; 16], amplification: u16) -> Self {
        Cookies {
            secret,
            amplification,
        }
    }

    /// A fresh random secret: cookies last until restart.
    pub fn random(amplification: u16) -> Self {
        Self::new(random_secret(), amplification)
    }

    /// The secret in `path` (32 hex digits), created at random (mode 0600) when missing, so
    /// cookies survive a restart and anycast peers can share it (RFC 7873 §6).
    pub fn load_or_create(path: &Path, amplification: u16) -> Result<Self, SecretError> {
        let err = |source| SecretError::Io {
            path: path.to_owned(),
            source,
        };
        // Through the operator-file reader: a FIFO or a device in its place is refused at
        // start with what it is, never waited on.
        match crate::files::read_regular_text(path, crate::files::SMALL_FILE) {
            Ok(text) => {
                let secret = parse_hex(text.trim()).ok_or_else(|| SecretError::Format {
                    path: path.to_owned(),
                })?;
                Ok(Self::new(secret, amplification))
            }
            Err(e) if e.is_missing() => {
                let secret = random_secret();
                let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
                // Whole or not at all: a half-written secret (a full disk) would stop every
                // later start.
                crate::state::create_new(path, format!("{hex}\n").as_bytes(), 0o600)
                    .map_err(err)?;
                Ok(Self::new(secret, amplification))
            }
            Err(source) => Err(SecretError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// The answer to a query's cookie from `ip` at `now` (seconds since the epoch).
    pub fn reply(&self, sent: &Sent<'_>, ip: IpAddr, now: u32) -> Reply {
        let mut option = [0u8; REPLY_LEN];
        option[..CLIENT_LEN].copy_from_slice(&sent.client);
        let age = self.age(sent, ip, now);
        let valid = age.is_some();
        if let Some(age) = age
            && age < RENEW_AFTER
        {
            // Still fresh: the same cookie back spares the client a change (RFC 9018 §4.3).
            option[CLIENT_LEN..].copy_from_slice(sent.server);
        } else {
            option[CLIENT_LEN..].copy_from_slice(&self.server_cookie(&sent.client, ip, now));
        }
        Reply { option, valid }
    }

    /// Whether the query's cookie verifies: one of ours, for this client, and recent.
    pub fn verifies(&self, sent: &Sent<'_>, ip: IpAddr, now: u32) -> bool {
        self.age(sent, ip, now).is_some()
    }

    /// The age of a valid server cookie, in seconds (0 when up to 5 minutes ahead).
    fn age(&self, sent: &Sent<'_>, ip: IpAddr, now: u32) -> Option<u32> {
        let s = sent.server;
        if s.len() != SERVER_LEN || s[0] != VERSION {
            return None;
        }
        let stamp = u32::from_be_bytes(s[4..8].try_into().expect("16 octets"));
        // Serial number arithmetic (RFC 1982), as RFC 9018 §4.3 asks.
        let age = now.wrapping_sub(stamp);
        let ahead = stamp.wrapping_sub(now);
        if age > MAX_AGE && ahead > MAX_AHEAD {
            return None;
        }
        let expected = self.hash(&sent.client, &s[..8], ip);
        // Constant time, so timing does not reveal how much of a forged hash was right.
        let diff = expected
            .iter()
            .zip(&s[8..])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (diff == 0).then_some(if age <= MAX_AGE { age } else { 0 })
    }

    fn server_cookie(&self, client: &[u8; CLIENT_LEN], ip: IpAddr, now: u32) -> [u8; SERVER_LEN] {
        let mut out = [0u8; SERVER_LEN];
        out[0] = VERSION;
        out[4..8].copy_from_slice(&now.to_be_bytes());
        let head: [u8; 8] = out[..8].try_into().expect("16 octets");
        let hash = self.hash(client, &head, ip);
        out[8..].copy_from_slice(&hash);
        out
    }

    /// RFC 9018 §4.4: SipHash-2-4 over client cookie | version | reserved | timestamp |
    /// client address, keyed by the secret.
    fn hash(&self, client: &[u8; CLIENT_LEN], head: &[u8], ip: IpAddr) -> [u8; 8] {
        let mut h = SipHasher24::new_with_key(&self.secret);
        h.write(client);
        h.write(head);
        match ip {
            IpAddr::V4(a) => h.write(&a.octets()),
            IpAddr::V6(a) => h.write(&a.octets()),
        }
        h.finish().to_le_bytes()
    }

    /// The most UDP response bytes for a query of `query_len` octets; `None` when the
    /// transport's own limit is the only one.
    pub fn limit(&self, query_len: usize, valid_cookie: bool) -> Option<usize> {
        (self.amplification > 0 && !valid_cookie)
            .then(|| query_len.saturating_mul(usize::from(self.amplification)))
    }
}

/// Seconds since the epoch, as cookie timestamps count them.
pub fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: crate::files::FileError,
    },
    #[error("{}: a cookie secret is 32 hexadecimal digits (128 bits) on one line", path.display())]
    Format { path: PathBuf },
}

/// 128 bits from std's hasher keys, which the OS's random source seeds: SipHash (a PRF)
/// of two counters under a random 128-bit key, with nothing that can fail.
fn random_secret() -> [u8; 16] {
    use std::hash::BuildHasher;
    let keys = std::collections::hash_map::RandomState::new();
    let mut secret = [0u8; 16];
    secret[..8].copy_from_slice(&keys.hash_one(0u8).to_le_bytes());
    secret[8..].copy_from_slice(&keys.hash_one(1u8).to_le_bytes());
    secret
}

fn parse_hex(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
