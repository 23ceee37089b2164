//! The configuration contract (§3) through the library: the whole environment matrix.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::IpAddr;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

use render_deploy::config::{AppEnv, Config, ConfigErrors, Env, Mode};
use render_deploy::health::DbPolicy;
use render_deploy::pool::PoolMax;
use render_deploy::replay::ReplayStoreKind;
use render_deploy::schema::{ProblemKind, builtin_required_variables};
use render_deploy::telemetry::LogFormat;
use secrecy::ExposeSecret;

use crate::support::canary::{
    DB_PASSWORD, HOOK_SECRET, HOOK_URL_KEY as HOOK_KEY, METRICS_TOKEN as METRICS,
    OPENAI_API_KEY as OPENAI, TWILIO_AUTH_TOKEN as TWILIO_TOKEN,
};
use crate::support::env;

fn valid() -> HashMap<String, String> {
    env::required().into_iter().collect()
}

fn with(changes: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env = valid();
    for (k, v) in changes {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    env
}

fn errors(vars: HashMap<String, String>) -> ConfigErrors {
    match Config::from_vars(vars, Mode::Serve) {
        Ok(_) => panic!("expected the configuration to be refused"),
        Err(e) => e,
    }
}

#[test]
fn a_complete_production_environment_gives_a_typed_configuration_with_the_defaults() {
    let config = Config::from_vars(valid(), Mode::Serve).unwrap();
    assert_eq!(config.port, 10000);
    assert_eq!(config.host, "0.0.0.0".parse::<IpAddr>().unwrap());
    assert_eq!(config.app_env, AppEnv::Production);
    assert_eq!(config.database_url.host(), "db.internal");
    assert_eq!(
        config.openai_api_key.as_ref().unwrap().expose_secret(),
        OPENAI
    );
    assert!(config.deploy_hook_secret.is_some());
    assert!(config.deploy_hook_url.is_none());
    assert!(config.metrics_token.is_none());
    assert_eq!(config.health, Default::default());
    assert_eq!(config.pool, Default::default());
    assert_eq!(config.hooks, Default::default());
    assert_eq!(config.shutdown_timeout, Duration::from_secs(25));
    assert_eq!(config.request_timeout, Duration::from_secs(30));
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.render, Default::default());
    assert!(config.warnings.is_empty());
}

