//! One deploy per call, whatever the network does: creating a deploy or a rollback so that a
//! retry never starts a second one.
//!
//! After a POST whose fate is unknown (connection error, timeout once sent, 5xx), the newest
//! deploys are listed first, and the POST is repeated only when none of them was created by
//! this call: same trigger (`api`, or `rollback`), created since just before the first attempt,
//! same commit when one was asked for. "Just before" allows [`CLOCK_MARGIN`] of difference
//! between this machine's clock and Render's.

use std::time::Duration;

use time::OffsetDateTime;

use super::client::{ApiError, Posted, RenderApi};
use super::types::Deploy;

/// How far Render's clock may be behind this machine's and a deploy still count as this call's.
pub const CLOCK_MARGIN: Duration = Duration::from_secs(10);

/// How many times the list is read to find a deploy that Render queued (202, no body).
const QUEUED_LOOKS: u32 = 10;

/// What `deploy` asks Render to deploy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateRequest {
    /// Clear the build cache first (`clearCache: "clear"`).
    pub clear_cache: bool,
    /// A commit SHA to deploy (`commitId`).
    pub commit: Option<String>,
    /// An image URL to deploy (`imageUrl`).
    pub image: Option<String>,
}

impl CreateRequest {
    /// The JSON body of `POST /services/{id}/deploys`.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "clearCache": if self.clear_cache { "clear" } else { "do_not_clear" },
        });
        if let Some(commit) = &self.commit {
            body["commitId"] = commit.clone().into();
        }
        if let Some(image) = &self.image {
            body["imageUrl"] = image.clone().into();
        }
        body
    }
}

/// What makes a listed deploy this call's.
#[derive(Debug, Clone)]
struct Mine<'a> {
    trigger: &'a str,
    since: OffsetDateTime,
    commit: Option<&'a str>,
}

impl Mine<'_> {
    fn matches(&self, d: &Deploy) -> bool {
        d.trigger.as_deref() == Some(self.trigger)
            && d.created().is_some_and(|t| t >= self.since)
            && self.commit.is_none_or(|c| d.commit_id() == Some(c))
    }
}

/// Creates one deploy of `service`; `started` is the time just before the first attempt.
pub async fn create_deploy(
    api: &RenderApi,
    service: &str,
    request: &CreateRequest,
    started: OffsetDateTime,
    poll: Duration,
) -> Result<Deploy, ApiError> {
    let body = request.body();
    let mine = Mine {
        trigger: "api",
        since: started - CLOCK_MARGIN,
        commit: request.commit.as_deref(),
    };
    post_once(api, service, &mine, poll, || {
        api.create_deploy(service, &body)
    })
    .await
}

/// Rolls `service` back to deploy `to`, once; the rollback's own deploy is returned.
pub async fn roll_back(
    api: &RenderApi,
    service: &str,
    to: &str,
    poll: Duration,
) -> Result<Deploy, ApiError> {
    let mine = Mine {
        trigger: "rollback",
        since: OffsetDateTime::now_utc() - CLOCK_MARGIN,
        commit: None,
    };
    post_once(api, service, &mine, poll, || api.rollback(service, to)).await
}

/// The deploy that was live before `current`: the newest earlier one (in the list, newest
/// first) whose status is `live` or `deactivated`.
pub fn previous_live<'a>(list: &'a [Deploy], current: &Deploy) -> Option<&'a Deploy> {
    let position = list.iter().position(|d| d.id == current.id);
    let earlier: Box<dyn Iterator<Item = &Deploy>> = match position {
        Some(i) => Box::new(list.iter().skip(i + 1)),
        // Not in the newest 20 (unlikely): fall back on creation times.
        None => Box::new(list.iter().filter(|d| {
            d.created()
                .zip(current.created())
                .is_some_and(|(a, b)| a < b)
        })),
    };
    earlier
        .filter(|d| d.id != current.id)
        .find(|d| d.status.outcome() == super::types::Outcome::Live)
}

