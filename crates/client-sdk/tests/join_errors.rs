//! Every join failure the control plane can cause, from a real control plane in-process: each
//! comes back as its own `JoinError` variant, and the client is disconnected again afterwards.

mod common;

use client_sdk::{ConnectionState, JoinError, SdkError};
use common::{fake_edge, free_ports, now_unix, token, TestControl};
use serde_json::json;

fn join_error(r: Result<client_sdk::JoinInfo, SdkError>) -> JoinError {
    match r {
        Err(SdkError::Join(e)) => e,
        other => panic!("expected a join error, got {other:?}"),
    }
}

/// An App ID in its own pool, with one fake edge registered there (so only the error under
/// test can stop the join).
async fn app_with_edge(t: &TestControl, pool: &str, extra: serde_json::Value) -> control_api::App {
    let mut body = json!({"name": pool, "pool": pool});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let app = t.create_app(body).await;
    let p = free_ports(1)[0];
    t.heartbeat(&fake_edge(&format!("{pool}-edge"), pool, 0, p, p, p))
        .await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_control_plane_refusal_has_its_own_variant() {
    let t = TestControl::start(|_| {}).await;

    // App ID unknown.
    let c = t.client(None, None);
    c.start_proxy_server(None).unwrap();
    let e = join_error(c.join("no-such-app", "room", "v1:x:1:AAAA", "alice").await);
    assert!(matches!(e, JoinError::AppNotFound(_)), "{e:?}");
    assert_eq!(c.connection_state(), ConnectionState::Disconnected);

    // Proxy not enabled: a suspended App ID.
    let app = app_with_edge(&t, "pool-suspended", json!({})).await;
    t.update_app(&app.app_id, json!({"status": "suspended"}))
        .await;
    let e = join_error(
        c.join(&app.app_id, "room", &token(&app, "room", "alice"), "alice")
            .await,
    );
    assert!(matches!(e, JoinError::ProxyNotEnabled(_)), "{e:?}");

    // Mode not enabled: the App ID has TCP only, the client asks for the default (3 = UDP).
    let app = app_with_edge(&t, "pool-tcp-only", json!({"modes": ["tcp"]})).await;
    let e = join_error(
        c.join(&app.app_id, "room", &token(&app, "room", "alice"), "alice")
            .await,
    );
    assert!(matches!(e, JoinError::ModeNotEnabled(_)), "{e:?}");

    // Invalid token: garbage, and a genuine token for another channel.
    let app = app_with_edge(&t, "pool-tokens", json!({})).await;
    let e = join_error(c.join(&app.app_id, "room", "garbage", "alice").await);
    assert!(matches!(e, JoinError::InvalidToken(_)), "{e:?}");
    let e = join_error(
        c.join(
            &app.app_id,
            "room",
            &token(&app, "other-room", "alice"),
            "alice",
        )
        .await,
    );
    assert!(matches!(e, JoinError::InvalidToken(_)), "{e:?}");

    // Expired token.
    let expired = credentials::join_token::mint_join_token(
        &app.app_id,
        app.certificate.as_bytes(),
        "room",
        "alice",
        now_unix() - 10,
    );
    let e = join_error(c.join(&app.app_id, "room", &expired, "alice").await);
    assert!(matches!(e, JoinError::TokenExpired(_)), "{e:?}");

    // Bad request: a uid the control plane refuses (':' is not allowed).
    let e = join_error(c.join(&app.app_id, "room", "t", "al:ice").await);
    assert!(matches!(e, JoinError::BadRequest(_)), "{e:?}");

    // Area forbidden: the App ID serves EU only, the client says it is in CN.
    let app = app_with_edge(&t, "pool-eu", json!({"areas": ["EU"]})).await;
    let cn = t.client(Some("CN"), None);
    cn.start_proxy_server(Some(3)).unwrap();
    let e = join_error(
        cn.join(&app.app_id, "room", &token(&app, "room", "alice"), "alice")
            .await,
    );
    assert!(matches!(e, JoinError::AreaForbidden(_)), "{e:?}");

    // Quota exceeded: a concurrency of one, taken by another client's session.
    let app = app_with_edge(&t, "pool-quota", json!({"max_concurrency": 1})).await;
    let r = t
        .http
        .post(format!("{}/v1/proxy", t.base))
        .json(
            &json!({"app_id": app.app_id, "channel": "room", "uid": "bob", "mode": "udp",
            "token": token(&app, "room", "bob")}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let e = join_error(
        c.join(&app.app_id, "room", &token(&app, "room", "alice"), "alice")
            .await,
    );
    assert!(matches!(e, JoinError::QuotaExceeded(_)), "{e:?}");
    assert!(e.retryable());

    // No edge: an App ID whose pool has none.
    let app = t
        .create_app(json!({"name": "empty", "pool": "pool-empty"}))
        .await;
    let e = join_error(
        c.join(&app.app_id, "room", &token(&app, "room", "alice"), "alice")
            .await,
    );
    assert!(matches!(e, JoinError::NoEdgeAvailable(_)), "{e:?}");

    // After all of that the client is still usable: disconnected, proxy still started.
    assert_eq!(c.connection_state(), ConnectionState::Disconnected);
    c.start_proxy_server(Some(4)).unwrap();
    c.stop_proxy_server().unwrap();
    t.shutdown().await;
}

#[tokio::test]
async fn control_plane_unreachable() {
    let port = free_ports(1)[0]; // nothing listens there
    let c = client_sdk::Client::new(client_sdk::ClientConfig {
        control_url: format!("https://127.0.0.1:{port}"),
        ..Default::default()
    })
    .unwrap();
    c.start_proxy_server(None).unwrap();
    let e = join_error(c.join("app", "room", "t", "alice").await);
    assert!(matches!(e, JoinError::ControlPlaneUnreachable(_)), "{e:?}");
    assert_eq!(c.connection_state(), ConnectionState::Disconnected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_control_plane_is_unreachable() {
    let t = TestControl::start(|_| {}).await;
    let c = client_sdk::Client::new(client_sdk::ClientConfig {
        control_url: t.base.clone(),
        ..Default::default() // no ca_pem: the dev certificate is not trusted
    })
    .unwrap();
    c.start_proxy_server(None).unwrap();
    let e = join_error(c.join("app", "room", "t", "alice").await);
    match &e {
        JoinError::ControlPlaneUnreachable(m) => assert!(m.to_lowercase().contains("cert"), "{m}"),
        _ => panic!("{e:?}"),
    }
}
