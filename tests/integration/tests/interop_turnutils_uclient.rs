//! Interop, server side: coturn's `turnutils_uclient` (a client we did not write) against our
//! edge on 127.0.0.1, over UDP and TCP, with static and TURN-REST credentials, with ChannelData
//! and with Send indications. Any lost message fails the test.
//!
//! `turnutils_uclient` comes from Debian's `coturn` package; `bash .ci/run` installs it.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use edge::config::{SecretSpec, UserSpec};
use edge::{Edge, EdgeConfig, PortRange};
use integration_tests::{free_port_pair, free_ports};

const SECRET: &str = "interop-secret";

struct Setup {
    edge: Edge,
    udp: u16,
    tcp: u16,
    echo: u16,
}

/// Starts an echo peer on two consecutive ports (uclient sends RTCP to port + 1) and the edge.
fn setup() -> Setup {
    let echo = free_port_pair();
    for port in [echo, echo + 1] {
        let s = UdpSocket::bind(("127.0.0.1", port)).expect("bind echo peer");
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        });
    }
    let ports = free_ports(2);
    let (udp, tcp) = (ports[0], ports[1]);
    let cfg = EdgeConfig {
        signal_port: 0, // no signalling relay here (the default 4000 would be shared)
        listen: "127.0.0.1".parse().unwrap(),
        udp_ports: PortRange {
            first: udp,
            last: udp,
        },
        tcp_ports: PortRange {
            first: tcp,
            last: tcp,
        },
        relay_ports: PortRange {
            first: 62500,
            last: 63499,
        },
        users: vec![UserSpec {
            name: "ivan".into(),
            password: "ivan-pass".into(),
        }],
        auth_secrets: vec![SecretSpec {
            key_id: "k1".into(),
            secret: SECRET.into(),
        }],
        dangerous_allow_loopback_peers: true,
        max_allocations_per_user: 100,
        ..EdgeConfig::default()
    };
    let edge = Edge::start(cfg).expect("edge starts");
    Setup {
        edge,
        udp,
        tcp,
        echo,
    }
}

struct Outcome {
    sent: u64,
    received: u64,
    lost: u64,
}

fn run_uclient(args: &[&str]) -> Outcome {
    let out = Command::new("turnutils_uclient")
        .args(args)
        .output()
        .expect("turnutils_uclient not found: install Debian's coturn package (bash .ci/run does)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let grab = |key: &str| -> Option<u64> {
        text.lines().rev().find_map(|l| {
            let i = l.find(key)? + key.len();
            l[i..]
                .trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
    };
    let outcome = Outcome {
        sent: grab("tot_send_msgs=").unwrap_or(0),
        received: grab("tot_recv_msgs=").unwrap_or(0),
        lost: grab("Total lost packets").unwrap_or(u64::MAX),
    };
    if outcome.lost != 0 || outcome.received == 0 {
        panic!("turnutils_uclient {args:?} failed:\n{text}");
    }
    outcome
}

fn case(name: &str, args: Vec<String>) {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run_uclient(&argv);
    println!(
        "{name:<40} sent {:>5}  received {:>5}  lost {}",
        o.sent, o.received, o.lost
    );
    assert_eq!(o.sent, o.received, "{name}: every message must come back");
}

fn common(s: &Setup, extra: &[&str], creds: &[String], port: u16) -> Vec<String> {
    let mut v: Vec<String> = extra.iter().map(|x| x.to_string()).collect();
    v.extend(creds.iter().cloned());
    v.extend(
        [
            "-e",
            "127.0.0.1",
            "-r",
            &s.echo.to_string(),
            "-n",
            "40",
            "-m",
            "4",
            "-l",
            "200",
            "-p",
            &port.to_string(),
            "127.0.0.1",
        ]
        .iter()
        .map(|x| x.to_string()),
    );
    v
}

#[test]
fn turnutils_uclient_relays_without_loss() {
    let s = setup();
    let static_user = vec![
        "-u".to_string(),
        "ivan".into(),
        "-w".into(),
        "ivan-pass".into(),
    ];
    let rest = vec![
        "-W".to_string(),
        SECRET.into(),
        "-u".into(),
        "k1:interop-session".into(),
    ];
    for (creds_name, creds) in [("static", &static_user), ("REST", &rest)] {
        for (transport, flag, port) in [("UDP", None, s.udp), ("TCP", Some("-t"), s.tcp)] {
            for (mode, mflag) in [("ChannelData", None), ("Send indications", Some("-s"))] {
                let mut extra: Vec<&str> = Vec::new();
                extra.extend(flag);
                extra.extend(mflag);
                let name = format!("{transport} {creds_name} {mode}");
                case(&name, common(&s, &extra, creds, port));
            }
        }
    }
    // Without RTCP pairs too (-c: no EVEN-PORT reservations), and with 1200-byte messages.
    let mut v = common(&s, &["-c"], &static_user, s.udp);
    let i = v.iter().position(|a| a == "200").unwrap();
    v[i] = "1200".into();
    case("UDP static ChannelData -c 1200 B", v);
    let stats = s.edge.stats();
    println!("edge stats: {stats:?}");
    std::thread::sleep(Duration::from_millis(600)); // stats are snapshotted twice a second
    let stats = s.edge.stats();
    assert!(
        stats.to_peer_packets > 0 && stats.to_client_packets > 0,
        "{stats:?}"
    );
    let _ = SocketAddr::from(([127, 0, 0, 1], s.echo));
}

#[test]
fn turnutils_uclient_wrong_password_is_refused() {
    let s = setup();
    let out = Command::new("timeout")
        .args([
            "10",
            "turnutils_uclient",
            "-c",
            "-n",
            "2",
            "-m",
            "1",
            "-e",
            "127.0.0.1",
            "-r",
            &s.echo.to_string(),
        ])
        .args([
            "-u",
            "ivan",
            "-w",
            "wrong",
            "-p",
            &s.udp.to_string(),
            "127.0.0.1",
        ])
        .output()
        .expect("turnutils_uclient (coturn) must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("Total lost packets 0"),
        "a wrong password must not relay:\n{text}"
    );
    assert!(
        text.contains("401") || !out.status.success(),
        "expected a 401 refusal:\n{text}"
    );
}
