//! Telemetry: log lines (tracing) on stdout and metrics (Prometheus text) for `/metrics`.
//!
//! Both are process-wide: a tracing subscriber and a `metrics` recorder can each be installed
//! once per process, so [`init_logging`] and [`metrics_handle`] are idempotent and every
//! `Deployment` in a process (tests start several) shares them.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The setting is configuration's ([`crate::config`]); re-exported where it is used.
pub use crate::config::LogFormat;

mod json_line;
mod line_buffer;
pub(crate) mod request_log;

pub(crate) use json_line::needs_no_json_escape;
pub use json_line::{JsonFields, JsonLine};
use line_buffer::LineBuffer;

/// How often the Prometheus recorder drains its histogram samples when nothing scrapes.
pub const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Keeps the log writer's thread alive; dropping it writes out the lines still queued (waiting
/// at most a second for a stdout that does not drain). Hold it until the process exits.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(Option<LineBuffer>);

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGuard")
            .field("active", &self.0.is_some())
            .finish()
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(buffer) = &self.0 {
            buffer.close();
        }
    }
}

/// The installed log buffer, for its count of dropped lines.
static LOG_BUFFER: OnceLock<LineBuffer> = OnceLock::new();

/// Installs the log subscriber on stdout, filtered by `RUST_LOG` (default `info`).
///
/// Lines are copied into a bounded buffer that a writer thread of its own drains in batches
/// (`line_buffer`), so a slow or blocked stdout (a full pipe, a stalled log collector) never
/// stalls a request: when the buffer is full a line is dropped and counted
/// ([`dropped_log_lines`], `render_deploy_log_lines_dropped_total` on `/metrics`).
///
/// A second call (or a subscriber installed by the host application) is left alone and
/// returns an inactive guard.
pub fn init_logging(format: LogFormat) -> LogGuard {
    if LOG_BUFFER.get().is_some() {
        return LogGuard(None);
    }
    let buffer = match LineBuffer::spawn(stdout(), line_buffer::LIMIT, "render-deploy-log") {
        Ok(buffer) => buffer,
        Err(e) => {
            eprintln!("cannot start the log writer thread ({e}); logging is off");
            return LogGuard(None);
        }
    };
    let (targets, env_filter) = filter_from_env();
    let filter_reads_spans = env_filter.is_some();
    // A `Targets` filter decides by target and level alone: the request line's fate is known now.
    let line_enabled = targets.as_ref().map(|targets| {
        targets.would_enable(request_log::REQUEST_LINE_TARGET, &tracing::Level::INFO)
    });
    // The filter decides; the formatter passes everything it is given.
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(buffer.clone());
    let installed = match format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields)
            .event_format(JsonLine)
            .finish()
            .with(targets)
            .with(env_filter)
            .try_init(),
        LogFormat::Pretty => builder
            .compact()
            .finish()
            .with(targets)
            .with(env_filter)
            .try_init(),
    };
    match installed {
        Ok(()) => {
            let _ = LOG_BUFFER.set(buffer.clone());
            request_log::installed(format == LogFormat::Json, filter_reads_spans, line_enabled);
            LogGuard(Some(buffer))
        }
        Err(_) => {
            buffer.close();
            LogGuard(None)
        }
    }
}

/// The filter of `RUST_LOG` (default `info`): one of the two.
///
/// A `RUST_LOG` of levels and targets only (`info`, `render_deploy=debug,hyper=warn`, which is
/// nearly every one) becomes a `Targets` filter, which decides once per call site. Only one with
/// span directives (`[request{request_id=…}]=debug`) needs an `EnvFilter`, which also follows
/// every span's creation, entering, leaving and closing through read-write locks shared by all
/// threads, and the server makes a span for every request. (Measured on the whole service the
/// difference is within the run-to-run spread; it is a lock pair per span step saved, not a
/// figure.) An invalid `RUST_LOG` gives `info`, as before.
fn filter_from_env() -> (Option<Targets>, Option<EnvFilter>) {
    filter_for(std::env::var("RUST_LOG").ok().as_deref())
}

