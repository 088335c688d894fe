//! `Message::decode` on arbitrary bytes, then every getter on every attribute type seen; also
//! `ChannelData::decode`, `frame_len` and the value parsers. Nothing may panic, and what decodes
//! must be self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turn_proto::codec::{
    attr, decode_xor_address, frame_len, is_known, long_term_key, ChannelData, ErrorCode,
    FrameKind, IntegrityKind, Message, CHANNEL_MAX, CHANNEL_MIN, HEADER_LEN,
};

const KEY: &[u8] = b"fuzzing-short-term-key";

fuzz_target!(|data: &[u8]| {
    stun(data);
    channel_data(data);
    framing(data);
    // The value parsers on raw bytes, as if `data` were an attribute value.
    let _ = decode_xor_address(attr::XOR_PEER_ADDRESS, data, &[0x5a; 12]);
    let _ = ErrorCode::decode(data);
});

fn stun(data: &[u8]) {
    let Ok(m) = Message::decode(data) else { return };
    assert_eq!(m.as_bytes(), data);
    assert!(data.len() >= HEADER_LEN && data.len().is_multiple_of(4));
    let _ = (
        m.message_type(),
        m.class(),
        m.transaction_id(),
        format!("{m:?}"),
    );
    assert_eq!(&data[8..20], m.transaction_id());

    let base = data.as_ptr() as usize;
    let mut types = Vec::new();
    for (t, v) in m.attributes() {
        // Each value lies inside the message, right after its own 4-byte header.
        let at = v.as_ptr() as usize - base;
        assert!(
            at >= HEADER_LEN + 4 && at + v.len() <= data.len(),
            "{t:#06x} at {at}"
        );
        assert_eq!(data[at - 4..at - 2], t.to_be_bytes());
        assert_eq!(data[at - 2..at], (v.len() as u16).to_be_bytes());
        assert!(t != attr::MESSAGE_INTEGRITY && t != attr::FINGERPRINT);
        if !types.contains(&t) {
            types.push(t);
        }
    }
    assert!(types.len() <= turn_proto::codec::MAX_ATTRIBUTES);
    for &t in &types {
        let first = m.get(t).expect("listed type is present");
        let r = m.range_of(t).expect("listed type has a range");
        assert_eq!(&data[r], first);
        if let Ok(Some(s)) = m.text(t) {
            assert_eq!(s.as_bytes(), first);
        }
        let _ = m.xor_address(t);
        for a in m.xor_addresses(t) {
            let _ = a;
        }
        if let Ok(Some(v)) = m.u32_attr(t) {
            assert_eq!(v.to_be_bytes(), first);
        }
    }
    if let Ok(Some(e)) = m.error_code() {
        assert!((300..=699).contains(&e.code));
    }
    for &t in m.unknown_required() {
        assert!(!is_known(t) && types.contains(&t));
    }
    assert_eq!(m.get(0xFFFF).is_some(), types.contains(&0xFFFF));

    let kind = m.integrity();
    let lt = long_term_key("user", "realm", "pass");
    for k in [IntegrityKind::Sha1, IntegrityKind::Sha256] {
        let ok = m.verify_integrity(k, KEY);
        let _ = m.verify_integrity(k, &lt.0);
        let _ = m.verify_integrity(k, b"");
        if ok {
            assert!(kind.is_some());
        }
    }
    let _ = m.has_fingerprint();

    let mut out = Vec::new();
    m.encode_into(&mut out);
    assert!(out.len() <= data.len());
}

fn channel_data(data: &[u8]) {
    let Ok(cd) = ChannelData::decode(data) else {
        return;
    };
    assert!((CHANNEL_MIN..=CHANNEL_MAX).contains(&cd.channel));
    let len = u16::from_be_bytes([data[2], data[3]]) as usize;
    assert_eq!(cd.data.len(), len);
    assert_eq!(cd.data, &data[4..4 + len]);
    assert!(data.len() <= 4 + ((len + 3) & !3));
    let mut hdr = [0u8; 4];
    ChannelData::write_header(cd.channel, len as u16, &mut hdr);
    assert_eq!(hdr, data[..4]);
}

fn framing(data: &[u8]) {
    match frame_len(data) {
        Ok(Some((kind, len))) => {
            assert!(len >= 4 && len <= data.len());
            let frame = &data[..len];
            match kind {
                FrameKind::Stun => {
                    assert!(len >= HEADER_LEN);
                    let _ = Message::decode(frame);
                }
                FrameKind::ChannelData => {
                    ChannelData::decode(frame).expect("a framed ChannelData decodes");
                }
            }
        }
        // Undecided only while short of the largest frame (20 + 65,532 bytes).
        Ok(None) => assert!(data.len() < HEADER_LEN + 0xFFFC),
        Err(_) => {}
    }
}
