//! The cluster's certificates: a cluster CA, node certificates signed by it that name their
//! holder, a revocation list, and the rustls configurations for mutual TLS between nodes
//! (ring provider only).
//!
//! A node certificate names its holder's role, node address and principal in URI subject
//! alternative names (see [`crate::identity`]), plus [`CLUSTER_SERVER_NAME`] (what a dialling
//! node checks) and the host of its address as a DNS or IP name (so the same certificate can
//! serve HTTPS to clients that check host names). Node certificates live a bounded time
//! ([`NODE_CERT_DAYS_DEFAULT`] unless issued otherwise); the CA longer ([`CA_CERT_DAYS`]).
//!
//! Two ways to give a node its identity through `--tls-dir DIR`:
//! - DIR holds the CA certificate, a node certificate and its key (`ca.pem`, `node.pem`,
//!   `node.key`, as `plateau certs issue` leaves them): the production way, where the CA key
//!   never sits on the nodes.
//! - DIR holds the CA certificate **and key** (`ca.pem`, `ca.key`, as `plateau certs init`
//!   leaves them): the node issues itself a certificate naming its role and address once its
//!   port is known ([`NodeIdentity::resolve`]). For `plateau dev` and tests only; it says so
//!   once in the log.
//!
//! Either way a peer is accepted only if its certificate chains to the cluster CA, in both
//! directions, and is not on the revocation list: `crl.pem` in the TLS directory, written by
//! `plateau certs revoke` ([`ClusterCa::revoke`]) and reloaded by running nodes when it
//! changes.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::identity::{check_principal, der, PeerIdentity, Role};
use crate::limits::{CA_CERT_DAYS, CRL_BYTES_MAX, NODE_CERT_DAYS_DEFAULT, NODE_CERT_DAYS_MAX};
use crate::upid::NodeAddr;

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
/// The revocation list (in a CA directory, and copied to nodes' TLS directories).
pub const CRL_FILE: &str = "crl.pem";
/// The serial numbers revoked so far (in a CA directory; one hex serial a line).
pub const REVOKED_FILE: &str = "revoked.txt";

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

fn config_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
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

/// Write `contents` to `path` through a temporary file and a rename, so that a node polling
/// the file never reads half of it.
fn write_atomic(path: &Path, contents: &str) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, contents).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn now_utc() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() // determinism-ok: certificates are issued on real hosts only
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

/// What a node certificate names: see [`crate::identity`].
#[derive(Clone, Debug)]
pub struct CertSpec {
    /// The holder's name (the certificate's common name).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The node address it speaks as (required for every role but operator).
    pub addr: Option<NodeAddr>,
    /// Its principal (frameworks, operators).
    pub principal: Option<String>,
    /// Lifetime in days, from now.
    pub days: u32,
}

impl CertSpec {
    /// A certificate for `name` in `role`, valid [`NODE_CERT_DAYS_DEFAULT`] days.
    pub fn new(name: &str, role: Role) -> Self {
        CertSpec {
            name: name.to_string(),
            role,
            addr: None,
            principal: None,
            days: NODE_CERT_DAYS_DEFAULT,
        }
    }

    /// Naming the node address `addr`.
    pub fn addr(mut self, addr: NodeAddr) -> Self {
        self.addr = Some(addr);
        self
    }

    /// Naming the principal `principal`.
    pub fn principal(mut self, principal: &str) -> Self {
        self.principal = Some(principal.to_string());
        self
    }

    fn check(&self) -> Result<(), TlsError> {
        if self.role.needs_addr() && self.addr.is_none() {
            return Err(TlsError::Certificate(format!(
                "a {} certificate must name the node's address (--addr HOST:PORT)",
                self.role
            )));
        }
        if let Some(p) = &self.principal {
            check_principal(p).map_err(cert_err)?;
        }
        if self.days == 0 || self.days > NODE_CERT_DAYS_MAX {
            return Err(TlsError::Certificate(format!(
                "--days must be 1 to {NODE_CERT_DAYS_MAX}, got {}",
                self.days
            )));
        }
        Ok(())
    }
}

/// A cluster CA in memory.
pub struct ClusterCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Clone for ClusterCa {
    fn clone(&self) -> Self {
        let key = KeyPair::from_pem(&self.issuer.key().serialize_pem())
            .expect("a key serialized by rcgen parses back");
        ClusterCa {
            cert_pem: self.cert_pem.clone(),
            issuer: Issuer::new(ca_params(), key),
        }
    }
}

