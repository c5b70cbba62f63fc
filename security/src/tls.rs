//! HTTPS for the REST APIs: a rustls server configuration from a node's `--tls-dir`.
//!
//! - A directory made by `plateau certs issue` (`ca.pem`, `node.pem`, `node.key`): the node
//!   certificate serves HTTPS; clients trust `ca.pem` and reach the node by a name the
//!   certificate carries.
//! - A self-issuing directory (`ca.pem` and `ca.key`, for `plateau dev` and tests): a
//!   certificate for the HTTP listener is issued in memory, naming the given hosts plus
//!   `127.0.0.1` and `localhost`.
//!
//! Clients need no certificate of their own (they authenticate with credentials); TLS 1.2 and
//! 1.3, ring as the only crypto provider.

use std::path::Path;
use std::sync::Arc;

use plateau_runtime::tls::{ClusterCa, CA_KEY_FILE, NODE_CERT_FILE, NODE_KEY_FILE};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

/// The server configuration for an HTTPS listener of the node whose TLS directory is
/// `tls_dir`, reached as `hosts`.
pub fn https_server_config(
    tls_dir: &Path,
    hosts: &[String],
) -> Result<rustls::ServerConfig, Error> {
    let tls = |m: String| Error::Tls(format!("{}: {m}", tls_dir.display()));
    let (cert_pem, key_pem) = if tls_dir.join(NODE_CERT_FILE).exists() {
        let read = |f: &str| {
            std::fs::read_to_string(tls_dir.join(f)).map_err(|e| tls(format!("reading {f}: {e}")))
        };
        (read(NODE_CERT_FILE)?, read(NODE_KEY_FILE)?)
    } else if tls_dir.join(CA_KEY_FILE).exists() {
        let ca = ClusterCa::load(tls_dir).map_err(|e| tls(e.to_string()))?;
        let mut names: Vec<String> = vec!["127.0.0.1".into(), "localhost".into()];
        for h in hosts {
            if !names.contains(h) {
                names.push(h.clone());
            }
        }
        ca.issue_https("plateau-https", &names)
            .map_err(|e| tls(e.to_string()))?
    } else {
        return Err(tls(format!(
            "neither {NODE_CERT_FILE} nor {CA_KEY_FILE}: give a directory made by `plateau certs issue` (or `certs init` for development)"
        )));
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(format!("certificate: {e}")))?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| tls(format!("key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client configuration for HTTPS to another node's API: trusts only the cluster CA of
/// `tls_dir` (`ca.pem`), presents no certificate.
pub fn https_client_config(tls_dir: &Path) -> Result<rustls::ClientConfig, Error> {
    let tls = |m: String| Error::Tls(format!("{}: {m}", tls_dir.display()));
    let path = tls_dir.join(plateau_runtime::tls::CA_CERT_FILE);
    let pem = std::fs::read(&path).map_err(|e| tls(format!("reading {}: {e}", path.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|e| tls(format!("ca.pem: {e}")))?)
            .map_err(|e| tls(format!("ca.pem: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_issuing_directory_gives_a_listener_certificate_and_an_empty_one_an_error() {
        let dir = std::env::temp_dir().join(format!("plateau-security-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        ClusterCa::generate().unwrap().save(&dir).unwrap();
        https_server_config(&dir, &["node-1.example".into()]).unwrap();
        https_client_config(&dir).unwrap();
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let err = https_server_config(&empty, &[]).unwrap_err().to_string();
        assert!(err.contains("certs issue"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
