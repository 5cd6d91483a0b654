//! The README's examples are the real thing: the zone file it shows is the shipped one, and
//! the `meridian.toml` it shows is a valid configuration.

use std::path::Path;

use meridian::config::FileConfig;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The body of every fenced block of `lang` in the README.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let fence = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&fence) {
        let body = &rest[start + fence.len()..];
        let end = body.find("```\n").expect("fenced block closes");
        out.push(body[..end].to_string());
        rest = &body[end..];
    }
    out
}

#[test]
fn readme_zone_example_is_the_shipped_zone_file() {
    let zone = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/example.com.toml"),
    )
    .unwrap();
    assert!(
        blocks(&readme(), "toml").contains(&zone),
        "README.md must show zones/example.com.toml verbatim"
    );
}

#[test]
fn readme_config_example_is_valid() {
    let example = blocks(&readme(), "toml")
        .into_iter()
        .find(|b| b.contains("dns-listen"))
        .expect("README shows a meridian.toml");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meridian.toml");
    std::fs::write(&path, example).unwrap();
    let config = FileConfig::read(&path, true).expect("README meridian.toml parses");
    assert_eq!(config.dns_listen.map(|l| l.len()), Some(2));
}

#[test]
fn readme_cluster_example_is_valid() {
    let example = blocks(&readme(), "toml")
        .into_iter()
        .find(|b| b.contains("[cluster]"))
        .expect("README shows a [cluster] section");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meridian.toml");
    std::fs::write(&path, example).unwrap();
    let config = FileConfig::read(&path, true).expect("README [cluster] example parses");
    let cluster = config.checked_cluster.expect("the section is checked");
    assert_eq!(cluster.node, "ns1");
    assert_eq!(cluster.endpoints.len(), 3);
}
