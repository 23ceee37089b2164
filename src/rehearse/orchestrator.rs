//! The deploy itself, in Render's order: [`rehearse`].
//!
//! 1. The database is up (the one `DATABASE_URL` names, or a throwaway one), and the sampler's
//!    connection to it open; the setup command runs to completion.
//! 2. The old instances start and are probed until healthy; the front proxy puts them in
//!    rotation; the load starts and runs alone for the warm-up.
//! 3. The pre-deploy command runs to completion while the old instances serve; when it fails
//!    the deploy has failed (`pre_deploy_failed`): no new instance starts, the old ones serve on.
//! 4. For each instance, one at a time (a rolling deploy): the new instance starts; its health
//!    path is probed (2xx or 3xx within 5 s per probe) until the health deadline, which, when
//!    passed, fails the deploy and leaves the old instances serving; the proxy swaps the old
//!    instance for the new one; after the drain delay the old one gets SIGTERM, and SIGKILL if
//!    it is still running after the shutdown delay.
//! 5. The load runs on for the tail (and until the duration is reached), then stops; the
//!    remaining instances are stopped the same way (SIGTERM, then SIGKILL after the delay).

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::connections::Sampler;
use super::database::Database;
use super::instance::{Instance, Launch, free_port};
use super::load::{Load, LoadSettings};
use super::proxy::{Backend, Proxy};
use super::record::{Phase, PhaseKind, RequestRecord, Role};
use super::report::{DeployFailure, InstanceReport, Rehearsal};
use super::sse::{SseClients, SseSettings, Streams};
use super::steps::{StepKind, StepRun, run_step};
use super::{RehearsalOptions, RehearseError};

/// An instance and what has happened to it so far.
struct Tracked {
    instance: Instance,
    report: InstanceReport,
}

/// The phases, as they are entered.
struct Timeline {
    epoch: Instant,
    phases: Vec<Phase>,
}

impl Timeline {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn enter(&mut self, kind: PhaseKind, step: usize) {
        let now = self.now();
        if let Some(last) = self.phases.last_mut() {
            last.end = now;
        }
        self.phases.push(Phase {
            kind,
            step,
            start: now,
            end: now,
        });
    }

    fn close(&mut self, at: Duration) {
        if let Some(last) = self.phases.last_mut() {
            last.end = at;
        }
    }
}

/// Rehearses a zero-downtime deploy and returns what it saw.
///
/// Errors are for a rehearsal that could not be run (an option out of range, a database that
/// cannot be had, a setup command that fails, a command that cannot be started, old instances
/// that never became healthy). A deploy that fails, requests that fail, or an instance that
/// needs SIGKILL are results: see [`Rehearsal::succeeded`]. Every child process is killed
/// before this returns, or when the future is dropped.
pub async fn rehearse(options: &RehearsalOptions) -> Result<Rehearsal, RehearseError> {
    options.validate()?;
    // Declared first, dropped last: the database outlives every command that uses it.
    let database = Database::open(options).await?;
    let epoch = Instant::now();
    // Opened before any command starts, so that it holds its slot when the database is full.
    let sampler = match database.sample_url() {
        Some(url) => Some(Sampler::start(url, epoch).await?),
        None => None,
    };
    let throwaway = database.is_throwaway();
    let old_launch = Launch::of(&options.old, options, &database.env, throwaway)?;
    let new_launch = Launch::of(&options.new, options, &database.env, throwaway)?;
    let setup = match &options.setup {
        Some(command) => Some(setup(command, &database, epoch, options).await?),
        None => None,
    };
    let mut run = Run {
        options,
        timeline: Timeline {
            epoch,
            phases: Vec::new(),
        },
        ports: Vec::new(),
        olds: Vec::new(),
        news: Vec::new(),
    };
    run.start_olds(&old_launch).await?;
    let served = run.serve(&database, &new_launch).await?;
    run.stop_all().await;
    let ended = run.timeline.now();
    let connections = match sampler {
        Some(s) => Some(s.stop().await),
        None => None,
    };
    Ok(Rehearsal {
        command: options.old.display(),
        new_command: options.new.display(),
        setup,
        pre_deploy: served.pre_deploy,
        connections,
        rate: options.rate,
        paths: options.paths.clone(),
        health_path: options.health_path.clone(),
        drain: options.drain,
        shutdown_delay: options.shutdown_delay,
        requests: served.requests,
        phases: run.timeline.phases,
        instances: run
            .olds
            .into_iter()
            .chain(run.news)
            .map(|t| t.report)
            .collect(),
        deploy_failure: served.deploy_failure,
        load_started: served.load_started,
        load_stopped: served.load_stopped,
        ended,
        streams: served.streams,
    })
}

