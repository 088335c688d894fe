//! What enterprise IT runs inside its network (`cloudproxy doctor`): is every port that the
//! whitelist opens for the cloud proxy really open, and does the service behind it answer?
//!
//! For each mode asked for, the doctor does what a join in that mode would do, one step at a
//! time, and reports each step instead of stopping at the first that fails:
//!
//! 1. proxy info from the control plane (`POST /v1/proxy` over HTTPS), with the App ID and
//!    a join token. A mode the App ID does not enable is skipped, not failed.
//! 2. on every offered edge, a STUN Binding on **each** TURN port of the mode (UDP or TCP
//!    over the whole range, at most [`MAX_PORTS`]; TLS with ALPN `stun.turn` on the TLS
//!    port), [`PARALLEL_PROBES`] at a time, each within the SDK's deadline for that transport;
//! 3. a TURN allocation with the minted credentials on the first port that answered, released
//!    at once (a Refresh with lifetime 0 is sent; its answer is not awaited);
//! 4. the WebSocket upgrade of the edge's signalling relay towards the media network's
//!    gateway (`ws` on the plain signalling port in modes 3 and 4, `wss` on the TLS port in
//!    mode 5), closed at once.
//!
//! The proxy session is released at the end of each mode. Every step is bounded in time, so
//! a firewall that drops packets costs seconds, not a hang.

use std::sync::Arc;
use std::time::{Duration, Instant};

use control_api::{EdgeOffer, ProxyRequest, ProxyResponse, TransportMode};
use futures_util::StreamExt;

use crate::control::ControlClient;
use crate::media::path::{TurnPath, TurnTarget};
use crate::media::signal::{self, host_port};
use crate::probe::{probe_port, ProbeOk};
use crate::{tls, ClientConfig, JoinError, SdkError};

/// TURN ports checked per edge and mode at most (a range is 23 to 28 ports by default; a
/// misconfigured one could be thousands).
pub const MAX_PORTS: usize = 64;
/// STUN probes in flight at once per edge (well under the edge's default limit of 64
/// connections per client address).
pub const PARALLEL_PROBES: usize = 16;
/// Deadline of the TURN allocation check.
pub const ALLOCATE_DEADLINE: Duration = Duration::from_secs(5);
/// Deadline of the signalling relay check.
pub const SIGNAL_DEADLINE: Duration = Duration::from_secs(5);

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It worked.
    Pass,
    /// It did not: blocked, refused, timed out, or the service said no (the detail says which).
    Fail,
    /// Not tried: the App ID does not enable the mode, or a step it needs failed.
    Skip,
}

impl Verdict {
    /// `PASS`, `FAIL` or `SKIP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        }
    }
}

/// What one check tried and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The mode the check belongs to.
    pub mode: TransportMode,
    /// `proxy-info`, `stun`, `turn-allocate` or `signalling`.
    pub step: &'static str,
    /// On the wire: `https`, `udp`, `tcp`, `tls`, `ws` or `wss`.
    pub proto: &'static str,
    /// The edge's id; `None` for the control plane.
    pub edge: Option<String>,
    /// `host:port` tried (what a firewall rule names).
    pub target: String,
    /// Pass, fail or skip.
    pub verdict: Verdict,
    /// What was found, or why it failed.
    pub detail: String,
    /// How long it took.
    pub elapsed: Duration,
}

/// What the doctor checks with.
#[derive(Debug, Clone)]
pub struct DoctorConfig {
    /// Control plane URL, extra CA, area and ISP hints, request timeout.
    pub client: ClientConfig,
    /// App ID.
    pub app_id: String,
    /// Channel and uid the join token was made for.
    pub channel: String,
    /// See `channel`.
    pub uid: String,
    /// Join token.
    pub token: String,
    /// Modes to check, in order.
    pub modes: Vec<TransportMode>,
}

