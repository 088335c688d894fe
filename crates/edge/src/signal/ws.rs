//! `GET /ws`: admission, the upstream connection, then the client's upgrade.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request as UpstreamRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::debug;

use super::admission::{check_ticket, resolve_checked, split_host_port};
use super::relay::{self, Relay, Upstream};
use super::{client_addr, Client, Refusal, SignalState};

/// Longest `path` accepted for a `ws` upstream.
const MAX_PATH_LEN: usize = 2048;

/// The query of `/ws`. Every field is optional so that a missing one gets our own answer
/// (401 for the ticket, 400 for the rest) instead of the extractor's.
#[derive(Debug, Default, Deserialize)]
struct Params {
    upstream: Option<String>,
    ticket: Option<String>,
    proto: Option<String>,
    path: Option<String>,
}

/// How the edge talks to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proto {
    /// A WebSocket client connection; frames are relayed as they are.
    Ws,
    /// A raw TCP connection; binary (and text) frames become bytes and bytes become binary
    /// frames.
    Tcp,
}

impl Proto {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Proto::Ws => "ws",
            Proto::Tcp => "tcp",
        }
    }
}

/// What admission settled, ready to connect.
struct Plan {
    upstream: String,
    proto: Proto,
    /// For `ws`: the upstream handshake request, `ws://HOST:PORT{path}`.
    request: Option<UpstreamRequest>,
    addrs: Vec<SocketAddr>,
    app_id: String,
    session: String,
}

pub(super) async fn handle(State(state): State<Arc<SignalState>>, req: Request) -> Response {
    let (mut parts, _body) = req.into_parts();
    let client = Client(client_addr(&parts.extensions));
    let params = Query::<Params>::try_from_uri(&parts.uri).map(|q| q.0);
    let target = params
        .as_ref()
        .ok()
        .and_then(|p| p.upstream.clone())
        .unwrap_or_default();
    match admit_and_connect(&state, &mut parts, params.ok()).await {
        Ok((upgrade, plan, upstream)) => {
            let relay = Relay {
                client: client.0,
                upstream: plan.upstream,
                proto: plan.proto,
                app_id: plan.app_id,
                session: plan.session,
                idle_timeout: state.idle_timeout,
                max_frame_bytes: state.max_frame_bytes,
            };
            let max = state.max_frame_bytes;
            let who = client.to_string();
            upgrade
                .max_message_size(max)
                .max_frame_size(max)
                .on_failed_upgrade(move |e| {
                    debug!(client = %who, error = %e, "signal relay: client upgrade failed");
                })
                .on_upgrade(move |socket| relay::run(socket, upstream, relay))
        }
        Err(refusal) => {
            refusal.log("signal relay", &client, &target);
            refusal.into_response()
        }
    }
}

async fn admit_and_connect(
    state: &SignalState,
    parts: &mut Parts,
    params: Option<Params>,
) -> Result<(WebSocketUpgrade, Plan, Upstream), Refusal> {
    let Some(params) = params else {
        return Err(Refusal::bad_request("malformed query string"));
    };
    let claims = check_ticket(state, params.ticket.as_deref())?;
    let upstream = match params.upstream {
        Some(u) if !u.is_empty() => u,
        _ => return Err(Refusal::bad_request("missing upstream")),
    };
    if !claims.allows_upstream(&upstream) {
        return Err(Refusal::forbidden("ticket does not name this upstream")
            .with_detail(format!("app {} session {}", claims.app_id, claims.session)));
    }
    let proto = match params.proto.as_deref() {
        None | Some("ws") => Proto::Ws,
        Some("tcp") => Proto::Tcp,
        Some(_) => return Err(Refusal::bad_request("proto must be ws or tcp")),
    };
    let Some((host, port)) = split_host_port(&upstream) else {
        return Err(Refusal::bad_request("upstream must be HOST:PORT"));
    };
    let request = match proto {
        Proto::Ws => Some(upstream_request(&upstream, params.path.as_deref())?),
        Proto::Tcp => None,
    };
    let deadline = Instant::now() + state.connect_timeout;
    let addrs = resolve_checked(state, host, port, deadline).await?;
    let upgrade = WebSocketUpgrade::from_request_parts(parts, &())
        .await
        .map_err(|rejection| Refusal {
            status: rejection.status(),
            ..Refusal::bad_request(format!(
                "not a WebSocket upgrade: {}",
                rejection.body_text()
            ))
        })?;
    let mut plan = Plan {
        upstream,
        proto,
        request,
        addrs,
        app_id: claims.app_id,
        session: claims.session,
    };
    let connected = connect(state, &mut plan, deadline).await?;
    Ok((upgrade, plan, connected))
}

/// The upstream handshake request, refusing paths that are not plain origin-form.
fn upstream_request(upstream: &str, path: Option<&str>) -> Result<UpstreamRequest, Refusal> {
    let path = path.unwrap_or("/");
    let ok = path.starts_with('/')
        && path.len() <= MAX_PATH_LEN
        && path.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
    if !ok {
        return Err(Refusal::bad_request(
            "path must start with / and hold only printable ASCII",
        ));
    }
    format!("ws://{upstream}{path}")
        .into_client_request()
        .map_err(|e| Refusal::bad_request("invalid upstream path").with_detail(e.to_string()))
}

/// Connects to the first checked address that answers, then (for `ws`) does the upstream
/// handshake, all before `deadline`.
async fn connect(
    state: &SignalState,
    plan: &mut Plan,
    deadline: Instant,
) -> Result<Upstream, Refusal> {
    let mut stream = None;
    let mut last_error = String::new();
    for addr in &plan.addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(
                    Refusal::timeout("upstream connect timed out").with_detail(format!("{addr}"))
                );
            }
            Ok(Err(e)) => last_error = format!("{addr}: {e}"),
            Ok(Ok(s)) => {
                // Signalling is small messages where latency matters.
                let _ = s.set_nodelay(true);
                stream = Some(s);
                break;
            }
        }
    }
    let Some(stream) = stream else {
        return Err(Refusal::unavailable("upstream refused or unreachable").with_detail(last_error));
    };
    let Some(request) = plan.request.take() else {
        return Ok(Upstream::Tcp(stream));
    };
    let max = state.max_frame_bytes;
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    match tokio::time::timeout_at(
        deadline,
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)),
    )
    .await
    {
        Err(_) => Err(Refusal::timeout("upstream WebSocket handshake timed out")),
        Ok(Err(e)) => Err(
            Refusal::unavailable("upstream refused the WebSocket handshake")
                .with_detail(e.to_string()),
        ),
        Ok(Ok((ws, _response))) => Ok(Upstream::Ws(Box::new(ws))),
    }
}
