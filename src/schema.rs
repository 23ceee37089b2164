//! Variable rules as data (built-in or a user's TOML file) and the engine that applies them.

/// The variables this service requires in production (from the built-in schema); the
/// blueprint checker uses this list. `PORT` is among them, though Render sets it.
pub fn builtin_required_variables() -> Vec<&'static str> {
    vec![
        "DATABASE_URL",
        "PORT",
        "APP_ENV",
        "OPENAI_API_KEY",
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "RENDER_DEPLOY_HOOK_SECRET",
    ]
}
