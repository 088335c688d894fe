//! `cloudproxy`: one binary, one subcommand per role.
//!
//! Exit codes (sysexits): 0 ok, 64 bad usage or configuration, 69 a dependency (a port, an
//! address) unavailable, 1 anything else.
#![forbid(unsafe_code)]

mod admin_cli;
mod control_cmd;
mod demo;
mod doctor_cmd;
mod edge_cmd;
mod join_cmd;
mod participant;
mod rtn_cmd;
mod token_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for bad usage or configuration (EX_USAGE).
pub const EX_USAGE: u8 = 64;
/// Exit code for an unavailable dependency (EX_UNAVAILABLE).
pub const EX_UNAVAILABLE: u8 = 69;

#[derive(Parser)]
#[command(
    name = "cloudproxy",
    version,
    about = "Firewall-friendly cloud proxy for real-time audio/video: edge, control plane, SDK participant, demo and admin tools."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a TURN edge (UDP 3478-3500, TCP 3433-3460 by default).
    Edge(Box<edge_cmd::EdgeArgs>),
    /// Run the control plane: proxy-info API, edge registry, admin API (HTTPS, 443 by default).
    Control(Box<control_cmd::ControlArgs>),
    /// Run the stand-in media network (WebSocket signalling gateway + WebRTC SFU) for the demo
    /// and the tests.
    Rtn(Box<rtn_cmd::RtnArgs>),
    /// Run the whole system on 127.0.0.1: control plane, edge, media network, a test App ID,
    /// a demo page (http://127.0.0.1:8080/) and a participant to see
    Demo(demo::DemoArgs),
    /// Join a channel as a test participant (Rust SDK): through the cloud proxy by default,
    /// sending test audio/video and printing stats every second
    Join(Box<join_cmd::JoinArgs>),
    /// Check, from inside a firewalled network, every whitelisted port of every mode the way
    /// a join would use it (proxy info, STUN on each TURN port, a TURN allocation, the
    /// signalling relay) and print what passes and what is blocked
    Doctor(Box<doctor_cmd::DoctorArgs>),
    /// Manage App IDs through the control plane's admin API.
    App(admin_cli::AppArgs),
    /// List or drain edges through the admin API.
    Edges(admin_cli::EdgesArgs),
    /// Rotate the TURN and ticket secrets through the admin API.
    Secrets(admin_cli::SecretsArgs),
    /// Print the firewall whitelist of an App ID (table, csv, json, nftables, iptables).
    Whitelist(admin_cli::WhitelistArgs),
    /// Mint a join token for a channel and uid with an App ID's certificate.
    Token(token_cmd::TokenArgs),
    /// Check an edge configuration file and exit (0 valid, 64 invalid).
    CheckConfig {
        /// The TOML file.
        file: std::path::PathBuf,
        /// Which component the file configures.
        #[arg(long, value_enum, default_value = "edge")]
        kind: ConfigKind,
    },
}

/// Components with a configuration file.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ConfigKind {
    /// `cloudproxy edge --config`.
    Edge,
    /// `cloudproxy control --config`.
    Control,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Edge(args) => edge_cmd::run(*args),
        Command::Control(args) => control_cmd::run(*args),
        Command::Rtn(args) => rtn_cmd::run(*args),
        Command::Demo(args) => demo::run(args),
        Command::Join(args) => join_cmd::run(*args),
        Command::Doctor(args) => doctor_cmd::run(*args),
        Command::App(args) => admin_cli::run_app(args),
        Command::Edges(args) => admin_cli::run_edges(args),
        Command::Secrets(args) => admin_cli::run_secrets(args),
        Command::Whitelist(args) => admin_cli::run_whitelist(args),
        Command::Token(args) => token_cmd::run(args),
        Command::CheckConfig { file, kind } => {
            let checked = match kind {
                ConfigKind::Edge => edge::EdgeConfig::load(&file)
                    .and_then(|c| c.validate())
                    .map_err(|e| e.to_string()),
                ConfigKind::Control => control_plane::ControlConfig::load(&file)
                    .and_then(|c| c.validate())
                    .map_err(|e| e.to_string()),
            };
            match checked {
                Ok(_) => {
                    println!("{}: OK", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(EX_USAGE)
                }
            }
        }
    }
}

/// Installs the log subscriber: RUST_LOG filters (default info), text or JSON lines on stderr.
pub fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Waits for SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
