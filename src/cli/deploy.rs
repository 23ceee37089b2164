//! `render-deploy deploy`: deploy through Render's API, follow it, smoke-test it, roll back
//! (contract §2, §9). The flags and variables are checked here, every problem at once; the work
//! is [`crate::render_api::deploy`]; the printing is [`super::deploy_output`].

use std::process::ExitCode;
use std::time::Instant;

use super::deploy_output::{EXIT_REFUSED, Format, Printer, exit_code, hook_json};
use super::{EXIT_CONFIG, EXIT_UNAVAILABLE};
use crate::config::{DeploySettings, Env};
use crate::rehearse::parse_duration;
use crate::render_api::create::CreateRequest;
use crate::render_api::deploy::{Plan, run as run_plan};
use crate::render_api::smoke::SmokePolicy;
use crate::render_api::{DeployHookClient, DeployHookUrl, RenderApi, RetryPolicy};

/// For tests only: a duration that replaces the 2 s between smoke tries and the retry back-off
/// (base and cap), so that a test of a retry does not wait seconds. Never needed in use.
pub const TEST_DELAY_ENV: &str = "RENDER_DEPLOY_TEST_DELAY";

/// Arguments of `deploy`.
///
/// Durations are written `5s`, `200ms` or `30m` (a bare number is seconds).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The service to deploy (default: RENDER_SERVICE_ID).
    #[arg(long, value_name = "ID")]
    pub service: Option<String>,
    /// The Git commit to deploy (default: the latest on the service's branch).
    #[arg(long, value_name = "SHA", conflicts_with = "image")]
    pub commit: Option<String>,
    /// The image to deploy, for an image-backed service.
    #[arg(long, value_name = "URL")]
    pub image: Option<String>,
    /// Clear the build cache before building.
    #[arg(long)]
    pub clear_cache: bool,
    /// Follow the deploy until it is live or has failed.
    #[arg(long)]
    pub wait: bool,
    /// The longest wait for the deploy (and for a rollback).
    #[arg(long, value_name = "D", default_value = "30m")]
    pub timeout: String,
    /// Time between two polls of the deploy's status.
    #[arg(long, value_name = "D", default_value = "5s")]
    pub poll_interval: String,
    /// The service's URL for the smoke test (default: the service's URL on Render).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// A path that must answer 2xx once the deploy is live (repeatable; needs --wait).
    #[arg(long, value_name = "PATH")]
    pub smoke: Vec<String>,
    /// Roll back to the previous live deploy when a smoke path fails (needs --wait).
    #[arg(long)]
    pub rollback_on_failure: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Where the deploy goes: the API, or the deploy hook when there is no API key.
enum Route {
    Api(RenderApi, Box<Plan>),
    Hook(DeployHookClient, Option<String>),
}

