//! CONTROL: the control plane's own runtime thread: health probes, the admin API, reloads on
//! SIGHUP and traffic sampling; and the steering compiler's thread. It touches the DNS fast
//! path only by swapping the serving state, so nothing here can make a query wait.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::sync::{Mutex, oneshot};
use tracing::{debug, error, info, warn};

use crate::admin::tls::AdminCert;
use crate::admin::{self, Admin, auth::Tokens};
use crate::cluster::Cluster;
use crate::health::monitor;
use crate::latency::feed::Feed;
use crate::metrics::Metrics;
use crate::serving::SharedSnapshot;
use crate::state::Journal;

/// What the control plane needs from `serve`.
pub struct Setup {
    pub state: SharedSnapshot,
    /// The registry the DNS server counts into; probes, reloads and the API add to it.
    pub metrics: Arc<Metrics>,
    pub journal: Journal,
    pub tokens: Tokens,
    pub zones_dir: PathBuf,
    /// Where zone keys are by default (DNSSEC), read again at each reload.
    pub state_dir: PathBuf,
    pub admin_listener: std::net::TcpListener,
    pub ready: Arc<AtomicBool>,
    /// GeoIP database files to watch for replacement (none: the embedded database), as they
    /// were when the serving database was opened from them.
    pub geoip: GeoFiles,
    /// The admin listener's certificate: HTTPS only when given.
    pub admin_cert: Option<Arc<AdminCert>>,
    /// Most admin connections at once ([`admin::listen::connection_cap`]).
    pub admin_connections: usize,
    /// Host names the admin API answers to besides localhost and IP literals.
    pub admin_hosts: Vec<String>,
    /// `[cluster]`: overrides and observations shared through etcd.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// The latency map's intake, its map loaded from the state directory.
    pub latency: Arc<Feed>,
    /// `[spill]`: the spillover controller's settings.
    pub spill: crate::spill::SpillConfig,
}

/// The error building a tokio runtime would panic on. The first runtime of a process takes six
/// descriptors (epoll and its clone, an eventfd, the signal driver's socket pair and a clone);
/// tokio returns the error when the others fail, but panics when the socket pair does.
pub fn room_for_a_runtime() -> std::io::Result<()> {
    let held = (0..6)
        .map(|_| std::fs::File::open("/dev/null"))
        .collect::<std::io::Result<Vec<_>>>()?;
    drop(held);
    Ok(())
}

/// How much nicer than the serving threads the threads beside them run: the control plane,
/// the steering compiler, the pre-signer. Sharing a core with a serving thread, their bursts
/// (a second's flow sampling, a compile, a reload) wait while queries are waiting, instead of
/// holding the queries behind them; on a saturated core they still get about a quarter of it.
const BACKGROUND_NICE: libc::c_int = 5;

/// The niceness the process started with: the serving threads'.
static BASE_NICE: std::sync::OnceLock<libc::c_int> = std::sync::OnceLock::new();

/// Makes the calling thread a background one: [`BACKGROUND_NICE`] nicer than the process
/// started, whatever it inherited (a thread spawned by a background thread starts as nice
/// as its parent, and must not end up nicer still).
pub fn run_in_background() {
    // Linux keeps a niceness per thread: these calls read and set the caller's alone.
    // SAFETY: a system call on the calling thread; no memory is passed.
    let base = *BASE_NICE.get_or_init(|| unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) });
    let nicer = (base + BACKGROUND_NICE).min(19);
    // SAFETY: as above.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nicer) } != 0 {
        let error = std::io::Error::last_os_error();
        warn!(%error, "cannot lower a control thread's priority; it competes with queries");
    }
}

/// What `serve` keeps of the control plane it started.
pub struct Control {
    /// Asks the traffic sampler for its last save of the rate chart; it answers once saved.
    sampler: oneshot::Sender<oneshot::Sender<()>>,
}

/// How long shutdown waits for the rate chart's last save.
const RATES_LAST_SAVE_WAIT: Duration = Duration::from_secs(5);

