//! The request-head gate: every request head on an admin connection is read and judged here
//! before hyper sees a byte of it, so that a head hyper would refuse gets the API's JSON error.
//!
//! The rule: hyper answers a head it cannot take (too large, too many headers, a bad request
//! line) by itself, with an empty 431, 414 or 400, and offers no hook to change it. So
//! [`HeadGate`] hands hyper only whole heads that parse, each followed by exactly its body
//! (by `Content-Length` or the chunked framing). A head that would be refused ends the input
//! instead: hyper finishes the answers it owes and gives the connection back, and
//! [`Refusal::write_to`] sends the JSON error with `Connection: close`. A head begun and not
//! finished within [`HEADER_TIMEOUT`] is refused so too (408); an idle connection is closed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::listen::{HEADER_TIMEOUT, MAX_HEAD};

/// Most header fields in one head: hyper's own default, whose excess it answers with 431.
const MAX_HEADERS: usize = 100;
/// Bytes read from the connection at a time.
const READ_CHUNK: usize = 8 * 1024;
/// After a refusal, input read and dropped before the close, at most so much for so long.
const DRAIN_BYTES: usize = 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a head was refused: the status and the words of the JSON error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }

    /// The whole HTTP/1.1 response: the API's JSON error, its security headers, and
    /// `Connection: close` (what follows the refused head cannot be read as requests).
    pub fn response(&self) -> Vec<u8> {
        let body =
            serde_json::json!({"error": self.message, "status": self.status.as_u16()}).to_string();
        let mut head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or(""),
            body.len()
        );
        for (name, value) in super::SECURITY_HEADERS {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body.as_bytes());
        out
    }

    /// Sends the response, closes the write side, then reads what the client still sends
    /// for a moment: closing with unread input would send a reset, which can throw away the
    /// answer before the client reads it.
    pub async fn write_to<S: AsyncRead + AsyncWrite + Unpin>(&self, io: &mut S) -> io::Result<()> {
        io.write_all(&self.response()).await?;
        io.shutdown().await?;
        let drain = async {
            let mut sink = [0u8; READ_CHUNK];
            let mut left = DRAIN_BYTES;
            while left > 0 {
                match io.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
        Ok(())
    }
}

/// How the body after a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
}

/// Judges one whole head (`head` ends with its blank line): its body's framing, or why it is
/// refused. Parsed by httparse as hyper parses it, so a head let through is one hyper takes.
fn judge(head: &[u8]) -> Result<Framing, Refusal> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "incomplete request head",
            ));
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("more than {MAX_HEADERS} header fields"),
            ));
        }
        Err(e) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("bad request head: {e}"),
            ));
        }
    }
    // Far above the router's own 414 limit, below hyper's (it answers 414 itself past it).
    if request.path.is_some_and(|p| p.len() > MAX_HEAD / 2) {
        return Err(Refusal::new(
            StatusCode::URI_TOO_LONG,
            format!("request target over {} octets", MAX_HEAD / 2),
        ));
    }
    let mut length: Option<u64> = None;
    let mut chunked = None;
    for field in request.headers.iter() {
        if field.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(field.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| Refusal::new(StatusCode::BAD_REQUEST, "bad content-length"))?;
            // hyper keeps the two largest values as markers and refuses them as too large.
            if value > u64::MAX - 2 {
                return Err(Refusal::new(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "content-length too large",
                ));
            }
            if length.is_some_and(|l| l != value) {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "content-length given twice, with different values",
                ));
            }
            length = Some(value);
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            if request.version == Some(0) {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "transfer-encoding in an HTTP/1.0 request",
                ));
            }
            // RFC 9112 §6.3: the body is chunked when chunked is the last coding, and a
            // request whose last coding is another cannot be delimited: 400.
            let last = field
                .value
                .rsplit(|b| *b == b',')
                .next()
                .unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        }
    }
    match chunked {
        Some(true) => Ok(Framing::Chunked),
        Some(false) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "transfer-encoding must end in chunked",
        )),
        None => Ok(Framing::Length(length.unwrap_or(0))),
    }
}

