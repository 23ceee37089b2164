//! The shutdown signal handed to handlers, so that long-lived responses end when draining begins.
//!
//! A graceful shutdown waits for every response in flight to finish. An event stream, a
//! WebSocket or a long poll never finishes by itself: without a signal it holds the drain open
//! until `SHUTDOWN_TIMEOUT` cuts it, and its client sees a broken connection instead of a clean
//! end and a reconnect to the new instance. [`Shutdown`] is that signal: it fires the moment the
//! server starts draining (SIGTERM, SIGINT, or the future given to
//! [`Deployment::serve_with`](super::Deployment::serve_with)), at the same time as `/health`
//! starts answering `draining`.
//!
//! Handlers get it as an extractor (the server puts it in every request's extensions; the
//! extractor is in [`request_context`](super::request_context)) or from
//! [`Deployment::shutdown`](super::Deployment::shutdown) for state built before serving.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::error_body::json_error;

/// Fires when the server starts draining. Cheap to clone; every clone fires together.
///
/// [`Shutdown::token`] gives a child token of the server's, which the handler can cancel to
/// end its own work early without starting a drain.
#[derive(Debug, Clone)]
pub struct Shutdown {
    // Behind an `Arc`: the server puts a clone in every request's extensions, and cloning a
    // `CancellationToken` itself takes a lock in its tree of tokens (shared by all requests).
    token: Arc<CancellationToken>,
}

impl Shutdown {
    /// A signal that fires when `token` is cancelled: for an application that runs its own
    /// server and puts `axum::Extension(Shutdown::from_token(…))` on its router.
    pub fn from_token(token: CancellationToken) -> Self {
        Self {
            token: Arc::new(token),
        }
    }

    /// Resolves once draining has begun (at once if it already has).
    pub async fn draining(&self) {
        self.token.cancelled().await
    }

    /// The same as [`draining`](Self::draining), as a `'static` future that owns the signal:
    /// for a stream or a task spawned from the handler.
    pub fn draining_owned(self) -> WaitForCancellationFutureOwned {
        Arc::unwrap_or_clone(self.token).cancelled_owned()
    }

    /// Whether draining has begun.
    pub fn is_draining(&self) -> bool {
        self.token.is_cancelled()
    }

    /// A child token, cancelled when draining begins; cancelling it affects only its holders.
    pub fn token(&self) -> CancellationToken {
        self.token.child_token()
    }
}

/// The rejection when a handler asks for [`Shutdown`] on a router that is not served by
/// [`Deployment`](super::Deployment) and has no `Extension(Shutdown)` layer: a wiring mistake,
/// answered with a JSON 500 and logged.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "no shutdown signal in the request's extensions (serve with Deployment, or add Extension(Shutdown))"
)]
pub struct MissingShutdown;

impl IntoResponse for MissingShutdown {
    fn into_response(self) -> Response {
        tracing::error!(error = %self, "handler cannot get the shutdown signal");
        json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}
