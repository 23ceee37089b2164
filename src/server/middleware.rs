//! What every response goes through: request ids, one log line and metrics per request, a
//! request timeout, `Connection: close` while draining, and a JSON 500 for a handler panic.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

/// The request-id header, read from the caller or made up.
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// The request id of the current request, put in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

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
}

/// The request-id, timeout, draining, log and metrics middleware (one function, so the
/// order is visible: id first, so the timeout's 408 and the log line carry it).
pub(crate) async fn around_request(
    axum::extract::State(state): axum::extract::State<MiddlewareState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_acceptable_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = request.method().clone();
    // The route template (`/hooks/deploy`), never the raw path: bounded label cardinality.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());

    // Every event logged while handling the request carries its id.
    let span = tracing::info_span!("request", request_id = %id);
    let handled = next.run(request).instrument(span);
    let mut response = match tokio::time::timeout(state.request_timeout, handled).await {
        Ok(response) => response,
        Err(_) => json_error(StatusCode::REQUEST_TIMEOUT, "request timed out"),
    };

    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    if state.lifecycle.is_draining() {
        // Tell clients on kept-alive connections to go elsewhere after this answer.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = response.status().as_u16();
    let latency = started.elapsed();
    metrics::counter!(
        "render_deploy_http_requests_total",
        "route" => route.clone(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!("render_deploy_http_request_duration_seconds", "route" => route.clone())
        .record(latency.as_secs_f64());
    tracing::info!(
        method = %method,
        route = %route,
        status,
        latency_ms = latency.as_secs_f64() * 1000.0,
        request_id = %id,
        "request"
    );
    response
}

/// Answers a handler panic with a JSON 500. The payload is not logged (it may hold anything,
/// secrets included); the panic hook installed by the binary logs the location.
pub(crate) fn panic_response(_payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked; answered 500");
    json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// A caller's request id is kept when it is short printable ASCII (it goes into logs).
fn is_acceptable_request_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())
}

fn new_request_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_request_id_is_kept_only_when_printable_and_short() {
        assert!(is_acceptable_request_id("abc-123"));
        assert!(!is_acceptable_request_id(""));
        assert!(!is_acceptable_request_id("has space"));
        assert!(!is_acceptable_request_id(&"x".repeat(129)));
        assert_eq!(new_request_id().len(), 32);
    }
}
