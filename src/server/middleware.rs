//! What every response goes through: request ids, one log line and metrics per request, a
//! request timeout, `Connection: close` while draining, and a JSON 500 for a handler panic.
//!
//! This runs on every request, so it is kept lean (measured against a bare axum service with
//! `scripts/bench-compare.sh`): the request id is built in a stack buffer and shared between the
//! extension and the response header without another copy, the route label is the matched
//! path's shared string, metric handles are looked up once per route and status
//! ([`super::request_metrics`]), and the log line is formatted without a per-field allocation
//! and written by another thread ([`crate::telemetry`]).

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::request_metrics::RequestMetrics;

/// The request-id header, read from the caller or made up.
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// The request id of the current request, put in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The id as text (short printable ASCII: a caller's id is kept only when it is).
    pub fn as_str(&self) -> &str {
        // Only ids that passed `is_acceptable_request_id` (visible ASCII) are ever stored.
        self.0.to_str().unwrap_or_default()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A JSON error body `{"error": "…"}` with a status: what clients see of any failure.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The state the middleware needs.
#[derive(Debug, Clone)]
pub(crate) struct MiddlewareState {
    /// Longest a request may take (`REQUEST_TIMEOUT`).
    pub request_timeout: Duration,
    /// Serving or draining.
    pub lifecycle: crate::health::Lifecycle,
    /// Requests by route and status, latency by route.
    pub metrics: RequestMetrics,
}

/// The request-id, timeout, draining, log and metrics middleware (one function, so the
/// order is visible: id first, so the timeout's 408 and the log line carry it).
pub(crate) async fn around_request(
    axum::extract::State(state): axum::extract::State<MiddlewareState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let _in_flight = state.metrics.enter();
    let id = request_id(&request);
    request.extensions_mut().insert(id.clone());
    let method = request.method().clone();
    // The route template (`/hooks/deploy`), never the raw path: bounded label cardinality.
    // `MatchedPath` shares its string, so keeping it costs no copy.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);

    // Every event logged while handling the request carries its id.
    let span = tracing::info_span!("request", request_id = id.as_str());
    let handled = next.run(request).instrument(span);
    let mut response = match tokio::time::timeout(state.request_timeout, handled).await {
        Ok(response) => response,
        Err(_) => json_error(StatusCode::REQUEST_TIMEOUT, "request timed out"),
    };

    if state.lifecycle.is_draining() {
        // Tell clients on kept-alive connections to go elsewhere after this answer.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = response.status().as_u16();
    let latency = started.elapsed();
    state.metrics.record(route, status, latency);
    tracing::info!(
        method = method.as_str(),
        route,
        status,
        latency_ms = latency.as_secs_f64() * 1000.0,
        request_id = id.as_str(),
        "request"
    );
    response.headers_mut().insert(REQUEST_ID, id.0);
    response
}

/// Answers a handler panic with a JSON 500. The payload is not logged (it may hold anything,
/// secrets included); the panic hook installed by the binary logs the location.
pub(crate) fn panic_response(_payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked; answered 500");
    json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// The caller's request id when it is acceptable (a clone of the header, no copy), else a new one.
fn request_id(request: &Request) -> RequestId {
    match request.headers().get(REQUEST_ID) {
        Some(v) if is_acceptable_request_id(v.as_bytes()) => RequestId(v.clone()),
        _ => new_request_id(),
    }
}

/// A caller's request id is kept when it is short printable ASCII (it goes into logs).
fn is_acceptable_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(u8::is_ascii_graphic)
}

/// 128 random bits as 32 hex digits, encoded on the stack.
fn new_request_id() -> RequestId {
    let bytes = crate::random::bytes::<16>();
    let mut text = [0u8; 32];
    hex::encode_to_slice(bytes, &mut text).expect("32 hex digits for 16 bytes");
    RequestId(HeaderValue::from_bytes(&text).expect("hex digits are a valid header value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_request_id_is_kept_only_when_printable_and_short() {
        assert!(is_acceptable_request_id(b"abc-123"));
        assert!(!is_acceptable_request_id(b""));
        assert!(!is_acceptable_request_id(b"has space"));
        assert!(!is_acceptable_request_id("é".as_bytes()));
        assert!(!is_acceptable_request_id("x".repeat(129).as_bytes()));
        let id = new_request_id();
        assert_eq!(id.as_str().len(), 32);
        assert!(id.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
