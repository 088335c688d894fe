//! TURN client messages built with our codec, and the benchmark payload format.

use std::net::SocketAddr;

use turn_proto::codec::{
    attr, ChannelData, Class, IntegrityKind, LongTermKey, Message, MessageBuilder, MessageType,
    Method, TransactionId,
};

/// REQUESTED-TRANSPORT value for UDP.
const UDP_TRANSPORT: u32 = 17 << 24;

/// Long-term credential state of one allocation, learnt from the 401.
#[derive(Clone)]
pub struct Auth {
    pub user: String,
    pub realm: String,
    pub nonce: Vec<u8>,
    pub key: LongTermKey,
}

fn sign(b: &mut MessageBuilder<'_>, auth: Option<&Auth>) {
    if let Some(a) = auth {
        b.add(attr::USERNAME, a.user.as_bytes());
        b.add(attr::REALM, a.realm.as_bytes());
        b.add(attr::NONCE, &a.nonce);
        b.integrity(IntegrityKind::Sha1, &a.key.0);
    }
    b.fingerprint();
}

pub fn allocate(out: &mut Vec<u8>, txid: TransactionId, auth: Option<&Auth>) {
    let mut b = MessageBuilder::new(
        out,
        MessageType::new(Method::Allocate, Class::Request),
        txid,
    );
    b.add_u32(attr::REQUESTED_TRANSPORT, UDP_TRANSPORT);
    sign(&mut b, auth);
}

pub fn create_permission(out: &mut Vec<u8>, txid: TransactionId, peer: SocketAddr, auth: &Auth) {
    let mut b = MessageBuilder::new(
        out,
        MessageType::new(Method::CreatePermission, Class::Request),
        txid,
    );
    b.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
    sign(&mut b, Some(auth));
}

pub fn channel_bind(
    out: &mut Vec<u8>,
    txid: TransactionId,
    channel: u16,
    peer: SocketAddr,
    auth: &Auth,
) {
    let mut b = MessageBuilder::new(
        out,
        MessageType::new(Method::ChannelBind, Class::Request),
        txid,
    );
    b.add_u32(attr::CHANNEL_NUMBER, (channel as u32) << 16);
    b.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
    sign(&mut b, Some(auth));
}

pub fn refresh(out: &mut Vec<u8>, txid: TransactionId, lifetime: u32, auth: &Auth) {
    let mut b = MessageBuilder::new(out, MessageType::new(Method::Refresh, Class::Request), txid);
    b.add_u32(attr::LIFETIME, lifetime);
    sign(&mut b, Some(auth));
}

/// Payload layout: magic, allocation index, sequence number, send time (ns since the run's
/// epoch); the rest is zeros up to `--size`.
pub const MAGIC: [u8; 4] = *b"CPB1";
pub const PAYLOAD_MIN: usize = 24;

/// A data packet template: the bytes to send (framing + payload) and where the payload is.
pub struct Template {
    pub bytes: Vec<u8>,
    pub payload_at: usize,
}

/// How the data packets are framed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Framing {
    /// ChannelData on `channel`; `pad`: padded to 4 bytes (stream transports).
    Channel { channel: u16, pad: bool },
    /// Send indications to `peer`.
    Send { peer: SocketAddr },
    /// Raw payload (null relay).
    Raw,
}

pub fn template(framing: Framing, size: usize, idx: u32, txid: TransactionId) -> Template {
    let mut payload = vec![0u8; size];
    payload[..4].copy_from_slice(&MAGIC);
    payload[4..8].copy_from_slice(&idx.to_le_bytes());
    match framing {
        Framing::Raw => Template {
            bytes: payload,
            payload_at: 0,
        },
        Framing::Channel { channel, pad } => {
            let total = if pad { 4 + ((size + 3) & !3) } else { 4 + size };
            let mut bytes = vec![0u8; total];
            ChannelData::write_header(channel, size as u16, &mut bytes[..4]);
            bytes[4..4 + size].copy_from_slice(&payload);
            Template {
                bytes,
                payload_at: 4,
            }
        }
        Framing::Send { peer } => {
            let mut bytes = Vec::new();
            let mut b = MessageBuilder::new(
                &mut bytes,
                MessageType::new(Method::Send, Class::Indication),
                txid,
            );
            b.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
            b.add(attr::DATA, &payload);
            let payload_at = Message::decode(&bytes)
                .expect("own Send indication decodes")
                .range_of(attr::DATA)
                .expect("DATA present")
                .start;
            Template { bytes, payload_at }
        }
    }
}

