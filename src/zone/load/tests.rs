//! `load_file` diagnostics: every mistake is reported once, on the line that holds it, in
//! words an operator can act on; a good zone loads.

use super::*;

const FILE: &str = "zones/example.com.toml";

/// A valid zone with three slots: `top` (top-level keys), `extra` (more records, inside the
/// `'''` block) and `tail` (appended after `[steered.www]`, so bare keys land in that table).
fn zone(top: &str, extra: &str, tail: &str) -> String {
    format!(
        r#"# test zone
zone = "example.com."
{top}
records = '''
$TTL 300
@        IN SOA  ns1 hostmaster 1 7200 3600 1209600 300
@        IN NS   ns1
ns1      IN A    192.0.2.53
lab      IN NS   ns1.lab
ns1.lab  IN A    192.0.2.99
{extra}
'''

[regions.eu-west]
location = {{ lat = 53.35, lon = -6.26 }}
endpoints = ["198.51.100.10", "2001:db8:2::10"]

[regions.us-east]
location = {{ lat = 39.04, lon = -77.49 }}
endpoints = ["192.0.2.10"]

[steered.www]
regions = ["eu-west", "us-east"]
{tail}
"#
    )
}

fn load(text: &str) -> Result<Zone, Vec<Diagnostic>> {
    load_file(Path::new(FILE), text)
}

#[track_caller]
fn errors(text: &str) -> Vec<Diagnostic> {
    match load(text) {
        Ok(z) => panic!("zone {} loaded, expected diagnostics:\n{text}", z.origin),
        Err(d) => {
            assert!(!d.is_empty(), "Err with no diagnostics");
            d
        }
    }
}

/// The one diagnostic of `text`: a mistake must not drag in follow-on complaints.
#[track_caller]
fn only(text: &str) -> Diagnostic {
    let d = errors(text);
    assert_eq!(
        d.len(),
        1,
        "expected exactly one diagnostic, got:\n{}",
        LoadError(d.clone())
    );
    d.into_iter().next().unwrap()
}

/// 1-based line of the only line of `text` that contains `needle`.
#[track_caller]
fn line_of(text: &str, needle: &str) -> usize {
    let hits: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "{needle:?} must occur on exactly one line of:\n{text}"
    );
    hits[0]
}

/// Asserts that `d` is in `FILE` at `line` and that its message contains every `words`.
#[track_caller]
fn assert_diag(d: &Diagnostic, line: usize, words: &[&str]) {
    assert_eq!(d.file, Path::new(FILE), "{d}");
    assert_eq!(d.line, Some(line), "wrong line: {d}");
    for w in words {
        assert!(d.message.contains(w), "message lacks {w:?}: {d}");
    }
}

/// Asserts that some diagnostic of `all` is at `line` and says every `words`.
#[track_caller]
fn assert_has(all: &[Diagnostic], line: usize, words: &[&str]) {
    let found = all
        .iter()
        .any(|d| d.line == Some(line) && words.iter().all(|w| d.message.contains(w)));
    assert!(
        found,
        "no diagnostic at line {line} saying {words:?} in:\n{}",
        LoadError(all.to_vec())
    );
}

#[test]
fn the_base_zone_of_these_tests_loads() {
    let z = load(&zone("", "", "")).unwrap_or_else(|d| panic!("{}", LoadError(d)));
    assert_eq!(z.origin.to_ascii(), "example.com.");
    assert_eq!(z.regions.len(), 2);
    assert_eq!(z.steered.len(), 1);
}

#[test]
fn diagnostic_displays_as_file_line_message() {
    let d = Diagnostic {
        file: PathBuf::from(FILE),
        line: Some(42),
        message: "unknown region \"eu-wset\"".into(),
    };
    assert_eq!(
        d.to_string(),
        "zones/example.com.toml:42: unknown region \"eu-wset\""
    );
    let whole = Diagnostic { line: None, ..d };
    assert_eq!(
        whole.to_string(),
        "zones/example.com.toml: unknown region \"eu-wset\""
    );
}

// ---- TOML structure ----

#[test]
fn toml_syntax_error_is_reported_at_its_line() {
    let text = zone("", "", "[regions.broken\nlocation = 1");
    let d = only(&text);
    assert_diag(&d, line_of(&text, "[regions.broken"), &[]);
    assert!(!d.message.trim().is_empty(), "{d}");
}

