//! The edge's Prometheus endpoint (`metrics_listen`): `GET /metrics` in the text exposition
//! format (version 0.0.4) and `GET /healthz`, on an address of its own. It is off unless
//! configured, and meant for an operator's network (loopback or a management interface),
//! never a client-facing port: the counters say how busy the edge is and how often it refuses
//! credentials, which is nobody else's business.
//!
//! One plain thread with a blocking listener serves one scrape at a time. Each connection is
//! bounded (2 s to send a request of at most 8 KiB, 2 s to take the answer), so a stuck or
//! hostile scraper delays the next scrape by seconds, never the relay: the shards only publish
//! their counters twice a second into a mutex this thread reads.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, warn};
use turn_proto::server::Stats;

/// Largest request accepted (request line and headers).
const MAX_REQUEST: usize = 8 * 1024;
/// Time a scraper has to send its request, and to take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the idle listener looks at the shutdown flag.
const POLL: Duration = Duration::from_millis(100);

/// What one scrape reports.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    /// Counters summed over the shards.
    pub stats: Stats,
    /// Shards (threads) serving.
    pub shards: usize,
    /// Allocations held now (the edge-wide quota's count).
    pub allocations: usize,
    /// Whether the control plane accepted a heartbeat.
    pub registered: bool,
    /// Whether an operator asked the edge to drain.
    pub draining: bool,
}

/// One metric family: name (after `cloudproxy_edge_`), type, help, samples with their labels.
type Family<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, u64)>);

/// The text exposition of `s`.
pub(crate) fn render(s: &Sample) -> String {
    let t = &s.stats;
    let (g, c) = ("gauge", "counter");
    let dir = |to_peer: u64, to_client: u64| {
        vec![
            ("{direction=\"to_peer\"}", to_peer),
            ("{direction=\"to_client\"}", to_client),
        ]
    };
    let one = |v: u64| vec![("", v)];
    // Name (after `cloudproxy_edge_`), type, help, and the samples with their labels.
    let table: [Family<'_>; 14] = [
        (
            "allocations",
            g,
            "TURN allocations held now.",
            one(s.allocations as u64),
        ),
        (
            "allocations_created_total",
            c,
            "TURN allocations created.",
            one(t.allocations_created),
        ),
        (
            "allocations_removed_total",
            c,
            "TURN allocations that expired or were deleted.",
            one(t.allocations_removed),
        ),
        (
            "challenges_total",
            c,
            "401 challenges to requests without credentials (the normal first round trip).",
            one(t.challenges),
        ),
        (
            "requests_refused_total",
            c,
            "STUN/TURN requests refused with an error response, any code.",
            one(t.requests_refused),
        ),
        (
            "auth_failures_total",
            c,
            "Requests with credentials refused 401 (wrong, unknown or expired).",
            one(t.auth_failures),
        ),
        (
            "policy_denied_total",
            c,
            "Peer addresses refused by the relay policy (403 or dropped Send).",
            one(t.policy_denied),
        ),
        (
            "malformed_total",
            c,
            "Malformed or oversized packets dropped or answered 400.",
            one(t.malformed),
        ),
        (
            "dropped_no_route_total",
            c,
            "Datagrams dropped for want of an allocation, permission or channel.",
            one(t.dropped_no_route),
        ),
        (
            "relayed_packets_total",
            c,
            "Packets relayed, by direction.",
            dir(t.to_peer_packets, t.to_client_packets),
        ),
        (
            "relayed_bytes_total",
            c,
            "Payload bytes relayed, by direction.",
            dir(t.to_peer_bytes, t.to_client_bytes),
        ),
        (
            "shards",
            g,
            "Shards (one thread and runtime each) serving.",
            one(s.shards as u64),
        ),
        (
            "registered",
            g,
            "1 when the control plane has accepted a heartbeat.",
            one(u64::from(s.registered)),
        ),
        (
            "draining",
            g,
            "1 when an operator asked this edge to drain.",
            one(u64::from(s.draining)),
        ),
    ];
    let mut out = String::with_capacity(2048);
    for (name, kind, help, rows) in table {
        let name = format!("cloudproxy_edge_{name}");
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in rows {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    }
    out
}

/// Serves `listener` on a thread of its own until `stop` turns true.
pub(crate) fn spawn(
    listener: TcpListener,
    sample: impl Fn() -> Sample + Send + 'static,
    stop: watch::Receiver<bool>,
) -> io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("edge-metrics".into())
        .spawn(move || {
            while !*stop.borrow() {
                match listener.accept() {
                    Ok((stream, from)) => {
                        if let Err(e) = serve_one(stream, &sample) {
                            debug!(%from, error = %e, "metrics request failed");
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
                    Err(e) => {
                        warn!(error = %e, "metrics listener: accept failed");
                        std::thread::sleep(POLL);
                    }
                }
            }
        })
}

/// Reads one request and answers it; the connection closes after the answer.
fn serve_one(mut stream: TcpStream, sample: &impl Fn() -> Sample) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let head = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break &buf[..end];
        }
        if buf.len() >= MAX_REQUEST {
            return answer(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request too large\n",
            );
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(()); // closed before a whole request: nothing to answer
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => answer(
            &mut stream,
            "200 OK",
            "text/plain; version=0.0.4",
            &render(&sample()),
        ),
        ("GET", "/healthz") => answer(&mut stream, "200 OK", "text/plain", "ok\n"),
        ("GET", _) => answer(&mut stream, "404 Not Found", "text/plain", "not found\n"),
        (m, _) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => answer(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n",
        ),
        _ => answer(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            "not an HTTP request\n",
        ),
    }
}