#[test]
fn every_optional_variable_is_read_into_its_setting() {
    let config = Config::from_vars(
        with(&[
            ("HOST", "::"),
            ("HEALTH_CACHE_TTL", "30"),
            ("HEALTH_FAILURE_TTL", "0"),
            ("HEALTH_PROBE_TIMEOUT", "3"),
            ("HEALTH_DB_POLICY", "strict"),
            ("DB_POOL_MAX", "12"),
            ("DB_POOL_MIN_IDLE", "2"),
            ("DB_POOL_TIMEOUT", "7"),
            ("DB_CONNECT_TIMEOUT", "8"),
            ("DB_MAX_LIFETIME", "600"),
            ("DB_POOL_INSTANCES", "3"),
            ("DB_PGBOUNCER", "true"),
            ("SHUTDOWN_TIMEOUT", "20"),
            ("REQUEST_TIMEOUT", "10"),
            ("WEBHOOK_TOLERANCE", "60"),
            ("WEBHOOK_MAX_BODY", "4096"),
            ("WEBHOOK_REPLAY_STORE", "postgres"),
            ("METRICS_TOKEN", METRICS),
            ("LOG_FORMAT", "pretty"),
            (
                "RENDER_DEPLOY_HOOK_URL",
                &format!("https://api.render.com/deploy/srv-abc?key={HOOK_KEY}"),
            ),
            ("RENDER", "true"),
            ("RENDER_SERVICE_ID", "srv-abc"),
            ("RENDER_SERVICE_NAME", "notes"),
            ("RENDER_INSTANCE_ID", "srv-abc-5d4f"),
            ("RENDER_GIT_COMMIT", "0a1b2c3"),
            ("RENDER_CPU_COUNT", "2"),
            ("RENDER_EXTERNAL_URL", "https://notes.onrender.com"),
        ]),
        Mode::Serve,
    )
    .unwrap();
    assert_eq!(config.host, "::".parse::<IpAddr>().unwrap());
    assert_eq!(config.health.cache_ttl, Duration::from_secs(30));
    assert_eq!(config.health.failure_ttl, Duration::ZERO);
    assert_eq!(config.health.probe_timeout, Duration::from_secs(3));
    assert_eq!(config.health.db_policy, DbPolicy::Strict);
    assert_eq!(config.pool.max, PoolMax::Fixed(12));
    assert_eq!(config.pool.min_idle, 2);
    assert_eq!(config.pool.wait_timeout, Duration::from_secs(7));
    assert_eq!(config.pool.connect_timeout, Duration::from_secs(8));
    assert_eq!(config.pool.max_lifetime, Duration::from_secs(600));
    assert_eq!(config.pool.instances, 3);
    assert!(config.pool.pgbouncer);
    assert_eq!(config.pool.cpus, Some(2));
    assert_eq!(config.shutdown_timeout, Duration::from_secs(20));
    assert_eq!(config.request_timeout, Duration::from_secs(10));
    assert_eq!(config.hooks.tolerance, Duration::from_secs(60));
    assert_eq!(config.hooks.max_body, 4096);
    assert_eq!(config.hooks.replay_store, ReplayStoreKind::Postgres);
    assert_eq!(
        config.metrics_token.as_ref().unwrap().expose_secret(),
        METRICS
    );
    assert_eq!(config.log_format, LogFormat::Pretty);
    assert_eq!(
        config.deploy_hook_url.as_ref().unwrap().redacted(),
        "https://api.render.com/deploy/srv-abc?key=****"
    );
    assert!(config.render.on_render);
    assert_eq!(config.render.service_id.as_deref(), Some("srv-abc"));
    assert_eq!(config.render.service_name.as_deref(), Some("notes"));
    assert_eq!(config.render.instance_id.as_deref(), Some("srv-abc-5d4f"));
    assert_eq!(config.render.git_commit.as_deref(), Some("0a1b2c3"));
    assert_eq!(
        config.render.external_url.as_deref(),
        Some("https://notes.onrender.com")
    );
}

#[test]
fn each_required_variable_when_missing_is_the_one_problem_named() {
    for var in builtin_required_variables() {
        let mut env = valid();
        env.remove(var);
        let errors = errors(env);
        assert_eq!(errors.problems.len(), 1, "{var}: {errors}");
        assert_eq!(errors.problems[0].var, var);
        assert_eq!(errors.problems[0].kind, ProblemKind::Missing);
        assert!(
            errors
                .to_string()
                .starts_with(&format!("{var}: is not set")),
            "{errors}"
        );
    }
}

