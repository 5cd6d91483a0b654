//! The merge of probes, isolation guard and overrides. Time is an argument: every test builds
//! its [`Now`] from one base plus offsets, both clocks moving together.

use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::state::{Action, Entry};
use crate::zone::CheckSpec;

/// Unix ms of the base time of every test.
const BASE_MS: u64 = 1_700_000_000_000;

/// `ms` after a base shared by every call in one test.
fn at(base: Instant, ms: u64) -> Now {
    Now {
        instant: base + Duration::from_millis(ms),
        unix_ms: BASE_MS + ms,
    }
}

/// A probed (tcp) region check: interval 1 s, timeout 0.5 s, fall 1, so the isolation
/// guard's detection window is 2.5 s.
fn check(endpoints: usize, min_healthy: usize) -> RegionCheck {
    RegionCheck {
        spec: CheckSpec {
            kind: CheckKind::Tcp { port: 80 },
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            rise: 1,
            fall: 1,
            start_up: true,
            min_healthy,
            degradation_limit_ms: 100.0,
            hysteresis_ms: 10.0,
        },
        targets: vec![None; endpoints],
    }
}

fn unprobed(endpoints: usize) -> RegionCheck {
    let mut c = check(endpoints, 1);
    c.spec.kind = CheckKind::None;
    c
}

const WINDOW_MS: u64 = 2_500;

/// A region as probes see it, from its endpoints' up flags and min-healthy 1.
fn probed(endpoints_up: &[bool]) -> RegionHealth {
    let mut h = RegionHealth::up(endpoints_up.len());
    h.endpoints_up = endpoints_up.to_vec();
    if !endpoints_up.contains(&true) {
        h.state = RegionState::Down;
    }
    h
}

fn down(endpoints: usize) -> RegionHealth {
    probed(&vec![false; endpoints])
}

fn up(endpoints: usize) -> RegionHealth {
    probed(&vec![true; endpoints])
}

/// No overrides for a zone of regions with these endpoint counts.
fn no_overrides(endpoints: &[usize]) -> ZoneOverrides {
    ZoneOverrides {
        drained: vec![None; endpoints.len()],
        forced: endpoints.iter().map(|&n| vec![None; n]).collect(),
    }
}

const FOREVER: Hold = Hold {
    expires_at_ms: None,
};

fn until(ms: u64) -> Hold {
    Hold {
        expires_at_ms: Some(BASE_MS + ms),
    }
}

fn states(view: &HealthView) -> Vec<RegionState> {
    view.regions.iter().map(|r| r.state).collect()
}

// ---- merge: overrides on top of probes ----

#[test]
fn no_overrides_leave_the_probe_views_as_they_are() {
    let base = Instant::now();
    let mut slow = up(2);
    slow.degradation_ms = 42.0;
    slow.over_limit = true;
    slow.in_trouble = true;
    let probes = vec![slow, down(1)];
    let view = merge(
        probes.clone(),
        &[check(2, 1), check(1, 1)],
        &no_overrides(&[2, 1]),
        at(base, 0),
    );
    assert_eq!(view.regions, probes);
}

#[test]
fn drain_takes_region_out() {
    let base = Instant::now();
    let mut o = no_overrides(&[2, 1]);
    o.drained[0] = Some(FOREVER);
    let view = merge(
        vec![up(2), up(1)],
        &[check(2, 1), check(1, 1)],
        &o,
        at(base, 0),
    );
    assert_eq!(states(&view), [RegionState::Drained, RegionState::Up]);
    assert_eq!(
        view.regions[0].endpoints_up,
        [true, true],
        "a drain takes the region out, not its endpoints"
    );
}

#[test]
fn force_down_beats_probes() {
    let base = Instant::now();
    let mut o = no_overrides(&[1]);
    o.forced[0][0] = Some(Forced {
        up: false,
        hold: FOREVER,
    });
    let view = merge(vec![up(1)], &[check(1, 1)], &o, at(base, 0));
    assert_eq!(view.regions[0].endpoints_up, [false]);
    assert_eq!(view.regions[0].state, RegionState::Down);
}

#[test]
fn force_up_beats_probes() {
    let base = Instant::now();
    let mut o = no_overrides(&[1]);
    o.forced[0][0] = Some(Forced {
        up: true,
        hold: FOREVER,
    });
    let view = merge(vec![down(1)], &[check(1, 1)], &o, at(base, 0));
    assert_eq!(view.regions[0].endpoints_up, [true]);
    assert_eq!(view.regions[0].state, RegionState::Up);
}

