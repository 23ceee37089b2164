//! The client of Render's deploy hook URL (`trigger`, and `deploy_requested` deliveries).

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

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