#[test]
fn each_malformed_value_is_named_with_what_was_expected() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "PORT",
            "abc",
            "PORT: \"abc\" is not a port number (expected a port from 1 to 65535",
        ),
        ("PORT", "0", "PORT: \"0\" is out of range"),
        ("PORT", "70000", "PORT: \"70000\" is out of range"),
        ("PORT", "-1", "PORT: \"-1\" is out of range"),
        ("PORT", "18012", "PORT: \"18012\" is reserved by Render"),
        ("PORT", "18013", "is reserved by Render"),
        ("PORT", "19099", "is reserved by Render"),
        (
            "DATABASE_URL",
            "mysql://u:p@h/db",
            "DATABASE_URL: has scheme `mysql` (expected postgres:// or postgresql://)",
        ),
        ("DATABASE_URL", "postgres://", "DATABASE_URL: has no host"),
        (
            "DATABASE_URL",
            "postgres://u:p@h",
            "DATABASE_URL: has no database name",
        ),
        (
            "DATABASE_URL",
            "postgres://u:p@h/db?sslmode=sometimes",
            "DATABASE_URL: has sslmode `sometimes` (expected one of disable, prefer, require, verify-ca, verify-full)",
        ),
        ("DATABASE_URL", "not a url", "DATABASE_URL: is not a URL"),
        (
            "APP_ENV",
            "prod",
            "APP_ENV: \"prod\" is not one of the accepted values (expected one of production, development, testing)",
        ),
        (
            "OPENAI_API_KEY",
            "pk-abcdefghijklmnopqrstuvwx",
            "OPENAI_API_KEY: does not match the expected form (expected sk- followed by",
        ),
        (
            "OPENAI_API_KEY",
            "sk-short",
            "OPENAI_API_KEY: does not match",
        ),
        (
            "OPENAI_API_KEY",
            "sk-abcdefghij klmnopqrstuvwx",
            "OPENAI_API_KEY: does not match",
        ),
        (
            "TWILIO_ACCOUNT_SID",
            "AC123",
            "TWILIO_ACCOUNT_SID: \"AC123\" does not match the expected form (expected AC followed by 32 hexadecimal digits)",
        ),
        (
            "TWILIO_AUTH_TOKEN",
            "0123456789abcdef0123456789abcdeg",
            "TWILIO_AUTH_TOKEN: does not match the expected form (expected 32 hexadecimal digits)",
        ),
        (
            "RENDER_DEPLOY_HOOK_SECRET",
            "too-short",
            "RENDER_DEPLOY_HOOK_SECRET: is shorter than 32 bytes (expected whsec_ + base64 of 24–64 bytes",
        ),
        (
            "RENDER_DEPLOY_HOOK_SECRET",
            "whsec_AAAA",
            "RENDER_DEPLOY_HOOK_SECRET: decodes to fewer than 24 bytes",
        ),
        (
            "RENDER_DEPLOY_HOOK_SECRET",
            "whsec_not base64 at all, really not",
            "starts with whsec_ but the rest is not valid base64",
        ),
        (
            "HOST",
            "localhost",
            "HOST: \"localhost\" is not an IP address",
        ),
        (
            "HEALTH_CACHE_TTL",
            "-5",
            "HEALTH_CACHE_TTL: \"-5\" is out of range",
        ),
        (
            "HEALTH_PROBE_TIMEOUT",
            "5",
            "HEALTH_PROBE_TIMEOUT: \"5\" is out of range (expected 1 to 4 seconds",
        ),
        (
            "HEALTH_DB_POLICY",
            "lenient",
            "HEALTH_DB_POLICY: \"lenient\" is not one of the accepted values (expected one of gate-startup, strict, ignore)",
        ),
        (
            "DB_POOL_MAX",
            "0",
            "DB_POOL_MAX: \"0\" is out of range (expected auto, or an integer from 1 to 10000)",
        ),
        (
            "DB_POOL_MAX",
            "many",
            "DB_POOL_MAX: \"many\" is not an integer",
        ),
        (
            "DB_PGBOUNCER",
            "maybe",
            "DB_PGBOUNCER: \"maybe\" is not a boolean (expected true or false)",
        ),
        (
            "SHUTDOWN_TIMEOUT",
            "1000",
            "SHUTDOWN_TIMEOUT: \"1000\" is out of range",
        ),
        (
            "WEBHOOK_REPLAY_STORE",
            "redis",
            "WEBHOOK_REPLAY_STORE: \"redis\" is not one of the accepted values",
        ),
        (
            "METRICS_TOKEN",
            "short",
            "METRICS_TOKEN: is shorter than 16 characters",
        ),
        (
            "LOG_FORMAT",
            "xml",
            "LOG_FORMAT: \"xml\" is not one of the accepted values (expected one of json, pretty)",
        ),
        (
            "RENDER_DEPLOY_HOOK_URL",
            "ftp://api.render.com/deploy",
            "RENDER_DEPLOY_HOOK_URL: is not an http(s) URL",
        ),
        (
            "RENDER_CPU_COUNT",
            "0",
            "RENDER_CPU_COUNT: \"0\" is out of range",
        ),
        (
            "RENDER_EXTERNAL_URL",
            "notes.onrender.com",
            "RENDER_EXTERNAL_URL: \"notes.onrender.com\" is not an absolute URL",
        ),
        ("PORT", " 10000", "PORT: has leading or trailing whitespace"),
    ];
    for (var, value, want) in cases {
        let errors = errors(with(&[(var, value)]));
        assert_eq!(errors.problems.len(), 1, "{var}={value:?}: {errors}");
        assert!(
            errors.to_string().contains(want),
            "{var}={value:?}: {errors}"
        );
    }
}