#[test]
fn a_forced_region_is_counted_again_against_min_healthy() {
    // (probe flags of three endpoints, forced endpoint and state, min-healthy, region state)
    let cases = [
        (&[true, false, false][..], (1, true), 2, RegionState::Up),
        (&[true, true, false], (1, false), 2, RegionState::Down),
        (&[true, true, true], (0, false), 2, RegionState::Up),
        (&[false, false, false], (2, true), 1, RegionState::Up),
        (&[false, false, false], (2, true), 2, RegionState::Down),
    ];
    let base = Instant::now();
    for (flags, (ei, forced_up), min_healthy, want) in cases {
        let mut o = no_overrides(&[3]);
        o.forced[0][ei] = Some(Forced {
            up: forced_up,
            hold: FOREVER,
        });
        let view = merge(
            vec![probed(flags)],
            &[check(3, min_healthy)],
            &o,
            at(base, 0),
        );
        assert_eq!(
            view.regions[0].state, want,
            "{flags:?}, endpoint {ei} forced {forced_up}, min-healthy {min_healthy}"
        );
        assert_eq!(view.regions[0].endpoints_up[ei], forced_up);
    }
}

#[test]
fn drain_beats_force_up() {
    let base = Instant::now();
    let mut o = no_overrides(&[1]);
    o.drained[0] = Some(FOREVER);
    o.forced[0][0] = Some(Forced {
        up: true,
        hold: FOREVER,
    });
    let view = merge(vec![down(1)], &[check(1, 1)], &o, at(base, 0));
    assert_eq!(view.regions[0].state, RegionState::Drained);
}

#[test]
fn expired_drain_is_ignored() {
    // (ms after the base, drained?): a drain until 5 s holds up to, not at, its expiry.
    let base = Instant::now();
    let mut o = no_overrides(&[1]);
    o.drained[0] = Some(until(5_000));
    for (ms, drained) in [(0, true), (4_999, true), (5_000, false), (60_000, false)] {
        let view = merge(vec![up(1)], &[check(1, 1)], &o, at(base, ms));
        assert_eq!(
            view.regions[0].state == RegionState::Drained,
            drained,
            "at {ms} ms"
        );
    }
}

#[test]
fn expired_force_is_ignored() {
    let base = Instant::now();
    let mut o = no_overrides(&[1]);
    o.forced[0][0] = Some(Forced {
        up: false,
        hold: until(5_000),
    });
    for (ms, state) in [(4_999, RegionState::Down), (5_000, RegionState::Up)] {
        let view = merge(vec![up(1)], &[check(1, 1)], &o, at(base, ms));
        assert_eq!(view.regions[0].state, state, "at {ms} ms");
    }
}

// ---- overrides resolved to indexes ----

fn region(name: &str, addresses: &[&str]) -> Region {
    Region {
        name: name.into(),
        location: crate::steer::GeoPoint { lat: 0.0, lon: 0.0 },
        endpoints: addresses
            .iter()
            .map(|a| crate::steer::Endpoint {
                address: a.parse().unwrap(),
                weight: 1,
            })
            .collect(),
    }
}

fn entry(action: Action, zone: &str, region: &str, endpoint: Option<&str>) -> Entry {
    Entry {
        seq: 1,
        at_ms: BASE_MS,
        by: "ops".into(),
        action,
        zone: zone.into(),
        region: region.into(),
        endpoint: endpoint.map(|e| e.parse().unwrap()),
        reason: "test".into(),
        expires_at_ms: None,
        node: None,
    }
}

#[test]
fn overrides_resolve_to_the_indexes_of_their_region_and_endpoint() {
    let regions = [
        region("eu-west", &["198.51.100.10", "2001:db8::10"]),
        region("us-east", &["192.0.2.10"]),
    ];
    let mut overrides = Overrides::default();
    overrides.apply(&entry(Action::Drain, "example.com.", "us-east", None));
    overrides.apply(&Entry {
        expires_at_ms: Some(BASE_MS + 9),
        ..entry(
            Action::ForceUp,
            "example.com.",
            "eu-west",
            Some("2001:db8::10"),
        )
    });
    let o = ZoneOverrides::resolve(&overrides, "example.com.", &regions);
    assert_eq!(o.drained, [None, Some(FOREVER)]);
    assert_eq!(
        o.forced,
        [
            vec![
                None,
                Some(Forced {
                    up: true,
                    hold: until(9)
                })
            ],
            vec![None],
        ]
    );
}

