//! Bad input from clients: unknown comprehension-required attributes (420), truncated and
//! oversized messages (400 for a recognisable request, silence otherwise), random bytes (never
//! a panic), ChannelData on an unbound channel, and the unauthenticated Binding request.

mod common;

use common::*;
use turn_proto::codec::{attr, Class, Message, MessageBuilder, MessageType, Method};
use turn_proto::server::{Forward, PEER_HEADROOM, PEER_TAILROOM};

/// A tiny deterministic PRNG (xorshift64*).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }
}

#[test]
fn unknown_comprehension_required_attribute_is_420_before_auth() {
    let mut h = Harness::new();
    let c = Client::alice(udp(1));
    let txid = h.txid();
    let bytes = request_bytes(
        Method::Allocate,
        txid,
        &|b| {
            requested_transport(b, 17);
            b.add(0x0077, b"what");
            b.add(0xC001, b"optional, ignored");
        },
        None,
        false,
    );
    let r = h.exchange(c.tuple, &bytes);
    r.assert_error(Method::Allocate, 420);
    assert_eq!(r.get(attr::UNKNOWN_ATTRIBUTES), Some(vec![0x00, 0x77]));
    assert_eq!(
        h.server.stats().challenges,
        0,
        "refused before the challenge"
    );
    assert!(h.bind_requests.is_empty());
}

#[test]
fn binding_with_unknown_comprehension_required_attribute_is_420() {
    let mut h = Harness::new();
    let c = Client::alice(udp(1));
    let txid = h.txid();
    let bytes = request_bytes(
        Method::Binding,
        txid,
        &|b| {
            b.add(0x0077, b"what");
        },
        None,
        false,
    );
    let r = h.exchange(c.tuple, &bytes);
    r.assert_error(Method::Binding, 420);
    assert_eq!(r.get(attr::UNKNOWN_ATTRIBUTES), Some(vec![0x00, 0x77]));
}

/// A valid Allocate request (no auth needed to be recognisable).
fn allocate_bytes(txid: [u8; 12]) -> Vec<u8> {
    request_bytes(
        Method::Allocate,
        txid,
        &|b| {
            requested_transport(b, 17);
            b.add(attr::SOFTWARE, b"test client");
        },
        None,
        false,
    )
}

#[test]
fn truncated_request_is_400() {
    let mut h = Harness::new();
    let c = Client::alice(udp(1));
    let txid = h.txid();
    let full = allocate_bytes(txid);
    let cut = &full[..full.len() - 4]; // header still announces the full length
    let r = h.exchange(c.tuple, cut);
    r.assert_error(Method::Allocate, 400);
    assert_eq!(r.txid(), txid);
    assert_eq!(h.server.stats().malformed, 1);
    assert_eq!(h.server.stats().challenges, 0);
}

#[test]
fn request_with_trailing_bytes_is_400() {
    let mut h = Harness::new();
    let c = Client::alice(udp(1));
    let txid = h.txid();
    let mut long = allocate_bytes(txid);
    long.extend_from_slice(&[0, 0, 0, 0]);
    let r = h.exchange(c.tuple, &long);
    r.assert_error(Method::Allocate, 400);
    assert_eq!(h.server.stats().malformed, 1);
}

#[test]
fn request_with_inconsistent_length_field_is_400() {
    let mut h = Harness::new();
    let c = Client::alice(udp(1));
    let txid = h.txid();
    let mut bytes = allocate_bytes(txid);
    let len = u16::from_be_bytes([bytes[2], bytes[3]]);
    bytes[2..4].copy_from_slice(&(len + 8).to_be_bytes()); // claims more than is there
    let r = h.exchange(c.tuple, &bytes);
    r.assert_error(Method::Allocate, 400);
    bytes[2..4].copy_from_slice(&(len - 2).to_be_bytes()); // unaligned
    let r = h.exchange(c.tuple, &bytes);
    r.assert_error(Method::Allocate, 400);
}

#[test]
fn malformed_indications_and_non_requests_are_dropped_silently() {
    let mut h = Harness::new();
    let c = Client::alice(udp(1));
    let txid = h.txid();
    let mut v = Vec::new();
    let mut b = MessageBuilder::new(
        &mut v,
        MessageType::new(Method::Send, Class::Indication),
        txid,
    );
    b.add_xor_address(attr::XOR_PEER_ADDRESS, sa("203.0.113.1:1"));
    b.add(attr::DATA, b"data");
    let cut = &v[..v.len() - 4];
    assert_eq!(h.send(c.tuple, cut), Forward::None);
    // A truncated request without the magic cookie is not worth an answer.
    let mut bad_cookie = allocate_bytes(txid);
    bad_cookie[4] ^= 0xFF;
    assert_eq!(h.send(c.tuple, &bad_cookie), Forward::None);
    // Nor is a header-only fragment.
    assert_eq!(h.send(c.tuple, &allocate_bytes(txid)[..12]), Forward::None);
    assert!(h.transmits.is_empty(), "{:?}", h.transmits);
    assert_eq!(h.server.stats().malformed, 3);
}

