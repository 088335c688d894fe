//! A second edge started on ports an edge already holds refuses to start. The listeners use
//! SO_REUSEPORT (for the shards), which would otherwise let the second edge bind silently and
//! take a share of the first one's packets: its clients would see random 401s against the
//! wrong secrets. Seen for real while two test set-ups shared a port range.

use edge::config::UserSpec;
use edge::{Edge, EdgeConfig, PortRange, StartError};
use integration_tests::free_ports;

fn cfg(udp: u16, tcp: u16, tls: u16, signal: u16) -> EdgeConfig {
    EdgeConfig {
        listen: "127.0.0.1".parse().unwrap(),
        udp_ports: PortRange {
            first: udp,
            last: udp,
        },
        tcp_ports: PortRange {
            first: tcp,
            last: tcp,
        },
        tls_port: tls,
        tls_self_signed: true,
        signal_port: signal,
        relay_ports: PortRange {
            first: 61950,
            last: 61999,
        },
        users: vec![UserSpec {
            name: "u".into(),
            password: "p".into(),
        }],
        dangerous_allow_loopback_peers: true,
        ..EdgeConfig::default()
    }
}

#[test]
fn a_second_edge_on_the_same_ports_refuses_to_start() {
    let p = free_ports(8);
    let first = Edge::start(cfg(p[0], p[1], p[2], p[3])).expect("first edge starts");
    // Each kind of listener, one at a time, collides with the first edge.
    for (what, c) in [
        ("UDP listener", cfg(p[0], p[5], p[6], p[7])),
        ("TCP listener", cfg(p[4], p[1], p[6], p[7])),
        ("TLS listener", cfg(p[4], p[5], p[2], p[7])),
        ("signalling listener", cfg(p[4], p[5], p[6], p[3])),
    ] {
        match Edge::start(c) {
            Err(StartError::Bind {
                what: w, source, ..
            }) => {
                assert_eq!(w, what);
                assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
                assert!(source.to_string().contains("another edge"), "{source}");
            }
            Err(e) => panic!("{what}: wrong error {e}"),
            Ok(_) => panic!("{what}: a second edge started on a port the first one holds"),
        }
    }
    // Without the collision it starts (the refusals above left nothing bound).
    let second = Edge::start(cfg(p[4], p[5], p[6], p[7])).expect("second edge on its own ports");
    drop(second);
    drop(first);
}
