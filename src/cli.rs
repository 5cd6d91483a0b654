//! The command line: `serve`, `check` and `route`, and the logs `serve` writes.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, CommandFactory, Parser, Subcommand};
use tracing::info;

use crate::config::{self, Config, FileConfig, Flags, LogFormat};
use crate::dns::server;
use crate::geo::{GeoDb, GeoError};
use crate::route::{QueryError, Route, RouteQuery};
use crate::serving::Snapshot;
use crate::text::Escaping;
use crate::zone::{self, Diagnostic, LoadError};

#[derive(Debug, Parser)]
#[command(
    name = "meridian",
    version,
    about = "Authoritative DNS that steers each client to the nearest healthy region"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve DNS for the zones.
    Serve(ServeArgs),
    /// Validate every zone file; print `file:line: problem` for each error.
    Check(CheckArgs),
    /// Show how a steered name is answered for a client, and why.
    Route(RouteArgs),
    /// Write the man pages and shell completions of this command line (for packaging).
    #[command(hide = true)]
    Generate(GenerateArgs),
    /// DNSSEC keys: make a zone's keys, print the DS records for its parent, roll keys, dump
    /// the signed zone.
    #[command(subcommand)]
    Dnssec(DnssecCommand),
}

#[derive(Debug, Subcommand)]
pub enum DnssecCommand {
    /// Make a zone's signing key (a CSK: one key signs everything; with --split a KSK and a
    /// ZSK) where its zone file says, mode 0600, and print its DS record.
    Keygen(KeygenArgs),
    /// Print the DS records (SHA-256) the parent zone must publish for the zone's keys.
    Ds(DnssecArgs),
    /// Roll a key: start a rollover with --kind, take its next step with --next.
    Rollover(RolloverArgs),
    /// Show the zone's keys, what each does, and the rollover under way with its next step.
    Status(DnssecArgs),
    /// Print the zone's static records signed, with an NSEC chain, as a zone file (for
    /// dnssec-verify or ldns-verify-zone)
    Dump(DnssecArgs),
}

