//! `meridian.toml` + command-line flags -> [`Config`] (immutable once built).
//!
//! A flag beats the file, the file beats the documented `DEFAULT_*` value.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cluster::config::{ClusterConfig, ClusterFile};
use crate::latency::config::{LatencyConfig, LatencyFile};

pub const DEFAULT_ZONES: &str = "zones";
pub const DEFAULT_DNS_LISTEN: &str = "127.0.0.1:5353";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8053";
pub const DEFAULT_STATE_DIR: &str = "state";
/// Every second response over the rate goes out truncated, as BIND's default slip.
pub const DEFAULT_RRL_SLIP: u32 = 2;
/// Read from the working directory when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_FILE: &str = "meridian.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub zones: PathBuf,
    pub dns_listen: Vec<SocketAddr>,
    /// UDP sockets (and threads) per listen address; default one per core.
    pub udp_threads: Option<usize>,
    /// UDP responses per second per (client network, response); `None`: no limit.
    pub rrl_rate: Option<u32>,
    /// Every how many limited responses one goes out truncated (0: none).
    pub rrl_slip: u32,
    /// UDP response bytes per query byte for clients without a valid DNS cookie (0: no limit).
    pub amplification_limit: u16,
    pub admin_listen: SocketAddr,
    /// PEM certificate chain and private key: the admin listener speaks HTTPS.
    pub admin_tls: Option<AdminTls>,
    /// Where overrides and the audit log persist.
    pub state_dir: PathBuf,
    /// `name:secret` lines of admin API tokens.
    pub admin_token_file: Option<PathBuf>,
    /// Host names the admin API answers to besides `localhost` and IP literals: lower case,
    /// no trailing dot.
    pub admin_hosts: Vec<String>,
    /// MaxMind DB files, at most one per address family; none uses the database compiled
    /// into the binary.
    pub geoip: Vec<PathBuf>,
    pub log_format: LogFormat,
    /// `[cluster]`: shared overrides and quorum health through etcd; `None`: this node
    /// runs alone, as without the section.
    pub cluster: Option<ClusterConfig>,
    /// `[latency]`: feeds of client RTTs and how they are aggregated.
    pub latency: LatencyConfig,
    /// `[spill]`: the spillover controller's period and steps.
    pub spill: crate::spill::SpillConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The keys of `meridian.toml`, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub zones: Option<PathBuf>,
    pub dns_listen: Option<Vec<SocketAddr>>,
    pub udp_threads: Option<usize>,
    pub rrl_rate: Option<u32>,
    pub rrl_slip: Option<u32>,
    pub amplification_limit: Option<u16>,
    pub admin_listen: Option<SocketAddr>,
    pub admin_tls_cert: Option<PathBuf>,
    pub admin_tls_key: Option<PathBuf>,
    pub geoip: Option<Paths>,
    pub log_format: Option<LogFormat>,
    pub state_dir: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
    pub admin_host: Option<Vec<String>>,
    pub cluster: Option<ClusterFile>,
    /// `cluster`, checked by [`FileConfig::read`].
    #[serde(skip)]
    pub checked_cluster: Option<ClusterConfig>,
    pub latency: Option<LatencyFile>,
    /// `latency`, checked by [`FileConfig::read`].
    #[serde(skip)]
    pub checked_latency: Option<LatencyConfig>,
    pub spill: Option<crate::spill::SpillConfig>,
}

/// One path or a list of them: `geoip = "city.mmdb"` or `geoip = ["v4.mmdb", "v6.mmdb"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Paths {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

impl From<Paths> for Vec<PathBuf> {
    fn from(p: Paths) -> Vec<PathBuf> {
        match p {
            Paths::One(p) => vec![p],
            Paths::Many(v) => v,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: crate::files::FileError,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{0}: dns-listen is empty: give at least one address")]
    NoListen(PathBuf),
    /// Every problem of a section (`[cluster]`, `[latency]`), one `file:line: message` a line.
    #[error("{}", problems.iter().map(|(line, m)| format!("{}:{line}: {m}", path.display())).collect::<Vec<_>>().join("\n"))]
    Problems {
        path: PathBuf,
        problems: Vec<(usize, String)>,
    },
    #[error(
        "--cluster-node and --cluster-location apply to a cluster: the configuration file has no [cluster] section"
    )]
    NodeWithoutCluster,
    #[error("admin TLS needs both a certificate (admin-tls-cert) and a key (admin-tls-key)")]
    HalfTls,
}

