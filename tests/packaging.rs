//! What the Debian package ships beside the binary: man pages and shell completions written
//! by `meridian generate` from the CLI definition, the packaged configuration (it must load
//! and its zones check), and the systemd unit's hardening. scripts/deb-test.sh builds,
//! installs and starts the package itself.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn generate_writes_man_pages_and_completions_from_the_cli_definition() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["generate", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(out.stdout).unwrap();
    let read = |p: &str| {
        std::fs::read_to_string(dir.path().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    let main = read("man/meridian.1");
    assert!(
        main.starts_with(".ie") || main.contains(".TH meridian 1"),
        "{main}"
    );
    for sub in ["serve", "check", "route", "dnssec"] {
        assert!(main.contains(sub), "meridian.1 lacks {sub}");
        let page = read(&format!("man/meridian-{sub}.1"));
        assert!(page.contains(&format!(".TH meridian-{sub} 1")), "{page}");
    }
    // Every flag of serve, from the clap definition, in its page and the completions.
    let serve = read("man/meridian-serve.1");
    let bash = read("completions/meridian.bash");
    let zsh = read("completions/_meridian");
    let fish = read("completions/meridian.fish");
    for flag in [
        "dns-listen",
        "admin-listen",
        "state-dir",
        "rrl-rate",
        "cluster-node",
    ] {
        let roff = format!("\\-\\-{}", flag.replace('-', "\\-"));
        assert!(serve.contains(&roff), "meridian-serve.1 lacks --{flag}");
        assert!(bash.contains(&format!("--{flag}")), "bash lacks --{flag}");
        assert!(zsh.contains(&format!("--{flag}")), "zsh lacks --{flag}");
        assert!(fish.contains(&format!("-l {flag}")), "fish lacks --{flag}");
    }
    // The packaging command itself is hidden: no page, not in the main page.
    assert!(!dir.path().join("man/meridian-generate.1").exists());
    assert!(!dir.path().join("man/meridian-help.1").exists());
    assert!(!main.contains("generate"), "{main}");
    // Nested subcommands get their pages too.
    for sub in ["keygen", "ds", "rollover", "status", "dump"] {
        let page = read(&format!("man/meridian-dnssec-{sub}.1"));
        assert!(
            page.contains(&format!(".TH meridian-dnssec-{sub} 1")),
            "{page}"
        );
    }
    assert_eq!(listed.lines().count(), 13, "{listed}");

    // A directory that cannot be made is an error with its path, not a panic.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = Command::new(BIN)
        .args(["generate", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with(&format!("cannot write {}", file.join("man").display())),
        "{err}"
    );
}

#[test]
fn the_packaged_configuration_and_zones_check() {
    let out = Command::new(BIN)
        .args(["check", "--zones"])
        .arg(repo().join("zones"))
        .arg("--config")
        .arg(repo().join("contrib/debian/meridian.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let config = std::fs::read_to_string(repo().join("contrib/debian/meridian.toml")).unwrap();
    for line in [
        "zones = \"/etc/meridian/zones\"",
        "state-dir = \"/var/lib/meridian\"",
    ] {
        assert!(config.lines().any(|l| l == line), "{line}");
    }
}

#[test]
fn the_unit_is_hardened_and_matches_the_package() {
    let unit = std::fs::read_to_string(repo().join("contrib/systemd/meridian.service")).unwrap();
    let has = |line: &str| unit.lines().any(|l| l == line);
    for line in [
        "User=meridian",
        "ExecStart=/usr/bin/meridian serve --config /etc/meridian/meridian.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=meridian",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
    ] {
        assert!(has(line), "the unit lacks {line}");
    }
    // The unit's state directory is the configuration's, which the package installs.
    let cargo = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    assert!(
        cargo.contains(r#"["contrib/debian/meridian.toml", "etc/meridian/meridian.toml", "644"]"#),
        "Cargo.toml does not package the configuration the unit names"
    );
    if let Ok(out) = Command::new("systemd-analyze")
        .arg("verify")
        .arg(repo().join("contrib/systemd/meridian.service"))
        .output()
    {
        // Without systemd running, verify still parses the unit; an unknown directive is
        // reported on stderr.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("Unknown key"), "{err}");
        assert!(!err.contains("Unknown lvalue"), "{err}");
    }
}
