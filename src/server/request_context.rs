//! What the server puts in every request's extensions: the request's id and the shutdown
//! signal, in one entry, and the extractors that read them.
//!
//! Each extension is a box of its own in a map that axum has already put two entries in (the
//! matched path and the path parameters); past three the map grows, which cost a rehash and an
//! allocation on every request (malloc probes under `perf`). One entry of ours, and axum without
//! its `original-uri` feature (which added a copy of the URI that nothing reads), keep it at three.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error_body::json_error;
use super::shutdown::{MissingShutdown, Shutdown};
use crate::telemetry::request_log::IdText;

/// The request-id header, read from the caller or made up.
pub(crate) const REQUEST_ID: &str = "x-request-id";
/// Up to this many header names, the request's id is looked for by comparing names rather than
/// by the map's hash ([`RequestId::of`]).
const FEW_HEADERS: usize = 8;
/// The same, as a header name made at compile time: from a `&str` it is parsed on every use,
/// and a `static`'s clone (each answer's header needs its own) is a call through its bytes'
/// vtable, where a constant is built in place (`perf`: the clone was the busiest spot of the
/// middleware's answer path).
pub(crate) const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(REQUEST_ID);

/// The id of the current request: the caller's `x-request-id` when it is short visible ASCII,
/// else 32 hex digits made up (`random::request_id_bits`). Handlers take it as an extractor;
/// every log line of the request and its answer's `x-request-id` header carry it.
#[derive(Debug, Clone)]
pub struct RequestId(IdText);

impl RequestId {
    /// The caller's id when it is acceptable (a clone of the header, no copy), else a new one.
    pub(crate) fn of(request: &Request) -> Self {
        let headers = request.headers();
        // A custom name is hashed byte by byte for the map's look-up; a request with a few
        // headers is read sooner by comparing names, where a standard one differs at once
        // (callgrind: ~65 instructions per request less with wrk's one header). The first
        // value either way.
        let caller = if headers.keys_len() <= FEW_HEADERS {
            headers
                .iter()
                .find_map(|(name, value)| (*name == REQUEST_ID_HEADER).then_some(value))
        } else {
            headers.get(&REQUEST_ID_HEADER)
        };
        match caller {
            Some(v) if is_acceptable(v.as_bytes()) => RequestId(IdText::Caller(v.clone())),
            _ => Self::new(),
        }
    }

    /// 128 bits (`random::request_id_bits`) as 32 hex digits, held inline (see [`IdText`]).
    fn new() -> Self {
        RequestId(IdText::Made(hex_digits(crate::random::request_id_bits())))
    }

    /// The id as text (short visible ASCII: a caller's id is kept only when it is).
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub(crate) fn text(&self) -> &IdText {
        &self.0
    }

    pub(crate) fn into_header_value(self) -> HeaderValue {
        self.0.into_header_value()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `bits` as 32 lowercase hex digits, two per byte from a table: the `hex` crate's general
/// encoder, a digit at a time, cost ~65 instructions more per request (callgrind).
fn hex_digits(bits: u128) -> [u8; 32] {
    const PAIRS: [[u8; 2]; 256] = {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut pairs = [[0u8; 2]; 256];
        let mut byte = 0;
        while byte < 256 {
            pairs[byte] = [DIGITS[byte >> 4], DIGITS[byte & 15]];
            byte += 1;
        }
        pairs
    };
    let mut text = [0u8; 32];
    for (pair, byte) in text
        .as_chunks_mut::<2>()
        .0
        .iter_mut()
        .zip(bits.to_be_bytes())
    {
        *pair = PAIRS[usize::from(byte)];
    }
    text
}

/// A caller's request id is kept when it is short visible ASCII (it goes into logs).
fn is_acceptable(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(u8::is_ascii_graphic)
}

/// The one extension the server adds to every request.
#[derive(Debug, Clone)]
pub(crate) struct RequestContext {
    id: RequestId,
    shutdown: Shutdown,
}

impl RequestContext {
    pub(crate) fn insert(request: &mut Request, id: &RequestId, shutdown: &Shutdown) {
        request.extensions_mut().insert(RequestContext {
            id: id.clone(),
            shutdown: shutdown.clone(),
        });
    }
}

/// The request's id, when the router is served by [`Deployment`](super::Deployment).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no request id in the request's extensions (serve with Deployment)")]
pub struct MissingRequestId;

impl IntoResponse for MissingRequestId {
    fn into_response(self) -> Response {
        tracing::error!(error = %self, "handler cannot get the request id");
        json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = MissingRequestId;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<RequestContext>()
            .map(|context| context.id.clone())
            .ok_or(MissingRequestId)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Shutdown {
    type Rejection = MissingShutdown;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let extensions = &parts.extensions;
        extensions
            .get::<RequestContext>()
            .map(|context| context.shutdown.clone())
            // A router served some other way, with `Extension(Shutdown::from_token(…))`.
            .or_else(|| extensions.get::<Shutdown>().cloned())
            .ok_or(MissingShutdown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_request_id_is_kept_only_when_printable_and_short() {
        assert!(is_acceptable(b"abc-123"));
        assert!(!is_acceptable(b""));
        assert!(!is_acceptable(b"has space"));
        assert!(!is_acceptable("é".as_bytes()));
        assert!(!is_acceptable("x".repeat(129).as_bytes()));
        let id = RequestId::new();
        assert_eq!(id.as_str().len(), 32);
        assert!(id.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        // The answer's header says the same id as the log.
        assert_eq!(id.clone().into_header_value(), id.as_str());
        assert_ne!(RequestId::new().as_str(), id.as_str());
    }

    #[test]
    fn the_callers_id_is_found_among_few_headers_and_many() {
        for others in [0, 1, FEW_HEADERS - 1, FEW_HEADERS, 40] {
            let mut builder = Request::builder().header("host", "example");
            for n in 0..others {
                builder = builder.header(format!("x-other-{n}"), "v");
            }
            let request = builder
                .header("X-Request-Id", "first")
                .header("x-request-id", "second")
                .body(axum::body::Body::empty())
                .unwrap();
            assert_eq!(RequestId::of(&request).as_str(), "first", "{others} others");
        }
        let unusable = Request::builder()
            .header("x-request-id", "has space")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(RequestId::of(&unusable).as_str().len(), 32);
    }

    #[test]
    fn the_digits_are_the_hex_crates() {
        for bits in [
            0,
            1,
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
            1 << 127,
        ] {
            assert_eq!(
                hex_digits(bits),
                *hex::encode(bits.to_be_bytes()).as_bytes()
            );
        }
    }
}
