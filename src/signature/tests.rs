use super::parse::decode_signature;
use super::*;

fn secret(s: &str) -> WebhookSecret {
    WebhookSecret::parse(s).expect("valid secret")
}

#[test]
fn checking_the_headers_alone_refuses_exactly_what_verify_refuses_for_its_headers() {
    let key = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let now = 1_700_000_000;
    let tolerance = Duration::from_secs(300);
    let good = sign_standard(&key, "msg_1", now, b"{}");
    let fresh = now.to_string();
    let cases: &[&[(&str, &str)]] = &[
        &[],
        &[
            (WEBHOOK_ID, "msg_1"),
            (WEBHOOK_TIMESTAMP, "1"),
            (WEBHOOK_SIGNATURE, "v1,AAAA"),
        ],
        &[
            (WEBHOOK_ID, "msg_1"),
            (WEBHOOK_TIMESTAMP, "1"),
            (WEBHOOK_SIGNATURE, &good),
        ],
        &[
            (WEBHOOK_ID, "msg_1"),
            (WEBHOOK_TIMESTAMP, &fresh),
            (WEBHOOK_SIGNATURE, "v1,AAAA"),
        ],
        &[
            (WEBHOOK_ID, "msg_1"),
            (WEBHOOK_TIMESTAMP, &fresh),
            (WEBHOOK_SIGNATURE, "v2,abc"),
        ],
        &[
            (WEBHOOK_ID, "msg_1"),
            (WEBHOOK_TIMESTAMP, "9999999999"),
            (WEBHOOK_SIGNATURE, &good),
        ],
        &[(WEBHOOK_TIMESTAMP, &fresh), (WEBHOOK_SIGNATURE, &good)],
        &[
            (WEBHOOK_ID, "msg_1"),
            (WEBHOOK_TIMESTAMP, "+1"),
            (WEBHOOK_SIGNATURE, &good),
        ],
        &[(GITHUB_SIGNATURE, "sha256=ABC")],
        &[(GITHUB_SIGNATURE, "sha1=00")],
    ];
    for case in cases {
        let mut headers = HeaderMap::new();
        for (k, v) in *case {
            headers.append(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let early = check_headers(&headers, now, tolerance).expect_err("refused early");
        let late = verify(&key, &headers, b"{}", now, tolerance).expect_err("refused");
        assert_eq!(early, late, "{case:?}");
    }

    let mut signed = HeaderMap::new();
    for (k, v) in [
        (WEBHOOK_ID, "msg_1"),
        (WEBHOOK_TIMESTAMP, &fresh),
        (WEBHOOK_SIGNATURE, &good),
    ] {
        signed.insert(
            HeaderName::from_static(k),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    assert_eq!(check_headers(&signed, now, tolerance), Ok(Scheme::Standard));
    // Well-formed but wrong: only the body and the key can tell.
    signed.insert(
        HeaderName::from_static(WEBHOOK_SIGNATURE),
        HeaderValue::from_str(&sign_standard(&key, "msg_1", now, b"other")).unwrap(),
    );
    assert_eq!(check_headers(&signed, now, tolerance), Ok(Scheme::Standard));
    assert!(verify(&key, &signed, b"{}", now, tolerance).is_err());
}

#[test]
fn timestamps_must_be_canonical() {
    for bad in [
        "",
        "+1",
        "-1",
        "01",
        " 1",
        "1 ",
        "1.0",
        "1e3",
        "99999999999999999999",
    ] {
        assert!(parse_timestamp(bad.as_bytes()).is_err(), "{bad:?} accepted");
    }
    assert_eq!(parse_timestamp(b"0"), Ok(0));
    assert_eq!(parse_timestamp(b"1614265330"), Ok(1_614_265_330));
    assert_eq!(parse_timestamp(b"9223372036854775807"), Ok(i64::MAX));
    assert!(
        parse_timestamp(b"9223372036854775808").is_err(),
        "over i64::MAX"
    );
    assert!(
        parse_timestamp("١٢".as_bytes()).is_err(),
        "non-ASCII digits"
    );
}

/// What the `base64` crate's strict `STANDARD` engine says about a `v1` signature.
fn reference_decode(text: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let n = base64::engine::general_purpose::STANDARD.decode_slice(text, &mut out);
    (text.len() == 44 && matches!(n, Ok(32))).then_some(out)
}

#[test]
fn the_signature_decoder_agrees_with_the_base64_crate() {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut tried = 0;
    for _ in 0..2_000 {
        let bytes: [u8; 32] = rng.random();
        let good = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert_eq!(decode_signature(good.as_bytes()), Some(bytes));
        // Every position, set to a random byte and to each letter of the alphabet's edges.
        let mut text = good.into_bytes();
        let i = rng.random_range(0..text.len());
        for c in [
            rng.random(),
            b'=',
            b'A',
            b'/',
            b'+',
            b'-',
            b'_',
            b'a',
            b'9',
            0,
            0x80,
        ] {
            let saved = text[i];
            text[i] = c;
            assert_eq!(
                decode_signature(&text),
                reference_decode(&text),
                "{:?}",
                String::from_utf8_lossy(&text)
            );
            text[i] = saved;
            tried += 1;
        }
    }
    assert!(tried > 20_000);
    for text in [
        &b""[..],
        b"=",
        b"g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE",
        b"g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE==",
        b"g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=",
        b"g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1O==",
        b"g0hM9SsE-OTPJTGt_tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    ] {
        assert_eq!(decode_signature(text), reference_decode(text));
    }
    assert!(decode_signature(b"g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=").is_some());
}

#[test]
fn an_empty_whsec_secret_is_refused() {
    assert_eq!(
        WebhookSecret::parse("whsec_").err(),
        Some(SecretError::EmptyKey)
    );
}

#[test]
fn the_debug_output_of_a_secret_hides_it() {
    let s = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    assert!(!format!("{s:?}").contains("MfKQ"));
}

#[test]
fn garbage_clocks_do_not_overflow() {
    assert!(check_timestamp(i64::MAX, i64::MIN, Duration::from_secs(u64::MAX)).is_ok());
    assert!(matches!(
        check_timestamp(i64::MIN, i64::MAX, Duration::from_secs(1)),
        Err(VerifyError::TimestampTooOld { .. })
    ));
}
