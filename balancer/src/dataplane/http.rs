//! HTTP mode: one listener routing by `Host` and path prefix to keep-alive backend
//! connections.
//!
//! | Case | Answer |
//! |---|---|
//! | no route for the host and path | 404, body `no route for host '…' and path '…'` |
//! | the app has no backend taking requests | 503, body naming the app |
//! | connecting fails on every backend tried | 503, body naming the app and the last error |
//! | connecting or the response headers take too long | 504, body naming the backend |
//! | the backend reads none of the request body for the body idle timeout | 504, body naming the backend |
//! | the backend answers something that is not HTTP, or resets | 502, body naming the backend |
//! | the request head is not HTTP/1.x, too large, or ambiguously framed | 400 or 431, then close |
//!
//! Idempotent requests without a body (`GET`, `HEAD`, `PUT`, `DELETE`, `OPTIONS`, `TRACE`)
//! are retried on another backend when connecting fails, up to
//! [`HTTP_ATTEMPTS_MAX`](crate::limits::HTTP_ATTEMPTS_MAX) backends in all. Nothing was sent
//! then, so the retry cannot run a request twice. The same requests are sent again on a fresh
//! connection when a reused keep-alive connection turns out closed before any byte of answer.
//!
//! # Why a hand-written HTTP/1.1 path
//! The first version used hyper's server and hyper-util's pooled client. Profiled under wrk
//! it spent about 1.5× HAProxy's CPU per request: the system calls were the same (one read
//! and one write per direction), the difference was user space — a pool checkout behind a
//! mutex, a client dispatch task per backend connection with a channel and wake-ups between
//! the two tasks, the request rebuilt (URI parsed from a formatted string, header map cloned)
//! and the allocator. Here one task serves one client connection and owns the backend
//! connections it uses, so a request is: parse the head in place ([`httparse`]), write the
//! rewritten head, relay the body by its framing, parse the response head, write it with the
//! body bytes already read, all without locks or cross-task wake-ups.
//!
//! - Bodies are copied as bytes by their framing: `Content-Length`, `chunked` (relayed as is,
//!   or de-chunked for an HTTP/1.0 client), or until the backend closes.
//! - A client's `Expect: 100-continue` is answered by the proxy (the backend never sees it).
//! - Backend connections idle in the client's task (at most
//!   [`CLIENT_BACKEND_CONNECTIONS_MAX`]); when the client leaves they go to its thread's idle
//!   pool ([`POOL_IDLE_PER_BACKEND_MAX`] per backend, [`POOL_IDLE_TIMEOUT`]). A pooled
//!   connection is checked for a close from the backend before it is used (no system call
//!   when nothing arrived). A draining backend is never picked for new requests — not even
//!   by a request that read the table just before the drain: picking counts the request in
//!   flight first, then checks that no newer table retired the backend — so its idle
//!   connections are just never used again; its requests in flight finish on theirs.
//! - Each HTTP thread runs its own listener, runtime and pool (see [the data
//!   plane](super)); a client connection and its backend connections stay on one thread.
//! - Timeouts per request cost no timer operation: each client connection has one timer per
//!   kind of wait, moved lazily (`LazyDeadline`).
//! - One task per client connection: a hung backend holds only the requests of the clients
//!   waiting on it. A client connection idle for
//!   [`CLIENT_HEADER_READ_TIMEOUT`](crate::limits::CLIENT_HEADER_READ_TIMEOUT) is closed.
//! - After an answer of the proxy's own, the client connection stays open only for a 404 or
//!   a "no healthy backend" 503 to a request without a body; after 400, 431, 502, 504 or a
//!   503 following failed connects it is closed, so a half-read request body can never be
//!   taken for the next request.
//!
//! Headers added: `X-Forwarded-For` (the client's address appended), `X-Forwarded-Proto:
//! http`, `X-Forwarded-Host` (the client's `Host`), `X-Forwarded-Port` (the listener's port).
//! Hop-by-hop headers (and those named in `Connection`) are not forwarded. `Host` is passed
//! unchanged, as HAProxy does.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::stats::{ActiveGuard, ErrorClass};
use super::{LiveRoute, LiveTable, Pick, Shared};
use crate::limits::{
    CHUNK_LINE_LEN_MAX, CHUNK_SIZE_DIGITS_MAX, CLIENT_BACKEND_CONNECTIONS_MAX,
    CLIENT_HEADER_READ_TIMEOUT, HEADERS_MAX, HEAD_LEN_MAX, HTTP_ATTEMPTS_MAX,
    PICK_TABLE_REREADS_MAX, POOL_BACKENDS_MAX, POOL_IDLE_PER_BACKEND_MAX, POOL_IDLE_TIMEOUT,
};

/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

/// Headers that concern one hop only (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers the proxy sets itself on the forwarded request.
const FORWARDED: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
];

/// The HTTP proxy of one HTTP thread: routing, backend connections, retries.
#[derive(Clone)]
pub(crate) struct Proxy {
    shared: Arc<Shared>,
    pool: Arc<Pool>,
}

/// A connection with its read buffer (bytes read but not consumed yet).
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    /// How long a body relayed from this connection may go without progress, reading it or
    /// writing it on ([`DataPlaneConfig::body_idle_timeout`](super::DataPlaneConfig)).
    idle: Duration,
}

impl Conn {
    fn new(stream: TcpStream, idle: Duration) -> Self {
        Conn {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            idle,
        }
    }

