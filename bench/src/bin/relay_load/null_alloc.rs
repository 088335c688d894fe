//! The null relay's allocations: the least a TURN server does per allocation, as a floor for
//! the allocation rate on this machine. It answers the generator's requests with just enough
//! STUN for the generator to go on, and does the kernel work an allocation needs: one
//! datagram in and one out per request, and a relay socket opened (socket, bind, epoll
//! registration) per allocation and closed on the Refresh with LIFETIME 0.
//!
//! What it leaves out, each of which a real server must do: authentication (the 401 carries a
//! fixed nonce, and MESSAGE-INTEGRITY is neither checked nor added), quotas, port-range
//! policy, peer permission checks, timers, logging. Its rate is therefore an upper bound for
//! any server measured by the same generator on the same machine, as the null relay's packet
//! rate is for relaying.

use std::net::SocketAddr;

use turn_proto::codec::{attr, Class, Message, MessageBuilder, Method};

/// Whether a datagram looks like a STUN message (RFC 5389 §6: two zero bits, the magic
/// cookie). The null relay's raw benchmark payloads start with `b"CPB1"` and never do.
pub fn is_stun(d: &[u8]) -> bool {
    d.len() >= 20 && d[0] & 0xC0 == 0 && d[4..8] == [0x21, 0x12, 0xA4, 0x42]
}

/// The allocation side of the null relay: where relay sockets are opened and closed.
pub trait Allocations {
    /// Opens (or finds) the relay socket of `client`; its address, or `None` if the kernel
    /// refused one.
    fn open(&mut self, client: SocketAddr) -> Option<SocketAddr>;
    /// Closes the relay socket of `client`, if any.
    fn close(&mut self, client: SocketAddr);
}

/// Lifetime the null relay grants, seconds (it keeps allocations until told to close them).
const LIFETIME_S: u32 = 600;

