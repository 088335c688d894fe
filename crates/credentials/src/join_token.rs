//! Join tokens: what an app server gives its client so the control plane will answer
//! `POST /v1/proxy` for it.
//!
//! The app server holds the App ID's *certificate* (a secret the control plane issued when the
//! App ID was created) and signs, per client, the channel and uid it may join and an expiry.
//! The client sends the token together with the App ID, channel and uid; the control plane
//! recomputes the MAC with the certificate it stores.
//!
//! # Format
//!
//! ```text
//! token = "v1:" app_id ":" expiry ":" b64(mac)
//! mac   = HMAC-SHA256(certificate, "v1:" app_id ":" channel ":" uid ":" expiry)
//! b64   = base64url without padding (RFC 4648 §5)
//! ```
//!
//! `expiry` is unix seconds in canonical decimal (no sign, no leading zeros). The token binds
//! the channel and uid without repeating them: the request carries them, and a token minted
//! for one channel or uid does not verify for another.
//!
//! # Field rules
//!
//! `app_id`, `channel` and `uid` must be non-empty and must not contain `:`; that is what
//! makes the MAC input unambiguous (`"a:b" + "c"` and `"a" + "b:c"` would otherwise sign the
//! same bytes). [`verify_join_token`] reports a violation as [`JoinTokenError::Malformed`];
//! [`mint_join_token`] does not check, so a token minted from such fields never verifies.
//!
//! # Verification order
//!
//! Size cap and shape, then the App ID, then the MAC (constant-time), and only then the
//! expiry: a forged or altered token is never reported as expired, so `TOKEN_EXPIRED` always
//! means "a genuine token, get a fresh one". The control plane maps
//! `Malformed`/`WrongApp`/`BadSignature` to `INVALID_TOKEN` and `Expired` to `TOKEN_EXPIRED`.
//!
//! Nothing here reads a clock: `now` is an argument (unix seconds).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Longest token [`verify_join_token`] looks at, in bytes; longer input is
/// [`JoinTokenError::Malformed`] before any work is done.
pub const MAX_JOIN_TOKEN_LEN: usize = 1024;

const MAC_LEN: usize = 32;

/// Why a join token was refused. No variant carries secret material or attacker-chosen text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinTokenError {
    /// Not a `v1` token of the documented shape (or too long, or bad base64), or the App ID,
    /// channel or uid it is checked against is empty or contains `:`.
    #[error("malformed join token")]
    Malformed,
    /// The token was minted for a different App ID than the request names.
    #[error("join token belongs to another App ID")]
    WrongApp,
    /// The MAC does not match: forged, altered, minted for another channel or uid, or with
    /// another certificate (an empty certificate never verifies anything).
    #[error("join token signature does not match")]
    BadSignature,
    /// Genuine but past its expiry (valid while `now < expires_at`).
    #[error("join token expired at {expired_at} (unix seconds)")]
    Expired {
        /// The expiry the token states.
        expired_at: u64,
    },
}

/// Mints a join token for `uid` in `channel` of `app_id`, valid while `now < expires_at`.
/// See the module docs for the field rules (non-empty, no `:`), which are not checked here.
pub fn mint_join_token(
    app_id: &str,
    certificate: &[u8],
    channel: &str,
    uid: &str,
    expires_at: u64,
) -> String {
    let expiry = expires_at.to_string();
    let mac = mac(certificate, app_id, channel, uid, &expiry);
    format!("v1:{app_id}:{expiry}:{}", URL_SAFE_NO_PAD.encode(mac))
}

