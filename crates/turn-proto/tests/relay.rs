//! Relaying (RFC 8656 §10–§12): Send and Data indications, ChannelBind and ChannelData both
//! ways with the right framing per client transport, drops without a route, channel number
//! rules, and the per-allocation, per-user and edge-wide quotas.

mod common;

use common::*;
use turn_proto::codec::{attr, Class, Family, Message, MessageType, Method};
use turn_proto::server::{Forward, PEER_HEADROOM};

const PEER: &str = "203.0.113.7:5000";
const PEER2: &str = "203.0.113.8:6000";

/// Decodes a Data indication the server wrote into a peer buffer; returns (peer, data).
#[track_caller]
fn data_indication(bytes: &[u8]) -> (std::net::SocketAddr, Vec<u8>) {
    assert_eq!(bytes.len() % 4, 0, "STUN messages are padded to 4 bytes");
    let m = Message::decode(bytes).expect("a well-formed Data indication");
    assert_eq!(
        m.message_type(),
        MessageType::new(Method::Data, Class::Indication)
    );
    let peer = m
        .xor_address(attr::XOR_PEER_ADDRESS)
        .expect("well-formed")
        .expect("XOR-PEER-ADDRESS");
    let data = m.get(attr::DATA).expect("DATA").to_vec();
    (peer, data)
}

#[test]
fn send_indication_goes_to_the_peer() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let relay = h.allocate(&mut c);
    let peer = sa(PEER);
    h.create_permission(&mut c, &[peer])
        .assert_success(Method::CreatePermission);

    for payload in [&b"hello"[..], b"", b"four", &[0xAB; 1200]] {
        let (bytes, f) = h.send_indication(&c, peer, payload);
        let Forward::ToPeer {
            relay: r,
            peer: p,
            range,
        } = f.clone()
        else {
            panic!("not relayed: {f:?}");
        };
        assert_eq!((r, p), (relay, peer));
        assert_eq!(&bytes[range.clone()], payload);
        // The range is the DATA value inside the message, not a copy.
        let m = Message::decode(&bytes).expect("valid");
        assert_eq!(m.range_of(attr::DATA), Some(range));
    }
    let s = h.server.stats();
    assert_eq!(s.to_peer_packets, 4);
    assert_eq!(s.to_peer_bytes, 5 + 4 + 1200);
}

#[test]
fn create_permission_covers_every_port_of_the_ip() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let relay = h.allocate(&mut c);
    h.create_permission(&mut c, &[sa("203.0.113.7:1")])
        .assert_success(Method::CreatePermission);
    let (_, f) = h.send_indication(&c, sa("203.0.113.7:9999"), b"x");
    assert!(matches!(f, Forward::ToPeer { .. }), "{f:?}");
    let (_, f) = h.peer_datagram(relay, sa("203.0.113.7:4242"), b"y");
    assert!(matches!(f, Forward::ToClient { .. }), "{f:?}");
}

#[test]
fn peer_datagram_without_channel_becomes_a_data_indication() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let relay = h.allocate(&mut c);
    let peer = sa(PEER);
    h.create_permission(&mut c, &[peer])
        .assert_success(Method::CreatePermission);

    for payload in [&b"hello"[..], b"", b"1234", b"123456", &[7u8; 1001]] {
        let (buf, f) = h.peer_datagram(relay, peer, payload);
        let Forward::ToClient { client, range } = f.clone() else {
            panic!("not relayed: {f:?}");
        };
        assert_eq!(client, c.tuple);
        assert_eq!(range.end, PEER_HEADROOM + payload.len().next_multiple_of(4));
        let (from, data) = data_indication(&buf[range]);
        assert_eq!(from, peer);
        assert_eq!(data, payload);
    }
    assert_eq!(h.server.stats().to_client_packets, 5);
}

