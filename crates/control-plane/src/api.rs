//! HTTP handlers: the public proxy-info API, the edge registry and the admin API.

use std::net::{IpAddr, SocketAddr};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use control_api::*;
use credentials::{join_token, ticket, SecretSet};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use crate::admission::{area_allowed, locate, offer, rank_edges};
use crate::store::{SecretKind, SessionRecord, StoreError};
use crate::{whitelist, Shared};

/// An error response: status from the code, body `{"code", "message", "retryable"}`.
#[derive(Debug)]
pub struct Fail(pub ApiError);

impl Fail {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Fail(ApiError::new(code, message))
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Fail::new(ErrorCode::Conflict, m),
            StoreError::NotFound(m) => Fail::new(ErrorCode::NotFound, m),
            e => {
                warn!(error = %e, "store failure");
                Fail::new(ErrorCode::Internal, "state store unavailable")
            }
        }
    }
}

type ApiResult<T> = Result<T, Fail>;

/// Unix seconds from the system clock.
pub fn system_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| Fail::new(ErrorCode::BadRequest, format!("invalid JSON body: {e}")))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn check_token(headers: &HeaderMap, allowed: &[String], who: &str) -> ApiResult<()> {
    let given = bearer(headers).unwrap_or("");
    let ok = allowed
        .iter()
        .any(|t| !t.is_empty() && bool::from(t.as_bytes().ct_eq(given.as_bytes())));
    if ok {
        Ok(())
    } else {
        Err(Fail::new(
            ErrorCode::Unauthorized,
            format!("missing or wrong {who} bearer token"),
        ))
    }
}

/// The client's address: the peer, or the first `X-Forwarded-For` hop when the peer is a
/// trusted proxy.
fn client_ip(s: &Shared, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    let peer_ip = peer.ip();
    if s.cfg.trusted_proxies.iter().any(|n| n.contains(&peer_ip)) {
        if let Some(first) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
        {
            return first;
        }
    }
    peer_ip
}

fn valid_name(s: &str, what: &str, max: usize) -> ApiResult<()> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(Fail::new(
            ErrorCode::BadRequest,
            format!("{what} must be 1..={max} printable ASCII characters without ':'"),
        ));
    }
    Ok(())
}

async fn key_set(s: &Shared, kind: SecretKind) -> ApiResult<SecretSet> {
    let keys = s.store.keys(kind).await?;
    SecretSet::new(
        keys.into_iter()
            .map(|k| credentials::Secret::new(k.key_id, k.secret.into_bytes()))
            .collect(),
    )
    .map_err(|e| Fail::new(ErrorCode::Internal, format!("key set: {e}")))
}

/// `POST /v1/proxy`.
#[utoipa::path(post, path = "/v1/proxy", request_body = ProxyRequest,
    responses((status = 200, body = ProxyResponse), (status = "4XX", body = ApiError), (status = 503, body = ApiError)))]
pub async fn proxy(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let result = proxy_inner(&s, peer, &headers, &body).await;
    let code = result.as_ref().err().map(|f| f.0.code);
    s.metrics.proxy_answered(code, started.elapsed());
    match result {
        Ok(r) => Json(r).into_response(),
        Err(f) => f.into_response(),
    }
}

