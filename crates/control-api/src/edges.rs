//! `POST /v1/edges/heartbeat`: edges register and renew their lease.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Ports;

/// Load an edge reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EdgeLoad {
    /// Allocations alive now.
    pub allocations: u64,
    /// Relayed bits per second, both directions, averaged over the last interval.
    pub bandwidth_bps: u64,
}

/// What an edge says about itself every few seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EdgeHeartbeat {
    /// Stable edge id.
    pub id: String,
    /// Pool the edge serves.
    pub pool: String,
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
    /// TLS port.
    #[serde(default)]
    pub tls_port: Option<u16>,
    /// Plain signalling port.
    #[serde(default)]
    pub signal_port: Option<u16>,
    /// Relay addresses (edge → RTN side).
    pub relay_ips: Vec<String>,
    /// Current load.
    pub load: EdgeLoad,
    /// The edge is draining: keep it out of answers.
    pub draining: bool,
    /// Software version.
    pub version: String,
    /// Sessions with allocations on the edge now: their leases are renewed.
    #[serde(default)]
    pub sessions: Vec<String>,
}

/// A key with its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyEntry {
    /// Key id.
    pub key_id: String,
    /// The secret.
    pub secret: String,
}

/// The control plane's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    /// Send the next heartbeat within this many seconds or be taken out of answers.
    pub lease_secs: u64,
    /// TURN-REST secrets, current first.
    pub turn_secrets: Vec<KeyEntry>,
    /// Signalling ticket keys, current first.
    pub ticket_keys: Vec<KeyEntry>,
    /// The operator asked this edge to drain.
    pub drain: bool,
}
