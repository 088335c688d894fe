//! STUN messages: zero-copy decode with an attribute index, and encode into a reused buffer.

use std::net::SocketAddr;

use super::attributes::{attr, decode_xor_address, encode_xor_address, is_known, ErrorCode};
use super::integrity::{self, IntegrityKind};
use super::{Class, DecodeError, MessageType, HEADER_LEN, MAGIC_COOKIE};

/// Most attributes a message may carry. Real clients send fewer than 15; a cap keeps decode
/// free of allocation and bounds the work a hostile packet can cause.
pub const MAX_ATTRIBUTES: usize = 32;

/// The 96-bit transaction id.
pub type TransactionId = [u8; 12];

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    typ: u16,
    /// Offset of the value within the message. A message is up to 20 + 65,532 bytes, so this
    /// does not fit in a `u16`.
    at: u32,
    len: u16,
}

/// A decoded STUN message borrowing the bytes it came from.
///
/// Attributes after MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256 and FINGERPRINT,
/// and attributes after MESSAGE-INTEGRITY-SHA256 other than FINGERPRINT, are skipped as RFC
/// 8489 §14.5 requires. A FINGERPRINT that is not last, or that does not match, fails decode.
#[derive(Clone)]
pub struct Message<'a> {
    buf: &'a [u8],
    typ: MessageType,
    txid: TransactionId,
    slots: [Slot; MAX_ATTRIBUTES],
    n: usize,
    /// Offset of the MESSAGE-INTEGRITY attribute header.
    integrity_at: Option<usize>,
    /// Offset of the MESSAGE-INTEGRITY-SHA256 attribute header.
    integrity256_at: Option<usize>,
    has_fingerprint: bool,
    /// First unknown comprehension-required attributes, for a 420 answer.
    unknown: [u16; 8],
    n_unknown: usize,
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("type", &self.typ)
            .field("len", &self.buf.len())
            .field("attributes", &self.n)
            .finish()
    }
}

