//! One TURN client connection over TCP or TLS, non-blocking, driven by the worker's epoll loop.
//! Both carry the same frames (STUN messages and ChannelData padded to 4 bytes, RFC 8656
//! §12.5); TLS (RFC 7443 ALPN "stun.turn") only adds a rustls `ClientConnection` between our
//! plaintext buffers and the socket: `writer()` + `write_tls` out, `read_tls` +
//! `process_new_packets` + `reader()` in.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use turn_proto::codec::frame_len;

/// ALPN id of TURN over TLS (RFC 7443).
const ALPN_TURN: &[u8] = b"stun.turn";
/// Free space kept at the end of the receive buffer before each read.
const READ_ROOM: usize = 16 * 1024;

/// A TCP or TLS connection with its own plaintext buffers.
pub struct StreamConn {
    s: TcpStream,
    tls: Option<Box<ClientConnection>>,
    rx: RecvBuf,
    /// Plaintext not yet written to the socket (TCP) or handed to rustls (TLS).
    pub wbuf: Vec<u8>,
    /// Whether epoll currently watches for writability.
    want_write: bool,
    /// Closed by the server, or failed; no more reads or writes.
    pub closed: bool,
    /// Why it failed, when it was not a plain close.
    pub error: Option<String>,
}

impl StreamConn {
    pub fn new(s: TcpStream, tls: Option<ClientConnection>) -> Self {
        Self {
            s,
            tls: tls.map(Box::new),
            rx: RecvBuf::new(64 * 1024),
            wbuf: Vec::with_capacity(64 * 1024),
            want_write: false,
            closed: false,
            error: None,
        }
    }

    pub fn fd(&self) -> RawFd {
        self.s.as_raw_fd()
    }

    fn fail(&mut self, why: String) {
        self.closed = true;
        if self.error.is_none() {
            self.error = Some(why);
        }
    }

    /// Writes what the socket takes. Returns `Some(interest)` when the caller must change the
    /// epoll write interest to `interest`.
    pub fn flush(&mut self) -> Option<bool> {
        if !self.closed {
            if self.tls.is_some() {
                self.flush_tls();
            } else {
                self.flush_tcp();
            }
        }
        let want = !self.closed
            && (!self.wbuf.is_empty() || self.tls.as_ref().is_some_and(|t| t.wants_write()));
        (want != self.want_write).then(|| {
            self.want_write = want;
            want
        })
    }

    fn flush_tcp(&mut self) {
        let mut off = 0;
        while off < self.wbuf.len() {
            match self.s.write(&self.wbuf[off..]) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(format!("write: {e}"));
                    break;
                }
            }
        }
        self.wbuf.drain(..off);
    }

    fn flush_tls(&mut self) {
        let Self { s, tls, wbuf, .. } = self;
        let Some(tls) = tls.as_mut() else { return };
        let mut off = 0;
        let mut failed = None;
        'out: loop {
            // Plaintext into rustls, up to its buffer limit (64 KiB of records by default).
            while off < wbuf.len() {
                match tls.writer().write(&wbuf[off..]) {
                    Ok(0) => break,
                    Ok(n) => off += n,
                    Err(e) => {
                        failed = Some(format!("tls: {e}"));
                        break 'out;
                    }
                }
            }
            // Records out to the socket.
            while tls.wants_write() {
                match tls.write_tls(s) {
                    Ok(0) => {
                        failed = Some("connection closed".into());
                        break 'out;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 'out,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failed = Some(format!("write: {e}"));
                        break 'out;
                    }
                }
            }
            if off == wbuf.len() {
                break;
            }
        }
        wbuf.drain(..off);
        if let Some(why) = failed {
            self.fail(why);
        }
    }

    /// Reads everything that is ready and calls `on_frame` with each whole frame. A stream
    /// that is not TURN, a TLS error or end of stream closes the connection.
    pub fn read_ready(&mut self, mut on_frame: impl FnMut(&[u8])) {
        while !self.closed {
            let more = if self.tls.is_some() {
                self.read_tls(&mut on_frame)
            } else {
                self.read_tcp(&mut on_frame)
            };
            if !more {
                break;
            }
        }
    }

    /// One read from the socket; `true` when it is worth reading again.
    fn read_tcp(&mut self, on_frame: &mut impl FnMut(&[u8])) -> bool {
        self.rx.make_room();
        match self.s.read(self.rx.spare()) {
            Ok(0) => {
                self.closed = true;
                false
            }
            Ok(n) => {
                self.rx.filled(n);
                if let Err(why) = self.rx.frames(on_frame) {
                    self.fail(why);
                }
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(e) => {
                self.fail(format!("read: {e}"));
                false
            }
        }
    }

    /// One `read_tls`, then all the plaintext it gave; `true` when it is worth reading again.
    fn read_tls(&mut self, on_frame: &mut impl FnMut(&[u8])) -> bool {
        let Self { s, tls, rx, .. } = self;
        let Some(tls) = tls.as_mut() else {
            return false;
        };
        let mut more = false;
        let mut eof = false;
        let mut failed = None;
        match tls.read_tls(s) {
            Ok(0) => eof = true,
            Ok(_) => more = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => more = true,
            Err(e) => failed = Some(format!("read: {e}")),
        }
        if failed.is_none() {
            if let Err(e) = tls.process_new_packets() {
                failed = Some(format!("tls: {e}"));
                // Best effort: tell the server why (the alert rustls queued).
                let _ = tls.write_tls(s);
            }
        }
        // Drain the plaintext completely: rustls refuses `read_tls` while its buffer is full.
        while failed.is_none() {
            rx.make_room();
            match tls.reader().read(rx.spare()) {
                // close_notify.
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    rx.filled(n);
                    if let Err(why) = rx.frames(on_frame) {
                        failed = Some(why);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    failed = Some(format!("tls read: {e}"));
                }
            }
        }
        if let Some(why) = failed {
            self.fail(why);
            return false;
        }
        if eof {
            self.closed = true;
            return false;
        }
        more
    }

    /// rustls has records to send (handshake, alerts, key updates) that no write asked for.
    pub fn tls_wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }
}