    /// Read more bytes into the buffer; 0 means the peer closed.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        self.stream.read_buf(&mut self.buf).await
    }

    /// [`Conn::fill`] that gives up after the idle timeout without a byte.
    async fn fill_body(&mut self) -> io::Result<usize> {
        match tokio::time::timeout(self.idle, self.fill()).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "body stalled")),
        }
    }

    /// True when a kept-alive connection shows no sign of being closed by its peer. Costs no
    /// system call unless the connection became readable since its last short read.
    fn is_reusable(&self) -> bool {
        let mut probe = [0u8; 1];
        self.buf.is_empty()
            && matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// A deadline that moves later at no cost: one [`tokio::time::Sleep`], re-armed only when it
/// fires before the deadline it enforces by then.
///
/// Why: a `tokio::time::timeout` per request registers and removes a timer entry each time,
/// and registering one earlier than the runtime's next planned wake-up writes to its eventfd
/// (profiled: one `write` system call every few requests). Keep-alive connections move their
/// deadlines later on every request, so here a request costs a clock read and a store; the
/// timer is touched about once per timeout period.
struct LazyDeadline {
    at: Instant,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl LazyDeadline {
    fn new() -> Self {
        let at = Instant::now() + CLIENT_HEADER_READ_TIMEOUT; // determinism-ok: I/O shell, timeouts
        LazyDeadline {
            at,
            sleep: Box::pin(tokio::time::sleep_until(at)),
        }
    }

    /// Enforce `at` from now on. Later than the armed timer: nothing to do until it fires.
    fn set(&mut self, at: Instant) {
        self.at = at;
        if at < self.sleep.deadline() {
            self.sleep.as_mut().reset(at);
        }
    }

    /// Completes once the deadline has passed.
    async fn passed(&mut self) {
        loop {
            self.sleep.as_mut().await;
            let now = Instant::now(); // determinism-ok: I/O shell, timeouts
            if now >= self.at {
                return;
            }
            let at = self.at;
            self.sleep.as_mut().reset(at);
        }
    }

    /// `f`'s output, or `None` when the deadline passes first.
    async fn within<T>(&mut self, f: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            r = f => Some(r),
            () = self.passed() => None,
        }
    }
}

/// Idle backend connections shared by the client connections of one HTTP thread (each
/// thread has its own: no lock is ever contended, no connection moves between threads).
#[derive(Default)]
struct Pool {
    idle: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    by_backend: HashMap<String, Vec<(Conn, Instant)>>,
    last_sweep: Option<Instant>,
}

impl Pool {
    fn take(&self, address: &str) -> Option<Conn> {
        let now = Instant::now(); // determinism-ok: I/O shell, idle-connection expiry
        let mut idle = self.idle.lock().expect("pool lock");
        let conns = idle.by_backend.get_mut(address)?;
        while let Some((conn, since)) = conns.pop() {
            if now.duration_since(since) < POOL_IDLE_TIMEOUT && conn.is_reusable() {
                return Some(conn);
            }
        }
        None
    }

    fn put(&self, address: String, conn: Conn) {
        let now = Instant::now(); // determinism-ok: I/O shell, idle-connection expiry
        let mut idle = self.idle.lock().expect("pool lock");
        if idle
            .last_sweep
            .is_none_or(|t| now.duration_since(t) >= POOL_IDLE_TIMEOUT)
        {
            // Backends that left the table are never asked for again: sweep what expired so
            // the pool follows the cluster, not its history.
            idle.last_sweep = Some(now);
            idle.by_backend.retain(|_, conns| {
                conns.retain(|(_, since)| now.duration_since(*since) < POOL_IDLE_TIMEOUT);
                !conns.is_empty()
            });
        }
        if !idle.by_backend.contains_key(&address) && idle.by_backend.len() >= POOL_BACKENDS_MAX {
            return;
        }
        let conns = idle.by_backend.entry(address).or_default();
        if conns.len() < POOL_IDLE_PER_BACKEND_MAX {
            conns.push((conn, now));
        }
    }
}

/// How a message body is delimited.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes (responses only).
    Close,
}

/// A request as it will be forwarded.
struct Request {
    head: Vec<u8>,
    body: Framing,
    idempotent: bool,
    is_head: bool,
    /// HTTP/1.0 client: no chunked responses for it.
    http10: bool,
    keep_alive: bool,
    expect_continue: bool,
}

/// What the proxy answers itself.
struct Answer {
    status: u16,
    reason: &'static str,
    body: String,
}

impl Answer {
    fn new(status: u16, reason: &'static str, body: String) -> Self {
        Answer {
            status,
            reason,
            body,
        }
    }

    fn bytes(&self, close: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.len());
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{}\r\n",
                self.status,
                self.reason,
                self.body.len() + 1,
                if close { "connection: close\r\n" } else { "" }
            )
            .as_bytes(),
        );
        out.extend_from_slice(self.body.as_bytes());
        out.push(b'\n');
        out
    }
}

/// Why a request ended without a proxied response.
enum Failure {
    /// Answer this to the client.
    Answer(Answer),
    /// The client's side broke: close without answering.
    Client,
}

/// Connection tokens of a head: `close`, `keep-alive`, and header names to drop.
#[derive(Default)]
struct ConnectionTokens<'a> {
    close: bool,
    keep_alive: bool,
    named: Vec<&'a str>,
}

fn connection_tokens<'a>(headers: &[httparse::Header<'a>]) -> ConnectionTokens<'a> {
    let mut t = ConnectionTokens::default();
    for h in headers {
        if !h.name.eq_ignore_ascii_case("connection") {
            continue;
        }
        let Ok(v) = std::str::from_utf8(h.value) else {
            continue;
        };
        for token in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if token.eq_ignore_ascii_case("close") {
                t.close = true;
            } else if token.eq_ignore_ascii_case("keep-alive") {
                t.keep_alive = true;
            } else {
                t.named.push(token);
            }
        }
    }
    t
}

fn is_dropped(name: &str, tokens: &ConnectionTokens<'_>, extra: &[&str]) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || extra.iter().any(|h| name.eq_ignore_ascii_case(h))
        || tokens.named.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// The body framing from `Transfer-Encoding` and `Content-Length`; `Err` when ambiguous.
fn framing(headers: &[httparse::Header<'_>]) -> Result<Option<Framing>, &'static str> {
    let mut length: Option<u64> = None;
    let mut chunked = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let v = std::str::from_utf8(h.value).map_err(|_| "bad Transfer-Encoding")?;
            let last = v.rsplit(',').next().unwrap_or("").trim();
            chunked = Some(last.eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            // Digits only: `+5` parses as a Rust integer but is no Content-Length, and a
            // backend that reads it otherwise would frame the body differently.
            let n = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or("bad Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length headers");
            }
            length = Some(n);
        }
    }
    match (chunked, length) {
        (Some(_), Some(_)) => Err("both Transfer-Encoding and Content-Length"),
        (Some(true), None) => Ok(Some(Framing::Chunked)),
        (Some(false), None) => Ok(Some(Framing::Close)),
        (None, Some(0)) => Ok(Some(Framing::Empty)),
        (None, Some(n)) => Ok(Some(Framing::Length(n))),
        (None, None) => Ok(None),
    }
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
    )
}

/// What a parsed request head says, borrowing the client's buffer.
struct Parsed<'a> {
    len: usize,
    host: &'a str,
    path: &'a str,
    request: Request,
}