#[test]
fn overrides_of_other_zones_or_of_unknown_names_are_left_out() {
    let regions = [region("us-east", &["192.0.2.10"])];
    let mut overrides = Overrides::default();
    for e in [
        entry(Action::Drain, "example.org.", "us-east", None),
        entry(Action::Drain, "example.com.", "us-west", None),
        entry(
            Action::ForceDown,
            "example.com.",
            "us-east",
            Some("192.0.2.11"),
        ),
        entry(
            Action::ForceDown,
            "example.org.",
            "us-east",
            Some("192.0.2.10"),
        ),
    ] {
        overrides.apply(&e);
    }
    let o = ZoneOverrides::resolve(&overrides, "example.com.", &regions);
    assert_eq!(o, no_overrides(&[1]));
}

// ---- the isolation guard ----

/// A guard over two probed regions of one endpoint each, and one unprobed.
fn guard() -> IsolationGuard {
    IsolationGuard::new(true, &[check(1, 1), check(1, 1), unprobed(1)])
}

#[test]
fn isolation_guard_keeps_the_last_good_state_when_every_probed_region_fails() {
    let base = Instant::now();
    let mut g = guard();
    let good = vec![up(1), down(1), up(1)];
    let (v, change) = g.apply(good.clone(), base);
    assert_eq!((v, change), (good.clone(), None));
    let cut_off = base + Duration::from_millis(WINDOW_MS + 1);
    let (v, change) = g.apply(vec![down(1), down(1), up(1)], cut_off);
    assert_eq!(v, good, "the unprobed region being up does not count");
    assert_eq!(change, Some(Isolation::Started { regions: 2 }));
    let (v, change) = g.apply(
        vec![down(1), down(1), up(1)],
        cut_off + Duration::from_secs(1),
    );
    assert_eq!((v, change), (good, None), "said once");
}

#[test]
fn isolation_guard_lets_go_when_one_region_answers_again() {
    let base = Instant::now();
    let mut g = guard();
    g.apply(vec![up(1), up(1), up(1)], base);
    let later = |ms| base + Duration::from_millis(WINDOW_MS + ms);
    let (_, change) = g.apply(vec![down(1), down(1), up(1)], later(1));
    assert_eq!(change, Some(Isolation::Started { regions: 2 }));
    let back = vec![down(1), up(1), up(1)];
    let (v, change) = g.apply(back.clone(), later(2));
    assert_eq!((v, change), (back.clone(), Some(Isolation::Ended)));
    let (v, change) = g.apply(back.clone(), later(3));
    assert_eq!((v, change), (back, None), "said once");
}

#[test]
fn isolation_guard_serves_the_state_from_before_the_detection_window() {
    // The failures of one cut-off moment reach the regions one by one: the state kept just
    // before the last region fell already shows the first one down, and is not served.
    let base = Instant::now();
    let mut g = guard();
    let before = vec![up(1), up(1), up(1)];
    g.apply(before.clone(), base);
    let falling = vec![down(1), up(1), up(1)];
    let t = base + Duration::from_millis(WINDOW_MS);
    g.apply(falling.clone(), t);
    let (v, _) = g.apply(vec![down(1), down(1), up(1)], t + Duration::from_secs(1));
    assert_eq!(v, before);
    // Once the falling state is itself older than the window, it is the newest good one.
    let mut g = guard();
    g.apply(before, base);
    g.apply(falling.clone(), t);
    let (v, _) = g.apply(
        vec![down(1), down(1), up(1)],
        t + Duration::from_millis(WINDOW_MS),
    );
    assert_eq!(v, falling);
}

#[test]
fn isolation_guard_serves_the_oldest_good_state_when_none_is_older_than_the_window() {
    let base = Instant::now();
    let mut g = guard();
    let first = vec![up(1), up(1), up(1)];
    g.apply(first.clone(), base);
    g.apply(
        vec![up(1), down(1), up(1)],
        base + Duration::from_millis(10),
    );
    let (v, _) = g.apply(
        vec![down(1), down(1), up(1)],
        base + Duration::from_millis(20),
    );
    assert_eq!(v, first);
}

#[test]
fn isolation_guard_without_a_good_state_follows_the_probes() {
    let base = Instant::now();
    let mut g = guard();
    let all_down = vec![down(1), down(1), up(1)];
    assert_eq!(g.apply(all_down.clone(), base), (all_down, None));
}

#[test]
fn isolation_guard_needs_two_probed_regions() {
    let base = Instant::now();
    let mut g = IsolationGuard::new(true, &[check(1, 1), unprobed(1)]);
    g.apply(vec![up(1), up(1)], base);
    let fresh = vec![down(1), up(1)];
    assert_eq!(
        g.apply(fresh.clone(), base + Duration::from_secs(10)),
        (fresh, None)
    );
}

