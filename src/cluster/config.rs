//! The `[cluster]` section of `meridian.toml`: checked whole, every problem with its key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::steer::GeoPoint;
use crate::zone::Quorum;

pub const DEFAULT_PREFIX: &str = "/meridian";
/// Audit entries kept in etcd; every node keeps the whole history in its own journal.
pub const DEFAULT_AUDIT_KEEP: usize = 1000;
/// Seconds a node's published observations outlive it: its lease.
pub const DEFAULT_LEASE_TTL: u64 = 5;

/// `[cluster]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClusterFile {
    /// This node's name, unique in the cluster.
    pub node: Option<String>,
    /// etcd client URLs: `http://host:port` or `https://host:port`.
    pub endpoints: Option<Vec<String>>,
    pub prefix: Option<String>,
    /// PEM CA certificate that signed the etcd servers' certificates (https endpoints).
    pub ca: Option<PathBuf>,
    /// PEM client certificate and key, for etcd's client certificate authentication.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// `"majority"` (default), `"any"`, `"all"`, or a fraction such as 0.18.
    pub quorum: Option<QuorumFile>,
    /// Seconds; 2 to 60.
    pub lease_ttl: Option<u64>,
    /// Where this node is, `{ lat = .., lon = .. }`: steering takes latency from the node
    /// nearest to each client.
    pub location: Option<LocationFile>,
    /// How many audit entries etcd keeps (the newest); 10 to 1,000,000.
    pub audit_keep: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationFile {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum QuorumFile {
    Name(String),
    Fraction(f64),
}

/// A password kept out of `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The PEM files of etcd TLS, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTls {
    pub ca: Option<Vec<u8>>,
    /// Client certificate and key.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// `[cluster]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub node: String,
    pub endpoints: Vec<String>,
    /// Starts with `/`, no trailing `/`.
    pub prefix: String,
    pub tls: ClusterTls,
    pub user: Option<(String, Secret)>,
    pub quorum: Quorum,
    pub lease_ttl: Duration,
    pub location: Option<GeoPoint>,
    pub audit_keep: usize,
}

