//! Signing and verifying deliveries: Standard Webhooks and GitHub (pure, no I/O).
//!
//! Everything here works on the raw bytes of the body as received, never on re-serialised JSON,
//! and takes the current time as an argument so that tests (and `verify --now`) control the clock.
//! Signatures are compared with `hmac`'s `verify_slice`, which is constant-time.
//!
//! # Strict choices
//!
//! The reference libraries disagree on a few edge cases; this module decides each one strictly,
//! because every leniency is a second spelling of the same signature or a way to make a verifier
//! do unbounded work:
//!
//! - `webhook-timestamp` must be canonical decimal: digits only, no sign (`+1614265330` is
//!   refused), no leading zero, at most 19 digits. The header string is what was signed, so
//!   accepting two spellings of one number would let the same signature authenticate two contents.
//! - A `v1,` signature must be canonical padded standard base64 of exactly 32 bytes; URL-safe
//!   letters, missing padding, non-zero trailing bits (`…OLJ1OF=` for `…OLJ1OE=`) and a bare `v1,`
//!   make the header malformed. A bare `v1,` is the one that once let other libraries accept an
//!   empty signature by comparing only a common prefix.
//! - Entries with another version tag (`v2,…`, `v1a,…`) are skipped, as the specification asks,
//!   so a sender can add new schemes beside `v1`; a header with no `v1` entry matches nothing.
//! - An empty list (empty header, or only spaces) is malformed; so is an entry without a comma.
//! - At most [`MAX_SIGNATURES`] entries are looked at: more make the header malformed, so a
//!   header with 10 000 signatures costs one HMAC and no more than a header scan.
//! - GitHub's `sha256=` digest must be 64 lowercase hexadecimal digits, as GitHub sends it;
//!   `A–F` would be a second spelling of the same signature.
//! - A header given twice (two `webhook-signature` lines) is malformed rather than guessed at.
//! - The delivery id is at most [`MAX_ID_LEN`] bytes of visible ASCII: it is stored by the replay
//!   store, and must fit in one header line when `sign` prints it.
//! - The tolerance is inclusive: a timestamp exactly `tolerance` seconds old (or ahead) passes,
//!   one second more fails.

use std::fmt;
use std::time::Duration;

use axum::http::header::GetAll;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine;
use hmac::digest::CtOutput;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

mod parse;
use parse::{
    Candidates, check_timestamp, malformed, optional_single_value, parse_id,
    parse_standard_signatures, parse_timestamp, single_value,
};

type HmacSha256 = Hmac<Sha256>;

/// Standard Webhooks: the delivery id header.
pub const WEBHOOK_ID: &str = "webhook-id";
/// Standard Webhooks: the Unix timestamp header.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Standard Webhooks: the space-separated signature list header.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// GitHub: the `sha256=<hex>` signature header.
pub const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
/// GitHub: the delivery id header (used for replay protection).
pub const GITHUB_DELIVERY: &str = "x-github-delivery";
/// GitHub: the event name header (`push`, `ping`, …).
pub(crate) const GITHUB_EVENT: &str = "x-github-event";

// The same names as parsed header names: a lookup by `&str` re-validates and lower-cases the
// name on every call, a lookup by `HeaderName` only hashes it. `static`, not `const`: a
// `HeaderName` may hold a `Bytes`, which clippy rightly refuses to copy out of a const.
static WEBHOOK_ID_NAME: HeaderName = HeaderName::from_static(WEBHOOK_ID);
static WEBHOOK_TIMESTAMP_NAME: HeaderName = HeaderName::from_static(WEBHOOK_TIMESTAMP);
static WEBHOOK_SIGNATURE_NAME: HeaderName = HeaderName::from_static(WEBHOOK_SIGNATURE);
static GITHUB_SIGNATURE_NAME: HeaderName = HeaderName::from_static(GITHUB_SIGNATURE);
static GITHUB_DELIVERY_NAME: HeaderName = HeaderName::from_static(GITHUB_DELIVERY);

/// The most signatures looked at in one `webhook-signature` header (key rotation needs two or
/// three; more is refused as malformed so the work per delivery stays bounded).
pub const MAX_SIGNATURES: usize = 32;
/// The longest delivery id accepted, in bytes.
pub const MAX_ID_LEN: usize = 256;
/// Secrets shorter than this many key bytes draw a warning from `sign` and `verify`.
#[cfg(feature = "cli")]
pub(crate) const RECOMMENDED_KEY_LEN: usize = 32;

