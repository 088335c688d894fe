//! Attribute type numbers and the value formats that need more than a byte copy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{DecodeError, MAGIC_COOKIE};

/// Attribute type numbers (RFC 8489 §18.3, RFC 8656 §18, RFC 6062 §6.2).
pub mod attr {
    #![allow(missing_docs)]
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    pub const LIFETIME: u16 = 0x000D;
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    pub const DATA: u16 = 0x0013;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    pub const EVEN_PORT: u16 = 0x0018;
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    pub const DONT_FRAGMENT: u16 = 0x001A;
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    pub const PASSWORD_ALGORITHM: u16 = 0x001D;
    pub const USERHASH: u16 = 0x001E;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    pub const PRIORITY: u16 = 0x0024;
    pub const USE_CANDIDATE: u16 = 0x0025;
    pub const CONNECTION_ID: u16 = 0x002A;
    pub const ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
    pub const ADDRESS_ERROR_CODE: u16 = 0x8001;
    pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
    pub const ALTERNATE_DOMAIN: u16 = 0x8003;
    pub const ICMP: u16 = 0x8004;
    pub const SOFTWARE: u16 = 0x8022;
    pub const ALTERNATE_SERVER: u16 = 0x8023;
    pub const TRANSACTION_TRANSMIT_COUNTER: u16 = 0x8025;
    pub const CACHE_TIMEOUT: u16 = 0x8027;
    pub const FINGERPRINT: u16 = 0x8028;
    pub const ICE_CONTROLLED: u16 = 0x8029;
    pub const ICE_CONTROLLING: u16 = 0x802A;
    pub const RESPONSE_ORIGIN: u16 = 0x802B;
    pub const OTHER_ADDRESS: u16 = 0x802C;
}

/// Length of a LIFETIME value.
pub const LIFETIME_LEN: usize = 4;

/// Types below 0x8000 must be understood by the receiver, or a request is refused with 420.
pub fn is_comprehension_required(t: u16) -> bool {
    t < 0x8000
}

/// Whether this implementation knows the attribute type. A request carrying a
/// comprehension-required type for which this is false is answered 420 (RFC 8489 §7.3.1).
pub fn is_known(t: u16) -> bool {
    use attr::*;
    matches!(
        t,
        MAPPED_ADDRESS
            | USERNAME
            | MESSAGE_INTEGRITY
            | ERROR_CODE
            | UNKNOWN_ATTRIBUTES
            | CHANNEL_NUMBER
            | LIFETIME
            | XOR_PEER_ADDRESS
            | DATA
            | REALM
            | NONCE
            | XOR_RELAYED_ADDRESS
            | REQUESTED_ADDRESS_FAMILY
            | EVEN_PORT
            | REQUESTED_TRANSPORT
            | DONT_FRAGMENT
            | MESSAGE_INTEGRITY_SHA256
            | PASSWORD_ALGORITHM
            | USERHASH
            | XOR_MAPPED_ADDRESS
            | RESERVATION_TOKEN
            | PRIORITY
            | USE_CANDIDATE
            | CONNECTION_ID
    ) || !is_comprehension_required(t)
}

/// An address family as carried in address attributes and REQUESTED-ADDRESS-FAMILY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// 0x01
    V4,
    /// 0x02
    V6,
}

impl Family {
    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Family::V4 => 1,
            Family::V6 => 2,
        }
    }

    /// Parses a wire value.
    pub fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            1 => Ok(Family::V4),
            2 => Ok(Family::V6),
            v => Err(DecodeError::BadAddressFamily(v)),
        }
    }

    /// The family of an address.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// Decodes an XOR-MAPPED/PEER/RELAYED-ADDRESS value (RFC 8489 §14.2).
