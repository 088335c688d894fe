//! Media through the cloud proxy, for real: a control plane, an edge and the stand-in media
//! network (its SFU) in this process on 127.0.0.1; one client joins through the proxy in each
//! mode (3 UDP, 4 TCP, 5 TLS), another joins directly, and each receives the other's audio
//! and VP8 video. The proxied client's media candidate is the edge's relay: its media goes
//! through the edge's TURN and nowhere else.

mod common;

use std::time::Duration;

use client_sdk::{Event, JoinError, Route, SdkError, TransportMode};
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_and_direct_members_exchange_audio_and_video_in_every_mode() {
    let t = TestControl::start(|_| {}).await;
    let app = t
        .create_app(json!({"name": "media", "pool": "pool-media"}))
        .await;
    let (ca_pem, tls_files) = edge_tls_files(&t.dir.0);
    let (edge, _ports) = start_edge(&t, "edge-m", "pool-media", 64400, Some(tls_files)).await;
    let _rtn = t.start_rtn(&[&app]).await;

    for (mode, transport) in [
        (3, TransportMode::Udp),
        (4, TransportMode::Tcp),
        (5, TransportMode::Tls),
    ] {
        let channel = format!("room-{mode}");
        let alice = t.client(None, Some(&ca_pem));
        let mut events = alice.events();
        alice.start_proxy_server(Some(mode)).unwrap();
        let info = alice
            .join(
                &app.app_id,
                &channel,
                &token(&app, &channel, "alice"),
                "alice",
            )
            .await
            .unwrap_or_else(|e| panic!("mode {mode}: {e}"));
        let Route::CloudProxy(s) = &info.route else {
            panic!("not through the proxy")
        };
        assert_eq!(s.mode, transport);

        let bob = t.client(None, None);
        bob.join(&app.app_id, &channel, &token(&app, &channel, "bob"), "bob")
            .await
            .expect("direct join");

        wait_for_media(&alice, "bob", 20, Duration::from_secs(15)).await;
        wait_for_media(&bob, "alice", 20, Duration::from_secs(15)).await;
        let a = alice.media_stats().unwrap();
        let b = bob.media_stats().unwrap();
        println!("mode {mode}: alice {a:?}\n        bob {b:?}");
        assert!(
            a.candidate.starts_with("relay 127.0.0.1:"),
            "{}",
            a.candidate
        );
        let relay_port: u16 = a.candidate.rsplit(':').next().unwrap().parse().unwrap();
        assert!(
            (64400..64450).contains(&relay_port),
            "the edge's relay range: {relay_port}"
        );
        assert!(b.candidate.starts_with("host "), "{}", b.candidate);
        let want_signal = if mode == 5 {
            "wss://127.0.0.1:"
        } else {
            "ws://127.0.0.1:"
        };
        assert!(a.signal.starts_with(want_signal), "{}", a.signal);
        assert!(
            a.signal.contains("ticket=…"),
            "the ticket is not shown: {}",
            a.signal
        );
        assert_eq!(a.members, ["bob"]);

        let mut seen = Vec::new();
        while let Ok(e) = events.try_recv() {
            seen.push(e);
        }
        assert!(seen.contains(&Event::MediaConnected), "{seen:?}");
        assert!(
            seen.contains(&Event::MemberJoined { uid: "bob".into() }),
            "{seen:?}"
        );

        bob.leave().await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alice
            .media_stats()
            .unwrap()
            .members
            .contains(&"bob".to_string())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "bob's leave never reached alice"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        alice.leave().await.unwrap();
        assert_eq!(alice.media_stats(), None);
    }
    assert_eq!(
        t.active_sessions(&app.app_id).await,
        0,
        "every session released"
    );
    tokio::task::spawn_blocking(move || drop(edge))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalling_failures_are_typed_and_bounded() {
    let t = TestControl::start(|_| {}).await;
    let app = t
        .create_app(json!({"name": "sig", "pool": "pool-sig"}))
        .await;
    let (edge, _) = start_edge(&t, "edge-s", "pool-sig", 64460, None).await;

    // No gateway listening: through the proxy the edge's relay answers 502 at once.
    let c = t.client(None, None);
    c.start_proxy_server(None).unwrap();
    match c
        .join(&app.app_id, "r", &token(&app, "r", "alice"), "alice")
        .await
    {
        Err(SdkError::Join(JoinError::SignalUnreachable(why))) => {
            assert!(why.contains("HTTP 502"), "{why}")
        }
        other => panic!("expected SignalUnreachable, got {other:?}"),
    }
    assert_eq!(
        t.active_sessions(&app.app_id).await,
        0,
        "the session was released"
    );

    // A gateway that never answers (a listener nobody accepts on): bounded by signal_timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let c = client_sdk::Client::new(client_sdk::ClientConfig {
        control_url: t.base.clone(),
        ca_pem: Some(t.ca_pem.clone()),
        rtn_signal_url: Some(format!("ws://{}/signal", silent.local_addr().unwrap())),
        signal_timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .unwrap();
    let started = std::time::Instant::now();
    let e = c.join(&app.app_id, "r", "t", "bob").await.unwrap_err();
    assert_eq!(e.code(), "SIGNAL_UNREACHABLE", "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // The gateway refuses a forged token: SIGNAL_REFUSED with its code.
    let _rtn = t.start_rtn(&[&app]).await;
    let direct = t.client(None, None);
    match direct.join(&app.app_id, "r", "v1:x:1:AAAA", "carol").await {
        Err(SdkError::Join(JoinError::SignalRefused { code, .. })) => {
            assert_eq!(code, "INVALID_TOKEN")
        }
        other => panic!("expected SignalRefused, got {other:?}"),
    }
    tokio::task::spawn_blocking(move || drop(edge))
        .await
        .unwrap();
}
