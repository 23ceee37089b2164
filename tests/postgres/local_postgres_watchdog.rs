//! A throwaway cluster does not outlive the process that owns it, however that process dies.
//!
//! The owner is this test binary run again (with [`OWNER_ENV`] set, only this test): it starts a
//! `LocalPostgres`, prints the cluster's folder, and waits for its standard input to close. The
//! test then kills it in a way that skips `Drop` and looks for what is left.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::leftovers::{
    leftovers, postmaster_pid, processes_mentioning, wait_until_nothing_left,
};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use render_deploy::local_postgres::LocalPostgres;

/// Set in the owner process, to the name of the test it runs.
const OWNER_ENV: &str = "RENDER_DEPLOY_TEST_CLUSTER_OWNER";

/// How long the cluster may outlive its owner.
const WITHIN: Duration = Duration::from_secs(5);

#[test]
fn a_cluster_whose_owner_is_killed_with_sigkill_is_stopped_and_removed() {
    let name = "a_cluster_whose_owner_is_killed_with_sigkill_is_stopped_and_removed";
    if be_the_owner_if_asked(name) {
        return;
    }
    let (mut owner, dir) = start_owner(name);
    let postmaster = postmaster_pid(&dir);
    assert!(
        leftovers(&dir, postmaster).len() >= 3,
        "before the kill: a postmaster, a watchdog and a folder: {:?}",
        leftovers(&dir, postmaster)
    );
    owner.kill().unwrap();
    owner.wait().unwrap();
    let left = wait_until_nothing_left(&dir, postmaster, WITHIN);
    assert!(
        left.is_empty(),
        "{WITHIN:?} after SIGKILL, still there: {left:?}"
    );
}

#[test]
fn a_cluster_whose_owners_process_group_gets_ctrl_c_is_stopped_and_removed() {
    let name = "a_cluster_whose_owners_process_group_gets_ctrl_c_is_stopped_and_removed";
    if be_the_owner_if_asked(name) {
        return;
    }
    let (mut owner, dir) = start_owner(name);
    let postmaster = postmaster_pid(&dir);
    // What a terminal does on Ctrl-C: SIGINT to the whole foreground group. The test harness
    // does not handle it, so the owner dies without dropping; the watchdog must not die too.
    killpg(Pid::from_raw(owner.id() as i32), Signal::SIGINT).unwrap();
    let status = owner.wait().unwrap();
    assert!(!status.success(), "the owner was killed: {status}");
    let left = wait_until_nothing_left(&dir, postmaster, WITHIN);
    assert!(
        left.is_empty(),
        "{WITHIN:?} after SIGINT, still there: {left:?}"
    );
}

#[test]
fn a_dropped_cluster_leaves_no_watchdog_behind() {
    let pg = LocalPostgres::start().expect("start cluster");
    let dir = pg.dir().to_path_buf();
    let postmaster = postmaster_pid(&dir);
    let needle = dir.to_string_lossy().into_owned();
    assert!(
        processes_mentioning(&needle)
            .iter()
            .any(|p| p.contains("render-deploy-pg-watchdog")),
        "a running cluster has a watchdog: {:?}",
        processes_mentioning(&needle)
    );
    drop(pg);
    // Drop waits for the watchdog: nothing may be left at all, not even for a moment.
    assert_eq!(leftovers(&dir, postmaster), Vec::<String>::new());
}

/// In the owner process: starts a cluster, announces it, and holds it until stdin closes.
/// Returns false in the test process itself.
fn be_the_owner_if_asked(name: &str) -> bool {
    if std::env::var(OWNER_ENV).ok().as_deref() != Some(name) {
        return false;
    }
    let pg = LocalPostgres::start().expect("start cluster");
    println!("cluster-dir={}", pg.dir().display());
    std::io::stdout().flush().unwrap();
    // Ends only if the test process dies first: then this owner drops its cluster normally.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(pg);
    true
}

/// Runs this binary again as the owner of a cluster, in its own process group; returns it and
/// the cluster's folder once the cluster runs.
fn start_owner(name: &str) -> (Child, PathBuf) {
    // In a binary of several modules the test's name carries its module path.
    let full_name = match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::{name}"),
        None => name.to_owned(),
    };
    let mut owner = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &full_name, "--nocapture", "--test-threads=1"])
        .env(OWNER_ENV, name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("run the owner");
    let stdout = owner.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest may have started the line with the test's name.
            if let Some((_, dir)) = line.split_once("cluster-dir=") {
                let _ = tx.send(PathBuf::from(dir));
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(dir) => (owner, dir),
        Err(e) => {
            let _ = owner.kill();
            panic!("the owner announced no cluster ({e}): {:?}", owner.wait());
        }
    }
}