#[test]
fn data_indication_for_an_ipv6_peer() {
    let mut h = Harness::setup()
        .config(|c| c.relay_families = vec![Family::V4, Family::V6])
        .build();
    let mut c = Client::alice(udp(1));
    let r = h.allocate_with(&mut c, |b| {
        b.add(attr::ADDITIONAL_ADDRESS_FAMILY, &[2, 0, 0, 0]);
    });
    r.assert_success(Method::Allocate);
    let relays = r.xors(attr::XOR_RELAYED_ADDRESS);
    assert_eq!(relays.len(), 2);
    let relay6 = relays[1];
    assert!(relay6.is_ipv6());

    let peer = sa("[2001:db8::1]:5000");
    h.create_permission(&mut c, &[peer])
        .assert_success(Method::CreatePermission);
    let (bytes, f) = h.send_indication(&c, peer, b"v6 out");
    let Forward::ToPeer {
        relay,
        peer: p,
        range,
    } = f
    else {
        panic!("not relayed: {f:?}");
    };
    assert_eq!((relay, p), (relay6, peer));
    assert_eq!(&bytes[range], b"v6 out");

    let (buf, f) = h.peer_datagram(relay6, peer, b"v6 in");
    let Forward::ToClient { client, range } = f.clone() else {
        panic!("not relayed: {f:?}");
    };
    assert_eq!(client, c.tuple);
    assert_eq!(range.start, 0, "the IPv6 header fills the whole headroom");
    let (from, data) = data_indication(&buf[range]);
    assert_eq!(from, peer);
    assert_eq!(data, b"v6 in");
}

#[test]
fn data_indication_to_a_tcp_client_is_padded() {
    let mut h = Harness::new();
    let mut c = Client::alice(tcp(1, 41_000));
    let relay = h.allocate(&mut c); // UDP relay over a TCP control connection
    let peer = sa(PEER);
    h.create_permission(&mut c, &[peer])
        .assert_success(Method::CreatePermission);
    let (buf, f) = h.peer_datagram(relay, peer, b"hello");
    let Forward::ToClient { client, range } = f.clone() else {
        panic!("not relayed: {f:?}");
    };
    assert_eq!(client, c.tuple);
    let framed = &buf[range.clone()];
    assert_eq!(framed.len() % 4, 0);
    assert_eq!(
        &buf[PEER_HEADROOM + 5..range.end],
        &[0, 0, 0],
        "padding is zeroed"
    );
    let (from, data) = data_indication(framed);
    assert_eq!((from, data.as_slice()), (peer, &b"hello"[..]));
}

#[test]
fn channel_data_from_the_client_goes_to_the_peer() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let relay = h.allocate(&mut c);
    let peer = sa(PEER);
    let r = h.channel_bind(&mut c, 0x4001, peer);
    r.assert_success(Method::ChannelBind);
    assert!(r.integrity_ok(&c.key()));

    for payload in [&b"abc"[..], b"", &[9u8; 500]] {
        let (bytes, f) = h.channel_data(&c, 0x4001, payload);
        assert_eq!(
            f,
            Forward::ToPeer {
                relay,
                peer,
                range: 4..4 + payload.len()
            }
        );
        assert_eq!(&bytes[4..4 + payload.len()], payload);
    }
    // ChannelBind installed a permission for the peer's IP: Send works too.
    let (_, f) = h.send_indication(&c, peer, b"send");
    assert!(matches!(f, Forward::ToPeer { .. }));
}

#[test]
fn channel_data_over_tcp_may_carry_padding() {
    let mut h = Harness::new();
    let mut c = Client::alice(tcp(1, 41_000));
    let relay = h.allocate(&mut c);
    let peer = sa(PEER);
    h.channel_bind(&mut c, 0x4001, peer)
        .assert_success(Method::ChannelBind);
    let (bytes, f) = h.channel_data(&c, 0x4001, b"abcde");
    assert_eq!(bytes.len(), 12);
    assert_eq!(
        f,
        Forward::ToPeer {
            relay,
            peer,
            range: 4..9
        }
    );
}

