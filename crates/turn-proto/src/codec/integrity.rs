//! MESSAGE-INTEGRITY (HMAC-SHA1), MESSAGE-INTEGRITY-SHA256 and FINGERPRINT (CRC-32).
//!
//! Both integrity attributes are computed over the message up to (not including) the attribute
//! itself, with the header's length field rewritten as if the attribute ended the message
//! (RFC 8489 §14.5, §14.6). The caller's bytes are never modified: the patched header is a
//! 20-byte copy on the stack.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{FINGERPRINT_XOR, HEADER_LEN};

/// Which integrity attribute a message carries (or a response should carry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityKind {
    /// MESSAGE-INTEGRITY, HMAC-SHA1, 20 bytes.
    Sha1,
    /// MESSAGE-INTEGRITY-SHA256, HMAC-SHA256, 32 bytes.
    Sha256,
}

impl IntegrityKind {
    /// Length of the attribute value.
    pub fn mac_len(self) -> usize {
        match self {
            IntegrityKind::Sha1 => 20,
            IntegrityKind::Sha256 => 32,
        }
    }

    /// The attribute type.
    pub fn attr(self) -> u16 {
        match self {
            IntegrityKind::Sha1 => super::attr::MESSAGE_INTEGRITY,
            IntegrityKind::Sha256 => super::attr::MESSAGE_INTEGRITY_SHA256,
        }
    }
}

/// The long-term credential key: MD5(username ":" realm ":" password) (RFC 8489 §9.2.2).
#[derive(Clone, PartialEq, Eq)]
pub struct LongTermKey(pub [u8; 16]);

impl std::fmt::Debug for LongTermKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LongTermKey(..)")
    }
}

/// Derives the long-term key. Strings are used as given (no SASLprep/OpaqueString): the
/// credentials this system mints are ASCII.
pub fn long_term_key(username: &str, realm: &str, password: &str) -> LongTermKey {
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    LongTermKey(h.finalize().into())
}

/// Header copy with the length field set to `covered_len` (bytes after the header that the
/// MAC/CRC should account for).
fn patched_header(msg: &[u8], covered_len: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&msg[..HEADER_LEN]);
    h[2..4].copy_from_slice(&(covered_len as u16).to_be_bytes());
    h
}

/// Computes the integrity value for `msg[..attr_at]`, where `attr_at` is the offset of the
/// integrity attribute header. Writes `kind.mac_len()` bytes into `out`.
pub(crate) fn compute(kind: IntegrityKind, key: &[u8], msg: &[u8], attr_at: usize, out: &mut [u8]) {
    let covered = attr_at - HEADER_LEN + 4 + kind.mac_len();
    let header = patched_header(msg, covered);
    match kind {
        IntegrityKind::Sha1 => {
            let mut mac =
                <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(&header);
            mac.update(&msg[HEADER_LEN..attr_at]);
            out[..20].copy_from_slice(&mac.finalize().into_bytes());
        }
        IntegrityKind::Sha256 => {
            let mut mac =
                <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(&header);
            mac.update(&msg[HEADER_LEN..attr_at]);
            out[..32].copy_from_slice(&mac.finalize().into_bytes());
        }
    }
}

/// Checks an integrity value in constant time.
pub(crate) fn verify(
    kind: IntegrityKind,
    key: &[u8],
    msg: &[u8],
    attr_at: usize,
    value: &[u8],
) -> bool {
    // RFC 8489 §14.6 allows truncated SHA-256 MACs of at least 16 bytes; we accept only the
    // full length, which is what every client we know sends and what we send.
    if value.len() != kind.mac_len() {
        return false;
    }
    let mut expected = [0u8; 32];
    compute(kind, key, msg, attr_at, &mut expected);
    expected[..kind.mac_len()].ct_eq(value).into()
}

/// CRC-32 of `msg[..attr_at]` XOR 0x5354554e, with the length patched to include FINGERPRINT.
pub(crate) fn fingerprint(msg: &[u8], attr_at: usize) -> u32 {
    let covered = attr_at - HEADER_LEN + 8;
    let header = patched_header(msg, covered);
    let mut h = crc32fast::Hasher::new();
    h.update(&header);
    h.update(&msg[HEADER_LEN..attr_at]);
    h.finalize() ^ FINGERPRINT_XOR
}