/// Why a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The secret is empty.
    #[error("is empty")]
    Empty,
    /// A `whsec_` secret whose rest is not base64.
    #[error("starts with whsec_ but the rest is not valid base64")]
    BadBase64,
    /// A `whsec_` secret whose base64 part decodes to no bytes at all.
    #[error("starts with whsec_ but carries no key bytes")]
    EmptyKey,
}

/// A signing key: `whsec_` + base64 (Standard Webhooks) or raw bytes. Never printed.
#[derive(Clone)]
pub struct WebhookSecret {
    raw: Vec<u8>,
    decoded: Option<Vec<u8>>,
    keyed: Box<KeyedMacs>,
}

/// HMAC keyed once, when the secret is parsed: keying costs two SHA-256 compressions (the inner
/// and outer pads), a tenth of the work of verifying a 1 KiB delivery, so each delivery clones
/// these states instead. They are as secret as the key and are never printed either. Boxed so
/// that a `WebhookSecret` stays small wherever it is moved.
#[derive(Clone)]
struct KeyedMacs {
    standard: HmacSha256,
    github: HmacSha256,
}

impl WebhookSecret {
    /// Accepts any non-empty secret; a `whsec_` one must carry valid, non-empty base64.
    pub fn parse(value: &str) -> Result<Self, SecretError> {
        if value.is_empty() {
            return Err(SecretError::Empty);
        }
        let decoded = match value.strip_prefix("whsec_") {
            Some(b64) => {
                let key = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| SecretError::BadBase64)?;
                // An empty HMAC key is legal for HMAC but authenticates nothing.
                if key.is_empty() {
                    return Err(SecretError::EmptyKey);
                }
                Some(key)
            }
            None => None,
        };
        let raw = value.as_bytes().to_vec();
        let keyed = Box::new(KeyedMacs {
            standard: new_mac(decoded.as_deref().unwrap_or(&raw)),
            github: new_mac(&raw),
        });
        Ok(Self {
            raw,
            decoded,
            keyed,
        })
    }

    /// The key for Standard Webhooks: the decoded bytes of a `whsec_` secret, else the raw bytes.
    pub fn standard_key(&self) -> &[u8] {
        self.decoded.as_deref().unwrap_or(&self.raw)
    }

    /// The key for GitHub: the secret exactly as written.
    pub(crate) fn github_key(&self) -> &[u8] {
        &self.raw
    }

    /// Whether the secret has the `whsec_` form.
    pub fn is_whsec(&self) -> bool {
        self.decoded.is_some()
    }

    /// The key bytes a scheme signs with, for the "shorter than 32 bytes" warning.
    pub fn key_len(&self, scheme: Scheme) -> usize {
        match scheme {
            Scheme::Standard => self.standard_key().len(),
            Scheme::Github => self.github_key().len(),
        }
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(****)")
    }
}

/// A signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    Standard,
    /// GitHub (`X-Hub-Signature-256`, `X-GitHub-Delivery`).
    Github,
}

impl Scheme {
    /// A short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Standard => "standard",
            Scheme::Github => "github",
        }
    }
}

/// Why a delivery was refused. One variant per failure; the HTTP endpoint answers 401 for all of
/// them alike and logs the precise one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the scheme needs is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header is present but not in the expected form.
    #[error("malformed header {header}: {problem}")]
    MalformedHeader {
        /// The header's name.
        header: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The timestamp is older than the tolerance allows.
    #[error("timestamp too old ({age} s old, tolerance {tolerance} s)")]
    TimestampTooOld {
        /// Seconds between the timestamp and now.
        age: u64,
        /// The tolerance in seconds.
        tolerance: u64,
    },
    /// The timestamp is further in the future than the tolerance allows.
    #[error("timestamp in the future ({ahead} s ahead, tolerance {tolerance} s)")]
    TimestampInFuture {
        /// Seconds between now and the timestamp.
        ahead: u64,
        /// The tolerance in seconds.
        tolerance: u64,
    },
    /// The headers are well formed but no signature matches the body and the secret.
    #[error("no matching signature")]
    NoMatchingSignature,
    /// The secret itself is unusable.
    #[error("bad secret: {0}")]
    BadSecret(#[from] SecretError),
}

impl VerifyError {
    /// A stable label for logs and metrics (`missing_header`, `timestamp_too_old`, …).
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader(_) => "missing_header",
            VerifyError::MalformedHeader { .. } => "malformed_header",
            VerifyError::TimestampTooOld { .. } => "timestamp_too_old",
            VerifyError::TimestampInFuture { .. } => "timestamp_in_future",
            VerifyError::NoMatchingSignature => "no_matching_signature",
            VerifyError::BadSecret(_) => "bad_secret",
        }
    }
}

