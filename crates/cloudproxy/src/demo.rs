//! `cloudproxy demo`: the whole system on 127.0.0.1 with nothing to configure.
//!
//! It starts, in this process, a control plane (embedded store in a fresh directory, dev TLS),
//! an edge registered with it, and the stand-in media network (signalling gateway + SFU);
//! provisions a test App ID; prints its firewall whitelist; serves a demo page (built on the
//! web SDK) on `http://127.0.0.1:8080/`; and starts one `cloudproxy join` participant that
//! publishes test video, so a person opening the page sees someone through the proxy.
//!
//! The page's origin is a small HTTP server here: it serves the page, hands out join tokens
//! for the demo App ID (the job of the app developer's token server), and forwards the
//! proxy-info routes to the control plane (like an edge does), so the browser needs to trust
//! no certificate for the default mode 3.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use clap::Args;
use control_api::App;
use edge::{EdgeConfig, PortRange};
use serde::Deserialize;
use serde_json::json;

use crate::{init_logs, wait_for_signal, EX_UNAVAILABLE};

const INDEX_HTML: &str = include_str!("../assets/demo/index.html");
const DEMO_JS: &str = include_str!("../assets/demo/demo.js");
const SDK_JS: &str = include_str!("../assets/demo/cloudproxy-sdk.js");

/// Demo options (every port on 127.0.0.1).
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Port of the demo page.
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// Port of the control plane (HTTPS).
    #[arg(long, default_value_t = 9443)]
    control_port: u16,
    /// UDP TURN ports of the edge.
    #[arg(long, default_value = "3478-3500")]
    udp_ports: PortRange,
    /// TCP TURN ports of the edge.
    #[arg(long, default_value = "3433-3460")]
    tcp_ports: PortRange,
    /// The edge's TLS port (TURN-TLS and WSS; 443 in production, which needs root).
    #[arg(long, default_value_t = 5349)]
    tls_port: u16,
    /// The edge's plain signalling port.
    #[arg(long, default_value_t = 4000)]
    signal_port: u16,
    /// Relay ports of the edge.
    #[arg(long, default_value = "49152-49651")]
    relay_ports: PortRange,
    /// Port of the media network's signalling gateway.
    #[arg(long, default_value_t = 8088)]
    rtn_port: u16,
    /// UDP port of the media network's SFU.
    #[arg(long, default_value_t = 10000)]
    rtn_media_port: u16,
    /// Channel the demo participant joins (and the page proposes).
    #[arg(long, default_value = "demo")]
    channel: String,
    /// Do not start the `cloudproxy join` participant.
    #[arg(long)]
    no_bot: bool,
    /// Directory for the embedded store and the dev certificate (default: a fresh temporary
    /// directory, removed at exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// What the page's server needs.
struct Page {
    app: App,
    channel: String,
    control: String,
    http: reqwest::Client,
    bot_uid: String,
}

pub fn run(args: DemoArgs) -> ExitCode {
    init_logs(false);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cloudproxy demo: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run_async(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloudproxy demo: {e}");
            ExitCode::from(EX_UNAVAILABLE)
        }
    }
}

