//! Meridian: an authoritative DNS server that steers each client to the nearest healthy region.
//!
//! A query arrives at [`dns::server`] (one `SO_REUSEPORT` UDP loop per core, TCP per
//! connection) and goes to [`dns::handle`], the fast path. It loads the current
//! [`serving::ServingState`] once and answers from it: [`zone`] finds the zone and walks the
//! name (referrals, CNAMEs, wildcards, negative answers); for a steered name, [`geo`] locates
//! the client (ECS subnet, else the resolver) and [`steer::decide`], a pure function, picks the
//! nearest up region. The answer carries an ECS scope equal to the GeoIP network that decided.
//!
//! Configuration is read once by [`config`]; zone files are checked in full by [`zone::load_dir`]
//! before anything serves. [`cli`] wires the three commands: `serve`, `check` and `route`.

pub mod admin;
pub mod cli;
pub mod config;
pub mod control;
pub mod dns;
pub mod geo;
pub mod health;
pub mod metrics;
pub mod route;
pub mod serving;
pub mod state;
pub mod steer;
pub mod zone;