/// Writes sequence number and send time into a payload copy.
#[inline]
pub fn stamp(payload: &mut [u8], seq: u64, t_ns: u64) {
    payload[8..16].copy_from_slice(&seq.to_le_bytes());
    payload[16..24].copy_from_slice(&t_ns.to_le_bytes());
}

/// Parses a payload: `(allocation index, seq, send time)`.
#[inline]
pub fn parse_payload(p: &[u8]) -> Option<(u32, u64, u64)> {
    if p.len() < PAYLOAD_MIN || p[..4] != MAGIC {
        return None;
    }
    Some((
        u32::from_le_bytes(p[4..8].try_into().ok()?),
        u64::from_le_bytes(p[8..16].try_into().ok()?),
        u64::from_le_bytes(p[16..24].try_into().ok()?),
    ))
}

/// What arrived from the server.
pub enum Incoming<'a> {
    /// Application data (from ChannelData, a Data indication, or raw).
    Data(&'a [u8]),
    /// A STUN response or other message (decodes: FINGERPRINT, if any, matched).
    Stun(&'a [u8]),
    /// Not understood.
    Junk,
}

/// Classifies one datagram or stream frame.
#[inline]
pub fn classify(bytes: &[u8], raw: bool) -> Incoming<'_> {
    if raw {
        return Incoming::Data(bytes);
    }
    match bytes.first() {
        Some(b) if b & 0xC0 == 0x40 => {
            if bytes.len() < 4 {
                return Incoming::Junk;
            }
            let len = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
            match bytes.get(4..4 + len) {
                Some(d) => Incoming::Data(d),
                None => Incoming::Junk,
            }
        }
        Some(b) if b & 0xC0 == 0 => match Message::decode(bytes) {
            Ok(m) => {
                let t = m.message_type();
                if t.method == Method::Data && t.class == Class::Indication {
                    match m.get(attr::DATA) {
                        Some(d) => Incoming::Data(d),
                        None => Incoming::Junk,
                    }
                } else {
                    Incoming::Stun(bytes)
                }
            }
            Err(_) => Incoming::Junk,
        },
        _ => Incoming::Junk,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(framing: Framing) {
        let t = template(framing, 200, 42, [9; 12]);
        let mut bytes = t.bytes.clone();
        stamp(&mut bytes[t.payload_at..], 7, 123_456);
        match classify(&bytes, framing == Framing::Raw) {
            Incoming::Data(d) => {
                assert_eq!(d.len(), 200);
                assert_eq!(parse_payload(d), Some((42, 7, 123_456)));
            }
            _ => panic!("{framing:?}: not data"),
        }
    }

    #[test]
    fn templates_classify_as_data() {
        roundtrip(Framing::Raw);
        roundtrip(Framing::Channel {
            channel: 0x4000,
            pad: false,
        });
        roundtrip(Framing::Channel {
            channel: 0x4000,
            pad: true,
        });
        // A Send indication is what we send; the server answers with a Data indication. Turn
        // one into the other to check the receive side.
        let peer: SocketAddr = "127.0.0.1:20000".parse().unwrap();
        let t = template(Framing::Send { peer }, 200, 1, [9; 12]);
        assert!(matches!(classify(&t.bytes, false), Incoming::Stun(_)));
        let mut data = Vec::new();
        let mut b = MessageBuilder::new(
            &mut data,
            MessageType::new(Method::Data, Class::Indication),
            [3; 12],
        );
        b.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
        b.add(attr::DATA, &t.bytes[t.payload_at..t.payload_at + 200]);
        b.fingerprint();
        match classify(&data, false) {
            Incoming::Data(d) => assert_eq!(parse_payload(d).map(|p| p.0), Some(1)),
            _ => panic!("Data indication not recognised"),
        }
    }

    #[test]
    fn padded_channel_data_is_a_whole_stream_frame() {
        let t = template(
            Framing::Channel {
                channel: 0x4001,
                pad: true,
            },
            201,
            0,
            [0; 12],
        );
        assert_eq!(t.bytes.len(), 4 + 204);
        assert_eq!(
            turn_proto::codec::frame_len(&t.bytes).unwrap().map(|f| f.1),
            Some(208)
        );
    }
}
