//! [`Client`]: the proxy calls, join and leave, and the event stream.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};

use control_api::{EdgeOffer, IceServer, ProxyRequest, TransportMode, TurnCredential};
use tokio::sync::{broadcast, Notify};
use tracing::{info, warn};

use crate::control::ControlClient;
use crate::media::path::TurnPath;
use crate::media::path::TurnTarget;
use crate::media::{self, signal, MediaHandle, MediaPath, MediaStats, Publish, SessionSetup};
use crate::probe::probe;
use crate::rules::{ConnectionState, LeaveAction, ProxySetting, Rules};
use crate::{tls, ClientConfig, JoinError, ProxyServer, SdkError, TurnServer};

/// What `join` returns when a leave cancelled it.
pub const JOIN_CANCELLED: &str = "join cancelled by leave";

/// Events a [`Client`] sends to every receiver from [`Client::events`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The connection state changed.
    ConnectionState(ConnectionState),
    /// Whether traffic flows through the cloud proxy, and over which transport. Sent after
    /// every successful join (`using: true` once an edge answered on the mode's transport;
    /// `using: false` for a direct or self-deployed route) and on leaving a cloud-proxy
    /// session.
    IsUsingCloudProxy {
        /// Through the cloud proxy.
        using: bool,
        /// The transport to the edge, when through the cloud proxy.
        transport: Option<TransportMode>,
    },
    /// Another member joined the channel.
    MemberJoined {
        /// Its uid.
        uid: String,
    },
    /// Another member left the channel.
    MemberLeft {
        /// Its uid.
        uid: String,
    },
    /// Media is flowing: ICE and DTLS are up with the media network (through the proxy when
    /// the join used it).
    MediaConnected,
    /// The media session ended on its own (signalling closed, the relay was lost); `leave`
    /// to clean up and join again.
    MediaEnded {
        /// Why.
        why: String,
    },
}

/// A channel the client joined, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinInfo {
    /// App ID.
    pub app_id: String,
    /// Channel.
    pub channel: String,
    /// User id.
    pub uid: String,
    /// How the client reaches the media network.
    pub route: Route,
}

impl JoinInfo {
    /// The ICE servers media must use (empty for a direct route).
    pub fn ice_servers(&self) -> &[IceServer] {
        match &self.route {
            Route::Direct => &[],
            Route::CloudProxy(s) => &s.ice_servers,
            Route::SelfHosted { ice_servers, .. } => ice_servers,
        }
    }

    /// Whether the route is the cloud proxy.
    pub fn using_cloud_proxy(&self) -> bool {
        matches!(self.route, Route::CloudProxy(_))
    }
}

/// How a joined client reaches the media network.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)] // one per join: boxing would only make matching clumsier
pub enum Route {
    /// No proxy.
    Direct,
    /// Through the cloud proxy.
    CloudProxy(CloudProxySession),
    /// Through self-deployed servers (`set_proxy_server` / `set_turn_server`).
    SelfHosted {
        /// The signalling proxy, if set.
        proxy: Option<ProxyServer>,
        /// The TURN server, if set.
        turn: Option<TurnServer>,
        /// The TURN server as ICE server (empty without one).
        ice_servers: Vec<IceServer>,
    },
}

/// A cloud-proxy session: what the control plane answered and which edge answered the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudProxySession {
    /// Session id (released on leave).
    pub session: String,
    /// Unix time the session's lease ends unless an edge reports traffic for it.
    pub expires_at: u64,
    /// Transport.
    pub mode: TransportMode,
    /// The edge in use: the first in the answer's order that answered the probe.
    pub edge: EdgeOffer,
    /// The address that answered.
    pub edge_addr: SocketAddr,
    /// This client's address as the edge saw it, when it said.
    pub mapped: Option<SocketAddr>,
    /// Edges tried before `edge`, one line each: `"<edge id> <transport> <address>: <why>"`.
    pub tried: Vec<String>,
    /// The chosen edge's ICE servers.
    pub ice_servers: Vec<IceServer>,
    /// TURN credentials (valid on every offered edge).
    pub turn: TurnCredential,
    /// Signed ticket for the edge's signalling relay.
    pub ticket: String,
    /// Every edge the control plane offered, best first.
    pub offered: Vec<EdgeOffer>,
    /// The media network's signalling gateways the ticket admits (`host:port`).
    pub signal_upstreams: Vec<String>,
}