/// `name` as the admin API compares Host headers with it (lower case, no trailing dot), or
/// why it is not a host name. A port or scheme is refused: Host is matched on the name alone.
pub fn check_admin_host(name: &str) -> Result<String, String> {
    let host = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.len() <= 253 && host.split('.').all(label_ok) {
        Ok(host)
    } else {
        Err(format!(
            "admin-host {name:?}: give a host name (letters, digits, '-' and '.'), without a port or scheme"
        ))
    }
}

/// An amplification limit of 1 could not even let a truncated answer with a server cookie
/// through; 0 turns the limit off.
pub fn check_amplification(limit: u16) -> Result<u16, String> {
    match limit {
        0 | crate::dns::cookie::MIN_AMPLIFICATION..=1000 => Ok(limit),
        _ => Err(format!(
            "amplification-limit {limit}: give 0 (no limit) or {} to 1000",
            crate::dns::cookie::MIN_AMPLIFICATION
        )),
    }
}

impl FileConfig {
    /// Reads `path`; with `explicit` false a missing file is an empty config.
    pub fn read(path: &Path, explicit: bool) -> Result<FileConfig, ConfigError> {
        let text = match crate::files::read_regular_text(path, crate::files::SMALL_FILE) {
            Ok(t) => t,
            Err(e) if !explicit && e.is_missing() => {
                return Ok(FileConfig::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mut parsed: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            line: e
                .span()
                .map(|s| text[..s.start].matches('\n').count() + 1)
                .unwrap_or(1),
            message: e.message().trim_end().to_string(),
        })?;
        if let Some(Err(message)) = parsed.amplification_limit.map(check_amplification) {
            return Err(ConfigError::Parse {
                path: path.to_owned(),
                line: line_of(&text, "amplification-limit"),
                message,
            });
        }
        if let Some(n) = parsed.udp_threads.filter(|n| !(1..=256).contains(n)) {
            // As `--udp-threads` takes it: one thread per socket, and 256 is past any core count
            // that one process serves.
            return Err(ConfigError::Parse {
                path: path.to_owned(),
                line: line_of(&text, "udp-threads"),
                message: format!("udp-threads {n}: give 1 to 256"),
            });
        }
        if parsed.dns_listen.as_ref().is_some_and(Vec::is_empty) {
            return Err(ConfigError::NoListen(path.to_owned()));
        }
        if let Some(names) = &mut parsed.admin_host {
            for name in names.iter_mut() {
                *name = check_admin_host(name).map_err(|message| ConfigError::Parse {
                    path: path.to_owned(),
                    line: line_of(&text, "admin-host"),
                    message,
                })?;
            }
        }
        if let Some(cluster) = parsed.cluster.take() {
            let base = path.parent().unwrap_or(Path::new("."));
            let section = line_of(&text, "[cluster]");
            match cluster.check(base) {
                Ok(c) => parsed.checked_cluster = Some(c),
                Err(problems) => {
                    return Err(ConfigError::Problems {
                        path: path.to_owned(),
                        problems: problems
                            .into_iter()
                            .map(|(key, m)| (line_after(&text, section, key), m))
                            .collect(),
                    });
                }
            }
        }
        if let Some(spill) = &parsed.spill {
            let section = line_of(&text, "[spill]");
            spill.check().map_err(|problems| ConfigError::Problems {
                path: path.to_owned(),
                problems: problems
                    .into_iter()
                    .map(|(key, m)| (line_after(&text, section, key), m))
                    .collect(),
            })?;
        }
        if let Some(latency) = parsed.latency.take() {
            let base = path.parent().unwrap_or(Path::new("."));
            let section = line_of(&text, "[latency]");
            match latency.check(base) {
                Ok(c) => parsed.checked_latency = Some(c),
                Err(problems) => {
                    return Err(ConfigError::Problems {
                        path: path.to_owned(),
                        problems: problems
                            .into_iter()
                            .map(|(key, m)| (line_after(&text, section, key), m))
                            .collect(),
                    });
                }
            }
        }
        Ok(parsed)
    }
}

/// The line where `key` is set at or after line `from` (a section's), else `from`.
fn line_after(text: &str, from: usize, key: &str) -> usize {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        })
        .map_or(from, |(i, _)| i + 1)
}

