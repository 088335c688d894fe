//! Interop, server side: the `turn` crate's client (webrtc-rs, a TURN client we did not write)
//! against our edge, started in-process on 127.0.0.1.
//!
//! What it shows:
//! - a static user and a TURN-REST credential both authenticate (401 challenge, then
//!   long-term-credential MESSAGE-INTEGRITY) and get a UDP relay on the edge's relay address;
//! - data flows both ways between the relay and a plain UDP peer, every datagram intact and in
//!   lock-step (a lost datagram fails the test), with the peer seeing the relayed address as
//!   source and the client seeing the peer's address;
//! - the client's ChannelBind succeeds and, once bound, both directions use ChannelData: the
//!   client's socket is wrapped in [`SniffConn`], which classifies every datagram on the
//!   client ↔ edge path, so the test knows which framing carried each packet;
//! - closing the relay (Refresh, LIFETIME 0) frees the allocation on the edge;
//! - a wrong password is refused with 401 and allocates nothing.
//!
//! Everything is on 127.0.0.1 and bounded in time.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use credentials::{Secret, SecretSet};
use edge::config::{SecretSpec, UserSpec};
use edge::{Edge, EdgeConfig, PortRange, StartError};
use integration_tests::free_port;
use tokio::net::UdpSocket;
use tokio::time::timeout;
use turn::client::{Client, ClientConfig};
use webrtc_util::Conn;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const USER: &str = "alice";
const PASSWORD: &str = "alice-pass";
const REST_SECRET: &str = "interop-webrtc-secret";
/// Relay ports for every edge in this file. Each test runs its own edge; they may share the
/// range because the edge picks a random port in it and skips ports in use.
const RELAY_PORTS: PortRange = PortRange {
    first: 61000,
    last: 61499,
};
/// Bound on any single step (a datagram to arrive, an allocation to finish).
const STEP: Duration = Duration::from_secs(5);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------------------------------
// The edge
// ---------------------------------------------------------------------------------------------

/// A port free for UDP and TCP, outside [`RELAY_PORTS`] (a listener inside the relay range would
/// fail validation, and a peer inside it is the edge's own address to the policy).
fn free_port_outside_relay_range() -> u16 {
    loop {
        let p = free_port();
        if !RELAY_PORTS.contains(p) {
            return p;
        }
    }
}

/// Starts an edge on free ports of 127.0.0.1 with one static user and one REST secret.
fn start_edge() -> (Edge, SocketAddr) {
    let mut last_err = None;
    for _ in 0..5 {
        let udp = free_port_outside_relay_range();
        let tcp = free_port_outside_relay_range();
        if udp == tcp {
            continue;
        }
        let cfg = EdgeConfig {
            signal_port: 0, // no signalling relay here (the default 4000 would be shared)
            listen: LOCALHOST,
            udp_ports: PortRange {
                first: udp,
                last: udp,
            },
            tcp_ports: PortRange {
                first: tcp,
                last: tcp,
            },
            relay_ports: RELAY_PORTS,
            users: vec![UserSpec {
                name: USER.into(),
                password: PASSWORD.into(),
            }],
            auth_secrets: vec![SecretSpec {
                key_id: "k1".into(),
                secret: REST_SECRET.into(),
            }],
            dangerous_allow_loopback_peers: true,
            ..EdgeConfig::default()
        };
        match Edge::start(cfg) {
            Ok(edge) => return (edge, SocketAddr::new(LOCALHOST, udp)),
            // Someone took a port between free_port() and the bind: pick others.
            Err(e @ StartError::Bind { .. }) => last_err = Some(e),
            Err(e) => panic!("edge does not start: {e}"),
        }
    }
    panic!("edge does not start: {last_err:?}");
}

/// A UDP "peer" on 127.0.0.1, on a port outside the relay range.
async fn bind_peer() -> UdpSocket {
    loop {
        let s = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind peer");
        if !RELAY_PORTS.contains(s.local_addr().expect("peer addr").port()) {
            return s;
        }
    }
}