#[test]
fn isolation_guard_off_follows_the_probes() {
    let base = Instant::now();
    let mut g = IsolationGuard::new(false, &[check(1, 1), check(1, 1)]);
    g.apply(vec![up(1), up(1)], base);
    let fresh = vec![down(1), down(1)];
    assert_eq!(
        g.apply(fresh.clone(), base + Duration::from_secs(10)),
        (fresh, None)
    );
}

#[test]
fn isolation_guard_forgets_good_states_older_than_ten_windows() {
    let base = Instant::now();
    let mut g = guard();
    g.apply(vec![up(1), up(1), up(1)], base);
    let late = base + Duration::from_millis(10 * WINDOW_MS + 1);
    let newest = vec![up(1), down(1), up(1)];
    g.apply(newest.clone(), late);
    let (v, _) = g.apply(
        vec![down(1), down(1), up(1)],
        late + Duration::from_millis(1),
    );
    assert_eq!(
        v, newest,
        "the first state was forgotten; the newest always stays"
    );
}

// ---- a zone: machines, guard and overrides together ----

const ZONE: &str = r#"zone = "example.com."
isolation-guard = true
records = '''
$TTL 300
@    IN SOA ns1 hostmaster 1 7200 3600 1209600 300
@    IN NS  ns1
ns1  IN A   192.0.2.53
'''

[health]
check = "tcp"
port = 80
interval = 1
timeout = 0.5
rise = 1
fall = 1

[regions.eu-west]
location = { lat = 53.35, lon = -6.26 }
endpoints = ["198.51.100.10", "198.51.100.11"]

[regions.us-east]
location = { lat = 39.04, lon = -77.49 }
endpoints = ["192.0.2.10"]
"#;

fn zone(text: &str) -> Zone {
    crate::zone::load_file(Path::new("zones/example.com.toml"), text)
        .unwrap_or_else(|d| panic!("{}", crate::zone::LoadError(d)))
}

fn fail() -> Outcome {
    Outcome::Down {
        reason: "connection refused".into(),
    }
}

fn ok() -> Outcome {
    Outcome::Up {
        rtt: Duration::from_millis(10),
    }
}

#[test]
fn record_reports_endpoint_and_region_flips() {
    let base = Instant::now();
    let mut z = ZoneHealth::new(&zone(ZONE), &[], &Overrides::default());
    let r = z.record(0, 0, &fail(), base).unwrap();
    assert_eq!(r.endpoint.map(|t| t.up), Some(false));
    assert_eq!(r.region, None, "one of two endpoints is enough");
    let r = z.record(0, 1, &fail(), base).unwrap();
    assert_eq!(
        r.region,
        Some(Transition {
            up: false,
            reason: "0 of 2 endpoints up, 1 needed".into()
        })
    );
    let (view, _) = z.view(at(base, 0));
    assert_eq!(states(&view), [RegionState::Down, RegionState::Up]);
}

#[test]
fn an_unprobed_region_records_nothing() {
    let text = ZONE.replace(
        "endpoints = [\"192.0.2.10\"]",
        "endpoints = [\"192.0.2.10\"]\nhealth = { check = \"none\" }",
    );
    let mut z = ZoneHealth::new(&zone(&text), &[], &Overrides::default());
    assert_eq!(z.record(1, 0, &fail(), Instant::now()), None);
    assert!(z.details()[1].is_none());
    assert_eq!(z.details()[0].as_ref().map(Vec::len), Some(2));
}

#[test]
fn drain_applies_on_top_of_the_isolation_guard() {
    let base = Instant::now();
    let mut overrides = Overrides::default();
    let mut z = ZoneHealth::new(&zone(ZONE), &[], &overrides);
    z.view(at(base, 0));
    let t = base + Duration::from_millis(WINDOW_MS + 1);
    for (ri, ei) in [(0, 0), (0, 1), (1, 0)] {
        z.record(ri, ei, &fail(), t);
    }
    let (view, isolation) = z.view(at(base, WINDOW_MS + 1));
    assert_eq!(isolation, Some(Isolation::Started { regions: 2 }));
    assert_eq!(states(&view), [RegionState::Up, RegionState::Up]);
    overrides.apply(&entry(Action::Drain, "example.com.", "us-east", None));
    z.set_overrides(&overrides, t);
    let (view, _) = z.view(at(base, WINDOW_MS + 2));
    assert_eq!(states(&view), [RegionState::Up, RegionState::Drained]);
}