impl Control {
    /// Stops the traffic sampler after it saved the rate chart a last time: the sampler is
    /// the file's one writer, so no save can run beside this one.
    pub async fn stop_sampling(self) {
        let (done, saved) = oneshot::channel();
        if self.sampler.send(done).is_err() {
            warn!("the traffic sampler is gone: the rate chart is not saved at shutdown");
            return;
        }
        match tokio::time::timeout(RATES_LAST_SAVE_WAIT, saved).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => warn!("the traffic sampler ended before its last save of the rate chart"),
            Err(_) => warn!(
                wait_s = RATES_LAST_SAVE_WAIT.as_secs(),
                "the rate chart's last save did not finish in time; stopping without it"
            ),
        }
    }
}

/// Starts the control plane on its own thread. Returns once the start states of every
/// region (probes' start states with the journaled overrides) serve.
pub fn start(setup: Setup) -> std::io::Result<Control> {
    room_for_a_runtime()?;
    // Read here, on the thread that starts everything, before any thread is made nicer.
    // SAFETY: a system call on the calling thread; no memory is passed.
    BASE_NICE.get_or_init(|| unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("meridian-control")
        .on_thread_start(run_in_background)
        .enable_all()
        .build()?;
    let admin_addr: SocketAddr = setup.admin_listener.local_addr()?;
    setup.admin_listener.set_nonblocking(true)?;
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (sampler, sampler_stop) = oneshot::channel();
    let compiled = setup.state.clone();
    std::thread::Builder::new()
        .name("meridian-compile".into())
        .spawn(move || {
            run_in_background();
            compile_steering(&compiled)
        })?;
    std::thread::Builder::new()
        .name("meridian-control".into())
        .spawn(move || {
            run_in_background();
            runtime.block_on(async move {
                let journal = Arc::new(Mutex::new(setup.journal));
                // In a cluster, the overrides (and peers) come from etcd before anything
                // serves, or from the journal when etcd is away.
                let spill = Arc::new(crate::spill::Spill::new(setup.spill));
                let cluster = setup.cluster.map(|c| {
                    Cluster::new(
                        c,
                        setup.state.clone(),
                        setup.metrics.clone(),
                        journal.clone(),
                        setup.latency.clone(),
                        spill.clone(),
                    )
                });
                let overrides = match &cluster {
                    Some(c) => c.warm_start().await,
                    None => journal.lock().await.overrides().clone(),
                };
                // The state changes the dashboard lists, from before this start; without the
                // file they are still listed, only not kept.
                let kept = match crate::state::EventLog::open(&setup.state_dir, monitor::MAX_EVENTS)
                {
                    Ok(kept) => Some(kept),
                    Err(e) => {
                        error!(error = %e, "cannot keep state changes across restarts");
                        None
                    }
                };
                let monitor =
                    monitor::spawn(setup.state.clone(), setup.metrics.clone(), &overrides, kept);
                if let Some(c) = &cluster {
                    c.spawn(monitor.clone()).await;
                }
                let probed = monitor.details.clone();
                let admin = Arc::new(Admin {
                    spill: spill.clone(),
                    state: setup.state.clone(),
                    metrics: setup.metrics.clone(),
                    monitor,
                    journal,
                    cluster,
                    tokens: setup.tokens,
                    zones_dir: setup.zones_dir,
                    state_dir: setup.state_dir,
                    ready: setup.ready,
                    reads_need_token: !admin_addr.ip().is_loopback(),
                    hosts: setup.admin_hosts,
                    latency: setup.latency.clone(),
                    reloads: Mutex::new(()),
                    changes: tokio::sync::watch::Sender::new(0),
                });
                // SIGHUP is caught before start returns: tests and init scripts send it as soon
                // as the server says it listens, and the default action would end the process.
                let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
                let _ = started_tx.send(());
                tokio::spawn(watch_geoip(setup.state.clone(), setup.geoip));
                tokio::spawn(watch_keysets(admin.clone()));
                tokio::spawn(sample_traffic(
                    setup.metrics,
                    setup.state.clone(),
                    admin.state_dir.clone(),
                    sampler_stop,
                ));
                tokio::spawn(publish_latency(setup.latency, setup.state.clone(), probed));
                tokio::spawn(crate::spill::run(
                    spill,
                    setup.state.clone(),
                    admin.metrics.clone(),
                ));
                tokio::spawn(reload_on_sighup(
                    hup,
                    admin.clone(),
                    setup.admin_cert.clone(),
                ));
                let listener = match tokio::net::TcpListener::from_std(setup.admin_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        error!(error = %e, "admin listener unusable");
                        return;
                    }
                };
                admin::serve(listener, admin, setup.admin_cert, setup.admin_connections).await;
            })
        })?;
    started_rx
        .recv()
        .map_err(|_| std::io::Error::other("the control plane did not start"))?;
    Ok(Control { sampler })
}