/// A delivery whose signature checked out. It borrows the id from the headers, so verifying
/// allocates nothing; call `.to_owned()` on the id to keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified<'h> {
    /// Which scheme signed it.
    pub scheme: Scheme,
    /// The delivery id (`webhook-id`, or `X-GitHub-Delivery` when present).
    pub id: Option<&'h str>,
    /// The signed timestamp (Standard Webhooks only; GitHub signs none).
    pub timestamp: Option<i64>,
}

/// Picks the scheme from the headers: any `webhook-*` header means Standard Webhooks, else an
/// `X-Hub-Signature-256` means GitHub. `None` when neither is present.
pub fn detect_scheme(headers: &HeaderMap) -> Option<Scheme> {
    if [
        &WEBHOOK_SIGNATURE_NAME,
        &WEBHOOK_ID_NAME,
        &WEBHOOK_TIMESTAMP_NAME,
    ]
    .into_iter()
    .any(|h| headers.contains_key(h))
    {
        Some(Scheme::Standard)
    } else if headers.contains_key(&GITHUB_SIGNATURE_NAME) {
        Some(Scheme::Github)
    } else {
        None
    }
}

/// Verifies a delivery with the scheme its headers name ([`detect_scheme`]).
pub fn verify<'h>(
    secret: &WebhookSecret,
    headers: &'h HeaderMap,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<Verified<'h>, VerifyError> {
    let mut verifier = verifier(secret, headers, now, tolerance)?;
    verifier.update(body);
    verifier.finish()
}

/// Checks the headers of a delivery (scheme as [`detect_scheme`], id, timestamp, signature
/// syntax) and returns a [`BodyVerifier`] to stream the body through, for a body too large to
/// hold in memory (`render-deploy verify` of a capture). A header problem is reported here,
/// before any of the body is read; whether the signature matches, by [`BodyVerifier::finish`].
pub fn verifier<'h>(
    secret: &WebhookSecret,
    headers: &'h HeaderMap,
    now: i64,
    tolerance: Duration,
) -> Result<BodyVerifier<'h>, VerifyError> {
    // The same decision as `detect_scheme`, but the `webhook-signature` lookup that settles the
    // usual case is kept and handed on instead of being done a second time.
    let signatures = headers.get_all(&WEBHOOK_SIGNATURE_NAME);
    if signatures.iter().next().is_some()
        || headers.contains_key(&WEBHOOK_ID_NAME)
        || headers.contains_key(&WEBHOOK_TIMESTAMP_NAME)
    {
        standard(secret, headers, signatures, now, tolerance)
    } else if headers.contains_key(&GITHUB_SIGNATURE_NAME) {
        github(secret, headers)
    } else {
        Err(VerifyError::MissingHeader(WEBHOOK_SIGNATURE))
    }
}

/// A delivery whose headers checked out, waiting for its body: feed the raw bytes with
/// [`update`](Self::update) in any number of pieces, then [`finish`](Self::finish).
pub struct BodyVerifier<'h> {
    /// Keyed, and for Standard Webhooks already fed with `{id}.{timestamp}.`.
    mac: HmacSha256,
    expected: Expected,
    verified: Verified<'h>,
}

/// What the finished HMAC must match.
enum Expected {
    /// Any of the decoded `v1` signatures.
    Standard(Candidates),
    /// GitHub's one digest.
    Github([u8; 32]),
}

impl fmt::Debug for BodyVerifier<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyVerifier")
            .field("scheme", &self.verified.scheme)
            .finish_non_exhaustive()
    }
}

impl<'h> BodyVerifier<'h> {
    /// Feeds the next piece of the raw body.
    pub fn update(&mut self, chunk: &[u8]) {
        self.mac.update(chunk);
    }

    /// The delivery, when a signature matches the body fed so far.
    pub fn finish(self) -> Result<Verified<'h>, VerifyError> {
        let matched = match &self.expected {
            Expected::Standard(candidates) => {
                // One HMAC, finished once, whatever the number of candidates: a key rotation
                // list costs one more 32-byte comparison per signature, not another
                // finalisation. `CtOutput`'s `==` is the constant-time comparison that
                // `verify_slice` makes.
                let tag = self.mac.finalize();
                candidates.iter().fold(false, |found, candidate| {
                    // No short-circuit: every candidate is compared, so the time does not say
                    // which matched.
                    (tag == CtOutput::new((*candidate).into())) | found
                })
            }
            Expected::Github(digest) => self.mac.verify_slice(digest).is_ok(),
        };
        if matched {
            Ok(self.verified)
        } else {
            Err(VerifyError::NoMatchingSignature)
        }
    }
}