pub fn decode_xor_address(
    attr_type: u16,
    value: &[u8],
    txid: &[u8; 12],
) -> Result<SocketAddr, DecodeError> {
    if value.len() < 4 {
        return Err(DecodeError::BadAttributeLength {
            attr: attr_type,
            len: value.len(),
        });
    }
    let family = Family::from_u8(value[1])?;
    let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    let mask = xor_mask(txid);
    let ip = match family {
        Family::V4 if value.len() == 8 => {
            let mut a = [0u8; 4];
            for i in 0..4 {
                a[i] = value[4 + i] ^ mask[i];
            }
            IpAddr::V4(Ipv4Addr::from(a))
        }
        Family::V6 if value.len() == 20 => {
            let mut a = [0u8; 16];
            for i in 0..16 {
                a[i] = value[4 + i] ^ mask[i];
            }
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => {
            return Err(DecodeError::BadAttributeLength {
                attr: attr_type,
                len: value.len(),
            })
        }
    };
    Ok(SocketAddr::new(ip, port))
}

/// Writes an XOR address value (8 or 20 bytes) into `out` and returns its length.
pub fn encode_xor_address(addr: SocketAddr, txid: &[u8; 12], out: &mut [u8; 20]) -> usize {
    let mask = xor_mask(txid);
    out[0] = 0;
    out[1] = Family::of(addr.ip()).to_u8();
    out[2..4].copy_from_slice(&(addr.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes());
    match addr.ip() {
        IpAddr::V4(v4) => {
            for (i, b) in v4.octets().iter().enumerate() {
                out[4 + i] = b ^ mask[i];
            }
            8
        }
        IpAddr::V6(v6) => {
            for (i, b) in v6.octets().iter().enumerate() {
                out[4 + i] = b ^ mask[i];
            }
            20
        }
    }
}

fn xor_mask(txid: &[u8; 12]) -> [u8; 16] {
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    mask[4..].copy_from_slice(txid);
    mask
}

/// An ERROR-CODE value (RFC 8489 §14.8): a code 300..=699 and a reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    /// The numeric code, for example 401.
    pub code: u16,
    /// The reason phrase (UTF-8, at most 763 bytes).
    pub reason: &'a str,
}

impl<'a> ErrorCode<'a> {
    /// Parses an ERROR-CODE value.
    pub fn decode(value: &'a [u8]) -> Result<Self, DecodeError> {
        if value.len() < 4 || value.len() > 4 + 763 {
            return Err(DecodeError::BadAttributeLength {
                attr: attr::ERROR_CODE,
                len: value.len(),
            });
        }
        let class = u16::from(value[2] & 0x07);
        let number = u16::from(value[3]);
        if !(3..=6).contains(&class) || number > 99 {
            return Err(DecodeError::BadAttributeValue(attr::ERROR_CODE));
        }
        let reason = std::str::from_utf8(&value[4..])
            .map_err(|_| DecodeError::BadAttributeValue(attr::ERROR_CODE))?;
        Ok(Self {
            code: class * 100 + number,
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_address_round_trip_v4_v6() {
        let txid = [7u8; 12];
        for addr in [
            "192.0.2.1:32853",
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut out = [0u8; 20];
            let n = encode_xor_address(addr, &txid, &mut out);
            assert_eq!(
                decode_xor_address(attr::XOR_PEER_ADDRESS, &out[..n], &txid),
                Ok(addr)
            );
        }
    }

    #[test]
    fn xor_address_rejects_bad_family_and_length() {
        let txid = [0u8; 12];
        assert_eq!(
            decode_xor_address(1, &[0, 3, 0, 0, 0, 0, 0, 0], &txid),
            Err(DecodeError::BadAddressFamily(3))
        );
        assert!(decode_xor_address(1, &[0, 1, 0, 0, 0, 0, 0], &txid).is_err());
        assert!(decode_xor_address(1, &[0, 2, 0, 0, 0, 0, 0, 0], &txid).is_err());
    }

    #[test]
    fn error_code_checks_class_and_number() {
        let v = [0, 0, 4, 1, b'U', b'n'];
        assert_eq!(ErrorCode::decode(&v).unwrap().code, 401);
        assert!(ErrorCode::decode(&[0, 0, 2, 1]).is_err());
        assert!(ErrorCode::decode(&[0, 0, 4, 100]).is_err());
        assert!(ErrorCode::decode(&[0, 0, 4, 1, 0xff]).is_err());
    }
}
