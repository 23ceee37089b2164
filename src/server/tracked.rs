//! The hyper service of one connection: the app, plus telling the connection's slot when a request begins and ends.
//!
//! hyper knows whether a connection is between requests but does not say; the registry needs
//! to know, to close an idle connection rather than a busy one when it is full
//! ([`connections`](super::connections)). A request begins when hyper calls the service (its
//! headers are in) and ends when hyper drops the answer's body (it has been written out, or
//! the connection is gone), so the guard rides on the body.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::{Future, Ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::routing::future::RouteFuture;
use futures_util::future::Either;
use hyper::body::{Frame, Incoming, SizeHint};

use super::connections::Slot;

/// The app for one connection.
///
/// The router is called in place. hyper's adapter for a tower service
/// (`hyper_util::service::TowerToHyperService`, as `axum::serve` uses) clones it for every
/// request, to own it through `poll_ready` and `call`: a reference count that every
/// connection's requests write, from both workers, and a `Oneshot` state machine around the
/// answer. A `Router` is always ready (its `poll_ready` returns `Ready` without looking at
/// anything), and hyper calls a connection's service from that connection's task only, one call
/// at a time, so a `RefCell` lends it out for each call.
#[derive(Debug)]
pub struct TrackedService {
    app: RefCell<Router>,
    slot: Arc<Slot>,
}

impl TrackedService {
    /// Serves `app`, reporting to `slot`.
    pub fn new(app: Router, slot: Arc<Slot>) -> Self {
        Self {
            app: RefCell::new(app),
            slot,
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for TrackedService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response<TrackedBody>, Infallible>>, TrackedAnswer>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        if !self.slot.begin_request() {
            // Chosen to make room an instant before these headers arrived; its task is closing
            // it, so this answer is unlikely to be read, but it is the honest one.
            return Either::Left(std::future::ready(Ok(evicted_answer())));
        }
        Either::Right(TrackedAnswer {
            answer: tower_service::Service::call(&mut *self.app.borrow_mut(), request),
            guard: Some(RequestGuard(Arc::clone(&self.slot))),
        })
    }
}

pin_project_lite::pin_project! {
    /// The app's answer, its body then carrying the guard that ends the request. (A future of
    /// its own rather than a boxed `async` block: one allocation less per request.)
    pub struct TrackedAnswer {
        #[pin]
        answer: RouteFuture<Infallible>,
        // Dropped with the future if the connection goes before the answer is ready.
        guard: Option<RequestGuard>,
    }
}

impl Future for TrackedAnswer {
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.answer.poll(cx))?;
        let guard = this.guard.take();
        Poll::Ready(Ok(response.map(|inner| TrackedBody {
            inner,
            _guard: guard,
        })))
    }
}

fn evicted_answer() -> Response<TrackedBody> {
    let mut response = Response::new(TrackedBody {
        inner: Body::from(r#"{"error":"server busy"}"#),
        _guard: None,
    });
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Ends the request when dropped (with the answer's body, or with the handler's future).
#[derive(Debug)]
struct RequestGuard(Arc<Slot>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

/// The answer's body, carrying the guard that ends the request.
#[derive(Debug)]
pub struct TrackedBody {
    inner: Body,
    _guard: Option<RequestGuard>,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