#[test]
fn machines_survive_a_reload_when_check_and_endpoints_are_unchanged() {
    let base = Instant::now();
    let none = Overrides::default();
    let mut old = ZoneHealth::new(&zone(ZONE), &[], &none);
    old.record(0, 0, &fail(), base);
    old.record(0, 1, &fail(), base);
    old.record(1, 0, &fail(), base);
    let old = [old];
    // Same zone: both regions keep their down machines.
    let mut z = ZoneHealth::new(&zone(ZONE), &old, &none);
    let (view, _) = z.view(at(base, 0));
    assert_eq!(states(&view), [RegionState::Down, RegionState::Down]);
    // eu-west gets another endpoint, us-east another port: both start afresh (start up).
    let text = ZONE
        .replace(
            "\"198.51.100.11\"]",
            "\"198.51.100.11\", \"198.51.100.12\"]",
        )
        .replace(
            "endpoints = [\"192.0.2.10\"]",
            "endpoints = [\"192.0.2.10\"]\nhealth = { port = 8080 }",
        );
    let mut z = ZoneHealth::new(&zone(&text), &old, &none);
    let (view, _) = z.view(at(base, 0));
    assert_eq!(states(&view), [RegionState::Up, RegionState::Up]);
    // A weight is not a check: the machine stays.
    let text = ZONE.replace(
        "endpoints = [\"192.0.2.10\"]",
        "endpoints = [{ address = \"192.0.2.10\", weight = 5 }]",
    );
    let mut z = ZoneHealth::new(&zone(&text), &old, &none);
    let (view, _) = z.view(at(base, 0));
    assert_eq!(states(&view), [RegionState::Down, RegionState::Down]);
}

#[test]
fn a_round_view_marks_failed_probes_down() {
    let z = zone(ZONE);
    let view = view_of_round(
        &z,
        &[
            vec![Some(Ok(fail())), Some(Ok(ok()))],
            vec![Some(Ok(fail()))],
        ],
    );
    assert_eq!(states(&view), [RegionState::Up, RegionState::Down]);
    assert_eq!(view.regions[0].endpoints_up, [false, true]);
}

/// `meridian route --probe` on a node out of descriptors: a probe it could not make says
/// nothing of the target, so the endpoint and its region stay up.
#[test]
fn a_round_view_holds_no_local_fault_against_its_endpoint() {
    let z = zone(ZONE);
    let emfile = || Err("this node cannot probe: EMFILE (Too many open files)".to_string());
    let view = view_of_round(
        &z,
        &[vec![Some(emfile()), Some(emfile())], vec![Some(emfile())]],
    );
    assert_eq!(states(&view), [RegionState::Up, RegionState::Up]);
    assert_eq!(view.regions[0].endpoints_up, [true, true]);
    assert_eq!(view.regions[1].endpoints_up, [true]);
}

// ---- properties ----

fn arb_hold() -> impl Strategy<Value = Hold> {
    proptest::option::of(0u64..10_000).prop_map(|t| Hold {
        expires_at_ms: t.map(|t| BASE_MS + t),
    })
}

/// Probe views, checks and overrides of up to four regions of up to four endpoints.
fn arb_zone() -> impl Strategy<Value = (Vec<RegionHealth>, Vec<RegionCheck>, ZoneOverrides)> {
    proptest::collection::vec(
        (1usize..=4).prop_flat_map(|n| {
            (
                proptest::collection::vec(any::<bool>(), n),
                1..=n,
                proptest::option::weighted(0.3, arb_hold()),
                proptest::collection::vec(
                    proptest::option::weighted(0.3, (any::<bool>(), arb_hold())),
                    n,
                ),
            )
        }),
        1..4,
    )
    .prop_map(|regions| {
        let mut probes = Vec::new();
        let mut checks = Vec::new();
        let mut o = ZoneOverrides::default();
        for (flags, min_healthy, drain, forced) in regions {
            probes.push(probed(&flags));
            checks.push(check(flags.len(), min_healthy));
            o.drained.push(drain);
            o.forced.push(
                forced
                    .into_iter()
                    .map(|f| f.map(|(up, hold)| Forced { up, hold }))
                    .collect(),
            );
        }
        (probes, checks, o)
    })
}

