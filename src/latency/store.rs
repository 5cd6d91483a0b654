//! The latency map on disk: `state/latency.bin`, replaced whole (written aside, fsynced,
//! renamed) every save interval, read once at start. Samples taken since the last save are
//! lost by a crash; the estimates they fed are hours long, so a minute of them matters little.
//!
//! Layout, little-endian: the magic `MERIDIAN-LATENCY-1\n`; the region count (u32) and each
//! name (u16 length, UTF-8); then two tables, networks and groups: a row count (u64), and per
//! row a key (u64), the time its weights were decayed to (u32, Unix seconds) and one
//! (weight, mean log-RTT) pair of f32 per region.

use std::path::{Path, PathBuf};

use super::{Cell, Group, LatencyMap, Net, Rows, Settings};

pub const FILE: &str = "latency.bin";
/// The other nodes' maps, merged, as last known: what a node starts from while the
/// cluster store is away.
pub const PEERS_FILE: &str = "latency-peers.bin";
const MAGIC: &[u8] = b"MERIDIAN-LATENCY-1\n";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a latency map: {reason}")]
    Damaged { path: PathBuf, reason: String },
}

/// Bytes before the two tables: the magic, the region count and names.
pub(super) fn encoded_header(regions: &[String]) -> usize {
    MAGIC.len() + 4 + regions.iter().map(|r| 2 + r.len()).sum::<usize>()
}

/// The bytes of `map`.
pub fn encode(map: &LatencyMap) -> Vec<u8> {
    let stride = map.regions.len();
    let mut out =
        Vec::with_capacity(64 + (map.nets.keys.len() + map.groups.keys.len()) * (12 + 8 * stride));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(stride as u32).to_le_bytes());
    for r in &map.regions {
        out.extend_from_slice(&(r.len() as u16).to_le_bytes());
        out.extend_from_slice(r.as_bytes());
    }
    rows(&mut out, &map.nets, stride, |n| n.bits());
    rows(&mut out, &map.groups, stride, group_bits);
    out
}

fn rows<K: Copy>(out: &mut Vec<u8>, rows: &Rows<K>, stride: usize, bits: impl Fn(K) -> u64) {
    out.extend_from_slice(&(rows.keys.len() as u64).to_le_bytes());
    for (i, &k) in rows.keys.iter().enumerate() {
        out.extend_from_slice(&bits(k).to_le_bytes());
        out.extend_from_slice(&rows.times[i].to_le_bytes());
        for c in &rows.cells[i * stride..(i + 1) * stride] {
            out.extend_from_slice(&c.weight.to_le_bytes());
            out.extend_from_slice(&c.mean.to_le_bytes());
        }
    }
}

/// Groups as keys: the top byte tells ASN (0) from country (1).
fn group_bits(g: Group) -> u64 {
    match g {
        Group::Asn(n) => u64::from(n),
        Group::Country([a, b]) => 1 << 56 | u64::from(a) << 8 | u64::from(b),
    }
}

fn group_of(bits: u64) -> Option<Group> {
    match bits >> 56 {
        0 => u32::try_from(bits).ok().map(Group::Asn),
        1 => Some(Group::Country([(bits >> 8) as u8, bits as u8])),
        _ => None,
    }
}

/// The map in `bytes`, aggregated with `settings`.
pub fn decode(bytes: &[u8], settings: Settings) -> Result<LatencyMap, String> {
    let mut r = Reader(bytes);
    if r.take(MAGIC.len())? != MAGIC {
        return Err("wrong magic".into());
    }
    let stride = r.u32()? as usize;
    let mut regions = Vec::with_capacity(stride.min(1024));
    for _ in 0..stride {
        let len = usize::from(u16::from_le_bytes(r.array()?));
        let name = std::str::from_utf8(r.take(len)?).map_err(|e| format!("region name: {e}"))?;
        regions.push(name.to_string());
    }
    let nets = read_rows(&mut r, stride, |b| Some(Net::from_bits(b)))?;
    let groups = read_rows(&mut r, stride, group_of)?;
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the end", r.0.len()));
    }
    Ok(LatencyMap {
        settings,
        regions,
        nets,
        groups,
    })
}

fn read_rows<K: Copy + Eq + std::hash::Hash>(
    r: &mut Reader<'_>,
    stride: usize,
    key: impl Fn(u64) -> Option<K>,
) -> Result<Rows<K>, String> {
    let n = r.u64()?;
    // Each row takes at least 12 bytes: a count beyond what is left is damage.
    if n > (r.0.len() / 12) as u64 {
        return Err(format!("{n} rows in {} bytes", r.0.len()));
    }
    let mut rows = Rows::default();
    for _ in 0..n {
        let bits = r.u64()?;
        let k = key(bits).ok_or_else(|| format!("bad key {bits:#x}"))?;
        let t = r.u32()?;
        let i = rows.row(k, stride, t);
        if i + 1 != rows.keys.len() {
            return Err(format!("key {bits:#x} twice"));
        }
        for c in &mut rows.cells[i * stride..(i + 1) * stride] {
            let weight = f32::from_le_bytes(r.array()?);
            let mean = f32::from_le_bytes(r.array()?);
            if !(weight.is_finite() && weight >= 0.0 && mean.is_finite()) {
                return Err(format!("bad estimate ({weight}, {mean}) for key {bits:#x}"));
            }
            *c = Cell { weight, mean };
        }
    }
    Ok(rows)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("cut short".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

/// Writes an encoded map to `dir`/[`FILE`], whole or not at all.
pub fn write(dir: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_file(&dir.join(FILE), bytes)
}

/// Writes an encoded map to `path`, whole or not at all.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    crate::state::replace(path, bytes, 0o600).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The map saved in `dir`, or an empty one when none was saved.
pub fn load(dir: &Path, settings: Settings) -> Result<LatencyMap, StoreError> {
    Ok(load_file(&dir.join(FILE), settings)?.unwrap_or_else(|| LatencyMap::new(settings)))
}

/// The map saved in `path`, or `None` when none was saved.
pub fn load_file(path: &Path, settings: Settings) -> Result<Option<LatencyMap>, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    decode(&bytes, settings)
        .map(Some)
        .map_err(|reason| StoreError::Damaged {
            path: path.to_path_buf(),
            reason,
        })
}
