//! Following a deploy until it is live, has failed, or the time is up.

use std::time::Duration;

use tokio::time::Instant;

use super::client::{ApiError, RenderApi};
use super::types::{Deploy, DeployStatus, Outcome};

/// How a followed deploy ended.
#[derive(Debug, Clone)]
pub enum FollowEnd {
    /// `live` (or `deactivated`).
    Live(Deploy),
    /// A failure status; `phase` is the phase that failed, `during` the last status seen
    /// before it (for `canceled`: what was going on when it was canceled).
    Failed {
        /// The deploy, in its failure status.
        deploy: Deploy,
        /// `build`, `pre-deploy`, `update` or `canceled`.
        phase: &'static str,
        /// The status before the failure, when one was seen.
        during: Option<DeployStatus>,
    },
    /// Not finished within the timeout; the last status seen.
    TimedOut(Deploy),
}

/// What the follower reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Seen<'a> {
    /// A status different from the previous one (the first one included).
    Changed(&'a DeployStatus),
    /// A poll that found the same status.
    Same(&'a DeployStatus),
}

/// Polls `deploy` every `poll` until it is live or failed, at most `timeout`; `seen` hears of
/// every poll.
pub async fn follow(
    api: &RenderApi,
    service: &str,
    deploy: Deploy,
    poll: Duration,
    timeout: Duration,
    seen: &mut dyn FnMut(Seen<'_>),
) -> Result<FollowEnd, ApiError> {
    let deadline = Instant::now() + timeout;
    let mut current = deploy;
    let mut previous: Option<DeployStatus> = None;
    loop {
        if previous.as_ref() == Some(&current.status) {
            seen(Seen::Same(&current.status));
        } else {
            seen(Seen::Changed(&current.status));
        }
        match current.status.outcome() {
            Outcome::Live => return Ok(FollowEnd::Live(current)),
            Outcome::Failed(phase) => {
                return Ok(FollowEnd::Failed {
                    deploy: current,
                    phase,
                    during: previous,
                });
            }
            Outcome::GoesOn => {}
        }
        if Instant::now() + poll >= deadline {
            tokio::time::sleep_until(deadline).await;
            return Ok(FollowEnd::TimedOut(current));
        }
        tokio::time::sleep(poll).await;
        // One poll may itself be retried (429, 5xx); the deadline bounds it all the same.
        let next =
            match tokio::time::timeout_at(deadline, api.get_deploy(service, &current.id)).await {
                Ok(result) => result?,
                Err(_) => return Ok(FollowEnd::TimedOut(current)),
            };
        previous = Some(std::mem::replace(&mut current, next).status);
    }
}
