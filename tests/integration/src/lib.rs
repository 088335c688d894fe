//! Shared helpers for the cross-crate tests.
//!
//! Listener ports come from [`free_ports`] (the kernel's ephemeral range, 32768-60999 on
//! Linux); relay port ranges in tests sit above it (61000-65535), each test file its own
//! slice, so an edge's relay range never overlaps its own listeners.

use std::net::{TcpListener, UdpSocket};

/// `n` distinct ports that are free for both UDP and TCP on 127.0.0.1 right now.
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    let mut held = Vec::new();
    while out.len() < n {
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = u.local_addr().expect("addr").port();
        if let Ok(t) = TcpListener::bind(("127.0.0.1", port)) {
            out.push(port);
            held.push((u, t));
        }
    }
    out
}

/// A port `p` such that `p` and `p + 1` are free for UDP on 127.0.0.1.
pub fn free_port_pair() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let p = u.local_addr().expect("addr").port();
        if p < 65000 && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

/// A port that is free for both UDP and TCP on 127.0.0.1 right now (nothing holds it when this
/// returns, so a racing binder can still take it: callers that bind it should retry on
/// `AddrInUse`).
pub fn free_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind UDP 127.0.0.1:0");
        let port = u.local_addr().expect("local addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub mod browser;
pub mod control;
pub mod tls;
pub mod turn_client;
