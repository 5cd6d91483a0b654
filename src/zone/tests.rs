//! `Zone::resolve`: the authoritative lookup of RFC 1034 §4.3.2 on a zone loaded from TOML.

use std::net::IpAddr;
use std::path::Path;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::*;

const ZONE: &str = r#"zone = "example.com."
records = '''
$TTL 3600
@          IN SOA   ns1 hostmaster 2026010101 7200 3600 1209600 300
@          IN NS    ns1
@          IN NS    ns2.example.net.
@          IN MX    10 mail
ns1        IN A     192.0.2.53
ns1        IN AAAA  2001:db8::53
mail       IN A     192.0.2.25
static     IN A     192.0.2.80
static     IN A     192.0.2.81
static     IN AAAA  2001:db8::80
alias      IN CNAME static
alias2     IN CNAME alias
toweb      IN CNAME www
out        IN CNAME www.example.net.
loop-a     IN CNAME loop-b
loop-b     IN CNAME loop-a
lab        IN NS    ns1.lab
lab        IN NS    ns.example.net.
ns1.lab    IN A     192.0.2.99
a.b        IN TXT   "below an empty non-terminal"
*.w        IN TXT   "wild"
*.w        IN A     192.0.2.77
host.w     IN TXT   "real"
deep.ent.w IN TXT   "deep"
'''

[regions.eu-west]
location = { lat = 53.35, lon = -6.26 }
endpoints = ["198.51.100.10"]

[steered.www]
regions = ["eu-west"]
"#;

fn zone() -> Zone {
    load_zone("zones/example.com.toml", ZONE)
}

fn load_zone(path: &str, text: &str) -> Zone {
    load_file(Path::new(path), text).unwrap_or_else(|d| panic!("{}", LoadError(d)))
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn ask(zone: &Zone, qname: &str, qtype: RecordType) -> Resolved {
    zone.resolve(&name(qname), qtype)
}

/// Owner (with its case), type and data of each record, for exact comparisons.
fn show(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data))
        .collect()
}

fn addresses(records: &[Record]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// An RFC 2308 negative answer: no answers, exactly the SOA in authority, with the negative TTL.
#[track_caller]
fn assert_negative(r: &Resolved, rcode: ResponseCode, soa_ttl: u32) {
    assert_eq!(r.rcode, rcode, "{r:?}");
    assert!(r.authoritative, "{r:?}");
    assert!(r.answers.is_empty(), "{r:?}");
    assert!(r.steered.is_none(), "{r:?}");
    assert_eq!(r.authorities.len(), 1, "{r:?}");
    let soa = &r.authorities[0];
    assert_eq!(soa.record_type(), RecordType::SOA);
    assert_eq!(soa.name.to_ascii(), "example.com.");
    assert_eq!(
        soa.ttl, soa_ttl,
        "RFC 2308 §3: TTL is min(SOA TTL, MINIMUM)"
    );
}

#[test]
fn exact_match_answers_the_rrset() {
    let r = ask(&zone(), "static.example.com.", RecordType::A);
    assert_eq!(r.rcode, ResponseCode::NoError);
    assert!(r.authoritative);
    assert_eq!(
        show(&r.answers),
        [
            "static.example.com. 3600 A 192.0.2.80",
            "static.example.com. 3600 A 192.0.2.81"
        ]
    );
    assert!(r.authorities.is_empty(), "{r:?}");
    assert!(r.steered.is_none());

    let r = ask(&zone(), "static.example.com.", RecordType::AAAA);
    assert_eq!(
        show(&r.answers),
        ["static.example.com. 3600 AAAA 2001:db8::80"]
    );
}

#[test]
fn apex_answers_and_mx_gets_its_address_as_additional() {
    let z = zone();
    let r = ask(&z, "example.com.", RecordType::SOA);
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].ttl, 3600, "the SOA answer keeps its own TTL");

    let r = ask(&z, "example.com.", RecordType::NS);
    assert_eq!(r.answers.len(), 2);
    assert_eq!(
        addresses(&r.additionals),
        [ip("192.0.2.53"), ip("2001:db8::53")]
    );

    let r = ask(&z, "example.com.", RecordType::MX);
    assert_eq!(
        show(&r.answers),
        ["example.com. 3600 MX 10 mail.example.com."]
    );
    assert_eq!(addresses(&r.additionals), [ip("192.0.2.25")]);
}