#[test]
fn the_original_examples_placeholders_are_refused_for_every_variable() {
    let placeholders = [
        "your_key",
        "your_sid",
        "your_token",
        "your_secret",
        "changeme",
        "xxx",
        "<...>",
        "",
        "   ",
    ];
    // Every variable of the schema, required or optional, secret or not.
    for rule in render_deploy::schema::Schema::builtin().rules() {
        for value in placeholders {
            let errors = errors(with(&[(&rule.name, value)]));
            assert_eq!(
                errors.problems.len(),
                1,
                "{}={value:?}: {errors}",
                rule.name
            );
            let p = &errors.problems[0];
            assert_eq!(p.var, rule.name);
            assert!(
                matches!(p.kind, ProblemKind::Placeholder | ProblemKind::Empty),
                "{}={value:?}: {p}",
                rule.name
            );
        }
    }
    let errors = errors(with(&[("TWILIO_ACCOUNT_SID", "your_sid")]));
    assert_eq!(
        errors.to_string(),
        "TWILIO_ACCOUNT_SID: \"your_sid\" is a placeholder, not a real value (expected AC followed by 32 hexadecimal digits)"
    );
    let errors = errors_of(&[("OPENAI_API_KEY", "your_key")]);
    assert_eq!(
        errors.to_string(),
        "OPENAI_API_KEY: is a placeholder, not a real value (expected sk- followed by at least 17 characters, no whitespace)"
    );
}

/// The original documentation's example environment, one variable at a time: each value is
/// refused for the variable it was written for, and only that variable is reported.
const ORIGINAL_EXAMPLES: [(&str, &str); 6] = [
    ("DATABASE_URL", "postgresql://user:pass@host:5432/db"),
    ("DATABASE_URL", "postgres://user:pass@host:5432/db"),
    ("OPENAI_API_KEY", "sk-..."),
    ("TWILIO_ACCOUNT_SID", "your_sid"),
    ("TWILIO_AUTH_TOKEN", "your_token"),
    ("RENDER_DEPLOY_HOOK_SECRET", "your_secret"),
];

#[test]
fn the_original_documentations_example_values_are_refused_for_their_variables() {
    for (var, value) in ORIGINAL_EXAMPLES {
        let errors = errors_of(&[(var, value)]);
        assert_eq!(errors.problems.len(), 1, "{var}={value}: {errors}");
        let p = &errors.problems[0];
        assert_eq!(p.var, var, "{var}={value}: {errors}");
        assert_eq!(p.kind, ProblemKind::Placeholder, "{var}={value}: {errors}");
    }
    // The URL is well-formed, so only its being the example refuses it; its password is not
    // shown (not even the example's).
    let shown = errors_of(&[ORIGINAL_EXAMPLES[0]]).to_string();
    assert_eq!(
        shown.lines().next().unwrap(),
        "DATABASE_URL: is the documentation's example, not a real value (expected postgres://USER:PASSWORD@HOST:PORT/DATABASE)",
    );
    assert!(!shown.contains("user:pass"), "{shown}");
    // The same shape with real parts is accepted.
    let real = with(&[(
        "DATABASE_URL",
        "postgresql://app:s3cr3t@dpg-abc123-a:5432/app",
    )]);
    if let Err(e) = Config::from_vars(real, Mode::Serve) {
        panic!("a real URL of the same shape is refused: {e}");
    }
}

fn errors_of(changes: &[(&str, &str)]) -> ConfigErrors {
    errors(with(changes))
}

