//! The Render API client and its retry policy against the stand-in for Render's API on loopback:
//! the shapes it reads, what it retries, and that the key stays secret.

use std::time::Duration;

use render_deploy::render_api::create::{CreateRequest, create_deploy, roll_back};
use render_deploy::render_api::{ApiBase, ApiError, ApiKey, DeployStatus, RenderApi};
use time::OffsetDateTime;

use crate::support::canary::{self, RENDER_API_KEY};
use crate::support::fake_render::{Call, FakeRender, Fault, Options, PREVIOUS_LIVE, SERVICE};

use crate::support::fast_retry_policy as fast;

fn api(fake: &FakeRender, key: &str) -> RenderApi {
    RenderApi::new(
        ApiBase::parse(&fake.base).unwrap(),
        ApiKey::parse(key).unwrap(),
        fast(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_list_is_read_newest_first_from_renders_shape() {
    let fake = FakeRender::start(Options::new(RENDER_API_KEY));
    let list = api(&fake, RENDER_API_KEY)
        .list_deploys(SERVICE)
        .await
        .unwrap();
    let ids: Vec<&str> = list.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["dep-failed-earlier", PREVIOUS_LIVE, "dep-older"]);
    assert_eq!(list[0].status, DeployStatus::BuildFailed);
    assert_eq!(list[1].commit_id(), Some("aaaaaaa"));
    assert!(
        list.iter()
            .all(|d| d.created().is_some() && d.finished_at.is_some())
    );
    let service = api(&fake, RENDER_API_KEY)
        .get_service(SERVICE)
        .await
        .unwrap();
    assert_eq!(
        service.service_details.and_then(|d| d.url).as_deref(),
        Some(fake.service_url.as_str())
    );
}

#[tokio::test]
async fn a_429_on_the_post_waits_for_ratelimit_reset_and_makes_one_deploy() {
    let mut options = Options::new(RENDER_API_KEY);
    options.faults = vec![(Call::Create, 1, Fault::RateLimited(1))];
    let fake = FakeRender::start(options);
    let deploy = create_deploy(
        &api(&fake, RENDER_API_KEY),
        SERVICE,
        &CreateRequest::default(),
        OffsetDateTime::now_utc(),
        Duration::from_millis(10),
    )
    .await
    .unwrap();
    assert_eq!(deploy.id, "dep-new-1");
    let creates = fake.calls(Call::Create);
    assert_eq!(creates.len(), 2);
    assert_eq!(creates[0].status, 429);
    assert!(creates[1].at - creates[0].at >= Duration::from_millis(950));
    assert_eq!(fake.deploys_made(), 1);
}

#[tokio::test]
async fn a_500_after_a_rollback_was_made_does_not_roll_back_twice() {
    let mut options = Options::new(RENDER_API_KEY);
    options.faults = vec![(Call::Rollback, 1, Fault::ErrorAfter)];
    let fake = FakeRender::start(options);
    let deploy = roll_back(
        &api(&fake, RENDER_API_KEY),
        SERVICE,
        PREVIOUS_LIVE,
        Duration::from_millis(10),
    )
    .await
    .unwrap();
    assert_eq!(deploy.trigger.as_deref(), Some("rollback"));
    assert_eq!(fake.calls(Call::Rollback).len(), 1);
    assert_eq!(fake.deploys_made(), 1);
}

#[tokio::test]
async fn gets_are_retried_on_5xx_and_give_up_as_unavailable() {
    let mut options = Options::new(RENDER_API_KEY);
    options.faults = (1..=4)
        .map(|n| (Call::Service, n, Fault::ErrorBefore))
        .collect();
    let fake = FakeRender::start(options);
    let error = api(&fake, RENDER_API_KEY)
        .get_service(SERVICE)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ApiError::Unavailable { attempts: 4, .. }),
        "{error:?}"
    );
    assert_eq!(fake.calls(Call::Service).len(), 4);
}

#[tokio::test]
async fn a_refused_key_stops_at_once_and_never_shows() {
    let fake = FakeRender::start(Options::new("rnd_another-key"));
    let error = api(&fake, RENDER_API_KEY)
        .get_deploy(SERVICE, "dep-x")
        .await
        .unwrap_err();
    assert!(
        matches!(error, ApiError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    assert_eq!(fake.seen().len(), 1);
    let shown = format!(
        "{error} {error:?} {:?} {:?}",
        api(&fake, RENDER_API_KEY),
        ApiKey::parse(RENDER_API_KEY).unwrap()
    );
    canary::assert_none_in(&shown, "API error and Debug");
}

#[tokio::test]
async fn another_4xx_is_not_retried_and_carries_renders_message() {
    let fake = FakeRender::start(Options::new(RENDER_API_KEY));
    let error = api(&fake, RENDER_API_KEY)
        .get_deploy("srv-unknown", "dep-x")
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "get the deploy: Render answered 404: service not found"
    );
    assert_eq!(fake.seen().len(), 1);
}

#[test]
fn deploys_variables_are_checked_by_the_schema_without_the_services_own() {
    use render_deploy::config::{DeploySettings, Env};
    // A CI job: no DATABASE_URL, PORT, … — only deploy's variables, and those are wrong.
    let env: Env = [
        ("RENDER_API_KEY", format!("{RENDER_API_KEY} x")),
        ("RENDER_API_URL", "http://api.render.com/v1".to_owned()),
    ]
    .into_iter()
    .collect();
    let (settings, problems) = DeploySettings::from_environment(&env);
    let vars: Vec<&str> = problems.iter().map(|p| p.var.as_str()).collect();
    assert_eq!(vars, ["RENDER_API_KEY", "RENDER_API_URL"], "{problems:?}");
    assert!(settings.api_key.is_none() && settings.api_url.is_none());
    let shown = format!("{problems:?} {settings:?}");
    canary::assert_none_in(&shown, "deploy's settings");

    let env: Env = [
        ("RENDER_API_KEY", RENDER_API_KEY),
        ("RENDER_SERVICE_ID", SERVICE),
    ]
    .into_iter()
    .collect();
    let (settings, problems) = DeploySettings::from_environment(&env);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        settings.api_url.unwrap().as_str(),
        "https://api.render.com/v1"
    );
    assert_eq!(settings.service_id.as_deref(), Some(SERVICE));
    assert!(!format!("{:?}", settings.api_key).contains(RENDER_API_KEY));
}

#[tokio::test]
async fn an_oversized_answer_is_refused_not_held() {
    let mut options = Options::new(RENDER_API_KEY);
    options.oversized_list = Some(5 * 1024 * 1024);
    let fake = FakeRender::start(options);
    let error = api(&fake, RENDER_API_KEY)
        .list_deploys(SERVICE)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ApiError::BadAnswer { detail, .. } if detail.contains("over")),
        "{error:?}"
    );
}
