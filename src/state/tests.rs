use super::journal::Step;
use super::*;

fn entry(action: Action, region: &str, reason: &str) -> Entry {
    Entry {
        seq: 0,
        at_ms: 1_000,
        by: "ops".into(),
        action,
        zone: "example.com.".into(),
        region: region.into(),
        endpoint: None,
        reason: reason.into(),
        expires_at_ms: None,
        node: None,
    }
}

#[test]
fn acknowledged_writes_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    let a = j
        .append(entry(Action::Drain, "eu-west", "maintenance"))
        .unwrap();
    let b = j.append(entry(Action::Drain, "us-east", "fire")).unwrap();
    j.append(entry(Action::Undrain, "us-east", "fire out"))
        .unwrap();
    assert_eq!((a.seq, b.seq), (1, 2));
    drop(j);
    let j = Journal::open(dir.path()).unwrap();
    let o = j.overrides();
    assert_eq!(o.drains.len(), 1);
    let d = o.drained("example.com.", "eu-west", 2_000).unwrap();
    assert_eq!(
        (d.seq, d.reason.as_str(), d.by.as_str()),
        (1, "maintenance", "ops")
    );
    assert_eq!(j.last_seq(), 3);
    let audit = j.audit_page(None, 100).unwrap();
    assert_eq!(audit.len(), 3, "the audit log keeps every write");
}

#[test]
fn a_torn_last_line_is_cut_and_the_rest_replays() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.append(entry(Action::Drain, "eu-west", "maintenance"))
        .unwrap();
    drop(j);
    let path = dir.path().join(JOURNAL_FILE);
    let good = std::fs::read(&path).unwrap();
    for torn in [&b"{\"seq\":2,\"at_ms\":5,\"by\":\"o"[..], b"{", b"\0\0\0"] {
        let mut bytes = good.clone();
        bytes.extend_from_slice(torn);
        std::fs::write(&path, &bytes).unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.last_seq(), 1);
        assert_eq!(std::fs::read(&path).unwrap(), good, "torn tail removed");
        let e = j.append(entry(Action::Undrain, "eu-west", "done")).unwrap();
        assert_eq!(e.seq, 2);
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        assert!(j.overrides().drains.is_empty());
        std::fs::write(&path, &good).unwrap();
    }
}

/// A last line that ends with its newline was written whole: if it does not parse, a crash
/// did not cut it, and dropping it could drop an acknowledged write.
#[test]
fn a_complete_last_line_that_does_not_parse_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.append(entry(Action::Drain, "eu-west", "maintenance"))
        .unwrap();
    drop(j);
    let path = dir.path().join(JOURNAL_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"seq\":2,\"garb\n");
    std::fs::write(&path, &bytes).unwrap();
    let err = Journal::open(dir.path())
        .err()
        .expect("damage is refused")
        .to_string();
    assert!(
        err.contains("audit.jsonl:2: damaged journal entry"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "left as it was");
}

#[test]
fn sequence_numbers_that_go_back_are_damage() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.append(entry(Action::Drain, "eu-west", "a")).unwrap();
    j.append(entry(Action::Drain, "us-east", "b")).unwrap();
    drop(j);
    let path = dir.path().join(JOURNAL_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"seq\":2", "\"seq\":1", 1)).unwrap();
    let err = Journal::open(dir.path())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("audit.jsonl:2: damaged journal entry: sequence number 1 after 1"),
        "{err}"
    );
}

#[test]
fn damage_before_the_last_line_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.append(entry(Action::Drain, "eu-west", "a")).unwrap();
    j.append(entry(Action::Drain, "us-east", "b")).unwrap();
    drop(j);
    let path = dir.path().join(JOURNAL_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let damaged = text.replacen("\"seq\":1", "\"seq\":", 1);
    std::fs::write(&path, damaged).unwrap();
    let err = Journal::open(dir.path())
        .err()
        .expect("damage is refused")
        .to_string();
    assert!(
        err.contains("audit.jsonl:1: damaged journal entry"),
        "{err}"
    );
}

#[test]
fn expired_overrides_lift_themselves() {
    let mut o = Overrides::default();
    let mut e = entry(Action::Drain, "eu-west", "until noon");
    e.expires_at_ms = Some(5_000);
    o.apply(&e);
    let mut f = entry(Action::ForceDown, "us-east", "bad disk");
    f.endpoint = Some("192.0.2.10".parse().unwrap());
    o.apply(&f);
    assert!(o.drained("example.com.", "eu-west", 4_999).is_some());
    assert!(o.drained("example.com.", "eu-west", 5_000).is_none());
    assert_eq!(o.next_expiry(1_000), Some(5_000));
    assert_eq!(o.next_expiry(5_000), None);
    let addr = "192.0.2.10".parse().unwrap();
    assert_eq!(
        o.forced("example.com.", "us-east", addr, 9_999)
            .map(|f| f.0),
        Some(false)
    );
    assert_eq!(o.active_count(1_000), 2);
    assert_eq!(o.active_count(6_000), 1);
    f.action = Action::Unforce;
    o.apply(&f);
    assert!(o.forced("example.com.", "us-east", addr, 1).is_none());
}

