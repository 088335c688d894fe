//! `cloudproxy control`: the control plane. It provisions App IDs, answers the proxy-info
//! request a client makes before it joins (which edges, which credentials), keeps the registry
//! of live edges, counts concurrency per App ID and renders firewall whitelists.
//!
//! It talks to edges only over HTTP (their heartbeats); the state lives in a [`store::Store`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admission;
pub mod api;
pub mod config;
pub mod metrics;
pub mod openapi;
pub mod store;
pub mod tls;
pub mod whitelist;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use control_api::{ErrorCode, KeyEntry};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, Instrument};

pub use config::{ControlConfig, GeoRule};
use store::{SecretKind, Store, StoreError};

/// The shared test pool for mainland China ("domestic").
pub const TEST_POOL_CN: &str = "test-cn";
/// The shared test pool for everywhere else ("overseas").
pub const TEST_POOL_GLOBAL: &str = "test-global";

/// Keys of each kind kept for verification after rotations.
const KEYS_KEPT: usize = 3;

/// State shared by every handler.
pub struct AppState {
    /// Settings.
    pub cfg: ControlConfig,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Counters.
    pub metrics: metrics::Metrics,
    admin_token: String,
    edge_tokens: Vec<String>,
    clock: Clock,
}

/// Unix seconds. The system clock in production; tests pass a clock they move themselves,
/// so leases expire without sleeping.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

impl AppState {
    /// Unix time now, by the service's clock.
    pub(crate) fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Edges whose lease ended this long ago are forgotten.
    pub(crate) fn forget_after(&self) -> u64 {
        self.cfg.edge_lease_secs * 20
    }

    /// Addresses clients reach the control plane at.
    pub(crate) fn public_addresses(&self) -> Vec<String> {
        if !self.cfg.public_addresses.is_empty() {
            self.cfg.public_addresses.clone()
        } else if !self.cfg.listen.ip().is_unspecified() {
            vec![self.cfg.listen.ip().to_string()]
        } else {
            Vec::new()
        }
    }
}

/// Handle to shared state.
pub type Shared = Arc<AppState>;

/// A running control plane.
pub struct ControlPlane {
    addr: SocketAddr,
    ca_pem: Option<String>,
    admin_token: String,
    edge_token: String,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad settings.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// TLS material unusable.
    #[error("tls: {0}")]
    Tls(String),
    /// The listen address could not be bound.
    #[error("cannot bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

impl ControlPlane {
    /// Opens the embedded store in `cfg.data_dir` and starts serving (on the current tokio
    /// runtime). In dev mode missing tokens are generated and reported by
    /// [`Self::admin_token`] / [`Self::edge_token`].
    pub async fn start(cfg: ControlConfig) -> Result<Self, StartError> {
        let store = store::sqlite::SqliteStore::open(&cfg.data_dir)?;
        Self::start_with_store(cfg, Arc::new(store)).await
    }

    /// Starts serving with a given store.
    pub async fn start_with_store(
        cfg: ControlConfig,
        store: Arc<dyn Store>,
    ) -> Result<Self, StartError> {
        Self::start_with(cfg, store, Arc::new(api::system_clock)).await
    }

