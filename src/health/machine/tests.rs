//! Health state machines: rise/fall, RTT statistics, region state, degradation with
//! hysteresis and the view steering reads. Time is an argument: every test builds its
//! instants from one base plus offsets.

use proptest::prelude::*;

use super::*;
use crate::zone::CheckKind;

/// A probed region: interval 1 s, so `settle` is `max(rise, fall)` seconds.
fn spec(rise: u32, fall: u32, min_healthy: usize) -> CheckSpec {
    CheckSpec {
        kind: CheckKind::Tcp { port: 80 },
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        rise,
        fall,
        start_up: true,
        min_healthy,
        degradation_limit_ms: 100.0,
        hysteresis_ms: 10.0,
    }
}

fn ok_ms(ms: f64) -> Outcome {
    Outcome::Up {
        rtt: Duration::from_secs_f64(ms / 1000.0),
    }
}

fn ok() -> Outcome {
    ok_ms(10.0)
}

fn fail(reason: &str) -> Outcome {
    Outcome::Down {
        reason: reason.into(),
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[track_caller]
fn assert_close(got: f64, want: f64) {
    assert!(
        (got - want).abs() < 1e-6,
        "got {got}, want {want} (diff {})",
        got - want
    );
}

// ---- endpoint: rise and fall ----

#[test]
fn falls_after_fall_consecutive_failures() {
    let t0 = Instant::now();
    let mut e = EndpointMachine::new(true);
    for i in 0..2 {
        let t = e.record(&fail("connect refused"), t0 + secs(i as f64), 2, 3);
        assert_eq!(t, None, "failure {} of 3 must not take it down", i + 1);
        assert!(e.up);
    }
    let t = e.record(&fail("connect refused"), t0 + secs(2.0), 2, 3);
    assert_eq!(
        t,
        Some(Transition {
            up: false,
            reason: "connect refused".into()
        })
    );
    assert!(!e.up);
    assert_eq!(e.last_change, Some(t0 + secs(2.0)));
    assert_eq!(e.consecutive_fail, 3);
    assert_eq!(e.probes, 3);
}

#[test]
fn falls_only_after_fall_failures_for_every_fall() {
    for fall in 1..=5 {
        let t0 = Instant::now();
        let mut e = EndpointMachine::new(true);
        for i in 1..fall {
            assert_eq!(
                e.record(&fail("timeout after 2s"), t0 + secs(i as f64), 1, fall),
                None,
                "fall {fall}: down after only {i} failures"
            );
        }
        let t = e.record(&fail("timeout after 2s"), t0 + secs(fall as f64), 1, fall);
        assert_eq!(
            t.map(|t| t.up),
            Some(false),
            "fall {fall}: still up after {fall} failures"
        );
    }
}

#[test]
fn a_success_between_failures_resets_the_fall_count() {
    let t0 = Instant::now();
    let mut e = EndpointMachine::new(true);
    e.record(&fail("status 503"), t0, 2, 3);
    e.record(&fail("status 503"), t0 + secs(1.0), 2, 3);
    e.record(&ok(), t0 + secs(2.0), 2, 3);
    assert_eq!(e.consecutive_fail, 0);
    assert_eq!(e.record(&fail("status 503"), t0 + secs(3.0), 2, 3), None);
    assert_eq!(e.record(&fail("status 503"), t0 + secs(4.0), 2, 3), None);
    assert!(
        e.up,
        "two failures after the success are not three in a row"
    );
    let t = e.record(&fail("status 503"), t0 + secs(5.0), 2, 3);
    assert_eq!(t.map(|t| t.up), Some(false));
}

#[test]
fn rises_after_rise_consecutive_successes() {
    let t0 = Instant::now();
    let mut e = EndpointMachine::new(false);
    assert!(!e.up, "start state down");
    assert_eq!(e.record(&ok(), t0, 2, 3), None);
    assert!(!e.up, "one success of two");
    let t = e
        .record(&ok(), t0 + secs(1.0), 2, 3)
        .expect("second success brings it up");
    assert!(t.up);
    assert!(t.reason.contains("2 consecutive"), "{t:?}");
    assert!(e.up);
    assert_eq!(e.last_change, Some(t0 + secs(1.0)));
    assert_eq!(e.record(&ok(), t0 + secs(2.0), 2, 3), None, "flips once");
}

#[test]
fn a_failure_between_successes_resets_the_rise_count() {
    let t0 = Instant::now();
    let mut e = EndpointMachine::new(false);
    e.record(&ok(), t0, 2, 3);
    e.record(&fail("body mismatch"), t0 + secs(1.0), 2, 3);
    assert_eq!(e.consecutive_ok, 0);
    assert_eq!(e.record(&ok(), t0 + secs(2.0), 2, 3), None);
    assert!(!e.up);
    assert!(e.record(&ok(), t0 + secs(3.0), 2, 3).is_some());
    assert!(e.up);
}

#[test]
fn start_state_is_taken_from_the_argument() {
    let up = EndpointMachine::new(true);
    assert!(up.up);
    let down = EndpointMachine::new(false);
    assert!(!down.up);
    for e in [&up, &down] {
        assert_eq!(e.probes, 0);
        assert_eq!(e.last_error, None);
        assert_eq!(e.last_change, None);
        assert!(!e.wavering(), "no results yet");
    }
}

#[test]
fn failures_while_down_do_not_report_a_transition() {
    let t0 = Instant::now();
    let mut e = EndpointMachine::new(false);
    for i in 0..5 {
        assert_eq!(
            e.record(&fail("connect refused"), t0 + secs(i as f64), 2, 1),
            None
        );
    }
    assert_eq!(e.last_change, None);
}

#[test]
fn last_error_is_kept_across_successes() {
    let t0 = Instant::now();
    let mut e = EndpointMachine::new(true);
    e.record(&fail("connect refused"), t0, 2, 3);
    assert_eq!(e.last_error.as_deref(), Some("connect refused"));
    e.record(&fail("timeout after 2s"), t0 + secs(1.0), 2, 3);
    assert_eq!(e.last_error.as_deref(), Some("timeout after 2s"));
    e.record(&ok(), t0 + secs(2.0), 2, 3);
    assert_eq!(
        e.last_error.as_deref(),
        Some("timeout after 2s"),
        "a success does not erase the last error"
    );
}

#[test]
fn wavering_means_a_result_points_the_other_way() {
    let t0 = Instant::now();
    // (start up, outcomes, wavering after)
    let cases: &[(&str, bool, &[bool], bool)] = &[
        ("up, no results", true, &[], false),
        ("up, one failure", true, &[false], true),
        ("up, failure then success", true, &[false, true], false),
        ("up, successes", true, &[true, true], false),
        ("down, no results", false, &[], false),
        ("down, one success", false, &[true], true),
        ("down, success then failure", false, &[true, false], false),
        ("down, failures", false, &[false, false], false),
        ("just went down", true, &[false, false, false], false),
        ("just came up", false, &[true, true], false),
    ];
    for (what, start, outcomes, want) in cases {
        let mut e = EndpointMachine::new(*start);
        for (i, &good) in outcomes.iter().enumerate() {
            let o = if good { ok() } else { fail("connect refused") };
            e.record(&o, t0 + secs(i as f64), 2, 3);
        }
        assert_eq!(e.wavering(), *want, "{what}");
    }
}

#[test]
fn failures_record_no_rtt() {
    let t0 = Instant::now();
    let mut e = EndpointMachine::new(true);
    e.record(&fail("connect refused"), t0, 2, 3);
    assert_eq!(e.rtt.ewma_ms(), None);
    e.record(&ok_ms(25.0), t0 + secs(1.0), 2, 3);
    assert_close(e.rtt.last_ms().unwrap(), 25.0);
}

// ---- RTT statistics ----

#[test]
fn rtt_stats_are_empty_before_the_first_sample() {
    let s = RttStats::default();
    assert_eq!(s.ewma_ms(), None);
    assert_eq!(s.last_ms(), None);
    assert_eq!(s.min_ms(), None);
    assert_eq!(s.degradation_ms(), 0.0);
}

#[test]
fn ewma_starts_at_the_first_sample_and_weighs_the_newest_by_0_3() {
    let t0 = Instant::now();
    let mut s = RttStats::default();
    // (sample ms, ewma after, min after)
    let steps = [
        (100.0, 100.0, 100.0),
        (200.0, 130.0, 100.0),       // 100 + 0.3 * (200 - 100)
        (100.0, 121.0, 100.0),       // 130 + 0.3 * (100 - 130)
        (50.0, 99.7, 50.0),          // 121 + 0.3 * (50 - 121)
        (50.0, 84.79, 50.0),         // 99.7 + 0.3 * (50 - 99.7)
        (1000.0, 359.353, 50.0),     // 84.79 + 0.3 * (1000 - 84.79)
        (359.353, 359.353, 50.0),    // a sample equal to the average keeps it
        (0.0, 251.547_1, 0.0),       // 359.353 * 0.7
        (251.547_1, 251.547_1, 0.0), // and again
    ];
    for (i, (sample, ewma, min)) in steps.into_iter().enumerate() {
        s.add(
            Duration::from_secs_f64(sample / 1000.0),
            t0 + secs(i as f64),
        );
        assert!(
            (s.ewma_ms().unwrap() - ewma).abs() < 1e-5,
            "step {i}: ewma {:?}, want {ewma}",
            s.ewma_ms()
        );
        assert!((s.last_ms().unwrap() - sample).abs() < 1e-5, "step {i}");
        assert!((s.min_ms().unwrap() - min).abs() < 1e-5, "step {i}");
        assert!(
            (s.degradation_ms() - (ewma - min)).abs() < 1e-5,
            "step {i}: degradation is ewma - min"
        );
    }
    assert_eq!(EWMA_WEIGHT, 0.3);
}

#[test]
fn rolling_minimum_forgets_samples_older_than_600_s() {
    let t0 = Instant::now();
    let mut s = RttStats::default();
    let at = |sec: u64| t0 + Duration::from_secs(sec);
    s.add(Duration::from_millis(10), at(0));
    s.add(Duration::from_millis(50), at(300));
    s.add(Duration::from_millis(30), at(500));
    assert_eq!(s.min_ms(), Some(10.0));
    s.add(Duration::from_millis(40), at(600));
    assert_eq!(s.min_ms(), Some(10.0), "exactly 600 s old is still inside");
    s.add(Duration::from_millis(40), at(601));
    assert_eq!(s.min_ms(), Some(30.0), "10 ms at 0 s has dropped out");
    s.add(Duration::from_millis(60), at(1101));
    assert_eq!(s.min_ms(), Some(40.0), "30 ms at 500 s has dropped out");
    s.add(Duration::from_millis(70), at(5000));
    assert_eq!(s.min_ms(), Some(70.0), "only the newest sample is left");
    assert_eq!(MIN_WINDOW, Duration::from_secs(600));
}

#[test]
fn degradation_is_zero_when_the_average_is_below_a_newer_minimum() {
    // After the old minimum expires the average can sit below the new minimum.
    let t0 = Instant::now();
    let mut s = RttStats::default();
    s.add(Duration::from_millis(10), t0);
    s.add(Duration::from_millis(100), t0 + Duration::from_secs(601));
    assert_close(s.ewma_ms().unwrap(), 37.0);
    assert_eq!(s.min_ms(), Some(100.0));
    assert_eq!(s.degradation_ms(), 0.0);
}

// ---- region ----

#[test]
fn region_starts_in_the_start_state() {
    let s = spec(2, 3, 1);
    let m = RegionMachine::new(2, &s);
    assert!(m.up);
    assert!(m.endpoints.iter().all(|e| e.up));

    let down = CheckSpec {
        start_up: false,
        ..s
    };
    let m = RegionMachine::new(2, &down);
    assert!(!m.up);
    assert!(m.endpoints.iter().all(|e| !e.up));
    assert_eq!(m.degradation_ms, 0.0);
    assert!(!m.over_limit);
}

#[test]
fn region_is_up_while_min_healthy_endpoints_are_up() {
    let t0 = Instant::now();
    let s = spec(1, 1, 2);
    let mut m = RegionMachine::new(3, &s);
    // (endpoint, good, endpoint flips, region up after, region flipped)
    let steps: &[(usize, bool, bool, bool, bool)] = &[
        (0, false, true, true, false), // 2 of 3 up: still up
        (0, false, false, true, false),
        (1, false, true, false, true), // 1 of 3: down, reported once
        (2, false, true, false, false),
        (1, false, false, false, false),
        (0, true, true, false, false), // 1 of 3: still down
        (1, true, true, true, true),   // 2 of 3: up again
        (2, true, true, true, false),
        (2, true, false, true, false),
    ];
    for (i, &(ep, good, ep_flips, up, flipped)) in steps.iter().enumerate() {
        let now = t0 + secs(i as f64);
        let o = if good { ok() } else { fail("connect refused") };
        let (t, f) = m.record(ep, &o, now, &s);
        assert_eq!(t.is_some(), ep_flips, "step {i}: endpoint transition {t:?}");
        assert_eq!(m.up, up, "step {i}: region up");
        assert_eq!(f, flipped, "step {i}: region flipped");
        if flipped {
            assert_eq!(m.last_change, Some(now), "step {i}");
        }
    }
}

#[test]
fn endpoint_transition_carries_the_probe_error() {
    let t0 = Instant::now();
    let s = spec(2, 1, 1);
    let mut m = RegionMachine::new(1, &s);
    let (t, flipped) = m.record(0, &fail("connect refused"), t0, &s);
    assert_eq!(
        t,
        Some(Transition {
            up: false,
            reason: "connect refused".into()
        })
    );
    assert!(flipped);
    assert_eq!(
        m.endpoints[0].last_error.as_deref(),
        Some("connect refused")
    );
}

#[test]
fn raw_degradation_is_the_mean_over_up_endpoints_with_samples() {
    let t0 = Instant::now();
    let s = CheckSpec {
        hysteresis_ms: 0.0,
        ..spec(1, 1, 1)
    };
    let mut m = RegionMachine::new(4, &s);
    assert_eq!(m.raw_degradation_ms(), 0.0, "no samples yet");
    // Endpoint 0: 10 then 40 -> ewma 19, min 10: degradation 9.
    m.record(0, &ok_ms(10.0), t0, &s);
    m.record(0, &ok_ms(40.0), t0 + secs(1.0), &s);
    // Endpoint 1: 20 twice: degradation 0.
    m.record(1, &ok_ms(20.0), t0 + secs(2.0), &s);
    m.record(1, &ok_ms(20.0), t0 + secs(3.0), &s);
    // Endpoint 2: up, never probed: not counted. Endpoint 3: degradation 30, then down.
    m.record(3, &ok_ms(100.0), t0 + secs(4.0), &s);
    m.record(3, &ok_ms(200.0), t0 + secs(5.0), &s);
    assert_close(m.raw_degradation_ms(), (9.0 + 0.0 + 30.0) / 3.0);
    m.record(3, &fail("timeout after 2s"), t0 + secs(6.0), &s);
    assert_close(m.raw_degradation_ms(), 4.5);
    assert_close(m.degradation_ms, 4.5);
    m.record(0, &fail("timeout after 2s"), t0 + secs(7.0), &s);
    m.record(1, &fail("timeout after 2s"), t0 + secs(8.0), &s);
    assert_eq!(m.raw_degradation_ms(), 0.0, "no up endpoint has samples");
}

/// Adds to endpoint 0 the one RTT sample that moves its degradation to `target` ms.
fn drive_to(m: &mut RegionMachine, target: f64, now: Instant, spec: &CheckSpec) {
    let stats = &m.endpoints[0].rtt;
    let (avg, min) = (stats.ewma_ms().unwrap(), stats.min_ms().unwrap());
    let sample = avg + (min + target - avg) / EWMA_WEIGHT;
    assert!(sample >= min, "{target} is not reachable in one sample");
    m.record(0, &ok_ms(sample), now, spec);
    assert!(
        (m.raw_degradation_ms() - target).abs() < 1e-4,
        "raw {} != target {target}",
        m.raw_degradation_ms()
    );
}

#[test]
fn published_degradation_moves_only_by_the_hysteresis_and_over_limit_needs_it_to_clear() {
    // Limit 100 ms, hysteresis 10 ms.
    // (raw degradation, published after, over limit after)
    let steps: &[(f64, f64, bool)] = &[
        (5.0, 0.0, false),    // noise: not published
        (9.5, 0.0, false),    // still inside the margin
        (10.5, 10.5, false),  // moved by the margin: published
        (15.0, 10.5, false),  // 4.5 from the published value
        (50.0, 50.0, false),  //
        (95.0, 95.0, false),  //
        (100.0, 95.0, false), // at the limit and inside the margin
        (104.0, 95.0, false), // above the limit, but not published
        (106.0, 106.0, true), // published above the limit: over
        (97.0, 106.0, true),  // below the limit, inside the margin
        (95.5, 95.5, true),   // published below the limit, above limit - hysteresis
        (91.0, 95.5, true),   // not published
        (89.0, 95.5, true),   // below limit - hysteresis but not published
        (85.0, 85.0, false),  // published below 90: clears
        (94.0, 85.0, false),  // not published
        (99.9, 99.9, false),  // published just below the limit
        (101.0, 99.9, false), // not published
        (111.0, 111.0, true), // over again
        (100.5, 100.5, true), // published, still above the limit
        (90.3, 90.3, true),   // published, just above limit - hysteresis
        (80.0, 80.0, false),  // clears
    ];
    let t0 = Instant::now();
    let s = spec(1, 3, 1);
    let mut m = RegionMachine::new(1, &s);
    m.record(0, &ok_ms(20.0), t0, &s);
    for (i, &(raw, published, over)) in steps.iter().enumerate() {
        drive_to(&mut m, raw, t0 + secs(1.0 + i as f64), &s);
        assert!(
            (m.degradation_ms - published).abs() < 1e-4,
            "step {i} (raw {raw}): published {}, want {published}",
            m.degradation_ms
        );
        assert_eq!(m.over_limit, over, "step {i} (raw {raw})");
        let v = m.view(t0 + secs(1.0 + i as f64), &s);
        assert_eq!(v.degradation_ms, m.degradation_ms, "step {i}: view");
        assert_eq!(v.over_limit, over, "step {i}: view");
    }
}

#[test]
fn degradation_of_a_region_whose_endpoints_all_go_down_is_published_as_zero() {
    let t0 = Instant::now();
    let s = spec(1, 1, 1);
    let mut m = RegionMachine::new(1, &s);
    m.record(0, &ok_ms(20.0), t0, &s);
    drive_to(&mut m, 50.0, t0 + secs(1.0), &s);
    assert_close(m.degradation_ms, 50.0);
    m.record(0, &fail("connect refused"), t0 + secs(2.0), &s);
    assert_eq!(m.degradation_ms, 0.0);
}

#[test]
fn view_reports_state_and_endpoints_up() {
    let t0 = Instant::now();
    let s = spec(1, 1, 1);
    let mut m = RegionMachine::new(3, &s);
    let v = m.view(t0, &s);
    assert_eq!(v.state, RegionState::Up);
    assert_eq!(v.endpoints_up, [true, true, true]);
    m.record(1, &fail("connect refused"), t0, &s);
    let v = m.view(t0, &s);
    assert_eq!(v.state, RegionState::Up);
    assert_eq!(v.endpoints_up, [true, false, true]);
    m.record(0, &fail("connect refused"), t0, &s);
    m.record(2, &fail("connect refused"), t0, &s);
    let v = m.view(t0, &s);
    assert_eq!(v.state, RegionState::Down);
    assert_eq!(v.endpoints_up, [false, false, false]);
}

#[test]
fn in_trouble_while_wavering_and_for_one_settle_time_after_a_change() {
    // interval 1 s, rise 2, fall 3: settle time 3 s.
    let t0 = Instant::now();
    let s = spec(2, 3, 1);
    let at = |sec: f64| t0 + secs(sec);
    let mut m = RegionMachine::new(2, &s);
    assert!(!m.view(at(0.0), &s).in_trouble, "fresh region");

    m.record(0, &fail("connect refused"), at(0.0), &s);
    assert!(m.view(at(0.0), &s).in_trouble, "one failure while up");
    assert!(
        m.view(at(100.0), &s).in_trouble,
        "wavering lasts until a result"
    );
    m.record(0, &ok(), at(1.0), &s);
    assert!(!m.view(at(1.0), &s).in_trouble, "back to steady");

    for t in [2.0, 3.0, 4.0] {
        m.record(0, &fail("connect refused"), at(t), &s);
    }
    assert!(!m.endpoints[0].up);
    assert!(!m.endpoints[0].wavering());
    assert!(m.view(at(4.0), &s).in_trouble, "just went down");
    assert!(m.view(at(6.999), &s).in_trouble, "inside 3 s of the change");
    assert!(!m.view(at(7.0), &s).in_trouble, "3 s after the change");

    m.record(0, &ok(), at(8.0), &s);
    assert!(m.view(at(8.0), &s).in_trouble, "one success while down");
    m.record(0, &ok(), at(9.0), &s);
    assert!(m.endpoints[0].up);
    assert!(m.view(at(11.9), &s).in_trouble, "just came up");
    assert!(!m.view(at(12.0), &s).in_trouble);
}

#[test]
fn in_trouble_after_a_region_flip() {
    let t0 = Instant::now();
    let s = spec(2, 1, 1);
    let mut m = RegionMachine::new(1, &s);
    let (_, flipped) = m.record(0, &fail("connect refused"), t0, &s);
    assert!(flipped);
    let v = m.view(t0 + secs(1.0), &s);
    assert_eq!(v.state, RegionState::Down);
    assert!(v.in_trouble);
    // settle = 1 s * max(2, 1)
    assert!(m.view(t0 + secs(1.999), &s).in_trouble);
    assert!(!m.view(t0 + secs(2.0), &s).in_trouble);
}

// ---- properties ----

/// What the rise/fall rule says, written out independently of the machine.
struct Reference {
    up: bool,
    run_ok: u32,
    run_fail: u32,
}

impl Reference {
    /// Returns whether the state changes.
    fn step(&mut self, good: bool, rise: u32, fall: u32) -> bool {
        if good {
            self.run_ok += 1;
            self.run_fail = 0;
        } else {
            self.run_fail += 1;
            self.run_ok = 0;
        }
        let next = if self.up {
            self.run_fail < fall
        } else {
            self.run_ok >= rise
        };
        let changed = next != self.up;
        self.up = next;
        changed
    }
}

/// One probe result of a region: endpoint, RTT in ms or a failure, seconds since the last.
fn arb_event(endpoints: usize) -> impl Strategy<Value = (usize, Option<f64>, u64)> {
    (
        0..endpoints,
        proptest::option::weighted(0.8, 1.0f64..500.0),
        prop_oneof![4 => 0u64..10, 1 => 0u64..400],
    )
}

proptest! {
    #[test]
    fn state_changes_only_after_rise_successes_or_fall_failures(
        start_up in any::<bool>(),
        rise in 1u32..6,
        fall in 1u32..6,
        outcomes in proptest::collection::vec(any::<bool>(), 0..80),
    ) {
        let t0 = Instant::now();
        let mut e = EndpointMachine::new(start_up);
        let mut r = Reference { up: start_up, run_ok: 0, run_fail: 0 };
        for (i, &good) in outcomes.iter().enumerate() {
            let was_up = e.up;
            let o = if good { ok() } else { fail("connect refused") };
            let t = e.record(&o, t0 + secs(i as f64), rise, fall);
            let changed = r.step(good, rise, fall);
            prop_assert_eq!(e.up, r.up, "step {}", i);
            prop_assert_eq!(t.is_some(), changed, "step {}", i);
            prop_assert_eq!(e.up != was_up, changed, "step {}", i);
            if let Some(t) = t {
                prop_assert_eq!(t.up, e.up);
                if !t.up {
                    prop_assert_eq!(t.reason, "connect refused");
                    prop_assert_eq!(r.run_fail, fall, "went down after exactly fall failures");
                } else {
                    prop_assert_eq!(r.run_ok, rise, "came up after exactly rise successes");
                }
                prop_assert_eq!(e.last_change, Some(t0 + secs(i as f64)));
            }
            prop_assert_eq!(e.probes, i as u64 + 1);
        }
    }

    #[test]
    fn no_switch_inside_the_hysteresis_margin_and_never_negative(
        endpoints in 1usize..4,
        hysteresis in 0.0f64..30.0,
        limit in 30.0f64..150.0,
        events in proptest::collection::vec(arb_event(3), 0..120),
    ) {
        let s = CheckSpec {
            hysteresis_ms: hysteresis,
            degradation_limit_ms: limit,
            ..spec(2, 2, 1)
        };
        let t0 = Instant::now();
        let mut now = t0;
        let mut m = RegionMachine::new(endpoints, &s);
        for (i, &(ep, rtt, gap)) in events.iter().enumerate() {
            let ep = ep % endpoints;
            now += Duration::from_secs(gap);
            let before = m.degradation_ms;
            let o = match rtt {
                Some(ms) => ok_ms(ms),
                None => fail("timeout after 2s"),
            };
            m.record(ep, &o, now, &s);
            let after = m.degradation_ms;
            let raw = m.raw_degradation_ms();
            if after != before {
                prop_assert!(
                    (after - before).abs() >= hysteresis,
                    "step {}: published moved {} -> {} inside the margin {}",
                    i, before, after, hysteresis
                );
                prop_assert_eq!(after, raw, "step {}: a move publishes the raw value", i);
            }
            prop_assert!(
                (after - raw).abs() < hysteresis || after == raw,
                "step {}: published {} lags raw {} by the margin {} or more",
                i, after, raw, hysteresis
            );
            prop_assert!(after >= 0.0, "step {}: published {}", i, after);
            prop_assert!(raw >= 0.0, "step {}: raw {}", i, raw);
            for e in &m.endpoints {
                prop_assert!(e.rtt.degradation_ms() >= 0.0);
            }
            if m.over_limit {
                prop_assert!(after >= limit - hysteresis, "step {}: over at {}", i, after);
            } else {
                prop_assert!(after <= limit, "step {}: not over at {}", i, after);
            }
            let v = m.view(now, &s);
            prop_assert_eq!(v.degradation_ms, after);
            prop_assert_eq!(v.over_limit, m.over_limit);
            prop_assert_eq!(v.state == RegionState::Up, m.up);
            prop_assert_eq!(
                m.up,
                m.endpoints.iter().filter(|e| e.up).count() >= s.min_healthy
            );
        }
    }

    #[test]
    fn rtt_stats_match_a_brute_force_window(
        samples in proptest::collection::vec((0.0f64..1000.0, 0u64..300), 1..60),
    ) {
        let t0 = Instant::now();
        let mut s = RttStats::default();
        let mut seen: Vec<(Instant, f64)> = Vec::new();
        let mut now = t0;
        let mut ewma: Option<f64> = None;
        for &(ms, gap) in &samples {
            now += Duration::from_secs(gap);
            let rtt = Duration::from_secs_f64(ms / 1000.0);
            let ms = rtt.as_secs_f64() * 1000.0;
            s.add(rtt, now);
            seen.push((now, ms));
            ewma = Some(ewma.map_or(ms, |a| a + 0.3 * (ms - a)));
            let min = seen
                .iter()
                .filter(|&&(t, _)| now.duration_since(t) <= Duration::from_secs(600))
                .map(|&(_, v)| v)
                .fold(f64::INFINITY, f64::min);
            prop_assert_eq!(s.min_ms(), Some(min));
            prop_assert!((s.ewma_ms().unwrap() - ewma.unwrap()).abs() < 1e-9);
            prop_assert_eq!(s.last_ms(), Some(ms));
            prop_assert!(s.degradation_ms() >= 0.0);
            prop_assert!((s.degradation_ms() - (ewma.unwrap() - min).max(0.0)).abs() < 1e-9);
        }
    }
}
