//! The media endpoint: one UDP socket, many ICE-lite [`Rtc`] peers, and an SFU-style
//! forwarder that sends each member's incoming audio/video to the other members of the same
//! channel. Modelled on str0m's `chat` example, with renegotiation over the signalling
//! WebSocket instead of a data channel.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::crypto::CryptoProvider;
use str0m::media::Rid;
use str0m::media::{Direction, KeyframeRequest, KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::protocol::{codes, ServerMsg};

/// Identifies one signalling session (and its peer connection, if it has one).
pub(crate) type PeerId = u64;

/// What the signalling gateway asks of the media task.
pub(crate) enum MediaCmd {
    /// The client's offer: create the peer on the first one, renegotiate on later ones.
    Offer {
        peer: PeerId,
        room: Arc<str>,
        uid: String,
        offer: SdpOffer,
        out: mpsc::UnboundedSender<ServerMsg>,
    },
    /// The client's answer to an offer the media task sent.
    Answer { peer: PeerId, answer: SdpAnswer },
    /// The session left or closed: drop its peer and the tracks it published.
    Remove { peer: PeerId },
}

/// The media task: runs until every command sender is dropped.
pub(crate) async fn run(
    socket: UdpSocket,
    candidate_addr: SocketAddr,
    mut rx: mpsc::UnboundedReceiver<MediaCmd>,
    crypto: Arc<CryptoProvider>,
) {
    let mut peers: Vec<Peer> = Vec::new();
    let mut queue: VecDeque<Propagated> = VecDeque::new();
    let mut buf = vec![0u8; 2000];

    loop {
        peers.retain(|p| {
            let alive = p.rtc.is_alive();
            if !alive {
                tracing::debug!(peer = p.id, uid = %p.uid, "media peer gone");
            }
            alive
        });

        let mut timeout = Instant::now() + Duration::from_millis(100);
        for peer in peers.iter_mut() {
            let t = poll_until_timeout(peer, &mut queue, &socket);
            timeout = timeout.min(t);
        }

        if !queue.is_empty() {
            while let Some(p) = queue.pop_front() {
                propagate(&p, &mut peers);
            }
            continue;
        }

        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, source)) => {
                    if let Ok(contents) = buf[..n].try_into() {
                        let input = Input::Receive(
                            Instant::now(),
                            Receive {
                                proto: Protocol::Udp,
                                source,
                                destination: candidate_addr,
                                contents,
                            },
                        );
                        if let Some(peer) = peers.iter_mut().find(|p| p.rtc.accepts(&input)) {
                            peer.handle_input(input);
                        } else {
                            tracing::trace!(%source, "no peer accepts datagram");
                        }
                    }
                }
                Err(e) => {
                    // ICMP errors (e.g. port unreachable) surface here on Linux; not fatal.
                    tracing::debug!(error = %e, "media socket recv error");
                }
            },
            cmd = rx.recv() => match cmd {
                None => return,
                Some(cmd) => handle_cmd(cmd, &mut peers, candidate_addr, &crypto),
            },
            _ = tokio::time::sleep_until(timeout.into()) => {}
        }

        let now = Instant::now();
        for peer in peers.iter_mut() {
            peer.handle_input(Input::Timeout(now));
        }
    }
}

fn handle_cmd(
    cmd: MediaCmd,
    peers: &mut Vec<Peer>,
    candidate_addr: SocketAddr,
    crypto: &Arc<CryptoProvider>,
) {
    match cmd {
        MediaCmd::Offer {
            peer,
            room,
            uid,
            offer,
            out,
        } => {
            if let Some(p) = peers.iter_mut().find(|p| p.id == peer) {
                p.handle_offer(offer);
                return;
            }
            let mut rtc = Rtc::builder()
                .set_ice_lite(true)
                .set_crypto_provider(crypto.clone())
                .build(Instant::now());
            let candidate = match Candidate::host(candidate_addr, "udp") {
                Ok(c) => c,
                Err(e) => {
                    let _ = out.send(ServerMsg::error(
                        codes::MEDIA_UNAVAILABLE,
                        format!("bad media candidate: {e}"),
                    ));
                    return;
                }
            };
            rtc.add_local_candidate(candidate);
            let mut p = Peer {
                id: peer,
                room,
                uid,
                rtc,
                out,
                pending: None,
                tracks_in: Vec::new(),
                tracks_out: Vec::new(),
                chosen_rid: None,
            };
            if !p.handle_offer(offer) {
                return;
            }
            tracing::debug!(peer, uid = %p.uid, room = %p.room, "media peer created");
            // Subscribe the new peer to every track already published in its room.
            let room = p.room.clone();
            for track in peers
                .iter()
                .filter(|o| o.room == room)
                .flat_map(|o| o.tracks_in.iter())
            {
                p.handle_track_open(Arc::downgrade(&track.id));
            }
            peers.push(p);
        }
        MediaCmd::Answer { peer, answer } => {
            if let Some(p) = peers.iter_mut().find(|p| p.id == peer) {
                p.handle_answer(answer);
            }
        }
        MediaCmd::Remove { peer } => {
            if let Some(p) = peers.iter_mut().find(|p| p.id == peer) {
                p.rtc.disconnect();
            }
            peers.retain(|p| p.id != peer);
        }
    }
}

