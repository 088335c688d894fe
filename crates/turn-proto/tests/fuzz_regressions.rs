//! Inputs that once broke (or would break) a codec invariant the fuzz targets check, kept as
//! plain tests so they run on every `cargo test`.
//!
//! The invariant used throughout: every value `attributes()` yields is a sub-slice of the
//! message lying right after a 4-byte attribute header carrying its type and length.

use std::net::SocketAddr;

use turn_proto::codec::{
    attr, frame_len, Class, FrameKind, Message, MessageBuilder, MessageType, Method, HEADER_LEN,
};

/// Checks that every indexed value sits after its own header inside `buf`.
fn assert_values_in_place(m: &Message<'_>, buf: &[u8]) {
    let base = buf.as_ptr() as usize;
    for (t, v) in m.attributes() {
        let at = v.as_ptr() as usize - base;
        assert!(
            at >= HEADER_LEN + 4,
            "value of {t:#06x} at {at}, inside the header"
        );
        assert!(at + v.len() <= buf.len());
        assert_eq!(
            u16::from_be_bytes([buf[at - 4], buf[at - 3]]),
            t,
            "type before value at {at}"
        );
        assert_eq!(
            u16::from_be_bytes([buf[at - 2], buf[at - 1]]) as usize,
            v.len(),
            "length before value at {at}"
        );
    }
}

/// A STUN message is at most 20 + 65,532 bytes, so an attribute value can start past offset
/// 65,535 — reachable over TCP/TLS, where `frame_len` accepts such a frame. The attribute
/// index must not truncate that offset to 16 bits (it did: `Slot::at` was a `u16`, so the
/// value below was read from offset 65,540 - 65,536 = 4, i.e. from the magic cookie and
/// transaction id, instead of from the attribute).
fn message_with_last_attribute_past_65535(
    last: u16,
    build: impl FnOnce(&mut MessageBuilder<'_>),
) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::Send, Class::Indication),
        [9; 12],
    );
    b.add(attr::DATA, &[0x5a; 65_500]);
    b.add(attr::SOFTWARE, b"12345678");
    build(&mut b);
    // 20 + (4 + 65,500) + (4 + 8) + (4 + 8): the last value starts at 65,540.
    assert_eq!(buf.len(), 65_548, "{last:#06x}");
    assert_eq!(frame_len(&buf), Ok(Some((FrameKind::Stun, buf.len()))));
    buf
}

#[test]
fn username_past_offset_65535() {
    let buf = message_with_last_attribute_past_65535(attr::USERNAME, |b| {
        b.add(attr::USERNAME, b"mallory!");
    });
    let m = Message::decode(&buf).expect("a near-maximum message decodes");
    assert_values_in_place(&m, &buf);
    assert_eq!(m.get(attr::DATA).map(<[u8]>::len), Some(65_500));
    assert_eq!(m.text(attr::SOFTWARE), Ok(Some("12345678")));
    assert_eq!(m.get(attr::USERNAME), Some(&b"mallory!"[..]));
    assert_eq!(&buf[m.range_of(attr::USERNAME).unwrap()], b"mallory!");

    let mut out = Vec::new();
    m.encode_into(&mut out);
    assert_eq!(out, buf);
}

#[test]
fn xor_peer_address_past_offset_65535() {
    let peer: SocketAddr = "198.51.100.7:4242".parse().unwrap();
    let buf = message_with_last_attribute_past_65535(attr::XOR_PEER_ADDRESS, |b| {
        b.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
    });
    let m = Message::decode(&buf).unwrap();
    assert_values_in_place(&m, &buf);
    assert_eq!(m.xor_address(attr::XOR_PEER_ADDRESS), Ok(Some(peer)));
    assert_eq!(
        m.xor_addresses(attr::XOR_PEER_ADDRESS).collect::<Vec<_>>(),
        [Ok(peer)]
    );
}

/// The largest message: length field 65,532 (the largest multiple of 4), one attribute.
#[test]
fn largest_message_single_attribute() {
    let mut buf = Vec::new();
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::Data, Class::Indication),
        [1; 12],
    );
    b.add(attr::DATA, &vec![7; 65_528]);
    assert_eq!(buf.len(), HEADER_LEN + 65_532);
    let m = Message::decode(&buf).unwrap();
    assert_values_in_place(&m, &buf);
    assert_eq!(m.get(attr::DATA).unwrap().len(), 65_528);
}
