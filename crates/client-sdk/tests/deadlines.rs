//! Edges that swallow traffic (a firewall that drops instead of refusing): the probe gives up
//! at its deadline (UDP 1 s with retransmissions, TCP 2 s) instead of hanging, and a leave
//! during such a join cancels it at once and releases the session.

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client_sdk::{ConnectionState, Event, JoinError, SdkError, JOIN_CANCELLED};
use common::{fake_edge, free_ports, token, TestControl};
use serde_json::json;

/// A UDP socket and a TCP listener on one port that take everything and answer nothing.
/// Returns the port and the count of datagrams received.
fn black_hole() -> (u16, Arc<AtomicU32>) {
    let port = free_ports(1)[0];
    let udp = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let tcp = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let count = Arc::new(AtomicU32::new(0));
    let n = count.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while udp.recv_from(&mut buf).is_ok() {
            n.fetch_add(1, Ordering::SeqCst);
        }
    });
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((s, _)) = tcp.accept() {
            held.push(s); // accepted, never answered
        }
    });
    (port, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_edges_time_out_at_the_mode_deadline() {
    let t = TestControl::start(|_| {}).await;
    let app = t
        .create_app(json!({"name": "silent", "pool": "pool-silent"}))
        .await;
    let (port, datagrams) = black_hole();
    t.heartbeat(&fake_edge("silent", "pool-silent", 0, port, port, port))
        .await;
    let c = t.client(None, None);
    for (mode, deadline) in [(3u8, Duration::from_secs(1)), (4, Duration::from_secs(2))] {
        c.start_proxy_server(Some(mode)).unwrap();
        let started = Instant::now();
        let r = c
            .join(&app.app_id, "room", &token(&app, "room", "alice"), "alice")
            .await;
        let took = started.elapsed();
        match r {
            Err(SdkError::Join(JoinError::EdgeUnreachable { tried })) => {
                assert_eq!(tried.len(), 1);
                assert!(
                    tried[0].ends_with(&format!("no STUN answer within {deadline:?}")),
                    "{tried:?}"
                );
            }
            other => panic!("mode {mode}: {other:?}"),
        }
        assert!(
            took >= deadline && took < deadline + Duration::from_millis(1500),
            "mode {mode} took {took:?}"
        );
        println!("mode {mode}: gave up after {took:?}");
    }
    assert_eq!(
        datagrams.load(Ordering::SeqCst),
        3,
        "UDP: the request and two retransmissions within the second"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_cancels_a_running_join() {
    let t = TestControl::start(|_| {}).await;
    let app = t
        .create_app(json!({"name": "cancel", "pool": "pool-cancel"}))
        .await;
    let (port, _) = black_hole();
    t.heartbeat(&fake_edge("silent", "pool-cancel", 0, port, port, port))
        .await;
    let c = Arc::new(t.client(None, None));
    let mut events = c.events();
    c.start_proxy_server(Some(5)).unwrap(); // TLS: a 3 s deadline
    let tok = token(&app, "room", "alice");
    let joining = {
        let (c, app_id) = (c.clone(), app.app_id.clone());
        tokio::spawn(async move { c.join(&app_id, "room", &tok, "alice").await })
    };
    // Wait until the control plane admitted the session and the probe is running.
    let deadline = Instant::now() + Duration::from_secs(5);
    while t.active_sessions(&app.app_id).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the join never reached the control plane"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.connection_state(), ConnectionState::Connecting);
    let started = Instant::now();
    c.leave().await.unwrap();
    assert_eq!(c.connection_state(), ConnectionState::Disconnected);
    let r = joining.await.unwrap();
    assert_eq!(r, Err(SdkError::InvalidOperation(JOIN_CANCELLED)));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "cancelled promptly, not at the probe deadline: {:?}",
        started.elapsed()
    );
    assert_eq!(t.active_sessions(&app.app_id).await, 0, "session released");
    // The proxy calls work again at once.
    c.start_proxy_server(Some(3)).unwrap();
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert_eq!(
        seen,
        [
            Event::ConnectionState(ConnectionState::Connecting),
            Event::ConnectionState(ConnectionState::Disconnected),
        ]
    );
}
