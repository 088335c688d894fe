//! `POST /v1/proxy` and `DELETE /v1/proxy/{session}`, forwarded to the control plane.
//!
//! A client whose firewall opens only the edge still gets its proxy info this way. The request
//! body, `Content-Type`, `Accept` and `Authorization` go to the control plane's same path; the
//! status, `Content-Type` and body come back. `X-Forwarded-For` is set to the client's IP —
//! replacing any the client sent, so a client cannot choose the address the control plane
//! places it by (the control plane believes the header only from its trusted proxies, which
//! must then list the edges). Control plane down or failing: 502; too slow: 504; no control
//! plane configured: 404.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use control_api::ErrorCode;

use super::{client_addr, Client, Refusal, SignalState};

/// Largest request body forwarded.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Largest control plane answer passed back.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Least time a forwarded call gets, whatever `connect_timeout` says.
const MIN_FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Request headers passed on as they are.
const PASSED_HEADERS: [header::HeaderName; 3] =
    [header::CONTENT_TYPE, header::ACCEPT, header::AUTHORIZATION];

pub(super) async fn proxy(State(state): State<Arc<SignalState>>, req: Request) -> Response {
    forward(&state, Method::POST, &[], req).await
}

pub(super) async fn release(
    State(state): State<Arc<SignalState>>,
    Path(session): Path<String>,
    req: Request,
) -> Response {
    forward(&state, Method::DELETE, &[&session], req).await
}

async fn forward(state: &SignalState, method: Method, extra: &[&str], req: Request) -> Response {
    let client = client_addr(req.extensions());
    let target = format!("{method} /v1/proxy");
    match forward_inner(state, method, extra, client, req).await {
        Ok(response) => response,
        Err(refusal) => {
            refusal.log("control plane forward", &Client(client), &target);
            refusal.into_response()
        }
    }
}

async fn forward_inner(
    state: &SignalState,
    method: Method,
    extra: &[&str],
    client: Option<SocketAddr>,
    req: Request,
) -> Result<Response, Refusal> {
    let Some((base, http)) = &state.control else {
        return Err(Refusal::api(
            ErrorCode::NotFound,
            "this edge forwards to no control plane",
        ));
    };
    let mut url = reqwest::Url::parse(base).map_err(|e| {
        Refusal::unavailable("control plane address is invalid").with_detail(e.to_string())
    })?;
    {
        let mut path = url.path_segments_mut().map_err(|()| {
            Refusal::unavailable("control plane address is invalid")
                .with_detail("URL cannot have a path")
        })?;
        path.pop_if_empty().extend(["v1", "proxy"]).extend(extra);
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_REQUEST_BYTES)
        .await
        .map_err(|_| Refusal::api(ErrorCode::PayloadTooLarge, "request body too large"))?;

    let mut headers = HeaderMap::new();
    for name in PASSED_HEADERS {
        if let Some(v) = parts.headers.get(&name) {
            headers.insert(name, v.clone());
        }
    }
    if let Some(ip) = client.map(|c| c.ip().to_string()) {
        if let Ok(v) = ip.parse() {
            headers.insert("x-forwarded-for", v);
        }
    }
    let timeout = state.connect_timeout.max(MIN_FORWARD_TIMEOUT);
    let failed = |e: reqwest::Error| {
        if e.is_timeout() {
            Refusal::timeout("control plane did not answer in time").with_detail(e.to_string())
        } else {
            Refusal::unavailable("control plane unreachable").with_detail(e.to_string())
        }
    };
    let mut resp = http
        .request(method, url)
        .headers(headers)
        .body(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(failed)?;

    let status = resp.status();
    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(failed)? {
        if out.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(Refusal::unavailable("control plane answer too large"));
        }
        out.extend_from_slice(&chunk);
    }
    let mut response = (status, Bytes::from(out)).into_response();
    if let Some(ct) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(response)
}
