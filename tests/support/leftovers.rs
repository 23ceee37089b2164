//! What is left of a throwaway cluster after its owner is gone: processes and the folder.
use std::path::Path;
use std::time::{Duration, Instant};

/// The postmaster's process id, from the first line of `data/postmaster.pid` in `dir`.
pub fn postmaster_pid(dir: &Path) -> u32 {
    let file = dir.join("data").join("postmaster.pid");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
    text.lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .unwrap_or_else(|| panic!("no process id in {file:?}: {text:?}"))
}

/// Whether `pid` is a live process (a zombie, dead but not yet reaped, is not).
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .map(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Live processes other than this one whose command line mentions `needle`, as `pid: cmdline`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if pid != me && cmdline.contains(needle) && is_alive(pid) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// What is left of the cluster in `dir` whose postmaster is `postmaster`: processes that name
/// the folder (server, watchdog, pg_ctl), the postmaster itself, the folder.
pub fn leftovers(dir: &Path, postmaster: u32) -> Vec<String> {
    let mut left = processes_mentioning(&dir.to_string_lossy());
    if is_alive(postmaster) {
        left.push(format!("the postmaster, process {postmaster}"));
    }
    if dir.exists() {
        left.push(format!("the folder {}", dir.display()));
    }
    left
}

/// Polls [`leftovers`] until nothing is left or `within` has passed; returns what is left.
pub fn wait_until_nothing_left(dir: &Path, postmaster: u32, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let left = leftovers(dir, postmaster);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
