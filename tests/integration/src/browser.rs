//! Runs the Chromium driver, `node tests/browser/run.mjs CONFIG` (see that file for the
//! scenarios), bounded, and returns its one-line JSON verdict. Shared by every test that puts
//! a real browser in front of the product.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The driver's directory (`tests/browser`).
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../browser")
}

/// Panics with the fix when `tests/browser/setup.sh` has not run.
pub fn require_setup() {
    let d = dir();
    assert!(
        d.join("node_modules/playwright-core/package.json").exists(),
        "{}/node_modules is missing: run tests/browser/setup.sh (chromium, libnss3-tools, npm ci)",
        d.display()
    );
}

/// What one run gave.
#[derive(Debug)]
pub struct Run {
    /// Exit success, or `None` when it was killed at the deadline.
    pub success: Option<bool>,
    /// The JSON verdict (its last non-empty stdout line).
    pub verdict: Value,
    /// What it wrote to stderr (browser console, diagnostics).
    pub stderr: String,
}

/// Runs the driver with `cfg`, killing it after `deadline`. Panics when it prints no JSON.
pub fn run(cfg: &Value, deadline: Duration) -> Run {
    let d = dir();
    let mut child = Command::new("node")
        .arg(d.join("run.mjs"))
        .arg(cfg.to_string())
        .current_dir(&d)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node (Node 20)");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let until = Instant::now() + deadline;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait node") {
            break Some(s);
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, stderr) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    let scenario = &cfg["scenario"];
    let line = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let verdict: Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "run.mjs {scenario} ({status:?}, deadline {deadline:?}) printed no JSON verdict ({e})\nstdout: {out}\nstderr: {stderr}"
        )
    });
    eprintln!("run.mjs {scenario} ({status:?}): {verdict}");
    Run {
        success: status.map(|s| s.success()),
        verdict,
        stderr,
    }
}
