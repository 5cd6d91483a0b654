//! The journal file `audit.jsonl`: appended and fsynced per write, replayed once at start,
//! compacted when it grows, with its history moved to archive segments the audit reads.
//!
//! The rule: the file only ever holds whole lines, and every change of it is crash-safe. An
//! append that fails is cut back off and changes nothing in memory. Compaction writes the
//! new file aside and renames it over the old one only after the entries it drops are
//! durable in `audit-archive/`, so a crash at any point leaves the old journal or the new
//! one, and every entry readable exactly once.
//!
//! Layout of `audit.jsonl` after a compaction: a first line `{"snapshot":{"seq":S,
//! "overrides":[...]}}` holding the overrides in force after entry `S` (as the entries that
//! set them), then the last entries up to `S` (kept for the audit, not replayed), then the
//! entries written since (replayed). A journal without a snapshot line replays from an
//! empty state, as before compaction existed. Archive segments are
//! `audit-archive/<first seq>-<last seq>.jsonl`, entry lines exactly as journaled.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::durable::{self, lines_backwards};
use super::{Entry, Overrides, StateError};

pub const JOURNAL_FILE: &str = "audit.jsonl";
/// The directory of archive segments, beside the journal.
pub const ARCHIVE_DIR: &str = "audit-archive";
/// How a snapshot line starts: written by [`Journal::compact`] alone, so always exactly so.
const SNAPSHOT_PREFIX: &[u8] = b"{\"snapshot\":";

/// When the journal is compacted and how much it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entry lines in `audit.jsonl` that trigger a compaction.
    pub compact_at: usize,
    /// Entry lines a compaction keeps in `audit.jsonl` (the audit's recent tail).
    pub keep: usize,
    /// Most entries in one archive segment: bounds what a deep audit page reads.
    pub segment: usize,
}

impl Default for Limits {
    /// Startup replays at most 10,000 lines (a few MB); a full audit page (1,000) is read
    /// from `audit.jsonl` alone.
    fn default() -> Self {
        Limits {
            compact_at: 10_000,
            keep: 1_000,
            segment: 10_000,
        }
    }
}

/// The first line of a compacted journal.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotLine {
    snapshot: Snapshot,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Snapshot {
    /// The last entry the overrides include.
    seq: u64,
    /// The entries that set the overrides in force, oldest first.
    overrides: Vec<Entry>,
}

/// Only the sequence number of an entry line, for the paths that copy lines as they are.
#[derive(Deserialize)]
struct Seq {
    seq: u64,
}

/// Where a compaction stops when a test simulates a crash there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// The first archive segment is written and fsynced under its `.tmp` name.
    SegmentWritten,
    /// Every segment has its name; the archive directory is not fsynced yet.
    SegmentsRenamed,
    /// The new journal is written and fsynced under its `.tmp` name.
    JournalWritten,
    /// The new journal has its name; the directory is not fsynced yet.
    JournalRenamed,
}

/// The journal, open for appending.
pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    /// Opened for positioned writes (never `O_APPEND`), so an append goes exactly at `len`.
    /// (Visible to the unit tests, which swap in a handle that cannot write.)
    pub(super) file: File,
    /// The length of the file's whole lines: where the next append goes.
    len: u64,
    /// The last append failed and the file could not be cut back to `len`: cut it first.
    dirty: bool,
    next_seq: u64,
    /// Entry lines in the file (the snapshot line not counted).
    lines: usize,
    /// The oldest entry in the file: older ones are in the archive.
    first_seq: Option<u64>,
    /// What the entries add up to, kept current by [`Journal::append`].
    overrides: Overrides,
    limits: Limits,
    /// After a failed compaction, the line count at which to try again.
    retry_at: usize,
}

/// What reading the journal found.
struct Replay {
    overrides: Overrides,
    good_len: u64,
    lines: usize,
    first_seq: Option<u64>,
    last_seq: u64,
    /// A last line with no newline: (its line number, its length).
    torn: Option<(usize, usize)>,
}

