//! Errors of the SDK: what the app did wrong ([`SdkError`]) and why a join failed
//! ([`JoinError`], one variant per failure the control plane or the network can cause).

use control_api::{ApiError, ErrorCode};

/// Every error an SDK call returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdkError {
    /// A mode the product knows but this SDK does not offer (modes 1 and 2).
    #[error("not supported: {0}")]
    NotSupported(String),
    /// An argument is out of range or malformed (a mode other than 1–5, an empty host, ...).
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// The call is not allowed in the client's current state (ARCHITECTURE §5), e.g.
    /// `"start proxy server before join"` or `"proxy already set"`.
    #[error("invalid operation: {0}")]
    InvalidOperation(&'static str),
    /// The join failed.
    #[error("join failed: {0}")]
    Join(#[from] JoinError),
}

/// Why a join failed. The first nine mirror the control plane's error codes (ARCHITECTURE
/// §9) and carry its message; the rest are about reaching the control plane and the edges.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The App ID is unknown to the control plane (`APP_NOT_FOUND`).
    #[error("App ID not found: {0}")]
    AppNotFound(String),
    /// The App ID is suspended or not provisioned for the proxy (`PROXY_NOT_ENABLED`).
    #[error("cloud proxy not enabled for this App ID: {0}")]
    ProxyNotEnabled(String),
    /// The requested mode is not enabled for the App ID (`MODE_NOT_ENABLED`).
    #[error("mode not enabled for this App ID: {0}")]
    ModeNotEnabled(String),
    /// The join token does not verify (`INVALID_TOKEN`).
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The join token has expired (`TOKEN_EXPIRED`).
    #[error("token expired: {0}")]
    TokenExpired(String),
    /// The client's area is not allowed for the App ID (`AREA_FORBIDDEN`).
    #[error("area forbidden: {0}")]
    AreaForbidden(String),
    /// The App ID's concurrency quota is exhausted (`QUOTA_EXCEEDED`; retryable later).
    #[error("concurrency quota exceeded: {0}")]
    QuotaExceeded(String),
    /// No healthy edge serves the App ID's pool in this mode (`NO_EDGE_AVAILABLE`).
    #[error("no edge available: {0}")]
    NoEdgeAvailable(String),
    /// The control plane refused the request as malformed (`BAD_REQUEST`).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The control plane could not be reached (connection, TLS or timeout).
    #[error("control plane unreachable: {0}")]
    ControlPlaneUnreachable(String),
    /// The control plane answered something this SDK does not expect (another code, a body
    /// that is not JSON, ...).
    #[error("unexpected control plane answer (HTTP {status}): {message}")]
    UnexpectedAnswer {
        /// HTTP status.
        status: u16,
        /// The error code and message, or what could not be read.
        message: String,
    },
    /// No offered edge answered on the mode's transport. `tried` has one line per edge, in
    /// the order tried: `"<edge id> <transport> <address>: <why>"`.
    #[error("no edge reachable (tried {})", tried.join("; "))]
    EdgeUnreachable {
        /// What was tried and how each failed.
        tried: Vec<String>,
    },
    /// The media network's signalling gateway could not be reached (directly, or through the
    /// edge's relay, which then says why with an HTTP status): connection refused or
    /// blocked, TLS failure, no answer within the signalling timeout. A firewalled client
    /// joining without the proxy gets this.
    #[error("signalling unreachable: {0}")]
    SignalUnreachable(String),
    /// The signalling gateway refused the join (`code` is its error code, e.g.
    /// `INVALID_TOKEN`, `UID_IN_USE`).
    #[error("signalling refused the join: {code}: {message}")]
    SignalRefused {
        /// The gateway's error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// No media path: the TURN allocation on the chosen edge (or the self-deployed TURN
    /// server) failed or did not answer.
    #[error("media path unavailable: {0}")]
    MediaUnreachable(String),
}

impl JoinError {
    /// The typed error for a control plane error body, `None` for codes that are not a join
    /// failure the app can act on (they become [`JoinError::UnexpectedAnswer`]).
    pub fn from_api(e: &ApiError) -> Option<Self> {
        let m = e.message.clone();
        Some(match e.code {
            ErrorCode::AppNotFound => JoinError::AppNotFound(m),
            ErrorCode::ProxyNotEnabled => JoinError::ProxyNotEnabled(m),
            ErrorCode::ModeNotEnabled => JoinError::ModeNotEnabled(m),
            ErrorCode::InvalidToken => JoinError::InvalidToken(m),
            ErrorCode::TokenExpired => JoinError::TokenExpired(m),
            ErrorCode::AreaForbidden => JoinError::AreaForbidden(m),
            ErrorCode::QuotaExceeded => JoinError::QuotaExceeded(m),
            ErrorCode::NoEdgeAvailable => JoinError::NoEdgeAvailable(m),
            ErrorCode::BadRequest => JoinError::BadRequest(m),
            _ => return None,
        })
    }

    /// The error's code, as the web SDK names it (`APP_NOT_FOUND`, `EDGE_UNREACHABLE`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            JoinError::AppNotFound(_) => "APP_NOT_FOUND",
            JoinError::ProxyNotEnabled(_) => "PROXY_NOT_ENABLED",
            JoinError::ModeNotEnabled(_) => "MODE_NOT_ENABLED",
            JoinError::InvalidToken(_) => "INVALID_TOKEN",
            JoinError::TokenExpired(_) => "TOKEN_EXPIRED",
            JoinError::AreaForbidden(_) => "AREA_FORBIDDEN",
            JoinError::QuotaExceeded(_) => "QUOTA_EXCEEDED",
            JoinError::NoEdgeAvailable(_) => "NO_EDGE_AVAILABLE",
            JoinError::BadRequest(_) => "BAD_REQUEST",
            JoinError::ControlPlaneUnreachable(_) => "CONTROL_PLANE_UNREACHABLE",
            JoinError::UnexpectedAnswer { .. } => "UNEXPECTED_ANSWER",
            JoinError::EdgeUnreachable { .. } => "EDGE_UNREACHABLE",
            JoinError::SignalUnreachable(_) => "SIGNAL_UNREACHABLE",
            JoinError::SignalRefused { .. } => "SIGNAL_REFUSED",
            JoinError::MediaUnreachable(_) => "MEDIA_UNREACHABLE",
        }
    }

    /// Whether the same join may succeed later without changes.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            JoinError::QuotaExceeded(_)
                | JoinError::NoEdgeAvailable(_)
                | JoinError::ControlPlaneUnreachable(_)
                | JoinError::EdgeUnreachable { .. }
                | JoinError::SignalUnreachable(_)
                | JoinError::MediaUnreachable(_)
        )
    }
}

