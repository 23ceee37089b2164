//! `render-deploy check-env`, run as the real binary with a cleared environment.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::canary::{
    DB_PASSWORD, HOOK_SECRET, HOOK_URL_KEY as HOOK_KEY, METRICS_TOKEN as METRICS,
    OPENAI_API_KEY as OPENAI, TWILIO_AUTH_TOKEN as TWILIO_TOKEN,
};
use crate::support::env;
const CANARIES: [&str; 7] = crate::support::canary::IN_ENV;

fn valid() -> Vec<(String, String)> {
    env::with_optional_secrets()
}

fn with(changes: &[(&str, &str)]) -> Vec<(String, String)> {
    env::with(valid(), changes)
}

fn without(var: &str) -> Vec<(String, String)> {
    valid().into_iter().filter(|(k, _)| k != var).collect()
}

fn check_env<K, V>(env: impl IntoIterator<Item = (K, V)>, args: &[&str]) -> Output
where
    K: Into<OsString>,
    V: Into<OsString>,
{
    let env: Vec<(OsString, OsString)> =
        env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    Command::new(env!("CARGO_BIN_EXE_render-deploy"))
        .arg("check-env")
        .args(args)
        .env_clear()
        .envs(env)
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[test]
fn a_valid_environment_exits_0_with_a_redacted_summary() {
    let out = check_env(valid(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("configuration is valid\n"), "{text}");
    assert!(
        text.contains("postgres://app:****@db.internal:5432/app?sslmode=require"),
        "{text}"
    );
    assert!(
        text.contains("https://api.render.com/deploy/srv-abc?key=****"),
        "{text}"
    );
    assert!(
        text.contains("OPENAI_API_KEY             set (secret)"),
        "{text}"
    );
    assert!(
        text.contains("HEALTH_CACHE_TTL           60 (default)"),
        "{text}"
    );
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn each_missing_required_variable_exits_78_and_is_named_on_stderr() {
    for var in render_deploy::schema::builtin_required_variables() {
        let out = check_env(without(var), &[]);
        assert_eq!(out.status.code(), Some(78), "{var}");
        let err = stderr(&out);
        assert!(err.starts_with(&format!("{var}: is not set")), "{err}");
        assert!(err.lines().next().unwrap().contains("(expected "), "{err}");
        assert!(
            err.ends_with("configuration is invalid: 1 problem\n"),
            "{err}"
        );
        assert!(stdout(&out).is_empty());
    }
}

#[test]
fn malformed_values_exit_78_with_one_line_each() {
    for (var, value) in [
        ("PORT", "abc"),
        ("PORT", "0"),
        ("PORT", "70000"),
        ("PORT", "18012"),
        ("DATABASE_URL", "mysql://u:p@h/db"),
        ("DATABASE_URL", "postgres://"),
        ("DATABASE_URL", "postgres://u:p@h/db?sslmode=bogus"),
        ("TWILIO_ACCOUNT_SID", "AC123"),
        ("OPENAI_API_KEY", "your_key"),
        ("TWILIO_ACCOUNT_SID", "your_sid"),
        ("TWILIO_AUTH_TOKEN", "your_token"),
        ("RENDER_DEPLOY_HOOK_SECRET", "your_secret"),
        // The original documentation's examples, each for the variable it was written for.
        ("DATABASE_URL", "postgresql://user:pass@host:5432/db"),
        ("OPENAI_API_KEY", "sk-..."),
    ] {
        let out = check_env(with(&[(var, value)]), &[]);
        assert_eq!(out.status.code(), Some(78), "{var}={value}");
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{err}");
        assert!(lines[0].starts_with(&format!("{var}: ")), "{err}");
        assert!(lines[0].contains("(expected "), "{err}");
    }
}

#[test]
fn everything_wrong_at_once_is_reported_in_one_run() {
    let env = [
        ("DATABASE_URL", "postgres://"),
        ("PORT", "18012"),
        ("APP_ENV", "prod"),
        ("OPENAI_API_KEY", "your_key"),
        ("TWILIO_ACCOUNT_SID", "AC123"),
        ("TWILIO_AUTH_TOKEN", "your_token"),
        ("RENDER_DEPLOY_HOOK_SECRET", "your_secret"),
    ];
    let out = check_env(env, &[]);
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    for (var, _) in env {
        assert!(
            err.lines().any(|l| l.starts_with(&format!("{var}: "))),
            "{var}:\n{err}"
        );
    }
    assert!(
        err.ends_with("configuration is invalid: 7 problems\n"),
        "{err}"
    );

    let out = check_env(env, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(78));
    let v = json(&out);
    let vars: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["var"].as_str().unwrap())
        .collect();
    assert_eq!(vars, env.map(|(k, _)| k));
}

#[test]
fn flask_env_production_is_accepted() {
    let mut env = without("APP_ENV");
    env.push(("FLASK_ENV".into(), "production".into()));
    let out = check_env(env, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("production (from FLASK_ENV)"));
}

#[test]
fn json_output_parses_and_has_ok_problems_and_summary() {
    let out = check_env(valid(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["problems"], Value::Array(vec![]));
    assert_eq!(v["summary"]["PORT"], "10000");
    assert_eq!(v["summary"]["OPENAI_API_KEY"], "set (secret)");
    assert_eq!(v["summary"]["LOG_FORMAT"], "json (default in production)");
    assert!(v.get("error").is_none());

    let out = check_env(with(&[("PORT", "abc")]), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(out.stderr.is_empty(), "json goes to stdout only");
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"][0]["var"], "PORT");
    assert!(
        v["problems"][0]["problem"]
            .as_str()
            .unwrap()
            .contains("not a port number")
    );
    assert_eq!(v["summary"]["PORT"], "invalid");
}

#[test]
fn no_canary_secret_appears_in_any_output() {
    let invalid = with(&[
        ("DATABASE_URL", &format!("mysql://app:{DB_PASSWORD}@h/db")),
        ("OPENAI_API_KEY", &format!("{OPENAI} with spaces")),
        ("TWILIO_AUTH_TOKEN", &format!("{TWILIO_TOKEN}0")),
        ("RENDER_DEPLOY_HOOK_SECRET", &format!("whsec_{HOOK_SECRET}")),
        ("METRICS_TOKEN", &format!("your_{METRICS}")),
        (
            "RENDER_DEPLOY_HOOK_URL",
            &format!("ftp://h/x?key={HOOK_KEY}"),
        ),
    ]);
    let half_wrong = with(&[
        ("PORT", "abc"),
        (
            "DATABASE_URL",
            &format!("postgresql://app@db/app?password={DB_PASSWORD}&sslmode=nope"),
        ),
    ]);
    let mut runs = 0;
    for (env, code) in [(valid(), 0), (invalid, 78), (half_wrong, 78)] {
        for args in [
            &[][..],
            &["--format", "json"][..],
            &["--format", "text"][..],
        ] {
            let out = check_env(env.clone(), args);
            assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
            let all = format!("{}\n{}", stdout(&out), stderr(&out));
            for canary in CANARIES {
                assert!(!all.contains(canary), "{canary} leaked:\n{all}");
                // Not even in part: no 8-character piece of it.
                let bytes = canary.as_bytes();
                for piece in bytes.windows(8) {
                    let piece = std::str::from_utf8(piece).unwrap();
                    assert!(!all.contains(piece), "{piece} of {canary} leaked:\n{all}");
                }
            }
            runs += 1;
        }
    }
    assert_eq!(runs, 9);
}

#[test]
fn a_custom_schema_validates_another_applications_variables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.toml");
    std::fs::write(
        &path,
        r#"
[REDIS_URL]
required = true
secret = true
kind = "url"

[WORKERS]
kind = "integer"
min = 1
max = 64
default = 4

[MODE]
required = true
kind = "enum"
values = ["fast", "safe"]
"#,
    )
    .unwrap();
    let schema = path.to_str().unwrap();

    let out = check_env(
        [
            ("REDIS_URL", "redis://:CanaryRedisPw@cache:6379"),
            ("MODE", "fast"),
        ],
        &["--schema", schema],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("REDIS_URL  set (secret)"), "{text}");
    assert!(text.contains("WORKERS    4 (default)"), "{text}");
    assert!(
        !text.contains("DATABASE_URL"),
        "the built-in schema is not used: {text}"
    );
    assert!(!text.contains("CanaryRedisPw"));

    let out = check_env(
        [("REDIS_URL", "CanaryRedisPw"), ("WORKERS", "100")],
        &["--schema", schema, "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(78));
    let v = json(&out);
    assert_eq!(v["ok"], false);
    let problems: Vec<String> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}: {}",
                p["var"].as_str().unwrap(),
                p["problem"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        problems,
        [
            "REDIS_URL: is not an absolute URL with a host (expected an absolute URL such as https://example.com)",
            "WORKERS: \"100\" is out of range (expected an integer from 1 to 64)",
            "MODE: is not set (expected one of fast, safe)",
        ]
    );
    assert!(!stdout(&out).contains("CanaryRedisPw"));
}

#[test]
fn a_malformed_schema_file_exits_78_with_its_position() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "[PORT]\nkind = \"port\"\nrequried = true").unwrap();
    let path = file.path().to_str().unwrap().to_owned();

    let out = check_env(valid(), &["--schema", &path]);
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("schema {path}:3:1: unknown field `requried`")),
        "{err}"
    );
    assert!(stdout(&out).is_empty());

    let out = check_env(valid(), &["--schema", &path, "--format", "json"]);
    assert_eq!(out.status.code(), Some(78));
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert!(
        v["error"].as_str().unwrap().contains(":3:1: unknown field"),
        "{v}"
    );
    assert_eq!(v["problems"], Value::Array(vec![]));
}

