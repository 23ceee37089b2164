//! The `POST /hooks/deploy` endpoint: signed deliveries, replay protection, actions.
//!
//! The order of the checks is the contract (§4.1): not configured → 503; body over
//! `WEBHOOK_MAX_BODY` → 413 (the body is read with a limit, never whole); signature over the raw
//! bytes → 401 for every failure alike (the precise reason goes to the log and to the
//! `render_deploy_hook_signature_failures_total{reason}` counter); body not JSON → 400; delivery
//! id seen before → 200 `duplicate`; otherwise the action runs and the answer is 202.
//!
//! An id is claimed in the replay store *before* the action runs, so that two instances receiving
//! one delivery at the same moment cannot both act; if the action fails (the deploy hook could
//! not be reached) the claim is released and the answer is 502, so the sender's retry is acted
//! upon. See [`crate::replay`] for what that means when a process dies mid-action.

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

use crate::deploy_hook::DeployHookClient;
use crate::replay::ReplayStore;
use crate::signature::{self, Scheme, VerifyError, WebhookSecret};

/// The path of the endpoint.
pub const PATH: &str = "/hooks/deploy";

/// The counter of deliveries by outcome (`accepted`, `duplicate`, `invalid_signature`,
/// `body_too_large`, `bad_body`, `not_json`, `not_configured`, `action_failed`,
/// `store_unavailable`).
pub const DELIVERIES_METRIC: &str = "render_deploy_hook_deliveries_total";
/// The counter of refused signatures by precise reason (see [`VerifyError::reason`]).
pub const SIGNATURE_FAILURES_METRIC: &str = "render_deploy_hook_signature_failures_total";

/// Render event types that concern a deploy or a restart: each invalidates the health cache,
/// because the instance's dependencies (or the instance itself) may have changed under it.
pub const INVALIDATING_EVENTS: &[&str] = &[
    "deploy_started",
    "deploy_ended",
    "zero_downtime_redeploy_started",
    "zero_downtime_redeploy_ended",
    "server_restarted",
    "server_available",
    "server_failed",
    "service_resumed",
];

/// The event type that asks for a deploy through `RENDER_DEPLOY_HOOK_URL`.
pub const DEPLOY_REQUESTED: &str = "deploy_requested";

/// The settings are configuration's ([`crate::config`]); re-exported where they are used.
pub use crate::config::HookSettings;

/// The current time as Unix seconds; injectable so tests control it.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock as a [`Clock`].
pub fn system_clock() -> Clock {
    Arc::new(unix_now)
}

/// The current Unix time in seconds (0 if the system clock is before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Everything the endpoint needs.
#[derive(Clone)]
pub struct HookState {
    /// The signing secret; `None` answers 503 "deploy hooks are not configured".
    pub secret: Option<Arc<WebhookSecret>>,
    /// Tolerance, body limit, store kind.
    pub settings: HookSettings,
    /// Where delivery ids are remembered.
    pub replay: Arc<dyn ReplayStore>,
    /// Called for a Render deploy/restart event (the service wires the health cache's invalidate).
    pub on_deploy_event: Arc<dyn Fn() + Send + Sync>,
    /// Render's deploy hook, for `deploy_requested` and GitHub `push`; `None` answers 503 to those.
    /// Build it with [`RetryPolicy::for_webhook_response`](crate::deploy_hook::RetryPolicy::for_webhook_response)
    /// so the answer comes within Render's 15-second delivery timeout.
    pub deploy_hook: Option<DeployHookClient>,
    /// The clock.
    pub clock: Clock,
}

impl HookState {
    /// State with no deploy hook and the system clock.
    pub fn new(
        secret: Option<WebhookSecret>,
        settings: HookSettings,
        replay: Arc<dyn ReplayStore>,
        on_deploy_event: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        Self {
            secret: secret.map(Arc::new),
            settings,
            replay,
            on_deploy_event,
            deploy_hook: None,
            clock: system_clock(),
        }
    }

    /// Sets the deploy hook client.
    pub fn with_deploy_hook(mut self, client: DeployHookClient) -> Self {
        self.deploy_hook = Some(client);
        self
    }

    /// Replaces the clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

impl fmt::Debug for HookState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookState")
            .field("configured", &self.secret.is_some())
            .field("settings", &self.settings)
            .field("deploy_hook", &self.deploy_hook.as_ref().map(|c| c.url()))
            .finish_non_exhaustive()
    }
}

/// What a delivery asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Invalidate the health cache (a Render deploy/restart event).
    InvalidateHealthCache,
    /// Start a deploy through the deploy hook (`deploy_requested`, GitHub `push`).
    TriggerDeploy,
    /// Nothing to do (another event type); the delivery is still accepted and remembered.
    None,
}