/// Every entry of `entries` applied in order: what the journal's overrides must always equal.
fn replay(entries: &[Entry]) -> Overrides {
    let mut o = Overrides::default();
    for e in entries {
        o.apply(e);
    }
    o
}

fn arb_entry() -> impl proptest::strategy::Strategy<Value = Entry> {
    use proptest::prelude::*;
    let action = prop_oneof![
        Just(Action::Drain),
        Just(Action::Undrain),
        Just(Action::ForceDown),
        Just(Action::ForceUp),
        Just(Action::Unforce),
        Just(Action::Reload),
    ];
    (
        action,
        prop_oneof![Just("example.com."), Just("example.org.")],
        prop_oneof![Just("eu-west"), Just("us-east")],
        proptest::option::of(prop_oneof![
            Just("192.0.2.10".parse().unwrap()),
            Just("2001:db8::10".parse().unwrap()),
        ]),
        proptest::option::of(1u64..10_000),
    )
        .prop_map(|(action, zone, region, endpoint, expires_at_ms)| Entry {
            zone: zone.into(),
            endpoint,
            expires_at_ms,
            ..entry(action, region, "why")
        })
}

/// A file in memory that fails as told: writes past `room` bytes (ENOSPC part-way, as a
/// full disk does), the fsync, the truncation.
#[derive(Default)]
struct FailingFile {
    data: Vec<u8>,
    room: usize,
    fail_sync: bool,
    fail_set_len: bool,
}

impl durable::Store for FailingFile {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let offset = offset as usize;
        let fits = self.room.saturating_sub(offset).min(buf.len());
        self.data.truncate(offset);
        self.data.extend_from_slice(&buf[..fits]);
        if fits < buf.len() {
            Err(std::io::Error::from_raw_os_error(libc::ENOSPC))
        } else {
            Ok(())
        }
    }

    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        if self.fail_set_len {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        self.data.truncate(len as usize);
        Ok(())
    }

    fn sync_data(&mut self) -> std::io::Result<()> {
        if self.fail_sync {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
}

#[test]
fn an_append_cut_short_by_a_full_disk_is_cut_back_and_the_next_is_whole() {
    let mut f = FailingFile {
        data: b"one\n".to_vec(),
        room: 8,
        ..FailingFile::default()
    };
    let failed = durable::append(&mut f, 4, b"second line\n").unwrap_err();
    assert_eq!(failed.source.raw_os_error(), Some(libc::ENOSPC));
    assert!(failed.restored);
    assert_eq!(f.data, b"one\n", "the partial line is gone");
    f.room = 100;
    durable::append(&mut f, 4, b"two\n").unwrap();
    assert_eq!(f.data, b"one\ntwo\n");
}

#[test]
fn an_append_whose_fsync_fails_is_cut_back() {
    let mut f = FailingFile {
        data: b"one\n".to_vec(),
        room: 100,
        fail_sync: true,
        ..FailingFile::default()
    };
    let failed = durable::append(&mut f, 4, b"two\n").unwrap_err();
    // The cut-back's own fsync failed too: the caller must cut back again before appending.
    assert!(!failed.restored);
    f.fail_sync = false;
    durable::cut_back(&mut f, 4).unwrap();
    assert_eq!(f.data, b"one\n");
}

#[test]
fn an_append_that_cannot_be_cut_back_says_so() {
    let mut f = FailingFile {
        data: b"one\n".to_vec(),
        room: 6,
        fail_set_len: true,
        ..FailingFile::default()
    };
    let failed = durable::append(&mut f, 4, b"two\n").unwrap_err();
    assert!(!failed.restored);
    assert_eq!(
        f.data, b"one\ntw",
        "still partial: the next append cuts it first"
    );
    f.fail_set_len = false;
    durable::cut_back(&mut f, 4).unwrap();
    assert_eq!(f.data, b"one\n");
}

#[test]
fn a_failed_append_changes_neither_the_file_nor_the_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.append(entry(Action::Drain, "eu-west", "a")).unwrap();
    let before = (j.overrides().clone(), j.last_seq());
    let path = dir.path().join(JOURNAL_FILE);
    let bytes = std::fs::read(&path).unwrap();
    // Another handle cannot make this one fail; a journal whose file is read-only can.
    let mut ro = Journal::open(dir.path()).unwrap();
    ro.file = std::fs::File::open(&path).unwrap();
    let err = ro.append(entry(Action::Drain, "us-east", "b")).unwrap_err();
    assert!(matches!(err, StateError::Append { .. }), "{err}");
    assert_eq!((ro.overrides().clone(), ro.last_seq()), before);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

/// Small limits, so a few dozen appends compact several times.
const SMALL: Limits = Limits {
    compact_at: 8,
    keep: 3,
    segment: 5,
};

/// Every entry the audit holds, walked back page by page.
fn whole_audit(j: &Journal, page: usize) -> Vec<Entry> {
    let mut pages = Vec::new();
    let mut before = None;
    for _ in 0..10_000 {
        let p = j.audit_page(before, page).unwrap();
        let Some(first) = p.first() else {
            pages.reverse();
            return pages.concat();
        };
        before = Some(first.seq);
        pages.push(p);
    }
    panic!("the audit did not end");
}

fn varied(i: u64) -> Entry {
    let region = ["eu-west", "us-east", "ap-southeast"][(i % 3) as usize];
    let action = [
        Action::Drain,
        Action::Undrain,
        Action::Drain,
        Action::Reload,
    ][(i % 4) as usize];
    entry(action, region, &format!("write {i}"))
}

#[test]
fn compaction_keeps_the_overrides_and_every_audit_entry_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open_with(dir.path(), SMALL).unwrap();
    let mut all = Vec::new();
    for i in 0..50 {
        all.push(j.append(varied(i)).unwrap());
        assert_eq!(j.overrides(), &replay(&all));
    }
    let text = std::fs::read_to_string(dir.path().join(JOURNAL_FILE)).unwrap();
    assert!(text.starts_with("{\"snapshot\":"), "{text}");
    let lines = text.lines().count() - 1;
    assert!(lines <= SMALL.compact_at, "compacted: {lines} entry lines");
    for page in [1, 2, 3, 7, 100] {
        assert_eq!(whole_audit(&j, page), all, "pages of {page}");
    }
    let kept = j.overrides().clone();
    drop(j);
    let j = Journal::open_with(dir.path(), SMALL).unwrap();
    assert_eq!(j.overrides(), &kept);
    assert_eq!(j.last_seq(), 50);
    assert_eq!(whole_audit(&j, 4), all);
    let segments = std::fs::read_dir(dir.path().join(ARCHIVE_DIR))
        .unwrap()
        .count();
    assert!(segments >= 8, "at most 5 entries a segment: {segments}");
}