#[test]
fn a_missing_schema_file_exits_78_and_says_so() {
    let out = check_env(valid(), &["--schema", "/nonexistent/schema.toml"]);
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(
        err.starts_with(
            "schema /nonexistent/schema.toml: cannot be read: No such file or directory"
        ),
        "{err}"
    );
}

#[test]
fn hostile_environment_values_never_make_it_panic() {
    let mut env: Vec<(OsString, OsString)> = valid()
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    env.push(("PORT".into(), OsString::from_vec(vec![b'8', 0xff, 0xfe])));
    env.push(("APP_ENV".into(), OsString::from_vec(vec![0xc3, 0x28])));
    env.push(("HOST".into(), "\u{202e}0.0.0.0\u{200b}".into()));
    env.push(("TWILIO_ACCOUNT_SID".into(), "9".repeat(100_000).into()));
    env.push((OsString::from_vec(vec![0xff, b'N']), "x".into()));
    for args in [&[][..], &["--format", "json"][..]] {
        let out = check_env(env.clone(), args);
        assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!all.contains("panicked"), "{all}");
        assert!(all.len() < 20_000, "output is bounded");
        for var in ["PORT", "APP_ENV", "HOST", "TWILIO_ACCOUNT_SID"] {
            let named = if args.is_empty() {
                format!("{var}: ")
            } else {
                format!("\"var\": \"{var}\"")
            };
            assert!(all.contains(&named), "{var}: {all}");
        }
    }
}

