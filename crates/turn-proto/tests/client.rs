//! The sans-IO TURN client against the sans-IO server, both on one virtual clock: what the
//! SDK's media path relies on (allocate with the 401 dance, bind a channel, data both ways as
//! ChannelData, refreshes keeping everything alive past the lifetimes, retransmission over
//! UDP, a wrong password and a denied peer reported as typed failures).

mod common;

use std::time::Duration;

use common::{sa, secs, udp, Harness};
use turn_proto::client::{Request, TurnClient, TurnClientConfig, TurnClientError, TurnClientEvent};
use turn_proto::server::{Destination, FiveTuple, Forward, PEER_HEADROOM, PEER_TAILROOM};

fn client(password: &str) -> TurnClient {
    TurnClient::new(
        TurnClientConfig {
            username: "alice".into(),
            password: password.into(),
            reliable: false,
        },
        *b"cli0",
    )
}

/// Delivers everything the client wants sent to the server, and everything the server
/// queued for this client back to the client. Returns peer data the client surfaced.
fn shuttle(
    h: &mut Harness,
    c: &mut TurnClient,
    flow: FiveTuple,
) -> Vec<(std::net::SocketAddr, Vec<u8>)> {
    let mut data = Vec::new();
    loop {
        let mut moved = false;
        while let Some(bytes) = c.poll_transmit() {
            moved = true;
            h.send(flow, &bytes);
        }
        for r in h.take_all_to(flow) {
            moved = true;
            if let Some((peer, d)) = c.handle_input(h.now, &r.bytes) {
                data.push((peer, d.to_vec()));
            }
        }
        if !moved {
            return data;
        }
    }
}

fn events(c: &mut TurnClient) -> Vec<TurnClientEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// Moves both clocks to `t0 + d`, firing the client's and the server's timers in order.
fn run_to(h: &mut Harness, c: &mut TurnClient, flow: FiveTuple, d: Duration) {
    let target = h.at(d);
    while let Some(t) = c.poll_timeout().filter(|t| *t <= target) {
        h.run_until(t.max(h.now));
        c.handle_timeout(h.now);
        shuttle(h, c, flow);
    }
    h.run_until(target);
    shuttle(h, c, flow);
}

#[test]
fn allocates_binds_and_relays_both_ways_as_channel_data() {
    let mut h = Harness::new();
    let flow = udp(1);
    let peer = sa("203.0.113.7:5000");
    let mut c = client("secret");
    c.allocate(h.now);
    c.bind_peer(peer, h.now); // before the allocation exists: sent once it does
    shuttle(&mut h, &mut c, flow);
    let ev = events(&mut c);
    let relayed = match ev.first() {
        Some(TurnClientEvent::Allocated {
            relayed,
            mapped,
            lifetime,
        }) => {
            assert_eq!(*mapped, Some(flow.client));
            assert_eq!(*lifetime, secs(600));
            *relayed
        }
        other => panic!("expected Allocated first, got {other:?}"),
    };
    assert_eq!(c.relayed(), Some(relayed));
    assert!(
        matches!(ev.get(1), Some(TurnClientEvent::ChannelBound { peer: p, channel: 0x4000 }) if *p == peer)
    );

    // Client → peer: ChannelData the server forwards verbatim.
    let mut out = Vec::new();
    assert!(c.encode_data(peer, b"hello peer", &mut out));
    assert_eq!(out[0] >> 6, 0b01, "ChannelData once bound");
    match h.send(flow, &out) {
        Forward::ToPeer {
            relay,
            peer: p,
            range,
        } => {
            assert_eq!((relay, p), (relayed, peer));
            assert_eq!(&out[range], b"hello peer");
        }
        f => panic!("not forwarded: {f:?}"),
    }

    // Peer → client: the server wraps it; the client unwraps it without a copy.
    let mut buf = vec![0u8; PEER_HEADROOM + 64 + PEER_TAILROOM];
    buf[PEER_HEADROOM..PEER_HEADROOM + 9].copy_from_slice(b"hi client");
    let f = h.server.handle_peer(h.now, relayed, peer, &mut buf, 9);
    let Forward::ToClient { client: to, range } = f else {
        panic!("not forwarded to the client: {f:?}")
    };
    assert_eq!(to, flow);
    let (from, data) = c.handle_input(h.now, &buf[range]).expect("peer data");
    assert_eq!((from, data), (peer, &b"hi client"[..]));
}