#[test]
fn every_problem_is_reported_in_one_pass() {
    let vars: HashMap<&str, &str> = [
        ("DATABASE_URL", "mysql://u:p@h/db"),
        ("PORT", "abc"),
        ("APP_ENV", "staging"),
        ("OPENAI_API_KEY", "your_key"),
        ("TWILIO_ACCOUNT_SID", "your_sid"),
        ("TWILIO_AUTH_TOKEN", "your_token"),
        ("RENDER_DEPLOY_HOOK_SECRET", "your_secret"),
        ("HOST", "somewhere"),
        ("DB_POOL_MAX", "0"),
        ("HEALTH_DB_POLICY", "never"),
        ("LOG_FORMAT", "xml"),
    ]
    .into_iter()
    .collect();
    let errors = Config::from_vars(vars.clone(), Mode::Serve).unwrap_err();
    let named: Vec<&str> = errors.problems.iter().map(|p| p.var.as_str()).collect();
    for var in vars.keys() {
        assert!(named.contains(var), "{var} missing from:\n{errors}");
    }
    assert_eq!(errors.problems.len(), vars.len(), "{errors}");
    // Display: one problem per line.
    assert_eq!(errors.to_string().lines().count(), vars.len());
}

#[test]
fn flask_env_is_accepted_as_app_env() {
    let mut env = valid();
    env.remove("APP_ENV");
    env.insert("FLASK_ENV".into(), "production".into());
    let config = Config::from_vars(env.clone(), Mode::Serve).unwrap();
    assert_eq!(config.app_env, AppEnv::Production);
    assert_eq!(
        config.summary().get("APP_ENV"),
        Some("production (from FLASK_ENV)")
    );

    env.insert("FLASK_ENV".into(), "prod".into());
    let errors = errors(env);
    assert_eq!(errors.problems[0].var, "FLASK_ENV", "{errors}");
}

#[test]
fn app_env_and_flask_env_that_disagree_are_a_problem() {
    let errors = errors_of(&[("FLASK_ENV", "development")]);
    assert_eq!(errors.problems.len(), 1);
    assert_eq!(errors.problems[0].kind, ProblemKind::Conflict);
    assert!(
        Config::from_vars(with(&[("FLASK_ENV", "production")]), Mode::Serve).is_ok(),
        "the same value twice is fine"
    );
}

#[test]
fn more_idle_connections_than_the_pool_may_hold_is_a_problem() {
    let errors = errors_of(&[("DB_POOL_MAX", "2"), ("DB_POOL_MIN_IDLE", "3")]);
    assert_eq!(
        errors.to_string(),
        "DB_POOL_MIN_IDLE: 3 is more than DB_POOL_MAX=2 (expected at most DB_POOL_MAX)"
    );
}

#[test]
fn log_format_defaults_to_json_in_production_and_pretty_otherwise() {
    for (env, want) in [
        ("production", LogFormat::Json),
        ("development", LogFormat::Pretty),
        ("testing", LogFormat::Pretty),
    ] {
        let config = Config::from_vars(with(&[("APP_ENV", env)]), Mode::Serve).unwrap();
        assert_eq!(config.log_format, want, "{env}");
    }
}

#[test]
fn dev_needs_only_a_database_url_and_warns_about_each_optional_secret() {
    // What the `dev` command does: read the environment, inject the throwaway cluster's URL.
    let mut env = Env::from_os(Vec::<(OsString, OsString)>::new());
    assert!(!env.contains("DATABASE_URL"));
    env.set("DATABASE_URL", "postgres://postgres:pw@127.0.0.1:5999/dev");
    let validation = Config::validate(&env, Mode::Dev);
    let config = validation.result.unwrap();
    assert_eq!(config.port, 10000);
    assert_eq!(config.app_env, AppEnv::Development);
    assert_eq!(config.log_format, LogFormat::Pretty);
    assert!(config.openai_api_key.is_none());
    assert!(config.twilio_account_sid.is_none());
    assert!(config.twilio_auth_token.is_none());
    assert!(config.deploy_hook_secret.is_none());
    let warned: Vec<&str> = config.warnings.iter().map(|w| w.var.as_str()).collect();
    assert_eq!(
        warned,
        [
            "OPENAI_API_KEY",
            "TWILIO_ACCOUNT_SID",
            "TWILIO_AUTH_TOKEN",
            "RENDER_DEPLOY_HOOK_SECRET"
        ]
    );

    // Explicit settings win over dev's defaults, and a set value must still be valid.
    env.set("PORT", "8080");
    env.set("APP_ENV", "testing");
    env.set("OPENAI_API_KEY", "your_key");
    let errors = Config::from_environment(&env, Mode::Dev).unwrap_err();
    assert_eq!(errors.problems.len(), 1, "{errors}");
    assert_eq!(errors.problems[0].var, "OPENAI_API_KEY");
    env.remove("OPENAI_API_KEY");
    let config = Config::from_environment(&env, Mode::Dev).unwrap();
    assert_eq!((config.port, config.app_env), (8080, AppEnv::Testing));

    // Without an injected URL, dev reports it like serve does.
    env.remove("DATABASE_URL");
    assert!(
        Config::from_environment(&env, Mode::Dev)
            .unwrap_err()
            .names("DATABASE_URL")
    );
}