#[derive(Debug, Args)]
pub struct DnssecArgs {
    /// The zone, e.g. example.com
    #[arg(long)]
    pub zone: String,
    /// Directory of zone files
    #[arg(long, default_value = config::DEFAULT_ZONES)]
    pub zones: PathBuf,
    /// Directory of the zone keys that the zone files do not place themselves
    #[arg(long = "state-dir", default_value = config::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    #[command(flatten)]
    pub zone: DnssecArgs,
    /// Make a KSK (signs the DNSKEY RRset, its DS at the parent) and a ZSK (signs the rest)
    /// instead of one CSK
    #[arg(long)]
    pub split: bool,
    /// Replace a key that exists (the zone's DS at the parent must change too)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["kind", "next"])))]
pub struct RolloverArgs {
    #[command(flatten)]
    pub zone: DnssecArgs,
    /// Start a rollover of this key: zsk (pre-publish), ksk or csk (double-DS)
    #[arg(long, value_parser = ["zsk", "ksk", "csk"])]
    pub kind: Option<String>,
    /// Take the rollover's next step, when it is safe
    #[arg(long)]
    pub next: bool,
    /// Take the next step before the time it is safe
    #[arg(long, requires = "next")]
    pub force: bool,
    /// With --kind: the running server takes the steps that wait only for time, at their
    /// safe time (those that wait for the parent's DS still need --next)
    #[arg(long, requires = "kind")]
    pub auto: bool,
    /// The TTL of the zone's DS RRset at the parent, in seconds
    #[arg(long = "ds-ttl", default_value_t = crate::zone::rollover::DEFAULT_DS_TTL)]
    pub ds_ttl: u32,
    /// Seconds a change takes to reach every nameserver of the zone
    #[arg(long, default_value_t = crate::zone::rollover::DEFAULT_PROPAGATION)]
    pub propagation: u32,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Directory to write `man/*.1` and `completions/` (bash, zsh, fish) into
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file [default: meridian.toml, if present]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Directory of zone files [default: zones]
    #[arg(long)]
    pub zones: Option<PathBuf>,
    /// DNS address for UDP and TCP; repeat for more [default: 127.0.0.1:5353]
    #[arg(long = "dns-listen", value_name = "ADDR:PORT")]
    pub dns_listen: Vec<SocketAddr>,
    /// UDP sockets, each with its own thread, per DNS address [default: one per core]
    #[arg(long = "udp-threads", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub udp_threads: Option<u16>,
    /// UDP responses per second per client network and response; over it, drop or slip
    /// [default: no limit]
    #[arg(long = "rrl-rate")]
    pub rrl_rate: Option<u32>,
    /// Every how many rate-limited responses one goes out truncated; 0 drops all [default: 2]
    #[arg(long = "rrl-slip")]
    pub rrl_slip: Option<u32>,
    /// UDP responses to clients without a valid DNS cookie are at most this many times the
    /// query's size; larger ones go out truncated; 0: no limit [default: 8]
    #[arg(long = "amplification-limit", value_parser = amplification)]
    pub amplification_limit: Option<u16>,
    /// Admin API address [default: 127.0.0.1:8053]
    #[arg(long = "admin-listen", value_name = "ADDR:PORT")]
    pub admin_listen: Option<SocketAddr>,
    /// PEM certificate chain for the admin API: it then speaks HTTPS only (with
    /// --admin-tls-key)
    #[arg(long = "admin-tls-cert", value_name = "FILE")]
    pub admin_tls_cert: Option<PathBuf>,
    /// PEM private key of the admin certificate
    #[arg(long = "admin-tls-key", value_name = "FILE")]
    pub admin_tls_key: Option<PathBuf>,
    /// MaxMind DB file; repeat for separate IPv4 and IPv6 files [default: the embedded
    /// city-level database]
    #[arg(long)]
    pub geoip: Vec<PathBuf>,
    /// Log format [default: human]
    #[arg(long = "log-format", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Directory of the overrides journal and audit log [default: state]
    #[arg(long = "state-dir")]
    pub state_dir: Option<PathBuf>,
    /// File of admin API tokens, one `name:secret` per line (or set MERIDIAN_ADMIN_TOKEN)
    #[arg(long = "admin-token-file")]
    pub admin_token_file: Option<PathBuf>,
    /// A host name the admin API answers to (the Host header), besides localhost and IP
    /// addresses; repeat for more [default: none]
    #[arg(long = "admin-host", value_name = "NAME", value_parser = config::check_admin_host)]
    pub admin_host: Vec<String>,
    /// This node's name in the cluster, over the [cluster] section's node (one file for
    /// every node)
    #[arg(long = "cluster-node", value_name = "NAME", value_parser = cluster_node)]
    pub cluster_node: Option<String>,
    /// This node's place as LAT,LON in degrees, over the [cluster] section's location: the
    /// clients nearest to it are steered by its measured latency
    #[arg(long = "cluster-location", value_name = "LAT,LON", value_parser = crate::cluster::config::parse_location)]
    pub cluster_location: Option<crate::steer::GeoPoint>,
}

fn cluster_node(s: &str) -> Result<String, String> {
    crate::cluster::config::check_node(s).map(|()| s.to_string())
}

fn amplification(s: &str) -> Result<u16, String> {
    config::check_amplification(s.parse().map_err(|e| format!("{s}: {e}"))?)
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Directory of zone files
    #[arg(long, default_value = config::DEFAULT_ZONES)]
    pub zones: PathBuf,
    /// Directory of the zone keys that the zone files do not place themselves (DNSSEC)
    #[arg(long = "state-dir", default_value = config::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Also check this configuration file (its [cluster] section included)
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RouteArgs {
    /// The steered name, e.g. www.example.com
    #[arg(long)]
    pub name: String,
    /// The client network or address, as an ECS subnet, e.g. 81.2.69.0/24
    #[arg(long)]
    pub client: String,
    /// The running server's admin API, asked first: ADDR:PORT or a URL [default: the
    /// admin-listen of the configuration file, else 127.0.0.1:8053]
    #[arg(long, value_name = "ADDR:PORT|URL")]
    pub server: Option<String>,
    /// Token file for an admin API that is not on loopback (its first token; or set
    /// MERIDIAN_ADMIN_TOKEN)
    #[arg(long = "admin-token-file")]
    pub admin_token_file: Option<PathBuf>,
    /// Decide from the zone files instead of asking the running server: drains, forces,
    /// probe results, load reports and the latency map are then ignored
    #[arg(long)]
    pub offline: bool,
    /// Directory of zone files; given, the decision is made from the files (offline)
    /// [default: zones]
    #[arg(long)]
    pub zones: Option<PathBuf>,
    /// MaxMind DB file; given, the decision is made from the files (offline). Repeat it for
    /// separate IPv4 and IPv6 files [default: the embedded database]
    #[arg(long)]
    pub geoip: Vec<PathBuf>,
    /// Probe every endpoint once from here and decide with the results (offline)
    #[arg(long)]
    pub probe: bool,
    /// A meridian.toml with [cluster]: also show what each node sees of the zone's endpoints
    /// and what the quorum rule makes of it, read from etcd
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
    /// Directory of the zone keys that the zone files do not place themselves (DNSSEC)
    #[arg(long = "state-dir", default_value = config::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Zones(#[from] LoadError),
    #[error(transparent)]
    Geo(#[from] GeoError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Tokens(#[from] crate::admin::auth::TokenError),
    #[error("{0}")]
    Latency(#[from] crate::latency::store::StoreError),
    #[error(
        "the admin listener {0} is not on loopback and no token is configured: give --admin-token-file or MERIDIAN_ADMIN_TOKEN"
    )]
    OpenAdmin(SocketAddr),
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cluster store: {0}")]
    Cluster(String),
    #[error("admin TLS: {0}")]
    AdminTls(#[from] crate::admin::tls::TlsError),
    #[error("DNS cookie secret: {0}")]
    CookieSecret(#[from] crate::dns::cookie::SecretError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Dnssec(String),
    #[error("the server at {base} answered {message}")]
    Server { base: String, message: String },
}

/// The open-file limit assumed when it cannot be read: the common default soft limit.
const USUAL_FD_LIMIT: libc::rlim_t = 1024;

/// Raises the open-file soft limit to the hard limit, and returns the limit in force: the TCP
/// listener alone may hold 1,024 connections, the common default soft limit. Warns when even
/// the hard limit leaves too little room, since connections past it would fail to be
/// accepted.
fn raise_fd_limit() -> libc::rlim_t {
    // SAFETY: getrlimit/setrlimit with a valid resource and a live struct.
    let limit = unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return USUAL_FD_LIMIT;
        }
        l.rlim_cur = l.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        }
        l.rlim_cur
    };
    // Room for the TCP connections plus sockets, files and probes besides.
    let needed = (server::MAX_TCP_CONNECTIONS + 256) as libc::rlim_t;
    if limit < needed {
        tracing::warn!(
            limit,
            needed,
            "the open-file limit is below what 1,024 TCP connections need: raise it (ulimit -n, LimitNOFILE)"
        );
    }
    limit
}

/// Allocations from this size on get maps of their own, given back when freed: the tables the
/// control plane builds and drops (the location table's scratch, compiled runs, latency maps).
/// The query path's allocations are far smaller.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// Fixes glibc's mmap threshold at [`MMAP_THRESHOLD`], so that memory the control plane frees
/// goes back to the system. Left dynamic, glibc raises it to the size of each large block
/// freed (up to 32 MiB), and its trim threshold to twice that: after the location table's
/// build had freed its scratch (maps and vectors that grow by doubling), blocks of up to
/// 30 MB came from the compile thread's arena, and what they left free there (28 to 58 MB
/// with a city database) stayed resident, since a thread's arena gives back its top only past
/// the trim threshold, and `malloc_trim` does not trim it at all. Each GeoIP replacement left
/// more behind (65 to 80 MB). Fixed, the trim threshold stays at its 128 KiB default.
pub fn fix_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets an allocator parameter; it returns 0 when it refuses the value.
    if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) } == 0 {
        tracing::warn!(
            bytes = MMAP_THRESHOLD,
            "the allocator refused a fixed mmap threshold: memory freed after a GeoIP table \
             build may stay resident"
        );
    }
}