/// How often the compiler looks for a snapshot with zones to compile. The snapshot has many
/// writers (reloads, probes, overrides, GeoIP replacement); a look costs one atomic load.
const COMPILE_CHECK: Duration = Duration::from_millis(20);

/// Forever: compiles the steering of every zone the current snapshot holds uncompiled, on
/// this thread (a city database takes seconds the first time), and swaps each in if its
/// inputs are still the serving ones; a newer change is compiled at the next look. A zone's
/// runs are installed first; its measured networks (decided from the serving latency map)
/// are laid over them in a second step, and again whenever another map is published, while
/// the runs keep serving. Each zone is compiled from the snapshot current when its turn
/// comes, and each look starts one zone further on, so that a map published while one zone
/// is decided delays the others by no more than that zone.
fn compile_steering(state: &SharedSnapshot) {
    // The database whose location table failed to build, so as to say so once.
    let mut failed: Option<Arc<crate::geo::GeoDb>> = None;
    // The latency map whose measured networks could not be decided (they stay direct).
    let mut unmeasured: Option<Arc<crate::latency::LatencyTable>> = None;
    let mut first = 0;
    loop {
        let snap = state.load_full();
        let count = snap.steering.len();
        if !(0..count).any(|i| pending(&snap, i, &unmeasured))
            || failed.as_ref().is_some_and(|f| Arc::ptr_eq(f, &snap.geo))
        {
            std::thread::sleep(COMPILE_CHECK);
            continue;
        }
        first = (first + 1) % count;
        for index in (first..count).chain(0..first) {
            let snap = state.load_full();
            if snap.steering.len() != count {
                break;
            }
            if !pending(&snap, index, &unmeasured) {
                continue;
            }
            let zone = snap.zones.by_index()[index];
            let view = snap.health(zone);
            let started = std::time::Instant::now();
            let table = || {
                let walked = snap.geo.has_table();
                let built = std::time::Instant::now();
                let table = snap.geo.table().map_err(str::to_owned)?;
                if !walked {
                    info!(
                        geoip = %snap.geo.name(),
                        networks = table.networks,
                        ranges = table.v4.len() + table.v6.len(),
                        places = table.places.len(),
                        mib = table.bytes() >> 20,
                        ms = built.elapsed().as_millis() as u64,
                        "GeoIP location table built"
                    );
                }
                Ok(table)
            };
            let old = snap.steering[index].clone();
            let built = match &old {
                Some(s) => s.remeasured(zone, view, &snap.latency, table),
                None => crate::serving::compiled::compile_runs(zone, view, table),
            };
            let compiled = match built {
                Ok(c) => Arc::new(c),
                Err(e) if old.is_some() => {
                    error!(
                        zone = %zone.origin,
                        error = %e,
                        "the latency map's measured networks cannot be compiled: they take the \
                         direct path (answers stay exact) until the next map"
                    );
                    unmeasured = Some(snap.latency.clone());
                    continue;
                }
                Err(e) => {
                    error!(
                        geoip = %snap.geo.name(),
                        error = %e,
                        "GeoIP database cannot be walked: steering stays uncompiled \
                         (answers stay exact; ECS scopes stay at the database networks)"
                    );
                    failed = Some(snap.geo.clone());
                    break;
                }
            };
            let mut installed = false;
            state.rcu(|cur| {
                installed = match (&old, &cur.steering[index]) {
                    // The same runs: only the latency map may have changed since.
                    (Some(old), Some(now)) => {
                        Arc::ptr_eq(old, now) && Arc::ptr_eq(&cur.latency, &snap.latency)
                    }
                    (None, None) => {
                        Arc::ptr_eq(&cur.zones, &snap.zones)
                            && Arc::ptr_eq(&cur.geo, &snap.geo)
                            && cur.health(zone) == view
                    }
                    _ => false,
                };
                if installed {
                    Arc::new(cur.with_steering(index, compiled.clone()))
                } else {
                    cur.clone()
                }
            });
            if !installed {
                continue;
            }
            let ms = started.elapsed().as_millis() as u64;
            if old.is_none() {
                info!(
                    zone = %zone.origin,
                    names = zone.steered.len(),
                    kib = compiled.bytes() >> 10,
                    ms,
                    "steering compiled"
                );
            } else {
                let m = compiled.measured_stats();
                info!(
                    zone = %zone.origin,
                    networks = m.networks,
                    names = m.names,
                    left_direct = m.direct,
                    kib = m.bytes >> 10,
                    bytes_per_network_name = format!("{:.1}", m.bytes_per_network_name()),
                    ms,
                    "measured networks compiled"
                );
            }
        }
    }
}

