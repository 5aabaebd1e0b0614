//! The fleet's PKI: a CA, the control plane's server certificate and agent
//! client certificates whose subject common name is the agent id.
//!
//! `up` generates a development PKI on first run; production fleets may use
//! their own CA and only point the config at its files.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid agent id {0:?}: use 1 to 64 of [A-Za-z0-9._-]")]
    AgentId(String),
    #[error("invalid certificate signing request: {0}")]
    Csr(String),
    #[error("{0}")]
    Key(String),
}

const CA_NAME: &str = "SmartCloudOps fleet CA";

/// File names inside a PKI directory.
pub struct PkiPaths {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl PkiPaths {
    pub fn new(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        }
    }
}

/// A loaded CA able to issue certificates.
pub struct Ca {
    /// The CA's subject and key, which issued certificates name.
    issuer: rcgen::Issuer<'static, KeyPair>,
    pub cert_pem: String,
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "SmartCloudOps");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(3650);
    Ok(p)
}

pub fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        f.write_all(contents.as_bytes()).map_err(io)
    }
    #[cfg(not(unix))]
    std::fs::write(path, contents).map_err(io)
}

fn write_public(path: &Path, contents: &str) -> Result<(), PkiError> {
    std::fs::write(path, contents).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl Ca {
    pub fn generate() -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: rcgen::Issuer::new(ca_params()?, key),
        })
    }

    /// Loads a CA written by [`Ca::save`]. Issued certificates name the CA by
    /// its subject and key, which the loaded key and the fixed subject
    /// reproduce.
    pub fn load(paths: &PkiPaths) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(&read(&paths.ca_key)?)?;
        Ok(Self {
            cert_pem: read(&paths.ca_cert)?,
            issuer: rcgen::Issuer::new(ca_params()?, key),
        })
    }

    pub fn save(&self, paths: &PkiPaths) -> Result<(), PkiError> {
        write_public(&paths.ca_cert, &self.cert_pem)?;
        write_private(&paths.ca_key, &self.issuer.key().serialize_pem())
    }

    /// A server certificate for the given DNS names and IP addresses.
    pub fn issue_server(&self, names: &[String]) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(names.to_vec())?;
        p.distinguished_name
            .push(DnType::CommonName, "sco-control-plane");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let now = OffsetDateTime::now_utc();
        p.not_before = now - Duration::hours(1);
        p.not_after = now + Duration::days(825);
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A client certificate naming `agent_id`, valid in the given window.
    pub fn issue_agent(
        &self,
        agent_id: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<(String, String), PkiError> {
        if !crate::domain::valid_agent_id(agent_id) {
            return Err(PkiError::AgentId(agent_id.to_string()));
        }
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name.push(DnType::CommonName, agent_id);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.not_before = not_before;
        p.not_after = not_after;
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

impl Ca {
    /// Signs a PKCS#10 request for `agent_id`. Only the request's public key
    /// is used: subject, extensions and validity come from here.
    pub fn sign_agent_csr(
        &self,
        csr_pem: &str,
        agent_id: &str,
        lifetime: Duration,
    ) -> Result<(String, OffsetDateTime), PkiError> {
        if !crate::domain::valid_agent_id(agent_id) {
            return Err(PkiError::AgentId(agent_id.to_string()));
        }
        if csr_pem.len() > 16 * 1024 {
            return Err(PkiError::Csr("larger than 16 KiB".into()));
        }
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::Csr(e.to_string()))?;
        let now = OffsetDateTime::now_utc();
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name.push(DnType::CommonName, agent_id);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // A little slack for clocks that are slightly behind.
        p.not_before = now - Duration::minutes(5);
        p.not_after = now + lifetime;
        csr.params = p;
        let cert = csr.signed_by(&self.issuer)?;
        Ok((cert.pem(), now + lifetime))
    }

    /// SHA-256 of the CA certificate (DER), hex: what `sco-agent enroll
    /// --ca-sha256` pins.
    pub fn fingerprint(&self) -> String {
        ca_fingerprint(&self.cert_pem).unwrap_or_default()
    }
}

/// SHA-256 (hex) of the first certificate in a PEM bundle.
pub fn ca_fingerprint(pem: &str) -> Option<String> {
    use sha2::Digest;
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()?;
    Some(hex::encode(sha2::Sha256::digest(der.as_ref())))
}

/// Creates CA and server certificate in `dir` unless they exist; returns the
/// loaded CA.
pub fn ensure_dev_pki(dir: &Path) -> Result<Ca, PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let paths = PkiPaths::new(dir);
    PolicySigner::ensure(dir)?;
    if paths.ca_key.exists() && paths.server_cert.exists() {
        return Ca::load(&paths);
    }
    let ca = Ca::generate()?;
    ca.save(&paths)?;
    let (cert, key) = ca.issue_server(&["localhost".to_string(), "127.0.0.1".to_string()])?;
    write_public(&paths.server_cert, &cert)?;
    write_private(&paths.server_key, &key)?;
    Ok(ca)
}

