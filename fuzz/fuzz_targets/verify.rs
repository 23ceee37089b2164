//! Header parsing and verification on arbitrary input: `signature::verify` must never panic,
//! must agree with the `base64` crate on which `v1` signatures are well formed, and must never
//! accept a delivery whose signed id or timestamp was changed.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run verify -- -max_total_time=600` (from the repository root)

#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use render_deploy::signature::{
    self, Scheme, VerifyError, WebhookSecret, sign_github, sign_standard,
};

#[derive(Arbitrary, Debug)]
enum Name<'a> {
    Id,
    Timestamp,
    Signature,
    GithubSignature,
    GithubDelivery,
    Other(&'a str),
}

impl Name<'_> {
    fn header(&self) -> Option<HeaderName> {
        let name = match self {
            Name::Id => signature::WEBHOOK_ID,
            Name::Timestamp => signature::WEBHOOK_TIMESTAMP,
            Name::Signature => signature::WEBHOOK_SIGNATURE,
            Name::GithubSignature => signature::GITHUB_SIGNATURE,
            Name::GithubDelivery => signature::GITHUB_DELIVERY,
            Name::Other(name) => return HeaderName::from_bytes(name.as_bytes()).ok(),
        };
        Some(HeaderName::from_static(name))
    }
}

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    /// Anything at all: a secret, any headers, any body, any clock.
    Raw {
        secret: &'a str,
        headers: Vec<(Name<'a>, &'a [u8])>,
        body: &'a [u8],
        now: i64,
        tolerance: u64,
    },
    /// A valid delivery whose `webhook-signature` is replaced by arbitrary bytes, so the
    /// fuzzer works on the signature list with the id, the timestamp and the clock right.
    Signatures { body: &'a [u8], value: &'a [u8] },
    /// `v1,` + exactly 44 arbitrary bytes: the verdict must match the `base64` crate's.
    Base64 { body: &'a [u8], text: [u8; 44] },
    /// A valid delivery with one header's bytes edited: a changed id or timestamp never passes.
    Edit {
        body: &'a [u8],
        github: bool,
        which: u8,
        at: u16,
        byte: u8,
        insert: bool,
    },
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const TS: i64 = 1_614_265_330;
const TOLERANCE: Duration = Duration::from_secs(300);

fn standard_headers(id: &[u8], ts: &[u8], sig: &[u8]) -> Option<HeaderMap> {
    let mut h = HeaderMap::new();
    h.insert(signature::WEBHOOK_ID, HeaderValue::from_bytes(id).ok()?);
    h.insert(
        signature::WEBHOOK_TIMESTAMP,
        HeaderValue::from_bytes(ts).ok()?,
    );
    h.insert(
        signature::WEBHOOK_SIGNATURE,
        HeaderValue::from_bytes(sig).ok()?,
    );
    Some(h)
}

fn reference_decode(text: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let n = base64::engine::general_purpose::STANDARD.decode_slice(text, &mut out);
    (text.len() == 44 && matches!(n, Ok(32))).then_some(out)
}

fn is_malformed<T>(r: &Result<T, VerifyError>) -> bool {
    matches!(r, Err(VerifyError::MalformedHeader { .. }))
}

fn edit(value: &[u8], at: u16, byte: u8, insert: bool) -> Vec<u8> {
    let mut v = value.to_vec();
    let i = usize::from(at) % (v.len() + 1);
    if insert || i == v.len() {
        v.insert(i, byte);
    } else {
        v[i] = byte;
    }
    v
}

fuzz_target!(|input: Input<'_>| {
    let secret = WebhookSecret::parse(SECRET).expect("the fixed secret is valid");
    match input {
        Input::Raw {
            secret,
            headers,
            body,
            now,
            tolerance,
        } => {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                if let (Some(name), Ok(value)) = (name.header(), HeaderValue::from_bytes(value)) {
                    map.append(name, value);
                }
            }
            let tolerance = Duration::from_secs(tolerance);
            if let Ok(v) = signature::verify_with_secret_str(secret, &map, body, now, tolerance) {
                // Whatever passed carries a usable id, and a Standard one a timestamp in range.
                assert!(v.id.is_none_or(signature::is_valid_id));
                if v.scheme == Scheme::Standard {
                    let ts = v.timestamp.expect("standard deliveries are timestamped");
                    assert!(
                        (i128::from(now) - i128::from(ts)).unsigned_abs()
                            <= u128::from(tolerance.as_secs())
                    );
                }
            }
        }
        Input::Signatures { body, value } => {
            let ts = TS.to_string();
            let Some(h) = standard_headers(ID.as_bytes(), ts.as_bytes(), value) else {
                return;
            };
            let result = signature::verify(&secret, &h, body, TS, TOLERANCE);
            if result.is_ok() {
                // Only a list holding the true signature can pass.
                let good = sign_standard(&secret, ID, TS, body);
                let listed = value.split(|&b| b == b' ').any(|e| e == good.as_bytes());
                assert!(listed, "accepted without the true signature: {value:?}");
            }
        }
        Input::Base64 { body, text } => {
            let ts = TS.to_string();
            let sig = [&b"v1,"[..], &text].concat();
            let Some(h) = standard_headers(ID.as_bytes(), ts.as_bytes(), &sig) else {
                return;
            };
            let result = signature::verify(&secret, &h, body, TS, TOLERANCE);
            match reference_decode(&text) {
                None => assert!(is_malformed(&result), "{result:?} for {text:?}"),
                Some(_) => {
                    let good = sign_standard(&secret, ID, TS, body);
                    let expect_ok = good.as_bytes() == sig.as_slice();
                    assert_eq!(result.is_ok(), expect_ok, "{result:?} for {text:?}");
                    if !expect_ok {
                        assert_eq!(result, Err(VerifyError::NoMatchingSignature));
                    }
                }
            }
        }
        Input::Edit {
            body,
            github,
            which,
            at,
            byte,
            insert,
        } => {
            let (mut values, names): (Vec<Vec<u8>>, [&'static str; 3]) = if github {
                (
                    vec![
                        sign_github(&secret, body).into_bytes(),
                        ID.as_bytes().to_vec(),
                    ],
                    [signature::GITHUB_SIGNATURE, signature::GITHUB_DELIVERY, ""],
                )
            } else {
                (
                    vec![
                        sign_standard(&secret, ID, TS, body).into_bytes(),
                        ID.as_bytes().to_vec(),
                        TS.to_string().into_bytes(),
                    ],
                    [
                        signature::WEBHOOK_SIGNATURE,
                        signature::WEBHOOK_ID,
                        signature::WEBHOOK_TIMESTAMP,
                    ],
                )
            };
            let i = usize::from(which) % values.len();
            let original = values[i].clone();
            values[i] = edit(&values[i], at, byte, insert);
            let mut h = HeaderMap::new();
            for (name, value) in names.iter().zip(&values) {
                let Ok(value) = HeaderValue::from_bytes(value) else {
                    return;
                };
                h.insert(*name, value);
            }
            let result = signature::verify(&secret, &h, body, TS, TOLERANCE);
            // The id and the timestamp are signed, so any change to them must fail; so must any
            // change to a signature other than spaces around it. GitHub's delivery id is not
            // signed (it is only the replay key), so editing it changes nothing.
            let benign = values[i] == original
                || (!github && i == 0 && byte == b' ' && values[i].trim_ascii() == original)
                || (github && i == 1);
            if !benign {
                assert!(result.is_err(), "edited {:?} still verifies", names[i]);
            }
        }
    }
});