/// Whether zone `i` of `snap` waits for the compiler: uncompiled, or its measured networks
/// decided from another map than the serving one (unless deciding them from it failed).
fn pending(
    snap: &crate::serving::Snapshot,
    i: usize,
    unmeasured: &Option<Arc<crate::latency::LatencyTable>>,
) -> bool {
    match &snap.steering[i] {
        None => true,
        Some(s) => {
            !s.measures(&snap.latency)
                && unmeasured
                    .as_ref()
                    .is_none_or(|u| !Arc::ptr_eq(u, &snap.latency))
        }
    }
}

/// Most seconds between two publications made without new samples.
const AGE_MAX_SECS: f64 = 300.0;

/// Publish intervals between two publications made without new samples, so that estimates
/// age out of steering even when no feed posts: a tenth of the half-life (or of
/// `max-age-secs`, if shorter), at most [`AGE_MAX_SECS`], at least one interval. Each
/// publication has every measured network decided anew, so a short `publish-secs` alone
/// must not bring one every few seconds.
fn age_every(config: &crate::latency::config::LatencyConfig) -> u64 {
    let horizon = config
        .settings
        .half_life_secs
        .min(config.max_age_secs as f64);
    let secs = (horizon / 10.0).min(AGE_MAX_SECS);
    ((secs / config.publish_secs as f64) as u64).max(1)
}

/// Every publish interval: the latency map into the serving snapshot, when it has new
/// samples (or, every [`age_every`] intervals, to age); every save interval: to the state
/// directory; at the first interval and every share interval: to the cluster, when it
/// changed.
async fn publish_latency(
    feed: Arc<Feed>,
    state: SharedSnapshot,
    probed: Arc<arc_swap::ArcSwap<monitor::Details>>,
) {
    let publish = Duration::from_secs(feed.config.publish_secs);
    let save_every = (feed.config.save_secs / feed.config.publish_secs).max(1);
    let share_every = (feed.config.share_secs / feed.config.publish_secs).max(1);
    let age_every = age_every(&feed.config);
    let mut tick = tokio::time::interval(publish);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 1u64.. {
        tick.tick().await;
        let now = crate::state::now_ms() / 1000;
        let rtts = region_rtts(&state.load(), &probed.load());
        let f = feed.clone();
        let published = tokio::task::spawn_blocking(move || {
            f.add_probes(&rtts, now);
            // First: a node that starts shares what it saved at once.
            if (n - 1) % share_every == 0 {
                f.share_map(now);
            }
            f.publish(now, n % age_every == 0)
        })
        .await;
        if let Ok(Some(table)) = published {
            // Two blank maps steer alike: no new snapshot (its caches would start afresh).
            if !(table.is_blank() && state.load().latency.is_blank()) {
                state.rcu(|cur| Arc::new(cur.with_latency(table.clone())));
            }
        }
        if n % save_every == 0 {
            let f = feed.clone();
            match tokio::task::spawn_blocking(move || f.save()).await {
                Ok(Err(e)) => error!(error = %e, "latency map not saved; the last save stays"),
                Ok(Ok(Some((networks, bytes)))) => {
                    debug!(networks, mib = bytes >> 20, "latency map saved");
                }
                Ok(Ok(None)) | Err(_) => {}
            }
        }
    }
}

