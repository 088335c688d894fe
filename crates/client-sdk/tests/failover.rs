//! Failover through the answer's edges, against a real control plane and real edges
//! in-process: the first offered edge is gone (stopped after registering, or a fake one on
//! closed ports), the join goes through the next one and says what it tried; with no edge
//! answering the join fails with `EdgeUnreachable` and releases its session. Each mode probes
//! its own transport: UDP, TCP, and TLS with ALPN `stun.turn` and a verified certificate.

mod common;

use client_sdk::{ConnectionState, Event, JoinError, JoinInfo, Route, SdkError, TransportMode};
use common::{edge_tls_files, fake_edge, free_ports, start_edge, token, TestControl};
use serde_json::json;

fn cloud(info: &JoinInfo) -> &client_sdk::CloudProxySession {
    match &info.route {
        Route::CloudProxy(s) => s,
        other => panic!("expected the cloud proxy, got {other:?}"),
    }
}

fn drain(rx: &mut tokio::sync::broadcast::Receiver<Event>) -> Vec<Event> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        v.push(e);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_join_fails_over_from_a_stopped_edge_to_the_next() {
    let t = TestControl::start(|_| {}).await;
    let app = t
        .create_app(json!({"name": "failover", "pool": "pool-fo"}))
        .await;
    let (edge_a, pa) = start_edge(&t, "edge-a", "pool-fo", 65000, None).await;
    let (edge_b, pb) = start_edge(&t, "edge-b", "pool-fo", 65050, None).await;
    let _rtn = t.start_rtn(&[&app]).await;
    // edge-a stops after registering; its lease (15 s) has not run out, so the control plane
    // still offers it first (same region and load, lower id).
    tokio::task::spawn_blocking(move || drop(edge_a))
        .await
        .unwrap();

    let c = t.client(None, None);
    let mut events = c.events();
    c.start_proxy_server(None).unwrap();
    let info = c
        .join(&app.app_id, "room", &token(&app, "room", "alice"), "alice")
        .await
        .expect("join through edge-b");
    let s = cloud(&info);
    let offered: Vec<&str> = s.offered.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(offered, ["edge-a", "edge-b"]);
    assert_eq!(s.edge.id, "edge-b");
    assert_eq!(s.mode, TransportMode::Udp);
    assert_eq!(
        s.edge_addr,
        format!("127.0.0.1:{}", pb.udp).parse().unwrap()
    );
    assert_eq!(s.tried.len(), 1, "{:?}", s.tried);
    assert!(
        s.tried[0].starts_with(&format!("edge-a udp 127.0.0.1:{}: ", pa.udp)),
        "{:?}",
        s.tried
    );
    assert_eq!(
        s.mapped.map(|a| a.ip()),
        Some("127.0.0.1".parse().unwrap()),
        "the edge reports the client's address"
    );
    assert_eq!(
        s.ice_servers[0].urls,
        [format!("turn:127.0.0.1:{}?transport=udp", pb.udp)]
    );
    assert_eq!(s.ice_servers[0].username, s.turn.username);
    assert!(!s.ticket.is_empty());
    assert_eq!(c.connection_state(), ConnectionState::Connected);
    assert_eq!(c.join_info().as_ref(), Some(&info));
    println!("joined through {} after trying {:?}", s.edge.id, s.tried);

    assert_eq!(t.active_sessions(&app.app_id).await, 1);
    c.leave().await.unwrap();
    assert_eq!(
        t.active_sessions(&app.app_id).await,
        0,
        "leave releases the session"
    );
    assert_eq!(c.connection_state(), ConnectionState::Disconnected);
    assert_eq!(
        drain(&mut events),
        [
            Event::ConnectionState(ConnectionState::Connecting),
            Event::ConnectionState(ConnectionState::Connected),
            Event::IsUsingCloudProxy {
                using: true,
                transport: Some(TransportMode::Udp)
            },
            Event::ConnectionState(ConnectionState::Disconnecting),
            Event::ConnectionState(ConnectionState::Disconnected),
            Event::IsUsingCloudProxy {
                using: false,
                transport: None
            },
        ]
    );
    tokio::task::spawn_blocking(move || drop(edge_b))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_tls_joins_fail_over_from_an_unreachable_edge() {
    let t = TestControl::start(|_| {}).await;
    let app = t
        .create_app(json!({"name": "streams", "pool": "pool-streams"}))
        .await;
    let (ca_pem, tls_files) = edge_tls_files(&t.dir.0);
    let (edge_c, pc) = start_edge(&t, "edge-c", "pool-streams", 65100, Some(tls_files)).await;
    let _rtn = t.start_rtn(&[&app]).await;
    // A fake edge on closed ports, ranked first (its id sorts first at equal load).
    let closed = free_ports(3);
    t.heartbeat(&fake_edge(
        "edge-0",
        "pool-streams",
        0,
        closed[0],
        closed[1],
        closed[2],
    ))
    .await;

    let c = t.client(None, Some(&ca_pem));
    for (mode, transport, port, name) in [
        (4, TransportMode::Tcp, pc.tcp, "tcp"),
        (5, TransportMode::Tls, pc.tls, "tls"),
    ] {
        let mut events = c.events();
        c.start_proxy_server(Some(mode)).unwrap();
        let info = c
            .join(&app.app_id, "room", &token(&app, "room", "alice"), "alice")
            .await
            .unwrap_or_else(|e| panic!("mode {mode}: {e}"));
        let s = cloud(&info);
        assert_eq!(s.edge.id, "edge-c");
        assert_eq!(s.mode, transport);
        assert_eq!(s.edge_addr.port(), port, "mode {mode}");
        assert_eq!(s.tried.len(), 1);
        assert!(
            s.tried[0].starts_with(&format!("edge-0 {name} 127.0.0.1:")),
            "{:?}",
            s.tried
        );
        let using = drain(&mut events)
            .into_iter()
            .find(|e| matches!(e, Event::IsUsingCloudProxy { .. }));
        assert_eq!(
            using,
            Some(Event::IsUsingCloudProxy {
                using: true,
                transport: Some(transport)
            })
        );
        c.leave().await.unwrap();
    }

    // Without the edge's CA the TLS probe fails verification: no edge is usable.
    let untrusted = t.client(None, None);
    untrusted.start_proxy_server(Some(5)).unwrap();
    match untrusted
        .join(&app.app_id, "room", &token(&app, "room", "bob"), "bob")
        .await
    {
        Err(SdkError::Join(JoinError::EdgeUnreachable { tried })) => {
            assert_eq!(tried.len(), 2, "{tried:?}");
            assert!(tried[1].starts_with("edge-c tls "), "{tried:?}");
            assert!(tried[1].contains("TLS handshake"), "{tried:?}");
        }
        other => panic!("expected EdgeUnreachable, got {other:?}"),
    }
    assert_eq!(t.active_sessions(&app.app_id).await, 0);
    tokio::task::spawn_blocking(move || drop(edge_c))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_unreachable_lists_every_edge_tried_in_order() {
    let t = TestControl::start(|_| {}).await;
    let app = t
        .create_app(json!({"name": "dead", "pool": "pool-dead"}))
        .await;
    let p = free_ports(6); // nothing listens on these
    t.heartbeat(&fake_edge("dead-1", "pool-dead", 0, p[0], p[1], p[2]))
        .await;
    t.heartbeat(&fake_edge("dead-2", "pool-dead", 5, p[3], p[4], p[5]))
        .await;
    let c = t.client(None, None);
    for (mode, name, ports) in [
        (3, "udp", [p[0], p[3]]),
        (4, "tcp", [p[1], p[4]]),
        (5, "tls", [p[2], p[5]]),
    ] {
        c.start_proxy_server(Some(mode)).unwrap();
        let started = std::time::Instant::now();
        let r = c
            .join(&app.app_id, "room", &token(&app, "room", "alice"), "alice")
            .await;
        let tried = match r {
            Err(SdkError::Join(JoinError::EdgeUnreachable { tried })) => tried,
            other => panic!("mode {mode}: expected EdgeUnreachable, got {other:?}"),
        };
        assert_eq!(tried.len(), 2, "{tried:?}");
        assert!(
            tried[0].starts_with(&format!("dead-1 {name} 127.0.0.1:{}: ", ports[0])),
            "{tried:?}"
        );
        assert!(
            tried[1].starts_with(&format!("dead-2 {name} 127.0.0.1:{}: ", ports[1])),
            "{tried:?}"
        );
        println!("mode {mode}: {tried:?} in {:?}", started.elapsed());
        assert_eq!(c.connection_state(), ConnectionState::Disconnected);
        assert_eq!(
            t.active_sessions(&app.app_id).await,
            0,
            "an unusable session is released"
        );
    }
}
