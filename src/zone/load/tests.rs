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
fn records_in_a_basic_string_are_reported_on_their_file_lines() {
    // Escaped newlines make lines that the file does not have (found by the zone_file fuzz
    // target: line 11 of a 2-line file); a line-ending backslash joins two file lines.
    let text = "zone = \"example.com.\"\nrecords = \"$TTL 300\\n@ IN SOA ns1 h 1 2 3 4 5\\n@ IN NS ns1\\n\\n\\nns1 IN A 999.1.1.1\\n\"\n";
    assert_diag(&only(text), 2, &["IPv4"]);
    let text = r#"zone = "example.com."
records = """
$TTL 300
@ IN SOA ns1 h \
    1 2 3 4 5
@ IN NS ns1
ns1 IN A 192.0.2.53
www IN A 999.1.1.1
"""
"#;
    assert_diag(&only(text), line_of(text, "999.1.1.1"), &["IPv4"]);
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
fn rfc4035_a_secure_delegations_ds_lives_at_the_cut_but_no_other_type() {
    let ds =
        "lab IN DS 12345 13 2 2968A9F01D12B545F0C85BF291ADA25152720B5B41AF0CCF6766DC1D839B83F2";
    let z = load(&zone("", ds, "")).unwrap_or_else(|d| panic!("{}", LoadError(d)));
    let cut = LowerName::from(Name::from_ascii("lab.example.com.").unwrap());
    assert!(z.rrset(&cut, RecordType::DS).is_some());
    let text = zone("", "lab IN TXT \"at the cut\"", "");
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "lab IN TXT"),
        &["occluded", "only NS and DS may be there"],
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

/// Bad addresses in endpoints and fallbacks used to end the parse at the first one: each is
/// reported at its line, with the file's other mistakes.
#[test]
fn every_bad_address_is_reported() {
    let text = zone(
        "",
        "",
        "ttl = -1\nfallback = [\"192.0.2.1\", \"fallback.bad\"]",
    )
    .replace(
        "endpoints = [\"198.51.100.10\", \"2001:db8:2::10\"]",
        "endpoints = [\n  \"198.51.100.300\",\n  \"2001:db8:2::10\",\n]",
    )
    .replace(
        "endpoints = [\"192.0.2.10\"]",
        "endpoints = [{ address = \"not-an-address\", weight = 2 }]",
    );
    let d = errors(&text);
    assert_has(
        &d,
        line_of(&text, "198.51.100.300"),
        &["bad address \"198.51.100.300\""],
    );
    assert_has(
        &d,
        line_of(&text, "not-an-address"),
        &["bad address \"not-an-address\""],
    );
    assert_has(
        &d,
        line_of(&text, "fallback.bad"),
        &["www.example.com.", "bad address \"fallback.bad\""],
    );
    assert_has(&d, line_of(&text, "ttl = -1"), &["bad TTL -1"]);
    assert_eq!(d.len(), 4, "{}", LoadError(d.clone()));
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

// ---- health checks ----

use std::time::Duration;

use crate::zone::{CheckKind, HttpCheck};

/// The base zone with `health = { inline }` in region us-east (one endpoint).
fn us_east_health(inline: &str) -> String {
    zone("", "", "").replace(
        "endpoints = [\"192.0.2.10\"]",
        &format!("endpoints = [\"192.0.2.10\"]\nhealth = {{ {inline} }}"),
    )
}

/// The check of region `name`.
#[track_caller]
fn check_of<'z>(z: &'z Zone, name: &str) -> &'z RegionCheck {
    let i = z
        .regions
        .iter()
        .position(|r| r.name == name)
        .unwrap_or_else(|| panic!("no region {name}"));
    &z.checks[i]
}

#[track_caller]
fn http_of(check: &RegionCheck) -> &HttpCheck {
    match &check.spec.kind {
        CheckKind::Http(h) => h,
        other => panic!("not an HTTP check: {other:?}"),
    }
}

