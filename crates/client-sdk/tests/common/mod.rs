//! Shared test helpers: free ports, a control plane in-process (dev-mode TLS, sqlite store in
//! a fresh directory, a clock the test can read), fake and real edges, join tokens.
#![allow(dead_code)] // each test file uses a different subset

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use client_sdk::{Client, ClientConfig};
use control_api::{App, EdgeHeartbeat, EdgeLoad, Ports};

pub use integration_tests::free_ports;

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The repo's in-process control plane (`integration_tests::control::TestControl`: dev-mode
/// TLS, SQLite store in a fresh directory), with the SDK-specific helpers below.
pub struct TestControl {
    inner: integration_tests::control::TestControl,
    /// The dev certificate, PEM.
    pub ca_pem: String,
    /// The port the media network's gateway gets ([`TestControl::start_rtn`]); the control
    /// plane's tickets name `127.0.0.1:<rtn_port>`.
    pub rtn_port: u16,
}

impl std::ops::Deref for TestControl {
    type Target = integration_tests::control::TestControl;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl TestControl {
    pub async fn start(tweak: impl FnOnce(&mut control_plane::ControlConfig)) -> Self {
        let rtn_port = free_ports(1)[0];
        let inner = integration_tests::control::TestControl::start(|c| {
            c.rtn_upstreams = vec![format!("127.0.0.1:{rtn_port}")];
            tweak(c)
        })
        .await;
        let ca_pem = inner.cp.ca_pem().expect("dev cert").to_owned();
        TestControl {
            inner,
            ca_pem,
            rtn_port,
        }
    }

    /// Starts the stand-in media network on the port the tickets name, serving `apps`.
    pub async fn start_rtn(&self, apps: &[&App]) -> rtn::Rtn {
        start_rtn_on(self.rtn_port, apps).await
    }

    /// Stops the control plane.
    pub async fn shutdown(self) {
        self.inner.cp.shutdown().await;
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
            rtn_signal_url: Some(format!("ws://127.0.0.1:{}/signal", self.rtn_port)),
            ..Default::default()
        })
        .expect("client")
    }
}

/// The stand-in media network on 127.0.0.1:`port` (media on any free UDP port).
pub async fn start_rtn_on(port: u16, apps: &[&App]) -> rtn::Rtn {
    let apps: Vec<(&str, &str)> = apps
        .iter()
        .map(|a| (a.app_id.as_str(), a.certificate.as_str()))
        .collect();
    start_rtn_with(port, &apps).await
}

/// The stand-in media network on 127.0.0.1:`port` for `(app id, certificate)` pairs.
pub async fn start_rtn_with(port: u16, apps: &[(&str, &str)]) -> rtn::Rtn {
    rtn::Rtn::start(rtn::RtnConfig {
        signal_listen: format!("127.0.0.1:{port}").parse().unwrap(),
        media_listen: "127.0.0.1:0".parse().unwrap(),
        media_public: "127.0.0.1".parse().unwrap(),
        apps: apps
            .iter()
            .map(|(a, c)| (a.to_string(), c.to_string()))
            .collect(),
    })
    .await
    .expect("rtn starts")
}

/// A TURN server of the app's own (`set_turn_server`): an edge without a control plane,
/// with the static user `user`/`pass`, relaying to loopback. Returns it and its UDP port.
pub async fn start_own_turn(relay_first: u16) -> (edge::Edge, u16) {
    let udp = free_ports(1)[0];
    let cfg = edge::EdgeConfig {
        listen: "127.0.0.1".parse().unwrap(),
        udp_ports: edge::PortRange {
            first: udp,
            last: udp,
        },
        tcp_ports: edge::PortRange {
            first: udp,
            last: udp,
        },
        relay_ports: edge::PortRange {
            first: relay_first,
            last: relay_first + 19,
        },
        tls_port: 0,
        signal_port: 0,
        users: vec![edge::config::UserSpec {
            name: "user".into(),
            password: "pass".into(),
        }],
        dangerous_allow_loopback_peers: true,
        ..Default::default()
    };
    let edge = tokio::task::spawn_blocking(move || edge::Edge::start(cfg))
        .await
        .unwrap()
        .expect("TURN server starts");
    (edge, udp)
}

/// Waits until `client`'s media session is connected and has received at least `n` audio
/// packets and `n` video frames from `from`; panics after `within`.
pub async fn wait_for_media(client: &Client, from: &str, n: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let s = client.media_stats().expect("joined");
        let r = s.received.get(from).copied().unwrap_or_default();
        if s.connected && r.audio >= n && r.video >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no media from {from} within {within:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
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
    pub signal: u16,
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
    let p = free_ports(4);
    let ports = EdgePorts {
        udp: p[0],
        tcp: p[1],
        tls: p[2],
        signal: p[3],
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
        signal_port: ports.signal,
        // The stand-in media network runs on 127.0.0.1 in these tests.
        dangerous_allow_loopback_peers: true,
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
