//! `POST /hooks/deploy` driven with tower's `oneshot` (no socket): one test per status code of
//! contract §4.1, the actions, and the claim released when an action fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::fake_hook::{FakeHook, HOOK_URL_KEY, Reply, accepted};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use render_deploy::render_api::deploy_hook::{DeployHookClient, DeployHookUrl, RetryPolicy};
use render_deploy::replay::MemoryReplayStore;
use render_deploy::signature::{WebhookSecret, sign_github, sign_standard};
use render_deploy::webhooks::{HookSettings, HookState, router};
use serde_json::{Value, json};
use tower::ServiceExt;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: i64 = 1_700_000_000;

struct Harness {
    state: HookState,
    invalidations: Arc<AtomicUsize>,
    clock: Arc<AtomicI64>,
}

fn harness() -> Harness {
    let invalidations = Arc::new(AtomicUsize::new(0));
    let clock = Arc::new(AtomicI64::new(NOW));
    let counter = invalidations.clone();
    let time = clock.clone();
    let state = HookState::new(
        Some(WebhookSecret::parse(SECRET).unwrap()),
        HookSettings {
            max_body: 4096,
            ..HookSettings::default()
        },
        Arc::new(MemoryReplayStore::new(Duration::from_secs(300))),
        Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }),
    )
    .with_clock(Arc::new(move || time.load(Ordering::SeqCst)));
    Harness {
        state,
        invalidations,
        clock,
    }
}

fn signed(id: &str, ts: i64, body: &str) -> Request<Body> {
    let secret = WebhookSecret::parse(SECRET).unwrap();
    let sig = sign_standard(&secret, id, ts, body.as_bytes());
    Request::post("/hooks/deploy")
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

async fn send(state: &HookState, request: Request<Body>) -> (StatusCode, Value) {
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body)
}

fn fast_client(url: &str) -> DeployHookClient {
    let policy = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(5),
        ..RetryPolicy::default()
    };
    DeployHookClient::with_policy(DeployHookUrl::parse(url).unwrap(), policy).unwrap()
}

