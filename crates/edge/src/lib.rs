//! `cloudproxy edge`: the data plane. TURN over UDP and TCP (RFC 8656, RFC 6062), driven by
//! the sans-IO [`turn_proto::server::Server`], one per shard thread.
//!
//! [`Edge::start`] binds every socket before it returns, so a caller (the binary, or a test)
//! learns about a port in use at once, and can connect as soon as it has the handle.
#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod front;
mod metrics;
pub mod proxy_protocol;
mod registry;
mod shard;
pub mod signal;
mod sockets;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::watch;
use tracing::{info, warn};
use turn_proto::codec::Family;
use turn_proto::policy::{PeerPolicy, PeerPolicyConfig};
use turn_proto::server::{Server, ServerConfig, SharedQuota, Stats};

pub use config::{ConfigError, EdgeConfig, PortRange};
use shard::{RelayPlan, Shard};

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A socket could not be bound (port in use, address not local, ...).
    #[error("cannot bind {what} {addr}: {source}")]
    Bind {
        /// What was being bound.
        what: &'static str,
        /// Where.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// Anything else at start-up.
    #[error("{0}")]
    Other(String),
}

/// A running edge. Dropping it (or [`Edge::shutdown`]) stops every shard.
pub struct Edge {
    shutdown: watch::Sender<bool>,
    registry: Option<registry::Registry>,
    threads: Vec<JoinHandle<()>>,
    stats: Vec<Arc<Mutex<Stats>>>,
    quota: Arc<SharedQuota>,
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
    metrics: Option<SocketAddr>,
}

