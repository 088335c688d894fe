//! Security regression: no open relay. For every denied spelling of a peer address — IPv4 and
//! IPv6, loopback, metadata, link-local, private, multicast, and every IPv4-in-IPv6 form —
//! CreatePermission, ChannelBind and Connect are answered 403, a Send indication is dropped, and
//! nothing reaches a listener placed at that address. Runs with the worst operator setting,
//! `rtn_prefixes = 0.0.0.0/0, ::/0`, to show the deny set wins.
//!
//! The test needs those addresses to be local, so it re-runs itself inside a network namespace
//! it creates (root required, as in CI), puts every target address on that namespace's `lo`, and
//! binds catch-all UDP and TCP listeners on the target port. A positive control (an allowed
//! address) first proves the listeners would see a relayed packet and connection.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge::config::UserSpec;
use edge::{Edge, EdgeConfig, PortRange};
use integration_tests::turn_client::{Client, Link};
use turn_proto::codec::{attr, Class, Method};

const ENV: &str = "CLOUDPROXY_SECURITY_NETNS";
const TARGET_PORT: u16 = 7777;
const TEST: &str = "denied_peer_addresses_get_403_and_nothing_reaches_them";

/// (label, peer IP, an address to put on lo so a leak would be caught, if it is assignable).
const DENIED: &[(&str, &str, Option<&str>)] = &[
    ("this-network 0.0.0.0", "0.0.0.0", None),
    ("this-network 0.1.2.3", "0.1.2.3", None),
    ("loopback 127.0.0.1", "127.0.0.1", None),
    ("loopback 127.1.2.3", "127.1.2.3", None),
    (
        "metadata 169.254.169.254",
        "169.254.169.254",
        Some("169.254.169.254/32"),
    ),
    (
        "link-local 169.254.0.1",
        "169.254.0.1",
        Some("169.254.0.1/32"),
    ),
    ("private 10.0.0.1", "10.0.0.1", Some("10.0.0.1/32")),
    ("private 172.16.0.1", "172.16.0.1", Some("172.16.0.1/32")),
    ("private 192.168.1.1", "192.168.1.1", Some("192.168.1.1/32")),
    ("CGNAT 100.64.0.1", "100.64.0.1", Some("100.64.0.1/32")),
    ("benchmark 198.18.0.1", "198.18.0.1", Some("198.18.0.1/32")),
    ("multicast 224.0.0.1", "224.0.0.1", None),
    ("reserved 240.0.0.1", "240.0.0.1", Some("240.0.0.1/32")),
    ("broadcast 255.255.255.255", "255.255.255.255", None),
    ("unspecified ::", "::", None),
    ("loopback ::1", "::1", None),
    ("mapped ::ffff:127.0.0.1", "::ffff:127.0.0.1", None),
    (
        "mapped ::ffff:169.254.169.254",
        "::ffff:169.254.169.254",
        None,
    ),
    ("mapped ::ffff:10.0.0.1", "::ffff:10.0.0.1", None),
    ("compatible ::127.0.0.1", "::127.0.0.1", None),
    ("compatible ::169.254.169.254", "::169.254.169.254", None),
    ("SIIT ::ffff:0:7f00:1", "::ffff:0:7f00:1", None),
    (
        "NAT64 64:ff9b::7f00:1",
        "64:ff9b::7f00:1",
        Some("64:ff9b::7f00:1/128"),
    ),
    (
        "NAT64 64:ff9b::a9fe:a9fe",
        "64:ff9b::a9fe:a9fe",
        Some("64:ff9b::a9fe:a9fe/128"),
    ),
    (
        "NAT64 local 64:ff9b:1::7f00:1",
        "64:ff9b:1::7f00:1",
        Some("64:ff9b:1::7f00:1/128"),
    ),
    (
        "6to4 2002:7f00:1::1",
        "2002:7f00:1::1",
        Some("2002:7f00:1::1/128"),
    ),
    (
        "6to4 2002:a9fe:a9fe::1",
        "2002:a9fe:a9fe::1",
        Some("2002:a9fe:a9fe::1/128"),
    ),
    (
        "Teredo server 127.0.0.1",
        "2001:0:7f00:1::1",
        Some("2001:0:7f00:1::1/128"),
    ),
    (
        "Teredo client 127.0.0.1",
        "2001:0:cb00:7101:0:edcb:80ff:fffe",
        Some("2001:0:cb00:7101:0:edcb:80ff:fffe/128"),
    ),
    ("link-local fe80::1", "fe80::1", Some("fe80::1/64")),
    ("multicast ff02::1", "ff02::1", None),
    ("ULA fc00::1", "fc00::1", Some("fc00::1/128")),
    ("ULA fd00::1", "fd00::1", Some("fd00::1/128")),
    ("site-local fec0::1", "fec0::1", Some("fec0::1/128")),
];

