//! Trust: the platform's roots plus the app's extra CA, the same for the control plane's HTTPS
//! (through reqwest) and for the edges' TLS port.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::probe::ALPN_TURN;
use crate::SdkError;

/// The certificates in a PEM bundle; an error when it holds none or is malformed.
pub fn parse_pem_bundle(pem: &str) -> Result<Vec<CertificateDer<'static>>, SdkError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| SdkError::InvalidParameter(format!("ca_pem: {e}")))?;
    if certs.is_empty() {
        return Err(SdkError::InvalidParameter(
            "ca_pem holds no certificate".into(),
        ));
    }
    Ok(certs)
}

/// A TLS client config for TURN over TLS: platform roots plus `extra`, ALPN `stun.turn`.
pub fn turn_tls_config(
    extra: Vec<CertificateDer<'static>>,
) -> Result<Arc<rustls::ClientConfig>, SdkError> {
    tls_config(extra, ALPN_TURN)
}

/// The same trust for WSS signalling, with ALPN `http/1.1` (an edge's TLS port tells TURN and
/// WebSocket apart by ALPN).
pub fn ws_tls_config(
    extra: Vec<CertificateDer<'static>>,
) -> Result<Arc<rustls::ClientConfig>, SdkError> {
    tls_config(extra, b"http/1.1")
}

fn tls_config(
    extra: Vec<CertificateDer<'static>>,
    alpn: &[u8],
) -> Result<Arc<rustls::ClientConfig>, SdkError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|e| SdkError::InvalidParameter(format!("TLS trust store: {e}")))?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SdkError::InvalidParameter(format!("TLS: {e}")))?
        .dangerous() // not dangerous: the platform verifier does full verification
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(cfg))
}
