//! The UDP echo peer: every datagram goes back to where it came from, unchanged. One or more
//! threads, each with its own SO_REUSEPORT socket on the same port, blocking in recvmmsg and
//! answering with one sendmmsg per batch.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::sys::{RecvBatch, SendBatch, BATCH};

/// Counters the echo peer keeps (updated once per batch).
#[derive(Default)]
pub struct PeerStats {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    /// Echoes the kernel refused (socket buffer full): counted, not retried forever.
    pub tx_dropped: AtomicU64,
}

/// A running echo peer.
pub struct Peer {
    pub addr: SocketAddr,
    pub stats: Arc<PeerStats>,
    pub tids: Arc<Mutex<Vec<u32>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// A UDP socket for a bench server role: SO_REUSEPORT, big buffers, bound to `addr`.
pub fn bound_udp(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    Ok(s)
}

/// The calling thread's kernel thread id (for per-thread CPU accounting).
pub fn current_tid() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

impl Peer {
    /// Starts `threads` echo threads on `bind` (port 0: any free port).
    pub fn start(bind: SocketAddr, threads: usize) -> io::Result<Self> {
        let first = bound_udp(bind, true)?;
        let addr = first
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("no local address"))?;
        let mut sockets = vec![first];
        for _ in 1..threads.max(1) {
            sockets.push(bound_udp(addr, true)?);
        }
        let stats = Arc::new(PeerStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let tids = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for (i, s) in sockets.into_iter().enumerate() {
            s.set_read_timeout(Some(Duration::from_millis(50)))?;
            let (stats, stop, tids) = (stats.clone(), stop.clone(), tids.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("echo-peer-{i}"))
                    .spawn(move || {
                        tids.lock().unwrap().push(current_tid());
                        echo_loop(&s, &stats, &stop);
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

    /// Stops and joins the threads.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn echo_loop(s: &Socket, stats: &PeerStats, stop: &AtomicBool) {
    let fd = s.as_raw_fd();
    let mut rx = RecvBatch::new(9216);
    let mut tx = SendBatch::new(9216);
    while !stop.load(Ordering::Relaxed) {
        let n = match rx.recv(fd, BATCH, libc::MSG_WAITFORONE) {
            Ok(n) => n,
            Err(_) => continue, // timeout (checks `stop`) or a transient error
        };
        let mut bytes = 0u64;
        tx.clear();
        for i in 0..n {
            let p = rx.packet(i);
            bytes += p.len() as u64;
            let ss = *rx.raw_addr(i);
            let len = match ss.ss_family as libc::c_int {
                libc::AF_INET => std::mem::size_of::<libc::sockaddr_in>(),
                _ => std::mem::size_of::<libc::sockaddr_in6>(),
            } as libc::socklen_t;
            tx.push(p, Some((&ss, len)));
        }
        stats.rx_packets.fetch_add(n as u64, Ordering::Relaxed);
        stats.rx_bytes.fetch_add(bytes, Ordering::Relaxed);
        let (mut done, mut sent, mut tries) = (0, 0, 0);
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
                // ECONNREFUSED from an earlier ICMP error and the like: skip one datagram.
                Err(_) => {
                    done += 1;
                    stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        stats.tx_packets.fetch_add(sent as u64, Ordering::Relaxed);
        if done < n {
            stats
                .tx_dropped
                .fetch_add((n - done) as u64, Ordering::Relaxed);
        }
    }
}
