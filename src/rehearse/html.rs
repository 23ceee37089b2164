//! The report as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched.
//!
//! Three charts share one time axis: requests per second by the instance that served them
//! (failures stacked on top in red), the latency of every request, and one lane per instance
//! (starting, in rotation, stopping, how it exited). The deploy's phases are shaded behind the
//! first two, so a burst of errors lines up with the step that caused it. When the rehearsal
//! had a database, a fourth chart draws its client connections against `max_connections`
//! (`versions`, with the pre-deploy command and the failures by version).
//! With `--sse`, another draws each client's event streams (`sse_report`).

use std::fmt::Write as _;
use std::time::Duration;

pub(super) mod draw;
mod versions;

use draw::{Axis, FAILED, LEFT, axis_frame, colour, esc, marker, nice_step, svg_open, y_axis};

use super::record::{Phase, PhaseKind};
use super::report::{InstanceReport, Rehearsal, millis, secs, trim_float};
use super::text::instance_line;

/// The page for a rehearsal.
pub fn page(r: &Rehearsal) -> String {
    let span = r.ended.max(r.load_stopped).max(Duration::from_millis(100));
    let x = Axis {
        span: span.as_secs_f64(),
    };
    let mut out = String::with_capacity(64 * 1024);
    let ok = r.succeeded();
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>render-deploy rehearse: {result}</title>
<style>
body {{ font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; max-width: 1140px; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }} h2 {{ font-size: 16px; margin: 22px 0 6px; }}
.badge {{ display: inline-block; padding: 2px 10px; border-radius: 4px; color: #fff; font-weight: 600; background: {badge}; }}
.muted {{ color: #666; }} code {{ background: #f3f3f3; padding: 1px 4px; border-radius: 3px; }}
table {{ border-collapse: collapse; margin: 6px 0; }} td, th {{ padding: 3px 10px; border-bottom: 1px solid #e4e4e4; text-align: right; }}
th {{ background: #fafafa; }} td:first-child, th:first-child {{ text-align: left; }}
.legend span {{ display: inline-block; margin-right: 14px; }} .sw {{ display: inline-block; width: 12px; height: 12px; vertical-align: -1px; margin-right: 4px; border-radius: 2px; }}
svg {{ display: block; }} svg text {{ font: 11px system-ui, sans-serif; fill: #444; paint-order: stroke; stroke: #fff; stroke-width: 3px; stroke-linejoin: round; }}
ul.problems li {{ color: {failed}; }}
</style></head><body>
<h1>Rehearsal of a zero-downtime deploy <span class="badge">{result}</span></h1>
<div class="muted">{command} &middot; {rate} req/s on <code>{paths}</code> &middot; health <code>{health}</code> &middot; drain {drain} &middot; shutdown delay {delay}</div>
"#,
        result = if ok { "PASS" } else { "FAIL" },
        badge = if ok { "#2e7d32" } else { FAILED },
        failed = FAILED,
        command = command_line(r),
        rate = trim_float(r.rate),
        paths = esc(&r.paths.join(" ")),
        health = esc(&r.health_path),
        drain = secs(r.drain),
        delay = secs(r.shutdown_delay),
    );
    let problems = r.problems();
    if !problems.is_empty() {
        out.push_str("<ul class=\"problems\">");
        for p in problems {
            let _ = write!(out, "<li>{}</li>", esc(&p));
        }
        out.push_str("</ul>");
    }
    legend(&mut out, r);
    out.push_str("<h2>Requests per second, by the instance that served them</h2>");
    throughput_chart(&mut out, r, &x);
    out.push_str("<h2>Latency of each request</h2>");
    latency_chart(&mut out, r, &x);
    if let Some(c) = &r.connections {
        versions::connections_chart(&mut out, r, c, &x);
    }
    out.push_str("<h2>Instances</h2>");
    lanes_chart(&mut out, r, &x);
    if let Some(streams) = &r.streams {
        super::sse_report::html_section(&mut out, r, streams, &x);
    }
    versions::sections(&mut out, r);
    tables(&mut out, r);
    out.push_str("</body></html>\n");
    out
}

/// `command <code>A</code>`, or `old <code>A</code> &rarr; new <code>B</code>`.
fn command_line(r: &Rehearsal) -> String {
    if r.command == r.new_command {
        format!("command <code>{}</code>", esc(&r.command))
    } else {
        format!(
            "old <code>{}</code> &rarr; new <code>{}</code>",
            esc(&r.command),
            esc(&r.new_command)
        )
    }
}

fn legend(out: &mut String, r: &Rehearsal) {
    out.push_str("<p class=\"legend\">");
    for i in &r.instances {
        let _ = write!(
            out,
            r#"<span><i class="sw" style="background:{}"></i>{}</span>"#,
            colour(r, &i.name),
            esc(&i.name)
        );
    }
    let _ = write!(
        out,
        r#"<span><i class="sw" style="background:{FAILED}"></i>failed</span>"#
    );
    for (kind, fill) in PHASE_FILLS {
        let _ = write!(
            out,
            r#"<span><i class="sw" style="background:{fill};border:1px solid #ccc"></i>{}</span>"#,
            kind.label()
        );
    }
    out.push_str("</p>");
}

const PHASE_FILLS: [(PhaseKind, &str); 4] = [
    (PhaseKind::PreDeploy, "#e4d7f5"),
    (PhaseKind::NewStarting, "#fff4c2"),
    (PhaseKind::Switched, "#dcebfb"),
    (PhaseKind::OldStopping, "#fde0cc"),
];

/// The narrowest a phase's band is drawn, in pixels: a pre-deploy command that takes 13 ms is
/// a sliver of the axis, and it must still be seen (and hovered for its times).
const MIN_BAND_PX: f64 = 8.0;

fn phase_bands(out: &mut String, r: &Rehearsal, x: &Axis, top: f64, bottom: f64) {
    let widened = |p: &&Phase| x.px(p.end) - x.px(p.start) < MIN_BAND_PX;
    // A widened band reaches into the next phase's, so it is drawn after the others (on top).
    let (short, long): (Vec<&Phase>, Vec<&Phase>) = r.phases.iter().partition(widened);
    for p in long.into_iter().chain(short) {
        let Some((_, fill)) = PHASE_FILLS.iter().find(|(k, _)| *k == p.kind) else {
            continue;
        };
        let (x0, x1) = (x.px(p.start), x.px(p.end));
        let _ = write!(
            out,
            r#"<rect x="{x0:.1}" y="{top}" width="{:.1}" height="{}" fill="{fill}"><title>{} (step {}): {} to {}</title></rect>"#,
            (x1 - x0).max(MIN_BAND_PX),
            bottom - top,
            p.kind.label(),
            p.step,
            secs(p.start),
            secs(p.end)
        );
    }
}

/// Vertical lines where an instance was told to stop (SIGTERM) or killed (SIGKILL).
fn signal_lines(out: &mut String, r: &Rehearsal, x: &Axis, top: f64, bottom: f64) {
    // Stopping at the end is shown in the lanes; here only the deploy's own signals.
    for (n, i) in r.instances.iter().filter(|i| !i.stopped_at_end).enumerate() {
        let signals = [
            (i.sigterm_at, "#b35900", "SIGTERM"),
            (i.sigkill_at, FAILED, "SIGKILL"),
        ];
        for (at, colour, what) in signals {
            let Some(at) = at else { continue };
            let px = x.px(at);
            let _ = write!(
                out,
                r#"<line x1="{px:.1}" x2="{px:.1}" y1="{top}" y2="{bottom}" stroke="{colour}" stroke-width="1.5" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" style="fill:{colour}">{what} {}</text>"#,
                px + 3.0,
                // Staggered, so that close steps of a rolling deploy stay legible.
                top + 11.0 + 12.0 * (n % 3) as f64,
                esc(&i.name)
            );
        }
    }
}

fn throughput_chart(out: &mut String, r: &Rehearsal, x: &Axis) {
    let (top, bottom, height) = (10.0, 230.0, 252.0);
    let bucket = nice_step(x.span / 120.0).max(0.1);
    let buckets = (x.span / bucket).ceil() as usize + 1;
    let names: Vec<&str> = r.instances.iter().map(|i| i.name.as_str()).collect();
    // counts[bucket][instance], then failures in the last column.
    let mut counts = vec![vec![0usize; names.len() + 1]; buckets];
    for req in &r.requests {
        let b = ((req.start.as_secs_f64() / bucket) as usize).min(buckets - 1);
        let column = if req.outcome.failure().is_some() {
            names.len()
        } else {
            req.instance
                .as_deref()
                .and_then(|n| names.iter().position(|m| *m == n))
                .unwrap_or(names.len())
        };
        counts[b][column] += 1;
    }
    let peak = counts
        .iter()
        .map(|c| c.iter().sum::<usize>())
        .max()
        .unwrap_or(0) as f64
        / bucket;
    let y_step = nice_step((peak / 4.0).max(1.0));
    let y_max = (peak / y_step).ceil().max(1.0) * y_step;
    let y = |rate: f64| bottom - rate / y_max * (bottom - top);
    svg_open(out, height);
    phase_bands(out, r, x, top, bottom);
    x.ticks(out, top, bottom);
    y_axis(out, y_max, y_step, &y, (top, bottom), "requests / s");
    let w = (x.px(Duration::from_secs_f64(bucket)) - LEFT - 1.0).max(1.0);
    for (b, column) in counts.iter().enumerate() {
        let x0 = x.px(Duration::from_secs_f64(b as f64 * bucket));
        let mut base = 0.0;
        for (i, &n) in column.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let (fill, label) = match names.get(i) {
                Some(name) => (colour(r, name), *name),
                None => (FAILED, "failed"),
            };
            let rate = n as f64 / bucket;
            let (y0, y1) = (y(base + rate), y(base));
            let _ = write!(
                out,
                r#"<rect x="{x0:.1}" y="{y0:.1}" width="{w:.1}" height="{:.1}" fill="{fill}"><title>{}: {n} from {} s</title></rect>"#,
                (y1 - y0).max(0.5),
                esc(label),
                trim_float(b as f64 * bucket)
            );
            base += rate;
        }
    }
    signal_lines(out, r, x, top, bottom);
    axis_frame(out, top, bottom);
    out.push_str("</svg>");
}

fn latency_chart(out: &mut String, r: &Rehearsal, x: &Axis) {
    let (top, bottom, height) = (10.0, 190.0, 212.0);
    let max = r
        .requests
        .iter()
        .map(|q| q.latency().as_secs_f64() * 1000.0)
        .fold(0.0, f64::max);
    let y_step = nice_step((max / 4.0).max(0.5));
    let y_max = (max / y_step).ceil().max(1.0) * y_step;
    let y = |ms: f64| bottom - ms / y_max * (bottom - top);
    svg_open(out, height);
    phase_bands(out, r, x, top, bottom);
    x.ticks(out, top, bottom);
    y_axis(out, y_max, y_step, &y, (top, bottom), "ms");
    // A page stays light: successes are thinned beyond this many; every failure is drawn.
    let every = (r.requests.len() / 20_000).max(1);
    for (n, q) in r.requests.iter().enumerate() {
        let (px, py) = (x.px(q.start), y(q.latency().as_secs_f64() * 1000.0));
        if q.outcome.failure().is_some() {
            let _ = write!(
                out,
                r#"<path d="M{:.1} {:.1}l6 6m0 -6l-6 6" stroke="{FAILED}" stroke-width="1.6"/>"#,
                px - 3.0,
                py - 3.0
            );
        } else if n % every == 0 {
            let fill = q.instance.as_deref().map_or("#999", |i| colour(r, i));
            let _ = write!(
                out,
                r#"<circle cx="{px:.1}" cy="{py:.1}" r="2" fill="{fill}" fill-opacity="0.75"/>"#
            );
        }
    }
    signal_lines(out, r, x, top, bottom);
    axis_frame(out, top, bottom);
    out.push_str("</svg>");
}

fn lanes_chart(out: &mut String, r: &Rehearsal, x: &Axis) {
    let lane = 30.0;
    let top = 6.0;
    let bottom = top + lane * r.instances.len() as f64;
    svg_open(out, bottom + 22.0);
    x.ticks(out, top, bottom);
    for (n, i) in r.instances.iter().enumerate() {
        let y0 = top + n as f64 * lane + 6.0;
        let h = lane - 12.0;
        let _ = write!(
            out,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y0 + h / 2.0 + 4.0,
            esc(&i.name)
        );
        instance_lane(out, r, x, i, y0, h);
    }
    axis_frame(out, top, bottom);
    out.push_str("</svg>");
}

/// One instance's lane: its phases as bars, SIGTERM and SIGKILL marks, and how it ended.
fn instance_lane(out: &mut String, r: &Rehearsal, x: &Axis, i: &InstanceReport, y0: f64, h: f64) {
    let end = i.exit.map_or(r.ended, |(at, _)| at);
    let healthy = i.healthy_after.map(|h| i.started_at + h);
    let bar = |out: &mut String, from: Duration, to: Duration, fill: &str, tip: &str| {
        if to > from {
            let _ = write!(
                out,
                r#"<rect x="{:.1}" y="{y0:.1}" width="{:.1}" height="{h}" fill="{fill}"><title>{}: {tip}</title></rect>"#,
                x.px(from),
                (x.px(to) - x.px(from)).max(1.0),
                esc(&i.name)
            );
        }
    };
    // Starting (grey) until healthy, then idle-healthy (light), in rotation (its colour),
    // stopping after SIGTERM (orange).
    let healthy_at = healthy.unwrap_or(end).min(end);
    bar(out, i.started_at, healthy_at, "#cfcfcf", "starting");
    let routed_from = i.routed_from.unwrap_or(end).max(healthy_at).min(end);
    let stop_at = i.sigterm_at.unwrap_or(end).min(end);
    bar(
        out,
        healthy_at,
        routed_from.min(stop_at),
        "#e8e8e8",
        "healthy, not in rotation",
    );
    let routed_until = i.routed_until.unwrap_or(stop_at).min(stop_at);
    bar(
        out,
        routed_from,
        routed_until,
        colour(r, &i.name),
        "in rotation",
    );
    bar(
        out,
        routed_until,
        stop_at,
        "#e8e8e8",
        "out of rotation, finishing",
    );
    bar(out, stop_at, end, "#f28e2b", "stopping after SIGTERM");
    if let Some(t) = i.sigterm_at {
        marker(out, x.px(t), y0, h, "#b35900", "SIGTERM");
    }
    if let Some(t) = i.sigkill_at {
        marker(out, x.px(t), y0, h, FAILED, "SIGKILL");
    }
    lane_verdict(out, x, i, end, y0, h);
}

/// How the instance ended, written after its lane (in red when it needed SIGKILL or exited on
/// its own).
fn lane_verdict(out: &mut String, x: &Axis, i: &InstanceReport, end: Duration, y0: f64, h: f64) {
    let mut verdict = match i.exit {
        Some(_) if i.needed_sigkill() => "SIGKILLed".to_owned(),
        Some((_, how)) => how.to_string(),
        None => "still running".to_owned(),
    };
    if i.healthy_after.is_none() {
        verdict.insert_str(0, "never healthy, ");
    }
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}"{}>{}</text>"#,
        x.px(end) + 5.0,
        y0 + h / 2.0 + 4.0,
        if i.needed_sigkill() || i.exited_on_its_own() {
            format!(r#" style="fill:{FAILED};font-weight:600""#)
        } else {
            String::new()
        },
        esc(&verdict)
    );
}

fn tables(out: &mut String, r: &Rehearsal) {
    let overall = r.overall();
    let _ = write!(
        out,
        "<h2>Requests</h2><p>{} sent, <b>{}</b> failed, {} on new connections.</p>",
        overall.sent,
        overall.failed,
        r.requests.iter().filter(|q| q.new_connection).count()
    );
    let causes = r.failures_by_cause();
    if !causes.is_empty() {
        out.push_str("<table><tr><th>failure</th><th>requests</th></tr>");
        for (cause, n) in causes {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{n}</td></tr>",
                esc(&cause.to_string())
            );
        }
        out.push_str("</table>");
    }
    out.push_str(
        "<table><tr><th>phase</th><th>requests</th><th>failed</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th></tr>",
    );
    let mut rows: Vec<(String, _)> = r
        .stats_by_phase()
        .into_iter()
        .map(|(k, s)| (k.label().to_owned(), s))
        .collect();
    rows.push(("all".to_owned(), overall));
    for (label, s) in rows {
        let _ = write!(
            out,
            "<tr><td>{label}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s.sent,
            s.failed,
            millis(s.p50),
            millis(s.p95),
            millis(s.p99)
        );
    }
    out.push_str("</table><h2>Instance by instance</h2><table><tr><th>instance</th><th style=\"text-align:left\">what happened</th></tr>");
    let served = r.served_by_instance();
    for (i, (_, n)) in r.instances.iter().zip(served) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
            esc(&i.name),
            esc(&instance_line(i, n))
        );
    }
    out.push_str("</table>");
    if let Some(f) = &r.deploy_failure {
        let _ = write!(
            out,
            "<p style=\"color:{FAILED}\">The deploy failed at {}: {} did not become healthy ({}). The old instances kept serving.</p>",
            secs(f.at),
            esc(&f.instance),
            esc(&f.reason)
        );
    }
    for i in r.instances.iter().filter(|i| showable_tail(i)) {
        let _ = write!(
            out,
            "<h2>Last output of {}</h2><pre>{}</pre>",
            esc(&i.name),
            esc(&i.output_tail.join("\n"))
        );
    }
}

/// The output of an instance that went wrong is worth reading.
fn showable_tail(i: &InstanceReport) -> bool {
    !i.output_tail.is_empty()
        && (i.needed_sigkill() || i.exited_on_its_own() || i.healthy_after.is_none())
}

#[cfg(test)]
mod tests {
    use super::super::report::tests::sample;
    use super::*;

    #[test]
    fn the_page_is_self_contained() {
        let page = page(&sample());
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<svg"));
        for outside in ["<script", "src=", "href=", "@import", "url("] {
            assert!(!page.contains(outside), "the page contains {outside}");
        }
    }

    #[test]
    fn text_from_the_command_line_is_escaped() {
        let mut r = sample();
        r.command = "serve --flag '<b>&'".into();
        r.new_command = r.command.clone();
        let page = page(&r);
        assert!(page.contains("serve --flag &#39;&lt;b&gt;&amp;&#39;"));
        assert!(!page.contains("<b>&"));
    }

    #[test]
    fn the_page_names_every_instance_and_the_result() {
        let page = page(&sample());
        assert!(page.contains("old-1") && page.contains("new-1"));
        assert!(page.contains("PASS"));
    }

    #[test]
    fn a_phase_of_a_few_milliseconds_is_drawn_wide_enough_to_see_and_on_top() {
        let mut r = sample();
        // A 13 ms pre-deploy between "before" and "new starting", as a fast migration gives.
        r.phases[0].end = Duration::from_millis(987);
        r.phases.insert(
            1,
            Phase {
                kind: PhaseKind::PreDeploy,
                step: 0,
                start: Duration::from_millis(987),
                end: Duration::from_millis(1000),
            },
        );
        let mut out = String::new();
        phase_bands(&mut out, &r, &Axis { span: 4.0 }, 0.0, 100.0);
        let rects: Vec<&str> = out.split("<rect").skip(1).collect();
        let last = rects.last().expect("bands");
        assert!(
            last.contains("#e4d7f5"),
            "the short band is drawn last: {out}"
        );
        assert!(last.contains(r#"width="8.0""#), "{last}");
    }

    #[test]
    fn nice_steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(42.0), 50.0);
        assert_eq!(nice_step(0.0), 1.0);
    }
}
