//! `/v1/admin/...`: provisioning App IDs, edges, whitelists, secrets.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{EdgeHeartbeat, Ports, TransportMode};

/// Test (shared small pool) or production (dedicated pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// A shared test pool.
    Test,
    /// A dedicated pool.
    Production,
}

/// Whether an App ID may use the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AppStatus {
    /// Serving.
    Enabled,
    /// Refused with PROXY_NOT_ENABLED.
    Suspended,
}

/// A provisioned App ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct App {
    /// The App ID.
    pub app_id: String,
    /// Display name.
    pub name: String,
    /// App certificate: the secret join tokens are signed with.
    pub certificate: String,
    /// Environment.
    pub environment: Environment,
    /// Enabled transports.
    pub modes: Vec<TransportMode>,
    /// Allowed areas (region codes); empty allows every area.
    pub areas: Vec<String>,
    /// Preferred ISPs (informational for ordering); empty means any.
    pub isps: Vec<String>,
    /// Peak concurrent sessions through the proxy.
    pub max_concurrency: u32,
    /// Edge pool.
    pub pool: String,
    /// Status.
    pub status: AppStatus,
    /// Unix time of creation.
    pub created_at: u64,
}

/// Create an App ID. Omitted fields take defaults: environment test, all modes, every area,
/// any ISP, concurrency 50, pool `test-global`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppCreate {
    /// Display name.
    pub name: String,
    /// Use this App ID instead of a generated one.
    #[serde(default)]
    pub app_id: Option<String>,
    /// Environment.
    #[serde(default)]
    pub environment: Option<Environment>,
    /// Enabled transports.
    #[serde(default)]
    pub modes: Option<Vec<TransportMode>>,
    /// Allowed areas.
    #[serde(default)]
    pub areas: Option<Vec<String>>,
    /// ISPs.
    #[serde(default)]
    pub isps: Option<Vec<String>>,
    /// Peak concurrency.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Edge pool.
    #[serde(default)]
    pub pool: Option<String>,
}

/// Change an App ID; omitted fields stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppUpdate {
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Enabled transports.
    #[serde(default)]
    pub modes: Option<Vec<TransportMode>>,
    /// Allowed areas.
    #[serde(default)]
    pub areas: Option<Vec<String>>,
    /// ISPs.
    #[serde(default)]
    pub isps: Option<Vec<String>>,
    /// Peak concurrency.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Edge pool.
    #[serde(default)]
    pub pool: Option<String>,
    /// Status.
    #[serde(default)]
    pub status: Option<AppStatus>,
}

/// Promote a test App ID to production.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppPromote {
    /// Dedicated pool name; default `prod-<app_id>`.
    #[serde(default)]
    pub pool: Option<String>,
}

/// An edge as the registry sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EdgeInfo {
    /// The last heartbeat.
    pub heartbeat: EdgeHeartbeat,
    /// Unix time of the last heartbeat.
    pub last_seen: u64,
    /// Unix time the lease ends.
    pub lease_expires: u64,
    /// An operator asked it to drain.
    pub drain_requested: bool,
}

/// Concurrency in use for an App ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppUsage {
    /// App ID.
    pub app_id: String,
    /// Sessions holding a lease now.
    pub active_sessions: u32,
    /// The quota.
    pub max_concurrency: u32,
}

/// Output formats of a whitelist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WhitelistFormat {
    /// Aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// JSON array of entries.
    Json,
    /// An nftables ruleset (`nft -f`).
    Nftables,
    /// iptables commands.
    Iptables,
}

/// One firewall rule an enterprise opens (client → proxy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhitelistEntry {
    /// `udp` or `tcp`.
    pub protocol: String,
    /// Destination address.
    pub address: String,
    /// Destination ports.
    pub ports: Ports,
    /// What it is for.
    pub purpose: String,
}

/// Result of a secret rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RotatedSecrets {
    /// New current TURN secret key id.
    pub turn_key_id: String,
    /// New current ticket key id.
    pub ticket_key_id: String,
}
