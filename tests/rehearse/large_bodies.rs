//! Large responses pass through the rehearsal's proxy and load generator as streams: the peak
//! memory of the `rehearse` process stays far below the size of one response.

use std::process::Stdio;
use std::time::Duration;

use crate::support::fixture::fixture;

/// The `VmHWM` (peak resident memory) of a running process, in KiB.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[tokio::test]
async fn eight_downloads_of_50_mib_through_the_rehearsal_keep_its_memory_bounded() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_render-deploy"))
        .args([
            "rehearse",
            "--duration",
            "4s",
            "--rate",
            "2",
            "--path",
            "/bytes?mib=50",
        ])
        .arg("--")
        .arg(fixture())
        .arg("well-behaved")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start render-deploy");
    let pid = child.id().expect("a running child");
    // Polled until it exits: the last value read is the peak of (nearly) the whole run.
    let mut peak = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(kib) = peak_kib(pid) {
            peak = kib;
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still running after 90 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let output = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    eprintln!("rehearse with eight 50 MiB downloads: peak RSS {peak} KiB");
    // A proxy or load generator holding one whole response would be past 50 MiB on its own.
    assert!(
        peak > 0 && peak < 48 * 1024,
        "peak RSS {peak} KiB\n{stdout}"
    );
}