impl ClusterCa {
    /// A new CA with a fresh key, valid [`CA_CERT_DAYS`] days.
    pub fn generate() -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(cert_err)?;
        let mut params = ca_params();
        let now = now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(i64::from(CA_CERT_DAYS));
        let cert = params.self_signed(&key).map_err(cert_err)?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(ca_params(), key),
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

    /// Issue a node certificate: (certificate PEM, key PEM).
    pub fn issue(&self, spec: &CertSpec) -> Result<(String, String), TlsError> {
        spec.check()?;
        let mut names = vec![CLUSTER_SERVER_NAME.to_string()];
        if let Some(addr) = &spec.addr {
            // The host as a DNS or IP name (rcgen makes an IP SAN of what parses as one), for
            // HTTPS clients that check host names.
            if &*addr.host != CLUSTER_SERVER_NAME {
                names.push(addr.host.to_string());
            }
        }
        let mut params = CertificateParams::new(names).map_err(cert_err)?;
        for uri in PeerIdentity::san_uris(spec.role, spec.addr.as_ref(), spec.principal.as_deref())
        {
            params
                .subject_alt_names
                .push(SanType::URI(uri.as_str().try_into().map_err(cert_err)?));
        }
        params
            .distinguished_name
            .push(DnType::CommonName, spec.name.as_str());
        let now = now_utc();
        // A little slack for clocks that lag behind the CA's.
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(i64::from(spec.days));
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
    pub fn issue_to_dir(&self, spec: &CertSpec, out: &Path) -> Result<(), TlsError> {
        let (cert, key) = self.issue(spec)?;
        fs::create_dir_all(out).map_err(io_err(out))?;
        let ca_path = out.join(CA_CERT_FILE);
        fs::write(&ca_path, &self.cert_pem).map_err(io_err(&ca_path))?;
        let cert_path = out.join(NODE_CERT_FILE);
        fs::write(&cert_path, cert).map_err(io_err(&cert_path))?;
        write_private(&out.join(NODE_KEY_FILE), &key)
    }

    /// Revoke the certificate with serial number `serial` (DER integer content, as
    /// [`serial_of_pem`] gives): add it to `dir/revoked.txt` and write a new `dir/crl.pem`
    /// signed by this CA, listing every serial revoked so far. Returns how many are listed.
    /// Copy `crl.pem` into each node's TLS directory: nodes reload it when it changes.
    pub fn revoke(&self, dir: &Path, serial: &[u8]) -> Result<usize, TlsError> {
        let serial = strip_sign_byte(serial);
        if serial.is_empty() || serial.len() > 20 {
            return Err(TlsError::Certificate(
                "a serial number has 1 to 20 bytes".into(),
            ));
        }
        let revoked_path = dir.join(REVOKED_FILE);
        let mut serials: Vec<Vec<u8>> = match fs::read_to_string(&revoked_path) {
            Ok(text) => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| parse_serial_hex(l.trim()))
                .collect::<Result<_, _>>()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(TlsError::Io {
                    path: revoked_path,
                    source,
                })
            }
        };
        if !serials.iter().any(|s| s.as_slice() == serial) {
            serials.push(serial.to_vec());
        }
        let text: String = serials.iter().map(|s| format!("{}\n", hex(s))).collect();
        write_atomic(&revoked_path, &text)?;
        let now = now_utc();
        let params = CertificateRevocationListParams {
            this_update: now,
            // Nodes do not enforce it (a CRL does not go stale by itself here); a year keeps
            // other readers content.
            next_update: now + time::Duration::days(365),
            // Grows with every revocation (the list only grows).
            crl_number: SerialNumber::from(serials.len() as u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: now,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).map_err(cert_err)?;
        write_atomic(&dir.join(CRL_FILE), &crl.pem().map_err(cert_err)?)?;
        Ok(serials.len())
    }
}

/// A DER integer's content without the leading zero that keeps it positive.
fn strip_sign_byte(serial: &[u8]) -> &[u8] {
    match serial {
        [0, rest @ ..] if rest.first().is_some_and(|b| b & 0x80 != 0) => rest,
        s => s,
    }
}

