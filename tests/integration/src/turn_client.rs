//! A small blocking TURN client for tests, built on our codec. It exists to drive the edge
//! through exact message sequences (hostile ones included) that off-the-shelf clients will not
//! send; interop with clients we did not write is tested separately.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use turn_proto::codec::{
    attr, frame_len, long_term_key, Class, IntegrityKind, LongTermKey, Message, MessageBuilder,
    MessageType, Method,
};

/// The client's connection to the edge.
pub enum Link {
    /// TURN over UDP.
    Udp(UdpSocket, SocketAddr),
    /// TURN over TCP.
    Tcp(TcpStream, Vec<u8>),
    /// TURN over TLS.
    Tls(
        Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
        Vec<u8>,
    ),
}

impl Link {
    /// A UDP link to `server`.
    pub fn udp(server: SocketAddr) -> io::Result<Self> {
        let bind: SocketAddr = if server.is_ipv4() {
            "127.0.0.1:0".parse().unwrap()
        } else {
            "[::1]:0".parse().unwrap()
        };
        let s = UdpSocket::bind(bind)?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        Ok(Link::Udp(s, server))
    }

    /// A TCP link to `server`.
    pub fn tcp(server: SocketAddr) -> io::Result<Self> {
        let s = TcpStream::connect_timeout(&server, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.set_nodelay(true)?;
        Ok(Link::Tcp(s, Vec::new()))
    }

    /// A TLS link to `server`, trusting `ca` (DER), offering `alpn` (empty: none), with SNI
    /// `name`.
    pub fn tls(server: SocketAddr, ca: &[u8], name: &str, alpn: &[&[u8]]) -> io::Result<Self> {
        let s = TcpStream::connect_timeout(&server, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.set_nodelay(true)?;
        let conn = crate::tls::client_connection(ca, name, alpn).map_err(io::Error::other)?;
        let mut stream = rustls::StreamOwned::new(conn, s);
        // Complete the handshake now so a refusal shows here.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Link::Tls(Box::new(stream), Vec::new()))
    }

    /// Sends raw bytes (one datagram, or bytes on the stream).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Link::Udp(s, to) => s.send_to(bytes, *to).map(|_| ()),
            Link::Tcp(s, _) => s.write_all(bytes),
            Link::Tls(s, _) => s.write_all(bytes).and_then(|_| s.flush()),
        }
    }

