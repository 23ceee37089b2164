//! Which route a request goes to, for its metrics and its log line: the route's template
//! (`/users/{id}`), never the raw path, so that the labels stay few.
//!
//! axum says which route matched only inside the router, in the request's extensions
//! (`MatchedPath`), so a layer that reads it has to be one of `Router::layer`'s, which axum puts
//! around every route. Such a layer costs a level of axum's route machinery on every request
//! (a boxed clone of the route, a boxed future, the moves between them): ~1,030 instructions per
//! request in callgrind on `/livez` (`scripts/bench-instructions.sh`, a build with a layer that
//! only passes the request on, against one without). axum has discussed putting the matched
//! path where a layer outside the router could read it, and not done it (tokio-rs/axum#1441).
//!
//! So the router is kept twice ([`RouteLabels`]): as the application built it, and with a layer
//! ([`Report`]) that tells which route matched. The middleware, outside the router, sends a
//! request through the plain one when its route is already known, and through the reporting one
//! otherwise. Routing is a function of the path alone (axum matches the path, then picks the
//! method's handler or the route's 405 within the route), so a route is known from the path.
//! Only a static route is remembered — one whose template is the very path, such as `/livez` —
//! so the remembered routes are never more than the router's own (a path with parameters
//! matches its template only when it is that template, character for character). Each thread
//! remembers its own, as the metrics count per thread: nothing on the way is written by both
//! workers. A route with parameters goes through the reporting router every time, and costs what
//! every route cost before (plus a look-up that misses).

use std::cell::Cell;
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::routing::future::RouteFuture;

use crate::per_thread;

/// The router, plain and reporting, and the routes known so far.
#[derive(Clone)]
pub(crate) struct RouteLabels {
    plain: Router,
    reporting: Router,
    known: Arc<KnownRoutes>,
}

impl std::fmt::Debug for RouteLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteLabels").finish_non_exhaustive()
    }
}

/// The route a request went to, as its metrics and its log line label it.
#[derive(Debug, Clone)]
pub(crate) enum Label {
    /// A static route this thread knew: its template, in this thread's own copy (a clone of
    /// the router's would be a reference count that both workers write on every request).
    /// Only a template that JSON can hold as it is is remembered ([`Label::is_json_plain`]).
    Known(Arc<str>),
    /// The template that matched, as the reporting router said.
    Matched(MatchedPath),
    /// No route matched (the router's fallback answered).
    Unmatched,
    /// Not known yet: the reporting router tells at the request's first poll
    /// ([`take_reported`]).
    Pending,
}

impl Label {
    /// The label: the template, or `unmatched`.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Label::Known(path) => path,
            Label::Matched(path) => path.as_str(),
            // Pending only if the answer came without a poll of the router's future, which the
            // middleware does not do; `unmatched` is the honest label then too.
            Label::Unmatched | Label::Pending => "unmatched",
        }
    }

    /// Whether the label is known to need no escape in a JSON string: a remembered template
    /// was checked when it was learned, and `unmatched` needs none.
    pub(crate) fn is_json_plain(&self) -> bool {
        !matches!(self, Label::Matched(_))
    }
}

impl RouteLabels {
    /// Keeps `app` twice: as it is, and with [`Report`] around each of its routes (and its
    /// fallbacks, so that a 405 of a known path is labelled with its route, as a 200 is).
    pub(crate) fn new(app: Router) -> Self {
        let known = Arc::new(KnownRoutes::default());
        let reporting = app.clone().layer(ReportLayer(Arc::clone(&known)));
        Self {
            plain: app,
            reporting,
            known,
        }
    }

    /// Routes `request`. The route is known at once for a static route this thread has seen;
    /// otherwise it is [`Label::Pending`] until the future's first poll.
    pub(crate) fn call(&mut self, request: Request) -> (RouteFuture<Infallible>, Label) {
        use tower_service::Service as _;
        match self.known.get(request.uri().path()) {
            Some(path) => (self.plain.call(request), Label::Known(path)),
            None => (self.reporting.call(request), Label::Pending),
        }
    }

