//! Credentials: principals and their secrets, in Mesos' JSON format, checked against a
//! request's `Authorization` header.
//!
//! ```json
//! {"credentials": [{"principal": "marathon", "secret": "s3cret"}]}
//! ```
//!
//! Two forms of the header are accepted:
//! - `Authorization: Basic base64(principal:secret)` — what Marathon's and Chronos' clients
//!   (and curl's `-u principal:secret`) send;
//! - `Authorization: Bearer <secret>` — the secret alone is the token; it names its principal,
//!   which is why two principals may not share a secret.
//!
//! Every secret is compared in constant time and every credential is compared on each check,
//! so the time taken says nothing about which principal or how much of a secret matched.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use crate::limits::{AUTHORIZATION_HEADER_BYTES_MAX, CREDENTIALS_LEN_MAX, CREDENTIAL_TEXT_LEN_MAX};
use crate::Error;

/// One principal and its secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// Who: the name ACLs speak of.
    pub principal: String,
    /// The secret it proves itself with.
    pub secret: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("principal", &self.principal)
            .field("secret", &"<hidden>")
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    credentials: Vec<Credential>,
}

/// The outcome of checking an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// The header proves this principal.
    Principal(String),
    /// No `Authorization` header.
    Missing,
    /// A header that proves no one (wrong secret, unknown principal, malformed).
    Invalid,
}

/// The credentials an API accepts (`--credentials FILE`).
#[derive(Debug, Clone)]
pub struct Credentials {
    entries: Vec<Credential>,
}

impl Credentials {
    /// From the JSON text of a credentials file.
    pub fn from_json(text: &str) -> Result<Credentials, Error> {
        let file: File =
            serde_json::from_str(text).map_err(|e| Error::Credentials(e.to_string()))?;
        Credentials::new(file.credentials)
    }

    /// From a list; refuses empty principals or secrets, duplicates, and oversized entries.
    pub fn new(entries: Vec<Credential>) -> Result<Credentials, Error> {
        let bad = |m: String| Err(Error::Credentials(m));
        if entries.is_empty() {
            return bad("no credentials: give at least one principal and secret".into());
        }
        if entries.len() > CREDENTIALS_LEN_MAX {
            return bad(format!("more than {CREDENTIALS_LEN_MAX} credentials"));
        }
        let (mut principals, mut secrets) = (BTreeSet::new(), BTreeSet::new());
        for (i, c) in entries.iter().enumerate() {
            if c.principal.is_empty() || c.secret.is_empty() {
                return bad(format!(
                    "credentials[{i}]: principal and secret must not be empty"
                ));
            }
            if c.principal.len() > CREDENTIAL_TEXT_LEN_MAX
                || c.secret.len() > CREDENTIAL_TEXT_LEN_MAX
            {
                return bad(format!(
                    "credentials[{i}]: principal and secret are at most {CREDENTIAL_TEXT_LEN_MAX} bytes"
                ));
            }
            if c.principal.contains(':') {
                return bad(format!(
                    "credentials[{i}]: principal '{}' contains ':' (HTTP Basic cannot carry it)",
                    c.principal
                ));
            }
            if !principals.insert(c.principal.as_str()) {
                return bad(format!(
                    "credentials[{i}]: principal '{}' appears twice",
                    c.principal
                ));
            }
            if !secrets.insert(c.secret.as_str()) {
                return bad(format!(
                    "credentials[{i}]: principal '{}' shares its secret with another principal (a bearer token must name one principal)",
                    c.principal
                ));
            }
        }
        Ok(Credentials { entries })
    }

