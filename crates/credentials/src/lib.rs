//! Ephemeral TURN-REST credentials: mint and verify, with key rotation by key id.
//!
//! A credential is a username that states its own expiry, and a password that is an HMAC of
//! that username under a shared secret (the "TURN REST API" scheme of
//! draft-uberti-behave-turn-rest, which coturn implements as `use-auth-secret`):
//!
//! ```text
//! username = "<expiry unix seconds>:<key id>:<opaque session>"
//! password = base64(HMAC-SHA1(secret[key id], username))
//! ```
//!
//! Why this shape:
//! - **No database.** Any edge holding the secrets can verify any credential, so the control
//!   plane that mints and the edges that verify share nothing but the secret set.
//! - **Short TTL instead of revocation.** The expiry is inside the MAC'd username, so it cannot
//!   be extended; a leaked credential dies on its own within minutes.
//! - **Rotation by key id.** Several secrets are live at once; the key id in the username says
//!   which one signed it. Mint with a new secret, keep the old one until its credentials have
//!   expired, then drop it — no flag day.
//! - **HMAC-SHA1 + standard base64 with padding**, because that is what coturn and
//!   `turnutils_uclient -W` compute, so those tools interoperate with this system unchanged.
//!
//! The password never travels on the wire. A TURN server calls [`verify_username`], which
//! parses and checks the username and returns the password the client must have used; the
//! server derives the long-term key from it and checks MESSAGE-INTEGRITY. Places that do
//! receive the password (HTTP or WebSocket tickets, tests) use [`verify_password`].
//!
//! Nothing here reads a clock: the current time is always an argument, so callers and tests
//! control it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod join_token;
#[cfg(test)]
mod test_rng;
pub mod ticket;

pub use join_token::{mint_join_token, verify_join_token, JoinTokenError, MAX_JOIN_TOKEN_LEN};
pub use ticket::{sign_ticket, verify_ticket, TicketClaims, TicketError, MAX_TICKET_LEN};

use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// Longest username accepted or minted, in bytes. RFC 8489 §14.3 caps USERNAME at 508 bytes;
/// the slack only matters to clients that already break the RFC, and the cap exists to bound
/// the work a stranger can make us do, not to police them.
pub const MAX_USERNAME_LEN: usize = 512;

/// Longest key id, in bytes. Key ids are labels like `2024-06` or `k7`, not data.
pub const MAX_KEY_ID_LEN: usize = 64;

/// Why minting or verifying failed. `Display` is meant for logs; none of the variants carry
/// secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The username does not have the `<expiry>:[<key id>:]<session>` shape.
    #[error("malformed username: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The credential's expiry has passed (valid while `now < expiry`).
    #[error("credential expired at {expired_at} (unix seconds)")]
    Expired {
        /// The expiry stated in the username.
        expired_at: u64,
    },
    /// The expiry lies further ahead than the verifier's maximum TTL allows. Minting services
    /// only issue short credentials, so a long one means someone who once held a secret is
    /// minting their own.
    #[error("credential expires at {expires_unix}, later than the latest allowed {latest_allowed} (unix seconds)")]
    TooFarInFuture {
        /// The expiry stated in the username.
        expires_unix: u64,
        /// `now + max_ttl_secs`.
        latest_allowed: u64,
    },
    /// The username names a key id that is not in the secret set (never existed, or rotated out).
    #[error("unknown key id {key_id:?}")]
    UnknownKeyId {
        /// The key id from the username.
        key_id: String,
    },
    /// A [`SecretSet`] needs at least one secret: the first one mints.
    #[error("secret set is empty")]
    EmptySecretSet,
    /// A key id is empty, too long, contains `:` (it would split the username differently) or
    /// anything other than printable ASCII.
    #[error("invalid key id {key_id:?}: must be 1-{MAX_KEY_ID_LEN} printable ASCII characters without ':'")]
    BadKeyId {
        /// The offending key id.
        key_id: String,
    },
    /// Two secrets share a key id, so the key id could not say which one signed.
    #[error("duplicate key id {key_id:?}")]
    DuplicateKeyId {
        /// The repeated key id.
        key_id: String,
    },
    /// A secret is empty; HMAC under an empty key would let anyone mint.
    #[error("secret for key id {key_id:?} is empty")]
    EmptySecret {
        /// The key id whose secret is empty.
        key_id: String,
    },
    /// The session given to [`mint`] cannot be put in a username.
    #[error("invalid session: {reason}")]
    BadSession {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The TTL given to [`mint`] is zero (the credential would be born expired) or overflows.
    #[error("invalid ttl: must be positive and keep the expiry within u64")]
    BadTtl,
    /// [`verify_password`]: the password does not match the username.
    #[error("password does not match")]
    PasswordMismatch,
}

