//! The signalling relay (`edge::signal`): admission (tickets, the upstream allow-list), the
//! relay itself over WebSocket and TCP upstreams, its limits, and the /v1/proxy forward.
//!
//! Everything runs on 127.0.0.1. Addresses the policy must refuse (metadata, private space)
//! are only ever *named*: admission refuses them before any packet is sent, and the one case
//! that must pass the policy without a reachable upstream is checked with a request that stops
//! before the connect.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use axum::extract::{ConnectInfo, Path};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use axum::Router;
use credentials::ticket::{sign_ticket, TicketClaims};
use credentials::{Secret, SecretSet};
use edge::signal::{router, SignalState};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use turn_proto::policy::{PeerPolicy, PeerPolicyConfig};

const NOW: u64 = 1_700_000_000;
const WAIT: Duration = Duration::from_secs(5);

type ClientWs = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn now() -> u64 {
    NOW
}

fn keys() -> SecretSet {
    SecretSet::new(vec![Secret::new("k1", "ticket secret one")]).unwrap()
}

fn claims(upstreams: &[&str], expires_at: u64) -> TicketClaims {
    TicketClaims {
        app_id: "app1".into(),
        session: "s-1".into(),
        upstreams: upstreams.iter().map(|u| u.to_string()).collect(),
        expires_at,
    }
}

fn ticket(upstreams: &[&str]) -> String {
    sign_ticket(&keys(), &claims(upstreams, NOW + 300))
}

/// Loopback allowed only through the development flag; nothing else is.
fn dev_policy() -> PeerPolicy {
    PeerPolicy::new(PeerPolicyConfig {
        rtn_prefixes: vec![],
        dangerous_allow_loopback_peers: true,
        ..Default::default()
    })
}

/// A production-like policy: the given RTN prefixes, no loopback.
fn safe_policy(prefixes: &[&str]) -> PeerPolicy {
    PeerPolicy::new(PeerPolicyConfig {
        rtn_prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
        dangerous_allow_loopback_peers: false,
        ..Default::default()
    })
}

fn state(policy: PeerPolicy) -> SignalState {
    SignalState {
        tickets: Arc::new(ArcSwapOption::from_pointee(keys())),
        policy,
        control: None,
        connect_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(30),
        max_frame_bytes: 1 << 20,
        now_unix: now,
    }
}

async fn bind() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// Serves `app` on `listener` the way the edge's listeners do: with the client's address.
fn serve_on(listener: TcpListener, app: Router) {
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
}

async fn serve(state: SignalState) -> SocketAddr {
    let (l, a) = bind().await;
    serve_on(l, router(Arc::new(state)));
    a
}

fn ws_url(edge: SocketAddr, upstream: &str, ticket: &str, extra: &str) -> String {
    format!("ws://{edge}/ws?upstream={upstream}&ticket={ticket}{extra}")
}

/// A WebSocket echo server; records the request path of every handshake and every close frame
/// it receives (`"close CODE REASON"`).
async fn ws_echo() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let (l, a) = bind().await;
    let paths = Arc::new(Mutex::new(Vec::new()));
    let seen = paths.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                // The callback's error type is tungstenite's, not ours to shrink.
                #[allow(clippy::result_large_err)]
                let cb = |req: &Request, resp: Response| {
                    seen.lock().unwrap().push(req.uri().to_string());
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(s, cb).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Close(f) = &m {
                        let f = f.as_ref().map(|f| format!(" {} {}", f.code, f.reason));
                        seen.lock()
                            .unwrap()
                            .push(format!("close{}", f.unwrap_or_default()));
                    } else if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (a, paths)
}

/// A TCP echo server.
async fn tcp_echo() -> SocketAddr {
    let (l, a) = bind().await;
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    a
}

/// A listener that counts connections and drops them: proves a refused relay never reached it.
async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>) {
    let (l, a) = bind().await;
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (a, n)
}

async fn open(url: &str) -> ClientWs {
    tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake timed out")
        .unwrap_or_else(|e| panic!("relay {url} refused: {e}"))
        .0
}