/// A serial number in hex (lower case, no separators).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A serial number from hex (`:` separators allowed, as other tools print them).
pub fn parse_serial_hex(s: &str) -> Result<Vec<u8>, TlsError> {
    let digits: String = s.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) || digits.len() > 42 {
        return Err(TlsError::Certificate(format!(
            "serial '{s}' is not an even number of hex digits (at most 20 bytes)"
        )));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16)
                .map_err(|_| TlsError::Certificate(format!("serial '{s}' is not hex")))
        })
        .collect()
}

/// The serial number of the (first) certificate in a PEM text.
pub fn serial_of_pem(cert_pem: &str) -> Result<Vec<u8>, TlsError> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(cert_err)?;
    let (serial, _) = der::serial_and_uri_sans(&der).map_err(cert_err)?;
    Ok(strip_sign_byte(&serial).to_vec())
}

/// The serial numbers a revocation list (DER) names.
pub fn crl_serials(crl: &CertificateRevocationListDer<'_>) -> Result<Vec<Vec<u8>>, TlsError> {
    let serials = der::crl_serials(crl).map_err(cert_err)?;
    Ok(serials
        .iter()
        .map(|s| strip_sign_byte(s).to_vec())
        .collect())
}

/// Whether a certificate serial (as [`PeerIdentity::serial`] holds it) is among `revoked`.
pub fn is_revoked(serial: &[u8], revoked: &[Vec<u8>]) -> bool {
    let serial = strip_sign_byte(serial);
    revoked.iter().any(|r| r.as_slice() == serial)
}

/// Read a revocation list file; `None` when there is none.
pub fn load_crl(path: &Path) -> Result<Option<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(TlsError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if bytes.len() > CRL_BYTES_MAX {
        return Err(TlsError::Certificate(format!(
            "{} is larger than {CRL_BYTES_MAX} bytes",
            path.display()
        )));
    }
    let crl = CertificateRevocationListDer::from_pem_slice(&bytes)
        .map_err(|e| TlsError::Certificate(format!("{}: {e}", path.display())))?;
    Ok(Some(crl))
}

#[derive(Debug)]
enum Source {
    /// A certificate and key, issued beforehand.
    Fixed {
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    },
    /// Issue one from the CA once the node's address is known (dev and tests only).
    SelfIssue {
        ca: Box<ClusterCa>,
        name: String,
        role: Role,
        principal: Option<String>,
    },
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterCa")
    }
}

impl Clone for Source {
    fn clone(&self) -> Self {
        match self {
            Source::Fixed { chain, key } => Source::Fixed {
                chain: chain.clone(),
                key: key.clone_key(),
            },
            Source::SelfIssue {
                ca,
                name,
                role,
                principal,
            } => Source::SelfIssue {
                ca: ca.clone(),
                name: name.clone(),
                role: *role,
                principal: principal.clone(),
            },
        }
    }
}

/// A node's identity: the cluster CA certificate to trust, its own certificate and key (or
/// the CA to issue them from), and where its revocation list is.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    ca: CertificateDer<'static>,
    source: Source,
    crl_path: Option<PathBuf>,
}

