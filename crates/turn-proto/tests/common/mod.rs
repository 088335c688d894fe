//! Shared harness for the server's integration tests: a [`Server`] driven by a virtual clock,
//! a fake I/O loop that binds relay sockets on the spot, and a tiny TURN client.
//!
//! Time never comes from the system after [`Harness`] is built: `t0` is read once, and every
//! later instant is `t0` plus a `Duration`. Timers fire only when a test moves the clock with
//! [`Harness::run_until`] / [`Harness::advance`], which call `handle_timeout` at each deadline
//! `poll_timeout` names, in order, exactly as an event loop would.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use turn_proto::codec::{
    attr, long_term_key, Class, Family, IntegrityKind, LongTermKey, Message, MessageBuilder,
    MessageType, Method, TransactionId,
};
use turn_proto::policy::{PeerPolicy, PeerPolicyConfig};
use turn_proto::server::{
    Authenticator, BoundRelay, Destination, Event, FiveTuple, Forward, RelayRequest,
    RelayTransport, Server, ServerConfig, SharedQuota, StaticUsers, Transmit, Transport,
    PEER_HEADROOM, PEER_TAILROOM,
};

/// The realm of `ServerConfig::default()`.
pub const REALM: &str = "cloudproxy";
/// Unix time at `t0`.
pub const UNIX_T0: u64 = 1_700_000_000;
/// The edge's listening address.
pub const SERVER_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 254)), 3478);
/// IPv4 address relay sockets are bound on.
pub const RELAY_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
/// IPv6 address relay sockets are bound on.
pub const RELAY_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1));
/// First relay port handed out; each bind takes the next even port.
pub const FIRST_RELAY_PORT: u16 = 50_000;

/// Seconds as a `Duration`.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A socket address from a literal.
pub fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address literal")
}

/// UDP client flow number `n` (client 192.0.2.n:40000+n).
pub fn udp(n: u8) -> FiveTuple {
    FiveTuple {
        transport: Transport::Udp,
        client: SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)),
            40_000 + u16::from(n),
        ),
        server: SERVER_ADDR,
    }
}

/// TCP client flow from 192.0.2.n:port.
pub fn tcp(n: u8, port: u16) -> FiveTuple {
    FiveTuple {
        transport: Transport::Tcp,
        client: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)), port),
        server: SERVER_ADDR,
    }
}

/// The peer policy of every test: RTN prefixes 203.0.113.0/24 and 2001:db8::/32.
pub fn policy() -> PeerPolicy {
    PeerPolicy::new(PeerPolicyConfig {
        rtn_prefixes: vec![
            "203.0.113.0/24".parse().expect("prefix"),
            "2001:db8::/32".parse().expect("prefix"),
        ],
        ..Default::default()
    })
}

/// alice/secret and bob/other.
pub fn users() -> StaticUsers {
    let mut u = StaticUsers::new();
    u.insert("alice", "secret");
    u.insert("bob", "other");
    u
}

/// REQUESTED-TRANSPORT for protocol number `proto` (17 UDP, 6 TCP).
pub fn requested_transport(b: &mut MessageBuilder<'_>, proto: u8) {
    b.add(attr::REQUESTED_TRANSPORT, &[proto, 0, 0, 0]);
}

/// Credentials to seal a request with.
pub struct Creds<'a> {
    pub user: &'a str,
    pub realm: &'a str,
    /// NONCE to send, or none at all (to provoke a 400).
    pub nonce: Option<&'a str>,
    pub key: &'a LongTermKey,
}

