//! The null relay over TCP: what relaying TURN-over-TCP traffic costs when nothing but the
//! relaying is done. Per accepted connection one UDP socket connected to the peer; ChannelData
//! frames read from the stream go to the peer as datagrams (one sendmmsg per read), datagrams
//! from the peer go back as ChannelData frames appended to one output buffer and written with
//! as few writes as the socket takes. No allocation, no authentication, no channel lookup (the
//! channel number is ignored and 0x4000 written back). Its rate is the kernel's limit for
//! TURN-over-TCP relaying on this machine, as the UDP null relay's is for UDP.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;

use crate::null::{flush, NullStats};
use crate::slab::Slab;
use crate::sys::{Epoll, RecvBatch, SendBatch, BATCH};

/// Token bit of a stream connection's events; with [`UDP_SIDE`] its UDP socket's.
pub const STREAM: u64 = 1 << 62;
const UDP_SIDE: u64 = 1 << 61;
/// Bytes read per connection before frames are parsed (several frames per read).
const IN_CAP: usize = 64 * 1024;
/// Output queued per connection before datagrams from the peer are dropped (as a full
/// socket buffer would drop them).
const OUT_CAP: usize = 1 << 20;
/// Channel number written on frames back to the client.
const CHANNEL: u16 = 0x4000;

struct Conn {
    stream: TcpStream,
    udp: UdpSocket,
    inbuf: Box<[u8]>,
    have: usize,
    out: Vec<u8>,
    out_at: usize,
    want_write: bool,
}

/// The TCP side of one null relay thread.
pub struct Streams {
    conns: Slab<Conn>,
    relay_ip: IpAddr,
    peer: SocketAddr,
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

impl Streams {
    pub fn new(relay_ip: IpAddr, peer: SocketAddr) -> Self {
        Self {
            conns: Slab::new(),
            relay_ip,
            peer,
        }
    }

    /// Accepts every pending connection and gives each its UDP socket towards the peer. A
    /// connection that cannot be set up is closed and said so; the others go on.
    pub fn accept(&mut self, listener: &TcpListener, ep: &Epoll) {
        loop {
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    eprintln!("null relay: accept: {e}");
                    return;
                }
            };
            if let Err(e) = self.add(stream, ep) {
                eprintln!("null relay: TCP connection dropped: {e}");
            }
        }
    }

    fn add(&mut self, stream: TcpStream, ep: &Epoll) -> io::Result<()> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        let udp = UdpSocket::bind(SocketAddr::new(self.relay_ip, 0))?;
        udp.connect(self.peer)?;
        udp.set_nonblocking(true)?;
        let i = self.conns.next_key();
        ep.add(stream.as_raw_fd(), STREAM | i as u64, false)?;
        // On an error from here on, dropping both sockets takes them out of the epoll set.
        ep.add(udp.as_raw_fd(), STREAM | UDP_SIDE | i as u64, false)?;
        self.conns.insert(Conn {
            stream,
            udp,
            inbuf: vec![0u8; IN_CAP].into_boxed_slice(),
            have: 0,
            out: Vec::new(),
            out_at: 0,
            want_write: false,
        });
        Ok(())
    }

    /// Handles an event `(token, readable, writable)` whose token has the [`STREAM`] bit.
    pub fn on_event(
        &mut self,
        (token, readable, writable): (u64, bool, bool),
        ep: &Epoll,
        rx: &mut RecvBatch,
        tx: &mut SendBatch,
        stats: &NullStats,
    ) {
        let i = (token & !(STREAM | UDP_SIDE)) as usize;
        let Some(c) = self.conns.get_mut(i) else {
            return;
        };
        let open = if token & UDP_SIDE != 0 {
            from_peer(c, i, ep, rx, stats)
        } else {
            (!writable || write_out(c, i, ep)) && (!readable || from_client(c, tx, stats))
        };
        if !open {
            // Dropping the sockets also takes them out of the epoll set.
            self.conns.remove(i);
        }
    }
}

/// Stream -> peer: reads what is there, sends each whole ChannelData frame's payload as one
/// datagram. False when the connection is gone.
fn from_client(c: &mut Conn, tx: &mut SendBatch, stats: &NullStats) -> bool {
    let fd = c.udp.as_raw_fd();
    loop {
        let n = match c.stream.read(&mut c.inbuf[c.have..]) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        c.have += n;
        let mut at = 0;
        tx.clear();
        while c.have - at >= 4 {
            let len = u16::from_be_bytes([c.inbuf[at + 2], c.inbuf[at + 3]]) as usize;
            let total = 4 + pad4(len);
            if c.have - at < total {
                break;
            }
            tx.push(&c.inbuf[at + 4..at + 4 + len], None);
            if tx.len() == BATCH {
                flush(tx, fd, stats, true);
            }
            at += total;
        }
        if !tx.is_empty() {
            flush(tx, fd, stats, true);
        }
        c.inbuf.copy_within(at..c.have, 0);
        c.have -= at;
        if c.have == c.inbuf.len() {
            // No frame is this long (the generator's are at most 8 KiB): not our traffic.
            return false;
        }
    }
}

