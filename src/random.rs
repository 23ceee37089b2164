//! Random request ids, delivery ids, passwords and back-off jitter.
//!
//! Passwords, delivery ids and jitter come straight from the operating system (`getrandom`,
//! which the tree already has through tempfile and tokio-postgres), so the crate carries no
//! `rand`. Request ids are made on every request, where a system call each was measured at a
//! few percent of a no-I/O route's CPU: they come from [`request_id_bits`] instead.

/// `N` bytes from the operating system's random source.
pub(crate) fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The kernel's source does not fail once the system has booted; if it ever did, no id
    // or password we could make instead would be safe to use.
    getrandom::fill(&mut out).expect("the operating system's random source failed");
    out
}

/// 128 bits for a request id, without a system call.
///
/// The standard library's `RandomState` keys SipHash from the operating system once per thread
/// and then steps one of the keys by one for each new `RandomState`: hashing two constants with
/// a fresh one is a keyed pseudo-random function of a counter, so the ids do not repeat within a
/// process, are independent across processes, and cannot be guessed from earlier ones without
/// the thread's key. Good for telling requests apart in logs; not for secrets (those use
/// [`bytes`]).
pub(crate) fn request_id_bits() -> u128 {
    use std::hash::BuildHasher;
    let keyed = std::hash::RandomState::new();
    (u128::from(keyed.hash_one(0u8)) << 64) | u128::from(keyed.hash_one(1u8))
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
    fn request_ids_do_not_repeat_and_use_every_bit() {
        let ids: std::collections::HashSet<u128> = (0..10_000).map(|_| request_id_bits()).collect();
        assert_eq!(ids.len(), 10_000);
        // Every one of the 128 bits is set in some id and clear in another.
        let (all_or, all_and) = ids
            .iter()
            .fold((0u128, u128::MAX), |(o, a), id| (o | id, a & id));
        assert_eq!((all_or, all_and), (u128::MAX, 0));
        // Another thread has its own keys: its ids are not the same sequence.
        let other = std::thread::spawn(request_id_bits).join().unwrap();
        assert!(!ids.contains(&other));
    }

    #[test]
    fn two_draws_differ() {
        assert_ne!(bytes::<16>(), bytes::<16>());
        assert_ne!(alphanumeric(24), alphanumeric(24));
    }
}