/// Allowed targets (positive controls): relayed data must reach the listener.
const ALLOWED: &[(&str, &str, &str)] = &[
    ("control 203.0.113.7", "203.0.113.7", "203.0.113.7/32"),
    ("control 2001:db8::7", "2001:db8::7", "2001:db8::7/128"),
];

#[test]
fn denied_peer_addresses_get_403_and_nothing_reaches_them() {
    if std::env::var(ENV).is_err() {
        run_in_new_namespace();
        return;
    }
    inside_namespace();
}

fn sh(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run_in_new_namespace() {
    let ns = format!("cpsec{}", std::process::id());
    assert!(
        sh("ip", &["netns", "add", &ns]),
        "cannot create network namespace {ns}: this test needs root and iproute2 (bash .ci/run provides both)"
    );
    let _guard = Netns(ns.clone());
    let exe = std::env::current_exe().expect("test binary path");
    let status = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(exe)
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(ENV, &ns)
        .status()
        .expect("re-run inside the namespace");
    assert!(
        status.success(),
        "the in-namespace run failed (see its output above)"
    );
}

type Seen = Arc<Mutex<Vec<(SocketAddr, SocketAddr, String)>>>;

/// Catch-all listeners on TARGET_PORT for every local address, v4 and v6, UDP and TCP.
fn listeners(seen: &Seen) {
    for bind in ["0.0.0.0", "::"] {
        let addr = SocketAddr::new(bind.parse().unwrap(), TARGET_PORT);
        let udp = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            None,
        )
        .unwrap();
        if addr.is_ipv6() {
            udp.set_only_v6(true).unwrap();
        }
        udp.bind(&addr.into()).expect("bind catch-all UDP");
        let udp: UdpSocket = udp.into();
        let s = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                s.lock().unwrap().push((from, addr, format!("udp:{text}")));
            }
        });
        let tcp = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        if addr.is_ipv6() {
            tcp.set_only_v6(true).unwrap();
        }
        tcp.set_reuse_address(true).unwrap();
        tcp.bind(&addr.into()).expect("bind catch-all TCP");
        tcp.listen(16).unwrap();
        let tcp: TcpListener = tcp.into();
        let s = seen.clone();
        std::thread::spawn(move || {
            while let Ok((mut c, from)) = tcp.accept() {
                let local = c.local_addr().unwrap();
                c.set_read_timeout(Some(Duration::from_millis(200))).ok();
                let mut b = [0u8; 64];
                let n = c.read(&mut b).unwrap_or(0);
                s.lock().unwrap().push((
                    from,
                    local,
                    format!("tcp:{}", String::from_utf8_lossy(&b[..n])),
                ));
            }
        });
    }
}

fn outcome(code: Result<(Class, Option<u16>), String>) -> String {
    match code {
        Ok((Class::Success, _)) => "200".into(),
        Ok((_, Some(c))) => c.to_string(),
        Ok((_, None)) => "error?".into(),
        Err(e) => format!("io:{e}"),
    }
}

