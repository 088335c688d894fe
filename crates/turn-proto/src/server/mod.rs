//! The TURN server state machine (RFC 8656, RFC 6062), sans-IO.
//!
//! # Contract
//!
//! One [`Server`] serves one shard of an edge: a set of listener sockets and the relay sockets
//! of the allocations made through them. It never reads a clock or touches a socket.
//!
//! Inputs (`handle_*`) carry the current time:
//! - [`Server::handle_client`]: a datagram (UDP) or a whole frame (TCP/TLS, cut with
//!   [`crate::codec::frame_len`]) from a client;
//! - [`Server::handle_peer`]: a datagram that arrived on a UDP relay socket;
//! - [`Server::handle_relay_bound`]: the I/O layer's answer to [`Event::BindRelay`];
//! - [`Server::handle_peer_connected`], [`Server::handle_peer_connection`],
//!   [`Server::handle_connection_closed`]: RFC 6062 TCP relaying;
//! - [`Server::handle_client_closed`]: a TCP/TLS client connection ended;
//! - [`Server::handle_timeout`]: the deadline from [`Server::poll_timeout`] has passed.
//!
//! Outputs: after each input, drain [`Server::poll_transmit`] and [`Server::poll_event`] until
//! both return `None`, then sleep until [`Server::poll_timeout`].
//!
//! Relayed data takes a faster road: `handle_client` and `handle_peer` return a [`Forward`]
//! naming the socket, the destination and the byte range of the caller's own buffer to send,
//! so a relayed packet is never copied or allocated by this crate.

mod allocate;
mod allocation;
mod auth;
mod config;
mod error;
mod quota;
mod relay;
mod tcp;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info};

pub use allocation::RelayTransport;
pub use auth::{AuthError, Authenticator, Credentials, StaticUsers};
pub use config::ServerConfig;
pub use error::Refusal;
pub use quota::SharedQuota;
pub use tcp::connection_bind_shard;

use crate::codec::{
    attr, ChannelData, Class, DecodeError, Family, IntegrityKind, LongTermKey, Message,
    MessageBuilder, MessageType, Method, TransactionId,
};
use crate::policy::PeerPolicy;
use allocation::Allocation;
use auth::Nonces;
use relay::write_data_indication;

/// Bytes the caller keeps free before a peer datagram in the buffer given to
/// [`Server::handle_peer`], so the ChannelData or Data indication header can be written in
/// place: 20 (STUN header) + 24 (XOR-PEER-ADDRESS, IPv6) + 4 (DATA header).
pub const PEER_HEADROOM: usize = 48;
/// Bytes the caller keeps free after a peer datagram: room for padding to 4 bytes.
pub const PEER_TAILROOM: usize = 4;

/// How a client reaches the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TURN over UDP.
    Udp,
    /// TURN over TCP.
    Tcp,
    /// TURN over TLS (over TCP).
    Tls,
}

impl Transport {
    /// Stream transports need ChannelData padded to 4 bytes and carry RFC 6062 allocations.
    pub fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// A client flow: the transport, the client's address and the edge address it reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// Transport protocol.
    pub transport: Transport,
    /// The client's address (as seen by the edge).
    pub client: SocketAddr,
    /// The edge's listening address.
    pub server: SocketAddr,
}

/// Where a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// To a client, on the flow it came from.
    Client(FiveTuple),
    /// To a peer, from a relay socket.
    Peer {
        /// The relay socket's address.
        relay: SocketAddr,
        /// The peer.
        peer: SocketAddr,
    },
}

/// A control packet the server wants sent (responses and indications).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub destination: Destination,
    /// The bytes.
    pub data: Vec<u8>,
}

/// The fast-path verdict on one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// Nothing to relay (a control message, handled; or a packet dropped and counted).
    None,
    /// Send `buf[range]` from relay socket `relay` to `peer`.
    ToPeer {
        /// Relay socket.
        relay: SocketAddr,
        /// Peer.
        peer: SocketAddr,
        /// Bytes of the input buffer to send.
        range: Range<usize>,
    },
    /// Send `buf[range]` to the client on `client`.
    ToClient {
        /// The client flow.
        client: FiveTuple,
        /// Bytes of the input buffer to send.
        range: Range<usize>,
    },
}

