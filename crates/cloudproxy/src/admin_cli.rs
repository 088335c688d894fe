//! `cloudproxy app|edges|secrets|whitelist`: clients of the control plane's admin API
//! (`/v1/admin/...`, HTTPS, `Authorization: Bearer <admin token>`).
//!
//! Exit codes: 0 ok; 64 bad usage (clap, a missing token, a bad URL or CA file) or a
//! `BAD_REQUEST` answer; 69 the control plane is unreachable (connect error or timeout); 1 any
//! other API error, printed as `error: CODE: message` on stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand, ValueEnum};
use control_api::{
    App, AppCreate, AppPromote, AppStatus, AppUpdate, AppUsage, EdgeInfo, Environment,
    RotatedSecrets, TransportMode,
};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{EX_UNAVAILABLE, EX_USAGE};

const DEFAULT_CONTROL: &str = "https://127.0.0.1:443";

/// How to reach the admin API; accepted before or after the subcommand.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Control plane")]
pub struct Conn {
    /// Control plane base URL [default: https://127.0.0.1:443].
    #[arg(long, global = true, env = "CLOUDPROXY_CONTROL", value_name = "URL")]
    control: Option<String>,
    /// Admin bearer token (required).
    #[arg(
        long,
        global = true,
        env = "CLOUDPROXY_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "T"
    )]
    admin_token: Option<String>,
    /// Extra CA certificate (PEM) to trust, e.g. the dev control plane's
    /// `<data_dir>/tls/cert.pem`.
    #[arg(long, global = true, env = "CLOUDPROXY_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Print the raw JSON answer instead of a human table.
    #[arg(long, global = true)]
    json: bool,
}

/// `cloudproxy app ...`.
#[derive(Args, Debug)]
pub struct AppArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: AppCmd,
}

#[derive(Subcommand, Debug)]
enum AppCmd {
    /// Provision a new App ID (prints its certificate: keep it secret).
    Create(AppCreateArgs),
    /// List App IDs.
    List,
    /// Show one App ID, with its certificate.
    Show {
        /// The App ID.
        app_id: String,
    },
    /// Change an App ID; omitted options stay as they are.
    Update(AppUpdateArgs),
    /// Suspend an App ID (clients get PROXY_NOT_ENABLED).
    Suspend {
        /// The App ID.
        app_id: String,
    },
    /// Re-enable a suspended App ID.
    Resume {
        /// The App ID.
        app_id: String,
    },
    /// Promote a test App ID to production with a dedicated pool.
    Promote {
        /// The App ID.
        app_id: String,
        /// Dedicated pool name [default: prod-<app_id>].
        #[arg(long, value_name = "P")]
        pool: Option<String>,
    },
    /// Delete an App ID.
    Delete {
        /// The App ID.
        app_id: String,
    },
    /// Show an App ID's concurrency in use.
    Usage {
        /// The App ID.
        app_id: String,
    },
}

#[derive(Args, Debug)]
struct AppCreateArgs {
    /// Display name.
    #[arg(long, value_name = "N")]
    name: String,
    /// Use this App ID instead of a generated one.
    #[arg(long, value_name = "ID")]
    app_id: Option<String>,
    /// Environment [server default: test].
    #[arg(long, value_enum)]
    environment: Option<EnvArg>,
    /// Enabled transport (repeat or comma-separate) [server default: all].
    #[arg(long = "mode", value_enum, value_delimiter = ',', value_name = "MODE")]
    modes: Vec<ModeArg>,
    /// Allowed area / region code (repeat or comma-separate) [server default: every area].
    #[arg(long = "area", value_delimiter = ',', value_name = "CODE")]
    areas: Vec<String>,
    /// Preferred ISP (repeat or comma-separate) [server default: any].
    #[arg(long = "isp", value_delimiter = ',', value_name = "X")]
    isps: Vec<String>,
    /// Peak concurrent sessions [server default: 50].
    #[arg(long, value_name = "N")]
    max_concurrency: Option<u32>,
    /// Edge pool [server default: test-global].
    #[arg(long, value_name = "P")]
    pool: Option<String>,
}