async fn proxy_inner(
    s: &Shared,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<ProxyResponse> {
    let req: ProxyRequest = parse(body)?;
    valid_name(&req.app_id, "app_id", 64)?;
    valid_name(&req.channel, "channel", 128)?;
    valid_name(&req.uid, "uid", 64)?;
    let now = s.now();
    let app = s.store.app(&req.app_id).await?.ok_or_else(|| {
        Fail::new(
            ErrorCode::AppNotFound,
            format!("unknown App ID {}", req.app_id),
        )
    })?;
    if app.status != AppStatus::Enabled {
        return Err(Fail::new(
            ErrorCode::ProxyNotEnabled,
            "the cloud proxy is not enabled for this App ID",
        ));
    }
    if !app.modes.contains(&req.mode) {
        return Err(Fail::new(
            ErrorCode::ModeNotEnabled,
            format!("mode {:?} is not enabled for this App ID", req.mode),
        ));
    }
    match join_token::verify_join_token(
        &req.token,
        &app.app_id,
        app.certificate.as_bytes(),
        &req.channel,
        &req.uid,
        now,
    ) {
        Ok(_) => {}
        Err(join_token::JoinTokenError::Expired { expired_at }) => {
            return Err(Fail::new(
                ErrorCode::TokenExpired,
                format!("join token expired at {expired_at}"),
            ));
        }
        Err(e) => {
            return Err(Fail::new(
                ErrorCode::InvalidToken,
                format!("join token rejected: {e}"),
            ))
        }
    }
    let ip = client_ip(s, peer, headers);
    let (geo_region, geo_isp) = locate(&s.cfg.geo, &s.cfg.default_region, ip);
    let region = req.area.clone().unwrap_or(geo_region);
    let isp = req.isp.clone().unwrap_or(geo_isp);
    if !area_allowed(&app, &region) {
        return Err(Fail::new(
            ErrorCode::AreaForbidden,
            format!("area {region} is not allowed for this App ID"),
        ));
    }
    let edges = s.store.edges(now, s.forget_after()).await?;
    let chosen = rank_edges(
        &app,
        &edges,
        req.mode,
        &region,
        &isp,
        now,
        s.cfg.max_edges_per_answer,
    );
    if chosen.is_empty() {
        // Quota precedes availability in the error order (ARCHITECTURE §9).
        if s.store.active_sessions(&app.app_id, now).await? >= app.max_concurrency {
            return Err(Fail::new(
                ErrorCode::QuotaExceeded,
                "concurrency quota of this App ID is exhausted",
            ));
        }
        return Err(Fail::new(
            ErrorCode::NoEdgeAvailable,
            format!("no healthy edge in pool {}", app.pool),
        ));
    }
    let session = random_id(16);
    let record = SessionRecord {
        session: session.clone(),
        app_id: app.app_id.clone(),
        channel: req.channel.clone(),
        uid: req.uid.clone(),
        created_at: now,
        lease_expires: now + s.cfg.session_lease_secs,
    };
    if !s.store.admit(&record, app.max_concurrency, now).await? {
        return Err(Fail::new(
            ErrorCode::QuotaExceeded,
            format!(
                "concurrency quota of this App ID ({}) is exhausted",
                app.max_concurrency
            ),
        ));
    }
    let turn_keys = key_set(s, SecretKind::Turn).await?;
    let cred = credentials::mint(&turn_keys, &session, now, s.cfg.turn_ttl_secs)
        .map_err(|e| Fail::new(ErrorCode::Internal, format!("mint: {e}")))?;
    let turn = TurnCredential {
        username: cred.username,
        password: cred.password,
        expires_at: cred.expires_unix,
    };
    let ticket_keys = key_set(s, SecretKind::Ticket).await?;
    let ticket = ticket::sign_ticket(
        &ticket_keys,
        &ticket::TicketClaims {
            app_id: app.app_id.clone(),
            session: session.clone(),
            upstreams: s.cfg.rtn_upstreams.clone(),
            expires_at: now + s.cfg.ticket_ttl_secs,
        },
    );
    info!(app = %app.app_id, %session, mode = ?req.mode, %region, edges = chosen.len(), "proxy session admitted");
    Ok(ProxyResponse {
        signal_upstreams: s.cfg.rtn_upstreams.clone(),
        edges: chosen.iter().map(|e| offer(e, req.mode, &turn)).collect(),
        session,
        expires_at: record.lease_expires,
        turn,
        ticket,
        mode: req.mode,
    })
}

/// `DELETE /v1/proxy/{session}`: the client left.
#[utoipa::path(delete, path = "/v1/proxy/{session}", params(("session" = String, Path)),
    responses((status = 204), (status = 404, body = ApiError)))]
