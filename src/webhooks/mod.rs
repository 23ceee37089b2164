//! Receiving webhooks: the `POST /hooks/deploy` endpoint (signed deliveries, replay protection,
//! actions). Calling Render is [`crate::render_api`]'s job, not this one's.
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
//!
//! What the headers alone can settle is settled before a byte of the body is read (`admit`),
//! and the answer closes the connection instead of draining it: a declared `Content-Length` over
//! the limit (413), and a missing or malformed signature header or a timestamp outside the
//! tolerance (401) — none of which any body could redeem, and all of which anyone can send
//! without the secret. A delivery that passes is read within the in-flight budget
//! ([`budget`], `WEBHOOK_MAX_INFLIGHT`): when the deliveries being read already hold it, the
//! answer is 503 with `Retry-After`, unread.
//!
//! The handler (`admit`, then `receive`) reads as that order, one step a line; every refusal is
//! one variant of `Refusal`, whose status, JSON message, metric label and log line are declared
//! once (`refusal`).

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

pub mod budget;
mod refusal;

pub use crate::clock::Clock;
pub(crate) use crate::clock::system_clock;
use crate::render_api::deploy_hook::DeployHookClient;
use crate::replay::ReplayStore;
use crate::signature::{self, Scheme, VerifyError, WebhookSecret};
use budget::{BodyBudget, BodyError};
use refusal::Refusal;

/// The path of the endpoint.
pub const PATH: &str = "/hooks/deploy";

/// The counter of deliveries by outcome (`accepted`, `duplicate`, `invalid_signature`,
/// `body_too_large`, `over_budget`, `bad_body`, `not_json`, `not_configured`, `action_failed`,
/// `store_unavailable`).
pub(crate) const DELIVERIES_METRIC: &str = "render_deploy_hook_deliveries_total";
/// The counter of refused signatures by precise reason (see [`VerifyError::reason`]).
pub(crate) const SIGNATURE_FAILURES_METRIC: &str = "render_deploy_hook_signature_failures_total";

/// Render event types that concern a deploy or a restart: each invalidates the health cache,
/// because the instance's dependencies (or the instance itself) may have changed under it.
pub(crate) const INVALIDATING_EVENTS: &[&str] = &[
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
pub(crate) const DEPLOY_REQUESTED: &str = "deploy_requested";

/// The settings are configuration's ([`crate::config`]); re-exported where they are used.
pub use crate::config::HookSettings;

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
    /// Build it with [`RetryPolicy::for_webhook_response`](crate::render_api::RetryPolicy::for_webhook_response)
    /// so the answer comes within Render's 15-second delivery timeout.
    pub deploy_hook: Option<DeployHookClient>,
    /// The clock.
    pub clock: Clock,
    /// Bytes of bodies being read, all deliveries together (`WEBHOOK_MAX_INFLIGHT`).
    pub budget: Arc<BodyBudget>,
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
            budget: BodyBudget::new(settings.max_inflight),
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
    pub(crate) fn for_delivery(
        scheme: Scheme,
        headers: &HeaderMap,
        body: &serde_json::Value,
    ) -> Self {
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

/// A delivery that was not refused.
#[derive(Debug)]
enum Answer {
    /// Acted upon: 202.
    Accepted {
        id: String,
        scheme: Scheme,
        action: Action,
        deploy_id: Option<String>,
    },
    /// Seen before: 200, not acted upon again.
    Duplicate { id: String },
}

impl Answer {
    fn record(&self) {
        let outcome = match self {
            Answer::Accepted {
                id,
                scheme,
                action,
                deploy_id,
            } => {
                tracing::info!(id = %id, scheme = scheme.as_str(), action = action.as_str(), deploy_id = ?deploy_id, "deploy hook: delivery accepted");
                "accepted"
            }
            Answer::Duplicate { id } => {
                tracing::info!(id = %id, "deploy hook: duplicate delivery, not acted upon");
                "duplicate"
            }
        };
        metrics::counter!(DELIVERIES_METRIC, "outcome" => outcome).increment(1);
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Answer::Accepted {
                id,
                action,
                deploy_id,
                ..
            } => {
                let mut body = json!({ "status": "accepted", "id": id, "action": action.as_str() });
                if let Some(deploy_id) = deploy_id {
                    body["deploy_id"] = json!(deploy_id);
                }
                (StatusCode::ACCEPTED, axum::Json(body)).into_response()
            }
            Answer::Duplicate { .. } => {
                (StatusCode::OK, axum::Json(json!({ "status": "duplicate" }))).into_response()
            }
        }
    }
}

/// Every answer is logged and counted here, once.
async fn deliver(State(state): State<Arc<HookState>>, headers: HeaderMap, body: Body) -> Response {
    let (result, body_unread) = match admit(&state, &headers) {
        Ok(admitted) => {
            let result = receive(&state, &headers, admitted, body).await;
            let unread = matches!(&result, Err(r) if r.leaves_body_unread());
            (result, unread)
        }
        Err(refusal) => (Err(refusal), true),
    };
    let mut response = match result {
        Ok(answer) => {
            answer.record();
            answer.into_response()
        }
        Err(refusal) => {
            refusal.record();
            refusal.into_response()
        }
    };
    if body_unread {
        // hyper then closes the connection after the answer instead of reading (up to a
        // megabyte of) body that nobody wants, to reuse the connection.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A delivery whose headers leave it a chance.
struct Admitted<'s> {
    secret: &'s WebhookSecret,
    declared: Option<u64>,
    now: i64,
}

/// The checks that need only the headers, in the contract's order: configured, declared length
/// within the limit, signature headers present and well-formed with a timestamp in tolerance.
fn admit<'s>(state: &'s HookState, headers: &HeaderMap) -> Result<Admitted<'s>, Refusal> {
    let secret = state.secret.as_deref().ok_or(Refusal::NotConfigured)?;
    let max = state.settings.max_body;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(Refusal::BodyTooLarge { max });
    }
    let now = (state.clock)();
    let scheme = signature::check_headers(headers, now, state.settings.tolerance)
        .map_err(Refusal::InvalidSignature)?;
    if scheme == Scheme::Github && !headers.contains_key(signature::GITHUB_DELIVERY) {
        return Err(missing_github_delivery());
    }
    Ok(Admitted {
        secret,
        declared,
        now,
    })
}

