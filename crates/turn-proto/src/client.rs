//! A sans-IO TURN client for one allocation (RFC 8656): what an SDK uses to send its media
//! through an edge.
//!
//! The I/O layer owns the socket (a UDP socket, or a TCP/TLS stream it frames with
//! [`crate::codec::frame_len`]) and the clock. It feeds every datagram or frame from the server
//! to [`TurnClient::handle_input`], sends what [`TurnClient::poll_transmit`] hands out, and
//! calls [`TurnClient::handle_timeout`] at [`TurnClient::poll_timeout`]. Application data goes
//! out through [`TurnClient::encode_data`] (ChannelData once a channel is bound, a Send
//! indication before) and comes back from `handle_input` as `(peer, bytes)` borrowed from the
//! input, without a copy.
//!
//! What it does on its own:
//! - long-term credentials: the first Allocate goes without them, the 401 teaches the realm
//!   and nonce, and every later request carries MESSAGE-INTEGRITY; a 438 (stale nonce)
//!   updates the nonce and resends once;
//! - retransmission over UDP (RFC 8489 §6.2.1: RTO 500 ms doubling, 7 transmissions, then a
//!   final wait of 16 × RTO); none over TCP/TLS (§6.2.2: one wait of 39.5 s);
//! - refreshes: the allocation one minute before its lifetime ends, each channel binding
//!   every 5 minutes (it lives 10; a ChannelBind refresh also refreshes the permission);
//! - responses whose MESSAGE-INTEGRITY does not verify are dropped (an off-path attacker
//!   cannot answer for the server).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::codec::{
    attr, long_term_key, ChannelData, Class, IntegrityKind, LongTermKey, Message, MessageBuilder,
    MessageType, Method, TransactionId, CHANNEL_MIN,
};

/// First retransmission timeout over UDP (RFC 8489 §6.2.1).
const RTO: Duration = Duration::from_millis(500);
/// Transmissions of one request over UDP (Rc).
const MAX_TRANSMISSIONS: u32 = 7;
/// The wait after the last transmission, in RTOs (Rm).
const LAST_WAIT_RTOS: u32 = 16;
/// Over TCP/TLS a request is sent once and waited for this long (§6.2.2).
const RELIABLE_TIMEOUT: Duration = Duration::from_millis(39_500);
/// A channel binding lives 10 minutes; refresh it at half of that.
const CHANNEL_REFRESH: Duration = Duration::from_secs(300);
/// Refresh an allocation this long before its lifetime ends.
const ALLOCATION_MARGIN: Duration = Duration::from_secs(60);

/// How a [`TurnClient`] authenticates and talks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnClientConfig {
    /// TURN username (e.g. a TURN-REST `<expiry>:<key-id>:<session>`).
    pub username: String,
    /// TURN password.
    pub password: String,
    /// `true` over TCP/TLS: no retransmissions, and ChannelData padded to 4 bytes (§12.5).
    pub reliable: bool,
}

/// Which request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Allocate.
    Allocate,
    /// Refresh of the allocation.
    Refresh,
    /// ChannelBind for a peer.
    ChannelBind(SocketAddr),
}