/// Verifies `token` for a request naming `app_id`, `channel` and `uid`, against the App ID's
/// `certificate`, at time `now` (unix seconds). Returns the token's expiry.
pub fn verify_join_token(
    token: &str,
    app_id: &str,
    certificate: &[u8],
    channel: &str,
    uid: &str,
    now: u64,
) -> Result<u64, JoinTokenError> {
    if token.len() > MAX_JOIN_TOKEN_LEN || ![app_id, channel, uid].iter().all(|f| valid_field(f)) {
        return Err(JoinTokenError::Malformed);
    }
    let mut parts = token.splitn(4, ':');
    let (Some(version), Some(token_app), Some(expiry), Some(mac_b64)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JoinTokenError::Malformed);
    };
    if version != "v1" || token_app.is_empty() {
        return Err(JoinTokenError::Malformed);
    }
    let expires_at = parse_canonical_u64(expiry).ok_or(JoinTokenError::Malformed)?;
    // A ':' in the MAC part is not base64url, so the decode refuses it.
    let presented = URL_SAFE_NO_PAD
        .decode(mac_b64)
        .map_err(|_| JoinTokenError::Malformed)?;
    if presented.len() != MAC_LEN {
        return Err(JoinTokenError::Malformed);
    }
    if token_app != app_id {
        return Err(JoinTokenError::WrongApp);
    }
    if certificate.is_empty() {
        return Err(JoinTokenError::BadSignature);
    }
    let expected = mac(certificate, app_id, channel, uid, expiry);
    if !bool::from(expected.as_slice().ct_eq(&presented)) {
        return Err(JoinTokenError::BadSignature);
    }
    if now >= expires_at {
        return Err(JoinTokenError::Expired {
            expired_at: expires_at,
        });
    }
    Ok(expires_at)
}

fn valid_field(f: &str) -> bool {
    !f.is_empty() && !f.contains(':')
}

fn parse_canonical_u64(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    s.parse().ok()
}