#[test]
fn owner_case_follows_the_query() {
    let r = ask(&zone(), "StAtIc.ExAmPlE.cOm.", RecordType::A);
    assert_eq!(r.answers.len(), 2);
    for rec in &r.answers {
        assert_eq!(rec.name.to_ascii(), "StAtIc.ExAmPlE.cOm.");
    }
}

#[test]
fn rfc2308_nxdomain_has_soa_with_negative_ttl() {
    let r = ask(&zone(), "nope.example.com.", RecordType::A);
    assert_negative(&r, ResponseCode::NXDomain, 300);
    // Below an existing name, too.
    let r = ask(&zone(), "x.static.example.com.", RecordType::A);
    assert_negative(&r, ResponseCode::NXDomain, 300);
}

#[test]
fn rfc2308_negative_ttl_is_the_soa_ttl_when_that_is_lower() {
    let text = ZONE.replace("@          IN SOA", "@       60 IN SOA");
    let z = load_zone("zones/example.com.toml", &text);
    let r = ask(&z, "nope.example.com.", RecordType::A);
    assert_negative(&r, ResponseCode::NXDomain, 60);
    assert_eq!(z.soa().ttl, 60);
}

#[test]
fn rfc2308_nodata_has_soa() {
    let r = ask(&zone(), "static.example.com.", RecordType::TXT);
    assert_negative(&r, ResponseCode::NoError, 300);
}

#[test]
fn empty_non_terminal_is_nodata_not_nxdomain() {
    let r = ask(&zone(), "b.example.com.", RecordType::A);
    assert_negative(&r, ResponseCode::NoError, 300);
    let r = ask(&zone(), "a.b.example.com.", RecordType::TXT);
    assert_eq!(r.answers.len(), 1);
}

#[test]
fn rfc1034_referral_at_the_cut() {
    let r = ask(&zone(), "lab.example.com.", RecordType::A);
    assert_eq!(r.rcode, ResponseCode::NoError);
    assert!(!r.authoritative, "a referral is not authoritative");
    assert!(r.answers.is_empty(), "{r:?}");
    assert!(r.steered.is_none());
    let mut ns = show(&r.authorities);
    ns.sort();
    assert_eq!(
        ns,
        [
            "lab.example.com. 3600 NS ns.example.net.",
            "lab.example.com. 3600 NS ns1.lab.example.com."
        ]
    );
    assert_eq!(
        show(&r.additionals),
        ["ns1.lab.example.com. 3600 A 192.0.2.99"]
    );
}

#[test]
fn rfc1034_referral_below_the_cut() {
    for (qname, qtype) in [
        ("host.lab.example.com.", RecordType::A),
        ("deep.host.lab.example.com.", RecordType::TXT),
        // Glue is not authoritative data: a query for it is referred too.
        ("ns1.lab.example.com.", RecordType::A),
        // DS below the cut belongs to the child.
        ("host.lab.example.com.", RecordType::DS),
        ("lab.example.com.", RecordType::NS),
    ] {
        let r = ask(&zone(), qname, qtype);
        assert!(!r.authoritative, "{qname} {qtype}: {r:?}");
        assert_eq!(r.rcode, ResponseCode::NoError, "{qname} {qtype}");
        assert!(r.answers.is_empty(), "{qname} {qtype}: {r:?}");
        assert_eq!(r.authorities.len(), 2, "{qname} {qtype}: {r:?}");
        assert!(
            r.authorities
                .iter()
                .all(|a| a.record_type() == RecordType::NS
                    && a.name.to_ascii() == "lab.example.com."),
            "{qname} {qtype}: {r:?}"
        );
        assert_eq!(
            addresses(&r.additionals),
            [ip("192.0.2.99")],
            "{qname} {qtype}"
        );
    }
}

