//! `cloudproxy rtn`: a small stand-in for the media network, for the demo and the tests.
//!
//! * a WebSocket signalling gateway at `GET /signal` with channels (join with App ID, channel,
//!   uid and join token; leave; member events; SDP offer/answer) — see `PROTOCOL.md`;
//! * a WebRTC media endpoint (str0m, ICE-lite, one UDP socket for every peer) that forwards
//!   each member's audio/video RTP to the other members of its channel (an SFU).
//!
//! It is not the product; it makes the product demonstrable.

#![warn(missing_docs)]

mod media;
mod signal;

/// The signalling messages (one definition with the SDK, in the `rtn-proto` crate).
pub use rtn_proto as protocol;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Configuration of [`Rtn::start`].
#[derive(Clone, serde::Deserialize)]
pub struct RtnConfig {
    /// TCP address of the signalling gateway (`GET /signal`), e.g. `0.0.0.0:8443`.
    pub signal_listen: SocketAddr,
    /// UDP address of the media endpoint, e.g. `0.0.0.0:50000` (port 0: any).
    pub media_listen: SocketAddr,
    /// The address put in the media endpoint's ICE host candidate (the address clients and
    /// TURN servers send media to); its port is the bound media port.
    pub media_public: IpAddr,
    /// App ID → App certificate, to verify join tokens (the same certificates the control
    /// plane holds).
    pub apps: HashMap<String, String>,
}

impl fmt::Debug for RtnConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RtnConfig")
            .field("signal_listen", &self.signal_listen)
            .field("media_listen", &self.media_listen)
            .field("media_public", &self.media_public)
            .field("apps", &self.apps.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why [`Rtn::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RtnError {
    /// The signalling TCP listener could not be bound.
    #[error("binding signalling listener {addr}: {source}")]
    BindSignal {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The media UDP socket could not be bound.
    #[error("binding media socket {addr}: {source}")]
    BindMedia {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// `media_public` is not usable as a candidate address (unspecified).
    #[error("media_public {0} is not a usable candidate address")]
    BadPublicAddr(IpAddr),
}

/// A running stand-in media network. Dropping it stops it.
pub struct Rtn {
    signal_addr: SocketAddr,
    media_addr: SocketAddr,
    media_candidate: SocketAddr,
    signal_task: JoinHandle<()>,
    media_task: JoinHandle<()>,
}

impl fmt::Debug for Rtn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rtn")
            .field("signal_addr", &self.signal_addr)
            .field("media_addr", &self.media_addr)
            .field("media_candidate", &self.media_candidate)
            .finish()
    }
}

impl Rtn {
    /// Binds both sockets and starts the gateway and the media task on the current tokio
    /// runtime.
    pub async fn start(cfg: RtnConfig) -> Result<Self, RtnError> {
        if cfg.media_public.is_unspecified() {
            return Err(RtnError::BadPublicAddr(cfg.media_public));
        }
        let listener = tokio::net::TcpListener::bind(cfg.signal_listen)
            .await
            .map_err(|source| RtnError::BindSignal {
                addr: cfg.signal_listen,
                source,
            })?;
        let signal_addr = listener
            .local_addr()
            .map_err(|source| RtnError::BindSignal {
                addr: cfg.signal_listen,
                source,
            })?;
        let socket = tokio::net::UdpSocket::bind(cfg.media_listen)
            .await
            .map_err(|source| RtnError::BindMedia {
                addr: cfg.media_listen,
                source,
            })?;
        let media_addr = socket.local_addr().map_err(|source| RtnError::BindMedia {
            addr: cfg.media_listen,
            source,
        })?;
        let media_candidate = SocketAddr::new(cfg.media_public, media_addr.port());

        let crypto = Arc::new(str0m::crypto::from_feature_flags());
        let (media_tx, media_rx) = mpsc::unbounded_channel();
        let media_task = tokio::spawn(media::run(socket, media_candidate, media_rx, crypto));

        let shared = Arc::new(signal::Shared::new(cfg.apps, media_tx));
        let app = signal::router(shared);
        let signal_task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "signalling gateway stopped");
            }
        });
        tracing::info!(%signal_addr, %media_addr, %media_candidate, "rtn started");
        Ok(Rtn {
            signal_addr,
            media_addr,
            media_candidate,
            signal_task,
            media_task,
        })
    }

    /// The bound signalling address (`ws://{signal_addr}/signal`).
    pub fn signal_addr(&self) -> SocketAddr {
        self.signal_addr
    }

    /// The bound media UDP address.
    pub fn media_addr(&self) -> SocketAddr {
        self.media_addr
    }

    /// The media address announced in the ICE candidate (`media_public` and the bound port).
    pub fn media_candidate(&self) -> SocketAddr {
        self.media_candidate
    }

    /// Runs until either task ends (they do not, unless a socket fails).
    pub async fn wait(&mut self) {
        tokio::select! {
            _ = &mut self.signal_task => {}
            _ = &mut self.media_task => {}
        }
    }
}

impl Drop for Rtn {
    fn drop(&mut self) {
        self.signal_task.abort();
        self.media_task.abort();
    }
}