#[test]
fn unknown_top_level_key_is_named() {
    let text = zone("colour = \"blue\"", "", "");
    let d = only(&text);
    assert_diag(&d, line_of(&text, "colour"), &["unknown field", "colour"]);
}

#[test]
fn unknown_key_in_a_region_is_named() {
    let text = zone("", "", "").replace(
        "endpoints = [\"192.0.2.10\"]",
        "endpoints = [\"192.0.2.10\"]\nweigth = 3",
    );
    let d = only(&text);
    assert_diag(&d, line_of(&text, "weigth"), &["unknown field", "weigth"]);
}

#[test]
fn unknown_key_in_a_steered_name_is_named() {
    let text = zone("", "", "tll = 30");
    let d = only(&text);
    assert_diag(&d, line_of(&text, "tll"), &["unknown field", "tll"]);
}

// ---- regions and steered names ----

#[test]
fn unknown_region_in_regions_lists_the_known_ones() {
    let text = zone("", "", "").replace(
        "regions = [\"eu-west\", \"us-east\"]",
        "regions = [\n  \"eu-west\",\n  \"eu-wset\",\n]",
    );
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "eu-wset"),
        &["unknown region \"eu-wset\"", "known: eu-west, us-east"],
    );
}

#[test]
fn unknown_default_region_lists_the_known_ones() {
    let text = zone("", "", "default-region = \"mars\"");
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "mars"),
        &["unknown region \"mars\"", "known: eu-west, us-east"],
    );
}

#[test]
fn default_region_must_be_one_of_the_names_regions() {
    let text = zone("", "", "").replace(
        "regions = [\"eu-west\", \"us-east\"]",
        "regions = [\"eu-west\"]",
    ) + "default-region = \"us-east\"\n";
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "default-region"),
        &["default-region \"us-east\"", "not one of its regions"],
    );
}

#[test]
fn bad_endpoint_address_is_reported_at_its_line() {
    let text = zone("", "", "").replace(
        "endpoints = [\"192.0.2.10\"]",
        "endpoints = [\n  \"192.0.2.10\",\n  \"192.0.2.300\",\n]",
    );
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "192.0.2.300"),
        &["bad address \"192.0.2.300\""],
    );
}

#[test]
fn weight_zero_is_refused() {
    let text = zone("", "", "").replace(
        "endpoints = [\"192.0.2.10\"]",
        "endpoints = [\n  \"192.0.2.11\",\n  { address = \"192.0.2.10\", weight = 0 },\n]",
    );
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "weight = 0"),
        &["192.0.2.10", "weight 0", "1..=65535"],
    );
}

#[test]
fn duplicate_endpoint_is_reported_at_the_second_listing() {
    let text = zone("", "", "").replace(
        "endpoints = [\"192.0.2.10\"]",
        "endpoints = [\n  \"192.0.2.10\",\n  { address = \"192.0.2.10\", weight = 2 },\n]",
    );
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "weight = 2"),
        &["region us-east", "192.0.2.10", "listed twice"],
    );
}

#[test]
fn location_off_the_globe_is_refused() {
    let text = zone("", "", "").replace("lat = 39.04, lon = -77.49", "lat = 91.0, lon = -77.49");
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "lat = 91"),
        &["region us-east", "off the globe"],
    );

    let text = zone("", "", "").replace("lat = 39.04, lon = -77.49", "lat = 39.04, lon = 180.5");
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "lon = 180.5"),
        &["region us-east", "off the globe"],
    );
}

#[test]
fn region_without_endpoints_is_refused() {
    let text = zone("", "", "").replace("endpoints = [\"192.0.2.10\"]", "endpoints = []");
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "[regions.us-east]"),
        &["region us-east has no endpoints"],
    );
}

#[test]
fn steered_name_with_address_records_is_a_duplicate_name() {
    for rr in [
        "www IN A 192.0.2.1",
        "www IN AAAA 2001:db8::1",
        "www IN CNAME ns1",
    ] {
        let text = zone("", rr, "");
        let d = only(&text);
        assert_diag(
            &d,
            line_of(&text, "[steered.www]"),
            &["duplicate name", "www.example.com.", "steered"],
        );
    }
}

#[test]
fn steered_name_may_share_its_node_with_other_types() {
    let text = zone("", "www IN TXT \"hello\"", "");
    let z = load(&text).unwrap_or_else(|d| panic!("{}", LoadError(d)));
    assert_eq!(z.steered.len(), 1);
}