static SELF_ISSUE_LOGGED: AtomicBool = AtomicBool::new(false);

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
        Ok(NodeIdentity {
            ca,
            source: Source::Fixed { chain, key },
            crl_path: None,
        })
    }

    /// A node identity issued now by `ca`.
    pub fn issue(ca: &ClusterCa, spec: &CertSpec) -> Result<Self, TlsError> {
        let (cert, key) = ca.issue(spec)?;
        Self::from_pem(ca.cert_pem(), &cert, &key)
    }

    /// An identity that issues itself a certificate from `ca` naming `role` (and `principal`)
    /// and the node's address once it is known ([`NodeIdentity::resolve`], done by the
    /// transport after binding). For dev and tests: the CA key sits on the node.
    pub fn self_issuing(
        ca: &ClusterCa,
        name: &str,
        role: Role,
        principal: Option<&str>,
    ) -> Result<Self, TlsError> {
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).map_err(cert_err)?;
        if let Some(p) = principal {
            check_principal(p).map_err(cert_err)?;
        }
        Ok(NodeIdentity {
            ca: ca_der,
            source: Source::SelfIssue {
                ca: Box::new(ca.clone()),
                name: name.to_string(),
                role,
                principal: principal.map(str::to_string),
            },
            crl_path: None,
        })
    }

    /// From a `--tls-dir`: with `node.pem` and `node.key`, load them; otherwise, with
    /// `ca.key` present, issue a certificate for `name` in `role` when the node's address is
    /// known (dev and tests only: logged once). The revocation list is `DIR/crl.pem`.
    pub fn from_dir(
        dir: &Path,
        name: &str,
        role: Role,
        principal: Option<&str>,
    ) -> Result<Self, TlsError> {
        if !dir.is_dir() {
            return Err(TlsError::Missing(format!(
                "TLS directory {} does not exist (create one with `plateau certs init --dir {}`)",
                dir.display(),
                dir.display()
            )));
        }
        let read = |f: &str| -> Result<String, TlsError> {
            let p = dir.join(f);
            fs::read_to_string(&p).map_err(io_err(&p))
        };
        let mut identity = if dir.join(NODE_CERT_FILE).exists() {
            Self::from_pem(
                &read(CA_CERT_FILE)?,
                &read(NODE_CERT_FILE)?,
                &read(NODE_KEY_FILE)?,
            )?
        } else if dir.join(CA_KEY_FILE).exists() {
            if !SELF_ISSUE_LOGGED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    dir = %dir.display(),
                    "self-issuing node certificates from the CA key in the TLS directory: for `plateau dev` and tests only; give production nodes a directory made by `plateau certs issue`"
                );
            }
            Self::self_issuing(&ClusterCa::load(dir)?, name, role, principal)?
        } else {
            return Err(TlsError::Missing(format!(
                "{} has neither {NODE_CERT_FILE} nor {CA_KEY_FILE}: give a directory made by `plateau certs issue` (or, for dev, `plateau certs init`)",
                dir.display()
            )));
        };
        identity.crl_path = Some(dir.join(CRL_FILE));
        Ok(identity)
    }

    /// Use the revocation list at `path` (reloaded by the transport when it changes).
    pub fn with_crl_path(mut self, path: PathBuf) -> Self {
        self.crl_path = Some(path);
        self
    }

    /// Where the revocation list is read from, if anywhere.
    pub fn crl_path(&self) -> Option<&Path> {
        self.crl_path.as_deref()
    }

    /// True when the certificate is issued at start from the CA key.
    pub fn is_self_issuing(&self) -> bool {
        matches!(self.source, Source::SelfIssue { .. })
    }

    /// The identity with a certificate: a self-issuing one issues it now for `addr`; a fixed
    /// one is returned as it is, after checking that its certificate names `addr` (a node
    /// whose certificate names another address would be refused by every peer).
    pub fn resolve(&self, addr: &NodeAddr) -> Result<NodeIdentity, TlsError> {
        match &self.source {
            Source::Fixed { .. } => {
                let own = self.own_identity()?;
                own.may_claim(addr).map_err(|e| {
                    TlsError::Certificate(format!(
                        "this node's certificate does not fit its address: {e}"
                    ))
                })?;
                Ok(self.clone())
            }
            Source::SelfIssue {
                ca,
                name,
                role,
                principal,
            } => {
                let mut spec = CertSpec::new(name, *role);
                if role.needs_addr() {
                    spec.addr = Some(addr.clone());
                }
                spec.principal = principal.clone();
                let mut id = Self::issue(ca, &spec)?;
                id.crl_path = self.crl_path.clone();
                Ok(id)
            }
        }
    }

    /// What this node's own certificate names.
    pub fn own_identity(&self) -> Result<PeerIdentity, TlsError> {
        let (chain, _) = self.fixed()?;
        PeerIdentity::from_der(&chain[0]).map_err(cert_err)
    }

    fn fixed(&self) -> Result<(&[CertificateDer<'static>], &PrivateKeyDer<'static>), TlsError> {
        match &self.source {
            Source::Fixed { chain, key } => Ok((chain, key)),
            Source::SelfIssue { .. } => Err(TlsError::Config(
                "a self-issuing identity has no certificate before the node's address is known (resolve it)".into(),
            )),
        }
    }

    /// The certificate chain, PEM (for serving HTTPS with the node certificate).
    pub fn chain_pem(&self) -> Result<String, TlsError> {
        let (chain, _) = self.fixed()?;
        Ok(chain.iter().map(|c| pem_block("CERTIFICATE", c)).collect())
    }

    /// The certificate chain and private key (for serving HTTPS with the node certificate;
    /// a self-issuing identity has them once resolved, see [`crate::transport::QuicTransport::identity`]).
    pub fn chain_and_key(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let (chain, key) = self.fixed()?;
        Ok((chain.to_vec(), key.clone_key()))
    }

    /// The cluster CA certificate (DER), the one trust root.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca
    }

    /// The revocation lists in force now (the file at the CRL path, if any).
    pub fn crls(&self) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
        match &self.crl_path {
            Some(p) => Ok(load_crl(p)?.into_iter().collect()),
            None => Ok(Vec::new()),
        }
    }

    fn roots(&self) -> Result<Arc<rustls::RootCertStore>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).map_err(config_err)?;
        Ok(Arc::new(roots))
    }

    /// The rustls server configuration: requires a client certificate from the cluster CA,
    /// not revoked by `crls`.
    pub fn server_config_with(
        &self,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<rustls::ServerConfig, TlsError> {
        let (chain, key) = self.fixed()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            self.roots()?,
            provider.clone(),
        )
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status()
        .build()
        .map_err(config_err)?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.to_vec(), key.clone_key())
            .map_err(config_err)?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// [`NodeIdentity::server_config_with`] the revocation list on disk.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        self.server_config_with(self.crls()?)
    }

    fn server_verifier(
        &self,
        crls: Vec<CertificateRevocationListDer<'static>>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Arc<rustls::client::WebPkiServerVerifier>, TlsError> {
        rustls::client::WebPkiServerVerifier::builder_with_provider(self.roots()?, provider)
            .with_crls(crls)
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status()
            .build()
            .map_err(config_err)
    }

    /// The rustls client configuration: presents this node's certificate, trusts only the
    /// cluster CA, refuses servers revoked by `crls`.
    pub fn client_config_with(
        &self,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<rustls::ClientConfig, TlsError> {
        let (chain, key) = self.fixed()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = self.server_verifier(crls, provider.clone())?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_err)?
            .with_webpki_verifier(verifier)
            .with_client_auth_cert(chain.to_vec(), key.clone_key())
            .map_err(config_err)?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// [`NodeIdentity::client_config_with`] the revocation list on disk.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        self.client_config_with(self.crls()?)
    }

    /// A client configuration that presents no certificate (only for tests of refusal).
    pub fn client_config_without_cert(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_err)?
            .with_root_certificates(self.roots()?)
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }
}

