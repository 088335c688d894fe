//! The "null relay": what a TURN relay costs when it does nothing but move datagrams. Same
//! socket topology as a TURN server (one listening socket that clients send to, one relay
//! socket per client that talks to the peer), no TURN framing, no authentication, no
//! permission checks: recvmmsg on one side, a hash-map lookup by source address, sendmmsg on
//! the other. Its packet rate on a machine is the kernel's limit for this topology there.
//!
//! Each thread owns an SO_REUSEPORT listener on the same port (the kernel spreads clients by
//! 4-tuple hash) and the relay sockets of the clients that reached it, like the edge's shards.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::null_alloc;
use crate::null_stream::{Streams, STREAM};
use crate::peer::{bound_udp, current_tid};
use crate::slab::Slab;
use crate::sys::{to_storage, Epoll, RecvBatch, SendBatch, BATCH};

/// Forwarded datagram counters (once per batch).
#[derive(Default)]
pub struct NullStats {
    pub to_peer: AtomicU64,
    pub to_client: AtomicU64,
    pub dropped: AtomicU64,
}

pub struct NullRelay {
    pub addr: SocketAddr,
    pub stats: Arc<NullStats>,
    pub tids: Arc<Mutex<Vec<u32>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl NullRelay {
    /// Starts `threads` forwarders listening on `bind` and relaying to `peer`; with `tcp`,
    /// each also listens for TURN-over-TCP-framed connections on the same port. With `cpus`,
    /// the forwarder threads run on those CPUs only.
    pub fn start(
        bind: SocketAddr,
        peer: SocketAddr,
        threads: usize,
        tcp: bool,
        cpus: Option<Vec<usize>>,
    ) -> io::Result<Self> {
        let first = bound_udp(bind, true)?;
        let addr = first
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("no local address"))?;
        let mut listeners = vec![first];
        for _ in 1..threads.max(1) {
            listeners.push(bound_udp(addr, true)?);
        }
        let stats = Arc::new(NullStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let tids = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            l.set_nonblocking(true)?;
            let l: UdpSocket = l.into();
            let tl = if tcp { Some(tcp_listener(addr)?) } else { None };
            let (stats, stop, tids) = (stats.clone(), stop.clone(), tids.clone());
            let relay_ip = bind.ip();
            let cpus = cpus.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("null-relay-{i}"))
                    .spawn(move || {
                        if let Some(c) = &cpus {
                            if let Err(e) = crate::sys::pin_current_thread(c) {
                                eprintln!("null relay thread {i}: not pinned to {c:?}: {e}");
                            }
                        }
                        tids.lock().unwrap().push(current_tid());
                        if let Err(e) = forward_loop(l, tl, relay_ip, peer, &stats, &stop) {
                            eprintln!("null relay thread {i}: {e}");
                        }
                    })?,
            );
        }
        Ok(Self {
            addr,
            stats,
            tids,
            stop,
            threads: handles,
        })
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

struct Relay {
    sock: UdpSocket,
    client: (libc::sockaddr_storage, libc::socklen_t),
    /// Connected to the peer (relay sockets opened by an Allocate start unconnected).
    connected: bool,
}

const LISTENER: u64 = u64::MAX;
const TCP_LISTENER: u64 = u64::MAX - 1;

/// A TCP listener on `addr` that every thread binds (SO_REUSEPORT, like the UDP ones).
fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// The relay sockets of one thread, by client address; a slot's index is its epoll token.
struct Relays {
    ep: Epoll,
    relay_ip: std::net::IpAddr,
    slots: Slab<Relay>,
    by_client: HashMap<SocketAddr, usize>,
}

impl Relays {
    /// The relay of `client`, opened (unconnected) if it has none.
    fn get_or_open(&mut self, client: SocketAddr) -> io::Result<usize> {
        if let Some(&r) = self.by_client.get(&client) {
            return Ok(r);
        }
        let sock = UdpSocket::bind(SocketAddr::new(self.relay_ip, 0))?;
        sock.set_nonblocking(true)?;
        self.ep
            .add(sock.as_raw_fd(), self.slots.next_key() as u64, false)?;
        let r = self.slots.insert(Relay {
            sock,
            client: to_storage(&client),
            connected: false,
        });
        self.by_client.insert(client, r);
        Ok(r)
    }

    /// The relay of `client`, opened and connected to `peer` on its first datagram.
    fn towards_peer(&mut self, client: SocketAddr, peer: SocketAddr) -> io::Result<RawFd> {
        let r = self.get_or_open(client)?;
        let relay = self.slots.get_mut(r).expect("mapped slots are filled");
        if !relay.connected {
            relay.sock.connect(peer)?;
            relay.connected = true;
        }
        Ok(relay.sock.as_raw_fd())
    }
}