/// Each probed region's RTT from this node: its fastest up endpoint's (the probes' smoothed
/// RTT), the fastest over zones for a region name several zones use.
fn region_rtts(state: &crate::serving::Snapshot, details: &monitor::Details) -> Vec<(String, f64)> {
    let mut best: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
    for z in state.zones.zones() {
        let Some(per_region) = details.zones.get(&z.origin.to_string()) else {
            continue;
        };
        for (region, endpoints) in z.regions.iter().zip(per_region.iter()) {
            let fastest = endpoints
                .iter()
                .flatten()
                .filter(|d| d.up)
                .filter_map(|d| d.rtt_ms)
                .min_by(f64::total_cmp);
            if let Some(rtt) = fastest {
                let b = best.entry(&region.name).or_insert(rtt);
                *b = b.min(rtt);
            }
        }
    }
    best.into_iter().map(|(r, v)| (r.to_string(), v)).collect()
}

/// Once a second: the traffic totals behind "share of the last minute", the rate chart, and
/// where the last second's clients went (located in the serving database). The rate chart
/// is saved every [`RATES_SAVE_EVERY`] seconds and a last time when `stop` asks (or its
/// sender is dropped), after which the sampler ends: it is the chart file's one writer.
async fn sample_traffic(
    metrics: Arc<Metrics>,
    state: SharedSnapshot,
    state_dir: PathBuf,
    mut stop: oneshot::Receiver<oneshot::Sender<()>>,
) {
    let save = |metrics: &Arc<Metrics>| {
        let (m, dir) = (metrics.clone(), state_dir.clone());
        tokio::task::spawn_blocking(move || save_rates(&m, &dir))
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                n += 1;
                let now_s = crate::state::now_ms() / 1000;
                metrics.sample_traffic();
                metrics.sample_rates(now_s);
                metrics.sample_flows(&state.load().geo, now_s);
                if n.is_multiple_of(RATES_SAVE_EVERY) {
                    let _ = save(&metrics).await;
                }
            }
            done = &mut stop => {
                let _ = save(&metrics).await;
                if let Ok(done) = done {
                    let _ = done.send(());
                }
                return;
            }
        }
    }
}

/// The rate chart's file in the state directory.
pub const RATES_FILE: &str = "rates.json";
/// How often the rate chart is saved: a crash loses at most this much of it.
const RATES_SAVE_EVERY: u64 = 60;
/// A chart of an hour is about 10 KB per region; anything this big is no chart.
const RATES_MAX_BYTES: u64 = 16 << 20;

/// Writes the rate chart to `state_dir` whole or not at all; an error is logged (the
/// chart is a convenience: serving goes on).
fn save_rates(metrics: &Metrics, state_dir: &std::path::Path) {
    let path = state_dir.join(RATES_FILE);
    let json = serde_json::to_vec(&metrics.saved_rates()).expect("rates serialize");
    if let Err(e) = crate::state::durable::replace(&path, &json, 0o600) {
        error!(file = %path.display(), error = %e, "rate chart not saved");
    }
}

