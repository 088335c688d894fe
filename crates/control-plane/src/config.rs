//! Control plane settings: TOML with documented defaults, strict loading, flags on top.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

/// One row of the address → (region, ISP) table used when a client gives no hint.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GeoRule {
    /// Client prefix.
    pub cidr: IpNet,
    /// Region code (for example `CN`, `EU`, `NA`).
    pub region: String,
    /// ISP name.
    #[serde(default)]
    pub isp: String,
}

/// Everything `cloudproxy control` can be told.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// HTTPS listen address (default 0.0.0.0:443).
    pub listen: SocketAddr,
    /// Where the embedded store keeps its file (default `./cloudproxy-data`).
    pub data_dir: PathBuf,
    /// Bearer token of the admin API. Required (generated and printed in dev mode).
    pub admin_token: Option<String>,
    /// Bearer tokens edges authenticate with. Required (generated in dev mode).
    pub edge_tokens: Vec<String>,
    /// TLS certificate chain (PEM). Without it (and without `dev`) the service will not start.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Development mode: self-signed certificate (written to `<data_dir>/tls/`), generated
    /// tokens, verbose errors. Never in production.
    pub dev: bool,
    /// Addresses clients reach this service at, for whitelists (default: the listen address
    /// when it is specific).
    pub public_addresses: Vec<String>,
    /// Peers whose `X-Forwarded-For` is believed (load balancers in front).
    pub trusted_proxies: Vec<IpNet>,
    /// Address → region/ISP table, first match wins.
    pub geo: Vec<GeoRule>,
    /// Region of clients no rule matches (default `GLOBAL`).
    pub default_region: String,
    /// TURN credential lifetime in seconds (default 600).
    pub turn_ttl_secs: u64,
    /// Signalling ticket lifetime in seconds (default 600).
    pub ticket_ttl_secs: u64,
    /// How long an admitted session holds its quota slot without an edge reporting traffic for
    /// it, in seconds (default 60). Edges renew it with every heartbeat.
    pub session_lease_secs: u64,
    /// Edge lease in seconds (default 15); edges heartbeat every third of it.
    pub edge_lease_secs: u64,
    /// Edges offered per answer at most (default 4).
    pub max_edges_per_answer: usize,
    /// Signalling upstreams (RTN gateways, "host:port") tickets admit.
    pub rtn_upstreams: Vec<String>,
    /// Largest request body in bytes (default 65536).
    pub max_body_bytes: usize,
    /// Request timeout in seconds (default 10).
    pub request_timeout_secs: u64,
    /// Log format: "text" or "json".
    pub log_format: String,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:443".parse().expect("literal"),
            data_dir: PathBuf::from("cloudproxy-data"),
            admin_token: None,
            edge_tokens: Vec::new(),
            tls_cert: None,
            tls_key: None,
            dev: false,
            public_addresses: Vec::new(),
            trusted_proxies: Vec::new(),
            geo: Vec::new(),
            default_region: "GLOBAL".into(),
            turn_ttl_secs: 600,
            ticket_ttl_secs: 600,
            session_lease_secs: 60,
            edge_lease_secs: 15,
            max_edges_per_answer: 4,
            rtn_upstreams: Vec::new(),
            max_body_bytes: 65_536,
            request_timeout_secs: 10,
            log_format: "text".into(),
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable file.
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    /// Not valid TOML for this schema.
    #[error("{0}: {1}")]
    Parse(String, String),
    /// Unusable values.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl ControlConfig {
    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read(path.display().to_string(), e))?;
        toml::from_str(&text)
            .map_err(|e| ConfigError::Parse(path.display().to_string(), e.to_string()))
    }

    /// Checks what types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.into()));
        if !self.dev {
            if self.admin_token.as_deref().is_none_or(|t| t.len() < 16) {
                return bad("admin_token (--admin-token) of at least 16 characters is required outside dev mode");
            }
            if self.edge_tokens.iter().all(|t| t.len() < 16) {
                return bad("edge_tokens: at least one token of 16+ characters is required outside dev mode");
            }
            if self.tls_cert.is_none() || self.tls_key.is_none() {
                return bad("tls_cert and tls_key are required outside dev mode (dev mode generates a self-signed pair)");
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("tls_cert and tls_key go together");
        }
        if self.turn_ttl_secs == 0 || self.turn_ttl_secs > 86_400 {
            return bad("turn_ttl_secs must be 1..=86400");
        }
        if self.session_lease_secs < 5 || self.edge_lease_secs < 3 {
            return bad("session_lease_secs >= 5 and edge_lease_secs >= 3");
        }
        if self.max_edges_per_answer == 0 {
            return bad("max_edges_per_answer must be at least 1");
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return bad("log_format must be text or json");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/control.example.toml loads, validates, and rejects an added unknown key.
    #[test]
    fn sample_loads_and_unknown_keys_are_rejected() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/control.example.toml");
        let c = ControlConfig::load(&path).unwrap();
        c.validate().unwrap();
        assert_eq!(c.geo.len(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(toml::from_str::<ControlConfig>(&format!("bogus = 1\n{text}")).is_err());
        assert!(
            ControlConfig::default().validate().is_err(),
            "no tokens, no TLS, not dev: refused"
        );
        let dev = ControlConfig {
            dev: true,
            ..Default::default()
        };
        dev.validate().unwrap();
    }
}
