//! The relay proper, after both sides are connected.
//!
//! Two pumps run concurrently, client → upstream and upstream → client. Each reads one frame,
//! then awaits its delivery (send + flush) before reading the next, so a slow reader on one
//! side stops the pump feeding it and, through TCP flow control, the writer on the other side:
//! natural backpressure, with at most one frame (≤ `max_frame_bytes`) in flight per direction
//! and no queue anywhere.
//!
//! - Text, binary and close frames are forwarded (a close keeps its code and reason). Pings are
//!   answered where they arrive (tungstenite replies on its own) and not forwarded; pongs are
//!   dropped. Every frame read counts as activity.
//! - With a TCP upstream, text and binary frames are written as their bytes; bytes read become
//!   binary frames of at most `min(max_frame_bytes, 64 KiB)`. EOF from the upstream closes the
//!   client with 1000.
//! - The relay ends when either side closes or fails, when a frame larger than
//!   `max_frame_bytes` arrives (1009 to the side that sent it), or after `idle_timeout` without
//!   a frame either way (1000 "idle timeout" to both). The other side is then closed too, with
//!   [`CLOSE_GRACE`] for the closing handshakes before the sockets are dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{self, CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as UpstreamCloseFrame;
use tokio_tungstenite::tungstenite::{self as ts, Message as UpstreamMessage};
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use super::ws::Proto;

/// How long closing handshakes may take once a relay ends.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Largest read from a TCP upstream (one binary frame).
const TCP_CHUNK: usize = 64 * 1024;

/// Close codes (RFC 6455 §7.4.1).
const NORMAL: u16 = 1000;
const GOING_AWAY: u16 = 1001;
const TOO_BIG: u16 = 1009;
const INTERNAL: u16 = 1011;

type UpstreamWs = WebSocketStream<TcpStream>;

/// The connected upstream.
pub(super) enum Upstream {
    /// A WebSocket client connection (boxed: it is much larger than a `TcpStream`).
    Ws(Box<UpstreamWs>),
    /// A raw TCP connection.
    Tcp(TcpStream),
}

/// What a relay is, for its limits and log lines.
pub(super) struct Relay {
    pub(super) client: Option<SocketAddr>,
    pub(super) upstream: String,
    pub(super) proto: Proto,
    pub(super) app_id: String,
    pub(super) session: String,
    /// Zero disables the idle timeout.
    pub(super) idle_timeout: Duration,
    pub(super) max_frame_bytes: usize,
}

/// Why a relay ended.
#[derive(Debug)]
enum End {
    /// The client sent a close frame (forwarded as is).
    ClientClosed(Option<CloseFrame>),
    /// The client's connection ended or failed without a close frame.
    ClientGone(String),
    /// The client sent a frame over the limit.
    ClientTooBig,
    /// The upstream sent a close frame (code, reason), or EOF for TCP (`None`).
    UpstreamClosed(Option<(u16, String)>),
    /// The upstream's connection ended or failed without a close frame.
    UpstreamGone(String),
    /// The upstream sent a frame over the limit.
    UpstreamTooBig,
    /// No frame either way for the idle timeout.
    Idle,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::ClientClosed(Some(c)) => write!(f, "client closed ({} {})", c.code, c.reason),
            End::ClientClosed(None) => f.write_str("client closed"),
            End::ClientGone(e) => write!(f, "client connection lost: {e}"),
            End::ClientTooBig => f.write_str("client frame over the size limit"),
            End::UpstreamClosed(Some((code, reason))) => {
                write!(f, "upstream closed ({code} {reason})")
            }
            End::UpstreamClosed(None) => f.write_str("upstream closed"),
            End::UpstreamGone(e) => write!(f, "upstream connection lost: {e}"),
            End::UpstreamTooBig => f.write_str("upstream frame over the size limit"),
            End::Idle => f.write_str("idle timeout"),
        }
    }
}

/// Activity and counters of one relay, shared by its pumps (same task, so relaxed atomics).
struct Stats {
    start: Instant,
    /// Milliseconds after `start` of the last frame either way.
    last_ms: AtomicU64,
    up_frames: AtomicU64,
    up_bytes: AtomicU64,
    down_frames: AtomicU64,
    down_bytes: AtomicU64,
}

impl Stats {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            up_frames: AtomicU64::new(0),
            up_bytes: AtomicU64::new(0),
            down_frames: AtomicU64::new(0),
            down_bytes: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn up(&self, len: usize) {
        self.up_frames.fetch_add(1, Ordering::Relaxed);
        self.up_bytes.fetch_add(len as u64, Ordering::Relaxed);
    }

    fn down(&self, len: usize) {
        self.down_frames.fetch_add(1, Ordering::Relaxed);
        self.down_bytes.fetch_add(len as u64, Ordering::Relaxed);
    }
}

