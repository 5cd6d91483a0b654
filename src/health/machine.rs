//! Health state machines: probe results in, up/down states and degradation out. PURE: time is
//! an argument, nothing here sleeps, logs or does I/O.
//!
//! Why: one failed probe must not move traffic (networks drop packets), and one good probe
//! must not bring back a region that is still sick. Trip: an up endpoint goes down after
//! `fall` consecutive failures. Recovery: a down endpoint comes up after `rise` consecutive
//! successes. A region is up while at least `min_healthy` of its endpoints are.
//!
//! Latency: each success carries an RTT. An endpoint keeps an EWMA and a rolling minimum (the
//! RTT of its path with empty queues); their difference is its degradation, independent of
//! how far it is from this nameserver. A region's degradation is the mean over its up
//! endpoints, and is published only when it moves by the hysteresis margin, so that noise
//! never moves traffic; the over-limit flag likewise needs the margin to clear.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::Outcome;
use crate::steer::{RegionHealth, RegionState};
use crate::zone::CheckSpec;

/// Weight of the newest RTT sample in the moving average.
const EWMA_WEIGHT: f64 = 0.3;
/// How far back the rolling minimum looks: long enough to hold a quiet moment.
const MIN_WINDOW: Duration = Duration::from_secs(600);

/// RTT statistics of one endpoint.
#[derive(Debug, Clone, Default)]
pub struct RttStats {
    ewma_ms: Option<f64>,
    last_ms: Option<f64>,
    /// Increasing values with their times: the front is the minimum of the window.
    window: VecDeque<(Instant, f64)>,
}

impl RttStats {
    pub fn add(&mut self, rtt: Duration, now: Instant) {
        let ms = rtt.as_secs_f64() * 1000.0;
        self.last_ms = Some(ms);
        self.ewma_ms = Some(match self.ewma_ms {
            Some(avg) => avg + EWMA_WEIGHT * (ms - avg),
            None => ms,
        });
        while self.window.back().is_some_and(|&(_, v)| v >= ms) {
            self.window.pop_back();
        }
        self.window.push_back((now, ms));
        while self
            .window
            .front()
            .is_some_and(|&(t, _)| now.saturating_duration_since(t) > MIN_WINDOW)
        {
            self.window.pop_front();
        }
    }

    pub fn ewma_ms(&self) -> Option<f64> {
        self.ewma_ms
    }

    pub fn last_ms(&self) -> Option<f64> {
        self.last_ms
    }

    pub fn min_ms(&self) -> Option<f64> {
        self.window.front().map(|&(_, v)| v)
    }

    /// Smoothed RTT above the rolling minimum, in ms (0 before any sample).
    pub fn degradation_ms(&self) -> f64 {
        match (self.ewma_ms, self.min_ms()) {
            (Some(avg), Some(min)) => (avg - min).max(0.0),
            _ => 0.0,
        }
    }
}

/// A state change, for the log line that reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub up: bool,
    pub reason: String,
}

/// One endpoint's probe history.
#[derive(Debug, Clone)]
pub struct EndpointMachine {
    pub up: bool,
    pub consecutive_ok: u32,
    pub consecutive_fail: u32,
    pub last_error: Option<String>,
    pub last_change: Option<Instant>,
    pub probes: u64,
    pub rtt: RttStats,
}

impl EndpointMachine {
    pub fn new(start_up: bool) -> Self {
        EndpointMachine {
            up: start_up,
            consecutive_ok: 0,
            consecutive_fail: 0,
            last_error: None,
            last_change: None,
            probes: 0,
            rtt: RttStats::default(),
        }
    }

