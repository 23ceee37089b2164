//! The service's own endpoints besides health and hooks: `/` (one pooled query) and `/metrics`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::error_body::json_error;
use super::request_metrics::RequestMetrics;
use crate::pool::PoolManager;

/// What `/` needs.
#[derive(Clone)]
pub(crate) struct RootState {
    /// The pool the query goes through.
    pub pool: Arc<PoolManager>,
    /// `RENDER_SERVICE_NAME`, or the crate name.
    pub service: String,
    /// `RENDER_GIT_COMMIT`, or the crate version.
    pub version: String,
    /// `RENDER_INSTANCE_ID`, or the host name.
    pub instance: String,
}

/// The body of `GET /`, serialised from borrowed fields (no intermediate JSON value); fields in
/// the order `json!` gave them.
#[derive(serde::Serialize)]
struct Root<'a> {
    database_time: &'a str,
    instance: &'a str,
    service: &'a str,
    version: &'a str,
}

/// The query of `GET /`, formatted by the server so the answer needs no date type on our side.
const ROOT_SQL: &str =
    r#"SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#;

/// `GET /`: the example of a pooled query, one round trip through the pool.
pub async fn root(State(state): State<RootState>) -> Response {
    let conn = match state.pool.get_connection().await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "GET /: no database connection");
            return json_error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
        }
    };
    // `query_typed_one`: the unnamed statement, parsed, bound and run in one round trip.
    // `query_one` with SQL text would prepare a named statement first and wait for its
    // description (a second round trip), and is not safe through PgBouncer in transaction mode.
    match conn.query_typed_one(ROOT_SQL, &[]).await {
        Ok(row) => {
            let time: &str = row.get(0);
            Json(Root {
                database_time: time,
                instance: &state.instance,
                service: &state.service,
                version: &state.version,
            })
            .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "GET /: query failed");
            json_error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}

/// What `/metrics` needs.
#[derive(Clone)]
pub(crate) struct MetricsState {
    /// The Prometheus renderer.
    pub handle: PrometheusHandle,
    /// The HTTP metrics, counted outside the recorder.
    pub requests: RequestMetrics,
    /// SHA-256 of `METRICS_TOKEN`: compared digest to digest, so the comparison's timing
    /// says nothing about the token.
    pub token_digest: [u8; 32],
    /// Refreshes gauges (pool figures, shutdown state) just before rendering.
    pub refresh: Arc<dyn Fn() + Send + Sync>,
}

impl MetricsState {
    /// Guards `/metrics` with `token`.
    pub fn new(
        handle: PrometheusHandle,
        requests: RequestMetrics,
        token: &SecretString,
        refresh: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        Self {
            handle,
            requests,
            token_digest: Sha256::digest(token.expose_secret()).into(),
            refresh,
        }
    }
}

/// `GET /metrics`: Prometheus text for `Authorization: Bearer <METRICS_TOKEN>`, else 401.
pub async fn metrics(State(state): State<MetricsState>, headers: HeaderMap) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| <[u8; 32]>::from(Sha256::digest(t.trim())));
    if presented != Some(state.token_digest) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(serde_json::json!({ "error": "unauthorized" })),
        )
            .into_response();
    }
    (state.refresh)();
    let mut text = state.handle.render();
    state.requests.render(&mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