fn answer(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// Where the endpoint listens, bound now so that a taken port fails the start.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(addr)?;
    let local = l.local_addr()?;
    Ok((l, local))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn renders_every_counter_once_with_help_and_type() {
        let mut s = Sample {
            shards: 2,
            allocations: 3,
            registered: true,
            ..Default::default()
        };
        s.stats.to_peer_packets = 10;
        s.stats.to_client_bytes = 1200;
        s.stats.auth_failures = 4;
        let text = render(&s);
        assert!(text.contains("cloudproxy_edge_allocations 3\n"), "{text}");
        assert!(text.contains("cloudproxy_edge_relayed_packets_total{direction=\"to_peer\"} 10\n"));
        assert!(
            text.contains("cloudproxy_edge_relayed_bytes_total{direction=\"to_client\"} 1200\n")
        );
        assert!(text.contains("cloudproxy_edge_auth_failures_total 4\n"));
        assert!(text.contains("cloudproxy_edge_registered 1\n"));
        assert!(text.contains("cloudproxy_edge_draining 0\n"));
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap();
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name} twice"
            );
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "no TYPE for {name}"
            );
            assert!(
                line.rsplit(' ').next().unwrap().parse::<u64>().is_ok(),
                "{line}"
            );
        }
    }

    #[test]
    fn serves_metrics_healthz_and_refuses_the_rest() {
        let (l, addr) = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let (tx, rx) = watch::channel(false);
        let t = spawn(
            l,
            || Sample {
                allocations: 7,
                ..Default::default()
            },
            rx,
        )
        .unwrap();
        let r = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("text/plain; version=0.0.4"), "{r}");
        assert!(r.contains("\r\n\r\n# HELP "), "{r}");
        assert!(r.contains("cloudproxy_edge_allocations 7\n"), "{r}");
        assert!(get(addr, b"GET /healthz HTTP/1.1\r\n\r\n").ends_with("\r\n\r\nok\n"));
        assert!(get(addr, b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(get(addr, b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
        assert!(get(addr, b"\x16\x03\x01\x02\x00\x01\r\n\r\n").starts_with("HTTP/1.1 400 "));
        let big = [b'a'; MAX_REQUEST];
        assert!(get(addr, &big).starts_with("HTTP/1.1 431 "));
        // A scraper that connects and sends nothing is dropped after the timeout; the next
        // one is served.
        let _silent = TcpStream::connect(addr).unwrap();
        assert!(get(addr, b"GET /healthz HTTP/1.1\r\n\r\n").contains("200 OK"));
        tx.send(true).unwrap();
        t.join().unwrap();
    }
}