/// Builds a request: `extra` attributes, then USERNAME, REALM, NONCE and MESSAGE-INTEGRITY when
/// `creds` is given, then FINGERPRINT when asked.
pub fn request_bytes(
    method: Method,
    txid: TransactionId,
    extra: &dyn Fn(&mut MessageBuilder<'_>),
    creds: Option<Creds<'_>>,
    fingerprint: bool,
) -> Vec<u8> {
    let mut v = Vec::new();
    let mut b = MessageBuilder::new(&mut v, MessageType::new(method, Class::Request), txid);
    extra(&mut b);
    if let Some(c) = creds {
        b.add(attr::USERNAME, c.user.as_bytes());
        b.add(attr::REALM, c.realm.as_bytes());
        if let Some(n) = c.nonce {
            b.add(attr::NONCE, n.as_bytes());
        }
        b.integrity(IntegrityKind::Sha1, &c.key.0);
    }
    if fingerprint {
        b.fingerprint();
    }
    v
}

/// A TURN client: one flow and one set of credentials, remembering the last nonce.
#[derive(Debug, Clone)]
pub struct Client {
    pub tuple: FiveTuple,
    pub user: String,
    pub password: String,
    pub nonce: Option<String>,
    pub fingerprint: bool,
}

impl Client {
    pub fn new(tuple: FiveTuple, user: &str, password: &str) -> Self {
        Self {
            tuple,
            user: user.to_owned(),
            password: password.to_owned(),
            nonce: None,
            fingerprint: true,
        }
    }

    /// alice on flow `tuple`.
    pub fn alice(tuple: FiveTuple) -> Self {
        Self::new(tuple, "alice", "secret")
    }

    /// bob on flow `tuple`.
    pub fn bob(tuple: FiveTuple) -> Self {
        Self::new(tuple, "bob", "other")
    }

    /// The same credentials (and nonce) on another flow.
    pub fn on(&self, tuple: FiveTuple) -> Self {
        Self {
            tuple,
            ..self.clone()
        }
    }

    pub fn key(&self) -> LongTermKey {
        long_term_key(&self.user, REALM, &self.password)
    }

    /// The request bytes: authenticated when a nonce is known.
    pub fn build(
        &self,
        method: Method,
        txid: TransactionId,
        extra: &dyn Fn(&mut MessageBuilder<'_>),
    ) -> Vec<u8> {
        let key = self.key();
        let creds = self.nonce.as_deref().map(|n| Creds {
            user: &self.user,
            realm: REALM,
            nonce: Some(n),
            key: &key,
        });
        request_bytes(method, txid, extra, creds, self.fingerprint)
    }
}

/// A message the server sent, kept as bytes; decoded on demand.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.msg();
        let err = m.error_code().ok().flatten();
        f.debug_struct("Response")
            .field("type", &m.message_type())
            .field("error", &err.map(|e| (e.code, e.reason.to_owned())))
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl Response {
    pub fn msg(&self) -> Message<'_> {
        Message::decode(&self.bytes).expect("the server sent a well-formed STUN message")
    }

    pub fn message_type(&self) -> MessageType {
        self.msg().message_type()
    }

    pub fn class(&self) -> Class {
        self.msg().class()
    }

    pub fn txid(&self) -> TransactionId {
        *self.msg().transaction_id()
    }

    /// The ERROR-CODE number, if any.
    pub fn code(&self) -> Option<u16> {
        self.msg()
            .error_code()
            .expect("well-formed ERROR-CODE")
            .map(|e| e.code)
    }

    pub fn reason(&self) -> Option<String> {
        self.msg()
            .error_code()
            .expect("well-formed ERROR-CODE")
            .map(|e| e.reason.to_owned())
    }

    pub fn get(&self, t: u16) -> Option<Vec<u8>> {
        self.msg().get(t).map(<[u8]>::to_vec)
    }

    pub fn has(&self, t: u16) -> bool {
        self.msg().get(t).is_some()
    }

    pub fn xor(&self, t: u16) -> Option<SocketAddr> {
        self.msg().xor_address(t).expect("well-formed address")
    }

    pub fn xors(&self, t: u16) -> Vec<SocketAddr> {
        self.msg()
            .xor_addresses(t)
            .map(|a| a.expect("well-formed address"))
            .collect()
    }

    pub fn u32(&self, t: u16) -> Option<u32> {
        self.msg().u32_attr(t).expect("32-bit attribute")
    }

    pub fn text(&self, t: u16) -> Option<String> {
        self.msg()
            .text(t)
            .expect("UTF-8 attribute")
            .map(str::to_owned)
    }

    pub fn nonce(&self) -> Option<String> {
        self.text(attr::NONCE)
    }

    pub fn lifetime(&self) -> Option<u32> {
        self.u32(attr::LIFETIME)
    }

    /// The (first) XOR-RELAYED-ADDRESS.
    pub fn relayed(&self) -> SocketAddr {
        self.xor(attr::XOR_RELAYED_ADDRESS)
            .expect("XOR-RELAYED-ADDRESS")
    }

    pub fn integrity_ok(&self, key: &LongTermKey) -> bool {
        self.msg().verify_integrity(IntegrityKind::Sha1, &key.0)
    }

    /// Asserts a success response of `method`.
    #[track_caller]
    pub fn assert_success(&self, method: Method) -> &Self {
        assert_eq!(
            self.message_type(),
            MessageType::new(method, Class::Success),
            "expected {method:?} success, got {self:?}"
        );
        self
    }

    /// Asserts an error response of `method` with `code`.
    #[track_caller]
    pub fn assert_error(&self, method: Method, code: u16) -> &Self {
        assert_eq!(
            (self.message_type(), self.code()),
            (MessageType::new(method, Class::Error), Some(code)),
            "expected {method:?} error {code}, got {self:?}"
        );
        self
    }
}

/// How to build a [`Harness`].
pub struct Setup {
    pub config: ServerConfig,
    pub quota_total: usize,
    pub auth: Box<dyn Authenticator>,
    pub auto_bind: bool,
    /// The edge-wide ledger of another harness (another shard of the same edge).
    pub quota: Option<Arc<SharedQuota>>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            config: ServerConfig::default(),
            quota_total: 1000,
            auth: Box::new(users()),
            auto_bind: true,
            quota: None,
        }
    }
}