#[test]
fn rfc4035_ds_at_the_cut_is_answered_by_the_parent() {
    let r = ask(&zone(), "lab.example.com.", RecordType::DS);
    assert_negative(&r, ResponseCode::NoError, 300);
}

#[test]
fn rfc1034_cname_chain_inside_the_zone_is_followed() {
    let r = ask(&zone(), "alias2.example.com.", RecordType::A);
    assert_eq!(r.rcode, ResponseCode::NoError);
    assert!(r.authoritative);
    assert_eq!(
        show(&r.answers),
        [
            "alias2.example.com. 3600 CNAME alias.example.com.",
            "alias.example.com. 3600 CNAME static.example.com.",
            "static.example.com. 3600 A 192.0.2.80",
            "static.example.com. 3600 A 192.0.2.81",
        ]
    );
}

#[test]
fn rfc1034_cname_query_gets_the_cname_only() {
    let r = ask(&zone(), "alias2.example.com.", RecordType::CNAME);
    assert_eq!(
        show(&r.answers),
        ["alias2.example.com. 3600 CNAME alias.example.com."]
    );
}

#[test]
fn rfc1034_cname_to_a_missing_name_ends_in_nxdomain() {
    let text = ZONE.replace("alias      IN CNAME static", "alias      IN CNAME gone");
    let z = load_zone("zones/example.com.toml", &text);
    let r = ask(&z, "alias.example.com.", RecordType::A);
    // RFC 6604 §3: the rcode describes the last name of the chain.
    assert_eq!(r.rcode, ResponseCode::NXDomain);
    assert_eq!(
        show(&r.answers),
        ["alias.example.com. 3600 CNAME gone.example.com."]
    );
    assert_eq!(r.authorities.len(), 1);
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
}

#[test]
fn rfc1034_cname_out_of_the_zone_stops_the_chain() {
    let r = ask(&zone(), "out.example.com.", RecordType::A);
    assert_eq!(r.rcode, ResponseCode::NoError);
    assert!(r.authoritative);
    assert_eq!(
        show(&r.answers),
        ["out.example.com. 3600 CNAME www.example.net."]
    );
    assert!(
        r.authorities.is_empty(),
        "no SOA: the resolver goes on: {r:?}"
    );
    assert!(r.steered.is_none());
}

#[test]
fn cname_loop_stops_with_each_record_once() {
    let r = ask(&zone(), "loop-a.example.com.", RecordType::A);
    assert_eq!(r.rcode, ResponseCode::NoError);
    // RFC 2181 §5: an RRset holds no duplicate records; the loop is shown once, as BIND does.
    assert_eq!(
        show(&r.answers),
        [
            "loop-a.example.com. 3600 CNAME loop-b.example.com.",
            "loop-b.example.com. 3600 CNAME loop-a.example.com.",
        ]
    );
}

#[test]
fn cname_loop_never_runs_away() {
    let r = ask(&zone(), "loop-a.example.com.", RecordType::A);
    assert!(
        r.answers.len() <= MAX_CNAME_CHAIN + 1,
        "{} answers",
        r.answers.len()
    );
    assert!(
        r.answers
            .iter()
            .all(|a| a.record_type() == RecordType::CNAME)
    );
}

