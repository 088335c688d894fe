//! The SQLite store: every `Store` operation, atomic admission under concurrency, persistence
//! across reopen, refusal of newer schemas, and survival of a SIGKILL mid-write.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use control_api::{
    App, AppStatus, EdgeHeartbeat, EdgeLoad, Environment, KeyEntry, Ports, TransportMode,
};
use control_plane::store::sqlite::{SqliteStore, DB_FILE, SCHEMA_VERSION};
use control_plane::store::{SecretKind, SessionRecord, Store, StoreError};

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "cloudproxy-store-{tag}-{}-{nanos}-{n}",
            std::process::id()
        ));
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn app(id: &str) -> App {
    App {
        app_id: id.to_owned(),
        name: format!("app {id}"),
        certificate: format!("cert-{id}"),
        environment: Environment::Test,
        modes: TransportMode::ALL.to_vec(),
        areas: vec!["EU".to_owned()],
        isps: Vec::new(),
        max_concurrency: 50,
        pool: "test-global".to_owned(),
        status: AppStatus::Enabled,
        created_at: 1_700_000_000,
    }
}

fn heartbeat(id: &str, allocations: u64) -> EdgeHeartbeat {
    EdgeHeartbeat {
        id: id.to_owned(),
        pool: "test-global".to_owned(),
        region: "EU".to_owned(),
        isp: "any".to_owned(),
        address: "192.0.2.10".to_owned(),
        udp_ports: Ports {
            first: 3478,
            last: 3478,
        },
        tcp_ports: Ports {
            first: 3478,
            last: 3479,
        },
        tls_port: Some(443),
        signal_port: None,
        relay_ips: vec!["198.51.100.1".to_owned()],
        load: EdgeLoad {
            allocations,
            bandwidth_bps: 1000,
        },
        draining: false,
        version: "0.1.0".to_owned(),
        sessions: vec!["s1".to_owned()],
    }
}

fn session(id: &str, app_id: &str, now: u64, lease: u64) -> SessionRecord {
    SessionRecord {
        session: id.to_owned(),
        app_id: app_id.to_owned(),
        channel: "ch".to_owned(),
        uid: format!("uid-{id}"),
        created_at: now,
        lease_expires: now + lease,
    }
}

fn key(id: &str) -> KeyEntry {
    KeyEntry {
        key_id: id.to_owned(),
        secret: format!("secret-{id}"),
    }
}

fn key_ids(keys: &[KeyEntry]) -> Vec<&str> {
    keys.iter().map(|k| k.key_id.as_str()).collect()
}

#[tokio::test]
async fn app_crud() {
    let store = SqliteStore::open_in_memory().unwrap();
    assert_eq!(store.app("a").await.unwrap(), None);
    assert!(store.apps().await.unwrap().is_empty());

    store.create_app(&app("b")).await.unwrap();
    store.create_app(&app("a")).await.unwrap();
    let err = store.create_app(&app("a")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    assert_eq!(store.app("a").await.unwrap(), Some(app("a")));
    let ids: Vec<String> = store
        .apps()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.app_id)
        .collect();
    assert_eq!(ids, ["a", "b"]);

    let mut changed = app("a");
    changed.status = AppStatus::Suspended;
    changed.max_concurrency = 3;
    changed.environment = Environment::Production;
    store.put_app(&changed).await.unwrap();
    assert_eq!(store.app("a").await.unwrap(), Some(changed));

    let err = store.put_app(&app("missing")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.app("missing").await.unwrap(), None);

    assert!(store.delete_app("a").await.unwrap());
    assert!(!store.delete_app("a").await.unwrap());
    assert_eq!(store.app("a").await.unwrap(), None);
    assert_eq!(store.apps().await.unwrap(), vec![app("b")]);
}

