//! The database's client connections during a rehearsal: sampled from `pg_stat_activity`, and
//! their peak in each phase against the server's `max_connections`.
//!
//! On Render the old and the new version share one database, and during a deploy both hold
//! their pools: the old instance keeps serving for the drain and the shutdown delay after the
//! switch. Two versions that each hold more than half of `max_connections` are fine alone and
//! fail together, which no test of either version shows. The sampler counts what the server
//! sees, whatever the service's language or pool.
//!
//! The sampling connection is opened before any command starts, so that it holds its slot
//! when the database is full (a new connection would then be refused, and the sampler with it).
//! It counts itself: `pg_stat_activity` lists it as a client backend like any other, and the
//! slot it holds is one the service cannot have. The reports say so.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::record::{Phase, PhaseKind};
use crate::database_url::DatabaseUrl;

/// Time between two samples (the contract asks for at least one every 100 ms).
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(50);

/// One sample: how many client backends the server had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionSample {
    /// When, from the start of the rehearsal.
    pub at: Duration,
    /// `count(*)` of `pg_stat_activity` rows with `backend_type = 'client backend'`, the
    /// sampler's own included.
    pub client_backends: u32,
}

/// The samples of one rehearsal and the limit they are measured against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connections {
    /// The server's `max_connections`.
    pub max_connections: u32,
    /// `superuser_reserved_connections` (plus `reserved_connections` from PostgreSQL 16):
    /// slots a role without those privileges cannot have.
    pub reserved: u32,
    /// Time between two samples.
    pub interval: Duration,
    /// Every sample, in time order.
    pub samples: Vec<ConnectionSample>,
    /// Why sampling stopped before the end, if it did.
    pub stopped: Option<String>,
}

/// The peak of one span of the rehearsal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeakRow {
    /// `start-up`, a phase's label, `stopping`, or `all`.
    pub label: String,
    /// The highest count sampled (0 when no sample fell in the span).
    pub peak: u32,
    /// When it was first reached.
    pub at: Duration,
    /// Samples in the span.
    pub samples: usize,
}

impl Connections {
    /// The highest count of the whole rehearsal.
    pub fn peak(&self) -> Option<ConnectionSample> {
        peak_of(self.samples.iter())
    }

    /// Whether the count ever reached `max_connections`: from then on a new connection was
    /// refused (`sorry, too many clients already`).
    pub fn reached_limit(&self) -> Option<ConnectionSample> {
        self.peak()
            .filter(|p| p.client_backends >= self.max_connections)
    }

    /// The peak before the load (start-up, setup), in each kind of phase that was entered, in
    /// deploy order, while every instance was stopped at the end, and over all.
    pub fn peaks_by_phase(&self, phases: &[Phase]) -> Vec<PeakRow> {
        let first = phases.first().map_or(Duration::MAX, |p| p.start);
        let last = phases.last().map_or(Duration::MAX, |p| p.end);
        let mut rows = vec![row(
            "start-up",
            self.samples.iter().filter(|s| s.at < first),
        )];
        for kind in PhaseKind::ALL {
            let spans: Vec<&Phase> = phases.iter().filter(|p| p.kind == kind).collect();
            if spans.is_empty() {
                continue;
            }
            let inside = self
                .samples
                .iter()
                .filter(|s| spans.iter().any(|p| s.at >= p.start && s.at < p.end));
            rows.push(row(kind.label(), inside));
        }
        rows.push(row(
            "stopping",
            self.samples.iter().filter(|s| s.at >= last),
        ));
        rows.push(row("all", self.samples.iter()));
        rows.retain(|r| r.samples > 0);
        rows
    }

