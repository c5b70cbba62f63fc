//! The cluster's certificates: a cluster CA, node certificates signed by it, and the rustls
//! configurations for mutual TLS between nodes (ring provider only).
//!
//! Two ways to give a node its identity through `--tls-dir DIR`:
//! - DIR holds the CA certificate **and key** (`ca.pem`, `ca.key`, as `plateau certs init`
//!   leaves them): the node issues its own certificate at start. Handy for dev and tests.
//! - DIR holds the CA certificate, a node certificate and its key (`ca.pem`, `node.pem`,
//!   `node.key`, as `plateau certs issue` leaves them): the production way, where the CA key
//!   never sits on the nodes.
//!
//! Either way a peer is accepted only if its certificate chains to the cluster CA, in both
//! directions. Every node certificate carries the name [`CLUSTER_SERVER_NAME`], which is what
//! a dialling node checks (nodes are dialled by address, so host names in certificates would
//! add nothing to membership in the cluster).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The DNS name every node certificate carries and every dialler verifies.
pub const CLUSTER_SERVER_NAME: &str = "plateau-node";

/// ALPN protocol of node-to-node connections.
pub const ALPN: &[u8] = b"plateau/1";

/// File names in a TLS directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// CA private key.
pub const CA_KEY_FILE: &str = "ca.key";
/// Node certificate.
pub const NODE_CERT_FILE: &str = "node.pem";
/// Node private key.
pub const NODE_KEY_FILE: &str = "node.key";

/// What went wrong with certificates.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A directory lacks what is needed.
    #[error("{0}")]
    Missing(String),
    /// A certificate or key does not parse or cannot be generated.
    #[error("certificate error: {0}")]
    Certificate(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn cert_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Certificate(e.to_string())
}

fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(contents.as_bytes()).map_err(io_err(path))
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names, no error");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "Plateau cluster CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// A cluster CA in memory.
pub struct ClusterCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl ClusterCa {
    /// A new CA with a fresh key.
    pub fn generate() -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(cert_err)?;
        let params = ca_params();
        let cert = params.self_signed(&key).map_err(cert_err)?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Load the CA from `dir/ca.pem` and `dir/ca.key`.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
        let key_pem = fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(cert_err)?;
        // The CA certificate was made from `ca_params()` and this key: an issuer built from the
        // same parameters signs certificates that chain to it.
        let issuer = Issuer::new(ca_params(), key);
        Ok(ClusterCa { cert_pem, issuer })
    }

    /// Write `ca.pem` and `ca.key` (mode 0600) into `dir`, creating it. Refuses to overwrite
    /// an existing CA.
    pub fn save(&self, dir: &Path) -> Result<(), TlsError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let cert_path = dir.join(CA_CERT_FILE);
        if cert_path.exists() {
            return Err(TlsError::Missing(format!(
                "{} already exists: refusing to replace a cluster CA",
                cert_path.display()
            )));
        }
        fs::write(&cert_path, &self.cert_pem).map_err(io_err(&cert_path))?;
        write_private(&dir.join(CA_KEY_FILE), &self.issuer.key().serialize_pem())
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issue a node certificate for `name`: (certificate PEM, key PEM).
    pub fn issue(&self, name: &str) -> Result<(String, String), TlsError> {
        let mut names = vec![CLUSTER_SERVER_NAME.to_string()];
        let dns_like = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if dns_like && name != CLUSTER_SERVER_NAME {
            names.push(name.to_string());
        }
        let mut params = CertificateParams::new(names).map_err(cert_err)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().map_err(cert_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Issue a node certificate and write `ca.pem`, `node.pem`, `node.key` into `out`.
    pub fn issue_to_dir(&self, name: &str, out: &Path) -> Result<(), TlsError> {
        let (cert, key) = self.issue(name)?;
        fs::create_dir_all(out).map_err(io_err(out))?;
        let ca_path = out.join(CA_CERT_FILE);
        fs::write(&ca_path, &self.cert_pem).map_err(io_err(&ca_path))?;
        let cert_path = out.join(NODE_CERT_FILE);
        fs::write(&cert_path, cert).map_err(io_err(&cert_path))?;
        write_private(&out.join(NODE_KEY_FILE), &key)
    }
}

/// A node's identity: the cluster CA certificate to trust, its own certificate and key.
#[derive(Debug)]
pub struct NodeIdentity {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for NodeIdentity {
    fn clone(&self) -> Self {
        NodeIdentity {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl NodeIdentity {
    /// From PEM texts.
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(cert_err)?;
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(cert_err)?;
        if chain.is_empty() {
            return Err(TlsError::Certificate("no certificate in node.pem".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(cert_err)?;
        Ok(NodeIdentity { ca, chain, key })
    }

    /// A node identity issued now by `ca`.
    pub fn issue(ca: &ClusterCa, name: &str) -> Result<Self, TlsError> {
        let (cert, key) = ca.issue(name)?;
        Self::from_pem(ca.cert_pem(), &cert, &key)
    }

    /// From a `--tls-dir`: with `ca.key` present, issue a certificate for `name` now;
    /// otherwise load `node.pem` and `node.key`.
    pub fn from_dir(dir: &Path, name: &str) -> Result<Self, TlsError> {
        if !dir.is_dir() {
            return Err(TlsError::Missing(format!(
                "TLS directory {} does not exist (create one with `plateau certs init --dir {}`)",
                dir.display(),
                dir.display()
            )));
        }
        if dir.join(CA_KEY_FILE).exists() {
            let ca = ClusterCa::load(dir)?;
            return Self::issue(&ca, name);
        }
        let read = |f: &str| -> Result<String, TlsError> {
            let p = dir.join(f);
            if !p.exists() {
                return Err(TlsError::Missing(format!(
                    "{} has neither {CA_KEY_FILE} nor {f}: give a directory made by `plateau certs init` or `plateau certs issue`",
                    dir.display()
                )));
            }
            fs::read_to_string(&p).map_err(io_err(&p))
        };
        let ca = read(CA_CERT_FILE)?;
        let cert = read(NODE_CERT_FILE)?;
        let key = read(NODE_KEY_FILE)?;
        Self::from_pem(&ca, &cert, &key)
    }

    fn roots(&self) -> Result<Arc<rustls::RootCertStore>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca.clone())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Arc::new(roots))
    }

    /// The rustls server configuration: requires a client certificate from the cluster CA.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            self.roots()?,
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// The rustls client configuration: presents this node's certificate, trusts only the
    /// cluster CA.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// A client configuration that presents no certificate (only for tests of refusal).
    pub fn client_config_without_cert(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(self.roots()?)
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }
}

/// Certificates for HTTPS listeners (the REST APIs), as opposed to the actor transport's node
/// certificates.
impl ClusterCa {
    /// Issue a server certificate for an HTTPS listener reached as any of `hosts` (DNS names
    /// or IP addresses, which become IP subject alternative names): (certificate PEM, key PEM).
    pub fn issue_https(
        &self,
        common_name: &str,
        hosts: &[String],
    ) -> Result<(String, String), TlsError> {
        let mut params = CertificateParams::new(hosts.to_vec()).map_err(cert_err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(cert_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_issue_and_load_round_trip() {
        let dir = std::env::temp_dir().join(format!("plateau-tls-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let ca = ClusterCa::generate().unwrap();
        ca.save(&dir.join("ca")).unwrap();
        assert!(
            ca.save(&dir.join("ca")).is_err(),
            "a CA is never overwritten"
        );
        let loaded = ClusterCa::load(&dir.join("ca")).unwrap();
        loaded.issue_to_dir("node-1", &dir.join("node-1")).unwrap();
        let id = NodeIdentity::from_dir(&dir.join("node-1"), "ignored").unwrap();
        id.server_config().unwrap();
        id.client_config().unwrap();
        // With the CA key present, a node issues its own certificate.
        NodeIdentity::from_dir(&dir.join("ca"), "node-2").unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(dir.join("node-1").join(NODE_KEY_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let err = NodeIdentity::from_dir(&dir.join("nope"), "x").unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        fs::create_dir_all(dir.join("empty")).unwrap();
        let err = NodeIdentity::from_dir(&dir.join("empty"), "x").unwrap_err();
        assert!(err.to_string().contains("certs init"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
