//! The edge's Prometheus endpoint (`metrics_listen`) against real traffic: an allocation, a
//! refused password, datagrams relayed both ways through a real relay socket, each showing in
//! the counters a scrape returns; a second edge cannot take the same metrics address, and the
//! endpoint goes away with the edge.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use edge::config::UserSpec;
use edge::{Edge, EdgeConfig, PortRange, StartError};
use integration_tests::free_ports;
use integration_tests::turn_client::{Client, Link};
use turn_proto::codec::{attr, Class, Message, Method};

fn config(p: &[u16], relay_first: u16) -> EdgeConfig {
    EdgeConfig {
        listen: "127.0.0.1".parse().unwrap(),
        udp_ports: PortRange {
            first: p[0],
            last: p[0],
        },
        tcp_ports: PortRange {
            first: p[1],
            last: p[1],
        },
        signal_port: 0,
        relay_ports: PortRange {
            first: relay_first,
            last: relay_first + 49,
        },
        users: vec![UserSpec {
            name: "metrics".into(),
            password: "right".into(),
        }],
        dangerous_allow_loopback_peers: true,
        shards: 2,
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..EdgeConfig::default()
    }
}

fn scrape(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("metrics port accepts");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of the sample `name` (with its labels) in a scrape.
fn value(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn metrics_count_real_traffic_and_leave_with_the_edge() {
    let p = free_ports(4);
    let edge = Edge::start(config(&p[..2], 61700)).expect("edge starts");
    let metrics = edge.metrics_addr().expect("metrics listen");
    let first = scrape(metrics, "/metrics");
    assert!(first.starts_with("HTTP/1.1 200 OK"), "{first}");
    assert_eq!(value(&first, "cloudproxy_edge_shards"), Some(2), "{first}");
    assert_eq!(value(&first, "cloudproxy_edge_allocations"), Some(0));
    assert_eq!(value(&first, "cloudproxy_edge_registered"), Some(0));
    assert!(scrape(metrics, "/healthz").ends_with("\r\n\r\nok\n"));

    let server = SocketAddr::from(([127, 0, 0, 1], p[0]));
    // A wrong password: one auth failure.
    let mut bad = Client::new(Link::udp(server).unwrap(), "metrics", "wrong");
    assert_eq!(bad.allocate(17, &[]).unwrap().code, Some(401));
    // An allocation, a permission, 5 datagrams out and 3 back.
    let mut c = Client::new(Link::udp(server).unwrap(), "metrics", "right");
    let reply = c.allocate(17, &[]).unwrap();
    assert_eq!(reply.class, Class::Success);
    let relay = reply
        .message()
        .xor_address(attr::XOR_RELAYED_ADDRESS)
        .unwrap()
        .unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let ok = c
        .request(Method::CreatePermission, &[], &[peer_addr])
        .unwrap();
    assert_eq!(ok.class, Class::Success);
    let mut buf = [0u8; 2048];
    for i in 0..5u8 {
        c.send_indication(peer_addr, &[i; 100]).unwrap();
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!((n, from), (100, relay));
    }
    for i in 0..3u8 {
        peer.send_to(&[i; 60], relay).unwrap();
        let data = c.link.recv().unwrap().expect("a Data indication");
        let m = Message::decode(&data).unwrap();
        assert_eq!(m.message_type().method, Method::Data);
        assert_eq!(m.get(attr::DATA), Some(&[i; 60][..]));
    }

    // Shards publish their counters twice a second: poll, bounded.
    let want = [
        ("cloudproxy_edge_allocations", 1),
        ("cloudproxy_edge_allocations_created_total", 1),
        ("cloudproxy_edge_auth_failures_total", 1),
        (
            "cloudproxy_edge_relayed_packets_total{direction=\"to_peer\"}",
            5,
        ),
        (
            "cloudproxy_edge_relayed_packets_total{direction=\"to_client\"}",
            3,
        ),
        (
            "cloudproxy_edge_relayed_bytes_total{direction=\"to_peer\"}",
            500,
        ),
        (
            "cloudproxy_edge_relayed_bytes_total{direction=\"to_client\"}",
            180,
        ),
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = scrape(metrics, "/metrics");
        if want.iter().all(|(n, v)| value(&text, n) == Some(*v)) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "counters never matched {want:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        value(&text, "cloudproxy_edge_challenges_total").unwrap_or(0) >= 2,
        "both clients were challenged first:\n{text}"
    );

    // A second edge on the same metrics address does not start.
    let mut twin = config(&p[2..], 61800);
    twin.metrics_listen = Some(metrics);
    match Edge::start(twin) {
        Err(StartError::Bind { what, addr, .. }) => {
            assert_eq!((what, addr), ("metrics listener", metrics));
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a second edge took the same metrics address"),
    }

    // The endpoint goes with the edge.
    edge.shutdown();
    assert!(
        TcpStream::connect_timeout(&metrics, Duration::from_secs(1)).is_err(),
        "metrics port still open after shutdown"
    );
}
