//! Signed deliveries for end-to-end tests, computed with hmac/sha2 directly rather than through
//! the crate's own signer, so that a bug there cannot hide itself.

use super::canary::HOOK_SECRET_RAW;

/// Standard Webhooks headers for `body`, signed with the canary secret.
pub fn signed_headers(id: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    use base64::Engine;
    use hmac::{KeyInit, Mac, SimpleHmac};
    let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(HOOK_SECRET_RAW).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), timestamp.to_string()),
        ("webhook-signature".into(), format!("v1,{sig}")),
        ("content-type".into(), "application/json".into()),
    ]
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