#[test]
fn peer_data_on_a_channel_is_channel_data_unpadded_over_udp() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let relay = h.allocate(&mut c);
    let peer = sa(PEER);
    h.channel_bind(&mut c, 0x4ABC, peer)
        .assert_success(Method::ChannelBind);

    let (buf, f) = h.peer_datagram(relay, peer, b"hello");
    assert_eq!(
        f,
        Forward::ToClient {
            client: c.tuple,
            range: PEER_HEADROOM - 4..PEER_HEADROOM + 5
        }
    );
    let framed = Harness::forwarded(&f, &buf);
    assert_eq!(framed, &[0x4A, 0xBC, 0, 5, b'h', b'e', b'l', b'l', b'o']);

    // Another port of the same IP has the permission but not the channel.
    let (buf, f) = h.peer_datagram(relay, sa("203.0.113.7:5001"), b"other");
    let (from, data) = data_indication(Harness::forwarded(&f, &buf));
    assert_eq!(
        (from, data.as_slice()),
        (sa("203.0.113.7:5001"), &b"other"[..])
    );
}

#[test]
fn peer_data_on_a_channel_is_padded_for_a_tcp_client() {
    let mut h = Harness::new();
    let mut c = Client::alice(tcp(1, 41_000));
    let relay = h.allocate(&mut c);
    let peer = sa(PEER);
    h.channel_bind(&mut c, 0x4ABC, peer)
        .assert_success(Method::ChannelBind);

    let (buf, f) = h.peer_datagram(relay, peer, b"hello");
    assert_eq!(
        f,
        Forward::ToClient {
            client: c.tuple,
            range: PEER_HEADROOM - 4..PEER_HEADROOM + 8
        }
    );
    let framed = Harness::forwarded(&f, &buf);
    assert_eq!(
        framed,
        &[0x4A, 0xBC, 0, 5, b'h', b'e', b'l', b'l', b'o', 0, 0, 0]
    );
    // Already aligned: no padding.
    let (_, f) = h.peer_datagram(relay, peer, b"four");
    assert_eq!(
        f,
        Forward::ToClient {
            client: c.tuple,
            range: PEER_HEADROOM - 4..PEER_HEADROOM + 4
        }
    );
}

#[test]
fn no_permission_drops_and_counts() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let relay = h.allocate(&mut c);
    let peer = sa(PEER);

    let (_, f) = h.peer_datagram(relay, peer, b"knock");
    assert_eq!(f, Forward::None);
    assert_eq!(h.server.stats().dropped_no_route, 1);
    let (_, f) = h.send_indication(&c, peer, b"out");
    assert_eq!(f, Forward::None);
    assert_eq!(h.server.stats().dropped_no_route, 2);

    // A permission for another IP does not help.
    h.create_permission(&mut c, &[sa(PEER2)])
        .assert_success(Method::CreatePermission);
    let (_, f) = h.peer_datagram(relay, peer, b"knock");
    assert_eq!(f, Forward::None);
    assert_eq!(h.server.stats().dropped_no_route, 3);
    // Nor does an unknown relay address.
    let (_, f) = h.peer_datagram(sa("198.51.100.1:1"), sa(PEER2), b"?");
    assert_eq!(f, Forward::None);
    assert_eq!(h.server.stats().dropped_no_route, 4);
    // Nor a Send from a flow without allocation.
    let stranger = Client::bob(udp(9));
    let (_, f) = h.send_indication(&stranger, sa(PEER2), b"x");
    assert_eq!(f, Forward::None);
    assert_eq!(h.server.stats().dropped_no_route, 5);
    assert_eq!(h.server.stats().to_client_packets, 0);
    assert_eq!(h.server.stats().to_peer_packets, 0);
}

#[test]
fn channel_number_out_of_range_is_400() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let relay = h.allocate(&mut c);
    for number in [0x3FFF, 0x7FFF, 0x0000, 0xFFFF] {
        let r = h.channel_bind(&mut c, number, sa(PEER));
        r.assert_error(Method::ChannelBind, 400);
        assert!(r.integrity_ok(&c.key()));
    }
    // Nothing was installed, not even the permission.
    let (_, f) = h.send_indication(&c, sa(PEER), b"x");
    assert_eq!(f, Forward::None);
    let (_, f) = h.peer_datagram(relay, sa(PEER), b"x");
    assert_eq!(f, Forward::None);
    // The bounds themselves are fine.
    h.channel_bind(&mut c, 0x4000, sa(PEER))
        .assert_success(Method::ChannelBind);
    h.channel_bind(&mut c, 0x7FFE, sa(PEER2))
        .assert_success(Method::ChannelBind);
}

