//! The service's health report (`GET /health`) and liveness (`GET /livez`), with Render's
//! semantics: which database states are 200 and which are 503 under each `HEALTH_DB_POLICY`.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::time::Instant;

use super::cache::{Checked, HealthCache, Healthy, ProbeFailure, rfc3339};
use super::{DatabaseProbe, DbPolicy, HealthSettings, Invalidator, Lifecycle};

/// What one database probe found (the cached value behind `/health`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseCheck {
    /// Whether the database answered.
    pub up: bool,
    /// How long the probe took.
    pub latency: Duration,
    /// Why it did not answer: a short phrase without internals.
    pub error: Option<&'static str>,
}

impl Healthy for DatabaseCheck {
    fn is_healthy(&self) -> bool {
        self.up
    }
}

/// The overall status in `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Everything answers (200).
    Healthy,
    /// The database does not answer but the policy keeps the instance in service (200).
    Degraded,
    /// The instance should not receive traffic (503).
    Unhealthy,
    /// Shutdown has begun (503).
    Draining,
}

impl HealthStatus {
    /// The HTTP status `/health` answers with: 200 for healthy and degraded, 503 otherwise.
    pub(crate) fn http_status(self) -> StatusCode {
        match self {
            Self::Healthy | Self::Degraded => StatusCode::OK,
            Self::Unhealthy | Self::Draining => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// `database.status` in `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseStatus {
    /// The last probe got an answer.
    Up,
    /// The last probe failed, timed out, or none has finished yet.
    Down,
}

/// `database` in `/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseReport {
    /// Up or down.
    pub status: DatabaseStatus,
    /// Duration of the probe, in milliseconds.
    pub latency_ms: u64,
    /// Why it is down (a short phrase without internals); absent when up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

/// The body of `/health` (contract §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// Overall status; decides the HTTP status.
    pub status: HealthStatus,
    /// The database probe's result.
    pub database: DatabaseReport,
    /// When the probe finished, RFC 3339.
    #[serde(serialize_with = "serialize_str")]
    pub checked_at: Arc<str>,
    /// Whether the result came from the cache.
    pub cached: bool,
    /// Seconds since the probe finished.
    pub age_seconds: u64,
    /// `RENDER_GIT_COMMIT`, or the crate version.
    #[serde(serialize_with = "serialize_str")]
    pub version: Arc<str>,
    /// `RENDER_INSTANCE_ID`, or the host name.
    #[serde(serialize_with = "serialize_str")]
    pub instance: Arc<str>,
}

// serde serializes `Arc<str>` only with its `rc` feature; this is all we need of it.
fn serialize_str<S: serde::Serializer>(value: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value)
}

/// Who this instance is, for `/health`: version and instance name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// `RENDER_GIT_COMMIT`, or the crate version.
    pub version: Arc<str>,
    /// `RENDER_INSTANCE_ID`, or the host name.
    pub instance: Arc<str>,
}

impl ServiceInfo {
    /// From `RENDER_GIT_COMMIT` and `RENDER_INSTANCE_ID`, falling back to the crate version and
    /// the host name.
    pub fn from_env() -> Self {
        let var = |name| {
            std::env::var(name)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        Self::new(
            var("RENDER_GIT_COMMIT").as_deref(),
            var("RENDER_INSTANCE_ID").as_deref(),
        )
    }

    /// From Render's values when known (`None` for a variable that is unset).
    pub fn new(git_commit: Option<&str>, instance_id: Option<&str>) -> Self {
        Self {
            version: git_commit.unwrap_or(env!("CARGO_PKG_VERSION")).into(),
            instance: instance_id.map(Into::into).unwrap_or_else(hostname),
        }
    }
}

fn hostname() -> Arc<str> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
        .into()
}

/// Everything `/health` and `/livez` need; cheap to clone (one reference count: axum clones the
/// state for every request).
#[derive(Clone, Debug)]
pub struct HealthState {
    inner: Arc<Parts>,
}

#[derive(Debug)]
struct Parts {
    cache: HealthCache<DatabaseCheck>,
    policy: DbPolicy,
    probe_timeout: Duration,
    answered_once: Arc<AtomicBool>,
    lifecycle: Lifecycle,
    info: ServiceInfo,
}

