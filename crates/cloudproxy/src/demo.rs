//! `cloudproxy demo`: everything on 127.0.0.1 with nothing to configure.
//!
//! For now (the control plane and SDKs come later) it runs an edge on 127.0.0.1 with a fresh
//! REST secret and a dev user, plus a UDP echo peer, and prints credentials and a ready
//! `turnutils_uclient` command line.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use edge::config::{SecretSpec, UserSpec};
use edge::{EdgeConfig, PortRange};

use crate::edge_cmd::serve;
use crate::init_logs;

/// Demo options.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// UDP TURN ports.
    #[arg(long, default_value = "3478-3500")]
    udp_ports: PortRange,
    /// TCP TURN ports.
    #[arg(long, default_value = "3433-3460")]
    tcp_ports: PortRange,
    /// Port of the built-in UDP echo peer.
    #[arg(long, default_value_t = 5766)]
    echo_port: u16,
}

pub fn run(args: DemoArgs) -> ExitCode {
    init_logs(false);
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut secret = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut secret[..]);
    let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let password: String = secret.chars().rev().take(12).collect();
    // Two echo ports: turnutils_uclient sends RTP to the port and RTCP to the port + 1.
    for port in [args.echo_port, args.echo_port.wrapping_add(1)] {
        let echo = match UdpSocket::bind(SocketAddr::new(lo, port)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cloudproxy demo: cannot bind echo peer on 127.0.0.1:{port}: {e}");
                return ExitCode::from(crate::EX_UNAVAILABLE);
            }
        };
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok((n, from)) = echo.recv_from(&mut buf) {
                let _ = echo.send_to(&buf[..n], from);
            }
        });
    }
    let cfg = EdgeConfig {
        listen: lo,
        udp_ports: args.udp_ports,
        tcp_ports: args.tcp_ports,
        auth_secrets: vec![SecretSpec {
            key_id: "demo".into(),
            secret: secret.clone(),
        }],
        users: vec![UserSpec {
            name: "demo".into(),
            password: password.clone(),
        }],
        dangerous_allow_loopback_peers: true,
        // A demo user is shared by every client someone tries; do not make them wait 10
        // minutes for allocations of a killed client to expire.
        max_allocations_per_user: 1_000,
        ..EdgeConfig::default()
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let set = credentials::SecretSet::new(vec![credentials::Secret::new(
        "demo",
        secret.as_bytes().to_vec(),
    )])
    .expect("one secret");
    let rest = credentials::mint(&set, "demo-session", now, 600).expect("mint");
    let udp = args.udp_ports.first;
    let tcp = args.tcp_ports.first;
    println!(
        "\ncloudproxy demo: TURN edge on 127.0.0.1 (UDP {}, TCP {}), echo peer on 127.0.0.1:{} and +1\n\
         \n  static user      demo / {password}\n  REST credential  {} / {}   (valid 10 minutes)\n  REST secret      demo:{secret}\n\
         \nTry it with coturn's client (apt-get install coturn):\n\
         \n  turnutils_uclient -e 127.0.0.1 -r {} -u demo -w {password} -p {udp} 127.0.0.1\n  \
         turnutils_uclient -t -e 127.0.0.1 -r {} -u demo -w {password} -p {tcp} 127.0.0.1\n  \
         turnutils_uclient -e 127.0.0.1 -r {} -W {secret} -u demo:alice -p {udp} 127.0.0.1\n\
         \nLoopback peers are allowed in this demo only (--dangerous-allow-loopback-peers). Ctrl-C stops.\n",
        args.udp_ports, args.tcp_ports, args.echo_port, rest.username, rest.password, args.echo_port, args.echo_port, args.echo_port,
    );
    serve(cfg)
}