fn inside_namespace() {
    assert!(sh("ip", &["link", "set", "lo", "up"]));
    let mut unassignable = Vec::new();
    for (label, _, cidr) in DENIED.iter().filter_map(|(l, ip, c)| c.map(|c| (l, ip, c))) {
        if !sh("ip", &["addr", "add", cidr, "dev", "lo"]) {
            unassignable.push(*label);
        }
    }
    for (_, _, cidr) in ALLOWED {
        assert!(
            sh("ip", &["addr", "add", cidr, "dev", "lo"]),
            "control address {cidr}"
        );
    }
    std::thread::sleep(Duration::from_millis(300)); // IPv6 DAD off on lo, but give it a beat
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    listeners(&seen);

    let cfg = EdgeConfig {
        signal_port: 0, // no signalling relay here (the default 4000 would be shared)
        listen: "127.0.0.1".parse().unwrap(),
        udp_ports: PortRange {
            first: 3478,
            last: 3478,
        },
        tcp_ports: PortRange {
            first: 3433,
            last: 3433,
        },
        relay_ips: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
        relay_ports: PortRange {
            first: 50000,
            last: 50100,
        },
        users: vec![UserSpec {
            name: "mallory".into(),
            password: "pw".into(),
        }],
        rtn_prefixes: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
        max_permissions_per_allocation: 100,
        max_channels_per_allocation: 100,
        max_allocations_per_user: 100,
        ..EdgeConfig::default()
    };
    let _edge = Edge::start(cfg).expect("edge starts in the namespace");
    let server: SocketAddr = "127.0.0.1:3478".parse().unwrap();
    let tcp_server: SocketAddr = "127.0.0.1:3433".parse().unwrap();

    // UDP allocation with an IPv4 and an IPv6 relay address, so every v6 spelling is a real try.
    let mut udp = Client::new(Link::udp(server).unwrap(), "mallory", "pw");
    let r = udp
        .allocate(17, &[(attr::ADDITIONAL_ADDRESS_FAMILY, &[2, 0, 0, 0])])
        .unwrap();
    assert_eq!(r.class, Class::Success, "dual-stack allocation: {r:?}");
    // TCP allocation (RFC 6062) for Connect.
    let mut tcp = Client::new(Link::tcp(tcp_server).unwrap(), "mallory", "pw");
    let r = tcp.allocate(6, &[]).unwrap();
    assert_eq!(r.class, Class::Success, "TCP allocation: {r:?}");
    let mut tcp6 = Client::new(Link::tcp(tcp_server).unwrap(), "mallory", "pw");
    let r = tcp6
        .allocate(6, &[(attr::REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0])])
        .unwrap();
    assert_eq!(r.class, Class::Success, "TCP IPv6 allocation: {r:?}");

    let try_all = |udp: &mut Client,
                   tcp: &mut Client,
                   tcp6: &mut Client,
                   ip: IpAddr,
                   channel: u16,
                   tag: &str| {
        let peer = SocketAddr::new(ip, TARGET_PORT);
        let perm = udp
            .request(Method::CreatePermission, &[], &[peer])
            .map(|r| (r.class, r.code))
            .map_err(|e| e.to_string());
        let ch = (channel as u32) << 16;
        let bind = udp
            .request(
                Method::ChannelBind,
                &[(attr::CHANNEL_NUMBER, &ch.to_be_bytes())],
                &[peer],
            )
            .map(|r| (r.class, r.code))
            .map_err(|e| e.to_string());
        udp.send_indication(peer, format!("send-{tag}").as_bytes())
            .unwrap();
        let c = if ip.is_ipv4() || matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()) {
            tcp
        } else {
            tcp6
        };
        let connect = c
            .request(Method::Connect, &[], &[peer])
            .map(|r| (r.class, r.code))
            .map_err(|e| e.to_string());
        (outcome(perm), outcome(bind), outcome(connect))
    };

    println!(
        "\n{:<36} {:>8} {:>8} {:>8} {:>10}",
        "peer address", "CreatePm", "ChanBind", "Connect", "received"
    );
    // Positive controls first: prove a relayed packet and connection would be seen.
    for (i, (label, ip, _)) in ALLOWED.iter().enumerate() {
        let (p, b, c) = try_all(
            &mut udp,
            &mut tcp,
            &mut tcp6,
            ip.parse().unwrap(),
            0x4000 + i as u16,
            label,
        );
        std::thread::sleep(Duration::from_millis(300));
        let got: Vec<_> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, to, _)| {
                to.ip() == ip.parse::<IpAddr>().unwrap() || to.ip().is_unspecified()
            })
            .map(|x| x.2.clone())
            .collect();
        println!("{label:<36} {p:>8} {b:>8} {c:>8} {:>10}", got.len());
        assert_eq!(
            (p.as_str(), b.as_str(), c.as_str()),
            ("200", "200", "200"),
            "{label}: allowed peer must be relayed"
        );
        assert!(
            got.iter().any(|g| g.starts_with("udp:send-")),
            "{label}: the control datagram must arrive, got {got:?}"
        );
        assert!(
            got.iter().any(|g| g.starts_with("tcp:")),
            "{label}: the control connection must arrive, got {got:?}"
        );
    }
    seen.lock().unwrap().clear();

    let mut failures = Vec::new();
    for (i, (label, ip, _)) in DENIED.iter().enumerate() {
        let before = seen.lock().unwrap().len();
        let (p, b, c) = try_all(
            &mut udp,
            &mut tcp,
            &mut tcp6,
            ip.parse().unwrap(),
            0x4100 + i as u16,
            label,
        );
        std::thread::sleep(Duration::from_millis(100));
        let after = seen.lock().unwrap().len();
        println!("{label:<36} {p:>8} {b:>8} {c:>8} {:>10}", after - before);
        if (p.as_str(), b.as_str(), c.as_str()) != ("403", "403", "403") || after != before {
            failures.push(format!(
                "{label}: CreatePermission {p}, ChannelBind {b}, Connect {c}, {} arrivals",
                after - before
            ));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let leaked = seen.lock().unwrap().clone();
    if !unassignable.is_empty() {
        println!("(addresses the kernel would not put on lo, so no listener sits exactly there: {unassignable:?})");
    }
    assert!(
        leaked.is_empty(),
        "traffic reached a denied address: {leaked:?}"
    );
    assert!(
        failures.is_empty(),
        "denied peers not refused with 403:\n{}",
        failures.join("\n")
    );
}
