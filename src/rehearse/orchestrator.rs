//! The deploy itself, in Render's order: [`rehearse`].
//!
//! 1. The old instances start and are probed until healthy; the front proxy puts them in
//!    rotation; the load starts and runs alone for the warm-up.
//! 2. For each instance, one at a time (a rolling deploy): the new instance starts; its health
//!    path is probed (2xx or 3xx within 5 s per probe) until the health deadline, which, when
//!    passed, fails the deploy and leaves the old instances serving; the proxy swaps the old
//!    instance for the new one; after the drain delay the old one gets SIGTERM, and SIGKILL if
//!    it is still running after the shutdown delay.
//! 3. The load runs on for the tail (and until the duration is reached), then stops; the
//!    remaining instances are stopped the same way (SIGTERM, then SIGKILL after the delay).

use std::time::{Duration, Instant};

use super::instance::{Instance, Launch, free_port};
use super::load::{Load, LoadSettings};
use super::proxy::{Backend, Proxy};
use super::report::{DeployFailure, InstanceReport, Phase, PhaseKind, Rehearsal, Role};
use super::{InstanceCommand, RehearsalOptions, RehearseError};
use crate::local_postgres::LocalPostgres;

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
/// Errors are for a rehearsal that could not be run (an option out of range, a command that
/// cannot be started, old instances that never became healthy). A deploy that fails, requests
/// that fail, or an instance that needs SIGKILL are results: see [`Rehearsal::succeeded`].
/// Every child process is killed before this returns, or when the future is dropped.
pub async fn rehearse(options: &RehearsalOptions) -> Result<Rehearsal, RehearseError> {
    options.validate()?;
    let (launch, _postgres) = launch_of(options).await?;
    let epoch = Instant::now();
    let mut timeline = Timeline {
        epoch,
        phases: Vec::new(),
    };
    let mut ports = Vec::new();
    let mut olds: Vec<Tracked> = Vec::new();
    for step in 1..=options.instances {
        let name = format!("old-{step}");
        olds.push(start(
            &launch,
            &name,
            Role::Old,
            step,
            &mut ports,
            options,
            &timeline,
        )?);
    }
    // The old instances start together, as they would have been running for a while.
    let healthy = futures_join_all(olds.iter().map(|t| {
        t.instance.wait_healthy(
            &options.health_path,
            options.probe_interval,
            epoch + t.report.started_at,
            options.health_timeout,
        )
    }))
    .await;
    for (t, h) in olds.iter_mut().zip(healthy) {
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

    let proxy = Proxy::start(options.request_timeout + Duration::from_secs(1))
        .await
        .map_err(RehearseError::Bind)?;
    proxy.set_rotation(olds.iter().map(backend).collect());
    for t in &mut olds {
        t.report.routed_from = Some(timeline.now());
    }
    let load = Load::start(
        LoadSettings {
            target: proxy.addr(),
            rate: options.rate,
            paths: options.paths.clone(),
            request_timeout: options.request_timeout,
        },
        epoch,
    );
    let load_started = timeline.now();
    timeline.enter(PhaseKind::Before, 0);
    tokio::time::sleep(options.warmup).await;

    let mut news: Vec<Tracked> = Vec::new();
    let mut deploy_failure = None;
    for step in 1..=options.instances {
        timeline.enter(PhaseKind::NewStarting, step);
        let name = format!("new-{step}");
        let mut new = start(
            &launch,
            &name,
            Role::New,
            step,
            &mut ports,
            options,
            &timeline,
        )?;
        let healthy = new
            .instance
            .wait_healthy(
                &options.health_path,
                options.probe_interval,
                epoch + new.report.started_at,
                options.health_timeout,
            )
            .await;
        match healthy {
            Ok(after) => new.report.healthy_after = Some(after),
            Err(reason) => {
                // Render keeps the old instances serving and stops the one that failed.
                deploy_failure = Some(DeployFailure {
                    instance: name,
                    at: timeline.now(),
                    reason,
                });
                stop(&mut new, options.shutdown_delay, &timeline, false).await;
                news.push(new);
                break;
            }
        }
        let old = &mut olds[step - 1];
        proxy.replace(&old.report.name, backend(&new));
        let switched = timeline.now();
        old.report.routed_until = Some(switched);
        new.report.routed_from = Some(switched);
        timeline.enter(PhaseKind::Switched, step);
        tokio::time::sleep(options.drain).await;
        timeline.enter(PhaseKind::OldStopping, step);
        old.report.in_flight_at_sigterm = Some(proxy.in_flight(&old.report.name));
        stop(old, options.shutdown_delay, &timeline, false).await;
        news.push(new);
    }
    timeline.enter(PhaseKind::After, 0);
    let until = (load_started + options.duration).max(timeline.now() + options.tail);
    tokio::time::sleep(until.saturating_sub(timeline.now())).await;
    let requests = load.stop().await;
    let load_stopped = timeline.now();
    timeline.close(load_stopped);
    proxy.stop().await;

    // Stop whatever still runs, together: the new instances, or the old ones after a failure.
    let mut running: Vec<&mut Tracked> = olds
        .iter_mut()
        .chain(news.iter_mut())
        .filter(|t| t.instance.exit().is_none())
        .collect();
    let stopping = running
        .iter_mut()
        .map(|t| stop(t, options.shutdown_delay, &timeline, true));
    futures_join_all(stopping).await;
    for t in olds.iter_mut().chain(news.iter_mut()) {
        if t.report.exit.is_none()
            && let Some(exit) = t.instance.exit()
        {
            t.report.exit = Some((timeline.now(), exit));
        }
        t.report.output_tail = t.instance.output_tail();
    }
    let ended = timeline.now();
    Ok(Rehearsal {
        command: options.command.display(),
        rate: options.rate,
        paths: options.paths.clone(),
        health_path: options.health_path.clone(),
        drain: options.drain,
        shutdown_delay: options.shutdown_delay,
        requests,
        phases: timeline.phases,
        instances: olds.into_iter().chain(news).map(|t| t.report).collect(),
        deploy_failure,
        load_started,
        load_stopped,
        ended,
    })
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

/// Awaits every future, concurrently, and returns their outputs in order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (fut, out) in pending.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// What each instance runs, and for `dev` without `DATABASE_URL`, the throwaway PostgreSQL
/// they share (as old and new instances share one database on Render); it lives as long as
/// the returned value.
async fn launch_of(
    options: &RehearsalOptions,
) -> Result<(Launch, Option<LocalPostgres>), RehearseError> {
    match &options.command {
        InstanceCommand::Command { program, args } => Ok((
            Launch {
                program: program.clone(),
                args: args.clone(),
                env: Vec::new(),
                display: options.command.display(),
            },
            None,
        )),
        InstanceCommand::Dev => {
            let exe = std::env::current_exe().map_err(RehearseError::CurrentExe)?;
            let mut env = vec![("HOST".to_owned(), "127.0.0.1".to_owned())];
            // A graceful shutdown that ends before the SIGKILL, as it should on Render.
            if std::env::var_os("SHUTDOWN_TIMEOUT").is_none() {
                let secs = options.shutdown_delay.as_secs().saturating_sub(1).max(1);
                env.push(("SHUTDOWN_TIMEOUT".to_owned(), secs.to_string()));
            }
            let mut postgres = None;
            if std::env::var_os("DATABASE_URL").is_none() {
                // initdb and pg_ctl block for a second or so.
                let pg = match tokio::task::spawn_blocking(LocalPostgres::start).await {
                    Ok(started) => started?,
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                };
                let url = pg.create_database().await?;
                env.push(("DATABASE_URL".to_owned(), url));
                // `auto` pool sizing already doubles for the old and new instances of a deploy.
                env.push((
                    "DB_POOL_INSTANCES".to_owned(),
                    options.instances.to_string(),
                ));
                postgres = Some(pg);
            }
            Ok((
                Launch {
                    program: exe.into_os_string(),
                    args: vec!["dev".into()],
                    env,
                    display: options.command.display(),
                },
                postgres,
            ))
        }
    }
}
