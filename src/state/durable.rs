//! Writing files in the state directory so that a full disk or a crash leaves each one
//! either as it was or as intended, never half-written.
//!
//! The rule: nothing counts as written until it is fsynced, and a new name (a create, a
//! rename) until its directory is fsynced too. An append that fails is cut back off, so the
//! next one starts on a whole line; a new file is written aside under `.tmp` and only then
//! given its name.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What an append needs of a file: positioned writes, truncation and fsync. A trait so the
/// unit tests can hand [`append`] a file that fails part-way.
pub(super) trait Store {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    fn sync_data(&mut self) -> io::Result<()>;
}

impl Store for File {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
}

/// An append that failed: why, and whether the file is back at its old length (when not,
/// [`cut_back`] must succeed before anything else is appended).
#[derive(Debug)]
pub(super) struct AppendFailed {
    pub source: io::Error,
    pub restored: bool,
}

/// Writes `line` at `end` (the length of the file's whole lines) and fsyncs it. On failure
/// (ENOSPC part-way through, a failed fsync) the file is cut back to `end`: a partial line
/// left there would swallow the next append.
pub(super) fn append<S: Store>(file: &mut S, end: u64, line: &[u8]) -> Result<(), AppendFailed> {
    match file.write_all_at(line, end).and_then(|()| file.sync_data()) {
        Ok(()) => Ok(()),
        Err(source) => Err(AppendFailed {
            source,
            restored: cut_back(file, end).is_ok(),
        }),
    }
}

/// Truncates `file` to `len` and makes the truncation durable.
pub(super) fn cut_back<S: Store>(file: &mut S, len: u64) -> io::Result<()> {
    file.set_len(len)?;
    file.sync_data()
}

/// Fsyncs a directory, so the names created or renamed in it survive a crash.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The `.tmp` name a file is written under before it gets `path`.
pub(super) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Writes `contents` to `path`'s `.tmp` name (replacing any left by a crash), fsynced, with
/// `mode`; returns the file, open for reading and writing. On failure the `.tmp` is removed.
pub(super) fn write_tmp(path: &Path, contents: &[u8], mode: u32) -> io::Result<File> {
    let tmp = tmp_path(path);
    let written = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(contents)?;
            f.sync_all()?;
            Ok(f)
        });
    if written.is_err() {
        // Best effort: a `.tmp` is never read, and the next start removes any left.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Creates `path` with `contents` whole or not at all: written aside, fsynced, then linked
/// to its name (which fails with `AlreadyExists` if the name is taken, as `create_new`
/// does), and the directory fsynced.
pub fn create_new(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    write_tmp(path, contents, mode)?;
    let tmp = tmp_path(path);
    let linked = std::fs::hard_link(&tmp, path);
    // The `.tmp` name has done its work either way.
    let removed = std::fs::remove_file(&tmp);
    linked?;
    removed?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Replaces `path` with `contents` whole or not at all: written aside, fsynced, renamed over
/// the old file, and the directory fsynced.
pub fn replace(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    write_tmp(path, contents, mode)?;
    std::fs::rename(tmp_path(path), path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Bytes read per step when reading a file from its end.
const CHUNK: usize = 64 * 1024;

/// Calls `each` with every non-empty line of the first `end` bytes of `file`, last line
/// first, until it breaks. Reads only as far back as it is asked to.
pub(super) fn lines_backwards(
    file: &File,
    end: u64,
    mut each: impl FnMut(&[u8]) -> ControlFlow<()>,
) -> io::Result<()> {
    let mut pos = end;
    // The start of the earliest line seen so far, whose beginning is further back.
    let mut carry = Vec::new();
    while pos > 0 {
        let n = CHUNK.min(usize::try_from(pos).unwrap_or(CHUNK));
        pos -= n as u64;
        let mut buf = vec![0; n];
        file.read_exact_at(&mut buf, pos)?;
        buf.extend_from_slice(&carry);
        let mut stop = buf.len();
        for i in (0..buf.len()).rev() {
            if buf[i] == b'\n' {
                let line = &buf[i + 1..stop];
                if !line.is_empty() && each(line).is_break() {
                    return Ok(());
                }
                stop = i;
            }
        }
        buf.truncate(stop);
        carry = buf;
    }
    if !carry.is_empty() {
        let _ = each(&carry);
    }
    Ok(())
}
