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
