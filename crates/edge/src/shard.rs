//! One shard: a thread with a single-threaded runtime that owns a [`Server`], its listener
//! sockets (SO_REUSEPORT twins of every other shard's) and the relay sockets of the allocations
//! made through them. Nothing on the packet path crosses threads or takes a lock.
//!
//! Every socket has a task; each task feeds the server through a `RefCell` borrow that never
//! lives across an `.await`, then acts on the returned [`Forward`] and drains queued output.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};
use turn_proto::codec::{frame_len, Family};
use turn_proto::server::{
    connection_bind_shard, BoundRelay, Destination, Event, FiveTuple, Forward, RelayRequest,
    RelayTransport, Server, Stats, Transmit, Transport, PEER_HEADROOM, PEER_TAILROOM,
};

use crate::config::PortRange;
use crate::front::{self, ConnGuard, ConnLimits, Io, Prefixed, Sniffed, TlsSettings};
use crate::sockets;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// Slot size of the listeners' receive batch: a jumbo frame. Media datagrams are well under
/// the path MTU; a longer one (only IP fragments reassembled) is dropped and counted, not cut.
const BATCH_SLOT: usize = 9_216;
/// How long an outgoing RFC 6062 connect may take before 447.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes queued for one TCP/TLS client before further frames are dropped (as a full UDP
/// socket buffer would drop them): about 200 frames of 1200 bytes.
const CLIENT_OUT_MAX: usize = 256 * 1024;
/// Capacity a client's write buffer keeps between bursts; a larger one is given back.
const CLIENT_OUT_KEEP: usize = 64 * 1024;

/// What a TCP/TLS client's task is told besides "write your output".
enum ClientCmd {
    Splice(TcpStream, u32),
    Close,
}

/// Frames on their way to one TCP/TLS client. Whatever relays a frame appends it here; the
/// client's task swaps the buffer out and writes it with one call, so frames that arrive
/// while a write is in flight leave together in the next one (TLS: in as few records).
struct ClientOut {
    buf: RefCell<Vec<u8>>,
    ready: Notify,
}

struct ClientHandle {
    out: Rc<ClientOut>,
    cmd: mpsc::Sender<ClientCmd>,
    task: AbortHandle,
}

enum Relay {
    Udp {
        socket: Rc<UdpSocket>,
        task: AbortHandle,
    },
    Tcp {
        task: AbortHandle,
    },
}

enum PeerConn {
    Pending(TcpStream),
    Spliced(AbortHandle),
}

/// Where relay sockets come from.
#[derive(Debug, Clone)]
pub struct RelayPlan {
    /// Relay IPv4 address, if any.
    pub v4: Option<std::net::IpAddr>,
    /// Relay IPv6 address, if any.
    pub v6: Option<std::net::IpAddr>,
    /// Port range.
    pub ports: PortRange,
}

pub(crate) struct Shard {
    server: RefCell<Server>,
    udp_listeners: HashMap<SocketAddr, Rc<UdpSocket>>,
    relays: RefCell<HashMap<SocketAddr, Relay>>,
    tcp_clients: RefCell<HashMap<FiveTuple, ClientHandle>>,
    peer_conns: RefCell<HashMap<u32, PeerConn>>,
    /// The receive batch every UDP relay socket of this shard reads into, each slot with
    /// headroom for the ChannelData or Data indication header written in front of the
    /// datagram. One per shard: a buffer per allocation would cost its size per allocation.
    peer_batch: RefCell<udp_batch::RecvBatch>,
    /// The shard's one receive batch for its UDP listeners (recvmmsg: up to 64 datagrams a
    /// system call). Borrowed, like `peer_batch`, only between a readiness wake-up and the end
    /// of the non-blocking reads, never across an `.await` (see `read_batches`).
    rx_batch: RefCell<udp_batch::RecvBatch>,
    /// This shard's number: the top byte of the CONNECTION-IDs its server makes.
    index: u8,
    front: Front,
    plan: RelayPlan,
    wake: Notify,
}

/// A client connection moved to the shard that owns the peer connection its first frame
/// (a ConnectionBind) names. It carries everything read from it so far.
pub(crate) struct Handoff {
    stream: Box<dyn Io>,
    tuple: FiveTuple,
    unread: Vec<u8>,
    guard: ConnGuard,
}