/// Starts the log on stderr: `human` lines, with colour when `colour` (stderr is a terminal),
/// or one `json` object per event.
///
/// The rule: a logged value may come from outside (an operator's reason, a token or zone
/// name, a path in an error): in the human format its control characters are written
/// escaped (`\n`, `\u{1b}`), so it can neither start a line of its own nor drive the
/// terminal. JSON escapes them itself.
pub fn init_logs(format: LogFormat, colour: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.with_ansi(colour).fmt_fields(EscapedFields).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The fields of a human log line, `name=value` after the message, values escaped by
/// [`Escaping`].
struct EscapedFields;

impl<'w> tracing_subscriber::field::MakeVisitor<tracing_subscriber::fmt::format::Writer<'w>>
    for EscapedFields
{
    type Visitor = EscapedVisitor<'w>;

    fn make_visitor(&self, writer: tracing_subscriber::fmt::format::Writer<'w>) -> Self::Visitor {
        EscapedVisitor {
            writer,
            result: Ok(()),
            first: true,
        }
    }
}

struct EscapedVisitor<'w> {
    writer: tracing_subscriber::fmt::format::Writer<'w>,
    result: fmt::Result,
    first: bool,
}

impl tracing::field::Visit for EscapedVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        // `log.*` fields describe a `log` record's origin, as the default format skips them.
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        let space = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        let name = field.name();
        self.result = match (name, self.writer.has_ansi_escapes()) {
            ("message", _) => write!(self.writer, "{space}"),
            (_, true) => write!(self.writer, "{space}\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m"),
            (_, false) => write!(self.writer, "{space}{name}="),
        }
        .and_then(|()| write!(Escaping(&mut self.writer), "{value:?}"));
    }
}

impl tracing_subscriber::field::VisitOutput<fmt::Result> for EscapedVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl tracing_subscriber::field::VisitFmt for EscapedVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

/// The DNS cookie secret, in the state directory: it survives restarts, and anycast nodes
/// that share it accept each other's cookies (RFC 9018).
pub const COOKIE_SECRET_FILE: &str = "cookie-secret";

impl ServeArgs {
    pub fn config(&self) -> Result<Config, config::ConfigError> {
        let file = match &self.config {
            Some(p) => FileConfig::read(p, true)?,
            None => FileConfig::read(Path::new(config::DEFAULT_CONFIG_FILE), false)?,
        };
        let flags = Flags {
            zones: self.zones.clone(),
            dns_listen: self.dns_listen.clone(),
            udp_threads: self.udp_threads.map(usize::from),
            rrl_rate: self.rrl_rate,
            rrl_slip: self.rrl_slip,
            amplification_limit: self.amplification_limit,
            admin_listen: self.admin_listen,
            admin_tls_cert: self.admin_tls_cert.clone(),
            admin_tls_key: self.admin_tls_key.clone(),
            geoip: self.geoip.clone(),
            log_format: self.log_format,
            state_dir: self.state_dir.clone(),
            admin_token_file: self.admin_token_file.clone(),
            admin_hosts: self.admin_host.clone(),
            cluster_node: self.cluster_node.clone(),
            cluster_location: self.cluster_location,
        };
        Config::merge(flags, file)
    }
}

