//! Files an operator names (GeoIP databases, zone files, the config, token and TLS files):
//! only regular files are read, and none is waited on.
//!
//! The rule: a file is opened non-blocking and judged by fstat(2) of what was opened, not by
//! a look at the path beforehand, so a FIFO (whose open for reading blocks until a writer
//! comes), a directory or a device is refused with what it is, and nothing can be swapped
//! in between a check and the open. A symbolic link to a regular file is a regular file.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot open: {0}")]
    Open(std::io::Error),
    #[error("a symbolic link to {0}, which does not exist")]
    Dangling(PathBuf),
    #[error("not a regular file but {0}")]
    NotRegular(&'static str),
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    #[error("changed while being read (written in place?): try again once it is complete")]
    Changed,
    #[error("{size} octets, over the {max} such a file may have")]
    TooLarge { size: u64, max: u64 },
}

/// Most octets of a file that holds a few lines or a few certificates: the config, a token
/// file, TLS certificates, keys and CAs, the cookie secret.
pub const SMALL_FILE: u64 = 1 << 20;
/// Most octets of one zone file.
pub const ZONE_FILE: u64 = 256 << 20;
/// Most octets of a GeoIP database (a full city database is about 130 MB).
pub const GEOIP_FILE: u64 = 2 << 30;

/// What a file that is not a regular file is, in words.
fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Opens `path` for reading if it is (or links to) a regular file.
pub fn open_regular(path: &Path) -> Result<(File, Metadata), FileError> {
    let open = |flags| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)
    };
    let file = match open(libc::O_NONBLOCK) {
        Ok(f) => f,
        // A lease another process holds (an editor, a deploy tool): a non-blocking open
        // refuses at once, a blocking one waits until the holder lets go, as any reader
        // would. A FIFO never answers EWOULDBLOCK to a non-blocking open for reading.
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            open(0).map_err(|e| describe_open_error(path, e))?
        }
        Err(e) => return Err(describe_open_error(path, e)),
    };
    let meta = file.metadata().map_err(FileError::Open)?;
    if !meta.is_file() {
        return Err(FileError::NotRegular(kind(&meta)));
    }
    Ok((file, meta))
}

/// Why `path` did not open, in the operator's terms where the path says more than errno.
fn describe_open_error(path: &Path, e: std::io::Error) -> FileError {
    if let Ok(meta) = std::fs::metadata(path) {
        // A socket cannot be opened (ENXIO), which says little: say what it is.
        if !meta.is_file() {
            return FileError::NotRegular(kind(&meta));
        }
    } else if let Ok(target) = std::fs::read_link(path) {
        return FileError::Dangling(target);
    }
    FileError::Open(e)
}

/// The whole content of the regular file at `path`, of at most `max` octets: a larger one
/// (a sparse file of terabytes, say) is refused before anything is read. Refused too if the
/// file changed (size or modification time) while it was read, as a copy written in place
/// does: what was read may be half old and half new.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    let (file, before) = open_regular(path)?;
    if before.len() > max {
        return Err(FileError::TooLarge {
            size: before.len(),
            max,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(before.len()).unwrap_or(0));
    // Bounded even if the file grows meanwhile; a grown file is refused below as changed.
    (&file)
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(FileError::Read)?;
    let after = file.metadata().map_err(FileError::Read)?;
    let stamp = |m: &Metadata| (m.size(), m.mtime(), m.mtime_nsec());
    if stamp(&before) != stamp(&after) || bytes.len() as u64 != after.size() {
        return Err(FileError::Changed);
    }
    Ok(bytes)
}

/// [`read_regular`] as UTF-8 text.
pub fn read_regular_text(path: &Path, max: u64) -> Result<String, FileError> {
    String::from_utf8(read_regular(path, max)?)
        .map_err(|e| FileError::Read(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

impl FileError {
    /// Whether the file is simply not there (as opposed to there and unreadable).
    pub fn is_missing(&self) -> bool {
        matches!(self, FileError::Open(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Makes a FIFO at `path`: what the tests put where an operator's file belongs.
#[cfg(test)]
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path and a mode.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Runs `f` on a thread of its own and returns its result, or fails the test when it takes
/// longer than `limit`: a read that blocks on a FIFO would otherwise hang the test.
#[cfg(test)]
pub fn within<T: Send + 'static>(
    limit: std::time::Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(f()));
    rx.recv_timeout(limit)
        .expect("done at once, not waiting on the file")
}