/// Peer -> stream: frames every datagram and writes what the socket takes. False when the
/// connection is gone.
fn from_peer(c: &mut Conn, i: usize, ep: &Epoll, rx: &mut RecvBatch, stats: &NullStats) -> bool {
    let fd = c.udp.as_raw_fd();
    let mut queued = 0u64;
    let mut dropped = 0u64;
    // Forget what was written already, so a lasting backlog does not grow the buffer by
    // everything ever relayed.
    if c.out_at > 0 && c.out_at >= c.out.len() / 2 {
        c.out.drain(..c.out_at);
        c.out_at = 0;
    }
    while let Ok(n) = rx.recv(fd, BATCH, libc::MSG_DONTWAIT) {
        for k in 0..n {
            let d = rx.packet(k);
            if c.out.len() - c.out_at + 4 + pad4(d.len()) > OUT_CAP {
                dropped += 1;
                continue;
            }
            c.out.extend_from_slice(&CHANNEL.to_be_bytes());
            c.out.extend_from_slice(&(d.len() as u16).to_be_bytes());
            c.out.extend_from_slice(d);
            c.out.resize(c.out.len() + pad4(d.len()) - d.len(), 0);
            queued += 1;
        }
        if n < BATCH {
            break;
        }
    }
    stats
        .to_client
        .fetch_add(queued, std::sync::atomic::Ordering::Relaxed);
    stats
        .dropped
        .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
    write_out(c, i, ep)
}

/// Writes queued output; asks for writability while some is left. False when the connection
/// is gone.
fn write_out(c: &mut Conn, i: usize, ep: &Epoll) -> bool {
    while c.out_at < c.out.len() {
        match c.stream.write(&c.out[c.out_at..]) {
            Ok(0) => return false,
            Ok(n) => c.out_at += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    let left = c.out_at < c.out.len();
    if !left {
        c.out.clear();
        c.out_at = 0;
    }
    if left != c.want_write {
        c.want_write = left;
        if ep
            .modify(c.stream.as_raw_fd(), STREAM | i as u64, left)
            .is_err()
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    /// A real loopback round trip: frames written to the stream reach a UDP "peer" as bare
    /// payloads, and the peer's datagrams come back as padded ChannelData frames.
    #[test]
    fn frames_go_out_as_datagrams_and_come_back_framed() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let peer = UdpSocket::bind((ip, 0)).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let listener = TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut ep = Epoll::new(16).unwrap();
        ep.add(listener.as_raw_fd(), 0, false).unwrap();
        let mut streams = Streams::new(ip, peer.local_addr().unwrap());
        let (mut rx, mut tx) = (RecvBatch::new(9216), SendBatch::new(9216));
        let stats = NullStats::default();

        // Two frames in one write, the second split by the write boundary of a third.
        let mut wire = Vec::new();
        for payload in [&b"hello"[..], &[7u8; 100][..]] {
            wire.extend_from_slice(&0x4001u16.to_be_bytes());
            wire.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            wire.extend_from_slice(payload);
            wire.resize(wire.len() + pad4(payload.len()) - payload.len(), 0);
        }
        client.write_all(&wire[..50]).unwrap();

        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut ready = Vec::new();
        let mut sent_rest = false;
        while got.len() < 2 && Instant::now() < deadline {
            ep.wait(50, &mut ready).unwrap();
            for &(token, r, w) in &ready {
                if token == 0 {
                    streams.accept(&listener, &ep);
                } else {
                    streams.on_event((token, r, w), &ep, &mut rx, &mut tx, &stats);
                }
            }
            if !sent_rest && streams.conns.occupied() > 0 {
                std::thread::sleep(Duration::from_millis(20));
                client.write_all(&wire[50..]).unwrap();
                sent_rest = true;
            }
            peer.set_nonblocking(true).unwrap();
            while let Ok((n, from)) = peer.recv_from(&mut buf) {
                got.push(buf[..n].to_vec());
                peer.send_to(&buf[..n], from).unwrap();
            }
        }
        assert_eq!(got, vec![b"hello".to_vec(), vec![7u8; 100]]);
        assert_eq!(stats.to_peer.load(Ordering::Relaxed), 2);

        // Both echoes come back as frames on the stream, padded, channel 0x4000.
        let deadline = Instant::now() + Duration::from_secs(5);
        while stats.to_client.load(Ordering::Relaxed) < 2 && Instant::now() < deadline {
            ep.wait(50, &mut ready).unwrap();
            for &(token, r, w) in &ready {
                if token != 0 {
                    streams.on_event((token, r, w), &ep, &mut rx, &mut tx, &stats);
                }
            }
        }
        let mut back = vec![0u8; 4 + 8 + 4 + 100];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back[..4], &[0x40, 0x00, 0, 5]);
        assert_eq!(&back[4..9], b"hello");
        assert_eq!(&back[12..16], &[0x40, 0x00, 0, 100]);
        assert_eq!(&back[16..], &[7u8; 100][..]);

        // The client leaving closes the connection and frees its slot.
        drop(client);
        let deadline = Instant::now() + Duration::from_secs(5);
        while streams.conns.occupied() > 0 && Instant::now() < deadline {
            ep.wait(50, &mut ready).unwrap();
            for &(token, r, w) in &ready {
                if token != 0 {
                    streams.on_event((token, r, w), &ep, &mut rx, &mut tx, &stats);
                }
            }
        }
        assert_eq!(streams.conns.occupied(), 0);
        assert_eq!(
            streams.conns.next_key(),
            0,
            "the slot is free for the next connection"
        );
    }
}