impl SdkError {
    /// The error's code (`NOT_SUPPORTED`, `INVALID_PARAMETER`, `INVALID_OPERATION`, or the
    /// join failure's [`JoinError::code`]), the same names as the web SDK's.
    pub fn code(&self) -> &'static str {
        match self {
            SdkError::NotSupported(_) => "NOT_SUPPORTED",
            SdkError::InvalidParameter(_) => "INVALID_PARAMETER",
            SdkError::InvalidOperation(_) => "INVALID_OPERATION",
            SdkError::Join(j) => j.code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_join_code_has_its_own_variant() {
        let codes = [
            ErrorCode::AppNotFound,
            ErrorCode::ProxyNotEnabled,
            ErrorCode::ModeNotEnabled,
            ErrorCode::InvalidToken,
            ErrorCode::TokenExpired,
            ErrorCode::AreaForbidden,
            ErrorCode::QuotaExceeded,
            ErrorCode::NoEdgeAvailable,
            ErrorCode::BadRequest,
        ];
        let mapped: Vec<JoinError> = codes
            .iter()
            .map(|&c| JoinError::from_api(&ApiError::new(c, "m")).expect("mapped"))
            .collect();
        for (i, a) in mapped.iter().enumerate() {
            for b in &mapped[i + 1..] {
                assert_ne!(std::mem::discriminant(a), std::mem::discriminant(b));
            }
        }
        for (c, j) in codes.iter().zip(&mapped) {
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                j.code(),
                "code() names the control plane's code"
            );
        }
        assert!(JoinError::from_api(&ApiError::new(ErrorCode::Internal, "m")).is_none());
        assert!(JoinError::from_api(&ApiError::new(ErrorCode::Unauthorized, "m")).is_none());
    }
}