impl Setup {
    pub fn config(mut self, f: impl FnOnce(&mut ServerConfig)) -> Self {
        f(&mut self.config);
        self
    }

    pub fn quota_total(mut self, n: usize) -> Self {
        self.quota_total = n;
        self
    }

    pub fn auth(mut self, a: impl Authenticator + 'static) -> Self {
        self.auth = Box::new(a);
        self
    }

    /// Share `other`'s edge-wide ledger: this harness is another shard of the same edge.
    pub fn shard_of(mut self, other: &Harness) -> Self {
        self.quota = Some(other.quota.clone());
        self
    }

    /// Leave `Event::BindRelay` unanswered (collected in `Harness::deferred_binds`).
    pub fn manual_bind(mut self) -> Self {
        self.auto_bind = false;
        self
    }

    pub fn build(self) -> Harness {
        let t0 = Instant::now();
        let quota = self
            .quota
            .unwrap_or_else(|| SharedQuota::new(self.quota_total));
        let server = Server::new(self.config, self.auth, policy(), quota.clone(), t0, UNIX_T0);
        Harness {
            server,
            t0,
            now: t0,
            quota,
            transmits: VecDeque::new(),
            events: Vec::new(),
            bind_requests: Vec::new(),
            deferred_binds: Vec::new(),
            auto_bind: self.auto_bind,
            fired: Vec::new(),
            next_port: FIRST_RELAY_PORT,
            next_txid: 1,
        }
    }
}

