//! The shipped Prometheus alerts and Grafana dashboard (contrib/): `promtool check rules`
//! and `promtool test rules` against the series in alerts_test.yml, every dashboard query
//! parsed by promtool, and every metric either names one that src/metrics.rs renders.
//! promtool comes with Debian's `prometheus` package (scripts/setup.sh).

use std::path::{Path, PathBuf};
use std::process::Command;

fn contrib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib")
}

/// Runs promtool with `args` in `dir`; panics with its output unless it succeeds.
fn promtool(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The metric names an expression uses: words that start `meridian_` or `process_`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = ["meridian_", "process_"]
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
    {
        let word: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + word.len()..];
        names.push(word);
    }
    names
}

/// Whether src/metrics.rs renders `name` (a histogram's `_bucket` series by its family).
fn rendered(name: &str) -> bool {
    let source = include_str!("../src/metrics.rs");
    let family = name.strip_suffix("_bucket").unwrap_or(name);
    source.contains(&format!("# TYPE {family} "))
}

#[test]
fn alert_rules_pass_promtool_check_and_their_tests() {
    let dir = contrib().join("prometheus");
    let checked = promtool(&dir, &["check", "rules", "alerts.yml"]);
    assert!(checked.contains("SUCCESS: 6 rules found"), "{checked}");
    let tested = promtool(&dir, &["test", "rules", "alerts_test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    let rules = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    let exprs: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: "))
        .collect();
    assert_eq!(exprs.len(), 6);
    for expr in exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{expr}");
        for name in names {
            assert!(
                rendered(&name),
                "alerts.yml uses {name}, which Meridian does not export"
            );
        }
    }
}

#[test]
fn every_dashboard_query_parses_and_uses_exported_metrics() {
    let text = std::fs::read_to_string(contrib().join("grafana/meridian.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 15, "{} queries", exprs.len());
    // Grafana's variables as a query would see them, each query a recording rule that
    // promtool parses.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        for name in metric_names(expr) {
            assert!(
                rendered(&name),
                "the dashboard uses {name}, which Meridian does not export"
            );
        }
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$__range", "1h")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: '{}'\n",
            expr.replace('\'', "''")
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dashboard.yml"), rules).unwrap();
    let checked = promtool(dir.path(), &["check", "rules", "dashboard.yml"]);
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{checked}"
    );
}
