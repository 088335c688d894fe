//! A real browser against the edge's TLS port 443 (issue 4): headless Chromium (Debian
//! `chromium`, driven by `playwright-core` through `tests/browser/run.mjs`) with a test CA
//! imported into the browser's own NSS database — the certificate is verified, not ignored.
//!
//! What it shows, each time with the positive case first and then the negative control on the
//! identical set-up (the same edges, the same certificate, only the CA not trusted):
//! - `wss`: `new WebSocket("wss://<edge>:443/ws?upstream=…&ticket=…")` opens through the edge's
//!   WebSocket relay to an upstream WebSocket echo server and 20 messages (text and binary, up
//!   to 70 kB) come back intact and in order; the upstream itself counts the 20 messages. Without
//!   the CA the WebSocket errors and never opens.
//! - `turns`: an `RTCPeerConnection` whose only ICE server is `turns:<edge A>:443?transport=tcp`
//!   with `iceTransportPolicy: 'relay'` connects to a peer and passes 20 data-channel messages
//!   each way; `getStats()` shows the selected pair's local candidate as `relay` with
//!   `relayProtocol` `tls`, relayed on edge A's address. Without the CA there is no relay
//!   candidate at all.
//!
//! The far peer relays through a second edge (B, `turns:<edge B>:443`), because an edge refuses
//! to relay to its own relay addresses (peer policy), so two relay-only peers on one edge cannot
//! reach each other — by design, not a browser problem.
//!
//! Set-up: the edges listen on their own loopback addresses `127.R.S.1` and `127.R.S.2` (random
//! R, S per run), so their port 443 collides with nothing else on the machine; the certificate
//! names both addresses (IP SANs). Chromium runs in the host namespace: it reaches the edges on
//! loopback, but it gathers no candidates at all unless the machine has some non-loopback
//! interface with an address (checked first, with a clear message).
//!
//! Needs: `tests/browser/setup.sh` (chromium, libnss3-tools, `npm ci`), root (port 443).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use credentials::{sign_ticket, Secret, SecretSet, TicketClaims};
use edge::config::{SecretSpec, UserSpec};
use edge::{Edge, EdgeConfig, PortRange, StartError};
use futures_util::{SinkExt, StreamExt};
use integration_tests::free_ports;
use integration_tests::tls::TestCa;
use serde_json::{json, Value};

const USER: &str = "browser";
const PASSWORD: &str = "browser-pass";
const TICKET_KEY_ID: &str = "k1";
const TICKET_SECRET: &str = "browser-e2e-ticket-secret";
const MESSAGES: u64 = 20;
/// Relay ports of every edge here (bound on the edge's own loopback address, so they collide
/// with nothing else).
const RELAY_PORTS: PortRange = PortRange {
    first: 61500,
    last: 61999,
};
/// Longest a whole `node run.mjs` may take (its own waits are bounded at 15 s each).
const BROWSER_DEADLINE: Duration = Duration::from_secs(90);

/// One browser at a time: two cores, and timing matters to WebRTC.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Two fresh loopback addresses `127.R.S.1` and `127.R.S.2`.
fn loopback_pair() -> (IpAddr, IpAddr) {
    let r = random_u64();
    let (a, b) = (10 + (r % 240) as u8, ((r >> 8) % 250) as u8);
    (
        IpAddr::V4(Ipv4Addr::new(127, a, b, 1)),
        IpAddr::V4(Ipv4Addr::new(127, a, b, 2)),
    )
}

/// What the browser needs from the machine; panics with the fix when something is missing.
fn check_prerequisites() {
    integration_tests::browser::require_setup();
    assert!(
        Path::new("/usr/lib/chromium/chromium").exists(),
        "Debian chromium is not installed: run tests/browser/setup.sh"
    );
    let out = Command::new("ip")
        .args(["-o", "addr", "show", "scope", "global", "up"])
        .output()
        .expect("run `ip addr` (package iproute2)");
    assert!(
        !String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "this machine has no non-loopback interface with an address: Chromium gathers no ICE \
         candidates at all then (even for a TURN server on loopback)"
    );
}

