//! The cloudproxy Rust SDK (ARCHITECTURE §5).
//!
//! ```no_run
//! # async fn run() -> Result<(), client_sdk::SdkError> {
//! use client_sdk::{Client, ClientConfig, Event};
//!
//! let client = Client::new(ClientConfig {
//!     control_url: "https://proxy-control.example".into(),
//!     ..Default::default()
//! })?;
//! let mut events = client.events();
//! client.start_proxy_server(Some(5))?; // TLS 443 only; None or Some(3) = UDP
//! let info = client.join("my-app-id", "room", "<join token>", "alice").await?;
//! println!("ICE servers: {:?}", info.ice_servers());
//! println!("media: {:?}", client.media_stats()); // frames sent and received per member
//! while let Ok(ev) = events.try_recv() {
//!     if let Event::IsUsingCloudProxy { using, transport } = ev {
//!         println!("cloud proxy in use: {using} over {transport:?}");
//!     }
//! }
//! client.leave().await?;
//! # Ok(()) }
//! ```
//!
//! - [`rules`]: the call rules (modes, only while disconnected, mutual exclusion, stop turns
//!   everything off) as a pure state machine.
//! - [`Client::join`] with the cloud proxy asks the control plane (`POST /v1/proxy`), maps each
//!   refusal to its own [`JoinError`], then probes the offered edges in order on the mode's
//!   transport (STUN Binding over UDP, TCP, or TLS with ALPN `stun.turn`) and uses the first
//!   that answers; [`JoinError::EdgeUnreachable`] says what was tried.
//! - The join then reaches the media network ([`media`]): signalling through that edge's relay
//!   (`ws` on its plain port in modes 3 and 4, `wss` on 443 in mode 5), or directly to
//!   [`ClientConfig::rtn_signal_url`] without a proxy ([`JoinError::SignalUnreachable`],
//!   [`JoinError::SignalRefused`]); media through a TURN allocation on the edge
//!   ([`JoinError::MediaUnreachable`]), as a WebRTC session (str0m) with the SFU, publishing
//!   the SDK's test sources ([`Publish`]).
//!
//! - [`doctor`]: every whitelisted port of every mode checked the way a join would use it
//!   (what `cloudproxy doctor` prints).
//!
//! This crate never links the credential-minting code: it only carries what the control plane
//! hands out.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod config;
mod control;
pub mod doctor;
mod error;
pub mod media;
pub mod probe;
pub mod rules;
mod tls;

pub use client::{Client, CloudProxySession, Event, JoinInfo, Route, JOIN_CANCELLED};
pub use config::{ClientConfig, ProxyServer, TurnServer};
pub use control_api::{EdgeOffer, IceServer, TransportMode, TurnCredential};
pub use error::{JoinError, SdkError};
pub use media::{MediaStats, Publish, Received};
pub use rules::{ConnectionState, ProxySetting};
