//! End to end on loopback: provision an App ID, start an edge against the control plane (it
//! registers and learns the TURN secret by heartbeat), ask for proxy info as a client would,
//! and relay with coturn's `turnutils_uclient` using the returned credentials — zero loss. The
//! same credentials then fail once expired, and on an edge with another secret.

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use credentials::join_token::mint_join_token;
use edge::config::SecretSpec;
use edge::{Edge, EdgeConfig, PortRange};
use integration_tests::control::TestControl;
use integration_tests::{free_port_pair, free_ports};
use serde_json::json;

fn echo_peer() -> u16 {
    let port = free_port_pair();
    for p in [port, port + 1] {
        let s = UdpSocket::bind(("127.0.0.1", p)).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        });
    }
    port
}

fn edge_cfg(udp: u16, tcp: u16) -> EdgeConfig {
    EdgeConfig {
        signal_port: 0, // no signalling relay here (the default 4000 would be shared)
        listen: "127.0.0.1".parse().unwrap(),
        udp_ports: PortRange {
            first: udp,
            last: udp,
        },
        tcp_ports: PortRange {
            first: tcp,
            last: tcp,
        },
        relay_ports: PortRange {
            first: 62000,
            last: 62499,
        },
        dangerous_allow_loopback_peers: true,
        ..EdgeConfig::default()
    }
}