/// Relay ports held for RESERVATION-TOKENs, not read until claimed. Edge-wide, like the
/// reservations themselves: the Allocate that claims one may land on any shard.
pub(crate) type HeldPorts = Arc<Mutex<HashMap<SocketAddr, std::net::UdpSocket>>>;

/// What the TCP-facing listeners of a shard share with every other shard.
#[derive(Clone)]
pub(crate) struct Front {
    /// Every shard's handoff queue, by shard number.
    pub(crate) handoff: Arc<Vec<mpsc::UnboundedSender<Handoff>>>,
    pub(crate) held: HeldPorts,
    pub(crate) limits: Arc<ConnLimits>,
    pub(crate) tls: Option<TlsSettings>,
    pub(crate) router: Option<axum::Router>,
    pub(crate) proxy_protocol: bool,
    pub(crate) handshake_timeout: Duration,
    pub(crate) idle_timeout: Duration,
}

/// A shard's TCP listening sockets.
pub(crate) struct TcpListeners {
    pub(crate) turn: Vec<std::net::TcpListener>,
    pub(crate) tls: Option<std::net::TcpListener>,
    pub(crate) signal: Option<std::net::TcpListener>,
}

/// Sends a datagram now, with one non-blocking system call. tokio's `try_send_to` answers
/// WouldBlock without trying until the runtime has seen the socket writable, which a relay
/// socket bound a moment ago has not: its first packets were silently lost. A full socket
/// buffer still drops the datagram, as UDP would.
fn send_now(sock: &UdpSocket, bytes: &[u8], to: SocketAddr) -> io::Result<usize> {
    socket2::SockRef::from(sock).send_to(bytes, &to.into())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Shard {
    pub(crate) fn new(
        index: u8,
        server: Server,
        udp: Vec<std::net::UdpSocket>,
        plan: RelayPlan,
        front: Front,
    ) -> io::Result<Rc<Self>> {
        let mut udp_listeners = HashMap::new();
        for s in udp {
            let local = s.local_addr()?;
            udp_listeners.insert(local, Rc::new(UdpSocket::from_std(s)?));
        }
        Ok(Rc::new(Self {
            server: RefCell::new(server),
            udp_listeners,
            relays: RefCell::new(HashMap::new()),
            tcp_clients: RefCell::new(HashMap::new()),
            peer_conns: RefCell::new(HashMap::new()),
            index,
            peer_batch: RefCell::new(udp_batch::RecvBatch::with_room(
                BATCH_SLOT,
                PEER_HEADROOM,
                PEER_TAILROOM,
            )),
            rx_batch: RefCell::new(udp_batch::RecvBatch::new(BATCH_SLOT)),
            front,
            plan,
            wake: Notify::new(),
        }))
    }

    /// Spawns the listener, handoff and timer tasks on the current `LocalSet`.
    pub(crate) fn start(
        self: &Rc<Self>,
        tcp: TcpListeners,
        mut handoffs: mpsc::UnboundedReceiver<Handoff>,
    ) -> io::Result<()> {
        let shard = self.clone();
        tokio::task::spawn_local(async move {
            while let Some(h) = handoffs.recv().await {
                let stream = Box::new(Prefixed::new(h.unread, h.stream));
                spawn_client(&shard, stream, h.tuple, h.guard);
            }
        });
        for (local, sock) in &self.udp_listeners {
            tokio::task::spawn_local(udp_listener_loop(self.clone(), sock.clone(), *local));
        }
        for l in tcp.turn {
            let local = l.local_addr()?;
            let l = TcpListener::from_std(l)?;
            tokio::task::spawn_local(accept_loop(self.clone(), l, local, Port::Turn));
        }
        if let Some(l) = tcp.tls {
            let local = l.local_addr()?;
            let l = TcpListener::from_std(l)?;
            tokio::task::spawn_local(accept_loop(self.clone(), l, local, Port::Tls));
        }
        if let Some(l) = tcp.signal {
            let local = l.local_addr()?;
            let l = TcpListener::from_std(l)?;
            tokio::task::spawn_local(accept_loop(self.clone(), l, local, Port::Signal));
        }
        tokio::task::spawn_local(timer_loop(self.clone()));
        Ok(())
    }

    fn forward(&self, fwd: Forward, buf: &[u8]) {
        match fwd {
            Forward::None => {}
            Forward::ToPeer { relay, peer, range } => {
                let relays = self.relays.borrow();
                if let Some(Relay::Udp { socket, .. }) = relays.get(&relay) {
                    if let Err(e) = send_now(socket, &buf[range], peer) {
                        debug!(error = %e, "relay send failed");
                    }
                }
            }
            Forward::ToClient { client, range } => self.send_to_client(client, &buf[range]),
        }
    }

    fn send_to_client(&self, client: FiveTuple, bytes: &[u8]) {
        match client.transport {
            Transport::Udp => {
                if let Some(sock) = self.udp_listeners.get(&client.server) {
                    if let Err(e) = send_now(sock, bytes, client.client) {
                        debug!(error = %e, "client send failed");
                    }
                }
            }
            Transport::Tcp | Transport::Tls => {
                if let Some(c) = self.tcp_clients.borrow().get(&client) {
                    let mut buf = c.out.buf.borrow_mut();
                    if buf.len() + bytes.len() > CLIENT_OUT_MAX {
                        debug!(client = %client.client, "client output full: frame dropped");
                        return;
                    }
                    if buf.is_empty() {
                        c.out.ready.notify_one();
                    }
                    buf.extend_from_slice(bytes);
                }
            }
        }
    }

    /// Sends queued transmits and carries out queued events until the server is quiet.
    fn drain(self: &Rc<Self>) {
        let mut busy = false;
        loop {
            let t = self.server.borrow_mut().poll_transmit();
            if let Some(Transmit { destination, data }) = t {
                busy = true;
                match destination {
                    Destination::Client(c) => self.send_to_client(c, &data),
                    Destination::Peer { relay, peer } => self.forward(
                        Forward::ToPeer {
                            relay,
                            peer,
                            range: 0..data.len(),
                        },
                        &data,
                    ),
                }
                continue;
            }
            let e = self.server.borrow_mut().poll_event();
            match e {
                Some(e) => {
                    busy = true;
                    self.event(e);
                }
                None => break,
            }
        }
        if busy {
            self.wake.notify_one();
        }
    }

    fn event(self: &Rc<Self>, e: Event) {
        match e {
            Event::BindRelay(req) => {
                let result = self.bind_relay(req);
                if let Err(e) = &result {
                    warn!(error = %e, family = ?req.family, "could not bind a relay socket");
                }
                self.server.borrow_mut().handle_relay_bound(
                    Instant::now(),
                    req,
                    result.map_err(|_| ()),
                );
            }
            Event::ReleaseRelay { relay, .. } => {
                self.held().remove(&relay);
                if let Some(r) = self.relays.borrow_mut().remove(&relay) {
                    match r {
                        Relay::Udp { task, .. } | Relay::Tcp { task } => task.abort(),
                    }
                }
            }
            Event::ConnectPeer {
                connection,
                relay,
                peer,
            } => {
                tokio::task::spawn_local(connect_peer(self.clone(), connection, relay, peer));
            }
            Event::SpliceConnection { connection, client } => {
                let pending = self.peer_conns.borrow_mut().remove(&connection);
                let clients = self.tcp_clients.borrow();
                match (pending, clients.get(&client)) {
                    (Some(PeerConn::Pending(stream)), Some(c)) => {
                        let abort = c.task.clone();
                        if c.cmd
                            .try_send(ClientCmd::Splice(stream, connection))
                            .is_ok()
                        {
                            self.peer_conns
                                .borrow_mut()
                                .insert(connection, PeerConn::Spliced(abort));
                        }
                    }
                    _ => debug!(connection, "splice target vanished"),
                }
            }
            Event::CloseConnection { connection } => {
                if let Some(PeerConn::Spliced(task)) =
                    self.peer_conns.borrow_mut().remove(&connection)
                {
                    task.abort();
                }
            }
            Event::CloseClient(client) => {
                if let Some(c) = self.tcp_clients.borrow().get(&client) {
                    let _ = c.cmd.try_send(ClientCmd::Close);
                }
            }
            other => debug!(?other, "unhandled event"),
        }
    }

    fn bind_relay(self: &Rc<Self>, req: RelayRequest) -> io::Result<BoundRelay> {
        let ip = match req.family {
            Family::V4 => self.plan.v4,
            Family::V6 => self.plan.v6,
        }
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "no relay address of that family",
            )
        })?;
        match req.transport {
            RelayTransport::Udp => {
                let ((s, addr), reserved) = if let Some(addr) = req.use_reserved {
                    let s = self.held().remove(&addr).ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, "reserved port already released")
                    })?;
                    ((s, addr), None)
                } else if req.reserve_next {
                    let (first, (next, next_addr)) =
                        sockets::udp_relay_pair(ip, self.plan.ports, req.dont_fragment)?;
                    self.held().insert(next_addr, next);
                    (first, Some(next_addr))
                } else {
                    (
                        sockets::udp_relay(ip, self.plan.ports, req.even_port, req.dont_fragment)?,
                        None,
                    )
                };
                let socket = Rc::new(UdpSocket::from_std(s)?);
                let task =
                    tokio::task::spawn_local(udp_relay_loop(self.clone(), socket.clone(), addr))
                        .abort_handle();
                self.relays
                    .borrow_mut()
                    .insert(addr, Relay::Udp { socket, task });
                Ok(BoundRelay {
                    relay: addr,
                    reserved,
                })
            }
            RelayTransport::Tcp => {
                let l = sockets::tcp_relay(ip, self.plan.ports)?;
                let addr = l.local_addr()?;
                let l = TcpListener::from_std(l)?;
                let task =
                    tokio::task::spawn_local(tcp_relay_loop(self.clone(), l, addr)).abort_handle();
                self.relays.borrow_mut().insert(addr, Relay::Tcp { task });
                Ok(BoundRelay {
                    relay: addr,
                    reserved: None,
                })
            }
        }
    }

    /// The edge-wide held relay ports (a poisoned lock still holds a usable map).
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, std::net::UdpSocket>> {
        self.front.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server's counters now.
    pub(crate) fn stats(&self) -> Stats {
        self.server.borrow().stats().clone()
    }
}

