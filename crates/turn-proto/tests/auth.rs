//! The long-term credential mechanism (RFC 8489 §9.2): wrong keys, missing and bad nonces,
//! unknown users, another user on an allocation (441) and what an [`Authenticator`] refuses.

mod common;

use common::*;
use turn_proto::codec::{attr, long_term_key, Method};
use turn_proto::server::{AuthError, Authenticator, Credentials};

#[test]
fn wrong_password_is_401_with_a_new_challenge() {
    let mut h = Harness::new();
    let mut c = Client::new(udp(1), "alice", "not-the-password");
    let r = h.allocate_with(&mut c, |_| {});
    r.assert_error(Method::Allocate, 401);
    assert_eq!(r.text(attr::REALM).as_deref(), Some(REALM));
    assert!(r.nonce().is_some());
    assert!(h.bind_requests.is_empty());
    assert_eq!(h.quota.total(), 0);
    assert_eq!(h.server.stats().allocations_active, 0);
}

#[test]
fn integrity_without_nonce_is_400() {
    let mut h = Harness::new();
    let c = Client::alice(udp(1));
    let key = c.key();
    let txid = h.txid();
    let bytes = request_bytes(
        Method::Allocate,
        txid,
        &|b| requested_transport(b, 17),
        Some(Creds {
            user: "alice",
            realm: REALM,
            nonce: None,
            key: &key,
        }),
        false,
    );
    let r = h.exchange(c.tuple, &bytes);
    r.assert_error(Method::Allocate, 400);
    assert!(h.bind_requests.is_empty());
}

#[test]
fn forged_nonce_is_438_with_a_fresh_nonce() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let good = h.learn_nonce(&mut c);

    // Same shape (8 hex digits of expiry, 16 of MAC), one MAC digit changed.
    let mut forged = good.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).expect("ASCII");
    // A later expiry with the old MAC: extending a nonce must not work either.
    let extended = format!("ffffffff{}", &good[8..]);
    for bad in [forged, extended, "not-a-nonce".to_owned(), String::new()] {
        c.nonce = Some(bad.clone());
        let txid = h.txid();
        let r = h.exchange(
            c.tuple,
            &c.build(Method::Allocate, txid, &|b| requested_transport(b, 17)),
        );
        r.assert_error(Method::Allocate, 438);
        assert_eq!(r.text(attr::REALM).as_deref(), Some(REALM));
        let fresh = r.nonce().expect("438 carries a NONCE");
        assert_ne!(fresh, bad, "nonce {bad:?}");
        assert!(h.bind_requests.is_empty());
    }

    // The fresh nonce works.
    let r = h.allocate_with(&mut c, |_| {});
    r.assert_success(Method::Allocate);
}

#[test]
fn nonce_of_another_client_ip_is_438() {
    let mut h = Harness::new();
    let mut a = Client::alice(udp(1));
    let nonce = h.learn_nonce(&mut a);
    let mut b = Client::alice(udp(2));
    b.nonce = Some(nonce);
    let txid = h.txid();
    let r = h.request_txid(&b, Method::Allocate, txid, |b| requested_transport(b, 17));
    r.assert_error(Method::Allocate, 438);
    assert!(r.nonce().is_some());
}

#[test]
fn expired_nonce_is_438() {
    let mut h = Harness::setup()
        .config(|c| c.nonce_lifetime = secs(60))
        .build();
    let mut c = Client::alice(udp(1));
    h.learn_nonce(&mut c);
    let old = c.nonce.clone();

    h.advance(secs(59));
    let txid = h.txid();
    let r = h.request_txid(&c, Method::Refresh, txid, |_| {});
    r.assert_error(Method::Refresh, 437); // authenticated, just no allocation yet

    h.advance(secs(2));
    let txid = h.txid();
    let r = h.request_txid(&c, Method::Allocate, txid, |b| requested_transport(b, 17));
    r.assert_error(Method::Allocate, 438);
    let fresh = r.nonce().expect("fresh NONCE");
    assert_ne!(Some(fresh.clone()), old);
    assert!(h.bind_requests.is_empty());

    c.nonce = Some(fresh);
    let r = h.allocate_with(&mut c, |_| {});
    r.assert_success(Method::Allocate);

    // Requests on the allocation need a live nonce too.
    h.advance(secs(61));
    let txid = h.txid();
    let r = h.request_txid(&c, Method::Refresh, txid, |_| {});
    r.assert_error(Method::Refresh, 438);
}

#[test]
fn unknown_user_is_401() {
    let mut h = Harness::new();
    let mut c = Client::new(udp(1), "mallory", "secret");
    let r = h.allocate_with(&mut c, |_| {});
    r.assert_error(Method::Allocate, 401);
    assert!(r.nonce().is_some());
    assert!(h.bind_requests.is_empty());
}

#[test]
fn another_username_on_an_allocation_is_441() {
    let mut h = Harness::new();
    let mut alice = Client::alice(udp(1));
    h.allocate(&mut alice);

    let mut bob = Client::bob(udp(1));
    bob.nonce = alice.nonce.clone();
    let r = h.refresh(&mut bob, None);
    r.assert_error(Method::Refresh, 441);
    let r = h.create_permission(&mut bob, &[sa("203.0.113.5:1")]);
    r.assert_error(Method::CreatePermission, 441);

    // The allocation is alice's still, untouched.
    assert_eq!(h.server.stats().allocations_active, 1);
    let r = h.refresh(&mut alice, None);
    r.assert_success(Method::Refresh);
    assert!(r.integrity_ok(&alice.key()));
}

/// alice is fine; carol's time-limited credential has expired.
struct Expiring;

impl Authenticator for Expiring {
    fn credentials(
        &self,
        username: &str,
        realm: &str,
        unix_now: u64,
    ) -> Result<Credentials, AuthError> {
        match username {
            "alice" => Ok(Credentials {
                key: long_term_key(username, realm, "secret"),
                quota_user: username.to_owned(),
            }),
            "carol" => Err(AuthError::Expired(unix_now - 1)),
            _ => Err(AuthError::UnknownUser),
        }
    }
}

#[test]
fn expired_credential_is_401() {
    let mut h = Harness::setup().auth(Expiring).build();
    let mut carol = Client::new(udp(1), "carol", "whatever");
    let r = h.allocate_with(&mut carol, |_| {});
    r.assert_error(Method::Allocate, 401);
    assert_eq!(r.text(attr::REALM).as_deref(), Some(REALM));
    assert!(r.nonce().is_some());
    assert!(h.bind_requests.is_empty());

    let mut alice = Client::alice(udp(2));
    h.allocate(&mut alice);
}