#[test]
fn a_page_before_a_sequence_number_reads_the_right_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open_with(dir.path(), SMALL).unwrap();
    for i in 0..40 {
        j.append(varied(i)).unwrap();
    }
    let seqs = |p: Vec<Entry>| p.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(j.audit_page(Some(13), 4).unwrap()), [9, 10, 11, 12]);
    assert_eq!(seqs(j.audit_page(Some(3), 4).unwrap()), [1, 2]);
    assert_eq!(seqs(j.audit_page(None, 2).unwrap()), [39, 40]);
    assert_eq!(seqs(j.audit_page(Some(1), 4).unwrap()), Vec::<u64>::new());
    assert_eq!(seqs(j.audit_page(None, 0).unwrap()), Vec::<u64>::new());
    assert_eq!(seqs(j.audit_page(Some(1_000), 3).unwrap()), [38, 39, 40]);
}

#[test]
fn a_long_journal_is_compacted_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open_with(
        dir.path(),
        Limits {
            compact_at: 1_000,
            ..SMALL
        },
    )
    .unwrap();
    let mut all = Vec::new();
    for i in 0..30 {
        all.push(j.append(varied(i)).unwrap());
    }
    drop(j);
    let j = Journal::open_with(dir.path(), SMALL).unwrap();
    let text = std::fs::read_to_string(dir.path().join(JOURNAL_FILE)).unwrap();
    assert_eq!(
        text.lines().count(),
        1 + SMALL.keep,
        "a snapshot and the tail: {text}"
    );
    assert_eq!(j.overrides(), &replay(&all));
    assert_eq!(whole_audit(&j, 10), all);
}