/// Loads zones, GeoIP and the journal, starts the control plane, binds every listener, then
/// serves until SIGINT or SIGTERM. `env_token` is the value of MERIDIAN_ADMIN_TOKEN.
pub fn serve(config: Config, env_token: Option<String>) -> Result<(), CliError> {
    fix_mmap_threshold();
    // The admin side gets a small share of the descriptors; DNS and the probes keep the rest.
    let admin_connections = crate::admin::listen::connection_cap(raise_fd_limit());
    let zones = zone::load_keyed(&config.zones, &config.state_dir)?;
    let geo_files = crate::control::GeoFiles::stamp(&config.geoip);
    let geo = Arc::new(GeoDb::open_or_embedded(&config.geoip)?);
    info!(
        zones = zones.len(),
        dir = %config.zones.display(),
        geoip = %geo.describe(),
        "zones loaded"
    );
    let journal = crate::state::Journal::open(&config.state_dir)?;
    let tokens = crate::admin::auth::Tokens::load(config.admin_token_file.as_deref(), env_token)?;
    if tokens.is_empty() && !config.admin_listen.ip().is_loopback() {
        return Err(CliError::OpenAdmin(config.admin_listen));
    }
    info!(
        journal = %journal.path().display(),
        entries = journal.last_seq(),
        tokens = ?tokens,
        "state loaded"
    );
    let admin_listener =
        std::net::TcpListener::bind(config.admin_listen).map_err(|source| CliError::Listen {
            addr: config.admin_listen,
            source,
        })?;
    let admin_addr = admin_listener.local_addr().map_err(CliError::Runtime)?;
    let admin_cert = match &config.admin_tls {
        Some(t) => Some(crate::admin::tls::AdminCert::load(&t.cert, &t.key)?),
        None => None,
    };
    let cookies = crate::dns::cookie::Cookies::load_or_create(
        &config.state_dir.join(COOKIE_SECRET_FILE),
        config.amplification_limit,
    )?;
    let metrics = Arc::new(crate::metrics::Metrics::default());
    crate::control::restore_rates(&metrics, &config.state_dir);
    // The latency map from the last run serves from the first query on.
    let latency_tokens =
        crate::admin::auth::Tokens::load(config.latency.token_file.as_deref(), None)?;
    let latency = Arc::new(crate::latency::feed::Feed::open(
        config.latency.clone(),
        latency_tokens,
        config.state_dir.clone(),
        metrics.clone(),
        config.cluster.is_some(),
    )?);
    let published = latency
        .publish(crate::state::now_ms() / 1000, true)
        .expect("a forced publication publishes");
    info!(
        networks = published.networks(),
        feeds = ?latency.tokens(),
        "latency map loaded"
    );
    let state = Snapshot::new(zones, geo, &metrics)
        .with_latency(published)
        .shared();
    let rrl = config.rrl_rate.map(|rate| crate::dns::rrl::Limits {
        rate,
        slip: config.rrl_slip,
    });
    let services = Arc::new(crate::dns::Services::new(cookies, rrl, metrics.clone()));
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let control = crate::control::start(crate::control::Setup {
        state: state.clone(),
        metrics: metrics.clone(),
        journal,
        tokens,
        zones_dir: config.zones.clone(),
        state_dir: config.state_dir.clone(),
        admin_listener,
        ready: ready.clone(),
        geoip: geo_files,
        admin_cert,
        admin_connections,
        admin_hosts: config.admin_hosts.clone(),
        cluster: config.cluster.clone(),
        latency,
        spill: config.spill.clone(),
    })
    .map_err(CliError::Runtime)?;
    let scheme = if config.admin_tls.is_some() {
        "https"
    } else {
        "http"
    };
    info!(admin = %admin_addr, scheme, "listening");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime.block_on(async move {
        // Caught before the first "listening" line, so a stop sent at once is still graceful.
        let stop = shutdown_signal().map_err(CliError::Runtime)?;
        let mut listeners = Vec::new();
        for &addr in &config.dns_listen {
            let listener = server::bind(addr, config.udp_threads.unwrap_or(cores))
                .map_err(|source| CliError::Listen { addr, source })?;
            // Tests and scripts read the bound port from this line: keep its shape.
            info!(dns = %listener.addr, "listening");
            listeners.push(listener);
        }
        let running = server::spawn(listeners, state, services).map_err(CliError::Runtime)?;
        ready.store(true, std::sync::atomic::Ordering::Release);
        stop.await;
        info!("shutting down: no new queries; answering those in flight");
        ready.store(false, std::sync::atomic::Ordering::Release);
        running.shutdown().await;
        control.stop_sampling().await;
        info!("stopped");
        Ok(())
    })
}

/// Installs the SIGINT and SIGTERM handlers now; the future ends at the first of them.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// Prints a summary and returns `Ok`, or every diagnostic as the error.
/// Writes the man pages (`meridian.1` and one per visible subcommand, `meridian-serve.1`
/// ...) and the bash, zsh and fish completions, all from the clap definition above, so they
/// never drift from it; returns the paths written, one per line.
pub fn generate(args: &GenerateArgs) -> Result<String, CliError> {
    let written = |path: PathBuf| move |source| CliError::Write { path, source };
    let man = args.out.join("man");
    let completions = args.out.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).map_err(written(dir.clone()))?;
    }
    let mut cli = Cli::command();
    // Built, each subcommand has its display name: `meridian-serve`, the page's name.
    cli.build();
    // A page for the command and for every subcommand at every depth (`meridian-dnssec-ds`);
    // `help` is clap's own, the hidden ones are for packaging: no page for them.
    let mut pages = vec![cli];
    let mut i = 0;
    while i < pages.len() {
        let subs: Vec<clap::Command> = pages[i]
            .get_subcommands()
            .filter(|c| !c.is_hide_set() && c.get_name() != "help")
            .cloned()
            .collect();
        pages.extend(subs);
        i += 1;
    }
    let mut out = String::new();
    for page in pages {
        let name = page.get_display_name().unwrap_or(page.get_name());
        let path = man.join(format!("{name}.1"));
        let mut text = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut text)
            .map_err(written(path.clone()))?;
        std::fs::write(&path, text).map_err(written(path.clone()))?;
        let _ = writeln!(out, "{}", path.display());
    }
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        let path = clap_complete::generate_to(shell, &mut Cli::command(), "meridian", &completions)
            .map_err(written(completions.clone()))?;
        let _ = writeln!(out, "{}", path.display());
    }
    Ok(out)
}