impl Edge {
    /// Validates `cfg`, binds every listener on every shard and starts serving.
    pub fn start(cfg: EdgeConfig) -> Result<Self, StartError> {
        cfg.validate()?;
        let relay_ips = cfg.effective_relay_ips();
        let plan = RelayPlan {
            v4: relay_ips.iter().copied().find(IpAddr::is_ipv4),
            v6: relay_ips.iter().copied().find(IpAddr::is_ipv6),
            ports: cfg.relay_ports,
        };
        let udp: Vec<SocketAddr> = cfg
            .udp_ports
            .iter()
            .map(|p| SocketAddr::new(cfg.listen, p))
            .collect();
        let tcp: Vec<SocketAddr> = cfg
            .tcp_ports
            .iter()
            .map(|p| SocketAddr::new(cfg.listen, p))
            .collect();
        let policy = build_policy(&cfg, &relay_ips, &udp, &tcp);
        if cfg.rtn_prefixes.is_empty() && !cfg.dangerous_allow_loopback_peers {
            warn!("no rtn_prefixes configured: every peer will be refused (403)");
        } else if cfg.rtn_prefixes.is_empty() {
            warn!("no rtn_prefixes configured: only loopback peers (dangerous dev setting) will be relayed");
        }
        if cfg.dangerous_allow_loopback_peers {
            warn!("dangerous_allow_loopback_peers is ON: loopback peers are allowed. Never on a real edge.");
        }
        let quota = SharedQuota::new(cfg.max_allocations);
        let secrets = auth::configured_secrets(&cfg).map_err(StartError::Other)?;
        let tickets = auth::key_set(&cfg.ticket_keys).map_err(StartError::Other)?;
        let nonce_key = nonce_key(&cfg);
        let (shutdown, _) = watch::channel(false);
        let tls = if let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) {
            Some(
                front::TlsSettings::from_files(cert, key)
                    .map_err(|e| StartError::Config(ConfigError::Invalid(e)))?,
            )
        } else if cfg.tls_self_signed {
            let mut names = vec!["localhost".to_owned(), cfg.effective_public_address()];
            names.extend(relay_ips.iter().map(|ip| ip.to_string()));
            names.retain(|n| !n.is_empty());
            Some(front::TlsSettings::self_signed(names).map_err(StartError::Other)?)
        } else {
            None
        };
        let tls_addr = tls
            .as_ref()
            .map(|_| SocketAddr::new(cfg.listen, cfg.tls_port));
        let signal_addr =
            (cfg.signal_port != 0).then(|| SocketAddr::new(cfg.listen, cfg.signal_port));
        // Each shard's queue of client connections moved to it (see shard::Handoff).
        let (handoff_tx, handoff_rx): (Vec<_>, Vec<_>) = (0..cfg.shards)
            .map(|_| tokio::sync::mpsc::unbounded_channel())
            .unzip();
        let mut handoff_rx = handoff_rx.into_iter();
        let front = shard::Front {
            handoff: Arc::new(handoff_tx),
            held: Arc::default(),
            limits: front::ConnLimits::new(cfg.max_connections_per_ip, cfg.max_tcp_connections),
            tls: tls.clone(),
            router: signal_router(&cfg, &policy, &tickets).map_err(StartError::Other)?,
            proxy_protocol: cfg.proxy_protocol,
            handshake_timeout: std::time::Duration::from_secs(cfg.handshake_timeout_secs),
            idle_timeout: std::time::Duration::from_secs(cfg.idle_timeout_secs),
        };
        let mut threads = Vec::new();
        let mut stats = Vec::new();
        // Nobody else may hold our ports (see sockets::ensure_unclaimed).
        let claims = udp
            .iter()
            .map(|a| (*a, false, "UDP listener"))
            .chain(tcp.iter().map(|a| (*a, true, "TCP listener")))
            .chain(tls_addr.map(|a| (a, true, "TLS listener")))
            .chain(signal_addr.map(|a| (a, true, "signalling listener")));
        for (addr, is_tcp, what) in claims {
            sockets::ensure_unclaimed(addr, is_tcp).map_err(|source| StartError::Bind {
                what,
                addr,
                source: if source.kind() == std::io::ErrorKind::AddrInUse {
                    std::io::Error::new(
                        source.kind(),
                        "already in use by another process (is another edge running on these ports?)",
                    )
                } else {
                    source
                },
            })?;
        }
        for shard_no in 0..cfg.shards {
            let server_cfg = ServerConfig {
                realm: cfg.realm.clone(),
                nonce_key: nonce_key.clone(),
                relay_families: [plan.v4.map(|_| Family::V4), plan.v6.map(|_| Family::V6)]
                    .into_iter()
                    .flatten()
                    .collect(),
                max_allocations_per_user: cfg.max_allocations_per_user,
                max_permissions_per_allocation: cfg.max_permissions_per_allocation,
                max_channels_per_allocation: cfg.max_channels_per_allocation,
                shard: shard_no as u8,
                ..ServerConfig::default()
            };
            let auth = auth::EdgeAuth::new(&cfg, secrets.clone()).map_err(StartError::Other)?;
            let (now, unix) = shard::wall_clock();
            let server = Server::new(
                server_cfg,
                Box::new(auth),
                policy.clone(),
                quota.clone(),
                now,
                unix,
            );
            let mut udp_socks = Vec::new();
            for a in &udp {
                udp_socks.push(
                    sockets::udp_listener(*a).map_err(|source| StartError::Bind {
                        what: "UDP listener",
                        addr: *a,
                        source,
                    })?,
                );
            }
            let mut tcp_socks = shard::TcpListeners {
                turn: Vec::new(),
                tls: None,
                signal: None,
            };
            for a in &tcp {
                tcp_socks
                    .turn
                    .push(
                        sockets::tcp_listener(*a, 1024).map_err(|source| StartError::Bind {
                            what: "TCP listener",
                            addr: *a,
                            source,
                        })?,
                    );
            }
            if let Some(a) = tls_addr {
                tcp_socks.tls =
                    Some(
                        sockets::tcp_listener(a, 1024).map_err(|source| StartError::Bind {
                            what: "TLS listener",
                            addr: a,
                            source,
                        })?,
                    );
            }
            if let Some(a) = signal_addr {
                tcp_socks.signal =
                    Some(
                        sockets::tcp_listener(a, 1024).map_err(|source| StartError::Bind {
                            what: "signalling listener",
                            addr: a,
                            source,
                        })?,
                    );
            }
            let front = front.clone();
            let handoffs = handoff_rx
                .next()
                .ok_or_else(|| StartError::Other("no handoff queue for a shard".into()))?;
            let shard_stats = Arc::new(Mutex::new(Stats::default()));
            stats.push(shard_stats.clone());
            let plan = plan.clone();
            let mut stop = shutdown.subscribe();
            let (ready_tx, ready_rx) = std_mpsc::channel::<Result<(), String>>();
            let t = std::thread::Builder::new()
                .name(format!("edge-shard-{shard_no}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let local = tokio::task::LocalSet::new();
                    local.block_on(&rt, async move {
                        let shard = match Shard::new(shard_no as u8, server, udp_socks, plan, front)
                        {
                            Ok(s) => s,
                            Err(e) => {
                                let _ = ready_tx.send(Err(e.to_string()));
                                return;
                            }
                        };
                        if let Err(e) = shard.start(tcp_socks, handoffs) {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                        let _ = ready_tx.send(Ok(()));
                        let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
                        loop {
                            tokio::select! {
                                _ = stop.changed() => break,
                                _ = tick.tick() => {
                                    let snap = shard.stats();
                                    *shard_stats.lock().unwrap_or_else(|e| e.into_inner()) = snap;
                                }
                            }
                        }
                    });
                })
                .map_err(|e| StartError::Other(e.to_string()))?;
            ready_rx
                .recv()
                .map_err(|_| StartError::Other("shard thread died at start".into()))?
                .map_err(StartError::Other)?;
            threads.push(t);
        }
        if let Some(tls) = tls.clone() {
            let stop = shutdown.subscribe();
            threads.push(
                std::thread::Builder::new()
                    .name("edge-tls-reload".into())
                    .spawn(move || {
                        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        {
                            rt.block_on(front::watch_reload(tls, stop));
                        }
                    })
                    .map_err(|e| StartError::Other(e.to_string()))?,
            );
        }
        let mut registry = None;
        if cfg.control.is_some() {
            let (r, t) = registry::spawn(
                registry::Inputs {
                    cfg: cfg.clone(),
                    secrets: secrets.clone(),
                    tickets: tickets.clone(),
                    quota: quota.clone(),
                    stats: stats.clone(),
                },
                shutdown.subscribe(),
            )
            .map_err(StartError::Other)?;
            registry = Some(r);
            threads.push(t);
        }
        let metrics = match cfg.metrics_listen {
            None => None,
            Some(addr) => {
                let (listener, local) = metrics::bind(addr).map_err(|source| StartError::Bind {
                    what: "metrics listener",
                    addr,
                    source,
                })?;
                let (stats, quota) = (stats.clone(), quota.clone());
                let registered = registry.as_ref().map(|r| r.registered.clone());
                let shards = stats.len();
                let sample = move || metrics::Sample {
                    stats: sum_stats(&stats),
                    shards,
                    allocations: quota.total(),
                    registered: registered
                        .as_ref()
                        .is_some_and(|r| r.load(Ordering::Relaxed)),
                    draining: quota.is_closed(),
                };
                threads.push(
                    metrics::spawn(listener, sample, shutdown.subscribe())
                        .map_err(|e| StartError::Other(format!("metrics thread: {e}")))?,
                );
                info!(%local, "edge metrics at http://{local}/metrics");
                Some(local)
            }
        };
        info!(
            udp = %cfg.udp_ports, tcp = %cfg.tcp_ports, listen = %cfg.listen, relay = ?relay_ips,
            relay_ports = %cfg.relay_ports, shards = cfg.shards, realm = %cfg.realm,
            "edge serving TURN"
        );
        Ok(Self {
            shutdown,
            registry,
            threads,
            stats,
            quota,
            udp,
            tcp,
            metrics,
        })
    }