impl HealthState {
    /// The health service over `probe`, cached per `settings`; registers its cache with
    /// `lifecycle` so that draining invalidates it.
    pub fn new(
        settings: &HealthSettings,
        probe: impl DatabaseProbe,
        lifecycle: Lifecycle,
        info: ServiceInfo,
    ) -> Self {
        let probe = Arc::new(probe);
        let answered_once = Arc::new(AtomicBool::new(false));
        let cache = HealthCache::new(settings, {
            let answered_once = Arc::clone(&answered_once);
            move || {
                let probe = Arc::clone(&probe);
                let answered_once = Arc::clone(&answered_once);
                async move {
                    let start = Instant::now();
                    let result = probe.ping().await;
                    let latency = start.elapsed();
                    match result {
                        Ok(()) => {
                            answered_once.store(true, Ordering::Release);
                            DatabaseCheck {
                                up: true,
                                latency,
                                error: None,
                            }
                        }
                        Err(error) => {
                            // The whole cause chain, for the log only; the report gets the phrase.
                            tracing::warn!(
                                error = %crate::telemetry::error_chain(&error),
                                "database health probe failed"
                            );
                            DatabaseCheck {
                                up: false,
                                latency,
                                error: Some(error.public_phrase()),
                            }
                        }
                    }
                }
            }
        });
        lifecycle.invalidate_on_drain(cache.invalidator());
        let inner = Arc::new(Parts {
            cache,
            policy: settings.db_policy,
            probe_timeout: settings.probe_timeout,
            answered_once,
            lifecycle,
            info,
        });
        Self { inner }
    }

    /// Forgets the cached result: for a deploy or restart webhook.
    pub fn invalidate(&self) {
        self.inner.cache.invalidate();
    }

    /// A handle that invalidates the cache, e.g. for the pool's connection-failure callback.
    pub fn invalidator(&self) -> Invalidator {
        self.inner.cache.invalidator()
    }

    /// A callback for the pool to call on a connection failure (invalidates the cache).
    pub fn pool_failure_hook(&self) -> impl Fn() + Send + Sync + 'static {
        let invalidator = self.invalidator();
        move || invalidator.invalidate()
    }

    /// The lifecycle flag this service reports.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    /// Who this instance is (version and instance name), as reported.
    pub fn info(&self) -> &ServiceInfo {
        &self.inner.info
    }

    /// Whether the database has answered a probe since start-up.
    pub fn database_answered_once(&self) -> bool {
        self.inner.answered_once.load(Ordering::Acquire)
    }

    /// The report of `/health`: from cache while fresh; while draining, the last known database
    /// state without a probe.
    pub async fn report(&self) -> HealthReport {
        if self.inner.lifecycle.is_draining() {
            return self.draining_report();
        }
        let checked = self.inner.cache.get().await;
        let database = self.database_report(&checked);
        let status = match (database.status, self.inner.policy) {
            (DatabaseStatus::Up, _) => HealthStatus::Healthy,
            (DatabaseStatus::Down, DbPolicy::Ignore) => HealthStatus::Degraded,
            (DatabaseStatus::Down, DbPolicy::Strict) => HealthStatus::Unhealthy,
            (DatabaseStatus::Down, DbPolicy::GateStartup) if self.database_answered_once() => {
                HealthStatus::Degraded
            }
            (DatabaseStatus::Down, DbPolicy::GateStartup) => HealthStatus::Unhealthy,
        };
        self.assemble(status, database, &checked)
    }

    fn draining_report(&self) -> HealthReport {
        match self.inner.cache.last() {
            Some(checked) => {
                let database = self.database_report(&checked);
                self.assemble(HealthStatus::Draining, database, &checked)
            }
            None => HealthReport {
                status: HealthStatus::Draining,
                database: DatabaseReport {
                    status: DatabaseStatus::Down,
                    latency_ms: 0,
                    error: Some("not checked yet"),
                },
                checked_at: rfc3339(time::OffsetDateTime::now_utc()).into(),
                cached: false,
                age_seconds: 0,
                version: Arc::clone(&self.inner.info.version),
                instance: Arc::clone(&self.inner.info.instance),
            },
        }
    }

    fn database_report(&self, checked: &Checked<DatabaseCheck>) -> DatabaseReport {
        match &checked.result {
            Ok(check) => DatabaseReport {
                status: if check.up {
                    DatabaseStatus::Up
                } else {
                    DatabaseStatus::Down
                },
                latency_ms: millis(check.latency),
                error: check.error,
            },
            Err(ProbeFailure::TimedOut(timeout)) => DatabaseReport {
                status: DatabaseStatus::Down,
                latency_ms: millis(*timeout),
                error: Some("database did not answer in time"),
            },
            Err(ProbeFailure::Aborted) => DatabaseReport {
                status: DatabaseStatus::Down,
                latency_ms: millis(self.inner.probe_timeout),
                error: Some("health probe failed"),
            },
        }
    }

    fn assemble(
        &self,
        status: HealthStatus,
        database: DatabaseReport,
        checked: &Checked<DatabaseCheck>,
    ) -> HealthReport {
        HealthReport {
            status,
            database,
            checked_at: Arc::clone(checked.checked_at_rfc3339()),
            cached: checked.cached,
            age_seconds: checked.age_seconds(),
            version: Arc::clone(&self.inner.info.version),
            instance: Arc::clone(&self.inner.info.instance),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `GET /health` and `GET /livez`, to merge into the service's router.
pub fn router(state: HealthState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/livez", get(livez))
        .with_state(state)
}

const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

async fn health(State(state): State<HealthState>) -> Response {
    let report = state.report().await;
    let Some(body) = body_of(&report) else {
        // Serializing plain strings and numbers cannot fail; answer as a failed check would.
        return uncached(StatusCode::SERVICE_UNAVAILABLE, ().into_response());
    };
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(header::CONTENT_TYPE, JSON);
    uncached(report.status.http_status(), response)
}

/// `response` with `status` and `Cache-Control: no-store`: a proxy or browser must never answer
/// a probe from its own cache (and a draining 503 must reach the load balancer).
///
/// Set on the response directly rather than through axum's `(status, [(name, value)], body)`,
/// which converts each pair with `TryInto` and checks it (callgrind: ~70 instructions per
/// request on `/livez`).
fn uncached(status: StatusCode, mut response: Response) -> Response {
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, NO_STORE);
    response
}

/// `report` as JSON: the body this thread wrote last when the report is the same, else a new
/// one (kept for next time).
///
/// A cached report changes once a second (`age_seconds`) or when the cache is refreshed, and
/// a busy instance answers it thousands of times in between: serializing it each time was a
/// measurable share of a cached `/health`. The report is the whole key (equal reports give
/// equal bodies), and each thread keeps its own, so that no other thread's answers touch it.
fn body_of(report: &HealthReport) -> Option<Bytes> {
    thread_local! {
        static LAST: RefCell<Option<(HealthReport, Bytes)>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        // Only this function borrows it, and it does not call itself; a failed borrow would
        // just go without the kept body.
        let Ok(mut last) = last.try_borrow_mut() else {
            return serialize(report);
        };
        if let Some((kept, body)) = last.as_ref()
            && kept == report
        {
            return Some(body.clone());
        }
        let body = serialize(report)?;
        *last = Some((report.clone(), body.clone()));
        Some(body)
    })
}

