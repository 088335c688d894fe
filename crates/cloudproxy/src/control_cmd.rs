//! `cloudproxy control`: flags over the config file, then the control plane until a signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use control_plane::{ControlConfig, ControlPlane};

use crate::{init_logs, wait_for_signal, EX_UNAVAILABLE, EX_USAGE};

/// Flags override the file.
#[derive(Args, Debug)]
pub struct ControlArgs {
    /// TOML configuration file (see docs/control.example.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// HTTPS listen address [default: 0.0.0.0:443].
    #[arg(long, value_name = "IP:PORT")]
    listen: Option<SocketAddr>,
    /// Directory of the embedded store [default: ./cloudproxy-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Admin API bearer token (16+ characters; generated in --dev mode).
    #[arg(long, value_name = "T", env = "CLOUDPROXY_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// Edge bearer token (repeatable; generated in --dev mode).
    #[arg(long = "edge-token", value_name = "T", env = "CLOUDPROXY_EDGE_TOKEN")]
    edge_tokens: Vec<String>,
    /// TLS certificate chain (PEM).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Address clients reach this service at, for whitelists and the dev certificate (repeatable).
    #[arg(long = "public-address", value_name = "ADDR")]
    public_addresses: Vec<String>,
    /// Signalling upstream ("host:port") tickets admit (repeatable).
    #[arg(long = "rtn-upstream", value_name = "HOST:PORT")]
    rtn_upstreams: Vec<String>,
    /// Development mode: self-signed certificate in DATA_DIR/tls, generated tokens.
    #[arg(long)]
    dev: bool,
    /// Log format: text or json.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
}

impl ControlArgs {
    fn merge(self) -> Result<ControlConfig, control_plane::config::ConfigError> {
        let mut c = match &self.config {
            Some(p) => ControlConfig::load(p)?,
            None => ControlConfig::default(),
        };
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.data_dir {
            c.data_dir = v;
        }
        if self.admin_token.is_some() {
            c.admin_token = self.admin_token;
        }
        if !self.edge_tokens.is_empty() {
            c.edge_tokens = self.edge_tokens;
        }
        if self.tls_cert.is_some() {
            c.tls_cert = self.tls_cert;
        }
        if self.tls_key.is_some() {
            c.tls_key = self.tls_key;
        }
        if !self.public_addresses.is_empty() {
            c.public_addresses = self.public_addresses;
        }
        if !self.rtn_upstreams.is_empty() {
            c.rtn_upstreams = self.rtn_upstreams;
        }
        c.dev |= self.dev;
        if let Some(v) = self.log_format {
            c.log_format = v;
        }
        c.validate()?;
        Ok(c)
    }
}

pub fn run(args: ControlArgs) -> ExitCode {
    let cfg = match args.merge() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cloudproxy control: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    init_logs(cfg.log_format == "json");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cloudproxy control: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let dev = cfg.dev;
        let data_dir = cfg.data_dir.clone();
        let cp = match ControlPlane::start(cfg).await {
            Ok(cp) => cp,
            Err(e @ control_plane::StartError::Bind(..)) => {
                eprintln!("cloudproxy control: {e}");
                return ExitCode::from(EX_UNAVAILABLE);
            }
            Err(e @ control_plane::StartError::Config(_)) => {
                eprintln!("cloudproxy control: {e}");
                return ExitCode::from(EX_USAGE);
            }
            Err(e) => {
                eprintln!("cloudproxy control: {e}");
                return ExitCode::FAILURE;
            }
        };
        if dev {
            println!(
                "cloudproxy control (dev mode) on https://{}\n  admin token  {}\n  edge token   {}\n  CA file      {}",
                cp.local_addr(),
                cp.admin_token(),
                cp.edge_token(),
                data_dir.join("tls/cert.pem").display()
            );
        }
        wait_for_signal().await;
        tracing::info!("signal received: stopping");
        cp.shutdown().await;
        ExitCode::SUCCESS
    })
}