#[test]
fn steered_name_outside_the_zone_is_refused() {
    let text = zone(
        "",
        "",
        "\n[steered.\"www.example.net.\"]\nregions = [\"eu-west\"]",
    );
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "www.example.net."),
        &["www.example.net.", "outside the zone example.com."],
    );
}

#[test]
fn steered_name_below_a_delegation_is_refused() {
    for key in ["x.lab", "lab"] {
        let text = zone(
            "",
            "",
            &format!("\n[steered.\"{key}\"]\nregions = [\"eu-west\"]"),
        );
        let d = only(&text);
        assert_diag(
            &d,
            line_of(&text, &format!("[steered.\"{key}\"]")),
            &["delegation lab.example.com."],
        );
    }
}

#[test]
fn steered_ttl_and_answers_out_of_range_are_refused() {
    let text = zone("", "", "ttl = -1");
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "ttl = -1"),
        &["www.example.com.", "bad TTL -1"],
    );

    let text = zone("", "", "ttl = 2147483648");
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "ttl = 2147483648"),
        &["bad TTL 2147483648"],
    );

    let text = zone("", "", "answers = 0");
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "answers = 0"),
        &["www.example.com.", "answers 0", "1..=64"],
    );
}

#[test]
fn steered_name_with_no_regions_is_refused() {
    let text = zone("", "", "").replace("regions = [\"eu-west\", \"us-east\"]", "regions = []");
    let d = only(&text);
    assert_diag(&d, line_of(&text, "[steered.www]"), &["`regions` is empty"]);
}

// ---- records ----

#[test]
fn missing_soa_is_reported_at_the_records_key() {
    let text = zone("", "", "").replace(
        "@        IN SOA  ns1 hostmaster 1 7200 3600 1209600 300\n",
        "",
    );
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "records = '''"),
        &["missing SOA", "example.com."],
    );
}

#[test]
fn missing_apex_ns_is_reported_at_the_records_key() {
    let text = zone("", "", "").replace("@        IN NS   ns1\n", "");
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "records = '''"),
        &["missing NS", "example.com."],
    );
}

#[test]
fn second_soa_points_at_the_first() {
    let text = zone("", "@ IN SOA ns1 other 2 7200 3600 1209600 300", "");
    let d = only(&text);
    let first = line_of(&text, "hostmaster");
    assert_diag(
        &d,
        line_of(&text, "ns1 other"),
        &["second SOA", &format!("line {first}")],
    );
}

#[test]
fn soa_below_the_apex_is_refused() {
    let text = zone("", "sub IN SOA ns1 hostmaster 1 7200 3600 1209600 300", "");
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "sub IN SOA"),
        &["SOA must be at the apex example.com.", "sub.example.com."],
    );
}

#[test]
fn record_outside_the_zone_is_refused() {
    let text = zone("", "www.example.net. IN A 192.0.2.1", "");
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "www.example.net."),
        &["www.example.net.", "outside the zone example.com."],
    );
}

#[test]
fn rfc1034_cname_and_other_data_is_refused() {
    let text = zone("", "alias IN TXT \"x\"\nalias IN CNAME ns1", "");
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "alias IN CNAME"),
        &["alias.example.com.", "CNAME and other data", "TXT"],
    );
}

#[test]
fn rfc1034_second_cname_is_refused() {
    let text = zone("", "alias IN CNAME ns1\nalias IN CNAME lab", "");
    let d = only(&text);
    let first = line_of(&text, "alias IN CNAME ns1");
    assert_diag(
        &d,
        line_of(&text, "alias IN CNAME lab"),
        &["second CNAME", &format!("line {first}")],
    );
}

#[test]
fn rfc2181_ttl_mismatch_inside_an_rrset_is_refused() {
    let text = zone("", "t 60 IN TXT \"a\"\nt 120 IN TXT \"b\"", "");
    let d = only(&text);
    let first = line_of(&text, "t 60 IN TXT");
    assert_diag(
        &d,
        line_of(&text, "t 120 IN TXT"),
        &["TTL 120", "TTL 60", &format!("line {first}")],
    );
}

#[test]
fn rfc2181_ttl_above_2147483647_is_refused() {
    let text = zone("", "t 2147483648 IN TXT \"a\"", "");
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "2147483648"),
        &["2147483648", "2147483647"],
    );
}