/// Starts the rate chart from the file of the last run, if any. A damaged file is reported
/// with its name and left aside: the chart starts empty and the next save replaces it.
pub fn restore_rates(metrics: &Metrics, state_dir: &std::path::Path) {
    let path = state_dir.join(RATES_FILE);
    let text = match crate::files::read_regular_text(&path, RATES_MAX_BYTES) {
        Ok(t) => t,
        Err(e) if e.is_missing() => return,
        Err(e) => {
            error!(file = %path.display(), error = %e, "ignoring the saved rate chart; it starts empty");
            return;
        }
    };
    let now_s = crate::state::now_ms() / 1000;
    let restored = serde_json::from_str::<crate::metrics::SavedRates>(&text)
        .map_err(|e| e.to_string())
        .and_then(|saved| {
            metrics
                .restore_rates(saved, now_s)
                .map_err(|e| e.to_string())
        });
    match restored {
        Ok(()) => info!(file = %path.display(), "rate chart restored"),
        Err(e) => {
            error!(file = %path.display(), error = %e, "ignoring the saved rate chart; it starts empty");
        }
    }
}

/// How often the GeoIP files are looked at for a replacement.
const GEOIP_CHECK: Duration = Duration::from_secs(2);

/// Files (GeoIP databases, DNSSEC key sets) and what they were (inode, size, modification
/// time) at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoFiles {
    paths: Vec<PathBuf>,
    stamps: Vec<Option<(u64, u64, std::time::SystemTime)>>,
}

impl GeoFiles {
    /// `paths` as they are now. Taken before the database is opened from them, so that a
    /// replacement at any moment after the open is noticed.
    pub fn stamp(paths: &[PathBuf]) -> GeoFiles {
        use std::os::unix::fs::MetadataExt;
        let stamps = paths
            .iter()
            .map(|p| {
                std::fs::metadata(p).ok().map(|m| {
                    (
                        m.ino(),
                        m.size(),
                        m.modified().unwrap_or(std::time::UNIX_EPOCH),
                    )
                })
            })
            .collect();
        GeoFiles {
            paths: paths.to_vec(),
            stamps,
        }
    }
}

/// Picks up GeoIP files replaced on disk since `seen` (a new inode, size or modification
/// time): files that pass [`crate::geo::GeoDb::open_replacement`] (regular files, sound
/// trees, probe addresses mostly where the running database puts them) replace the running
/// database; anything else is refused with the reason and the running database keeps
/// serving. Files changed in place are read again at their next change.
async fn watch_geoip(state: SharedSnapshot, mut seen: GeoFiles) {
    if seen.paths.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(GEOIP_CHECK);
    loop {
        tick.tick().await;
        let now = GeoFiles::stamp(&seen.paths);
        if now == seen {
            continue;
        }
        seen = now;
        let opened = {
            let paths = seen.paths.clone();
            let running = state.load().geo.clone();
            tokio::task::spawn_blocking(move || {
                crate::geo::GeoDb::open_replacement(&paths, &running)
            })
            .await
        };
        match opened {
            Ok(Ok(geo)) => {
                info!(geoip = %geo.describe(), "GeoIP database replaced on disk: now serving it");
                let geo = Arc::new(geo);
                state.rcu(|cur| cur.with_geo(geo.clone()));
            }
            Ok(Err(e)) => {
                error!(error = %e, "GeoIP database replaced on disk is refused; the running one keeps serving");
            }
            Err(e) => error!(error = %e, "GeoIP reload failed"),
        }
    }
}

/// How often the zones' DNSSEC key-set files are looked at.
const KEYSET_CHECK: Duration = Duration::from_secs(1);

