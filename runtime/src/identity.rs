//! Who a peer is: the identity its node certificate names, and which roles may send a process
//! which messages.
//!
//! A node certificate (issued by the cluster CA, see [`crate::tls`]) names its holder in URI
//! subject alternative names:
//!
//! | SAN | meaning | required |
//! |---|---|---|
//! | `plateau:role:<role>` | `master`, `slave`, `framework` (Marathon, Chronos and any scheduler), `balancer`, `operator` | exactly one |
//! | `plateau:addr:<host>:<port>` | the node address (`name@host:port` of its processes) the holder may speak as | at most one; required for every role but `operator` |
//! | `plateau:principal:<p>` | the principal of a framework or an operator | at most one |
//!
//! The transport accepts a peer's Hello (the node address it claims) only if its certificate
//! names that very address ([`PeerIdentity::may_claim`]). A certificate without an address is
//! an operator's (a client such as a CLI, with no fixed address): it may claim only the address
//! its connection comes from (checked by the transport), and its role then limits what it may
//! send, since every process declares which roles may send it which messages
//! ([`crate::Handlers::allow_roles`]).
//!
//! The verified identity of the peer a message came from is what a handler sees in
//! [`crate::Context::peer`]; local and simulated deliveries have none (the simulator has no
//! certificates).
//!
//! ```
//! use plateau_runtime::identity::{PeerIdentity, Role};
//! use plateau_runtime::NodeAddr;
//! let sans = PeerIdentity::san_uris(Role::Master, Some(&NodeAddr::new("10.0.0.1", 5050)), None);
//! assert_eq!(sans, ["plateau:role:master", "plateau:addr:10.0.0.1:5050"]);
//! ```

use std::fmt;
use std::str::FromStr;

use crate::limits::{CERT_DER_BYTES_MAX, CERT_SAN_COUNT_MAX, PRINCIPAL_LEN_MAX};
use crate::upid::NodeAddr;

/// URI SAN prefix of a role.
pub const SAN_ROLE_PREFIX: &str = "plateau:role:";
/// URI SAN prefix of a node address.
pub const SAN_ADDR_PREFIX: &str = "plateau:addr:";
/// URI SAN prefix of a principal.
pub const SAN_PRINCIPAL_PREFIX: &str = "plateau:principal:";

/// What a certificate holder is in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A master (one member of a master group).
    Master,
    /// A slave (agent) running tasks.
    Slave,
    /// A framework's scheduler: Marathon, Chronos or any SDK scheduler.
    Framework,
    /// A balancer reading the routes.
    Balancer,
    /// An operator's client (CLI, scripts): no fixed address.
    Operator,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Master,
        Role::Slave,
        Role::Framework,
        Role::Balancer,
        Role::Operator,
    ];

    /// Its name in certificates and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Slave => "slave",
            Role::Framework => "framework",
            Role::Balancer => "balancer",
            Role::Operator => "operator",
        }
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// True for roles whose certificates must name an address.
    pub fn needs_addr(self) -> bool {
        self != Role::Operator
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;

    /// `marathon` and `chronos` are accepted as `framework`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "master" => Ok(Role::Master),
            "slave" | "agent" => Ok(Role::Slave),
            "framework" | "marathon" | "chronos" => Ok(Role::Framework),
            "balancer" => Ok(Role::Balancer),
            "operator" => Ok(Role::Operator),
            other => Err(IdentityError(format!(
                "unknown role '{other}' (master, slave, framework, balancer, operator)"
            ))),
        }
    }
}

/// A set of roles (which may send a message).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RoleSet(u8);

impl RoleSet {
    /// No role: only local senders.
    pub const NONE: RoleSet = RoleSet(0);
    /// Every role.
    pub const ANY: RoleSet = RoleSet(0x1f);

    /// The set of `roles`.
    pub const fn of(roles: &[Role]) -> RoleSet {
        let mut bits = 0;
        let mut i = 0;
        while i < roles.len() {
            bits |= roles[i].bit();
            i += 1;
        }
        RoleSet(bits)
    }

    /// True when `role` is in the set.
    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }
}

/// A certificate that does not name its holder well, or a claim it does not support.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdentityError(pub String);