/// The SDK client. Every method takes `&self`; share it with `Arc` to leave from another
/// task while a join runs (the leave cancels the join).
pub struct Client {
    shared: Arc<Shared>,
}

struct Shared {
    control: ControlClient,
    tls: Arc<rustls::ClientConfig>,
    ws_tls: Arc<rustls::ClientConfig>,
    rtn_signal_url: Option<String>,
    signal_timeout: std::time::Duration,
    publish: Publish,
    area: Option<String>,
    isp: Option<String>,
    state: Mutex<State>,
    events: broadcast::Sender<Event>,
    /// Wakes a running join when a leave cancels it.
    cancel: Notify,
}

#[derive(Default)]
struct State {
    rules: Rules,
    joined: Option<JoinInfo>,
    media: Option<MediaHandle>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, e: Event) {
        // No receiver is not an error: events are optional.
        let _ = self.events.send(e);
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("Client")
            .field("state", &st.rules.state())
            .field("proxy", st.rules.setting())
            .finish()
    }
}

impl Client {
    /// A disconnected client without a proxy. Fails on a `control_url` that is not
    /// `https://...` or a `ca_pem` without a certificate.
    pub fn new(cfg: ClientConfig) -> Result<Self, SdkError> {
        let extra = match &cfg.ca_pem {
            Some(pem) => tls::parse_pem_bundle(pem)?,
            None => Vec::new(),
        };
        let control = ControlClient::new(&cfg, &extra)?;
        let tls = tls::turn_tls_config(extra.clone())?;
        let ws_tls = tls::ws_tls_config(extra)?;
        if let Some(url) = &cfg.rtn_signal_url {
            signal::direct(url).map_err(SdkError::InvalidParameter)?;
        }
        let (events, _) = broadcast::channel(64);
        Ok(Self {
            shared: Arc::new(Shared {
                control,
                tls,
                ws_tls,
                rtn_signal_url: cfg.rtn_signal_url,
                signal_timeout: cfg.signal_timeout,
                publish: cfg.publish,
                area: cfg.area,
                isp: cfg.isp,
                state: Mutex::new(State::default()),
                events,
                cancel: Notify::new(),
            }),
        })
    }

    /// Uses the cloud proxy on the next join: mode 3 (UDP, the default), 4 (TCP) or 5 (TLS
    /// 443). Modes 1 and 2 are not supported; others are invalid. Only while disconnected,
    /// and not after `set_proxy_server` / `set_turn_server`. Starting again keeps the last mode.
    pub fn start_proxy_server(&self, mode: Option<u8>) -> Result<(), SdkError> {
        self.shared.lock().rules.start_proxy_server(mode).map(drop)
    }

    /// Turns every proxy off (cloud and self-deployed). Only while disconnected.
    pub fn stop_proxy_server(&self) -> Result<(), SdkError> {
        self.shared.lock().rules.stop_proxy_server()
    }

    /// Uses a self-deployed signalling proxy. Only while disconnected, and not after
    /// `start_proxy_server`.
    pub fn set_proxy_server(&self, server: ProxyServer) -> Result<(), SdkError> {
        self.shared.lock().rules.set_proxy_server(server)
    }

    /// Uses a self-deployed TURN server as the only ICE server. Only while disconnected, and
    /// not after `start_proxy_server`.
    pub fn set_turn_server(&self, server: TurnServer) -> Result<(), SdkError> {
        self.shared.lock().rules.set_turn_server(server)
    }

    /// The proxy the next join will use.
    pub fn proxy_setting(&self) -> ProxySetting {
        self.shared.lock().rules.setting().clone()
    }

    /// The connection state.
    pub fn connection_state(&self) -> ConnectionState {
        self.shared.lock().rules.state()
    }

    /// The current join, while connected.
    pub fn join_info(&self) -> Option<JoinInfo> {
        self.shared.lock().joined.clone()
    }

