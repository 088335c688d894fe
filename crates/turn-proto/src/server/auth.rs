//! Long-term credential checks (RFC 8489 §9.2) and stateless nonces.
//!
//! The server does not know how passwords are made: an [`Authenticator`] turns a username into
//! the long-term key. The edge plugs in TURN-REST ephemeral credentials; [`StaticUsers`] is for
//! development.
//!
//! Nonces carry their own expiry and a MAC over (expiry, client IP) keyed by a server secret,
//! so any edge holding the secret can check a nonce it never issued, and no nonce table can be
//! flooded.

use std::collections::HashMap;
use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::codec::{long_term_key, LongTermKey};

/// What an [`Authenticator`] returns for a valid username.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// MD5(username:realm:password).
    pub key: LongTermKey,
    /// Whom quotas count against: the session of a REST username, or the static user name.
    pub quota_user: String,
}

/// Why a username was refused. All of these answer 401; the variant goes to the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No such user.
    #[error("unknown user")]
    UnknownUser,
    /// A time-limited username past its expiry.
    #[error("credential expired at {0}")]
    Expired(u64),
    /// The username is not in a format this authenticator accepts.
    #[error("malformed username: {0}")]
    Malformed(String),
    /// Refused for another reason the authenticator names.
    #[error("{0}")]
    Refused(String),
}

/// Maps a username to its long-term key. Called once per Allocate (and per ConnectionBind);
/// later requests on an allocation reuse the key it was created with.
pub trait Authenticator: Send {
    /// The key for `username` in `realm` at Unix time `unix_now`, or why not.
    fn credentials(
        &self,
        username: &str,
        realm: &str,
        unix_now: u64,
    ) -> Result<Credentials, AuthError>;
}

/// Fixed users and passwords, for development and tests.
#[derive(Default, Clone)]
pub struct StaticUsers {
    users: HashMap<String, String>,
}

impl StaticUsers {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a user.
    pub fn insert(&mut self, name: impl Into<String>, password: impl Into<String>) {
        self.users.insert(name.into(), password.into());
    }

    /// The password of `name`.
    pub fn password(&self, name: &str) -> Option<&str> {
        self.users.get(name).map(String::as_str)
    }
}

impl Authenticator for StaticUsers {
    fn credentials(
        &self,
        username: &str,
        realm: &str,
        _unix_now: u64,
    ) -> Result<Credentials, AuthError> {
        let password = self.users.get(username).ok_or(AuthError::UnknownUser)?;
        Ok(Credentials {
            key: long_term_key(username, realm, password),
            quota_user: username.to_owned(),
        })
    }
}

/// Issues and checks stateless nonces.
pub(crate) struct Nonces {
    key: Vec<u8>,
    lifetime_secs: u64,
}

/// Why a nonce failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonceError {
    Forged,
    Expired,
}

const NONCE_LEN: usize = 8 + 16;

impl Nonces {
    pub(crate) fn new(key: Vec<u8>, lifetime_secs: u64) -> Self {
        Self { key, lifetime_secs }
    }

    /// A nonce for `client` valid until `unix_now + lifetime`: 8 hex digits of expiry and 16 of
    /// MAC.
    pub(crate) fn issue(&self, client: IpAddr, unix_now: u64) -> String {
        let expiry = (unix_now + self.lifetime_secs) as u32;
        let mac = self.mac(expiry, client);
        let mut s = String::with_capacity(NONCE_LEN);
        push_hex(&mut s, &expiry.to_be_bytes());
        push_hex(&mut s, &mac);
        s
    }

    pub(crate) fn check(
        &self,
        nonce: &str,
        client: IpAddr,
        unix_now: u64,
    ) -> Result<(), NonceError> {
        let b = nonce.as_bytes();
        if b.len() != NONCE_LEN {
            return Err(NonceError::Forged);
        }
        let mut raw = [0u8; 12];
        for (i, out) in raw.iter_mut().enumerate() {
            let hi = hex_val(b[i * 2]).ok_or(NonceError::Forged)?;
            let lo = hex_val(b[i * 2 + 1]).ok_or(NonceError::Forged)?;
            *out = hi << 4 | lo;
        }
        let expiry = u32::from_be_bytes(raw[..4].try_into().expect("4"));
        if !bool::from(self.mac(expiry, client).ct_eq(&raw[4..])) {
            return Err(NonceError::Forged);
        }
        if u64::from(expiry) <= unix_now {
            return Err(NonceError::Expired);
        }
        Ok(())
    }

    fn mac(&self, expiry: u32, client: IpAddr) -> [u8; 8] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        mac.update(b"cloudproxy-nonce-v1");
        mac.update(&expiry.to_be_bytes());
        match client {
            IpAddr::V4(a) => mac.update(&a.octets()),
            IpAddr::V6(a) => mac.update(&a.octets()),
        }
        let full = mac.finalize().into_bytes();
        full[..8].try_into().expect("8")
    }
}

fn push_hex(s: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_is_bound_to_client_key_and_time() {
        let n = Nonces::new(b"k".to_vec(), 600);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let nonce = n.issue(ip, 1_000);
        assert_eq!(n.check(&nonce, ip, 1_000), Ok(()));
        assert_eq!(n.check(&nonce, ip, 1_599), Ok(()));
        assert_eq!(n.check(&nonce, ip, 1_600), Err(NonceError::Expired));
        assert_eq!(
            n.check(&nonce, "192.0.2.2".parse().unwrap(), 1_000),
            Err(NonceError::Forged)
        );
        let other = Nonces::new(b"other".to_vec(), 600);
        assert_eq!(other.check(&nonce, ip, 1_000), Err(NonceError::Forged));
        assert_eq!(n.check("zz", ip, 1_000), Err(NonceError::Forged));
        assert_eq!(
            n.check(&"g".repeat(NONCE_LEN), ip, 1_000),
            Err(NonceError::Forged)
        );
    }
}
