//! Harness for whole-binary tests: spawn `meridian serve` on port 0, read the bound addresses
//! from its `listening` log lines, query it with hickory's client or with hand-built packets,
//! and kill it on drop (hickory `bin/tests/integration/server_harness.rs`).

// Each test binary compiles this module on its own and uses only some of it.
#![allow(dead_code)]

pub mod browser;
pub mod daemon;
pub mod mmdb;
pub mod probe_targets;
pub mod test_ca;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hickory_net::client::Client;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::DnsHandle;
use hickory_proto::op::{DnsRequest, DnsRequestOptions, DnsResponse, Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};

/// How long the server may take to report every listener.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long one query may take, end to end, before the test fails.
pub const QUERY_DEADLINE: Duration = Duration::from_secs(10);
/// How long a raw exchange waits for a response that should come.
pub const RAW_DEADLINE: Duration = Duration::from_secs(5);

pub type DnsClient = Client<TokioRuntimeProvider>;

/// A running `meridian serve`, killed on drop.
pub struct Server {
    child: Child,
    addrs: Vec<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
    /// The private state directory, removed with the server.
    _state_dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts `meridian serve` on `127.0.0.1:0` with the shipped zones and JSON logs, plus
    /// `args` (e.g. `["--dns-listen", "[::1]:0"]`), and waits for one `listening` line per
    /// `--dns-listen`.
    pub fn start(args: &[&str]) -> Server {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        Server::start_with_zones(&repo.join("zones"), args)
    }

    /// Like [`Server::start`], with the zone files of `zones` instead of the shipped ones.
    pub fn start_with_zones(zones: &Path, args: &[&str]) -> Server {
        Server::start_with_env(zones, args, &[])
    }

    /// Like [`Server::start_with_zones`], with extra environment variables for the child
    /// (e.g. `("RUST_LOG", "info,meridian::health=debug")`).
    pub fn start_with_env(zones: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meridian"));
        cmd.envs(env.iter().copied());
        cmd.arg("serve").arg("--zones").arg(zones).args([
            "--dns-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ]);
        if !args.contains(&"--admin-listen") {
            // Never the fixed default port: tests run side by side.
            cmd.args(["--admin-listen", "127.0.0.1:0"]);
        }
        // Never a shared journal: each server gets its own state directory unless given one.
        let state_dir = if args.contains(&"--state-dir") {
            None
        } else {
            let dir = tempfile::tempdir().expect("a state directory");
            cmd.arg("--state-dir").arg(dir.path());
            Some(dir)
        };
        cmd.args(args)
            // Away from the repository, so no stray meridian.toml is picked up.
            .current_dir(env!("CARGO_TARGET_TMPDIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn meridian serve");
        let stderr = child.stderr.take().expect("stderr is piped");

        let expected = 1 + args.iter().filter(|a| **a == "--dns-listen").count();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        {
            let log = log.clone();
            // Drains stderr for the life of the child, so it never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }

        let mut server = Server {
            child,
            addrs: Vec::new(),
            log,
            _state_dir: state_dir,
        };
        let deadline = Instant::now() + START_DEADLINE;
        while server.addrs.len() < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line) {
                        server.addrs.push(addr);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "meridian reported {} of {expected} listeners within {START_DEADLINE:?}; \
                     stderr:\n{}",
                    server.addrs.len(),
                    server.log_text()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stderr closed: the process ended. Give the reader a moment to finish.
                    let status = wait_exit(&mut server.child, Duration::from_secs(5));
                    panic!(
                        "meridian exited ({status:?}) before reporting {expected} listeners; \
                         stderr:\n{}",
                        server.log_text()
                    )
                }
            }
        }
        server
    }

    /// The first DNS address (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every DNS address, in `--dns-listen` order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Sends SIGTERM and waits (up to `limit`) for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) with a child's pid and a valid signal number.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        wait_exit(&mut self.child, limit)
    }