/// Reloads the zones when a zone's DNSSEC key-set file changes on disk: `meridian dnssec
/// rollover` wrote a step, or this server took an automatic rollover's timed step at its
/// safe time; the running server publishes it within [`KEYSET_CHECK`]. A file it cannot
/// read refuses the reload (the running keys keep signing, the error is logged), and is
/// tried again at its next change.
async fn watch_keysets(admin: Arc<Admin>) {
    let files = |admin: &Admin| admin.state.load().zones.keyset_files(&admin.state_dir);
    let mut seen = GeoFiles::stamp(&files(&admin));
    let mut tick = tokio::time::interval(KEYSET_CHECK);
    // The last error of each file, logged once.
    let mut failing: std::collections::HashMap<PathBuf, String> = Default::default();
    loop {
        tick.tick().await;
        let paths = files(&admin);
        let taken = tokio::task::spawn_blocking(move || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            paths
                .into_iter()
                .map(|p| {
                    let r = crate::zone::rollover::take_due_step(&p, now);
                    (p, r)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (path, result) in taken {
            match result {
                Ok(Some(step)) => {
                    failing.remove(&path);
                    let step = step.map_or_else(|| "done".to_string(), |s| s.to_string());
                    info!(file = %path.display(), step, "dnssec rollover step taken at its safe time");
                }
                Ok(None) => {
                    failing.remove(&path);
                }
                Err(e) => {
                    let e = e.to_string();
                    if failing.get(&path) != Some(&e) {
                        error!(error = %e, "dnssec rollover: cannot take the timed step");
                        failing.insert(path, e);
                    }
                }
            }
        }
        let now = GeoFiles::stamp(&files(&admin));
        if now == seen {
            continue;
        }
        // The set of files changes with the zones; only a change of a file kept counts.
        let changed = now.paths == seen.paths;
        seen = now;
        if changed {
            info!("a DNSSEC key set changed on disk: reloading zones");
            let _ = admin::reload_zones(&admin, "dnssec", "key set changed on disk").await;
            seen = GeoFiles::stamp(&files(&admin));
        }
    }
}

async fn reload_on_sighup(
    hup: std::io::Result<tokio::signal::unix::Signal>,
    admin: Arc<Admin>,
    cert: Option<Arc<AdminCert>>,
) {
    let Ok(mut hup) = hup else {
        error!("cannot listen for SIGHUP; reload through the admin API");
        return;
    };
    while hup.recv().await.is_some() {
        info!("SIGHUP: reloading zones");
        // Success and refusal are both logged by the reload itself.
        let _ = admin::reload_zones(&admin, "SIGHUP", "SIGHUP").await;
        // A renewed certificate is picked up without a restart; a bad one leaves the old.
        match cert.as_deref().map(AdminCert::reload) {
            Some(Ok(())) => info!("SIGHUP: admin TLS certificate reloaded"),
            Some(Err(e)) => {
                error!(error = %e, "SIGHUP: admin TLS certificate not reloaded; the old one stays")
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::GeoDb;
    use crate::serving::Snapshot;
    use crate::zone::ZoneSet;

    #[test]
    fn a_map_that_only_ages_is_published_every_tenth_of_a_half_life_at_most_five_minutes() {
        use crate::latency::config::LatencyConfig;
        let with = |publish_secs: u64, half_life_secs: f64, max_age_secs: u64| {
            let mut c = LatencyConfig {
                publish_secs,
                max_age_secs,
                ..LatencyConfig::default()
            };
            c.settings.half_life_secs = half_life_secs;
            age_every(&c)
        };
        // The defaults (30 s, an hour, two hours): every 10 intervals, 5 minutes.
        assert_eq!(age_every(&LatencyConfig::default()), 10);
        // A short publish interval alone does not bring more aging publications.
        assert_eq!(with(1, 3600.0, 7200), 300);
        // A short half-life (or max age) does: every interval here.
        assert_eq!(with(1, 5.0, 7200), 1);
        assert_eq!(with(1, 3600.0, 60), 6);
        assert_eq!(with(600, 3600.0, 7200), 1);
    }

    /// Asked to stop, the sampler saves the rate chart, says so, and ends: nothing writes the
    /// file beside or after that last save.
    #[tokio::test]
    async fn the_sampler_saves_the_rate_chart_a_last_time_and_ends_when_asked() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let metrics = Arc::new(Metrics::default());
        let geo = Arc::new(GeoDb::embedded().expect("the embedded GeoIP table opens"));
        let state = Snapshot::new(ZoneSet::new(Vec::new()), geo, &metrics).shared();
        let (sampler, stop) = oneshot::channel();
        let task = tokio::spawn(sample_traffic(
            metrics,
            state,
            dir.path().to_path_buf(),
            stop,
        ));
        // Long before its first periodic save.
        Control { sampler }.stop_sampling().await;
        assert!(dir.path().join(RATES_FILE).is_file());
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the sampler ends once it saved")
            .expect("the sampler does not panic");
    }
}
