//! `/health` and `/livez` through the router, without a socket: the policy matrix, the report's
//! fields, and draining.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use render_deploy::health::{
    self, DbPolicy, HealthSettings, HealthState, Lifecycle, ProbeError, ServiceInfo,
};
use serde_json::Value;
use tower::ServiceExt;

const TTL: Duration = Duration::from_secs(60);

/// A database that is up or down at the test's command, counting the probes it receives.
#[derive(Clone)]
struct Database {
    up: Arc<AtomicBool>,
    pings: Arc<AtomicUsize>,
}

impl Database {
    fn new(up: bool) -> Self {
        Self {
            up: Arc::new(AtomicBool::new(up)),
            pings: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    fn pings(&self) -> usize {
        self.pings.load(Ordering::SeqCst)
    }

    fn probe(
        &self,
    ) -> impl Fn() -> std::future::Ready<Result<(), ProbeError>> + Send + Sync + use<> {
        let db = self.clone();
        move || {
            db.pings.fetch_add(1, Ordering::SeqCst);
            std::future::ready(if db.up.load(Ordering::SeqCst) {
                Ok(())
            } else {
                // What a driver might say: it must not reach the response.
                let cause = std::io::Error::other(
                    "connect to 10.0.0.7:5432 as admin password=hunter2 refused",
                );
                Err(ProbeError::NoConnection(Some(Box::new(cause))))
            })
        }
    }
}

fn settings(policy: DbPolicy) -> HealthSettings {
    HealthSettings {
        cache_ttl: TTL,
        db_policy: policy,
        ..HealthSettings::default()
    }
}

struct Service {
    db: Database,
    state: HealthState,
    lifecycle: Lifecycle,
}

impl Service {
    fn new(policy: DbPolicy, db_up: bool) -> Self {
        let db = Database::new(db_up);
        let lifecycle = Lifecycle::new();
        let state = HealthState::new(
            &settings(policy),
            db.probe(),
            lifecycle.clone(),
            ServiceInfo::new(Some("0123abc"), Some("srv-test-instance")),
        );
        Self {
            db,
            state,
            lifecycle,
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let response = health::router(self.state.clone())
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, headers, body.to_vec())
    }

    async fn health(&self) -> (StatusCode, Value) {
        let (status, headers, body) = self.get("/health").await;
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        (status, serde_json::from_slice(&body).expect("JSON body"))
    }
}

#[tokio::test]
async fn the_policy_matrix_decides_status_and_code() {
    tokio::time::pause();
    use DbPolicy::*;
    // (policy, database answered before?, database up now?) -> (status, code)
    let matrix = [
        (GateStartup, false, true, "healthy", 200),
        (GateStartup, false, false, "unhealthy", 503),
        (GateStartup, true, true, "healthy", 200),
        (GateStartup, true, false, "degraded", 200),
        (Strict, false, true, "healthy", 200),
        (Strict, false, false, "unhealthy", 503),
        (Strict, true, true, "healthy", 200),
        (Strict, true, false, "unhealthy", 503),
        (Ignore, false, true, "healthy", 200),
        (Ignore, false, false, "degraded", 200),
        (Ignore, true, true, "healthy", 200),
        (Ignore, true, false, "degraded", 200),
    ];
    for (policy, answered_before, up, status, code) in matrix {
        let service = Service::new(policy, true);
        if answered_before {
            assert_eq!(service.health().await.0, StatusCode::OK);
            assert!(service.state.database_answered_once());
            // Let the healthy result expire, so the next request probes.
            tokio::time::advance(TTL).await;
        }
        service.db.set_up(up);

        let (got_code, body) = service.health().await;

        let case = format!("{policy:?}, answered before: {answered_before}, up: {up}");
        assert_eq!(body["status"], status, "{case}");
        assert_eq!(got_code.as_u16(), code, "{case}");
        assert_eq!(
            body["database"]["status"],
            if up { "up" } else { "down" },
            "{case}"
        );
        assert_eq!(body["cached"], false, "{case}: the request that probed");
    }
}

#[tokio::test]
async fn the_report_has_every_field_of_the_contract() {
    tokio::time::pause();
    let service = Service::new(DbPolicy::GateStartup, true);

    let (code, first) = service.health().await;
    tokio::time::advance(Duration::from_secs(7)).await;
    let (_, second) = service.health().await;

    assert_eq!(code, StatusCode::OK);
    assert_eq!(first["status"], "healthy");
    assert_eq!(first["database"]["status"], "up");
    assert!(first["database"]["latency_ms"].is_u64());
    assert!(first["database"].get("error").is_none(), "no error when up");
    assert_eq!(first["version"], "0123abc");
    assert_eq!(first["instance"], "srv-test-instance");
    assert_eq!(first["cached"], false);
    assert_eq!(first["age_seconds"], 0);
    let checked_at = first["checked_at"].as_str().expect("checked_at");
    // RFC 3339 in UTC: `2025-01-31T12:34:56.789Z`.
    let (date, clock) = checked_at.split_once('T').expect("date and time");
    assert_eq!(date.len(), 10, "{checked_at}");
    assert!(clock.ends_with('Z') && clock.len() >= 9, "{checked_at}");

    assert_eq!(second["cached"], true);
    assert_eq!(second["age_seconds"], 7);
    assert_eq!(second["checked_at"], first["checked_at"]);
    assert_eq!(service.db.pings(), 1);
}

#[tokio::test]
async fn a_database_error_is_a_short_phrase_without_internals() {
    let service = Service::new(DbPolicy::Strict, false);

    let (code, headers, body) = service.get("/health").await;

    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let text = String::from_utf8(body).expect("UTF-8");
    for internal in ["10.0.0.7", "5432", "admin", "hunter2", "refused"] {
        assert!(!text.contains(internal), "{internal:?} leaked into {text}");
    }
    let body: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        body["database"]["error"],
        "no database connection available"
    );
}

#[tokio::test]
async fn a_hanging_database_makes_health_answer_503_within_the_probe_timeout() {
    tokio::time::pause();
    let lifecycle = Lifecycle::new();
    let settings = settings(DbPolicy::Strict);
    let state = HealthState::new(
        &settings,
        std::future::pending::<Result<(), ProbeError>>,
        lifecycle,
        ServiceInfo::new(None, None),
    );
    let start = tokio::time::Instant::now();

    let response = health::router(state)
        .oneshot(
            Request::get("/health")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");

    assert!(start.elapsed() <= settings.probe_timeout + Duration::from_millis(1));
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(body["database"]["error"], "database did not answer in time");
    assert_eq!(body["database"]["latency_ms"], 2000);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn livez_answers_ok_without_touching_the_database() {
    let service = Service::new(DbPolicy::GateStartup, false);

    let (code, _, body) = service.get("/livez").await;

    assert_eq!(code, StatusCode::OK);
    assert_eq!(body, b"ok");
    assert_eq!(service.db.pings(), 0);
}

#[tokio::test]
async fn draining_makes_both_endpoints_answer_503_without_a_probe() {
    tokio::time::pause();
    let service = Service::new(DbPolicy::Ignore, true);
    let (_, before) = service.health().await;
    assert_eq!(service.db.pings(), 1);

    service.lifecycle.start_draining();
    let (code, body) = service.health().await;
    let (livez, _, _) = service.get("/livez").await;

    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "draining");
    assert_eq!(body["database"]["status"], "up", "the last known state");
    assert_eq!(body["checked_at"], before["checked_at"]);
    assert_eq!(livez, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        service.db.pings(),
        1,
        "draining bypasses the cache and probes nothing"
    );
}

#[tokio::test]
async fn a_deploy_event_or_a_pool_failure_makes_the_next_health_request_probe() {
    tokio::time::pause();
    let service = Service::new(DbPolicy::GateStartup, true);
    service.health().await;
    assert_eq!(service.health().await.1["cached"], true);

    service.state.invalidate(); // the deploy webhook
    assert_eq!(service.health().await.1["cached"], false);
    assert_eq!(service.db.pings(), 2);

    service.db.set_up(false);
    let on_pool_failure = service.state.pool_failure_hook();
    on_pool_failure();
    let (code, body) = service.health().await;
    assert_eq!(body["cached"], false);
    assert_eq!(body["status"], "degraded", "answered once, then failed");
    assert_eq!(code, StatusCode::OK);
    assert_eq!(service.db.pings(), 3);
}

/// The same answer as a fresh serialization of the report gives (`HealthState::report`).
async fn assert_answer_is_the_report(service: &Service) -> Value {
    let (status, _, body) = service.get("/health").await;
    let report = service.state.report().await;
    assert_eq!(body, serde_json::to_vec(&report).unwrap());
    let expected = match report.status {
        health::HealthStatus::Healthy | health::HealthStatus::Degraded => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    assert_eq!(status, expected);
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_cached_answer_follows_its_age_a_new_probe_draining_and_its_own_service() {
    // Each thread keeps the body it wrote last for a cached report; on one thread (this test's
    // runtime), every answer must still be the report of its moment and of its own service.
    let service = Service::new(DbPolicy::Strict, true);
    let other = {
        // Up too: its result differs from the first service's by the service alone.
        let db = Database::new(true);
        let state = HealthState::new(
            &settings(DbPolicy::Strict),
            db.probe(),
            Lifecycle::new(),
            ServiceInfo::new(Some("other-version"), Some("srv-other")),
        );
        Service {
            db,
            state,
            lifecycle: Lifecycle::new(),
        }
    };
    assert_eq!(service.health().await.1["cached"], false);
    let first = assert_answer_is_the_report(&service).await;
    assert_eq!(
        (first["cached"].clone(), first["age_seconds"].clone()),
        (true.into(), 0.into())
    );
    // The other service in between, on the same thread: its own body, not the one kept.
    other.health().await;
    let theirs = assert_answer_is_the_report(&other).await;
    assert_eq!(theirs["instance"], "srv-other");
    assert_eq!(theirs["version"], "other-version");
    assert_eq!(assert_answer_is_the_report(&service).await, first);

    // A second later the age says so.
    tokio::time::advance(Duration::from_millis(1500)).await;
    let later = assert_answer_is_the_report(&service).await;
    assert_eq!(later["age_seconds"], 1);
    assert_eq!(later["checked_at"], first["checked_at"]);

    // A new probe (after an invalidation) at the same age as the kept one: a new body.
    service.db.set_up(false);
    service.state.invalidate();
    tokio::time::advance(Duration::from_millis(1500)).await;
    assert_eq!(service.health().await.1["cached"], false);
    tokio::time::advance(Duration::from_secs(1)).await;
    let failed = assert_answer_is_the_report(&service).await;
    assert_eq!(
        (failed["status"].clone(), failed["age_seconds"].clone()),
        ("unhealthy".into(), 1.into())
    );
    assert_eq!(service.db.pings(), 2);

    // Draining: never the kept answer.
    service.lifecycle.start_draining();
    let (code, body) = service.health().await;
    assert_eq!(
        (code, body["status"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, "draining".into())
    );
}