#[test]
fn connect_reports_the_server_and_the_pool_size_serve_would_choose() {
    let pg = render_deploy::local_postgres::LocalPostgres::start_with(
        render_deploy::local_postgres::LocalPostgresOptions {
            max_connections: 40,
            ..Default::default()
        },
    )
    .expect("throwaway PostgreSQL");
    let url = pg.url("postgres");
    let env = with(&[("DATABASE_URL", &url), ("RENDER_CPU_COUNT", "8")]);
    let out = check_env(env.clone(), &["--connect"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("database reachable: PostgreSQL 1"), "{text}");
    assert!(text.contains("max_connections  40"), "{text}");

    let out = check_env(env, &["--connect", "--format", "json"]);
    let json: Value = serde_json::from_str(&stdout(&out)).expect("one JSON document");
    assert_eq!(json["ok"], true);
    // min(2 × 8 + 1, ⌊(40 − 3 − 10) / 2⌋) = min(17, 13) = 13
    assert_eq!(json["database"]["chosen"], 13, "{json}");
    assert_eq!(json["database"]["max_connections"], 40);
}

#[test]
fn connect_exits_69_when_the_database_is_unreachable_and_78_when_it_refuses_us() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nothing = format!("postgres://app:{DB_PASSWORD}@127.0.0.1:{port}/app?sslmode=disable");
    let out = check_env(
        with(&[("DATABASE_URL", &nothing), ("DB_CONNECT_TIMEOUT", "2")]),
        &["--connect"],
    );
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(!stderr(&out).contains(DB_PASSWORD));

    let pg = render_deploy::local_postgres::LocalPostgres::start().expect("throwaway PostgreSQL");
    let wrong = format!(
        "postgres://postgres:{DB_PASSWORD}@127.0.0.1:{}/postgres?sslmode=disable",
        pg.port()
    );
    let out = check_env(with(&[("DATABASE_URL", &wrong)]), &["--connect"]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("authentication"), "{}", stderr(&out));
    assert!(!stderr(&out).contains(DB_PASSWORD), "{}", stderr(&out));

    // An invalid environment is still reported as such first, without connecting.
    let out = check_env(without("PORT"), &["--connect"]);
    assert_eq!(out.status.code(), Some(78));
}
