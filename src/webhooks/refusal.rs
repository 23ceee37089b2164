//! Every way `POST /hooks/deploy` can refuse a delivery, with its status, its JSON message, its
//! metric label and its log line declared once, here.
//!
//! The handler only says *which* refusal applies; [`Refusal::record`] writes the log line and
//! counts the metric, and `IntoResponse` writes the short JSON answer. A signature failure is
//! one uniform 401 outside whatever its precise reason, which goes to the log and to
//! `render_deploy_hook_signature_failures_total{reason}` only.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::render_api::deploy_hook::TriggerError;
use crate::replay::ReplayError;
use crate::signature::VerifyError;

use super::budget::RETRY_AFTER_SECS;
use super::{DELIVERIES_METRIC, SIGNATURE_FAILURES_METRIC};

/// Why a delivery is not acted upon.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// No `RENDER_DEPLOY_HOOK_SECRET`: the endpoint is off.
    NotConfigured,
    /// The body (declared or read) is over `WEBHOOK_MAX_BODY`.
    BodyTooLarge {
        /// The limit.
        max: usize,
    },
    /// The in-flight body budget (`WEBHOOK_MAX_INFLIGHT`) cannot hold this body now.
    OverBudget {
        /// The budget.
        limit: usize,
    },
    /// The body could not be read (the connection broke mid-body).
    BadBody(String),
    /// The signature, its timestamp or a required header is wrong.
    InvalidSignature(VerifyError),
    /// The signed body is not JSON.
    NotJson {
        /// The delivery id.
        id: String,
    },
    /// A deploy was asked for but `RENDER_DEPLOY_HOOK_URL` is unset.
    DeployHookUrlNotConfigured {
        /// The delivery id.
        id: String,
    },
    /// The replay store could not say whether the id is new.
    StoreUnavailable {
        /// The delivery id.
        id: String,
        /// Why.
        error: ReplayError,
    },
    /// The action failed (Render's deploy hook could not be reached); the claim was released.
    ActionFailed {
        /// The delivery id.
        id: String,
        /// Why.
        error: TriggerError,
    },
}

impl Refusal {
    /// The status of the answer (contract §4.1).
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Refusal::NotConfigured
            | Refusal::OverBudget { .. }
            | Refusal::DeployHookUrlNotConfigured { .. }
            | Refusal::StoreUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BadBody(_) | Refusal::NotJson { .. } => StatusCode::BAD_REQUEST,
            Refusal::InvalidSignature(_) => StatusCode::UNAUTHORIZED,
            Refusal::ActionFailed { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The `outcome` label of `render_deploy_hook_deliveries_total`.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Refusal::NotConfigured | Refusal::DeployHookUrlNotConfigured { .. } => "not_configured",
            Refusal::BodyTooLarge { .. } => "body_too_large",
            Refusal::OverBudget { .. } => "over_budget",
            Refusal::BadBody(_) => "bad_body",
            Refusal::InvalidSignature(_) => "invalid_signature",
            Refusal::NotJson { .. } => "not_json",
            Refusal::StoreUnavailable { .. } => "store_unavailable",
            Refusal::ActionFailed { .. } => "action_failed",
        }
    }

    /// The `error` of the JSON answer: short, the same for every cause of one refusal.
    pub(crate) fn message(&self) -> &'static str {
        match self {
            Refusal::NotConfigured => "deploy hooks are not configured",
            Refusal::BodyTooLarge { .. } => "body too large",
            Refusal::OverBudget { .. } => "too many deliveries in flight",
            Refusal::BadBody(_) => "could not read the body",
            Refusal::InvalidSignature(_) => "invalid signature",
            Refusal::NotJson { .. } => "body is not JSON",
            Refusal::DeployHookUrlNotConfigured { .. } => "deploy hook URL is not configured",
            Refusal::StoreUnavailable { .. } => "replay store unavailable",
            Refusal::ActionFailed { .. } => "triggering the deploy failed",
        }
    }

    /// Logs the refusal with its precise cause and counts it.
    pub(crate) fn record(&self) {
        match self {
            // The endpoint is simply off; nothing to say at every request.
            Refusal::NotConfigured => {}
            Refusal::BodyTooLarge { max } => {
                tracing::warn!(max_body = max, "deploy hook: body over WEBHOOK_MAX_BODY");
            }
            Refusal::OverBudget { limit } => {
                tracing::warn!(
                    max_inflight = limit,
                    "deploy hook: in-flight body budget (WEBHOOK_MAX_INFLIGHT) spent; answered 503"
                );
            }
            Refusal::BadBody(error) => {
                tracing::warn!(error = %error, "deploy hook: reading the body failed");
            }
            Refusal::InvalidSignature(e) => {
                tracing::warn!(reason = e.reason(), error = %e, "deploy hook: delivery refused");
                metrics::counter!(SIGNATURE_FAILURES_METRIC, "reason" => e.reason()).increment(1);
            }
            Refusal::NotJson { id } => {
                tracing::warn!(id = %id, "deploy hook: signed body is not JSON");
            }
            Refusal::DeployHookUrlNotConfigured { id } => {
                tracing::warn!(id = %id, "deploy hook: deploy requested but RENDER_DEPLOY_HOOK_URL is not set");
            }
            Refusal::StoreUnavailable { id, error } => {
                let source = std::error::Error::source(error).map(ToString::to_string);
                tracing::error!(id = %id, error = %error, source = ?source, "deploy hook: replay store unavailable");
            }
            Refusal::ActionFailed { id, error } => {
                tracing::error!(id = %id, error = %error, "deploy hook: triggering the deploy failed");
            }
        }
        metrics::counter!(DELIVERIES_METRIC, "outcome" => self.outcome()).increment(1);
    }
}

impl Refusal {
    /// Whether the body is left (partly) unread: the connection is then closed after the
    /// answer rather than drained of what nobody will read.
    pub(crate) fn leaves_body_unread(&self) -> bool {
        matches!(
            self,
            Refusal::BodyTooLarge { .. } | Refusal::OverBudget { .. }
        )
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (
            self.status(),
            axum::Json(json!({ "error": self.message() })),
        )
            .into_response();
        if let Refusal::OverBudget { .. } = self {
            // By then the deliveries in flight have finished or timed out.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_answers_its_status_with_a_short_json_error() {
        let cases = [
            (Refusal::NotConfigured, 503, "not_configured"),
            (Refusal::BodyTooLarge { max: 1 }, 413, "body_too_large"),
            (Refusal::OverBudget { limit: 1 }, 503, "over_budget"),
            (Refusal::BadBody("reset".into()), 400, "bad_body"),
            (
                Refusal::InvalidSignature(VerifyError::NoMatchingSignature),
                401,
                "invalid_signature",
            ),
            (Refusal::NotJson { id: "m".into() }, 400, "not_json"),
            (
                Refusal::DeployHookUrlNotConfigured { id: "m".into() },
                503,
                "not_configured",
            ),
        ];
        for (refusal, status, outcome) in cases {
            assert_eq!(refusal.status().as_u16(), status, "{refusal:?}");
            assert_eq!(refusal.outcome(), outcome, "{refusal:?}");
            let message = refusal.message();
            let response = refusal.into_response();
            assert_eq!(response.status().as_u16(), status);
            assert!(!message.is_empty());
        }
    }
}
