//! Security of Plateau's HTTP APIs: who may call (credentials), what they may do (ACLs), the
//! middleware that enforces both with an audit log, and HTTPS.
//!
//! Pure parts, with no I/O but reading the policy files: [`Credentials`] (Mesos' credentials
//! JSON, checked as HTTP Basic or bearer tokens in constant time), [`Acls`] (Mesos-style ACLs
//! plus Marathon's and Chronos' actions, first matching rule decides), [`Guard`] (the decision
//! on one request from its request line). The actix-web edge is [`RequireAuth`]; HTTPS server
//! configuration is [`tls::https_server_config`]; the refusal to serve an open API on a
//! network address is [`check_exposure`].
//!
//! ```
//! use plateau_security::{Acls, Action, Authentication, Credentials, basic_header};
//! let credentials = Credentials::from_json(
//!     r#"{"credentials": [{"principal": "ops", "secret": "s3cret"}]}"#).unwrap();
//! let header = basic_header("ops", "s3cret");
//! assert_eq!(credentials.authenticate(Some(header.as_bytes())),
//!            Authentication::Principal("ops".into()));
//! let acls = Acls::from_json(r#"{"permissive": false, "view_apps": [
//!     {"principals": {"values": ["ops"]}, "apps": {"type": "ANY"}}]}"#).unwrap();
//! assert!(acls.is_allowed(Some("ops"), Action::ViewApps, Some("/web")));
//! assert!(!acls.is_allowed(Some("ops"), Action::UpdateApps, Some("/web")));
//! ```
#![deny(missing_docs)]

pub mod acls;
pub mod client;
pub mod credentials;
pub mod guard;
pub mod limits;
pub mod middleware;
pub mod server;
pub mod tls;

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;

pub use acls::{Acls, Action, Entity, Rule};
pub use credentials::{basic_header, Authentication, Credential, Credentials};
pub use guard::{Access, Classifier, Decision, Guard, Outcome, Policy};
pub use middleware::{Principal, RequireAuth};
pub use server::ServeOptions;

/// What can go wrong loading a policy or a certificate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A credentials file that cannot be used.
    #[error("credentials: {0}")]
    Credentials(String),
    /// An ACL file that cannot be used.
    #[error("ACLs: {0}")]
    Acls(String),
    /// A file that cannot be read.
    #[error("reading {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// HTTPS cannot be set up.
    #[error("HTTPS: {0}")]
    Tls(String),
    /// An open API on a network address, refused.
    #[error("{0}")]
    Exposed(String),
}

fn read_policy_file(path: &Path) -> Result<String, Error> {
    let err = |m: String| Error::Read {
        path: path.display().to_string(),
        message: m,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut text = String::new();
    file.take(limits::POLICY_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| err(e.to_string()))?;
    if text.len() as u64 > limits::POLICY_FILE_BYTES_MAX {
        return Err(err(format!(
            "larger than {} bytes",
            limits::POLICY_FILE_BYTES_MAX
        )));
    }
    Ok(text)
}

/// Secure by default: an API that requires no credentials may listen on loopback only,
/// unless `insecure_open_api` (`--insecure-open-api`) says it is meant to be open.
/// `component` names it and `flag_listen` the flag that set `listen`, for the message.
pub fn check_exposure(
    component: &str,
    listen: SocketAddr,
    flag_listen: &str,
    policy: &Policy,
    insecure_open_api: bool,
) -> Result<(), Error> {
    if policy.requires_credentials() || insecure_open_api || listen.ip().is_loopback() {
        return Ok(());
    }
    Err(Error::Exposed(format!(
        "the {component} HTTP API would listen on {listen} ({flag_listen}), a non-loopback address, \
         with no authentication: give --credentials FILE (principals and secrets; --acls FILE \
         to restrict them), or --insecure-open-api to serve it open on purpose, or listen on 127.0.0.1"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_api_may_listen_on_loopback_only_unless_asked() {
        let open = Policy::open();
        let lo: SocketAddr = "127.0.0.1:5050".parse().unwrap();
        let lo6: SocketAddr = "[::1]:5050".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:5050".parse().unwrap();
        assert!(check_exposure("master", lo, "--listen", &open, false).is_ok());
        assert!(check_exposure("master", lo6, "--listen", &open, false).is_ok());
        let err = check_exposure("master", any, "--listen", &open, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--credentials") && err.contains("--insecure-open-api"),
            "{err}"
        );
        assert!(check_exposure("master", any, "--listen", &open, true).is_ok());
        let closed = Policy {
            credentials: Some(
                Credentials::from_json(r#"{"credentials":[{"principal":"a","secret":"b"}]}"#)
                    .unwrap(),
            ),
            acls: Acls::default(),
        };
        assert!(check_exposure("master", any, "--listen", &closed, false).is_ok());
    }
}
