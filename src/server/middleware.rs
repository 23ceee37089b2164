//! What every response goes through: request ids, one log line and metrics per request, a
//! request timeout, `Connection: close` while draining, the shutdown signal in the request's
//! extensions, and a JSON 500 for a handler panic.
//!
//! This runs on every request, so it is one hand-written service (`AroundRequest`) around the
//! whole router, rather than axum's `from_fn` plus `Extension` plus tower-http's
//! `CatchPanicLayer`: axum wraps each layer around every route and clones each one's boxed
//! service per request, and `from_fn` boxes the next service and clones its state as well.
//! Around the router it needs no level of axum's route machinery at all; the route label,
//! which axum tells only inside the router, comes from `route_labels`.
//! Measured against a bare axum service with `scripts/bench-compare.sh` and
//! `scripts/bench-instructions.sh`, the rest is kept lean too: the answer is a future of its
//! own (`AroundFuture`, held in hyper's slot for the connection's answer, not boxed); the
//! request id comes without a system call (`random::request_id_bits`) and goes with the
//! shutdown signal in one extension (`request_context`); the route label is the matched path's
//! shared string; the HTTP metrics are counted per worker thread (`request_metrics`); the
//! timeout's timer is set only for an answer that is not ready at once; and with our JSON log
//! the request's id reaches its events without a span and its line is written directly
//! (`telemetry::request_log`).

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::future::RouteFuture;
use futures_util::future::Either;

use crate::telemetry::request_log::{self, RequestLine, RequestScope, Scoped};

use super::error_body::json_error;
pub use super::request_context::RequestId;
use super::request_context::{REQUEST_ID_HEADER, RequestContext};
use super::request_metrics::{InFlight, RequestMetrics};
use super::route_labels::{self, Label, RouteLabels};
use super::shutdown::Shutdown;

/// This module's path: the target of the request line's fallback event (see the test).
#[cfg(test)]
const MODULE: &str = module_path!();

/// What the middleware needs, shared by every connection's copy of it.
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

impl AsRef<RequestMetrics> for MiddlewareState {
    fn as_ref(&self) -> &RequestMetrics {
        &self.metrics
    }
}

/// The request-id, timeout, draining, panic, log and metrics service around the router (one
/// type, so the order is visible: id first, so the timeout's 408, the panic's 500 and the log
/// line carry it). Cloned once per connection.
#[derive(Debug, Clone)]
pub(crate) struct AroundRequest {
    app: RouteLabels,
    state: Arc<MiddlewareState>,
}

impl AroundRequest {
    /// Serves `app` (its routes and fallbacks all set) with `state`.
    pub(crate) fn new(app: Router, state: MiddlewareState) -> Self {
        Self {
            app: RouteLabels::new(app),
            state: Arc::new(state),
        }
    }
}

impl tower_service::Service<Request> for AroundRequest {
    type Response = Response;
    type Error = Infallible;
    type Future = AroundFuture<RouteFuture<Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A router is always ready (axum's `Router::poll_ready` returns `Ready` as it is).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        let id = RequestId::of(&request);
        RequestContext::insert(&mut request, &id, &self.state.shutdown);
        let method = request.method().clone();

        // Every event logged while handling the request carries its id.
        let scope = RequestScope::new(id.text(), || {
            tracing::info_span!("request", request_id = id.as_str())
        });
        // A panic while the router's future is made, or while it runs, is answered 500.
        // The future is made outside the scope: the router only matches the path and clones
        // the route's boxed service into a `Oneshot`; the route's own code, the handler's
        // included, runs at the first poll, inside the scope. (Entering the scope around `call`
        // cost the swap of the tokio task-local it was then, ~100 instructions per request in
        // callgrind, and moves of the request into the closure and of the future out.)
        let (handled, route) =
            match std::panic::catch_unwind(AssertUnwindSafe(|| self.app.call(request))) {
                Ok((future, route)) => (Either::Left(CatchPanic { future }), route),
                Err(payload) => (
                    Either::Right(std::future::ready(panic_response(payload))),
                    Label::Unmatched,
                ),
            };
        AroundFuture {
            answer: scope.wrap(handled),
            timer: None,
            after: Some(After {
                in_flight: InFlight::enter(Arc::clone(&self.state)),
                started,
                id,
                method,
                route,
            }),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request being handled: the handler's answer in the request's scope, then what is done
    /// with every answer ([`After::finish`]).
    ///
    /// A future of its own rather than a boxed `async` block: the block held the handler's
    /// future twice over (captured, then moved into the timeout) beside a timer, 1,560 bytes in
    /// all, and it was built on the stack and copied into its box. This one holds the router's
    /// future once, boxes the timer only when the answer is not ready at once, and is not boxed
    /// at all: hyper keeps it in its connection's slot for the answer in flight.
    pub(crate) struct AroundFuture<F> {
        #[pin]
        answer: Scoped<Either<CatchPanic<F>, Ready<Response>>>,
        // Set at the first poll that finds the answer not ready: most are (a probe, a cached
        // health report), and a timer costs a registration with the runtime's timer wheel.
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
        // Taken when the answer is ready.
        after: Option<After>,
    }
}

impl<F> Future for AroundFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(after) = this.after.as_mut() else {
            panic!("AroundFuture polled after it was ready");
        };
        let polled = this.answer.poll(cx);
        if let Label::Pending = after.route {
            // The reporting router said which route matched during that (first) poll.
            after.route = route_labels::take_reported();
        }
        let answered = match polled {
            Poll::Ready(response) => Some(response),
            Poll::Pending => {
                let deadline = after.started + after.in_flight.owner().request_timeout;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => None,
                    Poll::Pending => return Poll::Pending,
                }
            }
        };
        let after = this.after.take().expect("checked above");
        Poll::Ready(Ok(after.finish(answered)))
    }
}

