//! Admission of a relay: the ticket, the upstream it names, and the policy every address of
//! that upstream must pass. No I/O here except name resolution.

use std::net::{Ipv6Addr, SocketAddr};

use credentials::ticket::{verify_ticket, TicketClaims, TicketError};
use tokio::time::Instant;

use super::{Refusal, SignalState};

/// Longest upstream host name (DNS limit).
const MAX_HOST_LEN: usize = 253;

/// Verifies the ticket (steps 1–2 of the module docs).
pub(super) fn check_ticket(
    state: &SignalState,
    ticket: Option<&str>,
) -> Result<TicketClaims, Refusal> {
    let ticket = match ticket {
        Some(t) if !t.is_empty() => t,
        _ => return Err(Refusal::unauthorized("missing ticket", false)),
    };
    let keys = state.tickets.load();
    let Some(keys) = keys.as_deref() else {
        // Before the first heartbeat answer: nothing can verify yet, a retry may succeed.
        return Err(Refusal::unauthorized("edge has no ticket keys yet", true));
    };
    verify_ticket(keys, ticket, (state.now_unix)()).map_err(|e| {
        let message = match e {
            TicketError::Malformed => "malformed ticket",
            TicketError::UnknownKeyId => "ticket signed with an unknown key",
            TicketError::BadSignature => "forged ticket",
            TicketError::Expired { .. } => "expired ticket",
        };
        Refusal::unauthorized(message, false).with_detail(e.to_string())
    })
}

/// Splits `HOST:PORT` (`[v6]:PORT` for IPv6) into a host to resolve and a port. Host names are
/// restricted to letters, digits, `-`, `_` and `.`, so nothing odd reaches the resolver or the
/// upstream request line; IPv6 literals must parse (no zone ids).
pub(super) fn split_host_port(upstream: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = upstream.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        host.parse::<Ipv6Addr>().ok()?;
        (host, port)
    } else {
        let (host, port) = upstream.rsplit_once(':')?;
        let ok = !host.is_empty()
            && host.len() <= MAX_HOST_LEN
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !ok {
            return None;
        }
        (host, port)
    };
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((host, port.parse().ok()?))
}

/// Resolves the upstream before `deadline` and checks every address against the policy
/// (step 4). Returns the canonical addresses to connect to, in resolver order, without
/// duplicates.
pub(super) async fn resolve_checked(
    state: &SignalState,
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, Refusal> {
    let resolved =
        match tokio::time::timeout_at(deadline, tokio::net::lookup_host((host, port))).await {
            Err(_) => {
                return Err(Refusal::timeout("resolving the upstream timed out"));
            }
            Ok(Err(e)) => {
                return Err(
                    Refusal::unavailable("upstream does not resolve").with_detail(e.to_string())
                );
            }
            Ok(Ok(addrs)) => addrs,
        };
    let mut checked: Vec<SocketAddr> = Vec::new();
    for addr in resolved {
        match state.policy.check(addr) {
            Ok(a) => {
                if !checked.contains(&a) {
                    checked.push(a);
                }
            }
            Err(denied) => {
                return Err(Refusal::forbidden(format!(
                    "upstream not allowed: {}",
                    denied.reason()
                ))
                .with_detail(format!("{addr}: {denied}")));
            }
        }
    }
    if checked.is_empty() {
        return Err(Refusal::unavailable("upstream resolves to no address"));
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn host_port_shapes() {
        assert_eq!(
            split_host_port("rtn.example:443"),
            Some(("rtn.example", 443))
        );
        assert_eq!(split_host_port("10.1.2.3:9"), Some(("10.1.2.3", 9)));
        assert_eq!(
            split_host_port("[2001:db8::1]:8443"),
            Some(("2001:db8::1", 8443))
        );
        for bad in [
            "",
            "rtn.example",
            "rtn.example:",
            ":443",
            "rtn.example:65536",
            "rtn.example:+1",
            "rtn.example:443/x",
            "a b:1",
            "user@host:1",
            "host/path:1",
            "2001:db8::1:443",
            "[2001:db8::1]443",
            "[fe80::1%eth0]:1",
            "[rtn.example]:1",
        ] {
            assert_eq!(split_host_port(bad), None, "{bad:?}");
        }
    }
}
