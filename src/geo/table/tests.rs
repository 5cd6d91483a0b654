use std::net::IpAddr;

use super::*;

/// The place `locate` gives `addr`, as the table should.
fn located(geo: &GeoDb, addr: IpAddr) -> Place {
    Place::of(&geo.locate(IpNet::from(addr)))
}

#[test]
fn the_embedded_table_places_every_address_where_locate_does() {
    let geo = GeoDb::embedded().unwrap();
    let started = std::time::Instant::now();
    let t = geo.table().unwrap();
    eprintln!(
        "{} networks, {} + {} ranges, {} places, {} bytes, {:?}",
        t.networks,
        t.v4.len(),
        t.v6.len(),
        t.places.len(),
        t.bytes(),
        started.elapsed()
    );
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let v4 = IpAddr::from(std::net::Ipv4Addr::from(next() as u32));
        let v6 = IpAddr::from(std::net::Ipv6Addr::from(
            (u128::from(next()) << 64 | u128::from(next())) >> (next() % 3 * 8),
        ));
        for addr in [v4, v6] {
            match t.place(addr) {
                Some(p) => assert_eq!(p, located(&geo, addr), "{addr}"),
                None => assert!(addr.is_ipv6(), "{addr}: IPv4 is never direct"),
            }
        }
    }
}

#[test]
fn the_asn_ranges_give_every_address_the_as_locate_does() {
    let geo = GeoDb::embedded().unwrap();
    let started = std::time::Instant::now();
    let asns = super::super::asn::AsnDb::embedded()
        .unwrap()
        .ranges()
        .unwrap();
    eprintln!(
        "{} + {} ASN ranges, {} ASes, {:?}",
        asns.v4.len(),
        asns.v6.len(),
        asns.numbers.len(),
        started.elapsed()
    );
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut known = 0;
    for _ in 0..20_000 {
        let v4 = std::net::Ipv4Addr::from(next() as u32);
        let v6 = std::net::Ipv6Addr::from(
            (u128::from(next()) << 64 | u128::from(next())) >> (next() % 3 * 8),
        );
        let ids = [
            (IpAddr::from(v4), asns.v4.ids[asns.v4.find(u32::from(v4))]),
            (IpAddr::from(v6), asns.v6.ids[asns.v6.find(u128::from(v6))]),
        ];
        for (addr, id) in ids {
            let located = geo.locate(IpNet::from(addr)).asn.map(|a| a.number);
            if id == DIRECT {
                assert!(addr.is_ipv6(), "{addr}: IPv4 is never direct");
                continue;
            }
            known += usize::from(located.is_some());
            assert_eq!(asns.number(id), located, "{addr}");
        }
    }
    assert!(known > 5_000, "only {known} addresses with an AS");
}

#[test]
fn a_slash_64_split_by_the_database_keeps_the_points_of_its_pieces() {
    let unit = |u: u128| u << V6_UNIT;
    // A from 0, B from unit 5, C from inside unit 7, D from unit 9, E from inside unit 9,
    // F from inside unit 12 (after E covers units 10 and 11).
    let ranges = [0, unit(5), unit(7) + 8, unit(9), unit(9) + 1, unit(12) + 3];
    let mut units = Units::default();
    for (start, id) in ranges.into_iter().zip(1..) {
        units.push(start, id);
    }
    let (units, split) = units.finish().unwrap();
    assert_eq!(units.starts, vec![0, 5, 7, 8, 9, 10, 12, 13]);
    assert_eq!(units.ids, vec![1, 2, SPLIT, 3, SPLIT + 1, 5, SPLIT + 2, 6]);
    let split: Vec<&[PointId]> = split.iter().map(|s| &s[..]).collect();
    assert_eq!(split, [&[2, 3][..], &[4, 5], &[5, 6]]);
}