proptest! {
    #[test]
    fn merge_follows_the_precedence_rules(
        (probes, checks, o) in arb_zone(),
        ms in 0u64..12_000,
    ) {
        let now = at(Instant::now(), ms);
        let view = merge(probes.clone(), &checks, &o, now);
        for (ri, (got, probe)) in view.regions.iter().zip(&probes).enumerate() {
            let forced: Vec<Option<bool>> = o.forced[ri]
                .iter()
                .map(|f| f.filter(|f| f.hold.active(now)).map(|f| f.up))
                .collect();
            let want_up: Vec<bool> = forced
                .iter()
                .zip(&probe.endpoints_up)
                .map(|(f, p)| f.unwrap_or(*p))
                .collect();
            prop_assert_eq!(&got.endpoints_up, &want_up);
            let want = if o.drained[ri].is_some_and(|d| d.active(now)) {
                RegionState::Drained
            } else if forced.iter().any(Option::is_some) {
                if want_up.iter().filter(|u| **u).count() >= checks[ri].spec.min_healthy {
                    RegionState::Up
                } else {
                    RegionState::Down
                }
            } else {
                probe.state
            };
            prop_assert_eq!(got.state, want);
            prop_assert_eq!(got.degradation_ms, probe.degradation_ms);
        }
    }

    #[test]
    fn expired_overrides_leave_the_probe_views_untouched((probes, checks, mut o) in arb_zone()) {
        // Every override expires by 10 s at the latest.
        let expire = |h: &mut Hold| {
            h.expires_at_ms.get_or_insert(BASE_MS + 10_000);
        };
        o.drained.iter_mut().flatten().for_each(expire);
        o.forced.iter_mut().flatten().flatten().for_each(|f| expire(&mut f.hold));
        let view = merge(probes.clone(), &checks, &o, at(Instant::now(), 10_000));
        prop_assert_eq!(view.regions, probes);
    }
}

/// Peer votes for one region of endpoints: `(up, total)` per endpoint.
fn votes(quorum: Quorum, per_endpoint: &[(usize, usize)]) -> ZoneVotes {
    ZoneVotes {
        quorum,
        votes: vec![
            per_endpoint
                .iter()
                .map(|&(up, total)| Votes { up, total })
                .collect(),
        ],
        location: None,
        vantages: Vec::new(),
    }
}

#[test]
fn quorum_rules_decide_as_documented() {
    // (rule, up, total) -> up?
    let table = [
        (Quorum::Majority, 2, 3, true),
        (Quorum::Majority, 1, 3, false),
        (Quorum::Majority, 1, 2, true),
        (Quorum::Majority, 0, 1, false),
        (Quorum::Any, 1, 3, true),
        (Quorum::Any, 0, 3, false),
        (Quorum::All, 2, 3, false),
        (Quorum::All, 3, 3, true),
        (Quorum::Fraction(0.18), 1, 3, true),
        (Quorum::Fraction(0.18), 0, 3, false),
        (Quorum::Fraction(0.5), 1, 2, false),
        (Quorum::Fraction(0.5), 2, 3, true),
    ];
    for (rule, up, total, want) in table {
        assert_eq!(rule.up(up, total), want, "{rule:?} {up}/{total}");
    }
}

#[test]
fn a_node_whose_own_probes_disagree_follows_the_majority() {
    // Two peers see the endpoint up; this node's probes say down: up, and the region too.
    let out = vote(
        vec![probed(&[false])],
        &[check(1, 1)],
        &votes(Quorum::Majority, &[(2, 2)]),
        false,
        &[vec![true; 1]],
    );
    assert_eq!(out[0].endpoints_up, [true]);
    assert_eq!(out[0].state, RegionState::Up);
    // Two peers see it down; this node sees it up: down.
    let out = vote(
        vec![probed(&[true])],
        &[check(1, 1)],
        &votes(Quorum::Majority, &[(0, 2)]),
        false,
        &[vec![true; 1]],
    );
    assert_eq!(out[0].state, RegionState::Down);
}

#[test]
fn one_black_holed_vantage_point_changes_nothing_under_majority() {
    // Of three nodes, one (a peer) sees both endpoints down: this node and the other peer
    // see them up.
    let out = vote(
        vec![probed(&[true, true])],
        &[check(2, 1)],
        &votes(Quorum::Majority, &[(1, 2), (1, 2)]),
        false,
        &[vec![true; 2]],
    );
    assert_eq!(out[0], probed(&[true, true]));
}

#[test]
fn without_peer_votes_a_node_follows_its_own_probes() {
    let mine = vec![probed(&[false, true])];
    let out = vote(
        mine.clone(),
        &[check(2, 2)],
        &votes(Quorum::Majority, &[(0, 0), (0, 0)]),
        false,
        &[vec![true; 2]],
    );
    assert_eq!(out, mine);
}

