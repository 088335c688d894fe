//! Signalling-relay tickets: what admits a client to an edge's signalling relay (ARCHITECTURE
//! §4).
//!
//! The control plane signs a ticket when it answers `POST /v1/proxy`; the client presents it to
//! the edge's WebSocket/TCP relay; the edge verifies it with the ticket keys it got in its
//! heartbeat answer, without asking anyone. A ticket binds the App ID, the session, the exact
//! upstreams the relay may connect to for this client, and an expiry.
//!
//! # Wire format
//!
//! ```text
//! ticket  = "v1." key_id "." b64(payload) "." b64(mac)
//! mac     = HMAC-SHA256(secret[key_id], "v1." key_id "." b64(payload))
//! b64     = base64url without padding (RFC 4648 §5), so a ticket fits in a URL query
//! ```
//!
//! The MAC covers the version and the key id as well as the payload, so neither can be swapped.
//! Key ids never contain `:` but may contain `.`; base64url never does, so a ticket splits at
//! its **last** two dots.
//!
//! # Payload encoding
//!
//! A canonical, length-prefixed text encoding (no serde), each item ending in `\n`:
//!
//! ```text
//! payload  = str(app_id) str(session) num(expires_at) num(n) str(upstream_1) .. str(upstream_n)
//! str(s)   = num-digits(len(s) in bytes) ":" s "\n"
//! num(x)   = decimal digits of x, no sign, no leading zeros (except "0") "\n"
//! ```
//!
//! For example `{app_id: "app1", session: "s-9", expires_at: 1700000600, upstreams:
//! ["rtn.example:443"]}` encodes as `"4:app1\n3:s-9\n1700000600\n1\n15:rtn.example:443\n"`.
//! Because every string is length-prefixed, the encoding is injective for *any* field contents
//! (a `\n` or `:` inside a session cannot shift an upstream into place), so [`sign_ticket`]
//! cannot fail. The verifier is strict: non-canonical numbers, lengths that do not match,
//! invalid UTF-8 or trailing bytes are [`TicketError::Malformed`] even under a valid MAC.
//!
//! # Verification order
//!
//! Size cap, shape, key id, MAC (constant-time), payload, expiry. The MAC is checked before the
//! payload is even decoded, so a forged ticket is never reported as expired (nor as anything
//! that depends on its claims), and the parser only ever sees bytes a key holder produced.
//!
//! Nothing here reads a clock: `now` is an argument (unix seconds).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::SecretSet;

/// Longest ticket [`verify_ticket`] looks at, in bytes. Larger input is
/// [`TicketError::Malformed`] before any work is done. [`sign_ticket`] does not enforce it:
/// keep claims small (a handful of upstreams) or the edge will refuse the ticket.
pub const MAX_TICKET_LEN: usize = 4096;

const VERSION_PREFIX: &str = "v1.";
const MAC_LEN: usize = 32;

/// What a ticket states. All of it is covered by the MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketClaims {
    /// The App ID the session belongs to (for logs and per-App accounting on the edge).
    pub app_id: String,
    /// The control plane's session id (the same opaque session as in TURN usernames).
    pub session: String,
    /// Exact `"host:port"` strings the relay may connect to for this ticket (IPv6 as
    /// `"[addr]:port"`). Matching is exact string equality: normalise before signing and before
    /// asking [`TicketClaims::allows_upstream`].
    pub upstreams: Vec<String>,
    /// Unix seconds; the ticket is valid while `now < expires_at`.
    pub expires_at: u64,
}

impl TicketClaims {
    /// Whether `host_port` is one of [`TicketClaims::upstreams`] (exact match).
    pub fn allows_upstream(&self, host_port: &str) -> bool {
        self.upstreams.iter().any(|u| u == host_port)
    }
}

/// Why a ticket was refused. None of the variants carry secret material or attacker-chosen
/// text, so `Display` is safe to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not a `v1` ticket of the documented shape, too long, bad base64, or a payload that does
    /// not decode.
    #[error("malformed ticket")]
    Malformed,
    /// The key id is not in the key set (never existed, or rotated out).
    #[error("ticket signed with an unknown key id")]
    UnknownKeyId,
    /// The MAC does not match: forged or altered.
    #[error("ticket signature does not match")]
    BadSignature,
    /// Genuine but past its expiry (valid while `now < expires_at`).
    #[error("ticket expired at {expired_at} (unix seconds)")]
    Expired {
        /// The expiry the ticket states.
        expired_at: u64,
    },
}

