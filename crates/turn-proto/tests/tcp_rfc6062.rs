//! RFC 6062 TCP relaying: TCP allocations, Connect (success, failure, duplicate),
//! ConnectionBind on a data connection, incoming peer connections with and without
//! permission, the 30 s ConnectionBind deadline, and client connections closing.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use turn_proto::codec::{attr, Class, Family, MessageType, Method};
use turn_proto::server::{connection_bind_shard, Event, RelayTransport};

const PEER: &str = "203.0.113.9:80";

/// alice's control connection with a TCP allocation; returns the client and the relay.
fn tcp_allocation(h: &mut Harness) -> (Client, SocketAddr) {
    let mut c = Client::alice(tcp(1, 41_000));
    let r = h.request(&mut c, Method::Allocate, |b| requested_transport(b, 6));
    r.assert_success(Method::Allocate);
    assert!(r.integrity_ok(&c.key()));
    (c, r.relayed())
}

fn connect(h: &mut Harness, c: &mut Client, peer: SocketAddr) -> Option<(u32, SocketAddr)> {
    let txid = h.txid();
    let bytes = c.build(Method::Connect, txid, &|b| {
        b.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
    });
    h.send(c.tuple, &bytes);
    // Either an immediate refusal or a ConnectPeer event and no answer yet.
    if let Some(r) = h.take_response(c.tuple, txid) {
        panic!("Connect answered at once: {r:?}");
    }
    h.take_events().into_iter().find_map(|e| match e {
        Event::ConnectPeer {
            connection,
            relay,
            peer: p,
        } => {
            assert_eq!(p, peer);
            Some((connection, relay))
        }
        _ => None,
    })
}

/// Connect request with a chosen txid, returning it.
fn connect_txid(h: &mut Harness, c: &Client, peer: SocketAddr) -> [u8; 12] {
    let txid = h.txid();
    let bytes = c.build(Method::Connect, txid, &|b| {
        b.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
    });
    h.send(c.tuple, &bytes);
    txid
}

fn connection_bind(h: &mut Harness, data: &mut Client, id: u32) -> Response {
    h.request(data, Method::ConnectionBind, move |b| {
        b.add_u32(attr::CONNECTION_ID, id);
    })
}

#[test]
fn tcp_allocation_binds_a_tcp_relay() {
    let mut h = Harness::new();
    let (_, relay) = tcp_allocation(&mut h);
    assert_eq!(h.bind_requests.len(), 1);
    assert_eq!(h.bind_requests[0].transport, RelayTransport::Tcp);
    assert!(h.server.owns_relay(relay));
}

#[test]
fn connect_then_connection_bind_splices() {
    let mut h = Harness::new();
    let (c, relay) = tcp_allocation(&mut h);
    let peer = sa(PEER);

    let txid = connect_txid(&mut h, &c, peer);
    assert!(
        h.take_response(c.tuple, txid).is_none(),
        "waits for the TCP connect"
    );
    let events = h.take_events();
    let [Event::ConnectPeer {
        connection,
        relay: from,
        peer: to,
    }] = events.as_slice()
    else {
        panic!("expected one ConnectPeer, got {events:?}");
    };
    let id = *connection;
    assert_eq!((*from, *to), (relay, peer));

    h.server.handle_peer_connected(h.now, id, true);
    h.pump();
    let r = h.expect_response(c.tuple, txid);
    r.assert_success(Method::Connect);
    assert_eq!(r.u32(attr::CONNECTION_ID), Some(id));
    assert!(r.integrity_ok(&c.key()));

    // The data connection: same client IP, another port, its own authentication.
    let mut data = c.on(tcp(1, 41_001));
    data.nonce = None;
    let r = connection_bind(&mut h, &mut data, id);
    r.assert_success(Method::ConnectionBind);
    assert!(r.integrity_ok(&data.key()));
    assert_eq!(
        h.take_events(),
        vec![Event::SpliceConnection {
            connection: id,
            client: data.tuple
        }]
    );

    // Bound: the deadline passes without a CloseConnection.
    h.advance(secs(31));
    assert!(
        !h.events
            .iter()
            .any(|e| matches!(e, Event::CloseConnection { .. })),
        "{:?}",
        h.events
    );
    // And the id cannot be bound twice.
    let mut again = c.on(tcp(1, 41_002));
    connection_bind(&mut h, &mut again, id).assert_error(Method::ConnectionBind, 400);
}