/// The contract's checks (§4.1) that need the body, in its order; the first that fails is the
/// answer.
async fn receive(
    state: &HookState,
    headers: &HeaderMap,
    admitted: Admitted<'_>,
    body: Body,
) -> Result<Answer, Refusal> {
    let Admitted {
        secret,
        declared,
        now,
    } = admitted;
    // `_held` keeps the body's bytes counted in the budget for as long as they are held.
    let (body, _held) = read_body(state, declared, body).await?;
    let (scheme, id) = verify(secret, headers, &body, now, state.settings.tolerance)?;
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return Err(Refusal::NotJson { id });
    };
    let action = Action::for_delivery(scheme, headers, &payload);
    // Checked before the claim, so the delivery can be retried once the URL is set.
    let deploy_hook = match (action, &state.deploy_hook) {
        (Action::TriggerDeploy, None) => return Err(Refusal::DeployHookUrlNotConfigured { id }),
        (_, client) => client.as_ref(),
    };
    if !claim(state, &id, now).await? {
        return Ok(Answer::Duplicate { id });
    }
    let deploy_id = match (action, deploy_hook) {
        (Action::InvalidateHealthCache, _) => {
            (state.on_deploy_event)();
            None
        }
        (Action::TriggerDeploy, Some(client)) => trigger(state, client, &id).await?,
        _ => None,
    };
    Ok(Answer::Accepted {
        id,
        scheme,
        action,
        deploy_id,
    })
}

/// The body, read with the limit and within the in-flight budget.
async fn read_body(
    state: &HookState,
    declared: Option<u64>,
    body: Body,
) -> Result<(Bytes, budget::Reservation), Refusal> {
    let max = state.settings.max_body;
    budget::read_within(body, declared, max, &state.budget)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge { .. } => Refusal::BodyTooLarge { max },
            BodyError::OverBudget { limit } => Refusal::OverBudget { limit },
            BodyError::Read(e) => Refusal::BadBody(e.to_string()),
        })
}

/// GitHub's delivery id is optional for offline `verify`, required here: without it a replay
/// could not be recognised.
fn missing_github_delivery() -> Refusal {
    Refusal::InvalidSignature(VerifyError::MissingHeader(signature::GITHUB_DELIVERY))
}

/// The signature over the raw bytes, and the delivery id it vouches for.
fn verify(
    secret: &WebhookSecret,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    tolerance: std::time::Duration,
) -> Result<(Scheme, String), Refusal> {
    let verified = signature::verify(secret, headers, body, now, tolerance)
        .map_err(Refusal::InvalidSignature)?;
    match verified.id {
        Some(id) => Ok((verified.scheme, id.to_owned())),
        None => Err(missing_github_delivery()),
    }
}

/// Claims the id in the replay store: `false` when it was seen before.
async fn claim(state: &HookState, id: &str, now: i64) -> Result<bool, Refusal> {
    state
        .replay
        .check_and_insert(id, now)
        .await
        .map_err(|error| Refusal::StoreUnavailable {
            id: id.to_owned(),
            error,
        })
}

/// Starts a deploy; on failure the claim is released so that the sender's retry is acted upon.
async fn trigger(
    state: &HookState,
    client: &DeployHookClient,
    id: &str,
) -> Result<Option<String>, Refusal> {
    match client.trigger().await {
        Ok(triggered) => Ok(triggered.deploy_id),
        Err(error) => {
            if let Err(release) = state.replay.release(id).await {
                tracing::error!(id = %id, error = %release, "deploy hook: could not release the claim; a retry will be answered as duplicate");
            }
            Err(Refusal::ActionFailed {
                id: id.to_owned(),
                error,
            })
        }
    }
}
