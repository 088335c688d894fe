//! RFC 6062 through the real edge: a TCP allocation, Connect to a TCP peer, ConnectionBind on
//! a second connection, bytes both ways; and a peer connecting in, announced by
//! ConnectionAttempt, whose early bytes (sent before ConnectionBind) arrive after the bind.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use edge::config::UserSpec;
use edge::{Edge, EdgeConfig, PortRange};
use integration_tests::free_ports;
use integration_tests::turn_client::{Client, Link};
use turn_proto::codec::{attr, Class, Message, Method};

fn start_edge() -> (Edge, SocketAddr) {
    let p = free_ports(2);
    let cfg = EdgeConfig {
        signal_port: 0, // no signalling relay here (the default 4000 would be shared)
        listen: "127.0.0.1".parse().unwrap(),
        udp_ports: PortRange {
            first: p[0],
            last: p[0],
        },
        tcp_ports: PortRange {
            first: p[1],
            last: p[1],
        },
        relay_ports: PortRange {
            first: 63500,
            last: 63999,
        },
        users: vec![UserSpec {
            name: "tina".into(),
            password: "tcp-pass".into(),
        }],
        dangerous_allow_loopback_peers: true,
        ..EdgeConfig::default()
    };
    let edge = Edge::start(cfg).unwrap();
    (edge, SocketAddr::from(([127, 0, 0, 1], p[1])))
}

fn read_exact_timeout(s: &mut TcpStream, n: usize) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).expect("bytes arrive");
    buf
}

/// Sends ConnectionBind for `id` on a fresh connection; returns the connection, now a pipe,
/// and any pipe bytes that arrived in the same read as the response (a peer's early bytes
/// may follow it at once).
fn bind_data_connection(server: SocketAddr, id: u32) -> (TcpStream, Vec<u8>) {
    let mut data = Client::new(Link::tcp(server).unwrap(), "tina", "tcp-pass");
    let r = data
        .request(
            Method::ConnectionBind,
            &[(attr::CONNECTION_ID, &id.to_be_bytes())],
            &[],
        )
        .unwrap();
    assert_eq!(r.class, Class::Success, "ConnectionBind: {r:?}");
    match data.link {
        Link::Tcp(s, pending) => (s, pending),
        Link::Udp(..) | Link::Tls(..) => unreachable!("a TCP link was made above"),
    }
}

#[test]
fn connect_then_bind_relays_both_ways() {
    let (_edge, server) = start_edge();
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut control = Client::new(Link::tcp(server).unwrap(), "tina", "tcp-pass");
    let r = control.allocate(6, &[]).unwrap();
    assert_eq!(r.class, Class::Success, "{r:?}");
    let relayed = r
        .message()
        .xor_address(attr::XOR_RELAYED_ADDRESS)
        .unwrap()
        .unwrap();

    let r = control.request(Method::Connect, &[], &[peer_addr]).unwrap();
    assert_eq!(r.class, Class::Success, "Connect: {r:?}");
    let id = r
        .message()
        .u32_attr(attr::CONNECTION_ID)
        .unwrap()
        .expect("CONNECTION-ID");
    let (mut at_peer, from) = peer.accept().unwrap();
    assert_eq!(from, relayed, "the peer sees the relayed transport address");

    let again = control.request(Method::Connect, &[], &[peer_addr]).unwrap();
    assert_eq!(
        again.code,
        Some(446),
        "a second Connect to the same peer: {again:?}"
    );

    let (mut pipe, early) = bind_data_connection(server, id);
    assert!(early.is_empty(), "the peer sent nothing yet");
    pipe.write_all(b"client->peer").unwrap();
    assert_eq!(read_exact_timeout(&mut at_peer, 12), b"client->peer");
    at_peer.write_all(b"peer->client!").unwrap();
    assert_eq!(read_exact_timeout(&mut pipe, 13), b"peer->client!");
    // A larger transfer keeps order and loses nothing.
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut w = pipe.try_clone().unwrap();
    let b2 = blob.clone();
    let t = std::thread::spawn(move || w.write_all(&b2).unwrap());
    assert_eq!(read_exact_timeout(&mut at_peer, blob.len()), blob);
    t.join().unwrap();
}

#[test]
fn connect_to_closed_port_is_447() {
    let (_edge, server) = start_edge();
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut control = Client::new(Link::tcp(server).unwrap(), "tina", "tcp-pass");
    assert_eq!(control.allocate(6, &[]).unwrap().class, Class::Success);
    let r = control.request(Method::Connect, &[], &[closed]).unwrap();
    assert_eq!(r.code, Some(447), "{r:?}");
}

#[test]
fn incoming_peer_data_before_bind_is_delivered_after_it() {
    let (_edge, server) = start_edge();
    let mut control = Client::new(Link::tcp(server).unwrap(), "tina", "tcp-pass");
    let r = control.allocate(6, &[]).unwrap();
    assert_eq!(r.class, Class::Success);
    let relayed = r
        .message()
        .xor_address(attr::XOR_RELAYED_ADDRESS)
        .unwrap()
        .unwrap();
    // The peer will connect from some port of 127.0.0.1: permission is per IP.
    let r = control
        .request(
            Method::CreatePermission,
            &[],
            &[SocketAddr::from(([127, 0, 0, 1], 1))],
        )
        .unwrap();
    assert_eq!(r.class, Class::Success, "{r:?}");

    let mut peer = TcpStream::connect(relayed).unwrap();
    peer.write_all(b"early bytes before the bind").unwrap();
    // ConnectionAttempt indication on the control connection.
    let attempt = loop {
        let frame = control
            .link
            .recv()
            .unwrap()
            .expect("ConnectionAttempt arrives");
        let m = Message::decode(&frame).unwrap();
        if m.message_type().method == Method::ConnectionAttempt {
            break frame;
        }
    };
    let m = Message::decode(&attempt).unwrap();
    let id = m
        .u32_attr(attr::CONNECTION_ID)
        .unwrap()
        .expect("CONNECTION-ID");
    let announced = m.xor_address(attr::XOR_PEER_ADDRESS).unwrap().unwrap();
    assert_eq!(announced, peer.local_addr().unwrap());
    std::thread::sleep(Duration::from_millis(200));
    let (mut pipe, mut got) = bind_data_connection(server, id);
    let want = b"early bytes before the bind";
    let rest = want.len() - got.len().min(want.len());
    if rest > 0 {
        got.extend(read_exact_timeout(&mut pipe, rest));
    }
    assert_eq!(got, want);
    pipe.write_all(b"reply").unwrap();
    assert_eq!(read_exact_timeout(&mut peer, 5), b"reply");
}

#[test]
fn incoming_peer_without_permission_is_closed() {
    let (_edge, server) = start_edge();
    let mut control = Client::new(Link::tcp(server).unwrap(), "tina", "tcp-pass");
    let r = control.allocate(6, &[]).unwrap();
    let relayed = r
        .message()
        .xor_address(attr::XOR_RELAYED_ADDRESS)
        .unwrap()
        .unwrap();
    let mut peer = TcpStream::connect(relayed).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut b = [0u8; 1];
    let n = peer.read(&mut b);
    assert!(
        matches!(n, Ok(0)) || n.is_err(),
        "connection must be closed, got {n:?}"
    );
}