/// One shared secret and the key id that names it in usernames.
#[derive(Clone)]
pub struct Secret {
    /// Printable ASCII without `:`, at most [`MAX_KEY_ID_LEN`] bytes (checked by
    /// [`SecretSet::new`]).
    pub key_id: String,
    /// The HMAC key. Non-empty; 32 random bytes is plenty.
    pub secret: Vec<u8>,
}

impl Secret {
    /// Convenience constructor; validation happens in [`SecretSet::new`].
    pub fn new(key_id: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        Self {
            key_id: key_id.into(),
            secret: secret.into(),
        }
    }
}

/// Prints the key id only: secrets end up in logs through `{:?}` more often than anyone intends.
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The secrets live at one time. The first is *current*: [`mint`] uses it, and so does the
/// two-field username form. The others only verify, which is what lets secrets rotate without
/// invalidating credentials in flight.
#[derive(Debug, Clone)]
pub struct SecretSet {
    secrets: Vec<Secret>,
}

fn valid_key_id(key_id: &str) -> bool {
    !key_id.is_empty()
        && key_id.len() <= MAX_KEY_ID_LEN
        && key_id.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

impl SecretSet {
    /// Validates and wraps the secrets, current first. Fails on an empty list
    /// ([`CredentialError::EmptySecretSet`]), an invalid key id ([`CredentialError::BadKeyId`]),
    /// a repeated key id ([`CredentialError::DuplicateKeyId`]) or an empty secret
    /// ([`CredentialError::EmptySecret`]) — each would make verification ambiguous or unsafe.
    pub fn new(secrets: Vec<Secret>) -> Result<Self, CredentialError> {
        if secrets.is_empty() {
            return Err(CredentialError::EmptySecretSet);
        }
        for (i, s) in secrets.iter().enumerate() {
            if !valid_key_id(&s.key_id) {
                return Err(CredentialError::BadKeyId {
                    key_id: s.key_id.clone(),
                });
            }
            if s.secret.is_empty() {
                return Err(CredentialError::EmptySecret {
                    key_id: s.key_id.clone(),
                });
            }
            if secrets[..i].iter().any(|o| o.key_id == s.key_id) {
                return Err(CredentialError::DuplicateKeyId {
                    key_id: s.key_id.clone(),
                });
            }
        }
        Ok(Self { secrets })
    }

    /// The secret new credentials are minted with (the first one given).
    pub fn current(&self) -> &Secret {
        &self.secrets[0]
    }

    /// The secret with this key id, if it is still live.
    pub fn get(&self, key_id: &str) -> Option<&Secret> {
        self.secrets.iter().find(|s| s.key_id == key_id)
    }

    /// All live secrets, current first.
    pub fn iter(&self) -> impl Iterator<Item = &Secret> + '_ {
        self.secrets.iter()
    }
}

/// A freshly minted credential, as handed to a client (e.g. in an ICE server list).
#[derive(Clone)]
pub struct Credential {
    /// `"<expiry>:<key id>:<session>"`.
    pub username: String,
    /// `base64(HMAC-SHA1(secret, username))`.
    pub password: String,
    /// Unix seconds after which the credential is refused (valid while `now < expires_unix`).
    pub expires_unix: u64,
}

/// The password is as good as the credential, so it is not printed.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("expires_unix", &self.expires_unix)
            .finish()
    }
}

