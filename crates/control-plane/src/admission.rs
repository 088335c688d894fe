//! The decisions behind `POST /v1/proxy` that need no I/O: where the client is, which edges
//! it gets and in what order, and what each offer looks like.

use std::net::IpAddr;

use control_api::{
    App, EdgeHeartbeat, EdgeInfo, EdgeOffer, IceServer, TransportMode, TurnCredential,
};

use crate::config::GeoRule;

/// Region and ISP of a client address: the first matching rule, or the default region.
pub fn locate(geo: &[GeoRule], default_region: &str, ip: IpAddr) -> (String, String) {
    geo.iter()
        .find(|r| r.cidr.contains(&ip))
        .map(|r| (r.region.clone(), r.isp.clone()))
        .unwrap_or_else(|| (default_region.to_owned(), String::new()))
}

/// Whether the App ID may be served in `area`. An empty list allows every area.
pub fn area_allowed(app: &App, area: &str) -> bool {
    app.areas.is_empty()
        || app
            .areas
            .iter()
            .any(|a| a.eq_ignore_ascii_case(area) || a == "*")
}

/// Whether an edge can carry `mode`.
fn serves(edge: &EdgeHeartbeat, mode: TransportMode) -> bool {
    match mode {
        TransportMode::Udp | TransportMode::Tcp => true,
        TransportMode::Tls => edge.tls_port.is_some(),
    }
}

/// Live edges of the App ID's pool that serve `mode`, best first: same region, then same
/// ISP, then least loaded (allocations), then id for a stable order. Draining edges, edges an
/// operator asked to drain and edges whose lease has run out are never offered.
pub fn rank_edges(
    app: &App,
    edges: &[EdgeInfo],
    mode: TransportMode,
    region: &str,
    isp: &str,
    now: u64,
    max: usize,
) -> Vec<EdgeHeartbeat> {
    let mut live: Vec<&EdgeInfo> = edges
        .iter()
        .filter(|e| e.lease_expires > now && !e.drain_requested && !e.heartbeat.draining)
        .filter(|e| e.heartbeat.pool == app.pool && serves(&e.heartbeat, mode))
        .collect();
    live.sort_by(|a, b| {
        let key = |e: &EdgeInfo| {
            (
                !e.heartbeat.region.eq_ignore_ascii_case(region),
                isp.is_empty() || !e.heartbeat.isp.eq_ignore_ascii_case(isp),
                e.heartbeat.load.allocations,
                e.heartbeat.id.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    live.into_iter()
        .take(max)
        .map(|e| e.heartbeat.clone())
        .collect()
}

/// Brackets an IPv6 literal for use in a URL.
fn host(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{address}]"),
        _ => address.to_owned(),
    }
}

/// The offer for one edge: its addresses, and ICE servers for the mode with `cred`.
pub fn offer(edge: &EdgeHeartbeat, mode: TransportMode, cred: &TurnCredential) -> EdgeOffer {
    let h = host(&edge.address);
    let url = match mode {
        TransportMode::Udp => format!("turn:{h}:{}?transport=udp", edge.udp_ports.first),
        TransportMode::Tcp => format!("turn:{h}:{}?transport=tcp", edge.tcp_ports.first),
        TransportMode::Tls => format!("turns:{h}:{}?transport=tcp", edge.tls_port.unwrap_or(443)),
    };
    EdgeOffer {
        id: edge.id.clone(),
        region: edge.region.clone(),
        isp: edge.isp.clone(),
        address: edge.address.clone(),
        udp_ports: edge.udp_ports,
        tcp_ports: edge.tcp_ports,
        tls_port: edge.tls_port,
        signal_port: edge.signal_port,
        ice_servers: vec![IceServer {
            urls: vec![url],
            username: cred.username.clone(),
            credential: cred.password.clone(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use control_api::{AppStatus, EdgeLoad, Environment, Ports};

    use super::*;

    fn app() -> App {
        App {
            app_id: "a".into(),
            name: "a".into(),
            certificate: "c".into(),
            environment: Environment::Test,
            modes: TransportMode::ALL.to_vec(),
            areas: vec![],
            isps: vec![],
            max_concurrency: 1,
            pool: "p".into(),
            status: AppStatus::Enabled,
            created_at: 0,
        }
    }

    fn edge(
        id: &str,
        region: &str,
        isp: &str,
        load: u64,
        lease: u64,
        draining: bool,
        tls: bool,
    ) -> EdgeInfo {
        EdgeInfo {
            heartbeat: EdgeHeartbeat {
                id: id.into(),
                pool: "p".into(),
                region: region.into(),
                isp: isp.into(),
                address: "192.0.2.1".into(),
                udp_ports: Ports {
                    first: 3478,
                    last: 3500,
                },
                tcp_ports: Ports {
                    first: 3433,
                    last: 3460,
                },
                tls_port: tls.then_some(443),
                signal_port: Some(4000),
                relay_ips: vec![],
                load: EdgeLoad {
                    allocations: load,
                    bandwidth_bps: 0,
                },
                draining,
                version: "t".into(),
                sessions: vec![],
            },
            last_seen: 0,
            lease_expires: lease,
            drain_requested: false,
        }
    }

    #[test]
    fn order_is_region_then_isp_then_load_and_dead_or_draining_never() {
        let edges = vec![
            edge("far-light", "EU", "x", 1, 100, false, true),
            edge("near-heavy", "CN", "y", 50, 100, false, true),
            edge("near-isp", "CN", "cmcc", 90, 100, false, true),
            edge("near-light", "CN", "y", 5, 100, false, true),
            edge("dead", "CN", "cmcc", 0, 10, false, true),
            edge("draining", "CN", "cmcc", 0, 100, true, true),
            edge("no-tls", "CN", "cmcc", 0, 100, false, false),
        ];
        let ids = |v: Vec<EdgeHeartbeat>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(
            ids(rank_edges(
                &app(),
                &edges,
                TransportMode::Tls,
                "CN",
                "cmcc",
                50,
                10
            )),
            ["near-isp", "near-light", "near-heavy", "far-light"]
        );
        assert_eq!(
            ids(rank_edges(
                &app(),
                &edges,
                TransportMode::Udp,
                "CN",
                "cmcc",
                50,
                2
            )),
            ["no-tls", "near-isp"]
        );
    }

    #[test]
    fn ice_urls_per_mode() {
        let e = edge("e", "CN", "", 0, 1, false, true).heartbeat;
        let c = TurnCredential {
            username: "u".into(),
            password: "p".into(),
            expires_at: 1,
        };
        assert_eq!(
            offer(&e, TransportMode::Udp, &c).ice_servers[0].urls,
            ["turn:192.0.2.1:3478?transport=udp"]
        );
        assert_eq!(
            offer(&e, TransportMode::Tcp, &c).ice_servers[0].urls,
            ["turn:192.0.2.1:3433?transport=tcp"]
        );
        assert_eq!(
            offer(&e, TransportMode::Tls, &c).ice_servers[0].urls,
            ["turns:192.0.2.1:443?transport=tcp"]
        );
    }
}
