//! Media: a WebRTC session (str0m, sans-IO) with the media network's SFU, over the route the
//! join chose — a TURN allocation on the edge (cloud proxy, or a self-deployed TURN server)
//! or a plain UDP socket (no proxy) — negotiated over the signalling WebSocket.
//!
//! The session publishes the SDK's test sources ([`source`]) and counts what it receives per
//! remote member ([`MediaStats`]). One task runs it: it owns the str0m `Rtc`, the WebSocket
//! and the path, and every `select!` branch it waits on is cancel-safe (reads arrive over
//! channels from reader tasks; writes happen outside the `select!`).

pub(crate) mod path;
pub mod signal;
pub mod source;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rtn_proto::{ClientMsg, ServerMsg};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event as RtcEvent, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

use self::path::{Incoming, TurnPath};
use self::signal::Ws;
use self::source::{VideoClip, AUDIO_INTERVAL, OPUS_SILENCE};
use crate::Event;

/// What the session publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    /// Opus audio (the built-in source: 20 ms of silence, 50 packets a second).
    pub audio: bool,
    /// VP8 video (the built-in source: a looping 320×240 test pattern, 15 fps).
    pub video: bool,
}

impl Default for Publish {
    fn default() -> Self {
        Self {
            audio: true,
            video: true,
        }
    }
}

/// Frames received from one member.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Audio packets.
    pub audio: u64,
    /// Video frames (depacketized).
    pub video: u64,
}

/// A snapshot of the media session.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MediaStats {
    /// ICE and DTLS are up: media can flow.
    pub connected: bool,
    /// The other members of the channel.
    pub members: Vec<String>,
    /// Audio packets sent.
    pub sent_audio: u64,
    /// Video frames sent.
    pub sent_video: u64,
    /// What arrived, per member uid.
    pub received: BTreeMap<String, Received>,
    /// The signalling URL (ticket elided).
    pub signal: String,
    /// The local media candidate: `relay <relayed address>` through TURN, `host <address>`
    /// without.
    pub candidate: String,
    /// Why the session ended, if it ended on its own.
    pub ended: Option<String>,
}

/// The path media takes.
pub(crate) enum MediaPath {
    /// Straight from a UDP socket.
    Direct {
        sock: Arc<UdpSocket>,
        local: SocketAddr,
        rx: mpsc::Receiver<Incoming>,
        _reader: path::Reader,
    },
    /// Through a TURN allocation (boxed: the TURN client state is large).
    Turn(Box<TurnPath>),
}

impl MediaPath {
    /// A UDP socket on `ip` (the address the signalling connection left from: the interface
    /// that faces the media network).
    pub(crate) async fn direct(ip: std::net::IpAddr) -> std::io::Result<Self> {
        let sock = Arc::new(UdpSocket::bind((ip, 0)).await?);
        let local = sock.local_addr()?;
        let (rx, reader) = path::spawn_udp_reader(sock.clone());
        Ok(MediaPath::Direct {
            sock,
            local,
            rx,
            _reader: reader,
        })
    }

    fn candidate(&self) -> Result<Candidate, String> {
        match self {
            MediaPath::Direct { local, .. } => Candidate::host(*local, "udp"),
            MediaPath::Turn(t) => Candidate::relayed(t.relayed(), t.relayed(), "udp"),
        }
        .map_err(|e| format!("media candidate: {e}"))
    }

    fn local(&self) -> SocketAddr {
        match self {
            MediaPath::Direct { local, .. } => *local,
            MediaPath::Turn(t) => t.relayed(),
        }
    }

    async fn send(&mut self, to: SocketAddr, data: &[u8]) -> std::io::Result<()> {
        match self {
            MediaPath::Direct { sock, .. } => sock.send_to(data, to).await.map(drop),
            MediaPath::Turn(t) => t.send_to(to, data).await,
        }
    }

    async fn recv(&mut self) -> Option<Incoming> {
        match self {
            MediaPath::Direct { rx, .. } => rx.recv().await,
            MediaPath::Turn(t) => t.rx.recv().await,
        }
    }

    async fn close(&mut self) {
        match self {
            MediaPath::Direct { .. } => {}
            MediaPath::Turn(t) => t.close().await,
        }
    }
}

