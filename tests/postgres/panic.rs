//! A handler that panics: the client gets a JSON 500, the log gets the location, and no
//! secret (not even one inside the panic's own message) reaches the output, at TRACE level.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use render_deploy::config::{Config, Mode};
use render_deploy::local_postgres::LocalPostgres;
use render_deploy::{Deployment, telemetry};

use crate::support::canary::{
    HOOK_SECRET as CANARY_HOOK, METRICS_TOKEN as CANARY_METRICS, OPENAI_API_KEY as CANARY_OPENAI,
    TWILIO_AUTH_TOKEN as CANARY_TOKEN,
};

const CANARY_IN_MESSAGE: &str = "CANARY-in-the-panic-message";

async fn boom() -> &'static str {
    panic!("boom: {CANARY_IN_MESSAGE} {CANARY_OPENAI}")
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_handler_panic_is_answered_500_and_no_secret_reaches_the_log() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();
    telemetry::install_panic_hook();

    let pg = LocalPostgres::start().unwrap();
    let url = pg.create_database().await.unwrap();
    let db_password = secrecy::ExposeSecret::expose_secret(pg.password()).to_owned();
    let config = Config::from_vars(
        [
            ("DATABASE_URL", url.as_str()),
            ("PORT", "10000"),
            ("APP_ENV", "production"),
            ("OPENAI_API_KEY", CANARY_OPENAI),
            ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
            ("TWILIO_AUTH_TOKEN", CANARY_TOKEN),
            ("RENDER_DEPLOY_HOOK_SECRET", CANARY_HOOK),
            ("METRICS_TOKEN", CANARY_METRICS),
            ("DB_POOL_MAX", "2"),
        ],
        Mode::Serve,
    )
    .unwrap();
    let deployment = Deployment::new(config).unwrap();
    let app = Router::new()
        .route("/boom", get(boom))
        .merge(deployment.routes());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(deployment.serve_with(listener, app, async {
        let _ = stopped.await;
    }));

    let client = crate::support::reqwest_client();
    let boom = client
        .get(format!("http://127.0.0.1:{port}/boom"))
        .send()
        .await
        .unwrap();
    assert_eq!(boom.status(), 500);
    assert!(boom.headers().contains_key("x-request-id"));
    let body: serde_json::Value = boom.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"error": "internal error"}));

    // The connection survived the panic: the server still answers.
    let health = client
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success() || health.status() == 503);
    let metrics = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .bearer_auth(CANARY_METRICS)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);

    stop.send(()).unwrap();
    server.await.unwrap();

    let out = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        out.contains("message withheld"),
        "the panic was not logged:\n{out}"
    );
    assert!(
        out.contains("\"status\":500"),
        "the 500 was not logged:\n{out}"
    );
    // The line about the 500 carries the request's id, like every event of its request.
    let answered = out
        .lines()
        .find(|l| l.contains("a request handler panicked"))
        .unwrap_or_else(|| panic!("no line about the 500:\n{out}"));
    assert!(answered.contains("\"request_id\""), "{answered}");
    for canary in [
        CANARY_OPENAI,
        CANARY_TOKEN,
        CANARY_HOOK,
        CANARY_METRICS,
        CANARY_IN_MESSAGE,
        &db_password,
    ] {
        assert!(!out.contains(canary), "{canary} leaked:\n{out}");
    }
}
