//! The one HTTP client set-up and retry policy of every call to Render (deploy hook and API).
//!
//! What is retried, and how long to wait, is decided here once: 429 waits for `Ratelimit-Reset`
//! (seconds, Render's header) or `Retry-After` (seconds), capped; connection errors and 5xx wait
//! an exponential back-off with jitter (so that many CI jobs refused at once do not come back at
//! the same instant). Whether a request may be repeated at all is the caller's decision: a POST
//! that may already have started a deploy is not repeated blindly (see [`super::create`]).

use std::time::Duration;

use reqwest::header::HeaderMap;

/// Timeouts and back-off of every call to Render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 5).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled before each next one (default 500 ms).
    pub base_delay: Duration,
    /// The longest delay between two attempts (default 8 s).
    pub max_delay: Duration,
    /// The longest `Ratelimit-Reset`/`Retry-After` honoured; a longer one is cut to this
    /// (default 30 s).
    pub max_retry_after: Duration,
    /// Time to open the connection (default 5 s).
    pub connect_timeout: Duration,
    /// Time for one whole request, connection included (default 15 s).
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
        }
    }
}

impl RetryPolicy {
    /// A policy for calling the hook while answering a webhook delivery: Render gives a
    /// delivery 15 seconds, so every attempt, wait and timeout fits in about 13 (3 attempts of at
    /// most 4 s, back-off at most 0.25 s then 0.5 s, `Retry-After` capped at 1 s).
    pub fn for_webhook_response() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(4),
        }
    }

    /// The longest back-off before retry number `retry` (1 for the first retry): the base
    /// doubled `retry - 1` times, capped at `max_delay`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(31));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The back-off actually waited: a random point in the upper half of [`Self::backoff`]
    /// ("equal jitter"), never shorter than half of it, so retries still spread out.
    pub fn jittered_backoff(&self, retry: u32) -> Duration {
        let full = self.backoff(retry);
        full.mul_f64(0.5 + 0.5 * crate::random::fraction())
    }

    /// How long a 429 asks to wait, capped at `max_retry_after`; `None` when the answer carries
    /// neither header (the caller backs off instead).
    pub fn rate_limit_wait(&self, headers: &HeaderMap) -> Option<Duration> {
        rate_limit_reset(headers).map(|d| d.min(self.max_retry_after))
    }

    /// The delay before retry number `retry` after answer `status` with `headers`.
    pub fn delay_after_status(&self, status: u16, headers: &HeaderMap, retry: u32) -> Duration {
        (status == 429)
            .then(|| self.rate_limit_wait(headers))
            .flatten()
            .unwrap_or_else(|| self.jittered_backoff(retry))
    }

    /// The HTTP client every call to Render uses: these timeouts, rustls, no redirects (a
    /// redirect would be followed with the key or the bearer token still in hand; Render's API
    /// and hooks never redirect, so a 3xx is an answer like any other refusal).
    pub fn http_client(&self) -> Result<reqwest::Client, reqwest::Error> {
        let builder = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("render-deploy/", env!("CARGO_PKG_VERSION")));
        with_tls(builder)
            .build()
            .map_err(reqwest::Error::without_url)
    }
}

/// `builder` with [`tls_config`]: every reqwest client of the crate is built through this.
pub(crate) fn with_tls(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    // reqwest recognises the type it is handed, so each arm passes its own.
    match tls_config() {
        Ok(config) => builder.tls_backend_preconfigured(config),
        Err(()) => builder.tls_backend_preconfigured(()),
    }
}

/// rustls with `ring` and the Mozilla roots of webpki-roots, as the pool's `verify-full`. Handed
/// to reqwest whole: without it reqwest would need a process-wide crypto provider, which a
/// library must not install behind its user's back, and would trust the system's roots, which
/// a slim container image may not have.
///
/// Building it fails only if ring lacked every safe protocol version, which it does not; then
/// reqwest is handed `()` instead, an unknown backend that `build()` refuses with an error
/// (rather than a panic here).
fn tls_config() -> Result<rustls::ClientConfig, ()> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| ())?;
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    // reqwest is built without HTTP/2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `Ratelimit-Reset` (seconds until the window resets, Render's header) or else `Retry-After`
/// (seconds; the HTTP-date form is not honoured, back-off is used instead).
pub fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    ["ratelimit-reset", "retry-after"].iter().find_map(|name| {
        let value = headers.get(*name)?.to_str().ok()?;
        value.trim().parse::<u64>().ok().map(Duration::from_secs)
    })
}

/// Whether a status is worth another attempt: 429 (rate limited) and 5xx.
pub fn is_retryable_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(350));
        assert_eq!(p.backoff(40), Duration::from_millis(350));
    }

    #[test]
    fn jitter_stays_in_the_upper_half_of_the_backoff() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            ..RetryPolicy::default()
        };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let d = p.jittered_backoff(2);
            assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(200));
            seen.insert(d);
        }
        assert!(seen.len() > 1, "no jitter at all");
    }

    #[test]
    fn ratelimit_reset_wins_over_retry_after_and_is_capped() {
        let p = RetryPolicy {
            max_retry_after: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        let mut h = HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(p.rate_limit_wait(&h), Some(Duration::from_secs(3)));
        h.insert("ratelimit-reset", "7".parse().unwrap());
        assert_eq!(p.rate_limit_wait(&h), Some(Duration::from_secs(7)));
        h.insert("ratelimit-reset", "86400".parse().unwrap());
        assert_eq!(p.rate_limit_wait(&h), Some(Duration::from_secs(10)));
        let mut bad = HeaderMap::new();
        bad.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(p.rate_limit_wait(&bad), None);
        // A 503 backs off (the rate-limit headers are for 429 only).
        assert!(p.delay_after_status(503, &h, 1) <= p.backoff(1));
    }
}