fn poll_until_timeout(
    peer: &mut Peer,
    queue: &mut VecDeque<Propagated>,
    socket: &UdpSocket,
) -> Instant {
    loop {
        if !peer.rtc.is_alive() {
            return Instant::now();
        }
        match peer.poll_output(socket) {
            Propagated::Timeout(t) => return t,
            Propagated::Noop => {}
            p => queue.push_back(p),
        }
    }
}

fn propagate(propagated: &Propagated, peers: &mut [Peer]) {
    let Some((origin, room)) = propagated.origin() else {
        return;
    };
    for peer in peers.iter_mut() {
        if peer.id == origin || peer.room != *room {
            continue;
        }
        match propagated {
            Propagated::TrackOpen(_, _, track_in) => peer.handle_track_open(track_in.clone()),
            Propagated::MediaData(_, _, data) => peer.handle_media_data_out(origin, data),
            Propagated::KeyframeRequest(_, _, req, source, mid_in) => {
                if *source == peer.id {
                    peer.handle_keyframe_request(*req, *mid_in);
                }
            }
            Propagated::Noop | Propagated::Timeout(_) => {}
        }
    }
}

#[derive(Debug)]
struct TrackIn {
    origin: PeerId,
    mid: Mid,
    kind: MediaKind,
    /// The publishing member's uid, used as the msid stream id of the forwarded track.
    uid: String,
}

struct TrackInEntry {
    id: Arc<TrackIn>,
    last_keyframe_request: Option<Instant>,
}

struct TrackOut {
    track_in: Weak<TrackIn>,
    state: TrackOutState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrackOutState {
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
    ToStop(Mid),
    NegotiatingStop(Mid),
}

impl TrackOut {
    fn mid(&self) -> Option<Mid> {
        match self.state {
            TrackOutState::ToOpen => None,
            TrackOutState::Negotiating(m)
            | TrackOutState::Open(m)
            | TrackOutState::ToStop(m)
            | TrackOutState::NegotiatingStop(m) => Some(m),
        }
    }
}

struct Peer {
    id: PeerId,
    room: Arc<str>,
    uid: String,
    rtc: Rtc,
    out: mpsc::UnboundedSender<ServerMsg>,
    pending: Option<SdpPendingOffer>,
    tracks_in: Vec<TrackInEntry>,
    tracks_out: Vec<TrackOut>,
    chosen_rid: Option<Rid>,
}

#[allow(clippy::large_enum_variant)]
enum Propagated {
    Noop,
    Timeout(Instant),
    TrackOpen(PeerId, Arc<str>, Weak<TrackIn>),
    MediaData(PeerId, Arc<str>, MediaData),
    /// (requesting peer, room, request, peer that publishes the track, its mid)
    KeyframeRequest(PeerId, Arc<str>, KeyframeRequest, PeerId, Mid),
}

impl Propagated {
    fn origin(&self) -> Option<(PeerId, &Arc<str>)> {
        match self {
            Propagated::TrackOpen(c, r, _)
            | Propagated::MediaData(c, r, _)
            | Propagated::KeyframeRequest(c, r, _, _, _) => Some((*c, r)),
            Propagated::Noop | Propagated::Timeout(_) => None,
        }
    }
}

impl Peer {
    fn handle_input(&mut self, input: Input<'_>) {
        if !self.rtc.is_alive() {
            return;
        }
        if let Err(e) = self.rtc.handle_input(input) {
            tracing::info!(peer = self.id, error = ?e, "media peer failed");
            self.rtc.disconnect();
        }
    }

