//! A DNS packet through the whole request handler, as UDP or TCP delivers it.
//!
//! Input: one selector octet (bit 0: TCP, bit 1: IPv6 client, the rest: client port), then
//! queries each framed as over TCP (a two-octet length); an unframed tail is one more query.
//! The queries share one serving state, so a later one may be answered from what an earlier
//! one cached; each answer must equal what a cold cache gives (see [`super::exchange`]). Every
//! query is asked of the state before its steering is compiled and after.

use meridian::dns::Transport;

/// More queries than this in one input are ignored: the cache interplay needs few.
const MAX_QUERIES: usize = 16;

pub fn run(data: &[u8]) {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let transport = if selector & 1 == 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let src = super::client(selector >> 1);
    // Served as before the steering compiler has run, and after.
    let states = [super::serving(), super::serving_compiled()];
    let colds = states.map(|s| s.renewed());
    let warms = [super::Warm::new(&colds[0]), super::Warm::new(&colds[1])];
    for _ in 0..MAX_QUERIES {
        if rest.is_empty() {
            break;
        }
        let (query, after) = next_query(rest);
        rest = after;
        for (state, warm) in states.iter().zip(&warms) {
            super::exchange(state, warm, query, src, transport);
        }
    }
}

/// The next query and what follows it: a framed query, or all of `rest` when it does not
/// hold as many octets as its first two say.
fn next_query(rest: &[u8]) -> (&[u8], &[u8]) {
    if let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        if tail.len() >= len {
            return tail.split_at(len);
        }
    }
    (rest, &[])
}
