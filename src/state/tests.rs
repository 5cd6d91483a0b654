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
    assert_eq!(j.entries().len(), 3, "the audit log keeps every write");
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
    for torn in [
        &b"{\"seq\":2,\"at_ms\":5,\"by\":\"o"[..],
        b"{\"seq\":2,\"garb\n",
    ] {
        let mut bytes = good.clone();
        bytes.extend_from_slice(torn);
        std::fs::write(&path, &bytes).unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.entries().len(), 1);
        assert_eq!(std::fs::read(&path).unwrap(), good, "torn tail removed");
        let e = j.append(entry(Action::Undrain, "eu-west", "done")).unwrap();
        assert_eq!(e.seq, 2);
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        assert!(j.overrides().drains.is_empty());
        std::fs::write(&path, &good).unwrap();
    }
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

proptest::proptest! {
    // Each case fsyncs every append: a few dozen cases cover the actions well enough.
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    #[test]
    fn kept_overrides_equal_a_replay_after_every_append_and_a_reopen(
        entries in proptest::collection::vec(arb_entry(), 0..16),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        for e in entries {
            j.append(e).unwrap();
            proptest::prop_assert_eq!(j.overrides(), &replay(j.entries()));
        }
        let kept = j.overrides().clone();
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        proptest::prop_assert_eq!(j.overrides(), &kept);
    }
}