#[test]
fn rfc4592_wildcard_synthesises_with_the_query_name() {
    let z = zone();
    let r = ask(&z, "anything.w.example.com.", RecordType::TXT);
    assert_eq!(r.rcode, ResponseCode::NoError);
    assert!(r.authoritative);
    assert_eq!(show(&r.answers), ["anything.w.example.com. 3600 TXT wild"]);

    // Several labels below the closest encloser match too, and case follows the query.
    let r = ask(&z, "A.Deeper.W.example.com.", RecordType::A);
    assert_eq!(
        show(&r.answers),
        ["A.Deeper.W.example.com. 3600 A 192.0.2.77"]
    );

    // A type the wildcard lacks: NODATA.
    let r = ask(&z, "anything.w.example.com.", RecordType::AAAA);
    assert_negative(&r, ResponseCode::NoError, 300);
}

#[test]
fn rfc4592_wildcard_does_not_match_existing_names() {
    let z = zone();
    let r = ask(&z, "host.w.example.com.", RecordType::TXT);
    assert_eq!(show(&r.answers), ["host.w.example.com. 3600 TXT real"]);
    let r = ask(&z, "host.w.example.com.", RecordType::A);
    assert_negative(&r, ResponseCode::NoError, 300);
}

#[test]
fn rfc4592_wildcard_does_not_match_empty_non_terminals() {
    let z = zone();
    // ent.w exists only as the parent of deep.ent.w.
    let r = ask(&z, "ent.w.example.com.", RecordType::TXT);
    assert_negative(&r, ResponseCode::NoError, 300);
    // Below it the closest encloser is ent.w, which has no wildcard: NXDOMAIN.
    let r = ask(&z, "x.ent.w.example.com.", RecordType::TXT);
    assert_negative(&r, ResponseCode::NXDomain, 300);
}

#[test]
fn rfc4592_wildcard_at_the_apex() {
    let text = ZONE.replace(
        "a.b        IN TXT",
        "*          IN TXT   \"apex wild\"\na.b        IN TXT",
    );
    let z = load_zone("zones/example.com.toml", &text);
    let r = ask(&z, "nope.example.com.", RecordType::TXT);
    assert_eq!(r.rcode, ResponseCode::NoError, "{r:?}");
    assert_eq!(show(&r.answers), ["nope.example.com. 3600 TXT apex wild"]);
    // Below an existing name the closest encloser is that name, which has no wildcard.
    let r = ask(&z, "x.static.example.com.", RecordType::TXT);
    assert_negative(&r, ResponseCode::NXDomain, 300);
}

#[test]
fn rfc4592_the_wildcard_name_itself_answers() {
    let r = ask(&zone(), "*.w.example.com.", RecordType::TXT);
    assert_eq!(show(&r.answers), ["*.w.example.com. 3600 TXT wild"]);
}

#[test]
fn rfc8482_any_returns_exactly_one_rrset() {
    let z = zone();
    for qname in ["static.example.com.", "example.com.", "ns1.example.com."] {
        let r = ask(&z, qname, RecordType::ANY);
        assert!(!r.answers.is_empty(), "{qname}");
        let rtype = r.answers[0].record_type();
        assert!(
            r.answers.iter().all(|a| a.record_type() == rtype),
            "{qname}: {:?}",
            show(&r.answers)
        );
        let full = ask(&z, qname, rtype);
        assert_eq!(
            show(&r.answers),
            show(&full.answers),
            "{qname}: the whole RRset"
        );
    }
}

#[test]
fn steered_name_is_left_to_the_caller() {
    let z = zone();
    for qtype in [RecordType::A, RecordType::AAAA, RecordType::ANY] {
        let r = ask(&z, "WWW.example.com.", qtype);
        assert_eq!(r.rcode, ResponseCode::NoError);
        assert!(r.authoritative);
        assert!(r.answers.is_empty(), "{r:?}");
        let hit = r.steered.expect("www is steered");
        assert_eq!(
            hit.owner.to_ascii(),
            "WWW.example.com.",
            "owner in the query's case"
        );
        assert_eq!(z.steered[hit.index].name.to_ascii(), "www.example.com.");
    }
}