pub async fn release(
    State(s): State<Shared>,
    Path(session): Path<String>,
) -> ApiResult<StatusCode> {
    if s.store.release(&session).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Fail::new(ErrorCode::NotFound, "no such session"))
    }
}

/// `POST /v1/edges/heartbeat`.
#[utoipa::path(post, path = "/v1/edges/heartbeat", request_body = EdgeHeartbeat,
    responses((status = 200, body = HeartbeatResponse), (status = 401, body = ApiError)),
    security(("edge_token" = [])))]
pub async fn heartbeat(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<HeartbeatResponse>> {
    check_token(&headers, &s.edge_tokens, "edge")?;
    let hb: EdgeHeartbeat = parse(&body)?;
    valid_name(&hb.id, "edge id", 128)?;
    if hb.sessions.len() > 100_000 {
        return Err(Fail::new(
            ErrorCode::BadRequest,
            "too many sessions in one heartbeat",
        ));
    }
    let now = s.now();
    let info = s.store.heartbeat(&hb, now, s.cfg.edge_lease_secs).await?;
    if !hb.sessions.is_empty() {
        s.store
            .renew(&hb.sessions, now + s.cfg.session_lease_secs)
            .await?;
    }
    let turn_secrets = s.store.keys(SecretKind::Turn).await?;
    let ticket_keys = s.store.keys(SecretKind::Ticket).await?;
    Ok(Json(HeartbeatResponse {
        lease_secs: s.cfg.edge_lease_secs,
        turn_secrets,
        ticket_keys,
        drain: info.drain_requested,
    }))
}

fn admin(s: &Shared, headers: &HeaderMap) -> ApiResult<()> {
    check_token(headers, std::slice::from_ref(&s.admin_token), "admin")
}

/// `POST /v1/admin/apps`.
#[utoipa::path(post, path = "/v1/admin/apps", request_body = AppCreate,
    responses((status = 201, body = App), (status = "4XX", body = ApiError)), security(("admin_token" = [])))]
pub async fn create_app(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<App>)> {
    admin(&s, &headers)?;
    let c: AppCreate = parse(&body)?;
    if c.name.trim().is_empty() || c.name.len() > 200 {
        return Err(Fail::new(
            ErrorCode::BadRequest,
            "name must be 1..=200 characters",
        ));
    }
    let app_id = match c.app_id {
        Some(id) => {
            valid_name(&id, "app_id", 64)?;
            id
        }
        None => random_id(16),
    };
    let areas = c.areas.unwrap_or_default();
    let environment = c.environment.unwrap_or(Environment::Test);
    let pool = match (c.pool, environment) {
        (Some(p), _) => p,
        (None, Environment::Production) => format!("prod-{app_id}"),
        (None, Environment::Test) if areas.iter().any(|a| a.eq_ignore_ascii_case("CN")) => {
            crate::TEST_POOL_CN.into()
        }
        (None, Environment::Test) => crate::TEST_POOL_GLOBAL.into(),
    };
    valid_name(&pool, "pool", 64)?;
    let app = App {
        app_id,
        name: c.name,
        certificate: random_id(32),
        environment,
        modes: normalize_modes(c.modes.unwrap_or_else(|| TransportMode::ALL.to_vec()))?,
        areas,
        isps: c.isps.unwrap_or_default(),
        max_concurrency: c.max_concurrency.unwrap_or(50),
        pool,
        status: AppStatus::Enabled,
        created_at: s.now(),
    };
    s.store.create_app(&app).await?;
    info!(app = %app.app_id, pool = %app.pool, "App ID created");
    Ok((StatusCode::CREATED, Json(app)))
}

fn normalize_modes(mut modes: Vec<TransportMode>) -> ApiResult<Vec<TransportMode>> {
    modes.sort();
    modes.dedup();
    if modes.is_empty() {
        return Err(Fail::new(
            ErrorCode::BadRequest,
            "at least one mode must be enabled",
        ));
    }
    Ok(modes)
}

