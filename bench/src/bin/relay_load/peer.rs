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

use crate::sys::{RecvBatch, SendBatch, BATCH, GSO_MAX_BYTES, GSO_MAX_SEGMENTS};

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
    ///
    /// Port 0 picks a free port in 20000..30000, outside both the usual relay port range
    /// (49152-65535: a relay may refuse peers on its own relay ports, ours does) and Linux's
    /// ephemeral range.
    pub fn start(bind: SocketAddr, threads: usize, gso: bool) -> io::Result<Self> {
        let reuse = threads > 1;
        let first = if bind.port() != 0 {
            bound_udp(bind, reuse)?
        } else {
            let seed = std::process::id() as u64 * 7919 + super::now_ns() / 1000;
            let mut last_err = None;
            let mut found = None;
            for k in 0..200u64 {
                let port = 20_000 + ((seed + k * 1013) % 10_000) as u16;
                match bound_udp(SocketAddr::new(bind.ip(), port), reuse) {
                    Ok(s) => {
                        found = Some(s);
                        break;
                    }
                    Err(e) => last_err = Some(e),
                }
            }
            match found {
                Some(s) => s,
                None => return Err(last_err.unwrap_or_else(|| io::Error::other("no port"))),
            }
        };
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
                        let mut gso = gso;
                        echo_loop(&s, &stats, &stop, &mut gso);
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

fn echo_loop(s: &Socket, stats: &PeerStats, stop: &AtomicBool, gso: &mut bool) {
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
        // Runs of equal-sized echoes to one destination go out as one UDP GSO send; the rest
        // (and everything, without GSO) through sendmmsg.
        let mut sent = 0;
        let mut i = 0;
        let mut singles = 0; // start of the pending sendmmsg range
        while i < n {
            let mut j = i + 1;
            if *gso {
                let seg = tx.len_of(i);
                let per = (GSO_MAX_BYTES / seg.max(1)).clamp(1, GSO_MAX_SEGMENTS);
                while j < n && j - i < per && tx.len_of(j) == seg && tx.same_dest(i, j) {
                    j += 1;
                }
            }
            if j - i >= 2 {
                sent += send_all(&mut tx, fd, singles, i, stats);
                match tx.send_gso(fd, i, j) {
                    Ok(k) => sent += k,
                    Err(e) if gso_unsupported(&e) => {
                        *gso = false;
                        sent += send_all(&mut tx, fd, i, j, stats);
                    }
                    Err(_) => {
                        stats
                            .tx_dropped
                            .fetch_add((j - i) as u64, Ordering::Relaxed);
                    }
                }
                singles = j;
            }
            i = j;
        }
        sent += send_all(&mut tx, fd, singles, n, stats);
        stats.tx_packets.fetch_add(sent as u64, Ordering::Relaxed);
    }
}

/// Whether a GSO send failed because the kernel or socket cannot do it (then fall back).
pub fn gso_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

/// sendmmsg of `from..to`, retrying a full socket buffer a few times; returns how many went.
fn send_all(tx: &mut SendBatch, fd: i32, from: usize, to: usize, stats: &PeerStats) -> usize {
    let (mut done, mut sent, mut tries) = (from, 0, 0);
    while done < to && tries < 3 {
        match tx.send_range(fd, done, to) {
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
    if done < to {
        stats
            .tx_dropped
            .fetch_add((to - done) as u64, Ordering::Relaxed);
    }
    sent
}
