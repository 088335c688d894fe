//! An in-process control plane for tests: dev-mode TLS trusted by the returned client, a store
//! in a fresh temporary directory, and a clock the test moves.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `<tmp>/cloudproxy-test-<tag>-<pid>-<n>`.
    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "cloudproxy-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A clock tests move by hand.
#[derive(Clone)]
pub struct TestClock(pub Arc<AtomicU64>);

impl TestClock {
    /// Starts at the real Unix time (so credentials minted by it are also valid on edges that
    /// use the system clock).
    pub fn new() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        TestClock(Arc::new(AtomicU64::new(now)))
    }

    /// Now.
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Moves time forward.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }

    /// As the control plane's clock type.
    pub fn as_clock(&self) -> control_plane::Clock {
        let c = self.0.clone();
        Arc::new(move || c.load(Ordering::SeqCst))
    }
}

impl Default for TestClock {
    fn default() -> Self {
        Self::new()
    }
}

/// A running in-process control plane and a client that trusts it.
pub struct TestControl {
    /// The service.
    pub cp: control_plane::ControlPlane,
    /// HTTPS client trusting the dev certificate.
    pub http: reqwest::Client,
    /// `https://127.0.0.1:PORT`.
    pub base: String,
    /// Its clock.
    pub clock: TestClock,
    /// Its data directory.
    pub dir: TempDir,
    /// The dev CA certificate file.
    pub ca_file: PathBuf,
}

impl TestControl {
    /// Starts one with `tweak` applied to a dev-mode config on 127.0.0.1:0.
    pub async fn start(tweak: impl FnOnce(&mut control_plane::ControlConfig)) -> Self {
        let dir = TempDir::new("control");
        let mut cfg = control_plane::ControlConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.0.clone(),
            dev: true,
            ..Default::default()
        };
        tweak(&mut cfg);
        let clock = TestClock::new();
        let store = control_plane::store::sqlite::SqliteStore::open(&cfg.data_dir).expect("store");
        let cp = control_plane::ControlPlane::start_with(cfg, Arc::new(store), clock.as_clock())
            .await
            .expect("control plane starts");
        let pem = cp.ca_pem().expect("dev cert").to_owned();
        let ca_file = dir.0.join("tls/cert.pem");
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
            .build()
            .unwrap();
        let base = format!("https://127.0.0.1:{}", cp.local_addr().port());
        TestControl {
            cp,
            http,
            base,
            clock,
            dir,
            ca_file,
        }
    }

    /// An admin request builder.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.cp.admin_token())
    }

    /// Creates an App ID from JSON and returns it.
    pub async fn create_app(&self, body: serde_json::Value) -> control_api::App {
        let r = self
            .admin(reqwest::Method::POST, "/v1/admin/apps")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "create app: {}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    /// Sends a heartbeat for an edge.
    pub async fn heartbeat(
        &self,
        hb: &control_api::EdgeHeartbeat,
    ) -> control_api::HeartbeatResponse {
        let r = self
            .http
            .post(format!("{}/v1/edges/heartbeat", self.base))
            .bearer_auth(self.cp.edge_token())
            .json(hb)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "heartbeat: {}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    /// POST /v1/proxy with a raw JSON body; returns status and JSON body.
    pub async fn proxy(&self, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/v1/proxy", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// A heartbeat for a test edge.
pub fn edge_hb(
    id: &str,
    pool: &str,
    region: &str,
    isp: &str,
    allocations: u64,
) -> control_api::EdgeHeartbeat {
    control_api::EdgeHeartbeat {
        id: id.into(),
        pool: pool.into(),
        region: region.into(),
        isp: isp.into(),
        address: "192.0.2.10".into(),
        udp_ports: control_api::Ports {
            first: 3478,
            last: 3500,
        },
        tcp_ports: control_api::Ports {
            first: 3433,
            last: 3460,
        },
        tls_port: Some(443),
        signal_port: Some(4000),
        relay_ips: vec!["198.51.100.10".into()],
        load: control_api::EdgeLoad {
            allocations,
            bandwidth_bps: 0,
        },
        draining: false,
        version: "test".into(),
        sessions: vec![],
    }
}