impl ClusterFile {
    /// The checked section, or every problem as (key, message). Relative file names are
    /// taken from `base`, the configuration file's directory.
    pub fn check(self, base: &Path) -> Result<ClusterConfig, Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        let node = match self.node {
            None => {
                problems.push((
                    "[cluster]",
                    "[cluster] needs node = \"<this node's unique name>\"".to_string(),
                ));
                String::new()
            }
            Some(n) => {
                if let Err(m) = check_node(&n) {
                    problems.push(("node", m));
                }
                n
            }
        };
        let endpoints = self.endpoints.unwrap_or_default();
        if endpoints.is_empty() {
            problems.push((
                "endpoints",
                "[cluster] needs endpoints = [\"http://<etcd host>:2379\", ...]".to_string(),
            ));
        }
        let mut https = false;
        for e in &endpoints {
            match check_endpoint(e) {
                Ok(tls) => https |= tls,
                Err(m) => problems.push(("endpoints", m)),
            }
        }
        let prefix = self.prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_string());
        if let Err(m) = check_prefix(&prefix) {
            problems.push(("prefix", m));
        }
        let mut read = |key: &'static str, path: &Path| -> Option<Vec<u8>> {
            let path = base.join(path);
            // A regular file only: a FIFO would hold the start (or `route`) forever.
            match crate::files::read_regular(&path, crate::files::SMALL_FILE) {
                Ok(b) if b.windows(11).any(|w| w == b"-----BEGIN ") => Some(b),
                Ok(_) => {
                    problems.push((key, format!("{key} {}: not a PEM file", path.display())));
                    None
                }
                Err(e) => {
                    problems.push((key, format!("{key} {}: {e}", path.display())));
                    None
                }
            }
        };
        let ca = self.ca.as_deref().and_then(|p| read("ca", p));
        let identity = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => read("cert", c).zip(read("key", k)),
            (None, None) => None,
            (Some(_), None) => {
                problems.push((
                    "cert",
                    "cert needs key (the client certificate's private key)".into(),
                ));
                None
            }
            (None, Some(_)) => {
                problems.push(("key", "key needs cert (the client certificate)".into()));
                None
            }
        };
        if (self.ca.is_some() || self.cert.is_some()) && !https {
            problems.push((
                "endpoints",
                "ca and cert apply to https endpoints: give https:// URLs".to_string(),
            ));
        }
        if https && self.ca.is_none() {
            problems.push((
                "ca",
                "https endpoints need ca = \"<PEM file of the CA that signed etcd's certificates>\""
                    .to_string(),
            ));
        }
        let user = match (self.user, self.password) {
            (Some(u), Some(p)) if !u.is_empty() => Some((u, Secret(p))),
            (None, None) => None,
            (Some(_), None) => {
                problems.push(("user", "user needs password".into()));
                None
            }
            (None, Some(_)) => {
                problems.push(("password", "password needs user".into()));
                None
            }
            (Some(_), Some(_)) => {
                problems.push(("user", "user is empty".into()));
                None
            }
        };
        let quorum = match self.quorum {
            None => Quorum::Majority,
            Some(QuorumFile::Name(n)) => match Quorum::named(&n) {
                Some(q) => q,
                None => {
                    problems.push((
                        "quorum",
                        format!("quorum {n:?}: give \"majority\", \"any\", \"all\" or a fraction such as 0.18"),
                    ));
                    Quorum::Majority
                }
            },
            Some(QuorumFile::Fraction(f)) if Quorum::fraction(f).is_some() => Quorum::Fraction(f),
            Some(QuorumFile::Fraction(f)) => {
                problems.push((
                    "quorum",
                    format!("quorum {f}: a fraction is above 0 and below 1 (up when more than that share of the nodes see it up)"),
                ));
                Quorum::Majority
            }
        };
        let ttl = self.lease_ttl.unwrap_or(DEFAULT_LEASE_TTL);
        if !(2..=60).contains(&ttl) {
            problems.push((
                "lease-ttl",
                format!("lease-ttl {ttl}: give 2 to 60 seconds"),
            ));
        }
        let location = self
            .location
            .and_then(|l| match check_location(l.lat, l.lon) {
                Ok(p) => Some(p),
                Err(m) => {
                    problems.push(("location", m));
                    None
                }
            });
        let audit_keep = self.audit_keep.unwrap_or(DEFAULT_AUDIT_KEEP as u64);
        if !(10..=1_000_000).contains(&audit_keep) {
            problems.push((
                "audit-keep",
                format!("audit-keep {audit_keep}: give 10 to 1000000 entries"),
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(ClusterConfig {
            node,
            endpoints,
            prefix,
            tls: ClusterTls { ca, identity },
            user,
            quorum,
            lease_ttl: Duration::from_secs(ttl),
            location,
            audit_keep: audit_keep as usize,
        })
    }
}

/// A node name becomes one etcd key segment: letters, digits, `-`, `_` and `.`, at most 63.
pub fn check_node(n: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "node {n:?}: give 1 to 63 letters, digits, '-', '_' or '.'"
        ))
    }
}

/// A node's place in degrees.
fn check_location(lat: f64, lon: f64) -> Result<GeoPoint, String> {
    if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) {
        Ok(GeoPoint { lat, lon })
    } else {
        Err(format!(
            "location {{ lat = {lat}, lon = {lon} }}: lat is -90 to 90 and lon -180 to 180 (degrees)"
        ))
    }
}

/// `LAT,LON` in degrees (`--cluster-location 51.5,-0.1`).
pub fn parse_location(s: &str) -> Result<GeoPoint, String> {
    let parsed = s
        .split_once(',')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
    match parsed {
        Some((lat, lon)) => check_location(lat, lon),
        None => Err(format!("{s:?}: give LAT,LON in degrees, such as 51.5,-0.1")),
    }
}