/// Received bytes waiting to form whole frames: `buf[start..len]`.
struct RecvBuf {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl RecvBuf {
    fn new(cap: usize) -> Self {
        Self {
            buf: vec![0; cap.max(READ_ROOM * 2)],
            start: 0,
            len: 0,
        }
    }

    /// Keeps at least `READ_ROOM` bytes free at the end. The buffer stays bounded: a frame is
    /// at most 4 + 65535 (+ padding) bytes, and whole frames are consumed as they arrive.
    fn make_room(&mut self) {
        if self.buf.len() - self.len < READ_ROOM {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.len, 0);
                self.len -= self.start;
                self.start = 0;
            } else {
                let grown = self.buf.len() * 2;
                self.buf.resize(grown, 0);
            }
        }
    }

    fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.len..]
    }

    fn filled(&mut self, n: usize) {
        self.len = (self.len + n).min(self.buf.len());
    }

    /// Hands out each whole frame; an error when the stream is not TURN framing.
    fn frames(&mut self, on_frame: &mut impl FnMut(&[u8])) -> Result<(), String> {
        loop {
            match frame_len(&self.buf[self.start..self.len]) {
                Ok(Some((_, n))) => {
                    on_frame(&self.buf[self.start..self.start + n]);
                    self.start += n;
                }
                Ok(None) => break,
                Err(e) => return Err(format!("not TURN framing: {e}")),
            }
        }
        if self.start == self.len {
            self.start = 0;
            self.len = 0;
        }
        Ok(())
    }
}

/// How the TLS client checks the server.
pub enum Trust {
    /// Any certificate (benchmarks against self-signed servers). The handshake signatures are
    /// still verified against the certificate presented.
    Insecure,
    /// Certificates chaining to the CAs in this PEM file.
    CaFile(std::path::PathBuf),
}

/// The rustls client configuration for `--transport tls`: aws-lc-rs, TLS 1.2 and 1.3, ALPN
/// "stun.turn".
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let mut cfg = match trust {
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        Trust::CaFile(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            for c in certs {
                let c = c.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no certificate", path.display()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    cfg.alpn_protocols = vec![ALPN_TURN.to_vec()];
    Ok(Arc::new(cfg))
}

/// The name to send as SNI and to check the certificate against.
pub fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_string()).map_err(|e| format!("--tls-name {name:?}: {e}"))
}

/// `--tls-insecure`: accepts any certificate, but still checks that the server holds its key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recv_buf_hands_out_whole_frames_across_reads() {
        // Two padded ChannelData frames (5-byte payloads: 4 + 8 bytes each), split mid-frame.
        let frame = [0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0];
        let mut wire = frame.to_vec();
        wire.extend_from_slice(&frame);
        let mut rx = RecvBuf::new(0);
        let mut got = Vec::new();
        for chunk in [&wire[..7], &wire[7..15], &wire[15..]] {
            rx.make_room();
            rx.spare()[..chunk.len()].copy_from_slice(chunk);
            rx.filled(chunk.len());
            rx.frames(&mut |f: &[u8]| got.push(f.to_vec())).unwrap();
        }
        assert_eq!(got, vec![frame.to_vec(), frame.to_vec()]);
        assert_eq!((rx.start, rx.len), (0, 0));
    }

    #[test]
    fn recv_buf_rejects_non_turn_streams() {
        let mut rx = RecvBuf::new(0);
        // A TLS record header arriving on a plain TCP client: "STUN" with an unaligned length.
        rx.spare()[..5].copy_from_slice(&[0x16, 0x03, 0x01, 0x02, 0x00]);
        rx.filled(5);
        assert!(rx.frames(&mut |_: &[u8]| {}).is_err());
    }

    #[test]
    fn tls_configs_build() {
        let cfg = client_config(&Trust::Insecure).unwrap();
        assert_eq!(cfg.alpn_protocols, vec![b"stun.turn".to_vec()]);
        assert!(client_config(&Trust::CaFile("/nonexistent.pem".into())).is_err());
        assert!(server_name("localhost").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("not a name").is_err());
    }
}