#[test]
fn special_space_is_cut_out_of_the_ranges_as_they_stream_in() {
    let a = |s: &str| u32::from(s.parse::<std::net::Ipv4Addr>().unwrap());
    let mut overlay = Overlay::new(32, Narrow::default());
    overlay.push(0, 1);
    overlay.push(a("9.0.0.0").into(), 2);
    // The same point again: one range with the last, from which 10.0.0.0/8 is cut.
    overlay.push(a("10.128.0.0").into(), 2);
    overlay.push(a("11.0.0.0").into(), 3);
    let r = overlay.finish().0.finish();
    assert_eq!(
        (&r.starts[..5], &r.ids[..5]),
        (
            &[0, a("1.0.0.0"), a("9.0.0.0"), a("10.0.0.0"), a("11.0.0.0")][..],
            &[UNKNOWN, 1, 2, UNKNOWN, 3][..]
        )
    );
    let id = |s: &str| r.ids[r.find(a(s))];
    for block in SPECIAL_BLOCKS.iter().filter(|b| b.addr().is_ipv4()) {
        let IpNet::V4(n) = block else { unreachable!() };
        assert_eq!(id(&n.network().to_string()), UNKNOWN, "{block}");
        assert_eq!(id(&n.broadcast().to_string()), UNKNOWN, "{block}");
    }
    assert_eq!(id("100.0.0.0"), 3);
    assert_eq!(id("255.255.255.255"), UNKNOWN);
}

#[test]
fn a_place_is_24_octets_as_a_bare_point_was() {
    assert_eq!(std::mem::size_of::<Place>(), 24);
    assert_eq!(
        std::mem::size_of::<Place>(),
        std::mem::size_of::<Option<GeoPoint>>()
    );
}

/// A location with these facts, as the database would give it.
fn location(
    point: Option<GeoPoint>,
    country: Option<&'static str>,
    continent: Option<Continent>,
) -> super::super::Location {
    super::super::Location {
        network: "192.0.2.0/24".parse().unwrap(),
        point,
        country,
        continent,
        precision: super::super::Precision::Coordinates,
        asn: None,
    }
}

#[test]
fn a_place_gives_back_the_point_country_and_continent_of_its_location() {
    let points = [
        None,
        Some(GeoPoint { lat: 0.0, lon: 0.0 }),
        Some(GeoPoint {
            lat: -0.0,
            lon: 180.0,
        }),
        Some(GeoPoint {
            lat: 51.507_222_222_222_22,
            lon: -0.127_5,
        }),
    ];
    let continents = std::iter::once(None).chain(Continent::ALL.map(Some));
    for continent in continents {
        let countries =
            std::iter::once(None).chain(countries::COUNTRIES.iter().map(|c| Some(c.code)));
        for country in countries {
            for point in points {
                let place = Place::of(&location(point, country, continent));
                let got = (place.point(), place.country(), place.continent());
                assert_eq!(got, (point, country, continent));
                // To the bit: -0.0 stays -0.0.
                assert_eq!(
                    place.point().map(|p| p.lat.to_bits()),
                    point.map(|p| p.lat.to_bits())
                );
            }
        }
    }
    assert_eq!(Place::of(&location(None, None, None)), Place::default());
}

#[test]
fn places_intern_by_their_bits_and_the_first_is_unknown() {
    let mut places = Places::default();
    assert_eq!(places.intern(Place::default()), UNKNOWN);
    let at = |lat: f64| {
        Place::of(&location(
            Some(GeoPoint { lat, lon: 10.0 }),
            Some("DE"),
            Some(Continent::Europe),
        ))
    };
    let zero = places.intern(at(0.0));
    let minus_zero = places.intern(at(-0.0));
    assert_ne!(zero, minus_zero, "0.0 and -0.0 are different points");
    assert_eq!(places.intern(at(0.0)), zero);
    let other_continent = Place::of(&location(
        Some(GeoPoint {
            lat: 0.0,
            lon: 10.0,
        }),
        Some("DE"),
        Some(Continent::Asia),
    ));
    let asia = places.intern(other_continent);
    assert!(![UNKNOWN, zero, minus_zero].contains(&asia));
    assert_eq!(places.list.len(), 4);
    assert_eq!(places.list[asia as usize], other_continent);
}