/// Signs `claims` with the **current** key of `keys` (see [`SecretSet::current`]). Never fails;
/// see [`MAX_TICKET_LEN`] for the size the verifier accepts.
pub fn sign_ticket(keys: &SecretSet, claims: &TicketClaims) -> String {
    let key = keys.current();
    let payload_b64 = URL_SAFE_NO_PAD.encode(encode_payload(claims));
    let signed = format!("{VERSION_PREFIX}{}.{payload_b64}", key.key_id);
    let mac = URL_SAFE_NO_PAD.encode(mac(&key.secret, &signed));
    format!("{signed}.{mac}")
}

/// Verifies `ticket` against `keys` at time `now` (unix seconds) and returns its claims.
///
/// Any live key verifies, not only the current one, so tickets survive a rotation until their
/// key is dropped from the set. The order of checks is in the module docs; the MAC comparison
/// is constant-time.
pub fn verify_ticket(
    keys: &SecretSet,
    ticket: &str,
    now: u64,
) -> Result<TicketClaims, TicketError> {
    if ticket.len() > MAX_TICKET_LEN {
        return Err(TicketError::Malformed);
    }
    let rest = ticket
        .strip_prefix(VERSION_PREFIX)
        .ok_or(TicketError::Malformed)?;
    let (signed_rest, mac_b64) = rest.rsplit_once('.').ok_or(TicketError::Malformed)?;
    let (key_id, payload_b64) = signed_rest.rsplit_once('.').ok_or(TicketError::Malformed)?;
    if key_id.is_empty() || payload_b64.is_empty() || mac_b64.is_empty() {
        return Err(TicketError::Malformed);
    }
    let key = keys.get(key_id).ok_or(TicketError::UnknownKeyId)?;
    let presented = URL_SAFE_NO_PAD
        .decode(mac_b64)
        .map_err(|_| TicketError::Malformed)?;
    if presented.len() != MAC_LEN {
        return Err(TicketError::Malformed);
    }
    // `ticket` minus ".<mac>": exactly the bytes the signer MAC'd.
    let signed = &ticket[..ticket.len() - mac_b64.len() - 1];
    let expected = mac(&key.secret, signed);
    if !bool::from(expected.as_slice().ct_eq(&presented)) {
        return Err(TicketError::BadSignature);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| TicketError::Malformed)?;
    let claims = decode_payload(&payload).ok_or(TicketError::Malformed)?;
    if now >= claims.expires_at {
        return Err(TicketError::Expired {
            expired_at: claims.expires_at,
        });
    }
    Ok(claims)
}

fn mac(secret: &[u8], signed: &str) -> [u8; MAC_LEN] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(signed.as_bytes());
    mac.finalize().into_bytes().into()
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(s.as_bytes());
    out.push(b'\n');
}

fn push_num(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(n.to_string().as_bytes());
    out.push(b'\n');
}

fn encode_payload(c: &TicketClaims) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        64 + c.app_id.len()
            + c.session.len()
            + c.upstreams.iter().map(|u| u.len() + 8).sum::<usize>(),
    );
    push_str(&mut out, &c.app_id);
    push_str(&mut out, &c.session);
    push_num(&mut out, c.expires_at);
    push_num(&mut out, c.upstreams.len() as u64);
    for u in &c.upstreams {
        push_str(&mut out, u);
    }
    out
}

/// A strict reader for the payload encoding; every method returns `None` on anything
/// non-canonical.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Canonical decimal digits up to (and consuming) `end`.
    fn num_until(&mut self, end: u8) -> Option<u64> {
        let pos = self.buf.iter().position(|&b| b == end)?;
        let digits = &self.buf[..pos];
        if digits.is_empty()
            || !digits.iter().all(u8::is_ascii_digit)
            || (digits.len() > 1 && digits[0] == b'0')
        {
            return None;
        }
        // All ASCII digits, so this is valid UTF-8; parse fails only on u64 overflow.
        let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
        self.buf = &self.buf[pos + 1..];
        Some(n)
    }

    fn num(&mut self) -> Option<u64> {
        self.num_until(b'\n')
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.num_until(b':')?).ok()?;
        if len >= self.buf.len() || self.buf[len] != b'\n' {
            return None;
        }
        let s = std::str::from_utf8(&self.buf[..len]).ok()?;
        self.buf = &self.buf[len + 1..];
        Some(s)
    }
}