impl Journal {
    /// Opens (or creates) `dir/audit.jsonl` with the default [`Limits`].
    pub fn open(dir: &Path) -> Result<Journal, StateError> {
        Journal::open_with(dir, Limits::default())
    }

    /// Opens (or creates) `dir/audit.jsonl`: drops a torn last line (with a warning), refuses
    /// any other damage, removes what a crashed compaction left, and compacts the journal if
    /// it is past `limits.compact_at`.
    pub fn open_with(dir: &Path, limits: Limits) -> Result<Journal, StateError> {
        let path = dir.join(JOURNAL_FILE);
        let io_err = |p: &Path| {
            let p = p.to_owned();
            move |source| StateError::Io { path: p, source }
        };
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            // The directory's own name must survive a crash, or the journal goes with it.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                durable::sync_dir(parent).map_err(io_err(parent))?;
            }
        }
        remove_leftovers(dir)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        // A FIFO opened for reading and writing opens at once, and the replay would then wait
        // on it forever: only a regular file is a journal.
        let meta = file.metadata().map_err(io_err(&path))?;
        if !meta.is_file() {
            return Err(StateError::Io {
                path,
                source: io::Error::other("not a regular file"),
            });
        }
        // The file's name must survive a crash too, if it was just created.
        durable::sync_dir(dir).map_err(io_err(dir))?;
        let replay = replay(&path, &mut file)?;
        if let Some((line, bytes)) = replay.torn {
            // An append cut by a crash: it was never acknowledged, so dropping it loses
            // nothing anyone was told was kept.
            warn!(at = %format!("{}:{line}", path.display()), bytes,
                "dropping a torn last journal line (a write cut by a crash, never acknowledged)");
            durable::cut_back(&mut file, replay.good_len).map_err(io_err(&path))?;
        }
        let mut journal = Journal {
            dir: dir.to_owned(),
            path,
            file,
            len: replay.good_len,
            dirty: false,
            next_seq: replay.last_seq + 1,
            lines: replay.lines,
            first_seq: replay.first_seq,
            overrides: replay.overrides,
            limits,
            retry_at: 0,
        };
        if journal.lines > limits.compact_at {
            journal.compact_or_retry_later();
        }
        Ok(journal)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sequence number of the last entry written (0: none yet). Sequence numbers have no
    /// gaps, so this is also how many writes the journal has recorded.
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// The overrides every entry so far adds up to.
    pub fn overrides(&self) -> &Overrides {
        &self.overrides
    }

    /// Appends `entry` (its `seq` is assigned here) and returns once it is on disk. On error
    /// the file and the overrides are as they were.
    pub fn append(&mut self, mut entry: Entry) -> Result<Entry, StateError> {
        let append_err = |path: &Path| {
            let path = path.to_owned();
            move |source| StateError::Append { path, source }
        };
        if self.dirty {
            durable::cut_back(&mut self.file, self.len).map_err(append_err(&self.path))?;
            self.dirty = false;
        }
        entry.seq = self.next_seq;
        let mut line = serde_json::to_vec(&entry).expect("entries serialize");
        line.push(b'\n');
        if let Err(failed) = durable::append(&mut self.file, self.len, &line) {
            self.dirty = !failed.restored;
            return Err(append_err(&self.path)(failed.source));
        }
        self.len += line.len() as u64;
        self.next_seq += 1;
        self.lines += 1;
        self.first_seq.get_or_insert(entry.seq);
        self.overrides.apply(&entry);
        if self.lines > self.limits.compact_at && self.lines >= self.retry_at {
            self.compact_or_retry_later();
        }
        Ok(entry)
    }

    /// Compacts; on failure logs it and tries again `limits.keep` entries later. The journal
    /// is whole either way: a failed compaction costs only a longer journal.
    fn compact_or_retry_later(&mut self) {
        if let Err(e) = self.compact() {
            warn!(error = %e, "journal compaction failed; the journal stays as it was");
            self.retry_at = self.lines + self.limits.keep;
        }
    }

    /// Rewrites the journal as a snapshot of the overrides plus its last `limits.keep`
    /// entries, after moving the older entries to archive segments.
    pub fn compact(&mut self) -> Result<(), StateError> {
        self.compact_until(None)
    }

    /// [`Journal::compact`], stopping early at `crash` as a crash there would: the journal
    /// is then stale and only good for dropping (tests reopen the directory).
    pub(super) fn compact_until(&mut self, crash: Option<Step>) -> Result<(), StateError> {
        let archive = self.dir.join(ARCHIVE_DIR);
        let io_err = |p: &Path| {
            let p = p.to_owned();
            move |source| StateError::Io { path: p, source }
        };
        if !archive.is_dir() {
            std::fs::create_dir(&archive).map_err(io_err(&archive))?;
            durable::sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        }
        let archived = segments(&archive)?.last().map_or(0, |s| s.last);
        // The entry lines before the kept tail go to the archive (those a crashed
        // compaction already put there excepted); the tail stays.
        let moved = self.lines.saturating_sub(self.limits.keep);
        let mut tail = Vec::new();
        let mut tail_first = None;
        let mut writer = SegmentWriter::new(&archive, self.limits.segment, crash);
        let mut index = 0;
        self.for_each_line(|line| {
            if line.starts_with(SNAPSHOT_PREFIX) {
                return Ok(());
            }
            let seq = serde_json::from_slice::<Seq>(line)
                .map_err(|e| self.damaged(e.to_string()))?
                .seq;
            if index < moved {
                if seq > archived {
                    writer.push(seq, line)?;
                }
            } else {
                tail_first.get_or_insert(seq);
                tail.extend_from_slice(line);
                tail.push(b'\n');
            }
            index += 1;
            Ok(())
        })?;
        if writer.finish()? {
            return Ok(());
        }
        durable::sync_dir(&archive).map_err(io_err(&archive))?;

        let snapshot = SnapshotLine {
            snapshot: Snapshot {
                seq: self.last_seq(),
                overrides: self.overrides.entries(),
            },
        };
        let mut text = serde_json::to_vec(&snapshot).expect("snapshots serialize");
        text.push(b'\n');
        text.extend_from_slice(&tail);
        let file = durable::write_tmp(&self.path, &text, 0o644).map_err(io_err(&self.path))?;
        if crash == Some(Step::JournalWritten) {
            return Ok(());
        }
        let tmp = durable::tmp_path(&self.path);
        std::fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        // The name is the new file's now, whether or not the directory's fsync below
        // succeeds: from here on, append to it.
        let kept = self.lines - moved;
        self.file = file;
        self.len = text.len() as u64;
        self.lines = kept;
        self.first_seq = tail_first;
        self.retry_at = 0;
        if crash == Some(Step::JournalRenamed) {
            return Ok(());
        }
        durable::sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        info!(journal = %self.path.display(), archived = moved, kept, "journal compacted");
        Ok(())
    }

    /// Up to `limit` entries with sequence numbers below `before` (all, if none), the
    /// newest such, oldest first: one page of the audit log, read from the ends of the
    /// journal and the archive segments as far back as the page needs and no further.
    pub fn audit_page(&self, before: Option<u64>, limit: usize) -> Result<Vec<Entry>, StateError> {
        let mut page = Vec::new();
        let mut before = before.unwrap_or(u64::MAX);
        if limit == 0 {
            return Ok(page);
        }
        if self.first_seq.is_some_and(|first| first < before) {
            read_back(&self.file, &self.path, self.len, before, limit, &mut page)?;
        }
        // The archive holds what is older than the journal's first entry; a crashed
        // compaction may have archived some of the journal's entries too.
        before = before.min(self.first_seq.unwrap_or(self.next_seq));
        let archive = self.dir.join(ARCHIVE_DIR);
        for segment in segments(&archive)?.iter().rev() {
            if page.len() >= limit {
                break;
            }
            if segment.first >= before {
                continue;
            }
            // Not File::open: a FIFO put in the archive would block it, and the admin thread.
            let (file, _) =
                crate::files::open_regular(&segment.path).map_err(|e| StateError::Io {
                    path: segment.path.clone(),
                    source: io::Error::other(e.to_string()),
                })?;
            let len = file
                .metadata()
                .map_err(|source| StateError::Io {
                    path: segment.path.clone(),
                    source,
                })?
                .len();
            read_back(&file, &segment.path, len, before, limit, &mut page)?;
            before = segment.first;
        }
        page.reverse();
        Ok(page)
    }

    /// Calls `each` with every whole line of the journal, first to last.
    fn for_each_line(
        &self,
        mut each: impl FnMut(&[u8]) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let io_err = |source| StateError::Io {
            path: self.path.clone(),
            source,
        };
        let mut reader = BufReader::new((&self.file).take(self.len));
        // The reader shares the file's cursor; appends write at `len`, not at the cursor.
        (&self.file).seek(SeekFrom::Start(0)).map_err(io_err)?;
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(io_err)? == 0 {
                return Ok(());
            }
            each(line.strip_suffix(b"\n").unwrap_or(&line))?;
        }
    }

    fn damaged(&self, message: String) -> StateError {
        StateError::Unreadable {
            path: self.path.clone(),
            message,
        }
    }
}

