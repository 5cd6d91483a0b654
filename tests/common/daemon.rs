//! A third-party daemon (unbound, kresd) on a free loopback port, its output kept in a log,
//! killed on drop.
//!
//! A port found free can be taken before the daemon binds it (another test's listener; the
//! daemon binds TCP as well as UDP): such a daemon exits at once, and it is started again on
//! another port instead of being waited for until the deadline.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a daemon may take to answer after it started.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How many times a daemon that exited at start is started again on another port.
const ATTEMPTS: usize = 5;

pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts `command(port)` with its stdout and stderr in `<dir>/<name>-<port>.log` and
    /// waits until `ready(addr)`; panics with the log when it never gets there.
    pub fn start(
        dir: &Path,
        name: &str,
        mut command: impl FnMut(u16) -> Command,
        ready: impl Fn(SocketAddr) -> bool,
    ) -> Daemon {
        let mut exits = Vec::new();
        for _ in 0..ATTEMPTS {
            let port = free_port();
            let log = dir.join(format!("{name}-{port}.log"));
            let out = std::fs::File::create(&log).expect("daemon log");
            let child = command(port)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("daemon log"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("start {name}: {e}"));
            let mut daemon = Daemon {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                log,
            };
            let deadline = Instant::now() + READY_DEADLINE;
            loop {
                if let Ok(Some(status)) = daemon.child.try_wait() {
                    exits.push(format!("port {port}: {status}\n{}", daemon.log_text()));
                    break;
                }
                if ready(daemon.addr) {
                    return daemon;
                }
                assert!(
                    Instant::now() < deadline,
                    "{name} on port {port} did not answer in {READY_DEADLINE:?}; its log:\n{}",
                    daemon.log_text()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!(
            "{name} exited at start {ATTEMPTS} times:\n{}",
            exits.join("\n")
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A loopback port free now for both UDP and TCP.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("a free UDP port");
        let port = udp.local_addr().expect("bound").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