    /// The one-line verdict, for the problems of a rehearsal, when the limit was reached.
    pub fn limit_problem(&self, phases: &[Phase]) -> Option<String> {
        let at = self.reached_limit()?;
        let phase = phases
            .iter()
            .find(|p| at.at >= p.start && at.at < p.end)
            .map_or("start-up or shutdown", |p| p.kind.label());
        Some(format!(
            "the database's connections reached its limit ({} of max_connections {}) at {:.3} s \
             ({phase}): every further connection was refused",
            at.client_backends,
            self.max_connections,
            at.at.as_secs_f64()
        ))
    }

    /// The text report's section: the peak per phase against the limit.
    pub fn text(&self, phases: &[Phase]) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "database connections (client backends in pg_stat_activity, sampled every {} ms, \
             counting this rehearsal's own): limit max_connections {} ({} reserved for superusers)",
            self.interval.as_millis(),
            self.max_connections,
            self.reserved
        );
        let _ = writeln!(out, "{:<20} {:>5} {:>9}", "phase", "peak", "at");
        for r in self.peaks_by_phase(phases) {
            let mark = if r.peak >= self.max_connections {
                "  AT THE LIMIT"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "{:<20} {:>5} {:>7.3} s{mark}",
                r.label,
                r.peak,
                r.at.as_secs_f64()
            );
        }
        if let Some(why) = &self.stopped {
            let _ = writeln!(out, "  (sampling stopped early: {why})");
        }
        out
    }
}

fn peak_of<'a>(samples: impl Iterator<Item = &'a ConnectionSample>) -> Option<ConnectionSample> {
    // The first sample at the highest count: when the peak was reached.
    samples.fold(None, |best: Option<ConnectionSample>, s| match best {
        Some(b) if b.client_backends >= s.client_backends => Some(b),
        _ => Some(*s),
    })
}

fn row<'a>(label: &str, samples: impl Iterator<Item = &'a ConnectionSample> + Clone) -> PeakRow {
    let peak = peak_of(samples.clone());
    PeakRow {
        label: label.to_owned(),
        peak: peak.map_or(0, |p| p.client_backends),
        at: peak.map_or(Duration::ZERO, |p| p.at),
        samples: samples.count(),
    }
}

/// Why the sampler could not start.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// The URL is not one the driver accepts (its password is never shown).
    #[error("DATABASE_URL: {0}")]
    Url(String),
    /// The connection or the first query failed.
    #[error("{0}")]
    Connect(String),
}

/// The running sampler; [`Sampler::stop`] ends it and returns the samples.
pub(crate) struct Sampler {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    figures: (u32, u32),
    samples: Arc<Mutex<Vec<ConnectionSample>>>,
    stopped: Arc<Mutex<Option<String>>>,
}

const COUNT: &str =
    "SELECT count(*)::int4 FROM pg_stat_activity WHERE backend_type = 'client backend'";