/// A test CA and one server certificate for `ips`, as files in `dir`: (ca.pem, cert, key).
fn write_pki(dir: &Path, ips: &[IpAddr]) -> (PathBuf, PathBuf, PathBuf) {
    let ca = TestCa::new("cloudproxy browser-e2e test CA");
    let names: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (cert, key) = ca.write_server(dir, &names, "edge");
    let ca_pem = dir.join("ca.pem");
    std::fs::write(&ca_pem, &ca.pem).expect("write ca.pem");
    (ca_pem, cert, key)
}

/// An edge on `ip` with TLS on port 443 (TURN-over-TLS and the WSS relay), one static user and
/// the ticket key; plain TURN on free ports; no plain signalling port.
fn start_edge(ip: IpAddr, cert: &Path, key: &Path) -> Edge {
    let mut last_err = None;
    for _ in 0..5 {
        let ports: Vec<u16> = free_ports(2)
            .into_iter()
            .filter(|p| !RELAY_PORTS.contains(*p))
            .collect();
        if ports.len() < 2 {
            continue;
        }
        let cfg = EdgeConfig {
            listen: ip,
            udp_ports: PortRange {
                first: ports[0],
                last: ports[0],
            },
            tcp_ports: PortRange {
                first: ports[1],
                last: ports[1],
            },
            relay_ports: RELAY_PORTS,
            tls_port: 443,
            tls_cert: Some(cert.to_path_buf()),
            tls_key: Some(key.to_path_buf()),
            signal_port: 0,
            ticket_keys: vec![SecretSpec {
                key_id: TICKET_KEY_ID.into(),
                secret: TICKET_SECRET.into(),
            }],
            users: vec![UserSpec {
                name: USER.into(),
                password: PASSWORD.into(),
            }],
            dangerous_allow_loopback_peers: true,
            ..EdgeConfig::default()
        };
        match Edge::start(cfg) {
            Ok(edge) => return edge,
            Err(e @ StartError::Bind { .. }) => last_err = Some(e),
            Err(e) => panic!("edge on {ip} does not start: {e}"),
        }
    }
    panic!("edge on {ip} does not start: {last_err:?}");
}

/// A WebSocket echo server on 127.0.0.1 (the RTN upstream). Counts the data messages it echoed.
async fn ws_echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    let echoed = Arc::new(AtomicUsize::new(0));
    let count = echoed.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        if ws.send(msg).await.is_err() {
                            break;
                        }
                        count.fetch_add(1, Ordering::SeqCst);
                    } else if msg.is_close() {
                        break;
                    }
                }
            });
        }
    });
    (addr, echoed)
}

fn ticket_for(upstream: &str) -> String {
    let keys = SecretSet::new(vec![Secret::new(TICKET_KEY_ID, TICKET_SECRET)]).expect("keys");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    sign_ticket(
        &keys,
        &TicketClaims {
            app_id: "browser-e2e".into(),
            session: "browser-session".into(),
            upstreams: vec![upstream.into()],
            expires_at: now + 600,
        },
    )
}

fn turn_server(ip: IpAddr) -> Value {
    json!({
        "urls": format!("turns:{ip}:443?transport=tcp"),
        "username": USER,
        "credential": PASSWORD,
    })
}

/// Runs the Chromium driver (bounded) and returns its verdict; the exit status must agree.
fn run_browser(cfg: &Value) -> Value {
    let r = integration_tests::browser::run(cfg, BROWSER_DEADLINE);
    if !r.stderr.trim().is_empty() {
        eprintln!("run.mjs {} stderr:\n{}", cfg["scenario"], r.stderr);
    }
    let Some(success) = r.success else {
        panic!(
            "run.mjs {} did not finish in {BROWSER_DEADLINE:?}: {}",
            cfg["scenario"], r.verdict
        );
    };
    assert_eq!(
        r.verdict["ok"].as_bool() == Some(true),
        success,
        "exit status and verdict disagree: {success} vs {}",
        r.verdict
    );
    r.verdict
}

