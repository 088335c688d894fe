//! The signalling relay (ARCHITECTURE §2–§4): what a client whose firewall only opens the edge
//! reaches the RTN's signalling through.
//!
//! One [`axum::Router`] serves it; the caller mounts it inside TLS on 443 (after the ALPN/sniff
//! demultiplexer) and in plain text on the signal port (4000), and must insert the client's
//! address as [`axum::extract::ConnectInfo<SocketAddr>`] in each request's extensions (what
//! `Router::into_make_service_with_connect_info::<SocketAddr>()` does).
//!
//! # Routes
//!
//! - `GET /ws?upstream=HOST:PORT&ticket=T[&proto=ws|tcp][&path=/p]` — a WebSocket relay to one
//!   RTN upstream, over WebSocket (`proto=ws`, the default, requesting `ws://HOST:PORT{path}`)
//!   or raw TCP (`proto=tcp`: binary frames in, the bytes out, and back). Admission, in order:
//!   1. a ticket is present — else **401** `missing ticket`;
//!   2. it verifies with the current ticket keys at `now_unix()` — else **401** (`malformed
//!      ticket`, `forged ticket`, `ticket signed with an unknown key`, `expired ticket`);
//!   3. the ticket names this exact upstream string — else **403** `ticket does not name this
//!      upstream`;
//!   4. the upstream is `HOST:PORT` (**400** otherwise), resolves within `connect_timeout`
//!      (**502** / **504** otherwise) and *every* address it resolves to passes the
//!      [`PeerPolicy`] (the TURN peer deny/allow set: no loopback, metadata, link-local,
//!      private-unless-listed or own addresses) — else **403** `upstream not allowed: <reason>`;
//!   5. the request is a WebSocket upgrade — else **4xx** `BAD_REQUEST`;
//!   6. the upstream accepts a connection (and, for `ws`, completes its handshake) within
//!      `connect_timeout` — else **502** (refused, unreachable, handshake refused) or **504**
//!      (too slow). Only then is the client's upgrade accepted, so a dead upstream is an HTTP
//!      status the client can act on, not a WebSocket that opens and dies.
//!
//!   The relay connects to the addresses that passed the policy, never re-resolving the name
//!   (no DNS rebinding between check and use). Once upgraded, text, binary and close frames
//!   flow both ways, each awaited before the next is read (backpressure, no queues); pings are
//!   answered by the edge; `idle_timeout` and `max_frame_bytes` end a relay (details in
//!   `signal/relay.rs`).
//! - `POST /v1/proxy` and `DELETE /v1/proxy/{session}` — forwarded to the control plane's same
//!   paths, so a client that can only reach the edge still gets its proxy info (and its first
//!   ticket: these routes need none); details in `signal/forward.rs`.
//! - Anything else: **404**.
//!
//! Every refusal is answered with `{"code", "message", "retryable"}` (codes `UNAUTHORIZED`,
//! `BAD_REQUEST`, `NOT_FOUND`, `PAYLOAD_TOO_LARGE`, `UPSTREAM_FORBIDDEN`,
//! `UPSTREAM_UNAVAILABLE`, `UPSTREAM_TIMEOUT`) and logged at `info` with the reason and the
//! client's address; relays log their start and end at `debug`.

mod admission;
mod forward;
mod relay;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{header, Extensions, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, post};
use axum::Router;
use control_api::ErrorCode;
use tracing::info;
use turn_proto::policy::PeerPolicy;

use crate::auth::TicketKeys;

/// Everything the signalling relay needs; shared by every request.
pub struct SignalState {
    /// The live ticket keys (swapped when the control plane rotates them). `None` refuses every
    /// relay with 401 until keys arrive.
    pub tickets: TicketKeys,
    /// The deny/allow policy every resolved upstream address must pass. Build it like the TURN
    /// peer policy, with the signal listeners (443, 4000) among its own addresses.
    pub policy: PeerPolicy,
    /// Control plane base URL and an HTTPS client trusting it, for forwarding /v1/proxy.
    pub control: Option<(String, reqwest::Client)>,
    /// Upstream connect budget: name resolution, TCP connect and the upstream WebSocket
    /// handshake together (→ 504 when exceeded).
    pub connect_timeout: Duration,
    /// A relay with no frames either way (pings included) for this long is closed with 1000
    /// "idle timeout". Zero disables it.
    pub idle_timeout: Duration,
    /// Largest frame (and message) relayed, either way, e.g. 1 MiB; a larger one closes the
    /// relay (close code 1009 to the side that sent it).
    pub max_frame_bytes: usize,
    /// Clock for ticket expiry, unix seconds (tests may pass their own).
    pub now_unix: fn() -> u64,
}

/// The signalling relay's routes (see the module docs). Needs `ConnectInfo<SocketAddr>` in the
/// request extensions for logs and `X-Forwarded-For`; without it the client is "unknown".
pub fn router(state: Arc<SignalState>) -> Router {
    Router::new()
        .route("/ws", any(ws::handle))
        .route("/v1/proxy", post(forward::proxy))
        .route("/v1/proxy/{session}", delete(forward::release))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(state)
}

async fn not_found() -> Response {
    Refusal::api(ErrorCode::NotFound, "no such route").into_response()
}

/// The client's address, if the listener recorded it.
fn client_addr(ext: &Extensions) -> Option<SocketAddr> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}

/// A client address for log lines.
struct Client(Option<SocketAddr>);

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => a.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

/// An error answer: status plus the JSON error body.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
    retryable: bool,
    /// Extra context for the log line only (never sent to the client).
    detail: Option<String>,
}

impl Refusal {
    /// With one of the control API's codes, its status and its retryable flag.
    fn api(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: code.as_str(),
            message: message.into(),
            retryable: code.retryable(),
            detail: None,
        }
    }

    fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Writes the refusal's log line: status, code, the reason, the client and what it asked.
    fn log(&self, what: &str, client: &Client, target: &str) {
        info!(
            client = %client,
            requested = target,
            status = self.status.as_u16(),
            code = self.code,
            reason = %self.message,
            detail = self.detail.as_deref().unwrap_or(""),
            "{what} refused: {}",
            self.message
        );
    }

    fn unauthorized(message: impl Into<String>, retryable: bool) -> Self {
        Self {
            retryable,
            ..Self::api(ErrorCode::Unauthorized, message)
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::api(ErrorCode::BadRequest, message)
    }

    /// 403: the upstream is not one this client may reach through this edge.
    fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: "UPSTREAM_FORBIDDEN",
            message: message.into(),
            retryable: false,
            detail: None,
        }
    }

    /// 502: the upstream refused, is unreachable, or answered badly.
    fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_GATEWAY,
            code: "UPSTREAM_UNAVAILABLE",
            message: message.into(),
            retryable: true,
            detail: None,
        }
    }

    /// 504: the upstream did not answer in time.
    fn timeout(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::GATEWAY_TIMEOUT,
            code: "UPSTREAM_TIMEOUT",
            message: message.into(),
            retryable: true,
            detail: None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}