#[tokio::test]
async fn delete_app_deletes_its_sessions() {
    let store = SqliteStore::open_in_memory().unwrap();
    store.create_app(&app("a")).await.unwrap();
    store.create_app(&app("b")).await.unwrap();
    for i in 0..3 {
        assert!(store
            .admit(&session(&format!("a{i}"), "a", 100, 60), 10, 100)
            .await
            .unwrap());
    }
    assert!(store
        .admit(&session("b0", "b", 100, 60), 10, 100)
        .await
        .unwrap());
    assert!(store.delete_app("a").await.unwrap());
    assert_eq!(store.active_sessions("a", 100).await.unwrap(), 0);
    assert_eq!(store.active_sessions("b", 100).await.unwrap(), 1);
    assert!(
        !store.release("a0").await.unwrap(),
        "the session went with its app"
    );
}

#[tokio::test]
async fn heartbeat_upserts_and_keeps_drain_flag() {
    let store = SqliteStore::open_in_memory().unwrap();
    let info = store.heartbeat(&heartbeat("e1", 1), 100, 30).await.unwrap();
    assert_eq!(info.heartbeat, heartbeat("e1", 1));
    assert_eq!(
        (info.last_seen, info.lease_expires, info.drain_requested),
        (100, 130, false)
    );

    assert!(store.request_drain("e1").await.unwrap());
    assert!(!store.request_drain("nope").await.unwrap());

    let info = store.heartbeat(&heartbeat("e1", 5), 110, 30).await.unwrap();
    assert_eq!(info.heartbeat.load.allocations, 5);
    assert_eq!((info.last_seen, info.lease_expires), (110, 140));
    assert!(
        info.drain_requested,
        "a re-heartbeat must not clear the operator's drain request"
    );

    let edges = store.edges(110, 60).await.unwrap();
    assert_eq!(edges, vec![info]);
}