/// Expects the WebSocket handshake to be refused; returns the status and the JSON body.
async fn refused(url: &str) -> (u16, serde_json::Value) {
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("refusal took too long")
    {
        Ok(_) => panic!("relay opened for {url}"),
        Err(WsError::Http(resp)) => {
            let body = resp.body().clone().expect("error body");
            (
                resp.status().as_u16(),
                serde_json::from_slice(&body).expect("JSON error body"),
            )
        }
        Err(e) => panic!("unexpected error for {url}: {e}"),
    }
}

fn assert_refusal(got: &(u16, serde_json::Value), status: u16, code: &str, message: &str) {
    assert_eq!(got.0, status, "{got:?}");
    assert_eq!(got.1["code"], code, "{got:?}");
    assert_eq!(got.1["message"], message, "{got:?}");
    assert!(got.1["retryable"].is_boolean(), "{got:?}");
}

async fn next(ws: &mut ClientWs) -> Message {
    tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("no frame in time")
        .expect("stream ended")
        .expect("read error")
}

/// Reads until a close frame (skipping data) and returns it.
async fn close_frame(ws: &mut ClientWs) -> Option<CloseFrame> {
    loop {
        match next(ws).await {
            Message::Close(f) => return f,
            _ => continue,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Relaying

#[tokio::test]
async fn ws_relay_keeps_text_and_binary_in_order() {
    let (up, paths) = ws_echo().await;
    let edge = serve(state(dev_policy())).await;
    let upstream = up.to_string();
    let mut ws = open(&ws_url(edge, &upstream, &ticket(&[&upstream]), "")).await;

    let sent: Vec<Message> = (0..100)
        .map(|i| {
            if i % 2 == 0 {
                Message::text(format!("text message {i}"))
            } else {
                Message::binary(vec![i as u8; i * 37])
            }
        })
        .collect();
    for m in &sent {
        ws.send(m.clone()).await.unwrap();
    }
    for m in &sent {
        assert_eq!(&next(&mut ws).await, m);
    }

    // Pings are answered by the edge, not forwarded.
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(
        next(&mut ws).await,
        Message::Pong(b"are you there".to_vec().into())
    );

    // The client's close goes through, and the relay answers it.
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    let f = close_frame(&mut ws).await.expect("close code");
    assert_eq!(f.code, CloseCode::Normal);
    // ...and reaches the upstream with its code and reason.
    wait_for(&paths, 2).await;
    assert_eq!(paths.lock().unwrap().as_slice(), ["/", "close 1000 bye"]);
}

#[tokio::test]
async fn a_vanished_client_closes_the_upstream() {
    let (up, seen) = ws_echo().await;
    let edge = serve(state(dev_policy())).await;
    let upstream = up.to_string();
    let mut ws = open(&ws_url(edge, &upstream, &ticket(&[&upstream]), "")).await;
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("hi"));
    drop(ws); // No close frame: the TCP connection just goes away.
    wait_for(&seen, 2).await;
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["/", "close 1001 client gone"]
    );
}

/// Waits until `log` holds `n` entries.
async fn wait_for(log: &Mutex<Vec<String>>, n: usize) {
    let deadline = std::time::Instant::now() + WAIT;
    while log.lock().unwrap().len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn ws_relay_requests_the_given_path() {
    let (up, paths) = ws_echo().await;
    let edge = serve(state(dev_policy())).await;
    let upstream = up.to_string();
    let mut ws = open(&ws_url(
        edge,
        &upstream,
        &ticket(&[&upstream]),
        "&proto=ws&path=%2Fsignal%3Froom%3D7",
    ))
    .await;
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("hi"));
    assert_eq!(paths.lock().unwrap().as_slice(), ["/signal?room=7"]);
}

#[tokio::test]
async fn tcp_relay_carries_bytes_both_ways() {
    let up = tcp_echo().await;
    let edge = serve(state(dev_policy())).await;
    let upstream = up.to_string();
    let mut ws = open(&ws_url(
        edge,
        &upstream,
        &ticket(&[&upstream]),
        "&proto=tcp",
    ))
    .await;

    let mut expected = Vec::new();
    for i in 0..50usize {
        let chunk: Vec<u8> = (0..(i * 101 + 1)).map(|j| (i + j) as u8).collect();
        expected.extend_from_slice(&chunk);
        ws.send(Message::binary(chunk)).await.unwrap();
    }
    // Text frames are bytes to a TCP upstream too.
    ws.send(Message::text("tail")).await.unwrap();
    expected.extend_from_slice(b"tail");

    let mut got = Vec::new();
    while got.len() < expected.len() {
        match next(&mut ws).await {
            Message::Binary(b) => got.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, expected);
}

#[tokio::test]
async fn a_slow_upstream_stalls_the_client_and_loses_nothing() {
    // The upstream reads nothing until released, then counts every byte to EOF.
    let (l, up) = bind().await;
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let (total_tx, total_rx) = tokio::sync::oneshot::channel::<usize>();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        release_rx.await.unwrap();
        let mut sink = Vec::new();
        let n = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut sink)
            .await
            .unwrap();
        total_tx.send(n).unwrap();
    });
    let edge = serve(state(dev_policy())).await;
    let upstream = up.to_string();
    let mut ws = open(&ws_url(
        edge,
        &upstream,
        &ticket(&[&upstream]),
        "&proto=tcp",
    ))
    .await;

    // Without backpressure the edge would take everything and the sends would never block.
    const CHUNK: usize = 256 * 1024;
    const NEVER_STALLED: usize = 256 * 1024 * 1024;
    let mut sent = 0usize;
    loop {
        let mut send = Box::pin(ws.send(Message::binary(vec![0x5a; CHUNK])));
        match tokio::time::timeout(Duration::from_millis(500), &mut send).await {
            Ok(r) => r.unwrap(),
            Err(_) => {
                // Stalled: let the upstream read, and the pending send completes.
                release_tx.send(()).unwrap();
                tokio::time::timeout(WAIT, send).await.unwrap().unwrap();
                sent += CHUNK;
                break;
            }
        }
        sent += CHUNK;
        assert!(sent < NEVER_STALLED, "sends never stalled");
    }
    ws.send(Message::Close(None)).await.unwrap();
    let total = tokio::time::timeout(WAIT, total_rx).await.unwrap().unwrap();
    assert_eq!(total, sent);
}