/// Mints a credential for `session` with the current secret, valid for `ttl_secs` from
/// `now_unix`.
///
/// `session` is opaque to this crate (a call id, a user id — whatever the control plane wants to
/// see again in edge logs and quotas). It must be non-empty printable ASCII (no spaces, no
/// control characters) because the TURN codec uses usernames as given, without SASLprep, and
/// ASCII is what every client treats identically. It **may** contain `:`: key ids never do,
/// so the username splits unambiguously at its first two colons.
///
/// Fails with [`CredentialError::BadTtl`] for a zero or overflowing TTL and
/// [`CredentialError::BadSession`] for an unusable session or a username longer than
/// [`MAX_USERNAME_LEN`].
pub fn mint(
    set: &SecretSet,
    session: &str,
    now_unix: u64,
    ttl_secs: u64,
) -> Result<Credential, CredentialError> {
    if session.is_empty() {
        return Err(CredentialError::BadSession { reason: "empty" });
    }
    if !session.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CredentialError::BadSession {
            reason: "must be printable ASCII without spaces",
        });
    }
    if ttl_secs == 0 {
        return Err(CredentialError::BadTtl);
    }
    let expires_unix = now_unix
        .checked_add(ttl_secs)
        .ok_or(CredentialError::BadTtl)?;
    let current = set.current();
    let username = format!("{expires_unix}:{}:{session}", current.key_id);
    if username.len() > MAX_USERNAME_LEN {
        return Err(CredentialError::BadSession {
            reason: "username would exceed MAX_USERNAME_LEN",
        });
    }
    let password = password_for(&current.secret, &username);
    Ok(Credential {
        username,
        password,
        expires_unix,
    })
}

/// `base64(HMAC-SHA1(secret, username))`, standard alphabet with padding — exactly what coturn
/// (`use-auth-secret`) and `turnutils_uclient -W` compute, so credentials interoperate.
pub fn password_for(secret: &[u8], username: &str) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A username that parsed, has not expired and names a live secret.
pub struct Verified<'a> {
    /// Unix seconds the credential expires at; an edge may cap allocation lifetimes by it.
    pub expires_unix: u64,
    /// The key id from the username; `None` for the two-field form (current secret).
    pub key_id: Option<&'a str>,
    /// The opaque session part, for logs and per-session quotas. May contain `:`.
    pub session: &'a str,
    /// The password the client must hold. The TURN server derives the long-term key from it;
    /// it is never compared with anything on the wire.
    pub password: String,
}

/// The password is as good as the credential, so it is not printed.
impl fmt::Debug for Verified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("expires_unix", &self.expires_unix)
            .field("key_id", &self.key_id)
            .field("session", &self.session)
            .field("password", &"<redacted>")
            .finish()
    }
}

fn malformed(reason: &'static str) -> CredentialError {
    CredentialError::Malformed { reason }
}