/// The server, a virtual clock and a fake I/O loop.
pub struct Harness {
    pub server: Server,
    pub t0: Instant,
    pub now: Instant,
    pub quota: Arc<SharedQuota>,
    /// Control packets not yet claimed by a test.
    pub transmits: VecDeque<Transmit>,
    /// Every event but `BindRelay`, in order.
    pub events: Vec<Event>,
    /// Every `BindRelay` request, in order.
    pub bind_requests: Vec<RelayRequest>,
    /// `BindRelay` requests left unanswered (manual bind mode).
    pub deferred_binds: Vec<RelayRequest>,
    pub auto_bind: bool,
    /// Deadlines at which `handle_timeout` was called.
    pub fired: Vec<Instant>,
    next_port: u16,
    next_txid: u64,
}

impl Harness {
    pub fn new() -> Self {
        Setup::default().build()
    }

    pub fn setup() -> Setup {
        Setup::default()
    }

    /// `t0 + d`.
    pub fn at(&self, d: Duration) -> Instant {
        self.t0 + d
    }

    /// A fresh transaction id.
    pub fn txid(&mut self) -> TransactionId {
        let mut t = [0u8; 12];
        t[..4].copy_from_slice(b"test");
        t[4..].copy_from_slice(&self.next_txid.to_be_bytes());
        self.next_txid += 1;
        t
    }

    /// Drains the server's outputs, answering `BindRelay` like an I/O layer would.
    pub fn pump(&mut self) {
        loop {
            let mut again = false;
            while let Some(t) = self.server.poll_transmit() {
                self.transmits.push_back(t);
            }
            while let Some(ev) = self.server.poll_event() {
                match ev {
                    Event::BindRelay(req) => {
                        self.bind_requests.push(req);
                        if self.auto_bind {
                            let bound = self.bind(req);
                            self.server.handle_relay_bound(self.now, req, Ok(bound));
                            again = true;
                        } else {
                            self.deferred_binds.push(req);
                        }
                    }
                    other => self.events.push(other),
                }
            }
            if !again {
                break;
            }
        }
    }

    /// The socket the fake I/O layer binds for `req`: the held one for a reservation,
    /// otherwise the next even port, plus the odd one above it when `reserve_next`.
    pub fn bind(&mut self, req: RelayRequest) -> BoundRelay {
        if let Some(held) = req.use_reserved {
            return BoundRelay {
                relay: held,
                reserved: None,
            };
        }
        let ip = match req.family {
            Family::V4 => RELAY_V4,
            Family::V6 => RELAY_V6,
        };
        let port = self.next_port;
        self.next_port += 2;
        BoundRelay {
            relay: SocketAddr::new(ip, port),
            reserved: req.reserve_next.then(|| SocketAddr::new(ip, port + 1)),
        }
    }

    /// Answers a deferred `BindRelay`.
    pub fn answer_bind(&mut self, req: RelayRequest, result: Result<BoundRelay, ()>) {
        self.server.handle_relay_bound(self.now, req, result);
        self.pump();
    }

