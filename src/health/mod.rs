//! CONTROL PLANE: active health probes, their state machines, and the view steering reads.
//!
//! [`probe`] runs one check against one endpoint; [`machine`] turns results into up/down
//! states (rise/fall), RTT statistics and degradation; [`view`] merges a zone's probe states,
//! its isolation guard and the operator overrides into the [`crate::steer::HealthView`]
//! steering reads. Those two are pure, with time as an argument. [`monitor`] schedules the
//! probes on the control plane's runtime, reads the clocks once per event, and publishes a
//! new serving state when a view changes. The DNS fast path never waits on any of it.
//!
//! The checks themselves are zone configuration ([`crate::zone::CheckSpec`]): this module
//! imports `zone`, never the other way round.

pub mod machine;
pub mod monitor;
pub mod probe;
pub mod view;

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
