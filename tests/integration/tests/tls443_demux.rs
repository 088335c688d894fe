//! One TLS port for TURN and signalling (issue 4): TURN over TLS chosen by ALPN or by the first
//! decrypted bytes, plain TURN sniffed on the same port, refusals (unknown ALPN, a silent
//! client, a flood from one address), certificate reload without dropping live connections,
//! and PROXY protocol v2 giving the real client address.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use edge::config::UserSpec;
use edge::{Edge, EdgeConfig, PortRange};
use integration_tests::control::TempDir;
use integration_tests::free_ports;
use integration_tests::tls::TestCa;
use integration_tests::turn_client::{Client, Link};
use turn_proto::codec::{attr, Class, Message, Method};

struct Setup {
    _edge: Edge,
    ca: TestCa,
    dir: TempDir,
    tls: SocketAddr,
    turn_tcp: SocketAddr,
}

fn setup(tweak: impl FnOnce(&mut EdgeConfig)) -> Setup {
    let dir = TempDir::new("tls443");
    let ca = TestCa::new("cloudproxy test CA");
    let (cert, key) = ca.write_server(&dir.0, &["127.0.0.1", "edge.test"], "server");
    let p = free_ports(3);
    let mut cfg = EdgeConfig {
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
        tls_cert: Some(cert),
        tls_key: Some(key),
        signal_port: 0,
        relay_ports: PortRange {
            first: 64000,
            last: 64499,
        },
        users: vec![UserSpec {
            name: "tess".into(),
            password: "tls-pass".into(),
        }],
        dangerous_allow_loopback_peers: true,
        handshake_timeout_secs: 1,
        max_connections_per_ip: 5,
        ..EdgeConfig::default()
    };
    tweak(&mut cfg);
    let edge = Edge::start(cfg).expect("edge starts");
    Setup {
        _edge: edge,
        ca,
        dir,
        tls: SocketAddr::from(([127, 0, 0, 1], p[2])),
        turn_tcp: SocketAddr::from(([127, 0, 0, 1], p[1])),
    }
}

/// Allocates on `link`, relays one datagram each way through a UDP peer, returns the client.
fn relay_round_trip(link: Link) -> Client {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut c = Client::new(link, "tess", "tls-pass");
    let r = c.allocate(17, &[]).unwrap();
    assert_eq!(r.class, Class::Success, "Allocate: {r:?}");
    let relayed = r
        .message()
        .xor_address(attr::XOR_RELAYED_ADDRESS)
        .unwrap()
        .unwrap();
    let r = c
        .request(Method::CreatePermission, &[], &[peer_addr])
        .unwrap();
    assert_eq!(r.class, Class::Success);
    c.send_indication(peer_addr, b"over tls").unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = peer
        .recv_from(&mut buf)
        .expect("peer receives the relayed datagram");
    assert_eq!((&buf[..n], from), (&b"over tls"[..], relayed));
    peer.send_to(b"and back", relayed).unwrap();
    let frame = c.link.recv().unwrap().expect("Data indication");
    let m = Message::decode(&frame).unwrap();
    assert_eq!(m.message_type().method, Method::Data);
    assert_eq!(m.get(attr::DATA), Some(&b"and back"[..]));
    c
}

#[test]
fn turn_over_tls_by_alpn_by_sniffing_and_plain_on_the_same_port() {
    let s = setup(|_| {});
    relay_round_trip(Link::tls(s.tls, &s.ca.der, "127.0.0.1", &[b"stun.turn"]).unwrap());
    relay_round_trip(Link::tls(s.tls, &s.ca.der, "edge.test", &[]).unwrap());
    relay_round_trip(Link::tcp(s.tls).unwrap());
}

#[test]
fn unknown_alpn_is_refused_in_the_handshake() {
    let s = setup(|_| {});
    let r = Link::tls(s.tls, &s.ca.der, "127.0.0.1", &[b"imap"]);
    assert!(
        r.is_err(),
        "a client offering only an ALPN we do not speak must fail the handshake"
    );
    // An untrusted certificate is refused by a verifying client (the edge does not fall back).
    let other = TestCa::new("someone else");
    assert!(Link::tls(s.tls, &other.der, "127.0.0.1", &[b"stun.turn"]).is_err());
}

fn closed_within(mut s: TcpStream, limit: Duration) -> Duration {
    s.set_read_timeout(Some(limit)).unwrap();
    let t = Instant::now();
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Ok(0) => t.elapsed(),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => t.elapsed(),
        other => panic!(
            "expected the edge to close the connection, got {other:?} after {:?}",
            t.elapsed()
        ),
    }
}