/// A request for a relay socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayRequest {
    /// Echo this in [`Server::handle_relay_bound`].
    pub token: u64,
    /// Address family.
    pub family: Family,
    /// UDP socket or TCP listener.
    pub transport: RelayTransport,
    /// EVEN-PORT was requested: the port must be even.
    pub even_port: bool,
    /// EVEN-PORT with R = 1: also bind the next port (odd) and hold it, reported in
    /// [`BoundRelay::reserved`].
    pub reserve_next: bool,
    /// Use the socket held at this address by an earlier reservation instead of binding.
    pub use_reserved: Option<SocketAddr>,
    /// DONT-FRAGMENT was requested: set the DF bit on relayed datagrams.
    pub dont_fragment: bool,
}

/// A relay socket bound for a [`RelayRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundRelay {
    /// The socket's address.
    pub relay: SocketAddr,
    /// The next port, bound and held (not read) when `reserve_next` was asked.
    pub reserved: Option<SocketAddr>,
}

/// Work for the I/O layer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Bind a relay socket and answer with [`Server::handle_relay_bound`].
    BindRelay(RelayRequest),
    /// Close this relay socket: its allocation is gone.
    ReleaseRelay {
        /// The socket's address.
        relay: SocketAddr,
        /// Its transport.
        transport: RelayTransport,
    },
    /// RFC 6062: open a TCP connection from `relay` to `peer`, then call
    /// [`Server::handle_peer_connected`].
    ConnectPeer {
        /// Connection id.
        connection: u32,
        /// Source address (the relayed transport address).
        relay: SocketAddr,
        /// Destination.
        peer: SocketAddr,
    },
    /// RFC 6062: splice the client data connection `client` with peer connection
    /// `connection`. The success response to ConnectionBind is queued before this event; write
    /// it first, then relay raw bytes both ways.
    SpliceConnection {
        /// Connection id.
        connection: u32,
        /// The client's data connection.
        client: FiveTuple,
    },
    /// RFC 6062: close the peer connection (and its data connection, if spliced).
    CloseConnection {
        /// Connection id.
        connection: u32,
    },
    /// Close this client connection (a stream that sent something we cannot resync from).
    CloseClient(FiveTuple),
}

/// Counters of one shard; the I/O layer sums them across shards for metrics.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Allocations created.
    pub allocations_created: u64,
    /// Allocations that expired or were deleted.
    pub allocations_removed: u64,
    /// Allocations alive now on this shard.
    pub allocations_active: u64,
    /// Requests refused, any code.
    pub requests_refused: u64,
    /// 401 challenges sent (requests without credentials: the normal first round trip).
    pub challenges: u64,
    /// Requests with credentials refused 401 (wrong password, unknown or expired user, wrong
    /// realm): also counted in `requests_refused`. A rising rate means guessing or broken
    /// credential minting.
    pub auth_failures: u64,
    /// Peer addresses refused by policy (requests answered 403, Send indications dropped).
    pub policy_denied: u64,
    /// Malformed packets dropped or answered 400.
    pub malformed: u64,
    /// Packets relayed client → peer.
    pub to_peer_packets: u64,
    /// Bytes relayed client → peer.
    pub to_peer_bytes: u64,
    /// Packets relayed peer → client.
    pub to_client_packets: u64,
    /// Bytes relayed peer → client.
    pub to_client_bytes: u64,
    /// Packets dropped for lack of an allocation, permission or channel.
    pub dropped_no_route: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Allocation { slot: u32, generation: u32 },
    Connection { id: u32 },
    Reservation { token: u64 },
    Sweep,
}

/// What an authenticated request carries forward into its response.
struct Auth {
    key: LongTermKey,
    kind: IntegrityKind,
    username: Arc<str>,
    quota_user: Arc<str>,
}

