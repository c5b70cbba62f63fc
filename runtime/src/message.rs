//! Typed messages, their envelope on the wire, and the bounded frame codec.
//!
//! A message is any serde type with a stable wire name ([`Message::NAME`]). Between processes
//! of one node it travels as a boxed value (no encoding); between nodes it is encoded with
//! postcard and carried in a frame:
//!
//! ```text
//! frame  = len:u32 (little endian) · payload[len]          len ≤ the configured maximum
//! payload = postcard(Header { from, to, name }) · body      body = postcard(message)
//! ```
//!
//! Decoding never trusts a length: a frame longer than the maximum is refused before any of it
//! is buffered, and a header that does not decode is an error, never a panic.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::limits::{FRAME_HEADER_BYTES_MAX, MESSAGE_NAME_LEN_MAX};
use crate::upid::{is_valid_name, NodeAddr, Upid};

/// A typed message with a stable wire name.
///
/// ```
/// use plateau_runtime::Message;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Ping { seq: u64 }
/// impl Message for Ping { const NAME: &'static str = "example.Ping"; }
/// ```
pub trait Message: Serialize + DeserializeOwned + Send + 'static {
    /// The name this message carries on the wire. Never change it once released: it is how
    /// the receiver picks the handler and the type to decode.
    const NAME: &'static str;
}

/// A message of any type, boxed: what travels between processes of one node.
pub trait AnyMessage: Send {
    /// The wire name.
    fn name(&self) -> &'static str;
    /// Encode the body with postcard.
    fn encode(&self) -> Result<Vec<u8>, postcard::Error>;
    /// Encode the body with postcard at the end of `out`.
    fn encode_into(&self, out: &mut BytesMut) -> Result<(), postcard::Error>;
    /// Encode the body with postcard at the end of `out`, a buffer kept between messages
    /// (the simulator then copies out exactly the bytes it keeps). On error `out` is empty.
    fn encode_append(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error>;
    /// Turn into `Box<dyn Any>` for downcasting to the concrete type.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

impl<M: Message> AnyMessage for M {
    fn name(&self) -> &'static str {
        M::NAME
    }

    fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(self)
    }

    fn encode_into(&self, out: &mut BytesMut) -> Result<(), postcard::Error> {
        let writer = out.writer();
        postcard::to_io(self, writer).map(|_| ())
    }

    fn encode_append(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        *out = postcard::to_extend(self, std::mem::take(out))?;
        Ok(())
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// A message in either of its two forms.
pub enum Payload {
    /// A value sent by a process of the same node.
    Local(Box<dyn AnyMessage>),
    /// Bytes received from another node (or from the simulated network).
    Encoded {
        /// The wire name (borrowed when the sender's type gave it).
        name: Cow<'static, str>,
        /// The postcard-encoded body.
        body: Bytes,
    },
}

impl Payload {
    /// The message's wire name.
    pub fn name(&self) -> &str {
        match self {
            Payload::Local(m) => m.name(),
            Payload::Encoded { name, .. } => name,
        }
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Local(m) => write!(f, "Local({})", m.name()),
            Payload::Encoded { name, body } => write!(f, "Encoded({name}, {} bytes)", body.len()),
        }
    }
}

/// The header of a frame: who sends, to whom, which message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Sending process.
    pub from: Upid,
    /// Receiving process.
    pub to: Upid,
    /// Wire name of the body's type.
    pub name: String,
}

/// A decoded frame: header and the still-encoded body (a zero-copy slice of the frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Sender, receiver and message name.
    pub header: Header,
    /// The postcard-encoded message.
    pub body: Bytes,
}

/// The first frame on every stream: who is speaking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Wire protocol version; a peer speaking another version is refused.
    pub version: u16,
    /// The address the sending node is reached at.
    pub node: NodeAddr,
    /// Differs each time a node starts: a connection from a known address with a new
    /// incarnation means the peer restarted, and links to its previous life break at once.
    pub incarnation: u64,
}