/// Standard base64 with padding (PEM bodies here; HTTP Basic headers in the security crate).
pub fn encode_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut b = [0u8; 3];
        b[..chunk.len()].copy_from_slice(chunk);
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = encode_base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
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

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("plateau-tls-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn init_issue_and_load_round_trip() {
        let dir = temp_dir("round-trip");
        let ca = ClusterCa::generate().unwrap();
        ca.save(&dir.join("ca")).unwrap();
        assert!(
            ca.save(&dir.join("ca")).is_err(),
            "a CA is never overwritten"
        );
        let loaded = ClusterCa::load(&dir.join("ca")).unwrap();
        let addr = NodeAddr::new("10.0.0.1", 5050);
        let spec = CertSpec::new("node-1", Role::Master).addr(addr.clone());
        loaded.issue_to_dir(&spec, &dir.join("node-1")).unwrap();
        let id = NodeIdentity::from_dir(&dir.join("node-1"), "ignored", Role::Slave, None).unwrap();
        assert!(!id.is_self_issuing());
        // The certificate names what was asked, not what the loader guessed.
        let own = id.own_identity().unwrap();
        assert_eq!(
            (own.role, own.addr.clone()),
            (Role::Master, Some(addr.clone()))
        );
        assert!(id.resolve(&addr).is_ok());
        let err = id.resolve(&NodeAddr::new("10.0.0.2", 5050)).unwrap_err();
        assert!(
            err.to_string().contains("does not fit its address"),
            "{err}"
        );
        id.server_config().unwrap();
        id.client_config().unwrap();
        assert!(id
            .chain_pem()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----\n"));
        // With only the CA key present, a node issues its own certificate once its address
        // is known.
        let dev = NodeIdentity::from_dir(&dir.join("ca"), "node-2", Role::Slave, None).unwrap();
        assert!(dev.is_self_issuing());
        assert!(dev.server_config().is_err(), "not resolved yet");
        let slave_addr = NodeAddr::new("127.0.0.1", 5051);
        let own = dev.resolve(&slave_addr).unwrap().own_identity().unwrap();
        assert_eq!((own.role, own.addr), (Role::Slave, Some(slave_addr)));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(dir.join("node-1").join(NODE_KEY_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let err = NodeIdentity::from_dir(&dir.join("nope"), "x", Role::Slave, None).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        fs::create_dir_all(dir.join("empty")).unwrap();
        let err = NodeIdentity::from_dir(&dir.join("empty"), "x", Role::Slave, None).unwrap_err();
        assert!(err.to_string().contains("certs issue"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn certificates_name_role_address_principal_and_host() {
        let ca = ClusterCa::generate().unwrap();
        let spec = CertSpec::new("marathon-1", Role::Framework)
            .addr(NodeAddr::new("10.1.2.3", 8080))
            .principal("marathon");
        let (cert, _) = ca.issue(&spec).unwrap();
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let id = PeerIdentity::from_der(&der).unwrap();
        assert_eq!(id.role, Role::Framework);
        assert_eq!(id.addr, Some(NodeAddr::new("10.1.2.3", 8080)));
        assert_eq!(id.principal.as_deref(), Some("marathon"));
        assert_eq!(strip_sign_byte(&id.serial), serial_of_pem(&cert).unwrap());
        // The host is an IP SAN and the cluster name a DNS SAN: webpki accepts both names.
        let end = webpki_names_ok(&der, &["plateau-node", "10.1.2.3"]);
        assert!(end, "names not accepted");
        // An operator needs no address; other roles do; lifetimes are bounded.
        assert!(ca
            .issue(&CertSpec::new("cli", Role::Operator).principal("alice"))
            .is_ok());
        let err = ca.issue(&CertSpec::new("s", Role::Slave)).unwrap_err();
        assert!(err.to_string().contains("--addr"), "{err}");
        let mut long = spec.clone();
        long.days = NODE_CERT_DAYS_MAX + 1;
        assert!(ca.issue(&long).is_err());
    }

    fn webpki_names_ok(der: &CertificateDer<'_>, names: &[&str]) -> bool {
        use rustls::pki_types::ServerName;
        let ee = rustls::server::ParsedCertificate::try_from(der).unwrap();
        names.iter().all(|n| {
            let name = ServerName::try_from(*n).unwrap();
            rustls::client::verify_server_name(&ee, &name).is_ok()
        })
    }

    #[test]
    fn revocation_lists_every_revoked_serial() {
        let dir = temp_dir("revoke");
        let ca = ClusterCa::generate().unwrap();
        ca.save(&dir).unwrap();
        let issue = |n: &str| {
            let spec = CertSpec::new(n, Role::Slave).addr(NodeAddr::new("127.0.0.1", 1));
            ca.issue(&spec).unwrap().0
        };
        let (a, b, c) = (issue("a"), issue("b"), issue("c"));
        let (sa, sb, sc) = (
            serial_of_pem(&a).unwrap(),
            serial_of_pem(&b).unwrap(),
            serial_of_pem(&c).unwrap(),
        );
        assert_eq!(ca.revoke(&dir, &sa).unwrap(), 1);
        assert_eq!(ca.revoke(&dir, &sb).unwrap(), 2);
        assert_eq!(
            ca.revoke(&dir, &sb).unwrap(),
            2,
            "revoking twice lists once"
        );
        let crl = load_crl(&dir.join(CRL_FILE)).unwrap().unwrap();
        let listed = crl_serials(&crl).unwrap();
        assert!(is_revoked(&sa, &listed) && is_revoked(&sb, &listed));
        assert!(!is_revoked(&sc, &listed));
        assert_eq!(parse_serial_hex(&hex(&sc)).unwrap(), sc);
        assert!(parse_serial_hex("zz").is_err());
        assert!(load_crl(&dir.join("none.pem")).unwrap().is_none());
        fs::remove_dir_all(&dir).unwrap();
    }
}