    fn poll_output(&mut self, socket: &UdpSocket) -> Propagated {
        if !self.rtc.is_alive() {
            return Propagated::Noop;
        }
        if self.negotiate_if_needed() {
            return Propagated::Noop;
        }
        match self.rtc.poll_output() {
            Ok(output) => self.handle_output(output, socket),
            Err(e) => {
                tracing::info!(peer = self.id, error = ?e, "media peer poll failed");
                self.rtc.disconnect();
                Propagated::Noop
            }
        }
    }

    fn handle_output(&mut self, output: Output, socket: &UdpSocket) -> Propagated {
        match output {
            Output::Transmit(t) => {
                // UDP: a full send buffer drops the datagram, as the network would.
                if let Err(e) = socket.try_send_to(&t.contents, t.destination) {
                    tracing::trace!(error = %e, "media send dropped");
                }
                Propagated::Noop
            }
            Output::Timeout(t) => Propagated::Timeout(t),
            Output::Event(e) => match e {
                Event::IceConnectionStateChange(s) => {
                    tracing::debug!(peer = self.id, state = ?s, "ice state");
                    if s == IceConnectionState::Disconnected {
                        self.rtc.disconnect();
                    }
                    Propagated::Noop
                }
                Event::MediaAdded(m) => self.handle_media_added(m.mid, m.kind),
                Event::MediaData(data) => self.handle_media_data_in(data),
                Event::KeyframeRequest(req) => self.handle_incoming_keyframe_req(req),
                _ => Propagated::Noop,
            },
        }
    }

    fn handle_media_added(&mut self, mid: Mid, kind: MediaKind) -> Propagated {
        // Media the client receives only (e.g. the m-lines we added for forwarding, or a
        // recvonly transceiver) is not a published track.
        let Some(media) = self.rtc.media(mid) else {
            return Propagated::Noop;
        };
        if !media.direction().is_receiving() {
            return Propagated::Noop;
        }
        let entry = TrackInEntry {
            id: Arc::new(TrackIn {
                origin: self.id,
                mid,
                kind,
                uid: self.uid.clone(),
            }),
            last_keyframe_request: None,
        };
        let weak = Arc::downgrade(&entry.id);
        self.tracks_in.push(entry);
        Propagated::TrackOpen(self.id, self.room.clone(), weak)
    }

    fn handle_media_data_in(&mut self, data: MediaData) -> Propagated {
        if !data.contiguous {
            self.request_keyframe_throttled(data.mid, data.rid, KeyframeRequestKind::Fir);
        }
        Propagated::MediaData(self.id, self.room.clone(), data)
    }

    fn request_keyframe_throttled(
        &mut self,
        mid: Mid,
        rid: Option<Rid>,
        kind: KeyframeRequestKind,
    ) {
        let Some(entry) = self.tracks_in.iter_mut().find(|t| t.id.mid == mid) else {
            return;
        };
        if entry
            .last_keyframe_request
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        entry.last_keyframe_request = Some(Instant::now());
        if let Some(mut writer) = self.rtc.writer(mid) {
            let _ = writer.request_keyframe(rid, kind);
        }
    }

    fn handle_incoming_keyframe_req(&self, mut req: KeyframeRequest) -> Propagated {
        let Some(track_out) = self.tracks_out.iter().find(|t| t.mid() == Some(req.mid)) else {
            return Propagated::Noop;
        };
        let Some(track_in) = track_out.track_in.upgrade() else {
            return Propagated::Noop;
        };
        req.rid = self.chosen_rid;
        Propagated::KeyframeRequest(
            self.id,
            self.room.clone(),
            req,
            track_in.origin,
            track_in.mid,
        )
    }