pub fn check(args: &CheckArgs) -> Result<String, CliError> {
    let mut out = String::new();
    if let Some(path) = &args.config {
        let file = FileConfig::read(path, true)?;
        let cluster = match &file.checked_cluster {
            Some(c) => format!(
                ": cluster node {} of {} etcd endpoints, prefix {}",
                c.node,
                c.endpoints.len(),
                c.prefix
            ),
            None => ": no [cluster], this node runs alone".into(),
        };
        writeln!(out, "{}: ok{cluster}", path.display()).expect("writing to a String");
    }
    let zones = zone::load_keyed(&args.zones, &args.state_dir)?;
    let mut names: Vec<&zone::Zone> = zones.zones().collect();
    names.sort_by(|a, b| a.origin.cmp(&b.origin));
    for z in names {
        writeln!(
            out,
            "{}: zone {} ok: {} regions, {} steered names",
            z.file.display(),
            z.origin,
            z.regions.len(),
            z.steered.len()
        )
        .expect("writing to a String");
        if let Some(s) = z.signer() {
            let keys = match s.keys().len() {
                1 => format!("key tag {}", s.tag()),
                _ => format!("keys {}", s.describe()),
            };
            writeln!(
                out,
                "{}: zone {} signed: {} {keys}",
                z.file.display(),
                z.origin,
                s.algorithm(),
            )
            .expect("writing to a String");
        }
        // Served, but not as well as it could be (an answer too long for UDP, say).
        for w in &z.warnings {
            let warning = Diagnostic {
                message: format!("warning: {}", w.message),
                ..w.clone()
            };
            writeln!(out, "{warning}").expect("writing to a String");
        }
    }
    Ok(out)
}

/// `meridian dnssec ...`: what to print, or the error.
pub fn dnssec(command: &DnssecCommand) -> Result<String, CliError> {
    let args = match command {
        DnssecCommand::Keygen(a) => &a.zone,
        DnssecCommand::Ds(a) | DnssecCommand::Status(a) => a,
        DnssecCommand::Dump(a) => return dump(a),
        DnssecCommand::Rollover(a) => &a.zone,
    };
    let zones = zone::load_dir(&args.zones)?;
    let zone = named_zone(&zones, args)?;
    let spec = &zone
        .dnssec
        .as_ref()
        .ok_or_else(|| {
            CliError::Dnssec(format!(
                "{}: zone {} has no dnssec setting: add `dnssec = {{}}` first",
                zone.file.display(),
                zone.origin
            ))
        })?
        .spec;
    let mut out = String::new();
    match command {
        DnssecCommand::Keygen(k) => keygen(zone, spec, k, &mut out)?,
        DnssecCommand::Rollover(r) => rollover(zone, spec, r, &mut out)?,
        DnssecCommand::Ds(_) | DnssecCommand::Status(_) | DnssecCommand::Dump(_) => {}
    }
    let path = spec.key_path(&zone.file, &zone.origin, &args.state_dir);
    let signer = zone::load_signer(spec, &path, &zone.origin, &args.state_dir)
        .map_err(|e| CliError::Dnssec(e.to_string()))?;
    match command {
        DnssecCommand::Status(_) | DnssecCommand::Rollover(_) => {
            status(&signer, zone.soa().ttl, &mut out)
        }
        _ => {
            for line in signer.ds_lines(zone.soa().ttl) {
                writeln!(out, "{line}").expect("writing to a String");
            }
        }
    }
    Ok(out)
}

/// The zone `--zone` names among `zones`.
fn named_zone<'z>(zones: &'z zone::ZoneSet, args: &DnssecArgs) -> Result<&'z zone::Zone, CliError> {
    let wanted = hickory_proto::rr::Name::from_ascii(&args.zone)
        .map_err(|e| CliError::Usage(format!("--zone {:?}: {e}", args.zone)))?;
    zones
        .zones()
        .find(|z| z.origin.eq_ignore_root(&wanted))
        .ok_or_else(|| {
            CliError::Usage(format!(
                "--zone {}: no such zone in {}",
                args.zone,
                args.zones.display()
            ))
        })
}

/// `dump`: the zone's static records signed now, with their NSEC chain.
fn dump(args: &DnssecArgs) -> Result<String, CliError> {
    let zones = zone::load_keyed(&args.zones, &args.state_dir)?;
    let zone = named_zone(&zones, args)?;
    let signer = zone.signer().ok_or_else(|| {
        CliError::Dnssec(format!(
            "{}: zone {} has no dnssec setting: add `dnssec = {{}}` first",
            zone.file.display(),
            zone.origin
        ))
    })?;
    let now = crate::dns::cookie::now();
    zone.signed_text(signer, now)
        .map_err(|e| CliError::Dnssec(e.to_string()))
}

/// A new key of `spec`'s algorithm written as `<zone><role>-<tag>.key` in `dir`, with a tag
/// no key in `taken` has: (file name, tag).
fn new_key(
    zone: &zone::Zone,
    spec: &zone::dnssec::Spec,
    role: zone::rollover::Role,
    dir: &Path,
    taken: &[u16],
) -> Result<(String, u16), CliError> {
    let fail = |e: &dyn fmt::Display| CliError::Dnssec(format!("cannot make a key: {e}"));
    // Tags are 16 bits: two keys of a zone may collide, rarely; another draw fixes it.
    for _ in 0..16 {
        let der = spec.algorithm.generate().map_err(|e| fail(&e))?;
        let tag = zone::dnssec::key_tag(&der, spec.algorithm, &zone.origin, role)
            .map_err(|e| fail(&e))?;
        if taken.contains(&tag) {
            continue;
        }
        let file = format!("{}{role}-{tag}.key", zone.origin.to_lowercase().to_ascii());
        let path = dir.join(&file);
        write_private(&path, &der, false)
            .map_err(|e| CliError::Dnssec(format!("cannot write {}: {e}", path.display())))?;
        return Ok((file, tag));
    }
    Err(CliError::Dnssec("no free key tag in 16 draws".into()))
}