/// Writes the answer to the STUN request `req` from `client` into `out` (cleared first);
/// false if there is nothing to answer (not a request, or not decodable).
pub fn answer(
    req: &[u8],
    client: SocketAddr,
    allocs: &mut impl Allocations,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    let Ok(m) = Message::decode(req) else {
        return false;
    };
    let t = m.message_type();
    if t.class != Class::Request {
        return false;
    }
    let txid = *m.transaction_id();
    match t.method {
        Method::Allocate if m.get(attr::USERNAME).is_none() => {
            let mut b = MessageBuilder::new(out, t.error(), txid);
            b.add_error(401, "Unauthorized")
                .add(attr::REALM, b"null")
                .add(attr::NONCE, b"null-relay-nonce");
            b.fingerprint();
        }
        Method::Allocate => match allocs.open(client) {
            Some(relayed) => {
                let mut b = MessageBuilder::new(out, t.success(), txid);
                b.add_xor_address(attr::XOR_RELAYED_ADDRESS, relayed)
                    .add_xor_address(attr::XOR_MAPPED_ADDRESS, client)
                    .add_u32(attr::LIFETIME, LIFETIME_S);
                b.fingerprint();
            }
            None => {
                let mut b = MessageBuilder::new(out, t.error(), txid);
                b.add_error(508, "Insufficient Capacity");
                b.fingerprint();
            }
        },
        Method::Refresh => {
            let lifetime = m.u32_attr(attr::LIFETIME).ok().flatten();
            if lifetime == Some(0) {
                allocs.close(client);
            }
            let mut b = MessageBuilder::new(out, t.success(), txid);
            b.add_u32(
                attr::LIFETIME,
                lifetime.unwrap_or(LIFETIME_S).min(LIFETIME_S),
            );
            b.fingerprint();
        }
        Method::ChannelBind | Method::CreatePermission => {
            MessageBuilder::new(out, t.success(), txid).fingerprint();
        }
        _ => {
            let mut b = MessageBuilder::new(out, t.error(), txid);
            b.add_error(400, "Bad Request");
            b.fingerprint();
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
    use std::collections::HashMap;
    use turn_proto::codec::{long_term_key, TransactionId};

    /// Relay "sockets" as addresses, to check what the answers promise.
    #[derive(Default)]
    struct Ports {
        open: HashMap<SocketAddr, SocketAddr>,
        next: u16,
        refuse: bool,
    }

    impl Allocations for Ports {
        fn open(&mut self, client: SocketAddr) -> Option<SocketAddr> {
            if self.refuse {
                return None;
            }
            let next = &mut self.next;
            Some(*self.open.entry(client).or_insert_with(|| {
                *next += 1;
                SocketAddr::from(([127, 0, 0, 1], 50_000 + *next))
            }))
        }
        fn close(&mut self, client: SocketAddr) {
            self.open.remove(&client);
        }
    }

    fn decode(out: &[u8]) -> Message<'_> {
        let m = Message::decode(out).expect("answer decodes");
        assert!(m.has_fingerprint());
        m
    }

    #[test]
    fn an_allocation_goes_through_the_generators_whole_sequence() {
        let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:20000".parse().unwrap();
        let mut ports = Ports::default();
        let (mut req, mut out) = (Vec::new(), Vec::new());
        let txid: TransactionId = [1; 12];

        proto::allocate(&mut req, txid, None);
        assert!(answer(&req, client, &mut ports, &mut out));
        let m = decode(&out);
        assert_eq!(m.class(), Class::Error);
        assert_eq!(m.error_code().unwrap().unwrap().code, 401);
        assert_eq!(m.transaction_id(), &txid);
        let auth = proto::Auth {
            user: "u".into(),
            realm: m.text(attr::REALM).unwrap().unwrap().into(),
            nonce: m.get(attr::NONCE).unwrap().to_vec(),
            key: long_term_key("u", "null", "p"),
        };
        assert!(
            ports.open.is_empty(),
            "no relay socket before the credential"
        );

        req.clear();
        proto::allocate(&mut req, [2; 12], Some(&auth));
        assert!(answer(&req, client, &mut ports, &mut out));
        let m = decode(&out);
        assert_eq!(m.class(), Class::Success);
        let relayed = m.xor_address(attr::XOR_RELAYED_ADDRESS).unwrap().unwrap();
        assert_eq!(ports.open.get(&client), Some(&relayed));
        assert_eq!(
            m.xor_address(attr::XOR_MAPPED_ADDRESS).unwrap(),
            Some(client)
        );

        req.clear();
        proto::channel_bind(&mut req, [3; 12], 0x4000, peer, &auth);
        assert!(answer(&req, client, &mut ports, &mut out));
        assert_eq!(decode(&out).class(), Class::Success);

        req.clear();
        proto::refresh(&mut req, [4; 12], 0, &auth);
        assert!(answer(&req, client, &mut ports, &mut out));
        let m = decode(&out);
        assert_eq!(m.class(), Class::Success);
        assert_eq!(m.u32_attr(attr::LIFETIME).unwrap(), Some(0));
        assert!(ports.open.is_empty(), "Refresh 0 closes the relay socket");
    }

    #[test]
    fn refusals_and_non_requests() {
        let client: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        let mut ports = Ports {
            refuse: true,
            ..Ports::default()
        };
        let auth = proto::Auth {
            user: "u".into(),
            realm: "null".into(),
            nonce: b"n".to_vec(),
            key: long_term_key("u", "null", "p"),
        };
        let (mut req, mut out) = (Vec::new(), Vec::new());
        proto::allocate(&mut req, [5; 12], Some(&auth));
        assert!(answer(&req, client, &mut ports, &mut out));
        assert_eq!(decode(&out).error_code().unwrap().unwrap().code, 508);

        // A Send indication (not a request), a raw payload and junk get no answer.
        let peer: SocketAddr = "127.0.0.1:20000".parse().unwrap();
        let send = proto::template(proto::Framing::Send { peer }, 64, 0, [6; 12]);
        assert!(is_stun(&send.bytes));
        assert!(!answer(&send.bytes, client, &mut ports, &mut out));
        let raw = proto::template(proto::Framing::Raw, 64, 0, [0; 12]);
        assert!(!is_stun(&raw.bytes));
        assert!(!answer(&[0u8; 19], client, &mut ports, &mut out));
        let mut bad = req.clone();
        bad[3] ^= 0x04; // length no longer matches
        assert!(!answer(&bad, client, &mut ports, &mut out));
    }
}
