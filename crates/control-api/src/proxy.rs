//! `POST /v1/proxy`: what a client asks before it joins, and what it gets.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Ports, TransportMode};

/// Proxy-info request (ARCHITECTURE §1, steps 1–2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyRequest {
    /// App ID.
    pub app_id: String,
    /// Channel name.
    pub channel: String,
    /// User id within the channel.
    pub uid: String,
    /// Transport the client will use.
    pub mode: TransportMode,
    /// Area hint (region code such as `CN` or `EU`); default: from the client's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// ISP hint; default: from the client's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isp: Option<String>,
    /// Join token signed with the App ID's certificate.
    pub token: String,
}

/// One ICE server entry, ready for `RTCPeerConnection`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IceServer {
    /// `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN username.
    pub username: String,
    /// TURN password.
    pub credential: String,
}

/// An edge offered to the client, in order of preference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EdgeOffer {
    /// Edge id.
    pub id: String,
    /// Region code.
    pub region: String,
    /// ISP name.
    pub isp: String,
    /// Public address clients connect to.
    pub address: String,
    /// UDP TURN ports.
    pub udp_ports: Ports,
    /// TCP TURN ports.
    pub tcp_ports: Ports,
    /// TLS port (TURN-TLS and WSS), if the edge serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_port: Option<u16>,
    /// Plain signalling relay port, if the edge serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_port: Option<u16>,
    /// ICE servers for the requested mode.
    pub ice_servers: Vec<IceServer>,
}

/// Short-lived TURN credentials (ARCHITECTURE §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TurnCredential {
    /// `<expiry>:<key-id>:<session>`.
    pub username: String,
    /// base64(HMAC-SHA1(secret, username)).
    pub password: String,
    /// Unix time the credential stops admitting new allocations.
    pub expires_at: u64,
}

/// Proxy-info answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProxyResponse {
    /// Session id; `DELETE /v1/proxy/{session}` releases it.
    pub session: String,
    /// Unix time the session's lease ends unless an edge reports traffic for it.
    pub expires_at: u64,
    /// Edges, best first (at least two when the pool has them).
    pub edges: Vec<EdgeOffer>,
    /// TURN credentials valid on every offered edge.
    pub turn: TurnCredential,
    /// Signed signalling ticket for the edges' relay.
    pub ticket: String,
    /// The media network's signalling gateways (`host:port`, best first) the ticket admits:
    /// the client asks an edge's relay for `/ws?upstream=<one of these>&ticket=...`.
    #[serde(default)]
    pub signal_upstreams: Vec<String>,
    /// The mode the answer is for.
    pub mode: TransportMode,
}