#[tokio::test]
async fn a_new_deploy_event_is_accepted_with_202_and_invalidates_the_health_cache() {
    let h = harness();
    let (status, body) = send(
        &h.state,
        signed("msg_1", NOW, r#"{"type":"deploy_ended","data":{}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        body,
        json!({"status": "accepted", "id": "msg_1", "action": "invalidate_health_cache"})
    );
    assert_eq!(h.invalidations.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn every_render_deploy_or_restart_event_invalidates() {
    let h = harness();
    for (i, t) in [
        "zero_downtime_redeploy_ended",
        "server_restarted",
        "deploy_started",
    ]
    .iter()
    .enumerate()
    {
        let (status, body) = send(
            &h.state,
            signed(&format!("msg_{i}"), NOW, &format!(r#"{{"type":"{t}"}}"#)),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(body["action"], "invalidate_health_cache");
    }
    assert_eq!(h.invalidations.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn another_event_type_is_accepted_without_action() {
    let h = harness();
    let (status, body) = send(
        &h.state,
        signed("msg_b", NOW, r#"{"type":"build_started"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["action"], "none");
    assert_eq!(h.invalidations.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_replayed_delivery_gets_200_duplicate_and_is_not_acted_on_twice() {
    let h = harness();
    let body = r#"{"type":"deploy_ended"}"#;
    assert_eq!(
        send(&h.state, signed("msg_r", NOW, body)).await.0,
        StatusCode::ACCEPTED
    );
    // The same delivery a little later (a retry, or an attacker replaying it within the window).
    h.clock.store(NOW + 60, Ordering::SeqCst);
    let (status, answer) = send(&h.state, signed("msg_r", NOW, body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"status": "duplicate"}));
    assert_eq!(h.invalidations.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn every_signature_failure_is_401_with_the_same_body() {
    let h = harness();
    let body = r#"{"type":"deploy_ended"}"#;
    let wrong_secret = {
        let other = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let mut r = signed("msg_w", NOW, body);
        let sig = sign_standard(&other, "msg_w", NOW, body.as_bytes());
        r.headers_mut()
            .insert("webhook-signature", sig.parse().unwrap());
        r
    };
    let missing = Request::post("/hooks/deploy")
        .body(Body::from(body))
        .unwrap();
    let malformed = {
        let mut r = signed("msg_m", NOW, body);
        r.headers_mut()
            .insert("webhook-signature", "v1,".parse().unwrap());
        r
    };
    let tampered = {
        let mut r = signed("msg_t", NOW, body);
        *r.body_mut() = Body::from(r#"{"type":"deploy_ended","x":1}"#);
        r
    };
    let cases = [
        ("stale", signed("msg_s", NOW - 301, body)),
        ("future", signed("msg_f", NOW + 301, body)),
        ("wrong secret", wrong_secret),
        ("missing", missing),
        ("malformed", malformed),
        ("tampered", tampered),
    ];
    for (name, request) in cases {
        let (status, answer) = send(&h.state, request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(answer, json!({"error": "invalid signature"}), "{name}");
    }
    assert_eq!(h.invalidations.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_whether_declared_or_streamed() {
    let h = harness();
    let big = format!(r#"{{"type":"deploy_ended","pad":"{}"}}"#, "x".repeat(5000));
    let (status, answer) = send(&h.state, signed("msg_big", NOW, &big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer, json!({"error": "body too large"}));
    // A declared length that lies (small) does not let a big body through: the body is read
    // with the limit, not trusted.
    let mut request = signed("msg_lie", NOW, &big);
    request
        .headers_mut()
        .insert("content-length", "10".parse().unwrap());
    let (status, _) = send(&h.state, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Exactly at the limit is fine (and then judged on its signature).
    let exact = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4096 - 10));
    assert_eq!(exact.len(), 4096);
    assert_eq!(
        send(&h.state, signed("msg_exact", NOW, &exact)).await.0,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn a_validly_signed_body_that_is_not_json_is_400_and_not_remembered() {
    let h = harness();
    let (status, answer) = send(&h.state, signed("msg_nj", NOW, "type=deploy_ended")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer, json!({"error": "body is not JSON"}));
    assert!(
        h.state
            .replay
            .check_and_insert("msg_nj", NOW)
            .await
            .unwrap(),
        "a refused delivery was remembered"
    );
}

#[tokio::test]
async fn without_a_secret_the_endpoint_is_503_not_configured() {
    let mut h = harness();
    h.state.secret = None;
    let (status, answer) = send(&h.state, signed("msg_nc", NOW, "{}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer, json!({"error": "deploy hooks are not configured"}));
}

#[tokio::test]
async fn deploy_requested_triggers_the_hook_and_answers_with_renders_deploy_id() {
    let hook = FakeHook::start(vec![accepted("dep-from-hook")]).await;
    let h = harness();
    let state = h.state.clone().with_deploy_hook(fast_client(&hook.url));
    let (status, answer) = send(
        &state,
        signed("msg_dr", NOW, r#"{"type":"deploy_requested"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        answer,
        json!({"status": "accepted", "id": "msg_dr", "action": "trigger_deploy", "deploy_id": "dep-from-hook"})
    );
    assert_eq!(hook.requests(), 1);
    // Replayed: not triggered again.
    assert_eq!(
        send(
            &state,
            signed("msg_dr", NOW, r#"{"type":"deploy_requested"}"#)
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(hook.requests(), 1);
}

#[tokio::test]
async fn a_github_push_triggers_a_deploy() {
    let hook = FakeHook::start(vec![accepted("dep-gh")]).await;
    let state = harness().state.with_deploy_hook(fast_client(&hook.url));
    let body = r#"{"ref":"refs/heads/main"}"#;
    let secret = WebhookSecret::parse(SECRET).unwrap();
    let request = Request::post("/hooks/deploy")
        .header("X-Hub-Signature-256", sign_github(&secret, body.as_bytes()))
        .header("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .header("X-GitHub-Event", "push")
        .body(Body::from(body))
        .unwrap();
    let (status, answer) = send(&state, request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["deploy_id"], "dep-gh");
    // Without the delivery id there is nothing to recognise a replay by: refused.
    let request = Request::post("/hooks/deploy")
        .header("X-Hub-Signature-256", sign_github(&secret, body.as_bytes()))
        .header("X-GitHub-Event", "push")
        .body(Body::from(body))
        .unwrap();
    assert_eq!(send(&state, request).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(hook.requests(), 1);
}

#[tokio::test]
async fn a_failed_deploy_trigger_is_502_and_the_retry_is_acted_upon() {
    let hook = FakeHook::start(vec![
        Reply::Status(500, None, ""),
        Reply::Status(500, None, ""),
        accepted("dep-second-time"),
    ])
    .await;
    let state = harness().state.with_deploy_hook(fast_client(&hook.url));
    let body = r#"{"type":"deploy_requested"}"#;
    let (status, answer) = send(&state, signed("msg_fail", NOW, body)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(!answer.to_string().contains(HOOK_URL_KEY));
    // The sender retries the same delivery: the claim was released, so it is acted upon now.
    let (status, answer) = send(&state, signed("msg_fail", NOW, body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer["deploy_id"], "dep-second-time");
}

#[tokio::test]
async fn deploy_requested_without_a_hook_url_is_503_and_not_remembered() {
    let h = harness();
    let (status, answer) = send(
        &h.state,
        signed("msg_nohook", NOW, r#"{"type":"deploy_requested"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answer,
        json!({"error": "deploy hook URL is not configured"})
    );
    assert!(
        h.state
            .replay
            .check_and_insert("msg_nohook", NOW)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_full_replay_store_is_503_and_nothing_is_done() {
    let mut h = harness();
    h.state.replay = Arc::new(MemoryReplayStore::with_capacity(
        Duration::from_secs(300),
        1,
    ));
    assert_eq!(
        send(&h.state, signed("msg_a", NOW, r#"{"type":"deploy_ended"}"#))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    let (status, answer) = send(&h.state, signed("msg_b", NOW, r#"{"type":"deploy_ended"}"#)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer, json!({"error": "replay store unavailable"}));
    assert_eq!(h.invalidations.load(Ordering::SeqCst), 1);
}

#[test]
fn outcomes_are_counted_by_label() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let h = harness();
            send(&h.state, signed("msg_1", NOW, r#"{"type":"deploy_ended"}"#)).await;
            send(&h.state, signed("msg_1", NOW, r#"{"type":"deploy_ended"}"#)).await;
            send(&h.state, signed("msg_2", NOW - 1000, "{}")).await;
        })
    });
    let text = handle.render();
    assert!(
        text.contains(r#"render_deploy_hook_deliveries_total{outcome="accepted"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"render_deploy_hook_deliveries_total{outcome="duplicate"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"render_deploy_hook_deliveries_total{outcome="invalid_signature"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"render_deploy_hook_signature_failures_total{reason="timestamp_too_old"} 1"#
        ),
        "{text}"
    );
}
