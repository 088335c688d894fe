//! The rules of ARCHITECTURE §5 as a small pure state machine: no I/O, no clock, no locks.
//! [`crate::Client`] keeps one [`Rules`] behind its lock and asks it before doing anything.
//!
//! - Modes: 3 (UDP, the default when none is given), 4 (TCP), 5 (TLS). 1 and 2 are
//!   [`SdkError::NotSupported`]; anything else is [`SdkError::InvalidParameter`].
//! - The four proxy calls work only while disconnected (before join, after leave). Otherwise
//!   they fail with [`SdkError::InvalidOperation`]: `"start proxy server before join"`,
//!   `"stop proxy server before join"`, `"set proxy server before join"`,
//!   `"set turn server before join"`.
//! - `set_proxy_server` / `set_turn_server` (self-deployed, they may be combined) and
//!   `start_proxy_server` (the cloud proxy) exclude each other in both orders:
//!   `InvalidOperation("proxy already set")`.
//! - `stop_proxy_server` turns every proxy off; starting twice keeps the last mode; setting
//!   the same self-deployed server twice keeps the last one.
//! - Checks run in this order: connection state, then the arguments, then the exclusion. A
//!   call that fails changes nothing.
//! - One join at a time: join is refused unless disconnected. A leave during a join cancels
//!   it ([`LeaveAction::CancelJoin`]); the join's late result is then ignored.

use control_api::TransportMode;

use crate::{ProxyServer, SdkError, TurnServer};

/// `start_proxy_server` while not disconnected.
pub const START_BEFORE_JOIN: &str = "start proxy server before join";
/// `stop_proxy_server` while not disconnected.
pub const STOP_BEFORE_JOIN: &str = "stop proxy server before join";
/// `set_proxy_server` while not disconnected.
pub const SET_PROXY_BEFORE_JOIN: &str = "set proxy server before join";
/// `set_turn_server` while not disconnected.
pub const SET_TURN_BEFORE_JOIN: &str = "set turn server before join";
/// The cloud proxy and a self-deployed one, in either order.
pub const PROXY_ALREADY_SET: &str = "proxy already set";
/// `join` while a join is running.
pub const JOIN_IN_PROGRESS: &str = "join already in progress";
/// `join` while joined.
pub const ALREADY_JOINED: &str = "already joined";
/// `join` while a leave is running.
pub const LEAVE_IN_PROGRESS: &str = "leave in progress";

/// Where the client is between join and leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConnectionState {
    /// Not joined: the proxy calls are allowed.
    #[default]
    Disconnected,
    /// `join` is running.
    Connecting,
    /// Joined.
    Connected,
    /// `leave` is running.
    Disconnecting,
}

/// Which proxy the next join uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ProxySetting {
    /// No proxy: join directly.
    #[default]
    Off,
    /// The cloud proxy in this mode (`start_proxy_server`).
    Cloud(TransportMode),
    /// Self-deployed servers (`set_proxy_server` and/or `set_turn_server`).
    SelfHosted {
        /// From `set_proxy_server`.
        proxy: Option<ProxyServer>,
        /// From `set_turn_server`.
        turn: Option<TurnServer>,
    },
}

/// A join that [`Rules::begin_join`] let start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinAttempt {
    /// Identifies the attempt for [`Rules::finish_join`].
    pub id: u64,
    /// The proxy setting the join must use (a snapshot: it cannot change during the join).
    pub setting: ProxySetting,
}

/// What a leave has to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveAction {
    /// Nothing: not joined.
    NotJoined,
    /// A join was running: it is cancelled and the client is disconnected already.
    CancelJoin,
    /// Joined: release the session, then call [`Rules::finish_leave`].
    Leave,
    /// Another leave is running.
    AlreadyLeaving,
}

/// The SDK rules. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rules {
    state: ConnectionState,
    setting: ProxySetting,
    attempt: u64,
}

/// The transport for an SDK mode: `None` and 3 → UDP, 4 → TCP, 5 → TLS.
pub fn parse_mode(mode: Option<u8>) -> Result<TransportMode, SdkError> {
    match mode {
        None | Some(3) => Ok(TransportMode::Udp),
        Some(4) => Ok(TransportMode::Tcp),
        Some(5) => Ok(TransportMode::Tls),
        Some(m @ (1 | 2)) => Err(SdkError::NotSupported(format!(
            "proxy mode {m} is not supported (use 3 = UDP, 4 = TCP, 5 = TLS 443)"
        ))),
        Some(m) => Err(SdkError::InvalidParameter(format!(
            "proxy mode {m} is not a mode (3 = UDP, 4 = TCP, 5 = TLS 443)"
        ))),
    }
}

