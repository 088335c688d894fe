//! Shared test helpers: free ports, a control plane in-process (dev-mode TLS, sqlite store in
//! a fresh directory, a clock the test can read), fake and real edges, join tokens.
#![allow(dead_code)] // each test file uses a different subset

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use client_sdk::{Client, ClientConfig};
use control_api::{App, EdgeHeartbeat, EdgeLoad, Ports};

/// `n` distinct ports free for both UDP and TCP on 127.0.0.1 right now (copied from
/// tests/integration/src/lib.rs). They come from the ephemeral range; relay ranges of test
/// edges sit above it (65000-65499).
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    let mut held = Vec::new();
    while out.len() < n {
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = u.local_addr().expect("addr").port();
        if let Ok(t) = TcpListener::bind(("127.0.0.1", port)) {
            out.push(port);
            held.push((u, t));
        }
    }
    out
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "cloudproxy-sdk-test-{tag}-{}-{}",
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

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A control plane in-process and an admin client that trusts it.
pub struct TestControl {
    pub cp: control_plane::ControlPlane,
    pub http: reqwest::Client,
    /// `https://127.0.0.1:PORT`.
    pub base: String,
    /// The dev certificate, PEM.
    pub ca_pem: String,
    /// The dev certificate file (edges trust it through `control_ca`).
    pub ca_file: PathBuf,
    pub dir: TempDir,
}

impl TestControl {
    pub async fn start(tweak: impl FnOnce(&mut control_plane::ControlConfig)) -> Self {
        let dir = TempDir::new("control");
        let mut cfg = control_plane::ControlConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.0.clone(),
            dev: true,
            ..Default::default()
        };
        tweak(&mut cfg);
        let store = control_plane::store::sqlite::SqliteStore::open(&cfg.data_dir).expect("store");
        let clock: control_plane::Clock = Arc::new(now_unix);
        let cp = control_plane::ControlPlane::start_with(cfg, Arc::new(store), clock)
            .await
            .expect("control plane starts");
        let ca_pem = cp.ca_pem().expect("dev cert").to_owned();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .build()
            .unwrap();
        let base = format!("https://127.0.0.1:{}", cp.local_addr().port());
        let ca_file = dir.0.join("tls/cert.pem");
        TestControl {
            cp,
            http,
            base,
            ca_pem,
            ca_file,
            dir,
        }
    }

    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.cp.admin_token())
    }

    pub async fn create_app(&self, body: serde_json::Value) -> App {
        let r = self
            .admin(reqwest::Method::POST, "/v1/admin/apps")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "create app: {}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    pub async fn update_app(&self, app_id: &str, body: serde_json::Value) {
        let r = self
            .admin(reqwest::Method::PATCH, &format!("/v1/admin/apps/{app_id}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "update app: {}",
            r.text().await.unwrap()
        );
    }

    pub async fn active_sessions(&self, app_id: &str) -> u32 {
        let u: control_api::AppUsage = self
            .admin(
                reqwest::Method::GET,
                &format!("/v1/admin/apps/{app_id}/usage"),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        u.active_sessions
    }

    pub async fn heartbeat(&self, hb: &EdgeHeartbeat) {
        let r = self
            .http
            .post(format!("{}/v1/edges/heartbeat", self.base))
            .bearer_auth(self.cp.edge_token())
            .json(hb)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "heartbeat: {}", r.text().await.unwrap());
    }

    /// A client of this control plane trusting its dev certificate (plus `extra_pem`).
    pub fn client(&self, area: Option<&str>, extra_pem: Option<&str>) -> Client {
        let mut pem = self.ca_pem.clone();
        if let Some(extra) = extra_pem {
            pem.push('\n');
            pem.push_str(extra);
        }
        Client::new(ClientConfig {
            control_url: self.base.clone(),
            ca_pem: Some(pem),
            area: area.map(str::to_owned),
            ..Default::default()
        })
        .expect("client")
    }
}

/// A join token for `uid` in `channel`, valid for ten minutes.
pub fn token(app: &App, channel: &str, uid: &str) -> String {
    credentials::join_token::mint_join_token(
        &app.app_id,
        app.certificate.as_bytes(),
        channel,
        uid,
        now_unix() + 600,
    )
}

/// A heartbeat for a fake edge on 127.0.0.1 whose ports are `udp`, `tcp` and `tls`.
pub fn fake_edge(
    id: &str,
    pool: &str,
    allocations: u64,
    udp: u16,
    tcp: u16,
    tls: u16,
) -> EdgeHeartbeat {
    EdgeHeartbeat {
        id: id.into(),
        pool: pool.into(),
        region: "GLOBAL".into(),
        isp: String::new(),
        address: "127.0.0.1".into(),
        udp_ports: Ports {
            first: udp,
            last: udp,
        },
        tcp_ports: Ports {
            first: tcp,
            last: tcp,
        },
        tls_port: Some(tls),
        signal_port: None,
        relay_ips: vec!["127.0.0.1".into()],
        load: EdgeLoad {
            allocations,
            bandwidth_bps: 0,
        },
        draining: false,
        version: "test".into(),
        sessions: vec![],
    }
}

/// Ports of a real edge.
#[derive(Debug, Clone, Copy)]
pub struct EdgePorts {
    pub udp: u16,
    pub tcp: u16,
    pub tls: u16,
}

/// Starts a real edge registered with `t` in `pool` as `id`, serving TLS with `tls` (cert
/// and key files) when given, and waits until the control plane has its heartbeat.
pub async fn start_edge(
    t: &TestControl,
    id: &str,
    pool: &str,
    relay_first: u16,
    tls: Option<(PathBuf, PathBuf)>,
) -> (edge::Edge, EdgePorts) {
    let p = free_ports(3);
    let ports = EdgePorts {
        udp: p[0],
        tcp: p[1],
        tls: p[2],
    };
    let (tls_cert, tls_key) = match tls {
        Some((c, k)) => (Some(c), Some(k)),
        None => (None, None),
    };
    let cfg = edge::EdgeConfig {
        listen: "127.0.0.1".parse().unwrap(),
        udp_ports: edge::PortRange {
            first: ports.udp,
            last: ports.udp,
        },
        tcp_ports: edge::PortRange {
            first: ports.tcp,
            last: ports.tcp,
        },
        relay_ports: edge::PortRange {
            first: relay_first,
            last: relay_first + 49,
        },
        tls_port: ports.tls,
        tls_cert,
        tls_key,
        signal_port: 0,
        control: Some(t.base.clone()),
        edge_token: Some(t.cp.edge_token().to_owned()),
        control_ca: Some(t.ca_file.clone()),
        pool: pool.into(),
        edge_id: Some(id.into()),
        ..Default::default()
    };
    let edge = tokio::task::spawn_blocking(move || edge::Edge::start(cfg))
        .await
        .unwrap()
        .expect("edge starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !edge.registered() {
        assert!(Instant::now() < deadline, "edge {id} did not register");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (edge, ports)
}

/// A test CA and a certificate for 127.0.0.1 signed by it, written into `dir`: returns the
/// CA's PEM and the (cert, key) paths.
pub fn edge_tls_files(dir: &std::path::Path) -> (String, (PathBuf, PathBuf)) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "sdk test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    leaf.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let (cp, kp) = (dir.join("edge-cert.pem"), dir.join("edge-key.pem"));
    std::fs::write(&cp, cert.pem()).unwrap();
    std::fs::write(&kp, key.serialize_pem()).unwrap();
    (ca_cert.pem(), (cp, kp))
}
