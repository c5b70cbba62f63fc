//! Identifiers of the things the master tracks: slaves, frameworks, offers and tasks.
//!
//! Each is a newtype over the id's text so that a slave id can never be passed where a
//! framework id is expected. They serialize as plain strings (`serde(transparent)`), order by their text
//! (which is what makes every map keyed by them iterate deterministically) and display as the
//! bare id.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Ids up to this many bytes are kept inline (every id the master makes is shorter).
const INLINE_MAX: usize = 46;

/// The text of an id: inline when short, on the heap otherwise.
///
/// Ids are the keys of nearly every map in the master, the slaves and the frameworks, and a
/// B-tree compares keys at every level of a search. Inline, the text sits in the tree node
/// next to the key: comparing it follows no pointer (the ids of one master share a 37-byte
/// prefix, the master's run id). It orders, compares and hashes as its text.
#[derive(Clone)]
enum IdText {
    Inline { len: u8, bytes: [u8; INLINE_MAX] },
    Heap(Box<str>),
}

impl IdText {
    fn new(text: &str) -> Self {
        if text.len() <= INLINE_MAX {
            let mut bytes = [0u8; INLINE_MAX];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            IdText::Inline {
                len: text.len() as u8,
                bytes,
            }
        } else {
            IdText::Heap(text.into())
        }
    }

    /// The text's bytes, without the UTF-8 check of [`IdText::as_str`]: UTF-8 orders and
    /// compares as its bytes.
    fn as_bytes(&self) -> &[u8] {
        match self {
            IdText::Inline { len, bytes } => &bytes[..usize::from(*len)],
            IdText::Heap(text) => text.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            IdText::Inline { len, bytes } => {
                // Made from a `&str` by `new`: valid UTF-8 up to `len`.
                std::str::from_utf8(&bytes[..usize::from(*len)]).expect("ids are UTF-8")
            }
            IdText::Heap(text) => text,
        }
    }
}

impl Default for IdText {
    fn default() -> Self {
        IdText::new("")
    }
}

/// Orders two zero-padded inline texts as their padding-free bytes would, up to a tie that
/// the lengths break: eight bytes at a time, inline (a B-tree search compares ids sharing a
/// 37-byte prefix at every level; a `memcmp` call per compare was a tenth of a simulation).
/// Padding orders as the text would: where one text ends and the other goes on, the other
/// either has a non-zero byte there (and is the greater, as the longer of two texts one
/// prefix of the other) or the rest is zeros on both sides, left to the lengths.
#[inline]
fn cmp_padded(x: &[u8; INLINE_MAX], y: &[u8; INLINE_MAX]) -> Ordering {
    // Big-endian words order as their bytes. The last word overlaps the one before it by
    // two bytes, which compared equal if it is reached.
    const STARTS: [usize; 6] = [0, 8, 16, 24, 32, INLINE_MAX - 8];
    for at in STARTS {
        let a = u64::from_be_bytes(x[at..at + 8].try_into().expect("eight bytes"));
        let b = u64::from_be_bytes(y[at..at + 8].try_into().expect("eight bytes"));
        if a != b {
            return a.cmp(&b);
        }
    }
    Ordering::Equal
}

impl PartialEq for IdText {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            // A fixed-size compare (padding is always zero), which the compiler inlines.
            (IdText::Inline { len: a, bytes: x }, IdText::Inline { len: b, bytes: y }) => {
                a == b && x == y
            }
            _ => self.as_bytes() == other.as_bytes(),
        }
    }
}

impl Eq for IdText {}

impl PartialOrd for IdText {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IdText {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (IdText::Inline { len: a, bytes: x }, IdText::Inline { len: b, bytes: y }) => {
                cmp_padded(x, y).then(a.cmp(b))
            }
            _ => self.as_bytes().cmp(other.as_bytes()),
        }
    }
}

impl Hash for IdText {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for IdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for IdText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for IdText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = IdText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<IdText, E> {
                Ok(IdText::new(text))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(IdText);

        impl $name {
            /// Wraps an id given as text.
            pub fn new(id: impl AsRef<str>) -> Self {
                Self(IdText::new(id.as_ref()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            /// The id as an owned `String`.
            pub fn into_inner(self) -> String {
                self.0.as_str().to_owned()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(IdText::new(id))
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(IdText::new(&id))
            }
        }

        // Sound because the Eq/Ord/Hash of the newtype are those of its text.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }
    };
}

id_type!(
    /// Identifies a slave (an agent machine offering resources), e.g. `S12`.
    SlaveId
);
id_type!(
    /// Identifies a registered framework (Marathon, Chronos, a user's scheduler).
    FrameworkId
);
id_type!(
    /// Identifies one resource offer sent to a framework.
    OfferId
);
id_type!(
    /// Identifies a task, unique within its framework.
    TaskId
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn ids_display_order_and_serialize_as_plain_strings() {
        let a = SlaveId::new("S1");
        let b = SlaveId::from("S2");
        assert!(a < b);
        assert_eq!(a.to_string(), "S1");
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"S1\"");
        let back: FrameworkId = serde_json::from_str("\"fw-7\"").unwrap();
        assert_eq!(back.as_str(), "fw-7");
        let mut map = BTreeMap::new();
        map.insert(TaskId::new("t"), 1);
        assert_eq!(map.get("t"), Some(&1));
    }

    proptest::proptest! {
        /// Texts over a few characters, NUL among them, at lengths around the inline limit:
        /// prefixes of one another, texts that differ only in trailing NULs, inline against
        /// heap.
        #[test]
        fn ids_order_and_compare_as_their_text(
            a in "[a\\x00b]{0,50}",
            b in "[a\\x00b]{0,50}",
            cut in 0usize..50,
        ) {
            let prefix: String = a.chars().take(cut).collect();
            for (x, y) in [(&a, &b), (&a, &prefix), (&prefix, &a), (&a, &a)] {
                let (i, j) = (TaskId::new(x.as_str()), TaskId::new(y.as_str()));
                proptest::prop_assert_eq!(i.cmp(&j), x.cmp(y), "{:?} vs {:?}", x, y);
                proptest::prop_assert_eq!(i == j, x == y);
            }
        }
    }

    #[test]
    fn short_and_long_ids_order_compare_and_round_trip_as_their_text() {
        let texts = [
            String::new(),
            "a".to_string(),
            "x".repeat(INLINE_MAX),
            "x".repeat(INLINE_MAX + 1),
            format!("{}-0001", "f".repeat(36)),
            "é-ünïcode".to_string(),
            "x".repeat(INLINE_MAX - 1) + "é",
        ];
        for a in &texts {
            let id = TaskId::new(a.clone());
            assert_eq!(id.as_str(), a);
            assert_eq!(id.clone().into_inner(), *a);
            let back: TaskId = postcard::from_bytes(&postcard::to_stdvec(&id).unwrap()).unwrap();
            assert_eq!(back, id);
            let json: TaskId = serde_json::from_str(&serde_json::to_string(&id).unwrap()).unwrap();
            assert_eq!(json, id);
            for b in &texts {
                let other = TaskId::from(b.as_str());
                assert_eq!(id.cmp(&other), a.cmp(b), "{a:?} vs {b:?}");
                assert_eq!(id == other, a == b);
            }
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        TaskId::new("t1").hash(&mut hasher);
        let mut by_str = std::collections::hash_map::DefaultHasher::new();
        "t1".hash(&mut by_str);
        assert_eq!(
            hasher.finish(),
            by_str.finish(),
            "hashes as its text (Borrow<str>)"
        );
    }
}