#[track_caller]
fn loads(text: &str) -> Zone {
    load(text).unwrap_or_else(|d| panic!("{}\n{text}", LoadError(d)))
}

#[test]
fn unknown_key_in_zone_health_is_named() {
    let text = zone(
        "",
        "",
        "\n[health]\ncheck = \"tcp\"\nport = 80\nchek = \"http\"",
    );
    let d = only(&text);
    assert_diag(&d, line_of(&text, "chek"), &["unknown field", "chek"]);
}

#[test]
fn unknown_key_in_region_health_is_named() {
    let text = zone("", "", "\n[regions.us-east.health]\nintervall = 5");
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "intervall"),
        &["unknown field", "intervall"],
    );
}

#[test]
fn bad_health_values_are_reported_on_their_line() {
    // (inline table of region us-east, words of the one diagnostic)
    let cases: &[(&str, &[&str])] = &[
        (
            "check = \"icmp\"",
            &[
                "check \"icmp\"",
                "\"http\"",
                "\"https\"",
                "\"tcp\"",
                "\"none\"",
            ],
        ),
        ("check = \"tcp\"", &["check \"tcp\" needs a port"]),
        ("check = \"tcp\", port = 0", &["port 0", "1..=65535"]),
        ("check = \"http\", port = 0", &["port 0", "1..=65535"]),
        (
            "check = \"tcp\", port = 65536",
            &["port 65536", "1..=65535"],
        ),
        (
            "check = \"tcp\", port = 80, rise = 0",
            &["rise 0", "1..=1000"],
        ),
        (
            "check = \"tcp\", port = 80, fall = 0",
            &["fall 0", "1..=1000"],
        ),
        (
            "check = \"tcp\", port = 80, interval = 0.01",
            &["interval 10ms", "below the minimum 50ms"],
        ),
        (
            "check = \"tcp\", port = 80, interval = 1, timeout = 2",
            &["timeout 2s", "at most the interval 1s"],
        ),
        (
            "check = \"tcp\", port = 80, timeout = 0",
            &["timeout 0ns", "above 0"],
        ),
        (
            "check = \"http\", method = \"GE T\"",
            &["method \"GE T\"", "not an HTTP method"],
        ),
        (
            "check = \"http\", path = \"healthz\"",
            &["path \"healthz\"", "must start with '/'"],
        ),
        (
            "check = \"https\", ca-file = \"no-such-ca.pem\"",
            &["ca-file", "no-such-ca.pem"],
        ),
        (
            // The zone directory itself: the probe could never read it.
            "check = \"https\", ca-file = \".\"",
            &["ca-file", "not a regular file but a directory"],
        ),
        (
            "check = \"http\", tls-verify = false",
            &["tls-verify", "check \"https\" only"],
        ),
        (
            "check = \"http\", ca-file = \"example.com.toml\"",
            &["ca-file", "check \"https\" only"],
        ),
        (
            "check = \"tcp\", port = 80, min-healthy = 2",
            &["min-healthy 2", "1..=1"],
        ),
        ("check = \"http\", expect = []", &["expect is empty"]),
        ("check = \"http\", body = \"\"", &["body is empty"]),
        (
            "check = \"tcp\", port = 80, start = \"sideways\"",
            &["start \"sideways\"", "\"up\" or \"down\""],
        ),
        (
            "check = \"tcp\", port = 80, hysteresis = 200.0",
            &["hysteresis 200", "below degradation-limit"],
        ),
    ];
    for (inline, words) in cases {
        let text = us_east_health(inline);
        let d = only(&text);
        let mut all = vec!["region us-east", "health"];
        all.extend_from_slice(words);
        assert_diag(&d, line_of(&text, "health = {"), &all);
    }
}

