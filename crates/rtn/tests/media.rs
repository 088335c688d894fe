//! Media through the SFU: str0m clients in this test (sans-IO, driven over real UDP sockets
//! on 127.0.0.1) join channels, each sends Opus-typed audio RTP (the payload names its sender)
//! and each counts what it receives, forwarded by the rtn.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{start_rtn, Ws};
use futures_util::StreamExt;
use rtn::protocol::{ClientMsg, ServerMsg};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

/// Packets received, by the sender uid their payload names.
type Counts = Arc<Mutex<HashMap<String, u64>>>;

struct Client {
    uid: String,
    ws: Ws,
    rtc: Rtc,
    sock: UdpSocket,
    local: SocketAddr,
    /// What this client publishes.
    send_mids: Vec<(Mid, MediaKind)>,
    pending: Option<SdpPendingOffer>,
    connected: bool,
    received: Counts,
    sent: u64,
    /// The SDP offers the gateway sent (renegotiation for forwarded tracks).
    server_offers: Vec<String>,
    /// Server offers ignored because one of ours was outstanding.
    crossed: u32,
}

impl Client {
    async fn new(rtn: &rtn::Rtn, channel: &str, uid: &str, dir: Direction) -> Client {
        Self::with_media(rtn, channel, uid, dir, &[MediaKind::Audio]).await
    }

    async fn with_media(
        rtn: &rtn::Rtn,
        channel: &str,
        uid: &str,
        dir: Direction,
        kinds: &[MediaKind],
    ) -> Client {
        let mut ws = Ws::connect(rtn).await;
        assert!(matches!(
            ws.join(channel, uid).await,
            ServerMsg::Joined { .. }
        ));
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = sock.local_addr().unwrap();
        let mut rtc = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let mut change = rtc.sdp_api();
        let send_mids = kinds
            .iter()
            .map(|k| (change.add_media(*k, dir, Some(uid.into()), None, None), *k))
            .collect();
        let (offer, pending) = change.apply().expect("an offer");
        ws.send(&ClientMsg::Offer {
            sdp: offer.to_sdp_string(),
        })
        .await;
        Client {
            uid: uid.into(),
            ws,
            rtc,
            sock,
            local,
            send_mids,
            pending: Some(pending),
            connected: false,
            received: Counts::default(),
            sent: 0,
            server_offers: Vec::new(),
            crossed: 0,
        }
    }

    async fn handle_ws(&mut self, text: &str) {
        let msg: ServerMsg = serde_json::from_str(text).expect("server message");
        match msg {
            ServerMsg::Answer { sdp } => {
                let answer = SdpAnswer::from_sdp_string(&sdp).expect("answer parses");
                let pending = self.pending.take().expect("an offer pending");
                self.rtc
                    .sdp_api()
                    .accept_answer(pending, answer)
                    .expect("answer accepted");
            }
            ServerMsg::Offer { sdp } => {
                if self.pending.is_some() {
                    // Crossing offers (PROTOCOL.md): the client ignores the server's and
                    // waits for the answer to its own; the server offers again later.
                    self.crossed += 1;
                    return;
                }
                let offer = SdpOffer::from_sdp_string(&sdp).expect("offer parses");
                self.server_offers.push(sdp);
                let answer = self.rtc.sdp_api().accept_offer(offer).expect("offer ok");
                self.ws
                    .send(&ClientMsg::Answer {
                        sdp: answer.to_sdp_string(),
                    })
                    .await;
            }
            ServerMsg::Error { code, message } => {
                panic!("{}: error {code}: {message}", self.uid)
            }
            _ => {}
        }
    }

    /// Publishes another track mid-call (client-initiated renegotiation).
    async fn publish(&mut self, kind: MediaKind) {
        let mut change = self.rtc.sdp_api();
        let mid = change.add_media(
            kind,
            Direction::SendOnly,
            Some(self.uid.clone()),
            None,
            None,
        );
        let (offer, pending) = change.apply().expect("an offer");
        self.pending = Some(pending);
        self.send_mids.push((mid, kind));
        self.ws
            .send(&ClientMsg::Offer {
                sdp: offer.to_sdp_string(),
            })
            .await;
    }