    /// How many routes this thread knows (for tests).
    #[cfg(test)]
    fn known_here(&self) -> usize {
        self.known.lock().len()
    }
}

/// The static routes seen so far, one map per thread slot (threads beyond the slots share one,
/// behind its lock).
#[derive(Default)]
struct KnownRoutes {
    slots: [Slot; per_thread::SLOTS],
}

/// One thread's known routes (their templates, which are their paths), on cache lines of its
/// own. foldhash because a path is hashed on every request and SipHash's resistance to chosen
/// keys buys nothing here: the set only ever holds the router's own templates.
#[repr(align(128))]
#[derive(Default)]
struct Slot(Mutex<Templates>);

type Templates = HashSet<Arc<str>, foldhash::fast::RandomState>;

impl KnownRoutes {
    fn lock(&self) -> MutexGuard<'_, Templates> {
        // Only an insert that panicked (out of memory) could poison it, and a set is never left
        // half-inserted: what it holds is still good.
        self.slots[per_thread::slot()]
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, path: &str) -> Option<Arc<str>> {
        self.lock().get(path).cloned()
    }

    /// Remembers `matched` for `path` if it is a static route (its template is the path) that
    /// JSON holds without an escape (a template with a quote, a backslash or a control
    /// character is possible, if odd: it goes through the reporting router every time).
    fn learn(&self, path: &str, matched: &MatchedPath) {
        if matched.as_str() == path && crate::telemetry::needs_no_json_escape(path) {
            let mut known = self.lock();
            if !known.contains(path) {
                known.insert(path.into());
            }
        }
    }
}

thread_local! {
    /// What [`Report`] saw for the request whose future is being polled on this thread: set by
    /// its `call`, which axum makes at the first poll of the router's future, and taken by the
    /// middleware right after that poll.
    static REPORTED: Cell<Option<Label>> = const { Cell::new(None) };
}

/// The route the reporting router matched for the request whose future was just polled for the
/// first time on this thread ([`Label::Unmatched`] if none did, [`Label::Pending`] if nothing
/// was reported).
pub(crate) fn take_reported() -> Label {
    REPORTED.take().unwrap_or(Label::Pending)
}

/// Wraps each route of the reporting router in [`Report`].
#[derive(Clone)]
struct ReportLayer(Arc<KnownRoutes>);

impl<S> tower_layer::Layer<S> for ReportLayer {
    type Service = Report<S>;

    fn layer(&self, inner: S) -> Report<S> {
        Report {
            inner,
            known: Arc::clone(&self.0),
        }
    }
}

/// Tells the middleware which route matched, and remembers a static one.
#[derive(Clone)]
pub(crate) struct Report<S> {
    inner: S,
    known: Arc<KnownRoutes>,
}

