//! The signalling gateway over a real WebSocket: join, member events, leave, refusals.

mod common;

use common::{start_rtn, token, Ws, APP};
use rtn::protocol::{ClientMsg, ServerMsg};

fn error_code(msg: &ServerMsg) -> &str {
    match msg {
        ServerMsg::Error { code, .. } => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn join_member_events_and_leave() {
    let rtn = start_rtn().await;
    let mut a = Ws::connect(&rtn).await;
    let mut b = Ws::connect(&rtn).await;

    assert_eq!(
        a.join("room1", "alice").await,
        ServerMsg::Joined {
            uid: "alice".into(),
            members: vec![]
        }
    );
    assert_eq!(
        b.join("room1", "bob").await,
        ServerMsg::Joined {
            uid: "bob".into(),
            members: vec!["alice".into()]
        }
    );
    assert_eq!(
        a.recv().await,
        ServerMsg::MemberJoined { uid: "bob".into() }
    );

    // A member of another channel is not seen.
    let mut c = Ws::connect(&rtn).await;
    assert_eq!(
        c.join("room2", "carol").await,
        ServerMsg::Joined {
            uid: "carol".into(),
            members: vec![]
        }
    );

    // Leave: acknowledged, the other member is told.
    b.send(&ClientMsg::Leave).await;
    assert_eq!(b.recv().await, ServerMsg::Left);
    assert_eq!(a.recv().await, ServerMsg::MemberLeft { uid: "bob".into() });

    // Rejoin on the same socket, then disconnect abruptly: counts as leaving.
    assert_eq!(
        b.join("room1", "bob").await,
        ServerMsg::Joined {
            uid: "bob".into(),
            members: vec!["alice".into()]
        }
    );
    assert_eq!(
        a.recv().await,
        ServerMsg::MemberJoined { uid: "bob".into() }
    );
    drop(b);
    assert_eq!(a.recv().await, ServerMsg::MemberLeft { uid: "bob".into() });

    // carol (room2) heard nothing of room1: her next message is the answer to a bad request.
    c.send_text("{\"type\":\"nonsense\"}").await;
    assert_eq!(error_code(&c.recv().await), "BAD_MESSAGE");
}

#[tokio::test]
async fn refusals() {
    let rtn = start_rtn().await;
    let mut a = Ws::connect(&rtn).await;

    // A token for another uid.
    a.send(&ClientMsg::Join {
        app_id: APP.into(),
        channel: "room".into(),
        uid: "mallory".into(),
        token: token("room", "alice"),
    })
    .await;
    let msg = a.recv().await;
    assert_eq!(error_code(&msg), "INVALID_TOKEN");
    if let ServerMsg::Error { message, .. } = &msg {
        assert!(!message.is_empty());
    }

    // Garbage token, unknown App ID.
    a.send(&ClientMsg::Join {
        app_id: APP.into(),
        channel: "room".into(),
        uid: "alice".into(),
        token: "v1:nope".into(),
    })
    .await;
    assert_eq!(error_code(&a.recv().await), "INVALID_TOKEN");
    a.send(&ClientMsg::Join {
        app_id: "other-app".into(),
        channel: "room".into(),
        uid: "alice".into(),
        token: token("room", "alice"),
    })
    .await;
    assert_eq!(error_code(&a.recv().await), "UNKNOWN_APP");

    // Expired token.
    let expired =
        credentials::join_token::mint_join_token(APP, common::CERT.as_bytes(), "room", "alice", 1);
    a.send(&ClientMsg::Join {
        app_id: APP.into(),
        channel: "room".into(),
        uid: "alice".into(),
        token: expired,
    })
    .await;
    assert_eq!(error_code(&a.recv().await), "TOKEN_EXPIRED");

    // Offer and leave before join.
    a.send(&ClientMsg::Offer { sdp: "v=0".into() }).await;
    assert_eq!(error_code(&a.recv().await), "NOT_JOINED");
    a.send(&ClientMsg::Leave).await;
    assert_eq!(error_code(&a.recv().await), "NOT_JOINED");

    // A refused join leaves the socket usable.
    assert!(matches!(
        a.join("room", "alice").await,
        ServerMsg::Joined { .. }
    ));
    assert_eq!(error_code(&a.join("room", "alice").await), "ALREADY_JOINED");

    // The same uid from another connection.
    let mut b = Ws::connect(&rtn).await;
    assert_eq!(error_code(&b.join("room", "alice").await), "UID_IN_USE");

    // Unparsable SDP.
    a.send(&ClientMsg::Offer {
        sdp: "not sdp".into(),
    })
    .await;
    assert_eq!(error_code(&a.recv().await), "BAD_SDP");

    // Not JSON at all.
    a.send_text("hello").await;
    assert_eq!(error_code(&a.recv().await), "BAD_MESSAGE");
}

/// The wire format, as raw JSON text (what the SDKs implement), and the SDP answer's shape.
#[tokio::test]
async fn raw_json_and_answer_shape() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    async fn next_text(ws: &mut Ws) -> serde_json::Value {
        loop {
            let m = tokio::time::timeout(std::time::Duration::from_secs(5), ws.0.next())
                .await
                .expect("in time")
                .expect("open")
                .expect("ok");
            if let Message::Text(t) = m {
                return serde_json::from_str(t.as_str()).unwrap();
            }
        }
    }

    let rtn = start_rtn().await;
    let mut a = Ws::connect(&rtn).await;
    let join = format!(
        r#"{{"type":"join","app_id":"{APP}","channel":"c","uid":"u1","token":"{}","extra":1}}"#,
        token("c", "u1")
    );
    a.send_text(&join).await;
    assert_eq!(
        next_text(&mut a).await,
        serde_json::json!({"type":"joined","uid":"u1","members":[]})
    );
    let mut b = Ws::connect(&rtn).await;
    b.send_text(
        &join
            .replace("u1", "u2")
            .replace(&token("c", "u1"), &token("c", "u2")),
    )
    .await;
    assert_eq!(
        next_text(&mut b).await,
        serde_json::json!({"type":"joined","uid":"u2","members":["u1"]})
    );
    assert_eq!(
        next_text(&mut a).await,
        serde_json::json!({"type":"member-joined","uid":"u2"})
    );
    b.send_text(r#"{"type":"candidate","candidate":"candidate:1 1 udp 1 10.0.0.1 9 typ host"}"#)
        .await;
    b.send_text(r#"{"type":"candidate"}"#).await;
    b.send_text(r#"{"type":"leave"}"#).await;
    // Candidates get no reply: the next message is the leave's.
    assert_eq!(next_text(&mut b).await, serde_json::json!({"type":"left"}));
    assert_eq!(
        next_text(&mut a).await,
        serde_json::json!({"type":"member-left","uid":"u2"})
    );

    // A real offer gets an ICE-lite answer with the one host candidate.
    let mut rtc = str0m::Rtc::builder()
        .set_crypto_provider(std::sync::Arc::new(str0m::crypto::from_feature_flags()))
        .build(std::time::Instant::now());
    let mut change = rtc.sdp_api();
    change.add_media(
        str0m::media::MediaKind::Audio,
        str0m::media::Direction::SendRecv,
        None,
        None,
        None,
    );
    let (offer, _pending) = change.apply().unwrap();
    a.send(&ClientMsg::Offer {
        sdp: offer.to_sdp_string(),
    })
    .await;
    let answer = next_text(&mut a).await;
    assert_eq!(answer["type"], "answer");
    let sdp = answer["sdp"].as_str().unwrap();
    assert!(sdp.contains("a=ice-lite"), "{sdp}");
    let cand = format!(
        "{} {} typ host",
        rtn.media_candidate().ip(),
        rtn.media_candidate().port()
    );
    assert!(sdp.contains(&cand), "{sdp}");
}

#[tokio::test]
async fn start_refuses_unspecified_public_address() {
    let err = rtn::Rtn::start(rtn::RtnConfig {
        signal_listen: "127.0.0.1:0".parse().unwrap(),
        media_listen: "127.0.0.1:0".parse().unwrap(),
        media_public: "0.0.0.0".parse().unwrap(),
        apps: Default::default(),
    })
    .await
    .unwrap_err();
    assert!(matches!(err, rtn::RtnError::BadPublicAddr(_)), "{err}");
}

/// `/` is the same gateway (the edge relay's default path); `/healthz` answers.
#[tokio::test]
async fn root_path_and_healthz() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let rtn = start_rtn().await;
    let url = format!("ws://{}/", rtn.signal_addr());
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws at /");
    let mut ws = Ws(ws);
    assert!(matches!(ws.join("c", "u").await, ServerMsg::Joined { .. }));

    let mut tcp = tokio::net::TcpStream::connect(rtn.signal_addr())
        .await
        .unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("ok\n"), "{resp}");
}
