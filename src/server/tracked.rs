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

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use futures_util::future::Either;
use hyper::body::{Frame, Incoming, SizeHint};

use super::connections::Slot;

/// What a connection serves: a router, or the middleware around one (any tower service of
/// requests that never fails, cloned once per connection).
pub(crate) trait App:
    tower_service::Service<
        Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> App for S where
    S: tower_service::Service<
            Request<Body>,
            Response = Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// The app for one connection.
///
/// The app is called in place. hyper's adapter for a tower service
/// (`hyper_util::service::TowerToHyperService`, as `axum::serve` uses) clones it for every
/// request, to own it through `poll_ready` and `call`: a reference count that every
/// connection's requests write, from both workers, and a `Oneshot` state machine around the
/// answer. The apps served here are always ready (a `Router`'s `poll_ready` returns `Ready`
/// without looking at anything, and so does the middleware's), and hyper calls a connection's
/// service from that connection's task only, one call at a time, so a `RefCell` lends it out
/// for each call.
#[derive(Debug)]
pub struct TrackedService<S> {
    app: RefCell<S>,
    slot: Arc<Slot>,
}

impl<S> TrackedService<S> {
    /// Serves `app`, reporting to `slot`.
    pub fn new(app: S, slot: Arc<Slot>) -> Self {
        Self {
            app: RefCell::new(app),
            slot,
        }
    }
}

impl<S> hyper::service::Service<Request<Incoming>> for TrackedService<S>
where
    S: tower_service::Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future =
        Either<Ready<Result<Response<TrackedBody>, Infallible>>, TrackedAnswer<S::Future>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        if !self.slot.begin_request() {
            // Chosen to make room an instant before these headers arrived; its task is closing
            // it, so this answer is unlikely to be read, but it is the honest one.
            return Either::Left(std::future::ready(Ok(evicted_answer())));
        }
        Either::Right(TrackedAnswer {
            answer: tower_service::Service::call(
                &mut *self.app.borrow_mut(),
                request.map(Body::new),
            ),
            guard: Some(RequestGuard(Arc::clone(&self.slot))),
        })
    }
}

pin_project_lite::pin_project! {
    /// The app's answer, its body then carrying the guard that ends the request. (A future of
    /// its own rather than a boxed `async` block: one allocation less per request.)
    pub struct TrackedAnswer<F> {
        #[pin]
        answer: F,
        // Dropped with the future if the connection goes before the answer is ready.
        guard: Option<RequestGuard>,
    }
}

impl<F> Future for TrackedAnswer<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
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
