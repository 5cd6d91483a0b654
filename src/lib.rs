//! Meridian: an authoritative DNS server that steers each client to the nearest healthy region.
//!
//! A query arrives at [`dns::server`] (one `SO_REUSEPORT` UDP socket and blocking thread per
//! core, TCP per connection) and goes to [`dns::handle`], the fast path: an ordinary query is
//! answered from cached response bytes; anything else, and every first query, takes the
//! general path, which says with its bytes what they vary on, so the cache can reuse them.
//! Both read messages through one reader and frame responses through one writer, and load
//! the current [`serving::Snapshot`] once: [`zone`] finds the zone and walks the name
//! (referrals, CNAMEs, wildcards, negative answers); for a steered name,
//! [`serving::answer`] locates the client with [`geo`] (ECS subnet, else the resolver) and
//! [`steer::decide`], a pure function, ranks the regions by estimated RTT and health; with
//! DO=1, a zone with keys ([`zone::dnssec`], rolled by [`zone::rollover`]) has its answer
//! signed online. Ahead of
//! queries, [`serving::compiled`] turns each steered name into runs of addresses answered by
//! one region (from the location table [`geo::table`] walked once per database), so a client
//! network never seen before costs one binary search, and its ECS scope is the widest block
//! around it inside its run. What outlives snapshots (the cookie secret, rate
//! limiting, the metrics registry) is handed to the server at start as [`dns::Services`].
//!
//! The control plane runs on its own thread ([`control`]), beside the steering compiler's:
//! [`health`] probes endpoints and
//! publishes what steering sees; [`admin`] serves the API, metrics ([`metrics`]) and the
//! console, whose map of where clients go ([`flows`]) is read once a second from rings the
//! query threads write; operator overrides persist in a journal ([`state`]). [`latency`] aggregates
//! the RTTs clients measure to each region (posted to the admin API by frontends and browser
//! beacons) per client network and publishes them into the snapshot, where they replace the
//! distance estimate for the networks they cover. [`spill`] takes load reports per region and,
//! once a period, has each region over its capacity shed a share of its clients to their
//! next-nearest region with headroom (the pure controller is [`steer::spill`]), published
//! into the snapshot like health. With a `[cluster]`
//! section, [`cluster`] shares overrides and probe observations with the other nameservers
//! through etcd. None of it takes a lock the fast path waits on: a change builds a new
//! snapshot and swaps it in.
//!
//! Configuration is read once by [`config`]; zone files are checked in full by
//! [`zone::load_dir`] before anything serves; zone files and GeoIP databases are read through
//! [`files`], which refuses anything but a regular file instead of waiting on it; [`text`]
//! escapes outside text wherever a person reads it. [`cli`] wires the commands: `serve`,
//! `check`, `dnssec` and `route` (whose explanation lives in
//! [`route`]). `ARCHITECTURE.md` records why the code is cut this way.

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod dns;
pub mod files;
pub mod flows;
pub mod geo;
pub mod health;
pub mod latency;
pub mod metrics;
pub mod prefetch;
pub mod route;
pub mod serving;
pub mod spill;
pub mod state;
pub mod steer;
pub mod text;
pub mod zone;