impl Action {
    /// The `action` field of the 202 answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::InvalidateHealthCache => "invalidate_health_cache",
            Action::TriggerDeploy => "trigger_deploy",
            Action::None => "none",
        }
    }

    /// The action for a verified delivery.
    pub fn for_delivery(scheme: Scheme, headers: &HeaderMap, body: &serde_json::Value) -> Self {
        match scheme {
            Scheme::Standard => match body.get("type").and_then(|t| t.as_str()) {
                Some(DEPLOY_REQUESTED) => Action::TriggerDeploy,
                Some(t) if INVALIDATING_EVENTS.contains(&t) => Action::InvalidateHealthCache,
                _ => Action::None,
            },
            Scheme::Github => {
                let event = headers
                    .get(signature::GITHUB_EVENT)
                    .and_then(|v| v.to_str().ok());
                if event == Some("push") {
                    Action::TriggerDeploy
                } else {
                    Action::None
                }
            }
        }
    }
}

/// The router serving `POST /hooks/deploy`, to merge into the service's app.
pub fn router(state: HookState) -> Router {
    Router::new()
        .route(PATH, post(deliver))
        .with_state(Arc::new(state))
}

fn count(outcome: &'static str) {
    metrics::counter!(DELIVERIES_METRIC, "outcome" => outcome).increment(1);
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn error(status: StatusCode, outcome: &'static str, message: &str) -> Response {
    count(outcome);
    answer(status, json!({ "error": message }))
}

async fn deliver(State(state): State<Arc<HookState>>, headers: HeaderMap, body: Body) -> Response {
    let Some(secret) = state.secret.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_configured",
            "deploy hooks are not configured",
        );
    };

    let max = state.settings.max_body;
    // A declared length over the limit is refused before a byte of the body is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return too_large(max);
    }
    let body = match Limited::new(body, max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(max),
        Err(e) => {
            tracing::warn!(error = %e, "deploy hook: reading the body failed");
            return error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "could not read the body",
            );
        }
    };

    let now = (state.clock)();
    let verified = signature::verify(&secret, &headers, &body, now, state.settings.tolerance)
        .and_then(|v| match v.id.map(str::to_owned) {
            Some(id) => Ok((v, id)),
            // GitHub's delivery id is optional for offline `verify`, required here: without it
            // a replay could not be recognised.
            None => Err(VerifyError::MissingHeader(signature::GITHUB_DELIVERY)),
        });
    let (verified, id) = match verified {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(reason = e.reason(), error = %e, "deploy hook: delivery refused");
            metrics::counter!(SIGNATURE_FAILURES_METRIC, "reason" => e.reason()).increment(1);
            return error(
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                "invalid signature",
            );
        }
    };

    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(&body) else {
        tracing::warn!(id = %id, "deploy hook: signed body is not JSON");
        return error(StatusCode::BAD_REQUEST, "not_json", "body is not JSON");
    };
    let action = Action::for_delivery(verified.scheme, &headers, &payload);
    if action == Action::TriggerDeploy && state.deploy_hook.is_none() {
        // Checked before the claim, so the delivery can be retried once the URL is set.
        tracing::warn!(id = %id, "deploy hook: deploy requested but RENDER_DEPLOY_HOOK_URL is not set");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_configured",
            "deploy hook URL is not configured",
        );
    }

    match state.replay.check_and_insert(&id, now).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(id = %id, "deploy hook: duplicate delivery, not acted upon");
            count("duplicate");
            return answer(StatusCode::OK, json!({ "status": "duplicate" }));
        }
        Err(e) => {
            tracing::error!(id = %id, error = %e, source = ?std::error::Error::source(&e).map(ToString::to_string), "deploy hook: replay store unavailable");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "replay store unavailable",
            );
        }
    }

    let mut deploy_id = None;
    match action {
        Action::InvalidateHealthCache => (state.on_deploy_event)(),
        Action::TriggerDeploy => {
            let Some(client) = state.deploy_hook.as_ref() else {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_configured",
                    "deploy hook URL is not configured",
                );
            };
            match client.trigger().await {
                Ok(triggered) => deploy_id = triggered.deploy_id,
                Err(e) => {
                    tracing::error!(id = %id, error = %e, "deploy hook: triggering the deploy failed");
                    if let Err(release) = state.replay.release(&id).await {
                        tracing::error!(id = %id, error = %release, "deploy hook: could not release the claim; a retry will be answered as duplicate");
                    }
                    return error(
                        StatusCode::BAD_GATEWAY,
                        "action_failed",
                        "triggering the deploy failed",
                    );
                }
            }
        }
        Action::None => {}
    }

    tracing::info!(id = %id, scheme = verified.scheme.as_str(), action = action.as_str(), deploy_id = ?deploy_id, "deploy hook: delivery accepted");
    count("accepted");
    let mut body = json!({ "status": "accepted", "id": id, "action": action.as_str() });
    if let Some(deploy_id) = deploy_id {
        body["deploy_id"] = json!(deploy_id);
    }
    answer(StatusCode::ACCEPTED, body)
}

fn too_large(max: usize) -> Response {
    tracing::warn!(max_body = max, "deploy hook: body over WEBHOOK_MAX_BODY");
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "body too large",
    )
}
