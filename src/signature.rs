//! Signing and verifying deliveries: Standard Webhooks and GitHub (pure, no I/O).

use std::fmt;

use base64::Engine;

/// Why a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The secret is empty.
    #[error("is empty")]
    Empty,
    /// A `whsec_` secret whose rest is not base64.
    #[error("starts with whsec_ but the rest is not valid base64")]
    BadBase64,
}

/// A signing key: `whsec_` + base64 (Standard Webhooks) or raw bytes. Never printed.
#[derive(Clone)]
pub struct WebhookSecret {
    raw: Vec<u8>,
    decoded: Option<Vec<u8>>,
}

impl WebhookSecret {
    /// Accepts any non-empty secret; a `whsec_` one must carry valid base64.
    pub fn parse(value: &str) -> Result<Self, SecretError> {
        if value.is_empty() {
            return Err(SecretError::Empty);
        }
        let decoded = match value.strip_prefix("whsec_") {
            Some(b64) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| SecretError::BadBase64)?,
            ),
            None => None,
        };
        Ok(Self {
            raw: value.as_bytes().to_vec(),
            decoded,
        })
    }

    /// The key for Standard Webhooks: the decoded bytes of a `whsec_` secret, else the raw bytes.
    pub fn standard_key(&self) -> &[u8] {
        self.decoded.as_deref().unwrap_or(&self.raw)
    }

    /// The key for GitHub: the secret exactly as written.
    pub fn github_key(&self) -> &[u8] {
        &self.raw
    }

    /// Whether the secret has the `whsec_` form.
    pub fn is_whsec(&self) -> bool {
        self.decoded.is_some()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(****)")
    }
}
