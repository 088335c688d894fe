//! The control plane's state behind a narrow interface: exactly the operations the service
//! needs, so an embedded file database (one machine, zero set-up) and a distributed engine (a
//! fleet of control replicas) can both sit behind it.
//!
//! Time is an argument (Unix seconds): leases are compared against the caller's `now`, so tests
//! move time without sleeping, and replicas agree as long as their clocks do.

use async_trait::async_trait;
use control_api::{App, EdgeHeartbeat, EdgeInfo, KeyEntry};

pub mod sqlite;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record already exists.
    #[error("already exists: {0}")]
    Conflict(String),
    /// The record does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The backend failed (I/O, corruption, connection).
    #[error("store backend: {0}")]
    Backend(String),
}

/// Which kind of key a secret is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// TURN-REST secrets shared with edges.
    Turn,
    /// Signalling ticket keys shared with edges.
    Ticket,
}

/// A session admitted through the proxy, counted against its App ID's concurrency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Session id (opaque, unguessable).
    pub session: String,
    /// App ID.
    pub app_id: String,
    /// Channel.
    pub channel: String,
    /// User id.
    pub uid: String,
    /// Unix time admitted.
    pub created_at: u64,
    /// Unix time the lease ends unless renewed.
    pub lease_expires: u64,
}

/// The operations the control plane needs from its state.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts a new App ID; [`StoreError::Conflict`] if the id exists.
    async fn create_app(&self, app: &App) -> Result<(), StoreError>;
    /// One App ID.
    async fn app(&self, app_id: &str) -> Result<Option<App>, StoreError>;
    /// Every App ID, sorted by id.
    async fn apps(&self) -> Result<Vec<App>, StoreError>;
    /// Replaces an App ID; [`StoreError::NotFound`] if missing.
    async fn put_app(&self, app: &App) -> Result<(), StoreError>;
    /// Deletes an App ID and its sessions; false if it did not exist.
    async fn delete_app(&self, app_id: &str) -> Result<bool, StoreError>;

    /// Records a heartbeat: the edge's lease now runs to `now + lease_secs`. Returns the stored
    /// record (with `drain_requested` as the operator left it).
    async fn heartbeat(
        &self,
        hb: &EdgeHeartbeat,
        now: u64,
        lease_secs: u64,
    ) -> Result<EdgeInfo, StoreError>;
    /// Every known edge, live or not (the caller compares `lease_expires` with its `now`);
    /// edges whose lease ended more than `forget_after` seconds before `now` are removed.
    async fn edges(&self, now: u64, forget_after: u64) -> Result<Vec<EdgeInfo>, StoreError>;
    /// Marks an edge to drain; false if unknown.
    async fn request_drain(&self, edge_id: &str) -> Result<bool, StoreError>;

    /// Admits `session` if its App ID holds fewer than `max` unexpired sessions at `now`,
    /// atomically with respect to every other admission (also from other replicas). Expired
    /// sessions of the App ID are purged first. Returns false when the quota is full.
    async fn admit(&self, session: &SessionRecord, max: u32, now: u64) -> Result<bool, StoreError>;
    /// Extends the leases of these sessions to `until` (unknown ids are ignored).
    async fn renew(&self, sessions: &[String], until: u64) -> Result<(), StoreError>;
    /// Releases a session; false if unknown.
    async fn release(&self, session: &str) -> Result<bool, StoreError>;
    /// Unexpired sessions of an App ID at `now`.
    async fn active_sessions(&self, app_id: &str, now: u64) -> Result<u32, StoreError>;

    /// Keys of a kind, current first.
    async fn keys(&self, kind: SecretKind) -> Result<Vec<KeyEntry>, StoreError>;
    /// Makes `key` current; older keys stay for verification, at most `keep` in all.
    async fn push_key(
        &self,
        kind: SecretKind,
        key: KeyEntry,
        keep: usize,
    ) -> Result<(), StoreError>;
}