/// `GET /v1/admin/apps`.
#[utoipa::path(get, path = "/v1/admin/apps", responses((status = 200, body = [App])), security(("admin_token" = [])))]
pub async fn list_apps(State(s): State<Shared>, headers: HeaderMap) -> ApiResult<Json<Vec<App>>> {
    admin(&s, &headers)?;
    Ok(Json(s.store.apps().await?))
}

async fn load_app(s: &Shared, id: &str) -> ApiResult<App> {
    s.store
        .app(id)
        .await?
        .ok_or_else(|| Fail::new(ErrorCode::AppNotFound, format!("unknown App ID {id}")))
}

/// `GET /v1/admin/apps/{app_id}`.
#[utoipa::path(get, path = "/v1/admin/apps/{app_id}", params(("app_id" = String, Path)),
    responses((status = 200, body = App), (status = 404, body = ApiError)), security(("admin_token" = [])))]
pub async fn show_app(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<App>> {
    admin(&s, &headers)?;
    Ok(Json(load_app(&s, &id).await?))
}

/// `PATCH /v1/admin/apps/{app_id}`.
#[utoipa::path(patch, path = "/v1/admin/apps/{app_id}", params(("app_id" = String, Path)), request_body = AppUpdate,
    responses((status = 200, body = App), (status = 404, body = ApiError)), security(("admin_token" = [])))]
pub async fn update_app(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<App>> {
    admin(&s, &headers)?;
    let u: AppUpdate = parse(&body)?;
    let mut app = load_app(&s, &id).await?;
    if let Some(v) = u.name {
        app.name = v;
    }
    if let Some(v) = u.modes {
        app.modes = normalize_modes(v)?;
    }
    if let Some(v) = u.areas {
        app.areas = v;
    }
    if let Some(v) = u.isps {
        app.isps = v;
    }
    if let Some(v) = u.max_concurrency {
        app.max_concurrency = v;
    }
    if let Some(v) = u.pool {
        valid_name(&v, "pool", 64)?;
        app.pool = v;
    }
    if let Some(v) = u.status {
        app.status = v;
    }
    s.store.put_app(&app).await?;
    info!(app = %app.app_id, status = ?app.status, "App ID updated");
    Ok(Json(app))
}

/// `DELETE /v1/admin/apps/{app_id}`.
#[utoipa::path(delete, path = "/v1/admin/apps/{app_id}", params(("app_id" = String, Path)),
    responses((status = 204), (status = 404, body = ApiError)), security(("admin_token" = [])))]
pub async fn delete_app(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    admin(&s, &headers)?;
    if s.store.delete_app(&id).await? {
        info!(app = %id, "App ID deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Fail::new(
            ErrorCode::AppNotFound,
            format!("unknown App ID {id}"),
        ))
    }
}

/// `POST /v1/admin/apps/{app_id}/promote`: test → production with a dedicated pool.
#[utoipa::path(post, path = "/v1/admin/apps/{app_id}/promote", params(("app_id" = String, Path)), request_body = AppPromote,
    responses((status = 200, body = App), (status = 404, body = ApiError)), security(("admin_token" = [])))]
pub async fn promote_app(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<App>> {
    admin(&s, &headers)?;
    let p: AppPromote = if body.is_empty() {
        AppPromote::default()
    } else {
        parse(&body)?
    };
    let mut app = load_app(&s, &id).await?;
    app.environment = Environment::Production;
    app.pool = p.pool.unwrap_or_else(|| format!("prod-{}", app.app_id));
    valid_name(&app.pool, "pool", 64)?;
    s.store.put_app(&app).await?;
    info!(app = %app.app_id, pool = %app.pool, "App ID promoted to production");
    Ok(Json(app))
}

/// Query of the whitelist route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WhitelistQuery {
    /// table (default), csv, json, nftables or iptables.
    pub format: Option<WhitelistFormat>,
}

/// `GET /v1/admin/apps/{app_id}/whitelist?format=...`.
#[utoipa::path(get, path = "/v1/admin/apps/{app_id}/whitelist", params(("app_id" = String, Path), WhitelistQuery),
    responses((status = 200, body = String, content_type = "text/plain"), (status = 404, body = ApiError)), security(("admin_token" = [])))]
