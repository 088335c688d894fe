//! Is an edge reachable on the mode's transport? A STUN Binding request (RFC 8489) answered
//! within a deadline: over UDP (1 s), over TCP (2 s), or over TLS with ALPN `stun.turn` to the
//! TLS port (3 s). A join probes the mode's first port ([`probe`]); `doctor` every port
//! ([`probe_port`]). The deadline covers name resolution, connecting and the handshake too.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use control_api::{EdgeOffer, TransportMode};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use turn_proto::codec::{
    attr, frame_len, Class, FrameKind, Message, MessageBuilder, MessageType, Method, TransactionId,
};

use crate::media::signal::host_port;

/// UDP answer deadline.
pub const UDP_DEADLINE: Duration = Duration::from_secs(1);
/// TCP deadline (connect and answer).
pub const TCP_DEADLINE: Duration = Duration::from_secs(2);
/// TLS deadline (connect, handshake and answer).
pub const TLS_DEADLINE: Duration = Duration::from_secs(3);
/// The ALPN protocol of TURN over TLS (RFC 7443).
pub const ALPN_TURN: &[u8] = b"stun.turn";

/// Retransmissions of the UDP request, as offsets from the first send (RFC 8489 §6.2.1
/// doubles the interval; these fit three sends into the one-second deadline).
const UDP_RESENDS: [Duration; 2] = [Duration::from_millis(250), Duration::from_millis(750)];
/// Largest STUN frame on a stream: header plus the largest length field.
const MAX_FRAME: usize = 20 + 65_532;

/// What a successful probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOk {
    /// The address probed.
    pub target: SocketAddr,
    /// Our address as the edge saw it (XOR-MAPPED-ADDRESS), when it said.
    pub mapped: Option<SocketAddr>,
}

/// A probe that failed: the address (or `host:port` when it did not resolve) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFailure {
    /// What was tried.
    pub target: String,
    /// Why it failed.
    pub why: String,
}

/// Probes `edge` for `mode` on the mode's first port. `tls` must offer ALPN `stun.turn`.
pub async fn probe(
    edge: &EdgeOffer,
    mode: TransportMode,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<ProbeOk, ProbeFailure> {
    let port = match mode {
        TransportMode::Udp => Some(edge.udp_ports.first),
        TransportMode::Tcp => Some(edge.tcp_ports.first),
        TransportMode::Tls => edge.tls_port,
    };
    let Some(port) = port else {
        return Err(ProbeFailure {
            target: edge.address.clone(),
            why: "the edge offers no TLS port".into(),
        });
    };
    probe_port(edge, mode, port, tls).await
}

/// Probes `port` of `edge` with the mode's transport (the same deadlines as [`probe`]).
pub async fn probe_port(
    edge: &EdgeOffer,
    mode: TransportMode,
    port: u16,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<ProbeOk, ProbeFailure> {
    let deadline = match mode {
        TransportMode::Udp => UDP_DEADLINE,
        TransportMode::Tcp => TCP_DEADLINE,
        TransportMode::Tls => TLS_DEADLINE,
    };
    let shown = host_port(&edge.address, port);
    let attempt = async {
        let target = resolve(&edge.address, port)
            .await
            .map_err(|why| (shown.clone(), why))?;
        let at = |why: String| (target.to_string(), why);
        let mapped = match mode {
            TransportMode::Udp => binding_over_udp(target).await.map_err(at)?,
            TransportMode::Tcp => {
                let mut s = connect(target).await.map_err(at)?;
                binding_over_stream(&mut s).await.map_err(at)?
            }
            TransportMode::Tls => {
                let s = connect(target).await.map_err(at)?;
                let name = ServerName::try_from(edge.address.clone())
                    .map_err(|e| at(format!("not a TLS server name: {e}")))?;
                let mut s = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, s)
                    .await
                    .map_err(|e| at(format!("TLS handshake: {e}")))?;
                binding_over_stream(&mut s).await.map_err(at)?
            }
        };
        Ok(ProbeOk { target, mapped })
    };
    match tokio::time::timeout(deadline, attempt).await {
        Ok(Ok(ok)) => Ok(ok),
        Ok(Err((target, why))) => Err(ProbeFailure { target, why }),
        Err(_) => Err(ProbeFailure {
            target: shown,
            why: format!("no STUN answer within {deadline:?}"),
        }),
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve: {e}"))?
        .next()
        .ok_or_else(|| "resolves to no address".into())
}

async fn connect(target: SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect(target)
        .await
        .map_err(|e| format!("TCP connect: {e}"))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// A transaction id no one on the path can predict: SipHash keyed from the OS's randomness
/// (a fresh `RandomState`) over a counter.
fn transaction_id() -> TransactionId {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let word = |salt: u64| {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u64(salt);
        h.finish()
    };
    let (a, b) = (word(1), word(2));
    let mut id = [0u8; 12];
    id[..8].copy_from_slice(&a.to_be_bytes());
    id[8..].copy_from_slice(&b.to_be_bytes()[..4]);
    id
}

fn binding_request(txid: TransactionId) -> Vec<u8> {
    let mut buf = Vec::with_capacity(28);
    MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::Binding, Class::Request),
        txid,
    )
    .fingerprint();
    buf
}

/// `Ok(Some(mapped))` for our Binding success, `Ok(None)` for a message that is not an
/// answer to us (ignore it), `Err` for an error answer.
fn check_answer(bytes: &[u8], txid: &TransactionId) -> Result<Option<Option<SocketAddr>>, String> {
    let Ok(msg) = Message::decode(bytes) else {
        return Ok(None);
    };
    if msg.transaction_id() != txid || msg.message_type().method != Method::Binding {
        return Ok(None);
    }
    match msg.class() {
        Class::Success => Ok(Some(
            msg.xor_address(attr::XOR_MAPPED_ADDRESS).ok().flatten(),
        )),
        Class::Error => {
            let code = msg
                .error_code()
                .ok()
                .flatten()
                .map(|e| format!("{} {}", e.code, e.reason))
                .unwrap_or_else(|| "no ERROR-CODE".into());
            Err(format!("STUN Binding refused: {code}"))
        }
        _ => Ok(None),
    }
}

async fn binding_over_udp(target: SocketAddr) -> Result<Option<SocketAddr>, String> {
    let local: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("UDP bind: {e}"))?;
    // Connected: only the edge's datagrams arrive, and an ICMP port unreachable surfaces as
    // ConnectionRefused instead of a silent wait.
    sock.connect(target)
        .await
        .map_err(|e| format!("UDP connect: {e}"))?;
    let txid = transaction_id();
    let req = binding_request(txid);
    let refused = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "UDP port unreachable (ICMP)".to_owned(),
        _ => format!("UDP: {e}"),
    };
    sock.send(&req).await.map_err(refused)?;
    let started = tokio::time::Instant::now();
    let mut resends = UDP_RESENDS.iter();
    let mut next = resends.next().map(|d| started + *d);
    let mut buf = vec![0u8; 1500];
    loop {
        let wait = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            got = sock.recv(&mut buf) => {
                let n = got.map_err(refused)?;
                if let Some(mapped) = check_answer(&buf[..n], &txid)? {
                    return Ok(mapped);
                }
            }
            _ = wait => {
                sock.send(&req).await.map_err(refused)?;
                next = resends.next().map(|d| started + *d);
            }
        }
    }
}