/// Runs every check; an error only for a configuration that cannot be used (a control URL
/// that is not `https://`, a CA file without a certificate).
pub async fn run(cfg: &DoctorConfig) -> Result<Vec<Check>, SdkError> {
    let extra = match &cfg.client.ca_pem {
        Some(pem) => tls::parse_pem_bundle(pem)?,
        None => Vec::new(),
    };
    let control = ControlClient::new(&cfg.client, &extra)?;
    let tls = Tls {
        turn: tls::turn_tls_config(extra.clone())?,
        ws: tls::ws_tls_config(extra)?,
    };
    let mut out = Vec::new();
    for &mode in &cfg.modes {
        let req = ProxyRequest {
            app_id: cfg.app_id.clone(),
            channel: cfg.channel.clone(),
            uid: cfg.uid.clone(),
            mode,
            area: cfg.client.area.clone(),
            isp: cfg.client.isp.clone(),
            token: cfg.token.clone(),
        };
        let started = Instant::now();
        let answer = control.request_proxy(&req).await;
        let mut check = Check {
            mode,
            step: "proxy-info",
            proto: "https",
            edge: None,
            target: control.shown(),
            verdict: Verdict::Pass,
            detail: String::new(),
            elapsed: started.elapsed(),
        };
        let resp = match answer {
            Ok(resp) => resp,
            Err(e) => {
                check.verdict = match e {
                    JoinError::ModeNotEnabled(_) => Verdict::Skip,
                    _ => Verdict::Fail,
                };
                check.detail = format!("{}: {e}", e.code());
                out.push(check);
                continue;
            }
        };
        let ids: Vec<&str> = resp.edges.iter().map(|e| e.id.as_str()).collect();
        check.detail = format!("{} edge(s) offered: {}", ids.len(), ids.join(", "));
        if resp.edges.is_empty() {
            check.verdict = Verdict::Fail;
        }
        out.push(check);
        for edge in &resp.edges {
            out.extend(check_edge(edge, mode, &resp, &tls).await);
        }
        control.release(&resp.session).await;
    }
    Ok(out)
}

/// The TLS settings: ALPN `stun.turn` for TURN, `http/1.1` for WSS.
struct Tls {
    turn: Arc<rustls::ClientConfig>,
    ws: Arc<rustls::ClientConfig>,
}

