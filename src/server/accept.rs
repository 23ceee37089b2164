//! Accept failures: a short, growing pause instead of a spin, and one log line per burst instead of one per failure.
//!
//! `accept` fails with `EMFILE`/`ENFILE` when the process (or the system) is out of file
//! descriptors. The connection stays in the kernel's backlog, so retrying at once fails again:
//! a loop that logs and retries writes thousands of lines a second and burns the CPU that the
//! connections being served need. Instead each failure pauses the loop (1 ms, doubling to
//! [`MAX_PAUSE`], back to 1 ms on the next success) and a burst of failures is logged twice:
//! a warning at its first failure, and a summary with the count once [`QUIET`] has passed
//! without another.

use std::io;
use std::time::Duration;

use tokio::time::Instant;

/// The first pause after a failure.
pub const MIN_PAUSE: Duration = Duration::from_millis(1);
/// The longest pause between two attempts.
pub const MAX_PAUSE: Duration = Duration::from_millis(100);
/// A burst ends when this long has passed since its last failure.
pub const QUIET: Duration = Duration::from_secs(1);
/// The counter of failed accepts.
pub const ACCEPT_ERRORS_METRIC: &str = "render_deploy_accept_errors_total";

/// Whether a failed accept means "out of descriptors or memory" (closing a connection helps)
/// rather than one client's connection gone before it was taken (nothing to do).
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno::EMFILE | libc_errno::ENFILE | libc_errno::ENOBUFS | libc_errno::ENOMEM)
    )
}

/// Whether a failed accept concerns only the connection being accepted (retried at once).
pub fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e.raw_os_error() == Some(libc_errno::EPROTO)
}

mod libc_errno {
    use nix::errno::Errno;
    pub const EMFILE: i32 = Errno::EMFILE as i32;
    pub const ENFILE: i32 = Errno::ENFILE as i32;
    pub const ENOBUFS: i32 = Errno::ENOBUFS as i32;
    pub const ENOMEM: i32 = Errno::ENOMEM as i32;
    pub const EPROTO: i32 = Errno::EPROTO as i32;
}

/// The state of accept failures: the current pause and the burst being counted.
#[derive(Debug)]
pub struct AcceptErrors {
    pause: Duration,
    burst: Option<Burst>,
}

#[derive(Debug)]
struct Burst {
    started: Instant,
    last: Instant,
    failures: u64,
}

impl Default for AcceptErrors {
    fn default() -> Self {
        Self {
            pause: MIN_PAUSE,
            burst: None,
        }
    }
}

impl AcceptErrors {
    /// Counts a failure (logging it if it opens a burst) and returns how long to pause.
    pub fn failed(&mut self, error: &io::Error, now: Instant) -> Duration {
        metrics::counter!(ACCEPT_ERRORS_METRIC).increment(1);
        match &mut self.burst {
            Some(burst) => {
                burst.failures += 1;
                burst.last = now;
            }
            None => {
                tracing::warn!(
                    error = %error,
                    "accept failed; backing off (further failures are counted and summed up \
                     when accepting works again)"
                );
                self.burst = Some(Burst {
                    started: now,
                    last: now,
                    failures: 1,
                });
            }
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        pause
    }

    /// A connection was accepted: the next failure pauses briefly again.
    pub fn accepted(&mut self) {
        self.pause = MIN_PAUSE;
    }

    /// When the current burst ends if no failure comes first.
    pub fn quiet_at(&self) -> Option<Instant> {
        self.burst.as_ref().map(|b| b.last + QUIET)
    }

    /// Ends the burst if [`QUIET`] has passed since its last failure, logging its summary;
    /// returns the number of failures it counted.
    pub fn end_burst_if_quiet(&mut self, now: Instant) -> Option<u64> {
        let burst = self.burst.take_if(|b| now >= b.last + QUIET)?;
        tracing::info!(
            failures = burst.failures,
            lasted_ms = (burst.last - burst.started).as_millis() as u64,
            "accept failures ended"
        );
        Some(burst.failures)
    }

    /// Ends the burst now, if one is open (at shutdown: its summary is not lost).
    pub fn finish(&mut self) {
        if let Some(last) = self.burst.as_ref().map(|b| b.last) {
            self.end_burst_if_quiet(last + QUIET);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(libc_errno::EMFILE)
    }

    #[test]
    fn a_burst_is_one_warning_and_one_summary_and_the_pause_grows_to_a_bound() {
        let mut errors = AcceptErrors::default();
        let t0 = Instant::now();
        let pauses: Vec<_> = (0..12)
            .map(|i| errors.failed(&emfile(), t0 + Duration::from_millis(i)))
            .collect();
        assert_eq!(pauses[0], MIN_PAUSE);
        assert_eq!(pauses[1], MIN_PAUSE * 2);
        assert_eq!(*pauses.last().unwrap(), MAX_PAUSE);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));

        assert_eq!(
            errors.end_burst_if_quiet(t0 + Duration::from_millis(500)),
            None
        );
        assert_eq!(
            errors.quiet_at(),
            Some(t0 + Duration::from_millis(11) + QUIET)
        );
        assert_eq!(
            errors.end_burst_if_quiet(t0 + Duration::from_secs(2)),
            Some(12)
        );
        assert_eq!(errors.quiet_at(), None);
        errors.accepted();
        assert_eq!(
            errors.failed(&emfile(), t0 + Duration::from_secs(3)),
            MIN_PAUSE
        );
    }

    #[test]
    fn descriptor_exhaustion_and_a_clients_early_reset_are_told_apart() {
        assert!(is_resource_exhaustion(&emfile()));
        assert!(!is_connection_error(&emfile()));
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert!(is_connection_error(&aborted));
        assert!(!is_resource_exhaustion(&aborted));
    }
}