#[tokio::test]
async fn edges_sorted_and_forgotten_after_forget_after() {
    let store = SqliteStore::open_in_memory().unwrap();
    store.heartbeat(&heartbeat("b", 0), 200, 30).await.unwrap(); // lease to 230
    store.heartbeat(&heartbeat("a", 0), 110, 30).await.unwrap(); // lease to 140
    store.heartbeat(&heartbeat("c", 0), 200, 30).await.unwrap();

    let ids = |edges: Vec<control_api::EdgeInfo>| -> Vec<String> {
        edges.into_iter().map(|e| e.heartbeat.id).collect()
    };
    // Expired but within forget_after: still listed (the caller decides liveness).
    assert_eq!(ids(store.edges(200, 60).await.unwrap()), ["a", "b", "c"]);
    // 140 + 60 < 201: forgotten, and for good.
    assert_eq!(ids(store.edges(201, 60).await.unwrap()), ["b", "c"]);
    assert_eq!(ids(store.edges(0, 60).await.unwrap()), ["b", "c"]);
    assert!(!store.request_drain("a").await.unwrap());
    // now < forget_after must not underflow.
    assert_eq!(ids(store.edges(10, u64::MAX).await.unwrap()), ["b", "c"]);
    assert!(store.edges(10_000, 0).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admit_is_atomic_under_concurrency() {
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    store.create_app(&app("a")).await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .admit(&session(&format!("s{i}"), "a", 1000, 60), 7, 1000)
                    .await
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 7);
    assert_eq!(store.active_sessions("a", 1000).await.unwrap(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admit_is_atomic_across_connections_to_one_file() {
    // Two stores on one file stand in for two processes: BEGIN IMMEDIATE serialises them.
    let dir = TempDir::new("two-conns");
    let one = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let two = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = Arc::clone(if i % 2 == 0 { &one } else { &two });
            tokio::spawn(async move {
                store
                    .admit(&session(&format!("s{i}"), "a", 1000, 60), 5, 1000)
                    .await
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5);
    assert_eq!(one.active_sessions("a", 1000).await.unwrap(), 5);
}

#[tokio::test]
async fn duplicate_session_is_a_conflict() {
    let store = SqliteStore::open_in_memory().unwrap();
    assert!(store
        .admit(&session("s", "a", 100, 60), 5, 100)
        .await
        .unwrap());
    let err = store
        .admit(&session("s", "a", 100, 60), 5, 100)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.active_sessions("a", 100).await.unwrap(), 1);
}

#[tokio::test]
async fn expired_sessions_free_slots() {
    let store = SqliteStore::open_in_memory().unwrap();
    assert!(store
        .admit(&session("s1", "a", 100, 60), 2, 100)
        .await
        .unwrap()); // to 160
    assert!(store
        .admit(&session("s2", "a", 110, 60), 2, 110)
        .await
        .unwrap()); // to 170
    assert!(!store
        .admit(&session("s3", "a", 150, 60), 2, 150)
        .await
        .unwrap());
    // Other App IDs have their own quota.
    assert!(store
        .admit(&session("t1", "b", 150, 60), 2, 150)
        .await
        .unwrap());

    assert_eq!(store.active_sessions("a", 159).await.unwrap(), 2);
    assert_eq!(
        store.active_sessions("a", 160).await.unwrap(),
        1,
        "a lease ending at now is over"
    );
    // At 160, s1's lease has ended: its slot is free.
    assert!(store
        .admit(&session("s3", "a", 160, 60), 2, 160)
        .await
        .unwrap());
    assert!(!store
        .admit(&session("s4", "a", 160, 60), 2, 160)
        .await
        .unwrap());
    assert!(
        !store.release("s1").await.unwrap(),
        "purged by the admission"
    );
    assert_eq!(store.active_sessions("a", 170).await.unwrap(), 1);
    assert_eq!(store.active_sessions("b", 170).await.unwrap(), 1);
    // max 0 admits nothing.
    assert!(!store
        .admit(&session("z", "c", 100, 60), 0, 100)
        .await
        .unwrap());
}

#[tokio::test]
async fn renew_extends_leases() {
    let store = SqliteStore::open_in_memory().unwrap();
    assert!(store
        .admit(&session("s1", "a", 100, 60), 2, 100)
        .await
        .unwrap()); // to 160
    assert!(store
        .admit(&session("s2", "a", 100, 60), 2, 100)
        .await
        .unwrap()); // to 160
    store
        .renew(&["s1".to_owned(), "unknown".to_owned()], 300)
        .await
        .unwrap();
    store.renew(&[], 300).await.unwrap();
    assert_eq!(store.active_sessions("a", 200).await.unwrap(), 1);
    // A later, shorter renewal does not cut the lease.
    store.renew(&["s1".to_owned()], 250).await.unwrap();
    assert_eq!(store.active_sessions("a", 299).await.unwrap(), 1);
    assert_eq!(store.active_sessions("a", 300).await.unwrap(), 0);
    // s2 expired at 160, so there is room for one more at 200, not two.
    assert!(store
        .admit(&session("s3", "a", 200, 60), 2, 200)
        .await
        .unwrap());
    assert!(!store
        .admit(&session("s4", "a", 200, 60), 2, 200)
        .await
        .unwrap());
}

#[tokio::test]
async fn release_frees_a_slot() {
    let store = SqliteStore::open_in_memory().unwrap();
    assert!(store
        .admit(&session("s1", "a", 100, 60), 1, 100)
        .await
        .unwrap());
    assert!(!store
        .admit(&session("s2", "a", 100, 60), 1, 100)
        .await
        .unwrap());
    assert!(store.release("s1").await.unwrap());
    assert!(!store.release("s1").await.unwrap());
    assert_eq!(store.active_sessions("a", 100).await.unwrap(), 0);
    assert!(store
        .admit(&session("s2", "a", 100, 60), 1, 100)
        .await
        .unwrap());
}

#[tokio::test]
async fn keys_current_first_and_keep() {
    let store = SqliteStore::open_in_memory().unwrap();
    assert!(store.keys(SecretKind::Turn).await.unwrap().is_empty());
    store
        .push_key(SecretKind::Turn, key("t1"), 3)
        .await
        .unwrap();
    store
        .push_key(SecretKind::Turn, key("t2"), 3)
        .await
        .unwrap();
    store
        .push_key(SecretKind::Ticket, key("k1"), 3)
        .await
        .unwrap();
    store
        .push_key(SecretKind::Turn, key("t3"), 3)
        .await
        .unwrap();
    let turn = store.keys(SecretKind::Turn).await.unwrap();
    assert_eq!(key_ids(&turn), ["t3", "t2", "t1"]);
    assert_eq!(turn[0], key("t3"));
    assert_eq!(
        key_ids(&store.keys(SecretKind::Ticket).await.unwrap()),
        ["k1"]
    );

    // A fourth key with keep 3 drops the oldest.
    store
        .push_key(SecretKind::Turn, key("t4"), 3)
        .await
        .unwrap();
    assert_eq!(
        key_ids(&store.keys(SecretKind::Turn).await.unwrap()),
        ["t4", "t3", "t2"]
    );
    // Lowering keep trims to it.
    store
        .push_key(SecretKind::Turn, key("t5"), 2)
        .await
        .unwrap();
    assert_eq!(
        key_ids(&store.keys(SecretKind::Turn).await.unwrap()),
        ["t5", "t4"]
    );
    // Pushing an existing id again makes it current with the new secret.
    let again = KeyEntry {
        key_id: "t4".to_owned(),
        secret: "rotated".to_owned(),
    };
    store
        .push_key(SecretKind::Turn, again.clone(), 2)
        .await
        .unwrap();
    assert_eq!(
        store.keys(SecretKind::Turn).await.unwrap(),
        vec![again, key("t5")]
    );
    // keep 0 still keeps the key just pushed.
    store
        .push_key(SecretKind::Turn, key("t6"), 0)
        .await
        .unwrap();
    assert_eq!(
        key_ids(&store.keys(SecretKind::Turn).await.unwrap()),
        ["t6"]
    );
    // The other kind is untouched.
    assert_eq!(
        key_ids(&store.keys(SecretKind::Ticket).await.unwrap()),
        ["k1"]
    );
}

#[tokio::test]
async fn state_persists_across_reopen() {
    let tmp = TempDir::new("persist");
    let dir = tmp.path().join("nested").join("state");
    {
        let store = SqliteStore::open(&dir).unwrap();
        assert_eq!(store.path(), Some(dir.join(DB_FILE).as_path()));
        store.create_app(&app("a")).await.unwrap();
        store.create_app(&app("b")).await.unwrap();
        store
            .push_key(SecretKind::Turn, key("t1"), 3)
            .await
            .unwrap();
        store
            .push_key(SecretKind::Turn, key("t2"), 3)
            .await
            .unwrap();
        store
            .push_key(SecretKind::Ticket, key("k1"), 3)
            .await
            .unwrap();
        assert!(store
            .admit(&session("s1", "a", 100, 60), 5, 100)
            .await
            .unwrap());
        assert!(store
            .admit(&session("s2", "a", 100, 60), 5, 100)
            .await
            .unwrap());
        store.heartbeat(&heartbeat("e1", 2), 100, 30).await.unwrap();
        assert!(store.request_drain("e1").await.unwrap());
    }
    assert!(dir.join(DB_FILE).is_file());

    let store = SqliteStore::open(&dir).unwrap();
    assert_eq!(store.apps().await.unwrap(), vec![app("a"), app("b")]);
    assert_eq!(
        key_ids(&store.keys(SecretKind::Turn).await.unwrap()),
        ["t2", "t1"]
    );
    assert_eq!(
        store.keys(SecretKind::Ticket).await.unwrap(),
        vec![key("k1")]
    );
    assert_eq!(store.active_sessions("a", 100).await.unwrap(), 2);
    assert!(matches!(
        store.admit(&session("s1", "a", 100, 60), 5, 100).await,
        Err(StoreError::Conflict(_))
    ));
    let edges = store.edges(100, 60).await.unwrap();
    assert_eq!(edges.len(), 1);
    assert!(edges[0].drain_requested);
    assert_eq!(edges[0].heartbeat, heartbeat("e1", 2));
    drop(store);

    // The file is in WAL mode and carries the schema version.
    let raw = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    let version: i64 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[tokio::test]
async fn newer_schema_version_is_refused() {
    let tmp = TempDir::new("newer");
    {
        let store = SqliteStore::open(tmp.path()).unwrap();
        store.create_app(&app("a")).await.unwrap();
    }
    {
        let raw = rusqlite::Connection::open(tmp.path().join(DB_FILE)).unwrap();
        raw.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    match SqliteStore::open(tmp.path()) {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("newer"), "{msg}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Refusing did not touch the data: back at the known version it opens again.
    {
        let raw = rusqlite::Connection::open(tmp.path().join(DB_FILE)).unwrap();
        raw.pragma_update(None, "user_version", SCHEMA_VERSION)
            .unwrap();
    }
    let store = SqliteStore::open(tmp.path()).unwrap();
    assert_eq!(store.apps().await.unwrap(), vec![app("a")]);
}

#[tokio::test]
async fn garbage_file_is_refused() {
    let tmp = TempDir::new("garbage");
    std::fs::create_dir_all(tmp.path()).unwrap();
    std::fs::write(tmp.path().join(DB_FILE), vec![0x5a; 8192]).unwrap();
    let err = SqliteStore::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
}

/// Set in the child process of [`survives_sigkill_mid_write`]: the directory to write into.
const CRASH_ENV: &str = "CLOUDPROXY_STORE_CRASH_CHILD_DIR";
const CRASH_CHILD: &str = "crash_child_writes_until_killed";
const CRASH_MARKER: &str = "crash-child: writing";

/// Not a test on its own: without [`CRASH_ENV`] it returns at once. In the child process it
/// writes apps (with a large name, so each commit spans several pages) until it is killed.
#[tokio::test]
async fn crash_child_writes_until_killed() {
    let Some(dir) = std::env::var_os(CRASH_ENV) else {
        return;
    };
    let store = SqliteStore::open(Path::new(&dir)).unwrap();
    let filler = "x".repeat(8000);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut i = 0u64;
    while std::time::Instant::now() < deadline {
        let mut a = app(&format!("crash-{i:08}"));
        a.name = format!("{i}-{filler}");
        store.create_app(&a).await.unwrap();
        store
            .push_key(SecretKind::Turn, key(&format!("k{i}")), 3)
            .await
            .unwrap();
        if i == 0 {
            println!("{CRASH_MARKER}");
        }
        i += 1;
    }
}

#[test]
fn survives_sigkill_mid_write() {
    let tmp = TempDir::new("crash");
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args(["--exact", CRASH_CHILD, "--nocapture", "--test-threads=1"])
        .env(CRASH_ENV, tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("re-running the test binary");
    let stdout = child.stdout.take().unwrap();
    let mut started = false;
    for line in BufReader::new(stdout).lines() {
        if line.expect("child stdout").contains(CRASH_MARKER) {
            started = true;
            break;
        }
    }
    assert!(
        started,
        "the child never started writing: {:?}",
        child.wait()
    );
    std::thread::sleep(Duration::from_millis(300));
    child.kill().expect("SIGKILL the writer");
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the child was killed, not finished: {status:?}"
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(tmp.path()).expect("reopens after SIGKILL");
        let apps = store.apps().await.expect("every app decodes");
        assert!(!apps.is_empty(), "the child committed at least one app");
        for (i, a) in apps.iter().enumerate() {
            assert_eq!(
                a.app_id,
                format!("crash-{i:08}"),
                "committed apps form a prefix"
            );
            assert!(a.name.starts_with(&format!("{i}-")));
        }
        let keys = store.keys(SecretKind::Turn).await.unwrap();
        assert!(!keys.is_empty() && keys.len() <= 3, "{}", keys.len());
        // Still writable.
        store.create_app(&app("after-crash")).await.unwrap();
        eprintln!("{} apps survived the SIGKILL", apps.len());
    });

    let raw = rusqlite::Connection::open(tmp.path().join(DB_FILE)).unwrap();
    let check: String = raw
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