/// Removes a temporary data directory at exit.
struct TempDir(Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

async fn run_async(args: DemoArgs) -> Result<(), String> {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (data_dir, _cleanup) = match &args.data_dir {
        Some(d) => (d.clone(), TempDir(None)),
        None => {
            let d = std::env::temp_dir().join(format!("cloudproxy-demo-{}", std::process::id()));
            (d.clone(), TempDir(Some(d)))
        }
    };
    std::fs::create_dir_all(&data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;

    // 1. Control plane (dev mode: self-signed certificate, generated tokens).
    let rtn_signal = SocketAddr::new(lo, args.rtn_port);
    let cp = control_plane::ControlPlane::start(control_plane::ControlConfig {
        listen: SocketAddr::new(lo, args.control_port),
        data_dir: data_dir.clone(),
        dev: true,
        public_addresses: vec!["127.0.0.1".into()],
        rtn_upstreams: vec![rtn_signal.to_string()],
        ..Default::default()
    })
    .await
    .map_err(|e| format!("control plane: {e}"))?;
    let control = format!("https://127.0.0.1:{}", args.control_port);
    let ca_pem = cp.ca_pem().unwrap_or_default().to_string();
    let ca_file = data_dir.join("tls/cert.pem");
    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(ca_pem.as_bytes()).map_err(|e| e.to_string())?,
        )
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;

    // 2. A test App ID.
    let app: App = http
        .post(format!("{control}/v1/admin/apps"))
        .bearer_auth(cp.admin_token())
        .json(&json!({"name": "cloudproxy demo", "max_concurrency": 50}))
        .send()
        .await
        .map_err(|e| format!("provisioning: {e}"))?
        .json()
        .await
        .map_err(|e| format!("provisioning: {e}"))?;

    // 3. The media network, on loopback.
    let rtn = rtn::Rtn::start(rtn::RtnConfig {
        signal_listen: rtn_signal,
        media_listen: SocketAddr::new(lo, args.rtn_media_port),
        media_public: lo,
        apps: [(app.app_id.clone(), app.certificate.clone())].into(),
    })
    .await
    .map_err(|e| format!("rtn: {e}"))?;

    // 4. An edge registered with the control plane.
    let edge_cfg = EdgeConfig {
        listen: lo,
        udp_ports: args.udp_ports,
        tcp_ports: args.tcp_ports,
        relay_ports: args.relay_ports,
        tls_port: args.tls_port,
        // The control plane's dev certificate (it names 127.0.0.1): one CA file to trust
        // for both.
        tls_cert: Some(data_dir.join("tls/cert.pem")),
        tls_key: Some(data_dir.join("tls/key.pem")),
        signal_port: args.signal_port,
        control: Some(control.clone()),
        edge_token: Some(cp.edge_token().to_string()),
        control_ca: Some(ca_file.clone()),
        edge_id: Some("edge-demo".into()),
        // The media network of this demo is on 127.0.0.1.
        dangerous_allow_loopback_peers: true,
        ..EdgeConfig::default()
    };
    let edge = tokio::task::spawn_blocking(move || edge::Edge::start(edge_cfg))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("edge: {e}"))?;
    let t0 = std::time::Instant::now();
    while !edge.registered() {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err("the edge did not register with the control plane".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 5. The whitelist an IT admin would open.
    let whitelist = http
        .get(format!(
            "{control}/v1/admin/apps/{}/whitelist?format=table",
            app.app_id
        ))
        .bearer_auth(cp.admin_token())
        .send()
        .await
        .map_err(|e| format!("whitelist: {e}"))?
        .text()
        .await
        .map_err(|e| format!("whitelist: {e}"))?;

    // 6. The demo page.
    let page = Arc::new(Page {
        app: app.clone(),
        channel: args.channel.clone(),
        control: control.clone(),
        http: http.clone(),
        bot_uid: "demo-bot".into(),
    });
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(lo, args.http_port))
        .await
        .map_err(|e| format!("demo page port {}: {e}", args.http_port))?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router(page)).await;
    });

    // 7. A participant to see.
    let bot_log = data_dir.join("demo-bot.log");
    let mut bot = if args.no_bot {
        None
    } else {
        Some(start_bot(&args, &app, &control, &ca_file, &bot_log)?)
    };

    println!(
        "\ncloudproxy demo is running (Ctrl-C stops it)\n\
         \n  demo page        http://127.0.0.1:{http}/   ← open it, press Join\n\
         \n  control plane    {control}   (dev certificate: {ca})\n  edge             edge-demo on 127.0.0.1: UDP {udp}, TCP {tcp}, TLS {tls}, signalling {sig}\n  media network    signalling ws://{rtn_signal}/signal, SFU udp 127.0.0.1:{media}\n  App ID           {app_id}   (test environment, channel \"{channel}\")\n  participant      {bot}\n\
         \nWhitelist for this App ID (what an enterprise firewall opens):\n\n{whitelist}\n\
         Join from a terminal too (a second participant):\n\n  cloudproxy join --control {control} --ca {ca} --app-id {app_id} --app-cert {cert} --channel {channel} --uid me --mode 3\n\n\
         Check every whitelisted port the way a firewalled client would:\n\n  cloudproxy doctor --control {control} --ca {ca} --app-id {app_id} --app-cert {cert}\n",
        http = args.http_port,
        ca = ca_file.display(),
        udp = args.udp_ports,
        tcp = args.tcp_ports,
        tls = args.tls_port,
        sig = args.signal_port,
        media = rtn.media_addr().port(),
        app_id = app.app_id,
        channel = args.channel,
        bot = if bot.is_some() {
            format!("demo-bot (cloudproxy join, mode 3), log: {}", bot_log.display())
        } else {
            "none (--no-bot)".into()
        },
        cert = app.certificate,
    );

    wait_for_signal().await;
    println!("stopping");
    if let Some(b) = bot.as_mut() {
        let _ = b.kill().await;
    }
    server.abort();
    tokio::task::spawn_blocking(move || drop(edge))
        .await
        .map_err(|e| e.to_string())?;
    drop(rtn);
    cp.shutdown().await;
    Ok(())
}

