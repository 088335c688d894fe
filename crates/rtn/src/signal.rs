//! The signalling gateway: `GET /signal` upgrades to a WebSocket speaking the JSON messages of
//! [`crate::protocol`]; channels are kept in memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use credentials::join_token::{verify_join_token, JoinTokenError};
use futures_util::{SinkExt, StreamExt};
use str0m::change::{SdpAnswer, SdpOffer};
use tokio::sync::mpsc;

use crate::media::{MediaCmd, PeerId};
use crate::protocol::{codes, ClientMsg, ServerMsg};

/// Largest signalling message accepted, in bytes (SDP offers are a few KiB).
const MAX_MESSAGE: usize = 64 * 1024;

pub(crate) struct Shared {
    pub(crate) apps: HashMap<String, String>,
    pub(crate) media: mpsc::UnboundedSender<MediaCmd>,
    rooms: Mutex<HashMap<Arc<str>, HashMap<String, Member>>>,
    next_id: AtomicU64,
}

struct Member {
    session: PeerId,
    out: mpsc::UnboundedSender<ServerMsg>,
}

/// What a session has joined.
struct Joined {
    room: Arc<str>,
    uid: String,
}

impl Shared {
    pub(crate) fn new(
        apps: HashMap<String, String>,
        media: mpsc::UnboundedSender<MediaCmd>,
    ) -> Self {
        Shared {
            apps,
            media,
            rooms: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, HashMap<String, Member>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/signal", get(upgrade))
        // The edge relay's default upstream path is `/`: serve the gateway there too.
        .route("/", get(upgrade))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(shared)
}

async fn upgrade(ws: WebSocketUpgrade, State(shared): State<Arc<Shared>>) -> Response {
    ws.max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| session(socket, shared))
}

async fn session(socket: WebSocket, shared: Arc<Shared>) {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let (out, mut out_rx) = mpsc::unbounded_channel::<ServerMsg>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let Ok(text) = serde_json::to_string(&msg) else {
                continue;
            };
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    });

    let mut joined: Option<Joined> = None;
    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            Message::Text(text) => handle(&shared, id, &out, &mut joined, text.as_str()),
            Message::Binary(_) => {
                let _ = out.send(ServerMsg::error(
                    codes::BAD_MESSAGE,
                    "binary frames are not part of the protocol",
                ));
            }
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
    leave(&shared, id, &mut joined);
    // Let queued messages drain briefly, then stop the writer (media may still hold `out`).
    drop(out);
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), writer).await;
}

fn handle(
    shared: &Shared,
    id: PeerId,
    out: &mpsc::UnboundedSender<ServerMsg>,
    joined: &mut Option<Joined>,
    text: &str,
) {
    let msg: ClientMsg = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            let _ = out.send(ServerMsg::error(
                codes::BAD_MESSAGE,
                format!("not a valid message: {e}"),
            ));
            return;
        }
    };
    match msg {
        ClientMsg::Join {
            app_id,
            channel,
            uid,
            token,
        } => {
            if joined.is_some() {
                let _ = out.send(ServerMsg::error(
                    codes::ALREADY_JOINED,
                    "already joined; send leave first",
                ));
                return;
            }
            match join(shared, id, out, &app_id, &channel, &uid, &token) {
                Ok(j) => *joined = Some(j),
                Err(e) => {
                    let _ = out.send(e);
                }
            }
        }
        ClientMsg::Leave => {
            if joined.is_none() {
                let _ = out.send(ServerMsg::error(codes::NOT_JOINED, "not joined"));
                return;
            }
            leave(shared, id, joined);
            let _ = out.send(ServerMsg::Left);
        }
        ClientMsg::Offer { sdp } => {
            let Some(j) = joined.as_ref() else {
                let _ = out.send(ServerMsg::error(codes::NOT_JOINED, "join before offer"));
                return;
            };
            let offer = match SdpOffer::from_sdp_string(&sdp) {
                Ok(o) => o,
                Err(e) => {
                    let _ = out.send(ServerMsg::error(
                        codes::BAD_SDP,
                        format!("unparsable offer: {e}"),
                    ));
                    return;
                }
            };
            let cmd = MediaCmd::Offer {
                peer: id,
                room: j.room.clone(),
                uid: j.uid.clone(),
                offer,
                out: out.clone(),
            };
            if shared.media.send(cmd).is_err() {
                let _ = out.send(ServerMsg::error(
                    codes::MEDIA_UNAVAILABLE,
                    "the media endpoint is not running",
                ));
            }
        }
        ClientMsg::Answer { sdp } => {
            if joined.is_none() {
                let _ = out.send(ServerMsg::error(codes::NOT_JOINED, "join before answer"));
                return;
            }
            match SdpAnswer::from_sdp_string(&sdp) {
                Ok(answer) => {
                    let _ = shared.media.send(MediaCmd::Answer { peer: id, answer });
                }
                Err(e) => {
                    let _ = out.send(ServerMsg::error(
                        codes::BAD_SDP,
                        format!("unparsable answer: {e}"),
                    ));
                }
            }
        }
        // ICE-lite: the media endpoint learns the client's address from its checks.
        ClientMsg::Candidate { .. } => {}
    }
}