fn id_err(s: impl Into<String>) -> IdentityError {
    IdentityError(s.into())
}

/// The identity a peer's certificate proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Its role.
    pub role: Role,
    /// The node address it may speak as (none: an operator's client).
    pub addr: Option<NodeAddr>,
    /// Its principal (frameworks, operators).
    pub principal: Option<String>,
    /// The certificate's serial number (DER integer content), for revocation.
    pub serial: Vec<u8>,
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.role)?;
        if let Some(a) = &self.addr {
            write!(f, " at {a}")?;
        }
        if let Some(p) = &self.principal {
            write!(f, " (principal {p})")?;
        }
        Ok(())
    }
}

/// Checks a principal: 1 to [`PRINCIPAL_LEN_MAX`] printable ASCII characters, no spaces.
pub fn check_principal(p: &str) -> Result<(), IdentityError> {
    if p.is_empty() || p.len() > PRINCIPAL_LEN_MAX || !p.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(id_err(format!(
            "principal '{p}' must be 1 to {PRINCIPAL_LEN_MAX} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

impl PeerIdentity {
    /// The URI SANs naming a holder (see the module docs).
    pub fn san_uris(role: Role, addr: Option<&NodeAddr>, principal: Option<&str>) -> Vec<String> {
        let mut out = vec![format!("{SAN_ROLE_PREFIX}{role}")];
        if let Some(a) = addr {
            out.push(format!("{SAN_ADDR_PREFIX}{a}"));
        }
        if let Some(p) = principal {
            out.push(format!("{SAN_PRINCIPAL_PREFIX}{p}"));
        }
        out
    }

    /// The identity named by a set of URI SANs (other URIs are ignored).
    pub fn from_san_uris<'a>(
        uris: impl IntoIterator<Item = &'a str>,
        serial: Vec<u8>,
    ) -> Result<PeerIdentity, IdentityError> {
        let (mut role, mut addr, mut principal) = (None, None, None);
        for uri in uris {
            if let Some(r) = uri.strip_prefix(SAN_ROLE_PREFIX) {
                let r: Role = r.parse()?;
                if role.replace(r).is_some() {
                    return Err(id_err("certificate names more than one role"));
                }
            } else if let Some(a) = uri.strip_prefix(SAN_ADDR_PREFIX) {
                let a: NodeAddr = a
                    .parse()
                    .map_err(|e| id_err(format!("certificate address '{a}': {e}")))?;
                if addr.replace(a).is_some() {
                    return Err(id_err("certificate names more than one address"));
                }
            } else if let Some(p) = uri.strip_prefix(SAN_PRINCIPAL_PREFIX) {
                check_principal(p)?;
                if principal.replace(p.to_string()).is_some() {
                    return Err(id_err("certificate names more than one principal"));
                }
            }
        }
        let role = role.ok_or_else(|| {
            id_err("certificate names no role (issue it with `plateau certs issue --role`)")
        })?;
        if role.needs_addr() && addr.is_none() {
            return Err(id_err(format!(
                "a {role} certificate must name its address (`plateau certs issue --addr HOST:PORT`)"
            )));
        }
        Ok(PeerIdentity {
            role,
            addr,
            principal,
            serial,
        })
    }

    /// The identity a DER certificate names.
    pub fn from_der(der: &[u8]) -> Result<PeerIdentity, IdentityError> {
        let (serial, uris) = der::serial_and_uri_sans(der)?;
        Self::from_san_uris(uris.iter().map(String::as_str), serial)
    }

    /// May this peer speak as `node` (the address in its Hello)? Only the address its
    /// certificate names; an address-less (operator) certificate passes here, and the
    /// transport then checks that `node` is the address its connection comes from.
    pub fn may_claim(&self, node: &NodeAddr) -> Result<(), IdentityError> {
        match &self.addr {
            Some(a) if a == node => Ok(()),
            Some(a) => Err(id_err(format!(
                "{} certificate for {a} claims to be {node}",
                self.role
            ))),
            None if self.role.needs_addr() => Err(id_err(format!(
                "{} certificate names no address",
                self.role
            ))),
            None => Ok(()),
        }
    }
}

/// A minimal, bounded DER reader: just enough of X.509 (RFC 5280) and CRLs to read serial
/// numbers and URI subject alternative names. Every read is bounded by its input slice.
pub(crate) mod der {
    use super::{id_err, IdentityError, CERT_DER_BYTES_MAX, CERT_SAN_COUNT_MAX};

    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const OID: u8 = 0x06;
    const BOOLEAN: u8 = 0x01;
    const OCTET_STRING: u8 = 0x04;
    const URI: u8 = 0x86; // [6] IMPLICIT IA5String
    const EXTENSIONS: u8 = 0xa3; // [3] EXPLICIT
    const VERSION: u8 = 0xa0; // [0] EXPLICIT
    /// 2.5.29.17, subjectAltName.
    const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];

    /// Reads one TLV: (tag, contents, rest).
    fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), IdentityError> {
        let bad = || id_err("certificate does not decode (bad DER)");
        let (&tag, rest) = input.split_first().ok_or_else(bad)?;
        if tag & 0x1f == 0x1f {
            return Err(bad()); // multi-byte tags: not in the structures read here
        }
        let (&first, mut rest) = rest.split_first().ok_or_else(bad)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err(bad());
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(bad());
        }
        Ok((tag, &rest[..len], &rest[len..]))
    }

    fn expect(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), IdentityError> {
        let (t, body, rest) = tlv(input)?;
        if t != tag {
            return Err(id_err(format!(
                "certificate does not decode (tag {t:#x}, expected {tag:#x})"
            )));
        }
        Ok((body, rest))
    }

    /// The serial number (INTEGER content) and the URI SANs of a certificate.
    pub(crate) fn serial_and_uri_sans(
        cert: &[u8],
    ) -> Result<(Vec<u8>, Vec<String>), IdentityError> {
        if cert.len() > CERT_DER_BYTES_MAX {
            return Err(id_err(format!(
                "certificate larger than {CERT_DER_BYTES_MAX} bytes"
            )));
        }
        let (certificate, _) = expect(cert, SEQUENCE)?;
        let (mut tbs, _) = expect(certificate, SEQUENCE)?;
        if tbs.first() == Some(&VERSION) {
            tbs = tlv(tbs)?.2;
        }
        let (serial, mut rest) = expect(tbs, INTEGER)?;
        let mut uris = Vec::new();
        // signature, issuer, validity, subject, subjectPublicKeyInfo, then optional fields.
        while !rest.is_empty() {
            let (tag, body, next) = tlv(rest)?;
            rest = next;
            if tag != EXTENSIONS {
                continue;
            }
            let (mut exts, _) = expect(body, SEQUENCE)?;
            while !exts.is_empty() {
                let (ext, next) = expect(exts, SEQUENCE)?;
                exts = next;
                let (oid, mut ext) = expect(ext, OID)?;
                if oid != SAN_OID {
                    continue;
                }
                if ext.first() == Some(&BOOLEAN) {
                    ext = tlv(ext)?.2;
                }
                let (value, _) = expect(ext, OCTET_STRING)?;
                let (mut names, _) = expect(value, SEQUENCE)?;
                let mut count = 0;
                while !names.is_empty() {
                    count += 1;
                    if count > CERT_SAN_COUNT_MAX {
                        return Err(id_err(format!(
                            "certificate has more than {CERT_SAN_COUNT_MAX} alternative names"
                        )));
                    }
                    let (tag, name, next) = tlv(names)?;
                    names = next;
                    if tag == URI {
                        let uri = std::str::from_utf8(name)
                            .map_err(|_| id_err("certificate URI is not text"))?;
                        uris.push(uri.to_string());
                    }
                }
            }
        }
        Ok((serial.to_vec(), uris))
    }

    /// The serial numbers a CRL (RFC 5280 §5.1) lists.
    pub(crate) fn crl_serials(crl: &[u8]) -> Result<Vec<Vec<u8>>, IdentityError> {
        let (list, _) = expect(crl, SEQUENCE)?;
        let (mut tbs, _) = expect(list, SEQUENCE)?;
        if tbs.first() == Some(&INTEGER) {
            tbs = tlv(tbs)?.2; // version
        }
        let (_signature, rest) = expect(tbs, SEQUENCE)?;
        let (_issuer, rest) = expect(rest, SEQUENCE)?;
        let (_, _this_update, mut rest) = tlv(rest)?;
        let mut serials = Vec::new();
        while !rest.is_empty() {
            let (tag, body, next) = tlv(rest)?;
            rest = next;
            if tag != SEQUENCE {
                continue; // nextUpdate (a time) or the [0] extensions
            }
            let mut entries = body;
            while !entries.is_empty() {
                let (entry, next) = expect(entries, SEQUENCE)?;
                entries = next;
                let (serial, _) = expect(entry, INTEGER)?;
                serials.push(serial.to_vec());
            }
        }
        Ok(serials)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn san_uris_round_trip() {
        let addr = NodeAddr::new("10.0.0.1", 5050);
        let uris = PeerIdentity::san_uris(Role::Framework, Some(&addr), Some("marathon"));
        let id = PeerIdentity::from_san_uris(uris.iter().map(String::as_str), vec![1]).unwrap();
        assert_eq!(id.role, Role::Framework);
        assert_eq!(id.addr, Some(addr.clone()));
        assert_eq!(id.principal.as_deref(), Some("marathon"));
        assert!(id.may_claim(&addr).is_ok());
        let err = id.may_claim(&NodeAddr::new("10.0.0.1", 5051)).unwrap_err();
        assert!(err.0.contains("claims to be 10.0.0.1:5051"), "{err}");
        // IPv6 addresses keep their brackets in the SAN and parse back.
        let v6 = NodeAddr::new("::1", 5050);
        let uris = PeerIdentity::san_uris(Role::Master, Some(&v6), None);
        assert_eq!(uris[1], "plateau:addr:[::1]:5050");
        let id = PeerIdentity::from_san_uris(uris.iter().map(String::as_str), vec![]).unwrap();
        assert_eq!(id.addr, Some(v6));
    }

    #[test]
    fn malformed_identities_are_refused() {
        let parse = |uris: &[&str]| PeerIdentity::from_san_uris(uris.iter().copied(), vec![]);
        assert!(parse(&[]).unwrap_err().0.contains("no role"));
        assert!(parse(&["plateau:role:king"])
            .unwrap_err()
            .0
            .contains("unknown role"));
        assert!(parse(&["plateau:role:slave"])
            .unwrap_err()
            .0
            .contains("must name its address"));
        assert!(parse(&[
            "plateau:role:slave",
            "plateau:role:master",
            "plateau:addr:a:1"
        ])
        .unwrap_err()
        .0
        .contains("more than one role"));
        assert!(parse(&["plateau:role:slave", "plateau:addr:nope"]).is_err());
        assert!(parse(&["plateau:role:operator", "plateau:principal:a b"]).is_err());
        // An operator needs no address and may claim any: it is a client.
        let op = parse(&["plateau:role:operator", "plateau:principal:alice"]).unwrap();
        assert!(op.may_claim(&NodeAddr::new("127.0.0.1", 1)).is_ok());
        // Unknown URIs are ignored.
        assert!(parse(&["https://x", "plateau:role:master", "plateau:addr:h:1"]).is_ok());
    }

    #[test]
    fn role_sets() {
        let s = RoleSet::of(&[Role::Master, Role::Slave]);
        assert!(s.contains(Role::Master) && s.contains(Role::Slave));
        assert!(!s.contains(Role::Framework));
        for r in Role::ALL {
            assert!(RoleSet::ANY.contains(r));
            assert!(!RoleSet::NONE.contains(r));
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert_eq!("marathon".parse::<Role>().unwrap(), Role::Framework);
    }

    #[test]
    fn der_reader_is_bounded_and_never_panics() {
        // Truncations and garbage give errors, never a panic.
        for input in [
            &[][..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x1f, 0, 0],
        ] {
            assert!(der::serial_and_uri_sans(input).is_err());
            assert!(der::crl_serials(input).is_err());
        }
        let big = vec![0u8; CERT_DER_BYTES_MAX + 1];
        assert!(der::serial_and_uri_sans(&big).is_err());
    }
}
