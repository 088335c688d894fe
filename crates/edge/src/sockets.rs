//! Socket set-up: listener sockets shared across shards with SO_REUSEPORT, relay sockets bound
//! from a port range.

use std::io;
use std::net::{IpAddr, SocketAddr};

use rand::Rng;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::PortRange;

/// A UDP listener socket that every shard binds to the same address (SO_REUSEPORT spreads
/// clients over shards by their address hash, so one client always lands on one shard).
pub fn udp_listener(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_recv_buffer_size(4 << 20).ok();
    s.set_send_buffer_size(4 << 20).ok();
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Fails with `AddrInUse` when another socket already holds `addr`. The listeners use
/// SO_REUSEPORT so that this edge's shards share a port; the kernel lets *any* process of the
/// same user join that group, so a second edge started on the same ports by mistake would bind
/// without an error and silently take a share of the packets (its clients then fail with 401s
/// against the wrong secrets). A plain bind, without SO_REUSEPORT, is refused while anyone
/// holds the port: call this for every listener address before binding the shards.
/// (TCP keeps SO_REUSEADDR so connections of a previous run in TIME_WAIT do not count.)
pub fn ensure_unclaimed(addr: SocketAddr, tcp: bool) -> io::Result<()> {
    let (ty, proto) = if tcp {
        (Type::STREAM, Protocol::TCP)
    } else {
        (Type::DGRAM, Protocol::UDP)
    };
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if tcp {
        s.set_reuse_address(true)?;
    }
    s.bind(&addr.into())
}

/// A TCP listener socket, SO_REUSEPORT like the UDP ones.
pub fn tcp_listener(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_tcp_nodelay(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog)?;
    Ok(s.into())
}

/// A UDP relay socket bound on `ip` at a free port of `range` (an even one if asked), with
/// that address. Ports are tried from a random start so two edges restarting together do not
/// collide in lockstep; no SO_REUSEPORT here, so a port in use elsewhere is simply skipped.
/// (A next-fit cursor per shard was tried: the shards' cursors catch up with each other's
/// runs of held ports and then probe them one by one, more refused binds than this.)
///
/// Allocations are bound at the rate clients ask for them, so this is lean: the socket is
/// made once, non-blocking from the start, and a refused bind (which leaves it unbound) is
/// retried on the next port with the same socket; the bound address is known, so nobody
/// needs to ask the kernel for it.
pub fn udp_relay(
    ip: IpAddr,
    range: PortRange,
    even: bool,
    dont_fragment: bool,
) -> io::Result<BoundUdp> {
    let s = Socket::new(
        Domain::for_address(SocketAddr::new(ip, 0)),
        Type::DGRAM.nonblocking(),
        Some(Protocol::UDP),
    )?;
    if ip.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_recv_buffer_size(1 << 20).ok();
    if dont_fragment {
        set_dont_fragment(&s, ip.is_ipv6());
    }
    let addr = try_range(range, even, |port| {
        let addr = SocketAddr::new(ip, port);
        s.bind(&addr.into()).map(|()| addr)
    })?;
    Ok((s.into(), addr))
}

/// A relay socket and the address it is bound to.
pub type BoundUdp = (std::net::UdpSocket, SocketAddr);

/// Binds an even relay port and the odd port after it (EVEN-PORT with R = 1). The second
/// socket is held unread until a reservation claims it or expires.
pub fn udp_relay_pair(
    ip: IpAddr,
    range: PortRange,
    dont_fragment: bool,
) -> io::Result<(BoundUdp, BoundUdp)> {
    let upper = PortRange {
        first: range.first,
        last: range.last.saturating_sub(1).max(range.first),
    };
    let only = |port| PortRange {
        first: port,
        last: port,
    };
    try_range(upper, true, |port| {
        let first = udp_relay(ip, only(port), true, dont_fragment)?;
        let second = udp_relay(ip, only(port + 1), false, dont_fragment)?;
        Ok((first, second))
    })
}

/// Binds a TCP relay listener (RFC 6062). SO_REUSEADDR and SO_REUSEPORT let outgoing Connect
/// sockets share the relayed transport address, as RFC 6062 §5.2 asks.
pub fn tcp_relay(ip: IpAddr, range: PortRange) -> io::Result<std::net::TcpListener> {
    try_range(range, false, |port| {
        let addr = SocketAddr::new(ip, port);
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        s.listen(64)?;
        Ok(s.into())
    })
}

/// An outgoing TCP socket bound to the relayed transport address.
pub fn tcp_from(relay: SocketAddr) -> io::Result<tokio::net::TcpSocket> {
    let s = if relay.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    s.set_reuseaddr(true)?;
    s.set_reuseport(true)?;
    s.set_nodelay(true)?;
    s.bind(relay)?;
    Ok(s)
}

fn try_range<T>(
    range: PortRange,
    even: bool,
    mut bind: impl FnMut(u16) -> io::Result<T>,
) -> io::Result<T> {
    let n = range.len() as u32;
    let start = rand::rng().random_range(0..n);
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "relay port range exhausted");
    for i in 0..n {
        let port = range.first + ((start + i) % n) as u16;
        if even && port % 2 == 1 {
            continue;
        }
        match bind(port) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

fn set_dont_fragment(s: &Socket, v6: bool) {
    use std::os::fd::AsRawFd;
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER)
    } else {
        (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER)
    };
    // IP_PMTUDISC_DO and IPV6_PMTUDISC_DO are both 2: set DF, refuse datagrams over the path MTU.
    let value: libc::c_int = 2;
    // SAFETY: the fd is open for the lifetime of `s`; `value` is a live c_int and the length
    // passed is its size, which is what this option expects.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not set DONT-FRAGMENT on relay socket");
    }
}