fn base_config(scenario: &str, ca: &Path) -> Value {
    json!({
        "scenario": scenario,
        "caFile": ca,
        "messages": MESSAGES,
        "stepTimeoutMs": 15000,
        "untrustedWaitMs": 12000,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_turns_over_tls443_relays_with_verified_certificate() {
    check_prerequisites();
    let _one_browser = BROWSER.lock().await;
    let tmp = tempdir("turns");
    let (ip_a, ip_b) = loopback_pair();
    let (ca, cert, key) = write_pki(&tmp, &[ip_a, ip_b]);
    let edge_a = start_edge(ip_a, &cert, &key);
    let edge_b = start_edge(ip_b, &cert, &key);

    // Positive: the client (pc1) relays through edge A over TLS, the peer (pc2) through edge B.
    let mut cfg = base_config("turns", &ca);
    cfg["turn"] = turn_server(ip_a);
    cfg["peerTurn"] = turn_server(ip_b);
    let v = tokio::task::spawn_blocking(move || run_browser(&cfg))
        .await
        .expect("browser task");
    assert_eq!(v["ok"], true, "turns failed: {v}");
    let t = &v["turns"];
    assert_eq!(t["echoedToPc1"], MESSAGES, "{v}");
    assert_eq!(t["receivedByPc2"], MESSAGES, "{v}");
    assert_eq!(t["mismatches"], json!([]), "{v}");
    for (side, ip) in [("pc1", ip_a), ("pc2", ip_b)] {
        let local = &t["selected"][side]["local"];
        assert_eq!(local["candidateType"], "relay", "{side}: {v}");
        assert_eq!(local["relayProtocol"], "tls", "{side}: {v}");
        assert_eq!(
            local["address"],
            ip.to_string(),
            "{side} relayed elsewhere: {v}"
        );
        assert_eq!(
            local["url"],
            format!("turns:{ip}:443?transport=tcp"),
            "{side}: {v}"
        );
        assert!(
            t["selected"][side]["bytesReceived"].as_u64().unwrap_or(0) > 0,
            "{side}: nothing received on the selected pair: {v}"
        );
    }

    // Negative control: the same edge and certificate, the CA not imported: no relay candidate.
    let mut cfg = base_config("untrusted", &ca);
    cfg["turn"] = turn_server(ip_a);
    let v = tokio::task::spawn_blocking(move || run_browser(&cfg))
        .await
        .expect("browser task");
    assert_eq!(v["ok"], true, "untrusted TURN-TLS was not refused: {v}");
    assert_eq!(v["caImported"], false, "{v}");
    assert_eq!(v["turns"]["relayCandidates"], 0, "{v}");

    drop(edge_a);
    drop(edge_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_wss_over_tls443_relays_to_upstream_with_verified_certificate() {
    check_prerequisites();
    let _one_browser = BROWSER.lock().await;
    let tmp = tempdir("wss");
    let (ip_a, _) = loopback_pair();
    let (ca, cert, key) = write_pki(&tmp, &[ip_a]);
    let edge = start_edge(ip_a, &cert, &key);
    let (echo, echoed) = ws_echo().await;
    let upstream = echo.to_string();
    let url = format!(
        "wss://{ip_a}:443/ws?upstream={upstream}&ticket={}",
        ticket_for(&upstream)
    );

    // Positive: 20 messages out through the relay to the echo upstream and back.
    let mut cfg = base_config("wss", &ca);
    cfg["wssUrl"] = json!(url);
    let v = tokio::task::spawn_blocking(move || run_browser(&cfg))
        .await
        .expect("browser task");
    assert_eq!(v["ok"], true, "wss failed: {v}");
    let w = &v["wss"];
    assert_eq!(w["opened"], true, "{v}");
    assert_eq!(w["echoed"], MESSAGES, "{v}");
    assert_eq!(w["mismatches"], json!([]), "{v}");
    assert_eq!(
        echoed.load(Ordering::SeqCst) as u64,
        MESSAGES,
        "the upstream did not see every message: {v}"
    );

    // Negative control: the same URL without the CA: the WebSocket never opens, and nothing
    // reaches the upstream.
    let before = echoed.load(Ordering::SeqCst);
    let mut cfg = base_config("untrusted", &ca);
    cfg["wssUrl"] = json!(url);
    let v = tokio::task::spawn_blocking(move || run_browser(&cfg))
        .await
        .expect("browser task");
    assert_eq!(v["ok"], true, "untrusted WSS was not refused: {v}");
    assert_eq!(v["caImported"], false, "{v}");
    assert_eq!(v["wss"]["opened"], false, "{v}");
    assert_eq!(echoed.load(Ordering::SeqCst), before, "{v}");

    drop(edge);
}

/// A temporary directory removed on drop, also when the test panics.
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir(tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!(
        "cloudproxy-browser-tls443-{tag}-{}-{:x}",
        std::process::id(),
        random_u64()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    TempDir(dir)
}
