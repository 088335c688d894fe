//! The control plane's HTTP interface as Rust types (ARCHITECTURE §9). The server, the edge's
//! registry client, the CLI and the SDKs all use these; the OpenAPI document served at
//! `/openapi.json` is generated from them, and the web SDK's types are generated from that.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admin;
mod edges;
mod error;
mod proxy;

pub use admin::*;
pub use edges::*;
pub use error::*;
pub use proxy::*;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A transport the proxy can carry media over. SDK modes map to these: 3 → `udp`,
/// 4 → `tcp`, 5 → `tls`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TransportMode {
    /// TURN over UDP (media ports UDP 3478–3500).
    Udp,
    /// TURN over TCP (media ports TCP 3433–3460), signalling over TCP 4000.
    Tcp,
    /// Everything over TLS on TCP 443.
    Tls,
}

impl TransportMode {
    /// The SDK mode number.
    pub fn sdk_mode(self) -> u8 {
        match self {
            TransportMode::Udp => 3,
            TransportMode::Tcp => 4,
            TransportMode::Tls => 5,
        }
    }

    /// All modes.
    pub const ALL: [TransportMode; 3] =
        [TransportMode::Udp, TransportMode::Tcp, TransportMode::Tls];
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ports {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

impl std::fmt::Display for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}
