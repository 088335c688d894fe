//! Signalling: where the client's WebSocket to the media network's gateway goes (through the
//! chosen edge's relay, a self-deployed relay, or straight to the gateway), and the join on it.
//!
//! Through an edge: `ws://<edge>:<signal_port>/ws?upstream=<gateway>&ticket=<ticket>&path=/signal`
//! in modes 3 and 4 (plain signalling port, 4000 by default), `wss://<edge>:<tls_port>/ws?...`
//! in mode 5 (everything on 443) or when the edge has no plain port.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtn_proto::{ClientMsg, ServerMsg};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use control_api::TransportMode;

use super::path::Stream;
use crate::JoinError;

/// The WebSocket to the gateway.
pub(crate) type Ws = WebSocketStream<Box<dyn Stream>>;

/// Where signalling connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalTarget {
    /// `ws://` or `wss://` URL (the ticket included).
    pub url: String,
    /// Host to connect to (and to check the certificate of, with TLS).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Whether TLS is used.
    pub tls: bool,
}

impl SignalTarget {
    /// The URL with the ticket elided, for logs and stats.
    pub fn shown(&self) -> String {
        match self.url.split_once("ticket=") {
            Some((a, b)) => {
                let rest = b
                    .split_once('&')
                    .map(|(_, r)| format!("&{r}"))
                    .unwrap_or_default();
                format!("{a}ticket=…{rest}")
            }
            None => self.url.clone(),
        }
    }
}

/// Through an edge's relay: the mode picks the port (see the module docs).
pub fn via_edge(
    address: &str,
    signal_port: Option<u16>,
    tls_port: Option<u16>,
    mode: TransportMode,
    upstream: &str,
    ticket: Option<&str>,
    path: &str,
) -> Result<SignalTarget, String> {
    let (tls, port) = match (mode, signal_port, tls_port) {
        (TransportMode::Tls, _, Some(p)) => (true, p),
        (TransportMode::Tls, _, None) => return Err("the edge has no TLS port".into()),
        (_, Some(p), _) if p != 0 => (false, p),
        (_, _, Some(p)) => (true, p),
        _ => return Err("the edge has neither a signalling nor a TLS port".into()),
    };
    let mut url = format!(
        "{}://{}/ws?upstream={}",
        if tls { "wss" } else { "ws" },
        host_port(address, port),
        query_escape(upstream)
    );
    if let Some(t) = ticket {
        url.push_str("&ticket=");
        url.push_str(&query_escape(t));
    }
    url.push_str("&path=");
    url.push_str(&query_escape(path));
    Ok(SignalTarget {
        url,
        host: address
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        tls,
    })
}

/// A gateway URL (`ws://host:port/path` or `wss://...`), for direct joins.
pub fn direct(url: &str) -> Result<SignalTarget, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("ws://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("wss://") {
        (true, r)
    } else {
        return Err(format!("{url}: not a ws:// or wss:// URL"));
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (host, port) = split_authority(authority, if tls { 443 } else { 80 })
        .ok_or_else(|| format!("{url}: no host"))?;
    Ok(SignalTarget {
        url: url.to_string(),
        host,
        port,
        tls,
    })
}

/// `host:port` and path of a gateway URL (what a relay's `upstream=` and `path=` name).
pub fn upstream_of(url: &str) -> Result<(String, String), String> {
    let t = direct(url)?;
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("/");
    Ok((host_port(&t.host, t.port), path.to_string()))
}

fn split_authority(a: &str, default_port: u16) -> Option<(String, u16)> {
    if a.is_empty() {
        return None;
    }
    if let Some(r) = a.strip_prefix('[') {
        let (h, p) = r.split_once(']')?;
        let port = match p.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        return Some((h.to_string(), port));
    }
    match a.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((a.to_string(), default_port)),
    }
}

/// `host:port`, with brackets around an IPv6 literal (unless they are there already).
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Opens the WebSocket (TCP, TLS with `target.tls`, the HTTP upgrade) and closes it again,
/// within `deadline`: what `cloudproxy doctor` checks of the signalling path. Returns the
/// local address the connection had.
pub async fn open(
    target: &SignalTarget,
    tls: &Arc<rustls::ClientConfig>,
    deadline: Duration,
) -> Result<std::net::SocketAddr, String> {
    match tokio::time::timeout(deadline, upgrade(target, tls)).await {
        Ok(Ok((mut ws, local))) => {
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
            Ok(local)
        }
        Ok(Err(why)) => Err(why),
        Err(_) => Err(format!("no WebSocket within {deadline:?}")),
    }
}

/// Connects and upgrades to a WebSocket; the error says why, without the URL.
async fn upgrade(
    target: &SignalTarget,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<(Ws, std::net::SocketAddr), String> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("TCP connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let local = tcp
        .local_addr()
        .map_err(|e| format!("local address: {e}"))?;
    let stream: Box<dyn Stream> = if target.tls {
        let name =
            ServerName::try_from(target.host.clone()).map_err(|e| format!("TLS name: {e}"))?;
        let s = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    let request = target
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad URL: {e}"))?;
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((ws, _)) => Ok((ws, local)),
        Err(WsError::Http(resp)) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err(format!("relay answered HTTP {status} {body}"))
        }
        Err(e) => Err(format!("WebSocket handshake: {e}")),
    }
}

