use tokio::io::AsyncReadExt;

use super::*;

/// Everything the gate hands hyper from `input`, and its refusal.
async fn through(input: &[u8]) -> (Vec<u8>, Option<Refusal>) {
    let mut gate = HeadGate::new(input);
    let mut out = Vec::new();
    gate.read_to_end(&mut out).await.expect("read from memory");
    let (_, refusal) = gate.into_parts();
    (out, refusal)
}

#[tokio::test]
async fn whole_requests_pass_unchanged_with_their_bodies() {
    let input = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nT: v\r\n\r\n\
GET /d HTTP/1.1\r\nHost: x\r\n\r\n";
    let (out, refusal) = through(input).await;
    assert_eq!(refusal, None);
    assert_eq!(out, input);
}

#[tokio::test]
async fn a_head_over_the_limit_is_refused_with_431_and_nothing_of_it_is_handed_over() {
    let first = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let mut input = first.clone();
    input.extend_from_slice(b"GET /b HTTP/1.1\r\n");
    while input.len() < first.len() + MAX_HEAD + 100 {
        input.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let (out, refusal) = through(&input).await;
    assert_eq!(out, first, "the request before it still goes through");
    let refusal = refusal.expect("refused");
    assert_eq!(refusal.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

#[tokio::test]
async fn a_request_line_over_the_limit_is_refused_with_414() {
    let mut input = b"GET /".to_vec();
    input.resize(MAX_HEAD + 10, b'a');
    let (out, refusal) = through(&input).await;
    assert!(out.is_empty());
    assert_eq!(refusal.expect("refused").status, StatusCode::URI_TOO_LONG);
}

#[tokio::test]
async fn heads_hyper_would_refuse_by_itself_are_refused_here() {
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let mut long_target = b"GET /".to_vec();
    long_target.resize(MAX_HEAD / 2 + 10, b'a');
    long_target.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    for (input, status) in [
        (many, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        (long_target, StatusCode::URI_TOO_LONG),
        (b"GET / HTTP/9.9\r\n\r\n".to_vec(), StatusCode::BAD_REQUEST),
        (
            b"G\x01T / HTTP/1.1\r\n\r\n".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            b"GET / HTTP/1.1\r\nBad Name: v\r\n\r\n".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551614\r\n\r\n".to_vec(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
    ] {
        let (out, refusal) = through(&input).await;
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&input));
        let refusal = refusal.unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(&input)));
        assert_eq!(refusal.status, status, "{}", refusal.message);
    }
}

#[tokio::test]
async fn a_broken_chunked_body_goes_to_hyper_whole() {
    let input =
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET / HTTP/1.1\r\n\r\n";
    let (out, refusal) = through(input).await;
    assert_eq!(refusal, None);
    assert_eq!(out, input);
}

#[test]
fn a_refusal_is_the_apis_json_error_and_closes() {
    let refusal = Refusal::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "too big");
    let text = String::from_utf8(refusal.response()).expect("ASCII");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    assert!(
        head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert!(
        head.contains("\r\ncontent-type: application/json"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\ncontent-length: {}", body.len())),
        "{head}"
    );
    let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(json, serde_json::json!({"error": "too big", "status": 431}));
}

/// hyper may read into any room it has left: handed over a few octets at a time, the same
/// requests come through unchanged, and the refusal still comes after the last whole one.
#[tokio::test]
async fn small_reads_see_the_same_bytes() {
    let good = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
GET /d HTTP/1.1\r\n\r\n";
    let mut input = good.to_vec();
    input.extend_from_slice(b"GET /e HTTP/9.9\r\n\r\n");
    for size in 1..8 {
        let mut gate = HeadGate::new(&input[..]);
        let mut out = Vec::new();
        let mut buf = vec![0u8; size];
        loop {
            let n = gate.read(&mut buf).await.expect("read from memory");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, good, "reads of {size}");
        let (_, refusal) = gate.into_parts();
        assert_eq!(refusal.map(|r| r.status), Some(StatusCode::BAD_REQUEST));
    }
}

/// A connection that gives one octet per read, as a client sending a byte at a time does.
struct Trickle<'a>(&'a [u8]);

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some((first, rest)) = self.0.split_first() {
            out.put_slice(&[*first]);
            self.0 = rest;
        }
        Poll::Ready(Ok(()))
    }
}

/// Heads that arrive an octet at a time are found where they end (each look starts where the
/// last one stopped, the blank line straddling reads included), and one that never ends is
/// refused at the limit.
#[tokio::test]
async fn heads_arriving_an_octet_at_a_time_are_found_and_bounded() {
    let good = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nokGET /c HTTP/1.1\r\n\r\n";
    let mut gate = HeadGate::new(Trickle(good));
    let mut out = Vec::new();
    gate.read_to_end(&mut out).await.expect("read from memory");
    assert_eq!(out, good);
    assert_eq!(gate.into_parts().1, None);

    let mut endless = b"GET / HTTP/1.1\r\n".to_vec();
    endless.resize(MAX_HEAD + 10, b'a');
    let mut gate = HeadGate::new(Trickle(&endless));
    let mut out = Vec::new();
    gate.read_to_end(&mut out).await.expect("read from memory");
    assert!(out.is_empty());
    let refusal = gate.into_parts().1.expect("refused");
    assert_eq!(refusal.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

/// A head begun and not finished within the header timeout is refused with 408; a connection
/// with nothing sent is ended without a refusal (an idle keep-alive connection).
#[tokio::test(start_paused = true)]
async fn a_head_not_finished_in_time_is_refused_with_408_and_an_idle_connection_ended() {
    use tokio::io::AsyncWriteExt;
    let (mut client, server) = tokio::io::duplex(1024);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut gate = HeadGate::new(server);
    let start = tokio::time::Instant::now();
    let mut out = Vec::new();
    gate.read_to_end(&mut out).await.expect("read from memory");
    assert!(start.elapsed() >= HEADER_TIMEOUT, "{:?}", start.elapsed());
    assert!(out.is_empty());
    let refusal = gate.into_parts().1.expect("refused");
    assert_eq!(refusal.status, StatusCode::REQUEST_TIMEOUT);

    let (_client, server) = tokio::io::duplex(1024);
    let mut gate = HeadGate::new(server);
    let start = tokio::time::Instant::now();
    gate.read_to_end(&mut out).await.expect("read from memory");
    assert!(start.elapsed() >= HEADER_TIMEOUT, "{:?}", start.elapsed());
    assert_eq!(gate.into_parts().1, None);
}