    /// The server's process id, for signals (e.g. SIGHUP).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The admin listener's address, from its `listening admin=` line.
    pub fn admin_addr(&self) -> SocketAddr {
        self.log_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v["fields"]["admin"].as_str().map(str::to_string))
            .expect("a `listening admin=` line")
            .parse()
            .expect("an address")
    }

    /// Everything the server has written to stderr so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Every stderr line so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Panics (with the log) if the server has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("meridian exited ({status}); stderr:\n{}", self.log_text());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => return None,
        }
    }
}

/// The address of a `{"fields":{"message":"listening","dns":"ADDR"}}` line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields")?;
    if fields.get("message")?.as_str()? != "listening" {
        return None;
    }
    fields.get("dns")?.as_str()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// hickory client

/// A hickory UDP client for `addr`.
pub async fn udp_client(addr: SocketAddr) -> DnsClient {
    let provider = TokioRuntimeProvider::default();
    let stream = UdpClientStream::builder(addr, provider)
        .with_timeout(Some(Duration::from_secs(5)))
        .build();
    let (client, bg) = DnsClient::from_sender(stream);
    tokio::spawn(bg);
    client
}

/// A hickory TCP client for `addr`.
pub async fn tcp_client(addr: SocketAddr) -> DnsClient {
    let provider = TokioRuntimeProvider::default();
    let (connect, handle) =
        TcpClientStream::new(addr, None, Some(Duration::from_secs(5)), provider);
    let stream = tokio::time::timeout(QUERY_DEADLINE, connect)
        .await
        .unwrap_or_else(|_| panic!("TCP connect to {addr} timed out"))
        .unwrap_or_else(|e| panic!("TCP connect to {addr}: {e}"));
    let (client, bg) = DnsClient::with_timeout(stream, handle, Duration::from_secs(5));
    tokio::spawn(bg);
    client
}

/// One UDP and one TCP client for `addr`, labelled for assertion messages.
pub async fn clients(addr: SocketAddr) -> Vec<(&'static str, DnsClient)> {
    vec![
        ("udp", udp_client(addr).await),
        ("tcp", tcp_client(addr).await),
    ]
}

/// A query message for `name`/`rtype`. `payload`: `None` sends no OPT record; `Some(n)` sends
/// EDNS(0) advertising `n`, with the ECS option `ecs` (e.g. `"81.2.69.0/24"`) if given.
pub fn query_message(
    name: &str,
    rtype: RecordType,
    ecs: Option<&str>,
    payload: Option<u16>,
) -> Message {
    let mut qname = Name::from_ascii(name).expect("valid name");
    qname.set_fqdn(true);
    let mut msg = Message::query();
    msg.add_query(Query::query(qname, rtype));
    match payload {
        Some(p) => {
            let mut edns = Edns::new();
            edns.set_max_payload(p);
            if let Some(subnet) = ecs {
                let subnet = ClientSubnet::from_str(subnet).expect("ECS subnet parses");
                edns.options_mut().insert(EdnsOption::Subnet(subnet));
            }
            msg.set_edns(edns);
        }
        None => assert!(ecs.is_none(), "ECS needs EDNS: give a payload"),
    }
    msg
}

/// Sends `msg` and returns the response; panics on error or after [`QUERY_DEADLINE`].
pub async fn send(client: &DnsClient, msg: Message) -> DnsResponse {
    let mut options = DnsRequestOptions::default();
    options.use_edns = msg.edns.is_some();
    let summary = format!("{:?}", msg.queries);
    let mut responses = client.send(DnsRequest::new(msg, options));
    match tokio::time::timeout(QUERY_DEADLINE, responses.next()).await {
        Ok(Some(Ok(response))) => response,
        Ok(Some(Err(e))) => panic!("query {summary}: {e}"),
        Ok(None) => panic!("query {summary}: no response"),
        Err(_) => panic!("query {summary}: no response within {QUERY_DEADLINE:?}"),
    }
}

/// Queries `name`/`rtype`; see [`query_message`] for `ecs` and `payload`.
pub async fn query(
    client: &DnsClient,
    name: &str,
    rtype: RecordType,
    ecs: Option<&str>,
    payload: Option<u16>,
) -> DnsResponse {
    send(client, query_message(name, rtype, ecs, payload)).await
}

