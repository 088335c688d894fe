//! The front door of every TCP port: connection limits, PROXY protocol, TLS, and telling
//! TURN from HTTP so one port (443) carries media and signalling.
//!
//! Routing on the TLS port:
//! - first byte 0x16 (a TLS record): handshake (bounded in time), then ALPN `stun.turn` → TURN
//!   over TLS; `http/1.1` or `h2` → the signalling service; no ALPN → the first decrypted bytes
//!   decide (a STUN message → TURN, an HTTP method → HTTP);
//! - otherwise the plain bytes decide the same way, so TURN over plain TCP works on 443 too.
//!
//! A client that offers only ALPN protocols we do not speak fails the handshake (rustls sends
//! `no_application_protocol`). A connection that sends nothing is closed after the handshake
//! timeout.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tracing::{debug, info};

use crate::proxy_protocol;

/// ALPN id of TURN over TLS (RFC 7443).
pub const ALPN_TURN: &[u8] = b"stun.turn";

/// Any byte stream a client connection can be.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Connection counts per client address and in total, shared by every shard and port.
#[derive(Debug)]
pub struct ConnLimits {
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    total: AtomicUsize,
    max_per_ip: usize,
    max_total: usize,
}

impl ConnLimits {
    /// Limits of `max_per_ip` per address and `max_total` in all.
    pub fn new(max_per_ip: usize, max_total: usize) -> Arc<Self> {
        Arc::new(Self {
            per_ip: Mutex::new(HashMap::new()),
            total: AtomicUsize::new(0),
            max_per_ip,
            max_total,
        })
    }

    /// A slot for a connection from `ip`, or None when a limit is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnGuard> {
        let mut m = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return None;
        }
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        *n += 1;
        Some(ConnGuard {
            limits: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

/// Holds one slot; gives it back when dropped.
#[derive(Debug)]
pub struct ConnGuard {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

fn release(limits: &ConnLimits, ip: IpAddr) {
    let mut m = limits.per_ip.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = m.get_mut(&ip) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            m.remove(&ip);
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        release(&self.limits, self.ip);
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream that first yields bytes already read from it (while sniffing).
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `prefix` is replayed before `inner`'s bytes.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What the first bytes of a connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// A TLS record (handshake).
    Tls,
    /// A STUN message (TURN over a stream starts with one).
    Turn,
    /// An HTTP request line.
    Http,
    /// Nothing we serve.
    Unknown,
}

const HTTP_METHODS: [&[u8; 4]; 8] = [
    b"GET ", b"POST", b"PUT ", b"HEAD", b"OPTI", b"DELE", b"PATC", b"CONN",
];

/// Classifies the first (up to 8) bytes. TURN needs the STUN header's magic cookie, so an
/// HTTP method that happens to look like ChannelData is never taken for TURN.
pub fn sniff(b: &[u8]) -> Option<Sniffed> {
    if b.is_empty() {
        return None;
    }
    if b[0] == 0x16 {
        return Some(Sniffed::Tls);
    }
    if b.len() < 4 {
        return None;
    }
    if HTTP_METHODS.iter().any(|m| &b[..4] == m.as_slice()) {
        return Some(Sniffed::Http);
    }
    if b[0] >> 6 == 0 {
        if b.len() < 8 {
            return None;
        }
        return Some(
            if b[4..8] == turn_proto::codec::MAGIC_COOKIE.to_be_bytes() {
                Sniffed::Turn
            } else {
                Sniffed::Unknown
            },
        );
    }
    Some(Sniffed::Unknown)
}

/// Reads until `sniff` decides (at most 8 bytes), within `timeout`.
pub async fn read_sniff<S: AsyncRead + Unpin>(
    s: &mut S,
    timeout: Duration,
) -> io::Result<(Sniffed, Vec<u8>)> {
    let mut got = Vec::with_capacity(8);
    let work = async {
        loop {
            if let Some(kind) = sniff(&got) {
                return Ok(kind);
            }
            let mut b = [0u8; 8];
            let want = 8 - got.len();
            let n = s.read(&mut b[..want]).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before sending anything",
                ));
            }
            got.extend_from_slice(&b[..n]);
        }
    };
    let kind = tokio::time::timeout(timeout, work).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "sent nothing usable before the timeout",
        )
    })??;
    Ok((kind, got))
}

