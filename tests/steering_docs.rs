//! docs/steering-rules.md shows real zone files: every fenced `toml` block is a complete zone
//! that `meridian check` accepts.

use std::path::Path;
use std::process::Command;

#[test]
fn every_zone_in_the_steering_rules_doc_passes_check() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/steering-rules.md"),
    )
    .unwrap();
    let mut blocks = Vec::new();
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```toml\n") {
        let body = &rest[start + "```toml\n".len()..];
        let end = body.find("```\n").expect("fenced block closes");
        blocks.push(&body[..end]);
        rest = &body[end..];
    }
    assert!(blocks.len() >= 5, "a zone per rule: {}", blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("example.com.toml"), block).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(["check", "--zones"])
            .arg(dir.path())
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "block {} of docs/steering-rules.md:\n{}\n{block}",
            i + 1,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