/// The A records (as text) of www.example.com for the ECS client network `net`, over UDP.
pub async fn www_answer(server: &Server, net: &str) -> Vec<String> {
    let client = udp_client(server.addr()).await;
    let r = query(
        &client,
        "www.example.com.",
        RecordType::A,
        Some(net),
        Some(1232),
    )
    .await;
    r.answers.iter().map(|a| a.data.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Raw packets

/// A UDP socket connected to the server, for hand-built packets.
pub struct RawUdp {
    socket: UdpSocket,
}

impl RawUdp {
    pub fn connect(server: SocketAddr) -> RawUdp {
        let local = if server.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        };
        let socket = UdpSocket::bind(local).expect("bind UDP client socket");
        socket.connect(server).expect("connect UDP socket");
        RawUdp { socket }
    }

    pub fn send(&self, packet: &[u8]) {
        self.socket.send(packet).expect("send UDP packet");
    }

    /// The next datagram, or `None` if nothing arrives within `wait`.
    pub fn recv(&self, wait: Duration) -> Option<Vec<u8>> {
        self.socket
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .expect("set read timeout");
        let mut buf = vec![0u8; 65535];
        match self.socket.recv(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                Some(buf)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            // ICMP port unreachable and the like.
            Err(e) => panic!("UDP receive: {e}"),
        }
    }

    /// Sends `packet` and returns the first response, or `None` within `wait`.
    pub fn exchange(&self, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
        self.send(packet);
        self.recv(wait)
    }
}

/// One UDP exchange on a fresh socket: the response, or `None` if none came within `wait`.
pub fn udp_exchange(server: SocketAddr, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    RawUdp::connect(server).exchange(packet, wait)
}

/// A TCP connection to the server speaking length-prefixed messages (RFC 1035 §4.2.2).
pub struct RawTcp {
    pub stream: TcpStream,
}

impl RawTcp {
    pub fn connect(server: SocketAddr) -> RawTcp {
        let stream =
            TcpStream::connect_timeout(&server, RAW_DEADLINE).expect("connect TCP to server");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_write_timeout(Some(RAW_DEADLINE))
            .expect("write timeout");
        RawTcp { stream }
    }

    /// Writes `packet` with its 2-octet length prefix.
    pub fn send(&mut self, packet: &[u8]) {
        let len = u16::try_from(packet.len()).expect("packet fits a TCP frame");
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(packet);
        self.stream.write_all(&framed).expect("TCP write");
    }

    /// Writes raw bytes, no framing.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("TCP write");
    }

    /// The next framed message; `None` on timeout (`wait`) or when the server closes.
    pub fn recv(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut len = [0u8; 2];
        self.read_exact_by(&mut len, deadline)?;
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        self.read_exact_by(&mut msg, deadline)?;
        Some(msg)
    }

    fn read_exact_by(&mut self, buf: &mut [u8], deadline: Instant) -> Option<()> {
        let mut filled = 0;
        while filled < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            match self.stream.read(&mut buf[filled..]) {
                Ok(0) => return None,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None;
                }
                Err(_) => return None,
            }
        }
        Some(())
    }

    /// Sends `packet` and returns the next message, or `None` within `wait`.
    pub fn exchange(&mut self, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
        self.send(packet);
        self.recv(wait)
    }

    /// True when the server has closed the connection (EOF or reset) within `wait`, false if
    /// it is still open then. Panics if data arrives instead.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).expect("timeout");
        let mut buf = [0u8; 512];
        match self.stream.read(&mut buf) {
            Ok(0) => true,
            Ok(n) => panic!("expected no data, got {n} octets: {:02x?}", &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(_) => true,
        }
    }
}

/// One TCP exchange on a fresh connection.
pub fn tcp_exchange(server: SocketAddr, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    RawTcp::connect(server).exchange(packet, wait)
}

/// Hand-built query packets, so that malformed ones can be made.
pub mod wire {
    pub const QTYPE_A: u16 = 1;
    pub const QTYPE_NS: u16 = 2;
    pub const QTYPE_TXT: u16 = 16;
    pub const QTYPE_AAAA: u16 = 28;
    pub const CLASS_IN: u16 = 1;
    pub const OPT: u16 = 41;
    pub const ECS: u16 = 8;

