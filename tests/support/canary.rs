//! The one canary set: secret values that must never appear in anything the program prints,
//! logs, answers or puts in a URL. Every test that hands the program a secret takes it from here,
//! and every leak check searches for [`ALL`].

use base64::Engine;

/// The password inside `DATABASE_URL`.
pub const DB_PASSWORD: &str = "CanaryDbPw-5b1e";
/// `OPENAI_API_KEY`.
pub const OPENAI_API_KEY: &str = "sk-CanaryOpenAiQwErTyUiOp";
/// `TWILIO_AUTH_TOKEN`.
pub const TWILIO_AUTH_TOKEN: &str = "feedfacefeedfacefeedfacefeedface";
/// `RENDER_DEPLOY_HOOK_SECRET` in its raw form (at least 32 bytes, used as key bytes).
pub const HOOK_SECRET: &str = "CanaryHookSecret-ZyXwVuTsRqPoNmLkJi";
/// The key bytes of [`hook_secret_whsec`], the Standard Webhooks form the service tests sign with.
pub const HOOK_SECRET_RAW: &[u8] = b"CANARY-hook-secret-bytes-0123456";
/// `METRICS_TOKEN`.
pub const METRICS_TOKEN: &str = "CanaryMetricsToken-77";
/// The `key` of a deploy hook URL (`RENDER_DEPLOY_HOOK_URL`, and the stand-in hook's URL).
pub const HOOK_URL_KEY: &str = "CanaryHookUrlKey99";
/// `RENDER_API_KEY` (the stand-in for Render's API accepts it as `Authorization: Bearer …`).
pub const RENDER_API_KEY: &str = "rnd_CanaryRenderApiKey42";

/// Not a secret, but valid: `TWILIO_ACCOUNT_SID`.
pub const TWILIO_ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";

/// `whsec_` + base64 of [`HOOK_SECRET_RAW`].
pub fn hook_secret_whsec() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(HOOK_SECRET_RAW)
    )
}

/// The canaries that [`super::env::with_optional_secrets`] hands over, each in the one form it
/// has there.
pub const IN_ENV: [&str; 7] = [
    DB_PASSWORD,
    OPENAI_API_KEY,
    TWILIO_AUTH_TOKEN,
    HOOK_SECRET,
    METRICS_TOKEN,
    HOOK_URL_KEY,
    RENDER_API_KEY,
];

/// Every canary, in every form it is handed over in.
pub fn all() -> Vec<String> {
    vec![
        DB_PASSWORD.to_owned(),
        OPENAI_API_KEY.to_owned(),
        TWILIO_AUTH_TOKEN.to_owned(),
        HOOK_SECRET.to_owned(),
        String::from_utf8(HOOK_SECRET_RAW.to_vec()).expect("ASCII"),
        hook_secret_whsec(),
        METRICS_TOKEN.to_owned(),
        HOOK_URL_KEY.to_owned(),
        RENDER_API_KEY.to_owned(),
    ]
}

/// Panics naming the first canary found in `output`.
pub fn assert_none_in(output: &str, context: &str) {
    for canary in all() {
        assert!(
            !output.contains(&canary),
            "{canary} leaked ({context}):\n{output}"
        );
    }
}