#[test]
fn bad_record_data_is_reported_on_its_own_line_of_the_block() {
    // The records block starts on line 6 and the bad record is its fifth line.
    let text = r#"# a zone whose records start a few lines in

zone = "example.com."

records = '''
$TTL 300
@    IN SOA ns1 hostmaster 1 7200 3600 1209600 300
@    IN NS  ns1
ns1  IN A   999.1.1.1
www  IN A   192.0.2.1
'''
"#;
    let d = errors(text);
    assert_has(&d, 9, &["IPv4"]);
    assert!(
        d.iter().all(|d| d.line == Some(9)),
        "only line 9 is wrong:\n{}",
        LoadError(d.clone())
    );
}

#[test]
fn bad_record_does_not_hide_the_good_soa_and_ns() {
    // One bad TXT must not make the loader claim that SOA and NS are missing.
    let text = zone("", "bad IN A 999.1.1.1", "");
    let d = only(&text);
    assert_diag(&d, line_of(&text, "999.1.1.1"), &["IPv4"]);
}

#[test]
fn a_bad_record_line_does_not_stop_the_other_checks() {
    let text = zone(
        "",
        "bad IN A 999.1.1.1\nt 60 IN TXT \"a\"\nt 120 IN TXT \"b\"\nwww IN A 192.0.2.1",
        "",
    );
    let d = errors(&text);
    assert_has(&d, line_of(&text, "999.1.1.1"), &["IPv4"]);
    assert_has(&d, line_of(&text, "t 120 IN TXT"), &["TTL 120"]);
    assert_has(&d, line_of(&text, "[steered.www]"), &["duplicate name"]);
    assert_eq!(d.len(), 3, "{}", LoadError(d.clone()));
}

#[test]
fn multi_line_soa_error_is_reported_at_its_first_line() {
    let text = r#"zone = "example.com."
records = '''
$TTL 300
@   IN SOA ns1 hostmaster (
        serial-is-not-a-number
        7200 3600
        1209600 300 )
@   IN NS  ns1
ns1 IN A   192.0.2.53
'''
"#;
    let d = errors(text);
    assert_has(&d, 4, &[]);
    assert!(
        d.iter().all(|d| !matches!(d.line, Some(5..=7))),
        "continuation lines are not where the entry starts:\n{}",
        LoadError(d.clone())
    );
}

#[test]
fn multi_line_soa_loads_with_its_values() {
    let text = r#"zone = "example.com."
records = '''
@   3600 IN SOA ns1 hostmaster (
        7      ; serial
        7200   ; refresh
        3600   ; retry
        1209600 ; expire
        300 )  ; minimum
@   IN NS  ns1
ns1 IN A   192.0.2.53
'''
"#;
    let z = load(text).unwrap_or_else(|d| panic!("{}", LoadError(d)));
    match &z.soa().data {
        RData::SOA(soa) => {
            assert_eq!(soa.serial, 7);
            assert_eq!(soa.minimum, 300);
        }
        other => panic!("not an SOA: {other:?}"),
    }
}

#[test]
fn rfc1034_record_occluded_by_a_delegation_is_refused() {
    let text = zone("", "x.lab IN TXT \"hidden\"", "");
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "x.lab IN TXT"),
        &["x.lab.example.com.", "TXT", "occluded", "lab.example.com."],
    );
}

#[test]
fn glue_below_a_delegation_is_allowed() {
    let text = zone("", "ns2.lab IN AAAA 2001:db8::99\nlab IN NS ns2.lab", "");
    load(&text).unwrap_or_else(|d| panic!("{}", LoadError(d)));
}

#[test]
fn include_directive_is_refused() {
    let text = zone("", "$INCLUDE other.zone", "");
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "$INCLUDE"),
        &["$INCLUDE is not supported"],
    );
}

// ---- check everything, fail once ----

#[test]
fn every_error_in_a_file_is_reported() {
    let text = zone(
        "",
        "t 60 IN TXT \"a\"\nt 120 IN TXT \"b\"\nx.lab IN TXT \"hidden\"\nalias IN CNAME ns1\nalias IN A 192.0.2.9",
        "ttl = -1\ndefault-region = \"mars\"",
    )
    .replace("lat = 39.04", "lat = 99.0")
    .replace("endpoints = [\"192.0.2.10\"]", "endpoints = [{ address = \"192.0.2.10\", weight = 0 }]");
    let d = errors(&text);
    assert_has(&d, line_of(&text, "t 120 IN TXT"), &["TTL 120"]);
    assert_has(&d, line_of(&text, "x.lab IN TXT"), &["occluded"]);
    assert_has(
        &d,
        line_of(&text, "alias IN CNAME"),
        &["CNAME and other data"],
    );
    assert_has(&d, line_of(&text, "lat = 99.0"), &["off the globe"]);
    assert_has(&d, line_of(&text, "weight = 0"), &["weight 0"]);
    assert_has(&d, line_of(&text, "ttl = -1"), &["bad TTL -1"]);
    assert_has(&d, line_of(&text, "mars"), &["unknown region \"mars\""]);
    assert_eq!(d.len(), 7, "{}", LoadError(d.clone()));
    assert!(
        d.is_sorted_by_key(|d| d.line),
        "diagnostics come in line order:\n{}",
        LoadError(d.clone())
    );
}