/// Steps 2-4 on one edge.
async fn check_edge(
    edge: &EdgeOffer,
    mode: TransportMode,
    resp: &ProxyResponse,
    tls: &Tls,
) -> Vec<Check> {
    let proto = match mode {
        TransportMode::Udp => "udp",
        TransportMode::Tcp => "tcp",
        TransportMode::Tls => "tls",
    };
    let check = |step, proto, target: String| Check {
        mode,
        step,
        proto,
        edge: Some(edge.id.clone()),
        target,
        verdict: Verdict::Pass,
        detail: String::new(),
        elapsed: Duration::ZERO,
    };
    let mut out = Vec::new();
    let ports: Vec<u16> = match mode {
        TransportMode::Udp => (edge.udp_ports.first..=edge.udp_ports.last).collect(),
        TransportMode::Tcp => (edge.tcp_ports.first..=edge.tcp_ports.last).collect(),
        TransportMode::Tls => edge.tls_port.into_iter().collect(),
    };
    if ports.is_empty() {
        let mut c = check("stun", proto, edge.address.clone());
        c.verdict = Verdict::Fail;
        c.detail = "the edge offers no port for this mode".into();
        out.push(c);
    }
    if ports.len() > MAX_PORTS {
        let mut c = check("stun", proto, edge.address.clone());
        c.verdict = Verdict::Skip;
        c.detail = format!(
            "{} ports offered: only the first {MAX_PORTS} are checked",
            ports.len()
        );
        out.push(c);
    }
    // STUN on every port, PARALLEL_PROBES at a time (in port order): each attempt is bounded
    // by its transport's deadline, and the edge's limit of connections per client address
    // (64 by default, shared with everyone behind the same NAT) is never approached.
    let probes = ports.iter().take(MAX_PORTS).map(|&port| async move {
        let started = Instant::now();
        (
            port,
            probe_port(edge, mode, port, &tls.turn).await,
            started.elapsed(),
        )
    });
    let results: Vec<_> = futures_util::stream::iter(probes)
        .buffered(PARALLEL_PROBES)
        .collect()
        .await;
    let mut first_ok: Option<ProbeOk> = None;
    for (port, result, elapsed) in results {
        let mut c = check("stun", proto, host_port(&edge.address, port));
        c.elapsed = elapsed;
        match result {
            Ok(ok) => {
                c.detail = match ok.mapped {
                    Some(m) => format!("STUN Binding answered; the edge sees this host as {m}"),
                    None => "STUN Binding answered".into(),
                };
                first_ok.get_or_insert(ok);
            }
            Err(f) => {
                c.verdict = Verdict::Fail;
                c.detail = f.why;
            }
        }
        out.push(c);
    }

    // A TURN allocation where STUN got through.
    let shown = match ports.first() {
        Some(&p) => host_port(&edge.address, p),
        None => edge.address.clone(),
    };
    let mut c = check("turn-allocate", proto, shown);
    match first_ok {
        None => {
            c.verdict = Verdict::Skip;
            c.detail = "no TURN port answered STUN".into();
        }
        Some(ok) => {
            c.target = host_port(&edge.address, ok.target.port());
            let target = TurnTarget {
                addr: ok.target,
                host: edge.address.clone(),
                transport: mode,
                username: resp.turn.username.clone(),
                password: resp.turn.password.clone(),
            };
            let started = Instant::now();
            match TurnPath::allocate(&target, &tls.turn, ALLOCATE_DEADLINE).await {
                Ok(mut path) => {
                    c.detail = format!(
                        "allocated relay {} with the minted credentials (release sent)",
                        path.relayed()
                    );
                    path.close().await;
                }
                Err(why) => {
                    c.verdict = Verdict::Fail;
                    c.detail = why;
                }
            }
            c.elapsed = started.elapsed();
        }
    }
    out.push(c);

    // The signalling relay, towards the first gateway the ticket admits.
    let started = Instant::now();
    let target = resp
        .signal_upstreams
        .first()
        .ok_or_else(|| "the proxy-info answer names no signalling gateway".to_string())
        .and_then(|up| {
            signal::via_edge(
                &edge.address,
                edge.signal_port,
                edge.tls_port,
                mode,
                up,
                Some(&resp.ticket),
                "/signal",
            )
        });
    let c = match target {
        Err(why) => {
            let mut c = check("signalling", "ws", edge.address.clone());
            c.verdict = Verdict::Fail;
            c.detail = why;
            c
        }
        Ok(t) => {
            let ws_proto = if t.tls { "wss" } else { "ws" };
            let mut c = check("signalling", ws_proto, host_port(&t.host, t.port));
            match signal::open(&t, &tls.ws, SIGNAL_DEADLINE).await {
                Ok(_) => {
                    c.detail = format!(
                        "WebSocket through the edge's relay to the gateway {} (closed)",
                        resp.signal_upstreams
                            .first()
                            .map(String::as_str)
                            .unwrap_or("?")
                    )
                }
                Err(why) => {
                    c.verdict = Verdict::Fail;
                    c.detail = why;
                }
            }
            c.elapsed = started.elapsed();
            c
        }
    };
    out.push(c);
    out
}

/// Counts of passed, failed and skipped checks.
pub fn tally(checks: &[Check]) -> (usize, usize, usize) {
    let n = |v| checks.iter().filter(|c| c.verdict == v).count();
    (n(Verdict::Pass), n(Verdict::Fail), n(Verdict::Skip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(verdict: Verdict) -> Check {
        Check {
            mode: TransportMode::Udp,
            step: "stun",
            proto: "udp",
            edge: None,
            target: "x:1".into(),
            verdict,
            detail: String::new(),
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn tally_counts_each_verdict() {
        let v = [
            c(Verdict::Pass),
            c(Verdict::Fail),
            c(Verdict::Pass),
            c(Verdict::Skip),
        ];
        assert_eq!(tally(&v), (2, 1, 1));
        assert_eq!(Verdict::Fail.as_str(), "FAIL");
    }
}
