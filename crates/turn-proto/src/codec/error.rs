//! What can be wrong with bytes that claim to be STUN or ChannelData.

use thiserror::Error;

/// Why a buffer is not a well-formed STUN message, attribute or ChannelData frame.
///
/// Cheap to construct and `Copy`: it is hit on hostile traffic, so it carries numbers, not
/// strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the header or a length field promises.
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes required.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// More bytes than the header's length field accounts for.
    #[error("{extra} trailing bytes after the message")]
    TrailingBytes {
        /// How many bytes follow the message.
        extra: usize,
    },
    /// The two most significant bits of a STUN message are not zero.
    #[error("not a STUN message (first bits {0:#04b})")]
    NotStun(u8),
    /// Bytes 4..8 are not the magic cookie 0x2112A442.
    #[error("bad magic cookie {0:#010x}")]
    BadMagicCookie(u32),
    /// The length field is not a multiple of 4.
    #[error("message length {0} is not a multiple of 4")]
    UnalignedLength(u16),
    /// An attribute runs past the end of the message.
    #[error("attribute {attr:#06x} of length {len} overruns the message")]
    AttributeOverrun {
        /// Attribute type.
        attr: u16,
        /// Attribute length.
        len: u16,
    },
    /// More attributes than [`super::MAX_ATTRIBUTES`].
    #[error("more than {0} attributes")]
    TooManyAttributes(usize),
    /// FINGERPRINT is present but not the last attribute.
    #[error("FINGERPRINT is not the last attribute")]
    FingerprintNotLast,
    /// FINGERPRINT does not match the CRC-32 of the message.
    #[error("FINGERPRINT mismatch")]
    FingerprintMismatch,
    /// An attribute value has a length its type does not allow.
    #[error("attribute {attr:#06x} has invalid length {len}")]
    BadAttributeLength {
        /// Attribute type.
        attr: u16,
        /// Attribute length.
        len: usize,
    },
    /// An address attribute names an address family other than IPv4 (1) or IPv6 (2).
    #[error("unknown address family {0:#04x}")]
    BadAddressFamily(u8),
    /// An attribute value is malformed in a way its type defines (reason code, UTF-8, ...).
    #[error("attribute {0:#06x} has an invalid value")]
    BadAttributeValue(u16),
    /// A ChannelData channel number outside 0x4000..=0x7FFE.
    #[error("channel number {0:#06x} is outside 0x4000..=0x7FFE")]
    BadChannelNumber(u16),
    /// The first two bits are neither STUN (00) nor ChannelData (01).
    #[error("neither STUN nor ChannelData (first byte {0:#04x})")]
    UnknownFraming(u8),
}
