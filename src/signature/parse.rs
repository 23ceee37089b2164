//! Parsing the signature headers strictly (see the module's "strict choices"): ids,
//! timestamps, the `v1,` signature list and its base64, each refused with one named reason.

use std::time::Duration;

use super::*;

pub(super) fn malformed(header: &'static str, problem: &'static str) -> VerifyError {
    VerifyError::MalformedHeader { header, problem }
}

/// The bytes of a header given at most once; `label` is its name, for the error.
pub(super) fn optional_single_value<'h>(
    values: GetAll<'h, HeaderValue>,
    label: &'static str,
) -> Result<Option<&'h [u8]>, VerifyError> {
    let mut values = values.iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(malformed(label, "is given more than once"));
    }
    Ok(Some(first.as_bytes()))
}

pub(super) fn single_value<'h>(
    values: GetAll<'h, HeaderValue>,
    label: &'static str,
) -> Result<&'h [u8], VerifyError> {
    optional_single_value(values, label)?.ok_or(VerifyError::MissingHeader(label))
}

/// A delivery id as text, when it is 1 to [`MAX_ID_LEN`] bytes of visible ASCII.
pub(super) fn parse_id<'h>(id: &'h [u8], header: &'static str) -> Result<&'h str, VerifyError> {
    let refused = || malformed(header, "is not 1 to 256 visible ASCII characters");
    if !is_valid_id_bytes(id) {
        return Err(refused());
    }
    // Cannot fail after the ASCII check; mapped rather than unwrapped all the same.
    std::str::from_utf8(id).map_err(|_| refused())
}

/// A canonical decimal Unix timestamp, checked and converted in one pass.
pub(super) fn parse_timestamp(text: &[u8]) -> Result<i64, VerifyError> {
    let not_canonical = || {
        malformed(
            WEBHOOK_TIMESTAMP,
            "is not a canonical Unix timestamp (digits only, no sign, no leading zero)",
        )
    };
    match text {
        [] | [b'0', _, ..] => return Err(not_canonical()),
        _ if text.len() > 19 => return Err(not_canonical()),
        _ => {}
    }
    let mut value: i64 = 0;
    for &b in text {
        if !b.is_ascii_digit() {
            return Err(not_canonical());
        }
        // Only a 19th digit can overflow, and only after every earlier byte was a digit.
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(b - b'0')))
            .ok_or(malformed(WEBHOOK_TIMESTAMP, "is out of range"))?;
    }
    Ok(value)
}

pub(super) fn check_timestamp(
    timestamp: i64,
    now: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    // i128: neither a garbage timestamp nor a garbage `now` can overflow the difference.
    let tolerance = tolerance.as_secs();
    let diff = i128::from(now) - i128::from(timestamp);
    let saturate = |d: i128| u64::try_from(d).unwrap_or(u64::MAX);
    if diff > i128::from(tolerance) {
        Err(VerifyError::TimestampTooOld {
            age: saturate(diff),
            tolerance,
        })
    } else if -diff > i128::from(tolerance) {
        Err(VerifyError::TimestampInFuture {
            ahead: saturate(-diff),
            tolerance,
        })
    } else {
        Ok(())
    }
}

/// The decoded `v1` signatures of one header. The first is kept inline and only further ones
/// (key rotation) go to the heap, so the usual one-signature delivery allocates nothing.
pub(super) struct Candidates {
    first: Option<[u8; 32]>,
    rest: Vec<[u8; 32]>,
}

impl Candidates {
    pub(super) fn iter(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.first.iter().chain(&self.rest)
    }
}

