//! RFC 6062 TCP relaying: Connect, ConnectionAttempt and ConnectionBind.
//!
//! The server tracks each peer connection by a 32-bit CONNECTION-ID whose top byte is the
//! shard, so the I/O layer can hand a ConnectionBind that arrived on another shard's socket to
//! the right shard. Bytes from a peer that arrive before ConnectionBind stay in the peer
//! socket (the I/O layer does not read it until [`Event::SpliceConnection`]), which is the
//! buffering RFC 6062 §5.3 asks for, bounded by the kernel's receive buffer.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, info};

use super::{Auth, Event, FiveTuple, Refusal, RelayTransport, Seal, Server, Timer};
use crate::codec::{
    attr, Class, IntegrityKind, LongTermKey, Message, MessageBuilder, MessageType, Method,
    TransactionId,
};

/// The shard that owns the peer connection a ConnectionBind request names, read from the
/// top byte of its CONNECTION-ID; `None` if `frame` is not a ConnectionBind request with one.
///
/// A client opens its data connection afresh, and the kernel may give it to any shard
/// (SO_REUSEPORT), while the peer connection lives on the shard that made the CONNECTION-ID.
/// The I/O layer checks the first frame of each new TCP/TLS connection with this and moves
/// the connection to the owner before any server sees it. Nothing is trusted here: the owner
/// authenticates the request as usual.
pub fn connection_bind_shard(frame: &[u8]) -> Option<u8> {
    let msg = Message::decode(frame).ok()?;
    let typ = msg.message_type();
    if typ.method != Method::ConnectionBind || typ.class != Class::Request {
        return None;
    }
    let id = msg.u32_attr(attr::CONNECTION_ID).ok()??;
    Some((id >> 24) as u8)
}

#[derive(Debug)]
pub(crate) struct Connection {
    slot: u32,
    peer: SocketAddr,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Outgoing connect in progress; the Connect response waits for it.
    Connecting {
        client: FiveTuple,
        txid: TransactionId,
        kind: IntegrityKind,
        key: LongTermKey,
        fingerprint: bool,
    },
    /// Peer connection up; waiting for the client's ConnectionBind until the deadline.
    AwaitingBind { deadline: Instant },
    /// Spliced with a client data connection.
    Bound,
}

impl Server {
    fn new_connection_id(&mut self) -> u32 {
        loop {
            let id = (u32::from(self.config.shard) << 24) | (self.next_connection & 0x00FF_FFFF);
            self.next_connection = self.next_connection.wrapping_add(1);
            if self.next_connection & 0x00FF_FFFF == 0 {
                self.next_connection = 1;
            }
            if id & 0x00FF_FFFF != 0 && !self.connections.contains_key(&id) {
                return id;
            }
        }
    }

    pub(super) fn connect(
        &mut self,
        _now: Instant,
        from: FiveTuple,
        slot: u32,
        msg: &Message<'_>,
        auth: &Auth,
        seal: Seal<'_>,
    ) -> Result<(), Refusal> {
        let peer = match msg.xor_address(attr::XOR_PEER_ADDRESS) {
            Ok(Some(p)) => p,
            _ => return Err(Refusal::BadRequest("Missing or malformed XOR-PEER-ADDRESS")),
        };
        {
            let a = self.slots[slot as usize].as_ref().expect("indexed");
            if a.transport != RelayTransport::Tcp {
                return Err(Refusal::BadRequest("Connect needs a TCP allocation"));
            }
        }
        let peer = self.check_peer(from, slot, peer)?;
        let a = self.slots[slot as usize].as_ref().expect("indexed");
        if a.connections
            .iter()
            .any(|id| self.connections.get(id).is_some_and(|c| c.peer == peer))
        {
            return Err(Refusal::ConnectionAlreadyExists);
        }
        if a.connections.len() >= self.config.max_connections_per_allocation {
            return Err(Refusal::InsufficientCapacity("Too many TCP connections"));
        }
        let relay = a.relay_for(peer).expect("checked by check_peer");
        let id = self.new_connection_id();
        self.connections.insert(
            id,
            Connection {
                slot,
                peer,
                state: State::Connecting {
                    client: from,
                    txid: *msg.transaction_id(),
                    kind: auth.kind,
                    key: auth.key.clone(),
                    fingerprint: seal.fingerprint,
                },
            },
        );
        self.slots[slot as usize]
            .as_mut()
            .expect("indexed")
            .connections
            .push(id);
        self.events.push_back(Event::ConnectPeer {
            connection: id,
            relay,
            peer,
        });
        Ok(())
    }