#[test]
fn a_suspect_node_leaves_its_own_vote_out() {
    // Isolated: this node sees down, one peer sees up: with its vote it would be a tie
    // (up anyway); under `all` its vote would decide down. Left out, the peer decides up.
    let out = vote(
        vec![probed(&[false])],
        &[check(1, 1)],
        &votes(Quorum::All, &[(1, 1)]),
        true,
        &[vec![true; 1]],
    );
    assert_eq!(out[0].state, RegionState::Up);
    let out = vote(
        vec![probed(&[false])],
        &[check(1, 1)],
        &votes(Quorum::All, &[(1, 1)]),
        false,
        &[vec![true; 1]],
    );
    assert_eq!(out[0].state, RegionState::Down);
}

#[test]
fn unprobed_regions_take_no_votes() {
    let out = vote(
        vec![RegionHealth::up(1)],
        &[unprobed(1)],
        &votes(Quorum::Majority, &[(0, 3)]),
        false,
        &[vec![true; 1]],
    );
    assert_eq!(out[0].state, RegionState::Up);
}

#[test]
fn a_zones_own_quorum_rule_beats_the_clusters() {
    let z = zone(ZONE);
    let mut peers = PeerViews::default();
    let first = &z.regions[0];
    peers.votes.insert(
        (
            z.origin.to_string(),
            first.name.clone(),
            first.endpoints[0].address,
        ),
        Votes { up: 1, total: 2 },
    );
    let cluster = ZoneVotes::resolve(&peers, &z.origin.to_string(), &z.regions, None);
    assert_eq!(cluster.quorum, Quorum::Majority);
    assert_eq!(cluster.votes[0][0], Votes { up: 1, total: 2 });
    let own = ZoneVotes::resolve(&peers, &z.origin.to_string(), &z.regions, Some(Quorum::All));
    assert_eq!(own.quorum, Quorum::All);
    // Another zone's votes are not this zone's.
    let other = ZoneVotes::resolve(&peers, "example.org.", &z.regions, None);
    assert_eq!(other.votes[0][0], Votes::default());
}

// ---- the settle after an override changes ----

/// [`ZONE`] with one steered name of TTL 30: a region settles for 31 s after its overrides
/// change (the TTL and the second an answer's stamp may be behind).
fn steered_zone() -> Zone {
    zone(&ZONE.replace(
        "\n[regions.eu-west]",
        "\n[steered.www]\nregions = [\"eu-west\", \"us-east\"]\nttl = 30\n\n[regions.eu-west]",
    ))
}

fn troubled(view: &HealthView) -> Vec<bool> {
    view.regions.iter().map(|r| r.in_trouble).collect()
}

#[test]
fn a_drain_and_its_undrain_each_put_the_region_in_trouble_for_the_longest_ttl_and_a_second() {
    let base = Instant::now();
    let mut overrides = Overrides::default();
    let mut z = ZoneHealth::new(&steered_zone(), &[], &overrides);
    assert_eq!(troubled(&z.view(at(base, 0)).0), [false, false]);
    assert_eq!(z.settled_at(at(base, 0)), None);

    overrides.apply(&entry(Action::Drain, "example.com.", "us-east", None));
    z.set_overrides(&overrides, base + Duration::from_secs(1));
    let (view, _) = z.view(at(base, 1_000));
    assert_eq!(states(&view), [RegionState::Up, RegionState::Drained]);
    assert_eq!(troubled(&view), [false, true]);
    assert_eq!(
        z.settled_at(at(base, 1_000)),
        Some(base + Duration::from_secs(32))
    );
    assert_eq!(troubled(&z.view(at(base, 31_999)).0), [false, true]);
    assert_eq!(troubled(&z.view(at(base, 32_000)).0), [false, false]);
    assert_eq!(z.settled_at(at(base, 32_000)), None);

    // The same overrides again (a cluster resync) change nothing.
    z.set_overrides(&overrides, base + Duration::from_secs(40));
    assert_eq!(troubled(&z.view(at(base, 40_000)).0), [false, false]);

    overrides.apply(&entry(Action::Undrain, "example.com.", "us-east", None));
    z.set_overrides(&overrides, base + Duration::from_secs(50));
    let (view, _) = z.view(at(base, 50_000));
    assert_eq!(states(&view), [RegionState::Up, RegionState::Up]);
    assert_eq!(troubled(&view), [false, true]);
}