/// An etcd client URL; whether it is https.
fn check_endpoint(e: &str) -> Result<bool, String> {
    let (tls, rest) = if let Some(r) = e.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = e.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!(
            "endpoint {e:?}: give an etcd client URL, http://host:port or https://host:port"
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let port_ok = rest
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if port_ok && !rest.contains('/') {
        Ok(tls)
    } else {
        Err(format!(
            "endpoint {e:?}: give host and port (etcd's client port is usually 2379), no path"
        ))
    }
}

fn check_prefix(p: &str) -> Result<(), String> {
    let segments_ok = p
        .strip_prefix('/')
        .is_some_and(|r| !r.is_empty() && r.split('/').all(|s| !s.is_empty()));
    if segments_ok && p.is_ascii() && !p.contains(char::is_whitespace) {
        Ok(())
    } else {
        Err(format!(
            "prefix {p:?}: give a key path such as \"/meridian\": a leading '/', no trailing '/', no empty segment"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<ClusterConfig, Vec<(&'static str, String)>> {
        let file: ClusterFile = toml::from_str(text).expect("parses");
        file.check(Path::new("."))
    }

    /// A FIFO (or a directory) given as the CA, cert or key is refused with its path, not
    /// waited on (before: read with `std::fs::read`, the start hung on the FIFO).
    #[test]
    fn tls_files_that_are_not_regular_files_are_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        crate::files::mkfifo(&dir.path().join("ca.pem"));
        std::fs::create_dir(dir.path().join("cert.pem")).unwrap();
        std::fs::write(dir.path().join("key.pem"), "-----BEGIN PRIVATE KEY-----\n").unwrap();
        let base = dir.path().to_path_buf();
        let errs = crate::files::within(std::time::Duration::from_secs(5), move || {
            let file: ClusterFile = toml::from_str(
                "node = \"ns1\"\nendpoints = [\"https://127.0.0.1:2379\"]\n\
                 ca = \"ca.pem\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n",
            )
            .expect("parses");
            file.check(&base).expect_err("refused")
        });
        let text = format!("{errs:?}");
        assert!(
            text.contains("ca.pem: not a regular file but a FIFO"),
            "{text}"
        );
        assert!(
            text.contains("cert.pem: not a regular file but a directory"),
            "{text}"
        );
        assert!(!text.contains("key.pem"), "{text}");
    }

    #[test]
    fn a_minimal_section_takes_the_documented_defaults() {
        let c = check("node = \"ns1\"\nendpoints = [\"http://127.0.0.1:2379\"]\n").unwrap();
        assert_eq!(c.prefix, DEFAULT_PREFIX);
        assert_eq!(c.quorum, Quorum::Majority);
        assert_eq!(c.lease_ttl, Duration::from_secs(DEFAULT_LEASE_TTL));
        assert_eq!(
            c.tls,
            ClusterTls {
                ca: None,
                identity: None
            }
        );
        assert_eq!(c.user, None);
        assert_eq!(c.location, None);
        assert_eq!(c.audit_keep, DEFAULT_AUDIT_KEEP);
    }

    #[test]
    fn a_location_is_taken_in_degrees_and_checked() {
        let base = "node = \"a\"\nendpoints = [\"http://h:1\"]\n";
        let c = check(&format!(
            "{base}location = {{ lat = 53.35, lon = -6.26 }}\n"
        ))
        .unwrap();
        assert_eq!(
            c.location,
            Some(GeoPoint {
                lat: 53.35,
                lon: -6.26
            })
        );
        let errs = check(&format!("{base}location = {{ lat = 91, lon = 0 }}\n")).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, "location");
        assert!(errs[0].1.contains("lat is -90 to 90"), "{errs:?}");
        assert_eq!(
            parse_location("51.5, -0.1"),
            Ok(GeoPoint {
                lat: 51.5,
                lon: -0.1
            })
        );
        assert!(parse_location("51.5").is_err());
        assert!(
            parse_location("-91,0")
                .unwrap_err()
                .contains("lat is -90 to 90")
        );
        let errs = check(&format!("{base}audit-keep = 3\n")).unwrap_err();
        assert_eq!(errs[0].0, "audit-keep");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let errs = check(
            "node = \"ns 1\"\nendpoints = [\"127.0.0.1:2379\", \"https://e:2379\"]\nprefix = \"meridian/\"\nquorum = 1.5\nlease-ttl = 1\nuser = \"u\"\ncert = \"c.pem\"\nlocation = { lat = 0, lon = 200 }\n",
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|(k, _)| *k).collect();
        for want in [
            "node",
            "endpoints",
            "prefix",
            "quorum",
            "lease-ttl",
            "user",
            "cert",
            "ca",
            "location",
        ] {
            assert!(keys.contains(&want), "{want} missing from {errs:?}");
        }
        assert!(
            errs.iter()
                .any(|(_, m)| m.contains("endpoint \"127.0.0.1:2379\": give an etcd client URL")),
            "{errs:?}"
        );
    }

    #[test]
    fn quorum_names_and_fractions() {
        let base = "node = \"a\"\nendpoints = [\"http://h:1\"]\n";
        for (q, want) in [
            ("\"any\"", Quorum::Any),
            ("\"all\"", Quorum::All),
            ("0.18", Quorum::Fraction(0.18)),
        ] {
            assert_eq!(
                check(&format!("{base}quorum = {q}\n")).unwrap().quorum,
                want
            );
        }
        assert!(check(&format!("{base}quorum = \"most\"\n")).is_err());
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let c = check(
            "node = \"a\"\nendpoints = [\"http://h:1\"]\nuser = \"m\"\npassword = \"hunter2\"\n",
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
