//! `render-deploy deploy` end to end: the real binary against the stand-in for Render's API
//! (`support::fake_render`), every exit code of §2, the output, and what reached Render.

use std::time::Duration;

use crate::support::Running;
use crate::support::canary::{self, RENDER_API_KEY};
use crate::support::fake_render::{Call, FakeRender, Fault, Options, PREVIOUS_LIVE, SERVICE};

/// The environment of a CI job pointed at the stand-in; retries and smoke spacing shrunk.
fn env(fake: &FakeRender) -> Vec<(String, String)> {
    [
        ("RENDER_API_KEY", RENDER_API_KEY.to_owned()),
        ("RENDER_API_URL", fake.base.clone()),
        ("RENDER_SERVICE_ID", SERVICE.to_owned()),
        ("RENDER_DEPLOY_TEST_DELAY", "20ms".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

struct Done {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Done {
    fn all(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// Runs `deploy ARGS` to its end (at most `within`), and checks that the key never showed:
/// not in the output, and never in a URL that reached the stand-in.
fn deploy(fake: &FakeRender, args: &[&str], within: Duration) -> Done {
    deploy_env(fake, args, &env(fake), within)
}

fn deploy_env(
    fake: &FakeRender,
    args: &[&str],
    env: &[(String, String)],
    within: Duration,
) -> Done {
    let mut app = Running::start(&[&["deploy"], args].concat(), env);
    let (status, took) = app.wait_exit(within);
    let done = Done {
        code: status.code().unwrap_or(-1),
        took,
        stdout: app.stdout.lock().unwrap().clone(),
        stderr: app.stderr.lock().unwrap().clone(),
    };
    canary::assert_none_in(&done.all(), "deploy output");
    for seen in fake.seen() {
        assert!(
            !seen.uri.contains(RENDER_API_KEY),
            "key in a URL: {}",
            seen.uri
        );
    }
    done
}

fn fast() -> Vec<&'static str> {
    vec!["--wait", "--poll-interval", "20ms"]
}

fn with<'a>(mut base: Vec<&'a str>, more: &[&'a str]) -> Vec<&'a str> {
    base.extend_from_slice(more);
    base
}

const T: Duration = Duration::from_secs(30);

#[test]
fn a_deploy_is_followed_to_live_with_a_line_per_status_change() {
    let fake = FakeRender::start(Options::new(RENDER_API_KEY));
    let done = deploy(&fake, &fast(), T);
    assert_eq!(done.code, 0, "{}", done.all());
    let lines: Vec<&str> = done.stderr.lines().collect();
    let statuses: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with('+') && !l.contains("created"))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["build_in_progress", "update_in_progress", "live"],
        "{}",
        done.all()
    );
    assert!(
        lines.iter().any(|l| regex_like_stamp(l)),
        "no +m:ss stamps: {}",
        done.all()
    );
    assert!(
        done.stdout.trim().starts_with("dep-new-1: live at "),
        "{}",
        done.all()
    );
    assert_eq!(
        done.stdout.lines().count(),
        1,
        "one summary line: {}",
        done.all()
    );
    let creates = fake.calls(Call::Create);
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0].uri, format!("/v1/services/{SERVICE}/deploys"));
    let body: serde_json::Value = serde_json::from_str(&creates[0].body).unwrap();
    assert_eq!(body, serde_json::json!({"clearCache": "do_not_clear"}));
    for seen in fake.seen() {
        assert_eq!(
            seen.authorization.as_deref(),
            Some(format!("Bearer {RENDER_API_KEY}").as_str())
        );
    }
    assert_eq!(fake.deploys_made(), 1);
}

fn regex_like_stamp(line: &str) -> bool {
    let Some(stamp) = line.split_whitespace().next() else {
        return false;
    };
    let Some(rest) = stamp.strip_prefix('+') else {
        return false;
    };
    let parts: Vec<&str> = rest.split(':').collect();
    parts.len() == 2
        && parts[1].len() == 2
        && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

#[test]
fn json_output_is_one_object_with_the_contracts_fields() {
    let fake = FakeRender::start(Options::new(RENDER_API_KEY));
    let args = with(
        fast(),
        &["--format", "json", "--commit", "abc1234", "--clear-cache"],
    );
    let done = deploy(&fake, &args, T);
    assert_eq!(done.code, 0, "{}", done.all());
    let v: serde_json::Value =
        serde_json::from_str(done.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", done.all()));
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "deploy_id",
            "elapsed_seconds",
            "history",
            "rolled_back_to",
            "service_id",
            "smoke",
            "status",
            "url"
        ]
    );
    assert_eq!(v["deploy_id"], "dep-new-1");
    assert_eq!(v["service_id"], SERVICE);
    assert_eq!(v["status"], "live");
    assert_eq!(v["url"], fake.service_url.as_str());
    assert_eq!(v["rolled_back_to"], serde_json::Value::Null);
    assert_eq!(v["smoke"], serde_json::json!([]));
    let history: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["build_in_progress", "update_in_progress", "live"]);
    let at: Vec<f64> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["at_seconds"].as_f64().unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "{at:?}");
    assert!(v["elapsed_seconds"].as_f64().unwrap() >= at[2]);
    let body: serde_json::Value = serde_json::from_str(&fake.calls(Call::Create)[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"clearCache": "clear", "commitId": "abc1234"})
    );
}

