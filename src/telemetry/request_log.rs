//! What the log says about each request: its id on every event logged while it is handled, and
//! its one line when it is answered.
//!
//! Both are on every request's path, so both take a short cut when the installed subscriber is
//! this crate's own JSON one ([`super::init_logging`] with `LOG_FORMAT=json`), and go through
//! tracing as any event would otherwise (the pretty format, a host application's subscriber).
//!
//! - **The id.** A tracing span per request gives every subscriber the id, and costs a span's
//!   creation, an enter and an exit per poll, and its closing: `perf` on `/livez` put the
//!   span's creation at 0.24 µs and its closing at 0.16 µs per request, of the 2.45 µs that the
//!   middleware and the handler took. With our JSON subscriber and a `RUST_LOG` of levels and
//!   targets nothing needs the span itself: the id rides in a per-thread slot, swapped in and
//!   out around each poll of the handler's future as tokio's task-locals are ([`Scoped`]), and
//!   the formatter writes it where the span's fields went
//!   (`"span":{"request_id":…,"name":"request"}`). A `RUST_LOG` with span directives
//!   (`[request{request_id=…}]=debug`) gets the span, which it filters on.
//! - **The line.** The request line has fixed fields, so with our JSON subscriber it is written
//!   straight into the log buffer ([`super::write_request_line`]), the same bytes the formatter
//!   would give the event (a test compares the two), without the event's dispatch through the
//!   subscriber's layers and the visit of its fields (`perf`: 0.64 µs per request through
//!   `tracing`, about 0.25 µs written directly).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::HeaderValue;
use tracing::Span;

thread_local! {
    /// The id of the request whose handler is being polled on this thread ([`Scoped`]).
    static REQUEST_ID: RefCell<Option<IdText>> = const { RefCell::new(None) };
}

/// A request's id as the log and the answer carry it: 32 hex digits made up here, held inline,
/// or the caller's own header value (shared with the request's bytes).
///
/// Inline because an id is cloned twice per request (into the request's extensions and into
/// its scope): a made-up id as a `HeaderValue` was a copy into a buffer of its own, then a
/// second allocation and a reference count at its first clone (`Bytes` turns shared lazily).
/// Inline, a clone is a copy of 32 bytes, and the one allocation is the answer's header at the
/// end.
#[derive(Debug, Clone)]
pub enum IdText {
    /// Made up for a request that brought no usable id: lowercase hex digits.
    Made([u8; 32]),
    /// The caller's `x-request-id`, already checked to be short visible ASCII.
    Caller(HeaderValue),
}

impl IdText {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Both kinds are ASCII (hex digits; a caller's id is kept only when visible ASCII).
        match self {
            IdText::Made(digits) => std::str::from_utf8(digits).unwrap_or_default(),
            IdText::Caller(value) => value.to_str().unwrap_or_default(),
        }
    }

    /// The id as the answer's header value.
    pub fn into_header_value(self) -> HeaderValue {
        match self {
            IdText::Made(digits) => made_header_value(&digits),
            IdText::Caller(value) => value,
        }
    }
}

