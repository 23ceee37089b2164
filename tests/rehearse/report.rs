//! The HTML report of `rehearse`, opened in headless Chromium: the page must render to a
//! screenshot that shows the charts, not a blank page. Skipped (with a message) when Chromium
//! is not installed (`apt-get install chromium`; CI installs it).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::fixture::fixture;

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// Takes a screenshot of `page` (`size` is `WIDTH,HEIGHT`) with Chromium, as root-safe as
/// Chromium allows, with a fresh profile and nothing fetched from the network.
async fn screenshot(chromium: &Path, page: &Path, png: &Path, size: &str) {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut screenshot_arg = std::ffi::OsString::from("--screenshot=");
    screenshot_arg.push(png);
    let mut profile_arg = std::ffi::OsString::from("--user-data-dir=");
    profile_arg.push(profile.path());
    let url = format!("file://{}", page.display());
    let run = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--window-size={size}"))
        .arg(profile_arg)
        .arg(screenshot_arg)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("chromium finished within 90 s")
        .expect("run chromium");
    assert!(
        png.exists(),
        "chromium wrote no screenshot ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// RGB pixels of a PNG.
fn pixels(png_path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).expect("open the screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("decode the PNG");
    let channels = info.color_type.samples();
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    assert!(channels >= 3, "colour type {:?}", info.color_type);
    let rgb = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, info.height, rgb)
}

fn near(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 12)
}

#[tokio::test]
async fn the_html_report_renders_in_headless_chromium_to_a_chart_not_a_blank_page() {
    let Some(chromium) = find_chromium() else {
        crate::support::prerequisite_missing(
            "chromium",
            "apt-get install chromium; scripts/test does it",
        );
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("report.html");
    // A service that loses requests, so that the page has failures to show as well.
    let rehearsal = tokio::process::Command::new(env!("CARGO_BIN_EXE_render-deploy"))
        .args([
            "rehearse",
            "--rate",
            "40",
            "--duration",
            "3s",
            "--drain",
            "0.2s",
        ])
        .args(["--path", "/", "--path", "/slow?ms=800", "--report"])
        .arg(&report)
        .arg("--")
        .arg(fixture())
        .arg("drops-in-flight")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(90), rehearsal)
        .await
        .expect("the rehearsal ended")
        .expect("run render-deploy");
    assert_eq!(status.code(), Some(1), "the fixture loses requests");
    let html = std::fs::read_to_string(&report).expect("the report was written");
    assert!(!html.contains("<script"), "the page is static");

    let png = dir.path().join("report.png");
    screenshot(&chromium, &report, &png, "1200,900").await;
    let (width, height, rgb) = pixels(&png);
    assert_eq!((width, height), (1200, 900));

    let ink = rgb.iter().filter(|p| p.iter().any(|&c| c < 235)).count();
    let share = ink as f64 / rgb.len() as f64;
    assert!(
        share > 0.05,
        "only {:.1} % of the page is not white",
        share * 100.0
    );
    // The bars of the old instance (blue), the new one (green) and the failures (red) show.
    for (what, colour) in [
        ("old-1 blue", [0x4e, 0x79, 0xa7]),
        ("new-1 green", [0x59, 0xa1, 0x4f]),
        ("failure red", [0xd6, 0x27, 0x28]),
    ] {
        let n = rgb.iter().filter(|p| near(**p, colour)).count();
        assert!(n > 500, "{what}: only {n} pixels");
    }
}

/// A deploy whose pre-deploy command renames the column the old version reads: the page shows
/// the pre-deploy phase, the failures of the old version after it, and the connection chart
/// with its limit.
#[tokio::test]
async fn the_html_report_of_a_breaking_migration_shows_the_pre_deploy_phase_and_the_connection_chart()
 {
    let Some(chromium) = find_chromium() else {
        crate::support::prerequisite_missing(
            "chromium",
            "apt-get install chromium; scripts/test does it",
        );
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("report.html");
    let fixture = format!("'{}'", fixture().display());
    let rehearsal = tokio::process::Command::new(env!("CARGO_BIN_EXE_render-deploy"))
        .args(["rehearse", "--rate", "40", "--duration", "3s", "--db-max-connections", "20"])
        .arg("--setup")
        .arg(format!(
            r#"{fixture} sql "CREATE TABLE users (id int, name text); INSERT INTO users VALUES (1, 'Ada')""#
        ))
        .arg("--pre-deploy")
        .arg(format!(
            r#"{fixture} sql "ALTER TABLE users RENAME COLUMN name TO full_name""#
        ))
        .arg("--old")
        .arg(format!("{fixture} well-behaved --read-column users.name"))
        .arg("--new")
        .arg(format!("{fixture} well-behaved --read-column users.full_name"))
        .arg("--report")
        .arg(&report)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(90), rehearsal)
        .await
        .expect("the rehearsal ended")
        .expect("run render-deploy");
    assert_eq!(
        status.code(),
        Some(1),
        "the migration breaks the old version"
    );
    let html = std::fs::read_to_string(&report).expect("the report was written");
    for want in [
        "the migration is not compatible with the version still running",
        "Database connections (client backends",
        "max_connections 20",
        "pre-deploy (step 0)",
        "new starting (step 1)",
        "The pre-deploy command",
        "Failed requests by phase, instance and version",
    ] {
        assert!(html.contains(want), "the page lacks {want:?}");
    }

    let png = dir.path().join("report.png");
    screenshot(&chromium, &report, &png, "1200,1400").await;
    let (width, height, rgb) = pixels(&png);
    assert_eq!((width, height), (1200, 1400));
    let ink = rgb.iter().filter(|p| p.iter().any(|&c| c < 235)).count();
    assert!(
        ink as f64 / rgb.len() as f64 > 0.05,
        "the page is nearly blank"
    );
    // The pre-deploy band (lilac), the connection line (purple) and the limit and failures (red).
    for (what, colour, least) in [
        ("pre-deploy band", [0xe4, 0xd7, 0xf5], 2000),
        ("connection line", [0x6a, 0x3d, 0x9a], 300),
        ("failures and the limit", [0xd6, 0x27, 0x28], 300),
    ] {
        let n = rgb.iter().filter(|p| near(**p, colour)).count();
        assert!(n > least, "{what}: only {n} pixels");
    }
}