pub async fn app_whitelist(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<WhitelistQuery>,
) -> ApiResult<Response> {
    admin(&s, &headers)?;
    let app = load_app(&s, &id).await?;
    let now = s.now();
    let live: Vec<EdgeHeartbeat> = s
        .store
        .edges(now, s.forget_after())
        .await?
        .into_iter()
        .filter(|e| e.lease_expires > now && e.heartbeat.pool == app.pool)
        .map(|e| e.heartbeat)
        .collect();
    let control: Vec<(String, u16)> = s
        .public_addresses()
        .into_iter()
        .map(|a| (a, s.cfg.listen.port()))
        .collect();
    let entries = whitelist::entries(&app, &live, &control);
    let format = q.format.unwrap_or(WhitelistFormat::Table);
    let text = whitelist::render(&app.app_id, &entries, format);
    let ctype = match format {
        WhitelistFormat::Json => "application/json",
        WhitelistFormat::Csv => "text/csv",
        _ => "text/plain; charset=utf-8",
    };
    Ok(([(header::CONTENT_TYPE, ctype)], text).into_response())
}

/// `GET /v1/admin/apps/{app_id}/usage`.
#[utoipa::path(get, path = "/v1/admin/apps/{app_id}/usage", params(("app_id" = String, Path)),
    responses((status = 200, body = AppUsage)), security(("admin_token" = [])))]
pub async fn app_usage(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<AppUsage>> {
    admin(&s, &headers)?;
    let app = load_app(&s, &id).await?;
    let active = s.store.active_sessions(&id, s.now()).await?;
    Ok(Json(AppUsage {
        app_id: id,
        active_sessions: active,
        max_concurrency: app.max_concurrency,
    }))
}

/// `GET /v1/admin/edges`.
#[utoipa::path(get, path = "/v1/admin/edges", responses((status = 200, body = [EdgeInfo])), security(("admin_token" = [])))]
pub async fn list_edges(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<EdgeInfo>>> {
    admin(&s, &headers)?;
    Ok(Json(s.store.edges(s.now(), s.forget_after()).await?))
}

/// `POST /v1/admin/edges/{id}/drain`.
#[utoipa::path(post, path = "/v1/admin/edges/{id}/drain", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ApiError)), security(("admin_token" = [])))]
pub async fn drain_edge(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    admin(&s, &headers)?;
    if s.store.request_drain(&id).await? {
        info!(edge = %id, "drain requested");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Fail::new(ErrorCode::NotFound, format!("unknown edge {id}")))
    }
}

/// `POST /v1/admin/secrets/rotate`: new current TURN secret and ticket key; the previous ones
/// keep verifying until the next rotations push them out.
#[utoipa::path(post, path = "/v1/admin/secrets/rotate", responses((status = 200, body = RotatedSecrets)), security(("admin_token" = [])))]
pub async fn rotate_secrets(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> ApiResult<Json<RotatedSecrets>> {
    admin(&s, &headers)?;
    let (turn, ticket) = crate::rotate(&s.store).await?;
    info!(turn_key = %turn, ticket_key = %ticket, "secrets rotated");
    Ok(Json(RotatedSecrets {
        turn_key_id: turn,
        ticket_key_id: ticket,
    }))
}

/// `GET /healthz`.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = String), (status = 503, body = String)))]
pub async fn healthz(State(s): State<Shared>) -> Response {
    match s.store.keys(SecretKind::Turn).await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")).into_response(),
    }
}

/// `GET /metrics` (Prometheus text format).
#[utoipa::path(get, path = "/metrics", responses((status = 200, body = String, content_type = "text/plain")))]
pub async fn metrics(State(s): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// Unguessable lowercase hex id of `bytes` random bytes.
pub(crate) fn random_id(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::Rng::fill(&mut rand::rng(), &mut b[..]);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