/// One non-blocking recvmmsg into `batch`. Returns the datagrams received and whether the
/// socket may hold more. A short batch means the socket was drained: tokio's readiness is then
/// cleared as if the call had answered WouldBlock (tokio keeps it if an event arrived
/// meanwhile), which saves the extra system call per wake-up that would only say "empty".
fn recv_batch(sock: &UdpSocket, batch: &mut udp_batch::RecvBatch) -> io::Result<(usize, bool)> {
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    let mut got = 0;
    let r = sock.try_io(tokio::io::Interest::READABLE, || {
        got = batch.recv(fd, udp_batch::BATCH, libc::MSG_DONTWAIT)?;
        if got < udp_batch::BATCH {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    });
    match r {
        Ok(()) => Ok((got, true)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok((got, false)),
        Err(e) => Err(e),
    }
}

/// Reads `sock` in batches into `batch` whenever it is readable, and calls `each` with the
/// batch and the number of datagrams in it. At most 8 batches per wake-up, so one busy socket
/// cannot starve the shard's others. The batch is borrowed only between a readiness wake-up
/// and the end of the non-blocking reads, never across an `.await`. Returns when the socket
/// fails.
async fn read_batches(
    sock: &UdpSocket,
    batch: &RefCell<udp_batch::RecvBatch>,
    local: SocketAddr,
    mut each: impl FnMut(&mut udp_batch::RecvBatch, usize),
) {
    loop {
        if let Err(e) = sock.readable().await {
            debug!(error = %e, %local, "udp socket failed");
            return;
        }
        let mut more = false;
        for _ in 0..8 {
            let mut b = batch.borrow_mut();
            let n;
            (n, more) = match recv_batch(sock, &mut b) {
                Ok(x) => x,
                Err(e) => {
                    debug!(error = %e, %local, "udp recv error");
                    (0, false)
                }
            };
            each(&mut b, n);
            if !more {
                break;
            }
        }
        if more {
            tokio::task::yield_now().await;
        }
    }
}

/// Hands each datagram of a UDP listener to the server; ChannelData to a peer leaves from the
/// batch buffer itself.
async fn udp_listener_loop(shard: Rc<Shard>, sock: Rc<UdpSocket>, local: SocketAddr) {
    read_batches(&sock, &shard.rx_batch, local, |batch, n| {
        let now = Instant::now();
        for i in 0..n {
            let Some(from) = batch.addr(i) else { continue };
            if batch.truncated(i) {
                debug!(%from, %local, "datagram longer than {BATCH_SLOT} bytes dropped");
                shard.server.borrow_mut().count_unreadable();
                continue;
            }
            let tuple = FiveTuple {
                transport: Transport::Udp,
                client: from,
                server: local,
            };
            let pkt = batch.packet(i);
            let fwd = shard.server.borrow_mut().handle_client(now, tuple, pkt);
            if fwd == Forward::None {
                shard.drain();
            } else {
                shard.forward(fwd, pkt);
            }
        }
    })
    .await;
}

/// Wraps each datagram of a relay socket in place (ChannelData or Data indication header in
/// its slot's headroom) and sends a batch's worth to a UDP client with one sendmmsg straight
/// from the batch: every datagram on a relay socket goes to the same client, the allocation's.
async fn udp_relay_loop(shard: Rc<Shard>, sock: Rc<UdpSocket>, relay: SocketAddr) {
    use std::os::fd::AsRawFd;
    read_batches(&sock, &shard.peer_batch, relay, |batch, n| {
        let now = Instant::now();
        // Datagram index and byte range within its slot, for the batch to the UDP client
        // (u32: a slot is a few KiB; 768 bytes to clear per wake-up, not 1.5 KiB).
        let mut out = [(0u32, 0u32, 0u32); udp_batch::BATCH];
        let mut k = 0;
        let mut udp_client: Option<FiveTuple> = None;
        for i in 0..n {
            let Some(peer) = batch.addr(i) else { continue };
            if batch.truncated(i) {
                debug!(%peer, %relay, "peer datagram longer than {BATCH_SLOT} bytes dropped");
                shard.server.borrow_mut().count_unreadable();
                continue;
            }
            let len = batch.len_of(i);
            let slot = batch.slot_mut(i);
            let fwd = shard
                .server
                .borrow_mut()
                .handle_peer(now, relay, peer, slot, len);
            match fwd {
                Forward::ToClient { client, range }
                    if client.transport == Transport::Udp
                        && udp_client.is_none_or(|c| c == client) =>
                {
                    udp_client = Some(client);
                    out[k] = (i as u32, range.start as u32, range.end as u32);
                    k += 1;
                }
                other => shard.forward(other, slot),
            }
        }
        let Some(client) = udp_client else { return };
        let Some(listener) = shard.udp_listeners.get(&client.server) else {
            return;
        };
        let datagrams = out[..k]
            .iter()
            .map(|&(i, a, b)| &batch.slot(i as usize)[a as usize..b as usize]);
        match udp_batch::send_all_to(listener.as_raw_fd(), client.client, datagrams) {
            Ok(sent) if sent < k => {
                debug!(dropped = k - sent, "client socket full: datagrams dropped")
            }
            Ok(_) => {}
            Err(e) => debug!(error = %e, "client send failed"),
        }
    })
    .await;
}

/// Which kind of TCP port a listener is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    /// TURN over TCP only (3433-3460).
    Turn,
    /// TLS (and sniffed plain TURN/HTTP): 443.
    Tls,
    /// Plain signalling (HTTP/WebSocket): 4000.
    Signal,
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, local: SocketAddr, port: Port) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, %local, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Behind a PROXY-protocol balancer the per-address limit applies to the real client,
        // known only after the header; otherwise it applies before a byte is read.
        let guard = if shard.front.proxy_protocol {
            None
        } else {
            match shard.front.limits.admit(peer.ip()) {
                Some(g) => Some(g),
                None => {
                    info!(client = %peer, port = local.port(), "connection refused: per-address or total connection limit reached");
                    continue;
                }
            }
        };
        tokio::task::spawn_local(serve_connection(
            shard.clone(),
            stream,
            peer,
            local,
            port,
            guard,
        ));
    }
}