#[test]
fn bad_health_value_types_are_reported_on_their_line() {
    // Values that fail while the file is read: the TOML error points at the key's line.
    // (line in [regions.us-east.health], words of the one diagnostic)
    let cases: &[(&str, &[&str])] = &[
        ("interval = \"5 parsecs\"", &["bad duration \"5 parsecs\""]),
        ("interval = \"5\"", &["bad duration \"5\"", "unit"]),
        ("timeout = -1", &["bad duration -1", ">= 0"]),
        ("expect = [\"300-200\"]", &["bad status range \"300-200\""]),
        ("expect = [\"200-\"]", &["bad status range \"200-\""]),
        ("expect = [700]", &["bad HTTP status 700"]),
        ("expect = [200, 99]", &["bad HTTP status 99"]),
    ];
    for (line, words) in cases {
        let text = zone(
            "",
            "",
            &format!("\n[regions.us-east.health]\ncheck = \"http\"\n{line}\nport = 8080"),
        );
        let d = only(&text);
        assert_diag(&d, line_of(&text, line), words);
    }
}

#[test]
fn bad_check_address_is_reported_at_its_endpoint() {
    for bad in [
        "127.0.0.1:notaport",
        "localhost",
        "127.0.0.1:99999",
        "[::1]",
    ] {
        let text = zone("", "", "").replace(
            "endpoints = [\"192.0.2.10\"]",
            &format!(
                "health = {{ check = \"tcp\", port = 80 }}\nendpoints = [\n  \"192.0.2.11\",\n  {{ address = \"192.0.2.10\", check-address = \"{bad}\" }},\n]"
            ),
        );
        let d = only(&text);
        assert_diag(
            &d,
            line_of(&text, "check-address"),
            &["region us-east", &format!("bad check-address \"{bad}\"")],
        );
    }
}

#[test]
fn bad_check_address_is_refused_even_when_the_region_is_not_probed() {
    // Check everything: a malformed address must not wait for the day probing is turned on.
    let text = zone("", "", "").replace(
        "endpoints = [\"192.0.2.10\"]",
        "endpoints = [\n  { address = \"192.0.2.10\", check-address = \"127.0.0.1:notaport\" },\n]",
    );
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "check-address"),
        &["bad check-address \"127.0.0.1:notaport\""],
    );
}

#[test]
fn every_mistake_of_one_health_table_is_reported() {
    let text = us_east_health("check = \"tcp\", port = 0, rise = 0, interval = 0.01");
    let d = errors(&text);
    let line = line_of(&text, "health = {");
    assert_has(&d, line, &["port 0"]);
    assert_has(&d, line, &["rise 0"]);
    assert_has(&d, line, &["interval 10ms"]);
    assert_eq!(d.len(), 3, "{}", LoadError(d.clone()));
}

#[test]
fn a_mistake_in_zone_health_is_reported_once() {
    // The zone's [health] applies to both regions, but it is one mistake on one line.
    let text = zone("health = { check = \"tcp\", port = 80, rise = 0 }", "", "");
    let d = only(&text);
    assert_diag(&d, line_of(&text, "rise = 0"), &["rise 0"]);
}

#[test]
fn a_zone_health_mistake_is_reported_at_the_zone_table_not_at_a_region_override() {
    // us-east overrides only the port: its copy of the zone's `rise = 0` is not on its line.
    let text = zone("health = { check = \"tcp\", port = 80, rise = 0 }", "", "").replace(
        "endpoints = [\"192.0.2.10\"]",
        "endpoints = [\"192.0.2.10\"]\nhealth = { port = 81 }",
    );
    let d = errors(&text);
    let line = line_of(&text, "rise = 0");
    assert!(
        d.iter()
            .all(|d| d.line == Some(line) && d.message.contains("rise 0")),
        "every diagnostic belongs on line {line}:\n{}",
        LoadError(d.clone())
    );
}