    /// Drives the client (and sends a 20 ms audio frame once connected) until `stop` is set.
    async fn run(mut self, stop: Arc<AtomicBool>) -> Client {
        let mut buf = vec![0u8; 2000];
        let mut next_frame = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let timeout = loop {
                match self.rtc.poll_output().expect("poll_output") {
                    Output::Transmit(t) => {
                        let _ = self.sock.send_to(&t.contents, t.destination).await;
                    }
                    Output::Timeout(t) => break t,
                    Output::Event(Event::Connected) => self.connected = true,
                    Output::Event(Event::MediaData(d)) => {
                        let text = String::from_utf8_lossy(&d.data);
                        if let Some((from, _seq)) =
                            text.strip_prefix("from-").and_then(|t| t.rsplit_once('-'))
                        {
                            *self
                                .received
                                .lock()
                                .unwrap()
                                .entry(from.into())
                                .or_default() += 1;
                        }
                    }
                    Output::Event(_) => {}
                }
            };
            let wake = if self.connected {
                timeout.min(next_frame)
            } else {
                timeout
            };
            tokio::select! {
                r = self.sock.recv_from(&mut buf) => {
                    let (n, source) = r.expect("udp recv");
                    let input = Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Udp,
                            source,
                            destination: self.local,
                            contents: buf[..n].try_into().expect("datagram"),
                        },
                    );
                    self.rtc.handle_input(input).expect("handle_input");
                }
                m = self.ws.0.next() => {
                    if let Some(Ok(Message::Text(t))) = m {
                        self.handle_ws(t.as_str()).await;
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
                // Re-check `stop` now and then.
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            let now = Instant::now();
            self.rtc.handle_input(Input::Timeout(now)).expect("timeout");

            if self.connected && now >= next_frame {
                next_frame = now + Duration::from_millis(20);
                for (mid, kind) in self.send_mids.clone() {
                    let Some(writer) = self.rtc.writer(mid) else {
                        continue;
                    };
                    let (codec, time, tag) = if kind == MediaKind::Audio {
                        let t = MediaTime::new(self.sent * 960, Frequency::FORTY_EIGHT_KHZ);
                        (Codec::Opus, t, "a")
                    } else {
                        (Codec::Vp8, MediaTime::from_90khz(self.sent * 1800), "v")
                    };
                    let pt = writer
                        .payload_params()
                        .find(|p| p.spec().codec == codec)
                        .map(|p| p.pt())
                        .expect("codec negotiated");
                    // 'f' (0x66) has bit 0 clear: a VP8 decoder would call it a key frame.
                    let payload = format!("from-{}/{tag}-{:06}", self.uid, self.sent);
                    writer
                        .write(pt, now, time, payload.into_bytes())
                        .expect("write");
                }
                self.sent += 1;
            }
        }
        self
    }
}

/// Audio packets from `from` (or, with a `/v` suffix, video frames).
fn got(received: &Counts, from: &str) -> u64 {
    let key = if from.contains('/') {
        from.to_string()
    } else {
        format!("{from}/a")
    };
    received.lock().unwrap().get(&key).copied().unwrap_or(0)
}

struct Running(Arc<AtomicBool>, Vec<tokio::task::JoinHandle<Client>>);

fn run_all(clients: Vec<Client>) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = clients
        .into_iter()
        .map(|c| tokio::spawn(c.run(stop.clone())))
        .collect();
    Running(stop, tasks)
}

async fn stop_all(running: Running) -> Vec<Client> {
    running.0.store(true, Ordering::Relaxed);
    let mut out = Vec::new();
    for t in running.1 {
        out.push(t.await.expect("client task"));
    }
    out
}