    /// A name in uncompressed wire form.
    pub fn name(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in name.split('.').filter(|l| !l.is_empty()) {
            out.push(u8::try_from(label.len()).expect("label fits"));
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    /// A header: `flags` is the second 16-bit word (QR, opcode, AA, TC, RD, RA, Z, RCODE).
    pub fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
        [id, flags, qd, an, ns, ar]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect()
    }

    /// A question entry.
    pub fn question(qname: &str, qtype: u16, qclass: u16) -> Vec<u8> {
        let mut out = name(qname);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&qclass.to_be_bytes());
        out
    }

    /// An OPT pseudo-RR (RFC 6891 §6.1.2) with `options` as (code, data) pairs.
    pub fn opt(payload: u16, version: u8, dnssec_ok: bool, options: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut rdata = Vec::new();
        for (code, data) in options {
            rdata.extend_from_slice(&code.to_be_bytes());
            rdata.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
            rdata.extend_from_slice(data);
        }
        let mut out = vec![0]; // root owner
        out.extend_from_slice(&OPT.to_be_bytes());
        out.extend_from_slice(&payload.to_be_bytes());
        out.push(0); // extended RCODE
        out.push(version);
        out.extend_from_slice(&(if dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
        out.extend_from_slice(&u16::try_from(rdata.len()).unwrap().to_be_bytes());
        out.extend_from_slice(&rdata);
        out
    }

    /// An ECS option body (RFC 7871 §6) with the address octets exactly as given.
    pub fn ecs(family: u16, source: u8, scope: u8, address: &[u8]) -> (u16, Vec<u8>) {
        let mut data = family.to_be_bytes().to_vec();
        data.push(source);
        data.push(scope);
        data.extend_from_slice(address);
        (ECS, data)
    }

    /// A standard query (RD clear) for one question, with `opt` (an OPT RR) if given.
    pub fn query(id: u16, qname: &str, qtype: u16, opt: Option<Vec<u8>>) -> Vec<u8> {
        let ar = u16::from(opt.is_some());
        let mut out = header(id, 0x0000, 1, 0, 0, ar);
        out.extend(question(qname, qtype, CLASS_IN));
        if let Some(opt) = opt {
            out.extend(opt);
        }
        out
    }

    pub fn id(packet: &[u8]) -> u16 {
        u16::from_be_bytes([packet[0], packet[1]])
    }

    pub fn is_response(packet: &[u8]) -> bool {
        packet[2] & 0x80 != 0
    }

    pub fn opcode(packet: &[u8]) -> u8 {
        (packet[2] >> 3) & 0x0f
    }

    /// The low four bits of the RCODE, from the header.
    pub fn rcode_low(packet: &[u8]) -> u8 {
        packet[3] & 0x0f
    }

    pub fn tc(packet: &[u8]) -> bool {
        packet[2] & 0x02 != 0
    }

    pub fn count(packet: &[u8], index: usize) -> u16 {
        u16::from_be_bytes([packet[4 + 2 * index], packet[5 + 2 * index]])
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic randomness for fuzzing (no crates).

/// xorshift64*: small, seeded, good enough to shake a packet parser.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

/// Runs `meridian serve` with `args` on the shipped zones and waits (bounded) for it to exit,
/// as it must when a file it is given is refused at start. Returns the exit status (`None` if it was
/// still running at the deadline and had to be killed) and its stderr.
pub fn serve_expecting_exit(args: &[&str]) -> (Option<std::process::ExitStatus>, String) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::tempdir().unwrap();
    let stderr_path = scratch.path().join("stderr");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meridian"));
    cmd.arg("serve")
        .arg("--zones")
        .arg(repo.join("zones"))
        .args([
            "--dns-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ]);
    if !args.contains(&"--state-dir") {
        cmd.arg("--state-dir").arg(scratch.path());
    }
    let mut child = cmd
        .args(args)
        .current_dir(scratch.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("spawn meridian serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(&stderr_path).unwrap())
}

#[track_caller]
pub fn assert_refused_at_start(args: &[&str], words: &[&str]) {
    let (status, stderr) = serve_expecting_exit(args);
    let status = status.unwrap_or_else(|| panic!("still running after 20 s; stderr:\n{stderr}"));
    assert!(!status.success(), "exit {status}; stderr:\n{stderr}");
    for w in words {
        assert!(stderr.contains(w), "no {w:?} in:\n{stderr}");
    }
}

/// Waits (bounded) for a log line holding every one of `words`.
pub async fn wait_for_log(server: &Server, words: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !server
        .log_lines()
        .iter()
        .any(|l| words.iter().all(|w| l.contains(w)))
    {
        assert!(
            Instant::now() < deadline,
            "no log line with {words:?}:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded) until the server's steering is compiled for what it serves now
/// (`meridian_steering_compiled` 1 for every zone): from then on, ECS scopes are the compiled
/// ones. Admin writes swap the serving state before they answer, so this follows them too.
pub fn wait_compiled(server: &Server) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(server.admin_addr()) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let request = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
            last.clear();
            if s.write_all(request.as_bytes()).is_ok() && s.read_to_string(&mut last).is_ok() {
                let gauges: Vec<&str> = last
                    .lines()
                    .filter(|l| l.starts_with("meridian_steering_compiled{"))
                    .collect();
                if !gauges.is_empty() && gauges.iter().all(|l| l.ends_with(" 1")) {
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("steering not compiled within 30 s:\n{last}");
}

/// A TCP connection from `local` (an address of 127.0.0.0/8: tests take the place of several
/// clients) to `server`, with a 3 s read timeout.
pub fn connect_from(local: &str, server: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&format!("{local}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.connect(&server.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    stream
}

/// Makes a FIFO at `path`: in place of a file the server reads, it would block an `open` until
/// a writer comes.
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path and a mode.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// A `zones` directory in `dir` holding `console.test.` (see [`probed_zone`]).
pub fn probed_zones(dir: &Path, ports: [u16; 3]) -> PathBuf {
    let zones = dir.join("zones");
    std::fs::create_dir(&zones).unwrap();
    std::fs::write(zones.join("console.test.toml"), probed_zone(ports)).unwrap();
    zones
}

/// `console.test.`: a zone of three regions (us-east, eu-west, ap-southeast) with the
/// steered name `www`; their endpoints are probed over TCP at `ports` on loopback.
fn probed_zone(ports: [u16; 3]) -> String {
    let mut s = String::from(
        r#"zone = "console.test."
records = '''
$TTL 3600
@    IN SOA ns1.console.test. hostmaster.console.test. ( 1 7200 3600 1209600 300 )
@    IN NS  ns1
ns1  IN A   192.0.2.53
'''

[health]
check = "tcp"
interval = 0.2
timeout = 0.1
rise = 2
fall = 2
"#,
    );
    let regions = [
        ("us-east", 39.04, -77.49, "192.0.2.10"),
        ("eu-west", 53.35, -6.26, "198.51.100.10"),
        ("ap-southeast", -33.87, 151.21, "203.0.113.10"),
    ];
    for ((name, lat, lon, address), port) in regions.into_iter().zip(ports) {
        s.push_str(&format!(
            "\n[regions.{name}]\nlocation = {{ lat = {lat}, lon = {lon} }}\n\
             endpoints = [{{ address = \"{address}\", check-address = \"127.0.0.1:{port}\" }}]\n\
             health = {{ port = {port} }}\n"
        ));
    }
    s.push_str(
        "\n[steered.www]\nregions = [\"us-east\", \"eu-west\", \"ap-southeast\"]\nttl = 30\n",
    );
    s
}

/// `count` distinct client /24s spread over the IPv4 unicast space (none in 0/8, 10/8, 127/8
/// or from 224/4 on), drawn with `seed`.
pub fn unicast_24s(count: usize, seed: u64) -> Vec<String> {
    let mut rng = XorShift::new(seed);
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while out.len() < count {
        let a = rng.next_u64() as u32;
        let first = a >> 24;
        if first == 0 || first == 10 || first == 127 || first >= 224 {
            continue;
        }
        let net = format!("{}.{}.{}.0/24", first, (a >> 16) & 255, (a >> 8) & 255);
        if seen.insert(net.clone()) {
            out.push(net);
        }
    }
    out
}