/// The line where `key` is set, for an error about its value.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().starts_with(key))
        .map_or(1, |i| i + 1)
}

/// Flags as given on the command line (`None`: not given).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub zones: Option<PathBuf>,
    pub dns_listen: Vec<SocketAddr>,
    pub udp_threads: Option<usize>,
    pub rrl_rate: Option<u32>,
    pub rrl_slip: Option<u32>,
    pub amplification_limit: Option<u16>,
    pub admin_listen: Option<SocketAddr>,
    pub admin_tls_cert: Option<PathBuf>,
    pub admin_tls_key: Option<PathBuf>,
    pub geoip: Vec<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub state_dir: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
    /// Checked by [`check_admin_host`].
    pub admin_hosts: Vec<String>,
    /// This node's name in the `[cluster]` section's place (one file for every node);
    /// checked by [`crate::cluster::config::check_node`].
    pub cluster_node: Option<String>,
    /// This node's location in the `[cluster]` section's place; checked by
    /// [`crate::cluster::config::parse_location`].
    pub cluster_location: Option<crate::steer::GeoPoint>,
}

impl Config {
    pub fn merge(flags: Flags, file: FileConfig) -> Result<Config, ConfigError> {
        let parse = |s: &str| s.parse().expect("default addresses are valid");
        let admin_tls = match (
            flags.admin_tls_cert.or(file.admin_tls_cert),
            flags.admin_tls_key.or(file.admin_tls_key),
        ) {
            (Some(cert), Some(key)) => Some(AdminTls { cert, key }),
            (None, None) => None,
            _ => return Err(ConfigError::HalfTls),
        };
        Ok(Config {
            zones: flags
                .zones
                .or(file.zones)
                .unwrap_or_else(|| DEFAULT_ZONES.into()),
            dns_listen: if flags.dns_listen.is_empty() {
                file.dns_listen
                    .unwrap_or_else(|| vec![parse(DEFAULT_DNS_LISTEN)])
            } else {
                flags.dns_listen
            },
            udp_threads: flags.udp_threads.or(file.udp_threads),
            rrl_rate: flags.rrl_rate.or(file.rrl_rate).filter(|r| *r > 0),
            rrl_slip: flags.rrl_slip.or(file.rrl_slip).unwrap_or(DEFAULT_RRL_SLIP),
            amplification_limit: flags
                .amplification_limit
                .or(file.amplification_limit)
                .unwrap_or(crate::dns::cookie::DEFAULT_AMPLIFICATION),
            admin_tls,
            admin_listen: flags
                .admin_listen
                .or(file.admin_listen)
                .unwrap_or_else(|| parse(DEFAULT_ADMIN_LISTEN)),
            geoip: if flags.geoip.is_empty() {
                file.geoip.map(Vec::from).unwrap_or_default()
            } else {
                flags.geoip
            },
            log_format: flags
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Human),
            state_dir: flags
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            admin_token_file: flags.admin_token_file.or(file.admin_token_file),
            admin_hosts: if flags.admin_hosts.is_empty() {
                file.admin_host.unwrap_or_default()
            } else {
                flags.admin_hosts
            },
            cluster: match (
                flags.cluster_node,
                flags.cluster_location,
                file.checked_cluster,
            ) {
                (node, location, Some(cluster)) => Some(ClusterConfig {
                    node: node.unwrap_or(cluster.node),
                    location: location.or(cluster.location),
                    ..cluster
                }),
                (None, None, None) => None,
                (_, _, None) => return Err(ConfigError::NodeWithoutCluster),
            },
            latency: file.checked_latency.unwrap_or_default(),
            spill: file.spill.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let file: FileConfig = toml::from_str(
            "zones = \"/etc/meridian/zones\"\ndns-listen = [\"[::1]:53\", \"127.0.0.1:53\"]\nlog-format = \"json\"\n",
        )
        .unwrap();
        let flags = Flags {
            zones: Some("mine".into()),
            ..Flags::default()
        };
        let c = Config::merge(flags, file).unwrap();
        assert_eq!(c.zones, PathBuf::from("mine"));
        assert_eq!(c.dns_listen.len(), 2);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.admin_listen.to_string(), DEFAULT_ADMIN_LISTEN);
        assert!(c.geoip.is_empty());
    }