#[test]
fn refreshes_keep_the_allocation_and_channel_alive_for_an_hour() {
    let mut h = Harness::new();
    let flow = udp(2);
    let peer = sa("203.0.113.8:5000");
    let mut c = client("secret");
    c.allocate(h.now);
    c.bind_peer(peer, h.now);
    shuttle(&mut h, &mut c, flow);
    let relayed = c.relayed().expect("allocated");
    events(&mut c);

    run_to(&mut h, &mut c, flow, secs(3600));
    assert!(events(&mut c).is_empty(), "no failure in an hour");
    assert!(h.server.has_allocation(&flow), "the server still holds it");
    let mut out = Vec::new();
    assert!(c.encode_data(peer, b"still here", &mut out));
    assert!(
        matches!(h.send(flow, &out), Forward::ToPeer { relay, .. } if relay == relayed),
        "the channel is still bound after 6 binding lifetimes"
    );
}

#[test]
fn a_lost_request_is_retransmitted_and_a_dead_server_times_out() {
    let mut h = Harness::new();
    let flow = udp(3);
    let mut c = client("secret");
    c.allocate(h.now);
    // The first transmission is lost.
    assert!(c.poll_transmit().is_some());
    assert!(c.poll_transmit().is_none());
    let rto = c.poll_timeout().expect("a retransmission is scheduled");
    assert_eq!(rto - h.now, Duration::from_millis(500));
    h.run_until(rto);
    c.handle_timeout(h.now);
    shuttle(&mut h, &mut c, flow);
    assert!(c.relayed().is_some(), "the retransmission got through");

    // Another client whose server never answers: 7 transmissions, then Timeout at 39.5 s.
    let mut dead = client("secret");
    let t0 = h.now;
    dead.allocate(t0);
    let mut sent = 0;
    let mut now = t0;
    loop {
        while dead.poll_transmit().is_some() {
            sent += 1;
        }
        let Some(t) = dead.poll_timeout() else { break };
        now = t;
        dead.handle_timeout(now);
    }
    assert_eq!(sent, 7);
    assert_eq!(now - t0, Duration::from_millis(39_500));
    assert_eq!(
        events(&mut dead),
        vec![TurnClientEvent::Failed(TurnClientError::Timeout(
            Request::Allocate
        ))]
    );
}

#[test]
fn wrong_password_and_denied_peer_are_typed_failures() {
    let mut h = Harness::new();
    let mut c = client("not-the-password");
    c.allocate(h.now);
    shuttle(&mut h, &mut c, udp(4));
    assert!(matches!(
        events(&mut c).as_slice(),
        [TurnClientEvent::Failed(TurnClientError::Refused {
            request: Request::Allocate,
            code: 401,
            ..
        })]
    ));
    assert_eq!(c.relayed(), None);

    let mut c = client("secret");
    c.allocate(h.now);
    c.bind_peer(sa("127.0.0.1:5000"), h.now);
    shuttle(&mut h, &mut c, udp(5));
    let ev = events(&mut c);
    assert!(matches!(ev[0], TurnClientEvent::Allocated { .. }));
    assert!(matches!(
        &ev[1],
        TurnClientEvent::Failed(TurnClientError::Refused {
            request: Request::ChannelBind(_),
            code: 403,
            ..
        })
    ));
    assert!(
        c.relayed().is_some(),
        "a refused peer does not end the allocation"
    );
}

#[test]
fn a_forged_success_is_ignored() {
    let mut h = Harness::new();
    let flow = udp(6);
    let mut c = client("secret");
    c.allocate(h.now);
    // 401 round trip, then capture the authenticated Allocate and answer it with a success
    // signed by another key before the real server does.
    let first = c.poll_transmit().unwrap();
    h.send(flow, &first);
    for r in h.take_all_to(flow) {
        c.handle_input(h.now, &r.bytes);
    }
    let authed = c.poll_transmit().expect("authenticated retry");
    let txid: [u8; 12] = authed[8..20].try_into().unwrap();
    let mut forged = Vec::new();
    {
        use turn_proto::codec::*;
        let mut b = MessageBuilder::new(
            &mut forged,
            MessageType::new(Method::Allocate, Class::Success),
            txid,
        );
        b.add_xor_address(attr::XOR_RELAYED_ADDRESS, sa("198.51.100.66:1"));
        b.integrity(
            IntegrityKind::Sha1,
            &long_term_key("alice", "cloudproxy", "guess").0,
        );
    }
    c.handle_input(h.now, &forged);
    assert_eq!(c.relayed(), None, "forged answer ignored");
    h.send(flow, &authed);
    for r in h.take_all_to(flow) {
        c.handle_input(h.now, &r.bytes);
    }
    assert_ne!(c.relayed(), Some(sa("198.51.100.66:1")));
    assert!(c.relayed().is_some());
    let _ = Destination::Client(flow);
}