/// A crash at each step of a compaction, simulated by stopping there: the journal reopens
/// with the same overrides and every entry readable once, and goes on appending and
/// compacting.
#[test]
fn a_crash_at_any_step_of_a_compaction_leaves_the_old_or_the_new_journal() {
    for step in [
        Step::SegmentWritten,
        Step::SegmentsRenamed,
        Step::JournalWritten,
        Step::JournalRenamed,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            compact_at: 1_000,
            ..SMALL
        };
        let mut j = Journal::open_with(dir.path(), limits).unwrap();
        let mut all = Vec::new();
        for i in 0..20 {
            all.push(j.append(varied(i)).unwrap());
        }
        let journal = dir.path().join(JOURNAL_FILE);
        let old = std::fs::read(&journal).unwrap();
        j.compact_until(Some(step)).unwrap();
        drop(j);
        let new = std::fs::read(&journal).unwrap();
        let renamed = step == Step::JournalRenamed;
        assert_eq!(
            new == old,
            !renamed,
            "{step:?}: old or new, as the step says"
        );

        let mut j = Journal::open_with(dir.path(), limits).unwrap();
        assert_eq!(j.overrides(), &replay(&all), "{step:?}");
        assert_eq!(whole_audit(&j, 3), all, "{step:?}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .chain(std::fs::read_dir(dir.path().join(ARCHIVE_DIR)).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{step:?}: {leftovers:?}");
        for i in 20..30 {
            all.push(j.append(varied(i)).unwrap());
        }
        j.compact().unwrap();
        assert_eq!(
            whole_audit(&j, 4),
            all,
            "{step:?}: after the next compaction"
        );
        drop(j);
        let j = Journal::open_with(dir.path(), limits).unwrap();
        assert_eq!(j.overrides(), &replay(&all), "{step:?}");
        assert_eq!(whole_audit(&j, 100), all, "{step:?}");
    }
}

#[test]
fn undoing_what_is_not_in_force_would_change_nothing() {
    let mut o = Overrides::default();
    let undrain = entry(Action::Undrain, "eu-west", "x");
    assert!(!o.would_change(&undrain, 2_000));
    let mut drain = entry(Action::Drain, "eu-west", "x");
    drain.expires_at_ms = Some(5_000);
    assert!(o.would_change(&drain, 2_000));
    o.apply(&drain);
    assert!(o.would_change(&undrain, 2_000));
    assert!(!o.would_change(&undrain, 5_000), "expired");
    let mut unforce = entry(Action::Unforce, "eu-west", "x");
    unforce.endpoint = Some("192.0.2.10".parse().unwrap());
    assert!(!o.would_change(&unforce, 2_000));
    assert!(o.would_change(&entry(Action::Reload, "", "x"), 2_000));
}

proptest::proptest! {
    // Each case fsyncs every append: a few dozen cases cover the actions well enough.
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    #[test]
    fn kept_overrides_equal_a_replay_after_every_append_compaction_and_reopen(
        entries in proptest::collection::vec(arb_entry(), 0..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open_with(dir.path(), SMALL).unwrap();
        let mut all = Vec::new();
        for e in entries {
            all.push(j.append(e).unwrap());
            proptest::prop_assert_eq!(j.overrides(), &replay(&all));
        }
        proptest::prop_assert_eq!(&whole_audit(&j, 7), &all);
        let kept = j.overrides().clone();
        drop(j);
        let j = Journal::open_with(dir.path(), SMALL).unwrap();
        proptest::prop_assert_eq!(j.overrides(), &kept);
        proptest::prop_assert_eq!(&whole_audit(&j, 7), &all);
    }
}

/// A FIFO as the journal opens at once for reading and writing, and the replay then waited on
/// it forever: the start hung without a word. It is refused with its path.
#[test]
fn a_fifo_as_the_journal_is_refused_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    crate::files::mkfifo(&dir.path().join(JOURNAL_FILE));
    let path = dir.path().to_path_buf();
    let err = crate::files::within(std::time::Duration::from_secs(5), move || {
        Journal::open(&path).map(|_| ()).expect_err("refused")
    });
    let text = err.to_string();
    assert!(text.contains("audit.jsonl: not a regular file"), "{text}");
}

/// A FIFO in place of an archive segment: an audit page that reaches it is refused, and does
/// not block the admin thread on it.
#[test]
fn a_fifo_in_the_audit_archive_is_refused_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open_with(dir.path(), SMALL).unwrap();
    for i in 0..40 {
        j.append(varied(i)).unwrap();
    }
    let archive = dir.path().join(ARCHIVE_DIR);
    let oldest = std::fs::read_dir(&archive)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_str().is_some_and(|p| p.ends_with(".jsonl")))
        .min()
        .unwrap();
    std::fs::remove_file(&oldest).unwrap();
    crate::files::mkfifo(&oldest);
    let err = crate::files::within(std::time::Duration::from_secs(5), move || {
        j.audit_page(Some(2), 10).map(|_| ()).expect_err("refused")
    });
    let text = err.to_string();
    assert!(text.contains("not a regular file but a FIFO"), "{text}");
}
