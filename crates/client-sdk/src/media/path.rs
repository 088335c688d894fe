//! How media datagrams leave and enter the client: straight from a UDP socket (no proxy), or
//! through a TURN allocation on the edge over UDP, TCP or TLS (the cloud proxy's modes 3, 4
//! and 5). The TURN protocol itself is the sans-IO [`turn_proto::client::TurnClient`]; this
//! file only moves its bytes and keeps its clock.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use turn_proto::client::{TurnClient, TurnClientConfig, TurnClientEvent};
use turn_proto::codec::frame_len;

use control_api::TransportMode;

/// Largest datagram or frame read.
const MAX_PACKET: usize = 65_600;

/// A byte stream to a TURN server (TCP or TLS).
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// The write side of the link to the TURN server. Reads happen in a task of their own
/// ([`spawn_udp_reader`], `spawn_stream_reader`) that hands whole datagrams/frames over a channel, so the media loop can
/// wait on them in a `select!` without ever cancelling a half-done read or write.
enum Writer {
    Udp {
        sock: Arc<UdpSocket>,
        server: SocketAddr,
    },
    Stream(WriteHalf<Box<dyn Stream>>),
}

impl Writer {
    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Writer::Udp { sock, server } => sock.send_to(bytes, *server).await.map(drop),
            Writer::Stream(wr) => wr.write_all(bytes).await,
        }
    }
}

/// A reader task, stopped when this is dropped.
pub(crate) struct Reader(JoinHandle<()>);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the reader task hands over: a datagram or frame and who sent it, or why reading
/// stopped (then the channel closes).
pub(crate) type Incoming = io::Result<(SocketAddr, Vec<u8>)>;

/// Reads datagrams from `sock` (all of them, with their source) into a channel.
pub(crate) fn spawn_udp_reader(sock: Arc<UdpSocket>) -> (mpsc::Receiver<Incoming>, Reader) {
    let (tx, rx) = mpsc::channel(256);
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_PACKET];
        loop {
            let r = sock
                .recv_from(&mut buf)
                .await
                .map(|(n, from)| (from, buf[..n].to_vec()));
            let stop = r.is_err();
            if tx.send(r).await.is_err() || stop {
                return;
            }
        }
    });
    (rx, Reader(task))
}