#[test]
fn steered_name_has_no_other_types() {
    let r = ask(&zone(), "www.example.com.", RecordType::TXT);
    assert_negative(&r, ResponseCode::NoError, 300);
}

#[test]
fn cname_to_a_steered_name_keeps_the_cname() {
    let z = zone();
    let r = ask(&z, "toweb.example.com.", RecordType::A);
    assert_eq!(r.rcode, ResponseCode::NoError);
    assert_eq!(
        show(&r.answers),
        ["toweb.example.com. 3600 CNAME www.example.com."]
    );
    let hit = r.steered.expect("the chain ends at a steered name");
    assert_eq!(hit.owner.to_ascii(), "www.example.com.");
    assert_eq!(z.steered[hit.index].name.to_ascii(), "www.example.com.");
}

#[test]
fn steered_by_name_finds_only_steered_names() {
    let z = zone();
    let www = LowerName::new(&name("www.example.com."));
    assert_eq!(
        z.steered_by_name(&www).unwrap().name.to_ascii(),
        "www.example.com."
    );
    assert!(
        z.steered_by_name(&LowerName::new(&name("static.example.com.")))
            .is_none()
    );
    assert!(
        z.steered_by_name(&LowerName::new(&name("nope.example.com.")))
            .is_none()
    );
}

const SUB: &str = r#"zone = "sub.example.com."
records = '''
$TTL 60
@   IN SOA ns1 hostmaster 1 7200 3600 1209600 60
@   IN NS  ns1
ns1 IN A   192.0.2.54
'''
"#;

#[test]
fn zoneset_find_picks_the_longest_zone() {
    let set = ZoneSet::new(vec![zone(), load_zone("zones/sub.example.com.toml", SUB)]);
    assert_eq!(set.len(), 2);
    let find = |q: &str| {
        set.find(&LowerName::new(&name(q)))
            .map(|z| z.origin.to_ascii())
    };
    assert_eq!(find("example.com.").as_deref(), Some("example.com."));
    assert_eq!(find("www.example.com.").as_deref(), Some("example.com."));
    assert_eq!(
        find("sub.example.com.").as_deref(),
        Some("sub.example.com.")
    );
    assert_eq!(
        find("NS1.Sub.Example.com.").as_deref(),
        Some("sub.example.com.")
    );
    assert_eq!(
        find("a.b.sub.example.com.").as_deref(),
        Some("sub.example.com.")
    );
    assert_eq!(find("xsub.example.com.").as_deref(), Some("example.com."));
    assert_eq!(find("com."), None);
    assert_eq!(find("example.org."), None);
    assert_eq!(find("."), None);
}

#[test]
fn zoneset_empty_finds_nothing() {
    let set = ZoneSet::default();
    assert!(set.is_empty());
    assert!(set.find(&LowerName::new(&name("example.com."))).is_none());
}

#[test]
fn a_zone_sets_its_own_quorum_rule_or_takes_the_clusters() {
    assert_eq!(zone().quorum, None);
    for (value, want) in [
        ("\"any\"", Quorum::Any),
        ("\"all\"", Quorum::All),
        ("\"majority\"", Quorum::Majority),
        ("0.18", Quorum::Fraction(0.18)),
    ] {
        let text = ZONE.replacen("records =", &format!("quorum = {value}\nrecords ="), 1);
        assert_eq!(
            load_zone("zones/example.com.toml", &text).quorum,
            Some(want)
        );
    }
    for bad in ["\"most\"", "1.5", "0"] {
        let text = ZONE.replacen("records =", &format!("quorum = {bad}\nrecords ="), 1);
        let err = load_file(Path::new("zones/example.com.toml"), &text).unwrap_err();
        let err = LoadError(err).to_string();
        assert!(
            err.contains("zones/example.com.toml:2: quorum: give"),
            "{bad}: {err}"
        );
    }
}