/// Reads the journal once, start to end, keeping only what it adds up to.
fn replay(path: &Path, file: &mut File) -> Result<Replay, StateError> {
    let io_err = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    let corrupt = |line, message: String| StateError::Corrupt {
        path: path.to_owned(),
        line,
        message,
    };
    let mut r = Replay {
        overrides: Overrides::default(),
        good_len: 0,
        lines: 0,
        first_seq: None,
        last_seq: 0,
        torn: None,
    };
    // Entries up to the snapshot's are in the snapshot already: kept for the audit only.
    let mut snapshot_seq = 0;
    let mut prev_seq = 0;
    let mut reader = BufReader::new(&*file);
    let mut line = Vec::new();
    for line_no in 1.. {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io_err)?;
        if n == 0 {
            break;
        }
        let Some(text) = line.strip_suffix(b"\n") else {
            // No newline: an append that never finished.
            r.torn = Some((line_no, n));
            break;
        };
        if line_no == 1 && text.starts_with(SNAPSHOT_PREFIX) {
            let s: SnapshotLine =
                serde_json::from_slice(text).map_err(|e| corrupt(line_no, e.to_string()))?;
            for e in &s.snapshot.overrides {
                r.overrides.apply(e);
            }
            snapshot_seq = s.snapshot.seq;
            r.last_seq = s.snapshot.seq;
        } else {
            // A complete line (its newline written after it) that does not parse was not
            // cut by a crash: something else damaged it, and guessing could resurrect or
            // lose an override.
            let e: Entry =
                serde_json::from_slice(text).map_err(|e| corrupt(line_no, e.to_string()))?;
            if e.seq <= prev_seq {
                return Err(corrupt(
                    line_no,
                    format!("sequence number {} after {prev_seq}", e.seq),
                ));
            }
            prev_seq = e.seq;
            if e.seq > snapshot_seq {
                r.overrides.apply(&e);
            }
            r.first_seq.get_or_insert(e.seq);
            r.last_seq = r.last_seq.max(e.seq);
            r.lines += 1;
        }
        r.good_len += n as u64;
    }
    Ok(r)
}