/// Waits (bounded) until `cond` holds on the edge's counters, which the edge publishes every
/// 500 ms. Returns the last value either way.
async fn wait_stats(
    edge: &Edge,
    cond: impl Fn(&turn_proto::server::Stats) -> bool,
) -> turn_proto::server::Stats {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let s = edge.stats();
        if cond(&s) || tokio::time::Instant::now() >= deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded) until the edge holds `n` allocations. Returns the last count.
async fn wait_allocations(edge: &Edge, n: usize) -> usize {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let a = edge.allocations();
        if a == n || tokio::time::Instant::now() >= deadline {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// A sniffing socket for the client: what framing crossed the client <-> edge path
// ---------------------------------------------------------------------------------------------

/// What a datagram on the client ↔ edge path was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// ChannelData (first two bits 01).
    ChannelData,
    /// A STUN message, by its 14-bit type (method and class).
    Stun(u16),
    /// Anything else.
    Other,
}

const ALLOCATE_ERROR: u16 = 0x0113;
const CREATE_PERMISSION_REQUEST: u16 = 0x0008;
const CREATE_PERMISSION_SUCCESS: u16 = 0x0108;
const CHANNEL_BIND_REQUEST: u16 = 0x0009;
const CHANNEL_BIND_SUCCESS: u16 = 0x0109;
const SEND_INDICATION: u16 = 0x0016;
const DATA_INDICATION: u16 = 0x0017;

fn classify(b: &[u8]) -> Kind {
    if b.len() >= 4 && (0x40..=0x7f).contains(&b[0]) {
        Kind::ChannelData
    } else if b.len() >= 20 && b[0] & 0xc0 == 0 && b[4..8] == [0x21, 0x12, 0xa4, 0x42] {
        Kind::Stun(u16::from_be_bytes([b[0], b[1]]))
    } else {
        Kind::Other
    }
}

/// The ERROR-CODE (e.g. 401) of a STUN error response, if it has one.
fn error_code(b: &[u8]) -> Option<u16> {
    let mut i = 20;
    while i + 4 <= b.len() {
        let t = u16::from_be_bytes([b[i], b[i + 1]]);
        let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
        let v = b.get(i + 4..i + 4 + len)?;
        if t == 0x0009 && len >= 4 {
            return Some(u16::from(v[2] & 0x07) * 100 + u16::from(v[3]));
        }
        i += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[derive(Default)]
struct Tally {
    /// Datagrams the client sent to the edge, by kind.
    sent: BTreeMap<Kind, u64>,
    /// Datagrams the client received from the edge, by kind.
    received: BTreeMap<Kind, u64>,
    /// (STUN type, ERROR-CODE) of every error response the client received.
    errors: Vec<(u16, Option<u16>)>,
}

impl Tally {
    fn sent(&self, k: Kind) -> u64 {
        self.sent.get(&k).copied().unwrap_or(0)
    }
    fn received(&self, k: Kind) -> u64 {
        self.received.get(&k).copied().unwrap_or(0)
    }
}

impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |m: &BTreeMap<Kind, u64>| {
            m.iter()
                .map(|(k, n)| match k {
                    Kind::Stun(t) => format!("stun 0x{t:04x}: {n}"),
                    k => format!("{k:?}: {n}"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(
            f,
            "sent [{}] received [{}] errors {:?}",
            show(&self.sent),
            show(&self.received),
            self.errors
        )
    }
}

/// The client's UDP socket, counting what crosses it. Behaves exactly like the plain
/// `tokio::net::UdpSocket` implementation of `Conn` that webrtc-util ships.
struct SniffConn {
    sock: UdpSocket,
    tally: Arc<Mutex<Tally>>,
}

#[async_trait]
impl Conn for SniffConn {
    async fn connect(&self, addr: SocketAddr) -> webrtc_util::Result<()> {
        Ok(self.sock.connect(addr).await?)
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        let n = self.sock.recv(buf).await?;
        self.note_received(&buf[..n]);
        Ok(n)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let (n, from) = self.sock.recv_from(buf).await?;
        self.note_received(&buf[..n]);
        Ok((n, from))
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        self.note_sent(buf);
        Ok(self.sock.send(buf).await?)
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        self.note_sent(buf);
        Ok(self.sock.send_to(buf, target).await?)
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.sock.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

impl SniffConn {
    fn note_sent(&self, b: &[u8]) {
        let mut t = self.tally.lock().unwrap();
        *t.sent.entry(classify(b)).or_default() += 1;
    }

    fn note_received(&self, b: &[u8]) {
        let k = classify(b);
        let mut t = self.tally.lock().unwrap();
        *t.received.entry(k).or_default() += 1;
        if let Kind::Stun(ty) = k {
            // Class bits 0x0110 both set: error response.
            if ty & 0x0110 == 0x0110 {
                t.errors.push((ty, error_code(b)));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The client side
// ---------------------------------------------------------------------------------------------

/// A `turn` client listening on a sniffed socket, pointed at `server`.
async fn new_client(
    server: SocketAddr,
    username: &str,
    password: &str,
) -> Result<(Client, Arc<Mutex<Tally>>), BoxError> {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let sock = UdpSocket::bind((LOCALHOST, 0)).await?;
    let client = Client::new(ClientConfig {
        stun_serv_addr: String::new(),
        turn_serv_addr: server.to_string(),
        username: username.into(),
        password: password.into(),
        // Ignored: the client adopts the REALM of the server's 401 challenge.
        realm: String::new(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(SniffConn {
            sock,
            tally: tally.clone(),
        }),
        vnet: None,
    })
    .await?;
    client.listen().await?;
    Ok((client, tally))
}

/// `rounds` lock-step round trips: relay → peer, then peer → relay, each payload distinct and
/// checked byte for byte along with its source address. A lost datagram fails at once.
async fn exchange(
    relay: &impl Conn,
    relayed: SocketAddr,
    peer: &UdpSocket,
    rounds: usize,
    tag: &str,
) -> Result<(), BoxError> {
    let peer_addr = peer.local_addr()?;
    let mut buf = vec![0u8; 2048];
    for i in 0..rounds {
        // Sizes vary from 5 bytes to ~1.2 kB so padding and length handling get exercised.
        let mut out = format!("{tag} c2p #{i:03} ").into_bytes();
        out.resize(out.len() + (i * 37) % 1180, b'a' + (i % 26) as u8);
        // The count `send_to` returns is that of the datagram it wrote to the edge (Send
        // indication or ChannelData), not of the payload, so it says nothing here.
        relay.send_to(&out, peer_addr).await?;
        let (n, from) = timeout(STEP, peer.recv_from(&mut buf))
            .await
            .map_err(|_| format!("round {i}: peer got nothing from the relay within {STEP:?}"))??;
        assert_eq!(
            from, relayed,
            "round {i}: peer must see the relayed address as the source"
        );
        assert_eq!(
            &buf[..n],
            &out[..],
            "round {i}: client→peer payload mangled"
        );

        let mut back = format!("{tag} p2c #{i:03} ").into_bytes();
        back.resize(back.len() + (i * 53) % 1190, b'A' + (i % 26) as u8);
        peer.send_to(&back, relayed).await?;
        let (n, from) = timeout(STEP, relay.recv_from(&mut buf))
            .await
            .map_err(|_| {
                format!("round {i}: client got nothing via the relay within {STEP:?}")
            })??;
        assert_eq!(
            from, peer_addr,
            "round {i}: client must see the peer's address"
        );
        assert_eq!(
            &buf[..n],
            &back[..],
            "round {i}: peer→client payload mangled"
        );
    }
    Ok(())
}

/// Adds what the client socket and the edge saw to a failed exchange's error.
fn explain(
    e: BoxError,
    edge: &Edge,
    server: SocketAddr,
    relayed: SocketAddr,
    peer: &UdpSocket,
    tally: &Mutex<Tally>,
) -> BoxError {
    format!(
        "{e}\n  edge {server}, relayed {relayed}, peer {:?}, edge allocations {}\n  client socket: {:?}\n  edge stats (<= 500 ms old): {:?}",
        peer.local_addr(),
        edge.allocations(),
        tally.lock().unwrap(),
        edge.stats()
    )
    .into()
}

/// Allocates with `username`/`password`, exchanges `rounds` round trips (checking that the
/// channel, once bound, carries the rest), closes, and checks the edge's view.
async fn relay_round_trips(
    edge: &Edge,
    server: SocketAddr,
    username: &str,
    password: &str,
    rounds: usize,
    tag: &str,
) -> Result<(), BoxError> {
    assert!(rounds > 20);
    let (client, tally) = new_client(server, username, password).await?;
    let relay = timeout(Duration::from_secs(10), client.allocate())
        .await
        .map_err(|_| "allocate did not finish within 10 s")??;
    let relayed = relay.local_addr()?;
    assert_eq!(relayed.ip(), LOCALHOST, "relayed address: {relayed}");
    assert!(
        RELAY_PORTS.contains(relayed.port()),
        "relayed port {} outside the configured relay range {RELAY_PORTS}",
        relayed.port()
    );
    assert_eq!(edge.allocations(), 1);

    let peer = bind_peer().await;
    let head = rounds - 20;
    // The first send makes the client create a permission (and wait for it), then start a
    // ChannelBind in the background while it sends Send indications.
    exchange(&relay, relayed, &peer, head, tag)
        .await
        .map_err(|e| explain(e, edge, server, relayed, &peer, &tally))?;
    let mid = {
        let t = tally.lock().unwrap();
        assert_eq!(t.sent(Kind::Stun(CREATE_PERMISSION_REQUEST)), 1, "{t:?}");
        assert_eq!(
            t.received(Kind::Stun(CREATE_PERMISSION_SUCCESS)),
            1,
            "{t:?}"
        );
        assert_eq!(t.sent(Kind::Stun(CHANNEL_BIND_REQUEST)), 1, "{t:?}");
        assert_eq!(
            t.received(Kind::Stun(CHANNEL_BIND_SUCCESS)),
            1,
            "the edge must accept the client's ChannelBind: {t:?}"
        );
        (
            t.sent(Kind::ChannelData),
            t.sent(Kind::Stun(SEND_INDICATION)),
            t.received(Kind::ChannelData),
            t.received(Kind::Stun(DATA_INDICATION)),
        )
    };
    // Channel bound: the last 20 round trips must all be ChannelData, both ways.
    exchange(&relay, relayed, &peer, 20, tag)
        .await
        .map_err(|e| explain(e, edge, server, relayed, &peer, &tally))?;
    let t = format!("{:?}", tally.lock().unwrap());
    {
        let t2 = tally.lock().unwrap();
        assert_eq!(
            t2.sent(Kind::ChannelData) - mid.0,
            20,
            "client → edge after the bind: {t}"
        );
        assert_eq!(t2.sent(Kind::Stun(SEND_INDICATION)) - mid.1, 0, "{t}");
        assert_eq!(
            t2.received(Kind::ChannelData) - mid.2,
            20,
            "edge → client after the bind must be ChannelData (RFC 8656 §12.6): {t}"
        );
        assert_eq!(t2.received(Kind::Stun(DATA_INDICATION)) - mid.3, 0, "{t}");
        // Everything relayed: Send indications + ChannelData out, Data indications +
        // ChannelData in.
        assert_eq!(
            t2.sent(Kind::ChannelData) + t2.sent(Kind::Stun(SEND_INDICATION)),
            rounds as u64,
            "{t}"
        );
        assert_eq!(
            t2.received(Kind::ChannelData) + t2.received(Kind::Stun(DATA_INDICATION)),
            rounds as u64,
            "{t}"
        );
        // Only the 401 challenge of the Allocate; no stale nonce, no 403, nothing else.
        assert_eq!(t2.errors, vec![(ALLOCATE_ERROR, Some(401))], "{t}");
    }
    eprintln!("[{tag}] {rounds} round trips via {relayed}; client socket saw: {t}");

    let r = rounds as u64;
    let s = wait_stats(edge, |s| s.to_peer_packets >= r && s.to_client_packets >= r).await;
    assert_eq!(s.to_peer_packets, r, "edge stats: {s:?}");
    assert_eq!(s.to_client_packets, r, "edge stats: {s:?}");
    assert_eq!(s.policy_denied, 0, "edge stats: {s:?}");
    assert_eq!(s.dropped_no_route, 0, "edge stats: {s:?}");
    assert_eq!(s.malformed, 0, "edge stats: {s:?}");
    eprintln!("[{tag}] edge stats: {s:?}");

    // Closing sends Refresh with LIFETIME 0: the allocation goes away on the edge.
    relay.close().await?;
    client.close().await?;
    assert_eq!(
        wait_allocations(edge, 0).await,
        0,
        "closing the relay (Refresh lifetime 0) must free the allocation"
    );
    Ok(())
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_test_writer()
        .try_init();
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn static_user_relays_both_ways_over_channel() {
    init_logs();
    let (edge, server) = start_edge();
    timeout(
        Duration::from_secs(60),
        relay_round_trips(&edge, server, USER, PASSWORD, 50, "static"),
    )
    .await
    .expect("test took over 60 s")
    .expect("static user relay");
    drop(edge);
}

#[tokio::test]
async fn rest_credential_relays_both_ways() {
    init_logs();
    let (edge, server) = start_edge();
    let set = SecretSet::new(vec![Secret::new("k1", REST_SECRET)]).unwrap();
    let cred = credentials::mint(&set, "session-1", now_unix(), 600).unwrap();
    assert!(cred.username.ends_with(":k1:session-1"), "{cred:?}");
    timeout(
        Duration::from_secs(60),
        relay_round_trips(&edge, server, &cred.username, &cred.password, 25, "rest"),
    )
    .await
    .expect("test took over 60 s")
    .expect("REST credential relay");
    drop(edge);
}

#[tokio::test]
async fn wrong_password_is_refused() {
    init_logs();
    let (edge, server) = start_edge();
    let set = SecretSet::new(vec![Secret::new("k1", REST_SECRET)]).unwrap();
    let cred = credentials::mint(&set, "session-2", now_unix(), 600).unwrap();
    let wrong_secret = SecretSet::new(vec![Secret::new("k1", "not-the-secret")]).unwrap();
    let forged = credentials::mint(&wrong_secret, "session-2", now_unix(), 600).unwrap();
    assert_eq!(cred.username, forged.username);
    let cases = [
        (
            "static user, wrong password",
            USER.to_string(),
            "wrong-pass".to_string(),
        ),
        ("unknown user", "mallory".to_string(), PASSWORD.to_string()),
        (
            "REST username, password from another secret",
            forged.username,
            forged.password,
        ),
    ];
    for (what, user, pass) in cases {
        let (client, tally) = new_client(server, &user, &pass).await.unwrap();
        let res = timeout(Duration::from_secs(10), client.allocate())
            .await
            .unwrap_or_else(|_| panic!("{what}: allocate hung for 10 s instead of failing"));
        let err = match res {
            Ok(relay) => panic!(
                "{what}: allocation succeeded with bad credentials: {:?}",
                relay.local_addr()
            ),
            Err(e) => e.to_string(),
        };
        let t = tally.lock().unwrap().errors.clone();
        eprintln!("[wrong] {what}: allocate failed: {err}; error responses {t:?}");
        assert!(err.contains("401"), "{what}: expected a 401, got {err}");
        // The challenge, then the refusal of the authenticated attempt.
        assert_eq!(
            t,
            vec![(ALLOCATE_ERROR, Some(401)), (ALLOCATE_ERROR, Some(401))],
            "{what}"
        );
        client.close().await.unwrap();
        assert_eq!(edge.allocations(), 0, "{what}: nothing may be allocated");
    }
    // Wait for the edge's published counters to include the three challenges. (The three
    // refusals of the authenticated attempts are not counted anywhere in `Stats` today.)
    let s = wait_stats(&edge, |s| s.challenges >= 3).await;
    eprintln!("[wrong] edge stats: {s:?}");
    assert_eq!(s.allocations_created, 0, "edge stats: {s:?}");
    drop(edge);
}