#[tokio::test]
async fn tcp_upstream_eof_closes_the_client_normally() {
    let (l, up) = bind().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"hello").await.unwrap();
        // EOF right after.
    });
    let edge = serve(state(dev_policy())).await;
    let upstream = up.to_string();
    let mut ws = open(&ws_url(
        edge,
        &upstream,
        &ticket(&[&upstream]),
        "&proto=tcp",
    ))
    .await;
    assert_eq!(next(&mut ws).await, Message::binary(b"hello".to_vec()));
    let f = close_frame(&mut ws).await.expect("close code");
    assert_eq!(f.code, CloseCode::Normal);
}

#[tokio::test]
async fn upstream_close_code_reaches_the_client() {
    let (l, up) = bind().await;
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
        ws.close(Some(CloseFrame {
            code: CloseCode::Library(4001),
            reason: "room closed".into(),
        }))
        .await
        .unwrap();
        while let Some(Ok(_)) = ws.next().await {}
    });
    let edge = serve(state(dev_policy())).await;
    let upstream = up.to_string();
    let mut ws = open(&ws_url(edge, &upstream, &ticket(&[&upstream]), "")).await;
    let f = close_frame(&mut ws).await.expect("close code");
    assert_eq!(f.code, CloseCode::Library(4001));
    assert_eq!(f.reason, "room closed");
}