impl Sampler {
    /// Connects to `url`, reads the server's limits, and starts sampling; times are offsets
    /// from `epoch`.
    pub async fn start(url: &str, epoch: Instant) -> Result<Self, SamplerError> {
        let url = DatabaseUrl::parse(url).map_err(|e| SamplerError::Url(e.to_string()))?;
        let redact = |e: &dyn std::fmt::Display| url.redact_text(&e.to_string());
        let tls =
            crate::pool::tls::connector(&url).map_err(|e| SamplerError::Connect(redact(&e)))?;
        let (client, connection) =
            tokio::time::timeout(Duration::from_secs(10), url.pg_config().connect(tls))
                .await
                .map_err(|_| SamplerError::Connect("no answer within 10 s".to_owned()))?
                .map_err(|e| SamplerError::Connect(redact(&e)))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let figures = crate::pool::read_server(&client)
            .await
            .map_err(|e| SamplerError::Connect(redact(&e)))?;
        let figures = (figures.max_connections, figures.reserved);
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stopped = Arc::new(Mutex::new(None));
        let (stop, mut stop_rx) = watch::channel(false);
        let (samples_w, stopped_w) = (samples.clone(), stopped.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = stop_rx.wait_for(|s| *s) => return,
                    _ = tick.tick() => {}
                }
                let at = epoch.elapsed();
                match tokio::time::timeout(Duration::from_secs(2), client.query_one(COUNT, &[]))
                    .await
                {
                    Ok(Ok(row)) => {
                        let n: i32 = row.get(0);
                        if let Ok(mut s) = samples_w.lock() {
                            s.push(ConnectionSample {
                                at,
                                client_backends: n.max(0) as u32,
                            });
                        }
                    }
                    failed => {
                        let why = match failed {
                            Ok(Err(e)) => e.to_string(),
                            _ => "a sample took longer than 2 s".to_owned(),
                        };
                        if let Ok(mut s) = stopped_w.lock() {
                            *s = Some(format!("at {:.3} s: {why}", at.as_secs_f64()));
                        }
                        return;
                    }
                }
            }
        });
        Ok(Self {
            stop,
            task,
            figures,
            samples,
            stopped,
        })
    }

    /// Stops sampling and returns what was sampled.
    pub async fn stop(self) -> Connections {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let take =
            |m: &Mutex<Vec<ConnectionSample>>| m.lock().map(|s| s.clone()).unwrap_or_default();
        Connections {
            max_connections: self.figures.0,
            reserved: self.figures.1,
            interval: SAMPLE_INTERVAL,
            samples: take(&self.samples),
            stopped: self.stopped.lock().ok().and_then(|s| s.clone()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    pub(crate) fn samples(counts: &[(u64, u32)]) -> Connections {
        Connections {
            max_connections: 20,
            reserved: 3,
            interval: SAMPLE_INTERVAL,
            samples: counts
                .iter()
                .map(|&(at, n)| ConnectionSample {
                    at: ms(at),
                    client_backends: n,
                })
                .collect(),
            stopped: None,
        }
    }

    fn phases() -> Vec<Phase> {
        let phase = |kind, start, end| Phase {
            kind,
            step: 0,
            start: ms(start),
            end: ms(end),
        };
        vec![
            phase(PhaseKind::Before, 1000, 2000),
            phase(PhaseKind::PreDeploy, 2000, 3000),
            phase(PhaseKind::NewStarting, 3000, 4000),
            phase(PhaseKind::After, 4000, 5000),
        ]
    }

    #[test]
    fn the_peak_of_each_phase_is_the_first_sample_at_its_highest_count() {
        let c = samples(&[
            (500, 3),
            (1500, 8),
            (2500, 9),
            (3100, 15),
            (3200, 15),
            (3900, 12),
            (4500, 8),
            (5100, 1),
        ]);
        let rows: Vec<(String, u32, u64)> = c
            .peaks_by_phase(&phases())
            .into_iter()
            .map(|r| (r.label, r.peak, r.at.as_millis() as u64))
            .collect();
        let want = [
            ("start-up", 3, 500),
            ("before", 8, 1500),
            ("pre-deploy", 9, 2500),
            ("new starting", 15, 3100),
            ("after", 8, 4500),
            ("stopping", 1, 5100),
            ("all", 15, 3100),
        ];
        let want: Vec<(String, u32, u64)> = want
            .iter()
            .map(|(l, p, a)| ((*l).to_owned(), *p, *a))
            .collect();
        assert_eq!(rows, want);
        assert_eq!(c.reached_limit(), None);
        assert_eq!(c.limit_problem(&phases()), None);
    }

    #[test]
    fn reaching_max_connections_is_a_problem_named_with_its_phase() {
        let c = samples(&[(1500, 8), (3300, 20), (3400, 20)]);
        let problem = c.limit_problem(&phases()).expect("the limit was reached");
        assert!(problem.contains("20 of max_connections 20"), "{problem}");
        assert!(problem.contains("3.300 s (new starting)"), "{problem}");
        assert!(c.text(&phases()).contains("AT THE LIMIT"));
    }
}