#[test]
fn each_failure_status_exits_1_naming_the_phase() {
    for (status, words) in [
        ("build_failed", "the build phase failed"),
        ("pre_deploy_failed", "the pre-deploy phase failed"),
        ("update_failed", "the update phase failed"),
        ("canceled", "canceled during build_in_progress"),
    ] {
        let mut options = Options::new(RENDER_API_KEY);
        options.plan = vec!["build_in_progress", status];
        let fake = FakeRender::start(options);
        let done = deploy(&fake, &fast(), T);
        assert_eq!(done.code, 1, "{status}: {}", done.all());
        assert!(done.stdout.contains(words), "{status}: {}", done.all());
        assert!(
            done.stderr.lines().any(|l| l.ends_with(status)),
            "{status}: {}",
            done.all()
        );
        assert_eq!(fake.calls(Call::Rollback).len(), 0);
    }
}

#[test]
fn a_queued_deploy_202_is_found_in_the_list_and_followed() {
    let mut options = Options::new(RENDER_API_KEY);
    options.queued = true;
    options.plan = vec!["queued", "build_in_progress", "live"];
    let fake = FakeRender::start(options);
    let done = deploy(&fake, &with(fast(), &["--format", "json"]), T);
    assert_eq!(done.code, 0, "{}", done.all());
    let v: serde_json::Value = serde_json::from_str(done.stdout.trim()).unwrap();
    assert_eq!(v["deploy_id"], "dep-new-1");
    assert_eq!(v["history"][0]["status"], "queued");
    assert_eq!(fake.calls(Call::Create).len(), 1);
    let lists = fake.calls(Call::List);
    assert!(!lists.is_empty());
    assert!(
        lists[0].uri.ends_with("/deploys?limit=20"),
        "{}",
        lists[0].uri
    );
    assert_eq!(fake.deploys_made(), 1);
}

#[test]
fn a_500_after_the_deploy_was_made_still_makes_exactly_one_deploy() {
    let mut options = Options::new(RENDER_API_KEY);
    options.faults = vec![(Call::Create, 1, Fault::ErrorAfter)];
    let fake = FakeRender::start(options);
    let done = deploy(&fake, &fast(), T);
    assert_eq!(done.code, 0, "{}", done.all());
    assert_eq!(fake.deploys_made(), 1, "{}", done.all());
    assert_eq!(
        fake.calls(Call::Create).len(),
        1,
        "posted again although the deploy existed"
    );
    assert!(
        !fake.calls(Call::List).is_empty(),
        "did not look before deciding"
    );
}

#[test]
fn a_500_before_anything_was_made_posts_again_once() {
    let mut options = Options::new(RENDER_API_KEY);
    options.faults = vec![(Call::Create, 1, Fault::ErrorBefore)];
    let fake = FakeRender::start(options);
    let done = deploy(&fake, &fast(), T);
    assert_eq!(done.code, 0, "{}", done.all());
    assert_eq!(fake.calls(Call::Create).len(), 2);
    assert_eq!(fake.deploys_made(), 1);
    // The list was read between the two POSTs.
    let order: Vec<Call> = fake.seen().iter().filter_map(|s| s.call).take(3).collect();
    assert_eq!(order, [Call::Create, Call::List, Call::Create]);
}

