//! Batched datagram I/O for Linux: recvmmsg and sendmmsg (and UDP GSO sends) over buffers this
//! crate owns, plus sockaddr conversion. It is the one place the edge's fast path and the load
//! generator (bench/relay_load) use `unsafe` for packet I/O; both share it.
//!
//! The batch structs own their buffers; the kernel headers (`mmsghdr`, `iovec`) that point
//! into those buffers are rebuilt immediately before every system call, so no raw pointer
//! outlives the `&mut self` borrow it was taken under.
#![allow(unsafe_code)] // the point of this crate: every block has a SAFETY note
#![cfg(target_os = "linux")]

use std::io;
use std::mem;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Most datagrams one recvmmsg/sendmmsg call moves.
pub const BATCH: usize = 64;

/// Converts a socket address to the kernel's form.
pub fn to_storage(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            (ss, mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            (ss, mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

/// Converts the kernel's form back; `None` for families other than IPv4/IPv6.
pub fn from_storage(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Up to [`BATCH`] receive buffers of `cap` bytes each, filled by one recvmmsg. Each slot may
/// keep room before and after the datagram, so that a header can be written in front of it
/// (a TURN relay turns a peer's datagram into ChannelData in place).
pub struct RecvBatch {
    cap: usize,
    head: usize,
    slot: usize,
    buf: Vec<u8>,
    lens: [usize; BATCH],
    addrs: Vec<libc::sockaddr_storage>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    n: usize,
}

impl RecvBatch {
    /// Buffers of `cap` bytes each.
    pub fn new(cap: usize) -> Self {
        Self::with_room(cap, 0, 0)
    }

    /// Buffers of `cap` bytes each, every one with `head` free bytes before it and `tail`
    /// after it (see [`RecvBatch::slot_mut`]).
    pub fn with_room(cap: usize, head: usize, tail: usize) -> Self {
        // SAFETY: plain old data, all-zero is valid (null pointers are overwritten before use).
        let zero_ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        let slot = head + cap + tail;
        Self {
            cap,
            head,
            slot,
            buf: vec![0u8; slot * BATCH],
            lens: [0; BATCH],
            addrs: vec![zero_ss; BATCH],
            iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ],
            hdrs: vec![zero_hdr; BATCH],
            n: 0,
        }
    }

    /// Receives up to `max` datagrams. `Ok(0)` never happens for a blocking call; a
    /// non-blocking socket with nothing queued gives `WouldBlock`.
    pub fn recv(&mut self, fd: RawFd, max: usize, flags: libc::c_int) -> io::Result<usize> {
        let max = max.clamp(1, BATCH);
        let base = self.buf.as_mut_ptr();
        for i in 0..max {
            self.iov[i] = libc::iovec {
                // SAFETY: i * slot + head + cap is within the buffer (it holds BATCH * slot
                // bytes, slot = head + cap + tail).
                iov_base: unsafe { base.add(i * self.slot + self.head) } as *mut libc::c_void,
                iov_len: self.cap,
            };
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = &mut self.addrs[i] as *mut _ as *mut libc::c_void;
            h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iov[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: hdrs[..max] point into self.buf / self.addrs / self.iov, all alive and not
        // otherwise borrowed for the duration of the call; the kernel writes within the given
        // lengths only.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                max as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            self.n = 0;
            return Err(io::Error::last_os_error());
        }
        self.n = rc as usize;
        for i in 0..self.n {
            self.lens[i] = (self.hdrs[i].msg_len as usize).min(self.cap);
        }
        Ok(self.n)
    }

    /// Whether datagram `i` of the last call was longer than a slot (and so cut short: only
    /// its first `cap` bytes are in [`RecvBatch::packet`]).
    pub fn truncated(&self, i: usize) -> bool {
        self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0
    }

    /// Datagram `i` of the last call.
    pub fn packet(&self, i: usize) -> &[u8] {
        let at = i * self.slot + self.head;
        &self.buf[at..at + self.lens[i]]
    }

    /// Length of datagram `i` of the last call.
    pub fn len_of(&self, i: usize) -> usize {
        self.lens[i]
    }

    /// The whole slot of datagram `i`: `head` free bytes, the datagram, then free bytes to
    /// the end of the slot.
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.buf[i * self.slot..(i + 1) * self.slot]
    }

    /// The whole slot of datagram `i` (see [`RecvBatch::slot_mut`]).
    pub fn slot(&self, i: usize) -> &[u8] {
        &self.buf[i * self.slot..(i + 1) * self.slot]
    }

    /// Source address of datagram `i`, in kernel form.
    pub fn raw_addr(&self, i: usize) -> &libc::sockaddr_storage {
        &self.addrs[i]
    }

    /// Source address of datagram `i`.
    pub fn addr(&self, i: usize) -> Option<SocketAddr> {
        from_storage(&self.addrs[i])
    }
}

/// Up to [`BATCH`] outgoing datagrams, written in place and sent by one sendmmsg.
pub struct SendBatch {
    cap: usize,
    buf: Vec<u8>,
    lens: [usize; BATCH],
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: [libc::socklen_t; BATCH],
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    n: usize,
}

impl SendBatch {
    /// Slots of `cap` bytes each.
    pub fn new(cap: usize) -> Self {
        // SAFETY: plain old data, all-zero is valid (null pointers are overwritten before use).
        let zero_ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        Self {
            cap,
            buf: vec![0u8; cap * BATCH],
            lens: [0; BATCH],
            addrs: vec![zero_ss; BATCH],
            addr_lens: [0; BATCH],
            iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ],
            hdrs: vec![zero_hdr; BATCH],
            n: 0,
        }
    }

    /// Queued datagrams.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Forgets queued datagrams.
    pub fn clear(&mut self) {
        self.n = 0;
    }

    /// The full slot for the next datagram (write into it, then [`SendBatch::commit`]).
    pub fn next_slot(&mut self) -> &mut [u8] {
        let i = self.n;
        &mut self.buf[i * self.cap..(i + 1) * self.cap]
    }

    /// Queues the next slot's first `len` bytes, to `to` (kernel form) or, with `None`, to
    /// the connected peer.
    pub fn commit(&mut self, len: usize, to: Option<(&libc::sockaddr_storage, libc::socklen_t)>) {
        let i = self.n;
        self.lens[i] = len.min(self.cap);
        match to {
            Some((ss, l)) => {
                self.addrs[i] = *ss;
                self.addr_lens[i] = l;
            }
            None => self.addr_lens[i] = 0,
        }
        self.n += 1;
    }

    /// Copies `data` into the next slot and queues it.
    pub fn push(&mut self, data: &[u8], to: Option<(&libc::sockaddr_storage, libc::socklen_t)>) {
        let n = data.len().min(self.cap);
        self.next_slot()[..n].copy_from_slice(&data[..n]);
        self.commit(n, to);
    }

    /// Sends the queued datagrams from `skip` on; returns how many the kernel took (fewer
    /// than queued when the socket buffer filled: the caller may retry the rest later or
    /// drop them). `WouldBlock` when it took none.
    pub fn send(&mut self, fd: RawFd, skip: usize) -> io::Result<usize> {
        self.send_range(fd, skip, self.n)
    }

    /// Like [`SendBatch::send`] for queued datagrams `from..to` only.
    pub fn send_range(&mut self, fd: RawFd, skip: usize, to: usize) -> io::Result<usize> {
        let to = to.min(self.n);
        if skip >= to {
            return Ok(0);
        }
        let base = self.buf.as_mut_ptr();
        for i in skip..to {
            self.iov[i] = libc::iovec {
                // SAFETY: i * cap is within the buffer (it holds BATCH * cap bytes).
                iov_base: unsafe { base.add(i * self.cap) } as *mut libc::c_void,
                iov_len: self.lens[i],
            };
            let h = &mut self.hdrs[i];
            if self.addr_lens[i] == 0 {
                h.msg_hdr.msg_name = std::ptr::null_mut();
                h.msg_hdr.msg_namelen = 0;
            } else {
                h.msg_hdr.msg_name = &mut self.addrs[i] as *mut _ as *mut libc::c_void;
                h.msg_hdr.msg_namelen = self.addr_lens[i];
            }
            h.msg_hdr.msg_iov = &mut self.iov[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: hdrs[skip..n] point into self.buf / self.addrs / self.iov, alive and not
        // otherwise borrowed for the duration of the call; the kernel only reads them.
        let rc = unsafe {
            libc::sendmmsg(
                fd,
                self.hdrs.as_mut_ptr().add(skip),
                (to - skip) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }
}

/// Sends each of `datagrams` (at most [`BATCH`]; the rest is ignored) to `to`, with one
/// sendmmsg and no copy of the payloads. Returns how many the kernel took: fewer than given
/// when the socket buffer filled (the rest are dropped, as UDP would), `WouldBlock` when none.
///
/// One destination for the whole batch (what a relay socket's datagrams share: their
/// allocation's client), so one socket address serves every header, and only the headers in
/// use are written: a batch of one costs no 12 KiB of zeroing.
pub fn send_all_to<'a>(
    fd: RawFd,
    to: SocketAddr,
    datagrams: impl IntoIterator<Item = &'a [u8]>,
) -> io::Result<usize> {
    let (mut name, namelen) = to_storage(&to);
    // One pointer for every header, taken once (a fresh `&mut name` per header would
    // invalidate the pointers taken before it).
    let name_ptr = &mut name as *mut libc::sockaddr_storage as *mut libc::c_void;
    let mut iov = [const { MaybeUninit::<libc::iovec>::uninit() }; BATCH];
    let mut hdrs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; BATCH];
    let mut n = 0;
    for bytes in datagrams.into_iter().take(BATCH) {
        // The kernel only reads through this pointer (sendmmsg); the cast to *mut is what the
        // C type asks for.
        let v = iov[n].write(libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        });
        // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
        let mut h: libc::mmsghdr = unsafe { mem::zeroed() };
        h.msg_hdr.msg_name = name_ptr;
        h.msg_hdr.msg_namelen = namelen;
        h.msg_hdr.msg_iov = v;
        h.msg_hdr.msg_iovlen = 1;
        hdrs[n].write(h);
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: hdrs[..n] are initialised and point at `name`, iov[..n] and the caller's slices,
    // all alive for the call; the kernel reads only those n headers and what they point at.
    let rc = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr() as *mut libc::mmsghdr,
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// Largest UDP GSO super-datagram payload (IPv4 limit, with headroom).
pub const GSO_MAX_BYTES: usize = 65_000;
/// Most segments per GSO send (UDP_MAX_SEGMENTS is 64 on older kernels, 128 on newer).
pub const GSO_MAX_SEGMENTS: usize = 64;

impl SendBatch {
    /// Length of queued datagram `i`.
    pub fn len_of(&self, i: usize) -> usize {
        self.lens[i]
    }

    /// Whether queued datagrams `i` and `j` go to the same destination.
    pub fn same_dest(&self, i: usize, j: usize) -> bool {
        self.addr_lens[i] == self.addr_lens[j]
            && (self.addr_lens[i] == 0
                || from_storage(&self.addrs[i]) == from_storage(&self.addrs[j]))
    }

    /// Sends queued datagrams `from..to` as one UDP GSO send (UDP_SEGMENT): one trip through
    /// the stack, split into datagrams of `lens[from]` bytes. All but the last must have that
    /// length, and they go to the destination of datagram `from` (or the connected peer).
    /// Returns how many datagrams went out (all of them, or an error).
    pub fn send_gso(&mut self, fd: RawFd, from: usize, to: usize) -> io::Result<usize> {
        if from >= to || to > self.n {
            return Ok(0);
        }
        let seg = self.lens[from];
        let base = self.buf.as_mut_ptr();
        for i in from..to {
            self.iov[i] = libc::iovec {
                // SAFETY: i * cap is within the buffer (it holds BATCH * cap bytes).
                iov_base: unsafe { base.add(i * self.cap) } as *mut libc::c_void,
                iov_len: self.lens[i],
            };
        }
        // Room for one cmsg carrying a u16, 8-byte aligned.
        let mut control = [0u64; 4];
        // SAFETY: all-zero msghdr is valid; every pointer set below outlives the call.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        if self.addr_lens[from] != 0 {
            msg.msg_name = &mut self.addrs[from] as *mut _ as *mut libc::c_void;
            msg.msg_namelen = self.addr_lens[from];
        }
        msg.msg_iov = self.iov[from..to].as_mut_ptr();
        msg.msg_iovlen = (to - from) as _;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        // SAFETY: CMSG_SPACE is a pure size computation.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as _;
        // SAFETY: msg_control points at `control`, which is large enough for one cmsg with a
        // u16 payload (CMSG_SPACE(2) <= 32 bytes); CMSG_FIRSTHDR/CMSG_DATA stay inside it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg as u16);
        }
        // SAFETY: msg and everything it points to are valid for the call; the kernel reads
        // them only.
        let rc = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(to - from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn slices_out_and_a_batch_with_room_in() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let msgs: [&[u8]; 3] = [b"one", b"two!", b"three"];
        assert_eq!(send_all_to(tx.as_raw_fd(), to, msgs).unwrap(), 3);
        // Loopback delivers within the send call: all three are queued now.
        let mut b = RecvBatch::with_room(16, 4, 2);
        assert_eq!(
            b.recv(rx.as_raw_fd(), BATCH, libc::MSG_DONTWAIT).unwrap(),
            3
        );
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(b.packet(i), *m);
            assert_eq!(b.len_of(i), m.len());
            assert_eq!(b.addr(i), Some(tx.local_addr().unwrap()));
            assert!(!b.truncated(i));
        }
        let slot = b.slot_mut(2);
        assert_eq!(slot.len(), 4 + 16 + 2);
        assert_eq!(&slot[4..9], b"three");
        slot[..4].copy_from_slice(b"HDR:");
        assert_eq!(&b.slot(2)[..9], b"HDR:three");
        assert_eq!(
            b.packet(1),
            b"two!",
            "a slot's head room does not reach its neighbour"
        );
        let e = b
            .recv(rx.as_raw_fd(), BATCH, libc::MSG_DONTWAIT)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn longer_than_a_slot_is_flagged() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(&[7u8; 40], rx.local_addr().unwrap()).unwrap();
        let mut b = RecvBatch::with_room(16, 8, 0);
        assert_eq!(
            b.recv(rx.as_raw_fd(), BATCH, libc::MSG_DONTWAIT).unwrap(),
            1
        );
        assert!(b.truncated(0));
        assert_eq!(b.packet(0), &[7u8; 16]);
    }

    #[test]
    fn a_batch_to_one_destination() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("[::1]:0");
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = a.local_addr().unwrap();
        let msgs: [&[u8]; 2] = [b"to a", b"to a again"];
        assert_eq!(send_all_to(tx.as_raw_fd(), to, msgs).unwrap(), 2);
        let mut got = RecvBatch::new(64);
        assert_eq!(
            got.recv(a.as_raw_fd(), BATCH, libc::MSG_DONTWAIT).unwrap(),
            2
        );
        assert_eq!(got.packet(0), b"to a");
        assert_eq!(got.packet(1), b"to a again");
        // More than a batch: the first BATCH go, the rest are left to the caller.
        let many = vec![&b"m"[..]; BATCH + 5];
        assert_eq!(
            send_all_to(tx.as_raw_fd(), to, many.iter().copied()).unwrap(),
            BATCH
        );
        assert_eq!(
            got.recv(a.as_raw_fd(), BATCH, libc::MSG_DONTWAIT).unwrap(),
            BATCH
        );
        // A v6 destination from a v4 socket is refused by the kernel, as an error, not a panic.
        if let Ok(b) = b {
            let bad: [&[u8]; 1] = [b"x"];
            assert!(send_all_to(tx.as_raw_fd(), b.local_addr().unwrap(), bad).is_err());
        }
        assert_eq!(send_all_to(tx.as_raw_fd(), to, []).unwrap(), 0);
    }
}