    /// Sends a gateway-initiated offer when forwarded tracks must be added or stopped.
    fn negotiate_if_needed(&mut self) -> bool {
        if self.pending.is_some() {
            return false;
        }
        for track in &mut self.tracks_out {
            if let TrackOutState::Open(m) = track.state {
                if track.track_in.upgrade().is_none() {
                    track.state = TrackOutState::ToStop(m);
                }
            }
        }
        // Tracks whose publisher left before they were negotiated are simply dropped.
        self.tracks_out
            .retain(|t| t.state != TrackOutState::ToOpen || t.track_in.upgrade().is_some());

        let mut change = self.rtc.sdp_api();
        for track in &mut self.tracks_out {
            match track.state {
                TrackOutState::ToOpen => {
                    if let Some(track_in) = track.track_in.upgrade() {
                        let mid = change.add_media(
                            track_in.kind,
                            Direction::SendOnly,
                            Some(track_in.uid.clone()),
                            None,
                            None,
                        );
                        track.state = TrackOutState::Negotiating(mid);
                    }
                }
                TrackOutState::ToStop(mid) => {
                    change.stop_media(mid);
                    track.state = TrackOutState::NegotiatingStop(mid);
                }
                _ => {}
            }
        }
        if !change.has_changes() {
            return false;
        }
        let Some((offer, pending)) = change.apply() else {
            return false;
        };
        self.pending = Some(pending);
        let _ = self.out.send(ServerMsg::Offer {
            sdp: offer.to_sdp_string(),
        });
        true
    }

    /// Answers a client offer. Returns false (after telling the client) if it was refused.
    fn handle_offer(&mut self, offer: SdpOffer) -> bool {
        // The gateway is the "polite" side: a client offer cancels its own pending offer
        // (str0m invalidates it), and the forwarded tracks are offered again afterwards.
        self.pending = None;
        for track in &mut self.tracks_out {
            match track.state {
                TrackOutState::Negotiating(_) => track.state = TrackOutState::ToOpen,
                TrackOutState::NegotiatingStop(m) => track.state = TrackOutState::ToStop(m),
                _ => {}
            }
        }
        match self.rtc.sdp_api().accept_offer(offer) {
            Ok(answer) => {
                let _ = self.out.send(ServerMsg::Answer {
                    sdp: answer.to_sdp_string(),
                });
                true
            }
            Err(e) => {
                let _ = self.out.send(ServerMsg::error(
                    codes::BAD_SDP,
                    format!("offer refused: {e}"),
                ));
                false
            }
        }
    }

    fn handle_answer(&mut self, answer: SdpAnswer) {
        let Some(pending) = self.pending.take() else {
            // An answer to an offer that a crossing client offer cancelled: ignore.
            return;
        };
        if let Err(e) = self.rtc.sdp_api().accept_answer(pending, answer) {
            let _ = self.out.send(ServerMsg::error(
                codes::BAD_SDP,
                format!("answer refused: {e}"),
            ));
            for track in &mut self.tracks_out {
                match track.state {
                    TrackOutState::Negotiating(_) => track.state = TrackOutState::ToOpen,
                    TrackOutState::NegotiatingStop(m) => track.state = TrackOutState::ToStop(m),
                    _ => {}
                }
            }
            return;
        }
        for track in &mut self.tracks_out {
            if let TrackOutState::Negotiating(m) = track.state {
                track.state = TrackOutState::Open(m);
            }
        }
        self.tracks_out
            .retain(|t| !matches!(t.state, TrackOutState::NegotiatingStop(_)));
    }

    fn handle_track_open(&mut self, track_in: Weak<TrackIn>) {
        self.tracks_out.push(TrackOut {
            track_in,
            state: TrackOutState::ToOpen,
        });
    }

    fn handle_media_data_out(&mut self, origin: PeerId, data: &MediaData) {
        let Some(mid) = self
            .tracks_out
            .iter()
            .find(|o| {
                o.track_in
                    .upgrade()
                    .is_some_and(|i| i.origin == origin && i.mid == data.mid)
            })
            .and_then(|o| match o.state {
                TrackOutState::Open(m) => Some(m),
                _ => None,
            })
        else {
            return;
        };
        // Simulcast: forward the unlayered stream or the "h" layer only.
        if data.rid.is_some() && data.rid != Some("h".into()) {
            return;
        }
        self.chosen_rid = data.rid;
        let Some(writer) = self.rtc.writer(mid) else {
            return;
        };
        let Some(pt) = writer.match_params(data.params) else {
            return;
        };
        if let Err(e) = writer.write(pt, data.network_time, data.time, data.data.clone()) {
            tracing::info!(peer = self.id, error = ?e, "forwarding failed");
            self.rtc.disconnect();
        }
    }

    fn handle_keyframe_request(&mut self, req: KeyframeRequest, mid_in: Mid) {
        if !self.tracks_in.iter().any(|i| i.id.mid == mid_in) {
            return;
        }
        if let Some(mut writer) = self.rtc.writer(mid_in) {
            let _ = writer.request_keyframe(req.rid, req.kind);
        }
    }
}