/// What every answer gets once the handler is done: the 408 if it was not done in time, the
/// in-flight count, `Connection: close` while draining, metrics, the log line, the id header.
struct After {
    /// Also the reference to the layer's state.
    in_flight: InFlight<MiddlewareState>,
    started: Instant,
    id: RequestId,
    method: Method,
    route: Label,
}

impl After {
    /// The answer to send for the handler's `answered` (`None`: not within the request timeout).
    fn finish(self, answered: Option<Response>) -> Response {
        let After {
            in_flight,
            started,
            id,
            method,
            route,
        } = self;
        let state = in_flight.owner();
        let mut response = answered
            .unwrap_or_else(|| json_error(StatusCode::REQUEST_TIMEOUT, "request timed out"));
        if state.lifecycle.is_draining() {
            // Tell clients on kept-alive connections to go elsewhere after this answer.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let route_is_plain = route.is_json_plain();
        let route = route.as_str();
        let status = response.status().as_u16();
        let latency = started.elapsed();
        state.metrics.record(route, status, latency);
        if request_log::request_line_enabled() {
            let line = RequestLine {
                method: method.as_str(),
                route,
                route_is_plain,
                status,
                latency,
                request_id: id.text(),
            };
            // Our JSON subscriber takes the line as it is; any other gets the event.
            if !crate::telemetry::write_request_line(&line) {
                tracing::info!(
                    method = line.method,
                    route,
                    status,
                    latency_ms = line.latency_ms(),
                    request_id = line.request_id.as_str(),
                    "request"
                );
            }
        }
        response
            .headers_mut()
            .insert(REQUEST_ID_HEADER, id.into_header_value());
        response
    }
}

pin_project_lite::pin_project! {
    /// The handler's answer, or the 500 for its panic.
    pub(crate) struct CatchPanic<F> {
        #[pin]
        future: F,
    }
}

impl<F> Future for CatchPanic<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let future = self.project().future;
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(Ok(response))) => Poll::Ready(response),
            Ok(Poll::Ready(Err(never))) => match never {},
            Err(payload) => Poll::Ready(panic_response(payload)),
        }
    }
}

/// Answers a handler panic with a JSON 500. The payload is not logged (it may hold anything,
/// secrets included); the panic hook installed by the binary logs the location.
fn panic_response(_payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked; answered 500");
    json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_line_is_logged_under_this_modules_target() {
        // `RUST_LOG` filters the line by the target it names; the fallback event (another
        // subscriber) is logged from here, under this module's path.
        assert_eq!(request_log::REQUEST_LINE_TARGET, super::MODULE);
    }

    #[test]
    fn a_requests_future_stays_small() {
        // It is moved from `call` into hyper's slot (each move a copy); the boxed `async` block
        // it replaced was 1,560 bytes (see `AroundFuture`).
        let size = std::mem::size_of::<AroundFuture<RouteFuture<Infallible>>>();
        eprintln!("AroundFuture around the router: {size} bytes");
        assert!(size <= 1032, "{size} bytes");
    }
}
