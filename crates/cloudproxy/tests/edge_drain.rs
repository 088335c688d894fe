//! `cloudproxy edge --drain-secs N`: SIGTERM starts a graceful stop. A new Allocate is refused
//! 508 ("edge draining"), an allocation made before keeps relaying, and the edge exits 0 as
//! soon as the last allocation is gone; a second signal, or the end of the drain time, stops
//! it with allocations still held. Without `--drain-secs` SIGTERM stops at once.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::free_ports;
use integration_tests::turn_client::{Client, Link};
use turn_proto::codec::{attr, Class, MessageBuilder, MessageType, Method};

const BIN: &str = env!("CARGO_BIN_EXE_cloudproxy");

struct EdgeProc {
    child: Child,
    turn: SocketAddr,
}

impl Drop for EdgeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(drain: Option<u64>, relay_first: u16) -> EdgeProc {
    let p = free_ports(2);
    let mut cmd = Command::new(BIN);
    cmd.args(["edge", "--listen", "127.0.0.1", "--user", "drain:pass"])
        .args(["--udp-ports", &format!("{0}-{0}", p[0])])
        .args(["--tcp-ports", &format!("{0}-{0}", p[1])])
        .args(["--signal-port", "0", "--tls-port", "0"])
        .args([
            "--relay-ports",
            &format!("{relay_first}-{}", relay_first + 19),
        ])
        .arg("--dangerous-allow-loopback-peers")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(d) = drain {
        cmd.args(["--drain-secs", &d.to_string()]);
    }
    let child = cmd.spawn().expect("start cloudproxy edge");
    let turn = SocketAddr::from(([127, 0, 0, 1], p[0]));
    let e = EdgeProc { child, turn };
    // Ready when a Binding is answered (asked every 100 ms).
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut binding = Vec::new();
    MessageBuilder::new(
        &mut binding,
        MessageType::new(Method::Binding, Class::Request),
        [7; 12],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 512];
    loop {
        probe.send_to(&binding, turn).unwrap();
        if probe.recv_from(&mut buf).is_ok() {
            return e;
        }
        assert!(Instant::now() < deadline, "edge did not start");
    }
}

fn signal(e: &EdgeProc, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &e.child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig}");
}

/// Waits up to `limit` for the edge to exit; its exit code and how long it took.
fn exit_within(e: &mut EdgeProc, limit: Duration) -> Option<(Option<i32>, Duration)> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Some(st) = e.child.try_wait().unwrap() {
            return Some((st.code(), t0.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// An allocation with a permission for `peer`; returns the client and its relay address.
fn allocation(turn: SocketAddr, peer: SocketAddr) -> (Client, SocketAddr) {
    let mut c = Client::new(Link::udp(turn).unwrap(), "drain", "pass");
    let r = c.allocate(17, &[]).unwrap();
    assert_eq!(r.class, Class::Success, "allocate: {:?}", r.code);
    let relay = r
        .message()
        .xor_address(attr::XOR_RELAYED_ADDRESS)
        .unwrap()
        .unwrap();
    let ok = c.request(Method::CreatePermission, &[], &[peer]).unwrap();
    assert_eq!(ok.class, Class::Success);
    (c, relay)
}

fn relays(c: &mut Client, peer: &UdpSocket, relay: SocketAddr, tag: u8) {
    c.send_indication(peer.local_addr().unwrap(), &[tag; 40])
        .unwrap();
    let mut buf = [0u8; 256];
    let (n, from) = peer
        .recv_from(&mut buf)
        .expect("the peer gets the datagram");
    assert_eq!((n, from, buf[0]), (40, relay, tag));
}

#[test]
fn sigterm_drains_until_the_last_allocation_ends() {
    let mut e = start(Some(20), 61300);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let (mut a, relay) = allocation(e.turn, peer.local_addr().unwrap());
    relays(&mut a, &peer, relay, 1);

    signal(&e, "-TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        exit_within(&mut e, Duration::ZERO).is_none(),
        "the edge waits for the allocation"
    );
    // New allocations are refused with 508; the existing one still relays and refreshes.
    let mut b = Client::new(Link::udp(e.turn).unwrap(), "drain", "pass");
    let r = b.allocate(17, &[]).unwrap();
    assert_eq!(r.code, Some(508), "a new allocation while draining");
    let why = r.message().error_code().unwrap().unwrap();
    assert!(why.reason.contains("draining"), "{}", why.reason);
    relays(&mut a, &peer, relay, 2);
    let lifetime = 600u32.to_be_bytes();
    let r = a
        .request(Method::Refresh, &[(attr::LIFETIME, &lifetime)], &[])
        .unwrap();
    assert_eq!(r.class, Class::Success);

    // The last allocation ends: the edge stops well before the 20 s drain time.
    let zero = 0u32.to_be_bytes();
    let r = a
        .request(Method::Refresh, &[(attr::LIFETIME, &zero)], &[])
        .unwrap();
    assert_eq!(r.class, Class::Success);
    let (code, took) = exit_within(&mut e, Duration::from_secs(5)).expect("edge exits");
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn a_second_signal_or_the_drain_time_stops_with_allocations_held() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();

    // Second signal.
    let mut e = start(Some(60), 61330);
    let _held = allocation(e.turn, peer.local_addr().unwrap());
    signal(&e, "-TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(exit_within(&mut e, Duration::ZERO).is_none());
    signal(&e, "-INT");
    let (code, _) = exit_within(&mut e, Duration::from_secs(5)).expect("second signal stops it");
    assert_eq!(code, Some(0));

    // Drain time over.
    let mut e = start(Some(1), 61360);
    let _held = allocation(e.turn, peer.local_addr().unwrap());
    let t0 = Instant::now();
    signal(&e, "-TERM");
    let (code, _) = exit_within(&mut e, Duration::from_secs(6)).expect("drain time ends it");
    assert_eq!(code, Some(0));
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );

    // No --drain-secs: SIGTERM stops at once, allocation or not.
    let mut e = start(None, 61390);
    let _held = allocation(e.turn, peer.local_addr().unwrap());
    signal(&e, "-TERM");
    let (code, _) = exit_within(&mut e, Duration::from_secs(3)).expect("stops at once");
    assert_eq!(code, Some(0));
}