    /// The media session's counters, while joined.
    pub fn media_stats(&self) -> Option<MediaStats> {
        let st = self.shared.lock();
        st.media
            .as_ref()
            .map(|m| m.stats.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// A receiver for the events sent from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Joins `channel` of `app_id` as `uid`. With the cloud proxy: asks the control plane
    /// for proxy info, then probes the offered edges in order on the mode's transport and
    /// uses the first that answers. With `set_turn_server`: that TURN server is the ICE
    /// server. Without a proxy: a direct route.
    pub async fn join(
        &self,
        app_id: &str,
        channel: &str,
        token: &str,
        uid: &str,
    ) -> Result<JoinInfo, SdkError> {
        let shared = &self.shared;
        let (attempt, cancelled) = {
            let mut st = shared.lock();
            if st.rules.state() == ConnectionState::Disconnected {
                for (what, v) in [("app_id", app_id), ("channel", channel), ("uid", uid)] {
                    if v.is_empty() {
                        return Err(SdkError::InvalidParameter(format!("{what} is empty")));
                    }
                }
            }
            let attempt = st.rules.begin_join()?;
            // Created under the lock, before any leave can notify: it cannot miss one.
            let cancelled = shared.cancel.notified();
            shared.emit(Event::ConnectionState(ConnectionState::Connecting));
            (attempt, cancelled)
        };
        let mut guard = JoinGuard {
            shared,
            id: attempt.id,
            armed: true,
        };
        let mut cancelled = pin!(cancelled);
        let route = match attempt.setting {
            ProxySetting::Off => Ok(Route::Direct),
            ProxySetting::SelfHosted { proxy, turn } => Ok(Route::SelfHosted {
                ice_servers: turn.iter().map(TurnServer::ice_server).collect(),
                proxy,
                turn,
            }),
            ProxySetting::Cloud(mode) => {
                let req = ProxyRequest {
                    app_id: app_id.into(),
                    channel: channel.into(),
                    uid: uid.into(),
                    mode,
                    area: shared.area.clone(),
                    isp: shared.isp.clone(),
                    token: token.into(),
                };
                self.join_cloud(req, cancelled.as_mut())
                    .await
                    .map(Route::CloudProxy)
            }
        };
        // Signalling and media over the route; a failure here still owns a cloud session.
        let route = match route {
            Ok(route) => {
                let who = Who {
                    app_id,
                    channel,
                    token,
                    uid,
                };
                let r = tokio::select! {
                    r = self.establish(&route, who) => r,
                    _ = cancelled.as_mut() => Err(SdkError::InvalidOperation(JOIN_CANCELLED)),
                };
                match r {
                    Ok(media) => Ok((route, media)),
                    Err(e) => {
                        if let Route::CloudProxy(s) = &route {
                            shared.control.release(&s.session).await;
                        }
                        Err(e)
                    }
                }
            }
            Err(e) => Err(e),
        };
        guard.armed = false;
        // The lock is taken and released in this block: it is never held across an await.
        let finished = {
            let mut st = shared.lock();
            let current = st.rules.finish_join(attempt.id, route.is_ok());
            match (route, current) {
                (Ok((route, media)), true) => {
                    st.media = Some(media);
                    let info = JoinInfo {
                        app_id: app_id.into(),
                        channel: channel.into(),
                        uid: uid.into(),
                        route,
                    };
                    st.joined = Some(info.clone());
                    shared.emit(Event::ConnectionState(ConnectionState::Connected));
                    let transport = match &info.route {
                        Route::CloudProxy(s) => Some(s.mode),
                        _ => None,
                    };
                    shared.emit(Event::IsUsingCloudProxy {
                        using: transport.is_some(),
                        transport,
                    });
                    Ok(info)
                }
                (Err(e), true) => {
                    shared.emit(Event::ConnectionState(ConnectionState::Disconnected));
                    Err((e, None))
                }
                // A leave cancelled the join: it already reported the disconnection.
                (Ok((Route::CloudProxy(s), _media)), false) => {
                    Err((SdkError::InvalidOperation(JOIN_CANCELLED), Some(s.session)))
                }
                (_, false) => Err((SdkError::InvalidOperation(JOIN_CANCELLED), None)),
            }
        };
        match finished {
            Ok(info) => Ok(info),
            Err((e, unused_session)) => {
                if let Some(session) = unused_session {
                    shared.control.release(&session).await;
                }
                Err(e)
            }
        }
    }

    /// Cloud-proxy join: proxy info, then the first edge that answers. A session the client
    /// will not use (no edge answered, or a leave cancelled the join) is released.
    async fn join_cloud(
        &self,
        req: ProxyRequest,
        mut cancelled: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    ) -> Result<CloudProxySession, SdkError> {
        let shared = &self.shared;
        let mode = req.mode;
        let resp = shared.control.request_proxy(&req).await?;
        if resp.edges.is_empty() {
            shared.control.release(&resp.session).await;
            return Err(JoinError::NoEdgeAvailable("the answer offers no edge".into()).into());
        }
        let mut tried = Vec::new();
        for edge in &resp.edges {
            let outcome = tokio::select! {
                r = probe(edge, mode, &shared.tls) => r,
                _ = cancelled.as_mut() => {
                    shared.control.release(&resp.session).await;
                    return Err(SdkError::InvalidOperation(JOIN_CANCELLED));
                }
            };
            match outcome {
                Ok(ok) => {
                    info!(edge = %edge.id, transport = transport_name(mode), tried = tried.len(), "joined through the cloud proxy");
                    return Ok(CloudProxySession {
                        session: resp.session.clone(),
                        expires_at: resp.expires_at,
                        mode,
                        edge: edge.clone(),
                        edge_addr: ok.target,
                        mapped: ok.mapped,
                        tried,
                        ice_servers: edge.ice_servers.clone(),
                        turn: resp.turn.clone(),
                        ticket: resp.ticket.clone(),
                        offered: resp.edges.clone(),
                        signal_upstreams: resp.signal_upstreams.clone(),
                    });
                }
                Err(f) => {
                    warn!(edge = %edge.id, target = %f.target, why = %f.why, "edge did not answer; trying the next");
                    tried.push(format!(
                        "{} {} {}: {}",
                        edge.id,
                        transport_name(mode),
                        f.target,
                        f.why
                    ));
                }
            }
        }
        shared.control.release(&resp.session).await;
        Err(JoinError::EdgeUnreachable { tried }.into())
    }

    /// Reaches the signalling gateway over `route`, joins on it, sets up the media path (a
    /// TURN allocation, or a UDP socket without a proxy) and starts the media session.
    async fn establish(&self, route: &Route, who: Who<'_>) -> Result<MediaHandle, SdkError> {
        let shared = &self.shared;
        let rtn_url = || {
            shared.rtn_signal_url.as_deref().ok_or_else(|| {
                SdkError::InvalidParameter(
                    "rtn_signal_url is needed to join without the cloud proxy".into(),
                )
            })
        };
        let (target, turn) = match route {
            Route::CloudProxy(s) => {
                let upstream = s.signal_upstreams.first().ok_or_else(|| {
                    JoinError::SignalUnreachable(
                        "the proxy-info answer names no signalling gateway".into(),
                    )
                })?;
                let e = &s.edge;
                let target = signal::via_edge(
                    &e.address,
                    e.signal_port,
                    e.tls_port,
                    s.mode,
                    upstream,
                    Some(&s.ticket),
                    "/signal",
                )
                .map_err(JoinError::SignalUnreachable)?;
                let turn = TurnTarget {
                    addr: s.edge_addr,
                    host: e.address.clone(),
                    transport: s.mode,
                    username: s.turn.username.clone(),
                    password: s.turn.password.clone(),
                };
                (target, Some(turn))
            }
            Route::SelfHosted { proxy, turn, .. } => {
                let url = rtn_url()?;
                let target = match proxy {
                    Some(p) => {
                        let (up, path) =
                            signal::upstream_of(url).map_err(SdkError::InvalidParameter)?;
                        signal::via_edge(
                            &p.address,
                            p.signal_port,
                            p.tls_port,
                            TransportMode::Udp,
                            &up,
                            None,
                            &path,
                        )
                        .map_err(SdkError::InvalidParameter)?
                    }
                    None => signal::direct(url).map_err(SdkError::InvalidParameter)?,
                };
                let turn = match turn {
                    Some(t) => {
                        let addr = tokio::net::lookup_host((t.host.as_str(), t.port))
                            .await
                            .ok()
                            .and_then(|mut a| a.next())
                            .ok_or_else(|| {
                                JoinError::MediaUnreachable(format!(
                                    "TURN server {} does not resolve",
                                    t.host
                                ))
                            })?;
                        Some(TurnTarget {
                            addr,
                            host: t.host.clone(),
                            transport: t.transport,
                            username: t.username.clone(),
                            password: t.password.clone(),
                        })
                    }
                    None => None,
                };
                (target, turn)
            }
            Route::Direct => (
                signal::direct(rtn_url()?).map_err(SdkError::InvalidParameter)?,
                None,
            ),
        };
        let path = match &turn {
            Some(t) => Some(MediaPath::Turn(Box::new(
                TurnPath::allocate(t, &shared.tls, TURN_DEADLINE)
                    .await
                    .map_err(|e| JoinError::MediaUnreachable(format!("{}: {e}", t.addr)))?,
            ))),
            None => None,
        };
        let join = rtn_proto::ClientMsg::Join {
            app_id: who.app_id.into(),
            channel: who.channel.into(),
            uid: who.uid.into(),
            token: who.token.into(),
        };
        let (ws, members, local) =
            signal::connect_and_join(&target, &shared.ws_tls, join, shared.signal_timeout).await?;
        let path = match path {
            Some(p) => p,
            None => MediaPath::direct(local.ip()).await.map_err(|e| {
                JoinError::MediaUnreachable(format!("UDP socket on {}: {e}", local.ip()))
            })?,
        };
        info!(signal = %target.shown(), members = members.len(), "joined the channel");
        media::start(SessionSetup {
            uid: who.uid.into(),
            ws,
            members,
            signal_shown: target.shown(),
            path,
            publish: shared.publish,
            events: shared.events.clone(),
        })
        .map_err(|e| JoinError::MediaUnreachable(e).into())
    }

    /// Leaves: releases a cloud-proxy session (best effort, at most 2 s) and returns to
    /// disconnected. Cancels a running join. Does nothing when not joined.
    pub async fn leave(&self) -> Result<(), SdkError> {
        let shared = &self.shared;
        let joined = {
            let mut st = shared.lock();
            match st.rules.begin_leave() {
                LeaveAction::NotJoined | LeaveAction::AlreadyLeaving => return Ok(()),
                LeaveAction::CancelJoin => {
                    shared.cancel.notify_waiters();
                    shared.emit(Event::ConnectionState(ConnectionState::Disconnected));
                    return Ok(());
                }
                LeaveAction::Leave => {
                    shared.emit(Event::ConnectionState(ConnectionState::Disconnecting));
                    (st.joined.take(), st.media.take())
                }
            }
        };
        let (joined, media) = joined;
        let guard = LeaveGuard {
            shared,
            cloud: joined.as_ref().is_some_and(JoinInfo::using_cloud_proxy),
        };
        if let Some(m) = media {
            m.stop(std::time::Duration::from_secs(2)).await;
        }
        if let Some(Route::CloudProxy(s)) = joined.map(|j| j.route) {
            shared.control.release(&s.session).await;
        }
        drop(guard);
        Ok(())
    }
}

impl Drop for Client {
    /// A client dropped while in a cloud-proxy session releases it in the background when a
    /// tokio runtime is at hand (otherwise the lease runs out).
    fn drop(&mut self) {
        let (joined, media) = {
            let mut st = self.shared.lock();
            (st.joined.take(), st.media.take())
        };
        drop(media);
        if let (Some(Route::CloudProxy(s)), Ok(rt)) = (
            joined.map(|j| j.route),
            tokio::runtime::Handle::try_current(),
        ) {
            let control = self.shared.control.clone();
            rt.spawn(async move { control.release(&s.session).await });
        }
    }
}

/// Puts the client back to disconnected when a join future is dropped before it finished.
struct JoinGuard<'a> {
    shared: &'a Shared,
    id: u64,
    armed: bool,
}

impl Drop for JoinGuard<'_> {
    fn drop(&mut self) {
        if self.armed && self.shared.lock().rules.finish_join(self.id, false) {
            self.shared
                .emit(Event::ConnectionState(ConnectionState::Disconnected));
        }
    }
}

/// Finishes a leave, also when the leave future is dropped during the release.
struct LeaveGuard<'a> {
    shared: &'a Shared,
    cloud: bool,
}

impl Drop for LeaveGuard<'_> {
    fn drop(&mut self) {
        self.shared.lock().rules.finish_leave();
        self.shared
            .emit(Event::ConnectionState(ConnectionState::Disconnected));
        if self.cloud {
            self.shared.emit(Event::IsUsingCloudProxy {
                using: false,
                transport: None,
            });
        }
    }
}

/// Who joins: the arguments of [`Client::join`].
struct Who<'a> {
    app_id: &'a str,
    channel: &'a str,
    token: &'a str,
    uid: &'a str,
}

/// Limit for connecting to a TURN server and allocating.
const TURN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

fn transport_name(mode: TransportMode) -> &'static str {
    match mode {
        TransportMode::Udp => "udp",
        TransportMode::Tcp => "tcp",
        TransportMode::Tls => "tls",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn futures_are_send_and_the_client_is_shareable() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Client>();
        let c = Client::new(ClientConfig {
            control_url: "https://control.invalid".into(),
            ..Default::default()
        })
        .unwrap();
        assert_send(&c.join("a", "c", "t", "u"));
        assert_send(&c.leave());
    }
}
