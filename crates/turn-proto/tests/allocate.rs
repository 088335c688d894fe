//! Allocate (RFC 8656 §7.2): the challenge, the success response, retransmissions and every
//! refusal the request's attributes can earn, plus EVEN-PORT reservations and DONT-FRAGMENT.

mod common;

use common::*;
use turn_proto::codec::{attr, Class, IntegrityKind, Method};
use turn_proto::server::{Event, RelayTransport};

#[test]
fn first_allocate_is_challenged_with_realm_and_nonce() {
    let mut h = Harness::new();
    let c = Client::alice(udp(1));
    let txid = h.txid();
    let r = h.exchange(
        c.tuple,
        &c.build(Method::Allocate, txid, &|b| requested_transport(b, 17)),
    );
    r.assert_error(Method::Allocate, 401);
    assert_eq!(r.txid(), txid);
    assert_eq!(r.text(attr::REALM).as_deref(), Some(REALM));
    let nonce = r.nonce().expect("NONCE");
    assert!(!nonce.is_empty());
    assert_eq!(r.msg().integrity(), None, "a challenge cannot be signed");
    assert!(
        h.bind_requests.is_empty(),
        "no socket before authentication"
    );
    assert_eq!(h.server.stats().challenges, 1);
}

#[test]
fn success_carries_relayed_mapped_lifetime_and_valid_integrity() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let r = h.allocate_with(&mut c, |_| {});
    r.assert_success(Method::Allocate);
    assert_eq!(r.relayed(), sa("198.51.100.1:50000"));
    assert_eq!(r.xor(attr::XOR_MAPPED_ADDRESS), Some(c.tuple.client));
    assert_eq!(r.lifetime(), Some(600));
    assert_eq!(r.msg().integrity(), Some(IntegrityKind::Sha1));
    assert!(
        r.integrity_ok(&c.key()),
        "signed with alice's long-term key"
    );
    assert!(!r.integrity_ok(&Client::bob(udp(1)).key()));
    assert!(
        r.msg().has_fingerprint(),
        "fingerprinted request, fingerprinted answer"
    );
    let req = h.bind_requests[0];
    assert_eq!(req.transport, RelayTransport::Udp);
    assert!(!req.even_port && !req.reserve_next && !req.dont_fragment);
    assert_eq!(req.use_reserved, None);
    assert_eq!(h.server.stats().allocations_active, 1);
    assert_eq!(h.quota.total(), 1);
}

#[test]
fn retransmitted_allocate_gets_the_same_answer() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    h.learn_nonce(&mut c);
    let txid = h.txid();
    let first = h.request_txid(&c, Method::Allocate, txid, |b| requested_transport(b, 17));
    first.assert_success(Method::Allocate);
    let again = h.request_txid(&c, Method::Allocate, txid, |b| requested_transport(b, 17));
    assert_eq!(again, first, "byte-identical answer to a retransmission");
    assert_eq!(
        h.bind_requests.len(),
        1,
        "no second socket for a retransmission"
    );
    assert_eq!(h.server.stats().allocations_active, 1);
    assert_eq!(h.quota.total(), 1);

    // Later retransmissions still name the same relayed address.
    h.advance(secs(2));
    let late = h.request_txid(&c, Method::Allocate, txid, |b| requested_transport(b, 17));
    late.assert_success(Method::Allocate);
    assert_eq!(late.relayed(), first.relayed());
    assert_eq!(late.xor(attr::XOR_MAPPED_ADDRESS), Some(c.tuple.client));
    assert_eq!(
        late.lifetime(),
        Some(598),
        "the time left, not a new lifetime"
    );
    assert_eq!(h.bind_requests.len(), 1);
}

#[test]
fn second_allocate_on_the_same_flow_is_437() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    h.allocate(&mut c);
    let r = h.allocate_with(&mut c, |_| {});
    r.assert_error(Method::Allocate, 437);
    assert!(
        r.integrity_ok(&c.key()),
        "refusals after authentication are signed"
    );
    assert_eq!(h.server.stats().allocations_active, 1);
    assert_eq!(h.bind_requests.len(), 1);
}