    /// Where the Prometheus endpoint listens (`metrics_listen`, its port resolved).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// UDP listener addresses.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp
    }

    /// TCP listener addresses.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp
    }

    /// Counters summed over shards (refreshed twice a second).
    pub fn stats(&self) -> Stats {
        sum_stats(&self.stats)
    }

    /// Whether the control plane has accepted a heartbeat (always false without one).
    pub fn registered(&self) -> bool {
        self.registry
            .as_ref()
            .is_some_and(|r| r.registered.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether this edge is draining: an operator asked (through the control plane) or
    /// [`Self::drain`] was called. Both close the shared quota, so it is the one record.
    pub fn draining(&self) -> bool {
        self.quota.is_closed()
    }

    /// Starts a graceful stop: no new allocation on any shard (508 "edge draining"), and the
    /// heartbeats say draining, so the control plane stops offering this edge. Allocations
    /// already made keep refreshing and relaying; [`Self::allocations`] says when they are
    /// gone.
    pub fn drain(&self) {
        self.quota.close();
        if let Some(r) = &self.registry {
            r.draining.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Allocations alive on the edge now.
    pub fn allocations(&self) -> usize {
        self.quota.total()
    }

    /// Stops every shard and waits for the threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The shards' counters (each published twice a second), summed.
fn sum_stats(shards: &[Arc<Mutex<Stats>>]) -> Stats {
    let mut total = Stats::default();
    for s in shards {
        let s = s.lock().unwrap_or_else(|e| e.into_inner()).clone();
        total.allocations_created += s.allocations_created;
        total.allocations_removed += s.allocations_removed;
        total.allocations_active += s.allocations_active;
        total.requests_refused += s.requests_refused;
        total.challenges += s.challenges;
        total.auth_failures += s.auth_failures;
        total.policy_denied += s.policy_denied;
        total.malformed += s.malformed;
        total.to_peer_packets += s.to_peer_packets;
        total.to_peer_bytes += s.to_peer_bytes;
        total.to_client_packets += s.to_client_packets;
        total.to_client_bytes += s.to_client_bytes;
        total.dropped_no_route += s.dropped_no_route;
    }
    total
}

/// The signalling service, when this edge can admit relays (it has ticket keys, or a control
/// plane that will send them).
fn signal_router(
    cfg: &EdgeConfig,
    policy: &PeerPolicy,
    tickets: &auth::TicketKeys,
) -> Result<Option<axum::Router>, String> {
    let control = match &cfg.control {
        Some(url) => {
            let mut b = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10));
            if let Some(ca) = &cfg.control_ca {
                let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
                b = b.add_root_certificate(
                    reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string())?,
                );
            }
            Some((
                url.trim_end_matches('/').to_owned(),
                b.build().map_err(|e| e.to_string())?,
            ))
        }
        None => None,
    };
    let state = signal::SignalState {
        tickets: tickets.clone(),
        policy: policy.clone(),
        control,
        connect_timeout: std::time::Duration::from_secs(5),
        idle_timeout: std::time::Duration::from_secs(cfg.idle_timeout_secs),
        max_frame_bytes: 1 << 20,
        now_unix: signal_now,
    };
    Ok(Some(signal::router(Arc::new(state))))
}

fn signal_now() -> u64 {
    shard::wall_clock().1
}

fn build_policy(
    cfg: &EdgeConfig,
    relay_ips: &[IpAddr],
    udp: &[SocketAddr],
    tcp: &[SocketAddr],
) -> PeerPolicy {
    let mut own_ips: Vec<IpAddr> = relay_ips.to_vec();
    if !cfg.listen.is_unspecified() {
        own_ips.push(cfg.listen);
    }
    // Every port of the edge's own specific addresses is denied through `own_ips`. The ranges
    // below matter for loopback in development mode (where loopback peers are allowed): a
    // wildcard listener is reachable on 127.0.0.1 and ::1, so its ports are denied there —
    // never as a wildcard range, which would deny those ports on every remote peer too.
    let range_ips: Vec<IpAddr> = if cfg.listen.is_unspecified() {
        vec![
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ]
    } else {
        vec![cfg.listen]
    };
    let mut own_port_ranges = Vec::new();
    for ip in &range_ips {
        own_port_ranges.push((*ip, cfg.udp_ports.first, cfg.udp_ports.last));
        own_port_ranges.push((*ip, cfg.tcp_ports.first, cfg.tcp_ports.last));
        own_port_ranges.push((*ip, cfg.tls_port, cfg.tls_port));
        if cfg.signal_port != 0 {
            own_port_ranges.push((*ip, cfg.signal_port, cfg.signal_port));
        }
    }
    for ip in relay_ips {
        own_port_ranges.push((*ip, cfg.relay_ports.first, cfg.relay_ports.last));
    }
    PeerPolicy::new(PeerPolicyConfig {
        rtn_prefixes: cfg.rtn_prefixes.clone(),
        own_addresses: udp.iter().chain(tcp).copied().collect(),
        own_ips,
        own_port_ranges,
        dangerous_allow_loopback_peers: cfg.dangerous_allow_loopback_peers,
    })
}

fn nonce_key(cfg: &EdgeConfig) -> Vec<u8> {
    use hmac_sha256_kdf as kdf;
    if let Some(s) = &cfg.nonce_secret {
        return s.as_bytes().to_vec();
    }
    match cfg.auth_secrets.first() {
        Some(s) => kdf(s.secret.as_bytes()),
        None => {
            let mut k = vec![0u8; 32];
            rand::Rng::fill(&mut rand::rng(), &mut k[..]);
            k
        }
    }
}

/// Derives the nonce key from the first REST secret, so every edge sharing that secret accepts
/// the others' nonces without another setting; the derivation keeps the two uses apart.
fn hmac_sha256_kdf(secret: &[u8]) -> Vec<u8> {
    let mut k = b"cloudproxy nonce key v1:".to_vec();
    k.extend_from_slice(secret);
    k
}
