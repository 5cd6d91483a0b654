//! The state changes the dashboard lists (health transitions of regions and endpoints),
//! kept across restarts in `events.jsonl` beside the journal.
//!
//! Why not in the journal: the journal holds what operators did, replays it into overrides
//! and fsyncs each line under the lock that orders their writes; a flapping endpoint must not
//! queue behind (or ahead of) a drain, nor fill the audit trail. These lines are a record of
//! what was seen, so the rule is lighter: appended as they happen and flushed to the kernel,
//! not fsynced (a crash of the machine may lose the last ones; a restart of the server loses
//! none); a line that does not parse (a torn last line) is skipped with a warning, never
//! fatal; the newest `keep` are read back at start, and the file is rewritten aside and
//! renamed when it holds twice as many, so it never grows past that.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

use super::StateError;
use super::durable::{self, lines_backwards};

pub const EVENTS_FILE: &str = "events.jsonl";

/// The open event file.
pub struct EventLog {
    path: PathBuf,
    file: File,
    /// Lines in the file.
    lines: usize,
    keep: usize,
}

impl EventLog {
    /// Opens (or creates) `dir/events.jsonl` and reads back its newest `keep` events, oldest
    /// first.
    pub fn open<T: DeserializeOwned>(
        dir: &Path,
        keep: usize,
    ) -> Result<(EventLog, Vec<T>), StateError> {
        let path = dir.join(EVENTS_FILE);
        let io_err = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(io_err(io::Error::other("not a regular file")));
        }
        let mut lines = 0;
        let mut newest = Vec::new();
        lines_backwards(&file, meta.len(), |line| {
            lines += 1;
            if newest.len() < keep {
                match serde_json::from_slice::<T>(line) {
                    Ok(e) => newest.push(e),
                    Err(e) => warn!(file = %path.display(), error = %e,
                        "skipping an unreadable state-change line"),
                }
            }
            ControlFlow::Continue(())
        })
        .map_err(io_err)?;
        newest.reverse();
        let mut log = EventLog {
            path,
            file,
            lines,
            keep,
        };
        // A torn last line (no newline) would swallow the next append's start.
        if meta.len() > 0 {
            let mut last = [0u8];
            log.file
                .read_exact_at(&mut last, meta.len() - 1)
                .map_err(|source| StateError::Io {
                    path: log.path.clone(),
                    source,
                })?;
            if last[0] != b'\n' {
                log.file.write_all(b"\n").map_err(|source| StateError::Io {
                    path: log.path.clone(),
                    source,
                })?;
            }
        }
        Ok((log, newest))
    }

    /// Appends `events`, one line each, and rewrites the file with the newest `keep` of
    /// `all` (the events in memory, oldest first) once it holds twice that many.
    pub fn append<T: Serialize>(&mut self, events: &[T], all: &[T]) -> Result<(), StateError> {
        let mut buf = Vec::new();
        for e in events {
            serde_json::to_writer(&mut buf, e).expect("events serialize");
            buf.push(b'\n');
        }
        let io_err = |source| StateError::Append {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&buf).map_err(io_err)?;
        self.lines += events.len();
        if self.lines >= 2 * self.keep.max(1) {
            self.rewrite(&all[all.len().saturating_sub(self.keep)..])?;
        }
        Ok(())
    }

    /// Replaces the file by `events`: written aside, then renamed over it.
    fn rewrite<T: Serialize>(&mut self, events: &[T]) -> Result<(), StateError> {
        let io_err = |source| StateError::Io {
            path: self.path.clone(),
            source,
        };
        let mut buf = Vec::new();
        for e in events {
            serde_json::to_writer(&mut buf, e).expect("events serialize");
            buf.push(b'\n');
        }
        durable::write_tmp(&self.path, &buf, 0o644).map_err(io_err)?;
        std::fs::rename(durable::tmp_path(&self.path), &self.path).map_err(io_err)?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(io_err)?;
        self.lines = events.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct E {
        n: u32,
    }

    #[test]
    fn events_come_back_after_a_restart_newest_kept_and_the_file_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, back) = EventLog::open::<E>(dir.path(), 3).unwrap();
        assert!(back.is_empty());
        let mut all = Vec::new();
        for n in 0..10 {
            all.push(E { n });
            log.append(&all[all.len() - 1..], &all).unwrap();
        }
        drop(log);
        let text = std::fs::read_to_string(dir.path().join(EVENTS_FILE)).unwrap();
        assert!(
            text.lines().count() < 6,
            "rewritten at twice what is kept: {text}"
        );
        let (_, back) = EventLog::open::<E>(dir.path(), 3).unwrap();
        assert_eq!(back, [E { n: 7 }, E { n: 8 }, E { n: 9 }]);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_the_next_append_starts_a_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(EVENTS_FILE), "{\"n\":1}\n{\"n\":").unwrap();
        let (mut log, back) = EventLog::open::<E>(dir.path(), 10).unwrap();
        assert_eq!(back, [E { n: 1 }]);
        log.append(&[E { n: 2 }], &[]).unwrap();
        let (_, back) = EventLog::open::<E>(dir.path(), 10).unwrap();
        assert_eq!(back, [E { n: 1 }, E { n: 2 }]);
    }
}