#[test]
fn connection_bind_with_unknown_id_is_400() {
    let mut h = Harness::new();
    let (c, _) = tcp_allocation(&mut h);
    let mut data = c.on(tcp(1, 41_001));
    let r = connection_bind(&mut h, &mut data, 0x00AB_CDEF);
    r.assert_error(Method::ConnectionBind, 400);
    assert!(h.take_events().is_empty());
}

#[test]
fn connection_bind_by_another_user_is_441() {
    let mut h = Harness::new();
    let (mut c, _) = tcp_allocation(&mut h);
    let (id, _) = connect(&mut h, &mut c, sa(PEER)).expect("ConnectPeer");
    h.server.handle_peer_connected(h.now, id, true);
    h.pump();
    h.take_all_to(c.tuple);
    let mut bob = Client::bob(tcp(1, 41_001));
    connection_bind(&mut h, &mut bob, id).assert_error(Method::ConnectionBind, 441);
    assert!(h.take_events().is_empty());
    // alice still can.
    let mut data = c.on(tcp(1, 41_002));
    connection_bind(&mut h, &mut data, id).assert_success(Method::ConnectionBind);
}

#[test]
fn failed_connect_is_447() {
    let mut h = Harness::new();
    let (mut c, _) = tcp_allocation(&mut h);
    let peer = sa(PEER);
    let txid = connect_txid(&mut h, &c, peer);
    let id = match h.take_events().as_slice() {
        [Event::ConnectPeer { connection, .. }] => *connection,
        other => panic!("{other:?}"),
    };
    h.server.handle_peer_connected(h.now, id, false);
    h.pump();
    let r = h.expect_response(c.tuple, txid);
    r.assert_error(Method::Connect, 447);
    assert!(r.integrity_ok(&c.key()));
    // The failed attempt does not block a new one to the same peer.
    assert!(connect(&mut h, &mut c, peer).is_some());
}

#[test]
fn second_connect_to_the_same_peer_is_446() {
    let mut h = Harness::new();
    let (mut c, _) = tcp_allocation(&mut h);
    let peer = sa(PEER);
    let (id, _) = connect(&mut h, &mut c, peer).expect("ConnectPeer");

    // While the first is connecting...
    let r = h.request(&mut c, Method::Connect, |b| {
        b.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
    });
    r.assert_error(Method::Connect, 446);
    // ...and once it is up.
    h.server.handle_peer_connected(h.now, id, true);
    h.pump();
    h.take_all_to(c.tuple);
    let r = h.request(&mut c, Method::Connect, |b| {
        b.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
    });
    r.assert_error(Method::Connect, 446);
    // Another port of the same host is another connection.
    assert!(connect(&mut h, &mut c, sa("203.0.113.9:81")).is_some());
}

#[test]
fn connect_to_a_forbidden_peer_is_403() {
    let mut h = Harness::new();
    let (mut c, _) = tcp_allocation(&mut h);
    let r = h.request(&mut c, Method::Connect, |b| {
        b.add_xor_address(attr::XOR_PEER_ADDRESS, sa("127.0.0.1:22"));
    });
    r.assert_error(Method::Connect, 403);
    assert!(h.take_events().is_empty());
}

