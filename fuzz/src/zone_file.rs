//! The zone file loader: any text gives a zone or diagnostics, each on a line of the file;
//! a zone that loads answers queries like any other.
//!
//! Input: the file's text (inputs that are not UTF-8 are skipped: the loader takes `&str`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use meridian::dns::Transport;
use meridian::serving::Snapshot;
use meridian::zone::{self, Zone, ZoneSet};

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("zones/fuzz.toml");
    match zone::load_file(path, text) {
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty(), "a failed load says why");
            // `Diagnostic::line` is 1-based; one past the last newline is the last line.
            let last = text.matches('\n').count() + 1;
            for d in &diagnostics {
                assert_eq!(d.file, path, "{d}");
                if let Some(line) = d.line {
                    assert!((1..=last).contains(&line), "{d}: the file has {last} lines");
                }
            }
        }
        Ok(zone) => answer(zone),
    }
}

/// Asks the zone for its apex, its steered names and a name it does not have, over both
/// transports.
fn answer(zone: Zone) {
    let mut names = vec![zone.origin.clone()];
    names.extend(zone.steered.iter().map(|s| s.name.clone()));
    if let Ok(missing) =
        Name::from_ascii("no-such-name-here").and_then(|n| n.append_domain(&zone.origin))
    {
        names.push(missing);
    }
    let state = Snapshot::new(ZoneSet::new(vec![zone]), super::geo(), super::metrics());
    let warm = super::Warm::new(&state);
    let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5300);
    for (id, name) in names.iter().enumerate() {
        for rtype in [
            RecordType::SOA,
            RecordType::NS,
            RecordType::A,
            RecordType::AAAA,
            RecordType::TXT,
            RecordType::ANY,
        ] {
            let mut query = Message::query();
            query.metadata.id = id as u16;
            query.add_query(Query::query(name.clone(), rtype));
            let Ok(bytes) = query.to_vec() else { continue };
            for transport in [Transport::Udp, Transport::Tcp] {
                super::exchange(&state, &warm, &bytes, src, transport);
            }
        }
    }
}
