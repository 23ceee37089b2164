//! The whole of a deploy through the API (contract §9): create it once, follow it to live,
//! smoke-test it, roll back when asked; the outcome as one [`Report`].
//!
//! Nothing is printed here: every step is told to an observer ([`Event`]), so the command can
//! draw a line that updates in place on a terminal, a line per change in CI, or nothing but JSON.

use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::client::{ApiError, RenderApi};
use super::create::{CreateRequest, create_deploy, previous_live, roll_back};
use super::follow::{FollowEnd, Seen, follow};
use super::smoke::{SmokePolicy, SmokeResult, smoke};
use super::types::{Deploy, DeployStatus};

/// What to do: the flags of `deploy`, checked.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `srv-…`.
    pub service: String,
    /// What to deploy.
    pub request: CreateRequest,
    /// Follow the deploy to the end (`--wait`).
    pub wait: bool,
    /// Between two polls (`--poll-interval`).
    pub poll: Duration,
    /// The longest wait for one deploy (`--timeout`).
    pub timeout: Duration,
    /// The service's URL for the smoke test (`--url`); else `serviceDetails.url`.
    pub url: Option<String>,
    /// Smoke paths (`--smoke`).
    pub smoke: Vec<String>,
    /// Roll back when a smoke path fails (`--rollback-on-failure`).
    pub rollback_on_failure: bool,
    /// Tries, spacing and timeout of the smoke test.
    pub smoke_policy: SmokePolicy,
}