#[test]
fn degradation_limit_zero_is_one_mistake() {
    // Only the limit is written: the default hysteresis is not a second mistake.
    let text = us_east_health("check = \"tcp\", port = 80, degradation-limit = 0.0");
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "health = {"),
        &["region us-east", "degradation-limit 0", "above 0"],
    );
}

#[test]
fn a_health_mistake_in_a_multi_line_table_is_reported_at_its_key() {
    let text = zone(
        "",
        "",
        "\n[regions.us-east.health]\ncheck = \"tcp\"\nport = 80\nrise = 0\nfall = 2",
    );
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "rise = 0"),
        &["region us-east", "rise 0"],
    );
}

#[test]
fn zone_health_error_that_fits_one_region_only_names_that_region() {
    // eu-west has two endpoints, us-east one: min-healthy 2 is wrong for us-east alone.
    let text = zone(
        "health = { check = \"tcp\", port = 80, min-healthy = 2 }",
        "",
        "",
    );
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "min-healthy"),
        &["region us-east", "min-healthy 2", "1..=1"],
    );
}

#[test]
fn bad_steered_health_settings_are_reported_on_their_line() {
    // (line in [steered.www], words of the one diagnostic)
    let cases: &[(&str, &[&str])] = &[
        (
            "policy = \"random\"",
            &[
                "www.example.com.",
                "policy \"random\"",
                "\"nearest\" or \"failover\"",
            ],
        ),
        ("fallback = \"none\"", &["fallback \"none\"", "\"all\""]),
        (
            "fallback = []",
            &["www.example.com.", "fallback is empty", "\"all\""],
        ),
        (
            "fallback = [\"192.0.2.300\"]",
            &["bad address \"192.0.2.300\""],
        ),
        (
            "trouble-ttl = -1",
            &["www.example.com.", "bad trouble-ttl -1", "0..=2147483647"],
        ),
        ("trouble-ttl = 2147483648", &["bad trouble-ttl 2147483648"]),
    ];
    for (line, words) in cases {
        let text = zone("", "", line);
        let d = only(&text);
        assert_diag(&d, line_of(&text, line), words);
    }
}

#[test]
fn zone_health_defaults_merge_with_region_overrides() {
    let text = zone(
        "",
        "",
        "\n[health]\ncheck = \"http\"\nport = 8080\npath = \"/a\"\nhost = \"www.example.com\"\ninterval = 2\nrise = 4\n\n[regions.us-east.health]\npath = \"/b\"\nrise = 1",
    );
    let z = loads(&text);
    let us = check_of(&z, "us-east");
    let eu = check_of(&z, "eu-west");
    assert_eq!(http_of(us).path, "/b", "region overrides the zone");
    assert_eq!(http_of(eu).path, "/a", "zone default");
    for (c, rise) in [(us, 1), (eu, 4)] {
        let h = http_of(c);
        assert!(!h.https);
        assert_eq!(h.port, 8080, "from the zone");
        assert_eq!(h.host.as_deref(), Some("www.example.com"));
        assert_eq!(c.spec.interval, Duration::from_secs(2));
        assert_eq!(c.spec.rise, rise);
        assert_eq!(c.spec.fall, health::DEFAULT_FALL);
    }
    assert_eq!(
        us.targets,
        [Some("192.0.2.10:8080".parse().unwrap())],
        "probes go to the endpoint on the check's port"
    );
    assert_eq!(
        eu.targets,
        [
            Some("198.51.100.10:8080".parse().unwrap()),
            Some("[2001:db8:2::10]:8080".parse().unwrap()),
        ]
    );
}

#[test]
fn region_health_alone_applies_to_that_region_only() {
    let z = loads(&us_east_health("check = \"tcp\", port = 22"));
    assert_eq!(
        check_of(&z, "us-east").spec.kind,
        CheckKind::Tcp { port: 22 }
    );
    assert_eq!(check_of(&z, "eu-west").spec.kind, CheckKind::None);
}

