//! The schema engine's unit tests.

use std::ffi::OsString;

use base64::Engine;

use super::*;

fn schema(text: &str) -> Schema {
    Schema::parse(text, "test.toml").unwrap()
}

fn check(schema: &Schema, vars: &[(&str, &str)]) -> Report {
    schema.check(&vars.iter().copied().collect(), Mode::Serve)
}

#[test]
fn the_builtin_schema_parses_and_requires_the_contracts_variables() {
    assert_eq!(
        builtin_required_variables(),
        [
            "DATABASE_URL",
            "PORT",
            "APP_ENV",
            "OPENAI_API_KEY",
            "TWILIO_ACCOUNT_SID",
            "TWILIO_AUTH_TOKEN",
            "RENDER_DEPLOY_HOOK_SECRET",
        ]
    );
}

#[test]
fn the_example_values_of_the_original_documentation_are_placeholders() {
    for v in [
        "your_key",
        "your_secret",
        "your_sid",
        "your_token",
        "YOUR_API_KEY",
        "your-api-key",
        "changeme",
        "ChangeMe123",
        "xxx",
        "XXXXXX",
        "sk-xxxxxxxxxxxxxxxxxxxxxxxx",
        "sk-...",
        "whsec_…",
        "AC...",
        "ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "<...>",
        "<your key>",
        "postgres://<user>:<password>@<host>/db",
        "postgres://user:your_password@host/db",
        "",
        "   ",
        "\t",
        "TODO",
    ] {
        assert!(is_placeholder(v), "{v:?} should be a placeholder");
    }
}

#[test]
fn real_looking_values_are_not_placeholders() {
    for v in [
        "production",
        "10000",
        "sk-abcdefghijklmnopqrstuvwx",
        "AC0123456789abcdef0123456789abcdef",
        "postgres://app:pw@dpg-abc123-a.oregon-postgres.render.com/app",
        "https://yourdomain-notes.onrender.com",
        "0.0.0.0",
        "a < b and c > d",
        "wait... no",
        "sk-abc.def.ghi",
        "x",
        "box",
    ] {
        assert!(!is_placeholder(v), "{v:?} should not be a placeholder");
    }
}

#[test]
fn problems_come_in_schema_order_and_all_at_once() {
    let s = schema(
        r#"
        [ZED]
        required = true
        [ALPHA]
        kind = "integer"
        [MIDDLE]
        kind = "bool"
        "#,
    );
    let r = check(&s, &[("ALPHA", "x"), ("MIDDLE", "maybe")]);
    let vars: Vec<&str> = r.problems.iter().map(|p| p.var.as_str()).collect();
    assert_eq!(vars, ["ZED", "ALPHA", "MIDDLE"]);
    let names: Vec<&str> = r.summary.iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["ZED", "ALPHA", "MIDDLE"]);
}

#[test]
fn a_pattern_must_match_the_whole_value() {
    let s = schema("[SID]\nkind = \"regex\"\npattern = 'AC[0-9a-f]{4}'\n");
    assert!(check(&s, &[("SID", "AC12ab")]).is_ok());
    assert!(!check(&s, &[("SID", "AC12abc")]).is_ok());
    assert!(!check(&s, &[("SID", "xAC12ab")]).is_ok());
    assert_eq!(s.rule("SID").unwrap().pattern(), Some("AC[0-9a-f]{4}"));
}

#[test]
fn a_secret_value_never_appears_in_a_problem() {
    let s = schema(
        r#"
        [TOKEN]
        secret = true
        kind = "regex"
        pattern = "[0-9]+"
        [NUM]
        secret = true
        kind = "integer"
        max = 5
        [KEY]
        secret = true
        min_length = 40
        "#,
    );
    let canary = "Canary7Secret";
    let r = check(
        &s,
        &[
            ("TOKEN", canary),
            ("NUM", "999999"),
            ("KEY", "Canary7Secret-short"),
        ],
    );
    assert_eq!(r.problems.len(), 3);
    for p in &r.problems {
        assert!(!p.to_string().contains("Canary7"), "{p}");
        assert!(!p.to_string().contains("999999"), "{p}");
    }
    let r = check(&s, &[("TOKEN", "12345"), ("KEY", &"k".repeat(40))]);
    assert_eq!(r.summary.get("TOKEN"), Some("set (secret)"));
    assert!(!format!("{r:?}").contains("12345"));
}

#[test]
fn a_non_secret_value_is_quoted_escaped_so_it_cannot_forge_a_line() {
    let s = schema("[PORT]\nkind = \"port\"\n");
    let r = check(&s, &[("PORT", "1\nFAKE: forged line")]);
    let shown = r.problems[0].to_string();
    assert!(!shown.contains('\n'), "{shown}");
    assert!(shown.starts_with("PORT: \"1\\nFAKE"), "{shown}");
}

#[test]
fn a_long_value_is_cut_in_messages() {
    let s = schema("[N]\nkind = \"integer\"\n");
    let r = check(&s, &[("N", &"é".repeat(10_000))]);
    assert!(
        r.problems[0].problem.chars().count() < 120,
        "{}",
        r.problems[0]
    );
}

#[test]
fn webhook_secrets_follow_the_contracts_lengths() {
    let s = schema("[S]\nkind = \"webhook-secret\"\nsecret = true\n");
    let b64 = |n: usize| {
        format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(vec![7u8; n])
        )
    };
    assert!(check(&s, &[("S", &b64(24))]).is_ok());
    assert!(check(&s, &[("S", &b64(64))]).is_ok());
    assert!(check(&s, &[("S", &"r".repeat(32))]).is_ok());
    for bad in [b64(16), b64(65), "r".repeat(31), "whsec_!!!".to_owned()] {
        let r = check(&s, &[("S", &bad)]);
        assert_eq!(r.problems.len(), 1, "{bad}");
        assert_eq!(r.problems[0].kind, ProblemKind::Invalid);
    }
}

