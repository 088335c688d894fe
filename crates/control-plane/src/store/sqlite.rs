//! [`Store`] on an embedded SQLite file: one machine, zero set-up.
//!
//! Crash safety comes from SQLite itself: the database runs in WAL mode with
//! `synchronous=FULL`, and every write is one transaction, so a process killed mid-write (even
//! with SIGKILL, or a power cut) reopens to the last committed state.
//!
//! One connection sits behind a mutex; every call runs on tokio's blocking pool
//! ([`tokio::task::spawn_blocking`]) so the async runtime never waits on the disk. Admissions use
//! `BEGIN IMMEDIATE`, which takes SQLite's write lock up front, so counting and inserting are
//! atomic with respect to every other writer, in this process or another one sharing the file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use control_api::{App, EdgeHeartbeat, EdgeInfo, KeyEntry};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{SecretKind, SessionRecord, Store, StoreError};

/// The schema version this code writes (`PRAGMA user_version`). A database with a newer version
/// is refused rather than misread.
pub const SCHEMA_VERSION: i64 = 1;

/// The file [`SqliteStore::open`] creates inside its directory.
pub const DB_FILE: &str = "control.db";

/// How long a writer waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS apps (
    app_id TEXT PRIMARY KEY NOT NULL,
    json   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS edges (
    id              TEXT PRIMARY KEY NOT NULL,
    json            TEXT NOT NULL,
    last_seen       INTEGER NOT NULL,
    lease_expires   INTEGER NOT NULL,
    drain_requested INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    session       TEXT PRIMARY KEY NOT NULL,
    app_id        TEXT NOT NULL,
    channel       TEXT NOT NULL,
    uid           TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    lease_expires INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_app_lease ON sessions (app_id, lease_expires);
CREATE TABLE IF NOT EXISTS keys (
    kind   TEXT NOT NULL,
    key_id TEXT NOT NULL,
    secret TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (kind, key_id)
);
";

/// The control plane's state in one SQLite database file.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/control.db`, creating `dir` too. Fails with
    /// [`StoreError::Backend`] if the file is not a database this code can use, including one
    /// written by a newer version.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Backend(format!("creating store directory {}: {e}", dir.display()))
        })?;
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path)
            .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
        let journal: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| StoreError::Backend(format!("{}: enabling WAL: {e}", path.display())))?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "{}: journal mode is {journal}, WAL is required",
                path.display()
            )));
        }
        Self::init(conn, Some(path))
    }

    /// A private database in memory, gone when the store is dropped (tests).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(db)?;
        Self::init(conn, None)
    }

    /// The database file, `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn init(mut conn: Connection, path: Option<PathBuf>) -> Result<Self, StoreError> {
        let place = path
            .as_ref()
            .map_or_else(|| ":memory:".to_owned(), |p| p.display().to_string());
        let fail =
            |what: &str, e: rusqlite::Error| StoreError::Backend(format!("{place}: {what}: {e}"));
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| fail("setting busy_timeout", e))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| fail("setting synchronous", e))?;
        // The version check and the schema creation happen under the write lock, so two
        // processes opening a fresh file at once do not race.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| fail("locking for schema set-up", e))?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|e| fail("reading schema version", e))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Backend(format!(
                "{place}: schema version {version} is newer than this build understands \
                 ({SCHEMA_VERSION}); upgrade cloudproxy or restore an older database"
            )));
        }
        tx.execute_batch(SCHEMA)
            .map_err(|e| fail("creating schema", e))?;
        if version < SCHEMA_VERSION {
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(|e| fail("writing schema version", e))?;
        }
        tx.commit().map_err(|e| fail("committing schema", e))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock leaves the connection usable: the transaction it was
            // in rolled back when it was dropped during unwinding.
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }

    /// Runs `f` inside one write transaction (`BEGIN IMMEDIATE`), committing if it succeeds.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let out = f(&tx)?;
            tx.commit().map_err(db)?;
            Ok(out)
        })
        .await
    }

    /// As [`Self::write`] for session leases, committed with `synchronous=NORMAL`: in WAL mode
    /// that is still atomic and survives a killed process; only a power cut may lose the last
    /// few lease changes (never corrupt the file), which a lease system tolerates by design —
    /// an admission lost that way frees its slot early, as an expired lease would. It saves an
    /// fsync per admission, the cost that bounds the proxy-info rate. Apps, edges and keys stay
    /// on `FULL`.
    async fn write_lease<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.with_conn(move |conn| {
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(db)?;
            let result = (|| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db)?;
                let out = f(&tx)?;
                tx.commit().map_err(db)?;
                Ok(out)
            })();
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(db)?;
            result
        })
        .await
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {e}"))
}

