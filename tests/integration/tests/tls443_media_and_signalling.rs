//! The point of the TLS port: in one test, on the same listener, at the same time, a TURN-over-
//! TLS allocation relays data to a UDP peer while a WebSocket goes through the edge's
//! signalling relay to an upstream echo server. The same relay also answers on the plain
//! signalling port, and refuses a relay without a valid ticket.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use credentials::ticket::{sign_ticket, TicketClaims};
use credentials::{Secret, SecretSet};
use edge::config::{SecretSpec, UserSpec};
use edge::{Edge, EdgeConfig, PortRange};
use futures_util::{SinkExt, StreamExt};
use integration_tests::control::TempDir;
use integration_tests::free_ports;
use integration_tests::tls::TestCa;
use integration_tests::turn_client::{Client, Link};
use tokio_tungstenite::tungstenite::Message as Ws;
use turn_proto::codec::{attr, Class, Message, Method};

const TICKET_SECRET: &str = "ticket-secret-for-tests";

async fn ws_echo_upstream() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn ticket(upstream: SocketAddr, expires_at: u64) -> String {
    let keys = SecretSet::new(vec![Secret::new("k1", TICKET_SECRET.as_bytes().to_vec())]).unwrap();
    sign_ticket(
        &keys,
        &TicketClaims {
            app_id: "app".into(),
            session: "s1".into(),
            upstreams: vec![upstream.to_string()],
            expires_at,
        },
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn turn_tls_relay(tls: SocketAddr, ca: Vec<u8>, rounds: usize) -> usize {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut c = Client::new(
        Link::tls(tls, &ca, "127.0.0.1", &[b"stun.turn"]).unwrap(),
        "tess",
        "tls-pass",
    );
    let r = c.allocate(17, &[]).unwrap();
    assert_eq!(r.class, Class::Success, "{r:?}");
    let relayed = r
        .message()
        .xor_address(attr::XOR_RELAYED_ADDRESS)
        .unwrap()
        .unwrap();
    assert_eq!(
        c.request(Method::CreatePermission, &[], &[peer_addr])
            .unwrap()
            .class,
        Class::Success
    );
    let mut ok = 0;
    for i in 0..rounds {
        let msg = format!("media {i}");
        c.send_indication(peer_addr, msg.as_bytes()).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (msg.as_bytes(), relayed));
        peer.send_to(&buf[..n], relayed).unwrap();
        let frame = c.link.recv().unwrap().expect("Data indication");
        assert_eq!(
            Message::decode(&frame).unwrap().get(attr::DATA),
            Some(msg.as_bytes())
        );
        ok += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_tls_and_wss_share_one_listener_at_the_same_time() {
    let dir = TempDir::new("tls443-both");
    let ca = TestCa::new("cloudproxy test CA");
    let (cert, key) = ca.write_server(&dir.0, &["127.0.0.1"], "server");
    let p = free_ports(4);
    let cfg = EdgeConfig {
        listen: "127.0.0.1".parse().unwrap(),
        udp_ports: PortRange {
            first: p[0],
            last: p[0],
        },
        tcp_ports: PortRange {
            first: p[1],
            last: p[1],
        },
        tls_port: p[2],
        signal_port: p[3],
        tls_cert: Some(cert),
        tls_key: Some(key),
        ticket_keys: vec![SecretSpec {
            key_id: "k1".into(),
            secret: TICKET_SECRET.into(),
        }],
        relay_ports: PortRange {
            first: 64500,
            last: 64999,
        },
        users: vec![UserSpec {
            name: "tess".into(),
            password: "tls-pass".into(),
        }],
        dangerous_allow_loopback_peers: true,
        ..EdgeConfig::default()
    };
    let _edge = tokio::task::spawn_blocking(move || Edge::start(cfg))
        .await
        .unwrap()
        .expect("edge");
    let tls_addr = SocketAddr::from(([127, 0, 0, 1], p[2]));
    let upstream = ws_echo_upstream().await;
    let tok = ticket(upstream, now() + 600);

    // Media: TURN over TLS on the TLS port, in a thread, while signalling runs below.
    let ca_der = ca.der.clone();
    let media = tokio::task::spawn_blocking(move || turn_tls_relay(tls_addr, ca_der, 50));

    // Signalling: WSS to the same port, through to the upstream echo server.
    let connector = tokio_rustls::TlsConnector::from(
        integration_tests::tls::client_config(&ca.der, &[b"http/1.1"]).unwrap(),
    );
    let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    let tls = connector
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let url = format!(
        "wss://127.0.0.1:{}/ws?upstream={upstream}&ticket={tok}",
        p[2]
    );
    let (mut ws, resp) = tokio_tungstenite::client_async(url.as_str(), tls)
        .await
        .expect("WSS upgrade through the edge");
    assert_eq!(resp.status(), 101);
    for i in 0..50 {
        let m = format!("signal {i}");
        ws.send(Ws::text(m.clone())).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, Ws::text(m));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        media.await.unwrap(),
        50,
        "every media round trip over TURN-TLS completed"
    );

    // The plain signalling port serves the same relay.
    let (mut plain, _) = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{}/ws?upstream={upstream}&ticket={tok}",
        p[3]
    ))
    .await
    .unwrap();
    plain.send(Ws::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        plain.next().await.unwrap().unwrap(),
        Ws::binary(vec![1u8, 2, 3])
    );

    // And refuses without a valid ticket, with the documented statuses.
    for (query, status) in [
        (format!("upstream={upstream}"), 401),
        (format!("upstream={upstream}&ticket={}x", tok), 401),
        (
            format!("upstream={upstream}&ticket={}", ticket(upstream, now() - 5)),
            401,
        ),
        (format!("upstream=127.0.0.1:1&ticket={tok}"), 403),
    ] {
        let r =
            tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/ws?{query}", p[3])).await;
        match r {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), status, "{query}")
            }
            other => panic!("{query}: expected HTTP {status}, got {other:?}"),
        }
    }
}