/// `keygen`: one CSK at the zone's key path, or with `--split` a KSK and a ZSK listed in a
/// new key-set file.
fn keygen(
    zone: &zone::Zone,
    spec: &zone::dnssec::Spec,
    args: &KeygenArgs,
    out: &mut String,
) -> Result<(), CliError> {
    use zone::rollover::{KeySet, Role, keyset_path};
    let state_dir = &args.zone.state_dir;
    let set_path = keyset_path(&zone.origin, state_dir);
    if set_path.exists() && !args.force {
        return Err(CliError::Dnssec(format!(
            "{} lists the zone's keys already (give --force to replace them)",
            set_path.display()
        )));
    }
    if !args.split {
        let path = spec.key_path(&zone.file, &zone.origin, state_dir);
        let fail = |what: &str, e: &dyn fmt::Display| {
            CliError::Dnssec(format!("{what} {}: {e}", path.display()))
        };
        let der = spec
            .algorithm
            .generate()
            .map_err(|e| fail("cannot make the key for", &e))?;
        write_private(&path, &der, args.force).map_err(|e| fail("cannot write", &e))?;
        if set_path.exists() {
            std::fs::remove_file(&set_path).map_err(|e| fail("cannot remove", &e))?;
        }
        let tag = zone::dnssec::key_tag(&der, spec.algorithm, &zone.origin, Role::Csk)
            .map_err(|e| fail("cannot read", &e))?;
        writeln!(out, "wrote {} ({})", path.display(), spec.algorithm)
            .expect("writing to a String");
        writeln!(out, "key tag {tag}; publish at the parent:").expect("writing to a String");
        return Ok(());
    }
    if spec.key.is_some() {
        return Err(CliError::Dnssec(format!(
            "{}: the zone file names its key file; a KSK and a ZSK live in the state directory: remove `key` from the dnssec setting first",
            zone.file.display()
        )));
    }
    let dir = set_path.parent().expect("a key-set path has a directory");
    let ksk = new_key(zone, spec, Role::Ksk, dir, &[])?;
    let zsk = new_key(zone, spec, Role::Zsk, dir, &[ksk.1])?;
    KeySet::split(ksk.clone(), zsk.clone())
        .write(&set_path)
        .map_err(|e| CliError::Dnssec(e.to_string()))?;
    writeln!(
        out,
        "wrote {} (KSK {}, ZSK {}, {})",
        set_path.display(),
        ksk.1,
        zsk.1,
        spec.algorithm
    )
    .expect("writing to a String");
    writeln!(out, "key tag {}; publish at the parent:", ksk.1).expect("writing to a String");
    Ok(())
}