/// One step, as it happens.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Render created the deploy.
    Created(&'a Deploy),
    /// A poll of a deploy (the rollback's too): its status, whether it changed, time since start.
    Status {
        /// The status.
        status: &'a DeployStatus,
        /// Different from the previous poll's.
        changed: bool,
        /// Since the command started.
        elapsed: Duration,
        /// The deploy is the rollback.
        rollback: bool,
    },
    /// The smoke test of one path is done.
    Smoke(&'a SmokeResult),
    /// A rollback to this deploy id was asked for.
    RollingBack(&'a str),
}

/// How a rollback ended.
#[derive(Debug)]
pub enum RollbackEnd {
    /// The rollback deploy went live.
    Live,
    /// It ended in this status (failed, or still going at the timeout).
    NotLive(String),
    /// No earlier deploy was live or deactivated: nothing to roll back to.
    NoTarget,
    /// A call failed.
    Error(ApiError),
}

/// How the whole deploy ended.
#[derive(Debug)]
pub enum Verdict {
    /// Created, not followed (no `--wait`).
    Created,
    /// Live, and every smoke path answered 2xx.
    Live,
    /// A failure status; the phase and the status before it.
    Failed {
        /// `build`, `pre-deploy`, `update` or `canceled`.
        phase: &'static str,
        /// What was going on (for `canceled`).
        during: Option<String>,
    },
    /// Live, but the smoke test failed (or could not run: `reason`); the rollback, when asked.
    SmokeFailed {
        /// Why the smoke test could not run at all, when it could not.
        reason: Option<String>,
        /// The rollback, when `--rollback-on-failure`.
        rollback: Option<RollbackEnd>,
    },
    /// Not finished within `--timeout`.
    TimedOut,
    /// A call to Render failed.
    Error(ApiError),
}

/// Everything `deploy` reports at the end.
#[derive(Debug)]
pub struct Report {
    /// The service.
    pub service_id: String,
    /// The deploy, once created.
    pub deploy_id: Option<String>,
    /// Its last status seen.
    pub status: Option<String>,
    /// The service's URL, when known.
    pub url: Option<String>,
    /// Since the start.
    pub elapsed: Duration,
    /// Each status change of the deploy, with its time since the start.
    pub history: Vec<(String, Duration)>,
    /// The smoke paths.
    pub smoke: Vec<SmokeResult>,
    /// The earlier deploy rolled back to.
    pub rolled_back_to: Option<String>,
    /// The end.
    pub verdict: Verdict,
}

/// Runs `plan`; `started` is when the command started (elapsed times count from it).
pub async fn run(
    api: &RenderApi,
    plan: &Plan,
    started: Instant,
    observe: &mut dyn FnMut(Event<'_>),
) -> Report {
    let mut report = Report {
        service_id: plan.service.clone(),
        deploy_id: None,
        status: None,
        url: plan.url.clone(),
        elapsed: Duration::ZERO,
        history: Vec::new(),
        smoke: Vec::new(),
        rolled_back_to: None,
        verdict: Verdict::Created,
    };
    let now = OffsetDateTime::now_utc();
    report.verdict = match create_deploy(api, &plan.service, &plan.request, now, plan.poll).await {
        Ok(deploy) => {
            observe(Event::Created(&deploy));
            report.deploy_id = Some(deploy.id.clone());
            if plan.wait {
                wait_and_check(api, plan, deploy, started, &mut report, observe).await
            } else {
                let status = deploy.status.as_str().into_owned();
                report.history.push((status.clone(), started.elapsed()));
                report.status = Some(status);
                Verdict::Created
            }
        }
        Err(e) => Verdict::Error(e),
    };
    report.elapsed = started.elapsed();
    report
}

/// Follows the deploy, then smoke-tests it and rolls back when asked.
async fn wait_and_check(
    api: &RenderApi,
    plan: &Plan,
    deploy: Deploy,
    started: Instant,
    report: &mut Report,
    observe: &mut dyn FnMut(Event<'_>),
) -> Verdict {
    let end = follow_observed(
        api,
        plan,
        deploy,
        started,
        Some(&mut report.history),
        observe,
    )
    .await;
    let live = match end {
        Err(e) => return Verdict::Error(e),
        Ok(FollowEnd::TimedOut(d)) => {
            report.status = Some(d.status.as_str().into_owned());
            return Verdict::TimedOut;
        }
        Ok(FollowEnd::Failed {
            deploy,
            phase,
            during,
        }) => {
            report.status = Some(deploy.status.as_str().into_owned());
            return Verdict::Failed {
                phase,
                during: during.map(|s| s.as_str().into_owned()),
            };
        }
        Ok(FollowEnd::Live(d)) => d,
    };
    report.status = Some(live.status.as_str().into_owned());
    match smoke_test(api, plan, report, observe).await {
        Ok(true) => Verdict::Live,
        Ok(false) => smoke_failed(api, plan, &live, started, report, observe, None).await,
        Err(why) => smoke_failed(api, plan, &live, started, report, observe, Some(why)).await,
    }
}

/// Follows one deploy, telling `observe` of every poll; `history` (the deploy's, not the
/// rollback's) gets each change.
async fn follow_observed(
    api: &RenderApi,
    plan: &Plan,
    deploy: Deploy,
    started: Instant,
    mut history: Option<&mut Vec<(String, Duration)>>,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<FollowEnd, ApiError> {
    let rollback = history.is_none();
    let mut seen = |s: Seen<'_>| {
        let (status, changed) = match s {
            Seen::Changed(status) => (status, true),
            Seen::Same(status) => (status, false),
        };
        let elapsed = started.elapsed();
        if changed && let Some(history) = history.as_mut() {
            history.push((status.as_str().into_owned(), elapsed));
        }
        observe(Event::Status {
            status,
            changed,
            elapsed,
            rollback,
        });
    };
    follow(
        api,
        &plan.service,
        deploy,
        plan.poll,
        plan.timeout,
        &mut seen,
    )
    .await
}

/// The service's URL into the report, then every smoke path: whether all passed, or why the
/// test could not run.
async fn smoke_test(
    api: &RenderApi,
    plan: &Plan,
    report: &mut Report,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<bool, String> {
    if report.url.is_none() {
        // Needed for the smoke test; without one it is still worth reporting.
        match api.get_service(&plan.service).await {
            Ok(service) => report.url = service.service_details.and_then(|d| d.url),
            Err(e) if !plan.smoke.is_empty() => return Err(e.to_string()),
            Err(_) => {}
        }
    }
    if plan.smoke.is_empty() {
        return Ok(true);
    }
    let Some(url) = report.url.clone() else {
        return Err("the service has no URL (give --url)".to_owned());
    };
    let results = smoke(&url, &plan.smoke, &plan.smoke_policy)
        .await
        .map_err(|e| e.to_string())?;
    for r in &results {
        observe(Event::Smoke(r));
    }
    let passed = results.iter().all(SmokeResult::passed);
    report.smoke = results;
    Ok(passed)
}

/// The smoke test failed: roll back when asked.
async fn smoke_failed(
    api: &RenderApi,
    plan: &Plan,
    live: &Deploy,
    started: Instant,
    report: &mut Report,
    observe: &mut dyn FnMut(Event<'_>),
    reason: Option<String>,
) -> Verdict {
    let rollback = if plan.rollback_on_failure {
        Some(rollback(api, plan, live, started, report, observe).await)
    } else {
        None
    };
    Verdict::SmokeFailed { reason, rollback }
}

/// Rolls back to the deploy that was live before `live` and follows the rollback.
async fn rollback(
    api: &RenderApi,
    plan: &Plan,
    live: &Deploy,
    started: Instant,
    report: &mut Report,
    observe: &mut dyn FnMut(Event<'_>),
) -> RollbackEnd {
    let list = match api.list_deploys(&plan.service).await {
        Ok(list) => list,
        Err(e) => return RollbackEnd::Error(e),
    };
    let Some(target) = previous_live(&list, live) else {
        return RollbackEnd::NoTarget;
    };
    observe(Event::RollingBack(&target.id));
    report.rolled_back_to = Some(target.id.clone());
    let deploy = match roll_back(api, &plan.service, &target.id, plan.poll).await {
        Ok(d) => d,
        Err(e) => return RollbackEnd::Error(e),
    };
    match follow_observed(api, plan, deploy, started, None, observe).await {
        Ok(FollowEnd::Live(_)) => RollbackEnd::Live,
        Ok(FollowEnd::Failed { deploy, .. }) | Ok(FollowEnd::TimedOut(deploy)) => {
            RollbackEnd::NotLive(deploy.status.as_str().into_owned())
        }
        Err(e) => RollbackEnd::Error(e),
    }
}