/// Parse a complete request head at the start of `buf` and build its forwarded form.
fn parse_request<'a>(
    buf: &'a [u8],
    client_ip: &str,
    listen_port: u16,
) -> Result<Parsed<'a>, Answer> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut req = httparse::Request::new(&mut headers);
    let bad = |e: &dyn std::fmt::Display| {
        Answer::new(400, "Bad Request", format!("malformed request: {e}"))
    };
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(bad(&"incomplete head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Answer::new(
                431,
                "Request Header Fields Too Large",
                format!("more than {HEADERS_MAX} request headers"),
            ))
        }
        Err(e) => return Err(bad(&e)),
    };
    let method = req.method.unwrap_or("GET");
    let target = req.path.unwrap_or("/");
    let http10 = req.version == Some(0);
    if method == "CONNECT" {
        return Err(Answer::new(
            405,
            "Method Not Allowed",
            "CONNECT is not proxied".into(),
        ));
    }
    let headers = req.headers;
    let tokens = connection_tokens(headers);
    let body = match framing(headers) {
        Ok(Some(Framing::Close)) => {
            return Err(bad(&"a request's Transfer-Encoding must end in chunked"))
        }
        Ok(f) => f.unwrap_or(Framing::Empty),
        Err(e) => return Err(bad(&e)),
    };
    // Absolute form (`GET http://host/path`): the authority is the host, origin form goes on.
    let (authority, origin) = match target.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => (Some(&rest[..i]), &rest[i..]),
            None => (Some(rest), "/"),
        },
        None => (None, target),
    };
    let mut host = "";
    let mut xff_prev: Vec<&[u8]> = Vec::new();
    let mut expect_continue = false;
    let mut head = Vec::with_capacity(len + 160);
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(origin.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for h in headers.iter() {
        if h.name.eq_ignore_ascii_case("host") {
            host = std::str::from_utf8(h.value).unwrap_or("").trim();
        } else if h.name.eq_ignore_ascii_case("x-forwarded-for") {
            xff_prev.push(h.value);
            continue;
        } else if h.name.eq_ignore_ascii_case("expect") {
            if h.value.eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
                continue;
            }
        } else if is_dropped(h.name, &tokens, &FORWARDED) {
            continue;
        }
        push_header(&mut head, h.name.as_bytes(), h.value);
    }
    if host.is_empty() {
        host = authority.unwrap_or("");
        if !host.is_empty() {
            push_header(&mut head, b"host", host.as_bytes());
        }
    }
    head.extend_from_slice(b"x-forwarded-for: ");
    for v in &xff_prev {
        head.extend_from_slice(v);
        head.extend_from_slice(b", ");
    }
    head.extend_from_slice(client_ip.as_bytes());
    head.extend_from_slice(b"\r\nx-forwarded-proto: http\r\n");
    if !host.is_empty() {
        push_header(&mut head, b"x-forwarded-host", host.as_bytes());
    }
    head.extend_from_slice(b"x-forwarded-port: ");
    head.extend_from_slice(listen_port.to_string().as_bytes());
    head.extend_from_slice(b"\r\n");
    if body == Framing::Chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let path = origin.split('?').next().unwrap_or("/");
    Ok(Parsed {
        len,
        host,
        path,
        request: Request {
            head,
            body,
            idempotent: is_idempotent(method),
            is_head: method == "HEAD",
            http10,
            keep_alive: if http10 {
                tokens.keep_alive && !tokens.close
            } else {
                !tokens.close
            },
            expect_continue: expect_continue && !http10 && body != Framing::Empty,
        },
    })
}

/// A backend's response head, rewritten for the client.
struct Response {
    status: u16,
    head: Vec<u8>,
    body: Framing,
    /// The backend connection may carry another request after this response.
    backend_keep_alive: bool,
}

/// Parse a complete response head at the start of `buf`: `Ok(None)` when incomplete.
fn parse_response(buf: &[u8], req: &Request) -> Result<Option<(usize, Response)>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = resp.code.unwrap_or(502);
    let http10 = resp.version == Some(0);
    let headers = resp.headers;
    let tokens = connection_tokens(headers);
    let mut body = match framing(headers) {
        Ok(f) => f.unwrap_or(Framing::Close),
        // Ambiguous framing: read until the backend closes, and never reuse it.
        Err(_) => Framing::Close,
    };
    if req.is_head || (100..200).contains(&status) || status == 204 || status == 304 {
        body = Framing::Empty;
    }
    let backend_keep_alive = body != Framing::Close
        && if http10 {
            tokens.keep_alive && !tokens.close
        } else {
            !tokens.close
        };
    let mut head = Vec::with_capacity(len + 64);
    let _ = write!(
        HeadWriter(&mut head),
        "HTTP/1.1 {status} {}\r\n",
        resp.reason.unwrap_or("")
    );
    for h in headers.iter() {
        if !is_dropped(h.name, &tokens, &[]) {
            push_header(&mut head, h.name.as_bytes(), h.value);
        }
    }
    if body == Framing::Chunked && !req.http10 {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    // Connection header and final CRLF are added by the caller, who knows whether the
    // client connection stays.
    Ok(Some((
        len,
        Response {
            status,
            head,
            body,
            backend_keep_alive,
        },
    )))
}

/// `fmt::Write` into a byte vector.
struct HeadWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for HeadWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// `write_all` that gives up when `dst` takes no byte for `idle` (a peer that stopped
/// reading). A timer is armed only when the socket's send buffer is full: the common write
/// costs no timer operation.
async fn write_idle(dst: &mut TcpStream, mut buf: &[u8], idle: Duration) -> Result<(), Side> {
    while !buf.is_empty() {
        match dst.try_write(buf) {
            Ok(0) => return Err(Side::Dst),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match tokio::time::timeout(idle, dst.writable()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(Side::Dst),
                    Err(_) => return Err(Side::DstStalled),
                }
            }
            Err(_) => return Err(Side::Dst),
        }
    }
    Ok(())
}

/// Copy `n` body bytes from `src` (its buffer first) to `dst`.
async fn relay_length(src: &mut Conn, dst: &mut TcpStream, mut n: u64) -> Result<(), Side> {
    while n > 0 {
        if src.buf.is_empty() && src.fill_body().await.map_err(|_| Side::Src)? == 0 {
            return Err(Side::Src);
        }
        let take = (src.buf.len() as u64).min(n) as usize;
        write_idle(dst, &src.buf[..take], src.idle).await?;
        src.buf.advance(take);
        n -= take as u64;
    }
    Ok(())
}

/// Copy until `src` closes.
async fn relay_until_close(src: &mut Conn, dst: &mut TcpStream) -> Result<(), Side> {
    loop {
        if !src.buf.is_empty() {
            write_idle(dst, &src.buf, src.idle).await?;
            src.buf.clear();
        }
        if src.fill_body().await.map_err(|_| Side::Src)? == 0 {
            return Ok(());
        }
    }
}

/// One line (through its LF) at the start of `src`'s buffer, reading as needed.
async fn chunk_line(src: &mut Conn) -> Result<usize, Side> {
    let mut searched = 0;
    loop {
        if let Some(i) = src.buf[searched..].iter().position(|b| *b == b'\n') {
            return Ok(searched + i + 1);
        }
        searched = src.buf.len();
        if searched > CHUNK_LINE_LEN_MAX || src.fill_body().await.map_err(|_| Side::Src)? == 0 {
            return Err(Side::Src);
        }
    }
}

/// The size of a chunk from its line (`1a3f;ext=1\r\n`): hex digits only (no sign, no `0x`),
/// at most [`CHUNK_SIZE_DIGITS_MAX`] of them, so that the size plus its CRLF never overflows
/// (`ffffffffffffffff` once wrapped `size + 2` to 1: a panic in debug builds, and a body
/// framed differently from what the backend meant in release ones).
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = std::str::from_utf8(line).ok()?;
    let digits = line.split([';', '\r', '\n']).next().unwrap_or("").trim();
    if digits.is_empty()
        || digits.len() > CHUNK_SIZE_DIGITS_MAX
        || !digits.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// Relay a chunked body: verbatim, or only its data when `dechunk` (for HTTP/1.0 clients).