#[tokio::test]
async fn idle_relay_is_closed() {
    let (up, _) = ws_echo().await;
    let edge = serve(SignalState {
        idle_timeout: Duration::from_millis(300),
        ..state(dev_policy())
    })
    .await;
    let upstream = up.to_string();
    let mut ws = open(&ws_url(edge, &upstream, &ticket(&[&upstream]), "")).await;
    // Activity keeps it open past one idle period...
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        ws.send(Message::text("tick")).await.unwrap();
        assert_eq!(next(&mut ws).await, Message::text("tick"));
    }
    // ...silence closes it.
    let started = std::time::Instant::now();
    let f = close_frame(&mut ws).await.expect("close code");
    assert_eq!(f.code, CloseCode::Normal);
    assert_eq!(f.reason, "idle timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn oversized_frame_closes_the_relay() {
    let (up, _) = ws_echo().await;
    let edge = serve(SignalState {
        max_frame_bytes: 1024,
        ..state(dev_policy())
    })
    .await;
    let upstream = up.to_string();
    let mut ws = open(&ws_url(edge, &upstream, &ticket(&[&upstream]), "")).await;
    // At the limit: relayed.
    ws.send(Message::binary(vec![7u8; 1024])).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(vec![7u8; 1024]));
    // Over it: the relay ends with 1009 (Message Too Big).
    ws.send(Message::binary(vec![7u8; 4096])).await.unwrap();
    let f = close_frame(&mut ws).await.expect("close code");
    assert_eq!(f.code, CloseCode::Size);
}

// ---------------------------------------------------------------------------------------------
// Tickets

