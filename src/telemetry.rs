//! Telemetry: log lines (tracing) on stdout and metrics (Prometheus text) for `/metrics`.
//!
//! Both are process-wide: a tracing subscriber and a `metrics` recorder can each be installed
//! once per process, so [`init_logging`] and [`metrics_handle`] are idempotent and every
//! [`crate::server::Deployment`] in a process (tests start several) shares them.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// The setting is configuration's ([`crate::config`]); re-exported where it is used.
pub use crate::config::LogFormat;

/// Installs the log subscriber on stdout, filtered by `RUST_LOG` (default `info`).
///
/// A second call (or a subscriber installed by the host application) is left alone.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// The process's Prometheus recorder, installed on first use.
///
/// When the host application installed another `metrics` recorder first, ours still renders
/// (empty) so that `/metrics` answers rather than fails.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Replaces the default panic hook (which prints the panic's message on stderr) with one that
/// logs the location only: a message may hold any value, a secret among them, and secrets
/// never reach the output. A handler's panic is also answered 500 by the server's middleware.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        tracing::error!(
            location = location.as_deref().unwrap_or("unknown"),
            "panic (message withheld: it may contain secrets)"
        );
    }));
}

/// An error and its causes on one line, `outer: cause: root cause`, for a log field or a
/// command's message (callers redact what their errors may hold before this sees them). A cause
/// whose text the line already holds is left out: some drivers repeat their cause in `Display`.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}