/// Unix times and counts are `u64`; SQLite integers are `i64`. Values beyond `i64::MAX` (never
/// real times) saturate.
fn to_sql(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn from_sql(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn kind_name(kind: SecretKind) -> &'static str {
    match kind {
        SecretKind::Turn => "turn",
        SecretKind::Ticket => "ticket",
    }
}

fn encode<T: serde::Serialize>(what: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("encoding {what}: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(
    what: &str,
    id: &str,
    json: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Backend(format!("decoding {what} {id}: {e}")))
}

fn edge_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, i64, i64, bool)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn edge_info(
    (id, json, last_seen, lease_expires, drain_requested): (String, String, i64, i64, bool),
) -> Result<EdgeInfo, StoreError> {
    Ok(EdgeInfo {
        heartbeat: decode("edge", &id, &json)?,
        last_seen: from_sql(last_seen),
        lease_expires: from_sql(lease_expires),
        drain_requested,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_app(&self, app: &App) -> Result<(), StoreError> {
        let id = app.app_id.clone();
        let json = encode("app", app)?;
        self.write(move |tx| {
            let n = tx
                .execute(
                    "INSERT INTO apps (app_id, json) VALUES (?1, ?2) ON CONFLICT (app_id) DO NOTHING",
                    params![id, json],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::Conflict(format!("app {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn app(&self, app_id: &str) -> Result<Option<App>, StoreError> {
        let id = app_id.to_owned();
        self.with_conn(move |conn| {
            let json: Option<String> = conn
                .query_row(
                    "SELECT json FROM apps WHERE app_id = ?1",
                    params![id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(db)?;
            json.map(|j| decode("app", &id, &j)).transpose()
        })
        .await
    }

    async fn apps(&self) -> Result<Vec<App>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare("SELECT app_id, json FROM apps ORDER BY app_id")
                .map_err(db)?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, json) = row.map_err(db)?;
                out.push(decode("app", &id, &json)?);
            }
            Ok(out)
        })
        .await
    }

    async fn put_app(&self, app: &App) -> Result<(), StoreError> {
        let id = app.app_id.clone();
        let json = encode("app", app)?;
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE apps SET json = ?2 WHERE app_id = ?1",
                    params![id, json],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("app {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn delete_app(&self, app_id: &str) -> Result<bool, StoreError> {
        let id = app_id.to_owned();
        self.write(move |tx| {
            tx.execute("DELETE FROM sessions WHERE app_id = ?1", params![id])
                .map_err(db)?;
            let n = tx
                .execute("DELETE FROM apps WHERE app_id = ?1", params![id])
                .map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn heartbeat(
        &self,
        hb: &EdgeHeartbeat,
        now: u64,
        lease_secs: u64,
    ) -> Result<EdgeInfo, StoreError> {
        let id = hb.id.clone();
        let json = encode("edge", hb)?;
        let last_seen = to_sql(now);
        let lease_expires = to_sql(now.saturating_add(lease_secs));
        self.write(move |tx| {
            let row = tx
                .query_row(
                    "INSERT INTO edges (id, json, last_seen, lease_expires, drain_requested)
                     VALUES (?1, ?2, ?3, ?4, 0)
                     ON CONFLICT (id) DO UPDATE SET
                         json = excluded.json,
                         last_seen = excluded.last_seen,
                         lease_expires = excluded.lease_expires
                     RETURNING id, json, last_seen, lease_expires, drain_requested",
                    params![id, json, last_seen, lease_expires],
                    edge_from_row,
                )
                .map_err(db)?;
            edge_info(row)
        })
        .await
    }

    async fn edges(&self, now: u64, forget_after: u64) -> Result<Vec<EdgeInfo>, StoreError> {
        self.write(move |tx| {
            // lease_expires + forget_after < now, without overflowing the addition.
            if let Some(cutoff) = now.checked_sub(forget_after) {
                tx.execute("DELETE FROM edges WHERE lease_expires < ?1", params![to_sql(cutoff)])
                    .map_err(db)?;
            }
            let mut stmt = tx
                .prepare(
                    "SELECT id, json, last_seen, lease_expires, drain_requested FROM edges ORDER BY id",
                )
                .map_err(db)?;
            let rows = stmt.query_map([], edge_from_row).map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(edge_info(row.map_err(db)?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn request_drain(&self, edge_id: &str) -> Result<bool, StoreError> {
        let id = edge_id.to_owned();
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE edges SET drain_requested = 1 WHERE id = ?1",
                    params![id],
                )
                .map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn admit(&self, session: &SessionRecord, max: u32, now: u64) -> Result<bool, StoreError> {
        let s = session.clone();
        let now = to_sql(now);
        self.write_lease(move |tx| {
            tx.execute(
                "DELETE FROM sessions WHERE app_id = ?1 AND lease_expires <= ?2",
                params![s.app_id, now],
            )
            .map_err(db)?;
            let exists: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM sessions WHERE session = ?1)",
                    params![s.session],
                    |row| row.get(0),
                )
                .map_err(db)?;
            if exists {
                return Err(StoreError::Conflict(format!("session {}", s.session)));
            }
            let count: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM sessions WHERE app_id = ?1",
                    params![s.app_id],
                    |row| row.get(0),
                )
                .map_err(db)?;
            if count >= i64::from(max) {
                // Still commit: the purge of expired sessions is worth keeping.
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO sessions (session, app_id, channel, uid, created_at, lease_expires)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    s.session,
                    s.app_id,
                    s.channel,
                    s.uid,
                    to_sql(s.created_at),
                    to_sql(s.lease_expires)
                ],
            )
            .map_err(db)?;
            Ok(true)
        })
        .await
    }

    async fn renew(&self, sessions: &[String], until: u64) -> Result<(), StoreError> {
        if sessions.is_empty() {
            return Ok(());
        }
        let ids = sessions.to_vec();
        let until = to_sql(until);
        self.write_lease(move |tx| {
            // MAX: a renewal never shortens a lease another renewal already extended.
            let mut stmt = tx
                .prepare(
                    "UPDATE sessions SET lease_expires = MAX(lease_expires, ?2) WHERE session = ?1",
                )
                .map_err(db)?;
            for id in &ids {
                stmt.execute(params![id, until]).map_err(db)?;
            }
            Ok(())
        })
        .await
    }

    async fn release(&self, session: &str) -> Result<bool, StoreError> {
        let id = session.to_owned();
        self.write_lease(move |tx| {
            let n = tx
                .execute("DELETE FROM sessions WHERE session = ?1", params![id])
                .map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn active_sessions(&self, app_id: &str, now: u64) -> Result<u32, StoreError> {
        let id = app_id.to_owned();
        let now = to_sql(now);
        self.with_conn(move |conn| {
            let count: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM sessions WHERE app_id = ?1 AND lease_expires > ?2",
                    params![id, now],
                    |row| row.get(0),
                )
                .map_err(db)?;
            Ok(u32::try_from(count).unwrap_or(u32::MAX))
        })
        .await
    }

    async fn keys(&self, kind: SecretKind) -> Result<Vec<KeyEntry>, StoreError> {
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare("SELECT key_id, secret FROM keys WHERE kind = ?1 ORDER BY seq DESC")
                .map_err(db)?;
            let rows = stmt
                .query_map(params![kind_name(kind)], |row| {
                    Ok(KeyEntry {
                        key_id: row.get(0)?,
                        secret: row.get(1)?,
                    })
                })
                .map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
        })
        .await
    }

    async fn push_key(
        &self,
        kind: SecretKind,
        key: KeyEntry,
        keep: usize,
    ) -> Result<(), StoreError> {
        // The key just pushed is always kept, whatever `keep` says.
        let keep = i64::try_from(keep.max(1)).unwrap_or(i64::MAX);
        self.write(move |tx| {
            let kind = kind_name(kind);
            let seq: i64 = tx
                .query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM keys WHERE kind = ?1", params![kind], |row| {
                    row.get(0)
                })
                .map_err(db)?;
            // Pushing a key id again replaces its secret and makes it current.
            tx.execute(
                "INSERT INTO keys (kind, key_id, secret, seq) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, key_id) DO UPDATE SET secret = excluded.secret, seq = excluded.seq",
                params![kind, key.key_id, key.secret, seq],
            )
            .map_err(db)?;
            tx.execute(
                "DELETE FROM keys WHERE kind = ?1 AND seq NOT IN
                     (SELECT seq FROM keys WHERE kind = ?1 ORDER BY seq DESC LIMIT ?2)",
                params![kind, keep],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }
}