async fn relay_chunked(src: &mut Conn, dst: &mut TcpStream, dechunk: bool) -> Result<(), Side> {
    loop {
        let line_len = chunk_line(src).await?;
        let size = parse_chunk_size(&src.buf[..line_len]).ok_or(Side::Src)?;
        if !dechunk {
            write_idle(dst, &src.buf[..line_len], src.idle).await?;
        }
        src.buf.advance(line_len);
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let n = chunk_line(src).await?;
                let last = src.buf[..n].iter().all(|b| *b == b'\r' || *b == b'\n');
                if !dechunk {
                    write_idle(dst, &src.buf[..n], src.idle).await?;
                }
                src.buf.advance(n);
                if last {
                    return Ok(());
                }
            }
        }
        if dechunk {
            relay_length(src, dst, size).await?;
            let n = chunk_line(src).await?;
            src.buf.advance(n);
        } else {
            // Data and its CRLF.
            relay_length(src, dst, size + 2).await?;
        }
    }
}

/// Which side of a relay failed.
#[derive(Debug, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
    /// The destination took no byte for the idle timeout.
    DstStalled,
}

async fn relay_body(
    src: &mut Conn,
    dst: &mut TcpStream,
    framing: Framing,
    dechunk: bool,
) -> Result<(), Side> {
    match framing {
        Framing::Empty => Ok(()),
        Framing::Length(n) => relay_length(src, dst, n).await,
        Framing::Chunked => relay_chunked(src, dst, dechunk).await,
        Framing::Close => relay_until_close(src, dst).await,
    }
}

/// Read until a full request head is buffered: `Ok(false)` when the client closed cleanly.
async fn read_request_head(client: &mut Conn) -> Result<bool, Failure> {
    loop {
        if !client.buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
            match httparse::Request::new(&mut headers).parse(&client.buf) {
                Ok(httparse::Status::Complete(_)) => return Ok(true),
                Ok(httparse::Status::Partial) => {}
                // parse_request gives the error its answer.
                Err(_) => return Ok(true),
            }
            if client.buf.len() >= HEAD_LEN_MAX {
                return Err(Failure::Answer(Answer::new(
                    431,
                    "Request Header Fields Too Large",
                    format!("request head longer than {HEAD_LEN_MAX} bytes"),
                )));
            }
        }
        match client.fill().await {
            Ok(0) if client.buf.is_empty() => return Ok(false),
            Ok(0) | Err(_) => return Err(Failure::Client),
            Ok(_) => {}
        }
    }
}

/// Why reading a response head failed.
enum HeadError {
    /// Closed before a single byte: a stale keep-alive connection when it was reused.
    ClosedEmpty,
    Bad(String),
}