/// Parses `webhook-signature` into its decoded `v1` signatures; entries of other versions are
/// counted (towards [`MAX_SIGNATURES`]) and skipped.
pub(super) fn parse_standard_signatures(value: &[u8]) -> Result<Candidates, VerifyError> {
    let mut candidates = Candidates {
        first: None,
        rest: Vec::new(),
    };
    // The usual header is one `v1` entry: `v1,` and 44 letters that decode, which leaves no
    // room for a space, so it is taken whole without splitting the list.
    if let Some(decoded) = value.strip_prefix(b"v1,").and_then(decode_signature) {
        candidates.first = Some(decoded);
        return Ok(candidates);
    }
    let mut entries = 0;
    for entry in value.split(|&b| b == b' ').filter(|e| !e.is_empty()) {
        if entries == MAX_SIGNATURES {
            return Err(malformed(WEBHOOK_SIGNATURE, "has more than 32 signatures"));
        }
        entries += 1;
        let Some(comma) = entry.iter().position(|&b| b == b',') else {
            return Err(malformed(
                WEBHOOK_SIGNATURE,
                "has an entry without a version tag",
            ));
        };
        let (version, signature) = entry.split_at(comma);
        if version != b"v1" {
            // Skipped, but held to what an HTTP header may carry (visible ASCII or tab), as
            // the `v1` entries are by their decoder.
            if !entry
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
            {
                return Err(malformed(WEBHOOK_SIGNATURE, "is not visible ASCII"));
            }
            continue;
        }
        let decoded = signature
            .strip_prefix(b",")
            .and_then(decode_signature)
            .ok_or(malformed(
                WEBHOOK_SIGNATURE,
                "has a v1 signature that is not canonical base64 of 32 bytes",
            ))?;
        if candidates.first.is_none() {
            candidates.first = Some(decoded);
        } else {
            candidates.rest.push(decoded);
        }
    }
    if entries == 0 {
        return Err(malformed(WEBHOOK_SIGNATURE, "is empty"));
    }
    Ok(candidates)
}

/// Marks a byte outside the standard base64 alphabet in [`BASE64_DECODE`]; the high bit is
/// never set in a valid sextet, so one OR over all lookups tells whether any was invalid.
const NOT_BASE64: u8 = 0xff;

/// Standard base64 alphabet (`A–Z a–z 0–9 + /`) to sextet values.
static BASE64_DECODE: [u8; 256] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut table = [NOT_BASE64; 256];
    let mut i = 0;
    while i < alphabet.len() {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Decodes the one shape a `v1` signature may take: canonical padded standard base64 of exactly
/// 32 bytes, i.e. 43 alphabet letters, the last carrying two zero bits, then one `=`.
///
/// Written out rather than calling the `base64` crate, whose general decoder costs a fixed
/// ~500 instructions (a tenth of the non-hashing work of a 1 KiB verification) on this
/// 44-byte input; it is held to the same answers as `base64`'s `STANDARD` engine by a unit
/// test below and by the differential fuzz target (`fuzz/fuzz_targets/verify.rs`).
pub(super) fn decode_signature(text: &[u8]) -> Option<[u8; 32]> {
    let text: &[u8; 44] = text.try_into().ok()?;
    let mut out = [0u8; 32];
    let mut invalid = 0u8;
    // Fixed-size arrays and constant bounds: the indexing below cannot fail and compiles to
    // straight-line code without bounds checks.
    let mut sextet = |i: usize| {
        let v = BASE64_DECODE[usize::from(text[i])];
        invalid |= v;
        u32::from(v)
    };
    for q in 0..10 {
        let n = (sextet(4 * q) << 18)
            | (sextet(4 * q + 1) << 12)
            | (sextet(4 * q + 2) << 6)
            | sextet(4 * q + 3);
        let [_, hi, mid, lo] = n.to_be_bytes();
        out[3 * q] = hi;
        out[3 * q + 1] = mid;
        out[3 * q + 2] = lo;
    }
    let n = (sextet(40) << 18) | (sextet(41) << 12) | (sextet(42) << 6);
    // The two low bits of the last letter fall past the 32nd byte: non-zero means a second
    // spelling of the same signature (`…OF=` for `…OE=`), so it is refused.
    if invalid & 0x80 != 0 || text[43] != b'=' || n & 0xff != 0 {
        return None;
    }
    let [_, hi, lo, _] = n.to_be_bytes();
    out[30] = hi;
    out[31] = lo;
    Some(out)
}