/// Runs one relay to its end; called with the upgraded client socket.
pub(super) async fn run(client: WebSocket, upstream: Upstream, relay: Relay) {
    let who = super::Client(relay.client);
    debug!(
        client = %who, upstream = %relay.upstream, proto = relay.proto.as_str(),
        app_id = %relay.app_id, session = %relay.session,
        "signal relay started"
    );
    let stats = Stats::new();
    let end = match upstream {
        Upstream::Ws(ws) => relay_ws(client, *ws, &relay, &stats).await,
        Upstream::Tcp(tcp) => relay_tcp(client, tcp, &relay, &stats).await,
    };
    debug!(
        client = %who, upstream = %relay.upstream, proto = relay.proto.as_str(),
        app_id = %relay.app_id, session = %relay.session,
        duration_ms = u64::try_from(stats.start.elapsed().as_millis()).unwrap_or(u64::MAX),
        up_frames = stats.up_frames.load(Ordering::Relaxed),
        up_bytes = stats.up_bytes.load(Ordering::Relaxed),
        down_frames = stats.down_frames.load(Ordering::Relaxed),
        down_bytes = stats.down_bytes.load(Ordering::Relaxed),
        "signal relay ended: {end}"
    );
}

async fn relay_ws(client: WebSocket, upstream: UpstreamWs, relay: &Relay, stats: &Stats) -> End {
    let (mut c_tx, mut c_rx) = client.split();
    let (mut u_tx, mut u_rx) = upstream.split();
    let max = relay.max_frame_bytes;
    let end = tokio::select! {
        e = client_to_ws(&mut c_rx, &mut u_tx, max, stats) => e,
        e = ws_to_client(&mut u_rx, &mut c_tx, max, stats) => e,
        () = idle(stats, relay.idle_timeout) => End::Idle,
    };
    let (to_client, to_upstream) = closes(&end);
    let to_upstream = to_upstream.map(|f| {
        f.map(|f| UpstreamCloseFrame {
            code: CloseCode::from(f.code),
            reason: ts::Utf8Bytes::from(f.reason.as_str()),
        })
    });
    let finish = async {
        tokio::join!(
            async {
                if let Some(frame) = to_client {
                    let _ = c_tx.send(Message::Close(frame)).await;
                }
                let _ = c_tx.flush().await;
                while let Some(Ok(_)) = c_rx.next().await {}
            },
            async {
                if let Some(frame) = to_upstream {
                    let _ = u_tx.send(UpstreamMessage::Close(frame)).await;
                }
                let _ = u_tx.flush().await;
                while let Some(Ok(_)) = u_rx.next().await {}
            },
        )
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, finish).await;
    end
}

async fn relay_tcp(client: WebSocket, upstream: TcpStream, relay: &Relay, stats: &Stats) -> End {
    let (mut c_tx, mut c_rx) = client.split();
    let (mut u_r, mut u_w) = upstream.into_split();
    let max = relay.max_frame_bytes;
    let end = tokio::select! {
        e = client_to_tcp(&mut c_rx, &mut u_w, max, stats) => e,
        e = tcp_to_client(&mut u_r, &mut c_tx, max, stats) => e,
        () = idle(stats, relay.idle_timeout) => End::Idle,
    };
    let (to_client, to_upstream) = closes(&end);
    let finish = async {
        tokio::join!(
            async {
                if let Some(frame) = to_client {
                    let _ = c_tx.send(Message::Close(frame)).await;
                }
                let _ = c_tx.flush().await;
                while let Some(Ok(_)) = c_rx.next().await {}
            },
            async {
                if to_upstream.is_some() {
                    let _ = u_w.shutdown().await;
                }
            },
        )
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, finish).await;
    end
}

/// The close frames to send once a relay ends: `(to client, to upstream)`, where `None` means
/// "send nothing" (that side already closed) and `Some(None)` a close frame without a code.
#[allow(clippy::type_complexity)]
fn closes(end: &End) -> (Option<Option<CloseFrame>>, Option<Option<CloseFrame>>) {
    fn frame(code: u16, reason: &str) -> Option<Option<CloseFrame>> {
        Some(Some(CloseFrame {
            code,
            reason: ws::Utf8Bytes::from(reason),
        }))
    }
    match end {
        End::ClientClosed(f) => (None, Some(f.clone())),
        End::ClientGone(_) => (None, frame(GOING_AWAY, "client gone")),
        End::ClientTooBig => (
            frame(TOO_BIG, "frame too big"),
            frame(GOING_AWAY, "client gone"),
        ),
        End::UpstreamClosed(Some((code, reason))) => (frame(*code, reason), None),
        End::UpstreamClosed(None) => (frame(NORMAL, "upstream closed"), None),
        End::UpstreamGone(_) => (frame(INTERNAL, "upstream connection lost"), None),
        End::UpstreamTooBig => (
            frame(INTERNAL, "upstream frame too big"),
            frame(TOO_BIG, "frame too big"),
        ),
        End::Idle => (frame(NORMAL, "idle timeout"), frame(NORMAL, "idle timeout")),
    }
}