#[test]
fn rebinding_a_channel_to_another_peer_is_400() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let relay = h.allocate(&mut c);
    h.channel_bind(&mut c, 0x4000, sa(PEER))
        .assert_success(Method::ChannelBind);
    h.channel_bind(&mut c, 0x4000, sa(PEER2))
        .assert_error(Method::ChannelBind, 400);
    // Nor the same peer to another number.
    h.channel_bind(&mut c, 0x4001, sa(PEER))
        .assert_error(Method::ChannelBind, 400);
    // Rebinding the same pair is a refresh.
    h.channel_bind(&mut c, 0x4000, sa(PEER))
        .assert_success(Method::ChannelBind);
    let (_, f) = h.channel_data(&c, 0x4000, b"x");
    assert_eq!(
        f,
        Forward::ToPeer {
            relay,
            peer: sa(PEER),
            range: 4..5
        }
    );
    // The refused rebinding left no permission for PEER2.
    let (_, f) = h.peer_datagram(relay, sa(PEER2), b"x");
    assert_eq!(f, Forward::None);
}

#[test]
fn permission_quota_is_508() {
    let mut h = Harness::setup()
        .config(|c| c.max_permissions_per_allocation = 2)
        .build();
    let mut c = Client::alice(udp(1));
    let relay = h.allocate(&mut c);
    let peers = [
        sa("203.0.113.1:1"),
        sa("203.0.113.2:1"),
        sa("203.0.113.3:1"),
    ];
    h.create_permission(&mut c, &peers[..1])
        .assert_success(Method::CreatePermission);
    h.create_permission(&mut c, &peers[1..2])
        .assert_success(Method::CreatePermission);
    let r = h.create_permission(&mut c, &peers[2..]);
    r.assert_error(Method::CreatePermission, 508);
    assert!(r.integrity_ok(&c.key()));
    let (_, f) = h.peer_datagram(relay, peers[2], b"x");
    assert_eq!(f, Forward::None);
    // Refreshing an existing one is not a new one.
    h.create_permission(&mut c, &peers[..2])
        .assert_success(Method::CreatePermission);
    // All or nothing: a request with one old and one new peer installs neither.
    h.create_permission(&mut c, &[peers[0], peers[2]])
        .assert_error(Method::CreatePermission, 508);
    let (_, f) = h.peer_datagram(relay, peers[2], b"x");
    assert_eq!(f, Forward::None);
    // ChannelBind to a third IP needs a permission too.
    h.channel_bind(&mut c, 0x4000, peers[2])
        .assert_error(Method::ChannelBind, 508);
}

#[test]
fn a_peer_named_twice_counts_once_against_the_permission_quota() {
    let mut h = Harness::setup()
        .config(|c| c.max_permissions_per_allocation = 2)
        .build();
    let mut c = Client::alice(udp(1));
    let relay = h.allocate(&mut c);
    h.create_permission(&mut c, &[sa("203.0.113.1:1")])
        .assert_success(Method::CreatePermission);
    // Two ports of one IP are one permission (permissions are per IP).
    h.create_permission(&mut c, &[sa("203.0.113.2:1"), sa("203.0.113.2:2")])
        .assert_success(Method::CreatePermission);
    let (_, f) = h.peer_datagram(relay, sa("203.0.113.2:3"), b"x");
    assert!(matches!(f, Forward::ToClient { .. }), "{f:?}");
}

#[test]
fn channel_bind_refused_for_permissions_leaves_no_channel() {
    let mut h = Harness::setup()
        .config(|c| c.max_permissions_per_allocation = 1)
        .build();
    let mut c = Client::alice(udp(1));
    let relay = h.allocate(&mut c);
    h.create_permission(&mut c, &[sa(PEER)])
        .assert_success(Method::CreatePermission);
    h.channel_bind(&mut c, 0x4000, sa(PEER2))
        .assert_error(Method::ChannelBind, 508);
    // The refused request changed nothing: 0x4000 is free for the permitted peer.
    h.channel_bind(&mut c, 0x4000, sa(PEER))
        .assert_success(Method::ChannelBind);
    let (_, f) = h.channel_data(&c, 0x4000, b"x");
    assert_eq!(
        f,
        Forward::ToPeer {
            relay,
            peer: sa(PEER),
            range: 4..5
        }
    );
}

