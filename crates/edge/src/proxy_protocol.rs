//! PROXY protocol v2 (the binary header a load balancer puts in front of a TCP connection to
//! say who the client really is). Only accepted when the operator enables it; then the address
//! it names is used for policy, limits and logs.
//!
//! Layout: 12-byte signature, version/command byte (0x20 LOCAL, 0x21 PROXY), family/transport
//! byte (0x11 TCP over IPv4, 0x21 TCP over IPv6, others allowed and ignored), 16-bit length,
//! then the addresses and optional TLVs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The fixed signature.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// Largest header accepted (16 fixed bytes + addresses + TLVs).
pub const MAX_HEADER: usize = 16 + 536;

/// Why a header is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The connection does not start with the v2 signature.
    #[error("no PROXY v2 signature")]
    NoSignature,
    /// Version nibble is not 2 or the command is unknown.
    #[error("unsupported PROXY version/command {0:#04x}")]
    BadVersion(u8),
    /// The length field is larger than allowed or too short for the family.
    #[error("bad PROXY header length {0}")]
    BadLength(usize),
}

/// A parsed header: how many bytes it took, and the client address (None for LOCAL or a
/// family without addresses, meaning "use the connection's own peer").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Bytes consumed.
    pub len: usize,
    /// The original client.
    pub source: Option<SocketAddr>,
}

/// Parses a header at the start of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyHeaderError> {
    let n = buf.len().min(12);
    if buf[..n] != SIGNATURE[..n] {
        return Err(ProxyHeaderError::NoSignature);
    }
    if buf.len() < 16 {
        return Ok(None);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 || ver_cmd & 0x0F > 1 {
        return Err(ProxyHeaderError::BadVersion(ver_cmd));
    }
    let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if 16 + len > MAX_HEADER {
        return Err(ProxyHeaderError::BadLength(len));
    }
    if buf.len() < 16 + len {
        return Ok(None);
    }
    let body = &buf[16..16 + len];
    let source = if ver_cmd & 0x0F == 0 {
        None // LOCAL: a health check from the balancer itself
    } else {
        match buf[13] >> 4 {
            0x1 => {
                if len < 12 {
                    return Err(ProxyHeaderError::BadLength(len));
                }
                let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
                Some(SocketAddr::new(
                    IpAddr::V4(ip),
                    u16::from_be_bytes([body[8], body[9]]),
                ))
            }
            0x2 => {
                if len < 36 {
                    return Err(ProxyHeaderError::BadLength(len));
                }
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[..16]);
                Some(SocketAddr::new(
                    IpAddr::V6(Ipv6Addr::from(a)),
                    u16::from_be_bytes([body[32], body[33]]),
                ))
            }
            _ => None,
        }
    };
    Ok(Some(ProxyHeader {
        len: 16 + len,
        source,
    }))
}

/// Builds a v2 PROXY header for `source` → `dest` (tests and tools).
pub fn encode(source: SocketAddr, dest: SocketAddr) -> Vec<u8> {
    let mut v = SIGNATURE.to_vec();
    v.push(0x21);
    match (source, dest) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            v.push(0x11);
            v.extend_from_slice(&12u16.to_be_bytes());
            v.extend_from_slice(&s.ip().octets());
            v.extend_from_slice(&d.ip().octets());
            v.extend_from_slice(&s.port().to_be_bytes());
            v.extend_from_slice(&d.port().to_be_bytes());
        }
        (s, d) => {
            let six = |a: SocketAddr| match a.ip() {
                IpAddr::V4(x) => x.to_ipv6_mapped().octets(),
                IpAddr::V6(x) => x.octets(),
            };
            v.push(0x21);
            v.extend_from_slice(&36u16.to_be_bytes());
            v.extend_from_slice(&six(s));
            v.extend_from_slice(&six(d));
            v.extend_from_slice(&s.port().to_be_bytes());
            v.extend_from_slice(&d.port().to_be_bytes());
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_incremental() {
        let s: SocketAddr = "203.0.113.7:50000".parse().unwrap();
        let d: SocketAddr = "198.51.100.1:443".parse().unwrap();
        let h = encode(s, d);
        for n in 0..h.len() {
            assert_eq!(parse(&h[..n]), Ok(None), "prefix {n}");
        }
        assert_eq!(
            parse(&h),
            Ok(Some(ProxyHeader {
                len: h.len(),
                source: Some(s)
            }))
        );
        let s6: SocketAddr = "[2001:db8::7]:4000".parse().unwrap();
        let h6 = encode(s6, "[2001:db8::1]:443".parse().unwrap());
        assert_eq!(parse(&h6).unwrap().unwrap().source, Some(s6));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n"),
            Err(ProxyHeaderError::NoSignature)
        );
        let mut h = encode(
            "192.0.2.1:1".parse().unwrap(),
            "192.0.2.2:2".parse().unwrap(),
        );
        h[12] = 0x31;
        assert_eq!(parse(&h), Err(ProxyHeaderError::BadVersion(0x31)));
        let mut h = SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
        assert!(matches!(parse(&h), Err(ProxyHeaderError::BadLength(_))));
        let mut h = SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert_eq!(parse(&h), Err(ProxyHeaderError::BadLength(4)));
        // Random bytes never panic.
        let mut x: u32 = 1;
        for _ in 0..10_000 {
            let mut b = SIGNATURE.to_vec();
            for _ in 0..(x % 64) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                b.push(x as u8);
            }
            let _ = parse(&b);
        }
    }
}
