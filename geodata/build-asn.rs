//! Builds the embedded IP-to-ASN database from ip-location-db's `asn` package (RouteViews,
//! the five RIRs and DB-IP IP to ASN Lite; CC BY 4.0, see ATTRIBUTION.md): its CSV ranges
//! written as a MaxMind DB with the GeoLite2-ASN field
//! names (`autonomous_system_number`, `autonomous_system_organization`), each AS's record
//! stored once.
//!
//! Usage: cargo run --release --example geodata-asn -- ASN-IPV4.csv ASN-IPV6.csv OUT.mmdb
//!
//! With `SOURCE_DATE_EPOCH` set, the same inputs give the same bytes. The result is read back
//! before the tool succeeds: every row's first and last address must find its AS (but rows the
//! package overlaps).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Subnets, Ipv6Subnets};
use mmdb_writer::{Value, Writer};

type Error = Box<dyn std::error::Error>;

/// One CSV row: `start,end,asn,organisation` (the organisation quoted when it holds a comma).
fn parse(line: &str) -> Result<(IpAddr, IpAddr, u32, String), Error> {
    let mut fields = line.splitn(4, ',');
    let mut next = |what: &str| fields.next().ok_or_else(|| format!("no {what}"));
    let start = next("start")?.parse()?;
    let end = next("end")?.parse()?;
    let asn = next("asn")?.parse()?;
    let org = next("organisation")?;
    let org = match org.strip_prefix('"').and_then(|o| o.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => org.to_owned(),
    };
    Ok((start, end, asn, org))
}

/// The fewest networks that cover `start..=end` exactly.
fn networks(start: IpAddr, end: IpAddr) -> Result<Vec<IpNet>, Error> {
    Ok(match (start, end) {
        (IpAddr::V4(s), IpAddr::V4(e)) => Ipv4Subnets::new(s, e, 0).map(IpNet::V4).collect(),
        (IpAddr::V6(s), IpAddr::V6(e)) => Ipv6Subnets::new(s, e, 0).map(IpNet::V6).collect(),
        _ => return Err(format!("{start} and {end} are of different families").into()),
    })
}

/// Inserts every row of `path`; returns the rows read and the networks left out because they
/// alias IPv4 space in the IPv6 tree (6to4, Teredo: IPv4 clients are looked up as such).
fn insert_csv(writer: &mut Writer, path: &str) -> Result<(usize, usize), Error> {
    let text = std::fs::read_to_string(path)?;
    let mut values: BTreeMap<(u32, String), Value> = BTreeMap::new();
    let (mut rows, mut aliased) = (0, 0);
    for (n, line) in text.lines().enumerate() {
        let (start, end, asn, org) = parse(line).map_err(|e| format!("{path}:{}: {e}", n + 1))?;
        rows += 1;
        let value = values.entry((asn, org)).or_insert_with_key(|(asn, org)| {
            Value::map([
                ("autonomous_system_number", Value::from(*asn)),
                ("autonomous_system_organization", Value::from(org.as_str())),
            ])
        });
        for network in networks(start, end)? {
            match writer.insert_value(network, value.clone()) {
                Ok(()) => {}
                Err(mmdb_writer::Error::AliasedNetwork(_)) => aliased += 1,
                Err(e) => return Err(format!("{path}:{}: {e}", n + 1).into()),
            }
        }
    }
    Ok((rows, aliased))
}

#[derive(serde::Deserialize)]
struct Read {
    autonomous_system_number: u32,
}

/// IPv6 space the writer points at the IPv4 tree: IPv4-mapped, 6to4 and Teredo.
fn is_alias(addr: IpAddr) -> bool {
    let aliases: [IpNet; 3] = [
        "::ffff:0:0/96".parse().expect("valid"),
        "2002::/16".parse().expect("valid"),
        "2001::/32".parse().expect("valid"),
    ];
    aliases.iter().any(|a| a.contains(&addr))
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [v4, v6, out] = &args[..] else {
        return Err("usage: geodata-asn ASN-IPV4.csv ASN-IPV6.csv OUT.mmdb".into());
    };
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.parse()?),
        Err(_) => std::time::SystemTime::now(),
    };
    let mut writer = Writer::builder("Meridian-ASN")
        .description(&[(
            "en",
            "ip-location-db asn (RouteViews, RIRs, DB-IP IP to ASN Lite), neighbours of one AS \
             merged; CC BY 4.0",
        )])
        .build_epoch(epoch)
        .build();
    for path in [v4, v6] {
        let (rows, aliased) = insert_csv(&mut writer, path)?;
        eprintln!("{path}: {rows} rows, {aliased} left out as aliases of IPv4 space");
    }
    let bytes = writer.to_bytes()?;
    // Rows the package overlaps (it has a few) are answered by whichever was written last:
    // those alone are not compared.
    let reader = maxminddb::Reader::from_source(&bytes[..])?;
    let mut overlapped = 0;
    for path in [v4, v6] {
        let rows = std::fs::read_to_string(path)?
            .lines()
            .map(parse)
            .collect::<Result<Vec<_>, _>>()?;
        for (n, (start, end, asn, _)) in rows.iter().enumerate() {
            let before = n.checked_sub(1).map(|p| rows[p].1);
            let after = rows.get(n + 1).map(|r| r.0);
            if before.is_some_and(|b| b >= *start) || after.is_some_and(|a| a <= *end) {
                overlapped += 1;
                continue;
            }
            for addr in [*start, *end] {
                let found = reader
                    .lookup(addr)?
                    .decode::<Read>()?
                    .map(|r| r.autonomous_system_number);
                // Aliases of IPv4 space (left out above) answer with the IPv4 data.
                if found != Some(*asn) && !is_alias(addr) {
                    return Err(format!("{path}:{}: {addr} reads back as {found:?}", n + 1).into());
                }
            }
        }
    }
    std::fs::write(out, &bytes)?;
    eprintln!(
        "{out}: {} bytes; every row read back but {overlapped} that overlap a neighbour",
        bytes.len()
    );
    Ok(())
}