/// `cloudproxy join` as a child: the demo's other participant.
fn start_bot(
    args: &DemoArgs,
    app: &App,
    control: &str,
    ca_file: &std::path::Path,
    log: &std::path::Path,
) -> Result<tokio::process::Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    tokio::process::Command::new(exe)
        .args(["join", "--control", control, "--ca"])
        .arg(ca_file)
        .args(["--app-id", &app.app_id, "--channel", &args.channel])
        .args(["--uid", "demo-bot", "--mode", "3", "--join-timeout", "30"])
        .env("CLOUDPROXY_APP_CERT", &app.certificate)
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting the demo participant: {e}"))
}

fn router(page: Arc<Page>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/demo.js",
            get(|| async { asset("text/javascript", DEMO_JS) }),
        )
        .route(
            "/cloudproxy-sdk.js",
            get(|| async { asset("text/javascript", SDK_JS) }),
        )
        .route("/demo/config", get(config))
        .route("/demo/token", get(token))
        .route("/v1/proxy", post(forward_proxy))
        .route("/v1/proxy/{session}", delete(forward_release))
        .with_state(page)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn config(State(p): State<Arc<Page>>, headers: HeaderMap) -> Json<serde_json::Value> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    Json(json!({
        "appId": p.app.app_id,
        "channel": p.channel,
        // The page's own origin: this server forwards the proxy-info routes.
        "controlUrl": format!("http://{host}"),
        "defaultMode": 3,
        "botUid": p.bot_uid,
    }))
}

#[derive(Deserialize)]
struct TokenQuery {
    channel: String,
    uid: String,
}

/// A join token for the demo App ID (what the app developer's own server does).
async fn token(State(p): State<Arc<Page>>, Query(q): Query<TokenQuery>) -> Response {
    if q.channel.is_empty() || q.uid.is_empty() || q.channel.len() > 64 || q.uid.len() > 64 {
        return (
            StatusCode::BAD_REQUEST,
            "channel and uid: 1 to 64 characters",
        )
            .into_response();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let token = credentials::join_token::mint_join_token(
        &p.app.app_id,
        p.app.certificate.as_bytes(),
        &q.channel,
        &q.uid,
        now + 3600,
    );
    Json(json!({ "token": token })).into_response()
}

async fn forward_proxy(
    State(p): State<Arc<Page>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let req = p
        .http
        .post(format!("{}/v1/proxy", p.control))
        .header(
            header::CONTENT_TYPE,
            headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json"),
        )
        .body(body);
    relay(req).await
}

async fn forward_release(State(p): State<Arc<Page>>, Path(session): Path<String>) -> Response {
    let mut url = match reqwest::Url::parse(&p.control) {
        Ok(u) => u,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    if let Ok(mut segs) = url.path_segments_mut() {
        segs.pop_if_empty().extend(["v1", "proxy", &session]);
    }
    relay(p.http.delete(url)).await
}

async fn relay(req: reqwest::RequestBuilder) -> Response {
    match req.send().await {
        Ok(r) => {
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let ct = r
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_string();
            let body = r.bytes().await.unwrap_or_default();
            (status, [(header::CONTENT_TYPE, ct)], body).into_response()
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({"code": "UPSTREAM_UNAVAILABLE", "message": format!("control plane: {e}"), "retryable": true})),
        )
            .into_response(),
    }
}