#[derive(Args, Debug)]
struct AppUpdateArgs {
    /// The App ID.
    app_id: String,
    /// Display name.
    #[arg(long, value_name = "N")]
    name: Option<String>,
    /// Enabled transports, replacing the current list (repeat or comma-separate).
    #[arg(long = "mode", value_enum, value_delimiter = ',', value_name = "MODE")]
    modes: Vec<ModeArg>,
    /// Allowed areas, replacing the current list (repeat or comma-separate).
    #[arg(
        long = "area",
        value_delimiter = ',',
        value_name = "CODE",
        conflicts_with = "all_areas"
    )]
    areas: Vec<String>,
    /// Allow every area (clears the area list).
    #[arg(long)]
    all_areas: bool,
    /// ISPs, replacing the current list (repeat or comma-separate).
    #[arg(
        long = "isp",
        value_delimiter = ',',
        value_name = "X",
        conflicts_with = "any_isp"
    )]
    isps: Vec<String>,
    /// Any ISP (clears the ISP list).
    #[arg(long)]
    any_isp: bool,
    /// Peak concurrent sessions.
    #[arg(long, value_name = "N")]
    max_concurrency: Option<u32>,
    /// Edge pool.
    #[arg(long, value_name = "P")]
    pool: Option<String>,
    /// Status.
    #[arg(long, value_enum)]
    status: Option<StatusArg>,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum EnvArg {
    Test,
    Production,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum ModeArg {
    Udp,
    Tcp,
    Tls,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum StatusArg {
    Enabled,
    Suspended,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum FormatArg {
    Table,
    Csv,
    Json,
    Nftables,
    Iptables,
}

impl From<EnvArg> for Environment {
    fn from(e: EnvArg) -> Self {
        match e {
            EnvArg::Test => Environment::Test,
            EnvArg::Production => Environment::Production,
        }
    }
}

impl From<ModeArg> for TransportMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Udp => TransportMode::Udp,
            ModeArg::Tcp => TransportMode::Tcp,
            ModeArg::Tls => TransportMode::Tls,
        }
    }
}

impl From<StatusArg> for AppStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Enabled => AppStatus::Enabled,
            StatusArg::Suspended => AppStatus::Suspended,
        }
    }
}

impl FormatArg {
    fn as_str(self) -> &'static str {
        match self {
            FormatArg::Table => "table",
            FormatArg::Csv => "csv",
            FormatArg::Json => "json",
            FormatArg::Nftables => "nftables",
            FormatArg::Iptables => "iptables",
        }
    }
}

/// `cloudproxy edges ...`.
#[derive(Args, Debug)]
pub struct EdgesArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: EdgesCmd,
}

#[derive(Subcommand, Debug)]
enum EdgesCmd {
    /// List registered edges.
    List,
    /// Ask an edge to drain: no new allocations, existing ones finish.
    Drain {
        /// The edge id.
        id: String,
    },
}

/// `cloudproxy secrets ...`.
#[derive(Args, Debug)]
pub struct SecretsArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: SecretsCmd,
}

#[derive(Subcommand, Debug)]
enum SecretsCmd {
    /// Make new TURN and ticket keys current (the previous ones stay valid for a while).
    Rotate,
}

/// `cloudproxy whitelist --app ID --format F`.
#[derive(Args, Debug)]
pub struct WhitelistArgs {
    #[command(flatten)]
    conn: Conn,
    /// The App ID.
    #[arg(long = "app", value_name = "ID")]
    app_id: String,
    /// Output format [default: table, or json with --json].
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
}

/// Why a command failed; each maps to an exit code.
#[derive(Debug)]
enum Failure {
    /// Bad usage or configuration (64).
    Usage(String),
    /// The control plane could not be reached (69).
    Unavailable(String),
    /// The API refused with a code (BAD_REQUEST → 64, others → 1).
    Api { code: String, message: String },
    /// Anything else (1).
    Other(String),
}

