//! Edge settings: a TOML file with documented defaults, merged with command-line flags.
//!
//! Loading is strict (`deny_unknown_fields`): a misspelt key is an error, not a silently
//! ignored setting. [`EdgeConfig::validate`] catches what types cannot (empty ranges, no
//! credentials at all, relay addresses that are not the listener's family).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// An inclusive port range written "A-B" (or a single port "A").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

impl PortRange {
    /// Number of ports.
    pub fn len(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }

    /// Never empty once parsed.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The ports.
    pub fn iter(&self) -> impl Iterator<Item = u16> {
        self.first..=self.last
    }

    /// Whether `port` is inside.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let first: u16 = a
            .trim()
            .parse()
            .map_err(|_| format!("bad port range {s:?}: expected A-B"))?;
        let last: u16 = b
            .trim()
            .parse()
            .map_err(|_| format!("bad port range {s:?}: expected A-B"))?;
        if first == 0 || last < first {
            return Err(format!(
                "bad port range {s:?}: ports must be 1-65535 and A <= B"
            ));
        }
        Ok(Self { first, last })
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A TURN-REST secret "KEY_ID:SECRET" (or "SECRET", key id "default").
#[derive(Clone, PartialEq, Eq)]
pub struct SecretSpec {
    /// Key id (appears in usernames).
    pub key_id: String,
    /// The shared secret.
    pub secret: String,
}

impl std::fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretSpec({}:<redacted>)", self.key_id)
    }
}

impl FromStr for SecretSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (key_id, secret) = s.split_once(':').unwrap_or(("default", s));
        if key_id.is_empty() || secret.is_empty() {
            return Err("auth secret must be KEY_ID:SECRET or SECRET, both non-empty".into());
        }
        Ok(Self {
            key_id: key_id.into(),
            secret: secret.into(),
        })
    }
}

impl<'de> Deserialize<'de> for SecretSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A static user "NAME:PASSWORD".
#[derive(Clone, PartialEq, Eq)]
pub struct UserSpec {
    /// User name.
    pub name: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for UserSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserSpec({}:<redacted>)", self.name)
    }
}

impl FromStr for UserSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some((n, p)) if !n.is_empty() && !p.is_empty() && !n.as_bytes()[0].is_ascii_digit() => {
                Ok(Self {
                    name: n.into(),
                    password: p.into(),
                })
            }
            Some((n, _)) if n.as_bytes().first().is_some_and(u8::is_ascii_digit) => Err(
                "user names must not start with a digit (that form is reserved for REST usernames)"
                    .into(),
            ),
            _ => Err("user must be NAME:PASSWORD, both non-empty".into()),
        }
    }
}