impl<'a> Message<'a> {
    /// Decodes exactly one message occupying all of `buf`.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        if buf.len() < HEADER_LEN {
            return Err(DecodeError::Truncated {
                need: HEADER_LEN,
                have: buf.len(),
            });
        }
        if buf[0] & 0xC0 != 0 {
            return Err(DecodeError::NotStun(buf[0] >> 6));
        }
        let cookie = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if cookie != MAGIC_COOKIE {
            return Err(DecodeError::BadMagicCookie(cookie));
        }
        let len = u16::from_be_bytes([buf[2], buf[3]]);
        if !len.is_multiple_of(4) {
            return Err(DecodeError::UnalignedLength(len));
        }
        let total = HEADER_LEN + len as usize;
        if buf.len() < total {
            return Err(DecodeError::Truncated {
                need: total,
                have: buf.len(),
            });
        }
        if buf.len() > total {
            return Err(DecodeError::TrailingBytes {
                extra: buf.len() - total,
            });
        }
        let mut msg = Message {
            buf,
            typ: MessageType::from_u16(u16::from_be_bytes([buf[0], buf[1]])),
            txid: buf[8..20].try_into().expect("12 bytes"),
            slots: [Slot::default(); MAX_ATTRIBUTES],
            n: 0,
            integrity_at: None,
            integrity256_at: None,
            has_fingerprint: false,
            unknown: [0; 8],
            n_unknown: 0,
        };
        msg.index()?;
        Ok(msg)
    }

    fn index(&mut self) -> Result<(), DecodeError> {
        let buf = self.buf;
        let mut at = HEADER_LEN;
        while at < buf.len() {
            if buf.len() - at < 4 {
                return Err(DecodeError::Truncated {
                    need: at + 4,
                    have: buf.len(),
                });
            }
            let typ = u16::from_be_bytes([buf[at], buf[at + 1]]);
            let len = u16::from_be_bytes([buf[at + 2], buf[at + 3]]);
            let value_at = at + 4;
            let padded = (len as usize + 3) & !3;
            if value_at + padded > buf.len() {
                return Err(DecodeError::AttributeOverrun { attr: typ, len });
            }
            if self.has_fingerprint {
                return Err(DecodeError::FingerprintNotLast);
            }
            let after_integrity = self.integrity_at.is_some() || self.integrity256_at.is_some();
            match typ {
                attr::FINGERPRINT => {
                    if len != 4 {
                        return Err(DecodeError::BadAttributeLength {
                            attr: typ,
                            len: len as usize,
                        });
                    }
                    let got =
                        u32::from_be_bytes(buf[value_at..value_at + 4].try_into().expect("4"));
                    if integrity::fingerprint(buf, at) != got {
                        return Err(DecodeError::FingerprintMismatch);
                    }
                    self.has_fingerprint = true;
                }
                attr::MESSAGE_INTEGRITY if !after_integrity => self.integrity_at = Some(at),
                attr::MESSAGE_INTEGRITY_SHA256 if self.integrity256_at.is_none() => {
                    self.integrity256_at = Some(at)
                }
                _ if after_integrity => {} // ignored, RFC 8489 §14.5
                _ => {
                    if self.n == MAX_ATTRIBUTES {
                        return Err(DecodeError::TooManyAttributes(MAX_ATTRIBUTES));
                    }
                    self.slots[self.n] = Slot {
                        typ,
                        at: value_at as u32,
                        len,
                    };
                    self.n += 1;
                    if !is_known(typ) && self.n_unknown < self.unknown.len() {
                        self.unknown[self.n_unknown] = typ;
                        self.n_unknown += 1;
                    }
                }
            }
            at = value_at + padded;
        }
        Ok(())
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Method and class.
    pub fn message_type(&self) -> MessageType {
        self.typ
    }

    /// Class shortcut.
    pub fn class(&self) -> Class {
        self.typ.class
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> &TransactionId {
        &self.txid
    }

    /// The value of the first attribute of type `t`, if present (and not after integrity).
    pub fn get(&self, t: u16) -> Option<&'a [u8]> {
        self.slots[..self.n]
            .iter()
            .find(|s| s.typ == t)
            .map(|s| self.value(s))
    }

    /// Byte range of the first attribute of type `t` within the message.
    pub fn range_of(&self, t: u16) -> Option<std::ops::Range<usize>> {
        self.slots[..self.n]
            .iter()
            .find(|s| s.typ == t)
            .map(|s| s.at as usize..s.at as usize + s.len as usize)
    }

    fn padding(&self, value_at: usize, len: usize) -> &'a [u8] {
        let end = value_at + len;
        &self.buf[end..value_at + ((len + 3) & !3)]
    }

    fn value(&self, s: &Slot) -> &'a [u8] {
        &self.buf[s.at as usize..s.at as usize + s.len as usize]
    }

    /// Every indexed attribute as `(type, value)`, in wire order.
    pub fn attributes(&self) -> impl Iterator<Item = (u16, &'a [u8])> + '_ {
        self.slots[..self.n].iter().map(|s| (s.typ, self.value(s)))
    }

    /// Unknown comprehension-required attribute types (at most 8 are kept).
    pub fn unknown_required(&self) -> &[u16] {
        &self.unknown[..self.n_unknown]
    }

    /// Whether a FINGERPRINT was present (and matched: decode fails otherwise).
    pub fn has_fingerprint(&self) -> bool {
        self.has_fingerprint
    }

    /// Which integrity attribute the message carries; SHA-256 is preferred when both are.
    pub fn integrity(&self) -> Option<IntegrityKind> {
        if self.integrity256_at.is_some() {
            Some(IntegrityKind::Sha256)
        } else if self.integrity_at.is_some() {
            Some(IntegrityKind::Sha1)
        } else {
            None
        }
    }

    /// Verifies the integrity attribute of kind `kind` with `key`. False when absent.
    pub fn verify_integrity(&self, kind: IntegrityKind, key: &[u8]) -> bool {
        let at = match kind {
            IntegrityKind::Sha1 => self.integrity_at,
            IntegrityKind::Sha256 => self.integrity256_at,
        };
        let Some(at) = at else { return false };
        let len = u16::from_be_bytes([self.buf[at + 2], self.buf[at + 3]]) as usize;
        integrity::verify(kind, key, self.buf, at, &self.buf[at + 4..at + 4 + len])
    }

    /// A UTF-8 text attribute (USERNAME, REALM, NONCE, SOFTWARE).
    pub fn text(&self, t: u16) -> Result<Option<&'a str>, DecodeError> {
        match self.get(t) {
            None => Ok(None),
            Some(v) => std::str::from_utf8(v)
                .map(Some)
                .map_err(|_| DecodeError::BadAttributeValue(t)),
        }
    }

    /// An XOR address attribute.
    pub fn xor_address(&self, t: u16) -> Result<Option<SocketAddr>, DecodeError> {
        self.get(t)
            .map(|v| decode_xor_address(t, v, &self.txid))
            .transpose()
    }

    /// Every XOR-PEER-ADDRESS in the message (CreatePermission may carry several).
    pub fn xor_addresses(
        &self,
        t: u16,
    ) -> impl Iterator<Item = Result<SocketAddr, DecodeError>> + '_ {
        self.slots[..self.n]
            .iter()
            .filter(move |s| s.typ == t)
            .map(move |s| decode_xor_address(t, self.value(s), &self.txid))
    }

    /// A 32-bit attribute (LIFETIME, CONNECTION-ID).
    pub fn u32_attr(&self, t: u16) -> Result<Option<u32>, DecodeError> {
        match self.get(t) {
            None => Ok(None),
            Some(v) if v.len() == 4 => Ok(Some(u32::from_be_bytes(v.try_into().expect("4")))),
            Some(v) => Err(DecodeError::BadAttributeLength {
                attr: t,
                len: v.len(),
            }),
        }
    }

    /// ERROR-CODE, if present.
    pub fn error_code(&self) -> Result<Option<ErrorCode<'a>>, DecodeError> {
        self.get(attr::ERROR_CODE)
            .map(ErrorCode::decode)
            .transpose()
    }

    /// Writes this message's header and indexed attributes (including integrity and
    /// fingerprint bytes, copied as they were) into `out`. Padding bytes are copied too (RFC
    /// 8489 lets senders pad with anything, and integrity covers them), so a message without
    /// ignored attributes re-encodes byte for byte. Used by the round-trip fuzzer.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut b = MessageBuilder::new(out, self.typ, self.txid);
        for s in &self.slots[..self.n] {
            b.add_padded(
                s.typ,
                self.value(s),
                self.padding(s.at as usize, s.len as usize),
            );
        }
        for (kind, at) in [
            (IntegrityKind::Sha1, self.integrity_at),
            (IntegrityKind::Sha256, self.integrity256_at),
        ] {
            if let Some(at) = at {
                let len = u16::from_be_bytes([self.buf[at + 2], self.buf[at + 3]]) as usize;
                b.add_padded(
                    kind.attr(),
                    &self.buf[at + 4..at + 4 + len],
                    self.padding(at + 4, len),
                );
            }
        }
        if self.has_fingerprint {
            b.fingerprint();
        }
    }
}