/// Runs `deploy`; the exit code of §2.
pub fn run(args: Args) -> ExitCode {
    let started = Instant::now();
    let route = match configure(&args, &Env::from_process()) {
        Ok(route) => route,
        Err(problems) => {
            for p in problems {
                eprintln!("render-deploy deploy: {p}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("render-deploy deploy: could not start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match route {
        Route::Api(api, plan) => {
            let mut printer = Printer::new(args.format, started);
            let report =
                runtime.block_on(run_plan(&api, &plan, started, &mut |e| printer.event(e)));
            printer.finish(&report);
            ExitCode::from(exit_code(&report.verdict))
        }
        Route::Hook(client, service) => {
            runtime.block_on(through_hook(client, service, args.format, started))
        }
    }
}

/// `deploy` without an API key: fire the deploy hook, as `trigger` does.
async fn through_hook(
    client: DeployHookClient,
    service: Option<String>,
    format: Format,
    started: Instant,
) -> ExitCode {
    use crate::render_api::TriggerError;
    match client.trigger().await {
        Ok(triggered) => {
            match format {
                Format::Json => println!(
                    "{}",
                    hook_json(
                        triggered.deploy_id.as_deref(),
                        service.as_deref(),
                        started.elapsed()
                    )
                ),
                Format::Text => match &triggered.deploy_id {
                    Some(id) => println!("{id}: deploy started through the deploy hook"),
                    None => println!(
                        "deploy started through the deploy hook (no deploy id in Render's answer)"
                    ),
                },
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "render-deploy deploy: {}",
                crate::telemetry::error_chain(&e)
            );
            let code = match e {
                TriggerError::Connect { .. }
                | TriggerError::GaveUp { .. }
                | TriggerError::Timeout { .. } => EXIT_UNAVAILABLE,
                TriggerError::Rejected {
                    status: 401 | 403, ..
                } => EXIT_REFUSED,
                _ => 1,
            };
            ExitCode::from(code)
        }
    }
}

/// Reads the variables (through the built-in schema, as every variable of the program) and the
/// flags into a route, or every problem found.
fn configure(args: &Args, env: &Env) -> Result<Route, Vec<String>> {
    let (settings, found) = DeploySettings::from_environment(env);
    let mut problems: Vec<String> = found.iter().map(ToString::to_string).collect();
    let test_delay = env.get(TEST_DELAY_ENV).and_then(|v| parse_duration(v).ok());
    let mut policy = RetryPolicy::default();
    let mut smoke_policy = SmokePolicy::default();
    if let Some(d) = test_delay {
        policy.base_delay = d;
        policy.max_delay = d;
        smoke_policy.spacing = d;
    }
    // Set but empty counts as given: a missing GitHub secret arrives as "", and silently
    // falling back on the hook would hide that.
    let key_given = env.get("RENDER_API_KEY").is_some();
    if !key_given && let Some(hook) = settings.deploy_hook_url {
        return hook_route(args, hook, settings.service_id, policy, problems);
    }
    if !key_given {
        problems.push(
            "RENDER_API_KEY: is not set (expected a Render API key, rnd_...; or set RENDER_DEPLOY_HOOK_URL to deploy through the hook)"
                .to_owned(),
        );
    }
    let service = service_id(args, settings.service_id, &mut problems);
    let plan = check_flags(
        args,
        service.unwrap_or_default(),
        smoke_policy,
        &mut problems,
    );
    match (
        problems.is_empty(),
        settings.api_key,
        settings.api_url,
        plan,
    ) {
        (true, Some(key), Some(base), Some(plan)) => RenderApi::new(base, key, policy)
            .map(|api| Route::Api(api, Box::new(plan)))
            .map_err(|e| vec![crate::telemetry::error_chain(&e)]),
        _ => Err(problems),
    }
}

/// `--service` or `RENDER_SERVICE_ID`: it goes into URL paths, so only an id's characters.
fn service_id(args: &Args, from_env: Option<String>, problems: &mut Vec<String>) -> Option<String> {
    let (value, name) = match &args.service {
        Some(s) => (Some(s.clone()), "--service"),
        None => (from_env, "RENDER_SERVICE_ID"),
    };
    match value {
        None => {
            problems.push(
                "RENDER_SERVICE_ID: is not set and --service is not given (expected srv-...)"
                    .to_owned(),
            );
            None
        }
        Some(v) if is_id(&v) => Some(v),
        Some(_) => {
            problems.push(format!(
                "{name}: is not a service id (expected srv- and letters or digits)"
            ));
            None
        }
    }
}

fn is_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The flags of the API route, checked; `None` when any is wrong (each problem pushed).
fn check_flags(
    args: &Args,
    service: String,
    smoke_policy: SmokePolicy,
    problems: &mut Vec<String>,
) -> Option<Plan> {
    let before = problems.len();
    let duration = |flag: &str, text: &str, problems: &mut Vec<String>| match parse_duration(text) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            problems.push(format!("{flag}: must be more than zero"));
            None
        }
        Err(e) => {
            problems.push(format!("{flag}: {e}"));
            None
        }
    };
    let timeout = duration("--timeout", &args.timeout, problems);
    let poll = duration("--poll-interval", &args.poll_interval, problems);
    if let Some(c) = &args.commit
        && (!(4..=64).contains(&c.len()) || !c.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        problems
            .push("--commit: is not a commit SHA (expected 4 to 64 hexadecimal digits)".to_owned());
    }
    if let Some(i) = &args.image
        && (i.trim().is_empty() || i.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        problems
            .push("--image: is not an image URL (expected e.g. docker.io/org/app:tag)".to_owned());
    }
    if let Some(u) = &args.url
        && !url::Url::parse(u)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
    {
        problems.push(
            "--url: is not an http(s) URL (expected e.g. https://app.onrender.com)".to_owned(),
        );
    }
    for p in &args.smoke {
        if !p.starts_with('/') || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
            problems.push(format!(
                "--smoke: {p:?} is not a path (expected e.g. /health)"
            ));
        }
    }
    if !args.wait && !args.smoke.is_empty() {
        problems
            .push("--smoke: needs --wait (the smoke test runs once the deploy is live)".to_owned());
    }
    if !args.wait && args.rollback_on_failure {
        problems.push("--rollback-on-failure: needs --wait and --smoke (it rolls back when a smoke path fails)".to_owned());
    } else if args.rollback_on_failure && args.smoke.is_empty() {
        problems.push(
            "--rollback-on-failure: needs --smoke (it rolls back when a smoke path fails)"
                .to_owned(),
        );
    }
    if problems.len() > before {
        return None;
    }
    Some(Plan {
        service,
        request: CreateRequest {
            clear_cache: args.clear_cache,
            commit: args.commit.clone(),
            image: args.image.clone(),
        },
        wait: args.wait,
        poll: poll?,
        timeout: timeout?,
        url: args.url.clone(),
        smoke: args.smoke.clone(),
        rollback_on_failure: args.rollback_on_failure,
        smoke_policy,
    })
}

/// The hook route: only a plain deploy can go through it; anything else needs the API.
fn hook_route(
    args: &Args,
    url: DeployHookUrl,
    service: Option<String>,
    policy: RetryPolicy,
    mut problems: Vec<String>,
) -> Result<Route, Vec<String>> {
    let needs_api = |what: &str| {
        format!(
            "{what}: needs RENDER_API_KEY (without it, deploy goes through RENDER_DEPLOY_HOOK_URL, which starts a deploy but cannot follow, smoke-test or roll it back)"
        )
    };
    let asked = [
        ("--wait", args.wait),
        ("--smoke", !args.smoke.is_empty()),
        ("--rollback-on-failure", args.rollback_on_failure),
        ("--commit", args.commit.is_some()),
        ("--image", args.image.is_some()),
        ("--clear-cache", args.clear_cache),
    ];
    problems.extend(
        asked
            .iter()
            .filter(|(_, on)| *on)
            .map(|(flag, _)| needs_api(flag)),
    );
    if !problems.is_empty() {
        return Err(problems);
    }
    DeployHookClient::with_policy(url, policy)
        .map(|c| Route::Hook(c, service))
        .map_err(|e| vec![crate::telemetry::error_chain(&e)])
}