    /// Records one probe outcome; returns the transition when the state flips.
    pub fn record(
        &mut self,
        outcome: &Outcome,
        now: Instant,
        rise: u32,
        fall: u32,
    ) -> Option<Transition> {
        self.probes += 1;
        match outcome {
            Outcome::Up { rtt } => {
                self.rtt.add(*rtt, now);
                self.consecutive_ok = self.consecutive_ok.saturating_add(1);
                self.consecutive_fail = 0;
                if !self.up && self.consecutive_ok >= rise {
                    self.up = true;
                    self.last_change = Some(now);
                    return Some(Transition {
                        up: true,
                        reason: format!("{} consecutive successful probes", self.consecutive_ok),
                    });
                }
            }
            Outcome::Down { reason } => {
                self.consecutive_fail = self.consecutive_fail.saturating_add(1);
                self.consecutive_ok = 0;
                self.last_error = Some(reason.clone());
                if self.up && self.consecutive_fail >= fall {
                    self.up = false;
                    self.last_change = Some(now);
                    return Some(Transition {
                        up: false,
                        reason: reason.clone(),
                    });
                }
            }
        }
        None
    }

    /// A result points the other way: the state may be about to change.
    pub fn wavering(&self) -> bool {
        if self.up {
            self.consecutive_fail > 0
        } else {
            self.consecutive_ok > 0
        }
    }
}

/// One region: its endpoints and the filtered values steering sees.
#[derive(Debug, Clone)]
pub struct RegionMachine {
    pub endpoints: Vec<EndpointMachine>,
    pub up: bool,
    pub last_change: Option<Instant>,
    /// Published degradation: moves only by the hysteresis margin.
    pub degradation_ms: f64,
    pub over_limit: bool,
}

impl RegionMachine {
    pub fn new(endpoints: usize, spec: &CheckSpec) -> Self {
        let endpoints: Vec<EndpointMachine> = (0..endpoints)
            .map(|_| EndpointMachine::new(spec.start_up))
            .collect();
        let up = endpoints.iter().filter(|e| e.up).count() >= spec.min_healthy;
        RegionMachine {
            endpoints,
            up,
            last_change: None,
            degradation_ms: 0.0,
            over_limit: false,
        }
    }

    /// Records a probe of endpoint `index`. Returns the endpoint's transition and whether the
    /// region's own state flipped.
    pub fn record(
        &mut self,
        index: usize,
        outcome: &Outcome,
        now: Instant,
        spec: &CheckSpec,
    ) -> (Option<Transition>, bool) {
        let transition = self.endpoints[index].record(outcome, now, spec.rise, spec.fall);
        let up = self.endpoints.iter().filter(|e| e.up).count() >= spec.min_healthy;
        let flipped = up != self.up;
        if flipped {
            self.up = up;
            self.last_change = Some(now);
        }
        self.filter_degradation(spec);
        (transition, flipped)
    }

    /// Mean degradation of the up endpoints that have RTT samples.
    pub fn raw_degradation_ms(&self) -> f64 {
        let samples: Vec<f64> = self
            .endpoints
            .iter()
            .filter(|e| e.up && e.rtt.ewma_ms().is_some())
            .map(|e| e.rtt.degradation_ms())
            .collect();
        if samples.is_empty() {
            0.0
        } else {
            samples.iter().sum::<f64>() / samples.len() as f64
        }
    }

    fn filter_degradation(&mut self, spec: &CheckSpec) {
        let raw = self.raw_degradation_ms();
        if (raw - self.degradation_ms).abs() >= spec.hysteresis_ms {
            self.degradation_ms = raw;
        }
        if !self.over_limit && self.degradation_ms > spec.degradation_limit_ms {
            self.over_limit = true;
        } else if self.over_limit
            && self.degradation_ms < spec.degradation_limit_ms - spec.hysteresis_ms
        {
            self.over_limit = false;
        }
    }

    /// What steering sees of this region at `now`. "In trouble" covers an endpoint whose
    /// results point to a change, and the time after a change for one full rise or fall.
    pub fn view(&self, now: Instant, spec: &CheckSpec) -> RegionHealth {
        let settle = spec.interval * spec.rise.max(spec.fall);
        let recent =
            |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) < settle);
        let in_trouble = self
            .endpoints
            .iter()
            .any(|e| e.wavering() || recent(e.last_change))
            || recent(self.last_change);
        RegionHealth {
            state: if self.up {
                RegionState::Up
            } else {
                RegionState::Down
            },
            endpoints_up: self.endpoints.iter().map(|e| e.up).collect(),
            degradation_ms: self.degradation_ms,
            over_limit: self.over_limit,
            in_trouble,
        }
    }
}

#[cfg(test)]
mod tests;
