//! The in-flight body budget: how many bytes of delivery bodies may be held in memory at once, all connections together (`WEBHOOK_MAX_INFLIGHT`).
//!
//! `WEBHOOK_MAX_BODY` bounds one delivery, not how many are read at once: four hundred clients
//! each announcing a 1 MiB body with a well-formed (but unverifiable until the body is in)
//! signature would make the service hold 400 MiB. Nobody needs the secret for that. So every
//! body is read against one shared budget: a delivery reserves its declared length before a
//! byte is read (a chunked one reserves as its chunks arrive), and a delivery that does not
//! fit is answered 503 with `Retry-After` at once, unread. Render's own deliveries are small
//! and come one at a time; nothing legitimate comes near the default of 8 MiB.
//!
//! A [`Reservation`] gives its bytes back when dropped — when the handler is done with the
//! body, or when the client goes away mid-body and the handler's future is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;

/// The gauge of body bytes reserved now.
pub const INFLIGHT_METRIC: &str = "render_deploy_hook_inflight_body_bytes";

/// Seconds a client refused for the budget is asked to wait (`Retry-After`): long enough for
/// the deliveries in flight to finish, short enough that a retried delivery is still fresh.
pub const RETRY_AFTER_SECS: u64 = 2;

/// Bytes of bodies held at once, all requests together.
#[derive(Debug)]
pub struct BodyBudget {
    limit: usize,
    used: AtomicUsize,
}

/// Bytes taken from a [`BodyBudget`]; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

/// Why a body was not read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// More than the per-request limit (declared or sent).
    #[error("body over {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// The shared budget cannot hold it now.
    #[error("in-flight body budget of {limit} bytes is spent")]
    OverBudget {
        /// The budget.
        limit: usize,
    },
    /// The body could not be read (the client went away, or broke the framing).
    #[error("reading the body: {0}")]
    Read(#[source] axum::Error),
}

impl BodyBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Takes `bytes`, or `None` when they do not fit beside what is reserved.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        self.take(bytes).then(|| Reservation {
            budget: Arc::clone(self),
            bytes,
        })
    }

    fn take(&self, bytes: usize) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            });
        if let Ok(before) = taken {
            metrics::gauge!(INFLIGHT_METRIC).set((before + bytes) as f64);
        }
        taken.is_ok()
    }

    fn give_back(&self, bytes: usize) {
        let before = self.used.fetch_sub(bytes, Ordering::AcqRel);
        metrics::gauge!(INFLIGHT_METRIC).set(before.saturating_sub(bytes) as f64);
    }
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Grows the reservation to `total` bytes; false (and unchanged) when that does not fit.
    pub fn grow_to(&mut self, total: usize) -> bool {
        if total <= self.bytes {
            return true;
        }
        let more = total - self.bytes;
        if self.budget.take(more) {
            self.bytes = total;
            true
        } else {
            false
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.give_back(self.bytes);
        }
    }
}

/// Reads `body` whole, at most `max` bytes, holding its bytes in `budget` meanwhile.
///
/// `declared` (the `Content-Length`) is reserved before anything is read, so a delivery that
/// cannot fit is refused unread; without one, each chunk is reserved as it arrives. The
/// reservation is returned with the bytes: the caller keeps it for as long as it keeps them.
pub async fn read_within(
    body: Body,
    declared: Option<u64>,
    max: usize,
    budget: &Arc<BodyBudget>,
) -> Result<(Bytes, Reservation), BodyError> {
    let declared = match declared {
        Some(n) => Some(
            usize::try_from(n)
                .ok()
                .filter(|&n| n <= max)
                .ok_or(BodyError::TooLarge { max })?,
        ),
        None => None,
    };
    let over_budget = || BodyError::OverBudget {
        limit: budget.limit(),
    };
    let mut reservation = budget
        .reserve(declared.unwrap_or(0))
        .ok_or_else(over_budget)?;
    // Exactly the declared size (within `max`, and reserved); hyper refuses a body longer
    // than its `Content-Length`, so the buffer never grows past it.
    let mut buf = Vec::with_capacity(declared.unwrap_or(0));
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing the endpoint reads
        };
        let total = buf.len() + data.len();
        if total > max {
            return Err(BodyError::TooLarge { max });
        }
        if !reservation.grow_to(total) {
            return Err(over_budget());
        }
        buf.extend_from_slice(&data);
    }
    Ok((Bytes::from(buf), reservation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_one_limit_and_give_their_bytes_back_when_dropped() {
        let budget = BodyBudget::new(10);
        let a = budget.reserve(6).expect("fits");
        assert!(budget.reserve(5).is_none(), "6 + 5 > 10");
        let mut b = budget.reserve(4).expect("6 + 4 = 10 fits");
        assert!(!b.grow_to(5));
        assert_eq!(b.bytes(), 4);
        drop(a);
        assert!(b.grow_to(9));
        assert_eq!(budget.in_use(), 9);
        drop(b);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_body_is_read_whole_within_its_limit_and_the_budget() {
        let budget = BodyBudget::new(8);
        let (bytes, held) = read_within(Body::from("hello"), Some(5), 5, &budget)
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"hello");
        assert_eq!(budget.in_use(), 5);
        drop(held);

        let over = read_within(Body::from("123456"), Some(6), 5, &budget).await;
        assert!(
            matches!(over, Err(BodyError::TooLarge { max: 5 })),
            "{over:?}"
        );
        let chunked_over = read_within(Body::from("123456"), None, 5, &budget).await;
        assert!(matches!(chunked_over, Err(BodyError::TooLarge { .. })));

        let _hog = budget.reserve(6).unwrap();
        let refused = read_within(Body::from("abc"), Some(3), 5, &budget).await;
        assert!(
            matches!(refused, Err(BodyError::OverBudget { limit: 8 })),
            "{refused:?}"
        );
        let refused_chunked = read_within(Body::from("abc"), None, 5, &budget).await;
        assert!(matches!(refused_chunked, Err(BodyError::OverBudget { .. })));
        assert_eq!(budget.in_use(), 6, "a refused read holds nothing");
    }
}