    /// Read a credentials file.
    pub fn load(path: &Path) -> Result<Credentials, Error> {
        let text = crate::read_policy_file(path)?;
        Credentials::from_json(&text).map_err(|e| match e {
            Error::Credentials(m) => Error::Credentials(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// The principals, in file order.
    pub fn principals(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|c| c.principal.as_str())
    }

    /// Check an `Authorization` header value (absent: [`Authentication::Missing`]).
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Authentication {
        let Some(header) = authorization else {
            return Authentication::Missing;
        };
        if header.len() > AUTHORIZATION_HEADER_BYTES_MAX {
            return Authentication::Invalid;
        }
        let Ok(header) = std::str::from_utf8(header) else {
            return Authentication::Invalid;
        };
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        let rest = rest.trim();
        let found = if scheme.eq_ignore_ascii_case("basic") {
            let Some(decoded) = decode_base64(rest) else {
                return Authentication::Invalid;
            };
            let Ok(decoded) = String::from_utf8(decoded) else {
                return Authentication::Invalid;
            };
            let Some((principal, secret)) = decoded.split_once(':') else {
                return Authentication::Invalid;
            };
            self.find(|c| {
                // Both compared, always, in constant time.
                let p = constant_time_eq(c.principal.as_bytes(), principal.as_bytes());
                let s = constant_time_eq(c.secret.as_bytes(), secret.as_bytes());
                p & s
            })
        } else if scheme.eq_ignore_ascii_case("bearer") {
            self.find(|c| constant_time_eq(c.secret.as_bytes(), rest.as_bytes()))
        } else {
            None
        };
        match found {
            Some(principal) => Authentication::Principal(principal),
            None => Authentication::Invalid,
        }
    }

    /// The principal of the credential `matches` accepts, checking every credential (no early
    /// exit: the time does not tell which one matched).
    fn find(&self, matches: impl Fn(&Credential) -> bool) -> Option<String> {
        let mut found = None;
        for c in &self.entries {
            if matches(c) && found.is_none() {
                found = Some(c.principal.clone());
            }
        }
        found
    }
}

/// Equal bytes, in a time that depends on the lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// Standard base64 (with or without padding); `None` if malformed.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let text = text.trim_end_matches('=').as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// Standard base64 with padding (for clients building a Basic header).
pub use plateau_runtime::tls::encode_base64;

/// The `Authorization` header value for HTTP Basic with `principal` and `secret`.
pub fn basic_header(principal: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        encode_base64(format!("{principal}:{secret}").as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials::from_json(
            r#"{"credentials":[{"principal":"alice","secret":"wonder"},{"principal":"bob","secret":"builder"}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn base64_round_trips_every_length() {
        for n in 0..20 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode_base64(&encode_base64(&bytes)).unwrap(), bytes);
        }
        assert_eq!(encode_base64(b"alice:wonder"), "YWxpY2U6d29uZGVy");
        assert!(decode_base64("a").is_none());
        assert!(decode_base64("!!!!").is_none());
    }

    #[test]
    fn basic_finds_the_principal_whose_secret_matches() {
        let c = creds();
        let check = |h: &str| c.authenticate(Some(h.as_bytes()));
        assert_eq!(
            check(&basic_header("alice", "wonder")),
            Authentication::Principal("alice".into())
        );
        assert_eq!(
            check(&basic_header("bob", "builder")),
            Authentication::Principal("bob".into())
        );
        assert_eq!(
            check(&basic_header("alice", "builder")),
            Authentication::Invalid
        );
        assert_eq!(
            check(&basic_header("carol", "wonder")),
            Authentication::Invalid
        );
        assert_eq!(
            check(&basic_header("alice", "wonde")),
            Authentication::Invalid
        );
        assert_eq!(
            check(&basic_header("alice", "wonderr")),
            Authentication::Invalid
        );
        assert_eq!(
            check("basic YWxpY2U6d29uZGVy"),
            Authentication::Principal("alice".into())
        );
        assert_eq!(check("Basic !!"), Authentication::Invalid);
        assert_eq!(check("Basic YWxpY2U="), Authentication::Invalid, "no colon");
        assert_eq!(check("Digest whatever"), Authentication::Invalid);
        assert_eq!(c.authenticate(None), Authentication::Missing);
        assert_eq!(c.authenticate(Some(&[0xff, 0xfe])), Authentication::Invalid);
        let long = format!("Bearer {}", "x".repeat(AUTHORIZATION_HEADER_BYTES_MAX));
        assert_eq!(check(&long), Authentication::Invalid);
    }

    #[test]
    fn a_bearer_token_is_the_secret_and_names_its_principal() {
        let c = creds();
        let check = |h: &str| c.authenticate(Some(h.as_bytes()));
        assert_eq!(
            check("Bearer builder"),
            Authentication::Principal("bob".into())
        );
        assert_eq!(
            check("bearer  wonder "),
            Authentication::Principal("alice".into())
        );
        assert_eq!(check("Bearer alice"), Authentication::Invalid);
        assert_eq!(check("Bearer"), Authentication::Invalid);
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let err = |t: &str| Credentials::from_json(t).unwrap_err().to_string();
        assert!(err("{}").contains("credentials"));
        assert!(err(r#"{"credentials":[]}"#).contains("at least one"));
        assert!(err(r#"{"credentials":[{"principal":"a","secret":""}]}"#).contains("empty"));
        assert!(err(r#"{"credentials":[{"principal":"a:b","secret":"x"}]}"#).contains("':'"));
        assert!(err(
            r#"{"credentials":[{"principal":"a","secret":"x"},{"principal":"a","secret":"y"}]}"#
        )
        .contains("twice"));
        assert!(err(
            r#"{"credentials":[{"principal":"a","secret":"x"},{"principal":"b","secret":"x"}]}"#
        )
        .contains("shares"));
        assert!(
            err(r#"{"credentials":[{"principal":"a","secret":"x","extra":1}]}"#).contains("extra")
        );
        assert!(
            !format!("{:?}", creds()).contains("wonder"),
            "Debug hides secrets"
        );
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abc\0"));
        assert!(!constant_time_eq(b"", b"\0"));
    }
}