#[test]
fn every_bad_record_line_is_reported() {
    let text = zone(
        "",
        "a IN A 999.1.1.1\nb IN A 192.0.2.1\nc IN MX ten mail\n$INCLUDE x",
        "",
    );
    let d = errors(&text);
    assert_has(&d, line_of(&text, "999.1.1.1"), &[]);
    assert_has(&d, line_of(&text, "c IN MX"), &[]);
    assert_has(&d, line_of(&text, "$INCLUDE"), &["$INCLUDE"]);
}

// ---- good zones ----

#[test]
fn shipped_zones_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
    let set = load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(!set.is_empty());
    let name = Name::from_ascii("www.example.com.").unwrap();
    let z = set
        .find(&LowerName::new(&name))
        .expect("example.com. is shipped");
    assert_eq!(z.origin.to_ascii(), "example.com.");
    let regions: Vec<&str> = z.regions.iter().map(|r| r.name.as_str()).collect();
    assert!(regions.contains(&"eu-west"), "{regions:?}");
    assert!(z.steered_by_name(&LowerName::new(&name)).is_some());
}

#[test]
fn origin_defaults_to_the_file_name() {
    let text = zone("", "", "").replace("zone = \"example.com.\"\n", "");
    let z = load_file(Path::new("zones/example.com.toml"), &text)
        .unwrap_or_else(|d| panic!("{}", LoadError(d)));
    assert_eq!(z.origin.to_ascii(), "example.com.");

    let z = load_file(Path::new("/etc/meridian/zones/Example.ORG.toml"), &text)
        .unwrap_or_else(|d| panic!("{}", LoadError(d)));
    assert_eq!(z.origin.to_ascii(), "example.org.");
    assert_eq!(z.steered[0].name.to_ascii(), "www.example.org.");
}

#[test]
fn endpoints_take_address_and_weight() {
    let text = zone("", "", "").replace(
        "endpoints = [\"192.0.2.10\"]",
        "endpoints = [\n  { address = \"192.0.2.10\", weight = 3 },\n  \"192.0.2.11\",\n  { address = \"2001:db8::10\" },\n  { address = \"2001:db8::11\", weight = 65535 },\n]",
    );
    let z = load(&text).unwrap_or_else(|d| panic!("{}", LoadError(d)));
    let us = z.regions.iter().find(|r| r.name == "us-east").unwrap();
    let got: Vec<(String, u32)> = us
        .endpoints
        .iter()
        .map(|e| (e.address.to_string(), e.weight))
        .collect();
    assert_eq!(
        got,
        [
            ("192.0.2.10".to_string(), 3),
            ("192.0.2.11".to_string(), 1),
            ("2001:db8::10".to_string(), 1),
            ("2001:db8::11".to_string(), 65535),
        ]
    );
}

#[test]
fn steered_defaults_and_settings_are_kept() {
    let z = load(&zone("", "", "")).unwrap_or_else(|d| panic!("{}", LoadError(d)));
    let www = &z.steered[0];
    assert_eq!(www.name.to_ascii(), "www.example.com.");
    assert_eq!(www.config.ttl, DEFAULT_STEERED_TTL);
    assert_eq!(www.config.answers, None);
    let first = www.config.regions[0];
    assert_eq!(z.regions[first].name, "eu-west");
    assert_eq!(
        www.config.default_region, first,
        "default is the first listed region"
    );

    let text = zone(
        "",
        "",
        "ttl = 0\nanswers = 64\ndefault-region = \"us-east\"",
    );
    let z = load(&text).unwrap_or_else(|d| panic!("{}", LoadError(d)));
    let www = &z.steered[0];
    assert_eq!(www.config.ttl, 0);
    assert_eq!(www.config.answers, Some(64));
    assert_eq!(z.regions[www.config.default_region].name, "us-east");
}