    /// Starts serving with a given store and clock.
    pub async fn start_with(
        cfg: ControlConfig,
        store: Arc<dyn Store>,
        clock: Clock,
    ) -> Result<Self, StartError> {
        cfg.validate()?;
        let admin_token = cfg
            .admin_token
            .clone()
            .unwrap_or_else(|| api::random_id(16));
        let mut edge_tokens = cfg.edge_tokens.clone();
        if edge_tokens.is_empty() {
            edge_tokens.push(api::random_id(16));
        }
        let (cert, key, ca_pem) = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(c), Some(k)) => (c.clone(), k.clone(), None),
            _ => {
                let names = cfg.public_addresses.clone();
                let (c, k) = tls::dev_pair(&cfg.data_dir, &names).map_err(StartError::Tls)?;
                let pem =
                    std::fs::read_to_string(&c).map_err(|e| StartError::Tls(e.to_string()))?;
                (c, k, Some(pem))
            }
        };
        let tls = tls::load(&cert, &key).map_err(StartError::Tls)?;
        ensure_keys(&store).await?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| StartError::Bind(cfg.listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Bind(cfg.listen, e))?;
        let edge_token = edge_tokens[0].clone();
        let state = Arc::new(AppState {
            cfg,
            store,
            metrics: Default::default(),
            admin_token: admin_token.clone(),
            edge_tokens,
            clock,
        });
        let router = router(state.clone());
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(serve_tls(
            listener,
            tokio_rustls::TlsAcceptor::from(tls),
            router,
            rx,
        ));
        info!(%addr, "control plane serving HTTPS");
        Ok(Self {
            addr,
            ca_pem,
            admin_token,
            edge_token,
            shutdown,
            task,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The dev-mode certificate (PEM), for clients to trust.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// An edge bearer token.
    pub fn edge_token(&self) -> &str {
        &self.edge_token
    }

    /// Stops accepting and waits for the accept loop.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Generates the first TURN secret and ticket key if the store has none.
async fn ensure_keys(store: &Arc<dyn Store>) -> Result<(), StoreError> {
    for kind in [SecretKind::Turn, SecretKind::Ticket] {
        if store.keys(kind).await?.is_empty() {
            push_new_key(store, kind).await?;
        }
    }
    Ok(())
}

async fn push_new_key(store: &Arc<dyn Store>, kind: SecretKind) -> Result<String, StoreError> {
    let prefix = match kind {
        SecretKind::Turn => "t",
        SecretKind::Ticket => "k",
    };
    let key_id = format!("{prefix}{}", api::random_id(4));
    store
        .push_key(
            kind,
            KeyEntry {
                key_id: key_id.clone(),
                secret: api::random_id(32),
            },
            KEYS_KEPT,
        )
        .await?;
    Ok(key_id)
}

/// Rotates both key kinds; returns the new key ids.
pub(crate) async fn rotate(store: &Arc<dyn Store>) -> Result<(String, String), StoreError> {
    Ok((
        push_new_key(store, SecretKind::Turn).await?,
        push_new_key(store, SecretKind::Ticket).await?,
    ))
}

/// The HTTP routes (ARCHITECTURE §9).
pub fn router(state: Shared) -> Router {
    let limit = state.cfg.max_body_bytes;
    let timeout = Duration::from_secs(state.cfg.request_timeout_secs);
    // The public proxy-info routes are called by web pages served from the app's own origin:
    // they answer CORS preflights for any origin (they need no cookies; the join token is the
    // credential). The admin and edge APIs send no CORS headers, so browsers cannot call them
    // cross-origin.
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([axum::http::Method::POST, axum::http::Method::DELETE])
        .allow_headers([axum::http::header::CONTENT_TYPE]);
    let public = Router::new()
        .route("/v1/proxy", post(api::proxy))
        .route("/v1/proxy/{session}", delete(api::release))
        .layer(cors);
    Router::new()
        .merge(public)
        .route("/v1/edges/heartbeat", post(api::heartbeat))
        .route("/v1/admin/apps", post(api::create_app).get(api::list_apps))
        .route(
            "/v1/admin/apps/{app_id}",
            get(api::show_app)
                .patch(api::update_app)
                .delete(api::delete_app),
        )
        .route("/v1/admin/apps/{app_id}/promote", post(api::promote_app))
        .route("/v1/admin/apps/{app_id}/whitelist", get(api::app_whitelist))
        .route("/v1/admin/apps/{app_id}/usage", get(api::app_usage))
        .route("/v1/admin/edges", get(api::list_edges))
        .route("/v1/admin/edges/{id}/drain", post(api::drain_edge))
        .route("/v1/admin/secrets/rotate", post(api::rotate_secrets))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/openapi.json", get(openapi::serve))
        .fallback(|| async {
            api::Fail(control_api::ApiError::new(
                ErrorCode::NotFound,
                "no such route",
            ))
        })
        .layer(axum::middleware::from_fn(request_id))
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(state)
}

/// Gives every request an id (taken from `X-Request-Id` when a proxy in front set one), logs
/// the request with it, and returns it in the response.
async fn request_id(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map(str::to_owned)
        .unwrap_or_else(|| api::random_id(8));
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    async move {
        let mut resp = next.run(req).await;
        let status = resp.status();
        if status.is_server_error() || status.is_client_error() {
            info!(status = status.as_u16(), "request refused");
        } else {
            debug!(status = status.as_u16(), "request served");
        }
        if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        resp
    }
    .instrument(span)
    .await
}

/// Accept loop: TLS handshake (bounded in time), then HTTP/1.1 or HTTP/2 on the connection.
async fn serve_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower::ServiceExt;
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    router.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(tls), svc).await {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
