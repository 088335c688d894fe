//! RFC 5769 test vectors against the codec.
//!
//! The four vectors are checked in byte for byte under `tests/vectors/`, named after their RFC
//! section. Their MESSAGE-INTEGRITY and FINGERPRINT values were computed by the RFC's authors,
//! so they check our HMAC/CRC input (patched length field, padding, key derivation) against an
//! independent implementation rather than against ourselves.
//!
//! Note that §2.1–§2.3 pad with 0x20 bytes (USERNAME in §2.1, SOFTWARE in §2.2/§2.3), which RFC
//! 8489 §14 allows ("padding ... MAY be any value"), while §2.4 pads with zeros.

use std::net::SocketAddr;

use turn_proto::codec::{
    attr, long_term_key, Class, DecodeError, IntegrityKind, Message, Method, HEADER_LEN,
};

const REQUEST: &[u8] = include_bytes!("vectors/rfc5769-2.1.bin");
const IPV4_RESPONSE: &[u8] = include_bytes!("vectors/rfc5769-2.2.bin");
const IPV6_RESPONSE: &[u8] = include_bytes!("vectors/rfc5769-2.3.bin");
const LONG_TERM_REQUEST: &[u8] = include_bytes!("vectors/rfc5769-2.4.bin");

/// Short-term password of §2.1–§2.3; the short-term key is the password itself.
const SHORT_TERM_PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";
const TXID_2_1_TO_2_3: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

/// §2.4 credentials. The username is "マトリックス" (MATRIX in katakana); the password
/// "The<U+00AD>M<U+00AA>tr<U+2168>" becomes "TheMatrIX" after SASLprep.
const LT_USERNAME: &str = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
const LT_PASSWORD: &str = "TheMatrIX";
const LT_REALM: &str = "example.org";
const LT_NONCE: &str = "f//499k954d6OL34oL9FSTvy64sA";
const TXID_2_4: [u8; 12] = [
    0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e,
];

/// The vectors carrying FINGERPRINT, with their integrity key.
fn fingerprinted() -> [(&'static str, &'static [u8]); 3] {
    [
        ("2.1", REQUEST),
        ("2.2", IPV4_RESPONSE),
        ("2.3", IPV6_RESPONSE),
    ]
}

fn lt_key() -> [u8; 16] {
    long_term_key(LT_USERNAME, LT_REALM, LT_PASSWORD).0
}

/// Every vector with the key its MESSAGE-INTEGRITY was computed with.
fn all_with_keys() -> Vec<(&'static str, &'static [u8], Vec<u8>)> {
    let mut v: Vec<_> = fingerprinted()
        .into_iter()
        .map(|(n, b)| (n, b, SHORT_TERM_PASSWORD.as_bytes().to_vec()))
        .collect();
    v.push(("2.4", LONG_TERM_REQUEST, lt_key().to_vec()));
    v
}

/// `(offset, type, length)` of every attribute header, walked independently of the codec.
fn walk(buf: &[u8]) -> Vec<(usize, u16, usize)> {
    let mut out = Vec::new();
    let mut at = HEADER_LEN;
    while at + 4 <= buf.len() {
        let t = u16::from_be_bytes([buf[at], buf[at + 1]]);
        let len = u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize;
        out.push((at, t, len));
        at += 4 + ((len + 3) & !3);
    }
    assert_eq!(at, buf.len(), "vector attributes must tile the message");
    out
}

fn offset_of(buf: &[u8], t: u16) -> usize {
    walk(buf)
        .into_iter()
        .find(|&(_, ty, _)| ty == t)
        .map(|(at, _, _)| at)
        .unwrap_or_else(|| panic!("attribute {t:#06x} not in vector"))
}

/// Calls every getter so that a malformed value is reported, never panics.
fn exercise(m: &Message<'_>) {
    let types: Vec<u16> = m.attributes().map(|(t, _)| t).collect();
    for t in types {
        let _ = m.get(t);
        let _ = m.range_of(t);
        let _ = m.text(t);
        let _ = m.xor_address(t);
        let _ = m.xor_addresses(t).count();
        let _ = m.u32_attr(t);
    }
    let _ = m.error_code();
    let _ = m.unknown_required();
    let _ = m.integrity();
    let _ = m.verify_integrity(IntegrityKind::Sha1, SHORT_TERM_PASSWORD.as_bytes());
    let _ = m.verify_integrity(IntegrityKind::Sha256, SHORT_TERM_PASSWORD.as_bytes());
    let mut out = Vec::new();
    m.encode_into(&mut out);
}