#[test]
fn a_429_is_honoured_the_next_call_waits_for_ratelimit_reset() {
    let mut options = Options::new(RENDER_API_KEY);
    options.faults = vec![
        (Call::Get, 1, Fault::RateLimited(1)),
        (Call::Create, 1, Fault::RateLimited(1)),
    ];
    let fake = FakeRender::start(options);
    let done = deploy(&fake, &fast(), T);
    assert_eq!(done.code, 0, "{}", done.all());
    let seen = fake.seen();
    let mut checked = 0;
    for pair in seen.windows(2) {
        if pair[0].status == 429 {
            let waited = pair[1].at - pair[0].at;
            assert!(
                waited >= Duration::from_millis(950),
                "waited only {waited:?} after a 429"
            );
            assert_eq!(pair[1].call, pair[0].call, "the same call is repeated");
            checked += 1;
        }
    }
    assert_eq!(checked, 2, "{seen:?}");
    assert_eq!(fake.deploys_made(), 1);
}

#[test]
fn smoke_paths_that_answer_2xx_pass() {
    let mut options = Options::new(RENDER_API_KEY);
    options.smoke = vec![("/health", 200), ("/livez", 204)];
    let fake = FakeRender::start(options);
    let args = with(
        fast(),
        &[
            "--smoke", "/health", "--smoke", "/livez", "--format", "json",
        ],
    );
    let done = deploy(&fake, &args, T);
    assert_eq!(done.code, 0, "{}", done.all());
    let v: serde_json::Value = serde_json::from_str(done.stdout.trim()).unwrap();
    assert_eq!(
        v["smoke"],
        serde_json::json!([{"path": "/health", "status": 200}, {"path": "/livez", "status": 204}])
    );
    // The URL came from the service's serviceDetails.url.
    assert_eq!(fake.calls(Call::Service).len(), 1);
    let smoke: Vec<String> = fake.smoke_seen().into_iter().map(|s| s.1).collect();
    assert_eq!(smoke, ["/health", "/livez"]);
}

#[test]
fn a_failing_smoke_path_without_rollback_exits_1_after_three_tries() {
    let mut options = Options::new(RENDER_API_KEY);
    options.smoke = vec![("/health", 503)];
    let fake = FakeRender::start(options);
    let done = deploy(&fake, &with(fast(), &["--smoke", "/health"]), T);
    assert_eq!(done.code, 1, "{}", done.all());
    assert!(
        done.stdout.contains("/health answered 503"),
        "{}",
        done.all()
    );
    assert!(done.stdout.contains("not rolled back"), "{}", done.all());
    assert_eq!(fake.smoke_seen().len(), 3);
    assert_eq!(fake.calls(Call::Rollback).len(), 0);
}

#[test]
fn a_failing_smoke_path_with_rollback_rolls_back_once_to_the_previous_live_deploy() {
    let mut options = Options::new(RENDER_API_KEY);
    options.smoke = vec![("/health", 500)];
    let fake = FakeRender::start(options);
    let args = with(
        fast(),
        &[
            "--smoke",
            "/health",
            "--rollback-on-failure",
            "--format",
            "json",
        ],
    );
    let done = deploy(&fake, &args, T);
    assert_eq!(done.code, 1, "{}", done.all());
    let rollbacks = fake.calls(Call::Rollback);
    assert_eq!(rollbacks.len(), 1, "{}", done.all());
    let body: serde_json::Value = serde_json::from_str(&rollbacks[0].body).unwrap();
    // dep-prev-live was live before; our deploy deactivated it, and the failed one in between
    // (dep-failed-earlier) is never a target.
    assert_eq!(body, serde_json::json!({"deployId": PREVIOUS_LIVE}));
    let v: serde_json::Value = serde_json::from_str(done.stdout.trim()).unwrap();
    assert_eq!(v["rolled_back_to"], PREVIOUS_LIVE);
    assert_eq!(v["status"], "live");
    // Followed to live: the rollback's deploy was polled until it went live.
    assert_eq!(fake.status_of("dep-rollback-2").as_deref(), Some("live"));
    assert!(done.stderr.contains("rollback live"), "{}", done.all());
}

#[test]
fn the_rollback_summary_says_whether_it_went_live() {
    let mut options = Options::new(RENDER_API_KEY);
    options.smoke = vec![("/health", 500)];
    options.rollback_plan = vec!["update_in_progress", "update_failed"];
    let fake = FakeRender::start(options);
    let done = deploy(
        &fake,
        &with(fast(), &["--smoke", "/health", "--rollback-on-failure"]),
        T,
    );
    assert_eq!(done.code, 1, "{}", done.all());
    assert!(
        done.stdout
            .contains("the rollback did NOT go live (update_failed)"),
        "{}",
        done.all()
    );

    let mut options = Options::new(RENDER_API_KEY);
    options.smoke = vec![("/health", 500)];
    let fake = FakeRender::start(options);
    let done = deploy(
        &fake,
        &with(fast(), &["--smoke", "/health", "--rollback-on-failure"]),
        T,
    );
    assert_eq!(done.code, 1, "{}", done.all());
    assert!(
        done.stdout.contains(&format!(
            "rolled back to {PREVIOUS_LIVE}: the rollback is live"
        )),
        "{}",
        done.all()
    );
}

