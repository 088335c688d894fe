//! Differential tests against an independent STUN implementation, the `stun-types` crate.
//!
//! Messages built with our `MessageBuilder` must parse with `stun-types` (which checks
//! FINGERPRINT on parse) and show the same values and a valid MESSAGE-INTEGRITY; a message built
//! with `stun-types` must decode with ours the same way. Where both sides build the same
//! attributes in the same order, the bytes must be identical.

use std::net::SocketAddr;

use stun_types::attribute::{
    ErrorCode as StErrorCode, Nonce, RawAttribute, Realm, Software, Username, XorMappedAddress,
    XorSocketAddr,
};
use stun_types::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message as StMessage, MessageClass,
    MessageIntegrityCredentials, MessageType as StMessageType, MessageWriteVec, Method as StMethod,
    ShortTermCredentials, TransactionId as StTransactionId,
};
use stun_types::prelude::*;
use turn_proto::codec::{
    attr, long_term_key, Class, IntegrityKind, Message, MessageBuilder, MessageType, Method,
};

const TXID: [u8; 12] = [
    0x0b, 0xad, 0xca, 0xfe, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
];
const USER: &str = "1735689600:alice";
const REALM: &str = "relay.example.net";
const PASSWORD: &str = "c2VjcmV0IHN0dWZm";
const NONCE: &str = "bm9uY2Utb2YtdGhlLWRheQ";

fn st_txid(t: &[u8; 12]) -> StTransactionId {
    let mut b = [0u8; 16];
    b[4..].copy_from_slice(t);
    u128::from_be_bytes(b).into()
}

fn st_long_term() -> MessageIntegrityCredentials {
    LongTermKeyCredentials::new(USER.to_owned(), PASSWORD.to_owned(), REALM.to_owned()).into()
}

fn st_short_term(password: &str) -> MessageIntegrityCredentials {
    ShortTermCredentials::new(password.to_owned()).into()
}

fn st_class(c: Class) -> MessageClass {
    match c {
        Class::Request => MessageClass::Request,
        Class::Indication => MessageClass::Indication,
        Class::Success => MessageClass::Success,
        Class::Error => MessageClass::Error,
    }
}

/// Every attribute `stun-types` sees before the integrity/fingerprint attributes, as
/// `(type, value)`, against ours.
fn assert_same_attributes(ours: &Message<'_>, theirs: &StMessage<'_>) {
    let theirs: Vec<(u16, Vec<u8>)> = theirs
        .iter_attributes()
        .map(|(_, a)| (u16::from(a.get_type()), a.value.to_vec()))
        .take_while(|(t, _)| {
            ![
                attr::MESSAGE_INTEGRITY,
                attr::MESSAGE_INTEGRITY_SHA256,
                attr::FINGERPRINT,
            ]
            .contains(t)
        })
        .collect();
    let ours: Vec<(u16, Vec<u8>)> = ours.attributes().map(|(t, v)| (t, v.to_vec())).collect();
    assert_eq!(ours, theirs);
}

/// An Allocate request as a TURN client sends it after a 401: XOR-PEER-ADDRESS is not used in
/// Allocate, but the codec does not care and it exercises the attribute.
fn our_allocate(buf: &mut Vec<u8>, peer: SocketAddr) {
    let mut b = MessageBuilder::new(
        buf,
        MessageType::new(Method::Allocate, Class::Request),
        TXID,
    );
    b.add_u32(attr::REQUESTED_TRANSPORT, 17 << 24);
    b.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
    b.add(attr::USERNAME, USER.as_bytes());
    b.add(attr::REALM, REALM.as_bytes());
    b.add(attr::NONCE, NONCE.as_bytes());
    b.add(attr::SOFTWARE, b"cloudproxy differential");
    b.integrity(IntegrityKind::Sha1, &long_term_key(USER, REALM, PASSWORD).0);
    b.fingerprint();
}