fn decode_payload(payload: &[u8]) -> Option<TicketClaims> {
    let mut r = Reader { buf: payload };
    let app_id = r.str()?.to_owned();
    let session = r.str()?.to_owned();
    let expires_at = r.num()?;
    let n = r.num()?;
    // Each upstream takes at least 3 bytes ("0:\n"), which bounds the allocation below.
    if n > (r.buf.len() / 3) as u64 {
        return None;
    }
    let mut upstreams = Vec::with_capacity(n as usize);
    for _ in 0..n {
        upstreams.push(r.str()?.to_owned());
    }
    if !r.buf.is_empty() {
        return None;
    }
    Some(TicketClaims {
        app_id,
        session,
        upstreams,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;
    use crate::Secret;

    const NOW: u64 = 1_700_000_000;

    fn keys(list: &[(&str, &str)]) -> SecretSet {
        SecretSet::new(
            list.iter()
                .map(|(k, s)| Secret::new(*k, s.as_bytes()))
                .collect(),
        )
        .unwrap()
    }

    fn claims() -> TicketClaims {
        TicketClaims {
            app_id: "app1".into(),
            session: "s-9".into(),
            upstreams: vec!["rtn.example:443".into(), "[2001:db8::1]:8443".into()],
            expires_at: NOW + 300,
        }
    }

    /// A ticket over an arbitrary payload, MAC'd correctly: lets tests reach the payload parser.
    fn sign_raw(keys: &SecretSet, payload: &[u8]) -> String {
        let k = keys.current();
        let signed = format!("v1.{}.{}", k.key_id, URL_SAFE_NO_PAD.encode(payload));
        format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(mac(&k.secret, &signed))
        )
    }

    #[test]
    fn documented_payload_example() {
        let c = TicketClaims {
            app_id: "app1".into(),
            session: "s-9".into(),
            upstreams: vec!["rtn.example:443".into()],
            expires_at: 1_700_000_600,
        };
        assert_eq!(
            encode_payload(&c),
            b"4:app1\n3:s-9\n1700000600\n1\n15:rtn.example:443\n"
        );
    }

    #[test]
    fn known_answer() {
        // python3: p = base64.urlsafe_b64encode(payload).rstrip(b"=");
        //   m = hmac.new(b"north", b"v1.k1." + p, hashlib.sha256).digest()
        let k = keys(&[("k1", "north")]);
        let c = TicketClaims {
            app_id: "app1".into(),
            session: "s-9".into(),
            upstreams: vec!["rtn.example:443".into()],
            expires_at: 1_700_000_600,
        };
        let t = sign_ticket(&k, &c);
        assert_eq!(
            t,
            "v1.k1.NDphcHAxCjM6cy05CjE3MDAwMDA2MDAKMQoxNTpydG4uZXhhbXBsZTo0NDMK.\
             gHp4V81rNemiWqshCiqCNuqt56iISE2q6eIi_uFTbbE"
        );
    }

    #[test]
    fn round_trip() {
        let k = keys(&[("k1", "north")]);
        let c = claims();
        let t = sign_ticket(&k, &c);
        assert!(t.starts_with("v1.k1."));
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        let v = verify_ticket(&k, &t, NOW).unwrap();
        assert_eq!(v, c);
        assert!(v.allows_upstream("rtn.example:443"));
        assert!(v.allows_upstream("[2001:db8::1]:8443"));
        assert!(!v.allows_upstream("rtn.example:444"));
        assert!(!v.allows_upstream("evil.example:443"));

        // Fields are arbitrary bytes as far as the encoding goes, including separators.
        let odd = TicketClaims {
            app_id: "a:b\n3:x\n".into(),
            session: String::new(),
            upstreams: vec![],
            expires_at: u64::MAX,
        };
        assert_eq!(verify_ticket(&k, &sign_ticket(&k, &odd), NOW).unwrap(), odd);
        let unicode = TicketClaims {
            app_id: "应用".into(),
            session: "séance".into(),
            upstreams: vec!["ß.example:1".into(), String::new()],
            expires_at: 1,
        };
        assert_eq!(
            verify_ticket(&k, &sign_ticket(&k, &unicode), 0).unwrap(),
            unicode
        );
    }

    #[test]
    fn tampering_any_claim_breaks_the_signature() {
        let k = keys(&[("k1", "north")]);
        let base = claims();
        let t = sign_ticket(&k, &base);
        let mac = t.rsplit_once('.').unwrap().1;
        let variants: [fn(&mut TicketClaims); 8] = [
            |c| c.app_id = "app2".into(),
            |c| c.session = "s-8".into(),
            |c| c.expires_at += 1,
            |c| c.expires_at = u64::MAX,
            |c| c.upstreams[0] = "evil.example:443".into(),
            |c| c.upstreams.push("evil.example:443".into()),
            |c| {
                c.upstreams.pop();
            },
            |c| c.upstreams.reverse(),
        ];
        for change in variants {
            let mut c = base.clone();
            change(&mut c);
            // Same MAC, altered payload: what an attacker who edits a ticket produces.
            let payload = URL_SAFE_NO_PAD.encode(encode_payload(&c));
            let forged = format!("v1.k1.{payload}.{mac}");
            assert_eq!(
                verify_ticket(&k, &forged, NOW),
                Err(TicketError::BadSignature),
                "{c:?}"
            );
        }
        // Altered MAC.
        let mut bytes = URL_SAFE_NO_PAD.decode(mac).unwrap();
        bytes[0] ^= 1;
        let forged = format!(
            "{}.{}",
            t.rsplit_once('.').unwrap().0,
            URL_SAFE_NO_PAD.encode(&bytes)
        );
        assert_eq!(
            verify_ticket(&k, &forged, NOW),
            Err(TicketError::BadSignature)
        );
        // Swapping the key id to another live key is caught: the key id is under the MAC.
        let two = keys(&[("k1", "north"), ("k2", "north")]);
        let swapped = t.replacen("v1.k1.", "v1.k2.", 1);
        assert_eq!(
            verify_ticket(&two, &swapped, NOW),
            Err(TicketError::BadSignature)
        );
        // An expired forged ticket reports the forgery, not the expiry.
        let mut old = base.clone();
        old.expires_at = NOW - 1000;
        let payload = URL_SAFE_NO_PAD.encode(encode_payload(&old));
        assert_eq!(
            verify_ticket(&k, &format!("v1.k1.{payload}.{mac}"), NOW),
            Err(TicketError::BadSignature)
        );
    }

    #[test]
    fn wrong_key() {
        let signer = keys(&[("k1", "north")]);
        let t = sign_ticket(&signer, &claims());
        let other = keys(&[("k1", "south")]);
        assert_eq!(
            verify_ticket(&other, &t, NOW),
            Err(TicketError::BadSignature)
        );
        let unrelated = keys(&[("k9", "north")]);
        assert_eq!(
            verify_ticket(&unrelated, &t, NOW),
            Err(TicketError::UnknownKeyId)
        );
    }

    #[test]
    fn rotation() {
        let old = keys(&[("k1", "north")]);
        let t1 = sign_ticket(&old, &claims());
        let rotated = keys(&[("k2", "south"), ("k1", "north")]);
        assert_eq!(verify_ticket(&rotated, &t1, NOW).unwrap(), claims());
        let t2 = sign_ticket(&rotated, &claims());
        assert!(t2.starts_with("v1.k2."));
        assert_eq!(verify_ticket(&rotated, &t2, NOW).unwrap(), claims());
        let retired = keys(&[("k2", "south")]);
        assert_eq!(
            verify_ticket(&retired, &t1, NOW),
            Err(TicketError::UnknownKeyId)
        );
        assert!(verify_ticket(&retired, &t2, NOW).is_ok());
        // Key ids may contain dots; the ticket still splits correctly.
        let dotted = keys(&[("2024.06.k", "east")]);
        let t = sign_ticket(&dotted, &claims());
        assert!(t.starts_with("v1.2024.06.k."));
        assert_eq!(verify_ticket(&dotted, &t, NOW).unwrap(), claims());
    }

    #[test]
    fn expiry_boundary() {
        let k = keys(&[("k1", "north")]);
        let t = sign_ticket(&k, &claims());
        let exp = claims().expires_at;
        assert!(verify_ticket(&k, &t, 0).is_ok());
        assert!(verify_ticket(&k, &t, exp - 1).is_ok());
        assert_eq!(
            verify_ticket(&k, &t, exp),
            Err(TicketError::Expired { expired_at: exp })
        );
        assert_eq!(
            verify_ticket(&k, &t, u64::MAX),
            Err(TicketError::Expired { expired_at: exp })
        );
    }

    #[test]
    fn size_cap() {
        let k = keys(&[("k1", "north")]);
        let mut c = claims();
        c.upstreams = (0..200).map(|i| format!("host{i}.example:443")).collect();
        let t = sign_ticket(&k, &c);
        assert!(t.len() > MAX_TICKET_LEN);
        assert_eq!(verify_ticket(&k, &t, NOW), Err(TicketError::Malformed));
        c.upstreams.truncate(20);
        let t = sign_ticket(&k, &c);
        assert!(t.len() <= MAX_TICKET_LEN);
        assert_eq!(verify_ticket(&k, &t, NOW).unwrap(), c);
    }

    #[test]
    fn malformed_shapes() {
        let k = keys(&[("k1", "north")]);
        let t = sign_ticket(&k, &claims());
        let (signed, mac) = t.rsplit_once('.').unwrap();
        let cases: Vec<String> = vec![
            String::new(),
            ".".into(),
            "v1".into(),
            "v1.".into(),
            "v1..".into(),
            "v1...".into(),
            "v1.k1".into(),
            "v1.k1.abc".into(),
            "v1.k1..".into(),
            format!("v1..{}", &t[6..]),
            format!("v2{}", &t[2..]),
            format!("V1{}", &t[2..]),
            format!(" {t}"),
            format!("{signed}."),
            format!("{signed}.{mac}="),
            format!("{signed}.{mac}A"),
            format!("{signed}.{}", &mac[1..]),
            format!("{signed}.{mac}+"),
        ];
        for c in &cases {
            let e = verify_ticket(&k, c, NOW).unwrap_err();
            assert_eq!(e, TicketError::Malformed, "{c:?}");
        }
        // Correctly MAC'd but non-canonical or broken payloads.
        let good = encode_payload(&claims());
        let mut bad_payloads: Vec<Vec<u8>> = vec![
            vec![],
            b"\n".to_vec(),
            b"4:app1\n3:s-9\n".to_vec(),
            b"4:app1\n3:s-9\n01\n0\n".to_vec(),
            b"4:app1\n3:s-9\n+1\n0\n".to_vec(),
            b"4:app1\n3:s-9\n1\n00\n".to_vec(),
            b"04:app1\n3:s-9\n1\n0\n".to_vec(),
            b"5:app1\n3:s-9\n1\n0\n".to_vec(),
            b"3:app1\n3:s-9\n1\n0\n".to_vec(),
            b"4:app1\n3:s-9\n18446744073709551616\n0\n".to_vec(),
            b"4:app1\n3:s-9\n1\n1\n".to_vec(),
            b"4:app1\n3:s-9\n1\n99999999999999\n0:\n".to_vec(),
            b"4:app1\n3:s-9\n1\n0\nX".to_vec(),
            b"4:a\xffp1\n3:s-9\n1\n0\n".to_vec(),
            b"18446744073709551615:x\n".to_vec(),
        ];
        let mut trailing = good.clone();
        trailing.push(b'\n');
        bad_payloads.push(trailing);
        bad_payloads.push(good[..good.len() - 1].to_vec());
        for p in &bad_payloads {
            assert_eq!(
                verify_ticket(&k, &sign_raw(&k, p), 0),
                Err(TicketError::Malformed),
                "{:?}",
                String::from_utf8_lossy(p)
            );
        }
        assert_eq!(
            verify_ticket(&k, &sign_raw(&k, &good), NOW).unwrap(),
            claims()
        );
    }

    #[test]
    fn fuzz_never_panics() {
        let k = keys(&[("k1", "north"), ("k.2", "south")]);
        let t = sign_ticket(&k, &claims());
        let alphabet: &[u8] = b"v1.k2-_:=+/\n\0AZaz09\xff";
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            // Random bytes from a biased alphabet, as lossy UTF-8.
            let len = rng.below(120);
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
            assert!(verify_ticket(&k, &s, NOW).is_err());
            let s2 = format!("v1.k1.{s}");
            assert!(verify_ticket(&k, &s2, NOW).is_err());

            // Mutations of a genuine ticket: any change must be refused.
            let m = rng.mutate(&t, alphabet);
            if m != t {
                assert!(verify_ticket(&k, &m, NOW).is_err(), "{m}");
            }

            // Random payloads under a valid MAC: the parser must never panic.
            let plen = rng.below(60);
            let payload: Vec<u8> = (0..plen)
                .map(|_| b"0123456789:\n\nab\xff"[rng.below(16)])
                .collect();
            let _ = verify_ticket(&k, &sign_raw(&k, &payload), 0);
        }
    }
}