    /// Moves the clock to `target`, calling `handle_timeout` at every deadline on the way.
    pub fn run_until(&mut self, target: Instant) {
        assert!(target >= self.now, "time goes forward only");
        while let Some(at) = self.server.poll_timeout() {
            if at > target {
                break;
            }
            let at = at.max(self.now);
            self.now = at;
            self.fired.push(at);
            self.server.handle_timeout(at);
            self.pump();
        }
        self.now = target;
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Moves the clock to `t0 + d`.
    pub fn advance_to(&mut self, d: Duration) {
        self.run_until(self.t0 + d);
    }

    /// Feeds bytes from a client.
    pub fn send(&mut self, from: FiveTuple, bytes: &[u8]) -> Forward {
        let f = self.server.handle_client(self.now, from, bytes);
        self.pump();
        f
    }

    /// Takes the queued message to `to` with transaction id `txid`, if any.
    pub fn take_response(&mut self, to: FiveTuple, txid: TransactionId) -> Option<Response> {
        let i = self.transmits.iter().position(|t| {
            t.destination == Destination::Client(to) && t.data.len() >= 20 && t.data[8..20] == txid
        })?;
        let t = self.transmits.remove(i).expect("index");
        Some(Response { bytes: t.data })
    }

    #[track_caller]
    pub fn expect_response(&mut self, to: FiveTuple, txid: TransactionId) -> Response {
        match self.take_response(to, txid) {
            Some(r) => r,
            None => panic!(
                "no response to {txid:?} for {to:?}; queued: {:?}",
                self.transmits
            ),
        }
    }

    /// Every queued message to `to`, drained.
    pub fn take_all_to(&mut self, to: FiveTuple) -> Vec<Response> {
        let mut out = Vec::new();
        self.transmits.retain(|t| {
            if t.destination == Destination::Client(to) {
                out.push(Response {
                    bytes: t.data.clone(),
                });
                false
            } else {
                true
            }
        });
        out
    }

    /// Sends `bytes` and returns the response with the same transaction id.
    #[track_caller]
    pub fn exchange(&mut self, from: FiveTuple, bytes: &[u8]) -> Response {
        let txid: TransactionId = bytes[8..20].try_into().expect("txid");
        let f = self.send(from, bytes);
        assert_eq!(f, Forward::None, "a request is never relayed");
        self.expect_response(from, txid)
    }

    /// Sends a request as `c`, doing the 401 (first contact) and 438 (stale nonce) dance, and
    /// returns the final answer.
    #[track_caller]
    pub fn request(
        &mut self,
        c: &mut Client,
        method: Method,
        extra: impl Fn(&mut MessageBuilder<'_>),
    ) -> Response {
        for _ in 0..3 {
            let txid = self.txid();
            let authed = c.nonce.is_some();
            let bytes = c.build(method, txid, &extra);
            let r = self.exchange(c.tuple, &bytes);
            match r.code() {
                Some(401) if !authed => {
                    c.nonce = Some(r.nonce().expect("401 challenge carries NONCE"));
                }
                Some(438) => {
                    c.nonce = Some(r.nonce().expect("438 carries a fresh NONCE"));
                }
                _ => return r,
            }
        }
        panic!("no final answer after three tries")
    }

    /// Gets a nonce for `c` from the 401 an unauthenticated Refresh earns (no state changes).
    #[track_caller]
    pub fn learn_nonce(&mut self, c: &mut Client) -> String {
        let txid = self.txid();
        let bytes = request_bytes(Method::Refresh, txid, &|_| {}, None, c.fingerprint);
        let r = self.exchange(c.tuple, &bytes);
        r.assert_error(Method::Refresh, 401);
        let nonce = r.nonce().expect("401 challenge carries NONCE");
        c.nonce = Some(nonce.clone());
        nonce
    }

    /// Like [`Self::request`] with a given transaction id and no retry (the client must know a
    /// nonce already).
    #[track_caller]
    pub fn request_txid(
        &mut self,
        c: &Client,
        method: Method,
        txid: TransactionId,
        extra: impl Fn(&mut MessageBuilder<'_>),
    ) -> Response {
        assert!(c.nonce.is_some(), "request_txid needs a known nonce");
        let bytes = c.build(method, txid, &extra);
        self.exchange(c.tuple, &bytes)
    }

    /// Allocate with REQUESTED-TRANSPORT UDP, plus `extra`.
    #[track_caller]
    pub fn allocate_with(
        &mut self,
        c: &mut Client,
        extra: impl Fn(&mut MessageBuilder<'_>),
    ) -> Response {
        self.request(c, Method::Allocate, |b| {
            requested_transport(b, 17);
            extra(b);
        })
    }

    /// A successful UDP allocation; returns the relayed address.
    #[track_caller]
    pub fn allocate(&mut self, c: &mut Client) -> SocketAddr {
        let r = self.allocate_with(c, |_| {});
        r.assert_success(Method::Allocate);
        r.relayed()
    }

    /// CreatePermission for `peers`.
    #[track_caller]
    pub fn create_permission(&mut self, c: &mut Client, peers: &[SocketAddr]) -> Response {
        let peers = peers.to_vec();
        self.request(c, Method::CreatePermission, move |b| {
            for p in &peers {
                b.add_xor_address(attr::XOR_PEER_ADDRESS, *p);
            }
        })
    }

    /// ChannelBind `number` to `peer`.
    #[track_caller]
    pub fn channel_bind(&mut self, c: &mut Client, number: u16, peer: SocketAddr) -> Response {
        self.request(c, Method::ChannelBind, move |b| {
            b.add(
                attr::CHANNEL_NUMBER,
                &[(number >> 8) as u8, number as u8, 0, 0],
            );
            b.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
        })
    }

    /// Refresh, with LIFETIME when given.
    #[track_caller]
    pub fn refresh(&mut self, c: &mut Client, lifetime: Option<u32>) -> Response {
        self.request(c, Method::Refresh, move |b| {
            if let Some(l) = lifetime {
                b.add_u32(attr::LIFETIME, l);
            }
        })
    }

    /// A Send indication from `c` to `peer` carrying `data`; returns the bytes and the verdict.
    pub fn send_indication(
        &mut self,
        c: &Client,
        peer: SocketAddr,
        data: &[u8],
    ) -> (Vec<u8>, Forward) {
        let txid = self.txid();
        let mut v = Vec::new();
        let mut b = MessageBuilder::new(
            &mut v,
            MessageType::new(Method::Send, Class::Indication),
            txid,
        );
        b.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
        b.add(attr::DATA, data);
        let f = self.send(c.tuple, &v);
        (v, f)
    }

    /// A ChannelData message from `c` (padded to 4 bytes on stream flows).
    pub fn channel_data(&mut self, c: &Client, number: u16, data: &[u8]) -> (Vec<u8>, Forward) {
        let mut v = Vec::with_capacity(4 + data.len() + 3);
        v.extend_from_slice(&number.to_be_bytes());
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(data);
        if c.tuple.transport.is_stream() {
            while v.len() % 4 != 0 {
                v.push(0);
            }
        }
        let f = self.send(c.tuple, &v);
        (v, f)
    }

    /// A datagram from `peer` arriving on relay socket `relay`; returns the buffer (header
    /// written in place) and the verdict.
    pub fn peer_datagram(
        &mut self,
        relay: SocketAddr,
        peer: SocketAddr,
        payload: &[u8],
    ) -> (Vec<u8>, Forward) {
        let mut buf = vec![0xEEu8; PEER_HEADROOM + payload.len() + PEER_TAILROOM];
        buf[PEER_HEADROOM..PEER_HEADROOM + payload.len()].copy_from_slice(payload);
        let f = self
            .server
            .handle_peer(self.now, relay, peer, &mut buf, payload.len());
        self.pump();
        (buf, f)
    }

    /// Events recorded so far, drained.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Relay addresses released so far (from `ReleaseRelay` events, not drained).
    pub fn released(&self) -> Vec<SocketAddr> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::ReleaseRelay { relay, .. } => Some(*relay),
                _ => None,
            })
            .collect()
    }

    /// Transport of a released relay, if released.
    pub fn released_transport(&self, addr: SocketAddr) -> Option<RelayTransport> {
        self.events.iter().find_map(|e| match e {
            Event::ReleaseRelay { relay, transport } if *relay == addr => Some(*transport),
            _ => None,
        })
    }

    /// Payload a `Forward::ToPeer` or `Forward::ToClient` points at.
    #[track_caller]
    pub fn forwarded<'b>(f: &Forward, buf: &'b [u8]) -> &'b [u8] {
        match f {
            Forward::ToPeer { range, .. } | Forward::ToClient { range, .. } => &buf[range.clone()],
            Forward::None => panic!("nothing forwarded"),
        }
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}
