//! The control plane's proxy-info API as the SDK uses it: `POST /v1/proxy` and
//! `DELETE /v1/proxy/{session}` (ARCHITECTURE §9), over HTTPS only, no redirects followed
//! (the client contacts the whitelisted control address and nothing else).

use std::time::Duration;

use control_api::{ApiError, ProxyRequest, ProxyResponse};
use reqwest::Url;
use rustls::pki_types::CertificateDer;
use tracing::debug;

use crate::{ClientConfig, JoinError, SdkError};

/// How long a release may take before the SDK stops waiting (the lease runs out anyway).
pub const RELEASE_DEADLINE: Duration = Duration::from_secs(2);

/// A control plane client.
#[derive(Debug, Clone)]
pub struct ControlClient {
    http: reqwest::Client,
    base: Url,
}

impl ControlClient {
    /// A client for `cfg.control_url` that trusts the platform roots plus `extra`.
    pub fn new(cfg: &ClientConfig, extra: &[CertificateDer<'static>]) -> Result<Self, SdkError> {
        let base = Url::parse(&cfg.control_url).map_err(|e| {
            SdkError::InvalidParameter(format!("control_url {:?}: {e}", cfg.control_url))
        })?;
        if base.scheme() != "https" || base.host().is_none() || base.cannot_be_a_base() {
            return Err(SdkError::InvalidParameter(format!(
                "control_url must be an https:// URL, not {:?}",
                cfg.control_url
            )));
        }
        let mut b = reqwest::Client::builder()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("cloudproxy-client-sdk/", env!("CARGO_PKG_VERSION")));
        for der in extra {
            let cert = reqwest::Certificate::from_der(der)
                .map_err(|e| SdkError::InvalidParameter(format!("ca_pem: {e}")))?;
            b = b.add_root_certificate(cert);
        }
        let http = b
            .build()
            .map_err(|e| SdkError::InvalidParameter(format!("HTTP client: {}", chain(&e))))?;
        Ok(Self { http, base })
    }

    /// `host:port` of the control plane, for reports.
    pub fn shown(&self) -> String {
        let host = self.base.host_str().unwrap_or_default();
        let port = self.base.port_or_known_default().unwrap_or(443);
        crate::media::signal::host_port(host, port)
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut path) = u.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        u
    }

    /// `POST /v1/proxy`: the typed error for every refusal.
    pub async fn request_proxy(&self, req: &ProxyRequest) -> Result<ProxyResponse, JoinError> {
        let resp = self
            .http
            .post(self.url(&["v1", "proxy"]))
            .json(req)
            .send()
            .await
            .map_err(|e| JoinError::ControlPlaneUnreachable(chain(&e)))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| JoinError::ControlPlaneUnreachable(chain(&e)))?;
        if status == 200 {
            return parse_json::<ProxyResponse>(&body).map_err(|e| JoinError::UnexpectedAnswer {
                status,
                message: format!("unreadable proxy info: {e}"),
            });
        }
        match parse_json::<ApiError>(&body) {
            Ok(api) => {
                Err(
                    JoinError::from_api(&api).unwrap_or_else(|| JoinError::UnexpectedAnswer {
                        status,
                        message: api.to_string(),
                    }),
                )
            }
            Err(_) => Err(JoinError::UnexpectedAnswer {
                status,
                message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            }),
        }
    }

    /// `DELETE /v1/proxy/{session}`, best effort and bounded by [`RELEASE_DEADLINE`]: the
    /// session's lease ends on its own if this does not arrive.
    pub async fn release(&self, session: &str) {
        let send = self
            .http
            .delete(self.url(&["v1", "proxy", session]))
            .timeout(RELEASE_DEADLINE)
            .send();
        match tokio::time::timeout(RELEASE_DEADLINE, send).await {
            Ok(Ok(r)) => debug!(status = r.status().as_u16(), "proxy session released"),
            Ok(Err(e)) => debug!(error = %chain(&e), "proxy session release failed"),
            Err(_) => debug!("proxy session release timed out"),
        }
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

/// An error with its causes, which reqwest keeps out of its `Display`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
