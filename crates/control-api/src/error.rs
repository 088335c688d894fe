//! Error bodies: `{"code": "QUOTA_EXCEEDED", "message": "...", "retryable": true}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Stable error codes. Clients switch on these, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is malformed (400).
    BadRequest,
    /// Missing or wrong bearer token (401).
    Unauthorized,
    /// No such App ID (404).
    AppNotFound,
    /// The App ID is suspended or the proxy is not enabled for it (403).
    ProxyNotEnabled,
    /// The requested mode is not enabled for the App ID (403).
    ModeNotEnabled,
    /// The join token does not verify (401).
    InvalidToken,
    /// The join token has expired (401).
    TokenExpired,
    /// The client's area is not allowed for the App ID (403).
    AreaForbidden,
    /// The App ID's concurrency quota is exhausted (429).
    QuotaExceeded,
    /// No healthy edge in the App ID's pool (503).
    NoEdgeAvailable,
    /// An admin resource does not exist (404).
    NotFound,
    /// The request conflicts with the current state (409).
    Conflict,
    /// The request body is too large (413).
    PayloadTooLarge,
    /// Something failed inside the control plane (500).
    Internal,
}

impl ErrorCode {
    /// The HTTP status that goes with the code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized | ErrorCode::InvalidToken | ErrorCode::TokenExpired => 401,
            ErrorCode::ProxyNotEnabled | ErrorCode::ModeNotEnabled | ErrorCode::AreaForbidden => {
                403
            }
            ErrorCode::AppNotFound | ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::QuotaExceeded => 429,
            ErrorCode::Internal => 500,
            ErrorCode::NoEdgeAvailable => 503,
        }
    }

    /// Whether the same request may succeed later without changes.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::QuotaExceeded | ErrorCode::NoEdgeAvailable | ErrorCode::Internal
        )
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::AppNotFound => "APP_NOT_FOUND",
            ErrorCode::ProxyNotEnabled => "PROXY_NOT_ENABLED",
            ErrorCode::ModeNotEnabled => "MODE_NOT_ENABLED",
            ErrorCode::InvalidToken => "INVALID_TOKEN",
            ErrorCode::TokenExpired => "TOKEN_EXPIRED",
            ErrorCode::AreaForbidden => "AREA_FORBIDDEN",
            ErrorCode::QuotaExceeded => "QUOTA_EXCEEDED",
            ErrorCode::NoEdgeAvailable => "NO_EDGE_AVAILABLE",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    /// Stable code.
    pub code: ErrorCode,
    /// Human explanation (may change between versions).
    pub message: String,
    /// Whether retrying the same request later may succeed.
    pub retryable: bool,
}

impl ApiError {
    /// An error with the code's own retryable flag.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retryable: code.retryable(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_match_the_architecture() {
        let table = [
            (ErrorCode::BadRequest, 400),
            (ErrorCode::Unauthorized, 401),
            (ErrorCode::AppNotFound, 404),
            (ErrorCode::ProxyNotEnabled, 403),
            (ErrorCode::ModeNotEnabled, 403),
            (ErrorCode::InvalidToken, 401),
            (ErrorCode::TokenExpired, 401),
            (ErrorCode::AreaForbidden, 403),
            (ErrorCode::QuotaExceeded, 429),
            (ErrorCode::NoEdgeAvailable, 503),
        ];
        for (code, status) in table {
            assert_eq!(code.http_status(), status);
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