/// A made-up id's digits as a header value, in this thread's block of ids rather than in an
/// allocation of its own.
///
/// `HeaderValue::from_bytes` copies into a new buffer, which is freed when hyper has written the
/// answer's head: a `malloc` and a `free` per request. Here a block of 128 ids is allocated at
/// once and each id takes the next 32 bytes of it with a reference count; the block is freed when
/// the last head that held one of its ids has been written (callgrind: ~90 instructions per
/// request less).
fn made_header_value(digits: &[u8; 32]) -> HeaderValue {
    const BLOCK_SIZE: usize = 128 * 32;
    thread_local! {
        static BLOCK: std::cell::RefCell<bytes::BytesMut> =
            std::cell::RefCell::new(bytes::BytesMut::new());
    }
    let value = BLOCK.with(|block| match block.try_borrow_mut() {
        Ok(mut block) => {
            if block.capacity() < digits.len() {
                *block = bytes::BytesMut::with_capacity(BLOCK_SIZE);
            }
            block.extend_from_slice(digits);
            HeaderValue::from_maybe_shared(block.split().freeze())
        }
        // Only this function borrows it, and it does not call itself.
        Err(_) => HeaderValue::from_bytes(digits),
    });
    // Hex digits are a valid value.
    value.unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Set once our JSON subscriber is installed.
static JSON: AtomicBool = AtomicBool::new(false);
/// Set once our JSON subscriber is installed with a filter that does not look at spans.
static SPANLESS: AtomicBool = AtomicBool::new(false);
/// Whether the request line is logged, once our subscriber's filter has said so for good
/// ([`LINE_ASK`] until then, and for a filter that decides per event).
static LINE: AtomicU8 = AtomicU8::new(LINE_ASK);
const LINE_ASK: u8 = 0;
const LINE_ON: u8 = 1;
const LINE_OFF: u8 = 2;

/// The target of the request line: the middleware's module, which logs it (tests check that
/// the two agree, and that the line written directly says it), so that
/// `RUST_LOG=render_deploy::server::middleware=warn` turns it off.
pub const REQUEST_LINE_TARGET: &str = "render_deploy::server::middleware";

/// Records what [`super::init_logging`] installed: the format, whether the filter looks at
/// spans, and, when the filter decides by target and level alone, whether it lets the request
/// line through.
pub(super) fn installed(json: bool, filter_reads_spans: bool, line_enabled: Option<bool>) {
    JSON.store(json, Ordering::Relaxed);
    SPANLESS.store(json && !filter_reads_spans, Ordering::Relaxed);
    let line = match line_enabled {
        // Also off when this build compiles info events out (tracing's `max_level_*`).
        Some(on) if on && tracing::level_enabled!(tracing::Level::INFO) => LINE_ON,
        Some(_) => LINE_OFF,
        None => LINE_ASK,
    };
    LINE.store(line, Ordering::Relaxed);
}

/// Whether a request's line is to be logged.
///
/// Decided once when our subscriber's filter is a fixed `Targets` (a plain `RUST_LOG`);
/// otherwise tracing is asked each time. `tracing::enabled!` goes through the dispatcher and
/// the subscriber's layers even when the call site's interest is cached as "always" (~100
/// instructions per request in callgrind).
pub fn request_line_enabled() -> bool {
    match LINE.load(Ordering::Relaxed) {
        LINE_ON => true,
        LINE_OFF => false,
        _ => tracing::enabled!(target: REQUEST_LINE_TARGET, tracing::Level::INFO),
    }
}

/// How a request's id reaches the events logged while it is handled.
#[derive(Debug)]
pub enum RequestScope {
    /// A tracing span with the id as its `request_id` field.
    Span(Span),
    /// The id for this thread's slot that our JSON formatter reads: held here while the
    /// request's future is not being polled, and the slot's previous value while it is.
    Local(Option<IdText>),
}

impl RequestScope {
    /// The scope of the request `id`: the per-thread slot when our JSON subscriber alone reads
    /// it, else the span `make_span` makes (called only then, so that its target is the
    /// caller's).
    pub fn new(id: &IdText, make_span: impl FnOnce() -> Span) -> Self {
        if SPANLESS.load(Ordering::Relaxed) {
            RequestScope::Local(Some(id.clone()))
        } else {
            RequestScope::Span(make_span())
        }
    }

    /// Runs `f` inside the scope: the span entered, or the id swapped into this thread's slot
    /// (and the slot's value back out afterwards, even if `f` panics).
    fn enter<R>(&mut self, f: impl FnOnce() -> R) -> R {
        match self {
            RequestScope::Span(span) => span.in_scope(f),
            RequestScope::Local(held) => {
                /// Swaps back when dropped, if the swap in was made.
                struct Swapped<'a>(&'a mut Option<IdText>);
                impl Drop for Swapped<'_> {
                    fn drop(&mut self) {
                        swap_current(self.0);
                    }
                }
                let _back = swap_current(held).then_some(Swapped(held));
                f()
            }
        }
    }

    /// Runs `f` inside the scope (the tests' way to log as inside a request's handler).
    #[cfg(test)]
    pub fn in_scope<R>(&mut self, f: impl FnOnce() -> R) -> R {
        self.enter(f)
    }

    /// `future`, inside the scope each time it is polled, and when it is dropped.
    pub fn wrap<F: Future>(self, future: F) -> Scoped<F> {
        Scoped {
            future: Some(future),
            scope: self,
        }
    }
}

/// Exchanges `held` with this thread's current request id; whether it did. The slot is
/// borrowed only here and by [`with_current_id`], neither of which calls out while it holds
/// it, so the borrow does not fail; if it ever did, the id would just be missing from the
/// request's events.
fn swap_current(held: &mut Option<IdText>) -> bool {
    REQUEST_ID.with(|current| match current.try_borrow_mut() {
        Ok(mut current) => {
            std::mem::swap(&mut *current, held);
            true
        }
        Err(_) => false,
    })
}

pin_project_lite::pin_project! {
    /// A future inside a [`RequestScope`]: in it at each poll, and when dropped unfinished (a
    /// request timed out or a connection gone), so that what its destructors log carries the
    /// id too. Our own rather than `tracing`'s `Instrumented` or a tokio task-local's future
    /// beside it: one future, not a choice between two, and the slot's swap without the
    /// task-local's checks (callgrind: from the connection's answer to the route's future,
    /// 2 013 → 1 939 instructions per `/livez` request).
    pub struct Scoped<F> {
        // `None` once it has finished: dropped inside the scope, at once.
        #[pin]
        future: Option<F>,
        scope: RequestScope,
    }

    impl<F> PinnedDrop for Scoped<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let mut future = this.future;
            if future.is_some() {
                this.scope.enter(|| future.set(None));
            }
        }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let mut future = this.future;
        this.scope.enter(|| {
            let Some(inner) = future.as_mut().as_pin_mut() else {
                panic!("a request's scoped future was polled after it finished");
            };
            let polled = inner.poll(cx);
            if polled.is_ready() {
                future.set(None);
            }
            polled
        })
    }
}