#[test]
fn our_long_term_request_parses_in_stun_types() {
    for peer in ["203.0.113.9:50000", "[2001:db8::42]:3478"] {
        let peer: SocketAddr = peer.parse().unwrap();
        let mut buf = Vec::new();
        our_allocate(&mut buf, peer);

        let st = StMessage::from_bytes(&buf).expect("stun-types parses (and checks FINGERPRINT)");
        assert_eq!(st.class(), MessageClass::Request);
        assert_eq!(st.method(), StMethod::new(0x003));
        assert_eq!(st.transaction_id(), st_txid(&TXID));
        assert_eq!(st.attribute::<Username>().unwrap().username(), USER);
        assert_eq!(st.attribute::<Realm>().unwrap().realm(), REALM);
        assert_eq!(st.attribute::<Nonce>().unwrap().nonce(), NONCE);
        assert_eq!(
            st.attribute::<Software>().unwrap().software(),
            "cloudproxy differential"
        );
        let raw = st.raw_attribute(attr::XOR_PEER_ADDRESS.into()).unwrap();
        assert_eq!(
            XorSocketAddr::from_raw(&raw)
                .unwrap()
                .addr(st.transaction_id()),
            peer
        );
        assert!(matches!(
            st.validate_integrity(&st_long_term()),
            Ok(IntegrityAlgorithm::Sha1)
        ));
        let wrong: MessageIntegrityCredentials =
            LongTermKeyCredentials::new(USER.to_owned(), "nope".to_owned(), REALM.to_owned())
                .into();
        assert!(st.validate_integrity(&wrong).is_err());

        let ours = Message::decode(&buf).unwrap();
        assert_same_attributes(&ours, &st);
    }
}

#[test]
fn our_binding_responses_parse_in_stun_types() {
    let password = "VOkJxbRl1RmTxUk/WvJxBt";
    for (addr, kind) in [
        ("192.0.2.1:32853", IntegrityKind::Sha1),
        (
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
            IntegrityKind::Sha1,
        ),
        ("198.51.100.200:1", IntegrityKind::Sha256),
        ("[::ffff:192.0.2.1]:65535", IntegrityKind::Sha256),
    ] {
        let addr: SocketAddr = addr.parse().unwrap();
        let mut buf = Vec::new();
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(Method::Binding, Class::Success),
            TXID,
        );
        b.add(attr::SOFTWARE, b"test vector");
        b.add_xor_address(attr::XOR_MAPPED_ADDRESS, addr);
        b.integrity(kind, password.as_bytes());
        b.fingerprint();

        let st = StMessage::from_bytes(&buf).expect("stun-types parses");
        assert_eq!(st.class(), MessageClass::Success);
        assert_eq!(st.method(), StMethod::new(0x001));
        let mapped = st.attribute::<XorMappedAddress>().unwrap();
        assert_eq!(mapped.addr(st.transaction_id()), addr);
        let want = match kind {
            IntegrityKind::Sha1 => IntegrityAlgorithm::Sha1,
            IntegrityKind::Sha256 => IntegrityAlgorithm::Sha256,
        };
        assert_eq!(
            st.validate_integrity(&st_short_term(password)).ok(),
            Some(want),
            "{addr}"
        );
        assert!(st.validate_integrity(&st_short_term("wrong")).is_err());
        assert_same_attributes(&Message::decode(&buf).unwrap(), &st);
    }
}

#[test]
fn our_error_response_parses_in_stun_types() {
    let mut buf = Vec::new();
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::Allocate, Class::Error),
        TXID,
    );
    b.add_error(401, "Unauthorized");
    b.add(attr::REALM, REALM.as_bytes());
    b.add(attr::NONCE, NONCE.as_bytes());
    b.fingerprint();

    let st = StMessage::from_bytes(&buf).unwrap();
    assert_eq!(st.class(), MessageClass::Error);
    let e = st.attribute::<StErrorCode>().unwrap();
    assert_eq!((e.code(), e.reason()), (401, "Unauthorized"));
    assert_same_attributes(&Message::decode(&buf).unwrap(), &st);
}

