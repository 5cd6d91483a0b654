//! CONTROL PLANE: active health probes, their state machines, and the view steering reads.
//!
//! [`probe`] runs one check against one endpoint; [`machine`] turns results into up/down
//! states (rise/fall), RTT statistics and degradation, with no I/O and time as an argument;
//! [`monitor`] schedules probes on their own runtime and publishes a new
//! [`crate::steer::HealthView`] into the serving state when something steering sees changes.
//! The DNS fast path never waits on any of it.

pub mod machine;
pub mod monitor;
pub mod probe;

use std::time::Duration;

use serde::Serialize;

/// A probe result as the state machine sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Outcome {
    /// Passed, with the round-trip time measured (TCP connect, or time to response headers).
    Up { rtt: Duration },
    /// Failed, with a reason an operator reads at 3 a.m.
    Down { reason: String },
}