impl<'de> Deserialize<'de> for UserSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Everything `cloudproxy edge` can be told. Every field has a default; see `Default`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Address the TURN listeners bind (default 0.0.0.0).
    pub listen: IpAddr,
    /// UDP TURN ports (default 3478-3500).
    pub udp_ports: PortRange,
    /// TCP TURN ports (default 3433-3460).
    pub tcp_ports: PortRange,
    /// Addresses relay sockets bind, at most one per family. Empty: the listen address, when
    /// it is a specific address.
    pub relay_ips: Vec<IpAddr>,
    /// Ports for relay sockets (default 49152-65535).
    pub relay_ports: PortRange,
    /// REALM (default "cloudproxy").
    pub realm: String,
    /// TURN-REST secrets; the first mints, all verify.
    pub auth_secrets: Vec<SecretSpec>,
    /// Longest a REST username may still be valid for, in seconds (default 86400): refuses
    /// credentials minted far into the future.
    pub max_credential_ttl_secs: u64,
    /// Static users, for development.
    pub users: Vec<UserSpec>,
    /// Destinations peers may be in (the RTN). Empty: nothing is relayed.
    pub rtn_prefixes: Vec<IpNet>,
    /// Development only: lets peers be on loopback. Never on a real edge.
    pub dangerous_allow_loopback_peers: bool,
    /// Secret for stateless nonces; edges behind one name should share it. Default: derived
    /// from the first auth secret, or random.
    pub nonce_secret: Option<String>,
    /// Worker threads, each with its own sockets and allocations (default: one per CPU the
    /// process may run on, at most 64).
    pub shards: usize,
    /// Allocations on this edge (default 50,000).
    pub max_allocations: usize,
    /// Allocations per user or REST session (default 10).
    pub max_allocations_per_user: u32,
    /// Permissions per allocation (default 32).
    pub max_permissions_per_allocation: usize,
    /// Channels per allocation (default 32).
    pub max_channels_per_allocation: usize,
    /// TCP connections to a client port at once (default 10,000).
    pub max_tcp_connections: usize,
    /// Log format: "text" or "json".
    pub log_format: String,
    /// Control plane base URL (`https://host:port`). With it the edge registers, heartbeats,
    /// and learns the TURN-REST secrets from the control plane.
    pub control: Option<String>,
    /// Bearer token for the control plane's edge API.
    pub edge_token: Option<String>,
    /// CA certificate (PEM) to trust for the control plane, besides the system roots.
    pub control_ca: Option<std::path::PathBuf>,
    /// Edge id in the registry (default: `edge-<public address>`).
    pub edge_id: Option<String>,
    /// Pool this edge serves (default `test-global`).
    pub pool: String,
    /// Region code (default `GLOBAL`).
    pub region: String,
    /// ISP name (default empty).
    pub isp: String,
    /// Address clients reach this edge at (default: the listen address, or the first relay
    /// address when listening on a wildcard).
    pub public_address: Option<String>,
    /// TLS port: TURN-over-TLS and WSS signalling on one port, told apart by ALPN and the first
    /// bytes (default 443). Serves only when a certificate is configured (or self-signed).
    pub tls_port: u16,
    /// TLS certificate chain (PEM). Reloaded on SIGHUP and when the file changes.
    pub tls_cert: Option<std::path::PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<std::path::PathBuf>,
    /// Development only: serve TLS with a self-signed certificate generated at start.
    pub tls_self_signed: bool,
    /// Plain signalling port (WebSocket relay without TLS; default 4000). `0` disables it.
    pub signal_port: u16,
    /// Signalling ticket keys "KEY_ID:SECRET" for an edge without a control plane (with one,
    /// the keys come from its heartbeats).
    pub ticket_keys: Vec<SecretSpec>,
    /// Accept a PROXY protocol v2 header on TCP, TLS and signalling ports (set when a load
    /// balancer in front sends one; then the client address it names is used everywhere).
    pub proxy_protocol: bool,
    /// TCP/TLS/signalling connections from one client address at once (default 64).
    pub max_connections_per_ip: usize,
    /// Seconds a new connection has to complete TLS and send its first bytes (default 10).
    pub handshake_timeout_secs: u64,
    /// Seconds a TCP/TLS connection without an allocation may stay silent (default 120).
    pub idle_timeout_secs: u64,
    /// Where to serve Prometheus metrics (`GET /metrics`, `GET /healthz`), e.g.
    /// `127.0.0.1:9641`; off when unset. An operator's address, never a client-facing one.
    pub metrics_listen: Option<SocketAddr>,
    /// On SIGTERM or SIGINT, seconds to drain before stopping, for rolling restarts (e.g.
    /// 30): new allocations are refused (508) and the control plane stops offering the edge,
    /// while calls already relayed go on until they end or this runs out; a second signal
    /// stops at once. Default 0: stop at once.
    pub drain_secs: u64,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            listen: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            udp_ports: PortRange {
                first: 3478,
                last: 3500,
            },
            tcp_ports: PortRange {
                first: 3433,
                last: 3460,
            },
            relay_ips: Vec::new(),
            relay_ports: PortRange {
                first: 49152,
                last: 65535,
            },
            realm: "cloudproxy".into(),
            auth_secrets: Vec::new(),
            max_credential_ttl_secs: 86_400,
            users: Vec::new(),
            rtn_prefixes: Vec::new(),
            dangerous_allow_loopback_peers: false,
            nonce_secret: None,
            shards: default_shards(),
            max_allocations: 50_000,
            max_allocations_per_user: 10,
            max_permissions_per_allocation: 32,
            max_channels_per_allocation: 32,
            max_tcp_connections: 10_000,
            log_format: "text".into(),
            control: None,
            edge_token: None,
            control_ca: None,
            edge_id: None,
            pool: "test-global".into(),
            region: "GLOBAL".into(),
            isp: String::new(),
            public_address: None,
            tls_port: 443,
            tls_cert: None,
            tls_key: None,
            tls_self_signed: false,
            signal_port: 4000,
            ticket_keys: Vec::new(),
            proxy_protocol: false,
            max_connections_per_ip: 64,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 120,
            metrics_listen: None,
            drain_secs: 0,
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown keys included).
    #[error("{path}: {message}")]
    Parse {
        /// Path.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// The values contradict each other or are unusable.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl EdgeConfig {
    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            e => e,
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "<config>".into(),
            message: e.to_string(),
        })
    }

    /// The relay addresses to use: the configured ones, or the listen address.
    pub fn effective_relay_ips(&self) -> Vec<IpAddr> {
        if self.relay_ips.is_empty() && !self.listen.is_unspecified() {
            vec![self.listen]
        } else {
            self.relay_ips.clone()
        }
    }

    /// The address clients reach this edge at.
    pub fn effective_public_address(&self) -> String {
        if let Some(a) = &self.public_address {
            return a.clone();
        }
        if !self.listen.is_unspecified() {
            return self.listen.to_string();
        }
        self.effective_relay_ips()
            .first()
            .map(|ip| ip.to_string())
            .unwrap_or_default()
    }

    /// Whether the TLS port serves.
    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some() || self.tls_self_signed
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.auth_secrets.is_empty() && self.users.is_empty() && self.control.is_none() {
            return bad(
                "no credentials: set auth_secrets (--auth-secret), users (--user) or a control plane (--control); an edge never runs open"
                    .into(),
            );
        }
        if let Some(url) = &self.control {
            if !url.starts_with("https://") {
                return bad(format!("control must be an https:// URL, not {url:?}"));
            }
            if self.edge_token.as_deref().is_none_or(str::is_empty) {
                return bad("control needs edge_token (--edge-token)".into());
            }
        }
        let relays = self.effective_relay_ips();
        if relays.is_empty() {
            return bad(
                "no relay address: set relay_ips (--relay-ip) when listening on a wildcard address"
                    .into(),
            );
        }
        if relays
            .iter()
            .any(|ip| ip.is_unspecified() || ip.is_multicast())
        {
            return bad("relay_ips must be specific unicast addresses".into());
        }
        if relays.iter().filter(|ip| ip.is_ipv4()).count() > 1
            || relays.iter().filter(|ip| ip.is_ipv6()).count() > 1
        {
            return bad("at most one relay address per address family".into());
        }
        // Parsing refuses these; a configuration built in code is checked here. Port 0 would
        // bind wherever the kernel likes while the edge believes (and tells clients) it is 0.
        for (name, r) in [
            ("udp_ports", self.udp_ports),
            ("tcp_ports", self.tcp_ports),
            ("relay_ports", self.relay_ports),
        ] {
            if r.first == 0 || r.last < r.first {
                return bad(format!("{name} must be a range of ports 1-65535, A <= B"));
            }
        }
        if self.udp_ports.contains(self.relay_ports.first)
            || self.udp_ports.contains(self.relay_ports.last)
            || self.relay_ports.contains(self.udp_ports.first)
        {
            return bad(format!(
                "relay_ports {} overlap udp_ports {}",
                self.relay_ports, self.udp_ports
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("tls_cert and tls_key go together".into());
        }
        if self.max_connections_per_ip == 0
            || self.handshake_timeout_secs == 0
            || self.idle_timeout_secs == 0
        {
            return bad("max_connections_per_ip and the timeouts must be at least 1".into());
        }
        if self.shards == 0 || self.shards > 256 {
            return bad("shards must be 1..=256".into());
        }
        if self.realm.is_empty() {
            return bad("realm must not be empty".into());
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return bad(format!(
                "log_format must be \"text\" or \"json\", not {:?}",
                self.log_format
            ));
        }
        if self.max_allocations == 0 || self.max_allocations_per_user == 0 {
            return bad("allocation limits must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_strictness() {
        let c = EdgeConfig::from_toml("").unwrap();
        assert_eq!(
            c.udp_ports,
            PortRange {
                first: 3478,
                last: 3500
            }
        );
        assert_eq!(
            c.tcp_ports,
            PortRange {
                first: 3433,
                last: 3460
            }
        );
        assert!(c.validate().is_err(), "no credentials must not validate");
        let err = EdgeConfig::from_toml("listen = \"127.0.0.1\"\nlistne = 1\n").unwrap_err();
        assert!(err.to_string().contains("listne"), "{err}");
        let c = EdgeConfig::from_toml(
            "listen = \"127.0.0.1\"\nauth_secrets = [\"k1:s3cret\"]\nrtn_prefixes = [\"203.0.113.0/24\"]\nudp_ports = \"4478-4479\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.effective_relay_ips(),
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert!(EdgeConfig::from_toml("udp_ports = \"9-3\"").is_err());
        assert!(EdgeConfig::from_toml("users = [\"1bad:x\"]").is_err());
        // A range built in code, not parsed, is checked by validate.
        let mut zero = c.clone();
        zero.relay_ports = PortRange { first: 0, last: 9 };
        let err = zero.validate().unwrap_err().to_string();
        assert!(err.contains("relay_ports"), "{err}");
        let mut upside_down = c.clone();
        upside_down.tcp_ports = PortRange {
            first: 5000,
            last: 4000,
        };
        assert!(upside_down.validate().is_err());
    }
}

#[cfg(test)]
mod sample_tests {
    use super::*;

    /// Every sample config in docs/ loads and validates, and adding an unknown key to it makes
    /// loading fail (hickory's test_reject_unknown_fields).
    #[test]
    fn samples_load_and_reject_unknown_fields() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !(name.starts_with("edge") && name.ends_with(".example.toml")) {
                continue;
            }
            seen += 1;
            let c = EdgeConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            c.validate()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let text = std::fs::read_to_string(&path).unwrap();
            let bad = format!("no_such_setting = 1\n{text}");
            assert!(
                EdgeConfig::from_toml(&bad).is_err(),
                "{} accepted an unknown key",
                path.display()
            );
        }
        assert!(
            seen > 0,
            "no edge sample configs found in {}",
            dir.display()
        );
    }
}

/// One shard per CPU this process may use (its affinity mask and cgroup quota count), so the
/// packet path of each core stays on it; at most 64.
pub fn default_shards() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(64))
}
