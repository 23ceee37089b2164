//! The shutdown signal of a served `Deployment`: a handler's long poll and a task spawned with
//! `deployment.shutdown()` both end when draining begins, so the drain is not held open; and
//! the request id, the other extractor the server provides.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use render_deploy::Deployment;
use render_deploy::config::{Config, Mode};
use render_deploy::local_postgres::LocalPostgres;
use render_deploy::server::{RequestId, Shutdown};
use tokio::sync::mpsc;

use crate::support::canary;

#[tokio::test]
async fn a_long_poll_and_a_background_task_end_when_draining_begins() {
    let pg = LocalPostgres::start().unwrap();
    let url = pg.create_database().await.unwrap();
    let config = Config::from_vars(
        [
            ("DATABASE_URL", url.as_str()),
            ("PORT", "10000"),
            ("APP_ENV", "production"),
            ("OPENAI_API_KEY", canary::OPENAI_API_KEY),
            ("TWILIO_ACCOUNT_SID", canary::TWILIO_ACCOUNT_SID),
            ("TWILIO_AUTH_TOKEN", canary::TWILIO_AUTH_TOKEN),
            ("RENDER_DEPLOY_HOOK_SECRET", canary::HOOK_SECRET),
            ("SHUTDOWN_TIMEOUT", "25"),
            ("DB_POOL_MAX", "2"),
        ],
        Mode::Serve,
    )
    .unwrap();
    let deployment = Deployment::new(config).unwrap();

    let background = deployment.shutdown();
    assert!(!background.is_draining());
    let task = tokio::spawn(async move { background.draining().await });

    let (waiting, mut handler_waits) = mpsc::unbounded_channel::<()>();
    let long_poll = move |shutdown: Shutdown| {
        let waiting = waiting.clone();
        async move {
            let _ = waiting.send(());
            shutdown.draining().await;
            "draining, come back later"
        }
    };
    let app = Router::new()
        .route("/poll", get(long_poll))
        .route("/id", get(|id: RequestId| async move { id.to_string() }))
        .merge(deployment.routes());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(deployment.serve_with(listener, app, async {
        let _ = stopped.await;
    }));

    let poll = tokio::spawn(async move {
        crate::support::reqwest_client()
            .get(format!("http://127.0.0.1:{port}/poll"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    // The request id is an extractor too: the caller's, or the one the answer's header gives.
    let client = crate::support::reqwest_client();
    let mine = client
        .get(format!("http://127.0.0.1:{port}/id"))
        .header("x-request-id", "caller-id-7")
        .send()
        .await
        .unwrap();
    assert_eq!(mine.text().await.unwrap(), "caller-id-7");
    let made = client
        .get(format!("http://127.0.0.1:{port}/id"))
        .send()
        .await
        .unwrap();
    let header = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made.text().await.unwrap(), header);
    assert_eq!(header.len(), 32);

    let within = Duration::from_secs(10);
    tokio::time::timeout(within, handler_waits.recv())
        .await
        .expect("the handler got the signal and is waiting on it")
        .unwrap();
    stop.send(()).unwrap();

    let answer = tokio::time::timeout(within, poll).await.unwrap().unwrap();
    assert_eq!(answer, "draining, come back later");
    tokio::time::timeout(within, task).await.unwrap().unwrap();
    let report = tokio::time::timeout(within, server).await.unwrap().unwrap();
    assert_eq!(report.cut_off, 0, "{report:?}");
    assert!(report.took < Duration::from_secs(5), "{report:?}");
}