#[test]
fn vectors_have_the_published_sizes() {
    assert_eq!(REQUEST.len(), 108);
    assert_eq!(IPV4_RESPONSE.len(), 80);
    assert_eq!(IPV6_RESPONSE.len(), 92);
    assert_eq!(LONG_TERM_REQUEST.len(), 116);
}

#[test]
fn sample_request_2_1() {
    let m = Message::decode(REQUEST).expect("§2.1 decodes");
    assert_eq!(m.message_type().method, Method::Binding);
    assert_eq!(m.class(), Class::Request);
    assert_eq!(m.transaction_id(), &TXID_2_1_TO_2_3);
    assert_eq!(m.text(attr::SOFTWARE).unwrap(), Some("STUN test client"));
    assert_eq!(m.text(attr::USERNAME).unwrap(), Some("evtj:h6vY"));
    assert_eq!(m.get(attr::PRIORITY), Some(&[0x6e, 0x00, 0x01, 0xff][..]));
    assert_eq!(m.u32_attr(attr::PRIORITY).unwrap(), Some(0x6e00_01ff));
    assert_eq!(
        m.get(attr::ICE_CONTROLLED),
        Some(&[0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36][..])
    );
    assert!(
        m.unknown_required().is_empty(),
        "PRIORITY is known, ICE-CONTROLLED optional"
    );
    let types: Vec<u16> = m.attributes().map(|(t, _)| t).collect();
    assert_eq!(
        types,
        [
            attr::SOFTWARE,
            attr::PRIORITY,
            attr::ICE_CONTROLLED,
            attr::USERNAME
        ]
    );
    assert!(m.has_fingerprint());
    assert_eq!(m.integrity(), Some(IntegrityKind::Sha1));
    assert!(m.verify_integrity(IntegrityKind::Sha1, SHORT_TERM_PASSWORD.as_bytes()));
}

#[test]
fn ipv4_response_2_2() {
    let m = Message::decode(IPV4_RESPONSE).expect("§2.2 decodes");
    assert_eq!(m.message_type().method, Method::Binding);
    assert_eq!(m.class(), Class::Success);
    assert_eq!(m.transaction_id(), &TXID_2_1_TO_2_3);
    assert_eq!(m.text(attr::SOFTWARE).unwrap(), Some("test vector"));
    let want: SocketAddr = "192.0.2.1:32853".parse().unwrap();
    assert_eq!(m.xor_address(attr::XOR_MAPPED_ADDRESS).unwrap(), Some(want));
    assert!(m.has_fingerprint());
    assert_eq!(m.integrity(), Some(IntegrityKind::Sha1));
    assert!(m.verify_integrity(IntegrityKind::Sha1, SHORT_TERM_PASSWORD.as_bytes()));
}

#[test]
fn ipv6_response_2_3() {
    let m = Message::decode(IPV6_RESPONSE).expect("§2.3 decodes");
    assert_eq!(m.message_type().method, Method::Binding);
    assert_eq!(m.class(), Class::Success);
    assert_eq!(m.transaction_id(), &TXID_2_1_TO_2_3);
    assert_eq!(m.text(attr::SOFTWARE).unwrap(), Some("test vector"));
    let want: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
        .parse()
        .unwrap();
    assert_eq!(m.xor_address(attr::XOR_MAPPED_ADDRESS).unwrap(), Some(want));
    assert!(m.has_fingerprint());
    assert_eq!(m.integrity(), Some(IntegrityKind::Sha1));
    assert!(m.verify_integrity(IntegrityKind::Sha1, SHORT_TERM_PASSWORD.as_bytes()));
}

#[test]
fn long_term_request_2_4() {
    let m = Message::decode(LONG_TERM_REQUEST).expect("§2.4 decodes");
    assert_eq!(m.message_type().method, Method::Binding);
    assert_eq!(m.class(), Class::Request);
    assert_eq!(m.transaction_id(), &TXID_2_4);
    assert_eq!(m.text(attr::USERNAME).unwrap(), Some(LT_USERNAME));
    assert_eq!(m.text(attr::NONCE).unwrap(), Some(LT_NONCE));
    assert_eq!(m.text(attr::REALM).unwrap(), Some(LT_REALM));
    assert!(!m.has_fingerprint());
    assert_eq!(m.integrity(), Some(IntegrityKind::Sha1));
    assert!(m.verify_integrity(IntegrityKind::Sha1, &lt_key()));
    // The key is MD5 over the UTF-8 of "username:realm:password".
    assert_eq!(
        lt_key(),
        long_term_key(LT_USERNAME, LT_REALM, LT_PASSWORD).0,
        "deterministic"
    );
}