#[test]
fn incoming_peer_connection_with_permission_is_announced() {
    let mut h = Harness::new();
    let (mut c, relay) = tcp_allocation(&mut h);
    let peer = sa("203.0.113.9:55555");
    h.create_permission(&mut c, &[sa("203.0.113.9:0")])
        .assert_success(Method::CreatePermission);

    let id = h
        .server
        .handle_peer_connection(h.now, relay, peer)
        .expect("admitted");
    h.pump();
    let sent = h.take_all_to(c.tuple);
    let [attempt] = sent.as_slice() else {
        panic!("expected one ConnectionAttempt, got {sent:?}");
    };
    assert_eq!(
        attempt.message_type(),
        MessageType::new(Method::ConnectionAttempt, Class::Indication)
    );
    assert_eq!(attempt.xor(attr::XOR_PEER_ADDRESS), Some(peer));
    assert_eq!(attempt.u32(attr::CONNECTION_ID), Some(id));

    let mut data = c.on(tcp(1, 41_001));
    connection_bind(&mut h, &mut data, id).assert_success(Method::ConnectionBind);
    assert_eq!(
        h.take_events(),
        vec![Event::SpliceConnection {
            connection: id,
            client: data.tuple
        }]
    );
}

#[test]
fn incoming_peer_connection_without_permission_is_refused() {
    let mut h = Harness::new();
    let (mut c, relay) = tcp_allocation(&mut h);
    assert_eq!(
        h.server
            .handle_peer_connection(h.now, relay, sa("203.0.113.9:55555")),
        None
    );
    h.pump();
    assert!(h.take_all_to(c.tuple).is_empty());
    // A permission for another IP does not help, nor does an unknown listener.
    h.create_permission(&mut c, &[sa("203.0.113.10:1")])
        .assert_success(Method::CreatePermission);
    assert_eq!(
        h.server
            .handle_peer_connection(h.now, relay, sa("203.0.113.9:55555")),
        None
    );
    assert_eq!(
        h.server
            .handle_peer_connection(h.now, sa("198.51.100.1:1"), sa("203.0.113.10:1")),
        None
    );
    h.pump();
    assert!(h.take_all_to(c.tuple).is_empty());
}

#[test]
fn unbound_connections_are_closed_after_30_seconds() {
    let mut h = Harness::new();
    let (mut c, relay) = tcp_allocation(&mut h);
    h.create_permission(&mut c, &[sa("203.0.113.9:0")])
        .assert_success(Method::CreatePermission);
    let start = h.now;

    // One we connected out...
    let (out_id, _) = connect(&mut h, &mut c, sa(PEER)).expect("ConnectPeer");
    h.server.handle_peer_connected(h.now, out_id, true);
    h.pump();
    // ...and one that came in.
    let in_id = h
        .server
        .handle_peer_connection(h.now, relay, sa("203.0.113.9:55555"))
        .expect("admitted");
    h.pump();
    h.take_all_to(c.tuple);
    h.take_events();

    h.run_until(start + secs(30) - Duration::from_millis(1));
    assert!(h.take_events().is_empty());
    h.run_until(start + secs(30));
    let mut closed: Vec<Event> = h.take_events();
    closed.sort_by_key(|e| format!("{e:?}"));
    let mut want = vec![
        Event::CloseConnection { connection: out_id },
        Event::CloseConnection { connection: in_id },
    ];
    want.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(closed, want);

    // Too late to bind; the allocation itself lives on.
    let mut data = c.on(tcp(1, 41_001));
    connection_bind(&mut h, &mut data, in_id).assert_error(Method::ConnectionBind, 400);
    assert_eq!(h.server.stats().allocations_active, 1);
    // And the peer can be connected to again.
    assert!(connect(&mut h, &mut c, sa(PEER)).is_some());
}

#[test]
fn closing_the_control_connection_releases_the_allocation_and_its_connections() {
    let mut h = Harness::new();
    let (mut c, relay) = tcp_allocation(&mut h);
    let (id, _) = connect(&mut h, &mut c, sa(PEER)).expect("ConnectPeer");
    h.server.handle_peer_connected(h.now, id, true);
    h.pump();
    h.take_events();

    h.server.handle_client_closed(h.now, c.tuple);
    h.pump();
    let events = h.take_events();
    assert!(events.contains(&Event::ReleaseRelay {
        relay,
        transport: RelayTransport::Tcp
    }));
    assert!(events.contains(&Event::CloseConnection { connection: id }));
    assert_eq!(h.server.stats().allocations_active, 0);
    assert_eq!(h.quota.total(), 0);
}