/// Takes one accepted connection from PROXY header and TLS through to its handler.
async fn serve_connection(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    port: Port,
    guard: Option<ConnGuard>,
) {
    let timeout = shard.front.handshake_timeout;
    let (client, early) = if shard.front.proxy_protocol {
        match front::read_proxy_header(&mut stream, peer, timeout).await {
            Ok(x) => x,
            Err(e) => return front::refused(local.port(), peer, &e.to_string()),
        }
    } else {
        (peer, Vec::new())
    };
    let guard = match guard {
        Some(g) => g,
        None => match shard.front.limits.admit(client.ip()) {
            Some(g) => g,
            None => {
                info!(%client, port = local.port(), "connection refused: per-address or total connection limit reached");
                return;
            }
        },
    };
    let mut io = Prefixed::new(early, stream);
    match port {
        Port::Turn => {
            let tuple = FiveTuple {
                transport: Transport::Tcp,
                client,
                server: local,
            };
            spawn_client(&shard, Box::new(io), tuple, guard);
        }
        Port::Signal => serve_http(&shard, Box::new(io), client, guard),
        Port::Tls => {
            let (kind, first) = match front::read_sniff(&mut io, timeout).await {
                Ok(x) => x,
                Err(e) => return front::refused(local.port(), client, &e.to_string()),
            };
            let io = Prefixed::new(first, io);
            match kind {
                Sniffed::Turn => spawn_client(
                    &shard,
                    Box::new(io),
                    FiveTuple {
                        transport: Transport::Tcp,
                        client,
                        server: local,
                    },
                    guard,
                ),
                Sniffed::Http => serve_http(&shard, Box::new(io), client, guard),
                Sniffed::Tls => tls_connection(shard, io, client, local, guard).await,
                Sniffed::Unknown => {
                    front::refused(local.port(), client, "neither TLS, TURN nor HTTP")
                }
            }
        }
    }
}

