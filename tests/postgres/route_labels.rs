//! The route label of a served `Deployment`'s requests (its metrics and its log line): the
//! route's template whichever way the middleware learns it (a static route once seen, a route
//! with parameters every time), for answers the handler gave and for those the middleware gave
//! instead (a timeout's 408, a panic's 500, a 405, the fallback's 404).

use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use render_deploy::Deployment;
use render_deploy::config::{Config, Mode};
use render_deploy::local_postgres::LocalPostgres;

use crate::support::canary;

const METRICS_TOKEN: &str = "route-labels-metrics-token";

async fn boom(Path(_n): Path<u32>) -> &'static str {
    panic!("a handler that panics, for its label");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_labelled_with_its_route_template() {
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
            ("METRICS_TOKEN", METRICS_TOKEN),
            ("REQUEST_TIMEOUT", "1"),
            ("DB_POOL_MAX", "2"),
        ],
        Mode::Serve,
    )
    .unwrap();
    let deployment = Deployment::new(config).unwrap();
    let app = Router::new()
        .route("/static", get(|| async { "static" }))
        .route(
            "/users/{id}",
            get(|Path(id): Path<u32>| async move { id.to_string() }),
        )
        .route("/slow/{n}", get(std::future::pending::<&'static str>))
        .route("/boom/{n}", get(boom))
        .nest(
            "/api",
            Router::new().route("/items", get(|| async { "items" })),
        )
        .merge(deployment.routes());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(deployment.serve_with(listener, app, async {
        let _ = stopped.await;
    }));

    // Each of the server's worker threads learns the static routes on its own; which thread
    // serves which request is the runtime's choice, and the labels do not depend on it.
    let client = crate::support::reqwest_client();
    let status = |method: reqwest::Method, path: &str| {
        let request = client.request(method, format!("{base}{path}"));
        let path = path.to_owned();
        async move {
            let response = request.send().await.unwrap();
            assert!(response.headers().contains_key("x-request-id"), "{path}");
            response.status().as_u16()
        }
    };
    // The 405 first, before the route has been seen, then after.
    assert_eq!(status(reqwest::Method::POST, "/static").await, 405);
    for _ in 0..20 {
        assert_eq!(status(reqwest::Method::GET, "/static").await, 200);
        assert_eq!(status(reqwest::Method::GET, "/api/items").await, 200);
        assert_eq!(status(reqwest::Method::GET, "/livez").await, 200);
    }
    assert_eq!(status(reqwest::Method::DELETE, "/static").await, 405);
    for id in 0..5 {
        assert_eq!(
            status(reqwest::Method::GET, &format!("/users/{id}")).await,
            200
        );
        assert_eq!(
            status(reqwest::Method::GET, &format!("/nope/{id}")).await,
            404
        );
    }
    // A near miss of a static route is not it.
    assert_eq!(status(reqwest::Method::GET, "/static/").await, 404);
    // Answered by the middleware, not the handler: the label is still the route's.
    assert_eq!(status(reqwest::Method::GET, "/slow/7").await, 408);
    assert_eq!(status(reqwest::Method::GET, "/boom/7").await, 500);

    let metrics = client
        .get(format!("{base}/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for counted in [
        r#"{route="/static",status="200"} 20"#,
        r#"{route="/static",status="405"} 2"#,
        r#"{route="/api/items",status="200"} 20"#,
        r#"{route="/livez",status="200"} 20"#,
        r#"{route="/users/{id}",status="200"} 5"#,
        r#"{route="unmatched",status="404"} 6"#,
        r#"{route="/slow/{n}",status="408"} 1"#,
        r#"{route="/boom/{n}",status="500"} 1"#,
    ] {
        let line = format!("render_deploy_http_requests_total{counted}\n");
        assert!(metrics.contains(&line), "no {line} in:\n{metrics}");
    }
    // No raw path became a label.
    for raw in ["/users/0", "/nope/0", "/slow/7", "/boom/7", "/static/"] {
        assert!(
            !metrics.contains(&format!("route=\"{raw}\"")),
            "{raw} in:\n{metrics}"
        );
    }

    stop.send(()).unwrap();
    server.await.unwrap();
}
