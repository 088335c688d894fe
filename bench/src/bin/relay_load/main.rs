//! TURN relay load generator: N allocations against any TURN server over UDP, TCP or TLS, a
//! built-in UDP echo peer, ChannelData or Send indications, a fixed offered rate or flat out,
//! bounded in time and count. Reports delivered packets/s and Mbit/s each way, loss, round-trip
//! percentiles, the allocation rate (including the 401 round trip) and, given the server's
//! pid, its CPU-seconds per million relayed packets and its RSS. `--sweep` steps an open-loop
//! rate up instead and reports the highest one with less than 0.1 % loss. `--null-relay`
//! drives an in-process bare recvmmsg/sendmmsg forwarder instead (UDP, or TCP-framed): the
//! kernel's limit for the same socket topology on this machine.
//!
//!   relay_load --server 127.0.0.1:3478 --user bench --password bench \
//!       --allocations 64 --size 200 --flat-out --seconds 5 --server-pid $(pidof turnserver)
//!   relay_load --null-relay --allocations 64 --size 200 --flat-out --seconds 5
//!   relay_load --null-relay --allocations 32 --size 200 --sweep 20000
//!   relay_load --null-relay --allocations 5000 --seconds 0   # its allocator's ceiling
//!   relay_load --server 127.0.0.1:5349 --transport tls --tls-insecure --user bench \
//!       --password bench --size 1200 --seconds 5
//!
//! See bench/README.md for what each number means.

#![recursion_limit = "256"]

mod hist;
mod null;
mod null_alloc;
mod null_stream;
mod peer;
mod proto;
mod slab;
mod stream;
mod sweep;
mod sys;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};
use turn_proto::codec::{attr, long_term_key, Class, TransactionId};

