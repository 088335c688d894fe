#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use rtn::protocol::{ClientMsg, ServerMsg};
use rtn::{Rtn, RtnConfig};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const APP: &str = "app-test";
pub const CERT: &str = "cert-secret-0123456789";

pub async fn start_rtn() -> Rtn {
    let mut apps = HashMap::new();
    apps.insert(APP.to_string(), CERT.to_string());
    Rtn::start(RtnConfig {
        signal_listen: "127.0.0.1:0".parse().unwrap(),
        media_listen: "127.0.0.1:0".parse().unwrap(),
        media_public: "127.0.0.1".parse().unwrap(),
        apps,
    })
    .await
    .expect("rtn starts")
}

pub fn token(channel: &str, uid: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    credentials::join_token::mint_join_token(APP, CERT.as_bytes(), channel, uid, now + 600)
}

pub struct Ws(pub WebSocketStream<MaybeTlsStream<TcpStream>>);

impl Ws {
    pub async fn connect(rtn: &Rtn) -> Ws {
        let url = format!("ws://{}/signal", rtn.signal_addr());
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Ws(ws)
    }

    pub async fn send(&mut self, msg: &ClientMsg) {
        self.send_text(&serde_json::to_string(msg).unwrap()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.0
            .send(Message::Text(text.to_string().into()))
            .await
            .expect("send");
    }

    /// Next server message, within 5 s.
    pub async fn recv(&mut self) -> ServerMsg {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), self.0.next())
                .await
                .expect("a message within 5 s")
                .expect("socket open")
                .expect("no ws error");
            if let Message::Text(t) = msg {
                return serde_json::from_str(t.as_str()).expect("valid server message");
            }
        }
    }

    pub async fn join(&mut self, channel: &str, uid: &str) -> ServerMsg {
        self.send(&ClientMsg::Join {
            app_id: APP.into(),
            channel: channel.into(),
            uid: uid.into(),
            token: token(channel, uid),
        })
        .await;
        self.recv().await
    }
}