/// Builds a message into a caller-owned buffer (cleared first). Attributes are written in call
/// order; integrity and fingerprint must come last, in that order.
pub struct MessageBuilder<'b> {
    buf: &'b mut Vec<u8>,
    txid: TransactionId,
}

impl<'b> MessageBuilder<'b> {
    /// Starts a message of type `typ` with transaction id `txid`.
    pub fn new(buf: &'b mut Vec<u8>, typ: MessageType, txid: TransactionId) -> Self {
        buf.clear();
        buf.extend_from_slice(&typ.to_u16().to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&txid);
        Self { buf, txid }
    }

    fn set_len(&mut self) {
        let len = (self.buf.len() - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    /// Adds a raw attribute, padding the value to 4 bytes with zeros.
    pub fn add(&mut self, t: u16, value: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(&t.to_be_bytes());
        self.buf
            .extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        let pad = (4 - value.len() % 4) % 4;
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
        self.set_len();
        self
    }

    /// Adds an attribute with the given padding bytes (`pad.len()` must be what the value
    /// length needs; anything else falls back to zero padding).
    pub fn add_padded(&mut self, t: u16, value: &[u8], pad: &[u8]) -> &mut Self {
        self.add(t, value);
        let need = (4 - value.len() % 4) % 4;
        if pad.len() == need {
            let end = self.buf.len();
            self.buf[end - need..].copy_from_slice(pad);
        }
        self
    }

    /// Adds a 32-bit attribute.
    pub fn add_u32(&mut self, t: u16, v: u32) -> &mut Self {
        self.add(t, &v.to_be_bytes())
    }

    /// Adds an XOR address attribute.
    pub fn add_xor_address(&mut self, t: u16, addr: SocketAddr) -> &mut Self {
        let mut v = [0u8; 20];
        let n = encode_xor_address(addr, &self.txid, &mut v);
        self.add(t, &v[..n])
    }

    /// Adds ERROR-CODE.
    pub fn add_error(&mut self, code: u16, reason: &str) -> &mut Self {
        let reason = &reason.as_bytes()[..reason.len().min(763)];
        let mut v = [0u8; 4 + 763];
        v[2] = (code / 100) as u8;
        v[3] = (code % 100) as u8;
        v[4..4 + reason.len()].copy_from_slice(reason);
        self.add(attr::ERROR_CODE, &v[..4 + reason.len()])
    }

    /// Adds UNKNOWN-ATTRIBUTES listing `types`.
    pub fn add_unknown_attributes(&mut self, types: &[u16]) -> &mut Self {
        let mut v = [0u8; 16];
        for (i, t) in types.iter().take(8).enumerate() {
            v[i * 2..i * 2 + 2].copy_from_slice(&t.to_be_bytes());
        }
        self.add(attr::UNKNOWN_ATTRIBUTES, &v[..types.len().min(8) * 2])
    }

    /// Appends MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 computed with `key`.
    pub fn integrity(&mut self, kind: IntegrityKind, key: &[u8]) -> &mut Self {
        let at = self.buf.len();
        self.add(kind.attr(), &[0u8; 32][..kind.mac_len()]);
        let mut mac = [0u8; 32];
        integrity::compute(kind, key, self.buf, at, &mut mac);
        self.buf[at + 4..at + 4 + kind.mac_len()].copy_from_slice(&mac[..kind.mac_len()]);
        self
    }

    /// Appends FINGERPRINT.
    pub fn fingerprint(&mut self) -> &mut Self {
        let at = self.buf.len();
        self.add(attr::FINGERPRINT, &[0u8; 4]);
        let crc = integrity::fingerprint(self.buf, at);
        self.buf[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
        self
    }

    /// Length of the message so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Always false: a message has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::super::Method;
    use super::*;

    fn req(buf: &mut Vec<u8>) {
        let mut b = MessageBuilder::new(
            buf,
            MessageType::new(Method::Allocate, Class::Request),
            [1; 12],
        );
        b.add_u32(attr::REQUESTED_TRANSPORT, 17 << 24);
        b.add(attr::USERNAME, b"alice");
        b.integrity(IntegrityKind::Sha1, b"key");
        b.fingerprint();
    }

    #[test]
    fn build_then_decode() {
        let mut buf = Vec::new();
        req(&mut buf);
        let m = Message::decode(&buf).unwrap();
        assert_eq!(m.message_type().method, Method::Allocate);
        assert_eq!(m.text(attr::USERNAME).unwrap(), Some("alice"));
        assert!(m.verify_integrity(IntegrityKind::Sha1, b"key"));
        assert!(!m.verify_integrity(IntegrityKind::Sha1, b"other"));
        assert!(m.has_fingerprint());
        let mut again = Vec::new();
        m.encode_into(&mut again);
        assert_eq!(again, buf);
    }

    #[test]
    fn rejects_every_truncation_and_corrupt_fingerprint() {
        let mut buf = Vec::new();
        req(&mut buf);
        for n in 0..buf.len() {
            assert!(Message::decode(&buf[..n]).is_err(), "prefix {n} accepted");
        }
        let last = buf.len() - 1;
        buf[last] ^= 1;
        assert_eq!(
            Message::decode(&buf).unwrap_err(),
            DecodeError::FingerprintMismatch
        );
    }

    #[test]
    fn attributes_after_integrity_are_ignored() {
        let mut buf = Vec::new();
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(Method::Refresh, Class::Request),
            [2; 12],
        );
        b.integrity(IntegrityKind::Sha1, b"k");
        b.add(attr::USERNAME, b"mallory");
        let m = Message::decode(&buf).unwrap();
        assert_eq!(m.get(attr::USERNAME), None);
    }

    #[test]
    fn unknown_required_attributes_are_listed() {
        let mut buf = Vec::new();
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(Method::Allocate, Class::Request),
            [3; 12],
        );
        b.add(0x7777, b"x");
        b.add(0x8888, b"y");
        b.add(attr::RESERVATION_TOKEN, &[0; 8]);
        let m = Message::decode(&buf).unwrap();
        assert_eq!(m.unknown_required(), &[0x7777]);
    }

    #[test]
    fn too_many_attributes() {
        let mut buf = Vec::new();
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(Method::Binding, Class::Request),
            [4; 12],
        );
        for _ in 0..=MAX_ATTRIBUTES {
            b.add(attr::SOFTWARE, b"");
        }
        assert_eq!(
            Message::decode(&buf).unwrap_err(),
            DecodeError::TooManyAttributes(MAX_ATTRIBUTES)
        );
    }
}