/// Parses and checks a username and returns the password the client must have used.
///
/// Two forms are accepted:
/// - `"<expiry>:<key id>:<session>"` — what [`mint`] produces. The key id must name a secret in
///   `set`, else [`CredentialError::UnknownKeyId`]. The session is everything after the second
///   colon and may itself contain colons.
/// - `"<expiry>:<session>"` (no second colon) — what coturn's `turnutils_uclient -W secret -u
///   NAME` sends (`"<expiry>:NAME"`). It names no key, so it is checked against the **current**
///   secret; such credentials stop verifying as soon as the current secret rotates. That is
///   fine for the test tools it exists for. (`-u "k1:sess"` yields `"<expiry>:k1:sess"`, the
///   three-field form, so those tools can also exercise key ids.)
///
/// `<expiry>` is decimal unix seconds (digits only, no sign). The credential is valid while
/// `now_unix < expiry`, else [`CredentialError::Expired`]. With `max_ttl_secs`, an expiry later
/// than `now_unix + max_ttl_secs` is [`CredentialError::TooFarInFuture`]: legitimate minting
/// only issues short credentials, so a far-off expiry means someone who once held a secret is
/// minting their own long-lived credentials to outlast its rotation. Anything else off —
/// empty, longer than [`MAX_USERNAME_LEN`], non-numeric expiry, empty key id or session,
/// control characters — is [`CredentialError::Malformed`].
///
/// Checks run cheapest first (shape, expiry, key id) and none of their answers depend on the
/// secret, so the errors leak nothing an attacker did not already send.
pub fn verify_username<'a>(
    set: &SecretSet,
    username: &'a str,
    now_unix: u64,
    max_ttl_secs: Option<u64>,
) -> Result<Verified<'a>, CredentialError> {
    if username.is_empty() {
        return Err(malformed("empty"));
    }
    if username.len() > MAX_USERNAME_LEN {
        return Err(malformed("longer than MAX_USERNAME_LEN"));
    }
    if username.chars().any(char::is_control) {
        return Err(malformed("contains control characters"));
    }
    let (expiry, rest) = username
        .split_once(':')
        .ok_or(malformed("no ':' after the expiry"))?;
    if expiry.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("expiry is not a decimal number"));
    }
    let expires_unix: u64 = expiry
        .parse()
        .map_err(|_| malformed("expiry does not fit in u64"))?;
    let (key_id, session) = match rest.split_once(':') {
        Some((key_id, session)) => {
            if key_id.is_empty() {
                return Err(malformed("empty key id"));
            }
            (Some(key_id), session)
        }
        None => (None, rest),
    };
    if session.is_empty() {
        return Err(malformed("empty session"));
    }
    if now_unix >= expires_unix {
        return Err(CredentialError::Expired {
            expired_at: expires_unix,
        });
    }
    if let Some(max_ttl) = max_ttl_secs {
        let latest_allowed = now_unix.saturating_add(max_ttl);
        if expires_unix > latest_allowed {
            return Err(CredentialError::TooFarInFuture {
                expires_unix,
                latest_allowed,
            });
        }
    }
    let secret = match key_id {
        Some(k) => set.get(k).ok_or_else(|| CredentialError::UnknownKeyId {
            key_id: k.to_owned(),
        })?,
        None => set.current(),
    };
    Ok(Verified {
        expires_unix,
        key_id,
        session,
        password: password_for(&secret.secret, username),
    })
}