/// The fleet's policy signing key (ed25519): `policy.key` (PKCS#8, hex,
/// mode 0600) and `policy.pub` (the 32-byte public key, hex) in the PKI
/// directory. Agents get the public key with their PKI.
#[derive(Clone)]
pub struct PolicySigner {
    key: std::sync::Arc<ring::signature::Ed25519KeyPair>,
    pub public_hex: String,
}

impl PolicySigner {
    /// Loads the key in `dir`, creating it first if there is none. Replicas
    /// sharing the directory share the key.
    pub fn ensure(dir: &Path) -> Result<Self, PkiError> {
        use ring::signature::KeyPair;
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let key_path = dir.join("policy.key");
        let pub_path = dir.join("policy.pub");
        if !key_path.exists() {
            let pkcs8 =
                ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                    .map_err(|_| PkiError::Key("cannot generate the policy signing key".into()))?;
            write_private(&key_path, &hex::encode(pkcs8.as_ref()))?;
        }
        let bad = |why: &str| PkiError::Key(format!("{}: {why}", key_path.display()));
        let pkcs8 = hex::decode(read(&key_path)?.trim()).map_err(|_| bad("not hex"))?;
        let key = ring::signature::Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| bad("not an ed25519 PKCS#8 key"))?;
        let public_hex = hex::encode(key.public_key().as_ref());
        if read(&pub_path).ok().map(|s| s.trim().to_string()) != Some(public_hex.clone()) {
            write_public(&pub_path, &format!("{public_hex}\n"))?;
        }
        Ok(Self {
            key: std::sync::Arc::new(key),
            public_hex,
        })
    }

    /// Hex signature of a policy revision (see `sco_policy::signed_message`).
    pub fn sign(&self, name: &str, revision: u64, document: &str) -> String {
        hex::encode(
            self.key
                .sign(&sco_policy::signed_message(name, revision, document)),
        )
    }

    /// Hex signature of a model version (see `sco_policy::signed_model_message`).
    pub fn sign_model(&self, number: u64, manifest: &str) -> String {
        hex::encode(
            self.key
                .sign(&sco_policy::signed_model_message(number, manifest)),
        )
    }
}

/// The agent id a client certificate names (its subject common name).
pub fn agent_id_from_der(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    crate::domain::valid_agent_id(&cn).then_some(cn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_agent_certificate_names_the_agent() {
        let ca = Ca::generate().expect("ca");
        let now = OffsetDateTime::now_utc();
        let (pem, _) = ca
            .issue_agent("web-01", now, now + Duration::hours(1))
            .expect("issue");
        let der = CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .expect("one cert")
            .expect("pem");
        assert_eq!(agent_id_from_der(&der).as_deref(), Some("web-01"));
        assert!(ca.issue_agent("bad id;", now, now).is_err());
    }

    #[test]
    fn csr_is_signed_for_the_assigned_id_only() {
        let ca = Ca::generate().expect("ca");
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name
            .push(DnType::CommonName, "i-want-to-be-admin");
        let csr = p.serialize_request(&key).expect("csr").pem().expect("pem");
        let (pem, _) = ca
            .sign_agent_csr(&csr, "web-01-abc", Duration::hours(1))
            .expect("signed");
        let der = CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .expect("cert")
            .expect("pem");
        assert_eq!(agent_id_from_der(&der).as_deref(), Some("web-01-abc"));
        assert!(ca
            .sign_agent_csr("garbage", "x", Duration::hours(1))
            .is_err());
        assert_eq!(ca.fingerprint().len(), 64);
    }

    #[test]
    fn dev_pki_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ensure_dev_pki(dir.path()).expect("create");
        let again = ensure_dev_pki(dir.path()).expect("reload");
        assert_eq!(first.cert_pem, again.cert_pem);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ca.key"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
