//! An edge with several shards (SO_REUSEPORT twins of every listener, one thread each): the
//! kernel gives each new client socket to any shard, so what one client does in two steps
//! over two sockets must work whichever shards the two land on.
//!
//! - RFC 6062: the ConnectionBind data connection (over TCP and over TLS) is moved to the
//!   shard that owns the peer connection.
//! - RFC 8656 §7.2: a RESERVATION-TOKEN made on one shard is redeemed on another.
//!
//! Each case is repeated over fresh sockets: with two shards, a handful of repetitions all
//! landing on the owning shard by chance is a 1-in-thousands event, so these tests fail
//! without the cross-shard routing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use edge::config::UserSpec;
use edge::{Edge, EdgeConfig, PortRange};
use integration_tests::control::TempDir;
use integration_tests::free_ports;
use integration_tests::tls::TestCa;
use integration_tests::turn_client::{Client, Link};
use turn_proto::codec::{attr, Class, Method};

const SHARDS: usize = 2;
const ROUNDS: usize = 12;

struct Setup {
    _edge: Edge,
    ca: TestCa,
    _dir: TempDir,
    udp: SocketAddr,
    tcp: SocketAddr,
    tls: SocketAddr,
}

fn start() -> Setup {
    let dir = TempDir::new("edge-shards");
    let ca = TestCa::new("cloudproxy test CA");
    let (cert, key) = ca.write_server(&dir.0, &["127.0.0.1"], "server");
    let p = free_ports(3);
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
        tls_cert: Some(cert),
        tls_key: Some(key),
        signal_port: 0,
        relay_ports: PortRange {
            first: 62000,
            last: 62999,
        },
        users: vec![UserSpec {
            name: "sam".into(),
            password: "shard-pass".into(),
        }],
        dangerous_allow_loopback_peers: true,
        shards: SHARDS,
        max_allocations_per_user: 100,
        ..EdgeConfig::default()
    };
    let edge = Edge::start(cfg).expect("edge starts");
    let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
    Setup {
        _edge: edge,
        ca,
        _dir: dir,
        udp: at(p[0]),
        tcp: at(p[1]),
        tls: at(p[2]),
    }
}

fn link(s: &Setup, tls: bool) -> Link {
    if tls {
        Link::tls(s.tls, &s.ca.der, "127.0.0.1", &[b"stun.turn"]).unwrap()
    } else {
        Link::tcp(s.tcp).unwrap()
    }
}

fn read_exact(r: &mut impl Read, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf).expect("bytes arrive");
    buf
}

/// Relays bytes both ways between the data connection (after its ConnectionBind) and the
/// peer. `early` is what arrived after the ConnectionBind response in the same read.
fn pipe_both_ways(pipe: &mut (impl Read + Write), early: &[u8], peer: &mut TcpStream, n: usize) {
    assert!(early.is_empty(), "the peer sent nothing yet");
    let up = format!("client->peer #{n}");
    pipe.write_all(up.as_bytes()).unwrap();
    pipe.flush().unwrap();
    assert_eq!(read_exact(peer, up.len()), up.as_bytes());
    let down = format!("peer->client #{n}!");
    peer.write_all(down.as_bytes()).unwrap();
    assert_eq!(read_exact(pipe, down.len()), down.as_bytes());
}

fn connection_binds_reach_the_owning_shard(tls: bool) {
    let s = start();
    let mut control = Client::new(link(&s, tls), "sam", "shard-pass");
    let r = control.allocate(6, &[]).unwrap();
    assert_eq!(r.class, Class::Success, "{r:?}");
    for n in 0..ROUNDS {
        let peer = TcpListener::bind("127.0.0.1:0").unwrap();
        let r = control
            .request(Method::Connect, &[], &[peer.local_addr().unwrap()])
            .unwrap();
        assert_eq!(r.class, Class::Success, "Connect #{n}: {r:?}");
        let id = r
            .message()
            .u32_attr(attr::CONNECTION_ID)
            .unwrap()
            .expect("CONNECTION-ID");
        let (mut at_peer, _) = peer.accept().unwrap();
        at_peer
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();

        let mut data = Client::new(link(&s, tls), "sam", "shard-pass");
        let r = data
            .request(
                Method::ConnectionBind,
                &[(attr::CONNECTION_ID, &id.to_be_bytes())],
                &[],
            )
            .unwrap();
        assert_eq!(r.class, Class::Success, "ConnectionBind #{n}: {r:?}");
        match data.link {
            Link::Tcp(mut pipe, early) => {
                pipe.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                pipe_both_ways(&mut pipe, &early, &mut at_peer, n);
            }
            Link::Tls(mut pipe, early) => {
                pipe.sock
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                pipe_both_ways(pipe.as_mut(), &early, &mut at_peer, n);
            }
            Link::Udp(..) => unreachable!("a stream link was made above"),
        }
    }
}

#[test]
fn tcp_connection_binds_reach_the_owning_shard() {
    connection_binds_reach_the_owning_shard(false);
}

#[test]
fn tls_connection_binds_reach_the_owning_shard() {
    connection_binds_reach_the_owning_shard(true);
}

#[test]
fn reservation_tokens_are_redeemed_on_any_shard() {
    let s = start();
    for n in 0..ROUNDS {
        // RTP: an even port, the next one held (EVEN-PORT with R = 1).
        let mut rtp = Client::new(Link::udp(s.udp).unwrap(), "sam", "shard-pass");
        let r = rtp.allocate(17, &[(attr::EVEN_PORT, &[0x80])]).unwrap();
        assert_eq!(r.class, Class::Success, "EVEN-PORT Allocate #{n}: {r:?}");
        let m = r.message();
        let relay = m.xor_address(attr::XOR_RELAYED_ADDRESS).unwrap().unwrap();
        let token = m.get(attr::RESERVATION_TOKEN).expect("token").to_vec();
        // RTCP, from another socket: the held port.
        let mut rtcp = Client::new(Link::udp(s.udp).unwrap(), "sam", "shard-pass");
        let r = rtcp
            .allocate(17, &[(attr::RESERVATION_TOKEN, &token)])
            .unwrap();
        assert_eq!(
            r.class,
            Class::Success,
            "RESERVATION-TOKEN Allocate #{n}: {r:?}"
        );
        let got = r
            .message()
            .xor_address(attr::XOR_RELAYED_ADDRESS)
            .unwrap()
            .unwrap();
        assert_eq!(got.port(), relay.port() + 1, "#{n}");
        // Spent: a third socket cannot have it.
        let mut late = Client::new(Link::udp(s.udp).unwrap(), "sam", "shard-pass");
        let r = late
            .allocate(17, &[(attr::RESERVATION_TOKEN, &token)])
            .unwrap();
        assert_eq!(r.code, Some(508), "a spent token #{n}: {r:?}");
    }
}