/// How a response is sealed: nothing, or MESSAGE-INTEGRITY(-SHA256) with the key.
#[derive(Clone, Copy)]
struct Seal<'k> {
    integrity: Option<(IntegrityKind, &'k LongTermKey)>,
    fingerprint: bool,
}

struct PendingAllocation {
    client: FiveTuple,
    txid: TransactionId,
    auth_kind: IntegrityKind,
    key: LongTermKey,
    username: Arc<str>,
    quota_user: Arc<str>,
    lifetime: Duration,
    transport: RelayTransport,
    fingerprint: bool,
    /// One entry per family asked for; filled by `handle_relay_bound`.
    parts: Vec<(Family, Option<Result<SocketAddr, ()>>)>,
    /// The held next port of an EVEN-PORT R = 1 request.
    reserved: Option<SocketAddr>,
}

/// The TURN server for one shard. See the module docs for the I/O contract.
pub struct Server {
    config: ServerConfig,
    auth: Box<dyn Authenticator>,
    policy: PeerPolicy,
    quota: Arc<SharedQuota>,
    nonces: Nonces,
    wall: (Instant, u64),
    slots: Vec<Option<Allocation>>,
    free: Vec<u32>,
    next_generation: u32,
    by_client: HashMap<FiveTuple, u32>,
    by_relay: HashMap<SocketAddr, u32>,
    pending: HashMap<u64, PendingAllocation>,
    /// RESERVATION-TOKEN → (held relay address, expiry).
    next_token: u64,
    connections: HashMap<u32, tcp::Connection>,
    next_connection: u32,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    scratch: Vec<u8>,
}

impl Server {
    /// A server starting at `now`, when the Unix time is `unix_now` seconds. The Unix time is
    /// needed for REST credential expiry and nonces; it then advances with `now`. Call
    /// [`Self::set_wall_clock`] now and then to correct drift.
    pub fn new(
        config: ServerConfig,
        auth: Box<dyn Authenticator>,
        policy: PeerPolicy,
        quota: Arc<SharedQuota>,
        now: Instant,
        unix_now: u64,
    ) -> Self {
        let nonces = Nonces::new(
            config.nonce_key.clone(),
            config.nonce_lifetime.as_secs().max(1),
        );
        let mut timers = BinaryHeap::new();
        timers.push(Reverse((now + SWEEP_INTERVAL, Timer::Sweep)));
        Self {
            config,
            auth,
            policy,
            quota,
            nonces,
            wall: (now, unix_now),
            slots: Vec::new(),
            free: Vec::new(),
            next_generation: 1,
            by_client: HashMap::new(),
            by_relay: HashMap::new(),
            pending: HashMap::new(),
            next_token: 1,
            connections: HashMap::new(),
            next_connection: 1,
            timers,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            scratch: Vec::with_capacity(256),
        }
    }

    /// Re-anchors Unix time.
    pub fn set_wall_clock(&mut self, now: Instant, unix_now: u64) {
        self.wall = (now, unix_now);
    }

    /// Replaces the authenticator (for example after a secret rotation).
    pub fn set_authenticator(&mut self, auth: Box<dyn Authenticator>) {
        self.auth = auth;
    }

    fn unix(&self, now: Instant) -> u64 {
        self.wall.1 + now.saturating_duration_since(self.wall.0).as_secs()
    }

