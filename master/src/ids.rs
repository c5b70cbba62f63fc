//! Identifiers of the things the master tracks: slaves, frameworks, offers and tasks.
//!
//! Each is a newtype over `String` so that a slave id can never be passed where a framework id
//! is expected. They serialize as plain strings (`serde(transparent)`), order by their text
//! (which is what makes every map keyed by them iterate deterministically) and display as the
//! bare id.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an id given as text.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as an owned `String`.
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        // Sound because the derived Eq/Ord/Hash of the newtype are those of the inner String.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
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
}
