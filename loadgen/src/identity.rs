//! Identities for the simulated agents, issued in bulk by the fleet CA.
//!
//! The control plane accepts any client certificate that its CA signed and
//! whose common name is a valid agent id (a host row is created at the first
//! stream, and only a revoked host is refused): the same certificates
//! `sco-control-plane pki issue-agent` writes. Issuing them here from the CA
//! files takes milliseconds per agent, where enrolling thousands of agents one
//! token use at a time would measure enrollment instead of ingest.

use std::path::Path;

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};

use crate::agent::Credentials;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{what} in {path} is not usable: {source}")]
    Pem {
        what: &'static str,
        path: String,
        source: rcgen::Error,
    },
    #[error("cannot issue a certificate for {id}: {source}")]
    Issue { id: String, source: rcgen::Error },
}

/// The fleet CA, able to sign client certificates.
pub struct Issuer {
    /// The CA's subject and key, read from its certificate and key files.
    issuer: rcgen::Issuer<'static, KeyPair>,
    pub ca_pem: String,
}

fn read(path: &Path) -> Result<String, IdentityError> {
    std::fs::read_to_string(path).map_err(|source| IdentityError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl Issuer {
    /// Loads the CA certificate and its private key (PEM files).
    pub fn load(ca_cert: &Path, ca_key: &Path) -> Result<Self, IdentityError> {
        let ca_pem = read(ca_cert)?;
        let key = KeyPair::from_pem(&read(ca_key)?).map_err(|source| IdentityError::Pem {
            what: "the CA key",
            path: ca_key.display().to_string(),
            source,
        })?;
        // An issued certificate names the CA's subject and key: both come from the files.
        let issuer =
            rcgen::Issuer::from_ca_cert_pem(&ca_pem, key).map_err(|source| IdentityError::Pem {
                what: "the CA certificate",
                path: ca_cert.display().to_string(),
                source,
            })?;
        Ok(Self { issuer, ca_pem })
    }

    /// A client certificate naming `id`, valid for `lifetime` (with five
    /// minutes of slack for clocks, as the control plane issues them).
    pub fn issue(&self, id: &str, lifetime: Duration) -> Result<Credentials, IdentityError> {
        let err = |source| IdentityError::Issue {
            id: id.to_string(),
            source,
        };
        let key = KeyPair::generate().map_err(err)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        p.distinguished_name.push(DnType::CommonName, id);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        p.not_before = now - Duration::minutes(5);
        p.not_after = now + lifetime;
        let cert = p.signed_by(&key, &self.issuer).map_err(err)?;
        Ok(Credentials {
            id: id.to_string(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after_ms: (now + lifetime).unix_timestamp().saturating_mul(1000),
        })
    }
}