impl null_alloc::Allocations for Relays {
    fn open(&mut self, client: SocketAddr) -> Option<SocketAddr> {
        let r = self.get_or_open(client).ok()?;
        self.slots.get(r)?.sock.local_addr().ok()
    }

    fn close(&mut self, client: SocketAddr) {
        if let Some(r) = self.by_client.remove(&client) {
            // Closing the socket also takes it out of the epoll set.
            self.slots.remove(r);
        }
    }
}

fn forward_loop(
    listener: UdpSocket,
    tcp: Option<TcpListener>,
    relay_ip: std::net::IpAddr,
    peer: SocketAddr,
    stats: &NullStats,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut relays = Relays {
        ep: Epoll::new(256)?,
        relay_ip,
        slots: Slab::new(),
        by_client: HashMap::new(),
    };
    let lfd = listener.as_raw_fd();
    relays.ep.add(lfd, LISTENER, false)?;
    if let Some(t) = &tcp {
        relays.ep.add(t.as_raw_fd(), TCP_LISTENER, false)?;
    }
    let mut streams = Streams::new(relay_ip, peer);
    let mut rx = RecvBatch::new(9216);
    let mut tx = SendBatch::new(9216);
    let mut answers = SendBatch::new(512);
    let mut answer = Vec::with_capacity(512);
    let mut ready = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        relays.ep.wait(50, &mut ready)?;
        for &(token, readable, writable) in &ready {
            if token != LISTENER && token != TCP_LISTENER && token & STREAM != 0 {
                streams.on_event(
                    (token, readable, writable),
                    &relays.ep,
                    &mut rx,
                    &mut tx,
                    stats,
                );
                continue;
            }
            if !readable {
                continue;
            }
            if token == TCP_LISTENER {
                if let Some(t) = &tcp {
                    streams.accept(t, &relays.ep);
                }
            } else if token == LISTENER {
                // Client -> peer: group consecutive datagrams of one client into one sendmmsg.
                // STUN requests (the allocation runs) are answered through the listener.
                while let Ok(n) = rx.recv(lfd, BATCH, libc::MSG_DONTWAIT) {
                    let mut current: Option<RawFd> = None;
                    tx.clear();
                    answers.clear();
                    for i in 0..n {
                        let Some(src) = rx.addr(i) else { continue };
                        let d = rx.packet(i);
                        if null_alloc::is_stun(d) {
                            if null_alloc::answer(d, src, &mut relays, &mut answer) {
                                let (ss, len) = to_storage(&src);
                                answers.push(&answer, Some((&ss, len)));
                            }
                            continue;
                        }
                        let fd = relays.towards_peer(src, peer)?;
                        if current.is_some_and(|c| c != fd) {
                            flush(&mut tx, current.unwrap(), stats, true);
                        }
                        current = Some(fd);
                        tx.push(d, None);
                    }
                    if let Some(fd) = current {
                        flush(&mut tx, fd, stats, true);
                    }
                    if !answers.is_empty() {
                        // Answers the kernel does not take are lost, as a full socket would
                        // lose them; the generator retransmits.
                        let _ = answers.send(lfd, 0);
                    }
                    if n < BATCH {
                        break;
                    }
                }
            } else {
                // Peer -> client, through the listener.
                let Some(r) = relays.slots.get(token as usize) else {
                    continue;
                };
                let fd = r.sock.as_raw_fd();
                while let Ok(n) = rx.recv(fd, BATCH, libc::MSG_DONTWAIT) {
                    tx.clear();
                    for i in 0..n {
                        tx.push(rx.packet(i), Some((&r.client.0, r.client.1)));
                    }
                    flush(&mut tx, lfd, stats, false);
                    if n < BATCH {
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn flush(tx: &mut SendBatch, fd: i32, stats: &NullStats, to_peer: bool) {
    let n = tx.len();
    let mut done = 0;
    let mut sent = 0;
    let mut tries = 0;
    while done < n && tries < 3 {
        match tx.send(fd, done) {
            Ok(k) => {
                done += k;
                sent += k;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tries += 1;
                std::thread::yield_now();
            }
            Err(_) => done += 1,
        }
    }
    let counter = if to_peer {
        &stats.to_peer
    } else {
        &stats.to_client
    };
    counter.fetch_add(sent as u64, Ordering::Relaxed);
    stats
        .dropped
        .fetch_add((n - sent) as u64, Ordering::Relaxed);
    tx.clear();
}
