//! Shared pieces of the crates' fuzz suites (property tests over hostile input).
//!
//! Every crate that decodes bytes or text from the network has a `fuzz_*` family of property
//! tests beside its unit tests. They share three things, kept here so that each suite says the
//! same thing the same way:
//!
//! - how many cases a target runs: [`fuzz_cases`], [`FUZZ_CASES_DEFAULT`] unless the
//!   `PROPTEST_CASES` environment variable says otherwise (CI runs the default; a longer run is
//!   `PROPTEST_CASES=20000 cargo test -p <crate> fuzz_`);
//! - how a valid encoding is damaged: [`mutate`] applies a list of edits (flip, insert, remove,
//!   truncate) drawn by the test;
//! - what decoding a message from arbitrary bytes must satisfy: [`check_message_decoding`]
//!   (no panic, and whatever decodes encodes again to bytes that decode to the same encoding).
//!
//! Nothing here is used outside tests; it has no dependency on a test framework so that every
//! crate's tests can call it.
//!
//! ```
//! use plateau_runtime::fuzzing::{check_message_decoding, mutate, Edit};
//! use plateau_runtime::Message;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Ping { seq: u64, text: String }
//! impl Message for Ping { const NAME: &'static str = "doc.Ping"; }
//!
//! let valid = postcard::to_stdvec(&Ping { seq: 1, text: "hi".into() }).unwrap();
//! let damaged = mutate(&valid, &[Edit { kind: 0, position: 1, byte: 0xff }]);
//! check_message_decoding::<Ping>(&damaged).unwrap();
//! ```

use crate::message::Message;

/// Lists of `len` edits (kind, position, byte drawn at random) for [`mutate`]: the one
/// strategy of damage every fuzz suite draws from.
#[cfg(any(test, feature = "fuzzing"))]
pub fn edits(len: std::ops::Range<usize>) -> impl proptest::strategy::Strategy<Value = Vec<Edit>> {
    use proptest::prelude::*;
    proptest::collection::vec(
        (any::<u8>(), any::<usize>(), any::<u8>()).prop_map(|(kind, position, byte)| Edit {
            kind,
            position,
            byte,
        }),
        len,
    )
}

/// Cases a fuzz target runs when `PROPTEST_CASES` is not set: enough to find the shallow
/// crashes in CI while every target stays within a few seconds in a debug build.
pub const FUZZ_CASES_DEFAULT: u32 = 2_000;

/// The number of cases each fuzz target runs: `PROPTEST_CASES` when set to a number, else
/// [`FUZZ_CASES_DEFAULT`].
pub fn fuzz_cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(FUZZ_CASES_DEFAULT)
}

/// One edit of a byte string, drawn by a test. `kind` picks the edit (modulo 4): 0 replaces
/// the byte at `position` with `byte`, 1 inserts `byte` there, 2 removes the byte there, 3
/// cuts the string at `position`. Positions wrap around the current length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edit {
    /// Which edit (modulo 4).
    pub kind: u8,
    /// Where (modulo the length, plus one for inserts).
    pub position: usize,
    /// The byte written or inserted.
    pub byte: u8,
}

/// `valid` with `edits` applied in order.
pub fn mutate(valid: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = valid.to_vec();
    for edit in edits {
        match edit.kind % 4 {
            0 if !out.is_empty() => {
                let at = edit.position % out.len();
                out[at] = edit.byte;
            }
            1 => {
                let at = edit.position % (out.len() + 1);
                out.insert(at, edit.byte);
            }
            2 if !out.is_empty() => {
                let at = edit.position % out.len();
                out.remove(at);
            }
            3 => {
                let at = edit.position % (out.len() + 1);
                out.truncate(at);
            }
            _ => {}
        }
    }
    out
}

/// Decodes `bytes` as the body of an `M` (as a receiving node does) and, when that succeeds,
/// checks that the value encodes again and that the encoding is stable (decoding it gives the
/// same encoding back). A panic inside is the failure a fuzz target looks for; an `Err` here
/// means the round trip broke.
pub fn check_message_decoding<M: Message>(bytes: &[u8]) -> Result<(), String> {
    let Ok(message) = crate::message::decode_body::<M>(bytes) else {
        return Ok(());
    };
    let encoded = postcard::to_stdvec(&message)
        .map_err(|e| format!("{}: a decoded message does not encode: {e}", M::NAME))?;
    let again = crate::message::decode_body::<M>(&encoded)
        .map_err(|e| format!("{}: its own encoding does not decode: {e}", M::NAME))?;
    let encoded_again = postcard::to_stdvec(&again)
        .map_err(|e| format!("{}: a decoded message does not encode: {e}", M::NAME))?;
    if encoded_again != encoded {
        return Err(format!("{}: the encoding is not stable", M::NAME));
    }
    Ok(())
}
