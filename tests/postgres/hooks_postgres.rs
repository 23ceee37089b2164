//! The PostgreSQL replay store: shared by two routers (two instances behind Render's load
//! balancer), a delivery replayed to the second one is not acted upon.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use render_deploy::local_postgres::LocalPostgres;
use render_deploy::replay::{PostgresReplayStore, REPLAY_TABLE, ReplayStore, ReplayStoreKind};
use render_deploy::signature::{WebhookSecret, sign_standard};
use render_deploy::webhooks::{HookSettings, HookState, router};
use tower::ServiceExt;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: i64 = 1_700_000_000;
const TOLERANCE: Duration = Duration::from_secs(300);

fn pool(url: &str) -> deadpool_postgres::Pool {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    deadpool_postgres::Pool::builder(manager)
        .max_size(4)
        .build()
        .unwrap()
}

fn signed(id: &str, body: &str) -> Request<Body> {
    let secret = WebhookSecret::parse(SECRET).unwrap();
    Request::post("/hooks/deploy")
        .header("webhook-id", id)
        .header("webhook-timestamp", NOW.to_string())
        .header(
            "webhook-signature",
            sign_standard(&secret, id, NOW, body.as_bytes()),
        )
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn instance(store: Arc<dyn ReplayStore>, acted: Arc<AtomicUsize>) -> axum::Router {
    let state = HookState::new(
        Some(WebhookSecret::parse(SECRET).unwrap()),
        HookSettings {
            replay_store: ReplayStoreKind::Postgres,
            ..HookSettings::default()
        },
        store,
        Arc::new(move || {
            acted.fetch_add(1, Ordering::SeqCst);
        }),
    )
    .with_clock(Arc::new(|| NOW));
    router(state)
}

#[tokio::test]
async fn a_delivery_replayed_to_a_second_instance_sharing_the_table_is_not_acted_on() {
    let pg = LocalPostgres::start().unwrap();
    let url = pg.create_database().await.unwrap();
    // Each instance has its own pool and its own store value, as two processes would; the table
    // is created by whichever starts first.
    let first = Arc::new(
        PostgresReplayStore::new(pool(&url), TOLERANCE)
            .await
            .unwrap(),
    );
    let second = Arc::new(
        PostgresReplayStore::new(pool(&url), TOLERANCE)
            .await
            .unwrap(),
    );
    let acted_first = Arc::new(AtomicUsize::new(0));
    let acted_second = Arc::new(AtomicUsize::new(0));
    let a = instance(first, acted_first.clone());
    let b = instance(second, acted_second.clone());

    let body = r#"{"type":"deploy_ended"}"#;
    let response = a.clone().oneshot(signed("msg_shared", body)).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let response = b.clone().oneshot(signed("msg_shared", body)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(acted_first.load(Ordering::SeqCst), 1);
    assert_eq!(acted_second.load(Ordering::SeqCst), 0);

    // Many copies of one new delivery racing to both instances: exactly one acts.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let router = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            router
                .oneshot(signed("msg_race", body))
                .await
                .unwrap()
                .status()
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        if task.await.unwrap() == StatusCode::ACCEPTED {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1);
    assert_eq!(
        acted_first.load(Ordering::SeqCst) + acted_second.load(Ordering::SeqCst),
        2
    );
}

#[tokio::test]
async fn the_postgres_store_expires_prunes_and_releases_ids() {
    let pg = LocalPostgres::start().unwrap();
    let url = pg.create_database().await.unwrap();
    let store = PostgresReplayStore::new(pool(&url), Duration::from_secs(10))
        .await
        .unwrap();
    // Created twice: the second is a no-op.
    let _again = PostgresReplayStore::new(pool(&url), Duration::from_secs(10))
        .await
        .unwrap();

    assert!(store.check_and_insert("a", 1000).await.unwrap());
    assert!(
        !store.check_and_insert("a", 1020).await.unwrap(),
        "within twice the tolerance"
    );
    assert!(
        store.check_and_insert("a", 1021).await.unwrap(),
        "expired ids count as absent"
    );
    store.release("a").await.unwrap();
    assert!(
        store.check_and_insert("a", 1022).await.unwrap(),
        "released ids can be claimed again"
    );

    // Pruning: old rows are deleted by a later claim (at most once a minute).
    for i in 0..20 {
        assert!(
            store
                .check_and_insert(&format!("old-{i}"), 1022)
                .await
                .unwrap()
        );
    }
    assert!(store.check_and_insert("late", 5000).await.unwrap());
    let client = pg
        .connect(url.rsplit('/').next().unwrap().split('?').next().unwrap())
        .await
        .unwrap();
    let rows: i64 = client
        .query_one(&format!("SELECT count(*) FROM {REPLAY_TABLE}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "only the fresh id is left");
}