async fn binding_over_stream<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
) -> Result<Option<SocketAddr>, String> {
    let txid = transaction_id();
    s.write_all(&binding_request(txid))
        .await
        .map_err(|e| format!("write: {e}"))?;
    s.flush().await.map_err(|e| format!("write: {e}"))?;
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    let mut chunk = [0u8; 2048];
    loop {
        match frame_len(&buf).map_err(|e| format!("not a TURN stream: {e}"))? {
            Some((kind, len)) => {
                let frame: Vec<u8> = buf.drain(..len).collect();
                if kind == FrameKind::Stun {
                    if let Some(mapped) = check_answer(&frame, &txid)? {
                        return Ok(mapped);
                    }
                }
                continue;
            }
            None if buf.len() >= MAX_FRAME => return Err("oversized frame".into()),
            None => {}
        }
        let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed by the edge before answering".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_decodes_and_answers_are_matched_by_transaction() {
        let txid = transaction_id();
        assert_ne!(txid, transaction_id());
        let req = binding_request(txid);
        let m = Message::decode(&req).unwrap();
        assert_eq!(m.message_type().method, Method::Binding);
        assert_eq!(m.class(), Class::Request);
        assert!(m.has_fingerprint());

        let me: SocketAddr = "192.0.2.7:5555".parse().unwrap();
        let mut ok = Vec::new();
        MessageBuilder::new(
            &mut ok,
            MessageType::new(Method::Binding, Class::Success),
            txid,
        )
        .add_xor_address(attr::XOR_MAPPED_ADDRESS, me);
        assert_eq!(check_answer(&ok, &txid), Ok(Some(Some(me))));
        assert_eq!(check_answer(&ok, &[9; 12]), Ok(None));
        assert_eq!(check_answer(b"garbage", &txid), Ok(None));
        let mut err = Vec::new();
        MessageBuilder::new(
            &mut err,
            MessageType::new(Method::Binding, Class::Error),
            txid,
        )
        .add_error(400, "Bad Request");
        assert!(check_answer(&err, &txid).is_err());
    }

    #[test]
    fn ipv6_targets_are_bracketed() {
        assert_eq!(host_port("2001:db8::1", 3478), "[2001:db8::1]:3478");
        assert_eq!(host_port("edge.example", 443), "edge.example:443");
    }
}