/// Opens the WebSocket and joins; returns it with the other members, within `deadline`.
pub(crate) async fn connect_and_join(
    target: &SignalTarget,
    tls: &Arc<rustls::ClientConfig>,
    join: ClientMsg,
    deadline: Duration,
) -> Result<(Ws, Vec<String>, std::net::SocketAddr), JoinError> {
    let shown = target.shown();
    match tokio::time::timeout(deadline, connect_and_join_inner(target, tls, join)).await {
        Ok(r) => r,
        Err(_) => Err(JoinError::SignalUnreachable(format!(
            "{shown}: no answer within {deadline:?}"
        ))),
    }
}

async fn connect_and_join_inner(
    target: &SignalTarget,
    tls: &Arc<rustls::ClientConfig>,
    join: ClientMsg,
) -> Result<(Ws, Vec<String>, std::net::SocketAddr), JoinError> {
    let shown = target.shown();
    let unreachable = |why: String| JoinError::SignalUnreachable(format!("{shown}: {why}"));
    let (mut ws, local) = upgrade(target, tls).await.map_err(unreachable)?;
    let text = serde_json::to_string(&join).map_err(|e| unreachable(e.to_string()))?;
    ws.send(Message::Text(text.into()))
        .await
        .map_err(|e| unreachable(format!("sending join: {e}")))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMsg>(t.as_str()) {
                Ok(ServerMsg::Joined { members, .. }) => return Ok((ws, members, local)),
                Ok(ServerMsg::Error { code, message }) => {
                    return Err(JoinError::SignalRefused { code, message })
                }
                Ok(_) => {}
                Err(e) => return Err(unreachable(format!("unreadable answer: {e}"))),
            },
            Some(Ok(Message::Close(f))) => {
                return Err(unreachable(format!(
                    "closed before joining: {}",
                    f.map(|f| format!("{} {}", f.code, f.reason))
                        .unwrap_or_default()
                )))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(unreachable(format!("WebSocket: {e}"))),
            None => return Err(unreachable("closed before joining".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_3_and_4_use_the_plain_port_and_mode_5_the_tls_port() {
        let t = via_edge(
            "10.0.0.1",
            Some(4000),
            Some(443),
            TransportMode::Udp,
            "10.9.0.2:8443",
            Some("v1.k.p.m"),
            "/signal",
        )
        .unwrap();
        assert_eq!(
            t.url,
            "ws://10.0.0.1:4000/ws?upstream=10.9.0.2%3A8443&ticket=v1.k.p.m&path=%2Fsignal"
        );
        assert!(!t.tls);
        let t = via_edge(
            "10.0.0.1",
            Some(4000),
            Some(443),
            TransportMode::Tcp,
            "u:1",
            None,
            "/",
        )
        .unwrap();
        assert_eq!((t.port, t.tls), (4000, false));
        let t = via_edge(
            "edge.example",
            Some(4000),
            Some(443),
            TransportMode::Tls,
            "u:1",
            Some("t"),
            "/signal",
        )
        .unwrap();
        assert_eq!(
            t.url,
            "wss://edge.example:443/ws?upstream=u%3A1&ticket=t&path=%2Fsignal"
        );
        assert_eq!(
            t.shown(),
            "wss://edge.example:443/ws?upstream=u%3A1&ticket=…&path=%2Fsignal"
        );
        // No plain port: TLS in every mode. No TLS port: mode 5 cannot signal.
        assert!(
            via_edge("e", None, Some(443), TransportMode::Udp, "u:1", None, "/")
                .unwrap()
                .tls
        );
        assert!(via_edge("e", Some(4000), None, TransportMode::Tls, "u:1", None, "/").is_err());
        assert!(via_edge("e", Some(0), None, TransportMode::Udp, "u:1", None, "/").is_err());
        let t = via_edge(
            "2001:db8::1",
            Some(4000),
            None,
            TransportMode::Udp,
            "[2001:db8::2]:1",
            None,
            "/",
        )
        .unwrap();
        assert!(t
            .url
            .starts_with("ws://[2001:db8::1]:4000/ws?upstream=%5B2001%3Adb8%3A%3A2%5D%3A1"));
        assert_eq!(t.host, "2001:db8::1");
    }

    #[test]
    fn direct_urls_parse_and_name_their_upstream() {
        let t = direct("ws://10.1.2.3:8443/signal").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("10.1.2.3", 8443, false));
        assert_eq!(direct("wss://rtn.example/signal").unwrap().port, 443);
        assert_eq!(direct("ws://[::1]:9/x").unwrap().host, "::1");
        assert!(direct("http://x/").is_err());
        assert!(direct("ws:///x").is_err());
        assert!(direct("ws://h:notaport/").is_err());
        assert_eq!(
            upstream_of("ws://10.1.2.3:8443/signal").unwrap(),
            ("10.1.2.3:8443".to_string(), "/signal".to_string())
        );
        assert_eq!(upstream_of("ws://h:1").unwrap().1, "/");
    }
}