/// Returns once no frame has passed either way for `timeout` (never if it is zero).
async fn idle(stats: &Stats, timeout: Duration) {
    if timeout.is_zero() {
        return std::future::pending().await;
    }
    loop {
        let last = stats.start + Duration::from_millis(stats.last_ms.load(Ordering::Relaxed));
        let deadline = last + timeout;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// Classifies a read error on the client's socket.
fn client_error(e: axum::Error) -> End {
    match e.into_inner().downcast::<ts::Error>() {
        Ok(e) if matches!(*e, ts::Error::Capacity(_)) => End::ClientTooBig,
        Ok(e) => End::ClientGone(e.to_string()),
        Err(e) => End::ClientGone(e.to_string()),
    }
}

/// Classifies a read error on the upstream's WebSocket.
fn upstream_error(e: ts::Error) -> End {
    match e {
        ts::Error::Capacity(_) => End::UpstreamTooBig,
        e => End::UpstreamGone(e.to_string()),
    }
}

/// The next data frame from the client (pings and pongs are activity only), or why there is
/// none.
async fn next_from_client(
    rx: &mut SplitStream<WebSocket>,
    max: usize,
    stats: &Stats,
) -> Result<Message, End> {
    loop {
        let msg = match rx.next().await {
            None => return Err(End::ClientGone("connection ended".into())),
            Some(Err(e)) => return Err(client_error(e)),
            Some(Ok(m)) => m,
        };
        stats.touch();
        match &msg {
            Message::Text(t) if t.len() > max => return Err(End::ClientTooBig),
            Message::Binary(b) if b.len() > max => return Err(End::ClientTooBig),
            Message::Text(_) | Message::Binary(_) => return Ok(msg),
            // tungstenite has already queued the pong; the next read flushes it.
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(f) => return Err(End::ClientClosed(f.clone())),
        }
    }
}

async fn client_to_ws(
    rx: &mut SplitStream<WebSocket>,
    tx: &mut SplitSink<UpstreamWs, UpstreamMessage>,
    max: usize,
    stats: &Stats,
) -> End {
    loop {
        let out = match next_from_client(rx, max, stats).await {
            Err(end) => return end,
            Ok(Message::Text(t)) => match ts::Utf8Bytes::try_from(Bytes::from(t)) {
                Ok(t) => UpstreamMessage::Text(t),
                Err(e) => return End::ClientGone(e.to_string()),
            },
            Ok(Message::Binary(b)) => UpstreamMessage::Binary(b),
            Ok(_) => continue,
        };
        stats.up(out.len());
        if let Err(e) = tx.send(out).await {
            return End::UpstreamGone(e.to_string());
        }
    }
}

async fn ws_to_client(
    rx: &mut SplitStream<UpstreamWs>,
    tx: &mut SplitSink<WebSocket, Message>,
    max: usize,
    stats: &Stats,
) -> End {
    loop {
        let msg = match rx.next().await {
            None => return End::UpstreamGone("connection ended".into()),
            Some(Err(e)) => return upstream_error(e),
            Some(Ok(m)) => m,
        };
        stats.touch();
        let out = match msg {
            UpstreamMessage::Text(t) if t.len() <= max => {
                match ws::Utf8Bytes::try_from(Bytes::from(t)) {
                    Ok(t) => Message::Text(t),
                    Err(e) => return End::UpstreamGone(e.to_string()),
                }
            }
            UpstreamMessage::Binary(b) if b.len() <= max => Message::Binary(b),
            UpstreamMessage::Text(_) | UpstreamMessage::Binary(_) => return End::UpstreamTooBig,
            UpstreamMessage::Close(f) => {
                return End::UpstreamClosed(f.map(|f| (u16::from(f.code), f.reason.to_string())))
            }
            UpstreamMessage::Ping(_) | UpstreamMessage::Pong(_) | UpstreamMessage::Frame(_) => {
                continue
            }
        };
        let len = match &out {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
            _ => 0,
        };
        stats.down(len);
        if let Err(e) = tx.send(out).await {
            return End::ClientGone(e.to_string());
        }
    }
}

async fn client_to_tcp(
    rx: &mut SplitStream<WebSocket>,
    tx: &mut OwnedWriteHalf,
    max: usize,
    stats: &Stats,
) -> End {
    loop {
        let data = match next_from_client(rx, max, stats).await {
            Err(end) => return end,
            Ok(Message::Text(t)) => Bytes::from(t),
            Ok(Message::Binary(b)) => b,
            Ok(_) => continue,
        };
        stats.up(data.len());
        if let Err(e) = tx.write_all(&data).await {
            return End::UpstreamGone(e.to_string());
        }
    }
}

async fn tcp_to_client(
    rx: &mut OwnedReadHalf,
    tx: &mut SplitSink<WebSocket, Message>,
    max: usize,
    stats: &Stats,
) -> End {
    let mut buf = vec![0u8; max.clamp(1, TCP_CHUNK)];
    loop {
        let n = match rx.read(&mut buf).await {
            Ok(0) => return End::UpstreamClosed(None),
            Ok(n) => n,
            Err(e) => return End::UpstreamGone(e.to_string()),
        };
        stats.touch();
        stats.down(n);
        if let Err(e) = tx
            .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .await
        {
            return End::ClientGone(e.to_string());
        }
    }
}