#[test]
fn an_override_that_expires_puts_its_region_in_trouble_from_its_expiry() {
    let base = Instant::now();
    let mut overrides = Overrides::default();
    let mut z = ZoneHealth::new(&steered_zone(), &[], &overrides);
    let mut force = entry(
        Action::ForceDown,
        "example.com.",
        "eu-west",
        Some("198.51.100.10"),
    );
    force.expires_at_ms = Some(BASE_MS + 60_000);
    overrides.apply(&force);
    z.set_overrides(&overrides, base);
    assert_eq!(troubled(&z.view(at(base, 0)).0), [true, false]);
    assert_eq!(troubled(&z.view(at(base, 59_999)).0), [false, false]);
    assert_eq!(
        z.settled_at(at(base, 59_999)),
        Some(base + Duration::from_secs(91))
    );
    // Lifted by its expiry at 60 s: answers given before it may sit in caches for 31 s.
    assert_eq!(troubled(&z.view(at(base, 60_000)).0), [true, false]);
    assert_eq!(troubled(&z.view(at(base, 90_999)).0), [true, false]);
    assert_eq!(troubled(&z.view(at(base, 91_000)).0), [false, false]);
}

#[test]
fn a_zone_without_steered_names_never_settles() {
    let base = Instant::now();
    let mut overrides = Overrides::default();
    let mut z = ZoneHealth::new(&zone(ZONE), &[], &overrides);
    overrides.apply(&entry(Action::Drain, "example.com.", "us-east", None));
    z.set_overrides(&overrides, base);
    assert_eq!(troubled(&z.view(at(base, 0)).0), [false, false]);
    assert_eq!(z.settled_at(at(base, 0)), None);
}

#[test]
fn a_vote_not_yet_probed_does_not_count() {
    // A restarted node, its endpoint in the start state (up) but not probed yet; its only
    // peer sees the endpoint down. Counted, the start state would tie 1-1 and keep the
    // endpoint up under majority; left out, the peer decides.
    let out = vote(
        vec![probed(&[true])],
        &[check(1, 1)],
        &votes(Quorum::Majority, &[(0, 1)]),
        false,
        &[vec![false]],
    );
    assert_eq!(out[0].endpoints_up, [false]);
    assert_eq!(out[0].state, RegionState::Down);
    // Probed once: a real 1-1 tie, which majority resolves up.
    let out = vote(
        vec![probed(&[true])],
        &[check(1, 1)],
        &votes(Quorum::Majority, &[(0, 1)]),
        false,
        &[vec![true]],
    );
    assert_eq!(out[0].state, RegionState::Up);
}

#[test]
fn a_two_node_tie_resolves_by_the_rule() {
    // This node sees the endpoint up, its one peer down (and the other way round): what
    // each rule makes of one up of two, as the README documents it.
    for (rule, want) in [
        (Quorum::Majority, true),
        (Quorum::Any, true),
        (Quorum::All, false),
        (Quorum::Fraction(0.18), true),
        (Quorum::Fraction(0.5), false),
    ] {
        for (mine, peer_up) in [(true, 0), (false, 1)] {
            let out = vote(
                vec![probed(&[mine])],
                &[check(1, 1)],
                &votes(rule, &[(peer_up, 1)]),
                false,
                &[vec![true]],
            );
            assert_eq!(
                out[0].endpoints_up,
                [want],
                "{rule:?}, this node up: {mine}"
            );
        }
    }
}

#[test]
fn peer_latency_reaches_the_view_of_the_zone_it_names() {
    use crate::health::view::PeerVantage;
    use crate::steer::{GeoPoint, Latency};
    let z = zone(ZONE);
    let label = z.origin.to_string();
    let slow = Latency {
        degradation_ms: 80.0,
        over_limit: false,
    };
    let here = GeoPoint { lat: 1.0, lon: 2.0 };
    let peers = PeerViews {
        location: Some(here),
        vantages: vec![
            PeerVantage {
                node: "ns2".into(),
                location: GeoPoint { lat: 3.0, lon: 4.0 },
                latency: BTreeMap::from([((label.clone(), z.regions[1].name.clone()), slow)]),
            },
            // A node that observes another zone only is no vantage point for this one.
            PeerVantage {
                node: "ns3".into(),
                location: GeoPoint { lat: 5.0, lon: 6.0 },
                latency: BTreeMap::from([(("example.org.".into(), "x".into()), slow)]),
            },
        ],
        ..PeerViews::default()
    };
    let mut health = ZoneHealth::new(&z, &[], &Overrides::default());
    health.set_peers(&peers);
    let (view, _) = health.view(at(Instant::now(), 1));
    assert_eq!(view.location, Some(here));
    assert_eq!(view.vantages.len(), 1, "{view:?}");
    assert_eq!(view.vantages[0].node, "ns2");
    assert_eq!(view.vantages[0].regions[0], None);
    assert_eq!(view.vantages[0].regions[1], Some(slow));
}
