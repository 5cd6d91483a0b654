use super::*;

fn opt(family: u16, source: u8, addr: &[u8]) -> Vec<u8> {
    let mut v = family.to_be_bytes().to_vec();
    v.extend([source, 0]);
    v.extend(addr);
    v
}

#[test]
fn rfc7871_valid_options() {
    let s = parse_ecs(&opt(1, 24, &[81, 2, 69])).unwrap();
    assert_eq!(s.to_string(), "81.2.69.0/24");
    let s = parse_ecs(&opt(2, 56, &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0x12])).unwrap();
    assert_eq!(s.to_string(), "2001:db8:0:1200::/56");
    let s = parse_ecs(&opt(1, 0, &[])).unwrap();
    assert_eq!(s.prefix_len(), 0);
    let s = parse_ecs(&opt(1, 20, &[10, 1, 0xF0])).unwrap();
    assert_eq!(s.to_string(), "10.1.240.0/20");
}

#[test]
fn rfc7871_malformed_options() {
    assert_eq!(
        parse_ecs(&opt(1, 33, &[1, 2, 3, 4, 5])),
        Err(EcsError::PrefixTooLong {
            prefix: 33,
            max: 32
        })
    );
    assert_eq!(
        parse_ecs(&opt(2, 129, &[0; 17])),
        Err(EcsError::PrefixTooLong {
            prefix: 129,
            max: 128
        })
    );
    assert_eq!(
        parse_ecs(&opt(1, 20, &[10, 1, 0xF8])),
        Err(EcsError::BitsBeyondPrefix(20))
    );
    assert!(matches!(
        parse_ecs(&opt(1, 24, &[81, 2, 69, 0])),
        Err(EcsError::AddressLength {
            got: 4,
            want: 3,
            ..
        })
    ));
    assert!(matches!(
        parse_ecs(&opt(1, 24, &[81, 2])),
        Err(EcsError::AddressLength {
            got: 2,
            want: 3,
            ..
        })
    ));
    assert_eq!(parse_ecs(&opt(3, 0, &[])), Err(EcsError::Family(3)));
    assert_eq!(parse_ecs(&[0, 1, 24]), Err(EcsError::Short));
}

#[test]
fn counts_that_cannot_fit_the_message_are_refused_before_decoding() {
    let header = |questions, answers, authorities, additionals| Header {
        id: 0,
        flags: 0,
        questions,
        answers,
        authorities,
        additionals,
    };
    // The smallest question is the root name, type and class; the smallest record adds TTL
    // and RDLENGTH.
    assert!(header(1, 0, 0, 0).counts_fit(HEADER_LEN + 5));
    assert!(!header(1, 0, 0, 0).counts_fit(HEADER_LEN + 4));
    assert!(header(1, 0, 0, 1).counts_fit(HEADER_LEN + 5 + 11));
    assert!(!header(1, 0, 1, 1).counts_fit(HEADER_LEN + 5 + 11));
    assert!(header(0, 0, 0, 0).counts_fit(HEADER_LEN));
    // The attack: 65,535 questions claimed in a bare header, and every count at its most in
    // the largest message TCP carries.
    assert!(!header(u16::MAX, 0, 0, 0).counts_fit(HEADER_LEN));
    let max = header(u16::MAX, u16::MAX, u16::MAX, u16::MAX);
    assert!(!max.counts_fit(usize::from(u16::MAX)));
}

#[test]
fn rfc1035_compressed_names_are_spelled_out_and_pointer_loops_refused() {
    // "example.com" at 12, then "www" and a pointer to it: www.example.com.
    let mut m = vec![0u8; HEADER_LEN];
    m.extend(b"\x07example\x03com\x00");
    let www = m.len();
    m.extend(b"\x03www\xC0\x0C");
    m.push(0xAA);
    let mut out = [0u8; MAX_NAME];
    let mut r = Reader::new(&m);
    r.pos = www;
    assert_eq!(r.name(&mut out), Some(17));
    assert_eq!(&out[..17], b"\x03www\x07example\x03com\x00");
    assert_eq!(
        r.pos(),
        www + 6,
        "the reader moves past the name as written"
    );
    // A pointer to itself, a pointer forward, and a label looping back onto its pointer.
    for bad in [&b"\xC0\x0C"[..], b"\xC0\x20", b"\x01a\xC0\x0C"] {
        let mut m = vec![0u8; HEADER_LEN];
        m.extend(bad);
        let mut r = Reader::new(&m);
        r.pos = HEADER_LEN;
        assert_eq!(r.name(&mut out), None, "{bad:02x?}");
    }
}
