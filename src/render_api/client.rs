//! A small client of Render's REST API: the five calls `deploy` makes, with the bearer key kept
//! secret and the shared retry policy.
//!
//! Reads (`GET`) are retried on connection errors, timeouts, 429 and 5xx. A `POST` is retried here
//! only on 429 (a rate-limited request was not processed); any other fault of a POST is handed to
//! the caller as [`ApiError::Uncertain`], because the deploy may have been created anyway, and
//! only the caller can look before trying again ([`super::create`]).

use reqwest::Method;
use serde::de::DeserializeOwned;

pub use super::credentials::{ApiBase, ApiKey, ApiKeyError, ApiUrlError, DEFAULT_API_URL};
use super::retry::{RetryPolicy, is_retryable_status};
use super::types::{Deploy, DeployListEntry, Service};

/// Why a call to Render's API failed. Never carries the key.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The HTTP client could not be built (TLS set-up).
    #[error("could not set up the HTTP client")]
    Client(#[source] reqwest::Error),
    /// 401 or 403: the key was refused (missing rights, revoked, wrong workspace).
    #[error("{what}: Render refused the API key ({status})")]
    Unauthorized {
        /// The call.
        what: String,
        /// 401 or 403.
        status: u16,
    },
    /// Another 4xx (or a 3xx): a retry will not change it.
    #[error("{what}: Render answered {status}{message}")]
    Rejected {
        /// The call.
        what: String,
        /// The status.
        status: u16,
        /// Render's `message`, as `: …`, or empty.
        message: String,
    },
    /// Every attempt failed with a connection error, a timeout or a 5xx.
    #[error("{what}: Render's API is unreachable after {attempts} attempts ({last})")]
    Unavailable {
        /// The call.
        what: String,
        /// Attempts made.
        attempts: u32,
        /// The last fault, in words.
        last: String,
    },
    /// A POST failed in a way that leaves open whether Render acted on it (connection error,
    /// timeout once sent, 5xx). The caller looks before trying again.
    #[error("{what}: no clear answer ({fault})")]
    Uncertain {
        /// The call.
        what: String,
        /// The fault, in words.
        fault: String,
    },
    /// A 2xx whose body is not what Render sends.
    #[error("{what}: unexpected answer from Render ({detail})")]
    BadAnswer {
        /// The call.
        what: String,
        /// What was wrong.
        detail: String,
    },
}

/// The answer to a POST: 2xx with a body, or 2xx with none (202 queued).
#[derive(Debug)]
pub enum Posted<T> {
    /// 201 (or 200) with the object.
    Created(T),
    /// 202 with no body: queued; look for it in the list.
    Queued,
}

/// Calls Render's API for one service.
#[derive(Debug, Clone)]
pub struct RenderApi {
    base: ApiBase,
    key: ApiKey,
    http: reqwest::Client,
    policy: RetryPolicy,
}

impl RenderApi {
    /// A client of `base` with `key`, and the shared policy.
    pub fn new(base: ApiBase, key: ApiKey, policy: RetryPolicy) -> Result<Self, ApiError> {
        let http = policy.http_client().map_err(ApiError::Client)?;
        Ok(Self {
            base,
            key,
            http,
            policy,
        })
    }

    /// The retry policy in use.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// `POST /services/{id}/deploys` once (429 aside).
    pub async fn create_deploy(
        &self,
        service: &str,
        body: &serde_json::Value,
    ) -> Result<Posted<Deploy>, ApiError> {
        self.post(
            &format!("/services/{service}/deploys"),
            body,
            "create the deploy",
        )
        .await
    }

    /// `POST /services/{id}/rollback` with `{"deployId": …}` once (429 aside).
    pub async fn rollback(&self, service: &str, to: &str) -> Result<Posted<Deploy>, ApiError> {
        let body = serde_json::json!({ "deployId": to });
        self.post(&format!("/services/{service}/rollback"), &body, "roll back")
            .await
    }

    /// `GET /services/{id}/deploys?limit=20`, newest first.
    pub async fn list_deploys(&self, service: &str) -> Result<Vec<Deploy>, ApiError> {
        let path = format!("/services/{service}/deploys?limit=20");
        let entries: Vec<DeployListEntry> = self.get(&path, "list the deploys").await?;
        Ok(entries.into_iter().map(|e| e.deploy).collect())
    }

