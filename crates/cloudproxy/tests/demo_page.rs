//! `cloudproxy demo`, as a person would use it: the binary starts the whole system on
//! 127.0.0.1, headless Chromium opens the demo page, presses Join (mode 3, through the cloud
//! proxy), and the demo's own `cloudproxy join` participant ("demo-bot") appears with its test
//! video decoding. A screenshot of that page is saved as a test artifact:
//! `target/test-artifacts/demo-page.png`.
//!
//! Needs: `tests/browser/setup.sh` (chromium, `npm ci`), a non-loopback interface on the
//! machine (Chromium gathers no candidates without one).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cloudproxy");

/// Stops the demo with SIGTERM (so it stops its participant too), then SIGKILL.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn artifact_dir() -> PathBuf {
    // CARGO_MANIFEST_DIR is crates/cloudproxy; artifacts go next to the build output.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("test-artifacts")
}

#[test]
fn the_demo_page_shows_the_demo_participant_through_the_proxy() {
    let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser");
    assert!(
        browser
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "run tests/browser/setup.sh first (chromium, npm ci)"
    );
    let p = integration_tests::free_ports(9);
    let range = |a: u16| format!("{a}-{a}");
    let data = integration_tests::control::TempDir::new("demo-page");
    let mut child = Command::new(BIN)
        .args(["demo", "--http-port", &p[0].to_string()])
        .args(["--control-port", &p[1].to_string()])
        .args(["--udp-ports", &range(p[2]), "--tcp-ports", &range(p[3])])
        .args(["--tls-port", &p[4].to_string()])
        .args(["--signal-port", &p[5].to_string()])
        .args(["--rtn-port", &p[6].to_string()])
        .args(["--rtn-media-port", &p[7].to_string()])
        .args(["--relay-ports", "61500-61599"])
        .arg("--data-dir")
        .arg(&data.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cloudproxy demo");
    let stdout = child.stdout.take().expect("stdout");
    let demo = Demo(child);

    // The banner names the page once everything is up.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut banner = String::new();
    let url = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                banner.push_str(&line);
                banner.push('\n');
                if let Some(u) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                    if line.contains("demo page") {
                        break u.to_string();
                    }
                }
            }
            Err(_) => panic!("the demo printed no page URL within 30 s:\n{banner}"),
        }
    };
    // The rest of the banner: the whitelist table and the join command line.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        match rx.recv_timeout(Duration::from_millis(300)) {
            Ok(line) => {
                banner.push_str(&line);
                banner.push('\n');
            }
            Err(_) => break,
        }
    }
    assert!(banner.contains("Whitelist for this App ID"), "{banner}");
    assert!(banner.contains("TURN media (UDP)"), "{banner}");
    assert!(banner.contains("cloudproxy join --control"), "{banner}");

    // The banner's doctor command, as printed, passes every check it makes.
    let doctor: Vec<String> = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("cloudproxy doctor "))
        .unwrap_or_else(|| panic!("no doctor command in the banner:\n{banner}"))
        .split_whitespace()
        .map(String::from)
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_cloudproxy"))
        .arg("doctor")
        .args(&doctor)
        .arg("--json")
        .stdin(Stdio::null())
        .output()
        .expect("run cloudproxy doctor");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "doctor against the demo:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checks: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("verdict").is_some())
        .collect();
    assert!(
        checks.iter().all(|c| c["verdict"] != "FAIL"),
        "no check fails against the demo:\n{text}"
    );
    for step in ["proxy-info", "stun", "turn-allocate", "signalling"] {
        assert!(
            checks
                .iter()
                .any(|c| c["mode"] == 3 && c["step"] == step && c["verdict"] == "PASS"),
            "mode 3 {step} passes:\n{text}"
        );
    }
    eprintln!(
        "doctor against the demo: {} checks, none failed",
        checks.len()
    );

    let shot = artifact_dir().join("demo-page.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&shot);
    let cfg = json!({
        "scenario": "demo",
        "url": url,
        "mode": 3,
        "expectUid": "demo-bot",
        "expectRelayProtocol": "udp",
        "screenshot": shot,
        "stepTimeoutMs": 30000,
    });
    let r = integration_tests::browser::run(&cfg, Duration::from_secs(90));
    let verdict = r.verdict;
    eprintln!("demo page verdict: {verdict}");
    assert!(
        r.success == Some(true) && verdict["ok"] == true,
        "{verdict}\n{}",
        r.stderr
    );
    let m = &verdict["measured"];
    assert_eq!(m["using"], true, "{verdict}");
    assert_eq!(m["transport"], "udp", "{verdict}");
    assert_eq!(m["relayProtocol"], "udp", "{verdict}");
    let frames: Vec<u64> = m["framesDecoded"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    assert!(
        frames.len() == 2 && frames[1] > frames[0],
        "the demo participant's video keeps decoding: {frames:?}"
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    eprintln!("screenshot artifact: {}", shot.display());
    drop(demo);
}