/// Why the client gave up on something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnClientError {
    /// The server answered with an error (e.g. 401 with wrong credentials, 403 for a peer
    /// the server will not relay to, 486 over quota).
    #[error("{request:?} refused: {code} {reason}")]
    Refused {
        /// The request.
        request: Request,
        /// ERROR-CODE number.
        code: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// No answer after every retransmission.
    #[error("{0:?} timed out")]
    Timeout(Request),
    /// A success response without the attribute it must carry.
    #[error("{0:?} answered without {1}")]
    Malformed(Request, &'static str),
}

/// What happened, for the I/O layer and the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnClientEvent {
    /// The allocation exists: `relayed` is the address peers see.
    Allocated {
        /// XOR-RELAYED-ADDRESS.
        relayed: SocketAddr,
        /// XOR-MAPPED-ADDRESS: this client as the server saw it.
        mapped: Option<SocketAddr>,
        /// Granted lifetime.
        lifetime: Duration,
    },
    /// A channel to `peer` is bound (data to it now goes as ChannelData).
    ChannelBound {
        /// The peer.
        peer: SocketAddr,
        /// The channel number.
        channel: u16,
    },
    /// A request failed for good. After an Allocate or Refresh failure the allocation is gone.
    Failed(TurnClientError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Allocating,
    Allocated {
        relayed: SocketAddr,
        refresh_at: Instant,
    },
    Closed,
}

#[derive(Debug)]
struct Pending {
    request: Request,
    bytes: Vec<u8>,
    transmissions: u32,
    rto: Duration,
    deadline: Instant,
    /// Whether a 401/438 already made us resend it with fresh credentials.
    reauthenticated: bool,
}

#[derive(Debug)]
struct Channel {
    number: u16,
    bound: bool,
    refresh_at: Option<Instant>,
}

/// One TURN allocation's client side. See the module docs.
#[derive(Debug)]
pub struct TurnClient {
    cfg: TurnClientConfig,
    realm: String,
    nonce: String,
    key: LongTermKey,
    state: State,
    pending: HashMap<TransactionId, Pending>,
    channels: HashMap<SocketAddr, Channel>,
    by_number: HashMap<u16, SocketAddr>,
    next_channel: u16,
    txid_counter: u64,
    txid_salt: [u8; 4],
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<TurnClientEvent>,
}

impl TurnClient {
    /// A client that has sent nothing yet. `salt` makes transaction ids unpredictable to
    /// off-path observers (pass 4 random bytes).
    pub fn new(cfg: TurnClientConfig, salt: [u8; 4]) -> Self {
        let key = long_term_key(&cfg.username, "", &cfg.password);
        Self {
            cfg,
            realm: String::new(),
            nonce: String::new(),
            key,
            state: State::Idle,
            pending: HashMap::new(),
            channels: HashMap::new(),
            by_number: HashMap::new(),
            next_channel: CHANNEL_MIN,
            txid_counter: 0,
            txid_salt: salt,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Asks for an allocation of a UDP relay. Does nothing unless idle.
    pub fn allocate(&mut self, now: Instant) {
        if self.state == State::Idle {
            self.state = State::Allocating;
            self.send_request(Request::Allocate, now);
        }
    }

    /// The relayed address, once allocated.
    pub fn relayed(&self) -> Option<SocketAddr> {
        match self.state {
            State::Allocated { relayed, .. } => Some(relayed),
            _ => None,
        }
    }

    /// Binds a channel to `peer` (which also installs the permission), now if allocated or
    /// as soon as the allocation exists. Binding the same peer again does nothing.
    pub fn bind_peer(&mut self, peer: SocketAddr, now: Instant) {
        if self.channels.contains_key(&peer) || self.next_channel > 0x4FFF {
            return;
        }
        let number = self.next_channel;
        self.next_channel += 1;
        self.channels.insert(
            peer,
            Channel {
                number,
                bound: false,
                refresh_at: None,
            },
        );
        self.by_number.insert(number, peer);
        if matches!(self.state, State::Allocated { .. }) {
            self.send_request(Request::ChannelBind(peer), now);
        }
    }

    /// Writes `data` for `peer` into `out` (cleared first): ChannelData when the channel is
    /// bound, else a Send indication (the server drops it unless a permission exists, so bind
    /// first). Returns `false`, writing nothing, when not allocated or `data` is too large.
    pub fn encode_data(&mut self, peer: SocketAddr, data: &[u8], out: &mut Vec<u8>) -> bool {
        out.clear();
        if self.relayed().is_none() || data.len() > usize::from(u16::MAX) - 64 {
            return false;
        }
        match self.channels.get(&peer) {
            Some(ch) if ch.bound => {
                out.resize(4, 0);
                ChannelData::write_header(ch.number, data.len() as u16, &mut out[..4]);
                out.extend_from_slice(data);
                if self.cfg.reliable {
                    out.resize((out.len() + 3) & !3, 0);
                }
            }
            _ => {
                let txid = self.txid();
                let mut b = MessageBuilder::new(
                    out,
                    MessageType::new(Method::Send, Class::Indication),
                    txid,
                );
                b.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
                b.add(attr::DATA, data);
            }
        }
        true
    }

    /// Ends the allocation (Refresh with LIFETIME 0, sent once, not awaited).
    pub fn close(&mut self) {
        if matches!(self.state, State::Allocated { .. }) {
            let txid = self.txid();
            let bytes = self.build(Request::Refresh, Some(0), txid);
            self.transmits.push_back(bytes);
        }
        self.state = State::Closed;
        self.pending.clear();
    }

    /// A datagram or frame from the server. Returns application data from a peer (ChannelData
    /// or a Data indication), borrowed from `buf`; handles everything else itself.
    pub fn handle_input<'a>(
        &mut self,
        now: Instant,
        buf: &'a [u8],
    ) -> Option<(SocketAddr, &'a [u8])> {
        match buf.first().map(|b| b >> 6) {
            Some(0b01) => {
                let cd = ChannelData::decode(buf).ok()?;
                let peer = *self.by_number.get(&cd.channel)?;
                Some((peer, cd.data))
            }
            Some(0b00) => {
                let msg = Message::decode(buf).ok()?;
                let typ = msg.message_type();
                if typ.method == Method::Data && typ.class == Class::Indication {
                    let peer = msg.xor_address(attr::XOR_PEER_ADDRESS).ok()??;
                    let data = msg.get(attr::DATA)?;
                    return Some((peer, data));
                }
                if matches!(typ.class, Class::Success | Class::Error) {
                    self.handle_response(now, &msg);
                }
                None
            }
            _ => None,
        }
    }

    /// Next bytes to send to the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<TurnClientEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] must run next, if anything is scheduled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pending = self.pending.values().map(|p| p.deadline);
        let channels = self.channels.values().filter_map(|c| c.refresh_at);
        let alloc = match self.state {
            State::Allocated { refresh_at, .. } => Some(refresh_at),
            _ => None,
        };
        pending.chain(channels).chain(alloc).min()
    }

    /// Retransmits, gives up, and refreshes what is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<TransactionId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for txid in due {
            let Some(mut p) = self.pending.remove(&txid) else {
                continue;
            };
            if !self.cfg.reliable && p.transmissions < MAX_TRANSMISSIONS {
                p.transmissions += 1;
                p.rto *= 2;
                p.deadline = now
                    + if p.transmissions == MAX_TRANSMISSIONS {
                        RTO * LAST_WAIT_RTOS
                    } else {
                        p.rto
                    };
                self.transmits.push_back(p.bytes.clone());
                self.pending.insert(txid, p);
            } else {
                self.fail(TurnClientError::Timeout(p.request));
            }
        }
        if let State::Allocated { refresh_at, .. } = self.state {
            if refresh_at <= now && !self.is_pending(Request::Refresh) {
                self.send_request(Request::Refresh, now);
            }
        }
        let due: Vec<SocketAddr> = self
            .channels
            .iter()
            .filter(|(_, c)| c.refresh_at.is_some_and(|t| t <= now))
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            if let Some(c) = self.channels.get_mut(&peer) {
                c.refresh_at = None;
            }
            self.send_request(Request::ChannelBind(peer), now);
        }
    }

    fn is_pending(&self, r: Request) -> bool {
        self.pending.values().any(|p| p.request == r)
    }

    fn txid(&mut self) -> TransactionId {
        self.txid_counter += 1;
        let mut t = [0u8; 12];
        t[..4].copy_from_slice(&self.txid_salt);
        t[4..].copy_from_slice(&self.txid_counter.to_be_bytes());
        t
    }

    fn build(&self, request: Request, lifetime: Option<u32>, txid: TransactionId) -> Vec<u8> {
        let method = match request {
            Request::Allocate => Method::Allocate,
            Request::Refresh => Method::Refresh,
            Request::ChannelBind(_) => Method::ChannelBind,
        };
        let mut out = Vec::with_capacity(160);
        let mut b = MessageBuilder::new(&mut out, MessageType::new(method, Class::Request), txid);
        match request {
            Request::Allocate => {
                b.add(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
            }
            Request::Refresh => {
                if let Some(l) = lifetime {
                    b.add_u32(attr::LIFETIME, l);
                }
            }
            Request::ChannelBind(peer) => {
                let number = self.channels.get(&peer).map_or(0, |c| c.number);
                b.add(
                    attr::CHANNEL_NUMBER,
                    &[(number >> 8) as u8, number as u8, 0, 0],
                );
                b.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
            }
        }
        if !self.nonce.is_empty() {
            b.add(attr::USERNAME, self.cfg.username.as_bytes());
            b.add(attr::REALM, self.realm.as_bytes());
            b.add(attr::NONCE, self.nonce.as_bytes());
            b.integrity(IntegrityKind::Sha1, &self.key.0);
        }
        b.fingerprint();
        out
    }

    fn send_request(&mut self, request: Request, now: Instant) {
        self.send_request_with(request, now, false);
    }

    fn send_request_with(&mut self, request: Request, now: Instant, reauthenticated: bool) {
        let txid = self.txid();
        let bytes = self.build(request, None, txid);
        self.transmits.push_back(bytes.clone());
        let wait = if self.cfg.reliable {
            RELIABLE_TIMEOUT
        } else {
            RTO
        };
        self.pending.insert(
            txid,
            Pending {
                request,
                bytes,
                transmissions: 1,
                rto: RTO,
                deadline: now + wait,
                reauthenticated,
            },
        );
    }

    fn handle_response(&mut self, now: Instant, msg: &Message<'_>) {
        let txid = *msg.transaction_id();
        if !self.pending.contains_key(&txid) {
            return;
        }
        // Once we hold a key, an answer must prove it knows it too (401s carry no integrity).
        let signed = msg.integrity().is_some();
        if signed && !msg.verify_integrity(IntegrityKind::Sha1, &self.key.0) {
            return;
        }
        let Some(p) = self.pending.remove(&txid) else {
            return;
        };
        if msg.class() == Class::Error {
            let (code, reason) = msg
                .error_code()
                .ok()
                .flatten()
                .map(|e| (e.code, e.reason.to_string()))
                .unwrap_or((0, String::new()));
            if matches!(code, 401 | 438) && !p.reauthenticated {
                let realm = msg.text(attr::REALM).ok().flatten();
                let nonce = msg.text(attr::NONCE).ok().flatten();
                if let (Some(realm), Some(nonce)) = (realm, nonce) {
                    if realm != self.realm {
                        self.key = long_term_key(&self.cfg.username, realm, &self.cfg.password);
                        self.realm = realm.to_string();
                    }
                    self.nonce = nonce.to_string();
                    self.send_request_with(p.request, now, true);
                    return;
                }
            }
            self.fail(TurnClientError::Refused {
                request: p.request,
                code,
                reason,
            });
            return;
        }
        if !signed {
            // A success without integrity, after we authenticated: not from the server.
            self.pending.insert(txid, p);
            return;
        }
        match p.request {
            Request::Allocate => {
                let Some(relayed) = msg.xor_address(attr::XOR_RELAYED_ADDRESS).ok().flatten()
                else {
                    self.fail(TurnClientError::Malformed(
                        Request::Allocate,
                        "XOR-RELAYED-ADDRESS",
                    ));
                    return;
                };
                let mapped = msg.xor_address(attr::XOR_MAPPED_ADDRESS).ok().flatten();
                let lifetime = lifetime_of(msg);
                self.state = State::Allocated {
                    relayed,
                    refresh_at: now + lifetime.saturating_sub(ALLOCATION_MARGIN),
                };
                self.events.push_back(TurnClientEvent::Allocated {
                    relayed,
                    mapped,
                    lifetime,
                });
                let peers: Vec<SocketAddr> = self.channels.keys().copied().collect();
                for peer in peers {
                    self.send_request(Request::ChannelBind(peer), now);
                }
            }
            Request::Refresh => {
                if let State::Allocated { relayed, .. } = self.state {
                    self.state = State::Allocated {
                        relayed,
                        refresh_at: now + lifetime_of(msg).saturating_sub(ALLOCATION_MARGIN),
                    };
                }
            }
            Request::ChannelBind(peer) => {
                if let Some(c) = self.channels.get_mut(&peer) {
                    let first = !c.bound;
                    c.bound = true;
                    c.refresh_at = Some(now + CHANNEL_REFRESH);
                    if first {
                        self.events.push_back(TurnClientEvent::ChannelBound {
                            peer,
                            channel: c.number,
                        });
                    }
                }
            }
        }
    }

    fn fail(&mut self, e: TurnClientError) {
        let fatal = matches!(
            e,
            TurnClientError::Refused {
                request: Request::Allocate | Request::Refresh,
                ..
            } | TurnClientError::Timeout(Request::Allocate | Request::Refresh)
                | TurnClientError::Malformed(Request::Allocate | Request::Refresh, _)
        );
        if fatal {
            self.state = State::Closed;
            self.pending.clear();
            for c in self.channels.values_mut() {
                c.refresh_at = None;
            }
        }
        self.events.push_back(TurnClientEvent::Failed(e));
    }
}

fn lifetime_of(msg: &Message<'_>) -> Duration {
    let secs = msg.u32_attr(attr::LIFETIME).ok().flatten().unwrap_or(600);
    Duration::from_secs(u64::from(secs))
}
