//! `cloudproxy edge`: flags merged over the config file, then the edge runs until a signal.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use edge::config::{SecretSpec, UserSpec};
use edge::{Edge, EdgeConfig, PortRange, StartError};

use crate::{init_logs, wait_for_signal, EX_UNAVAILABLE, EX_USAGE};

/// Flags override the file; list flags replace the file's list when given.
#[derive(Args, Debug)]
pub struct EdgeArgs {
    /// TOML configuration file (see docs/edge.example.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address the TURN listeners bind [default: 0.0.0.0].
    #[arg(long, value_name = "IP")]
    listen: Option<IpAddr>,
    /// UDP TURN ports [default: 3478-3500].
    #[arg(long, value_name = "A-B")]
    udp_ports: Option<PortRange>,
    /// TCP TURN ports [default: 3433-3460].
    #[arg(long, value_name = "A-B")]
    tcp_ports: Option<PortRange>,
    /// Relay address, one per family (repeatable) [default: the listen address].
    #[arg(long = "relay-ip", value_name = "IP")]
    relay_ips: Vec<IpAddr>,
    /// Relay ports [default: 49152-65535].
    #[arg(long, value_name = "A-B")]
    relay_ports: Option<PortRange>,
    /// REALM [default: cloudproxy].
    #[arg(long, value_name = "R")]
    realm: Option<String>,
    /// TURN-REST secret, KEY_ID:SECRET or SECRET (repeatable; the first mints, all verify).
    #[arg(long = "auth-secret", value_name = "S", env = "CLOUDPROXY_AUTH_SECRET")]
    auth_secrets: Vec<SecretSpec>,
    /// Static user NAME:PASS, for development (repeatable).
    #[arg(long = "user", value_name = "NAME:PASS")]
    users: Vec<UserSpec>,
    /// Prefix of the media network peers may be in (repeatable). Nothing else is relayed.
    #[arg(long = "rtn-prefix", value_name = "CIDR")]
    rtn_prefixes: Vec<ipnet::IpNet>,
    /// DEVELOPMENT ONLY: allow peers on loopback (127.0.0.0/8, ::1).
    #[arg(long)]
    dangerous_allow_loopback_peers: bool,
    /// Worker threads, each with its own sockets [default: one per CPU, at most 64].
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Log format: text or json [default: text].
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Control plane URL (https://HOST:PORT): register, heartbeat, learn TURN secrets.
    #[arg(long, value_name = "URL")]
    control: Option<String>,
    /// Bearer token for the control plane's edge API.
    #[arg(long, value_name = "T", env = "CLOUDPROXY_EDGE_TOKEN")]
    edge_token: Option<String>,
    /// Extra CA (PEM) to trust for the control plane.
    #[arg(long, value_name = "FILE")]
    control_ca: Option<PathBuf>,
    /// Id in the registry [default: edge-<public address>].
    #[arg(long, value_name = "ID")]
    edge_id: Option<String>,
    /// Pool this edge serves [default: test-global].
    #[arg(long, value_name = "POOL")]
    pool: Option<String>,
    /// Region code [default: GLOBAL].
    #[arg(long, value_name = "CODE")]
    region: Option<String>,
    /// ISP name.
    #[arg(long, value_name = "ISP")]
    isp: Option<String>,
    /// Address clients reach this edge at [default: the listen or relay address].
    #[arg(long, value_name = "ADDR")]
    public_address: Option<String>,
    /// TLS port: TURN-over-TLS and WSS signalling on one port [default: 443].
    #[arg(long, value_name = "P")]
    tls_port: Option<u16>,
    /// TLS certificate chain (PEM); reloaded on SIGHUP or when the file changes.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// DEVELOPMENT ONLY: serve TLS with a self-signed certificate made at start.
    #[arg(long)]
    tls_self_signed: bool,
    /// Plain signalling port (WebSocket relay without TLS) [default: 4000]; 0 disables.
    #[arg(long, value_name = "P")]
    signal_port: Option<u16>,
    /// Signalling ticket key KEY_ID:SECRET, for an edge without a control plane (repeatable).
    #[arg(long = "ticket-key", value_name = "KEY_ID:SECRET")]
    ticket_keys: Vec<SecretSpec>,
    /// Expect a PROXY protocol v2 header on TCP ports (a load balancer is in front).
    #[arg(long)]
    proxy_protocol: bool,
    /// Serve Prometheus metrics (GET /metrics, GET /healthz) on IP:PORT, e.g. 127.0.0.1:9641:
    /// an operator's address, never a client-facing one [default: off].
    #[arg(long, value_name = "IP:PORT")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// On SIGTERM/SIGINT, drain for up to this many seconds (e.g. 30, for rolling restarts):
    /// refuse new allocations (508), tell the control plane, let calls in progress end; a
    /// second signal stops at once [default: 0, stop at once].
    #[arg(long, value_name = "SECS")]
    drain_secs: Option<u64>,
}

impl EdgeArgs {
    fn merge(self) -> Result<EdgeConfig, edge::ConfigError> {
        let mut c = match &self.config {
            Some(p) => EdgeConfig::load(p)?,
            None => EdgeConfig::default(),
        };
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.udp_ports {
            c.udp_ports = v;
        }
        if let Some(v) = self.tcp_ports {
            c.tcp_ports = v;
        }
        if !self.relay_ips.is_empty() {
            c.relay_ips = self.relay_ips;
        }
        if let Some(v) = self.relay_ports {
            c.relay_ports = v;
        }
        if let Some(v) = self.realm {
            c.realm = v;
        }
        if !self.auth_secrets.is_empty() {
            c.auth_secrets = self.auth_secrets;
        }
        if !self.users.is_empty() {
            c.users = self.users;
        }
        if !self.rtn_prefixes.is_empty() {
            c.rtn_prefixes = self.rtn_prefixes;
        }
        c.dangerous_allow_loopback_peers |= self.dangerous_allow_loopback_peers;
        if let Some(v) = self.shards {
            c.shards = v;
        }
        if let Some(v) = self.log_format {
            c.log_format = v;
        }
        if self.control.is_some() {
            c.control = self.control;
        }
        if self.edge_token.is_some() {
            c.edge_token = self.edge_token;
        }
        if self.control_ca.is_some() {
            c.control_ca = self.control_ca;
        }
        if self.edge_id.is_some() {
            c.edge_id = self.edge_id;
        }
        if let Some(v) = self.pool {
            c.pool = v;
        }
        if let Some(v) = self.region {
            c.region = v;
        }
        if let Some(v) = self.isp {
            c.isp = v;
        }
        if self.public_address.is_some() {
            c.public_address = self.public_address;
        }
        if let Some(v) = self.tls_port {
            c.tls_port = v;
        }
        if self.tls_cert.is_some() {
            c.tls_cert = self.tls_cert;
            c.tls_key = self.tls_key;
        }
        c.tls_self_signed |= self.tls_self_signed;
        if let Some(v) = self.signal_port {
            c.signal_port = v;
        }
        if !self.ticket_keys.is_empty() {
            c.ticket_keys = self.ticket_keys;
        }
        c.proxy_protocol |= self.proxy_protocol;
        if self.metrics_listen.is_some() {
            c.metrics_listen = self.metrics_listen;
        }
        if let Some(v) = self.drain_secs {
            c.drain_secs = v;
        }
        c.validate()?;
        Ok(c)
    }
}

pub fn run(args: EdgeArgs) -> ExitCode {
    let cfg = match args.merge() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cloudproxy edge: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    init_logs(cfg.log_format == "json");
    serve(cfg)
}

/// Starts the edge and blocks until SIGINT/SIGTERM; then drains (see `drain_secs`).
pub fn serve(cfg: EdgeConfig) -> ExitCode {
    let drain = Duration::from_secs(cfg.drain_secs);
    let edge = match Edge::start(cfg) {
        Ok(e) => e,
        Err(e @ StartError::Bind { .. }) => {
            eprintln!("cloudproxy edge: {e}");
            return ExitCode::from(EX_UNAVAILABLE);
        }
        Err(e @ StartError::Config(_)) => {
            eprintln!("cloudproxy edge: {e}");
            return ExitCode::from(EX_USAGE);
        }
        Err(e) => {
            eprintln!("cloudproxy edge: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        wait_for_signal().await;
        let held = edge.allocations();
        if drain.is_zero() || held == 0 {
            tracing::info!(allocations = held, "signal received: stopping");
            return;
        }
        edge.drain();
        tracing::info!(
            allocations = held,
            drain_secs = drain.as_secs(),
            "signal received: draining (new allocations refused; a second signal stops at once)"
        );
        let deadline = tokio::time::Instant::now() + drain;
        let second = wait_for_signal();
        tokio::pin!(second);
        loop {
            tokio::select! {
                _ = &mut second => {
                    tracing::info!(allocations = edge.allocations(), "second signal: stopping now");
                    return;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::info!(allocations = edge.allocations(), "drain time over: stopping");
                    return;
                }
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if edge.allocations() == 0 {
                        tracing::info!("drained: every allocation has ended; stopping");
                        return;
                    }
                }
            }
        }
    });
    edge.shutdown();
    ExitCode::SUCCESS
}