/// Calls `f` with the id of the request being handled, if a [`RequestScope::Local`] is being
/// polled on this thread.
pub(super) fn with_current_id<R>(f: impl FnOnce(&str) -> R) -> Option<R> {
    REQUEST_ID.with(|current| {
        let current = current.try_borrow().ok()?;
        current.as_ref().map(|id| f(id.as_str()))
    })
}

/// One answered request, as its log line gives it.
#[derive(Debug, Clone, Copy)]
pub struct RequestLine<'a> {
    /// The request's method: a token (`http::Method` admits no other), so no character of it
    /// needs escaping, and the line writes it as it is.
    pub method: &'a str,
    /// The route template, or `unmatched`.
    pub route: &'a str,
    /// Whether `route` is known to need no JSON escape (checked once, when a static route was
    /// learned: [`super::needs_no_json_escape`]), so that the line skips the check.
    pub route_is_plain: bool,
    /// The answer's status code.
    pub status: u16,
    /// From the headers' arrival to the answer.
    pub latency: Duration,
    /// The request's id: made up here (hex digits, written without the escape check) or the
    /// caller's (visible ASCII, which may hold a quote or a backslash).
    pub request_id: &'a IdText,
}

impl RequestLine<'_> {
    /// `latency_ms`: whole microseconds, as milliseconds (precise enough, and short to write).
    pub fn latency_ms(&self) -> f64 {
        self.latency.as_micros() as f64 / 1000.0
    }
}

/// Whether our JSON subscriber is installed (and so takes a request's line as it is:
/// [`super::write_request_line`]).
pub(super) fn json_installed() -> bool {
    JSON.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn caller(id: &'static str) -> IdText {
        IdText::Caller(HeaderValue::from_static(id))
    }

    fn current() -> Option<String> {
        with_current_id(str::to_owned)
    }

    #[test]
    fn a_scoped_future_sees_its_id_while_polled_and_the_outer_one_again_after() {
        let inner = RequestScope::Local(Some(caller("inner"))).wrap(async {
            let seen = current();
            tokio::task::yield_now().await;
            (seen, current())
        });
        let mut outer = RequestScope::Local(Some(caller("outer")));
        let mut inner = Box::pin(inner);
        // First poll: pending after the yield; the outer id is back once it returns.
        let first = outer.in_scope(|| {
            let polled = inner.as_mut().now_or_never();
            (polled.is_none(), current())
        });
        assert_eq!(first, (true, Some("outer".to_owned())));
        assert_eq!(current(), None, "nothing outside any scope");
        let (before, after) = inner
            .as_mut()
            .now_or_never()
            .expect("ready at the second poll");
        assert_eq!(before.as_deref(), Some("inner"));
        assert_eq!(after.as_deref(), Some("inner"));
        assert_eq!(current(), None);
    }

    #[test]
    fn a_scoped_future_dropped_unfinished_is_dropped_inside_its_scope() {
        struct Reports(std::sync::mpsc::Sender<Option<String>>);
        impl Drop for Reports {
            fn drop(&mut self) {
                let _ = self.0.send(current());
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let reports = Reports(tx);
        let mut scoped = Box::pin(RequestScope::Local(Some(caller("gone"))).wrap(async move {
            let _reports = reports;
            std::future::pending::<()>().await;
        }));
        assert!(scoped.as_mut().now_or_never().is_none());
        drop(scoped);
        assert_eq!(rx.try_recv().unwrap().as_deref(), Some("gone"));
        assert_eq!(current(), None);
    }

    #[test]
    fn made_ids_header_values_say_their_own_digits_across_blocks() {
        // 300 ids span three blocks; each value is its own id's, whichever are dropped first.
        let digits = |n: usize| {
            let mut text = [b'0'; 32];
            text[..6].copy_from_slice(format!("{n:06x}").as_bytes());
            text
        };
        let mut values: Vec<HeaderValue> = (0..300)
            .map(|n| IdText::Made(digits(n)).into_header_value())
            .collect();
        values.drain(..150);
        let later: Vec<HeaderValue> = (300..400)
            .map(|n| IdText::Made(digits(n)).into_header_value())
            .collect();
        for (value, n) in values.iter().zip(150..).chain(later.iter().zip(300..)) {
            assert_eq!(value.as_bytes(), digits(n), "id {n}");
        }
        let caller = HeaderValue::from_static("caller-7");
        assert_eq!(IdText::Caller(caller.clone()).into_header_value(), caller);
    }
}