#[test]
fn client_closing_while_its_relay_is_bound_gives_everything_back() {
    let mut h = Harness::setup()
        .config(|c| {
            c.max_allocations_per_user = 1;
            c.relay_families = vec![Family::V4, Family::V6];
        })
        .manual_bind()
        .build();
    // A dual-stack UDP allocation over TCP: two sockets to bind.
    let mut c = Client::alice(tcp(1, 41_000));
    h.learn_nonce(&mut c);
    let txid = h.txid();
    let bytes = c.build(Method::Allocate, txid, &|b| {
        requested_transport(b, 17);
        b.add(attr::ADDITIONAL_ADDRESS_FAMILY, &[2, 0, 0, 0]);
    });
    h.send(c.tuple, &bytes);
    let [v4, v6] = h.deferred_binds.as_slice() else {
        panic!("expected two BindRelay, got {:?}", h.deferred_binds);
    };
    let (v4, v6) = (*v4, *v6);
    assert_eq!(h.quota.total(), 1, "the slot is taken while binding");

    // One socket is bound, then the client goes away before the other is.
    let bound4 = h.bind(v4);
    h.answer_bind(v4, Ok(bound4));
    assert!(h.released().is_empty());
    h.server.handle_client_closed(h.now, c.tuple);
    h.pump();
    assert_eq!(
        h.released(),
        vec![bound4.relay],
        "the bound socket is released"
    );
    let bound6 = h.bind(v6);
    h.answer_bind(v6, Ok(bound6));
    assert_eq!(
        h.released(),
        vec![bound4.relay, bound6.relay],
        "the late socket is released"
    );
    assert!(h.take_response(c.tuple, txid).is_none());
    assert_eq!(h.server.stats().allocations_active, 0);
    assert_eq!(h.quota.total(), 0, "the quota slot is given back");

    // alice (limit 1) can allocate again on a new connection.
    h.auto_bind = true;
    let mut again = c.on(tcp(1, 41_001));
    h.allocate_with(&mut again, |_| {})
        .assert_success(Method::Allocate);
}

#[test]
fn a_connection_bind_names_the_shard_that_owns_its_connection() {
    // Shard 3 of an edge makes the CONNECTION-ID; a ConnectionBind naming it, arriving at any
    // shard, is routed by its top byte.
    let mut h = Harness::setup().config(|c| c.shard = 3).build();
    let (mut c, _) = tcp_allocation(&mut h);
    let (id, _) = connect(&mut h, &mut c, sa(PEER)).expect("ConnectPeer");
    assert_eq!(id >> 24, 3);
    let data = Client::alice(tcp(2, 41_001));
    let txid = h.txid();
    let bind = data.build(Method::ConnectionBind, txid, &|b| {
        b.add_u32(attr::CONNECTION_ID, id);
    });
    assert_eq!(connection_bind_shard(&bind), Some(3));

    // Anything else is left where it landed: other methods, a bind without the attribute,
    // a response, and bytes that are not STUN at all.
    let connect = c.build(Method::Connect, txid, &|b| {
        b.add_xor_address(attr::XOR_PEER_ADDRESS, sa(PEER));
    });
    assert_eq!(connection_bind_shard(&connect), None);
    let bare = data.build(Method::ConnectionBind, txid, &|_| {});
    assert_eq!(connection_bind_shard(&bare), None);
    let mut response = bind.clone();
    response[0] |= 0x01; // class bit C1: the same method as a success response

    assert_eq!(connection_bind_shard(&response), None);
    assert_eq!(connection_bind_shard(b"GET / HTTP/1.1\r\n\r\n"), None);
    assert_eq!(connection_bind_shard(&[]), None);
}