/// Removes the `.tmp` files a crashed compaction left (the journal's and the archive's,
/// nobody else's): never read, they only take room.
fn remove_leftovers(dir: &Path) -> Result<(), StateError> {
    let journal_tmp = durable::tmp_path(&dir.join(JOURNAL_FILE));
    let archive = std::fs::read_dir(dir.join(ARCHIVE_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|p| p.to_str().is_some_and(|p| p.ends_with(".jsonl.tmp")));
    for path in std::iter::once(journal_tmp).chain(archive) {
        if path.exists() {
            info!(file = %path.display(), "removing what a crashed compaction left");
            std::fs::remove_file(&path).map_err(|source| StateError::Io { path, source })?;
        }
    }
    Ok(())
}

/// One archive segment: entries `first..=last`.
struct Segment {
    first: u64,
    last: u64,
    path: PathBuf,
}

/// The archive's segments, oldest first; none if there is no archive.
fn segments(archive: &Path) -> Result<Vec<Segment>, StateError> {
    let listing = match std::fs::read_dir(archive) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StateError::Io {
                path: archive.to_owned(),
                source,
            });
        }
    };
    let mut out: Vec<Segment> = listing
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let name = path.file_name()?.to_str()?.strip_suffix(".jsonl")?;
            let (first, last) = name.split_once('-')?;
            Some(Segment {
                first: first.parse().ok()?,
                last: last.parse().ok()?,
                path,
            })
        })
        .collect();
    out.sort_by_key(|s| s.first);
    Ok(out)
}