#[test]
fn a_client_that_sends_nothing_is_closed_after_the_timeout() {
    let s = setup(|_| {});
    for addr in [s.tls, s.turn_tcp] {
        let took = closed_within(TcpStream::connect(addr).unwrap(), Duration::from_secs(5));
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_secs(4),
            "{addr}: closed after {took:?}"
        );
    }
    // A TLS client that completes the handshake but sends no TURN frame is closed too.
    let mut tls = Link::tls(s.tls, &s.ca.der, "127.0.0.1", &[b"stun.turn"]).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        tls.recv().is_err() || tls.send(b"x").is_err() || tls.recv().is_err(),
        "silent TLS client must be closed"
    );
}

fn connect_from(src: &str, to: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&src.parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.connect(&to.into()).unwrap();
    sock.into()
}

#[test]
fn a_flood_from_one_address_is_capped_and_others_are_still_served() {
    let s = setup(|c| c.handshake_timeout_secs = 10);
    // Five connections from 127.0.0.1 hold the per-address limit (they are silent but within
    // the handshake timeout).
    let held: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(s.tls).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..20 {
        let took = closed_within(TcpStream::connect(s.tls).unwrap(), Duration::from_secs(3));
        assert!(
            took < Duration::from_millis(500),
            "excess connection must be closed at once"
        );
    }
    // Another address is served normally.
    let other = connect_from("127.0.0.2:0", s.tls);
    let mut c = Client::new(Link::Tcp(other, Vec::new()), "tess", "tls-pass");
    assert_eq!(c.allocate(17, &[]).unwrap().class, Class::Success);
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    relay_round_trip(Link::tls(s.tls, &s.ca.der, "127.0.0.1", &[b"stun.turn"]).unwrap());
}

#[test]
fn certificate_reload_keeps_live_connections_and_serves_the_new_one() {
    let s = setup(|_| {});
    let mut live =
        relay_round_trip(Link::tls(s.tls, &s.ca.der, "127.0.0.1", &[b"stun.turn"]).unwrap());
    let ca2 = TestCa::new("rotated CA");
    assert!(
        Link::tls(s.tls, &ca2.der, "127.0.0.1", &[b"stun.turn"]).is_err(),
        "not yet rotated"
    );
    // Replace the files (what certbot does); the edge notices the change.
    let (c2, k2) = ca2.server(&["127.0.0.1"]);
    std::fs::write(s.dir.0.join("server-key.pem"), k2).unwrap();
    std::fs::write(s.dir.0.join("server-cert.pem"), c2).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if Link::tls(s.tls, &ca2.der, "127.0.0.1", &[b"stun.turn"]).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new certificate not served within 10 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        Link::tls(s.tls, &s.ca.der, "127.0.0.1", &[b"stun.turn"]).is_err(),
        "old certificate no longer served"
    );
    // The connection made before the reload still works.
    let r = live
        .request(
            Method::Refresh,
            &[(attr::LIFETIME, &600u32.to_be_bytes())],
            &[],
        )
        .unwrap();
    assert_eq!(
        r.class,
        Class::Success,
        "live TLS connection survives the reload"
    );
    relay_round_trip(Link::tls(s.tls, &ca2.der, "127.0.0.1", &[b"stun.turn"]).unwrap());
}

#[test]
fn proxy_protocol_v2_gives_the_real_client_address() {
    let s = setup(|c| c.proxy_protocol = true);
    for addr in [s.turn_tcp, s.tls] {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let real: SocketAddr = "203.0.113.9:40000".parse().unwrap();
        tcp.write_all(&edge::proxy_protocol::encode(real, addr))
            .unwrap();
        let mut c = Client::new(Link::Tcp(tcp, Vec::new()), "tess", "tls-pass");
        let r = c.allocate(17, &[]).unwrap();
        assert_eq!(r.class, Class::Success, "{r:?}");
        let mapped = r
            .message()
            .xor_address(attr::XOR_MAPPED_ADDRESS)
            .unwrap()
            .unwrap();
        assert_eq!(
            mapped, real,
            "{addr}: the edge uses the address the PROXY header names"
        );
    }
    // Without a header, a PROXY-protocol port closes the connection.
    let mut tcp = TcpStream::connect(s.turn_tcp).unwrap();
    tcp.write_all(b"\x00\x01\x00\x00").unwrap();
    closed_within(tcp, Duration::from_secs(3));
}
