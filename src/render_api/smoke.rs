//! Smoke-testing a live deploy: each path must answer 2xx within a few tries.
//!
//! The smoke client is a client of its own, without the API key: the service's URL is not
//! Render's API, and nothing secret is ever sent to it.

use std::time::Duration;

/// Tries, spacing and timeout of the smoke test (contract §9: 3 tries, 2 s apart, 10 s each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmokePolicy {
    /// Tries per path.
    pub tries: u32,
    /// Wait between two tries of one path.
    pub spacing: Duration,
    /// Time one try may take.
    pub timeout: Duration,
}

impl Default for SmokePolicy {
    fn default() -> Self {
        Self {
            tries: 3,
            spacing: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The result of one smoke path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmokeResult {
    /// The path, as given.
    pub path: String,
    /// The status of the last try; `None` when no answer came.
    pub status: Option<u16>,
    /// Why the last try got no answer, when it did not.
    pub error: Option<String>,
}

impl SmokeResult {
    /// Whether the path answered 2xx.
    pub fn passed(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Why the smoke test could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum SmokeError {
    /// The HTTP client could not be built.
    #[error("could not set up the HTTP client for the smoke test")]
    Client(#[source] reqwest::Error),
}

/// GETs `{base}{path}` for each path, up to `policy.tries` times each, until it answers 2xx.
pub async fn smoke(
    base: &str,
    paths: &[String],
    policy: &SmokePolicy,
) -> Result<Vec<SmokeResult>, SmokeError> {
    let builder = reqwest::Client::builder()
        .timeout(policy.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "render-deploy/",
            env!("CARGO_PKG_VERSION"),
            " smoke"
        ));
    let http = super::retry::with_tls(builder)
        .build()
        .map_err(|e| SmokeError::Client(e.without_url()))?;
    let base = base.trim_end_matches('/');
    let mut results = Vec::with_capacity(paths.len());
    for path in paths {
        let url = format!("{base}{path}");
        let mut result = SmokeResult {
            path: path.clone(),
            status: None,
            error: None,
        };
        for attempt in 1..=policy.tries.max(1) {
            match http.get(&url).send().await {
                Ok(response) => {
                    result.status = Some(response.status().as_u16());
                    result.error = None;
                }
                Err(e) => {
                    result.status = None;
                    result.error = Some(if e.is_timeout() {
                        format!("no answer within {:?}", policy.timeout)
                    } else if e.is_connect() {
                        "could not connect".to_owned()
                    } else {
                        "the request failed".to_owned()
                    });
                }
            }
            if result.passed() {
                break;
            }
            if attempt < policy.tries {
                tokio::time::sleep(policy.spacing).await;
            }
        }
        results.push(result);
    }
    Ok(results)
}
