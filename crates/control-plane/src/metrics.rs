//! Counters for `/metrics`, in the Prometheus text format. Plain atomics: the proxy-info path
//! bumps two of them per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use control_api::ErrorCode;

const CODES: [ErrorCode; 14] = [
    ErrorCode::BadRequest,
    ErrorCode::Unauthorized,
    ErrorCode::AppNotFound,
    ErrorCode::ProxyNotEnabled,
    ErrorCode::ModeNotEnabled,
    ErrorCode::InvalidToken,
    ErrorCode::TokenExpired,
    ErrorCode::AreaForbidden,
    ErrorCode::QuotaExceeded,
    ErrorCode::NoEdgeAvailable,
    ErrorCode::NotFound,
    ErrorCode::Conflict,
    ErrorCode::PayloadTooLarge,
    ErrorCode::Internal,
];

/// Latency buckets in seconds.
const BUCKETS: [f64; 8] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0];

/// Control plane counters.
#[derive(Default)]
pub struct Metrics {
    ok: AtomicU64,
    errors: [AtomicU64; 14],
    buckets: [AtomicU64; 8],
    latency_micros: AtomicU64,
    count: AtomicU64,
}

impl Metrics {
    /// Counts one proxy-info answer.
    pub fn proxy_answered(&self, error: Option<ErrorCode>, took: Duration) {
        match error {
            None => self.ok.fetch_add(1, Ordering::Relaxed),
            Some(code) => {
                let i = CODES
                    .iter()
                    .position(|c| *c == code)
                    .unwrap_or(CODES.len() - 1);
                self.errors[i].fetch_add(1, Ordering::Relaxed)
            }
        };
        let secs = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP cloudproxy_proxy_requests_total Proxy-info answers by result code.\n");
        s.push_str("# TYPE cloudproxy_proxy_requests_total counter\n");
        s.push_str(&format!(
            "cloudproxy_proxy_requests_total{{code=\"OK\"}} {}\n",
            self.ok.load(Ordering::Relaxed)
        ));
        for (i, c) in CODES.iter().enumerate() {
            s.push_str(&format!(
                "cloudproxy_proxy_requests_total{{code=\"{}\"}} {}\n",
                c.as_str(),
                self.errors[i].load(Ordering::Relaxed)
            ));
        }
        s.push_str("# HELP cloudproxy_proxy_request_seconds Proxy-info latency.\n");
        s.push_str("# TYPE cloudproxy_proxy_request_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            s.push_str(&format!(
                "cloudproxy_proxy_request_seconds_bucket{{le=\"{b}\"}} {}\n",
                self.buckets[i].load(Ordering::Relaxed)
            ));
        }
        let n = self.count.load(Ordering::Relaxed);
        s.push_str(&format!(
            "cloudproxy_proxy_request_seconds_bucket{{le=\"+Inf\"}} {n}\n"
        ));
        s.push_str(&format!(
            "cloudproxy_proxy_request_seconds_sum {}\n",
            self.latency_micros.load(Ordering::Relaxed) as f64 / 1e6
        ));
        s.push_str(&format!("cloudproxy_proxy_request_seconds_count {n}\n"));
        s
    }
}