#[tokio::test]
async fn no_ticket_is_401() {
    let (up, hits) = counting_listener().await;
    let edge = serve(state(dev_policy())).await;
    let got = refused(&format!("ws://{edge}/ws?upstream={up}")).await;
    assert_refusal(&got, 401, "UNAUTHORIZED", "missing ticket");
    let got = refused(&ws_url(edge, &up.to_string(), "", "")).await;
    assert_refusal(&got, 401, "UNAUTHORIZED", "missing ticket");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn forged_ticket_is_401() {
    let (up, hits) = counting_listener().await;
    let edge = serve(state(dev_policy())).await;
    let upstream = up.to_string();

    // Same key id, another secret: what someone without the key produces.
    let other = SecretSet::new(vec![Secret::new("k1", "not the secret")]).unwrap();
    let forged = sign_ticket(&other, &claims(&[&upstream], NOW + 300));
    let got = refused(&ws_url(edge, &upstream, &forged, "")).await;
    assert_refusal(&got, 401, "UNAUTHORIZED", "forged ticket");

    // A genuine ticket with its upstream edited.
    let genuine = ticket(&["rtn.example:443"]);
    let (signed, mac) = genuine.rsplit_once('.').unwrap();
    let (prefix, _) = signed.rsplit_once('.').unwrap();
    let payload = sign_ticket(&keys(), &claims(&[&upstream], NOW + 300));
    let payload = payload
        .rsplit_once('.')
        .unwrap()
        .0
        .rsplit_once('.')
        .unwrap()
        .1;
    let tampered = format!("{prefix}.{payload}.{mac}");
    let got = refused(&ws_url(edge, &upstream, &tampered, "")).await;
    assert_refusal(&got, 401, "UNAUTHORIZED", "forged ticket");

    let unknown = SecretSet::new(vec![Secret::new("k9", "ticket secret one")]).unwrap();
    let got = refused(&ws_url(
        edge,
        &upstream,
        &sign_ticket(&unknown, &claims(&[&upstream], NOW + 300)),
        "",
    ))
    .await;
    assert_refusal(
        &got,
        401,
        "UNAUTHORIZED",
        "ticket signed with an unknown key",
    );

    let got = refused(&ws_url(edge, &upstream, "v1.k1.garbage", "")).await;
    assert_refusal(&got, 401, "UNAUTHORIZED", "malformed ticket");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn expired_ticket_is_401() {
    let (up, hits) = counting_listener().await;
    let edge = serve(state(dev_policy())).await;
    let upstream = up.to_string();
    for expires_at in [NOW, NOW - 1, 0] {
        let t = sign_ticket(&keys(), &claims(&[&upstream], expires_at));
        let got = refused(&ws_url(edge, &upstream, &t, "")).await;
        assert_refusal(&got, 401, "UNAUTHORIZED", "expired ticket");
        assert_eq!(got.1["retryable"], false);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn edge_without_ticket_keys_refuses_with_401() {
    let (up, _) = counting_listener().await;
    let edge = serve(SignalState {
        tickets: Arc::new(ArcSwapOption::empty()),
        ..state(dev_policy())
    })
    .await;
    let upstream = up.to_string();
    let got = refused(&ws_url(edge, &upstream, &ticket(&[&upstream]), "")).await;
    assert_refusal(&got, 401, "UNAUTHORIZED", "edge has no ticket keys yet");
    assert_eq!(got.1["retryable"], true);
}

#[tokio::test]
async fn ticket_for_another_upstream_is_403() {
    let (up, hits) = counting_listener().await;
    let (other, other_hits) = counting_listener().await;
    let edge = serve(state(dev_policy())).await;
    let t = ticket(&[&other.to_string()]);
    let got = refused(&ws_url(edge, &up.to_string(), &t, "")).await;
    assert_refusal(
        &got,
        403,
        "UPSTREAM_FORBIDDEN",
        "ticket does not name this upstream",
    );
    // Matching is exact: the same address spelt differently is another upstream.
    let got = refused(&ws_url(
        edge,
        &format!("localhost:{}", other.port()),
        &t,
        "",
    ))
    .await;
    assert_eq!(got.0, 403);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    assert_eq!(other_hits.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------------------------
// The upstream allow-list

#[tokio::test]
async fn denied_upstreams_are_403_and_never_contacted() {
    let (up, hits) = counting_listener().await;
    let edge = serve(state(safe_policy(&["203.0.113.0/24"]))).await;
    let port = up.port();
    let cases = [
        (format!("127.0.0.1:{port}"), "loopback"),
        (format!("localhost:{port}"), "loopback"),
        (format!("[::1]:{port}"), "loopback"),
        ("169.254.169.254:80".to_string(), "link_local"),
        ("10.1.2.3:9000".to_string(), "private_not_listed"),
        ("192.168.1.1:443".to_string(), "private_not_listed"),
        ("0.0.0.0:80".to_string(), "unspecified"),
        ("[::ffff:127.0.0.1]:80".to_string(), "loopback"),
        ("198.51.100.1:443".to_string(), "not_in_rtn_prefixes"),
    ];
    for (upstream, reason) in cases {
        let got = refused(&ws_url(edge, &upstream, &ticket(&[&upstream]), "")).await;
        assert_refusal(
            &got,
            403,
            "UPSTREAM_FORBIDDEN",
            &format!("upstream not allowed: {reason}"),
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_listed_private_prefix_passes_the_policy() {
    let policy = safe_policy(&["10.1.2.0/24"]);
    let target: SocketAddr = "10.1.2.3:9000".parse().unwrap();
    assert_eq!(policy.check(target), Ok(target));
    assert!(policy.check("10.1.3.3:9000".parse().unwrap()).is_err());

    // Through the router: a plain GET (not an upgrade) is admitted past the policy and stops
    // at the upgrade check, before any connect — so nothing is sent to 10.1.2.3.
    let edge = serve(state(policy)).await;
    let upstream = target.to_string();
    let url = format!(
        "http://{edge}/ws?upstream={upstream}&ticket={}",
        ticket(&[&upstream])
    );
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "BAD_REQUEST");

    // The same request to an unlisted private address is the policy's 403.
    let upstream = "10.1.3.3:9000";
    let url = format!(
        "http://{edge}/ws?upstream={upstream}&ticket={}",
        ticket(&[upstream])
    );
    assert_eq!(
        reqwest::get(&url).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn the_edge_itself_is_not_an_upstream() {
    let (l, edge) = bind().await;
    let policy = PeerPolicy::new(PeerPolicyConfig {
        own_addresses: vec![edge],
        dangerous_allow_loopback_peers: true,
        ..Default::default()
    });
    serve_on(l, router(Arc::new(state(policy))));
    let upstream = edge.to_string();
    let got = refused(&ws_url(edge, &upstream, &ticket(&[&upstream]), "")).await;
    assert_refusal(
        &got,
        403,
        "UPSTREAM_FORBIDDEN",
        "upstream not allowed: own_address",
    );
}

#[tokio::test]
async fn malformed_requests_are_400() {
    let (up, hits) = counting_listener().await;
    let edge = serve(state(dev_policy())).await;
    let upstream = up.to_string();
    let t = ticket(&[&upstream, "no-port", "[::1:5"]);
    let got = refused(&format!("ws://{edge}/ws?ticket={t}")).await;
    assert_refusal(&got, 400, "BAD_REQUEST", "missing upstream");
    let got = refused(&ws_url(edge, "no-port", &t, "")).await;
    assert_refusal(&got, 400, "BAD_REQUEST", "upstream must be HOST:PORT");
    let got = refused(&ws_url(edge, &upstream, &t, "&proto=udp")).await;
    assert_refusal(&got, 400, "BAD_REQUEST", "proto must be ws or tcp");
    let got = refused(&ws_url(edge, &upstream, &t, "&path=nope")).await;
    assert_eq!(got.0, 400);
    let got = refused(&ws_url(edge, &upstream, &t, "&path=%2Fa%20b")).await;
    assert_eq!(got.0, 400);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------------------------
// Upstream failures

#[tokio::test]
async fn upstream_down_is_502() {
    let (l, up) = bind().await;
    drop(l); // Nothing listens there any more: connection refused.
    let edge = serve(state(dev_policy())).await;
    let upstream = up.to_string();
    for proto in ["ws", "tcp"] {
        let got = refused(&ws_url(
            edge,
            &upstream,
            &ticket(&[&upstream]),
            &format!("&proto={proto}"),
        ))
        .await;
        assert_refusal(
            &got,
            502,
            "UPSTREAM_UNAVAILABLE",
            "upstream refused or unreachable",
        );
        assert_eq!(got.1["retryable"], true);
    }
}

#[tokio::test]
async fn upstream_refusing_the_handshake_is_502() {
    let (l, up) = bind().await;
    serve_on(
        l,
        Router::new().route("/", get(|| async { "not a websocket" })),
    );
    let edge = serve(state(dev_policy())).await;
    let upstream = up.to_string();
    let got = refused(&ws_url(edge, &upstream, &ticket(&[&upstream]), "")).await;
    assert_refusal(
        &got,
        502,
        "UPSTREAM_UNAVAILABLE",
        "upstream refused the WebSocket handshake",
    );
}

#[tokio::test]
async fn slow_upstream_is_504() {
    // Accepts TCP (the kernel does, from the backlog) but never answers the handshake.
    let (_listener, up) = bind().await;
    let edge = serve(SignalState {
        connect_timeout: Duration::from_millis(300),
        ..state(dev_policy())
    })
    .await;
    let upstream = up.to_string();
    let started = std::time::Instant::now();
    let got = refused(&ws_url(edge, &upstream, &ticket(&[&upstream]), "")).await;
    assert_refusal(
        &got,
        504,
        "UPSTREAM_TIMEOUT",
        "upstream WebSocket handshake timed out",
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

// ---------------------------------------------------------------------------------------------
// Forwarding /v1/proxy

/// A stand-in control plane: echoes what it received as JSON.
async fn stub_control() -> SocketAddr {
    async fn proxy(
        ConnectInfo(peer): ConnectInfo<SocketAddr>,
        headers: HeaderMap,
        body: String,
    ) -> impl axum::response::IntoResponse {
        let h = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let echo = serde_json::json!({
            "body": body,
            "xff": h("x-forwarded-for"),
            "content_type": h("content-type"),
            "authorization": h("authorization"),
            "peer": peer.ip().to_string(),
        });
        (
            StatusCode::CREATED,
            [("content-type", "application/vnd.cloudproxy.test+json")],
            echo.to_string(),
        )
    }
    async fn release(Path(session): Path<String>, headers: HeaderMap) -> (StatusCode, String) {
        let xff = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if session == "s 1/2" && xff == "127.0.0.1" {
            (StatusCode::NO_CONTENT, String::new())
        } else {
            (StatusCode::NOT_FOUND, format!("no session {session:?}"))
        }
    }
    let (l, a) = bind().await;
    serve_on(
        l,
        Router::new()
            .route("/v1/proxy", post(proxy))
            .route("/v1/proxy/{session}", delete(release)),
    );
    a
}

#[tokio::test]
async fn proxy_info_is_forwarded_to_the_control_plane() {
    let control = stub_control().await;
    let edge = serve(SignalState {
        control: Some((format!("http://{control}/"), reqwest::Client::new())),
        ..state(safe_policy(&[]))
    })
    .await;
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("http://{edge}/v1/proxy"))
        .header("content-type", "application/json")
        .header("authorization", "Bearer client-token")
        // A client cannot pick the address the control plane sees.
        .header("x-forwarded-for", "6.6.6.6")
        .body(r#"{"app_id":"app1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.cloudproxy.test+json"
    );
    let echo: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(echo["body"], r#"{"app_id":"app1"}"#);
    assert_eq!(echo["xff"], "127.0.0.1");
    assert_eq!(echo["content_type"], "application/json");
    assert_eq!(echo["authorization"], "Bearer client-token");

    // DELETE with a session that needs escaping; status and (empty) body come back.
    let resp = http
        .delete(format!("http://{edge}/v1/proxy/s%201%2F2"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = http
        .delete(format!("http://{edge}/v1/proxy/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.text().await.unwrap(), r#"no session "other""#);
}

#[tokio::test]
async fn forward_failures_are_json_errors() {
    let http = reqwest::Client::new();

    // No control plane configured: 404.
    let edge = serve(state(safe_policy(&[]))).await;
    let resp = http
        .post(format!("http://{edge}/v1/proxy"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "NOT_FOUND");

    // Control plane down: 502.
    let (l, down) = bind().await;
    drop(l);
    let edge = serve(SignalState {
        control: Some((format!("http://{down}"), reqwest::Client::new())),
        ..state(safe_policy(&[]))
    })
    .await;
    let resp = http
        .post(format!("http://{edge}/v1/proxy"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "UPSTREAM_UNAVAILABLE");
    assert_eq!(body["retryable"], true);
}

#[tokio::test]
async fn other_routes_are_404() {
    let edge = serve(state(safe_policy(&[]))).await;
    let http = reqwest::Client::new();
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/v1/proxy"),
        ("POST", "/v1/admin/apps"),
        ("GET", "/wss"),
    ] {
        let resp = http
            .request(method.parse().unwrap(), format!("http://{edge}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} {path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "NOT_FOUND");
    }
}

// ---------------------------------------------------------------------------------------------
// Logs

/// Collects formatted events (level + fields) on the current thread.
struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut f = Fields(format!("{} ", event.metadata().level()));
        event.record(&mut f);
        self.0.lock().unwrap().push(f.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(flavor = "current_thread")]
async fn refusals_are_logged_with_reason_and_client() {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let _guard = tracing::subscriber::set_default(Capture(lines.clone()));
    let edge = serve(state(safe_policy(&[]))).await;
    let got = refused(&ws_url(edge, "169.254.169.254:80", "v1.k1.x.y", "")).await;
    assert_eq!(got.0, 401);
    let upstream = "169.254.169.254:80";
    let got = refused(&ws_url(edge, upstream, &ticket(&[upstream]), "")).await;
    assert_eq!(got.0, 403);

    let lines = lines.lock().unwrap().clone();
    let refusals: Vec<&String> = lines.iter().filter(|l| l.contains("refused")).collect();
    assert_eq!(refusals.len(), 2, "{lines:#?}");
    for l in &refusals {
        assert!(l.starts_with("INFO "), "{l}");
        assert!(l.contains("client=127.0.0.1:"), "{l}");
        assert!(l.contains("requested=\"169.254.169.254:80\""), "{l}");
    }
    assert!(refusals[0].contains("malformed ticket"), "{}", refusals[0]);
    assert!(
        refusals[1].contains("upstream not allowed: link_local"),
        "{}",
        refusals[1]
    );
    assert!(refusals[1].contains("cloud metadata"), "{}", refusals[1]);
}