    /// Counts a datagram the I/O layer dropped because it could not read it whole (longer
    /// than its receive slot), as [`Stats::malformed`].
    pub fn count_unreadable(&mut self) {
        self.stats.malformed += 1;
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Next control packet to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next piece of I/O work.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Whether this client flow holds an allocation (an idle TCP connection that does may stay).
    pub fn has_allocation(&self, client: &FiveTuple) -> bool {
        self.by_client.contains_key(client)
    }

    /// Whether `relay` is a relay address of this shard (for routing peer packets).
    pub fn owns_relay(&self, relay: SocketAddr) -> bool {
        self.by_relay.contains_key(&relay)
    }

    /// Expires what is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Allocation { slot, generation } => {
                    let due = match self.slots.get(slot as usize).and_then(Option::as_ref) {
                        Some(a) if a.generation == generation => Some(a.expires),
                        _ => None,
                    };
                    match due {
                        Some(expires) if expires <= now => {
                            debug!(slot, "allocation expired");
                            self.remove_allocation(slot);
                        }
                        Some(expires) => self.timers.push(Reverse((expires, timer))),
                        None => {}
                    }
                }
                Timer::Connection { id } => self.connection_timeout(now, id),
                Timer::Reservation { token } => self.reservation_timeout(now, token),
                Timer::Sweep => {
                    for a in self.slots.iter_mut().flatten() {
                        a.sweep(now);
                    }
                    self.timers
                        .push(Reverse((now + SWEEP_INTERVAL, Timer::Sweep)));
                }
            }
        }
    }

    /// Handles one datagram or stream frame from a client. Relayed data comes back as a
    /// [`Forward`] pointing into `buf`; everything else is queued.
    pub fn handle_client(&mut self, now: Instant, from: FiveTuple, buf: &[u8]) -> Forward {
        match buf.first().map(|b| b >> 6) {
            Some(0b01) => self.client_channel_data(now, from, buf),
            Some(0b00) => match Message::decode(buf) {
                Ok(msg) => self.client_message(now, from, &msg),
                Err(e) => self.malformed(from, buf, e),
            },
            _ => {
                self.stats.malformed += 1;
                debug!(client = %from.client, "dropped: neither STUN nor ChannelData");
                Forward::None
            }
        }
    }

    fn malformed(&mut self, from: FiveTuple, buf: &[u8], e: DecodeError) -> Forward {
        self.stats.malformed += 1;
        // Answer 400 when the header is sound enough to address a response to a request;
        // otherwise drop silently (RFC 8489 §6.3: malformed messages are discarded).
        if buf.len() >= 20
            && buf[4..8] == crate::codec::MAGIC_COOKIE.to_be_bytes()
            && MessageType::from_u16(u16::from_be_bytes([buf[0], buf[1]])).class == Class::Request
        {
            let typ = MessageType::from_u16(u16::from_be_bytes([buf[0], buf[1]]));
            let txid: TransactionId = buf[8..20].try_into().expect("12 bytes");
            info!(client = %from.client, error = %e, "400: malformed request");
            self.respond_error(
                from,
                typ,
                txid,
                Refusal::BadRequest("Malformed message"),
                None,
                false,
            );
        } else {
            debug!(client = %from.client, error = %e, "dropped malformed message");
        }
        Forward::None
    }

    fn client_channel_data(&mut self, now: Instant, from: FiveTuple, buf: &[u8]) -> Forward {
        let cd = match ChannelData::decode(buf) {
            Ok(cd) => cd,
            Err(e) => {
                self.stats.malformed += 1;
                debug!(client = %from.client, error = %e, "dropped malformed ChannelData");
                return Forward::None;
            }
        };
        let Some(a) = self
            .by_client
            .get(&from)
            .and_then(|&s| self.slots[s as usize].as_ref())
        else {
            self.stats.dropped_no_route += 1;
            return Forward::None;
        };
        let Some(ch) = a.channel_by_number(cd.channel, now) else {
            self.stats.dropped_no_route += 1;
            return Forward::None;
        };
        let peer = ch.peer;
        let Some(relay) = a.relay_for(peer) else {
            self.stats.dropped_no_route += 1;
            return Forward::None;
        };
        if !a.has_permission(peer.ip(), now) {
            self.stats.dropped_no_route += 1;
            return Forward::None;
        }
        self.stats.to_peer_packets += 1;
        self.stats.to_peer_bytes += cd.data.len() as u64;
        Forward::ToPeer {
            relay,
            peer,
            range: 4..4 + cd.data.len(),
        }
    }

    /// Handles a datagram from `peer` on UDP relay socket `relay`. The payload is
    /// `buf[PEER_HEADROOM..PEER_HEADROOM + len]`, and `buf` has [`PEER_TAILROOM`] bytes after
    /// it. The header is written into the headroom in place.
    pub fn handle_peer(
        &mut self,
        now: Instant,
        relay: SocketAddr,
        peer: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> Forward {
        let end = PEER_HEADROOM + len;
        if buf.len() < end + PEER_TAILROOM || len > u16::MAX as usize - 64 {
            self.stats.dropped_no_route += 1;
            return Forward::None;
        }
        let Some(a) = self
            .by_relay
            .get(&relay)
            .and_then(|&s| self.slots[s as usize].as_ref())
        else {
            self.stats.dropped_no_route += 1;
            return Forward::None;
        };
        if !a.has_permission(peer.ip(), now) {
            self.stats.dropped_no_route += 1;
            return Forward::None;
        }
        let client = a.client;
        let start = if let Some(ch) = a.channel_by_peer(peer, now) {
            let start = PEER_HEADROOM - 4;
            ChannelData::write_header(ch.number, len as u16, &mut buf[start..PEER_HEADROOM]);
            start
        } else {
            write_data_indication(peer, buf, len)
        };
        let mut stop = end;
        if client.transport.is_stream() || start != PEER_HEADROOM - 4 {
            let pad = (4 - len % 4) % 4;
            buf[end..end + pad].fill(0);
            stop += pad;
        }
        self.stats.to_client_packets += 1;
        self.stats.to_client_bytes += len as u64;
        Forward::ToClient {
            client,
            range: start..stop,
        }
    }

    fn client_message(&mut self, now: Instant, from: FiveTuple, msg: &Message<'_>) -> Forward {
        let typ = msg.message_type();
        match typ.class {
            Class::Indication => match typ.method {
                Method::Send => self.send_indication(now, from, msg),
                _ => {
                    debug!(client = %from.client, %typ, "ignored indication");
                    Forward::None
                }
            },
            Class::Request => {
                self.request(now, from, msg);
                Forward::None
            }
            // We send no requests, so responses are unexpected.
            Class::Success | Class::Error => Forward::None,
        }
    }

    fn send_indication(&mut self, now: Instant, from: FiveTuple, msg: &Message<'_>) -> Forward {
        let Some(&slot) = self.by_client.get(&from) else {
            self.stats.dropped_no_route += 1;
            return Forward::None;
        };
        let (Ok(Some(peer)), Some(range)) = (
            msg.xor_address(attr::XOR_PEER_ADDRESS),
            msg.range_of(attr::DATA),
        ) else {
            self.stats.malformed += 1;
            return Forward::None;
        };
        let peer = match self.policy.check(peer) {
            Ok(p) => p,
            Err(why) => {
                self.stats.policy_denied += 1;
                info!(client = %from.client, %peer, reason = why.reason(), "Send dropped: peer denied by policy");
                return Forward::None;
            }
        };
        let a = self.slots[slot as usize]
            .as_ref()
            .expect("indexed allocation exists");
        if a.transport != RelayTransport::Udp || !a.has_permission(peer.ip(), now) {
            self.stats.dropped_no_route += 1;
            return Forward::None;
        }
        let Some(relay) = a.relay_for(peer) else {
            self.stats.dropped_no_route += 1;
            return Forward::None;
        };
        self.stats.to_peer_packets += 1;
        self.stats.to_peer_bytes += range.len() as u64;
        Forward::ToPeer { relay, peer, range }
    }

    fn request(&mut self, now: Instant, from: FiveTuple, msg: &Message<'_>) {
        let typ = msg.message_type();
        let txid = *msg.transaction_id();
        let fp = msg.has_fingerprint() || self.config.always_fingerprint;
        // RFC 8489 §6.3.1: any request, Binding included, with an unknown
        // comprehension-required attribute is answered 420.
        if !msg.unknown_required().is_empty() {
            let unknown: Vec<u16> = msg.unknown_required().to_vec();
            info!(client = %from.client, %typ, ?unknown, "420: unknown comprehension-required attributes");
            self.stats.requests_refused += 1;
            let mut b = MessageBuilder::new(&mut self.scratch, typ.error(), txid);
            b.add_error(420, "Unknown Attribute");
            b.add_unknown_attributes(&unknown);
            if fp {
                b.fingerprint();
            }
            self.queue(Destination::Client(from));
            return;
        }
        if typ.method == Method::Binding {
            let mut b = MessageBuilder::new(&mut self.scratch, typ.success(), txid);
            b.add_xor_address(attr::XOR_MAPPED_ADDRESS, from.client);
            if fp {
                b.fingerprint();
            }
            self.queue(Destination::Client(from));
            return;
        }
        if !matches!(
            typ.method,
            Method::Allocate
                | Method::Refresh
                | Method::CreatePermission
                | Method::ChannelBind
                | Method::Connect
                | Method::ConnectionBind
        ) {
            info!(client = %from.client, %typ, "400: unknown method");
            self.respond_error(
                from,
                typ,
                txid,
                Refusal::BadRequest("Unknown method"),
                None,
                fp,
            );
            return;
        }
        let Some(auth) = self.authenticate(now, from, msg, fp) else {
            return;
        };
        let seal = Seal {
            integrity: Some((auth.kind, &auth.key)),
            fingerprint: fp,
        };
        let result = match typ.method {
            Method::Allocate => self.allocate(now, from, msg, &auth, fp),
            Method::ConnectionBind => self.connection_bind(now, from, msg, &auth, seal),
            _ => self.on_allocation(now, from, msg, &auth, seal),
        };
        if let Err(refusal) = result {
            if refusal.code() == 403 {
                self.stats.policy_denied += 1;
            }
            info!(client = %from.client, %typ, code = refusal.code(), reason = refusal.reason(), "request refused");
            let key = auth.key.clone();
            self.respond_error(from, typ, txid, refusal, Some((auth.kind, &key)), fp);
        }
    }

    /// Checks the long-term credential (RFC 8489 §9.2.4). Sends the challenge or refusal
    /// itself and returns None when the request must stop here.
    fn authenticate(
        &mut self,
        now: Instant,
        from: FiveTuple,
        msg: &Message<'_>,
        fp: bool,
    ) -> Option<Auth> {
        let typ = msg.message_type();
        let txid = *msg.transaction_id();
        let Some(kind) = msg.integrity() else {
            self.stats.challenges += 1;
            debug!(client = %from.client, %typ, "401 challenge");
            self.challenge(now, (from, typ, txid, fp), 401, "Unauthorized");
            return None;
        };
        let (Ok(Some(username)), Ok(Some(realm)), Ok(Some(nonce))) = (
            msg.text(attr::USERNAME),
            msg.text(attr::REALM),
            msg.text(attr::NONCE),
        ) else {
            info!(client = %from.client, %typ, "400: integrity without USERNAME, REALM and NONCE");
            self.respond_error(
                from,
                typ,
                txid,
                Refusal::BadRequest("Missing USERNAME, REALM or NONCE"),
                None,
                fp,
            );
            return None;
        };
        let unix = self.unix(now);
        if let Err(e) = self.nonces.check(nonce, from.client.ip(), unix) {
            info!(client = %from.client, %typ, reason = ?e, "438: stale nonce");
            self.stats.requests_refused += 1;
            self.challenge(now, (from, typ, txid, fp), 438, "Stale Nonce");
            return None;
        }
        if realm != self.config.realm {
            info!(client = %from.client, %typ, "401: wrong realm");
            self.stats.auth_failures += 1;
            self.stats.requests_refused += 1;
            self.challenge(now, (from, typ, txid, fp), 401, "Wrong realm");
            return None;
        }
        // Requests on an existing allocation are checked against the key it was made with, so
        // a call outlives its (short) credential; the username must be the same (else 441).
        if let Some(a) = self
            .by_client
            .get(&from)
            .and_then(|&s| self.slots[s as usize].as_ref())
        {
            if typ.method != Method::Allocate || msg.transaction_id() == &a.allocate_txid {
                let key = a.key.clone();
                if &*a.username != username {
                    // Another user's request on this 5-tuple changes nothing whether or not
                    // its integrity would verify under that user's key: refuse it as such.
                    info!(client = %from.client, %typ, "441: username differs from the allocation's");
                    self.respond_error(from, typ, txid, Refusal::WrongCredentials, None, fp);
                    return None;
                }
                if !msg.verify_integrity(kind, &key.0) {
                    info!(client = %from.client, %typ, "401: bad MESSAGE-INTEGRITY on allocation request");
                    self.stats.auth_failures += 1;
                    self.stats.requests_refused += 1;
                    self.challenge(now, (from, typ, txid, fp), 401, "Unauthorized");
                    return None;
                }
                return Some(Auth {
                    key,
                    kind,
                    username: a.username.clone(),
                    quota_user: a.quota_user.clone(),
                });
            }
        }
        let creds = match self.auth.credentials(username, realm, unix) {
            Ok(c) => c,
            Err(e) => {
                info!(client = %from.client, %typ, reason = %e, "401: credentials refused");
                self.stats.auth_failures += 1;
                self.stats.requests_refused += 1;
                self.challenge(now, (from, typ, txid, fp), 401, "Unauthorized");
                return None;
            }
        };
        if !msg.verify_integrity(kind, &creds.key.0) {
            info!(client = %from.client, %typ, "401: wrong password (MESSAGE-INTEGRITY mismatch)");
            self.stats.auth_failures += 1;
            self.stats.requests_refused += 1;
            self.challenge(now, (from, typ, txid, fp), 401, "Unauthorized");
            return None;
        }
        Some(Auth {
            key: creds.key,
            kind,
            username: username.into(),
            quota_user: creds.quota_user.into(),
        })
    }

    fn challenge(
        &mut self,
        now: Instant,
        req: (FiveTuple, MessageType, TransactionId, bool),
        code: u16,
        reason: &str,
    ) {
        let (from, typ, txid, fp) = req;
        let nonce = self.nonces.issue(from.client.ip(), self.unix(now));
        let mut b = MessageBuilder::new(&mut self.scratch, typ.error(), txid);
        b.add_error(code, reason);
        b.add(attr::REALM, self.config.realm.as_bytes());
        b.add(attr::NONCE, nonce.as_bytes());
        if fp {
            b.fingerprint();
        }
        self.queue(Destination::Client(from));
    }

    fn respond_error(
        &mut self,
        to: FiveTuple,
        typ: MessageType,
        txid: TransactionId,
        refusal: Refusal,
        integrity: Option<(IntegrityKind, &LongTermKey)>,
        fp: bool,
    ) {
        self.stats.requests_refused += 1;
        let mut b = MessageBuilder::new(&mut self.scratch, typ.error(), txid);
        b.add_error(refusal.code(), refusal.reason());
        if let Some((kind, key)) = integrity {
            b.integrity(kind, &key.0);
        }
        if fp {
            b.fingerprint();
        }
        self.queue(Destination::Client(to));
    }

    /// Queues the message in `self.scratch`.
    fn queue(&mut self, destination: Destination) {
        self.transmits.push_back(Transmit {
            destination,
            data: self.scratch.clone(),
        });
    }

    /// Finishes a success response begun in `self.scratch` by `f`, seals and queues it.
    fn respond_success(
        &mut self,
        to: FiveTuple,
        typ: MessageType,
        txid: TransactionId,
        seal: Seal<'_>,
        f: impl FnOnce(&mut MessageBuilder<'_>),
    ) {
        let mut b = MessageBuilder::new(&mut self.scratch, typ.success(), txid);
        f(&mut b);
        if let Some((kind, key)) = seal.integrity {
            b.integrity(kind, &key.0);
        }
        if seal.fingerprint {
            b.fingerprint();
        }
        self.queue(Destination::Client(to));
    }
}

const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
