//! The edge's side of the control plane: register, heartbeat every third of the lease, learn
//! the TURN-REST secrets, report the sessions that hold allocations (so their quota leases stay
//! alive), and hear when an operator asks this edge to drain.
//!
//! It runs on its own thread with its own small runtime, away from the packet path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use control_api::{EdgeHeartbeat, EdgeLoad, HeartbeatResponse, Ports};
use credentials::{Secret, SecretSet};
use tokio::sync::watch;
use tracing::{info, warn};
use turn_proto::server::{SharedQuota, Stats};

use crate::auth::Secrets;
use crate::config::EdgeConfig;

/// What the registry client shares with the rest of the edge.
pub(crate) struct Registry {
    pub(crate) registered: Arc<AtomicBool>,
    pub(crate) draining: Arc<AtomicBool>,
}

pub(crate) struct Inputs {
    pub(crate) cfg: EdgeConfig,
    pub(crate) secrets: Secrets,
    pub(crate) tickets: crate::auth::TicketKeys,
    pub(crate) quota: Arc<SharedQuota>,
    pub(crate) stats: Vec<Arc<Mutex<Stats>>>,
}

/// Starts the heartbeat thread. Returns at once; [`Registry::registered`] turns true after the
/// first accepted heartbeat.
pub(crate) fn spawn(
    inputs: Inputs,
    stop: watch::Receiver<bool>,
) -> Result<(Registry, std::thread::JoinHandle<()>), String> {
    let url = inputs.cfg.control.clone().ok_or("no control URL")?;
    let token = inputs.cfg.edge_token.clone().ok_or("no edge token")?;
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .user_agent(concat!("cloudproxy-edge/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &inputs.cfg.control_ca {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        let cert =
            reqwest::Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", ca.display()))?;
        builder = builder.add_root_certificate(cert);
    }
    let client = builder.build().map_err(|e| e.to_string())?;
    let registry = Registry {
        registered: Arc::new(AtomicBool::new(false)),
        draining: Arc::new(AtomicBool::new(false)),
    };
    let (registered, draining) = (registry.registered.clone(), registry.draining.clone());
    let endpoint = format!("{}/v1/edges/heartbeat", url.trim_end_matches('/'));
    let handle = std::thread::Builder::new()
        .name("edge-registry".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    warn!(error = %e, "registry runtime");
                    return;
                }
            };
            rt.block_on(run(
                client, endpoint, token, inputs, registered, draining, stop,
            ));
        })
        .map_err(|e| e.to_string())?;
    Ok((registry, handle))
}

fn heartbeat_body(
    cfg: &EdgeConfig,
    quota: &SharedQuota,
    bandwidth_bps: u64,
    draining: bool,
) -> EdgeHeartbeat {
    let address = cfg.effective_public_address();
    EdgeHeartbeat {
        id: cfg
            .edge_id
            .clone()
            .unwrap_or_else(|| format!("edge-{address}")),
        pool: cfg.pool.clone(),
        region: cfg.region.clone(),
        isp: cfg.isp.clone(),
        address,
        udp_ports: Ports {
            first: cfg.udp_ports.first,
            last: cfg.udp_ports.last,
        },
        tcp_ports: Ports {
            first: cfg.tcp_ports.first,
            last: cfg.tcp_ports.last,
        },
        tls_port: cfg.tls_enabled().then_some(cfg.tls_port),
        signal_port: (cfg.signal_port != 0).then_some(cfg.signal_port),
        relay_ips: cfg
            .effective_relay_ips()
            .iter()
            .map(|ip| ip.to_string())
            .collect(),
        load: EdgeLoad {
            allocations: quota.total() as u64,
            bandwidth_bps,
        },
        draining,
        version: env!("CARGO_PKG_VERSION").into(),
        sessions: quota.users(),
    }
}

fn relayed_bytes(stats: &[Arc<Mutex<Stats>>]) -> u64 {
    stats
        .iter()
        .map(|s| {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            s.to_peer_bytes + s.to_client_bytes
        })
        .sum()
}

async fn run(
    client: reqwest::Client,
    endpoint: String,
    token: String,
    inputs: Inputs,
    registered: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = (Instant::now(), relayed_bytes(&inputs.stats));
    let mut failures = 0u32;
    loop {
        let bytes = relayed_bytes(&inputs.stats);
        let secs = last.0.elapsed().as_secs_f64().max(0.001);
        let bps = ((bytes.saturating_sub(last.1)) as f64 * 8.0 / secs) as u64;
        last = (Instant::now(), bytes);
        let body = heartbeat_body(
            &inputs.cfg,
            &inputs.quota,
            bps,
            draining.load(Ordering::Relaxed),
        );
        let wait = match client
            .post(&endpoint)
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
        {
            Ok(resp) if resp.status().is_success() => {
                match resp.json::<HeartbeatResponse>().await {
                    Ok(hb) => {
                        apply("TURN secrets", &hb.turn_secrets, &inputs.secrets);
                        apply("ticket keys", &hb.ticket_keys, &inputs.tickets);
                        if hb.drain && !draining.swap(true, Ordering::Relaxed) {
                            // Not offered any more, and no new allocation from clients that
                            // still hold credentials for it; calls in progress go on.
                            inputs.quota.close();
                            info!("control plane asked this edge to drain: it is no longer offered to clients, and new allocations are refused (508)");
                        }
                        if !registered.swap(true, Ordering::Relaxed) || failures > 0 {
                            info!(endpoint = %endpoint, lease_secs = hb.lease_secs, "registered with the control plane");
                        }
                        failures = 0;
                        Duration::from_secs((hb.lease_secs / 3).max(1))
                    }
                    Err(e) => {
                        failures += 1;
                        warn!(error = %e, "control plane heartbeat answer unreadable");
                        Duration::from_secs(2)
                    }
                }
            }
            Ok(resp) => {
                failures += 1;
                warn!(
                    status = resp.status().as_u16(),
                    "control plane refused the heartbeat"
                );
                Duration::from_secs(2)
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(30) {
                    warn!(error = %e, failures, "control plane unreachable");
                }
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Installs the control plane's TURN secrets (current first) when they changed.
fn apply(what: &str, keys: &[control_api::KeyEntry], secrets: &Secrets) {
    if keys.is_empty() {
        return;
    }
    let list: Vec<Secret> = keys
        .iter()
        .map(|k| Secret::new(k.key_id.clone(), k.secret.clone().into_bytes()))
        .collect();
    let same = secrets.load().as_deref().is_some_and(|cur| {
        cur.iter()
            .map(|s| (&s.key_id, &s.secret))
            .eq(list.iter().map(|s| (&s.key_id, &s.secret)))
    });
    if same {
        return;
    }
    match SecretSet::new(list) {
        Ok(set) => {
            info!(what, current = %set.current().key_id, keys = set.iter().count(), "keys updated from the control plane");
            secrets.store(Some(Arc::new(set)));
        }
        Err(e) => warn!(what, error = %e, "control plane sent an unusable key set"),
    }
}