/// Parses the secret, then verifies as [`verify`] does; a bad secret is [`VerifyError::BadSecret`].
pub fn verify_with_secret_str<'h>(
    secret: &str,
    headers: &'h HeaderMap,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<Verified<'h>, VerifyError> {
    let secret = WebhookSecret::parse(secret)?;
    verify(&secret, headers, body, now, tolerance)
}

/// Verifies a Standard Webhooks delivery: id, timestamp within `tolerance` of `now` (inclusive,
/// both directions), and at least one `v1` signature over `{id}.{timestamp}.{body}`.
pub fn verify_standard<'h>(
    secret: &WebhookSecret,
    headers: &'h HeaderMap,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<Verified<'h>, VerifyError> {
    let signatures = headers.get_all(&WEBHOOK_SIGNATURE_NAME);
    let mut verifier = standard(secret, headers, signatures, now, tolerance)?;
    verifier.update(body);
    verifier.finish()
}

fn standard<'h>(
    secret: &WebhookSecret,
    headers: &'h HeaderMap,
    signatures: GetAll<'h, HeaderValue>,
    now: i64,
    tolerance: Duration,
) -> Result<BodyVerifier<'h>, VerifyError> {
    // Headers are read as bytes and each is checked once, by the parser that needs its exact
    // form: `to_str` would only add a pass over every byte that these parsers make anyway.
    let id = single_value(headers.get_all(&WEBHOOK_ID_NAME), WEBHOOK_ID)?;
    let id = parse_id(id, WEBHOOK_ID)?;
    let timestamp_text = single_value(headers.get_all(&WEBHOOK_TIMESTAMP_NAME), WEBHOOK_TIMESTAMP)?;
    let timestamp = parse_timestamp(timestamp_text)?;
    let signatures = single_value(signatures, WEBHOOK_SIGNATURE)?;
    // Parse the whole list before checking the clock or computing anything, so a malformed
    // header is reported as such whatever the time, and the work is bounded before the HMAC.
    let candidates = parse_standard_signatures(signatures)?;
    check_timestamp(timestamp, now, tolerance)?;

    // Fed in pieces: `{id}.{timestamp}.` is never formatted and the body never copied.
    let mut mac = secret.keyed.standard.clone();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_text);
    mac.update(b".");
    Ok(BodyVerifier {
        mac,
        expected: Expected::Standard(candidates),
        verified: Verified {
            scheme: Scheme::Standard,
            id: Some(id),
            timestamp: Some(timestamp),
        },
    })
}

/// A GitHub delivery: `X-Hub-Signature-256: sha256=<64 hex>` over the raw body, keyed with the
/// secret exactly as written. The delivery id is returned when `X-GitHub-Delivery` is present
/// (the HTTP endpoint requires it; offline `verify` does not).
fn github<'h>(
    secret: &WebhookSecret,
    headers: &'h HeaderMap,
) -> Result<BodyVerifier<'h>, VerifyError> {
    let expected = github_digest(headers)?;
    let id = github_delivery(headers)?;
    Ok(BodyVerifier {
        mac: secret.keyed.github.clone(),
        expected: Expected::Github(expected),
        verified: Verified {
            scheme: Scheme::Github,
            id,
            timestamp: None,
        },
    })
}

/// The `sha256=<64 lowercase hex>` digest of `X-Hub-Signature-256`, decoded.
fn github_digest(headers: &HeaderMap) -> Result<[u8; 32], VerifyError> {
    let value = single_value(headers.get_all(&GITHUB_SIGNATURE_NAME), GITHUB_SIGNATURE)?;
    let hex_part = value
        .strip_prefix(b"sha256=")
        .ok_or(malformed(GITHUB_SIGNATURE, "does not start with sha256="))?;
    // Lowercase only, as GitHub sends it: `hex` would also take `A–F`, a second spelling.
    let lowercase_hex = |b: &u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
    if hex_part.len() != 64 || !hex_part.iter().all(lowercase_hex) {
        return Err(malformed(
            GITHUB_SIGNATURE,
            "is not 64 lowercase hexadecimal digits",
        ));
    }
    let mut expected = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut expected)
        .map_err(|_| malformed(GITHUB_SIGNATURE, "is not 64 lowercase hexadecimal digits"))?;
    Ok(expected)
}