#[test]
fn health_defaults_are_the_documented_constants() {
    let z = loads(&us_east_health("check = \"https\""));
    let c = check_of(&z, "us-east");
    assert_eq!(c.spec.interval, health::DEFAULT_INTERVAL);
    assert_eq!(c.spec.timeout, health::DEFAULT_TIMEOUT);
    assert_eq!(c.spec.rise, health::DEFAULT_RISE);
    assert_eq!(c.spec.fall, health::DEFAULT_FALL);
    assert!(c.spec.start_up);
    assert_eq!(c.spec.min_healthy, 1);
    assert_eq!(
        c.spec.degradation_limit_ms,
        health::DEFAULT_DEGRADATION_LIMIT_MS
    );
    assert_eq!(c.spec.hysteresis_ms, health::DEFAULT_HYSTERESIS_MS);
    let h = http_of(c);
    assert!(h.https);
    assert_eq!(h.port, 443);
    assert_eq!(h.method, "GET");
    assert_eq!(h.path, "/");
    assert_eq!(h.host, None);
    assert_eq!(h.expect, [200..=399]);
    assert_eq!(h.body, None);
    assert!(h.tls_verify, "TLS verification is on by default");
    assert_eq!(h.ca_file, None);

    let z = loads(&us_east_health("check = \"http\""));
    assert_eq!(http_of(check_of(&z, "us-east")).port, 80);
}

#[test]
fn health_settings_are_kept() {
    let z = loads(&us_east_health(
        "check = \"https\", port = 8443, method = \"HEAD\", path = \"/healthz?full=1\", body = \"ok\", tls-verify = false, start = \"down\", min-healthy = 1, degradation-limit = 50.0, hysteresis = 5.0, ca-file = \"example.com.toml\"",
    ));
    let c = check_of(&z, "us-east");
    assert!(!c.spec.start_up);
    assert_eq!(c.spec.degradation_limit_ms, 50.0);
    assert_eq!(c.spec.hysteresis_ms, 5.0);
    let h = http_of(c);
    assert_eq!(h.port, 8443);
    assert_eq!(h.method, "HEAD");
    assert_eq!(h.path, "/healthz?full=1");
    assert_eq!(h.body.as_deref(), Some("ok"));
    assert!(!h.tls_verify);
    assert_eq!(
        h.ca_file.as_deref(),
        Some(Path::new("zones/example.com.toml")),
        "ca-file is relative to the zone file's directory"
    );
}

#[test]
fn durations_take_seconds_or_a_unit() {
    // (interval, timeout, expected interval, expected timeout)
    let cases = [
        ("\"2s\"", "\"500ms\"", 2_000, 500),
        ("0.5", "0.25", 500, 250),
        ("3", "1", 3_000, 1_000),
        ("\"1m\"", "\"1.5s\"", 60_000, 1_500),
        ("\"50ms\"", "\"50ms\"", 50, 50),
        ("1", "\"1000ms\"", 1_000, 1_000),
    ];
    for (interval, timeout, want_i, want_t) in cases {
        let z = loads(&us_east_health(&format!(
            "check = \"tcp\", port = 80, interval = {interval}, timeout = {timeout}"
        )));
        let spec = &check_of(&z, "us-east").spec;
        assert_eq!(
            spec.interval,
            Duration::from_millis(want_i),
            "interval {interval}"
        );
        assert_eq!(
            spec.timeout,
            Duration::from_millis(want_t),
            "timeout {timeout}"
        );
    }
}

#[test]
fn timeout_defaults_to_at_most_the_interval() {
    let z = loads(&us_east_health(
        "check = \"tcp\", port = 80, interval = \"1s\"",
    ));
    let spec = &check_of(&z, "us-east").spec;
    assert_eq!(spec.interval, Duration::from_secs(1));
    assert_eq!(spec.timeout, Duration::from_secs(1));
}