    /// `GET /services/{id}/deploys/{deployId}`.
    pub async fn get_deploy(&self, service: &str, deploy: &str) -> Result<Deploy, ApiError> {
        self.get(
            &format!("/services/{service}/deploys/{deploy}"),
            "get the deploy",
        )
        .await
    }

    /// `GET /services/{id}`.
    pub async fn get_service(&self, service: &str) -> Result<Service, ApiError> {
        self.get(&format!("/services/{service}"), "get the service")
            .await
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base.as_str()))
            .bearer_auth(self.key.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json")
    }

    /// A GET, retried on every fault that a retry may cure.
    async fn get<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T, ApiError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.policy.max_attempts.max(1);
            let (fault, delay) = match self.request(Method::GET, path).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if response.status().is_success() {
                        return decode(response, what).await;
                    }
                    if !is_retryable_status(status) {
                        return Err(refusal(response, what).await);
                    }
                    let delay = self
                        .policy
                        .delay_after_status(status, response.headers(), attempt);
                    (format!("answered {status}"), delay)
                }
                Err(e) => (fault_words(&e), self.policy.jittered_backoff(attempt)),
            };
            if last {
                return Err(ApiError::Unavailable {
                    what: what.to_owned(),
                    attempts: attempt,
                    last: fault,
                });
            }
            tracing::warn!(call = what, attempt, ?delay, fault = %fault, "retrying a call to Render");
            tokio::time::sleep(delay).await;
        }
    }

    /// A POST: retried on 429 only (a rate-limited request was not processed).
    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
        what: &str,
    ) -> Result<Posted<T>, ApiError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let response = match self.request(Method::POST, path).json(body).send().await {
                Ok(response) => response,
                Err(e) => {
                    return Err(ApiError::Uncertain {
                        what: what.to_owned(),
                        fault: fault_words(&e),
                    });
                }
            };
            let status = response.status().as_u16();
            if status == 202 {
                return Ok(Posted::Queued);
            }
            if response.status().is_success() {
                return decode(response, what).await.map(Posted::Created);
            }
            if status == 429 && attempt < self.policy.max_attempts.max(1) {
                let delay = self
                    .policy
                    .delay_after_status(status, response.headers(), attempt);
                tracing::warn!(
                    call = what,
                    attempt,
                    ?delay,
                    "rate limited by Render, waiting"
                );
                tokio::time::sleep(delay).await;
                continue;
            }
            if status == 429 {
                return Err(ApiError::Unavailable {
                    what: what.to_owned(),
                    attempts: attempt,
                    last: "answered 429".to_owned(),
                });
            }
            if (500..600).contains(&status) {
                return Err(ApiError::Uncertain {
                    what: what.to_owned(),
                    fault: format!("answered {status}"),
                });
            }
            return Err(refusal(response, what).await);
        }
    }
}

/// The largest answer read from Render (a list of 20 deploys is a few kB).
const MAX_ANSWER: usize = 4 * 1024 * 1024;

async fn decode<T: DeserializeOwned>(
    response: reqwest::Response,
    what: &str,
) -> Result<T, ApiError> {
    let bad = |detail: String| ApiError::BadAnswer {
        what: what.to_owned(),
        detail,
    };
    let body = read_limited(response).await.map_err(bad)?;
    serde_json::from_slice(&body).map_err(|e| bad(format!("not the expected JSON: {e}")))
}

/// The body, read chunk by chunk and refused past [`MAX_ANSWER`] (a hostile or broken answer
/// cannot make this process hold gigabytes).
async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER as u64)
    {
        return Err(format!("an answer over {MAX_ANSWER} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| fault_words(&e))? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("an answer over {MAX_ANSWER} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The error for a status a retry will not change; Render's `message` kept, made printable.
async fn refusal(response: reqwest::Response, what: &str) -> ApiError {
    let status = response.status().as_u16();
    if status == 401 || status == 403 {
        return ApiError::Unauthorized {
            what: what.to_owned(),
            status,
        };
    }
    let message = read_limited(response)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("message")?.as_str().map(printable))
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    ApiError::Rejected {
        what: what.to_owned(),
        status,
        message,
    }
}

/// At most 200 characters, control characters replaced, so an answer cannot rewrite the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A reqwest error in words, without its URL (the URL holds no key here, but the service id
/// and the path are noise in a one-line error).
fn fault_words(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "could not connect".to_owned()
    } else if e.is_timeout() {
        "no answer in time".to_owned()
    } else {
        let e = std::error::Error::source(e)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "request failed".to_owned());
        printable(&e)
    }
}