    #[test]
    fn defaults_apply_without_file_or_flags() {
        let c = Config::merge(Flags::default(), FileConfig::default()).unwrap();
        assert_eq!(c.zones, PathBuf::from(DEFAULT_ZONES));
        assert_eq!(c.dns_listen[0].to_string(), DEFAULT_DNS_LISTEN);
        assert_eq!(c.amplification_limit, 8);
        assert_eq!(c.admin_tls, None);
    }

    #[test]
    fn admin_tls_needs_a_certificate_and_a_key() {
        let file: FileConfig = toml::from_str("admin-tls-cert = \"c.pem\"\n").unwrap();
        let err = Config::merge(Flags::default(), file).unwrap_err();
        assert!(matches!(err, ConfigError::HalfTls), "{err}");
        let flags = Flags {
            admin_tls_key: Some("k.pem".into()),
            ..Flags::default()
        };
        let file: FileConfig = toml::from_str("admin-tls-cert = \"c.pem\"\n").unwrap();
        let c = Config::merge(flags, file).unwrap();
        assert_eq!(
            c.admin_tls,
            Some(AdminTls {
                cert: "c.pem".into(),
                key: "k.pem".into()
            })
        );
    }

    #[test]
    fn an_amplification_limit_of_one_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meridian.toml");
        std::fs::write(&path, "zones = \"z\"\namplification-limit = 1\n").unwrap();
        let err = FileConfig::read(&path, true).unwrap_err().to_string();
        assert!(
            err.contains("meridian.toml:2: amplification-limit 1"),
            "{err}"
        );
        for ok in [0, 2, 1000] {
            assert_eq!(check_amplification(ok), Ok(ok));
        }
        assert!(check_amplification(1001).is_err());
    }

    #[test]
    fn udp_threads_out_of_range_are_refused_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meridian.toml");
        for (n, ok) in [(0, false), (1, true), (256, true), (257, false)] {
            std::fs::write(&path, format!("zones = \"z\"\nudp-threads = {n}\n")).unwrap();
            match FileConfig::read(&path, true) {
                Ok(c) => assert!(ok && c.udp_threads == Some(n), "{n}"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(!ok, "{n}: {e}");
                    assert!(
                        e.contains(&format!("meridian.toml:2: udp-threads {n}: give 1 to 256")),
                        "{e}"
                    );
                }
            }
        }
    }

    #[test]
    fn admin_host_names_come_from_flags_or_the_file_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meridian.toml");
        std::fs::write(
            &path,
            "admin-host = [\"Admin.Example.NET.\", \"m-1.internal\"]\n",
        )
        .unwrap();
        let file = FileConfig::read(&path, true).unwrap();
        let c = Config::merge(Flags::default(), file).unwrap();
        assert_eq!(c.admin_hosts, ["admin.example.net", "m-1.internal"]);
        let flags = Flags {
            admin_hosts: vec!["ops.example.net".into()],
            ..Flags::default()
        };
        let c = Config::merge(flags, FileConfig::read(&path, true).unwrap()).unwrap();
        assert_eq!(c.admin_hosts, ["ops.example.net"]);
        for bad in [
            "admin.example.net:8053",
            "http://admin",
            "",
            "a..b",
            "-a.example",
        ] {
            assert!(check_admin_host(bad).is_err(), "{bad:?}");
        }
        std::fs::write(&path, "zones = \"z\"\nadmin-host = [\"a b\"]\n").unwrap();
        let err = FileConfig::read(&path, true).unwrap_err().to_string();
        assert!(err.contains("meridian.toml:2: admin-host \"a b\""), "{err}");
    }

    #[test]
    fn latency_section_is_checked_and_its_token_file_taken_from_the_files_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meridian.toml");
        std::fs::write(
            &path,
            "zones = \"z\"\n\n[latency]\nmin-samples = 0\noutlier-factor = 1\nrate = 5\n",
        )
        .unwrap();
        let err = FileConfig::read(&path, true).unwrap_err().to_string();
        assert!(
            err.contains("meridian.toml:4: min-samples must be at least 1, not 0"),
            "{err}"
        );
        assert!(
            err.contains("meridian.toml:5: outlier-factor must be at least 1.01, not 1"),
            "{err}"
        );
        std::fs::write(
            &path,
            "[latency]\ntoken-file = \"feeds\"\nhalf-life-secs = 600\n",
        )
        .unwrap();
        let c = Config::merge(Flags::default(), FileConfig::read(&path, true).unwrap()).unwrap();
        assert_eq!(c.latency.token_file, Some(dir.path().join("feeds")));
        assert_eq!(c.latency.settings.half_life_secs, 600.0);
        assert_eq!(
            c.latency.settings.min_samples,
            crate::latency::DEFAULT_MIN_SAMPLES
        );
        let c = Config::merge(Flags::default(), FileConfig::default()).unwrap();
        assert_eq!(c.latency, crate::latency::config::LatencyConfig::default());
        // The example of docs/latency-map.md is a valid section.
        let doc = include_str!("../docs/latency-map.md");
        let example = doc
            .split("```toml config\n")
            .nth(1)
            .and_then(|t| t.split("```").next())
            .unwrap();
        std::fs::write(&path, example).unwrap();
        let c = Config::merge(Flags::default(), FileConfig::read(&path, true).unwrap()).unwrap();
        assert_eq!(c.latency.publish_secs, 30);
    }

    #[test]
    fn cluster_problems_are_reported_with_their_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meridian.toml");
        std::fs::write(
            &path,
            "zones = \"z\"\n\n[cluster]\nnode = \"ns1\"\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/\"\nlease-ttl = 99\n",
        )
        .unwrap();
        let err = FileConfig::read(&path, true).unwrap_err().to_string();
        assert!(err.contains("meridian.toml:6: prefix \"/\""), "{err}");
        assert!(err.contains("meridian.toml:7: lease-ttl 99"), "{err}");
        std::fs::write(&path, "zones = \"z\"\n").unwrap();
        let c = Config::merge(Flags::default(), FileConfig::read(&path, true).unwrap()).unwrap();
        assert_eq!(c.cluster, None);
        let node = || Flags {
            cluster_node: Some("ns2".into()),
            ..Flags::default()
        };
        let err = Config::merge(node(), FileConfig::read(&path, true).unwrap()).unwrap_err();
        assert!(matches!(err, ConfigError::NodeWithoutCluster), "{err}");
        std::fs::write(
            &path,
            "[cluster]\nnode = \"ns1\"\nendpoints = [\"http://127.0.0.1:2379\"]\n",
        )
        .unwrap();
        let c = Config::merge(node(), FileConfig::read(&path, true).unwrap()).unwrap();
        assert_eq!(c.cluster.map(|c| c.node), Some("ns2".to_string()));
        // One file for every node: the flag gives each its place.
        std::fs::write(
            &path,
            "[cluster]\nnode = \"ns1\"\nendpoints = [\"http://127.0.0.1:2379\"]\nlocation = { lat = 1, lon = 2 }\n",
        )
        .unwrap();
        let here = crate::steer::GeoPoint {
            lat: 51.5,
            lon: -0.1,
        };
        let flags = Flags {
            cluster_location: Some(here),
            ..node()
        };
        let c = Config::merge(flags, FileConfig::read(&path, true).unwrap()).unwrap();
        assert_eq!(c.cluster.and_then(|c| c.location), Some(here));
        // A location off the globe is reported on its line.
        std::fs::write(
            &path,
            "[cluster]\nnode = \"ns1\"\nendpoints = [\"http://127.0.0.1:2379\"]\nlocation = { lat = 95, lon = 2 }\n",
        )
        .unwrap();
        let err = FileConfig::read(&path, true).unwrap_err().to_string();
        assert!(
            err.contains("meridian.toml:4: location { lat = 95, lon = 2 }"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_reported_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meridian.toml");
        std::fs::write(&path, "zones = \"z\"\n\ndns-listn = []\n").unwrap();
        let err = FileConfig::read(&path, true).unwrap_err().to_string();
        assert!(
            err.contains("meridian.toml:3: unknown field `dns-listn`"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_default_file_is_empty_but_a_missing_explicit_file_is_an_error() {
        let missing = Path::new("/nonexistent/meridian.toml");
        assert!(FileConfig::read(missing, false).is_ok());
        assert!(FileConfig::read(missing, true).is_err());
    }
}