#[test]
fn expect_takes_statuses_and_ranges_mixed() {
    let z = loads(&us_east_health(
        "check = \"http\", expect = [204, \"200-299\", \" 301 - 302 \"]",
    ));
    assert_eq!(
        http_of(check_of(&z, "us-east")).expect,
        [204..=204, 200..=299, 301..=302]
    );
}

#[test]
fn check_address_takes_an_address_or_address_and_port() {
    let text = zone("", "", "").replace(
        "endpoints = [\"192.0.2.10\"]",
        "health = { check = \"tcp\", port = 9000 }\nendpoints = [\n  { address = \"192.0.2.10\", check-address = \"127.0.0.1:8080\" },\n  { address = \"192.0.2.11\", check-address = \"127.0.0.1\" },\n  { address = \"2001:db8::10\", check-address = \"[::1]:8081\" },\n  { address = \"2001:db8::11\", check-address = \"::1\" },\n  \"192.0.2.12\",\n]",
    );
    let z = loads(&text);
    let c = check_of(&z, "us-east");
    let want: Vec<Option<std::net::SocketAddr>> = [
        "127.0.0.1:8080",
        "127.0.0.1:9000",
        "[::1]:8081",
        "[::1]:9000",
        "192.0.2.12:9000",
    ]
    .iter()
    .map(|s| Some(s.parse().unwrap()))
    .collect();
    assert_eq!(c.targets, want);
    let us = z.regions.iter().find(|r| r.name == "us-east").unwrap();
    assert_eq!(
        us.endpoints[0].address.to_string(),
        "192.0.2.10",
        "answers keep the endpoint's own address"
    );
}

#[test]
fn check_none_gives_no_targets() {
    for text in [
        us_east_health("check = \"none\""),
        us_east_health("check = \"none\", port = 80"),
        zone("", "", ""),
    ] {
        let z = loads(&text);
        for r in ["us-east", "eu-west"] {
            let c = check_of(&z, r);
            assert_eq!(c.spec.kind, CheckKind::None, "{r}");
            assert!(
                c.targets.iter().all(Option::is_none),
                "{r}: {:?}",
                c.targets
            );
            assert_eq!(
                c.targets.len(),
                z.regions
                    .iter()
                    .find(|x| x.name == r)
                    .unwrap()
                    .endpoints
                    .len(),
                "one target slot per endpoint"
            );
        }
    }
}

#[test]
fn steered_policy_fallback_and_trouble_ttl_are_kept() {
    let z = loads(&zone("", "", ""));
    let c = &z.steered[0].config;
    assert_eq!(c.policy, Policy::Nearest);
    assert_eq!(c.fallback, Fallback::All, "fail open by default");
    assert_eq!(c.trouble_ttl, DEFAULT_TROUBLE_TTL);

    let z = loads(&zone(
        "",
        "",
        "policy = \"failover\"\nfallback = [\"192.0.2.1\", \"2001:db8::1\"]\ntrouble-ttl = 2",
    ));
    let c = &z.steered[0].config;
    assert_eq!(c.policy, Policy::Failover);
    assert_eq!(
        c.fallback,
        Fallback::Static(vec![
            Endpoint {
                address: "192.0.2.1".parse().unwrap(),
                weight: 1
            },
            Endpoint {
                address: "2001:db8::1".parse().unwrap(),
                weight: 1
            },
        ])
    );
    assert_eq!(c.trouble_ttl, 2);

    let z = loads(&zone(
        "",
        "",
        "policy = \"nearest\"\nfallback = \"all\"\ntrouble-ttl = 0",
    ));
    let c = &z.steered[0].config;
    assert_eq!(c.policy, Policy::Nearest);
    assert_eq!(c.fallback, Fallback::All);
    assert_eq!(c.trouble_ttl, 0);
}

