//! The STUN error codes the server answers with, one variant per rule broken.

/// Why a request is refused. Each variant maps to one STUN error code and a reason phrase that
/// names the rule, so a client developer reading a packet capture (or our logs) knows what to
/// fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// 400: malformed, or a required attribute is missing or invalid.
    BadRequest(&'static str),
    /// 401: no or wrong credentials.
    Unauthorized(&'static str),
    /// 403: the peer address is not allowed by policy.
    Forbidden(&'static str),
    /// 420: unknown comprehension-required attributes (listed in UNKNOWN-ATTRIBUTES).
    UnknownAttribute,
    /// 437: the request does not fit the allocation state of this 5-tuple.
    AllocationMismatch(&'static str),
    /// 438: the nonce is stale or not ours.
    StaleNonce,
    /// 440: the requested address family is not served.
    AddressFamilyNotSupported,
    /// 441: the credentials differ from the ones that created the allocation.
    WrongCredentials,
    /// 442: REQUESTED-TRANSPORT names a transport we do not relay (or TCP over UDP).
    UnsupportedTransport(&'static str),
    /// 443: XOR-PEER-ADDRESS family differs from the allocation's.
    PeerAddressFamilyMismatch,
    /// 446: a TCP connection to that peer already exists (RFC 6062).
    ConnectionAlreadyExists,
    /// 447: the TCP connection to the peer failed or timed out (RFC 6062).
    ConnectionTimeoutOrFailure,
    /// 486: this user has as many allocations as allowed.
    AllocationQuotaReached,
    /// 508: the server is out of capacity (allocations, ports, permissions or channels).
    InsufficientCapacity(&'static str),
}

impl Refusal {
    /// The STUN error code.
    pub fn code(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Unauthorized(_) => 401,
            Refusal::Forbidden(_) => 403,
            Refusal::UnknownAttribute => 420,
            Refusal::AllocationMismatch(_) => 437,
            Refusal::StaleNonce => 438,
            Refusal::AddressFamilyNotSupported => 440,
            Refusal::WrongCredentials => 441,
            Refusal::UnsupportedTransport(_) => 442,
            Refusal::PeerAddressFamilyMismatch => 443,
            Refusal::ConnectionAlreadyExists => 446,
            Refusal::ConnectionTimeoutOrFailure => 447,
            Refusal::AllocationQuotaReached => 486,
            Refusal::InsufficientCapacity(_) => 508,
        }
    }

    /// The reason phrase sent in ERROR-CODE.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::BadRequest(why)
            | Refusal::Unauthorized(why)
            | Refusal::Forbidden(why)
            | Refusal::AllocationMismatch(why)
            | Refusal::UnsupportedTransport(why)
            | Refusal::InsufficientCapacity(why) => why,
            Refusal::UnknownAttribute => "Unknown Attribute",
            Refusal::StaleNonce => "Stale Nonce",
            Refusal::AddressFamilyNotSupported => "Address Family not Supported",
            Refusal::WrongCredentials => "Wrong Credentials",
            Refusal::PeerAddressFamilyMismatch => "Peer Address Family Mismatch",
            Refusal::ConnectionAlreadyExists => "Connection Already Exists",
            Refusal::ConnectionTimeoutOrFailure => "Connection Timeout or Failure",
            Refusal::AllocationQuotaReached => "Allocation Quota Reached",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code(), self.reason())
    }
}