impl Rules {
    /// Disconnected, no proxy.
    pub fn new() -> Self {
        Self::default()
    }

    /// The connection state.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// The proxy setting the next join will use.
    pub fn setting(&self) -> &ProxySetting {
        &self.setting
    }

    fn disconnected(&self, refusal: &'static str) -> Result<(), SdkError> {
        match self.state {
            ConnectionState::Disconnected => Ok(()),
            _ => Err(SdkError::InvalidOperation(refusal)),
        }
    }

    /// `start_proxy_server(mode)`: use the cloud proxy in `mode` (default 3).
    pub fn start_proxy_server(&mut self, mode: Option<u8>) -> Result<TransportMode, SdkError> {
        self.disconnected(START_BEFORE_JOIN)?;
        let mode = parse_mode(mode)?;
        if let ProxySetting::SelfHosted { .. } = self.setting {
            return Err(SdkError::InvalidOperation(PROXY_ALREADY_SET));
        }
        self.setting = ProxySetting::Cloud(mode);
        Ok(mode)
    }

    /// `stop_proxy_server()`: no proxy at all, cloud or self-deployed.
    pub fn stop_proxy_server(&mut self) -> Result<(), SdkError> {
        self.disconnected(STOP_BEFORE_JOIN)?;
        self.setting = ProxySetting::Off;
        Ok(())
    }

    /// `set_proxy_server(server)`: a self-deployed signalling proxy.
    pub fn set_proxy_server(&mut self, server: ProxyServer) -> Result<(), SdkError> {
        self.disconnected(SET_PROXY_BEFORE_JOIN)?;
        server.validate()?;
        match &mut self.setting {
            ProxySetting::Cloud(_) => return Err(SdkError::InvalidOperation(PROXY_ALREADY_SET)),
            ProxySetting::Off => {
                self.setting = ProxySetting::SelfHosted {
                    proxy: Some(server),
                    turn: None,
                }
            }
            ProxySetting::SelfHosted { proxy, .. } => *proxy = Some(server),
        }
        Ok(())
    }

    /// `set_turn_server(server)`: a self-deployed TURN server.
    pub fn set_turn_server(&mut self, server: TurnServer) -> Result<(), SdkError> {
        self.disconnected(SET_TURN_BEFORE_JOIN)?;
        server.validate()?;
        match &mut self.setting {
            ProxySetting::Cloud(_) => return Err(SdkError::InvalidOperation(PROXY_ALREADY_SET)),
            ProxySetting::Off => {
                self.setting = ProxySetting::SelfHosted {
                    proxy: None,
                    turn: Some(server),
                }
            }
            ProxySetting::SelfHosted { turn, .. } => *turn = Some(server),
        }
        Ok(())
    }

    /// A join starts: allowed only while disconnected; the state becomes `Connecting`.
    pub fn begin_join(&mut self) -> Result<JoinAttempt, SdkError> {
        match self.state {
            ConnectionState::Disconnected => {}
            ConnectionState::Connecting => {
                return Err(SdkError::InvalidOperation(JOIN_IN_PROGRESS))
            }
            ConnectionState::Connected => return Err(SdkError::InvalidOperation(ALREADY_JOINED)),
            ConnectionState::Disconnecting => {
                return Err(SdkError::InvalidOperation(LEAVE_IN_PROGRESS))
            }
        }
        self.attempt += 1;
        self.state = ConnectionState::Connecting;
        Ok(JoinAttempt {
            id: self.attempt,
            setting: self.setting.clone(),
        })
    }

    /// A join ended (`ok`: it succeeded). Returns false, changing nothing, when the attempt
    /// is no longer current (a leave cancelled it): its result must be discarded.
    pub fn finish_join(&mut self, id: u64, ok: bool) -> bool {
        if self.state != ConnectionState::Connecting || id != self.attempt {
            return false;
        }
        self.state = if ok {
            ConnectionState::Connected
        } else {
            ConnectionState::Disconnected
        };
        true
    }

    /// A leave starts. See [`LeaveAction`].
    pub fn begin_leave(&mut self) -> LeaveAction {
        match self.state {
            ConnectionState::Disconnected => LeaveAction::NotJoined,
            ConnectionState::Connecting => {
                self.state = ConnectionState::Disconnected;
                LeaveAction::CancelJoin
            }
            ConnectionState::Connected => {
                self.state = ConnectionState::Disconnecting;
                LeaveAction::Leave
            }
            ConnectionState::Disconnecting => LeaveAction::AlreadyLeaving,
        }
    }

    /// The leave that [`Self::begin_leave`] answered [`LeaveAction::Leave`] is done.
    pub fn finish_leave(&mut self) {
        if self.state == ConnectionState::Disconnecting {
            self.state = ConnectionState::Disconnected;
        }
    }
}
