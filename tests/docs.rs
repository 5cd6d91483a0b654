//! Every snippet in README.md and docs/*.md is run, by the convention docs/README.md states
//! under "Snippets": a fence's language and tags say what a block is and how it runs.
//!
//! The commands of one document run in order in one shell, started in new network, PID and
//! mount namespaces (`unshare`): the documents' fixed addresses (127.0.0.1:5353, :8053, :53)
//! are that session's own, nothing reaches beyond its loopback, and every process a document
//! starts ends with its shell (the shell is the namespace's init).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use meridian::config::{Config, FileConfig, Flags};

/// How long one command may take.
const COMMAND_DEADLINE: Duration = Duration::from_secs(60);
/// How long `meridian serve` may take to listen and compile its steering (a debug build walks
/// the embedded database in about 12 s on an idle core).
const SERVE_DEADLINE: Duration = Duration::from_secs(180);
/// The zone a `toml zone-part` block is added to: an apex with SOA and NS, nothing else.
const ZONE_PART_HEAD: &str = "zone = \"example.com.\"\nrecords = '''\n\
    @ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ 3600 IN NS ns1\n\
    ns1 3600 IN A 192.0.2.53\n'''\n";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md, relative to the repository.
fn documents() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/ exists")
        .map(|e| PathBuf::from("docs").join(e.expect("docs/ lists").file_name()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    docs.insert(0, PathBuf::from("README.md"));
    docs
}

fn read(doc: &Path) -> String {
    std::fs::read_to_string(repo().join(doc)).unwrap_or_else(|e| panic!("{}: {e}", doc.display()))
}

#[derive(Debug)]
struct Block {
    /// `file:line` of the opening fence.
    at: String,
    lang: String,
    tags: Vec<String>,
    body: String,
}

impl Block {
    fn tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// `file=PATH`: where the block is written in the session's directory.
    fn file(&self) -> Option<&str> {
        self.tags.iter().find_map(|t| t.strip_prefix("file="))
    }
}

/// The fenced blocks of a Markdown text. A fence may be indented (in a list item); the
/// indentation is taken off its lines.
fn blocks(doc: &Path, text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let trimmed = line.trim_start();
        let Some(info) = trimmed.strip_prefix("```") else {
            continue;
        };
        let indent = line.len() - trimmed.len();
        let mut words = info.split_whitespace();
        let lang = words.next().unwrap_or("").to_string();
        let tags = words.map(str::to_string).collect();
        let mut body = String::new();
        let mut closed = false;
        for (_, l) in lines.by_ref() {
            if l.trim() == "```" {
                closed = true;
                break;
            }
            let l = match l.get(..indent) {
                Some(pad) if pad.trim().is_empty() => &l[indent..],
                _ => l.trim_start(),
            };
            body.push_str(l);
            body.push('\n');
        }
        assert!(
            closed,
            "{}:{}: the fence never closes",
            doc.display(),
            i + 1
        );
        out.push(Block {
            at: format!("{}:{}", doc.display(), i + 1),
            lang,
            tags,
            body,
        });
    }
    out
}

/// The Markdown outside fenced blocks: where links and headings are.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Matching expected output

