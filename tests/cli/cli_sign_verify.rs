//! `sign`, `verify` and `trigger` run as the real binary: published vectors, round trip, exit
//! codes, and canary secrets that must never appear in any output.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::support::fake_hook::{FakeHook, HOOK_URL_KEY, Reply, accepted};

const BIN: &str = env!("CARGO_BIN_EXE_render-deploy");
const V1_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const V1_BODY: &str = r#"{"test": 2432232314}"#;

fn run(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("RENDER_DEPLOY_HOOK_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    // The program may exit before reading (a bad secret): a broken pipe is expected then.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn vector_args() -> Vec<&'static str> {
    vec![
        "verify",
        "--secret-env",
        "HOOK_SECRET",
        "--header",
        "webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek",
        "--header",
        "Webhook-Timestamp: 1614265330",
        "--header",
        "WEBHOOK-SIGNATURE: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    ]
}

#[test]
fn verify_accepts_the_published_vector_with_now_and_prints_valid() {
    let mut args = vector_args();
    args.extend(["--now", "1614265330", "-"]);
    let out = run(&args, &[("HOOK_SECRET", V1_SECRET)], V1_BODY.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "valid\n");
    assert!(
        text(&out.stderr).contains("shorter than 32 bytes"),
        "24-byte key warns"
    );
}

#[test]
fn verify_explains_a_stale_or_tampered_delivery_on_stderr_with_exit_1() {
    let mut args = vector_args();
    args.extend(["--now", "1614265631"]);
    let out = run(&args, &[("HOOK_SECRET", V1_SECRET)], V1_BODY.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("timestamp too old"),
        "{}",
        text(&out.stderr)
    );

    let mut args = vector_args();
    args.extend(["--now", "1614265330", "--tolerance", "0"]);
    let out = run(
        &args,
        &[("HOOK_SECRET", V1_SECRET)],
        br#"{"test": 2432232315}"#,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no matching signature"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn verify_and_sign_exit_78_on_a_missing_or_bad_secret() {
    let mut args = vector_args();
    args.push("--now=1614265330");
    let out = run(&args, &[], V1_BODY.as_bytes());
    assert_eq!(out.status.code(), Some(78));
    let out = run(&args, &[("HOOK_SECRET", "")], V1_BODY.as_bytes());
    assert_eq!(out.status.code(), Some(78));
    let out = run(
        &["sign", "--secret-env", "HOOK_SECRET"],
        &[("HOOK_SECRET", "whsec_***")],
        b"{}",
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(
        !text(&out.stderr).contains("***"),
        "the value is never printed"
    );
}

#[test]
fn sign_reproduces_the_published_vector() {
    let out = run(
        &[
            "sign",
            "--secret-env",
            "S",
            "--id",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "--timestamp",
            "1614265330",
        ],
        &[("S", V1_SECRET)],
        V1_BODY.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek\nwebhook-timestamp: 1614265330\n\
         webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\n"
    );
}

#[test]
fn what_sign_prints_verify_accepts_back_for_both_schemes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payload.json");
    std::fs::write(&file, br#"{"type":"deploy_ended","data":{"id":"x"}}"#).unwrap();
    let file = file.to_str().unwrap();
    let secret = "a raw secret that is at least thirty-two bytes long";
    for scheme in ["standard", "github"] {
        let signed = run(
            &["sign", "--secret-env", "S", "--scheme", scheme, file],
            &[("S", secret)],
            b"",
        );
        assert_eq!(signed.status.code(), Some(0), "{}", text(&signed.stderr));
        assert!(
            signed.stderr.is_empty(),
            "no warning for a 32-byte key: {}",
            text(&signed.stderr)
        );
        let lines = text(&signed.stdout);
        let mut args = vec!["verify", "--secret-env", "S"];
        for line in lines.lines() {
            args.extend(["--header", line]);
        }
        args.push(file);
        let verified = run(&args, &[("S", secret)], b"");
        assert_eq!(
            verified.status.code(),
            Some(0),
            "{scheme}: {}",
            text(&verified.stderr)
        );
        assert_eq!(text(&verified.stdout), "valid\n");
        // The same headers with another secret: invalid.
        let refused = run(
            &args,
            &[("S", "another secret, also at least 32 bytes")],
            b"",
        );
        assert_eq!(refused.status.code(), Some(1), "{scheme}");
    }
}

#[test]
fn a_payload_of_many_chunks_is_signed_and_verified_over_its_exact_bytes_from_stdin_and_file() {
    use render_deploy::signature::{WebhookSecret, sign_github, sign_standard};
    // Several read chunks long, not a multiple of any buffer size, every byte value present.
    let payload: Vec<u8> = (0..3 * 1024 * 1024 + 7)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payload.bin");
    std::fs::write(&file, &payload).unwrap();
    let file = file.to_str().unwrap();
    let secret = "a raw secret that is at least thirty-two bytes long";
    let key = WebhookSecret::parse(secret).unwrap();
    let expected_standard = sign_standard(&key, "msg_big", 1_700_000_000, &payload);
    let expected_github = sign_github(&key, &payload);

    for (input, stdin) in [(file, &b""[..]), ("-", &payload[..])] {
        let signed = run(
            &[
                "sign",
                "--secret-env",
                "S",
                "--id",
                "msg_big",
                "--timestamp",
                "1700000000",
                input,
            ],
            &[("S", secret)],
            stdin,
        );
        assert_eq!(signed.status.code(), Some(0), "{}", text(&signed.stderr));
        let lines = text(&signed.stdout);
        assert!(
            lines.contains(&format!("webhook-signature: {expected_standard}")),
            "{input}: {lines}"
        );
        let github = run(
            &["sign", "--secret-env", "S", "--scheme", "github", input],
            &[("S", secret)],
            stdin,
        );
        assert!(
            text(&github.stdout).contains(&format!("X-Hub-Signature-256: {expected_github}")),
            "{input}: {}",
            text(&github.stdout)
        );

        let mut args = vec!["verify", "--secret-env", "S", "--now", "1700000000"];
        for line in lines.lines() {
            args.extend(["--header", line]);
        }
        args.push(input);
        let verified = run(&args, &[("S", secret)], stdin);
        assert_eq!(
            text(&verified.stdout),
            "valid\n",
            "{input}: {}",
            text(&verified.stderr)
        );

        // One byte changed in the last chunk: refused.
        let mut tampered = payload.clone();
        *tampered.last_mut().unwrap() ^= 1;
        let tampered_file = dir.path().join("tampered.bin");
        std::fs::write(&tampered_file, &tampered).unwrap();
        let tampered_input = if input == "-" {
            "-"
        } else {
            tampered_file.to_str().unwrap()
        };
        *args.last_mut().unwrap() = tampered_input;
        let refused = run(&args, &[("S", secret)], &tampered[..stdin.len()]);
        assert_eq!(
            refused.status.code(),
            Some(1),
            "{input}: {}",
            text(&refused.stdout)
        );
        assert!(
            text(&refused.stderr).starts_with("invalid:"),
            "{}",
            text(&refused.stderr)
        );
    }
}

#[test]
fn verify_reports_a_malformed_header_line() {
    let out = run(
        &["verify", "--secret-env", "S", "--header", "no colon here"],
        &[("S", V1_SECRET)],
        b"{}",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not `Name: value`"));
}

#[tokio::test]
async fn trigger_prints_the_deploy_id_and_exits_0() {
    let hook = FakeHook::start(vec![accepted("dep-cli123")]).await;
    let url = hook.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        run(&["trigger"], &[("RENDER_DEPLOY_HOOK_URL", &url)], b"")
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "dep-cli123\n");
    assert_eq!(hook.requests(), 1);
}

#[tokio::test]
async fn trigger_exits_1_on_a_refusal_or_a_missing_url() {
    let hook = FakeHook::start(vec![Reply::Status(404, None, "")]).await;
    let url = hook.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        run(
            &["trigger", "--url-env", "MY_HOOK"],
            &[("MY_HOOK", &url)],
            b"",
        )
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("404"), "{}", text(&out.stderr));
    assert_eq!(hook.requests(), 1);
    let out = run(&["trigger"], &[], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("RENDER_DEPLOY_HOOK_URL is not set"));
}

/// Canary secrets: neither the signing secret nor the hook URL's key appears in anything the
/// program prints, whatever the outcome.
#[tokio::test]
async fn the_secret_and_the_hook_key_never_appear_in_any_output() {
    let canary_secret = "whsec_Q0FOQVJZLWNhbmFyeS1DQU5BUlktY2FuYXJ5LTEyMzQ1Njc4";
    let canary_raw = "CANARY-raw-secret-that-is-long-enough-1234567890";
    let canary_bad = "whsec_CANARY!!notbase64";
    let mut outputs = Vec::new();
    for secret in [canary_secret, canary_raw, canary_bad] {
        for args in [
            vec!["sign", "--secret-env", "S"],
            vec!["sign", "--secret-env", "S", "--scheme", "github"],
            vec![
                "verify",
                "--secret-env",
                "S",
                "--header",
                "webhook-id: x",
                "--header",
                "webhook-timestamp: 1",
                "--header",
                "webhook-signature: v1,AAAA",
            ],
            vec![
                "verify",
                "--secret-env",
                "S",
                "--header",
                "x-hub-signature-256: sha256=00",
            ],
            vec!["sign", "--help"],
            vec!["verify", "--help"],
        ] {
            outputs.push((secret.to_owned(), run(&args, &[("S", secret)], b"{}")));
        }
    }
    let unreachable = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        format!("http://127.0.0.1:{port}/deploy/srv-x?key={HOOK_URL_KEY}")
    };
    let refusing = FakeHook::start(vec![Reply::Status(401, None, "bad key")]).await;
    let succeeding = FakeHook::start(vec![Reply::Status(503, None, ""), accepted("dep-ok")]).await;
    for url in [
        unreachable,
        refusing.url.clone(),
        succeeding.url.clone(),
        format!("ftp://h/?key={HOOK_URL_KEY}"),
    ] {
        let out = tokio::task::spawn_blocking(move || {
            let mut all = vec![run(&["trigger"], &[("RENDER_DEPLOY_HOOK_URL", &url)], b"")];
            all.push(run(
                &["trigger", "--help"],
                &[("RENDER_DEPLOY_HOOK_URL", &url)],
                b"",
            ));
            all
        })
        .await
        .unwrap();
        outputs.extend(out.into_iter().map(|o| (HOOK_URL_KEY.to_owned(), o)));
    }
    assert!(outputs.len() > 20);
    for (canary, out) in &outputs {
        let everything = format!("{}{}", text(&out.stdout), text(&out.stderr));
        let body = canary.strip_prefix("whsec_").unwrap_or(canary);
        assert!(!everything.contains(body), "canary leaked: {everything}");
        assert!(
            !everything.contains("CANARY"),
            "canary leaked: {everything}"
        );
    }
}