impl Failure {
    fn report(self) -> ExitCode {
        match self {
            Failure::Usage(m) => {
                eprintln!("error: {m}");
                ExitCode::from(EX_USAGE)
            }
            Failure::Unavailable(m) => {
                eprintln!("error: control plane unavailable: {m}");
                ExitCode::from(EX_UNAVAILABLE)
            }
            Failure::Api { code, message } => {
                eprintln!("error: {code}: {message}");
                if code == "UNAUTHORIZED" {
                    eprintln!("hint: check --admin-token / CLOUDPROXY_ADMIN_TOKEN");
                }
                if code == "BAD_REQUEST" {
                    ExitCode::from(EX_USAGE)
                } else {
                    ExitCode::FAILURE
                }
            }
            Failure::Other(m) => {
                eprintln!("error: {m}");
                ExitCode::FAILURE
            }
        }
    }
}

/// An admin API client.
struct Admin {
    http: reqwest::Client,
    base: Url,
    token: String,
    json: bool,
}

/// A successful answer: status and body text.
struct Answer {
    status: StatusCode,
    body: String,
}

impl Admin {
    fn new(conn: &Conn) -> Result<Self, Failure> {
        let token = match conn.admin_token.as_deref().map(str::trim) {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => {
                return Err(Failure::Usage(
                    "an admin token is required: --admin-token T or CLOUDPROXY_ADMIN_TOKEN".into(),
                ))
            }
        };
        let raw = conn.control.as_deref().unwrap_or(DEFAULT_CONTROL);
        let base = Url::parse(raw).map_err(|e| Failure::Usage(format!("--control {raw}: {e}")))?;
        if !matches!(base.scheme(), "https" | "http") || base.cannot_be_a_base() {
            return Err(Failure::Usage(format!(
                "--control {raw}: expected an https:// (or http://) URL"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("cloudproxy-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &conn.ca {
            let pem = std::fs::read(ca)
                .map_err(|e| Failure::Usage(format!("--ca {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Failure::Usage(format!("--ca {}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(Failure::Usage(format!(
                    "--ca {}: no PEM certificate in the file",
                    ca.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Failure::Other(format!("HTTP client: {}", chain(&e))))?;
        Ok(Self {
            http,
            base,
            token,
            json: conn.json,
        })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&impl Serialize>,
    ) -> Result<Answer, Failure> {
        let mut url = self.url(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(transport_failure)?;
        let status = resp.status();
        let body = resp.text().await.map_err(transport_failure)?;
        if status.is_success() {
            return Ok(Answer { status, body });
        }
        Err(api_failure(status, &body))
    }

    async fn get<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<(T, String), Failure> {
        let a = self.call(Method::GET, segments, &[], None::<&()>).await?;
        Ok((decode(&a)?, a.body))
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: &B,
    ) -> Result<(T, String), Failure> {
        let a = self.call(method, segments, &[], Some(body)).await?;
        Ok((decode(&a)?, a.body))
    }

    /// Prints `raw` as (pretty) JSON.
    fn print_json(&self, raw: &str) {
        match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(v) => println!(
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_else(|_| raw.to_string())
            ),
            Err(_) => println!("{}", raw.trim_end()),
        }
    }
}

fn decode<T: DeserializeOwned>(a: &Answer) -> Result<T, Failure> {
    serde_json::from_str(&a.body).map_err(|e| {
        Failure::Other(format!(
            "unexpected answer from the control plane (HTTP {}): {e}",
            a.status.as_u16()
        ))
    })
}

fn transport_failure(e: reqwest::Error) -> Failure {
    let msg = chain(&e);
    if e.is_connect() || e.is_timeout() {
        let hint = if msg.contains("certificate") || msg.contains("UnknownIssuer") {
            " (is the control plane's certificate trusted? try --ca FILE)"
        } else {
            ""
        };
        Failure::Unavailable(format!("{msg}{hint}"))
    } else {
        Failure::Other(msg)
    }
}

fn api_failure(status: StatusCode, body: &str) -> Failure {
    let parsed = serde_json::from_str::<serde_json::Value>(body).ok();
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    if let Some(code) = field("code") {
        let message = field("message").unwrap_or_default();
        return Failure::Api { code, message };
    }
    // Not one of our error bodies: a proxy or load balancer in between, or another server.
    let snippet: String = body.trim().chars().take(200).collect();
    let msg = format!("HTTP {status}: {snippet}");
    match status.as_u16() {
        400 => Failure::Usage(msg),
        502..=504 => Failure::Unavailable(msg),
        _ => Failure::Other(msg),
    }
}

/// An error with its sources, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        src = s.source();
    }
    out
}

fn block_on<F: std::future::Future<Output = Result<(), Failure>>>(f: F) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Failure::Other(format!("runtime: {e}")).report(),
    };
    match rt.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs `cloudproxy app ...`.
pub fn run_app(args: AppArgs) -> ExitCode {
    block_on(async move {
        let admin = Admin::new(&args.conn)?;
        match args.cmd {
            AppCmd::Create(c) => {
                let body = AppCreate {
                    name: c.name,
                    app_id: c.app_id,
                    environment: c.environment.map(Into::into),
                    modes: non_empty(c.modes.into_iter().map(Into::into).collect()),
                    areas: non_empty(c.areas),
                    isps: non_empty(c.isps),
                    max_concurrency: c.max_concurrency,
                    pool: c.pool,
                };
                let (app, raw): (App, _) = admin
                    .send(Method::POST, &["v1", "admin", "apps"], &body)
                    .await?;
                show_app(&admin, &app, &raw);
                if !admin.json {
                    eprintln!(
                        "note: keep the certificate secret; your app server signs join tokens with it \
                         (cloudproxy token --app-id {} --certificate ... --channel C --uid U)",
                        app.app_id
                    );
                }
            }
            AppCmd::List => {
                let (apps, raw): (Vec<App>, _) = admin.get(&["v1", "admin", "apps"]).await?;
                if admin.json {
                    admin.print_json(&raw);
                } else {
                    let rows = apps
                        .iter()
                        .map(|a| {
                            vec![
                                a.app_id.clone(),
                                a.name.clone(),
                                env_str(a.environment).into(),
                                status_str(a.status).into(),
                                a.pool.clone(),
                                modes_str(&a.modes),
                                a.max_concurrency.to_string(),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        table(
                            &["APP_ID", "NAME", "ENV", "STATUS", "POOL", "MODES", "MAX"],
                            rows
                        )
                    );
                }
            }
            AppCmd::Show { app_id } => {
                let (app, raw): (App, _) = admin.get(&["v1", "admin", "apps", &app_id]).await?;
                show_app(&admin, &app, &raw);
            }
            AppCmd::Update(u) => {
                let areas = if u.all_areas {
                    Some(Vec::new())
                } else {
                    non_empty(u.areas)
                };
                let isps = if u.any_isp {
                    Some(Vec::new())
                } else {
                    non_empty(u.isps)
                };
                let body = AppUpdate {
                    name: u.name,
                    modes: non_empty(u.modes.into_iter().map(Into::into).collect()),
                    areas,
                    isps,
                    max_concurrency: u.max_concurrency,
                    pool: u.pool,
                    status: u.status.map(Into::into),
                };
                update(&admin, &u.app_id, &body).await?;
            }
            AppCmd::Suspend { app_id } => {
                let body = AppUpdate {
                    status: Some(AppStatus::Suspended),
                    ..Default::default()
                };
                update(&admin, &app_id, &body).await?;
            }
            AppCmd::Resume { app_id } => {
                let body = AppUpdate {
                    status: Some(AppStatus::Enabled),
                    ..Default::default()
                };
                update(&admin, &app_id, &body).await?;
            }
            AppCmd::Promote { app_id, pool } => {
                let (app, raw): (App, _) = admin
                    .send(
                        Method::POST,
                        &["v1", "admin", "apps", &app_id, "promote"],
                        &AppPromote { pool },
                    )
                    .await?;
                show_app(&admin, &app, &raw);
            }
            AppCmd::Delete { app_id } => {
                admin
                    .call(
                        Method::DELETE,
                        &["v1", "admin", "apps", &app_id],
                        &[],
                        None::<&()>,
                    )
                    .await?;
                if !admin.json {
                    println!("deleted App ID {app_id}");
                }
            }
            AppCmd::Usage { app_id } => {
                let (u, raw): (AppUsage, _) = admin
                    .get(&["v1", "admin", "apps", &app_id, "usage"])
                    .await?;
                if admin.json {
                    admin.print_json(&raw);
                } else {
                    let pct = if u.max_concurrency == 0 {
                        String::new()
                    } else {
                        format!(
                            " ({}%)",
                            u64::from(u.active_sessions) * 100 / u64::from(u.max_concurrency)
                        )
                    };
                    print!(
                        "{}",
                        kv(&[
                            ("app_id", u.app_id.clone()),
                            ("active_sessions", format!("{}{pct}", u.active_sessions)),
                            ("max_concurrency", u.max_concurrency.to_string()),
                        ])
                    );
                }
            }
        }
        Ok(())
    })
}

async fn update(admin: &Admin, app_id: &str, body: &AppUpdate) -> Result<(), Failure> {
    let (app, raw): (App, _) = admin
        .send(Method::PATCH, &["v1", "admin", "apps", app_id], body)
        .await?;
    show_app(admin, &app, &raw);
    Ok(())
}

fn show_app(admin: &Admin, app: &App, raw: &str) {
    if admin.json {
        admin.print_json(raw);
        return;
    }
    let list = |v: &[String], empty: &str| {
        if v.is_empty() {
            empty.to_string()
        } else {
            v.join(",")
        }
    };
    print!(
        "{}",
        kv(&[
            ("app_id", app.app_id.clone()),
            ("name", app.name.clone()),
            ("environment", env_str(app.environment).into()),
            ("status", status_str(app.status).into()),
            ("pool", app.pool.clone()),
            ("modes", modes_str(&app.modes)),
            ("areas", list(&app.areas, "(every area)")),
            ("isps", list(&app.isps, "(any)")),
            ("max_concurrency", app.max_concurrency.to_string()),
            ("created_at", app.created_at.to_string()),
            ("certificate (secret)", app.certificate.clone()),
        ])
    );
}

/// Runs `cloudproxy edges ...`.
pub fn run_edges(args: EdgesArgs) -> ExitCode {
    block_on(async move {
        let admin = Admin::new(&args.conn)?;
        match args.cmd {
            EdgesCmd::List => {
                let (edges, raw): (Vec<EdgeInfo>, _) = admin.get(&["v1", "admin", "edges"]).await?;
                if admin.json {
                    admin.print_json(&raw);
                    return Ok(());
                }
                let now = unix_now();
                let rows = edges
                    .iter()
                    .map(|e| {
                        let hb = &e.heartbeat;
                        let state = if e.lease_expires <= now {
                            "expired"
                        } else if e.drain_requested || hb.draining {
                            "draining"
                        } else {
                            "live"
                        };
                        vec![
                            hb.id.clone(),
                            hb.pool.clone(),
                            hb.region.clone(),
                            hb.isp.clone(),
                            hb.address.clone(),
                            hb.load.allocations.to_string(),
                            state.into(),
                            format!("{}s ago", now.saturating_sub(e.last_seen)),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &[
                            "ID",
                            "POOL",
                            "REGION",
                            "ISP",
                            "ADDRESS",
                            "ALLOCS",
                            "STATE",
                            "LAST_SEEN"
                        ],
                        rows
                    )
                );
            }
            EdgesCmd::Drain { id } => {
                admin
                    .call(
                        Method::POST,
                        &["v1", "admin", "edges", &id, "drain"],
                        &[],
                        None::<&()>,
                    )
                    .await?;
                if !admin.json {
                    println!("drain requested for edge {id}");
                }
            }
        }
        Ok(())
    })
}

/// Runs `cloudproxy secrets ...`.
pub fn run_secrets(args: SecretsArgs) -> ExitCode {
    block_on(async move {
        let admin = Admin::new(&args.conn)?;
        match args.cmd {
            SecretsCmd::Rotate => {
                let (r, raw): (RotatedSecrets, _) = admin
                    .send(
                        Method::POST,
                        &["v1", "admin", "secrets", "rotate"],
                        &serde_json::json!({}),
                    )
                    .await?;
                if admin.json {
                    admin.print_json(&raw);
                } else {
                    print!(
                        "{}",
                        kv(&[
                            ("turn_key_id", r.turn_key_id),
                            ("ticket_key_id", r.ticket_key_id),
                        ])
                    );
                }
            }
        }
        Ok(())
    })
}

/// Runs `cloudproxy whitelist ...`: prints the rendered whitelist verbatim.
pub fn run_whitelist(args: WhitelistArgs) -> ExitCode {
    block_on(async move {
        let admin = Admin::new(&args.conn)?;
        let format = args.format.unwrap_or(if admin.json {
            FormatArg::Json
        } else {
            FormatArg::Table
        });
        let a = admin
            .call(
                Method::GET,
                &["v1", "admin", "apps", &args.app_id, "whitelist"],
                &[("format", format.as_str())],
                None::<&()>,
            )
            .await?;
        print!("{}", a.body);
        if !a.body.is_empty() && !a.body.ends_with('\n') {
            println!();
        }
        Ok(())
    })
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    if v.is_empty() {
        None
    } else {
        Some(v)
    }
}

fn env_str(e: Environment) -> &'static str {
    match e {
        Environment::Test => "test",
        Environment::Production => "production",
    }
}

fn status_str(s: AppStatus) -> &'static str {
    match s {
        AppStatus::Enabled => "enabled",
        AppStatus::Suspended => "suspended",
    }
}

fn modes_str(modes: &[TransportMode]) -> String {
    if modes.is_empty() {
        return "-".into();
    }
    modes
        .iter()
        .map(|m| match m {
            TransportMode::Udp => "udp",
            TransportMode::Tcp => "tcp",
            TransportMode::Tls => "tls",
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Left-aligned columns separated by two spaces, `-` for an empty cell; no trailing spaces.
fn table(headers: &[&str], mut rows: Vec<Vec<String>>) -> String {
    for cell in rows.iter_mut().flatten() {
        if cell.is_empty() {
            *cell = "-".into();
        }
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `key: value` lines with the values aligned.
fn kv(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_trims() {
        let t = table(
            &["A", "BB", "C"],
            vec![vec!["xyz".into(), "1".into(), "".into()]],
        );
        assert_eq!(t, "A    BB  C\nxyz  1   -\n");
    }

    #[test]
    fn kv_aligns() {
        assert_eq!(
            kv(&[("a", "1".into()), ("long", "2".into())]),
            "a:    1\nlong: 2\n"
        );
    }

    #[test]
    fn api_errors_map_to_exit_classes() {
        let f = api_failure(
            StatusCode::BAD_REQUEST,
            r#"{"code":"BAD_REQUEST","message":"no name","retryable":false}"#,
        );
        assert!(matches!(f, Failure::Api { ref code, .. } if code == "BAD_REQUEST"));
        assert!(matches!(
            api_failure(StatusCode::BAD_GATEWAY, "<html>"),
            Failure::Unavailable(_)
        ));
        assert!(matches!(
            api_failure(StatusCode::NOT_FOUND, "nope"),
            Failure::Other(_)
        ));
    }

    #[test]
    fn urls_escape_segments_and_keep_prefixes() {
        let conn = Conn {
            control: Some("https://cp.example/prefix/".into()),
            admin_token: Some("t".into()),
            ca: None,
            json: false,
        };
        let admin = Admin::new(&conn).map_err(|_| ()).expect("client");
        assert_eq!(
            admin.url(&["v1", "admin", "apps", "a/b c"]).as_str(),
            "https://cp.example/prefix/v1/admin/apps/a%2Fb%20c"
        );
    }
}
