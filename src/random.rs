//! Random request ids, delivery ids, passwords and back-off jitter, straight from the operating system.
//!
//! Nothing here needs a seeded or fast generator: a few dozen bytes per request or per cluster,
//! so `getrandom` (which the tree already has, through tempfile and tokio-postgres) is enough
//! and the crate carries no `rand`.

/// `N` bytes from the operating system's random source.
pub(crate) fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The kernel's source does not fail once the system has booted; if it ever did, no id
    // or password we could make instead would be safe to use.
    getrandom::fill(&mut out).expect("the operating system's random source failed");
    out
}

/// A number drawn uniformly from `[0, 1)` (53 random bits, the precision of an `f64`).
pub(crate) fn fraction() -> f64 {
    (u64::from_le_bytes(bytes::<8>()) >> 11) as f64 / (1u64 << 53) as f64
}

/// `len` characters drawn uniformly from `A-Z`, `a-z`, `0-9`.
#[cfg(any(feature = "dev", feature = "cli"))]
pub(crate) fn alphanumeric(len: usize) -> String {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for byte in bytes::<32>() {
            // 248 = 4 × 62: dropping the bytes above keeps every character equally likely.
            if byte < 248 && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(byte % 62)]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphanumeric_has_the_length_and_alphabet_asked_for() {
        for len in [0, 1, 24, 100] {
            let s = alphanumeric(len);
            assert_eq!(s.len(), len);
            assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()), "{s}");
        }
    }

    #[test]
    fn fractions_stay_in_the_unit_interval_and_spread_over_it() {
        let draws: Vec<f64> = (0..1000).map(|_| fraction()).collect();
        assert!(draws.iter().all(|f| (0.0..1.0).contains(f)));
        assert!(draws.iter().any(|f| *f < 0.1) && draws.iter().any(|f| *f > 0.9));
    }

    #[test]
    fn two_draws_differ() {
        assert_ne!(bytes::<16>(), bytes::<16>());
        assert_ne!(alphanumeric(24), alphanumeric(24));
    }
}