#[test]
fn missing_requested_transport_is_400() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let r = h.request(&mut c, Method::Allocate, |_| {});
    r.assert_error(Method::Allocate, 400);
    assert!(h.bind_requests.is_empty());
    assert_eq!(h.quota.total(), 0);
}

#[test]
fn unknown_transport_protocol_is_442() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let r = h.request(&mut c, Method::Allocate, |b| requested_transport(b, 99));
    r.assert_error(Method::Allocate, 442);
    assert!(h.bind_requests.is_empty());
}

#[test]
fn tcp_relay_over_udp_is_442() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let r = h.request(&mut c, Method::Allocate, |b| requested_transport(b, 6));
    r.assert_error(Method::Allocate, 442);
    assert!(h.bind_requests.is_empty());
}

#[test]
fn ipv6_requested_on_an_ipv4_only_edge_is_440() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let r = h.allocate_with(&mut c, |b| {
        b.add(attr::REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0]);
    });
    r.assert_error(Method::Allocate, 440);
    assert!(h.bind_requests.is_empty());
    assert_eq!(h.quota.total(), 0);
}

#[test]
fn lifetime_is_clamped_to_the_maximum() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let r = h.allocate_with(&mut c, |b| {
        b.add_u32(attr::LIFETIME, 99_999);
    });
    r.assert_success(Method::Allocate);
    assert_eq!(r.lifetime(), Some(3600));
    // And a short ask gets the default.
    let mut c2 = Client::alice(udp(2));
    let r = h.allocate_with(&mut c2, |b| {
        b.add_u32(attr::LIFETIME, 10);
    });
    assert_eq!(r.lifetime(), Some(600));
}

#[test]
fn even_port_reservation_token_gets_the_next_port() {
    let mut h = Harness::new();
    let mut rtp = Client::alice(udp(1));
    let r = h.allocate_with(&mut rtp, |b| {
        b.add(attr::EVEN_PORT, &[0x80]);
    });
    r.assert_success(Method::Allocate);
    let relay = r.relayed();
    assert_eq!(relay.port() % 2, 0);
    let req = h.bind_requests[0];
    assert!(req.even_port && req.reserve_next);
    let token = r.get(attr::RESERVATION_TOKEN).expect("RESERVATION-TOKEN");
    assert_eq!(token.len(), 8);
    assert!(r.integrity_ok(&rtp.key()));

    let mut rtcp = Client::alice(udp(2));
    let r = h.allocate_with(&mut rtcp, |b| {
        b.add(attr::RESERVATION_TOKEN, &token);
    });
    r.assert_success(Method::Allocate);
    assert_eq!(
        r.relayed(),
        sa(&format!("198.51.100.1:{}", relay.port() + 1))
    );
    assert_eq!(h.bind_requests[1].use_reserved, Some(r.relayed()));

    // The reservation was taken: its timer must not release the socket now in use, and the
    // token is spent.
    h.advance(secs(31));
    assert!(h.released().is_empty(), "{:?}", h.events);
    let mut other = Client::bob(udp(3));
    let again = h.allocate_with(&mut other, |b| {
        b.add(attr::RESERVATION_TOKEN, &token);
    });
    again.assert_error(Method::Allocate, 508);
}