#[test]
fn random_bytes_never_panic() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let relay = h.allocate(&mut c);
    h.channel_bind(&mut c, 0x4000, sa("203.0.113.7:5000"))
        .assert_success(Method::ChannelBind);
    let mut tc = Client::alice(tcp(2, 41_000));
    let tcp_relay = {
        let r = h.request(&mut tc, Method::Allocate, |b| requested_transport(b, 6));
        r.assert_success(Method::Allocate);
        r.relayed()
    };
    let valid = allocate_bytes([7; 12]);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let flows = [c.tuple, tc.tuple, udp(3)];

    for i in 0..10_000 {
        let from = flows[i % flows.len()];
        let len = rng.below(700);
        let mut buf = vec![0u8; len];
        rng.fill(&mut buf);
        match i % 4 {
            // Pure noise.
            0 => {}
            // Noise behind a STUN header with the magic cookie and a matching length.
            1 if len >= 20 => {
                buf[0] &= 0x3F;
                buf[2..4].copy_from_slice(&((len - 20) as u16).to_be_bytes());
                buf[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
            }
            // Noise behind a ChannelData header.
            2 if len >= 4 => {
                buf[0] = 0x40 | (buf[0] & 0x3F);
                buf[2..4].copy_from_slice(&((len - 4) as u16).to_be_bytes());
            }
            // A valid request with a few bytes flipped.
            3 => {
                buf = valid.clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(buf.len());
                    buf[at] ^= 1 << rng.below(8);
                }
                buf.truncate(buf.len() - rng.below(3) * rng.below(buf.len() / 2));
            }
            _ => {}
        }
        let _ = h.send(from, &buf);

        // And the same noise from a peer.
        let plen = len.min(600);
        let mut pbuf = vec![0u8; PEER_HEADROOM + plen + PEER_TAILROOM];
        rng.fill(&mut pbuf);
        let peer = if i % 2 == 0 {
            sa("203.0.113.7:5000")
        } else {
            sa("203.0.113.9:1")
        };
        let target = if i % 3 == 0 { tcp_relay } else { relay };
        let _ = h.server.handle_peer(h.now, target, peer, &mut pbuf, plen);
        h.pump();
        // Every answer the server produced is a well-formed message.
        for t in h.transmits.drain(..) {
            Message::decode(&t.data).expect("server output decodes");
        }
    }
    // Too short a buffer for the announced length is refused, not a panic.
    let mut small = vec![0u8; 10];
    assert_eq!(
        h.server
            .handle_peer(h.now, relay, sa("203.0.113.7:5000"), &mut small, 100),
        Forward::None
    );
    // The server still works.
    let r = h.refresh(&mut c, None);
    r.assert_success(Method::Refresh);
    assert!(h.server.stats().malformed > 0);
}

#[test]
fn channel_data_on_an_unbound_channel_is_dropped() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    h.allocate(&mut c);
    h.create_permission(&mut c, &[sa("203.0.113.7:5000")])
        .assert_success(Method::CreatePermission);
    let before = h.server.stats().dropped_no_route;
    let (_, f) = h.channel_data(&c, 0x4000, b"unbound");
    assert_eq!(f, Forward::None);
    assert_eq!(h.server.stats().dropped_no_route, before + 1);
    // And from a flow with no allocation at all.
    let stranger = Client::alice(udp(2));
    let (_, f) = h.channel_data(&stranger, 0x4000, b"who?");
    assert_eq!(f, Forward::None);
    assert_eq!(h.server.stats().dropped_no_route, before + 2);
    assert!(h.transmits.is_empty());
}

#[test]
fn binding_request_needs_no_auth() {
    let mut h = Harness::new();
    for tuple in [udp(1), tcp(2, 41_000)] {
        let c = Client::alice(tuple);
        let txid = h.txid();
        let bytes = request_bytes(Method::Binding, txid, &|_| {}, None, true);
        let r = h.exchange(c.tuple, &bytes);
        r.assert_success(Method::Binding);
        assert_eq!(r.xor(attr::XOR_MAPPED_ADDRESS), Some(tuple.client));
        assert!(r.msg().has_fingerprint());
        assert_eq!(r.msg().integrity(), None);
    }
    assert_eq!(h.server.stats().challenges, 0);
}