/// `X-GitHub-Delivery`, when present.
fn github_delivery(headers: &HeaderMap) -> Result<Option<&str>, VerifyError> {
    match optional_single_value(headers.get_all(&GITHUB_DELIVERY_NAME), GITHUB_DELIVERY)? {
        Some(id) => Ok(Some(parse_id(id, GITHUB_DELIVERY)?)),
        None => Ok(None),
    }
}

/// Every check of [`verify`] that needs neither the key nor the body: the headers are present,
/// well-formed, name at least one `v1` signature, and the timestamp is within `tolerance`.
///
/// For refusing a delivery before reading its body: anyone can send a stale or malformed one
/// announcing a large body, and none of them could pass [`verify`] once the body is in. A
/// delivery that passes still needs [`verify`]; one that fails gets the error `verify` would
/// give, whatever the key and the body.
pub fn check_headers(
    headers: &HeaderMap,
    now: i64,
    tolerance: Duration,
) -> Result<Scheme, VerifyError> {
    let signatures = headers.get_all(&WEBHOOK_SIGNATURE_NAME);
    if signatures.iter().next().is_some()
        || headers.contains_key(&WEBHOOK_ID_NAME)
        || headers.contains_key(&WEBHOOK_TIMESTAMP_NAME)
    {
        parse_id(
            single_value(headers.get_all(&WEBHOOK_ID_NAME), WEBHOOK_ID)?,
            WEBHOOK_ID,
        )?;
        let timestamp = parse_timestamp(single_value(
            headers.get_all(&WEBHOOK_TIMESTAMP_NAME),
            WEBHOOK_TIMESTAMP,
        )?)?;
        let candidates = parse_standard_signatures(single_value(signatures, WEBHOOK_SIGNATURE)?)?;
        check_timestamp(timestamp, now, tolerance)?;
        if candidates.iter().next().is_none() {
            return Err(VerifyError::NoMatchingSignature);
        }
        Ok(Scheme::Standard)
    } else if headers.contains_key(&GITHUB_SIGNATURE_NAME) {
        github_digest(headers)?;
        github_delivery(headers)?;
        Ok(Scheme::Github)
    } else {
        Err(VerifyError::MissingHeader(WEBHOOK_SIGNATURE))
    }
}

/// Signs for Standard Webhooks: returns `v1,<base64>` over `{id}.{timestamp}.{body}`.
pub fn sign_standard(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signer = BodySigner::standard(secret, id, timestamp);
    signer.update(body);
    signer.finish()
}

/// Signs for GitHub: returns `sha256=<hex>` over the body.
pub fn sign_github(secret: &WebhookSecret, body: &[u8]) -> String {
    let mut signer = BodySigner::github(secret);
    signer.update(body);
    signer.finish()
}

/// A signature computed over a body streamed in pieces (`render-deploy sign` of a large file).
pub struct BodySigner {
    mac: HmacSha256,
    scheme: Scheme,
}

impl fmt::Debug for BodySigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodySigner")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl BodySigner {
    /// Standard Webhooks: the prefix `{id}.{timestamp}.` is fed now, the body after.
    pub fn standard(secret: &WebhookSecret, id: &str, timestamp: i64) -> Self {
        let mut mac = secret.keyed.standard.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        Self {
            mac,
            scheme: Scheme::Standard,
        }
    }

    /// GitHub: the body alone.
    pub fn github(secret: &WebhookSecret) -> Self {
        Self {
            mac: secret.keyed.github.clone(),
            scheme: Scheme::Github,
        }
    }

    /// Feeds the next piece of the body.
    pub fn update(&mut self, chunk: &[u8]) {
        self.mac.update(chunk);
    }

    /// The signature header's value: `v1,<base64>` or `sha256=<hex>`.
    pub fn finish(self) -> String {
        let tag = self.mac.finalize().into_bytes();
        match self.scheme {
            Scheme::Standard => format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(tag)
            ),
            Scheme::Github => format!("sha256={}", hex::encode(tag)),
        }
    }
}

/// Whether `id` is acceptable as a delivery id: 1 to [`MAX_ID_LEN`] bytes of visible ASCII.
pub fn is_valid_id(id: &str) -> bool {
    is_valid_id_bytes(id.as_bytes())
}

fn is_valid_id_bytes(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.iter().all(u8::is_ascii_graphic)
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (long ones are hashed first), so this cannot fail; the
    // fallback keeps the function total without an unwrap.
    <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()))
}

#[cfg(test)]
mod tests;