fn mac(certificate: &[u8], app_id: &str, channel: &str, uid: &str, expiry: &str) -> [u8; MAC_LEN] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(certificate).expect("HMAC takes any key length");
    for (i, part) in ["v1", app_id, channel, uid, expiry].iter().enumerate() {
        if i > 0 {
            mac.update(b":");
        }
        mac.update(part.as_bytes());
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    const NOW: u64 = 1_700_000_000;
    const CERT: &[u8] = b"5f1c0a7e0d8b4e2f9c3a6b1d7e8f9a0b";

    fn mint(exp: u64) -> String {
        mint_join_token("app1", CERT, "room-7", "42", exp)
    }

    fn verify(token: &str, now: u64) -> Result<u64, JoinTokenError> {
        verify_join_token(token, "app1", CERT, "room-7", "42", now)
    }

    #[test]
    fn known_answer() {
        // python3: m = hmac.new(b"north", b"v1:app1:room-7:42:1700000600", hashlib.sha256)
        //   "v1:app1:1700000600:" + base64.urlsafe_b64encode(m.digest()).rstrip(b"=")
        assert_eq!(
            mint_join_token("app1", b"north", "room-7", "42", 1_700_000_600),
            "v1:app1:1700000600:7tzlIrjLkMYVg_gHSfg2VuWEnmZTMcnDHYxSpEjjZKI"
        );
    }

    #[test]
    fn round_trip() {
        let t = mint(NOW + 3600);
        assert!(t.starts_with("v1:app1:1700003600:"));
        assert_eq!(verify(&t, NOW), Ok(NOW + 3600));
        // Channel and uid may contain anything but ':'.
        let t = mint_join_token("a", CERT, "房间 #1", "user@example.com", 5);
        assert_eq!(
            verify_join_token(&t, "a", CERT, "房间 #1", "user@example.com", 4),
            Ok(5)
        );
    }

    #[test]
    fn tampering_each_field() {
        let t = mint(NOW + 3600);
        let mac = t.rsplit_once(':').unwrap().1;
        // The request names another channel or uid than the token was minted for.
        assert_eq!(
            verify_join_token(&t, "app1", CERT, "room-8", "42", NOW),
            Err(JoinTokenError::BadSignature)
        );
        assert_eq!(
            verify_join_token(&t, "app1", CERT, "room-7", "43", NOW),
            Err(JoinTokenError::BadSignature)
        );
        // The request names another App ID: WrongApp even with that App's certificate.
        assert_eq!(
            verify_join_token(&t, "app2", CERT, "room-7", "42", NOW),
            Err(JoinTokenError::WrongApp)
        );
        // Edited App ID inside the token (to match the request) breaks the MAC.
        let forged = format!("v1:app2:{}:{mac}", NOW + 3600);
        assert_eq!(
            verify_join_token(&forged, "app2", CERT, "room-7", "42", NOW),
            Err(JoinTokenError::BadSignature)
        );
        // Extended expiry.
        let forged = format!("v1:app1:{}:{mac}", NOW + 7200);
        assert_eq!(verify(&forged, NOW), Err(JoinTokenError::BadSignature));
        // Flipped MAC bit.
        let mut bytes = URL_SAFE_NO_PAD.decode(mac).unwrap();
        bytes[31] ^= 0x80;
        let forged = format!("v1:app1:{}:{}", NOW + 3600, URL_SAFE_NO_PAD.encode(&bytes));
        assert_eq!(verify(&forged, NOW), Err(JoinTokenError::BadSignature));
        // Splitting differently ("room:7" + "42" vs "room" + "7:42") is impossible: ':' is
        // refused in every field.
        assert_eq!(
            verify_join_token(&t, "app1", CERT, "room:7", "42", NOW),
            Err(JoinTokenError::Malformed)
        );
    }

    #[test]
    fn forged_expired_token_is_a_bad_signature_not_expired() {
        let t = mint(NOW + 10);
        let mac = t.rsplit_once(':').unwrap().1;
        let forged = format!("v1:app1:{}:{mac}", NOW - 10);
        assert_eq!(verify(&forged, NOW), Err(JoinTokenError::BadSignature));
        let wrong_cert = mint_join_token("app1", b"other", "room-7", "42", NOW - 10);
        assert_eq!(verify(&wrong_cert, NOW), Err(JoinTokenError::BadSignature));
        // The genuine expired one says Expired.
        let genuine = mint(NOW - 10);
        assert_eq!(
            verify(&genuine, NOW),
            Err(JoinTokenError::Expired {
                expired_at: NOW - 10
            })
        );
    }

    #[test]
    fn wrong_key_and_rotation() {
        let t = mint(NOW + 60);
        assert_eq!(
            verify_join_token(&t, "app1", b"another certificate", "room-7", "42", NOW),
            Err(JoinTokenError::BadSignature)
        );
        assert_eq!(
            verify_join_token(&t, "app1", b"", "room-7", "42", NOW),
            Err(JoinTokenError::BadSignature)
        );
        // An empty certificate never verifies, even a token "signed" with it.
        let empty = mint_join_token("app1", b"", "room-7", "42", NOW + 60);
        assert_eq!(
            verify_join_token(&empty, "app1", b"", "room-7", "42", NOW),
            Err(JoinTokenError::BadSignature)
        );
        // Certificate rotation is the caller's loop over the live certificates: a token from
        // the old certificate verifies against it while it is still kept.
        let old: &[u8] = b"old-cert";
        let new: &[u8] = b"new-cert";
        let t = mint_join_token("app1", old, "room-7", "42", NOW + 60);
        let live = [new, old];
        let ok = live
            .iter()
            .map(|c| verify_join_token(&t, "app1", c, "room-7", "42", NOW))
            .find(|r| *r != Err(JoinTokenError::BadSignature));
        assert_eq!(ok, Some(Ok(NOW + 60)));
        assert!(live[..1]
            .iter()
            .all(|c| verify_join_token(&t, "app1", c, "room-7", "42", NOW).is_err()));
    }

    #[test]
    fn expiry_boundary() {
        let t = mint(NOW + 60);
        assert_eq!(verify(&t, 0), Ok(NOW + 60));
        assert_eq!(verify(&t, NOW + 59), Ok(NOW + 60));
        assert_eq!(
            verify(&t, NOW + 60),
            Err(JoinTokenError::Expired {
                expired_at: NOW + 60
            })
        );
        assert!(matches!(
            verify(&t, u64::MAX),
            Err(JoinTokenError::Expired { .. })
        ));
        let zero = mint(0);
        assert!(zero.starts_with("v1:app1:0:"));
        assert_eq!(
            verify(&zero, 0),
            Err(JoinTokenError::Expired { expired_at: 0 })
        );
        let max = mint(u64::MAX);
        assert_eq!(verify(&max, u64::MAX - 1), Ok(u64::MAX));
    }

    #[test]
    fn malformed() {
        let t = mint(NOW + 60);
        let mac = t.rsplit_once(':').unwrap().1;
        let exp = NOW + 60;
        let cases: Vec<String> = vec![
            String::new(),
            "v1".into(),
            "v1:".into(),
            "v1:app1".into(),
            "v1:app1:1".into(),
            "v1:app1:1:".into(),
            ":::".into(),
            format!("v2:app1:{exp}:{mac}"),
            format!("V1:app1:{exp}:{mac}"),
            format!(" v1:app1:{exp}:{mac}"),
            format!("v1::{exp}:{mac}"),
            format!("v1:app1::{mac}"),
            format!("v1:app1:0{exp}:{mac}"),
            format!("v1:app1:+{exp}:{mac}"),
            format!("v1:app1:{exp} :{mac}"),
            "v1:app1:18446744073709551616:AAAA".into(),
            format!("v1:app1:{exp}:{mac}="),
            format!("v1:app1:{exp}:{mac}:"),
            format!("v1:app1:{exp}:{mac}A"),
            format!("v1:app1:{exp}:{}", &mac[2..]),
            format!("v1:app1:{exp}:+{}", &mac[1..]),
            format!("v1:app1:{exp}:{mac}\n"),
            format!("v1:app1:{exp}:{mac}{}", "A".repeat(MAX_JOIN_TOKEN_LEN)),
        ];
        for c in &cases {
            if c == &t {
                continue;
            }
            assert_eq!(verify(c, NOW), Err(JoinTokenError::Malformed), "{c:?}");
        }
        for (app, channel, uid) in [
            ("", "room-7", "42"),
            ("app1", "", "42"),
            ("app1", "room-7", ""),
            ("app:1", "room-7", "42"),
            ("app1", "room-7", "4:2"),
        ] {
            assert_eq!(
                verify_join_token(&t, app, CERT, channel, uid, NOW),
                Err(JoinTokenError::Malformed),
                "{app:?} {channel:?} {uid:?}"
            );
        }
    }

    #[test]
    fn fuzz_never_panics() {
        let t = mint(NOW + 60);
        let alphabet: &[u8] = b"v1:app1-_0123456789AZaz+/=\n\0\xff";
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        for _ in 0..20_000 {
            let len = rng.below(80);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.below(4) == 0 {
                        rng.next() as u8
                    } else {
                        alphabet[rng.below(alphabet.len())]
                    }
                })
                .collect();
            let s = String::from_utf8_lossy(&bytes);
            assert!(verify(&s, NOW).is_err());
            assert!(verify(&format!("v1:app1:{s}"), NOW).is_err());
            // Random request fields must not panic either.
            let _ = verify_join_token(&t, &s, CERT, &s, &s, NOW);

            let m = rng.mutate(&t, alphabet);
            if m != t {
                // Any change is refused, and never as "expired".
                let r = verify(&m, NOW);
                assert!(
                    matches!(
                        r,
                        Err(JoinTokenError::Malformed
                            | JoinTokenError::WrongApp
                            | JoinTokenError::BadSignature)
                    ),
                    "{m}: {r:?}"
                );
            }
        }
    }
}
