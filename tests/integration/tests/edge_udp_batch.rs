//! The edge reads its UDP listeners in batches (recvmmsg, up to 64 datagrams a system call,
//! into 9,216-byte slots). A burst of requests is answered one for one, and a datagram longer
//! than a slot is dropped and counted — never handed to the parser cut short — while the
//! datagrams around it in the same batch are served.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use edge::config::UserSpec;
use edge::{Edge, EdgeConfig, PortRange};
use integration_tests::free_ports;
use turn_proto::codec::{Class, Message, MessageBuilder, MessageType, Method};

fn binding(i: u32) -> Vec<u8> {
    let mut txid = [0u8; 12];
    txid[8..].copy_from_slice(&i.to_be_bytes());
    let mut out = Vec::new();
    MessageBuilder::new(
        &mut out,
        MessageType::new(Method::Binding, Class::Request),
        txid,
    );
    out
}

#[test]
fn a_burst_is_answered_one_for_one_and_an_oversized_datagram_is_dropped_and_counted() {
    let p = free_ports(2);
    let edge = Edge::start(EdgeConfig {
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
            first: 61900,
            last: 61949,
        },
        users: vec![UserSpec {
            name: "u".into(),
            password: "p".into(),
        }],
        dangerous_allow_loopback_peers: true,
        ..EdgeConfig::default()
    })
    .expect("edge starts");
    let server: SocketAddr = format!("127.0.0.1:{}", p[0]).parse().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();

    // 150 requests with an oversized datagram in the middle, sent before the edge reads any.
    const N: u32 = 150;
    for i in 0..N {
        if i == 75 {
            let mut big = binding(9_999);
            big.resize(20_000, 0);
            sock.send_to(&big, server).unwrap();
        }
        sock.send_to(&binding(i), server).unwrap();
    }
    let mut seen = vec![false; N as usize];
    let mut buf = [0u8; 2048];
    for _ in 0..N {
        let (n, _) = sock
            .recv_from(&mut buf)
            .expect("an answer for every request");
        let m = Message::decode(&buf[..n]).expect("a STUN answer");
        assert_eq!(m.class(), Class::Success);
        let i = u32::from_be_bytes(m.transaction_id()[8..].try_into().unwrap());
        assert!(i < N && !seen[i as usize], "answer {i} unexpected or twice");
        seen[i as usize] = true;
    }
    assert!(seen.iter().all(|s| *s));

    // The oversized datagram was counted as unreadable (stats reach the edge within a tick).
    let deadline = Instant::now() + Duration::from_secs(5);
    while edge.stats().malformed < 1 {
        assert!(Instant::now() < deadline, "oversized datagram not counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(edge.stats().malformed, 1);
    drop(edge);
}