impl<S> tower_service::Service<Request> for Report<S>
where
    S: tower_service::Service<Request>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> S::Future {
        let route = match request.extensions().get::<MatchedPath>() {
            Some(matched) => {
                self.known.learn(request.uri().path(), matched);
                Label::Matched(matched.clone())
            }
            // The router's fallback (no route has this path).
            None => Label::Unmatched,
        };
        REPORTED.set(Some(route));
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, StatusCode};
    use axum::routing::get;

    fn app() -> RouteLabels {
        RouteLabels::new(
            Router::new()
                .route("/static", get(|| async { "static" }))
                .route("/users/{id}", get(|| async { "user" }))
                .nest(
                    "/api",
                    Router::new().route("/items", get(|| async { "items" })),
                ),
        )
    }

    /// Sends `method path` through `labels` as the middleware does: the label before the
    /// router's future is polled, then after its first poll.
    async fn send(labels: &mut RouteLabels, method: Method, path: &str) -> (StatusCode, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let (future, before) = labels.call(request);
        let response = future.await.unwrap();
        let route = match before {
            Label::Pending => take_reported(),
            known => known,
        };
        (response.status(), route.as_str().to_owned())
    }

    #[tokio::test]
    async fn a_request_is_labelled_with_its_template_before_and_after_its_route_is_known() {
        let mut labels = app();
        // The first request to a static route is reported and teaches it; the next is labelled
        // without the reporting router; the label is the same.
        for _ in 0..3 {
            assert_eq!(
                send(&mut labels, Method::GET, "/static").await,
                (StatusCode::OK, "/static".to_owned())
            );
        }
        for _ in 0..2 {
            assert_eq!(
                send(&mut labels, Method::GET, "/api/items").await,
                (StatusCode::OK, "/api/items".to_owned())
            );
        }
        assert_eq!(labels.known_here(), 2);
        // A method the route does not take: still the route's label, learned or not.
        assert_eq!(
            send(&mut labels, Method::POST, "/static").await,
            (StatusCode::METHOD_NOT_ALLOWED, "/static".to_owned())
        );
        let mut fresh = app();
        assert_eq!(
            send(&mut fresh, Method::DELETE, "/static").await,
            (StatusCode::METHOD_NOT_ALLOWED, "/static".to_owned())
        );
        assert_eq!(
            send(&mut fresh, Method::GET, "/static").await,
            (StatusCode::OK, "/static".to_owned())
        );
    }

    #[tokio::test]
    async fn paths_with_parameters_and_unknown_paths_are_labelled_but_never_remembered() {
        let mut labels = app();
        for id in 0..50 {
            assert_eq!(
                send(&mut labels, Method::GET, &format!("/users/{id}")).await,
                (StatusCode::OK, "/users/{id}".to_owned())
            );
            assert_eq!(
                send(&mut labels, Method::GET, &format!("/nope/{id}")).await,
                (StatusCode::NOT_FOUND, "unmatched".to_owned())
            );
        }
        // Neither a raw path nor an unmatched one is kept: the map is bounded by the router.
        assert_eq!(labels.known_here(), 0);
        // Near misses of a static route are not it (axum matches the path exactly).
        let mut labels = app();
        send(&mut labels, Method::GET, "/static").await;
        for near in ["/static/", "/Static", "/stat%69c", "/static?x=1"] {
            let (status, route) = send(&mut labels, Method::GET, near).await;
            let expected = if near == "/static?x=1" {
                "/static"
            } else {
                "unmatched"
            };
            assert_eq!(route, expected, "{near} ({status})");
        }
        assert_eq!(labels.known_here(), 1);
    }

    #[tokio::test]
    async fn a_static_route_that_json_must_escape_is_labelled_but_not_remembered() {
        // Remembered labels are written into the log line without the escape check.
        let mut labels = RouteLabels::new(Router::new().route("/say\"hi", get(|| async { "" })));
        for _ in 0..3 {
            let (future, before) = labels.call(
                Request::builder()
                    .uri("/say\"hi")
                    .body(Body::empty())
                    .unwrap(),
            );
            assert!(matches!(before, Label::Pending));
            assert_eq!(future.await.unwrap().status(), StatusCode::OK);
            let route = take_reported();
            assert!(!route.is_json_plain());
            assert_eq!(route.as_str(), "/say\"hi");
        }
        assert_eq!(labels.known_here(), 0);
        assert!(Label::Unmatched.is_json_plain());
    }

    #[tokio::test]
    async fn routers_keep_their_own_routes() {
        // Two services in one process (as in the tests) route the same path differently.
        let mut with = app();
        let mut without = RouteLabels::new(Router::new().route("/other", get(|| async { "" })));
        send(&mut with, Method::GET, "/static").await;
        assert_eq!(
            send(&mut without, Method::GET, "/static").await,
            (StatusCode::NOT_FOUND, "unmatched".to_owned())
        );
    }
}