async fn tls_connection(
    shard: Rc<Shard>,
    io: Prefixed<Prefixed<TcpStream>>,
    client: SocketAddr,
    local: SocketAddr,
    guard: ConnGuard,
) {
    let Some(tls) = &shard.front.tls else {
        return front::refused(local.port(), client, "TLS is not configured on this edge");
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
    let timeout = shard.front.handshake_timeout;
    let mut stream = match tokio::time::timeout(timeout, acceptor.accept(io)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            info!(%client, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => return front::refused(local.port(), client, "TLS handshake timed out"),
    };
    let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let turn = FiveTuple {
        transport: Transport::Tls,
        client,
        server: local,
    };
    match alpn.as_deref() {
        Some(front::ALPN_TURN) => spawn_client(&shard, Box::new(stream), turn, guard),
        Some(_) => serve_http(&shard, Box::new(stream), client, guard),
        None => {
            let (kind, first) = match front::read_sniff(&mut stream, timeout).await {
                Ok(x) => x,
                Err(e) => return front::refused(local.port(), client, &e.to_string()),
            };
            let io = Prefixed::new(first, stream);
            match kind {
                Sniffed::Turn => spawn_client(&shard, Box::new(io), turn, guard),
                Sniffed::Http => serve_http(&shard, Box::new(io), client, guard),
                Sniffed::Tls | Sniffed::Unknown => {
                    front::refused(local.port(), client, "inside TLS: neither TURN nor HTTP")
                }
            }
        }
    }
}

/// Serves the signalling service (HTTP/1.1 with WebSocket upgrades) on one connection.
fn serve_http(shard: &Rc<Shard>, io: Box<dyn Io>, client: SocketAddr, guard: ConnGuard) {
    let Some(router) = shard.front.router.clone() else {
        return front::refused(0, client, "no signalling service on this edge");
    };
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower::ServiceExt;
    tokio::spawn(async move {
        let _guard = guard;
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(client));
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        if let Err(e) = builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc)
            .await
        {
            debug!(%client, error = %e, "signalling connection ended with an error");
        }
    });
}