    /// Receives one datagram or one whole frame; `Ok(None)` on timeout.
    pub fn recv(&mut self) -> io::Result<Option<Vec<u8>>> {
        match self {
            Link::Udp(s, _) => {
                let mut buf = vec![0u8; 65536];
                match s.recv_from(&mut buf) {
                    Ok((n, _)) => {
                        buf.truncate(n);
                        Ok(Some(buf))
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            }
            Link::Tls(s, pending) => read_frame(s.as_mut(), pending),
            Link::Tcp(s, pending) => read_frame(s, pending),
        }
    }
}

/// Reads one whole TURN frame from a byte stream; `Ok(None)` on timeout.
fn read_frame<R: Read>(s: &mut R, pending: &mut Vec<u8>) -> io::Result<Option<Vec<u8>>> {
    {
        {
            loop {
                match frame_len(pending) {
                    Ok(Some((_, len))) => {
                        let frame = pending[..len].to_vec();
                        pending.drain(..len);
                        return Ok(Some(frame));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
                    }
                }
                let mut buf = [0u8; 4096];
                match s.read(&mut buf) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        return Ok(None)
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// What a request got back.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Success or error.
    pub class: Class,
    /// ERROR-CODE, if an error.
    pub code: Option<u16>,
    /// The raw response.
    pub bytes: Vec<u8>,
}

impl Reply {
    /// The decoded response.
    pub fn message(&self) -> Message<'_> {
        Message::decode(&self.bytes).expect("reply decodes")
    }
}

/// A long-term-credential TURN client session.
pub struct Client {
    /// The link.
    pub link: Link,
    user: String,
    realm: String,
    nonce: String,
    key: LongTermKey,
    password: String,
    next_txid: u64,
}

/// One extra attribute for a request.
pub type Attr<'a> = (u16, &'a [u8]);

impl Client {
    /// A client with credentials; the realm and nonce are learnt from the first 401.
    pub fn new(link: Link, user: &str, password: &str) -> Self {
        Self {
            link,
            user: user.into(),
            realm: String::new(),
            nonce: String::new(),
            key: long_term_key(user, "", password),
            password: password.into(),
            next_txid: 1,
        }
    }

    fn txid(&mut self) -> [u8; 12] {
        self.next_txid += 1;
        let mut t = [0u8; 12];
        t[4..].copy_from_slice(&self.next_txid.to_be_bytes());
        t[0] = 0xC1;
        t
    }

    /// Sends a request with `attrs` (and XOR-PEER-ADDRESS entries for `peers`), authenticating
    /// and retrying once on 401/438. Returns the final reply.
    pub fn request(
        &mut self,
        method: Method,
        attrs: &[Attr<'_>],
        peers: &[SocketAddr],
    ) -> io::Result<Reply> {
        for _ in 0..3 {
            let txid = self.txid();
            let mut buf = Vec::new();
            let mut b =
                MessageBuilder::new(&mut buf, MessageType::new(method, Class::Request), txid);
            for (t, v) in attrs {
                b.add(*t, v);
            }
            for p in peers {
                b.add_xor_address(attr::XOR_PEER_ADDRESS, *p);
            }
            if !self.nonce.is_empty() {
                b.add(attr::USERNAME, self.user.as_bytes());
                b.add(attr::REALM, self.realm.as_bytes());
                b.add(attr::NONCE, self.nonce.as_bytes());
                b.integrity(IntegrityKind::Sha1, &self.key.0);
            }
            b.fingerprint();
            self.link.send(&buf)?;
            let reply = self.await_reply(txid)?;
            if matches!(reply.code, Some(401) | Some(438)) {
                let m = reply.message();
                let realm = m.text(attr::REALM).ok().flatten().map(str::to_owned);
                let nonce = m.text(attr::NONCE).ok().flatten().map(str::to_owned);
                if let (Some(realm), Some(nonce)) = (realm, nonce) {
                    let retry = self.nonce.is_empty() || reply.code == Some(438);
                    self.realm = realm;
                    self.nonce = nonce;
                    self.key = long_term_key(&self.user, &self.realm, &self.password);
                    if retry {
                        continue;
                    }
                }
            }
            return Ok(reply);
        }
        Err(io::Error::other("authentication loop"))
    }

    fn await_reply(&mut self, txid: [u8; 12]) -> io::Result<Reply> {
        for _ in 0..50 {
            let Some(bytes) = self.link.recv()? else {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no reply"));
            };
            let Ok(m) = Message::decode(&bytes) else {
                continue;
            };
            if m.transaction_id() != &txid {
                continue;
            }
            let class = m.class();
            let code = m.error_code().ok().flatten().map(|e| e.code);
            return Ok(Reply { class, code, bytes });
        }
        Err(io::Error::other("too many unrelated messages"))
    }

    /// Allocate with REQUESTED-TRANSPORT (17 UDP, 6 TCP) and extra attributes.
    pub fn allocate(&mut self, transport: u8, extra: &[Attr<'_>]) -> io::Result<Reply> {
        let rt = [transport, 0, 0, 0];
        let mut attrs: Vec<Attr<'_>> = vec![(attr::REQUESTED_TRANSPORT, &rt)];
        attrs.extend_from_slice(extra);
        self.request(Method::Allocate, &attrs, &[])
    }

    /// Sends a Send indication to `peer`.
    pub fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) -> io::Result<()> {
        let txid = self.txid();
        let mut buf = Vec::new();
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(Method::Send, Class::Indication),
            txid,
        );
        b.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
        b.add(attr::DATA, data);
        self.link.send(&buf)
    }
}