#[test]
fn wrong_keys_fail() {
    for (name, bytes, key) in all_with_keys() {
        let m = Message::decode(bytes).unwrap();
        assert!(m.verify_integrity(IntegrityKind::Sha1, &key), "{name}");
        assert!(
            !m.verify_integrity(IntegrityKind::Sha1, b""),
            "{name}: empty key"
        );
        assert!(
            !m.verify_integrity(IntegrityKind::Sha1, b"wrong password"),
            "{name}"
        );
        let mut off_by_one = key.clone();
        off_by_one[0] ^= 1;
        assert!(
            !m.verify_integrity(IntegrityKind::Sha1, &off_by_one),
            "{name}: one bit off"
        );
        assert!(
            !m.verify_integrity(IntegrityKind::Sha256, &key),
            "{name}: no SHA-256 MAC"
        );
    }
    // §2.4 with the short-term scheme, the un-SASLprep'd password, or another realm/username.
    let m = Message::decode(LONG_TERM_REQUEST).unwrap();
    for key in [
        SHORT_TERM_PASSWORD.as_bytes().to_vec(),
        LT_PASSWORD.as_bytes().to_vec(),
        long_term_key(LT_USERNAME, LT_REALM, "The\u{00AD}M\u{00AA}tr\u{2168}")
            .0
            .to_vec(),
        long_term_key(LT_USERNAME, "example.com", LT_PASSWORD)
            .0
            .to_vec(),
        long_term_key("matrix", LT_REALM, LT_PASSWORD).0.to_vec(),
    ] {
        assert!(!m.verify_integrity(IntegrityKind::Sha1, &key));
    }
}

#[test]
fn reencode_2_4_is_byte_identical() {
    let m = Message::decode(LONG_TERM_REQUEST).unwrap();
    let mut out = vec![0xAA; 7]; // encode_into must clear what was there
    m.encode_into(&mut out);
    assert_eq!(out, LONG_TERM_REQUEST);
}

/// §2.1–§2.3 pad with 0x20 and `encode_into` pads with zeros, so the re-encoding differs in
/// exactly the padding bytes and, as a consequence, in the recomputed FINGERPRINT value.
/// Everything else (header, types, lengths, values, the copied MESSAGE-INTEGRITY) is identical.
/// The copied MESSAGE-INTEGRITY therefore no longer verifies: it covered the 0x20 padding (for
/// §2.2/§2.3 the SOFTWARE padding is before it; for §2.1 the USERNAME padding is).
#[test]
fn reencode_fingerprinted_vectors_is_byte_exact() {
    // The vectors pad with 0x20 (RFC 8489 lets senders pad with anything); encode_into copies
    // padding, so integrity and fingerprint still verify on the re-encoding.
    for (name, bytes) in fingerprinted() {
        let m = Message::decode(bytes).unwrap();
        let mut out = Vec::new();
        m.encode_into(&mut out);
        assert_eq!(out, bytes, "{name}");
        let again = Message::decode(&out).expect("re-encoding decodes");
        assert!(
            again.verify_integrity(IntegrityKind::Sha1, SHORT_TERM_PASSWORD.as_bytes()),
            "{name}"
        );
    }
}

/// Every proper prefix is rejected (the header's length field no longer matches).
#[test]
fn every_truncation_is_rejected() {
    for (name, bytes, _) in all_with_keys() {
        for n in 0..bytes.len() {
            assert!(
                Message::decode(&bytes[..n]).is_err(),
                "{name}: prefix of {n} bytes accepted"
            );
        }
    }
}

