//! The command line: `serve`, `check` and `route`, and the logs `serve` writes.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
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
    /// country database]
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
    /// Directory of zone files
    #[arg(long, default_value = config::DEFAULT_ZONES)]
    pub zones: PathBuf,
    /// MaxMind DB file; repeat for separate IPv4 and IPv6 files [default: the embedded
    /// country database]
    #[arg(long)]
    pub geoip: Vec<PathBuf>,
    /// Probe every endpoint once and decide with the results
    #[arg(long)]
    pub probe: bool,
    /// A meridian.toml with [cluster]: also show what each node sees of the zone's endpoints
    /// and what the quorum rule makes of it, read from etcd
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
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
        };
        Config::merge(flags, file)
    }
}

/// Loads zones, GeoIP and the journal, starts the control plane, binds every listener, then
/// serves until SIGINT or SIGTERM. `env_token` is the value of MERIDIAN_ADMIN_TOKEN.
pub fn serve(config: Config, env_token: Option<String>) -> Result<(), CliError> {
    // The admin side gets a small share of the descriptors; DNS and the probes keep the rest.
    let admin_connections = crate::admin::listen::connection_cap(raise_fd_limit());
    let zones = zone::load_dir(&config.zones)?;
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
    let state = Snapshot::new(zones, geo, &metrics).shared();
    let rrl = config.rrl_rate.map(|rate| crate::dns::rrl::Limits {
        rate,
        slip: config.rrl_slip,
    });
    let services = Arc::new(crate::dns::Services::new(cookies, rrl, metrics.clone()));
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    crate::control::start(crate::control::Setup {
        state: state.clone(),
        metrics,
        journal,
        tokens,
        zones_dir: config.zones.clone(),
        admin_listener,
        ready: ready.clone(),
        geoip: geo_files,
        admin_cert,
        admin_connections,
        admin_hosts: config.admin_hosts.clone(),
        cluster: config.cluster.clone(),
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
    let zones = zone::load_dir(&args.zones)?;
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

pub fn route(args: &RouteArgs) -> Result<String, CliError> {
    let zones = zone::load_dir(&args.zones)?;
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
            Some(crate::cluster::explain(&records, query.zone, c.quorum))
        }
        None => None,
    };
    // Compiled as the server serves it, so the scope shown is the one DNS answers with.
    let state = state.compiled();
    let mut route = Route::explain(&state, query, round.as_deref());
    route.quorum = quorum;
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