fn spawn_client(shard: &Rc<Shard>, stream: Box<dyn Io>, tuple: FiveTuple, guard: ConnGuard) {
    // Commands are rare (one splice or close per connection): a small queue is plenty.
    let (cmd, rx) = mpsc::channel(4);
    let out = Rc::new(ClientOut {
        buf: RefCell::new(Vec::new()),
        ready: Notify::new(),
    });
    let task = tokio::task::spawn_local(tcp_client(
        shard.clone(),
        stream,
        tuple,
        out.clone(),
        rx,
        guard,
    ));
    shard.tcp_clients.borrow_mut().insert(
        tuple,
        ClientHandle {
            out,
            cmd,
            task: task.abort_handle(),
        },
    );
}

/// Reads TURN frames from a TCP client, writes what the server queues for it, and turns into a
/// raw byte pipe after an RFC 6062 ConnectionBind.
async fn tcp_client(
    shard: Rc<Shard>,
    mut stream: Box<dyn Io>,
    tuple: FiveTuple,
    out: Rc<ClientOut>,
    mut rx: mpsc::Receiver<ClientCmd>,
    conn: ConnGuard,
) {
    let mut guard = ClientGuard {
        shard: shard.clone(),
        tuple,
        conn: Some(conn),
    };
    let mut buf = vec![0u8; 2 * (MAX_DATAGRAM + 20)];
    let mut filled = 0usize;
    // The other half of the output double buffer (see `ClientOut`).
    let mut writing = Vec::new();
    // Slow-loris: a whole first frame within the handshake timeout; later, silence is allowed
    // only while the connection holds an allocation (media may pause; the allocation's
    // lifetime bounds it).
    let mut deadline = tokio::time::Instant::now() + shard.front.handshake_timeout;
    let mut first_frame = true;
    let end = 'conn: loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                if shard.server.borrow().has_allocation(&tuple) {
                    deadline = tokio::time::Instant::now() + shard.front.idle_timeout;
                    continue;
                }
                info!(client = %tuple.client, "closing TCP/TLS client: idle without an allocation");
                break 'conn End::Closed;
            }
            r = stream.read(&mut buf[filled..]) => {
                let n = match r {
                    Ok(0) | Err(_) => break 'conn End::Closed,
                    Ok(n) => n,
                };
                filled += n;
                let mut at = 0;
                let before = at;
                loop {
                    match frame_len(&buf[at..filled]) {
                        Ok(Some((_, len))) => {
                            if std::mem::take(&mut first_frame) {
                                if let Some(owner) = connection_bind_shard(&buf[at..at + len]) {
                                    if owner != shard.index && usize::from(owner) < shard.front.handoff.len() {
                                        break 'conn End::Handoff { owner, at };
                                    }
                                }
                            }
                            let fwd = shard.server.borrow_mut().handle_client(Instant::now(), tuple, &buf[at..at + len]);
                            let base = at;
                            match fwd {
                                Forward::ToPeer { relay, peer, range } => shard.forward(
                                    Forward::ToPeer { relay, peer, range: base + range.start..base + range.end },
                                    &buf,
                                ),
                                Forward::ToClient { .. } | Forward::None => shard.drain(),
                            }
                            at += len;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            info!(client = %tuple.client, error = %e, "closing TCP client: not TURN framing");
                            break 'conn End::Closed;
                        }
                    }
                }
                if at > before {
                    deadline = tokio::time::Instant::now() + shard.front.idle_timeout;
                }
                buf.copy_within(at..filled, 0);
                filled -= at;
            }
            _ = out.ready.notified() => {
                std::mem::swap(&mut *out.buf.borrow_mut(), &mut writing);
                if !writing.is_empty() && stream.write_all(&writing).await.is_err() {
                    break 'conn End::Closed;
                }
                writing.clear();
                writing.shrink_to(CLIENT_OUT_KEEP);
            }
            cmd = rx.recv() => match cmd {
                Some(ClientCmd::Splice(peer, id)) => break 'conn End::Splice(peer, id),
                Some(ClientCmd::Close) | None => break 'conn End::Closed,
            }
        }
    };
    let (mut peer, id) = match end {
        End::Closed => return,
        End::Splice(peer, id) => (peer, id),
        End::Handoff { owner, at } => {
            let Some(conn) = guard.conn.take() else {
                return;
            };
            let h = Handoff {
                stream,
                tuple,
                unread: buf[at..filled].to_vec(),
                guard: conn,
            };
            debug!(client = %tuple.client, from = shard.index, to = owner, "ConnectionBind moved to the shard that owns its connection");
            if shard.front.handoff[usize::from(owner)].send(h).is_err() {
                debug!(to = owner, "handoff target shard is gone");
            }
            return;
        }
    };
    // Flush responses queued before the splice (the ConnectionBind success).
    let queued = std::mem::take(&mut *out.buf.borrow_mut());
    if !queued.is_empty() && stream.write_all(&queued).await.is_err() {
        return;
    }
    if filled > 0 && peer.write_all(&buf[..filled]).await.is_err() {
        return;
    }
    let r = tokio::io::copy_bidirectional(&mut stream, &mut peer).await;
    debug!(connection = id, result = ?r, "TCP relay connection finished");
    shard
        .server
        .borrow_mut()
        .handle_connection_closed(Instant::now(), id);
    shard.peer_conns.borrow_mut().remove(&id);
    shard.drain();
}

