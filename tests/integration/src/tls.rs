//! Test PKI: a CA and server certificates it signs, written as PEM files, and TLS clients that
//! trust that CA (and nothing else).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A test certificate authority.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, DER.
    pub der: Vec<u8>,
    /// The CA certificate, PEM.
    pub pem: String,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("key");
        let cert = p.self_signed(&key).expect("self-signed CA");
        let (der, pem) = (cert.der().to_vec(), cert.pem());
        TestCa {
            issuer: Issuer::new(p, key),
            der,
            pem,
        }
    }

    /// A server certificate for `names` (DNS names or IP literals), as (cert PEM, key PEM).
    pub fn server(&self, names: &[&str]) -> (String, String) {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, names[0]);
        for n in names {
            p.subject_alt_names
                .push(match n.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName((*n).try_into().expect("dns name")),
                });
        }
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &self.issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    }

    /// Writes a server certificate and key into `dir`; returns their paths.
    pub fn write_server(&self, dir: &Path, names: &[&str], tag: &str) -> (PathBuf, PathBuf) {
        let (c, k) = self.server(names);
        let (cp, kp) = (
            dir.join(format!("{tag}-cert.pem")),
            dir.join(format!("{tag}-key.pem")),
        );
        std::fs::write(&cp, c).unwrap();
        std::fs::write(&kp, k).unwrap();
        (cp, kp)
    }
}

/// A rustls client config trusting only `ca_der`, offering `alpn`.
pub fn client_config(ca_der: &[u8], alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca_der.to_vec()))
        .map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// A client connection for `name` (DNS name or IP literal).
pub fn client_connection(
    ca_der: &[u8],
    name: &str,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConnection, String> {
    let server_name =
        rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    rustls::ClientConnection::new(client_config(ca_der, alpn)?, server_name)
        .map_err(|e| e.to_string())
}