/// `rollover`: starts one (`--kind`) or takes its next step (`--next`), and saves the key
/// set; the running server publishes it once it sees the file change.
fn rollover(
    zone: &zone::Zone,
    spec: &zone::dnssec::Spec,
    args: &RolloverArgs,
    out: &mut String,
) -> Result<(), CliError> {
    use zone::rollover::{KeySet, Role, Timing, keyset_path};
    if spec.key.is_some() {
        return Err(CliError::Dnssec(format!(
            "{}: the zone file names its key file; rollovers manage keys in the state directory: remove `key` from the dnssec setting first",
            zone.file.display()
        )));
    }
    let state_dir = &args.zone.state_dir;
    let set_path = keyset_path(&zone.origin, state_dir);
    let dir = set_path.parent().expect("a key-set path has a directory");
    let failed = |e: &dyn fmt::Display| CliError::Dnssec(e.to_string());
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Dnssec(format!("cannot make {}: {e}", dir.display())))?;
    // One writer at a time: a server taking a timed step, or another `rollover`.
    let _held = zone::rollover::lock(&set_path).map_err(|e| failed(&e))?;
    let mut set = match KeySet::read(&set_path).map_err(|e| failed(&e))? {
        Some(set) => set,
        None => {
            // The one CSK of `keygen`, listed so that the rollover can replace it.
            let path = zone::dnssec::default_key_path(&zone.origin, state_dir);
            let signer =
                zone::load_signer(spec, &path, &zone.origin, state_dir).map_err(|e| failed(&e))?;
            let file = path
                .file_name()
                .expect("a key path names a file")
                .to_string_lossy()
                .into_owned();
            KeySet::single(file, signer.tag())
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match &args.kind {
        Some(kind) => {
            let kind = Role::parse(kind).expect("clap allows zsk, ksk, csk");
            if let Some(r) = &set.rollover {
                return Err(failed(&zone::rollover::StepError::Busy(r.kind, r.step)));
            }
            let taken: Vec<u16> = set.keys.iter().map(|k| k.tag).collect();
            let timing = Timing {
                dnskey_ttl: zone.soa().ttl,
                max_zone_ttl: zone.max_ttl(),
                ds_ttl: args.ds_ttl,
                propagation: args.propagation,
            };
            // The key is written first: a set that names it never lacks it.
            let (file, tag) = new_key(zone, spec, kind, dir, &taken)?;
            set.start(kind, file, tag, timing, now, args.auto)
                .map_err(|e| failed(&e))?;
            writeln!(out, "started a {kind} rollover to key {tag}").expect("writing to a String");
        }
        None => {
            let step = set.advance(now, args.force).map_err(|e| failed(&e))?;
            match step {
                Some(step) => writeln!(out, "took step {step}"),
                None => writeln!(out, "rollover done"),
            }
            .expect("writing to a String");
        }
    }
    set.write(&set_path).map_err(|e| failed(&e))?;
    Ok(())
}

/// The keys, the DS the parent should publish, and the rollover's next step.
fn status(signer: &zone::dnssec::Signer, ttl: u32, out: &mut String) {
    use zone::rollover::{Role, Step, utc};
    let w = |out: &mut String, line: String| writeln!(out, "{line}").expect("writing to a String");
    for k in signer.keys() {
        let mut does = Vec::new();
        if k.published {
            does.push("published");
        }
        if k.signs_keys {
            does.push("signs keys");
        }
        if k.signs_zone {
            does.push("signs zone");
        }
        if k.at_parent {
            does.push("DS at parent");
        }
        w(
            out,
            format!("key {} {}: {}", k.tag, k.role, does.join(", ")),
        );
    }
    for line in signer.ds_lines(ttl) {
        w(out, format!("parent DS: {line}"));
    }
    let Some(r) = signer.rollover() else {
        w(out, "rollover: none".into());
        return;
    };
    w(
        out,
        format!(
            "rollover: {} {} -> {}, step {} since {}",
            r.kind,
            r.old,
            r.new,
            r.step,
            utc(r.since)
        ),
    );
    let (next, at, why) = r.next();
    let what = match next {
        Some(step) => format!("step {step}"),
        None => "done".into(),
    };
    w(out, format!("next: {what} from {} ({why})", utc(at)));
    if r.auto && !r.waits_for_parent() {
        w(out, "auto: the server takes this step at that time".into());
    }
    let todo = match (r.kind, r.step, next) {
        (Role::Ksk, Step::Submitted, _) | (Role::Csk, Step::Published, _) => Some(format!(
            "add the DS of key {} at the parent (both DS records above); run --next once it serves it",
            r.new
        )),
        (Role::Ksk | Role::Csk, _, None) => Some(format!(
            "after --next, remove the DS of key {} at the parent",
            r.old
        )),
        _ => None,
    };
    if let Some(todo) = todo {
        w(out, format!("to do: {todo}"));
    }
}

/// Writes a private key file readable by its owner alone, in a directory only its owner may
/// enter when it is made here; an existing file is kept unless `replace`.
fn write_private(path: &Path, bytes: &[u8], replace: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            std::io::Error::new(
                e.kind(),
                "a key exists already (give --force to replace it)",
            )
        } else {
            e
        }
    })?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The decision for a client as the running server makes it (drains, forces and health
/// included), asked through its admin API; from the zone files when told to (`--offline`,
/// `--probe`) or when no server answers, saying so.
pub fn route(args: &RouteArgs) -> Result<String, CliError> {
    let why = if args.probe {
        Some("--probe: decided here from one round of probes")
    } else if args.offline {
        Some("--offline")
    } else if args.zones.is_some() || !args.geoip.is_empty() {
        Some("files given with --zones or --geoip")
    } else {
        None
    };
    if let Some(why) = why {
        return offline_route(args, why);
    }
    let config = FileConfig::read(
        args.config
            .as_deref()
            .unwrap_or(Path::new(config::DEFAULT_CONFIG_FILE)),
        args.config.is_some(),
    )?;
    let base = match &args.server {
        Some(s) if s.contains("://") => s.trim_end_matches('/').to_string(),
        Some(s) => format!("http://{s}"),
        None => format!(
            "http://{}",
            config
                .admin_listen
                .map_or(config::DEFAULT_ADMIN_LISTEN.to_string(), |a| a.to_string())
        ),
    };
    let token = crate::admin::auth::Tokens::load(
        args.admin_token_file.as_deref(),
        std::env::var("MERIDIAN_ADMIN_TOKEN").ok(),
    )
    .map_err(|e| CliError::Usage(e.to_string()))?
    .first_secret();
    match ask_server(&base, args, token) {
        Ok(out) => Ok(out),
        Err(Asked::Unreachable(e)) => {
            offline_route(args, &format!("no Meridian answered at {base}: {e}"))
        }
        Err(Asked::Refused(message)) => Err(CliError::Server { base, message }),
    }
}

/// Why asking the server gave no route.
enum Asked {
    /// Nothing answered: the files are the next best source.
    Unreachable(String),
    /// The server answered with an error: it stands (an unknown name, a bad client).
    Refused(String),
}

fn ask_server(base: &str, args: &RouteArgs, token: Option<String>) -> Result<String, Asked> {
    crate::health::probe::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Asked::Unreachable(e.to_string()))?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(1))
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| Asked::Unreachable(e.to_string()))?;
        let format = if args.json { "json" } else { "text" };
        let mut request = client.get(format!("{base}/api/v1/route")).query(&[
            ("name", args.name.as_str()),
            ("client", args.client.as_str()),
            ("format", format),
        ]);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.map_err(|e| {
            Asked::Unreachable(if e.is_connect() {
                "cannot connect".to_string()
            } else if e.is_timeout() {
                "no answer within 5 s".to_string()
            } else {
                e.to_string()
            })
        })?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| Asked::Unreachable(e.to_string()))?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(body);
            return Err(Asked::Refused(format!("{status}: {message}")));
        }
        Ok(if args.json {
            let v: serde_json::Value = serde_json::from_str(&body)
                .map_err(|e| Asked::Refused(format!("not JSON: {e}")))?;
            format!(
                "{}\n",
                serde_json::to_string_pretty(&v).expect("JSON prints")
            )
        } else {
            body
        })
    })
}