/// How a client connection's TURN phase ended.
enum End {
    Closed,
    /// ConnectionBind succeeded: the connection becomes a pipe to this peer connection.
    Splice(TcpStream, u32),
    /// The first frame is a ConnectionBind for a connection of shard `owner`; it starts at
    /// `at` in the read buffer.
    Handoff {
        owner: u8,
        at: usize,
    },
}

/// Tells the server when a client connection task ends, however it ends (even aborted).
struct ClientGuard {
    shard: Rc<Shard>,
    tuple: FiveTuple,
    /// The connection's place in the connection limits; moves with a handoff.
    conn: Option<ConnGuard>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.shard.tcp_clients.borrow_mut().remove(&self.tuple);
        if let Ok(mut s) = self.shard.server.try_borrow_mut() {
            s.handle_client_closed(Instant::now(), self.tuple);
        }
        // Output (ReleaseRelay events) is drained by the next input or timer tick.
        self.shard.wake.notify_one();
    }
}

async fn tcp_relay_loop(shard: Rc<Shard>, listener: TcpListener, relay: SocketAddr) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let id = shard
            .server
            .borrow_mut()
            .handle_peer_connection(Instant::now(), relay, peer);
        if let Some(id) = id {
            shard
                .peer_conns
                .borrow_mut()
                .insert(id, PeerConn::Pending(stream));
        }
        shard.drain();
    }
}

