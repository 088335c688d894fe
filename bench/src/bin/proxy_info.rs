//! Proxy-info benchmark: requests per second and latency percentiles of `POST /v1/proxy`
//! over HTTPS (keep-alive connections, like an SDK fleet behind a few NATs), against an
//! in-process control plane on 127.0.0.1 with its real SQLite store, or against `--url`.
//!
//! Each request is a full admission: token check, edge ranking, an atomic quota insert,
//! credential minting and ticket signing. Sessions are released after each answer (a second
//! request, not counted) so the quota never fills. Bounded by `--requests` and `--seconds`.
//!
//!   cargo run --release -p bench --bin proxy_info -- --requests 20000 --concurrency 32

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Requests to send in all.
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Stop after this many seconds even if requests remain.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Keep sessions (do not release): then `--requests` must stay under the quota.
    #[arg(long)]
    keep_sessions: bool,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("cloudproxy-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = control_plane::ControlConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.clone(),
        dev: true,
        ..Default::default()
    };
    let cp = control_plane::ControlPlane::start(cfg)
        .await
        .expect("control plane");
    let base = format!("https://127.0.0.1:{}", cp.local_addr().port());
    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(cp.ca_pem().unwrap().as_bytes()).unwrap(),
        )
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .unwrap();
    let app: control_api::App = http
        .post(format!("{base}/v1/admin/apps"))
        .bearer_auth(cp.admin_token())
        .json(&json!({"name": "bench", "max_concurrency": 1_000_000}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for i in 0..4 {
        let hb = json!({"id": format!("e{i}"), "pool": app.pool, "region": "GLOBAL", "isp": "", "address": format!("192.0.2.{}", i + 1),
            "udp_ports": {"first": 3478, "last": 3500}, "tcp_ports": {"first": 3433, "last": 3460}, "tls_port": 443,
            "signal_port": 4000, "relay_ips": [], "load": {"allocations": i * 10, "bandwidth_bps": 0}, "draining": false, "version": "b", "sessions": []});
        let r = http
            .post(format!("{base}/v1/edges/heartbeat"))
            .bearer_auth(cp.edge_token())
            .json(&hb)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let token = credentials::join_token::mint_join_token(
        &app.app_id,
        app.certificate.as_bytes(),
        "bench",
        "u",
        now() + 3600,
    );
    let body = Arc::new(
        json!({"app_id": app.app_id, "channel": "bench", "uid": "u", "mode": "udp", "token": token}),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (http, base, body, next) = (http.clone(), base.clone(), body.clone(), next.clone());
        let (total, keep) = (args.requests, args.keep_sessions);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            while next.fetch_add(1, Ordering::Relaxed) < total && Instant::now() < deadline {
                let t = Instant::now();
                let r = http
                    .post(format!("{base}/v1/proxy"))
                    .json(&*body)
                    .send()
                    .await;
                let session = match r {
                    Ok(r) if r.status().is_success() => r
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|v| v["session"].as_str().map(str::to_owned)),
                    _ => None,
                };
                lat.push(t.elapsed());
                match session {
                    Some(s) if !keep => {
                        let _ = http.delete(format!("{base}/v1/proxy/{s}")).send().await;
                    }
                    Some(_) => {}
                    None => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        lat.extend(l);
        errors += e;
    }
    let wall = started.elapsed();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let n = lat.len();
    // Each counted request is paired with an uncounted release, so the service handled about
    // twice as many requests; the rate below counts admissions only.
    println!(
        "proxy-info: {n} admissions in {:.2}s = {:.0}/s (concurrency {}, errors {errors}); latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        args.concurrency,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        pct(0.999).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    cp.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    if errors > 0 {
        std::process::exit(1);
    }
}
