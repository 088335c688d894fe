//! Server settings, with the defaults and what they are tuned for.

use std::time::Duration;

use crate::codec::Family;

/// Settings of one [`super::Server`] (one shard of an edge).
///
/// The defaults follow RFC 8656 where it names a value (lifetimes) and otherwise suit a
/// proxy edge serving a few thousand concurrent calls: generous enough for a browser with
/// audio, video and screen share (a handful of permissions and channels each), tight enough
/// that one credential cannot take the box.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// REALM sent in challenges and used in the long-term key.
    pub realm: String,
    /// Secret for stateless nonces. Every edge that should accept another's nonces shares it.
    pub nonce_key: Vec<u8>,
    /// How long a nonce stays valid (default 1 hour). A stale nonce costs the client one
    /// round trip (438), so short values cost little.
    pub nonce_lifetime: Duration,
    /// Lifetime granted when the client asks for less or nothing (RFC 8656: 600 s).
    pub default_lifetime: Duration,
    /// Longest lifetime granted (default 3600 s, RFC 8656's recommendation).
    pub max_lifetime: Duration,
    /// Permission lifetime (RFC 8656: 300 s, not configurable by clients).
    pub permission_lifetime: Duration,
    /// Channel binding lifetime (RFC 8656: 600 s).
    pub channel_lifetime: Duration,
    /// How long a TCP peer connection waits for ConnectionBind (RFC 6062: 30 s).
    pub connection_bind_timeout: Duration,
    /// Address families this edge has relay addresses for.
    pub relay_families: Vec<Family>,
    /// Allocations one user (REST session or static user) may hold at once.
    pub max_allocations_per_user: u32,
    /// Permissions per allocation.
    pub max_permissions_per_allocation: usize,
    /// Channels per allocation.
    pub max_channels_per_allocation: usize,
    /// TCP peer connections per allocation (RFC 6062).
    pub max_connections_per_allocation: usize,
    /// Shard number, stamped into the top byte of RFC 6062 connection ids so the I/O layer can
    /// route a ConnectionBind that lands on another shard.
    pub shard: u8,
    /// Add FINGERPRINT to every response, not only to answers of fingerprinted requests.
    pub always_fingerprint: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            realm: "cloudproxy".to_owned(),
            nonce_key: b"change-me".to_vec(),
            nonce_lifetime: Duration::from_secs(3600),
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            permission_lifetime: Duration::from_secs(300),
            channel_lifetime: Duration::from_secs(600),
            connection_bind_timeout: Duration::from_secs(30),
            relay_families: vec![Family::V4],
            max_allocations_per_user: 10,
            max_permissions_per_allocation: 32,
            max_channels_per_allocation: 32,
            max_connections_per_allocation: 32,
            shard: 0,
            always_fingerprint: false,
        }
    }
}