async fn read_response_head(backend: &mut Conn, req: &Request) -> Result<Response, HeadError> {
    loop {
        if !backend.buf.is_empty() {
            match parse_response(&backend.buf, req) {
                Ok(Some((len, resp))) => {
                    backend.buf.advance(len);
                    return Ok(resp);
                }
                Ok(None) if backend.buf.len() >= HEAD_LEN_MAX => {
                    return Err(HeadError::Bad(format!(
                        "response head longer than {HEAD_LEN_MAX} bytes"
                    )))
                }
                Ok(None) => {}
                Err(e) => return Err(HeadError::Bad(format!("not HTTP: {e}"))),
            }
        }
        match backend.fill().await {
            Ok(0) if backend.buf.is_empty() => return Err(HeadError::ClosedEmpty),
            Ok(0) => return Err(HeadError::Bad("connection closed mid-head".into())),
            Err(e) if backend.buf.is_empty() && is_reset(&e) => return Err(HeadError::ClosedEmpty),
            Err(e) => return Err(HeadError::Bad(e.to_string())),
            Ok(_) => {}
        }
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// What [`Session::route_and_forward`] did.
enum Routed {
    /// Answered (or failed): what [`Session::one_request`] returns.
    Done(Result<bool, Failure>),
    /// The table was stale for this request; nothing was consumed.
    Stale,
}

/// One client connection: its buffer, its backend connections, its view of the table.
struct Session {
    proxy: Proxy,
    client: Conn,
    client_ip: String,
    listen_port: u16,
    /// Backend connections this client used, by backend address, most recent last.
    backends: Vec<(String, Conn)>,
    table_version: u64,
    /// The table requests are routed on (`None` only while a request holds it).
    table: Option<Arc<LiveTable>>,
    /// For the client's next request head.
    head_deadline: LazyDeadline,
    /// For the backend's response head.
    response_deadline: LazyDeadline,
}

impl Session {
    /// Make `self.table` the current table: one relaxed load per request, the lock only
    /// when the table changed (or when `force`d).
    fn refresh_table(&mut self, force: bool) {
        let v = self.proxy.shared.version.load(Relaxed);
        if force || v != self.table_version || self.table.is_none() {
            self.table = Some(self.proxy.shared.live());
            self.table_version = v;
        }
    }

    fn take_backend(&mut self, address: &str) -> Option<Conn> {
        while let Some(i) = self.backends.iter().rposition(|(a, _)| a == address) {
            let (_, conn) = self.backends.swap_remove(i);
            if conn.is_reusable() {
                return Some(conn);
            }
        }
        self.proxy.pool.take(address)
    }

    fn keep_backend(&mut self, address: &str, conn: Conn) {
        if self.backends.len() >= CLIENT_BACKEND_CONNECTIONS_MAX {
            let (a, c) = self.backends.remove(0);
            self.proxy.pool.put(a, c);
        }
        self.backends.push((address.to_string(), conn));
    }

    async fn run(mut self) {
        loop {
            let now = Instant::now(); // determinism-ok: I/O shell, timeouts
            self.head_deadline.set(now + CLIENT_HEADER_READ_TIMEOUT);
            match self
                .head_deadline
                .within(read_request_head(&mut self.client))
                .await
            {
                Some(Ok(true)) => {}
                Some(Ok(false)) | Some(Err(Failure::Client)) | None => break,
                Some(Err(Failure::Answer(a))) => {
                    let _ = self.client.stream.write_all(&a.bytes(true)).await;
                    break;
                }
            }
            match self.one_request().await {
                Ok(true) => {}
                Ok(false) | Err(Failure::Client) => break,
                Err(Failure::Answer(a)) => {
                    let _ = self.client.stream.write_all(&a.bytes(true)).await;
                    break;
                }
            }
        }
        for (address, conn) in self.backends.drain(..) {
            if conn.is_reusable() {
                self.proxy.pool.put(address, conn);
            }
        }
    }

    /// Route and forward the buffered request; `Ok(true)` when the client connection stays.
    async fn one_request(&mut self) -> Result<bool, Failure> {
        let mut rereads = 0;
        loop {
            self.refresh_table(rereads > 0);
            // Moved out for the request and put back after, rather than cloned: the
            // reference count of a table is shared by every thread, so each clone and drop
            // would move its cache line between cores.
            let table = self.table.take().expect("refreshed above");
            let routed = self
                .route_and_forward(&table, rereads < PICK_TABLE_REREADS_MAX)
                .await;
            self.table = Some(table);
            match routed {
                Routed::Done(result) => return result,
                // Nothing consumed: route the same request again on the current table.
                Routed::Stale => rereads += 1,
            }
        }
    }

    /// Route the buffered request on `table` and forward it. `Routed::Stale` (only when
    /// `may_reread`, and with the request left in the buffer) when every backend of its
    /// route was retired by a newer table since `table` was read.
    async fn route_and_forward(&mut self, table: &LiveTable, may_reread: bool) -> Routed {
        let (request, route, first) = {
            let parsed = match parse_request(&self.client.buf, &self.client_ip, self.listen_port) {
                Ok(p) => p,
                Err(answer) => return Routed::Done(Err(Failure::Answer(answer))),
            };
            // The first backend is picked here, while host and path are at hand.
            let Some(route) = table.http_route(parsed.host, parsed.path) else {
                self.proxy.shared.stats.no_route.fetch_add(1, Relaxed);
                let answer = Answer::new(
                    404,
                    "Not Found",
                    format!(
                        "no route for host '{}' and path '{}'",
                        parsed.host, parsed.path
                    ),
                );
                let (len, request) = (parsed.len, parsed.request);
                self.client.buf.advance(len);
                return Routed::Done(self.answer_locally(&request, answer).await);
            };
            let first = match route.pick(&[]) {
                Pick::Chosen(i, guard) => Some((i, guard)),
                Pick::Nothing { stale: true } if may_reread => return Routed::Stale,
                Pick::Nothing { .. } => None,
            };
            let len = parsed.len;
            let request = parsed.request;
            self.client.buf.advance(len);
            (request, route, first)
        };
        let Some(first) = first else {
            route.app.no_backend.fetch_add(1, Relaxed);
            let answer = Answer::new(
                503,
                "Service Unavailable",
                format!("no healthy backend for app {}", route.app_id),
            );
            return Routed::Done(self.answer_locally(&request, answer).await);
        };
        Routed::Done(self.forward(request, route, first).await)
    }

    /// Answer without a backend. The connection stays only if the request had no body (an
    /// unread body would be taken for the next request).
    async fn answer_locally(&mut self, request: &Request, answer: Answer) -> Result<bool, Failure> {
        let keep = request.keep_alive && request.body == Framing::Empty;
        self.client
            .stream
            .write_all(&answer.bytes(!keep))
            .await
            .map_err(|_| Failure::Client)?;
        Ok(keep)
    }

    /// Send `request` to `first` (picked by the caller), then to other backends of `route`
    /// as the retry rules allow.
    async fn forward(
        &mut self,
        request: Request,
        route: &LiveRoute,
        first: (usize, ActiveGuard),
    ) -> Result<bool, Failure> {
        let replayable = request.idempotent && request.body == Framing::Empty;
        let mut tried: [usize; HTTP_ATTEMPTS_MAX] = [usize::MAX; HTTP_ATTEMPTS_MAX];
        let mut attempts = 0;
        let mut last_connect_error = String::new();
        let mut continue_sent = false;
        let mut next = Some(first);
        while attempts < HTTP_ATTEMPTS_MAX {
            let (i, active) = match next.take() {
                Some(picked) => picked,
                None => match route.pick(&tried[..attempts]) {
                    Pick::Chosen(i, active) => (i, active),
                    Pick::Nothing { .. } => break,
                },
            };
            tried[attempts] = i;
            attempts += 1;
            let backend = &route.backends[i];
            // A reused connection found closed is replaced once by a fresh one.
            let mut fresh_only = false;
            loop {
                let reused = if fresh_only {
                    None
                } else {
                    self.take_backend(&backend.address)
                };
                let is_reused = reused.is_some();
                let mut conn = match reused {
                    Some(c) => c,
                    None => {
                        let connect = TcpStream::connect((
                            backend.endpoint.host.as_str(),
                            backend.endpoint.port,
                        ));
                        match tokio::time::timeout(
                            self.proxy.shared.config.connect_timeout,
                            connect,
                        )
                        .await
                        {
                            Ok(Ok(s)) => {
                                let _ = s.set_nodelay(true);
                                Conn::new(s, self.proxy.shared.config.body_idle_timeout)
                            }
                            Ok(Err(e)) => {
                                backend.stats.error(ErrorClass::Connect);
                                last_connect_error = format!("{}: {e}", backend.address);
                                break;
                            }
                            Err(_) => {
                                backend.stats.error(ErrorClass::Timeout);
                                return Err(Failure::Answer(Answer::new(
                                    504,
                                    "Gateway Timeout",
                                    format!(
                                        "backend {} of app {} did not accept the connection within {:?}",
                                        backend.address,
                                        route.app_id,
                                        self.proxy.shared.config.connect_timeout
                                    ),
                                )));
                            }
                        }
                    }
                };
                backend.stats.requests.fetch_add(1, Relaxed);
                let started = Instant::now(); // determinism-ok: I/O shell, latency metric
                let bad = |why: String| {
                    backend.stats.error(ErrorClass::BadResponse);
                    Failure::Answer(Answer::new(
                        502,
                        "Bad Gateway",
                        format!(
                            "bad response from backend {} of app {}: {why}",
                            backend.address, route.app_id
                        ),
                    ))
                };
                if let Err(e) = conn.stream.write_all(&request.head).await {
                    if is_reused && replayable {
                        fresh_only = true;
                        continue;
                    }
                    return Err(bad(e.to_string()));
                }
                if request.expect_continue && !continue_sent {
                    continue_sent = true;
                    self.client
                        .stream
                        .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                        .await
                        .map_err(|_| Failure::Client)?;
                }
                match relay_body(&mut self.client, &mut conn.stream, request.body, false).await {
                    Ok(()) => {}
                    Err(Side::Src) => return Err(Failure::Client),
                    Err(Side::Dst) => return Err(bad("connection lost sending the body".into())),
                    Err(Side::DstStalled) => {
                        backend.stats.error(ErrorClass::Timeout);
                        return Err(Failure::Answer(Answer::new(
                            504,
                            "Gateway Timeout",
                            format!(
                                "backend {} of app {} read none of the request body for {:?}",
                                backend.address, route.app_id, self.client.idle
                            ),
                        )));
                    }
                }
                let timeout = self.proxy.shared.config.response_header_timeout;
                // Counted from the end of the request (its body may have taken a while).
                let sent = if request.body == Framing::Empty {
                    started
                } else {
                    Instant::now() // determinism-ok: I/O shell, timeouts
                };
                self.response_deadline.set(sent + timeout);
                let response = loop {
                    let head = self
                        .response_deadline
                        .within(read_response_head(&mut conn, &request))
                        .await
                        .ok_or(());
                    match head {
                        Ok(Ok(r)) if r.status == 101 => {
                            return Err(bad("switching protocols was not asked for".into()))
                        }
                        Ok(Ok(mut r)) if (100..200).contains(&r.status) => {
                            // Interim answers go to HTTP/1.1 clients as they are.
                            if !request.http10 {
                                r.head.extend_from_slice(b"\r\n");
                                self.client
                                    .stream
                                    .write_all(&r.head)
                                    .await
                                    .map_err(|_| Failure::Client)?;
                            }
                        }
                        Ok(Ok(r)) => break Some(r),
                        Ok(Err(HeadError::ClosedEmpty)) if is_reused && replayable => break None,
                        Ok(Err(HeadError::ClosedEmpty)) => {
                            return Err(bad("connection closed without an answer".into()))
                        }
                        Ok(Err(HeadError::Bad(why))) => return Err(bad(why)),
                        Err(_) => {
                            backend.stats.error(ErrorClass::Timeout);
                            return Err(Failure::Answer(Answer::new(
                                504,
                                "Gateway Timeout",
                                format!(
                                    "backend {} of app {} did not answer within {:?}",
                                    backend.address, route.app_id, timeout
                                ),
                            )));
                        }
                    }
                };
                let Some(mut response) = response else {
                    fresh_only = true;
                    continue;
                };
                backend.stats.latency.observe(started.elapsed());
                backend.stats.response(response.status);
                let dechunk = request.http10 && response.body == Framing::Chunked;
                let keep_client = request.keep_alive && response.body != Framing::Close && !dechunk;
                if !keep_client {
                    response.head.extend_from_slice(b"connection: close\r\n");
                } else if request.http10 {
                    response
                        .head
                        .extend_from_slice(b"connection: keep-alive\r\n");
                }
                response.head.extend_from_slice(b"\r\n");
                // The body bytes already read go out with the head: one write for a small
                // response.
                if let Framing::Length(n) = response.body {
                    let take = (conn.buf.len() as u64).min(n) as usize;
                    response.head.extend_from_slice(&conn.buf[..take]);
                    conn.buf.advance(take);
                    response.body = Framing::Length(n - take as u64);
                }
                self.client
                    .stream
                    .write_all(&response.head)
                    .await
                    .map_err(|_| Failure::Client)?;
                match relay_body(&mut conn, &mut self.client.stream, response.body, dechunk).await {
                    Ok(()) => {}
                    Err(Side::Src) => {
                        backend.stats.error(ErrorClass::BadResponse);
                        return Err(Failure::Client);
                    }
                    // The client left or stopped reading: close it.
                    Err(Side::Dst | Side::DstStalled) => return Err(Failure::Client),
                }
                drop(active);
                if response.backend_keep_alive && conn.buf.is_empty() {
                    self.keep_backend(&backend.address, conn);
                }
                return Ok(keep_client);
            }
            if !replayable {
                break;
            }
        }
        route.app.no_backend.fetch_add(1, Relaxed);
        Err(Failure::Answer(Answer::new(
            503,
            "Service Unavailable",
            format!(
                "no backend of app {} accepted the connection (tried {attempts}; last error: {last_connect_error})",
                route.app_id
            ),
        )))
    }
}

/// A client connection moved to another HTTP thread, with its connection permit.
pub(crate) type HandedOff = (
    std::net::TcpStream,
    SocketAddr,
    tokio::sync::OwnedSemaphorePermit,
);

/// What the HTTP threads know of each other: their client connection counts, and where to
/// hand a connection to each.
///
/// Why: `SO_REUSEPORT` spreads connections by a hash of their addresses, so 64 connections
/// over 2 threads split unevenly (by ±4 typically), and the clients of the busier thread wait
/// longer (a worse p99). A thread that accepts a connection while another thread has fewer hands it
/// over (a system call and a wake-up per connection, nothing per request), as HAProxy's
/// listeners give each connection to their least loaded thread.
pub(crate) struct HttpThreads {
    /// Client connections being served, per thread.
    load: Vec<AtomicUsize>,
    /// Connections handed to each thread. Unbounded, but each entry holds one of the
    /// [`CONNECTIONS_MAX`](crate::limits::CONNECTIONS_MAX) connection permits.
    handoff: Vec<tokio::sync::mpsc::UnboundedSender<HandedOff>>,
}

impl HttpThreads {
    /// Threads for `n` listeners, and the receiving end of each one's hand-off queue.
    pub(crate) fn new(
        n: usize,
    ) -> (
        Arc<HttpThreads>,
        Vec<tokio::sync::mpsc::UnboundedReceiver<HandedOff>>,
    ) {
        let (senders, receivers) = (0..n)
            .map(|_| tokio::sync::mpsc::unbounded_channel())
            .unzip();
        let threads = HttpThreads {
            load: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            handoff: senders,
        };
        (Arc::new(threads), receivers)
    }

    /// The thread that should serve a connection accepted by `me`: `me` unless another
    /// thread serves fewer connections. Counts the connection on that thread.
    fn assign(&self, me: usize) -> usize {
        let mine = self.load[me].load(Relaxed);
        let (other, least) = self
            .load
            .iter()
            .enumerate()
            .map(|(i, l)| (i, l.load(Relaxed)))
            .min_by_key(|(_, l)| *l)
            .unwrap_or((me, mine));
        let chosen = if least < mine { other } else { me };
        self.load[chosen].fetch_add(1, Relaxed);
        chosen
    }
}

/// Uncounts one client connection of a thread when its session ends.
struct LoadGuard(Arc<HttpThreads>, usize);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.load[self.1].fetch_sub(1, Relaxed);
    }
}

