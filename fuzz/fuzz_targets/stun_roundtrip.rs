//! If bytes decode as STUN, `encode_into` then decode must succeed and give the same message
//! type, transaction id, `(type, value)` attribute list, integrity kind and FINGERPRINT
//! presence; and encoding is idempotent (a second round trip gives the same bytes).
//!
//! Integrity verification is not compared: `encode_into` copies the MAC but writes zero
//! padding, so a MAC that covered non-zero padding (RFC 5769 §2.1 does) stops verifying.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turn_proto::codec::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::decode(data) else { return };

    let mut once = Vec::new();
    m.encode_into(&mut once);
    let m2 = Message::decode(&once)
        .unwrap_or_else(|e| panic!("re-encoding of a decoded message fails to decode: {e}"));

    assert_eq!(m2.message_type(), m.message_type());
    assert_eq!(m2.transaction_id(), m.transaction_id());
    assert!(m2.attributes().eq(m.attributes()), "attribute lists differ");
    assert_eq!(m2.has_fingerprint(), m.has_fingerprint());
    assert_eq!(m2.integrity(), m.integrity());
    assert_eq!(m2.unknown_required(), m.unknown_required());
    let mut twice = Vec::new();
    m2.encode_into(&mut twice);
    assert_eq!(once, twice, "encode_into is not idempotent");
    assert!(once.len() <= data.len());
});
