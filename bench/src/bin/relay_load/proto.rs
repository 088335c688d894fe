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
    /// A STUN response or other message.
    Stun(Message<'a>),
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
                    Incoming::Stun(m)
                }
            }
            Err(_) => Incoming::Junk,
        },
        _ => Incoming::Junk,
    }
}
