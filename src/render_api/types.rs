//! The shapes of Render's API answers that `deploy` reads: deploys, their statuses, the service.
//!
//! Only the fields used are declared; serde ignores the rest, so a new field in Render's answers
//! changes nothing here.

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A deploy's status, as Render names it.
///
/// A status this program does not know is kept as [`DeployStatus::Other`] and treated as still
/// going on: Render adds statuses from time to time, and waiting (bounded by `--timeout`) is
/// safer than calling an unknown state a success or a failure.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum DeployStatus {
    /// `created`.
    Created,
    /// `queued` (behind another deploy).
    Queued,
    /// `build_in_progress`.
    BuildInProgress,
    /// `pre_deploy_in_progress` (the `preDeployCommand`).
    PreDeployInProgress,
    /// `update_in_progress` (the new instances are starting).
    UpdateInProgress,
    /// `live`.
    Live,
    /// `deactivated`: a newer deploy replaced it after it went live.
    Deactivated,
    /// `build_failed`.
    BuildFailed,
    /// `pre_deploy_failed`.
    PreDeployFailed,
    /// `update_failed`.
    UpdateFailed,
    /// `canceled`.
    Canceled,
    /// Any other status, kept as written; treated as going on.
    Other(String),
}

/// Where a status leaves a deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still on its way: keep polling.
    GoesOn,
    /// Live (or went live and was since replaced).
    Live,
    /// Failed or canceled; the phase that failed (`build`, `pre-deploy`, `update`, `canceled`).
    Failed(&'static str),
}

impl From<String> for DeployStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "created" => Self::Created,
            "queued" => Self::Queued,
            "build_in_progress" => Self::BuildInProgress,
            "pre_deploy_in_progress" => Self::PreDeployInProgress,
            "update_in_progress" => Self::UpdateInProgress,
            "live" => Self::Live,
            "deactivated" => Self::Deactivated,
            "build_failed" => Self::BuildFailed,
            "pre_deploy_failed" => Self::PreDeployFailed,
            "update_failed" => Self::UpdateFailed,
            "canceled" => Self::Canceled,
            _ => Self::Other(s),
        }
    }
}

impl DeployStatus {
    /// Render's name of the status (an unknown one with anything but `[a-z0-9_]` replaced, since
    /// it is printed).
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        let name = match self {
            Self::Created => "created",
            Self::Queued => "queued",
            Self::BuildInProgress => "build_in_progress",
            Self::PreDeployInProgress => "pre_deploy_in_progress",
            Self::UpdateInProgress => "update_in_progress",
            Self::Live => "live",
            Self::Deactivated => "deactivated",
            Self::BuildFailed => "build_failed",
            Self::PreDeployFailed => "pre_deploy_failed",
            Self::UpdateFailed => "update_failed",
            Self::Canceled => "canceled",
            Self::Other(s) => {
                let clean: String = s
                    .chars()
                    .take(64)
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '_' {
                            c
                        } else {
                            '?'
                        }
                    })
                    .collect();
                return clean.into();
            }
        };
        name.into()
    }

    /// Whether polling goes on, or the deploy is live, or it failed (and in which phase).
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Live | Self::Deactivated => Outcome::Live,
            Self::BuildFailed => Outcome::Failed("build"),
            Self::PreDeployFailed => Outcome::Failed("pre-deploy"),
            Self::UpdateFailed => Outcome::Failed("update"),
            Self::Canceled => Outcome::Failed("canceled"),
            _ => Outcome::GoesOn,
        }
    }
}

/// The commit a deploy builds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Commit {
    /// The SHA.
    pub id: Option<String>,
    /// The commit message.
    pub message: Option<String>,
    /// When it was committed.
    pub created_at: Option<String>,
}

/// One deploy (`GET /services/{id}/deploys/{deployId}`, or an element of the list).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deploy {
    /// `dep-…`.
    pub id: String,
    /// Its status.
    pub status: DeployStatus,
    /// What started it: `api` for a deploy created through the API, `rollback`, `new_commit`, …
    pub trigger: Option<String>,
    /// The commit, for a Git-backed service.
    pub commit: Option<Commit>,
    /// When Render created it (RFC 3339).
    pub created_at: Option<String>,
    /// When it finished (RFC 3339), once it has.
    pub finished_at: Option<String>,
}

impl Deploy {
    /// `created_at` as a time, when present and well-formed.
    pub fn created(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(self.created_at.as_deref()?, &Rfc3339).ok()
    }

    /// The commit's SHA, when known.
    pub fn commit_id(&self) -> Option<&str> {
        self.commit.as_ref()?.id.as_deref()
    }
}

/// One element of `GET /services/{id}/deploys`: `{"deploy": {…}, "cursor": "…"}`.
#[derive(Debug, Clone, Deserialize)]
pub struct DeployListEntry {
    /// The deploy.
    pub deploy: Deploy,
    /// The cursor for the next page (unused: the newest 20 are enough to find this call's).
    pub cursor: Option<String>,
}

/// The service (`GET /services/{id}`), as far as `deploy` reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// `srv-…`.
    pub id: String,
    /// Its name.
    pub name: Option<String>,
    /// Type-specific details; a web service's carry its public URL.
    pub service_details: Option<ServiceDetails>,
}

/// The part of a service's `serviceDetails` that `deploy` reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServiceDetails {
    /// The public URL (`https://name.onrender.com`) of a web service.
    pub url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_deploy_object_is_read() {
        let d: Deploy = serde_json::from_str(
            r#"{"id":"dep-1","commit":{"id":"abc","message":"m","createdAt":"2026-05-02T00:00:00Z"},
                "status":"build_in_progress","trigger":"api","createdAt":"2026-05-02T00:01:00.5Z",
                "updatedAt":"2026-05-02T00:01:00Z","finishedAt":null}"#,
        )
        .unwrap();
        assert_eq!(d.status, DeployStatus::BuildInProgress);
        assert_eq!(d.commit_id(), Some("abc"));
        assert!(d.created().is_some());
    }

    #[test]
    fn unknown_statuses_go_on_and_print_safely() {
        let s = DeployStatus::from("\u{1b}[2Jsomething_new".to_owned());
        assert_eq!(s.outcome(), Outcome::GoesOn);
        assert_eq!(s.as_str(), "??2Jsomething_new");
        assert_eq!(
            DeployStatus::from("deactivated".to_owned()).outcome(),
            Outcome::Live
        );
        assert_eq!(
            DeployStatus::from("pre_deploy_failed".to_owned()).outcome(),
            Outcome::Failed("pre-deploy")
        );
    }
}
