//! The control plane survives SIGKILL: provision App IDs (through the CLI, against the real
//! binary), promote one, rotate secrets, kill -9, restart on the same data directory, and find
//! every App ID, pool and secret as it was. The whitelist the CLI prints is accepted by `nft`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-token-0123456789";
const EDGE: &str = "edge-token-0123456789ab";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cloudproxy")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Control(Child);

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, port: u16) -> Control {
    let child = Command::new(bin())
        .args([
            "control",
            "--dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir)
        .args([
            "--admin-token",
            ADMIN,
            "--edge-token",
            EDGE,
            "--public-address",
            "127.0.0.1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cloudproxy control");
    let c = Control(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "control plane did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c
}

fn cli(dir: &Path, port: u16, args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .args([
            "--control",
            &format!("https://127.0.0.1:{port}"),
            "--admin-token",
            ADMIN,
            "--ca",
        ])
        .arg(dir.join("tls/cert.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cloudproxy {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn heartbeat_keys(dir: &Path, port: u16) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pem = std::fs::read(dir.join("tls/cert.pem")).unwrap();
        let http = reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap()).build().unwrap();
        let hb = serde_json::json!({
            "id": "edge-a", "pool": "prod-bank1", "region": "GLOBAL", "isp": "", "address": "192.0.2.44",
            "udp_ports": {"first": 3478, "last": 3500}, "tcp_ports": {"first": 3433, "last": 3460},
            "tls_port": 443, "signal_port": 4000, "relay_ips": [], "load": {"allocations": 0, "bandwidth_bps": 0},
            "draining": false, "version": "t", "sessions": []
        });
        let r = http.post(format!("https://127.0.0.1:{port}/v1/edges/heartbeat")).bearer_auth(EDGE).json(&hb).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json::<serde_json::Value>().await.unwrap()
    })
}

#[test]
fn provisioning_and_secrets_survive_sigkill() {
    let dir = std::env::temp_dir().join(format!("cloudproxy-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _cleanup = Cleanup(dir.clone());
    let port = free_port();
    let mut control = start(&dir, port);

    cli(
        &dir,
        port,
        &[
            "app",
            "create",
            "--name",
            "Bank",
            "--app-id",
            "bank1",
            "--mode",
            "udp",
            "--mode",
            "tls",
            "--max-concurrency",
            "7",
        ],
    );
    cli(
        &dir,
        port,
        &[
            "app", "create", "--name", "Hospital", "--app-id", "hosp1", "--area", "CN",
        ],
    );
    cli(&dir, port, &["app", "promote", "bank1"]);
    cli(&dir, port, &["app", "suspend", "hosp1"]);
    cli(&dir, port, &["secrets", "rotate"]);
    let before_apps: serde_json::Value =
        serde_json::from_str(&cli(&dir, port, &["app", "list", "--json"])).unwrap();
    let before_keys = heartbeat_keys(&dir, port);
    assert_eq!(before_apps.as_array().unwrap().len(), 2);
    assert_eq!(
        before_keys["turn_secrets"].as_array().unwrap().len(),
        2,
        "initial key + rotated key"
    );

    // SIGKILL: no shutdown path runs.
    control.0.kill().unwrap();
    control.0.wait().unwrap();
    let _control = start(&dir, port);

    let after_apps: serde_json::Value =
        serde_json::from_str(&cli(&dir, port, &["app", "list", "--json"])).unwrap();
    assert_eq!(
        after_apps, before_apps,
        "every App ID, pool, environment, status and certificate survives"
    );
    let bank = after_apps
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app_id"] == "bank1")
        .unwrap();
    assert_eq!(
        (bank["environment"].as_str(), bank["pool"].as_str()),
        (Some("production"), Some("prod-bank1"))
    );
    let after_keys = heartbeat_keys(&dir, port);
    assert_eq!(
        after_keys["turn_secrets"], before_keys["turn_secrets"],
        "TURN secrets survive"
    );
    assert_eq!(
        after_keys["ticket_keys"], before_keys["ticket_keys"],
        "ticket keys survive"
    );

    // The whitelist for the promoted app names its dedicated edge; nft accepts the ruleset.
    let nft = cli(
        &dir,
        port,
        &["whitelist", "--app", "bank1", "--format", "nftables"],
    );
    assert!(nft.contains("192.0.2.44"), "{nft}");
    let file = dir.join("bank1.nft");
    std::fs::write(&file, &nft).unwrap();
    let check = Command::new("nft")
        .arg("-c")
        .arg("-f")
        .arg(&file)
        .output()
        .expect("nft (nftables) must be installed: bash .ci/run installs it");
    assert!(
        check.status.success(),
        "nft -c rejected the ruleset: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let table = cli(&dir, port, &["whitelist", "--app", "bank1"]);
    assert!(
        table.contains("192.0.2.44") && table.contains("3478-3500"),
        "{table}"
    );
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