/// The refusal for a head not ended within [`MAX_HEAD`] octets: 414 when its request line is
/// that long, else 431.
fn too_large(start: &[u8]) -> Refusal {
    if start.contains(&b'\n') {
        Refusal::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request head over {MAX_HEAD} octets"),
        )
    } else {
        Refusal::new(
            StatusCode::URI_TOO_LONG,
            format!("request line over {MAX_HEAD} octets"),
        )
    }
}

/// Where a chunked body is (RFC 9112 §7.1), followed byte by byte to find its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// In a chunk-size line; the size so far, and whether an extension (`;`) began.
    Size {
        size: u64,
        ext: bool,
        digits: bool,
    },
    /// `n` data octets left, then CRLF.
    Data(u64),
    /// The CR (or LF) after a chunk's data.
    DataEnd,
    /// In the trailer section; `at_line_start`: an empty line here ends the body.
    Trailer {
        at_line_start: bool,
    },
    Done,
}

impl Chunk {
    const START: Chunk = Chunk::Size {
        size: 0,
        ext: false,
        digits: false,
    };

    /// The state after `b`, or `None` when the framing is broken (hyper then refuses the
    /// body, and the router answers it).
    fn step(self, b: u8) -> Option<Chunk> {
        Some(match self {
            Chunk::Size { size, ext, digits } => match b {
                b'\n' if !digits => return None,
                b'\n' if size == 0 => Chunk::Trailer {
                    at_line_start: true,
                },
                b'\n' => Chunk::Data(size),
                b'\r' => Chunk::Size { size, ext, digits },
                _ if ext => Chunk::Size { size, ext, digits },
                b';' | b' ' | b'\t' => Chunk::Size {
                    size,
                    ext: true,
                    digits,
                },
                _ => {
                    let d = (b as char).to_digit(16)?;
                    Chunk::Size {
                        size: size.checked_mul(16)?.checked_add(u64::from(d))?,
                        ext,
                        digits: true,
                    }
                }
            },
            Chunk::Data(0) => match b {
                b'\r' => Chunk::DataEnd,
                b'\n' => Chunk::START,
                _ => return None,
            },
            Chunk::Data(n) => Chunk::Data(n - 1),
            Chunk::DataEnd => match b {
                b'\n' => Chunk::START,
                _ => return None,
            },
            Chunk::Trailer { at_line_start } => match b {
                b'\n' if at_line_start => Chunk::Done,
                b'\n' => Chunk::Trailer {
                    at_line_start: true,
                },
                b'\r' => Chunk::Trailer { at_line_start },
                _ => Chunk::Trailer {
                    at_line_start: false,
                },
            },
            Chunk::Done => Chunk::Done,
        })
    }
}

/// What the gate hands hyper next.
#[derive(Debug)]
enum State {
    /// Reading a head; nothing of it handed over yet.
    Head,
    /// Handing over a judged head of `n` more octets, then its body.
    Handing(usize, Framing),
    /// `n` more body octets.
    Body(u64),
    Chunked(Chunk),
    /// A chunked body whose framing broke: everything goes to hyper, which refuses it.
    Through,
    /// A head was refused: hyper reads the end of input.
    Refused(Refusal),
}

/// An admin connection as hyper reads it: whole judged heads and their bodies (see the
/// module). Writes go straight through.
pub struct HeadGate<I> {
    io: I,
    /// Read from `io`, not yet handed to hyper.
    buf: Vec<u8>,
    /// How much of `buf` was looked through for the end of the head.
    searched: usize,
    /// Runs out [`HEADER_TIMEOUT`] after hyper first asked for the head being read.
    head_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    state: State,
    /// `io` reached its end.
    eof: bool,
}

impl<I> HeadGate<I> {
    pub fn new(io: I) -> HeadGate<I> {
        HeadGate {
            io,
            buf: Vec::new(),
            searched: 0,
            head_timer: None,
            state: State::Head,
            eof: false,
        }
    }

    /// The connection, and the refusal of its last head if it had one.
    pub fn into_parts(self) -> (I, Option<Refusal>) {
        let refusal = match self.state {
            State::Refused(r) => Some(r),
            _ => None,
        };
        (self.io, refusal)
    }

    /// Hands the first `n` buffered octets to `out` (as many as fit); returns how many.
    fn hand(&mut self, out: &mut ReadBuf<'_>, n: usize) -> usize {
        let n = n.min(out.remaining()).min(self.buf.len());
        out.put_slice(&self.buf[..n]);
        self.buf.drain(..n);
        n
    }
}