/// Reads `file` back from `end`, adding entries with `seq < before` to `page` until it
/// holds `limit`.
fn read_back(
    file: &File,
    path: &Path,
    end: u64,
    before: u64,
    limit: usize,
    page: &mut Vec<Entry>,
) -> Result<(), StateError> {
    let mut damage = None;
    lines_backwards(file, end, |line| {
        if line.starts_with(SNAPSHOT_PREFIX) {
            return ControlFlow::Continue(());
        }
        // Lines after the page are only skipped: their sequence number is enough.
        let entry = serde_json::from_slice::<Seq>(line).and_then(|s| {
            (s.seq < before)
                .then(|| serde_json::from_slice::<Entry>(line))
                .transpose()
        });
        match entry {
            Ok(None) => ControlFlow::Continue(()),
            Ok(Some(e)) => {
                page.push(e);
                if page.len() >= limit {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            }
            Err(e) => {
                damage = Some(e.to_string());
                ControlFlow::Break(())
            }
        }
    })
    .map_err(|source| StateError::Io {
        path: path.to_owned(),
        source,
    })?;
    match damage {
        Some(message) => Err(StateError::Unreadable {
            path: path.to_owned(),
            message,
        }),
        None => Ok(()),
    }
}

/// Writes entry lines into archive segments of at most `max` entries, each fsynced under
/// its `.tmp` name and then renamed to `<first>-<last>.jsonl`.
struct SegmentWriter<'a> {
    archive: &'a Path,
    max: usize,
    open: Option<OpenSegment>,
    crash: Option<Step>,
    /// A simulated crash stopped the writing.
    stopped: bool,
}

struct OpenSegment {
    first: u64,
    last: u64,
    count: usize,
    text: Vec<u8>,
}

impl<'a> SegmentWriter<'a> {
    fn new(archive: &'a Path, max: usize, crash: Option<Step>) -> Self {
        SegmentWriter {
            archive,
            max,
            open: None,
            crash,
            stopped: false,
        }
    }

    fn push(&mut self, seq: u64, line: &[u8]) -> Result<(), StateError> {
        if self.stopped {
            return Ok(());
        }
        let s = self.open.get_or_insert_with(|| OpenSegment {
            first: seq,
            last: seq,
            count: 0,
            text: Vec::new(),
        });
        s.last = seq;
        s.count += 1;
        s.text.extend_from_slice(line);
        s.text.push(b'\n');
        if s.count >= self.max {
            self.close()?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), StateError> {
        let Some(s) = self.open.take() else {
            return Ok(());
        };
        let path = self
            .archive
            .join(format!("{:020}-{:020}.jsonl", s.first, s.last));
        let io_err = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        durable::write_tmp(&path, &s.text, 0o644).map_err(io_err)?;
        if self.crash == Some(Step::SegmentWritten) {
            self.stopped = true;
            return Ok(());
        }
        std::fs::rename(durable::tmp_path(&path), &path).map_err(io_err)
    }

    /// Writes the last segment out; returns whether a simulated crash stops the compaction.
    fn finish(mut self) -> Result<bool, StateError> {
        self.close()?;
        Ok(self.stopped || self.crash == Some(Step::SegmentsRenamed))
    }
}