/// Lines with runs of white space made one space; blank lines dropped.
fn normalize(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// `pattern` against one line: `...` inside it stands for any text.
fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("...").collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == line;
    }
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Expected lines against the actual ones, in order and whole; a line `...` stands for any
/// number of lines.
fn output_matches(expected: &[String], actual: &[String]) -> bool {
    match expected.first() {
        None => actual.is_empty(),
        Some(e) if e == "..." => {
            (0..=actual.len()).any(|skip| output_matches(&expected[1..], &actual[skip..]))
        }
        Some(e) => {
            !actual.is_empty()
                && line_matches(e, &actual[0])
                && output_matches(&expected[1..], &actual[1..])
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A document's shell session

/// The shell a document's commands run in, in namespaces of its own; killed on drop, which
/// ends every process in them.
struct Session {
    dir: tempfile::TempDir,
    shell: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    /// The `meridian serve` running: its PID in the session and its log file.
    server: Option<(u32, PathBuf)>,
    serves: usize,
}

impl Session {
    /// A fresh directory with copies of the shipped `zones/` and `contrib/`, as in a clone,
    /// and `meridian` on the PATH.
    fn start() -> Session {
        let dir = tempfile::tempdir().expect("a session directory");
        let bin = dir.path().join(".bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_meridian"), bin.join("meridian")).unwrap();
        for shipped in ["zones", "contrib"] {
            copy_tree(&repo().join(shipped), &dir.path().join(shipped));
        }
        let mut cmd = Command::new("unshare");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            cmd.args(["--user", "--map-root-user"]);
        }
        let stderr = std::fs::File::create(dir.path().join(".shell-stderr")).unwrap();
        cmd.args([
            "--net",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "bash",
            "--noprofile",
            "--norc",
        ])
        .current_dir(dir.path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env_remove("MERIDIAN_ADMIN_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr);
        let mut shell = cmd
            .spawn()
            .expect("unshare runs (util-linux; as root, or with user namespaces)");
        let stdin = shell.stdin.take().expect("stdin is piped");
        let stdout = shell.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut session = Session {
            dir,
            shell,
            stdin,
            lines,
            server: None,
            serves: 0,
        };
        let (status, out) = session.run("ip link set lo up");
        assert_eq!(status, 0, "the session's loopback comes up: {out}");
        session
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Sends `script` and waits for the `__done N` line it ends with.
    fn send(&mut self, script: &str, deadline: Duration) -> String {
        writeln!(self.stdin, "{script}").expect("the shell reads");
        let until = Instant::now() + deadline;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("__done ") {
                        return rest.to_string();
                    }
                }
                Err(_) => panic!(
                    "no end of {script:?} within {deadline:?}; shell stderr:\n{}",
                    std::fs::read_to_string(self.path(".shell-stderr")).unwrap_or_default()
                ),
            }
        }
    }

    /// Runs one command in the session's shell (its variables persist); its exit status and
    /// output (stdout and stderr).
    fn run(&mut self, command: &str) -> (i32, String) {
        let out = self.path(".out");
        let status = self.send(
            &format!(
                "{{ {command}\n}} > '{}' 2>&1 < /dev/null; echo \"__done $?\"",
                out.display()
            ),
            COMMAND_DEADLINE,
        );
        let output = std::fs::read_to_string(&out).unwrap_or_default();
        (status.parse().expect("an exit status"), output)
    }

    /// Starts `meridian serve` in the background (stopping the one before) and waits until it
    /// listens and has compiled the steering of its zones; its log so far.
    fn serve(&mut self, command: &str, at: &str) -> String {
        self.stop_server();
        self.serves += 1;
        let log = self.path(&format!(".serve-{}.log", self.serves));
        let pid = self.send(
            &format!(
                "{{ exec {command}\n}} > '{}' 2>&1 < /dev/null & echo \"__done $!\"",
                log.display()
            ),
            COMMAND_DEADLINE,
        );
        let pid: u32 = pid.parse().expect("a PID");
        self.server = Some((pid, log.clone()));
        let steered = self.steered_zones(command);
        let until = Instant::now() + SERVE_DEADLINE;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("listening dns=")
                && text.contains("listening admin=")
                && text.matches("steering compiled").count() >= steered
            {
                return text;
            }
            let (alive, _) = self.run(&format!("kill -0 {pid}"));
            assert!(
                alive == 0 && Instant::now() < until,
                "{at}: `{command}` did not come up (exited: {}); its log:\n{text}",
                alive != 0
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// How many zone files of the serve command's zones directory steer names: each logs
    /// `steering compiled` once it is compiled.
    fn steered_zones(&self, command: &str) -> usize {
        let words: Vec<&str> = command.split_whitespace().collect();
        let zones = words
            .windows(2)
            .find(|w| w[0] == "--zones")
            .map_or("zones", |w| w[1]);
        let Ok(entries) = std::fs::read_dir(self.dir.path().join(zones)) else {
            return 0;
        };
        entries
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .filter(|t| t.contains("[steered."))
            .count()
    }

    /// SIGTERM to the running server, and its exit awaited.
    fn stop_server(&mut self) {
        if let Some((pid, _)) = self.server.take() {
            let (status, out) = self.run(&format!("kill {pid} && wait {pid}"));
            // 143: ended by the SIGTERM itself (before its handler was installed).
            assert!(
                status == 0 || status == 143,
                "meridian serve (pid {pid}) did not stop cleanly: {status} {out}"
            );
        }
    }

    /// Writes a block's `file=PATH` into the session directory.
    fn write(&self, name: &str, body: &str) {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, body).unwrap();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The documents' ways of naming the binary under test, made `meridian`.
fn substitute(command: &str) -> String {
    command
        .replace("cargo run --release -- ", "meridian ")
        .replace("cargo run -- ", "meridian ")
}

/// Whether a command starts the server: `meridian serve`, maybe after `VAR=value`s.
fn is_serve(command: &str) -> bool {
    let mut words = command.split_whitespace().skip_while(|w| w.contains('='));
    words.next() == Some("meridian") && words.next() == Some("serve")
}

/// The commands of a `sh` block: comments and blank lines left out, lines ending in `\`
/// joined to the next.
fn sh_commands(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in body.lines() {
        if current.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
            continue;
        }
        current.push_str(line);
        if line.ends_with('\\') {
            current.push('\n');
        } else {
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

/// The `$ ` commands of a `console` block, each with the output shown under it.
fn console_commands(body: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut continued = false;
    for line in body.lines() {
        if continued {
            let last = out.last_mut().expect("a command continues");
            last.0.push('\n');
            last.0.push_str(line);
            continued = line.ends_with('\\');
        } else if let Some(command) = line.strip_prefix("$ ") {
            out.push((command.to_string(), String::new()));
            continued = line.ends_with('\\');
        } else {
            let last = out
                .last_mut()
                .unwrap_or_else(|| panic!("console output before any `$ ` command: {line:?}"));
            last.1.push_str(line);
            last.1.push('\n');
        }
    }
    out
}

/// Runs one command of a document; `expected` output, when shown, must match, and a command
/// shown without output must succeed.
fn run_command(session: &mut Session, at: &str, command: &str, expected: Option<&str>) {
    let command = substitute(command);
    let (status, output) = if is_serve(&command) {
        (0, session.serve(&command, at))
    } else {
        session.run(&command)
    };
    match expected.map(normalize).filter(|e| !e.is_empty()) {
        Some(expected) => assert!(
            output_matches(&expected, &normalize(&output)),
            "{at}: the output of `{command}` differs from the document's.\n\
             expected:\n{}\nactual (exit {status}):\n{output}",
            expected.join("\n")
        ),
        None => assert_eq!(
            status, 0,
            "{at}: `{command}` failed (exit {status}):\n{output}"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// TOML blocks

/// A PEM certificate, where a block names one that must exist.
fn pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::new(vec!["example.net".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem()
}

/// Every string value of `key`, at any depth.
fn values_of(value: &toml::Value, key: &str, out: &mut Vec<String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                match v {
                    toml::Value::String(s) if k == key => out.push(s.clone()),
                    _ => values_of(v, key, out),
                }
            }
        }
        toml::Value::Array(a) => a.iter().for_each(|v| values_of(v, key, out)),
        _ => {}
    }
}

/// A relative file a block names, made to exist under `base` with `content`.
fn make_exist(base: &Path, name: &str, content: &str) {
    let path = base.join(name);
    if Path::new(name).is_relative() && !path.exists() {
        std::fs::create_dir_all(path.parent().expect("a parent")).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

/// `meridian check` must accept the zone file `text` alone in a zones directory; the files
/// it names (a CA file, a DNSSEC key) are made first.
fn check_zone(at: &str, name: &str, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&zones).unwrap();
    std::fs::write(zones.join(name), text).unwrap();
    let value: toml::Value = toml::from_str(text).unwrap_or_else(|e| panic!("{at}: not TOML: {e}"));
    let mut files = Vec::new();
    values_of(&value, "ca-file", &mut files);
    for f in files {
        make_exist(&zones, &f, &pem());
    }
    let meridian = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(args)
            .arg("--zones")
            .arg(&zones)
            .arg("--state-dir")
            .arg(&state)
            .output()
            .expect("meridian runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{at}: `meridian {}` refused the block:\n{text}",
            args.join(" ")
        );
    };
    if let Some(origin) = value.get("zone").and_then(|z| z.as_str())
        && value.get("dnssec").is_some()
    {
        meridian(&["dnssec", "keygen", "--zone", origin]);
    }
    meridian(&["check"]);
}

/// A `meridian.toml` must read and merge with no flags; the relative files it names are made
/// first (a token file, etcd's PEM files, the zones directory).
fn check_config(at: &str, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meridian.toml");
    std::fs::write(&path, text).unwrap();
    let value: toml::Value = toml::from_str(text).unwrap_or_else(|e| panic!("{at}: not TOML: {e}"));
    let mut tokens = Vec::new();
    values_of(&value, "admin-token-file", &mut tokens);
    for t in tokens {
        make_exist(dir.path(), &t, "ops:0123456789abcdef0123\n");
    }
    if let Some(cluster) = value.get("cluster") {
        for key in ["ca", "cert", "key"] {
            if let Some(f) = cluster.get(key).and_then(|v| v.as_str()) {
                make_exist(dir.path(), f, &pem());
            }
        }
    }
    let file = FileConfig::read(&path, true).unwrap_or_else(|e| panic!("{at}: {e}"));
    Config::merge(Flags::default(), file).unwrap_or_else(|e| panic!("{at}: {e}"));
}

fn check_toml(block: &Block) {
    let name = block
        .file()
        .and_then(|f| Path::new(f).file_name())
        .map_or("zone.toml".to_string(), |n| {
            n.to_string_lossy().into_owned()
        });
    if block.tag("zone") {
        check_zone(&block.at, &name, &block.body);
    } else if block.tag("zone-part") {
        check_zone(
            &block.at,
            "example.com.toml",
            &(ZONE_PART_HEAD.to_string() + &block.body),
        );
    } else if block.tag("config") {
        check_config(&block.at, &block.body);
    } else {
        panic!(
            "{}: a toml block says what it is: `toml zone`, `toml zone-part`, `toml config`, \
             or `toml no-run`",
            block.at
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Running a document

/// What a document's run did: blocks run and blocks marked not to run.
#[derive(Default)]
struct Ran {
    run: usize,
    not_run: Vec<String>,
}

/// Runs every block of `doc` in order, in one session (started when a block needs it).
fn run_document(doc: &Path) -> Ran {
    let text = read(doc);
    let mut session: Option<Session> = None;
    let mut ran = Ran::default();
    for block in blocks(doc, &text) {
        if block.tag("no-run") {
            ran.not_run.push(format!("{} ({})", block.at, block.lang));
            continue;
        }
        match block.lang.as_str() {
            "toml" => {
                check_toml(&block);
                if let Some(f) = block.file() {
                    session
                        .get_or_insert_with(Session::start)
                        .write(f, &block.body);
                }
            }
            "sh" => {
                let s = session.get_or_insert_with(Session::start);
                for command in sh_commands(&block.body) {
                    run_command(s, &block.at, &command, None);
                }
            }
            "console" => {
                let s = session.get_or_insert_with(Session::start);
                for (command, expected) in console_commands(&block.body) {
                    run_command(s, &block.at, &command, Some(&expected));
                }
            }
            "" | "text" => {
                let runnable = block.body.lines().any(|l| {
                    ["$ ", "meridian ", "cargo ", "curl ", "dig "]
                        .iter()
                        .any(|p| l.trim_start().starts_with(p))
                });
                assert!(
                    !runnable,
                    "{}: this block holds commands: make it `sh` or `console`, or mark it \
                     `sh no-run` and say why it cannot run",
                    block.at
                );
                continue;
            }
            // Other languages (yaml, json, promql) are data, not run.
            _ => continue,
        }
        ran.run += 1;
    }
    ran
}

#[test]
fn every_snippet_of_the_readme_and_docs_runs() {
    let handles: Vec<_> = documents()
        .into_iter()
        .map(|doc| {
            let name = doc.display().to_string();
            (name, std::thread::spawn(move || run_document(&doc)))
        })
        .collect();
    let mut failed = Vec::new();
    for (name, handle) in handles {
        match handle.join() {
            Ok(ran) => eprintln!(
                "{name}: {} blocks run; not run: {}",
                ran.run,
                if ran.not_run.is_empty() {
                    "none".to_string()
                } else {
                    ran.not_run.join(", ")
                }
            ),
            Err(panic) => failed.push(format!(
                "{name}: {}",
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn the_example_zone_shown_is_the_shipped_file() {
    let zone = std::fs::read_to_string(repo().join("zones/example.com.toml")).unwrap();
    let shown = blocks(
        Path::new("docs/configuration.md"),
        &read(Path::new("docs/configuration.md")),
    );
    assert!(
        shown.iter().any(|b| b.lang == "toml" && b.body == zone),
        "docs/configuration.md shows zones/example.com.toml verbatim"
    );
}

// ---------------------------------------------------------------------------------------------
// Output matching and block parsing, on their own

#[test]
fn expected_output_matches_with_gaps_and_nothing_else() {
    let lines = |s: &str| normalize(s);
    let actual = lines("a 1\n\nb   2\nc 3\nd 4\n");
    assert!(output_matches(&lines("a 1\nb 2\nc 3\nd 4"), &actual));
    assert!(output_matches(&lines("a 1\n...\nd 4"), &actual));
    assert!(output_matches(&lines("...\nc 3\n..."), &actual));
    assert!(output_matches(&lines("a ...\n...\nd ..."), &actual));
    assert!(!output_matches(&lines("a 1\nb 2"), &actual), "all output");
    assert!(
        !output_matches(&lines("a 1\nc 3\n..."), &actual),
        "in order"
    );
    assert!(!output_matches(&lines("...\nd 5"), &actual));
    assert!(line_matches("id: ..., x", "id: 123, x"));
    assert!(!line_matches("id: ..., x", "id: 123, y"));
}

#[test]
fn blocks_keep_language_tags_and_indented_bodies() {
    let text = "x\n```sh no-run\nrm -rf /\n```\n- item\n  ```toml zone-part file=z/a.toml\n  [health]\n  ```\n";
    let b = blocks(Path::new("t.md"), text);
    assert_eq!(b.len(), 2);
    assert_eq!((b[0].lang.as_str(), b[0].tag("no-run")), ("sh", true));
    assert_eq!(b[0].at, "t.md:2");
    assert_eq!(b[1].file(), Some("z/a.toml"));
    assert_eq!(b[1].body, "[health]\n");
    assert_eq!(
        sh_commands("# c\na \\\n  b\n\nc\n"),
        ["a \\\n  b".to_string(), "c".to_string()]
    );
    assert_eq!(
        console_commands("$ a\nout\n$ b\n"),
        [
            ("a".to_string(), "out\n".to_string()),
            ("b".to_string(), String::new())
        ]
    );
    assert!(is_serve("MERIDIAN_ADMIN_TOKEN=x meridian serve --zones z"));
    assert!(!is_serve("meridian check"));
    assert_eq!(substitute("cargo run --release -- serve"), "meridian serve");
}

// ---------------------------------------------------------------------------------------------
// Links

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces made `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    prose(text)
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

/// The targets of `[text](target)` and `![alt](target)` links outside code.
fn links(text: &str) -> Vec<String> {
    // Code spans out: the odd-numbered pieces between backticks.
    let prose: String = prose(text)
        .lines()
        .flat_map(|l| l.split('`').step_by(2).chain(["\n"]))
        .collect();
    let mut out = Vec::new();
    let mut rest = prose.as_str();
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_string());
        }
    }
    out
}

#[test]
fn every_relative_link_of_the_readme_and_docs_resolves() {
    let mut docs = documents();
    docs.extend(["ARCHITECTURE.md", "RELIABILITY.md"].map(PathBuf::from));
    let mut broken = Vec::new();
    for doc in &docs {
        let text = read(doc);
        for target in links(&text) {
            if target.starts_with("https://") || target.starts_with("http://") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let resolved = if file.is_empty() {
                doc.clone()
            } else {
                normalize_path(&doc.parent().unwrap_or(Path::new("")).join(file))
            };
            if !repo().join(&resolved).exists() {
                broken.push(format!("{}: {target}: no such file", doc.display()));
                continue;
            }
            if !anchor.is_empty() && !anchors(&read(&resolved)).iter().any(|a| a == anchor) {
                broken.push(format!("{}: {target}: no such heading", doc.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// `a/../b` as `b`: links climb out of docs/.
fn normalize_path(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn a_link_to_a_missing_file_or_heading_is_found() {
    let text = "[a](docs/x.md) `[b](no.md)`\n```\n[c](no.md)\n```\n# Two words, here\n";
    assert_eq!(links(text), ["docs/x.md"]);
    assert_eq!(anchors(text), ["two-words-here"]);
    assert_eq!(
        normalize_path(Path::new("docs/../README.md")),
        Path::new("README.md")
    );
}

// ---------------------------------------------------------------------------------------------
// The configuration reference against the parsers

/// The keys a table accepts, as the parser lists them when it meets one it does not know.
fn parser_keys(what: &str, text: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let (args, file): (Vec<&str>, _) = if what == "config" {
        std::fs::create_dir(dir.path().join("zones")).unwrap();
        std::fs::copy(
            repo().join("zones/example.com.toml"),
            dir.path().join("zones/example.com.toml"),
        )
        .unwrap();
        (vec!["--config", "meridian.toml"], "meridian.toml")
    } else {
        std::fs::create_dir(dir.path().join("zones")).unwrap();
        (vec![], "zones/z.toml")
    };
    std::fs::write(dir.path().join(file), text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("check")
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("meridian runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let list = text
        .split_once("expected one of ")
        .unwrap_or_else(|| panic!("{what}: no list of keys in {text:?}"))
        .1
        .lines()
        .next()
        .unwrap();
    list.split(", ")
        .map(|k| k.trim_matches('`').to_string())
        .collect()
}

/// The keys in the first column of the tables under `heading` in docs/configuration.md.
fn documented_keys(doc: &str, heading: &str) -> Vec<String> {
    let prose = prose(doc);
    let start = prose
        .lines()
        .position(|l| l.starts_with('#') && l.trim_start_matches('#').trim() == heading)
        .unwrap_or_else(|| panic!("docs/configuration.md has no heading {heading:?}"));
    prose
        .lines()
        .skip(start + 1)
        .take_while(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(k, _)| k.to_string()))
        .collect()
}

#[test]
fn the_configuration_reference_names_every_key_the_parsers_take() {
    const ZONE: &str = "zone = \"z.\"\nrecords = '''\n'''\n";
    let cases = [
        ("config", "`meridian.toml`", "xyzzy = 1\n".to_string()),
        (
            "config",
            "`[cluster]`",
            "[cluster]\nxyzzy = 1\n".to_string(),
        ),
        ("config", "`[spill]`", "[spill]\nxyzzy = 1\n".to_string()),
        ("zone", "Zone file: top level", format!("{ZONE}xyzzy = 1\n")),
        (
            "zone",
            "`[regions.NAME]`",
            format!("{ZONE}[regions.a]\nxyzzy = 1\n"),
        ),
        (
            "zone",
            "Endpoints",
            format!(
                "{ZONE}[regions.a]\nlocation = {{ lat = 1, lon = 2 }}\nendpoints = [{{ xyzzy = 1 }}]\n"
            ),
        ),
        (
            "zone",
            "`[steered.NAME]`",
            format!("{ZONE}[steered.www]\nxyzzy = 1\n"),
        ),
        ("zone", "`[health]`", format!("{ZONE}[health]\nxyzzy = 1\n")),
        (
            "zone",
            "`dnssec`",
            format!("{ZONE}dnssec = {{ xyzzy = 1 }}\n"),
        ),
    ];
    let doc = read(Path::new("docs/configuration.md"));
    let mut wrong = Vec::new();
    for (what, heading, text) in cases {
        let mut taken = parser_keys(what, &text);
        let mut documented = documented_keys(&doc, heading);
        taken.sort();
        documented.sort();
        if taken != documented {
            wrong.push(format!(
                "{heading}: the parser takes {taken:?}, the reference lists {documented:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