/// Version of the frame protocol spoken by this build.
pub const PROTOCOL_VERSION: u16 = 1;

/// Why bytes on the wire were refused. Each drops the connection they arrived on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A length prefix beyond the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    Oversized {
        /// Claimed length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes of the incomplete frame.
        buffered: usize,
    },
    /// The frame's content does not decode.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Append one frame (header + body) to `out`.
pub fn encode_frame(
    out: &mut BytesMut,
    from: &Upid,
    to: &Upid,
    msg: &dyn AnyMessage,
) -> Result<(), postcard::Error> {
    let start = out.len();
    out.put_u32_le(0);
    let header = HeaderRef {
        from,
        to,
        name: msg.name(),
    };
    postcard::to_io(&header, out.writer())?;
    msg.encode_into(out)?;
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Append one frame whose body is already encoded.
pub fn encode_frame_raw(
    out: &mut BytesMut,
    header: &Header,
    body: &[u8],
) -> Result<(), postcard::Error> {
    let start = out.len();
    out.put_u32_le(0);
    postcard::to_io(header, out.writer())?;
    out.extend_from_slice(body);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Append the `Hello` frame.
pub fn encode_hello(out: &mut BytesMut, hello: &Hello) {
    let body = postcard::to_stdvec(hello).expect("Hello always encodes");
    out.put_u32_le(body.len() as u32);
    out.extend_from_slice(&body);
}

/// Decode the payload of a `Hello` frame.
pub fn decode_hello(frame: &[u8]) -> Result<Hello, FrameError> {
    let hello: Hello =
        postcard::from_bytes(frame).map_err(|e| FrameError::Malformed(format!("hello: {e}")))?;
    if hello.version != PROTOCOL_VERSION {
        return Err(FrameError::Malformed(format!(
            "protocol version {} (this node speaks {})",
            hello.version, PROTOCOL_VERSION
        )));
    }
    Ok(hello)
}

#[derive(Serialize)]
struct HeaderRef<'a> {
    from: &'a Upid,
    to: &'a Upid,
    name: &'a str,
}

/// Decode the payload of one frame into header and body.
pub fn decode_envelope(frame: Bytes) -> Result<Envelope, FrameError> {
    let limit = frame.len().min(FRAME_HEADER_BYTES_MAX);
    let (header, rest): (Header, &[u8]) = postcard::take_from_bytes(&frame[..limit])
        .map_err(|e| FrameError::Malformed(format!("header: {e}")))?;
    if header.name.is_empty() || header.name.len() > MESSAGE_NAME_LEN_MAX {
        return Err(FrameError::Malformed("bad message name".to_string()));
    }
    if !is_valid_name(&header.from.name) || !is_valid_name(&header.to.name) {
        return Err(FrameError::Malformed("bad process name".to_string()));
    }
    let header_len = limit - rest.len();
    let body = frame.slice(header_len..);
    Ok(Envelope { header, body })
}

/// Decode a message body of a known type.
pub fn decode_body<M: Message>(body: &[u8]) -> Result<M, postcard::Error> {
    postcard::from_bytes(body)
}

/// Splits a byte stream into frames, refusing any frame longer than its maximum before
/// buffering it.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_frame_bytes: usize,
}