#[test]
fn a_reservation_made_on_one_shard_is_redeemed_on_another() {
    // The RTCP Allocate comes from another client socket, which the kernel may give to any
    // shard: the reservation is edge-wide.
    let mut one = Harness::new();
    let mut two = Harness::setup()
        .config(|c| c.shard = 1)
        .shard_of(&one)
        .build();
    let mut rtp = Client::alice(udp(1));
    let r = one.allocate_with(&mut rtp, |b| {
        b.add(attr::EVEN_PORT, &[0x80]);
    });
    r.assert_success(Method::Allocate);
    let relay = r.relayed();
    let token = r.get(attr::RESERVATION_TOKEN).expect("RESERVATION-TOKEN");

    let mut rtcp = Client::alice(udp(2));
    let r = two.allocate_with(&mut rtcp, |b| {
        b.add(attr::RESERVATION_TOKEN, &token);
    });
    r.assert_success(Method::Allocate);
    assert_eq!(r.relayed().port(), relay.port() + 1);
    assert_eq!(two.bind_requests[0].use_reserved, Some(r.relayed()));

    // The hold's timer, on the first shard, finds it redeemed: nothing is released, and the
    // token is spent on every shard.
    one.advance(secs(31));
    assert!(one.released().is_empty(), "{:?}", one.events);
    for h in [&mut one, &mut two] {
        let mut other = Client::bob(udp(3));
        let again = h.allocate_with(&mut other, |b| {
            b.add(attr::RESERVATION_TOKEN, &token);
        });
        again.assert_error(Method::Allocate, 508);
    }
}

#[test]
fn retransmitted_even_port_allocate_repeats_the_reservation_token() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    h.learn_nonce(&mut c);
    let txid = h.txid();
    let extra = |b: &mut turn_proto::codec::MessageBuilder<'_>| {
        requested_transport(b, 17);
        b.add(attr::EVEN_PORT, &[0x80]);
    };
    let first = h.request_txid(&c, Method::Allocate, txid, extra);
    first.assert_success(Method::Allocate);
    let token = first.get(attr::RESERVATION_TOKEN).expect("token");
    // The response was lost; the client retransmits.
    let again = h.request_txid(&c, Method::Allocate, txid, extra);
    again.assert_success(Method::Allocate);
    assert_eq!(again.relayed(), first.relayed());
    assert_eq!(
        again.get(attr::RESERVATION_TOKEN),
        Some(token),
        "the retransmission answer must carry the reservation the first answer made"
    );
    assert_eq!(again, first);
}

#[test]
fn unknown_reservation_token_is_508() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let r = h.allocate_with(&mut c, |b| {
        b.add(attr::RESERVATION_TOKEN, &[1, 2, 3, 4, 5, 6, 7, 8]);
    });
    r.assert_error(Method::Allocate, 508);
    assert!(h.bind_requests.is_empty());
    assert_eq!(h.quota.total(), 0);
}

#[test]
fn unused_reservation_is_released_after_30_seconds() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let r = h.allocate_with(&mut c, |b| {
        b.add(attr::EVEN_PORT, &[0x80]);
    });
    r.assert_success(Method::Allocate);
    let held = sa(&format!("198.51.100.1:{}", r.relayed().port() + 1));
    let token = r.get(attr::RESERVATION_TOKEN).expect("token");

    h.advance(secs(30) - std::time::Duration::from_millis(1));
    assert!(h.released().is_empty());
    h.advance(std::time::Duration::from_millis(1));
    assert_eq!(h.released(), vec![held]);
    assert_eq!(h.released_transport(held), Some(RelayTransport::Udp));
    assert!(
        h.fired.contains(&h.at(secs(30))),
        "poll_timeout named the reservation deadline"
    );

    let mut late = Client::alice(udp(2));
    let r = h.allocate_with(&mut late, |b| {
        b.add(attr::RESERVATION_TOKEN, &token);
    });
    r.assert_error(Method::Allocate, 508);
    // The allocation that made the reservation is untouched.
    assert_eq!(h.server.stats().allocations_active, 1);
}

#[test]
fn dont_fragment_is_accepted_and_passed_to_the_io_layer() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let r = h.allocate_with(&mut c, |b| {
        b.add(attr::DONT_FRAGMENT, &[]);
    });
    r.assert_success(Method::Allocate);
    assert_eq!(h.bind_requests.len(), 1);
    assert!(h.bind_requests[0].dont_fragment);
    assert!(!h
        .events
        .iter()
        .any(|e| matches!(e, Event::ReleaseRelay { .. })));
    assert_eq!(r.class(), Class::Success);
}