use hist::Hist;
use proto::{Auth, Framing, Incoming, Template};
use stream::StreamConn;
use sys::{Epoll, RecvBatch, SendBatch, BATCH, GSO_MAX_BYTES, GSO_MAX_SEGMENTS};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum TransportArg {
    Udp,
    Tcp,
    /// TURN over TLS (RFC 7443): TCP framing inside TLS, ALPN "stun.turn".
    Tls,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum ModeArg {
    /// ChannelData (ChannelBind first).
    Channel,
    /// Send/Data indications (CreatePermission first).
    Send,
}

#[derive(Parser, Debug, Clone)]
#[command(about = "TURN relay load generator (see bench/README.md)")]
struct Args {
    /// TURN server address (not needed with --null-relay).
    #[arg(long, value_name = "IP:PORT")]
    server: Option<SocketAddr>,
    /// Transport to the TURN server.
    #[arg(long, value_enum, default_value = "udp")]
    transport: TransportArg,
    /// Static long-term credential: user name.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Static long-term credential: password.
    #[arg(long, value_name = "PASS")]
    password: Option<String>,
    /// TURN-REST shared secret: each allocation gets its own minted credential.
    #[arg(long, value_name = "SECRET", conflicts_with_all = ["user", "password"])]
    secret: Option<String>,
    /// Key id for TURN-REST usernames ("<expiry>:<key-id>:<session>"); without it the
    /// two-field form "<expiry>:<session>" is used.
    #[arg(long, value_name = "ID", requires = "secret")]
    key_id: Option<String>,
    /// Allocations (one client socket or connection each).
    #[arg(long, default_value_t = 16)]
    allocations: usize,
    /// Application payload bytes per packet (24..=8192).
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// ChannelData or Send indications.
    #[arg(long, value_enum, default_value = "channel")]
    mode: ModeArg,
    /// Fixed offered rate, packets/s per allocation (open loop).
    #[arg(long, value_name = "PPS", conflicts_with = "flat_out")]
    rate: Option<f64>,
    /// Loss sweep: offer START_PPS packets/s in all (open loop, paced), then step the rate up
    /// by --sweep-factor while loss stays below --sweep-loss-pct; report every step and the
    /// highest passing rate (`max_lossless_pps`). Replaces --seconds.
    #[arg(long, value_name = "START_PPS", conflicts_with_all = ["rate", "flat_out", "max_packets"])]
    sweep: Option<f64>,
    /// Sweep: rate multiplier from one step to the next while steps pass.
    #[arg(long, default_value_t = 1.5, requires = "sweep")]
    sweep_factor: f64,
    /// Sweep: seconds of sending per step.
    #[arg(long, default_value_t = 1.0, requires = "sweep")]
    sweep_step_seconds: f64,
    /// Sweep: pause after each step (nothing sent) so its backlog drains; packets back after
    /// it count as lost.
    #[arg(long, default_value_t = 300, requires = "sweep")]
    sweep_settle_ms: u64,
    /// Sweep: bisections between the last passing and the first failing rate.
    #[arg(long, default_value_t = 3, requires = "sweep")]
    sweep_refine: usize,
    /// Sweep: steps at most, refinement included (bounds its time).
    #[arg(long, default_value_t = 16, requires = "sweep")]
    sweep_max_steps: usize,
    /// Sweep: a step fails at this loss (percent) or more.
    #[arg(long, default_value_t = 0.1, requires = "sweep")]
    sweep_loss_pct: f64,
    /// Flat out: closed loop, --window packets in flight per allocation (the default).
    #[arg(long)]
    flat_out: bool,
    /// Packets in flight per allocation in flat-out mode.
    #[arg(long, default_value_t = 8)]
    window: u32,
    /// Measured seconds of traffic (after --warmup). 0: allocate only.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Seconds of traffic before measuring [default: 0.5, or 0 with --max-packets].
    #[arg(long)]
    warmup: Option<f64>,
    /// Stop after this many data packets sent in all.
    #[arg(long)]
    max_packets: Option<u64>,
    /// Echo peer to relay to (must echo datagrams back to their source). Default: a built-in
    /// echo peer on --bind-ip.
    #[arg(long, value_name = "IP:PORT")]
    peer: Option<SocketAddr>,
    /// Threads of the built-in echo peer.
    #[arg(long, default_value_t = 1)]
    peer_threads: usize,
    /// Server pid: report its CPU-seconds per million relayed packets and its RSS.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Print one JSON object on stdout (the human summary goes to stderr).
    #[arg(long)]
    json: bool,
    /// Generator threads (allocations are spread over them).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Drive an in-process null relay (bare recvmmsg/sendmmsg forwarder) with raw payloads;
    /// with --transport tcp, with ChannelData frames; with --seconds 0, allocate from its
    /// minimal STUN side (the allocation rate's ceiling).
    #[arg(long, conflicts_with = "server")]
    null_relay: bool,
    /// Threads of the null relay.
    #[arg(long, default_value_t = 1)]
    null_threads: usize,
    /// CPUs the null relay's threads run on, in taskset's list form ("1", "2,3", "0-1"), like
    /// a server pinned apart from the load; the generator and echo peer keep this process's.
    #[arg(long, value_name = "LIST", value_parser = sys::parse_cpu_list, requires = "null_relay")]
    null_cpus: Option<sys::CpuList>,
    /// Address for client sockets, the echo peer and the null relay.
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: IpAddr,
    /// Requests in flight per generator thread while allocating/binding.
    #[arg(long, default_value_t = 64)]
    alloc_concurrency: usize,
    /// Flat out: packets unanswered this long are counted lost and the window reopens.
    #[arg(long, default_value_t = 200)]
    loss_timeout_ms: u64,
    /// After sending stops, wait this long for stragglers.
    #[arg(long, default_value_t = 300)]
    drain_ms: u64,
    /// Give up allocating/binding after this many seconds.
    #[arg(long, default_value_t = 20.0)]
    setup_timeout: f64,
    /// Send with UDP GSO (generator and echo peer) instead of plain sendmmsg. The server
    /// receives the same datagrams either way. Off by default: on loopback it moved the
    /// segmentation work into ksoftirqd and lowered the rates measured here.
    #[arg(long)]
    gso: bool,
    /// Exit non-zero on any failed allocation or bind, not only when nothing worked.
    #[arg(long)]
    strict: bool,
    /// Free label copied into the JSON (e.g. "coturn round 2").
    #[arg(long)]
    label: Option<String>,
    /// TLS: accept any server certificate (benchmarks against self-signed servers).
    #[arg(long, conflicts_with = "tls_ca")]
    tls_insecure: bool,
    /// TLS: trust the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// TLS: server name for SNI and the certificate check [default: the server's IP address].
    #[arg(long, value_name = "NAME")]
    tls_name: Option<String>,
}

static EPOCH: OnceLock<Instant> = OnceLock::new();

fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// State shared by the main thread and the workers.
struct Shared {
    stop: AtomicBool,
    finish: AtomicBool,
    warm_ns: AtomicU64,
    window_end_ns: AtomicU64,
    done_sending: AtomicUsize,
    tids: Mutex<Vec<u32>>,
    /// With --sweep: the steps the workers follow.
    sweep: Option<sweep::Control>,
    /// Allocations ready to relay, all threads (known after setup).
    ready: AtomicU64,
    start: Barrier,
    setup_done: Barrier,
    go: Barrier,
}

/// Static configuration a worker needs.
struct Cfg {
    server: SocketAddr,
    transport: TransportArg,
    mode: ModeArg,
    /// No allocation first (the null relay with traffic).
    skip_setup: bool,
    /// Raw payloads, no TURN framing (the null relay over UDP).
    raw: bool,
    peer: SocketAddr,
    size: usize,
    rate: Option<f64>,
    window: u32,
    loss_timeout_ns: u64,
    concurrency: usize,
    setup_timeout: Duration,
    seconds: f64,
    gso: bool,
    bind_ip: IpAddr,
    /// With --transport tls: the client configuration and the server name.
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
}

const CHANNEL: u16 = 0x4000;
const RTO_NS: u64 = 300_000_000;
const TCP_TIMEOUT_NS: u64 = 5_000_000_000;
const MAX_TRIES: u32 = 6;

/// Plaintext queued on a TCP/TLS connection beyond which the generator stops offering more
/// (counted in `generator_send_drops`): an open-loop overload must not grow memory forever.
const STREAM_BACKLOG_MAX: usize = 1 << 20;

enum Conn {
    Udp(UdpSocket),
    /// TCP or TLS.
    Stream(StreamConn),
}

impl Conn {
    fn fd(&self) -> RawFd {
        match self {
            Conn::Udp(s) => s.as_raw_fd(),
            Conn::Stream(c) => c.fd(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    Alloc1,
    Alloc2,
    Bind,
    Dealloc,
}

#[derive(Clone, Copy)]
struct Pending {
    step: Step,
    txid: TransactionId,
    sent_ns: u64,
    tries: u32,
}

struct AllocState {
    idx: u32,
    user: String,
    pass: String,
    auth: Option<Auth>,
    relayed: Option<SocketAddr>,
    ok: bool,
    bound: bool,
    failed: Option<String>,
    pending: Option<Pending>,
    /// The driver must (re)send the pending step.
    need_send: bool,
    /// The pending operation finished (either way) since the driver last looked.
    just_done: bool,
    /// The server holds a stale allocation on this 5-tuple (437 to a fresh Allocate, as
    /// coturn answers when a client port is reused soon after a deallocation): move to a
    /// new client socket and start over.
    reconnect: bool,
    t_start_ns: u64,
    t_ok_ns: u64,
    tpl: Option<Template>,
    next_seq: u64,
    valid_from: u64,
    in_flight: u32,
    last_progress_ns: u64,
    tokens: f64,
    last_tick_ns: u64,
    budget: u64,
    sent: u64,
}

struct Alloc {
    conn: Conn,
    st: AllocState,
}

/// Per-thread counters and histograms.
#[derive(Default)]
struct Counters {
    sent_total: u64,
    rcvd_total: u64,
    sent_win: u64,
    rcvd_win: u64,
    rcvd_bytes_win: u64,
    late: u64,
    mismatched: u64,
    junk: u64,
    send_errors: u64,
    gen_drops: u64,
    stall_resets: u64,
    stall_lost: u64,
    rtt: Hist,
    alloc_lat: Hist,
    alloc_ok: u64,
    alloc_failed: u64,
    bind_ok: u64,
    bind_failed: u64,
    dealloc_ok: u64,
    last_alloc_ok_ns: u64,
    reasons: BTreeMap<String, u64>,
    ready: u64,
    reconnects: u64,
    gso_fallback: bool,
}

struct Ctx {
    c: Counters,
    transport: TransportArg,
    /// Closed loop (window accounting) rather than paced.
    flat: bool,
    warm_ns: u64,
    window_end_ns: u64,
    /// With --sweep: the current step's counts.
    step: Option<sweep::StepAcc>,
}

impl Ctx {
    fn fail(&mut self, st: &mut AllocState, why: String) {
        *self.c.reasons.entry(why.clone()).or_default() += 1;
        match st.pending.map(|p| p.step) {
            Some(Step::Alloc1 | Step::Alloc2) => self.c.alloc_failed += 1,
            Some(Step::Bind) => self.c.bind_failed += 1,
            _ => {}
        }
        st.failed = Some(why);
        st.pending = None;
        st.just_done = true;
    }

    #[inline]
    fn on_packet(&mut self, st: &mut AllocState, bytes: &[u8], raw: bool, now: u64) {
        match proto::classify(bytes, raw) {
            Incoming::Data(d) => self.on_data(st, d, now),
            Incoming::Stun(b) => {
                if let Ok(m) = turn_proto::codec::Message::decode(b) {
                    self.on_stun(st, &m, now)
                }
            }
            Incoming::Junk => self.c.junk += 1,
        }
    }

    #[inline]
    fn on_data(&mut self, st: &mut AllocState, d: &[u8], now: u64) {
        let Some((idx, seq, t)) = proto::parse_payload(d) else {
            self.c.junk += 1;
            return;
        };
        if idx != st.idx {
            self.c.mismatched += 1;
            return;
        }
        self.c.rcvd_total += 1;
        if now >= self.warm_ns && now < self.window_end_ns {
            self.c.rcvd_win += 1;
            self.c.rcvd_bytes_win += d.len() as u64;
            self.c.rtt.record(now.saturating_sub(t));
        }
        if let Some(step) = &mut self.step {
            step.on_received(t, now, d.len());
        }
        if self.flat {
            if seq >= st.valid_from && st.in_flight > 0 {
                st.in_flight -= 1;
                st.last_progress_ns = now;
            } else {
                self.c.late += 1;
            }
        }
    }

    fn on_stun(&mut self, st: &mut AllocState, m: &turn_proto::codec::Message<'_>, now: u64) {
        let Some(p) = st.pending else { return };
        if m.transaction_id() != &p.txid {
            return;
        }
        let code = match m.error_code() {
            Ok(Some(e)) => Some((e.code, e.reason.trim_end_matches('\0').to_string())),
            _ => None,
        };
        match (p.step, m.class(), code) {
            (Step::Alloc1, Class::Error, Some((401, _))) => {
                let realm = m.text(attr::REALM).ok().flatten().unwrap_or("").to_string();
                let nonce = m.get(attr::NONCE).unwrap_or(&[]).to_vec();
                let key = long_term_key(&st.user, &realm, &st.pass);
                st.auth = Some(Auth {
                    user: st.user.clone(),
                    realm,
                    nonce,
                    key,
                });
                st.pending = Some(Pending {
                    step: Step::Alloc2,
                    tries: 0,
                    ..p
                });
                st.need_send = true;
            }
            (Step::Alloc1 | Step::Alloc2, Class::Success, _) => {
                match m.xor_address(attr::XOR_RELAYED_ADDRESS) {
                    Ok(Some(a)) => st.relayed = Some(a),
                    _ => {
                        self.fail(st, "allocate success without XOR-RELAYED-ADDRESS".into());
                        return;
                    }
                }
                st.ok = true;
                st.t_ok_ns = now;
                self.c.alloc_ok += 1;
                self.c.alloc_lat.record(now.saturating_sub(st.t_start_ns));
                self.c.last_alloc_ok_ns = self.c.last_alloc_ok_ns.max(now);
                st.pending = None;
                st.just_done = true;
            }
            (_, Class::Error, Some((438, _))) if p.tries < MAX_TRIES => {
                if let (Some(a), Some(n)) = (st.auth.as_mut(), m.get(attr::NONCE)) {
                    a.nonce = n.to_vec();
                }
                st.pending = Some(Pending {
                    tries: p.tries + 1,
                    ..p
                });
                st.need_send = true;
            }
            (Step::Alloc1 | Step::Alloc2, Class::Error, Some((437, _)))
                if p.tries < MAX_TRIES && matches!(self.transport, TransportArg::Udp) =>
            {
                self.c.reconnects += 1;
                st.auth = None;
                st.pending = Some(Pending {
                    step: Step::Alloc1,
                    tries: p.tries + 1,
                    ..p
                });
                st.reconnect = true;
                st.need_send = true;
            }
            (Step::Bind, Class::Success, _) => {
                st.bound = true;
                self.c.bind_ok += 1;
                st.pending = None;
                st.just_done = true;
            }
            (Step::Dealloc, Class::Success, _) | (Step::Dealloc, Class::Error, _) => {
                if m.class() == Class::Success {
                    self.c.dealloc_ok += 1;
                }
                st.pending = None;
                st.just_done = true;
            }
            (step, Class::Error, Some((code, reason))) => {
                self.fail(st, format!("{step:?}: {code} {reason}"));
            }
            (step, class, _) => {
                self.fail(st, format!("{step:?}: unexpected {class:?}"));
            }
        }
    }
}

struct Worker {
    cfg: Arc<Cfg>,
    shared: Arc<Shared>,
    allocs: Vec<Alloc>,
    ctx: Ctx,
    ep: Epoll,
    rx: RecvBatch,
    tx: SendBatch,
    scratch: Vec<u8>,
    events: Vec<(u64, bool, bool)>,
    rng: u64,
    /// Send data with UDP GSO (falls back to sendmmsg if the kernel refuses).
    gso: bool,
}

impl Worker {
    fn txid(&mut self) -> TransactionId {
        let mut t = [0u8; 12];
        for chunk in t.chunks_mut(4) {
            // xorshift64*
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            let v = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
            chunk.copy_from_slice(&v.to_le_bytes()[..4]);
        }
        t
    }

    /// Builds the request for the pending step into `scratch` and sends it: a new transaction
    /// when `fresh` (a new step, or a retry after 438), the same one for a retransmission.
    fn send_pending(&mut self, a: usize, now: u64, fresh: bool) {
        let cfg = self.cfg.clone();
        let Some(mut p) = self.allocs[a].st.pending else {
            return;
        };
        if fresh {
            p.txid = self.txid();
        }
        p.sent_ns = now;
        let st = &mut self.allocs[a].st;
        st.pending = Some(p);
        st.need_send = false;
        let buf = &mut self.scratch;
        match p.step {
            Step::Alloc1 => proto::allocate(buf, p.txid, None),
            Step::Alloc2 => proto::allocate(buf, p.txid, st.auth.as_ref()),
            Step::Bind => {
                let auth = st.auth.as_ref().expect("bind after allocate");
                match cfg.mode {
                    ModeArg::Channel => proto::channel_bind(buf, p.txid, CHANNEL, cfg.peer, auth),
                    ModeArg::Send => proto::create_permission(buf, p.txid, cfg.peer, auth),
                }
            }
            Step::Dealloc => {
                let auth = st.auth.as_ref().expect("dealloc after allocate");
                proto::refresh(buf, p.txid, 0, auth)
            }
        }
        let bytes = std::mem::take(&mut self.scratch);
        self.write_conn(a, &bytes);
        self.scratch = bytes;
    }

    /// Sends bytes on a connection (one datagram, or appended to the stream).
    fn write_conn(&mut self, a: usize, bytes: &[u8]) {
        match &mut self.allocs[a].conn {
            Conn::Udp(s) => {
                if s.send(bytes).is_err() {
                    self.ctx.c.send_errors += 1;
                }
            }
            Conn::Stream(c) => {
                c.wbuf.extend_from_slice(bytes);
                self.flush_stream(a);
            }
        }
    }

    /// Writes what a TCP/TLS connection can take now, and watches for writability while
    /// anything is left.
    fn flush_stream(&mut self, a: usize) {
        if let Conn::Stream(c) = &mut self.allocs[a].conn {
            if let Some(want) = c.flush() {
                let _ = self.ep.modify(c.fd(), a as u64, want);
            }
        }
    }

    /// Reads whatever is ready on connection `a` and handles it.
    fn read_conn(&mut self, a: usize, now: u64) {
        let raw = self.cfg.raw;
        let Alloc { conn, st } = &mut self.allocs[a];
        let ctx = &mut self.ctx;
        match conn {
            Conn::Udp(s) => {
                let fd = s.as_raw_fd();
                while let Ok(n) = self.rx.recv(fd, BATCH, libc::MSG_DONTWAIT) {
                    for i in 0..n {
                        ctx.on_packet(st, self.rx.packet(i), raw, now);
                    }
                    if n < BATCH {
                        break;
                    }
                }
            }
            Conn::Stream(c) => {
                c.read_ready(|frame| ctx.on_packet(st, frame, raw, now));
                if c.closed && st.failed.is_none() {
                    let why = c
                        .error
                        .clone()
                        .unwrap_or_else(|| "connection closed".into());
                    if st.pending.is_some() {
                        // Counts the allocation or bind as failed.
                        ctx.fail(st, why);
                    } else {
                        *ctx.c.reasons.entry(why.clone()).or_default() += 1;
                        st.failed = Some(why);
                    }
                }
                // TLS: handshake messages, or records that a read released.
                if c.tls_wants_write() || !c.wbuf.is_empty() {
                    self.flush_stream(a);
                }
            }
        }
    }

    /// Runs one kind of operation (allocate, bind, deallocate) over the eligible allocations
    /// with at most `concurrency` in flight, until all finished or the deadline.
    fn run_ops(&mut self, first: Step, eligible: impl Fn(&AllocState) -> bool, deadline: Instant) {
        let mut queue: Vec<usize> = (0..self.allocs.len())
            .filter(|&a| eligible(&self.allocs[a].st))
            .rev()
            .collect();
        let mut in_flight = 0usize;
        let conc = self.cfg.concurrency.max(1);
        let mut last_rto_scan = 0u64;
        loop {
            let now = now_ns();
            while in_flight < conc {
                let Some(a) = queue.pop() else { break };
                let st = &mut self.allocs[a].st;
                st.pending = Some(Pending {
                    step: first,
                    txid: [0; 12],
                    sent_ns: now,
                    tries: 0,
                });
                st.just_done = false;
                if first == Step::Alloc1 {
                    st.t_start_ns = now;
                }
                self.send_pending(a, now, true);
                in_flight += 1;
            }
            if in_flight == 0 && queue.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                for a in 0..self.allocs.len() {
                    if self.allocs[a].st.pending.is_some() {
                        let st = &mut self.allocs[a].st;
                        self.ctx.fail(st, "setup timeout".into());
                    }
                }
                break;
            }
            let mut events = std::mem::take(&mut self.events);
            let _ = self.ep.wait(10, &mut events);
            let now = now_ns();
            for &(token, readable, writable) in &events {
                let a = token as usize;
                if writable {
                    self.flush_stream(a);
                }
                if readable {
                    self.read_conn(a, now);
                    self.after_read(a, now, &mut in_flight);
                }
            }
            self.events = events;
            // Retransmissions (UDP only: TCP is reliable).
            if now.saturating_sub(last_rto_scan) > 20_000_000 {
                last_rto_scan = now;
                for a in 0..self.allocs.len() {
                    let Some(p) = self.allocs[a].st.pending else {
                        continue;
                    };
                    let stream = matches!(self.allocs[a].conn, Conn::Stream(_));
                    let rto = if stream {
                        TCP_TIMEOUT_NS
                    } else {
                        RTO_NS << p.tries.min(4)
                    };
                    if now.saturating_sub(p.sent_ns) > rto {
                        if stream || p.tries + 1 >= MAX_TRIES {
                            let st = &mut self.allocs[a].st;
                            self.ctx.fail(st, format!("{:?}: timeout", p.step));
                        } else {
                            self.allocs[a].st.pending = Some(Pending {
                                tries: p.tries + 1,
                                ..p
                            });
                            self.send_pending(a, now, false);
                        }
                    }
                    self.after_read(a, now, &mut in_flight);
                }
            }
        }
    }

    fn after_read(&mut self, a: usize, now: u64, in_flight: &mut usize) {
        if self.allocs[a].st.reconnect {
            self.allocs[a].st.reconnect = false;
            match make_conn(&self.cfg) {
                Ok(conn) => {
                    let fd = conn.fd();
                    // The old socket leaves the epoll set when it is closed (dropped) here.
                    self.allocs[a].conn = conn;
                    if let Err(e) = self.ep.add(fd, a as u64, false) {
                        let st = &mut self.allocs[a].st;
                        self.ctx.fail(st, format!("reconnect: epoll: {e}"));
                    }
                }
                Err(e) => {
                    let st = &mut self.allocs[a].st;
                    self.ctx.fail(st, format!("reconnect: {e}"));
                }
            }
        }
        if self.allocs[a].st.need_send && self.allocs[a].st.pending.is_some() {
            self.send_pending(a, now, true);
        }
        if self.allocs[a].st.just_done {
            self.allocs[a].st.just_done = false;
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    /// Queues `k` data packets of allocation `a` and sends them; returns how many went out.
    fn send_data(&mut self, a: usize, k: usize, now: u64) -> usize {
        let Alloc { conn, st } = &mut self.allocs[a];
        let Some(tpl) = st.tpl.as_ref() else { return 0 };
        let len = tpl.bytes.len();
        let at = tpl.payload_at;
        let k = k.min(BATCH);
        let first = st.next_seq;
        let sent = match conn {
            Conn::Udp(s) => {
                self.tx.clear();
                for j in 0..k {
                    let slot = self.tx.next_slot();
                    slot[..len].copy_from_slice(&tpl.bytes);
                    proto::stamp(&mut slot[at..], first + j as u64, now);
                    self.tx.commit(len, None);
                }
                let fd = s.as_raw_fd();
                let mut done = 0;
                if self.gso && k > 1 {
                    // One trip through the stack per GSO send: the kernel splits it into
                    // the same datagrams the server would otherwise get one by one.
                    let per = (GSO_MAX_BYTES / len).clamp(1, GSO_MAX_SEGMENTS);
                    while done < k {
                        match self.tx.send_gso(fd, done, (done + per).min(k)) {
                            Ok(m) => done += m,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) if peer::gso_unsupported(&e) => {
                                self.gso = false;
                                self.ctx.c.gso_fallback = true;
                                break;
                            }
                            Err(_) => {
                                self.ctx.c.send_errors += 1;
                                break;
                            }
                        }
                    }
                }
                if !self.gso || k == 1 {
                    match self.tx.send(fd, done) {
                        Ok(m) => done += m,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => self.ctx.c.send_errors += 1,
                    }
                }
                done
            }
            Conn::Stream(c) => {
                if c.closed || c.wbuf.len() >= STREAM_BACKLOG_MAX {
                    return 0;
                }
                for j in 0..k {
                    let start = c.wbuf.len();
                    c.wbuf.extend_from_slice(&tpl.bytes);
                    proto::stamp(&mut c.wbuf[start + at..], first + j as u64, now);
                }
                k
            }
        };
        st.next_seq = first + sent as u64;
        st.sent += sent as u64;
        self.ctx.c.sent_total += sent as u64;
        if now >= self.ctx.warm_ns && now < self.ctx.window_end_ns {
            self.ctx.c.sent_win += sent as u64;
        }
        if let Some(step) = &mut self.ctx.step {
            step.sent += sent as u64;
        }
        if matches!(self.allocs[a].conn, Conn::Stream(_)) {
            self.flush_stream(a);
        }
        sent
    }

    /// Flat out: fill allocation `a`'s window.
    fn top_up(&mut self, a: usize, now: u64) {
        let st = &self.allocs[a].st;
        if st.tpl.is_none() || st.failed.is_some() || st.sent >= st.budget {
            return;
        }
        let room = self.cfg.window.saturating_sub(st.in_flight) as u64;
        let k = room.min(st.budget - st.sent) as usize;
        if k == 0 {
            return;
        }
        if st.in_flight == 0 {
            self.allocs[a].st.last_progress_ns = now;
        }
        let sent = self.send_data(a, k, now);
        self.allocs[a].st.in_flight += sent as u32;
    }

    /// Restarts the paced senders' token buckets at `since`, staggered over one packet
    /// interval.
    fn reset_pacing(&mut self, since: u64) {
        let n_total = self.allocs.len().max(1);
        for (i, al) in self.allocs.iter_mut().enumerate() {
            al.st.last_tick_ns = since;
            al.st.tokens = -(i as f64 / n_total as f64);
            al.st.last_progress_ns = since;
        }
    }

    fn data_phase(&mut self) {
        let cfg = self.cfg.clone();
        let shared = self.shared.clone();
        let sweep = shared.sweep.as_ref();
        let flat = cfg.rate.is_none() && sweep.is_none();
        let now = now_ns();
        self.reset_pacing(now);
        let mut step_no = 0;
        let mut handed_in = false;
        if flat {
            for a in 0..self.allocs.len() {
                self.top_up(a, now);
            }
        }
        let mut done_marked = false;
        let mut last_scan = now;
        let mut events = std::mem::take(&mut self.events);
        loop {
            if self.shared.finish.load(Ordering::Relaxed) {
                break;
            }
            let stop = self.shared.stop.load(Ordering::Relaxed);
            self.ctx.window_end_ns = self.shared.window_end_ns.load(Ordering::Relaxed);
            let now = now_ns();
            let mut rate = cfg.rate;
            if let Some(ctl) = sweep {
                let o = ctl.orders();
                if o.step != step_no {
                    // A new step: count afresh, and pace from its start (tokens for the time
                    // it took to notice are owed).
                    step_no = o.step;
                    handed_in = false;
                    self.ctx.step = Some(sweep::StepAcc::new(o.start_ns));
                    self.reset_pacing(o.start_ns.min(now));
                }
                if let Some(acc) = &mut self.ctx.step {
                    acc.send_end_ns = o.send_end_ns;
                    if o.collect && !handed_in {
                        ctl.hand_in(acc);
                        handed_in = true;
                    }
                }
                rate = o.rate;
                if rate.is_none() {
                    // Between steps: keep the buckets empty.
                    for al in &mut self.allocs {
                        al.st.last_tick_ns = now;
                    }
                }
            }
            if !stop {
                if let Some(rate) = rate {
                    for a in 0..self.allocs.len() {
                        let st = &mut self.allocs[a].st;
                        if st.tpl.is_none() || st.failed.is_some() || st.sent >= st.budget {
                            continue;
                        }
                        st.tokens += now.saturating_sub(st.last_tick_ns) as f64 * rate / 1e9;
                        st.last_tick_ns = now;
                        if st.tokens >= 1.0 {
                            let want = (st.tokens as u64).min(st.budget - st.sent) as usize;
                            let mut left = want;
                            while left > 0 {
                                let k = left.min(BATCH);
                                let sent = self.send_data(a, k, now);
                                left -= k;
                                if sent < k {
                                    self.ctx.c.gen_drops += (k - sent) as u64;
                                    if let Some(step) = &mut self.ctx.step {
                                        step.gen_drops += (k - sent) as u64;
                                    }
                                }
                            }
                            let st = &mut self.allocs[a].st;
                            st.tokens -= want as f64;
                            // Generator fell behind by more than a few batches: forget it,
                            // and say so (gen_drops counts what was never offered).
                            if st.tokens > (4 * BATCH) as f64 {
                                self.ctx.c.gen_drops += st.tokens as u64;
                                if let Some(step) = &mut self.ctx.step {
                                    step.gen_drops += st.tokens as u64;
                                }
                                st.tokens = 0.0;
                            }
                        }
                    }
                } else if flat && now.saturating_sub(last_scan) > 10_000_000 {
                    last_scan = now;
                    for a in 0..self.allocs.len() {
                        let st = &mut self.allocs[a].st;
                        if st.in_flight > 0
                            && now.saturating_sub(st.last_progress_ns) > cfg.loss_timeout_ns
                        {
                            self.ctx.c.stall_resets += 1;
                            self.ctx.c.stall_lost += st.in_flight as u64;
                            st.in_flight = 0;
                            st.valid_from = st.next_seq;
                        }
                        self.top_up(a, now);
                    }
                }
                if !done_marked && self.allocs.iter().all(|al| al.st.sent >= al.st.budget) {
                    done_marked = true;
                    self.shared.done_sending.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Paced (and following sweep steps): wake every millisecond.
            let timeout = if !stop && !flat { 1 } else { 10 };
            let _ = self.ep.wait(timeout, &mut events);
            let now = now_ns();
            for &(token, readable, writable) in &events {
                let a = token as usize;
                if writable {
                    self.flush_stream(a);
                }
                if readable {
                    self.read_conn(a, now);
                    if flat && !stop {
                        self.top_up(a, now);
                    }
                }
            }
        }
        self.events = events;
        if !done_marked {
            self.shared.done_sending.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn make_conn(cfg: &Cfg) -> io::Result<Conn> {
    match cfg.transport {
        TransportArg::Udp => {
            let s = socket2::Socket::new(
                socket2::Domain::for_address(cfg.server),
                socket2::Type::DGRAM,
                Some(socket2::Protocol::UDP),
            )?;
            let _ = s.set_recv_buffer_size(1 << 20);
            let _ = s.set_send_buffer_size(1 << 20);
            s.bind(&SocketAddr::new(cfg.bind_ip, 0).into())?;
            s.connect(&cfg.server.into())?;
            s.set_nonblocking(true)?;
            Ok(Conn::Udp(s.into()))
        }
        TransportArg::Tcp | TransportArg::Tls => {
            let s = TcpStream::connect_timeout(&cfg.server, Duration::from_secs(5))?;
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
            // The handshake starts with the first write (the first Allocate is queued behind
            // it), so the allocation latency over TLS includes it.
            let tls = match &cfg.tls {
                Some((config, name)) => Some(
                    rustls::ClientConnection::new(config.clone(), name.clone())
                        .map_err(io::Error::other)?,
                ),
                None => None,
            };
            Ok(Conn::Stream(StreamConn::new(s, tls)))
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `(user, password)` for allocation `idx`.
fn credentials_for(args: &Args, idx: usize) -> (String, String) {
    if let Some(secret) = &args.secret {
        let session = format!("bench-{}-{idx}", std::process::id());
        let expiry = unix_now() + 3600;
        let user = match &args.key_id {
            Some(k) => format!("{expiry}:{k}:{session}"),
            None => format!("{expiry}:{session}"),
        };
        let pass = credentials::password_for(secret.as_bytes(), &user);
        (user, pass)
    } else {
        (
            args.user.clone().unwrap_or_default(),
            args.password.clone().unwrap_or_default(),
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn worker(
    t: usize,
    idxs: Vec<usize>,
    budgets: Vec<u64>,
    creds: Vec<(String, String)>,
    cfg: Arc<Cfg>,
    shared: Arc<Shared>,
) -> Result<Counters, String> {
    shared.tids.lock().unwrap().push(peer::current_tid());
    let mut allocs = Vec::with_capacity(idxs.len());
    let ep = match Epoll::new(idxs.len().clamp(16, 4096)) {
        Ok(ep) => ep,
        Err(e) => {
            // Keep the barriers balanced so the other threads are not left waiting.
            shared.start.wait();
            shared.setup_done.wait();
            shared.go.wait();
            shared.done_sending.fetch_add(1, Ordering::Relaxed);
            return Err(format!("epoll: {e}"));
        }
    };
    let mut conn_err = None;
    for (j, &idx) in idxs.iter().enumerate() {
        let conn = match make_conn(&cfg) {
            Ok(c) => c,
            Err(e) => {
                conn_err = Some(format!("allocation {idx}: {e}"));
                break;
            }
        };
        if let Err(e) = ep.add(conn.fd(), j as u64, false) {
            conn_err = Some(format!("allocation {idx}: epoll: {e}"));
            break;
        }
        let (user, pass) = creds[j].clone();
        allocs.push(Alloc {
            conn,
            st: AllocState {
                idx: idx as u32,
                user,
                pass,
                auth: None,
                relayed: None,
                ok: false,
                bound: false,
                failed: None,
                pending: None,
                need_send: false,
                just_done: false,
                reconnect: false,
                t_start_ns: 0,
                t_ok_ns: 0,
                tpl: None,
                next_seq: 0,
                valid_from: 0,
                in_flight: 0,
                last_progress_ns: 0,
                tokens: 0.0,
                last_tick_ns: 0,
                budget: budgets[j],
                sent: 0,
            },
        });
    }
    let wire_cap = (cfg.size + 64 + 3) & !3;
    let mut w = Worker {
        cfg: cfg.clone(),
        shared: shared.clone(),
        allocs,
        ctx: Ctx {
            c: Counters::default(),
            transport: cfg.transport,
            flat: cfg.rate.is_none(),
            warm_ns: u64::MAX,
            window_end_ns: u64::MAX,
            step: None,
        },
        ep,
        rx: RecvBatch::new(wire_cap.max(2048)),
        tx: SendBatch::new(wire_cap),
        scratch: Vec::with_capacity(512),
        events: Vec::with_capacity(256),
        rng: (now_ns() ^ ((t as u64 + 1) << 32) ^ std::process::id() as u64) | 1,
        gso: cfg.gso,
    };
    // Everyone starts allocating at once; a connection error is reported after the barrier
    // so the others are not left waiting.
    shared.start.wait();
    if let Some(e) = &conn_err {
        *w.ctx.c.reasons.entry(format!("connect: {e}")).or_default() += 1;
    }
    let deadline = Instant::now() + cfg.setup_timeout;
    if cfg.skip_setup {
        for al in &mut w.allocs {
            al.st.ok = true;
            al.st.bound = true;
        }
    } else {
        w.run_ops(Step::Alloc1, |st| st.failed.is_none(), deadline);
        w.run_ops(Step::Bind, |st| st.ok && st.failed.is_none(), deadline);
    }
    for al in &mut w.allocs {
        let st = &mut al.st;
        if st.ok && st.bound && st.failed.is_none() {
            let framing = if cfg.raw {
                Framing::Raw
            } else {
                match cfg.mode {
                    ModeArg::Channel => Framing::Channel {
                        channel: CHANNEL,
                        pad: cfg.transport != TransportArg::Udp,
                    },
                    ModeArg::Send => Framing::Send { peer: cfg.peer },
                }
            };
            st.tpl = Some(proto::template(framing, cfg.size, st.idx, [7; 12]));
            w.ctx.c.ready += 1;
        } else {
            st.budget = 0;
        }
    }
    shared.ready.fetch_add(w.ctx.c.ready, Ordering::SeqCst);
    shared.setup_done.wait();
    let traffic = cfg.seconds > 0.0 || shared.sweep.is_some();
    if let (true, Some(ctl)) = (traffic, &shared.sweep) {
        ctl.register();
    }
    shared.go.wait();
    if traffic {
        w.ctx.warm_ns = shared.warm_ns.load(Ordering::Relaxed);
        w.data_phase();
    }
    // Free the allocations so that back-to-back runs start from a clean server (over TCP,
    // closing the connection does that).
    if !cfg.skip_setup && cfg.transport == TransportArg::Udp {
        let deadline = Instant::now() + Duration::from_millis(1500);
        w.run_ops(Step::Dealloc, |st| st.ok, deadline);
    }
    Ok(w.ctx.c)
}

// ---------- /proc readers ----------

/// utime + stime in clock ticks from a /proc stat file.
fn stat_ticks(path: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn pid_ticks(pid: u32) -> Option<u64> {
    stat_ticks(&format!("/proc/{pid}/stat"))
}

fn tids_ticks(tids: &[u32]) -> Option<u64> {
    let me = std::process::id();
    let mut sum = 0;
    for t in tids {
        sum += stat_ticks(&format!("/proc/{me}/task/{t}/stat"))?;
    }
    Some(sum)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// (busy, total) jiffies over all CPUs.
fn machine_ticks() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

#[derive(Clone, Default)]
struct Snap {
    t_ns: u64,
    peer_rx: u64,
    peer_rx_bytes: u64,
    server_ticks: Option<u64>,
    gen_ticks: Option<u64>,
    peer_ticks: Option<u64>,
    machine: Option<(u64, u64)>,
}

fn main() {
    let args = Args::parse();
    let code = match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("relay_load: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn run(args: Args) -> Result<(), String> {
    EPOCH.get_or_init(Instant::now);
    if !(proto::PAYLOAD_MIN..=8192).contains(&args.size) {
        return Err(format!("--size must be {}..=8192", proto::PAYLOAD_MIN));
    }
    if args.allocations == 0 {
        return Err("--allocations must be positive".into());
    }
    let null_traffic = args.null_relay && (args.seconds > 0.0 || args.sweep.is_some());
    if args.null_relay && args.transport == TransportArg::Tls {
        return Err("--null-relay is UDP or TCP".into());
    }
    if args.null_relay && args.transport == TransportArg::Tcp {
        if !null_traffic {
            return Err("--null-relay allocates over UDP only (no --seconds 0 with TCP)".into());
        }
        if args.mode != ModeArg::Channel {
            return Err("--null-relay over TCP carries ChannelData only (--mode channel)".into());
        }
    }
    if !args.null_relay && args.server.is_none() {
        return Err("--server is required (or --null-relay)".into());
    }
    if !args.null_relay && args.secret.is_none() && (args.user.is_none() || args.password.is_none())
    {
        return Err("give --user and --password, or --secret".into());
    }
    if let Some(r) = args.rate {
        if r <= 0.0 || !r.is_finite() {
            return Err("--rate must be positive".into());
        }
    }
    let sweep_params = match args.sweep {
        None => None,
        Some(start) => {
            if start <= 0.0 || !start.is_finite() {
                return Err("--sweep must be a positive rate".into());
            }
            if !(args.sweep_factor > 1.0 && args.sweep_factor <= 10.0) {
                return Err("--sweep-factor must be in (1, 10]".into());
            }
            if !(args.sweep_step_seconds > 0.0 && args.sweep_step_seconds <= 600.0) {
                return Err("--sweep-step-seconds must be in (0, 600]".into());
            }
            if !(1..=100).contains(&args.sweep_max_steps) {
                return Err("--sweep-max-steps must be 1..=100".into());
            }
            if !(args.sweep_loss_pct > 0.0 && args.sweep_loss_pct <= 100.0) {
                return Err("--sweep-loss-pct must be in (0, 100]".into());
            }
            Some(sweep::Params {
                start_pps: start,
                factor: args.sweep_factor,
                step: Duration::from_secs_f64(args.sweep_step_seconds),
                settle: Duration::from_millis(args.sweep_settle_ms.min(60_000)),
                warmup: Duration::from_secs_f64(args.warmup.unwrap_or(0.5).clamp(0.0, 600.0)),
                max_steps: args.sweep_max_steps,
                refine: args.sweep_refine.min(20),
                loss_limit: args.sweep_loss_pct / 100.0,
            })
        }
    };
    let tls_args = args.tls_insecure || args.tls_ca.is_some() || args.tls_name.is_some();
    if tls_args && args.transport != TransportArg::Tls {
        return Err("--tls-insecure, --tls-ca and --tls-name need --transport tls".into());
    }
    if args.transport == TransportArg::Tls && !args.tls_insecure && args.tls_ca.is_none() {
        return Err("--transport tls needs --tls-ca FILE or --tls-insecure".into());
    }
    let ticks_per_s = sys::clock_ticks() as f64;

    // Echo peer and, for the baseline, the null relay.
    let peer = match args.peer {
        Some(_) => None,
        None => Some(
            peer::Peer::start(
                SocketAddr::new(args.bind_ip, 0),
                args.peer_threads,
                args.gso,
            )
            .map_err(|e| format!("echo peer: {e}"))?,
        ),
    };
    let peer_addr = args.peer.unwrap_or_else(|| peer.as_ref().unwrap().addr);
    let null = if args.null_relay {
        Some(
            null::NullRelay::start(
                SocketAddr::new(args.bind_ip, 0),
                peer_addr,
                args.null_threads,
                args.transport == TransportArg::Tcp,
                args.null_cpus.clone().map(|c| c.0),
            )
            .map_err(|e| format!("null relay: {e}"))?,
        )
    } else {
        None
    };
    let server = match &null {
        Some(n) => n.addr,
        None => args.server.ok_or("--server is required")?,
    };
    let tls = if args.transport == TransportArg::Tls {
        let trust = match &args.tls_ca {
            Some(path) => stream::Trust::CaFile(path.clone()),
            None => stream::Trust::Insecure,
        };
        let name = match &args.tls_name {
            Some(n) => n.clone(),
            None => server.ip().to_string(),
        };
        Some((stream::client_config(&trust)?, stream::server_name(&name)?))
    } else {
        None
    };

    let threads = args.threads.clamp(1, args.allocations);
    let cfg = Arc::new(Cfg {
        server,
        transport: args.transport,
        mode: args.mode,
        // With traffic the null relay forwards without an allocation first (raw payloads over
        // UDP, ChannelData frames over TCP); an allocation-only run (--seconds 0) allocates
        // from its STUN side instead.
        skip_setup: null_traffic,
        raw: null_traffic && args.transport == TransportArg::Udp,
        peer: peer_addr,
        size: args.size,
        rate: args.rate,
        window: args.window.max(1),
        loss_timeout_ns: args.loss_timeout_ms * 1_000_000,
        concurrency: args.alloc_concurrency,
        setup_timeout: Duration::from_secs_f64(args.setup_timeout),
        gso: args.gso && args.transport == TransportArg::Udp,
        seconds: args.seconds,
        bind_ip: args.bind_ip,
        tls,
    });
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        finish: AtomicBool::new(false),
        warm_ns: AtomicU64::new(u64::MAX),
        window_end_ns: AtomicU64::new(u64::MAX),
        done_sending: AtomicUsize::new(0),
        tids: Mutex::new(Vec::new()),
        sweep: sweep_params.as_ref().map(|_| sweep::Control::new()),
        ready: AtomicU64::new(0),
        start: Barrier::new(threads + 1),
        setup_done: Barrier::new(threads + 1),
        go: Barrier::new(threads + 1),
    });

    let server_pid = args.server_pid;
    let rss_start = server_pid.and_then(rss_kib);

    // Spread allocations and the packet budget over the threads.
    let n = args.allocations;
    let per_alloc_budget = |i: usize| -> u64 {
        match args.max_packets {
            None => u64::MAX,
            Some(m) => m / n as u64 + u64::from((i as u64) < m % n as u64),
        }
    };
    let mut handles = Vec::new();
    for t in 0..threads {
        let idxs: Vec<usize> = (t..n).step_by(threads).collect();
        let budgets = idxs.iter().map(|&i| per_alloc_budget(i)).collect();
        let creds = idxs.iter().map(|&i| credentials_for(&args, i)).collect();
        let (cfg, shared) = (cfg.clone(), shared.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("load-{t}"))
                .spawn(move || worker(t, idxs, budgets, creds, cfg, shared))
                .map_err(|e| e.to_string())?,
        );
    }

    // The server's CPU and the machine's over the setup (Allocate with its 401, binds): what an
    // allocation costs the server, a figure a shared 2-core machine does not blur as it blurs
    // the allocation rate. The generator's own CPU over the same phase says how much of the
    // machine the client side of an allocation takes.
    let server_ticks_now = || match &null {
        Some(nr) => tids_ticks(&nr.tids.lock().unwrap()),
        None => server_pid.and_then(pid_ticks),
    };
    let gen_ticks_now = || tids_ticks(&shared.tids.lock().unwrap());
    let setup_server0 = server_ticks_now();
    let setup_machine0 = machine_ticks();
    shared.start.wait();
    // Every generator thread registered its tid before the start barrier.
    let setup_gen0 = gen_ticks_now();
    let t_alloc_start = now_ns();
    shared.setup_done.wait();
    let t_setup_end = now_ns();
    let setup_server1 = server_ticks_now();
    let setup_gen1 = gen_ticks_now();
    let setup_machine1 = machine_ticks();
    let rss_after_setup = server_pid.and_then(rss_kib);

    // A sweep measures in steps of its own, not in one window.
    let seconds = if sweep_params.is_some() {
        0.0
    } else {
        args.seconds.max(0.0)
    };
    let data_start = now_ns();
    let warmup = args
        .warmup
        .unwrap_or(if args.max_packets.is_some() { 0.0 } else { 0.5 });
    let warm_ns = if sweep_params.is_some() {
        u64::MAX
    } else {
        data_start + (warmup.max(0.0) * 1e9) as u64
    };
    shared.warm_ns.store(warm_ns, Ordering::Relaxed);
    let snap = |shared: &Shared| -> Snap {
        let gen_tids = shared.tids.lock().unwrap().clone();
        Snap {
            t_ns: now_ns(),
            peer_rx: peer
                .as_ref()
                .map(|p| p.stats.rx_packets.load(Ordering::Relaxed))
                .unwrap_or(0),
            peer_rx_bytes: peer
                .as_ref()
                .map(|p| p.stats.rx_bytes.load(Ordering::Relaxed))
                .unwrap_or(0),
            server_ticks: server_ticks_now(),
            gen_ticks: tids_ticks(&gen_tids),
            peer_ticks: peer
                .as_ref()
                .and_then(|p| tids_ticks(&p.tids.lock().unwrap())),
            machine: machine_ticks(),
        }
    };
    shared.go.wait();
    let mut s0 = Snap::default();
    let mut s1 = Snap::default();
    let mut window_s = 0.0;
    let mut warnings: Vec<String> = Vec::new();
    if seconds > 0.0 {
        // Warm-up, then the measured window; it ends early if every thread spent its
        // --max-packets share.
        while now_ns() < warm_ns {
            if shared.done_sending.load(Ordering::Relaxed) >= threads {
                warnings
                    .push("--max-packets was spent during the warm-up: nothing measured".into());
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        s0 = snap(&shared);
        let end = warm_ns + (seconds * 1e9) as u64;
        loop {
            let now = now_ns();
            if now >= end || shared.done_sending.load(Ordering::Relaxed) >= threads {
                break;
            }
            std::thread::sleep(Duration::from_millis(
                ((end - now) / 1_000_000).clamp(1, 10),
            ));
        }
        s1 = snap(&shared);
        shared.window_end_ns.store(s1.t_ns, Ordering::Relaxed);
        shared.stop.store(true, Ordering::Relaxed);
        window_s = (s1.t_ns - s0.t_ns) as f64 / 1e9;
        std::thread::sleep(Duration::from_millis(args.drain_ms));
    }
    let sweep_out = match (&shared.sweep, &sweep_params) {
        (Some(ctl), Some(p)) => {
            let probe = || {
                let s = snap(&shared);
                sweep::Probe {
                    t_ns: s.t_ns,
                    server_ticks: s.server_ticks,
                    peer_rx: s.peer_rx,
                }
            };
            let ready = shared.ready.load(Ordering::SeqCst);
            let out = sweep::drive(ctl, p, ready, ticks_per_s, probe);
            shared.stop.store(true, Ordering::Relaxed);
            warnings.extend(out.warnings.iter().cloned());
            Some(out)
        }
        _ => None,
    };
    let rss_end = server_pid.and_then(rss_kib);
    shared.finish.store(true, Ordering::Relaxed);

    let mut c = Counters::default();
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(w)) => merge(&mut c, w),
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("worker panicked".into()),
        }
    }
    let (peer_rx_total, peer_tx_total, peer_tx_dropped) = peer
        .as_ref()
        .map(|p| {
            (
                p.stats.rx_packets.load(Ordering::Relaxed),
                p.stats.tx_packets.load(Ordering::Relaxed),
                p.stats.tx_dropped.load(Ordering::Relaxed),
            )
        })
        .unwrap_or((0, 0, 0));
    let null_stats = null.as_ref().map(|n| {
        (
            n.stats.to_peer.load(Ordering::Relaxed),
            n.stats.to_client.load(Ordering::Relaxed),
            n.stats.dropped.load(Ordering::Relaxed),
        )
    });
    if let Some(p) = peer {
        p.stop();
    }
    if let Some(n) = null {
        n.stop();
    }

    // ---------- results ----------
    let alloc_span_s = (c.last_alloc_ok_ns.saturating_sub(t_alloc_start)) as f64 / 1e9;
    let alloc_rate = if c.alloc_ok > 0 && alloc_span_s > 0.0 {
        c.alloc_ok as f64 / alloc_span_s
    } else {
        0.0
    };
    let have_peer = args.peer.is_none();
    let up_pkts = s1.peer_rx.saturating_sub(s0.peer_rx);
    let up_bytes = s1.peer_rx_bytes.saturating_sub(s0.peer_rx_bytes);
    let per_s = |x: u64| {
        if window_s > 0.0 {
            x as f64 / window_s
        } else {
            0.0
        }
    };
    let up_pps = have_peer.then(|| per_s(up_pkts));
    let down_pps = per_s(c.rcvd_win);
    let mbit = |bytes: u64| per_s(bytes) * 8.0 / 1e6;
    let relayed_win = up_pkts + c.rcvd_win;
    let cores = |a: Option<u64>, b: Option<u64>| -> Option<f64> {
        match (a, b) {
            (Some(a), Some(b)) if window_s > 0.0 => {
                Some(b.saturating_sub(a) as f64 / ticks_per_s / window_s)
            }
            _ => None,
        }
    };
    let server_cpu_s = match (s0.server_ticks, s1.server_ticks) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / ticks_per_s),
        _ => None,
    };
    let setup_cpu_s = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / ticks_per_s),
        _ => None,
    };
    let per_allocation_us = |cpu: Option<f64>| {
        cpu.and_then(|cpu| (c.alloc_ok > 0).then(|| cpu * 1e6 / c.alloc_ok as f64))
    };
    let setup_server_cpu_s = setup_cpu_s(setup_server0, setup_server1);
    let server_cpu_us_per_allocation = per_allocation_us(setup_server_cpu_s);
    let setup_gen_cpu_s = setup_cpu_s(setup_gen0, setup_gen1);
    let generator_cpu_us_per_allocation = per_allocation_us(setup_gen_cpu_s);
    let setup_machine_busy = match (setup_machine0, setup_machine1) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => Some((b1 - b0) as f64 / (t1 - t0) as f64),
        _ => None,
    };
    let cpu_per_m = server_cpu_s
        .and_then(|cpu| (have_peer && relayed_win > 0).then(|| cpu / (relayed_win as f64 / 1e6)));
    let server_cores = cores(s0.server_ticks, s1.server_ticks);
    let gen_cores = cores(s0.gen_ticks, s1.gen_ticks);
    let peer_cores = cores(s0.peer_ticks, s1.peer_ticks);
    let machine_busy = match (s0.machine, s1.machine) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => Some((b1 - b0) as f64 / (t1 - t0) as f64),
        _ => None,
    };
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    // CPU nobody above accounts for: softirq work in ksoftirqd, other processes.
    let other_cores = match (machine_busy, server_cores, gen_cores) {
        (Some(m), Some(s), Some(g)) => {
            Some((m * ncpu as f64 - s - g - peer_cores.unwrap_or(0.0)).max(0.0))
        }
        _ => None,
    };
    let loss = if c.sent_total > 0 {
        1.0 - (c.rcvd_total as f64 / c.sent_total as f64).min(1.0)
    } else {
        0.0
    };
    let loss_up = (have_peer && c.sent_total > 0)
        .then(|| 1.0 - (peer_rx_total as f64 / c.sent_total as f64).min(1.0));
    let loss_down = (have_peer && peer_tx_total > 0)
        .then(|| 1.0 - (c.rcvd_total as f64 / peer_tx_total as f64).min(1.0));
    let us = |ns: u64| ns as f64 / 1000.0;
    let offered = match args.rate {
        Some(r) => json!(r * c.ready as f64),
        None => Value::Null,
    };
    let gen_busy_per_thread = gen_cores.map(|g| g / threads as f64);
    let bottleneck = if let Some(o) = &sweep_out {
        sweep_verdict(o, &args)
    } else if seconds <= 0.0 {
        "n/a (no traffic)".to_string()
    } else if c.ready == 0 {
        "n/a (no allocation ready)".to_string()
    } else if window_s < 0.001 || !warnings.is_empty() {
        "n/a (nothing measured)".to_string()
    } else if gen_busy_per_thread.is_some_and(|b| b > 0.9) {
        format!(
            "generator: its {threads} thread(s) were {:.0}% busy; the server was not necessarily saturated",
            gen_busy_per_thread.unwrap() * 100.0
        )
    } else if machine_busy.is_some_and(|b| b > 0.95) {
        format!(
            "machine CPU saturated ({:.0}% busy over {ncpu} cores): generator {:.2} cores, echo peer {:.2}, server {}, other {}",
            machine_busy.unwrap() * 100.0,
            gen_cores.unwrap_or(0.0),
            peer_cores.unwrap_or(0.0),
            server_cores.map(|s| format!("{s:.2} cores")).unwrap_or("unknown (no --server-pid)".into()),
            other_cores.map(|s| format!("{s:.2}")).unwrap_or("-".into())
        )
    } else if loss > 0.001 {
        "server or kernel: packets dropped while CPU was left idle".into()
    } else if args.rate.is_some() {
        "none: the offered rate was delivered".into()
    } else {
        "none detected: raise --window or --allocations".into()
    };

    let setup_failed = c.alloc_failed + c.bind_failed;
    let mut out = json!({
        "tool": "relay_load",
        "label": args.label,
        "target": if args.null_relay { "null-relay".to_string() } else { server.to_string() },
        "transport": format!("{:?}", args.transport).to_lowercase(),
        "mode": if cfg.raw { "raw".to_string() } else { format!("{:?}", args.mode).to_lowercase() },
        "size": args.size,
        "allocations": n,
        "threads": threads,
        "gso": args.gso && args.transport == TransportArg::Udp && !c.gso_fallback,
        "flat_out": args.rate.is_none() && sweep_params.is_none(),
        "window": (args.rate.is_none() && sweep_params.is_none()).then_some(args.window),
        "rate_per_allocation": args.rate,
        "offered_pps": offered,
        "allocations_ok": c.alloc_ok,
        "allocations_failed": c.alloc_failed,
        "binds_ok": c.bind_ok,
        "binds_failed": c.bind_failed,
        "deallocated": c.dealloc_ok,
        "reconnects_after_437": c.reconnects,
        "failures": c.reasons,
        "allocs_per_s": alloc_rate,
        "alloc_latency_us": { "p50": us(c.alloc_lat.quantile(0.5)), "p99": us(c.alloc_lat.quantile(0.99)), "max": us(c.alloc_lat.max()) },
        "setup_s": (t_setup_end - t_alloc_start) as f64 / 1e9,
        "setup_server_cpu_s": setup_server_cpu_s,
        "server_cpu_us_per_allocation": server_cpu_us_per_allocation,
        "setup_generator_cpu_s": setup_gen_cpu_s,
        "generator_cpu_us_per_allocation": generator_cpu_us_per_allocation,
        "setup_machine_busy": setup_machine_busy,
        "window_s": window_s,
        "sent_pps": per_s(c.sent_win),
        "up_pps": up_pps,
        "down_pps": down_pps,
        "up_mbps": have_peer.then(|| mbit(up_bytes)),
        "down_mbps": mbit(c.rcvd_bytes_win),
        "relayed_pps": have_peer.then(|| per_s(relayed_win)),
        "sent_total": c.sent_total,
        "received_total": c.rcvd_total,
        "peer_received_total": have_peer.then_some(peer_rx_total),
        "peer_echo_dropped": have_peer.then_some(peer_tx_dropped),
        "loss": loss,
        "loss_up": loss_up,
        "loss_down": loss_down,
        "ready_allocations": c.ready,
        "late": c.late,
        "stall_lost": c.stall_lost,
        "stall_resets": c.stall_resets,
        "generator_send_drops": c.gen_drops,
        "send_errors": c.send_errors,
        "junk": c.junk + c.mismatched,
        "rtt_us": {
            "samples": c.rtt.count(),
            "p50": us(c.rtt.quantile(0.5)),
            "p99": us(c.rtt.quantile(0.99)),
            "p999": us(c.rtt.quantile(0.999)),
            "mean": c.rtt.mean() / 1000.0,
            "max": us(c.rtt.max()),
        },
        "server_pid": server_pid,
        "server_cpu_s": server_cpu_s,
        "server_cores": server_cores,
        "server_cpu_s_per_million": cpu_per_m,
        "server_rss_kib": { "start": rss_start, "after_setup": rss_after_setup, "end": rss_end },
        "generator_cores": gen_cores,
        "echo_peer_cores": peer_cores,
        "machine_busy": machine_busy,
        "other_cores": other_cores,
        "cpus": ncpu,
        "bottleneck": bottleneck,
        "null_relay_forwarded": null_stats.map(|(a, b, d)| json!({"to_peer": a, "to_client": b, "dropped": d})),
        "errors": errors,
        "warnings": warnings,
    });
    if let (Some(o), Some(p)) = (&sweep_out, &sweep_params) {
        out["max_lossless_pps"] = json!(o.best_step().map(|b| b.offered_pps));
        out["sweep"] = o.to_json(p);
    }

    // Human summary.
    let mut h = String::new();
    let f1 = |x: Option<f64>| x.map(|v| format!("{v:.0}")).unwrap_or("-".into());
    h += &format!(
        "target {}  {} {}  size {} B  {} allocations on {} threads  {}\n",
        out["target"].as_str().unwrap_or(""),
        out["transport"].as_str().unwrap_or(""),
        out["mode"].as_str().unwrap_or(""),
        args.size,
        n,
        threads,
        match (args.rate, &sweep_params) {
            (Some(r), _) => format!("offered {r} pps/allocation"),
            (None, Some(p)) => format!(
                "sweep from {} pps in all, x{} per step, {} s steps, {} ms settle",
                p.start_pps,
                p.factor,
                p.step.as_secs_f64(),
                p.settle.as_millis()
            ),
            (None, None) => format!("flat out, window {}", args.window),
        }
    );
    if !cfg.skip_setup {
        h += &format!(
            "allocations: {} ok, {} failed ({} retried on a new port after 437), {:.0}/s incl. 401 (p50 {:.0} us, p99 {:.0} us); binds {} ok, {} failed; setup {:.2} s; {} deallocated\n",
            c.alloc_ok, c.alloc_failed, c.reconnects, alloc_rate,
            us(c.alloc_lat.quantile(0.5)), us(c.alloc_lat.quantile(0.99)),
            c.bind_ok, c.bind_failed, (t_setup_end - t_alloc_start) as f64 / 1e9,
            c.dealloc_ok
        );
        let f0 = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or("-".into());
        h += &format!(
            "setup cpu per allocation (with its bind): server {} us, generator {} us\n",
            f0(server_cpu_us_per_allocation),
            f0(generator_cpu_us_per_allocation)
        );
    }
    if !c.reasons.is_empty() {
        h += &format!("failures: {:?}\n", c.reasons);
    }
    if seconds > 0.0 {
        h += &format!(
            "window {:.2} s: sent {:.0} pps; up {} pps {:.1} Mbit/s; down {:.0} pps {:.1} Mbit/s; loss {:.4}% (up {}, down {}); late {} stalls {} gen-drops {}\n",
            window_s, per_s(c.sent_win), f1(up_pps), mbit(up_bytes), down_pps, mbit(c.rcvd_bytes_win),
            loss * 100.0,
            loss_up.map(|l| format!("{:.4}%", l * 100.0)).unwrap_or("-".into()),
            loss_down.map(|l| format!("{:.4}%", l * 100.0)).unwrap_or("-".into()),
            c.late, c.stall_resets, c.gen_drops
        );
        h += &format!(
            "rtt: p50 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us  ({} samples)\n",
            us(c.rtt.quantile(0.5)),
            us(c.rtt.quantile(0.99)),
            us(c.rtt.quantile(0.999)),
            us(c.rtt.max()),
            c.rtt.count()
        );
        h += &format!(
            "cpu: server {} ({} cpu-s per million relayed), generator {:.2} cores, echo peer {:.2} cores, other {} cores, machine {:.0}% busy\n",
            server_cores.map(|s| format!("{s:.2} cores")).unwrap_or("-".into()),
            cpu_per_m.map(|v| format!("{v:.2}")).unwrap_or("-".into()),
            gen_cores.unwrap_or(0.0),
            peer_cores.unwrap_or(0.0),
            other_cores.map(|s| format!("{s:.2}")).unwrap_or("-".into()),
            machine_busy.unwrap_or(0.0) * 100.0
        );
        h += &format!("bottleneck: {bottleneck}\n");
    }
    if let Some(pid) = server_pid {
        h += &format!(
            "server pid {pid} RSS: start {} KiB, after setup {} KiB, end {} KiB\n",
            rss_start.map(|v| v.to_string()).unwrap_or("-".into()),
            rss_after_setup.map(|v| v.to_string()).unwrap_or("-".into()),
            rss_end.map(|v| v.to_string()).unwrap_or("-".into()),
        );
    }
    if let Some(o) = &sweep_out {
        h += &sweep_summary(o);
        h += &format!("bottleneck: {bottleneck}\n");
    }
    for w in &warnings {
        h += &format!("warning: {w}\n");
    }
    for e in &errors {
        h += &format!("error: {e}\n");
    }
    if args.json {
        eprint!("{h}");
        println!("{out}");
        let _ = io::stdout().flush();
    } else {
        print!("{h}");
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    if c.ready == 0 {
        return Err("no allocation was ready to relay".into());
    }
    if args.strict && (setup_failed > 0 || c.ready < n as u64) {
        return Err(format!(
            "--strict: {} of {n} allocations ready ({} setup failures)",
            c.ready, setup_failed
        ));
    }
    if (seconds > 0.0 || sweep_out.is_some()) && c.rcvd_total == 0 {
        return Err("nothing came back through the relay".into());
    }
    Ok(())
}

/// One line on what limited a sweep.
fn sweep_verdict(o: &sweep::Outcome, args: &Args) -> String {
    let best = match o.best_step() {
        Some(b) => format!("highest passing step {:.0} pps", b.offered_pps),
        None => "no step passed".into(),
    };
    let why = match o.limit {
        Some(sweep::Verdict::Loss) => format!(
            "the next step lost {} % or more: server or kernel drops",
            args.sweep_loss_pct
        ),
        Some(sweep::Verdict::Lagging) => {
            "the next step came back late: the relay fell behind (queues grew)".into()
        }
        Some(sweep::Verdict::Generator) => {
            "the generator could not offer the next step; the relay was not necessarily saturated"
                .into()
        }
        Some(sweep::Verdict::Nothing) => "the next step sent nothing".into(),
        Some(sweep::Verdict::Ok) | None => format!("no failing step ({})", o.stop),
    };
    format!("sweep: {best}; {why}")
}

/// The human summary of a sweep: one line per step.
fn sweep_summary(o: &sweep::Outcome) -> String {
    let mut h = String::new();
    for (i, s) in o.steps.iter().enumerate() {
        h += &format!(
            "step {:>2}: offered {:>9.0} pps  sent {:>9.0}  delivered {:>9.0}  loss {:.4}%  rtt p50 {:.0} us p99 {:.0} us p99.9 {:.0} us  server {}  {:?}{}\n",
            i + 1,
            s.offered_pps,
            if s.seconds > 0.0 { s.sent as f64 / s.seconds } else { 0.0 },
            s.delivered_pps(),
            s.loss() * 100.0,
            s.rtt.quantile(0.5) as f64 / 1000.0,
            s.rtt.quantile(0.99) as f64 / 1000.0,
            s.rtt.quantile(0.999) as f64 / 1000.0,
            s.server_cpu_s
                .map(|c| format!("{:.2} cores", c / s.seconds.max(1e-9)))
                .unwrap_or("-".into()),
            s.verdict,
            if Some(i) == o.best { "  <- max lossless" } else { "" },
        );
    }
    h += &format!(
        "max lossless: {} (stopped: {})\n",
        o.best_step()
            .map(|b| format!(
                "{:.0} pps offered, {:.0} delivered, {} relayed both ways",
                b.offered_pps,
                b.delivered_pps(),
                b.relayed_pps()
                    .map(|r| format!("{r:.0}"))
                    .unwrap_or("-".into())
            ))
            .unwrap_or("none".into()),
        o.stop
    );
    h
}

fn merge(a: &mut Counters, b: Counters) {
    a.sent_total += b.sent_total;
    a.rcvd_total += b.rcvd_total;
    a.sent_win += b.sent_win;
    a.rcvd_win += b.rcvd_win;
    a.rcvd_bytes_win += b.rcvd_bytes_win;
    a.late += b.late;
    a.mismatched += b.mismatched;
    a.junk += b.junk;
    a.send_errors += b.send_errors;
    a.gen_drops += b.gen_drops;
    a.stall_resets += b.stall_resets;
    a.stall_lost += b.stall_lost;
    a.rtt.merge(&b.rtt);
    a.alloc_lat.merge(&b.alloc_lat);
    a.alloc_ok += b.alloc_ok;
    a.alloc_failed += b.alloc_failed;
    a.bind_ok += b.bind_ok;
    a.bind_failed += b.bind_failed;
    a.dealloc_ok += b.dealloc_ok;
    a.last_alloc_ok_ns = a.last_alloc_ok_ns.max(b.last_alloc_ok_ns);
    for (k, v) in b.reasons {
        *a.reasons.entry(k).or_default() += v;
    }
    a.ready += b.ready;
    a.reconnects += b.reconnects;
    a.gso_fallback |= b.gso_fallback;
}