#[test]
fn host_names_are_accepted_in_any_case() {
    // Host names are case-insensitive (RFC 4343); the Host header is sent as written.
    for host in [
        "www.example.com",
        "localhost",
        "192.0.2.1",
        "WWW.Example.COM",
    ] {
        let z = loads(&us_east_health(&format!(
            "check = \"https\", host = \"{host}\""
        )));
        assert_eq!(http_of(check_of(&z, "us-east")).host.as_deref(), Some(host));
    }
}

#[test]
fn bad_host_is_refused() {
    for host in [
        "www example.com",
        "http://www.example.com",
        "www.example.com/x",
        "",
    ] {
        let text = us_east_health(&format!("check = \"https\", host = \"{host}\""));
        let d = only(&text);
        assert_diag(
            &d,
            line_of(&text, "health = {"),
            &[
                "region us-east",
                &format!("host {host:?} is not a host name"),
            ],
        );
    }
}

#[test]
fn a_zone_wide_tcp_check_takes_its_port_from_each_region() {
    // The zone's defaults need not be complete on their own: every region sets the port.
    let text = zone("health = { check = \"tcp\" }", "", "")
        .replace(
            "endpoints = [\"198.51.100.10\", \"2001:db8:2::10\"]",
            "endpoints = [\"198.51.100.10\", \"2001:db8:2::10\"]\nhealth = { port = 8081 }",
        )
        .replace(
            "endpoints = [\"192.0.2.10\"]",
            "endpoints = [\"192.0.2.10\"]\nhealth = { port = 8082 }",
        );
    let z = load(&text).unwrap_or_else(|d| panic!("{}", LoadError(d)));
    assert_eq!(
        check_of(&z, "eu-west").spec.kind,
        CheckKind::Tcp { port: 8081 }
    );
    assert_eq!(
        check_of(&z, "us-east").spec.kind,
        CheckKind::Tcp { port: 8082 }
    );
    // A region that does not set it is told so, at its own name.
    let text = zone("health = { check = \"tcp\" }", "", "").replace(
        "endpoints = [\"192.0.2.10\"]",
        "endpoints = [\"192.0.2.10\"]\nhealth = { port = 8082 }",
    );
    let d = errors(&text);
    assert_eq!(d.len(), 1, "{}", LoadError(d.clone()));
    assert!(
        d[0].message
            .contains("region eu-west: health: check \"tcp\" needs a port"),
        "{}",
        d[0]
    );
}

#[test]
fn a_mistake_about_either_of_two_keys_is_reported_at_the_one_written() {
    // `ca-file and tls-verify apply to check "https" only`: here only tls-verify is written.
    let text = zone(
        "",
        "",
        "\n[regions.us-east.health]\ncheck = \"http\"\nport = 8080\ntls-verify = false",
    );
    let d = only(&text);
    assert_diag(
        &d,
        line_of(&text, "tls-verify = false"),
        &["region us-east", "check \"https\" only"],
    );
}

#[test]
fn an_unwritten_timeout_is_reported_at_the_interval_it_follows() {
    // The default timeout is the interval when that is shorter: a zero interval makes both
    // wrong, and both are the interval's line.
    let text = zone(
        "",
        "",
        "\n[regions.us-east.health]\ncheck = \"tcp\"\nport = 80\ninterval = 0",
    );
    let d = errors(&text);
    let line = line_of(&text, "interval = 0");
    assert_has(&d, line, &["interval 0ns", "below the minimum"]);
    assert_has(&d, line, &["timeout 0ns", "above 0"]);
    assert_eq!(d.len(), 2, "{}", LoadError(d.clone()));
}

/// `count` TXT records at `owner`, each one string of `len` octets plus a tag.
fn txt_records(owner: &str, count: usize, len: usize) -> String {
    (0..count)
        .map(|i| format!("{owner} IN TXT \"{}\" \"{i}\"\n", "x".repeat(len)))
        .collect()
}