/// [`verify_username`], then compares `password` with the expected one in constant time. For
/// places where the client presents the password itself (HTTP/WebSocket tickets, tests); TURN
/// never does. `max_ttl_secs` has the same meaning as in [`verify_username`].
pub fn verify_password<'a>(
    set: &SecretSet,
    username: &'a str,
    password: &str,
    now_unix: u64,
    max_ttl_secs: Option<u64>,
) -> Result<Verified<'a>, CredentialError> {
    let verified = verify_username(set, username, now_unix, max_ttl_secs)?;
    // Lengths are public (every valid password is 28 bytes), so slice ct_eq's early length
    // check reveals nothing.
    if bool::from(verified.password.as_bytes().ct_eq(password.as_bytes())) {
        Ok(verified)
    } else {
        Err(CredentialError::PasswordMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn set(secrets: &[(&str, &str)]) -> SecretSet {
        SecretSet::new(
            secrets
                .iter()
                .map(|(k, s)| Secret::new(*k, s.as_bytes()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn password_known_answer() {
        // python3: base64.b64encode(hmac.new(b"north", b"1700000000:alice", sha1).digest())
        // and `openssl dgst -sha1 -hmac north -binary | base64` agree.
        assert_eq!(
            password_for(b"north", "1700000000:alice"),
            "Cd/49soE35ICqcJF/bCTn8Z4OyE="
        );
        assert_eq!(
            password_for(b"north", "1700000000:k1:sess"),
            "sAHh3HtX5oSl9F2LDEs+vKGfoK4="
        );
    }

    #[test]
    fn mint_then_verify_round_trip() {
        let s = set(&[("k1", "north")]);
        let c = mint(&s, "call-42:leg:b", NOW, 600).unwrap();
        assert_eq!(c.username, "1700000600:k1:call-42:leg:b");
        assert_eq!(c.expires_unix, NOW + 600);
        let v = verify_username(&s, &c.username, NOW, Some(3600)).unwrap();
        assert_eq!(v.expires_unix, NOW + 600);
        assert_eq!(v.key_id, Some("k1"));
        assert_eq!(v.session, "call-42:leg:b");
        assert_eq!(v.password, c.password);
        let v = verify_password(&s, &c.username, &c.password, NOW, None).unwrap();
        assert_eq!(v.session, "call-42:leg:b");
        assert_eq!(
            verify_password(&s, &c.username, "wrong", NOW, None).unwrap_err(),
            CredentialError::PasswordMismatch
        );
        // A tampered username (extended expiry) no longer matches the password.
        let forged = c.username.replacen("1700000600", "1700009999", 1);
        assert_eq!(
            verify_password(&s, &forged, &c.password, NOW, None).unwrap_err(),
            CredentialError::PasswordMismatch
        );
    }

    #[test]
    fn expiry_boundary() {
        let s = set(&[("k1", "north")]);
        let c = mint(&s, "sess", NOW, 60).unwrap();
        assert!(verify_username(&s, &c.username, NOW + 59, None).is_ok());
        assert_eq!(
            verify_username(&s, &c.username, NOW + 60, None).unwrap_err(),
            CredentialError::Expired {
                expired_at: NOW + 60
            }
        );
        assert!(matches!(
            verify_username(&s, &c.username, NOW + 61, None),
            Err(CredentialError::Expired { .. })
        ));
    }

    #[test]
    fn max_ttl_caps_self_minted_long_credentials() {
        let s = set(&[("k1", "north")]);
        let c = mint(&s, "sess", NOW, 3600).unwrap();
        assert!(verify_username(&s, &c.username, NOW, Some(3600)).is_ok());
        assert_eq!(
            verify_username(&s, &c.username, NOW, Some(3599)).unwrap_err(),
            CredentialError::TooFarInFuture {
                expires_unix: NOW + 3600,
                latest_allowed: NOW + 3599
            }
        );
        let year = format!("{}:k1:sess", NOW + 365 * 86400);
        assert!(verify_username(&s, &year, NOW, None).is_ok());
        assert!(matches!(
            verify_username(&s, &year, NOW, Some(86400)),
            Err(CredentialError::TooFarInFuture { .. })
        ));
        // Saturating: a huge max TTL does not overflow.
        assert!(verify_username(&s, &year, NOW, Some(u64::MAX)).is_ok());
    }

    #[test]
    fn rotation_by_key_id() {
        let old = set(&[("k1", "north")]);
        let c = mint(&old, "sess", NOW, 600).unwrap();

        let rotated = set(&[("k2", "south"), ("k1", "north")]);
        assert_eq!(rotated.current().key_id, "k2");
        let v = verify_password(&rotated, &c.username, &c.password, NOW, None).unwrap();
        assert_eq!(v.key_id, Some("k1"));
        let fresh = mint(&rotated, "sess", NOW, 600).unwrap();
        assert!(fresh.username.contains(":k2:"));
        assert!(verify_password(&rotated, &fresh.username, &fresh.password, NOW, None).is_ok());

        let retired = set(&[("k2", "south")]);
        assert_eq!(
            verify_username(&retired, &c.username, NOW, None).unwrap_err(),
            CredentialError::UnknownKeyId {
                key_id: "k1".into()
            }
        );
        assert!(verify_password(&retired, &fresh.username, &fresh.password, NOW, None).is_ok());
    }

    #[test]
    fn two_field_form_uses_the_current_secret() {
        // What `turnutils_uclient -W north -u alice` sends.
        let s = set(&[("k2", "north"), ("k1", "south")]);
        let username = format!("{}:alice", NOW + 100);
        let v = verify_username(&s, &username, NOW, None).unwrap();
        assert_eq!(v.key_id, None);
        assert_eq!(v.session, "alice");
        assert_eq!(v.password, password_for(b"north", &username));
        // After rotation the same username resolves to the new current secret.
        let s2 = set(&[("k3", "east"), ("k2", "north")]);
        assert_ne!(
            verify_username(&s2, &username, NOW, None).unwrap().password,
            v.password
        );
        // `-u k1:sess` is the three-field form.
        let three = format!("{}:k1:sess", NOW + 100);
        let v = verify_username(&s, &three, NOW, None).unwrap();
        assert_eq!(v.key_id, Some("k1"));
        assert_eq!(v.password, password_for(b"south", &three));
    }

    #[test]
    fn malformed_usernames_are_rejected_without_panic() {
        let s = set(&[("k1", "north")]);
        let huge = format!("{}:k1:{}", NOW + 10, "x".repeat(600));
        let cases: Vec<String> = vec![
            "".into(),
            ":".into(),
            "::".into(),
            "abc:x".into(),
            "123:".into(),
            "-5:x".into(),
            "+5:x".into(),
            " 5:x".into(),
            "5".into(),
            ":x".into(),
            "99999999999999999999999:x".into(),
            format!("{}::sess", NOW + 10),
            format!("{}:k1:", NOW + 10),
            format!("{}:k1:a\nb", NOW + 10),
            format!("{}:x\0", NOW + 10),
            "１２３:x".into(),
            huge,
        ];
        for u in &cases {
            let err = verify_username(&s, u, NOW, Some(3600)).unwrap_err();
            assert!(
                matches!(err, CredentialError::Malformed { .. }),
                "{u:?}: {err:?}"
            );
            assert!(verify_password(&s, u, "x", NOW, None).is_err());
            assert!(!err.to_string().is_empty());
        }
        // Unknown key id is its own error, not Malformed.
        assert!(matches!(
            verify_username(&s, &format!("{}:nope:sess", NOW + 10), NOW, None),
            Err(CredentialError::UnknownKeyId { .. })
        ));
    }

    #[test]
    fn secret_set_validation() {
        assert_eq!(
            SecretSet::new(vec![]).unwrap_err(),
            CredentialError::EmptySecretSet
        );
        for bad in ["", "a:b", "a b", "é", &"k".repeat(MAX_KEY_ID_LEN + 1)] {
            assert!(
                matches!(
                    SecretSet::new(vec![Secret::new(bad, "x")]),
                    Err(CredentialError::BadKeyId { .. })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            SecretSet::new(vec![Secret::new("k1", "a"), Secret::new("k1", "b")]).unwrap_err(),
            CredentialError::DuplicateKeyId {
                key_id: "k1".into()
            }
        );
        assert_eq!(
            SecretSet::new(vec![Secret::new("k1", "")]).unwrap_err(),
            CredentialError::EmptySecret {
                key_id: "k1".into()
            }
        );
        let s = set(&[("a", "1"), ("b", "2")]);
        assert_eq!(
            s.iter().map(|x| x.key_id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(s.get("b").is_some());
        assert!(s.get("c").is_none());
    }

    #[test]
    fn mint_rejects_unusable_input() {
        let s = set(&[("k1", "north")]);
        assert!(matches!(
            mint(&s, "", NOW, 60),
            Err(CredentialError::BadSession { .. })
        ));
        assert!(matches!(
            mint(&s, "a b", NOW, 60),
            Err(CredentialError::BadSession { .. })
        ));
        assert!(matches!(
            mint(&s, "é", NOW, 60),
            Err(CredentialError::BadSession { .. })
        ));
        assert!(matches!(
            mint(&s, &"x".repeat(MAX_USERNAME_LEN), NOW, 60),
            Err(CredentialError::BadSession { .. })
        ));
        assert_eq!(mint(&s, "x", NOW, 0).unwrap_err(), CredentialError::BadTtl);
        assert_eq!(
            mint(&s, "x", u64::MAX, 1).unwrap_err(),
            CredentialError::BadTtl
        );
    }

    #[test]
    fn debug_never_prints_secrets() {
        let s = set(&[("k1", "hunter2-secret")]);
        let c = mint(&s, "sess", NOW, 60).unwrap();
        let v = verify_username(&s, &c.username, NOW, None).unwrap();
        for text in [
            format!("{s:?}"),
            format!("{:?}", s.current()),
            format!("{c:?}"),
            format!("{v:?}"),
        ] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains(&c.password), "{text}");
        }
        assert!(format!("{c:?}").contains("sess"));
    }
}