/// Waits (at most 20 s) until every (receiver, sender uid) pair counted `n` more packets
/// than when called.
async fn wait_for(what: &str, want: &[(&Counts, &str)], n: u64) {
    let base: Vec<u64> = want.iter().map(|(r, from)| got(r, from)).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now: Vec<u64> = want.iter().map(|(r, from)| got(r, from)).collect();
        if now.iter().zip(&base).all(|(c, b)| c - b >= n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: media not forwarded in 20 s (counts {now:?}, at start {base:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_is_forwarded_both_ways() {
    let rtn = start_rtn().await;
    let alice = Client::new(&rtn, "call", "alice", Direction::SendRecv).await;
    let bob = Client::new(&rtn, "call", "bob", Direction::SendOnly).await;
    let (a_rx, b_rx) = (alice.received.clone(), bob.received.clone());
    let running = run_all(vec![alice, bob]);
    wait_for("alice<->bob", &[(&a_rx, "bob"), (&b_rx, "alice")], 20).await;
    let clients = stop_all(running).await;
    let (alice, bob) = (&clients[0], &clients[1]);
    // Forwarded tracks are labelled with the publisher's uid (msid stream id).
    assert!(alice.server_offers.iter().any(|s| s.contains("msid:bob ")));
    assert!(bob.server_offers.iter().any(|s| s.contains("msid:alice ")));
    assert!(alice.sent > 0 && bob.sent > 0);
    // Nothing echoes a member's own media back to it.
    assert_eq!(got(&a_rx, "alice"), 0);
    assert_eq!(got(&b_rx, "bob"), 0);
}

/// A late joiner is subscribed to the tracks already published; a member who leaves has its
/// forwarded tracks stopped while the others keep talking; another channel hears nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_leave_and_channel_isolation() {
    let rtn = start_rtn().await;
    let alice = Client::new(&rtn, "call", "alice", Direction::SendRecv).await;
    let bob = Client::new(&rtn, "call", "bob", Direction::SendOnly).await;
    let (a_rx, b_rx) = (alice.received.clone(), bob.received.clone());
    let running = run_all(vec![alice, bob]);
    wait_for("alice<->bob", &[(&a_rx, "bob"), (&b_rx, "alice")], 10).await;
    let mut clients = stop_all(running).await;

    // carol joins the call late; dave is alone in another channel.
    let carol = Client::new(&rtn, "call", "carol", Direction::SendRecv).await;
    let dave = Client::new(&rtn, "other-call", "dave", Direction::SendRecv).await;
    let (c_rx, d_rx) = (carol.received.clone(), dave.received.clone());
    clients.push(carol);
    clients.push(dave);
    let running = run_all(clients);
    let pairs = [
        (&c_rx, "alice"),
        (&c_rx, "bob"),
        (&a_rx, "carol"),
        (&b_rx, "carol"),
        (&a_rx, "bob"),
    ];
    wait_for("three in the call", &pairs, 10).await;
    let mut clients = stop_all(running).await;

    // bob leaves: alice and carol are renegotiated with his track stopped (port 0).
    let mut bob = clients.remove(1);
    let offers_before = clients[0].server_offers.len();
    bob.ws.send(&ClientMsg::Leave).await;
    drop(bob);
    let running = run_all(clients);
    wait_for("after bob left", &[(&a_rx, "carol"), (&c_rx, "alice")], 10).await;
    let clients = stop_all(running).await;
    let (alice, carol, dave) = (&clients[0], &clients[1], &clients[2]);
    assert_eq!((alice.uid.as_str(), carol.uid.as_str()), ("alice", "carol"));
    assert!(
        alice.server_offers[offers_before..]
            .iter()
            .any(|s| s.contains("m=audio 0 ")),
        "alice was not renegotiated with bob's track stopped: {:#?}",
        &alice.server_offers[offers_before..]
    );
    // dave, alone in another channel, received nothing and sent into the void.
    assert!(dave.sent > 0);
    assert!(
        d_rx.lock().unwrap().is_empty(),
        "dave got {:?}",
        d_rx.lock().unwrap()
    );
}

/// Video too: VP8 frames (payloads are not real VP8, which an SFU does not care about) are
/// forwarded both ways alongside the audio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_and_audio_are_forwarded_both_ways() {
    let rtn = start_rtn().await;
    let both = [MediaKind::Audio, MediaKind::Video];
    let alice = Client::with_media(&rtn, "call", "alice", Direction::SendRecv, &both).await;
    let bob = Client::with_media(&rtn, "call", "bob", Direction::SendOnly, &both).await;
    let (a_rx, b_rx) = (alice.received.clone(), bob.received.clone());
    let running = run_all(vec![alice, bob]);
    let pairs = [
        (&a_rx, "bob"),
        (&a_rx, "bob/v"),
        (&b_rx, "alice"),
        (&b_rx, "alice/v"),
    ];
    wait_for("audio+video", &pairs, 20).await;
    let clients = stop_all(running).await;
    assert!(clients[0]
        .server_offers
        .iter()
        .any(|s| s.contains("m=video")));
}

/// A member publishes video mid-call with its own offer (client-initiated renegotiation) at
/// the moment the server is itself renegotiating (a third member joins): whatever crosses,
/// everybody ends up receiving everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renegotiation_mid_call_with_crossing_offers() {
    let rtn = start_rtn().await;
    let alice = Client::new(&rtn, "call", "alice", Direction::SendRecv).await;
    let bob = Client::new(&rtn, "call", "bob", Direction::SendRecv).await;
    let (a_rx, b_rx) = (alice.received.clone(), bob.received.clone());
    let running = run_all(vec![alice, bob]);
    wait_for("alice<->bob", &[(&a_rx, "bob"), (&b_rx, "alice")], 10).await;
    let mut clients = stop_all(running).await;

    // carol joins (the server will offer her track to alice and bob) while alice and bob
    // both publish video with offers of their own.
    let carol = Client::new(&rtn, "call", "carol", Direction::SendOnly).await;
    let c_rx = carol.received.clone();
    clients[0].publish(MediaKind::Video).await;
    clients[1].publish(MediaKind::Video).await;
    clients.push(carol);
    let running = run_all(clients);
    let pairs = [
        (&a_rx, "bob/v"),
        (&a_rx, "carol"),
        (&b_rx, "alice/v"),
        (&b_rx, "carol"),
        (&c_rx, "alice"),
        (&c_rx, "alice/v"),
        (&c_rx, "bob"),
        (&c_rx, "bob/v"),
    ];
    wait_for("after renegotiation", &pairs, 10).await;
    let clients = stop_all(running).await;
    let crossed: u32 = clients.iter().map(|c| c.crossed).sum();
    eprintln!("server offers ignored because they crossed a client offer: {crossed}");
}