/// Same attributes, same order, same transaction id: both encoders must produce the same bytes
/// (zero padding, length fields, MESSAGE-INTEGRITY and FINGERPRINT inputs).
#[test]
fn both_encoders_agree_byte_for_byte() {
    let mapped: SocketAddr = "[2001:db8::1]:40000".parse().unwrap();
    for (class, kind) in [
        (Class::Request, IntegrityKind::Sha1),
        (Class::Success, IntegrityKind::Sha1),
        (Class::Indication, IntegrityKind::Sha256),
    ] {
        let mut ours = Vec::new();
        let mut b = MessageBuilder::new(&mut ours, MessageType::new(Method::Binding, class), TXID);
        b.add(attr::USERNAME, b"evtj:h6vY"); // 9 bytes: 3 bytes of padding
        b.add(attr::SOFTWARE, b"x"); // 1 byte: 3 bytes of padding
        b.add_xor_address(attr::XOR_MAPPED_ADDRESS, mapped);
        b.integrity(kind, PASSWORD.as_bytes());
        b.fingerprint();

        let mut st = StMessage::builder(
            StMessageType::from_class_method(st_class(class), StMethod::new(0x001)),
            st_txid(&TXID),
            MessageWriteVec::new(),
        );
        st.add_attribute(&Username::new("evtj:h6vY").unwrap())
            .unwrap();
        st.add_attribute(&Software::new("x").unwrap()).unwrap();
        st.add_attribute(&XorMappedAddress::new(mapped, st_txid(&TXID)))
            .unwrap();
        let algo = match kind {
            IntegrityKind::Sha1 => IntegrityAlgorithm::Sha1,
            IntegrityKind::Sha256 => IntegrityAlgorithm::Sha256,
        };
        st.add_message_integrity(&st_short_term(PASSWORD), algo)
            .unwrap();
        st.add_fingerprint().unwrap();
        let theirs = st.finish();

        assert_eq!(ours, theirs, "{class:?} {kind:?}");
    }
}

/// The other direction: a long-term-authenticated request with FINGERPRINT built by
/// `stun-types` decodes with ours.
#[test]
fn stun_types_request_decodes_with_ours() {
    let mapped: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
        .parse()
        .unwrap();
    let peer: SocketAddr = "192.0.2.77:9".parse().unwrap();
    let txid = st_txid(&TXID);
    let mut st = StMessage::builder(
        StMessageType::from_class_method(MessageClass::Request, StMethod::new(0x008)),
        txid,
        MessageWriteVec::new(),
    );
    st.add_attribute(&Username::new(USER).unwrap()).unwrap();
    st.add_attribute(&Realm::new(REALM).unwrap()).unwrap();
    st.add_attribute(&Nonce::new(NONCE).unwrap()).unwrap();
    st.add_attribute(&XorMappedAddress::new(mapped, txid))
        .unwrap();
    let peer_attr = XorSocketAddr::new(peer, txid);
    let raw: RawAttribute<'_> = peer_attr.to_raw(attr::XOR_PEER_ADDRESS.into());
    st.add_attribute(&raw).unwrap();
    st.add_message_integrity(&st_long_term(), IntegrityAlgorithm::Sha1)
        .unwrap();
    st.add_fingerprint().unwrap();
    let bytes = st.finish();

    let m = Message::decode(&bytes).expect("ours decodes stun-types output");
    assert_eq!(
        m.message_type(),
        MessageType::new(Method::CreatePermission, Class::Request)
    );
    assert_eq!(m.transaction_id(), &TXID);
    assert_eq!(m.text(attr::USERNAME).unwrap(), Some(USER));
    assert_eq!(m.text(attr::REALM).unwrap(), Some(REALM));
    assert_eq!(m.text(attr::NONCE).unwrap(), Some(NONCE));
    assert_eq!(
        m.xor_address(attr::XOR_MAPPED_ADDRESS).unwrap(),
        Some(mapped)
    );
    assert_eq!(m.xor_address(attr::XOR_PEER_ADDRESS).unwrap(), Some(peer));
    assert!(m.has_fingerprint());
    assert_eq!(m.integrity(), Some(IntegrityKind::Sha1));
    assert!(m.verify_integrity(IntegrityKind::Sha1, &long_term_key(USER, REALM, PASSWORD).0));
    assert!(!m.verify_integrity(IntegrityKind::Sha1, &long_term_key(USER, REALM, "nope").0));
    assert!(m.unknown_required().is_empty());

    // And our re-encoding of it is the same bytes (stun-types pads with zeros too).
    let mut again = Vec::new();
    m.encode_into(&mut again);
    assert_eq!(again, bytes);
}