/// A running media session; dropping it stops the task without a goodbye.
pub(crate) struct MediaHandle {
    pub(crate) stats: Arc<Mutex<MediaStats>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl MediaHandle {
    /// Leaves the channel (a `leave` message, the TURN allocation released) and waits for the
    /// task, at most `within`.
    pub(crate) async fn stop(mut self, within: Duration) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let abort = self.task.abort_handle();
        if tokio::time::timeout(within, &mut self.task).await.is_err() {
            abort.abort();
        }
    }
}

impl Drop for MediaHandle {
    fn drop(&mut self) {
        if self.stop.is_some() {
            self.task.abort();
        }
    }
}

/// Everything a session starts from.
pub(crate) struct SessionSetup {
    pub uid: String,
    pub ws: Ws,
    pub members: Vec<String>,
    pub signal_shown: String,
    pub path: MediaPath,
    pub publish: Publish,
    pub events: broadcast::Sender<Event>,
}

/// Starts the session task.
pub(crate) fn start(setup: SessionSetup) -> Result<MediaHandle, String> {
    let candidate = setup.path.candidate()?;
    let stats = Arc::new(Mutex::new(MediaStats {
        members: setup.members.clone(),
        signal: setup.signal_shown.clone(),
        candidate: format!(
            "{} {}",
            if matches!(setup.path, MediaPath::Turn(_)) {
                "relay"
            } else {
                "host"
            },
            setup.path.local()
        ),
        ..Default::default()
    }));
    let (stop_tx, stop_rx) = oneshot::channel();
    let session = Session::new(setup, candidate, stats.clone());
    let task = tokio::spawn(session.run(stop_rx));
    Ok(MediaHandle {
        stats,
        stop: Some(stop_tx),
        task,
    })
}

struct Session {
    uid: String,
    ws: Ws,
    path: MediaPath,
    rtc: Rtc,
    pending: Option<SdpPendingOffer>,
    first_offer: Option<String>,
    send_mids: Vec<(Mid, MediaKind)>,
    clip: VideoClip,
    stats: Arc<Mutex<MediaStats>>,
    events: broadcast::Sender<Event>,
    connected: bool,
    audio_n: u64,
    video_n: u64,
    next_audio: Instant,
    next_video: Instant,
}

impl Session {
    fn new(setup: SessionSetup, candidate: Candidate, stats: Arc<Mutex<MediaStats>>) -> Self {
        let now = Instant::now();
        let mut rtc = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .build(now);
        rtc.add_local_candidate(candidate);
        Session {
            uid: setup.uid,
            ws: setup.ws,
            path: setup.path,
            rtc,
            pending: None,
            first_offer: None,
            send_mids: Vec::new(),
            clip: VideoClip::test_pattern(),
            stats,
            events: setup.events,
            connected: false,
            audio_n: 0,
            video_n: 0,
            next_audio: now,
            next_video: now,
        }
        .with_offer(setup.publish)
    }

    fn with_offer(mut self, publish: Publish) -> Self {
        let mut change = self.rtc.sdp_api();
        for (on, kind) in [
            (publish.audio, MediaKind::Audio),
            (publish.video, MediaKind::Video),
        ] {
            if on {
                let mid = change.add_media(
                    kind,
                    Direction::SendOnly,
                    Some(self.uid.clone()),
                    None,
                    None,
                );
                self.send_mids.push((mid, kind));
            }
        }
        if self.send_mids.is_empty() {
            // An offer needs one m-line; a data channel publishes nothing (PROTOCOL.md).
            change.add_channel("cloudproxy".into());
        }
        if let Some((offer, pending)) = change.apply() {
            self.pending = Some(pending);
            self.first_offer = Some(offer.to_sdp_string());
        }
        self
    }