#[test]
fn channel_quota_is_508() {
    let mut h = Harness::setup()
        .config(|c| c.max_channels_per_allocation = 2)
        .build();
    let mut c = Client::alice(udp(1));
    h.allocate(&mut c);
    h.channel_bind(&mut c, 0x4000, sa("203.0.113.1:1"))
        .assert_success(Method::ChannelBind);
    h.channel_bind(&mut c, 0x4001, sa("203.0.113.2:1"))
        .assert_success(Method::ChannelBind);
    let r = h.channel_bind(&mut c, 0x4002, sa("203.0.113.3:1"));
    r.assert_error(Method::ChannelBind, 508);
    assert!(r.integrity_ok(&c.key()));
    let (_, f) = h.channel_data(&c, 0x4002, b"x");
    assert_eq!(f, Forward::None);
    // Refreshing a bound channel is fine at the limit.
    h.channel_bind(&mut c, 0x4001, sa("203.0.113.2:1"))
        .assert_success(Method::ChannelBind);
}

#[test]
fn per_user_allocation_quota_is_486() {
    let mut h = Harness::setup()
        .config(|c| c.max_allocations_per_user = 1)
        .build();
    let mut a1 = Client::alice(udp(1));
    h.allocate(&mut a1);
    let mut a2 = Client::alice(udp(2));
    let r = h.allocate_with(&mut a2, |_| {});
    r.assert_error(Method::Allocate, 486);
    assert!(r.integrity_ok(&a2.key()));
    assert_eq!(h.bind_requests.len(), 1);
    // Another user is not affected.
    let mut b = Client::bob(udp(3));
    h.allocate(&mut b);
    // Deleting alice's first allocation frees her slot.
    h.refresh(&mut a1, Some(0)).assert_success(Method::Refresh);
    h.allocate(&mut a2);
    assert_eq!(h.quota.total(), 2);
}

#[test]
fn a_closed_quota_refuses_new_allocations_508_and_keeps_the_existing_ones() {
    let mut h = Harness::setup().build();
    let mut a = Client::alice(udp(1));
    h.allocate(&mut a);
    h.quota.close();
    assert!(h.quota.is_closed());
    let mut b = Client::bob(udp(2));
    let r = h.allocate_with(&mut b, |_| {});
    r.assert_error(Method::Allocate, 508);
    assert!(r.integrity_ok(&b.key()));
    assert_eq!(
        h.bind_requests.len(),
        1,
        "no relay socket for the refused one"
    );
    // Alice's allocation still refreshes, and ends when she deletes it.
    h.refresh(&mut a, Some(600)).assert_success(Method::Refresh);
    assert_eq!(h.quota.total(), 1);
    h.refresh(&mut a, Some(0)).assert_success(Method::Refresh);
    assert_eq!(h.quota.total(), 0);
    // And a new one stays refused.
    let mut c = Client::alice(udp(3));
    h.allocate_with(&mut c, |_| {})
        .assert_error(Method::Allocate, 508);
}

#[test]
fn edge_wide_quota_is_508() {
    let mut h = Harness::setup().quota_total(1).build();
    let mut a = Client::alice(udp(1));
    h.allocate(&mut a);
    let mut b = Client::bob(udp(2));
    let r = h.allocate_with(&mut b, |_| {});
    r.assert_error(Method::Allocate, 508);
    assert!(r.integrity_ok(&b.key()));
    assert_eq!(h.quota.total(), 1);
    assert_eq!(h.bind_requests.len(), 1);
    // Once alice's allocation expires, bob fits.
    h.advance(secs(600));
    assert_eq!(h.quota.total(), 0);
    h.allocate(&mut b);
}
