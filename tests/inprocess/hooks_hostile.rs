//! `POST /hooks/deploy` against what anyone can send without the secret, driven with `oneshot`:
//! refusals that come from the headers without touching the body, and the in-flight budget.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use hyper::body::Frame;
use render_deploy::replay::MemoryReplayStore;
use render_deploy::signature::WebhookSecret;
use render_deploy::webhooks::{HookSettings, HookState, router};
use tokio::sync::Notify;
use tower::ServiceExt;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: i64 = 1_700_000_000;
const MIB: usize = 1024 * 1024;

fn state(max_inflight: usize) -> HookState {
    HookState::new(
        Some(WebhookSecret::parse(SECRET).unwrap()),
        HookSettings {
            max_body: MIB,
            max_inflight,
            ..HookSettings::default()
        },
        Arc::new(MemoryReplayStore::new(Duration::from_secs(300))),
        Arc::new(|| {}),
    )
    .with_clock(Arc::new(|| NOW))
}

/// A body that never yields a byte, and says whether (and when) anyone asked it for one.
struct NeverBody {
    polled: Arc<AtomicBool>,
    first_poll: Arc<Notify>,
}

impl hyper::body::Body for NeverBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if !self.polled.swap(true, Ordering::SeqCst) {
            self.first_poll.notify_one();
        }
        Poll::Pending
    }
}

struct Upload {
    request: Request<Body>,
    polled: Arc<AtomicBool>,
    first_poll: Arc<Notify>,
}

/// A delivery announcing `length` bytes that never come, with the given Standard headers.
fn upload(length: usize, timestamp: i64, signature: &str, id: &str) -> Upload {
    let polled = Arc::new(AtomicBool::new(false));
    let first_poll = Arc::new(Notify::new());
    let body = NeverBody {
        polled: polled.clone(),
        first_poll: first_poll.clone(),
    };
    let request = Request::post("/hooks/deploy")
        .header(header::CONTENT_LENGTH, length)
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(Body::new(body))
        .unwrap();
    Upload {
        request,
        polled,
        first_poll,
    }
}

/// Well-formed: 32 bytes of base64, so only the body and the key could tell it is wrong.
const WELL_FORMED: &str = "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=";

async fn answer(state: &HookState, request: Request<Body>) -> Response {
    tokio::time::timeout(
        Duration::from_secs(10),
        router(state.clone()).oneshot(request),
    )
    .await
    .expect("answered without the body")
    .unwrap()
}

async fn json(response: Response) -> serde_json::Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn a_stale_or_malformed_delivery_is_refused_401_without_its_body_being_read() {
    let state = state(8 * MIB);
    for (timestamp, signature, why) in [
        (1, WELL_FORMED, "fifty years stale"),
        (NOW + 3600, WELL_FORMED, "an hour ahead"),
        (NOW, "v1,AAAA", "not 32 bytes"),
        (NOW, "v2,whatever", "no v1 entry"),
        (NOW, "", "empty"),
    ] {
        let up = upload(MIB, timestamp, signature, "msg_hostile");
        let response = answer(&state, up.request).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{why}");
        assert_eq!(
            response.headers().get(header::CONNECTION).unwrap(),
            "close",
            "{why}: the connection is closed, not drained"
        );
        assert!(!up.polled.load(Ordering::SeqCst), "{why}: body read");
        assert_eq!(
            json(response).await,
            serde_json::json!({"error": "invalid signature"}),
            "{why}: the uniform body"
        );
    }
    assert_eq!(state.budget.in_use(), 0);
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_413_before_the_signature_and_unread() {
    let state = state(8 * MIB);
    let up = upload(MIB + 1, 1, "v1,AAAA", "msg_big");
    let response = answer(&state, up.request).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.headers().get(header::CONNECTION).unwrap(), "close");
    assert!(!up.polled.load(Ordering::SeqCst));
}

#[tokio::test]
async fn deliveries_beyond_the_in_flight_budget_get_503_with_retry_after_unread() {
    let state = state(2 * MIB);
    // Two well-formed, fresh deliveries of 1 MiB whose bodies never come hold the budget.
    let mut holders = Vec::new();
    for i in 0..2 {
        let up = upload(MIB, NOW, WELL_FORMED, &format!("msg_hold_{i}"));
        let first_poll = up.first_poll.clone();
        let router = router(state.clone());
        holders.push(tokio::spawn(router.oneshot(up.request)));
        // The body is polled only once its bytes are reserved.
        first_poll.notified().await;
    }
    assert_eq!(state.budget.in_use(), 2 * MIB);

    let up = upload(1024, NOW, WELL_FORMED, "msg_third");
    let response = answer(&state, up.request).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "2");
    assert_eq!(response.headers().get(header::CONNECTION).unwrap(), "close");
    assert!(!up.polled.load(Ordering::SeqCst), "refused unread");

    // A client going away mid-body gives its bytes back.
    for holder in holders {
        holder.abort();
        let _ = holder.await;
    }
    assert_eq!(state.budget.in_use(), 0);
    let up = upload(1024, NOW, WELL_FORMED, "msg_fourth");
    let first_poll = up.first_poll.clone();
    let pending = tokio::spawn(router(state.clone()).oneshot(up.request));
    first_poll.notified().await;
    assert_eq!(state.budget.in_use(), 1024, "admitted now");
    pending.abort();
}