#[test]
fn debug_of_the_configuration_and_of_its_errors_shows_no_secret() {
    let canaries = crate::support::canary::IN_ENV;
    let config = Config::from_vars(
        with(&[
            ("METRICS_TOKEN", METRICS),
            (
                "RENDER_DEPLOY_HOOK_URL",
                &format!("https://api.render.com/deploy/srv-abc?key={HOOK_KEY}"),
            ),
        ]),
        Mode::Serve,
    )
    .unwrap();
    let shown = format!("{config:?}\n{config:#?}\n{:?}", config.summary());
    for canary in canaries {
        assert!(!shown.contains(canary), "{canary} in {shown}");
    }
    assert!(shown.contains("app:****@db.internal"), "{shown}");

    let invalid = with(&[
        ("DATABASE_URL", &format!("mysql://u:{DB_PASSWORD}@h/db")),
        ("OPENAI_API_KEY", &format!("{OPENAI} x")),
        ("TWILIO_AUTH_TOKEN", &format!("{TWILIO_TOKEN}0")),
        ("RENDER_DEPLOY_HOOK_SECRET", &format!("whsec_{HOOK_SECRET}")),
        ("METRICS_TOKEN", &format!("your_{METRICS}")),
    ]);
    let validation = Config::validate(&invalid.into_iter().collect(), Mode::Serve);
    let errors = validation.result.as_ref().unwrap_err();
    assert_eq!(errors.problems.len(), 5, "{errors}");
    let shown = format!("{errors}\n{errors:?}\n{:?}", validation.summary);
    for canary in canaries {
        assert!(!shown.contains(canary), "{canary} in {shown}");
    }
}

#[test]
fn hostile_values_are_problems_never_panics() {
    let huge = "9".repeat(1 << 20);
    let unicode = "\u{202e}\u{0}ﷺ𝕏\u{feff}";
    for var in builtin_required_variables().into_iter().chain([
        "HOST",
        "DB_POOL_MAX",
        "RENDER_EXTERNAL_URL",
    ]) {
        for value in [huge.as_str(), unicode, "\u{0}", "%00", "postgres://%zz@/"] {
            let result = Config::from_vars(with(&[(var, value)]), Mode::Serve);
            if var == "RENDER_DEPLOY_HOOK_SECRET" && value == huge {
                // Any string of at least 32 bytes is a valid raw key, however long.
                assert!(result.is_ok());
                continue;
            }
            let errors = result.expect_err(var);
            assert!(errors.names(var), "{var}: {errors}");
            assert!(errors.to_string().len() < 1000, "{var}: message is bounded");
        }
    }
    // Non-UTF-8 bytes, as the OS may hand them over.
    let mut os: Vec<(OsString, OsString)> = valid()
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    os.push(("PORT".into(), OsString::from_vec(vec![b'8', 0xff, 0xc0])));
    os.push((OsString::from_vec(vec![0xff, b'X']), "ignored".into()));
    let errors = Config::from_environment(&Env::from_os(os), Mode::Serve).unwrap_err();
    assert_eq!(errors.problems.len(), 1, "{errors}");
    assert_eq!(errors.problems[0].kind, ProblemKind::NotUtf8);
}