impl Proxy {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Proxy {
            shared,
            pool: Arc::new(Pool::default()),
        }
    }

    /// Accept clients (and take those other threads hand over) until the runtime stops.
    /// `me`: this thread's index in `threads`.
    pub(crate) async fn serve(
        self,
        listener: tokio::net::TcpListener,
        threads: Arc<HttpThreads>,
        me: usize,
        mut handed: tokio::sync::mpsc::UnboundedReceiver<HandedOff>,
    ) {
        let listen_port = listener.local_addr().map_or(0, |a| a.port());
        let accept = || async {
            let permit = self.shared.connections.clone().acquire_owned().await.ok()?;
            Some((listener.accept().await, permit))
        };
        loop {
            // Both branches are cancel-safe: a permit acquired for an accept that lost the
            // race is just released.
            let (stream, peer, permit) = tokio::select! {
                biased;
                Some((stream, peer, permit)) = handed.recv() => {
                    match TcpStream::from_std(stream) {
                        Ok(stream) => (stream, peer, permit),
                        Err(e) => {
                            threads.load[me].fetch_sub(1, Relaxed);
                            tracing::warn!(error = %e, "HTTP connection handed over unusable");
                            continue;
                        }
                    }
                }
                accepted = accept() => match accepted {
                    None => return,
                    Some((Ok((stream, peer)), permit)) => {
                        let to = threads.assign(me);
                        if to == me {
                            (stream, peer, permit)
                        } else {
                            let moved = stream.into_std().map(|s| (s, peer, permit));
                            if let Err(e) = moved.map(|m| threads.handoff[to].send(m)) {
                                threads.load[to].fetch_sub(1, Relaxed);
                                tracing::warn!(error = %e, "HTTP connection not handed over");
                            }
                            continue;
                        }
                    }
                    Some((Err(e), _)) => {
                        tracing::warn!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let load = LoadGuard(threads.clone(), me);
            let _ = stream.set_nodelay(true);
            let table_version = self.shared.version.load(Relaxed);
            let session = Session {
                table: Some(self.shared.live()),
                table_version,
                proxy: self.clone(),
                client: Conn::new(stream, self.shared.config.body_idle_timeout),
                client_ip: client_ip(peer),
                listen_port,
                backends: Vec::new(),
                head_deadline: LazyDeadline::new(),
                response_deadline: LazyDeadline::new(),
            };
            tokio::spawn(async move {
                session.run().await;
                drop(load);
                drop(permit);
            });
        }
    }
}

fn client_ip(peer: SocketAddr) -> String {
    match peer.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        ip => ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn connections_go_to_the_least_loaded_thread() {
        let (threads, _handed) = HttpThreads::new(3);
        let loads = || -> Vec<usize> { threads.load.iter().map(|l| l.load(Relaxed)).collect() };
        // Ties stay on the accepting thread.
        assert_eq!(threads.assign(1), 1);
        // Thread 1 now serves more than 0 and 2: its next accepts go to them.
        assert_eq!(threads.assign(1), 0);
        assert_eq!(threads.assign(1), 2);
        assert_eq!(loads(), vec![1, 1, 1]);
        // However they arrive, connections stay spread within one of each other.
        for i in 0..30 {
            threads.assign(i % 2);
        }
        let l = loads();
        assert!(
            l.iter().max().unwrap() - l.iter().min().unwrap() <= 1,
            "{l:?}"
        );
        assert_eq!(l.iter().sum::<usize>(), 33);
        // A session ending uncounts its connection.
        drop(LoadGuard(threads.clone(), 0));
        assert_eq!(loads().iter().sum::<usize>(), 32);
    }

    /// On tokio's paused clock: a deadline moved later fires at the later time (not at the
    /// one the timer was armed for), one moved earlier fires early, and a future that
    /// finishes first wins.
    #[tokio::test(start_paused = true)]
    async fn lazy_deadline_enforces_its_latest_setting() {
        let secs = Duration::from_secs;
        let never = std::future::pending::<()>;
        let now = Instant::now; // determinism-ok: tokio's paused test clock
        let mut d = LazyDeadline::new();
        let t0 = now();
        d.set(t0 + secs(10));
        d.set(t0 + secs(20));
        assert!(d.within(never()).await.is_none());
        assert_eq!(now() - t0, secs(20));
        let t1 = now();
        d.set(t1 + secs(100));
        d.set(t1 + secs(1));
        assert!(d.within(never()).await.is_none());
        assert_eq!(now() - t1, secs(1));
        let t2 = now();
        d.set(t2 + secs(5));
        let quick = async {
            tokio::time::sleep(secs(1)).await;
            7
        };
        assert_eq!(d.within(quick).await, Some(7));
        assert_eq!(now() - t2, secs(1));
        // Moved later again after an early wake-up of its timer: still not passed at 5 s.
        d.set(t2 + secs(30));
        assert!(d.within(never()).await.is_none());
        assert_eq!(now() - t2, secs(30));
    }

    fn parse(raw: &str) -> Result<(String, String, Request), Answer> {
        let p = parse_request(raw.as_bytes(), "10.0.0.9", 80)?;
        Ok((p.host.to_string(), p.path.to_string(), p.request))
    }

    #[test]
    fn forwarded_head_drops_hop_by_hop_and_appends_forwarding_headers() {
        let (host, path, req) = parse(
            "GET http://ignored/a/b?x=1 HTTP/1.1\r\nHost: Web:8080\r\nConnection: keep-alive, X-Secret\r\n\
             X-Secret: 1\r\nKeep-Alive: 5\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\nAccept: */*\r\n\r\n",
        )
        .ok()
        .unwrap();
        assert_eq!((host.as_str(), path.as_str()), ("Web:8080", "/a/b"));
        let head = String::from_utf8(req.head).unwrap();
        assert!(head.starts_with("GET /a/b?x=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("Host: Web:8080\r\n"), "{head}");
        assert!(head.contains("Accept: */*\r\n"), "{head}");
        assert!(
            head.contains("x-forwarded-for: 1.2.3.4, 10.0.0.9\r\n"),
            "{head}"
        );
        assert!(head.contains("x-forwarded-proto: http\r\n"), "{head}");
        assert!(head.contains("x-forwarded-host: Web:8080\r\n"), "{head}");
        assert!(head.contains("x-forwarded-port: 80\r\n"), "{head}");
        for gone in ["X-Secret", "Keep-Alive", "Connection", "https"] {
            assert!(!head.contains(gone), "{gone} forwarded: {head}");
        }
        assert!(head.ends_with("\r\n\r\n"));
        assert!(req.keep_alive && req.idempotent && req.body == Framing::Empty);
    }

    #[test]
    fn ambiguous_request_framing_is_refused() {
        let both =
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(both).err().unwrap().status, 400);
        let two = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(parse(two).err().unwrap().status, 400);
        let gzip = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(parse(gzip).err().unwrap().status, 400);
        let (_, _, ok) = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
            .ok()
            .unwrap();
        assert_eq!(ok.body, Framing::Chunked);
        assert!(!ok.idempotent);
    }

    #[test]
    fn http10_keeps_alive_only_when_asked() {
        let (_, _, r) = parse("GET / HTTP/1.0\r\nHost: a\r\n\r\n").ok().unwrap();
        assert!(r.http10 && !r.keep_alive);
        let (_, _, r) = parse("GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
            .ok()
            .unwrap();
        assert!(r.keep_alive);
        let (_, _, r) = parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .ok()
            .unwrap();
        assert!(!r.keep_alive);
    }

    #[test]
    fn response_framing_and_reuse() {
        let get = parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n").ok().unwrap().2;
        let head = parse("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").ok().unwrap().2;
        let r = |raw: &str, req: &Request| parse_response(raw.as_bytes(), req).unwrap().unwrap().1;
        let ok = r("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n", &get);
        assert_eq!((ok.body, ok.backend_keep_alive), (Framing::Length(3), true));
        let chunked = r(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            &get,
        );
        assert_eq!(chunked.body, Framing::Chunked);
        assert!(String::from_utf8_lossy(&chunked.head).contains("transfer-encoding: chunked"));
        let old = r("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n", &get);
        assert!(!old.backend_keep_alive);
        let until_close = r("HTTP/1.1 200 OK\r\n\r\n", &get);
        assert_eq!(until_close.body, Framing::Close);
        assert!(!until_close.backend_keep_alive);
        let no_body = r("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", &head);
        assert_eq!(no_body.body, Framing::Empty);
        assert!(String::from_utf8_lossy(&no_body.head).contains("Content-Length: 9"));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-", &get)
            .unwrap()
            .is_none());
        assert!(parse_response(b"\x00\x01garbage\r\n\r\n", &get).is_err());
    }
}

/// Fuzz targets of the HTTP proxy's parsers: request heads from clients, response heads from
/// backends, chunk-size lines. Any bytes are parsed or refused (a 4xx answer, a dropped
/// connection), never a panic; what is forwarded is a well-formed head that says the same
/// request, without the hop-by-hop headers it named.
#[cfg(test)]
mod fuzz {
    use super::*;
    use plateau_runtime::fuzzing::{fuzz_cases, mutate};
    use proptest::prelude::*;

    const VALID: &str = "POST http://web.example/a/b?x=1 HTTP/1.1\r\nHost: Web:8080\r\n\
        Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nX-Forwarded-For: 1.2.3.4\r\n\
        Content-Length: 5\r\nExpect: 100-continue\r\nAccept: */*\r\n\r\nhello";

    fn header_line() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("Host"),
            Just("Content-Length"),
            Just("Transfer-Encoding"),
            Just("Connection"),
            Just("Expect"),
            Just("X-Forwarded-For"),
            Just("Keep-Alive"),
            Just("Upgrade"),
            Just("X-Secret"),
        ];
        let value = prop_oneof![
            Just("chunked".to_string()),
            Just("gzip, chunked".to_string()),
            Just("close".to_string()),
            Just("keep-alive, X-Secret".to_string()),
            Just("100-continue".to_string()),
            Just("+5".to_string()),
            Just("18446744073709551616".to_string()),
            "[0-9]{1,20}",
            "[ -~]{0,16}",
        ];
        (name, value).prop_map(|(n, v)| format!("{n}: {v}\r\n"))
    }

    fn request_head() -> impl Strategy<Value = Vec<u8>> {
        let method = prop_oneof![
            Just("GET"),
            Just("POST"),
            Just("HEAD"),
            Just("CONNECT"),
            Just("PUT"),
            Just("G\0T")
        ];
        let target = prop_oneof![
            Just("/".to_string()),
            "/[a-z/?=&%]{0,20}",
            "http://[a-z.:0-9]{0,12}(/[a-z]{0,5})?",
            Just("*".to_string()),
            "[ -~]{0,12}",
        ];
        let version = prop_oneof![
            Just("HTTP/1.1"),
            Just("HTTP/1.0"),
            Just("HTTP/2.0"),
            Just("")
        ];
        (
            method,
            target,
            version,
            proptest::collection::vec(header_line(), 0..8),
        )
            .prop_map(|(m, t, v, h)| format!("{m} {t} {v}\r\n{}\r\n", h.concat()).into_bytes())
    }

    fn check_request(buf: &[u8]) -> Result<(), TestCaseError> {
        match parse_request(buf, "10.0.0.9", 80) {
            Err(answer) => prop_assert!((400..500).contains(&answer.status), "{}", answer.status),
            Ok(parsed) => {
                prop_assert!(parsed.len <= buf.len());
                let head = &parsed.request.head;
                prop_assert!(head.ends_with(b"\r\n\r\n"));
                let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX + 8];
                let mut again = httparse::Request::new(&mut headers);
                let status = again.parse(head);
                prop_assert!(
                    matches!(status, Ok(httparse::Status::Complete(n)) if n == head.len()),
                    "forwarded head does not parse: {:?} {:?}",
                    status,
                    String::from_utf8_lossy(head)
                );
                prop_assert_eq!(again.version, Some(1));
                let tokens = connection_tokens(again.headers);
                prop_assert!(!tokens.close && !tokens.keep_alive, "Connection forwarded");
                for h in again.headers.iter() {
                    // The balancer frames a chunked body itself: its own header is the one kept.
                    let own_chunked = h.name == "transfer-encoding"
                        && h.value == b"chunked"
                        && parsed.request.body == Framing::Chunked;
                    prop_assert!(
                        own_chunked
                            || !HOP_BY_HOP
                                .iter()
                                .any(|hop| h.name.eq_ignore_ascii_case(hop)),
                        "hop-by-hop {} forwarded",
                        h.name
                    );
                }
                // The forwarded framing is the one the balancer relays.
                let framing_again = framing(again.headers);
                match parsed.request.body {
                    Framing::Chunked => prop_assert_eq!(framing_again, Ok(Some(Framing::Chunked))),
                    Framing::Length(n) => {
                        prop_assert_eq!(framing_again, Ok(Some(Framing::Length(n))))
                    }
                    Framing::Empty => {
                        prop_assert!(matches!(framing_again, Ok(None) | Ok(Some(Framing::Empty))))
                    }
                    Framing::Close => prop_assert!(false, "a request framed until close"),
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

        #[test]
        fn fuzz_balancer_request_random_bytes(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            check_request(&buf)?;
        }

        #[test]
        fn fuzz_balancer_request_heads(head in request_head(), edits in proptest::option::of(plateau_runtime::fuzzing::edits(1..6))) {
            let buf = match &edits {
                Some(edits) => mutate(&head, edits),
                None => head,
            };
            check_request(&buf)?;
            check_request(&mutate(VALID.as_bytes(), edits.as_deref().unwrap_or(&[])))?;
        }

        #[test]
        fn fuzz_balancer_response_heads(head in request_head(), status in 0u16..1000, edits in plateau_runtime::fuzzing::edits(1..6)) {
            // A response head built from the same header lines.
            let text = String::from_utf8_lossy(&head).into_owned();
            let headers = text.split_once("\r\n").map_or("", |(_, rest)| rest);
            let raw = format!("HTTP/1.1 {status} X\r\n{headers}");
            let get = parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "10.0.0.9", 80).ok().unwrap().request;
            for buf in [raw.clone().into_bytes(), mutate(raw.as_bytes(), &edits)] {
                if let Ok(Some((len, response))) = parse_response(&buf, &get) {
                    prop_assert!(len <= buf.len());
                    // The caller adds the Connection header and the final CRLF.
                    let mut head = response.head.clone();
                    head.extend_from_slice(b"\r\n");
                    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX + 8];
                    let status = httparse::Response::new(&mut headers).parse(&head);
                    prop_assert!(
                        matches!(status, Ok(httparse::Status::Complete(n)) if n == head.len()),
                        "forwarded head does not parse: {:?} {:?}", status, String::from_utf8_lossy(&head)
                    );
                }
            }
        }

        #[test]
        fn fuzz_balancer_chunk_size_line(line in proptest::collection::vec(any::<u8>(), 0..24), size in any::<u64>(), ext in "(;[a-z=]{0,8})?") {
            if let Some(n) = parse_chunk_size(&line) {
                prop_assert!(n.checked_add(2).is_some());
            }
            let text = format!("{size:x}{ext}\r\n");
            match parse_chunk_size(text.as_bytes()) {
                Some(n) => prop_assert_eq!(n, size),
                None => {
                    let digits = format!("{:x}", size).len();
                    prop_assert!(digits > CHUNK_SIZE_DIGITS_MAX);
                }
            }
        }
    }

    /// Found while writing fuzz_balancer_chunk_size_line (by reading the relay it guards): the
    /// largest size overflowed `size + 2`; `+5` was read as 5 in both framings.
    #[test]
    fn fuzz_regression_chunk_size_overflow_and_lenient_numbers() {
        assert_eq!(parse_chunk_size(b"ffffffffffffffff\r\n"), None);
        assert_eq!(parse_chunk_size(b"+5\r\n"), None);
        assert_eq!(parse_chunk_size(b"0x5\r\n"), None);
        assert_eq!(parse_chunk_size(b"\r\n"), None);
        assert_eq!(parse_chunk_size(b"1A;name=v\r\n"), Some(26));
        assert_eq!(parse_chunk_size(b"0\r\n"), Some(0));
        let plus = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n";
        assert_eq!(
            parse_request(plus.as_bytes(), "10.0.0.9", 80)
                .err()
                .unwrap()
                .status,
            400
        );
    }
}
