//! The client of Render's deploy hook URL (`trigger`, and `deploy_requested` deliveries).
//!
//! Render's deploy hook is a secret URL (`https://api.render.com/deploy/srv-…?key=…`); a POST
//! starts a deploy and Render answers `{"deploy":{"id":"dep-…"}}`. The client retries what is safe
//! to retry — a connection that could not be made (the request never left), 429 (honouring
//! `Retry-After`, capped) and 5xx — with exponential back-off, and nothing else: another 4xx will
//! not change on a retry, and a request that timed out after it was sent may already have started
//! a deploy, so repeating it could start a second one.
//!
//! The URL's `key` never appears in a log line or an error: errors carry the redacted URL, and
//! reqwest errors are stripped of their URL with `without_url()` before they are kept.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

pub use super::retry::RetryPolicy;

/// Why a deploy hook URL was refused. Never carries the URL's key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployHookUrlError {
    /// Not an `http://` or `https://` URL.
    #[error("is not an http(s) URL (expected https://api.render.com/deploy/srv-...?key=...)")]
    NotHttp,
}

/// Render's deploy hook URL; its `key` parameter is redacted wherever it is shown.
#[derive(Clone)]
pub struct DeployHookUrl {
    full: SecretString,
    redacted: String,
}

impl DeployHookUrl {
    /// Parses an `http(s)://` URL.
    pub fn parse(value: &str) -> Result<Self, DeployHookUrlError> {
        let url = url::Url::parse(value.trim()).map_err(|_| DeployHookUrlError::NotHttp)?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(DeployHookUrlError::NotHttp);
        }
        let mut shown = url.clone();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "key" {
                    "****".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        if !pairs.is_empty() {
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
        let _ = shown.set_password(None);
        Ok(Self {
            full: SecretString::from(url.to_string()),
            redacted: shown.to_string().replace("%2A%2A%2A%2A", "****"),
        })
    }

    /// The URL with its key shown as `****`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The full URL, key included. Only for making the request.
    pub fn expose_secret(&self) -> &str {
        self.full.expose_secret()
    }
}

impl fmt::Debug for DeployHookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DeployHookUrl")
            .field(&self.redacted)
            .finish()
    }
}

/// A deploy that Render accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triggered {
    /// Render's deploy id (`dep-…`), when the answer carried one.
    pub deploy_id: Option<String>,
    /// How many requests were made.
    pub attempts: u32,
}

