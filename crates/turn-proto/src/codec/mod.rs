//! STUN/TURN wire format: messages, attributes, ChannelData and stream framing.
//!
//! Decoding borrows the input and never allocates: [`Message::decode`] checks the header, walks
//! the attributes once, verifies FINGERPRINT if present and keeps a small index of
//! `(type, offset, length)` triples. Values are parsed only when asked for (`Message::get`).
//! Encoding writes into a buffer the caller owns and reuses ([`MessageBuilder`]).

mod attributes;
mod channel_data;
mod error;
mod framing;
mod integrity;
mod message;
mod method;

pub use attributes::{
    attr, decode_xor_address, encode_xor_address, is_comprehension_required, is_known, ErrorCode,
    Family, LIFETIME_LEN,
};
pub use channel_data::{ChannelData, CHANNEL_MAX, CHANNEL_MIN};
pub use error::DecodeError;
pub use framing::{frame_len, FrameKind};
pub use integrity::{long_term_key, IntegrityKind, LongTermKey};
pub use message::{Message, MessageBuilder, TransactionId, MAX_ATTRIBUTES};
pub use method::{Class, MessageType, Method};

/// The fixed value in bytes 4..8 of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the STUN message header.
pub const HEADER_LEN: usize = 20;
/// XOR-ed into the CRC-32 of a message to form FINGERPRINT (RFC 8489 §14.7).
pub const FINGERPRINT_XOR: u32 = 0x5354_554e;