/// Runs the setup command; its failure ends the rehearsal before any instance starts.
async fn setup(
    command: &str,
    database: &Database,
    epoch: Instant,
    options: &RehearsalOptions,
) -> Result<StepRun, RehearseError> {
    let step = run_step(
        StepKind::Setup,
        command,
        &database.env,
        epoch,
        options.show_output,
    )
    .await;
    if step.succeeded() {
        Ok(step)
    } else {
        Err(RehearseError::SetupFailed {
            command: command.to_owned(),
            how: step.how(),
            output: step.output_tail,
        })
    }
}

/// The instances of a rehearsal and its timeline, as the deploy goes.
struct Run<'a> {
    options: &'a RehearsalOptions,
    timeline: Timeline,
    ports: Vec<u16>,
    olds: Vec<Tracked>,
    news: Vec<Tracked>,
}

/// What happened while the load ran.
struct Served {
    requests: Vec<RequestRecord>,
    pre_deploy: Option<StepRun>,
    deploy_failure: Option<DeployFailure>,
    load_started: Duration,
    load_stopped: Duration,
    streams: Option<Streams>,
}

impl Run<'_> {
    /// With the old instances healthy: the proxy and the load, the warm-up, the pre-deploy
    /// command, the deploy (unless the pre-deploy command failed), and the tail.
    async fn serve(
        &mut self,
        database: &Database,
        new_launch: &Launch,
    ) -> Result<Served, RehearseError> {
        let options = self.options;
        let proxy = Proxy::start(options.request_timeout + Duration::from_secs(1))
            .await
            .map_err(RehearseError::Bind)?;
        proxy.set_rotation(self.olds.iter().map(backend).collect());
        for t in &mut self.olds {
            t.report.routed_from = Some(self.timeline.now());
        }
        let load = Load::start(
            LoadSettings {
                target: proxy.addr(),
                rate: options.rate,
                paths: options.paths.clone(),
                request_timeout: options.request_timeout,
            },
            self.timeline.epoch,
        );
        let streams = options.sse_path.as_ref().map(|path| {
            SseClients::start(
                SseSettings {
                    target: proxy.addr(),
                    path: path.clone(),
                    clients: options.sse_clients,
                    open_timeout: options.request_timeout,
                },
                self.timeline.epoch,
            )
        });
        let load_started = self.timeline.now();
        self.timeline.enter(PhaseKind::Before, 0);
        tokio::time::sleep(options.warmup).await;

        let mut pre_deploy = None;
        if let Some(command) = &options.pre_deploy {
            // While the old instances serve under load, as on Render.
            self.timeline.enter(PhaseKind::PreDeploy, 0);
            let step = run_step(
                StepKind::PreDeploy,
                command,
                &database.env,
                self.timeline.epoch,
                options.show_output,
            )
            .await;
            pre_deploy = Some(step);
        }
        // A failed pre-deploy command fails the deploy: the new version is never started.
        let deploy_failure = if pre_deploy.as_ref().is_none_or(StepRun::succeeded) {
            self.deploy(new_launch, &proxy).await?
        } else {
            None
        };
        self.timeline.enter(PhaseKind::After, 0);
        let until = (load_started + options.duration).max(self.timeline.now() + options.tail);
        tokio::time::sleep(until.saturating_sub(self.timeline.now())).await;
        let requests = load.stop().await;
        let streams = match streams {
            Some(clients) => Some(clients.stop().await),
            None => None,
        };
        let load_stopped = self.timeline.now();
        self.timeline.close(load_stopped);
        proxy.stop().await;
        Ok(Served {
            requests,
            pre_deploy,
            deploy_failure,
            load_started,
            load_stopped,
            streams,
        })
    }

    /// Starts the old instances together, as if they had been running for a while, and waits
    /// until every one is healthy.
    async fn start_olds(&mut self, launch: &Launch) -> Result<(), RehearseError> {
        let options = self.options;
        for step in 1..=options.instances {
            let name = format!("old-{step}");
            let t = start(
                launch,
                &name,
                Role::Old,
                step,
                &mut self.ports,
                options,
                &self.timeline,
            )?;
            self.olds.push(t);
        }
        let epoch = self.timeline.epoch;
        let healthy = join_all(self.olds.iter().map(|t| {
            t.instance.wait_healthy(
                &options.health_path,
                options.probe_interval,
                epoch + t.report.started_at,
                options.health_timeout,
            )
        }))
        .await;
        for (t, h) in self.olds.iter_mut().zip(healthy) {
            match h {
                Ok(after) => t.report.healthy_after = Some(after),
                Err(reason) => {
                    return Err(RehearseError::OldNotHealthy {
                        instance: t.report.name.clone(),
                        reason,
                        output: t.instance.output_tail(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Replaces the old instances with new ones, one at a time; returns why the deploy
    /// failed, if it did.
    async fn deploy(
        &mut self,
        launch: &Launch,
        proxy: &Proxy,
    ) -> Result<Option<DeployFailure>, RehearseError> {
        let options = self.options;
        for step in 1..=options.instances {
            self.timeline.enter(PhaseKind::NewStarting, step);
            let name = format!("new-{step}");
            let mut new = start(
                launch,
                &name,
                Role::New,
                step,
                &mut self.ports,
                options,
                &self.timeline,
            )?;
            let healthy = new
                .instance
                .wait_healthy(
                    &options.health_path,
                    options.probe_interval,
                    self.timeline.epoch + new.report.started_at,
                    options.health_timeout,
                )
                .await;
            match healthy {
                Ok(after) => new.report.healthy_after = Some(after),
                Err(reason) => {
                    // Render keeps the old instances serving and stops the one that failed.
                    let failure = DeployFailure {
                        instance: name,
                        at: self.timeline.now(),
                        reason,
                    };
                    stop(&mut new, options.shutdown_delay, &self.timeline, false).await;
                    self.news.push(new);
                    return Ok(Some(failure));
                }
            }
            let old = &mut self.olds[step - 1];
            proxy.replace(&old.report.name, backend(&new));
            let switched = self.timeline.now();
            old.report.routed_until = Some(switched);
            new.report.routed_from = Some(switched);
            self.timeline.enter(PhaseKind::Switched, step);
            tokio::time::sleep(options.drain).await;
            self.timeline.enter(PhaseKind::OldStopping, step);
            old.report.in_flight_at_sigterm = Some(proxy.in_flight(&old.report.name));
            stop(old, options.shutdown_delay, &self.timeline, false).await;
            self.news.push(new);
        }
        Ok(None)
    }

    /// Stops whatever still runs, together: the new instances, or the old ones after a
    /// failed deploy; then records how each exited and its last output.
    async fn stop_all(&mut self) {
        let (delay, timeline) = (self.options.shutdown_delay, &self.timeline);
        let mut running: Vec<&mut Tracked> = self
            .olds
            .iter_mut()
            .chain(self.news.iter_mut())
            .filter(|t| t.instance.exit().is_none())
            .collect();
        let stopping = running.iter_mut().map(|t| stop(t, delay, timeline, true));
        join_all(stopping).await;
        for t in self.olds.iter_mut().chain(self.news.iter_mut()) {
            if t.report.exit.is_none()
                && let Some(exit) = t.instance.exit()
            {
                t.report.exit = Some((timeline.now(), exit));
            }
            t.report.output_tail = t.instance.output_tail();
        }
    }
}

fn backend(t: &Tracked) -> Backend {
    Backend {
        name: t.report.name.clone(),
        addr: t.instance.addr(),
    }
}

fn start(
    launch: &Launch,
    name: &str,
    role: Role,
    step: usize,
    ports: &mut Vec<u16>,
    options: &RehearsalOptions,
    timeline: &Timeline,
) -> Result<Tracked, RehearseError> {
    let port = free_port(ports)?;
    let started_at = timeline.now();
    let instance = Instance::spawn(launch, name, port, options.show_output)?;
    Ok(Tracked {
        instance,
        report: InstanceReport {
            name: name.to_owned(),
            role,
            step,
            port,
            started_at,
            healthy_after: None,
            routed_from: None,
            routed_until: None,
            sigterm_at: None,
            in_flight_at_sigterm: None,
            sigkill_at: None,
            exit: None,
            stopped_at_end: false,
            output_tail: Vec::new(),
        },
    })
}

/// SIGTERM, then SIGKILL to the group if it has not exited within the shutdown delay.
async fn stop(t: &mut Tracked, shutdown_delay: Duration, timeline: &Timeline, at_end: bool) {
    if let Some(exit) = t.instance.exit() {
        // It exited on its own earlier: record when we noticed.
        if t.report.exit.is_none() {
            t.report.exit = Some((timeline.now(), exit));
        }
        return;
    }
    t.report.stopped_at_end = at_end;
    t.report.sigterm_at = Some(timeline.now());
    t.instance.sigterm();
    let exit = match t.instance.wait_exit(shutdown_delay).await {
        Some(exit) => exit,
        None => {
            t.report.sigkill_at = Some(timeline.now());
            t.instance.sigkill_group();
            // SIGKILL cannot be ignored; the wait is bounded all the same.
            match t.instance.wait_exit(Duration::from_secs(5)).await {
                Some(exit) => exit,
                None => return,
            }
        }
    };
    t.report.exit = Some((timeline.now(), exit));
}