fn serialize(report: &HealthReport) -> Option<Bytes> {
    // The report is about 250 bytes: one allocation, no growth.
    let mut body = Vec::with_capacity(384);
    serde_json::to_writer(&mut body, report).ok()?;
    Some(Bytes::from(body))
}

async fn livez(State(state): State<HealthState>) -> Response {
    let (status, body) = if state.inner.lifecycle.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ok")
    };
    uncached(status, body.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(age_seconds: u64, instance: &str) -> HealthReport {
        HealthReport {
            status: HealthStatus::Healthy,
            database: DatabaseReport {
                status: DatabaseStatus::Up,
                latency_ms: 3,
                error: None,
            },
            checked_at: "2026-12-01T00:00:00.000000Z".into(),
            cached: true,
            age_seconds,
            version: "1.2.3".into(),
            instance: instance.into(),
        }
    }

    #[test]
    fn an_equal_report_reuses_the_body_and_any_change_makes_a_new_one() {
        let first = report(7, "a");
        let body = body_of(&first).unwrap();
        assert_eq!(body, serde_json::to_vec(&first).unwrap());
        // The same report, even as another value: the same bytes, not serialized again.
        let again = body_of(&report(7, "a")).unwrap();
        assert_eq!(again.as_ptr(), body.as_ptr());
        // A second later, or any other field: the body says so.
        for changed in [report(8, "a"), report(7, "b")] {
            let body = body_of(&changed).unwrap();
            assert_eq!(body, serde_json::to_vec(&changed).unwrap());
        }
        let mut draining = report(8, "b");
        draining.status = HealthStatus::Draining;
        let body = body_of(&draining).unwrap();
        assert!(
            std::str::from_utf8(&body)
                .unwrap()
                .contains("\"status\":\"draining\"")
        );
    }
}
