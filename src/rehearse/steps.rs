//! The one-shot commands of a deploy, the setup and the pre-deploy command: run with `sh -c` to
//! completion, their output kept.
//!
//! Render runs a service's `preDeployCommand` (typically its migrations) once per deploy, after
//! the build and before the new instances start, while the old ones still serve; its failure
//! fails the deploy. The setup command has no counterpart on Render: it stands for what the
//! database already holds when the deploy begins (the old version's migrations, seed data).
//!
//! Each command runs in its own process group with the instances' environment minus `PORT` (a
//! pre-deploy command does not serve), and is killed with its whole group when it outlives
//! [`STEP_TIMEOUT`] or the rehearsal is dropped, so that a hung migration cannot hold the
//! rehearsal forever nor outlive it.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::instance::{collect_output, push_line};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::record::InstanceExit;

/// How long a setup or pre-deploy command may run before it is killed and counted as failed.
/// Render gives a pre-deploy command far longer; a rehearsal is meant to take seconds, and a
/// migration that takes minutes on a throwaway database is worth a look of its own.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(600);

/// How many of a command's last output lines are kept for the reports.
pub const STEP_TAIL_LINES: usize = 30;

/// Which one-shot command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// `--setup`: before the old instances start.
    Setup,
    /// `--pre-deploy`: while the old instances serve, before the new one starts.
    PreDeploy,
}

impl StepKind {
    /// The name of the command in reports.
    pub fn label(self) -> &'static str {
        match self {
            StepKind::Setup => "setup",
            StepKind::PreDeploy => "pre-deploy",
        }
    }
}

/// How a one-shot command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEnd {
    /// It exited, or a signal ended it.
    Exited(InstanceExit),
    /// It did not finish within [`STEP_TIMEOUT`] and was killed.
    TimedOut,
    /// It could not be started at all (`sh` missing).
    NotStarted,
}

/// A setup or pre-deploy command as it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRun {
    /// Setup or pre-deploy.
    pub kind: StepKind,
    /// The shell command, as given.
    pub command: String,
    /// When it started, from the start of the rehearsal.
    pub start: Duration,
    /// When it ended.
    pub end: Duration,
    /// How it ended.
    pub ended: StepEnd,
    /// Its last lines of output, stdout and stderr interleaved as they came.
    pub output_tail: Vec<String>,
}

impl StepRun {
    /// Whether it exited 0.
    pub fn succeeded(&self) -> bool {
        self.ended == StepEnd::Exited(InstanceExit::Code(0))
    }

    /// `exited 3`, `killed by SIGKILL`, `did not finish within 600 s`.
    pub fn how(&self) -> String {
        match self.ended {
            StepEnd::Exited(exit) => exit.to_string(),
            StepEnd::TimedOut => format!(
                "did not finish within {} s and was killed",
                STEP_TIMEOUT.as_secs()
            ),
            StepEnd::NotStarted => "could not be started".to_owned(),
        }
    }
}

/// Kills the command's process group when dropped, so that an interrupted rehearsal (Ctrl-C
/// drops the future) leaves nothing of it running.
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = killpg(pid, Signal::SIGKILL);
        }
    }
}

/// Runs `sh -c command` to completion with `env` added to ours and `PORT` removed; `epoch` is
/// the start of the rehearsal. With `show_output`, each line is copied to stderr prefixed with
/// the step's name.
pub(crate) async fn run_step(
    kind: StepKind,
    command: &str,
    env: &[(String, String)],
    epoch: Instant,
    show_output: bool,
) -> StepRun {
    let start = epoch.elapsed();
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STEP_TAIL_LINES)));
    let ended = run_to_end(kind, command, env, &tail, show_output).await;
    let output_tail = tail
        .lock()
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    StepRun {
        kind,
        command: command.to_owned(),
        start,
        end: epoch.elapsed(),
        ended,
        output_tail,
    }
}

async fn run_to_end(
    kind: StepKind,
    command: &str,
    env: &[(String, String)],
    tail: &Arc<Mutex<VecDeque<String>>>,
    show_output: bool,
) -> StepEnd {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            push_line(tail, format!("cannot run sh: {e}"), STEP_TAIL_LINES);
            return StepEnd::NotStarted;
        }
    };
    let guard = GroupGuard(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    );
    let readers = [
        child.stdout.take().map(|s| {
            tokio::spawn(collect_output(
                s,
                kind.label().to_owned(),
                tail.clone(),
                STEP_TAIL_LINES,
                show_output,
            ))
        }),
        child.stderr.take().map(|s| {
            tokio::spawn(collect_output(
                s,
                kind.label().to_owned(),
                tail.clone(),
                STEP_TAIL_LINES,
                show_output,
            ))
        }),
    ];
    let ended = match tokio::time::timeout(STEP_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) => StepEnd::Exited(super::instance::exit_of(status)),
        Ok(Err(_)) => StepEnd::Exited(InstanceExit::Signal(Signal::SIGKILL as i32)),
        Err(_) => StepEnd::TimedOut,
    };
    // The group goes now: a helper the command left behind would keep its pipes open.
    drop(guard);
    for reader in readers.into_iter().flatten() {
        let _ = reader.await;
    }
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_command_runs_to_completion_with_its_output_and_exit_code_kept() {
        let env = vec![("GREETING".to_owned(), "hello".to_owned())];
        let run = run_step(
            StepKind::PreDeploy,
            "echo \"$GREETING\"; echo oops >&2; echo \"port=${PORT:-none}\"; exit 3",
            &env,
            Instant::now(),
            false,
        )
        .await;
        assert_eq!(run.ended, StepEnd::Exited(InstanceExit::Code(3)));
        assert!(!run.succeeded());
        assert_eq!(run.how(), "exited 3");
        let mut lines = run.output_tail.clone();
        lines.sort();
        assert_eq!(lines, ["hello", "oops", "port=none"]);
    }

    #[tokio::test]
    async fn only_the_last_lines_are_kept() {
        let run = run_step(
            StepKind::Setup,
            "i=0; while [ $i -lt 100 ]; do echo line $i; i=$((i+1)); done",
            &[],
            Instant::now(),
            false,
        )
        .await;
        assert!(run.succeeded());
        assert_eq!(run.output_tail.len(), STEP_TAIL_LINES);
        assert_eq!(run.output_tail.last().map(String::as_str), Some("line 99"));
    }
}
