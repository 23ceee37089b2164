//! What each part of a rehearsal records as it goes: a request's outcome and why it failed, a
//! phase of the deploy, an instance's role and how its process ended.
//!
//! The ground floor of `rehearse`: the proxy, the load, the event streams, the instances and the
//! steps write these, and the report ([`super::report`]) gathers them, so they live apart from
//! both.

use std::fmt;
use std::time::Duration;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureCause {
    /// Nothing listened on the instance's (or the proxy's) port.
    ConnectRefused,
    /// A connection could not be opened for another reason.
    ConnectFailed,
    /// The connection was reset or closed before the whole response arrived: the typical loss
    /// of a request in flight when an instance exits.
    Reset,
    /// No response within the request timeout.
    Timeout,
    /// The instance answered with this 5xx status.
    ServerError(u16),
    /// The proxy had no instance to send the request to.
    NoInstance,
    /// Any other error.
    Other,
}

impl FailureCause {
    /// A stable one-word name, used in the proxy's [`CAUSE_HEADER`](super::CAUSE_HEADER).
    pub fn token(self) -> &'static str {
        match self {
            FailureCause::ConnectRefused => "connect-refused",
            FailureCause::ConnectFailed => "connect-failed",
            FailureCause::Reset => "reset",
            FailureCause::Timeout => "timeout",
            FailureCause::ServerError(_) => "server-error",
            FailureCause::NoInstance => "no-instance",
            FailureCause::Other => "other",
        }
    }

    /// The cause named by a [`token`](Self::token) (`ServerError` is not carried by a token).
    pub(crate) fn from_token(token: &str) -> Option<Self> {
        Some(match token {
            "connect-refused" => FailureCause::ConnectRefused,
            "connect-failed" => FailureCause::ConnectFailed,
            "reset" => FailureCause::Reset,
            "timeout" => FailureCause::Timeout,
            "no-instance" => FailureCause::NoInstance,
            "other" => FailureCause::Other,
            _ => return None,
        })
    }
}

impl fmt::Display for FailureCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureCause::ConnectRefused => f.write_str("connection refused"),
            FailureCause::ConnectFailed => f.write_str("connection failed"),
            FailureCause::Reset => f.write_str("connection reset or closed before the response"),
            FailureCause::Timeout => f.write_str("timed out"),
            FailureCause::ServerError(status) => write!(f, "HTTP {status} from the instance"),
            FailureCause::NoInstance => f.write_str("no instance to send it to"),
            FailureCause::Other => f.write_str("other error"),
        }
    }
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The instance answered with this status.
    Response(u16),
    /// No (usable) response.
    Failed(FailureCause),
}

impl Outcome {
    /// Why the request failed, if it did: an error, or a 5xx status.
    pub fn failure(self) -> Option<FailureCause> {
        match self {
            Outcome::Response(status) if status >= 500 => Some(FailureCause::ServerError(status)),
            Outcome::Response(_) => None,
            Outcome::Failed(cause) => Some(cause),
        }
    }
}

/// One request of the load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestRecord {
    /// When it was sent.
    pub start: Duration,
    /// When its response was complete, or it failed.
    pub end: Duration,
    /// How it ended.
    pub outcome: Outcome,
    /// The instance that served it (from the proxy's header), when known.
    pub instance: Option<String>,
    /// Whether it was sent on a new connection (otherwise on a kept-alive one).
    pub new_connection: bool,
    /// For a failed request, the start of the body that came back (what the service said
    /// went wrong), whitespace collapsed, at most [`EXCERPT_CHARS`] characters.
    pub excerpt: Option<String>,
}

/// The longest body excerpt kept for a failed request.
pub const EXCERPT_CHARS: usize = 160;

impl RequestRecord {
    /// How long it took.
    pub fn latency(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }
}

/// A phase of the deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum PhaseKind {
    /// Only the old instances serve; nothing has started yet.
    Before,
    /// The pre-deploy command runs (the migrations) while the old instances serve.
    PreDeploy,
    /// The new instance is starting and being probed; the old one still serves.
    NewStarting,
    /// Traffic has moved to the new instance; the old one finishes what it was sent (the drain
    /// delay), and has not been told to stop yet.
    Switched,
    /// The old instance has been sent SIGTERM and has not exited yet.
    OldStopping,
    /// The deploy is over (done, or failed).
    After,
}

impl PhaseKind {
    /// Every phase, in the order of a deploy.
    pub const ALL: [PhaseKind; 6] = [
        PhaseKind::Before,
        PhaseKind::PreDeploy,
        PhaseKind::NewStarting,
        PhaseKind::Switched,
        PhaseKind::OldStopping,
        PhaseKind::After,
    ];

    /// The phase's name in reports.
    pub fn label(self) -> &'static str {
        match self {
            PhaseKind::Before => "before",
            PhaseKind::PreDeploy => "pre-deploy",
            PhaseKind::NewStarting => "new starting",
            PhaseKind::Switched => "switched, draining",
            PhaseKind::OldStopping => "old stopping",
            PhaseKind::After => "after",
        }
    }
}

/// One span of time in one phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Phase {
    /// Which phase.
    pub kind: PhaseKind,
    /// The step of a rolling deploy it belongs to (1-based; 0 for before and after).
    pub step: usize,
    /// Start.
    pub start: Duration,
    /// End.
    pub end: Duration,
}

/// Whether an instance was there before the deploy or brought by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Serving before the deploy.
    Old,
    /// Started by the deploy.
    New,
}

/// How an instance's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InstanceExit {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

impl fmt::Display for InstanceExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            InstanceExit::Code(code) => write!(f, "exited {code}"),
            InstanceExit::Signal(signal) => match nix::sys::signal::Signal::try_from(signal) {
                Ok(s) => write!(f, "killed by {}", s.as_str()),
                Err(_) => write!(f, "killed by signal {signal}"),
            },
        }
    }
}
