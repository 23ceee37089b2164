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

/// 128 bits for a request id, without a system call per id: 64 bits of a keyed hash, then
/// 64 of this thread's count of ids.
///
/// The standard library's `RandomState` keys SipHash from the operating system once per thread
/// and then steps one of the keys by one for each new `RandomState`: hashing a constant with a
/// fresh one is a keyed pseudo-random function of a counter, so that half is independent across
/// processes and cannot be guessed from earlier ids without the thread's key. The constant is
/// the empty message: SipHash's finish is keyed all the same, and a byte written would cost its
/// tail handling (callgrind: `RequestId::of` 275 instructions per request with one byte, 214
/// without). The count (from a random start, drawn once per thread) makes an id unique within
/// its thread for good, where hashes alone are unique only very likely. (A second hash for the
/// low half, as before: 342 instructions per request in `hash_one` with it, 257 without.) Good
/// for telling requests apart in logs; not for secrets (those use [`bytes`]).
pub(crate) fn request_id_bits() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        static COUNT: std::cell::Cell<u64> = std::cell::Cell::new(u64::from_le_bytes(bytes()));
    }
    let count = COUNT.with(|count| {
        let next = count.get().wrapping_add(1);
        count.set(next);
        next
    });
    let hash = std::hash::RandomState::new().build_hasher().finish();
    (u128::from(hash) << 64) | u128::from(count)
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
    fn request_ids_do_not_repeat_and_use_every_bit_of_their_hash() {
        let made: Vec<u128> = (0..10_000).map(|_| request_id_bits()).collect();
        let ids: std::collections::HashSet<u128> = made.iter().copied().collect();
        assert_eq!(ids.len(), 10_000);
        // Every one of the hash's 64 bits is set in some id and clear in another.
        let hashes = made.iter().map(|id| (id >> 64) as u64);
        let (all_or, all_and) = hashes.fold((0, u64::MAX), |(o, a), h| (o | h, a & h));
        assert_eq!((all_or, all_and), (u64::MAX, 0));
        // The low half counts this thread's ids, one by one.
        assert!(
            made.windows(2)
                .all(|w| (w[1] as u64).wrapping_sub(w[0] as u64) == 1)
        );
        // Another thread has its own keys and count: its ids are not the same sequence.
        let other = std::thread::spawn(|| [request_id_bits(), request_id_bits()])
            .join()
            .unwrap();
        assert!(!ids.contains(&other[0]) && !ids.contains(&other[1]));
        assert_ne!(other[0] >> 64, other[1] >> 64);
    }

    #[test]
    fn two_draws_differ() {
        assert_ne!(bytes::<16>(), bytes::<16>());
        assert_ne!(alphanumeric(24), alphanumeric(24));
    }
}