/// Runs uclient; returns (lost, received, output).
fn uclient(user: &str, pass: &str, port: u16, echo: u16, tcp: bool) -> (Option<u64>, u64, String) {
    let mut cmd = Command::new("timeout");
    cmd.args([
        "20",
        "turnutils_uclient",
        "-n",
        "30",
        "-m",
        "2",
        "-l",
        "200",
        "-e",
        "127.0.0.1",
        "-r",
        &echo.to_string(),
    ]);
    if tcp {
        cmd.arg("-t");
    }
    cmd.args(["-u", user, "-w", pass, "-p", &port.to_string(), "127.0.0.1"]);
    let out = cmd
        .output()
        .expect("turnutils_uclient (coturn) must be installed: bash .ci/run installs it");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let grab = |key: &str| {
        text.lines().rev().find_map(|l| {
            let i = l.find(key)? + key.len();
            l[i..]
                .trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
    };
    (
        grab("Total lost packets"),
        grab("tot_recv_msgs=").unwrap_or(0),
        text,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_credentials_relay_through_a_registered_edge_and_expire() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_default())
        .with_test_writer()
        .try_init();
    // Short TURN TTL so expiry can be shown with one short wait; the session lease is longer.
    let t = TestControl::start(|c| {
        c.turn_ttl_secs = 10;
        c.edge_lease_secs = 3; // heartbeats every second
    })
    .await;
    let app = t
        .create_app(json!({"name": "e2e", "max_concurrency": 10}))
        .await;
    let echo = echo_peer();
    let p: [u16; 4] = free_ports(4).try_into().unwrap();
    let mut cfg = edge_cfg(p[0], p[1]);
    cfg.control = Some(t.base.clone());
    cfg.edge_token = Some(t.cp.edge_token().to_owned());
    cfg.control_ca = Some(t.ca_file.clone());
    cfg.pool = app.pool.clone();
    cfg.edge_id = Some("e2e-edge".into());
    // A static user of the edge's own, for the drain check at the end.
    cfg.users = vec![edge::config::UserSpec {
        name: "operator-check".into(),
        password: "check-pass".into(),
    }];
    let edge = tokio::task::spawn_blocking(move || Edge::start(cfg))
        .await
        .unwrap()
        .expect("edge starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !edge.registered() {
        assert!(
            Instant::now() < deadline,
            "edge did not register with the control plane"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let tok = mint_join_token(
        &app.app_id,
        app.certificate.as_bytes(),
        "room",
        "alice",
        t.clock.now() + 600,
    );
    let (status, body) = t.proxy(&json!({"app_id": app.app_id, "channel": "room", "uid": "alice", "mode": "udp", "token": tok})).await;
    assert_eq!(status, 200, "{body}");
    let resp: control_api::ProxyResponse = serde_json::from_value(body).unwrap();
    assert_eq!(resp.edges[0].id, "e2e-edge");
    assert_eq!(
        resp.edges[0].ice_servers[0].urls,
        [format!("turn:127.0.0.1:{}?transport=udp", p[0])]
    );
    let (user, pass) = (resp.turn.username.clone(), resp.turn.password.clone());

    let (u2, t2) = (user.clone(), pass.clone());
    let (lost, received, out) =
        tokio::task::spawn_blocking(move || uclient(&u2, &t2, p[0], echo, false))
            .await
            .unwrap();
    assert_eq!(
        lost,
        Some(0),
        "UDP relay with minted credentials lost messages:\n{out}"
    );
    assert!(received >= 60, "{out}");
    println!("minted credentials over UDP: {received} messages echoed, 0 lost");

    // The edge reports the session: its lease is renewed by heartbeats while allocations live.
    let usage: control_api::AppUsage = t
        .admin(
            reqwest::Method::GET,
            &format!("/v1/admin/apps/{}/usage", app.app_id),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage.active_sessions, 1);

    // Rotation without restart: the edge learns the new secret by heartbeat, and credentials
    // minted with it relay.
    let r = t
        .admin(reqwest::Method::POST, "/v1/admin/secrets/rotate")
        .send()
        .await
        .unwrap();
    let rotated: control_api::RotatedSecrets = r.json().await.unwrap();
    let tok2 = mint_join_token(
        &app.app_id,
        app.certificate.as_bytes(),
        "room",
        "bob",
        t.clock.now() + 600,
    );
    let (status, body) = t.proxy(&json!({"app_id": app.app_id, "channel": "room", "uid": "bob", "mode": "udp", "token": tok2})).await;
    assert_eq!(status, 200, "{body}");
    let fresh: control_api::ProxyResponse = serde_json::from_value(body).unwrap();
    assert!(fresh
        .turn
        .username
        .contains(&format!(":{}:", rotated.turn_key_id)));
    let (u3, t3) = (fresh.turn.username.clone(), fresh.turn.password.clone());
    // Wait (bounded) until a heartbeat has taught the edge the new secret: an Allocate with the
    // fresh credentials stops being answered 401. A fixed sleep was flaky on a loaded machine.
    let (u4, t4, port) = (u3.clone(), t3.clone(), p[1]);
    tokio::task::spawn_blocking(move || {
        use integration_tests::turn_client::{Client, Link};
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let link = Link::tcp(format!("127.0.0.1:{port}").parse().unwrap()).unwrap();
            let code = Client::new(link, &u4, &t4).allocate(17, &[]).unwrap().code;
            if code != Some(401) {
                assert_eq!(code, None, "Allocate with the rotated secret");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the edge never learnt the rotated secret"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .unwrap();
    let (lost, received, out) =
        tokio::task::spawn_blocking(move || uclient(&u3, &t3, p[1], echo, true))
            .await
            .unwrap();
    assert_eq!(
        lost,
        Some(0),
        "TCP relay with credentials from the rotated secret:\n{out}"
    );
    println!("after rotation, over TCP: {received} messages echoed, 0 lost");

    // Another edge with its own secret does not accept them.
    let other = {
        let mut c = edge_cfg(p[2], p[3]);
        c.auth_secrets = vec![SecretSpec {
            key_id: resp.turn.username.split(':').nth(1).unwrap().into(),
            secret: "not-the-control-plane-secret".into(),
        }];
        tokio::task::spawn_blocking(move || Edge::start(c))
            .await
            .unwrap()
            .expect("second edge")
    };
    let (u2, t2) = (user.clone(), pass.clone());
    let (lost, _, out) = tokio::task::spawn_blocking(move || uclient(&u2, &t2, p[2], echo, false))
        .await
        .unwrap();
    assert_ne!(
        lost,
        Some(0),
        "an edge with another secret must refuse:\n{out}"
    );
    assert!(other.stats().to_peer_packets == 0);

    // After the TTL the same credentials no longer allocate.
    let wait = resp.turn.expires_at.saturating_sub(now_unix()) + 1;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (lost, _, out) =
        tokio::task::spawn_blocking(move || uclient(&user, &pass, p[0], echo, false))
            .await
            .unwrap();
    assert_ne!(lost, Some(0), "expired credentials must be refused:\n{out}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        edge.stats().auth_failures > 0,
        "the edge counted the refusals: {:?}",
        edge.stats()
    );
    // An operator drains the edge through the control plane: from the next heartbeat the edge
    // refuses new allocations (508) to anyone with valid credentials (here a static user of
    // its own, since the minted ones have expired by now), and keeps running.
    let r = t
        .admin(reqwest::Method::POST, "/v1/admin/edges/e2e-edge/drain")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "drain: {}", r.status());
    let port = p[1];
    tokio::task::spawn_blocking(move || {
        use integration_tests::turn_client::{Client, Link};
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let link = Link::tcp(format!("127.0.0.1:{port}").parse().unwrap()).unwrap();
            let code = Client::new(link, "operator-check", "check-pass")
                .allocate(17, &[])
                .unwrap()
                .code;
            if code == Some(508) {
                return;
            }
            assert_eq!(code, None, "Allocate before the drain reaches the edge");
            assert!(
                Instant::now() < deadline,
                "the edge never refused new allocations after the drain"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .unwrap();
    assert!(edge.draining());
    println!("drained through the control plane: new allocations get 508");
    drop(other);
    drop(edge);
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