fn join(
    shared: &Shared,
    id: PeerId,
    out: &mpsc::UnboundedSender<ServerMsg>,
    app_id: &str,
    channel: &str,
    uid: &str,
    token: &str,
) -> Result<Joined, ServerMsg> {
    let Some(certificate) = shared.apps.get(app_id) else {
        return Err(ServerMsg::error(
            codes::UNKNOWN_APP,
            "this App ID is not served by this media network",
        ));
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match verify_join_token(token, app_id, certificate.as_bytes(), channel, uid, now) {
        Ok(_) => {}
        Err(JoinTokenError::Expired { expired_at }) => {
            return Err(ServerMsg::error(
                codes::TOKEN_EXPIRED,
                format!("join token expired at {expired_at}"),
            ))
        }
        Err(e) => {
            return Err(ServerMsg::error(
                codes::INVALID_TOKEN,
                format!("join token rejected: {e}"),
            ))
        }
    }
    // app_id contains no ':' (the token check enforces it), so the key is unambiguous.
    let room: Arc<str> = format!("{app_id}:{channel}").into();
    let mut rooms = shared.rooms();
    let members = rooms.entry(room.clone()).or_default();
    if members.contains_key(uid) {
        return Err(ServerMsg::error(
            codes::UID_IN_USE,
            "another connection is in this channel with this uid",
        ));
    }
    let mut others: Vec<String> = members.keys().cloned().collect();
    others.sort();
    for m in members.values() {
        let _ = m.out.send(ServerMsg::MemberJoined {
            uid: uid.to_string(),
        });
    }
    members.insert(
        uid.to_string(),
        Member {
            session: id,
            out: out.clone(),
        },
    );
    drop(rooms);
    tracing::info!(%room, uid, "member joined");
    let _ = out.send(ServerMsg::Joined {
        uid: uid.to_string(),
        members: others,
    });
    Ok(Joined {
        room,
        uid: uid.to_string(),
    })
}

fn leave(shared: &Shared, id: PeerId, joined: &mut Option<Joined>) {
    let Some(j) = joined.take() else {
        return;
    };
    {
        let mut rooms = shared.rooms();
        if let Some(members) = rooms.get_mut(&j.room) {
            if members.get(&j.uid).is_some_and(|m| m.session == id) {
                members.remove(&j.uid);
            }
            for m in members.values() {
                let _ = m.out.send(ServerMsg::MemberLeft { uid: j.uid.clone() });
            }
            if members.is_empty() {
                rooms.remove(&j.room);
            }
        }
    }
    let _ = shared.media.send(MediaCmd::Remove { peer: id });
    tracing::info!(room = %j.room, uid = %j.uid, "member left");
}