impl FrameDecoder {
    /// A decoder that refuses frames longer than `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        FrameDecoder {
            buf: BytesMut::new(),
            max_frame_bytes,
        }
    }

    /// Add bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame's payload, `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > self.max_frame_bytes {
            return Err(FrameError::Oversized {
                len,
                max: self.max_frame_bytes,
            });
        }
        if self.buf.len() < 4 + len {
            // Reserve at most what the (bounded) frame still needs.
            self.buf.reserve(4 + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(4);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Call at end of stream: an error if a frame was cut short.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated {
                buffered: self.buf.len(),
            })
        }
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ping {
        seq: u64,
        text: String,
    }
    impl Message for Ping {
        const NAME: &'static str = "test.Ping";
    }

    fn upid(n: &str) -> Upid {
        format!("{n}@127.0.0.1:5050").parse().unwrap()
    }

    #[test]
    fn frame_round_trip() {
        let mut out = BytesMut::new();
        let msg = Ping {
            seq: 7,
            text: "hi".into(),
        };
        encode_frame(&mut out, &upid("a"), &upid("b"), &msg).unwrap();
        encode_frame(&mut out, &upid("a"), &upid("b"), &msg).unwrap();
        let mut dec = FrameDecoder::new(1024);
        // Feed byte by byte: frames come out only when complete.
        let mut frames = Vec::new();
        for b in out.iter() {
            dec.push(&[*b]);
            while let Some(f) = dec.next_frame().unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames.len(), 2);
        dec.finish().unwrap();
        let env = decode_envelope(frames[0].clone()).unwrap();
        assert_eq!(env.header.name, "test.Ping");
        assert_eq!(env.header.from, upid("a"));
        assert_eq!(decode_body::<Ping>(&env.body).unwrap(), msg);
    }

    #[test]
    fn oversized_frame_is_refused_before_buffering() {
        let mut dec = FrameDecoder::new(1024);
        // A 12-byte frame whose length prefix claims 1 TiB-ish (u32 max).
        dec.push(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(matches!(
            dec.next_frame(),
            Err(FrameError::Oversized { .. })
        ));
        assert!(dec.buf.capacity() < 1024 * 1024);
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let mut dec = FrameDecoder::new(1024);
        dec.push(&[10, 0, 0, 0, 1, 2]);
        assert_eq!(dec.next_frame().unwrap(), None);
        assert!(matches!(
            dec.finish(),
            Err(FrameError::Truncated { buffered: 6 })
        ));
    }

    #[test]
    fn hello_version_is_checked() {
        let mut out = BytesMut::new();
        encode_hello(
            &mut out,
            &Hello {
                version: 99,
                node: NodeAddr::new("h", 1),
                incarnation: 1,
            },
        );
        let mut dec = FrameDecoder::new(1024);
        dec.push(&out);
        let f = dec.next_frame().unwrap().unwrap();
        assert!(decode_hello(&f).is_err());
    }
}

/// The fuzz targets of the wire codec: frames, envelopes, `Hello` and message bodies from
/// arbitrary and damaged bytes (see [`crate::fuzzing`]).
#[cfg(test)]
mod fuzz {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    use super::*;
    use crate::fuzzing::{check_message_decoding, fuzz_cases, mutate};
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ping {
        seq: u64,
        text: String,
        items: Vec<(String, Vec<u8>)>,
        ratio: f64,
        peer: Option<Upid>,
    }
    impl Message for Ping {
        const NAME: &'static str = "test.Ping";
    }

    fn upid(n: &str) -> Upid {
        format!("{n}@127.0.0.1:5050").parse().unwrap()
    }

    fn ping(seq: u64) -> Ping {
        Ping {
            seq,
            text: "x".repeat(10),
            items: vec![("a".into(), vec![1, 2, 3]), ("b".into(), vec![])],
            ratio: 0.5,
            peer: Some(upid("peer")),
        }
    }

    /// The largest single allocation made by this thread while armed: a test-only global
    /// allocator, so that "a length prefix is never trusted" is checked, not assumed.
    struct Recording;

    thread_local! {
        static ARMED: Cell<bool> = const { Cell::new(false) };
        static LARGEST: Cell<usize> = const { Cell::new(0) };
    }

    fn note(size: usize) {
        let _ = ARMED.try_with(|armed| {
            if armed.get() {
                let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
            }
        });
    }

