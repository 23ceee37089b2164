//! What every response goes through: request ids, one log line and metrics per request, a
//! request timeout, `Connection: close` while draining, the shutdown signal in the request's
//! extensions, and a JSON 500 for a handler panic.
//!
//! This runs on every request, so it is one hand-written layer ([`AroundRequest`]) rather than
//! axum's `from_fn` plus `Extension` plus tower-http's `CatchPanicLayer`: axum wraps each layer
//! around every route and clones each one's boxed service per request, and `from_fn` boxes the
//! next service and clones its state as well. Measured against a bare axum service with
//! `scripts/bench-compare.sh`, the rest is kept lean too: the request id comes without a system
//! call ([`crate::random::request_id_bits`]) and is built in a stack buffer, shared between the
//! extension and the response header without another copy; the route label is the matched path's
//! shared string; metric handles are looked up once per route and status
//! ([`super::request_metrics`]); the timeout's timer is set only for an answer that is not ready
//! at once; and the log line is formatted without a per-field allocation and written by another
//! thread ([`crate::telemetry`]).

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::FutureExt;

use crate::telemetry::request_log::{self, RequestLine, RequestScope};

use super::error_body::json_error;
use super::request_metrics::RequestMetrics;
use super::shutdown::Shutdown;

/// The request-id header, read from the caller or made up.
pub(crate) const REQUEST_ID: &str = "x-request-id";
/// The same, as a header name made once (from a `&str` it is parsed on every use).
static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(REQUEST_ID);

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

/// What the layer needs, shared by every route's copy of it.
#[derive(Debug)]
pub(crate) struct MiddlewareState {
    /// Longest a request may take (`REQUEST_TIMEOUT`).
    pub request_timeout: Duration,
    /// Serving or draining.
    pub lifecycle: crate::health::Lifecycle,
    /// The signal handed to handlers in the request's extensions.
    pub shutdown: Shutdown,
    /// Requests by route and status, latency by route.
    pub metrics: RequestMetrics,
}

/// Wraps every route in [`AroundRequest`].
#[derive(Debug, Clone)]
pub(crate) struct AroundRequestLayer(Arc<MiddlewareState>);

impl AroundRequestLayer {
    pub(crate) fn new(state: MiddlewareState) -> Self {
        Self(Arc::new(state))
    }
}

impl<S> tower_layer::Layer<S> for AroundRequestLayer {
    type Service = AroundRequest<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AroundRequest {
            inner,
            state: Arc::clone(&self.0),
        }
    }
}

/// The request-id, timeout, draining, panic, log and metrics service around one route (one
/// type, so the order is visible: id first, so the timeout's 408, the panic's 500 and the log
/// line carry it).
#[derive(Debug, Clone)]
pub(crate) struct AroundRequest<S> {
    inner: S,
    state: Arc<MiddlewareState>,
}

impl<S> tower_service::Service<Request> for AroundRequest<S>
where
    S: tower_service::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        let state = Arc::clone(&self.state);
        let id = request_id(&request);
        let extensions = request.extensions_mut();
        extensions.insert(id.clone());
        extensions.insert(state.shutdown.clone());
        let method = request.method().clone();
        // The route template (`/hooks/deploy`), never the raw path: bounded label cardinality.
        // `MatchedPath` shares its string, so keeping it costs no copy.
        let route = request.extensions().get::<MatchedPath>().cloned();

        // Every event logged while handling the request carries its id.
        let scope = RequestScope::new(&id.0, || {
            tracing::info_span!("request", request_id = id.as_str())
        });
        // A panic while the handler's future is made, or while it runs, is answered 500 (inside
        // the scope, so that the line about it carries the request's id).
        let handled = scope
            .in_scope(|| std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(request))));
        Box::pin(async move {
            let in_flight = state.metrics.enter();
            let mut response = match handled {
                Ok(future) => {
                    let answered =
                        scope.wrap(AssertUnwindSafe(future).catch_unwind().map(answer_or_500));
                    within(state.request_timeout, started, answered)
                        .await
                        .unwrap_or_else(|| {
                            json_error(StatusCode::REQUEST_TIMEOUT, "request timed out")
                        })
                }
                Err(payload) => scope.in_scope(|| panic_response(payload)),
            };
            drop(in_flight);

            if state.lifecycle.is_draining() {
                // Tell clients on kept-alive connections to go elsewhere after this answer.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
            let status = response.status().as_u16();
            let latency = started.elapsed();
            state.metrics.record(route, status, latency);
            if tracing::enabled!(tracing::Level::INFO) {
                let line = RequestLine {
                    target: module_path!(),
                    method: method.as_str(),
                    route,
                    status,
                    latency,
                    request_id: id.as_str(),
                };
                // Our JSON subscriber takes the line as it is; any other gets the event.
                if !request_log::write_json(&line) {
                    tracing::info!(
                        method = line.method,
                        route,
                        status,
                        latency_ms = line.latency_ms(),
                        request_id = line.request_id,
                        "request"
                    );
                }
            }
            response
                .headers_mut()
                .insert(REQUEST_ID_HEADER.clone(), id.0);
            Ok(response)
        })
    }
}

/// `answer`'s output, or `None` when it is not ready `limit` after `started`.
///
/// The timer is set only when the answer is not ready at its first poll: most are (a probe, a
/// cached health report), and a timer costs a registration with the runtime's timer wheel.
async fn within<F: Future>(limit: Duration, started: Instant, answer: F) -> Option<F::Output> {
    let mut answer = std::pin::pin!(answer);
    let first = std::future::poll_fn(|cx| Poll::Ready(answer.as_mut().poll(cx))).await;
    if let Poll::Ready(output) = first {
        return Some(output);
    }
    let deadline = tokio::time::Instant::from_std(started + limit);
    tokio::time::timeout_at(deadline, answer).await.ok()
}

/// The handler's answer, or the 500 for its panic.
fn answer_or_500(caught: std::thread::Result<Result<Response, Infallible>>) -> Response {
    match caught {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(payload) => panic_response(payload),
    }
}

/// Answers a handler panic with a JSON 500. The payload is not logged (it may hold anything,
/// secrets included); the panic hook installed by the binary logs the location.
fn panic_response(_payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked; answered 500");
    json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// The caller's request id when it is acceptable (a clone of the header, no copy), else a new one.
fn request_id(request: &Request) -> RequestId {
    match request.headers().get(&REQUEST_ID_HEADER) {
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
    let bits = crate::random::request_id_bits();
    let mut text = [0u8; 32];
    hex::encode_to_slice(bits.to_be_bytes(), &mut text).expect("32 hex digits for 16 bytes");
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
