//! The one valid environment: every required variable of §3 set to a valid canary value. Tests
//! change or remove one variable from it, so that each test's failure names exactly one cause.

use super::canary::*;

/// The required variables, valid, for a database that need not exist (`check-env`, `Config`).
pub fn required() -> Vec<(String, String)> {
    [
        (
            "DATABASE_URL",
            format!("postgres://app:{DB_PASSWORD}@db.internal:5432/app?sslmode=require"),
        ),
        ("PORT", "10000".to_owned()),
        ("APP_ENV", "production".to_owned()),
        ("OPENAI_API_KEY", OPENAI_API_KEY.to_owned()),
        ("TWILIO_ACCOUNT_SID", TWILIO_ACCOUNT_SID.to_owned()),
        ("TWILIO_AUTH_TOKEN", TWILIO_AUTH_TOKEN.to_owned()),
        ("RENDER_DEPLOY_HOOK_SECRET", HOOK_SECRET.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// [`required`] plus the optional secrets (`METRICS_TOKEN`, `RENDER_DEPLOY_HOOK_URL`,
/// `RENDER_API_KEY`).
pub fn with_optional_secrets() -> Vec<(String, String)> {
    with(
        required(),
        &[
            ("METRICS_TOKEN", METRICS_TOKEN),
            (
                "RENDER_DEPLOY_HOOK_URL",
                &format!("https://api.render.com/deploy/srv-abc?key={HOOK_URL_KEY}"),
            ),
            ("RENDER_API_KEY", RENDER_API_KEY),
        ],
    )
}

/// `env` with each of `changes` set (replacing an earlier value of the same name).
pub fn with(mut env: Vec<(String, String)>, changes: &[(&str, &str)]) -> Vec<(String, String)> {
    for (name, value) in changes {
        env.retain(|(k, _)| k != name);
        env.push(((*name).to_owned(), (*value).to_owned()));
    }
    env
}

/// The production environment of `serve` against a real database on loopback: [`required`] with
/// that database, `port` on 127.0.0.1, the Standard Webhooks secret the tests sign with, and a
/// small pool.
pub fn service(database_url: &str, port: u16) -> Vec<(String, String)> {
    with(
        required(),
        &[
            ("DATABASE_URL", database_url),
            ("PORT", &port.to_string()),
            ("HOST", "127.0.0.1"),
            ("RENDER_DEPLOY_HOOK_SECRET", &hook_secret_whsec()),
            ("DB_POOL_MAX", "4"),
        ],
    )
}