    // SAFETY: every call is forwarded to the system allocator unchanged; only sizes are noted.
    unsafe impl GlobalAlloc for Recording {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            System.alloc(layout)
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            System.alloc_zeroed(layout)
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            System.realloc(ptr, layout, new_size)
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout)
        }
    }

    #[global_allocator]
    static ALLOCATOR: Recording = Recording;

    /// Runs `f` and returns the largest single allocation it made on this thread.
    fn largest_allocation(f: impl FnOnce()) -> usize {
        LARGEST.with(|l| l.set(0));
        ARMED.with(|a| a.set(true));
        f();
        ARMED.with(|a| a.set(false));
        LARGEST.with(|l| l.get())
    }

    /// What any decoder may allocate at once for an input of `len` bytes: serde preallocates
    /// at most 1 MiB for a sequence whatever its length prefix claims; the rest grows with
    /// the input actually present.
    fn allocation_bound(len: usize) -> usize {
        (1 << 20) + 64 * len + 4096
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

        /// Random bytes in random chunks never panic the frame decoder; it never returns a
        /// frame beyond its maximum nor buffers more than one frame and one chunk.
        #[test]
        fn fuzz_frame_decoder_random_chunks(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut dec = FrameDecoder::new(256);
            for c in &chunks {
                dec.push(c);
                prop_assert!(dec.buffered() <= 4 + 256 + 64);
                loop {
                    match dec.next_frame() {
                        Ok(Some(f)) => {
                            prop_assert!(f.len() <= 256);
                            let _ = decode_envelope(f.clone());
                            let _ = decode_hello(&f);
                        }
                        Ok(None) => break,
                        Err(_) => return Ok(()),
                    }
                }
            }
            let _ = dec.finish();
        }

        /// A length prefix beyond the maximum is refused before anything is reserved for it.
        #[test]
        fn fuzz_frame_decoder_refuses_huge_lengths(len in 1025u32.., tail in proptest::collection::vec(any::<u8>(), 0..32)) {
            let mut dec = FrameDecoder::new(1024);
            let mut input = len.to_le_bytes().to_vec();
            input.extend_from_slice(&tail);
            let largest = largest_allocation(|| {
                dec.push(&input);
                let refused = matches!(dec.next_frame(), Err(FrameError::Oversized { .. }));
                assert!(refused);
            });
            prop_assert!(largest < 4096, "allocated {} bytes for a refused frame", largest);
        }

        /// Frames of any valid header and body, fed in any chunking, come out whole and equal.
        #[test]
        fn fuzz_frame_round_trip(
            from in "[A-Za-z0-9_.()-]{1,20}",
            to in "[A-Za-z0-9_.()-]{1,20}",
            name in "[a-zA-Z.]{1,40}",
            body in proptest::collection::vec(any::<u8>(), 0..200),
            cut in proptest::collection::vec(1usize..40, 1..20),
        ) {
            let header = Header { from: upid(&from), to: upid(&to), name };
            let mut out = BytesMut::new();
            encode_frame_raw(&mut out, &header, &body).unwrap();
            encode_frame_raw(&mut out, &header, &body).unwrap();
            let mut dec = FrameDecoder::new(4096);
            let mut frames = Vec::new();
            let mut rest: &[u8] = &out;
            let mut sizes = cut.iter().cycle();
            while !rest.is_empty() {
                let n = (*sizes.next().unwrap()).min(rest.len());
                dec.push(&rest[..n]);
                rest = &rest[n..];
                while let Some(frame) = dec.next_frame().unwrap() {
                    frames.push(frame);
                }
            }
            dec.finish().unwrap();
            prop_assert_eq!(frames.len(), 2);
            for frame in frames {
                let env = decode_envelope(frame).unwrap();
                prop_assert_eq!(&env.header, &header);
                prop_assert_eq!(&env.body[..], &body[..]);
            }
        }

        /// Arbitrary frame payloads: the envelope decodes or is refused, never panics, and
        /// allocates no more than the input justifies.
        #[test]
        fn fuzz_envelope_random_bytes(frame in proptest::collection::vec(any::<u8>(), 0..300)) {
            let len = frame.len();
            let largest = largest_allocation(|| {
                if let Ok(env) = decode_envelope(Bytes::from(frame)) {
                    assert!(is_valid_name(&env.header.from.name));
                    assert!(!env.header.name.is_empty());
                    let _ = check_message_decoding::<Ping>(&env.body);
                }
            });
            prop_assert!(largest <= allocation_bound(len), "{} bytes for a {}-byte frame", largest, len);
        }

        /// Valid frames with a few edits decode or fail cleanly, at every layer.
        #[test]
        fn fuzz_envelope_mutated_frames(seq in any::<u64>(), edits in crate::fuzzing::edits(1..6)) {
            let mut out = BytesMut::new();
            encode_frame(&mut out, &upid("a"), &upid("b"), &ping(seq)).unwrap();
            let damaged = mutate(&out, &edits);
            let mut dec = FrameDecoder::new(1 << 20);
            dec.push(&damaged);
            while let Ok(Some(f)) = dec.next_frame() {
                if let Ok(env) = decode_envelope(f) {
                    if let Err(e) = check_message_decoding::<Ping>(&env.body) {
                        prop_assert!(false, "{}", e);
                    }
                }
            }
        }

        /// Message bodies from arbitrary bytes: decode or refuse, round trip when decoded, and
        /// bounded allocations even when a length prefix claims a huge sequence.
        #[test]
        fn fuzz_message_body_random_bytes(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let len = body.len();
            let mut result = Ok(());
            let largest = largest_allocation(|| result = check_message_decoding::<Ping>(&body));
            prop_assert!(result.is_ok(), "{:?}", result);
            prop_assert!(largest <= allocation_bound(len), "{} bytes for a {}-byte body", largest, len);
        }

        /// `Hello` from arbitrary bytes never panics; a valid one round-trips.
        #[test]
        fn fuzz_hello(bytes in proptest::collection::vec(any::<u8>(), 0..64), host in "[a-z0-9.-]{1,30}", port in any::<u16>(), incarnation in any::<u64>()) {
            let _ = decode_hello(&bytes);
            let hello = Hello { version: PROTOCOL_VERSION, node: NodeAddr::new(host, port), incarnation };
            let mut out = BytesMut::new();
            encode_hello(&mut out, &hello);
            let mut dec = FrameDecoder::new(1024);
            dec.push(&out);
            let frame = dec.next_frame().unwrap().unwrap();
            prop_assert_eq!(decode_hello(&frame).unwrap(), hello);
        }

        /// Process ids from arbitrary text: parsed or refused, and what parses prints back to
        /// the same id.
        #[test]
        fn fuzz_upid_parse(text in "\\PC{0,48}", structured in "[a-z()]{0,6}@\\[?[a-z0-9:.]{0,12}\\]?:[0-9]{0,6}") {
            for s in [&text, &structured] {
                if let Ok(upid) = s.parse::<Upid>() {
                    let back: Upid = upid.to_string().parse().unwrap();
                    prop_assert_eq!(back, upid);
                }
                if let Ok(node) = s.parse::<NodeAddr>() {
                    let back: NodeAddr = node.to_string().parse().unwrap();
                    prop_assert_eq!(back, node);
                }
            }
        }
    }

    /// The bincode lesson: a 12-byte frame whose prefix claims 4 GiB allocates nothing big.
    #[test]
    fn fuzz_regression_huge_length_prefix() {
        // The recorder sees a big allocation (else the bounds below would prove nothing).
        let big = largest_allocation(|| drop(std::hint::black_box(vec![0u8; 1 << 22])));
        assert!(big >= 1 << 22, "{big}");
        let mut dec = FrameDecoder::new(crate::limits::FRAME_BYTES_MAX_DEFAULT);
        let largest = largest_allocation(|| {
            dec.push(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8]);
            assert!(matches!(
                dec.next_frame(),
                Err(FrameError::Oversized { .. })
            ));
        });
        assert!(largest < 4096, "{largest}");
        // A body whose sequence length claims 2^63 elements.
        let mut body = postcard::to_stdvec(&1u64).unwrap();
        body.extend_from_slice(&[0x01, b'x']);
        body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        let largest = largest_allocation(|| assert!(decode_body::<Ping>(&body).is_err()));
        assert!(largest <= allocation_bound(body.len()), "{largest}");
    }
}
