//! What the app configures: the client ([`ClientConfig`]) and self-deployed proxies
//! ([`ProxyServer`], [`TurnServer`]).

use std::time::Duration;

use control_api::{IceServer, TransportMode};

use crate::SdkError;

/// How a [`crate::Client`] reaches the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Base URL of the control plane, `https://host[:port][/prefix]` (required).
    pub control_url: String,
    /// Extra CA certificate(s) to trust, PEM (a bundle may hold several), besides the system
    /// roots. Used for the control plane and for the edges' TLS port.
    pub ca_pem: Option<String>,
    /// Area hint (region code such as `CN` or `EU`); default: the control plane locates the
    /// client by its address.
    pub area: Option<String>,
    /// ISP hint; default: located by address.
    pub isp: Option<String>,
    /// Limit for one control plane request (default 10 s).
    pub request_timeout: Duration,
    /// The media network's signalling gateway (`ws://host:port/signal` or `wss://...`), for
    /// joins without the cloud proxy (with the cloud proxy the control plane names it).
    pub rtn_signal_url: Option<String>,
    /// Limit for reaching the signalling gateway and joining on it (default 10 s): a
    /// firewalled direct join fails with `SIGNAL_UNREACHABLE` after this, never hangs.
    pub signal_timeout: Duration,
    /// What the media session publishes (the SDK's test sources; default audio and video).
    pub publish: crate::Publish,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            control_url: String::new(),
            ca_pem: None,
            area: None,
            isp: None,
            request_timeout: Duration::from_secs(10),
            rtn_signal_url: None,
            signal_timeout: Duration::from_secs(10),
            publish: crate::Publish::default(),
        }
    }
}

/// A self-deployed proxy (`set_proxy_server`): where the app's own edge serves signalling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyServer {
    /// Host name or IP address.
    pub address: String,
    /// Plain signalling relay port (TCP), if served.
    pub signal_port: Option<u16>,
    /// TLS port (WSS signalling and TURN-TLS), if served.
    pub tls_port: Option<u16>,
}

impl ProxyServer {
    /// Checks what the types cannot: a host, and at least one non-zero port.
    pub fn validate(&self) -> Result<(), SdkError> {
        valid_host(&self.address, "proxy server address")?;
        let ports = [self.signal_port, self.tls_port];
        if ports.iter().all(Option::is_none) {
            return Err(SdkError::InvalidParameter(
                "proxy server needs a signal_port or a tls_port".into(),
            ));
        }
        if ports.contains(&Some(0)) {
            return Err(SdkError::InvalidParameter(
                "proxy server port 0 is not a port".into(),
            ));
        }
        Ok(())
    }
}

/// A self-deployed TURN server (`set_turn_server`), used as the only ICE server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnServer {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Long-term credential user name.
    pub username: String,
    /// Long-term credential password.
    pub password: String,
    /// Transport to the TURN server: UDP, TCP, or TLS (`turns:`).
    pub transport: TransportMode,
}

impl TurnServer {
    /// Checks what the types cannot: a host, a port, and a credential.
    pub fn validate(&self) -> Result<(), SdkError> {
        valid_host(&self.host, "turn server host")?;
        if self.port == 0 {
            return Err(SdkError::InvalidParameter(
                "turn server port 0 is not a port".into(),
            ));
        }
        if self.username.is_empty() || self.password.is_empty() {
            return Err(SdkError::InvalidParameter(
                "turn server needs a username and a password".into(),
            ));
        }
        Ok(())
    }

    /// The ICE server entry for this TURN server (`turn:` for UDP and TCP, `turns:` for TLS).
    pub fn ice_server(&self) -> IceServer {
        let host = match self.host.parse::<std::net::Ipv6Addr>() {
            Ok(_) => format!("[{}]", self.host),
            Err(_) => self.host.clone(),
        };
        let url = match self.transport {
            TransportMode::Udp => format!("turn:{host}:{}?transport=udp", self.port),
            TransportMode::Tcp => format!("turn:{host}:{}?transport=tcp", self.port),
            TransportMode::Tls => format!("turns:{host}:{}?transport=tcp", self.port),
        };
        IceServer {
            urls: vec![url],
            username: self.username.clone(),
            credential: self.password.clone(),
        }
    }
}

fn valid_host(host: &str, what: &str) -> Result<(), SdkError> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:_".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SdkError::InvalidParameter(format!(
            "{what} must be a host name or IP address, not {host:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(transport: TransportMode, host: &str) -> TurnServer {
        TurnServer {
            host: host.into(),
            port: 3478,
            username: "u".into(),
            password: "p".into(),
            transport,
        }
    }

    #[test]
    fn ice_urls() {
        let urls = |t: TurnServer| t.ice_server().urls;
        assert_eq!(
            urls(turn(TransportMode::Udp, "192.0.2.1")),
            ["turn:192.0.2.1:3478?transport=udp"]
        );
        assert_eq!(
            urls(turn(TransportMode::Tcp, "turn.example")),
            ["turn:turn.example:3478?transport=tcp"]
        );
        assert_eq!(
            urls(turn(TransportMode::Tls, "2001:db8::1")),
            ["turns:[2001:db8::1]:3478?transport=tcp"]
        );
    }

    #[test]
    fn validation() {
        assert!(turn(TransportMode::Udp, "h").validate().is_ok());
        assert!(turn(TransportMode::Udp, "").validate().is_err());
        assert!(turn(TransportMode::Udp, "a b").validate().is_err());
        let mut t = turn(TransportMode::Udp, "h");
        t.port = 0;
        assert!(t.validate().is_err());
        let mut t = turn(TransportMode::Udp, "h");
        t.password.clear();
        assert!(t.validate().is_err());
        let p = |signal_port, tls_port| ProxyServer {
            address: "proxy.example".into(),
            signal_port,
            tls_port,
        };
        assert!(p(Some(4000), None).validate().is_ok());
        assert!(p(None, Some(443)).validate().is_ok());
        assert!(p(None, None).validate().is_err());
        assert!(p(Some(0), Some(443)).validate().is_err());
    }
}
