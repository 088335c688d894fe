//! The JSON messages of the stand-in media network's `/signal` WebSocket (see
//! `crates/rtn/PROTOCOL.md`): one definition for the gateway (`rtn`) and the SDK (`client-sdk`).
#![forbid(unsafe_code)]
#![allow(missing_docs)] // fields are documented in PROTOCOL.md

use serde::{Deserialize, Serialize};

/// A message from the client to the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ClientMsg {
    /// Join `channel` of `app_id` as `uid`, admitted by a join token.
    Join {
        app_id: String,
        channel: String,
        uid: String,
        token: String,
    },
    /// Leave the channel (the socket stays open; a new `join` may follow).
    Leave,
    /// An SDP offer (client-initiated negotiation).
    Offer { sdp: String },
    /// The SDP answer to an `offer` the gateway sent.
    Answer { sdp: String },
    /// A trickled ICE candidate (accepted and ignored: the media endpoint is ICE-lite).
    Candidate {
        #[serde(default)]
        candidate: Option<String>,
    },
}

/// A message from the gateway to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMsg {
    /// The join succeeded; `members` are the other uids already in the channel.
    Joined { uid: String, members: Vec<String> },
    /// The `leave` was done.
    Left,
    /// Another member joined the channel.
    MemberJoined { uid: String },
    /// Another member left the channel (or disconnected).
    MemberLeft { uid: String },
    /// The answer to the client's `offer`.
    Answer { sdp: String },
    /// A gateway-initiated offer (new or removed remote tracks); reply with `answer`.
    Offer { sdp: String },
    /// An ICE candidate of the media endpoint (never sent today; it is in the SDP).
    Candidate { candidate: String },
    /// A request failed; see `PROTOCOL.md` for the codes.
    Error { code: String, message: String },
}

impl ServerMsg {
    /// An `error` message.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        ServerMsg::Error {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// Error codes of [`ServerMsg::Error`].
pub mod codes {
    /// The message is not valid JSON of a known type.
    pub const BAD_MESSAGE: &str = "BAD_MESSAGE";
    /// `offer`, `answer` or `leave` before a successful `join`.
    pub const NOT_JOINED: &str = "NOT_JOINED";
    /// `join` while already joined.
    pub const ALREADY_JOINED: &str = "ALREADY_JOINED";
    /// The App ID is not known to this media network.
    pub const UNKNOWN_APP: &str = "UNKNOWN_APP";
    /// The token is malformed, for another App ID, channel or uid, or forged.
    pub const INVALID_TOKEN: &str = "INVALID_TOKEN";
    /// The token is genuine but expired.
    pub const TOKEN_EXPIRED: &str = "TOKEN_EXPIRED";
    /// Another connection is in the channel with this uid.
    pub const UID_IN_USE: &str = "UID_IN_USE";
    /// The SDP could not be parsed or was refused by the media endpoint.
    pub const BAD_SDP: &str = "BAD_SDP";
    /// The media endpoint is not running.
    pub const MEDIA_UNAVAILABLE: &str = "MEDIA_UNAVAILABLE";
}