fn filter_for(rust_log: Option<&str>) -> (Option<Targets>, Option<EnvFilter>) {
    let directives = rust_log.filter(|d| !d.trim().is_empty()).unwrap_or("info");
    // EnvFilter's grammar decides what is valid (`Targets` reads almost anything as a target).
    let Ok(env_filter) = EnvFilter::try_new(directives) else {
        return filter_for(Some("info"));
    };
    if directives.contains(['[', '{']) {
        return (None, Some(env_filter));
    }
    match directives.parse::<Targets>() {
        Ok(targets) => (Some(targets), None),
        Err(_) => (None, Some(env_filter)),
    }
}

/// Writes a request's line straight into the log buffer when our JSON subscriber is installed
/// ([`request_log`] says why); false otherwise, and the caller logs it as an event. The caller
/// has checked that the event is enabled.
pub(crate) fn write_request_line(line: &request_log::RequestLine<'_>) -> bool {
    if !request_log::json_installed() {
        return false;
    }
    let Some(buffer) = LOG_BUFFER.get() else {
        return false;
    };
    // Formatting into a `String` cannot fail.
    let _ = json_line::with_scratch(|text| {
        json_line::write_request_line(text, line)?;
        buffer.push(text.as_bytes());
        Ok(())
    });
    true
}

/// Log lines dropped so far because stdout did not keep up (0 before [`init_logging`]).
pub fn dropped_log_lines() -> u64 {
    LOG_BUFFER.get().map_or(0, LineBuffer::dropped)
}

/// Stdout for the writer thread: a descriptor of its own, unbuffered (the writer hands it a
/// whole batch per `write`) and without the standard handle's lock.
fn stdout() -> Box<dyn std::io::Write + Send> {
    use std::os::fd::AsFd;
    match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(std::fs::File::from(fd)),
        // No stdout to duplicate (closed at start): the standard handle, which reports it.
        Err(_) => Box::new(std::io::stdout()),
    }
}

/// The upper bounds, in seconds, of every latency histogram's buckets.
pub(crate) const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's Prometheus recorder, installed on first use, with its upkeep on a timer.
///
/// The recorder keeps every histogram sample until upkeep folds them into the buckets: it runs
/// at each scrape (`render()` drains them first) and every [`METRICS_UPKEEP_INTERVAL`] on a
/// thread of its own, so that memory stays flat when nothing scrapes. When the host application installed another `metrics` recorder first,
/// ours still renders (empty) so that `/metrics` answers rather than fails.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    static UPKEEP: OnceLock<()> = OnceLock::new();
    let handle = HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone();
    UPKEEP.get_or_init(|| {
        let handle = handle.clone();
        // A thread of its own rather than a task: it must outlive whichever runtime asked first
        // (tests start many), and it wakes once in five seconds.
        let spawned = std::thread::Builder::new()
            .name("render-deploy-metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(METRICS_UPKEEP_INTERVAL);
                    handle.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no metrics upkeep thread; histograms are drained at scrape only");
        }
    });
    handle
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

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn levels_and_targets_take_the_lock_free_filter_and_span_directives_the_env_filter() {
        for plain in [
            None,
            Some(""),
            Some("info"),
            Some("warn,render_deploy=debug,hyper=off"),
        ] {
            let (targets, env) = filter_for(plain);
            assert!(targets.is_some() && env.is_none(), "{plain:?}");
        }
        let (targets, _) = filter_for(Some("warn,render_deploy=debug"));
        let targets = targets.unwrap();
        assert!(targets.would_enable("render_deploy::server", &Level::DEBUG));
        assert!(!targets.would_enable("hyper::proto", &Level::INFO));
        assert!(targets.would_enable("hyper::proto", &Level::WARN));
        let (targets, _) = filter_for(None);
        assert!(targets.unwrap().would_enable("anything", &Level::INFO));

        let (targets, env) = filter_for(Some("info,[request{request_id=abc}]=debug"));
        assert!(targets.is_none() && env.is_some());
        // Not valid as either: `info`, as before.
        let (targets, env) = filter_for(Some("[[["));
        assert!(env.is_none());
        assert!(
            targets
                .as_ref()
                .unwrap()
                .would_enable("anything", &Level::INFO)
        );
        assert!(!targets.unwrap().would_enable("anything", &Level::DEBUG));
    }
}