/// Prefixes with the length field patched to match: a cut inside an attribute is an overrun;
/// a cut on an attribute boundary is a valid, shorter message. FINGERPRINT is always gone (it
/// was last), and MESSAGE-INTEGRITY verifies exactly when the cut is at or after its end (it
/// never covered what follows it).
#[test]
fn every_truncation_with_patched_length() {
    for (name, bytes, key) in all_with_keys() {
        let mi_end = offset_of(bytes, attr::MESSAGE_INTEGRITY) + 24;
        let boundaries: Vec<usize> = walk(bytes).iter().map(|&(at, _, _)| at).collect();
        for n in (HEADER_LEN..bytes.len()).step_by(4) {
            let mut cut = bytes[..n].to_vec();
            cut[2..4].copy_from_slice(&((n - HEADER_LEN) as u16).to_be_bytes());
            match Message::decode(&cut) {
                Ok(m) => {
                    assert!(
                        boundaries.contains(&n),
                        "{name}: cut at {n} inside an attribute"
                    );
                    exercise(&m);
                    assert!(!m.has_fingerprint(), "{name}: cut at {n}");
                    assert_eq!(
                        m.verify_integrity(IntegrityKind::Sha1, &key),
                        n >= mi_end,
                        "{name}: cut at {n}"
                    );
                }
                Err(e) => {
                    assert!(!boundaries.contains(&n), "{name}: cut at {n} rejected: {e}");
                    assert!(
                        matches!(e, DecodeError::AttributeOverrun { .. }),
                        "{name}: {e}"
                    );
                }
            }
        }
    }
}

/// CRC-32 catches every single-bit error, so a flipped bit in a fingerprinted vector is
/// rejected as long as the decoder still finds the FINGERPRINT attribute. Two kinds of flip hide
/// it, and the message then legitimately decodes as one without FINGERPRINT:
/// - a flip in FINGERPRINT's type field: it becomes an unknown attribute after
///   MESSAGE-INTEGRITY, ignored per RFC 8489 §14.5; MESSAGE-INTEGRITY still verifies (it never
///   covered FINGERPRINT) and the attributes are unchanged;
/// - a flip in an attribute's length that makes it swallow the rest of the message exactly
///   (e.g. §2.1 USERNAME length 9 -> 41 covers MESSAGE-INTEGRITY and FINGERPRINT, or
///   MESSAGE-INTEGRITY length 20 -> 28 covers FINGERPRINT); MESSAGE-INTEGRITY is then gone or
///   of the wrong length, so nothing verifies.
#[test]
fn every_bit_flip_of_a_fingerprinted_vector() {
    for (name, bytes) in fingerprinted() {
        let original = Message::decode(bytes).unwrap();
        let fp_type = offset_of(bytes, attr::FINGERPRINT)..offset_of(bytes, attr::FINGERPRINT) + 2;
        let length_fields: Vec<usize> = walk(bytes)
            .iter()
            .flat_map(|&(at, _, _)| [at + 2, at + 3])
            .collect();
        let mut fp_type_flips = 0;
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.to_vec();
                b[i] ^= 1 << bit;
                let Ok(m) = Message::decode(&b) else { continue };
                exercise(&m);
                assert!(!m.has_fingerprint(), "{name}: byte {i} bit {bit}");
                let verifies =
                    m.verify_integrity(IntegrityKind::Sha1, SHORT_TERM_PASSWORD.as_bytes());
                if fp_type.contains(&i) {
                    fp_type_flips += 1;
                    assert!(verifies, "{name}: byte {i} bit {bit}");
                    assert!(m.attributes().eq(original.attributes()), "{name}");
                } else {
                    assert!(
                        length_fields.contains(&i),
                        "{name}: flip of byte {i} bit {bit} accepted"
                    );
                    assert!(!verifies, "{name}: byte {i} bit {bit}");
                }
            }
        }
        assert_eq!(fp_type_flips, 16, "{name}: every bit of FINGERPRINT's type");
    }
}

/// §2.4 has no FINGERPRINT, so many flips still decode; none may still pass MESSAGE-INTEGRITY,
/// and none may panic a getter.
#[test]
fn every_bit_flip_of_the_long_term_vector_fails_integrity() {
    let key = lt_key();
    let mut decoded = 0;
    for i in 0..LONG_TERM_REQUEST.len() {
        for bit in 0..8 {
            let mut b = LONG_TERM_REQUEST.to_vec();
            b[i] ^= 1 << bit;
            if let Ok(m) = Message::decode(&b) {
                decoded += 1;
                exercise(&m);
                assert!(
                    !m.verify_integrity(IntegrityKind::Sha1, &key),
                    "flip of byte {i} bit {bit} still verifies"
                );
            }
        }
    }
    // Sanity: most flips land in values and the message still parses.
    assert!(decoded > LONG_TERM_REQUEST.len() * 4, "{decoded}");
}