#[test]
fn booleans_accept_the_usual_spellings() {
    let s = schema("[B]\nkind = \"bool\"\n");
    for (v, want) in [("true", true), ("YES", true), ("1", true), ("off", false)] {
        let r = check(&s, &[("B", v)]);
        assert!(
            matches!(r.value("B"), Some(Parsed::Bool(b)) if *b == want),
            "{v}"
        );
    }
    assert!(!check(&s, &[("B", "maybe")]).is_ok());
}

#[test]
fn an_alias_is_read_when_the_variable_is_unset_and_a_conflict_is_reported() {
    let s = schema(
        "[APP_ENV]\nrequired = true\nkind = \"enum\"\nvalues = [\"production\", \"testing\"]\naliases = [\"FLASK_ENV\"]\n",
    );
    let r = check(&s, &[("FLASK_ENV", "production")]);
    assert!(r.is_ok());
    assert_eq!(
        r.source("APP_ENV"),
        Some(&Source::Alias("FLASK_ENV".into()))
    );
    let r = check(&s, &[("FLASK_ENV", "prod")]);
    assert_eq!(r.problems[0].var, "FLASK_ENV");
    let r = check(&s, &[("APP_ENV", "production"), ("FLASK_ENV", "testing")]);
    assert_eq!(r.problems[0].kind, ProblemKind::Conflict);
    let r = check(&s, &[("APP_ENV", "testing"), ("FLASK_ENV", "testing")]);
    assert!(r.is_ok());
    let r = check(&s, &[]);
    assert!(
        r.problems[0].problem.contains("nor FLASK_ENV"),
        "{}",
        r.problems[0]
    );
}

#[test]
fn dev_defaults_and_dev_optional_variables_apply_only_under_dev() {
    let s = schema(
        "[PORT]\nrequired = true\nkind = \"port\"\ndev_default = 10000\n[KEY]\nrequired = true\ndev_required = false\nsecret = true\n",
    );
    let serve = s.check(&Env::default(), Mode::Serve);
    assert_eq!(serve.problems.len(), 2);
    let dev = s.check(&Env::default(), Mode::Dev);
    assert!(dev.is_ok(), "{:?}", dev.problems);
    assert!(matches!(dev.value("PORT"), Some(Parsed::Port(10000))));
    assert_eq!(dev.warnings.len(), 1);
    assert_eq!(dev.warnings[0].var, "KEY");
}

#[test]
fn a_non_utf8_value_is_a_problem_not_a_panic() {
    use std::os::unix::ffi::OsStringExt;
    let env = Env::from_os([(
        OsString::from("PORT"),
        OsString::from_vec(vec![0x31, 0xff, 0xfe]),
    )]);
    let r = schema("[PORT]\nkind = \"port\"\n").check(&env, Mode::Serve);
    assert_eq!(r.problems[0].kind, ProblemKind::NotUtf8);
}

#[test]
fn malformed_schemas_are_refused_with_their_position() {
    let cases = [
        ("[A]\nkind = \"colour\"\n", "schema test.toml:2:8:"),
        ("[A]\nrequierd = true\n", "schema test.toml:2:1:"),
        ("[A\n", "schema test.toml:1:"),
        ("A = 5\n", "schema test.toml:1:5:"),
        (
            "[A]\nkind = \"enum\"\n",
            "schema test.toml:1: A: kind \"enum\" needs",
        ),
        (
            "\n[B]\nkind = \"regex\"\n",
            "schema test.toml:2: B: kind \"regex\" needs",
        ),
        (
            "[A]\nkind = \"regex\"\npattern = \"(\"\n",
            "not a valid regular expression",
        ),
        (
            "[A]\nkind = \"port\"\ndefault = 70000\n",
            "`default` is invalid",
        ),
        (
            "[A]\nrequired = true\ndefault = \"x\"\n",
            "cannot have a `default`",
        ),
        (
            "[A]\nkind = \"bool\"\nmin = 1\n",
            "`min`, `max` and `reserved`",
        ),
        (
            "[A]\nkind = \"integer\"\nmin = 5\nmax = 1\n",
            "min 5 is greater",
        ),
        ("[\"A B\"]\n", "not a valid variable name"),
        (
            "[A]\ndefault = 1.5\n",
            "must be a string, an integer or a boolean",
        ),
    ];
    for (text, want) in cases {
        let err = Schema::parse(text, "test.toml").unwrap_err().to_string();
        assert!(err.contains(want), "{text:?}: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[test]
fn an_empty_schema_accepts_any_environment() {
    let r = check(&schema(""), &[("ANYTHING", "your_key")]);
    assert!(r.is_ok());
}

#[test]
fn extra_values_are_accepted_beside_the_kinds_own_form() {
    let s = schema("[MAX]\nkind = \"integer\"\nmin = 1\nvalues = [\"auto\"]\n");
    assert!(
        matches!(check(&s, &[("MAX", "auto")]).value("MAX"), Some(Parsed::Text(t)) if t == "auto")
    );
    assert!(matches!(
        check(&s, &[("MAX", "7")]).value("MAX"),
        Some(Parsed::Integer(7))
    ));
    let r = check(&s, &[("MAX", "0")]);
    assert!(
        r.problems[0]
            .problem
            .contains("expected auto, or an integer of at least 1"),
        "{}",
        r.problems[0]
    );
}