#[test]
fn a_refused_key_exits_77_after_at_most_two_requests() {
    let fake = FakeRender::start(Options::new("rnd_someone-elses-key"));
    let done = deploy(&fake, &fast(), T);
    assert_eq!(done.code, 77, "{}", done.all());
    assert!(fake.seen().len() <= 2, "{:?}", fake.seen());
    assert!(
        done.stderr.contains("refused the API key (401)"),
        "{}",
        done.all()
    );
}

#[test]
fn a_deploy_that_does_not_finish_within_the_timeout_exits_75() {
    let mut options = Options::new(RENDER_API_KEY);
    options.plan = vec!["build_in_progress"];
    let fake = FakeRender::start(options);
    let done = deploy(&fake, &with(fast(), &["--timeout", "300ms"]), T);
    assert_eq!(done.code, 75, "{}", done.all());
    assert!(
        done.stdout.contains("last status: build_in_progress"),
        "{}",
        done.all()
    );
    assert!(done.took < Duration::from_secs(10), "{:?}", done.took);
}

#[test]
fn an_unreachable_api_exits_69_within_a_bounded_time() {
    let fake = FakeRender::start(Options::new(RENDER_API_KEY));
    let port = crate::support::free_port();
    let env = crate::support::env::with(
        env(&fake),
        &[("RENDER_API_URL", &format!("http://127.0.0.1:{port}/v1"))],
    );
    let done = deploy_env(&fake, &fast(), &env, T);
    assert_eq!(done.code, 69, "{}", done.all());
    assert!(done.stderr.contains("unreachable"), "{}", done.all());
    assert!(done.took < Duration::from_secs(15), "{:?}", done.took);
}

#[test]
fn bad_configuration_exits_78_listing_every_problem_without_the_key() {
    let fake = FakeRender::start(Options::new(RENDER_API_KEY));
    let env = vec![
        (
            "RENDER_API_KEY".to_owned(),
            format!("{RENDER_API_KEY} trailing"),
        ),
        (
            "RENDER_API_URL".to_owned(),
            "http://api.render.example/v1".to_owned(),
        ),
    ];
    let done = deploy_env(&fake, &["--smoke", "health", "--timeout", "soon"], &env, T);
    assert_eq!(done.code, 78, "{}", done.all());
    for expected in [
        "RENDER_API_KEY: does not match the expected form",
        "RENDER_API_URL: must be https://",
        "RENDER_SERVICE_ID: is not set",
        "--timeout: expected a duration",
        "--smoke: \"health\" is not a path",
        "--smoke: needs --wait",
    ] {
        assert!(
            done.stderr.contains(expected),
            "missing {expected:?}: {}",
            done.all()
        );
    }
    assert!(
        fake.seen().is_empty(),
        "a request was made despite the errors"
    );
}

#[test]
fn without_an_api_key_the_deploy_hook_is_used_and_wait_is_refused() {
    use crate::support::fake_hook::{FakeHook, accepted};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let hook = runtime.block_on(FakeHook::start(vec![accepted("dep-from-hook")]));
    let fake = FakeRender::start(Options::new(RENDER_API_KEY));
    let env = vec![("RENDER_DEPLOY_HOOK_URL".to_owned(), hook.url.clone())];
    let done = deploy_env(&fake, &[], &env, T);
    assert_eq!(done.code, 0, "{}", done.all());
    assert!(done.stdout.contains("dep-from-hook"), "{}", done.all());
    assert_eq!(hook.requests(), 1);

    let done = deploy_env(&fake, &["--wait"], &env, T);
    assert_eq!(done.code, 78, "{}", done.all());
    assert!(
        done.stderr.contains("--wait: needs RENDER_API_KEY"),
        "{}",
        done.all()
    );
    assert_eq!(
        hook.requests(),
        1,
        "no deploy started when the command was refused"
    );
    assert!(fake.seen().is_empty());
}
