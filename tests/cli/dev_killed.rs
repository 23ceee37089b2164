//! `render-deploy dev` killed with SIGKILL leaves neither its throwaway PostgreSQL nor its folder.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::leftovers::{leftovers, postmaster_pid, wait_until_nothing_left};
use crate::support::{Running, free_port};

#[test]
fn dev_killed_with_sigkill_leaves_no_postgresql_and_no_folder_five_seconds_later() {
    let port = free_port();
    let mut app = Running::start(&["dev"], &[("PORT".to_owned(), port.to_string())]);
    app.wait_listening();
    let stderr = app.stderr.lock().unwrap().clone();
    let dir = stderr
        .split(" in ")
        .nth(1)
        .and_then(|rest| rest.split(" (removed on exit)").next())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no cluster folder announced: {stderr}"));
    let postmaster = postmaster_pid(&dir);
    assert!(
        leftovers(&dir, postmaster).len() >= 3,
        "while dev runs: a postmaster, a watchdog and a folder: {:?}",
        leftovers(&dir, postmaster)
    );

    app.child.kill().unwrap();
    app.child.wait().unwrap();
    let within = Duration::from_secs(5);
    let left = wait_until_nothing_left(&dir, postmaster, within);
    assert!(
        left.is_empty(),
        "{within:?} after SIGKILL, still there: {left:?}"
    );
}
