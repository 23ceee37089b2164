//! The deploy hook client against a local server that behaves like Render's deploy hook.

use std::time::{Duration, Instant};

use crate::support::fake_hook::{FakeHook, HOOK_URL_KEY, Reply, accepted};
use render_deploy::render_api::deploy_hook::{
    DeployHookClient, DeployHookUrl, RetryPolicy, TriggerError,
};

use crate::support::fast_retry_policy as fast;

fn client(url: &str, policy: RetryPolicy) -> DeployHookClient {
    DeployHookClient::with_policy(DeployHookUrl::parse(url).unwrap(), policy).unwrap()
}

fn assert_no_key(error: &TriggerError) {
    let shown = format!("{error} {error:?}");
    let mut source = std::error::Error::source(error);
    let mut chain = String::new();
    while let Some(cause) = source {
        chain.push_str(&format!("{cause} {cause:?}"));
        source = cause.source();
    }
    assert!(
        !shown.contains(HOOK_URL_KEY) && !chain.contains(HOOK_URL_KEY),
        "key leaked: {shown} {chain}"
    );
}

#[tokio::test]
async fn a_successful_trigger_posts_once_and_returns_renders_deploy_id() {
    let hook = FakeHook::start(vec![accepted("dep-abc123")]).await;
    let triggered = client(&hook.url, fast()).trigger().await.unwrap();
    assert_eq!(triggered.deploy_id.as_deref(), Some("dep-abc123"));
    assert_eq!(triggered.attempts, 1);
    let seen = hook.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "POST");
    assert_eq!(seen[0].1, format!("/deploy/srv-test123?key={HOOK_URL_KEY}"));
}

#[tokio::test]
async fn a_503_is_retried_and_the_next_success_is_returned() {
    let hook = FakeHook::start(vec![
        Reply::Status(503, None, "busy"),
        Reply::Status(502, None, ""),
        accepted("dep-after-retry"),
    ])
    .await;
    let triggered = client(&hook.url, fast()).trigger().await.unwrap();
    assert_eq!(triggered.deploy_id.as_deref(), Some("dep-after-retry"));
    assert_eq!(triggered.attempts, 3);
    assert_eq!(hook.requests(), 3);
}

#[tokio::test]
async fn a_429_is_retried_after_the_retry_after_delay() {
    let hook = FakeHook::start(vec![
        Reply::Status(429, Some("1"), ""),
        accepted("dep-later"),
    ])
    .await;
    let triggered = client(&hook.url, fast()).trigger().await.unwrap();
    assert_eq!(triggered.deploy_id.as_deref(), Some("dep-later"));
    let times = hook.times();
    assert_eq!(times.len(), 2);
    // Retry-After: 1 is honoured instead of the 10 ms back-off.
    assert!(
        times[1] - times[0] >= Duration::from_millis(950),
        "{:?}",
        times[1] - times[0]
    );
}

#[tokio::test]
async fn a_long_retry_after_is_capped() {
    let hook = FakeHook::start(vec![
        Reply::Status(429, Some("86400"), ""),
        accepted("dep-capped"),
    ])
    .await;
    let policy = RetryPolicy {
        max_retry_after: Duration::from_millis(100),
        ..fast()
    };
    let started = Instant::now();
    let triggered = client(&hook.url, policy).trigger().await.unwrap();
    assert_eq!(triggered.deploy_id.as_deref(), Some("dep-capped"));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "waited a day's Retry-After"
    );
}

#[tokio::test]
async fn a_404_is_not_retried() {
    let hook = FakeHook::start(vec![
        Reply::Status(404, None, "Not Found"),
        accepted("dep-never"),
    ])
    .await;
    let error = client(&hook.url, fast()).trigger().await.unwrap_err();
    assert!(
        matches!(error, TriggerError::Rejected { status: 404, .. }),
        "{error:?}"
    );
    assert_eq!(hook.requests(), 1);
    assert!(error.to_string().contains("key=****"), "{error}");
    assert_no_key(&error);
}

#[tokio::test]
async fn persistent_5xx_gives_up_after_the_configured_attempts() {
    let hook = FakeHook::start(vec![Reply::Status(500, None, "")]).await;
    let error = client(&hook.url, fast()).trigger().await.unwrap_err();
    assert!(
        matches!(
            error,
            TriggerError::GaveUp {
                status: 500,
                attempts: 4,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(hook.requests(), 4);
    assert_no_key(&error);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_without_a_second_request() {
    let hook = FakeHook::start(vec![Reply::Hang]).await;
    let policy = RetryPolicy {
        request_timeout: Duration::from_millis(300),
        ..fast()
    };
    let started = Instant::now();
    let error = client(&hook.url, policy).trigger().await.unwrap_err();
    assert!(matches!(error, TriggerError::Timeout { .. }), "{error:?}");
    // Within the timeout's order of magnitude, and not retried: the deploy may have started.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(hook.requests(), 1);
    assert_no_key(&error);
}

#[tokio::test]
async fn connection_errors_are_retried_then_reported_without_the_key() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}/deploy/srv-x?key={HOOK_URL_KEY}");
    let error = client(&url, fast()).trigger().await.unwrap_err();
    assert!(
        matches!(error, TriggerError::Connect { attempts: 4, .. }),
        "{error:?}"
    );
    assert_no_key(&error);
}

#[tokio::test]
async fn a_hook_whose_certificate_no_public_root_signed_is_refused_before_a_request_is_sent() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    // A TLS server on loopback with a self-signed certificate for `localhost`: the handshake
    // must fail on the client's side (webpki-roots do not know the issuer), so the key in the
    // URL never leaves the process.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (connections, handshakes) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let counts = (Arc::clone(&connections), Arc::clone(&handshakes));
    let server = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counts.0.fetch_add(1, Ordering::SeqCst);
            if acceptor.accept(tcp).await.is_ok() {
                counts.1.fetch_add(1, Ordering::SeqCst);
            }
        }
    });

    let url = format!("https://localhost:{port}/deploy/srv-x?key={HOOK_URL_KEY}");
    let error = client(&url, fast()).trigger().await.unwrap_err();
    server.abort();
    assert!(matches!(error, TriggerError::Connect { .. }), "{error:?}");
    assert!(
        connections.load(Ordering::SeqCst) >= 1,
        "TLS was never tried"
    );
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        0,
        "a handshake completed"
    );
    assert_no_key(&error);
}

#[tokio::test]
async fn an_answer_without_a_deploy_id_is_still_accepted() {
    let hook = FakeHook::start(vec![Reply::Status(200, None, "sync started")]).await;
    let triggered = client(&hook.url, fast()).trigger().await.unwrap();
    assert_eq!(triggered.deploy_id, None);
}