    /// The outcome of [`Event::ConnectPeer`]. On success the Connect request is answered with
    /// the CONNECTION-ID and the client has 30 s to bind it; on failure 447.
    pub fn handle_peer_connected(&mut self, now: Instant, connection: u32, ok: bool) {
        let Some(c) = self.connections.get_mut(&connection) else {
            if ok {
                self.events.push_back(Event::CloseConnection { connection });
            }
            return;
        };
        let State::Connecting {
            client,
            txid,
            kind,
            key,
            fingerprint,
        } = std::mem::replace(
            &mut c.state,
            State::AwaitingBind {
                deadline: now + self.config.connection_bind_timeout,
            },
        )
        else {
            return;
        };
        let typ = MessageType::new(Method::Connect, Class::Request);
        let seal = Seal {
            integrity: Some((kind, &key)),
            fingerprint,
        };
        if ok {
            self.timers.push(Reverse((
                now + self.config.connection_bind_timeout,
                Timer::Connection { id: connection },
            )));
            self.respond_success(client, typ, txid, seal, |b| {
                b.add_u32(attr::CONNECTION_ID, connection);
            });
        } else {
            info!(client = %client.client, connection, "447: TCP connect to peer failed");
            self.drop_connection(connection);
            self.respond_error(
                client,
                typ,
                txid,
                Refusal::ConnectionTimeoutOrFailure,
                Some((kind, &key)),
                fingerprint,
            );
        }
    }

    /// A peer opened a TCP connection to relay listener `relay`. Returns the connection id if
    /// it is admitted (then a ConnectionAttempt goes to the client), `None` to close it.
    pub fn handle_peer_connection(
        &mut self,
        now: Instant,
        relay: SocketAddr,
        peer: SocketAddr,
    ) -> Option<u32> {
        let &slot = self.by_relay.get(&relay)?;
        let a = self.slots[slot as usize].as_ref()?;
        if a.transport != RelayTransport::Tcp || !a.has_permission(peer.ip(), now) {
            debug!(%peer, "incoming TCP peer refused: no permission");
            self.stats.dropped_no_route += 1;
            return None;
        }
        if a.connections.len() >= self.config.max_connections_per_allocation {
            return None;
        }
        let client = a.client;
        let id = self.new_connection_id();
        let deadline = now + self.config.connection_bind_timeout;
        self.connections.insert(
            id,
            Connection {
                slot,
                peer,
                state: State::AwaitingBind { deadline },
            },
        );
        self.slots[slot as usize]
            .as_mut()
            .expect("present")
            .connections
            .push(id);
        self.timers
            .push(Reverse((deadline, Timer::Connection { id })));
        let txid = derive_txid(id, peer);
        let mut b = MessageBuilder::new(
            &mut self.scratch,
            MessageType::new(Method::ConnectionAttempt, Class::Indication),
            txid,
        );
        b.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
        b.add_u32(attr::CONNECTION_ID, id);
        self.queue(super::Destination::Client(client));
        Some(id)
    }

    /// ConnectionBind on a new client connection (RFC 6062 §5.4).
    pub(super) fn connection_bind(
        &mut self,
        _now: Instant,
        from: FiveTuple,
        msg: &Message<'_>,
        auth: &Auth,
        seal: Seal<'_>,
    ) -> Result<(), Refusal> {
        if !from.transport.is_stream() {
            return Err(Refusal::BadRequest("ConnectionBind over UDP"));
        }
        if self.by_client.contains_key(&from) {
            return Err(Refusal::BadRequest(
                "ConnectionBind on a control connection",
            ));
        }
        let id = match msg.u32_attr(attr::CONNECTION_ID) {
            Ok(Some(id)) => id,
            _ => return Err(Refusal::BadRequest("Missing or malformed CONNECTION-ID")),
        };
        let Some(c) = self.connections.get(&id) else {
            return Err(Refusal::BadRequest("Unknown CONNECTION-ID"));
        };
        if !matches!(c.state, State::AwaitingBind { .. }) {
            return Err(Refusal::BadRequest("CONNECTION-ID not awaiting bind"));
        }
        let a = self.slots[c.slot as usize]
            .as_ref()
            .expect("connection's allocation exists");
        if a.username != auth.username {
            return Err(Refusal::WrongCredentials);
        }
        self.connections.get_mut(&id).expect("present").state = State::Bound;
        let typ = msg.message_type();
        self.respond_success(from, typ, *msg.transaction_id(), seal, |_| {});
        self.events.push_back(Event::SpliceConnection {
            connection: id,
            client: from,
        });
        Ok(())
    }

    /// The I/O layer closed a peer connection (either side hung up).
    pub fn handle_connection_closed(&mut self, _now: Instant, connection: u32) {
        self.drop_connection(connection);
    }

    pub(super) fn connection_timeout(&mut self, now: Instant, id: u32) {
        let expired = matches!(self.connections.get(&id), Some(Connection { state: State::AwaitingBind { deadline }, .. }) if *deadline <= now);
        if expired {
            info!(
                connection = id,
                "TCP peer connection closed: no ConnectionBind within the timeout"
            );
            self.drop_connection(id);
            self.events
                .push_back(Event::CloseConnection { connection: id });
        }
    }

    fn drop_connection(&mut self, id: u32) {
        if let Some(c) = self.connections.remove(&id) {
            if let Some(a) = self.slots.get_mut(c.slot as usize).and_then(Option::as_mut) {
                a.connections.retain(|&x| x != id);
            }
        }
    }
}

fn derive_txid(id: u32, peer: SocketAddr) -> TransactionId {
    let mut t = [0u8; 12];
    t[..4].copy_from_slice(&id.to_be_bytes());
    t[4..6].copy_from_slice(&peer.port().to_be_bytes());
    t
}