async fn post_once<F, Fut>(
    api: &RenderApi,
    service: &str,
    mine: &Mine<'_>,
    poll: Duration,
    post: F,
) -> Result<Deploy, ApiError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Posted<Deploy>, ApiError>>,
{
    let policy = api.policy().clone();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match post().await {
            Ok(Posted::Created(deploy)) => return Ok(deploy),
            Ok(Posted::Queued) => return find_queued(api, service, mine, poll).await,
            Err(ApiError::Uncertain { what, fault }) => {
                // Give Render a moment to list what it may have made, then look before posting again.
                tokio::time::sleep(policy.jittered_backoff(attempt)).await;
                // A list that fails too is reported as the create's failure: that is what the
                // user asked for and what did not happen.
                let list = api.list_deploys(service).await.map_err(|e| match e {
                    ApiError::Unavailable { attempts, last, .. } => ApiError::Unavailable {
                        what: what.clone(),
                        attempts: attempts + attempt,
                        last,
                    },
                    e => e,
                })?;
                if let Some(deploy) = list.into_iter().find(|d| mine.matches(d)) {
                    tracing::info!(deploy = %deploy.id, "the deploy was created despite the fault");
                    return Ok(deploy);
                }
                if attempt >= policy.max_attempts.max(1) {
                    return Err(ApiError::Unavailable {
                        what,
                        attempts: attempt,
                        last: fault,
                    });
                }
                tracing::warn!(call = %what, attempt, fault = %fault, "not created; posting again");
            }
            Err(e) => return Err(e),
        }
    }
}

/// After a 202: the newest deploy this call created, read from the list.
async fn find_queued(
    api: &RenderApi,
    service: &str,
    mine: &Mine<'_>,
    poll: Duration,
) -> Result<Deploy, ApiError> {
    for look in 1..=QUEUED_LOOKS {
        let list = api.list_deploys(service).await?;
        if let Some(deploy) = list.into_iter().find(|d| mine.matches(d)) {
            return Ok(deploy);
        }
        if look < QUEUED_LOOKS {
            tokio::time::sleep(poll).await;
        }
    }
    Err(ApiError::BadAnswer {
        what: "find the queued deploy".to_owned(),
        detail: format!(
            "Render answered 202 but no deploy of this call is among the newest 20 after {QUEUED_LOOKS} looks"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(id: &str, status: &str, trigger: &str, at: &str, commit: &str) -> Deploy {
        serde_json::from_value(serde_json::json!({
            "id": id, "status": status, "trigger": trigger, "createdAt": at,
            "commit": {"id": commit},
        }))
        .unwrap()
    }

    #[test]
    fn the_body_carries_what_was_asked() {
        let r = CreateRequest {
            clear_cache: true,
            commit: Some("abc".into()),
            image: None,
        };
        assert_eq!(
            r.body(),
            serde_json::json!({"clearCache": "clear", "commitId": "abc"})
        );
        assert_eq!(
            CreateRequest::default().body(),
            serde_json::json!({"clearCache": "do_not_clear"})
        );
    }

    #[test]
    fn only_this_calls_deploy_matches() {
        let since = OffsetDateTime::parse(
            "2026-05-02T00:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let mine = Mine {
            trigger: "api",
            since,
            commit: Some("abc"),
        };
        assert!(mine.matches(&deploy(
            "d",
            "created",
            "api",
            "2026-05-02T00:00:01Z",
            "abc"
        )));
        assert!(!mine.matches(&deploy(
            "d",
            "created",
            "api",
            "2026-05-01T23:59:59Z",
            "abc"
        )));
        assert!(!mine.matches(&deploy(
            "d",
            "created",
            "new_commit",
            "2026-05-02T00:00:01Z",
            "abc"
        )));
        assert!(!mine.matches(&deploy(
            "d",
            "created",
            "api",
            "2026-05-02T00:00:01Z",
            "def"
        )));
    }

    #[test]
    fn the_rollback_target_is_the_newest_earlier_live_or_deactivated() {
        let list = vec![
            deploy("new", "live", "api", "2026-05-02T00:05:00Z", "c"),
            deploy("failed", "build_failed", "api", "2026-05-02T00:04:00Z", "b"),
            deploy("prev", "deactivated", "api", "2026-05-02T00:03:00Z", "b"),
            deploy("older", "deactivated", "api", "2026-05-02T00:02:00Z", "a"),
        ];
        assert_eq!(previous_live(&list, &list[0]).unwrap().id, "prev");
        assert!(previous_live(&list, &list[3]).is_none());
    }
}