async fn connect_peer(shard: Rc<Shard>, connection: u32, relay: SocketAddr, peer: SocketAddr) {
    let result = async {
        let s = sockets::tcp_from(relay)?;
        tokio::time::timeout(CONNECT_TIMEOUT, s.connect(peer))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
    }
    .await;
    let ok = match result {
        Ok(stream) => {
            shard
                .peer_conns
                .borrow_mut()
                .insert(connection, PeerConn::Pending(stream));
            true
        }
        Err(e) => {
            info!(connection, %peer, error = %e, "TCP connect to peer failed");
            false
        }
    };
    shard
        .server
        .borrow_mut()
        .handle_peer_connected(Instant::now(), connection, ok);
    shard.drain();
}

async fn timer_loop(shard: Rc<Shard>) {
    let mut last_wall = Instant::now();
    loop {
        let next = shard.server.borrow().poll_timeout();
        let cap = Instant::now() + Duration::from_secs(1);
        let until = next.map_or(cap, |t| t.min(cap));
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(until)) => {}
            _ = shard.wake.notified() => {}
        }
        let now = Instant::now();
        {
            let mut s = shard.server.borrow_mut();
            if now.duration_since(last_wall) > Duration::from_secs(60) {
                s.set_wall_clock(now, unix_now());
                last_wall = now;
            }
            s.handle_timeout(now);
        }
        shard.drain();
    }
}

pub(crate) fn wall_clock() -> (Instant, u64) {
    (Instant::now(), unix_now())
}