impl<I: AsyncRead + Unpin> HeadGate<I> {
    /// Reads more of the connection into the buffer; `Ready` once some came or it ended.
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut chunk = [0u8; READ_CHUNK];
        let mut read = ReadBuf::new(&mut chunk);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut read))?;
        if read.filled().is_empty() {
            self.eof = true;
        }
        self.buf.extend_from_slice(read.filled());
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for HeadGate<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            // Each arm hands over octets (and returns), moves to the next state, or reads.
            match this.state {
                State::Refused(_) => return Poll::Ready(Ok(())),
                State::Head => {
                    // From where the last look stopped (less the 3 octets a blank line may
                    // straddle): a head sent an octet at a time costs no rescans.
                    let from = this.searched.saturating_sub(3);
                    let to = this.buf.len().min(MAX_HEAD);
                    let found = this.buf[from..to].windows(4).position(|w| w == b"\r\n\r\n");
                    this.searched = to;
                    if let Some(at) = found {
                        let end = from + at + 4;
                        this.searched = 0;
                        this.head_timer = None;
                        this.state = match judge(&this.buf[..end]) {
                            Ok(framing) => State::Handing(end, framing),
                            Err(refusal) => State::Refused(refusal),
                        };
                        continue;
                    }
                    if this.buf.len() >= MAX_HEAD {
                        this.state = State::Refused(too_large(&this.buf[..MAX_HEAD]));
                        continue;
                    }
                    // A head cut short by the end of input is no request: hyper sees the end.
                    if this.eof {
                        return Poll::Ready(Ok(()));
                    }
                    // The clock runs from when hyper asks for the head, as hyper's own would.
                    let timer = this
                        .head_timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(HEADER_TIMEOUT)));
                    if timer.as_mut().poll(cx).is_ready() {
                        this.head_timer = None;
                        if this.buf.is_empty() {
                            // Idle between requests: closed without a word, as hyper does.
                            this.eof = true;
                            return Poll::Ready(Ok(()));
                        }
                        this.state = State::Refused(Refusal::new(
                            StatusCode::REQUEST_TIMEOUT,
                            format!(
                                "request head not sent within {} s",
                                HEADER_TIMEOUT.as_secs()
                            ),
                        ));
                        continue;
                    }
                }
                State::Handing(n, framing) => {
                    let handed = this.hand(out, n);
                    this.state = match (n - handed, framing) {
                        (0, Framing::Length(0)) => State::Head,
                        (0, Framing::Length(len)) => State::Body(len),
                        (0, Framing::Chunked) => State::Chunked(Chunk::START),
                        (left, framing) => State::Handing(left, framing),
                    };
                    return Poll::Ready(Ok(()));
                }
                State::Body(0) => this.state = State::Head,
                State::Body(left) if !this.buf.is_empty() => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX);
                    let handed = this.hand(out, n);
                    this.state = State::Body(left - handed as u64);
                    return Poll::Ready(Ok(()));
                }
                State::Chunked(Chunk::Done) => this.state = State::Head,
                State::Chunked(mut chunk) if !this.buf.is_empty() => {
                    let mut n = 0;
                    while n < this.buf.len() && n < out.remaining() && chunk != Chunk::Done {
                        match chunk.step(this.buf[n]) {
                            Some(next) => chunk = next,
                            None => {
                                this.state = State::Through;
                                break;
                            }
                        }
                        n += 1;
                    }
                    if !matches!(this.state, State::Through) {
                        this.state = State::Chunked(chunk);
                    } else if n == 0 {
                        // Nothing to hand yet: an empty read would read as the end.
                        continue;
                    }
                    this.hand(out, n);
                    return Poll::Ready(Ok(()));
                }
                State::Through if !this.buf.is_empty() => {
                    this.hand(out, usize::MAX);
                    return Poll::Ready(Ok(()));
                }
                // A body or a broken chunked body, with nothing buffered.
                State::Body(_) | State::Chunked(_) | State::Through => {
                    if this.eof {
                        return Poll::Ready(Ok(()));
                    }
                }
            }
            ready!(this.fill(cx))?;
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for HeadGate<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
