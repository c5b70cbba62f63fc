//! Process identifiers: `name@host:port`, as libprocess' `UPID`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::limits::UPID_NAME_LEN_MAX;

/// The address of a node: the host (an IP address or a host name) and the port its transport
/// listens on. Every process of a node shares it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeAddr {
    /// IP address or host name, without brackets for IPv6 (shared with the ids of the node's
    /// processes).
    pub host: Arc<str>,
    /// UDP port of the node's transport (the same number as its HTTP TCP port by convention).
    pub port: u16,
}

impl NodeAddr {
    /// A node address from its parts.
    pub fn new(host: impl AsRef<str>, port: u16) -> Self {
        NodeAddr {
            host: host.as_ref().into(),
            port,
        }
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for NodeAddr {
    type Err = UpidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_host_port(s)
    }
}

/// The address of one process: `name@host:port`.
///
/// ```
/// use plateau_runtime::Upid;
/// let upid: Upid = "master@127.0.0.1:5050".parse().unwrap();
/// assert_eq!(&*upid.name, "master");
/// assert_eq!(upid.node().port, 5050);
/// assert_eq!(upid.to_string(), "master@127.0.0.1:5050");
/// assert!("master@127.0.0.1".parse::<Upid>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Upid {
    /// The process name, unique within its node. Shared: a message carries the ids of its
    /// sender and receiver, and copying them must not allocate.
    pub name: Arc<str>,
    /// The node's host (shared like the name).
    pub host: Arc<str>,
    /// The node's port.
    pub port: u16,
}

impl Upid {
    /// A process id from a name and the address of its node.
    pub fn new(name: impl AsRef<str>, node: &NodeAddr) -> Self {
        Upid {
            name: name.as_ref().into(),
            host: node.host.clone(),
            port: node.port,
        }
    }

    /// The address of the node this process lives on.
    pub fn node(&self) -> NodeAddr {
        NodeAddr {
            host: Arc::clone(&self.host),
            port: self.port,
        }
    }

    /// True when this process lives on `node`.
    pub fn is_on(&self, node: &NodeAddr) -> bool {
        self.port == node.port && self.host == node.host
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.name, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.name, self.host, self.port)
        }
    }
}

/// Why a text is not a valid `name@host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpidParseError {
    /// No `@` between name and address.
    #[error("'{0}' is not name@host:port: missing '@'")]
    MissingAt(String),
    /// The name is empty, too long, or has characters outside `[A-Za-z0-9_.()-]`.
    #[error("'{0}' is not a valid process name (1-{max} characters of A-Z a-z 0-9 _ . - ( ))", max = UPID_NAME_LEN_MAX)]
    BadName(String),
    /// No `:port` after the host.
    #[error("'{0}' is not host:port: missing ':port'")]
    MissingPort(String),
    /// The host is empty or malformed.
    #[error("'{0}' has an empty or malformed host")]
    BadHost(String),
    /// The port is not a number in 1..=65535.
    #[error("'{0}' is not a port number in 1-65535")]
    BadPort(String),
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '(' | ')')
}

fn parse_host_port(s: &str) -> Result<NodeAddr, UpidParseError> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| UpidParseError::BadHost(s.to_string()))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| UpidParseError::MissingPort(s.to_string()))?;
        (host, port)
    } else {
        s.rsplit_once(':')
            .ok_or_else(|| UpidParseError::MissingPort(s.to_string()))?
    };
    if host.is_empty()
        || host.contains(['@', '/', ' ', '[', ']'])
        || (host.contains(':') && !s.starts_with('['))
    {
        return Err(UpidParseError::BadHost(s.to_string()));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| UpidParseError::BadPort(port.to_string()))?;
    if port == 0 {
        return Err(UpidParseError::BadPort("0".to_string()));
    }
    Ok(NodeAddr::new(host, port))
}

impl FromStr for Upid {
    type Err = UpidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, address) = s
            .split_once('@')
            .ok_or_else(|| UpidParseError::MissingAt(s.to_string()))?;
        if name.is_empty() || name.len() > UPID_NAME_LEN_MAX || !name.chars().all(is_name_char) {
            return Err(UpidParseError::BadName(name.to_string()));
        }
        let node = parse_host_port(address)?;
        Ok(Upid::new(name, &node))
    }
}

/// True when `name` is acceptable as a process name.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= UPID_NAME_LEN_MAX && name.chars().all(is_name_char)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        let u: Upid = "slave(1)@10.0.0.2:5051".parse().unwrap();
        assert_eq!(&*u.name, "slave(1)");
        assert_eq!(&*u.host, "10.0.0.2");
        assert_eq!(u.port, 5051);
        assert_eq!(u.to_string(), "slave(1)@10.0.0.2:5051");
        let v6: Upid = "m@[::1]:5050".parse().unwrap();
        assert_eq!(&*v6.host, "::1");
        assert_eq!(v6.to_string(), "m@[::1]:5050");
        let h: Upid = "marathon@node-1.example:8080".parse().unwrap();
        assert_eq!(h.node(), NodeAddr::new("node-1.example", 8080));
    }

    #[test]
    fn rejects_bad_input_with_a_clear_error() {
        assert!(matches!(
            "master".parse::<Upid>(),
            Err(UpidParseError::MissingAt(_))
        ));
        assert!(matches!(
            "@h:1".parse::<Upid>(),
            Err(UpidParseError::BadName(_))
        ));
        assert!(matches!(
            "a b@h:1".parse::<Upid>(),
            Err(UpidParseError::BadName(_))
        ));
        assert!(matches!(
            "m@h".parse::<Upid>(),
            Err(UpidParseError::MissingPort(_))
        ));
        assert!(matches!(
            "m@:1".parse::<Upid>(),
            Err(UpidParseError::BadHost(_))
        ));
        assert!(matches!(
            "m@h:0".parse::<Upid>(),
            Err(UpidParseError::BadPort(_))
        ));
        assert!(matches!(
            "m@h:70000".parse::<Upid>(),
            Err(UpidParseError::BadPort(_))
        ));
        assert!(matches!(
            "m@::1:5".parse::<Upid>(),
            Err(UpidParseError::BadHost(_))
        ));
        let long = format!("{}@h:1", "x".repeat(UPID_NAME_LEN_MAX + 1));
        assert!(matches!(
            long.parse::<Upid>(),
            Err(UpidParseError::BadName(_))
        ));
        let msg = "m@h:abc".parse::<Upid>().unwrap_err().to_string();
        assert!(msg.contains("abc"), "{msg}");
    }

    proptest::proptest! {
        #[test]
        fn display_parse_round_trip(name in "[a-z_.()-]{1,20}", a in 0u8..=255, b in 0u8..=255, port in 1u16..) {
            let u = Upid::new(name, &NodeAddr::new(format!("10.{a}.{b}.1"), port));
            let back: Upid = u.to_string().parse().unwrap();
            proptest::prop_assert_eq!(back, u);
        }

        #[test]
        fn never_panics_on_garbage(s in ".{0,64}") {
            let _ = s.parse::<Upid>();
        }
    }
}