    fn stat(&self, f: impl FnOnce(&mut MediaStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    async fn send_ws(&mut self, msg: &ClientMsg) -> Result<(), String> {
        let text = serde_json::to_string(msg).map_err(|e| e.to_string())?;
        self.ws
            .send(Message::Text(text.into()))
            .await
            .map_err(|e| format!("signalling: {e}"))
    }

    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let end = self.run_inner(&mut stop).await;
        let stopped = matches!(end, Ok(()));
        // A clean leave: tell the gateway, release the relay, close the socket.
        if stopped {
            let _ =
                tokio::time::timeout(Duration::from_secs(1), self.send_ws(&ClientMsg::Leave)).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
        self.path.close().await;
        self.rtc.disconnect();
        if let Err(why) = end {
            warn!(uid = %self.uid, %why, "media session ended");
            self.stat(|s| {
                s.connected = false;
                s.ended = Some(why.clone());
            });
            let _ = self.events.send(Event::MediaEnded { why });
        }
    }

    async fn run_inner(&mut self, stop: &mut oneshot::Receiver<()>) -> Result<(), String> {
        if let Some(sdp) = self.first_offer.take() {
            self.send_ws(&ClientMsg::Offer { sdp }).await?;
        }
        let mut last_turn_tick = Instant::now();
        loop {
            let timeout = self.drain_rtc().await?;
            let now = Instant::now();
            let mut wake = timeout;
            if self.connected && !self.send_mids.is_empty() {
                wake = wake.min(self.next_audio).min(self.next_video);
            }
            if let MediaPath::Turn(t) = &self.path {
                if let Some(t) = t.poll_timeout() {
                    wake = wake.min(t);
                }
            }
            let wake = wake.max(now);
            tokio::select! {
                _ = &mut *stop => return Ok(()),
                m = self.ws.next() => match m {
                    Some(Ok(Message::Text(t))) => self.handle_signal(t.as_str()).await?,
                    Some(Ok(Message::Close(f))) => {
                        return Err(format!("signalling closed: {}", f.map(|f| format!("{} {}", f.code, f.reason)).unwrap_or_default()))
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(format!("signalling: {e}")),
                    None => return Err("signalling closed".into()),
                },
                inc = self.path.recv() => {
                    let (from, bytes) = match inc {
                        Some(Ok(x)) => x,
                        Some(Err(e)) => return Err(format!("media path: {e}")),
                        None => return Err("media path closed".into()),
                    };
                    let datagram = match &mut self.path {
                        MediaPath::Direct { .. } => Some((from, bytes)),
                        MediaPath::Turn(t) => t
                            .handle_incoming(from, &bytes)
                            .await
                            .map_err(|e| format!("TURN: {e}"))?,
                    };
                    if let Some((source, bytes)) = datagram {
                        let destination = self.path.local();
                        if let Ok(contents) = bytes.as_slice().try_into() {
                            let input = Input::Receive(Instant::now(), Receive {
                                proto: Protocol::Udp,
                                source,
                                destination,
                                contents,
                            });
                            if self.rtc.accepts(&input) {
                                self.rtc.handle_input(input).map_err(|e| format!("rtc: {e}"))?;
                            }
                        }
                    }
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            self.rtc
                .handle_input(Input::Timeout(now))
                .map_err(|e| format!("rtc: {e}"))?;
            if let MediaPath::Turn(t) = &mut self.path {
                if t.poll_timeout().is_some_and(|d| d <= now)
                    || now - last_turn_tick > Duration::from_secs(5)
                {
                    last_turn_tick = now;
                    t.handle_timeout().await.map_err(|e| format!("TURN: {e}"))?;
                }
            }
            if self.connected {
                self.send_due_media(now)?;
            }
        }
    }

    /// Sends what str0m wants sent and handles its events; returns its next deadline.
    async fn drain_rtc(&mut self) -> Result<Instant, String> {
        loop {
            match self.rtc.poll_output().map_err(|e| format!("rtc: {e}"))? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    if let Err(e) = self.path.send(t.destination, &t.contents).await {
                        debug!(error = %e, to = %t.destination, "media send failed");
                    }
                }
                Output::Event(e) => self.handle_rtc_event(e),
            }
        }
    }

    fn handle_rtc_event(&mut self, e: RtcEvent) {
        match e {
            RtcEvent::Connected => {
                self.connected = true;
                let now = Instant::now();
                self.next_audio = now;
                self.next_video = now;
                self.stat(|s| s.connected = true);
                info!(uid = %self.uid, "media connected");
                let _ = self.events.send(Event::MediaConnected);
            }
            RtcEvent::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.stat(|s| s.connected = false);
            }
            RtcEvent::MediaData(d) => {
                let uid = self
                    .rtc
                    .media(d.mid)
                    .map(|m| m.stream_id().to_string())
                    .unwrap_or_default();
                let kind = self.rtc.media(d.mid).map(|m| m.kind());
                self.stat(|s| {
                    let r = s.received.entry(uid).or_default();
                    match kind {
                        Some(MediaKind::Audio) => r.audio += 1,
                        Some(MediaKind::Video) => r.video += 1,
                        None => {}
                    }
                });
            }
            RtcEvent::KeyframeRequest(_) => self.clip.request_key_frame(),
            _ => {}
        }
    }

    async fn handle_signal(&mut self, text: &str) -> Result<(), String> {
        let msg: ServerMsg = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "unreadable signalling message ignored");
                return Ok(());
            }
        };
        match msg {
            ServerMsg::Answer { sdp } => {
                let answer =
                    SdpAnswer::from_sdp_string(&sdp).map_err(|e| format!("answer: {e}"))?;
                if let Some(p) = self.pending.take() {
                    self.rtc
                        .sdp_api()
                        .accept_answer(p, answer)
                        .map_err(|e| format!("answer: {e}"))?;
                }
            }
            ServerMsg::Offer { sdp } => {
                // Crossing offers (PROTOCOL.md): ours wins; the gateway offers again later.
                if self.pending.is_some() {
                    return Ok(());
                }
                let offer = SdpOffer::from_sdp_string(&sdp).map_err(|e| format!("offer: {e}"))?;
                let answer = self
                    .rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .map_err(|e| format!("offer: {e}"))?;
                self.send_ws(&ClientMsg::Answer {
                    sdp: answer.to_sdp_string(),
                })
                .await?;
            }
            ServerMsg::MemberJoined { uid } => {
                self.stat(|s| {
                    if !s.members.contains(&uid) {
                        s.members.push(uid.clone());
                        s.members.sort();
                    }
                });
                let _ = self.events.send(Event::MemberJoined { uid });
            }
            ServerMsg::MemberLeft { uid } => {
                self.stat(|s| s.members.retain(|m| *m != uid));
                let _ = self.events.send(Event::MemberLeft { uid });
            }
            ServerMsg::Error { code, message } => {
                warn!(%code, %message, "the signalling gateway reported an error");
            }
            _ => {}
        }
        Ok(())
    }

    fn send_due_media(&mut self, now: Instant) -> Result<(), String> {
        for (mid, kind) in self.send_mids.clone() {
            let due = match kind {
                MediaKind::Audio => self.next_audio,
                MediaKind::Video => self.next_video,
            };
            if now < due {
                continue;
            }
            let Some(writer) = self.rtc.writer(mid) else {
                continue;
            };
            let codec = if kind == MediaKind::Audio {
                Codec::Opus
            } else {
                Codec::Vp8
            };
            let Some(pt) = writer
                .payload_params()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
            else {
                continue;
            };
            match kind {
                MediaKind::Audio => {
                    let t = MediaTime::new(self.audio_n * 960, Frequency::FORTY_EIGHT_KHZ);
                    writer
                        .write(pt, now, t, OPUS_SILENCE.to_vec())
                        .map_err(|e| format!("audio: {e}"))?;
                    self.audio_n += 1;
                    self.next_audio = due + AUDIO_INTERVAL;
                    if self.next_audio < now {
                        self.next_audio = now + AUDIO_INTERVAL;
                    }
                    self.stat(|s| s.sent_audio += 1);
                }
                MediaKind::Video => {
                    let step = 90_000 / u64::from(self.clip.fps());
                    let t = MediaTime::from_90khz(self.video_n * step);
                    let frame = self.clip.next_frame().data.clone();
                    writer
                        .write(pt, now, t, frame)
                        .map_err(|e| format!("video: {e}"))?;
                    self.video_n += 1;
                    let interval = self.clip.interval();
                    self.next_video = due + interval;
                    if self.next_video < now {
                        self.next_video = now + interval;
                    }
                    self.stat(|s| s.sent_video += 1);
                }
            }
        }
        Ok(())
    }
}
