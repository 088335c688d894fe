//! The peer policy at work: CreatePermission and ChannelBind to a forbidden peer are 403 and
//! install nothing, a Send to one is dropped and counted, and a peer of a family the allocation
//! has no relay address for is 443.

mod common;

use common::*;
use turn_proto::codec::Method;
use turn_proto::server::Forward;

/// Loopback, cloud metadata, loopback spelled IPv4-mapped, RFC 1918, and a routable address
/// outside every RTN prefix.
const FORBIDDEN: [&str; 5] = [
    "127.0.0.1:5000",
    "169.254.169.254:80",
    "[::ffff:127.0.0.1]:5000",
    "10.0.0.1:5000",
    "198.51.100.7:5000",
];

/// The canonical address a peer arrives from (a socket sees IPv4-mapped as IPv4).
fn arriving_from(peer: &str) -> std::net::SocketAddr {
    match sa(peer) {
        std::net::SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => std::net::SocketAddr::new(v4.into(), v6.port()),
            None => v6.into(),
        },
        v4 => v4,
    }
}

#[test]
fn create_permission_to_a_forbidden_peer_is_403() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let relay = h.allocate(&mut c);
    for (i, peer) in FORBIDDEN.iter().enumerate() {
        let r = h.create_permission(&mut c, &[sa(peer)]);
        r.assert_error(Method::CreatePermission, 403);
        assert!(r.integrity_ok(&c.key()), "{peer}");
        assert_eq!(h.server.stats().policy_denied, i as u64 + 1, "{peer}");
        let (_, f) = h.peer_datagram(relay, arriving_from(peer), b"x");
        assert_eq!(f, Forward::None, "no permission installed for {peer}");
    }
    // One forbidden peer spoils the whole request (all or nothing).
    let ok = sa("203.0.113.5:1");
    let r = h.create_permission(&mut c, &[ok, sa(FORBIDDEN[0])]);
    r.assert_error(Method::CreatePermission, 403);
    let (_, f) = h.peer_datagram(relay, ok, b"x");
    assert_eq!(f, Forward::None);
}

#[test]
fn channel_bind_to_a_forbidden_peer_is_403() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let relay = h.allocate(&mut c);
    for (i, peer) in FORBIDDEN.iter().enumerate() {
        let number = 0x4000 + i as u16;
        let r = h.channel_bind(&mut c, number, sa(peer));
        r.assert_error(Method::ChannelBind, 403);
        assert_eq!(h.server.stats().policy_denied, i as u64 + 1, "{peer}");
        let (_, f) = h.channel_data(&c, number, b"x");
        assert_eq!(f, Forward::None, "no channel bound for {peer}");
        let (_, f) = h.peer_datagram(relay, arriving_from(peer), b"x");
        assert_eq!(f, Forward::None, "no permission installed for {peer}");
    }
}

#[test]
fn send_to_a_forbidden_peer_is_dropped_and_counted() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    h.allocate(&mut c);
    for (i, peer) in FORBIDDEN.iter().enumerate() {
        let (_, f) = h.send_indication(&c, sa(peer), b"payload");
        assert_eq!(f, Forward::None, "{peer}");
        assert_eq!(h.server.stats().policy_denied, i as u64 + 1, "{peer}");
    }
    assert_eq!(h.server.stats().to_peer_packets, 0);
    assert!(h.transmits.is_empty(), "indications are never answered");
}

#[test]
fn ipv6_peer_on_an_ipv4_only_allocation_is_443() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    h.allocate(&mut c);
    let peer = sa("[2001:db8::1]:5000");
    let r = h.create_permission(&mut c, &[peer]);
    r.assert_error(Method::CreatePermission, 443);
    assert!(r.integrity_ok(&c.key()));
    let r = h.channel_bind(&mut c, 0x4000, peer);
    r.assert_error(Method::ChannelBind, 443);
    assert_eq!(h.server.stats().policy_denied, 0, "allowed by policy");
    let (_, f) = h.send_indication(&c, peer, b"x");
    assert_eq!(f, Forward::None);
}
