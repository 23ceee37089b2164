//! The API key and the API's base URL: the two values `deploy` needs before it may call Render,
//! each checked once. A leaf module (it imports nothing of the crate), so that the configuration
//! can parse `RENDER_API_KEY` and `RENDER_API_URL` into these types.

use std::fmt;
use std::net::IpAddr;

use secrecy::{ExposeSecret, SecretString};

/// Render's API, unless `RENDER_API_URL` says otherwise.
pub const DEFAULT_API_URL: &str = "https://api.render.com/v1";

/// Why an API key was refused. Never carries the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    /// Empty or only spaces.
    #[error("is empty (expected a Render API key, rnd_...)")]
    Empty,
    /// Contains whitespace or a control character, so it cannot be sent in a header.
    #[error("contains whitespace or control characters (expected a Render API key, rnd_...)")]
    Malformed,
}

/// `RENDER_API_KEY`: sent only as `Authorization: Bearer …`; `Debug` shows `****`.
#[derive(Clone)]
pub struct ApiKey(SecretString);

impl ApiKey {
    /// Checks that the key can travel in a header.
    pub fn parse(value: &str) -> Result<Self, ApiKeyError> {
        if value.trim().is_empty() {
            return Err(ApiKeyError::Empty);
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ApiKeyError::Malformed);
        }
        Ok(Self(SecretString::from(value.to_owned())))
    }

    /// The key itself. Only for the `Authorization` header.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(****)")
    }
}

/// Why an API base URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiUrlError {
    /// Not a URL with a host.
    #[error("is not a URL (expected https://api.render.com/v1)")]
    NotUrl,
    /// `http://` to a host other than loopback: the key would travel in clear.
    #[error(
        "must be https:// (plain http only to a loopback address), so the key never travels in clear"
    )]
    NotHttps,
    /// User info, a query or a fragment: a base is only scheme, host, port and path.
    #[error("must not carry a user, a query or a fragment (expected https://api.render.com/v1)")]
    Extra,
}

/// `RENDER_API_URL`: `https://` anywhere, `http://` only to loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiBase(url::Url);

impl ApiBase {
    /// Parses and checks a base URL.
    pub fn parse(value: &str) -> Result<Self, ApiUrlError> {
        let url = url::Url::parse(value.trim()).map_err(|_| ApiUrlError::NotUrl)?;
        let Some(host) = url.host() else {
            return Err(ApiUrlError::NotUrl);
        };
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(ApiUrlError::Extra);
        }
        let loopback = match host {
            url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
            url::Host::Ipv4(ip) => IpAddr::V4(ip).is_loopback(),
            url::Host::Ipv6(ip) => IpAddr::V6(ip).is_loopback(),
        };
        match url.scheme() {
            "https" => Ok(Self(url)),
            "http" if loopback => Ok(Self(url)),
            "http" => Err(ApiUrlError::NotHttps),
            _ => Err(ApiUrlError::NotUrl),
        }
    }

    /// The base as written, without a trailing `/` (it holds no secret).
    pub fn as_str(&self) -> &str {
        self.0.as_str().trim_end_matches('/')
    }
}

impl Default for ApiBase {
    fn default() -> Self {
        Self::parse(DEFAULT_API_URL).expect("the default URL is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_never_shown() {
        let key = ApiKey::parse("rnd_SeCrEt").unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(****)");
        assert!(matches!(ApiKey::parse("  "), Err(ApiKeyError::Empty)));
        assert!(ApiKey::parse("rnd_a b").is_err());
        assert!(ApiKey::parse("rnd_a\r\nX-Evil: 1").is_err());
    }

    #[test]
    fn the_base_is_https_or_loopback() {
        assert!(ApiBase::parse("https://api.render.com/v1").is_ok());
        assert!(ApiBase::parse("http://127.0.0.1:9/v1").is_ok());
        assert!(ApiBase::parse("http://[::1]:9/v1").is_ok());
        assert!(ApiBase::parse("http://localhost:9").is_ok());
        assert_eq!(
            ApiBase::parse("http://api.render.com/v1"),
            Err(ApiUrlError::NotHttps)
        );
        assert_eq!(
            ApiBase::parse("http://127.0.0.1.evil.example/v1"),
            Err(ApiUrlError::NotHttps)
        );
        assert_eq!(ApiBase::parse("ftp://x/"), Err(ApiUrlError::NotUrl));
        assert_eq!(ApiBase::parse("nonsense"), Err(ApiUrlError::NotUrl));
        assert_eq!(
            ApiBase::parse("https://u:p@api.render.com/v1"),
            Err(ApiUrlError::Extra)
        );
        assert_eq!(ApiBase::default().as_str(), DEFAULT_API_URL);
        assert_eq!(
            ApiBase::parse("https://api.render.com/v1/")
                .unwrap()
                .as_str(),
            DEFAULT_API_URL
        );
    }
}