/// The decision from the zone files, headed (on stderr for JSON) by why it is offline.
fn offline_route(args: &RouteArgs, why: &str) -> Result<String, CliError> {
    let note = format!(
        "offline ({why}): decided from the zone files; drains, forces, the server's probe \
         results, load reports (spillover) and the latency map are not seen\n"
    );
    let out = route_from_files(args)?;
    if args.json {
        eprint!("{note}");
        Ok(out)
    } else {
        Ok(note + &out)
    }
}

fn route_from_files(args: &RouteArgs) -> Result<String, CliError> {
    let dir = args
        .zones
        .as_deref()
        .unwrap_or(Path::new(config::DEFAULT_ZONES));
    let mut zones = zone::load_dir(dir)?;
    // A key that does not load is shown, not fatal: the route is explained all the same.
    let key_error = zones
        .attach_keys(&args.state_dir)
        .err()
        .map(|e| e.to_string());
    let geo = Arc::new(GeoDb::open_or_embedded(&args.geoip)?);
    let mut state = Snapshot::new(zones, geo, &crate::metrics::Metrics::default());
    // Probe health is put into a new state below; that state shares these zones.
    let zones = state.zones.clone();
    let query = RouteQuery::parse(&zones, &args.name, &args.client).map_err(|e| {
        CliError::Usage(match e {
            QueryError::Client(_) => format!("--client {e}"),
            QueryError::Name { .. } => format!("--name {e}"),
            QueryError::NoZone(_) | QueryError::NotSteered { .. } => e.to_string(),
        })
    })?;
    let round = if args.probe {
        crate::control::room_for_a_runtime().map_err(CliError::Runtime)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(CliError::Runtime)?;
        Some(runtime.block_on(crate::health::monitor::probe_once(query.zone)))
    } else {
        None
    };
    if let Some(round) = &round {
        let view = crate::health::view::view_of_round(query.zone, round);
        state = state.with_health(query.zone.index, view);
    }
    let cluster = match &args.config {
        Some(path) => FileConfig::read(path, true)?.checked_cluster,
        None => None,
    };
    let quorum = match cluster {
        Some(c) => {
            crate::control::room_for_a_runtime().map_err(CliError::Runtime)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(CliError::Runtime)?;
            let records = runtime
                .block_on(async {
                    tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        crate::cluster::read_records(&c),
                    )
                    .await
                })
                .map_err(|_| CliError::Cluster("etcd did not answer within 5 s".into()))?
                .map_err(|e| CliError::Cluster(e.to_string()))?;
            // Latency as a node at this configuration's location would rank it.
            let peers = crate::cluster::peer_views(&records, &c.node, c.quorum, c.location);
            let votes = crate::health::view::ZoneVotes::resolve(
                &peers,
                &query.zone.origin.to_string(),
                &query.zone.regions,
                query.zone.quorum,
            );
            let view = state
                .health(query.zone)
                .clone()
                .with_vantages(votes.location, votes.vantages);
            state = state.with_health(query.zone.index, view);
            Some(crate::cluster::explain(&records, query.zone, c.quorum))
        }
        None => None,
    };
    // Compiled as the server serves it, so the scope shown is the one DNS answers with.
    let state = state.compiled();
    let now = crate::dns::cookie::now();
    let key_error = key_error.filter(|_| query.zone.signer().is_none());
    let dnssec = crate::route::DnssecView::of(query.zone, now, key_error);
    let mut route = Route::explain(&state, query, round.as_deref());
    route.quorum = quorum;
    route.dnssec = dnssec;
    if args.json {
        let mut s = serde_json::to_string_pretty(&route).expect("route serializes");
        s.push('\n');
        return Ok(s);
    }
    Ok(route.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What the subscriber writes, kept.
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Kept {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The human line of one event with outside strings in its fields.
    fn human_line(colour: bool) -> String {
        let out = Arc::new(Mutex::new(Vec::new()));
        let kept = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Kept(kept.clone()))
            .with_ansi(colour)
            .fmt_fields(EscapedFields)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let reason = "ok\n2026-01-01T00:00:00Z ERROR forged\r\u{1b}[2J\u{85}\u{2028}";
            info!(by = "ops", reason = %reason, name = "a\nb", "operator override");
        });
        String::from_utf8(out.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn outside_strings_in_human_log_fields_are_escaped() {
        let line = human_line(false);
        assert_eq!(line.lines().count(), 1, "{line:?}");
        assert!(
            line.trim_end().ends_with(
                r#"operator override by="ops" reason=ok\n2026-01-01T00:00:00Z ERROR forged\r\u{1b}[2J\u{85}\u{2028} name="a\nb""#
            ),
            "{line:?}"
        );
        assert!(!line.contains('\u{1b}'), "{line:?}");
    }

    #[test]
    fn colour_is_the_formatters_own_and_values_stay_escaped() {
        let line = human_line(true);
        assert!(line.contains("\u{1b}[3mreason\u{1b}[0m"), "{line:?}");
        assert!(line.contains(r"forged\r\u{1b}[2J"), "{line:?}");
        assert_eq!(line.lines().count(), 1, "{line:?}");
    }
}