#[test]
fn rfc1035_an_rrset_no_message_can_carry_is_refused_at_its_first_line() {
    let text = zone("", &txt_records("huge", 300, 250), "");
    let first = text.lines().position(|l| l.starts_with("huge")).unwrap() + 1;
    assert_diag(
        &only(&text),
        first,
        &[
            "huge.example.com. TXT",
            "300 records",
            "65,535",
            "never be served",
        ],
    );
}

#[test]
fn rfc9715_an_answer_too_long_for_udp_is_a_warning_not_an_error() {
    // Seven strings of 200 octets: some 1,500 octets, as the shipped zone's `big` name.
    let text = zone("", &txt_records("big", 7, 200), "");
    let first = text.lines().position(|l| l.starts_with("big")).unwrap() + 1;
    let z = load(&text).unwrap_or_else(|d| panic!("{}", LoadError(d)));
    assert_eq!(z.warnings.len(), 1, "{}", LoadError(z.warnings.clone()));
    assert_diag(
        &z.warnings[0],
        first,
        &["big.example.com. TXT", "1232", "TCP"],
    );
    let z = load(&zone("", &txt_records("small", 3, 200), "")).unwrap();
    assert!(z.warnings.is_empty(), "{}", LoadError(z.warnings));
}

#[test]
fn the_udp_warning_counts_octets_exactly() {
    use hickory_proto::op::{Edns, Message, Query};
    let owner = Name::from_ascii("t.example.com.").unwrap();
    // The message hickory encodes for a TXT record of `rdata` octets (strings of at most 255,
    // each with its length octet), and the warnings of its zone.
    let size_of = |rdata: usize| {
        let mut strings = String::new();
        let mut left = rdata;
        while left > 0 {
            let take = left.min(256);
            strings.push_str(&format!(" \"{}\"", "x".repeat(take - 1)));
            left -= take;
        }
        let z = load(&zone("", &format!("t IN TXT{strings}\n"), ""))
            .unwrap_or_else(|d| panic!("{}", LoadError(d)));
        let mut m = Message::query();
        m.add_query(Query::query(owner.clone(), RecordType::TXT));
        m.answers = z.resolve(&owner, RecordType::TXT).answers;
        m.set_edns(Edns::new());
        (m.to_vec().unwrap().len(), z.warnings.len())
    };
    // An answer of exactly 1232 octets with EDNS fits; one octet more does not.
    let fits = 1232 - (size_of(1).0 - 1);
    assert_eq!(size_of(fits), (1232, 0));
    assert_eq!(size_of(fits + 1), (1233, 1));
}

#[test]
fn a_txt_string_over_255_octets_is_refused_as_unencodable() {
    let text = zone("", &format!("t IN TXT \"{}\"\n", "x".repeat(256)), "");
    assert_diag(
        &only(&text),
        line_of(&text, "t IN TXT"),
        &["t.example.com. TXT", "cannot be encoded", "255"],
    );
}

#[test]
fn a_steered_name_with_too_many_addresses_for_udp_is_warned_at_its_key() {
    let endpoints: Vec<String> = (1..=60).map(|i| format!("\"2001:db8:9::{i:x}\"")).collect();
    let text = format!(
        "{}\n[regions.big]\nlocation = {{ lat = 1.0, lon = 1.0 }}\nendpoints = [{}]\n\n\
         [steered.many]\nregions = [\"big\"]\n",
        zone("", "", ""),
        endpoints.join(", ")
    );
    let z = load(&text).unwrap_or_else(|d| panic!("{}", LoadError(d)));
    assert_eq!(z.warnings.len(), 1, "{}", LoadError(z.warnings.clone()));
    assert_diag(
        &z.warnings[0],
        line_of(&text, "[steered.many]"),
        &["many.example.com. AAAA", "1232"],
    );
    // Capped by `answers`, it fits.
    let capped = format!("{text}answers = 8\n");
    assert!(load(&capped).unwrap().warnings.is_empty());
}
