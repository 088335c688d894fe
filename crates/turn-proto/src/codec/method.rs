//! Message types: a 12-bit method and a 2-bit class interleaved in 14 bits (RFC 8489 §5).

use std::fmt;

/// The class of a STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// A request; expects a success or error response.
    Request,
    /// An indication; no response.
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

/// STUN/TURN methods this crate knows by name; others are kept as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// RFC 8489 Binding.
    Binding,
    /// RFC 8656 Allocate.
    Allocate,
    /// RFC 8656 Refresh.
    Refresh,
    /// RFC 8656 Send (indication).
    Send,
    /// RFC 8656 Data (indication).
    Data,
    /// RFC 8656 CreatePermission.
    CreatePermission,
    /// RFC 8656 ChannelBind.
    ChannelBind,
    /// RFC 6062 Connect.
    Connect,
    /// RFC 6062 ConnectionBind.
    ConnectionBind,
    /// RFC 6062 ConnectionAttempt (indication).
    ConnectionAttempt,
    /// A method number this crate does not name.
    Other(u16),
}

impl Method {
    /// The 12-bit method number.
    pub fn number(self) -> u16 {
        match self {
            Method::Binding => 0x001,
            Method::Allocate => 0x003,
            Method::Refresh => 0x004,
            Method::Send => 0x006,
            Method::Data => 0x007,
            Method::CreatePermission => 0x008,
            Method::ChannelBind => 0x009,
            Method::Connect => 0x00A,
            Method::ConnectionBind => 0x00B,
            Method::ConnectionAttempt => 0x00C,
            Method::Other(n) => n & 0x0FFF,
        }
    }

    /// The method for a 12-bit number.
    pub fn from_number(n: u16) -> Self {
        match n {
            0x001 => Method::Binding,
            0x003 => Method::Allocate,
            0x004 => Method::Refresh,
            0x006 => Method::Send,
            0x007 => Method::Data,
            0x008 => Method::CreatePermission,
            0x009 => Method::ChannelBind,
            0x00A => Method::Connect,
            0x00B => Method::ConnectionBind,
            0x00C => Method::ConnectionAttempt,
            n => Method::Other(n & 0x0FFF),
        }
    }
}

/// Method and class together: the first 16 bits of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageType {
    /// The method.
    pub method: Method,
    /// The class.
    pub class: Class,
}

impl MessageType {
    /// A type from its parts.
    pub const fn new(method: Method, class: Class) -> Self {
        Self { method, class }
    }

    /// Encodes to the 14-bit wire value (the top two bits are zero).
    pub fn to_u16(self) -> u16 {
        let m = self.method.number();
        let c: u16 = match self.class {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        };
        (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
    }

    /// Decodes a wire value; the caller has checked that the top two bits are zero.
    pub fn from_u16(v: u16) -> Self {
        let m = (v & 0x000F) | ((v >> 1) & 0x0070) | ((v >> 2) & 0x0F80);
        let class = match ((v >> 4) & 1) | ((v >> 7) & 2) {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::Success,
            _ => Class::Error,
        };
        Self {
            method: Method::from_number(m),
            class,
        }
    }

    /// The success response type for this request type.
    pub fn success(self) -> Self {
        Self::new(self.method, Class::Success)
    }

    /// The error response type for this request type.
    pub fn error(self) -> Self {
        Self::new(self.method, Class::Error)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {:?}", self.method, self.class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_wire_values() {
        // RFC 8489 §5: Binding request 0x0001, success 0x0101, error 0x0111; RFC 8656:
        // Allocate request 0x0003, Data indication 0x0017, ChannelBind error 0x0119.
        let cases = [
            (Method::Binding, Class::Request, 0x0001),
            (Method::Binding, Class::Success, 0x0101),
            (Method::Binding, Class::Error, 0x0111),
            (Method::Allocate, Class::Request, 0x0003),
            (Method::Send, Class::Indication, 0x0016),
            (Method::Data, Class::Indication, 0x0017),
            (Method::ChannelBind, Class::Error, 0x0119),
            (Method::ConnectionAttempt, Class::Indication, 0x001C),
        ];
        for (m, c, v) in cases {
            assert_eq!(MessageType::new(m, c).to_u16(), v, "{m:?} {c:?}");
            assert_eq!(MessageType::from_u16(v), MessageType::new(m, c));
        }
    }

    #[test]
    fn every_value_round_trips() {
        for v in 0u16..0x4000 {
            assert_eq!(MessageType::from_u16(v).to_u16(), v);
        }
    }
}
