//! `GET /events` through the router on a paused clock: the state at once and on change,
//! keep-alive comments, `draining` and the end of the stream; and the `Shutdown` extractor.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use http_body_util::BodyExt;
use render_deploy::health::{
    DbPolicy, HealthSettings, HealthState, Lifecycle, ProbeError, ServiceInfo,
};
use render_deploy::server::{Shutdown, events};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

struct Service {
    up: Arc<AtomicBool>,
    state: HealthState,
    lifecycle: Lifecycle,
}

fn service() -> Service {
    let up = Arc::new(AtomicBool::new(true));
    let lifecycle = Lifecycle::new();
    let probe = {
        let up = Arc::clone(&up);
        move || {
            std::future::ready(if up.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(ProbeError::NoConnection(None))
            })
        }
    };
    let settings = HealthSettings {
        db_policy: DbPolicy::Strict,
        ..HealthSettings::default()
    };
    let state = HealthState::new(
        &settings,
        probe,
        lifecycle.clone(),
        ServiceInfo::new(None, Some("srv-events-1")),
    );
    Service {
        up,
        state,
        lifecycle,
    }
}

async fn open(service: &Service) -> Body {
    let response = events::router(service.state.clone())
        .oneshot(Request::get("/events").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    response.into_body()
}

/// The next piece of the body, as text; `None` at its end.
async fn next(body: &mut Body) -> Option<String> {
    let frame = body.frame().await?.expect("no body error");
    Some(String::from_utf8(frame.into_data().expect("a data frame").to_vec()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn the_stream_sends_the_state_at_once_keep_alives_every_15_s_and_each_change() {
    let service = service();
    let mut body = open(&service).await;
    assert_eq!(
        next(&mut body).await.unwrap(),
        "event: state\ndata: {\"instance\":\"srv-events-1\",\"status\":\"healthy\"}\n\n"
    );

    // Nothing changes (the healthy result is cached for 60 s): the next thing is a comment.
    let opened = tokio::time::Instant::now();
    assert_eq!(next(&mut body).await.unwrap(), ": keep-alive\n\n");
    assert_eq!(opened.elapsed(), events::KEEP_ALIVE);

    service.up.store(false, Ordering::SeqCst);
    service.state.invalidate();
    let changed = tokio::time::Instant::now();
    assert_eq!(
        next(&mut body).await.unwrap(),
        "event: state\ndata: {\"instance\":\"srv-events-1\",\"status\":\"unhealthy\"}\n\n"
    );
    assert!(
        changed.elapsed() <= events::STATE_POLL,
        "{:?}",
        changed.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn draining_sends_the_draining_event_with_retry_and_ends_the_stream() {
    let service = service();
    let mut body = open(&service).await;
    assert!(next(&mut body).await.unwrap().starts_with("event: state\n"));

    service.lifecycle.start_draining();
    let at = tokio::time::Instant::now();
    assert_eq!(
        next(&mut body).await.unwrap(),
        "event: draining\ndata: {\"instance\":\"srv-events-1\",\"status\":\"draining\"}\nretry: 1000\n\n"
    );
    assert!(next(&mut body).await.is_none(), "the stream must end");
    assert_eq!(at.elapsed(), Duration::ZERO, "draining is sent at once");
}

#[tokio::test(start_paused = true)]
async fn a_stream_opened_while_draining_is_told_so_and_ends_at_once() {
    let service = service();
    service.lifecycle.start_draining();
    let mut body = open(&service).await;
    assert!(
        next(&mut body)
            .await
            .unwrap()
            .starts_with("event: draining\n")
    );
    assert!(next(&mut body).await.is_none());
}

async fn status_of(shutdown: Shutdown) -> &'static str {
    if shutdown.is_draining() {
        "draining"
    } else {
        "serving"
    }
}

#[tokio::test]
async fn a_handler_gets_the_shutdown_signal_from_the_requests_extensions() {
    let token = CancellationToken::new();
    let app = Router::new()
        .route("/", get(status_of))
        .layer(axum::Extension(Shutdown::from_token(token.clone())));
    let get_text = |app: Router| async move {
        let response = app
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    };
    assert_eq!(get_text(app.clone()).await, "serving");
    token.cancel();
    assert_eq!(get_text(app).await, "draining");
}

#[tokio::test]
async fn a_handler_asking_for_the_signal_on_a_router_without_it_gets_a_json_500() {
    let app = Router::new().route("/", get(status_of));
    let response = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&bytes[..], br#"{"error":"internal error"}"#);
}

#[tokio::test]
async fn a_handler_cancelling_its_own_token_does_not_start_a_drain() {
    let lifecycle = Lifecycle::new();
    let shutdown = Shutdown::from_token(lifecycle.draining_token());
    shutdown.token().cancel();
    assert!(!shutdown.is_draining() && !lifecycle.is_draining());
    lifecycle.start_draining();
    shutdown.draining().await;
    assert!(shutdown.token().is_cancelled());
}