/// Reads whole TURN frames from a byte stream into a channel; `from` labels them.
fn spawn_stream_reader(
    mut rd: ReadHalf<Box<dyn Stream>>,
    from: SocketAddr,
) -> (mpsc::Receiver<Incoming>, Reader) {
    let (tx, rx) = mpsc::channel(256);
    let task = tokio::spawn(async move {
        let mut pending = vec![0u8; 4096];
        let mut filled = 0usize;
        loop {
            let r = match frame_len(&pending[..filled]) {
                Ok(Some((_, len))) => {
                    let frame = pending[..len].to_vec();
                    pending.copy_within(len..filled, 0);
                    filled -= len;
                    Ok((from, frame))
                }
                Ok(None) => {
                    if filled == pending.len() {
                        pending.resize(pending.len() * 2, 0);
                    }
                    match rd.read(&mut pending[filled..]).await {
                        Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
                        Ok(n) => {
                            filled += n;
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            };
            let stop = r.is_err();
            if tx.send(r).await.is_err() || stop {
                return;
            }
        }
    });
    (rx, Reader(task))
}

/// Where a [`TurnPath`] connects and who it is.
#[derive(Debug, Clone)]
pub(crate) struct TurnTarget {
    /// The edge's TURN address for the transport.
    pub addr: SocketAddr,
    /// Host name for TLS (SNI and certificate check).
    pub host: String,
    /// UDP, TCP or TLS.
    pub transport: TransportMode,
    /// TURN username.
    pub username: String,
    /// TURN password.
    pub password: String,
}

/// A TURN allocation in use: the client state machine and its link.
pub(crate) struct TurnPath {
    turn: TurnClient,
    writer: Writer,
    server: SocketAddr,
    /// Datagrams/frames from the server (see [`Writer`]).
    pub(crate) rx: mpsc::Receiver<Incoming>,
    _reader: Reader,
    relayed: SocketAddr,
    scratch: Vec<u8>,
}

impl TurnPath {
    /// Connects to the edge and allocates a UDP relay, within `deadline`.
    pub(crate) async fn allocate(
        target: &TurnTarget,
        tls: &Arc<rustls::ClientConfig>,
        deadline: Duration,
    ) -> Result<Self, String> {
        tokio::time::timeout(deadline, Self::allocate_inner(target, tls))
            .await
            .map_err(|_| format!("no TURN allocation within {deadline:?}"))?
    }

    async fn allocate_inner(
        target: &TurnTarget,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<Self, String> {
        let reliable = target.transport != TransportMode::Udp;
        let (mut writer, (mut rx, reader)) = match target.transport {
            TransportMode::Udp => {
                let bind: SocketAddr = if target.addr.is_ipv4() {
                    (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let sock = Arc::new(
                    UdpSocket::bind(bind)
                        .await
                        .map_err(|e| format!("UDP socket: {e}"))?,
                );
                let reader = spawn_udp_reader(sock.clone());
                let w = Writer::Udp {
                    sock,
                    server: target.addr,
                };
                (w, reader)
            }
            TransportMode::Tcp | TransportMode::Tls => {
                let tcp = TcpStream::connect(target.addr)
                    .await
                    .map_err(|e| format!("TCP connect {}: {e}", target.addr))?;
                let _ = tcp.set_nodelay(true);
                let stream: Box<dyn Stream> = if target.transport == TransportMode::Tls {
                    let name = ServerName::try_from(target.host.clone())
                        .map_err(|e| format!("TLS name {}: {e}", target.host))?;
                    let tls = tokio_rustls::TlsConnector::from(tls.clone())
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("TLS handshake with {}: {e}", target.addr))?;
                    Box::new(tls)
                } else {
                    Box::new(tcp)
                };
                let (rd, wr) = tokio::io::split(stream);
                (Writer::Stream(wr), spawn_stream_reader(rd, target.addr))
            }
        };
        let mut turn = TurnClient::new(
            TurnClientConfig {
                username: target.username.clone(),
                password: target.password.clone(),
                reliable,
            },
            rand_salt(),
        );
        turn.allocate(Instant::now());
        loop {
            while let Some(bytes) = turn.poll_transmit() {
                writer
                    .send(&bytes)
                    .await
                    .map_err(|e| format!("sending to {}: {e}", target.addr))?;
            }
            while let Some(ev) = turn.poll_event() {
                match ev {
                    TurnClientEvent::Allocated { relayed, .. } => {
                        return Ok(Self {
                            turn,
                            writer,
                            server: target.addr,
                            rx,
                            _reader: reader,
                            relayed,
                            scratch: Vec::with_capacity(2048),
                        })
                    }
                    TurnClientEvent::Failed(e) => return Err(format!("TURN: {e}")),
                    TurnClientEvent::ChannelBound { .. } => {}
                }
            }
            let wake = turn
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                r = rx.recv() => {
                    let r = r.unwrap_or_else(|| Err(io::ErrorKind::UnexpectedEof.into()));
                    let (from, bytes) = r.map_err(|e| format!("receiving from {}: {e}", target.addr))?;
                    if from == target.addr {
                        turn.handle_input(Instant::now(), &bytes);
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => turn.handle_timeout(Instant::now()),
            }
        }
    }

    /// The relayed address (the media candidate).
    pub(crate) fn relayed(&self) -> SocketAddr {
        self.relayed
    }

    /// Sends `data` to `peer` through the relay (binding a channel to it on first use).
    pub(crate) async fn send_to(&mut self, peer: SocketAddr, data: &[u8]) -> io::Result<()> {
        self.turn.bind_peer(peer, Instant::now());
        self.flush().await?;
        let mut out = std::mem::take(&mut self.scratch);
        let ok = self.turn.encode_data(peer, data, &mut out);
        let r = if ok {
            self.writer.send(&out).await
        } else {
            Ok(())
        };
        self.scratch = out;
        r
    }

    /// One datagram/frame from [`Self::rx`]: peer data comes back as `(peer, bytes)`; TURN's
    /// own messages are handled (answers sent) and give `None`.
    pub(crate) async fn handle_incoming(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
    ) -> io::Result<Option<(SocketAddr, Vec<u8>)>> {
        if from != self.server {
            return Ok(None);
        }
        let data = self
            .turn
            .handle_input(Instant::now(), bytes)
            .map(|(p, d)| (p, d.to_vec()));
        self.check_events()?;
        self.flush().await?;
        Ok(data)
    }

    /// When TURN's timers need [`Self::handle_timeout`].
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.turn.poll_timeout()
    }

    /// Runs TURN's timers (refreshes, retransmissions).
    pub(crate) async fn handle_timeout(&mut self) -> io::Result<()> {
        self.turn.handle_timeout(Instant::now());
        self.check_events()?;
        self.flush().await
    }

    /// Ends the allocation (best effort) and stops reading.
    pub(crate) async fn close(&mut self) {
        self.turn.close();
        let _ = self.flush().await;
    }

    async fn flush(&mut self) -> io::Result<()> {
        while let Some(bytes) = self.turn.poll_transmit() {
            self.writer.send(&bytes).await?;
        }
        Ok(())
    }

    fn check_events(&mut self) -> io::Result<()> {
        while let Some(ev) = self.turn.poll_event() {
            match ev {
                TurnClientEvent::Failed(e) => {
                    tracing::warn!(error = %e, "TURN request failed");
                    if self.turn.relayed().is_none() {
                        return Err(io::Error::other(format!("TURN allocation lost: {e}")));
                    }
                }
                TurnClientEvent::ChannelBound { peer, channel } => {
                    tracing::debug!(%peer, channel, "TURN channel bound");
                }
                TurnClientEvent::Allocated { .. } => {}
            }
        }
        Ok(())
    }
}

/// Four bytes the path cannot predict, for transaction ids.
fn rand_salt() -> [u8; 4] {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5a17);
    (h.finish() as u32).to_be_bytes()
}
