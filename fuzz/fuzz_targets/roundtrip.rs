//! Sign then verify on arbitrary secrets, ids, timestamps and bodies: always accepted, and
//! refused once any one bit of the body is flipped.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run roundtrip -- -max_total_time=60` (from the repository root)

#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use render_deploy::signature::{self, VerifyError, WebhookSecret, sign_github, sign_standard};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    secret: &'a str,
    id: &'a str,
    timestamp: u32,
    body: &'a [u8],
    flip_at: u16,
    flip_bit: u8,
}

fuzz_target!(|input: Input<'_>| {
    let Ok(secret) = WebhookSecret::parse(input.secret) else {
        return;
    };
    if !signature::is_valid_id(input.id) {
        return;
    }
    let ts = i64::from(input.timestamp);
    let tolerance = Duration::from_secs(300);

    let mut standard = HeaderMap::new();
    let sig = sign_standard(&secret, input.id, ts, input.body);
    standard.insert(
        signature::WEBHOOK_ID,
        HeaderValue::from_str(input.id).unwrap(),
    );
    standard.insert(signature::WEBHOOK_TIMESTAMP, HeaderValue::from(ts));
    standard.insert(
        signature::WEBHOOK_SIGNATURE,
        HeaderValue::from_str(&sig).unwrap(),
    );
    let v = signature::verify(&secret, &standard, input.body, ts, tolerance)
        .expect("what sign_standard signs verifies");
    assert_eq!((v.id, v.timestamp), (Some(input.id), Some(ts)));

    let mut github = HeaderMap::new();
    let sig = sign_github(&secret, input.body);
    github.insert(
        signature::GITHUB_SIGNATURE,
        HeaderValue::from_str(&sig).unwrap(),
    );
    signature::verify(&secret, &github, input.body, 0, tolerance)
        .expect("what sign_github signs verifies");

    if !input.body.is_empty() {
        let mut changed = input.body.to_vec();
        let at = usize::from(input.flip_at) % changed.len();
        changed[at] ^= 1 << (input.flip_bit % 8);
        for headers in [&standard, &github] {
            assert_eq!(
                signature::verify(&secret, headers, &changed, ts, tolerance),
                Err(VerifyError::NoMatchingSignature)
            );
        }
    }
});
