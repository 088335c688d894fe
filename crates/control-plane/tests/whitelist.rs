//! Whitelist computation and rendering, checked against the real tools: `nft -c` on every
//! nftables rendering, the iptables script applied in a throwaway network namespace, and an
//! end-to-end run where a client namespace behind the rendered nftables ruleset reaches the
//! whitelisted edge ports and nothing else.
//!
//! The namespace tests need root, iproute2, nftables (`apt-get install -y nftables`) and
//! python3; the iptables application additionally needs `iptables` and is skipped (with a
//! message) without it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use control_api::{
    App, AppStatus, EdgeHeartbeat, EdgeLoad, Environment, Ports, TransportMode, WhitelistEntry,
    WhitelistFormat,
};
use control_plane::whitelist::{
    entries, render, PURPOSE_CONTROL, PURPOSE_SIGNAL, PURPOSE_TLS, PURPOSE_TURN_TCP,
    PURPOSE_TURN_UDP,
};

// ---------------------------------------------------------------------------------------------
// Fixtures

fn app(modes: &[TransportMode], pool: &str) -> App {
    App {
        app_id: "app1".into(),
        name: "Test".into(),
        certificate: "cert".into(),
        environment: Environment::Test,
        modes: modes.to_vec(),
        areas: vec![],
        isps: vec![],
        max_concurrency: 50,
        pool: pool.into(),
        status: AppStatus::Enabled,
        created_at: 0,
    }
}

fn ports(first: u16, last: u16) -> Ports {
    Ports { first, last }
}

fn edge(id: &str, pool: &str, address: &str) -> EdgeHeartbeat {
    EdgeHeartbeat {
        id: id.into(),
        pool: pool.into(),
        region: "eu".into(),
        isp: "any".into(),
        address: address.into(),
        udp_ports: ports(3478, 3500),
        tcp_ports: ports(3433, 3460),
        tls_port: Some(443),
        signal_port: Some(4000),
        relay_ips: vec!["192.0.2.1".into()],
        load: EdgeLoad::default(),
        draining: false,
        version: "0.1.0".into(),
        sessions: vec![],
    }
}

fn entry(protocol: &str, address: &str, p: Ports, purpose: &str) -> WhitelistEntry {
    WhitelistEntry {
        protocol: protocol.into(),
        address: address.into(),
        ports: p,
        purpose: purpose.into(),
    }
}

fn control() -> Vec<(String, u16)> {
    vec![("198.51.100.10".into(), 443)]
}