/// Why a deploy could not be triggered. Never carries the URL's key.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// The HTTP client could not be built (TLS set-up).
    #[error("could not set up the HTTP client")]
    Client(#[source] reqwest::Error),
    /// Render answered with a status that a retry will not change (a 4xx other than 429, or 3xx).
    #[error("{url} answered {status}")]
    Rejected {
        /// The redacted URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// Every attempt failed with a retryable status (429 or 5xx).
    #[error("{url} still answered {status} after {attempts} attempts")]
    GaveUp {
        /// The redacted URL.
        url: String,
        /// The last status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// No connection could be made, on any attempt.
    #[error("could not connect to {url} after {attempts} attempts")]
    Connect {
        /// The redacted URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last error (its URL removed).
        #[source]
        source: reqwest::Error,
    },
    /// The request was sent but no answer came within the request timeout. Not retried: the
    /// deploy may have started.
    #[error("{url} did not answer within {timeout:?}")]
    Timeout {
        /// The redacted URL.
        url: String,
        /// The request timeout.
        timeout: Duration,
    },
    /// The request failed after it was sent (connection reset, bad response). Not retried.
    #[error("request to {url} failed")]
    Request {
        /// The redacted URL.
        url: String,
        /// The error (its URL removed).
        #[source]
        source: reqwest::Error,
    },
}

/// Calls Render's deploy hook URL with timeouts and retries.
#[derive(Debug, Clone)]
pub struct DeployHookClient {
    url: DeployHookUrl,
    http: reqwest::Client,
    policy: RetryPolicy,
}

impl DeployHookClient {
    /// A client for `url` with the default [`RetryPolicy`].
    pub fn new(url: DeployHookUrl) -> Result<Self, TriggerError> {
        Self::with_policy(url, RetryPolicy::default())
    }

    /// A client for `url` with explicit timeouts and back-off.
    pub fn with_policy(url: DeployHookUrl, policy: RetryPolicy) -> Result<Self, TriggerError> {
        let http = policy.http_client().map_err(TriggerError::Client)?;
        Ok(Self { url, http, policy })
    }

    /// The hook URL (print it with [`DeployHookUrl::redacted`]).
    pub fn url(&self) -> &DeployHookUrl {
        &self.url
    }

    /// POSTs to the hook until Render accepts, a refusal, or the attempts run out.
    pub async fn trigger(&self) -> Result<Triggered, TriggerError> {
        let shown = self.url.redacted().to_owned();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let last_attempt = attempt >= self.policy.max_attempts.max(1);
            let delay = match self.http.post(self.url.expose_secret()).send().await {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        let deploy_id = match response.bytes().await {
                            Ok(body) => deploy_id_from(&body),
                            Err(_) => None,
                        };
                        tracing::info!(url = %shown, attempts = attempt, deploy_id = ?deploy_id, "deploy hook accepted");
                        return Ok(Triggered {
                            deploy_id,
                            attempts: attempt,
                        });
                    }
                    let retryable = super::retry::is_retryable_status(status.as_u16());
                    if !retryable {
                        tracing::warn!(url = %shown, status = status.as_u16(), "deploy hook refused");
                        return Err(TriggerError::Rejected {
                            url: shown,
                            status: status.as_u16(),
                        });
                    }
                    if last_attempt {
                        return Err(TriggerError::GaveUp {
                            url: shown,
                            status: status.as_u16(),
                            attempts: attempt,
                        });
                    }
                    let delay = self.policy.delay_after_status(
                        status.as_u16(),
                        response.headers(),
                        attempt,
                    );
                    tracing::warn!(url = %shown, status = status.as_u16(), attempt, ?delay, "deploy hook busy, retrying");
                    delay
                }
                Err(error) => {
                    let error = error.without_url();
                    if error.is_connect() {
                        if last_attempt {
                            return Err(TriggerError::Connect {
                                url: shown,
                                attempts: attempt,
                                source: error,
                            });
                        }
                        let delay = self.policy.jittered_backoff(attempt);
                        tracing::warn!(url = %shown, attempt, ?delay, error = %error, "could not connect to the deploy hook, retrying");
                        delay
                    } else if error.is_timeout() {
                        return Err(TriggerError::Timeout {
                            url: shown,
                            timeout: self.policy.request_timeout,
                        });
                    } else {
                        return Err(TriggerError::Request {
                            url: shown,
                            source: error,
                        });
                    }
                }
            };
            tokio::time::sleep(delay).await;
        }
    }
}

/// Render's deploy id from the hook's answer: `{"deploy":{"id":"dep-…"}}` (also `{"id":"dep-…"}`).
pub(crate) fn deploy_id_from(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let id = value
        .pointer("/deploy/id")
        .or_else(|| value.get("id"))?
        .as_str()?;
    // The id is printed and logged: only accept something that looks like an id.
    (!id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_redacted() {
        let url =
            DeployHookUrl::parse("https://api.render.com/deploy/srv-abc?key=SeCrEt123").unwrap();
        assert_eq!(
            url.redacted(),
            "https://api.render.com/deploy/srv-abc?key=****"
        );
        assert!(!format!("{url:?}").contains("SeCrEt123"));
    }

    #[test]
    fn the_deploy_id_is_read_from_renders_answer() {
        assert_eq!(
            deploy_id_from(br#"{"deploy":{"id":"dep-abc123"}}"#).as_deref(),
            Some("dep-abc123")
        );
        assert_eq!(
            deploy_id_from(br#"{"id":"dep-x"}"#).as_deref(),
            Some("dep-x")
        );
        assert_eq!(deploy_id_from(b"sync started"), None);
        assert_eq!(
            deploy_id_from(br#"{"deploy":{"id":"dep\nINJECTED"}}"#),
            None
        );
    }
}