/// Reads a PROXY v2 header (when the operator enabled it) within `timeout`. Returns the client
/// address it names (or the socket's peer for LOCAL), and any bytes read past the header.
pub async fn read_proxy_header(
    s: &mut TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> io::Result<(SocketAddr, Vec<u8>)> {
    let work = async {
        let mut buf = Vec::with_capacity(64);
        loop {
            match proxy_protocol::parse(&buf) {
                Ok(Some(h)) => return Ok((h.source.unwrap_or(peer), buf[h.len..].to_vec())),
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
            let mut b = [0u8; 256];
            let n = s.read(&mut b).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed inside the PROXY header",
                ));
            }
            buf.extend_from_slice(&b[..n]);
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "PROXY header timed out"))?
}

/// Reloadable TLS settings: new connections take the current config; live ones keep theirs.
#[derive(Clone)]
pub struct TlsSettings {
    config: Arc<ArcSwap<rustls::ServerConfig>>,
    source: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl TlsSettings {
    /// From PEM files.
    pub fn from_files(cert: &std::path::Path, key: &std::path::Path) -> Result<Self, String> {
        let cfg = load_config(cert, key)?;
        Ok(Self {
            config: Arc::new(ArcSwap::from(cfg)),
            source: Some((cert.to_owned(), key.to_owned())),
        })
    }

    /// A self-signed certificate for `names` (development only).
    pub fn self_signed(names: Vec<String>) -> Result<Self, String> {
        let ck = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
        let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
        let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der())
            .map_err(|e| e.to_string())?;
        Ok(Self {
            config: Arc::new(ArcSwap::from(server_config(vec![cert], key)?)),
            source: None,
        })
    }

    /// The config for a new connection.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.config.load_full()
    }

    /// Re-reads the files; keeps the old config (and says why) when the new one is unusable.
    pub fn reload(&self) -> Result<bool, String> {
        let Some((cert, key)) = &self.source else {
            return Ok(false);
        };
        let cfg = load_config(cert, key)?;
        self.config.store(cfg);
        Ok(true)
    }

    /// The files, for change detection.
    pub fn files(&self) -> Option<&(std::path::PathBuf, std::path::PathBuf)> {
        self.source.as_ref()
    }
}

fn load_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    server_config(certs, key)
}

fn server_config(
    certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not match: {e}"))?;
    // TURN first: a TURN client offers only stun.turn; browsers offer h2 and http/1.1. HTTP/2
    // is not offered: WebSocket over HTTP/2 (RFC 8441) is not served.
    cfg.alpn_protocols = vec![ALPN_TURN.to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Watches the certificate files (every 2 s) and SIGHUP; reloads on either. Runs until
/// `stop` changes.
pub async fn watch_reload(tls: TlsSettings, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Some((cert, key)) = tls.files().cloned() else {
        return;
    };
    let stamp = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last = (stamp(&cert), stamp(&key));
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        let by_signal = tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => false,
            _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => true,
            _ = stop.changed() => return,
        };
        let now = (stamp(&cert), stamp(&key));
        if !by_signal && now == last {
            continue;
        }
        last = now;
        match tls.reload() {
            Ok(_) => {
                info!(cert = %cert.display(), by_signal, "TLS certificate reloaded; live connections keep theirs")
            }
            Err(e) => info!(error = %e, "TLS certificate reload failed; keeping the current one"),
        }
    }
}

/// Logs a refused connection without flooding: debug level, one line.
pub fn refused(port: u16, client: SocketAddr, why: &str) {
    debug!(port, %client, why, "connection closed");
}