/// Entries with every shape a renderer must handle: v4, v6 (also bracketed), a host name,
/// single ports and ranges, and hostile text in the purpose.
fn mixed_entries() -> Vec<WhitelistEntry> {
    vec![
        entry("tcp", "198.51.100.10", ports(443, 443), PURPOSE_CONTROL),
        entry("tcp", "proxy.example.com", ports(443, 443), PURPOSE_CONTROL),
        entry("udp", "203.0.113.7", ports(3478, 3500), PURPOSE_TURN_UDP),
        entry("tcp", "203.0.113.7", ports(3433, 3460), PURPOSE_TURN_TCP),
        entry("tcp", "203.0.113.7", ports(443, 443), PURPOSE_TLS),
        entry("tcp", "203.0.113.7", ports(4000, 4000), PURPOSE_SIGNAL),
        entry("udp", "2001:db8::7", ports(3478, 3500), PURPOSE_TURN_UDP),
        entry("tcp", "[2001:db8::8]", ports(443, 443), PURPOSE_TLS),
        entry(
            "tcp",
            "203.0.113.9",
            ports(8443, 8443),
            "weird \"purpose\", with $(rm -rf /) `x` \\ and\nnewline",
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// entries()

#[test]
fn entries_per_mode_combination() {
    use TransportMode::{Tcp, Tls, Udp};
    let edges = [edge("e1", "p", "203.0.113.7")];
    let combos: [&[TransportMode]; 8] = [
        &[],
        &[Udp],
        &[Tcp],
        &[Tls],
        &[Udp, Tcp],
        &[Udp, Tls],
        &[Tcp, Tls],
        &[Udp, Tcp, Tls],
    ];
    for modes in combos {
        let got = entries(&app(modes, "p"), &edges, &control());
        let mut want = vec![entry(
            "tcp",
            "198.51.100.10",
            ports(443, 443),
            PURPOSE_CONTROL,
        )];
        let a = "203.0.113.7";
        if modes.contains(&Udp) {
            want.push(entry("udp", a, ports(3478, 3500), PURPOSE_TURN_UDP));
        }
        if modes.contains(&Tcp) {
            want.push(entry("tcp", a, ports(3433, 3460), PURPOSE_TURN_TCP));
        }
        // The TLS port in every mode: browsers signal over WSS even in modes 3 and 4.
        want.push(entry("tcp", a, ports(443, 443), PURPOSE_TLS));
        if modes.contains(&Udp) || modes.contains(&Tcp) {
            want.push(entry("tcp", a, ports(4000, 4000), PURPOSE_SIGNAL));
        }
        assert_eq!(got, want, "modes {modes:?}");
    }
}

#[test]
fn entries_pool_order_optional_ports_and_dedupe() {
    use TransportMode::{Tcp, Tls, Udp};
    let mut no_tls = edge("e-no-tls", "p", "10.0.0.9");
    no_tls.tls_port = None;
    no_tls.signal_port = None;
    let edges = vec![
        edge("e-host", "p", "edge.example.net"),
        edge("e-v6", "p", "2001:db8::1"),
        edge("e-10", "p", "10.0.0.10"),
        no_tls,
        edge("other-pool", "q", "10.0.0.1"),
        // Same address as e-10 (two processes on one host): rules are not repeated.
        edge("e-10b", "p", "10.0.0.10"),
    ];
    let control = vec![
        ("10.0.0.10".to_string(), 443),
        ("10.0.0.10".to_string(), 443),
    ];
    let got = entries(&app(&[Udp, Tcp, Tls], "p"), &edges, &control);
    let summary: Vec<String> = got
        .iter()
        .map(|e| format!("{} {} {} {}", e.protocol, e.address, e.ports, e.purpose))
        .collect();
    assert_eq!(
        summary,
        [
            // The control plane first; its 443 on 10.0.0.10 absorbs e-10's TLS 443.
            "tcp 10.0.0.10 443 proxy-info API (HTTPS)",
            // Numeric order: 10.0.0.9 before 10.0.0.10; no TLS/signal port, no such rules.
            "udp 10.0.0.9 3478-3500 TURN media (UDP)",
            "tcp 10.0.0.9 3433-3460 TURN media (TCP)",
            "udp 10.0.0.10 3478-3500 TURN media (UDP)",
            "tcp 10.0.0.10 3433-3460 TURN media (TCP)",
            "tcp 10.0.0.10 4000 signalling relay (TCP)",
            // IPv6 after IPv4, host names last.
            "udp 2001:db8::1 3478-3500 TURN media (UDP)",
            "tcp 2001:db8::1 3433-3460 TURN media (TCP)",
            "tcp 2001:db8::1 443 TLS: TURN-TLS and WSS signalling",
            "tcp 2001:db8::1 4000 signalling relay (TCP)",
            "udp edge.example.net 3478-3500 TURN media (UDP)",
            "tcp edge.example.net 3433-3460 TURN media (TCP)",
            "tcp edge.example.net 443 TLS: TURN-TLS and WSS signalling",
            "tcp edge.example.net 4000 signalling relay (TCP)",
        ]
    );
    // No edges in the pool: only the control plane.
    let got = entries(&app(&[Udp], "empty"), &edges, &control);
    assert_eq!(got.len(), 1);
    // Moving to production (another pool) changes the whitelist.
    let prod = entries(&app(&[Udp], "q"), &edges, &[]);
    assert_eq!(
        prod,
        [
            entry("udp", "10.0.0.1", ports(3478, 3500), PURPOSE_TURN_UDP),
            entry("tcp", "10.0.0.1", ports(443, 443), PURPOSE_TLS),
            entry("tcp", "10.0.0.1", ports(4000, 4000), PURPOSE_SIGNAL),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// render(): text formats

#[test]
fn table_is_aligned() {
    let out = render("app1", &mixed_entries(), WhitelistFormat::Table);
    assert!(
        out.starts_with("Firewall whitelist for App ID app1"),
        "{out}"
    );
    assert!(out.ends_with('\n'));
    let lines: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("Protocol"))
        .collect();
    assert_eq!(lines.len(), 2 + mixed_entries().len(), "{out}");
    let header = lines[0];
    let cols: Vec<usize> = ["Destination", "Ports", "Purpose"]
        .iter()
        .map(|h| header.find(h).unwrap())
        .collect();
    assert!(lines[1].chars().all(|c| c == '-' || c == ' '));
    for l in &lines[2..] {
        for &c in &cols {
            // Each column starts right after two spaces of padding.
            assert_eq!(&l[c - 2..c], "  ", "{l:?}");
            assert_ne!(l.as_bytes()[c], b' ', "{l:?}");
        }
        assert_eq!(l.trim_end(), *l);
    }
    assert!(lines[2].starts_with("TCP "));
    assert!(
        out.contains("UDP       2001:db8::7        3478-3500  TURN media (UDP)"),
        "{out}"
    );
    // No line breaks smuggled in through a purpose.
    assert_eq!(out.lines().count(), 4 + mixed_entries().len());
    let empty = render("app1", &[], WhitelistFormat::Table);
    assert!(empty.contains("no entries"), "{empty}");
}

#[test]
fn csv_has_header_and_quotes() {
    let list = mixed_entries();
    let out = render("app1", &list, WhitelistFormat::Csv);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("protocol,address,ports,purpose"));
    assert_eq!(
        lines.next(),
        Some("tcp,198.51.100.10,443,proxy-info API (HTTPS)")
    );
    assert!(out.contains("\nudp,203.0.113.7,3478-3500,TURN media (UDP)\n"));
    assert!(out.contains(
        "\ntcp,203.0.113.9,8443,\"weird \"\"purpose\"\", with $(rm -rf /) `x` \\ and\nnewline\"\n"
    ));
    // A minimal RFC 4180 reader gets the fields back.
    let records = parse_csv(&out);
    assert_eq!(records.len(), list.len() + 1);
    for (r, e) in records[1..].iter().zip(&list) {
        assert_eq!(
            r,
            &[
                e.protocol.clone(),
                e.address.clone(),
                e.ports.to_string(),
                e.purpose.clone()
            ]
        );
    }
}

fn parse_csv(s: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut field) = (vec![], vec![], String::new());
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    records
}

#[test]
fn json_round_trips() {
    let list = mixed_entries();
    let out = render("app1", &list, WhitelistFormat::Json);
    assert!(out.starts_with("[\n"), "{out}");
    let back: Vec<WhitelistEntry> = serde_json::from_str(&out).unwrap();
    assert_eq!(back, list);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v[2]["ports"],
        serde_json::json!({"first": 3478, "last": 3500})
    );
    assert_eq!(render("a", &[], WhitelistFormat::Json).trim(), "[]");
}

// ---------------------------------------------------------------------------------------------
// render(): firewall formats

#[test]
fn nftables_rendering_shape() {
    let out = render("app 1/\"x\"\n", &mixed_entries(), WhitelistFormat::Nftables);
    assert!(out.contains("table inet cloudproxy_app_1__x__ {"), "{out}");
    assert!(out.contains("policy drop;"));
    assert!(out.contains("nft -f FILE"));
    assert!(out.contains("BLOCKS"));
    for want in [
        "ip daddr 198.51.100.10 tcp dport 443 counter accept comment \"proxy-info API (HTTPS)\"",
        "ip daddr 203.0.113.7 udp dport 3478-3500 counter accept comment \"TURN media (UDP)\"",
        "ip daddr 203.0.113.7 tcp dport 3433-3460 counter accept comment \"TURN media (TCP)\"",
        "ip6 daddr 2001:db8::7 udp dport 3478-3500 counter accept",
        "ip6 daddr 2001:db8::8 tcp dport 443 counter accept",
        "# resolve proxy.example.com and allow tcp port 443",
        "ct state established,related accept",
        "oif \"lo\" accept",
        "iif \"lo\" accept",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    // Hostile purpose text cannot close the string or add a line.
    let weird = out.lines().find(|l| l.contains("203.0.113.9")).unwrap();
    assert_eq!(weird.matches('"').count(), 2, "{weird}");
    assert!(!weird.contains('$') && !weird.contains('`') && !weird.contains('\\'));
}

#[test]
fn nftables_passes_nft_check() {
    require_root_tools();
    let cases: Vec<(&str, Vec<WhitelistEntry>)> =
        vec![
        ("app1", mixed_entries()),
        ("empty", vec![]),
        (
            "Prod-App.2024 with spaces and ünïcode and a very long name that goes on and on and on",
            entries(
                &app(&TransportMode::ALL, "p"),
                &[edge("e1", "p", "203.0.113.7"), edge("e2", "p", "2001:db8::2")],
                &control(),
            ),
        ),
        (
            "odd",
            vec![
                entry("sctp", "203.0.113.1", ports(1, 1), "unsupported"),
                entry("udp", "203.0.113.1", ports(9, 1), "reversed"),
                entry("UDP", "203.0.113.1", ports(1, 65535), "upper-case protocol, full range"),
            ],
        ),
    ];
    for (id, list) in cases {
        let text = render(id, &list, WhitelistFormat::Nftables);
        let file = TempFile::new("nft", &text);
        let out = run(&["nft", "-c", "-f", file.path_str()]);
        assert!(
            out.status.success(),
            "nft -c rejected the ruleset for {id:?}: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn iptables_rendering_is_plausible_and_applies() {
    let out = render("app1", &mixed_entries(), WhitelistFormat::Iptables);
    let commands: Vec<&str> = out
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert!(!commands.is_empty());
    for l in &commands {
        assert!(
            l.starts_with("iptables ") || l.starts_with("ip6tables "),
            "not an iptables command: {l:?}"
        );
    }
    for want in [
        "iptables -A OUTPUT -p udp -d 203.0.113.7 --dport 3478:3500 -m comment --comment \"TURN media (UDP)\" -j ACCEPT",
        "iptables -A OUTPUT -p tcp -d 198.51.100.10 --dport 443 -m comment --comment \"proxy-info API (HTTPS)\" -j ACCEPT",
        "ip6tables -A OUTPUT -p udp -d 2001:db8::7 --dport 3478:3500",
        "ip6tables -A OUTPUT -p tcp -d 2001:db8::8 --dport 443",
        "iptables -A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "iptables -A OUTPUT -o lo -j ACCEPT",
        "# resolve proxy.example.com and allow tcp port 443",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    // The policy lines come last.
    assert_eq!(
        &commands[commands.len() - 4..],
        [
            "iptables -P OUTPUT DROP",
            "iptables -P INPUT DROP",
            "ip6tables -P OUTPUT DROP",
            "ip6tables -P INPUT DROP"
        ]
    );

    // The real thing, in a throwaway namespace so the host's firewall is never touched.
    if !tool_exists("iptables") {
        eprintln!("SKIP applying the iptables script: `iptables` is not installed");
        return;
    }
    require_root_tools();
    let ns = Netns::new("cpwi");
    let file = TempFile::new("ipt", &out);
    let r = run(&["ip", "netns", "exec", &ns.0, "sh", "-e", file.path_str()]);
    assert!(
        r.status.success(),
        "the iptables script failed: {}\n{out}",
        String::from_utf8_lossy(&r.stderr)
    );
    let listed = run(&["ip", "netns", "exec", &ns.0, "iptables", "-S", "OUTPUT"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("-P OUTPUT DROP"), "{listed}");
    assert!(
        listed.contains("-d 203.0.113.7/32 -p udp -m udp --dport 3478:3500"),
        "{listed}"
    );
    let listed6 = run(&["ip", "netns", "exec", &ns.0, "ip6tables", "-S", "OUTPUT"]);
    let listed6 = String::from_utf8_lossy(&listed6.stdout);
    assert!(
        listed6.contains("-d 2001:db8::7/128 -p udp -m udp --dport 3478:3500"),
        "{listed6}"
    );
}

// ---------------------------------------------------------------------------------------------
// End to end: a client namespace behind the rendered ruleset.

const CLIENT_IP: &str = "10.231.0.1";
const EDGE_IP: &str = "10.231.0.2";

/// Echo server: UDP and TCP on the given ports of one address, prints "ready" once bound.
const ECHO_SERVER: &str = r#"
import selectors, socket, sys
host, udp, tcp = sys.argv[1], sys.argv[2], sys.argv[3]
sel = selectors.DefaultSelector()
for p in filter(None, udp.split(",")):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, int(p)))
    sel.register(s, selectors.EVENT_READ, "udp")
for p in filter(None, tcp.split(",")):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(p)))
    s.listen(16)
    sel.register(s, selectors.EVENT_READ, "listen")
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        try:
            if key.data == "udp":
                d, a = s.recvfrom(2048)
                s.sendto(d, a)
            elif key.data == "listen":
                c, _ = s.accept()
                sel.register(c, selectors.EVENT_READ, "conn")
            else:
                d = s.recv(2048)
                if d:
                    s.sendall(d)
                else:
                    sel.unregister(s)
                    s.close()
        except OSError:
            pass
"#;

/// One probe: prints "open" if the echo came back within 1.5 s, else "blocked:<why>".
const PROBE: &str = r#"
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    if proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(1.5)
        s.sendto(b"ping", (host, port))
        d, _ = s.recvfrom(64)
    else:
        s = socket.create_connection((host, port), timeout=1.5)
        s.sendall(b"ping")
        d = s.recv(64)
    print("open" if d == b"ping" else "unexpected:%r" % d)
except PermissionError:
    print("blocked:EPERM")
except socket.timeout:
    print("blocked:timeout")
except OSError as e:
    print("blocked:errno%s" % e.errno)
"#;

#[test]
fn nftables_ruleset_blocks_everything_but_the_whitelist_in_a_namespace() {
    require_root_tools();
    let client = Netns::new("cpwlc");
    let edge_ns = Netns::new("cpwle");
    for ns in [&client, &edge_ns] {
        must(&["ip", "-n", &ns.0, "link", "set", "lo", "up"]);
    }
    must(&[
        "ip", "link", "add", "cpa", "netns", &client.0, "type", "veth", "peer", "name", "cpb",
        "netns", &edge_ns.0,
    ]);
    must(&[
        "ip",
        "-n",
        &client.0,
        "addr",
        "add",
        &format!("{CLIENT_IP}/24"),
        "dev",
        "cpa",
    ]);
    must(&[
        "ip",
        "-n",
        &edge_ns.0,
        "addr",
        "add",
        &format!("{EDGE_IP}/24"),
        "dev",
        "cpb",
    ]);
    must(&["ip", "-n", &client.0, "link", "set", "cpa", "up"]);
    must(&["ip", "-n", &edge_ns.0, "link", "set", "cpb", "up"]);

    // The "edge host": echo on the whitelisted ports and on ports that are not.
    let _edge_server = Spawned::echo(
        &edge_ns,
        EDGE_IP,
        "3478,3479,3433,9999",
        "3433,443,3478,9999",
    );
    // A listener on the client host, to check inbound connections are dropped too.
    let _client_server = Spawned::echo(&client, CLIENT_IP, "", "7000");

    let probes_out: [(&str, u16); 6] = [
        ("udp", 3478),
        ("udp", 3479),
        ("tcp", 3433),
        ("tcp", 443),
        ("udp", 9999),
        ("tcp", 9999),
    ];
    // Positive control: with no firewall, everything answers (both directions).
    for (proto, port) in probes_out {
        assert_eq!(
            probe(&client, proto, EDGE_IP, port),
            "open",
            "{proto}/{port} without firewall"
        );
    }
    assert_eq!(probe(&edge_ns, "tcp", CLIENT_IP, 7000), "open");

    // The whitelist as the control plane would compute it for this edge.
    let mut e = edge("e1", "p", EDGE_IP);
    e.udp_ports = ports(3478, 3479);
    e.tcp_ports = ports(3433, 3433);
    e.tls_port = Some(443);
    e.signal_port = None;
    let mut v6 = edge("e2", "p", "2001:db8::2");
    v6.signal_port = None;
    let list = entries(
        &app(&TransportMode::ALL, "p"),
        &[e, v6, edge("e3", "p", "edge.example.net")],
        &[],
    );
    let text = render("e2e-app", &list, WhitelistFormat::Nftables);
    let file = TempFile::new("e2e-nft", &text);
    let r = run(&[
        "ip",
        "netns",
        "exec",
        &client.0,
        "nft",
        "-f",
        file.path_str(),
    ]);
    assert!(
        r.status.success(),
        "nft -f failed: {}\n{text}",
        String::from_utf8_lossy(&r.stderr)
    );
    // Applying twice replaces the table instead of failing or doubling the rules.
    let r = run(&[
        "ip",
        "netns",
        "exec",
        &client.0,
        "nft",
        "-f",
        file.path_str(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let listed = run(&["ip", "netns", "exec", &client.0, "nft", "list", "ruleset"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert_eq!(
        listed.matches("table inet cloudproxy_e2e_app").count(),
        1,
        "{listed}"
    );

    // Whitelisted: through. Everything else, including the right port with the wrong
    // protocol, blocked; and nobody gets in.
    for (proto, port, want) in [
        ("udp", 3478, true),
        ("udp", 3479, true),
        ("tcp", 3433, true),
        ("tcp", 443, true),
        ("udp", 9999, false),
        ("tcp", 9999, false),
        ("tcp", 3478, false),
        ("udp", 3433, false),
    ] {
        let got = probe(&client, proto, EDGE_IP, port);
        if want {
            assert_eq!(got, "open", "{proto}/{port} is whitelisted");
        } else {
            assert!(
                got.starts_with("blocked"),
                "{proto}/{port} is not whitelisted: {got}"
            );
        }
    }
    let inbound = probe(&edge_ns, "tcp", CLIENT_IP, 7000);
    assert!(
        inbound.starts_with("blocked"),
        "inbound must be dropped: {inbound}"
    );

    // The counters prove the allowed traffic went through the whitelist rules.
    let listed = run(&["ip", "netns", "exec", &client.0, "nft", "list", "ruleset"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let udp_rule = listed
        .lines()
        .find(|l| l.contains("udp dport 3478-3479"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(!udp_rule.contains("packets 0 "), "{udp_rule}");
}

// ---------------------------------------------------------------------------------------------
// Helpers: processes and namespaces, always cleaned up.

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

fn must(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tool_exists(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn require_root_tools() {
    let uid = run(&["id", "-u"]);
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test needs root (network namespaces, nftables)"
    );
    for tool in ["ip", "nft", "python3"] {
        assert!(
            tool_exists(tool),
            "this test needs `{tool}` (apt-get install -y iproute2 nftables python3)"
        );
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A network namespace, deleted on drop (after killing whatever still runs in it, all of which
/// this test started).
struct Netns(String);

impl Netns {
    fn new(prefix: &str) -> Self {
        let name = unique(prefix);
        must(&["ip", "netns", "add", &name]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A process started in a namespace, killed and reaped on drop.
struct Spawned(Child);

impl Spawned {
    fn echo(ns: &Netns, host: &str, udp: &str, tcp: &str) -> Self {
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.0,
                "python3",
                "-u",
                "-c",
                ECHO_SERVER,
                host,
                udp,
                tcp,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn echo server");
        let stdout = child.stdout.take().unwrap();
        let guard = Spawned(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("echo server did not start within 10 s");
        assert_eq!(line.trim(), "ready", "echo server failed to start");
        guard
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs one probe from `ns`, bounded: the probe's own timeouts are 1.5 s, and the process is
/// killed if it is still running after 5 s.
fn probe(ns: &Netns, proto: &str, host: &str, port: u16) -> String {
    let port = port.to_string();
    let child = Command::new("ip")
        .args([
            "netns", "exec", &ns.0, "python3", "-c", PROBE, proto, host, &port,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn probe");
    let mut guard = Spawned(child);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if guard.0.try_wait().expect("wait for probe").is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "probe {proto} {host}:{port} hung"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read as _;
    let _ = guard.0.stdout.take().unwrap().read_to_string(&mut out);
    let _ = guard.0.stderr.take().unwrap().read_to_string(&mut err);
    let out = out.trim().to_owned();
    assert!(!out.is_empty(), "probe printed nothing: {err}");
    out
}

/// A file under the temp directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, contents: &str) -> Self {
        let path = std::env::temp_dir().join(unique(&format!("cloudproxy-whitelist-{tag}-")));
        std::fs::write(&path, contents).expect("write temp file");
        TempFile(path)
    }

    fn path_str(&self) -> &str {
        path_str(&self.0)
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
